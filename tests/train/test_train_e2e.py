"""End to end on tiny-sdxl: train, export, resume exactly, refuse what would make a resume wrong."""

import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from colabkit.errors import ColabkitError
from helpers.budget import StopAfter
from colabkit.train.loop import Reporter, train

pytestmark = pytest.mark.slow


def lora_tensors(path):
    return load_file(path)

def test_train_end_to_end(tiny_project, make_config):
    cfg = make_config(optimizer="AdamW8bit", sample_every_n_epochs=1, lora_type="LoCon")
    started = time.time()
    result = train(cfg, device="cpu")
    ended = time.time()
    assert result.status == "finished" and result.step == result.total_steps == 8  # 4 images x 2 / 2 x 2
    out = tiny_project.output
    assert result.final_lora == out / "houtline.safetensors"
    assert (out / "houtline-01.safetensors").exists()  # epoch 1; the last epoch is the final file
    assert (out / "houtline.json").exists() and (out / "loss.png").exists()
    assert [p.name for p in result.sample_grids] == ["grid-e01.png", "grid-e02.png"]
    tensors = lora_tensors(result.final_lora)
    assert tensors and all(k.startswith(("lora_unet_", "lora_te1_", "lora_te2_")) for k in tensors)
    assert any("_in_layers_2." in k for k in tensors)  # LoCon reached the resnet convs
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert {float(v) for k, v in tensors.items() if k.endswith(".alpha")} == {2.0, 4.0}  # linear / conv alpha
    # Every metadata field of both files training wrote, read back with its exact value.
    assert_metadata(result.final_lora, epoch=2, steps=8, started=started, ended=ended)
    assert_metadata(out / "houtline-01.safetensors", epoch=1, steps=4, started=started, ended=ended)


def assert_metadata(path, *, epoch, steps, started, ended):
    """The metadata of a file trained by test_train_end_to_end's config, as sd-scripts writes each field: strings,
    str() of numbers and booleans, JSON for nested data."""
    import datetime
    import hashlib
    import json

    from colabkit import __version__

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    captions = {"houtline": 4, "outline": 4, "circle": 2, "wide": 2, "tag0": 1, "tag1": 1, "tag2": 1, "tag3": 1}
    expected = {
        "ss_output_name": path.stem,
        "ss_network_module": "networks.lora",
        "ss_network_dim": "4",
        "ss_network_alpha": "2.0",
        "ss_network_args": json.dumps({"conv_dim": "8", "conv_alpha": "4.0"}),  # LoCon, the config's defaults
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_v2": "False",
        "ss_v_parameterization": "False",
        "ss_sd_model_name": "tiny-sdxl",
        "ss_resolution": "(64, 64)",
        "ss_num_train_images": "8",  # 4 drawings x 2 repeats
        "ss_num_reg_images": "0",
        "ss_prior_loss_weight": "1.0",  # sd-scripts' default, written with or without regularization images
        "ss_dataset_dirs": json.dumps({"2_houtline": {"n_repeats": 2, "img_count": 4}}),  # as sd-scripts writes it
        "ss_training_comment": f"activation tag: houtline; trained with colabkit {__version__}",
        "ss_learning_rate": "0.001",
        "ss_unet_lr": "0.001",
        "ss_text_encoder_lr": "0.0",
        "ss_epoch": str(epoch),
        "ss_steps": str(steps),
        "ss_seed": "7",
        "ss_zero_terminal_snr": "False",
        "ss_max_token_length": "225",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": path.stem,
        "modelspec.resolution": "64x64",
        "modelspec.prediction_type": "epsilon",
        "modelspec.trigger_phrase": "houtline",
    }
    varying = {"ss_tag_frequency", "ss_training_finished_at", "modelspec.date", "sshs_model_hash", "sshs_legacy_hash"}
    assert set(meta) == set(expected) | varying, set(meta) ^ (set(expected) | varying)
    assert {k: meta[k] for k in expected} == expected
    tags = json.loads(meta["ss_tag_frequency"])
    assert tags == {"2_houtline": captions}  # the folder, then each tag with its count
    finished = float(meta["ss_training_finished_at"])  # str(time.time()), as sd-scripts writes it
    assert started <= finished <= ended and meta["ss_training_finished_at"] == str(finished)
    assert meta["modelspec.date"] == datetime.datetime.fromtimestamp(int(finished), datetime.timezone.utc) \
        .replace(tzinfo=None).isoformat()
    blob = path.read_bytes()
    tensor_bytes = blob[8 + int.from_bytes(blob[:8], "little"):]
    assert meta["sshs_model_hash"] == hashlib.sha256(tensor_bytes).hexdigest()  # A1111's addnet hash
    assert meta["sshs_legacy_hash"] == hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]

