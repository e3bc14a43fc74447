"""The SDXL pipeline for step 3: the same ``base_model`` choices as training, the project's LoRA files as adapters.

Loading goes through training's own resolve/load (presets, URLs, Drive paths, single files, tiny-sdxl), so a model
downloaded for training is found again on Drive. On a GPU the UNet and text encoders run in float16 while the VAE
stays in float32 and decodes outside any autocast: the stock SDXL VAE overflows to NaN (black pictures) in float16.
The pipeline is kept between calls (one at a time), so the compare and generate cells load the 7 GB model once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from colabkit.errors import ColabkitError
from colabkit.train.models.load import quiet_diffusers
from colabkit.i18n import _

_CACHE: dict[str, Any] = {}


@dataclass
class Loaded:
    pipe: Any  # StableDiffusionXLPipeline
    model_name: str  # for people: the preset's or file's name
    device: str
    model_hash: str | None = None  # A1111's "Model hash": the first 10 hex digits of the file's sha256, when known
    zero_terminal_snr: bool = False
    loras: dict[str, Path] = field(default_factory=dict)  # adapter name -> file
    checkpoint: str = ""  # the PNG's "Model:" field as A1111 writes it: the checkpoint file's name without extension


def pick_device(device: str | None = None) -> tuple[str, Any]:
    """(device, dtype): float16 on a GPU (a T4 has no bfloat16 speed), float32 on the CPU."""
    import torch

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return dev, (torch.float16 if dev.startswith("cuda") else torch.float32)


def load_pipeline(base_model: str, models_dir: Path | None = None, prediction_type: str = "auto",
                  device: str | None = None, dtype=None) -> Loaded:
    """The SDXL pipeline of ``base_model`` on ``device`` (the GPU if there is one), reused while unchanged.

    ``dtype`` of the UNet and text encoders: float16 on a GPU, float32 on the CPU unless given; the VAE
    is float32 whatever it is.
    """
    import torch
    from diffusers import StableDiffusionXLPipeline

    from colabkit.train import models

    dev, dtype = pick_device(device)[0], dtype or pick_device(device)[1]
    resolved = models.resolve_base_model(base_model, models_dir=models_dir, keep_on_drive=True,
                                         prediction_type=prediction_type)
    key = f"{resolved.path}|{resolved.prediction_type}|{dev}|{dtype}"
    cached = _CACHE.get("loaded")
    if cached is not None and _CACHE.get("key") == key:
        return cached
    _CACHE.clear()
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    parts = models.load_sdxl(resolved, dtype=dtype, device=dev)
    pipe = StableDiffusionXLPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=parts.unet,
        scheduler=make_scheduler("Euler", parts.noise_scheduler.config), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    loaded = Loaded(pipe=pipe, model_name=resolved.name, device=dev, checkpoint=a1111_model_name(resolved),
                    model_hash=resolved.sha256[:10] if resolved.sha256 else None,
                    zero_terminal_snr=resolved.zero_terminal_snr)
    if not dev.startswith("cuda") and resolved.source != "builtin":
        from colabkit import display

        display.show_text(_("No GPU: each SDXL picture takes many minutes on the CPU. In Colab: Runtime > Change "
                            "runtime type > T4 GPU, then run the notebook again."), "warn")
    _CACHE.update(key=key, loaded=loaded)
    return loaded


def a1111_model_name(resolved) -> str:
    """A1111's ``Model:`` value: the checkpoint file's name without its extension (``sd_xl_base_1.0``), the
    folder's name for a diffusers folder; a built-in model's own name."""
    if resolved.source == "builtin":
        return resolved.name
    path = Path(resolved.path)
    return path.stem if path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".bin") else path.name


def make_scheduler(sampler: str, config):
    """A diffusers scheduler for an A1111 sampler name, on the model's own noise schedule."""
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    config = dict(config)
    # Inference needs the last timestep when the schedule reaches zero SNR (v-prediction models trained so).
    if config.get("rescale_betas_zero_snr"):
        config["timestep_spacing"] = "trailing"
    if sampler == "DPM++ 2M Karras":
        return DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True, algorithm_type="dpmsolver++")
    if sampler == "DPM++ 2M SDE Karras":
        return DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True,
                                                       algorithm_type="sde-dpmsolver++")
    if sampler == "Euler a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if sampler == "Euler":
        return EulerDiscreteScheduler.from_config(config)
    raise ColabkitError(_("Unknown sampler {sampler!r}.").format(sampler=sampler))


