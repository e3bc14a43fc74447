"""The diffusion maths: min-SNR weights (epsilon, v, zero terminal SNR), ZTSNR schedule and decision,
multires noise as sd-scripts computes it. Every expected value is computed here from the formula."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from colabkit.train.noise import (
    loss_weights,
    noisy_and_target,
    pyramid_noise,
    sample_noise,
    step_seed,
    training_scheduler,
    use_ztsnr,
    zero_terminal_snr_betas,
    ztsnr_warning,
)

SDXL_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def sdxl_betas() -> torch.Tensor:
    # SDXL's "scaled_linear": linear in sqrt(beta), squared
    return torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2


def ztsnr_by_hand(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1, in float64: shift sqrt(alpha_bar) so its last value is 0, rescale so the first
    keeps its value, back to betas."""
    ab_sqrt = torch.cumprod(1 - betas.double(), 0).sqrt()
    first, last = ab_sqrt[0].item(), ab_sqrt[-1].item()
    ab_sqrt = (ab_sqrt - last) * first / (first - last)
    ab = ab_sqrt**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def weight_by_formula(alpha_bar: float, gamma: float, prediction: str) -> float:
    if alpha_bar == 0.0:  # SNR = 0: the limit of min(snr, gamma) / snr is 1; v: 0 / (0 + 1)
        return 1.0 if prediction == "epsilon" else 0.0
    s = alpha_bar / (1 - alpha_bar)
    return min(s, gamma) / (s if prediction == "epsilon" else s + 1)


# -- zero terminal SNR ----------------------------------------------------------------------------------

def test_ztsnr_betas_follow_the_paper_and_end_at_zero_snr():
    betas = sdxl_betas()
    fixed = zero_terminal_snr_betas(betas)
    by_hand = ztsnr_by_hand(betas)
    # float32 ratios of nearly equal alpha_bars: the betas agree to ~1e-4 relative, the alpha_bars to ~1e-6
    assert torch.allclose(fixed.double(), by_hand, rtol=5e-4)
    ab = torch.cumprod(1 - fixed.double(), 0)
    assert torch.allclose(ab, torch.cumprod(1 - by_hand, 0), atol=2e-6)
    assert ab[-1] == 0  # SNR exactly 0 at t = 999
    assert ab[0] == pytest.approx(torch.cumprod(1 - betas.double(), 0)[0].item(), rel=1e-6)  # t = 0 unchanged
    assert torch.equal(betas, sdxl_betas())  # the input is not modified


def test_training_scheduler_is_built_from_the_config_with_or_without_ztsnr():
    base = DDPMScheduler(**SDXL_SCHEDULE).config
    on = training_scheduler(base, "v_prediction", True)
    assert on.config.prediction_type == "v_prediction" and on.config.rescale_betas_zero_snr
    assert torch.allclose(on.alphas_cumprod.double(), torch.cumprod(1 - ztsnr_by_hand(sdxl_betas()), 0), atol=2e-6)
    assert on.alphas_cumprod[-1] == 0
    # a config that already says ZTSNR (a ZTSNR model's folder) with the setting "off": the plain schedule again
    off = training_scheduler(on.config, "epsilon", False)
    assert not off.config.rescale_betas_zero_snr and off.config.prediction_type == "epsilon"
    assert torch.equal(off.alphas_cumprod, DDPMScheduler(**SDXL_SCHEDULE).alphas_cumprod)


@pytest.mark.parametrize("setting,prediction,marker,expected", [
    ("auto", "epsilon", False, False),
    ("auto", "epsilon", True, True),  # the model says it was trained with ZTSNR
    ("auto", "v_prediction", False, True),  # v-pred: on by default
    ("auto", "v_prediction", True, True),
    ("on", "epsilon", False, True),
    ("off", "v_prediction", True, False),
    ("off", "epsilon", True, False),
])
def test_use_ztsnr(setting, prediction, marker, expected):
    assert use_ztsnr(setting, prediction, marker) is expected


def test_use_ztsnr_rejects_other_spellings():
    with pytest.raises(ValueError, match="zero_terminal_snr"):
        use_ztsnr("yes", "epsilon", False)
    with pytest.raises(ValueError, match="prediction_type"):
        use_ztsnr("auto", "v", False)


def test_ztsnr_warning_only_for_epsilon():
    assert "epsilon" in ztsnr_warning("epsilon", True)
    assert ztsnr_warning("v_prediction", True) is None
    assert ztsnr_warning("epsilon", False) is None


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_noisy_latents_and_targets_are_finite_at_t999_with_ztsnr(prediction):
    sched = training_scheduler(DDPMScheduler(**SDXL_SCHEDULE).config, prediction, True)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    noisy, target = noisy_and_target(sched, latents, noise, t, prediction)
    assert torch.isfinite(noisy).all() and torch.isfinite(target).all()
    assert torch.allclose(noisy[2], noise[2])  # pure noise at the last step
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(noisy, ab.sqrt() * latents + (1 - ab).sqrt() * noise, atol=1e-6)
    if prediction == "epsilon":
        assert torch.equal(target, noise)
    else:
        assert torch.allclose(target, ab.sqrt() * noise - (1 - ab).sqrt() * latents, atol=1e-6)
        assert torch.allclose(target[2], -latents[2])


