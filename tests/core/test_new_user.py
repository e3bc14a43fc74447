"""What a new user meets first: offline paths that name the built-in tiny models, colabkit's errors in a
notebook as one message, light inline pictures, readable output files."""

import os
import stat

import pytest
from PIL import Image

from colabkit import display, files
from colabkit.errors import ColabkitError


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    # Nothing downloaded before: the hub's cache and colabkit's are empty folders.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("COLABKIT_CACHE", str(tmp_path / "colabkit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _quick(fn, *args, **kwargs):
    with pytest.raises(ColabkitError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_offline_tagging_names_the_builtin_tagger(no_hub_cache):
    from colabkit.dataset.wd14 import load_tagger

    message = _quick(load_tagger, "wd-eva02-large-tagger-v3")
    assert "SmilingWolf/wd-eva02-large-tagger-v3" in message and "offline" in message
    assert "'tiny-wd14'" in message and "tagger_model" in message


def test_offline_captions_name_the_builtin_captioner(no_hub_cache):
    from colabkit.dataset.blip import load_captioner, unload_captioner

    unload_captioner()
    message = _quick(load_captioner, "Salesforce/blip-image-captioning-large", device="cpu")
    assert "Salesforce/blip-image-captioning-large" in message and "offline" in message
    assert "'tiny-blip'" in message and "caption_model" in message


def test_offline_base_model_download_names_tiny_sdxl(no_hub_cache, tmp_path):
    from colabkit.train.models import resolve_base_model

    message = _quick(resolve_base_model, "SDXL base 1.0", models_dir=tmp_path / "_models")
    assert "sd_xl_base_1.0.safetensors" in message and "offline" in message
    assert "'tiny-sdxl'" in message and "base_model" in message


def test_unreachable_hub_is_said_at_once(no_hub_cache, monkeypatch):
    # No HF_HUB_OFFLINE, but no route to the hub (a machine without internet): one try, then the message.
    from colabkit import offline
    from colabkit.dataset.wd14 import resolve_tagger

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(offline, "reachable", lambda url, timeout=5.0: False)
    real, online_calls = huggingface_hub.hf_hub_download, []

    def spy(*args, local_files_only=False, **kwargs):
        if not local_files_only:
            online_calls.append(args)  # would be ~25 s of "Retrying in 8s" with no route to the hub
        return real(*args, local_files_only=True, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    message = _quick(resolve_tagger, "wd-vit-tagger-v3")
    assert "huggingface.co cannot be reached" in message and "'tiny-wd14'" in message
    assert online_calls == []


def test_builtin_models_are_offered_where_the_choices_are():
    from colabkit.cli import build_parser
    from helpers.notebooks import NOTEBOOKS

    dataset_nb = (NOTEBOOKS / "1_dataset.py").read_text()
    train_nb = (NOTEBOOKS / "2_train.py").read_text()
    for name, source in (("tiny-wd14", dataset_nb), ("tiny-blip", dataset_nb), ("tiny-sdxl", train_nb)):
        dropdown = [line for line in source.splitlines() if "# @param [" in line and f'"{name}"' in line]
        assert dropdown, f"{name} is not in a form-field dropdown"
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    helps = {cmd: sub[cmd].format_help() for cmd in ("tag", "train", "preflight")}
    assert "tiny-wd14" in helps["tag"] and "tiny-blip" in helps["tag"]
    assert "tiny-sdxl" in helps["train"] and "tiny-sdxl" in helps["preflight"]
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert all(name in readme for name in ("tiny-sdxl", "tiny-wd14", "tiny-blip"))


def test_colabkit_errors_show_as_their_message_in_ipython(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert display.install_error_display(shell)
        result = shell.run_cell("from colabkit.errors import ColabkitError\n"
                                "raise ColabkitError('No project nope. Fix: run step 1 first.')")
        assert isinstance(result.error_in_exec, ColabkitError)  # the cell still failed: Run all stops here
        shown = capsys.readouterr().out
        assert "No project nope. Fix: run step 1 first." in shown
        assert "Traceback" not in shown and "----> " not in shown and "line 2" not in shown
        result = shell.run_cell("1 / 0")  # anything else: IPython's usual traceback
        assert isinstance(result.error_in_exec, ZeroDivisionError)
        assert "Traceback" in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()


def test_previews_are_light_and_full_files_stay(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    grid = tmp_path / "grid.png"  # a 3-image 1024 px sample grid: noise-like detail, as PNG ~ megabytes
    Image.fromarray(rng.integers(0, 256, (1024, 3072, 3), dtype=np.uint8)).save(grid)
    data, fmt = display.preview_bytes(grid)
    assert fmt == "jpeg" and len(data) < grid.stat().st_size / 5 and len(data) < 1_000_000
    with Image.open(__import__("io").BytesIO(data)) as im:
        assert im.size == (1024, 341)
    assert Image.open(grid).size == (3072, 1024)  # the file on Drive is untouched
    small = tmp_path / "loss.png"
    Image.new("RGB", (600, 300), "white").save(small)
    assert display.preview_bytes(small) == (small.read_bytes(), "png")  # small pictures embed as they are


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_usual_mode(tmp_path, mask):
    old = os.umask(mask)
    try:
        paths = [files.write_text(tmp_path / "caption.txt", "houtline"),
                 files.save_safetensors(tmp_path / "lora.safetensors", {}),
                 files.write_json(tmp_path / "run.json", {"a": 1})]
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_library_noise_is_dropped_only_around_our_calls():
    import logging

    seen = []

    class Keep(logging.Handler):  # on the loggers themselves: the libraries turn propagation to the root off
        def emit(self, record):
            seen.append(record.getMessage())

    noise = [(name, f"{text} (details)") for name, text in display.LIBRARY_NOISE]
    handler = Keep(logging.WARNING)
    for name, _ in noise:
        logging.getLogger(name).addHandler(handler)
    try:
        with display.quiet_library_notices():
            for name, message in noise:
                logging.getLogger(name).warning(message)
            logging.getLogger("diffusers.models.modeling_utils").warning("a real problem")
        assert seen == ["a real problem"]  # other messages still show
        seen.clear()
        for name, message in noise:
            logging.getLogger(name).warning(message)
        assert seen == [m for _, m in noise]  # not silenced globally: only inside the block
    finally:
        for name, _ in noise:
            logging.getLogger(name).removeHandler(handler)


@pytest.mark.slow
def test_offline_tagging_in_the_notebook_is_one_message_naming_tiny_wd14(drive, tmp_path):
    # A new user's first run without internet: notebook 1 as it comes, only project_name changed.
    from nbclient.exceptions import CellExecutionError

    from colabkit.tiny.drawings import make_image_folder
    from helpers.notebooks import NOTEBOOKS, outputs, run_notebook

    make_image_folder(drive / "Loras" / "offline" / "dataset", 2, size=(640, 640))
    env = {"COLABKIT_DRIVE_ROOT": str(drive), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    with pytest.raises(CellExecutionError) as e:
        run_notebook(NOTEBOOKS / "1_dataset.py", {"project_name": "offline"}, env=env, timeout=300)
    errors = [o for o in outputs(e.value.notebook) if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "ColabkitError"
    shown = "\n".join(errors[0]["traceback"])
    assert "SmilingWolf/wd-eva02-large-tagger-v3" in shown and "offline" in shown and "'tiny-wd14'" in shown
    assert "Traceback" not in shown and "File " not in shown and "Retrying" not in shown
