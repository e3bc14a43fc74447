"""Load an SDXL (diffusers folder or original single file) into memory at the training dtype, offline and lean.

Host RAM is the tight resource on free Colab (12.7 GB). A plain ``from_pretrained`` of SDXL without a dtype peaks at
15.5 GB (an fp32 copy); with ``torch_dtype=float16`` at 0.5 GB. The single-file path here keeps the same property:
modules are built with their parameters on the meta device (no memory), tensors are read from the file one at a
time and cast to the target dtype on the way (so there is never an fp32 copy of the whole model), renamed with
diffusers' own original->diffusers conversion, and assigned into the modules without another copy.

Configs: a real SDXL file uses the configs shipped in colabkit/configs/sdxl-base-1.0 (no hub access needed); a file
with other shapes (the built-in tiny-sdxl written as a single file) is matched to the tiny-sdxl folder, or to any
folder passed as ``config=``. Tokenizers come from that folder when it has its vocabulary; the shipped SDXL folder
has none (1.5 MB, not shipped), so for a real SDXL it is fetched once from stabilityai/stable-diffusion-xl-base-1.0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from colabkit.errors import ColabkitError
from colabkit.train.models import download as dl
from colabkit.train.models.checkpoint import (TE1, TE2, UNET, VAE, CheckpointInfo, inspect_checkpoint,
                                              load_pickle_state_dict)
from colabkit.train.models.presets import EPSILON, V_PREDICTION
from colabkit.train.models.resolve import ResolvedModel
from colabkit.i18n import _

SDXL_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "sdxl-base-1.0"
SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
FP16_FIX_VAE_REPO = "madebyollin/sdxl-vae-fp16-fix"
# Keys in original files that carry nothing we need: CLIP's position_ids (an arange the model makes itself; files
# store it as fp16, which as a buffer would break the embedding lookup) and OpenCLIP's unused logit_scale.
_IGNORED_SUFFIXES = ("position_ids", "logit_scale")



@dataclass
class SDXLParts:
    unet: Any  # UNet2DConditionModel at ``dtype``
    vae: Any  # AutoencoderKL: float32 (the stock SDXL VAE gives NaN in fp16), or the fp16-fix VAE at ``dtype``
    text_encoder: Any  # CLIPTextModel
    text_encoder_2: Any  # CLIPTextModelWithProjection
    tokenizer: Any
    tokenizer_2: Any
    noise_scheduler: Any  # DDPMScheduler with prediction_type set
    prediction_type: str
    zero_terminal_snr: bool = False
    vae_is_fp16_fix: bool = False
    source: ResolvedModel | None = None


def load_sdxl(resolved: ResolvedModel, *, dtype=None, device: str = "cpu", vae_fp16_fix: bool = False,
              config: str | os.PathLike | None = None, prediction_type: str | None = None,
              zero_terminal_snr: bool | None = None) -> SDXLParts:
    """Load every part of the SDXL ``resolved`` names, weights at ``dtype`` (default float16) on ``device``.

    ``vae_fp16_fix``: use madebyollin/sdxl-vae-fp16-fix (downloaded once from the hub) at ``dtype`` instead of the
    model's own VAE, which is otherwise kept in float32. ``config``: a diffusers-layout folder whose configs
    describe a single file with non-standard shapes (normally chosen automatically). ``prediction_type`` /
    ``zero_terminal_snr``: the run's decisions for the training schedule (None: what ``resolved`` says).
    """
    import dataclasses

    import torch

    changes = {k: v for k, v in (("prediction_type", prediction_type), ("zero_terminal_snr", zero_terminal_snr))
               if v is not None}
    resolved = dataclasses.replace(resolved, **changes) if changes else resolved

    dtype = torch.float16 if dtype is None else dtype
    if not resolved.present:
        raise ColabkitError(_("{name} is not downloaded yet: resolve it with download=True first.").format(
                                name=resolved.name))
    if resolved.kind == "diffusers":
        parts = _load_folder(resolved, dtype, vae_fp16_fix)
    else:
        parts = _load_single_file(resolved, dtype, vae_fp16_fix, Path(config) if config else None)
    if str(device) != "cpu":
        for m in (parts.unet, parts.vae, parts.text_encoder, parts.text_encoder_2):
            m.to(device)
    return parts


def load_vae_for_caching(parts_or_resolved: SDXLParts | ResolvedModel, fp16_fix: bool = False):
    """The VAE to encode training images with: float32, or the fp16-fix VAE in float16 when ``fp16_fix``.

    The stock SDXL VAE overflows to NaN in float16, so it is never run at half precision here.
    """
    import torch

    if fp16_fix:
        if isinstance(parts_or_resolved, SDXLParts) and parts_or_resolved.vae_is_fp16_fix:
            return parts_or_resolved.vae.to(torch.float16)
        return fp16_fix_vae(torch.float16)
    if isinstance(parts_or_resolved, SDXLParts):
        return parts_or_resolved.vae.to(torch.float32)
    resolved = parts_or_resolved
    if resolved.kind == "diffusers":
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(resolved.path, subfolder="vae", torch_dtype=torch.float32).eval()
    info = resolved.info or inspect_checkpoint(resolved.path, require_sdxl=True)
    cfg_dir = pick_config_dir(info)
    with open_tensors(resolved.path, torch.float32) as tensors:
        return _vae_from_original(tensors, _read_config(cfg_dir, "vae"), resolved.path.name)


def fp16_fix_vae(dtype=None):
    """madebyollin/sdxl-vae-fp16-fix: the SDXL VAE finetuned to stay finite in float16 (downloaded once, 335 MB)."""
    import torch
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(FP16_FIX_VAE_REPO, torch_dtype=dtype or torch.float16)
    except (OSError, ValueError) as e:
        raise ColabkitError(_("Could not get the fp16-fix VAE ({fp16_fix_vae_repo}) from Hugging Face ({error}). "
                              "Connect to the internet once, or set vae_fp16_fix off (the VAE then runs in float32: "
                              "slower caching, same quality).").format(
                                fp16_fix_vae_repo=FP16_FIX_VAE_REPO, error=str(e).splitlines()[0][:160])) from None
    return vae.eval()


# -- diffusers folders --------------------------------------------------------------------------------------------

def _variant(folder: Path) -> str | None:
    """'fp16' when a component folder only has the fp16 variant files (a hub download with variant='fp16')."""
    names = [p.name for p in folder.glob("*.safetensors")] + [p.name for p in folder.glob("*.bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


def _load_folder(resolved: ResolvedModel, dtype, vae_fp16_fix: bool) -> SDXLParts:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    root = resolved.path

    def load(cls, sub: str, **dtype_kw):
        try:
            return cls.from_pretrained(root, subfolder=sub, variant=_variant(root / sub), **dtype_kw)
        except (OSError, ValueError, RuntimeError) as e:
            raise ColabkitError(_("Could not load {sub}/ of the diffusers folder {root}: {error}. The folder may be "
                                  "incomplete: download it again.").format(
                                    sub=sub, root=root, error=str(e).splitlines()[0][:300])) from None

    # With the dtype given, both libraries load straight to it (host RAM ~ the fp16 size, never an fp32 copy).
    # diffusers calls the argument torch_dtype, transformers 5 dtype.
    unet = load(UNet2DConditionModel, "unet", torch_dtype=dtype)
    vae = fp16_fix_vae(dtype) if vae_fp16_fix else load(AutoencoderKL, "vae", torch_dtype=torch.float32)
    te1 = load(CLIPTextModel, "text_encoder", dtype=dtype)
    te2 = load(CLIPTextModelWithProjection, "text_encoder_2", dtype=dtype)
    tok1 = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer_2")
    sched = _scheduler(_read_json(root / "scheduler" / "scheduler_config.json"), resolved.prediction_type,
                       resolved.zero_terminal_snr)
    return SDXLParts(unet.eval(), vae.eval(), te1.eval(), te2.eval(), tok1, tok2, sched, resolved.prediction_type,
                     resolved.zero_terminal_snr, vae_fp16_fix, resolved)


def _scheduler(config: Mapping, prediction_type: str, zero_terminal_snr: bool):
    from colabkit.train.noise import training_scheduler

    return training_scheduler(config, prediction_type, zero_terminal_snr)


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' own notices off for a moment (config keys a class ignores, adapters a file does not touch):
    not the user's concern."""
    from diffusers.utils import logging as dlog

    old = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(old)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# -- single files ---------------------------------------------------------------------------------------------------

