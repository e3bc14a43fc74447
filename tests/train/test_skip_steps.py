"""Non-finite steps are skipped as the fp16 grad scaler skips them, and the grad-scaler path itself runs here,
on the CPU, with a real torch.amp.GradScaler forced in (accelerate gives none on the CPU)."""

import math

import pytest
import torch
from safetensors.torch import load_file

from colabkit.train import loop
from colabkit.train.loop import MAX_NONFINITE_IN_A_ROW, optimizer_step, train
from colabkit.train.state import StateStore
from helpers.budget import StopAfter


# -- optimizer_step: the skip rule on a small model (fast) --------------------------------------------------

def _setup(lr=0.1):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.AdamW([w], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return w, opt, sched


def test_a_step_with_a_nan_gradient_changes_nothing_and_pauses_the_schedule():
    w, opt, sched = _setup()
    before = w.detach().clone()
    (w * torch.tensor([1.0, float("nan"), 1.0, 1.0])).sum().backward()
    assert optimizer_step(opt, sched, [w], 1.0, None, 0.5) == "non-finite"
    assert torch.equal(w.detach(), before) and w.grad is None and opt.state == {}
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1]
    (w * 2).sum().backward()
    assert optimizer_step(opt, sched, [w], 1.0, None, 0.5) == "taken"
    assert not torch.equal(w.detach(), before) and sched.last_epoch == 1 and sched.get_last_lr() == [0.05]


def test_a_nan_loss_is_skipped_even_with_finite_gradients():
    w, opt, sched = _setup()
    before = w.detach().clone()
    w.sum().backward()
    assert optimizer_step(opt, sched, [w], 0.0, None, float("nan")) == "non-finite"
    assert torch.equal(w.detach(), before) and sched.last_epoch == 0


def test_the_grad_scaler_skips_an_overflow_lowers_its_scale_and_the_schedule_waits():
    w, opt, sched = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100, growth_interval=1)
    before = w.detach().clone()
    scaler.scale((w * 1e30).sum()).backward()  # 1e30 x 2^100 overflows float32: inf gradients
    assert optimizer_step(opt, sched, [w], 1.0, scaler, 1.0) == "overflow"  # routine: not a divergence
    assert torch.equal(w.detach(), before) and sched.last_epoch == 0 and scaler.get_scale() == 2.0**99
    scaler.scale(w.sum()).backward()
    assert optimizer_step(opt, sched, [w], 1.0, scaler, 1.0) == "taken"
    assert sched.last_epoch == 1 and scaler.get_scale() == 2.0**100  # grown back after growth_interval clean steps
    # unscaled before clipping: each gradient is 1, norm 2, clipped to 1 -> AdamW's first step moves lr per weight
    assert torch.allclose(before - w.detach(), torch.full((4,), 0.1) + 0.1 * 0.01 * before, atol=1e-6)


def test_at_a_scale_of_one_an_overflow_is_a_divergence():
    w, opt, sched = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    scaler.scale((w * float("inf")).sum()).backward()
    assert optimizer_step(opt, sched, [w], 1.0, scaler, 1.0) == "non-finite"


# -- a run whose loss becomes NaN: skipped, then a clean stop -------------------------------------------------

@pytest.mark.slow
def test_a_diverging_run_skips_then_stops_with_its_state_and_earlier_loras_kept(tiny_project, make_config, capsys):
    earlier = tiny_project.output / "houtline-01.safetensors"
    earlier.write_bytes(b"an earlier run's LoRA")
    seen = []

    class Rep(loop.Reporter):
        def skipped(self, step, count):
            seen.append((step, count))

    # AdamW moves every weight by ~lr on its first step: 1e30 makes the next forward overflow to NaN.
    cfg = make_config(unet_lr=1e30, lr_scheduler="constant", num_repeats=4, save_state_every_n_steps=1000)
    result = train(cfg, reporter=Rep(), device="cpu")
    assert result.status == "diverged"
    assert result.step == 1 + MAX_NONFINITE_IN_A_ROW and result.skipped_steps == MAX_NONFINITE_IN_A_ROW
    assert seen == [(s, s - 1) for s in range(2, 2 + MAX_NONFINITE_IN_A_ROW)]
    assert "steps 2-6" in result.message and "unet_lr" in result.message and "start_over" in result.message
    assert "\n" not in result.message
    assert earlier.read_bytes() == b"an earlier run's LoRA" and result.final_lora is None
    assert [p.name for p in tiny_project.output.glob("*.safetensors")] == ["houtline-01.safetensors"]
    state = StateStore(tiny_project.state).load_latest()[0]
    assert state.step == 6 and state.skipped_steps == 5
    assert math.isfinite(state.losses[0]) and all(math.isnan(x) for x in state.losses[1:])
    assert state.lr_scheduler["last_epoch"] == 1  # stepped once: the skipped steps left the schedule alone
    assert all(torch.isfinite(v).all() for v in state.trainable.values())  # the weights of the last good step


