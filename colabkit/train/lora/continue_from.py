"""continue_from_lora: a new run whose LoRA starts from an existing ``.safetensors`` LoRA (not the exact resume).

The files artists have: colabkit's own, kohya/sd-scripts' (SGM names, ``lora_unet_input_blocks_4_1_...``),
kohya files with diffusers block names (``lora_unet_down_blocks_1_attentions_0_...``, as diffusers'
``convert_state_dict_to_kohya`` writes them), LoRA and LoCon, with or without text-encoder parts, fp16 or fp32.

- The file decides its own shape: each module keeps its rank and alpha; the run's network_dim / network_alpha /
  lora_type / conv_dim / conv_alpha become the file's (its most common values), and the preflight says so in
  one row when the settings said otherwise. Modules the run trains that the file lacks start fresh (counted).
- Every key of the file is loaded, or named in a preflight row: a key that matches no module of the base model,
  a module colabkit does not train, a shape that does not fit, LoHa/LoKr/DoRA weights.
- Text-encoder parts: with text-encoder training on (text_encoder_lr > 0) they are loaded and trained on; with it
  off they are left out (not loaded, not written into the new file), and the preflight says how many. Loading
  them into frozen encoders would need the text cache keyed by the parent, and writing them back unchanged
  would pair them with a UNet that never trained with them.
- Refused before step 1, with the reason: a pickle (never opened), a file that is not a LoRA, an SD 1.x/2.x LoRA.

``read_parent`` (the plan: the file's header and the models' module names on the meta device) and
``apply_parent`` (the loop: after the run's adapters are added, the file's weights replace them).
"""

from __future__ import annotations

import collections
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from colabkit.i18n import _
from colabkit.train.lora.keys import TE_PREFIXES, UNET_PREFIX, kohya_module_table, te_canonical
from colabkit.train.lora.metadata import file_model_hash
from colabkit.train.models import checkpoint

PICKLE_SUFFIXES = checkpoint.PICKLE_SUFFIXES + (".pkl",)  # and a bare pickle dump
_PARTS = ("lora_down.weight", "lora_up.weight", "alpha")
# the last part of a key (after the module name) -> the LyCORIS kind it belongs to
_UNSUPPORTED = {"hada_": "LoHa", "lokr_": "LoKr", "dora_scale": "DoRA", "diff": "full-weight difference",
                "oft_": "OFT", "a1.weight": "GLoRA", "on_input": "IA3", "w_norm": "norm", "b_norm": "norm"}
