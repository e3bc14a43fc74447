"""Colab's paths that no local run takes, each checked fast: where Drive is, that the first cell mounts it before
installing a wheel from it, that the budget stop flushes it.

The stand-in runtime (tests/helpers/colab_runtime.py) moves Colab's /content for the tests, so the real constants
are checked here in a fresh interpreter, as a Colab runtime imports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from helpers.notebooks import NOTEBOOKS, set_params

ROOT = Path(__file__).resolve().parents[2]


def test_colabs_drive_is_at_content_drive_mydrive():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLABKIT_", "FAKE_COLAB_"))}
    code = ("import json, colabkit.project as p\n"
            "p.in_colab = lambda: True\n"
            "print(json.dumps([str(p.COLAB_MOUNT_POINT), str(p.COLAB_DRIVE_ROOT), str(p.drive_root()),"
            " str(p.loras_root())]))")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == ["/content/drive", "/content/drive/MyDrive", "/content/drive/MyDrive",
                               "/content/drive/MyDrive/Loras"]


class FirstCellRuntime:
    """A fresh Colab runtime as the notebooks' first cell meets it: no colabkit, google.colab's drive, pip.

    ``on_mount``: what the mount makes appear (the Drive's files)."""

    def __init__(self, monkeypatch, on_mount=lambda mountpoint: None):
        import importlib.machinery
        import importlib.util

        self.events = []
        real_find = importlib.util.find_spec
        fakes = {}
        for name in ("google", "google.colab", "google.colab.drive"):
            fakes[name] = types.ModuleType(name)
            fakes[name].__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name != "google.colab.drive")

        def mount(mountpoint, *a, **k):
            self.events.append(("mount", mountpoint))
            on_mount(mountpoint)

        fakes["google.colab.drive"].mount = mount
        fakes["google.colab"].drive = fakes["google.colab.drive"]
        fakes["google"].colab = fakes["google.colab"]
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "colabkit"
                            else fakes[name].__spec__ if name in fakes else real_find(name, *a))
        for name, module in fakes.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(subprocess, "run", self.run)
        import colabkit.colab

        monkeypatch.setattr(colabkit.colab, "setup", lambda **k: self.events.append(("setup",)))

    def run(self, cmd, **kw):
        self.events.append(("pip", cmd[-1]))
        return subprocess.CompletedProcess(cmd, 0, "", "")


NOTEBOOK_FILES = sorted(str(p.relative_to(NOTEBOOKS)) for p in NOTEBOOKS.glob("**/*.ipynb"))


def first_cell(notebook: str, source: str) -> str:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)  # what Colab runs: the .ipynb
    set_params(nb, {"colabkit_source": source})
    return next(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("notebook", NOTEBOOK_FILES)
def test_the_first_cell_mounts_drive_before_installing_from_it(notebook, monkeypatch, tmp_path):
    for name in ("COLABKIT_DRIVE_ROOT", "COLABKIT_COLAB_CONTENT"):
        monkeypatch.delenv(name, raising=False)
    wheel = "/content/drive/MyDrive/colabkit-0.1.0-py3-none-any.whl"  # a wheel the artist put on Drive
    rt = FirstCellRuntime(monkeypatch)
    exec(compile(first_cell(notebook, wheel), notebook, "exec"), {"__name__": "__main__"})
    assert rt.events == [("mount", "/content/drive"), ("pip", wheel), ("setup",)]

    # The download unzipped into MyDrive/Loras/_colabkit/: found only once Drive is mounted; the newest wins.
    content = tmp_path / "content"
    monkeypatch.setenv("COLABKIT_COLAB_CONTENT", str(content))

    def drive_appears(mountpoint):
        folder = Path(mountpoint) / "MyDrive" / "Loras" / "_colabkit"
        folder.mkdir(parents=True)
        for version in ("0.9.0", "0.10.0"):
            (folder / f"colabkit-{version}-py3-none-any.whl").write_bytes(b"")

    rt = FirstCellRuntime(monkeypatch, drive_appears)
    exec(compile(first_cell(notebook, ""), notebook, "exec"), {"__name__": "__main__"})
    newest = str(content / "drive" / "MyDrive" / "Loras" / "_colabkit" / "colabkit-0.10.0-py3-none-any.whl")
    assert rt.events == [("mount", str(content / "drive")), ("pip", newest), ("setup",)]


def test_a_budget_stop_flushes_drive_after_everything_that_reads_it(monkeypatch, tmp_path):
    from colabkit import colab, display
    from colabkit.train import run
    from colabkit.train.loop import TrainResult

    events = []
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"png")
    monkeypatch.setattr(run, "make_plan", lambda cfg, device=None: "plan")
    monkeypatch.setattr(run, "preflight", lambda plan, show=False: types.SimpleNamespace(raise_if_errors=lambda: None))
    monkeypatch.setattr(display, "show_text", lambda text, kind="info": events.append(("text", kind)))
    monkeypatch.setattr(display, "show_image", lambda path, *a, **k: events.append(("image", Path(path).name)))
    monkeypatch.setattr(colab, "flush_drive", lambda *a, **k: events.append(("flush",)) or (True, "flushed"))

    def result(status):
        return TrainResult(status, "msg", 2, 12, loss_plot=plot)

    monkeypatch.setattr(run, "train", lambda plan, reporter=None: result("stopped"))
    run.train_lora(object())
    assert ("flush",) in events and events.index(("flush",)) > events.index(("image", "loss.png"))
    assert events[-1] == ("text", "ok")  # the flush's own line, last


