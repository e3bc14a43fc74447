"""The three notebooks headless in the stand-in Colab (tests/helpers/fake_colab), each in a fresh runtime of its
own with Drive unmounted and COLABKIT_DRIVE_ROOT unset, as Colab runs them: notebook 1 creates and tags, notebook 2
stops on the budget on day 1 and finishes on day 2, notebook 3 compares, generates and cuts out."""

import time

import pytest

from helpers.colab_runtime import FakeColab, kernel_env
from helpers.notebooks import NOTEBOOKS, outputs, run_notebook, text_of

from helpers.tiny_dataset import fill_dataset

pytestmark = pytest.mark.slow

TRAIN = dict(project_name="cr", base_model="tiny-sdxl", resolution=64, num_repeats=2, epochs=4, train_batch_size=1,
             budget_hours=0.4, sample_every_n_epochs=2)


def run_in(colab: FakeColab, notebook: str, params: dict, timeout: int = 400, **env):
    return run_notebook(NOTEBOOKS / notebook, params, env=kernel_env(colab, **env), timeout=timeout)


def cell_outputs(nb, title: str) -> list[dict]:
    return next(c for c in nb.cells if c.cell_type == "code" and title in c.source)["outputs"]


def shown(out: dict) -> str:
    return out.get("text", "") + "".join(str(out.get("data", {}).get(m, "")) for m in ("text/plain", "text/html"))


def test_three_notebooks_in_fresh_runtimes(tmp_path, monkeypatch, tiny_sdxl):
    from colabkit.project import Project

    monkeypatch.delenv("COLABKIT_DRIVE_ROOT", raising=False)
    drive = FakeColab(tmp_path / "colab-home", tmp_path / "unused" / "content")
    # The artist uploads drawings into MyDrive/Loras/cr/dataset/ in Drive's web page.
    project = Project.at("cr", drive.my_drive)
    fill_dataset(project, limits=False)  # notebook 1's check (min_side 32) accepts them

    # -- notebook 1: check and tag, on a CPU runtime ---------------------------------------------------------------
    rt1 = drive.new_runtime("rt1")
    nb1 = run_in(rt1, "1_dataset.py", dict(project_name="cr", tagger_model="tiny-wd14", activation_tag="houtline",
                                           min_side=32))
    text1 = text_of(nb1)
    assert f"Mounted at {rt1.content / 'drive'}" in text1  # by the set-up cell, the first thing that runs
    assert drive.log() == [f"mount {rt1.content / 'drive'}"]
    for i in range(4):
        assert (project.dataset / f"d{i}.txt").read_text().startswith("houtline, ")  # on Drive, not the VM disk
    assert "Disconnect and delete runtime" in text1  # the closing cell: release this runtime

    # -- notebook 2, day 1: the runtime has been up 12 of its 24 minutes: one step, then the budget stop ----------
    # Time runs 60 s per reading of the budget's clock: 11 min left when the run starts (over the 10 min margin),
    # 9 min after step 1. Counted from the cell's start instead, 21 min would be left and the run would go on.
    rt2 = drive.new_runtime("rt2")
    day1 = run_in(rt2, "2_train.py", TRAIN, COLABKIT_RUNTIME_START=str(time.time() - 12 * 60),
                  COLABKIT_FAKE_SECONDS_PER_TICK="60")
    text2 = text_of(day1)
    assert "Preflight passed" in text2
    assert "Stopped at step 1/32" in text2  # counted from the runtime's start, not the cell's
    trained = cell_outputs(day1, "Step 2: train")
    kinds = ["image" if "image/png" in o.get("data", {}) or "image/jpeg" in o.get("data", {}) else shown(o)
             for o in trained]
    plot = kinds.index("image")
    flushed = next(i for i, k in enumerate(kinds) if "Drive was flushed and unmounted" in k)
    assert plot < flushed == len(kinds) - 1  # the loss plot read from Drive first; the flush last
    assert "flush_and_unmount timeout_ms=300000" in drive.log()
    assert drive.log()[-1] == f"mount {rt2.content / 'drive'}"  # the results cell mounted Drive again
    assert "No LoRA files yet" in text_of_cell(day1, "Step 3: your LoRA files")
    assert (project.state / "step-000001" / "MANIFEST.json").exists()

    # -- notebook 2, day 2: a new runtime continues to the end ----------------------------------------------------
    rt3 = drive.new_runtime("rt3")
    day2 = run_in(rt3, "2_train.py", TRAIN, COLABKIT_RUNTIME_START=str(time.time()))
    text3 = text_of(day2)
    assert "Resuming from step 1" in text3 and "Finished: 32/32 steps" in text3
    assert (project.output / "cr.safetensors").is_file() and (project.output / "cr-02.safetensors").is_file()
    assert drive.trashed() == 0  # states rotated and files replaced without leaving bytes in Drive's trash

    # -- notebook 3: compare, generate, cut out, then release the runtime ----------------------------------------
    rt4 = drive.new_runtime("rt4")
    nb3 = run_in(rt4, "3_generate.py", dict(project_name="cr", base_model="tiny-sdxl", lora_weights="0.6, 1.0",
                                            size="64x64", steps=2, num_images=2, seed=5, release_runtime=True),
                 CUDA_VISIBLE_DEVICES="")
    assert len(list((project.output / "compare").glob("compare-*.png"))) == 1
    assert sorted(p.name for p in (project.output / "generated").glob("0*.png")) == ["00000-5.png", "00001-6.png"]
    assert (project.output / "assets").is_dir() or "plain light background" in text_of(nb3)
    assert len(outputs(nb3, "image/png")) >= 2
    assert drive.log()[-3:] == [f"mount {rt4.content / 'drive'}", "flush_and_unmount timeout_ms=300000", "unassign"]


def text_of_cell(nb, title: str) -> str:
    return "\n".join(shown(o) for o in cell_outputs(nb, title))
