import shutil

import pytest
from PIL import Image

from colabkit.dataset.items import save_limits
from colabkit.project import Project
from colabkit.train.config import TrainConfig
from helpers.tiny_dataset import drawing


def draw(i: int, size: tuple[int, int]) -> Image.Image:
    """A small 'drawing': dark outlines on white, different per i (the one drawing of tests/helpers/tiny_dataset)."""
    return drawing(i, size)


def fill_project() -> Project:
    project = Project.at("houtline").create()
    for i in range(4):
        draw(i, (64, 64) if i % 2 else (96, 64)).save(project.dataset / f"d{i}.png")
        (project.dataset / f"d{i}.txt").write_text(f"houtline, outline, {'circle' if i % 2 else 'wide'}, tag{i}")
    # As if the artist ran the dataset check allowing these tiny drawings (its default rejects under 512 px,
    # and training uses only what the check accepts), so tests at resolution 1024 still see them.
    save_limits(project, 32, 4.0)
    return project


@pytest.fixture
def tiny_project(drive, tiny_sdxl):
    """A project with 4 captioned drawings (two aspect ratios), ready to train on tiny-sdxl."""
    return fill_project()


@pytest.fixture(scope="session")
def _stopped_drive(tmp_path_factory, tiny_sdxl):
    from colabkit.train.loop import train
    from helpers.budget import StopAfter

    root = tmp_path_factory.mktemp("stopped") / "MyDrive"
    root.mkdir()
    with pytest.MonkeyPatch.context() as m:
        m.setenv("COLABKIT_DRIVE_ROOT", str(root))
        fill_project()
        result = train(tiny_config(epochs=3), budget=StopAfter(2), device="cpu")
    assert result.status == "stopped" and result.step == 2
    return root


@pytest.fixture
def stopped_project(drive, _stopped_drive):
    """tiny_project after ``train(tiny_config(epochs=3))`` was stopped by the budget at step 2.

    Trained once per session and copied into each test's Drive (a Drive folder carries the whole run),
    instead of the same few training steps once per test.
    """
    shutil.copytree(_stopped_drive, drive, dirs_exist_ok=True)
    return Project.at("houtline")


@pytest.fixture
def make_config():
    """TrainConfig for tiny-sdxl at 64 px: a few CPU-seconds a run."""
    return tiny_config


def tiny_config(**changes) -> TrainConfig:
    values = dict(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=2, epochs=2,
                  train_batch_size=2, optimizer="AdamW", unet_lr=1e-3, network_dim=4, network_alpha=2,
                  sample_every_n_epochs=0, sample_steps=2, save_state_every_n_steps=2, seed=7)
    values.update(changes)
    return TrainConfig(**values)
