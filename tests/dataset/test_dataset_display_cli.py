"""The notebook's tables, gallery and editor, and the check/tag/curate sub-commands."""

from colabkit import display_dataset as dd
from colabkit.dataset.pipeline import check_dataset, curate_captions, tag_dataset


def test_report_html_names_files_reasons_and_fixes(mixed_project, tiny_tagger):
    project, expected = mixed_project
    html = dd.check_report_html(check_dataset("mixed", progress=False))
    for name in expected:
        assert name in html
    assert "exact copy of 06_colour.png" in html and "what to do" in html
    tag_html = dd.tag_report_html(tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False))
    assert "9 captions written" in tag_html and "houtline" in tag_html
    cur = curate_captions("mixed", activation_tag="houtline")
    assert "Top" in dd.curate_report_html(cur) and "9 / 9" in dd.curate_report_html(cur)


def test_overview_gallery_has_thumbnails_and_captions(mixed_project, tiny_tagger):
    tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="<b>x", progress=False)
    html = dd.overview_html("mixed", gallery=3, activation_tag="<b>x")
    assert html.count("data:image/jpeg;base64,") == 3
    assert "<b>&lt;b&gt;x</b>" in html  # trigger in bold, and escaped
    assert "... and 6 more." in html


def test_caption_editor_saves_by_hand(mixed_project, tiny_tagger):
    project, _ = mixed_project
    tag_dataset("mixed", tagger_model="tiny-wd14", activation_tag="houtline", progress=False)
    editor = dd.CaptionEditor("mixed", activation_tag="houtline")
    assert editor.dropdown.value == "01_lineart_transparent.png"
    editor.next_button.click()
    assert editor.dropdown.value == "02_palette.png"
    assert editor.text.value == (project.dataset / "02_palette.txt").read_text()
    editor.text.value = "red ink, houtline, red ink"
    editor.save_button.click()
    assert (project.dataset / "02_palette.txt").read_text() == "houtline, red ink"
    assert "saved" in editor.status.value and editor.text.value == "houtline, red ink"


def test_cli_check_tag_curate(mixed_project, tiny_tagger, capsys):
    from colabkit.cli import main

    project, _ = mixed_project
    assert main(["check", "--project-name", "mixed"]) == 0
    out = capsys.readouterr().out
    assert "14_truncated.jpg" in out and "corrupt or truncated" in out and "What to do" in out

    assert main(["tag", "--project-name", "mixed", "--tagger-model", "tiny-wd14", "--activation-tag", "houtline",
                 "--blacklist-tags", "solo", "--tag-threshold", "0.3", "--character-threshold", "1.01"]) == 0
    out = capsys.readouterr().out
    assert "9 captions written" in out and "images/s" in out
    assert (project.dataset / "06_colour.txt").read_text().startswith("houtline, ")

    assert main(["curate", "--project-name", "mixed", "--activation-tag", "houtline", "--global-tags", "lineart",
                 "--replace-tags", "^_^=smile", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "Top 5 tags" in out and "smile" in out

    assert main(["check", "--project-name", "mixed", "--move-rejected"]) == 0
    assert (project.rejected / "14_truncated.jpg").is_file()
    assert main(["tag", "--project-name", "nope"]) == 2  # a ColabkitError, printed without a traceback
    assert "No project 'nope'" in capsys.readouterr().err
