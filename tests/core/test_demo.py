import json

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
    assert "Loading tiny-sdxl on cpu." in out  # not "(no on cpu)": mixed precision "no" is not a word to show
    record = json.loads((drive / "Loras" / "demo" / "output" / "demo.json").read_text())
    assert record["activation_tag"] == "houtline"  # the one the run used (taken from the captions), not ""
    # Running it again trains nothing more: the run is recognised as finished, and the way on is the demo's own
    # options, which --help offers.
    assert main(["demo", "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "demo --steps 12" in out and "demo --start-over" in out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    helped = capsys.readouterr().out
    assert "--steps" in helped and "--start-over" in helped
