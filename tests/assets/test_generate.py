"""Generation and the epoch grid on tiny-sdxl with LoRA files in the exact kohya format; A1111's PNG info."""

import numpy as np
import pytest
from PIL import Image

from colabkit.assets.config import CompareConfig, GenerateConfig, parse_size
from colabkit.assets.generate import (format_parameters, parse_parameters, read_parameters, suggested_prompt)
from colabkit.errors import ColabkitError

A1111 = ('masterpiece, houtline, magic tree, <lora:houtline:0.8>\nNegative prompt: lowres, bad anatomy\n'
         'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 1024x1024, Model hash: 31e35c80fc, '
         'Model: sd_xl_base_1.0, Lora hashes: "houtline: 0123456789ab", Version: v1.7.0')


def test_a1111_text_parses_and_is_written_back_exactly():
    parsed = parse_parameters(A1111)
    assert parsed["prompt"] == "masterpiece, houtline, magic tree, <lora:houtline:0.8>"
    assert parsed["negative_prompt"] == "lowres, bad anatomy"
    assert parsed["Steps"] == "20" and parsed["Sampler"] == "DPM++ 2M Karras" and parsed["Size"] == "1024x1024"
    assert parsed["Lora hashes"] == "houtline: 0123456789ab" and parsed["Model hash"] == "31e35c80fc"
    params = {k: v for k, v in parsed.items() if k not in ("prompt", "negative_prompt")}
    assert format_parameters(parsed["prompt"], parsed["negative_prompt"], params) == A1111


def test_quoting_round_trips():
    params = {"Steps": 4, "Sampler": "Euler a", "CFG scale": "5.5", "Seed": 3, "Note": 'a, b: "c"\nd', "Skip": None}
    text = format_parameters("line one\nline two", "", params)
    assert "Negative prompt" not in text and "Skip" not in text
    back = parse_parameters(text)
    assert back["prompt"] == "line one\nline two" and back["negative_prompt"] == ""
    assert back["Note"] == 'a, b: "c"\nd' and back["Steps"] == "4"


def test_settings_line_is_written_as_a1111_writes_it(tmp_path):
    from colabkit.assets.generate import a1111_lora_alias, generation_params
    from colabkit.assets.pipeline import a1111_model_name
    from colabkit.train.models.resolve import ResolvedModel

    cfg = GenerateConfig(project_name="p", steps=20, seed=3, size="832x1216")
    note = f"{a1111_lora_alias('my:lora, v2')}: 0123456789ab"
    text = format_parameters("a cat <lora:x:0.8>", "", generation_params(cfg, 3, "sd_xl_base_1.0", "31e35c80fc",
                                                                         note))
    back = parse_parameters(text)
    assert back["Lora hashes"] == "mylora v2: 0123456789ab"  # ':' and ',' removed, as A1111 does
    assert back["RNG"] == "CPU" and back["Model"] == "sd_xl_base_1.0" and back["Size"] == "832x1216"
    assert "Tiling" not in back
    assert text.splitlines()[-1].startswith("Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3, ")
    file = ResolvedModel(name="SDXL base 1.0", kind="single_file", path=tmp_path / "sd_xl_base_1.0.safetensors",
                         prediction_type="epsilon", source="cache")
    assert a1111_model_name(file) == "sd_xl_base_1.0"
    folder = ResolvedModel(name="x", kind="diffusers", path=tmp_path / "my.model", prediction_type="epsilon",
                           source="path")
    assert a1111_model_name(folder) == "my.model"


def test_configs_are_checked_once_with_every_problem():
    with pytest.raises(ColabkitError) as e:
        GenerateConfig(project_name="p", size="1000x1000", sampler="DDIM", steps=0, num_images=0)
    text = str(e.value)
    assert "size '1000x1000'" in text and "sampler must be one of" in text and "steps" in text and "num_images" in text
    assert parse_size("1216 x 832") == (1216, 832)
    with pytest.raises(ColabkitError, match="lora_weights"):
        CompareConfig(project_name="p", lora_weights="0.6, lots")


