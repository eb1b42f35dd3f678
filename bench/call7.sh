#!/usr/bin/env bash
# The seventh session's GPU call (2026-12-07), cut to the device time left: build; the op harness
# on CUDA (gelu_backward_bias, add_bias_layer_norm, the 16-byte dQ atomics); the new CUDA tests;
# GPT-2 speed, all of this session's changes against none of them; torch.compile and the CUDA
# resume test if time is left.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PKG_CONFIG_PATH="$PWD/.carry/check/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
B=build-gpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
meson setup $B -Dcuda=enabled -Dmpi=disabled >"$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
ninja -C $B tests/ops/test_ops bench/bench_gpt2 tests/cuda/test_cuda_gelu_bias tests/cuda/test_cuda_wgrad_f32 \
  >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -30; exit 1; }
echo "== [${SECONDS}s] build ok"
t() { echo "== [${SECONDS}s] $1"; shift; timeout 120 "$@" > "$OUT/log_$SECONDS.txt" 2>&1; echo "rc=$?"; grep -E "^FAIL|:[EF]:" "$OUT/log_$SECONDS.txt" | head -8; tail -1 "$OUT/log_$SECONDS.txt"; }
t "op harness on CUDA" $B/tests/ops/test_ops --device cuda
t "test_cuda_gelu_bias" $B/tests/cuda/test_cuda_gelu_bias
t "test_cuda_wgrad_f32" $B/tests/cuda/test_cuda_wgrad_f32
r() { local l=$1; shift; echo "$l $(timeout ${T:-60} env "$@" | grep '^{' | tail -1 | cut -c1-330)"; }
echo "== [${SECONDS}s] GPT-2 124M, 16 x 1024, bf16-mixed"
r weft $B/bench/bench_gpt2 --fused-loss 1
r weft_allold WEFT_GELU_BGRAD_OLD=1 WEFT_GPT_PROJ_BIAS_OLD=1 WEFT_WGRAD_F32_OLD=1 WEFT_SDPA_DQ_V2=1 $B/bench/bench_gpt2 --fused-loss 1
r weft_graphs $B/bench/bench_gpt2 --fused-loss 1 --cuda-graphs 1
if [ "$SECONDS" -lt 185 ]; then echo "== [${SECONDS}s] torch.compile"; T=110 r torch_compile python3 bench/peer_gpt2.py --compile; fi
for v in "weft_dqv2 WEFT_SDPA_DQ_V2=1" "weft_gbold WEFT_GELU_BGRAD_OLD=1" "weft_pbold WEFT_GPT_PROJ_BIAS_OLD=1" "weft_wgold WEFT_WGRAD_F32_OLD=1"; do
  [ "$SECONDS" -lt 245 ] && r ${v%% *} ${v#* } $B/bench/bench_gpt2 --fused-loss 1
done
echo "== [${SECONDS}s] done"
