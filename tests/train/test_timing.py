"""The run-time estimate: tabled GPU figures, previews, caching, free-tier days, the CPU's demo suggestion."""

import pytest

from colabkit.train import timing


def test_gpu_kind_reads_the_names_torch_reports():
    assert timing.gpu_kind("Tesla T4") == "T4"
    assert timing.gpu_kind("NVIDIA A100-SXM4-40GB") == "A100"
    assert timing.gpu_kind("NVIDIA L4") == "L4"
    assert timing.gpu_kind("NVIDIA H100 80GB HBM3") == "H100"
    assert timing.gpu_kind("Some Future GPU") == timing.UNKNOWN_GPU
    assert "not in the table" in timing.gpu_source("Some Future GPU")
    assert "not in the table" not in timing.gpu_source("Tesla T4")


def test_gpu_step_scales_with_pixels_batch_and_checkpointing():
    t4 = timing.GPU_SECONDS_PER_STEP["T4"]
    assert timing.gpu_seconds_per_step("Tesla T4", 1024, 1) == pytest.approx(t4)
    assert timing.gpu_seconds_per_step("Tesla T4", 1024, 2) == pytest.approx(2 * t4)
    assert timing.gpu_seconds_per_step("Tesla T4", 512, 1) == pytest.approx(t4 / 4)
    assert timing.gpu_seconds_per_step("Tesla T4", 1024, 1, checkpointing=False) < t4


def test_free_days_count_each_days_setup_and_margin():
    usable = 3 * 3600 - 600 - timing.DAILY_SETUP_S
    assert timing.free_days(usable, 3, 600) == 1
    assert timing.free_days(usable + 1, 3, 600) == 2
    assert timing.free_days(0, 3, 600) == 1
    assert timing.free_days(10, 0.1, 600) == 10**6  # a budget smaller than its margin never finishes


def test_previews_in_run():
    assert timing.previews_in_run(10, 1) == 10
    assert timing.previews_in_run(10, 3) == 4  # 3, 6, 9 and the last
    assert timing.previews_in_run(10, 0) == 0


def test_preview_cost_is_sampler_forwards_plus_decodes():
    # a step of batch 2 = 6 forwards of one image (forward + backward ~ 3 forwards): 1 s -> 1/6 s a forward
    s = timing.preview_seconds(1.0, batch=2, n_prompts=3, sample_steps=12, decode_s_per_image=0.5)
    assert s == pytest.approx(12 * 2 * 3 / 6 + 3 * 0.5)


def _t4_run(steps, **kw):
    args = dict(steps=steps, step_s=timing.gpu_seconds_per_step("Tesla T4", 1024, 2), source="tabled T4 figure",
                batch=2, n_images=35, resolution=1024, flip=False, cached=False, previews=10, n_prompts=3,
                sample_steps=20, checkpointing=True, on_gpu=True, budget_hours=3.0, margin_s=600)
    args.update(kw)
    return timing.estimate_run(**args)


def test_a_long_t4_run_needs_several_days():
    short = _t4_run(300)
    assert short.days == 1
    assert short.total_s == pytest.approx(short.train_s + short.caching_s + 10 * short.preview_s)
    long = _t4_run(1750)
    assert long.train_s == pytest.approx(1750 * 5.0)
    # 1,750 steps of batch 2 at 1024 px on a T4 by the table (2.5 s an image-step): 2.4 h of steps, 2.65 h with
    # previews and caching: just inside one day's usable 2.7 h. A T4 2.2x slower than the table (Colab
    # reports range to ~11 s/step) makes it three days; the estimate says which, and the run's measured
    # step time replaces the table from its first day on.
    assert long.days == 1 and long.total_s > 0.95 * (3 * 3600 - 600 - timing.DAILY_SETUP_S)
    assert _t4_run(1750, step_s=11.0, source="measured").days == 3
    assert "1750 steps x 5.0 s" in long.describe() and "1 free-tier day" in long.describe()


def test_cpu_suggests_the_demo_size_only_when_long():
    slow = timing.estimate_run(steps=300, step_s=20.0, source="CPU estimate", batch=2, n_images=8, resolution=1024,
                               flip=False, cached=True, previews=10, n_prompts=3, sample_steps=20,
                               checkpointing=False, on_gpu=False, budget_hours=3.0, margin_s=600)
    hint = timing.cpu_suggestion(slow, 1024, 300)
    assert hint and "resolution 128" in hint and "max_train_steps 40" in hint
    quick = timing.estimate_run(steps=40, step_s=0.5, source="CPU estimate", batch=2, n_images=8, resolution=128,
                                flip=False, cached=True, previews=0, n_prompts=3, sample_steps=8,
                                checkpointing=False, on_gpu=False, budget_hours=3.0, margin_s=600)
    assert timing.cpu_suggestion(quick, 128, 40) is None
    assert timing.cpu_suggestion(_t4_run(1750), 1024, 1750) is None  # a GPU run gets no demo hint


