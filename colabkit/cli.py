"""`python -m colabkit <step>`: one sub-command per step of the flow.

Options carry the notebooks' form-field names with dashes (`num_repeats` -> `--num-repeats`);
the training options are generated from TrainConfig, so the two can never drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from colabkit.errors import ColabkitError


def parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_options(parser: argparse.ArgumentParser, cls) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        opt = "--" + f.name.replace("_", "-")
        allowed = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
        if allowed:  # a choice: its values come from the config's Literal, parsed as their own type
            parser.add_argument(opt, dest=f.name, type=type(allowed[0]), choices=allowed, default=f.default,
                                help=f"default {f.default!r}")
        elif f.default is dataclasses.MISSING:
            parser.add_argument(opt, dest=f.name, required=True, type=str)
        elif kind is bool:
            parser.add_argument(opt, dest=f.name, type=parse_bool, nargs="?", const=True, default=f.default,
                                metavar="BOOL", help=f"default {f.default}")
        else:
            parser.add_argument(opt, dest=f.name, type=kind, default=f.default, help=f"default {f.default!r}")


def config_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def cmd_init(args) -> int:
    from colabkit.colab import open_or_create_project

    open_or_create_project(args.project_name)
    return 0


def cmd_doctor(args) -> int:
    from colabkit import doctor

    report = doctor.check(need_gpu=args.need_gpu)
    print(report)
    return 0 if report.ok else 1


def cmd_preflight(args) -> int:
    from colabkit.train.config import TrainConfig
    from colabkit.train.run import preflight

    return 0 if preflight(config_from_args(TrainConfig, args), device=args.device).ok else 1


def cmd_train(args) -> int:
    from colabkit.train.config import TrainConfig
    from colabkit.train.run import train_lora

    result = train_lora(config_from_args(TrainConfig, args), device=args.device)
    return 0 if result.status in ("finished", "already finished", "stopped") else 1


def cmd_demo(args) -> int:
    from colabkit.demo import run_demo

    run_demo(args.project_name, steps=args.steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from colabkit import __version__
    from colabkit.train.config import TrainConfig

    p = argparse.ArgumentParser(prog="colabkit", description="Train an SDXL LoRA on your own drawings.")
    p.add_argument("--version", action="version", version=f"colabkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="create Loras/<project>/dataset|output on Drive (or the local stand-in)")
    s.add_argument("--project-name", dest="project_name", required=True)
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("doctor", help="check Python, packages, GPU, RAM, disk and Drive")
    s.add_argument("--need-gpu", dest="need_gpu", action="store_true")
    s.set_defaults(func=cmd_doctor)

    try:
        from colabkit.dataset.cli import register_cli
    except ImportError:
        register_cli = None
    if register_cli is not None:
        register_cli(sub)

    s = sub.add_parser("preflight", help="check a training setup in seconds, before any GPU time")
    add_config_options(s, TrainConfig)
    s.add_argument("--device", default=None, help="check for a device, e.g. cpu (default: the GPU if there is one)")
    s.set_defaults(func=cmd_preflight)

    s = sub.add_parser("train", help="train (or resume) the project's LoRA")
    add_config_options(s, TrainConfig)
    s.add_argument("--device", default=None, help="force a device, e.g. cpu (default: the GPU if there is one)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("demo", help="the whole flow on a local folder with the built-in tiny models (no GPU)")
    s.add_argument("--project-name", dest="project_name", default="demo")
    s.add_argument("--steps", type=int, default=40)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ColabkitError as e:
        print(f"colabkit: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("colabkit: interrupted", file=sys.stderr)
        return 130
