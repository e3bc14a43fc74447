"""A single file in the original layout loads offline and computes exactly what its diffusers folder computes."""

import socket

import pytest
import torch

from colabkit.errors import ColabkitError
from helpers.single_file import write_single_file
from colabkit.train.models import SDXL_CONFIGS, load_sdxl, load_vae_for_caching, pick_config_dir, resolve_base_model


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach a host fails loudly (localhost included: nothing here needs a socket)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def fp32_file(tiny_sdxl, tmp_path_factory):
    # fp32 in the file too, so the comparison with the (fp32) folder is exact.
    return write_single_file(tiny_sdxl, tmp_path_factory.mktemp("sf") / "tiny32.safetensors", dtype=torch.float32)


@pytest.fixture(scope="module")
def from_folder(tiny_sdxl):
    return load_sdxl(resolve_base_model("tiny-sdxl"), dtype=torch.float32)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return dict(sample=torch.randn(2, 4, 16, 16, generator=g), timestep=torch.tensor([10, 500]),
                encoder_hidden_states=torch.randn(2, 77, 64, generator=g),
                added_cond_kwargs={"text_embeds": torch.randn(2, 32, generator=g),
                                   "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)})


@torch.no_grad()
def _same_outputs(a, b, atol=0.0):
    inp = _inputs()
    assert torch.allclose(a.unet(**inp).sample.float(), b.unet(**inp).sample.float(), atol=atol)
    ids = a.tokenizer(["a drawing of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, b.tokenizer(["a drawing of a cat"], padding="max_length", max_length=77,
                                        return_tensors="pt").input_ids)
    h1a = a.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
    h1b = b.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(h1a.float(), h1b.float(), atol=atol)
    oa, ob = a.text_encoder_2(ids, output_hidden_states=True), b.text_encoder_2(ids, output_hidden_states=True)
    assert torch.allclose(oa.hidden_states[-2].float(), ob.hidden_states[-2].float(), atol=atol)
    assert torch.allclose(oa.text_embeds.float(), ob.text_embeds.float(), atol=atol)  # pooled, through the projection
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.vae.decode(z).sample, b.vae.decode(z).sample, atol=max(atol, 1e-6))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert torch.allclose(a.vae.encode(x).latent_dist.mean, b.vae.encode(x).latent_dist.mean, atol=max(atol, 1e-6))


def test_single_file_matches_its_diffusers_folder_offline(fp32_file, from_folder, no_network):
    resolved = resolve_base_model(str(fp32_file))
    assert resolved.kind == "single_file" and resolved.source == "path" and resolved.prediction_type == "epsilon"
    parts = load_sdxl(resolved, dtype=torch.float32)
    _same_outputs(parts, from_folder)
    assert parts.noise_scheduler.__class__.__name__ == "DDPMScheduler"
    assert parts.noise_scheduler.config.prediction_type == "epsilon"
    assert torch.equal(parts.noise_scheduler.alphas_cumprod, from_folder.noise_scheduler.alphas_cumprod)


def test_fp16_file_loads_at_fp16_and_vae_stays_fp32(tiny_sdxl, from_folder, tmp_path, no_network):
    path = write_single_file(tiny_sdxl, tmp_path / "tiny16.safetensors")  # fp16 like real checkpoints
    parts = load_sdxl(resolve_base_model(str(path)), dtype=torch.float16)
    assert {p.dtype for p in parts.unet.parameters()} == {torch.float16}
    assert {p.dtype for p in parts.text_encoder.parameters()} == {torch.float16}
    assert {p.dtype for p in parts.text_encoder_2.parameters()} == {torch.float16}
    assert {p.dtype for p in parts.vae.parameters()} == {torch.float32}  # the stock SDXL VAE NaNs in fp16
    assert not any(p.device.type == "meta" for p in parts.unet.parameters())
    # Same weights up to fp16 rounding: run both in fp32 to compare.
    parts.unet.float(), parts.text_encoder.float(), parts.text_encoder_2.float()
    _same_outputs(parts, from_folder, atol=2e-2)


def test_fp32_file_is_cast_on_the_way_in(fp32_file, no_network):
    parts = load_sdxl(resolve_base_model(str(fp32_file)), dtype=torch.float16)
    assert {p.dtype for p in parts.unet.parameters()} == {torch.float16}


def test_ckpt_loads_like_the_safetensors(fp32_file, from_folder, tmp_path, no_network):
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(fp32_file)}, ckpt)
    resolved = resolve_base_model(str(ckpt))
    assert resolved.info.format == "pickle"
    _same_outputs(load_sdxl(resolved, dtype=torch.float32), from_folder)


