import os

import pytest
import torch

from colabkit.train.budget import Budget, hms
from colabkit.train.noise import loss_weights, sample_noise, step_seed
from colabkit.train.state import StateStore, TrainState, capture_rng, restore_rng


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_budget_stops_when_next_step_and_save_do_not_fit():
    clock = Clock(1000.0)
    b = Budget(start=1000.0, hours=1.0, margin_s=60, clock=clock)
    b.record_step(30.0)
    b.record_save(20.0)
    clock.t = 1000 + 3600 - 60 - 1.5 * 30 - 1.5 * 20 - 1  # just enough left
    assert not b.must_stop()
    clock.t += 2
    assert b.must_stop()
    assert hms(2 * 3600 + 41 * 60) == "2 h 41 min"


def _state(step, value):
    return TrainState(step=step, config={"a": 1}, fingerprints={"dataset": "d"}, total_steps=10,
                      losses=[0.5] * step, trainable={"w": torch.full((2, 2), float(value))},
                      optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
                      lr_scheduler={"last_epoch": step}, rng=capture_rng())


def test_state_roundtrip_keeps_two_and_falls_back(tmp_path):
    store = StateStore(tmp_path / "state")
    for step in (2, 4, 6):
        store.save(_state(step, step))
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert names == ["step-000004", "step-000006"]
    st, warnings = store.load_latest()
    assert st.step == 6 and torch.equal(st.trainable["w"], torch.full((2, 2), 6.0)) and not warnings
    # Damage the newest so that it still loads (one bit of a weight flipped: 6.0 -> 6.0000005): only the
    # checksum can tell. The previous one is used, with a warning naming the damaged one.
    path = tmp_path / "state" / "step-000006" / "trainable.safetensors"
    blob = path.read_bytes()
    at = blob.index(torch.full((2, 2), 6.0).numpy().tobytes())
    path.write_bytes(blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:])
    from safetensors.torch import load_file

    assert float(load_file(path)["w"][0, 0]) != 6.0  # a valid file, another value
    st, warnings = store.load_latest()
    assert st.step == 4 and torch.equal(st.trainable["w"], torch.full((2, 2), 4.0))
    assert len(warnings) == 1 and "step-000006" in warnings[0] and "checksum" in warnings[0]


def test_half_written_state_is_ignored(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(_state(2, 2))
    half = tmp_path / "state" / f"step-000004.tmp-{os.getpid()}-1"
    half.mkdir()
    (half / "trainable.safetensors").write_bytes(b"\0" * 10)
    st, warnings = store.load_latest()
    assert st.step == 2 and not half.exists() and not warnings
    # A complete-looking folder without its manifest (killed before the rename cannot produce
    # one, but a copy by hand could) is skipped too.
    (tmp_path / "state" / "step-000009").mkdir()
    st, warnings = store.load_latest()
    assert st.step == 2 and "step-000009" in warnings[0]


def test_archive_keeps_files(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(_state(2, 2))
    moved = store.archive()
    assert moved.exists() and (moved / "step-000002" / "MANIFEST.json").exists() and not store.exists()


def test_rng_roundtrip():
    import random

    import numpy as np

    saved = capture_rng()
    a = (torch.rand(3), random.random(), np.random.rand())
    restore_rng(saved)
    b = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_noise_is_a_function_of_seed_and_step():
    assert step_seed(1, 5, 0) == step_seed(1, 5, 0) != step_seed(1, 6, 0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sample_noise((2, 4, 16, 16), g1, 0.05, 3, 0.3)
    b = sample_noise((2, 4, 16, 16), g2, 0.05, 3, 0.3)
    assert torch.equal(a, b) and abs(float(a.std()) - 1) < 1e-4


def test_min_snr_weights():
    ac = torch.linspace(0.999, 0.01, 1000)
    t = torch.tensor([0, 500, 999])
    w = loss_weights(ac, t, 5.0, "epsilon")
    snr = ac[t] / (1 - ac[t])
    assert torch.allclose(w, torch.clamp(snr, max=5) / snr)
    assert w[0] < 1 and w[2] == pytest.approx(1.0)
    assert torch.equal(loss_weights(ac, t, 0, "epsilon"), torch.ones(3))


def test_drive_full_is_one_clear_message_and_keeps_the_previous_state(tmp_path, monkeypatch):
    import errno

    from colabkit import files
    from colabkit.errors import ColabkitError

    store = StateStore(tmp_path / "state")
    store.save(_state(2, 2))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ColabkitError, match="No space left while writing step-000004.*previous version"):
        store.save(_state(4, 4))
    monkeypatch.undo()
    st, warnings = store.load_latest()
    assert st.step == 2 and not warnings
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["step-000002"]  # no half state left

    target = tmp_path / "out.txt"
    files.write_text(target, "old")
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(ColabkitError, match="Free some space on Google Drive"):
        files.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
