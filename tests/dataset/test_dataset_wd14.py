"""The WD14 path against the tiny colour-detector tagger: recipe, channel order, padding, thresholds."""

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from colabkit.dataset.wd14 import WD14Tagger, load_tagger, resolve_tagger
from colabkit.errors import ColabkitError
from colabkit.tiny.tagger import TAGS, build_tiny_tagger, expected_probs


@pytest.fixture(scope="module")
def tagger(tiny_tagger):
    return WD14Tagger(tiny_tagger)


def tags_of(tagger, img, **kw):
    probs = tagger.predict(tagger.preprocess(img)[None])[0]
    return [t.tag for t in tagger.select(probs, **kw)]


def names_above(probs, threshold=0.35):
    return {name for (name, cat, _), p in zip(TAGS, probs) if cat == 0 and p >= threshold}


def test_input_size_comes_from_the_graph(tmp_path, tagger):
    assert tagger.input_size == 64
    small = WD14Tagger(build_tiny_tagger(tmp_path / "t32", size=32))
    assert small.input_size == 32
    assert small.preprocess(Image.new("RGB", (100, 50))).shape == (32, 32, 3)


def test_preprocess_matches_the_training_recipe(tagger):
    # 128x64 RGBA: left half transparent, right half opaque red.
    img = Image.new("RGBA", (128, 64), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (64, 0, 128, 64))
    from colabkit.dataset.images import to_rgb

    got = tagger.preprocess(to_rgb(img))

    # Independent reference: white composite, centred white square, bicubic to 64, float 0-255, BGR.
    rgba = np.asarray(img, dtype=np.float64)
    a = rgba[..., 3:] / 255
    rgb = rgba[..., :3] * a + 255 * (1 - a)
    square = np.full((128, 128, 3), 255.0)
    square[32:96] = rgb
    ref = Image.fromarray(square.round().astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    ref = np.asarray(ref, dtype=np.float32)[:, :, ::-1]

    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, ref)
    assert got.max() == 255 and got.min() >= 0  # 0-255, not normalised
    assert tuple(got[32, 60]) == (0, 0, 255)  # red is at index 2: BGR
    assert (got[:14] == 255).all() and (got[-14:] == 255).all()  # white bands above and below


def test_channel_order_and_padding_show_in_the_tags(tagger):
    wide_red = Image.new("RGB", (1024, 512), (255, 0, 0))
    tags = tags_of(tagger, wide_red)
    assert {"red theme", "white border top", "white border bottom"} <= set(tags)
    assert not {"blue theme", "white border left", "white border right", "black background"} & set(tags)

    # The tiny tagger really does tell the wrong recipes apart (so the assertions above mean something).
    right = tagger.preprocess(wide_red)
    rgb_order = right[:, :, ::-1]
    black_pad = np.zeros_like(right)
    black_pad[16:48] = right[16:48]
    stretched = np.asarray(wide_red.resize((64, 64)), dtype=np.float32)[:, :, ::-1]
    top_padded = np.full_like(right, 255)
    top_padded[32:] = right[16:48]
    good = names_above(expected_probs(right))
    assert "blue_theme" not in good and "red_theme" in good  # names_above gives the names with underscores
    assert "blue_theme" in names_above(expected_probs(rgb_order))
    assert "white_border_top" not in names_above(expected_probs(black_pad))
    assert "white_border_top" not in names_above(expected_probs(stretched))
    assert "white_border_bottom" not in names_above(expected_probs(top_padded))  # not centred
    assert not {"red_theme", "white_border_top"} & names_above(expected_probs(right / 255.0))  # 0-1 input


def test_graph_agrees_with_its_numpy_definition(tagger):
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(tagger.predict(x), np.stack([expected_probs(a) for a in x]), atol=1e-5)


def test_transparent_line_art_is_tagged_on_white(tagger):
    img = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for i in range(6):
        d.line((0, i * 100, 600, 600 - i * 100), fill=(0, 0, 0, 255), width=4)
    from colabkit.dataset.images import to_rgb

    tags = tags_of(tagger, to_rgb(img))
    assert "white background" in tags and "black background" not in tags
    assert "black background" in tags_of(tagger, img.convert("RGB"))  # what dropping alpha would give


def test_thresholds_characters_ratings_and_order(tagger):
    green = Image.new("RGB", (512, 512), (0, 255, 0))
    tags = tags_of(tagger, green)
    assert tags[:2] == ["green theme", "hatsune miku"] or tags[:2] == ["hatsune miku", "green theme"]
    assert tags[2:] == ["solo", "^_^", "(o)_(o)"]  # by confidence; kaomoji keep their underscores
    assert "hatsune miku" not in tags_of(tagger, green, character_threshold=1.01)  # above 1: off

    blue = Image.new("RGB", (512, 512), (0, 0, 255))
    assert "cirno" in tags_of(tagger, blue)  # 0.9 >= 0.85
    assert "cirno" not in tags_of(tagger, blue, character_threshold=0.95)

    low = tags_of(tagger, blue, tag_threshold=0.1)
    assert "lowres" in low and "cat" not in low
    assert not {"general", "sensitive"} & set(tags_of(tagger, blue))  # ratings off by default
    rated = tags_of(tagger, blue, include_rating=True)
    assert "general" in rated and "sensitive" not in rated  # only the most likely rating


def test_batches_equal_single_images(tagger):
    imgs = [Image.new("RGB", (300 + 50 * i, 400), c) for i, c in enumerate([(255, 0, 0), (0, 255, 0), (9, 9, 9)])]
    batch = np.stack([tagger.preprocess(i) for i in imgs])
    np.testing.assert_allclose(tagger.predict(batch), np.concatenate([tagger.predict(b[None]) for b in batch]))


def test_model_resolution_and_errors(tmp_path, tiny_tagger):
    assert resolve_tagger("tiny-wd14") == tiny_tagger
    assert resolve_tagger(str(tiny_tagger / "model.onnx")) == tiny_tagger
    assert load_tagger("tiny-wd14") is load_tagger(str(tiny_tagger))  # loaded once
    with pytest.raises(ColabkitError, match="Unknown tagger_model"):
        resolve_tagger("not a model")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_tagger / "model.onnx", broken / "model.onnx")
    with pytest.raises(ColabkitError, match="selected_tags.csv"):
        resolve_tagger(str(broken))
    (broken / "selected_tags.csv").write_text("tag_id,name,category,count\n1,solo,0,5\n")
    with pytest.raises(ColabkitError, match="different taggers"):
        WD14Tagger(broken)


def test_hub_download_failure_is_a_user_error(monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise OSError("no internet")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ColabkitError, match="SmilingWolf/wd-vit-tagger-v3"):
        resolve_tagger("wd-vit-tagger-v3")
