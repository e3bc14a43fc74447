import os
import sys
from pathlib import Path

import pytest

# Quiet, offline, deterministic: tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process (the test's own, its training subprocesses, notebook kernels): the tiny models
# gain nothing from more, and on a shared machine (load above the core count) torch's default of one thread per
# core made the end-to-end tests 5x slower (measured: test_train_end_to_end 214 s vs 44 s at load ~7 on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
if "torch" in sys.modules:  # imported by a plugin before this file: set it there too
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
