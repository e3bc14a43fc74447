"""A run's Drive use in the stand-in Colab, trash included, against what its preflight said; start_over keeps the
earlier LoRA files byte for byte."""

import pytest

from colabkit import files
from colabkit.train.config import TrainConfig
from helpers.budget import StopAfter
from helpers.images import folder_checksums

from helpers.tiny_dataset import fill_dataset

pytestmark = pytest.mark.slow


def config(**changes) -> TrainConfig:
    values = dict(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=2, epochs=4,
                  train_batch_size=1, optimizer="AdamW", unet_lr=1e-3, network_dim=4, network_alpha=2,
                  sample_every_n_epochs=0, save_state_every_n_steps=2, keep_only_last_n_epochs=2, seed=7)
    values.update(changes)
    return TrainConfig(**values)


def three_days(colab, cfg) -> tuple[int, list[tuple[int, int]]]:
    """Day 1 and day 2 stopped by the budget, day 3 to the end. Returns what the preflight said the run needs
    and, after each day, (bytes the run added to MyDrive, bytes in Drive's trash)."""
    from colabkit.colab import flush_drive, mount_drive
    from colabkit.project import Project
    from colabkit.train.loop import train
    from colabkit.train.plan import _drive_use, make_plan

    root = mount_drive()
    fill_dataset(Project.at("houtline", root))
    before = colab.used()
    plan = make_plan(cfg, device="cpu")
    note = next(n for n in plan.notes if n.name == "Drive space")
    assert note.level == "ok", note.message
    use, present = _drive_use(plan)
    assert present == 0
    days = []
    for budget in (StopAfter(5), StopAfter(6), None):
        result = train(cfg, budget=budget, device="cpu")
        assert result.status == ("finished" if budget is None else "stopped")
        days.append((colab.used() - colab.trashed() - before, colab.trashed()))
        flush_drive()  # the end of the day's runtime
    return use.total, days


def test_a_three_day_run_stays_within_its_preflight(fake_colab, tiny_sdxl, capsys):
    need, days = three_days(fake_colab, config())
    print(f"preflight: {need:,} B; after each day (MyDrive added, trash): {days}")
    assert all(trash == 0 for _, trash in days)  # every removal truncated first
    assert all(added <= need for added, _ in days)
    assert days[-1][0] > need / 4  # the estimate is an upper bound, not a wild one


def test_plain_deletes_would_fill_the_trash_beyond_it(fake_colab, tiny_sdxl, monkeypatch):
    # What the run did before colabkit truncated its deletions: the same run goes past its own estimate.
    monkeypatch.setattr(files, "remove_for_good", lambda p: __import__("pathlib").Path(p).unlink(missing_ok=True))
    monkeypatch.setattr(files, "remove_tree_for_good", lambda p: __import__("shutil").rmtree(p))
    need, days = three_days(fake_colab, config())
    added, trash = days[-1]
    assert trash > 0 and added + trash > need


def test_start_over_keeps_the_earlier_lora_files_byte_identical(fake_colab, tiny_sdxl):
    from colabkit.colab import mount_drive
    from colabkit.project import Project
    from colabkit.train.loop import train

    root = mount_drive()
    project = Project.at("houtline", root)
    fill_dataset(project)
    cfg = config(epochs=3, keep_only_last_n_epochs=10)
    assert train(cfg, device="cpu").status == "finished"
    first = folder_checksums(project.output)
    assert {"houtline-01.safetensors", "houtline-02.safetensors", "houtline.safetensors", "houtline.json"} <= set(first)
    result = train(cfg.replace(network_dim=8, start_over=True), device="cpu")
    assert result.status == "finished"
    (archive,) = [p for p in project.training.iterdir() if p.name.startswith("state-old-")]
    loras = {k: v for k, v in first.items() if k.endswith((".safetensors", ".json"))}
    assert folder_checksums(archive / "lora") == loras
    assert (archive / "step-000024" / "MANIFEST.json").exists()  # the old state beside them
    second = folder_checksums(project.output)
    assert second["houtline.safetensors"] != first["houtline.safetensors"]  # the new run's own files
    assert fake_colab.trashed() == 0  # renames only: nothing went to Drive's trash


def test_a_run_that_will_not_fit_is_refused_before_step_1(fake_colab, tiny_sdxl, monkeypatch):
    from colabkit.colab import mount_drive
    from colabkit.errors import ColabkitError
    from colabkit.project import Project
    from colabkit.train.loop import train

    root = mount_drive()
    project = Project.at("houtline", root)
    fill_dataset(project)
    # What Drive's mount reports as free: the quota less MyDrive and the trash (a deleted 300 MB file still counts).
    (root / "old.bin").write_bytes(b"x" * 300 * 10**6)
    (root / "old.bin").unlink()
    monkeypatch.setenv("FAKE_COLAB_QUOTA_BYTES", str(fake_colab.used() + 400 * 10**6))
    with pytest.raises(ColabkitError) as e:
        train(config(), device="cpu")
    assert "Drive space: 0.40 GB free on Drive, the run needs about 0.51 GB" in str(e.value)
    assert not project.state.exists() and not list(project.output.glob("*.safetensors"))


def test_short_epochs_do_not_each_save_a_state(fake_colab, tiny_sdxl, monkeypatch):
    from colabkit.colab import mount_drive
    from colabkit.project import Project
    from colabkit.train import state
    from colabkit.train.loop import train

    fill_dataset(Project.at("houtline", mount_drive()))
    saved = []
    real = state.StateStore.save
    monkeypatch.setattr(state.StateStore, "save",
                        lambda self, st: saved.append((st.step, st.finished)) or real(self, st))
    # Saving by the clock (the notebook's way): four epochs of seconds each, one save every 10 minutes.
    assert train(config(save_state_every_n_steps=0), device="cpu").status == "finished"
    assert saved == [(32, True)]  # was one at each of the first three epoch ends too
