"""Every CLI option explains itself (its setting's one description, default and choices), and the settings
reference in docs/ is what the step configs generate."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from colabkit import i18n
from colabkit.choices import describe
from colabkit.cli import build_parser
from colabkit.cli_options import STEPS, config_class, config_classes, settings_reference

ROOT = Path(__file__).resolve().parents[2]


def _subcommands(parser):
    return parser._subparsers._group_actions[0].choices


@pytest.fixture(params=["en", "es"])
def lang(request):
    i18n.set_language(request.param)
    yield request.param
    i18n.set_language(None)


def test_every_field_of_every_step_config_has_a_description():
    classes = config_classes()
    assert set(classes) == {"CheckConfig", "TagConfig", "CurateConfig", "TrainConfig", "CompareConfig",
                            "GenerateConfig", "CutoutConfig"}
    missing = [f"{name}.{f.name}" for name, cls in classes.items() for f in dataclasses.fields(cls)
               if len(f.metadata.get("help", "")) < 10]
    assert missing == [], "write each field as `name: T = setting(default, N_(\"What it does.\"))`"


def test_every_option_of_every_command_has_a_description(lang):
    parser = build_parser()
    assert {"check", "tag", "curate", "preflight", "train", "compare", "generate", "cutout", "demo", "init",
            "doctor", "bundle"} <= set(_subcommands(parser))
    undescribed = []
    for cmd, sub in _subcommands(parser).items():
        assert sub.description, cmd
        for action in sub._actions:
            if action.dest == "help":
                continue
            text = action.help or ""
            # A description is more than the default: at least a few words besides "Default: ...".
            words = re.sub(r"(Default|Predeterminado): .*$", "", text).split()
            if len(words) < 3:
                undescribed.append(f"{cmd} {action.option_strings[0]}: {text!r}")
    assert undescribed == []


def test_config_options_show_description_default_and_choices(lang):
    from colabkit.train.config import TrainConfig

    train = _subcommands(build_parser())["train"]
    shown = re.sub(r"\s+", "", train.format_help())  # argparse wraps lines, also after hyphens
    for f in dataclasses.fields(TrainConfig):
        assert re.sub(r"\s+", "", describe(TrainConfig, f.name)) in shown, f.name
    helps = {a.dest: a.help for a in train._actions}
    default, choices = {"en": ("Default", "Choices"), "es": ("Predeterminado", "Opciones")}[lang]
    assert helps["num_repeats"].endswith(f"{default}: 10.")
    assert f"{choices}: AdamW8bit, Prodigy, AdamW, Adafactor. {default}: AdamW8bit." in helps["optimizer"]
    assert helps["project_name"].endswith({"en": "Required.", "es": "Obligatorio."}[lang])
    tag = {a.dest: a.help for a in _subcommands(build_parser())["tag"]._actions}
    assert "tiny-wd14" in tag["tagger_model"] and {"en": "or another name or folder",
                                                   "es": "u otro nombre o carpeta"}[lang] in tag["tagger_model"]


def test_help_from_the_command_line_in_spanish():
    env = {"COLABKIT_LANG": "es", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "colabkit", "cutout", "--help"], env=env, capture_output=True,
                         text=True, check=True).stdout
    out = " ".join(out.split())
    assert "Predeterminado: 24." in out and "recortes" in out.lower() or "sprites" in out


def test_the_dataset_cli_does_not_import_the_main_cli():
    code = "import sys, colabkit.dataset.cli; print('colabkit.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("lang_, path", [("en", "docs/settings.md"), ("es", "docs/es/settings.md")])
def test_settings_reference_is_current(lang_, path):
    try:
        i18n.set_language(lang_)
        expected = settings_reference()
    finally:
        i18n.set_language(None)
    assert (ROOT / path).read_text(encoding="utf-8") == expected, "run: python -m colabkit.cli_options docs"
    for cmd, cls_path, _title in STEPS:
        for f in dataclasses.fields(config_class(cls_path)):
            assert f"- **`{f.name}`** (`--{f.name.replace('_', '-')}`" in expected
