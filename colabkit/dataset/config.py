"""One typed config per dataset step (check, tag, curate), validated once at the boundary.

Field names are the dataset notebook's form-field names and, with dashes, the options of
``colabkit check|tag|curate`` (generated from these fields by ``colabkit.cli.add_config_options``);
tests check that the notebook's cells, the CLI and these classes list the same fields. Choices are
``typing.Literal`` types (see ``colabkit.choices``): one list each, read by the dropdowns' test, the
CLI and the validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from colabkit.choices import StepConfig, setting
from colabkit.dataset.captions import CaptionEdits
from colabkit.dataset.images import MAX_ASPECT, MIN_SIDE
from colabkit.errors import ColabkitError
from colabkit.i18n import N_, _

TaggingMethod = Literal["anime tags", "photo captions"]
# SmilingWolf's WD14 v3 taggers, best first, and the built-in random-weight one (no download, for trying
# the flow); any other hub repo or a folder with model.onnx + selected_tags.csv is accepted too.
WD14Model = Literal[
    "wd-eva02-large-tagger-v3", "wd-vit-large-tagger-v3", "wd-vit-tagger-v3", "wd-swinv2-tagger-v3", "tiny-wd14"
]
# BLIP captioners, and the built-in random-weight one; any other BLIP hub repo or saved folder is accepted too.
BlipModel = Literal["Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base", "tiny-blip"]


def _edit_problems(**fields: str) -> list[str]:
    try:
        CaptionEdits.from_fields(**fields)
    except ColabkitError as e:
        return [str(e)]
    return []


@dataclass(frozen=True)
class CheckConfig(StepConfig):
    """Step 2 of the dataset notebook: which images are usable (saved as the limits tagging and training use)."""

    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _)."))
    move_rejected: bool = setting(False, N_(
        "Move problem files into dataset/_rejected/ (nothing is ever deleted); off: they are only listed."))
    min_side: int = setting(MIN_SIDE, N_(
        "Images whose shorter side is below this many pixels are too small to train on."))
    max_aspect: float = setting(MAX_ASPECT, N_(
        "Images longer than this on one side (4.0 = 4:1) would be mostly cropped away in training."))

    def _problems(self):
        if self.min_side < 1:
            yield _("min_side must be at least 1; got {value}.").format(value=self.min_side)
        if self.max_aspect < 1:
            yield _("max_aspect must be at least 1 (1 = square only); got {value}.").format(value=self.max_aspect)


@dataclass(frozen=True)
class TagConfig(StepConfig):
    """Step 3: a caption for every usable image, WD14 tags (``anime tags``) or a BLIP sentence (``photo captions``)."""

    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _)."))
    tagging_method: TaggingMethod = setting("anime tags", N_(
        "anime tags: a WD14 tagger lists what it sees (drawings, anime, illustration); photo captions: BLIP writes "
        "one sentence per image (photos, realistic work)."))
    tagger_model: WD14Model | str = setting("wd-eva02-large-tagger-v3", N_(
        "The WD14 tagger for anime tags; also a hub repo or a folder on Drive with your own model. tiny-wd14 is "
        "built in with random weights: it tries the flow in seconds, but its tags mean nothing."))
    tag_threshold: float = setting(0.35, N_(
        "How sure the tagger must be to write a tag: lower gives more tags (0.35 is a good start)."))
    character_threshold: float = setting(0.85, N_(
        "How sure it must be to name a known character; above 1 switches character tags off (usually right for a "
        "style LoRA)."))
    include_ratings: bool = setting(False, N_("Also write the most likely rating tag (general, sensitive, ...)."))
    caption_model: BlipModel | str = setting("Salesforce/blip-image-captioning-large", N_(
        "The BLIP model for photo captions; also a hub repo or a folder on Drive. tiny-blip is built in with "
        "random weights: its captions mean nothing."))
    caption_min_length: int = setting(5, N_("Shortest photo caption, in tokens."))
    caption_max_length: int = setting(40, N_("Longest photo caption, in tokens."))
    caption_beams: int = setting(3, N_("Beam search width for photo captions: more is slower and sometimes better."))
    activation_tag: str = setting("", N_(
        "Your trigger word: a made-up word such as houtline that you will type in prompts. It is put first in "
        "every caption."))
    blacklist_tags: str = setting("", N_(
        "Tags that are never written, comma-separated, * allowed. Tags describing your style itself (e.g. "
        "monochrome, lineart) are better left out so the trigger word learns them."))
    overwrite_captions: bool = setting(False, N_(
        "Tag again images that already have a caption file; off: existing captions are kept (only given the "
        "trigger word)."))
    batch_size: int = setting(8, N_("Images per model call: bigger is faster but needs more memory."))

    @property
    def anime(self) -> bool:
        return self.tagging_method == "anime tags"

    @property
    def model(self) -> str:
        """The model this method uses."""
        return self.tagger_model if self.anime else self.caption_model

    @property
    def edits(self) -> CaptionEdits:
        return CaptionEdits.from_fields(activation_tag=self.activation_tag, blacklist_tags=self.blacklist_tags)

    def _problems(self):
        if not 0 < self.tag_threshold <= 1:
            yield _("tag_threshold {value} must be between 0 and 1 (0.35 is a good start).").format(
                value=self.tag_threshold)
        if self.character_threshold <= 0:
            yield _("character_threshold {value} must be above 0 (above 1 turns character tags off).").format(
                value=self.character_threshold)
        if self.batch_size < 1:
            yield _("batch_size {value} must be at least 1.").format(value=self.batch_size)
        if self.caption_beams < 1:
            yield _("caption_beams {value} must be at least 1.").format(value=self.caption_beams)
        if not 0 <= self.caption_min_length <= self.caption_max_length or self.caption_max_length < 1:
            yield _("caption_min_length ({min}) and caption_max_length ({max}) must satisfy 0 <= min <= max, max at "
                    "least 1 (5 and 40 are usual).").format(min=self.caption_min_length, max=self.caption_max_length)
        yield from _edit_problems(activation_tag=self.activation_tag, blacklist_tags=self.blacklist_tags)


@dataclass(frozen=True)
class CurateConfig(StepConfig):
    """Step 4: edits applied to every caption (trigger first, blacklist, replacements, global tags)."""

    project_name: str = setting(help=N_(
        "Your project's folder name under MyDrive/Loras/ (letters, digits, - and _)."))
    activation_tag: str = setting("", N_(
        "Your trigger word, put first and only once in every caption (Step 3's activation_tag)."))
    blacklist_tags: str = setting("", N_(
        "Tags removed from every caption, comma-separated, * allowed (Step 3's blacklist_tags)."))
    replace_tags: str = setting("", N_(
        "old=new pairs, comma-separated (monochrome=black and white, sketch=); nothing after = removes the tag."))
    global_tags: str = setting("", N_("Tags added to every caption, right after the trigger word."))

    @property
    def edits(self) -> CaptionEdits:
        return CaptionEdits.from_fields(self.activation_tag, self.blacklist_tags, self.replace_tags, self.global_tags)

    def _problems(self):
        yield from _edit_problems(activation_tag=self.activation_tag, blacklist_tags=self.blacklist_tags,
                                  replace_tags=self.replace_tags, global_tags=self.global_tags)
