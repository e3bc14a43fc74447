"""Module names: diffusers <-> SGM (the original SDXL checkpoint) <-> kohya LoRA keys.

A LoRA file that loads everywhere names each module as sd-scripts does for SDXL:
``lora_unet_<SGM module path, dots as underscores>`` for the UNet and
``lora_te1_/lora_te2_text_model_encoder_layers_<n>_<part>`` for the two CLIP encoders.
We train on diffusers' UNet, so every diffusers module path is translated to the path the
same weight has in the SGM UNet. The block map is derived from the UNet config (block types,
layers_per_block), so it holds for SDXL base and for the tiny SDXL alike:

- ``conv_in`` -> ``input_blocks.0.0``; then, block by block, each layer j of down block i takes the
  next ``input_blocks.K``: ``resnets.j`` -> ``K.0``, ``attentions.j`` -> ``K.1``; a downsampler takes a
  ``input_blocks.K`` of its own, its conv named ``op`` (``input_blocks.K.0.op``).
- ``mid_block.resnets.0`` -> ``middle_block.0``, ``attentions.0`` -> ``middle_block.1``,
  ``resnets.1`` -> ``middle_block.2``.
- up block i, layer j -> ``output_blocks.K`` (``resnets.j`` -> ``K.0``, ``attentions.j`` -> ``K.1``); the
  upsampler joins the block's last layer: ``K.2.conv``, or ``K.1.conv`` when the block has no attentions.
- inside a resnet: ``norm1``/``conv1`` -> ``in_layers.0``/``in_layers.2``, ``time_emb_proj`` -> ``emb_layers.1``,
  ``norm2``/``conv2`` -> ``out_layers.0``/``out_layers.3``, ``conv_shortcut`` -> ``skip_connection``.
- ``time_embedding.linear_1/2`` -> ``time_embed.0/2``, ``add_embedding.linear_1/2`` -> ``label_emb.0.0/0.2``,
  ``conv_norm_out`` -> ``out.0``, ``conv_out`` -> ``out.2``. Transformer internals keep their names.

tests/train/test_lora_keys.py checks this against diffusers' own single-file converter
(``convert_ldm_unet_checkpoint``) on the real SDXL UNet: every parameter round-trips to itself.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

UNET_PREFIX = "lora_unet_"
TE_PREFIXES = ("lora_te1_", "lora_te2_")  # SDXL: te1 = CLIP ViT-L (text_encoder), te2 = OpenCLIP bigG (text_encoder_2)

# diffusers ResnetBlock2D part -> SGM ResBlock part
_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_RESNET_PARTS_BACK = {v: k for k, v in _RESNET_PARTS.items()}

_DOWN_TYPES = {"DownBlock2D": False, "CrossAttnDownBlock2D": True}
_UP_TYPES = {"UpBlock2D": False, "CrossAttnUpBlock2D": True}
_MID_TYPES = {"UNetMidBlock2DCrossAttn"}

_RESNET, _SAME = "resnet", "same"


def _config(unet_or_config: Any) -> Mapping:
    return getattr(unet_or_config, "config", unet_or_config)


def _config_key(cfg: Mapping) -> tuple:
    lpb = cfg["layers_per_block"]
    return (
        tuple(cfg["down_block_types"]),
        tuple(cfg["up_block_types"]),
        cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn"),
        lpb if isinstance(lpb, int) else tuple(lpb),
        cfg.get("addition_embed_type"),
        cfg.get("class_embed_type"),
    )


@functools.lru_cache(maxsize=8)
def _tables(key: tuple) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """(diffusers prefix -> (sgm prefix, kind), sgm prefix -> (diffusers prefix, kind))."""
    down_types, up_types, mid_type, lpb, addition_embed_type, class_embed_type = key
    n = len(down_types)
    layers = [lpb] * n if isinstance(lpb, int) else list(lpb)
    if len(layers) != n or len(up_types) != n:
        raise ValueError(f"unsupported UNet config: {n} down blocks, {len(up_types)} up blocks, layers {layers}")
    for t in down_types:
        if t not in _DOWN_TYPES:
            raise ValueError(f"no SGM name map for down block type {t!r} (supported: {sorted(_DOWN_TYPES)})")
    for t in up_types:
        if t not in _UP_TYPES:
            raise ValueError(f"no SGM name map for up block type {t!r} (supported: {sorted(_UP_TYPES)})")
    if mid_type not in _MID_TYPES:
        raise ValueError(f"no SGM name map for mid block type {mid_type!r}")

    fwd: dict[str, tuple[str, str]] = {
        "conv_in": ("input_blocks.0.0", _SAME),
        "time_embedding.linear_1": ("time_embed.0", _SAME),
        "time_embedding.linear_2": ("time_embed.2", _SAME),
        "conv_norm_out": ("out.0", _SAME),
        "conv_out": ("out.2", _SAME),
    }
    if addition_embed_type == "text_time":
        fwd["add_embedding.linear_1"] = ("label_emb.0.0", _SAME)
        fwd["add_embedding.linear_2"] = ("label_emb.0.2", _SAME)
    elif addition_embed_type is not None:
        raise ValueError(f"no SGM name map for addition_embed_type {addition_embed_type!r}")
    if class_embed_type in ("timestep", "projection"):
        fwd["class_embedding.linear_1"] = ("label_emb.0.0", _SAME)
        fwd["class_embedding.linear_2"] = ("label_emb.0.2", _SAME)

    k = 1  # input_blocks.0 is conv_in
    for i, t in enumerate(down_types):
        for j in range(layers[i]):
            fwd[f"down_blocks.{i}.resnets.{j}"] = (f"input_blocks.{k}.0", _RESNET)
            if _DOWN_TYPES[t]:
                fwd[f"down_blocks.{i}.attentions.{j}"] = (f"input_blocks.{k}.1", _SAME)
            k += 1
        if i < n - 1:  # diffusers adds a downsampler to every down block but the last
            fwd[f"down_blocks.{i}.downsamplers.0.conv"] = (f"input_blocks.{k}.0.op", _SAME)
            k += 1

    fwd["mid_block.resnets.0"] = ("middle_block.0", _RESNET)
    fwd["mid_block.attentions.0"] = ("middle_block.1", _SAME)
    fwd["mid_block.resnets.1"] = ("middle_block.2", _RESNET)

    k = 0
    up_layers = list(reversed(layers))
    for i, t in enumerate(up_types):
        for j in range(up_layers[i] + 1):
            fwd[f"up_blocks.{i}.resnets.{j}"] = (f"output_blocks.{k}.0", _RESNET)
            if _UP_TYPES[t]:
                fwd[f"up_blocks.{i}.attentions.{j}"] = (f"output_blocks.{k}.1", _SAME)
            if j == up_layers[i] and i < n - 1:  # upsampler rides in the block's last layer
                slot = 2 if _UP_TYPES[t] else 1
                fwd[f"up_blocks.{i}.upsamplers.0.conv"] = (f"output_blocks.{k}.{slot}.conv", _SAME)
            k += 1

    back = {sgm: (dif, kind) for dif, (sgm, kind) in fwd.items()}
    if len(back) != len(fwd):
        raise AssertionError("SGM block map is not one-to-one")
    return fwd, back


def _translate(name: str, table: Mapping[str, tuple[str, str]], parts: Mapping[str, str], what: str) -> str:
    pieces = name.split(".")
    for cut in range(len(pieces), 0, -1):
        prefix = ".".join(pieces[:cut])
        hit = table.get(prefix)
        if hit is None:
            continue
        new_prefix, kind = hit
        rest = pieces[cut:]
        if kind == _RESNET:
            # a resnet's own parts are renamed; the part may itself be dotted on the SGM side
            for n_part in (2, 1):
                head = ".".join(rest[:n_part])
                if len(rest) >= n_part and head in parts:
                    return ".".join([new_prefix, parts[head], *rest[n_part:]])
            raise KeyError(f"{name!r}: not a known part of a resnet ({what})")
        return ".".join([new_prefix, *rest])
    raise KeyError(f"{name!r} has no {what} counterpart")


def unet_to_sgm(name: str, unet_or_config: Any) -> str:
    """diffusers UNet module or parameter path -> SGM path (without ``model.diffusion_model.``)."""
    fwd, _ = _tables(_config_key(_config(unet_or_config)))
    return _translate(name, fwd, _RESNET_PARTS, "SGM")


def sgm_to_unet(name: str, unet_or_config: Any) -> str:
    """SGM UNet module or parameter path (without ``model.diffusion_model.``) -> diffusers path."""
    _, back = _tables(_config_key(_config(unet_or_config)))
    return _translate(name, back, _RESNET_PARTS_BACK, "diffusers")


def te_canonical(name: str) -> str:
    """A CLIP module path as kohya/ComfyUI spell it: always under ``text_model.``.

    transformers 5's CLIPTextModel is the text transformer itself (``encoder.layers.0...``) while
    CLIPTextModelWithProjection keeps it under ``text_model.``; the file must not depend on that.
    """
    return name if name.startswith("text_model.") else "text_model." + name


def kohya_unet_name(module: str, unet_or_config: Any) -> str:
    """``down_blocks.1.attentions.0.proj_in`` -> ``lora_unet_input_blocks_4_1_proj_in``."""
    return UNET_PREFIX + unet_to_sgm(module, unet_or_config).replace(".", "_")


def kohya_te_name(module: str, index: int) -> str:
    """``encoder.layers.0.self_attn.q_proj``, 1 -> ``lora_te1_text_model_encoder_layers_0_self_attn_q_proj``."""
    if index not in (1, 2):
        raise ValueError(f"SDXL has text encoders 1 and 2, not {index}")
    return TE_PREFIXES[index - 1] + te_canonical(module).replace(".", "_")


def _lora_host_names(model) -> Iterable[str]:
    """Names of the Linear/Conv2d modules a LoRA can sit on, seen through any peft wrapping."""
    import torch
    from peft.tuners.lora import LoraLayer

    inner = (".lora_A.", ".lora_B.", ".lora_dropout.", ".lora_embedding_", ".lora_magnitude_vector.")
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer):
            yield name
        elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            if name.endswith(".base_layer") or any(s in name + "." for s in inner):
                continue
            yield name


def kohya_module_table(unet=None, text_encoder=None, text_encoder_2=None) -> dict[str, tuple[str, str]]:
    """kohya module name -> (component, diffusers/transformers module path), for every Linear/Conv2d.

    component is ``"unet"``, ``"text_encoder"`` or ``"text_encoder_2"``. This is the reverse map used to
    import a kohya LoRA; it covers every module a LoRA could target, not only ours.
    """
    table: dict[str, tuple[str, str]] = {}
    if unet is not None:
        for name in _lora_host_names(unet):
            try:
                table[kohya_unet_name(name, unet)] = ("unet", name)
            except KeyError:
                continue  # e.g. time_proj: not a weight in the SGM UNet
    for index, (component, te) in enumerate((("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)), 1):
        if te is not None:
            for name in _lora_host_names(te):
                table[kohya_te_name(name, index)] = (component, name)
    return table
