#!/usr/bin/env bash
# tools/test.sh: install what is needed, build, and run every test suite:
#  1. the default build (OpenBLAS, OpenMP, MPI, and CUDA code when nvcc is present: CUDA
#     suites report themselves skipped where there is no GPU);
#  2. a minimal build (builtin GEMM, no CUDA/MPI) under AddressSanitizer + UBSan.
# Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh || exit 1
# Python readers used by interop tests (safetensors, TensorBoard); those tests skip with a
# message when the packages cannot be installed.
if ! python3 -c "import safetensors, numpy, tensorboard" 2>/dev/null; then
  python3 -m pip install -q safetensors numpy tensorboard 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages safetensors numpy tensorboard 2>/dev/null ||
    echo "weft: could not install the Python packages safetensors/numpy/tensorboard; their checks will skip"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
passed=0; failed=0; skipped=0
run_suite() {   # $1 = build dir, rest = meson setup options
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
  fi
  ninja -C "$dir" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; failed=$((failed + 1)); return; }
  meson test -C "$dir" --print-errorlogs --num-processes 2 2>&1 | tee "$dir.test.log" | grep -E "^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):"
  local ok fl sk to
  ok=$(grep -E "^Ok:" "$dir.test.log" | awk '{print $2}'); fl=$(grep -E "^Fail:" "$dir.test.log" | awk '{print $2}')
  sk=$(grep -E "^Skipped:" "$dir.test.log" | awk '{print $2}'); to=$(grep -E "^Timeout:" "$dir.test.log" | awk '{print $2}')
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fl:-0} + ${to:-0})); skipped=$((skipped + ${sk:-0}))
  [ -n "$ok" ] || failed=$((failed + 1))
}
run_suite build
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run_suite build-asan -Dblas=builtin -Dcuda=disabled -Dmpi=disabled -Dnccl=disabled \
    -Db_sanitize=address,undefined -Dbuildtype=debugoptimized

# 3. ThreadSanitizer over the suites that run threads (meson suite 'threads': the DataLoader's
#    workers, the store server's poll thread). OpenMP is off there (libgomp is not
#    instrumented, so its own synchronization would read as races), and only those tests are
#    built and run: a few minutes on 2 cores. A race fails its test (TSan exits 66).
tsan_threads() {
  local dir=build-tsan targets ok fl sk to
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dblas=builtin -Dcuda=disabled -Dmpi=disabled -Dnccl=disabled -Dopenmp=disabled \
      -Db_sanitize=thread >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
  fi
  ninja -C "$dir" build.ninja >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; failed=$((failed + 1)); return; }
  targets=$(meson introspect --tests "$dir" | python3 -c 'import json, os, sys
for t in json.load(sys.stdin):
    if any(s.split(":")[-1] == "threads" for s in t["suite"]):
        print(os.path.relpath(t["cmd"][0], sys.argv[1]))' "$dir")
  [ -n "$targets" ] || { echo "weft: no test in suite 'threads'"; failed=$((failed + 1)); return; }
  # shellcheck disable=SC2086
  ninja -C "$dir" $targets >>"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; failed=$((failed + 1)); return; }
  TSAN_OPTIONS="second_deadlock_stack=1 history_size=4" \
    meson test -C "$dir" --no-rebuild --suite threads --print-errorlogs --num-processes 2 2>&1 |
    tee "$dir.test.log" | grep -E "^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):"
  ok=$(grep -E "^Ok:" "$dir.test.log" | awk '{print $2}'); fl=$(grep -E "^Fail:" "$dir.test.log" | awk '{print $2}')
  sk=$(grep -E "^Skipped:" "$dir.test.log" | awk '{print $2}'); to=$(grep -E "^Timeout:" "$dir.test.log" | awk '{print $2}')
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fl:-0} + ${to:-0})); skipped=$((skipped + ${sk:-0}))
  [ -n "$ok" ] || failed=$((failed + 1))
}
tsan_threads

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
