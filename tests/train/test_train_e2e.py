"""End to end on tiny-sdxl: train, export, resume exactly, refuse what would make a resume wrong."""

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
    result = train(cfg, device="cpu")
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
    with safe_open(result.final_lora, "pt") as f:
        meta = f.metadata()
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == 2.0
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert "houtline" in meta["ss_tag_frequency"] and "houtline" in meta["ss_training_comment"]

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

def test_changed_settings_are_refused_with_the_difference(tiny_project, make_config):
    cfg = make_config(epochs=3)
    assert train(cfg, budget=StopAfter(2), device="cpu").status == "stopped"
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

def test_harmless_changes_resume(tiny_project, make_config):
    cfg = make_config(epochs=3)
    train(cfg, budget=StopAfter(2), device="cpu")
    result = train(cfg.replace(budget_hours=1.5, save_every_n_epochs=2, sample_prompts="houtline, cat"), device="cpu")
    assert result.status == "finished"

def test_reporter_sees_progress(tiny_project, make_config):
    seen = []

    class Rec(Reporter):
        def step(self, step, loss, lr, left):
            seen.append((step, loss, lr))

    train(make_config(epochs=1), reporter=Rec(), device="cpu")
    assert [s for s, _, _ in seen] == [1, 2, 3, 4] and all(l > 0 for _, l, _ in seen)
