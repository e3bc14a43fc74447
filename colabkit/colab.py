"""Everything that differs in Colab: Drive mount and flush, the runtime's clock, installing extras.

Outside Colab each function has a plain local meaning, so notebooks run headless in tests and
the same engine runs on a local GPU.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from colabkit import doctor, files
from colabkit.errors import ColabkitError
from colabkit.i18n import _
from colabkit.project import COLAB_DRIVE_ROOT, COLAB_MOUNT_POINT, Project, drive_root, in_colab, loras_root

_PROCESS_START = time.time()

# The one place that says where colabkit is installed from in a fresh runtime. The notebooks' first cell
# (its `colabkit_source` default) and the README's "Open in Colab" links must agree with it (a test checks).
# Empty while no public copy exists: no made-up URL; the first cell then stops with one line saying what to
# put in `colabkit_source` (a git URL, a release on the package index, or a wheel on Drive).
REPOSITORY_URL = ""  # e.g. "https://github.com/<owner>/colabkit" once the repository is public


def install_source() -> str:
    """The default of the notebooks' ``colabkit_source``: a pip requirement, or "" when nothing is public."""
    return f"git+{REPOSITORY_URL}" if REPOSITORY_URL else ""


def open_in_colab_url(notebook: str) -> str | None:
    """Colab's link that opens ``notebooks/<notebook>`` straight from the repository, or None without one."""
    if not REPOSITORY_URL:
        return None
    path = REPOSITORY_URL.removeprefix("https://github.com/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"


def mount_drive() -> Path:
    """Mount Google Drive in Colab (asks the user once a runtime); elsewhere make sure the local root exists.

    Every step calls it (through ``project.open_project``): each notebook has its own runtime, Drive unmounted,
    and a budget stop unmounts it. Never creates Colab's MyDrive folder itself: that would put the project on
    the runtime's disk, which is gone tomorrow."""
    root = drive_root()
    if in_colab() and root.is_relative_to(COLAB_MOUNT_POINT):  # MyDrive, or a folder in it ($COLABKIT_DRIVE_ROOT)
        if not COLAB_DRIVE_ROOT.is_dir():
            from google.colab import drive

            try:
                drive.mount(str(COLAB_MOUNT_POINT))
            except Exception as e:  # access refused, popup closed or timed out: Colab raises, in several types
                raise ColabkitError(_(
                    "Google Drive is not mounted ({why}). Run this cell again and allow access to Google Drive in "
                    "the window that opens: colabkit keeps your project there.").format(why=str(e) or type(e).__name__)
                ) from None
        if not COLAB_DRIVE_ROOT.is_dir():
            raise ColabkitError(_("Google Drive did not appear at {root} after mounting. Run this cell again.")
                                .format(root=COLAB_DRIVE_ROOT))
        root.mkdir(parents=True, exist_ok=True)  # a folder inside MyDrive, now that it is there
        return root
    root.mkdir(parents=True, exist_ok=True)
    return root


# Colab's flush_and_unmount waits 24 h by default. The budget stop keeps a 10-minute margin for the save and the
# flush: the state and an epoch file (a few hundred MB) upload in well under that, a hung flush must not eat it.
FLUSH_TIMEOUT_MS = 5 * 60 * 1000


def flush_drive(timeout_ms: int = FLUSH_TIMEOUT_MS) -> tuple[bool, str] | None:
    """Push Drive's pending uploads. Colab has no flush-only call: this also unmounts Drive, so it comes last,
    after everything that reads Drive; the next step mounts it again.

    Returns None when there was nothing to flush (not Colab's mount, or not mounted), else whether it worked and
    one line for the artist: flushed, or why the flush failed (the files may still be on their way to Drive)."""
    root = drive_root()
    if not (in_colab() and COLAB_DRIVE_ROOT.is_dir()
            and (root.is_relative_to(COLAB_MOUNT_POINT) or root.is_relative_to(COLAB_DRIVE_ROOT.resolve()))):
        return None  # $COLABKIT_DRIVE_ROOT resolves through links: the stand-in's mount is one
    from google.colab import drive

    try:
        drive.flush_and_unmount(timeout_ms=timeout_ms)
    except Exception as e:  # ValueError, NotImplementedError, a timeout: never a traceback at the end of a day
        return False, _("Drive could not be flushed ({why}). Keep this runtime open a few minutes so Colab finishes "
                        "uploading, then run the training cell again tomorrow.").format(why=str(e) or type(e).__name__)
    return True, _("Drive was flushed and unmounted, so every file reached Google Drive; the next cell mounts it "
                   "again.")


def flush_drive_and_say() -> None:
    """flush_drive, and its line shown to the artist (nothing when there was nothing to flush)."""
    from colabkit import display

    flushed = flush_drive()
    if flushed:
        display.show_text(flushed[1], "ok" if flushed[0] else "warn")


def runtime_start_time(proc: str | os.PathLike = "/proc") -> float:
    """When the runtime started (UNIX time): the budget counts from here, not from the cell.

    In Colab the runtime is a container whose PID 1 starts with it; its start time is in
    <proc>/1/stat (clock ticks after boot, field 22), boot time in <proc>/stat. Elsewhere: when this process
    started, which is when the run started. ``proc``: another /proc-like folder (tests).
    """
    override = os.environ.get("COLABKIT_RUNTIME_START")
    if override:
        return float(override)
    if in_colab():
        proc = Path(proc)
        try:
            ticks = int((proc / "1" / "stat").read_text().rsplit(")", 1)[1].split()[19])
            btime = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines()
                         if line.startswith("btime"))
            return btime + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return _PROCESS_START


