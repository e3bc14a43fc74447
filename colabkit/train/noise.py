"""The diffusion maths of one training step (pure tensor functions).

Noise is a pure function of (seed, step, micro): every random draw of a step, the multires noise's
resize factors included, comes from one ``torch.Generator`` seeded by ``step_seed``, so a resumed run
draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from colabkit.train.config import SWITCHES as ZTSNR_SETTINGS, Switch as ZtsnrSetting
from colabkit.train.models.presets import EPSILON, V_PREDICTION



def step_seed(seed: int, step: int, micro: int) -> int:
    """A seed for one micro-batch: noise and timesteps depend on nothing but (seed, step, micro),
    so a resumed run draws exactly what the uninterrupted run drew."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{micro}".encode()).digest()[:8], "little") >> 1


def sample_noise(shape, generator, noise_offset: float = 0.0, multires_iterations: int = 0,
                 multires_discount: float = 0.3):
    """Gaussian noise, optionally with an offset (learn darker/brighter images) and pyramid
    ("multires") noise (learn low frequencies); drawn on the CPU so every device gets the same.

    The order of the draws is sd-scripts' (``get_noise_noisy_latents_and_timesteps``): the noise, then
    the offset, then the pyramid on top of both.
    """
    import torch

    b, c, _, _ = shape
    noise = torch.randn(shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((b, c, 1, 1), generator=generator)
    if multires_iterations:
        noise = pyramid_noise(noise, generator, multires_iterations, multires_discount)
    return noise


def pyramid_noise(noise, generator, iterations: int, discount: float):
    """Multires ("pyramid") noise with sd-scripts' semantics (``pyramid_noise_like``), its randomness
    taken from ``generator`` instead of Python's and torch's global generators.

    Level i (i = 0, 1, ...) adds Gaussian noise drawn at the size divided by r**i, with a fresh
    r uniform in [2, 4) per level, upsampled bilinearly to the full size and weighted discount**i;
    level 0 is therefore a second full-resolution draw at weight 1. It stops after a level that reached
    1 pixel on either side. The sum is divided by its standard deviation (over the whole batch, as
    sd-scripts does) so the sampler still sees roughly unit-variance noise. Returns a new tensor.
    """
    import torch
    import torch.nn.functional as F

    b, c, h, w = noise.shape
    out = noise.clone()
    for i in range(iterations):
        # sd-scripts draws r with random.random() (a double) at every level, level 0 included where it has no effect
        r = 2.0 + 2.0 * torch.rand((), generator=generator, dtype=torch.float64).item()
        hn, wn = max(1, int(h / r**i)), max(1, int(w / r**i))
        low = torch.randn((b, c, hn, wn), generator=generator)
        out = out + F.interpolate(low, size=(h, w), mode="bilinear") * discount**i
        if hn == 1 or wn == 1:
            break  # the coarsest level is one pixel
    return out / out.std()


# -- zero terminal SNR ---------------------------------------------------------------------------------

def use_ztsnr(setting: ZtsnrSetting, prediction_type: str, model_ztsnr: bool, edm: bool = False) -> bool:
    """Whether to train on the zero-terminal-SNR schedule (Lin et al. 2023).

    "on"/"off" force it. "auto": on when the model says it was trained that way (a ``ztsnr`` marker
    tensor in the checkpoint, or ``rescale_betas_zero_snr`` in a diffusers folder's scheduler config:
    ``ResolvedModel.zero_terminal_snr``), and on for every v-prediction model, as the v-pred SDXL models
    (NoobAI-XL v-pred and its merges) are trained and as their trainers recommend; except an EDM v-prediction
    model (CosXL, ``edm``): it was trained on EDM's sigmas, not on a zero-terminal-SNR schedule.
    """
    if setting not in ZTSNR_SETTINGS:
        raise ValueError(f"zero_terminal_snr must be one of {ZTSNR_SETTINGS}, not {setting!r}")
    if prediction_type not in (EPSILON, V_PREDICTION):
        raise ValueError(f"prediction_type must be {EPSILON!r} or {V_PREDICTION!r}, not {prediction_type!r}")
    if setting != "auto":
        return setting == "on"
    return bool(model_ztsnr) or (prediction_type == V_PREDICTION and not edm)


def ztsnr_warning(prediction_type: str, ztsnr: bool) -> str | None:
    """What to tell the user about an epsilon model on the zero-terminal-SNR schedule (None when fine).

    At t = 999 the schedule's SNR is exactly 0: the noisy latent is the noise itself, so an epsilon model
    is asked to return its input (a step that teaches nothing), and a sampler cannot recover the image
    from an epsilon prediction at infinite noise. The training maths stays finite (the min-SNR weight
    there is its limit, 1; see ``loss_weights``), nothing is clamped, and timesteps are drawn as without
    ZTSNR, as sd-scripts does; it warns the same way (train_util: "zero_terminal_snr is enabled, but
    v_parameterization is not enabled").
    """
    if ztsnr and prediction_type == EPSILON:
        return ("zero-terminal SNR is on for an epsilon-prediction model: at the last timestep (pure noise) an "
                "epsilon model cannot tell the image apart, so those steps teach nothing and the LoRA may not "
                "match how the model samples. Use zero_terminal_snr=off, or a v-prediction model.")
    return None


def zero_terminal_snr_betas(betas):
    """``betas`` rescaled so the last timestep's SNR is exactly 0 (Lin et al. 2023, Algorithm 1), by
    diffusers' own implementation (what ``rescale_betas_zero_snr=True`` applies in its schedulers)."""
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    return rescale_zero_terminal_snr(betas.clone())


def training_scheduler(config: Mapping, prediction_type: str, ztsnr: bool):
    """The training noise schedule (a DDPMScheduler) from a scheduler config: the base model's betas,
    ``prediction_type`` set, rescaled to zero terminal SNR when ``ztsnr``. Built afresh, so a config that
    already carried ``rescale_betas_zero_snr`` is turned off again when ``ztsnr`` is False."""
    from diffusers import DDPMScheduler

    from colabkit.train.models.load import quiet_diffusers

    cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    cfg.update(prediction_type=prediction_type, rescale_betas_zero_snr=bool(ztsnr))
    with quiet_diffusers():  # SDXL's config carries Euler-only keys DDPM ignores
        return DDPMScheduler.from_config(cfg)


def noisy_and_target(scheduler, latents, noise, timesteps, prediction_type: str, dtype=None):
    """(noisy latents, training target) for ``prediction_type``, computed in ``dtype`` (default float32). Finite at
    every timestep, t = 999 of a zero-terminal-SNR schedule included: there alpha_bar = 0, so noisy = noise, and
    the v target is -latents.

    The forward process is fp32 whatever the UNet's weights are (sd-scripts keeps latents, noise and target in fp32
    and casts only the UNet input): diffusers computes ``add_noise``/``get_velocity`` with ``alphas_cumprod`` in
    its inputs' dtype, and in fp16 sigma is off by ~7% at t = 0 and 1, and with zero terminal SNR sqrt(alpha_bar)
    by ~5% at t = 998. ``dtype`` is the weight dtype only for a run saved before this (it resumes as it started).
    """
    import torch

    dtype = dtype or torch.float32
    latents, noise = latents.to(dtype), noise.to(dtype)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if prediction_type == EPSILON:
        return noisy, noise
    if prediction_type == V_PREDICTION:
        return noisy, scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type must be {EPSILON!r} or {V_PREDICTION!r}, not {prediction_type!r}")


# -- loss weights --------------------------------------------------------------------------------------

def snr(alphas_cumprod, timesteps):
    """alpha_bar / (1 - alpha_bar): 0 at t = 999 of a zero-terminal-SNR schedule, finite everywhere else."""
    a = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return a / (1 - a)


def loss_weights(alphas_cumprod, timesteps, min_snr_gamma: float, prediction_type: str):
    """Min-SNR-gamma weights (Hang et al. 2023): easy, low-noise steps stop dominating the loss.

    epsilon: min(SNR, gamma) / SNR; v-prediction: min(SNR, gamma) / (SNR + 1) (its target already
    carries a (SNR + 1) factor). The epsilon form is computed as gamma / max(SNR, gamma), the same value
    for SNR > 0 and its limit, 1, at SNR = 0 (t = 999 with zero terminal SNR).

    SNR here is the schedule the run trains on, rescaled when zero terminal SNR is on. sd-scripts takes it
    from the schedule before its rescale (``prepare_scheduler_for_custom_training`` fills ``all_snr`` before
    ``fix_noise_scheduler_betas_for_zero_terminal_snr``), so its weights never meet SNR = 0 and never give
    NaN; with ZTSNR they differ from these, mostly at the last timesteps (at t = 999 sd-scripts' SNR is ~0.005).
    """
    import torch

    if prediction_type not in (EPSILON, V_PREDICTION):
        raise ValueError(f"prediction_type must be {EPSILON!r} or {V_PREDICTION!r}, not {prediction_type!r}")
    if not min_snr_gamma:
        return torch.ones(len(timesteps), device=timesteps.device)
    s = snr(alphas_cumprod, timesteps)
    if prediction_type == V_PREDICTION:
        return torch.clamp(s, max=min_snr_gamma) / (s + 1)
    # gamma as a tensor: ``float / tensor`` is computed as reciprocal-then-multiply, which differs in the last bit
    # from the division earlier runs made (min(SNR, gamma) / SNR); this one is bit-identical to it wherever SNR > 0
    return torch.full_like(s, min_snr_gamma) / torch.clamp(s, min=min_snr_gamma)
