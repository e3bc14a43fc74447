"""The folder step of the cut-out (cutout.py's cut_sheet, _folders, _read, _unique, write_atlas, cut_out_images,
_pixel_art, _safe_name) on tiny pictures: every message in full, every file name, the settings passed on.

Small pictures (32-64 px) keep this file fast: its tests fail in well under a second when the step breaks, so a
mutation run settles each change instead of timing out.
"""

import json

import numpy as np
import pytest
from PIL import Image

from colabkit.assets.config import CutoutConfig
from colabkit.assets.cutout import (_folders, _read, _safe_name, _unique, checkerboard, cut_out_images, cut_sheet, preview,
                                     write_atlas)
from colabkit.assets.sprites import bleed
from colabkit.errors import ColabkitError
from colabkit.project import Project

BUSY = ("the picture's border is not one plain or smoothly shaded colour (only {share} of it is near {colour}): the "
        "flood fill needs a plain light background. Generate with 'white background, simple background' in the "
        "prompt, raise tolerance, or give model_file (a BiRefNet or isnet-anime .onnx).")
COVERS = ("sprite {number} covers {share} of the picture: the background was probably not all found. Raise "
          "tolerance, set close_gaps, or give model_file.")


@pytest.fixture
def shown(monkeypatch):
    """What the step shows the person: ('table'|'text'|'image', ...) in order."""
    from colabkit import display

    seen = []
    monkeypatch.setattr(display, "show_table", lambda rows, title=None: seen.append(("table", rows, title)))
    monkeypatch.setattr(display, "show_text", lambda text, kind="info": seen.append(("text", text, kind)))
    monkeypatch.setattr(display, "show_image", lambda path, title=None, width=None: seen.append(
        ("image", path, title, width)))
    return seen


def boxes(sheet):
    return [s.box for s in sheet.sprites]


# -- where the step reads and writes ----------------------------------------------------------------------------

def test_folders_and_their_messages(tmp_path, drive):
    missing = tmp_path / "nowhere"
    with pytest.raises(ColabkitError) as e:
        _folders(CutoutConfig(input_folder=str(missing)))
    assert str(e.value) == f"No folder of pictures at {missing}. Check the path (in Colab: /content/drive/MyDrive/...)."
    project = Project.at("hero").create()
    generated = project.output / "generated"
    assert not generated.exists()
    with pytest.raises(ColabkitError) as e:
        _folders(CutoutConfig(project_name="hero"))
    assert str(e.value) == (f"No folder of pictures at {generated}. Generate pictures first (the generate step), or "
                            "give input_folder.")
    generated.mkdir()
    assert _folders(CutoutConfig(project_name="hero")) == (generated, project.output / "assets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _folders(CutoutConfig(project_name="hero", input_folder=str(elsewhere))) == (
        elsewhere, project.output / "assets")
    assert _folders(CutoutConfig(input_folder=str(elsewhere))) == (elsewhere, elsewhere / "assets")
    assert _folders(CutoutConfig(input_folder=str(elsewhere), output_folder=str(tmp_path / "o"))) == (
        elsewhere, tmp_path / "o")


def test_a_folder_without_pictures_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("no picture")
    (tmp_path / ".hidden.png").write_bytes(b"a dot file: never read")
    (tmp_path / "folder.png").mkdir()  # a folder, whatever its name
    with pytest.raises(ColabkitError) as e:
        cut_out_images(CutoutConfig(input_folder=str(tmp_path)))
    assert str(e.value) == f"No pictures (.png, .jpg, .webp...) directly in {tmp_path}."


def test_safe_name_and_unique():
    assert _safe_name("Xmas sprites!") == "Xmas_sprites"
    assert _safe_name("__my set__") == "my_set"
    assert _safe_name("!!!") == "atlas"
    used = {"hero", "hero-jpg"}
    assert [_unique(n, used) for n in ("hero", "Hero", "HERO", "potion")] == ["hero_2", "Hero_3", "HERO_4", "potion"]
    assert used == {"hero", "hero-jpg", "hero_2", "hero_3", "hero_4", "potion"}


