import shutil

import pytest
import torch

from colabkit.project import Project


def save_random_lora(tiny, path, seed: int, lora_type: str = "LoRA", scale: float = 0.5):
    """A kohya-format SDXL LoRA (or LoCon) on tiny-sdxl's UNet with random non-zero weights, saved as training does."""
    from diffusers import UNet2DConditionModel

    from colabkit.train.lora import add_lora, build_metadata, export_kohya, lora_parameters, save_lora, unet_targets

    unet = UNet2DConditionModel.from_pretrained(tiny / "unet")
    torch.manual_seed(seed)
    add_lora(unet, unet_targets(unet, lora_type), 4, 4.0)
    with torch.no_grad():
        for p in lora_parameters(unet):
            p.copy_(torch.randn_like(p) * scale)
    meta = build_metadata(
        output_name=path.stem, network_dim=4, network_alpha=4.0, lora_type=lora_type, resolution=64, num_train_images=8,
        tag_frequency={"2_houtline": {"houtline": 4, "outline": 4, "circle": 2, "magic tree": 3}},
        activation_tag="houtline", base_model_name="tiny-sdxl", prediction_type="epsilon", unet_lr=1e-3,
        text_encoder_lr=0.0, epoch=seed, steps=8, seed=seed)
    return save_lora(path, export_kohya(unet, alpha=4.0), meta)


@pytest.fixture(scope="session")
def random_loras(tiny_sdxl, tmp_path_factory):
    """Two LoRA files with different random weights (a LoRA and a LoCon), made once per test session."""
    folder = tmp_path_factory.mktemp("loras")
    return [save_random_lora(tiny_sdxl, folder / f"lora{seed}.safetensors", seed, kind)
            for seed, kind in ((1, "LoRA"), (2, "LoCon"))]


@pytest.fixture
def lora_project(drive, random_loras):
    """A project with captions, an epoch LoRA file and a final one (random weights, kohya format)."""
    project = Project.at("houtline").create()
    for i in range(3):
        (project.dataset / f"d{i}.txt").write_text(f"houtline, outline, tag{i}")
    shutil.copyfile(random_loras[0], project.output / "houtline-01.safetensors")
    shutil.copyfile(random_loras[1], project.output / "houtline.safetensors")
    return project
