#!/usr/bin/env python
"""Mutation testing of the modules where a fault loses work or files, each against the fast tests that guard it.

    python benchmarks/mutation.py                      # every module below (hours on 2 cores; see RESULTS.md)
    python benchmarks/mutation.py train/state.py files.py --jobs 2
    python benchmarks/mutation.py --list               # the modules and their tests
    python benchmarks/mutation.py assets/cutout.py --only 'colabkit.assets.cutout.x_unmix_*'   # time-boxed: some

The tool is mutmut 3 (`pip install -e ".[dev]"`), not our own: it makes small faults (a changed operator, constant,
argument, a removed call...) one at a time and runs the tests that reach the mutated function; a mutant that no test
notices "survives". mutmut 3 over cosmic-ray here: all mutants live in one copy of the code behind a switch, and each
is run in a process forked from a warm pytest, so torch & co. are imported once per module, not once per mutant
(cosmic-ray starts the test command anew for each: seconds of torch/diffusers imports x hundreds of mutants on 2
shared cores). It also runs only the tests that cover the mutated function (measured in its first pass).

Each module runs in its own work folder (default /tmp/colabkit-mutation/<module>): a copy of colabkit/ and tests/
with a setup.cfg whose [mutmut] section names that one module and its tests, so runs of different modules never mix
and the repository gets no mutants/ folder. Not part of CI (nor of the README's test command): a habit, run after
changing one of these modules. Results: a line per module (killed / total = score), the survivors' names and
diffs in <work>/<module>/survivors.txt, a summary in <work>/summary.json; record them in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module (under colabkit/) -> the fast tests (pytest -m "not slow") that guard it. Paths that do not exist in this
# checkout are skipped, so the list can name tests that other branches add.
MODULES: dict[str, list[str]] = {
    "train/lora/keys.py": ["tests/train/test_lora_keys.py"],
    "train/lora/metadata.py": ["tests/train/test_lora_metadata.py"],
    "train/state.py": ["tests/train/test_state_store.py", "tests/train/test_budget_state.py"],
    "files.py": ["tests/core/test_files.py", "tests/train/test_budget_state.py", "tests/train/test_state_store.py"],
    "train/budget.py": ["tests/train/test_budget.py", "tests/train/test_budget_state.py", "tests/train/test_timing.py"],
    "colab.py": ["tests/core/test_colab.py", "tests/core/test_colab_faults.py", "tests/core/test_install_cell.py", "tests/colab"],
    "assets/cutout.py": ["tests/assets/test_cutout.py", "tests/assets/test_real_sheets.py", "tests/assets/test_unmix.py",
                         "tests/assets/test_cutout_model.py", "tests/assets/test_cutout_folder.py",
                         "tests/assets/test_keying.py"],
    "assets/atlas.py": ["tests/assets/test_atlas_schema.py", "tests/assets/test_atlas_packing.py",
                        "tests/assets/test_atlas.py", "tests/assets/test_cutout.py"],
}


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def prepare(module: str, tests: list[str], work: Path) -> Path:
    """A clean work folder: the package, the tests, and a setup.cfg that points mutmut at this one module."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / "colabkit", work / "colabkit", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    extra = [name for name in ("README.md", "LICENSE", "notebooks") if (ROOT / name).exists()]  # some tests read them
    for name in extra:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, work / name)
    cfg = (ROOT / "setup.cfg").read_text()
    lines = "\n    ".join
    cfg += (
        "\n[mutmut]\n"
        "source_paths = colabkit\n"
        f"only_mutate = colabkit/{module}\n"
        f"pytest_add_cli_args_test_selection =\n    {lines(tests)}\n"
        # fast tests only, no cache folder, no per-test timeout plugin fighting mutmut's own timeouts
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not slow\n    -p\n    no:timeout\n"
        # Each mutant forked from the process that ran the tests once: everything imported and warm. The fork server
        # (a clean process that has only collected the tests) makes every mutant import diffusers' lazily loaded
        # models again: ~25 s a mutant instead of ~1 s, and every mutant a timeout. With one OpenMP thread
        # (OMP_NUM_THREADS=1, set below and by tests/conftest.py) forking a CPU torch process is safe.
        "process_isolation = fork\n"
        "use_git_change_detection = false\n"
        + (f"also_copy =\n    {lines(extra)}\n" if extra else "")
    )
    (work / "setup.cfg").write_text(cfg)
    return work


