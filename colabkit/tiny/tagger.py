"""A tiny WD14-style tagger: an ONNX graph whose tags are colour detectors, plus its selected_tags.csv.

Same interface as SmilingWolf's v3 taggers (NHWC float32 input named ``input`` with a dynamic batch,
BGR 0-255, one probability per CSV row), so the real loading and preprocessing code runs on it.
Unlike random weights, every tag measures something checkable about the pixels the graph sees:

* ``red_theme`` / ``green_theme`` / ``blue_theme``: how much one channel dominates the centre,
  read at BGR positions, so an RGB/BGR swap turns a red drawing into a "blue theme" one;
* ``white_border_top`` ... ``_right``: whiteness of a thin strip along each edge, so black padding,
  off-centre padding or stretching instead of padding lose them;
* ``white_background`` / ``black_background``: whiteness/darkness of the whole image, so
  transparency composited onto black instead of white shows;
* constants for ratings, kaomoji (``^_^``, ``(o)_(o)``), a below-threshold tag (``lowres``) and a
  common word (``cat``); characters ``hatsune_miku`` (green) and ``cirno`` (blue, 0.9 at most).

Pixel values are divided by 255 inside the graph, so feeding 0-1 floats gives (almost) no tags.
"""

from __future__ import annotations

import csv
import io
import os

from pathlib import Path

import numpy as np

from colabkit import files
from colabkit.tiny.cache import built_once

TINY_TAGGER_NAME = "tiny-wd14"
_VERSION = "1"  # bump when the graph or tags change, so cached folders are rebuilt
GRID = 16  # detectors are defined on a 16x16 grid of equal cells; the input is average-pooled to it
DEFAULT_SIZE = 64

B, G, R = 0, 1, 2  # channel positions in the model's BGR input

RATING, GENERAL, CHARACTER = 9, 0, 4

