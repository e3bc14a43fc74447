"""colabkit.train.drive_space: the Drive bytes of a run, trash included, against the sizes of the real SDXL."""

import json

import pytest

from colabkit.train import drive_space as ds
from colabkit.train.memory import SDXL_SHAPE, UNetShape

GB = 10**9
SDXL_CHECKPOINT = 6_938_078_334  # sd_xl_base_1.0.safetensors (shared/reference/README.md)


def test_lora_layers_counted_from_the_unet_shape(tiny_sdxl):
    # SDXL's 722 Linear layers inside its transformer blocks (counted on the real model built on "meta").
    assert ds.attn_linear_io(SDXL_SHAPE) == 2_659_840
    # The tiny model: the same rule against the layers themselves.
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    config = json.loads((tiny_sdxl / "unet" / "config.json").read_text())
    unet = UNet2DConditionModel.from_config(config)
    io = sum(m.in_features + m.out_features for t in unet.modules() if isinstance(t, Transformer2DModel)
             for m in t.modules() if isinstance(m, torch.nn.Linear))
    assert ds.attn_linear_io(UNetShape.from_config(config)) == io


def test_a_state_at_dim_16():
    params = ds.lora_params(16)
    assert params == 42_557_440
    assert ds.state_bytes(params, "AdamW8bit") == 42_557_440 * 6 + ds.STATE_OVERHEAD  # 0.26 GB
    assert ds.state_bytes(params, "Prodigy") == 42_557_440 * 20 + ds.STATE_OVERHEAD  # 0.85 GB
    assert ds.lora_file_bytes(params) == 85_114_880 + ds.LORA_FILE_OVERHEAD  # an fp16 file
    assert ds.lora_params(16, train_text_encoder=True) == 16 * (2_659_840 + 903_168)


def test_saves_in_a_day():
    assert ds.saves_in(3.0, 10, epoch_ends=4) == 18 + 4 + 1  # every 10 min, each epoch end, the stop
    assert ds.saves_in(2.5, 20, epoch_ends=0) == 7 + 1


@pytest.mark.parametrize("optimizer, trash_gb", [("AdamW8bit", 16.60), ("Prodigy", 55.33)])
def test_three_days_at_the_defaults_fit_a_free_drive_only_without_trash(optimizer, trash_gb):
    # 10 epochs over 3 days of 3 h, a state every 10 minutes and at each epoch's end: 3 x 18 + 10 + 3 saves.
    params = ds.lora_params(16)
    saves = 3 * 18 + 10 + 3
    before = ds.run_use(params=params, optimizer=optimizer, epochs=10, samples=11, sample_bytes=3 * 2**20,
                        model=SDXL_CHECKPOINT, saves=saves, truncate=False)
    after = ds.run_use(params=params, optimizer=optimizer, epochs=10, samples=11, sample_bytes=3 * 2**20,
                       model=SDXL_CHECKPOINT, saves=saves)
    assert before.trash == pytest.approx(trash_gb * GB, rel=0.01)
    assert before.total > 15 * GB  # a free account (15 GB, shared with Gmail and Photos) fills up
    assert after.trash == 0 and after.total < 15 * GB
    assert after.total == before.total - before.trash
    assert after.outputs == 10 * ds.lora_file_bytes(params) + 4096 + 11 * 3 * 2**20 + ds.LOSS_PLOT


def test_kept_and_pruned_epochs():
    use = ds.run_use(params=1000, optimizer="AdamW", epochs=10, keep_only_last_n_epochs=3, saves=5,
                     truncate=False)
    lora = ds.lora_file_bytes(1000)
    assert use.outputs == 4 * lora + 4096 + ds.LOSS_PLOT  # 3 epoch files kept and the final one
    assert use.trash == 3 * ds.state_bytes(1000, "AdamW") + 6 * lora  # 9 exported, 6 pruned
    assert use.states == 3 * ds.state_bytes(1000, "AdamW")  # two kept, one being written