class LazyTensors(Mapping):
    """A checkpoint's tensors, read one at a time on access and cast to ``dtype`` (floating point ones only).

    Each access reads the file again: callers (diffusers' converters) read each key once.
    """

    def __init__(self, keys: list[str], read: Callable[[str], Any], dtype):
        self._keys = list(keys)
        self._set = set(self._keys)
        self._read = read
        self.dtype = dtype

    def __getitem__(self, key: str):
        if key not in self._set:
            raise KeyError(key)
        t = self._read(key)
        return t.to(self.dtype) if t.is_floating_point() and t.dtype != self.dtype else t

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@contextlib.contextmanager
def open_tensors(path: str | os.PathLike, dtype) -> Iterator[LazyTensors]:
    """A LazyTensors view of a .safetensors (safe_open, memory-mapped) or a .ckpt (torch.load weights_only, mmap)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # by content, not by name: a .ckpt that is really safetensors loads as safetensors
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            yield LazyTensors(list(f.keys()), f.get_tensor, dtype)
    else:
        sd = load_pickle_state_dict(path)
        yield LazyTensors(list(sd), sd.__getitem__, dtype)
        del sd


@contextlib.contextmanager
def _params_on_meta() -> Iterator[None]:
    """Build modules with parameters on the meta device (no memory, no init work); buffers stay real.

    Buffers must stay real: some are not in any checkpoint (CLIP's position_ids), so nothing would replace them.
    """
    import torch

    original = torch.nn.Module.register_parameter

    def register(module, name, param):
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    torch.nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


def _assign(model, state: dict, what: str, source: str):
    """Put ``state`` into ``model`` (built on meta) without copying; every parameter must be covered."""
    expected = set(model.state_dict())
    state = _match_prefix(state, expected)
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIXES)}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    # Non-persistent buffers never appear in state_dict(); persistent ones the file lacks keep their init value.
    missing = [k for k in missing if _is_parameter(model, k)]
    if missing or unexpected:
        detail = ", ".join((missing or unexpected)[:3])
        raise ColabkitError(
            _("{source}: the {what} does not match the SDXL layout ({n_missing} weights missing, {n_unexpected} "
              "unexpected, e.g. {detail}). The file may be a different architecture or a damaged conversion; use an "
              "SDXL checkpoint from its original publisher.").format(
                source=source, what=what, n_missing=len(missing), n_unexpected=len(unexpected), detail=detail))
    try:
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ColabkitError(_("{source}: the {what}'s tensor shapes do not match the config used ({value}). If this "
                              "is a custom-sized SDXL, pass config= a diffusers folder with matching configs.").format(
                                source=source, what=what, value=(lines[1] if len(lines) > 1 else str(e))[:200])) from None
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left:
        raise ColabkitError(_("{source}: the {what} has no weights for {names}.").format(
                                source=source, what=what, names=', '.join(left[:3])))
    return model.eval()


def _is_parameter(model, key: str) -> bool:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return name in module._parameters


def _match_prefix(state: dict, expected: set[str]) -> dict:
    # transformers >= 5.6 dropped CLIPTextModel's "text_model." level; files (and older code) still have it.
    model_has = any(k.startswith("text_model.") for k in expected)
    state_has = any(k.startswith("text_model.") for k in state)
    if state_has and not model_has:
        return {k.removeprefix("text_model."): v for k, v in state.items()}
    if model_has and not state_has:
        return {(k if k == "text_projection.weight" else "text_model." + k): v for k, v in state.items()}
    return state


def _read_config(cfg_dir: Path, sub: str) -> dict:
    return json.loads((cfg_dir / sub / "config.json").read_text())


def _unet_from_original(tensors: LazyTensors, config: dict, source: str):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with _params_on_meta():
        model = UNet2DConditionModel.from_config(config)
    return _assign(model, convert_ldm_unet_checkpoint(tensors, config), "UNet", source)


def _vae_from_original(tensors: LazyTensors, config: dict, source: str):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    with _params_on_meta():
        model = AutoencoderKL.from_config(config)
    return _assign(model, convert_ldm_vae_checkpoint(tensors, config), "VAE", source)


def _te1_from_original(tensors: LazyTensors, cfg_dir: Path, source: str):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    with _params_on_meta():
        model = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg_dir / "text_encoder"))
    # Only keys under the prefix are read (lazily); the converter strips it.
    sd = convert_ldm_clip_checkpoint(_Prefixed(tensors, TE1))
    return _assign(model, sd, "text encoder 1", source)


def _te2_from_original(tensors: LazyTensors, cfg_dir: Path, source: str):
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with _params_on_meta():
        model = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg_dir / "text_encoder_2"))
    sd = convert_open_clip_checkpoint(model, _Prefixed(tensors, TE2), prefix=TE2)
    return _assign(model, sd, "text encoder 2", source)


class _Prefixed(Mapping):
    """The part of a LazyTensors under one prefix (keys unchanged), so a converter scans ~200 keys, not 2,500."""

    def __init__(self, tensors: LazyTensors, prefix: str):
        self._t = tensors
        self._keys = [k for k in tensors if k.startswith(prefix)]
        self._set = set(self._keys)

    def __getitem__(self, key):
        if key not in self._set:
            raise KeyError(key)
        return self._t[key]

    def __contains__(self, key) -> bool:
        return key in self._set

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def config_mismatches(cfg_dir: Path, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """How a single file's shapes differ from the diffusers configs in ``cfg_dir`` (empty list: they match)."""
    unet, vae = _read_config(cfg_dir, "unet"), _read_config(cfg_dir, "vae")
    te1, te2 = _read_config(cfg_dir, "text_encoder"), _read_config(cfg_dir, "text_encoder_2")
    c0 = unet["block_out_channels"][0]
    expect = {
        UNET + "input_blocks.0.0.weight": (c0, unet["in_channels"], 3, 3),
        UNET + "label_emb.0.0.weight": (unet.get("time_embedding_dim") or 4 * c0,
                                        unet["projection_class_embeddings_input_dim"]),
        TE1 + "text_model.embeddings.token_embedding.weight": (te1["vocab_size"], te1["hidden_size"]),
        TE2 + "token_embedding.weight": (te2["vocab_size"], te2["hidden_size"]),
        VAE + "encoder.conv_in.weight": (vae["block_out_channels"][0], vae["in_channels"], 3, 3),
    }
    out = [f"{k}: file {shapes.get(k)}, config {v}" for k, v in expect.items() if shapes.get(k) != v]
    depth = {
        "text encoder 1 layers": (_count(shapes, TE1 + "text_model.encoder.layers."), te1["num_hidden_layers"]),
        "text encoder 2 layers": (_count(shapes, TE2 + "transformer.resblocks."), te2["num_hidden_layers"]),
        "mid-block transformer layers": (_count(shapes, UNET + "middle_block.1.transformer_blocks."),
                                         _as_list(unet["transformer_layers_per_block"])[-1]),
    }
    out += [f"{what}: file {a}, config {b}" for what, (a, b) in depth.items() if a != b]
    return out


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _count(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in shapes if k.startswith(prefix)})


