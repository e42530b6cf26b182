#!/usr/bin/env bash
# GPU verification in one call: build the extension, run the GPU tests, compute-sanitizer memcheck on
# a small case, the GPU benchmarks; JSON summary + log into OUTDIR; a short table printed last.
#   bash benchmarks/device_check.sh OUTDIR        (about 5 minutes on an H100/H200 with 16 cores)
# Without a GPU it runs its CPU-side parts (build, CPU tests, benchmark collection) as a dry run.
set -u -o pipefail
OUT=${1:?usage: device_check.sh OUTDIR}
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
declare -A STATUS
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, remember the exit code
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  STATUS[$name]="rc=$rc ${name}_s=$((SECONDS - t0))"
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
}

{ nvidia-smi -L; $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"; } \
  2>&1 | tee -a "$LOG"
HAVE_GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$HAVE_GPU" = 1 ]; then
  ARCH=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
else
  ARCH=9.0
fi
rm -f edvr_fast/_C*.so
step build 400 env TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-16}" $PY setup.py -q build_ext --inplace
step tests 300 $PY -m pytest tests/ops -q -p no:cacheprovider -rs --junitxml="$OUT/tests.xml"
BENCH_ARGS=(-k "cuda" --benchmark-json="$OUT/bench.json")
[ "$HAVE_GPU" = 1 ] || BENCH_ARGS=(--benchmark-disable)
EDVR_FAST_BENCH_SUMMARY="$OUT/ratios.json" step bench 300 $PY -m pytest benchmarks/test_bench_dcn.py -q \
  -p no:cacheprovider "${BENCH_ARGS[@]}"
if [ "$HAVE_GPU" = 1 ] && command -v compute-sanitizer >/dev/null; then
  step sanitizer 120 compute-sanitizer --tool memcheck --error-exitcode 7 $PY benchmarks/sanitizer_case.py
else
  echo "=== sanitizer: skipped (no GPU or no compute-sanitizer)" | tee -a "$LOG"; STATUS[sanitizer]="skipped"
fi
{
  for k in "${!STATUS[@]}"; do echo "$k ${STATUS[$k]}"; done
} > "$OUT/status.txt"
$PY benchmarks/device_summary.py "$OUT" 2>&1 | tee -a "$LOG"
