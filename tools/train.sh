#!/usr/bin/env bash
# tools/train.sh: install what is needed, build weft, and train the main job: a
# Fashion-MNIST classifier on the CPU. Extra arguments go to the example program.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
if [ ! -f build/build.ninja ]; then meson setup build >/dev/null; fi
ninja -C build >/dev/null
if [ $# -eq 0 ]; then set -- --model mlp --epochs 5; fi
exec build/examples/fashion_mnist "$@"