def pick_config_dir(info: CheckpointInfo, override: Path | None = None) -> Path:
    """The diffusers-layout config folder that fits a single file: ``override``, SDXL's shipped one, or tiny-sdxl."""
    if override is not None:
        problems = config_mismatches(override, info.shapes)
        if problems:
            raise ColabkitError(_("{name} does not match the configs in {override}: {problems}.").format(
                                    name=info.path.name, override=override, problems=problems[0]))
        return override
    problems = config_mismatches(SDXL_CONFIGS, info.shapes)
    if not problems:
        return SDXL_CONFIGS
    from colabkit.tiny import sdxl as tiny_sdxl

    conv_in = info.shapes.get(UNET + "input_blocks.0.0.weight", (0,))
    if conv_in[0] == tiny_sdxl.UNET_CONFIG["block_out_channels"][0]:  # cheap test before building tiny-sdxl
        tiny = tiny_sdxl.tiny_sdxl_path()
        if not config_mismatches(tiny, info.shapes):
            return tiny
    raise ColabkitError(
        _("{name} is SDXL-like but its shapes differ from SDXL base 1.0 ({problems}). colabkit knows the standard "
          "SDXL architecture only; a resized or pruned model needs its own diffusers configs (pass config=).").format(
            name=info.path.name, problems=problems[0]))


