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
