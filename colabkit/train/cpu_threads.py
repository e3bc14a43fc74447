"""torch's CPU threads during a run on the CPU: what the plan decided at the start (the cores the rest of the
machine left free), one fewer each time the rest of the machine stays busy for a few steps.

Why: torch's OpenMP threads meet at a barrier after every operator; when another process takes one of their
cores, the thread that lost its core holds every other one at each barrier, and a step gets several times
slower (2-6x measured on 2 cores, benchmarks/RESULTS.md), where one thread fewer loses only that core's share.
Only ever lowered: a run never hunts up and down. The count in effect is saved with the training state, so a
resumed run goes on with the same float summation order. Nothing changes when the user set OMP_NUM_THREADS.
"""

from __future__ import annotations

from colabkit import doctor
from colabkit.train.timing import BUSY_CORE, cpu_training_threads

PATIENCE = 3  # steps in a row with the rest of the machine busy before a thread is given up


def lowered_threads(threads: int, cores: int, recent_loads: list[float], patience: int = PATIENCE) -> int:
    """The thread count after these steps: lower when the rest of the machine kept at least half a core busy
    in each of the last ``patience`` steps (by the least busy of them), else as it was; never below one."""
    if len(recent_loads) < patience or threads <= 1:
        return threads
    least = min(recent_loads[-patience:])
    if least < BUSY_CORE:
        return threads
    return min(threads, cpu_training_threads(cores, least, user_set=False, current=threads))


class LoadWatch:
    """Reads the machine's CPU counters after each step (one line of /proc/stat) and says when to use fewer
    threads. ``sample`` is swappable for tests; where /proc/stat is missing the watch stays silent."""

    def __init__(self, threads: int, sample=None):
        self.threads = threads
        self.cores = doctor.usable_cores()
        self.loads: list[float] = []
        self._sample = sample or doctor.cpu_sample
        self._last = self._sample() if threads > 1 else None

    def after_step(self) -> int | None:
        """The new thread count when it should drop now, else None."""
        if self._last is None or self.threads <= 1:
            return None
        now = self._sample()
        if now is None:
            self._last = None
            return None
        self.loads.append(doctor.busy_cores_between(self._last, now))
        self._last = now
        lower = lowered_threads(self.threads, self.cores, self.loads)
        if lower < self.threads:
            self.threads, self.loads = lower, []
            return lower
        return None
