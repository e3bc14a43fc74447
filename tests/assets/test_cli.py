"""`python -m colabkit compare | generate | cutout`: options generated from the step configs."""

import pytest
from PIL import Image

from colabkit.cli import main


def test_cutout_any_folder(tmp_path, capsys):
    from test_cutout import make_sheet

    src = tmp_path / "sheets"
    src.mkdir()
    Image.fromarray(make_sheet((250, 250, 245))[0]).save(src / "props.png")
    assert main(["cutout", "--input-folder", str(src), "--palette-colors", "16", "--min-area", "64",
                 "--gap", "26", "--shadows", "remove", "--close-gaps", "0", "--one-atlas", "false"]) == 0
    sprites = sorted((src / "assets" / "props").glob("props_[0-9][0-9].png"))
    assert len(sprites) == 5
    assert len({c for c in Image.open(sprites[0]).getdata() if c[3]}) <= 16
    assert (src / "assets" / "props" / "props_atlas.json").exists()
    assert "props.png" in capsys.readouterr().out


def test_mistakes_are_one_clear_line(tmp_path, capsys, drive):
    assert main(["cutout"]) == 2
    assert "give project_name" in capsys.readouterr().err
    assert main(["cutout", "--input-folder", str(tmp_path / "nowhere")]) == 2
    assert "No folder of pictures" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--project-name", "houtline", "--sampler", "DDIM"])  # not a choice


@pytest.mark.slow
def test_generate_and_compare(lora_project, capsys):
    common = ["--project-name", "houtline", "--base-model", "tiny-sdxl", "--size", "64x64", "--steps", "2",
              "--device", "cpu"]
    assert main(["generate", *common, "--num-images", "1", "--seed", "9", "--sampler", "Euler a",
                 "--seamless", "--lora-scale", "0.5"]) == 0
    from colabkit.assets.generate import read_parameters

    info = read_parameters(lora_project.output / "generated" / "00000-9.png")
    assert info["Sampler"] == "Euler a" and info["Tiling"] == "True" and "<lora:houtline:0.5>" in info["prompt"]
    assert main(["compare", *common, "--lora-files", "houtline-01", "--lora-weights", "1"]) == 0
    assert len(list((lora_project.output / "compare").glob("*.png"))) == 1
