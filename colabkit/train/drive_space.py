"""How much of Google Drive a training run takes, trash included: pure maths for the preflight and the figures.

A run puts on Drive the base model (when kept there), its saved states (KEEP of them, plus the one being
written during a save), its outputs (the epoch files kept, the final file, the samples, the loss plot), and
whatever it deletes: Drive's mount moves deleted files to the trash, which counts against the quota for 30 days.
colabkit truncates what it deletes to 0 bytes first (``files.remove_for_good``), so its trash is empty;
``trash_per_save`` below says what it would be without that (the figures before the change).

Sizes: a LoRA of rank r on a layer with ``in`` inputs and ``out`` outputs has r * (in + out) parameters. A state
holds them in fp32 (4 bytes) plus the optimizer's state (memory.OPTIMIZER_STATE_BYTES: AdamW8bit 2, Prodigy 16
bytes a parameter); a LoRA file holds them in fp16 (2 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from colabkit.train.memory import (OPTIMIZER_STATE_BYTES, SDXL_SHAPE, TE_LINEAR_IO, UNET_ATTN_LINEAR_IO,
                                   UNET_RESNET_CONV3_IO, UNET_RESNET_OTHER_IO, UNetShape)

STATE_OVERHEAD = 96 * 1024  # a state's JSON, RNG states, manifest and pickle framing (measured: ~40-70 KB)
LORA_FILE_OVERHEAD = 64 * 1024  # the safetensors header with colabkit's metadata (tag frequencies: a few KB)
LOSS_PLOT = 200 * 1024  # output/loss.png
# Kept free beyond the run's own files: its latent and text caches (a few MB an image at most), Colab's autosaves of
# the notebook, and slack for what the estimate does not see. A run that leaves less has no room for error.
HEADROOM = 500 * 10**6
KEEP_STATES = 2  # train.state.KEEP: the newest and one fallback


def attn_linear_io(shape: UNetShape) -> int:
    """Sum of (in + out) over the Linear layers that a plain LoRA wraps in a UNet of this shape: per transformer
    block self-attention (4 x c->c), cross-attention (q and out c->c, k and v context->c) and the GEGLU
    feed-forward (c->8c, 4c->c); per attention block proj_in and proj_out (c->c)."""
    total = 0
    for i, (c, depth) in enumerate(zip(shape.channels, shape.depth)):
        if not depth:
            continue
        attentions = shape.layers_per_block + (shape.layers_per_block + 1)  # down blocks, up blocks
        if i == len(shape.channels) - 1:
            attentions += 1  # the middle block, at the deepest level
        block = 8 * c + (6 * c + 2 * shape.context_dim) + 14 * c
        total += attentions * (depth * block + 4 * c)
    return total


def lora_params(network_dim: int, *, shape: UNetShape = SDXL_SHAPE, lora_type: str = "LoRA", conv_dim: int = 8,
                train_text_encoder: bool = False) -> int:
    """Trainable parameters of the LoRA (the text encoders and LoCon's convolutions at SDXL's sizes, scaled to
    the UNet's width: an upper bound for smaller models)."""
    io = attn_linear_io(shape)
    n = network_dim * io
    if lora_type.lower() in ("locon", "lycoris", "loha", "lokr"):
        scale = io / UNET_ATTN_LINEAR_IO
        n += math.ceil(scale * (conv_dim * UNET_RESNET_CONV3_IO + network_dim * UNET_RESNET_OTHER_IO))
    if train_text_encoder:
        n += network_dim * TE_LINEAR_IO
    return n


def optimizer_bytes_per_param(optimizer: str) -> float:
    return OPTIMIZER_STATE_BYTES.get(optimizer.lower().replace("-", "").replace("_", ""), 8.0)


def state_bytes(params: int, optimizer: str) -> int:
    """One saved state: fp32 LoRA weights, the optimizer's state, and the small files beside them."""
    return math.ceil(params * (4 + optimizer_bytes_per_param(optimizer))) + STATE_OVERHEAD


def lora_file_bytes(params: int) -> int:
    return 2 * params + LORA_FILE_OVERHEAD


def saves_in(hours: float, save_minutes: float, epoch_ends: int) -> int:
    """State saves in ``hours`` of training: one every ``save_minutes``, one at each epoch's end, one at the stop."""
    return int(hours * 60 // save_minutes) + epoch_ends + 1


@dataclass(frozen=True)
class DriveUse:
    model: int  # the base model copied to Drive (0: not kept, or already there)
    states: int  # at most: KEEP states and the one being written
    outputs: int  # epoch files kept, the final file and its JSON, samples, the loss plot
    trash: int  # what the run's deletions leave in Drive's trash

    @property
    def total(self) -> int:
        return self.model + self.states + self.outputs + self.trash


def run_use(*, params: int, optimizer: str, epochs: int, save_every_n_epochs: int = 1,
            keep_only_last_n_epochs: int = 10, samples: int = 0, sample_bytes: int = 0, model: int = 0,
            saves: int = 0, truncate: bool = True) -> DriveUse:
    """Drive bytes of a whole run. ``saves``: state saves over all its days (for the trash without truncation);
    ``samples``: preview grids of ``sample_bytes`` each."""
    state = state_bytes(params, optimizer)
    lora = lora_file_bytes(params)
    exported = (epochs - 1) // save_every_n_epochs if save_every_n_epochs else 0  # the last epoch is the final file
    kept = min(exported, keep_only_last_n_epochs) if keep_only_last_n_epochs else exported
    outputs = (kept + 1) * lora + 4096 + samples * sample_bytes + LOSS_PLOT
    trash = 0 if truncate else trash_bytes(params=params, optimizer=optimizer, saves=saves, pruned=exported - kept)
    return DriveUse(model=model, states=(KEEP_STATES + 1) * state, outputs=outputs, trash=trash)


def trash_bytes(*, params: int, optimizer: str, saves: int, pruned: int = 0) -> int:
    """What plain deletes put in Drive's trash: every state rotated out (all saves but the KEEP newest) and every
    pruned epoch file."""
    return max(0, saves - KEEP_STATES) * state_bytes(params, optimizer) + pruned * lora_file_bytes(params)


def gb(n: int | float) -> str:
    return f"{n / 1e9:.2f} GB"
