"""Command-line options and the settings reference, both built from the step configs' fields.

One option per config field (``num_repeats`` -> ``--num-repeats``): its type, its default, its choices (read from
the ``Literal`` type) and its one description (``colabkit.choices.setting``), translated. Every step's CLI
(``colabkit.cli``, ``colabkit.dataset.cli``) builds its options here, and ``docs/settings.md`` is generated
here from the same fields, so the notebooks, the CLI and the docs say the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import typing
from typing import Any

from colabkit.choices import choices_of, describe
from colabkit.i18n import N_, _

# Every step config: (sub-command, "module:Class", where it is in the notebooks). The settings reference lists
# them in this order; the notebook generator finds a class by its name here.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("check", "colabkit.dataset.config:CheckConfig", N_("Notebook 1, Step 2: check and clean the images")),
    ("tag", "colabkit.dataset.config:TagConfig", N_("Notebook 1, Step 3: tag images")),
    ("curate", "colabkit.dataset.config:CurateConfig", N_("Notebook 1, Step 4: trigger word and curation")),
    ("train", "colabkit.train.config:TrainConfig", N_("Notebook 2: training (also `preflight`)")),
    ("compare", "colabkit.assets.config:CompareConfig", N_("Notebook 3, Step 1: compare epochs and weights")),
    ("generate", "colabkit.assets.config:GenerateConfig", N_("Notebook 3, Step 2: generate pictures")),
    ("cutout", "colabkit.assets.config:CutoutConfig", N_("Notebook 3, Step 3: cut out sprites and pack an atlas")),
)


def config_class(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def config_classes() -> dict[str, type]:
    """Class name -> class, for every step config."""
    classes = [config_class(path) for _cmd, path, _title in STEPS]
    return {cls.__name__: cls for cls in classes}


def parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on", "sí", "si"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(_("expected true or false, got {text!r}").format(text=text))


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def shown_default(value: Any) -> str:
    if value == "":
        return _("empty")
    if isinstance(value, str) and "\n" in value:
        return repr(value)
    return str(value)


def field_help(cls, f: dataclasses.Field, hint: Any) -> str:
    """What ``--help`` says of one field: its description, its choices, its default."""
    parts = [describe(cls, f.name)]
    found = choices_of(hint)
    if found is not None:
        values, open_ = found
        listed = ", ".join(map(str, values))
        parts.append((_("Suggestions: {choices}, or another name or folder.") if open_
                      else _("Choices: {choices}.")).format(choices=listed))
    if f.default is dataclasses.MISSING:
        parts.append(_("Required."))
    else:
        parts.append(_("Default: {default}.").format(default=shown_default(f.default)))
    return " ".join(p for p in parts if p)


def add_config_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of the config dataclass ``cls`` (TrainConfig, TagConfig, ...)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        opt = option_name(f.name)
        text = field_help(cls, f, kind).replace("%", "%%")  # argparse formats help with %
        found = choices_of(kind)
        if f.default is dataclasses.MISSING:
            parser.add_argument(opt, dest=f.name, required=True, type=str, help=text)
        elif kind is bool:
            parser.add_argument(opt, dest=f.name, type=parse_bool, nargs="?", const=True, default=f.default,
                                metavar="BOOL", help=text)
        elif found is not None:
            values, open_ = found
            if open_:
                parser.add_argument(opt, dest=f.name, type=str, default=f.default, metavar=f.name.upper(), help=text)
            else:
                parser.add_argument(opt, dest=f.name, type=type(values[0]), choices=values, default=f.default,
                                    metavar=f.name.upper(), help=text)
        else:
            parser.add_argument(opt, dest=f.name, type=kind, default=f.default, help=text)


class _Formatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        return super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)


def localize_parser(parser: argparse.ArgumentParser) -> None:
    """argparse's own words (usage, options, -h) in the language in effect, in ``parser`` and its sub-commands."""
    parser.formatter_class = _Formatter
    parser._optionals.title = _("options")
    parser._positionals.title = _("positional arguments")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            action.help = _("show this help message and exit")
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                localize_parser(sub)


def config_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


# -- the settings reference (docs/settings.md, docs/es/settings.md) ------------------------------------------

def _md_value(value: Any) -> str:
    return "`" + (repr(value) if value == "" else str(value)) + "`"


def settings_reference() -> str:
    """Every step's settings with their description, default and choices, in the language in effect (markdown)."""
    lines = [
        "# " + _("colabkit settings"),
        "",
        _("Generated from the step configs by `python -m colabkit.cli_options docs`; a test keeps it current. "
          "Each setting is a form field of a notebook and, with dashes, an option of `python -m colabkit "
          "<command>` (`num_repeats` -> `--num-repeats`)."),
    ]
    for cmd, path, title in STEPS:
        cls = config_class(path)
        hints = typing.get_type_hints(cls)
        lines += ["", f"## `{cmd}`: {_(title)}", ""]
        for f in dataclasses.fields(cls):
            facts = [f"`{option_name(f.name)}`"]
            facts.append(_("required") if f.default is dataclasses.MISSING
                         else _("default {value}").format(value=_md_value(f.default)))
            found = choices_of(hints[f.name])
            if found is not None:
                listed = ", ".join(f"`{v}`" for v in found[0])
                facts.append((_("suggestions {choices}, or another") if found[1]
                              else _("one of {choices}")).format(choices=listed))
            lines.append(f"- **`{f.name}`** ({'; '.join(facts)}): {describe(cls, f.name)}")
    return "\n".join(lines) + "\n"


def write_reference(docs) -> list:
    """docs/settings.md in English and docs/<lang>/settings.md in each translated language."""
    from pathlib import Path

    from colabkit import i18n
    from colabkit.i18n import LANGUAGES, set_language

    docs = Path(docs)
    before = i18n._language  # None: the environment's
    written = []
    try:
        for lang in LANGUAGES:
            set_language(lang)
            path = docs / "settings.md" if lang == LANGUAGES[0] else docs / lang / "settings.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(settings_reference(), encoding="utf-8")
            written.append(path)
    finally:
        set_language(before)
    return written


if __name__ == "__main__":  # python -m colabkit.cli_options docs
    import sys

    for written_path in write_reference(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print(written_path)
