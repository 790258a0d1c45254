#!/usr/bin/env bash
# The GPU tests, then every benchmark of BENCHMARKS.md's GPU section, on one H100 or H200:
#
#   bash benchmarks/run_gpu.sh [OUTPUT_DIR]     # default: benchmark-results
#
# OUTPUT_DIR gets environment.md (GPU, driver, versions), gpu-tests.log (pytest tests/gpu) and a table
# per step. The steps run from the most to the least wanted, each under its own time limit and none past
# $BUDGET seconds (default 480; 1800 with QUICK=1), so that a run cut short still yields the first results.
# QUICK=1: the same steps at toy sizes, on any machine (without a GPU the tests are a dry run on the CPU).
# STEPS="gpu-tests compile": only the steps named (gpu-tests train_step evaluation epoch scoring scale
# compile loading); GPU_TESTS: pytest's options for the tests. WHEELS=DIR: first install the wheels in DIR
# (`pip download`ed where there is a package index) into a temporary folder. PYTHON: another interpreter
# than python3. WORK: where generated images and caches go (default: a temporary folder).
set -u
cd "$(dirname "$0")/.."
out=${1:-benchmark-results}
work=${WORK:-$(mktemp -d)}
python=${PYTHON:-python3}
[ "${QUICK:-0}" = 1 ] && budget=${BUDGET:-1800} || budget=${BUDGET:-480}
deadline=$((SECONDS + budget))
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1

if [ -n "${WHEELS:-}" ]; then
    compgen -G "$WHEELS/*.whl" >/dev/null || { echo "run_gpu.sh: no wheels (*.whl) in WHEELS=$WHEELS" >&2; exit 1; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi

run_for() {  # run_for FILE SECONDS COMMAND...: its output into $out/FILE, within its limit and the budget
    local name=$1 limit=$2 left=$((deadline - SECONDS))
    shift 2
    case " ${STEPS:-${name%.*}} " in *" ${name%.*} "*) ;; *) return ;; esac
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, the budget is spent" | tee "$out/$name"
    elif [[ ${name%.*} = scale ]] && ! "$python" -c 'import ray, pyarrow' 2>/dev/null; then
        echo "== $name: skipped, no ray and pyarrow here" | tee "$out/$name"
    else
        [ "$limit" -gt "$left" ] && limit=$left
        echo "== $name (at most $limit s): $*"
        timeout "$limit" "$@" 2>&1 | tee "$out/$name"
    fi
}

step() {  # step NAME SECONDS MODULE [SUB-COMMAND] ARGS...: one benchmark, its table into $out/NAME.md
    run_for "$1.md" "$2" "$python" -m "${@:3}"
}

{
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$python" -c 'import torch, ignite, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
        "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), "ignite", ignite.__version__,
        "GPU", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")'
    "$python" -c 'import ray, pyarrow; print("ray", ray.__version__, "pyarrow", pyarrow.__version__)' 2>/dev/null ||
        echo "no ray or pyarrow"
} 2>&1 | tee "$out/environment.md"

gpu_tests() {
    local dry_run=()
    "$python" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' || dry_run=(env LINEARITYIQA_GPU_TESTS=cpu)
    # the processes' test and Ray's last: a collective or a cluster that hangs would keep the others
    # from running; each test's name is printed as it ends, and a test past 120 s prints where it is
    local last=(tests/gpu/test_cuda_processes.py tests/gpu/test_cuda_ray.py) files=()
    for file in tests/gpu/test_*.py; do [[ " ${last[*]} " != *" $file "* ]] && files+=("$file"); done
    # shellcheck disable=SC2086  # GPU_TESTS holds several of pytest's options
    run_for gpu-tests.log "$1" "${dry_run[@]}" "$python" -m pytest "${files[@]}" "${last[@]}" -v -rA \
        -o log_level=WARNING -o faulthandler_timeout=120 --durations=10 -p no:cacheprovider ${GPU_TESTS:-}
}

if [ "${QUICK:-0}" = 1 ]; then
    gpu_tests 600
    model=(--arch resnet18 --height 64 --width 96)
    step train_step 300 benchmarks.bench_training step "${model[@]}" --warmup 1 --steps 2
    step evaluation 300 benchmarks.bench_training eval "${model[@]}" --images 24 --work-dir "$work"
    step epoch 300 benchmarks.bench_training epoch "${model[@]}" --crop 48 --images 24 --warmup 1 --steps 2 \
        --work-dir "$work"
    small=(--resize_size_h 64 --resize_size_w 96 --width 128 --height 96)
    step scoring 300 benchmarks.bench_demo --archs resnet18 --repeats 1 --images 8 "${small[@]}"
    step scale 300 benchmarks.bench_scale --arch resnet18 --images 8 --small 4 --window 4 "${small[@]}"
    step compile 600 benchmarks.bench_training step "${model[@]}" --warmup 2 --steps 2 --settings fp32 fp32-compile
    step loading 300 benchmarks.bench_training loading --count 24 --width 256 --height 192 --items 20 --work-dir "$work"
    exit 0
fi

gpu_tests 180
step train_step 100 benchmarks.bench_training step --steps 15 \
    --settings fp32 fp32-rn o1 o1-cl o1-cl-rn bf16-cl-rn o1-cl-rn-bs32
step evaluation 60 benchmarks.bench_training eval --images 512 --work-dir "$work"
step epoch 70 benchmarks.bench_training epoch --images 1024 --work-dir "$work"
step scoring 90 benchmarks.bench_demo --archs resnext101_32x8d --repeats 1 --images 512
step scale 90 benchmarks.bench_scale --arch resnext101_32x8d --images 1024 --small 128 --window 128
step compile 150 benchmarks.bench_training step --warmup 3 --steps 15 \
    --settings o1-cl-rn o1-cl-rn-compile o1-cl-rn-graphs
step loading 40 benchmarks.bench_training loading --count 1000 --items 100 --work-dir "$work"
