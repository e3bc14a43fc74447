"""Training-step overhead: colabkit's real training loop against a bare step of the same UNet and LoRA.

Runs, in one process and on the same model:

* ``bare``: ``unet(noisy, t, embeds, added_cond_kwargs).sample.float().pow(2).mean().backward(); opt.step();
  opt.zero_grad()`` on random tensors of the batch's exact shapes, with the same LoRA (targets, rank, seed), the
  same optimizer, precision and gradient checkpointing as the loop. Timed before, between and after the loop
  runs, so noise from a shared machine shows as differences between the three.
* ``loop``: the real ``colabkit.train.loop.train`` on a synthetic project (square drawings, one bucket, so every
  batch has the bare step's shape), twice: tags shuffled (the default: both text encoders run every step) and
  tags fixed (text embeddings cached). Per-step times come from the loop itself, through a Budget subclass
  (``record_step``: the loop's own step timer, data to ``zero_grad``) and a Reporter subclass (the wall time
  between two ``Reporter.step`` calls: everything a step costs, bookkeeping included). Intervals that contain
  a state save are left out of the step figures and reported apart, as the state-save time.

The ratio loop / bare is the loop's overhead: batch assembly, caption handling (and text encoding when tags
are shuffled), noise sampling, min-SNR weights, loss.item(), gradient clipping, scheduler, budget bookkeeping.
The first ``--warmup`` steps of every series are left out.

    python benchmarks/bench_train_step.py [--resolution 64] [--steps 30] [--device cpu] [--batch-size 2]
    python benchmarks/bench_train_step.py --threads 1 --steps 60    # on CPUs shared with another job
    python benchmarks/bench_train_step.py --base-model /path/to/sdxl.safetensors --device cuda --resolution 1024
    python benchmarks/bench_train_step.py --real [--resolution 1024]   # random-weight real SDXL UNet, needs CUDA

``--real`` builds the real SDXL UNet (2.6 B parameters, from colabkit/configs/sdxl-base-1.0) with random weights
on the GPU and times the bare step only (no checkpoint file is needed; the loop needs one: use --base-model),
with the peak memory beside colabkit's VRAM estimate for the same settings. Without CUDA it is skipped.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SDXL_CONFIGS = Path(__file__).resolve().parents[1] / "colabkit" / "configs" / "sdxl-base-1.0"


# -- the loop, timed from inside ------------------------------------------------------------------------

def recorders():
    from colabkit.train.budget import Budget
    from colabkit.train.loop import Reporter

    class StepClock(Reporter):
        """Wall time at each ``Reporter.step`` (after the step, before epoch end / state save)."""

        def __init__(self):
            self.called = time.perf_counter()
            self.started = None
            self.marks: list[float] = []

        def start(self, start_step, total_steps):
            self.started = time.perf_counter()

        def step(self, step, loss, lr, budget_left_s):
            self.marks.append(time.perf_counter())

    class RecordingBudget(Budget):
        """A budget that never stops the run and keeps every step and save time the loop reports."""

        def __init__(self):
            super().__init__(start=time.time(), hours=1000.0, margin_s=0.0)
            self.steps: list[float] = []
            self.saves: list[tuple[int, float]] = []  # (the step after which it saved, seconds)

        def record_step(self, seconds):
            super().record_step(seconds)
            self.steps.append(seconds)

        def record_save(self, seconds):
            super().record_save(seconds)
            self.saves.append((len(self.steps), seconds))

    return StepClock, RecordingBudget


def make_project(name: str, images: int, resolution: int):
    from colabkit.project import Project
    from colabkit.tiny.drawings import make_image_folder

    project = Project.at(name).create()
    for i, path in enumerate(make_image_folder(project.dataset, images, size=(resolution, resolution), fmt="png")):
        path.with_suffix(".txt").write_text(f"benchtag, outline, drawing, tag{i}, {'red' if i % 2 else 'blue'}")
    return project


def time_loop(cfg, device: str, warmup: int) -> dict:
    from colabkit.train.loop import train

    StepClock, RecordingBudget = recorders()
    clock, budget = StepClock(), RecordingBudget()
    result = train(cfg, reporter=clock, budget=budget, device=device)
    ended = time.perf_counter()
    assert result.status == "finished", result.message
    saved_after = {s for s, _ in budget.saves}
    # interval k (1-based step k+1) = marks[k] - marks[k-1]; it holds a save when one followed step k
    intervals = [(k + 1, clock.marks[k] - clock.marks[k - 1]) for k in range(1, len(clock.marks))]
    clean = [dt for k, dt in intervals if k > warmup and (k - 1) not in saved_after]
    own = budget.steps[warmup:]
    in_loop_saves = [s for k, s in budget.saves if k < len(budget.steps)]  # not the final save after the loop
    return dict(own=own, interval=clean, saves=in_loop_saves, startup=clock.started - clock.called,
                after=ended - clock.marks[-1], steps=len(budget.steps))


# -- the bare step ----------------------------------------------------------------------------------------

def prepare_unet(unet, run, device, weight_dtype):
    """The loop's LoRA set-up, step by step: same targets, rank, seed, fp32 LoRA weights, checkpointing."""
    import torch

    from colabkit.train import lora
    from colabkit.train.optim import make_optimizer

    unet.requires_grad_(False)
    unet.to(dtype=weight_dtype)
    torch.manual_seed(run.seed)
    lora.add_lora(unet, lora.unet_targets(unet, run.lora_type), run.network_dim, run.network_alpha,
                  conv_rank=run.conv_dim, conv_alpha=run.conv_alpha)
    for p in lora.lora_parameters(unet):
        p.data = p.data.float()
    if run.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.to(device)
    unet.train()
    params = lora.lora_parameters(unet)
    return make_optimizer(run, [{"params": params, "lr": run.unet_lr}]), sum(p.numel() for p in params)


