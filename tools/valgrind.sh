#!/usr/bin/env bash
# tools/valgrind.sh: the CPU subset (the tensor, autograd, nn and io suites) under valgrind's
# memcheck: invalid reads and writes, uses of uninitialized values, and leaks. A plain build
# without OpenBLAS (its thread pool keeps memory valgrind would report and slows it down; weft's
# own pool runs, its helpers joined at exit; tools/valgrind.supp says what is ignored and why),
# -O2 with debug info so reports name lines. Only the C test programs run under
# valgrind (the Python interop check of the io suite is left out: it would check Python).
# Any error or leak fails its test (valgrind --error-exitcode=1). Ends with the summary of
# meson test. Usage: bash tools/valgrind.sh [extra meson test args]
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq valgrind >/dev/null ||
    { echo "weft: could not install valgrind"; exit 1; }
fi
dir=${WF_VALGRIND_BUILD:-build-valgrind}
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dblas=builtin -Dopenmp=disabled -Dcuda=disabled -Dmpi=disabled -Dnccl=disabled \
    -Dbuildtype=debugoptimized >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
fi
ninja -C "$dir" build.ninja >/dev/null || exit 1
# the suites' compiled tests: "name<TAB>target" per line
list=$(meson introspect --tests "$dir" | python3 -c 'import json, os, sys
for t in json.load(sys.stdin):
    exe = os.path.realpath(t["cmd"][0])
    if {s.split(":")[-1] for s in t["suite"]} & {"tensor", "autograd", "nn", "io"} and \
       exe.startswith(os.path.realpath(sys.argv[1]) + os.sep):
        print(t["name"] + "\t" + os.path.relpath(exe, os.path.realpath(sys.argv[1])))' "$dir")
[ -n "$list" ] || { echo "weft: no test found in the tensor/autograd/nn/io suites"; exit 1; }
# shellcheck disable=SC2046
ninja -C "$dir" $(cut -f2 <<<"$list") >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; exit 1; }
# CK_FORK=no: one process per program (forked children would each be checked for leaks of
# the parent's memory); the timeouts stretched for valgrind's ~30x slowdown.
# shellcheck disable=SC2046
CK_FORK=no meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes "${WF_VALGRIND_JOBS:-2}" \
  --timeout-multiplier 10 \
  --wrapper "valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,possible --num-callers=30 -q --suppressions=$PWD/tools/valgrind.supp" \
  "$@" $(cut -f1 <<<"$list")