def _load_single_file(resolved: ResolvedModel, dtype, vae_fp16_fix: bool, config: Path | None) -> SDXLParts:
    import torch

    info = resolved.info or inspect_checkpoint(resolved.path, require_sdxl=True)
    cfg_dir = pick_config_dir(info, config)
    source = resolved.path.name
    tok1, tok2 = _tokenizers(cfg_dir)  # first: if it needs the network and has none, fail before the 7 GB read
    with open_tensors(resolved.path, dtype) as tensors:
        unet = _unet_from_original(tensors, _read_config(cfg_dir, "unet"), source)
        te1 = _te1_from_original(tensors, cfg_dir, source)
        te2 = _te2_from_original(tensors, cfg_dir, source)
        if not vae_fp16_fix:
            tensors.dtype = torch.float32  # the stock SDXL VAE is only safe in float32 (335 MB)
            vae = _vae_from_original(tensors, _read_config(cfg_dir, "vae"), source)
    if vae_fp16_fix:
        vae = fp16_fix_vae(dtype)
    sched = _scheduler(_read_json(cfg_dir / "scheduler" / "scheduler_config.json"), resolved.prediction_type,
                       resolved.zero_terminal_snr)
    return SDXLParts(unet, vae.eval(), te1, te2, tok1, tok2, sched, resolved.prediction_type,
                     resolved.zero_terminal_snr, vae_fp16_fix, resolved)


