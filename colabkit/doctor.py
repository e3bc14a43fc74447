"""The environment check: versions against the ranges we support, GPU, RAM, disk, Drive.

Reads versions from package metadata (no heavy import), so it answers even when Colab's
latest update broke torch or diffusers: that is exactly when the user needs it.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from colabkit.i18n import _

# Kept equal to setup.cfg's install_requires by a test.
SUPPORTED: dict[str, str] = {
    "torch": ">=2.4,<3",
    "diffusers": ">=0.35,<0.50",
    "transformers": ">=5.15,<6",  # what the suite runs (Colab's); 4.x is untested
    "peft": ">=0.17,<0.30",
    "accelerate": ">=1.8,<2",
    "safetensors": ">=0.5,<1",
    "huggingface_hub": ">=0.34,<2",
}
# The Pythons the suite has passed on (setup.cfg's classifiers list the same). setup.cfg's python_requires
# keeps only the lower bound: a cap there would make pip on a newer Colab fall back to an older colabkit
# or fail with a resolver message, while the doctor can say what to do.
PYTHON = ">=3.11,<3.14"
PYTHON_REQUIRES = ">=3.11"

# Optional packages: not preinstalled on Colab, installed by the notebooks' first cell.
EXTRAS: dict[str, dict[str, str]] = {
    "train": {"bitsandbytes": "bitsandbytes>=0.45", "prodigyopt": "prodigyopt>=1.1"},
    "tag": {"onnxruntime": "onnxruntime>=1.20"},
    # Colab ships ipywidgets 7.7.1; the editor works with 7 and 8 and a reinstall breaks Colab's widget display.
    "notebook": {"ipywidgets": "ipywidgets>=7.7,<9", "matplotlib": "matplotlib>=3.8"},
}


@dataclass(frozen=True)
class ColabRuntime:
    """One of Colab's runtime versions, as *Runtime > Change runtime type > Runtime version* lists them."""

    version: str
    python: str
    torch: str
    name: str = ""

    def describe(self) -> str:
        py, torch = ".".join(self.python.split(".")[:2]), ".".join(self.torch.split(".")[:2])
        name = f' "{self.name}"' if self.name else ""
        return f"{self.version}{name} (Python {py}, torch {torch})"


# Colab's runtime versions, newest first (googlecolab/backend-info, GPU image; ../shared/reference/README.md).
# When Google updates Colab, the previous versions stay selectable for a while: this table is what the doctor
# points to when the runtime has moved outside the ranges above.
COLAB_RUNTIMES: tuple[ColabRuntime, ...] = (
    ColabRuntime("2026.08", "3.13.15", "2.11.0", "Python 3.13 upgrade"),
    ColabRuntime("2026.07", "3.12.13", "2.11.0"),
    ColabRuntime("2026.04", "3.12.13", "2.10.0"),
    ColabRuntime("2026.01", "3.12.12", "2.9.0"),
    ColabRuntime("2025.10", "3.12.12", "2.8.0"),
)
# The runtime the notebooks were last tested on: CI installs its versions (constraints/colab.txt, kept equal
# to TESTED_VERSIONS by a test; torch there is the CPU build of CI machines).
TESTED_RUNTIME = "2026.08"
TESTED_VERSIONS: dict[str, str] = {
    "torch": "2.11.0", "transformers": "5.15.0", "diffusers": "0.39.0", "accelerate": "1.14.0", "peft": "0.20.0",
    "safetensors": "0.8.0", "huggingface_hub": "1.27.0", "numpy": "2.1.3", "pillow": "11.3.0",
    "matplotlib": "3.10.0", "tqdm": "4.67.3", "ipywidgets": "7.7.1", "ipykernel": "6.17.1",
    "jupyter_client": "7.4.9", "notebook": "6.5.7",
}


def tested_runtime() -> ColabRuntime:
    return next(r for r in COLAB_RUNTIMES if r.version == TESTED_RUNTIME)