_COMPONENT_OF_PREFIX = {UNET_PREFIX: "unet", TE_PREFIXES[0]: "text_encoder", TE_PREFIXES[1]: "text_encoder_2"}
TRAINED_KEY = {"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}  # the loop's ``trained`` names


@dataclass(frozen=True)
class ParentModule:
    name: str  # the file's module name (the key without .lora_down.weight / .lora_up.weight / .alpha)
    component: str  # unet | text_encoder | text_encoder_2
    module: str  # the diffusers / transformers module path
    rank: int
    alpha: float
    conv3x3: bool


@dataclass
class Parent:
    """What a LoRA file brings to a run, and what the preflight says about it."""

    path: Path
    model_hash: str = ""  # sshs_model_hash (the file's own, else computed as sd-scripts does)
    modules: list[ParentModule] = field(default_factory=list)
    left_out_te: int = 0  # text-encoder modules not used (text-encoder training off)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fresh: int = 0  # modules the run trains that the file lacks: they start fresh
    shape: dict = field(default_factory=dict)  # network_dim, network_alpha, lora_type, conv_dim, conv_alpha

    @property
    def metadata(self) -> dict[str, str]:
        """What the output's metadata says about its parent."""
        return {"ss_parent_lora": self.path.name, "ss_parent_lora_hash": self.model_hash}


def find_file(text: str, project=None) -> Path:
    """The file ``continue_from_lora`` names: a path, a Drive path (``MyDrive/...``, ``Loras/...``), or a name in
    the project's ``output/``. ColabkitError when there is none."""
    from colabkit.errors import ColabkitError
    from colabkit.project import drive_root

    path = Path(text).expanduser()
    candidates = [path]
    rel = re.sub(r"^/?(content/drive/)?MyDrive/", "", text)
    if not path.is_absolute() or rel != text:
        candidates.append(drive_root() / rel)
    if project is not None and not path.is_absolute():
        candidates += [project.root / text, project.output / text]
    for c in candidates:
        if c.is_file():
            return c
    raise ColabkitError(_("continue_from_lora: no file at {path}. Give the LoRA's path (Drive files are under "
                          "/content/drive/MyDrive/ in Colab), or its name in {output}.").format(
        path=text, output=project.output if project is not None else "output/"))


def _refusal(path: Path) -> str | None:
    """Why this file cannot be a LoRA to continue from, read from its first bytes (None: a safetensors file)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix.lower() in PICKLE_SUFFIXES or checkpoint.sniff(head) in ("zip", "pickle"):
        return _("{name} is a pickle (.ckpt/.pt/.bin): colabkit never opens pickles, they can run code. Use the "
                 ".safetensors version of the LoRA (or convert it on a computer you trust).").format(name=path.name)
    if len(head) < 8 or int.from_bytes(head[:8], "little") > 100_000_000 or head[8:9] != b"{":
        return _("{name} is not a .safetensors file (its header cannot be read). Give a LoRA .safetensors "
                 "file.").format(name=path.name)
    return None


def _name_table(unet, te1, te2) -> dict[str, tuple[str, str]]:
    """Every name a file may give a module -> (component, module path): sd-scripts' SGM names, the diffusers block
    names diffusers' convert_state_dict_to_kohya writes, text encoders with or without ``text_model_``."""
    table = dict(kohya_module_table(unet, te1, te2))
    for component, name in list(table.values()):
        if component == "unet":
            table.setdefault(UNET_PREFIX + name.replace(".", "_"), (component, name))
        else:
            prefix = TE_PREFIXES[0 if component == "text_encoder" else 1]
            for spelled in (name, te_canonical(name), name.removeprefix("text_model.")):
                table.setdefault(prefix + spelled.replace(".", "_"), (component, name))
    return table


def _module_shapes(module) -> tuple[tuple, tuple, bool] | None:
    """(lora_down shape without rank, lora_up shape without rank, conv3x3) a module's LoRA must have."""
    import torch

    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    if isinstance(base, torch.nn.Linear):
        return (base.in_features,), (base.out_features,), False
    if isinstance(base, torch.nn.Conv2d):
        k = tuple(base.kernel_size)
        return (base.in_channels, *k), (base.out_channels, 1, 1), k != (1, 1)
    return None


def _fits(shape: tuple, rank_first: bool, want: tuple) -> bool:
    """Whether a file tensor's shape fits (rank, *want) / (want[0], rank, *want[1:]), 1x1 convs written as Linears
    or the other way round included (sd-scripts stores 1x1 convs either way)."""
    rest = list(shape[1:]) if rank_first else [shape[0], *shape[2:]]
    want = list(want)
    strip = lambda s: s[:1] + [d for d in s[1:] if d != 1] if len(s) > 1 else s  # noqa: E731
    return rest == want or strip(rest) == strip(want)


def read_parent(path: Path, unet, text_encoder=None, text_encoder_2=None, *, train_text_encoder: bool,
                targets: dict | None = None, settings: dict | None = None) -> Parent:
    """What the LoRA at ``path`` brings to a run on these models (real or on the meta device).

    ``targets``: component -> the module names the run trains for each lora_type ({"LoRA": [...],
    "LoCon": [...]}), to count fresh modules and refuse modules colabkit does not train. ``settings``: the run's
    network_dim, network_alpha, lora_type, conv_dim, conv_alpha, to say where the file disagrees.
    """
    from safetensors import safe_open

    parent = Parent(path=path)
    why = _refusal(path)
    if why:
        parent.errors.append(why)
        return parent
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # a damaged header: safetensors raises its own error types
        parent.errors.append(_("{name} cannot be read as .safetensors ({error}).").format(name=path.name, error=e))
        return parent
    keys = sorted(shapes)
    version = metadata.get("ss_base_model_version", "")
    # SD 1.x/2.x: its metadata, its single text encoder (lora_te_), or attention in the first down block, which
    # SDXL does not have (diffusers' and SGM's spelling)
    if version.startswith(("sd_v1", "sd_v2")) or metadata.get("ss_v2") == "True" or any(
            k.startswith(("lora_te_", "lora_unet_down_blocks_0_attentions_", "lora_unet_input_blocks_1_1_"))
            for k in keys):
        parent.errors.append(_("{name} is a LoRA for Stable Diffusion 1.x/2.x ({why}), not SDXL: it cannot continue "
                               "on an SDXL model.").format(
            name=path.name, why=version or _("its module names")))
        return parent
    if not any(k.endswith((".lora_down.weight", ".lora_up.weight")) for k in keys):
        kinds = sorted({kind for k in keys for mark, kind in _UNSUPPORTED.items()
                        if k.startswith("lora_") and "." in k and k.split(".", 1)[1].startswith(mark)})
        parent.errors.append(
            _("{name} holds {kinds} weights, which colabkit cannot continue (LoRA and LoCon only).").format(
                name=path.name, kinds="/".join(kinds)) if kinds else
            _("{name} is not a LoRA: it has no lora_down/lora_up weights ({count} tensors, e.g. {example}). A full "
              "checkpoint goes into base_model; an embedding cannot be continued.").format(
                name=path.name, count=len(keys), example=keys[0] if keys else "none"))
        return parent
    parent.model_hash = file_model_hash(path, metadata)

    table = _name_table(unet, text_encoder, text_encoder_2)
    models = {"unet": unet, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}
    named = {c: dict(m.named_modules()) for c, m in models.items() if m is not None}
    groups: dict[str, dict[str, tuple]] = {}
    unknown: list[str] = []
    for k in keys:  # (LoHa/LoKr/DoRA parts beside LoRA ones land here, named)
        part = next((p for p in _PARTS if k.endswith("." + p)), None)
        if part is None:
            unknown.append(k)
            continue
        groups.setdefault(k[: -len(part) - 1], {})[part] = shapes[k]
    unmatched, bad_shape, incomplete, te_left = [], [], [], 0
    for name, parts in sorted(groups.items()):
        hit = table.get(name)
        if hit is None:
            unmatched.append(name)
            continue
        component, module = hit
        if "lora_down.weight" not in parts or "lora_up.weight" not in parts:
            incomplete.append(name)
            continue
        if component != "unet" and not train_text_encoder:
            te_left += 1
            continue
        want = _module_shapes(named[component][module])
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        if want is None or not (_fits(down, True, want[0]) and _fits(up, False, want[1]) and down[0] == up[1]):
            bad_shape.append(f"{name} (lora_down {list(down)}, lora_up {list(up)})")
            continue
        parent.modules.append(ParentModule(name, component, module, int(down[0]), 0.0, want[2]))
    if unknown:
        parent.errors.append(_("{count} keys of {name} are not LoRA weights colabkit can load: {keys}.").format(
            count=len(unknown), name=path.name, keys=", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")))
    if unmatched:
        parent.errors.append(_("{count} modules of {name} match no module of this base model (a LoRA for another "
                               "model?): {keys}.").format(
            count=len(unmatched), name=path.name,
            keys=", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")))
    if incomplete:
        parent.errors.append(_("{count} modules of {name} lack lora_down or lora_up: {keys}.").format(
            count=len(incomplete), name=path.name, keys=", ".join(incomplete[:5])))
    if bad_shape:
        parent.errors.append(_("{count} modules of {name} do not fit this base model's layers (made for another "
                               "model?): {keys}.").format(count=len(bad_shape), name=path.name,
                                                         keys="; ".join(bad_shape[:3])))
    if te_left:
        parent.left_out_te = te_left
        parent.warnings.append(_("{count} text-encoder modules of {name} are left out (not trained, not written): "
                                 "text-encoder training is off. Set text_encoder_lr above 0 to continue them "
                                 "too.").format(count=te_left, name=path.name))
    if parent.errors or not parent.modules:
        if not parent.errors:
            parent.errors.append(_("{name} has no UNet modules to continue from.").format(name=path.name))
        return parent
    with safe_open(str(path), "pt") as f:  # the alphas: 0-dim tensors, read now (a few bytes each)
        alphas = {g: float(f.get_tensor(g + ".alpha").float().item()) for g in groups if g + ".alpha" in shapes}
    parent.modules = [ParentModule(m.name, m.component, m.module, m.rank, alphas.get(m.name, float(m.rank)),
                                   m.conv3x3) for m in parent.modules]
    _decide_shape(parent, targets, settings or {})
    return parent


