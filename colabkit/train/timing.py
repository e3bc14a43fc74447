"""How long a run will take, said before it starts: steps x seconds a step + caching + previews, in free days.

Pure functions: the preflight passes what the run plan decided (device, GPU name, resolution, batch, steps,
gradient checkpointing, previews) and shows the result; the budget uses ``preview_seconds`` to stop before an
epoch-end preview that would not fit.

Seconds per step on a GPU come from a table of public figures for SDXL LoRA at 1024 px, batch 1, fp16, with
gradient checkpointing, scaled by pixels and batch (a GPU at 1024 px is saturated: time grows with the work).
On the CPU the run plan's own estimate (FLOPs from the model's parameter count, calibrated on this machine
kind) is used. A measured figure (the run's own smoothed step time, or the GPU check's) replaces the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from colabkit.i18n import _, ngettext

# Seconds per step, SDXL LoRA (UNet only), 1024 px, batch 1, fp16/bf16, gradient checkpointing on, text
# embeddings and latents cached. Sources (public reports, not measured here; no GPU was lent to this task):
# - T4: 2.5 s. Reports for kohya sd-scripts / OneTrainer SDXL LoRA on a T4 give ~1.5-2.5 s/it at batch 1 with
#   gradient checkpointing; the upper end is taken because a Colab T4 runs hot and clocks down. For scale,
#   diffusers PR #4470's Colab comments report 500 steps in ~1.5 h (~11 s/step) for the DreamBooth LoRA SDXL
#   script on a free T4, which also runs the text encoders and the VAE every step (colabkit caches both).
# - L4: 1.2 s, A100: 0.45 s, V100: 1.4 s: from the same kind of reports; the T4 (free tier) is what matters.
# A FLOP count agrees with the T4 figure: an SDXL UNet forward at 1024 px is ~6 TFLOP, a LoRA step with
# checkpointing ~3 forwards, ~19 TFLOP, and a T4 sustains ~8-10 TFLOP/s of fp16 on such shapes: ~2 s.
GPU_SECONDS_PER_STEP = {"T4": 2.5, "L4": 1.2, "V100": 1.4, "A100": 0.45, "H100": 0.25}
UNKNOWN_GPU = "T4"  # the slowest in the table: a GPU not listed is estimated as a T4
CHECKPOINTING_FACTOR = 0.75  # without gradient checkpointing a step skips the recomputed forward (~3 -> ~2.3)

# Per day on the free tier, besides training: installs and imports (~4 min), copying/loading the model from
# Drive (~3 min), the budget's safety margin (the config's budget_margin_minutes) and the final state save.
DAILY_SETUP_S = 7 * 60
# Caching latents: the VAE encoder once per image (and flip), fp32 on a T4 at 1024 px ~0.6 s, plus reading.
CACHE_SECONDS_PER_IMAGE_GPU_1024 = 0.8
# A preview image: the sampler's UNet forwards (2 per step: classifier-free guidance), each ~1/3 of a training
# step's compute without checkpointing, plus the VAE decode (~1 s on a T4 at 1024 px, fp32).
DECODE_SECONDS_GPU_1024 = 1.0


def gpu_kind(name: str | None) -> str:
    """The table's key for a GPU name like 'Tesla T4' or 'NVIDIA A100-SXM4-40GB' (UNKNOWN_GPU if none fits)."""
    upper = (name or "").upper()
    for kind in sorted(GPU_SECONDS_PER_STEP, key=len, reverse=True):
        if kind in upper:
            return kind
    return UNKNOWN_GPU


def gpu_seconds_per_step(gpu_name: str | None, resolution: int, batch: int, checkpointing: bool = True) -> float:
    """Tabled seconds per optimizer step of batch ``batch`` at ``resolution`` on this GPU kind."""
    base = GPU_SECONDS_PER_STEP[gpu_kind(gpu_name)]
    scale = (resolution / 1024) ** 2 * batch
    return base * scale * (1.0 if checkpointing else CHECKPOINTING_FACTOR)


