"""Real-shape memory check on the CPU: one LoRA training step of SDXL base 1.0's UNet (random weights, real
shapes, built here: no download) at 1024 px, batch 1, gradient checkpointing, bf16 as the stand-in for fp16,
with the peak memory growth during the step next to the memory plan's activation estimate
(colabkit/train/memory.py).

Memory is the process's RSS, sampled every 20 ms by a thread (torch's CPU allocations are invisible to
tracemalloc); growth = peak RSS during the step - RSS just before it (weights, LoRA and inputs already there).
The plan's "activations" part is for the GPU (fp16 activations, its attention kernels); on the CPU, PyTorch's
SDPA math path and oneDNN's reorders differ, so expect the same order of magnitude, not the same number.

    python benchmarks/bench_real_shape_memory.py [--resolution 1024] [--rank 16]

Needs about 5 GB for the bf16 UNet plus the step's activations: check `free -g` first. Slow on a CPU (a 1024 px
step of the real UNet is ~20 TFLOP): minutes to tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 2**30


class RssPeak:
    def __init__(self, every_s: float = 0.02):
        import psutil

        self.proc, self.every, self.peak, self._stop = psutil.Process(), every_s, 0, threading.Event()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def __enter__(self):
        self.peak = self.rss()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args(argv)

    import torch
    from diffusers import UNet2DConditionModel

    from colabkit.train import lora, memory
    from colabkit.train.models.load import SDXL_CONFIGS

    config = json.loads((SDXL_CONFIGS / "unet" / "config.json").read_text())
    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    unet = UNet2DConditionModel.from_config(config)
    torch.set_default_dtype(torch.float32)
    unet.requires_grad_(False)
    lora.add_lora(unet, lora.unet_targets(unet, "LoRA"), args.rank, args.rank // 2)
    for p_ in lora.lora_parameters(unet):
        p_.data = p_.data.float()  # as the loop does: LoRA weights train in fp32
    unet.enable_gradient_checkpointing()
    unet.train()
    build_s = time.perf_counter() - t0
    latent = args.resolution // 8
    x = torch.randn(1, 4, latent, latent, dtype=torch.bfloat16)
    emb = torch.randn(1, 77, 2048, dtype=torch.bfloat16)
    pooled = torch.randn(1, 1280, dtype=torch.bfloat16)
    ids = torch.tensor([[args.resolution] * 2 + [0, 0] + [args.resolution] * 2], dtype=torch.bfloat16)
    t = torch.tensor([500])

    with RssPeak() as mon:
        before = mon.rss()
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = unet(x, t, emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        loss = (pred.float() - x.float()).pow(2).mean()
        loss.backward()
        step_s = time.perf_counter() - t1
    growth = (mon.peak - before) / GIB
    plan = memory.estimate_vram(resolution=args.resolution, batch_size=1, network_dim=args.rank,
                                mixed_precision="bf16", gradient_checkpointing=True, sample_images=False)
    est = plan.parts["activations"]
    print(json.dumps({
        "resolution": args.resolution, "rank": args.rank, "build_s": round(build_s, 1), "step_s": round(step_s, 1),
        "rss_before_step_gb": round(before / GIB, 2), "peak_growth_gb": round(growth, 2),
        "plan_activations_gb": est, "plan_allocator_overhead_gb": plan.parts["allocator overhead"],
        "growth_over_plan_activations": round(growth / est, 2) if est else None,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
