"""notebooks/2_train runs headless top to bottom on tiny-sdxl; run again, it continues; then it is finished."""

import pytest

from helpers.notebooks import NOTEBOOKS, outputs, run_notebook, text_of

pytestmark = pytest.mark.slow

PARAMS = dict(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=2, epochs=4,
              train_batch_size=1, budget_hours=0.4, sample_every_n_epochs=2)


def test_notebook_stops_at_budget_then_continues(tiny_project, drive):
    env = {"COLABKIT_DRIVE_ROOT": str(drive)}
    # Day 1: time runs 60 s per clock reading, so the 0.4 h budget (minus its 10 min margin) ends mid-run.
    day1 = run_notebook(NOTEBOOKS / "2_train.py", PARAMS, env={**env, "COLABKIT_FAKE_SECONDS_PER_TICK": "60"},
                        timeout=300)
    text1 = text_of(day1)
    assert "Preflight passed" in text1
    assert "Stopped at step" in text1 and "Run the notebook again tomorrow to continue" in text1
    assert "Finished" not in text1
    assert (tiny_project.output / "loss.png").exists()

    # Day 2: the same notebook, nothing changed by the user: it continues and finishes.
    day2 = run_notebook(NOTEBOOKS / "2_train.py", PARAMS, env=env, timeout=300)
    text2 = text_of(day2)
    assert "Will continue from step" in text2 and "Resuming from step" in text2
    assert "Finished: 32/32 steps" in text2
    assert (tiny_project.output / "houtline.safetensors").exists()
    pictures = outputs(day2, "image/png")
    assert len(pictures) >= 3  # sample grid(s) and loss curve while training, and again in the finish cell
    assert "houtline.safetensors" in text2 and "models/Lora" in text2 and "load_lora_weights" in text2

    # Day 3: finished runs are recognised.
    day3 = run_notebook(NOTEBOOKS / "2_train.py", PARAMS, env=env, timeout=300)
    assert "already finished" in text_of(day3)


def test_preflight_mistake_is_one_clear_message(drive):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError) as e:
        run_notebook(NOTEBOOKS / "2_train.py", {**PARAMS, "project_name": "nope"},
                     env={"COLABKIT_DRIVE_ROOT": str(drive)}, timeout=300)
    assert "No project 'nope'" in str(e.value)
    # What the user sees: the message alone (red), no traceback frames around it; the cell still failed.
    errors = [o for o in outputs(e.value.notebook) if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ColabkitError"
    shown = "\n".join(errors[0]["traceback"])
    assert "No project 'nope'" in shown and "\x1b[1;31m" in shown
    assert "Traceback" not in shown and "----> " not in shown and ".py:" not in shown and "File " not in shown


def test_notebook_stays_light_after_many_sample_grids(tiny_project, drive):
    # Samples at 512 px, two prompts: each grid is a ~1.2 MB PNG on Drive. Embedded as they are, three of them
    # (two epochs and the finish cell) would make the notebook, which Colab autosaves to Drive, ~5 MB.
    params = {**PARAMS, "resolution": 512, "num_repeats": 1, "train_batch_size": 2, "epochs": 2,
              "sample_every_n_epochs": 1, "budget_hours": 3.0, "sample_prompts": "houtline\nhoutline, circle"}
    nb = run_notebook(NOTEBOOKS / "2_train.py", params, env={"COLABKIT_DRIVE_ROOT": str(drive)}, timeout=500)
    assert "Finished: 4/4 steps" in text_of(nb)
    grids = sorted(tiny_project.samples.glob("grid-*.png"))
    assert len(grids) == 2
    full_size_embeds = (sum(g.stat().st_size for g in grids) + grids[-1].stat().st_size) * 4 / 3  # base64
    assert full_size_embeds > 3e6  # what the notebook would have carried before
    import nbformat

    size = len(nbformat.writes(nb).encode())
    print(f"executed notebook: {size / 1e6:.2f} MB; full-size grids embedded would be {full_size_embeds / 1e6:.2f} MB")
    assert size < 3e6, f"executed notebook is {size / 1e6:.1f} MB"
    assert len(outputs(nb, "image/jpeg")) >= 3  # the previews are there: two epochs and the finish cell
