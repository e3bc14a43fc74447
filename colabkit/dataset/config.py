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

from colabkit.choices import StepConfig
from colabkit.dataset.captions import CaptionEdits
from colabkit.dataset.images import MAX_ASPECT, MIN_SIDE
from colabkit.errors import ColabkitError

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

    project_name: str
    move_rejected: bool = False  # move problem files to dataset/_rejected/ (never deletes)
    min_side: int = MIN_SIDE  # shorter side below this (px) is too small to train on
    max_aspect: float = MAX_ASPECT  # longer side / shorter side above this is cropped away in training

    def _problems(self):
        if self.min_side < 1:
            yield f"min_side must be at least 1; got {self.min_side}."
        if self.max_aspect < 1:
            yield f"max_aspect must be at least 1 (1 = square only); got {self.max_aspect}."


@dataclass(frozen=True)
class TagConfig(StepConfig):
    """Step 3: a caption for every usable image, WD14 tags (``anime tags``) or a BLIP sentence (``photo captions``)."""

    project_name: str
    tagging_method: TaggingMethod = "anime tags"
    tagger_model: WD14Model | str = "wd-eva02-large-tagger-v3"
    tag_threshold: float = 0.35  # lower gives more tags
    character_threshold: float = 0.85  # above 1 turns character tags off
    include_ratings: bool = False  # add the most likely rating tag (general, sensitive, ...)
    caption_model: BlipModel | str = "Salesforce/blip-image-captioning-large"
    caption_min_length: int = 5  # in tokens
    caption_max_length: int = 40
    caption_beams: int = 3
    activation_tag: str = ""  # the trigger word, put first in every caption
    blacklist_tags: str = ""  # comma-separated, * allowed: never written
    overwrite_captions: bool = False  # re-tag images that already have a caption
    batch_size: int = 8  # images per model call

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
            yield f"tag_threshold {self.tag_threshold} must be between 0 and 1 (0.35 is a good start)."
        if self.character_threshold <= 0:
            yield f"character_threshold {self.character_threshold} must be above 0 (above 1 turns character tags off)."
        if self.batch_size < 1:
            yield f"batch_size {self.batch_size} must be at least 1."
        if self.caption_beams < 1:
            yield f"caption_beams {self.caption_beams} must be at least 1."
        if not 0 <= self.caption_min_length <= self.caption_max_length or self.caption_max_length < 1:
            yield (f"caption_min_length ({self.caption_min_length}) and caption_max_length ({self.caption_max_length}) "
                   "must satisfy 0 <= min <= max, max at least 1 (5 and 40 are usual).")
        yield from _edit_problems(activation_tag=self.activation_tag, blacklist_tags=self.blacklist_tags)


@dataclass(frozen=True)
class CurateConfig(StepConfig):
    """Step 4: edits applied to every caption (trigger first, blacklist, replacements, global tags)."""

    project_name: str
    activation_tag: str = ""
    blacklist_tags: str = ""
    replace_tags: str = ""  # old=new, old2=new2 (an empty new removes the tag)
    global_tags: str = ""  # added to every caption, right after the trigger word

    @property
    def edits(self) -> CaptionEdits:
        return CaptionEdits.from_fields(self.activation_tag, self.blacklist_tags, self.replace_tags, self.global_tags)

    def _problems(self):
        yield from _edit_problems(activation_tag=self.activation_tag, blacklist_tags=self.blacklist_tags,
                                  replace_tags=self.replace_tags, global_tags=self.global_tags)
