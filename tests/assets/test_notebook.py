"""notebooks/3_generate runs headless top to bottom on tiny-sdxl after a test training run."""

import dataclasses
import json
import re

import pytest
from PIL import Image

from helpers.notebooks import NOTEBOOKS, form_params, outputs, read_source, run_notebook, text_of

NB = NOTEBOOKS / "3_generate.py"


def test_form_fields_are_config_fields_and_cli_options():
    from colabkit.assets.config import CompareConfig, CutoutConfig, GenerateConfig
    from colabkit.cli import build_parser

    params = set(form_params(read_source(NB))) - {"colabkit_source", "language", "release_runtime"}  # set-up, closing
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, cls in (("compare", CompareConfig), ("generate", GenerateConfig), ("cutout", CutoutConfig)):
        fields = {f.name for f in dataclasses.fields(cls)}
        used = params & fields
        options = {o for a in commands[name]._actions for o in a.option_strings}
        assert {"--" + n.replace("_", "-") for n in fields} <= options
        assert len(used) >= 7, (name, used)
    every = set().union(*({f.name for f in dataclasses.fields(c)} for c in (CompareConfig, GenerateConfig,
                                                                             CutoutConfig)))
    assert params <= every, params - every


@pytest.mark.slow
def test_notebook_runs_after_training(drive, tiny_sdxl):
    from colabkit.project import Project
    from colabkit.train.config import TrainConfig
    from colabkit.train.loop import train

    from test_cutout import make_sheet

    project = Project.at("houtline").create()
    for i in range(2):
        im = Image.new("RGB", (64, 64), "white")
        im.paste((20 + 100 * i, 20, 20), (16, 16, 48, 48))
        im.save(project.dataset / f"d{i}.png")
        (project.dataset / f"d{i}.txt").write_text(f"houtline, square, tag{i}")
    cfg = TrainConfig(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=1, epochs=2,
                      train_batch_size=2, optimizer="AdamW", unet_lr=1e-3, network_dim=4, network_alpha=2,
                      sample_every_n_epochs=0, save_state_every_n_steps=100, seed=7)
    assert train(cfg, device="cpu").status == "finished"
    # an artist's own sheet dropped beside the generated pictures: step 3 cuts it out too
    generated = project.output / "generated"
    generated.mkdir(parents=True)
    Image.fromarray(make_sheet((255, 255, 255))[0]).save(generated / "sheet.png")

    params = dict(project_name="houtline", base_model="tiny-sdxl", lora_weights="0.6, 1.0", size="64x64", steps=2,
                  num_images=2, seed=5, gap=26, shadows="remove", close_gaps=12, canvas="cell", power_of_two=True)
    nb = run_notebook(NB, params, env={"COLABKIT_DRIVE_ROOT": str(drive), "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    text = text_of(nb)
    grids = list((project.output / "compare").glob("compare-*.png"))
    assert len(grids) == 1
    from colabkit.assets.compare import header_height
    from colabkit.assets.generate import read_parameters

    grid = Image.open(grids[0])
    # two LoRA files (epoch 1, final), one prompt; columns: no LoRA, 0.6, 1.0; the settings printed under it
    assert grid.size[1] > header_height() + 2 * 384 and (grid.size[0] - 3 * 384) > 50
    assert read_parameters(grids[0])["Seed"] == "5"
    made = sorted(p.name for p in generated.glob("0*.png"))
    assert made == ["00000-5.png", "00001-6.png"]
    info = read_parameters(generated / "00000-5.png")
    assert info["Seed"] == "5" and info["Size"] == "64x64" and info["Lora hashes"].startswith("houtline: ")
    assert info["RNG"] == "CPU"
    assert info["prompt"].startswith("houtline, square")  # pre-filled from the LoRA's tags
    assets = project.output / "assets"
    sprites = sorted((assets / "sheet").glob("sheet_[0-9][0-9].png"))
    assert len(sprites) == 5
    # one cell size for the set; one atlas for the folder, its pages powers of two
    assert len({Image.open(p).size for p in sprites}) == 1 and Image.open(sprites[0]).mode == "RGBA"
    atlas = json.loads((assets / "generated.json").read_text())
    assert {f"sheet_{i:02d}.png" for i in range(1, 6)} <= set(atlas["frames"])
    w, h = Image.open(assets / "generated.png").size
    assert w & (w - 1) == 0 and h & (h - 1) == 0
    # the sheet is cut; each of tiny-sdxl's noise pictures is either cut too or skipped with its reason
    done = re.search(r"Cut out (\d) of 3 pictures", text)
    assert done, text[-2000:]
    assert len(re.findall(r"skipped 0000\d-\d\.png: ", text)) == 3 - int(done[1])
    assert len(outputs(nb, "image/png")) >= 3  # grid, generated grid, cut-out preview