def use_loras(loaded: Loaded, weights: dict[Path, float]) -> None:
    """Make exactly these LoRA files active at these weights (loading each once, dropping the others)."""
    pipe = loaded.pipe
    wanted = {_adapter_name(p): (Path(p), w) for p, w in weights.items()}
    for name in [n for n in loaded.loras if n not in wanted]:
        pipe.delete_adapters(name)
        del loaded.loras[name]
    for name, (path, _weight) in wanted.items():  # not `_`: that is gettext here
        if name not in loaded.loras:
            from colabkit.train.lora.export import load_kohya_into_pipeline

            try:
                with quiet_diffusers():  # diffusers warns for each text encoder a UNet-only LoRA leaves alone
                    load_kohya_into_pipeline(pipe, path, adapter_name=name)
            except (ValueError, KeyError, RuntimeError, OSError) as e:
                raise ColabkitError(_("Could not load the LoRA {name} into {model_name} ({error}). Is it an SDXL "
                                      "LoRA? A LoRA for SD 1.5 or Flux does not fit an SDXL model.").format(
                                        name=path.name, model_name=loaded.model_name, error=str(e).splitlines()[0][:200])) from None
            loaded.loras[name] = path
    if wanted:
        pipe.set_adapters(list(wanted), [w for _, w in wanted.values()])
    elif loaded.loras:
        pipe.disable_lora()


def _adapter_name(path: Path) -> str:
    import hashlib

    # peft adapter names become module attribute names: no dots. The hash keeps same-named files apart, and a
    # file rewritten since (training went on in between) is loaded again, not served from the old adapter.
    st = Path(path).stat()
    key = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return "lora_" + hashlib.sha1(key.encode()).hexdigest()[:12]


@contextlib.contextmanager
def seamless(pipe, on: bool) -> Iterator[None]:
    """Tileable output: every 2-D convolution of the UNet and VAE pads circularly (wraps around the edges)."""
    import torch

    convs = [m for model in (pipe.unet, pipe.vae) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    old = [m.padding_mode for m in convs]
    if on:
        for m in convs:
            m.padding_mode = "circular"
    try:
        yield
    finally:
        for m, mode in zip(convs, old):
            m.padding_mode = mode


def render(loaded: Loaded, prompt: str, negative_prompt: str, *, width: int, height: int, steps: int,
           guidance_scale: float, seed: int, sampler: str):
    """One picture (PIL, RGB). The seed drives a CPU generator: the same seed gives the same picture on any GPU."""
    import torch

    from colabkit.train.sample import guidance_rescale, prompt_kwargs

    pipe = loaded.pipe
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    with torch.no_grad():
        # Long prompts in 75-token chunks, as training encoded the captions (the pipeline's text path cuts at 77)
        text = prompt_kwargs(pipe, [prompt], negative_prompt, loaded.device)
        latents = pipe(**text, height=height, width=width,
                       num_inference_steps=steps, guidance_scale=guidance_scale, output_type="latent",
                       guidance_rescale=guidance_rescale(loaded.zero_terminal_snr),
                       generator=torch.Generator().manual_seed(int(seed))).images
        return decode(pipe, latents)


def decode(pipe, latents):
    """Latents -> PIL picture in the VAE's own dtype (float32 for the stock SDXL VAE), as training's previews do."""
    import torch

    if not torch.isfinite(latents).all():
        raise ColabkitError(_("The UNet's output overflowed to NaN in float16 before decoding: the LoRA is too "
                              "strong at this weight, or damaged. Lower lora_scale (0.6-0.8), or try an earlier "
                              "epoch's file."))
    vae = pipe.vae
    with torch.autocast(device_type=latents.device.type, enabled=False):
        pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    image = pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0]
    if not torch.isfinite(pixels).all():
        raise ColabkitError(_("The VAE decoded NaN (a black picture). The stock SDXL VAE does so in float16; "
                              "colabkit keeps it in float32, so this checkpoint's VAE is damaged: try the base "
                              "model's own file."))
    return image
