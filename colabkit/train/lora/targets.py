"""Which modules get a LoRA, and putting it there through peft.

The choice follows sd-scripts' ``networks.lora`` so a file trained here means the same as one
trained there:

- ``LoRA``: every Linear (and 1x1 Conv2d) inside each ``Transformer2DModel``: ``proj_in``, ``proj_out``,
  ``attn1``/``attn2`` ``to_q``/``to_k``/``to_v``/``to_out.0``, ``ff.net.0.proj``, ``ff.net.2``.
  On SDXL base: 11 transformers x 2 + 70 transformer blocks x 10 = 722 modules.
- ``LoCon`` (sd-scripts' LoRA with ``conv_dim``): also the Linear/Conv2d of every ``ResnetBlock2D``
  (``conv1``, ``conv2``, ``time_emb_proj`` and, where channels change, the 1x1 ``conv_shortcut``) and the
  conv of each ``Downsample2D``/``Upsample2D``. 3x3 convs get ``conv_rank``/``conv_alpha``; 1x1 convs and
  Linears get ``rank``/``alpha``. On SDXL base: 17 resnets x 3 + 11 shortcuts + 2 down + 2 up = 66 more, 788.
- text encoders: ``self_attn.{q,k,v,out}_proj`` and ``mlp.fc1``/``fc2`` of every CLIP layer
  (SDXL: (12 + 32) x 6 = 264).
"""

from __future__ import annotations

import re
from typing import Iterable

from colabkit.errors import ColabkitError
from colabkit.train.config import LORA_TYPES
from colabkit.i18n import _

_UNET_LORA_PARENTS = ("Transformer2DModel",)
_UNET_LOCON_PARENTS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
_TE_PARENTS = ("CLIPAttention", "CLIPMLP", "CLIPSdpaAttention", "CLIPFlashAttention2")


# peft's own submodules inside a wrapped layer: never targets themselves
_PEFT_PARTS = {
    "base_layer", "lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector",
}


def _children_under(model, parent_classes: Iterable[str], conv: bool) -> list[str]:
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    parent_classes = tuple(parent_classes)
    found: list[str] = []
    seen: set[str] = set()
    for name, module in model.named_modules():
        if type(module).__name__ not in parent_classes:
            continue
        for child_name, child in module.named_modules():
            if not child_name or _PEFT_PARTS & set(child_name.split(".")):
                continue
            if isinstance(child, BaseTunerLayer):  # already wrapped by peft: judge the layer it wraps
                child = child.get_base_layer()
            is_linear = isinstance(child, torch.nn.Linear)
            is_conv = isinstance(child, torch.nn.Conv2d)
            if not (is_linear or (is_conv and (conv or tuple(child.kernel_size) == (1, 1)))):
                continue
            full = f"{name}.{child_name}" if name else child_name
            if full not in seen:
                seen.add(full)
                found.append(full)
    return found


def unet_targets(unet, lora_type: str = "LoRA") -> list[str]:
    """diffusers module names of the UNet layers that get a LoRA, in model order."""
    if lora_type not in LORA_TYPES:
        raise ColabkitError(_("lora_type must be one of {names}, not {lora_type!r}.").format(
                                names=', '.join(LORA_TYPES), lora_type=lora_type))
    names = set(_children_under(unet, _UNET_LORA_PARENTS, conv=False))
    if lora_type == "LoCon":
        names |= set(_children_under(unet, _UNET_LOCON_PARENTS, conv=True))
    ordered = [n for n, _ in unet.named_modules() if n in names]
    if not ordered:
        raise ValueError(f"no LoRA targets found in {type(unet).__name__}: is it a diffusers UNet2DConditionModel?")
    return ordered


def text_encoder_targets(text_encoder) -> list[str]:
    """Module names of the CLIP attention/MLP Linears that get a LoRA, in model order."""
    names = _children_under(text_encoder, _TE_PARENTS, conv=False)
    if not names:
        raise ValueError(f"no LoRA targets found in {type(text_encoder).__name__}: is it a CLIP text model?")
    return names


