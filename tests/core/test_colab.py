import importlib.util
import time

from colabkit import colab, doctor


def test_setup_installs_only_missing_extras_in_colab(monkeypatch, drive):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("bitsandbytes", "prodigyopt") else real_find(name, *a))
    monkeypatch.setattr(doctor, "gpu_info", lambda: None)
    calls = []
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    colab.setup(extras=["train"])
    assert len(calls) == 1
    reqs = calls[0][calls[0].index("install") + 2:]
    assert reqs == ["bitsandbytes>=0.45", "prodigyopt>=1.1"]  # never torch, transformers or diffusers


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
    monkeypatch.setattr(doctor, "pip_install_command", lambda extras: order.append("pip") or ["pip", "install", "x"])
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, check: order.append("run"))
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


def test_runtime_clock_and_flush(monkeypatch, drive):
    assert colab.runtime_start_time() <= time.time()
    monkeypatch.setenv("COLABKIT_RUNTIME_START", "1000.5")
    assert colab.runtime_start_time() == 1000.5
    monkeypatch.delenv("COLABKIT_RUNTIME_START")
    monkeypatch.setattr(colab, "in_colab", lambda: True)  # reads /proc/1/stat: when the container started
    start = colab.runtime_start_time()
    assert 0 < start <= time.time()
    assert colab.flush_drive() is False  # not on Colab's Drive mount: nothing to flush
