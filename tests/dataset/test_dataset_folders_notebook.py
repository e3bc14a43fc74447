"""notebooks/1_dataset runs headless on a dataset with <repeats>_<name>/ sub-folders: the check shows the folders,
tagging captions the images inside them."""

import pytest
from PIL import Image, ImageDraw

from colabkit.dataset.captions import split_tags
from colabkit.project import Project
from helpers.notebooks import NOTEBOOKS, run_notebook, text_of


def drawing(i):
    im = Image.new("RGB", (640, 640), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((60 + 10 * i, 60, 580, 580 - 20 * i), outline=(20, 20, 20), width=6)
    d.line((0, 60 * i, 640, 640 - 50 * i), fill=(200, 30 * i % 255, 40), width=5)
    return im


@pytest.mark.slow
def test_notebook_1_on_sub_folders(drive, tiny_tagger):
    project = Project.at("folders").create()
    for i, where in enumerate(["", "", "3_style", "3_style", "1_props"]):
        folder = project.dataset / where if where else project.dataset
        folder.mkdir(exist_ok=True)
        drawing(i).save(folder / f"d{i}.png")
    nb = run_notebook(NOTEBOOKS / "1_dataset.py",
                      params=dict(project_name="folders", tagger_model="tiny-wd14", activation_tag="houtline"),
                      env={"COLABKIT_DRIVE_ROOT": str(drive)}, timeout=240)
    shown = text_of(nb)
    assert "Folders: dataset/: 2 images, num_repeats each; 1_props/: 1 images, 1 repeats each; 3_style/: 2 images, " \
           "3 repeats each." in shown
    assert "3_style/d2.png" in shown
    for caption in ("d0.txt", "3_style/d2.txt", "3_style/d3.txt", "1_props/d4.txt"):
        assert split_tags((project.dataset / caption).read_text())[0] == "houtline", caption
