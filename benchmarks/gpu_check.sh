#!/usr/bin/env bash
# The GPU check of SE-CAI on one H100/H200 in four stages, each a plan of rows whose GPU limits
# fit one call of a 10-minute device lease (BENCHMARKS.md, GPU check); $WORK/results.md is
# rewritten after every row, so a stage cut short keeps what it measured.
#
#   [STAGE=tests|speed|sweep|results] bash benchmarks/gpu_check.sh [--dry]
#
# --dry (or DRY=1): every row on the CPU with the tiny shape and a few steps (CI). Env: PYTHON
# (default .venv/bin/python, else python), DATA (../shared/data/bernett-gold), ESM2_8M
# (../shared/models/esm2_t6_8M), WORK (scratch), PLAN_ONLY=1 (print the plan and stop), SEED
# and SEEDS (STAGE=results: SEEDS seeds from SEED; default 3 from 0),
# PPI_DIST_COMPILE_BACKEND (default inductor; eager in --dry).
set -uo pipefail

DRY="${DRY:-0}"
STAGE="${STAGE:-tests}"
for arg in "$@"; do
  if [[ "$arg" == --dry ]]; then DRY=1; else echo "unknown argument: $arg (only --dry)" >&2; exit 2; fi
done

# Every stage's rows in the order they run (most important first), with their GPU limits.
PLAN_TABLE="
tests gpu_tests 140
tests profile_650m_lora 55
tests profile_8m_frozen 35
tests trainer_8m_lora 90
tests trainer_8m_frozen 90
speed attention_sdpa 80
speed lora_layers_650m 60
speed attention_varlen 60
speed attention_cudnn 60
speed attention_flex 80
speed cross_attention_varlen 60
speed profile_8m_lora 30
speed profile_8m_frozen 25
speed profile_650m_lora 40
sweep throughput_compile 130
sweep profile_8m_lora_compiled 60
sweep throughput_sweep 130
sweep throughput_no_checkpointing 80
results yeast_random_frozen_8m 200
results bernett_frozen_8m 300
"
BUDGET=555  # seconds a stage may take on the GPU (one call of a 10-minute lease)
SETUP=30    # versions, imports, the sampled pair file, the final table
declare -A GPU_LIMIT=()
PLAN=()
PLANNED=0
while read -r stage name limit; do
  if [[ "$stage" == "$STAGE" ]]; then
    PLAN+=("$name"); GPU_LIMIT[$name]=$limit; PLANNED=$(( PLANNED + limit ))
  fi
