"""`python -m colabkit <step>`: one sub-command per step of the flow.

Options carry the notebooks' form-field names with dashes (`num_repeats` -> `--num-repeats`), generated from
each step's config by ``colabkit.cli_options`` (with each setting's one description), so they never drift apart.
"""

from __future__ import annotations

import argparse
import sys

from colabkit.cli_options import add_config_options, config_from_args, localize_parser, parse_bool
from colabkit.errors import ColabkitError
from colabkit.i18n import _

__all__ = ["add_config_options", "build_parser", "config_from_args", "main", "parse_bool"]


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

    run_demo(args.project_name, steps=args.steps, start_over=args.start_over)
    return 0


def cmd_compare(args) -> int:
    from colabkit.assets.compare import compare_epochs
    from colabkit.assets.config import CompareConfig

    compare_epochs(config_from_args(CompareConfig, args), device=args.device)
    return 0


def cmd_generate(args) -> int:
    from colabkit.assets.config import GenerateConfig
    from colabkit.assets.generate import generate_images

    generate_images(config_from_args(GenerateConfig, args), device=args.device)
    return 0


def cmd_cutout(args) -> int:
    from colabkit.assets.config import CutoutConfig
    from colabkit.assets.cutout import cut_out_images

    return 0 if cut_out_images(config_from_args(CutoutConfig, args)) else 1


def register_assets_cli(sub) -> None:
    from colabkit.assets.config import CompareConfig, CutoutConfig, GenerateConfig

    for name, cls, func, text in (
            ("compare", CompareConfig, cmd_compare, _("the epoch grid: each LoRA file of output/ at a few weights")),
            ("generate", GenerateConfig, cmd_generate,
             _("pictures with the LoRA into output/generated/ (A1111 PNG info)")),
            ("cutout", CutoutConfig, cmd_cutout, _("cut pictures on a plain background out into sprites and an atlas"))):
        s = sub.add_parser(name, help=text, description=text)
        add_config_options(s, cls)
        if name != "cutout":
            s.add_argument("--device", default=None, help=_device_help())
        s.set_defaults(func=func)


def _device_help() -> str:  # a function: translated when the parser is built, in the language then in effect
    return _("Force a device, e.g. cpu. Default: the GPU if there is one.")


def build_parser() -> argparse.ArgumentParser:
    from colabkit import __version__
    from colabkit.train.config import TrainConfig

    p = argparse.ArgumentParser(prog="colabkit", description=_("Train an SDXL LoRA on your own drawings."))
    p.add_argument("--version", action="version", version=f"colabkit {__version__}",
                   help=_("Show colabkit's version and exit."))
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    s = add("init", _("create Loras/<project>/dataset|output on Drive (or the local stand-in)"))
    s.add_argument("--project-name", dest="project_name", required=True,
                   help=_("Your project's folder name under MyDrive/Loras/ (letters, digits, - and _). Required."))
    s.set_defaults(func=cmd_init)

    s = add("doctor", _("check Python, packages, GPU, RAM, disk and Drive"))
    s.add_argument("--need-gpu", dest="need_gpu", action="store_true",
                   help=_("Report a missing GPU as a problem (training needs one)."))
    s.set_defaults(func=cmd_doctor)

    from colabkit.dataset.cli import register_cli

    register_cli(sub)

    s = add("preflight", _("check a training setup in seconds, before any GPU time"))
    add_config_options(s, TrainConfig)
    s.add_argument("--device", default=None,
                   help=_("Check for a device, e.g. cpu. Default: the GPU if there is one."))
    s.set_defaults(func=cmd_preflight)

    s = add("train", _("train (or resume) the project's LoRA"))
    add_config_options(s, TrainConfig)
    s.add_argument("--device", default=None, help=_device_help())
    s.set_defaults(func=cmd_train)

    s = add("demo", _("the whole flow on a local folder with the built-in tiny models (no GPU)"))
    s.add_argument("--project-name", dest="project_name", default="demo",
                   help=_("The demo project's name. Default: {default}.").format(default="demo"))
    s.add_argument("--steps", type=int, default=40,
                   help=_("Training steps; more than a finished demo run trains it further. Default: {default}.")
                   .format(default=40))
    s.add_argument("--start-over", dest="start_over", type=parse_bool, nargs="?", const=True, default=False,
                   metavar="BOOL", help=_("Train again from scratch (the earlier run's files are kept). "
                                          "Default: {default}.").format(default=False))
    s.set_defaults(func=cmd_demo)

    register_assets_cli(sub)

    s = add("bundle", _("build the download for Colab: the wheel, the notebooks in both languages and a how-to, "
                        "in one zip"))
    s.add_argument("--output-folder", dest="output_folder", default=".",
                   help=_("Where to write colabkit-<version>-colab.zip. Default: {default}.").format(default="."))
    s.set_defaults(func=cmd_bundle)
    localize_parser(p)
    return p


def cmd_bundle(args) -> int:
    from colabkit.bundle import build_bundle

    print(build_bundle(args.output_folder))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ColabkitError as e:
        print(f"colabkit: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("colabkit: " + _("interrupted"), file=sys.stderr)
        return 130