def run_module(module: str, tests: list[str], base: Path, jobs: int, only: list[str] | None = None) -> dict:
    tests = [t for t in tests if (ROOT / t).exists()]
    if not tests:
        return {"module": module, "error": "no tests found"}
    work = prepare(module, tests, base / slug(module))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # import the mutants, not the checkout
    env.setdefault("OMP_NUM_THREADS", "1")
    mutmut = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
    t0 = time.time()
    with open(work / "mutmut.log", "w") as log:
        rc = subprocess.call([*mutmut, "run", "--max-children", str(jobs), *(only or [])], cwd=work, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    seconds = time.time() - t0
    subprocess.call([*mutmut, "export-cicd-stats"], cwd=work, env=env, stdout=subprocess.DEVNULL)
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    listing = subprocess.run([*mutmut, "results"], cwd=work, env=env, capture_output=True, text=True).stdout
    survivors = [line.strip().split(":")[0] for line in listing.splitlines()
                 if line.strip().endswith(("survived", "no tests", "suspicious"))]
    with open(work / "survivors.txt", "w") as out:
        for name in survivors:
            out.write(subprocess.run([*mutmut, "show", name], cwd=work, env=env, capture_output=True,
                                     text=True).stdout + "\n")
    # A timeout counts as noticed, as mutmut's own score counts it (a mutant that makes the tests hang is caught);
    # they are printed apart, as one can also be a survivor whose tests are slower than mutmut's CPU limit.
    killed = stats.get("killed", 0) + stats.get("timeout", 0)
    # the mutants that ran (a time-boxed run with --only leaves the others "not checked")
    total = sum(stats.get(k, 0) for k in ("killed", "survived", "no_tests", "timeout", "suspicious", "segfault"))
    return {"module": module, "tests": tests, "rc": rc, "seconds": round(seconds), "killed": killed, "total": total,
            "survived": stats.get("survived", 0), "no_tests": stats.get("no_tests", 0),
            "timeout": stats.get("timeout", 0), "suspicious": stats.get("suspicious", 0),
            "score": round(100 * killed / total, 1) if total else None, "survivors": survivors, "work": str(work)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="modules under colabkit/ (default: all of MODULES)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1: a shared 2-core machine)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/colabkit-mutation"), help="where the copies go")
    ap.add_argument("--list", action="store_true", help="print the modules and their tests, run nothing")
    ap.add_argument("--only", action="append", help="mutant names (fnmatch patterns, e.g. 'colabkit.assets.cutout.x_unmix_*'): "
                    "run only these, to time-box a large module")
    args = ap.parse_args()
    chosen = args.modules or list(MODULES)
    unknown = [m for m in chosen if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")
    if args.list:
        for m in chosen:
            print(f"{m}: {' '.join(t for t in MODULES[m] if (ROOT / t).exists())}")
        return 0
    results = []
    print(f"{'module':<24} {'killed':>6} {'total':>6} {'score':>6} {'survived':>8} {'no tests':>8} {'timeout':>7} "
          f"{'time':>7}")
    for m in chosen:
        r = run_module(m, MODULES[m], args.work, args.jobs, args.only)
        results.append(r)
        if "error" in r:
            print(f"{m:<24} {r['error']}")
            continue
        score = f"{r['score']:.1f}%" if r["score"] is not None else "-"
        print(f"{m:<24} {r['killed']:>6} {r['total']:>6} {score:>6} {r['survived']:>8} {r['no_tests']:>8} "
              f"{r['timeout']:>7} {r['seconds']:>6}s", flush=True)
        (args.work / "summary.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
