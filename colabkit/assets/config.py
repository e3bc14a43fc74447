"""The typed configs of step 3 (notebook 3's form fields, the CLI's options), validated once at the boundary."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

from colabkit.choices import StepConfig
from colabkit.errors import ColabkitError

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

    project_name: str
    base_model: str = "SDXL base 1.0"
    lora_files: str = ""  # names in output/, comma-separated; "": every LoRA file there (epochs, then final)
    lora_weights: str = "0.6, 0.8, 1.0"
    prompt: str = ""  # one per line; "": the activation tag plus the dataset's most frequent tags
    negative_prompt: str = NEGATIVE
    seed: int = 1234
    steps: int = 20
    guidance_scale: float = 7.0
    size: str = "1024x1024"
    sampler: Sampler = "DPM++ 2M Karras"
    cell_size: int = 384  # each picture's longest side in the grid
    prediction_type: Prediction = "auto"  # "auto": read from the checkpoint

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

    project_name: str
    base_model: str = "SDXL base 1.0"
    lora_file: str = ""  # a name in output/ or a path; "": the final LoRA (else the newest epoch); "none": no LoRA
    lora_scale: float = 0.8
    prompt: str = ""  # "": the activation tag plus the dataset's most frequent tags
    negative_prompt: str = NEGATIVE
    seed: int = -1  # -1: a random seed (written into each PNG, so any picture can be made again)
    steps: int = 25
    guidance_scale: float = 7.0
    size: str = "1024x1024"
    num_images: int = 4
    sampler: Sampler = "DPM++ 2M Karras"
    seamless: bool = False  # tileable textures: circular padding in the UNet and VAE convolutions
    prediction_type: Prediction = "auto"  # "auto": read from the checkpoint

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

    project_name: str = ""  # with no input_folder: the project's output/generated/
    input_folder: str = ""  # any folder of pictures (made anywhere); "": <project>/output/generated
    output_folder: str = ""  # "": <project>/output/assets, or <input_folder>/assets without a project
    tolerance: int = 24  # how far (0-255, per colour channel) a pixel may be from the background colour
    softness: int = 48  # the shortest anti-aliased edge ramp, in the same units (for pale shapes)
    gap: int = 8  # parts closer than this many pixels are one sprite
    min_area: int = 64  # smaller specks (in pixels) are dropped
    margin: int = 2  # transparent pixels kept around each trimmed sprite
    palette_colors: int = 0  # > 0: reduce each sprite to this many colours (pixel art); 0: off
    atlas_padding: int = 2
    model_file: str = ""  # an .onnx matting model (BiRefNet: MIT; isnet-anime: Apache-2.0); "": flood fill

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
