"""The dataset steps' typed configs: validated once, and the notebook's cells, the CLI and the configs list the
same fields, defaults and choices (as TrainConfig, notebook 2 and `colabkit train` do)."""

import ast
import dataclasses
import typing

import pytest

from colabkit.choices import field_choices
from colabkit.dataset import blip, wd14
from colabkit.dataset.config import BlipModel, CheckConfig, CurateConfig, TagConfig, WD14Model
from colabkit.errors import ColabkitError
from helpers.notebooks import NOTEBOOKS, read_source

# The trigger word the form shows as an example; the config's default is none (the artist must choose).
EXAMPLE_VALUES = {"activation_tag"}


def _cell(title: str):
    nb = read_source(NOTEBOOKS / "1_dataset.py")
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(f"# @title {title}")]
    assert len(found) == 1, title
    return found[0].source


def _params(source: str) -> dict[str, tuple[str, str]]:
    """name -> (default's source text, what follows '# @param') for each form field of one cell."""
    out = {}
    for line in source.splitlines():
        if "# @param" in line and "=" in line:
            name, rest = line.split("=", 1)
            value, spec = rest.split("# @param", 1)
            out[name.strip()] = (value.strip(), spec.strip())
    return out


def _dropdown(spec: str) -> list[str]:
    return ast.literal_eval(spec[: spec.index("]") + 1])


def _config_call(source: str, cls) -> dict[str, str]:
    """keyword -> the variable it passes, for the cell's one call to ``cls``."""
    calls = [n for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == cls.__name__]
    assert len(calls) == 1 and not calls[0].args
    return {k.arg: k.value.id for k in calls[0].keywords}


@pytest.mark.parametrize("title, cls, earlier", [
    ("Step 2: check", CheckConfig, {"project_name"}),
    ("Step 3: tag", TagConfig, {"project_name"}),
    ("Step 4: trigger word", CurateConfig, {"project_name", "activation_tag", "blacklist_tags"}),
])
def test_each_step_cell_is_its_config(title, cls, earlier):
    source = _cell(title)
    params = _params(source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(params) | earlier == set(fields)  # every setting is on the form, nothing else
    assert not set(params) & earlier
    assert _config_call(source, cls) == {name: name for name in fields}  # each field passed, as itself
    for name, (value, _) in params.items():
        if name not in EXAMPLE_VALUES:
            assert ast.literal_eval(value) == fields[name].default, name


def test_settings_from_earlier_cells_are_form_fields_there():
    assert "project_name" in _params(_cell("Step 1:"))
    tag = _params(_cell("Step 3: tag"))
    assert {"activation_tag", "blacklist_tags"} <= set(tag)


def test_dropdowns_are_the_config_choices_with_the_built_in_tiny_models():
    params = _params(_cell("Step 3: tag"))
    assert _dropdown(params["tagging_method"][1]) == list(field_choices(TagConfig, "tagging_method"))
    assert _dropdown(params["tagger_model"][1]) == list(typing.get_args(WD14Model))
    assert _dropdown(params["caption_model"][1]) == list(typing.get_args(BlipModel))
    assert "tiny-wd14" in typing.get_args(WD14Model) and "tiny-blip" in typing.get_args(BlipModel)
    assert "allow-input: true" in params["tagger_model"][1]  # a hub repo or a folder on Drive works too
    # one list each: the loaders' known names come from the same Literal
    assert set(wd14.KNOWN_TAGGERS) | {wd14.TINY_TAGGER_NAME} == set(typing.get_args(WD14Model))
    assert set(blip.KNOWN_CAPTIONERS) | {blip.TINY_BLIP_NAME} == set(typing.get_args(BlipModel))


@pytest.mark.parametrize("command, cls, extra", [
    ("check", CheckConfig, set()), ("tag", TagConfig, set()), ("curate", CurateConfig, {"--top"}),
])
def test_cli_options_are_generated_from_the_configs(command, cls, extra):
    from colabkit.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    options = {o for a in sub._actions for o in a.option_strings} - {"-h", "--help"}
    assert options == {"--" + f.name.replace("_", "-") for f in dataclasses.fields(cls)} | extra
    if cls is TagConfig:
        method = next(a for a in sub._actions if a.dest == "tagging_method")
        assert tuple(method.choices) == field_choices(TagConfig, "tagging_method")
        args = sub.parse_args(["--project-name", "p", "--tagger-model", "me/my-tagger", "--overwrite-captions"])
        assert args.tagger_model == "me/my-tagger" and args.overwrite_captions is True
        with pytest.raises(SystemExit):
            sub.parse_args(["--project-name", "p", "--tagging-method", "anime"])


def test_configs_validate_once_with_every_problem_listed():
    with pytest.raises(ColabkitError) as e:
        TagConfig("bad name!", tagging_method="anime", tag_threshold=1.5, batch_size=0, activation_tag="a, b",
                  caption_min_length=50)
    text = str(e.value)
    for word in ("project name", "tagging_method must be one of 'anime tags', 'photo captions'", "tag_threshold",
                 "batch_size", "comma", "caption_min_length"):
        assert word in text
    with pytest.raises(ColabkitError, match="tagger_model is empty"):
        TagConfig("p", tagger_model=" ")
    assert TagConfig("p", tagger_model="/content/drive/MyDrive/my-tagger").model == "/content/drive/MyDrive/my-tagger"
    assert TagConfig("p", tagging_method="photo captions", caption_model="tiny-blip").model == "tiny-blip"
    with pytest.raises(ColabkitError, match="min_side"):
        CheckConfig("p", min_side=0)
    with pytest.raises(ColabkitError, match="has no '='"):
        CurateConfig("p", replace_tags="monochrome")
    with pytest.raises(ColabkitError, match="Unknown setting"):
        TagConfig.from_dict({"project_name": "p", "threshold": 0.3})
    assert TagConfig.from_dict(TagConfig("p", batch_size=2).to_dict()) == TagConfig("p", batch_size=2)


def test_steps_take_a_config_or_a_name_with_settings_not_both(mixed_project):
    from colabkit.dataset.pipeline import check_dataset

    assert check_dataset(CheckConfig("mixed"), progress=False).accepted
    with pytest.raises(TypeError, match="not both"):
        check_dataset(CheckConfig("mixed"), min_side=3, progress=False)
