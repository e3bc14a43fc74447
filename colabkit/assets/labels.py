"""Connected components of a boolean mask, with numpy only (scipy is not a dependency of colabkit).

Scanline labelling: each row's runs of True pixels are found with one vectorised diff, runs of
neighbouring rows that touch are joined with a small union-find (runs are far fewer than pixels),
and the labels are painted back with one vectorised scatter.
"""

from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of every horizontal run of True, in row-major order; ``end`` exclusive."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows, starts, ends


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


def label(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the 4- or 8-connected components of ``mask``: (int32 labels, 0 = background, 1..n; n)."""
    mask = np.asarray(mask, dtype=bool)
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8")
    h, w = mask.shape
    rows, starts, ends = _runs(mask)
    n_runs = len(rows)
    labels = np.zeros((h, w), dtype=np.int32)
    if n_runs == 0:
        return labels, 0
    reach = 1 if connectivity == 8 else 0
    # first run index of each row (rows are sorted): row y's runs are first[y]:first[y + 1]
    first = np.searchsorted(rows, np.arange(h + 1))
    parent = list(range(n_runs))
    for y in range(1, h):
        a0, a1, b0, b1 = first[y - 1], first[y], first[y], first[y + 1]
        if a0 == a1 or b0 == b1:
            continue
        up_starts, up_ends = starts[a0:a1], ends[a0:a1]
        # runs of the row above overlapping run b: end > b.start - reach and start < b.end + reach
        lo = np.searchsorted(up_ends, starts[b0:b1] - reach, side="right")
        hi = np.searchsorted(up_starts, ends[b0:b1] + reach, side="left")
        for k in np.nonzero(hi > lo)[0]:
            rb = _find(parent, b0 + int(k))
            for a in range(a0 + int(lo[k]), a0 + int(hi[k])):
                ra = _find(parent, a)
                if ra != rb:
                    parent[ra] = rb
    roots = np.array([_find(parent, i) for i in range(n_runs)])
    _, compact = np.unique(roots, return_inverse=True)
    run_label = compact.astype(np.int32) + 1
    lengths = ends - starts
    flat_start = rows * w + starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.reshape(-1)[np.repeat(flat_start, lengths) + offsets] = np.repeat(run_label, lengths)
    return labels, int(run_label.max())


def dilate(mask: np.ndarray, radius: int, after: int | None = None) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels left and up and ``after`` (default: ``radius``) right and down.

    A square (Chebyshev) growth, O(pixels): a running count along each axis in turn.
    """
    mask = np.asarray(mask, dtype=bool)
    after = radius if after is None else after
    if radius <= 0 and after <= 0:
        return mask.copy()
    out = mask
    for axis in (0, 1):
        c = np.cumsum(out, axis=axis, dtype=np.int32)
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        c = np.pad(c, pad)  # c[i] = count of the first i pixels along the axis
        # pixel i is reached by a True pixel j with j - radius <= i <= j + after
        hi = np.minimum(np.arange(n) + radius + 1, n)
        lo = np.maximum(np.arange(n) - after, 0)
        out = (np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)) > 0
    return out
