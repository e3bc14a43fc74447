"""Single-file checkpoints in the ORIGINAL (Stability/SGM, A1111, Civitai) layout, made from a diffusers folder.

This is the inverse of what colabkit's loader does with a downloaded ``.safetensors``, written independently of it:
the loader uses diffusers' own original->diffusers conversion, so a round trip through both checks this file's
names against diffusers' (which are checked against the real SDXL file). Layout of ``sd_xl_base_1.0.safetensors``:

- ``model.diffusion_model.``               UNet, SGM module names (input_blocks / middle_block / output_blocks)
- ``conditioner.embedders.0.transformer.`` text encoder 1 (CLIP ViT-L) in transformers' names, ``text_model.`` kept
- ``conditioner.embedders.1.model.``       text encoder 2 (OpenCLIP ViT-bigG): ``resblocks``, ``in_proj`` holding
                                           q/k/v together, ``text_projection`` as a [width, dim] matrix, ``logit_scale``
- ``first_stage_model.``                   VAE in LDM names (down/up/mid.block_1, attention as 1x1 convs)

Also fakes of other families (SD 1.5-like, FLUX-like, ...) and truncated copies, for the refusal tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Mapping

from colabkit import files

UNET_PREFIX = "model.diffusion_model."
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."
VAE_PREFIX = "first_stage_model."

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}


def _resnet_part(rest: str) -> str:
    layer, _, tail = rest.partition(".")
    return f"{_RESNET.get(layer, layer)}.{tail}"


def unet_key_to_sgm(key: str, config: Mapping) -> str:
    """A diffusers UNet2DConditionModel key -> its SGM name (without the ``model.diffusion_model.`` prefix)."""
    n = int(config["layers_per_block"])  # down blocks hold n resnets (+ downsampler), up blocks n + 1
    module, _, param = key.rpartition(".")
    if module in _UNET_FIXED:
        return f"{_UNET_FIXED[module]}.{param}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = (n + 1) * i + j + 1
        return f"input_blocks.{idx}.0.{_resnet_part(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(n + 1) * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_part(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = (n + 1) * i + j
        return f"output_blocks.{idx}.0.{_resnet_part(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        # The upsampler is the last module of the block's last layer: after the attention when there is one.
        slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
        return f"output_blocks.{(n + 1) * i + n}.{slot}.conv.{m[2]}"
    raise KeyError(f"no SGM name for UNet key {key!r}")


def vae_key_to_ldm(key: str, config: Mapping) -> str:
    """A diffusers AutoencoderKL key -> its LDM name (without ``first_stage_model.``)."""
    n_up = len(config["up_block_types"])
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        # LDM numbers decoder levels from the lowest resolution up; diffusers in execution order.
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\."
                         r"(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", key):
        part = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[m[2]]
        return f"{m[1]}.mid.attn_1.{part}.{m[3]}"
    return key  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv keep their names


def unet_to_original(sd: Mapping, config: Mapping) -> dict:
    return {UNET_PREFIX + unet_key_to_sgm(k, config): v for k, v in sd.items()}


def vae_to_original(sd: Mapping, config: Mapping) -> dict:
    out = {}
    for k, v in sd.items():
        name = vae_key_to_ldm(k, config)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)  # LDM's attention projections are 1x1 convolutions
        out[VAE_PREFIX + name] = v
    return out


def te1_to_original(sd: Mapping, max_positions: int = 77) -> dict:
    import torch

    out = {}
    for k, v in sd.items():
        # transformers >= 5.6 dropped CLIPTextModel's "text_model." level; the original file keeps it.
        out[TE1_PREFIX + (k if k.startswith("text_model.") else "text_model." + k)] = v
    # The original file carries CLIP's position_ids buffer, stored in fp16 like everything else there (2,515 F16
    # tensors: that is what makes its tensor bytes add up to the published size).
    out[TE1_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(max_positions, dtype=torch.float32)[None]
    return out


_TE2_RENAMES = ((".layer_norm1.", ".ln_1."), (".layer_norm2.", ".ln_2."), (".mlp.fc1.", ".mlp.c_fc."),
                (".mlp.fc2.", ".mlp.c_proj."), (".self_attn.out_proj.", ".attn.out_proj."))


def te2_to_original(sd: Mapping) -> dict:
    """HF CLIPTextModelWithProjection -> OpenCLIP names, q/k/v fused into in_proj, projection transposed."""
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out = {}
    fused: dict[str, dict[str, object]] = {}
    for k, v in sd.items():
        if k == "text_projection.weight":
            # HF's Linear computes x @ W.T; OpenCLIP stores the matrix P with x @ P, so P = W.T.
            out["text_projection"] = v.T.contiguous()
        elif k == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("final_layer_norm."):
            out["ln_final." + k.split(".", 1)[1]] = v
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", k):
            fused.setdefault(f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = v
        elif k.startswith("encoder.layers."):
            name = "transformer.resblocks." + k.removeprefix("encoder.layers.")
            for old, new in _TE2_RENAMES:
                name = name.replace(old, new)
            out[name] = v
        else:
            raise KeyError(f"no OpenCLIP name for text encoder 2 key {k!r}")
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # type: ignore[list-item]
    # OpenCLIP's contrastive temperature; SDXL never uses it, but the original file has it.
    out["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return {TE2_PREFIX + k: v for k, v in out.items()}


def diffusers_to_original(unet: Mapping, te1: Mapping, te2: Mapping, vae: Mapping, *, unet_config: Mapping,
                          vae_config: Mapping) -> dict:
    """Four diffusers/transformers state dicts -> one original-layout SDXL state dict (tensors not copied)."""
    out = unet_to_original(unet, unet_config)
    out.update(te1_to_original(te1))
    out.update(te2_to_original(te2))
    out.update(vae_to_original(vae, vae_config))
    return out


def _read_component(folder: Path, dtype) -> dict:
    import torch
    from safetensors import safe_open

    shards = sorted(p for p in folder.glob("*.safetensors") if p.name.count(".") == 1)  # skip *.fp16.safetensors
    shards = shards or sorted(folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    sd = {}
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            for k in f.keys():
                t = f.get_tensor(k)
                sd[k] = t.to(dtype) if t.is_floating_point() else t
    return sd


def write_single_file(diffusers_folder: str | os.PathLike, out_path: str | os.PathLike, dtype=None,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Convert a diffusers SDXL folder into one original-layout ``.safetensors`` (float tensors cast to ``dtype``).

    Holds the whole model in memory at ``dtype``: meant for tiny models and tests.
    """
    import torch

    dtype = torch.float16 if dtype is None else dtype
    folder = Path(diffusers_folder)
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    tensors = diffusers_to_original(
        _read_component(folder / "unet", dtype), _read_component(folder / "text_encoder", dtype),
        _read_component(folder / "text_encoder_2", dtype), _read_component(folder / "vae", dtype),
        unet_config=unet_cfg, vae_config=vae_cfg)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    return files.save_safetensors(out_path, tensors, dict(metadata or {}))


