import importlib
import importlib.metadata as md
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest

from colabkit import colab, display, doctor, i18n
from colabkit.errors import ColabkitError
from helpers.colab_runtime import in_process


class FakePip:
    """subprocess.run for pip: records the command, answers with ``returncode`` and ``stderr``."""

    def __init__(self, returncode=0, stderr=""):
        self.calls, self.returncode, self.stderr = [], returncode, stderr

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


def test_setup_installs_only_missing_extras_in_colab_pinning_the_runtime(monkeypatch, drive):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("bitsandbytes", "prodigyopt") else real_find(name, *a))
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    pip = FakePip()
    monkeypatch.setattr(colab.subprocess, "run", pip)
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    invalidated = []
    monkeypatch.setattr(importlib, "invalidate_caches", lambda: invalidated.append(1))
    colab.setup(extras=["train"])
    assert len(pip.calls) == 1 and invalidated  # what was installed imports without a restart
    cmd = pip.calls[0]
    c = cmd.index("-c")
    assert cmd[c + 2:] == ["bitsandbytes>=0.45", "prodigyopt>=1.1"]  # never torch, transformers or diffusers
    pins = dict(line.split("==") for line in Path(cmd[c + 1]).read_text().splitlines())
    # everything the runtime has stays as it is: a new release wanting another torch or numpy fails instead
    for name in ("torch", "numpy", "transformers", "diffusers", "pillow"):
        assert pins[name] == md.version(name), name


