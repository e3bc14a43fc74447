"""What a checkpoint file is, from its header alone: family, completeness, prediction type.

A safetensors file is ``<u64 little-endian n><n bytes of JSON header><tensor bytes>``; the header names every
tensor with its dtype, shape and byte range. Reading it costs at most a few hundred KB, so a 7 GB file on Drive
is judged in well under a second, and a file cut short is caught before any loading starts.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

from colabkit.errors import ColabkitError
from colabkit.train.models.presets import EPSILON, V_PREDICTION, normalize_prediction_type
from colabkit.i18n import _

Family = Literal["sdxl", "sdxl-refiner", "sd1", "sd2", "flux", "sd3", "lora", "unknown"]

UNET = "model.diffusion_model."
TE1 = "conditioner.embedders.0.transformer."  # CLIP ViT-L, already in transformers' names
TE2 = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG, OpenCLIP names
VAE = "first_stage_model."
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# The four networks of an SDXL checkpoint, by the prefix of their keys in the original single-file layout.
COMPONENTS = {"unet": UNET, "text_encoder": TE1, "text_encoder_2": TE2, "vae": VAE}
_MAX_HEADER = 100 * 2**20  # the real SDXL header is 402,436 bytes; anything near this is not a header
_FAMILY_WORDS = {
    "sd1": "a Stable Diffusion 1.x checkpoint",
    "sd2": "a Stable Diffusion 2.x checkpoint",
    "flux": "a FLUX checkpoint",
    "sd3": "a Stable Diffusion 3 checkpoint",
    "sdxl-refiner": "the SDXL refiner (it only polishes finished images; LoRAs are trained on a base model)",
    "lora": "a LoRA, not a base model",
    "unknown": "not a checkpoint layout colabkit recognises",
}
SUGGESTION = ("Pick an SDXL-family checkpoint instead, e.g. the preset 'SDXL base 1.0', 'Pony Diffusion V6 XL', "
              "'Animagine XL 3.1' or 'Illustrious XL 0.1', or a .safetensors whose Civitai page says 'SDXL 1.0', "
              "'Pony' or 'Illustrious'.")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    format: Literal["safetensors", "pickle"]
    family: Family
    file_bytes: int
    header_bytes: int  # 0 for pickle files
    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, int]  # dtype name -> how many tensors
    metadata: Mapping[str, str]
    prediction_type: str | None  # what the file itself says, None when it says nothing
    zero_terminal_snr: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    edm: bool = False  # an EDM v-prediction model (CosXL: "edm_vpred.sigma_max"), not trained on a ZTSNR schedule

    @property
    def n_tensors(self) -> int:
        return len(self.shapes)

    @property
    def has_unet(self) -> bool:
        return any(k.startswith(UNET) for k in self.shapes)

    @property
    def has_text_encoders(self) -> bool:
        return any(k.startswith(TE1) for k in self.shapes) and any(k.startswith(TE2) for k in self.shapes)

    @property
    def has_vae(self) -> bool:
        return any(k.startswith(VAE) for k in self.shapes)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    def describe(self) -> str:
        main = max(self.dtypes, key=self.dtypes.get) if self.dtypes else "?"
        pred = f", {self.prediction_type}" if self.prediction_type else ""
        return f"{self.family} ({self.format}, {self.n_tensors} tensors, {main}, {self.file_bytes / 1e9:.2f} GB{pred})"

    def require_sdxl(self) -> "CheckpointInfo":
        """Self if colabkit can train on it, else a ColabkitError that says what the file is and what to do."""
        name = self.path.name
        if self.family != "sdxl":
            raise ColabkitError(_("{name} is {family_words}. colabkit trains LoRAs for SDXL-family models only. "
                                  "{suggestion}").format(
                                    name=name, family_words=_FAMILY_WORDS[self.family], suggestion=SUGGESTION))
        missing = [what for what, ok in (("UNet", self.has_unet), ("text encoders", self.has_text_encoders),
                                         ("VAE", self.has_vae)) if not ok]
        if missing:
            raise ColabkitError(_("{name} is an SDXL checkpoint without its {names} (a partial file, e.g. 'UNet "
                                  "only'). Use the full checkpoint (usually about 6.9 GB) from the same page.").format(
                                    name=name, names=' and '.join(missing)))
        return self


def param_counts(shapes: Mapping[str, tuple[int, ...]], prefixes: Mapping[str, str] = COMPONENTS) -> dict[str, int]:
    """Parameters per component, from a header's shapes alone (no tensor is read)."""
    counts = dict.fromkeys(prefixes, 0)
    for key, shape in shapes.items():
        for name, prefix in prefixes.items():
            if key.startswith(prefix):
                counts[name] += math.prod(shape)
                break
    return counts


