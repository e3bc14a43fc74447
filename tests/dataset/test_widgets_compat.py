"""The caption editor on Colab's ipywidgets (7.7.1, constraints/colab.txt) and on 8.

The suite runs against the pin (CI installs with `-c constraints/colab.txt`); the canary (scripts/canary.sh) runs
it on the newest 8 and says so with COLABKIT_EXPECT_IPYWIDGETS=8. The first test checks that the version under
test is the one meant, so a run that silently got another ipywidgets does not pass as a test of 7.7.1.
"""

import os
import sys
from pathlib import Path

import ipywidgets

from colabkit import display_dataset as dd
from colabkit.dataset.pipeline import tag_dataset
from helpers.kernels import execute_cells, widget_views

ROOT = Path(__file__).resolve().parents[2]


def pinned(name: str) -> str:
    for line in (ROOT / "constraints" / "colab.txt").read_text().splitlines():
        if line.split("#")[0].strip().lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].split("#")[0].strip()
    raise AssertionError(f"{name} is not pinned in constraints/colab.txt")


def test_runs_against_the_ipywidgets_it_is_meant_to():
    expected = os.environ.get("COLABKIT_EXPECT_IPYWIDGETS") or pinned("ipywidgets")
    assert expected == "8" or expected == pinned("ipywidgets") == "7.7.1"  # Colab ships 7.7.1
    assert ipywidgets.__version__ == expected or ipywidgets.__version__.startswith(expected + "."), (
        f"ipywidgets {ipywidgets.__version__} is installed; these tests are meant for {expected}: install with "
        "-c constraints/colab.txt, or set COLABKIT_EXPECT_IPYWIDGETS=8 to test 8 on purpose")


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
