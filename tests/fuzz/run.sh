#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build/fuzz and fuzzes each one in turn, in one
# process (no -jobs: the machine is shared), from its committed seed corpus (tests/fuzz/corpus/<target>)
# plus the saved crashes.
#   tests/fuzz/run.sh [-max_total_time=SECONDS | -runs=N] [more libFuzzer flags]   (default -max_total_time=30)
# New corpus entries go to a scratch folder; a crash is written to build/fuzz/artifacts/ and fails the script:
# copy it to tests/fuzz/regressions/<target>/ once fixed, so ctest replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../.."
CXX=${CXX:-clang++}
command -v "$CXX" > /dev/null || { echo "run.sh needs clang (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
CXX=$CXX cmake -S . -B build/fuzz -DEDVR_FAST_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build/fuzz -j"${JOBS:-2}" > /dev/null
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-max_total_time=30)
mkdir -p build/fuzz/artifacts
for target in fuzz_crop_task fuzz_png_banded fuzz_png fuzz_jpeg; do
  [ -x "build/fuzz/$target" ] || { echo "=== $target: not built (library headers missing)" >&2; exit 1; }
  work=$(mktemp -d)
  dict=()
  case $target in
    fuzz_png*) dict=(-dict=tests/fuzz/png.dict) ;;
    fuzz_jpeg) dict=(-dict=tests/fuzz/jpeg.dict) ;;
  esac
  seeds=(tests/fuzz/corpus/$target)
  [ -d "tests/fuzz/regressions/$target" ] && seeds+=("tests/fuzz/regressions/$target")
  echo "=== $target ${flags[*]}"
  set +e
  "build/fuzz/$target" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix=build/fuzz/artifacts/$target- "${dict[@]}" "${flags[@]}" "$work" "${seeds[@]}" \
    > "build/fuzz/$target.log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|cov:" "build/fuzz/$target.log" | tail -3
  rm -rf "$work"
  if [ $rc -ne 0 ] || grep -q "ERROR: libFuzzer\|SUMMARY: .*Sanitizer" "build/fuzz/$target.log"; then
    echo "=== $target FAILED (rc $rc); see build/fuzz/$target.log and build/fuzz/artifacts/" >&2
    grep -E "ERROR|SUMMARY|runtime error" "build/fuzz/$target.log" | head -5 >&2
    exit 1
  fi
done
echo "=== fuzzing: every target ran clean"
