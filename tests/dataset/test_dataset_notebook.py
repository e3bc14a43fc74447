"""notebooks/1_dataset runs headless, top to bottom, on a partly broken folder with the tiny models."""

import pytest

from colabkit.dataset.captions import split_tags
from helpers.images import folder_checksums
from helpers.notebooks import NOTEBOOKS, form_params, read_source, run_notebook, text_of

FIELDS = {
    "project_name", "tagging_method", "tagger_model", "tag_threshold", "character_threshold", "caption_model",
    "activation_tag", "blacklist_tags", "overwrite_captions",
}


def test_form_fields_and_real_defaults():
    params = form_params(read_source(NOTEBOOKS / "1_dataset.py"))
    assert FIELDS <= set(params)
    assert params["tagger_model"] == '"wd-eva02-large-tagger-v3"'
    assert params["caption_model"] == '"Salesforce/blip-image-captioning-large"'
    assert params["tag_threshold"] == "0.35" and params["character_threshold"] == "0.85"
    assert params["tagging_method"] == '"anime tags"' and params["overwrite_captions"] == "False"


@pytest.mark.slow
def test_notebook_on_a_mixed_folder(mixed_project, drive, tiny_tagger):
    project, expected = mixed_project
    before = folder_checksums(project.dataset)
    nb = run_notebook(
        NOTEBOOKS / "1_dataset.py",
        params=dict(project_name="mixed", tagger_model="tiny-wd14", activation_tag="houtline", blacklist_tags="solo",
                    global_tags="lineart", open_editor=True),
        env={"COLABKIT_DRIVE_ROOT": str(drive)},
        timeout=240,
    )
    shown = text_of(nb)
    for name, kind in expected.items():
        caption = project.dataset / (name.rsplit(".", 1)[0] + ".txt")
        if kind in ("ok", "near-duplicate"):
            tags = split_tags(caption.read_text())
            assert tags[:2] == ["houtline", "lineart"] and tags.count("houtline") == 1 and "solo" not in tags
        else:
            assert name in shown  # every bad file is named ...
            if kind != "folder":
                assert not caption.exists()
    for reason in ("corrupt or truncated", "not an image", "animated", "too small", "aspect ratio", "exact copy",
                   "looks almost the same", "too many pixels", "empty"):
        assert reason in shown  # ... with its reason
    assert folder_checksums(project.dataset) == before  # no original changed
    assert "data:image/jpeg;base64," in shown  # the gallery
