"""benchmarks/gpu_check.py's CPU-side behaviour: its options, and a clean refusal without CUDA."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_options_and_their_checks():
    mod = _module()
    args = mod.parse_args([])
    assert (args.steps, args.resolution, args.t4_gb, args.no_t4) == (30, 1024, 15.0, False)
    assert mod.parse_args(["--steps", "12", "--no-t4"]).steps == 12
    for bad in (["--steps", "2"], ["--resolution", "1000"], ["--images", "0"]):
        with pytest.raises(SystemExit) as e:
            mod.parse_args(bad)
        assert e.value.code == 2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_stops_at_once_with_a_clear_message(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--work", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "needs a CUDA GPU" in r.stderr and "torch.cuda.is_available() is False" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was built
