"""Preview images during training, with the weights already in memory (no second model copy)."""

from __future__ import annotations

import io
from pathlib import Path

from colabkit import files

NEGATIVE = "lowres, bad anatomy, worst quality, low quality, jpeg artifacts, watermark, text"


def default_prompts(activation_tag: str, frequency: dict[str, int], n: int = 3) -> list[str]:
    """The activation tag plus the dataset's most frequent tags, in a few mixes."""
    tags = [t for t in frequency if t != activation_tag]
    head = [activation_tag] if activation_tag else []
    prompts = [", ".join(head + tags[:6])]
    if len(tags) > 6:
        prompts.append(", ".join(head + tags[:2] + tags[6:10]))
    prompts.append(", ".join(head + ["simple background", "white background"] + tags[:2]))
    return [p for p in prompts if p][:n]


def generate_grid(parts, unet, prompts: list[str], folder: Path, tag: str, resolution: int, steps: int,
                  seed: int, device) -> Path:
    """Render the prompts with a fixed seed and save them and their grid; returns the grid's path.

    The VAE and text encoders visit the GPU only for this and go back where they were.
    """
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the training step's freed activations, before sampling allocates
    movable = [parts.vae, parts.text_encoder, parts.text_encoder_2]
    homes = [next(m.parameters()).device for m in movable]
    for m in movable:
        m.to(device)
    was_training = unet.training
    unet.eval()
    try:
        pipe = StableDiffusionXLPipeline(
            vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
            tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=unet,
            scheduler=EulerDiscreteScheduler.from_config(parts.noise_scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        images = []
        vae = parts.vae
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                latents = pipe(prompt, negative_prompt=NEGATIVE, height=resolution, width=resolution,
                               num_inference_steps=steps, guidance_scale=7.0, output_type="latent",
                               generator=torch.Generator().manual_seed(seed + i)).images
                # Decoded here, in the VAE's own dtype (fp32 unless fp16-fix) and outside any autocast:
                # the stock SDXL VAE turns fp16 activations into NaN, i.e. black previews.
                pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
                images.append(pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0])
        del pipe
    finally:
        unet.train(was_training)
        for m, home in zip(movable, homes):
            m.to(home)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for i, im in enumerate(images):
        files.write_bytes(folder / f"{tag}-{i}.png", _png(im))
    return files.write_bytes(folder / f"grid-{tag}.png", _png(make_grid(images)))


def make_grid(images, cols: int | None = None):
    from PIL import Image

    cols = cols or len(images)
    rows = -(-len(images) // cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
