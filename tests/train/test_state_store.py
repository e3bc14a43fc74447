"""The training state on Drive, file by file: everything a resume needs comes back exactly, and nothing else does.

A resume that lost the optimizer's moments, the LR schedule's position, the grad scaler's scale or the RNG would
still train, and still finish, but would not be the run that was stopped: these tests compare every part of the
state with what was saved, value for value. Damage that still parses (one byte flipped inside a tensor) must be
refused by the checksums, and a state file that holds anything but tensors must never be unpickled.
"""

from __future__ import annotations

import errno
import json
import random
import re
import time

import shutil

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from colabkit import files
from colabkit.train.optim import make_lr_scheduler, make_optimizer
from colabkit.train.state import StateStore, TrainState, capture_rng, restore_rng

LOSSES = [0.1234567890123456789, 1 / 3, 2.5e-300, 0.7071067811865476, 1e16 + 1]  # floats JSON must keep exactly


def assert_same(a, b, where="state"):
    """Equal in value AND in type, all the way down (tensors: same dtype, shape and bits)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
        return
    assert type(a) is type(b), f"{where}: {type(a).__name__} saved, {type(b).__name__} loaded"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} saved, {b!r} loaded"


class Trainer:
    """A small model trained a few steps with the product's optimizer and LR schedule and a real grad scaler:
    every part of the state then holds values that differ from a fresh start."""

    def __init__(self, cfg, total_steps=10):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
        self.optimizer = make_optimizer(cfg, [{"params": list(self.model.parameters()), "lr": cfg.unet_lr}])
        self.scheduler = make_lr_scheduler(cfg, self.optimizer, total_steps)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)

    def step(self, seed):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)
        loss = (self.model(x) - y).pow(2).mean()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state(self, step, rng, **changes) -> TrainState:
        values = dict(step=step, config={"network_dim": 4, "unet_lr": 0.001, "nested": {"a": [1, 2.5, None]}},
                      fingerprints={"dataset": "d" * 64, "base_model": "m" * 64}, total_steps=10,
                      losses=list(LOSSES), trainable={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                      optimizer=self.optimizer.state_dict(), lr_scheduler=self.scheduler.state_dict(),
                      scaler=self.scaler.state_dict(), rng=rng, finished=False, seconds_trained=1234.5678,
                      cpu_threads=3)
        values.update(changes)
        return TrainState(**values)


@pytest.fixture
def trainer(make_config):
    t = Trainer(make_config(optimizer="AdamW", lr_scheduler="cosine", lr_warmup_ratio=0.2))
    for s in range(3):
        t.step(s)
    return t


def draws():
    return torch.rand(4).tolist(), random.random(), float(np.random.rand())


def test_every_part_of_the_state_comes_back_exactly(tmp_path, trainer):
    saved = trainer.state(6, capture_rng())
    expected_draws = draws()  # what the RNG gives right after the save
    # The saved parts are not the fresh ones (else a state that loads nothing would pass).
    assert saved.optimizer["state"] and saved.lr_scheduler["last_epoch"] == 3 and saved.scaler["_growth_tracker"] == 1
    assert saved.scaler["scale"] == 2.0 ** 11  # grew once after 2 good steps

    before = time.time()
    folder = StateStore(tmp_path / "state").save(saved)
    after = time.time()
    assert folder == saved.folder == tmp_path / "state" / "step-000006"
    torch.manual_seed(999), random.seed(999), np.random.seed(999)  # a new session's RNG
    loaded, warnings = StateStore(tmp_path / "state").load_latest()
    assert not warnings and loaded.folder == tmp_path / "state" / "step-000006"
    assert before <= loaded.saved_at <= after  # when it was written, not the 0.0 it was handed

    assert loaded.step == 6 and loaded.total_steps == 10 and loaded.finished is False
    assert loaded.losses == LOSSES and [type(x) for x in loaded.losses] == [float] * len(LOSSES)
    assert loaded.seconds_trained == 1234.5678 and loaded.cpu_threads == 3
    assert_same(saved.config, loaded.config, "config")
    assert_same(saved.fingerprints, loaded.fingerprints, "fingerprints")
    assert_same(saved.trainable, loaded.trainable, "trainable")
    assert_same(saved.optimizer, loaded.optimizer, "optimizer")
    assert_same(saved.lr_scheduler, loaded.lr_scheduler, "lr_scheduler")
    assert_same(saved.scaler, loaded.scaler, "scaler")
    assert_same(saved.rng, loaded.rng, "rng")
    restore_rng(loaded.rng)
    assert draws() == expected_draws


def test_a_run_restored_from_the_state_continues_as_if_never_stopped(tmp_path, make_config, trainer):
    cfg = make_config(optimizer="AdamW", lr_scheduler="cosine", lr_warmup_ratio=0.2)
    StateStore(tmp_path / "state").save(trainer.state(3, capture_rng()))
    loaded, _ = StateStore(tmp_path / "state").load_latest()

    resumed = Trainer(cfg)  # fresh objects, as a new session builds them, then the state loaded into them
    resumed.model.load_state_dict(loaded.trainable)
    resumed.optimizer.load_state_dict(loaded.optimizer)
    resumed.scheduler.load_state_dict(loaded.lr_scheduler)
    resumed.scaler.load_state_dict(loaded.scaler)
    for s in range(3, 8):
        trainer.step(s)
        resumed.step(s)
    assert_same(trainer.model.state_dict(), resumed.model.state_dict(), "weights")
    assert trainer.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()
    assert trainer.scaler.get_scale() == resumed.scaler.get_scale()


def test_a_finished_state_without_a_scaler_comes_back_as_such(tmp_path, trainer):
    StateStore(tmp_path / "state").save(trainer.state(10, capture_rng(), scaler=None, finished=True, cpu_threads=None))
    loaded, _ = StateStore(tmp_path / "state").load_latest()
    assert loaded.scaler is None and loaded.optimizer["state"]  # a GPU run without fp16 / a CPU run
    assert loaded.finished is True and loaded.cpu_threads is None and loaded.summary == "step 10/10 (finished)"


# -- damage that still parses: only the checksums can tell ------------------------------------------------------

def flip_byte_inside(path, needle: bytes, at: int = 5) -> None:
    """Flip one bit of one byte inside ``needle`` (a tensor's raw bytes) where it sits in the file."""
    blob = bytearray(path.read_bytes())
    i = bytes(blob).find(needle)
    assert i >= 0 and bytes(blob).count(needle) == 1, f"the tensor's bytes are not once in {path.name}"
    blob[i + at] ^= 0x01
    path.write_bytes(bytes(blob))


def _damage(folder, name):
    """Damage ``name`` in ``folder`` so that it still loads (returns a check that it does, with other values)."""
    path = folder / name
    if name == "trainable.safetensors":
        before = {k: v.clone() for k, v in load_file(path).items()}  # load_file maps the file: copy it
        flip_byte_inside(path, before["0.weight"].numpy().tobytes())
        after = load_file(path)  # still a valid file...
        assert not torch.equal(after["0.weight"], before["0.weight"])  # ...with another value in it
    elif name == "optimizer.pt":
        before = torch.load(path, weights_only=True)
        flip_byte_inside(path, before["state"][0]["exp_avg"].numpy().tobytes())
        after = torch.load(path, weights_only=True)
        assert not torch.equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])
    elif name == "extra.pt":
        before = torch.load(path, weights_only=True)
        flip_byte_inside(path, before["rng"]["torch"].numpy().tobytes(), at=100)
        after = torch.load(path, weights_only=True)
        assert not torch.equal(after["rng"]["torch"], before["rng"]["torch"])
    elif name == "state.json":
        meta = json.loads(path.read_text())
        path.write_text(path.read_text().replace(f'"step": {meta["step"]}', f'"step": {meta["step"] + 1}'))
        assert json.loads(path.read_text())["step"] == meta["step"] + 1
    else:
        raise AssertionError(name)


