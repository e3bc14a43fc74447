"""The loop trains on the plan's prediction type: what the loss compares the UNet's output against, observed.

Metadata and a bit-exact resume cannot tell: a v-prediction model trained towards the epsilon target still writes
"v" in its file and still resumes exactly. Here the UNet's input and output, the noise drawn and the loss reported
are recorded during a real run; the loss is then recomputed against each candidate target (the noise for epsilon,
the velocity sqrt(a)*noise - sqrt(1-a)*x0 for v-prediction) and must match the plan's one only.
"""

from __future__ import annotations

import pytest

from colabkit.train import loop, models
from colabkit.train.loop import Reporter, train
from colabkit.train.plan import make_plan

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_the_loss_compares_the_unet_output_with_the_plans_target(tiny_project, make_config, monkeypatch, prediction):
    cfg = make_config(prediction_type=prediction, epochs=1, num_repeats=1, train_batch_size=1, min_snr_gamma=0,
                      save_state_every_n_steps=1000)  # min_snr_gamma 0: every weight 1, the loss a plain MSE
    plan = make_plan(cfg, device="cpu")
    assert plan.prediction_type == prediction

    calls, noises, losses, schedulers = [], [], [], []
    real_load, real_noise = models.load_sdxl, loop.sample_noise

    def load_sdxl(*a, **k):
        parts = real_load(*a, **k)
        schedulers.append(parts.noise_scheduler)

        def hook(module, args, kwargs, out):
            calls.append((args[0].detach().double(), args[1].detach().clone(), out.sample.detach().double()))

        parts.unet.register_forward_hook(hook, with_kwargs=True)
        return parts

    def sample_noise(*a, **k):
        noises.append(real_noise(*a, **k).double())
        return noises[-1].float()

    class Rec(Reporter):
        def step(self, step, loss, lr, left):
            losses.append(loss)

    monkeypatch.setattr(models, "load_sdxl", load_sdxl)
    monkeypatch.setattr(loop, "sample_noise", sample_noise)
    result = train(plan, reporter=Rec())
    assert result.status == "finished" and len(calls) == len(noises) == len(losses) == 4

    alphas = schedulers[0].alphas_cumprod.double()
    # With v-prediction the plan turns zero-terminal SNR on: the last timestep is pure noise.
    assert (float(alphas[-1]) < 1e-6) == (prediction == "v_prediction")
    checked = 0
    for (noisy, t, pred), noise, loss in zip(calls, noises, losses):
        a = alphas[t].view(-1, 1, 1, 1)
        if float(a.min()) < 1e-3:  # x0 cannot be recovered from a (nearly) pure-noise input
            continue
        x0 = (noisy - (1 - a).sqrt() * noise) / a.sqrt()
        targets = {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0}
        mse = {name: float((pred - target).pow(2).mean()) for name, target in targets.items()}
        assert loss == pytest.approx(mse[prediction], rel=1e-4), (loss, mse)
        other = next(m for name, m in mse.items() if name != prediction)
        assert loss != pytest.approx(other, rel=1e-2), (loss, mse)
        checked += 1
    assert checked >= 2
