import threading
import time

from colabkit.dataset.loader import batched, prefetch


def test_prefetch_keeps_order_and_reports_errors_per_item():
    def load(i):
        time.sleep(0.002 * (5 - i % 5))  # later items finish first
        if i == 3:
            raise OSError("broken file")
        return i * 10

    out = list(prefetch(load, range(8), workers=3, ahead=4))
    assert [o.item for o in out] == list(range(8))
    assert [o.value for o in out if o.error is None] == [0, 10, 20, 40, 50, 60, 70]
    assert isinstance(out[3].error, OSError)


def test_prefetch_runs_ahead_in_the_background():
    started = []
    lock = threading.Lock()

    def load(i):
        with lock:
            started.append(i)
        return i

    it = prefetch(load, range(100), workers=2, ahead=5)
    first = next(it)
    time.sleep(0.05)
    assert first.item == 0
    assert 2 <= len(started) <= 6  # decoding ahead, but bounded
    it.close()  # stopping early does not hang


def test_batched():
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(batched([], 3)) == []
