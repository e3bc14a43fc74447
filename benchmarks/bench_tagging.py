"""Tagging throughput: images/s and the share of time spent outside the ONNX session.

Tags a synthetic folder of N drawings through the real ``tag_dataset`` (background prefetch,
batching, caption writes) with tiny WD14-style taggers, and prints measured numbers only:

* ``tiny``: the plain tiny tagger, whose model call is nearly free, so this row shows the raw
  pipeline cost per image (decode + preprocess + write) rather than a meaningful overhead share;
* ``tiny+work``: the same tags from a graph with extra conv layers at the real 448 px input, so the
  model costs real time and the overhead share says how well loading hides behind it (target < 15%).

Also prints the loader alone (decode + preprocess on one thread) and the model alone, so the
overhead for a real tagger can be judged from its own per-image time.

    python benchmarks/bench_tagging.py [--images 48] [--image-size 1024] [--work 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--image-size", type=int, default=1024, help="synthetic drawing size (square)")
    ap.add_argument("--format", default="mixed", choices=["png", "jpg", "mixed"])
    ap.add_argument("--input-size", type=int, default=448, help="tagger input size for the tiny+work model")
    ap.add_argument("--work", type=int, default=3, help="extra conv layers in the tiny+work model")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None, help="loader threads (default: min(4, CPUs))")
    args = ap.parse_args()

    import numpy as np

    from colabkit.dataset.loader import default_workers
    from colabkit.dataset.pipeline import check_dataset, tag_dataset
    from colabkit.dataset.wd14 import WD14Tagger, onnx_providers
    from colabkit.project import Project
    from colabkit.tiny.drawings import make_image_folder
    from colabkit.tiny.tagger import build_tiny_tagger

    with tempfile.TemporaryDirectory(prefix="colabkit-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["COLABKIT_DRIVE_ROOT"] = str(tmp / "drive")
        project = Project.at("bench").create()
        t = time.perf_counter()
        paths = make_image_folder(project.dataset, args.images, size=(args.image_size, args.image_size), fmt=args.format)
        print(f"{args.images} synthetic {args.image_size}px drawings ({args.format}) in {time.perf_counter() - t:.1f} s; "
              f"{os.cpu_count()} CPUs, providers {onnx_providers()}, loader threads {args.workers or default_workers()}")

        t = time.perf_counter()
        report = check_dataset("bench", progress=False)
        print(f"check: {len(report.accepted)} accepted in {time.perf_counter() - t:.2f} s (every file fully decoded)\n")

        models = {
            "tiny": build_tiny_tagger(tmp / "tiny"),
            "tiny+work": build_tiny_tagger(tmp / "tiny_work", size=args.input_size, work=args.work),
        }
        header = f"{'model':<10} {'input':>5} {'loader ms/img':>13} {'model ms/img':>12} {'pipeline img/s':>14} {'outside ONNX':>12}"
        print(header)
        print("-" * len(header))
        for name, folder in models.items():
            tagger = WD14Tagger(folder)
            # Loader alone, one thread: what each image costs to decode and preprocess.
            sample = paths[: min(16, len(paths))]
            t = time.perf_counter()
            arrays = [tagger.load(p) for p in sample]
            loader_ms = 1000 * (time.perf_counter() - t) / len(sample)
            # Model alone, on already-preprocessed batches (one warm-up call first).
            batch = np.stack((arrays * args.batch_size)[: args.batch_size])
            tagger.predict(batch)
            t = time.perf_counter()
            reps = 3
            for _ in range(reps):
                tagger.predict(batch)
            model_ms = 1000 * (time.perf_counter() - t) / (reps * len(batch))
            # The real pipeline (fresh captions every run).
            tag_dataset("bench", tagger_model=str(folder), activation_tag="bench", overwrite_captions=True,
                        batch_size=args.batch_size, workers=args.workers, progress=False)  # warm-up: session, caches
            r = tag_dataset("bench", tagger_model=str(folder), activation_tag="bench", overwrite_captions=True,
                            batch_size=args.batch_size, workers=args.workers, progress=False)
            print(f"{name:<10} {tagger.input_size:>5} {loader_ms:>13.1f} {model_ms:>12.1f} {r.images_per_second:>14.1f} "
                  f"{r.overhead_share:>12.0%}")
        print("\n'outside ONNX' = 1 - (time inside session.run) / (streaming time), measured in tag_dataset;"
              " loader and model columns are single-thread / single-call timings.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
