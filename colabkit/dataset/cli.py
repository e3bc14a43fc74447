"""``colabkit check | tag | curate``: the dataset notebook's steps from a terminal.

Options are the notebook's form-field names with dashes, generated from each step's config
(``colabkit.dataset.config``) by ``colabkit.cli_options``, as every step's are.
Reports are printed as plain text; user mistakes surface as ColabkitError, which
``colabkit.cli.main`` prints without a traceback.
"""

from __future__ import annotations

from colabkit.cli_options import add_config_options, config_from_args
from colabkit.i18n import N_, _


# The report table's column headings, translated where shown.
HEADINGS = {"file": N_("file"), "status": N_("status"), "size": N_("size"), "mode": N_("mode"),
            "details": N_("details")}


def _columns(rows: list[dict[str, str]], keys: list[str], headings: dict[str, str] | None = None) -> str:
    titles = {k: _((headings or {}).get(k, k)) for k in keys}
    widths = {k: min(48, max([len(titles[k])] + [len(r[k]) for r in rows])) for k in keys}
    lines = ["  ".join(titles[k].ljust(widths[k]) for k in keys)]
    for r in rows:
        lines.append("  ".join(r[k].ljust(widths[k]) for k in keys).rstrip())
    return "\n".join(lines)


def format_check(report) -> str:
    parts = [report.summary(), *(_("warning: {text}").format(text=w) for w in report.warnings)]
    rows = [{**r, "status": _(r["status"])} for r in report.rows()]  # the status is a key in the data
    if rows:
        parts.append(_columns(rows, ["file", "status", "size", "mode", "details"], HEADINGS))
        fixes = [f"  {r['file']}: {r['fix']}" for r in rows if r["fix"]]
        if fixes:
            parts += [_("What to do:"), *fixes]
    return "\n".join(parts)


def format_tag(report) -> str:
    parts = [report.summary(), *(_("warning: {text}").format(text=w) for w in report.warnings)]
    parts += [_("failed: {file}: {reason}. {fix}").format(file=p.file.name, reason=p.reason, fix=p.fix)
              for p in report.failed]
    if report.written:
        parts.append(_("{speed:.2f} images/s; {share:.0%} of the time outside the model (model load {load:.1f} s).")
                     .format(speed=report.images_per_second, share=report.overhead_share, load=report.seconds_load))
    parts += [f"  {name}: {text}" for name, text in report.captions.items()]
    return "\n".join(parts)


def format_curate(report, top: int = 50) -> str:
    parts = [report.summary(), *(_("warning: {text}").format(text=w) for w in report.warnings)]
    if report.frequencies:
        parts.append(_("Top {n} tags:").format(n=min(top, len(report.frequencies))))
        parts += [f"  {n:4d}  {tag}" for tag, n in report.frequencies[:top]]
    return "\n".join(parts)


def cmd_check(args) -> int:
    from colabkit.dataset.config import CheckConfig
    from colabkit.dataset.pipeline import check_dataset

    report = check_dataset(config_from_args(CheckConfig, args), progress=False)
    print(format_check(report))
    return 0 if report.accepted else 1


def cmd_tag(args) -> int:
    from colabkit.dataset.config import TagConfig
    from colabkit.dataset.pipeline import tag_dataset

    report = tag_dataset(config_from_args(TagConfig, args))
    print(format_tag(report))
    return 1 if report.failed else 0


def cmd_curate(args) -> int:
    from colabkit.dataset.config import CurateConfig
    from colabkit.dataset.pipeline import curate_captions

    report = curate_captions(config_from_args(CurateConfig, args), top=args.top)
    print(format_curate(report, args.top))
    return 0


def register_cli(subparsers) -> None:
    """Add the ``check``, ``tag`` and ``curate`` sub-commands (each sets ``func(args) -> exit code``); their
    options are generated from the step's config, as ``colabkit train``'s are from TrainConfig."""
    from colabkit.dataset.config import CheckConfig, CurateConfig, TagConfig

    text = _("check and clean the images in Loras/<project>/dataset/")
    s = subparsers.add_parser("check", help=text, description=text)
    add_config_options(s, CheckConfig)
    s.set_defaults(func=cmd_check)

    text = _("write a caption .txt beside every usable image (WD14 tags or BLIP)")
    s = subparsers.add_parser("tag", help=text, description=text)
    add_config_options(s, TagConfig)
    s.set_defaults(func=cmd_tag)

    text = _("trigger word first, blacklist, replace, global tags; tag frequencies")
    s = subparsers.add_parser("curate", help=text, description=text)
    add_config_options(s, CurateConfig)
    s.add_argument("--top", type=int, default=50,
                   help=_("How many of the most frequent tags to list. Default: {default}.").format(default=50))
    s.set_defaults(func=cmd_curate)
