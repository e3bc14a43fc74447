"""Header-only inspection: families, files cut short, things that are not checkpoints, v-prediction hints."""

import argparse
import json
import struct

import pytest
import torch

from colabkit.errors import ColabkitError
from helpers.single_file import write_fake, write_sd15_like, write_single_file, write_truncated
from colabkit.train.models import inspect_checkpoint


@pytest.fixture(scope="module")
def tiny_file(tiny_sdxl, tmp_path_factory):
    return write_single_file(tiny_sdxl, tmp_path_factory.mktemp("sf") / "tiny-sdxl.safetensors")


def test_tiny_single_file_is_sdxl_in_the_original_layout(tiny_file):
    info = inspect_checkpoint(tiny_file, require_sdxl=True)
    assert info.family == "sdxl" and info.format == "safetensors"
    assert info.has_unet and info.has_text_encoders and info.has_vae
    assert info.prediction_type is None and not info.zero_terminal_snr
    keys = set(info.shapes)
    # The original layout's hallmarks (the names A1111, ComfyUI and Civitai files use).
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in keys  # upsampler after the attention
    assert "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight" in keys
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "conditioner.embedders.1.model.text_projection" in keys
    assert "conditioner.embedders.1.model.logit_scale" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert len(info.shapes["first_stage_model.encoder.mid.attn_1.q.weight"]) == 4  # LDM's 1x1 conv
    assert not any(".q_proj." in k for k in keys if k.startswith("conditioner.embedders.1."))
    assert set(info.dtypes) == {"F16"}  # like the published file, position_ids included


@pytest.mark.parametrize("family, words", [
    ("sd1", "Stable Diffusion 1.x"), ("sd2", "Stable Diffusion 2.x"), ("flux", "FLUX"),
    ("sd3", "Stable Diffusion 3"), ("sdxl-refiner", "refiner"), ("lora", "LoRA"),
])
def test_other_families_are_named_and_refused(tmp_path, family, words):
    path = write_fake(tmp_path / f"{family}.safetensors", family)
    assert inspect_checkpoint(path).family == family
    with pytest.raises(ColabkitError) as e:
        inspect_checkpoint(path, require_sdxl=True)
    msg = str(e.value)
    assert path.name in msg and words in msg and "SDXL base 1.0" in msg


def test_sd15_like_refused_with_a_clear_message(tmp_path):
    path = write_sd15_like(tmp_path / "v1-5-pruned.safetensors")
    with pytest.raises(ColabkitError, match=r"v1-5-pruned\.safetensors is a Stable Diffusion 1\.x checkpoint"):
        inspect_checkpoint(path, require_sdxl=True)


@pytest.mark.parametrize("fraction, what", [(0.6, "its tensors"), (0.005, "its header alone")])
def test_truncated_files_are_refused(tiny_file, tmp_path, fraction, what):
    cut = write_truncated(tiny_file, tmp_path / "cut.safetensors", fraction)
    with pytest.raises(ColabkitError, match="cut short") as e:
        inspect_checkpoint(cut)
    assert what in str(e.value) and "download it again" in str(e.value)


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    html = tmp_path / "model.safetensors"
    html.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
    with pytest.raises(ColabkitError, match="web page"):
        inspect_checkpoint(html)
    lfs = tmp_path / "lfs.safetensors"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 6938078334\n")
    with pytest.raises(ColabkitError, match="Git LFS pointer"):
        inspect_checkpoint(lfs)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ColabkitError, match="empty"):
        inspect_checkpoint(empty)
    with pytest.raises(ColabkitError, match="No checkpoint file"):
        inspect_checkpoint(tmp_path / "nowhere.safetensors")


def test_damaged_header(tmp_path):
    bad = tmp_path / "bad.safetensors"
    header = b'{"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}'  # JSON cut off
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(ColabkitError, match="damaged safetensors header"):
        inspect_checkpoint(bad)


def test_pickle_under_a_safetensors_name_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"model.diffusion_model.x": torch.zeros(2)}, path)
    with pytest.raises(ColabkitError, match="pickle checkpoint, not safetensors"):
        inspect_checkpoint(path)


