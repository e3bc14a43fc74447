"""The typed configs of step 3 (notebook 3's form fields, the CLI's options), validated once at the boundary."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

from colabkit.choices import StepConfig, setting
from colabkit.errors import ColabkitError
from colabkit.i18n import N_

Sampler = Literal["DPM++ 2M Karras", "DPM++ 2M SDE Karras", "Euler a", "Euler"]
Prediction = Literal["auto", "epsilon", "v_prediction"]
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
# SDXL's trained sizes (about 1024^2 each); any WxH with sides a multiple of 64 is accepted.
SDXL_SIZES = ("1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344", "1536x640",
              "640x1536")
NEGATIVE = "lowres, bad anatomy, worst quality, low quality, jpeg artifacts, watermark, text, signature, blurry"


def parse_size(text: str) -> tuple[int, int]:
    """'1216x832' -> (1216, 832): width x height, each a multiple of 64 (SDXL's UNet halves the latent 3 times)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×*]\s*(\d+)\s*", str(text))
    if not m:
        raise ColabkitError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 1024x1024 or 1216x832.")
    w, h = int(m[1]), int(m[2])
    if w < 64 or h < 64 or w % 64 or h % 64 or w * h > 2048 * 2048:
        raise ColabkitError(f"size {text!r}: width and height must be multiples of 64 between 64 and 2048 "
                            f"(SDXL's own sizes: {', '.join(SDXL_SIZES)}).")
    return w, h


def parse_weights(text: str) -> list[float]:
    """'0.6, 0.8, 1.0' -> [0.6, 0.8, 1.0]."""
    try:
        weights = [float(x) for x in re.split(r"[,\s;]+", str(text).strip()) if x]
    except ValueError:
        raise ColabkitError(f"lora_weights {text!r}: write numbers separated by commas, e.g. 0.6, 0.8, 1.0.") from None
    if not weights or any(not -4 <= w <= 4 for w in weights):
        raise ColabkitError(f"lora_weights {text!r}: give one to a few weights between -4 and 4, e.g. 0.6, 0.8, 1.0.")
    return weights


def split_names(text: str) -> list[str]:
    """'a.safetensors, b' -> ['a.safetensors', 'b'] (commas or new lines)."""
    return [x.strip() for x in re.split(r"[,\n]", str(text)) if x.strip()]


class _Config(StepConfig):
    def _render_problems(self) -> typing.Iterator[str]:
        try:
            parse_size(self.size)
        except ColabkitError as e:
            yield str(e)
        if not 1 <= self.steps <= 150:
            yield f"steps must be between 1 and 150 (20-30 is usual); got {self.steps}."
        if not 0 <= self.guidance_scale <= 30:
            yield f"guidance_scale must be between 0 and 30 (5-8 is usual); got {self.guidance_scale}."
        if self.seed < 0:
            yield f"seed cannot be negative; got {self.seed}."
        if not str(self.base_model).strip():
            yield "base_model is empty: pick the model you trained on (or any SDXL checkpoint: preset, URL or path)."

    @property
    def width(self) -> int:
        return parse_size(self.size)[0]

    @property
    def height(self) -> int:
        return parse_size(self.size)[1]


@dataclass
class CompareConfig(_Config):
    """The epoch grid: rows = LoRA files of output/, columns = LoRA weights; same prompts and seed everywhere."""

    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _)."))
    base_model: str = setting("SDXL base 1.0", N_(
        "The model you trained on (found again on Drive), or any other SDXL: a preset, a link to a .safetensors "
        "checkpoint or a path; tiny-sdxl is built in (random weights)."))
    lora_files: str = setting("", N_(
        "Names of LoRA files in output/, separated by commas; empty compares them all (the epochs, then the final "
        "one)."))
    lora_weights: str = setting("0.6, 0.8, 1.0", N_(
        "The LoRA weights to compare (the grid's columns), separated by commas."))
    prompt: str = setting("", N_(
        "One prompt per line; empty: your activation tag plus your dataset's most frequent tags."))
    negative_prompt: str = setting(NEGATIVE, N_("What the pictures should not show."))
    seed: int = setting(1234, N_(
        "The seed of every picture in the grid, so the files are compared on the same picture."))
    steps: int = setting(20, N_("Sampling steps per picture (20-30 is usual)."))
    guidance_scale: float = setting(7.0, N_("How strictly the pictures follow the prompt (5-8 is usual)."))
    size: str = setting("1024x1024", N_(
        "Picture size as WIDTHxHEIGHT, each side a multiple of 64 (SDXL's own sizes: 1024x1024, 1216x832, ...)."))
    sampler: Sampler = setting("DPM++ 2M Karras", N_(
        "DPM++ 2M Karras is sharp in 20-30 steps; Euler a is softer and more varied."))
    cell_size: int = setting(384, N_("Each picture's longest side in the grid, in pixels."))
    prediction_type: Prediction = setting("auto", N_(
        "auto reads it from the checkpoint; pick v_prediction for a v-pred model that does not say so."))

    def _problems(self):
        yield from self._render_problems()
        try:
            parse_weights(self.lora_weights)
        except ColabkitError as e:
            yield str(e)
        if not 32 <= self.cell_size <= 1024:
            yield f"cell_size must be between 32 and 1024; got {self.cell_size}."


