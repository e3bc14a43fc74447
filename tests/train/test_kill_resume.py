"""SIGKILL at random instants (state saves included): every resume ends at the same LoRA, bit for bit."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

TOTAL = 24  # 4 images x 2 repeats / batch 1 x 3 epochs
ARGS = ["--project-name", "houtline", "--base-model", "tiny-sdxl", "--resolution", "64", "--num-repeats", "2",
        "--epochs", "3", "--train-batch-size", "1", "--optimizer", "AdamW8bit", "--unet-lr", "1e-3",
        "--network-dim", "4", "--network-alpha", "2", "--sample-every-n-epochs", "0",
        "--save-state-every-n-steps", "1", "--seed", "11", "--device", "cpu"]


def saved_step(state_dir) -> int:
    steps = [int(m.group(1)) for p in (state_dir.iterdir() if state_dir.exists() else [])
             if (m := re.fullmatch(r"step-(\d+)", p.name))]
    return max(steps, default=0)


def start(drive):
    env = dict(os.environ, COLABKIT_DRIVE_ROOT=str(drive))
    return subprocess.Popen([sys.executable, "-m", "colabkit", "train", *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill_when(proc, state_dir, target_step, extra_s):
    """SIGKILL once the state of ``target_step`` is on disk plus ``extra_s`` (mid-step or mid-save)."""
    deadline = time.time() + 120
    while saved_step(state_dir) < target_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(extra_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def test_sigkill_anywhere_resumes_to_the_same_lora(tiny_project, tmp_path):
    drive = tiny_project.root.parents[1]
    pristine = tmp_path / "pristine"
    shutil.copytree(drive, pristine)
    proc = start(drive)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    reference = load_file(tiny_project.output / "houtline.safetensors")

    for seed in (1, 2, 3):
        rng = random.Random(seed)
        run_drive = tmp_path / f"run{seed}"
        shutil.copytree(pristine, run_drive)
        state = run_drive / "Loras" / "houtline" / "training" / "state"
        # One kill during start-up or caching (before any state), then kills a random few steps on,
        # a random fraction of a step after a save landed: inside the next step or inside its save.
        if seed == 1:
            kill_when(start(run_drive), state, 0, rng.uniform(1.0, 6.0))
        killed_at = []
        while saved_step(state) < TOTAL - 4 and len(killed_at) < 3:
            target = min(saved_step(state) + rng.randint(2, 6), TOTAL - 3)  # leaves time to kill
            code = kill_when(start(run_drive), state, target, rng.uniform(0.0, 0.25))
            assert code == -signal.SIGKILL, f"the run ended on its own (code {code}) before the kill"
            killed_at.append(saved_step(state))
        proc = start(run_drive)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
        assert b"Finished" in out
        assert len(killed_at) >= 2 and killed_at == sorted(killed_at), killed_at
        resumed = load_file(run_drive / "Loras" / "houtline" / "output" / "houtline.safetensors")
        assert resumed.keys() == reference.keys()
        for k in reference:
            assert torch.equal(resumed[k], reference[k]), (seed, k)