@pytest.mark.parametrize("name", ["trainable.safetensors", "optimizer.pt", "extra.pt", "state.json"])
def test_one_flipped_byte_in_a_file_that_still_loads_is_refused_by_the_checksum(tmp_path, trainer, name):
    store = StateStore(tmp_path / "state")
    store.save(trainer.state(2, capture_rng()))
    trainer.step(99)
    store.save(trainer.state(4, capture_rng()))
    _damage(tmp_path / "state" / "step-000004", name)

    loaded, warnings = store.load_latest()
    assert loaded.step == 2  # the one before it, intact
    assert len(warnings) == 1 and "step-000004" in warnings[0] and f"{name} does not match its checksum" in warnings[0]


def test_damage_with_no_intact_state_left_gives_none_and_says_why(tmp_path, trainer):
    store = StateStore(tmp_path / "state")
    store.save(trainer.state(2, capture_rng()))
    _damage(tmp_path / "state" / "step-000002", "optimizer.pt")
    loaded, warnings = store.load_latest()
    assert loaded is None and "optimizer.pt does not match its checksum" in warnings[0]


# -- nothing but tensors is ever unpickled ----------------------------------------------------------------------

RAN: list[str] = []


def _payload(tag):
    RAN.append(tag)  # what an attacker's pickle would run on load
    return {}


