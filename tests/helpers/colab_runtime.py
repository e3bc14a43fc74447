"""The stand-in Colab runtime (tests/helpers/fake_colab) for a test process or a notebook kernel.

A runtime here is a "/content" folder of its own (colabkit reads it from COLABKIT_COLAB_CONTENT) with Drive
unmounted, and a Drive (FAKE_COLAB_HOME/cloud/MyDrive) that outlives runtimes, as the real one does.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"


@dataclass
class FakeColab:
    home: Path  # FAKE_COLAB_HOME: the Drive's contents, its trash, the log of calls
    content: Path  # this runtime's "/content"
    # When this runtime started: the budget counts from here. Not the test machine's own PID 1, whose start (hours
    # ago on a CI machine that has been up a while) would leave a stand-in runtime no budget at all.
    started: float = field(default_factory=time.time)

    @property
    def my_drive(self) -> Path:
        """Drive's contents as stored (always there, unlike the mount)."""
        return self.home / "cloud" / "MyDrive"

    @property
    def trash(self) -> Path:
        return self.home / "cloud" / "trash"

    @property
    def mounted_root(self) -> Path:
        """Where colabkit sees MyDrive while Drive is mounted."""
        return self.content / "drive" / "MyDrive"

    def trashed(self) -> int:
        """Bytes in Drive's trash: they count against the quota."""
        return sum(p.stat().st_size for p in self.trash.rglob("*") if p.is_file()) if self.trash.is_dir() else 0

    def used(self) -> int:
        """Bytes counted against the quota: MyDrive and the trash."""
        return sum(p.stat().st_size for p in self.my_drive.rglob("*") if p.is_file() and not p.is_symlink()) \
            + self.trashed()

    def log(self) -> list[str]:
        path = self.home / "log"
        return path.read_text().splitlines() if path.exists() else []

    def new_runtime(self, name: str) -> "FakeColab":
        """A fresh runtime on the same Drive: its own /content, Drive unmounted."""
        content = self.content.parent / name / "content"
        content.mkdir(parents=True)
        return FakeColab(self.home, content)

    def env(self, **more: str) -> dict[str, str]:
        """What a kernel of this runtime gets: the fake on PYTHONPATH (added by the caller), no local Drive root."""
        return {"FAKE_COLAB_HOME": str(self.home), "COLABKIT_COLAB_CONTENT": str(self.content),
                "COLABKIT_RUNTIME_START": repr(self.started), **more}


def kernel_env(colab: FakeColab, **more: str) -> dict[str, str]:
    """The full environment for a notebook kernel in ``colab``: this process's, without COLABKIT_DRIVE_ROOT."""
    env = {k: v for k, v in os.environ.items() if k != "COLABKIT_DRIVE_ROOT" and not k.startswith("FAKE_COLAB_")}
    env.update(colab.env(**more))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAKE_COLAB), env.get("PYTHONPATH", "")) if p)
    return env


@contextlib.contextmanager
def in_process(tmp_path: Path, monkeypatch, quota: int | None = None):
    """Make this test process a Colab runtime: google.colab imports, Drive unmounted at /content's stand-in.

    Undone afterwards (the file-call wrappers of a mount, the imported fake modules), so later tests run as before.
    """
    import colabkit.colab as colab_mod
    import colabkit.project as project_mod

    colab = FakeColab(tmp_path / "fake-colab-home", tmp_path / "runtime" / "content")
    colab.content.mkdir(parents=True)
    monkeypatch.delenv("COLABKIT_DRIVE_ROOT", raising=False)
    for k, v in colab.env().items():
        monkeypatch.setenv(k, v)
    if quota is not None:
        monkeypatch.setenv("FAKE_COLAB_QUOTA_BYTES", str(quota))
    # colabkit reads COLABKIT_COLAB_CONTENT when it is imported (a fresh kernel); this process imported it already.
    mount_point = colab.content / "drive"
    for mod in (project_mod, colab_mod):
        monkeypatch.setattr(mod, "COLAB_DRIVE_ROOT", mount_point / "MyDrive")
        monkeypatch.setattr(mod, "COLAB_MOUNT_POINT", mount_point)
    sys.path.insert(0, str(FAKE_COLAB))
    try:
        yield colab
    finally:
        sys.path.remove(str(FAKE_COLAB))
        drive = sys.modules.get("google.colab.drive")
        if drive is not None:
            drive._uninstall()
        for name in [n for n in sys.modules if n == "google.colab" or n.startswith("google.colab.")]:
            del sys.modules[name]
