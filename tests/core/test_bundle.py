"""`python -m colabkit bundle`: the download that runs in Colab without a repository."""

import zipfile
from pathlib import Path

import pytest

from colabkit import __version__
from colabkit.cli import main
from helpers.kernels import execute_cells
from helpers.notebooks import NOTEBOOKS, read_source, set_params
from test_install_cell import _dists_in, _runtime_env, _stdout, fresh_runtime  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
NAMES = ("1_dataset.ipynb", "2_train.ipynb", "3_generate.ipynb")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    assert main(["bundle", "--output-folder", str(out)]) == 0
    return out / f"colabkit-{__version__}-colab.zip"


def test_the_bundle_holds_the_wheel_both_notebook_sets_and_a_how_to_in_both_languages(bundle):
    wheel = f"colabkit-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(bundle) as z:
        assert sorted(z.namelist()) == sorted(["HOW-TO.txt", "COMO-USAR.txt", wheel, *(f"en/{n}" for n in NAMES),
                                               *(f"es/{n}" for n in NAMES)])
        for name in NAMES:  # the committed notebooks, which tests keep equal to their sources
            assert z.read(f"en/{name}") == (NOTEBOOKS / name).read_bytes()
            assert z.read(f"es/{name}") == (NOTEBOOKS / "es" / name).read_bytes()
        english, spanish = z.read("HOW-TO.txt").decode(), z.read("COMO-USAR.txt").decode()
        z.extract(wheel, bundle.parent)
    assert f"MyDrive/Loras/_colabkit/{wheel}" in english and "Open with > Google Colaboratory" in english
    assert f"MyDrive/Loras/_colabkit/{wheel}" in spanish and "Abrir con > Google Colaboratory" in spanish
    assert "cuaderno" in spanish and "Descomprime" in spanish
    with zipfile.ZipFile(bundle.parent / wheel) as w:  # Spanish ships in the wheel
        assert "colabkit/locale/es/LC_MESSAGES/colabkit.mo" in w.namelist()


def test_the_first_cell_installs_the_bundles_wheel_from_drive(bundle, fresh_runtime, tmp_path):
    python, venv_site = fresh_runtime
    before = _dists_in(venv_site)
    drive = tmp_path / "MyDrive"
    folder = drive / "Loras" / "_colabkit"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as z:  # unzipped into MyDrive/Loras/_colabkit/, as the how-to says
        z.extractall(folder)
    (folder / "colabkit-0.0.9-py3-none-any.whl").write_bytes(b"an older download, never installed")
    env = _runtime_env()  # the kernel must not see this checkout
    env.update(COLABKIT_DRIVE_ROOT=str(drive), PATH=f"{python.parent}:{env['PATH']}")
    nb = read_source(NOTEBOOKS / "1_dataset.py")
    set_params(nb, {"colabkit_source": "", "project_name": "fresh"})
    first_cells = [c.source for c in nb.cells if c.cell_type == "code"][:2]  # set up, open the project
    ran = execute_cells(["import importlib.util; print(importlib.util.find_spec('colabkit'))", *first_cells,
                         "import colabkit; print(colabkit.__file__)"], python=python, where=tmp_path, env=env,
                        cwd=tmp_path)
    assert _stdout(ran.cells[0]) == "None"
    assert Path(_stdout(ran.cells[-1])).is_relative_to(venv_site)  # installed by the cell, from the Drive wheel
    assert _dists_in(venv_site) - before == {"colabkit"}  # nothing else was added
    assert (drive / "Loras" / "fresh" / "dataset").is_dir()


def test_without_the_download_the_spanish_first_cell_says_in_spanish_what_to_do(fresh_runtime, tmp_path):
    from nbclient.exceptions import CellExecutionError

    python, _ = fresh_runtime
    nb = read_source(NOTEBOOKS / "2_train.py", "es")
    set_params(nb, {"colabkit_source": ""})
    cell = next(c.source for c in nb.cells if c.cell_type == "code")
    env = {**_runtime_env(), "COLABKIT_DRIVE_ROOT": str(tmp_path / "MyDrive")}  # an empty Drive: no download
    with pytest.raises(CellExecutionError) as err:
        execute_cells([cell], python=python, where=tmp_path, env=env, cwd=tmp_path)
    line = err.value.evalue
    assert err.value.ename == "SystemExit" and "\n" not in line
    assert line.startswith("colabkit no está instalado (colabkit_source está vacío y en MyDrive/Loras/_colabkit/ "
                           "no hay ningún colabkit-*.whl). Descomprime la descarga de colabkit en MyDrive/Loras/_colabkit/")


def test_in_a_stand_in_colab_the_first_cell_mounts_drive_and_installs_the_download(bundle, fresh_runtime, tmp_path):
    """As in Colab: no COLABKIT_DRIVE_ROOT, Drive not mounted yet; colabkit_source empty. The cell mounts Drive (once:
    setup() then finds it mounted) and installs the newest wheel of MyDrive/Loras/_colabkit/, nothing else."""
    from helpers.colab_runtime import FAKE_COLAB, FakeColab

    python, venv_site = fresh_runtime
    before = _dists_in(venv_site)
    colab = FakeColab(tmp_path / "colab-home", tmp_path / "rt" / "content")
    colab.content.mkdir(parents=True)
    folder = colab.my_drive / "Loras" / "_colabkit"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(folder)
    env = _runtime_env()
    env.pop("COLABKIT_DRIVE_ROOT", None)
    env.update(colab.env(), PYTHONPATH=str(FAKE_COLAB), PATH=f"{python.parent}:{env['PATH']}")
    nb = read_source(NOTEBOOKS / "1_dataset.py", "es")
    set_params(nb, {"colabkit_source": ""})
    first_cell = next(c.source for c in nb.cells if c.cell_type == "code")
    ran = execute_cells([first_cell, "import colabkit; print(colabkit.__file__)"], python=python, where=tmp_path,
                        env=env, cwd=tmp_path)
    assert Path(_stdout(ran.cells[-1])).is_relative_to(venv_site)  # installed from the download on Drive
    assert _dists_in(venv_site) - before == {"colabkit"}
    assert colab.log() == [f"mount {colab.content / 'drive'}"]
    shown = "".join(o.get("text", "") + str(o.get("data", {})) for o in ran.cells[0].outputs)
    assert "Cuadernos probados por última vez" in shown  # setup() speaks the notebook's language
