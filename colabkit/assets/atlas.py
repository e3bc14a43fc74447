"""Pack sprites into atlas pages and describe them in TexturePacker's JSON layouts (PixiJS and Phaser read them).

One page: ``<name>.png`` + ``<name>.json`` (JSON hash: ``{"frames": {name: {...}}, "meta": {...}}``), loaded by
PixiJS's ``Assets.load`` and Phaser's ``load.atlas``. Several pages: ``<name>-0.png`` + ``<name>-0.json`` ...,
each naming the others in ``meta.related_multi_packs`` (PixiJS loads them all from the first). Always also
``<name>.multiatlas.json`` (``{"textures": [{"image", "size", "frames": [...]}]}``), Phaser's ``load.multiatlas``.

Per frame: ``frame`` (its place on the page, the sprite trimmed to its visible pixels), ``trimmed``,
``spriteSourceSize`` (where those pixels lie in the untrimmed sprite), ``sourceSize`` (the sprite's PNG or
cell), ``anchor`` and ``pivot`` (the same point as fractions of ``sourceSize``: PixiJS reads ``anchor``,
Phaser ``anchor`` or ``pivot``), and ``origin`` (the sprite's box in its source picture; engines ignore it).
Frames are never rotated. Pages are padded, optionally powers of two, and each frame's edge pixels are
extruded into the padding so a scaled or filtered sprite never samples its neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from colabkit.errors import ColabkitError
from colabkit.i18n import _

MAX_SIDE = 4096  # what every GPU and engine handles


@dataclass(frozen=True)
class Placement:
    x: int
    y: int
    w: int
    h: int
    page: int = 0


@dataclass
class Frame:
    """One sprite for the atlas: its full picture, where its visible pixels are, its pivot and its origin."""

    image: np.ndarray  # RGBA: the sprite's PNG (trimmed box + margin, or its cell on a shared canvas)
    pivot: tuple[float, float] = (0.5, 1.0)  # fractions of the image's width and height
    origin: dict = field(default_factory=dict)  # {"image": source picture, "x", "y", "w", "h"}: its box there


def shelf_pack(sizes: list[tuple[int, int]], padding: int = 2, width: int | None = None) -> tuple[list[Placement], int, int]:
    """Place (w, h) rectangles on shelves, tallest first, on one page: (placements in input order, width, height)."""
    placed, pages = pack_pages(sizes, padding, max_side=1 << 30, width=width)
    return placed, pages[0][0] if pages else 0, pages[0][1] if pages else 0


def pack_pages(sizes: list[tuple[int, int]], padding: int = 2, max_side: int = MAX_SIDE, width: int | None = None,
               power_of_two: bool = False) -> tuple[list[Placement], list[tuple[int, int]]]:
    """Shelf packing, tallest first, onto as many pages (at most ``max_side`` square) as needed.

    Returns the placements in input order and each page's (width, height). ``width`` defaults to about the
    square root of the total area (a multiple of 64), so one page comes out roughly square.
    """
    if not sizes:
        return [], []
    widest = max(w for w, _h in sizes) + 2 * padding
    tallest = max(h for _w, h in sizes) + 2 * padding
    if max(widest, tallest) > max_side:
        raise ColabkitError(_("A sprite of {w}x{h} px does not fit on an atlas page of max_size {side} px: raise "
                              "max_size (up to 8192), or cut smaller pictures.").format(
                                  w=widest - 2 * padding, h=tallest - 2 * padding, side=max_side))
    if width is None:
        area = sum((w + padding) * (h + padding) for w, h in sizes)
        width = int(math.ceil(math.sqrt(area) * 1.1 / 64)) * 64
    width = min(max(width, widest), max_side)
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][1], -sizes[i][0], i))
    placed: list[Placement | None] = [None] * len(sizes)
    page, x, y, shelf = 0, padding, padding, 0
    for i in order:
        w, h = sizes[i]
        if x + w + padding > width:  # next shelf
            y += shelf + padding
            x, shelf = padding, 0
        if y + h + padding > max_side:  # next page
            page, x, y, shelf = page + 1, padding, padding, 0
        placed[i] = Placement(x, y, w, h, page)
        x += w + padding
        shelf = max(shelf, h)
    sizes_out = []
    for k in range(page + 1):  # each page just covers its frames (plus padding)
        mine = [p for p in placed if p is not None and p.page == k]
        pw = max(p.x + p.w for p in mine) + padding
        ph = max(p.y + p.h for p in mine) + padding
        if power_of_two:
            pw, ph = 1 << (pw - 1).bit_length(), 1 << (ph - 1).bit_length()
        sizes_out.append((pw, ph))
    return [p for p in placed if p is not None], sizes_out


def trim_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the visible pixels; the whole picture when none is visible."""
    ys, xs = np.nonzero(alpha > 0)
    if not len(ys):
        return 0, 0, alpha.shape[1], alpha.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def extrude_into(page: np.ndarray, x: int, y: int, w: int, h: int, n: int) -> None:
    """Copy the frame's border pixels ``n`` px outwards (the padding around it holds them)."""
    if n <= 0:
        return
    top, bottom = max(y - n, 0), min(y + h + n, page.shape[0])
    left, right = max(x - n, 0), min(x + w + n, page.shape[1])
    page[top:y, x:x + w] = page[y, x:x + w]
    page[y + h:bottom, x:x + w] = page[y + h - 1, x:x + w]
    page[top:bottom, left:x] = page[top:bottom, x:x + 1]
    page[top:bottom, x + w:right] = page[top:bottom, x + w - 1:x + w]


