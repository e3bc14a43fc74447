import pytest

from colabkit.errors import ColabkitError
from colabkit.train.config import (TrainConfig, diff_critical, step_plan, steps_per_epoch, suggest_repeats,
                                   total_steps)


def test_guide_table_example():
    # The guide's example: 10 images x 20 repeats / batch 6 x 10 epochs = about 400 (340 exactly:
    # 200 samples make 34 batches when the last batch is partial).
    assert steps_per_epoch([10], 20, 6) == 34
    assert total_steps([10], 20, 6, 10) == 340


def test_each_bucket_rounds_up_on_its_own():
    # 3 + 3 images in two buckets, batch 2: ceil(3/2) + ceil(3/2) = 4 batches, not ceil(6/2) = 3.
    assert steps_per_epoch([3, 3], 1, 2) == 4
    assert steps_per_epoch([3, 3], 1, 2, grad_accum=3) == 2
    assert total_steps([3, 3], 1, 2, 5, max_train_steps=7) == 7


def test_suggestion_lands_in_range():
    cfg = TrainConfig(project_name="p", num_repeats=1, epochs=10, train_batch_size=2)
    plan = step_plan([20], cfg)
    assert plan.total_steps == 100 and not plan.in_range
    r = suggest_repeats([20], 2, 10)
    assert 300 <= total_steps([20], r, 2, 10) <= 500
    assert f"num_repeats = {r}" in plan.suggestion
    ok = step_plan([20], cfg.replace(num_repeats=r))
    assert ok.in_range and ok.suggestion is None


def test_impossible_suggestion_says_so():
    cfg = TrainConfig(project_name="p", num_repeats=1, epochs=1000, train_batch_size=1)
    assert "change epochs or batch size" in step_plan([5], cfg).suggestion


@pytest.mark.parametrize("changes, words", [
    ({"resolution": 1000}, "multiple of 64"),
    ({"optimizer": "SGD"}, "optimizer must be one of"),
    ({"project_name": "../x"}, "looks like a path"),
    ({"train_batch_size": 0}, "train_batch_size must be at least 1"),
    ({"budget_hours": 0}, "budget_hours"),
])
def test_bad_settings_are_named(changes, words):
    with pytest.raises(ColabkitError, match="Please fix") as e:
        TrainConfig(**{"project_name": "p", **changes})
    assert words in str(e.value)


def test_recommended_values():
    prodigy = TrainConfig(project_name="p", optimizer="Prodigy", network_dim=32, network_alpha=4).effective()
    assert prodigy.unet_lr == 1.0 and prodigy.network_alpha == 32
    assert prodigy.optimizer_kwargs() == dict(decouple=True, weight_decay=0.01, d_coef=2, use_bias_correction=True,
                                              safeguard_warmup=True)
    adam = TrainConfig(project_name="p", optimizer="AdamW8bit")
    assert adam.effective() is adam and adam.optimizer_kwargs() == dict(weight_decay=0.1, betas=(0.9, 0.99))
    off = TrainConfig(project_name="p", optimizer="Prodigy", recommended_values=False)
    assert off.effective().unet_lr == 1e-4 and off.optimizer_kwargs() == {}


def test_unknown_setting_refused():
    with pytest.raises(ColabkitError, match="Unknown setting"):
        TrainConfig.from_dict({"project_name": "p", "epoch": 3})


def test_harmless_changes_are_not_critical():
    a = TrainConfig(project_name="p").to_dict()
    b = TrainConfig(project_name="p", budget_hours=1, save_every_n_epochs=2, epochs=20, sample_prompts="x",
                    max_train_steps=900).to_dict()
    assert diff_critical(a, b) == {}
    c = TrainConfig(project_name="p", network_dim=32).to_dict()
    assert diff_critical(a, c) == {"network_dim": (16, 32)}


def test_step_maths_line_reads_right_with_and_without_max_train_steps():
    by_epochs = step_plan([6], TrainConfig(project_name="p", num_repeats=10, train_batch_size=2, epochs=2))
    assert by_epochs.describe().splitlines()[0] == (
        "6 images x 10 repeats / batch 2 = 30 steps per epoch x 2 epochs = 60 steps")
    by_steps = step_plan([6], TrainConfig(project_name="p", num_repeats=10, train_batch_size=2, max_train_steps=40))
    assert by_steps.describe().splitlines()[0] == (
        "6 images x 10 repeats / batch 2 = 30 steps per epoch; max_train_steps 40 = 2 epochs, the last one partial")
