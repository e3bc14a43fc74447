"""One training set for the dataset steps and training (colabkit.dataset.items), and the tagger's vocabulary
kept with the project so a runtime restart between tagging and curation loses nothing."""

import codecs
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from colabkit.dataset import images, items
from colabkit.dataset.captions import split_tags
from colabkit.dataset.pipeline import VOCABULARY, captioned_images, check_dataset, curate_captions, tag_dataset
from colabkit.project import Project
from colabkit.tiny.drawings import make_image_folder
from colabkit.train import data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(drive):
    """Four different 576 px drawings, each with a plain caption: all pass the check's defaults."""
    p = Project.at("one").create()
    for i, path in enumerate(make_image_folder(p.dataset, 4, size=(576, 576), fmt="png")):
        path.with_suffix(".txt").write_text(f"houtline, tag{i}")
    items._INSPECTED.clear()  # a fresh runtime: nothing read yet
    return p


def test_a_bom_gives_the_same_first_tag_in_the_dataset_steps_and_training(project):
    first = project.dataset / "drawing_0000.txt"
    first.write_bytes(codecs.BOM_UTF8 + "houtline, bom".encode())  # Windows Notepad's "UTF-8"
    second = project.dataset / "drawing_0001.txt"
    second.write_bytes("houtline, wide".encode("utf-16"))  # Notepad's "Unicode": a UTF-16 BOM
    shown = dict(captioned_images("one"))  # the gallery / editor
    assert split_tags(shown[first.with_suffix(".png")])[0] == "houtline"
    assert split_tags(shown[second.with_suffix(".png")]) == ["houtline", "wide"]
    curated = curate_captions("one", activation_tag="houtline")
    assert dict(curated.frequencies)["houtline"] == 4 and not curated.changed  # already first: nothing to edit
    trained = data.scan(project.dataset, 512)
    assert [split_tags(it.caption)[0] for it in trained.items] == ["houtline"] * 4
    assert data.activation_tag_of(trained.items) == "houtline"


def test_what_the_check_rejects_is_never_trained_on(project):
    ds = project.dataset
    Image.new("RGB", (300, 300), "white").save(ds / "small.png")  # under the default min_side 512
    (ds / "small.txt").write_text("houtline, small")
    (ds / "zcopy.png").write_bytes((ds / "drawing_0002.png").read_bytes())  # an exact copy
    (ds / "zcopy.txt").write_text("houtline, copy")
    (ds / "broken.png").write_bytes((ds / "drawing_0003.png").read_bytes()[:200])  # truncated upload
    (ds / "broken.txt").write_text("houtline, broken")

    report = check_dataset("one", progress=False)
    rejected = {p.file.name for p in report.rejected}
    assert rejected == {"small.png", "zcopy.png", "broken.png"}
    scan = data.scan(ds, 1024)
    assert sorted(it.path.name for it in scan.items) == [f"drawing_{i:04d}.png" for i in range(4)]
    assert {p.name for p, _ in scan.rejected} == rejected  # and preflight can say why, with the fix
    why = dict((p.name, w) for p, w in scan.rejected)
    assert "too small" in why["small.png"] and "exact copy of drawing_0002.png" in why["zcopy.png"]
    assert [p.name for p, _ in captioned_images("one")] == [it.path.name for it in scan.items]

    # The limits the artist chooses in the check step are the ones training applies.
    check_dataset("one", min_side=256, progress=False)
    assert "small.png" in {it.path.name for it in data.scan(ds, 1024).items}


def test_without_a_check_the_size_limit_follows_the_training_resolution(project):
    Image.new("RGB", (300, 300), "white").save(project.dataset / "small.png")
    (project.dataset / "small.txt").write_text("houtline, small")
    assert not (project.training / items.CHECK_SETTINGS).exists()
    # never upscaled more than 2x: at 1024 px that is the check's own default, 512
    assert "small.png" not in {it.path.name for it in data.scan(project.dataset, 1024).items}
    assert "small.png" in {it.path.name for it in data.scan(project.dataset, 512).items}
    assert "small.png" not in dict(captioned_images("one"))  # the dataset steps: the check's defaults


def test_each_image_is_read_once_per_runtime(project, monkeypatch):
    reads = Counter()
    real = images.read_bytes

    def counting(path):
        reads[Path(path).name] += 1
        return real(path)

    monkeypatch.setattr(images, "read_bytes", counting)
    check_dataset("one", progress=False)  # the check step reads and hashes every file ...
    assert reads == Counter({f"drawing_{i:04d}.png": 1 for i in range(4)})
    for _ in range(2):  # ... and training's scans (preflight, then the run) reuse that
        scan = data.scan(project.dataset, 1024)
    curate_captions("one", activation_tag="houtline")
    assert reads == Counter({f"drawing_{i:04d}.png": 1 for i in range(4)})
    for it in scan.items:
        assert it.sha256 == hashlib.sha256(it.path.read_bytes()).hexdigest()
        assert it.size == (576, 576)

    # An edited image (new bytes, new mtime) is read again, alone.
    make_image_folder(project.dataset, 1, size=(640, 576), fmt="png", seed=9)
    edited = data.scan(project.dataset, 1024).items[0]
    assert reads["drawing_0000.png"] == 2 and sum(reads.values()) == 5
    assert edited.size == (640, 576) and edited.sha256 != scan.items[0].sha256


_CURATE_IN_A_NEW_PROCESS = """
from colabkit.dataset.pipeline import curate_captions
print("\\n".join(curate_captions("one", activation_tag="cirno").warnings))
"""


def _curate_after_restart(drive: Path) -> str:
    env = {**os.environ, "COLABKIT_DRIVE_ROOT": str(drive), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _CURATE_IN_A_NEW_PROCESS], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_trigger_word_check_survives_a_restart_between_tagging_and_curation(project, drive, tiny_tagger):
    # 'cirno' is a character the tiny tagger knows: a poor trigger word, as it already means something.
    tagged = tag_dataset("one", tagger_model="tiny-wd14", activation_tag="cirno", overwrite_captions=True,
                         progress=False)
    assert any("tagger emits" in w for w in tagged.warnings)
    saved = json.loads((project.training / VOCABULARY).read_text())
    assert saved["model"] == "tiny-wd14" and "cirno" in saved["tags"]
    assert not list(project.training.glob(".*.tmp"))  # written atomically, no temp file left

    assert "tagger emits" in _curate_after_restart(drive)  # a new Python process: only the project's files
    (project.training / VOCABULARY).unlink()
    assert "tagger emits" not in _curate_after_restart(drive)  # the check does come from that file
