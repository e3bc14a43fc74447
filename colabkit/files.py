"""The one place that writes to Drive: every write is temp file + fsync + rename.

Google Drive in Colab uploads asynchronously; a runtime can be cut at any instant. A reader
therefore only ever sees the old file or the complete new one, never half of either.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from colabkit.errors import ColabkitError
from colabkit.i18n import _


def fsync_dir(path: Path) -> None:
    # The rename itself lives in the directory entry; without this a crash can forget it.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some FUSE mounts (Drive) refuse fsync on directories
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere reading it means setting it (then straight back)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FULL = {errno.ENOSPC, errno.EDQUOT}


def disk_full_error(path: Path, error: OSError) -> ColabkitError:
    return ColabkitError(
        _("No space left while writing {name} in {parent} ({strerror}). The previous version of the file is intact. "
          "Free some space on Google Drive (empty Drive's bin too), then run the cell again.").format(
            name=path.name, parent=path.parent, strerror=error.strerror))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            # mkstemp makes the file 0600 (and some writers recreate it): the finished file gets the mode any
            # new file gets (0666 minus the umask, 0644 usually), so other tools and users can read it.
            os.chmod(tmp_path, 0o666 & ~current_umask())
        except OSError:
            pass  # a mount without permissions (Drive's FUSE): nothing to fix there
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except OSError as e:
        if e.errno in FULL:
            raise disk_full_error(path, e) from e
        raise
    finally:
        if tmp_path.exists():
            remove_for_good(tmp_path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def move_into(src: str | os.PathLike, folder: str | os.PathLike, name: str | None = None) -> Path:
    """Move ``src`` into ``folder`` (created if needed) as ``name`` (default: its own name), never
    overwriting: a taken name becomes "stem (2).ext", "stem (3).ext", ...

    A rename within one filesystem is atomic, so the file is always in exactly one of the two places.
    """
    src, folder = Path(src), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = Path(name or src.name)
    dst = folder / wanted.name
    n = 2
    while dst.exists():
        dst = folder / f"{wanted.stem} ({n}){wanted.suffix}"
        n += 1
    os.rename(src, dst)
    fsync_dir(folder)
    fsync_dir(src.parent)
    return dst


# -- removing without filling Drive's trash ----------------------------------------------------------------
# A file deleted through Colab's Drive mount goes to Drive's trash, which counts against the quota for 30 days
# (a free account has 15 GB, shared with Gmail and Photos). A file truncated to 0 bytes first leaves an empty
# file there: nothing counts. So everything colabkit removes on Drive goes through these two.

def remove_for_good(path: str | os.PathLike) -> None:
    """Remove a file so that none of its bytes stay in Drive's trash: truncate it to 0 bytes, then unlink it.

    Only for files colabkit itself made (states, pruned epochs, temporary files): never the artist's files."""
    path = Path(path)
    if not path.is_symlink():
        try:
            os.truncate(path, 0)
        except FileNotFoundError:
            return
        except OSError:
            pass  # cannot truncate (read-only, odd mount): removing it is still right
    path.unlink(missing_ok=True)


def remove_tree_for_good(folder: str | os.PathLike) -> None:
    """``remove_for_good`` for a folder colabkit made (a state folder): each file truncated, then the folders."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            remove_for_good(folder)
        return
    for dirpath, dirnames, names in os.walk(folder, topdown=False):
        for name in names:
            remove_for_good(Path(dirpath) / name)
        for name in dirnames:
            d = Path(dirpath) / name
            d.unlink() if d.is_symlink() else d.rmdir()
    folder.rmdir()


# Temporary files colabkit leaves only when a runtime is cut mid-write: atomic_path's ".<name>.XXXX.tmp" and a
# download's "<name>.part". A 7 GB model copy cut by a disconnect would otherwise stay in _models/ for good.
STALE_PATTERNS = (".*.tmp", "*.part")


def remove_stale_temporaries(folders, before: float | None = None) -> list[Path]:
    """Remove (for good) temporary files in ``folders`` last written before ``before`` (UNIX time, default now):
    what an earlier runtime left, never what this one is writing. Returns what was removed."""
    before = time.time() if before is None else before
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for pattern in STALE_PATTERNS:
            for p in sorted(folder.glob(pattern)):
                try:
                    if p.is_file() and p.stat().st_mtime < before:
                        remove_for_good(p)
                        removed.append(p)
                except OSError:
                    continue
    return removed
