"""The atlas's packing, trimming and extrusion, value by value (what mutation testing found unguarded).

Frames that overlap, a page one pixel too small, or an extrusion that copies the wrong row show up in a game as
a neighbour's pixels bleeding into a sprite; these check the exact numbers instead of the picture.
"""

from __future__ import annotations

import numpy as np
import pytest

from colabkit.assets.atlas import Frame, Placement, build_atlas, extrude_into, multiatlas, pack_pages, shelf_pack, \
    trim_box
from colabkit.errors import ColabkitError


def test_shelves_tallest_first_and_the_page_just_covers_them():
    placed, pages = pack_pages([(10, 5), (4, 8), (6, 5)], padding=2, width=20)
    # the tallest (4x8) first; 10x5 ends exactly at the width (8 + 10 + 2 = 20): same shelf; 6x5 starts the next
    assert placed == [Placement(8, 2, 10, 5), Placement(2, 2, 4, 8), Placement(2, 12, 6, 5)]
    assert pages == [(20, 19)]
    assert pack_pages([(10, 5), (4, 8), (6, 5)], padding=2, width=20, power_of_two=True)[1] == [(32, 32)]
    assert pack_pages([(10, 5), (4, 8), (6, 5)], padding=2, width=20, power_of_two=True, max_side=64)[1] == [(32, 32)]
    assert pack_pages([(16, 16)], padding=0, power_of_two=True)[1] == [(16, 16)]  # already a power of two
    assert pack_pages([(17, 15)], padding=0, power_of_two=True)[1] == [(32, 16)]
    assert pack_pages([(15, 17)], padding=0, power_of_two=True)[1] == [(16, 32)]
    # equal heights: the wider first, then the input order
    assert [p.x for p in pack_pages([(3, 4), (5, 4), (3, 4)], padding=1, width=100)[0]] == [7, 1, 11]
    # the default width: about the square root of the area, in steps of 64
    assert pack_pages([(10, 5), (4, 8), (6, 5)], padding=2)[1] == [(28, 12)]  # 64 wide: one shelf
    # 30 of 100x20: sqrt(30 x 102 x 22) x 1.1 = 285 -> 320 px wide: 3 a shelf, 10 shelves
    placed, pages = pack_pages([(100, 20)] * 30, padding=2)
    assert pages == [(2 + 3 * 102, 2 + 10 * 22)] and placed[3] == Placement(2, 24, 100, 20)
    # near a step: sqrt(4 x 30 x 29) x 1.1 = 64.9 -> 128 px: 3 a shelf (a 4th would need 130)
    assert pack_pages([(20, 19)] * 4, padding=10)[1] == [(100, 68)]
    # the defaults: 2 px of padding
    assert pack_pages([(4, 4)]) == ([Placement(2, 2, 4, 4)], [(8, 8)])
    assert shelf_pack([(4, 4)]) == ([Placement(2, 2, 4, 4)], 8, 8)


def test_pages_fill_to_exactly_max_side_then_a_new_one_starts():
    placed, pages = pack_pages([(10, 10)] * 3, padding=2, max_side=26)  # 2 + 10 + 2 + 10 + 2 = 26: fits
    assert placed == [Placement(2, 2, 10, 10), Placement(14, 2, 10, 10), Placement(2, 14, 10, 10)]
    assert pages == [(26, 26)]
    placed, pages = pack_pages([(10, 10)] * 3, padding=2, max_side=25)
    assert placed == [Placement(2, 2, 10, 10, 0), Placement(2, 2, 10, 10, 1), Placement(2, 2, 10, 10, 2)]
    assert pages == [(14, 14)] * 3
    # each page just covers its own frames
    placed, pages = pack_pages([(10, 10), (10, 10), (4, 4)], padding=2, max_side=25)
    assert placed == [Placement(2, 2, 10, 10, 0), Placement(2, 2, 10, 10, 1), Placement(14, 2, 4, 4, 1)]
    assert pages == [(14, 14), (20, 14)]


def test_a_sprite_exactly_as_large_as_a_page_fits_a_larger_one_is_refused_with_its_size():
    assert pack_pages([(28, 10)], padding=2, max_side=32)[1] == [(32, 14)]
    with pytest.raises(ColabkitError) as e:
        pack_pages([(29, 10)], padding=2, max_side=32)
    assert str(e.value) == ("A sprite of 29x10 px does not fit on an atlas page of max_size 32 px: raise max_size "
                            "(up to 8192), or cut smaller pictures.")
    with pytest.raises(ColabkitError, match="A sprite of 10x29 px"):
        pack_pages([(10, 29)], padding=2, max_side=32)