def time_bare(unet, opt, batch: int, resolution: int, device, autocast_dtype, steps: int, warmup: int) -> list[float]:
    """Seconds per bare step: forward, backward, optimizer step, zero_grad, on batch-shaped random tensors."""
    import contextlib

    import torch

    cfg = unet.config
    pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(batch, cfg.in_channels, resolution // 8, resolution // 8, generator=g)
    embeds = torch.randn(batch, 77, cfg.cross_attention_dim, generator=g)
    pooled = torch.randn(batch, pooled_dim, generator=g)
    wdt = autocast_dtype or torch.float32
    lat, embeds, pooled = (x.to(device, dtype=wdt) for x in (lat, embeds, pooled))
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * batch, device=device, dtype=wdt)
    timesteps = torch.randint(0, 1000, (batch,), generator=g).to(device)
    cuda = torch.device(device).type == "cuda"
    amp = (torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype
           else contextlib.nullcontext())
    times = []
    for _ in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with amp:
            out = unet(lat, timesteps, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
            out.sample.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times[warmup:]


# -- reporting --------------------------------------------------------------------------------------------

def ms(xs) -> str:
    return f"{1000 * statistics.median(xs):9.1f}" if xs else "        -"


def mean_ms(xs) -> str:
    return f"{1000 * statistics.fmean(xs):9.1f}" if xs else "        -"


def table(rows: list[tuple[str, list[float]]], base: float, base_min: float) -> None:
    """Medians, means and minimums; "x bare" compares medians, "min x" minimums (the least disturbed steps
    on a shared machine)."""
    print(f"{'':46s} {'median ms':>9s} {'mean ms':>9s} {'min ms':>9s} {'n':>4s}  x bare   min x")
    for name, xs in rows:
        ratio = f"{statistics.median(xs) / base:6.2f}  {min(xs) / base_min:6.2f}" if xs else "     -       -"
        print(f"{name:46s} {ms(xs)} {mean_ms(xs)} {1000 * min(xs) if xs else 0:9.1f} {len(xs):4d}  {ratio}")


def bench_loop(args) -> None:
    import torch

    from colabkit.train import models
    from colabkit.train.config import TrainConfig
    from colabkit.train.loop import _precision

    total = args.warmup + args.steps
    repeats = -(-total * args.batch_size // args.images) + 1  # one epoch holds every step: no epoch end inside
    base = dict(base_model=args.base_model, resolution=args.resolution, num_repeats=repeats, epochs=1,
                max_train_steps=total, train_batch_size=args.batch_size, optimizer=args.optimizer,
                network_dim=args.network_dim, network_alpha=max(1, args.network_dim // 2),
                gradient_checkpointing=not args.no_checkpointing, sample_every_n_epochs=0,
                save_state_every_n_steps=args.save_every, budget_hours=1000.0, seed=7)
    with tempfile.TemporaryDirectory(prefix="colabkit-bench-") as tmp:
        os.environ["COLABKIT_DRIVE_ROOT"] = str(Path(tmp) / "drive")
        make_project("bench", args.images, args.resolution)
        cfg = TrainConfig(project_name="bench", shuffle_tags=True, **base)
        run = cfg.effective()
        precision = _precision(run, args.device)
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        resolved = models.resolve_base_model(run.base_model)
        print(f"{resolved.name}, {args.resolution} px, batch {args.batch_size}, {args.images} images (one bucket), "
              f"LoRA dim {run.network_dim}, {run.optimizer}, precision {precision} on {device}, gradient "
              f"checkpointing {'on' if run.gradient_checkpointing else 'off'}, state saved every {args.save_every} "
              f"steps; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; {args.steps} timed steps "
              f"after {args.warmup} warm-up\n")

        def bare() -> tuple[list[float], int]:
            parts = models.load_sdxl(resolved, dtype=weight_dtype, device="cpu")
            unet = parts.unet
            del parts
            opt, n_lora = prepare_unet(unet, run, device, weight_dtype)
            times = time_bare(unet, opt, args.batch_size, args.resolution, device,
                              weight_dtype if precision in ("fp16", "bf16") else None, args.steps, args.warmup)
            del unet, opt
            gc.collect()
            return times, n_lora

        bare_before, n_lora = bare()
        shuffled = time_loop(cfg, args.device, args.warmup)
        bare_between, _ = bare()
        fixed = time_loop(cfg.replace(shuffle_tags=False, start_over=True), args.device, args.warmup)
        bare_after, _ = bare()

    bare_all = bare_before + bare_between + bare_after
    ref = statistics.median(bare_all)
    print(f"LoRA parameters: {n_lora:,}. 'x bare': against all bare steps together.")
    table([("bare fwd+bwd+opt.step (before the loops)", bare_before),
           ("bare fwd+bwd+opt.step (between the loops)", bare_between),
           ("bare fwd+bwd+opt.step (after the loops)", bare_after),
           ("loop, tags shuffled: own step timer", shuffled["own"]),
           ("loop, tags shuffled: Reporter.step to .step", shuffled["interval"]),
           ("loop, text embeddings cached: own step timer", fixed["own"]),
           ("loop, text embeddings cached: .step to .step", fixed["interval"])], ref, min(bare_all))
    print(f"loop minus bare, per step (medians): {1000 * (statistics.median(shuffled['interval']) - ref):+.1f} ms "
          f"tags shuffled, {1000 * (statistics.median(fixed['interval']) - ref):+.1f} ms text embeddings cached")
    saves = shuffled["saves"] + fixed["saves"]
    step_s = statistics.median(fixed["interval"] or fixed["own"])
    if saves:
        print(f"\nstate save (every {args.save_every} steps): median {1000 * statistics.median(saves):.1f} ms, "
              f"max {1000 * max(saves):.1f} ms over {len(saves)} saves = "
              f"{statistics.median(saves) / step_s:.1f} x a step (text embeddings cached)")
    print(f"start-up before the first step (load, caches, LoRA): first run {shuffled['startup']:.1f} s (latents "
          f"encoded), second run {fixed['startup']:.1f} s (latents reused, text embeddings encoded); after the "
          f"last step (export, loss plot, final save): {shuffled['after']:.2f} s / {fixed['after']:.2f} s")


def bench_real(args) -> None:
    """The real SDXL UNet (random weights), bare step only, with peak memory vs colabkit's estimate."""
    import torch

    if not torch.cuda.is_available() and not args.force:
        print("real SDXL: skipped (needs CUDA; run --real on a GPU machine, or add --force to try on the CPU)")
        return
    from diffusers import UNet2DConditionModel

    from colabkit.doctor import gpu_info
    from colabkit.train import memory
    from colabkit.train.config import TrainConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = gpu_info()
    precision = ("bf16" if gpu.native_bf16 else "fp16") if gpu else "no"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    run = TrainConfig(project_name="bench", base_model="SDXL base 1.0", resolution=args.resolution,
                      train_batch_size=args.batch_size, optimizer=args.optimizer, network_dim=args.network_dim,
                      network_alpha=max(1, args.network_dim // 2),
                      gradient_checkpointing=not args.no_checkpointing).effective()
    t = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs: the host of a Colab T4 has 12 GB of RAM
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SDXL_CONFIGS / "unet"))
    n_params = sum(p.numel() for p in unet.parameters())
    opt, n_lora = prepare_unet(unet, run, device, dtype)
    print(f"real SDXL UNet, random weights: {n_params / 1e9:.2f} B parameters, LoRA {n_lora:,}, built in "
          f"{time.perf_counter() - t:.0f} s; {gpu.name if gpu else 'CPU'}, {precision}, {args.resolution} px, batch "
          f"{args.batch_size}, {run.optimizer}, checkpointing {'on' if run.gradient_checkpointing else 'off'}")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = time_bare(unet, opt, args.batch_size, args.resolution, device,
                      dtype if precision != "no" else None, args.real_steps, 2)
    print(f"bare fwd+bwd+opt.step: median {statistics.median(times):.3f} s/step over {len(times)} steps")
    if device == "cuda":
        est = memory.estimate_vram(resolution=args.resolution, batch_size=args.batch_size,
                                   network_dim=run.network_dim, mixed_precision=precision,
                                   gradient_checkpointing=run.gradient_checkpointing, optimizer=run.optimizer,
                                   sample_images=False, gpu_gb=gpu.vram_gb)
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GB reserved (+ CUDA context); colabkit's estimate "
              f"for this step (context included, no preview images): {est.total_gb:.1f} GB ({est.summary()})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default="tiny-sdxl", help="what the loop and the bare step load")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per series")
    ap.add_argument("--warmup", type=int, default=5, help="steps left out at the start of each series")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the GPU when there is one)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--optimizer", default="AdamW8bit")
    ap.add_argument("--network-dim", type=int, default=16)
    ap.add_argument("--no-checkpointing", action="store_true", help="gradient checkpointing off (default on)")
    ap.add_argument("--save-every", type=int, default=10, help="state save every N steps, timed apart")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--real", action="store_true", help="also time the real SDXL UNet (random weights; CUDA)")
    ap.add_argument("--real-steps", type=int, default=10)
    ap.add_argument("--force", action="store_true", help="--real without CUDA (fp32 on the CPU: ~11 GB RAM, slow)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # the figures, not the loaders' chatter
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if args.real:
        if args.resolution == 64:
            args.resolution = 1024
        bench_real(args)
        return 0
    bench_loop(args)
    print("\nreal SDXL UNet: not timed (add --real on a CUDA machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
