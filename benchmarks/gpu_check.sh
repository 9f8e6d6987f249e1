#!/usr/bin/env bash
# One GPU check of SE-CAI, under 8 minutes on one H100/H200, ending in one results table:
#   1. versions and the GPU (nvidia-smi),
#   2. training throughput of the ESM-2 650M shape (random weights) in bf16 with activation
#      checkpointing and SDPA: a token-budget sweep on Bernett lengths against the naive
#      baseline, and fixed 1,022-residue sequences (the memory worst case),
#   3. trainer sanity runs: DDP (accelerate_configs/single_gpu.yaml) and DeepSpeed ZeRO-2
#      (accelerate_configs/zero2.yaml), a few steps each through `accelerate launch`.
# A check that cannot run prints "SKIPPED: <reason>" in its row; a failure prints FAIL and
# the tail of its log. Installs nothing: it uses the Python where `pip install -e .` was run.
#
#   bash benchmarks/gpu_check.sh          # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry    # (or DRY=1) CPU, tiny shape, a handful of steps: CI
# Env: PYTHON (default: .venv/bin/python if present, else python), PAIRS / FASTA (default:
# ../shared/data/bernett-gold/{train.tsv,sequences.fasta}), WORK (scratch, default a temp dir).
set -uo pipefail

DRY="${DRY:-0}"
for arg in "$@"; do
  case "$arg" in
    --dry) DRY=1 ;;
    *) echo "unknown argument: $arg (only --dry)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
PAIRS="${PAIRS:-$REPO/../shared/data/bernett-gold/train.tsv}"
FASTA="${FASTA:-$REPO/../shared/data/bernett-gold/sequences.fasta}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
RESULTS="$WORK/throughput.jsonl"   # one JSON line per throughput result (throughput.py)
STATUS="$WORK/status.tsv"          # check <TAB> status <TAB> seconds <TAB> note
: >"$RESULTS"
: >"$STATUS"

if [[ "$DRY" == 1 ]]; then
  # CPU, tiny ESM-2 shape, a handful of short steps: exercises every line, measures nothing.
  # Short fixed lengths keep it fast; the Bernett pairs still go through the data layer.
  DEVICE=cpu ENCODER=tiny TRAIN_SHAPE=tiny
  SWEEP=(--max_tokens 2048 4096 --num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1
         --fixed_length 60 --baseline_batch_size 4)
  FIXED=(--max_tokens 2048 --num_pairs 4 --sort_buffer 32 --repeats 1 --warmup 0
         --fixed_length 30 --no_baseline)
  TRAIN_STEPS=2 TRAIN_TOKENS=2048
  SWEEP_TIMEOUT=240 FIXED_TIMEOUT=120 TRAIN_TIMEOUT=180
else
  DEVICE=cuda ENCODER=650M-shape TRAIN_SHAPE=650M
  SWEEP=(--max_tokens 8192 16384 32768 --num_pairs 256 --repeats 3 --warmup 2
         --baseline_batch_size 8 --bf16 --activation_checkpointing --attn_implementation sdpa)
  FIXED=(--max_tokens 32768 --num_pairs 128 --repeats 3 --warmup 2 --fixed_length 1022
         --no_baseline --bf16 --activation_checkpointing --attn_implementation sdpa)
  TRAIN_STEPS=5 TRAIN_TOKENS=16384
  # Hard limits add up to 210 + 75 + 2 x 90 s = 7.75 min, so the whole script stays under 8.
  SWEEP_TIMEOUT=210 FIXED_TIMEOUT=75 TRAIN_TIMEOUT=90
fi

note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STATUS"; }

# run_check NAME TIMEOUT CMD...: run, log to $WORK/NAME.log, record OK / FAIL in $STATUS.
run_check() {
  local name="$1" limit="$2"; shift 2
  local log="$WORK/$name.log" start rc
  echo "=== $name: $*"
  start=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  cat "$log"
  local seconds=$(( $(date +%s) - start ))
  if [[ $rc == 0 ]]; then
    note "$name" OK "$seconds" ""
  elif [[ $rc == 124 ]]; then
    note "$name" FAIL "$seconds" "timed out after ${limit}s"
  else
    note "$name" FAIL "$seconds" "exit $rc: $(tail -n 1 "$log" | cut -c1-120)"
  fi
}

echo "=== versions"
date -u
"$PYTHON" - <<'EOF'
import platform

import accelerate
import deepspeed
import peft
import torch
import transformers

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}, "
      f"accelerate {accelerate.__version__}, deepspeed {deepspeed.__version__}")
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
elif [[ "$DRY" == 1 ]]; then
  echo "nvidia-smi: not found (dry run on CPU)"
else
  echo "nvidia-smi: not found"
