"""Cut-out on synthetic sheets of known shapes: background keyed, holes kept, sprites split, atlas packed."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from colabkit.assets.atlas import build_atlas, shelf_pack
from colabkit.assets.config import CutoutConfig
from colabkit.assets.cutout import cut_out, cut_out_images, key_background
from colabkit.assets.labels import dilate, label
from colabkit.assets.sprites import reduce_palette, split_sprites
from colabkit.errors import ColabkitError

SS = 4  # supersampling: shapes are drawn 4x larger and shrunk, which anti-aliases their edges
W, H = 320, 240


def make_sheet(background):
    """A sheet with known sprites: (RGB array, expected boxes in reading order, shape coverage 0-255, hole box)."""
    big = Image.new("RGB", (W * SS, H * SS), background)
    cover = Image.new("L", (W * SS, H * SS), 0)
    d, c = ImageDraw.Draw(big), ImageDraw.Draw(cover)

    def shape(kind, box, fill, outline=(20, 20, 30), width=3):
        b = [v * SS for v in box]
        getattr(d, kind)(b, fill=fill, outline=outline, width=width * SS)
        getattr(c, kind)(b, fill=255)

    shape("rectangle", (20, 20, 80, 70), (200, 60, 40))  # 1: a plain box
    shape("ellipse", (110, 15, 190, 95), (40, 120, 200))  # 2: a ring: a disc with a background-coloured hole
    d.ellipse([v * SS for v in (135, 40, 165, 70)], fill=background, outline=(20, 20, 30), width=2 * SS)
    shape("rectangle", (0, 100, 50, 160), (60, 160, 60))  # 3: touches the left border
    # 4: a tree: a trunk and a crown 3 px apart (closer than the gap: one sprite)
    shape("rectangle", (240, 60, 252, 100), (120, 80, 40))
    shape("ellipse", (222, 10, 270, 57), (30, 140, 60))
    shape("polygon", (100, 200, 140, 130, 180, 200), (230, 200, 40))  # 5: a triangle
    for x, y in ((300, 220), (90, 110), (200, 180)):  # specks, 2x2 px: dropped
        d.rectangle([x * SS, y * SS, (x + 2) * SS - 1, (y + 2) * SS - 1], fill=(10, 10, 10))
    rgb = np.asarray(big.resize((W, H), Image.BOX))
    coverage = np.asarray(cover.resize((W, H), Image.BOX))
    boxes = [(20, 20, 81, 71), (110, 15, 191, 96), (222, 10, 271, 101), (0, 100, 51, 161), (100, 130, 181, 201)]
    return rgb, boxes, coverage, (140, 45, 160, 65)


BACKGROUNDS = {"white": (255, 255, 255), "off-white": (246, 241, 228)}


@pytest.mark.parametrize("bg", BACKGROUNDS.values(), ids=BACKGROUNDS.keys())
def test_sheet_is_keyed_split_and_packed(bg):
    rgb, boxes, coverage, hole = make_sheet(bg)
    mask = coverage > 0
    rgba = key_background(rgb)
    alpha = rgba[..., 3]
    far = ~dilate(mask, 3)
    far[215:228, 295:308] = far[105:118, 85:98] = far[175:188, 195:208] = False  # around the specks
    assert (alpha[far] == 0).all(), "background left opaque"
    l, t, r, b = hole
    assert (alpha[t:b, l:r] == 255).all(), "the ring's inner hole must stay opaque"
    inner = ~dilate(~mask, 2)
    assert (alpha[inner] == 255).all()
    assert np.array_equal(rgba[inner][:, :3], rgb[inner]), "sprite pixels changed"
    half = (coverage >= 64) & (coverage <= 192)  # pixels half covered by a shape's (dark) outline
    assert ((alpha[half] > 0) & (alpha[half] < 255)).mean() > 0.9, "no soft, anti-aliased edge"

    sprites = split_sprites(rgba, gap=8, min_area=64, margin=2)
    assert len(sprites) == len(boxes)
    for s, want in zip(sprites, boxes):
        assert np.abs(np.array(s.box) - np.array(want)).max() <= 2, (s.box, want)
        l, t, r, b = s.box
        assert s.image.shape[:2] == (b - t + 4, r - l + 4)
        # the sprite's own pixels are the sheet's, exactly
        ox, oy = s.origin
        own = s.image[..., 3] > 0
        ys, xs = np.nonzero(own)
        assert np.array_equal(s.image[ys, xs], rgba[ys + oy, xs + ox])
        assert (s.image[:2, :, 3] == 0).all() and (s.image[:, -2:, 3] == 0).all()  # the margin

    frames = {f"s_{i:02d}.png": s.image for i, s in enumerate(sprites, 1)}
    (image, atlas, meta), = build_atlas(frames, "atlas", padding=2)
    assert image == "atlas.png"
    assert meta["meta"] == {"app": "colabkit", "image": "atlas.png", "size": {"w": atlas.shape[1], "h": atlas.shape[0]},
                            "scale": "1", "format": "RGBA8888"}
    rects = []
    for name, f in meta["frames"].items():
        x, y, w, h = (f["frame"][k] for k in "xywh")
        sx, sy = f["spriteSourceSize"]["x"], f["spriteSourceSize"]["y"]
        # the frame holds the sprite's visible pixels; its margin is given back by spriteSourceSize
        assert same_visible(atlas[y:y + h, x:x + w], frames[name][sy:sy + h, sx:sx + w])
        assert (sx, sy) == (2, 2) and f["trimmed"] is True and f["rotated"] is False
        assert f["sourceSize"] == {"w": frames[name].shape[1], "h": frames[name].shape[0]}
        rects.append((x, y, x + w, y + h))
    for i, a in enumerate(rects):
        for b2 in rects[i + 1:]:
            assert a[2] <= b2[0] or b2[2] <= a[0] or a[3] <= b2[1] or b2[3] <= a[1], "atlas frames overlap"


def same_visible(a, b):
    """Equal alpha, and equal colour where visible (transparent pixels' colours are bled)."""
    return np.array_equal(a[..., 3], b[..., 3]) and np.array_equal(a[a[..., 3] > 0], b[b[..., 3] > 0])


def test_hole_open_to_the_outside_becomes_transparent():
    im = Image.new("RGB", (100, 100), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((20, 20, 80, 80), fill=(0, 0, 200))
    d.rectangle((40, 40, 60, 60), fill="white")  # closed hole: stays
    closed = key_background(np.asarray(im))
    assert closed[50, 50, 3] == 255
    d.rectangle((48, 0, 52, 45), fill="white")  # a channel from the border into the hole: now outside
    opened = key_background(np.asarray(im))
    assert opened[50, 50, 3] == 0 and opened[30, 30, 3] == 255


def test_busy_border_is_refused_with_the_fix():
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(ColabkitError, match="plain light background"):
        key_background(noise)


def test_labels_match_a_plain_flood_fill():
    rng = np.random.default_rng(1)
    for _ in range(40):
        m = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.random()
        for conn in (4, 8):
            got, n = label(m, conn)
            want, wn = _bfs_labels(m, conn)
            assert n == wn and len(set(zip(got[m].tolist(), want[m].tolist()))) == n and (got[~m] == 0).all()


def _bfs_labels(m, conn):
    h, w = m.shape
    out = np.zeros((h, w), int)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)] + ([(1, 1), (1, -1), (-1, 1), (-1, -1)] if conn == 8 else [])
    n = 0
    for y in range(h):
        for x in range(w):
            if m[y, x] and not out[y, x]:
                n += 1
                out[y, x] = n
                todo = [(y, x)]
                while todo:
                    cy, cx = todo.pop()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and m[ny, nx] and not out[ny, nx]:
                            out[ny, nx] = n
                            todo.append((ny, nx))
    return out, n


