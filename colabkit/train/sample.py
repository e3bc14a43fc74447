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


ZTSNR_GUIDANCE_RESCALE = 0.7  # Lin et al. 2023 sec. 3.4 and diffusers' advice for zero-terminal-SNR models


def preview_settings(scheduler_config, prediction_type: str | None = None,
                     zero_terminal_snr: bool | None = None) -> tuple[str, bool]:
    """(prediction_type, zero_terminal_snr) for previews: as given, else what the training schedule says."""
    cfg = dict(scheduler_config)
    pred = prediction_type or cfg.get("prediction_type", "epsilon")
    ztsnr = bool(cfg.get("rescale_betas_zero_snr", False)) if zero_terminal_snr is None else bool(zero_terminal_snr)
    return pred, ztsnr


def preview_scheduler(scheduler_config, prediction_type: str, zero_terminal_snr: bool):
    """The previews' sampler: Euler on the training schedule's betas, predicting what the model predicts.

    With zero terminal SNR the schedule is rescaled the same way and the steps are spaced "trailing", so sampling
    starts at t = 999, the pure-noise step the model learnt (Lin et al. 2023 sec. 3.3; with SDXL's "leading"
    spacing the first step is t = 751 at 4 steps, and the image starts from noise the model never saw there).
    """
    from diffusers import EulerDiscreteScheduler

    cfg = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
    cfg.update(prediction_type=prediction_type, rescale_betas_zero_snr=bool(zero_terminal_snr))
    if zero_terminal_snr:
        cfg["timestep_spacing"] = "trailing"
    return EulerDiscreteScheduler.from_config(cfg)


def guidance_rescale(zero_terminal_snr: bool) -> float:
    """Classifier-free guidance rescale: 0.7 for zero-terminal-SNR models (without it their images come out
    over-exposed, Lin et al. 2023 sec. 3.4), 0 (off, diffusers' default) otherwise."""
    return ZTSNR_GUIDANCE_RESCALE if zero_terminal_snr else 0.0