def test_prediction_type_detected_and_selectable(tiny_sdxl, tmp_path, no_network):
    from safetensors.torch import load_file, save_file

    vfile = write_single_file(tiny_sdxl, tmp_path / "v.safetensors", metadata={"modelspec.prediction_type": "v"})
    resolved = resolve_base_model(str(vfile))
    assert resolved.prediction_type == "v_prediction"
    parts = load_sdxl(resolved)
    assert parts.prediction_type == "v_prediction"
    assert parts.noise_scheduler.config.prediction_type == "v_prediction"

    forced = resolve_base_model(str(vfile), prediction_type="epsilon")
    assert forced.prediction_type == "epsilon" and forced.notes
    assert resolve_base_model("tiny-sdxl", prediction_type="v").prediction_type == "v_prediction"
    with pytest.raises(ColabkitError, match="prediction_type"):
        resolve_base_model("tiny-sdxl", prediction_type="x0")

    sd = load_file(tmp_path / "v.safetensors")
    sd["v_pred"], sd["ztsnr"] = torch.tensor([]), torch.tensor([])
    save_file(sd, str(tmp_path / "zsnr.safetensors"))
    parts = load_sdxl(resolve_base_model(str(tmp_path / "zsnr.safetensors")))
    assert parts.zero_terminal_snr and parts.noise_scheduler.config.rescale_betas_zero_snr
    assert parts.noise_scheduler.alphas_cumprod[-1] < 1e-6  # zero terminal SNR


def test_config_folder_choice(fp32_file, tiny_sdxl, tmp_path):
    from colabkit.train.models import inspect_checkpoint

    info = inspect_checkpoint(fp32_file)
    assert pick_config_dir(info) == tiny_sdxl  # tiny shapes: the tiny folder's configs
    assert pick_config_dir(info, tiny_sdxl) == tiny_sdxl
    with pytest.raises(ColabkitError, match="does not match the configs"):
        pick_config_dir(info, SDXL_CONFIGS)


def test_vae_for_caching(fp32_file, from_folder, no_network):
    vae = load_vae_for_caching(from_folder, fp16_fix=False)
    assert vae.dtype == torch.float32
    resolved = resolve_base_model(str(fp32_file))
    alone = load_vae_for_caching(resolved, fp16_fix=False)  # only the VAE is read from the file
    assert alone.dtype == torch.float32
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(alone.encode(x).latent_dist.mean, vae.encode(x).latent_dist.mean, atol=1e-6)
    folder_vae = load_vae_for_caching(resolve_base_model("tiny-sdxl"), fp16_fix=False)
    assert folder_vae.dtype == torch.float32


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fp16_fix_vae_needs_the_hub_and_says_so(from_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: no copy to fall back on
    with pytest.raises(ColabkitError, match="fp16-fix VAE"):
        load_vae_for_caching(from_folder, fp16_fix=True)


def test_wrong_architecture_in_sdxl_clothes(tiny_sdxl, tmp_path):
    # A tiny SDXL file with a text-encoder layer missing: refused by name, not with a stack trace.
    from safetensors.torch import load_file, save_file

    sd = load_file(write_single_file(tiny_sdxl, tmp_path / "ok.safetensors"))
    broken = {k: v for k, v in sd.items() if ".resblocks.1." not in k}
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ColabkitError, match="shapes differ from SDXL base 1.0"):
        load_sdxl(resolve_base_model(str(tmp_path / "broken.safetensors")))
    # One UNet weight missing: caught when the weights are assigned, named.
    del sd["model.diffusion_model.middle_block.1.proj_out.weight"]
    save_file(sd, str(tmp_path / "holed.safetensors"))
    with pytest.raises(ColabkitError, match=r"UNet does not match the SDXL layout \(1 weights missing"):
        load_sdxl(resolve_base_model(str(tmp_path / "holed.safetensors")))


def test_sdxl_tokenizers_are_assembled_from_the_shipped_configs(tiny_sdxl, tmp_path, monkeypatch):
    # A real SDXL file needs CLIP's vocabulary once from the hub; stand in for the hub with the tiny vocabulary.
    import huggingface_hub

    from colabkit.train.models import sdxl_tokenizer_dir

    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "cache"))
    asked = []

    def fake_download(repo, filename, **kw):
        asked.append((repo, filename))
        return str(tiny_sdxl / "tokenizer" / filename.split("/")[-1])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    folder = sdxl_tokenizer_dir()
    assert asked == [("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer/vocab.json"),
                     ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer/merges.txt")]
    assert sdxl_tokenizer_dir() == folder and len(asked) == 2  # fetched once
    from transformers import CLIPTokenizer

    tok1 = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2")
    assert tok1.model_max_length == tok2.model_max_length == 77
    assert tok1.pad_token == "<|endoftext|>" and tok2.pad_token == "!"  # SDXL's two configs differ only there


def test_missing_tokenizer_vocab_offline_is_explained(tmp_path, monkeypatch):
    import huggingface_hub

    from colabkit.train.models import sdxl_tokenizer_dir

    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "cache"))

    def offline(*a, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ColabkitError, match="vocab.json and merges.txt"):
        sdxl_tokenizer_dir()
