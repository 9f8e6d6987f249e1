#!/usr/bin/env bash
# The GPU check of SE-CAI on one H100/H200, ending in one results table. Four stages; each
# one's rows (their time limits, most important first) add up, with set-up, to under its
# budget of 555 s, so a stage fits one call of a 10-minute device lease. The plan (rows and
# limits) is printed first, and a stage whose plan does not fit refuses to start;
# PLAN_ONLY=1 prints the plan and stops (tests/benchmarks check every stage's).
#   STAGE=tests (default)                                                  limits, seconds
#     1. versions and the GPU,
#     2. the GPU tests (tests/gpu: LoRA bf16 on the real 8M, frozen encoder, swap     140
#        augmentation, DeepSpeed ZeRO-2 with and without a frozen encoder, SIGTERM in the
#        final evaluation, predict = the trainer's scores, no math-kernel SDPA fallback,
#        the flash kernels of the encoder and the cross-attention),
#     3. where a step's time goes (benchmarks.profile_step): the ESM-2 650M shape      55
#        (random weights, LoRA, bf16, checkpointing) at 65,536 tokens, and the real     35
#        8M frozen step (cache-row batches of 262,144 pair tokens, the range BENCHMARKS
#        suggests for frozen runs; cache on the GPU): top kernels, host/device split,
#        operators dispatched per step, syncs,
#     4. the trainer itself on Bernett with the real 8M encoder, LoRA and frozen     2 x 90
#        encoder (cache kept on the GPU): pairs/s from its own log.
#   STAGE=speed: the speed figures the issue asks for, most important first: the 650M
#     shape at 65,536 tokens with checkpointing (MFU); LoRA on the last 8 layers over the
#     trunk cache beside LoRA on all 33 (benchmarks.lora_layers) 60; the packed encoder's attention
#     kernels (ppi_dist/models/attention.py): sdpa beside the naive baseline 80, varlen 60,
#     cudnn 60, flex 80 (compiles); varlen encoder with varlen cross-attention
#     (ppi_dist/models/cross_attention.py) 60; then the 8M LoRA (32,768 tokens, no
#     checkpointing) 30 and frozen 25 steps (pairs/s, operators per step); the 650M LoRA
#     profile 40.
#   STAGE=sweep: torch.compile against eager (the 650M shape at 65,536 tokens) 130, the 8M
#     LoRA step compiled 60, the budget and memory sweep of the 650M shape (32,768 / 65,536
#     / 131,072 tokens, naive baseline) 130, the same without activation checkpointing
#     (32,768 / 65,536) 80.
#   STAGE=results (SEEDS runs from SEED on; default 3 from 0)
#     frozen 8M on whole splits (benchmarks.real_data, max_tokens 262,144 pair tokens):
#     yeast random (2 epochs, protein-disjoint validation) 200, then Bernett (whole train,
#     validation and test sets, one epoch) 300: test metrics per objective beside the
#     baselines, written after every seed.
# Each row's command is printed before it runs; a check that cannot run prints
# "SKIPPED: <reason>" in its row; a failure prints FAIL and the tail of its log. On the
# GPU no step runs past STAGE_BUDGET seconds from the start (later steps get what is left,
# or are SKIPPED). The results table is rewritten after every row ($WORK/results.md), so a
# stage cut short keeps what it measured; the profiles' full tables are in
# $WORK/profile_*.log.
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine
#   STAGE=speed bash benchmarks/gpu_check.sh
#   STAGE=sweep bash benchmarks/gpu_check.sh
#   STAGE=results bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --dry         # (or DRY=1) CPU, tiny shape, a few steps: CI
# Env: PYTHON (default: .venv/bin/python if present, else python), DATA (default:
# ../shared/data/bernett-gold), ESM2_8M (../shared/models/esm2_t6_8M), WORK (scratch),
# TRACE=1 (Chrome traces of the profiled steps into $WORK; the 650M's is large),
# PPI_DIST_COMPILE_BACKEND (torch.compile backend; default inductor, eager in --dry),
# PLAN_ONLY=1 (print the stage's plan and stop).
set -uo pipefail

