"""The run plan: every decision a training run makes, made once, from the config and the model itself.

    plan = make_plan(cfg)            # project, dataset scan, model header, device, memory, steps, saved state
    report = run_preflight(plan)     # says what the plan found (rows, problems); changes nothing
    result = train(plan)             # uses it: nothing is opened, scanned, resolved or loaded from Drive twice

Building a plan reads headers and small files only (the dataset's images once, to hash and size them; the
checkpoint's header, never its weights) and writes nothing: a preflight is a plan reported on.
Problems are collected as rows, in the order a person should read them, not raised: the preflight shows
them all at once; ``train`` refuses a plan that has any (``raise_if_errors``).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from colabkit.errors import ColabkitError
from colabkit.train.outputs import is_run_lora
from colabkit.train.config import TrainConfig, resume_problems, step_plan
from colabkit.train.noise import use_ztsnr, ztsnr_warning
from colabkit.i18n import _, ngettext

if TYPE_CHECKING:
    from pathlib import Path

    from colabkit.doctor import GpuInfo
    from colabkit.project import Project
    from colabkit.train.config import StepPlan
    from colabkit.train.data import Item, Scan
    from colabkit.train.lora.continue_from import Parent
    from colabkit.train.memory import VramPlan
    from colabkit.train.models import ModelFacts, ResolvedModel
    from colabkit.train.state import TrainState

Level = Literal["ok", "warn", "error"]
Resume = Literal["start", "continue", "finished", "refused"]

# -- CPU time (pure) ----------------------------------------------------------------------------------------
# A UNet step costs about 2 FLOPs per parameter per latent position the parameter is applied at, for the
# forward, once more for the backward (LoRA: the frozen weights need no gradient of their own, only the
# activations do), and once more with gradient checkpointing (the forward is recomputed). Each UNet level l
# works on (H/8/2^l) x (W/8/2^l) positions; the UNet's parameters are counted in the model's header and spread
# over its levels by the architecture (width^2 x blocks per level, from its config). Attention adds 4 N^2 C
# per self-attention layer (QK^T and AV) on N positions of width C.
# Calibrated on the built-in tiny-sdxl (benchmarks/bench_cpu_estimate.py, 2026-11-30 05:45 UTC, quiet 2-core
# machine, float32, batch 2): one torch thread measured 0.120 / 0.185 / 0.230 / 0.594 s a step at 64 / 128 / 256 /
# 512 px, i.e. ~0.12 s of per-step overhead plus ~43 GFLOP/s; two threads 0.113 / 0.156 / 0.215 / 0.525 s (1.15x
# on tiny convolutions; the 31M-parameter bench_vs_diffusers model gains 1.3-1.5x). The constants round towards
# slower: a busy machine is slower still, and a refusal should never be wrong by being too optimistic. (The
# first calibration, 7.5 GFLOP/s and 0.5 s, was measured at load average 4-11 and came out 3.6-5.5x slow on a
# quiet machine.)
CPU_GFLOPS = 40.0  # effective float32 GFLOP/s of a training step on one torch thread
CPU_THREAD_GAIN = 0.3  # each torch thread beyond the first adds this much of one thread's speed
CPU_STEP_OVERHEAD_S = 0.15  # per-step cost that does not scale with the model (Python, autograd, optimizer)
# Without a GPU and without being asked for the CPU, a run is refused (with the estimate) when it would take
# longer than this in all, or longer than this per step (no one watches a run that shows a step a minute).
CPU_PRACTICAL_HOURS = 12.0
CPU_PRACTICAL_SECONDS_PER_STEP = 60.0


def unet_step_flops(level_params: list[int], shape, width: int, height: int, batch: int, checkpointing: bool) -> float:
    """FLOPs of one LoRA training step of a UNet (see the comment above). ``level_params``: parameters per
    level, finest first; ``shape``: memory.UNetShape (channels, attention depth per level)."""
    passes = 3 if checkpointing else 2
    flops = 0.0
    blocks_with_attention = 2 * shape.layers_per_block + 1  # down + up blocks of a level (+ mid at the lowest)
    for level, params in enumerate(level_params):
        n = (width / 8 / 2**level) * (height / 8 / 2**level)
        flops += 2 * params * n
        if level < len(shape.depth) and shape.depth[level]:
            flops += 4 * n * n * shape.channels[level] * shape.depth[level] * blocks_with_attention
    return flops * passes * batch


def cpu_seconds_per_step(flops: float, threads: int = 1) -> float:
    return CPU_STEP_OVERHEAD_S + flops / (CPU_GFLOPS * 1e9 * (1 + CPU_THREAD_GAIN * (max(1, threads) - 1)))


def hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


# -- the plan -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Note:
    name: str
    level: Level
    message: str


@dataclass(frozen=True)
class DevicePlan:
    device: Literal["cuda", "cpu"]
    gpu: "GpuInfo | None"
    mixed_precision: Literal["fp16", "bf16", "no"]
    asked: str | None  # the device the caller asked for (None: the GPU when there is one)
    memory_gb: float  # what the run may use: the GPU's memory, or the host's RAM on the CPU
    memory_of: Literal["GPU memory", "RAM"]
    cpu_seconds_per_step: float | None = None  # the CPU estimate (None on a GPU)
    cpu_threads: int | None = None  # torch threads for training on the CPU (None on a GPU); the estimate assumes it
    adapt_cpu_threads: bool = False  # the loop gives threads up when the machine gets busy (cpu_threads.py)


@dataclass
class RunPlan:
    config: TrainConfig  # as given (start_over and all)
    run: TrainConfig  # the effective config: what trains
    device: DevicePlan | None = None
    project: "Project | None" = None
    scan: "Scan | None" = None
    activation: str = ""
    steps: "StepPlan | None" = None
    resolved: "ResolvedModel | None" = None
    facts: "ModelFacts | None" = None
    prediction_type: str = "epsilon"  # "epsilon" | "v_prediction": the decision, model markers included
    zero_terminal_snr: bool = False
    gradient_checkpointing: bool = True
    memory: "VramPlan | None" = None
    fingerprints: dict[str, str] = field(default_factory=dict)
    state: "TrainState | None" = None  # the saved run to continue (None: start, or start over)
    resume: Resume = "start"
    can_plot: bool = True
    notes: list[Note] = field(default_factory=list)
    load_since: tuple | None = None  # doctor.cpu_sample() when planning began (the CPU load's window)
    parent: "Parent | None" = None  # continue_from_lora: the LoRA file the run starts from (None: a fresh LoRA)

    @property
    def items(self) -> "list[Item]":
        return self.scan.items if self.scan else []

    @property
    def total_steps(self) -> int:
        return self.steps.total_steps if self.steps else 0

    @property
    def errors(self) -> list[Note]:
        return [n for n in self.notes if n.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def note(self, name: str, level: Level, message: str) -> None:
        self.notes.append(Note(name, level, message))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ColabkitError(_("Preflight found problems; nothing was started:\n- ") +
                                "\n- ".join(f"{n.name}: {n.message}" for n in self.errors))


def make_plan(cfg: TrainConfig, device: str | None = None) -> RunPlan:
    """Decide everything about the run ``cfg`` describes, reading only what is needed and writing nothing.

    ``device``: "cpu" to train on the CPU even with a GPU present (or a small model without one); None: the
    GPU when there is one. Never raises for a problem of the setup: it becomes an error row in ``notes``.
    """
    from colabkit import doctor

    plan = RunPlan(config=cfg, run=cfg.effective())
    plan.load_since = doctor.cpu_sample()  # the machine's load is measured over the planning itself
    try:
        _plan(plan, device)
    finally:
        _place_device_note_first(plan)
    return plan


def _plan(plan: RunPlan, device: str | None) -> None:
    from colabkit.project import open_project

    run = plan.run
    try:
        plan.project = open_project(run.project_name)
    except ColabkitError as e:
        plan.note("project", "error", str(e))
        _decide_device(plan, device)
        return
    plan.note("project", "ok", str(plan.project.root))
    if not _scan_dataset(plan):
        _decide_device(plan, device)
        return
    from colabkit.train.data import epoch_repeats as data_epoch_repeats

    scan = plan.scan
    reg = scan.reg
    reg_times = sum(data_epoch_repeats(scan.items, run.num_repeats)[len(scan.training):]) if reg else 0
    plan.steps = step_plan(scan.bucket_sizes, run, scan.bucket_repeats(run.num_repeats),
                           scan.folders() if scan.has_folders else None, (len(reg), reg_times) if reg else None)
    plan.note("steps", "ok" if plan.steps.in_range else "warn", plan.steps.describe())
    _resolve_model(plan)
    _check_parent(plan)
    _count_long_captions(plan)
    _decide_device(plan, device)
    _decide_memory(plan)
    _check_packages(plan)
    _check_drive_space(plan)
    _fingerprint_and_cache(plan)
    _decide_resume(plan)


def _place_device_note_first(plan: RunPlan) -> None:
    # The GPU is said first (before anything is installed or downloaded), though it is decided from the model.
    gpu = [n for n in plan.notes if n.name == "GPU"]
    plan.notes[:] = gpu + [n for n in plan.notes if n.name != "GPU"]


def _scan_dataset(plan: RunPlan) -> bool:
    from colabkit.train import data

    project, run = plan.project, plan.run
    try:
        scan = data.scan(project.dataset, run.resolution)
    except ColabkitError as e:
        plan.note("dataset", "error", str(e))
        return False
    plan.scan = scan
    n_img = len(scan.items) + len(scan.missing_captions)
    if not n_img:
        plan.note("dataset", "error", _("No images in {dataset}. Upload your drawings there (PNG/JPG/WEBP) and "
                                        "caption them with the dataset notebook.").format(dataset=project.dataset))
        return False
    plan.activation = activation = run.activation_tag or data.activation_tag_of(scan.items)
    training = scan.training
    with_tag = sum(1 for it in training if activation and activation in data.split_tags(it.caption))
    msg = ngettext("{n} captioned image", "{n} captioned images", len(training)).format(n=len(training))
    if activation:
        msg += "; " + _("activation tag '{tag}' in {n} of them").format(tag=activation, n=with_tag)
    plan.note("dataset", "ok" if scan.items else "error", msg if scan.items else
              _("{n_img} images but none has a caption. Run the dataset notebook's tagging step.").format(n_img=n_img))
    if scan.missing_captions:
        names = ", ".join(p.name for p in scan.missing_captions[:5])
        plan.note("captions", "warn", _("{n_missing_captions} images have no .txt caption and will be skipped: "
                                        "{names}{value}. Tag them in the dataset notebook.").format(
                                          n_missing_captions=len(scan.missing_captions), names=names, value=' ...' if len(scan.missing_captions) > 5 else ''))
    if scan.orphan_captions:
        plan.note("captions", "warn", _("{n_orphan_captions} caption files have no image: ").format(
                                          n_orphan_captions=len(scan.orphan_captions))
                  + ", ".join(p.name for p in scan.orphan_captions[:5]))
    if scan.unreadable:
        plan.note("images", "warn", _("Unreadable, skipped: ") +
                  "; ".join(f"{p.name} ({why})" for p, why in scan.unreadable[:5]))
    if activation and with_tag < len(training):
        plan.note("activation tag", "warn", _("'{activation}' is missing from {value} captions: run the dataset "
                                              "notebook's trigger-word step.").format(
                                                activation=activation, value=len(training) - with_tag))
    if scan.reg or scan.reg_rejected:
        plan.note("regularization", "ok" if scan.reg else "warn", _(
            "{n} regularization images in reg/, trained with loss weight {weight:g} (prior_loss_weight)").format(
            n=len(scan.reg), weight=run.prior_loss_weight) + ("; " + _("skipped: {files}").format(
                files="; ".join(f"{p.name} ({why})" for p, why in scan.reg_rejected[:5])) if scan.reg_rejected
                else ""))
    return bool(scan.items)


def _resolve_model(plan: RunPlan) -> None:
    from colabkit.train import models

    run = plan.run
    try:
        # download=False: a plan never downloads (train fetches what the plan resolved, see fetch_model).
        plan.resolved = models.resolve_base_model(run.base_model, models_dir=plan.project.models,
                                                  keep_on_drive=run.keep_model_on_drive, download=False,
                                                  prediction_type=run.prediction_type)
        plan.facts = models.model_facts(plan.resolved)
    except ColabkitError as e:
        plan.note("base model", "error", str(e))
        return
    resolved, facts = plan.resolved, plan.facts
    size = f"{facts.total_params / 1e6:,.0f}M" if facts.total_params >= 1e7 else f"{facts.total_params / 1e6:.1f}M"
    counted = _("counted in its header") if facts.counted else _("SDXL base size, counted once downloaded")
    unchecked = ""
    if resolved.preset is not None and not resolved.preset.sha256:
        unchecked = _("; not hash-checked (no published sha256 recorded for this preset)")
    plan.note("base model", "ok", _("{name} ({source}); {size} parameters ({counted})").format(
                                      name=resolved.name, source=resolved.source, size=size, counted=counted) + unchecked)
    plan.prediction_type = resolved.prediction_type
    switch = run.zero_terminal_snr
    plan.zero_terminal_snr = use_ztsnr(switch, plan.prediction_type, facts.zero_terminal_snr, edm=facts.edm)
    if plan.prediction_type == "v_prediction" or plan.zero_terminal_snr:
        why = {"on": "zero_terminal_snr on", "off": "zero_terminal_snr off"}.get(
            switch, "the model's ztsnr marker" if facts.zero_terminal_snr else "on by default with v-prediction, "
            "as the reference trainers do" if plan.zero_terminal_snr else "an EDM (CosXL-style) model" if facts.edm
            else "")
        warning = ztsnr_warning(plan.prediction_type, plan.zero_terminal_snr)
        plan.note("prediction", "warn" if warning else "ok", warning or f"{plan.prediction_type}, zero-terminal SNR "
                  f"{'on' if plan.zero_terminal_snr else 'off'} ({why})")
    native = int(facts.unet_config.get("sample_size", 128)) * 8
    if run.resolution < 0.75 * native:
        plan.note("resolution", "warn", _("{resolution} px is low for SDXL models like this one (trained at "
                                          "{native} px): expect soft results.").format(
                                            resolution=run.resolution, native=native))


def _meta_models(resolved, facts):
    """The model's UNet and text encoders on the meta device (module names and shapes; no memory, no weights)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from colabkit.train.models.load import SDXL_CONFIGS, pick_config_dir

    folder = SDXL_CONFIGS
    if resolved.kind == "diffusers":
        folder = resolved.path
    elif resolved.info is not None:
        try:
            folder = pick_config_dir(resolved.info)
        except ColabkitError:
            pass
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(facts.unet_config)
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    return unet, te1, te2


