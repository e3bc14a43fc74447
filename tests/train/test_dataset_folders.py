"""Dataset sub-folders with their own repeats (kohya's dataset/<repeats>_<name>/): one definition of the training
set (colabkit.dataset.items) for the check, the step maths, the batches, the metadata and a resume."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from colabkit.dataset import items
from colabkit.project import Project
from colabkit.train import data
from colabkit.train.config import step_plan



tiny_config = None  # tests/train/conftest.py's, set by the autouse fixture below (conftest is not importable by name
draw = None  # when tests/dataset runs in the same session)


@pytest.fixture(autouse=True)
def _train_helpers(make_config):
    global tiny_config, draw
    tiny_config = make_config
    draw = make_config.__globals__["draw"]


def folder_project() -> Project:
    """3_a: 4 images, 1_b: 2 images, 1 image directly in dataset/ (num_repeats), and a folder that is not used."""
    project = Project.at("houtline").create()
    n = 0
    for folder, count in (("3_a", 4), ("1_b", 2), ("", 1), ("misc", 1)):
        where = project.dataset / folder if folder else project.dataset
        where.mkdir(exist_ok=True)
        for _ in range(count):
            draw(n, (64, 64) if n % 2 else (96, 64)).save(where / f"d{n}.png")
            (where / f"d{n}.txt").write_text(f"houtline, outline, {folder or 'top'}, tag{n}")
            n += 1
    (project.dataset / "3_a" / "lost.txt").write_text("no image")  # an orphan caption inside a folder
    items.save_limits(project, 32, 4.0)
    return project


@pytest.fixture
def folders(drive, tiny_sdxl):
    return folder_project()


def test_the_training_set_reads_the_repeats_folders(folders):
    ts = items.training_set(folders)
    got = sorted((it.folder, it.repeats, it.path.name) for it in ts.items)
    assert got == [("", None, "d6.png"), ("1_b", 1, "d4.png"), ("1_b", 1, "d5.png"), ("3_a", 3, "d0.png"),
                   ("3_a", 3, "d1.png"), ("3_a", 3, "d2.png"), ("3_a", 3, "d3.png")]
    assert [p.name for p in ts.orphan_captions] == ["lost.txt"]
    found = items.scan(folders)
    unused = [p for p in found.problems if p.kind == "folder"]
    assert [p.file.name for p in unused] == ["misc"] and not unused[0].rejected
    assert "10_misc" in unused[0].fix


def test_a_copy_in_two_folders_is_rejected_and_a_name_clash_is_per_folder(folders):
    (folders.dataset / "1_b" / "d6.png").write_bytes((folders.dataset / "d6.png").read_bytes())
    found = items.scan(folders)
    assert [(p.file.parent.name, p.file.name, p.kind) for p in found.problems if p.rejected] == \
        [("1_b", "d6.png", "duplicate")] or \
        [(p.file.parent.name, p.file.name, p.kind) for p in found.problems if p.rejected] == \
        [("dataset", "d6.png", "duplicate")]
    # d0.png in 3_a and a d0.jpg beside d6 at the top do not share a caption: no clash
    draw(20, (64, 64)).convert("RGB").save(folders.dataset / "d0.jpg")
    assert not [p for p in items.scan(folders).problems if p.kind == "name clash"]


def test_step_maths_16_image_repeats_per_epoch(folders):
    scan = data.scan(folders.dataset, 64)
    cfg = tiny_config(num_repeats=2, train_batch_size=1, epochs=2)
    assert scan.bucket_repeats(2) and sum(scan.bucket_repeats(2)) == 16  # 4x3 + 2x1 + 1x2
    plan = step_plan(scan.bucket_sizes, cfg, scan.bucket_repeats(2), scan.folders())
    assert (plan.steps_per_epoch, plan.total_steps, plan.image_repeats) == (16, 32, 16)
    text = plan.describe()
    assert "3_a: 4 images x 3 repeats = 12" in text and "1_b: 2 images x 1 repeats = 2" in text
    assert "dataset/: 1 images x 2 repeats = 2" in text and "16 image-repeats / batch 1 = 16 steps per epoch" in text
    assert "epochs = 25 gives 400 steps" in text  # the suggestion scales the whole: 32 is under 300
    batches = data.epoch_batches(scan.items, 2, 1, seed=3, epoch=0)
    assert len(batches) == 16
    seen = {}
    for b in batches:
        for s in b:
            seen[scan.items[s.index].name] = seen.get(scan.items[s.index].name, 0) + 1
    assert seen == {"d6.png": 2, "1_b/d4.png": 1, "1_b/d5.png": 1, "3_a/d0.png": 3, "3_a/d1.png": 3,
                    "3_a/d2.png": 3, "3_a/d3.png": 3}
    meta = data.dataset_metadata(scan.items, 2, "houtline")
    assert meta["num_train_images"] == 16
    assert meta["dataset_dirs"] == {"1_b": {"n_repeats": 1, "img_count": 2}, "2_houtline": {"n_repeats": 2,
                                    "img_count": 1}, "3_a": {"n_repeats": 3, "img_count": 4}}
    assert meta["tag_frequency"]["1_b"] == {"1_b": 2, "houtline": 2, "outline": 2, "tag4": 1, "tag5": 1}


def test_renaming_a_folder_changes_the_fingerprint(folders):
    before = data.scan(folders.dataset, 64).fingerprint()
    (folders.dataset / "1_b").rename(folders.dataset / "2_b")
    assert data.scan(folders.dataset, 64).fingerprint() != before


def test_a_flat_dataset_keeps_its_fingerprint_and_plan(tiny_project):
    # Images directly in dataset/ are named as before sub-folders existed: an older run's fingerprint holds.
    scan = data.scan(tiny_project.dataset, 64)
    import hashlib

    h = hashlib.sha256()
    for it in scan.items:
        h.update(f"{it.path.name}\0{it.sha256}\0{it.caption}\n".encode())
    assert scan.fingerprint() == h.hexdigest() and not scan.has_folders


@pytest.mark.slow
def test_folders_train_16_steps_with_metadata_and_resume_bit_exact(folders):
    from colabkit.train.loop import train
    from helpers.budget import StopAfter

    cfg = tiny_config(num_repeats=2, train_batch_size=1, epochs=1, optimizer="AdamW", flip_aug=True)
    straight = train(cfg, device="cpu")
    assert straight.status == "finished" and straight.step == straight.total_steps == 16
    reference = load_file(straight.final_lora)
    with safe_open(straight.final_lora, "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_train_images"] == "16"
    assert json.loads(meta["ss_dataset_dirs"]) == {"1_b": {"n_repeats": 1, "img_count": 2},
                                                   "2_houtline": {"n_repeats": 2, "img_count": 1},
                                                   "3_a": {"n_repeats": 3, "img_count": 4}}
    assert sorted(json.loads(meta["ss_tag_frequency"])) == ["1_b", "2_houtline", "3_a"]

    first = train(cfg.replace(start_over=True), budget=StopAfter(5), device="cpu")  # day 1
    assert first.status == "stopped" and first.step == 5
    last = train(cfg, device="cpu")  # day 2
    assert last.status == "finished" and last.step == 16
    resumed = load_file(last.final_lora)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k


def test_the_check_shows_the_folders(folders):
    from colabkit.dataset.pipeline import check_dataset, set_caption

    report = check_dataset("houtline", min_side=32, progress=False)
    files = {r["file"]: r["status"] for r in report.rows()}
    assert files["3_a/d0.png"] == "ok" and files["d6.png"] == "ok" and files["misc/"] == "warning"
    assert report.summary().endswith("Folders: dataset/: 1 images, num_repeats each; 1_b/: 2 images, 1 repeats "
                                     "each; 3_a/: 4 images, 3 repeats each.")
    assert set_caption("houtline", "3_a/d0.png", "houtline, edited") == "houtline, edited"
    assert (folders.dataset / "3_a" / "d0.txt").read_text() == "houtline, edited"


def test_tagging_names_images_with_their_folder(folders):
    from colabkit.dataset.pipeline import curate_captions

    report = curate_captions("houtline", global_tags="lineart")
    assert sorted(report.changed) == ["1_b/d4.png", "1_b/d5.png", "3_a/d0.png", "3_a/d1.png", "3_a/d2.png",
                                      "3_a/d3.png", "d6.png"]
    assert (folders.dataset / "3_a" / "d0.txt").read_text() == "lineart, houtline, outline, 3_a, tag0"