def _minor(version: str) -> tuple[int, ...]:
    return Version(version.split("+")[0]).release[:2]


def identify_runtime(python: str, torch: str | None) -> ColabRuntime | None:
    """The Colab runtime version whose Python and torch (major.minor) these are, or None when none matches."""
    if torch is None:
        return None
    try:
        return next((r for r in COLAB_RUNTIMES if _minor(r.python) == _minor(python) and _minor(r.torch) == _minor(torch)),
                    None)
    except InvalidVersion:
        return None


def runtime_advice(python: str, torch: str | None) -> str:
    """What to do when versions are outside our ranges: which Colab runtime version to pick, and how.

    A runtime version in our table means something installed in this runtime replaced a package: a fresh
    runtime of the same version fixes it. Otherwise Colab has changed since we tested: pick an older one.
    """
    here = identify_runtime(python, torch)
    usable = [r for r in COLAB_RUNTIMES if in_range(r.python, PYTHON) and in_range(r.torch, SUPPORTED["torch"])]
    if here is not None and here in usable:
        return _("This looks like Colab runtime {runtime}, which colabkit supports: something installed in this "
                 "runtime replaced a package. Fix: Runtime > Disconnect and delete runtime, then run the notebook "
                 "again from the top (never pip install torch, diffusers or transformers yourself).").format(
            runtime=here.describe())
    if not usable:  # only if our ranges exclude every runtime we know: nothing to point to
        return _("Colab has changed since colabkit was last tested: install a colabkit release made after this "
                 "runtime.")
    first, *others = sorted(usable, key=lambda r: r.version != TESTED_RUNTIME)
    rest = _("; if it is not offered: {runtimes}").format(runtimes=_(", then ").join(r.describe() for r in others)) \
        if others else ""
    return _("Colab has changed since colabkit was last tested (on runtime {runtime}). Fix: Runtime > Change "
             "runtime type > Runtime version: {version}{rest}. Save, then run the notebook again from the top.").format(
        runtime=first.describe(), version=first.version, rest=rest)


@dataclass
class PackageCheck:
    name: str
    version: str | None
    wanted: str
    ok: bool


@dataclass
class GpuInfo:
    name: str
    vram_gb: float
    capability: tuple[int, int]

    @property
    def native_bf16(self) -> bool:
        # A T4 (7.5) reports bf16 "supported" through slow emulation; only Ampere (8.0) and newer have it.
        return self.capability >= (8, 0)


@dataclass
class Report:
    python: str
    python_ok: bool
    packages: list[PackageCheck]
    missing_extras: dict[str, list[str]]
    gpu: GpuInfo | None
    ram_free_gb: float | None
    ram_total_gb: float | None
    disk_free_gb: float
    drive_root: Path
    drive_mounted: bool
    in_colab: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        ok = _("ok")
        out = [f"Python {self.python} ({ok if self.python_ok else _('tested: {versions}').format(versions=PYTHON)})",
               _("Notebooks last tested on Colab runtime {runtime}").format(runtime=tested_runtime().describe())]
        for p in self.packages:
            mark = ok if p.ok else _("NOT in {wanted}").format(wanted=p.wanted)
            out.append(f"{p.name} {p.version or _('missing')} ({mark})")
        if self.gpu:
            g = self.gpu
            out.append(_("GPU {name}, {vram:.1f} GB, compute {capability}, {precision}").format(
                name=g.name, vram=g.vram_gb, capability=f"{g.capability[0]}.{g.capability[1]}",
                precision=_("bf16 native") if g.native_bf16 else _("fp16 only (no native bf16)")))
        else:
            out.append(_("GPU: none"))
        if self.ram_total_gb:
            out.append(_("RAM {free:.1f} GB free of {total:.1f} GB").format(free=self.ram_free_gb,
                                                                             total=self.ram_total_gb))
        out.append(_("Disk {free:.1f} GB free at {folder}").format(free=self.disk_free_gb, folder=self.drive_root))
        out.append((_("Drive: Google Drive mounted at {folder}") if self.drive_mounted
                    else _("Drive: local folder (not Google Drive) at {folder}")).format(folder=self.drive_root))
        for extra, names in self.missing_extras.items():
            if names:
                out.append(_("optional for {extra}: {names} not installed").format(extra=extra, names=", ".join(names)))
        out.extend(_("PROBLEM: {problem}").format(problem=p) for p in self.problems)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def in_range(version: str | None, spec: str) -> bool:
    if version is None:
        return False
    try:
        # Local tags such as "+cu128" or "+cpu" do not change what API we get.
        return Version(version.split("+")[0]) in SpecifierSet(spec)
    except InvalidVersion:
        return False


