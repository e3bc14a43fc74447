"""The committed .ipynb files are exactly what their .py sources generate, and every cell is a thin form."""

import json

import pytest

from helpers.notebooks import NOTEBOOKS, form_params, read_source, set_params, to_ipynb_text

SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_there_are_three_notebooks():
    assert [p.stem for p in SOURCES] == ["1_dataset", "2_train", "3_generate"]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_source(src):
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), "run: python tests/helpers/notebooks.py"
    assert ipynb.read_text() == to_ipynb_text(src), "stale .ipynb: run python tests/helpers/notebooks.py"
    nb = json.loads(ipynb.read_text())
    # Only the notebooks that need a GPU ask Colab for one: notebook 1 tags on a CPU runtime.
    assert nb["metadata"].get("accelerator") == (None if src.stem == "1_dataset" else "GPU")
    assert ("gpuType" in nb["metadata"]["colab"]) == (src.stem != "1_dataset")
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_cells_are_thin_forms(src):
    nb = read_source(src)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        lines = [ln for ln in cell.source.splitlines() if ln.strip()]
        assert lines[0].startswith("# @title "), lines[0]
        # No logic in cells: no loops or function definitions, and few statements.
        body = [ln for ln in lines if not ln.lstrip().startswith("#") and "# @param" not in ln]
        assert not any(ln.lstrip().startswith(("for ", "while ", "def ", "class ")) for ln in body), cell.source
        assert len(body) <= 20, cell.source


def test_set_params_rewrites_only_named_fields():
    nb = read_source(NOTEBOOKS / "2_train.py")
    set_params(nb, {"project_name": "x/y", "epochs": 3, "shuffle_tags": False})
    params = form_params(nb)
    assert params["project_name"] == "'x/y'" and params["epochs"] == "3" and params["shuffle_tags"] == "False"
    assert params["optimizer"] == '"AdamW8bit"'
    with pytest.raises(KeyError, match="not form fields"):
        set_params(nb, {"no_such_field": 1})


TRAIN_FIELDS = {
    "project_name", "base_model", "resolution", "num_repeats", "epochs", "train_batch_size", "optimizer",
    "recommended_values", "unet_lr", "text_encoder_lr", "lr_scheduler", "network_dim", "network_alpha", "lora_type",
    "shuffle_tags", "keep_tokens", "flip_aug", "save_every_n_epochs", "keep_only_last_n_epochs", "sample_prompts",
    "sample_every_n_epochs", "budget_hours", "start_over", "zero_terminal_snr", "max_token_length",
    "gradient_checkpointing", "continue_from_lora",
}


def test_training_form_fields_are_config_fields_and_cli_options():
    import dataclasses

    from colabkit.cli import build_parser
    from colabkit.train.config import TrainConfig

    params = set(form_params(read_source(NOTEBOOKS / "2_train.py"))) - {"colabkit_source", "language"}
    assert TRAIN_FIELDS <= params
    assert params <= {f.name for f in dataclasses.fields(TrainConfig)}
    train_cmd = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {o for a in train_cmd._actions for o in a.option_strings}
    assert {"--" + name.replace("_", "-") for name in params} <= options


def test_every_notebook_installs_colabkit_with_the_same_first_cell():
    """The install cell cannot call colabkit (it is what installs it), so it is the one cell with logic: it must be
    the same text in every notebook, apart from the title and the extras each notebook's setup() asks for."""
    import re

    def install_cell(src):
        cell = [c for c in read_source(src).cells if c.cell_type == "code"][0]
        lines = [ln for ln in cell.source.splitlines() if not ln.startswith("# @title")]
        return "\n".join(re.sub(r"setup\(.*\)$", "setup(...)", ln) for ln in lines)

    first, *rest = SOURCES
    for src in rest:
        assert install_cell(src) == install_cell(first), f"{src.name}'s first cell differs from {first.name}'s"
