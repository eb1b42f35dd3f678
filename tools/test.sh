#!/usr/bin/env bash
# tools/test.sh: install what is needed, build, and run every test suite:
#  1. the default build (OpenBLAS, OpenMP, MPI, and CUDA code when nvcc is present: CUDA
#     suites report themselves skipped where there is no GPU);
#  2. a minimal build (builtin GEMM, no CUDA/MPI) under AddressSanitizer + UBSan;
#  3. ThreadSanitizer over the suites that run threads;
#  4. the embedded preset (-Dminimal=true): every suite it builds, its example and its
#     library's size limit among them (where the preset has stubs, tests expect their refusals);
#  5. that preset cross-built for aarch64 (tools/cross), a subset of the suites run under
#     qemu-user; reported as skipped, with the reason, when its packages cannot be installed.
# Ends with one line "N passed, M failed, K skipped".
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
  tally_expected "$dir.test.log"
}
# meson's should_fail tests: "Expected Fail" passed, "Unexpected Pass" failed
tally_expected() {
  local xf up
  xf=$(grep -E "^Expected Fail:" "$1" | awk '{print $3}'); up=$(grep -E "^Unexpected Pass:" "$1" | awk '{print $3}')
  passed=$((passed + ${xf:-0})); failed=$((failed + ${up:-0}))
}
# Build only the given targets of a configured dir (none: already built), then run meson test
# with the rest of the arguments, bounded by $step_timeout seconds, and count the results.
run_subset() {
  local dir=$1 targets=$2; shift 2
  if [ -n "$targets" ] && ! ninja -C "$dir" $targets >>"$dir.build.log" 2>&1; then
    tail -50 "$dir.build.log"; failed=$((failed + 1)); return
  fi
  timeout "$step_timeout" meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 "$@" >"$dir.test.log" 2>&1
  local rc=$?
  grep -E "^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):" "$dir.test.log"
  [ $rc -eq 124 ] && { echo "weft: $dir: meson test $* ran past ${step_timeout}s"; failed=$((failed + 1)); }
  local ok fl sk to
  ok=$(grep -E "^Ok:" "$dir.test.log" | awk '{print $2}'); fl=$(grep -E "^Fail:" "$dir.test.log" | awk '{print $2}')
  sk=$(grep -E "^Skipped:" "$dir.test.log" | awk '{print $2}'); to=$(grep -E "^Timeout:" "$dir.test.log" | awk '{print $2}')
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fl:-0} + ${to:-0})); skipped=$((skipped + ${sk:-0}))
  [ -n "$ok" ] || [ $rc -eq 124 ] || failed=$((failed + 1))
  tally_expected "$dir.test.log"
}
# the built programs of the tests in the given suites (and tests named with name:NAME)
test_targets() {   # $1 = build dir, rest = suites
  python3 - "$@" <<'PY'
import json, os, subprocess, sys
d, wanted = os.path.abspath(sys.argv[1]), set(sys.argv[2:])
out = {"libweft.a"}
for t in json.loads(subprocess.check_output(["meson", "introspect", d, "--tests"])):
    if {s.split(":")[-1] for s in t["suite"]} & wanted or "name:" + t["name"] in wanted:
        out |= {os.path.relpath(c, d) for c in t["cmd"] if c.startswith(d + "/")}
print(" ".join(sorted(out)))
PY
}
run_suite build
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run_suite build-asan -Dblas=builtin -Dcuda=disabled -Dmpi=disabled -Dnccl=disabled \
    -Db_sanitize=address,undefined -Dbuildtype=debugoptimized
# 3. ThreadSanitizer over the suites that run threads (meson suite 'threads': the DataLoader's
#    workers, the store server's poll thread, weft's thread pool and the loops on it). Only
#    those tests are built and run. A race fails its test (TSan exits 66).
step_timeout=300
if [ -f build-tsan/build.ninja ] || meson setup build-tsan -Dblas=builtin -Dcuda=disabled -Dmpi=disabled \
     -Dnccl=disabled -Db_sanitize=thread >build-tsan.setup.log 2>&1; then
  TSAN_OPTIONS="second_deadlock_stack=1 history_size=4" \
    run_subset build-tsan "$(test_targets build-tsan threads)" --suite threads
else
  cat build-tsan.setup.log; failed=$((failed + 1))
fi
# 4. the embedded preset, natively: all of it built and every suite run, as a user who builds
#    the preset and runs its tests does: 1.5 to 2.5 minutes beyond the embedded suite alone
#    on a 2-core machine (most of it test_plugins and test_ops on the builtin GEMM)
step_timeout=480
if [ -f build-minimal/build.ninja ] || meson setup build-minimal -Dminimal=true >build-minimal.setup.log 2>&1; then
  run_subset build-minimal all
  grep -h "libweft.a after strip" build-minimal/meson-logs/testlog.txt | sed 's/^/x86-64 minimal: /'
else
  cat build-minimal.setup.log; failed=$((failed + 1))
fi
# 5. aarch64 under qemu-user: tensors, autograd, safetensors and the embedded suite
cross_dir=build-aarch64
if ! bash tools/deps.sh --cross >"$cross_dir.deps.log" 2>&1; then
  echo "weft: aarch64 cross step skipped: its packages could not be installed (tools/deps.sh --cross):"
  tail -5 "$cross_dir.deps.log"
  skipped=$((skipped + 1))
elif [ ! -f "$cross_dir/build.ninja" ] &&
     ! meson setup "$cross_dir" --cross-file tools/cross/aarch64-linux-gnu.ini >"$cross_dir.setup.log" 2>&1; then
  cat "$cross_dir.setup.log"; failed=$((failed + 1))
else
  step_timeout=480
  run_subset "$cross_dir" "$(test_targets "$cross_dir" tensor autograd embedded name:test_safetensors)" \
    --suite tensor --suite autograd --suite embedded
  cp "$cross_dir.test.log" "$cross_dir.test1.log"
  grep -h "libweft.a after strip" "$cross_dir/meson-logs/testlog.txt" | sed 's/^/aarch64 minimal: /'
  step_timeout=120
  run_subset "$cross_dir" "" test_safetensors
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