def gpu_source(gpu_name: str | None) -> str:
    kind = gpu_kind(gpu_name)
    known = kind in (gpu_name or "").upper()
    return (_("tabled {kind} figure").format(kind=kind) if known else
            _("tabled {kind} figure (GPU '{gpu}' not in the table: taken as a {kind})").format(kind=kind, gpu=gpu_name))


def preview_seconds(step_s_no_checkpointing: float, batch: int, n_prompts: int, sample_steps: int,
                    decode_s_per_image: float) -> float:
    """One epoch-end preview: ``sample_steps`` sampler steps for all prompts at once (batched, guidance doubles
    the batch), each UNet forward ~1/3 of a training step (forward + backward ~ 3 forwards), then decoding.
    ``step_s_no_checkpointing``: a training step of ``batch`` images without checkpointing."""
    forward_per_image = step_s_no_checkpointing / max(1, batch) / 3
    return sample_steps * 2 * n_prompts * forward_per_image + n_prompts * decode_s_per_image


def caching_seconds(n_images: int, resolution: int, flip: bool, on_gpu: bool, cpu_step_s: float = 0.0) -> float:
    """Encoding every image's latents once (a run with a full cache spends ~0)."""
    n = n_images * (2 if flip else 1)
    if on_gpu:
        return n * CACHE_SECONDS_PER_IMAGE_GPU_1024 * (resolution / 1024) ** 2
    return n * cpu_step_s / 3  # a VAE encode on the CPU ~ a third of a small-model step: rough, and small


def free_days(total_s: float, budget_hours: float, margin_s: float, daily_setup_s: float = DAILY_SETUP_S) -> int:
    """Free-tier days (one budget each) the run needs, each losing its set-up time and safety margin."""
    usable = budget_hours * 3600 - margin_s - daily_setup_s
    if usable <= 0:
        return 0 if total_s <= 0 else 10**6
    return max(1, math.ceil(total_s / usable))


@dataclass(frozen=True)
class RunEstimate:
    steps: int
    step_s: float
    source: str  # where step_s comes from: "tabled T4 figure", "measured", "CPU estimate"
    train_s: float
    caching_s: float
    previews: int
    preview_s: float  # one preview
    total_s: float
    days: int
    on_gpu: bool

    def describe(self) -> str:
        parts = [_("{steps} steps x {step_s:.1f} s ({source}) = {time}").format(
            steps=self.steps, step_s=self.step_s, source=self.source, time=span(self.train_s))]
        if self.caching_s >= 1:
            parts.append(_("caching {time}").format(time=span(self.caching_s)))
        if self.previews:
            parts.append(_("{previews} previews x {time}").format(previews=self.previews, time=span(self.preview_s)))
        days = (ngettext("{n} free-tier day", "{n} free-tier days", self.days) if self.on_gpu
                else ngettext("{n} budget", "{n} budgets", self.days)).format(n=self.days)
        return _("about {time} in all: {parts}; {days}").format(time=span(self.total_s), parts=" + ".join(parts),
                                                              days=days)


def estimate_run(*, steps: int, step_s: float, source: str, batch: int, n_images: int, resolution: int,
                 flip: bool, cached: bool, previews: int, n_prompts: int, sample_steps: int, checkpointing: bool,
                 on_gpu: bool, budget_hours: float, margin_s: float) -> RunEstimate:
    """The whole run: training, caching (unless cached), ``previews`` epoch-end previews, and the days."""
    train_s = steps * step_s
    plain_step = step_s * (CHECKPOINTING_FACTOR if checkpointing and on_gpu else 1.0)
    decode = DECODE_SECONDS_GPU_1024 * (resolution / 1024) ** 2 if on_gpu else plain_step / 2
    one_preview = preview_seconds(plain_step, batch, n_prompts, sample_steps, decode) if previews else 0.0
    caching = 0.0 if cached else caching_seconds(n_images, resolution, flip, on_gpu, step_s)
    total = train_s + caching + previews * one_preview
    days = free_days(total, budget_hours, margin_s, DAILY_SETUP_S if on_gpu else 0.0)
    return RunEstimate(steps, step_s, source, train_s, caching, previews, one_preview, total, days, on_gpu)


