#!/bin/bash
# The same multi-node run with plain torchrun instead of `accelerate launch` (DDP, or
# DeepSpeed through ACCELERATE_USE_DEEPSPEED). Run on every node:
#
#   NNODES=2 NODE_RANK=0 MAIN_ADDR=node001 launch/torchrun.sh --config recipes/bernett_650m.yaml
#
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAIN_ADDR=${MAIN_ADDR:-127.0.0.1}
MAIN_PORT=${MAIN_PORT:-29500}
COMMAND=(torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE"
         --master_addr "$MAIN_ADDR" --master_port "$MAIN_PORT" ppi_dist/train.py "$@")
if [[ "${ZERO2:-1}" == 1 ]]; then
  # Accelerate reads its DeepSpeed plugin from these when not started by `accelerate launch`.
  export ACCELERATE_USE_DEEPSPEED=true ACCELERATE_DEEPSPEED_CONFIG_FILE=accelerate_configs/ds_zero2.json
  export ACCELERATE_MIXED_PRECISION=${ACCELERATE_MIXED_PRECISION:-bf16}
fi
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  echo "${COMMAND[*]}"
  exit 0
fi
exec "${COMMAND[@]}"