def _check_parent(plan: RunPlan) -> None:
    """continue_from_lora: the file read (header and alphas), matched against the model's modules on the meta
    device; the run's LoRA shape becomes the file's; every key it cannot load is an error row."""
    from colabkit.train import lora
    from colabkit.train.config import LORA_TYPES
    from colabkit.train.lora import continue_from as cf

    run = plan.run
    if not run.continue_from_lora.strip():
        return
    try:
        path = cf.find_file(run.continue_from_lora.strip(), plan.project)
    except ColabkitError as e:
        plan.note("continue from", "error", str(e))
        return
    slug = plan.project.slug
    if is_run_lora(path, plan.project):  # a name the run writes, prunes or archives on start_over
        plan.note("continue from", "error", _(
            "{name} is a file this run writes (or prunes) in output/: rename it first (e.g. {slug}-v1.safetensors) "
            "and give that name, so it is never overwritten.").format(name=path.name, slug=slug))
        return
    if plan.facts is None or plan.resolved is None:
        return  # the base model's row says why
    unet, te1, te2 = _meta_models(plan.resolved, plan.facts)
    targets = {"unet": {t: lora.unet_targets(unet, t) for t in LORA_TYPES}}
    if run.train_text_encoder:
        for name, te in (("text_encoder", te1), ("text_encoder_2", te2)):
            names = lora.text_encoder_targets(te)
            targets[name] = {t: names for t in LORA_TYPES}
    settings = {k: getattr(run, k) for k in ("network_dim", "network_alpha", "lora_type", "conv_dim", "conv_alpha")}
    parent = cf.read_parent(path, unet, te1, te2, train_text_encoder=run.train_text_encoder, targets=targets,
                            settings=settings)
    for e in parent.errors:
        plan.note("continue from", "error", e)
    if parent.errors:
        return
    plan.parent = parent
    plan.run = run.replace(**parent.shape)
    for w in parent.warnings:
        plan.note("continue from", "warn", w)
    plan.note("continue from", "ok", cf.summary(parent))


