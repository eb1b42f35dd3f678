#!/usr/bin/env bash
# bench/gpu_fused_run.sh: a short GPU-machine session for the fused kernels: build weft with
# CUDA (library and the two GPU benchmarks only), run the op harness on CUDA (tests/ops: fused
# attention, layer norm and cross-entropy against the CPU's composed paths included), then time
# the GPT block and the GEMMs (cuBLASLt, and cublasGemmEx with WEFT_NO_CUBLASLT=1) beside
# PyTorch in the same run, and trace the block's kernels on both sides (bench/ktrace.c).
# Usage on the device: bash bench/gpu_fused_run.sh (logs under $OUT); PROFILE=0 skips the
# trace, GEMM=0 the GEMM timings, AB=1 adds a same-run A/B of the wgmma attention kernels.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
meson setup build-gpu -Dmpi=disabled -Dcuda=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
ninja -C build-gpu libweft.a bench/bench_transformer_block bench/bench_cuda_ops >"$OUT/build.log" 2>&1 \
  || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
cc -std=c11 -O1 -fopenmp -I include -I build-gpu -I . tests/ops/test_ops.c tests/ops/op_table.c tests/ops/op_expect.c \
   build-gpu/libweft.a -L/usr/local/cuda/lib64 -lcudart -ldl -lopenblas -lgomp -lz -lm -lpthread -lstdc++ \
   -o /tmp/test_ops 2>&1 | tail -5
echo "== op harness on CUDA"; timeout 200 /tmp/test_ops --device cuda > "$OUT/test_ops.log" 2>&1; echo "rc=$?"
grep -E "^FAIL" "$OUT/test_ops.log" | head -80; tail -1 "$OUT/test_ops.log"
echo "== transformer block, bf16 autocast: weft, then PyTorch eager"
timeout 100 build-gpu/bench/bench_transformer_block --device cuda 2>&1 | tail -2
timeout 100 python3 bench/peer_transformer_block.py 2>&1 | tail -1
echo "== block pieces, fwd+bwd (ms): weft, then PyTorch"
ninja -C build-gpu bench/bench_block_parts >/dev/null 2>&1 || echo "bench_block_parts: build failed"
timeout 100 build-gpu/bench/bench_block_parts 2>&1 | tail -2
timeout 100 python3 bench/peer_block_parts.py 2>&1 | tail -1
if [ "${AB:-0}" = 1 ]; then
  # same-run A/B of the Hopper attention kernels: mma.sync (WEFT_SDPA_NOWGMMA=1), then wgmma
  echo "== A/B: WEFT_SDPA_NOWGMMA=1 then default (parts, then block twice)"
  WEFT_SDPA_NOWGMMA=1 timeout 100 build-gpu/bench/bench_block_parts 2>&1 | tail -1
  timeout 100 build-gpu/bench/bench_block_parts 2>&1 | tail -1
  for i in 1 2; do
    WEFT_SDPA_NOWGMMA=1 timeout 100 build-gpu/bench/bench_transformer_block --device cuda 2>&1 | tail -1
    timeout 100 build-gpu/bench/bench_transformer_block --device cuda 2>&1 | tail -1
  done
  timeout 100 python3 bench/peer_transformer_block.py 2>&1 | tail -1
fi
if [ "${PROFILE:-1}" = 1 ]; then
  # Nsight Systems cannot make reports on these machines: trace kernels with bench/ktrace.c
  # (CUPTI activity records through CUDA_INJECTION64_PATH) for weft and PyTorch alike.
  echo "== kernel trace (4 steps each; summary of the last 3): weft, then PyTorch"
  source bench/ktrace_setup.sh   # /tmp/libktrace.so, the CUPTI library on LD_LIBRARY_PATH
  CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=$OUT/kt_weft.csv timeout 100 \
    build-gpu/bench/bench_transformer_block --device cuda --steps 4 | tail -1
  CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=$OUT/kt_torch.csv timeout 100 \
    python3 bench/peer_transformer_block.py --steps 4 | tail -1
  python3 bench/ktrace_summary.py "$OUT/kt_weft.csv" --label weft --top ${KTOP:-30} | tee "$OUT/kern.txt"
  python3 bench/ktrace_summary.py "$OUT/kt_torch.csv" --label pytorch --top ${KTOP:-30} | tee -a "$OUT/kern.txt"
fi
if [ "${GEMM:-1}" = 1 ]; then
echo "== GEMM: weft (cuBLASLt), weft (cublasGemmEx), PyTorch"
timeout 100 build-gpu/bench/bench_cuda_ops | tail -1
WEFT_NO_CUBLASLT=1 timeout 100 build-gpu/bench/bench_cuda_ops | tail -1
timeout 100 python3 bench/peer_cuda_ops.py | tail -1
fi
