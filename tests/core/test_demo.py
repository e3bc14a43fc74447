import pytest
from safetensors import safe_open

from colabkit.cli import main

pytestmark = pytest.mark.slow


def test_readme_main_job_runs_end_to_end(drive, capsys):
    # The README's first command is `python -m colabkit demo`: the same entry point, on a local Drive folder.
    assert main(["demo", "--steps", "6"]) == 0
    out = capsys.readouterr().out
    final = drive / "Loras" / "demo" / "output" / "demo.safetensors"
    assert final.exists() and "Finished: 6/6 steps" in out
    with safe_open(final, "pt") as f:
        assert f.metadata()["modelspec.trigger_phrase"] == "houtline"
        assert all(k.startswith("lora_unet_") for k in f.keys())
    captions = sorted((drive / "Loras" / "demo" / "dataset").glob("*.txt"))
    assert len(captions) == 8 and all(c.read_text().startswith("houtline, ") for c in captions)
    assert (drive / "Loras" / "demo" / "output" / "samples").is_dir()
    # Running it again trains nothing more: the run is recognised as finished.
    assert main(["demo", "--steps", "6"]) == 0
    assert "already finished" in capsys.readouterr().out