def test_shelf_pack_fits_and_never_overlaps():
    sizes = [(30, 10), (5, 40), (64, 64), (1, 1), (17, 23)] * 4
    placed, w, h = shelf_pack(sizes, padding=1)
    assert [(p.w, p.h) for p in placed] == sizes
    for i, a in enumerate(placed):
        assert a.x >= 1 and a.y >= 1 and a.x + a.w <= w and a.y + a.h <= h
        for b in placed[i + 1:]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y


def test_palette_reduction():
    rng = np.random.default_rng(2)
    rgba = np.dstack([rng.integers(0, 255, (20, 20, 3)), rng.integers(0, 255, (20, 20))]).astype(np.uint8)
    out = reduce_palette(rgba, 8)
    on = out[..., 3] == 255
    assert set(np.unique(out[..., 3])) <= {0, 255}
    assert len({tuple(c) for c in out[on][:, :3]}) <= 8


def test_folder_step_writes_sprites_atlas_and_keeps_originals(tmp_path):
    src = tmp_path / "made elsewhere"
    src.mkdir()
    rgb, boxes, _, _ = make_sheet((255, 255, 255))
    Image.fromarray(rgb).save(src / "sheet.png")
    Image.fromarray(rgb).convert("RGB").save(src / "sheet.jpg", quality=95)  # same name, another format
    (src / "notes.txt").write_text("not a picture")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    out = tmp_path / "out"
    # gap 26 px at 1024 is 8 px on this 320 px sheet: the tree's crown and trunk (3 px apart) stay one sprite
    done = cut_out_images(CutoutConfig(input_folder=str(src), output_folder=str(out), gap=26))
    assert [p.name for p in done] == ["sheet", "sheet-png"]  # sheet.jpg sorts first
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before
    folder = out / "sheet-png"
    names = sorted(p.name for p in folder.glob("sheet-png_*.png"))
    assert names == [f"sheet-png_{i:02d}.png" for i in range(1, len(boxes) + 1)]
    # one atlas for the folder, named after it, with every sprite of both pictures
    meta = json.loads((out / "made_elsewhere.json").read_text())
    atlas = np.asarray(Image.open(out / "made_elsewhere.png"))
    assert meta["meta"]["image"] == "made_elsewhere.png" and atlas.shape[2] == 4
    assert sorted(meta["frames"]) == sorted(names + [f"sheet_{i:02d}.png" for i in range(1, len(boxes) + 1)])
    for name in names:
        f = meta["frames"][name]
        x, y, w, h = (f["frame"][k] for k in "xywh")
        sx, sy = f["spriteSourceSize"]["x"], f["spriteSourceSize"]["y"]
        sprite = np.asarray(Image.open(folder / name))
        assert np.array_equal(atlas[y:y + h, x:x + w][..., 3], sprite[sy:sy + h, sx:sx + w, 3])
        assert f["origin"]["image"] == "sheet.png"
    assert not list(folder.glob("atlas*"))
    assert np.asarray(Image.open(folder / "cutout.png")).shape == (H, W, 4)
    assert (folder / "preview.png").exists()
    # JPEG noise around the shapes: still the right sprites
    assert len(list((out / "sheet").glob("sheet_*.png"))) == len(boxes)
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temp files left


