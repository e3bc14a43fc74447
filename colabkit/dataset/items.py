"""The training set: which files of ``dataset/`` are trained on, and with which caption.

This is the one definition; the dataset steps (tag, curate, gallery, editor) and training
(``colabkit.train.data.scan``) all read it from here, so what the dataset notebook shows is what trains.

The rule: an image is trained on when the dataset check accepts it (directly in ``dataset/`` or in a
sub-folder named ``<repeats>_<name>``, kohya's convention: ``dataset/10_style/``; decodes, not animated,
not an exact copy or a caption clash, within the size and aspect limits) and it has a caption ``.txt``
beside it. Images directly in ``dataset/`` are repeated ``num_repeats`` times an epoch, those of a
``<repeats>_<name>/`` folder ``<repeats>`` times. Other sub-folders (and folders inside those) are not
used, and the check says so. The limits are the ones the check step last saved for
the project (``training/dataset_check.json``). A project whose check step never ran uses the check's
defaults, with ``min_side`` capped at half the training resolution when one is given (never upscaled
more than 2x; at 1024 px that is the check's own default of 512).

Each file is read once per runtime: its bytes are hashed and decoded from memory, and the answer is
cached by (path, size, mtime, inode, limits), so checking, tagging, curating and training in one Colab
session read each image from Drive once.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from colabkit import files
from colabkit.dataset import images as imgs
from colabkit.dataset.captions import caption_path, split_tags
from colabkit.dataset.images import MAX_ASPECT, MIN_SIDE, ImageInfo, Problem, ScanResult
from colabkit.i18n import _, language
from colabkit.project import Project

CHECK_SETTINGS = "dataset_check.json"  # in training/: the limits chosen in the check step


def project_of(where: Project | Path) -> Project:
    """``where`` as a Project: a Project, or its ``dataset/`` folder (``Loras/<name>/dataset``)."""
    if isinstance(where, Project):
        return where
    dataset = Path(where)
    return Project(name=dataset.parent.name, root=dataset.parent)


# --- the check step's limits ---------------------------------------------------------------------


def saved_limits(project: Project) -> tuple[int, float] | None:
    """(min_side, max_aspect) the check step last saved for this project, or None if it never ran."""
    try:
        saved = json.loads((project.training / CHECK_SETTINGS).read_text())
        return int(saved["min_side"]), float(saved["max_aspect"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_limits(project: Project, min_side: int, max_aspect: float) -> None:
    if saved_limits(project) != (min_side, max_aspect):
        files.write_json(project.training / CHECK_SETTINGS, {"min_side": min_side, "max_aspect": max_aspect})


def limits(project: Project, resolution: int | None = None) -> tuple[int, float]:
    """The limits tagging, curation and training apply: the saved ones, else the defaults (see the module doc)."""
    saved = saved_limits(project)
    if saved is not None:
        return saved
    return (MIN_SIDE if resolution is None else min(MIN_SIDE, max(1, resolution // 2))), MAX_ASPECT


# --- reading files (each once per runtime) ---------------------------------------------------------

_INSPECTED: dict[tuple, ImageInfo | Problem] = {}


def inspect_cached(path: Path, *, min_side: int, max_aspect: float) -> ImageInfo | Problem:
    st = path.stat()
    # the language too: a problem's reason and fix are worded in the language in effect when it was found
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, min_side, max_aspect, language())
    if key not in _INSPECTED:
        if len(_INSPECTED) > 20_000:
            _INSPECTED.clear()
        _INSPECTED[key] = imgs.inspect_file(path, min_side=min_side, max_aspect=max_aspect)
    return _INSPECTED[key]


# --- the folders: dataset/ itself and its <repeats>_<name>/ sub-folders --------------------------------

REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")  # kohya's dataset/<repeats>_<name>/


@dataclass(frozen=True)
class Folder:
    """A folder whose images train: ``dataset/`` itself (``repeats`` None: num_repeats) or ``<repeats>_<name>/``."""

    path: Path
    repeats: int | None

    @property
    def name(self) -> str:
        return "" if self.repeats is None else self.path.name


def folder_repeats(name: str) -> int | None:
    """The repeats a sub-folder's name gives (``10_style`` -> 10), or None when it does not follow the rule."""
    m = REPEATS_FOLDER.match(name)
    return int(m[1]) if m and int(m[1]) > 0 else None


