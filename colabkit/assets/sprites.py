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


def split_sprites(rgba: np.ndarray, gap: int = 8, min_area: int = 64, margin: int = 2,
                  threshold: int = 1) -> list[Sprite]:
    """The sprites of ``rgba``, in reading order (top to bottom, then left to right).

    Parts (8-connected pixels with alpha >= ``threshold``) with fewer than ``gap`` empty pixels between them
    belong to one sprite (a tree and its falling leaves); sprites with fewer than ``min_area`` such pixels are
    specks and dropped. Fainter pixels (a matting model's soft edge) go with the sprite they lie within
    ``gap`` of; faint haze farther from any sprite, or under an eighth of ``threshold``, is dropped. Each
    sprite is trimmed to its box plus ``margin`` transparent pixels on every side.
    """
    rgba = np.asarray(rgba, dtype=np.uint8)
    solid = rgba[..., 3] >= max(threshold, 1)
    opaque = rgba[..., 3] >= max(1, threshold // 8)  # fainter still is invisible haze: left out
    # Grown by a pixels left/up and b right/down, parts with up to a + b empty pixels between them touch
    # (8-connected): a + b = gap - 1 joins exactly those with fewer than ``gap`` (along rows and columns).
    grown = dilate(solid, (gap - 1) // 2, gap - 1 - (gap - 1) // 2) if gap > 1 else solid
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
        if solid[y, x].sum() < max(min_area, 1):
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


def bleed(rgba: np.ndarray) -> np.ndarray:
    """``rgba`` with each fully transparent pixel's colour taken from the visible pixels around it.

    An engine that scales or filters a sprite mixes in its transparent neighbours' colours: black or white
    there shows as a dark or light fringe. Push-pull: the visible colours averaged down a pyramid of halved
    sizes, then each transparent pixel takes the average of the finest level that has any. Alpha and the
    visible pixels are unchanged.
    """
    rgba = np.array(rgba, dtype=np.uint8, copy=True)
    visible = rgba[..., 3] > 0
    if visible.all() or not visible.any():
        return rgba
    c = rgba[..., :3].astype(np.float32) * visible[..., None]
    w = visible.astype(np.float32)
    levels = [(c, w)]
    while c.shape[0] > 1 or c.shape[1] > 1:
        h2, w2 = (c.shape[0] + 1) // 2, (c.shape[1] + 1) // 2
        pad = ((0, 2 * h2 - c.shape[0]), (0, 2 * w2 - c.shape[1]))
        c = np.pad(c, pad + ((0, 0),)).reshape(h2, 2, w2, 2, 3).sum(axis=(1, 3))
        w = np.pad(w, pad).reshape(h2, 2, w2, 2).sum(axis=(1, 3))
        levels.append((c, w))
    colour = levels[-1][0] / np.maximum(levels[-1][1], 1e-6)[..., None]
    for c, w in reversed(levels[:-1]):
        up = np.repeat(np.repeat(colour, 2, axis=0), 2, axis=1)[:c.shape[0], :c.shape[1]]
        colour = np.where((w > 0)[..., None], c / np.maximum(w, 1e-6)[..., None], up)
    rgba[~visible, :3] = np.clip(np.round(colour[~visible]), 0, 255).astype(np.uint8)
    return rgba


def content(rgba: np.ndarray) -> np.ndarray:
    """``rgba`` trimmed to its visible pixels."""
    from colabkit.assets.atlas import trim_box

    l, t, r, b = trim_box(rgba[..., 3])
    return rgba[t:b, l:r]


def _scaled(rgba: np.ndarray, factor: float) -> np.ndarray:
    """Resized by ``factor`` with premultiplied alpha (no dark fringe from transparent pixels' colours)."""
    from PIL import Image

    h, w = rgba.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA").convert("RGBa")
    return np.asarray(im.resize(size, Image.LANCZOS).convert("RGBA"), dtype=np.uint8)


def solid_box(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the pixels at least half opaque: the object itself, not its soft shadow or faint edge."""
    from colabkit.assets.atlas import trim_box

    alpha = rgba[..., 3]
    return trim_box(alpha if (alpha >= 128).sum() == 0 else (alpha >= 128).astype(np.uint8))


def on_canvas(images: list[np.ndarray], mode: str = "own", height: int = 256, margin: int = 2,
              pivot: tuple[float, float] = (0.5, 1.0)) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """Each sprite (RGBA) and its pivot as fractions of its size, as a set.

    The pivot is placed on the object's box (its pixels at least half opaque: a soft shadow below a prop does
    not move its feet). ``mode`` "own": each keeps its own size. "cell": every sprite on one cell (the
    widest and tallest of the set plus ``margin``), centred, the objects' bottoms on one baseline; the pivot
    is then the same for every sprite. "height": each first scaled so its object is ``height`` px tall.
    """
    px, py = pivot
    if mode == "own":
        out = []
        for im in images:
            l, t, r, b = solid_box(im)
            out.append((im, ((l + px * (r - l)) / im.shape[1], (t + py * (b - t)) / im.shape[0])))
        return out
    parts = [content(im) for im in images]
    if mode == "height":
        parts = [_scaled(p, height / max(1, solid_box(p)[3] - solid_box(p)[1])) for p in parts]
    boxes = [solid_box(p) for p in parts]
    above = max(b for _l, _t, _r, b in boxes)  # object bottom to the part's top, at most
    below = max(p.shape[0] - b for p, (_l, _t, _r, b) in zip(parts, boxes))  # shadow under the bottom
    iw = max(p.shape[1] for p in parts)
    cw, ch = iw + 2 * margin, above + below + 2 * margin
    base = margin + above  # the baseline's row
    tallest = max(b - t for _l, t, _r, b in boxes)  # pivot y runs from the tallest object's top to the baseline
    out = []
    for p, (l, t, r, b) in zip(parts, boxes):
        cell = np.zeros((ch, cw, 4), np.uint8)
        x = (cw - (r - l)) // 2 - l  # the object centred
        x = min(max(x, 0), cw - p.shape[1])
        y = base - b
        cell[y:y + p.shape[0], x:x + p.shape[1]] = p
        out.append((cell, ((margin + px * iw) / cw, (base - (1 - py) * tallest) / ch)))
    return out


def sprite_names(names: str) -> list[str]:
    """'sword, shield\npotion' -> ['sword', 'shield', 'potion']: file-safe (letters, digits, - and _)."""
    import re

    out = []
    for raw in re.split(r"[,\n]", str(names)):
        name = re.sub(r"[^\w\-]+", "_", raw.strip()).strip("_")
        if name:
            out.append(name)
    return out
