"""TrainConfig: every training choice in one typed dataclass, validated once at the boundary.

Field names are the training notebook's form-field names (and the CLI's options with dashes).
The step maths and the "recommended values" rules are pure functions beside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from colabkit.choices import StepConfig, setting
from colabkit.i18n import N_, _

# Each choice is one Literal; its tuple of values is derived from it (one list per choice, nowhere restated).
# File-format spellings ("v" for v_prediction in LoRA metadata) are made only where those files are written.
Optimizer = Literal["AdamW8bit", "Prodigy", "AdamW", "Adafactor"]
LrScheduler = Literal["constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear"]
LoraType = Literal["LoRA", "LoCon"]
MixedPrecision = Literal["auto", "fp16", "bf16", "no"]
PredictionType = Literal["auto", "epsilon", "v_prediction"]
Switch = Literal["auto", "on", "off"]  # auto: decided in the run plan from the model and the device
MaxTokenLength = Literal[75, 150, 225]  # caption tokens, encoded in 75-token chunks (kohya's max_token_length)

OPTIMIZERS = typing.get_args(Optimizer)
SCHEDULERS = typing.get_args(LrScheduler)
LORA_TYPES = typing.get_args(LoraType)
PRECISIONS = typing.get_args(MixedPrecision)
PREDICTIONS = typing.get_args(PredictionType)
SWITCHES = typing.get_args(Switch)
MAX_TOKEN_LENGTHS = typing.get_args(MaxTokenLength)
TARGET_STEPS = (300, 500)  # what the guides aim for with 10-100 images

# Changing these between days would make "resume" a different run: refused unless start_over.
# Raising epochs or max_train_steps is allowed: the run continues, its LR schedule stretched to the new end.
RESUME_CRITICAL = (
    "base_model", "resolution", "num_repeats", "train_batch_size", "gradient_accumulation_steps", "optimizer",
    "recommended_values", "unet_lr", "text_encoder_lr", "lr_scheduler", "lr_warmup_ratio", "lr_scheduler_num_cycles",
    "network_dim", "network_alpha", "conv_dim", "conv_alpha", "lora_type", "shuffle_tags", "keep_tokens", "flip_aug",
    "seed", "min_snr_gamma", "noise_offset", "multires_noise_iterations", "multires_noise_discount",
    "prediction_type", "mixed_precision", "max_grad_norm", "vae_fp16_fix", "zero_terminal_snr", "max_token_length",
    "continue_from_lora", "prior_loss_weight",
)
# What a run saved before a resume-critical setting existed actually did: compared as that value, so an old
# run continues only with the behaviour it started with (captions were cut at 75 tokens before the setting).
LEGACY_VALUES = {"zero_terminal_snr": "auto", "max_token_length": 75, "continue_from_lora": "", "prior_loss_weight": 1.0}


@dataclass
class TrainConfig(StepConfig):
    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _): its dataset/ holds the images "
        "and captions, its output/ receives the LoRA."))
    base_model: str = setting("SDXL base 1.0", N_(
        "The SDXL model to train on: a preset (SDXL base 1.0, Pony Diffusion V6 XL, ...), a link to a .safetensors "
        "checkpoint, a path on Drive, or tiny-sdxl (built in, no download, runs on a CPU; random weights: to try "
        "the flow, not a real LoRA)."))
    resolution: int = setting(1024, N_(
        "Training resolution in pixels, a multiple of 64 (1024 for SDXL); images are sorted into buckets of about "
        "this area."))
    num_repeats: int = setting(10, N_(
        "How often each image is seen per epoch. Few images: more repeats (images x repeats / batch x epochs = "
        "steps; 300-500 steps is the usual target)."))
    epochs: int = setting(10, N_(
        "How many rounds over the dataset. A LoRA file is saved after each, so you can pick the best one."))
    max_train_steps: int = setting(0, N_(
        "Above 0: train this many steps instead of counting epochs (the last epoch may be partial). 0: use epochs."))
    train_batch_size: int = setting(2, N_(
        "Images per step. Bigger is faster per image but needs more GPU memory (2 is safe on a T4 at 1024 px)."))
    gradient_accumulation_steps: int = setting(1, N_(
        "Add up the gradients of this many batches before each update: a bigger effective batch without more "
        "memory."))
    optimizer: Optimizer = setting("AdamW8bit", N_(
        "AdamW8bit is the steady choice for many images; Prodigy finds its own learning rate and suits small "
        "datasets (with recommended_values on it uses lr 1.0 and alpha = dim)."))
    recommended_values: bool = setting(True, N_(
        "Use the proven settings for the chosen optimizer (its weight decay and betas; for Prodigy, lr 1.0 and "
        "alpha = dim)."))
    unet_lr: float = setting(1e-4, N_(
        "Learning rate of the UNet's LoRA layers (1e-4 is usual for AdamW8bit; Prodigy with recommended values "
        "uses 1.0)."))
    text_encoder_lr: float = setting(0.0, N_(
        "Learning rate of the text encoders' LoRA layers; 0 keeps the text encoders frozen (less memory, usual for "
        "SDXL)."))
    lr_scheduler: LrScheduler = setting("cosine", N_(
        "How the learning rate changes during the run: cosine slows down smoothly towards the end; constant keeps "
        "it the same."))
    lr_warmup_ratio: float = setting(0.05, N_(
        "Share of the steps (0 to below 1) over which the learning rate rises from 0 at the start."))
    lr_scheduler_num_cycles: int = setting(3, N_(
        "Restarts of cosine_with_restarts: how many times the learning rate goes back up."))
    network_dim: int = setting(16, N_(
        "The LoRA's capacity (rank). 16 suits a style or a character; more is rarely better and makes bigger "
        "files."))
    network_alpha: int = setting(8, N_(
        "Scales the LoRA's strength while training; half of network_dim (8 for 16) or equal to it is usual."))
    lora_type: LoraType = setting("LoRA", N_(
        "LoRA trains the attention layers; LoCon also trains the convolution layers: stronger on textures and line "
        "quality."))
    conv_dim: int = setting(8, N_("LoCon only: the capacity (rank) of the convolution layers."))
    conv_alpha: int = setting(4, N_("LoCon only: the alpha of the convolution layers (half of conv_dim is usual)."))
    shuffle_tags: bool = setting(True, N_(
        "Shuffle the caption's tags each time, keeping the first keep_tokens in front, so the model does not learn "
        "the order of the tags."))
    keep_tokens: int = setting(1, N_(
        "How many tags at the start of each caption stay in place when shuffling (1: your activation tag)."))
    flip_aug: bool = setting(False, N_(
        "Also train on mirrored images: more variety, but wrong for asymmetric designs and text."))
    min_snr_gamma: float = setting(5.0, N_(
        "Min-SNR weighting of the loss: 5 trains faster and steadier; 0 turns it off."))
    noise_offset: float = setting(0.0357, N_(
        "Extra noise offset that helps the LoRA make very dark and very bright pictures; 0 turns it off."))
    multires_noise_iterations: int = setting(0, N_(
        "Multi-resolution (pyramid) noise: how many levels to add; 0 turns it off."))
    multires_noise_discount: float = setting(0.3, N_(
        "Multi-resolution noise: how much weaker each coarser level is (0.3 is usual)."))
    prediction_type: PredictionType = setting("auto", N_(
        "auto reads it from the checkpoint; pick v_prediction for a v-pred model that does not say so."))
    zero_terminal_snr: Switch = setting("auto", N_(
        "auto: on when the model says it was trained with zero-terminal SNR, and with v-prediction."))
    max_token_length: MaxTokenLength = setting(225, N_(
        "Caption tokens used (75 per chunk): long WD14 tag lists need 150-225, or their last tags are cut."))
    mixed_precision: MixedPrecision = setting("auto", N_(
        "Number format for training: auto picks bf16 where the GPU supports it, else fp16 (T4); no trains in full "
        "precision (slow)."))
    gradient_checkpointing: Switch = setting("auto", N_(
        "auto: on only when the run would not fit the GPU without it (slower, much less memory)."))
    max_grad_norm: float = setting(1.0, N_(
        "Clip each step's gradient to this size so one odd batch cannot spoil the run; 0 turns it off."))
    seed: int = setting(42, N_("Random seed: the same seed and settings give the same run."))
    vae_fp16_fix: bool = setting(False, N_(
        "Use the fp16-safe SDXL VAE (madebyollin/sdxl-vae-fp16-fix, downloaded once) instead of the model's own, "
        "which otherwise runs in float32: faster caching, same quality."))
    activation_tag: str = setting("", N_(
        "Your trigger word; empty: taken from the captions (the first tag they share)."))
    save_every_n_epochs: int = setting(1, N_("Save a LoRA file every this many epochs (1: after each epoch)."))
    keep_only_last_n_epochs: int = setting(10, N_(
        "Keep only this many of the newest epoch files in output/ (older epoch files are deleted; the final LoRA "
        "is always kept)."))
    sample_prompts: str = setting("", N_(
        "One prompt per line for the preview images after each epoch; empty: your activation tag plus your "
        "dataset's most frequent tags."))
    sample_every_n_epochs: int = setting(1, N_("Make preview images every this many epochs; 0: none."))
    sample_steps: int = setting(20, N_("Sampling steps for each preview image."))
    sample_seed: int = setting(1234, N_(
        "Seed of the preview images: the same for every epoch, so you can watch your style appear."))
    budget_hours: float = setting(3.0, N_(
        "Stop (with everything saved) before this many GPU hours are used today. Colab does not publish its free "
        "limits and runtimes are often cut after 2-3 hours: 3 is a common start; a run cut earlier continues from "
        "its last saved state."))
    budget_margin_minutes: float = setting(10.0, N_(
        "Minutes kept in reserve before the budget ends, for the final save."))
    save_state_every_n_steps: int = setting(0, N_(
        "Save the training state to Drive every this many steps; 0: every save_state_every_minutes instead."))
    save_state_every_minutes: float = setting(10.0, N_(
        "Save the training state to Drive this often (minutes), so a lost runtime loses at most this much work."))
    keep_model_on_drive: bool = setting(True, N_(
        "Keep the downloaded model in MyDrive/Loras/_models/ (about 7 GB) so tomorrow skips the download."))
    cache_to_drive: bool = setting(True, N_(
        "Keep the cached latents and text embeddings on Drive, so a resumed run does not compute them again."))
    start_over: bool = setting(False, N_(
        "Begin a new run instead of continuing a saved one (the old state and LoRA files are moved to "
        "training/state-old-<date>/, nothing is deleted)."))
    prior_loss_weight: float = setting(1.0, N_(
        "Loss weight of the regularization images (Loras/<project>/reg/), as sd-scripts' prior_loss_weight: 1 "
        "weighs them like your drawings. Without a reg/ folder it does nothing."))
    continue_from_lora: str = setting("", N_(
        "A LoRA .safetensors to start from instead of a fresh LoRA (a path, a Drive path, or a file name in the "
        "project's output/): a new run that continues it, e.g. with new drawings. Its rank, alpha and type are used."))

    # -- the boundary -------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if isinstance(self.gradient_checkpointing, bool):  # the setting was a bool before "auto" existed
            self.gradient_checkpointing = "on" if self.gradient_checkpointing else "off"
        super().__post_init__()  # the project name, the Literal choices, then _problems

    def _problems(self):
        return _rules(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    # -- derived values ------------------------------------------------------------------------
    @property
    def train_text_encoder(self) -> bool:
        return self.text_encoder_lr > 0

    def effective(self) -> "TrainConfig":
        """The config with the recommended values applied (what actually trains)."""
        if not self.recommended_values:
            return self
        changes: dict[str, Any] = {}
        if self.optimizer == "Prodigy":
            # Prodigy estimates its own step size: lr is a multiplier, ~1.0; alpha = dim keeps scale 1.
            changes.update(unet_lr=1.0 if self.unet_lr < 0.5 else self.unet_lr, network_alpha=self.network_dim,
                           conv_alpha=self.conv_dim)
            if self.train_text_encoder:
                changes["text_encoder_lr"] = changes["unet_lr"]
        return dataclasses.replace(self, **changes) if changes else self

    def optimizer_kwargs(self) -> dict[str, Any]:
        if not self.recommended_values:
            return {}
        if self.optimizer == "Prodigy":
            return dict(decouple=True, weight_decay=0.01, d_coef=2, use_bias_correction=True, safeguard_warmup=True)
        if self.optimizer == "AdamW8bit":
            return dict(weight_decay=0.1, betas=(0.9, 0.99))
        if self.optimizer == "AdamW":
            return dict(weight_decay=0.01)
        return {}


def _rules(c: TrainConfig):
    """What the types cannot say: ranges and combinations."""
    if c.resolution < 64 or c.resolution % 64:
        yield _("resolution must be a multiple of 64 (1024 for SDXL); got {resolution}.").format(
                  resolution=c.resolution)
    for name in ("num_repeats", "epochs", "train_batch_size", "gradient_accumulation_steps", "network_dim",
                 "save_every_n_epochs", "keep_only_last_n_epochs", "sample_steps", "conv_dim"):
        if getattr(c, name) < 1:
            yield _("{name} must be at least 1; got {value}.").format(name=name, value=getattr(c, name))
    for name in ("max_train_steps", "sample_every_n_epochs", "save_state_every_n_steps", "multires_noise_iterations",
                 "keep_tokens"):
        if getattr(c, name) < 0:
            yield _("{name} cannot be negative; got {value}.").format(name=name, value=getattr(c, name))
    if c.network_alpha <= 0 or c.conv_alpha <= 0:
        yield _("network_alpha and conv_alpha must be positive (alpha = dim/2 or dim are usual).")
    if c.unet_lr <= 0:
        yield _("unet_lr must be positive; got {unet_lr}.").format(unet_lr=c.unet_lr)
    if c.text_encoder_lr < 0:
        yield _("text_encoder_lr cannot be negative (0 keeps the text encoders frozen).")
    if not 0 <= c.lr_warmup_ratio < 1:
        yield _("lr_warmup_ratio must be in [0, 1).")
    if c.budget_hours <= 0:
        yield _("budget_hours must be positive (about 3 on the free tier).")
    if c.budget_margin_minutes < 0 or c.save_state_every_minutes <= 0:
        yield _("budget_margin_minutes cannot be negative and save_state_every_minutes must be positive.")
    if c.prior_loss_weight < 0:
        yield _("prior_loss_weight cannot be negative; got {prior_loss_weight}.").format(
                  prior_loss_weight=c.prior_loss_weight)
    if c.noise_offset < 0 or c.min_snr_gamma < 0:
        yield _("noise_offset and min_snr_gamma cannot be negative (0 turns them off).")
    if not c.base_model.strip():
        yield _("base_model is empty: pick a preset, paste a URL or a path to an SDXL checkpoint.")


# -- step maths (pure) ----------------------------------------------------------------------------

def steps_for(bucket_repeats: list[int], batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps in one epoch from the image-repeats of each bucket: a batch never mixes buckets, so each
    bucket rounds up on its own."""
    batches = sum(math.ceil(n / batch_size) for n in bucket_repeats if n)
    return math.ceil(batches / grad_accum)


