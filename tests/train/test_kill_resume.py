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


def kill_when(proc, state_dir, target_step, fraction):
    """SIGKILL once the state of ``target_step`` is on disk, plus ``fraction`` of the time one step took.

    Waits on what the run has done (the saved states), not on wall-clock limits, so a busy machine only
    makes it slower: the kill still lands inside the next step or inside its save, whatever the speed.
    """
    seen, last, step_s = saved_step(state_dir), time.monotonic(), None
    while seen < target_step and proc.poll() is None:
        time.sleep(0.005)
        now_seen = saved_step(state_dir)
        if now_seen > seen:
            if seen:  # the time between two saves (one step, save_state_every_n_steps=1)
                step_s = (time.monotonic() - last) / (now_seen - seen)
            seen, last = now_seen, time.monotonic()
    time.sleep(fraction * (step_s or 0.2))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def finish(proc) -> bytes:
    out, _ = proc.communicate()  # no wall-clock limit: the run ends by itself (pytest-timeout guards hangs)
    assert proc.returncode == 0, out.decode()
    return out


# Bounded by work: ~10 short runs of 24 tiny steps. pytest-timeout stays as a hang guard, sized for a machine
# with several times more load than cores (alone it takes ~1.5 min).
@pytest.mark.timeout(1800)
def test_sigkill_anywhere_resumes_to_the_same_lora(tiny_project, tmp_path):
    drive = tiny_project.root.parents[1]
    pristine = tmp_path / "pristine"
    shutil.copytree(drive, pristine)
    finish(start(drive))
    reference = load_file(tiny_project.output / "houtline.safetensors")

    for seed in (1, 2):
        rng = random.Random(seed)
        run_drive = tmp_path / f"run{seed}"
        shutil.copytree(pristine, run_drive)
        state = run_drive / "Loras" / "houtline" / "training" / "state"
        # One kill during start-up or caching (before any state), then kills a random few steps on,
        # a random fraction of a step after a save landed: inside the next step or inside its save.
        if seed == 1:
            proc = start(run_drive)
            log = run_drive / "Loras" / "houtline"
            while proc.poll() is None and not (log / "training" / "cache").exists():
                time.sleep(0.005)  # caching has begun: the model is loaded, no state saved yet
            kill_when(proc, state, 0, rng.uniform(0.0, 1.0))
        killed_at = []
        while saved_step(state) < TOTAL - 4 and len(killed_at) < 3:
            target = min(saved_step(state) + rng.randint(2, 6), TOTAL - 3)  # leaves time to kill
            code = kill_when(start(run_drive), state, target, rng.uniform(0.0, 1.0))
            assert code == -signal.SIGKILL, f"the run ended on its own (code {code}) before the kill"
            killed_at.append(saved_step(state))
        out = finish(start(run_drive))
        assert b"Finished" in out
        assert len(killed_at) >= 2 and killed_at == sorted(killed_at), killed_at
        resumed = load_file(run_drive / "Loras" / "houtline" / "output" / "houtline.safetensors")
        assert resumed.keys() == reference.keys()
        for k in reference:
            assert torch.equal(resumed[k], reference[k]), (seed, k)