def missing_extras(extras=EXTRAS) -> dict[str, list[str]]:
    return {extra: [mod for mod in mods if importlib.util.find_spec(mod) is None] for extra, mods in extras.items()}


def gpu_info() -> GpuInfo | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return GpuInfo(name=props.name, vram_gb=props.total_memory / 2**30, capability=(props.major, props.minor))


def _meminfo() -> tuple[float | None, float | None]:
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        kb = lambda key: float(info[key].strip().split()[0])  # noqa: E731
        return kb("MemAvailable") / 2**20, kb("MemTotal") / 2**20
    except (OSError, KeyError, ValueError):
        return None, None


# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal ... (in clock ticks). Steal is time the
# hypervisor gave to other machines: capacity this one cannot use, so it counts as busy.
_BUSY, _IDLE = (0, 1, 2, 5, 6, 7), (3, 4)


def busy_cores(before: list[int], after: list[int], cores: int, own_cpu_s: float, wall_s: float) -> float:
    """Cores' worth of CPU the rest of the machine used between two /proc/stat "cpu" samples, this process's
    own CPU time (``own_cpu_s`` over ``wall_s``) left out."""
    delta = [b - a for a, b in zip(before, after)]
    busy = sum(delta[i] for i in _BUSY if i < len(delta))
    total = busy + sum(delta[i] for i in _IDLE if i < len(delta))
    if total <= 0 or wall_s <= 0:
        return 0.0
    return max(0.0, busy / total * cores - own_cpu_s / wall_s)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity; all of them where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_sample() -> tuple[list[int], float, float] | None:
    """The machine's CPU counters (/proc/stat's "cpu" line), this process's CPU seconds and the time; None where
    there is no /proc/stat (not Linux). Two samples give ``busy_cores``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        t = os.times()
        return [int(x) for x in fields[1:]], t.user + t.system, time.monotonic()
    except (OSError, ValueError):
        return None


def busy_cores_between(a: tuple[list[int], float, float], b: tuple[list[int], float, float]) -> float:
    # /proc/stat counts every CPU of the machine, whatever this process's affinity
    return busy_cores(a[0], b[0], os.cpu_count() or 1, b[1] - a[1], b[2] - a[2])


def other_cpu_load(seconds: float = 0.25, since: tuple[list[int], float, float] | None = None) -> float | None:
    """What the rest of the machine keeps busy now, in cores, measured over at least ``seconds``: from
    ``since`` (an earlier ``cpu_sample``, so the time this process spent working since then serves, and only
    what is missing is slept), else from now. None where there is no /proc/stat."""
    before = since or cpu_sample()
    if before is None:
        return None
    time.sleep(max(0.0, seconds - (time.monotonic() - before[2])))
    after = cpu_sample()
    return None if after is None else busy_cores_between(before, after)


def check(need_gpu: bool = False) -> Report:
    from colabkit.project import COLAB_DRIVE_ROOT, drive_root, in_colab

    root = drive_root()
    probe = root if root.exists() else Path.cwd()
    py = platform.python_version()
    packages = [PackageCheck(name, v := installed_version(name), spec, in_range(v, spec)) for name, spec in SUPPORTED.items()]
    free, total = _meminfo()
    colab = in_colab()
    report = Report(
        python=py,
        python_ok=in_range(py, PYTHON),
        packages=packages,
        missing_extras=missing_extras(),
        gpu=gpu_info(),
        ram_free_gb=free,
        ram_total_gb=total,
        disk_free_gb=shutil.disk_usage(probe).free / 2**30,
        drive_root=root,
        drive_mounted=colab and root == COLAB_DRIVE_ROOT and root.is_dir(),
        in_colab=colab,
    )
    report.problems.extend(version_problems(py, {p.name: p.version for p in packages}, colab))
    if need_gpu and report.gpu is None:
        report.problems.append(no_gpu_message(colab))
    if colab and not report.drive_mounted:
        report.problems.append(_("Google Drive is not mounted: run the set-up cell again and allow access."))
    return report


def version_problems(python: str, versions: dict[str, str | None], colab: bool) -> list[str]:
    """One line per version outside our ranges, then (in Colab) which runtime version to pick."""
    problems = []
    if not in_range(python, PYTHON):
        problems.append(_("Python {version} is outside the Pythons colabkit is tested on ({tested}).").format(
            version=python, tested=PYTHON))
    for name, have in versions.items():
        if not in_range(have, SUPPORTED[name]):
            fix = "" if colab else " " + _("Fix: pip install '{requirement}'").format(
                requirement=f"{name}{SUPPORTED[name]}")
            problems.append(_("{name} is {version}; colabkit supports {supported}.").format(
                name=name, version=have or _("not installed"), supported=SUPPORTED[name]) + fix)
    if problems and colab:
        # In Colab a pip install of torch & co. is what breaks runtimes: the fix is the runtime version.
        problems.append(runtime_advice(python, versions.get("torch")))
    return problems


def no_gpu_message(colab: bool | None = None) -> str:
    from colabkit.project import in_colab

    if colab if colab is not None else in_colab():
        return _("No GPU in this runtime. In Colab: Runtime > Change runtime type > T4 GPU > Save, then run the "
                 "notebook again from the top.")
    return _("No CUDA GPU found. Training SDXL needs one (the built-in tiny-sdxl model runs on the CPU).")


def pip_install_command(extras: list[str], constraints: str | os.PathLike | None = None) -> list[str]:
    """The pip arguments that add the missing optional packages, and nothing Colab already ships.

    ``constraints``: a file of ``name==version`` lines (``runtime_constraints``): pip must then keep every
    installed package as it is, so a new release of an extra that wants a newer torch or numpy fails to install
    instead of replacing Colab's own build in the middle of a session."""
    import sys

    wanted = []
    for extra in extras:
        for mod, req in EXTRAS.get(extra, {}).items():
            if importlib.util.find_spec(mod) is None:
                if mod == "onnxruntime" and gpu_info() is not None:
                    req = req.replace("onnxruntime", "onnxruntime-gpu")  # same module, CUDA provider included
                wanted.append(req)
    pinned = ["-c", str(constraints)] if constraints else []
    return [sys.executable, "-m", "pip", "install", "-q", *pinned, *wanted] if wanted else []


def runtime_constraints(path: str | os.PathLike) -> Path:
    """Write a pip constraints file pinning every installed distribution (torch, numpy and the rest of the
    runtime's set) at its installed version; returns its path."""
    from packaging.utils import canonicalize_name

    pins = {}
    for dist in md.distributions():
        name, version = dist.metadata["Name"], dist.version
        if not name or not version:
            continue
        try:
            Version(version)
        except InvalidVersion:
            continue  # pip could not read the pin either
        pins.setdefault(canonicalize_name(name), version)
    path = Path(path)
    path.write_text("".join(f"{name}=={v}\n" for name, v in sorted(pins.items())))
    return path
