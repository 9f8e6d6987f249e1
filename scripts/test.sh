#!/bin/bash
# Set up, lint, run the test suite (CPU; GPU tests are skipped without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ruff check ppi_dist tests benchmarks
ruff format --check ppi_dist tests benchmarks
python -m pytest "$@"