def test_prompt_comes_from_the_lora_tags_then_the_captions(lora_project, tmp_path):
    prompt = suggested_prompt(lora_project.output / "houtline.safetensors", lora_project.dataset)
    assert prompt.startswith("houtline, outline, magic tree")
    # a LoRA without tags (made elsewhere): the project's captions
    from safetensors.torch import load_file, save_file

    bare = tmp_path / "bare.safetensors"
    save_file(load_file(lora_project.output / "houtline.safetensors"), str(bare))
    assert suggested_prompt(bare, lora_project.dataset).startswith("houtline, outline")


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_generate_writes_pngs_with_parameters_and_the_lora_changes_them(lora_project):
    from safetensors import safe_open

    from colabkit.assets.generate import generate_images

    cfg = GenerateConfig(project_name="houtline", base_model="tiny-sdxl", size="64x128", steps=2, num_images=2,
                         seed=11, lora_scale=1.0, prompt="houtline, magic tree")
    first = generate_images(cfg, device="cpu")
    assert [p.name for p in first] == ["00000-11.png", "00001-12.png"]
    assert Image.open(first[0]).size == (64, 128)
    info = read_parameters(first[0])
    with safe_open(str(lora_project.output / "houtline.safetensors"), "pt") as f:
        short = f.metadata()["sshs_model_hash"][:12]
    assert info["prompt"] == "houtline, magic tree <lora:houtline:1>"
    assert info["negative_prompt"] == cfg.negative_prompt
    assert {k: info[k] for k in ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Lora hashes")} == {
        "Steps": "2", "Sampler": "DPM++ 2M Karras", "CFG scale": "7", "Seed": "11", "Size": "64x128",
        "Model": "tiny-sdxl", "Lora hashes": f"houtline: {short}"}
    assert info["RNG"] == "CPU"
    assert read_parameters(first[1])["Seed"] == "12"

    again = generate_images(cfg.replace(num_images=1), device="cpu")  # numbered on, never overwriting
    assert again[0].name == "00002-11.png" and np.array_equal(_pixels(again[0]), _pixels(first[0]))
    weaker = generate_images(cfg.replace(num_images=1, lora_scale=0.3), device="cpu")[0]
    other = generate_images(cfg.replace(num_images=1, lora_file="houtline-01"), device="cpu")[0]
    base = generate_images(cfg.replace(num_images=1, lora_file="none"), device="cpu")[0]
    for changed in (weaker, other, base):
        assert np.abs(_pixels(changed) - _pixels(first[0])).mean() > 1.0, changed.name
    assert "Lora hashes" not in read_parameters(base) and "<lora:" not in read_parameters(base)["prompt"]
    assert read_parameters(other)["Lora hashes"].startswith("houtline-01: ")
    # training went on in between and rewrote the final file: the new weights are used, not the loaded ones
    import shutil

    shutil.copyfile(lora_project.output / "houtline-01.safetensors", lora_project.output / "houtline.safetensors")
    refreshed = generate_images(cfg.replace(num_images=1), device="cpu")[0]
    assert np.array_equal(_pixels(refreshed), _pixels(other))


def test_seamless_wraps_the_convolutions_only_while_generating(lora_project):
    import torch

    from colabkit.assets.generate import generate_images
    from colabkit.assets.pipeline import load_pipeline, seamless

    cfg = GenerateConfig(project_name="houtline", base_model="tiny-sdxl", size="64x64", steps=2, num_images=1, seed=3)
    plain = generate_images(cfg, device="cpu")[0]
    tiled = generate_images(cfg.replace(seamless=True), device="cpu")[0]
    assert read_parameters(tiled)["Tiling"] == "True" and "Tiling" not in read_parameters(plain)
    assert np.abs(_pixels(plain) - _pixels(tiled)).mean() > 0.5
    pipe = load_pipeline("tiny-sdxl", device="cpu").pipe
    convs = [m for model in (pipe.unet, pipe.vae) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.padding_mode for m in convs} == {"zeros"}
    with seamless(pipe, True):
        assert {m.padding_mode for m in convs} == {"circular"}
    assert {m.padding_mode for m in convs} == {"zeros"}