def test_ckpt_loads_tensors_only(tiny_file, tmp_path):
    from safetensors.torch import load_file

    sd = load_file(tiny_file)
    ok = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": sd, "global_step": 10}, ok)
    info = inspect_checkpoint(ok, require_sdxl=True)
    assert info.format == "pickle" and info.family == "sdxl" and info.n_tensors == len(sd)

    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": argparse.Namespace(lr=1e-4)}, unsafe)
    with pytest.raises(ColabkitError, match="weights_only=True"):
        inspect_checkpoint(unsafe)

    cut = write_truncated(ok, tmp_path / "cut.ckpt", 0.5)
    with pytest.raises(ColabkitError, match="cut short|damaged"):
        inspect_checkpoint(cut)


def test_v_prediction_hints(tiny_sdxl, tmp_path):
    by_metadata = write_single_file(tiny_sdxl, tmp_path / "vmeta.safetensors",
                                    metadata={"modelspec.prediction_type": "v"})
    assert inspect_checkpoint(by_metadata).prediction_type == "v_prediction"
    eps = write_single_file(tiny_sdxl, tmp_path / "eps.safetensors",
                            metadata={"modelspec.prediction_type": "epsilon"})
    assert inspect_checkpoint(eps).prediction_type == "epsilon"

    # NoobAI-style marker tensors: 'v_pred' (v-prediction) and 'ztsnr' (zero terminal SNR).
    from safetensors.torch import load_file, save_file

    sd = load_file(eps)
    sd["v_pred"] = torch.tensor([])
    sd["ztsnr"] = torch.tensor([])
    marked = tmp_path / "marked.safetensors"
    save_file(sd, str(marked))
    info = inspect_checkpoint(marked, require_sdxl=True)
    assert info.prediction_type == "v_prediction" and info.zero_terminal_snr


def test_header_is_all_that_is_read(tiny_file, tmp_path, monkeypatch):
    # A "7 GB" file whose tensor bytes are zeros never read: inspection only touches the header.
    n = struct.unpack("<Q", tiny_file.read_bytes()[:8])[0]
    header = json.loads(tiny_file.read_bytes()[8:8 + n])
    sparse = tmp_path / "big.safetensors"
    with open(sparse, "wb") as f:
        f.write(tiny_file.read_bytes()[:8 + n])
        f.truncate(8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"))
    reads = []
    real_open = open

    def counting_open(path, mode="r", *a, **kw):
        fh = real_open(path, mode, *a, **kw)
        if "b" in mode and str(path) == str(sparse):
            orig = fh.read
            fh.read = lambda size=-1: reads.append(size) or orig(size)
        return fh

    monkeypatch.setattr("builtins.open", counting_open)
    assert inspect_checkpoint(sparse).family == "sdxl"
    assert sum(reads) <= 64 + n


def test_a_cosxl_edm_model_is_v_prediction_but_auto_keeps_ztsnr_off(tiny_project, make_config, tiny_sdxl, tmp_path):
    from safetensors.torch import load_file, save_file

    from colabkit.train.models.resolve import ModelFacts
    from colabkit.train.noise import use_ztsnr

    sd = load_file(write_single_file(tiny_sdxl, tmp_path / "base.safetensors"))
    sd["edm_vpred.sigma_max"] = torch.tensor([120.0])
    sd["edm_vpred.sigma_min"] = torch.tensor([0.002])
    cosxl = tmp_path / "cosxl.safetensors"
    save_file(sd, str(cosxl))
    info = inspect_checkpoint(cosxl, require_sdxl=True)
    assert info.prediction_type == "v_prediction" and info.edm and not info.zero_terminal_snr
    assert use_ztsnr("auto", "v_prediction", info.zero_terminal_snr, edm=info.edm) is False
    assert use_ztsnr("auto", "v_prediction", False) is True  # a plain v-pred model: on, as before
    assert use_ztsnr("on", "v_prediction", False, edm=True) is True
    assert ModelFacts({}, {}, True, "v_prediction", False).edm is False
    from colabkit.train.plan import make_plan

    plan = make_plan(make_config(base_model=str(cosxl)), device="cpu")
    assert plan.prediction_type == "v_prediction" and not plan.zero_terminal_snr
    assert any(n.name == "prediction" and "zero-terminal SNR off (an EDM (CosXL-style) model)" in n.message
               for n in plan.notes)