def test_read_reports_own_transparency_only_when_a_pixel_uses_it(tmp_path):
    rgba = np.full((8, 8, 4), 255, np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")  # an alpha channel, all opaque: not cut yet
    rgba[0, 0, 3] = 254
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "plain.png")
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 255, 255, 255])
    p.putpixel((0, 0), 0)
    p.save(tmp_path / "keyed.png", transparency=0)  # a palette picture with a transparent index
    for name, transparent in (("opaque.png", False), ("cut.png", True), ("plain.png", False), ("keyed.png", True)):
        arr, has = _read(tmp_path / name)
        assert has is transparent and arr.dtype == np.uint8 and arr.shape == (8, 8, 4), name


# -- one picture: cut_sheet passes every setting on, scaled ------------------------------------------------------

def test_cut_sheet_notes_a_sprite_that_covers_most_of_the_picture():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[2:8, 2:8] = 255  # sprite 1 (reading order), small
    rgba[16:60, 10:60] = 255  # sprite 2: 50 x 44 px = 54% of the picture
    sheet = cut_sheet(rgba, CutoutConfig(input_folder="x"), already_cut=True)
    assert boxes(sheet) == [(2, 2, 8, 8), (10, 16, 60, 60)]
    assert sheet.notes == [COVERS.format(number=2, share="54%")]


def test_cut_sheet_note_threshold_is_40_percent_of_the_box_area():
    # 100 x 50 px: 40% is 2000 px. Sprite 1 is exactly 2000 px (no note); sprite 2 (30 x 30 at top 20) is small
    rgba = np.zeros((50, 100, 4), np.uint8)
    rgba[0:50, 10:50] = 255
    rgba[20:50, 60:90] = 255
    sheet = cut_sheet(rgba, CutoutConfig(input_folder="x"), already_cut=True)
    assert boxes(sheet) == [(10, 0, 50, 50), (60, 20, 90, 50)] and sheet.notes == []


def test_cut_sheet_scales_gap_min_area_and_margin_and_keeps_faint_sprites():
    # 128 px: sizes at 1024 are divided by 8. gap 160 -> 20 px, min_area 1024 -> 16 px, margin 32 -> 4 px
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[10:20, 10:20] = 255
    rgba[10:20, 32:42] = 255  # 12 px from the first: one sprite with a 20 px gap
    rgba[100:103, 100:103] = 255  # 9 px: a speck under 16
    rgba[60:65, 100:105] = 255  # 25 px: kept
    rgba[100:110, 10:20, 3] = 1  # as faint as can be, still drawn: a sprite (threshold 1)
    cfg = CutoutConfig(input_folder="x", gap=160, min_area=1024, margin=32)
    sheet = cut_sheet(rgba, cfg, already_cut=True)
    assert boxes(sheet) == [(10, 10, 42, 20), (100, 60, 105, 65), (10, 100, 20, 110)]
    assert [s.origin for s in sheet.sprites] == [(6, 6), (96, 56), (6, 96)]
    assert [s.image.shape for s in sheet.sprites] == [(18, 40, 4), (13, 13, 4), (18, 18, 4)]
    assert sheet.rgba.dtype == np.uint8 and np.array_equal(sheet.rgba, rgba)
    assert cut_sheet(rgba.astype(np.int32), cfg, already_cut=True).rgba.dtype == np.uint8


def test_cut_sheet_passes_shadows_holes_and_scaled_close_gaps_to_the_keying():
    im = np.full((64, 64, 3), 255, np.uint8)
    im[10:30, 10:30] = (200, 30, 30)
    im[30:40, 14:40] = (170, 170, 170)  # a drop shadow: made soft, black with the alpha of its darkness
    sheet = cut_sheet(im, CutoutConfig(input_folder="x"))
    assert sheet.rgba[35, 30].tolist() == [0, 0, 0, 67]
    assert cut_sheet(im, CutoutConfig(input_folder="x", shadows="keep")).rgba[35, 30].tolist() == [170, 170, 170, 255]
    # a box with a white hole: kept (an enclosed region) unless holes says clear
    ring = np.full((64, 64, 3), 255, np.uint8)
    ring[10:50, 10:50] = (0, 0, 200)
    ring[20:40, 20:40] = 255
    kept = cut_sheet(ring, CutoutConfig(input_folder="x"))
    assert kept.rgba[30, 30, 3] == 255 and kept.holes == [(20, 20, 40, 40)] and kept.cleared == []
    clear = cut_sheet(ring, CutoutConfig(input_folder="x", holes="clear"))
    assert clear.rgba[30, 30, 3] == 0 and clear.cleared == [1]
    # 128 px: close_gaps 16 at 1024 is 2 px: a 6 px channel into the hole still lets the fill in
    big = np.full((128, 128, 3), 255, np.uint8)
    big[20:100, 20:100] = (0, 0, 200)
    big[50:70, 50:70] = 255
    big[0:55, 57:63] = 255
    opened = cut_sheet(big, CutoutConfig(input_folder="x", close_gaps=16))
    assert opened.rgba[60, 60, 3] == 0 and opened.holes == []


