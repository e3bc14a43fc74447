"""The daily budget's arithmetic, value by value: when it stops decides whether a day's work is saved in time."""

from __future__ import annotations

import pytest

from colabkit.train.budget import Budget, default_clock, hms


def at(t):
    return lambda: t


def test_deadline_and_time_left_count_from_the_runtimes_start():
    b = Budget(start=1000.0, hours=2.5, margin_s=60, clock=at(1500.0))
    assert b.deadline == 1000.0 + 2.5 * 3600
    assert b.now() == 1500.0
    assert b.left_s() == 1000.0 + 9000 - 1500.0


def test_step_time_is_a_smoothed_average_and_saves_and_previews_keep_their_slowest():
    b = Budget(start=0.0, hours=1.0, clock=at(0.0))
    assert b.step_s is None and b.save_s == 0.0 and b.preview_s is None and b.margin_s == 600.0
    b.record_step(10.0)
    assert b.step_s == 10.0  # the first step as measured
    b.record_step(20.0)
    assert b.step_s == pytest.approx(0.8 * 10 + 0.2 * 20)  # 12
    b.record_step(2.0)
    assert b.step_s == pytest.approx(0.8 * 12 + 0.2 * 2)  # 10
    b.record_save(5.0), b.record_save(3.0)
    assert b.save_s == 5.0
    b.record_preview(0.5)
    assert b.preview_s == 0.5  # the first one as measured, even under a second
    b.record_preview(7.0), b.record_preview(4.0)
    assert b.preview_s == 7.0


@pytest.mark.parametrize("step_s, save_s, preview_s, margin_s", [(30.0, 20.0, 0.0, 60.0), (30.0, 20.0, 40.0, 60.0),
                                                                 (0.0, 0.0, 0.0, 600.0), (8.0, 0.0, 100.0, 0.0)])
def test_it_stops_exactly_when_a_step_a_save_and_a_preview_no_longer_fit(step_s, save_s, preview_s, margin_s):
    need = 1.5 * step_s + 1.5 * save_s + 1.2 * preview_s + margin_s
    clock = [0.0]
    b = Budget(start=0.0, hours=1.0, margin_s=margin_s, clock=lambda: clock[0])
    if step_s:
        b.record_step(step_s)
    if save_s:
        b.record_save(save_s)
    clock[0] = 3600 - need  # exactly what is needed is left: go on
    assert not b.must_stop(preview_s)
    clock[0] += 0.5  # half a second short: stop
    assert b.must_stop(preview_s)
    if preview_s:
        assert not b.must_stop(0.0)  # without the preview it would still fit


def test_before_any_step_only_the_margin_counts():
    b = Budget(start=0.0, hours=1.0, margin_s=100.0, clock=at(3500.0))
    assert not b.must_stop()  # 100 s left, 100 s needed
    assert Budget(start=0.0, hours=1.0, margin_s=100.0, clock=at(3500.5)).must_stop()


def test_the_real_clock_unless_a_test_asks_for_ticks(monkeypatch):
    import time

    monkeypatch.delenv("COLABKIT_FAKE_SECONDS_PER_TICK", raising=False)
    assert default_clock() is time.time
    monkeypatch.setenv("COLABKIT_FAKE_SECONDS_PER_TICK", "2.5")
    before = time.time()
    clock = default_clock()
    first, second, third = clock(), clock(), clock()
    assert second - first == pytest.approx(2.5) and third - second == pytest.approx(2.5)
    assert before + 2.5 <= first <= time.time() + 2.5
    assert Budget(start=0.0, hours=1.0).clock is not time.time  # the default reads the setting too


@pytest.mark.parametrize("seconds, text", [(0, "0 min 00 s"), (59.9, "0 min 59 s"), (61, "1 min 01 s"),
                                           (3599, "59 min 59 s"), (3000, "50 min 00 s"), (3600, "1 h 00 min"), (3661, "1 h 01 min"),
                                           (2 * 3600 + 41 * 60 + 59, "2 h 41 min"), (-5, "0 min 00 s")])
def test_hms(seconds, text):
    assert hms(seconds) == text


def test_a_run_starts_only_with_the_margin_still_ahead():
    margin = 600.0
    b = Budget(start=0.0, hours=1.0, margin_s=margin, clock=at(3600 - margin))
    assert b.can_start()  # exactly the margin left
    assert not Budget(start=0.0, hours=1.0, margin_s=margin, clock=at(3600 - margin + 0.5)).can_start()
    assert not Budget(start=0.0, hours=1.0, margin_s=margin, clock=at(4000.0)).can_start()  # past the deadline
    assert Budget(start=0.0, hours=1.0, margin_s=0.0, clock=at(0.0)).can_start()


def test_the_loop_counts_the_budget_from_the_runtimes_start_and_loads_nothing_without_time(tiny_project, make_config,
                                                                                             monkeypatch):
    """Colab's time runs from the runtime's start (installs, downloads, earlier runs count): a runtime started 55 min
    into a 1 h budget with a 10 min margin is refused before any model is fetched or loaded, whenever this process
    started, and says how much was left."""
    import time

    from colabkit.train import loop

    def no_model(*a, **k):
        raise AssertionError("a model was fetched with less than the margin left")

    monkeypatch.setattr(loop, "fetch_model", no_model)
    cfg = make_config(epochs=1, budget_hours=1.0, budget_margin_minutes=10)
    monkeypatch.setenv("COLABKIT_RUNTIME_START", str(time.time() - 3600 + 5 * 60))  # 5 min left, 10 min margin
    result = loop.train(cfg, device="cpu")
    assert (result.status, result.step, result.final_lora, result.loss_plot) == ("stopped", 0, None, None)
    assert result.message.startswith("Not started: this runtime has 4 min 5") or \
        result.message.startswith("Not started: this runtime has 5 min 00 s")
    assert "of the 1 h budget, less than the 10 min 00 s safety margin, so nothing was loaded." in result.message
    assert not tiny_project.state.exists() or not any(tiny_project.state.iterdir())  # no state written either


@pytest.mark.slow  # trains a step
def test_a_fresh_runtime_trains_and_a_spent_one_keeps_the_state_it_resumes_from(tiny_project, make_config,
                                                                               monkeypatch):
    """Day 2 in a runtime whose time is already spent: refused with the saved state named and left as it was."""
    import time

    from colabkit.train.loop import train
    from helpers.budget import StopAfter

    cfg = make_config(epochs=1, budget_hours=1.0, budget_margin_minutes=10)
    assert train(cfg, budget=StopAfter(1), device="cpu").step == 1
    saved = sorted(p.name for p in tiny_project.state.iterdir())
    monkeypatch.setenv("COLABKIT_RUNTIME_START", str(time.time() - 3600))
    result = train(cfg, device="cpu")
    assert (result.status, result.step) == ("stopped", 1)
    assert "(your state at step 1 is kept)" in result.message
    assert sorted(p.name for p in tiny_project.state.iterdir()) == saved
    monkeypatch.setenv("COLABKIT_RUNTIME_START", str(time.time()))  # a fresh runtime: the whole hour
    assert train(cfg, device="cpu").status == "finished"
