"""The Spanish notebooks: generated from the one source of each notebook plus the translation of its text, current,
fully translated, and their setting lines taken from the configs' descriptions."""

import json

import pytest

from colabkit import i18n
from colabkit.choices import describe
from colabkit.dataset.config import CheckConfig
from helpers.notebooks import NOTEBOOKS, form_params, ipynb_path, read_source, to_ipynb_text

SOURCES = sorted(NOTEBOOKS.glob("*.py"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_spanish_ipynb_matches_source_and_translation(src):
    es = ipynb_path(src, "es")
    assert es == NOTEBOOKS / "es" / f"{src.stem}.ipynb"
    assert es.exists() and es.read_text() == to_ipynb_text(src, "es"), "stale: run python tests/helpers/notebooks.py"


def test_every_text_of_every_notebook_is_translated():
    """Fails when a notebook's text (markdown, @title, @markdown, comments) has no Spanish translation, when a
    translation changes a `code span` (a field name, a file, a value), or when the catalog is stale."""
    from notebook_text import problems

    assert problems(SOURCES) == []


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_both_languages_have_the_same_form(src):
    en, es = read_source(src, "en"), read_source(src, "es")
    params_en, params_es = form_params(en), form_params(es)
    assert params_en.pop("language") == '"English"' and params_es.pop("language") == "'Español'"
    assert params_en == params_es
    assert [c.cell_type for c in en.cells] == [c.cell_type for c in es.cells]
    for c, d in zip(en.cells, es.cells):
        if c.cell_type == "code":  # the code itself is one and the same: only its text differs
            assert _code_without_text(c.source) == _code_without_text(d.source)
    first = next(c.source for c in es.cells if c.cell_type == "code")
    assert "language=language" in first


def _code_without_text(source: str) -> str:
    """The cell's syntax tree with every string literal blanked and the language field's value left out."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
        elif isinstance(node, ast.JoinedStr):
            node.values = [v for v in node.values if not isinstance(v, ast.Constant)]
    return ast.dump(tree)


def test_setting_lines_are_the_configs_descriptions():
    for lang, title in (("en", "Step 2: check and clean the images"), ("es", "Paso 2: revisar y limpiar las imágenes")):
        nb = read_source(NOTEBOOKS / "1_dataset.py", lang)
        cell = next(c.source for c in nb.cells if f"# @title {title}" in c.source)
        try:
            i18n.set_language(lang)
            for name in ("min_side", "max_aspect"):
                assert f"# @markdown - `{name}`: {describe(CheckConfig, name)}" in cell.splitlines()
        finally:
            i18n.set_language(None)
    es = json.loads((NOTEBOOKS / "es" / "2_train.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in es["cells"])
    assert "repeticiones" in text and "época" in text and "palabra de activación" in text and "cuaderno" in text


def test_a_settings_line_naming_an_unknown_setting_fails():
    import nbformat
    from notebook_text import localize

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# @settings CheckConfig: min_side, no_such")])
    with pytest.raises(KeyError, match="no_such"):
        localize(nb, "en")
