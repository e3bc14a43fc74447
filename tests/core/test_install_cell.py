"""Where colabkit is installed from, and the notebooks' first cell in a runtime that lacks colabkit.

The fresh runtime is a venv that sees this machine's packages (torch, transformers, diffusers, ...: Colab's
preinstalled set) but not colabkit. `--system-site-packages` would also run the global `.pth` hooks, one of
which is this checkout's editable install (`pip install -e .`): colabkit would be importable and the test
would prove nothing. So the venv sees the global site-packages folders through a plain path entry, which
puts their packages on sys.path without running their hooks.
"""

import ast
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

from colabkit import colab
from helpers.kernels import execute_cells
from helpers.notebooks import NOTEBOOKS, form_params, read_source, set_params

ROOT = Path(__file__).resolve().parents[2]
PREINSTALLED = ("torch", "transformers", "diffusers")


def test_one_source_for_notebooks_and_readme():
    for src in sorted(NOTEBOOKS.glob("*.py")):
        assert ast.literal_eval(form_params(read_source(src))["colabkit_source"]) == colab.install_source(), src.name
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", readme)
    expected = [colab.open_in_colab_url(n) for n in ("1_dataset.ipynb", "2_train.ipynb")]
    if colab.REPOSITORY_URL:
        assert colab.REPOSITORY_URL.startswith("https://") and set(links) == set(expected)
    else:  # nothing public yet: no made-up link anywhere
        assert links == [] and expected == [None, None] and colab.install_source() == ""
        assert "github.com/colabkit" not in readme and "pip wheel --no-deps ." in readme


def _first_cell(notebook: str, source: str) -> str:
    nb = read_source(NOTEBOOKS / notebook)
    set_params(nb, {"colabkit_source": source})
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _runtime_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH (which may name this checkout)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _dists_in(site_dir: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in site_dir.glob("*.dist-info")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout, as the README says to make one."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building in the checkout would leave build/ and *.egg-info behind
    src.mkdir()
    for name in ("colabkit", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        subprocess.run(["cp", "-r", str(ROOT / name), str(src)], check=True)
    # --no-build-isolation uses this machine's setuptools instead of fetching one: the same wheel, offline and
    # faster. Where that setuptools cannot build it (too old, no `wheel`), the README's plain command.
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "wheels"), str(src)]
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True).returncode:
        subprocess.run(build, check=True, capture_output=True)
    (built,) = (tmp / "wheels").glob("colabkit-*.whl")
    return built


@pytest.fixture
def fresh_runtime(tmp_path) -> tuple[Path, Path]:
    """(python, site-packages) of a venv that has Colab's packages but not colabkit."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    (venv_site / "colab_preinstalled.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, torch, transformers, diffusers;"
                            "print(u.find_spec('colabkit'))"], capture_output=True, text=True, check=True,
                           env=_runtime_env(), cwd=tmp_path)
    assert probe.stdout.strip() == "None"  # Colab's packages are there, colabkit is not
    return python, venv_site


def _stdout(cell) -> str:
    """What a cell printed, without the kernel's own warnings on stderr (libraries in the runtime may add some)."""
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout").strip()


