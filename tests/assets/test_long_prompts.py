"""Step 3's prompts are encoded as training encoded the captions: long prompts in 75-token chunks, not cut at 77
tokens by the pipeline's own text path; short prompts give the pipeline's own pictures."""

import logging

import numpy as np
import pytest
import torch

from colabkit.assets.pipeline import load_pipeline, render
from colabkit.train.sample import prompt_kwargs

FILLER = ", ".join(f"tag{i:02d}" for i in range(14))  # tiny-sdxl's tokenizer is char-level: ~80 tokens


@pytest.fixture
def loaded(tiny_sdxl):
    return load_pipeline("tiny-sdxl", device="cpu")


@pytest.fixture
def diffusers_warnings():
    """Warnings the diffusers loggers write (they do not propagate to the root logger)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("diffusers")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def _picture(loaded, prompt, negative=""):
    image = render(loaded, prompt, negative, width=64, height=64, steps=2, guidance_scale=7.0, seed=3,
                   sampler="Euler")
    return np.asarray(image, dtype=np.int16)


def _latents(pipe, **kwargs):
    with torch.no_grad():
        return pipe(**kwargs, height=64, width=64, num_inference_steps=2, guidance_scale=7.0, output_type="latent",
                    generator=torch.Generator().manual_seed(3)).images


def test_a_tag_after_token_77_changes_the_picture(loaded, diffusers_warnings):
    tok = loaded.pipe.tokenizer
    red, blue = f"houtline, {FILLER}, red hair", f"houtline, {FILLER}, blue hair"
    assert len(tok(red, add_special_tokens=False, verbose=False).input_ids) > 90
    assert tok(red, truncation=True).input_ids == tok(blue, truncation=True).input_ids  # same first 77 tokens

    # the pipeline's own text path cuts both at 77 tokens (with a warning): the same latents
    assert torch.equal(_latents(loaded.pipe, prompt=red), _latents(loaded.pipe, prompt=blue))
    assert any("truncated" in r.getMessage() for r in diffusers_warnings)
    diffusers_warnings.clear()

    a, b = _picture(loaded, red, "lowres"), _picture(loaded, blue, "lowres")
    assert np.abs(a - b).max() > 0
    assert not any("truncated" in r.getMessage() for r in diffusers_warnings)


@pytest.mark.parametrize("negative", ["lowres, bad anatomy", ""])
def test_a_short_prompt_gives_the_pipelines_own_picture(loaded, negative):
    pipe = loaded.pipe
    ours = prompt_kwargs(pipe, ["houtline, red hair"], negative, "cpu")
    assert ours["prompt_embeds"].shape[1] == 77 and ours["negative_prompt_embeds"].shape == ours["prompt_embeds"].shape
    if not negative:  # diffusers' SDXL: zeros for an empty negative (force_zeros_for_empty_prompt), not ""
        assert not ours["negative_prompt_embeds"].any() and not ours["negative_pooled_prompt_embeds"].any()
    theirs = _latents(pipe, prompt="houtline, red hair", negative_prompt=negative or None)
    torch.testing.assert_close(_latents(pipe, **ours), theirs, rtol=1e-4, atol=1e-5)


def test_embeddings_follow_the_unets_dtype(loaded):
    pipe = loaded.pipe
    pipe.unet.to(torch.float16)
    try:
        kw = prompt_kwargs(pipe, [f"houtline, {FILLER}"], "lowres", "cpu")
    finally:
        pipe.unet.to(torch.float32)
    assert {v.dtype for v in kw.values()} == {torch.float16}
    assert kw["prompt_embeds"].shape[1] == 152 == kw["negative_prompt_embeds"].shape[1]


def test_generate_keeps_a_long_prompt_whole_in_the_picture_and_its_parameters(lora_project):
    from PIL import Image

    from colabkit.assets.config import GenerateConfig
    from colabkit.assets.generate import generate_images, read_parameters

    long = f"houtline, {FILLER}, red hair"
    cfg = GenerateConfig(project_name="houtline", base_model="tiny-sdxl", size="64x64", steps=2, num_images=1,
                         seed=5, lora_file="none", prompt=long)
    red = generate_images(cfg, device="cpu")[0]
    blue = generate_images(cfg.replace(prompt=long.replace("red", "blue")), device="cpu")[0]
    info = read_parameters(red)
    assert info["prompt"] == long and info["negative_prompt"] == cfg.negative_prompt  # A1111's text round-trips
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (red, blue))
    assert np.abs(a - b).max() > 0