DRY="${DRY:-0}"
STAGE="${STAGE:-tests}"
for arg in "$@"; do
  case "$arg" in
    --dry) DRY=1 ;;
    *) echo "unknown argument: $arg (only --dry)" >&2; exit 2 ;;
  esac
done
case "$STAGE" in
  tests|speed|sweep|results) ;;
  *) echo "unknown STAGE=$STAGE (tests, speed, sweep or results)" >&2; exit 2 ;;
esac

# ---- the plan: each stage's rows in the order they run, with their GPU time limits -------
BUDGET=555       # seconds a stage may take on the GPU (one call of a 10-minute lease)
SETUP=30         # versions, imports, the sampled pair file, the final table
declare -A GPU_LIMIT=()
PLAN=()
plan_row() { PLAN+=("$1"); GPU_LIMIT[$1]=$2; }
case "$STAGE" in
  tests)
    plan_row gpu_tests 140
    plan_row profile_650m_lora 55
    plan_row profile_8m_frozen 35
    plan_row trainer_8m_lora 90
    plan_row trainer_8m_frozen 90 ;;
  speed)
    plan_row attention_sdpa 80
    plan_row lora_layers_650m 60
    plan_row attention_varlen 60
    plan_row attention_cudnn 60
    plan_row attention_flex 80
    plan_row cross_attention_varlen 60
    plan_row profile_8m_lora 30
    plan_row profile_8m_frozen 25
    plan_row profile_650m_lora 40 ;;
  sweep)
    plan_row throughput_compile 130
    plan_row profile_8m_lora_compiled 60
    plan_row throughput_sweep 130
    plan_row throughput_no_checkpointing 80 ;;
  results)
    plan_row yeast_random_frozen_8m 200
    plan_row bernett_frozen_8m 300 ;;
esac
PLANNED=0
echo "=== plan (STAGE=$STAGE; GPU limits in seconds, in the order they run)"
for name in "${PLAN[@]}"; do
  PLANNED=$(( PLANNED + GPU_LIMIT[$name] ))
  printf '  %-30s %4d\n' "$name" "${GPU_LIMIT[$name]}"
done
echo "  total $PLANNED + set-up $SETUP = $(( PLANNED + SETUP )) of the budget $BUDGET"
if (( PLANNED + SETUP > BUDGET )); then
  echo "the plan of STAGE=$STAGE does not fit its budget" >&2
  exit 1
fi
if [[ "${PLAN_ONLY:-0}" == 1 ]]; then exit 0; fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
DATA="${DATA:-$REPO/../shared/data/bernett-gold}"
ESM2_8M="${ESM2_8M:-$REPO/../shared/models/esm2_t6_8M}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
RESULTS="$WORK/throughput.jsonl"   # one JSON line per throughput result (throughput.py)
PROFILES="$WORK/profile.jsonl"     # one JSON line per profiled step (profile_step.py)
STATUS="$WORK/status.tsv"          # check <TAB> status <TAB> seconds <TAB> note
TRAINER="$WORK/trainer.tsv"        # run <TAB> pairs/s <TAB> steps <TAB> test metrics
: >"$RESULTS"
: >"$PROFILES"
: >"$STATUS"
: >"$TRAINER"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)

note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STATUS"; }

# write_table: the results table of every row so far, into $WORK/results.md (rewritten
# after each row, so a stage cut short keeps what it measured).
write_table() {
  "$PYTHON" -m benchmarks.gpu_report table "$RESULTS" "$STATUS" "$TRAINER" "$PROFILES" \
    "$COMMANDS" >"$WORK/results.md"
}

COMMANDS="$WORK/commands.tsv"       # check <TAB> the command it ran
: >"$COMMANDS"

