"""notebooks/es/1_dataset runs headless on a partly broken folder with the tiny models, and speaks Spanish."""

import pytest

from helpers.notebooks import NOTEBOOKS, run_notebook, text_of


@pytest.mark.slow
def test_spanish_notebook_on_a_mixed_folder(mixed_project, drive, tiny_tagger):
    project, expected = mixed_project
    nb = run_notebook(NOTEBOOKS / "1_dataset.py", lang="es",
                      params=dict(project_name="mixed", tagger_model="tiny-wd14", activation_tag="houtline"),
                      env={"COLABKIT_DRIVE_ROOT": str(drive)}, timeout=240)
    shown = text_of(nb)
    for name, kind in expected.items():
        if kind not in ("ok", "near-duplicate"):
            assert name in shown  # file names are never translated
    for reason in ("dañado o incompleto", "no es un archivo de imagen", "animado", "demasiado pequeña",
                   "proporción extrema", "copia exacta de", "es casi igual que", "demasiados píxeles",
                   "el archivo está vacío"):
        assert reason in shown
    assert "qué hacer" in shown and "imágenes listas" in shown and "descripciones escritas" in shown
    for english in ("corrupt or truncated", "not an image", "exact copy", "images ready", "captions written"):
        assert english not in shown
