"""The dataset steps behind ``notebooks/1_dataset`` and ``colabkit check|tag|curate``.

Each step takes its typed config (``colabkit.dataset.config``: the notebook's form fields; a project
name plus those fields as keywords is accepted too), works on ``Loras/<project>/dataset/`` and returns
a report (data, never printed here; see ``colabkit.display_dataset`` for tables and galleries).
Originals are never modified; captions are written atomically beside them; the only other change is
moving problem files to ``dataset/_rejected/`` when explicitly asked. What carries from one step to
the next lives in the project's files, never in this module: the check's limits
(``training/dataset_check.json``) and the tagger's vocabulary (``training/tagger_vocabulary.json``),
so a Colab restart between steps loses nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colabkit import files
from colabkit.choices import field_choices
from colabkit.dataset import items
from colabkit.dataset.captions import (
    CaptionEdits,
    caption_path,
    count_tags,
    check_trigger,
    join_tags,
    split_tags,
    trigger_warnings,
)
from colabkit.dataset.config import CheckConfig, CurateConfig, TagConfig
from colabkit.dataset.images import ImageInfo, Problem
from colabkit.dataset.items import CHECK_SETTINGS, read_caption  # noqa: F401  (read_caption: public here too)
from colabkit.dataset.loader import batched, prefetch
from colabkit.errors import ColabkitError
from colabkit.i18n import N_, _, ngettext
from colabkit.project import Project, open_project

TAGGING_METHODS = field_choices(TagConfig, "tagging_method")
DEFAULT_TAGGER = TagConfig.tagger_model
DEFAULT_CAPTIONER = TagConfig.caption_model
VOCABULARY = "tagger_vocabulary.json"  # in training/: the tags the last WD14 tagger can emit
MIN_GOOD_COUNT = 10  # fewer usable images than this rarely gives a style LoRA that generalises
# A check row's status: kept in English in the data (the table's colours key on it), translated where shown.
STATUSES = (N_("ok"), N_("warning"), N_("rejected"), N_("moved to _rejected/"))


# --- reports -----------------------------------------------------------------------------------


@dataclass
class DatasetReport:
    """What step 1 found: usable images, and every problem with the file's name and the fix."""

    project: str
    folder: Path
    accepted: list[ImageInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    moved: dict[Path, Path] = field(default_factory=dict)  # original -> where it is now (in _rejected/)
    warnings: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[Problem]:
        return [p for p in self.problems if p.rejected]

    def rows(self) -> list[dict[str, str]]:
        """One row per file for a table: file, status, size, mode, details, fix."""
        notes_for = {p.file: p for p in self.problems if not p.rejected}
        rows = []
        for info in self.accepted:
            warn = notes_for.get(info.file)
            details = list(info.notes) + ([warn.reason] if warn else [])
            rows.append(
                dict(
                    file=items.shown_name(info.file),
                    status="warning" if warn else "ok",
                    size=f"{info.width}x{info.height}",
                    mode=f"{info.mode} {info.format}",
                    details="; ".join(details),
                    fix=warn.fix if warn else "",
                )
            )
        for p in self.problems:
            if p.rejected or p.file not in {i.file for i in self.accepted}:
                moved = self.moved.get(p.file)
                rows.append(
                    dict(
                        file=items.shown_name(p.file) + ("/" if p.kind == "folder" else ""),
                        status=("moved to _rejected/" if moved else "rejected") if p.rejected else "warning",
                        size="",
                        mode="",
                        details=p.reason,
                        fix=p.fix,
                    )
                )
        return rows

    def summary(self) -> str:
        n_rej = len(self.rejected)
        text = ngettext("{n} image ready", "{n} images ready", len(self.accepted)).format(n=len(self.accepted))
        text += ", " + ngettext("{n} rejected", "{n} rejected", n_rej).format(n=n_rej)
        n_warn = len(self.problems) - n_rej
        if n_warn:
            text += ", " + ngettext("{n} warning", "{n} warnings", n_warn).format(n=n_warn)
        if self.moved:
            text += "; " + ngettext("{n} file moved to {folder}", "{n} files moved to {folder}",
                                    len(self.moved)).format(n=len(self.moved), folder=f"{self.folder.name}/_rejected/")
        return text + "." + self.folders_line()

    def folders_line(self) -> str:
        """The training folders and their usable images, when the dataset has <repeats>_<name>/ sub-folders."""
        counts: dict[str, int] = {}
        for info in self.accepted:
            where = items.folder_of(info.file, self.folder)
            counts[where.name] = counts.get(where.name, 0) + 1
        if set(counts) <= {""}:
            return ""
        parts = [_("{folder}: {images} images, {repeats} repeats each").format(
            folder=name + "/", images=n, repeats=items.folder_repeats(name)) if name else
            _("dataset/: {images} images, num_repeats each").format(images=n) for name, n in sorted(counts.items())]
        return " " + _("Folders: {parts}.").format(parts="; ".join(parts))


@dataclass
class TagReport:
    project: str
    method: str
    model: str
    device: str = ""
    written: list[str] = field(default_factory=list)  # new caption files
    kept: list[str] = field(default_factory=list)  # existing captions left as they were
    updated: list[str] = field(default_factory=list)  # existing captions given the trigger / blacklist
    skipped: list[Problem] = field(default_factory=list)  # rejected files: not tagged
    failed: list[Problem] = field(default_factory=list)  # accepted files that failed while tagging
    warnings: list[str] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)  # image name -> caption, for every tagged image
    seconds_load: float = 0.0  # loading the model
    seconds_total: float = 0.0  # streaming images through it (decode, preprocess, model, write)
    seconds_model: float = 0.0  # inside the model call only

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds_total if self.seconds_total else 0.0

    @property
    def overhead_share(self) -> float:
        """Share of the streaming time spent outside the model (loading, waiting, writing)."""
        return 1.0 - self.seconds_model / self.seconds_total if self.seconds_total else 0.0

    def summary(self) -> str:
        parts = [ngettext("{n} caption written", "{n} captions written", len(self.written)).format(n=len(self.written))]
        if self.kept or self.updated:
            parts.append(_("{n} existing kept ({updated} given the trigger/blacklist)").format(
                n=len(self.kept) + len(self.updated), updated=len(self.updated)))
        if self.skipped:
            parts.append(ngettext("{n} rejected file skipped", "{n} rejected files skipped",
                                  len(self.skipped)).format(n=len(self.skipped)))
        if self.failed:
            parts.append(ngettext("{n} failed", "{n} failed", len(self.failed)).format(n=len(self.failed)))
        text = ", ".join(parts) + f" ({self.method}, {self.model}"
        if self.device:
            text += " " + _("on {device}").format(device=self.device)
        if self.written and self.seconds_total:
            text += ", " + _("{speed:.1f} images/s").format(speed=self.images_per_second)
        return text + ")."


