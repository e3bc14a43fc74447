"""Epoch-end previews of 3 prompts on tiny-sdxl: one pipeline call per prompt (before) vs one batched call (now).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_previews.py

"before" calls ``sample.render`` once per prompt, which is the work the old per-prompt loop did (encode prompt
and negative, sample, decode); "now" is one ``render`` call with the 3 prompts. Same seeds, same images (see
tests/train/test_sample.py). Prints the median of 5 alternating runs of each and their ratio, at two sizes.
"""
import statistics
import time

import torch

from colabkit.train.models import load_sdxl, resolve_base_model
from colabkit.train.sample import preview_pipeline, render

parts = load_sdxl(resolve_base_model("tiny-sdxl"), dtype=torch.float32)
pipe = preview_pipeline(parts, parts.unet, "epsilon", False)
prompts = ["houtline, outline, circle", "houtline, magic tree, outline", "houtline, simple background"]


def one_by_one(res, steps):
    return [render(pipe, [p], res, steps, 7 + i, "cpu", zero_terminal_snr=False)[0] for i, p in enumerate(prompts)]


def batched(res, steps):
    return render(pipe, prompts, res, steps, 7, "cpu", zero_terminal_snr=False)


for res, steps in ((64, 2), (128, 8)):
    times = {"before": [], "now": []}
    batched(res, steps)  # warm-up
    for _ in range(5):
        for name, fn in (("before", one_by_one), ("now", batched)):
            t = time.perf_counter()
            fn(res, steps)
            times[name].append(time.perf_counter() - t)
    b, n = statistics.median(times["before"]), statistics.median(times["now"])
    print(f"{res} px, {steps} steps, 3 prompts: before {b:.3f} s, now {n:.3f} s, before/now {b / n:.2f}", flush=True)
