"""CPU threads during a run: lowered when the rest of the machine gets busy, saved for the resume."""

import pytest
import torch

from colabkit import doctor
from colabkit.train.cpu_threads import LoadWatch, lowered_threads
from colabkit.train.loop import Reporter, train
from colabkit.train.plan import make_plan
from colabkit.train.state import StateStore


def test_import_colabkit_sets_a_short_openmp_spin_and_keeps_the_users_choice():
    import os
    import subprocess
    import sys

    def env_after_import(**env):
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        code = "import os, colabkit; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
        out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                             check=True)
        return out.stdout.split()

    assert env_after_import() == ["20000", "None"]
    assert env_after_import(OMP_WAIT_POLICY="PASSIVE") == ["None", "PASSIVE"]
    assert env_after_import(GOMP_SPINCOUNT="5") == ["5", "None"]


def test_a_thread_is_given_up_only_after_several_busy_steps():
    assert lowered_threads(2, 2, [1.0, 1.0]) == 2  # two busy steps: not yet
    assert lowered_threads(2, 2, [1.0, 1.0, 1.0]) == 1
    assert lowered_threads(2, 2, [1.0, 0.1, 1.0]) == 2  # a quiet step in between: a blip, not a busy machine
    assert lowered_threads(2, 2, [0.3, 0.2, 0.4]) == 2  # a notebook server's trickle
    assert lowered_threads(8, 8, [2.7, 3.1, 2.9]) == 5  # as many as the others keep busy (the least of them)
    assert lowered_threads(1, 2, [2.0, 2.0, 2.0]) == 1  # never below one
    assert lowered_threads(3, 8, [1.0, 1.0, 1.0]) == 3  # never raised: 7 would be free, 3 stay


def fake_machine(loads: list[float], cores: int = 2):
    """A cpu_sample stand-in: the rest of the machine uses loads[i] cores during step i, this process none."""
    state = {"ticks": [0] * 8, "t": 0.0, "i": 0}

    def sample():
        ticks = state["ticks"]
        if state["i"] > 0:
            load = loads[min(state["i"] - 1, len(loads) - 1)]
            ticks = [ticks[0] + round(100 * load), 0, ticks[2], ticks[3] + round(100 * (cores - load)), 0, 0, 0, 0]
            state["ticks"] = ticks
            state["t"] += 1.0
        state["i"] += 1
        return list(ticks), 0.0, state["t"]

    return sample


def test_the_watch_reads_the_machine_between_steps(monkeypatch):
    monkeypatch.setattr(doctor, "usable_cores", lambda: 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    watch = LoadWatch(2, sample=fake_machine([0.0, 0.0, 1.0, 1.0, 1.0, 1.0]))
    said = [watch.after_step() for _ in range(6)]
    assert said == [None, None, None, None, 1, None] and watch.threads == 1
    assert LoadWatch(1, sample=fake_machine([2.0])).after_step() is None  # one thread: nothing to give up


@pytest.mark.slow
def test_a_run_gives_a_thread_up_when_the_machine_gets_busy_and_resumes_with_it(tiny_project, make_config,
                                                                               monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite pins 1; here the plan and the loop decide
    monkeypatch.setattr(doctor, "usable_cores", lambda: 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(doctor, "other_cpu_load", lambda *a, **k: 0.0)  # quiet at the start
    warnings = []

    class Seen(Reporter):
        def warn(self, text):
            warnings.append(text)

    cfg = make_config(epochs=2)  # 4 steps an epoch, state saved every 2
    plan = make_plan(cfg, device="cpu")
    assert plan.device.cpu_threads == 2 and plan.device.adapt_cpu_threads
    monkeypatch.setattr(doctor, "cpu_sample", fake_machine([0.0, 1.0, 1.0, 1.0]))  # busy from the second step on
    try:
        result = train(plan, reporter=Seen())
        assert result.status == "finished" and torch.get_num_threads() == 1
        assert [w for w in warnings if "goes on with 1 thread" in w]
        saved, _ = StateStore(tiny_project.state).load_latest()
        assert saved.cpu_threads == 1  # what the last steps ran with
        # A later resume (more epochs) takes the saved count, whatever the load says now.
        assert make_plan(cfg.replace(epochs=3), device="cpu").device.cpu_threads == 1
    finally:
        torch.set_num_threads(1)