@dataclass
class CurateReport:
    project: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # usable images with no caption file yet
    frequencies: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = _("{edited} captions edited, {fine} already fine").format(edited=len(self.changed),
                                                                         fine=len(self.unchanged))
        if self.missing:
            text += ", " + ngettext("{n} image without a caption", "{n} images without a caption",
                                    len(self.missing)).format(n=len(self.missing))
        return text + "; " + ngettext("{n} distinct tag.", "{n} distinct tags.",
                                      len(self.frequencies)).format(n=len(self.frequencies))


# --- configs and the state steps share (in the project's files) -------------------------------------


def _config(cls, config, fields: dict[str, Any]):
    """The step's config: given as one, or built (and validated) from a project name and keywords."""
    if isinstance(config, cls):
        if fields:
            raise TypeError(f"pass either a {cls.__name__} or a project name with settings, not both")
        return config
    return cls(project_name=config, **fields)


def save_vocabulary(project: Project, model: str, tags: list[str]) -> None:
    """Keep the tagger's vocabulary with the project (atomically), for the trigger-word check of later steps."""
    path = project.training / VOCABULARY
    if load_vocabulary(project) != tags:  # unchanged on a re-run: no Drive write
        files.write_json(path, {"model": model, "tags": tags})


def load_vocabulary(project: Project) -> list[str]:
    """The tags the project's last WD14 tagger can emit ([] when no WD14 tagger ran for it)."""
    try:
        saved = json.loads((project.training / VOCABULARY).read_text(encoding="utf-8"))
        tags = saved["tags"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _empty_hint(project: Project) -> str:
    return _("{folder} has no images. Upload 10-100 drawings (PNG or JPEG) into {dataset} on your Drive, then run "
             "this step again.").format(folder=project.dataset, dataset=f"Loras/{project.name}/dataset/")


# --- step 1: check -----------------------------------------------------------------------------


def check_dataset(config: CheckConfig | str, *, progress: bool = True, **fields) -> DatasetReport:
    """Read every file in ``dataset/`` and say which images are usable and what is wrong with the rest.

    Nothing is changed unless ``move_rejected``: then rejected files (and their captions) are moved
    to ``dataset/_rejected/``; nothing is ever deleted. The limits are saved with the project: tagging,
    curation and training use exactly what this step accepted.
    """
    cfg = _config(CheckConfig, config, fields)
    project = open_project(cfg.project_name)
    items.save_limits(project, cfg.min_side, cfg.max_aspect)
    scan = items.scan(project, cfg.min_side, cfg.max_aspect, progress=progress)
    report = DatasetReport(project.name, project.dataset, scan.accepted, scan.problems)
    if cfg.move_rejected:
        kept_stems = {i.file.stem.lower() for i in scan.accepted}
        for p in report.rejected:
            if not p.file.is_file():
                continue
            dst = files.move_into(p.file, project.rejected)
            cap = caption_path(p.file)
            # A caption goes with its image, unless a usable image with the same name owns it.
            if cap.is_file() and p.file.stem.lower() not in kept_stems:
                files.move_into(cap, project.rejected, name=dst.with_suffix(cap.suffix).name)
            report.moved[p.file] = dst
    if not scan.accepted and not scan.problems:
        report.warnings.append(_empty_hint(project))
    elif len(scan.accepted) < MIN_GOOD_COUNT:
        report.warnings.append(ngettext(
            "Only {n} usable image. 10-100 varied drawings work best; add more if you can.",
            "Only {n} usable images. 10-100 varied drawings work best; add more if you can.",
            len(scan.accepted)).format(n=len(scan.accepted)))
    return report


# --- step 2: tag or caption --------------------------------------------------------------------


def _write_caption(image: Path, text: str) -> None:
    files.write_text(caption_path(image), text)


def _edit_caption(image: Path, old: str, edits: CaptionEdits) -> tuple[str, bool]:
    """Apply the edits to an existing caption; rewrite the file only when that changes it."""
    new = edits.apply_text(old)
    if new != old:
        _write_caption(image, new)
    return new, new != old


def tag_dataset(config: TagConfig | str, *, workers: int | None = None, progress: bool = True, **fields) -> TagReport:
    """Write ``image.txt`` beside every usable image that has none (all of them with ``overwrite_captions``).

    ``anime tags``: a WD14 tagger; ``photo captions``: BLIP. New captions start with ``activation_tag``
    and skip ``blacklist_tags``; existing captions are kept, only given the trigger/blacklist edits.
    A WD14 tagger's vocabulary is saved with the project for the curation step's trigger-word check.
    """
    cfg = _config(TagConfig, config, fields)
    project = open_project(cfg.project_name)
    edits = cfg.edits
    anime = cfg.anime
    report = TagReport(project.name, cfg.tagging_method, cfg.model)

    scan = items.scan(project)
    report.skipped = [p for p in scan.problems if p.rejected]
    if not scan.accepted:
        if scan.problems:
            raise ColabkitError(_(
                "None of the {n} files in {folder} can be used. Run the check step to see each file's problem and "
                "how to fix it.").format(n=len(scan.problems), folder=project.dataset))
        raise ColabkitError(_empty_hint(project))

    todo: list[Path] = []
    for info in scan.accepted:
        old = None if cfg.overwrite_captions else read_caption(info.file)
        if old is None:
            todo.append(info.file)
            continue
        new, changed = _edit_caption(info.file, old, edits)
        (report.updated if changed else report.kept).append(items.shown_name(info.file))
        report.captions[items.shown_name(info.file)] = new

    vocabulary: list[str] = []
    if todo:
        t0 = time.perf_counter()
        if anime:
            tagger = _load_tagger(cfg.tagger_model)
            vocabulary = tagger.vocabulary()
            report.device = tagger.providers[0]
            load_fn = tagger.load

            def run(batch):
                import numpy as np

                stacked = np.stack(batch)
                t = time.perf_counter()
                probs = tagger.predict(stacked)
                report.seconds_model += time.perf_counter() - t  # the ONNX session alone
                return [
                    [t.tag for t in tagger.select(p, cfg.tag_threshold, cfg.character_threshold, cfg.include_ratings)]
                    for p in probs
                ]

        else:
            captioner = _load_captioner(cfg.caption_model)
            report.device = captioner.device
            load_fn = captioner.load

            def run(batch):
                import torch

                stacked = torch.stack(batch)
                t = time.perf_counter()
                texts = captioner.caption(stacked, num_beams=cfg.caption_beams, min_length=cfg.caption_min_length,
                                          max_length=cfg.caption_max_length)
                report.seconds_model += time.perf_counter() - t
                return [[t] if t else [] for t in texts]

        report.seconds_load = time.perf_counter() - t0
        if anime:  # saved before the long part: a disconnect while tagging still leaves it for curation
            save_vocabulary(project, cfg.tagger_model, vocabulary)
        _stream(todo, load_fn, run, edits, cfg.batch_size, workers, progress, report)

    report.warnings += trigger_warnings(edits.trigger, vocabulary or load_vocabulary(project))
    if report.device == "CPUExecutionProvider" and Path("/dev/nvidia0").exists():
        report.warnings.append(_(
            "A GPU is present but this onnxruntime has no CUDA support, so tagging ran on the CPU. "
            "`pip install onnxruntime-gpu` (instead of onnxruntime) lets it use the GPU."))
    empty = [name for name in report.written if not split_tags(report.captions[name])[1 if edits.trigger else 0 :]]
    if empty:
        report.warnings.append(ngettext(
            "{n} image got no tags above tag_threshold ({names}); lower tag_threshold or caption it by hand.",
            "{n} images got no tags above tag_threshold ({names}); lower tag_threshold or caption them by hand.",
            len(empty)).format(n=len(empty), names=", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")))
    return report