def _tokenizer_folder(resolved) -> "Path | None":
    """A local folder with the model's first CLIP tokenizer (its vocabulary), or None (nothing is fetched)."""
    from colabkit.train.models import download as dl
    from colabkit.train.models.load import pick_config_dir

    candidates = []
    if resolved.kind == "diffusers":
        candidates.append(resolved.path)
    elif resolved.info is not None:
        try:
            candidates.append(pick_config_dir(resolved.info))
        except ColabkitError:
            pass
    candidates.append(dl.cache_dir() / "sdxl-base-1.0-tokenizers")  # SDXL's, once fetched by an earlier run
    return next((c for c in candidates if (c / "tokenizer" / "vocab.json").is_file()), None)


def _count_long_captions(plan: RunPlan) -> None:
    """How many captions are longer than max_token_length (their last tags would not be seen), by the model's
    own tokenizer when it is at hand."""
    if plan.resolved is None or not plan.items:
        return
    folder = _tokenizer_folder(plan.resolved)
    if folder is None:
        return
    from transformers import CLIPTokenizer

    from colabkit.train.cache import caption_length_check

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    level, message = caption_length_check(tokenizer, [it.caption for it in plan.items], plan.run.max_token_length)
    plan.note("caption length", level, message)


def _level_params(facts) -> list[int]:
    """The UNet's parameters per level, finest first, spread by the architecture when the header has no split."""
    from colabkit.train.memory import UNetShape

    shape = UNetShape.from_config(facts.unet_config)
    # Weight of a level ~ its width squared times its blocks (resnets) plus its transformer layers.
    weights = [c * c * (2 * shape.layers_per_block + 1 + 4 * d * (2 * shape.layers_per_block + 1))
               for c, d in zip(shape.channels, shape.depth)]
    total = sum(weights)
    return [facts.params["unet"] * w / total for w in weights]


