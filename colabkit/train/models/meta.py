"""The real SDXL base 1.0 networks on torch's meta device: real key names and shapes, no memory, no download."""

from __future__ import annotations

import json

from colabkit.train.models.load import SDXL_CONFIGS as CONFIGS

# Counted on the meta device with diffusers 0.42 / transformers 5.24 (shared/reference/README.md).
SDXL_PARAMS = {
    "unet": 2_567_463_684,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "vae": 83_653_863,
}


def _config(sub: str) -> dict:
    return json.loads((CONFIGS / sub / "config.json").read_text())


def meta_unet():
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(_config("unet"))


def meta_vae():
    import torch
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL.from_config(_config("vae"))


def meta_text_encoders():
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder_2"))
    return te1, te2


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
