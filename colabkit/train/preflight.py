"""Preflight: seconds, no GPU needed, catches the mistakes that would waste a day's GPU time."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from colabkit.errors import ColabkitError
from colabkit.train.config import TrainConfig, resume_problems, step_plan

T4_GB = 14.75  # what a free Colab T4 leaves usable


@dataclass
class Check:
    name: str
    level: str  # "ok" | "warn" | "error"
    message: str


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)
    plan: object = None  # StepPlan
    resume_step: int | None = None

    def add(self, name: str, level: str, message: str) -> None:
        self.checks.append(Check(name, level, message))

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def rows(self) -> list[dict]:
        mark = {"ok": "OK", "warn": "WARNING", "error": "PROBLEM"}
        return [{"check": c.name, "": mark[c.level], "details": c.message} for c in self.checks]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ColabkitError("Preflight found problems; nothing was started:\n- " +
                                "\n- ".join(f"{c.name}: {c.message}" for c in self.errors))


def is_tiny(base_model: str) -> bool:
    from colabkit.tiny.sdxl import TINY_SDXL_NAME

    return base_model.strip() == TINY_SDXL_NAME


def run_preflight(cfg: TrainConfig) -> PreflightReport:
    from colabkit import doctor
    from colabkit.project import open_project
    from colabkit.train import data, memory, models
    from colabkit.train.cache import LatentCache, cache_root, model_key
    from colabkit.train.state import StateStore

    report = PreflightReport()
    run = cfg.effective()

    # GPU first: said plainly before anything is installed or downloaded.
    gpu = doctor.gpu_info()
    if gpu is None:
        if is_tiny(run.base_model):
            report.add("GPU", "warn", "No GPU: fine for the built-in tiny-sdxl test model, which runs on the CPU.")
        else:
            report.add("GPU", "error", doctor.no_gpu_message())
    else:
        report.add("GPU", "ok", f"{gpu.name}, {gpu.vram_gb:.1f} GB"
                   f"{'' if gpu.native_bf16 else ', fp16 (no native bf16)'}")

    try:
        project = open_project(run.project_name)
    except ColabkitError as e:
        report.add("project", "error", str(e))
        return report
    report.add("project", "ok", str(project.root))

    scan = data.scan(project.dataset, run.resolution)
    n_img = len(scan.items) + len(scan.missing_captions)
    if not n_img:
        report.add("dataset", "error", f"No images in {project.dataset}. Upload your drawings there (PNG/JPG/WEBP) "
                   "and caption them with the dataset notebook.")
        return report
    activation = run.activation_tag or data.activation_tag_of(scan.items)
    with_tag = sum(1 for it in scan.items if activation and activation in data.split_tags(it.caption))
    msg = f"{len(scan.items)} captioned images"
    if activation:
        msg += f"; activation tag '{activation}' in {with_tag} of them"
    report.add("dataset", "ok" if scan.items else "error", msg if scan.items else
               f"{n_img} images but none has a caption. Run the dataset notebook's tagging step.")
    if scan.missing_captions:
        names = ", ".join(p.name for p in scan.missing_captions[:5])
        report.add("captions", "warn", f"{len(scan.missing_captions)} images have no .txt caption and will be "
                   f"skipped: {names}{' ...' if len(scan.missing_captions) > 5 else ''}. Tag them in the dataset notebook.")
    if scan.orphan_captions:
        report.add("captions", "warn", f"{len(scan.orphan_captions)} caption files have no image: "
                   + ", ".join(p.name for p in scan.orphan_captions[:5]))
    if scan.unreadable:
        report.add("images", "warn", "Unreadable, skipped: " +
                   "; ".join(f"{p.name} ({why})" for p, why in scan.unreadable[:5]))
    if activation and with_tag < len(scan.items):
        report.add("activation tag", "warn", f"'{activation}' is missing from {len(scan.items) - with_tag} captions: "
                   "run the dataset notebook's trigger-word step.")
    if not scan.items:
        return report

    plan = step_plan(scan.bucket_sizes, run)
    report.plan = plan
    report.add("steps", "ok" if plan.in_range else "warn", plan.describe())

    try:
        resolved = models.resolve_base_model(run.base_model, models_dir=project.models,
                                             keep_on_drive=run.keep_model_on_drive, download=False)
        report.add("base model", "ok", f"{resolved.name} ({resolved.source})")
    except ColabkitError as e:
        report.add("base model", "error", str(e))
        resolved = None

    if resolved is not None and not is_tiny(run.base_model) and run.resolution < 768:
        report.add("resolution", "warn", f"{run.resolution} px is low for SDXL (trained at 1024): expect soft results.")

    gpu_gb = gpu.vram_gb if gpu else T4_GB
    vram = memory.estimate_vram(
        unet_params=memory.SDXL_UNET_PARAMS, te_params=memory.SDXL_TE_PARAMS, resolution=run.resolution,
        batch_size=run.train_batch_size, network_dim=run.network_dim, lora_type=run.lora_type,
        train_text_encoder=run.train_text_encoder,
        mixed_precision="bf16" if gpu and gpu.native_bf16 else "fp16",
        gradient_checkpointing=run.gradient_checkpointing, cache_latents=True,
        cache_text_embeddings=not run.train_text_encoder and not run.shuffle_tags, optimizer=run.optimizer,
        conv_dim=run.conv_dim if run.lora_type == "LoCon" else None, sample_images=run.sample_every_n_epochs > 0,
        vae_fp16_fix=run.vae_fp16_fix, gpu_gb=gpu_gb)
    if is_tiny(run.base_model):
        report.add("memory", "ok", "tiny-sdxl needs well under 1 GB.")
    elif vram.fits(gpu_gb):
        report.add("memory", "ok", f"about {vram.total_gb:.1f} GB of {gpu_gb:.1f} GB GPU memory")
    else:
        report.add("memory", "error", f"about {vram.total_gb:.1f} GB needed, the GPU has {gpu_gb:.1f} GB. "
                   + " ".join(vram.advice))

    free_gb = shutil.disk_usage(project.root).free / 2**30
    need_gb = 0.5 + (7.0 if resolved is not None and resolved.source == "download" and run.keep_model_on_drive else 0)
    if free_gb < need_gb:
        report.add("Drive space", "error", f"{free_gb:.1f} GB free on Drive, about {need_gb:.1f} GB needed. Free some "
                   "space (Drive's bin counts too) or untick keep_model_on_drive.")
    else:
        report.add("Drive space", "ok", f"{free_gb:.1f} GB free")

    fingerprints = {"dataset": scan.fingerprint()}
    if resolved is not None and (resolved.present or resolved.sha256):  # else no fingerprint before the download
        fingerprints["base_model"] = models.fingerprint(resolved)
        key = model_key(fingerprints["base_model"], run.vae_fp16_fix)
        todo = LatentCache(cache_root(project, run.cache_to_drive) / "latents", key).missing(scan.items, run.flip_aug)
        total = len(scan.items) * (2 if run.flip_aug else 1)
        if todo and len(todo) < total:
            report.add("cache", "ok", f"{len(todo)} of {total} latents new or changed: only those will be re-cached.")
        elif not todo:
            report.add("cache", "ok", "all latents cached from an earlier day")

    store = StateStore(project.state)
    if store.exists() and not cfg.start_over:
        state, warnings = store.load_latest()
        for w in warnings:
            report.add("saved state", "warn", w)
        if state is not None:
            what = resume_problems(state.config, state.fingerprints, run.to_dict(), fingerprints)
            if what:
                report.add("resume", "error", "A saved run exists but it cannot continue: " + "; ".join(what)
                           + ". Put the old settings back to continue, or tick start_over (old files are kept).")
            elif state.finished and state.step >= plan.total_steps:
                report.add("resume", "ok", f"This run is finished ({state.step} steps). Raise epochs to train more.")
            else:
                report.resume_step = state.step
                report.add("resume", "ok", f"Will continue from step {state.step}/{plan.total_steps}.")
    return report
