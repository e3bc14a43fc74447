"""One atlas per set, read field by field the way PixiJS's Spritesheet and Phaser's JSONHash/multiatlas do.

``pixi_textures`` follows PixiJS v8's ``Spritesheet._processFrames`` (orig from sourceSize when the frame is
not marked untrimmed, trim at spriteSourceSize with the frame's own size, ``anchor`` as the default anchor)
and its loader's ``meta.related_multi_packs``; ``phaser_frames`` follows Phaser 3's ``Parsers.JSONHash``
(``setTrim`` with sourceSize and spriteSourceSize when ``trimmed``, the pivot from ``anchor`` or ``pivot``)
and ``JSONArray`` for each texture of a multiatlas. Each sprite is then drawn as the engine would (its
frame's pixels placed at the trim offset in a canvas of the original size) and compared with its PNG.
"""

import json

import numpy as np
import pytest
from PIL import Image

from colabkit.assets.atlas import build_atlas, pack_pages
from colabkit.assets.config import CutoutConfig
from colabkit.assets.cutout import cut_out_images
from colabkit.assets.sprites import bleed, on_canvas
from sheets import make_sheet


def pixi_textures(folder, first_json):
    """{frame name: (page image name, frame rect, orig size, trim rect or None, default anchor)}."""
    out, todo, seen = {}, [first_json], set()
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        data = json.loads((folder / name).read_text())
        resolution = float(data["meta"]["scale"])
        for key, f in data["frames"].items():
            rect = f["frame"]
            source = f["sourceSize"] if f.get("trimmed") is not False and f.get("sourceSize") else rect
            orig = (int(source["w"] // resolution), int(source["h"] // resolution))
            frame = tuple(int(rect[k] // resolution) for k in "xywh")
            trim = None
            if f.get("trimmed") is not False and f.get("spriteSourceSize"):
                sss = f["spriteSourceSize"]
                trim = (sss["x"], sss["y"], rect["w"], rect["h"])
            assert key not in out, f"frame {key} on two pages"
            assert not f.get("rotated")
            out[key] = (data["meta"]["image"], frame, orig, trim, f.get("anchor"))
        todo += data["meta"].get("related_multi_packs", [])
    return out


def phaser_frames(folder, multiatlas_json):
    """{frame name: (page image name, cut rect, real size, trim (x, y, w, h) or None, pivot or None)}."""
    data = json.loads((folder / multiatlas_json).read_text())
    out = {}
    for texture in data["textures"]:
        for src in texture["frames"]:
            cut = tuple(src["frame"][k] for k in "xywh")
            real, trim = (cut[2], cut[3]), None
            if src["trimmed"]:
                real = (src["sourceSize"]["w"], src["sourceSize"]["h"])
                sss = src["spriteSourceSize"]
                trim = (sss["x"], sss["y"], sss["w"], sss["h"])
                assert (sss["w"], sss["h"]) == cut[2:], "Phaser draws the cut at the trim's size"
            pivot = src.get("anchor") or src.get("pivot")
            out[src["filename"]] = (texture["image"], cut, real, trim, pivot)
    return out


def drawn(folder, image, frame, orig, trim):
    """The sprite as an engine shows it: the frame's pixels at the trim offset in the original-size canvas."""
    page = np.asarray(Image.open(folder / image))
    x, y, w, h = frame
    canvas = np.zeros((orig[1], orig[0], 4), np.uint8)
    tx, ty = (trim[0], trim[1]) if trim else (0, 0)
    canvas[ty:ty + h, tx:tx + w] = page[y:y + h, x:x + w]
    return canvas


def visible_equal(a, b):
    return np.array_equal(a[..., 3], b[..., 3]) and np.array_equal(a[a[..., 3] > 0], b[b[..., 3] > 0])


@pytest.fixture(scope="module")
def folder_of_sheets(tmp_path_factory):
    src = tmp_path_factory.mktemp("set") / "props"
    src.mkdir()
    for i, background in enumerate(("off-white", "vignette")):
        Image.fromarray(make_sheet(512, background, seed=i).rgb).save(src / f"sheet{i}.png")
    return src


@pytest.mark.parametrize("max_size, power_of_two, extrude", [(4096, False, 1), (512, True, 2)])
def test_a_folder_gives_one_atlas_engines_read(folder_of_sheets, tmp_path, max_size, power_of_two, extrude):
    out = tmp_path / "out"
    cut_out_images(CutoutConfig(input_folder=str(folder_of_sheets), output_folder=str(out), close_gaps=12,
                                max_size=max_size, power_of_two=power_of_two, extrude=extrude))
    sprites = {p.name: p for p in out.glob("sheet*/sheet*_[0-9][0-9].png")}
    assert len(sprites) == 18  # 9 props on each sheet
    assert not list(out.glob("sheet*/atlas*"))
    multi = max_size == 512
    first = "props-0.json" if multi else "props.json"
    pixi = pixi_textures(out, first)
    phaser = phaser_frames(out, "props.multiatlas.json")
    assert set(pixi) == set(phaser) == set(sprites)  # unique names, every sprite once, on some page
    pages = {v[0] for v in pixi.values()}
    assert (len(pages) > 1) == multi
    for image in pages:
        w, h = Image.open(out / image).size
        assert max(w, h) <= max_size
        if power_of_two:
            assert w & (w - 1) == 0 and h & (h - 1) == 0
    for name, (image, frame, orig, trim, anchor) in pixi.items():
        png = np.asarray(Image.open(sprites[name]))
        page = np.asarray(Image.open(out / image))
        x, y, w, h = frame
        assert 0 <= x and x + w <= page.shape[1] and 0 <= y and y + h <= page.shape[0]
        assert orig == (png.shape[1], png.shape[0])
        assert visible_equal(drawn(out, image, frame, orig, trim), png)
        # pivot: the middle of the object's bottom edge (its pixels at least half opaque, not its soft shadow)
        ys, xs = np.nonzero(png[..., 3] >= 128)
        assert anchor["y"] == pytest.approx((ys.max() + 1) / png.shape[0], abs=1e-3)
        assert anchor["x"] == pytest.approx((xs.min() + xs.max() + 1) / 2 / png.shape[1], abs=1e-3)
        p_image, cut, real, p_trim, pivot = phaser[name]
        assert (p_image, cut, real, pivot) == (image, frame, orig, anchor)
        assert visible_equal(drawn(out, p_image, cut, real, p_trim), png)
        # extrusion: the frame's edge rows and columns repeated outside it
        for k in range(1, extrude + 1):
            assert visible_equal(page[y - k, x:x + w], page[y, x:x + w])
            assert visible_equal(page[y:y + h, x + w - 1 + k], page[y:y + h, x + w - 1])
    # where each sprite came from: its box in its source picture
    data = json.loads((out / first).read_text())
    some = next(iter(data["frames"].values()))
    assert some["origin"]["image"] in {"sheet0.png", "sheet1.png"} and some["origin"]["w"] > 0


def test_transparent_pixels_are_bled():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:16, 8:16] = (200, 30, 30, 255)
    rgba[20:28, 20:28] = (30, 30, 200, 255)
    out = bleed(rgba)
    assert np.array_equal(out[..., 3], rgba[..., 3]) and np.array_equal(out[8:16, 8:16], rgba[8:16, 8:16])
    assert tuple(out[7, 10, :3]) == (200, 30, 30) and tuple(out[29, 24, :3]) == (30, 30, 200)
    assert out[..., :3][rgba[..., 3] == 0].min(axis=0).tolist() == [30, 30, 30]  # nothing black left


def test_shared_canvas_and_baseline():
    a = np.zeros((40, 20, 4), np.uint8)
    a[5:35, 4:16, 3] = 255  # 12x30 visible
    b = np.zeros((25, 50, 4), np.uint8)
    b[2:12, 3:43, 3] = 255  # 40x10 visible
    cells = on_canvas([a, b], "cell", margin=2)
    assert {c.shape for c, _p in cells} == {(34, 44, 4)}
    for cell, pivot in cells:
        ys, xs = np.nonzero(cell[..., 3])
        assert ys.max() == 31  # one baseline, margin px above the bottom
        assert abs((xs.min() + xs.max() + 1) / 2 - 22) <= 0.5
        assert pivot == (0.5, 32 / 34)
    scaled = on_canvas([a, b], "height", height=60, margin=0)
    for cell, _p in scaled:
        ys, _xs = np.nonzero(cell[..., 3] > 127)
        assert ys.max() == cell.shape[0] - 1 and abs((ys.max() - ys.min() + 1) - 60) <= 1
    own = on_canvas([a], "own", pivot=(0.5, 0.5))
    assert own[0][1] == (10 / 20, 20 / 40)
    # a soft shadow under the object: the object's bottom stands on the baseline, the shadow hangs below it
    c = a.copy()
    c[35:39, 2:18] = (0, 0, 0, 60)
    (ca, pa), (cc, pc) = on_canvas([a, c], "cell", margin=2)
    assert ca.shape == cc.shape and pa == pc
    assert np.nonzero(ca[..., 3] >= 128)[0].max() == np.nonzero(cc[..., 3] >= 128)[0].max()
    assert round(pc[1] * cc.shape[0]) == np.nonzero(cc[..., 3] >= 128)[0].max() + 1
    assert np.nonzero(on_canvas([c], "own")[0][0][..., 3])[0].max() == 38 and on_canvas([c], "own")[0][1][1] == 35 / 40


def test_names_from_a_list_and_one_cell(folder_of_sheets, tmp_path):
    out = tmp_path / "named"
    cut_out_images(CutoutConfig(input_folder=str(folder_of_sheets), output_folder=str(out), close_gaps=12,
                                names="gem, red ball, gem", canvas="cell", atlas_name="items"))
    first = sorted(p.name for p in (out / "sheet0").glob("*.png") if p.name not in ("cutout.png", "preview.png"))
    assert first[:3] == ["gem.png", "gem_2.png", "red_ball.png"]
    assert "sheet0_04.png" in first and "sheet1_01.png" in {p.name for p in (out / "sheet1").iterdir()}
    data = json.loads((out / "items.json").read_text())
    assert len(data["frames"]) == 18 and {f["sourceSize"]["w"] for f in data["frames"].values()} == \
        {data["frames"]["gem.png"]["sourceSize"]["w"]}


def test_a_sprite_larger_than_a_page_is_refused():
    from colabkit.errors import ColabkitError

    with pytest.raises(ColabkitError, match="max_size"):
        pack_pages([(600, 10)], padding=2, max_side=512)
    placed, pages = pack_pages([(100, 100)] * 30, padding=2, max_side=256)
    assert len(pages) > 1 and all(p.x + p.w <= pages[p.page][0] and p.y + p.h <= pages[p.page][1] for p in placed)
    (name, _a, data), = build_atlas({"x.png": np.full((4, 4, 4), 255, np.uint8)}, "one")
    assert name == "one.png" and "related_multi_packs" not in data["meta"]


def _pixel_art_sheet(k=8, offset=(3, 5)):
    """A 48x40 piece of pixel art (two sprites, 5 colours) drawn at k x k picture pixels, softened and JPEG'd."""
    import io

    from PIL import ImageFilter

    art = np.zeros((40, 48, 4), np.uint8)
    art[3:16, 5:14] = (200, 40, 40, 255)  # edges at odd and even art pixels, as in any drawing
    art[6:9, 7:12] = (250, 220, 90, 255)
    art[15, 5:14] = (30, 20, 40, 255)
    art[21:36, 27:44] = (40, 110, 200, 255)
    art[25:28, 31:34] = (240, 240, 240, 255)
    rgb = np.where(art[..., 3:] > 0, art[..., :3], 255).astype(np.uint8)
    big = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    canvas = np.full((big.shape[0] + 16, big.shape[1] + 16, 3), 255, np.uint8)
    canvas[offset[1]:offset[1] + big.shape[0], offset[0]:offset[0] + big.shape[1]] = big
    im = Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(0.7))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return np.asarray(Image.open(buf).convert("RGB")), art


def test_pixel_art_mode(tmp_path):
    from colabkit.assets.pixelart import detect_pixel_size

    rgb, art = _pixel_art_sheet()
    assert detect_pixel_size(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])) == (8, 3, 5)
    src = tmp_path / "art"
    src.mkdir()
    Image.fromarray(rgb).save(src / "hero.png")
    cut_out_images(CutoutConfig(input_folder=str(src), pixel_art=True, palette_colors=8, gap=40, min_area=16))
    out = src / "assets"
    sprites = sorted((out / "hero").glob("hero_[0-9][0-9].png"))
    assert len(sprites) == 2
    palette = [tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) for h in (out / "palette.hex").read_text().split()]
    assert 5 <= len(palette) <= 8 and Image.open(out / "palette.png").size == (len(palette), 1)
    for path, (t, b, l, r) in zip(sprites, ((3, 16, 5, 14), (21, 36, 27, 44))):
        px = np.asarray(Image.open(path))
        ys, xs = np.nonzero(px[..., 3])
        got = px[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        want = art[t:b, l:r]
        assert got.shape == want.shape  # one sprite pixel per art pixel
        assert np.array_equal(got[..., 3] > 0, want[..., 3] > 0)
        assert {tuple(c) for c in got[..., :3][got[..., 3] > 0]} <= set(palette)
        assert np.abs(got[..., :3].astype(int) - want[..., :3]).max() <= 24
