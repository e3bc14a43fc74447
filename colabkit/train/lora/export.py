"""peft LoRA weights <-> a kohya (sd-scripts) SDXL LoRA state dict.

Per module ``<name>.lora_down.weight`` = peft ``lora_A`` ([r, in] or [r, in, kh, kw]),
``<name>.lora_up.weight`` = peft ``lora_B`` ([out, r] or [out, r, 1, 1]) and ``<name>.alpha``, a 0-dim
tensor with the real network alpha (scale = alpha / r). Keys only ever in sd-scripts' SGM spelling:
diffusers' loader drops SGM keys when a file mixes both, and ComfyUI skips PEFT-style keys for SDXL.
(diffusers' ``convert_state_dict_to_kohya`` writes alpha = rank, i.e. scale 1: not used here.)
"""

from __future__ import annotations

import math
import re
from typing import Mapping

from colabkit.train.lora.keys import TE_PREFIXES, UNET_PREFIX, kohya_module_table, kohya_te_name, kohya_unet_name
from colabkit.train.lora.targets import inject_lora, is_conv3x3, lora_modules

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
_SPELLING_DIFFUSERS = re.compile(r"^lora_unet_(down_blocks|mid_block|up_blocks)_")


def _layer_alpha(layer, adapter_name: str) -> float:
    """The kohya alpha that gives this layer's scale at its rank (sd-scripts: scale = alpha / r)."""
    r = layer.r[adapter_name]
    if layer.use_rslora.get(adapter_name, False):
        return float(layer.lora_alpha[adapter_name]) * math.sqrt(r)  # rsLoRA scale alpha/sqrt(r) as alpha'/r
    return float(layer.lora_alpha[adapter_name])


def _export_component(model, namer, adapter_name, alpha, conv_alpha, dtype, out, what) -> None:
    layers = lora_modules(model, adapter_name)
    if not layers:
        raise ValueError(f"{what} has no LoRA adapter {adapter_name!r}")
    for module_name, layer in layers.items():
        if layer.use_dora.get(adapter_name, False):
            raise ValueError(f"{what}.{module_name}: DoRA has no kohya LoRA form")
        if layer.lora_bias.get(adapter_name, False):
            raise ValueError(f"{what}.{module_name}: lora_bias has no kohya LoRA form")
        a = _layer_alpha(layer, adapter_name)
        expected = conv_alpha if is_conv3x3(layer.get_base_layer()) else alpha
        # (a layer continued from a file keeps that file's own alpha: continue_from marks it)
        if expected is not None and not getattr(layer, "alpha_from_file", False) and \
                not math.isclose(a, float(expected), rel_tol=1e-6):
            raise ValueError(f"{what}.{module_name}: trained with alpha {a}, asked to export alpha {expected}")
        key = namer(module_name)
        if key + ".alpha" in out:
            raise AssertionError(f"two modules map to the kohya name {key}")
        down = layer.lora_A[adapter_name].weight
        up = layer.lora_B[adapter_name].weight
        out[key + ".lora_down.weight"] = down.detach().to("cpu", dtype).clone().contiguous()
        out[key + ".lora_up.weight"] = up.detach().to("cpu", dtype).clone().contiguous()
        out[key + ".alpha"] = _alpha_tensor(a, dtype)


def _alpha_tensor(a: float, dtype):
    import torch

    return torch.tensor(a, dtype=torch.float32).to(dtype)


def export_kohya(
    unet,
    text_encoder=None,
    text_encoder_2=None,
    *,
    alpha: float | None = None,
    conv_alpha: float | None = None,
    dtype=None,
    adapter_name: str = "default",
) -> dict:
    """The adapter's LoRA weights as an sd-scripts SDXL state dict (fp16 by default), on the CPU.

    ``alpha`` / ``conv_alpha`` are checked against what each layer was trained with (Linears and 1x1
    convs / 3x3 convs; ``conv_alpha`` defaults to ``alpha``); each ``.alpha`` written is the layer's own.
    """
    import torch

    dtype = torch.float16 if dtype is None else dtype
    conv_alpha = alpha if conv_alpha is None else conv_alpha
    out: dict = {}
    _export_component(unet, lambda n: kohya_unet_name(n, unet), adapter_name, alpha, conv_alpha, dtype, out, "unet")
    for index, te in ((1, text_encoder), (2, text_encoder_2)):
        if te is not None:
            _export_component(
                te, lambda n, i=index: kohya_te_name(n, i), adapter_name, alpha, conv_alpha, dtype, out,
                f"text_encoder_{index}",
            )
    check_kohya_state_dict(out)
    return out


