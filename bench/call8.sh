#!/usr/bin/env bash
# The next GPU call, in one command: bench/NOTES.md's "For the next GPU call" (the op harness,
# timings, then the other checks), each part guarded by the time left (DEADLINE seconds,
# default 560: one call's limit is 600). Planned in the eighth session, run in the ninth,
# extended in the tenth (no device) for the two-warpgroup sdpa backward.
#   bash bench/carry_check.sh here, carry .carry and .data; then: bash bench/call8.sh (logs under $OUT)
# Order (correctness first, then the A/Bs that decide defaults): build; the op harness on CUDA,
# the attention rows on the two-warpgroup backward (WEFT_SDPA_BWD128=1, and with
# WEFT_SDPA_DQ_BULK=1), test_cuda_fp8 and test_cuda_blas_load; sdpa alone at GPT-2's shape, one
# warpgroup against two (and bulk dQ), and PyTorch's; GPT-2: weft, the LM head's gradients made in
# the backward again (WEFT_LCE_RECOMPUTE=1), the sdpa trials, torch.compile, weft and its LCE A/B again,
# graphs, fp8, torch.compile again, the gradient sink off, the old f32 weight gradient; the other
# CUDA checks (mma.sync attention, LN_OLD / colsum variants, wgrad f32, gelu bias); the CUDA
# resume test; start-up and memory; weft's kernel split; Nsight Compute on the two-warpgroup
# backward.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PKG_CONFIG_PATH="$PWD/.carry/check/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
B=build-gpu
D=${DEADLINE:-560}
left() { [ "$SECONDS" -lt "$((D - ${1:-0}))" ]; }   # true while more than $1 s are left
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
meson setup $B -Dcuda=enabled -Dmpi=disabled >"$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
ninja -C $B tests/ops/test_ops bench/bench_gpt2 tests/cuda/test_cuda_blas_load tests/cuda/test_cuda_wgrad_f32 \
  tests/cuda/test_cuda_fp8 tests/cuda/test_cuda_gelu_bias tests/examples/examples_test_gpt examples/gpt/gpt \
  bench/bench_startup bench/bench_memory bench/bench_block_parts >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -30; exit 1; }
echo "== [${SECONDS}s] build ok"
# one log for all the checks and a copy of this script's output in $OUT (few files come back,
# and the reply keeps only the last 12 000 characters of the output)
exec > >(tee "$OUT/summary.txt") 2>&1
t() { echo "== [${SECONDS}s] $1"; shift; echo "== $*" >> "$OUT/checks.log"; timeout 150 env "$@" > "$OUT/last.log" 2>&1;
      echo "rc=$?"; cat "$OUT/last.log" >> "$OUT/checks.log"; grep -E "^FAIL|:[EF]:" "$OUT/last.log" | head -8; tail -1 "$OUT/last.log"; }
r() { local l=$1; shift; echo "$l $(timeout ${T:-60} env "$@" | grep '^{' | tail -1 | cut -c1-330)"; }
t "op harness on CUDA" $B/tests/ops/test_ops --device cuda
t "attention rows, the two-warpgroup backward" WEFT_SDPA_BWD128=1 $B/tests/ops/test_ops --device cuda --op scaled_dot_product_attention
t "qkv attention rows, the two-warpgroup backward" WEFT_SDPA_BWD128=1 $B/tests/ops/test_ops --device cuda --op "qkv attention"
t "attention rows, two warpgroups, dQ by bulk reductions" WEFT_SDPA_BWD128=1 WEFT_SDPA_DQ_BULK=1 $B/tests/ops/test_ops --device cuda --op scaled_dot_product_attention
t "test_cuda_fp8 (the bias gradient's column sums in the cast, bit for bit)" $B/tests/cuda/test_cuda_fp8
t "test_cuda_blas_load (cuBLAS loaded on the first device set-up)" $B/tests/cuda/test_cuda_blas_load
echo "== [${SECONDS}s] sdpa (and the block's other pieces) at 16 x 12 x 1024 x 64, ms: one warpgroup, two, two with bulk dQ; PyTorch"
for i in 1 2; do
  left 330 && r parts $B/bench/bench_block_parts
  left 320 && r parts_bwd128 WEFT_SDPA_BWD128=1 $B/bench/bench_block_parts
  left 310 && r parts_bwd128_bulk WEFT_SDPA_BWD128=1 WEFT_SDPA_DQ_BULK=1 $B/bench/bench_block_parts
