"""The typed configs of step 3 (notebook 3's form fields, the CLI's options), validated once at the boundary."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

from colabkit.choices import StepConfig, setting
from colabkit.errors import ColabkitError
from colabkit.i18n import N_, _

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
        raise ColabkitError(_("size {text!r} is not WIDTHxHEIGHT, e.g. 1024x1024 or 1216x832.").format(text=text))
    w, h = int(m[1]), int(m[2])
    if w < 64 or h < 64 or w % 64 or h % 64 or w * h > 2048 * 2048:
        raise ColabkitError(_("size {text!r}: width and height must be multiples of 64 between 64 and 2048 (SDXL's "
                              "own sizes: {names}).").format(text=text, names=', '.join(SDXL_SIZES)))
    return w, h


def parse_weights(text: str) -> list[float]:
    """'0.6, 0.8, 1.0' -> [0.6, 0.8, 1.0]."""
    try:
        weights = [float(x) for x in re.split(r"[,\s;]+", str(text).strip()) if x]
    except ValueError:
        raise ColabkitError(_("lora_weights {text!r}: write numbers separated by commas, e.g. 0.6, 0.8, 1.0.").format(
                                text=text)) from None
    if not weights or any(not -4 <= w <= 4 for w in weights):
        raise ColabkitError(_("lora_weights {text!r}: give one to a few weights between -4 and 4, e.g. 0.6, 0.8, "
                              "1.0.").format(text=text))
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
            yield _("steps must be between 1 and 150 (20-30 is usual); got {steps}.").format(steps=self.steps)
        if not 0 <= self.guidance_scale <= 30:
            yield _("guidance_scale must be between 0 and 30 (5-8 is usual); got {guidance_scale}.").format(
                      guidance_scale=self.guidance_scale)
        if self.seed < 0:
            yield _("seed cannot be negative; got {seed}.").format(seed=self.seed)
        if not str(self.base_model).strip():
            yield _("base_model is empty: pick the model you trained on (or any SDXL checkpoint: preset, URL or "
                    "path).")

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
    no_lora_column: bool = setting(True, N_(
        "A first column drawn without any LoRA (same prompt and seed), to see what the LoRA changes."))
    prediction_type: Prediction = setting("auto", N_(
        "auto reads it from the checkpoint; pick v_prediction for a v-pred model that does not say so."))

    def _problems(self):
        yield from self._render_problems()
        try:
            parse_weights(self.lora_weights)
        except ColabkitError as e:
            yield str(e)
        if not 32 <= self.cell_size <= 1024:
            yield _("cell_size must be between 32 and 1024; got {cell_size}.").format(cell_size=self.cell_size)


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
            yield _("seed must be -1 (random) or a number >= 0; got {seed}.").format(seed=self.seed)
        if not 1 <= self.num_images <= 100:
            yield _("num_images must be between 1 and 100; got {num_images}.").format(num_images=self.num_images)
        if not -4 <= self.lora_scale <= 4:
            yield _("lora_scale must be between -4 and 4 (0.6-1.0 is usual); got {lora_scale}.").format(
                      lora_scale=self.lora_scale)


Shadows = Literal["soft", "remove", "keep"]
Canvas = Literal["own", "cell", "height"]


@dataclass
class CutoutConfig(_Config):
    """Cut pictures on a plain light background out into transparent sprites, an atlas and its JSON.

    Sizes marked "px at 1024" are pixels of a 1024 px picture and scale with the picture's longest side, so the
    same sheet at 1024 and 2048 px splits the same way (at 1024 px they are plain pixels, as before).
    """

    project_name: str = setting("", N_(
        "With no input_folder: the project whose output/generated/ pictures are cut out."))
    input_folder: str = setting("", N_(
        "Any folder of pictures (made anywhere); empty: the project's output/generated/."))
    output_folder: str = setting("", N_(
        "Where the sprites go; empty: the project's output/assets/, or input_folder/assets without a project."))
    tolerance: int = setting(24, N_(
        "How far (0-255, per colour channel) a pixel may be from the background's colour at that place to count "
        "as background. Raise it if specks of background stay; lower it if pale parts of a sprite vanish."))
    softness: int = setting(48, N_("The shortest anti-aliased edge ramp, in the same units (for pale shapes)."))
    shadows: Shadows = setting("soft", N_(
        "Drop shadows on the background: soft (black, as transparent as they are light: they darken any game "
        "ground as they did here), remove (transparent) or keep (opaque, as drawn)."))
    close_gaps: int = setting(0, N_(
        "Openings in an outline narrower than this (px at 1024) do not let the background in, so a white body "
        "behind a broken outline stays. 0: off; 8-12 closes small breaks."))
    holes: str = setting("keep", N_(
        "Enclosed background-coloured regions (a donut's hole, a white belly): keep, clear, or the numbers the "
        "preview shows for them, e.g. 1, 3 (cleared in every picture)."))
    gap: int = setting(8, N_("Parts closer than this (px at 1024) are one sprite."))
    min_area: int = setting(64, N_("Smaller specks (in square px at 1024) are dropped."))
    margin: int = setting(2, N_("Transparent pixels (px at 1024) kept around each trimmed sprite."))
    alpha_threshold: int = setting(128, N_(
        "With a matting model: sprites are grouped on pixels at least this opaque (0-255); fainter haze "
        "joins the sprite it touches or is dropped, and the soft alpha is kept."))
    palette_colors: int = setting(0, N_(
        "> 0: reduce each sprite to this many colours (with pixel_art: the set's one palette); 0: off."))
    pixel_art: bool = setting(False, N_(
        "Pixel art: find the size of the generated 'pixels', shrink every sprite to one pixel per block (nearest "
        "neighbour) and give the set one palette (palette_colors, 16 when 0), saved as palette.png and .hex."))
    pixel_size: int = setting(0, N_("With pixel_art: one art pixel's size in picture pixels; 0: found."))
    canvas: Canvas = setting("own", N_(
        "own: each sprite its own size; cell: every sprite of the set on one cell size, centred on one "
        "baseline; height: each scaled to canvas_height, then on one cell."))
    canvas_height: int = setting(256, N_("With canvas 'height': the height (px) every sprite is scaled to."))
    names: str = setting("", N_(
        "Names for the sprites, in order (commas or new lines), e.g. sword, shield; the rest are <picture>_01, "
        "_02..."))
    one_atlas: bool = setting(True, N_(
        "One atlas for the whole folder (named atlas_name), else one per picture in its own folder."))
    atlas_name: str = setting("", N_("The atlas's file name without extension; empty: the input folder's name."))
    max_size: int = setting(4096, N_("An atlas page's largest side (px); more sprites go on further pages."))
    power_of_two: bool = setting(False, N_("Atlas pages sized to powers of two (older GPUs and engines)."))
    extrude: int = setting(1, N_(
        "Pixels each sprite's edge is repeated around it in the atlas, so scaled sprites show no seams."))
    atlas_padding: int = setting(2, N_("Transparent pixels between sprites in the atlas (after the extrusion)."))
    pivot: str = setting("0.5, 1", N_(
        "Each sprite's pivot (anchor) as x, y fractions of its visible box: 0.5, 1 is the middle of the bottom "
        "(props standing on the ground); 0.5, 0.5 the centre."))
    model_file: str = setting("", N_(
        "An .onnx matting model (BiRefNet: MIT; isnet-anime: Apache-2.0) for busy backgrounds; empty: the "
        "flood fill."))

    @property
    def pivot_xy(self) -> tuple[float, float]:
        x, y = (float(v) for v in str(self.pivot).replace(";", ",").split(","))
        return x, y

    def _problems(self):
        if not self.project_name and not self.input_folder:
            yield _("give project_name (to cut out its output/generated/ pictures) or input_folder (any folder).")
        if not 0 <= self.tolerance <= 254:
            yield _("tolerance must be between 0 and 254 (24 suits a plain background); got {tolerance}.").format(
                      tolerance=self.tolerance)
        if not 1 <= self.softness <= 255:
            yield _("softness must be between 1 and 255; got {softness}.").format(softness=self.softness)
        for name in ("gap", "min_area", "margin", "atlas_padding", "close_gaps", "extrude"):
            if getattr(self, name) < 0:
                yield _("{name} cannot be negative; got {value}.").format(name=name, value=getattr(self, name))
        if self.palette_colors and not 2 <= self.palette_colors <= 256:
            yield _("palette_colors must be 0 (off) or between 2 and 256; got {palette_colors}.").format(
                      palette_colors=self.palette_colors)
        if not 0 <= self.pixel_size <= 64:
            yield _("pixel_size must be 0 (found) or between 1 and 64; got {value}.").format(value=self.pixel_size)
        if not 0 <= self.alpha_threshold <= 255:
            yield _("alpha_threshold must be between 0 and 255; got {value}.").format(value=self.alpha_threshold)
        if not 8 <= self.canvas_height <= 4096:
            yield _("canvas_height must be between 8 and 4096 px; got {value}.").format(value=self.canvas_height)
        if not 64 <= self.max_size <= 8192:
            yield _("max_size must be between 64 and 8192 px (4096 suits every engine); got {value}.").format(
                value=self.max_size)
        try:
            x, y = self.pivot_xy
            if not (-1 <= x <= 2 and -1 <= y <= 2):
                raise ValueError
        except ValueError:
            yield _("pivot {value!r}: write two fractions x, y, e.g. 0.5, 1 (bottom centre) or 0.5, 0.5.").format(
                value=self.pivot)
        try:
            from colabkit.assets.cutout import parse_holes

            parse_holes(self.holes)
        except ColabkitError as e:
            yield str(e)
        if "/" in self.atlas_name or "\\" in self.atlas_name:
            yield _("atlas_name {value!r} is a file name, not a path.").format(value=self.atlas_name)
        if "rmbg" in self.model_file.lower():
            yield (_("BRIA RMBG models are licensed for non-commercial use only: use BiRefNet (MIT) or isnet-anime "
                     "(Apache-2.0) as model_file, or leave it empty for the flood fill."))
