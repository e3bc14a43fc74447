"""The caption editor on whichever ipywidgets is installed: Colab's 7.7.1 (constraints/colab.txt) or 8.

Run under both: the global environment has 8; a venv made with `-c constraints/colab.txt` has 7.7.1
(README, development section).
"""

import os
import sys
from pathlib import Path

import ipywidgets

from colabkit import display_dataset as dd
from colabkit.dataset.pipeline import tag_dataset
from helpers.kernels import execute_cells, widget_views

ROOT = Path(__file__).resolve().parents[2]


def test_editor_walks_edits_and_saves(mixed_project, tiny_tagger):
    project, _ = mixed_project
    tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    editor = dd.CaptionEditor("mixed", activation_tag="houtline")
    names = list(editor.captions)
    editor.prev_button.click()  # wraps around to the last image
    assert editor.dropdown.value == names[-1]
    assert editor.text.value == editor.captions[names[-1]][1]
    editor.dropdown.value = names[1]  # picking in the dropdown loads that caption
    assert editor.text.value == (project.dataset / (Path(names[1]).stem + ".txt")).read_text()
    assert editor.image.value.startswith('<img src="data:image/jpeg;base64,')
    editor.text.value = "blue, houtline"
    editor.save_button.click()
    assert (project.dataset / (Path(names[1]).stem + ".txt")).read_text() == "houtline, blue"
    (project.dataset / names[1]).rename(project.dataset / "_moved.png")  # moved away in the Drive UI meanwhile
    editor.text.value = "green"
    editor.save_button.click()
    assert "No image" in editor.status.value and "#b00020" in editor.status.value
    assert (project.dataset / (Path(names[1]).stem + ".txt")).read_text() == "houtline, blue"


def test_editor_with_no_captions_says_what_to_do(drive):
    from colabkit.project import Project

    Project.at("empty").create()
    editor = dd.CaptionEditor("empty")
    assert editor.dropdown.options == () and "run the tagging step first" in editor.status.value


def test_editor_displays_as_a_widget_in_a_kernel(mixed_project, tiny_tagger, tmp_path):
    """What Colab's front end gets: a widget view, from show_caption_editor and from the editor object itself."""
    tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    nb = execute_cells([
        "import ipywidgets; print(ipywidgets.__version__)",
        "from colabkit.display_dataset import show_caption_editor\n"
        "editor = show_caption_editor('mixed', activation_tag='houtline')",
        "editor",
        "editor.next_button.click(); print(editor.dropdown.value, editor.widget.model_id)",
    ], python=sys.executable, where=tmp_path, env=env, cwd=tmp_path)
    assert nb.cells[0].outputs[0]["text"].strip() == ipywidgets.__version__  # the kernel runs this environment
    name, model_id = nb.cells[3].outputs[0]["text"].split()
    assert name == "02_palette.png"
    assert widget_views(nb) == [model_id, model_id]
