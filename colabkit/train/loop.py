"""The training run, top to bottom: data, resume check, models, caches, LoRA, the loop, outputs.

Knows nothing of Colab or notebooks: progress goes to a Reporter, the budget clock is handed in.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from colabkit import files
from colabkit.errors import ColabkitError
from colabkit.i18n import _
from colabkit.project import Project
from colabkit.train import data, lora, models
from colabkit.train.budget import Budget, hms
from colabkit.train.cache import (LatentCache, TextCache, cache_root, encode_prompts, model_key,
                                  needed_token_length, time_ids)
from colabkit.train.config import TrainConfig
from colabkit.train.cpu_threads import LoadWatch
from colabkit.train.noise import loss_weights, noisy_and_target, sample_noise, step_seed
from colabkit.train.optim import make_lr_scheduler, make_optimizer
from colabkit.train.outputs import epoch_loras, lora_name, run_loras
from colabkit.train.plan import RunPlan, fetch_model, make_plan
from colabkit.train.plots import save_loss_plot
from colabkit.train.state import StateStore, TrainState, capture_rng, restore_rng


class Reporter:
    """What a run tells the outside world. The default says nothing."""

    def stage(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def progress(self, iterable, desc: str, total: int | None = None):
        return iterable
    def start(self, start_step: int, total_steps: int) -> None: ...
    def step(self, step: int, loss: float, lr: float, budget_left_s: float) -> None: ...
    def skipped(self, step: int, count: int) -> None:
        """Step ``step`` was skipped (a non-finite loss or gradient); ``count`` skipped so far in this run."""
    def epoch_end(self, epoch: int, lora_path: Path | None, grid: Path | None, loss_plot: Path | None) -> None: ...
    def close(self) -> None: ...


@dataclass
class TrainResult:
    status: str  # "finished" | "stopped" | "already finished" | "diverged"
    message: str
    step: int
    total_steps: int
    lora_files: list[Path] = field(default_factory=list)
    final_lora: Path | None = None
    sample_grids: list[Path] = field(default_factory=list)
    loss_plot: Path | None = None
    state_folder: Path | None = None
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient, this run and the days before it


# Steps in a row whose loss (or, without a grad scaler, gradient) is not finite before the run stops: a few are
# noise (one bad batch); this many mean the model or the settings diverged, and more steps would only burn budget.
MAX_NONFINITE_IN_A_ROW = 5


def train(plan: RunPlan | TrainConfig, reporter: Reporter | None = None, budget: Budget | None = None,
          device: str | None = None) -> TrainResult:
    """Train (or resume, or say it is finished) what ``plan`` decided. A TrainConfig is planned first (with
    ``device``); a plan with problems is refused before anything is loaded."""
    import torch

    rep = reporter or Reporter()
    if isinstance(plan, TrainConfig):
        plan = make_plan(plan, device=device)
    plan.raise_if_errors()
    project, run, items, total = plan.project, plan.run, plan.items, plan.total_steps
    per_epoch, activation, prediction = plan.steps.steps_per_epoch, plan.activation, plan.prediction_type

    # -- 1. resume, or start -------------------------------------------------------------------------
    rep.stage(plan.steps.describe())
    store = StateStore(project.state)
    if plan.config.start_over:
        moved = store.archive(outputs=[*run_loras(project), lora_name(project).with_suffix(".json")])
        if moved:
            rep.stage(_("start_over: the previous run's state and LoRA files were moved to {name} (nothing deleted).").format(
                          name=moved.name))
    for note in plan.notes:
        if note.level == "warn":
            rep.warn(f"{_(note.name)}: {note.message}")
    state = plan.state
    if plan.resume == "finished":  # said before any model is downloaded or loaded
        return TrainResult("already finished", _(
            "This run is already finished ({step}/{total} steps). Raise epochs to train further, or set start_over "
            "to train again from scratch.").format(step=state.step, total=total),
                           state.step, total, run_loras(project), lora_name(project)
                           if lora_name(project).exists() else None, state_folder=state.folder)
    # The budget counts from the runtime's start (Colab's clock runs from there: installs, downloads, earlier runs
    # in this runtime). Decided before anything is downloaded or loaded: a runtime with less than the safety margin
    # left would spend it loading the model for a step or two, and risk Colab's cut in the middle.
    from colabkit.colab import runtime_start_time

    budget = budget or Budget(start=runtime_start_time(), hours=run.budget_hours,
                              margin_s=run.budget_margin_minutes * 60)
    if not budget.can_start():
        msg = _("Not started: this runtime has {left} left of the {budget:g} h budget, less than the {margin} "
                "safety margin, so nothing was loaded{saved}. Run the notebook again in a new runtime (tomorrow, "
                "once Colab gives you a GPU again) to continue.").format(
            left=hms(budget.left_s()), budget=run.budget_hours, margin=hms(budget.margin_s),
            saved=_(" (your state at step {step} is kept)").format(step=state.step) if state else "")
        return TrainResult("stopped", msg, state.step if state else 0, total, run_loras(project), None,
                           state_folder=state.folder if state else None)
    resolved = fetch_model(plan)  # downloads only what the plan found still to download
    fingerprints = plan.fingerprints
    if state is not None:
        rep.stage(_("Resuming from {summary} (saved state {name}).").format(
                      summary=state.summary, name=state.folder.name))
    start_step = state.step if state else 0

    # -- 2. the models --------------------------------------------------------------------------------
    accelerator = make_accelerator(plan)
    scaler = grad_scaler(accelerator)
    dev = accelerator.device
    if plan.device.cpu_threads:
        torch.set_num_threads(plan.device.cpu_threads)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    rep.stage(_("Loading {name} on {dev}").format(name=resolved.name, dev=dev) + ("" if accelerator.mixed_precision == "no"
                                                    else _(" ({mixed_precision} mixed precision)").format(
                                                             mixed_precision=accelerator.mixed_precision)) + ".")
    parts = models.load_sdxl(resolved, dtype=weight_dtype, device="cpu", vae_fp16_fix=run.vae_fp16_fix,
                             prediction_type=prediction, zero_terminal_snr=plan.zero_terminal_snr)

    # -- 3. caches: latents (VAE leaves afterwards), text embeddings when the encoders are frozen ----
    cache_dir = cache_root(project, run.cache_to_drive)
    key = model_key(fingerprints["base_model"], run.vae_fp16_fix)
    latent_cache = LatentCache(cache_dir / "latents", key)
    todo = latent_cache.missing(items, run.flip_aug)
    if todo and accelerator.is_main_process:
        vae = models.load_vae_for_caching(parts, fp16_fix=run.vae_fp16_fix).to(dev)
        rep.stage(_("Caching {n_todo} latents (once; kept in {name}/ for the next days).").format(
                      n_todo=len(todo), name=cache_dir.name))
        latent_cache.build(items, run.flip_aug, vae, dev, vae.dtype,
                           progress=lambda it: rep.progress(it, _("caching latents"), len(todo)))
        vae.to("cpu")
        del vae
    accelerator.wait_for_everyone()
    latents = latent_cache.load(items, run.flip_aug)

    text_encoders = [parts.text_encoder, parts.text_encoder_2]
    tokenizers = [parts.tokenizer, parts.tokenizer_2]
    # Captions are padded to the chunks the longest one needs (<= max_token_length), not always to 227 positions:
    # a function of the dataset and the model alone, so a resumed run decides the same.
    token_length = needed_token_length(parts.tokenizer, [it.caption for it in items], run.max_token_length)
    if state is not None and state.token_length is not None and state.token_length != token_length:
        # a run saved before captions were padded to need: it goes on with the conditioning it started with
        rep.stage(_("Captions are padded to {n} tokens, as this run did when it started.").format(
            n=state.token_length))
        token_length = state.token_length
    # The forward process (noisy latents, target, loss) runs in fp32 and only the UNet's input is cast to the
    # weight dtype. A run saved before that (no ``forward_fp32`` in its state) goes on as it started: in the weight
    # dtype, so a resume never changes the maths half-way through a run.
    forward_dtype = torch.float32 if state is None or state.forward_fp32 else weight_dtype
    for te in text_encoders:
        te.requires_grad_(False)
    cache_text = not run.train_text_encoder and not run.shuffle_tags
    text_cache = None
    if cache_text:
        text_cache = TextCache(cache_dir / "text", key, max_token_length=token_length)
        for te in text_encoders:
            te.to(dev)
        text_cache.build([it.caption for it in items], tokenizers, text_encoders, dev,
                         progress=lambda it: rep.progress(it, "caching text embeddings"))
        for te in text_encoders:
            te.to("cpu")  # they leave the GPU; back only for sample images
        text_embeds = text_cache.load([it.caption for it in items])
    else:
        for te in text_encoders:
            te.to(dev)
    if dev.type == "cuda":  # the VAE and text encoders just left the GPU; on the CPU a full gc costs ~0.3 s
        _free_memory()

    # -- 4. LoRA on the UNet (and text encoders), optimizer, schedule ----------------------------------
    unet = parts.unet
    unet.requires_grad_(False)
    torch.manual_seed(run.seed)  # LoRA's initial weights
    lora.add_lora(unet, lora.unet_targets(unet, run.lora_type), run.network_dim, run.network_alpha,
                  conv_rank=run.conv_dim, conv_alpha=run.conv_alpha)
    trained = {"unet": unet}
    if run.train_text_encoder:
        for name, te in (("te1", parts.text_encoder), ("te2", parts.text_encoder_2)):
            lora.add_lora(te, lora.text_encoder_targets(te), run.network_dim, run.network_alpha)
            trained[name] = te
    lora.continue_from.apply_parent(plan.parent, trained)  # continue_from_lora: the file's weights (None: none)
    for model in trained.values():
        for p in lora.lora_parameters(model):
            p.data = p.data.float()  # LoRA weights train in fp32 on fp16 base weights (the grad scaler needs it)
    if plan.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if run.train_text_encoder:
            for te in text_encoders:
                checkpoint_text_encoder(te)
    unet.to(dev)
    groups = [{"params": lora.lora_parameters(unet), "lr": run.unet_lr}]
    if run.train_text_encoder:
        groups.append({"params": [p for m in text_encoders for p in lora.lora_parameters(m)],
                       "lr": run.text_encoder_lr})
    params = [p for g_ in groups for p in g_["params"]]
    optimizer = make_optimizer(run, groups)
    lr_scheduler = make_lr_scheduler(run, optimizer, total)
    # The optimizer is not handed to accelerate: ``optimizer_step`` drives the grad scaler and the skip rule itself.
    unet = accelerator.prepare(unet)
    if run.train_text_encoder:  # several GPUs: trained encoders are wrapped too, so their gradients are averaged
        text_encoders = list(accelerator.prepare(*text_encoders))

    if state is not None:
        _load_trainable(trained, state.trainable)
        optimizer.load_state_dict(state.optimizer)
        lr_scheduler.load_state_dict(state.lr_scheduler)
        if state.scaler and scaler is not None:
            scaler.load_state_dict(state.scaler)
        restore_rng(state.rng)
    losses = list(state.losses) if state else []
    seconds_before = state.seconds_trained if state else 0.0
    skipped_total = state.skipped_steps if state else 0

    def save_state(step: int, finished: bool = False) -> Path | None:
        if not accelerator.is_main_process:  # one writer; the others wait for it
            accelerator.wait_for_everyone()
            return None
        t = time.time()
        st = TrainState(step=step, config=run.to_dict(), fingerprints=fingerprints, total_steps=total,
                        losses=losses, trainable=_trainable(trained), optimizer=optimizer.state_dict(),
                        lr_scheduler=lr_scheduler.state_dict(),
                        scaler=scaler.state_dict() if scaler is not None else None,
                        rng=capture_rng(), finished=finished, cpu_threads=threads,
                        seconds_trained=seconds_before + time.time() - t_start, token_length=token_length,
                        forward_fp32=forward_dtype == torch.float32, skipped_steps=skipped_total)
        folder = store.save(st)
        budget.record_save(time.time() - t)
        accelerator.wait_for_everyone()
        return folder

    # -- 5. the loop --------------------------------------------------------------------------------
    n_train_t = parts.noise_scheduler.config.num_train_timesteps
    t_start = time.time()
    last_state_save = time.time()
    epoch_cache: dict[int, list] = {}
    grids: list[Path] = []
    loss_plot = None
    step = start_step
    stopped = False
    in_a_row: list[int] = []  # the steps just skipped that count toward MAX_NONFINITE_IN_A_ROW
    diverged = False
    threads = plan.device.cpu_threads
    watch = LoadWatch(threads) if threads and plan.device.adapt_cpu_threads else None
    rep.start(start_step, total)
    while step < total:
        epoch, pos = divmod(step, per_epoch)
        if epoch not in epoch_cache:
            epoch_cache = {epoch: data.epoch_batches(items, run.num_repeats, run.train_batch_size, run.seed, epoch,
                                                     run.flip_aug)}
        micro = epoch_cache[epoch][pos * run.gradient_accumulation_steps:(pos + 1) * run.gradient_accumulation_steps]
        t0 = time.time()
        unet.train()
        step_loss = 0.0
        for k, full in enumerate(micro):
            # Noise and timesteps are drawn for the whole batch, then each process takes its share:
            # one GPU or several, every sample sees the same noise.
            g = torch.Generator().manual_seed(step_seed(run.seed, step, k))
            shape = (len(full), *latents[(full[0].index, full[0].flip)].shape)
            noise_all = sample_noise(shape, g, run.noise_offset, run.multires_noise_iterations,
                                     run.multires_noise_discount)
            t_all = torch.randint(0, n_train_t, (len(full),), generator=g)
            mine = list(range(accelerator.process_index, len(full), accelerator.num_processes))
            # DDP averages gradients over processes: weighting each by its share of the batch makes that
            # average the whole batch's mean. A process with no sample still runs (weight 0) to stay in step.
            share = len(mine) * accelerator.num_processes / len(full)
            mine = mine or [0]
            batch = [full[i] for i in mine]
            noise = noise_all[mine].to(dev, dtype=forward_dtype)
            timesteps = t_all[mine].to(dev)

            lat = torch.stack([latents[(s.index, s.flip)] for s in batch]).to(dev, dtype=forward_dtype)
            captions = [data.train_caption(items[s.index].caption, run.shuffle_tags, run.keep_tokens, s.shuffle_seed)
                        for s in batch]
            if text_cache is not None:
                embeds = torch.stack([text_embeds[c][0] for c in captions]).to(dev, dtype=weight_dtype)
                pooled = torch.stack([text_embeds[c][1] for c in captions]).to(dev, dtype=weight_dtype)
            else:
                with torch.set_grad_enabled(run.train_text_encoder), accelerator.autocast():
                    embeds, pooled = encode_prompts(captions, tokenizers, text_encoders, dev,
                                                    max_token_length=token_length)
            add_time = torch.tensor([time_ids(items[s.index]) for s in batch], device=dev, dtype=weight_dtype)
            sync = k == len(micro) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(unet):
                loss = micro_batch_loss(unet, parts.noise_scheduler, lat, noise, timesteps, embeds, pooled, add_time,
                                        prediction=prediction, min_snr_gamma=run.min_snr_gamma,
                                        weight_dtype=weight_dtype, forward_dtype=forward_dtype,
                                        autocast=accelerator.autocast,
                                        sample_weights=data.sample_weights(items, batch, run.prior_loss_weight))
                scaled = loss * share / len(micro)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            step_loss += loss.item() / len(micro)
        outcome = optimizer_step(optimizer, lr_scheduler, params, run.max_grad_norm, scaler, step_loss)
        step += 1
        losses.append(step_loss)
        budget.record_step(time.time() - t0)
        if outcome != "taken":
            skipped_total += 1
            rep.skipped(step, skipped_total)
        in_a_row = in_a_row + [step] if outcome == "non-finite" else []
        rep.step(step, step_loss, lr_scheduler.get_last_lr()[0], budget.left_s())
        if _agree(accelerator, len(in_a_row) >= MAX_NONFINITE_IN_A_ROW):  # every process stops at the same step
            diverged = True
            break
        if watch is not None and (fewer := watch.after_step()):  # the machine got busy: give a core back
            threads = fewer
            torch.set_num_threads(threads)
            rep.warn(_("Other processes keep this machine's CPU busy: training goes on with {threads} thread{value} "
                       "(faster than fighting them for the cores).").format(
                         threads=threads, value='s' if threads > 1 else ''))

        epoch_done = step % per_epoch == 0 or step == total
        if epoch_done and accelerator.is_main_process:
            e = epoch + 1
            path = grid = None
            if e % run.save_every_n_epochs == 0 and step < total:
                path = _export(project, run, trained, lora_name(project, e), items, activation, resolved, prediction,
                               plan.zero_terminal_snr, e, step)
                _prune_epochs(project, run.keep_only_last_n_epochs)
            if _previews_after(run, step, per_epoch, total):
                t_preview = time.time()
                grid = _samples(plan, parts, unet, e, dev)
                budget.record_preview(time.time() - t_preview)
                grids.append(grid)
            loss_plot = save_loss_plot(losses, project.output / "loss.png", per_epoch) if plan.can_plot else None
            rep.epoch_end(e, path, grid, loss_plot)
        due = (step % run.save_state_every_n_steps == 0) if run.save_state_every_n_steps else \
            (time.time() - last_state_save >= run.save_state_every_minutes * 60)
        # An epoch-end save only when the last is half an interval old: short epochs made most saves, each guarding
        # a few minutes of work (step-based saving, for tests, keeps every epoch end).
        saved = step < total and (due or epoch_done and (run.save_state_every_n_steps or time.time() - last_state_save
                                                          >= run.save_state_every_minutes * 30))
        if saved:
            save_state(step)
            last_state_save = time.time()
        if step < total and _agree(accelerator, budget.must_stop(_next_preview_s(run, budget, step, per_epoch,
                                                                                 total))):
            if not saved:
                save_state(step)
            if accelerator.is_main_process and plan.can_plot:
                loss_plot = save_loss_plot(losses, project.output / "loss.png", per_epoch)
            stopped = True
            break

    rep.close()
    trained_for = hms(seconds_before + time.time() - t_start)
    if diverged:  # state saved, no LoRA written, earlier LoRA files untouched
        folder = save_state(step)
        if accelerator.is_main_process and plan.can_plot:
            loss_plot = save_loss_plot(losses, project.output / "loss.png", per_epoch)
        msg = _("Stopped: the loss was not finite (NaN or infinite) at steps {first}-{last}, so those steps were "
                "skipped and the training has diverged; state saved at step {step}, the LoRA files saved so far "
                "kept. Lower unet_lr (or text_encoder_lr), or set mixed_precision to bf16 or no, and tick "
                "start_over.").format(
            first=in_a_row[0] if in_a_row else step, last=step, step=step)
        return TrainResult("diverged", msg, step, total, run_loras(project), None, grids, loss_plot, folder,
                           skipped_total)
    if stopped:
        used = hms(budget.now() - budget.start)
        msg = _("Stopped at step {step}/{total} after {used} of the {budget:g} h budget, state saved to Drive "
                "({folder}). Run the notebook again tomorrow to continue.").format(
            step=step, total=total, used=used, budget=run.budget_hours, folder=project.state)
        if not plan.can_plot:
            msg += " " + _("The loss plot was skipped: matplotlib is not installed.")
        return TrainResult("stopped", msg, step, total, run_loras(project), None, grids, loss_plot,
                           store.latest_folder(), skipped_total)
    final = lora_name(project)
    if accelerator.is_main_process:
        _export(project, run, trained, final, items, activation, resolved, prediction, plan.zero_terminal_snr,
                plan.steps.epochs, step)
        files.write_text(final.with_suffix(".json"), run.replace(activation_tag=activation).to_json() + "\n")
    folder = save_state(step, finished=True)
    msg = _("Finished: {step}/{total} steps in {time}. Your LoRA is {file} (activation tag: {tag}).").format(
        step=step, total=total, time=trained_for, file=final, tag=activation or _("(none)"))
    if not plan.can_plot:
        msg += " " + _("The loss plot was skipped: matplotlib is not installed.")
    return TrainResult("finished", msg, step, total, run_loras(project), final, grids, loss_plot, folder,
                       skipped_total)


# -- one training step: the loss of a micro-batch, then one optimizer step --------------------------------

def micro_batch_loss(unet, scheduler, latents, noise, timesteps, embeds, pooled, time_ids_, *, prediction: str,
                     min_snr_gamma: float, weight_dtype, forward_dtype=None, autocast=contextlib.nullcontext,
                     sample_weights=None):
    """The training loss of one micro-batch (a 0-d float32 tensor, ready for backward).

    The forward process (noisy latents, target) and the loss are float32 (``forward_dtype``: the weight dtype
    only for a run saved before that); only the UNet's input is cast to ``weight_dtype``. ``autocast``: the
    mixed-precision context for the UNet's forward (accelerate's). Also what ``benchmarks/rehearse_cuda.py``
    runs on a simulated CUDA device. ``sample_weights``: one factor per sample (``prior_loss_weight`` for a
    regularization image, 1 for the artist's), as sd-scripts weighs them."""
    noisy, target = noisy_and_target(scheduler, latents, noise, timesteps, prediction, dtype=forward_dtype)
    with autocast():
        pred = unet(noisy.to(weight_dtype), timesteps, embeds,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids_}).sample
    per_sample = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    # Each sample's weight multiplies its loss here (min-SNR; any further per-sample weight joins this product).
    weights = loss_weights(scheduler.alphas_cumprod, timesteps, min_snr_gamma, prediction)
    if sample_weights is not None:
        import torch

        weights = weights * torch.as_tensor(sample_weights, dtype=weights.dtype, device=weights.device)
    return (per_sample * weights).mean()



