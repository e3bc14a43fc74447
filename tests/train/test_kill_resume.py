"""SIGKILL at random instants (state saves included): every resume ends at the same LoRA, bit for bit."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ARGS = ["--project-name", "houtline", "--base-model", "tiny-sdxl", "--resolution", "64", "--num-repeats", "2",
        "--epochs", "3", "--train-batch-size", "1", "--optimizer", "AdamW8bit", "--unet-lr", "1e-3",
        "--network-dim", "4", "--network-alpha", "2", "--sample-every-n-epochs", "0",
        "--save-state-every-n-steps", "1", "--seed", "11", "--device", "cpu"]


def run_cli(drive, kill_after=None):
    env = dict(os.environ, COLABKIT_DRIVE_ROOT=str(drive))
    proc = subprocess.Popen([sys.executable, "-m", "colabkit", "train", *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=kill_after or 300)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None, "killed"


def test_sigkill_anywhere_resumes_to_the_same_lora(tiny_project, tmp_path):
    drive = tiny_project.root.parents[1]
    pristine = tmp_path / "pristine"
    shutil.copytree(drive, pristine)

    t0 = time.time()
    code, out = run_cli(drive)
    duration = time.time() - t0
    assert code == 0, out
    reference = load_file(tiny_project.output / "houtline.safetensors")

    for seed in (1, 2, 3):
        rng = random.Random(seed)
        run_drive = tmp_path / f"run{seed}"
        shutil.copytree(pristine, run_drive)
        kills = resumed_from_state = 0
        state = run_drive / "Loras" / "houtline" / "training" / "state"
        while True:
            # Anywhere from Python's start-up to the last save; most land in steps and state writes.
            kill_after = rng.uniform(0.3, 1.0) * duration if kills < 4 else None
            code, out = run_cli(run_drive, kill_after)
            if code is None:
                kills += 1
                resumed_from_state += any(state.glob("step-0*")) if state.exists() else 0
                continue
            assert code == 0, out
            break
        assert kills >= 1 and resumed_from_state >= 1, (kills, resumed_from_state)
        final = run_drive / "Loras" / "houtline" / "output" / "houtline.safetensors"
        resumed = load_file(final)
        assert resumed.keys() == reference.keys()
        for k in reference:
            assert torch.equal(resumed[k], reference[k]), (seed, k)