def _load_tagger(name: str):
    from colabkit.dataset.wd14 import load_tagger

    return load_tagger(name)


def _load_captioner(name: str):
    from colabkit.dataset.blip import load_captioner

    return load_captioner(name)


def _stream(todo, load_fn, run, edits: CaptionEdits, batch_size, workers, progress, report: TagReport) -> None:
    """Decode/preprocess on background threads while ``run`` works on the previous batch; write captions.

    ``run(values) -> tag lists`` adds its own model time to ``report.seconds_model``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=_("Tagging") if report.method == "anime tags" else _("Captioning"),
               unit=_("img"), disable=not progress)
    start = time.perf_counter()
    # Caption writes (temp file + fsync + rename, slow on Drive) go to one writer thread so the model
    # never waits for the disk; a single thread keeps them in order.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colabkit-write")
    writes = []
    try:
        # Keep two batches decoded ahead: the model never waits unless decoding is truly slower.
        for chunk in batched(prefetch(load_fn, todo, workers=workers, ahead=2 * batch_size), batch_size):
            good = []
            for loaded in chunk:
                if loaded.error is None:
                    good.append(loaded)
                else:
                    report.failed.append(
                        Problem(
                            loaded.item,
                            "unreadable",
                            _("could not be read for tagging ({error})").format(
                                error=f"{type(loaded.error).__name__}: {loaded.error}"),
                            _("export it again as PNG or JPEG, then run this step again."),
                        )
                    )
            if good:
                tag_lists = run([g.value for g in good])
                for g, tags in zip(good, tag_lists):
                    text = join_tags(edits.apply(tags))
                    writes.append(writer.submit(_write_caption, g.item, text))
                    report.written.append(items.shown_name(g.item))
                    report.captions[items.shown_name(g.item)] = text
            bar.update(len(chunk))
    finally:
        writer.shutdown(wait=True)
        bar.close()
    for w in writes:
        w.result()  # a failed write (Drive full, permissions) surfaces here, after the others finished
    report.seconds_total = time.perf_counter() - start


# --- step 3: curate ----------------------------------------------------------------------------


def curate_captions(config: CurateConfig | str, *, top: int = 50, **fields) -> CurateReport:
    """Apply the edits to every caption of a usable image: blacklist, ``old=new`` replacements,
    global tags, trigger first exactly once, duplicates removed. Rewrites only changed files.
    The trigger word is checked against the vocabulary the tagging step saved with the project."""
    cfg = _config(CurateConfig, config, fields)
    project = open_project(cfg.project_name)
    edits = cfg.edits
    report = CurateReport(project.name)
    all_tags = []
    for info in items.scan(project).accepted:
        old = read_caption(info.file)
        if old is None:
            report.missing.append(items.shown_name(info.file))
            continue
        new, changed = _edit_caption(info.file, old, edits)
        (report.changed if changed else report.unchanged).append(items.shown_name(info.file))
        all_tags.append(split_tags(new))
    report.frequencies = count_tags(all_tags)[:top] if top else count_tags(all_tags)
    report.warnings += trigger_warnings(edits.trigger, load_vocabulary(project))
    if report.missing:
        report.warnings.append(ngettext(
            "{n} usable image has no caption yet ({names}): run the tagging step first.",
            "{n} usable images have no caption yet ({names}): run the tagging step first.",
            len(report.missing)).format(n=len(report.missing),
                                        names=", ".join(report.missing[:5]) + (", ..." if len(report.missing) > 5 else "")))
    return report


# --- reading the result (training metadata, sample prompts, gallery, editor) -------------------


def captioned_images(project_name: str) -> list[tuple[Path, str]]:
    """(image, caption) for every usable image that has a caption: what training will use
    (``colabkit.dataset.items``, the same list ``colabkit.train.data.scan`` trains on)."""
    return [(it.path, it.caption) for it in items.training_items(open_project(project_name))]


def tag_frequencies(project_name: str) -> list[tuple[str, int]]:
    """(tag, number of captions containing it), most frequent first, over the usable images."""
    return count_tags(split_tags(text) for _path, text in captioned_images(project_name))


def set_caption(project_name: str, image_name: str, caption: str, activation_tag: str = "") -> str:
    """Save a hand-edited caption (tidied: one tag per comma, trigger first). Returns what was written."""
    project = open_project(project_name)
    rel = Path(image_name)  # "x.png", or "10_style/x.png" in a <repeats>_<name>/ folder
    inside = len(rel.parts) == 2 and items.folder_repeats(rel.parts[0]) is not None
    image = project.dataset / (rel if inside else rel.name)
    if not image.is_file():
        raise ColabkitError(_("No image {name!r} in {folder}; pick one from the list.").format(
            name=image_name, folder=project.dataset))
    text = CaptionEdits(trigger=check_trigger(activation_tag)).apply_text(caption)
    _write_caption(image, text)
    return text