# -- min-SNR weights --------------------------------------------------------------------------------------

@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("ztsnr", [False, True])
@pytest.mark.parametrize("gamma", [5.0, 1.0])
def test_min_snr_weights_match_the_formula_and_are_finite(prediction, ztsnr, gamma):
    ac = training_scheduler(DDPMScheduler(**SDXL_SCHEDULE).config, prediction, ztsnr).alphas_cumprod
    t = torch.tensor([0, 1, 250, 500, 900, 998, 999])
    w = loss_weights(ac, t, gamma, prediction)
    assert torch.isfinite(w).all()
    expected = torch.tensor([weight_by_formula(ac[i].item(), gamma, prediction) for i in t])
    assert torch.allclose(w, expected, rtol=1e-5, atol=1e-7)
    if ztsnr:
        assert ac[999] == 0 and w[-1] == (1.0 if prediction == "epsilon" else 0.0)


def test_min_snr_weights_at_the_ends_of_the_plain_schedule():
    ac = DDPMScheduler(**SDXL_SCHEDULE).alphas_cumprod
    t = torch.tensor([0, 999])
    s0 = ac[0].item() / (1 - ac[0].item())  # about 1170: the easiest step
    eps, v = loss_weights(ac, t, 5.0, "epsilon"), loss_weights(ac, t, 5.0, "v_prediction")
    assert eps[0].item() == pytest.approx(5.0 / s0, rel=1e-4) and eps[1].item() == 1.0
    assert v[0].item() == pytest.approx(5.0 / (s0 + 1), rel=1e-4)
    s999 = ac[999].item() / (1 - ac[999].item())
    assert v[1].item() == pytest.approx(s999 / (s999 + 1), rel=1e-4)
    assert torch.equal(loss_weights(ac, t, 0, "v_prediction"), torch.ones(2))


@pytest.mark.parametrize("gamma", [5.0, 1.5, 3.3])
def test_epsilon_weights_are_bit_identical_to_the_earlier_formula_where_it_was_defined(gamma):
    """An epsilon run on the plain schedule must give the same LoRA bit for bit as before this change."""
    ac = DDPMScheduler(**SDXL_SCHEDULE).alphas_cumprod
    t = torch.arange(1000)
    a = ac[t].float()
    s = a / (1 - a)
    assert torch.equal(loss_weights(ac, t, gamma, "epsilon"), torch.clamp(s, max=gamma) / s)
    assert torch.equal(loss_weights(ac, t, gamma, "v_prediction"), torch.clamp(s, max=gamma) / (s + 1))


def test_min_snr_weights_refuse_the_file_spelling():
    with pytest.raises(ValueError, match="prediction_type"):
        loss_weights(torch.ones(10) * 0.5, torch.tensor([1]), 5.0, "v")


# -- noise ----------------------------------------------------------------------------------------------

def kohya_pyramid_reference(noise, uniform, gaussian, iterations, discount):
    """sd-scripts' pyramid_noise_like (library/custom_train_functions.py) re-expressed from its documented
    behaviour, its two random sources injected: ``uniform()`` for ``random.random()`` and ``gaussian(shape)``
    for ``torch.randn``. Note its shape names (b, c, w, h) are really (b, c, h, w)."""
    b, c, w, h = noise.shape
    noise = noise.clone()
    for i in range(iterations):
        r = uniform() * 2 + 2
        wn, hn = max(1, int(w / (r**i))), max(1, int(h / (r**i)))
        noise += torch.nn.Upsample(size=(w, h), mode="bilinear")(gaussian((b, c, wn, hn))) * discount**i
        if wn == 1 or hn == 1:
            break
    return noise / noise.std()


@pytest.mark.parametrize("shape,iterations,discount", [((2, 4, 16, 16), 3, 0.3), ((1, 4, 12, 20), 6, 0.4),
                                                       ((2, 4, 128, 96), 10, 0.3)])
def test_pyramid_noise_is_kohyas_algorithm(shape, iterations, discount):
    base = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ours = pyramid_noise(base, torch.Generator().manual_seed(2), iterations, discount)

    g = torch.Generator().manual_seed(2)
    levels = []

    def uniform():
        return torch.rand((), generator=g, dtype=torch.float64).item()

    def gaussian(size):
        levels.append(size)
        return torch.randn(size, generator=g)

    ref = kohya_pyramid_reference(base, uniform, gaussian, iterations, discount)
    assert torch.equal(ours, ref)
    assert levels[0] == shape  # level 0 is full resolution (the old code started at half)
    assert len(levels) <= iterations and (len(levels) == iterations or 1 in levels[-1][2:])


