"""What one training step of the bench_vs_diffusers job costs, part by part, on the CPU.

Builds the same small SDXL-topology UNet as ``bench_vs_diffusers.py`` (widths 64/128/256), 256 px, batch 2,
LoRA rank 8, AdamW, fp32, and times forward + backward + optimizer step in variants, interleaved (A B C A B C
...) so a shared machine's noise falls on all of them alike; prints medians in ms:

* ``targets``: colabkit's LoRA targets (sd-scripts': attention, feed-forward, proj_in/out of every
  transformer block) against the diffusers example's (to_q/to_k/to_v/to_out.0 only);
* ``checkpointing``: gradient checkpointing on / off;
* ``threads``: torch intra-op threads;
* ``torch.profiler``: with ``--profile``, the operator table of a few steps of the first variant.

    python benchmarks/profile_step.py [--steps 8] [--threads 1 2] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make(model_dir: Path, targets: str, checkpointing: bool):
    import torch
    from diffusers import UNet2DConditionModel

    from colabkit.train import lora

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    unet.requires_grad_(False)
    torch.manual_seed(0)
    if targets == "colabkit":
        names = lora.unet_targets(unet, "LoRA")
        lora.add_lora(unet, names, 8, 8)
    else:
        from peft import LoraConfig

        unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        names = [n for n, m in unet.named_modules() if hasattr(m, "lora_A")]
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    cfg = unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    emb = torch.randn(2, 77, cfg.cross_attention_dim, generator=g)
    pooled = torch.randn(2, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[256, 256, 0, 0, 256, 256]] * 2, dtype=torch.float32)

    def step():
        pred = unet(x, t, emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        loss = (pred.float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, len(names), sum(p.numel() for p in params)


def main(argv=None) -> int:
    import torch

    from bench_vs_diffusers import build_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    p.add_argument("--variants", nargs="+", default=["colabkit+gc", "colabkit", "example", "example+gc"])
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    model = build_model(Path(tempfile.gettempdir()) / "colabkit-bench-model")
    runs = {}
    for v in args.variants:
        step, n, size = make(model, v.split("+")[0], v.endswith("+gc"))
        step()  # warm-up
        runs[v] = step
        print(f"{v}: {n} LoRA layers, {size / 1e3:.0f} k trainable parameters")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        v = args.variants[0]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                runs[v]()
        print(f"torch.profiler, 3 steps of {v}, self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    times = {(v, th): [] for v in runs for th in args.threads}
    for _ in range(args.steps):
        for th in args.threads:
            torch.set_num_threads(th)
            for v, step in runs.items():
                t0 = time.perf_counter()
                step()
                times[(v, th)].append(time.perf_counter() - t0)
    print("| variant | threads | median ms | min ms |\n|---|---|---|---|")
    for (v, th), ts in times.items():
        print(f"| {v} | {th} | {1e3 * statistics.median(ts):.0f} | {1e3 * min(ts):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
