"""check -> tag -> curate on the partly broken folder, with the tiny tagger and tiny BLIP."""

import pytest
from PIL import Image

from colabkit.dataset.captions import split_tags
from colabkit.dataset.pipeline import (
    captioned_images,
    check_dataset,
    curate_captions,
    set_caption,
    tag_dataset,
    tag_frequencies,
)
from colabkit.errors import ColabkitError
from colabkit.project import Project
from helpers.images import folder_checksums

GOOD = ("ok", "near-duplicate")


def captions(project):
    return {p.stem: p.read_text() for p in project.dataset.glob("*.txt")}


def test_check_report_rows_cover_every_file(mixed_project):
    project, expected = mixed_project
    report = check_dataset("mixed", progress=False)
    rows = {r["file"].rstrip("/"): r for r in report.rows()}
    assert set(rows) == set(expected)
    for name, kind in expected.items():
        assert rows[name]["status"] == ("ok" if kind == "ok" else "warning" if kind in ("near-duplicate", "folder") else "rejected")
        if kind != "ok":
            assert rows[name]["details"] and rows[name]["fix"]
    assert rows["03_cmyk.jpg"]["size"] == "640x640" and "CMYK" in rows["03_cmyk.jpg"]["mode"]
    assert "9 images ready" in report.summary()


def test_move_rejected_moves_never_deletes(mixed_project):
    project, expected = mixed_project
    (project.dataset / "13_animated.txt").write_text("an old caption")
    before = folder_checksums(project.dataset)
    report = check_dataset("mixed", move_rejected=True, progress=False)
    after = folder_checksums(project.dataset)
    rejected = {n for n, k in expected.items() if k not in GOOD + ("folder",)}
    assert {p.name for p in report.moved} == rejected
    for name in rejected:
        assert not (project.dataset / name).exists()
        assert after[f"_rejected/{name}"] == before[name]  # same bytes, new place
    assert (project.rejected / "13_animated.txt").read_text() == "an old caption"
    assert sorted(before.values()) == sorted(after.values())  # nothing lost, nothing changed
    # a second run finds a clean folder; _rejected/ itself is not checked
    again = check_dataset("mixed", progress=False)
    assert not again.rejected and len(again.accepted) == 9


def test_tag_mixed_folder_end_to_end(mixed_project, tiny_tagger):
    project, expected = mixed_project
    before = folder_checksums(project.dataset)
    report = tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", blacklist_tags="solo", progress=False)

    good = {n.rsplit(".", 1)[0] for n, k in expected.items() if k in GOOD}
    caps = captions(project)
    assert set(caps) == good  # every good image captioned, no bad file captioned
    for stem, text in caps.items():
        tags = split_tags(text)
        assert tags[0] == "houtline" and tags.count("houtline") == 1, (stem, text)
        assert "solo" not in tags and "^_^" in tags
    assert len(report.written) == 9 and not report.failed
    assert {p.file.name for p in report.skipped} == {n for n, k in expected.items() if k not in GOOD + ("folder",)}
    assert report.device in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert report.seconds_model > 0 and 0 <= report.overhead_share < 1
    assert folder_checksums(project.dataset) == before  # originals untouched

    # the transparent line art is seen on white; the wide EXIF-rotated one keeps white side borders
    assert "black background" not in caps["01_lineart_transparent"]
    assert "white border left" in caps["05_rotated"] and "white border right" in caps["05_rotated"]


def test_existing_captions_are_kept_unless_overwrite(mixed_project, tiny_tagger):
    project, _ = mixed_project
    (project.dataset / "06_colour.txt").write_text("my own words, Houtline, my own words")
    report = tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    assert report.updated == ["06_colour.png"] and len(report.written) == 8
    assert (project.dataset / "06_colour.txt").read_text() == "houtline, my own words"

    again = tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    assert not again.written and len(again.kept) == 9

    fresh = tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", overwrite_captions=True, progress=False)
    assert len(fresh.written) == 9
    assert "my own words" not in (project.dataset / "06_colour.txt").read_text()


