"""Build a tiny model once per machine into colabkit's local cache, safely under concurrency."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from colabkit.project import cache_home

MARKER = "COLABKIT_TINY"


def built_once(name: str, version: str, build: Callable[[Path], object]) -> Path:
    """``cache_home()/<name>-v<version>``, running ``build(folder)`` first if it is not there yet.

    The build writes into a private temporary folder renamed into place at the end, so a test run
    killed mid-build, or two processes building at once, never leave a half-built model in use.
    """
    folder = cache_home() / f"{name}-v{version}"
    marker = folder / MARKER
    if marker.exists() and marker.read_text() == version:
        return folder
    tmp = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / MARKER).write_text(version)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (marker.exists() and marker.read_text() == version):
            raise
    return folder
