"""The flood-fill keyer's parts pinned exactly on small designed pictures (mutation testing of cutout.py found
them unguarded): the holes setting, the border ring, the smooth background surface, the busy-border refusal,
the edge solver at the picture's border, and key_sheet's shadows, holes and closed gaps.

Every picture here is small (at most a few thousand pixels) and its expected result follows from its design.
"""

import numpy as np
import pytest

from colabkit.assets.cutout import (
    _offsets,
    background_field,
    border_pixels,
    fit_surface,
    key_background,
    key_sheet,
    outside_of,
    parse_holes,
    scale_of,
    unmix_edges,
)
from colabkit.errors import ColabkitError

# -- the holes setting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("keep", ("keep", set())), ("clear", ("clear", set())), ("", ("keep", set())), ("  Clear ", ("clear", set())),
    ("KEEP", ("keep", set())), ("1, 3", ("some", {1, 3})), ("2;4", ("some", {2, 4})), ("1 3", ("some", {1, 3})),
    ("5", ("some", {5})), ("1,,2 ; 7", ("some", {1, 2, 7})),
])
def test_holes_setting_forms(text, expected):
    assert parse_holes(text) == expected


@pytest.mark.parametrize("text", ["all", "1, two", "Some"])
def test_holes_setting_refused_with_the_forms_it_takes(text):
    with pytest.raises(ColabkitError) as e:
        parse_holes(text)
    assert str(e.value) == (f"holes {text!r}: write keep, clear, or the numbers of the holes to clear from the "
                            "preview, e.g. 1, 3.")


# -- small helpers: the border ring, window offsets, the picture's scale --------------------------------------------


def test_border_pixels_are_the_outer_ring_each_pixel_once():
    h, w = 5, 7
    rgb = np.arange(h * w * 3).reshape(h, w, 3)
    got = border_pixels(rgb)
    ring = np.zeros((h, w), bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    expected = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])  # top, bottom, left, right
    assert len(got) == ring.sum() == 2 * w + 2 * (h - 2)
    assert np.array_equal(got, expected)
    assert sorted(got[:, 0].tolist()) == sorted(rgb[ring][:, 0].tolist())


def test_outside_of_keeps_what_touches_each_side_4_connected():
    # each piece touches its side only in the outermost row or column (a piece one pixel in counts too)
    m = np.zeros((9, 9), bool)
    m[0, 3] = m[0, 4] = True  # along the top
    m[8, 2] = m[8, 3] = True  # the bottom
    m[3, 0] = m[4, 0] = True  # the left
    m[5, 8] = m[6, 8] = True  # the right
    m[4, 4] = True  # enclosed
    m[1, 5] = True  # diagonal to the top's piece only: not 4-connected to it
    expected = m.copy()
    expected[4, 4] = expected[1, 5] = False
    assert np.array_equal(outside_of(m), expected)