def test_cut_sheet_with_a_model_passes_its_file_and_keeps_sprites_at_alpha_threshold():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    # isnet-like (std 1, map stretched to [0, 1]): alpha = the picture's grey level, exactly, at the model's 32 px
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["output"], axes=[1], keepdims=1)], "grey",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "isnet-grey.onnx"
        onnx.save(model, str(path))
        im = np.zeros((32, 32, 3), np.uint8)
        im[2:4, 2:4] = 255
        im[20:26, 20:26] = 1  # alpha 1: a sprite with alpha_threshold 1
        sheet = cut_sheet(im, CutoutConfig(input_folder="x", model_file=str(path), alpha_threshold=1))
        assert np.array_equal(sheet.rgba[..., 3], im[..., 0])
        assert boxes(sheet) == [(2, 2, 4, 4), (20, 20, 26, 26)]
        sheet = cut_sheet(im, CutoutConfig(input_folder="x", model_file=str(path), alpha_threshold=2))
        assert boxes(sheet) == [(2, 2, 4, 4)]


# -- the step over a folder ------------------------------------------------------------------------------------

def _square_sheet(size, squares, background=(255, 255, 255)):
    im = np.full((size, size, 3), background, np.uint8)
    for (l, t, r, b), colour in squares:
        im[t:b, l:r] = colour
    return im


def test_folder_step_files_names_and_every_line_it_shows(tmp_path, shown, monkeypatch):
    import tqdm.auto

    bars = []

    def bar(iterable, **kw):
        bars.append((list(iterable), kw))
        return iterable

    monkeypatch.setattr(tqdm.auto, "tqdm", bar)
    src = tmp_path / "Xmas sprites!"
    src.mkdir()
    Image.fromarray(_square_sheet(64, [((2, 2, 8, 8), (200, 30, 30)), ((10, 16, 60, 60), (0, 0, 200))])).save(
        src / "Hero.png")
    (src / "a-broken.png").write_bytes(b"not a picture")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "b-busy.png")
    done = np.zeros((32, 32, 4), np.uint8)
    done[8:20, 10:24] = (30, 160, 60, 255)
    done[20, 10:24] = (30, 160, 60, 128)  # a soft edge of its own: kept as it is
    Image.fromarray(done, "RGBA").save(src / "c-done.png")
    Image.fromarray(_square_sheet(64, [((20, 20, 40, 40), (30, 160, 60))])).save(src / "hero.JPG", quality=95)
    out = src / "assets"
    result = cut_out_images(CutoutConfig(input_folder=str(src), names="hero, Hero, potion"))
    assert result == [out / "Hero", out / "c-done", out / "hero-jpg"]
    pictures = ["Hero.png", "a-broken.png", "b-busy.png", "c-done.png", "hero.JPG"]
    assert bars == [([src / n for n in pictures], {"desc": "cutting out", "unit": "picture"})]
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {
        "Hero", "Hero/hero_2.png", "Hero/Hero_3.png", "Hero/cutout.png", "Hero/preview.png",
        "c-done", "c-done/potion.png", "c-done/cutout.png", "c-done/preview.png",
        "hero-jpg", "hero-jpg/hero-jpg_01.png", "hero-jpg/cutout.png", "hero-jpg/preview.png",
        "Xmas_sprites.png", "Xmas_sprites.json", "Xmas_sprites.multiatlas.json"}
    blue = np.asarray(Image.open(out / "Hero" / "Hero_3.png"))
    assert blue.shape == (44, 50, 4) and (blue == (0, 0, 200, 255)).all()
    red = np.asarray(Image.open(out / "Hero" / "hero_2.png"))
    assert red.shape == (6, 6, 4) and (red == (200, 30, 30, 255)).all()
    again = np.asarray(Image.open(out / "c-done" / "cutout.png"))
    assert np.array_equal(again, bleed(done))
    potion = np.asarray(Image.open(out / "c-done" / "potion.png"))
    assert np.array_equal(potion[..., 3], done[8:21, 10:24, 3])
    meta = json.loads((out / "Xmas_sprites.json").read_text())
    assert sorted(meta["frames"]) == ["Hero_3.png", "hero-jpg_01.png", "hero_2.png", "potion.png"]
    assert meta["frames"]["potion.png"]["origin"] == {"image": "c-done.png", "x": 10, "y": 8, "w": 14, "h": 13}
    broken = f"cannot identify image file {str(src / 'a-broken.png')!r}"
    assert shown == [
        ("table", [{"picture": "Hero.png", "sprites": 2, "holes": 0, "saved in": str(out / "Hero")},
                   {"picture": "c-done.png", "sprites": 1, "holes": 0, "saved in": str(out / "c-done")},
                   {"picture": "hero.JPG", "sprites": 1, "holes": 0, "saved in": str(out / "hero-jpg")}],
         f"Cut out 3 of 5 pictures from {src}"),
        ("text", f"One atlas for the set: {out / 'Xmas_sprites.png'}", "info"),
        ("text", f"skipped a-broken.png: not readable as a picture ({broken})", "warn"),
        ("text", "skipped b-busy.png: " + BUSY.format(share="1%", colour=[122, 144, 126]), "warn"),
        ("text", "Hero.png: " + COVERS.format(number=2, share="54%"), "warn"),
        ("image", out / "Hero" / "preview.png", "Hero: cut out, sprites and holes numbered", 600),
        ("image", out / "c-done" / "preview.png", "c-done: cut out, sprites and holes numbered", 600),
        ("image", out / "hero-jpg" / "preview.png", "hero-jpg: cut out, sprites and holes numbered", 600)]