def _step_flops(plan: RunPlan, checkpointing: bool) -> float:
    from colabkit.train.memory import UNetShape

    run, facts = plan.run, plan.facts
    shape = UNetShape.from_config(facts.unet_config)
    return unet_step_flops(_level_params(facts), shape, run.resolution, run.resolution,
                           run.train_batch_size * run.gradient_accumulation_steps, checkpointing)


def _decide_device(plan: RunPlan, asked: str | None) -> None:
    from colabkit import doctor
    from colabkit.train.memory import T4_GB

    run = plan.run
    gpu = doctor.gpu_info() if asked != "cpu" else None
    if gpu is not None:
        precision = run.mixed_precision if run.mixed_precision != "auto" else "bf16" if gpu.native_bf16 else "fp16"
        plan.device = DevicePlan("cuda", gpu, precision, asked, gpu.vram_gb, "GPU memory")
        plan.note("GPU", "ok", _("{name}, {vram_gb:.1f} GB{value}").format(
                                   name=gpu.name, vram_gb=gpu.vram_gb, value='' if gpu.native_bf16 else ', fp16 (no native bf16)'))
        return
    ram = doctor._meminfo()[1] or 12.7
    precision = run.mixed_precision if run.mixed_precision != "auto" else "no"
    threads, adapt = _cpu_threads(plan.load_since)
    if plan.facts is None or plan.steps is None:  # nothing to estimate with: said as it is
        plan.device = DevicePlan("cpu", None, precision, asked, ram, "RAM", cpu_threads=threads,
                                 adapt_cpu_threads=adapt)
        if asked != "cpu":
            plan.note("GPU", "warn" if plan.errors else "error", doctor.no_gpu_message())
        return
    per_step = cpu_seconds_per_step(_step_flops(plan, checkpointing=False), threads)
    total = per_step * plan.steps.total_steps
    plan.device = DevicePlan("cpu", None, precision, asked, ram, "RAM", per_step, threads, adapt)
    estimate = _("about {per_step:.1f} s a step on this CPU, {time} for {steps} steps ({params:,.1f}M UNet parameters "
                 "at {resolution} px; {threads})").format(
        per_step=per_step, time=hours(total), steps=plan.steps.total_steps, params=plan.facts.params["unet"] / 1e6,
        resolution=run.resolution,
        threads=ngettext("{n} torch thread", "{n} torch threads", threads).format(n=threads))
    name = plan.resolved.name if plan.resolved else run.base_model
    if asked == "cpu":
        plan.note("GPU", "warn", _("On the CPU, as asked: {estimate}.").format(estimate=estimate))
    elif total <= CPU_PRACTICAL_HOURS * 3600 and per_step <= CPU_PRACTICAL_SECONDS_PER_STEP:
        plan.note("GPU", "warn", _("No GPU: {name} is small enough to train on the CPU: {estimate}.").format(
                                     name=name, estimate=estimate))
    else:
        plan.note("GPU", "error", _("{no_gpu_message} On the CPU, {name} would take {estimate}. (device cpu forces "
                                    "it anyway.)").format(
                                      no_gpu_message=doctor.no_gpu_message(), name=name, estimate=estimate))
        # Advice for the GPU this person is about to switch to: the memory plan is made for a T4.
        plan.device = DevicePlan("cpu", None, "fp16" if run.mixed_precision == "auto" else precision, asked,
                                 T4_GB, "GPU memory", per_step)


