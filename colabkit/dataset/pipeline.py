"""The dataset steps behind ``notebooks/1_dataset`` and ``colabkit check|tag|curate``.

Each public function takes the notebook's form fields as keyword arguments, works on
``Loras/<project>/dataset/`` and returns a report (data, never printed here; see
``colabkit.display_dataset`` for tables and galleries). Originals are never modified; captions are
written atomically beside them; the only other change is moving problem files to
``dataset/_rejected/`` when explicitly asked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from colabkit import files
from colabkit.dataset import images as imgs
from colabkit.dataset.captions import (
    CaptionEdits,
    caption_path,
    count_tags,
    check_trigger,
    join_tags,
    split_tags,
    trigger_warnings,
)
from colabkit.dataset.images import MAX_ASPECT, MIN_SIDE, ImageInfo, Problem
from colabkit.dataset.loader import batched, prefetch
from colabkit.errors import ColabkitError
from colabkit.project import Project, open_project

TAGGING_METHODS = ("anime tags", "photo captions")
DEFAULT_TAGGER = "wd-eva02-large-tagger-v3"
DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-large"
MIN_GOOD_COUNT = 10  # fewer usable images than this rarely gives a style LoRA that generalises


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
                    file=info.file.name,
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
                        file=p.file.name + ("/" if p.kind == "folder" else ""),
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
        text = f"{len(self.accepted)} images ready, {n_rej} rejected"
        n_warn = len(self.problems) - n_rej
        if n_warn:
            text += f", {n_warn} warnings"
        if self.moved:
            text += f"; {len(self.moved)} files moved to {self.folder.name}/_rejected/"
        return text + "."


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
        parts = [f"{len(self.written)} captions written"]
        if self.kept or self.updated:
            parts.append(f"{len(self.kept) + len(self.updated)} existing kept ({len(self.updated)} given the trigger/blacklist)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} rejected files skipped")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        text = ", ".join(parts) + f" ({self.method}, {self.model}"
        if self.device:
            text += f" on {self.device}"
        if self.written and self.seconds_total:
            text += f", {self.images_per_second:.1f} images/s"
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
        text = f"{len(self.changed)} captions edited, {len(self.unchanged)} already fine"
        if self.missing:
            text += f", {len(self.missing)} images without a caption"
        return text + f"; {len(self.frequencies)} distinct tags."


# --- scanning (cached per runtime: checking, tagging and curating all need the same answer) ----

_INSPECTED: dict[tuple, ImageInfo | Problem] = {}


def _inspect_cached(path: Path, *, min_side: int, max_aspect: float) -> ImageInfo | Problem:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, min_side, max_aspect)
    if key not in _INSPECTED:
        if len(_INSPECTED) > 20_000:
            _INSPECTED.clear()
        _INSPECTED[key] = imgs.inspect_file(path, min_side=min_side, max_aspect=max_aspect)
    return _INSPECTED[key]


def _tqdm(progress: bool, **kw):
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, disable=not progress, **kw)


CHECK_SETTINGS = "dataset_check.json"  # in training/: the limits chosen in the check step


def _check_settings(project: Project) -> tuple[int, float]:
    """The min_side / max_aspect last used to check this project, so tagging, curation and training
    agree with what the check step accepted (defaults when it never ran)."""
    try:
        saved = json.loads((project.training / CHECK_SETTINGS).read_text())
        return int(saved["min_side"]), float(saved["max_aspect"])
    except (OSError, ValueError, KeyError, TypeError):
        return MIN_SIDE, MAX_ASPECT


def _scan(project: Project, min_side: int | None = None, max_aspect: float | None = None, progress: bool = False):
    saved_side, saved_aspect = _check_settings(project)
    min_side = saved_side if min_side is None else min_side
    max_aspect = saved_aspect if max_aspect is None else max_aspect
    return imgs.scan_folder(
        project.dataset,
        min_side=min_side,
        max_aspect=max_aspect,
        progress=_tqdm(progress, desc="Checking", unit="file", leave=False),
        inspect=_inspect_cached,
    )


def _empty_hint(project: Project) -> str:
    return (
        f"{project.dataset} has no images. Upload 10-100 drawings (PNG or JPEG) into Loras/{project.name}/dataset/ "
        "on your Drive, then run this step again."
    )


# --- step 1: check -----------------------------------------------------------------------------


def check_dataset(
    project_name: str,
    move_rejected: bool = False,
    min_side: int = MIN_SIDE,
    max_aspect: float = MAX_ASPECT,
    *,
    progress: bool = True,
) -> DatasetReport:
    """Read every file in ``dataset/`` and say which images are usable and what is wrong with the rest.

    Nothing is changed unless ``move_rejected``: then rejected files (and their captions) are moved
    to ``dataset/_rejected/``; nothing is ever deleted.
    """
    project = open_project(project_name)
    if min_side < 1 or max_aspect < 1:
        raise ColabkitError(f"min_side ({min_side}) must be at least 1 and max_aspect ({max_aspect}) at least 1.")
    if _check_settings(project) != (min_side, max_aspect):
        files.write_json(project.training / CHECK_SETTINGS, {"min_side": min_side, "max_aspect": max_aspect})
    scan = _scan(project, min_side, max_aspect, progress)
    report = DatasetReport(project.name, project.dataset, scan.accepted, scan.problems)
    if move_rejected:
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
        report.warnings.append(
            f"Only {len(scan.accepted)} usable images. 10-100 varied drawings work best; add more if you can."
        )
    return report


# --- step 2: tag or caption --------------------------------------------------------------------

_last_vocabulary: list[str] = []  # tags the last tagger can emit, for the curation step's trigger check


def read_caption(image: Path) -> str | None:
    """The caption text for ``image`` or None when it has none. Tolerates a BOM and odd encodings."""
    cap = caption_path(image)
    if not cap.is_file():
        return None
    return cap.read_bytes().decode("utf-8-sig", errors="replace").strip()


def _write_caption(image: Path, text: str) -> None:
    files.write_text(caption_path(image), text)


def _edit_caption(image: Path, old: str, edits: CaptionEdits) -> tuple[str, bool]:
    """Apply the edits to an existing caption; rewrite the file only when that changes it."""
    new = edits.apply_text(old)
    if new != old:
        _write_caption(image, new)
    return new, new != old


def _check_fields(tagging_method: str, tag_threshold: float, character_threshold: float, batch_size: int) -> None:
    if tagging_method not in TAGGING_METHODS:
        raise ColabkitError(f"tagging_method {tagging_method!r} is not one of {', '.join(map(repr, TAGGING_METHODS))}.")
    if not 0 < tag_threshold <= 1:
        raise ColabkitError(f"tag_threshold {tag_threshold} must be between 0 and 1 (0.35 is a good start).")
    if character_threshold <= 0:
        raise ColabkitError(f"character_threshold {character_threshold} must be above 0 (above 1 turns character tags off).")
    if batch_size < 1:
        raise ColabkitError(f"batch_size {batch_size} must be at least 1.")


def tag_dataset(
    project_name: str,
    tagging_method: str = "anime tags",
    tagger_model: str = DEFAULT_TAGGER,
    tag_threshold: float = 0.35,
    character_threshold: float = 0.85,
    caption_model: str = DEFAULT_CAPTIONER,
    activation_tag: str = "",
    blacklist_tags: str = "",
    overwrite_captions: bool = False,
    batch_size: int = 8,
    *,
    include_ratings: bool = False,
    caption_min_length: int = 5,
    caption_max_length: int = 40,
    caption_beams: int = 3,
    workers: int | None = None,
    progress: bool = True,
) -> TagReport:
    """Write ``image.txt`` beside every usable image that has none (all of them with ``overwrite_captions``).

    ``anime tags``: a WD14 tagger; ``photo captions``: BLIP. New captions start with ``activation_tag``
    and skip ``blacklist_tags``; existing captions are kept, only given the trigger/blacklist edits.
    """
    project = open_project(project_name)
    _check_fields(tagging_method, tag_threshold, character_threshold, batch_size)
    edits = CaptionEdits.from_fields(activation_tag=activation_tag, blacklist_tags=blacklist_tags)
    anime = tagging_method == "anime tags"
    report = TagReport(project.name, tagging_method, tagger_model if anime else caption_model)

    scan = _scan(project)
    report.skipped = [p for p in scan.problems if p.rejected]
    if not scan.accepted:
        if scan.problems:
            raise ColabkitError(
                f"None of the {len(scan.problems)} files in {project.dataset} can be used. Run the check step "
                "to see each file's problem and how to fix it."
            )
        raise ColabkitError(_empty_hint(project))

    todo: list[Path] = []
    for info in scan.accepted:
        old = None if overwrite_captions else read_caption(info.file)
        if old is None:
            todo.append(info.file)
            continue
        new, changed = _edit_caption(info.file, old, edits)
        (report.updated if changed else report.kept).append(info.file.name)
        report.captions[info.file.name] = new

    vocabulary: list[str] = []
    if todo:
        t0 = time.perf_counter()
        if anime:
            tagger = _load_tagger(tagger_model)
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
                    [t.tag for t in tagger.select(p, tag_threshold, character_threshold, include_ratings)] for p in probs
                ]

        else:
            captioner = _load_captioner(caption_model)
            report.device = captioner.device
            load_fn = captioner.load

            def run(batch):
                import torch

                stacked = torch.stack(batch)
                t = time.perf_counter()
                texts = captioner.caption(
                    stacked, num_beams=caption_beams, min_length=caption_min_length, max_length=caption_max_length
                )
                report.seconds_model += time.perf_counter() - t
                return [[t] if t else [] for t in texts]

        report.seconds_load = time.perf_counter() - t0
        _stream(todo, load_fn, run, edits, batch_size, workers, progress, report)
        if anime:
            global _last_vocabulary
            _last_vocabulary = vocabulary

    report.warnings += trigger_warnings(edits.trigger, vocabulary or _last_vocabulary)
    if report.device == "CPUExecutionProvider" and Path("/dev/nvidia0").exists():
        report.warnings.append(
            "A GPU is present but this onnxruntime has no CUDA support, so tagging ran on the CPU. "
            "`pip install onnxruntime-gpu` (instead of onnxruntime) lets it use the GPU."
        )
    empty = [name for name in report.written if not split_tags(report.captions[name])[1 if edits.trigger else 0 :]]
    if empty:
        report.warnings.append(
            f"{len(empty)} images got no tags above tag_threshold ({', '.join(empty[:5])}"
            f"{', ...' if len(empty) > 5 else ''}); lower tag_threshold or caption them by hand."
        )
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

    bar = tqdm(total=len(todo), desc="Tagging" if report.method == "anime tags" else "Captioning", unit="img", disable=not progress)
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
                            f"could not be read for tagging ({type(loaded.error).__name__}: {loaded.error})",
                            "export it again as PNG or JPEG, then run this step again.",
                        )
                    )
            if good:
                tag_lists = run([g.value for g in good])
                for g, tags in zip(good, tag_lists):
                    text = join_tags(edits.apply(tags))
                    writes.append(writer.submit(_write_caption, g.item, text))
                    report.written.append(g.item.name)
                    report.captions[g.item.name] = text
            bar.update(len(chunk))
    finally:
        writer.shutdown(wait=True)
        bar.close()
    for w in writes:
        w.result()  # a failed write (Drive full, permissions) surfaces here, after the others finished
    report.seconds_total = time.perf_counter() - start


# --- step 3: curate ----------------------------------------------------------------------------


def curate_captions(
    project_name: str,
    activation_tag: str = "",
    blacklist_tags: str = "",
    replace_tags: str = "",
    global_tags: str = "",
    *,
    top: int = 50,
) -> CurateReport:
    """Apply the edits to every caption of a usable image: blacklist, ``old=new`` replacements,
    global tags, trigger first exactly once, duplicates removed. Rewrites only changed files."""
    project = open_project(project_name)
    edits = CaptionEdits.from_fields(activation_tag, blacklist_tags, replace_tags, global_tags)
    report = CurateReport(project.name)
    all_tags = []
    for info in _scan(project).accepted:
        old = read_caption(info.file)
        if old is None:
            report.missing.append(info.file.name)
            continue
        new, changed = _edit_caption(info.file, old, edits)
        (report.changed if changed else report.unchanged).append(info.file.name)
        all_tags.append(split_tags(new))
    report.frequencies = count_tags(all_tags)[:top] if top else count_tags(all_tags)
    report.warnings += trigger_warnings(edits.trigger, _last_vocabulary)
    if report.missing:
        report.warnings.append(
            f"{len(report.missing)} usable images have no caption yet ({', '.join(report.missing[:5])}"
            f"{', ...' if len(report.missing) > 5 else ''}): run the tagging step first."
        )
    return report


# --- reading the result (training metadata, sample prompts, gallery, editor) -------------------


def captioned_images(project_name: str) -> list[tuple[Path, str]]:
    """(image, caption) for every usable image that has a caption: what training will use."""
    project = open_project(project_name)
    out = []
    for info in _scan(project).accepted:
        text = read_caption(info.file)
        if text is not None:
            out.append((info.file, text))
    return out


def tag_frequencies(project_name: str) -> list[tuple[str, int]]:
    """(tag, number of captions containing it), most frequent first, over the usable images."""
    return count_tags(split_tags(text) for _, text in captioned_images(project_name))


def set_caption(project_name: str, image_name: str, caption: str, activation_tag: str = "") -> str:
    """Save a hand-edited caption (tidied: one tag per comma, trigger first). Returns what was written."""
    project = open_project(project_name)
    image = project.dataset / Path(image_name).name
    if not image.is_file():
        raise ColabkitError(f"No image {image_name!r} in {project.dataset}; pick one from the list.")
    text = CaptionEdits(trigger=check_trigger(activation_tag)).apply_text(caption)
    _write_caption(image, text)
    return text