def split_kohya_state_dict(state_dict: Mapping) -> dict[str, dict[str, object]]:
    """kohya module name -> {"lora_down.weight": t, "lora_up.weight": t, "alpha": t}."""
    modules: dict[str, dict[str, object]] = {}
    for key, value in state_dict.items():
        for suffix in SUFFIXES:
            if key.endswith(suffix):
                modules.setdefault(key[: -len(suffix)], {})[suffix[1:]] = value
                break
        else:
            raise ValueError(f"not a kohya LoRA key: {key!r}")
    return modules


def check_kohya_state_dict(state_dict: Mapping, *, require_alpha: bool = True) -> int:
    """Raise ValueError unless this is a clean sd-scripts SDXL LoRA; return its module count.

    Clean: every key ``lora_unet_``/``lora_te1_``/``lora_te2_`` + name + one of the three suffixes, every
    module with all three, UNet names in SGM spelling only, down/up ranks agreeing, alpha a 0-dim tensor.
    """
    modules = split_kohya_state_dict(state_dict)
    if not modules:
        raise ValueError("empty LoRA state dict")
    for name, parts in modules.items():
        if not name.startswith((UNET_PREFIX, *TE_PREFIXES)):
            raise ValueError(f"{name}: kohya SDXL names start with lora_unet_, lora_te1_ or lora_te2_")
        if name.startswith(TE_PREFIXES) and not name.startswith(tuple(p + "text_model_" for p in TE_PREFIXES)):
            raise ValueError(f"{name}: text-encoder names are lora_te1_text_model_... / lora_te2_text_model_...")
        if _SPELLING_DIFFUSERS.match(name):
            raise ValueError(f"{name}: diffusers block names; sd-scripts writes SGM names (input_blocks_...)")
        needed = {"lora_down.weight", "lora_up.weight"} | ({"alpha"} if require_alpha else set())
        if not needed <= set(parts):
            raise ValueError(f"{name}: has {sorted(parts)}, needs {', '.join(sorted(needed))}")
        down, up, alpha = parts["lora_down.weight"], parts["lora_up.weight"], parts.get("alpha")
        if alpha is not None and alpha.dim() != 0:
            raise ValueError(f"{name}.alpha must be a 0-dim tensor, has shape {tuple(alpha.shape)}")
        if down.dim() not in (2, 4) or up.dim() != down.dim() or up.shape[1] != down.shape[0]:
            raise ValueError(f"{name}: lora_down {tuple(down.shape)} and lora_up {tuple(up.shape)} do not chain")
        if up.dim() == 4 and tuple(up.shape[2:]) != (1, 1):
            raise ValueError(f"{name}: conv lora_up must be [out, r, 1, 1], is {tuple(up.shape)}")
    return len(modules)


