"""Base models: presets, downloads, checkpoint inspection, and loading SDXL lean enough for free Colab.

    resolved = resolve_base_model("Pony Diffusion V6 XL", models_dir=project.models)   # downloads once, to Drive
    parts = load_sdxl(resolved, dtype=torch.float16)                                  # unet, vae, encoders, ...

Modules: presets (the table), checkpoint (header-only inspection), download (resumable, verified),
resolve (base_model -> file/folder), load (diffusers folders and original single files, offline).
"""

from colabkit.train.models.checkpoint import CheckpointInfo, inspect_checkpoint
from colabkit.train.models.download import cache_dir, redact
from colabkit.train.models.download import download as download_file
from colabkit.train.models.load import (SDXL_CONFIGS, SDXLParts, fp16_fix_vae, load_sdxl, load_vae_for_caching,
                                        open_tensors, pick_config_dir, sdxl_tokenizer_dir)
from colabkit.train.models.presets import (EPSILON, PREDICTION_TYPES, PRESETS, V_PREDICTION, Preset, find_preset,
                                           normalize_prediction_type, preset_names)
from colabkit.train.models.resolve import (ModelFacts, ResolvedModel, fingerprint, local_models_dir, model_facts,
                                           resolve_base_model)

__all__ = [
    "CheckpointInfo", "inspect_checkpoint", "cache_dir", "download_file", "redact", "SDXL_CONFIGS", "SDXLParts",
    "fp16_fix_vae", "load_sdxl", "load_vae_for_caching", "open_tensors", "pick_config_dir", "sdxl_tokenizer_dir",
    "EPSILON", "PREDICTION_TYPES", "PRESETS", "V_PREDICTION", "Preset", "find_preset", "normalize_prediction_type",
    "preset_names", "ModelFacts", "model_facts", "ResolvedModel", "fingerprint", "local_models_dir", "resolve_base_model",
]
