"""The matting-model path of the cut-out, pinned exactly: preprocessing, output handling, messages, edge colours.

A tiny ONNX "model" whose output is one normalised input channel (or their mean) makes the alpha an exact,
computable function of the preprocessing (side, ImageNet mean/std, isnet's std 1, BiRefNet's sigmoid of
logits, isnet's min-max stretch, resize back), so a wrong constant or a skipped step changes the pixels.
"""

import io
import sys

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from colabkit.assets import cutout
from colabkit.assets.cutout import _MODELS, cut_out, key_background, model_alpha, nearest_colour, png_bytes, \
    unmix_alpha
from colabkit.errors import ColabkitError

from sheets import make_sheet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406])  # ImageNet's, as both models were trained
STD = np.array([0.229, 0.224, 0.225])


def save_model(path, nodes, in_shape, out_shape, inits=()):
    graph = helper.make_graph(nodes, "matte", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def channel_model(path, c, in_shape=(1, 3, 32, 32), clip=False):
    """Output: input channel ``c`` as an HxW map (2-D, as some exports squeeze it), optionally clipped to [0, 1]."""
    nodes = [helper.make_node("Gather", ["input", "c"], ["g"], axis=1),
             helper.make_node("Gather", ["g", "zero"], ["map"], axis=0)]
    inits = [helper.make_tensor("c", TensorProto.INT64, [], [c]), helper.make_tensor("zero", TensorProto.INT64, [], [0])]
    if clip:
        nodes.append(helper.make_node("Clip", ["map", "lo", "hi"], ["output"]))
        inits += [helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])]
    else:
        nodes[-1].output[0] = "output"
    return save_model(path, nodes, list(in_shape), [in_shape[2], in_shape[3]], inits)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def birefnet_alpha(values, c):
    """The documented rule for a BiRefNet-style map: normalised channel; a sigmoid when it leaves [0, 1]."""
    x = (np.asarray(values, np.float64) / 255.0 - MEAN[c]) / STD[c]
    p = sigmoid(x) if (x.min() < 0 or x.max() > 1) else x
    return np.round(np.clip(p, 0, 1) * 255)


def test_birefnet_input_is_normalised_with_imagenet_mean_and_std_and_logits_go_through_a_sigmoid(tmp_path):
    colour = (30, 200, 120)  # channel 0: a negative logit, 1: a logit above 1, 2: already in [0, 1]
    im = np.tile(np.array(colour, np.uint8), (32, 32, 1))  # same size as the model's side: no resize blur
    got = []
    for c in range(3):
        path = channel_model(tmp_path / f"BiRefNet-c{c}.onnx", c)
        alpha = model_alpha(im, path)
        assert alpha.dtype == np.uint8 and alpha.shape == (32, 32)
        got.append(int(alpha[0, 0]))
        assert (alpha == alpha[0, 0]).all()
    expected = [int(birefnet_alpha([colour[c]], c)[0]) for c in range(3)]
    assert got == expected == [43, 207, 73]


def test_a_model_that_already_gives_probabilities_is_not_put_through_a_sigmoid(tmp_path):
    # Clip(channel 2, 0, 1): exact zeros and ones with values between; the map is used as it is.
    path = channel_model(tmp_path / "BiRefNet-prob.onnx", 2, clip=True)
    v = np.linspace(60, 200, 32 * 32).reshape(32, 32)
    im = np.repeat(np.round(v).astype(np.uint8)[..., None], 3, axis=2)
    x = (np.round(v) / 255.0 - MEAN[2]) / STD[2]
    assert x.min() < 0 and x.max() > 1
    expected = np.round(np.clip(x, 0, 1) * 255)
    assert np.abs(model_alpha(im, path).astype(float) - expected).max() <= 0


