"""The edge colour solver, pixel by pixel: a pixel made as ``a * O + (1 - a) * L`` comes back as O at alpha a.

The sheets' tests check whole pictures within JPEG's blur (tens of levels); these pin each band pixel's alpha and
colour to within a rounding step on exactly mixed edges, so a solver a few levels off fails here.
"""

import numpy as np
import pytest

from colabkit.assets.cutout import unmix_alpha, unmix_edges

L = np.array([250.0, 248.0, 240.0])  # warm off-white paper
DEEP = np.array([150.0, 10.0, 20.0])  # the sprite's inside, farthest from the paper: the solver's reference O
# Its true colour at the edge: lighter (80% of the way from the paper to DEEP) and 12 levels across that line
# (orthogonal to it), so a mix of it with the paper stays near the line (as anti-aliasing does) while its solved
# colour, DEEP + 15 levels across, differs from DEEP.
_ACROSS = np.array([1.0, 0.0, -100.0 / 220.0])  # (DEEP - L) . _ACROSS == 0
EDGE = L + 0.8 * (DEEP - L) + 12.0 * _ACROSS
RED = np.array([200.0, 20.0, 30.0])  # a model's edge colour: any colour, the model gives alpha


def trust(a: float) -> float:
    """How much of the solved colour a band pixel keeps (the docstring's rule): none below alpha 0.4, all at 1."""
    return min(max((a - 0.4) / 0.6, 0.0), 1.0)


def mix(a: float, colour=EDGE) -> np.ndarray:
    return a * colour + (1 - a) * L


def _row_image(alphas, deep_at=3):
    """One row per alpha: paper | the mixed pixel | EDGE for ``deep_at - 1`` px | DEEP, 20 px wide."""
    h, w = len(alphas), 20
    rgb = np.tile(L, (h, w, 1))
    for y, a in enumerate(alphas):
        rgb[y, 8] = mix(a)
        rgb[y, 9:9 + deep_at - 1] = EDGE
        rgb[y, 9 + deep_at - 1:] = DEEP
    rgb = np.round(rgb).astype(np.uint8)
    ring = np.zeros((h, w), bool)
    ring[:, 8] = True
    inside = np.zeros((h, w), bool)
    inside[:, 9:] = True
    return rgb, ring, inside


@pytest.mark.parametrize("a", [0.3, 0.55, 0.65, 0.75, 0.8])
def test_a_mixed_edge_pixel_gets_its_alpha_and_a_colour_solved_from_it(a):
    rgb, ring, inside = _row_image([a])
    field = np.tile(L, rgb.shape[:2] + (1,)).astype(np.float32)
    ys, xs, alpha, colour, on_line = unmix_edges(rgb, ring, inside, field, band=3, softness=48)
    assert xs.tolist() == [8] and on_line.tolist() == [True]
    # alpha: the projection on the line from the paper to the farthest inside colour (DEEP, within band + 1 px)
    expected_alpha = float(((mix(a) - L) @ (DEEP - L)) / ((DEEP - L) @ (DEEP - L)))
    assert alpha[0] == pytest.approx(expected_alpha, abs=0.01)
    t = trust(expected_alpha)
    solved = L + (mix(a) - L) / expected_alpha
    expected = DEEP * (1 - t) + solved * t
    assert np.abs(colour[0].astype(float) - expected).max() <= 1.5, (colour[0], expected)


def test_nearly_opaque_and_two_colour_mixes_stay_opaque_and_unchanged():
    rgb, ring, inside = _row_image([0.5, 0.5])
    rgb[0, 8] = np.round(mix(0.95, DEEP)).astype(np.uint8)  # nearly the sprite's colour
    rgb[1, 8] = np.round(0.5 * DEEP + 0.5 * np.array([20.0, 20.0, 200.0])).astype(np.uint8)  # two of its colours
    field = np.tile(L, rgb.shape[:2] + (1,)).astype(np.float32)
    _, _, alpha, colour, on_line = unmix_edges(rgb, ring, inside, field, band=3, softness=48)
    assert alpha.tolist() == [1.0, 1.0]
    assert (colour == rgb[:, 8]).all()
    assert on_line.tolist() == [True, False]


def test_a_pale_sprite_uses_the_softness_span():
    # A sprite close to the paper (|O - L| < softness): alpha is measured on the softness span, so a faint pixel
    # is not taken for the sprite itself.
    pale = L - 20.0
    rgb = np.tile(L, (1, 20, 1))
    rgb[0, 8] = L - 10.0
    rgb[0, 9:] = pale
    rgb = rgb.astype(np.uint8)
    ring = np.zeros((1, 20), bool)
    ring[0, 8] = True
    inside = np.zeros((1, 20), bool)
    inside[0, 9:] = True
    field = np.tile(L, (1, 20, 1)).astype(np.float32)
    _, _, alpha, _, _ = unmix_edges(rgb, ring, inside, field, band=3, softness=48)
    assert alpha[0] == pytest.approx(float((10.0 * 20.0 * 3) / 48 ** 2), abs=0.01)


def test_a_models_soft_alpha_gets_the_paper_unmixed_from_its_edge():
    h, w = 16, 24
    rgb = np.tile(L, (h, w, 1))
    alpha = np.zeros((h, w), np.uint8)
    rgb[:, 12:] = DEEP
    alpha[:, 12:] = 255
    cases = {0: 0.2, 2: 0.5, 4: 0.7, 6: 0.9}
    for y, a in cases.items():
        rgb[y, 11] = mix(a, RED)
        alpha[y, 11] = round(a * 255)
    rgb = np.round(rgb).astype(np.uint8)
    out = unmix_alpha(rgb, alpha, band=2)
    for y, a in cases.items():
        a_ = round(a * 255) / 255
        t = trust(a_)
        solved = L + (rgb[y, 11].astype(float) - L) / a_
        expected = np.clip(DEEP * (1 - t) + solved * t, 0, 255)  # nearest opaque colour: DEEP, 1 px away
        assert np.abs(out[y, 11].astype(float) - expected).max() <= 2.0, (a, out[y, 11], expected)
    assert (out[:, :11] == rgb[:, :11]).all() and (out[:, 12:] == rgb[:, 12:]).all()  # only the soft pixels change
