import numpy as np
import pytest
from PIL import Image

from colabkit.dataset.images import (
    NEAR_DUPLICATE_BITS,
    ImageInfo,
    hash_distance,
    inspect_file,
    load_rgb,
    pad_to_square,
    perceptual_hash,
)
from colabkit.dataset import items
from colabkit.project import Project
from colabkit.tiny.drawings import drawing
from helpers.images import folder_checksums as checksums, make_mixed_folder


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed") / "dataset"
    return folder, make_mixed_folder(folder)


def scan_folder(folder):
    """The dataset check every step runs (items.scan), on the project whose dataset/ is ``folder``."""
    return items.scan(Project(name=folder.parent.name, root=folder.parent))


def test_scan_names_every_problem_and_accepts_every_good_image(mixed):
    folder, expected = mixed
    before = checksums(folder)
    result = scan_folder(folder)
    accepted = {i.file.name for i in result.accepted}
    problems = {p.file.name: p for p in result.problems}

    good = {n for n, kind in expected.items() if kind in ("ok", "near-duplicate")}
    assert accepted == good
    for name, kind in expected.items():
        if kind == "ok":
            assert name not in problems, problems.get(name)
        else:
            assert problems[name].kind == kind, (name, problems[name])
            assert problems[name].reason and problems[name].fix
            assert problems[name].rejected == (kind not in ("near-duplicate", "folder"))
    # hidden files and sync leftovers are not the artist's data
    assert ".DS_Store" not in problems and "Thumbs.db" not in problems
    assert checksums(folder) == before  # checking never changes a file


def test_accepted_details(mixed):
    folder, _ = mixed
    info = {i.file.name: i for i in scan_folder(folder).accepted}
    assert (info["05_rotated.jpg"].width, info["05_rotated.jpg"].height) == (576, 768)  # after EXIF rotation
    assert "rotated by its EXIF tag" in info["05_rotated.jpg"].notes
    assert info["01_lineart_transparent.png"].mode == "RGBA"
    assert "transparency composited onto white" in info["02_palette.png"].notes
    assert info["03_cmyk.jpg"].mode == "CMYK"
    assert info["04_sixteen_bit.png"].mode.startswith("I")


def test_transparent_line_art_goes_onto_white(mixed):
    folder, _ = mixed
    rgb = load_rgb(folder / "01_lineart_transparent.png")
    assert rgb.mode == "RGB"
    arr = np.asarray(rgb)
    alpha = np.asarray(Image.open(folder / "01_lineart_transparent.png"))[..., 3]
    assert (arr[alpha == 0] == 255).all()  # transparent pixels are white, not black
    assert (arr[alpha == 255] == 0).all()  # the black ink stays black
    # the naive conversion a tool would do turns the picture black: this is what we avoid
    assert np.asarray(Image.open(folder / "01_lineart_transparent.png").convert("RGB")).mean() < 40


def test_palette_with_transparency(mixed):
    folder, _ = mixed
    arr = np.asarray(load_rgb(folder / "02_palette.png")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(arr, axis=0)}
    assert (255, 255, 255) in colours  # the transparent index became white
    assert any(c[0] > 150 and c[1] < 80 for c in colours)  # red ink kept


def test_cmyk_becomes_rgb(mixed):
    folder, _ = mixed
    arr = np.asarray(load_rgb(folder / "03_cmyk.jpg"), dtype=int)
    assert arr.shape[2] == 3
    assert np.median(arr.reshape(-1, 3), axis=0).min() > 230  # white paper stays white
    ink = arr[(arr.sum(axis=2) < 400)]
    assert len(ink) and ink[:, 2].mean() > ink[:, 0].mean() + 40  # blue ink stays blue


def test_sixteen_bit_is_scaled_not_clipped(mixed):
    folder, _ = mixed
    arr = np.asarray(load_rgb(folder / "04_sixteen_bit.png"), dtype=int)
    # paper was 50% grey in 16 bits: it must be ~127, not clipped to 255 as convert("L") would do
    assert abs(np.median(arr) - 127) <= 2
    assert arr.min() == 0


def test_exif_orientation_is_applied(mixed):
    folder, _ = mixed
    assert load_rgb(folder / "05_rotated.jpg").size == (576, 768)


def test_reduced_jpeg_decode_keeps_long_side(mixed):
    folder, _ = mixed
    small = load_rgb(folder / "06_colour.png", long_side=100)
    assert small.size == (640, 640)  # PNG cannot decode reduced: full size, resized later
    big = drawing(3, size=(2000, 1000)).convert("RGB")
    big.save(folder / "big.jpg", quality=90)
    try:
        img = load_rgb(folder / "big.jpg", long_side=448)
        assert 448 <= max(img.size) < 1000 and img.size[0] == 2 * img.size[1]
    finally:
        (folder / "big.jpg").unlink()


def test_pad_to_square_centres_on_white():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    sq = np.asarray(pad_to_square(img))
    assert sq.shape == (40, 40, 3)
    assert (sq[:10] == 255).all() and (sq[30:] == 255).all()
    assert (sq[10:30] == [255, 0, 0]).all()


def test_perceptual_hash_separates_sketches_and_finds_copies():
    a = drawing(1).convert("RGB")
    copy = a.resize((500, 500)).convert("L").convert("RGB")
    others = [drawing(s).convert("RGB") for s in range(2, 8)]
    assert hash_distance(perceptual_hash(a), perceptual_hash(copy)) <= NEAR_DUPLICATE_BITS
    for o in others:
        assert hash_distance(perceptual_hash(a), perceptual_hash(o)) > 2 * NEAR_DUPLICATE_BITS


def test_min_side_and_aspect_are_parameters(mixed):
    folder, _ = mixed
    assert isinstance(inspect_file(folder / "11_tiny.png", min_side=256), ImageInfo)
    assert isinstance(inspect_file(folder / "12_banner.png", max_aspect=5), ImageInfo)


def test_decompression_bomb_limits_stay_on(tmp_path):
    from helpers.images import bomb_png

    limit = Image.MAX_IMAGE_PIXELS
    (tmp_path / "warn.png").write_bytes(bomb_png(10_000, 10_000))  # 100 MP: above the warning limit only
    (tmp_path / "error.png").write_bytes(bomb_png(30_000, 30_000))
    assert inspect_file(tmp_path / "warn.png").kind == "huge"
    assert inspect_file(tmp_path / "error.png").kind == "huge"
    assert Image.MAX_IMAGE_PIXELS == limit  # never switched off


def test_same_name_different_extension_is_a_clash(tmp_path):
    (tmp_path / "dataset").mkdir()
    drawing(1).convert("RGB").save(tmp_path / "dataset" / "a.png")
    drawing(2).convert("RGB").save(tmp_path / "dataset" / "a.jpg")
    result = scan_folder(tmp_path / "dataset")
    assert [i.file.name for i in result.accepted] == ["a.jpg"]
    assert [(p.file.name, p.kind) for p in result.problems] == [("a.png", "name clash")]
