import configparser
from pathlib import Path

import pytest

from colabkit import doctor
from colabkit.errors import ColabkitError
from colabkit.project import Project, drive_root, list_projects, open_project, validate_project_name


@pytest.mark.parametrize("name", ["houtline", "my-lora_2", "clients/houtline", "A1"])
def test_good_names(name):
    assert validate_project_name(name) == name


@pytest.mark.parametrize("name, words", [
    ("", "empty"),
    ("   ", "empty"),
    ("my lora", "contains ' '"),
    ("../etc", "looks like a path"),
    ("a/../b", "looks like a path"),
    ("/abs", "looks like a path"),
    ("~/x", "looks like a path"),
    ("a/b/c", "more than one '/'"),
    ("a/", "more than one '/' or an empty part"),
    ("-x", "more than one '/' or an empty part"),
    ("caf\u00e9", "contains"),
])
def test_bad_names_say_what_is_allowed(name, words):
    with pytest.raises(ColabkitError) as e:
        validate_project_name(name)
    assert words in str(e.value) and "letters, digits" in str(e.value)


def test_drive_root_from_env_and_default(drive, monkeypatch):
    assert drive_root() == drive.resolve()
    monkeypatch.delenv("COLABKIT_DRIVE_ROOT")
    assert drive_root() == Path("~/colabkit-drive").expanduser().resolve()


def test_create_twice_is_harmless(drive):
    p = Project.at("clients/houtline").create()
    assert p.root == drive / "Loras" / "clients" / "houtline" and p.slug == "houtline"
    (p.dataset / "a.png").write_bytes(b"mine")
    (p.dataset / "a.txt").write_text("houtline, cat")
    Project.at("clients/houtline").create()
    assert (p.dataset / "a.png").read_bytes() == b"mine" and (p.dataset / "a.txt").read_text() == "houtline, cat"
    assert list_projects() == ["clients/houtline"]


def test_open_missing_project_lists_existing(drive):
    Project.at("alpha").create()
    with pytest.raises(ColabkitError, match="Projects found: alpha"):
        open_project("alhpa")


def test_supported_ranges_match_setup_cfg_and_admit_colab():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[2] / "setup.cfg")
    reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    declared = {}
    for r in reqs:
        name = r.split(">")[0].split("<")[0].split("=")[0]
        declared[name] = r[len(name):]
    for name, spec in doctor.SUPPORTED.items():
        assert declared[name] == spec, name
    colab = {"torch": "2.11.0+cu128", "transformers": "5.15.0", "diffusers": "0.39.0", "accelerate": "1.14.0",
             "peft": "0.20.0", "safetensors": "0.8.0", "huggingface_hub": "1.27.0"}
    for name, version in colab.items():
        assert doctor.in_range(version, doctor.SUPPORTED[name]), name
    assert doctor.in_range("3.12.3", doctor.PYTHON) and not doctor.in_range("3.10.1", doctor.PYTHON)
    assert not doctor.in_range("6.0.0", doctor.SUPPORTED["transformers"])
    # constraints/colab.txt pins exactly what Colab ships (all of it: tests/core/test_doctor_runtime.py)
    pins = dict(line.split("==") for line in (Path(__file__).parents[2] / "constraints" / "colab.txt")
                .read_text().splitlines() if line and not line.startswith("#"))
    assert {k: v for k, v in colab.items() if k != "torch"}.items() <= pins.items()


def test_doctor_reports_this_machine(drive):
    report = doctor.check()
    text = str(report)
    assert "diffusers" in text and "Disk" in text and "local folder" in text
    assert report.gpu is None or report.gpu.vram_gb > 0
    t4 = doctor.GpuInfo("Tesla T4", 15.0, (7, 5))
    assert not t4.native_bf16 and doctor.GpuInfo("A100", 40.0, (8, 0)).native_bf16
    assert "Runtime > Change runtime type > T4 GPU" in doctor.no_gpu_message(colab=True)