def preview_pipeline(parts, unet, prediction_type: str, zero_terminal_snr: bool):
    """An SDXL pipeline over the weights already in memory, with the previews' sampler."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=unet,
        scheduler=preview_scheduler(parts.noise_scheduler.config, prediction_type, zero_terminal_snr))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_kwargs(pipe, prompts: list[str], negative: str, device, max_token_length: int = 225) -> dict:
    """The SDXL pipeline's text conditioning for ``prompts`` (one batch) and one ``negative`` prompt, encoded as
    training encodes captions: up to ``max_token_length`` tokens in 75-token chunks (``encode_prompts``), where
    the pipeline's own text path cuts at 77 tokens. A1111/Forge and ComfyUI also chunk long prompts.

    All prompts and the negative get the same chunk count (enough for the longest, ``cache.needed_token_length``;
    a batch must have one length, as A1111 pads a batch's prompts to one chunk count): prompts of up to 75
    tokens give exactly the pipeline's own 77-token encoding. An empty negative gives zeros, as diffusers does
    for SDXL (``force_zeros_for_empty_prompt``), not the encoding of "". The embeddings are in the UNet's dtype
    (float16 text encoders and UNet on a GPU in step 3). Returns the keyword arguments ``prompt_embeds``,
    ``pooled_prompt_embeds``, ``negative_prompt_embeds``, ``negative_pooled_prompt_embeds``.
    """
    import torch

    from colabkit.train.cache import encode_prompts, needed_token_length

    encoders = [pipe.text_encoder, pipe.text_encoder_2]
    tokenizers = [pipe.tokenizer, pipe.tokenizer_2]
    zeros = not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", True)
    warn_cut_prompts(pipe.tokenizer, list(prompts) + ([negative] if negative else []), max_token_length)
    n = needed_token_length(pipe.tokenizer, list(prompts) + ([] if zeros else [negative]), max_token_length)
    dtype = pipe.unet.dtype
    with torch.no_grad():
        embeds, pooled = encode_prompts(list(prompts), tokenizers, encoders, device, n)
        embeds, pooled = embeds.to(device, dtype), pooled.to(device, dtype)
        if zeros:
            neg, neg_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
        else:
            neg, neg_pooled = encode_prompts([negative], tokenizers, encoders, device, n)
            neg = neg.to(device, dtype).expand_as(embeds).contiguous()
            neg_pooled = neg_pooled.to(device, dtype).expand_as(pooled).contiguous()
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "negative_prompt_embeds": neg,
            "negative_pooled_prompt_embeds": neg_pooled}


def cut_prompt_warning(tokenizer, texts: list[str], max_token_length: int) -> str | None:
    """What to tell the user when some of ``texts`` have more tokens than are encoded (None: all fit)."""
    from colabkit.i18n import _
    from colabkit.train.cache import token_count

    counts = [(t, token_count(tokenizer, t)) for t in texts]
    over = [(t, n) for t, n in counts if n > max_token_length]
    if not over:
        return None
    text, n = max(over, key=lambda tn: tn[1])
    return _("{count} prompt(s) have more than {limit} tokens and are cut there: the words after it are not used "
             "(the longest has {n} tokens and begins \"{start}\"). Shorten them (fewer, more specific tags).").format(
        count=len(over), limit=max_token_length, n=n, start=text[:40])


def warn_cut_prompts(tokenizer, texts: list[str], max_token_length: int) -> str | None:
    """Shows ``cut_prompt_warning`` (notebook or terminal) when there is one, and returns it."""
    message = cut_prompt_warning(tokenizer, texts, max_token_length)
    if message:
        from colabkit import display

        display.show_text(message, "warn")
    return message


def render(pipe, prompts: list[str], resolution: int, steps: int, seed: int, device, *, zero_terminal_snr: bool,
           max_token_length: int = 75) -> list:
    """Decoded images ([3, H, W] float tensors, about -1..1), one per prompt, seed + i for prompt i.

    All prompts go through the UNet in one pipeline call (one generator per image keeps each image's seed), with
    long prompts in 75-token chunks as training encodes captions (the batch at the longest prompt's chunk count).
    """
    import torch

    vae = pipe.vae
    if not prompts:
        return []
    def sample(indices: list[int]):
        return pipe(**prompt_kwargs(pipe, [prompts[i] for i in indices], NEGATIVE, device, max_token_length),
                    height=resolution, width=resolution, num_inference_steps=steps, guidance_scale=7.0,
                    guidance_rescale=guidance_rescale(zero_terminal_snr), output_type="latent",
                    generator=[torch.Generator().manual_seed(seed + i) for i in indices]).images

    with torch.no_grad():
        try:
            latents = sample(list(range(len(prompts))))
        except torch.OutOfMemoryError:
            # The batch did not fit beside the training state (a T4 at 1024 px): one prompt at a time, same seeds
            if len(prompts) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            latents = torch.cat([sample([i]) for i in range(len(prompts))])
        # Decoded one at a time (the VAE's activations at full size are the memory peak), in the VAE's own dtype
        # (fp32 unless fp16-fix) and outside any autocast: the stock SDXL VAE turns fp16 activations into NaN.
        with torch.autocast(device_type=torch.device(device).type, enabled=False):
            return [vae.decode(lat[None].to(vae.dtype) / vae.config.scaling_factor).sample[0].float()
                    for lat in latents]


def generate_grid(parts, unet, prompts: list[str], folder: Path, tag: str, resolution: int, steps: int,
                  seed: int, device, *, prediction_type: str | None = None, zero_terminal_snr: bool | None = None,
                  max_token_length: int = 75) -> Path:
    """Render the prompts with a fixed seed and save them and their grid; returns the grid's path.

    ``prediction_type``/``zero_terminal_snr`` default to what the training schedule (``parts.noise_scheduler``)
    says. The VAE and text encoders visit the GPU only for this and go back where they were.
    """
    import torch

    prediction, ztsnr = preview_settings(parts.noise_scheduler.config, prediction_type, zero_terminal_snr)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the training step's freed activations, before sampling allocates
    movable = [parts.vae, parts.text_encoder, parts.text_encoder_2]
    homes = [next(m.parameters()).device for m in movable]
    for m in movable:
        m.to(device)
    was_training = unet.training
    unet.eval()
    try:
        pipe = preview_pipeline(parts, unet, prediction, ztsnr)
        pixels = render(pipe, prompts, resolution, steps, seed, device, zero_terminal_snr=ztsnr,
                        max_token_length=max_token_length)
        images = [pipe.image_processor.postprocess(p[None], output_type="pil")[0] for p in pixels]
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
