"""The run plan: made once per run start, reported on by the preflight, used as is by training; decisions taken
from the model itself (v-prediction, zero-terminal SNR, CPU or not), and nothing optional failing mid-run."""

import hashlib
import shutil
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from colabkit import doctor
from colabkit.errors import ColabkitError
from colabkit.train import loop, plan as plan_mod, run as run_mod
from colabkit.choices import field_choices
from colabkit.train.config import LEGACY_VALUES, OPTIMIZERS, TrainConfig, diff_critical
from colabkit.train.loop import Reporter, train
from colabkit.train.plan import make_plan
from helpers.budget import StopAfter
from helpers.single_file import write_single_file


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)


def lora_meta(path):
    with safe_open(path, "pt") as f:
        return f.metadata()


# -- typed choices ----------------------------------------------------------------------------------------

def test_choices_come_from_the_literals_and_old_runs_compare_as_they_ran():
    assert field_choices(TrainConfig, "optimizer") == OPTIMIZERS == ("AdamW8bit", "Prodigy", "AdamW", "Adafactor")
    assert field_choices(TrainConfig, "max_token_length") == (75, 150, 225)
    assert field_choices(TrainConfig, "zero_terminal_snr") == field_choices(TrainConfig, "gradient_checkpointing") == (
        "auto", "on", "off")
    with pytest.raises(ColabkitError, match="max_token_length must be one of 75, 150, 225; got 77"):
        TrainConfig(project_name="p", max_token_length=77)
    assert TrainConfig(project_name="p", gradient_checkpointing=False).gradient_checkpointing == "off"  # old bool
    # A run saved before max_token_length existed cut captions at 75 tokens: it continues only with 75.
    old = {k: v for k, v in TrainConfig(project_name="p").to_dict().items() if k not in LEGACY_VALUES}
    assert diff_critical(old, TrainConfig(project_name="p").to_dict()) == {"max_token_length": (75, 225)}
    assert diff_critical(old, TrainConfig(project_name="p", max_token_length=75).to_dict()) == {}


def test_unet_flops_formula_matches_a_flop_count_of_the_real_forward(tiny_sdxl):
    # The CPU estimate's FLOPs (from the parameter count and the architecture) against torch's own count of
    # tiny-sdxl's forward at 128 px; SDXL base at 1024 px gives 6.89 TFLOP here vs 6.76 counted (1.9%), which
    # takes ~10 s on the meta device, so only the tiny one is counted in the suite.
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from colabkit.train import models
    from colabkit.train.memory import UNetShape

    facts = models.model_facts(models.resolve_base_model("tiny-sdxl"))
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl, subfolder="unet")
    cfg = unet.config
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        unet(torch.randn(1, 4, 16, 16), torch.tensor([10]), torch.randn(1, 77, cfg.cross_attention_dim),
             added_cond_kwargs={"text_embeds": torch.randn(1, cfg.projection_class_embeddings_input_dim - 48),
                                "time_ids": torch.randn(1, 6)})
    counted = fc.get_total_flops()
    estimate = plan_mod.unet_step_flops(plan_mod._level_params(facts), UNetShape.from_config(facts.unet_config),
                                        128, 128, 1, checkpointing=False) / 2  # forward only
    assert facts.params["unet"] == sum(p.numel() for p in unet.parameters())  # from the header, exact
    assert 0.6 < estimate / counted < 1.6, (estimate, counted)


# -- one plan per run start ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_one_plan_one_scan_each_image_hashed_once(tiny_project, make_config, monkeypatch, no_gpu):
    images = {p.read_bytes() for p in tiny_project.dataset.glob("*.png")}
    hashed = []
    real_sha = hashlib.sha256

    def counting_sha256(data=b"", *a, **k):  # wherever the training set is defined, its hashing is counted
        if isinstance(data, (bytes, bytearray, memoryview)) and bytes(data) in images:
            hashed.append(real_sha(data).hexdigest())
        return real_sha(data, *a, **k)

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    plans, reported, trained = [], [], []
    real_make, real_report, real_train = plan_mod.make_plan, run_mod.run_preflight, run_mod.train
    monkeypatch.setattr(run_mod, "make_plan", lambda *a, **k: plans.append(real_make(*a, **k)) or plans[-1])
    monkeypatch.setattr(run_mod, "run_preflight",
                        lambda p, **k: reported.append(p) or real_report(p, **k))
    monkeypatch.setattr(run_mod, "train", lambda p, **k: trained.append(p) or real_train(p, **k))
    monkeypatch.setattr(plan_mod, "make_plan", lambda *a, **k: pytest.fail("a second plan was made"))
    monkeypatch.setattr(loop, "make_plan", lambda *a, **k: pytest.fail("training planned again"))
    result = run_mod.train_lora(make_config(epochs=1), device="cpu")
    assert result.status == "finished"
    assert len(plans) == 1 and reported == plans and trained == plans  # the preflight's plan is what trained
    assert sorted(hashed) == sorted(real_sha(b).hexdigest() for b in images)  # each image hashed once