def install_extras(extras: list[str] | tuple[str, ...]) -> str | None:
    """Install the missing optional packages, pinning everything the runtime already has; None when done (or
    nothing was missing), else one line saying what failed and why."""
    import importlib
    import tempfile

    pins = Path(tempfile.gettempdir()) / f"colabkit-runtime-constraints-{os.getpid()}.txt"  # local disk, not Drive
    constraints = doctor.runtime_constraints(pins)
    cmd = doctor.pip_install_command(list(extras), constraints=constraints)
    if not cmd:
        return None
    done = subprocess.run(cmd, capture_output=True, text=True)
    importlib.invalidate_caches()  # what was just installed imports without a restart
    if done.returncode == 0:
        return None
    lines = [ln.strip() for ln in (done.stderr or "").splitlines() if ln.strip()]
    why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "pip failed")
    wanted = " ".join(a for a in cmd[cmd.index("install") + 1:] if not a.startswith("-") and a != str(constraints))
    return _("Could not install {packages}: {why}. Colab's own packages were left as they are; the check below "
             "says what is missing.").format(packages=wanted, why=why)


def remove_stale_temporaries(root: Path | None = None) -> list[Path]:
    """Temporary files an earlier runtime left on Drive (a model copy or a save cut by a disconnect), removed
    without a trace in Drive's trash. Only files older than this runtime: never one being written now."""
    base = loras_root(root)
    folders = [base / "_models", *base.glob("*/output"), *base.glob("*/*/output")]
    return files.remove_stale_temporaries(folders, before=runtime_start_time())


def setup(extras: list[str] | tuple[str, ...] = ("train", "notebook"), need_gpu: bool = False,
          language: str | None = None) -> doctor.Report:
    """First cell of every notebook: install missing optional packages (Colab only), mount Drive, then check.

    Never reinstalls torch/transformers/diffusers: Colab's own builds match its CUDA, and a
    reinstall is what broke the peer notebooks. Outside Colab nothing is installed; missing
    packages are reported with the command that adds them. ``language``: the notebook's language field ("English",
    "Español"), for everything colabkit shows from then on.
    """
    from colabkit import display
    from colabkit.i18n import set_language

    if language:  # the notebook's `language` field: every message from here on
        set_language(language)
    display.install_error_display()  # from here on a ColabkitError in a cell shows as its message alone
    if need_gpu and doctor.gpu_info() is None:
        # Said first, before minutes of installs: the fix is a runtime change, then a restart.
        display.show_text(doctor.no_gpu_message(), "error")
    if in_colab():
        failed = install_extras(extras)
        if failed:
            display.show_text(failed, "error")
    mount_drive()
    if in_colab():  # one runtime at a time writes there; elsewhere another process may be mid-write
        remove_stale_temporaries()
    report = doctor.check(need_gpu=need_gpu)
    cmd = doctor.pip_install_command(list(extras))
    if cmd and not in_colab():
        report.problems.append(_("Missing optional packages for this notebook. Fix: ") + " ".join(cmd[2:]))
    display.show_report(report)
    return report


def release_runtime(release: bool = False) -> bool:
    """The last cell of notebooks 1 and 3: say how to give the runtime back (an idle GPU runtime spends the same
    daily quota training needs), and release it at once when ``release`` is ticked. Returns True if released."""
    from colabkit import display

    if not in_colab():
        return False
    if not release:
        display.show_text(_("Done with this notebook? Release the runtime: Runtime > Disconnect and delete runtime "
                            "(or tick release_runtime and run this cell). An idle runtime still uses your Colab "
                            "quota. Your files are safe on Drive."), "info")
        return False
    flush_drive_and_say()
    display.show_text(_("Releasing this runtime now; your files are on Drive."), "ok")
    from google.colab import runtime

    runtime.unassign()
    return True


def open_or_create_project(project_name: str) -> Project:
    """Mount Drive, then create Loras/<project>/dataset|output (harmless if they exist)."""
    mount_drive()
    project = Project.at(project_name).create()
    from colabkit import display

    display.show_project(project)
    return project
