#!/bin/bash
# Set up .venv with ppi_dist and the versions it is tested with (requirements/lock.txt);
# quick when already done. VENV=DIR sets up another environment (scripts/test_newest.sh).
#
# torch goes in first, at the locked release: where the machine provides a CPU wheel of it
# (pip's find-links), that one, instead of PyPI's multi-GB CUDA build. On a GPU machine,
# install your CUDA build of torch into the environment first: it is kept, whatever its
# version.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=requirements/lock.txt
if [[ ! -x $VENV/bin/python ]]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1090,SC1091
source "$VENV/bin/activate"
locked_torch=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' "$LOCK")
if ! python -c "import torch" 2>/dev/null; then
  # The CPU wheel where the machine provides one (pip's find-links), else PyPI's build.
  pip install --quiet "torch==$locked_torch"
fi
# A torch the user installed (a CUDA build, another release) stays: its line leaves the lock.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
installed_torch=$(python -c "import torch; print(torch.__version__.split('+')[0])")
if [[ $installed_torch == "$locked_torch" ]]; then
  cp "$LOCK" "$constraints"
else
  echo "setup: keeping torch $installed_torch (the lock tests $locked_torch)"
  grep -v '^torch==' "$LOCK" >"$constraints"
fi
stamp=$VENV/.ppi_dist_installed
wanted=$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)
if [[ $(cat "$stamp" 2>/dev/null) != "$wanted" ]] || ! python -c "import ppi_dist, pytest" 2>/dev/null; then
  # split: MMseqs2, KaHIP and METIS, run by the split tests
  pip install --quiet -e ".[dev,split]" --constraint "$constraints"
  echo "$wanted" >"$stamp"
fi