# -- pixel art ----------------------------------------------------------------------------------------------

COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (0, 0, 0), (255, 200, 0), (200, 0, 200), (0, 200, 200),
           (128, 64, 0), (255, 128, 128), (128, 128, 255), (64, 128, 64), (200, 100, 0), (100, 0, 60), (0, 90, 160),
           (160, 160, 0), (90, 40, 160), (40, 40, 40), (170, 110, 210)]  # 18, far apart


def _outlined(inner):
    """Pixel art as it is drawn: a black outline one art pixel wide around ``inner`` (h x w x 3)."""
    art = np.zeros((inner.shape[0] + 2, inner.shape[1] + 2, 3), np.uint8)
    art[1:-1, 1:-1] = inner
    return art


def _pixel_sheet(art, at, k=4, size=64):
    im = np.full((size, size, 3), 255, np.uint8)
    h, w = art.shape[:2]
    im[at:at + h * k, at:at + w * k] = np.kron(art, np.ones((k, k, 1), np.uint8))
    return im


def test_pixel_art_found_size_one_palette_of_16_for_the_set(tmp_path, shown):
    art = _outlined(np.array([COLOURS[i % 18] for i in range(36)], np.uint8).reshape(6, 6, 3))
    Image.fromarray(_pixel_sheet(art, 16)).save(tmp_path / "p1.png")
    Image.fromarray(_pixel_sheet(art[::-1], 12)).save(tmp_path / "p2.png")
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), pixel_art=True))
    out = tmp_path / "assets"
    palette = np.asarray(Image.open(out / "palette.png"))
    assert palette.shape == (1, 16, 3)
    assert (out / "palette.hex").read_text() == "".join(f"{r:02x}{g:02x}{b:02x}\n" for r, g, b in palette[0].tolist())
    for name, rows in (("p1/p1_01.png", art), ("p2/p2_01.png", art[::-1])):
        sprite = np.asarray(Image.open(out / name))
        assert sprite.shape == (8, 8, 4) and (sprite[..., 3] == 255).all()  # one pixel per art pixel
        # each art pixel becomes the nearest colour of the one palette (19 colours with the outline's: 16 kept)
        nearest = palette[0][((rows[:, :, None].astype(int) - palette[0].astype(int)) ** 2).sum(axis=3).argmin(axis=2)]
        assert np.array_equal(sprite[..., :3], nearest)
    assert ("text", "pixel art: one art pixel is (picture: its size in pixels) p1.png: 4, p2.png: 4; one palette of 16 "
            "colours for the set.", "info") in shown


