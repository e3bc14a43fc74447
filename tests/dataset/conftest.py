from pathlib import Path

import pytest

from colabkit.project import Project
from helpers.images import make_mixed_folder


@pytest.fixture
def mixed_project(drive):
    """A project whose dataset/ is the partly broken synthetic folder; returns (project, expected)."""
    project = Project.at("mixed").create()
    expected = make_mixed_folder(project.dataset)
    return project, expected


@pytest.fixture(scope="session")
def tiny_tagger() -> Path:
    from colabkit.tiny.tagger import tiny_tagger_path

    return tiny_tagger_path()


@pytest.fixture(scope="session")
def tiny_blip() -> Path:
    from colabkit.tiny.blip import tiny_blip_path

    return tiny_blip_path()
