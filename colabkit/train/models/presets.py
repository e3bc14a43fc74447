"""The base models colabkit knows by name: one table with their download addresses and what to expect.

Sizes and sha256 are the published files' (the SDXL base pair from shared/reference/README.md; the others
cross-checked across several public download manifests, and their first 10 hex digits match the A1111/Civitai
"model hash" users see). A fact that is not known is ``None``, never a guess: the download then checks the
size the server announces and the safetensors header's own length instead.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

from colabkit.train.config import PredictionType
from colabkit.i18n import _

EPSILON = "epsilon"
V_PREDICTION = "v_prediction"
PREDICTION_TYPES = tuple(p for p in typing.get_args(PredictionType) if p != "auto")  # what a model can be
assert PREDICTION_TYPES == (EPSILON, V_PREDICTION)


@dataclass(frozen=True)
class Preset:
    name: str  # display name, the key in PRESETS
    urls: tuple[str, ...]  # first is used first; the others are mirrors of the same bytes (same sha256)
    filename: str  # name on disk (Drive's _models/ or the local cache)
    size: int | None  # bytes
    sha256: str | None
    prediction_type: str = EPSILON
    # A1111-style "clip skip" the model's authors recommend for prompts, None when they say nothing.
    # For SDXL "2" means the penultimate CLIP layer, which is what SDXL (and colabkit) use anyway.
    clip_skip: int | None = None
    prompt_prefix: str = ""  # tags the model expects at the start of every prompt (and caption)
    negative_prompt: str = ""
    notes: str = ""
    homepage: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.urls[0]


_PRESET_LIST = (
    Preset(
        name="SDXL base 1.0",
        urls=("https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
              "sd_xl_base_1.0.safetensors",),
        filename="sd_xl_base_1.0.safetensors",
        size=6_938_078_334,
        sha256="31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        notes="Stability AI's base model: natural-language prompts, LoRAs trained on it load on most SDXL models.",
        homepage="https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0",
        aliases=("sdxl", "sdxl-base", "sdxl-base-1.0", "sd_xl_base_1.0", "stabilityai/stable-diffusion-xl-base-1.0"),
    ),
    Preset(
        name="Pony Diffusion V6 XL",
        # The author publishes on Civitai (model 257749, version 290640); these are Hugging Face copies of that file.
        urls=(
            "https://huggingface.co/LyliaEngine/Pony_Diffusion_V6_XL/resolve/main/"
            "ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
            "https://huggingface.co/AstraliteHeart/pony-diffusion-v6/resolve/main/v6.safetensors",
        ),
        filename="ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
        size=6_938_041_050,
        sha256="67ab2fd8ec439a89b3fedb15cc65f54336af163c7eb5e4f2acc98f090a29b0b3",
        clip_skip=2,
        prompt_prefix="score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up",
        notes="Prompts (and sample prompts) should start with the score_9, score_8_up, ... chain; source_anime / "
              "source_cartoon / source_furry and rating_safe tags steer style and content. Clip skip 2.",
        homepage="https://civitai.com/models/257749/pony-diffusion-v6-xl",
        aliases=("pony", "pony-v6", "pony-diffusion-v6-xl", "ponydiffusionv6xl", "pdxl"),
    ),
    Preset(
        name="Animagine XL 3.1",
        urls=("https://huggingface.co/cagliostrolab/animagine-xl-3.1/resolve/main/animagine-xl-3.1.safetensors",),
        filename="animagine-xl-3.1.safetensors",
        size=6_938_325_776,
        sha256="e3c47aedb06418c6c331443cd89f2b3b3b34b7ed2102a3d4c4408a8d35aad6b0",
        prompt_prefix="masterpiece, best quality",
        negative_prompt="nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, "
                        "low quality, watermark, unfinished, displeasing, oldest, early, chromatic aberration, "
                        "signature, extra digits, artistic error, username, scan, [abstract]",
        notes="Anime model on Danbooru tags (1girl, character, series, then the rest); quality tags "
              "'masterpiece, best quality, very aesthetic, absurdres'. CFG 5-7, under 30 steps.",
        homepage="https://huggingface.co/cagliostrolab/animagine-xl-3.1",
        aliases=("animagine", "animagine-xl-3.1", "animagine-xl", "cagliostrolab/animagine-xl-3.1"),
    ),
    Preset(
        name="Illustrious XL 0.1",
        urls=("https://huggingface.co/OnomaAIResearch/Illustrious-xl-early-release-v0/resolve/main/"
              "Illustrious-XL-v0.1.safetensors",),
        filename="Illustrious-XL-v0.1.safetensors",
        size=6_938_040_760,
        sha256="3e15ba00387db678ab4a099f75771c4f5ac67fda9e7100a01d263eaf30145aa9",
        notes="Illustration model on Danbooru tags; a common base for anime and illustration LoRAs "
              "(epsilon prediction, unlike the v-prediction NoobAI variants built on it).",
        homepage="https://huggingface.co/OnomaAIResearch/Illustrious-xl-early-release-v0",
        aliases=("illustrious", "illustrious-xl", "illustrious-xl-0.1", "illustrious-xl-v0.1"),
    ),
    # The NoobAI pair, at the addresses the anchor trainer (Hollowstrawberry's Lora_Trainer_XL) downloads. No sha256
    # or size is written here: none was at hand from a source we could check, so these two are NOT hash-checked
    # (the download checks the size the server announces and the safetensors header's own length).
    Preset(
        name="NoobAI-XL V-Pred 1.0",
        urls=("https://huggingface.co/Laxhar/noobai-XL-Vpred-1.0/resolve/main/NoobAI-XL-Vpred-v1.0.safetensors",),
        filename="NoobAI-XL-Vpred-v1.0.safetensors",
        size=None,
        sha256=None,
        # What to expect before the download; once the file is here, v-prediction is read from its own markers.
        prediction_type=V_PREDICTION,
        prompt_prefix="masterpiece, best quality, newest, absurdres, highres",
        notes="Illustrious fine-tune on Danbooru and e621 tags, v-prediction with zero-terminal SNR (sampled with "
              "rescaled CFG). Not hash-checked: no published sha256 is recorded here.",
        homepage="https://huggingface.co/Laxhar/noobai-XL-Vpred-1.0",
        aliases=("noobai-vpred", "noobai-v-pred", "noobai-xl-vpred-1.0", "noobai-v-pred-1.0", "noobai v-pred 1.0",
                 "laxhar/noobai-xl-vpred-1.0"),
    ),
    Preset(
        name="NoobAI-XL Eps 1.1",
        urls=("https://huggingface.co/Laxhar/noobai-XL-1.1/resolve/main/NoobAI-XL-v1.1.safetensors",),
        filename="NoobAI-XL-v1.1.safetensors",
        size=None,
        sha256=None,
        prompt_prefix="masterpiece, best quality, newest, absurdres, highres",
        notes="Illustrious fine-tune on Danbooru and e621 tags, epsilon prediction. Not hash-checked: no published "
              "sha256 is recorded here.",
        homepage="https://huggingface.co/Laxhar/noobai-XL-1.1",
        aliases=("noobai", "noobai-eps", "noobai-xl-1.1", "noobai-eps-1.1", "noobai eps 1.1", "laxhar/noobai-xl-1.1"),
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESET_LIST}


def _norm(s: str) -> str:
    # "Pony Diffusion V6 XL", "pony-diffusion-v6-xl" and "pony_diffusion_v6_xl" are the same choice.
    return re.sub(r"[\s_\-.]+", "-", s.strip().lower()).strip("-")


_LOOKUP: dict[str, Preset] = {}
for _p in _PRESET_LIST:
    for _key in (_p.name, _p.filename, *_p.aliases):
        _LOOKUP[_norm(_key)] = _p


def find_preset(name: str) -> Preset | None:
    """The preset called ``name`` (display name, file name or a short alias, any case), else None."""
    return _LOOKUP.get(_norm(name)) if name and name.strip() else None


def preset_names() -> list[str]:
    return list(PRESETS)


def normalize_prediction_type(value: str | None) -> str | None:
    """'v', 'v-prediction', 'v_prediction' -> 'v_prediction'; 'eps', 'epsilon' -> 'epsilon'; None/'auto' -> None."""
    if value is None:
        return None
    v = value.strip().lower().replace("-", "_")
    if v in ("", "auto"):
        return None
    if v in ("v", "v_prediction", "v_pred", "vpred", "v_parameterization"):
        return V_PREDICTION
    if v in ("eps", "epsilon", "noise"):
        return EPSILON
    from colabkit.errors import ColabkitError

    raise ColabkitError(_("prediction_type {value!r} is not known: use 'auto', 'epsilon' or 'v_prediction'.").format(
                            value=value))