def test_loss_goes_down_when_overfitting(tiny_project, make_config):
    # One image, seen 45 times. On a random-weight UNet the attention-only LoRA barely moves the
    # loss; LoCon (the convs too) has the capacity to overfit, measured: ~0.8 -> ~0.4.
    for p in list(tiny_project.dataset.glob("d[123].*")):
        p.unlink()
    cfg = make_config(num_repeats=1, epochs=45, train_batch_size=1, unet_lr=1e-2, network_dim=8, network_alpha=8,
                      lora_type="LoCon", conv_dim=8, conv_alpha=8, min_snr_gamma=0, noise_offset=0,
                      save_every_n_epochs=1000, save_state_every_n_steps=1000, lr_scheduler="constant")
    result = train(cfg, device="cpu")
    from colabkit.train.state import StateStore

    losses = StateStore(tiny_project.state).load_latest()[0].losses
    assert result.status == "finished" and len(losses) == 45 and all(x == x for x in losses)
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.75 * first, (first, last)

def test_budget_stop_and_resume_is_bit_exact(tiny_project, make_config, tmp_path):
    cfg = make_config(epochs=3, flip_aug=True, shuffle_tags=True, noise_offset=0.05, multires_noise_iterations=2,
                      optimizer="AdamW8bit", lr_scheduler="cosine")
    straight = train(cfg, device="cpu")
    reference = lora_tensors(straight.final_lora)
    ref_epoch1 = lora_tensors(tiny_project.output / "houtline-01.safetensors")

    # Same run again from scratch, stopped by the budget twice (mid-epoch), resumed each time.
    cfg2 = cfg.replace(start_over=True)
    first = train(cfg2, budget=StopAfter(3), device="cpu")
    assert first.status == "stopped" and first.step == 3 and "Run the notebook again tomorrow" in first.message
    second = train(cfg, budget=StopAfter(2), device="cpu")
    assert second.status == "stopped" and second.step == 5
    last = train(cfg, device="cpu")
    assert last.status == "finished" and last.step == straight.step
    resumed = lora_tensors(last.final_lora)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    for k, v in lora_tensors(tiny_project.output / "houtline-01.safetensors").items():
        assert torch.equal(v, ref_epoch1[k]), k

    from colabkit.train import models

    with pytest.MonkeyPatch.context() as m:  # a finished run is recognised before any model is fetched or loaded
        m.setattr(models, "load_sdxl", lambda *a, **k: pytest.fail("loaded the base model"))
        m.setattr(models.download, "download", lambda *a, **k: pytest.fail("downloaded the base model"))
        again = train(cfg, device="cpu")
    assert again.status == "already finished" and "Raise epochs" in again.message
    more = train(cfg.replace(epochs=4), device="cpu")
    assert more.status == "finished" and more.step > last.step

def test_changed_settings_are_refused_with_the_difference(stopped_project, make_config):
    tiny_project = stopped_project
    cfg = make_config(epochs=3)
    with pytest.raises(ColabkitError) as e:
        train(cfg.replace(network_dim=8), device="cpu")
    assert "network_dim: 4 then, 8 now" in str(e.value) and "start_over" in str(e.value)
    (tiny_project.dataset / "d0.txt").write_text("houtline, changed")
    with pytest.raises(ColabkitError, match="the dataset .* changed"):
        train(cfg, device="cpu")
    # start_over keeps the old state (moved aside) and trains anew
    result = train(cfg.replace(network_dim=8, start_over=True), device="cpu")
    assert result.status == "finished"
    assert any(p.name.startswith("state-old-") for p in tiny_project.training.iterdir())

def test_harmless_changes_resume(stopped_project, make_config):
    cfg = make_config(epochs=3)
    starts, stages = [], []

    class Rec(Reporter):
        def start(self, start_step, total_steps):
            starts.append((start_step, total_steps))

        def stage(self, text):
            stages.append(text)

    result = train(cfg.replace(budget_hours=1.5, save_every_n_epochs=2, sample_prompts="houtline, cat"),
                   reporter=Rec(), device="cpu")
    assert result.status == "finished" and result.step == 12
    assert starts == [(2, 12)]  # went on from the saved step 2, not from 0
    assert any(s.startswith("Resuming from step 2/12") for s in stages), stages

def test_reporter_sees_progress(tiny_project, make_config):
    seen = []

    class Rec(Reporter):
        def step(self, step, loss, lr, left):
            seen.append((step, loss, lr))

    train(make_config(epochs=1), reporter=Rec(), device="cpu")
    assert [s for s, _, _ in seen] == [1, 2, 3, 4] and all(l > 0 for _, l, _ in seen)
