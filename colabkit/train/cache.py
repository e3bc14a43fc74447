"""Latents and text embeddings, computed once and kept (on Drive when asked) for the next day.

Each latent file is named by the image's content hash, its bucket, flip and the VAE, so a changed
image invalidates only its own entry and an unchanged dataset re-uses everything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

from colabkit import files
from colabkit.dataset.images import load_rgb
from colabkit.train.data import Item

Progress = Callable[[Iterable], Iterable]


def cache_root(project, cache_to_drive: bool) -> Path:
    """On Drive (survives the runtime: tomorrow skips the encoding) or on the runtime's local disk."""
    return project.cache if cache_to_drive else Path.home() / ".cache" / "colabkit" / "latents" / project.slug


def model_key(base_model_fingerprint: str, vae_fp16_fix: bool) -> str:
    """What the cached tensors depend on besides the image: the model's weights and which VAE."""
    return f"{base_model_fingerprint}|fp16fix={vae_fp16_fix}"


def _identity(it):
    return it


def image_tensor(item: Item, flip: bool):
    """The image resized to cover its bucket, centre-cropped, as a [3, H, W] tensor in [-1, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    fit = item.fit
    im = load_rgb(item.path).resize(fit.resized, Image.Resampling.LANCZOS)
    bw, bh = fit.bucket
    im = im.crop((fit.crop_left, fit.crop_top, fit.crop_left + bw, fit.crop_top + bh))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)
    return arr / 127.5 - 1.0


def time_ids(item: Item) -> list[int]:
    """SDXL's micro-conditioning: original size, crop top-left, target size (all height first)."""
    w, h = item.size
    bw, bh = item.fit.bucket
    return [h, w, item.fit.crop_top, item.fit.crop_left, bh, bw]


class LatentCache:
    def __init__(self, folder: Path, model_key: str):
        self.folder = folder
        self.model_key = hashlib.sha256(model_key.encode()).hexdigest()[:12]

    def path(self, item: Item, flip: bool) -> Path:
        bw, bh = item.fit.bucket
        return self.folder / f"{item.sha256[:24]}-{bw}x{bh}-{'f' if flip else 'n'}-{self.model_key}.safetensors"

    def missing(self, items: list[Item], flip_aug: bool) -> list[tuple[Item, bool]]:
        flips = (False, True) if flip_aug else (False,)
        return [(it, f) for it in items for f in flips if not self.path(it, f).exists()]

    def build(self, items: list[Item], flip_aug: bool, vae, device, dtype, progress: Progress = _identity) -> int:
        """Encode what is missing; returns how many latents were computed."""
        import torch

        todo = self.missing(items, flip_aug)
        for item, flip in progress(todo):
            pixels = image_tensor(item, flip).unsqueeze(0).to(device=device, dtype=dtype)
            with torch.no_grad():
                # The mean, not a sample: the cache must be the same every day for exact resume.
                latent = vae.encode(pixels).latent_dist.mean[0] * vae.config.scaling_factor
            if not torch.isfinite(latent).all():
                raise FloatingPointError(
                    f"The VAE produced NaN/inf for {item.path.name}. The stock SDXL VAE overflows in fp16: "
                    "set vae_fp16_fix or let the VAE run in fp32.")
            files.save_safetensors(self.path(item, flip), {"latent": latent.float().cpu().contiguous()})
        return len(todo)

    def load(self, items: list[Item], flip_aug: bool) -> dict[tuple[int, bool], "object"]:
        from safetensors.torch import load_file

        flips = (False, True) if flip_aug else (False,)
        return {(i, f): load_file(self.path(it, f))["latent"] for i, it in enumerate(items) for f in flips}


def encode_prompts(captions: list[str], tokenizers, text_encoders, device):
    """SDXL text conditioning: both encoders' penultimate hidden states side by side, plus the pooled
    projection of the second. Returns (prompt_embeds [B, 77, 2048], pooled [B, 1280])."""
    import torch

    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        if hasattr(out, "text_embeds"):
            pooled = out.text_embeds
    return torch.cat(hidden, dim=-1), pooled


class TextCache:
    """Embeddings of fixed captions (no tag shuffle), in memory and on disk beside the latents."""

    def __init__(self, folder: Path, model_key: str):
        self.folder = folder
        self.model_key = model_key

    def path(self, caption: str) -> Path:
        key = hashlib.sha256(f"{self.model_key}\0{caption}".encode()).hexdigest()[:32]
        return self.folder / f"text-{key}.safetensors"

    def build(self, captions: list[str], tokenizers, text_encoders, device, progress: Progress = _identity) -> int:
        import torch

        todo = sorted({c for c in captions if not self.path(c).exists()})
        for caption in progress(todo):
            with torch.no_grad():
                embeds, pooled = encode_prompts([caption], tokenizers, text_encoders, device)
            files.save_safetensors(self.path(caption), {"embeds": embeds[0].float().cpu().contiguous(),
                                                        "pooled": pooled[0].float().cpu().contiguous()})
        return len(todo)

    def load(self, captions: list[str]) -> dict[str, tuple]:
        from safetensors.torch import load_file

        out = {}
        for c in set(captions):
            t = load_file(self.path(c))
            out[c] = (t["embeds"], t["pooled"])
        return out
