"""Pack sprites into one atlas picture and describe it in TexturePacker's JSON-hash layout.

That layout is what Phaser (``this.load.atlas``) and PixiJS (``Assets.load`` of the .json) read:
``{"frames": {name: {"frame": {x, y, w, h}, "rotated", "trimmed", "spriteSourceSize", "sourceSize"}},
"meta": {"image", "size", "scale", "format"}}``. Frames are never rotated (every engine supports that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_SIDE = 4096  # what every GPU and engine handles


@dataclass(frozen=True)
class Placement:
    x: int
    y: int
    w: int
    h: int


def shelf_pack(sizes: list[tuple[int, int]], padding: int = 2, width: int | None = None) -> tuple[list[Placement], int, int]:
    """Place (w, h) rectangles on shelves, tallest first: (placements in input order, atlas width, height).

    ``width`` defaults to about the square root of the total area (rounded up to a multiple of 64) and at
    least the widest rectangle, so the atlas comes out roughly square.
    """
    if not sizes:
        return [], 0, 0
    widest = max(w for w, _ in sizes) + 2 * padding
    if width is None:
        area = sum((w + padding) * (h + padding) for w, h in sizes)
        width = max(widest, int(math.ceil(math.sqrt(area) * 1.1 / 64)) * 64)
    width = max(width, widest)
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][1], -sizes[i][0], i))
    placed: list[Placement | None] = [None] * len(sizes)
    x = y = padding
    shelf = 0
    for i in order:
        w, h = sizes[i]
        if x + w + padding > width:  # next shelf
            y += shelf + padding
            x, shelf = padding, 0
        placed[i] = Placement(x, y, w, h)
        x += w + padding
        shelf = max(shelf, h)
    height = y + shelf + padding
    return [p for p in placed if p is not None], width, height


def build_atlas(images: dict[str, np.ndarray], image_name: str, padding: int = 2) -> tuple[np.ndarray, dict]:
    """(the atlas RGBA array, its TexturePacker JSON-hash dict) for ``images`` (frame name -> RGBA array)."""
    names = list(images)
    sizes = [(images[n].shape[1], images[n].shape[0]) for n in names]
    placements, width, height = shelf_pack(sizes, padding)
    if max(width, height, 0) > MAX_SIDE:
        from colabkit.errors import ColabkitError

        raise ColabkitError(f"the atlas for {image_name} would be {width}x{height}, over {MAX_SIDE} px: cut fewer or "
                            "smaller sprites into one atlas (raise min_area, or split the picture).")
    atlas = np.zeros((max(height, 1), max(width, 1), 4), dtype=np.uint8)
    frames = {}
    for name, p in zip(names, placements):
        atlas[p.y:p.y + p.h, p.x:p.x + p.w] = images[name]
        frames[name] = {
            "frame": {"x": p.x, "y": p.y, "w": p.w, "h": p.h},
            "rotated": False,
            "trimmed": False,  # each sprite PNG is already trimmed; the frame is that whole PNG
            "spriteSourceSize": {"x": 0, "y": 0, "w": p.w, "h": p.h},
            "sourceSize": {"w": p.w, "h": p.h},
        }
    meta = {"app": "colabkit", "image": image_name, "size": {"w": int(atlas.shape[1]), "h": int(atlas.shape[0])},
            "scale": "1", "format": "RGBA8888"}
    return atlas, {"frames": frames, "meta": meta}
