"""The doctor's Colab runtime table: consistent with setup.cfg and the constraints, and its advice when out of range."""

import configparser
import re
from pathlib import Path


import pytest

from colabkit import doctor

ROOT = Path(__file__).resolve().parents[2]


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_constraints_pin_the_tested_runtime():
    pins = dict(line.split("==") for line in (ROOT / "constraints" / "colab.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins == {k: v for k, v in doctor.TESTED_VERSIONS.items() if k != "torch"}  # torch: CI's CPU build
    tested = doctor.tested_runtime()
    assert tested.version == "2026.08" and tested.name == "Python 3.13 upgrade"
    assert tested.torch == doctor.TESTED_VERSIONS["torch"]
    for name, spec in doctor.SUPPORTED.items():
        assert doctor.in_range(doctor.TESTED_VERSIONS[name], spec), name


def test_python_range_classifiers_and_extras_agree_with_setup_cfg():
    cfg = _setup_cfg()
    assert cfg["options"]["python_requires"] == doctor.PYTHON_REQUIRES
    classified = re.findall(r"Programming Language :: Python :: (3\.\d+)", cfg["metadata"]["classifiers"])
    admitted = [f"3.{m}" for m in range(8, 20) if doctor.in_range(f"3.{m}.0", doctor.PYTHON)]
    assert classified == admitted == ["3.11", "3.12", "3.13"]
    for extra, mods in doctor.EXTRAS.items():
        declared = [r.strip() for r in cfg["options.extras_require"][extra].splitlines() if r.strip()]
        assert sorted(mods.values()) == sorted(declared), extra
    widgets = doctor.EXTRAS["notebook"]["ipywidgets"].split("ipywidgets")[1]
    assert doctor.in_range("7.7.1", widgets) and doctor.in_range("8.1.9", widgets)  # Colab's 7, and 8
    test_extra = cfg["options.extras_require"]["test"]
    assert f"ipywidgets{widgets}" in test_extra and doctor.in_range(doctor.TESTED_VERSIONS["ipykernel"],
                                                                        re.search(r"ipykernel(\S+)", test_extra)[1])


def test_every_known_runtime_is_identified():
    for r in doctor.COLAB_RUNTIMES:
        assert doctor.identify_runtime(r.python, r.torch + "+cu128") == r
    assert doctor.identify_runtime("3.12.13", "2.10.0+cu126").version == "2026.04"
    assert doctor.identify_runtime("3.14.1", "2.12.0") is None
    assert doctor.identify_runtime("3.13.15", None) is None


def test_after_a_colab_update_the_doctor_names_the_runtime_version_to_pick():
    # A made-up future Colab: Python 3.14, torch 3, diffusers 0.50: all outside our ranges.
    problems = doctor.version_problems("3.14.2", {"torch": "3.0.0+cu130", "diffusers": "0.50.0"}, colab=True)
    assert problems[0] == "Python 3.14.2 is outside the Pythons colabkit is tested on (>=3.11,<3.14)."
    assert problems[1].startswith("torch is 3.0.0+cu130; colabkit supports >=2.4,<3.")
    assert "pip install" not in " ".join(problems)  # in Colab, reinstalling torch & co. is what breaks runtimes
    advice = problems[-1]
    assert "last tested (on runtime 2026.08 \"Python 3.13 upgrade\" (Python 3.13, torch 2.11))" in advice
    assert "Runtime > Change runtime type > Runtime version: 2026.08;" in advice
    fallbacks = advice.split("if it is not offered: ")[1]
    assert fallbacks.startswith("2026.07 (Python 3.12, torch 2.11), then 2026.04 (Python 3.12, torch 2.10), "
                                "then 2026.01 (Python 3.12, torch 2.9), then 2025.10 (Python 3.12, torch 2.8).")


def test_a_package_replaced_inside_a_known_runtime_means_a_fresh_runtime():
    problems = doctor.version_problems("3.13.15", {"torch": "2.11.0+cu128", "diffusers": "0.50.1"}, colab=True)
    assert problems[0] == "diffusers is 0.50.1; colabkit supports >=0.35,<0.50."
    assert "Colab runtime 2026.08" in problems[1] and "Runtime > Disconnect and delete runtime" in problems[1]


def test_outside_colab_the_fix_is_a_pip_command_and_in_range_says_nothing():
    problems = doctor.version_problems("3.11.7", {"torch": "2.13.0+cpu", "peft": "0.16.0"}, colab=False)
    assert problems == ["peft is 0.16.0; colabkit supports >=0.17,<0.30. Fix: pip install 'peft>=0.17,<0.30'"]
    tested = {k: doctor.TESTED_VERSIONS[k] for k in doctor.SUPPORTED} | {"torch": "2.11.0+cu128"}
    assert doctor.version_problems("3.13.15", tested, colab=True) == []


def test_the_report_names_the_tested_runtime_and_the_advice(monkeypatch, drive):
    monkeypatch.setattr(doctor, "installed_version", lambda name: "0.50.0" if name == "diffusers" else
                        {"torch": "2.11.0+cu128"}.get(name, doctor.TESTED_VERSIONS.get(name)))
    monkeypatch.setattr(doctor.platform, "python_version", lambda: "3.13.15")
    monkeypatch.setattr("colabkit.project.in_colab", lambda: True)
    report = doctor.check()
    text = str(report)
    assert 'Notebooks last tested on Colab runtime 2026.08 "Python 3.13 upgrade" (Python 3.13, torch 2.11)' in text
    assert "PROBLEM: diffusers is 0.50.0" in text and "Disconnect and delete runtime" in text
    assert not report.ok


def test_busy_cores_counts_the_rest_of_the_machine_and_leaves_this_process_out():
    # user nice system idle iowait irq softirq steal, in ticks, on 2 cores over 1 s (200 ticks in all)
    before = [1000, 0, 500, 9000, 10, 0, 0, 0]
    quiet = [1002, 0, 501, 9197, 10, 0, 0, 0]  # 3 ticks busy of 200
    assert doctor.busy_cores(before, quiet, 2, own_cpu_s=0.0, wall_s=1.0) == pytest.approx(0.03)
    hog = [1100, 0, 502, 9098, 10, 0, 0, 0]  # one core busy
    assert doctor.busy_cores(before, hog, 2, own_cpu_s=0.0, wall_s=1.0) == pytest.approx(1.02)
    # the same busy core was this process: nothing left for the others
    assert doctor.busy_cores(before, hog, 2, own_cpu_s=1.0, wall_s=1.0) == pytest.approx(0.02)
    stolen = [1000, 0, 500, 9100, 10, 0, 0, 100]  # the hypervisor gave one core's time to other machines
    assert doctor.busy_cores(before, stolen, 2, own_cpu_s=0.0, wall_s=1.0) == pytest.approx(1.0)
    assert doctor.busy_cores(before, before, 2, own_cpu_s=0.0, wall_s=1.0) == 0.0  # no ticks: no verdict


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat (Linux)")
def test_other_cpu_load_sees_a_busy_process():
    import subprocess
    import sys
    import time

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        load = doctor.other_cpu_load(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert load is not None and load >= 0.6  # the rest of the machine can only add to it
