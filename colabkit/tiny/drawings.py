"""Seeded synthetic line drawings: the dataset of ``colabkit demo``, smoke runs and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

def drawing(seed: int, size: tuple[int, int] = (640, 640), ink=(0, 0, 0, 255), background=(255, 255, 255, 255)) -> Image.Image:
    """An RGBA "sketch": random thick strokes and circles, different for every seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGBA", size, background)
    d = ImageDraw.Draw(img)
    w, h = size
    width = max(2, min(w, h) // 60)
    for _ in range(12):
        pts = [(int(rng.uniform(0, w)), int(rng.uniform(0, h))) for _ in range(4)]
        d.line(pts, fill=ink, width=width, joint="curve")
    for _ in range(4):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(min(w, h) / 20, min(w, h) / 5)
        d.ellipse((x - r, y - r, x + r, y + r), outline=ink, width=width)
    # A filled block makes the low-frequency content (what the perceptual hash sees) seed-specific too.
    x, y = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
    d.rectangle((x, y, x + w * 0.3, y + h * 0.3), fill=ink)
    return img


def make_image_folder(
    folder: str | Path, n: int, size: tuple[int, int] = (1024, 1024), fmt: str = "mixed", seed: int = 0
) -> list[Path]:
    """``n`` different drawings (``fmt``: "png", "jpg" or "mixed"), for benchmarks and smoke runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ext = fmt if fmt != "mixed" else ("png" if i % 2 else "jpg")
        ink = tuple(int(c) for c in np.random.default_rng(seed + i).integers(0, 200, 3)) + (255,)
        img = drawing(seed + i, size=size, ink=ink).convert("RGB")
        path = folder / f"drawing_{i:04d}.{ext}"
        if ext == "jpg":
            img.save(path, quality=92)
        else:
            img.save(path)
        paths.append(path)
    return paths
