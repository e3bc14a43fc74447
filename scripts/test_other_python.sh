#!/usr/bin/env bash
# The suite on another Python (default 3.13, what Colab runs since runtime 2026.08), in its own venv, against
# Colab's pins (constraints/colab.txt). Not in CI: torch for a second Python is a multi-GB download (the CUDA
# build from the package index) on top of a suite that already uses most of CI's 15 minutes.
#
#   scripts/test_other_python.sh [PYTHON] [pytest args...]      e.g. scripts/test_other_python.sh python3.13 -m "not slow"
#
# PYTHON: an interpreter (default: pyenv's newest 3.13, else python3.13). The venv is kept in
# $COLABKIT_VENV (default ~/.cache/colabkit/venv-<version>), so a second run skips the downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-}"
[ $# -gt 0 ] && shift
if [ -z "$python" ]; then
    python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    python="${python:-python3.13}"
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv="${COLABKIT_VENV:-$HOME/.cache/colabkit/venv-$version}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# torch: setup.cfg's range (Colab's own is a CUDA build we never reinstall there); the rest: Colab's pins.
"$venv/bin/pip" install -q "torch>=2.4,<3"
"$venv/bin/pip" install -q -c constraints/colab.txt -e ".[test]"
"$venv/bin/python" -c 'import sys, torch, numpy, ipywidgets; print("Python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__, "ipywidgets", ipywidgets.__version__)'
# The venv's bin first: the notebooks' kernel ("python3") runs the `python` found on PATH.
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
