#!/usr/bin/env bash
# bench/gpu_fused_run.sh: a short GPU-machine session for the fused kernels: build weft with
# CUDA (library and the two GPU benchmarks only), run the CPU/CUDA parity harness (fused
# attention, layer norm and cross-entropy against the composed paths included), then time
# the GPT block and the GEMMs (cuBLASLt, and cublasGemmEx with WEFT_NO_CUBLASLT=1) beside
# PyTorch in the same run. Usage on the device: bash bench/gpu_fused_run.sh (logs under $OUT).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
meson setup build-gpu -Dmpi=disabled -Dcuda=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
ninja -C build-gpu libweft.a bench/bench_transformer_block bench/bench_cuda_ops >"$OUT/build.log" 2>&1 \
  || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
cc -std=c11 -O1 -fopenmp -I include -I build-gpu tests/cuda/test_cuda_parity.c build-gpu/libweft.a -L/usr/local/cuda/lib64 \
   -lcudart -lcublas -lcublasLt -lopenblas -lgomp -lz -lm -lpthread -lstdc++ -o /tmp/cuda_smoke 2>&1 | tail -5
echo "== parity"; timeout 150 /tmp/cuda_smoke > "$OUT/smoke.log" 2>&1; echo "rc=$?"
grep -E "FAIL|sdpa|layer_norm|cross_entropy|matmul|checks" "$OUT/smoke.log" | tail -80
echo "== transformer block, bf16 autocast: weft, then PyTorch eager"
timeout 100 build-gpu/bench/bench_transformer_block --device cuda 2>&1 | tail -2
timeout 100 python3 bench/peer_transformer_block.py 2>&1 | tail -1
echo "== block pieces, fwd+bwd (ms): weft, then PyTorch"
cc -std=c11 -O2 -fopenmp -I include -I build-gpu bench/bench_block_parts.c build-gpu/libweft.a -L/usr/local/cuda/lib64 \
   -lcudart -lcublas -lcublasLt -lopenblas -lgomp -lz -lm -lpthread -lstdc++ -o /tmp/block_parts 2>&1 | tail -5
timeout 100 /tmp/block_parts 2>&1 | tail -2
timeout 100 python3 bench/peer_block_parts.py 2>&1 | tail -1
if command -v nsys >/dev/null && [ "${PROFILE:-1}" = 1 ]; then
  echo "== nsys (weft block, 3 steps): top kernels"
  timeout 120 nsys profile -o /tmp/blk --force-overwrite true build-gpu/bench/bench_transformer_block --device cuda --steps 3 >/dev/null 2>&1
  timeout 60 nsys stats -r cuda_gpu_kern_sum -f csv /tmp/blk.nsys-rep 2>/dev/null | head -25 | cut -c1-220 | tee "$OUT/kern.csv"
fi
echo "== GEMM: weft (cuBLASLt), weft (cublasGemmEx), PyTorch"
timeout 100 build-gpu/bench/bench_cuda_ops | tail -1
WEFT_NO_CUBLASLT=1 timeout 100 build-gpu/bench/bench_cuda_ops | tail -1
timeout 100 python3 bench/peer_cuda_ops.py | tail -1