def load_kohya_into_peft(
    state_dict: Mapping,
    unet=None,
    text_encoder=None,
    text_encoder_2=None,
    *,
    adapter_name: str = "default",
) -> dict[str, int]:
    """Add a peft adapter holding a kohya SDXL LoRA's weights (e.g. to continue training a LoRA).

    Every module of the file must land somewhere (ValueError otherwise). Missing alphas count as
    alpha = rank (sd-scripts' rule for old files). Returns the number of modules loaded per component.
    """
    import torch

    check_kohya_state_dict(state_dict, require_alpha=False)
    modules = split_kohya_state_dict(state_dict)
    models = {"unet": unet, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}
    table = kohya_module_table(unet, text_encoder, text_encoder_2)
    unknown = sorted(n for n in modules if n not in table)
    if unknown:
        raise ValueError(f"{len(unknown)} LoRA modules match no module of the given models: {unknown[:5]}")

    per_component: dict[str, dict[str, dict]] = {}
    for kohya_name, parts in modules.items():
        component, module_name = table[kohya_name]
        per_component.setdefault(component, {})[module_name] = parts

    counts = {}
    for component, entries in per_component.items():
        model = models[component]
        ranks = {n: int(p["lora_down.weight"].shape[0]) for n, p in entries.items()}
        alphas = {n: float(p["alpha"].float().item()) if "alpha" in p else float(ranks[n]) for n, p in entries.items()}
        inject_lora(model, ranks, alphas, adapter_name=adapter_name)
        layers = lora_modules(model, adapter_name)
        with torch.no_grad():
            for module_name, parts in entries.items():
                layer = layers[module_name]
                pairs = (("lora_down.weight", layer.lora_A[adapter_name].weight),
                         ("lora_up.weight", layer.lora_B[adapter_name].weight))
                for src, dst in pairs:
                    t = parts[src]
                    if tuple(t.shape) != tuple(dst.shape):
                        raise ValueError(
                            f"{component}.{module_name} {src}: file {tuple(t.shape)}, model {tuple(dst.shape)}"
                        )
                    dst.copy_(t.to(dst.dtype))
        counts[component] = len(entries)
    return counts


def load_kohya_into_pipeline(pipe, lora, *, adapter_name: str | None = None) -> None:
    """``pipe.load_lora_weights(lora)`` for an SDXL diffusers pipeline, working around a diffusers bug.

    diffusers 0.39 with transformers 5 cannot load any text-encoder LoRA into ``CLIPTextModel``
    (IndexError in ``get_peft_kwargs``: transformers 5 dropped the ``text_model.`` wrapper of
    CLIPTextModel while diffusers' kohya conversion still names ``text_encoder.text_model.*``;
    huggingface/diffusers#13984). This runs diffusers' own conversion and loaders, dropping that
    stale ``text_model.`` prefix only for an encoder that has no ``text_model`` submodule. A file
    without text-encoder weights goes straight through ``load_lora_weights``. ``lora``: a file path or
    a kohya state dict.
    """
    if not isinstance(lora, Mapping):
        from safetensors.torch import load_file

        lora = load_file(str(lora))
    lora = dict(lora)
    # (diffusers' conversion empties the dict it is given: hand it a copy)
    state_dict, network_alphas = pipe.lora_state_dict(dict(lora), unet_config=pipe.unet.config)
    has_te = any(k.startswith(("text_encoder.", "text_encoder_2.")) for k in state_dict)
    if not has_te:
        pipe.load_lora_weights(lora, adapter_name=adapter_name)  # (copies the dict)
        return

    def fix(mapping, prefix, encoder):
        if mapping is None or hasattr(encoder, "text_model"):
            return mapping
        stale = f"{prefix}.text_model."
        return {(f"{prefix}." + k[len(stale):] if k.startswith(stale) else k): v for k, v in mapping.items()}

    for prefix, encoder in (("text_encoder", pipe.text_encoder), ("text_encoder_2", pipe.text_encoder_2)):
        state_dict = fix(state_dict, prefix, encoder)
        network_alphas = fix(network_alphas, prefix, encoder)
    pipe.load_lora_into_unet(
        state_dict, network_alphas=network_alphas, unet=pipe.unet, adapter_name=adapter_name, _pipeline=pipe
    )
    for prefix, encoder in (("text_encoder", pipe.text_encoder), ("text_encoder_2", pipe.text_encoder_2)):
        if any(k.startswith(prefix + ".") for k in state_dict):
            pipe.load_lora_into_text_encoder(
                state_dict,
                network_alphas=network_alphas,
                text_encoder=encoder,
                prefix=prefix,
                lora_scale=pipe.lora_scale,
                adapter_name=adapter_name,
                _pipeline=pipe,
            )