def make_accelerator(plan: RunPlan):
    """The Accelerator of a run: device, processes, autocast. The grad scaler is ``grad_scaler``'s, not its own."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # A trained first text encoder's last layer feeds nothing (SDXL takes its penultimate hidden states), so its
    # LoRA gets no gradient: several GPUs must be told, or DDP waits for those gradients forever.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=plan.run.train_text_encoder)
    return Accelerator(mixed_precision=plan.device.mixed_precision, cpu=plan.device.device == "cpu",
                       kwargs_handlers=[ddp])


def grad_scaler(accelerator):
    """The grad scaler of an fp16 run (None with fp32 or bf16, which need none): a fresh ``torch.amp.GradScaler``
    on the run's device, driven by ``optimizer_step``. The one seam for it: tests put a real GradScaler on the CPU
    here (accelerate gives none there), so the path a T4 takes runs in the suite."""
    import torch

    if accelerator.mixed_precision != "fp16":
        return None
    return torch.amp.GradScaler(accelerator.device.type)


def optimizer_step(optimizer, lr_scheduler, params, max_grad_norm: float, scaler, loss: float) -> str:
    """One optimizer step with its skip rule, after the backward of all micro-batches; the gradients are zeroed.

    Returns "taken"; "overflow" when the fp16 grad scaler found inf/NaN gradients at a scale above 1 (routine
    while it finds its scale: it lowers the scale and skips); or "non-finite" when the loss was not finite, or the
    gradients were not even unscaled (no scaler, or a scale of 1 or less). A skipped step changes no weight and
    leaves the optimizer's moments, step count and the LR schedule where they were (the schedule follows steps
    taken, as with accelerate's scheduler), exactly as the grad scaler skips a step (sd-scripts and diffusers let
    it; a raise would meet the same batch again on every resume, noise being a function of the step).
    """
    import torch

    scale = None
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.unscale_(optimizer)  # clipping sees the true gradients
    grads = [p.grad for p in params if p.grad is not None]
    finite = math.isfinite(loss) and bool(torch.stack([g.isfinite().all() for g in grads]).all()) if grads else \
        math.isfinite(loss)
    if finite and max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        if finite:  # (a non-finite loss with finite gradients is skipped too; the scaler then keeps its scale)
            scaler.step(optimizer)
        scaler.update()  # lowers the scale after inf/NaN gradients; raises it after growth_interval clean steps
    elif finite:
        optimizer.step()
    if finite:
        lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if finite:
        return "taken"
    return "overflow" if scale is not None and scale > 1 and math.isfinite(loss) else "non-finite"


def checkpoint_text_encoder(text_encoder) -> None:
    """Gradient checkpointing on a text encoder whose LoRA trains, so its LoRA still gets gradients.

    Re-entrant checkpointing (transformers 4.x's default) passes no gradient through a checkpointed layer whose
    inputs need none, and the token embeddings are frozen: the LoRA inside would get none (sd-scripts calls
    ``requires_grad_(True)`` on the embeddings for this). Both are handled: non-re-entrant checkpointing is
    asked for, and the embeddings' output requires grad (``enable_input_require_grads``, no weight trained)."""
    text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    text_encoder.enable_input_require_grads()


# -- helpers -----------------------------------------------------------------------------------------

def _trainable(trained: dict) -> dict:
    out = {}
    for prefix, model in trained.items():
        for name, p in _unwrap(model).named_parameters():
            if p.requires_grad:
                out[f"{prefix}.{name}"] = p
    return out


def _load_trainable(trained: dict, tensors: dict) -> None:
    import torch

    mine = _trainable(trained)
    if set(mine) != set(tensors):
        raise ColabkitError(_("The saved state does not match this LoRA's layers; tick start_over to begin anew."))
    with torch.no_grad():
        for name, p in mine.items():
            p.copy_(tensors[name])


def _unwrap(model):
    return getattr(model, "module", model)


def _export(project, run, trained, path, items, activation, resolved, prediction, ztsnr, epoch, step) -> Path:
    import torch

    tensors = lora.export_kohya(_unwrap(trained["unet"]), trained.get("te1"), trained.get("te2"),
                                alpha=run.network_alpha, conv_alpha=run.conv_alpha, dtype=torch.float16)
    ds = data.dataset_metadata(items, run.num_repeats, project.slug)  # per folder, as sd-scripts writes it
    meta = lora.build_metadata(
        output_name=path.stem, network_dim=run.network_dim, network_alpha=run.network_alpha, lora_type=run.lora_type,
        resolution=run.resolution, num_train_images=ds["num_train_images"], tag_frequency=ds["tag_frequency"],
        dataset_dirs=ds["dataset_dirs"], num_reg_images=ds["num_reg_images"], prior_loss_weight=run.prior_loss_weight,
        reg_dataset_dirs=ds["reg_dataset_dirs"],
        activation_tag=activation, base_model_name=resolved.name, prediction_type=prediction,
        unet_lr=run.unet_lr, text_encoder_lr=run.text_encoder_lr, epoch=epoch, steps=step, seed=run.seed,
        conv_dim=run.conv_dim if run.lora_type == "LoCon" else None,
        conv_alpha=run.conv_alpha if run.lora_type == "LoCon" else None,
        zero_terminal_snr=ztsnr, max_token_length=run.max_token_length,
        extra=lora.continue_from.parent_metadata(run.continue_from_lora, project))
    lora.save_lora(path, tensors, meta)
    return path


def _prune_epochs(project: Project, keep: int) -> None:
    epochs = epoch_loras(project)
    for old in epochs[:-keep] if keep else []:
        files.remove_for_good(old)  # truncated first: a pruned epoch leaves nothing in Drive's trash


def _previews_after(run, step: int, per_epoch: int, total: int) -> bool:
    """Whether the epoch-end previews run after ``step``: every sample_every_n_epochs epochs, and after the last
    step. One answer for the loop (render them) and the budget (leave time for them)."""
    if not run.sample_every_n_epochs or (step % per_epoch and step != total):
        return False
    return ((step - 1) // per_epoch + 1) % run.sample_every_n_epochs == 0 or step == total


def _next_preview_s(run, budget: Budget, step: int, per_epoch: int, total: int) -> float:
    """Expected seconds of the epoch-end preview that follows step ``step + 1`` (0 if none follows it): the
    slowest one seen, or before the first one an estimate from the step time (colabkit.train.timing)."""
    from colabkit.train import timing

    nxt = step + 1
    if nxt > total or not _previews_after(run, nxt, per_epoch, total):
        return 0.0
    if budget.preview_s is not None:
        return budget.preview_s
    n_prompts = len([p for p in run.sample_prompts.splitlines() if p.strip()]) or 3
    step_s = budget.step_s or 0.0
    return timing.preview_seconds(step_s, run.train_batch_size, n_prompts, run.sample_steps, step_s / 2)


def _samples(plan: RunPlan, parts, unet, epoch, dev) -> Path:
    from colabkit.train.sample import default_prompts, generate_grid

    run = plan.run
    prompts = [p.strip() for p in run.sample_prompts.splitlines() if p.strip()] or \
        default_prompts(plan.activation, data.tag_frequency(plan.items))
    return generate_grid(parts, _unwrap(unet), prompts, plan.project.samples, f"e{epoch:02d}", run.resolution,
                         run.sample_steps, run.sample_seed, dev, prediction_type=plan.prediction_type,
                         zero_terminal_snr=plan.zero_terminal_snr, max_token_length=run.max_token_length)


def _agree(accelerator, flag: bool) -> bool:
    """One decision for all processes (each has its own clock): stop when any of them must."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "max").item())


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