@pytest.mark.slow
def test_first_cell_installs_from_a_wheel_into_a_fresh_runtime(fresh_runtime, wheel, tmp_path):
    python, venv_site = fresh_runtime
    before = _dists_in(venv_site)
    env = _runtime_env()  # the kernel must not see this checkout
    env.update(COLABKIT_DRIVE_ROOT=str(tmp_path / "MyDrive"), PATH=f"{python.parent}{os.pathsep}{env['PATH']}")
    nb = read_source(NOTEBOOKS / "1_dataset.py")
    set_params(nb, {"colabkit_source": str(wheel), "project_name": "fresh"})
    first_cells = [c.source for c in nb.cells if c.cell_type == "code"][:2]  # set up, open the project
    ran = execute_cells([
        "import importlib.util; print(importlib.util.find_spec('colabkit'))",
        *first_cells,
        "import colabkit, torch, transformers, diffusers\n"
        "print(colabkit.__file__); print(torch.__file__, transformers.__file__, diffusers.__file__)",
    ], python=python, where=tmp_path, env=env, cwd=tmp_path)
    assert _stdout(ran.cells[0]) == "None"
    where_colabkit, where_others = _stdout(ran.cells[-1]).splitlines()
    assert Path(where_colabkit).is_relative_to(venv_site)  # installed by the cell, from the wheel
    for path in where_others.split():
        assert not Path(path).is_relative_to(venv_site)  # still the preinstalled ones
    added = _dists_in(venv_site) - before
    assert added == {"colabkit"}  # nothing else was installed, torch & co. least of all
    assert (tmp_path / "MyDrive" / "Loras" / "fresh" / "dataset").is_dir()  # the project cell ran on it


@pytest.mark.slow
def test_a_failed_install_says_in_one_line_what_to_put_in_colabkit_source(fresh_runtime, tmp_path):
    python, _ = fresh_runtime
    env = _runtime_env()
    cells = [_first_cell("2_train.py", ""), _first_cell("2_train.py", str(tmp_path / "no-such-colabkit.whl"))]
    from nbclient.exceptions import CellExecutionError

    for cell, why in zip(cells, ["(colabkit_source is empty and MyDrive/Loras/_colabkit/ has no colabkit-*.whl)",
                                 "no-such-colabkit.whl"]):
        with pytest.raises(CellExecutionError) as err:  # stops "Run all" here
            execute_cells([cell], python=python, where=tmp_path, env=env, cwd=tmp_path)
        line = err.value.evalue  # shown as "SystemExit: <line>"
        assert err.value.ename == "SystemExit" and "\n" not in line and "\x1b" not in line
        assert line.startswith("colabkit is not installed (") and why in line
        for hint in ("Unzip the colabkit download into MyDrive/Loras/_colabkit/", "git+https://", "colabkit==0.1.0",
                     "/content/drive/MyDrive/", "pip wheel --no-deps ."):
            assert hint in line
        assert "pip._internal" not in str(err.value) and "Traceback (most recent call last)" not in str(err.value)


@pytest.mark.slow
def test_first_cell_mounts_drive_to_install_a_wheel_kept_there(fresh_runtime, wheel, tmp_path):
    """In a fresh (stand-in) Colab runtime, Drive is not mounted: a wheel on Drive is reachable only after the
    cell mounts it. Then setup() finds Drive mounted and the project lands on Drive."""
    import shutil

    from helpers.colab_runtime import FAKE_COLAB, FakeColab

    python, venv_site = fresh_runtime
    colab = FakeColab(tmp_path / "colab-home", tmp_path / "rt" / "content")
    colab.content.mkdir(parents=True)
    colab.my_drive.mkdir(parents=True)
    shutil.copy(wheel, colab.my_drive / wheel.name)
    env = _runtime_env()
    env.pop("COLABKIT_DRIVE_ROOT", None)
    env.update(colab.env(), PYTHONPATH=str(FAKE_COLAB), PATH=f"{python.parent}{os.pathsep}{env['PATH']}")
    nb = read_source(NOTEBOOKS / "2_train.py")
    set_params(nb, {"colabkit_source": str(colab.mounted_root / wheel.name)})
    first_cell = next(c.source for c in nb.cells if c.cell_type == "code")
    ran = execute_cells([first_cell, "import colabkit; print(colabkit.__file__)"], python=python, where=tmp_path,
                        env=env, cwd=tmp_path)
    assert Path(_stdout(ran.cells[-1])).is_relative_to(venv_site)  # installed from the wheel on Drive
    assert colab.log() == [f"mount {colab.content / 'drive'}"]  # once: the cell's; setup() found it mounted
