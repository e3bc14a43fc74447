"""Cut-out quality on sheets made to look like real generations (tests/assets/sheets.py), as a table.

    export PYTHONPATH=$PWD; python benchmarks/bench_cutout.py [--sizes 1024 2048] [--shadows soft]

Works on this checkout's colabkit and on an older one (put its folder first in PYTHONPATH): the figures
before and after a change come from the same sheets. Columns:

- sprites: sprites found / expected (9: gem, ball, 2 snowmen, donut, crate, sword, star, tree + leaf)
- shadow@255: share of drop-shadow pixels (3+ px from any prop) left fully opaque
- bg left: share of plain background pixels (3+ px from props, shadows and enclosed pockets) at alpha >= 128
- bright rim: edge pixels of the dark gem (alpha > 8) brighter than its fill + 40 in any channel
- red err: mean largest channel error of the red ball's partial-alpha edge from its pure red
- snow kept / snow(gap) kept: share of each white snowman body left opaque
- hole clear: share of the donut's hole made transparent
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "assets"))

from sheets import GEM, RED, make_sheet  # noqa: E402

from colabkit.assets import cutout  # noqa: E402
from colabkit.assets.labels import dilate  # noqa: E402


def run(rgb, shadows, close_gaps, holes):
    """(RGBA, sprite count) from whichever cut-out API this colabkit has."""
    if hasattr(cutout, "cut_sheet"):
        from colabkit.assets.config import CutoutConfig

        cfg = CutoutConfig(input_folder=".", shadows=shadows, close_gaps=close_gaps, holes=holes)
        cut = cutout.cut_sheet(rgb, cfg)
        return cut.rgba, len(cut.sprites)
    from colabkit.assets.sprites import split_sprites

    rgba = cutout.cut_out(rgb)
    return rgba, len(split_sprites(rgba, gap=8, min_area=64, margin=2))


def measure(sheet, rgba, count):
    alpha = rgba[..., 3]
    props = np.zeros(alpha.shape, bool)
    for cov in sheet.objects.values():
        props |= cov > 0
    near = dilate(props, 3)
    shadow = (sheet.shadow > 0.15) & ~near
    plain = ~near & ~dilate(sheet.shadow > 0.02, 2) & ~dilate(sheet.holes["all"], 3)
    gem_band = dilate(sheet.objects["gem"] > 0, 2) & (alpha > 8)
    bright = int((rgba[..., :3][gem_band].astype(int) > max(GEM) + 40).any(axis=1).sum())
    ball = sheet.objects["ball"]
    edge = (ball > 0.05) & (ball < 0.95) & (alpha > 25) & (alpha < 230)
    red = np.abs(rgba[..., :3][edge].astype(int) - np.array(RED)).max(axis=1).mean() if edge.any() else float("nan")

    def body(name):  # the lower body's middle, well inside the outline
        l, t = round(sheet.size * 0.03), round(sheet.size * 0.15)
        x0 = {"snowman": 0.52, "snowman_gap": 0.74}[name]
        x = round(sheet.size * x0) + l
        return (alpha[t:t + round(sheet.size * 0.06), x:x + round(sheet.size * 0.08)] == 255).mean()

    return {"sprites": f"{count}/9", "shadow@255": f"{(alpha[shadow] == 255).mean():.1%}",
            "bg left": f"{(alpha[plain] >= 128).mean():.1%}", "bright rim": str(bright), "red err": f"{red:.0f}",
            "snow kept": f"{body('snowman'):.0%}", "snow(gap) kept": f"{body('snowman_gap'):.0%}",
            "hole clear": f"{(alpha[sheet.holes['donut']] == 0).mean():.0%}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--backgrounds", nargs="+", default=["off-white", "vignette"])
    p.add_argument("--shadows", default="soft")
    p.add_argument("--close-gaps", type=float, default=12.0)
    p.add_argument("--holes", default="keep")
    args = p.parse_args(argv)
    rows = []
    for size in args.sizes:
        for bg in args.backgrounds:
            sheet = make_sheet(size, bg)
            t = time.perf_counter()
            try:
                rgba, count = run(sheet.rgb, args.shadows, args.close_gaps, args.holes)
            except Exception as e:  # an older colabkit refuses an uneven border
                rows.append({"sheet": f"{bg} {size}", "sprites": f"refused: {str(e)[:60]}"})
                continue
            rows.append({"sheet": f"{bg} {size}", **measure(sheet, rgba, count),
                         "seconds": f"{time.perf_counter() - t:.1f}"})
    cols = ["sheet", "sprites", "shadow@255", "bg left", "bright rim", "red err", "snow kept", "snow(gap) kept",
            "hole clear", "seconds"]
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(r.get(c, "").ljust(w) for c, w in zip(cols, widths)))


if __name__ == "__main__":
    main()
