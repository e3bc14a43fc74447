"""Colab's Drive mount, as the notebooks meet it.

``mount(mountpoint)`` makes ``<mountpoint>/MyDrive`` a link to ``$FAKE_COLAB_HOME/cloud/MyDrive``; before that the
folder is not there, and ``flush_and_unmount()`` takes it away again. While mounted, this process's file calls are
wrapped the way Drive's FUSE mount answers them:

- deleting a file moves it to the trash, which keeps counting against the quota (a file truncated to 0 bytes
  first leaves nothing there);
- a write that takes Drive over its quota fails with an I/O error (EIO), not ENOSPC, when it is synced or
  renamed into place;
- ``shutil.disk_usage`` on the mount reports the quota and what MyDrive and the trash use.

Not modelled: upload delays, a file replaced by a rename (Drive keeps no copy in the trash for it here).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from pathlib import Path

from google.colab._log import home, log
from google.colab._message import MessageError

_REAL = {name: getattr(os, name) for name in ("unlink", "remove", "fsync", "replace", "rename")}
_REAL_DISK_USAGE = shutil.disk_usage
_counter = itertools.count()


def _cloud() -> Path:
    return home() / "cloud" / "MyDrive"


def _trash() -> Path:
    return home() / "cloud" / "trash"


def quota() -> int:
    return int(os.environ.get("FAKE_COLAB_QUOTA_BYTES") or 15 * 2**30)


def _tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def used() -> int:
    """What counts against the quota: MyDrive and the trash."""
    return _tree_bytes(_cloud()) + _tree_bytes(_trash())


def trashed() -> int:
    return _tree_bytes(_trash())


def _full_path(path, dir_fd=None) -> str:
    if isinstance(path, int):  # an open file descriptor
        return os.readlink(f"/proc/self/fd/{path}")
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    # The folder resolved, not the name itself: removing a link removes the link, not what it points to.
    return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))


def _on_drive(path, dir_fd=None) -> bool:
    try:
        full = _full_path(path, dir_fd)
    except OSError:
        return False
    cloud = os.path.realpath(_cloud())
    full = os.path.realpath(full) if os.path.isdir(full) else full
    return full == cloud or full.startswith(cloud + os.sep)


def _check_quota(what) -> None:
    if used() > quota():
        raise OSError(errno.EIO, "Input/output error (Google Drive: storage quota exceeded)", os.fsdecode(what))


def _unlink(path, *, dir_fd=None):
    full = _full_path(path, dir_fd)
    if _on_drive(full) and not os.path.islink(full) and os.path.isfile(full) and os.path.getsize(full) > 0:
        _trash().mkdir(parents=True, exist_ok=True)
        _REAL["rename"](full, _trash() / f"{next(_counter):06d}-{os.path.basename(full)}")
        return
    _REAL["unlink"](path, dir_fd=dir_fd)


def _fsync(fd):
    _REAL["fsync"](fd)
    if _on_drive(fd):
        _check_quota(_full_path(fd))


def _replace_like(real):
    def call(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if _on_drive(dst, dst_dir_fd) and not _on_drive(src, src_dir_fd):
            _check_quota(dst)  # a file moved in from the local disk counts from now on

    return call


def _disk_usage(path):
    if _on_drive(path):
        u = used()
        return shutil._ntuple_diskusage(quota(), u, max(0, quota() - u))
    return _REAL_DISK_USAGE(path)


def _install() -> None:
    os.unlink = _unlink
    os.remove = _unlink
    os.fsync = _fsync
    os.replace = _replace_like(_REAL["replace"])
    os.rename = _replace_like(_REAL["rename"])
    shutil.disk_usage = _disk_usage


def _uninstall() -> None:
    for name, fn in _REAL.items():
        setattr(os, name, fn)
    shutil.disk_usage = _REAL_DISK_USAGE


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    log(f"mount {mountpoint}")
    if os.environ.get("FAKE_COLAB_MOUNT") == "refuse":  # the artist closed the popup or did not allow access
        raise MessageError("Error: credential propagation was unsuccessful")
    link = Path(mountpoint) / "MyDrive"
    if link.is_symlink() and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
              f"drive.mount(\"{mountpoint}\", force_remount=True).")
        return
    if Path(mountpoint).is_dir() and any(p != link for p in Path(mountpoint).iterdir()):
        raise ValueError("Mountpoint must not already contain files")
    _cloud().mkdir(parents=True, exist_ok=True)
    _trash().mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(_cloud(), target_is_directory=True)
    _install()
    print(f"Mounted at {mountpoint}")


def _mountpoints() -> list[Path]:
    content = os.environ.get("COLABKIT_COLAB_CONTENT") or "/content"
    return [p for p in (Path(content) / "drive",) if (p / "MyDrive").is_symlink()]


def flush_and_unmount(timeout_ms: int = 24 * 3600 * 1000) -> None:
    log(f"flush_and_unmount timeout_ms={timeout_ms}")
    failure = os.environ.get("FAKE_COLAB_FLUSH")
    if failure:
        raise {"ValueError": ValueError, "NotImplementedError": NotImplementedError}[failure](
            "flush_and_unmount failed (stand-in)")
    mounted = _mountpoints()
    if not mounted:
        print("Drive not mounted, so nothing to flush and unmount.")
        return
    for mp in mounted:
        (mp / "MyDrive").unlink()
    _uninstall()
    print("All changes made in this colab session should now be visible in Drive.")