@dataclass
class GenerateConfig(_Config):
    """Pictures with the LoRA, written to output/generated/ with A1111's `parameters` text chunk."""

    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _)."))
    base_model: str = setting("SDXL base 1.0", N_(
        "The model you trained on (found again on Drive), or any other SDXL: a preset, a link to a .safetensors "
        "checkpoint or a path; tiny-sdxl is built in (random weights)."))
    lora_file: str = setting("", N_(
        "The LoRA file you picked (a name in output/ or a path); empty: the final one (else the newest epoch); "
        "none: no LoRA."))
    lora_scale: float = setting(0.8, N_("The LoRA's weight (0.6-1.0 is usual)."))
    prompt: str = setting("", N_("What to draw; empty: your activation tag plus your dataset's most frequent tags."))
    negative_prompt: str = setting(NEGATIVE, N_("What the pictures should not show."))
    seed: int = setting(-1, N_(
        "-1 picks a new one each run; every picture keeps its seed in its PNG info, so a good one can be made "
        "again."))
    steps: int = setting(25, N_("Sampling steps per picture (20-30 is usual)."))
    guidance_scale: float = setting(7.0, N_("How strictly the pictures follow the prompt (5-8 is usual)."))
    size: str = setting("1024x1024", N_(
        "Picture size as WIDTHxHEIGHT, each side a multiple of 64 (SDXL's own sizes: 1024x1024, 1216x832, ...)."))
    num_images: int = setting(4, N_("How many pictures to make."))
    sampler: Sampler = setting("DPM++ 2M Karras", N_(
        "DPM++ 2M Karras is sharp in 20-30 steps; Euler a is softer and more varied."))
    seamless: bool = setting(False, N_("Tileable textures: the picture wraps around at its edges."))
    prediction_type: Prediction = setting("auto", N_(
        "auto reads it from the checkpoint; pick v_prediction for a v-pred model that does not say so."))

    def _problems(self):
        # -1 is allowed here (random); the rest of the render checks apply
        yield from (p for p in self._render_problems() if not p.startswith("seed"))
        if self.seed < -1:
            yield f"seed must be -1 (random) or a number >= 0; got {self.seed}."
        if not 1 <= self.num_images <= 100:
            yield f"num_images must be between 1 and 100; got {self.num_images}."
        if not -4 <= self.lora_scale <= 4:
            yield f"lora_scale must be between -4 and 4 (0.6-1.0 is usual); got {self.lora_scale}."


@dataclass
class CutoutConfig(_Config):
    """Cut pictures on a plain light background out into transparent sprites, an atlas and its JSON."""

    project_name: str = setting("", N_(
        "With no input_folder: the project whose output/generated/ pictures are cut out."))
    input_folder: str = setting("", N_(
        "Any folder of pictures (made anywhere); empty: the project's output/generated/."))
    output_folder: str = setting("", N_(
        "Where the sprites go; empty: the project's output/assets/, or input_folder/assets without a project."))
    tolerance: int = setting(24, N_(
        "How far (0-255 per colour channel) a pixel may be from the background colour: raise it if specks of "
        "background stay; lower it if pale parts of a sprite vanish."))
    softness: int = setting(48, N_(
        "The shortest soft edge kept around shapes, in the same units as tolerance (for pale shapes)."))
    gap: int = setting(8, N_("Parts closer than this many pixels are one sprite."))
    min_area: int = setting(64, N_("Smaller specks (in pixels) are dropped."))
    margin: int = setting(2, N_("Transparent pixels kept around each trimmed sprite."))
    palette_colors: int = setting(0, N_(
        "For pixel art, e.g. 16: reduce each sprite to this many colours; 0 keeps every colour."))
    atlas_padding: int = setting(2, N_("Transparent pixels between the sprites in atlas.png."))
    model_file: str = setting("", N_(
        "Optional: an .onnx background-removal model on Drive for busy backgrounds, BiRefNet (MIT) or isnet-anime "
        "(Apache-2.0); empty: the plain-background fill. Not BRIA RMBG: its licence forbids commercial use."))

    def _problems(self):
        if not self.project_name and not self.input_folder:
            yield "give project_name (to cut out its output/generated/ pictures) or input_folder (any folder)."
        if not 0 <= self.tolerance <= 254:
            yield f"tolerance must be between 0 and 254 (24 suits a plain background); got {self.tolerance}."
        if not 1 <= self.softness <= 255:
            yield f"softness must be between 1 and 255; got {self.softness}."
        for name in ("gap", "min_area", "margin", "atlas_padding"):
            if getattr(self, name) < 0:
                yield f"{name} cannot be negative; got {getattr(self, name)}."
        if self.palette_colors and not 2 <= self.palette_colors <= 256:
            yield f"palette_colors must be 0 (off) or between 2 and 256; got {self.palette_colors}."
        if "rmbg" in self.model_file.lower():
            yield ("BRIA RMBG models are licensed for non-commercial use only: use BiRefNet (MIT) or isnet-anime "
                   "(Apache-2.0) as model_file, or leave it empty for the flood fill.")