def _cpu_threads(since: tuple | None = None) -> tuple[int, bool]:
    """torch threads for training on this CPU (timing.cpu_training_threads, from the load measured now) and
    whether the loop may lower them when the machine gets busy (not when the user set OMP_NUM_THREADS); decided
    here once: the loop sets them, the CPU estimate assumes them, and a resumed run takes the saved ones."""
    import os

    import torch

    from colabkit import doctor
    from colabkit.train.timing import cpu_training_threads

    user_set = "OMP_NUM_THREADS" in os.environ
    load = None if user_set else doctor.other_cpu_load(since=since)
    threads = cpu_training_threads(doctor.usable_cores(), load, user_set, torch.get_num_threads())
    return threads, not user_set


def _decide_memory(plan: RunPlan) -> None:
    from colabkit.train import memory

    run, facts, dev = plan.run, plan.facts, plan.device
    if facts is None or dev is None:
        return
    on_gpu = dev.memory_of == "GPU memory"

    def estimate(checkpointing: bool):
        return memory.estimate_vram(
            unet_params=facts.params["unet"], te_params=facts.params["text_encoder"] + facts.params["text_encoder_2"],
            vae_params=facts.params["vae"],
            unet_shape=memory.UNetShape.from_config(facts.unet_config, context_tokens=run.max_token_length + 2),
            resolution=run.resolution, batch_size=run.train_batch_size, network_dim=run.network_dim,
            lora_type=run.lora_type, train_text_encoder=run.train_text_encoder, mixed_precision=dev.mixed_precision,
            gradient_checkpointing=checkpointing, cache_latents=True,
            cache_text_embeddings=not run.train_text_encoder and not run.shuffle_tags, optimizer=run.optimizer,
            conv_dim=run.conv_dim if run.lora_type == "LoCon" else None, sample_images=run.sample_every_n_epochs > 0,
            vae_fp16_fix=run.vae_fp16_fix, gpu_gb=dev.memory_gb)

    without = estimate(False)
    where = f"{dev.memory_gb:.1f} GB {dev.memory_of}"
    if run.gradient_checkpointing == "auto":
        plan.gradient_checkpointing = not without.fits()
        why = (_("gradient checkpointing on: without it about {gb:.1f} GB, more than the {where}").format(
            gb=without.total_gb, where=where) if plan.gradient_checkpointing else
               _("gradient checkpointing off: the run fits without it (faster)"))
    else:
        plan.gradient_checkpointing = run.gradient_checkpointing == "on"
        why = _("gradient checkpointing {switch}, as set").format(switch=run.gradient_checkpointing)
    plan.memory = vram = estimate(plan.gradient_checkpointing) if plan.gradient_checkpointing else without
    if vram.fits():
        plan.note("memory", "ok", _("about {total_gb:.1f} GB of {where}; {why}.").format(
                                      total_gb=vram.total_gb, where=where, why=why))
    elif on_gpu:
        plan.note("memory", "error", _("about {total_gb:.1f} GB needed, the GPU has {memory_gb:.1f} GB. ").format(
                                         total_gb=vram.total_gb, memory_gb=dev.memory_gb)
                  + " ".join(vram.advice))
    else:  # the host may swap or the runtime restart; a warning, the person chose the CPU
        plan.note("memory", "warn", _("about {total_gb:.1f} GB needed, this machine has {where}: it may swap or be "
                                      "stopped.").format(total_gb=vram.total_gb, where=where))


