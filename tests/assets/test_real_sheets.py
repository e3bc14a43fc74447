"""The cut-out on sheets made to look like real generations (sheets.py), at 1024 and 2048 px."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from colabkit.assets.config import CutoutConfig
from colabkit.assets.cutout import cut_sheet, key_background, key_sheet
from colabkit.assets.labels import dilate
from colabkit.assets.sprites import split_sprites
from sheets import GEM, NAMES, RED, boxes, make_sheet

_CACHE = {}


def sheet(size, background="vignette"):
    if (size, background) not in _CACHE:
        _CACHE[size, background] = make_sheet(size, background)
    return _CACHE[size, background]


def cut(size, background="vignette", **settings):
    key = (size, background, tuple(sorted(settings.items())))
    if key not in _CACHE:
        _CACHE[key] = cut_sheet(sheet(size, background).rgb, CutoutConfig(input_folder=".", **settings))
    return _CACHE[key]


def props(s):
    out = np.zeros(s.rgb.shape[:2], bool)
    for cov in s.objects.values():
        out |= cov > 0
    return out


@pytest.mark.parametrize("size", [1024, 2048])
def test_the_same_sprites_at_1024_and_2048(size):
    s, c = sheet(size), cut(size, close_gaps=12)
    assert len(c.sprites) == len(NAMES) == 9
    want = boxes(s)
    for sprite, name in zip(c.sprites, NAMES):
        # each sprite's box is its prop's (the tree with its leaf, the crate from the border), shadow aside
        l, t, r, b = want[name]
        sl, st, sr, sb = sprite.box
        tol = round(4 * size / 1024)
        assert abs(sl - l) <= tol and abs(st - t) <= tol and sr >= r - tol and sb >= b - tol, (name, sprite.box)
    assert c.sprites[NAMES.index("crate")].box[0] == 0
    assert c.notes == []  # no sprite covers 40% of the picture


@pytest.mark.parametrize("size", [1024, 2048])
def test_no_background_left_on_the_vignette_and_no_light_rim(size):
    s, c = sheet(size), cut(size, close_gaps=12)
    alpha = c.rgba[..., 3]
    # (JPEG's 8 px blocks and the anti-aliasing reach about 4 px at 1024 from a prop)
    near = round(4 * size / 1024)
    plain = ~dilate(props(s), near) & ~dilate(s.shadow > 0.02, 2) & ~dilate(s.holes["all"], near)
    assert plain.sum() > 0.4 * plain.size
    assert (alpha[plain] == 0).mean() > 0.999 and (alpha[plain] >= 128).sum() == 0
    # the dark gem: no pixel of it or its edge band lighter than its fill (plus JPEG's noise)
    band = dilate(s.objects["gem"] > 0, round(3 * size / 1024)) & (alpha > 8)
    assert band.sum() > 1000
    assert (c.rgba[..., :3][band].astype(int) <= np.array(GEM) + 40).all()


def test_shadows_follow_the_setting():
    s = sheet(1024)
    near = dilate(props(s), 3)
    core = (s.shadow > 0.15) & ~near
    assert core.sum() > 20000
    removed = cut(1024, shadows="remove", close_gaps=12).rgba
    # no shadow pixel opaque, up to the props' own anti-aliased edge
    assert (removed[..., 3][(s.shadow > 0.02) & ~dilate(props(s), 2)] == 255).sum() == 0
    assert (removed[..., 3][core] == 0).mean() > 0.99
    soft = cut(1024, shadows="soft", close_gaps=12).rgba
    assert (soft[..., 3][core] < 255).all() and (soft[..., :3][core] == 0).mean() > 0.99
    # as dark as drawn: alpha follows the shadow's opacity (less the tolerance's share at its faint end)
    err = np.abs(soft[..., 3][core] / 255.0 - s.shadow[core])
    assert np.median(err) < 0.12
    assert np.corrcoef(soft[..., 3][core], s.shadow[core])[0, 1] > 0.95
    kept = cut(1024, shadows="keep", close_gaps=12).rgba
    assert (kept[..., 3][core] == 255).mean() > 0.99
    assert len(cut(1024, shadows="keep", close_gaps=12).sprites) == 9


def test_a_broken_outline_and_enclosed_regions():
    s = sheet(1024)
    body = (slice(155, 215), slice(790, 870))  # the lower body of the snowman whose outline has a gap
    whole = (slice(155, 215), slice(565, 645))  # the same on the closed snowman
    leaky = cut(1024, close_gaps=0).rgba[..., 3]
    closed = cut(1024, close_gaps=12)
    assert (leaky[body] == 0).mean() > 0.9, "the fill should run through the 8 px gap"
    assert (closed.rgba[..., 3][body] == 255).all() and (closed.rgba[..., 3][whole] == 255).all()
    # enclosed regions are numbered: the donut's hole is one; kept by default, cleared by number or by "clear"
    hole = s.holes["donut"] & ~dilate(~s.holes["donut"], 3)
    number = next(i for i, (l, t, r, b) in enumerate(closed.holes, 1)
                  if l <= 410 < r and t <= 450 < b)
    assert (closed.rgba[..., 3][hole] == 255).all()
    by_number = cut(1024, close_gaps=12, holes=str(number))
    assert by_number.cleared == [number] and (by_number.rgba[..., 3][hole] == 0).all()
    assert (by_number.rgba[..., 3][body] == 255).all()  # only that one
    cleared = cut(1024, close_gaps=12, holes="clear")
    assert (cleared.rgba[..., 3][hole] == 0).all()
    # the holes are the background-coloured ones: the snowmen's heads and bodies and the donut's hole; the
    # sword's grey blade, neutral like a shadow but not the background's colour, is never one
    assert len(closed.holes) == 5 and cleared.cleared == [1, 2, 3, 4, 5]
    assert (cleared.rgba[..., 3][330:480, 664:676] == 255).all()


def _red_disc(background=(255, 255, 255)):
    big = Image.new("RGB", (512, 512), background)
    cover = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(big).ellipse((64, 64, 448, 448), fill=RED)
    ImageDraw.Draw(cover).ellipse((64, 64, 448, 448), fill=255)
    return np.asarray(big.resize((128, 128), Image.BOX)), np.asarray(cover.resize((128, 128), Image.BOX)) / 255.0


@pytest.mark.parametrize("background", [(255, 255, 255), (240, 236, 226)])
def test_anti_aliased_red_edge_comes_out_pure_red(background):
    rgb, cover = _red_disc(background)
    rgba = key_background(rgb)
    edge = (cover > 0.1) & (cover < 0.8)
    assert edge.sum() > 100
    alpha = rgba[..., 3][edge] / 255.0
    assert ((alpha > 0) & (alpha < 1)).all()
    assert np.abs(alpha - cover[edge]).max() < 0.1
    assert np.abs(rgba[..., :3][edge].astype(int) - np.array(RED)).max() <= 8


def test_a_huge_sprite_is_reported():
    rgb = np.full((256, 256, 3), 250, np.uint8)
    rgb[20:236, 20:236] = (90, 60, 30)
    c = cut_sheet(rgb, CutoutConfig(input_folder="."))
    assert len(c.sprites) == 1 and "covers 71%" in c.notes[0]


def test_model_haze_is_not_glue():
    rgba = np.zeros((60, 120, 4), np.uint8)
    rgba[..., 3] = 6  # faint haze over everything, as a matting model leaves
    rgba[10:40, 10:40, 3] = 255
    rgba[10:40, 70:100, 3] = 255
    rgba[8:10, 10:40, 3] = 90  # a soft edge: kept with its sprite
    assert len(split_sprites(rgba, gap=8, min_area=16, threshold=1)) == 1
    two = split_sprites(rgba, gap=8, min_area=16, threshold=128)
    assert len(two) == 2 and two[0].box == (10, 8, 40, 40)
    assert two[0].image[..., 3].max() == 255 and 90 in two[0].image[..., 3]


def test_key_sheet_is_the_same_at_a_gradient():
    s = make_sheet(1024, "gradient", quality=None)
    k = key_sheet(s.rgb, close_gaps=12)
    plain = ~dilate(props(s), 3) & ~dilate(s.shadow > 0.02, 2) & ~dilate(s.holes["all"], 3)
    assert (k.rgba[..., 3][plain] == 0).all()
    assert np.abs(k.background[plain] - s.background[plain]).max() < 3  # the background's colour, found


def test_the_preview_numbers_sprites_and_holes():
    from colabkit.assets.cutout import preview

    c = cut(1024, close_gaps=12)
    assert len(c.holes) >= 3  # the donut's hole and the two snowmen's bodies at least

    def blue(im):
        px = np.asarray(im).astype(int)
        return ((px[..., 2] > 180) & (px[..., 0] < 110) & (px[..., 1] < 140)).sum()

    boxes = [s.box for s in c.sprites]
    assert blue(preview(c.rgba, boxes, c.holes)) > 50 and blue(preview(c.rgba, boxes, [])) == 0