# run_check NAME CMD...: run, log to $WORK/NAME.log, record OK / FAIL in $STATUS, then
# rewrite the results table. The time limit is the plan's (GPU) or DRY_LIMIT (--dry); with
# a STAGE_BUDGET it is cut to what is left of it, and a step with under 15 s left is skipped.
run_check() {
  local name="$1"; shift
  local log="$WORK/$name.log" start rc limit
  if [[ -z "${GPU_LIMIT[$name]:-}" ]]; then
    echo "internal: $name is not in the plan of STAGE=$STAGE" >&2
    exit 1
  fi
  if [[ "$DRY" == 1 ]]; then limit=$DRY_LIMIT; else limit=${GPU_LIMIT[$name]}; fi
  printf '%s\t%s\n' "$name" "$*" >>"$COMMANDS"
  if [[ "$STAGE_BUDGET" -gt 0 ]]; then
    local left=$(( START + STAGE_BUDGET - $(date +%s) ))
    if (( left < 15 )); then
      echo "=== $name: SKIPPED (${left}s left of the stage's ${STAGE_BUDGET}s): $*"
      note "$name" SKIPPED 0 "SKIPPED: ${left}s left of the stage's ${STAGE_BUDGET}s"
      write_table
      return
    fi
    if (( left < limit )); then limit=$left; fi
  fi
  echo "=== $name (limit ${limit}s): $*"
  start=$(date +%s)
  timeout --signal=TERM --kill-after=20 "$limit" "$@" >"$log" 2>&1
  rc=$?
  tail -n 40 "$log"
  local seconds=$(( $(date +%s) - start ))
  if [[ $rc == 0 ]]; then
    note "$name" OK "$seconds" "$(grep -Eo '[0-9]+ (passed|skipped).*' "$log" | tail -n 1)"
  elif [[ $rc == 124 ]]; then
    note "$name" FAIL "$seconds" "timed out after ${limit}s"
  else
    note "$name" FAIL "$seconds" "exit $rc: $(tail -n 1 "$log" | cut -c1-120)"
  fi
  write_table
}

# profile NAME ARGS...: python -m benchmarks.profile_step; its summary into $PROFILES, its
# tables in $WORK/NAME.log.
profile() {
  local name="$1"; shift
  local trace=()
  if [[ "${TRACE:-0}" == 1 ]]; then trace=(--trace "$WORK/$name.trace.json"); fi
  run_check "$name" "$PYTHON" -m benchmarks.profile_step --device "$DEVICE" \
    --pairs "$SAMPLED" --fasta "$DATA/sequences.fasta" --json_out "$PROFILES" \
    "${trace[@]}" "$@"
}

# trainer_row NAME OUTPUT_DIR: pairs/s (median of the logged windows after the first) and
# the test metrics of a finished run, into $TRAINER.
trainer_row() {
  "$PYTHON" -m benchmarks.gpu_report trainer_row "$1" "$2" >>"$TRAINER"
}

echo "=== versions ($STAGE$([[ "$DRY" == 1 ]] && echo ", dry"))"
date -u
"$PYTHON" - <<'EOF'
import platform

import accelerate, deepspeed, peft, torch, transformers

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}, "
      f"accelerate {accelerate.__version__}, deepspeed {deepspeed.__version__}")
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ "$DRY" != 1 ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA GPU visible to torch; use --dry on a CPU machine" >&2
  exit 1
fi