def previews_in_run(epochs: int, sample_every_n_epochs: int) -> int:
    """Epoch-end previews a run makes: every n-th epoch, and always after the last one."""
    if not sample_every_n_epochs or epochs <= 0:
        return 0
    return len({e for e in range(1, epochs + 1) if e % sample_every_n_epochs == 0} | {epochs})


def span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


DEMO_RESOLUTION = 128
DEMO_STEPS = 40
CPU_LONG_S = 30 * 60  # on the CPU, a run longer than this gets the demo-sized suggestion


def cpu_suggestion(estimate: RunEstimate, resolution: int, steps: int) -> str | None:
    """On the CPU, when a run is long: the demo-sized settings, which show the whole flow in minutes."""
    if estimate.on_gpu or estimate.total_s <= CPU_LONG_S:
        return None
    if resolution <= DEMO_RESOLUTION and steps <= DEMO_STEPS:
        return None
    return _("On the CPU this takes {time}. To try the whole flow in minutes use the demo size: resolution "
             "{resolution}, max_train_steps {steps}, sample_every_n_epochs 0 (or `colabkit demo`); train the real "
             "LoRA on a GPU runtime.").format(time=span(estimate.total_s), resolution=DEMO_RESOLUTION,
                                              steps=DEMO_STEPS)


def plan_estimate(plan) -> "RunEstimate | None":
    """The estimate for a run plan (colabkit.train.plan.RunPlan): its device, steps still to run, previews,
    and whether the latents are cached already. None when the plan could not get that far."""
    dev, steps, run = plan.device, plan.steps, plan.run
    if dev is None or steps is None or plan.facts is None:
        return None
    done = plan.state.step if plan.resume == "continue" and plan.state is not None else 0
    left = max(0, steps.total_steps - done)
    batch = run.train_batch_size * run.gradient_accumulation_steps
    on_gpu = dev.device == "cuda"
    if on_gpu:
        step_s = gpu_seconds_per_step(dev.gpu.name, run.resolution, batch, plan.gradient_checkpointing)
        source = gpu_source(dev.gpu.name)
    elif dev.cpu_seconds_per_step is not None:
        step_s, source = dev.cpu_seconds_per_step, _("CPU estimate")
    else:
        return None
    prompts = [p for p in run.sample_prompts.splitlines() if p.strip()]
    epochs_left = steps.epochs - done // steps.steps_per_epoch if steps.steps_per_epoch else 0
    cached = any(n.name == "cache" and n.message.startswith("all latents") for n in plan.notes)
    return estimate_run(steps=left, step_s=step_s, source=source, batch=batch, n_images=len(plan.items),
                        resolution=run.resolution, flip=run.flip_aug, cached=cached,
                        previews=previews_in_run(epochs_left, run.sample_every_n_epochs),
                        n_prompts=len(prompts) or 3, sample_steps=run.sample_steps,
                        checkpointing=plan.gradient_checkpointing, on_gpu=on_gpu, budget_hours=run.budget_hours,
                        margin_s=run.budget_margin_minutes * 60)


BUSY_CORE = 0.5  # cores' worth of other processes' use that counts as a core taken (the plan and the loop)


def cpu_training_threads(cores: int, other_load: float | None, user_set: bool, current: int) -> int:
    """torch threads for training on the CPU: the cores the rest of the machine leaves free when the run starts
    (``other_load``: cores' worth it keeps busy; a core counts as taken from half a core of use), at least one;
    every core but one when the load is unknown; as is when the user set OMP_NUM_THREADS.

    Measured on 2 cores (benchmarks/RESULTS.md): quiet, 2 threads make a step ~1.3x faster than 1; with one
    other busy process, 2 threads stall at each parallel region's barrier (2.1x slower steps), 1 thread does
    not. Decided once per run and kept across resumes (the saved state records it): the thread count changes
    float summation order, and a resumed run continues bit for bit."""
    if user_set:
        return current
    if other_load is None:
        return max(1, cores - 1)
    taken = math.floor(other_load + 1 - BUSY_CORE)  # a core from BUSY_CORE of one on
    return max(1, cores - taken)
