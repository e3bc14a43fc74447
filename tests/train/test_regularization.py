"""Regularization images (Loras/<project>/reg/): balanced against the training images per epoch as sd-scripts'
DreamBoothDataset does, and trained with prior_loss_weight as a per-sample loss weight."""

import json

import pytest
from safetensors import safe_open

from colabkit.dataset import items
from colabkit.train import data
from colabkit.train.config import step_plan


def add_reg(project, draw, folder="", count=3, captions=True):
    root = items.reg_folder(project) / folder if folder else items.reg_folder(project)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        draw(30 + i, (64, 64)).save(root / f"r{i}.png")
        if captions:
            (root / f"r{i}.txt").write_text(f"reg caption {i}")


def test_reg_images_balance_to_the_training_image_repeats(tiny_project, make_config):
    draw = make_config.__globals__["draw"]
    add_reg(tiny_project, draw, count=3)
    scan = data.scan(tiny_project.dataset, 64)
    assert [it.name for it in scan.reg] == ["reg/r0.png", "reg/r1.png", "reg/r2.png"]
    assert len(scan.training) == 4 and all(not it.is_reg for it in scan.items[:4])  # training images first
    # 4 images x 2 repeats = 8: the 3 reg images take 1 each, then one more each in turn until 8
    assert data.epoch_repeats(scan.items, 2) == [2, 2, 2, 2, 3, 3, 2]
    cfg = make_config(num_repeats=2, train_batch_size=1, epochs=2)
    plan = step_plan(scan.bucket_sizes, cfg, scan.bucket_repeats(2), scan.folders(), (3, 8))
    assert plan.steps_per_epoch == 16 and plan.total_steps == 32
    assert "reg/: 3 regularization images, 8 image-repeats (balanced to the training images' as sd-scripts does; " \
           "loss weight 1)" in plan.describe()
    batches = data.epoch_batches(scan.items, 2, 1, seed=1, epoch=0)
    assert len(batches) == 16 and sum(scan.items[s.index].is_reg for b in batches for s in b) == 8
    assert data.sample_weights(scan.items, [s for b in batches for s in b][:16], 0.25).count(0.25) == \
        sum(scan.items[s.index].is_reg for b in batches[:16] for s in b)
    # the LoRA's own tags and activation tag ignore the reg captions
    assert "reg caption 0" not in data.tag_frequency(scan.items) and data.activation_tag_of(scan.items) == "houtline"


def test_more_reg_image_repeats_than_training_leaves_the_last_ones_out(tiny_project, make_config):
    draw = make_config.__globals__["draw"]
    add_reg(tiny_project, draw, folder="3_woman", count=4, captions=False)
    scan = data.scan(tiny_project.dataset, 64)
    assert [it.caption for it in scan.reg] == ["woman"] * 4  # the folder's class words, as sd-scripts
    # training: 4 x 2 = 8; reg: 3 + 3 = 6 < 8, then 3 -> 9 >= 8: the fourth image is not used
    assert data.epoch_repeats(scan.items, 2)[4:] == [3, 3, 3, 0]
    meta = data.dataset_metadata(scan.items, 2, "houtline")
    assert meta["num_train_images"] == 8 and meta["num_reg_images"] == 12
    assert "3_woman" not in meta["dataset_dirs"]
    assert meta["reg_dataset_dirs"] == {"3_woman": {"n_repeats": 3, "img_count": 4}}


def test_no_reg_folder_changes_nothing(tiny_project):
    scan = data.scan(tiny_project.dataset, 64)
    assert not scan.reg and data.epoch_repeats(scan.items, 3) == [3, 3, 3, 3]


@pytest.mark.slow
def test_reg_trains_with_the_prior_loss_weight(tiny_project, make_config):
    from colabkit.train.loop import train
    from colabkit.train.plan import make_plan
    from colabkit.train.state import StateStore

    add_reg(tiny_project, make_config.__globals__["draw"], count=3)
    cfg = make_config(num_repeats=2, train_batch_size=1, epochs=1, prior_loss_weight=0.0, optimizer="AdamW")
    plan = make_plan(cfg, device="cpu")
    assert [n.message for n in plan.notes if n.name == "regularization"] == \
        ["3 regularization images in reg/, trained with loss weight 0 (prior_loss_weight)"]
    result = train(plan)
    assert result.status == "finished" and result.step == 16
    losses = StateStore(tiny_project.state).load_latest()[0].losses
    assert sum(1 for x in losses if x == 0.0) == 8  # weight 0: each reg sample's loss is exactly 0
    with safe_open(result.final_lora, "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_train_images"] == "8" and meta["ss_num_reg_images"] == "3"
    assert float(meta["ss_prior_loss_weight"]) == 0.0 and "reg" not in json.loads(meta["ss_tag_frequency"])
    assert json.loads(meta["ss_reg_dataset_dirs"]) == {"reg": {"n_repeats": 1, "img_count": 3}}