if [[ "$DRY" == 1 ]]; then
  # Every row's limit on the CPU is DRY_LIMIT: the plan's limits are the GPU's.
  DEVICE=cpu SHAPE=tiny STAGE_BUDGET="${STAGE_BUDGET:-0}" DRY_LIMIT=300
  # Compiled steps through dynamo's graph capture only ("eager" backend): the dry run checks
  # that the compile flags reach the model and capture its graphs; AOTAutograd and the
  # gradients are tests/models/test_compile.py's (aot_eager); the GPU run uses inductor.
  export PPI_DIST_COMPILE_BACKEND="${PPI_DIST_COMPILE_BACKEND:-eager}"
  SWEEP=(--max_tokens 2048 4096 --num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1
         --fixed_length 60 --baseline_batch_size 4)
  SWEEP_NO_CKPT=(--max_tokens 2048 --num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1
                 --fixed_length 60 --no_baseline --activation_checkpointing false)
  COMPILE=(--max_tokens 2048 --num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1
           --fixed_length 60 --no_baseline --compile)
  KERNELS=(--max_tokens 2048 --num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1
           --fixed_length 60 --baseline_batch_size 4)
  LORA_LAYERS=(--lora_layers 1 --max_residues 64 --max_tokens 2048 --sort_buffer 64
               --batches 1 --repeats 1 --warmup 1 --fixed_length 60 --mixed_precision no)
  # --dry: the tiny shape on the CPU whatever the encoder; 1 warm-up, 1 timed, 2 profiled.
  PROFILE_650M=(--dry --warmup 1 --timed_steps 1 --steps 2)
  PROFILE_8M_LORA=("${PROFILE_650M[@]}")
  PROFILE_8M_FROZEN=("${PROFILE_650M[@]}" --freeze_encoder true)
  SUBSET_TRAIN=400 SUBSET_EVAL=100 LORA_STEPS=3 FROZEN_STEPS=3 LORA_TOKENS=2048 FROZEN_TOKENS=4096
  # Crops of 256 (the CPU real-data runs'): the frozen run's cache of 827 whole proteins
  # was most of the dry run's time on a CPU, and the tiny shape measures nothing anyway.
  MODEL_ARGS=(--encoder_shape tiny --mixed_precision no --max_residues 256)
else
  # Seen on one H200: GPU tests 101-116 s; the trainer runs needed more than 60 s with their
  # final evaluation of 2,000 pairs, hence 90 s and 1,000 pairs. 650M steps at 65,536
  # tokens take about 2.9 s (22.6 pairs/s): a profile (2 warm-up, 2 timed, 1 + 2 profiled)
  # is about 20 s of steps after 20 s of start-up; the compile run adds the compilation of
  # one layer (fwd + bwd) and the head to 2 x 3 eager and compiled steps.
  DEVICE=cuda SHAPE=650M STAGE_BUDGET="${STAGE_BUDGET:-$BUDGET}" DRY_LIMIT=0
  # Trainer flags after the benchmarks' own: bf16, and checkpointing said explicitly (its
  # default is on for CUDA, so the no-checkpointing sweep must turn it off).
  SWEEP=(--max_tokens 32768 65536 131072 --num_pairs 128 --repeats 2 --warmup 1
         --baseline_batch_size 8 --mixed_precision bf16 --activation_checkpointing true
         --encoder_attention sdpa)
  SWEEP_NO_CKPT=(--max_tokens 32768 65536 --num_pairs 128 --repeats 2 --warmup 1 --no_baseline
                 --mixed_precision bf16 --activation_checkpointing false
                 --encoder_attention sdpa)
  COMPILE=(--max_tokens 65536 --num_pairs 64 --repeats 2 --warmup 1 --no_baseline --compile
           --mixed_precision bf16 --activation_checkpointing true
           --encoder_attention sdpa)
  KERNELS=(--max_tokens 65536 --num_pairs 128 --repeats 2 --warmup 1 --baseline_batch_size 8
           --mixed_precision bf16 --activation_checkpointing true)
  # The last 8 of 33 layers (the peft_proteomics recipe) at crops of 1,022.
  LORA_LAYERS=(--lora_layers 8 --max_residues 1022 --max_tokens 32768 --sort_buffer 256
               --batches 2 --repeats 2 --warmup 1 --mixed_precision bf16
               --activation_checkpointing true)
  PROFILE_650M=(--encoder_shape 650M --max_tokens 65536 --sort_buffer 1024 --warmup 2
                --timed_steps 2 --steps 2 --mixed_precision bf16 --activation_checkpointing true)
  PROFILE_8M_LORA=(--encoder "$ESM2_8M" --max_tokens 32768 --sort_buffer 2048 --warmup 3
                   --timed_steps 5 --steps 5 --mixed_precision bf16
                   --activation_checkpointing false)
  PROFILE_8M_FROZEN=(--encoder "$ESM2_8M" --max_tokens 262144 --sort_buffer 4096 --warmup 3
                     --timed_steps 5 --steps 5 --mixed_precision bf16 --freeze_encoder true)
  SUBSET_TRAIN=40000 SUBSET_EVAL=1000 LORA_STEPS=150 FROZEN_STEPS=300 LORA_TOKENS=32768 FROZEN_TOKENS=262144
  MODEL_ARGS=(--encoder "$ESM2_8M" --mixed_precision bf16)