# Packages a run needs, by what needs them: checked before step 1, so nothing fails after GPU time was spent.
_OPTIMIZER_PACKAGES = {"AdamW8bit": ("bitsandbytes", "pip install bitsandbytes (the notebook's set-up cell does "
                                     "this), or choose optimizer AdamW"),
                       "Prodigy": ("prodigyopt", "pip install prodigyopt (the notebook's set-up cell does this)")}
_CORE_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "safetensors")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # a module set to None in sys.modules, a broken parent package
        return False


def _check_packages(plan: RunPlan) -> None:
    run = plan.run
    missing = [m for m in _CORE_PACKAGES if not _installed(m)]
    if missing:
        plan.note("packages", "error", _("Training needs {names}: pip install 'colabkit[train]'.").format(
                                           names=', '.join(missing)))
    if run.optimizer in _OPTIMIZER_PACKAGES:
        module, fix = _OPTIMIZER_PACKAGES[run.optimizer]
        if not _installed(module):
            plan.note("packages", "error", _("optimizer {optimizer} needs {module}. Fix: {fix}.").format(
                                               optimizer=run.optimizer, module=module, fix=fix))
    if run.optimizer == "Adafactor" and not _installed("transformers"):
        plan.note("packages", "error", _("optimizer Adafactor needs transformers: pip install 'colabkit[train]'."))
    _check_hub_files(plan)
    plan.can_plot = _installed("matplotlib")
    if not plan.can_plot:
        plan.note("packages", "warn", _("matplotlib is not installed: the loss plot (loss.png) will be skipped. pip "
                                        "install matplotlib to get it."))


