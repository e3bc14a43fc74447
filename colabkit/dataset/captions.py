"""Pure caption edits: a caption is a list of tags; every function returns a new list.

Captions on disk are ``image.txt`` beside ``image.png``: tags separated by ", ". A BLIP sentence
is simply a caption with one long tag. Nothing here touches files, so every edit is unit-testable
and the same rules apply whether the tagger, the curation step or the hand editor wrote the caption.

Tags are compared by a *key* (lower case, underscores as spaces, single spaces), so the blacklist
``long_hair`` removes ``long hair`` and ``Long Hair``: artists type tags however they like.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from colabkit.errors import ColabkitError
from colabkit.i18n import _

CAPTION_EXT = ".txt"

# Words the base model already knows well: as a trigger they drag the LoRA towards (or away from)
# their usual meaning instead of learning a fresh token. Not exhaustive; the tagger's vocabulary
# check below catches most of the rest.
COMMON_WORDS = frozenset(
    """
    cat dog girl boy man woman person people child kid baby tree flower flowers sky sea ocean water
    house city car bird fish horse dragon anime art drawing sketch lineart line style outline ink
    paint painting color colour black white red blue green yellow pink purple orange brown grey gray
    portrait landscape face hair eyes hand hands photo picture illustration comic manga cute
    beautiful girls boys animal animals food forest mountain sun moon star night day rain snow
    """.split()
)


def tag_key(tag: str) -> str:
    """How tags are compared: case-, underscore- and spacing-insensitive."""
    return " ".join(tag.replace("_", " ").lower().split())


def split_tags(text: str) -> list[str]:
    """Caption text -> tags. Commas and line breaks separate; empty pieces are dropped."""
    return [t.strip() for t in re.split(r"[,\n\r]+", text or "") if t.strip()]


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def parse_tag_list(text: str) -> list[str]:
    """A form field like ``"simple background, signature"`` -> ``["simple background", "signature"]``."""
    return split_tags(text)


def _is_kaomoji(name: str) -> bool:
    # Kaomoji such as ^_^ or (o)_(o) use "_" as a mouth; real words have a run of two letters/digits.
    return re.search(r"[A-Za-z0-9]{2}", name) is None


def wd14_tag_text(name: str) -> str:
    """A WD14 tag name as caption text: underscores become spaces, except in short tags and kaomoji.

    ``long_hair`` -> ``long hair``; ``^_^``, ``>_<`` and ``(o)_(o)`` stay as they are, because the
    underscore is part of the face (this is how the tagger's training captions were written).
    """
    if len(name) > 3 and not _is_kaomoji(name):
        return name.replace("_", " ")
    return name


def dedupe_tags(tags: Iterable[str]) -> list[str]:
    """Drop repeated tags (by key), keeping the first spelling and the order."""
    seen: set[str] = set()
    out = []
    for t in tags:
        k = tag_key(t)
        if k and k not in seen:
            seen.add(k)
            out.append(t)
    return out


def _matcher(patterns: Iterable[str]):
    keys = [tag_key(p) for p in patterns if tag_key(p)]
    exact = {k for k in keys if not any(c in k for c in "*?[")}
    globs = [k for k in keys if k not in exact]

    def match(tag: str) -> bool:
        k = tag_key(tag)
        return k in exact or any(fnmatch.fnmatchcase(k, g) for g in globs)

    return match


def remove_tags(tags: Iterable[str], blacklist: Iterable[str]) -> list[str]:
    """Drop blacklisted tags. Entries may use ``*`` wildcards (``*background`` drops every background tag)."""
    match = _matcher(blacklist)
    return [t for t in tags if not match(t)]


def parse_replacements(text: str) -> list[tuple[str, str]]:
    """``"old=new, 1girl=girl, watermark="`` -> pairs; an empty right side deletes the tag."""
    pairs = []
    for entry in split_tags(text):
        if "=" not in entry:
            raise ColabkitError(_(
                "replace_tags entry {entry!r} has no '='. Write replacements as old=new, separated by commas "
                "(e.g. 'monochrome=black and white, sketch='; an empty right side removes the tag).").format(entry=entry))
        old, new = (s.strip() for s in entry.split("=", 1))
        if not old:
            raise ColabkitError(_("replace_tags entry {entry!r} has nothing before '='. Write it as old=new.").format(
                entry=entry))
        pairs.append((old, new))
    return pairs


def replace_tags(tags: Iterable[str], replacements: Sequence[tuple[str, str]]) -> list[str]:
    """Swap whole tags (by key); a replacement with an empty new tag deletes the old one."""
    table = {tag_key(old): new for old, new in replacements}
    out = []
    for t in tags:
        new = table.get(tag_key(t), t)
        if new:
            out.append(new)
    return out


def put_first(tags: Iterable[str], first: Sequence[str]) -> list[str]:
    """``first`` (in its order) at the front, each exactly once; the rest keep their order."""
    first = dedupe_tags(f.strip() for f in first if f.strip())
    keys = {tag_key(f) for f in first}
    return first + [t for t in tags if tag_key(t) not in keys]


def put_trigger_first(tags: Iterable[str], trigger: str) -> list[str]:
    """The activation tag first, exactly once (later copies removed). No trigger: unchanged."""
    trigger = (trigger or "").strip()
    return put_first(tags, [trigger]) if trigger else list(tags)


def check_trigger(trigger: str) -> str:
    """The cleaned activation tag, or an error when it cannot work as one tag."""
    trigger = (trigger or "").strip()
    if "," in trigger or "\n" in trigger:
        raise ColabkitError(_(
            "activation_tag {tag!r} contains a comma: it must be a single tag, e.g. 'houtline'. "
            "Put other tags you want on every image in global_tags.").format(tag=trigger))
    return trigger


def trigger_warnings(trigger: str, known_tags: Iterable[str] = ()) -> list[str]:
    """Why ``trigger`` may be a poor activation tag (empty list when it looks fine)."""
    trigger = (trigger or "").strip()
    if not trigger:
        return [_(
            "No activation_tag set: the LoRA will have no trigger word. Set one (a made-up word such as "
            "'houtline') so you can switch the style on in prompts.")]
    warnings = []
    key = tag_key(trigger)
    if key in COMMON_WORDS or any(w in COMMON_WORDS for w in key.split()):
        warnings.append(_(
            "activation_tag {tag!r} is (or contains) a common word the base model already knows; "
            "the LoRA will blend with that meaning. A made-up word such as 'houtline' works better.").format(
            tag=trigger))
    if key in {tag_key(t) for t in known_tags}:
        warnings.append(_(
            "activation_tag {tag!r} is also a tag the tagger emits; it will mean both your style and that "
            "tag. Pick a made-up word instead.").format(tag=trigger))
    return warnings


@dataclass(frozen=True)
class CaptionEdits:
    """All curation edits in the order they apply; ``apply`` is idempotent."""

    trigger: str = ""
    blacklist: tuple[str, ...] = ()
    replacements: tuple[tuple[str, str], ...] = ()
    global_tags: tuple[str, ...] = field(default=())

    @classmethod
    def from_fields(
        cls, activation_tag: str = "", blacklist_tags: str = "", replace_tags: str = "", global_tags: str = ""
    ) -> "CaptionEdits":
        """Build from the notebook's text fields (comma-separated lists, ``old=new`` pairs)."""
        return cls(
            trigger=check_trigger(activation_tag),
            blacklist=tuple(parse_tag_list(blacklist_tags)),
            replacements=tuple(parse_replacements(replace_tags)),
            global_tags=tuple(parse_tag_list(global_tags)),
        )

    def apply(self, tags: Iterable[str]) -> list[str]:
        tags = remove_tags(tags, self.blacklist)
        tags = replace_tags(tags, self.replacements)
        # Global tags right after the trigger: trainers that shuffle captions keep the first tokens fixed.
        tags = put_first(tags, ([self.trigger] if self.trigger else []) + list(self.global_tags))
        # A blacklisted tag is never re-added by a global tag or a replacement, except the trigger itself.
        match = _matcher(self.blacklist)
        trigger_key = tag_key(self.trigger)
        tags = [t for t in tags if tag_key(t) == trigger_key or not match(t)]
        return dedupe_tags(tags)

    def apply_text(self, text: str) -> str:
        return join_tags(self.apply(split_tags(text)))


def count_tags(captions: Iterable[Iterable[str]]) -> list[tuple[str, int]]:
    """Tag -> number of captions containing it, most frequent first (ties by name)."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for tags in captions:
        for t in dedupe_tags(tags):
            k = tag_key(t)
            spelling.setdefault(k, t)
            counts[k] += 1
    return sorted(((spelling[k], n) for k, n in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def caption_path(image: Path) -> Path:
    """Where an image's caption lives: same folder, same stem, ``.txt``."""
    return image.with_suffix(CAPTION_EXT)