class Evil:
    def __reduce__(self):
        return _payload, ("unpickled",)


@pytest.mark.parametrize("torch_default", ["safe", "unsafe"])
@pytest.mark.parametrize("name", ["optimizer.pt", "extra.pt"])
def test_a_state_file_holding_a_python_object_is_refused_not_unpickled(tmp_path, trainer, name, torch_default,
                                                                       monkeypatch):
    if torch_default == "unsafe":  # torch < 2.6 (setup.cfg allows 2.4) unpickled by default: weights_only must be said
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    store = StateStore(tmp_path / "state")
    store.save(trainer.state(2, capture_rng()))
    trainer.step(99)
    folder = store.save(trainer.state(4, capture_rng()))
    # A hand-made state (a shared Drive folder, a "fixed" copy): valid checksums, a pickle that runs code.
    content = torch.load(folder / name, weights_only=True)
    if name == "optimizer.pt":
        content["state"][0]["evil"] = Evil()
    else:
        content["scaler"] = Evil()
    torch.save(content, folder / name)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest[name] = files.sha256_file(folder / name)
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))

    RAN.clear()
    loaded, warnings = store.load_latest()
    assert RAN == []  # never unpickled
    assert loaded.step == 2 and "step-000004" in warnings[0] and "Unpickl" in warnings[0]


# -- the store's bookkeeping: which folders count, what a failed or repeated save leaves -------------------------

def test_only_complete_folders_count(tmp_path, trainer):
    store = StateStore(tmp_path / "a" / "b" / "state")  # folders made as needed
    assert not store.exists() and store.latest_folder() is None
    store.save(trainer.state(2, capture_rng()))
    store.save(trainer.state(4, capture_rng()))
    assert store.exists() and store.latest_folder() == tmp_path / "a" / "b" / "state" / "step-000004"
    (store.folder / "step-000009.tmp-1-2").mkdir()  # a save cut off by a kill, not yet cleaned up
    (store.folder / "step-000010").write_text("a file, not a state folder")
    assert store.latest_folder() == store.folder / "step-000004"
    only_tmp = StateStore(tmp_path / "other")
    (only_tmp.folder / "step-000003.tmp-1-2").mkdir(parents=True)
    assert not only_tmp.exists() and only_tmp.latest_folder() is None


def test_the_same_step_saved_again_replaces_it(tmp_path, trainer):
    store = StateStore(tmp_path / "state")
    store.save(trainer.state(4, capture_rng(), losses=[1.0]))
    store.save(trainer.state(4, capture_rng(), losses=[2.0]))  # a budget stop right after a periodic save
    assert [p.name for p in store.folder.iterdir()] == ["step-000004"]
    assert store.load_latest()[0].losses == [2.0]


