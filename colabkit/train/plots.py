"""The loss curve as a PNG (smoothed, with epoch boundaries): what the artist looks at."""

from __future__ import annotations

import io
import math
from pathlib import Path

from colabkit import files


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential smoothing with bias correction (the start isn't pulled to 0)."""
    out, avg, i = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):  # a skipped step (NaN/inf loss): a gap in the curve, the average unharmed
            out.append(float("nan"))
            continue
        i += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def save_loss_plot(losses: list[float], path: Path, steps_per_epoch: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot()
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#9bb7d4", linewidth=0.8, label="loss")
    ax.plot(steps, smooth(losses), color="#1f4e79", linewidth=2, label="smoothed")
    for e in range(steps_per_epoch, len(losses) + 1, steps_per_epoch):
        ax.axvline(e, color="#dddddd", linewidth=0.8, zorder=0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss (grey lines: epoch ends)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return files.write_bytes(path, buf.getvalue())