def test_grid_labels_fit_and_the_settings_are_printed_under_it():
    from PIL import ImageDraw

    from colabkit.assets.compare import PAD, header_height, labelled_grid

    cells = [[Image.new("RGB", (64, 64), (200, 40, 40))] * 3 for _ in range(2)]
    rows = ["houtline-000012 (prompt 1)", "x"]
    grid = labelled_grid(cells, rows, ["no LoRA", "weight 0.6", "a very long column label indeed"], 64,
                         footer="Prompt: a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3)
    label_w = grid.width - 3 * 64
    measure = ImageDraw.Draw(grid)
    from colabkit.assets.compare import _font

    assert label_w >= measure.textlength(rows[0], font=_font(14)) + 2 * PAD  # the row label is whole
    px = np.asarray(grid.convert("L"))
    head = header_height()
    assert (px[head + PAD:head + 20, PAD:label_w - PAD] < 128).any()
    # the third column's label was set smaller or cut: nothing drawn past the grid's right edge
    assert grid.width == label_w + 3 * 64
    footer = px[head + 2 * 64:]
    assert footer.shape[0] > 40 and (footer < 128).sum(axis=1).astype(bool).sum() > 20  # several lines of text


@pytest.mark.slow
def test_epoch_grid(lora_project):
    from colabkit.assets.compare import compare_epochs, header_height

    cfg = CompareConfig(project_name="houtline", base_model="tiny-sdxl", size="64x64", steps=2, cell_size=64,
                        lora_weights="0.5, 1.5", seed=21)
    path = compare_epochs(cfg, device="cpu")
    assert path.parent == lora_project.output / "compare"
    head = header_height()
    grid = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    label_w = grid.shape[1] - 3 * 64  # no LoRA, weight 0.5, weight 1.5
    cell = {(r, c): grid[head + r * 64:head + (r + 1) * 64, label_w + c * 64:label_w + (c + 1) * 64]
            for r in range(2) for c in range(3)}
    assert np.array_equal(cell[0, 0], cell[1, 0])  # the base model alone: the same in every row
    assert np.abs(cell[0, 0] - cell[0, 1]).mean() > 1.0  # the LoRA matters
    assert np.abs(cell[0, 1] - cell[0, 2]).mean() > 1.0  # the weight matters
    assert np.abs(cell[0, 2] - cell[1, 2]).mean() > 1.0  # so does the epoch
    assert (grid[:head, label_w:] < 128).any() and (grid[head:head + 128, :label_w] < 128).any()  # labels drawn
    assert (grid[head + 128:] < 128).any()  # the settings printed under the grid
    info = read_parameters(path)
    assert info["Seed"] == "21" and info["Steps"] == "2" and info["RNG"] == "CPU" and info["prompt"]
    assert info["Compared"] == "houtline-01, houtline" and info["Weights"] == "0.5, 1.5"
    with pytest.raises(ColabkitError, match="No LoRA file 'houtline-07'"):
        compare_epochs(cfg.replace(lora_files="houtline-07"), device="cpu")


def test_half_precision_unet_with_a_float32_vae(lora_project):
    """The T4 path (float16 UNet and encoders, LoRA on top, VAE decoding in float32), run on the CPU."""
    import torch

    from colabkit.assets.pipeline import load_pipeline, render, use_loras

    loaded = load_pipeline("tiny-sdxl", device="cpu", dtype=torch.float16)
    use_loras(loaded, {lora_project.output / "houtline-01.safetensors": 0.8})
    assert loaded.pipe.unet.dtype == torch.float16 and loaded.pipe.vae.dtype == torch.float32
    image = np.asarray(render(loaded, "houtline", "lowres", width=64, height=64, steps=2, guidance_scale=7.0, seed=1,
                              sampler="Euler a"), dtype=np.int16)
    assert image.shape == (64, 64, 3) and image.std() > 1.0
    use_loras(loaded, {})
    assert not loaded.loras


def test_prompt_from_captions_reads_the_repeats_folders(tmp_path):
    # Captions only in dataset/<repeats>_<name>/ (kohya's layout): the suggestion still finds the activation tag.
    dataset = tmp_path / "dataset"
    for folder, tags in (("3_style", "houtline, ink, tree"), ("1_props", "houtline, ink, sword")):
        (dataset / folder).mkdir(parents=True)
        for i in range(2):
            (dataset / folder / f"{i}.png").write_bytes(b"")
            (dataset / folder / f"{i}.txt").write_text(tags)
    (dataset / "notes").mkdir()  # not a <repeats>_<name> folder: its captions are not the training set's
    (dataset / "notes" / "x.txt").write_text("unrelated, words")
    prompt = suggested_prompt(None, dataset)
    assert prompt.startswith("houtline, ink"), prompt
    assert "unrelated" not in prompt