done <<<"$PLAN_TABLE"
if (( ${#PLAN[@]} == 0 )); then
  echo "unknown STAGE=$STAGE (tests, speed, sweep or results)" >&2; exit 2
fi
echo "=== plan (STAGE=$STAGE; GPU limits in seconds, in the order they run)"
for name in "${PLAN[@]}"; do printf '  %-30s %4d\n' "$name" "${GPU_LIMIT[$name]}"; done
echo "  total $PLANNED + set-up $SETUP = $(( PLANNED + SETUP )) of the budget $BUDGET"
if (( PLANNED + SETUP > BUDGET )); then
  echo "the plan of STAGE=$STAGE does not fit its budget" >&2; exit 1
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
STATUS="$WORK/status.tsv"       # check, status, seconds, note
COMMANDS="$WORK/commands.tsv"   # check, the command it ran
: >"$STATUS"; : >"$COMMANDS"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)

note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STATUS"; }
SHOWN='^(\||trunk cache:|embedding cache:)'  # what results.md keeps of a row's log
# $WORK/results.md: each row's status, then the tables (and cache lines) of each row's log,
# then the commands.
write_table() {
  {
    printf '| check | status | seconds | note |\n| --- | --- | --- | --- |\n'
    while IFS=$'\t' read -r name state seconds text; do
      printf '| %s | %s | %s | %s |\n' "$name" "$state" "$seconds" "$text"
    done <"$STATUS"
    for name in "${PLAN[@]}"; do
      if grep -qE "$SHOWN" "$WORK/$name.log" 2>/dev/null; then
        printf '\n%s:\n' "$name"; grep -E "$SHOWN" "$WORK/$name.log"
      fi
    done
    printf '\ncommands:\n'; sed -E 's/^([^\t]*)\t/  \1: /' "$COMMANDS"
  } >"$WORK/results.md"
}

# run_check NAME CMD...: run under the row's limit (DRY_LIMIT in --dry; cut to what is left
# of STAGE_BUDGET, skipped under 15 s), log to $WORK/NAME.log, note OK or FAIL, rewrite the table.
run_check() {
  local name="$1"; shift
  local log="$WORK/$name.log" limit=${GPU_LIMIT[$name]} start rc
  if [[ "$DRY" == 1 ]]; then limit=$DRY_LIMIT; fi
  printf '%s\t%s\n' "$name" "$*" >>"$COMMANDS"
  if (( STAGE_BUDGET > 0 )); then
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

echo "=== versions ($STAGE$([[ "$DRY" == 1 ]] && echo ", dry"))"
date -u
"$PYTHON" -m ppi_dist.training.machine
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ "$DRY" != 1 ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA GPU visible to torch; use --dry on a CPU machine" >&2
  exit 1
fi

if [[ "$DRY" == 1 ]]; then
  # The dry run checks that the flags reach the model and its graphs are captured (the
  # "eager" compile backend); tests/models/test_compile.py checks the gradients.
  DEVICE=cpu SHAPE=tiny STAGE_BUDGET="${STAGE_BUDGET:-0}" DRY_LIMIT=300
  export PPI_DIST_COMPILE_BACKEND="${PPI_DIST_COMPILE_BACKEND:-eager}"
  FEW=(--num_pairs 4 --sort_buffer 64 --repeats 1 --warmup 1 --fixed_length 60)
  SWEEP=(--max_tokens 2048 4096 "${FEW[@]}" --baseline_batch_size 4)
  SWEEP_NO_CKPT=(--max_tokens 2048 "${FEW[@]}" --no_baseline --activation_checkpointing false)
  COMPILE=(--max_tokens 2048 "${FEW[@]}" --no_baseline --compile)
  KERNELS=(--max_tokens 2048 "${FEW[@]}" --baseline_batch_size 4)
  LORA_LAYERS=(--lora_layers 1 --max_residues 64 --max_tokens 2048 --sort_buffer 64
               --batches 1 --repeats 1 --warmup 1 --fixed_length 60 --mixed_precision no)
  PROFILE_650M=(--dry --num_pairs 4 --repeats 1 --profile_steps 2)  # tiny, on the CPU
  PROFILE_8M_LORA=("${PROFILE_650M[@]}")
  PROFILE_8M_FROZEN=("${PROFILE_650M[@]}" --freeze_encoder true)
  SUBSET_TRAIN=400 SUBSET_EVAL=100 LORA_STEPS=3 FROZEN_STEPS=3 LORA_TOKENS=2048 FROZEN_TOKENS=4096
  # Crops of 256: the frozen run's cache of whole proteins would be most of a CPU's time.
  MODEL_ARGS=(--encoder_shape tiny --mixed_precision no --max_residues 256)
  SIZES=(--train_pairs 300 --valid_pairs 100 --test_pairs 100 --max_residues 256
         --max_tokens 4096 --dry)  # real_data.py --dry: splits and baselines only
  YEAST_EPOCHS=1
else
  DEVICE=cuda SHAPE=650M STAGE_BUDGET="${STAGE_BUDGET:-$BUDGET}" DRY_LIMIT=0
  # Checkpointing said explicitly: its default is on with CUDA.
  BF16=(--mixed_precision bf16 --activation_checkpointing true)
  MANY=(--num_pairs 128 --repeats 2 --warmup 1)
  SWEEP=(--max_tokens 32768 65536 131072 "${MANY[@]}" --baseline_batch_size 8 "${BF16[@]}"
         --encoder_attention sdpa)
  SWEEP_NO_CKPT=(--max_tokens 32768 65536 "${MANY[@]}" --no_baseline --mixed_precision bf16
                 --activation_checkpointing false --encoder_attention sdpa)
  COMPILE=(--max_tokens 65536 --num_pairs 64 --repeats 2 --warmup 1 --no_baseline --compile
           "${BF16[@]}" --encoder_attention sdpa)
  KERNELS=(--max_tokens 65536 "${MANY[@]}" --baseline_batch_size 8 "${BF16[@]}")
  # The last 8 of 33 layers (the peft_proteomics recipe) at crops of 1,022.
  LORA_LAYERS=(--lora_layers 8 --max_residues 1022 --max_tokens 32768 --sort_buffer 256
               --batches 2 --repeats 2 --warmup 1 "${BF16[@]}")
  # Profiles: 2 or 5 timed steps (--num_pairs of whole batches), then as many profiled.
  PROFILE_650M=(--encoder_shape 650M --max_tokens 65536 --sort_buffer 1024 --warmup 2
                --num_pairs 64 --repeats 1 --profile_steps 2 "${BF16[@]}")
  STEPS_8M=(--warmup 3 --repeats 1 --profile_steps 5 --mixed_precision bf16)
  PROFILE_8M_LORA=(--encoder "$ESM2_8M" --max_tokens 32768 --sort_buffer 2048 --num_pairs 128
                   "${STEPS_8M[@]}" --activation_checkpointing false)
  PROFILE_8M_FROZEN=(--encoder "$ESM2_8M" --max_tokens 262144 --sort_buffer 2048
                     --num_pairs 750 "${STEPS_8M[@]}" --freeze_encoder true)
  # Trainer runs of 60 s did not reach the end of a final evaluation of 2,000 pairs.
  SUBSET_TRAIN=40000 SUBSET_EVAL=1000 LORA_STEPS=150 FROZEN_STEPS=300 LORA_TOKENS=32768
  FROZEN_TOKENS=262144
  MODEL_ARGS=(--encoder "$ESM2_8M" --mixed_precision bf16)
  SIZES=(--train_pairs 1000000 --valid_pairs 1000000 --max_residues 1022 --max_tokens 262144)
  YEAST_EPOCHS=2
fi
# The pair file the throughput and profile rows sample from (--dry: its first 1,000 pairs).
SAMPLED="$DATA/train.tsv"
if [[ "$DRY" == 1 ]]; then
  SAMPLED="$WORK/train_head.tsv"
  head -n 1001 "$DATA/train.tsv" >"$SAMPLED"
fi
SAMPLE=(--device "$DEVICE" --pairs "$SAMPLED" --fasta "$DATA/sequences.fasta")
STEP_TIMER=("$PYTHON" -m benchmarks.throughput "${SAMPLE[@]}")
THROUGHPUT=("${STEP_TIMER[@]}" --encoder_shape "$SHAPE")
PROFILE=("${STEP_TIMER[@]}" --no_baseline)
TRAIN=("$PYTHON" ppi_dist/train.py --report_to none --plots false --seed 0 --log_every 10
       --data_workers 2 "${MODEL_ARGS[@]}" --train_file "$WORK/train_subset.tsv"
       --valid_file "$WORK/valid_subset.tsv" --fasta "$DATA/sequences.fasta" --eval_every 100000)
REAL=("$PYTHON" -m benchmarks.real_data --seed "${SEED:-0}" --seeds "${SEEDS:-3}" "${SIZES[@]}")
PARALLEL=()  # several GPU tests at once where pytest-xdist is installed
if [[ "$DRY" != 1 ]] && "$PYTHON" -c "import xdist" 2>/dev/null; then PARALLEL=(-n 4); fi

# The command of one row of the plan, into CMD.
command_of() {
  local name="$1"
  case "$name" in
    gpu_tests) CMD=("$PYTHON" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider
                    "${PARALLEL[@]}") ;;
    profile_650m_lora) CMD=("${PROFILE[@]}" "${PROFILE_650M[@]}") ;;
    profile_8m_lora) CMD=("${PROFILE[@]}" "${PROFILE_8M_LORA[@]}") ;;
    profile_8m_lora_compiled) CMD=("${PROFILE[@]}" "${PROFILE_8M_LORA[@]}" --compile) ;;
    profile_8m_frozen) CMD=("${PROFILE[@]}" "${PROFILE_8M_FROZEN[@]}") ;;
    trainer_8m_lora) CMD=("${TRAIN[@]}" --max_steps "$LORA_STEPS" --max_tokens "$LORA_TOKENS"
                          --output_dir "$WORK/lora8m") ;;
    trainer_8m_frozen) CMD=("${TRAIN[@]}" --freeze_encoder true --max_steps "$FROZEN_STEPS"
                            --max_tokens "$FROZEN_TOKENS" --embedding_cache "$WORK/cache8m"
                            --output_dir "$WORK/frozen8m") ;;
    attention_sdpa) CMD=("${THROUGHPUT[@]}" "${KERNELS[@]}" --encoder_attention sdpa) ;;
    attention_*) CMD=("${THROUGHPUT[@]}" "${KERNELS[@]}" --no_baseline
                      --encoder_attention "${name#attention_}") ;;
    cross_attention_varlen) CMD=("${THROUGHPUT[@]}" "${KERNELS[@]}" --no_baseline
                                 --encoder_attention varlen --cross_attention_kernel varlen) ;;
    lora_layers_650m) CMD=("$PYTHON" -m benchmarks.lora_layers --encoder_shape "$SHAPE"
                           "${SAMPLE[@]}" "${LORA_LAYERS[@]}") ;;
    throughput_compile) CMD=("${THROUGHPUT[@]}" "${COMPILE[@]}") ;;
    throughput_sweep) CMD=("${THROUGHPUT[@]}" "${SWEEP[@]}") ;;
    throughput_no_checkpointing) CMD=("${THROUGHPUT[@]}" "${SWEEP_NO_CKPT[@]}") ;;
    yeast_random_frozen_8m) CMD=("${REAL[@]}" --datasets yeast-random --epochs "$YEAST_EPOCHS"
                                 --work_dir "$WORK/real_yeast") ;;
    bernett_frozen_8m) CMD=("${REAL[@]}" --datasets bernett --epochs 1
                            --work_dir "$WORK/real_bernett") ;;
    *) echo "internal: no command for $name" >&2; exit 1 ;;
  esac
}