def _tokenizers(cfg_dir: Path):
    from transformers import CLIPTokenizer

    folder = cfg_dir if (cfg_dir / "tokenizer" / "vocab.json").is_file() else sdxl_tokenizer_dir()
    return (CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
            CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2"))


def sdxl_tokenizer_dir() -> Path:
    """SDXL's two tokenizer folders: the shipped configs plus CLIP's vocab.json/merges.txt (fetched once, 1.5 MB).

    Both tokenizers share one vocabulary; they differ only in their configs (tokenizer_2 pads with '!').
    """
    folder = dl.cache_dir() / "sdxl-base-1.0-tokenizers"
    if all((folder / sub / name).is_file() for sub in ("tokenizer", "tokenizer_2")
           for name in ("vocab.json", "merges.txt")):
        return folder
    try:
        from huggingface_hub import hf_hub_download

        fetched = {name: Path(hf_hub_download(SDXL_REPO, f"tokenizer/{name}")) for name in ("vocab.json", "merges.txt")}
    except Exception as e:  # offline, hub down: one clear message instead of the hub's stack of errors
        raise ColabkitError(
            _("The SDXL tokenizer vocabulary (vocab.json and merges.txt, 1.5 MB) is needed once from Hugging Face "
              "({sdxl_repo}) and could not be fetched ({name}). Connect to the internet and run again, or copy "
              "those two files into {folder}/tokenizer/ and {folder}/tokenizer_2/.").format(
                sdxl_repo=SDXL_REPO, name=e.__class__.__name__, folder=folder)) from None
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("tokenizer", "tokenizer_2"):
        (tmp / sub).mkdir(parents=True)
        for f in (SDXL_CONFIGS / sub).iterdir():
            shutil.copyfile(f, tmp / sub / f.name)
        for name, src in fetched.items():
            shutil.copyfile(src, tmp / sub / name)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


__all__ = ["SDXLParts", "load_sdxl", "load_vae_for_caching", "fp16_fix_vae", "open_tensors", "LazyTensors",
           "pick_config_dir", "config_mismatches", "sdxl_tokenizer_dir", "SDXL_CONFIGS", "EPSILON", "V_PREDICTION"]