def test_isnet_uses_std_one_and_stretches_its_map_to_the_full_range(tmp_path):
    path = save_model(tmp_path / "isnet-anime.onnx", [helper.make_node("ReduceMean", ["input"], ["output"], axes=[1],
                                                                       keepdims=1)],
                      [1, 3, 32, 32], [1, 1, 32, 32])
    rng = np.random.default_rng(3)
    im = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    m = (im / 255.0 - MEAN).mean(axis=2)  # std 1: the channels keep their weights
    expected = np.round((m - m.min()) / (m.max() - m.min()) * 255)
    got = model_alpha(im, path)
    assert got.min() == 0 and got.max() == 255
    assert np.abs(got.astype(float) - expected).max() <= 0


def _resized_reference(im, side, c):
    x = np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR), dtype=np.float32)
    a = birefnet_alpha(x[..., c], c).astype(np.uint8)
    return np.asarray(Image.fromarray(a).resize((im.shape[1], im.shape[0]), Image.BILINEAR))


@pytest.mark.parametrize("in_shape, side", [((1, 3, 32, "w"), 32),  # the side is the input's height
                                            ((1, 3, "h", "w"), 1024)])  # dynamic: 1024, BiRefNet's
def test_the_picture_is_resized_bilinear_to_the_models_side_and_its_map_back(tmp_path, in_shape, side):
    path = channel_model(tmp_path / "BiRefNet.onnx", 2, in_shape=in_shape)
    y, x = np.mgrid[0:40, 0:56]
    im = np.zeros((40, 56, 3), np.uint8)
    im[..., 2] = np.where((x // 7 + y // 5) % 2, 90, 170)  # hard edges: any other filter or side shows
    got = model_alpha(im, path)
    assert got.shape == (40, 56)
    assert np.array_equal(got, _resized_reference(im, side, 2))
    assert not np.array_equal(got, _resized_reference(im, side + 1, 2))  # the side is seen in the result


def test_model_errors_name_the_file_and_the_fix(tmp_path, monkeypatch):
    im = np.zeros((8, 8, 3), np.uint8)
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ColabkitError) as e:
        model_alpha(im, str(missing))
    assert str(e.value) == (f"model_file {missing} does not exist. Put BiRefNet (MIT, e.g. "
                            "BiRefNet-general-epoch_244.onnx) or isnet-anime (Apache-2.0, isnet-anime.onnx) there, "
                            "or leave model_file empty to use the flood fill (no model needed).")
    # not an ONNX file, under a long folder so onnxruntime's message (which names the path) is cut at 200
    folder = tmp_path / ("d" * 120) / ("e" * 100)
    folder.mkdir(parents=True)
    bad = folder / "BiRefNet-general.onnx"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(Exception) as raw:
        ort.InferenceSession(str(bad), providers=["CPUExecutionProvider"])
    first = str(raw.value).splitlines()[0]
    assert len(first) > 200
    with pytest.raises(ColabkitError) as e:
        model_alpha(im, bad)
    assert str(e.value) == f"BiRefNet-general.onnx is not a usable ONNX model ({first[:200]}). Use {_MODELS}."
    assert _MODELS == ("BiRefNet (MIT, e.g. BiRefNet-general-epoch_244.onnx) or isnet-anime (Apache-2.0, "
                       "isnet-anime.onnx)")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(ColabkitError) as e:
        model_alpha(im, bad)
    assert str(e.value) == ("model_file needs onnxruntime: pip install onnxruntime (or leave model_file empty to use "
                            "the flood fill).")


def test_the_model_runs_on_the_cpu_provider(tmp_path, monkeypatch):
    # onnxruntime-gpu refuses a session without explicit providers, and a misspelt one falls back silently
    seen = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):
        seen.append(kwargs.get("providers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    model_alpha(np.zeros((32, 32, 3), np.uint8), channel_model(tmp_path / "BiRefNet.onnx", 0))
    assert seen == [["CPUExecutionProvider"]]


# -- the edge colours under a model's alpha ---------------------------------------------------------------------

PAPER = 200.0


def probe(pixel, a_byte, opaque=(), size=24, band=2):
    """Grey paper (alpha 0), one soft pixel at the centre, opaque pixels at (dy, dx) offsets: the centre's colour."""
    rgb = np.full((size, size, 3), PAPER)
    alpha = np.zeros((size, size), np.uint8)
    c = size // 2
    rgb[c, c], alpha[c, c] = pixel, a_byte
    for dy, dx, colour, a in opaque:
        rgb[c + dy, c + dx], alpha[c + dy, c + dx] = colour, a
    rgb = rgb.astype(np.uint8)
    out = unmix_alpha(rgb, alpha, band)
    others = np.ones((size, size), bool)
    others[c, c] = False
    assert np.array_equal(out[others], rgb[others])  # only the soft pixel changes
    return out[c, c].astype(float)


def solved(pixel, a):
    return PAPER + (np.asarray(pixel, float) - PAPER) / a


def test_the_edge_colour_rule_at_its_thresholds():
    red, green = (10, 200, 30), (240, 20, 90)
    # alpha 1 is still soft: below 0.4 it takes the nearest opaque colour alone
    assert probe((90, 90, 90), 1, [(0, 1, red, 255)]).tolist() == list(red)
    # alpha 250 is opaque: kept as it is (and is itself the nearest opaque colour)
    assert probe((100, 150, 180), 250).tolist() == [100, 150, 180]
    # an alpha-250 neighbour counts as opaque: nearer than the alpha-255 one
    assert probe((90, 90, 90), 77, [(0, 1, red, 250), (0, 3, green, 255)]).tolist() == list(red)
    # nothing opaque within 2 * band + 2 = 6 px: the solved colour, clipped to 0-255 (one at 7 px is not used)
    a = 77 / 255
    expected = np.clip(np.round(solved((40, 250, 120), a)), 0, 255)
    assert expected.tolist()[:2] == [0, 255]
    assert probe((40, 250, 120), 77, [(0, 7, green, 255)]).tolist() == expected.tolist()
    assert probe((40, 250, 120), 77, [(7, 7, green, 255)]).tolist() == expected.tolist()
    # ... and one at 6 px is
    assert probe((40, 250, 120), 77, [(6, -6, green, 255)]).tolist() == list(green)


def test_the_edge_colour_mix_is_clipped_not_wrapped():
    # lighter than the paper: solved 300, mixed with white above 255 -> 255 (not 7 or 0)
    assert probe((250, 250, 250), 128, [(0, 1, (255, 255, 255), 255)]).tolist() == [255, 255, 255]
    # darker than the paper could make: a negative mix -> 0 (not 1)
    assert probe((0, 0, 0), 128, [(0, 1, (0, 0, 0), 255)]).tolist() == [0, 0, 0]


def test_a_nearly_opaque_edge_pixel_is_solved_at_its_exact_alpha():
    a = 249 / 255
    t = (a - 0.4) / 0.6
    pixel = (5, 100, 190)
    expected = 255 * (1 - t) + solved(pixel, a) * t  # the nearest opaque pixel: white, 1 px away
    got = probe(pixel, 249, [(0, 1, (255, 255, 255), 255)])
    assert np.abs(got - np.round(expected)).max() == 0, (got, expected)
    assert np.abs(expected - np.round(expected)).max() < 0.35  # not a rounding tie


def test_the_background_is_fitted_only_from_64_or_more_clear_pixels():
    def picture(clear_alphas):
        rgb = np.full((12, 12, 3), 60, np.uint8)  # an opaque sprite ...
        alpha = np.full((12, 12), 255, np.uint8)
        for i, a in enumerate(clear_alphas):  # ... with paper pixels (alpha < 16) in its first rows
            rgb[i // 12, i % 12], alpha[i // 12, i % 12] = PAPER, a
        rgb[10, 5], alpha[10, 5] = (130, 130, 130), 77  # a soft pixel, opaque all round
        return rgb, alpha

    rgb, alpha = picture([0] * 64)
    assert unmix_alpha(rgb, alpha, 2)[10, 5].tolist() == [60, 60, 60]
    rgb, alpha = picture([0] * 63 + [16])  # alpha 16 is not clear: too few to fit, left as it is
    assert np.array_equal(unmix_alpha(rgb, alpha, 2), rgb)


def test_nearest_colour_is_the_nearest_known_pixel_in_the_window():
    rng = np.random.default_rng(0)
    h, w, radius = 11, 13, 2
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    known = rng.random((h, w)) < 0.12
    assert known[0].any() and known[-1].any() and known[:, 0].any() and known[:, -1].any()  # the edges are reached
    ys, xs = np.nonzero(np.ones((h, w), bool))
    out, found = nearest_colour(rgb, known, ys, xs, radius)
    for i, (y, x) in enumerate(zip(ys, xs)):
        cands = [(dy * dy + dx * dx, (dy, dx)) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                 if 0 <= y + dy < h and 0 <= x + dx < w and known[y + dy, x + dx]]
        assert found[i] == bool(cands)
        if cands:
            dy, dx = min(cands)[1]
            assert out[i].tolist() == rgb[y + dy, x + dx].tolist(), (y, x)
    assert found.sum() > 50 and (~found).sum() > 5
    # ties at the same distance: up before down, left before right
    known = np.zeros((5, 5), bool)
    known[1, 2] = known[3, 2] = True
    assert nearest_colour(rgb, known, np.array([2]), np.array([2]), 1)[0][0].tolist() == rgb[1, 2].tolist()
    known = np.zeros((5, 5), bool)
    known[2, 1] = known[2, 3] = True
    assert nearest_colour(rgb, known, np.array([2]), np.array([2]), 1)[0][0].tolist() == rgb[2, 1].tolist()


# -- cut_out: what it passes on ----------------------------------------------------------------------------------

def test_cut_out_without_a_model_is_the_keyed_background_with_its_settings():
    rgb = make_sheet(128, "vignette", quality=80, seed=2).rgb
    base = cut_out(rgb)
    assert np.array_equal(base, key_background(rgb, 24, 48))
    others = {"tolerance": key_background(rgb, 25, 48), "softness": key_background(rgb, 24, 49)}
    assert all(not np.array_equal(base, o) for o in others.values())  # the defaults are seen
    assert np.array_equal(cut_out(rgb, 40, 80, shadows="remove"), key_background(rgb, 40, 80, shadows="remove"))
    assert not np.array_equal(key_background(rgb, 40, 80, shadows="remove"), key_background(rgb, 40, 80))
    assert not np.array_equal(key_background(rgb, 40, 80), key_background(rgb, 24, 80))
    assert not np.array_equal(key_background(rgb, 40, 80), key_background(rgb, 40, 48))
    rgba_in = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])  # an RGBA picture: its alpha is ignored
    assert np.array_equal(cut_out(rgba_in), base)
    assert np.array_equal(cut_out(rgb.astype(np.int64)), base)


@pytest.mark.parametrize("side, band", [(64, 2), (1024, 2), (1536, 3), (2048, 4)])
def test_cut_out_with_a_model_unmixes_over_a_band_that_scales_with_the_picture(monkeypatch, side, band):
    seen = {}
    alpha = np.zeros((side, side // 2), np.uint8)
    alpha[::3] = 255

    def fake_model(rgb, model_file):
        seen["model"] = (rgb.shape, rgb.dtype, model_file)
        return alpha

    def fake_unmix(rgb, a, b):
        seen["band"] = b
        return rgb + 1

    monkeypatch.setattr(cutout, "model_alpha", fake_model)
    monkeypatch.setattr(cutout, "unmix_alpha", fake_unmix)
    rgb = np.zeros((side, side // 2, 4), np.int32)  # RGBA, and not uint8: the model gets the RGB as uint8
    out = cut_out(rgb, model_file="m.onnx")
    assert seen == {"model": ((side, side // 2, 3), np.uint8, "m.onnx"), "band": band}
    assert np.array_equal(out, np.dstack([np.ones((side, side // 2, 3), np.uint8), alpha]))


def test_png_bytes_keep_their_text_chunks():
    info = PngImagePlugin.PngInfo()
    info.add_text("atlas", '{"frames": 3}')
    data = png_bytes(Image.new("RGBA", (4, 3), (1, 2, 3, 4)), info)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(data))
    assert im.text == {"atlas": '{"frames": 3}'} and im.getpixel((0, 0)) == (1, 2, 3, 4)
