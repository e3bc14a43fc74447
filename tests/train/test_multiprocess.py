"""`accelerate launch` with two processes (DDP on the CPU) trains the same LoRA as one process."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ARGS = ["--project-name", "houtline", "--base-model", "tiny-sdxl", "--resolution", "64", "--num-repeats", "2",
        "--epochs", "1", "--train-batch-size", "3", "--optimizer", "AdamW", "--unet-lr", "1e-3",
        "--network-dim", "4", "--network-alpha", "2", "--sample-every-n-epochs", "0", "--seed", "3",
        "--device", "cpu", "--max-grad-norm", "0"]


def test_two_processes_match_one(tiny_project, tmp_path):
    drive = tiny_project.root.parents[1]
    other = tmp_path / "other"
    shutil.copytree(drive, other)
    env = dict(os.environ, COLABKIT_DRIVE_ROOT=str(drive))
    one = subprocess.run([sys.executable, "-m", "colabkit", "train", *ARGS], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    env["COLABKIT_DRIVE_ROOT"] = str(other)
    # Batch 3 over 2 processes: shares of 2 and 1 samples, and a last batch of 2 (1 and 1).
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "-m", "colabkit", "train", *ARGS], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    a = load_file(drive / "Loras" / "houtline" / "output" / "houtline.safetensors")
    b = load_file(other / "Loras" / "houtline" / "output" / "houtline.safetensors")
    assert a.keys() == b.keys()
    ups = [k for k in a if k.endswith("lora_up.weight")]
    assert max(a[k].float().abs().max() for k in ups) > 1e-4  # it trained
    for k in a:
        # fp16 export: a gradient all-reduce sums in another order, so allow one fp16 step
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=2e-3, atol=1e-4)
