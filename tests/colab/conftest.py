import pytest

from helpers.colab_runtime import in_process


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """This test process as a Colab runtime (the stand-in), Drive unmounted at first."""
    with in_process(tmp_path, monkeypatch) as colab:
        yield colab