def test_offsets_nearest_first_then_in_reading_order():
    assert _offsets(1) == [(0, 0), (-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    two = _offsets(2)
    assert len(two) == 25 and two[:9] == _offsets(1)
    assert two[9:] == [(-2, 0), (0, -2), (0, 2), (2, 0), (-2, -1), (-2, 1), (-1, -2), (-1, 2), (1, -2), (1, 2),
                       (2, -1), (2, 1), (-2, -2), (-2, 2), (2, -2), (2, 2)]


def test_scale_is_the_longest_side_over_1024():
    assert scale_of((512, 2048, 3)) == 2.0
    assert scale_of((2048, 512)) == 2.0
    assert scale_of((100, 256)) == 0.25


# -- the smooth background surface ---------------------------------------------------------------------------------


def _poly(h, w, coef):
    """A colour field sum_ij coef[c][i, j] * y^i * x^j over the picture mapped to [-1, 1] (HxWx3 float)."""
    y = np.linspace(-1, 1, h)[:, None]
    x = np.linspace(-1, 1, w)[None, :]
    out = np.zeros((h, w, 3))
    for c in range(3):
        for (i, j), v in coef[c].items():
            out[..., c] += v * y ** i * x ** j
    return out


VIGNETTE = [  # quartic, different per channel and in x and y: a warm vignette, lighter top-left
    {(0, 0): 235.0, (2, 0): -14.0, (0, 2): -18.0, (2, 2): -9.0, (4, 0): -6.0, (0, 4): 5.0, (1, 0): -6.0, (0, 1): -4.0,
     (1, 3): 3.0},
    {(0, 0): 228.0, (2, 0): -16.0, (0, 2): -12.0, (2, 2): -7.0, (4, 0): 4.0, (0, 4): -6.0, (1, 0): -3.0, (0, 1): -7.0,
     (3, 1): -3.0},
    {(0, 0): 214.0, (2, 0): -20.0, (0, 2): -16.0, (2, 2): -5.0, (4, 0): -3.0, (0, 4): -4.0, (1, 0): -5.0,
     (0, 1): -2.0, (1, 1): 4.0},
]


def test_fit_surface_returns_a_quartic_vignette_within_a_level():
    h, w = 40, 56  # not square: y and x are scaled by their own sides
    true = _poly(h, w, VIGNETTE)
    rgb = np.round(true).astype(np.uint8)
    field = fit_surface(rgb, np.ones((h, w), bool), 4)
    assert field.dtype == np.float32 and field.shape == (h, w, 3)
    assert np.abs(field - true).max() <= 0.6  # the rounding to whole levels, no more


def test_fit_surface_from_a_one_pixel_ring():
    # Only the outermost rows and columns are known (even sides: every other pixel of them would miss the last
    # row and column): a quadratic shading is still found everywhere inside.
    h, w = 30, 44
    coef = [{(0, 0): 200.0, (1, 0): 20.0, (0, 1): -15.0, (1, 1): 10.0, (2, 0): -12.0, (0, 2): 8.0}] * 3
    true = _poly(h, w, coef)
    rgb = np.round(true).astype(np.uint8)
    ring = np.zeros((h, w), bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    assert np.abs(fit_surface(rgb, ring, 2) - true).max() <= 0.6


@pytest.mark.parametrize("shape", [(2, 9), (9, 2)])
def test_fit_surface_on_a_two_pixel_wide_picture(shape):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    true = np.stack([100 + 12 * y + 5 * x, 50 + 3 * x + 0 * y, 200 - 11 * y + 0 * x], axis=-1).astype(float)
    field = fit_surface(true.astype(np.uint8), np.ones((h, w), bool), 1)
    assert np.abs(field - true).max() <= 0.01


def test_fit_surface_is_clipped_to_the_colour_range():
    # Known on the left half only, a ramp to 0 in red and to 255 in green: extrapolated to the right it would
    # leave 0-255; it stops at the ends of the range.
    h, w = 8, 40
    x = np.arange(w)[None, :].repeat(h, 0).astype(float)
    true = np.stack([100 - 5 * x, 155 + 5 * x, 120 + 0 * x], axis=-1)
    left = np.zeros((h, w), bool)
    left[:, :20] = True
    rgb = np.clip(np.round(true), 0, 255).astype(np.uint8)
    field = fit_surface(rgb, left, 1)
    assert np.abs(field[:, :20] - true[:, :20]).max() <= 0.01
    assert (field[:, 21:, 0] == 0).all() and (field[:, 21:, 1] == 255).all()
    assert np.abs(field[..., 2] - 120).max() <= 0.01


# -- the background's colour field and the busy-border refusal -------------------------------------------------------


def test_busy_border_refused_with_its_share_its_colour_and_the_fix():
    # Every border pixel is far from any smooth shading (a checkerboard of two colours 100 levels either side of
    # one colour): none of it is near; the middle of the outer ring's colours is that one colour.
    h, w = 20, 26
    centre = np.array([120, 130, 140])
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.where(((y + x) % 2 == 0)[..., None], centre + 100, centre - 100).astype(np.uint8)
    with pytest.raises(ColabkitError) as e:
        background_field(rgb, 24)
    assert str(e.value) == (
        "the picture's border is not one plain or smoothly shaded colour (only 0% of it is near [120, 130, 140]): "
        "the flood fill needs a plain light background. Generate with 'white background, simple background' "
        "in the prompt, raise tolerance, or give model_file (a BiRefNet or isnet-anime .onnx).")


def test_background_field_follows_a_vignette_behind_a_sprite():
    # The border alone gives a quadratic guess; the refits over the whole flooded background give the quartic
    # vignette itself, behind the sprite too.
    h, w = 48, 64
    true = _poly(h, w, VIGNETTE)
    rgb = np.round(true).astype(np.uint8)
    rgb[14:34, 20:44] = (40, 90, 30)
    field = background_field(rgb, 24)
    assert np.abs(field - true).max() <= 1.0


def test_background_field_of_exactly_64_background_pixels_is_refitted():
    # An 8x8 picture, all background (tolerance wide enough for the border's quadratic guess): 64 pixels are enough
    # for the quartic refit, which is exact; the quadratic guess is several levels off inside.
    true = _poly(8, 8, VIGNETTE)
    rgb = np.round(true).astype(np.uint8)
    ring = np.zeros((8, 8), bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    assert np.abs(fit_surface(rgb, ring, 2) - true).max() > 3  # (what a missing refit would return)
    assert np.abs(background_field(rgb, 60) - true).max() <= 1.0


def test_background_field_of_a_tiny_picture_is_the_borders_guess():
    rgb = np.full((7, 7, 3), (230, 220, 200), np.uint8)
    field = background_field(rgb, 24)
    assert field.shape == (7, 7, 3) and np.abs(field - rgb).max() <= 0.01


# -- the edge solver: the picture's border, ties, clipping -----------------------------------------------------------

L = np.array([200.0, 200.0, 200.0])


def _solve(rgb, inside, ring, band=1, tolerance=24, field=L):
    rgb = np.asarray(rgb, np.uint8)
    f = np.broadcast_to(np.asarray(field, np.float32), rgb.shape).copy()
    return unmix_edges(rgb, ring, inside, f, band, 48, tolerance)


def _expected(p, deep, local=L):
    """(alpha, colour) the docstring gives a band pixel ``p`` whose farthest inside colour is ``deep``."""
    p, deep = np.asarray(p, float), np.asarray(deep, float)
    a = float((p - local) @ (deep - local) / max((deep - local) @ (deep - local), 48.0 ** 2))
    t = min(max((a - 0.4) / 0.6, 0.0), 1.0)
    return a, deep * (1 - t) + (local + (p - local) / a) * t


def test_edge_pixels_on_the_pictures_border_see_their_neighbours_there():
    # A band pixel in the middle of each side, its one sprite neighbour along that side (1 px away, within the
    # search radius band + 1 = 2); nothing else of the sprite within reach, except across the picture (the right
    # side's neighbour, in reach only if the left pixel's window wrapped around).
    h, w = 7, 9
    rgb = np.tile(L, (h, w, 1))
    inside = np.zeros((h, w), bool)
    ring = np.zeros((h, w), bool)
    cases = {  # band pixel: (its sprite neighbour, that neighbour's colour)
        (0, 4): ((0, 3), (100.0, 60.0, 40.0)), (6, 4): ((6, 5), (40.0, 120.0, 60.0)),
        (3, 0): ((2, 0), (150.0, 90.0, 110.0)), (3, 8): ((4, 8), (10.0, 10.0, 10.0)),
    }
    for (y, x), ((ny, nx), deep) in cases.items():
        rgb[ny, nx] = deep
        inside[ny, nx] = True
        rgb[y, x] = np.round((L + np.array(deep)) / 2)
        ring[y, x] = True
    rgb = rgb.astype(np.uint8)
    ys, xs, alpha, colour, on_line = _solve(rgb, inside, ring)
    for k, (y, x) in enumerate(zip(ys, xs)):
        a, c = _expected(rgb[y, x], cases[(y, x)][1])
        assert alpha[k] == pytest.approx(a, abs=1e-3), (y, x)
        assert np.abs(colour[k] - c).max() <= 0.6, (y, x, colour[k], c)
    assert on_line.all() and colour.dtype == np.uint8


def test_equally_far_sprite_colours_the_nearest_in_reading_order_wins():
    # Two sprite colours equally far from the paper; the one met first (up, then left, right, down) is the
    # reference: the band pixel is a mix of the paper and A, so it is half transparent, not a stray colour.
    A, B = (100.0, 200.0, 200.0), (200.0, 100.0, 200.0)
    rgb = np.tile(L, (5, 14, 1))
    inside = np.zeros((5, 14), bool)
    for (y, x), c in {(1, 3): A, (3, 3): B, (2, 2): B, (2, 4): B, (2, 9): A, (2, 11): B}.items():
        rgb[y, x] = c
        inside[y, x] = True
    ring = np.zeros((5, 14), bool)
    ring[2, 3] = ring[2, 10] = True
    rgb[2, 3] = rgb[2, 10] = (150, 200, 200)
    _, _, alpha, colour, _ = _solve(rgb, inside, ring)
    assert alpha.tolist() == [0.5, 0.5]
    assert colour.tolist() == [[100, 200, 200], [100, 200, 200]]


def test_the_search_reaches_band_plus_one_pixels_and_no_farther():
    rgb = np.tile(L, (1, 12, 1))
    inside = np.zeros((1, 12), bool)
    rgb[0, 3] = (150, 150, 150)
    rgb[0, 4] = (100, 100, 100)  # 1 px away: the reference
    rgb[0, 6] = (0, 0, 0)  # 3 px away: out of reach for band 1
    inside[0, 4:] = True
    rgb[0, 5] = rgb[0, 7:] = (100, 100, 100)
    ring = np.zeros((1, 12), bool)
    ring[0, 3] = True
    _, _, alpha, colour, _ = _solve(rgb, inside, ring, band=1)
    assert alpha.tolist() == [0.5] and colour.tolist() == [[100, 100, 100]]
    _, _, alpha, _, _ = _solve(rgb, inside, ring, band=2)
    assert alpha[0] == pytest.approx(0.25)


def test_a_light_sprites_own_edge_pixel_takes_the_lightest_colour_near_it():
    # On a grey paper a white sprite: its edge pixel (inside it, 30 levels lighter) is half of the way to the
    # sprite's lightest colour 1 px further in.
    grey = np.array([100.0, 100.0, 100.0])
    rgb = np.tile(grey, (1, 8, 1))
    rgb[0, 3] = (130, 130, 130)
    rgb[0, 4:] = (160, 160, 160)
    inside = np.zeros((1, 8), bool)
    inside[0, 3:] = True
    ring = np.zeros((1, 8), bool)
    ring[0, 3] = True
    _, _, alpha, colour, _ = _solve(rgb, inside, ring, field=grey)
    assert alpha.tolist() == [0.5] and colour.tolist() == [[160, 160, 160]]


@pytest.mark.parametrize("paper, deep, pixel, alpha, red", [
    ((200, 200, 200), (100, 100, 100), (210, 210, 210), 0.0, 100),  # lighter than the paper: transparent
    ((250, 250, 250), (0, 0, 0), (115, 125, 125), None, 0),  # solved below 0 in red: 0, not wrapped round
    ((5, 5, 5), (255, 255, 255), (140, 130, 130), None, 255),  # solved above 255 in red: 255
])
def test_alpha_and_colour_stay_in_range(paper, deep, pixel, alpha, red):
    rgb = np.array([[paper, pixel, deep, deep]], np.uint8)
    inside = np.array([[False, False, True, True]])
    ring = np.array([[False, True, False, False]])
    _, _, a, colour, on_line = _solve(rgb, inside, ring, field=np.array(paper, float))
    if alpha is not None:
        assert a.tolist() == [alpha]
    else:
        assert 0.5 < a[0] < 0.52
    assert colour[0, 0] == red and on_line.tolist() == [True]


def test_off_the_line_past_halfway_is_opaque_and_the_line_width_follows_tolerance():
    # Exactly halfway from the paper (200) to the sprite (100), 9 levels off that line in red and blue: past
    # max(tolerance / 2, 8) with tolerance 10, so a mix of two sprite colours (opaque); within it at tolerance 24.
    rgb = np.array([[(200, 200, 200), (159, 150, 141), (100, 100, 100), (100, 100, 100)]], np.uint8)
    inside = np.array([[False, False, True, True]])
    ring = np.array([[False, True, False, False]])
    _, _, a, colour, on_line = _solve(rgb, inside, ring, tolerance=10)
    assert a.tolist() == [1.0] and on_line.tolist() == [False] and colour.tolist() == [[159, 150, 141]]
    _, _, a, _, on_line = _solve(rgb, inside, ring, tolerance=24)
    assert a.tolist() == [0.5] and on_line.tolist() == [True]


def test_from_85_percent_of_the_way_to_the_sprite_an_edge_pixel_is_opaque():
    rgb = np.array([[(200, 200, 200), (115, 115, 115), (100, 100, 100), (100, 100, 100)]], np.uint8)
    inside = np.array([[False, False, True, True]])
    ring = np.array([[False, True, False, False]])
    _, _, a, colour, _ = _solve(rgb, inside, ring)
    assert a.tolist() == [1.0] and colour.tolist() == [[115, 115, 115]]
    rgb[0, 1] = (116, 116, 116)
    _, _, a, _, _ = _solve(rgb, inside, ring)
    assert a[0] == pytest.approx(0.84, abs=1e-6)


# -- key_sheet: shadows, holes, closed gaps --------------------------------------------------------------------------


def _gradient(h, w):
    """A background shaded in x and y with whole levels (so its fitted surface is exact)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([150 + x, 200 - y, 140 + x - y], -1).astype(float)


SPRITE, SHADOW = (slice(8, 20), slice(8, 22)), (slice(28, 40), slice(36, 58))
DARK, LIGHT, FAINT, TINTED, AT_TOLERANCE = ((slice(4, 10), slice(30, 38)), (slice(4, 10), slice(44, 52)),
                                            (slice(14, 20), slice(30, 36)), (slice(14, 20), slice(44, 52)),
                                            (slice(28, 34), slice(8, 14)))


def _shadow_scene():
    """On a shaded background, each patch alone (at least 4 px from the others): a sprite, a drop shadow (the
    background at 60%), a darkening past MAX_SHADOW (20%), a lightening (115%), a faint uneven darkening, a
    darkening tinted blue, and a patch exactly ``tolerance`` (24) off the background in red."""
    bg = _gradient(48, 64)
    rgb = bg.copy()
    rgb[SPRITE] = (30, 40, 120)
    rgb[SHADOW] = np.round(bg[SHADOW] * 0.6)
    rgb[DARK] = np.round(bg[DARK] * 0.2)
    rgb[LIGHT] = np.round(bg[LIGHT] * 1.15)
    rgb[FAINT] = bg[FAINT] - (30, 20, 20)
    rgb[TINTED] = np.round(bg[TINTED] * 0.6) + (0, 0, 40)
    rgb[AT_TOLERANCE] = bg[AT_TOLERANCE] + (24, 0, 0)
    return bg, rgb.astype(np.uint8)


@pytest.mark.parametrize("shadows", ["keep", "soft", "remove"])
def test_drop_shadows_kept_soft_or_removed(shadows):
    bg, rgb = _shadow_scene()
    keyed = key_sheet(rgb, shadows=shadows)
    assert keyed.background.dtype == np.float32 and np.abs(keyed.background - bg).max() <= 0.01
    out = keyed.rgba
    assert out.dtype == np.uint8 and out.shape == (48, 64, 4)
    alpha = out[..., 3]
    patches = np.zeros((48, 64), bool)
    for s in (SPRITE, SHADOW, DARK, LIGHT, FAINT, TINTED, AT_TOLERANCE):
        patches[s] = True
    assert (alpha[~patches] == 0).all() and (alpha[AT_TOLERANCE] == 0).all()
    for s in (SPRITE, DARK, LIGHT, TINTED):  # the sprite's own: opaque, colours exact
        assert (alpha[s] == 255).all() and np.array_equal(out[s][..., :3], rgb[s])
    f = rgb[SHADOW].astype(float)
    if shadows == "keep":
        assert (alpha[SHADOW] == 255).all() and np.array_equal(out[SHADOW][..., :3], rgb[SHADOW])
        assert (alpha[FAINT] > 150).all()  # a pale sprite of its own
    elif shadows == "soft":
        # black, as opaque as it is darker than the background, less the darkening the tolerance allows
        ratio = (f / bg[SHADOW]).mean(axis=-1)
        floor = 24 / bg[SHADOW].mean(axis=-1)
        expected = np.clip((1 - ratio - floor) / (1 - floor), 0, 1) * 255
        assert np.abs(alpha[SHADOW] - expected).max() <= 0.51
        assert 70 <= alpha[SHADOW].min() and alpha[SHADOW].max() <= 85
        assert (out[SHADOW][..., :3] == 0).all()
        assert (alpha[FAINT] == 0).all()  # darker in one channel than the tolerance, but less on average
    else:
        assert (alpha[SHADOW] == 0).all() and (alpha[FAINT] == 0).all()
        assert np.array_equal(out[SHADOW][..., :3], rgb[SHADOW])


def test_key_background_is_key_sheets_picture_with_the_same_defaults():
    _bg, rgb = _shadow_scene()
    assert np.array_equal(key_background(rgb), key_sheet(rgb, 24, 48, "soft", 0, "keep").rgba)
    assert not np.array_equal(key_background(rgb), key_sheet(rgb, shadows="keep").rgba)
    gap = _gaps_scene(1)  # by default no gap is closed: the box with a 1 px opening is filled through it
    assert (key_background(gap)[8:24, 8:24, 3] == 0).all() and key_sheet(gap).holes == [SLIT]


@pytest.mark.parametrize("softness, edge", [(None, 30 * 40 / 48 ** 2), (40, 0.75)])
def test_a_pale_sprites_edge_is_measured_on_the_softness_span(softness, edge):
    # A pale yellow block 40 levels from the paper (less than softness 48, the default): its anti-aliased edge
    # (30 levels) is measured on the softness span; at softness 40 on the block's own span. The block's own
    # pixels stay opaque (at 48, 69% of the span but off that line by more than 12 levels: the sprite's colour).
    rgb = np.full((32, 48, 3), 220, np.uint8)
    rgb[8:24, 16:32] = (220, 220, 180)
    rgb[8:24, 16] = (220, 220, 190)
    keyed = key_sheet(rgb) if softness is None else key_sheet(rgb, softness=softness)
    assert keyed.rgba[16, 16, 3] == round(edge * 255) and (keyed.rgba[8:24, 17:32, 3] == 255).all()
    if softness is None:
        assert np.array_equal(key_background(rgb), keyed.rgba)
        # at tolerance 26 the line is 13 levels wide: the block's outer 2 px (within the band) are on it, 69%
        wider = key_sheet(rgb, tolerance=26).rgba[..., 3]
        assert wider[16, 16] == 133 and (wider[8:24, 17:19] == round(40 * 40 / 48 ** 2 * 255)).all()
        assert (wider[10:22, 19:30] == 255).all()


def test_rgba_or_float_input_is_keyed_as_its_rgb():
    _bg, rgb = _shadow_scene()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]).astype(np.float64)
    out = key_sheet(rgba).rgba
    assert out.dtype == np.uint8 and np.array_equal(out, key_sheet(rgb).rgba)


PAPER, INK = (240, 236, 228), (40, 30, 50)


def _holes_scene():
    """Four framed shapes on paper: a 16 px hole (the least a 96 px picture counts), a 9 px one (too small), an
    enclosed shadow-grey part (a fifth of it paper: not a hole) and two 16 px holes touching at a corner (two holes)."""
    rgb = np.zeros((40, 96, 3))
    rgb[:] = PAPER
    for t, l, b, r in ((4, 4, 20, 20), (4, 24, 15, 35), (4, 40, 17, 53), (4, 56, 20, 72)):
        rgb[t:b, l:r] = INK
    rgb[8:12, 8:12] = PAPER
    rgb[8:11, 28:31] = PAPER
    rgb[8:13, 44:49] = np.round(np.array(PAPER) * 0.7)
    rgb[8, 44:49] = PAPER  # a fifth of it paper: still not a hole
    rgb[8:12, 60:64] = PAPER
    rgb[12:16, 64:68] = PAPER
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("holes, cleared", [("keep", []), ("clear", [1, 2, 3]), ("2", [2]), ("1, 3", [1, 3])])
def test_enclosed_paper_is_numbered_and_kept_or_cleared(holes, cleared):
    rgb = _holes_scene()
    keyed = key_sheet(rgb, holes=holes)
    assert keyed.holes == [(8, 8, 12, 12), (60, 8, 64, 12), (64, 12, 68, 16)]
    assert keyed.cleared == cleared
    alpha = keyed.rgba[..., 3]
    # a pixel of each hole (the third's farthest from the second, whose band reaches into it when cleared)
    assert [int(alpha[9, 9]), int(alpha[9, 61]), int(alpha[15, 67])] == [0 if k in cleared else 255 for k in (1, 2, 3)]
    assert (alpha[8:11, 28:31] == 255).all() and (alpha[8:13, 44:49] == 255).all()  # not holes: the sprite's
    assert (alpha[22:] == 0).all() and (alpha[:, 74:] == 0).all()  # the paper around


def test_key_background_passes_holes_on():
    rgb = _holes_scene()
    assert np.array_equal(key_background(rgb, holes="clear"), key_sheet(rgb, holes="clear").rgba)


def test_the_least_hole_grows_with_the_pictures_area():
    # 1536 px long: scale 1.5, the least hole 64 * 1.5^2 = 144 px. A 12x12 region of paper is a hole; 10x10 is not.
    rgb = np.zeros((32, 1536, 3))
    rgb[:] = PAPER
    rgb[4:28, 100:124] = INK
    rgb[10:22, 106:118] = PAPER
    rgb[4:28, 300:324] = INK
    rgb[11:21, 307:317] = PAPER
    keyed = key_sheet(rgb.astype(np.uint8))
    assert keyed.holes == [(106, 10, 118, 22)]


def _gaps_scene(gap, top=6):
    """A box (2 px walls, 16 px of paper inside) whose left wall has an opening ``gap`` px tall, rows
    ``top``..``top + 20``; a block with a slot 2 px wide and 10 deep open at its top (rows ``18 - top``..); a bar
    with a 2x12 slit under a 1 px wall."""
    rgb = np.zeros((40, 80, 3))
    rgb[:] = PAPER
    rgb[top:top + 20, 6:26] = INK
    rgb[top + 2:top + 18, 8:24] = PAPER
    rgb[top + 8:top + 8 + gap, 6:8] = PAPER
    b = 18 - top
    rgb[b:b + 20, 36:52] = INK
    rgb[b:b + 10, 43:45] = PAPER
    rgb[30:36, 56:72] = INK
    rgb[31:33, 58:70] = PAPER  # behind a 1 px wall
    return rgb.astype(np.uint8)


SLIT = (58, 31, 70, 33)


@pytest.mark.parametrize("gap, close_gaps, closed", [
    (3, 0, False), (3, 2, False), (3, 3, True), (1, 0, False), (1, 0.5, True), (1, 1, True)])
@pytest.mark.parametrize("top", [4, 12])  # the box above the slot, or below it
def test_close_gaps_stops_the_fill_at_narrow_openings(gap, close_gaps, closed, top):
    keyed = key_sheet(_gaps_scene(gap, top), close_gaps=close_gaps)
    alpha = keyed.rgba[..., 3]
    inside = alpha[top + 4:top + 16, 12:22]  # the box's inside, beyond the band of the opening
    if closed:  # a hole (kept), its box from the opening's paper in the wall to the inner walls
        assert keyed.holes == [(7, top + 2, 24, top + 18), SLIT] and (inside == 255).all()
    else:
        assert keyed.holes == [SLIT] and (inside == 0).all() and (alpha[top + 2:top + 18, 8:24] == 0).all()
    b = 18 - top
    assert (alpha[b:b + 10, 43:45] == 0).all()  # the slot: a passage narrower than the closing is background
    # the slit: enclosed paper behind a 1 px wall, kept (its first row, within the band of the outside, is
    # measured as the wall's anti-aliasing: paper there is transparent)
    assert (alpha[32, 58:70] == 255).all()
    walls = np.zeros((40, 80), bool)
    walls[top:top + 20, 6:26] = walls[b:b + 20, 36:52] = walls[30:36, 56:72] = True
    assert (alpha[~walls] == 0).all()  # the paper around the shapes (right up to their walls) is transparent


STEP = np.array([-80.0, 0.0, 0.0])  # from the paper towards a sprite's colours (red-free: no shadow), one shade a step


def _shaded_edge(w, left):
    """Paper with a sprite from column ``left``: half a step (its anti-aliased edge), then 1, 1, 2, 2.5, 3... steps."""
    rgb = np.zeros((32, w, 3))
    rgb[:] = PAPER
    for k, shade in enumerate([0.5, 1, 1, 2, 2.5] + [3] * 60):
        rgb[8:24, left + k] = np.array(PAPER) + shade * STEP
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("band, steps", [(None, 2), (1, 1), (3, 2.5)])  # band (default 2 at this size): reach band + 1
def test_the_edges_alpha_is_measured_towards_the_deepest_colour_within_band_plus_one(band, steps):
    keyed = key_sheet(_shaded_edge(96, 20), band=band)
    assert keyed.rgba[16, 20, 3] == round(0.5 / steps * 255)


def test_the_default_band_grows_with_the_picture():
    # 1536 px long: band 3 (2 px at 1024), so the edge pixel sees 4 px in: the 2.5-step shade, not the 3-step one
    keyed = key_sheet(_shaded_edge(1536, 600))
    assert keyed.rgba[16, 600, 3] == round(0.5 / 2.5 * 255)


def test_a_shadow_beside_a_sprite_stays_a_shadow_and_a_dark_edge_stays_an_edge():
    # A red block with its drop shadow (the paper at 60%) against its right side; a neutral dark block whose left
    # edge is anti-aliased (half paper, half ink: it looks like a shadow, but lies on the line paper -> ink).
    paper = np.array([220.0, 220.0, 220.0])
    rgb = np.tile(paper, (32, 64, 1))
    rgb[8:24, 8:20] = (200, 30, 30)
    rgb[8:24, 20:30] = paper * 0.6
    rgb[8:24, 40:56] = (40, 40, 40)
    rgb[8:24, 40] = (paper + 40) / 2
    out = key_sheet(rgb.astype(np.uint8)).rgba  # shadows="soft" by default
    floor = 24 / 220
    shadow = round((1 - 0.6 - floor) / (1 - floor) * 255)
    assert out[16, 20:30, 3].tolist() == [shadow] * 10 and (out[16, 20:30, :3] == 0).all()
    assert out[16, 40, 3] == 128 and out[16, 40, :3].tolist() == [40, 40, 40]
    assert (out[8:24, 41:56, 3] == 255).all() and (out[8:24, 8:20, 3] == 255).all()