def test_shelf_pack_is_one_page():
    placed, w, h = shelf_pack([(10, 5), (4, 8), (6, 5)], padding=2, width=20)
    assert placed[2] == Placement(2, 12, 6, 5) and (w, h) == (20, 19)
    assert shelf_pack([(5000, 10)], padding=0) == ([Placement(0, 0, 5000, 10)], 5000, 10)  # no page limit
    assert shelf_pack([]) == ([], 0, 0)


def test_trim_box():
    alpha = np.zeros((3, 5), np.uint8)
    assert trim_box(alpha) == (0, 0, 5, 3)  # nothing visible: the whole picture
    alpha[1, 2] = 1
    assert trim_box(alpha) == (2, 1, 3, 2)


def test_extrusion_copies_each_edge_pixel_outwards():
    page = np.zeros((10, 12, 4), np.uint8)
    frame = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) + 1
    page[4:6, 5:8] = frame
    extrude_into(page, 5, 4, 3, 2, 2)
    assert np.array_equal(page[2:8, 3:10], np.pad(frame, ((2, 2), (2, 2), (0, 0)), mode="edge"))
    assert not page[:2].any() and not page[8:].any() and not page[:, :3].any() and not page[:, 10:].any()
    corner = np.zeros((6, 6, 4), np.uint8)  # at the page's corner: clipped, never wrapped to the other side
    corner[0:2, 0:2] = frame[:, :2]
    extrude_into(corner, 0, 0, 2, 2, 3)
    assert np.array_equal(corner[:5, :5], np.pad(frame[:, :2], ((0, 3), (0, 3), (0, 0)), mode="edge"))
    assert not corner[5:].any() and not corner[:, 5:].any()
    near = np.zeros((6, 6, 4), np.uint8)  # one pixel from the left edge: extruded into column 0, clipped there
    near[1:3, 1:3] = frame[:, :2]
    extrude_into(near, 1, 1, 2, 2, 3)
    assert np.array_equal(near, np.pad(frame[:, :2], ((1, 3), (1, 3), (0, 0)), mode="edge"))
    before = page.copy()
    extrude_into(page, 5, 4, 3, 2, 0)
    assert np.array_equal(page, before)


def test_names_trim_flags_pivots_and_extrusion_in_the_json():
    img = np.full((4, 6, 4), 255, np.uint8)
    left = img.copy()
    left[:, 0, 3] = 0  # only the first column transparent: trimmed on the left alone
    top = img.copy()
    top[0, :, 3] = 0  # only the first row
    pages = build_atlas({"left": Frame(left, pivot=(1 / 3, 2 / 3)), "top": top, "full": img}, "Set.PNG", padding=1,
                        extrude=2)
    ((png, page, data),) = pages
    assert png == "Set.png" and data["meta"]["image"] == "Set.png"
    frames = data["frames"]
    assert frames["left"]["trimmed"] is True and frames["left"]["spriteSourceSize"] == {"x": 1, "y": 0, "w": 5, "h": 4}
    assert frames["top"]["trimmed"] is True and frames["top"]["spriteSourceSize"] == {"x": 0, "y": 1, "w": 6, "h": 3}
    assert frames["full"]["trimmed"] is False
    assert frames["left"]["anchor"] == frames["left"]["pivot"] == {"x": 0.3333, "y": 0.6667}
    # each frame sits extrude px inside the box the packer gave it, and the box holds the extrusion
    placed, sizes = pack_pages([(5 + 4, 4 + 4), (6 + 4, 3 + 4), (6 + 4, 4 + 4)], 1)
    for (name, f), p in zip(frames.items(), placed):
        assert (f["frame"]["x"], f["frame"]["y"]) == (p.x + 2, p.y + 2), name
    assert page.shape[:2] == (sizes[0][1], sizes[0][0]) and page.dtype == np.uint8
    ((_, _, plain),) = build_atlas({"full": img}, "plain")  # the defaults: 2 px of padding, no extrusion
    assert plain["frames"]["full"]["frame"] == {"x": 2, "y": 2, "w": 6, "h": 4} and plain["meta"]["size"] == \
        {"w": 10, "h": 8}
    assert multiatlas(pages) == {
        "textures": [{"image": "Set.png", "format": "RGBA8888", "size": data["meta"]["size"], "scale": 1,
                      "frames": [{"filename": k, **v} for k, v in frames.items()]}],
        "meta": {"app": "colabkit", "scale": "1"}}