def test_a_folder_drive_will_not_delete_never_hides_the_real_error(tmp_path, trainer, monkeypatch):
    """Drive can refuse to delete (a file open elsewhere, a sync conflict): clean-ups are best effort, the save or the
    load goes on, and a failed save still says what failed."""
    from colabkit.errors import ColabkitError
    from colabkit.train import state as state_mod

    store = StateStore(tmp_path / "state")
    tried, real_rmtree = [], shutil.rmtree

    def refuse(path):
        tried.append(Path(path).name)
        raise OSError(errno.EACCES, "Permission denied", str(path))

    def stubborn_rmtree(path, ignore_errors=False):
        if not ignore_errors:
            raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(state_mod.files, "remove_tree_for_good", refuse)
    monkeypatch.setattr(state_mod.shutil, "rmtree", stubborn_rmtree)
    for step in (2, 4, 6):  # the third save removes step-000002, which refuses
        store.save(trainer.state(step, capture_rng()))
    assert [t.split(".tmp-")[0] for t in tried] == ["step-000002"]
    (store.folder / "step-000007.tmp-1-2").mkdir()
    loaded, warnings = store.load_latest()
    assert loaded.step == 6 and not warnings  # the folders that will not go are never taken for states

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ColabkitError, match="No space left while writing step-000008"):
        store.save(trainer.state(8, capture_rng()))
    monkeypatch.setattr(state_mod.files, "remove_tree_for_good", files.remove_tree_for_good)
    monkeypatch.setattr(state_mod.shutil, "rmtree", real_rmtree)
    with pytest.raises(ColabkitError, match="No space left while writing step-000010"):
        store.save(trainer.state(10, capture_rng()))
    # with a working removal, the half-written folder is gone at once (not left for the next load to clean)
    assert not [p.name for p in store.folder.iterdir() if p.name.startswith("step-000010")]


def test_archive_moves_a_state_aside_under_a_dated_name(tmp_path, trainer):
    store = StateStore(tmp_path / "state")
    assert store.archive() is None  # no folder at all
    store.folder.mkdir()
    assert store.archive() is None and store.folder.is_dir()  # an empty one stays
    store.save(trainer.state(2, capture_rng()))
    moved = store.archive()
    assert re.fullmatch(r"state-old-\d{8}-\d{6}", moved.name) and moved.parent == tmp_path
    assert (moved / "step-000002" / "MANIFEST.json").exists() and not store.folder.exists()


class FakeCuda:
    """torch.cuda on a machine with ``n`` GPUs, as far as the RNG is concerned."""

    def __init__(self, n):
        self.n, self.states, self.set = n, [torch.full((16,), i, dtype=torch.uint8) for i in range(n)], None

    def is_available(self):
        return self.n > 0

    def device_count(self):
        return self.n

    def get_rng_state_all(self):
        return list(self.states)

    def set_rng_state_all(self, states):
        self.set = [s.clone() for s in states]


def test_the_gpus_rng_is_saved_and_restored_when_the_gpus_match(monkeypatch):
    fake = FakeCuda(2)
    monkeypatch.setattr(torch, "cuda", fake)
    rng = capture_rng()
    assert torch.equal(rng["cuda"], torch.stack(fake.states))
    restore_rng(rng)
    assert fake.set is not None and [s.tolist() for s in fake.set] == [s.tolist() for s in fake.states]
    other = FakeCuda(1)  # resumed on a machine with another number of GPUs: their RNG is left alone
    monkeypatch.setattr(torch, "cuda", other)
    restore_rng(rng)
    assert other.set is None
    cpu_rng = {k: v for k, v in rng.items() if k != "cuda"}  # saved on the CPU, resumed on a GPU
    restore_rng(cpu_rng)
    assert other.set is None
    monkeypatch.setattr(torch, "cuda", FakeCuda(0))
    assert "cuda" not in capture_rng()
