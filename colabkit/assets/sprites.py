"""Split a cut-out sheet (RGBA) into single sprites: connected parts of its alpha, grouped and trimmed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from colabkit.assets.labels import dilate, label


@dataclass(frozen=True)
class Sprite:
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of its opaque pixels in the sheet, right/bottom exclusive
    area: int  # opaque pixels
    image: np.ndarray  # RGBA, trimmed to box + margin; pixels of other sprites in that box are transparent
    origin: tuple[int, int]  # where image[0, 0] lies in the sheet (may be negative: the margin past the border)


def split_sprites(rgba: np.ndarray, gap: int = 8, min_area: int = 64, margin: int = 2) -> list[Sprite]:
    """The sprites of ``rgba``, in reading order (top to bottom, then left to right).

    Parts (8-connected non-transparent pixels) with fewer than ``gap`` empty pixels between them belong to one
    sprite (a tree and its falling leaves); sprites with fewer than ``min_area`` opaque pixels are specks and
    dropped. Each is trimmed to its box plus ``margin`` transparent pixels on every side.
    """
    rgba = np.asarray(rgba, dtype=np.uint8)
    opaque = rgba[..., 3] > 0
    # Grown by a pixels left/up and b right/down, parts with up to a + b empty pixels between them touch
    # (8-connected): a + b = gap - 1 joins exactly those with fewer than ``gap`` (along rows and columns).
    grown = dilate(opaque, (gap - 1) // 2, gap - 1 - (gap - 1) // 2) if gap > 1 else opaque
    groups, n = label(grown, connectivity=8)
    groups = np.where(opaque, groups, 0)
    h, w = opaque.shape
    sprites = []
    if n == 0:
        return sprites
    ys, xs = np.nonzero(groups)
    ids = groups[ys, xs]
    order = np.argsort(ids, kind="stable")
    ys, xs, ids = ys[order], xs[order], ids[order]
    bounds = np.searchsorted(ids, np.arange(1, n + 2))
    for k in range(n):
        y, x = ys[bounds[k]:bounds[k + 1]], xs[bounds[k]:bounds[k + 1]]
        if len(y) < max(min_area, 1):
            continue
        left, top, right, bottom = int(x.min()), int(y.min()), int(x.max()) + 1, int(y.max()) + 1
        ox, oy = left - margin, top - margin
        image = np.zeros((bottom - top + 2 * margin, right - left + 2 * margin, 4), dtype=np.uint8)
        image[y - oy, x - ox] = rgba[y, x]
        sprites.append(Sprite(box=(left, top, right, bottom), area=len(y), image=image, origin=(ox, oy)))
    # Reading order: by rows of sprites (tops within half a sprite height count as one row), then by x.
    sprites.sort(key=lambda s: (s.box[1], s.box[0]))
    rows: list[list[Sprite]] = []
    for s in sprites:
        if rows and s.box[1] < min(r.box[1] + (r.box[3] - r.box[1]) // 2 for r in rows[-1]):
            rows[-1].append(s)
        else:
            rows.append([s])
    return [s for row in rows for s in sorted(row, key=lambda s: s.box[0])]


def reduce_palette(rgba: np.ndarray, colors: int) -> np.ndarray:
    """Pixel-art clean-up: at most ``colors`` colours (median cut), alpha made fully on or off (at 50%)."""
    from PIL import Image

    rgba = np.asarray(rgba, dtype=np.uint8)
    on = rgba[..., 3] >= 128
    rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    if on.any():
        # the palette comes from the visible pixels only, so the background never takes a colour slot
        visible = Image.fromarray(np.ascontiguousarray(rgba[..., :3][on][None]))
        palette = visible.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        rgb = rgb.quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB")
    out = np.dstack([np.asarray(rgb, dtype=np.uint8), np.where(on, 255, 0).astype(np.uint8)])
    out[~on, :3] = 0
    return out
