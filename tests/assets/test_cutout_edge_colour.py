"""The cut-out's soft edge: an anti-aliased red-on-white edge comes out red, with the white in the alpha only.

A pixel half covered by a red shape on white is (255, 128, 128) in the picture. Cut out, it must be red at alpha ~128,
not pink at alpha 128: pink would show as a light rim on any dark game background. This is what the colour
un-mixing does; without it the edge keeps the background's colour.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from colabkit.assets.cutout import cut_out

RED, WHITE = (255, 0, 0), (255, 255, 255)


def antialiased_disc(size=96, scale=8):
    """A red disc on white drawn at ``scale`` x and box-filtered down: each edge pixel the exact mix of its coverage."""
    big = Image.new("RGB", (size * scale, size * scale), WHITE)
    ImageDraw.Draw(big).ellipse((20 * scale, 18 * scale, 75 * scale, 77 * scale), fill=RED)
    mask = Image.new("L", big.size, 0)
    ImageDraw.Draw(mask).ellipse((20 * scale, 18 * scale, 75 * scale, 77 * scale), fill=255)
    rgb = np.asarray(big.resize((size, size), Image.BOX))
    coverage = np.asarray(mask.resize((size, size), Image.BOX)).astype(float) / 255
    return rgb, coverage


def test_soft_edge_pixels_are_the_sprites_colour_not_the_backgrounds():
    rgb, coverage = antialiased_disc()
    edge = (coverage > 0.1) & (coverage < 0.9)
    assert edge.sum() > 100
    assert rgb[edge][:, 1].max() > 100  # the picture's edge really is pinkish (red mixed with white)
    rgba = cut_out(rgb)
    alpha = rgba[..., 3].astype(int)
    partial = edge & (alpha > 0) & (alpha < 255)
    assert partial.sum() > 0.5 * edge.sum()  # the edge is soft, not cut hard
    colour = rgba[partial][:, :3].astype(int)
    off = np.abs(colour - np.array(RED)).max(axis=1)
    assert off.max() <= 40, (int(off.max()), int((off > 40).sum()))  # near pure red at partial alpha
    # and the alpha carries the coverage the white was mixed with
    assert np.abs(alpha[partial] / 255 - coverage[partial]).max() <= 0.25
    assert (alpha[coverage == 1] == 255).all() and (alpha[coverage == 0] == 0).all()