def folders(dataset: Path) -> tuple[list[Folder], list[Problem]]:
    """(the folders that train, the top first; a warning for every sub-folder whose files are not used)."""
    if not dataset.is_dir():
        return [], []
    top = Folder(dataset, None)
    found, problems = [top], []
    subs = imgs.dataset_files(dataset)[1]
    for sub in subs:
        repeats = folder_repeats(sub.name)
        if repeats is None:
            problems.append(Problem(
                sub, "folder", _("sub-folder not named <repeats>_<name>: the files inside it are not used"),
                _("rename it like 10_{name} (10 repeats an epoch), or move its images into dataset/.").format(
                    name=sub.name), rejected=False))
            continue
        found.append(Folder(sub, repeats))
        for nested in imgs.dataset_files(sub)[1]:
            problems.append(Problem(
                nested, "folder", _("folder inside {folder}/: the files inside it are not used").format(
                    folder=sub.name),
                _("move its images into {folder}/ or into their own <repeats>_<name> folder in dataset/.").format(
                    folder=sub.name), rejected=False))
    return found, problems


def folder_of(path: Path, dataset: Path) -> Folder:
    """The training folder ``path`` (an image) lies in."""
    parent = path.parent
    return Folder(parent, None) if parent == dataset else Folder(parent, folder_repeats(parent.name))


def shown_name(path: Path) -> str:
    """``x.png``, or ``3_a/x.png`` for an image in a <repeats>_<name>/ folder (dataset/ itself is never one)."""
    return f"{path.parent.name}/{path.name}" if folder_repeats(path.parent.name) is not None else path.name


def scan(project: Project, min_side: int | None = None, max_aspect: float | None = None, *,
         resolution: int | None = None, progress: bool = False) -> ScanResult:
    """The check of every file in ``dataset/`` and its ``<repeats>_<name>/`` folders (limits not given:
    ``limits(project, resolution)``). An exact copy is rejected across folders too; a caption clash is one
    inside a folder (each caption lies beside its image)."""
    saved_side, saved_aspect = limits(project, resolution)
    min_side = saved_side if min_side is None else min_side
    max_aspect = saved_aspect if max_aspect is None else max_aspect
    training_folders, problems = folders(project.dataset)
    result = ScanResult(problems=list(problems))
    paths = [p for f in training_folders for p in imgs.dataset_files(f.path)[0]]
    if progress:
        from tqdm.auto import tqdm

        paths_iter = tqdm(paths, desc=_("Checking"), unit=_("file"), leave=False)
    else:
        paths_iter = paths
    candidates = []
    for path in paths_iter:
        outcome = inspect_cached(path, min_side=min_side, max_aspect=max_aspect)
        if isinstance(outcome, Problem):
            result.problems.append(outcome)
        else:
            candidates.append(outcome)
    found = imgs.find_duplicates(candidates)
    for f in training_folders:
        found += imgs.caption_clashes([c for c in candidates if c.file.parent == f.path])
    rejected = {p.file for p in found if p.rejected}
    result.problems.extend(found)
    result.accepted = [c for c in candidates if c.file not in rejected]
    return result


def read_caption(image: Path) -> str | None:
    """The caption text for ``image``, or None when it has none.

    A UTF-8 BOM (Windows Notepad) is dropped, so it never becomes part of the first tag; UTF-16 files
    (Notepad's "Unicode") are decoded as such; undecodable bytes become U+FFFD rather than an error.
    """
    cap = caption_path(image)
    if not cap.is_file():
        return None
    raw = cap.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = raw.decode("utf-16", errors="replace")
    else:
        text = raw.decode("utf-8-sig", errors="replace")
    return text.lstrip("\ufeff").strip()