def _most_common(values, default):
    values = list(values)
    return collections.Counter(values).most_common(1)[0][0] if values else default


def _decide_shape(parent: Parent, targets: dict | None, settings: dict) -> None:
    """The run's LoRA shape from the file (its most common rank and alpha; LoCon when it has 3x3 convs), what
    disagrees with the settings, the modules colabkit does not train, and how many start fresh."""
    linear = [m for m in parent.modules if not m.conv3x3]
    conv = [m for m in parent.modules if m.conv3x3]
    dim = _most_common((m.rank for m in linear), settings.get("network_dim", 16))
    alpha = _most_common((m.alpha for m in linear), settings.get("network_alpha", dim))
    lora_type = "LoCon" if conv or any(".resnets." in m.module for m in linear) else "LoRA"
    conv_dim = _most_common((m.rank for m in conv), settings.get("conv_dim", dim))
    conv_alpha = _most_common((m.alpha for m in conv), settings.get("conv_alpha", alpha))
    shape = dict(network_dim=int(dim), network_alpha=_number(alpha), lora_type=lora_type, conv_dim=int(conv_dim),
                 conv_alpha=_number(conv_alpha))
    parent.shape = shape
    differ = [(k, settings[k], v) for k, v in shape.items() if k in settings and settings[k] != v
              and (k not in ("conv_dim", "conv_alpha") or lora_type == "LoCon")]
    if differ:
        parent.warnings.insert(0, _("the file decides the LoRA's shape: {pairs}.").format(
            pairs="; ".join(_("{setting} {mine} in the settings, {theirs} in the file (used)").format(
                setting=k, mine=mine, theirs=theirs) for k, mine, theirs in differ)))
    uneven = len({(m.rank, m.alpha) for m in linear}) > 1 or len({(m.rank, m.alpha) for m in conv}) > 1
    if uneven:
        parent.warnings.append(_("ranks or alphas differ between the file's modules: each keeps its own."))
    if targets is not None:
        wanted = {(c, n) for c, by_type in targets.items() for n in by_type.get(lora_type, [])}
        have = {(m.component, m.module) for m in parent.modules}
        outside = sorted(m.name for m in parent.modules if (m.component, m.module) not in wanted)
        if outside:
            parent.errors.append(_("{count} modules of {name} are layers colabkit does not train ({lora_type}: "
                                   "attention and feed-forward layers, LoCon also the resnets' convs): "
                                   "{keys}.").format(count=len(outside), name=parent.path.name, lora_type=lora_type,
                                                     keys=", ".join(outside[:5]) + (" ..." if len(outside) > 5
                                                                                      else "")))
        parent.fresh = len(wanted - have)


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def summary(parent: Parent) -> str:
    """The preflight's row for a parent that can be continued from."""
    per = collections.Counter(m.component for m in parent.modules)
    parts = [_("{n} UNet modules").format(n=per.get("unet", 0))]
    te = per.get("text_encoder", 0) + per.get("text_encoder_2", 0)
    if te:
        parts.append(_("{n} text-encoder modules").format(n=te))
    s = parent.shape
    line = _("starts from {name} (sshs_model_hash {hash}): {parts} loaded, {lora_type} rank {dim} alpha "
             "{alpha}").format(name=parent.path.name, hash=parent.model_hash[:12], parts=", ".join(parts),
                               lora_type=s["lora_type"], dim=s["network_dim"], alpha=s["network_alpha"])
    if s["lora_type"] == "LoCon":
        line += _(", conv rank {dim} alpha {alpha}").format(dim=s["conv_dim"], alpha=s["conv_alpha"])
    line += _("; {n} modules the file lacks start fresh.").format(n=parent.fresh)
    return line


