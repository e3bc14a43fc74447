"""The VRAM estimate: its calibration points, monotonicity, and advice that actually brings it under the GPU."""

import pytest

from colabkit.train.memory import SDXL_TE_PARAMS, SDXL_UNET_PARAMS, T4_GB, estimate_vram

# The setup public figures are about: SDXL LoRA at 1024 px, batch 1, fp16, gradient checkpointing,
# cached latents and text-encoder outputs, AdamW8bit.
T4_DEFAULT = dict(resolution=1024, batch_size=1, network_dim=32, lora_type="LoRA", train_text_encoder=False,
                  mixed_precision="fp16", gradient_checkpointing=True, cache_latents=True,
                  cache_text_embeddings=True, optimizer="AdamW8bit")


def plan(**changes):
    return estimate_vram(**{**T4_DEFAULT, **changes})


def test_calibration_points():
    training_only = plan(sample_images=False)
    assert 7.5 <= training_only.total_gb <= 10  # sd-scripts: "8GB ... (10GB recommended)"
    with_previews = plan()
    assert 10 <= with_previews.total_gb <= 12.5 and with_previews.fits(T4_GB)  # Colab T4 reports: 10-12 GB, fits
    assert with_previews.advice == []
    no_ckpt = plan(gradient_checkpointing=False, sample_images=False)
    assert not no_ckpt.fits(16)  # OOMs on a 16 GB card
    assert plan(gradient_checkpointing=False, batch_size=4, sample_images=False).total_gb > 24


def test_parts_add_up():
    p = plan()
    assert abs(sum(p.parts.values()) - p.total_gb) < 0.01
    assert p.parts["unet weights"] == pytest.approx(SDXL_UNET_PARAMS * 2 / 2**30, abs=1e-3)
    assert p.parts["text encoders"] == 0  # cached: they leave the GPU
    assert plan(cache_text_embeddings=False).parts["text encoders"] == pytest.approx(SDXL_TE_PARAMS * 2 / 2**30,
                                                                                    abs=1e-3)
    assert "about" in p.summary()


def test_the_colabkit_default_fits_a_t4():
    # TrainConfig's defaults: batch 2, dim 16, tags shuffled (text embeddings not cached), AdamW8bit.
    p = plan(batch_size=2, network_dim=16, cache_text_embeddings=False)
    assert p.fits(T4_GB) and p.total_gb < T4_GB - 1.5


@pytest.mark.parametrize("previews", [False, True])
def test_monotonic_in_batch_and_resolution(previews):
    by_batch = [plan(batch_size=b, sample_images=previews).total_gb for b in (1, 2, 3, 4, 6, 8)]
    by_res = [plan(resolution=r, sample_images=previews).total_gb for r in (512, 640, 768, 896, 1024, 1280)]
    assert by_batch == sorted(by_batch) and by_res == sorted(by_res)
    if not previews:  # strictly: each step up costs memory
        assert len(set(by_batch)) == len(by_batch) and len(set(by_res)) == len(by_res)
    for ckpt in (True, False):
        more = [plan(batch_size=b, gradient_checkpointing=ckpt, sample_images=False).total_gb for b in (1, 2, 4)]
        assert more == sorted(more)


def test_each_saving_lowers_the_estimate():
    base = plan(gradient_checkpointing=False, cache_text_embeddings=False, cache_latents=False, optimizer="AdamW",
                batch_size=2, network_dim=64)
    for change in (dict(gradient_checkpointing=True), dict(cache_text_embeddings=True), dict(cache_latents=True),
                   dict(optimizer="AdamW8bit"), dict(batch_size=1), dict(network_dim=16), dict(resolution=768)):
        smaller = estimate_vram(**{**T4_DEFAULT, **dict(gradient_checkpointing=False, cache_text_embeddings=False,
                                                         cache_latents=False, optimizer="AdamW", batch_size=2,
                                                         network_dim=64), **change})
        assert smaller.total_gb < base.total_gb, change


def test_options_that_cost_more():
    assert plan(train_text_encoder=True).total_gb > plan().total_gb
    assert plan(lora_type="LoCon").total_gb > plan().total_gb
    assert plan(mixed_precision="no").total_gb > plan().total_gb + 4  # fp32 weights: 2x the UNet
    assert plan(mixed_precision="bf16").total_gb == plan().total_gb
    assert plan(resolution=(1216, 832)).total_gb < plan(resolution=1216).total_gb


def test_advice_for_a_config_that_does_not_fit():
    silly = plan(gradient_checkpointing=False, batch_size=4, cache_text_embeddings=False, optimizer="AdamW",
                 resolution=1024, network_dim=128)
    assert not silly.fits(T4_GB)
    text = " ".join(silly.advice)
    for hint in ("gradient_checkpointing", "train_batch_size", "text embeddings", "resolution"):
        assert hint in text, hint
    assert silly.advice[0].startswith("Turn on gradient_checkpointing")  # the biggest saving comes first
    # Following the advice together does fit.
    assert "network_dim" in text
    fixed = plan(gradient_checkpointing=True, batch_size=1, network_dim=16, optimizer="AdamW8bit")
    assert fixed.fits(T4_GB)


def test_advice_names_batch_size_that_fits():
    p = plan(batch_size=12, cache_text_embeddings=False)
    assert not p.fits(T4_GB)
    tip = next(t for t in p.advice if "train_batch_size" in t)
    b = int(tip.split("train_batch_size to ")[1].split()[0])
    assert plan(batch_size=b, cache_text_embeddings=False).fits(T4_GB)
    assert not plan(batch_size=b + 1, cache_text_embeddings=False).fits(T4_GB)


def test_notes_and_bad_input():
    assert any("bf16" in a for a in plan(mixed_precision="bf16").advice)
    assert any("cannot be cached" in a for a in plan(train_text_encoder=True, cache_text_embeddings=True).advice)
    with pytest.raises(ValueError):
        plan(batch_size=0)
    with pytest.raises(ValueError):
        plan(mixed_precision="fp8")
    big_gpu = estimate_vram(**{**T4_DEFAULT, "gradient_checkpointing": False}, gpu_gb=80)
    assert big_gpu.fits() and big_gpu.advice == []