def test_channel_order_through_the_pipeline(drive, tiny_tagger):
    project = Project.at("colours").create()
    Image.new("RGB", (1024, 512), (255, 0, 0)).save(project.dataset / "red_wide.png")
    Image.new("RGB", (512, 1024), (0, 0, 255)).save(project.dataset / "blue_tall.jpg", quality=95)
    Image.new("RGB", (600, 600), (0, 255, 0)).save(project.dataset / "green.webp", lossless=True)
    report = tag_dataset("colours", tagger_model="tiny-wd14", activation_tag="rgbtest", batch_size=2, progress=False)
    caps = {k: split_tags(v) for k, v in report.captions.items()}
    assert {"red theme", "white border top", "white border bottom"} <= set(caps["red_wide.png"])
    assert not {"blue theme", "white border left"} & set(caps["red_wide.png"])
    assert {"blue theme", "cirno", "white border left", "white border right"} <= set(caps["blue_tall.jpg"])
    assert "hatsune miku" in caps["green.webp"]
    assert any("tagger emits" in w for w in tag_dataset("colours", tagger_model="tiny-wd14", activation_tag="cat",
                                                           progress=False).warnings)


def test_photo_captions_with_tiny_blip(mixed_project, tiny_blip):
    project, _ = mixed_project
    report = tag_dataset("mixed", tagging_method="photo captions", caption_model="tiny-blip", activation_tag="houtline",
                         caption_min_length=3, caption_max_length=10, batch_size=4, progress=False)
    assert len(report.written) == 9 and report.device in ("cpu", "cuda")
    for text in captions(project).values():
        tags = split_tags(text)
        assert tags[0] == "houtline" and len(tags) == 2 and len(tags[1].split()) >= 2


def test_curate_and_frequencies(mixed_project, tiny_tagger):
    project, _ = mixed_project
    tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    report = curate_captions("mixed", activation_tag="houtline", blacklist_tags="white border *",
                             replace_tags="^_^=smile", global_tags="lineart")
    assert len(report.changed) == 9 and not report.missing
    for text in captions(project).values():
        tags = split_tags(text)
        assert tags[:2] == ["houtline", "lineart"] and "smile" in tags
        assert not any(t.startswith("white border") for t in tags)
    assert dict(report.frequencies)["houtline"] == 9
    assert tag_frequencies("mixed") == report.frequencies
    assert not curate_captions("mixed", activation_tag="houtline", blacklist_tags="white border *",
                               replace_tags="^_^=smile", global_tags="lineart").changed  # idempotent
    assert len(captioned_images("mixed")) == 9


def test_set_caption_tidies_and_keeps_trigger_first(mixed_project):
    project, _ = mixed_project
    text = set_caption("mixed", "06_colour.png", "a, b,, a , houtline", activation_tag="houtline")
    assert text == "houtline, a, b" == (project.dataset / "06_colour.txt").read_text()
    with pytest.raises(ColabkitError, match="No image"):
        set_caption("mixed", "nope.png", "x")


def test_user_errors(drive, mixed_project):
    with pytest.raises(ColabkitError, match="No project 'nope'"):
        check_dataset("nope")
    with pytest.raises(ColabkitError, match="No project"):
        tag_dataset("nope")
    with pytest.raises(ColabkitError, match="tagging_method"):
        tag_dataset("mixed", tagging_method="anime")
    with pytest.raises(ColabkitError, match="tag_threshold"):
        tag_dataset("mixed", tag_threshold=1.5)
    with pytest.raises(ColabkitError, match="Unknown tagger_model"):
        tag_dataset("mixed", tagger_model="nonsense", progress=False)
    Project.at("empty").create()
    assert "has no images" in check_dataset("empty", progress=False).warnings[0]
    with pytest.raises(ColabkitError, match="has no images"):
        tag_dataset("empty")


def test_check_limits_carry_over_to_tagging(mixed_project, tiny_tagger):
    project, _ = mixed_project
    report = check_dataset("mixed", min_side=256, progress=False)
    assert "11_tiny.png" in {i.file.name for i in report.accepted}
    tagged = tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    assert "11_tiny.png" in tagged.written  # the artist allowed small images in the check step
    assert "11_tiny.png" in {p.name for p, _ in captioned_images("mixed")}
    check_dataset("mixed", progress=False)  # back to the default
    assert "11_tiny.png" not in {p.name for p, _ in captioned_images("mixed")}
