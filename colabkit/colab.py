"""Everything that differs in Colab: Drive mount and flush, the runtime's clock, installing extras.

Outside Colab each function has a plain local meaning, so notebooks run headless in tests and
the same engine runs on a local GPU.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from colabkit import doctor
from colabkit.project import COLAB_DRIVE_ROOT, Project, drive_root, in_colab

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
    """Mount Google Drive in Colab (asks the user once); elsewhere make sure the local root exists."""
    root = drive_root()
    if in_colab() and root == COLAB_DRIVE_ROOT and not root.is_dir():
        from google.colab import drive

        drive.mount(str(COLAB_DRIVE_ROOT.parent))
    root.mkdir(parents=True, exist_ok=True)
    return root


def flush_drive() -> bool:
    """Push Drive's pending uploads. Colab has no flush-only call: this also unmounts Drive.

    Used once the day's run is over, so nothing written is left in the upload queue when the
    runtime is recycled. Returns True when something was flushed.
    """
    if not (in_colab() and drive_root() == COLAB_DRIVE_ROOT and COLAB_DRIVE_ROOT.is_dir()):
        return False
    from google.colab import drive

    drive.flush_and_unmount()
    return True


def runtime_start_time() -> float:
    """When the runtime started (UNIX time): the budget counts from here, not from the cell.

    In Colab the runtime is a container whose PID 1 starts with it; its start time is in
    /proc/1/stat (clock ticks after boot). Elsewhere: when this process started, which is
    when the run started.
    """
    override = os.environ.get("COLABKIT_RUNTIME_START")
    if override:
        return float(override)
    if in_colab():
        try:
            ticks = int(Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19])
            btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                         if line.startswith("btime"))
            return btime + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return _PROCESS_START


def setup(extras: list[str] | tuple[str, ...] = ("train", "notebook"), need_gpu: bool = False) -> doctor.Report:
    """First cell of every notebook: install missing optional packages (Colab only), then check.

    Never reinstalls torch/transformers/diffusers: Colab's own builds match its CUDA, and a
    reinstall is what broke the peer notebooks. Outside Colab nothing is installed; missing
    packages are reported with the command that adds them.
    """
    from colabkit import display

    display.install_error_display()  # from here on a ColabkitError in a cell shows as its message alone
    if need_gpu and doctor.gpu_info() is None:
        # Said first, before minutes of installs: the fix is a runtime change, then a restart.
        display.show_text(doctor.no_gpu_message(), "error")
    cmd = doctor.pip_install_command(list(extras))
    if cmd and in_colab():
        subprocess.run(cmd, check=True)
    report = doctor.check(need_gpu=need_gpu)
    if cmd and not in_colab():
        report.problems.append("Missing optional packages for this notebook. Fix: " + " ".join(cmd[2:]))
    display.show_report(report)
    return report


def open_or_create_project(project_name: str) -> Project:
    """Mount Drive, then create Loras/<project>/dataset|output (harmless if they exist)."""
    mount_drive()
    project = Project.at(project_name).create()
    from colabkit import display

    display.show_project(project)
    return project