def test_a_failed_install_is_one_line_and_setup_goes_on(monkeypatch, drive):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prodigyopt" else real_find(name, *a))
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    why = "ERROR: Cannot install prodigyopt==9.0 because these package versions have conflicting dependencies."
    monkeypatch.setattr(colab.subprocess, "run", FakePip(1, f"noise\n{why}\nERROR: ResolutionImpossible: see docs\n"))
    from colabkit import display

    said = []
    monkeypatch.setattr(display, "show_text", lambda text, kind="info": said.append((kind, text)))
    report = colab.setup(extras=["train"])
    errors = [t for k, t in said if k == "error"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith("Could not install prodigyopt>=1.1: ERROR: ResolutionImpossible")
    assert report is not None  # the check still ran and says what is missing


def test_setup_outside_colab_reports_the_fix(monkeypatch, drive, capsys):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prodigyopt" else real_find(name, *a))
    report = colab.setup(extras=["train"])
    assert any("prodigyopt>=1.1" in p for p in report.problems)
    assert "PROBLEM: Missing optional packages" in capsys.readouterr().out


def test_no_gpu_is_said_before_installing(monkeypatch, drive, capsys):
    order = []
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr("colabkit.project.in_colab", lambda: True)
    monkeypatch.setattr(doctor, "pip_install_command",
                        lambda extras, constraints=None: order.append("pip") or ["pip", "install", "x"])
    monkeypatch.setattr(colab.subprocess, "run",
                        lambda cmd, **kw: order.append("run") or subprocess.CompletedProcess(cmd, 0, "", ""))
    from colabkit import display

    monkeypatch.setattr(display, "show_text", lambda text, kind="info": order.append(("say", text)))
    colab.setup(extras=["train"], need_gpu=True)
    assert order[0][0] == "say" and "Runtime > Change runtime type > T4 GPU" in order[0][1]
    assert order.index("run") > 0


def test_onnxruntime_gpu_on_gpu_runtimes(monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find(name, *a))
    monkeypatch.setattr(doctor, "gpu_info", lambda: doctor.GpuInfo("Tesla T4", 15.0, (7, 5)))
    assert doctor.pip_install_command(["tag"])[-1] == "onnxruntime-gpu>=1.20"
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    assert doctor.pip_install_command(["tag"])[-1] == "onnxruntime>=1.20"


def test_runtime_clock_reads_when_the_container_started(monkeypatch, tmp_path):
    assert colab.runtime_start_time() <= time.time()
    monkeypatch.setenv("COLABKIT_RUNTIME_START", "1000.5")
    assert colab.runtime_start_time() == 1000.5
    monkeypatch.delenv("COLABKIT_RUNTIME_START")
    # A /proc as Colab's container shows it: PID 1 started 123456 ticks after boot (field 22 of its stat; the
    # command name may hold spaces and parentheses), the machine booted at btime.
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    fields = ["S", "0", "1", "1", "0", "-1", "4194560"] + ["0"] * 12 + ["123456", "1000", "200"]
    (proc / "1" / "stat").write_text(f"1 (docker-init) (x)) {' '.join(fields)}\n")
    (proc / "stat").write_text("cpu  1 2 3\nintr 5\nbtime 1764650000\nprocesses 99\n")
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    assert colab.runtime_start_time(proc) == 1764650000 + 123456 / os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(colab, "in_colab", lambda: False)  # elsewhere: this process's start
    assert colab.runtime_start_time(proc) == colab._PROCESS_START


def test_not_colab_nothing_to_flush(drive):
    assert colab.flush_drive() is None  # a local Drive folder: nothing to flush


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    with in_process(tmp_path, monkeypatch) as c:
        yield c


def test_setup_mounts_drive_at_colabs_root(fake_colab, monkeypatch):
    from colabkit import display, project

    monkeypatch.setattr(display, "show_report", lambda report: None)
    assert project.in_colab() and not fake_colab.mounted_root.exists()  # a fresh runtime: Drive unmounted
    report = colab.setup(extras=[])
    assert fake_colab.log() == [f"mount {fake_colab.content / 'drive'}"]
    assert fake_colab.mounted_root.is_symlink() and fake_colab.mounted_root.resolve() == fake_colab.my_drive.resolve()
    assert report.drive_mounted and report.drive_root == fake_colab.mounted_root
    assert project.drive_root() == fake_colab.mounted_root


def test_every_step_mounts_drive_again(fake_colab):
    from colabkit import project
    from colabkit.errors import ColabkitError

    (fake_colab.my_drive / "Loras" / "cr" / "dataset").mkdir(parents=True)
    assert project.open_project("cr").root == fake_colab.mounted_root / "Loras" / "cr"
    ok, line = colab.flush_drive(timeout_ms=1234)
    assert ok and "flushed and unmounted" in line and not fake_colab.mounted_root.exists()
    assert fake_colab.log()[-1] == "flush_and_unmount timeout_ms=1234"
    assert project.open_project("cr").exists()  # mounted again, not "No project 'cr'"
    with pytest.raises(ColabkitError, match="No project 'nope'.*Projects found: cr"):
        project.open_project("nope")


def test_refused_access_is_one_clear_line(fake_colab, monkeypatch):
    from colabkit.errors import ColabkitError

    monkeypatch.setenv("FAKE_COLAB_MOUNT", "refuse")
    with pytest.raises(ColabkitError) as e:
        colab.mount_drive()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Google Drive is not mounted (Error: credential propagation")
    assert "allow access" in msg
    assert not fake_colab.mounted_root.exists() and not (fake_colab.content / "drive" / "MyDrive").exists()


@pytest.mark.parametrize("failure", ["ValueError", "NotImplementedError"])
def test_a_failed_flush_is_one_line(fake_colab, monkeypatch, failure):
    colab.mount_drive()
    monkeypatch.setenv("FAKE_COLAB_FLUSH", failure)
    ok, line = colab.flush_drive()
    assert not ok and line.startswith("Drive could not be flushed (flush_and_unmount failed") and "\n" not in line
    assert fake_colab.log()[-1] == f"flush_and_unmount timeout_ms={colab.FLUSH_TIMEOUT_MS}"
    assert colab.FLUSH_TIMEOUT_MS <= 600_000  # within the budget's 10-minute margin, not Colab's 24 h default


def test_release_runtime_only_when_ticked(fake_colab, capsys):
    colab.mount_drive()
    assert colab.release_runtime(False) is False
    assert "Runtime > Disconnect and delete runtime" in capsys.readouterr().out
    assert "unassign" not in fake_colab.log()
    assert colab.release_runtime(True) is True
    assert fake_colab.log()[-2:] == [f"flush_and_unmount timeout_ms={colab.FLUSH_TIMEOUT_MS}", "unassign"]


def test_stale_temporaries_go_without_a_trace_in_the_trash(fake_colab, monkeypatch):
    from colabkit import files

    root = colab.mount_drive()
    models = root / "Loras" / "_models"
    models.mkdir(parents=True)
    cut = models / ".sdxl.safetensors.abc123.tmp"  # a model copy an earlier runtime was cut in
    cut.write_bytes(b"x" * 5000)
    os.utime(cut, (1000, 1000))
    fresh = models / ".other.safetensors.def456.tmp"  # one this runtime is writing now
    fresh.write_bytes(b"y" * 10)
    kept = models / "sdxl.safetensors"
    kept.write_bytes(b"model")
    monkeypatch.setenv("COLABKIT_RUNTIME_START", str(time.time() - 60))
    assert colab.remove_stale_temporaries() == [cut]
    assert not cut.exists() and fresh.exists() and kept.exists()
    assert fake_colab.trashed() == 0  # truncated before removal
    kept.unlink()  # a plain delete, as colabkit used to: the bytes stay in Drive's trash
    assert fake_colab.trashed() == 5
    files.remove_tree_for_good(models)
    assert fake_colab.trashed() == 5 and not models.exists()


def test_the_stand_in_secrets_answer_as_colabs_do(fake_colab, monkeypatch):
    monkeypatch.setenv("FAKE_COLAB_SECRETS", '{"HF_TOKEN": "hf_x", "CIVITAI_TOKEN": null}')
    from google.colab import userdata

    assert userdata.get("HF_TOKEN") == "hf_x"
    with pytest.raises(userdata.NotebookAccessError):  # exists, but this notebook was not granted it
        userdata.get("CIVITAI_TOKEN")
    with pytest.raises(userdata.SecretNotFoundError):
        userdata.get("NOPE")


def test_a_drive_root_inside_mydrive_is_mounted_first(fake_colab, monkeypatch):
    sub = fake_colab.mounted_root / "Work"
    monkeypatch.setenv("COLABKIT_DRIVE_ROOT", str(sub))
    assert colab.mount_drive() == sub
    assert fake_colab.log() == [f"mount {fake_colab.content / 'drive'}"]
    assert (fake_colab.my_drive / "Work").is_dir()  # on Drive, not on the runtime's disk
    assert colab.flush_drive()[0] is True


# colab.py paths the tests above left unchecked (issue 22: mutants that survived, see benchmarks/RESULTS.md).

@pytest.fixture
def said(monkeypatch):
    """Every line colabkit shows, as (kind, text)."""
    lines = []
    monkeypatch.setattr(display, "show_text", lambda text, kind="info": lines.append((kind, text)))
    return lines


@pytest.fixture
def english(monkeypatch):
    monkeypatch.setattr(i18n, "_language", "en")  # restored after the test, whatever setup() chose


def _missing(monkeypatch, *names):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real_find(name, *a))


def test_a_mount_that_returns_without_mydrive_is_an_error_not_a_folder_on_the_runtimes_disk(fake_colab, monkeypatch,
                                                                                             english):
    from google.colab import drive

    monkeypatch.setattr(drive, "mount", lambda mountpoint, **kw: None)  # "succeeds", MyDrive never shows up
    with pytest.raises(ColabkitError) as e:
        colab.mount_drive()
    assert str(e.value) == (f"Google Drive did not appear at {fake_colab.mounted_root} after mounting. "
                            "Run this cell again.")
    assert not fake_colab.mounted_root.exists()  # never created on the runtime's disk, where it is gone tomorrow


def test_a_mount_failure_without_a_message_names_its_type(fake_colab, monkeypatch, english):
    from google.colab import drive

    def mount(mountpoint, **kw):
        raise TimeoutError()

    monkeypatch.setattr(drive, "mount", mount)
    with pytest.raises(ColabkitError) as e:
        colab.mount_drive()
    assert str(e.value) == ("Google Drive is not mounted (TimeoutError). Run this cell again and allow access to "
                            "Google Drive in the window that opens: colabkit keeps your project there.")


def test_a_flush_failure_without_a_message_names_its_type(fake_colab, monkeypatch, english):
    from google.colab import drive

    colab.mount_drive()

    def flush(timeout_ms):
        raise TimeoutError()

    monkeypatch.setattr(drive, "flush_and_unmount", flush)
    assert colab.flush_drive() == (False, "Drive could not be flushed (TimeoutError). Keep this runtime open a few "
                                          "minutes so Colab finishes uploading, then run the training cell again "
                                          "tomorrow.")


def _stale(path, old: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)
    if old:
        os.utime(path, (1000, 1000))
    return path


@pytest.mark.parametrize("explicit_root", [False, True])
def test_stale_temporaries_go_from_models_and_every_output_folder_and_nowhere_else(fake_colab, monkeypatch, tmp_path,
                                                                                   explicit_root):
    mounted = colab.mount_drive()
    other = tmp_path / "OtherDrive"  # an explicit root: its folders, never the mounted Drive's
    root = other if explicit_root else mounted
    loras = root / "Loras"
    gone = [_stale(loras / "_models" / ".sdxl.safetensors.a1.tmp", True),
            _stale(loras / "cr" / "output" / ".cr-000002.safetensors.b2.tmp", True),
            _stale(loras / "group" / "cr2" / "output" / ".cr2-000001.safetensors.c3.tmp", True)]
    kept = [_stale(loras / "cr" / "output" / ".cr-000003.safetensors.d4.tmp", False),  # being written now
            _stale(loras / "cr" / "output" / "cr-000001.safetensors", True),  # a finished epoch file
            _stale(loras / "cr" / "dataset" / ".img.png.e5.tmp", True),  # not a folder colabkit writes into
            _stale(loras / "cr" / "training" / ".state.f6.tmp", True)]
    elsewhere = _stale((mounted if explicit_root else other) / "Loras" / "_models" / ".x.safetensors.g7.tmp", True)
    monkeypatch.setenv("COLABKIT_RUNTIME_START", str(time.time() - 60))
    removed = colab.remove_stale_temporaries(root) if explicit_root else colab.remove_stale_temporaries()
    assert sorted(removed) == sorted(gone)
    assert [p.exists() for p in gone] == [False] * 3
    assert [p.exists() for p in kept] == [True] * 4 and elsewhere.exists()


def test_setup_shows_each_problem_with_its_kind_and_passes_need_gpu_on(fake_colab, monkeypatch, said, english):
    _missing(monkeypatch, "prodigyopt")
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    monkeypatch.setattr(colab, "install_extras", lambda extras: "Could not install prodigyopt>=1.1: ERROR: no.")
    reports = []
    monkeypatch.setattr(display, "show_report", reports.append)
    report = colab.setup(extras=["train"], need_gpu=True)
    assert said == [("error", doctor.no_gpu_message(True)), ("error", "Could not install prodigyopt>=1.1: ERROR: no.")]
    assert reports == [report]
    assert doctor.no_gpu_message(True) in report.problems  # the check was asked for a GPU too
    assert not any(p.startswith("Missing optional packages") for p in report.problems)  # in Colab it installs


def test_setup_without_need_gpu_does_not_ask_for_one(fake_colab, monkeypatch, said, english):
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    monkeypatch.setattr(colab, "install_extras", lambda extras: None)
    monkeypatch.setattr(display, "show_report", lambda report: None)
    report = colab.setup(extras=[])
    assert said == [] and doctor.no_gpu_message(True) not in report.problems


def test_setup_outside_colab_gives_the_exact_fix_line(drive, monkeypatch, said, english):
    _missing(monkeypatch, "prodigyopt")
    monkeypatch.setattr(display, "show_report", lambda report: None)
    report = colab.setup(extras=["train"])
    fixes = [p for p in report.problems if p.startswith("Missing optional packages")]
    assert fixes == ["Missing optional packages for this notebook. Fix: pip install -q prodigyopt>=1.1"]


def test_setup_switches_to_the_notebooks_language_and_keeps_it_without_one(drive, monkeypatch, said, english):
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    monkeypatch.setattr(display, "show_report", lambda report: None)
    colab.setup(extras=[], need_gpu=True, language="Español")
    assert i18n.language() == "es"
    spanish = ("No se encontró ninguna GPU CUDA. Para entrenar SDXL hace falta una (el modelo incorporado tiny-sdxl "
               "funciona en la CPU).")
    assert said == [("error", spanish)]
    colab.setup(extras=[], language=None)  # no language field: the one chosen before stays
    assert i18n.language() == "es"


def test_release_runtime_by_default_only_says_how(fake_colab, said, english):
    colab.mount_drive()
    assert colab.release_runtime() is False
    assert said == [("info", "Done with this notebook? Release the runtime: Runtime > Disconnect and delete runtime "
                             "(or tick release_runtime and run this cell). An idle runtime still uses your Colab "
                             "quota. Your files are safe on Drive.")]
    assert "unassign" not in fake_colab.log() and fake_colab.mounted_root.is_dir()


def test_open_or_create_project_mounts_drive_and_makes_the_folders_keeping_files(fake_colab, monkeypatch):
    shown = []
    monkeypatch.setattr(display, "show_project", shown.append)
    keep = fake_colab.my_drive / "Loras" / "cr" / "dataset" / "a.png"
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"art")
    project = colab.open_or_create_project("cr")
    assert fake_colab.log() == [f"mount {fake_colab.content / 'drive'}"]
    assert project.name == "cr" and project.root == fake_colab.mounted_root / "Loras" / "cr"
    assert [(fake_colab.my_drive / "Loras" / "cr" / d).is_dir() for d in ("dataset", "output", "training")] == [True] * 3
    assert keep.read_bytes() == b"art" and shown == [project]


def test_once_public_the_install_source_and_colab_links_come_from_the_repository_url(monkeypatch):
    assert colab.install_source() == "" and colab.open_in_colab_url("1_dataset.ipynb") is None  # no public copy yet
    monkeypatch.setattr(colab, "REPOSITORY_URL", "https://github.com/someone/colabkit.git")
    assert colab.install_source() == "git+https://github.com/someone/colabkit.git"
    assert colab.open_in_colab_url("2_train.ipynb") == \
        "https://colab.research.google.com/github/someone/colabkit/blob/main/notebooks/2_train.ipynb"
    monkeypatch.setattr(colab, "REPOSITORY_URL", "https://github.com/someone/colabkit")
    assert colab.open_in_colab_url("es/3_generate.ipynb") == \
        "https://colab.research.google.com/github/someone/colabkit/blob/main/notebooks/es/3_generate.ipynb"
