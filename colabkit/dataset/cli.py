"""``colabkit check | tag | curate``: the dataset notebook's steps from a terminal.

Options are the notebook's form-field names with dashes. Reports are printed as plain text; user
mistakes surface as ColabkitError, which ``colabkit.cli.main`` prints without a traceback.
"""

from __future__ import annotations


from colabkit.cli import parse_bool
from colabkit.dataset.images import MAX_ASPECT, MIN_SIDE


def _flag(parser, name: str, help: str) -> None:
    # "--overwrite-captions" alone means true; "--overwrite-captions false" is accepted too.
    parser.add_argument("--" + name.replace("_", "-"), dest=name, type=parse_bool, nargs="?", const=True, default=False,
                        metavar="BOOL", help=help)


def _columns(rows: list[dict[str, str]], keys: list[str]) -> str:
    widths = {k: min(48, max([len(k)] + [len(r[k]) for r in rows])) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    for r in rows:
        lines.append("  ".join(r[k].ljust(widths[k]) for k in keys).rstrip())
    return "\n".join(lines)


def format_check(report) -> str:
    parts = [report.summary(), *("warning: " + w for w in report.warnings)]
    rows = report.rows()
    if rows:
        parts.append(_columns(rows, ["file", "status", "size", "mode", "details"]))
        fixes = [f"  {r['file']}: {r['fix']}" for r in rows if r["fix"]]
        if fixes:
            parts += ["What to do:", *fixes]
    return "\n".join(parts)


def format_tag(report) -> str:
    parts = [report.summary(), *("warning: " + w for w in report.warnings)]
    parts += [f"failed: {p.file.name}: {p.reason}. {p.fix}" for p in report.failed]
    if report.written:
        parts.append(
            f"{report.images_per_second:.2f} images/s; {report.overhead_share:.0%} of the time outside the model "
            f"(model load {report.seconds_load:.1f} s)."
        )
    parts += [f"  {name}: {text}" for name, text in report.captions.items()]
    return "\n".join(parts)


def format_curate(report, top: int = 50) -> str:
    parts = [report.summary(), *("warning: " + w for w in report.warnings)]
    if report.frequencies:
        parts.append(f"Top {min(top, len(report.frequencies))} tags:")
        parts += [f"  {n:4d}  {tag}" for tag, n in report.frequencies[:top]]
    return "\n".join(parts)


def cmd_check(args) -> int:
    from colabkit.dataset.pipeline import check_dataset

    report = check_dataset(args.project_name, move_rejected=args.move_rejected, min_side=args.min_side,
                           max_aspect=args.max_aspect, progress=False)
    print(format_check(report))
    return 0 if report.accepted else 1


def cmd_tag(args) -> int:
    from colabkit.dataset.pipeline import tag_dataset

    report = tag_dataset(
        args.project_name,
        tagging_method=args.tagging_method,
        tagger_model=args.tagger_model,
        tag_threshold=args.tag_threshold,
        character_threshold=args.character_threshold,
        caption_model=args.caption_model,
        activation_tag=args.activation_tag,
        blacklist_tags=args.blacklist_tags,
        overwrite_captions=args.overwrite_captions,
        batch_size=args.batch_size,
        include_ratings=args.include_ratings,
        caption_min_length=args.caption_min_length,
        caption_max_length=args.caption_max_length,
        caption_beams=args.caption_beams,
    )
    print(format_tag(report))
    return 1 if report.failed else 0


def cmd_curate(args) -> int:
    from colabkit.dataset.pipeline import curate_captions

    report = curate_captions(args.project_name, activation_tag=args.activation_tag, blacklist_tags=args.blacklist_tags,
                             replace_tags=args.replace_tags, global_tags=args.global_tags, top=args.top)
    print(format_curate(report, args.top))
    return 0


def register_cli(subparsers) -> None:
    """Add the ``check``, ``tag`` and ``curate`` sub-commands (each sets ``func(args) -> exit code``)."""
    from colabkit.dataset.pipeline import DEFAULT_CAPTIONER, DEFAULT_TAGGER, TAGGING_METHODS

    s = subparsers.add_parser("check", help="check and clean the images in Loras/<project>/dataset/")
    s.add_argument("--project-name", dest="project_name", required=True)
    _flag(s, "move_rejected", "move problem files to dataset/_rejected/ (never deletes)")
    s.add_argument("--min-side", dest="min_side", type=int, default=MIN_SIDE, help=f"default {MIN_SIDE}")
    s.add_argument("--max-aspect", dest="max_aspect", type=float, default=MAX_ASPECT, help=f"default {MAX_ASPECT}")
    s.set_defaults(func=cmd_check)

    s = subparsers.add_parser("tag", help="write a caption .txt beside every usable image (WD14 tags or BLIP)")
    s.add_argument("--project-name", dest="project_name", required=True)
    s.add_argument("--tagging-method", dest="tagging_method", choices=TAGGING_METHODS, default=TAGGING_METHODS[0])
    s.add_argument("--tagger-model", dest="tagger_model", default=DEFAULT_TAGGER,
                   help=f"a SmilingWolf WD14 v3 name, a hub repo, a local folder, or tiny-wd14 (default {DEFAULT_TAGGER})")
    s.add_argument("--tag-threshold", dest="tag_threshold", type=float, default=0.35)
    s.add_argument("--character-threshold", dest="character_threshold", type=float, default=0.85,
                   help="above 1 turns character tags off")
    s.add_argument("--caption-model", dest="caption_model", default=DEFAULT_CAPTIONER,
                   help="a BLIP hub repo, a local folder, or tiny-blip")
    s.add_argument("--activation-tag", dest="activation_tag", default="")
    s.add_argument("--blacklist-tags", dest="blacklist_tags", default="")
    _flag(s, "overwrite_captions", "re-tag images that already have a caption")
    _flag(s, "include_ratings", "add the most likely rating tag (general, sensitive, ...)")
    s.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    s.add_argument("--caption-min-length", dest="caption_min_length", type=int, default=5)
    s.add_argument("--caption-max-length", dest="caption_max_length", type=int, default=40)
    s.add_argument("--caption-beams", dest="caption_beams", type=int, default=3)
    s.set_defaults(func=cmd_tag)

    s = subparsers.add_parser("curate", help="trigger word first, blacklist, replace, global tags; tag frequencies")
    s.add_argument("--project-name", dest="project_name", required=True)
    s.add_argument("--activation-tag", dest="activation_tag", default="")
    s.add_argument("--blacklist-tags", dest="blacklist_tags", default="")
    s.add_argument("--replace-tags", dest="replace_tags", default="", help="old=new, old2=new2 (empty new removes)")
    s.add_argument("--global-tags", dest="global_tags", default="")
    s.add_argument("--top", type=int, default=50)
    s.set_defaults(func=cmd_curate)