def _check_hub_files(plan: RunPlan) -> None:
    """Small files a run fetches once from Hugging Face: said now when they cannot be fetched (offline)."""
    from colabkit.offline import offline
    from colabkit.train.models import download as dl
    from colabkit.train.models.load import FP16_FIX_VAE_REPO, SDXL_CONFIGS, SDXL_REPO, pick_config_dir

    run, resolved = plan.run, plan.resolved
    if not offline():
        return
    needs = []
    if run.vae_fp16_fix:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = isinstance(try_to_load_from_cache(FP16_FIX_VAE_REPO, "config.json"), str)
        except ImportError:
            cached = False
        if not cached:
            needs.append(f"the fp16-fix VAE ({FP16_FIX_VAE_REPO}, 335 MB; or set vae_fp16_fix off)")
    if resolved is not None and resolved.kind == "single_file" and resolved.info is not None:
        tokenizers = dl.cache_dir() / "sdxl-base-1.0-tokenizers" / "tokenizer" / "vocab.json"
        try:
            standard = pick_config_dir(resolved.info) == SDXL_CONFIGS
        except ColabkitError:
            standard = False
        if standard and not tokenizers.is_file():
            needs.append(f"SDXL's tokenizer vocabulary ({SDXL_REPO}, 1.5 MB)")
    hint = ""
    if resolved is not None and resolved.source == "download":  # a preset or link not downloaded yet
        from colabkit.offline import builtin_hint

        needs.append(f"the base model {resolved.name}")
        hint = " " + builtin_hint("base_model")
    if needs:
        plan.note("downloads", "error", _("This runtime is offline (HF_HUB_OFFLINE / COLABKIT_OFFLINE) but the run "
                                          "needs {names}, downloaded once. Connect once, or change the "
                                          "setting.{hint}").format(names=' and '.join(needs), hint=hint))


def _check_drive_space(plan: RunPlan) -> None:
    from colabkit.train import drive_space

    use, present = _drive_use(plan)
    free = shutil.disk_usage(plan.project.root).free
    need = max(0, use.total - present) + drive_space.HEADROOM
    parts = _("model {model}, states {states}, LoRA files and samples {outputs}, Drive's trash {trash}, "
              "caches and headroom {headroom}").format(
        model=drive_space.gb(use.model), states=drive_space.gb(use.states), outputs=drive_space.gb(use.outputs),
        trash=drive_space.gb(use.trash), headroom=drive_space.gb(drive_space.HEADROOM))
    if free < need:
        plan.note("Drive space", "error", _(
            "{free} free on Drive, the run needs about {need} ({parts}). Free some space (empty Drive's bin too: it "
            "counts), or untick keep_model_on_drive.").format(free=drive_space.gb(free), need=drive_space.gb(need),
                                                               parts=parts))
    else:
        plan.note("Drive space", "ok", _("{free} free on Drive, the run needs about {need} ({parts}).").format(
            free=drive_space.gb(free), need=drive_space.gb(need), parts=parts))


def _drive_use(plan: RunPlan) -> "tuple[drive_space.DriveUse, int]":
    """What the whole run puts on Drive (colabkit.train.drive_space), and how much of it is there already."""
    from colabkit.train import drive_space
    from colabkit.train.memory import SDXL_SHAPE, UNetShape

    run, resolved, project = plan.run, plan.resolved, plan.project
    shape = UNetShape.from_config(plan.facts.unet_config) if plan.facts is not None else SDXL_SHAPE
    params = drive_space.lora_params(run.network_dim, shape=shape, lora_type=run.lora_type, conv_dim=run.conv_dim,
                                     train_text_encoder=run.train_text_encoder)
    model = 0
    if resolved is not None and resolved.source == "download" and run.keep_model_on_drive:
        model = (resolved.preset.size if resolved.preset and resolved.preset.size else 7 * 10**9)
    prompts = len([p for p in run.sample_prompts.splitlines() if p.strip()]) or 2
    previews = run.epochs // run.sample_every_n_epochs + 1 if run.sample_every_n_epochs else 0
    use = drive_space.run_use(params=params, optimizer=run.optimizer, epochs=run.epochs,
                              save_every_n_epochs=run.save_every_n_epochs,
                              keep_only_last_n_epochs=run.keep_only_last_n_epochs, samples=previews,
                              sample_bytes=2 * prompts * 3 * run.resolution ** 2, model=model)
    present = 0
    if not plan.config.start_over:  # a run that continues has some of it on Drive already
        for folder in (project.state, project.output):
            present += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
    return use, present