# --- the training set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingItem:
    path: Path
    caption: str  # as written in the .txt (BOM dropped, ends stripped)
    sha256: str  # of the image file's bytes
    size: tuple[int, int]  # (width, height) as displayed, i.e. after EXIF rotation
    folder: str = ""  # "": directly in dataset/; else its <repeats>_<name> sub-folder
    repeats: int | None = None  # None: num_repeats (directly in dataset/); else the folder's repeats

    @property
    def tags(self) -> list[str]:
        return split_tags(self.caption)


@dataclass
class TrainingSet:
    items: list[TrainingItem]
    missing_captions: list[Path] = field(default_factory=list)  # usable images without a .txt
    orphan_captions: list[Path] = field(default_factory=list)  # .txt files with no file of that name
    rejected: list[Problem] = field(default_factory=list)  # what the check rejects: never trained on
    min_side: int = MIN_SIDE
    max_aspect: float = MAX_ASPECT


def training_set(where: Project | Path, *, resolution: int | None = None, progress: bool = False) -> TrainingSet:
    """What trains, and what does not and why, for a project (or its ``dataset/`` folder)."""
    project = project_of(where)
    min_side, max_aspect = limits(project, resolution)
    result = scan(project, min_side, max_aspect, progress=progress)
    out = TrainingSet(items=[], rejected=[p for p in result.problems if p.rejected], min_side=min_side,
                      max_aspect=max_aspect)
    for info in result.accepted:
        text = read_caption(info.file)
        if text is None:
            out.missing_captions.append(info.file)
        else:
            where = folder_of(info.file, project.dataset)
            out.items.append(TrainingItem(info.file, text, info.sha256, (info.width, info.height), where.name,
                                          where.repeats))
    for f in folders(project.dataset)[0]:
        checked = imgs.dataset_files(f.path)[0]
        stems = {p.stem for p in checked}  # exact names, as caption_path pairs them
        out.orphan_captions += sorted(t for t in f.path.glob("*.txt")
                                      if not t.name.startswith(".") and t.stem not in stems)
    return out


# --- regularization images: Loras/<project>/reg/ ----------------------------------------------------------

REG_FOLDER = "reg"  # beside dataset/: Loras/<project>/reg/ (and reg/<repeats>_<name>/)


def reg_folder(project: Project) -> Path:
    return project.root / REG_FOLDER


def reg_set(where: Project | Path, *, resolution: int | None = None) -> TrainingSet:
    """The regularization images (optional): ``reg/`` and its ``<repeats>_<name>/`` folders, checked by the same
    rules as the dataset. As in sd-scripts, an image without a caption file takes its folder's name after the
    repeats as caption (``reg/1_woman/`` -> "woman"; directly in ``reg/``: an empty caption). ``repeats`` of an
    image directly in ``reg/`` is 1. Empty when there is no ``reg/`` folder."""
    project = project_of(where)
    min_side, max_aspect = limits(project, resolution)
    root = reg_folder(project)
    out = TrainingSet(items=[], min_side=min_side, max_aspect=max_aspect)
    if not root.is_dir():
        return out
    training_folders, problems = folders(root)
    candidates, rejected = [], list(problems)
    for f in training_folders:
        for path in imgs.dataset_files(f.path)[0]:
            outcome = inspect_cached(path, min_side=min_side, max_aspect=max_aspect)
            (rejected if isinstance(outcome, Problem) else candidates).append(outcome)
    found = imgs.find_duplicates(candidates)
    for f in training_folders:
        found += imgs.caption_clashes([c for c in candidates if c.file.parent == f.path])
    dropped = {p.file for p in found if p.rejected}
    out.rejected = [p for p in rejected + found if p.rejected]
    for info in candidates:
        if info.file in dropped:
            continue
        where_ = folder_of(info.file, root)
        text = read_caption(info.file)
        if text is None:
            text = REPEATS_FOLDER.match(where_.name)[2].replace("_", " ") if where_.name else ""
        out.items.append(TrainingItem(info.file, text, info.sha256, (info.width, info.height), where_.name,
                                      where_.repeats if where_.repeats is not None else 1))
    return out


def training_items(where: Project | Path, *, resolution: int | None = None) -> list[TrainingItem]:
    """The images training uses, with their captions, in name order."""
    return training_set(where, resolution=resolution).items