# -- in the preflight ---------------------------------------------------------------------------------------

def test_preflight_shows_time_days_and_preview_cost_on_a_t4(tiny_project, make_config, monkeypatch):
    from colabkit import doctor
    from colabkit.doctor import GpuInfo
    from colabkit.train.preflight import run_preflight

    monkeypatch.setattr(doctor, "gpu_info", lambda: GpuInfo("Tesla T4", 14.75, (7, 5)))
    report = run_preflight(make_config(resolution=1024, max_train_steps=1750, num_repeats=88,
                                       sample_every_n_epochs=1, gradient_checkpointing="on"))
    rows = {c.name: c.message for c in report.checks}
    assert report.plan.epochs == 10, report.plan.describe()
    assert "1750 steps x 5.0 s (tabled T4 figure)" in rows["time"], rows["time"]
    assert "free-tier day" in rows["time"]
    assert "10 epoch-end previews" in rows["previews"] and "counted in the daily budget" in rows["previews"]
    assert len([c for c in run_preflight(report.run_plan).checks if c.name == "time"]) == 1  # once per plan


def test_preflight_on_the_cpu_suggests_the_demo_size_for_a_long_run(tiny_project, make_config):
    from colabkit.train.preflight import run_preflight

    long = {c.name: c for c in run_preflight(make_config(resolution=1024, max_train_steps=300,
                                                         sample_every_n_epochs=1), device="cpu").checks}
    assert long["time"].level == "warn" and "resolution 128" in long["time"].message, long["time"].message
    short = {c.name: c for c in run_preflight(make_config(resolution=64, max_train_steps=4),
                                              device="cpu").checks}
    assert "CPU estimate" in short["time"].message and "resolution 128" not in short["time"].message


# -- previews in the budget --------------------------------------------------------------------------------

def test_budget_stops_before_a_preview_that_would_not_fit():
    from colabkit.train.budget import Budget

    now = [0.0]
    b = Budget(start=0.0, hours=1.0, margin_s=60, clock=lambda: now[0])
    b.record_step(10.0)
    now[0] = 3600 - 60 - 15 - 100  # room for a step and 100 s more
    assert not b.must_stop()
    assert not b.must_stop(preview_s=80.0)  # 1.2 x 80 = 96 s fits
    assert b.must_stop(preview_s=90.0)  # 108 s does not: stop (state saved) before the step and its preview
    b.record_preview(40.0)
    b.record_preview(30.0)
    assert b.preview_s == 40.0  # the slowest one seen


def test_the_loop_expects_a_preview_only_before_an_epoch_end_that_makes_one(make_config):
    from colabkit.train.budget import Budget
    from colabkit.train.loop import _next_preview_s

    b = Budget(start=0.0, hours=1.0, margin_s=0, clock=lambda: 0.0)
    b.record_step(3.0)
    run = make_config(sample_every_n_epochs=2, sample_steps=10, sample_prompts="a\nb")
    # 5 steps an epoch, 20 in all: previews after steps 10 and 20 (epochs 2 and 4, the last)
    expected = {s for s in range(20) if _next_preview_s(run, b, s, 5, 20) > 0}
    assert expected == {9, 19}
    first = _next_preview_s(run, b, 9, 5, 20)
    assert first == pytest.approx(timing.preview_seconds(3.0, 2, 2, 10, 1.5))  # estimated from the step time
    b.record_preview(7.0)
    assert _next_preview_s(run, b, 19, 5, 20) == 7.0  # then measured
    assert _next_preview_s(make_config(sample_every_n_epochs=0), b, 9, 5, 20) == 0.0


def test_cpu_training_takes_the_cores_the_rest_of_the_machine_leaves_free():
    cpu_training_threads = timing.cpu_training_threads
    assert cpu_training_threads(2, 0.0, user_set=False, current=2) == 2  # quiet: every core
    assert cpu_training_threads(2, 0.4, user_set=False, current=2) == 2  # a notebook server's trickle
    assert cpu_training_threads(2, 1.0, user_set=False, current=2) == 1  # one busy process: leave it its core
    assert cpu_training_threads(2, 3.5, user_set=False, current=2) == 1  # never below one
    assert cpu_training_threads(8, 2.6, user_set=False, current=8) == 5
    assert cpu_training_threads(8, None, user_set=False, current=8) == 7  # load unknown: one spare core
    assert cpu_training_threads(1, None, user_set=False, current=1) == 1
    assert cpu_training_threads(8, 0.0, user_set=True, current=3) == 3  # OMP_NUM_THREADS wins
