#!/usr/bin/env bash
# The canary: the suite against the newest releases of everything colabkit uses, without constraints/colab.txt,
# in its own venv. It tells us what the next Colab update will break before Google ships it; record its last
# result (date, versions, outcome) in the README's development section.
#
#   scripts/canary.sh [pytest args...]       e.g. scripts/canary.sh -m "not slow"
#
# COLABKIT_CANARY_PYTHON: the interpreter (default: pyenv's newest 3.13, Colab's Python, else python3.13).
# COLABKIT_CANARY_VENV: where the venv lives (default ~/.cache/colabkit/venv-canary); rebuilt on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${COLABKIT_CANARY_PYTHON:-}"
if [ -z "$python" ]; then
    python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    python="${python:-python3.13}"
fi
venv="${COLABKIT_CANARY_VENV:-$HOME/.cache/colabkit/venv-canary}"
rm -rf "$venv"
"$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Newest of everything: no constraints, eager upgrades of dependencies too (pip's global config still applies).
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q --upgrade --upgrade-strategy eager torch -e ".[test]"
versions=$("$venv/bin/python" - <<'PY'
import importlib.metadata as md, platform
names = ["torch", "diffusers", "transformers", "accelerate", "peft", "safetensors", "huggingface_hub", "numpy",
         "pillow", "ipywidgets", "ipykernel", "matplotlib", "tqdm", "bitsandbytes", "onnxruntime"]
print(f"Python {platform.python_version()}, " + ", ".join(f"{n} {md.version(n)}" for n in names))
PY
)
echo "canary versions: $versions"
set +e
COLABKIT_EXPECT_IPYWIDGETS=8 PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -p no:cacheprovider "$@" | tee "$venv/pytest.log"
status=${PIPESTATUS[0]}
set -e
echo "canary $(date -u +%Y-%m-%d): $versions; pytest $* -> $(tail -1 "$venv/pytest.log" | tr -d '=' | sed 's/^ *//;s/ *$//') (exit $status)"
exit "$status"
