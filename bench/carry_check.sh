#!/usr/bin/env bash
# bench/carry_check.sh: make .carry/check, Check for the GPU machine (Ubuntu, no Check there):
# Debian's static libcheck_pic and libsubunit with headers and a check.pc that finds them
# wherever the folder lands (${pcfiledir}). Also copies Fashion-MNIST to .data when Debian's
# dataset-fashion-mnist is installed. Then: run(carry [".carry", ".data"], "bash bench/call8.sh").
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download check libsubunit-dev >/dev/null 2>&1) ||
    { echo "carry_check: apt-get download check libsubunit-dev failed" >&2; exit 1; }
for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/x"; done
lib=$(dirname "$(find "$tmp/x" -name libcheck_pic.a | head -1)")
rm -rf .carry/check && mkdir -p .carry/check/include .carry/check/lib/pkgconfig
cp "$tmp"/x/usr/include/check*.h .carry/check/include/
cp "$lib/libcheck_pic.a" "$lib/libsubunit.a" .carry/check/lib/
cat > .carry/check/lib/pkgconfig/check.pc <<'PC'
prefix=${pcfiledir}/../..
libdir=${prefix}/lib
includedir=${prefix}/include

Name: Check
Description: A unit test framework for C (Debian's static libcheck_pic and libsubunit, carried to the GPU machine)
Version: 0.15.2
Libs: -L${libdir} -lcheck_pic -lsubunit -lrt -lm -pthread
Cflags: -I${includedir} -pthread
PC
if [ -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*.gz .data/
fi
echo "carry_check: .carry/check ready$([ -d .data ] && echo ", .data ready")"