# Keys that give each family away (a handful of small tensors is all the classifier needs).
_FAKE_KEYS: dict[str, dict[str, tuple[int, ...]]] = {
    "sd1": {
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 768),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (8, 16, 1, 1),
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": (8, 8),
        "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    },
    "sd2": {
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 1024),
        "cond_stage_model.model.token_embedding.weight": (16, 8),
        "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (24, 8),
        "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    },
    "flux": {
        "double_blocks.0.img_attn.norm.key_norm.scale": (8,),
        "double_blocks.0.img_attn.qkv.weight": (24, 8),
        "single_blocks.0.linear1.weight": (8, 8),
    },
    "sd3": {
        "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (8,),
        "text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
    },
    "sdxl-refiner": {
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": (8, 16),
        "conditioner.embedders.0.model.text_projection": (8, 8),
        "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight": (24, 8),
        "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    },
    "lora": {
        "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": (4, 8),
        "lora_unet_input_blocks_4_1_proj_in.lora_up.weight": (8, 4),
        "lora_unet_input_blocks_4_1_proj_in.alpha": (),
    },
}


def write_fake(out_path: str | os.PathLike, family: str, metadata: Mapping[str, str] | None = None) -> Path:
    """A tiny file with the key layout of ``family`` ('sd1', 'sd2', 'flux', 'sd3', 'sdxl-refiner', 'lora')."""
    import torch

    g = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(shape, generator=g).to(torch.float16) for k, shape in _FAKE_KEYS[family].items()}
    return files.save_safetensors(out_path, tensors, dict(metadata or {}))


def write_sd15_like(out_path: str | os.PathLike) -> Path:
    """A tiny fake SD 1.5 checkpoint.

    Prefixes ``model.diffusion_model.``, ``cond_stage_model.transformer.``, ``first_stage_model.``.
    """
    return write_fake(out_path, "sd1")


def write_truncated(src: str | os.PathLike, out_path: str | os.PathLike, fraction: float = 0.6) -> Path:
    """A copy of ``src`` cut after ``fraction`` of its bytes, like a download that stopped."""
    src, out_path = Path(src), Path(out_path)
    keep = int(src.stat().st_size * fraction)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f_in, open(out_path, "wb") as f_out:
        shutil.copyfileobj(_Limited(f_in, keep), f_out)
    return out_path


class _Limited:
    def __init__(self, f, n: int):
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data


def write_header_only(out_path: str | os.PathLike, shapes: Mapping[str, tuple[int, ...]],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """A .safetensors whose header lists ``shapes`` (all F16) and whose tensor bytes are a hole: a sparse file of
    the full size that takes no disk. Anything that reads only headers sees a real checkpoint of that size."""
    import struct

    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key in sorted(shapes):
        n = math.prod(shapes[key]) * 2
        header[key] = {"dtype": "F16", "shape": list(shapes[key]), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return out_path


def sdxl_original_shapes() -> dict[str, tuple[int, ...]]:
    """The shapes of sd_xl_base_1.0.safetensors, from the real SDXL built on the meta device (no weights)."""
    from colabkit.train.models import meta

    unet, vae = meta.meta_unet(), meta.meta_vae()
    te1, te2 = meta.meta_text_encoders()
    original = diffusers_to_original(unet.state_dict(), te1.state_dict(), te2.state_dict(), vae.state_dict(),
                                     unet_config=meta._config("unet"), vae_config=meta._config("vae"))
    return {k: tuple(v.shape) for k, v in original.items()}
