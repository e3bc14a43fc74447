"""Typed choices: a setting's allowed values are its ``typing.Literal`` type, read from the type itself.

One list per choice: the config field's annotation is what the notebook's dropdown shows (a test
compares them), what the generated CLI offers as ``choices``, and what the config validates against.
``Literal[...] | str`` is an *open* choice: the listed names are suggestions (a dropdown with
``allow-input``), and any other text (a hub repo, a folder) is accepted and checked where it is used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from colabkit.errors import ColabkitError
from colabkit.i18n import _


def setting(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A config field with its one description, written beside it: ``num_repeats: int = setting(10, N_("..."))``.

    The description (marked with ``N_`` for translation) feeds the notebook's ``@markdown`` help, the CLI's
    ``--help`` and the settings reference; ``describe`` gives it back translated.
    """
    metadata = {**kwargs.pop("metadata", {}), "help": help}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def describe(cls, name: str) -> str:
    """The description of field ``name`` of config class ``cls``, in the language in effect ("" when none)."""
    text = next((f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name), "")
    return _(text) if text else ""


def choices_of(hint: Any) -> tuple[tuple[Any, ...], bool] | None:
    """(allowed values, open) for ``Literal[...]`` (closed) or ``Literal[...] | str`` (open); else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint), False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if len(literals) == 1 and set(args) - set(literals) == {str}:
            return typing.get_args(literals[0]), True
    return None


def field_choices(cls, name: str) -> tuple[Any, ...]:
    """The listed values of one Literal-typed field of the dataclass ``cls``."""
    found = choices_of(typing.get_type_hints(cls)[name])
    if found is None:
        raise TypeError(f"{cls.__name__}.{name} is not a Literal choice")
    return found[0]


def choice_problems(config) -> list[str]:
    """One line per closed-choice field of a dataclass instance whose value is not one of its choices."""
    hints = typing.get_type_hints(type(config))
    lines = []
    for f in dataclasses.fields(config):
        found = choices_of(hints[f.name])
        value = getattr(config, f.name)
        if found is None:
            continue
        allowed, open_ = found
        if open_:
            if not isinstance(value, str) or not value.strip():
                lines.append(_("{name} is empty: pick one of {choices}.").format(
                    name=f.name, choices=", ".join(map(str, allowed))))
        elif value not in allowed:
            lines.append(_("{name} must be one of {choices}; got {value!r}.").format(
                name=f.name, choices=", ".join(map(repr, allowed)), value=value))
    return lines


class StepConfig:
    """What every notebook step's config shares (TrainConfig, the dataset steps', the asset steps'): checked once,
    when made, against its Literal choices and its own rules (``_problems``), every problem in one message; and dict
    in, dict out. Subclasses are dataclasses whose field names are the notebook's form fields."""

    def __post_init__(self) -> None:
        problems = self._project_problems() + choice_problems(self) + list(self._problems())
        if problems:
            raise ColabkitError(_("Please fix these settings:") + "\n- " + "\n- ".join(problems))

    def _problems(self):
        return ()

    def _project_problems(self) -> list[str]:
        """A project name, where the step has one: required ones always, optional ones when given."""
        from colabkit.project import validate_project_name

        field = next((f for f in dataclasses.fields(self) if f.name == "project_name"), None)
        if field is None or (not self.project_name and field.default is not dataclasses.MISSING):
            return []
        try:
            validate_project_name(self.project_name)
        except ColabkitError as e:
            return [str(e)]
        return []

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ColabkitError(_("Unknown setting(s): {unknown}. Known: {known}.").format(
                unknown=", ".join(unknown), known=", ".join(sorted(names))))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)
