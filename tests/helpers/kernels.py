"""Run notebook cells in a kernel of a chosen Python (a venv's, the test's own), not whatever "python3" names.

The "python3" kernel spec that ipykernel installs runs `python` from PATH: inside a venv that is not
activated, that is some other interpreter with other packages. These helpers write a throwaway kernel
spec whose argv names the interpreter itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def kernel_spec_manager(python: str | os.PathLike, where: Path):
    """A KernelSpecManager that knows one kernel, "here", running ``python``."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = where / "here"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "here", "language": "python",
    }))
    return KernelSpecManager(kernel_dirs=[str(where)])


def execute_cells(cells: list[str], python: str | os.PathLike, where: Path, env: dict[str, str],
                  cwd: Path, timeout: int = 300):
    """Execute code cells in a fresh kernel of ``python`` with exactly ``env``; returns the executed notebook.

    A cell that raises makes nbclient raise CellExecutionError (its message carries the cell's output).
    """
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    km = KernelManager(kernel_name="here", kernel_spec_manager=kernel_spec_manager(python, where / "kernels"))
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(env=env)
    finally:  # nbclient shuts down only kernels it made itself
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def widget_views(nb) -> list[str]:
    """The model ids of every widget view the cells displayed."""
    return [out["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for cell in nb.cells for out in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
