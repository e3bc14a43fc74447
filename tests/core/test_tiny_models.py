import json

import pytest
import torch

from colabkit.train.models import meta
from colabkit.tiny.sdxl import UNET_CONFIG


def test_meta_sdxl_matches_published_counts():
    unet = meta.meta_unet()
    assert meta.count_params(unet) == meta.SDXL_PARAMS["unet"] == 2_567_463_684
    assert len(unet.state_dict()) == 1680
    assert next(unet.parameters()).device.type == "meta"
    te1, te2 = meta.meta_text_encoders()
    assert (meta.count_params(te1), meta.count_params(te2)) == (123_060_480, 694_659_840)


def test_tiny_has_sdxl_topology(tiny_sdxl):
    real = json.loads((meta.CONFIGS / "unet" / "config.json").read_text())
    tiny = json.loads((tiny_sdxl / "unet" / "config.json").read_text())
    for key in ("down_block_types", "up_block_types", "mid_block_type", "layers_per_block", "addition_embed_type",
                "use_linear_projection", "in_channels", "out_channels"):
        assert list(tiny[key]) == list(real[key]) if isinstance(real[key], list) else tiny[key] == real[key], key
    assert tiny["cross_attention_dim"] == 2 * 32 and UNET_CONFIG["transformer_layers_per_block"][2] == 2


@pytest.mark.slow
def test_tiny_pipeline_renders_on_cpu(tiny_sdxl):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("houtline, cat", num_inference_steps=3, height=128, width=128,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)
    assert len(set(image.getdata())) > 100  # noise, not a flat image