# -- the loop: put the file's weights into the run's adapters -----------------------------------------------

def apply_parent(parent: Parent | None, trained: dict, adapter_name: str = "default") -> int:
    """After the run's adapters are added (``trained``: the loop's {"unet": unet, "te1": ..., "te2": ...}), give each
    module the file names its rank, alpha and weights. Returns the number of modules loaded. None: nothing."""
    import torch
    from safetensors import safe_open

    from colabkit.errors import ColabkitError
    from colabkit.train.lora.targets import lora_modules

    if parent is None:
        return 0
    layers = {c: lora_modules(getattr(trained.get(k), "module", trained.get(k)), adapter_name)
              for c, k in TRAINED_KEY.items() if trained.get(k) is not None}
    with safe_open(str(parent.path), "pt") as f, torch.no_grad():
        for m in parent.modules:
            layer = layers.get(m.component, {}).get(m.module)
            if layer is None:
                raise ColabkitError(_("continue_from_lora: {module} of {name} has no LoRA in this run; run the "
                                      "preflight again.").format(module=m.name, name=parent.path.name))
            down = f.get_tensor(m.name + ".lora_down.weight")
            up = f.get_tensor(m.name + ".lora_up.weight")
            a, b = layer.lora_A[adapter_name], layer.lora_B[adapter_name]
            if layer.r[adapter_name] != m.rank:  # a rank of its own: new A/B of that rank, as peft makes them
                a, b = _resized(a, m.rank, True), _resized(b, m.rank, False)
                layer.lora_A[adapter_name], layer.lora_B[adapter_name] = a, b
                layer.r[adapter_name] = m.rank
            layer.lora_alpha[adapter_name] = m.alpha
            layer.alpha_from_file = True  # export writes this alpha, whatever network_alpha says
            layer.scaling[adapter_name] = m.alpha / m.rank
            a.weight.copy_(down.reshape(a.weight.shape).to(a.weight.dtype))
            b.weight.copy_(up.reshape(b.weight.shape).to(b.weight.dtype))
    return len(parent.modules)


def _resized(layer, rank: int, is_down: bool):
    import torch

    if isinstance(layer, torch.nn.Linear):
        new = torch.nn.Linear(layer.in_features if is_down else rank, rank if is_down else layer.out_features,
                              bias=False)
    else:
        new = torch.nn.Conv2d(layer.in_channels if is_down else rank, rank if is_down else layer.out_channels,
                              layer.kernel_size, layer.stride, layer.padding, bias=False)
    return new.to(layer.weight.device, layer.weight.dtype)


def parent_metadata(continue_from_lora: str, project=None) -> dict[str, str]:
    """What the output's metadata says about its parent ({} without one): its file name and sshs_model_hash."""
    if not continue_from_lora.strip():
        return {}
    path = find_file(continue_from_lora.strip(), project)
    st = path.stat()
    return dict(_parent_metadata(str(path), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _parent_metadata(path: str, size: int, mtime_ns: int) -> tuple:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    return tuple(Parent(Path(path), file_model_hash(Path(path), metadata)).metadata.items())