def test_pixel_art_of_a_given_size_samples_each_block_on_its_grid(tmp_path, shown):
    dark = [COLOURS[i] for i in (0, 1, 2, 3, 5, 7)]
    art = _outlined(np.array([dark[i % 6] for i in range(12)], np.uint8).reshape(3, 4, 3))
    art[0, 0] = art[-1, -1] = 255  # two background-coloured corners
    Image.fromarray(_pixel_sheet(art, 18)).save(tmp_path / "q.png")
    # margin 48 at 1024 is 3 px here: the sprite's picture starts 3 px before the art, off the grid
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), pixel_art=True, pixel_size=4, margin=48))
    sprite = np.asarray(Image.open(tmp_path / "assets" / "q" / "q_01.png"))
    on = (art != 255).any(axis=2)
    assert np.array_equal(sprite[..., 3], np.pad(on, 1).astype(np.uint8) * 255)  # one art pixel around, no more
    assert np.array_equal(sprite[1:-1, 1:-1, :3][on], art[on])
    palette = np.asarray(Image.open(tmp_path / "assets" / "palette.png"))
    assert sorted(map(tuple, palette[0].tolist())) == sorted(dark)


def test_write_atlas_writes_the_pages_their_json_and_the_multiatlas(tmp_path):
    from colabkit.assets.atlas import build_atlas, multiatlas

    frames = {f"s{i}.png": np.full((10 + i, 7, 4), (40 * i, 20, 200, 255), np.uint8) for i in range(5)}
    cfg = CutoutConfig(input_folder="x", atlas_padding=3, max_size=64, extrude=2)
    written = write_atlas(tmp_path, "set", frames, cfg)
    pages = build_atlas(frames, "set", 3, 64, False, 2)
    assert written == [tmp_path / image for image, _a, _d in pages] and [p.name for p in written] == ["set.png"]
    for image, array, data in pages:
        assert array.shape == (41, 59, 4)  # not rounded up to powers of two (64 x 64)
        assert np.array_equal(np.asarray(Image.open(tmp_path / image)), array)
        assert json.loads((tmp_path / (image[:-4] + ".json")).read_text()) == data
    assert json.loads((tmp_path / "set.multiatlas.json").read_text()) == multiatlas(pages)
    extruded = write_atlas(tmp_path / "plain", "set", frames, CutoutConfig(input_folder="x", atlas_padding=3,
                                                                         max_size=64, extrude=0))
    assert [np.asarray(Image.open(p)).shape for p in extruded] != [a.shape for _i, a, _d in pages]
    pot = write_atlas(tmp_path / "pot", "set", frames, CutoutConfig(input_folder="x", atlas_padding=3, max_size=64,
                                                                   extrude=2, power_of_two=True))
    pot_pages = build_atlas(frames, "set", 3, 64, True, 2)
    assert [a.shape for _i, a, _d in pot_pages] == [(64, 64, 4)]  # a game engine that wants 2^n textures gets them
    assert [np.asarray(Image.open(p)).shape for p in pot] == [(64, 64, 4)]


def test_exactly_eight_pictures_show_eight_previews_and_no_more_line(tmp_path, shown):
    for i in range(8):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[4:10, 4:12] = (20 * i, 90, 200, 255)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"s{i}.png")
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), output_folder=str(tmp_path / "out"), one_atlas=False))
    assert len([x for x in shown if x[0] == "image"]) == 8
    assert not [x for x in shown if x[0] == "text" and x[1].startswith("...")]