@pytest.mark.slow
def test_small_sdxl_folder_by_path_trains_on_the_cpu(tiny_project, make_config, tiny_sdxl, tmp_path, no_gpu):
    mine = shutil.copytree(tiny_sdxl, tmp_path / "my-small-sdxl")  # not named tiny-sdxl
    result = run_mod.train_lora(make_config(base_model=str(mine), epochs=1))  # no device given, no GPU
    assert result.status == "finished" and result.final_lora.exists()
    assert lora_meta(result.final_lora)["ss_sd_model_name"] == "my-small-sdxl"


# -- v-prediction and zero-terminal SNR end to end ------------------------------------------------------------

@pytest.mark.slow
def test_v_prediction_trains_saves_and_resumes_bit_exactly(tiny_project, make_config):
    # Metadata and resume only: that the loop trains towards the v target is observed in test_prediction_target.py.
    cfg = make_config(prediction_type="v_prediction", epochs=3)
    plan = make_plan(cfg, device="cpu")
    assert plan.prediction_type == "v_prediction" and plan.zero_terminal_snr  # on by default with v-pred
    straight = train(plan)
    assert straight.status == "finished"
    for path in (tiny_project.output / "houtline-01.safetensors", straight.final_lora):  # epoch file and final
        meta = lora_meta(path)
        assert meta["ss_v_parameterization"] == "True" and meta["modelspec.prediction_type"] == "v"
    reference = load_file(straight.final_lora)

    first = train(cfg.replace(start_over=True), budget=StopAfter(5), device="cpu")  # past the epoch-1 save
    assert first.status == "stopped" and first.step == 5
    last = train(cfg, device="cpu")
    assert last.status == "finished"
    resumed = load_file(last.final_lora)
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)


@pytest.mark.slow  # trains a step
def test_cpu_threads_follow_the_load_at_the_start_and_a_resume_keeps_them(tiny_project, make_config,
                                                                          monkeypatch):
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite pins 1; here the plan decides
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cfg = make_config(epochs=1)
    monkeypatch.setattr(doctor, "other_cpu_load", lambda *a, **k: 0.0)
    quiet = make_plan(cfg, device="cpu")
    assert quiet.device.cpu_threads == cores
    assert f"{cores} torch thread" in next(n.message for n in quiet.notes if n.name == "GPU")
    try:
        first = train(quiet, budget=StopAfter(1))
        assert first.status == "stopped" and torch.get_num_threads() == cores  # the loop set what the plan said
        monkeypatch.setattr(doctor, "other_cpu_load", lambda *a, **k: 99.0)  # busy now
        assert make_plan(cfg.replace(start_over=True), device="cpu").device.cpu_threads == 1  # a new run: 1
        resumed = make_plan(cfg, device="cpu")
        assert resumed.resume == "continue" and resumed.device.cpu_threads == cores  # the saved run's threads
    finally:
        torch.set_num_threads(1)


@pytest.mark.slow
def test_single_file_with_the_v_pred_marker_is_v_pred_and_trains(tiny_project, make_config, tiny_sdxl, tmp_path):
    plain = write_single_file(tiny_sdxl, tmp_path / "plain.safetensors")
    sd = load_file(plain)
    sd["v_pred"] = torch.tensor([])  # the marker NoobAI-XL v-pred carries (ComfyUI detects it the same way)
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "noob-like-vpred.safetensors"))
    cfg = make_config(base_model=str(tmp_path / "noob-like-vpred.safetensors"), epochs=1)
    plan = make_plan(cfg, device="cpu")
    assert plan.prediction_type == "v_prediction" and plan.zero_terminal_snr
    assert any(n.name == "prediction" and "v_prediction, zero-terminal SNR on" in n.message for n in plan.notes)
    result = train(plan)
    assert result.status == "finished"
    assert lora_meta(result.final_lora)["ss_v_parameterization"] == "True"
    off = make_plan(cfg.replace(zero_terminal_snr="off"), device="cpu")
    assert off.prediction_type == "v_prediction" and not off.zero_terminal_snr


