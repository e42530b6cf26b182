#!/usr/bin/env bash
# GPU verification in one call, in parts that each fit a 6-minute slot on an H100/H200 (16 cores):
#   bash benchmarks/device_check.sh OUTDIR [dcn|model|loader|all]      (default: all)
#   dcn     build; tests/ops on the GPU, again with EDVR_FAST_DCN_KERNEL=nhwc (the opt-in NHWC CUDA kernel);
#           compute-sanitizer memcheck of a small case with both CUDA kernels; benchmarks/test_bench_dcn.py -k cuda
#           (rows: ours = the column kernel, nhwc, torchvision, conv2d)
#   model   build; benchmarks/test_bench_model.py -k cuda; training (bf16 + channels_last, torch.compile, NCCL)
#           and inference on the GPU
#   loader  build; the loader's GPU tests and its benchmark on two cores
# Log, JSON summary and status into OUTDIR; the ratio table (ours/conv2d, torchvision/ours per row) last.
# Without a GPU it runs the CPU-side parts (build, the tests, benchmark collection) as a dry run. Exit status 1
# when a step failed (the summary names them).
set -u -o pipefail
OUT=${1:?usage: device_check.sh OUTDIR [dcn|model|loader|all]}
PART=${2:-all}
case "$PART" in dcn|model|loader|all) ;; *) echo "device_check.sh: unknown part '$PART' (dcn, model, loader, all)" >&2; exit 2;; esac
want() { [ "$PART" = all ] || [ "$PART" = "$1" ]; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/device_check.log"
: > "$OUT/status.txt"
: > "$LOG"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
FAILED=()
finish() {  # the summary and its table last; exit status 1 when a step failed
  $PY benchmarks/device_summary.py "$OUT" 2>&1 | tee -a "$LOG"
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "=== device_check.sh: FAILED steps: ${FAILED[*]}" | tee -a "$LOG"
    exit 1
  fi
  exit 0
}
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit code and time in status.txt
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || FAILED+=("$name")
  echo "$name rc=$rc ${name}_s=$((SECONDS - t0))" >> "$OUT/status.txt"
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
}
skip() {  # skip NAME REASON
  echo "=== $1: skipped ($2)" | tee -a "$LOG"
  echo "$1 skipped ($2)" >> "$OUT/status.txt"
}

