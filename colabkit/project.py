"""Project names and where a project's files live on Drive (or the local stand-in for it).

Layout under the Drive root ("MyDrive" in Colab)::

    Loras/
      _models/                 base models kept on Drive so tomorrow skips the 7 GB download
      <project>/
        dataset/               the artist's images and their .txt captions (never modified in place)
        dataset/_rejected/     problem files, moved here only on request
        output/                <project>-NN.safetensors, <project>.safetensors, <project>.json,
                               samples/, loss.png
        training/state/        full resume state (one folder per save, newest wins)
        training/cache/        cached latents and text embeddings, keyed by image content
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from colabkit.errors import ColabkitError
from colabkit.i18n import N_, _

# Where Colab mounts Drive: drive.mount("/content/drive") shows MyDrive under it. COLABKIT_COLAB_CONTENT moves
# "/content" for the stand-in Colab runtime of the tests (tests/helpers/fake_colab), which cannot own the real
# /content on a shared machine; nothing else sets it, so on Colab this is always /content/drive/MyDrive.
COLAB_CONTENT = Path(os.environ.get("COLABKIT_COLAB_CONTENT") or "/content")
COLAB_MOUNT_POINT = COLAB_CONTENT / "drive"
COLAB_DRIVE_ROOT = COLAB_MOUNT_POINT / "MyDrive"
DEFAULT_LOCAL_ROOT = Path("~/colabkit-drive")
LORAS_DIR = "Loras"

_PART = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_NAME_RE = re.compile(rf"^{_PART}(/{_PART})?$")
_RULES = N_(
    "letters, digits, '-' and '_' (starting with a letter or digit, at most 64 characters), "
    "optionally one '/' for a sub-folder, e.g. 'houtline' or 'clients/houtline'"
)


def validate_project_name(name: str) -> str:
    """Return the name if it is safe as a folder under Loras/, else raise with what is allowed."""
    if not isinstance(name, str) or not name.strip():
        raise ColabkitError(_("The project name is empty. Use {rules}.").format(rules=_(_RULES)))
    if name != name.strip():
        raise ColabkitError(_("The project name {name!r} has spaces at its ends. Use {rules}.").format(
                                name=name, rules=_(_RULES)))
    if name.startswith(("/", "~")) or ".." in name or "\\" in name:
        raise ColabkitError(
            _("The project name {name!r} looks like a path. It must be a plain name inside Loras/: use {rules}.").format(
                name=name, rules=_(_RULES))
        )
    if not _NAME_RE.match(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "-_/"))})
        what = (_("it contains {characters!r}").format(characters="".join(bad)) if bad
                else _("it has more than one '/' or an empty part"))
        raise ColabkitError(_("The project name {name!r} is not allowed: {what}. Use {rules}.").format(
                                name=name, what=what, rules=_(_RULES)))
    return name


def in_colab() -> bool:
    """Colab is where ``google.colab`` imports (the stand-in runtime of the tests provides one too)."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def drive_root() -> Path:
    """Where "MyDrive" is: $COLABKIT_DRIVE_ROOT, else Colab's mount, else ~/colabkit-drive."""
    env = os.environ.get("COLABKIT_DRIVE_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    if in_colab():
        return COLAB_DRIVE_ROOT
    return DEFAULT_LOCAL_ROOT.expanduser().resolve()


def cache_home() -> Path:
    """colabkit's local (not Drive) cache for tiny models and downloads: $COLABKIT_CACHE or ~/.cache/colabkit."""
    env = os.environ.get("COLABKIT_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/colabkit").expanduser()


def loras_root(root: Path | None = None) -> Path:
    return (root or drive_root()) / LORAS_DIR


@dataclass(frozen=True)
class Project:
    name: str
    root: Path  # Loras/<name>

    @classmethod
    def at(cls, name: str, drive: Path | None = None) -> "Project":
        name = validate_project_name(name)
        return cls(name=name, root=loras_root(drive) / name)

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def rejected(self) -> Path:
        return self.dataset / "_rejected"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def samples(self) -> Path:
        return self.output / "samples"

    @property
    def training(self) -> Path:
        return self.root / "training"

    @property
    def state(self) -> Path:
        return self.training / "state"

    @property
    def cache(self) -> Path:
        return self.training / "cache"

    @property
    def models(self) -> Path:
        return self.root.parent / "_models"

    @property
    def slug(self) -> str:
        """The name used in output file names (the sub-folder part, if any, is dropped)."""
        return self.name.rsplit("/", 1)[-1]

    def exists(self) -> bool:
        return self.dataset.is_dir()

    def create(self) -> "Project":
        """Create the folders; harmless when they exist, never touches files inside."""
        for d in (self.dataset, self.output, self.training):
            d.mkdir(parents=True, exist_ok=True)
        return self


def list_projects(drive: Path | None = None) -> list[str]:
    """Names of the projects that exist (folders with a dataset/), sub-folders included."""
    base = loras_root(drive)
    if not base.is_dir():
        return []
    found = []
    for ds in sorted(base.glob("*/dataset")) + sorted(base.glob("*/*/dataset")):
        if ds.is_dir():
            name = ds.parent.relative_to(base).as_posix()
            if not name.startswith("_"):
                found.append(name)
    return found


def open_project(name: str, drive: Path | None = None) -> Project:
    """The existing project ``name``, or an error that lists the projects there are.

    Every step opens its project here, so this is the one place that mounts Drive first: each notebook runs in
    its own runtime, and a budget stop unmounts Drive (Colab's only flush also unmounts)."""
    if drive is None:
        from colabkit.colab import mount_drive

        mount_drive()
    project = Project.at(name, drive)
    if not project.exists():
        existing = list_projects(drive)
        hint = (_("Projects found: {names}.").format(names=", ".join(existing)) if existing
                else _("No projects exist yet."))
        raise ColabkitError(
            _("No project {name!r} under {parent}. {hint} Check the spelling of project_name, or run the dataset "
              "notebook first to create it.").format(name=name, parent=project.root.parent, hint=hint)
        )
    return project