def test_the_folder_steps_preview_numbers_sprites_and_greys_out_cleared_holes(tmp_path, shown):
    """preview.png is the preview of that picture's cut: its sprites' boxes, its holes, the cleared ones grey."""
    ring = np.full((64, 64, 3), 255, np.uint8)
    ring[10:50, 10:50] = (0, 0, 200)
    ring[20:40, 20:40] = 255
    ring[14:18, 14:18] = 255  # a second, smaller hole: kept
    Image.fromarray(ring).save(tmp_path / "ring.png")
    cfg = CutoutConfig(input_folder=str(tmp_path), holes="1")
    sheet = cut_sheet(ring, cfg)
    assert sheet.holes and sheet.cleared == [1] and len(sheet.holes) == 2
    cut_out_images(cfg)
    written = np.asarray(Image.open(tmp_path / "assets" / "ring" / "preview.png").convert("RGB"))
    expected = np.asarray(preview(sheet.rgba, boxes(sheet), sheet.holes, sheet.cleared).convert("RGB"))
    assert np.array_equal(written, expected)


def test_many_pictures_each_with_its_own_atlas(tmp_path, shown):
    for i in range(9):
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[4:12 + i, 6:20] = (20 * i, 90, 200, 255)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"s{i}.png")
    out = tmp_path / "out"
    done = cut_out_images(CutoutConfig(input_folder=str(tmp_path), output_folder=str(out), one_atlas=False))
    assert done == [out / f"s{i}" for i in range(9)]
    for i in range(9):
        assert sorted(p.name for p in (out / f"s{i}").iterdir()) == [
            "cutout.png", "preview.png", f"s{i}_01.png", f"s{i}_atlas.json", f"s{i}_atlas.multiatlas.json",
            f"s{i}_atlas.png"]
        meta = json.loads((out / f"s{i}" / f"s{i}_atlas.json").read_text())
        assert list(meta["frames"]) == [f"s{i}_01.png"]
    assert sorted(p.name for p in out.iterdir()) == [f"s{i}" for i in range(9)]
    assert [x[2] for x in shown if x[0] == "image"] == [f"s{i}: cut out, sprites and holes numbered" for i in range(8)]
    assert shown[-1] == ("text", f"... and 1 more in {out}", "info")
    assert shown[0][2] == f"Cut out 9 of 9 pictures from {tmp_path}"
    assert not [x for x in shown if x[0] == "text" and x[1].startswith("One atlas")]


# -- the preview ------------------------------------------------------------------------------------------------