if [[ "$STAGE" == tests ]]; then
  head -n $((SUBSET_TRAIN + 1)) "$DATA/train.tsv" >"$WORK/train_subset.tsv"
  head -n $((SUBSET_EVAL + 1)) "$DATA/valid.tsv" >"$WORK/valid_subset.tsv"
fi
# STAGE=results: real_data.py keeps every run in $WORK/real_*; the same call again continues
# where one stopped, and SEED past them adds seeds to its tables.
for name in "${PLAN[@]}"; do
  command_of "$name"
  run_check "$name" "${CMD[@]}"
  case "$name" in
    trainer_8m_lora) "$PYTHON" -m benchmarks.gpu_report \
      "8M LoRA, max_tokens $LORA_TOKENS" "$WORK/lora8m" >>"$WORK/$name.log"; write_table ;;
    trainer_8m_frozen) "$PYTHON" -m benchmarks.gpu_report \
      "8M frozen (cache), max_tokens $FROZEN_TOKENS" "$WORK/frozen8m" >>"$WORK/$name.log"
      write_table ;;
    yeast_random_frozen_8m) cat "$WORK/real_yeast/results.md" 2>/dev/null ;;
    bernett_frozen_8m) cat "$WORK/real_bernett/results.md" 2>/dev/null ;;
  esac
done

echo
echo "=== results ($([[ "$DRY" == 1 ]] && echo "DRY: CPU, tiny shape, not a measurement" || echo "GPU"))"
write_table
cat "$WORK/results.md"
echo "(logs and raw results in $WORK; wall $(( $(date +%s) - START ))s)"