fi
if [[ "$DRY" != 1 ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA GPU visible to torch; use --dry on a CPU machine" >&2
  exit 1
fi

# ---- 2. throughput --------------------------------------------------------------------
THROUGHPUT=("$PYTHON" benchmarks/throughput.py --encoder "$ENCODER" --device "$DEVICE"
            --json_out "$RESULTS")
if [[ -f "$PAIRS" && -f "$FASTA" ]]; then
  run_check throughput_sweep "$SWEEP_TIMEOUT" "${THROUGHPUT[@]}" --pairs "$PAIRS" \
    --fasta "$FASTA" "${SWEEP[@]}"
else
  note throughput_sweep SKIPPED 0 "SKIPPED: no pair data at $PAIRS (set PAIRS and FASTA)"
fi
# Fixed lengths need no data: without the pair file the pairs are synthetic.
run_check throughput_fixed "$FIXED_TIMEOUT" "${THROUGHPUT[@]}" --pairs "$PAIRS" \
  --fasta "$FASTA" "${FIXED[@]}"

# ---- 3. trainer sanity runs -------------------------------------------------------------
# A small synthetic pair set, so these runs need no data on the machine.
"$PYTHON" - "$WORK" <<'EOF'
import random
import sys
from pathlib import Path

work, rng = Path(sys.argv[1]), random.Random(0)
names = [f"P{i}" for i in range(24)]
fasta = "".join(f">{n}\n{''.join(rng.choice('ACDEFGHIKLMNPQRSTVWY') for _ in range(rng.randint(30, 120)))}\n"
                for n in names)
(work / "sanity.fasta").write_text(fasta)
rows = [f"{rng.choice(names)}\t{rng.choice(names)}\t{i % 2}" for i in range(64)]
(work / "sanity.tsv").write_text("protein_a\tprotein_b\tlabel\n" + "\n".join(rows) + "\n")
EOF

# Trainer flags (ppi_dist/config.py TrainConfig fields, parsed by HfArgumentParser).
TRAIN_ARGS=(--train_file "$WORK/sanity.tsv" --valid_file "$WORK/sanity.tsv"
            --fasta "$WORK/sanity.fasta" --encoder_shape "$TRAIN_SHAPE"
            --max_steps "$TRAIN_STEPS" --max_tokens "$TRAIN_TOKENS" --seed 0
            --report_to none --plots false)
if [[ "$DRY" == 1 ]]; then
  TRAIN_ARGS+=(--mixed_precision no)
else
  TRAIN_ARGS+=(--mixed_precision bf16 --activation_checkpointing true)
fi

train_check() {  # NAME CONFIG
  local name="$1" config="$2"
  if [[ ! -f ppi_dist/train.py ]]; then
    note "$name" SKIPPED 0 "SKIPPED: ppi_dist/train.py not found"; return
  fi
  if [[ ! -f "$config" ]]; then
    note "$name" SKIPPED 0 "SKIPPED: $config not found"; return
  fi
  if ! "$PYTHON" -c "import accelerate" 2>/dev/null; then
    note "$name" SKIPPED 0 "SKIPPED: accelerate not importable"; return
  fi
  # One process: zero2.yaml is written for 8 GPUs; here it is a one-GPU sanity run.
  local launch=("$PYTHON" -m accelerate.commands.launch --config_file "$config"
                --num_processes 1)
  mkdir -p "$WORK/$name"
  # No GPU in a dry run: accelerate runs the single-process config on CPU by itself.
  run_check "$name" "$TRAIN_TIMEOUT" "${launch[@]}" ppi_dist/train.py "${TRAIN_ARGS[@]}" \
    --output_dir "$WORK/$name"
}
train_check ddp_single_gpu accelerate_configs/single_gpu.yaml
if [[ "$DRY" == 1 ]]; then
  # DeepSpeed needs a GPU (Accelerate's CPU mode silently turns it into DDP): not run dry.
  note zero2_single_gpu SKIPPED 0 "SKIPPED: dry run on CPU (DeepSpeed runs on the GPU check)"
else
  train_check zero2_single_gpu accelerate_configs/zero2.yaml
fi

# ---- results table ----------------------------------------------------------------------
echo
echo "=== results ($([[ "$DRY" == 1 ]] && echo "DRY: CPU, tiny shape, not a measurement" || echo "GPU"))"
"$PYTHON" - "$RESULTS" "$STATUS" <<'EOF'
import json
import sys

results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
status = [line.rstrip("\n").split("\t") for line in open(sys.argv[2]) if line.strip()]
header = ("check", "status", "pairs/s", "pair tok/s", "padded tok/s", "MFU", "peak GiB", "note")
rows = []
for r in results:
    what = f"max_tokens {r['max_tokens']}" if r["max_tokens"] else f"batch_size {r['batch_size']}"
    what += f", length {r['fixed_length']}" if r["fixed_length"] else ", pair-file lengths"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
    rows.append((f"throughput {r['name']}", "OK", f"{r['pairs_per_s']:.2f}",
                 f"{r['pair_tokens_per_s']:.0f}", f"{r['encoded_padded_tokens_per_s']:.0f}", mfu,
                 f"{r['peak_memory_gb']:.2f}", f"{r['encoder']} {what}"))
for name, state, seconds, text in status:
    if state != "OK" or not name.startswith("throughput"):
        rows.append((name, state, "-", "-", "-", "-", "-", f"{seconds}s {text}".strip()))
widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
for row in [header, tuple("-" * w for w in widths), *rows]:
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
EOF
echo "(logs and raw results in $WORK)"
