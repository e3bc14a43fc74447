"""Pixel art from generated pictures: the size of the drawn "pixels", one sprite pixel per block, one palette.

A model asked for pixel art draws blocks of k x k picture pixels (k = 8 or so at 1024 px), blurred and
JPEG-noisy at their borders. The block grid is found from where colour changes: along each axis, the share
of colour edges that fall on one grid of period k and some offset is near 1 for the real k and its divisors
and about a half for its multiples, so the largest k with nearly the best share is the grid. Each block then
becomes one pixel (its centre's colour: nearest neighbour, no blur), alpha fully on or off, and the whole set
shares one palette (noise grouped, then the closest colours merged), written as ``palette.png`` and Lospec's
``palette.hex``.
"""

from __future__ import annotations

import numpy as np

EDGE = 24  # a change of this much (0-255, any channel) between neighbours is a colour edge


def _aligned_share(signal: np.ndarray, k: int) -> tuple[float, int]:
    """(the largest share of ``signal``'s mass on one residue class mod k, that residue)."""
    total = signal.sum()
    if total <= 0:
        return 0.0, 0
    sums = np.array([signal[o::k].sum() for o in range(k)])
    o = int(np.argmax(sums))
    return float(sums[o] / total), o


def _edges(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour edges per column boundary and per row boundary (index i: between i and i + 1), visible pixels only."""
    g = np.asarray(rgba[..., :3], dtype=np.int16)
    visible = rgba[..., 3] > 0 if rgba.shape[2] == 4 else np.ones(g.shape[:2], bool)
    dx = _peaks(np.abs(np.diff(g, axis=1)).max(axis=2), axis=1) & visible[:, 1:] & visible[:, :-1]
    dy = _peaks(np.abs(np.diff(g, axis=0)).max(axis=2), axis=0) & visible[1:] & visible[:-1]
    return dx.sum(axis=0).astype(float), dy.sum(axis=1).astype(float)


def _peaks(d: np.ndarray, axis: int) -> np.ndarray:
    """Edges at their strongest point along ``axis`` (a blurred edge spreads over 2-3 boundaries: one counts)."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    p = np.pad(d, pad)
    n = d.shape[axis]
    before = np.take(p, np.arange(0, n), axis=axis)
    after = np.take(p, np.arange(2, n + 2), axis=axis)
    return (d > EDGE) & (d >= before) & (d > after)


def _grid(cols: np.ndarray, rows: np.ndarray, k: int) -> tuple[float, int, int]:
    (sx, ox), (sy, oy) = _aligned_share(cols, k), _aligned_share(rows, k)
    return (sx + sy) / 2, (ox + 1) % k, (oy + 1) % k  # a block starts just after an edge


def grid_offset(rgba: np.ndarray, k: int) -> tuple[int, int]:
    """Where the blocks of a known size ``k`` start (x, y), from the picture's colour edges."""
    _s, ox, oy = _grid(*_edges(rgba), k)
    return ox, oy


def detect_pixel_size(rgba: np.ndarray, largest: int = 32) -> tuple[int, int, int]:
    """(k, x offset, y offset) of the block grid of ``rgba``'s visible pixels; (1, 0, 0) when there is none."""
    cols, rows = _edges(rgba)
    if cols.sum() < 8 or rows.sum() < 8:
        return 1, 0, 0
    scores = {k: _grid(cols, rows, k) for k in range(2, largest + 1)}
    best = max(s for s, _x, _y in scores.values())
    if best < 0.6:  # no grid: edges spread over every offset
        return 1, 0, 0
    k = max(k for k, (s, _x, _y) in scores.items() if s >= 0.85 * best)
    return k, scores[k][1], scores[k][2]


def downscale(rgba: np.ndarray, k: int, offset: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One pixel per k x k block (its centre's colour), alpha on or off; ``origin``: where ``rgba[0, 0]`` lies
    in the picture whose grid ``offset`` describes."""
    if k <= 1:
        out = np.array(rgba, copy=True)
    else:
        x0 = (offset[0] + k // 2 - origin[0]) % k
        y0 = (offset[1] + k // 2 - origin[1]) % k
        out = np.array(rgba[y0::k, x0::k], copy=True)
    on = out[..., 3] >= 128
    out[..., 3] = np.where(on, 255, 0)
    out[~on, :3] = 0
    return out


def shared_palette(images: list[np.ndarray], colors: int, near: int = EDGE) -> np.ndarray:
    """At most ``colors`` RGB colours (uint8, n x 3) for the visible pixels of all ``images``.

    Colours within ``near`` of a more frequent one are its noise (JPEG, blur) and join it; then the two
    closest groups are merged, weighted by their pixels, until ``colors`` are left. (Median cut splits a
    large flat area's noise into several colours and merges a small outline into its neighbour.)
    """
    from PIL import Image

    visible = [im[..., :3][im[..., 3] > 0] for im in images]
    pixels = np.concatenate([v for v in visible if len(v)] or [np.zeros((1, 3), np.uint8)])
    uniq, counts = np.unique(pixels, axis=0, return_counts=True)
    if len(uniq) > 4096:  # a picture full of gradients: a first coarse palette keeps the grouping quick
        q = Image.fromarray(np.ascontiguousarray(pixels[None])).quantize(256, Image.Quantize.MAXCOVERAGE,
                                                                          dither=Image.Dither.NONE)
        idx, counts = np.unique(np.asarray(q).ravel(), return_counts=True)
        uniq = np.asarray(q.getpalette(), np.uint8).reshape(-1, 3)[idx]
    centres: list[np.ndarray] = []
    weights: list[float] = []
    for c, n in zip(uniq[np.argsort(-counts, kind="stable")].astype(float), np.sort(counts)[::-1].astype(float)):
        if centres:
            d = np.abs(np.array(centres) - c).max(axis=1)
            j = int(np.argmin(d))
            if d[j] <= near:
                centres[j] = (centres[j] * weights[j] + c * n) / (weights[j] + n)
                weights[j] += n
                continue
        centres.append(c)
        weights.append(n)
    cs, ws = np.array(centres), np.array(weights)
    while len(cs) > colors:
        d = ((cs[:, None] - cs[None]) ** 2).sum(axis=2) + np.eye(len(cs)) * 1e12
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        cs[i] = (cs[i] * ws[i] + cs[j] * ws[j]) / (ws[i] + ws[j])
        ws[i] += ws[j]
        cs, ws = np.delete(cs, j, axis=0), np.delete(ws, j)
    return np.clip(np.round(cs), 0, 255).astype(np.uint8)


def apply_palette(rgba: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Each visible pixel replaced by the nearest colour of ``palette`` (no dithering)."""
    out = np.array(rgba, copy=True)
    on = out[..., 3] > 0
    if on.any():
        px = out[..., :3][on].astype(np.int32)
        d = ((px[:, None, :] - palette[None].astype(np.int32)) ** 2).sum(axis=2)
        out[..., :3][on] = palette[np.argmin(d, axis=1)]
    return out


def palette_files(palette: np.ndarray) -> tuple[bytes, str]:
    """(palette.png: one pixel per colour, palette.hex: one RRGGBB per line, as Lospec and Aseprite read)."""
    from PIL import Image

    from colabkit.assets.cutout import png_bytes

    return (png_bytes(Image.fromarray(np.ascontiguousarray(palette[None]), "RGB")),
            "".join(f"{r:02x}{g:02x}{b:02x}\n" for r, g, b in palette.tolist()))