def build_atlas(images: dict[str, np.ndarray | Frame], name: str, padding: int = 2, max_side: int = MAX_SIDE,
                power_of_two: bool = False, extrude: int = 0) -> list[tuple[str, np.ndarray, dict]]:
    """The atlas pages for ``images`` (frame name -> RGBA array or ``Frame``): [(png name, RGBA, JSON hash)].

    ``name``: the atlas's name without extension (``"atlas.png"`` is read as ``"atlas"``). Frame names must
    be unique (they are the keys engines look sprites up by). See ``multiatlas`` for Phaser's multi-page JSON.
    """
    from colabkit.assets.sprites import bleed

    name = name[:-4] if name.lower().endswith(".png") else name
    frames = {k: v if isinstance(v, Frame) else Frame(np.asarray(v)) for k, v in images.items()}
    boxes = {k: trim_box(f.image[..., 3]) for k, f in frames.items()}
    sizes = [(r - l, b - t) for l, t, r, b in boxes.values()]
    # extruded pixels sit in the padding: each frame reserves its extrusion on every side
    placements, pages = pack_pages([(w + 2 * extrude, h + 2 * extrude) for w, h in sizes], padding, max_side,
                                   power_of_two=power_of_two)
    many = len(pages) > 1
    files = [f"{name}-{k}" if many else name for k in range(len(pages))]
    arrays = [np.zeros((h, w, 4), np.uint8) for w, h in pages]
    hashes = [{"frames": {}, "meta": {"app": "colabkit", "image": f"{files[k]}.png",
                                       "size": {"w": pages[k][0], "h": pages[k][1]}, "scale": "1",
                                       "format": "RGBA8888"}} for k in range(len(pages))]
    for (key, f), (l, t, r, b), p in zip(frames.items(), boxes.values(), placements):
        x, y, w, h = p.x + extrude, p.y + extrude, r - l, b - t
        page = arrays[p.page]
        page[y:y + h, x:x + w] = f.image[t:b, l:r]
        extrude_into(page, x, y, w, h, extrude)
        sh, sw = f.image.shape[:2]
        pivot = {"x": round(float(f.pivot[0]), 4), "y": round(float(f.pivot[1]), 4)}
        entry = {"frame": {"x": x, "y": y, "w": w, "h": h}, "rotated": False,
                 "trimmed": (l, t, r, b) != (0, 0, sw, sh),
                 "spriteSourceSize": {"x": l, "y": t, "w": w, "h": h}, "sourceSize": {"w": sw, "h": sh},
                 "anchor": pivot, "pivot": dict(pivot)}
        if f.origin:
            entry["origin"] = f.origin
        hashes[p.page]["frames"][key] = entry
    if many:
        for k, h in enumerate(hashes):
            h["meta"]["related_multi_packs"] = [f"{files[j]}.json" for j in range(len(files)) if j != k]
    return [(f"{files[k]}.png", bleed(arrays[k]), hashes[k]) for k in range(len(pages))]


def multiatlas(pages: list[tuple[str, np.ndarray, dict]]) -> dict:
    """Phaser's multi-atlas JSON (``load.multiatlas``) for the pages of ``build_atlas``: frames as arrays."""
    textures = []
    for image, _array, data in pages:
        meta = data["meta"]
        textures.append({"image": image, "format": meta["format"], "size": meta["size"], "scale": 1,
                         "frames": [{"filename": k, **v} for k, v in data["frames"].items()]})
    return {"textures": textures, "meta": {"app": "colabkit", "scale": "1"}}