done
left 300 && r peer_parts python3 bench/peer_block_parts.py
echo "== [${SECONDS}s] GPT-2 124M, 16 x 1024, bf16-mixed"
left 280 && r weft $B/bench/bench_gpt2 --fused-loss 1
left 270 && r weft_lce_recompute WEFT_LCE_RECOMPUTE=1 $B/bench/bench_gpt2 --fused-loss 1
left 260 && r weft_bwd128 WEFT_SDPA_BWD128=1 $B/bench/bench_gpt2 --fused-loss 1
left 250 && r weft_bwd128_bulk WEFT_SDPA_BWD128=1 WEFT_SDPA_DQ_BULK=1 $B/bench/bench_gpt2 --fused-loss 1
left 240 && T=110 r torch_compile python3 bench/peer_gpt2.py --compile
left 130 && r weft_again $B/bench/bench_gpt2 --fused-loss 1
left 120 && r weft_lce_recompute_again WEFT_LCE_RECOMPUTE=1 $B/bench/bench_gpt2 --fused-loss 1
left 110 && r weft_graphs $B/bench/bench_gpt2 --fused-loss 1 --cuda-graphs 1
left 100 && r weft_fp8 $B/bench/bench_gpt2 --fused-loss 1 --precision transformer-engine
left 150 && T=110 r torch_compile_again python3 bench/peer_gpt2.py --compile
left 80 && r weft_nosink WEFT_NO_GRAD_SINK=1 $B/bench/bench_gpt2 --fused-loss 1
left 70 && r weft_wgold WEFT_WGRAD_F32_OLD=1 $B/bench/bench_gpt2 --fused-loss 1
left 60 && t "attention on the mma.sync kernels (paired key tiles)" WEFT_SDPA_NOWGMMA=1 $B/tests/ops/test_ops --device cuda --op scaled_dot_product_attention
left 60 && t "add_bias_layer_norm rows, the old backward" WEFT_LN_OLD=1 $B/tests/ops/test_ops --device cuda --op add_bias_layer_norm
left 60 && t "sum rows, the 16-byte column sums" WEFT_REDUCE_COLSUM=1 $B/tests/ops/test_ops --device cuda --op sum
left 60 && t "test_cuda_wgrad_f32 (Linear's weight scale)" $B/tests/cuda/test_cuda_wgrad_f32
left 60 && t "test_cuda_gelu_bias" $B/tests/cuda/test_cuda_gelu_bias
if left 150; then
  echo "== [${SECONDS}s] GPT stopped and resumed on CUDA, bit for bit"
  (cd $B && CK_RUN_CASE=core timeout 140 tests/examples/examples_test_gpt examples/gpt/gpt 2>&1 | tail -3)
fi
if left 100; then
  echo "== [${SECONDS}s] start-up and the MLP epoch's memory of this CUDA build on the CPU (issue 12)"
  timeout 30 $B/bench/bench_startup --runs 10 2>/dev/null | tail -1
  [ -d .data ] && timeout 60 $B/bench/bench_memory --model mlp --data .data 2>/dev/null | tail -1
fi
if left 60; then
  echo "== [${SECONDS}s] weft kernel split (4 steps after 1 warmup)"
  source bench/ktrace_setup.sh
  CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=$OUT/kt_gpt2.csv timeout 60 \
    $B/bench/bench_gpt2 --fused-loss 1 --steps 4 --warmup 1 | tail -1
  python3 bench/ktrace_summary.py "$OUT/kt_gpt2.csv" --label weft --top 30 | tee "$OUT/kern_gpt2.txt"
fi
left 40 && WEFT_SDPA_BWD128=1 KERNELS=regex:sdpa_bwd_wg2 COUNT=1 NCU_TIMEOUT=$((D - SECONDS - 10)) bash bench/ncu_run.sh
echo "== [${SECONDS}s] done"