fi
# The pair file the throughput and profile runs sample from. --dry samples 64 pairs (of
# random residues): the first 1,000 of train.tsv spare each run reading all 163,192.
SAMPLED="$DATA/train.tsv"
if [[ "$DRY" == 1 ]]; then
  SAMPLED="$WORK/train_head.tsv"
  head -n 1001 "$DATA/train.tsv" >"$SAMPLED"
fi
COMMON=(--report_to none --plots false --seed 0 --log_every 10 --data_workers 2 "${MODEL_ARGS[@]}")
THROUGHPUT=("$PYTHON" -m benchmarks.throughput --encoder_shape "$SHAPE" --device "$DEVICE"
            --json_out "$RESULTS" --pairs "$SAMPLED" --fasta "$DATA/sequences.fasta")

if [[ "$STAGE" == tests ]]; then
  # ---- 2. GPU tests (skipped, and counted as such, without CUDA) ------------------------
  # Several at once where pytest-xdist is installed: tiny runs leave the GPU mostly idle.
  PARALLEL=()
  if [[ "$DRY" != 1 ]] && "$PYTHON" -c "import xdist" 2>/dev/null; then PARALLEL=(-n 4); fi
  run_check gpu_tests "$PYTHON" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider \
    "${PARALLEL[@]}"
  # ---- 3. profiles of one step: the 650M shape with LoRA, the 8M frozen ------------------
  profile profile_650m_lora "${PROFILE_650M[@]}"
  profile profile_8m_frozen "${PROFILE_8M_FROZEN[@]}"
  # ---- 4. the trainer on Bernett with the 8M encoder ------------------------------------
  head -n $((SUBSET_TRAIN + 1)) "$DATA/train.tsv" >"$WORK/train_subset.tsv"
  head -n $((SUBSET_EVAL + 1)) "$DATA/valid.tsv" >"$WORK/valid_subset.tsv"
  SUBSET=(--train_file "$WORK/train_subset.tsv" --valid_file "$WORK/valid_subset.tsv"
          --fasta "$DATA/sequences.fasta" --eval_every 100000)
  run_check trainer_8m_lora "$PYTHON" ppi_dist/train.py "${COMMON[@]}" "${SUBSET[@]}" \
    --max_steps "$LORA_STEPS" --max_tokens "$LORA_TOKENS" --output_dir "$WORK/lora8m"
  trainer_row "8M LoRA, max_tokens $LORA_TOKENS" "$WORK/lora8m"
  run_check trainer_8m_frozen "$PYTHON" ppi_dist/train.py "${COMMON[@]}" "${SUBSET[@]}" \
    --freeze_encoder true --max_steps "$FROZEN_STEPS" --max_tokens "$FROZEN_TOKENS" \
    --embedding_cache "$WORK/cache8m" --output_dir "$WORK/frozen8m"
  trainer_row "8M frozen (cache), max_tokens $FROZEN_TOKENS" "$WORK/frozen8m"
fi