def read_safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a .safetensors header lists (a few KB read, whatever the file's size)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
        if len(head) < 9 or head[8:9] != b"{":
            raise _not_safetensors(path, head)
        (n,) = struct.unpack("<Q", head[:8])
        if n > _MAX_HEADER:
            raise _not_safetensors(path, head)
        f.seek(8)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ColabkitError(_("{path} has a damaged safetensors header ({error}). Download it again.").format(
                                    path=path, error=e)) from None
    header.pop("__metadata__", None)
    return {k: tuple(int(d) for d in v["shape"]) for k, v in header.items()}


def inspect_checkpoint(path: str | os.PathLike, *, require_sdxl: bool = False) -> CheckpointInfo:
    """Classify a single-file checkpoint by reading only its header (no tensor data).

    Raises ColabkitError for a file that cannot be used at all (missing, cut short, not a model, a pickle that
    needs more than plain tensors); with ``require_sdxl`` also for any family other than a full SDXL.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ColabkitError(_("No checkpoint file at {path}.").format(path=path))
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if head[8:9] != b"{" and (path.suffix.lower() in PICKLE_SUFFIXES or sniff(head) in ("zip", "pickle")):
        if path.suffix.lower() not in PICKLE_SUFFIXES:
            raise ColabkitError(
                _("{name} is a PyTorch pickle checkpoint, not safetensors, despite its name. Pickle files can run "
                  "code when loaded; get the .safetensors version of this model, or rename the file to .ckpt so "
                  "colabkit loads it in the safe tensors-only mode.").format(name=path.name))
        info = _inspect_pickle(path, size)
    else:
        info = _inspect_safetensors(path, size, head)
    return info.require_sdxl() if require_sdxl else info


def sniff(head: bytes) -> str:
    """A best guess at what a file that is not a valid safetensors actually is, for the error message."""
    h = head.lstrip()
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if h[:15].lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<head")):
        return "html"
    if h.startswith(b"version https://git-lfs"):
        return "lfs"
    if h.startswith((b"{\"error", b"{\"message", b"{\"detail")):
        return "json-error"
    return "unknown"


def _not_safetensors(path: Path, head: bytes) -> ColabkitError:
    kind = sniff(head)
    if kind == "html":
        why = ("it is a web page, not a model: the download link probably needs a login or an API token "
               "(Hugging Face: set HF_TOKEN; Civitai: add ?token=<your API key> to the URL)")
    elif kind == "json-error":
        why = f"it is a server's error message: {head[:60].decode('utf-8', 'replace')}..."
    elif kind == "lfs":
        why = "it is a Git LFS pointer (a few bytes naming the real file), not the model: download the file itself"
    elif len(head) < 8:
        why = "it is empty or nearly so"
    else:
        why = "it does not start with a safetensors header"
    return ColabkitError(_("{name} cannot be used: {why}. Delete it and download the model again.").format(
                             name=path.name, why=why))


def _inspect_safetensors(path: Path, size: int, head: bytes) -> CheckpointInfo:
    if size < 8:
        raise _not_safetensors(path, head)
    (n,) = struct.unpack("<Q", head[:8])
    looks_like_json = head[8:9] == b"{"
    if not looks_like_json or n > _MAX_HEADER:
        raise _not_safetensors(path, head)
    if 8 + n > size:
        raise _cut_short(path, size, 8 + n, "its header alone")
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ColabkitError(_("{name} has a damaged safetensors header ({error}). Delete it and download it again.").format(
                                name=path.name, error=e))
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: Counter[str] = Counter()
    end = 0
    for key, spec in header.items():
        try:
            shapes[key] = tuple(int(d) for d in spec["shape"])
            dtypes[str(spec["dtype"])] += 1
            end = max(end, int(spec["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ColabkitError(_("{name} has a damaged safetensors header (entry {key!r}). Download it again.").format(
                                    name=path.name, key=key))
    expected = 8 + n + end
    if expected > size:
        raise _cut_short(path, size, expected, "its tensors")
    return _classify(path, "safetensors", size, n, shapes, dict(dtypes), metadata)


def _cut_short(path: Path, size: int, expected: int, what: str) -> ColabkitError:
    return ColabkitError(
        _("{name} is cut short: the file has {size:,} bytes but {what} need {expected:,} ({value:.0f}% there). The "
          "download or copy stopped early. Delete it and download it again (colabkit's own downloads resume where "
          "they stopped).").format(
            name=path.name, size=size, what=what, expected=expected, value=100 * size / expected))


def _inspect_pickle(path: Path, size: int) -> CheckpointInfo:
    sd = load_pickle_state_dict(path)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    dtypes = Counter(str(v.dtype).replace("torch.", "") for v in sd.values())
    return _classify(path, "pickle", size, 0, shapes, dict(dtypes), {})


def load_pickle_state_dict(path: Path) -> dict:
    """A .ckpt's tensors via ``torch.load(weights_only=True)``, memory-mapped: no code runs, no data is read yet."""
    import pickle
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(64)
        if sniff(head) == "pickle":
            raise ColabkitError(_("{name} is in PyTorch's old (pre-1.6) pickle format, which cannot be loaded "
                                  "without reading it all into memory. Use a .safetensors version of this model.").format(
                                    name=path.name))
        if sniff(head) == "zip":  # starts like a zip but the directory at its end is missing
            raise _cut_short(path, path.stat().st_size, path.stat().st_size + 1, "its zip directory")
        raise _not_safetensors(path, head)
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ColabkitError(
            _("{name} holds Python objects besides tensors, so colabkit will not load it (a pickle can run code; "
              "colabkit only loads .ckpt files with weights_only=True). Use the model's .safetensors version. "
              "Detail: {error}").format(name=path.name, error=str(e).splitlines()[0][:200]))
    except (RuntimeError, EOFError, OSError) as e:
        raise ColabkitError(_("{name} could not be read ({error}); it is probably cut short or damaged. Download it "
                              "again.").format(name=path.name, error=str(e).splitlines()[0][:200]))
    # Lightning-era checkpoints wrap the weights: {"state_dict": {...}, "global_step": ...}
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ColabkitError(_("{name} does not hold a state dict (found {name2}).").format(
                                name=path.name, name2=type(obj).__name__))
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _classify(path: Path, fmt: str, size: int, header_bytes: int, shapes: dict[str, tuple[int, ...]],
              dtypes: dict[str, int], metadata: dict[str, str]) -> CheckpointInfo:
    keys = shapes.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    family: Family
    if not has(UNET) and any(k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) or ".lora_down." in k
                             or ".lora_A." in k or ".hada_w1_a" in k or ".lokr_w1" in k for k in keys):
        family = "lora"
    elif has("double_blocks.") or has(UNET + "double_blocks.") or has("single_blocks."):
        family = "flux"
    elif has("joint_blocks.") or has(UNET + "joint_blocks.") or has("text_encoders.clip_g."):
        family = "sd3"
    elif has(TE2) or has(TE1):
        family = "sdxl"
    elif has("conditioner.embedders.0.model."):
        family = "sdxl-refiner"
    elif has("cond_stage_model.model."):
        family = "sd2"
    elif has("cond_stage_model.transformer."):
        family = "sd1"
    elif has(UNET + "label_emb."):
        family = "sdxl"  # a UNet-only SDXL file: require_sdxl() says what is missing
    elif has(UNET + "input_blocks."):
        family = _sd_by_context(shapes)
    else:
        family = "unknown"

    notes: list[str] = []
    prediction = normalize_prediction_type(metadata.get("modelspec.prediction_type"))
    # Some v-prediction SDXL models (NoobAI-XL v-pred, ...) mark themselves with marker tensors, the way
    # ComfyUI detects them: "v_pred" (and "ztsnr" for zero-terminal-SNR training), "edm_vpred.sigma_max" (CosXL).
    if "v_pred" in keys or "edm_vpred.sigma_max" in keys:
        prediction = V_PREDICTION
    if "edm_vpred.sigma_max" in keys:
        notes.append(_("EDM v-prediction model (CosXL-style): colabkit trains it on the standard DDPM schedule."))
    if "edm_mean" in keys:
        notes.append(_("EDM model (Playground v2.5-style): colabkit's DDPM training does not match how it was made."))
    zsnr = "ztsnr" in keys
    if fmt == "safetensors" and metadata.get("ss_v_parameterization", "").lower() == "true":
        prediction = V_PREDICTION
    return CheckpointInfo(path=path, format=fmt, family=family, file_bytes=size,  # type: ignore[arg-type]
                          header_bytes=header_bytes, shapes=shapes, dtypes=dtypes, metadata=metadata,
                          prediction_type=prediction, zero_terminal_snr=zsnr, notes=tuple(notes),
                          edm="edm_vpred.sigma_max" in keys)


def _sd_by_context(shapes: Mapping[str, tuple[int, ...]]) -> Family:
    # A UNet-only SD file: the cross-attention width tells 1.x (768, CLIP-L) from 2.x (1024, OpenCLIP-H).
    for key, shape in shapes.items():
        if key.startswith(UNET) and key.endswith("attn2.to_k.weight"):
            return "sd1" if shape[-1] == 768 else "sd2" if shape[-1] == 1024 else "unknown"
    return "unknown"


__all__ = ["CheckpointInfo", "inspect_checkpoint", "load_pickle_state_dict", "EPSILON", "V_PREDICTION"]
