"""The saved LoRA file: metadata strings, tensors (fp16, shapes, alphas) and sd-scripts' sshs hashes."""

import datetime
import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from colabkit.train.lora import (
    add_lora,
    build_metadata,
    check_kohya_state_dict,
    export_kohya,
    lora_parameters,
    save_lora,
    text_encoder_targets,
    unet_targets,
)

TS = 1_767_225_600  # 2026-01-01T00:00:00Z


def meta(**changes):
    values = dict(
        output_name="houtline", network_dim=8, network_alpha=4, lora_type="LoRA", resolution=1024,
        num_train_images=40, tag_frequency={"10_houtline": {"houtline": 4, "outline": 3, "ciel étoilé": 1}},
        activation_tag="houtline", base_model_name="sd_xl_base_1.0.safetensors", prediction_type="epsilon",
        unet_lr=1e-4, text_encoder_lr=5e-5, epoch=3, steps=120, seed=42, timestamp=TS,
    )
    values.update(changes)
    return build_metadata(**values)


def test_metadata_values():
    m = meta()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
    expected = {
        "ss_output_name": "houtline",
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "4.0",
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_v2": "False",
        "ss_v_parameterization": "False",
        "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
        "ss_resolution": "(1024, 1024)",
        "ss_num_train_images": "40",
        "ss_learning_rate": "0.0001",
        "ss_unet_lr": "0.0001",
        "ss_text_encoder_lr": "5e-05",
        "ss_epoch": "3",
        "ss_steps": "120",
        "ss_seed": "42",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": "houtline",
        "modelspec.resolution": "1024x1024",
        "modelspec.prediction_type": "epsilon",
        "ss_zero_terminal_snr": "False",
        "ss_max_token_length": "None",
        "modelspec.trigger_phrase": "houtline",
        "modelspec.date": "2026-01-01T00:00:00",
        "ss_num_reg_images": "0",  # no regularization images; sd-scripts writes the count always
        "ss_training_finished_at": "1767225600.0",  # str(time.time()) in sd-scripts: the same instant as the date
    }
    assert {k: m[k] for k in expected} == expected
    assert set(m) == set(expected) | {"ss_tag_frequency", "ss_training_comment"}  # none dropped, none unexpected
    assert json.loads(m["ss_tag_frequency"]) == {"10_houtline": {"houtline": 4, "outline": 3, "ciel étoilé": 1}}
    assert "houtline" in m["ss_training_comment"]
    assert "ss_network_args" not in m  # sd-scripts writes it only when there are network args
    datetime.datetime.fromisoformat(m["modelspec.date"])


def test_metadata_locon_vpred_and_extra():
    m = meta(lora_type="LoCon", conv_dim=4, conv_alpha=1, prediction_type="v_prediction", resolution=(896, 1152),
             text_encoder_lr=None, extra={"ss_optimizer": "AdamW8bit", "ss_bucket_info": {"buckets": {}}})
    assert json.loads(m["ss_network_args"]) == {"conv_dim": "4", "conv_alpha": "1.0"}
    assert m["ss_base_model_version"] == "sdxl_base_v1-0"  # as sd-scripts writes it for every SDXL model
    assert m["ss_v_parameterization"] == "True"
    assert m["modelspec.prediction_type"] == "v"
    assert m["ss_resolution"] == "(896, 1152)" and m["modelspec.resolution"] == "896x1152"
    assert m["ss_text_encoder_lr"] == "None"
    assert m["ss_optimizer"] == "AdamW8bit" and json.loads(m["ss_bucket_info"]) == {"buckets": {}}
    # LoCon conv dim/alpha default to the network's
    assert json.loads(meta(lora_type="LoCon")["ss_network_args"]) == {"conv_dim": "8", "conv_alpha": "4.0"}

    with pytest.raises(ValueError):
        meta(extra={"ss_network_alpha": "1"})  # extra may not contradict what was computed
    with pytest.raises(ValueError, match="prediction_type"):
        meta(prediction_type="v")  # the file's spelling is made here, never passed in
    with pytest.raises(ValueError):
        meta(lora_type="LoHa")
    with pytest.raises(ValueError):
        meta(conv_dim=4)  # LoRA has no conv


def test_metadata_v_prediction_ztsnr_and_long_captions_in_the_files_spelling():
    """The config's spellings in, sd-scripts' out: what A1111/Forge and Civitai read to pick the v sampler."""
    m = meta(prediction_type="v_prediction", zero_terminal_snr=True, max_token_length=225)
    assert m["modelspec.prediction_type"] == "v"
    assert m["ss_v_parameterization"] == "True"
    assert m["ss_base_model_version"] == "sdxl_base_v1-0"  # as sd-scripts writes it for every SDXL model
    assert m["ss_zero_terminal_snr"] == "True"  # sd-scripts' key and str(bool), as train_network.py writes it
    assert m["ss_max_token_length"] == "225"
    eps = meta(prediction_type="epsilon", max_token_length=150)
    assert eps["modelspec.prediction_type"] == "epsilon" and eps["ss_v_parameterization"] == "False"
    assert eps["ss_zero_terminal_snr"] == "False" and eps["ss_max_token_length"] == "150"
    with pytest.raises(ValueError, match="max_token_length"):
        meta(max_token_length=77)


