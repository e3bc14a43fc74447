"""The diffusion maths of one training step (pure tensor functions)."""

from __future__ import annotations

import hashlib


def step_seed(seed: int, step: int, micro: int) -> int:
    """A seed for one micro-batch: noise and timesteps depend on nothing but (seed, step, micro),
    so a resumed run draws exactly what the uninterrupted run drew."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{micro}".encode()).digest()[:8], "little") >> 1


def sample_noise(shape, generator, noise_offset: float = 0.0, multires_iterations: int = 0,
                 multires_discount: float = 0.3):
    """Gaussian noise, optionally with an offset (learn darker/brighter images) and pyramid
    ("multires") noise (learn low frequencies); drawn on the CPU so every device gets the same."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = shape
    noise = torch.randn(shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((b, c, 1, 1), generator=generator)
    for i in range(multires_iterations):
        r = 2 ** (i + 1)
        if h // r < 1 or w // r < 1:
            break
        low = torch.randn((b, c, h // r, w // r), generator=generator)
        noise = noise + F.interpolate(low, size=(h, w), mode="bilinear") * multires_discount ** (i + 1)
    if multires_iterations:
        noise = noise / noise.std()  # keep unit variance, as the sampler expects
    return noise


def snr(alphas_cumprod, timesteps):
    a = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return a / (1 - a)


def loss_weights(alphas_cumprod, timesteps, min_snr_gamma: float, prediction_type: str):
    """Min-SNR-gamma weights (Hang et al. 2023): easy, low-noise steps stop dominating the loss."""
    import torch

    if not min_snr_gamma:
        return torch.ones(len(timesteps), device=timesteps.device)
    s = snr(alphas_cumprod, timesteps)
    clipped = torch.clamp(s, max=min_snr_gamma)
    # For v-prediction the target already carries a (snr + 1) factor.
    return clipped / (s + 1) if prediction_type == "v_prediction" else clipped / s
