import pytest

from colabkit.dataset.captions import (
    CaptionEdits,
    count_tags,
    dedupe_tags,
    join_tags,
    parse_replacements,
    put_trigger_first,
    remove_tags,
    replace_tags,
    split_tags,
    tag_key,
    trigger_warnings,
    wd14_tag_text,
)
from colabkit.errors import ColabkitError


def test_split_and_join():
    assert split_tags(" a, b ,,c\nd ") == ["a", "b", "c", "d"]
    assert split_tags("") == []
    assert join_tags(["a", "b"]) == "a, b"


def test_tag_key_ignores_case_underscores_spacing():
    assert tag_key("Long_Hair") == tag_key("long  hair") == "long hair"


@pytest.mark.parametrize(
    "name, text",
    [
        ("long_hair", "long hair"),
        ("k/da_(league_of_legends)", "k/da (league of legends)"),
        ("^_^", "^_^"),
        (">_<", ">_<"),
        ("o_o", "o_o"),
        ("(o)_(o)", "(o)_(o)"),  # longer than 3 characters but still a face
        ("<|>_<|>", "<|>_<|>"),
        ("1girl", "1girl"),
    ],
)
def test_wd14_underscores(name, text):
    assert wd14_tag_text(name) == text


def test_trigger_first_exactly_once():
    tags = ["girl", "Houtline", "solo", "houtline"]
    assert put_trigger_first(tags, "houtline") == ["houtline", "girl", "solo"]
    assert put_trigger_first(["a"], "") == ["a"]
    once = put_trigger_first(tags, "houtline")
    assert put_trigger_first(once, "houtline") == once


def test_blacklist_with_wildcards_and_spellings():
    tags = ["simple background", "white_background", "solo", "Monochrome"]
    assert remove_tags(tags, ["*background", "monochrome"]) == ["solo"]
    assert remove_tags(tags, ["white background"]) == ["simple background", "solo", "Monochrome"]


def test_replacements():
    pairs = parse_replacements("monochrome=black and white, sketch=")
    assert pairs == [("monochrome", "black and white"), ("sketch", "")]
    assert replace_tags(["sketch", "Monochrome", "solo"], pairs) == ["black and white", "solo"]
    with pytest.raises(ColabkitError, match="no '='"):
        parse_replacements("monochrome")
    with pytest.raises(ColabkitError, match="nothing before"):
        parse_replacements("=x")


def test_dedupe_keeps_first_spelling_and_order():
    assert dedupe_tags(["b", "a", "B", "long_hair", "long hair"]) == ["b", "a", "long_hair"]


def test_caption_edits_all_together_and_idempotent():
    edits = CaptionEdits.from_fields(
        activation_tag="houtline",
        blacklist_tags="*background, lowres",
        replace_tags="monochrome=black and white",
        global_tags="lineart, white background",
    )
    out = edits.apply(["solo", "monochrome", "simple background", "lowres", "houtline", "solo"])
    # the blacklist also wins over a global tag; the trigger comes first, then global tags
    assert out == ["houtline", "lineart", "solo", "black and white"]
    assert edits.apply(out) == out
    assert edits.apply_text("houtline, solo") == "houtline, lineart, solo"


def test_trigger_survives_a_matching_blacklist_pattern():
    edits = CaptionEdits.from_fields(activation_tag="houtline", blacklist_tags="*line")
    assert edits.apply(["outline", "solo"]) == ["houtline", "solo"]


def test_trigger_with_comma_is_an_error():
    with pytest.raises(ColabkitError, match="single tag"):
        CaptionEdits.from_fields(activation_tag="houtline, style")


def test_trigger_warnings():
    assert trigger_warnings("houtline", ["solo", "cat"]) == []
    assert any("common word" in w for w in trigger_warnings("cat"))
    assert any("tagger emits" in w for w in trigger_warnings("long_hair", ["long hair"]))
    assert any("No activation_tag" in w for w in trigger_warnings(""))


def test_count_tags_counts_images_not_occurrences():
    freqs = count_tags([["a", "b", "a"], ["A", "c"], ["c"]])
    assert freqs == [("a", 2), ("c", 2), ("b", 1)]