@pytest.fixture(scope="module")
def saved(tiny_sdxl, tmp_path_factory):
    """A LoCon (dim 8 / alpha 4, conv 4 / 2) + text-encoder LoRA of the tiny SDXL, saved."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    te1 = CLIPTextModel.from_pretrained(tiny_sdxl / "text_encoder")
    torch.manual_seed(0)
    add_lora(unet, unet_targets(unet, "LoCon"), 8, 4.0, conv_rank=4, conv_alpha=2.0)
    add_lora(te1, text_encoder_targets(te1), 8, 4.0)
    with torch.no_grad():
        for p in lora_parameters(unet) + lora_parameters(te1):
            p.add_(torch.randn_like(p) * 0.1)
    tensors = export_kohya(unet, te1, alpha=4.0, conv_alpha=2.0)
    m = meta(lora_type="LoCon", conv_dim=4, conv_alpha=2.0)
    path = save_lora(tmp_path_factory.mktemp("lora") / "houtline.safetensors", tensors, m)
    return path, tensors, m, unet


def test_file_tensors_and_alphas(saved):
    path, tensors, m, unet = saved
    loaded = load_file(path)
    assert loaded.keys() == tensors.keys()
    assert all(t.dtype == torch.float16 for t in loaded.values())
    assert check_kohya_state_dict(loaded) == len(unet_targets(unet, "LoCon")) + 12
    modules = dict(unet.named_modules())
    kinds = set()
    for key, t in loaded.items():
        if not key.endswith(".alpha"):
            continue
        name = key[: -len(".alpha")]
        down, up = loaded[name + ".lora_down.weight"], loaded[name + ".lora_up.weight"]
        assert t.dim() == 0
        if down.dim() == 4 and down.shape[2:] == (3, 3):
            kinds.add("conv3x3")
            assert t.item() == 2.0 and down.shape[0] == 4 and up.shape[1:] == (4, 1, 1)
        else:
            kinds.add("conv1x1" if down.dim() == 4 else "linear")
            assert t.item() == 4.0 and down.shape[0] == 8 and up.shape[1] == 8  # dim 8 alpha 4: scale 0.5
            if down.dim() == 4:
                assert down.shape[2:] == (1, 1) and up.shape[2:] == (1, 1)
    assert kinds == {"conv3x3", "conv1x1", "linear"}
    # shapes follow the module: [r, in(, kh, kw)] and [out, r(, 1, 1)]
    conv = modules["down_blocks.0.downsamplers.0.conv"].get_base_layer()
    down = loaded["lora_unet_input_blocks_3_0_op.lora_down.weight"]
    up = loaded["lora_unet_input_blocks_3_0_op.lora_up.weight"]
    assert tuple(down.shape) == (4, conv.in_channels, 3, 3) and tuple(up.shape) == (conv.out_channels, 4, 1, 1)
    lin = modules["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"].get_base_layer()
    down = loaded["lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k.lora_down.weight"]
    up = loaded["lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k.lora_up.weight"]
    assert tuple(down.shape) == (8, lin.in_features) and tuple(up.shape) == (lin.out_features, 8)
    assert not any(k.startswith("lora_te2_") for k in loaded)
    assert any(k.startswith("lora_te1_text_model_encoder_layers_1_mlp_fc2.") for k in loaded)


def test_file_metadata_and_hashes(saved):
    path, tensors, m, _ = saved
    with safe_open(path, "pt") as f:
        stored = f.metadata()
    assert {k: stored[k] for k in m} == m
    assert set(stored) - set(m) == {"sshs_model_hash", "sshs_legacy_hash"}

    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    # model hash: sha256 of the tensor bytes, which are the same in the file as in the ss_-only serialisation
    assert stored["sshs_model_hash"] == hashlib.sha256(raw[8 + header :]).hexdigest()
    ss_only = save(load_file(path), metadata={k: v for k, v in stored.items() if k.startswith("ss_")})
    n = int.from_bytes(ss_only[:8], "little")
    assert stored["sshs_model_hash"] == hashlib.sha256(ss_only[8 + n :]).hexdigest()
    assert stored["sshs_legacy_hash"] == hashlib.sha256(ss_only[0x100000:0x110000]).hexdigest()[:8]
    assert len(stored["sshs_legacy_hash"]) == 8


def test_legacy_hash_reads_bytes_0x100000_to_0x10ffff_of_the_ss_only_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {  # 2 MiB of data, so the 64 KiB window at 1 MiB is inside the file
        "lora_unet_middle_block_1_proj_in.lora_down.weight": torch.randn(64, 16384, generator=g).half(),
        "lora_unet_middle_block_1_proj_in.lora_up.weight": torch.randn(16, 64, generator=g).half(),
        "lora_unet_middle_block_1_proj_in.alpha": torch.tensor(32.0).half(),
    }
    m = meta(network_dim=64, network_alpha=32)
    path = save_lora(tmp_path / "big.safetensors", tensors, m)
    with safe_open(path, "pt") as f:
        stored = f.metadata()
    ss_only = save(tensors, metadata={k: v for k, v in m.items() if k.startswith("ss_")})
    assert len(ss_only) > 0x110000
    window = ss_only[0x100000:0x110000]
    assert len(window) == 0x10000
    assert stored["sshs_legacy_hash"] == hashlib.sha256(window).hexdigest()[:8]
    raw = path.read_bytes()  # the model hash: sha256 of everything after the header (the tensor bytes)
    assert stored["sshs_model_hash"] == hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()
    assert stored["sshs_model_hash"] == hashlib.sha256(ss_only[8 + int.from_bytes(ss_only[:8], "little"):]).hexdigest()
    # not the same window of the file as written (its header also holds modelspec.* and sshs_*)
    assert stored["sshs_legacy_hash"] != hashlib.sha256(path.read_bytes()[0x100000:0x110000]).hexdigest()[:8]
    assert [p.name for p in tmp_path.iterdir()] == ["big.safetensors"]  # atomic write left no temp file


def test_save_refuses_files_that_would_not_load_everywhere(tmp_path):
    ok = {
        "lora_unet_middle_block_1_proj_in.lora_down.weight": torch.zeros(2, 4).half(),
        "lora_unet_middle_block_1_proj_in.lora_up.weight": torch.zeros(4, 2).half(),
        "lora_unet_middle_block_1_proj_in.alpha": torch.tensor(1.0).half(),
    }
    save_lora(tmp_path / "ok.safetensors", ok, meta())
    mixed = {**ok, **{k.replace("middle_block_1", "mid_block_attentions_0"): v for k, v in ok.items()}}
    bad = [
        mixed,  # diffusers spelling beside SGM: diffusers' loader would drop the SGM keys
        {**ok, "lora_unet_middle_block_1_proj_in.scale": torch.tensor(1.0)},  # a non-LoRA key
        {**ok, "unet.mid_block.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 4)},  # PEFT-style key
        {k: v for k, v in ok.items() if not k.endswith(".alpha")},  # alpha missing
        {**ok, "lora_unet_middle_block_1_proj_in.alpha": torch.tensor([1.0])},  # alpha not 0-dim
        {**ok, "lora_unet_middle_block_1_proj_in.lora_up.weight": torch.zeros(4, 3)},  # ranks disagree
        {k.replace("lora_unet_middle_block_1_proj_in", "lora_te1_encoder_layers_0_mlp_fc1"): v for k, v in ok.items()},
    ]
    for tensors in bad:
        with pytest.raises(ValueError):
            save_lora(tmp_path / "bad.safetensors", tensors, meta())
    with pytest.raises(ValueError):
        save_lora(tmp_path / "bad.safetensors", ok, {"ss_epoch": 3})
    assert not (tmp_path / "bad.safetensors").exists()


# -- what mutation testing found unguarded (benchmarks/RESULTS.md, "Mutation testing") ----------------------------

def test_without_a_timestamp_the_file_is_dated_now_in_utc_whatever_the_machines_zone(monkeypatch):
    import time

    before = time.time()
    m = meta(timestamp=None)
    after = time.time()
    finished = float(m["ss_training_finished_at"])
    assert before <= finished <= after
    assert m["modelspec.date"] == datetime.datetime.fromtimestamp(int(finished), datetime.timezone.utc) \
        .replace(tzinfo=None).isoformat()
    if not hasattr(time, "tzset"):
        return
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert meta()["modelspec.date"] == "2026-01-01T00:00:00"  # UTC, not New York's 2025-12-31T19:00:00
    finally:
        monkeypatch.undo()
        time.tzset()


def test_without_an_activation_tag_there_is_no_trigger_phrase():
    from colabkit import __version__

    m = meta(activation_tag="")
    assert "modelspec.trigger_phrase" not in m
    assert m["ss_training_comment"] == f"trained with colabkit {__version__}"
    assert meta()["ss_training_comment"] == f"activation tag: houtline; trained with colabkit {__version__}"


def test_refusals_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"lora_type must be one of \('LoRA', 'LoCon'\), not 'LoHa'"):
        meta(lora_type="LoHa")
    with pytest.raises(ValueError, match="^conv_dim/conv_alpha apply to LoCon only$"):
        meta(conv_alpha=2)
    with pytest.raises(ValueError, match="^metadata key 'ss_seed' is set by build_metadata; extra may not replace it$"):
        meta(extra={"ss_seed": "1"})
    ok = {"lora_unet_middle_block_1_proj_in.lora_down.weight": torch.zeros(2, 4).half(),
          "lora_unet_middle_block_1_proj_in.lora_up.weight": torch.zeros(4, 2).half(),
          "lora_unet_middle_block_1_proj_in.alpha": torch.tensor(1.0).half()}
    bad = {f"k{i}": i for i in range(7)}
    with pytest.raises(ValueError) as e:
        save_lora(tmp_path / "x.safetensors", ok, {**meta(), **bad})
    assert str(e.value) == "safetensors metadata must map str to str: ['k0', 'k1', 'k2', 'k3', 'k4']"