# -- nothing optional fails mid-run ----------------------------------------------------------------------------

@pytest.mark.slow
def test_without_matplotlib_training_finishes_and_says_the_plot_was_skipped(tiny_project, make_config,
                                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    plan = make_plan(make_config(epochs=1), device="cpu")
    assert plan.ok and any("loss plot (loss.png) will be skipped" in n.message for n in plan.notes)
    result = train(plan)
    assert result.status == "finished" and result.loss_plot is None
    assert "The loss plot was skipped: matplotlib is not installed." in result.message
    assert not (tiny_project.output / "loss.png").exists()


def test_a_missing_optimizer_package_is_a_problem_before_step_one(tiny_project, make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    for optimizer, words in (("AdamW8bit", "optimizer AdamW8bit needs bitsandbytes"),
                             ("Prodigy", "optimizer Prodigy needs prodigyopt")):
        plan = make_plan(make_config(optimizer=optimizer), device="cpu")
        assert not plan.ok and any(words in n.message for n in plan.errors)
        with pytest.raises(ColabkitError, match="nothing was started"):
            train(plan)
    assert not tiny_project.state.exists() or not any(tiny_project.state.iterdir())


# -- the LR schedule on skipped fp16 steps ---------------------------------------------------------------------

@pytest.mark.slow
def test_lr_schedule_does_not_advance_on_skipped_steps(tiny_project, make_config, monkeypatch):
    class Lrs(Reporter):
        def __init__(self):
            self.lrs = []

        def step(self, step, loss, lr, budget_left_s):
            self.lrs.append(lr)

    cfg = make_config(epochs=1, lr_scheduler="linear", lr_warmup_ratio=0.0)
    normal = Lrs()
    train(cfg, reporter=normal, device="cpu")
    assert normal.lrs[0] > normal.lrs[-1]  # a linear decay moves at every step
    from colabkit.train import loop

    # fp16's grad scaler (a real one, on the CPU) finding inf gradients at every step, as on a T4 while it
    # lowers its scale: each step is skipped (test_skip_steps.py drives the scaler path in full)
    real_step = loop.optimizer_step

    def overflowing(optimizer, lr_scheduler, params, max_grad_norm, scaler, loss):
        params[0].grad.view(-1)[0] = float("inf")
        return real_step(optimizer, lr_scheduler, params, max_grad_norm, scaler, loss)

    monkeypatch.setattr(loop, "grad_scaler", lambda accelerator: torch.amp.GradScaler("cpu"))
    monkeypatch.setattr(loop, "optimizer_step", overflowing)
    skipped = Lrs()
    train(cfg.replace(start_over=True), reporter=skipped, device="cpu")
    assert skipped.lrs == [cfg.unet_lr] * len(skipped.lrs)


def test_the_preflight_counts_captions_longer_than_max_token_length(tiny_project, make_config):
    # ~60 WD14-style tags: far beyond 75 tokens (and beyond 225 with the tiny tokenizer, which spells words).
    tags = ", ".join(["houtline"] + [f"tag number {i}" for i in range(60)])
    (tiny_project.dataset / "d0.txt").write_text(tags)
    for limit in (75, 225):
        plan = make_plan(make_config(max_token_length=limit), device="cpu")
        (note,) = [n for n in plan.notes if n.name == "caption length"]
        assert note.level == "warn" and f"1 of 4 captions exceed {limit} tokens" in note.message
        assert ("Set max_token_length to 225" in note.message) == (limit < 225)
    (tiny_project.dataset / "d0.txt").write_text("houtline, " + "a" * 100)
    (note,) = [n for n in make_plan(make_config(), device="cpu").notes if n.name == "caption length"]
    assert note.level == "ok" and "1 of 4 captions exceed 75 tokens; all fit in max_token_length 225" in note.message
