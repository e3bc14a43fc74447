"""Full training state on Drive: written so that a kill at any instant leaves a usable one.

Each save is a folder ``step-NNNNNN`` built under a temporary name, every file fsynced, a
MANIFEST (sha256 of each file) written last, then renamed into place in one step. Only then
is the older state removed; the one before it stays as a fallback. Loading walks from the
newest folder back and takes the first whose manifest checks out, warning about any it skips.
Nothing here is unpickled: tensors load with ``weights_only=True``, the rest is JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colabkit import files
from colabkit.i18n import _

KEEP = 2  # the newest state and one fallback


@dataclass
class TrainState:
    step: int
    config: dict[str, Any]
    fingerprints: dict[str, str]
    total_steps: int
    losses: list[float] = field(default_factory=list)
    trainable: dict[str, Any] = field(default_factory=dict)  # LoRA parameters, fp32, by module name
    optimizer: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    seconds_trained: float = 0.0
    saved_at: float = 0.0
    cpu_threads: int | None = None  # torch threads of a CPU run: a resume uses the same (same float sums)
    # The caption token length the run's text conditioning was padded to (75, 150 or 225): a resume keeps it.
    # None: not recorded, the rule of the day (padded to the 75-token chunks the longest caption needs).
    token_length: int | None = None
    forward_fp32: bool = True  # the forward process in fp32; False: a run saved before, in the weight dtype
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    folder: Path | None = None

    @property
    def summary(self) -> str:
        return f"step {self.step}/{self.total_steps}" + (" (finished)" if self.finished else "")


def capture_rng() -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        v, internal, gauss = json.loads(state["python"])
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def _write(path: Path, write) -> None:
    write(path)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


class StateStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def _complete(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.glob("step-*") if p.is_dir() and ".tmp" not in p.name), reverse=True)

    def latest_folder(self) -> Path | None:
        found = self._complete()
        return found[0] if found else None

    def exists(self) -> bool:
        return bool(self._complete())

    def save(self, state: TrainState) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step-{state.step:06d}"
        tmp = self.folder / f"{final.name}.tmp-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        try:
            return self._save_into(tmp, final, state)
        except OSError as e:
            _remove(tmp)  # never a half state; the previous one stays usable
            if e.errno in files.FULL:
                raise files.disk_full_error(final, e) from e
            raise

    def _save_into(self, tmp: Path, final: Path, state: TrainState) -> Path:
        import torch
        from safetensors.torch import save_file

        meta = {
            "step": state.step, "config": state.config, "fingerprints": state.fingerprints,
            "total_steps": state.total_steps, "losses": state.losses, "finished": state.finished,
            "seconds_trained": state.seconds_trained, "saved_at": time.time(), "cpu_threads": state.cpu_threads,
            "token_length": state.token_length, "forward_fp32": state.forward_fp32,
            "skipped_steps": state.skipped_steps,
        }
        _write(tmp / "trainable.safetensors",
               lambda p: save_file({k: v.detach().float().cpu().contiguous() for k, v in state.trainable.items()}, str(p)))
        _write(tmp / "optimizer.pt", lambda p: torch.save(state.optimizer, p))
        _write(tmp / "extra.pt", lambda p: torch.save(
            {"lr_scheduler": state.lr_scheduler, "scaler": state.scaler, "rng": state.rng}, p))
        _write(tmp / "state.json", lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True)))
        manifest = {p.name: files.sha256_file(p) for p in sorted(tmp.iterdir())}
        _write(tmp / "MANIFEST.json", lambda p: p.write_text(json.dumps(manifest, indent=1)))
        files.fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. a stop right after a periodic save)
            _remove(final)
        os.replace(tmp, final)
        files.fsync_dir(self.folder)
        for old in self._complete()[KEEP:]:
            _remove(old)
        state.folder = final
        return final

    def load_latest(self) -> tuple[TrainState | None, list[str]]:
        """The newest intact state (or None) and a warning for each newer one that was unusable."""
        warnings = []
        for stale in self.folder.glob("step-*.tmp-*") if self.folder.is_dir() else []:
            _remove(stale)  # a save that was cut off; never became a state
        for folder in self._complete():
            try:
                return self._load(folder), warnings
            except Exception as e:  # any damage at all: fall back to the previous state
                warnings.append(_("The saved state {name} is damaged ({error}); using the one before it.").format(
                                    name=folder.name, error=e))
        return None, warnings

    def _load(self, folder: Path) -> TrainState:
        import torch
        from safetensors.torch import load_file

        manifest = json.loads((folder / "MANIFEST.json").read_text())
        for name, digest in manifest.items():
            if files.sha256_file(folder / name) != digest:
                raise ValueError(f"{name} does not match its checksum")
        meta = json.loads((folder / "state.json").read_text())
        extra = torch.load(folder / "extra.pt", weights_only=True, map_location="cpu")
        token_length = meta.get("token_length")
        if token_length is None and "cpu_threads" not in meta:
            # Saved before captions were padded to need (states carry cpu_threads since soon after that change):
            # every caption was padded to max_token_length (75 before that setting existed), 2 positions added.
            token_length = meta["config"].get("max_token_length", 75)
        return TrainState(
            step=meta["step"], config=meta["config"], fingerprints=meta["fingerprints"],
            total_steps=meta["total_steps"], losses=meta["losses"], finished=meta["finished"],
            seconds_trained=meta["seconds_trained"], saved_at=meta["saved_at"], cpu_threads=meta.get("cpu_threads"),
            token_length=token_length, forward_fp32=meta.get("forward_fp32", False),
            skipped_steps=meta.get("skipped_steps", 0),
            trainable=load_file(folder / "trainable.safetensors"),
            optimizer=torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"),
            lr_scheduler=extra["lr_scheduler"], scaler=extra["scaler"], rng=extra["rng"], folder=folder,
        )

    def archive(self, outputs: list[Path] | tuple[Path, ...] = ()) -> Path | None:
        """Move all states aside, and ``outputs`` (the run's LoRA files) into ``lora/`` beside them: start_over
        keeps the previous run, byte for byte. Renames only: nothing is copied, deleted or sent to Drive's trash."""
        outputs = [p for p in outputs if p.is_file()]
        states = self.folder.is_dir() and any(self.folder.iterdir())
        if not states and not outputs:
            return None
        dest = self.folder.with_name(f"state-old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 2
        while dest.exists():  # two start_overs within a second
            dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
            n += 1
        if states:
            os.replace(self.folder, dest)
        for path in outputs:
            files.move_into(path, dest / "lora")
        return dest


def _remove(folder: Path) -> None:
    """A state folder removed with its bytes truncated first, so Drive's trash keeps none of them.

    Renamed out of the states first (a rename is atomic and trashes nothing): a kill while its files are being
    truncated leaves a ``.tmp-`` folder that no load takes for a state, and the next load removes."""
    if ".tmp-" not in folder.name:
        gone = folder.with_name(f"{folder.name}.tmp-removed-{os.getpid()}-{time.time_ns()}")
        try:
            os.replace(folder, gone)
            folder = gone
        except OSError:
            pass
    try:
        files.remove_tree_for_good(folder)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
