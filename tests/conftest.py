import os
from pathlib import Path

import pytest

# Quiet, offline, deterministic: tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_sdxl() -> Path:
    """The built-in tiny SDXL diffusers folder (built once per machine, in ~/.cache/colabkit)."""
    from colabkit.tiny.sdxl import tiny_sdxl_path

    return tiny_sdxl_path()


@pytest.fixture
def drive(tmp_path, monkeypatch) -> Path:
    """A fresh local stand-in for Google Drive's MyDrive, via COLABKIT_DRIVE_ROOT."""
    root = tmp_path / "MyDrive"
    root.mkdir()
    monkeypatch.setenv("COLABKIT_DRIVE_ROOT", str(root))
    return root
