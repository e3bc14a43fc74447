"""The LoRA files a run writes in output/: one definition for writing, pruning, archiving and refusing a parent.

``<slug>.safetensors`` (the final file) and ``<slug>-NN.safetensors`` (one per epoch) are the run's own; any other
name in output/ (``<slug>-v1.safetensors``, a file the artist put there) is never overwritten, pruned or moved.
"""

from __future__ import annotations

import re
from pathlib import Path

from colabkit.project import Project


def lora_name(project: Project, epoch: int | None = None) -> Path:
    return project.output / (f"{project.slug}-{epoch:02d}.safetensors" if epoch else f"{project.slug}.safetensors")


def epoch_number(path: Path, project: Project) -> int | None:
    """The epoch of ``<slug>-NN.safetensors``; None for any other name."""
    m = re.fullmatch(re.escape(project.slug) + r"-(\d{2,})", path.stem)
    return int(m[1]) if m and path.suffix == ".safetensors" else None


def is_run_lora(path: Path, project: Project) -> bool:
    """Whether ``path`` is a name this run writes (or prunes) in output/."""
    path = Path(path)
    if path.suffix != ".safetensors" or path.resolve().parent != project.output.resolve():
        return False
    return path.stem == project.slug or epoch_number(path, project) is not None


def epoch_loras(project: Project) -> list[Path]:
    """The run's epoch files, oldest epoch first."""
    found = [p for p in project.output.glob("*.safetensors") if epoch_number(p, project) is not None]
    return sorted(found, key=lambda p: epoch_number(p, project))


def run_loras(project: Project) -> list[Path]:
    """The run's own LoRA files: its epochs, then the final file when there is one."""
    final = lora_name(project)
    return epoch_loras(project) + ([final] if final.is_file() else [])