def is_conv3x3(module) -> bool:
    """True for a Conv2d whose kernel is not 1x1: these take conv_rank/conv_alpha (sd-scripts' conv_dim)."""
    import torch

    return isinstance(module, torch.nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


def _check_rank_alpha(rank, alpha, what: str) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ColabkitError(_("{what} rank must be a positive whole number, got {rank!r}.").format(
                                what=what, rank=rank))
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ColabkitError(_("{what} alpha must be a positive number, got {alpha!r}.").format(what=what, alpha=alpha))


def inject_lora(
    model,
    ranks: dict[str, int],
    alphas: dict[str, float],
    *,
    adapter_name: str = "default",
) -> None:
    """Put a peft LoRA adapter on exactly the modules in ``ranks`` (module name -> rank), base frozen.

    The most common rank/alpha become the LoraConfig defaults; others go to rank_pattern/alpha_pattern
    keyed by the escaped full module name, so no other module can match.
    """
    import collections

    from peft import LoraConfig

    if not ranks:
        raise ValueError("no modules to put a LoRA on")
    modules = dict(model.named_modules())
    missing = [n for n in ranks if n not in modules]
    if missing:
        raise ValueError(f"{len(missing)} LoRA targets are not modules of {type(model).__name__}: {missing[:5]}")
    r0 = collections.Counter(ranks.values()).most_common(1)[0][0]
    a0 = collections.Counter(alphas[n] for n in ranks).most_common(1)[0][0]
    rank_pattern = {re.escape(n): r for n, r in ranks.items() if r != r0}
    alpha_pattern = {re.escape(n): alphas[n] for n in ranks if alphas[n] != a0}
    config = LoraConfig(
        r=r0,
        lora_alpha=a0,
        target_modules=list(ranks),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        init_lora_weights=True,  # A: kaiming-uniform from torch's global RNG, B: zeros (output unchanged)
        lora_dropout=0.0,
    )
    # diffusers' add_adapter keeps its adapter bookkeeping. transformers' add_adapter adds nothing we use, and
    # from 5.24 it demands a peft release that does not exist yet: text encoders go through peft directly.
    if hasattr(model, "add_adapter") and not type(model).__module__.startswith("transformers."):
        model.add_adapter(config, adapter_name=adapter_name)
    else:
        from peft import inject_adapter_in_model

        inject_adapter_in_model(config, model, adapter_name=adapter_name)

    # Only this adapter's weights train; the base model stays frozen whatever peft did.
    marker_a, marker_b = f".lora_A.{adapter_name}.", f".lora_B.{adapter_name}."
    for name, p in model.named_parameters():
        p.requires_grad_(marker_a in name or marker_b in name)

    got = set(lora_modules(model, adapter_name))
    if got != set(ranks):
        diff = sorted(got ^ set(ranks))[:5]
        raise AssertionError(f"peft put a LoRA on {len(got)} modules, expected {len(ranks)}: {diff}")


def add_lora(
    model,
    targets: list[str],
    rank: int,
    alpha: float,
    conv_rank: int | None = None,
    conv_alpha: float | None = None,
    adapter_name: str = "default",
) -> list[str]:
    """Add a trainable LoRA adapter on ``targets`` (module names), freezing the base model.

    Linears and 1x1 convs get ``rank``/``alpha``; 3x3 convs get ``conv_rank``/``conv_alpha``, which default
    to ``rank``/``alpha``. Scale is alpha / rank, as in sd-scripts. The initial weights depend only on
    torch's global seed (call ``torch.manual_seed`` first for a reproducible start). Returns ``targets``.
    """
    conv_rank = rank if conv_rank is None else conv_rank
    conv_alpha = alpha if conv_alpha is None else conv_alpha
    _check_rank_alpha(rank, alpha, "LoRA")
    _check_rank_alpha(conv_rank, conv_alpha, "conv")
    targets = list(targets)
    if len(set(targets)) != len(targets):
        raise ValueError("duplicate LoRA targets")
    modules = dict(model.named_modules())
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    for name in targets:
        module = modules.get(name)
        if module is None:
            raise ValueError(f"{name!r} is not a module of {type(model).__name__}")
        conv3 = is_conv3x3(module)
        ranks[name] = conv_rank if conv3 else rank
        alphas[name] = conv_alpha if conv3 else alpha
    inject_lora(model, ranks, alphas, adapter_name=adapter_name)
    return targets


def lora_modules(model, adapter_name: str | None = "default") -> dict[str, object]:
    """module name -> peft LoraLayer, for the layers holding ``adapter_name`` (any adapter if None)."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer) and (adapter_name is None or adapter_name in m.lora_A):
            out[name] = m
    return out


def lora_parameters(model, adapter_name: str | None = "default") -> list:
    """The LoRA weights (lora_A and lora_B) of ``adapter_name`` (all adapters if None), in model order."""
    params = []
    for name, p in model.named_parameters():
        if ".lora_A." not in name and ".lora_B." not in name:
            continue
        if adapter_name is not None and not (
            f".lora_A.{adapter_name}." in name or f".lora_B.{adapter_name}." in name
        ):
            continue
        params.append(p)
    return params