def steps_per_epoch(bucket_sizes: list[int], num_repeats: int, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps in one epoch when every image trains ``num_repeats`` times."""
    return steps_for([n * num_repeats for n in bucket_sizes], batch_size, grad_accum)


def total_steps(bucket_sizes: list[int], num_repeats: int, batch_size: int, epochs: int,
                grad_accum: int = 1, max_train_steps: int = 0) -> int:
    if max_train_steps:
        return max_train_steps
    return epochs * steps_per_epoch(bucket_sizes, num_repeats, batch_size, grad_accum)


def epochs_for(bucket_sizes: list[int], num_repeats: int, batch_size: int, grad_accum: int,
               epochs: int, max_train_steps: int) -> int:
    """Epochs actually run: in step units, as many as the steps need (the last one partial)."""
    if not max_train_steps:
        return epochs
    per = steps_per_epoch(bucket_sizes, num_repeats, batch_size, grad_accum)
    return math.ceil(max_train_steps / per) if per else 0


@dataclass(frozen=True)
class StepPlan:
    images: int
    num_repeats: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    suggestion: str | None = None
    in_range: bool = True
    notes: list[str] = field(default_factory=list)
    # (folder, images, repeats each) when some images lie in <repeats>_<name>/ sub-folders ("": dataset/ itself)
    folders: tuple[tuple[str, int, int], ...] = ()
    reg: tuple[int, int, float] | None = None  # (regularization images, their image-repeats an epoch, loss weight)

    @property
    def image_repeats(self) -> int:
        """Images x repeats in one epoch, summed over the folders."""
        return sum(n * r for _, n, r in self.folders) if self.folders else self.images * self.num_repeats

    def describe(self) -> str:
        if self.folders:
            parts = [_("{folder}: {images} images x {repeats} repeats = {product}").format(
                folder=name or "dataset/", images=n, repeats=r, product=n * r) for name, n, r in self.folders]
            if self.reg:
                n, times, weight = self.reg
                parts.append(_("reg/: {images} regularization images, {times} image-repeats (balanced to the "
                               "training images' as sd-scripts does; loss weight {weight:g})").format(
                    images=n, times=times, weight=weight))
            total = self.image_repeats + (self.reg[1] if self.reg else 0)
            line = "; ".join(parts) + "\n" + _("{total} image-repeats / batch {batch} = {steps} steps per epoch").format(
                total=total, batch=self.batch_size, steps=self.steps_per_epoch)
        else:
            line = (_("{images} images x {repeats} repeats / batch {batch} = "
                    "{per_epoch} steps per epoch").format(images=self.images, repeats=self.num_repeats, batch=self.batch_size,
                                                      per_epoch=self.steps_per_epoch))
        if self.total_steps == self.steps_per_epoch * self.epochs:
            line += _(" x {epochs} epochs = {total} steps").format(epochs=self.epochs, total=self.total_steps)
        else:  # max_train_steps: the last epoch is cut short, say so rather than print wrong arithmetic
            line += _("; max_train_steps {total} = {epochs} epochs, the last one partial").format(
                total=self.total_steps, epochs=self.epochs)
        return line + (f"\n{self.suggestion}" if self.suggestion else "")


def suggest_repeats(bucket_sizes: list[int], batch_size: int, epochs: int, grad_accum: int = 1,
                    target: tuple[int, int] = TARGET_STEPS) -> int | None:
    """The num_repeats whose total lands in the target range, closest to its middle (None: impossible)."""
    lo, hi = target
    mid = (lo + hi) / 2
    best = None
    for r in range(1, 201):
        t = total_steps(bucket_sizes, r, batch_size, epochs, grad_accum)
        if lo <= t <= hi and (best is None or abs(t - mid) < abs(best[1] - mid)):
            best = (r, t)
    return best[0] if best else None


def suggest_epochs(per_epoch: int, target: tuple[int, int] = TARGET_STEPS) -> int | None:
    """The epochs whose total lands in the target range, closest to its middle (None: impossible)."""
    lo, hi = target
    fits = [e for e in range(1, 1001) if lo <= e * per_epoch <= hi]
    return min(fits, key=lambda e: abs(e * per_epoch - (lo + hi) / 2)) if fits else None


def step_plan(bucket_sizes: list[int], cfg: TrainConfig, bucket_repeats: list[int] | None = None,
              folders: list | None = None, reg: tuple[int, int] | None = None) -> StepPlan:
    """The step maths. ``bucket_repeats`` / ``folders`` (data.Scan.bucket_repeats(num_repeats) / .folders()):
    given when some images lie in <repeats>_<name>/ sub-folders, each trained its own repeats; then the
    300-500 suggestion is in epochs, the one setting that scales the whole."""
    if bucket_repeats is not None and folders:
        return _folder_step_plan(bucket_sizes, cfg, bucket_repeats, folders, reg)
    per = steps_per_epoch(bucket_sizes, cfg.num_repeats, cfg.train_batch_size, cfg.gradient_accumulation_steps)
    epochs = epochs_for(bucket_sizes, cfg.num_repeats, cfg.train_batch_size, cfg.gradient_accumulation_steps,
                        cfg.epochs, cfg.max_train_steps)
    total = total_steps(bucket_sizes, cfg.num_repeats, cfg.train_batch_size, cfg.epochs,
                        cfg.gradient_accumulation_steps, cfg.max_train_steps)
    lo, hi = TARGET_STEPS
    suggestion = None
    ok = lo <= total <= hi
    if not ok and not cfg.max_train_steps:
        r = suggest_repeats(bucket_sizes, cfg.train_batch_size, cfg.epochs, cfg.gradient_accumulation_steps)
        side = "few" if total < lo else "many"
        if r is not None:
            t = total_steps(bucket_sizes, r, cfg.train_batch_size, cfg.epochs, cfg.gradient_accumulation_steps)
            suggestion = (_("{total} steps is fewer than the usual {lo}-{hi}: num_repeats = {r} gives {t} steps.")
                          if side == "few" else
                          _("{total} steps is more than the usual {lo}-{hi}: num_repeats = {r} gives {t} steps.")
                          ).format(total=total, lo=lo, hi=hi, r=r, t=t)
        else:
            suggestion = _("{total} steps is outside the usual {lo}-{hi}; no num_repeats reaches it with {epochs} "
                           "epochs and batch {batch}: change epochs or batch size.").format(
                total=total, lo=lo, hi=hi, epochs=cfg.epochs, batch=cfg.train_batch_size)
    return StepPlan(images=sum(bucket_sizes), num_repeats=cfg.num_repeats, batch_size=cfg.train_batch_size,
                    epochs=epochs, steps_per_epoch=per, total_steps=total, suggestion=suggestion, in_range=ok)


def _folder_step_plan(bucket_sizes: list[int], cfg: TrainConfig, bucket_repeats: list[int], folders,
                      reg: tuple[int, int] | None = None) -> StepPlan:
    per = steps_for(bucket_repeats, cfg.train_batch_size, cfg.gradient_accumulation_steps)
    if cfg.max_train_steps:
        total, epochs = cfg.max_train_steps, (math.ceil(cfg.max_train_steps / per) if per else 0)
    else:
        total, epochs = cfg.epochs * per, cfg.epochs
    lo, hi = TARGET_STEPS
    ok = lo <= total <= hi
    suggestion = None
    if not ok and not cfg.max_train_steps:
        e = suggest_epochs(per)
        if e is not None:
            suggestion = _("{total} steps is outside the usual {lo}-{hi}: epochs = {epochs} gives {steps} steps "
                           "(each folder keeps its repeats).").format(total=total, lo=lo, hi=hi, epochs=e,
                                                                     steps=e * per)
        else:
            suggestion = _("{total} steps is outside the usual {lo}-{hi}; no number of epochs reaches it with "
                           "these folders and batch {batch}: change the folders' repeats or the batch size.").format(
                total=total, lo=lo, hi=hi, batch=cfg.train_batch_size)
    rows = tuple((f.name, f.images, f.times(cfg.num_repeats)) for f in folders)
    return StepPlan(images=sum(bucket_sizes), num_repeats=cfg.num_repeats, batch_size=cfg.train_batch_size,
                    epochs=epochs, steps_per_epoch=per, total_steps=total, suggestion=suggestion, in_range=ok,
                    folders=rows, reg=(reg[0], reg[1], cfg.prior_loss_weight) if reg else None)


def diff_critical(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The resume-critical settings that differ between a saved run and this one."""
    def then(k):
        return old.get(k, LEGACY_VALUES.get(k))

    return {k: (then(k), new.get(k)) for k in RESUME_CRITICAL if then(k) != new.get(k)}


def resume_problems(saved_config: dict[str, Any], saved_fingerprints: dict[str, str], config: dict[str, Any],
                    fingerprints: dict[str, str]) -> list[str]:
    """Why a saved run cannot continue with this config (empty: it can). Fingerprints not known yet
    (a base model still to download) are not compared."""
    lines = [_("{name}: {old!r} then, {new!r} now").format(name=k, old=old, new=new)
             for k, (old, new) in diff_critical(saved_config, config).items()]
    if "dataset" in fingerprints and saved_fingerprints.get("dataset") != fingerprints["dataset"]:
        lines.append(_("the dataset (images or captions) changed since the run started"))
    if "base_model" in fingerprints and saved_fingerprints.get("base_model") != fingerprints["base_model"]:
        lines.append(_("the base model file is a different one"))
    if saved_fingerprints.get("continue_from_lora", "") != fingerprints.get("continue_from_lora", ""):
        lines.append(_("the continue_from_lora file is a different one"))
    return lines
