#!/usr/bin/env python
"""Issue 22's table of hand-made faults, put in again one at a time: which fast tests notice each.

    python benchmarks/mutation_faults.py                 # every fault in mutation_faults.json (~8 min on 2 cores)
    python benchmarks/mutation_faults.py state_checksum_off colab_never_flushed

Each fault is one or more exact text replacements (each must match exactly once); a fault in a notebook source is
followed by regenerating the notebooks. The fast tests (`-m "not slow"`) of the folders it names run, the failing
ones are printed, and the files are restored with `git checkout`. It refuses to start on a checkout with uncommitted
changes to tracked files (it would revert them). Results: benchmarks/RESULTS.md, "The faults of issue 22's table".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = json.loads((ROOT / "benchmarks" / "mutation_faults.json").read_text())


def sh(cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT, env=env)


def main() -> int:
    chosen = sys.argv[1:] or list(FAULTS)
    unknown = [n for n in chosen if n not in FAULTS]
    if unknown:
        print(f"unknown: {unknown}; known: {list(FAULTS)}")
        return 2
    if sh("git status --porcelain --untracked-files=no").stdout.strip():
        print("uncommitted changes to tracked files: commit or stash them first")
        return 2
    missed = []
    for name in chosen:
        fault, touched = FAULTS[name], set()
        try:
            for path, old, new in fault["edits"]:
                text = (ROOT / path).read_text()
                if text.count(old) != 1:
                    raise ValueError(f"{path}: {text.count(old)} matches of {old!r} (the code changed: update the fault)")
                (ROOT / path).write_text(text.replace(old, new))
                touched.add(path)
            if fault.get("regen"):
                touched.add("notebooks")
                sh("python tests/helpers/notebooks.py")
            r = sh(f"{sys.executable} -m pytest -p no:cacheprovider -q -m 'not slow' {fault['tests']}")
            failed = [line.split(" ")[1] for line in r.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            print(f"{name}: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]}", flush=True)
            for test in failed:
                print(f"    {test}", flush=True)
            if not failed:
                missed.append(name)
        except ValueError as e:
            print(f"{name}: {e}")
            missed.append(name)
        finally:
            if touched:
                sh("git checkout -- " + " ".join(sorted(touched)))
    print(f"{len(chosen) - len(missed)} of {len(chosen)} faults caught" + (f"; missed: {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