def test_checkerboard_is_12_px_cells_of_200_and_235():
    board = checkerboard(30, 26)
    yy, xx = np.mgrid[0:26, 0:30]
    assert board.dtype == np.uint8 and board.shape == (26, 30, 3)
    expected = np.where((yy // 12 + xx // 12) % 2 == 1, 235, 200)
    assert all(np.array_equal(board[..., c], expected) for c in range(3))


def _drawn(rgba, boxes, holes, cleared, font_size):
    """The preview as it should look: over the checkerboard, red numbered boxes, blue holes (grey: cleared)."""
    from PIL import ImageDraw, ImageFont

    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where((yy // 12 + xx // 12) % 2 == 1, 235.0, 200.0)[..., None]
    a = rgba[..., 3:4] / 255.0
    im = Image.fromarray(np.round(rgba[..., :3] * a + board * (1 - a)).astype(np.uint8))
    d, font = ImageDraw.Draw(im), ImageFont.load_default(size=font_size)
    for i, (l, t, r, b) in enumerate(boxes, 1):
        d.rectangle((l - 1, t - 1, r, b), outline=(230, 30, 90), width=1)
        d.text((l + 2, t + 1), str(i), fill=(230, 30, 90), font=font)
    for i, (l, t, r, b) in enumerate(holes, 1):
        colour = (120, 120, 120) if i in cleared else (40, 90, 230)
        d.rectangle((l, t, r - 1, b - 1), outline=colour, width=1)
        d.text((l + 2, t + 1), f"hole {i}", fill=colour, font=font)
    return np.asarray(im)


@pytest.mark.parametrize("w, h, font_size", [(96, 64, 10), (700, 48, 13)])  # 14 px at 768, at least 10
def test_preview_shows_transparency_numbered_boxes_and_holes(w, h, font_size):
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[5:40, 5:45] = (30, 60, 90, 255)
    rgba[20:30, 60:90] = (255, 0, 0, 128)  # half transparent: half the checkerboard shows
    rgba[40:44, 60:90, 3] = 255  # black, opaque, over a light cell
    boxes, holes, cleared = [(5, 5, 45, 40), (60, 20, 90, 44)], [(10, 10, 30, 30), (32, 10, 42, 30)], [2]
    im = np.asarray(preview(rgba, boxes, holes, cleared))
    assert im.shape == (h, w, 3)
    assert np.array_equal(im, _drawn(rgba, boxes, holes, cleared, font_size))
    assert im[35, 50].tolist() == [200, 200, 200] and im[35, 20].tolist() == [30, 60, 90]
    assert im[42, 62].tolist() == [0, 0, 0] and im[28, 85].tolist() == [245, 117, 117]


def test_a_folder_of_unreadable_pictures_only_reports_them(tmp_path, shown):
    (tmp_path / "a.png").write_bytes(b"not a picture")
    assert cut_out_images(CutoutConfig(input_folder=str(tmp_path))) == []
    assert shown == [("table", [], f"Cut out 0 of 1 pictures from {tmp_path}"),
                     ("text", "skipped a.png: not readable as a picture (cannot identify image file "
                              f"{str(tmp_path / 'a.png')!r})", "warn")]


@pytest.mark.parametrize("pixel_art, cell", [(False, (12, 14)), (True, (8, 8))])
def test_one_cell_for_every_sprite_has_the_margin_around_the_largest(tmp_path, pixel_art, cell):
    # margin 32 at 1024 is 2 px on this 64 px picture; pixel art: one art pixel
    im = np.full((64, 64, 3), 255, np.uint8)
    im[8:16, 8:18] = (0, 0, 0)  # 10 x 8
    im[40:44, 40:46] = (0, 0, 0)  # 6 x 4
    if pixel_art:
        im = _pixel_sheet(_outlined(np.full((4, 4, 3), (200, 30, 30), np.uint8)), 16)  # 6 x 6 art pixels of 4 px
    Image.fromarray(im).save(tmp_path / "c.png")
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), canvas="cell", margin=32, pixel_art=pixel_art,
                                  pixel_size=4 if pixel_art else 0))
    shapes = {np.asarray(Image.open(p)).shape for p in (tmp_path / "assets" / "c").glob("c_*.png")}
    assert shapes == {(*cell, 4)}


def test_canvas_height_scales_every_object_to_it_and_the_pivot_is_passed_on(tmp_path):
    im = np.full((64, 64, 3), 255, np.uint8)
    im[8:16, 8:18] = (0, 0, 0)  # 10 x 8: twice as large, 20 x 16
    im[40:44, 40:46] = (0, 0, 0)  # 6 x 4: four times, 24 x 16
    Image.fromarray(im).save(tmp_path / "h.png")
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), canvas="height", canvas_height=16, margin=0,
                                pivot="0.25, 0.5"))
    shapes = {np.asarray(Image.open(p)).shape for p in (tmp_path / "assets" / "h").glob("h_*.png")}
    assert shapes == {(16, 24, 4)}
    meta = json.loads((tmp_path / "assets" / f"{_safe_name(tmp_path.name)}.json").read_text())
    assert [meta["frames"][n]["pivot"] for n in ("h_01.png", "h_02.png")] == [{"x": 0.25, "y": 0.5}] * 2


def test_palette_colors_reduce_each_sprite_and_its_hidden_pixels_are_bled(tmp_path):
    im = np.full((64, 64, 3), 255, np.uint8)
    im[8:30, 8:16] = (200, 30, 30)  # an L: its box has background inside, transparent in the sprite
    im[22:30, 16:40] = (30, 30, 200)
    im[22:30, 30:40] = (40, 40, 210)  # close to the blue: merged with it on 2 colours
    Image.fromarray(im).save(tmp_path / "l.png")
    cut_out_images(CutoutConfig(input_folder=str(tmp_path), palette_colors=2, atlas_name=" my set "))
    sprite = np.asarray(Image.open(tmp_path / "assets" / "l" / "l_01.png"))
    on = sprite[..., 3] == 255
    assert sprite.shape == (22, 32, 4) and on.sum() == 8 * 22 + 24 * 8 and ((sprite[..., 3] == 0) | on).all()
    assert len({tuple(c) for c in sprite[..., :3][on].tolist()}) == 2
    assert sprite[..., :3][~on].max() > 0 and np.array_equal(sprite, bleed(sprite))  # no black behind the edge
    assert (tmp_path / "assets" / "my set.png").is_file() and (tmp_path / "assets" / "my set.json").is_file()
