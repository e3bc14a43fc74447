"""Every field of an atlas frame, with its exact value: what PixiJS and Phaser place a sprite by.

A dropped or wrong ``spriteSourceSize`` still loads in both engines: the sprite is drawn at the corner of its
box instead of where its pixels were, off by its trim, which no eye catches in a list of numbers.
"""

from __future__ import annotations

import numpy as np

from colabkit.assets.atlas import Frame, build_atlas


def test_each_frame_has_the_full_texturepacker_schema_with_exact_values():
    a = np.zeros((8, 10, 4), np.uint8)  # 10x8 sprite, visible pixels in x 2..6, y 1..5
    a[1:6, 2:7] = (200, 30, 40, 255)
    a[3, 4] = (10, 20, 30, 128)
    b = np.full((4, 4, 4), 255, np.uint8)  # fully visible: not trimmed
    b[..., :3] = (0, 90, 0)
    origin = {"image": "sheet.png", "x": 30, "y": 40, "w": 10, "h": 8}
    ((png, page, data),) = build_atlas({"a": Frame(a, pivot=(0.25, 0.75), origin=origin), "b": b}, "set.png",
                                       padding=2)
    assert png == "set.png"
    assert data["meta"] == {"app": "colabkit", "image": "set.png", "size": {"w": 15, "h": 9}, "scale": "1",
                            "format": "RGBA8888"}
    assert data["frames"] == {
        "a": {"frame": {"x": 2, "y": 2, "w": 5, "h": 5}, "rotated": False, "trimmed": True,
              "spriteSourceSize": {"x": 2, "y": 1, "w": 5, "h": 5}, "sourceSize": {"w": 10, "h": 8},
              "anchor": {"x": 0.25, "y": 0.75}, "pivot": {"x": 0.25, "y": 0.75}, "origin": origin},
        "b": {"frame": {"x": 9, "y": 2, "w": 4, "h": 4}, "rotated": False, "trimmed": False,
              "spriteSourceSize": {"x": 0, "y": 0, "w": 4, "h": 4}, "sourceSize": {"w": 4, "h": 4},
              "anchor": {"x": 0.5, "y": 1.0}, "pivot": {"x": 0.5, "y": 1.0}},
    }
    assert page.shape == (9, 15, 4)
    # the pixels are where the frame says, exactly the sprite's visible box
    for name, img in (("a", a), ("b", b)):
        f, s = data["frames"][name]["frame"], data["frames"][name]["spriteSourceSize"]
        got = page[f["y"]:f["y"] + f["h"], f["x"]:f["x"] + f["w"]]
        want = img[s["y"]:s["y"] + s["h"], s["x"]:s["x"] + s["w"]]
        assert np.array_equal(got[..., 3], want[..., 3])
        visible = want[..., 3] > 0
        assert np.array_equal(got[visible], want[visible])
    # everything else on the page is transparent
    covered = np.zeros(page.shape[:2], bool)
    for f in (v["frame"] for v in data["frames"].values()):
        covered[f["y"]:f["y"] + f["h"], f["x"]:f["x"] + f["w"]] = True
    assert (page[~covered][:, 3] == 0).all()
