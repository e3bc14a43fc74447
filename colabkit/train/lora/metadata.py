"""The LoRA file's metadata (sd-scripts ``ss_*`` + SAI ModelSpec 1.0.1) and the atomic save with hashes.

A1111/Forge read ``ss_*`` (tag frequencies, base model version, dim/alpha) and key their LoRA list by
``sshs_model_hash``; Civitai and ComfyUI-Manager read ``modelspec.*``. Values are all strings, as
sd-scripts writes them (``str(value)``, JSON for nested data).

Hashes, as sd-scripts' ``train_util.precalculate_safetensors_hashes`` computes them: the file is first
serialised with only the ``ss_*`` metadata (training facts, which never change after training), then
``sshs_model_hash`` = sha256 of everything after the header (the tensor bytes; what
sd-webui-additional-networks' ``addnet_hash_safetensors`` hashes) and ``sshs_legacy_hash`` = the first
8 hex digits of the sha256 of bytes 0x100000..0x10FFFF (``addnet_hash_legacy``; of nothing when the
file is shorter than 1 MiB).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Mapping

from colabkit import files
from colabkit.train.models.presets import EPSILON, V_PREDICTION

NETWORK_MODULE = "networks.lora"
BASE_MODEL_VERSION = "sdxl_base_v1-0"  # sd-scripts' MODEL_VERSION_SDXL_BASE_V1_0
ARCHITECTURE = "stable-diffusion-xl-v1-base/lora"  # sd-scripts' sai_model_spec for an SDXL LoRA
IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"  # sd-scripts: SDXL LoRAs are sgm-style
SAI_MODEL_SPEC = "1.0.1"
# the config's spellings (models.presets: "epsilon", "v_prediction") -> the file's (sd-scripts' PRED_TYPE_EPSILON / _V)
FILE_PREDICTION_TYPES = {EPSILON: "epsilon", V_PREDICTION: "v"}
LEGACY_HASH_START, LEGACY_HASH_LENGTH = 0x100000, 0x10000


def _resolution(resolution) -> tuple[int, int]:
    if isinstance(resolution, int):
        return resolution, resolution
    w, h = resolution
    return int(w), int(h)


def _str(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def build_metadata(
    *,
    output_name: str,
    network_dim: int,
    network_alpha: float,
    lora_type: str,
    resolution: int | tuple[int, int],
    num_train_images: int,
    tag_frequency: Mapping[str, Mapping[str, int]],
    activation_tag: str,
    base_model_name: str,
    prediction_type: str,
    unet_lr: float,
    text_encoder_lr: float | None,
    epoch: int,
    steps: int,
    seed: int,
    extra: Mapping[str, object] | None = None,
    conv_dim: int | None = None,
    conv_alpha: float | None = None,
    timestamp: float | None = None,
    zero_terminal_snr: bool = False,
    max_token_length: int = 75,
    dataset_dirs: Mapping[str, Mapping[str, int]] | None = None,
    num_reg_images: int = 0,
    prior_loss_weight: float | None = None,
    reg_dataset_dirs: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, str]:
    """Metadata for a LoRA file, all values strings.

    ``conv_dim``/``conv_alpha`` (LoCon only) default to ``network_dim``/``network_alpha``. ``timestamp``
    (seconds since the epoch, default now) gives ``modelspec.date``. ``extra`` adds keys; it may not
    replace one computed here. ``text_encoder_lr`` None is written "None", as sd-scripts does.

    ``prediction_type`` takes the config's spelling, "epsilon" or "v_prediction"; only here is it turned into the
    file's: ``modelspec.prediction_type`` "v" and ``ss_v_parameterization`` True. ``dataset_dirs``
    (``{"<folder>": {"n_repeats": N, "img_count": M}}``) becomes ``ss_dataset_dirs``, as sd-scripts writes it;
    ``num_train_images`` is its images x repeats summed (sd-scripts' meaning). ``zero_terminal_snr`` and
    ``max_token_length`` are recorded as sd-scripts' train_network.py records its options of those names
    (``ss_max_token_length`` "None" for the plain 75 tokens).
    """
    from colabkit import __version__
    from colabkit.train.config import LORA_TYPES, MAX_TOKEN_LENGTHS

    if lora_type not in LORA_TYPES:
        raise ValueError(f"lora_type must be one of {LORA_TYPES}, not {lora_type!r}")
    if prediction_type not in FILE_PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {tuple(FILE_PREDICTION_TYPES)}, not {prediction_type!r}")
    w, h = _resolution(resolution)
    if max_token_length not in MAX_TOKEN_LENGTHS:
        raise ValueError(f"max_token_length must be one of {MAX_TOKEN_LENGTHS}, not {max_token_length!r}")
    v_pred = prediction_type == V_PREDICTION
    ts = time.time() if timestamp is None else float(timestamp)

    meta: dict[str, object] = {
        "ss_output_name": output_name,
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": int(network_dim),
        "ss_network_alpha": float(network_alpha),
        # sd-scripts writes sdxl_base_v1-0 for every SDXL model, v-prediction too: that one is said by
        # ss_v_parameterization and modelspec.prediction_type (readers match the version string exactly)
        "ss_base_model_version": BASE_MODEL_VERSION,
        "ss_v2": False,
        "ss_v_parameterization": v_pred,
        "ss_sd_model_name": base_model_name,
        "ss_resolution": f"({w}, {h})",  # sd-scripts writes str() of its (width, height) tuple
        "ss_num_train_images": int(num_train_images),
        "ss_num_reg_images": int(num_reg_images),  # regularization images x their repeats, as sd-scripts counts
        **({"ss_prior_loss_weight": float(prior_loss_weight)} if prior_loss_weight is not None else {}),
        **({"ss_reg_dataset_dirs": json.dumps({k: dict(v) for k, v in reg_dataset_dirs.items()})}
           if reg_dataset_dirs else {}),
        "ss_tag_frequency": json.dumps({folder: dict(tags) for folder, tags in tag_frequency.items()}),
        **({"ss_dataset_dirs": json.dumps({folder: {"n_repeats": int(d["n_repeats"]), "img_count": int(d["img_count"])}
                                           for folder, d in dataset_dirs.items()})} if dataset_dirs else {}),
        "ss_training_comment": f"activation tag: {activation_tag}; trained with colabkit {__version__}"
        if activation_tag
        else f"trained with colabkit {__version__}",
        "ss_learning_rate": unet_lr,
        "ss_unet_lr": unet_lr,
        "ss_text_encoder_lr": text_encoder_lr,
        "ss_epoch": int(epoch),
        "ss_steps": int(steps),
        "ss_seed": int(seed),
        "ss_zero_terminal_snr": bool(zero_terminal_snr),
        "ss_max_token_length": None if max_token_length == 75 else int(max_token_length),
        "ss_training_finished_at": ts,
        "modelspec.sai_model_spec": SAI_MODEL_SPEC,
        "modelspec.architecture": ARCHITECTURE,
        "modelspec.implementation": IMPLEMENTATION,
        "modelspec.title": output_name,
        "modelspec.resolution": f"{w}x{h}",
        "modelspec.prediction_type": FILE_PREDICTION_TYPES[prediction_type],
        # ISO 8601 as sd-scripts writes it (no zone; UTC here, which is Colab's local time too)
        "modelspec.date": datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)
        .replace(tzinfo=None)
        .isoformat(),
    }
    if activation_tag:
        meta["modelspec.trigger_phrase"] = activation_tag
    if lora_type == "LoCon":
        cd = int(network_dim if conv_dim is None else conv_dim)
        ca = float(network_alpha if conv_alpha is None else conv_alpha)
        # sd-scripts stores --network_args as given on its command line: strings
        meta["ss_network_args"] = json.dumps({"conv_dim": str(cd), "conv_alpha": str(ca)})
    elif conv_dim is not None or conv_alpha is not None:
        raise ValueError("conv_dim/conv_alpha apply to LoCon only")
    for key, value in (extra or {}).items():
        if key in meta:
            raise ValueError(f"metadata key {key!r} is set by build_metadata; extra may not replace it")
        meta[key] = value
    return {k: _str(v) for k, v in meta.items()}


def safetensors_hashes(tensors: Mapping, metadata: Mapping[str, str] | None) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) of a LoRA, as sd-scripts precalculates them."""
    from safetensors.torch import save

    ss_only = {k: v for k, v in (metadata or {}).items() if k.startswith("ss_")}
    blob = save(dict(tensors), metadata=ss_only)
    header_len = int.from_bytes(blob[:8], "little")
    model_hash = hashlib.sha256(blob[8 + header_len :]).hexdigest()
    legacy = hashlib.sha256(blob[LEGACY_HASH_START : LEGACY_HASH_START + LEGACY_HASH_LENGTH]).hexdigest()[:8]
    return model_hash, legacy


def file_model_hash(path: str | os.PathLike, metadata: Mapping[str, str]) -> str:
    """A LoRA file's ``sshs_model_hash``: the one its metadata carries, else sha256 of the bytes after the header
    (the tensor bytes), as sd-scripts and A1111 compute it for a file written without one."""
    if metadata.get("sshs_model_hash"):
        return metadata["sshs_model_hash"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(8 + int.from_bytes(f.read(8), "little"))
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def save_lora(path: str | os.PathLike, tensors: Mapping, metadata: Mapping[str, str]) -> Path:
    """Write the LoRA atomically (temp file + fsync + rename), with sshs_model_hash / sshs_legacy_hash added."""
    from colabkit.train.lora.export import check_kohya_state_dict

    check_kohya_state_dict(tensors)
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"safetensors metadata must map str to str: {bad[:5]}")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    model_hash, legacy_hash = safetensors_hashes(tensors, metadata)
    full = {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
    return files.save_safetensors(path, tensors, full)