echo "=== device_check.sh part=$PART $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)" | tee -a "$LOG"
{ nvidia-smi -L; $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"; } \
  2>&1 | tee -a "$LOG"
HAVE_GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$HAVE_GPU" = 1 ]; then
  ARCH=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
else
  ARCH=9.0
  echo "=== no GPU: dry run of the CPU-side parts" | tee -a "$LOG"
fi
# The lent machine's image sets CXX/CC to a GCC with only a static libstdc++, which setup.py refuses (its
# private C++ runtime crashes on C++ error messages): fall back to the system compiler there.
for var in CXX CC; do
  if [ -n "${!var:-}" ] && [[ "$(${!var} -print-file-name=libstdc++.so)" != /* ]]; then
    echo "=== $var=${!var} has no shared libstdc++: using the system g++/gcc" | tee -a "$LOG"
    export CXX=g++ CC=gcc
  fi
done
rm -f edvr_fast/_C*.so
# BUILD_TIMEOUT: a 2-core machine's dry run needs more than the GPU machine's 400 s.
step build "${BUILD_TIMEOUT:-400}" env TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-16}" $PY setup.py -q \
  build_ext --inplace
if ! ls edvr_fast/_C*.so >/dev/null 2>&1; then  # the tests would only skip: stop here
  echo "=== no edvr_fast/_C*.so after the build: stopping" | tee -a "$LOG"
  FAILED+=(build)
  finish
fi
PYTEST=($PY -m pytest -q -p no:cacheprovider -rs)
bench() {  # bench NAME TIMEOUT_S FILE [pytest args]: the file's CUDA cases (collection only without a GPU)
  local name=$1 limit=$2 file=$3; shift 3
  local args=(-k cuda)
  if [ "$HAVE_GPU" = 1 ]; then args+=(--benchmark-json="$OUT/$name.json"); else args+=(--benchmark-disable); fi
  EDVR_FAST_BENCH_SUMMARY="$OUT/ratios_$name.json" step "$name" "$limit" "${PYTEST[@]}" "$file" "${args[@]}" "$@"
}

if want dcn; then
  if [ "$HAVE_GPU" = 1 ]; then
    step tests 240 "${PYTEST[@]}" tests/ops --junitxml="$OUT/tests.xml"
    # The opt-in NHWC CUDA kernel through the CUDA cases of the operator suite too (random shapes, batch 1 and
    # 80, gradcheck, torchvision parity, opcheck, autocast, deterministic mode); tests/ops/test_nhwc_cuda_kernel.py
    # (parity in fp32/TF32/bf16/fp16, both layouts) ran in the step above.
    EDVR_FAST_DCN_KERNEL=nhwc step tests_nhwc 150 "${PYTEST[@]}" tests/ops/test_kernels.py \
      -k "cuda or deterministic_mode" --junitxml="$OUT/tests_nhwc.xml"
  else
    # CPU side: the whole operator suite on the CPU kernels (the GPU tests skip, with their reason).
    step tests 600 "${PYTEST[@]}" tests/ops --junitxml="$OUT/tests.xml"
  fi
  if [ "$HAVE_GPU" = 1 ] && command -v compute-sanitizer >/dev/null; then
    step sanitizer 150 compute-sanitizer --tool memcheck --error-exitcode 7 $PY benchmarks/sanitizer_case.py
  else
    skip sanitizer "no GPU or no compute-sanitizer"
  fi
  # Fewer rounds than the file's default, so that the part fits its slot (each round is 20 calls).
  EDVR_FAST_BENCH_CUDA_ROUNDS=${EDVR_FAST_BENCH_CUDA_ROUNDS:-5} bench bench_dcn 240 benchmarks/test_bench_dcn.py
fi

if want model; then
  bench bench_model 200 benchmarks/test_bench_model.py
  if [ "$HAVE_GPU" = 1 ]; then
    # A short training run with bf16 autocast + channels_last, one with torch.compile, NCCL through torchrun,
    # inference with the trained model.
    export EDVR_FAST_CACHE=${EDVR_FAST_CACHE:-/tmp/edvr_fast_cache}
    RUN="/tmp/edvr_gpu_run"
    rm -rf "$RUN" "$RUN"_*
    step train_gpu 120 $PY -m edvr_fast.train --out "$RUN" --no-progress --set train.device=cuda \
      --set train.bf16=true --set train.channels_last=true
    step train_compile 90 $PY -m edvr_fast.train --iters 40 --out "${RUN}_compile" --no-progress \
      --set train.device=cuda --set train.compile=true --set val.every=0
    step train_nccl 60 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m edvr_fast.train \
      --iters 20 --out "${RUN}_nccl" --no-progress --set train.device=cuda --set val.every=0
    INFER=$(grep -m1 '^inference:' "$LOG" | sed 's/^inference: *//')
    if [ -n "$INFER" ]; then
      step infer_gpu 60 $PY -m ${INFER#python -m } --device cuda
    else
      skip infer_gpu "the training run printed no inference command"
    fi
    cp "$RUN/log.jsonl" "$OUT/train_gpu_log.jsonl" 2>/dev/null
  else
    skip train_gpu "no GPU"
  fi
fi

if want loader; then
  if [ "$HAVE_GPU" = 1 ]; then
    export EDVR_FAST_CACHE=${EDVR_FAST_CACHE:-/tmp/edvr_fast_cache}
    step loader_gpu 120 "${PYTEST[@]}" tests/loader -k "pinned or cuda"
    # On two of the cores (the issue's target: feed a GPU from two CPU cores), with the reference's
    # DataLoader pinning memory as it does on a CUDA machine.
    TWO_CORES=(); command -v taskset >/dev/null && TWO_CORES=(taskset -c 0,1 env OMP_NUM_THREADS=2)
    EDVR_FAST_BENCH_SUMMARY="$OUT/ratios_bench_loader.json" step bench_loader 240 "${TWO_CORES[@]}" \
      "${PYTEST[@]}" benchmarks/test_bench_loader.py --benchmark-json="$OUT/bench_loader.json"
  else
    skip loader_gpu "no GPU"
  fi
fi

finish
