"""notebooks/2_train runs headless with a sub-folder dataset and continue_from_lora set."""

import json

import pytest
from safetensors import safe_open

from helpers.notebooks import NOTEBOOKS, run_notebook, text_of

pytestmark = pytest.mark.slow

PARAMS = dict(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=2, epochs=1,
              train_batch_size=1, budget_hours=3.0, sample_every_n_epochs=0)


def test_notebook_2_with_folders_then_continuing_that_lora(tiny_project, drive, make_config):
    draw = make_config.__globals__["draw"]
    sub = tiny_project.dataset / "3_extra"
    sub.mkdir()
    for i in range(2):
        draw(10 + i, (64, 64)).save(sub / f"e{i}.png")
        (sub / f"e{i}.txt").write_text(f"houtline, extra, tag{i}")
    env = {"COLABKIT_DRIVE_ROOT": str(drive)}
    first = text_of(run_notebook(NOTEBOOKS / "2_train.py", PARAMS, env=env, timeout=400))
    # 4 images x 2 + 2 x 3 = 14 image-repeats, batch 1
    assert "3_extra: 2 images x 3 repeats = 6" in first and "Finished: 14/14 steps" in first
    made = tiny_project.output / "houtline.safetensors"
    parent = made.rename(tiny_project.output / "houtline-v1.safetensors")  # as the notebook's field says to

    second = text_of(run_notebook(NOTEBOOKS / "2_train.py", {**PARAMS, "continue_from_lora": "houtline-v1.safetensors",
                                                             "network_dim": 8, "start_over": True},
                                  env=env, timeout=400))
    assert "starts from houtline-v1.safetensors" in second and "network_dim 8 in the settings, 16 in the file (used)" \
        in second and "Finished: 14/14 steps" in second
    with safe_open(made, "pt") as f:
        meta = f.metadata()
    with safe_open(parent, "pt") as f:
        parent_hash = f.metadata()["sshs_model_hash"]
    assert meta["ss_parent_lora"] == "houtline-v1.safetensors" and meta["ss_parent_lora_hash"] == parent_hash
    assert meta["ss_network_dim"] == "16"
    assert json.loads(meta["ss_dataset_dirs"])["3_extra"] == {"n_repeats": 3, "img_count": 2}
