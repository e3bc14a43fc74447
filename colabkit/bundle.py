"""`python -m colabkit bundle`: the download an artist puts on Drive to run the notebooks without a repository.

``colabkit-<version>-colab.zip`` holds the wheel, the three notebooks in English (``en/``) and Spanish (``es/``), and
a short how-to in both languages. Unzipped into ``MyDrive/Loras/_colabkit/``, the notebooks' first cell finds the
wheel there (an empty ``colabkit_source``) and installs it with ``--no-deps``: Colab's own packages stay.

It is built from a colabkit checkout (the wheel is built from its sources, the notebooks are its committed
``.ipynb`` files, which a test keeps equal to their sources).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from colabkit import __version__
from colabkit.errors import ColabkitError
from colabkit.i18n import N_, LANGUAGES, _

CHECKOUT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("1_dataset.ipynb", "2_train.ipynb", "3_generate.ipynb")
DRIVE_FOLDER = "MyDrive/Loras/_colabkit/"
# The how-to's file name in each language (at the top of the zip, so it is the first thing seen).
HOW_TO = {"en": "HOW-TO.txt", "es": "COMO-USAR.txt"}
_HOW_TO_TEXT = N_(
    "colabkit {version}: train an SDXL LoRA on your own drawings in Google Colab\n"
    "\n"
    "1. Unzip this file into a folder named _colabkit.\n"
    "2. Upload that folder into MyDrive/Loras/ on your Google Drive (create the Loras folder if it is not there;\n"
    "   you can drag the folder onto drive.google.com). The wheel must end up at\n"
    "   {wheel_path}.\n"
    "3. In Drive, open a notebook from _colabkit/{folder}/ (English: en/, Spanish: es/): right-click it,\n"
    "   Open with > Google Colaboratory.\n"
    "4. Run the cells from top to bottom. Leave colabkit_source empty: the first cell mounts your Drive and\n"
    "   installs colabkit from the wheel above, without replacing any of Colab's own packages.\n"
    "\n"
    "The notebooks, in order:\n"
    "  1_dataset: check your drawings, tag them, pick your trigger word.\n"
    "  2_train: train the LoRA on a free T4 GPU; it stops before the day's GPU time runs out and continues\n"
    "    where it stopped when you run it again tomorrow.\n"
    "  3_generate: compare the epochs, make pictures, cut out sprites.\n"
    "\n"
    "A newer version: unzip its file into the same folder; the first cell always installs the newest wheel there.\n"
)


def notebook_path(root: Path, lang: str, name: str) -> Path:
    """notebooks/<name> for the source language, notebooks/<lang>/<name> for a translation."""
    return root / "notebooks" / name if lang == LANGUAGES[0] else root / "notebooks" / lang / name


def _checkout(root: Path) -> Path:
    needed = [root / "setup.cfg", root / "pyproject.toml"]
    needed += [notebook_path(root, lang, nb) for lang in LANGUAGES for nb in NOTEBOOKS]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        raise ColabkitError(_("The bundle is built from a colabkit checkout, and {root} lacks {missing}. Run "
                              "`python -m colabkit bundle` from a clone of the colabkit repository.").format(
            root=root, missing=", ".join(missing)))
    return root


def build_wheel(root: Path, into: Path) -> Path:
    """The wheel of the checkout at ``root``, built from a copy (building in place leaves build/ and egg-info)."""
    src = into / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("colabkit", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_dir():
            shutil.copytree(root / name, src / name, ignore=ignore)
        elif (root / name).exists():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, src / name)
    out = into / "wheel"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-color", "-w", str(out), str(src)]
    # This machine's setuptools first (offline, fast); pip's isolated build where that one cannot build it.
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True).returncode:
        done = subprocess.run(build, capture_output=True, text=True)
        if done.returncode:
            raise ColabkitError(_("Building the wheel failed: {error}").format(
                error=(done.stderr.strip().splitlines() or ["pip wheel failed"])[-1]))
    (wheel,) = out.glob("colabkit-*.whl")
    return wheel


def how_to(lang: str, wheel_name: str) -> str:
    from colabkit import i18n

    before = i18n._language
    try:
        i18n.set_language(lang)
        return _(_HOW_TO_TEXT).format(version=__version__, wheel_path=DRIVE_FOLDER + wheel_name, folder=lang)
    finally:
        i18n._language = before


def build_bundle(output_folder: str | Path = ".", root: Path = CHECKOUT) -> Path:
    """Write ``<output_folder>/colabkit-<version>-colab.zip``; returns its path."""
    root = _checkout(Path(root))
    output = Path(output_folder).expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"colabkit-{__version__}-colab.zip"
    with tempfile.TemporaryDirectory(prefix="colabkit-bundle-") as tmp:
        wheel = build_wheel(root, Path(tmp))
        entries: list[tuple[str, bytes]] = [(HOW_TO[lang], how_to(lang, wheel.name).encode("utf-8"))
                                             for lang in LANGUAGES]
        entries.append((wheel.name, wheel.read_bytes()))
        entries += [(f"{lang}/{nb}", notebook_path(root, lang, nb).read_bytes()) for lang in LANGUAGES for nb in NOTEBOOKS]
        partial = target.with_name(target.name + ".partial")  # never a half-written zip under the real name
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        partial.replace(target)
    return target