def test_learned_model_is_optional_and_used_when_given(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # A stand-in matting "model": alpha = 1 - mean of the (normalised) channels, i.e. darker = more opaque.
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Sub", ["one", "m"], ["output"])],
        "matte", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "isnet-anime.onnx"
    onnx.save(model, str(path))
    im = np.full((64, 64, 3), 255, np.uint8)
    im[16:48, 16:48] = 0
    rgba = cut_out(im, model_file=str(path))
    opaque = rgba[..., 3] >= 250
    assert rgba[32, 32, 3] > 200 and rgba[2, 2, 3] < 60 and np.array_equal(rgba[..., :3][opaque], im[opaque])
    # the soft edge's colour is un-mixed from the white background: black, not grey
    soft = (rgba[..., 3] > 60) & (rgba[..., 3] < 200)
    assert soft.any() and rgba[..., :3][soft].max() <= 40
    with pytest.raises(ColabkitError, match="does not exist"):
        cut_out(im, model_file=str(tmp_path / "missing.onnx"))
    with pytest.raises(ColabkitError, match="non-commercial"):
        CutoutConfig(input_folder=str(tmp_path), model_file="RMBG-1.4.onnx")


def test_pictures_already_transparent_are_only_split(tmp_path):
    rgb, boxes, _, _ = make_sheet((255, 255, 255))
    keyed = key_background(rgb)
    keyed[..., :3][keyed[..., 3] == 0] = (0, 0, 0)  # a black, fully transparent background: keying would fail
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(keyed, "RGBA").save(src / "done.png")
    cut_out_images(CutoutConfig(input_folder=str(src), gap=26))
    again = np.asarray(Image.open(src / "assets" / "done" / "cutout.png"))
    visible = keyed[..., 3] > 0
    assert np.array_equal(again[..., 3], keyed[..., 3]) and np.array_equal(again[visible], keyed[visible])
    # the transparent pixels' colour is bled from their neighbours (no black fringe when scaled)
    assert again[..., :3][~visible].max(axis=1).mean() > 40
    assert len(list((src / "assets" / "done").glob("done_*.png"))) == len(boxes)


@pytest.mark.parametrize("empty, gap, expected", [(7, 8, 1), (8, 8, 2), (0, 0, 1), (1, 0, 2), (3, 4, 1), (4, 4, 2)])
def test_gap_joins_parts_closer_than_it(empty, gap, expected):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:30, 5:15] = 255
    rgba[12:20, 15 + empty:25 + empty] = 255
    assert len(split_sprites(rgba, gap=gap, min_area=1)) == expected
