"""A tiny SDXL with SDXL's exact topology (blocks, text_time embeddings, two CLIP encoders).

Same block types, layers per block, cross-attention placement, penultimate-layer text features,
pooled projection and micro-conditioning as SDXL base 1.0; only widths and depths shrink. The
LoRA key mapping, single-file conversion and training loop therefore run unchanged on it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from colabkit.tiny.cache import built_once

TINY_SDXL_NAME = "tiny-sdxl"
_VERSION = "1"  # bump when the configs below change, so cached folders are rebuilt
_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "sdxl-base-1.0"

TE_HIDDEN = 32  # each encoder's width; the UNet's cross_attention_dim is their concatenation
ADD_TIME_DIM = 8

UNET_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    block_out_channels=(32, 64, 64),
    layers_per_block=2,
    transformer_layers_per_block=(1, 1, 2),
    attention_head_dim=(2, 4, 4),
    norm_num_groups=16,
    cross_attention_dim=2 * TE_HIDDEN,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=ADD_TIME_DIM,
    # pooled text_embeds (TE2 projection) + 6 micro-conditioning numbers, each ADD_TIME_DIM wide
    projection_class_embeddings_input_dim=TE_HIDDEN + 6 * ADD_TIME_DIM,
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    # four levels like SDXL's VAE, so latents are 1/8 of the image as on the real model
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=128,
    scaling_factor=0.13025,
)


def _text_config(projection: bool, vocab_size: int) -> dict:
    return dict(
        hidden_size=TE_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        vocab_size=vocab_size,
        projection_dim=TE_HIDDEN,
        hidden_act="gelu" if projection else "quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=1,
    )


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-level alphabet: every byte gets a printable character.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_tiny_tokenizer(folder: Path, sdxl_tokenizer: str) -> int:
    """A character-level CLIP BPE tokenizer (no merges), with SDXL's tokenizer configs. Returns vocab size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(_CONFIGS / sdxl_tokenizer / name, folder / name)
    return len(vocab)


def build_tiny_sdxl(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny SDXL diffusers folder (fp32 weights, seeded) into ``folder`` and return it."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tmp = Path(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    vocab = write_tiny_tokenizer(tmp / "tokenizer", "tokenizer")
    write_tiny_tokenizer(tmp / "tokenizer_2", "tokenizer_2")

    torch.manual_seed(seed)
    UNet2DConditionModel(**UNET_CONFIG).save_pretrained(tmp / "unet")
    AutoencoderKL(**VAE_CONFIG).save_pretrained(tmp / "vae")
    CLIPTextModel(CLIPTextConfig(**_text_config(False, vocab))).save_pretrained(tmp / "text_encoder")
    CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(True, vocab))).save_pretrained(tmp / "text_encoder_2")
    EulerDiscreteScheduler.from_pretrained(_CONFIGS, subfolder="scheduler").save_pretrained(tmp / "scheduler")

    index = json.loads((_CONFIGS / "model_index.json").read_text())
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    return tmp


def tiny_sdxl_path() -> Path:
    """The built-in tiny-sdxl folder, built on first use (about a second) and reused after."""
    return built_once("tiny-sdxl", _VERSION, build_tiny_sdxl)
