#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md's GPU section in one run of about 6 minutes on one H100 or H200.
#
#   bash benchmarks/run_gpu.sh [OUTPUT_DIR]      # tables go to OUTPUT_DIR/*.md (default: benchmark-results)
#   QUICK=1 bash benchmarks/run_gpu.sh           # the same steps at toy sizes, on any machine, in minutes
#   PYTHON=.venv/bin/python bash benchmarks/run_gpu.sh   # another interpreter than python3
#
# The steps run from the most to the least wanted, each under its own time limit, so that a
# borrowed GPU that must be handed back still yields the first tables. Generated images and
# caches go to $WORK (default: a temporary folder), shared by the steps.
set -u
out=${1:-benchmark-results}
work=${WORK:-$(mktemp -d)}
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS MODULE ARGS...: one benchmark, its table into $out/NAME.md
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): ${PYTHON:-python3} -m $*"
    timeout "$limit" "${PYTHON:-python3}" -m "$@" 2>&1 | tee "$out/$name.md"
}

if [ "${QUICK:-0}" = 1 ]; then
    model=(--arch resnet18 --height 64 --width 96)
    step train_step 300 benchmarks.bench_train_step "${model[@]}" --warmup 1 --steps 2
    step evaluation 300 benchmarks.bench_eval "${model[@]}" --images 24 --work-dir "$work"
    step epoch 300 benchmarks.bench_epoch "${model[@]}" --crop 48 --images 24 --warmup 1 --steps 2 --work-dir "$work"
    step loading 300 benchmarks.bench_loading --count 24 --width 256 --height 192 --items 20 --work-dir "$work"
    step compile 600 benchmarks.bench_train_step "${model[@]}" --warmup 2 --steps 2 --settings fp32 fp32-compile
    exit 0
fi

step train_step 130 benchmarks.bench_train_step --steps 15 \
    --settings fp32 fp32-rn o1 o1-cl o1-cl-rn bf16-cl-rn o1-cl-rn-bs32
step evaluation 90 benchmarks.bench_eval --images 512 --work-dir "$work"
step epoch 60 benchmarks.bench_epoch --images 1024 --work-dir "$work"
step loading 80 benchmarks.bench_loading --count 2500 --items 100 --work-dir "$work"
step compile 170 benchmarks.bench_train_step --warmup 3 --steps 15 --settings fp32 o1-cl-rn o1-cl-rn-compile o1-cl-rn-graphs