def _fingerprint_and_cache(plan: RunPlan) -> None:
    from colabkit.train import models
    from colabkit.train.cache import LatentCache, cache_root, model_key

    run, resolved, items = plan.run, plan.resolved, plan.items
    plan.fingerprints = {"dataset": plan.scan.fingerprint()}
    if plan.parent is not None:
        plan.fingerprints["continue_from_lora"] = plan.parent.model_hash
    if resolved is None or not (resolved.present or resolved.sha256):  # no fingerprint before the download
        return
    plan.fingerprints["base_model"] = models.fingerprint(resolved)
    key = model_key(plan.fingerprints["base_model"], run.vae_fp16_fix)
    todo = LatentCache(cache_root(plan.project, run.cache_to_drive) / "latents", key).missing(items, run.flip_aug)
    total = len(items) * (2 if run.flip_aug else 1)
    if todo and len(todo) < total:
        plan.note("cache", "ok", _("{n_todo} of {total} latents new or changed: only those will be re-cached.").format(
                                     n_todo=len(todo), total=total))
    elif not todo:
        plan.note("cache", "ok", _("all latents cached from an earlier day"))


def _decide_resume(plan: RunPlan) -> None:
    from colabkit.train.state import StateStore

    store = StateStore(plan.project.state)
    if plan.config.start_over or not store.exists():
        return  # start_over: the saved state is moved aside (never deleted) when training starts
    state, warnings = store.load_latest()
    for w in warnings:
        plan.note("saved state", "warn", w)
    if state is None:
        return
    what = resume_problems(state.config, state.fingerprints, plan.run.to_dict(), plan.fingerprints)
    if what:
        plan.resume = "refused"
        plan.note("resume", "error", _("A saved run exists but it cannot continue: ") + "; ".join(what)
                  + _(". Put the old settings back to continue, or tick start_over (old files are kept)."))
        return
    plan.state = state
    if state.finished and state.step >= plan.total_steps:
        plan.resume = "finished"
        plan.note("resume", "ok", _("This run is finished ({step} steps). Raise epochs to train more.").format(
                                      step=state.step))
    else:
        plan.resume = "continue"
        plan.note("resume", "ok", _("Will continue from step {step}/{total_steps}.").format(
                                      step=state.step, total_steps=plan.total_steps))
        dev = plan.device
        if dev is not None and dev.cpu_threads and state.cpu_threads and state.cpu_threads != dev.cpu_threads:
            # Same threads as the saved run: the thread count changes float summation order (bit-exact resume).
            plan.device = replace(dev, cpu_threads=state.cpu_threads)


def fetch_model(plan: RunPlan, progress=True) -> "ResolvedModel":
    """The plan's model on disk: downloaded now if the plan found it still to download (then fingerprinted
    and checked against the saved run, which could not be done before). Updates the plan."""
    from colabkit.train import models

    if plan.resolved is None:
        raise ColabkitError(_("No base model resolved: run the preflight and fix the base model first."))
    if not plan.resolved.present:
        run = plan.run
        plan.resolved = models.resolve_base_model(run.base_model, models_dir=plan.project.models,
                                                  keep_on_drive=run.keep_model_on_drive, download=True,
                                                  progress=progress, prediction_type=run.prediction_type)
    if "base_model" not in plan.fingerprints:
        plan.fingerprints["base_model"] = models.fingerprint(plan.resolved)
        if plan.state is not None:
            what = resume_problems(plan.state.config, plan.state.fingerprints, plan.run.to_dict(), plan.fingerprints)
            if what:
                raise ColabkitError(_("The saved run cannot be resumed with these settings, because:\n- ")
                                    + "\n- ".join(what) + _("\nPut the old settings back to continue it, or tick "
                                                            "start_over to begin a new run (the old LoRA files and "
                                                            "state are kept)."))
    return plan.resolved


__all__ = ["RunPlan", "DevicePlan", "Note", "make_plan", "fetch_model", "unet_step_flops", "cpu_seconds_per_step"]
