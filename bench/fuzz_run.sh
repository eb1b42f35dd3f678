#!/usr/bin/env bash
# bench/fuzz_run.sh: run every libFuzzer target of tests/fuzz/ for N executions each and
# print, per target, the executions, exec/s and the crashes found.
#
#     bash bench/fuzz_run.sh [N]          # N executions per target (default 10000000)
#
# Needs clang with libFuzzer (Debian: apt-get install clang; clang 14 works) plus meson,
# ninja and zlib; it builds the fuzzers itself in build-fuzz/ (CC=clang, -Dfuzz=true), so it
# works from a fresh clone. Each target runs as nproc parallel libFuzzer jobs (-jobs and
# -workers = nproc, or FUZZ_JOBS), each doing N/jobs executions from a working copy of
# tests/fuzz/corpus/<target> (the committed corpus is not touched). Findings (crash-*,
# leak-*, timeout-*, oom-*) land in $FUZZ_OUT/<target>/artifacts (default
# build-fuzz/fuzz-out); the job logs beside them. Exit status 1 when anything was found.
#   FUZZ_TARGETS="json idx"   only these targets
#   FUZZ_JOBS=16              parallel jobs per target
#   FUZZ_MAX_LEN=8192         the largest input libFuzzer makes (bytes)
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
BUILD=${FUZZ_BUILD:-build-fuzz}
OUT=${FUZZ_OUT:-$BUILD/fuzz-out}
JOBS=${FUZZ_JOBS:-$(nproc)}
MAX_LEN=${FUZZ_MAX_LEN:-8192}
TARGETS=${FUZZ_TARGETS:-$(ls tests/fuzz/corpus)}

command -v clang >/dev/null || { echo "fuzz_run.sh: clang is needed (apt-get install clang)"; exit 2; }
mkdir -p "$BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzz=true -Dblas=builtin -Dcuda=disabled -Dmpi=disabled \
    -Dnccl=disabled -Dopenmp=disabled >"$BUILD/fuzz-setup.log" 2>&1 || { cat "$BUILD/fuzz-setup.log"; exit 2; }
fi
bins=()
for t in $TARGETS; do bins+=("tests/fuzz/fuzz_$t"); done
# only the fuzzers (and the instrumented library they link), not the whole project
ninja -C "$BUILD" "${bins[@]}" >"$BUILD/fuzz-build.log" 2>&1 || { tail -40 "$BUILD/fuzz-build.log"; exit 2; }

OUT=$(realpath -m "$OUT")
BIN=$(realpath -m "$BUILD/tests/fuzz")
per_job=$(( (N + JOBS - 1) / JOBS ))
export OMP_NUM_THREADS=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
printf "%-20s %14s %10s %9s %8s\n" target executions exec/s seconds crashes
found=0
for t in $TARGETS; do
  dir="$OUT/$t"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/logs"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null
  start=$(date +%s.%N)
  # -jobs: this many fuzzing processes in all, -workers at a time; each logs to fuzz-<i>.log
  # in the current folder, hence the cd
  # -malloc_limit_mb: no input of a few KB needs a 256 MB block; a bigger one is reported
  # as an unbounded allocation
  (cd "$dir/logs" && "$BIN/fuzz_$t" -jobs="$JOBS" -workers="$JOBS" -runs="$per_job" \
      -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 \
      -artifact_prefix="$dir/artifacts/" "$dir/corpus" >/dev/null 2>&1)
  end=$(date +%s.%N)
  execs=$(cat "$dir"/logs/fuzz-*.log 2>/dev/null | awk '/stat::number_of_executed_units:/ { s += $2 } END { print s + 0 }')
  crashes=$(find "$dir/artifacts" -type f | wc -l)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? e / s : 0) }')
  printf "%-20s %14s %10s %9s %8s\n" "$t" "$execs" "$rate" "$secs" "$crashes"
  [ "$crashes" -eq 0 ] || { found=1; find "$dir/artifacts" -type f | sed 's/^/    /'; }
done
exit $found
