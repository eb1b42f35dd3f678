#!/usr/bin/env bash
# bench/device_run.sh: one GPU-machine session: build weft with CUDA, check CUDA against the
# CPU (every op through tests/ops/test_ops.c), train Fashion-MNIST on the GPU, then time weft beside
# PyTorch (+ Lightning Fabric) in the same run. Data from $DATA (IDX .gz files).
# Usage on the device: DATA=.data bash bench/device_run.sh   (logs under $OUT when set)
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=${DATA:-.data}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
meson setup build-gpu -Dmpi=disabled -Dcuda=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
ninja -C build-gpu >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
# the op harness (tests/ops/test_ops.c): every public op on the CPU and CUDA, with gradients
cc -std=c11 -O1 -fopenmp -I include -I build-gpu -I . tests/ops/test_ops.c tests/ops/op_table.c tests/ops/op_expect.c \
   build-gpu/libweft.a -L/usr/local/cuda/lib64 -lcudart -ldl -lopenblas -lgomp -lz -lm -lpthread -lstdc++ \
   -o /tmp/test_ops 2>&1 | tail -5
echo "== test_ops"; timeout 300 /tmp/test_ops > "$OUT/test_ops.log" 2>&1; echo "rc=$?"; grep -E "^(FAIL|note)" "$OUT/test_ops.log" | head -80; tail -1 "$OUT/test_ops.log"
echo "== fashion_mnist on cuda (32-true, then bf16-mixed), and through Fabric"
timeout 200 build-gpu/examples/fashion_mnist --model mlp --epochs 1 --device cuda --data "$DATA" 2>&1 | tail -1
timeout 200 build-gpu/examples/fashion_mnist --model mlp --epochs 1 --device cuda --precision bf16-mixed --data "$DATA" 2>&1 | tail -1
timeout 200 build-gpu/examples/fashion_mnist --model cnn --epochs 1 --device cuda --data "$DATA" 2>&1 | tail -1
timeout 200 build-gpu/examples/fabric_mnist --model mlp --epochs 1 --device cuda --precision bf16-mixed --data "$DATA" 2>&1 | tail -2
T=${THREADS:-8}
echo "== train step, CPU, $T threads"
# twice each, alternating with the peer: a single pair moves by 10-30% between runs here
for r in 1 2; do
  for m in mlp cnn; do
    steps=1000; [ $m = cnn ] && steps=100
    OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T timeout 120 build-gpu/bench/bench_train_step --model $m --steps $steps 2>&1 | tail -1
    OMP_NUM_THREADS=$T timeout 120 python3 bench/peer_train_step.py --model $m --steps $steps 2>&1 | tail -1
  done
done
echo "== train step, CUDA"
for m in mlp cnn; do
  timeout 120 build-gpu/bench/bench_train_step --model $m --device cuda --steps 300 2>&1 | tail -1
  timeout 120 python3 bench/peer_train_step.py --model $m --device cuda --steps 300 2>&1 | tail -1
  timeout 120 python3 bench/peer_train_step.py --model $m --device cuda --steps 300 --fabric 2>&1 | tail -1
done
echo "== ops (CPU, $T threads)"; OMP_NUM_THREADS=$T timeout 60 build-gpu/bench/bench_ops | tail -1
echo "== GEMM and elementwise (GPU): weft, then PyTorch"
timeout 200 build-gpu/bench/bench_cuda_ops | tail -1
timeout 200 python3 bench/peer_cuda_ops.py | tail -1
echo "== transformer block, bf16 autocast (GPU): weft, then PyTorch eager"
timeout 200 build-gpu/bench/bench_transformer_block --device cuda 2>&1 | tail -1
timeout 200 python3 bench/peer_transformer_block.py 2>&1 | tail -1
echo "== Fabric overhead over the plain loop (CPU, $T threads)"
OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T timeout 120 build-gpu/bench/bench_fabric_overhead 2>&1 | tail -1
echo "== bf16-mixed vs f32 MLP step (CPU, $T threads)"
for r in 1 2; do OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T timeout 120 build-gpu/bench/bench_precision --steps 1000 2>/dev/null | tail -1; done
