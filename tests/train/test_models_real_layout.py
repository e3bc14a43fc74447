"""The real SDXL's shapes and names, on the meta device (no weights): the layout facts of sd_xl_base_1.0.safetensors."""

import pytest
import torch

from colabkit.train.models import meta
from helpers.single_file import diffusers_to_original


@pytest.fixture(scope="module")
def real():
    unet, vae = meta.meta_unet(), meta.meta_vae()
    te1, te2 = meta.meta_text_encoders()
    return unet, vae, te1, te2


@pytest.fixture(scope="module")
def original(real):
    unet, vae, te1, te2 = real
    return diffusers_to_original(unet.state_dict(), te1.state_dict(), te2.state_dict(), vae.state_dict(),
                                 unet_config=meta._config("unet"), vae_config=meta._config("vae"))


def test_original_layout_counts_match_the_published_file(original):
    # shared/reference/README.md: 2,515 tensors; 1,680 under model.diffusion_model.
    assert len(original) == 2515
    assert sum(k.startswith("model.diffusion_model.") for k in original) == 1680
    assert sum(k.startswith("first_stage_model.") for k in original) == 248
    assert "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias" in original  # marks an SDXL base
    assert tuple(original["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].shape) == (
        3 * 1280, 1280)
    assert tuple(original["conditioner.embedders.1.model.text_projection"].shape) == (1280, 1280)
    assert tuple(original["model.diffusion_model.label_emb.0.0.weight"].shape) == (1280, 2816)
    # Every tensor in fp16: the data bytes are exactly the file's size minus its 8 + 402,436 header bytes.
    assert sum(v.numel() * 2 for v in original.values()) == 6_938_078_334 - 8 - 402_436


def test_real_shapes_classify_and_pick_the_shipped_configs(original, tmp_path):
    from colabkit.train.models.checkpoint import _classify
    from colabkit.train.models.load import SDXL_CONFIGS, config_mismatches, pick_config_dir

    shapes = {k: tuple(v.shape) for k, v in original.items()}
    info = _classify(tmp_path / "sd_xl_base_1.0.safetensors", "safetensors", 6_938_078_334, 402_436, shapes,
                     {"F16": 2515}, {})
    assert info.require_sdxl().family == "sdxl"
    assert config_mismatches(SDXL_CONFIGS, shapes) == []
    assert pick_config_dir(info) == SDXL_CONFIGS


def test_diffusers_conversion_of_the_real_layout_gives_every_weight(real, original):
    # The loader's path (diffusers' original->diffusers converters) on real shapes: every parameter, right shape.
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)

    from colabkit.train.models.load import _match_prefix

    unet, vae, te1, te2 = real
    pairs = [
        (unet, convert_ldm_unet_checkpoint(original, meta._config("unet"))),
        (vae, convert_ldm_vae_checkpoint(original, meta._config("vae"))),
        (te1, convert_ldm_clip_checkpoint(original)),
        (te2, convert_open_clip_checkpoint(te2, original, prefix="conditioner.embedders.1.model.")),
    ]
    for model, converted in pairs:
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in _match_prefix(converted, set(expected)).items()
               if not k.endswith("position_ids")}
        assert got == expected, type(model).__name__


def test_lora_size_constants(real):
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    from colabkit.train import memory

    unet, _, te1, te2 = real
    attn = [m for t in unet.modules() if isinstance(t, Transformer2DModel) for m in t.modules()
            if isinstance(m, torch.nn.Linear)]
    assert len(attn) == 722
    assert sum(m.in_features + m.out_features for m in attn) == memory.UNET_ATTN_LINEAR_IO
    res = [m for b in unet.modules() if isinstance(b, (ResnetBlock2D, Downsample2D, Upsample2D)) for m in b.modules()]
    conv3 = [m for m in res if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sum(m.in_channels * 9 + m.out_channels for m in conv3) == memory.UNET_RESNET_CONV3_IO
    other = [m for m in res if isinstance(m, torch.nn.Linear) or
             (isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))]
    assert sum((m.in_features + m.out_features) if isinstance(m, torch.nn.Linear) else
               (m.in_channels + m.out_channels) for m in other) == memory.UNET_RESNET_OTHER_IO
    te = [m for enc in (te1, te2) for n, m in enc.named_modules()
          if isinstance(m, torch.nn.Linear) and ("self_attn" in n or "mlp" in n)]
    assert len(te) == 264
    assert sum(m.in_features + m.out_features for m in te) == memory.TE_LINEAR_IO
    assert meta.count_params(unet) == memory.SDXL_UNET_PARAMS
    assert meta.count_params(te1) + meta.count_params(te2) == memory.SDXL_TE_PARAMS


_LOAD_AND_MEASURE = r"""
import json, sys, torch
from colabkit.train.models import load as L, resolve_base_model
L._tokenizers = lambda cfg: (None, None)  # SDXL's vocabulary comes from the hub; not what is measured here
parts = L.load_sdxl(resolve_base_model(sys.argv[1]), dtype=torch.float16)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "peak_kb": int(status["VmHWM"].split()[0]),
    "dtypes": sorted({str(p.dtype) for m in (parts.unet, parts.text_encoder, parts.text_encoder_2) for p in m.parameters()}),
    "vae": str(parts.vae.dtype),
    "params": [sum(p.numel() for p in m.parameters()) for m in (parts.unet, parts.text_encoder, parts.text_encoder_2, parts.vae)],
}))
"""


@pytest.mark.slow
def test_real_sized_single_file_loads_in_little_host_ram(original, tmp_path):
    """A full-size SDXL file (6.9 GB, sparse: zeros, no disk used) loads at fp16 without an fp32 or second copy."""
    import json
    import math
    import struct
    import subprocess
    import sys

    header, offset = {}, 0
    for key in sorted(original):
        n = math.prod(original[key].shape) * 2
        header[key] = {"dtype": "F16", "shape": list(original[key].shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path = tmp_path / "sd_xl_sized.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    out = subprocess.run([sys.executable, "-c", _LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["params"] == [meta.SDXL_PARAMS[k] for k in ("unet", "text_encoder", "text_encoder_2", "vae")]
    assert got["dtypes"] == ["torch.float16"] and got["vae"] == "torch.float32"
    # fp16 weights are 6.6 GB and an fp32 copy would be 13; what is resident stays far below either.
    assert got["peak_kb"] < 4 * 2**20, got["peak_kb"]