# -- what mutation testing found unguarded in colab.py (benchmarks/RESULTS.md) ------------------------------------

@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    from helpers.colab_runtime import in_process

    with in_process(tmp_path, monkeypatch) as colab:
        yield colab


def test_outside_colab_release_and_flush_do_nothing(drive, capsys, monkeypatch):
    from colabkit import colab

    assert colab.release_runtime(True) is False and colab.release_runtime(False) is False
    assert capsys.readouterr().out == ""  # no hint about Colab's runtime menu on a local machine
    assert colab.flush_drive() is None


def test_a_mounted_looking_folder_outside_colab_is_not_flushed(fake_colab, monkeypatch):
    from colabkit import colab

    colab.mount_drive()
    monkeypatch.setattr(colab, "in_colab", lambda: False)
    assert colab.flush_drive() is None and not any("flush" in line for line in fake_colab.log())


def test_nested_drive_roots_are_made_whole(fake_colab, monkeypatch, tmp_path):
    from colabkit import colab

    inside = fake_colab.mounted_root / "work" / "loras"  # a folder two levels inside MyDrive
    monkeypatch.setenv("COLABKIT_DRIVE_ROOT", str(inside))
    assert colab.mount_drive() == inside and inside.is_dir()
    monkeypatch.setattr(colab, "in_colab", lambda: False)
    local = tmp_path / "a" / "b" / "MyDrive"  # a local stand-in two levels down
    monkeypatch.setenv("COLABKIT_DRIVE_ROOT", str(local))
    assert colab.mount_drive() == local and local.is_dir()


def test_messages_in_full(fake_colab, monkeypatch, capsys):
    from colabkit import colab
    from colabkit.errors import ColabkitError

    monkeypatch.setenv("FAKE_COLAB_MOUNT", "refuse")
    with pytest.raises(ColabkitError) as e:
        colab.mount_drive()
    assert str(e.value).endswith("). Run this cell again and allow access to Google Drive in the window that opens: "
                                 "colabkit keeps your project there.")
    monkeypatch.delenv("FAKE_COLAB_MOUNT")
    colab.mount_drive()
    assert colab.flush_drive() == (True, "Drive was flushed and unmounted, so every file reached Google Drive; the next "
                                         "cell mounts it again.")
    colab.mount_drive()
    monkeypatch.setenv("FAKE_COLAB_FLUSH", "ValueError")
    ok, line = colab.flush_drive()
    assert line.endswith("). Keep this runtime open a few minutes so Colab finishes uploading, then run the training "
                         "cell again tomorrow.")
    monkeypatch.delenv("FAKE_COLAB_FLUSH")
    colab.mount_drive()
    capsys.readouterr()
    colab.release_runtime(False)
    out = capsys.readouterr().out
    assert ("Done with this notebook? Release the runtime: Runtime > Disconnect and delete runtime (or tick "
            "release_runtime and run this cell). An idle runtime still uses your Colab quota. Your files are safe on "
            "Drive.") in out


def test_in_colab_the_budget_counts_from_pid_1_in_the_real_proc(monkeypatch):
    import time

    from colabkit import colab

    if not os.path.exists("/proc/1/stat"):
        pytest.skip("no /proc")
    monkeypatch.delenv("COLABKIT_RUNTIME_START", raising=False)
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    ticks = int(Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19])
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    assert colab.runtime_start_time() == btime + ticks / os.sysconf("SC_CLK_TCK") <= time.time()


def test_a_ticked_release_flushes_then_says_so_in_that_order(fake_colab, monkeypatch):
    from colabkit import colab, display

    said = []
    monkeypatch.setattr(display, "show_text", lambda text, kind="info": said.append((kind, text)))
    colab.mount_drive()
    assert colab.release_runtime(True) is True
    assert said == [("ok", "Drive was flushed and unmounted, so every file reached Google Drive; the next cell mounts "
                           "it again."), ("ok", "Releasing this runtime now; your files are on Drive.")]
    said.clear()
    colab.mount_drive()
    monkeypatch.setenv("FAKE_COLAB_FLUSH", "ValueError")
    assert colab.release_runtime(True) is True
    assert [k for k, _ in said] == ["warn", "ok"] and said[0][1].startswith("Drive could not be flushed (")
    said.clear()
    colab.release_runtime(False)
    assert [k for k, _ in said] == ["info"]


@pytest.mark.parametrize("stderr, why", [
    ("noise\nERROR: first\nmore\nERROR: ResolutionImpossible\ntail\n", "ERROR: ResolutionImpossible"),  # last ERROR
    ("a warning\nanother\n  the last line  \n\n", "the last line"),  # no ERROR line: pip's last words
    ("", "pip failed"),
])
def test_a_failed_install_says_which_packages_and_pips_reason(monkeypatch, stderr, why):
    import importlib.util

    from colabkit import colab

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("bitsandbytes", "prodigyopt") else real_find(name, *a))
    calls = []

    def pip(cmd, **kw):
        calls.append(kw)
        return subprocess.CompletedProcess(cmd, 1, "", stderr)

    monkeypatch.setattr(colab.subprocess, "run", pip)
    line = colab.install_extras(["train"])
    assert calls == [{"capture_output": True, "text": True}]  # pip's output is read, not printed
    assert line == (f"Could not install bitsandbytes>=0.45 prodigyopt>=1.1: {why}. Colab's own packages were left as "
                    "they are; the check below says what is missing.")
