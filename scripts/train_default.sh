#!/bin/bash
# The embedded default run: the synthetic residue-motif PPI task on a tiny ESM-2 with LoRA,
# on this machine's CPU (a few minutes). Extra arguments go to ppi_dist/train.py, e.g.
#   bash scripts/train_default.sh --interaction pooled --output_dir outputs/pooled
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
exec accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  ppi_dist/train.py --config recipes/synthetic_tiny.yaml "$@"
