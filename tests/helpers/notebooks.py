"""Notebook sources, generated .ipynb files, and headless execution with form values set.

The notebooks are kept as jupytext "percent" scripts (``notebooks/*.py``): plain text that diffs and
reviews well. The ``.ipynb`` that Colab opens is generated from them (``python tests/helpers/notebooks.py``),
in English and, with the translation of their text (``notebooks/locale``, see ``notebook_text``), in Spanish
(``notebooks/es/``); a test checks they agree. Tests execute them top to bottom with nbclient, after replacing
the value of chosen ``name = value  # @param`` lines, exactly as a user filling the form would.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # notebook_text, beside this file (also when run as a script)
CPU_NOTEBOOKS = {"1_dataset"}
_PARAM_RE = re.compile(r"^(?P<indent>\s*)(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>.*?)\s*#\s*@param(?P<rest>.*)$")


def read_source(py_path: str | os.PathLike, lang: str = "en"):
    """The notebook of one source, in ``lang``: its text translated (``notebooks/locale``), its ``@settings`` lines
    expanded into the settings' descriptions, and (``es``) its ``language`` field defaulting to the notebook's own."""
    import jupytext

    from notebook_text import LANGUAGE_FIELD, localize

    nb = jupytext.read(str(py_path), fmt="py:percent")
    localize(nb, lang)
    if lang != "en":
        set_params(nb, {"language": LANGUAGE_FIELD[lang]})
    # Colab needs these to show the form; a GPU runtime only for the notebooks that need one: notebook 1 tags on
    # a CPU runtime (an idle GPU runtime spends the quota training needs; the artist may pick one for BLIP).
    nb.metadata = {
        "colab": {"provenance": []},
        "kernelspec": {"display_name": "Python 3", "name": "python3"},
        "language_info": {"name": "python"},
    }
    if Path(py_path).stem not in CPU_NOTEBOOKS:
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: the generated file is reproducible byte for byte
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def to_ipynb_text(py_path: str | os.PathLike, lang: str = "en") -> str:
    import nbformat

    return nbformat.writes(read_source(py_path, lang)) + "\n"


def ipynb_path(src: Path, lang: str = "en") -> Path:
    """notebooks/<name>.ipynb, or notebooks/<lang>/<name>.ipynb for a translation."""
    return src.with_suffix(".ipynb") if lang == "en" else src.parent / lang / (src.stem + ".ipynb")


def build_all() -> list[Path]:
    """Refresh the notebooks' text catalog (new text appears untranslated in its .po), then regenerate every
    notebooks/*.ipynb and notebooks/<lang>/*.ipynb from its .py source."""
    from notebook_text import TRANSLATED, update_catalogs

    written = update_catalogs(sorted(NOTEBOOKS.glob("*.py")))
    for src in sorted(NOTEBOOKS.glob("*.py")):
        for lang in ("en", *TRANSLATED):
            out = ipynb_path(src, lang)
            out.parent.mkdir(exist_ok=True)
            out.write_text(to_ipynb_text(src, lang))
            written.append(out)
    return written


def form_params(nb) -> dict[str, str]:
    """The form fields of a notebook: name -> the source text of its default value."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            m = _PARAM_RE.match(line)
            if m:
                found[m["name"]] = m["value"]
    return found


def set_params(nb, params: dict[str, Any]) -> None:
    """Replace the value of each ``name = ...  # @param`` line named in ``params``; unknown names fail."""
    missing = set(params)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            m = _PARAM_RE.match(line)
            if m and m["name"] in params:
                lines[i] = f"{m['indent']}{m['name']} = {params[m['name']]!r}  # @param{m['rest']}"
                missing.discard(m["name"])
        cell.source = "\n".join(lines)
    if missing:
        raise KeyError(f"not form fields of this notebook: {sorted(missing)}")


def run_notebook(py_path: str | os.PathLike, params: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, timeout: int = 600, cwd: str | os.PathLike | None = None,
                 lang: str = "en"):
    """Execute a notebook source headless, top to bottom; returns the executed notebook.

    ``env`` is added to the kernel's environment (e.g. COLABKIT_DRIVE_ROOT). A failing cell raises
    nbclient's CellExecutionError with the cell's traceback, and the notebook as executed so far as ``.notebook``.
    """
    from nbclient import NotebookClient

    nb = read_source(py_path, lang)
    set_params(nb, params or {})
    kernel_env = dict(os.environ)
    kernel_env.update(env or {})
    # The kernel must import this checkout, not some other installed colabkit.
    root = str(Path(__file__).resolve().parents[2])
    kernel_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, kernel_env.get("PYTHONPATH", "")) if p)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or Path(py_path).parent)}})
    client.km_kwargs = {"env": kernel_env}  # nbclient passes these to the kernel manager
    _ensure_kernel_spec()
    from nbclient.exceptions import CellExecutionError

    try:
        client.execute(env=kernel_env)
    except CellExecutionError as e:
        e.notebook = nb  # executed up to the failing cell: its outputs show what the user saw
        raise
    return nb


def _ensure_kernel_spec() -> None:
    # A fresh CI machine has ipykernel but may not have registered the "python3" kernel spec.
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True, kernel_name="python3")


def outputs(nb, kind: str | None = None) -> list[dict]:
    """All outputs of all cells (optionally only those carrying MIME type ``kind``, e.g. 'image/png')."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind is None or kind in out.get("data", {}):
                found.append(out)
    return found


def text_of(nb) -> str:
    """Everything the notebook printed or displayed as text, joined (for asserting on messages)."""
    parts = []
    for out in outputs(nb):
        if "text" in out:
            parts.append(out["text"])
        for mime in ("text/plain", "text/html", "text/markdown"):
            if mime in out.get("data", {}):
                parts.append(out["data"][mime])
    return "\n".join(parts)


if __name__ == "__main__":
    for path in build_all():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    sys.exit(0)
