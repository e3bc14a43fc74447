"""Preview sampling on tiny-sdxl: the sampler follows the model (v-prediction, zero terminal SNR, trailing
spacing, guidance rescale), long prompts are chunked like training captions, and the images are finite."""

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from PIL import Image

from colabkit.train.models import load_sdxl, resolve_base_model
from colabkit.train.noise import training_scheduler
from colabkit.train.cache import needed_token_length
from colabkit.train.sample import (
    NEGATIVE,
    generate_grid,
    guidance_rescale,
    preview_pipeline,
    preview_scheduler,
    preview_settings,
    render,
)


@pytest.fixture(scope="module")
def parts(tiny_sdxl):
    return load_sdxl(resolve_base_model("tiny-sdxl"), dtype=torch.float32)


def with_schedule(parts, prediction, ztsnr):
    parts.noise_scheduler = training_scheduler(parts.noise_scheduler.config, prediction, ztsnr)
    return parts


@pytest.fixture
def calls(monkeypatch):
    """The keyword arguments of every pipeline call (the real call still runs)."""
    seen = []
    original = StableDiffusionXLPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append({**kwargs, "scheduler": self.scheduler})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", spy)
    return seen


def test_preview_scheduler_for_ztsnr_vpred_and_plain_models(parts):
    config = training_scheduler(parts.noise_scheduler.config, "epsilon", False).config
    plain = preview_scheduler(config, "epsilon", False)
    # an epsilon model without ZTSNR samples exactly as before: Euler from the training config (SDXL's leading)
    assert dict(plain.config) == dict(EulerDiscreteScheduler.from_config(config).config)
    assert plain.config.timestep_spacing == "leading"
    plain.set_timesteps(4)
    assert plain.timesteps[0].item() == 751

    z = preview_scheduler(config, "v_prediction", True)
    assert z.config.prediction_type == "v_prediction"
    assert z.config.rescale_betas_zero_snr and z.config.timestep_spacing == "trailing"
    z.set_timesteps(4)
    assert z.timesteps[0].item() == 999  # starts from the pure-noise step the model learnt
    assert torch.isfinite(z.sigmas).all()

    assert guidance_rescale(True) == 0.7 and guidance_rescale(False) == 0.0


def test_preview_settings_default_to_the_training_schedule(parts):
    ztsnr_v = training_scheduler(parts.noise_scheduler.config, "v_prediction", True).config
    assert preview_settings(ztsnr_v) == ("v_prediction", True)
    assert preview_settings(ztsnr_v, "epsilon", False) == ("epsilon", False)
    plain = training_scheduler(parts.noise_scheduler.config, "epsilon", False).config
    assert preview_settings(plain) == ("epsilon", False)


@pytest.mark.parametrize("prediction,ztsnr", [("v_prediction", True), ("epsilon", True), ("v_prediction", False),
                                              ("epsilon", False)])
def test_previews_are_finite(parts, calls, prediction, ztsnr):
    with_schedule(parts, prediction, ztsnr)
    pipe = preview_pipeline(parts, parts.unet, *preview_settings(parts.noise_scheduler.config))
    pixels = render(pipe, ["houtline, outline"], 64, 3, 5, "cpu", zero_terminal_snr=ztsnr)
    assert len(pixels) == 1 and pixels[0].shape == (3, 64, 64)
    assert torch.isfinite(pixels[0]).all() and pixels[0].std() > 0
    sched = calls[-1]["scheduler"]
    assert sched.config.prediction_type == prediction
    assert sched.config.timestep_spacing == ("trailing" if ztsnr else "leading")
    assert bool(sched.config.rescale_betas_zero_snr) is ztsnr
    assert calls[-1]["guidance_rescale"] == (0.7 if ztsnr else 0.0)


def test_generate_grid_for_a_ztsnr_vpred_model(parts, calls, tmp_path):
    with_schedule(parts, "v_prediction", True)
    parts.unet.train()
    grid = generate_grid(parts, parts.unet, ["houtline, outline", "houtline, circle"], tmp_path, "e01", 64, 2, 3,
                         "cpu")
    assert grid == tmp_path / "grid-e01.png"
    assert Image.open(grid).size == (128, 64)
    assert (tmp_path / "e01-0.png").is_file() and (tmp_path / "e01-1.png").is_file()
    assert len(calls) == 1  # all prompts in one batched pipeline call
    for c in calls:
        assert c["scheduler"].config.prediction_type == "v_prediction"
        assert c["scheduler"].config.timestep_spacing == "trailing"
        assert c["guidance_rescale"] == 0.7
    assert parts.unet.training  # put back in training mode after sampling in eval mode
    # the settings can also be given explicitly (the training schedule is epsilon/plain here)
    calls.clear()
    with_schedule(parts, "epsilon", False)
    generate_grid(parts, parts.unet, ["houtline"], tmp_path, "e02", 64, 2, 3, "cpu", prediction_type="v_prediction",
                  zero_terminal_snr=True)
    assert calls[0]["scheduler"].config.timestep_spacing == "trailing"