if [[ "$STAGE" == speed ]]; then
  # The 650M shape's MFU with each packed-encoder kernel (ppi_dist/models/attention.py) on
  # the same pairs, sdpa beside the naive baseline, first: the lever with the most to gain
  # (under sdpa every masked block is computed). Then flash varlen in the cross-attention
  # too (ppi_dist/models/cross_attention.py), then the 8M LoRA and frozen steps' pairs/s.
  run_check attention_sdpa "${THROUGHPUT[@]}" "${KERNELS[@]}" --encoder_attention sdpa
  # LoRA on the last layers over the trunk cache beside LoRA on every layer, the same batches
  # (benchmarks/lora_layers.py; its table is printed with the results).
  run_check lora_layers_650m "$PYTHON" -m benchmarks.lora_layers --encoder_shape "$SHAPE" \
    --device "$DEVICE" --pairs "$SAMPLED" --fasta "$DATA/sequences.fasta" "${LORA_LAYERS[@]}"
  for kernel in varlen cudnn flex; do
    run_check "attention_$kernel" "${THROUGHPUT[@]}" "${KERNELS[@]}" --no_baseline \
      --encoder_attention "$kernel"
  done
  run_check cross_attention_varlen "${THROUGHPUT[@]}" "${KERNELS[@]}" --no_baseline \
    --encoder_attention varlen --cross_attention_kernel varlen
  profile profile_8m_lora "${PROFILE_8M_LORA[@]}"
  profile profile_8m_frozen "${PROFILE_8M_FROZEN[@]}"
  profile profile_650m_lora "${PROFILE_650M[@]}"
fi

if [[ "$STAGE" == sweep ]]; then
  # ---- torch.compile against eager (650M shape, one budget; the 8M LoRA step) -----------
  run_check throughput_compile "${THROUGHPUT[@]}" "${COMPILE[@]}"
  profile profile_8m_lora_compiled "${PROFILE_8M_LORA[@]}" --compile
  # ---- throughput and memory sweep of the 650M shape, with and without checkpointing ----
  run_check throughput_sweep "${THROUGHPUT[@]}" "${SWEEP[@]}"
  run_check throughput_no_checkpointing "${THROUGHPUT[@]}" "${SWEEP_NO_CKPT[@]}"
fi

if [[ "$STAGE" == results ]]; then
  # Frozen 8M on whole splits (benchmarks.real_data: every threshold objective, the
  # degree baseline and "all positive" beside), SEEDS runs each from SEED on; the quick
  # yeast-random first, then Bernett with what is left of the stage. real_data.py writes
  # its tables after every seed, so a run cut short keeps the seeds it finished; the next
  # call continues with SEED set past them and pools its seeds with those in
  # $WORK/real_*/results.json (on a fresh machine, put the earlier files back there first).
  if [[ "$DRY" == 1 ]]; then
    # real_data.py --dry: splits and baselines only (the yeast cache alone is a CPU hour)
    SIZES=(--train_pairs 300 --valid_pairs 100 --test_pairs 100 --max_residues 256
           --max_tokens 4096 --dry)
    YEAST_EPOCHS=1
  else
    SIZES=(--train_pairs 1000000 --valid_pairs 1000000 --max_residues 1022 --max_tokens 262144)
    YEAST_EPOCHS=2
  fi
  REAL=("$PYTHON" -m benchmarks.real_data --seed "${SEED:-0}" --seeds "${SEEDS:-3}" "${SIZES[@]}")
  run_check yeast_random_frozen_8m "${REAL[@]}" --datasets yeast-random \
    --epochs "$YEAST_EPOCHS" --work_dir "$WORK/real_yeast"
  cat "$WORK/real_yeast/results.md" 2>/dev/null
  run_check bernett_frozen_8m "${REAL[@]}" --datasets bernett --epochs 1 \
    --work_dir "$WORK/real_bernett"
  cat "$WORK/real_bernett/results.md" 2>/dev/null
fi

echo
echo "=== results ($([[ "$DRY" == 1 ]] && echo "DRY: CPU, tiny shape, not a measurement" || echo "GPU"))"
write_table
cat "$WORK/results.md"
if [[ -f "$WORK/lora_layers_650m.log" ]]; then
  echo; echo "lora_layers_650m:"; grep -E '^(\||built once|[^ ]+, crop)' "$WORK/lora_layers_650m.log"
fi
echo "(logs and raw results in $WORK; wall $(( $(date +%s) - START ))s)"
