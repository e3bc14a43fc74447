"""notebooks/es/2_train speaks Spanish: its problems before any training, and its run."""

import pytest

from helpers.notebooks import NOTEBOOKS, outputs, run_notebook, text_of

pytestmark = pytest.mark.slow

PARAMS = dict(project_name="houtline", base_model="tiny-sdxl", resolution=64, num_repeats=1, epochs=1,
              train_batch_size=1, sample_every_n_epochs=0)


def test_spanish_settings_mistake(tiny_project, drive):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError) as e:
        run_notebook(NOTEBOOKS / "2_train.py", {**PARAMS, "optimizer": "Adam"}, lang="es",
                     env={"COLABKIT_DRIVE_ROOT": str(drive)}, timeout=300)
    errors = [o for o in outputs(e.value.notebook) if o.get("output_type") == "error"]
    shown = "\n".join(errors[0]["traceback"])
    assert "Corrige estos ajustes:" in shown and "optimizer debe ser uno de 'AdamW8bit'" in shown
    assert "se recibió 'Adam'" in shown and "Please fix" not in shown


def test_spanish_training_run(tiny_project, drive):
    nb = run_notebook(NOTEBOOKS / "2_train.py", PARAMS, lang="es", env={"COLABKIT_DRIVE_ROOT": str(drive)},
                      timeout=400)
    shown = text_of(nb)
    assert "Cuadernos probados por última vez en el entorno de Colab" in shown  # the set-up's report
    assert "comprobación" in shown and "detalles" in shown  # the preflight table's headings
    assert "entrenando" in shown and "proyecto" in shown and "resolución" in shown  # progress label, row names
    assert "Comprobación previa superada: listo para entrenar." in shown
    assert "4 imágenes x 1 repeticiones / lote 1 = 4 pasos por época x 1 épocas = 4 pasos" in shown
    assert "Terminado: 4/4 pasos en" in shown and "Cómo usar houtline.safetensors (palabra de activación: houtline)" in shown
    for english in ("Preflight passed", "Finished:", "How to use", "steps per epoch", "captions fit in"):
        assert english not in shown
    assert (tiny_project.output / "houtline.safetensors").exists()