def test_long_preview_prompts_are_chunked_like_captions(parts, calls):
    with_schedule(parts, "epsilon", False)
    tok = parts.tokenizer
    short, long = "houtline, outline", ", ".join(f"t{i:03d}" for i in range(30))  # 17 and 149 tokens
    assert needed_token_length(tok, [short, NEGATIVE], 225) == 75  # NEGATIVE: 70 tokens
    assert needed_token_length(tok, [long, NEGATIVE], 225) == 150
    assert needed_token_length(tok, [long, NEGATIVE], 75) == 75
    pipe = preview_pipeline(parts, parts.unet, "epsilon", False)
    pixels = render(pipe, [short, long], 64, 2, 0, "cpu", zero_terminal_snr=False, max_token_length=225)
    assert all(torch.isfinite(p).all() for p in pixels)
    # one batched call, both prompts at the longest one's chunk count
    assert len(calls) == 1
    assert calls[0]["prompt_embeds"].shape[:2] == (2, 152)
    assert calls[0]["negative_prompt_embeds"].shape[:2] == (2, 152)


def test_batched_previews_equal_the_one_by_one_images(parts, calls):
    with_schedule(parts, "epsilon", False)
    pipe = preview_pipeline(parts, parts.unet, "epsilon", False)
    prompts = ["houtline, outline", "houtline, circle", "houtline, simple background"]
    batched = render(pipe, prompts, 64, 2, 7, "cpu", zero_terminal_snr=False)
    assert len(calls) == 1 and len(calls[0]["generator"]) == 3  # one call, one generator (seed + i) per image
    one_by_one = [render(pipe, [p], 64, 2, 7 + i, "cpu", zero_terminal_snr=False)[0] for i, p in enumerate(prompts)]
    for b, o in zip(batched, one_by_one):
        torch.testing.assert_close(b, o, rtol=1e-4, atol=1e-4)
    assert (batched[0] - batched[1]).abs().max() > 1e-3  # different prompts and seeds: different images


def test_previews_fall_back_to_one_by_one_when_the_batch_does_not_fit(parts, monkeypatch):
    with_schedule(parts, "epsilon", False)
    pipe = preview_pipeline(parts, parts.unet, "epsilon", False)
    prompts = ["houtline, outline", "houtline, circle"]
    expected = render(pipe, prompts, 64, 2, 7, "cpu", zero_terminal_snr=False)
    original, sizes = StableDiffusionXLPipeline.__call__, []

    def small_gpu(self, *args, **kwargs):
        sizes.append(kwargs["prompt_embeds"].shape[0])
        if sizes[-1] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", small_gpu)
    got = render(pipe, prompts, 64, 2, 7, "cpu", zero_terminal_snr=False)
    assert sizes == [2, 1, 1]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_a_prompt_cut_at_max_token_length_is_said_once_per_call(parts, capsys):
    from colabkit.train.sample import prompt_kwargs

    pipe = preview_pipeline(parts, parts.unet, "epsilon", False)
    long = ", ".join(f"t{i:03d}" for i in range(50))  # 249 tokens: 24 past 225
    short = "houtline, outline"
    prompt_kwargs(pipe, [short], NEGATIVE, "cpu", 225)
    assert capsys.readouterr().out == ""  # nothing cut, nothing said
    kw = prompt_kwargs(pipe, [short, long], NEGATIVE, "cpu", 225)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "1 prompt(s) have more than 225 tokens and are cut there" in out
    assert "249 tokens" in out and '"t000, t001, t002' in out
    assert kw["prompt_embeds"].shape[1] == 227  # still encoded: the first 225 tokens
    prompt_kwargs(pipe, [long], NEGATIVE, "cpu", 75)
    assert "more than 75 tokens" in capsys.readouterr().out