# (name, category, detector); detector = ("const", p) | (kind, region[, channel, scale]).
# Regions are (row0, row1, col0, col1) in grid cells.
_WHOLE = (0, GRID, 0, GRID)
_CENTRE = (GRID // 4, 3 * GRID // 4, GRID // 4, 3 * GRID // 4)
_STRIP = GRID // 8
TAGS = [
    ("general", RATING, ("const", 0.80)),
    ("sensitive", RATING, ("const", 0.15)),
    ("questionable", RATING, ("const", 0.03)),
    ("explicit", RATING, ("const", 0.01)),
    ("white_background", GENERAL, ("white", _WHOLE)),
    ("black_background", GENERAL, ("dark", _WHOLE)),
    ("red_theme", GENERAL, ("colour", _CENTRE, R, 1.0)),
    ("green_theme", GENERAL, ("colour", _CENTRE, G, 1.0)),
    ("blue_theme", GENERAL, ("colour", _CENTRE, B, 1.0)),
    ("white_border_top", GENERAL, ("white", (0, _STRIP, 0, GRID))),
    ("white_border_bottom", GENERAL, ("white", (GRID - _STRIP, GRID, 0, GRID))),
    ("white_border_left", GENERAL, ("white", (0, GRID, 0, _STRIP))),
    ("white_border_right", GENERAL, ("white", (0, GRID, GRID - _STRIP, GRID))),
    ("solo", GENERAL, ("const", 0.60)),
    ("^_^", GENERAL, ("const", 0.50)),
    ("(o)_(o)", GENERAL, ("const", 0.45)),
    ("lowres", GENERAL, ("const", 0.20)),
    ("cat", GENERAL, ("const", 0.05)),
    ("hatsune_miku", CHARACTER, ("colour", _CENTRE, G, 1.0)),
    ("cirno", CHARACTER, ("colour", _CENTRE, B, 0.9)),
]

def _detector_weights(spec) -> tuple[np.ndarray, float]:
    """Weights over the pooled [GRID, GRID, 3] BGR grid (0-255 values) and a bias for one tag."""
    w = np.zeros((GRID, GRID, 3), dtype=np.float64)
    kind = spec[0]
    if kind == "const":
        return w.reshape(-1), float(spec[1])
    r0, r1, c0, c1 = spec[1]
    n = (r1 - r0) * (c1 - c0) * 255.0  # weights average the region and map 0-255 to 0-1
    if kind == "white":  # 3*mean - 2: 1 for white, 0 already at light grey, clipped below
        w[r0:r1, c0:c1, :] = 1.0 / n
        return w.reshape(-1), -2.0
    if kind == "dark":  # 1 - 3*mean: 1 for black, 0 from a third of full brightness up
        w[r0:r1, c0:c1, :] = -1.0 / n
        return w.reshape(-1), 1.0
    if kind == "colour":  # channel mean minus the mean of the other two: 1 only for the pure colour
        _, _, ch, scale = spec
        w[r0:r1, c0:c1, :] = -0.5 * scale / n
        w[r0:r1, c0:c1, ch] = scale / n
        return w.reshape(-1), 0.0
    raise ValueError(kind)

def expected_probs(bgr: np.ndarray) -> np.ndarray:
    """What the graph outputs for one [S, S, 3] BGR 0-255 array (the same maths in numpy, for tests)."""
    s = bgr.shape[0]
    k = s // GRID
    pooled = bgr.reshape(GRID, k, GRID, k, 3).mean(axis=(1, 3)).reshape(-1)
    out = []
    for _, _, spec in TAGS:
        w, b = _detector_weights(spec)
        out.append(float(pooled @ w + b))
    return np.clip(np.array(out), 0.0, 1.0)

def build_tiny_tagger(folder: str | os.PathLike, size: int = DEFAULT_SIZE, work: int = 0) -> Path:
    """Write ``model.onnx`` + ``selected_tags.csv`` into ``folder`` and return it.

    ``size`` (a multiple of 16) is the square input size stored in the graph. ``work`` adds that many
    3x3 conv layers whose result is multiplied by zero: same tags, but a model that costs real compute,
    so the benchmark can measure loader overhead against a model that is not instantaneous.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if size % GRID:
        raise ValueError(f"size must be a multiple of {GRID}")
    folder = Path(folder)
    n_tags = len(TAGS)
    cols = [_detector_weights(spec) for _, _, spec in TAGS]
    weight = np.stack([c[0] for c in cols], axis=1).astype(np.float32)  # [GRID*GRID*3, n_tags]
    bias = np.array([c[1] for c in cols], dtype=np.float32)
    k = size // GRID

    inits = [
        numpy_helper.from_array(weight, "detector_w"),
        numpy_helper.from_array(bias, "detector_b"),
        numpy_helper.from_array(np.array([-1, GRID * GRID * 3], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        # Average-pool to the grid: region means are unchanged, whatever the input size.
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Transpose", ["pooled"], ["pooled_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["pooled_nhwc", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "detector_w"], ["scores"]),
        helper.make_node("Add", ["scores", "detector_b"], ["logits"]),
    ]
    last = "logits"
    if work > 0:
        rng = np.random.default_rng(0)
        channels, prev = 16, "nchw"
        for i in range(work):
            cin = 3 if i == 0 else channels
            inits += [
                numpy_helper.from_array((rng.standard_normal((channels, cin, 3, 3)) * 0.05).astype(np.float32), f"conv{i}_w"),
            ]
            nodes += [
                helper.make_node("Conv", [prev, f"conv{i}_w"], [f"conv{i}"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]),
            ]
            prev = f"relu{i}"
        nodes += [
            helper.make_node("ReduceMean", [prev], ["work_mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["work_mean", "unsq_axes"], ["work_col"]),
            helper.make_node("Mul", ["work_col", "zero"], ["work_zero"]),
            helper.make_node("Add", ["logits", "work_zero"], ["logits_w"]),
        ]
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "unsq_axes"))
        last = "logits_w"
    nodes.append(helper.make_node("Clip", [last, "zero", "one"], ["output"]))  # already probabilities

    graph = helper.make_graph(
        nodes,
        "tiny_wd14",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_tags])],
        initializer=inits,
    )
    # opset 17 keeps ReduceMean's axes as an attribute and runs on every onnxruntime >= 1.14.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="colabkit")
    model.ir_version = 8
    onnx.checker.check_model(model)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["tag_id", "name", "category", "count"])
    for i, (name, cat, _) in enumerate(TAGS):
        writer.writerow([1000 + i, name, cat, 100 * (n_tags - i)])
    files.write_bytes(folder / "model.onnx", model.SerializeToString())
    files.write_text(folder / "selected_tags.csv", buf.getvalue())
    return folder

def tiny_tagger_path() -> Path:
    """The built-in ``tiny-wd14`` folder (64 px input), built on first use and reused after."""
    return built_once("tiny-wd14", _VERSION, build_tiny_tagger)