@pytest.mark.slow
def test_the_cli_says_it_in_one_line_without_a_traceback(tiny_project, capsys):
    from colabkit.cli import main

    code = main(["train", "--project-name", "houtline", "--base-model", "tiny-sdxl", "--resolution", "64",
                 "--num-repeats", "4", "--train-batch-size", "2", "--optimizer", "AdamW", "--unet-lr", "1e30",
                 "--lr-scheduler", "constant", "--network-dim", "4", "--network-alpha", "2",
                 "--sample-every-n-epochs", "0", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out.out + out.err
    assert "the loss was not finite" in out.out + out.err


# -- the fp16 grad-scaler path, driven on the CPU ------------------------------------------------------------

def _cpu_scaler(monkeypatch):
    """A real GradScaler on the CPU where the run takes its scaler (scale 2^16, x2 every 3 clean steps), and the
    first step of a fresh run overflowing as fp16 gradients overflow on a T4: float32 has the range to hold
    2^16 times any gradient here, so one scaled gradient is made inf where only the scaler can see it."""
    made, overflowed = [], []
    real_step = loop.optimizer_step

    def make(accelerator):
        made.append(torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3))
        return made[-1]

    def overflowing(optimizer, lr_scheduler, params, max_grad_norm, scaler, loss):
        if scaler not in overflowed and scaler.get_scale() == 2.0**16:  # a fresh run's first step, not a resume's
            params[0].grad.view(-1)[0] = float("inf")
        overflowed.append(scaler)
        return real_step(optimizer, lr_scheduler, params, max_grad_norm, scaler, loss)

    monkeypatch.setattr(loop, "grad_scaler", make)
    monkeypatch.setattr(loop, "optimizer_step", overflowing)
    return made


@pytest.mark.slow
def test_the_scaler_skips_an_overflow_and_a_resume_is_bit_exact(tiny_project, make_config, monkeypatch):
    made = _cpu_scaler(monkeypatch)
    cfg = make_config(epochs=2, lr_scheduler="cosine", save_state_every_n_steps=1000)
    straight = train(cfg, device="cpu")
    assert straight.status == "finished" and straight.step == 8 and straight.skipped_steps == 1
    done = StateStore(tiny_project.state).load_latest()[0]
    assert done.lr_scheduler["last_epoch"] == 7  # 8 steps, one skipped
    # the scale after 1 skip (halved) and 7 clean steps (doubled after the 3rd and 6th): 2^15 x 2^2
    assert done.scaler["scale"] == 2.0**17 and done.scaler["_growth_tracker"] == 1
    assert made[0].get_scale() == 2.0**17
    reference = load_file(straight.final_lora)

    first = train(cfg.replace(start_over=True), budget=StopAfter(3), device="cpu")
    assert first.status == "stopped" and first.step == 3
    saved = StateStore(tiny_project.state).load_latest()[0]
    assert saved.scaler["scale"] == 2.0**15 and saved.scaler["_growth_tracker"] == 2 and saved.skipped_steps == 1
    assert saved.lr_scheduler["last_epoch"] == 2
    last = train(cfg, device="cpu")
    assert last.status == "finished" and last.skipped_steps == 1  # counted across the days
    assert made[-1].get_scale() == 2.0**17  # the scaler went on from its saved state (its growth count too)
    resumed = load_file(last.final_lora)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
