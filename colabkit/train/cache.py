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
from colabkit.i18n import _
from colabkit.train.config import MAX_TOKEN_LENGTHS
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


CHUNK = 75  # caption tokens per text-encoder pass: CLIP's 77 positions less BOS and EOS


def token_count(tokenizer, caption: str) -> int:
    """How many tokens ``caption`` has for the text encoder, BOS/EOS not counted (what max_token_length limits)."""
    return len(tokenizer(caption, add_special_tokens=False, truncation=False, verbose=False).input_ids)


def count_long_captions(tokenizer, captions: Iterable[str], limit: int) -> int:
    """How many captions have more than ``limit`` tokens (the rest of each is not seen in training)."""
    return sum(1 for c in captions if token_count(tokenizer, c) > limit)


def needed_token_length(tokenizer, texts: list[str], max_token_length: int) -> int:
    """75-token chunks enough for the longest of ``texts``, at most ``max_token_length``: texts of 75 tokens or fewer
    are encoded in the standard 77 positions, exactly as A1111/Forge, ComfyUI and diffusers encode a prompt at
    generation time (and as sd-scripts' previews do); only longer ones get more chunks. Training pads to this, not
    to ``max_token_length`` (sd-scripts pads every caption to 227 positions): a short caption then trains on
    what it will be prompted with, and costs one text-encoder pass and 77 context tokens, not three and 227."""
    longest = max((token_count(tokenizer, t) for t in texts), default=0)
    return min(max_token_length, CHUNK * max(1, -(-longest // CHUNK)))


def caption_length_check(tokenizer, captions: list[str], max_token_length: int) -> tuple[str, str]:
    """The preflight line on caption lengths: ("ok" | "warn", message)."""
    _check_length(max_token_length)
    n = len(captions)
    over_75 = count_long_captions(tokenizer, captions, CHUNK)
    over_max = over_75 if max_token_length == CHUNK else count_long_captions(tokenizer, captions, max_token_length)
    if over_max:
        fix = (_("Set max_token_length to 225 or shorten those captions (fewer, more specific tags).")
               if max_token_length < 225 else _("Shorten those captions (fewer, more specific tags)."))
        return "warn", _("{over} of {n} captions exceed {limit} tokens: their last tags are not seen in training (with "
                         "shuffle_tags, a different few at each step).").format(over=over_max, n=n,
                                                                                limit=max_token_length) + " " + fix
    if over_75:
        return "ok", _("{over} of {n} captions exceed 75 tokens; all fit in max_token_length {limit}.").format(
            over=over_75, n=n, limit=max_token_length)
    return "ok", _("all {n} captions fit in 75 tokens.").format(n=n)


def chunked_input_ids(tokenizer, captions: list[str], max_token_length: int):
    """Token ids of each caption in 75-token chunks, as sd-scripts' ``TokenizeStrategy._get_input_ids`` makes them
    for ``--max_token_length`` 150/225: [B, max_token_length // 75, 77].

    The caption is tokenized once to BOS + max_token_length tokens + EOS (cut there, padded), then each chunk is
    BOS + its 75 tokens + the padded sequence's last id. For a tokenizer that pads with something other than EOS
    (SDXL's second one pads with '!'), a chunk whose text runs to its end gets EOS as its last id, and an empty
    chunk (BOS then padding) gets EOS after its BOS, so every chunk has an EOS to pool at.
    """
    import torch

    _check_length(max_token_length)
    n, width = max_token_length // CHUNK, tokenizer.model_max_length
    if width != CHUNK + 2:
        raise ValueError(f"the tokenizer has {width} positions; chunking expects CLIP's {CHUNK + 2}")
    if n == 1:
        ids = tokenizer(captions, padding="max_length", max_length=width, truncation=True, return_tensors="pt")
        return ids.input_ids.unsqueeze(1)
    ids = tokenizer(captions, padding="max_length", max_length=max_token_length + 2, truncation=True,
                    return_tensors="pt").input_ids
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    chunks = []
    for k in range(n):
        chunk = torch.cat([ids[:, :1], ids[:, 1 + k * CHUNK:1 + (k + 1) * CHUNK], ids[:, -1:]], dim=1)
        if pad != eos:
            runs_to_end = (chunk[:, -2] != eos) & (chunk[:, -2] != pad)
            chunk[runs_to_end, -1] = eos
            chunk[chunk[:, 1] == pad, 1] = eos
        chunks.append(chunk)
    return torch.stack(chunks, dim=1)


def encode_prompts(captions: list[str], tokenizers, text_encoders, device, max_token_length: int = 75):
    """SDXL text conditioning: both encoders' penultimate hidden states side by side, plus the pooled
    projection of the second. Returns (prompt_embeds [B, L, 2048], pooled [B, 1280]).

    ``max_token_length`` 75: the standard 77 positions (L = 77), the caption cut after 75 tokens.
    150/225: sd-scripts' SDXL long-caption encoding (``SdxlTextEncodingStrategy._get_hidden_states_sdxl``): each
    75-token chunk (``chunked_input_ids``) is encoded on its own by both encoders, and the hidden states are
    joined as the first chunk's BOS, every chunk's 75 inner positions and the last chunk's final position
    (L = max_token_length + 2: 152 or 227). The inner BOS/EOS are dropped (A1111 keeps all 77 per chunk, 231).
    The pooled output is the first chunk's, as sd-scripts takes it. The UNet's cross-attention takes any L.
    """
    import torch

    _check_length(max_token_length)
    if max_token_length == CHUNK:
        hidden, pooled = [], None
        for tokenizer, encoder in zip(tokenizers, text_encoders):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            if hasattr(out, "text_embeds"):
                pooled = out.text_embeds
        return torch.cat(hidden, dim=-1), pooled

    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        ids = chunked_input_ids(tokenizer, captions, max_token_length)
        b, n, width = ids.shape
        out = encoder(ids.reshape(b * n, width).to(device), output_hidden_states=True)
        h = out.hidden_states[-2].reshape(b, n * width, -1)
        pieces = [h[:, :1]] + [h[:, k * width + 1:k * width + 1 + CHUNK] for k in range(n)] + [h[:, -1:]]
        hidden.append(torch.cat(pieces, dim=1))
        if hasattr(out, "text_embeds"):
            pooled = out.text_embeds.reshape(b, n, -1)[:, 0]
    return torch.cat(hidden, dim=-1), pooled


def _check_length(max_token_length: int) -> None:
    if max_token_length not in MAX_TOKEN_LENGTHS:
        raise ValueError(f"max_token_length must be one of {MAX_TOKEN_LENGTHS}, not {max_token_length!r}")


class TextCache:
    """Embeddings of fixed captions (no tag shuffle), in memory and on disk beside the latents.

    An entry is named by the model key, the caption and ``max_token_length`` (which changes the embeddings'
    length and content), so changing the setting re-encodes instead of loading the other length.
    """

    def __init__(self, folder: Path, model_key: str, max_token_length: int = 75):
        _check_length(max_token_length)
        self.folder = folder
        self.model_key = model_key
        self.max_token_length = max_token_length

    def path(self, caption: str) -> Path:
        key = hashlib.sha256(f"{self.model_key}\0tokens={self.max_token_length}\0{caption}".encode()).hexdigest()[:32]
        return self.folder / f"text-{key}.safetensors"

    def build(self, captions: list[str], tokenizers, text_encoders, device, progress: Progress = _identity) -> int:
        import torch

        todo = sorted({c for c in captions if not self.path(c).exists()})
        for caption in progress(todo):
            with torch.no_grad():
                embeds, pooled = encode_prompts([caption], tokenizers, text_encoders, device, self.max_token_length)
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