def test_pyramid_resize_factors_are_random_between_2_and_4():
    # level 1 is drawn at int(h / r), r uniform in [2, 4): over many step seeds, sizes spread over h/4..h/2
    h, seen = 64, set()
    for seed in range(100):
        g_ours, g_ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        levels = []

        def gaussian(size):
            levels.append(size)
            return torch.randn(size, generator=g_ref)

        base = torch.zeros(1, 1, h, h)
        ref = kohya_pyramid_reference(base, lambda: torch.rand((), generator=g_ref, dtype=torch.float64).item(),
                                      gaussian, 2, 0.3)
        assert torch.equal(pyramid_noise(base, g_ours, 2, 0.3), ref)
        seen.add(levels[1][2])
    assert min(seen) >= h // 4 and max(seen) <= h // 2 and len(seen) > 10


def test_pyramid_noise_is_unit_std_and_a_function_of_the_generator():
    shape = (2, 4, 32, 24)
    base = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    a = pyramid_noise(base, torch.Generator().manual_seed(step_seed(7, 3, 0)), 6, 0.3)
    b = pyramid_noise(base, torch.Generator().manual_seed(step_seed(7, 3, 0)), 6, 0.3)
    c = pyramid_noise(base, torch.Generator().manual_seed(step_seed(7, 4, 0)), 6, 0.3)
    assert a.shape == shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.std().item() == pytest.approx(1.0, abs=1e-5)
    # low frequencies are stronger than in plain noise: 4x4 averages vary more (plain unit noise: 1/16)
    big = torch.randn((4, 4, 64, 64), generator=torch.Generator().manual_seed(1))
    pyr = pyramid_noise(big, torch.Generator().manual_seed(2), 6, 0.5)
    assert F.avg_pool2d(pyr, 4).var().item() > 1.2 * F.avg_pool2d(big / big.std(), 4).var().item()


def test_sample_noise_per_seed_and_step():
    shape = (2, 4, 16, 16)

    def draw(step, **kw):
        return sample_noise(shape, torch.Generator().manual_seed(step_seed(5, step, 0)), **kw)

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    # plain noise is the generator's first draw, unchanged by this module (bit-exact with earlier runs)
    assert torch.equal(draw(1), torch.randn(shape, generator=torch.Generator().manual_seed(step_seed(5, 1, 0))))
    multi = draw(1, noise_offset=0.05, multires_iterations=3, multires_discount=0.3)
    assert torch.equal(multi, draw(1, noise_offset=0.05, multires_iterations=3, multires_discount=0.3))
    assert multi.std().item() == pytest.approx(1.0, abs=1e-5)
    # offset then pyramid, from one generator, in sd-scripts' order
    g = torch.Generator().manual_seed(step_seed(5, 1, 0))
    n = torch.randn(shape, generator=g)
    n = n + 0.05 * torch.randn((2, 4, 1, 1), generator=g)
    assert torch.equal(multi, pyramid_noise(n, g, 3, 0.3))
    assert not math.isnan(multi.sum().item())


# -- the forward process in fp32 ---------------------------------------------------------------------------------

def _float64_forward(t: int, x, n, ztsnr: bool):
    """(noisy, v target) from SDXL's schedule computed in float64 by hand (Lin et al. 2023, Algorithm 1)."""
    acp = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2, 0)
    if ztsnr:
        s = acp.sqrt()
        s0, s_last = s[0].clone(), s[-1].clone()
        acp = ((s - s_last) * s0 / (s0 - s_last)) ** 2
    a = acp[t]
    return a.sqrt() * x + (1 - a).sqrt() * n, a.sqrt() * n - (1 - a).sqrt() * x


@pytest.mark.parametrize("t,ztsnr", [(1, False), (1, True), (998, True), (0, True)])
def test_the_forward_process_is_float32_and_matches_float64(t, ztsnr):
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 4, 32, 32, generator=g)
    sched = training_scheduler(SDXL_SCHEDULE, "v_prediction", ztsnr)
    ts = torch.tensor([t, t])
    ref_noisy, ref_v = _float64_forward(t, x.double(), n.double(), ztsnr)

    def rel(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    # what the loop runs: fp32 latents and noise (fp16 UNet weights or not) -> fp32 noisy latents and target
    noisy, target = noisy_and_target(sched, x, n, ts, "v_prediction")
    assert noisy.dtype == target.dtype == torch.float32
    assert rel(noisy, ref_noisy) < 1e-6 and rel(target, ref_v) < 1e-6
    # the same inputs cast to fp16 first, as before (diffusers then uses fp16 alphas_cumprod): far off
    old_noisy, old_target = noisy_and_target(sched, x.half(), n.half(), ts, "v_prediction", dtype=torch.float16)
    assert rel(old_noisy, ref_noisy) > 1e-4 and rel(old_target, ref_v) > 1e-4


def test_an_fp16_input_is_computed_in_float32():
    sched = training_scheduler(SDXL_SCHEDULE, "epsilon", False)
    x = torch.ones(1, 4, 2, 2, dtype=torch.float16)
    noisy, target = noisy_and_target(sched, x, x, torch.tensor([1]), "epsilon")
    assert noisy.dtype == target.dtype == torch.float32
