"""SDXL LoRA: train through peft, save one sd-scripts-style ``.safetensors`` that loads everywhere.

- ``targets``  which modules get a LoRA (sd-scripts' choice: LoRA / LoCon, text encoders) and
  ``add_lora`` / ``lora_parameters`` to put a peft adapter there and train it.
- ``keys``     module names: diffusers <-> SGM (original checkpoint) <-> kohya ``lora_unet_...``.
- ``export``   peft weights -> kohya state dict (``export_kohya``) and back (``load_kohya_into_peft``;
  ``load_kohya_into_pipeline``: diffusers' ``load_lora_weights`` minus a transformers-5 text-encoder bug).
- ``metadata`` ``ss_*`` / ``modelspec.*`` metadata and ``save_lora`` (atomic, with sshs hashes).

Trainer flow::

    torch.manual_seed(seed)
    add_lora(unet, unet_targets(unet, "LoCon"), rank=8, alpha=4, conv_rank=4, conv_alpha=2)
    add_lora(te1, text_encoder_targets(te1), rank=8, alpha=4)       # optional, same for te2
    optimizer = AdamW(lora_parameters(unet) + lora_parameters(te1) + ..., ...)
    ...
    tensors = export_kohya(unet, te1, te2, alpha=4, conv_alpha=2)   # fp16, CPU
    save_lora(path, tensors, build_metadata(..., lora_type="LoCon", conv_dim=4, conv_alpha=2))
"""

from colabkit.train.lora import continue_from
from colabkit.train.lora.export import (
    check_kohya_state_dict,
    export_kohya,
    load_kohya_into_peft,
    load_kohya_into_pipeline,
)
from colabkit.train.lora.keys import (
    kohya_module_table,
    kohya_te_name,
    kohya_unet_name,
    sgm_to_unet,
    unet_to_sgm,
)
from colabkit.train.lora.metadata import build_metadata, safetensors_hashes, save_lora
from colabkit.train.lora.targets import (
    LORA_TYPES,
    add_lora,
    lora_modules,
    lora_parameters,
    text_encoder_targets,
    unet_targets,
)

__all__ = [
    "LORA_TYPES",
    "add_lora",
    "build_metadata",
    "continue_from",
    "check_kohya_state_dict",
    "export_kohya",
    "kohya_module_table",
    "kohya_te_name",
    "kohya_unet_name",
    "load_kohya_into_peft",
    "load_kohya_into_pipeline",
    "lora_modules",
    "lora_parameters",
    "safetensors_hashes",
    "save_lora",
    "sgm_to_unet",
    "text_encoder_targets",
    "unet_targets",
    "unet_to_sgm",
]
