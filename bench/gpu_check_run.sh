#!/usr/bin/env bash
# bench/gpu_check_run.sh: the GPU machine's correctness pass, in one call: build weft with
# CUDA, NCCL and MPI (Check carried: CHECK=.carry/check), then
#   - the op harness on CUDA (tests/ops/test_ops --device cuda);
#   - CUDA graphs (tests/cuda/test_cuda_graph: eager steps then replays, bit for bit), and the
#     tiny GPT with and without --cuda-graphs (the same losses, deterministic mode);
#   - the GPT example stopped and resumed on CUDA with deterministic algorithms, bit for bit
#     (tests/examples/test_gpt, its CUDA case), and fused vs unfused loss;
#   - the fused optimizer and the caching allocator (tests/cuda/test_cuda_optim, test_cuda_allocator),
#     cuBLAS loaded on first use (test_cuda_blas_load),
#     the vector bias+GELU kernels, uncast mixed adds, the column-sum bias gradient (test_cuda_gelu,
#     test_cuda_mixed, test_cuda_bgrad, test_cuda_gelu_bias, test_cuda_wgrad_f32), the tanh GELU in cuBLASLt's epilogues (test_cuda_gelu_epilogue),
#     fp8 ("transformer-engine": test_cuda_fp8);
#   - a one-rank NCCL communicator through every op, and an NCCL error or timeout aborting
#     the communicator (tests/dist/test_nccl, also two ranks on one GPU refused clearly);
#   - dist: 2 and 3 ranks sharing the GPU through the mpi backend (CUDA tensors staged through
#     host memory): weft's all_gather / reduce_scatter on CUDA tensors against the host results
#     (tests/dist/test_mpi_direct), and the ZeRO stages and FSDP against DDP under bf16-mixed
#     and 16-mixed, stage 1's 16-mixed found-inf, per-rank memory below DDP's
#     (tests/fabric/test_zero), both with WF_TEST_DEVICE=cuda;
#   - with SHAKESPEARE=TEXT, the shakespeare-char quality run (bench/shakespeare_run.sh) in the
#     background beside the checks (SHAKESPEARE_FLAGS adds flags), waited for at the end;
#   - the threading A/B on all cores (bench/threads_run.sh; THREADS_AB= switches it off), after
#     the shakespeare run, so the two do not share the host's cores.
# BEFORE / AFTER: commands run right after the build / at the end (the GPU is not shared then).
# SKIP="optim nccl ..." leaves out those sections (ops graph tinygpt resume optim nccl dist);
# each section's start is stamped with the seconds since the script began, and a section that
# would start after DEADLINE seconds (default 540, the device's 600 s limit less a margin) is
# skipped with a line saying so, so the logs of the rest still come back.
# Usage on the device: CHECK=.carry/check bash bench/gpu_check_run.sh   (logs under $OUT)
set -uo pipefail
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${CHECK:-}" ] && export PKG_CONFIG_PATH="$PWD/$CHECK/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
B=${B:-build-gpu}
DEADLINE=${DEADLINE:-540}
section() {   # name, title: 0 when the section runs (and its stamp printed), 1 when skipped
  case " ${SKIP:-} " in *" $1 "*) echo "== $2: skipped (SKIP)"; return 1;; esac
  if [ "$SECONDS" -ge "$DEADLINE" ]; then echo "== $2: skipped at ${SECONDS}s (DEADLINE $DEADLINE)"; return 1; fi
  echo "== [${SECONDS}s] $2"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[ -f $B/build.ninja ] || meson setup $B -Dcuda=enabled -Dnccl=enabled -Dmpi=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
# only what the checks run (a whole CUDA build is minutes more)
ninja -C $B tests/ops/test_ops tests/cuda/test_cuda_allocator tests/cuda/test_cuda_graph tests/examples/examples_test_gpt \
  examples/gpt/gpt tests/dist/dist_test_nccl bench/bench_train_step bench/bench_gpt2 tests/cuda/test_cuda_optim \
  tests/cuda/test_cuda_gelu tests/cuda/test_cuda_mixed tests/cuda/test_cuda_bgrad tests/cuda/test_cuda_fp8 tests/cuda/test_cuda_xent tests/cuda/test_cuda_gelu_epilogue tests/cuda/test_cuda_gelu_bias tests/cuda/test_cuda_wgrad_f32 tests/cuda/test_cuda_blas_load \
  tests/dist/dist_test_mpi_direct tests/fabric/fabric_test_zero \
  >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== [${SECONDS}s] build ok"
if [ -n "${BEFORE:-}" ]; then eval "$BEFORE"; fi   # e.g. the speed runs, before the GPU is shared
SPID=
if [ -n "${SHAKESPEARE:-}" ]; then
  echo "== shakespeare-char (bf16-mixed, one GPU), in the background: $OUT/shakespeare.log"
  # bounded so that the wait below ends near the deadline whatever happens
  timeout $((DEADLINE + 30 - SECONDS)) bash bench/shakespeare_run.sh "$SHAKESPEARE" $B ${SHAKESPEARE_FLAGS:-} \
    > "$OUT/shakespeare_curve.log" 2>&1 &
  SPID=$!
fi
if section ops "op harness on CUDA"; then
timeout 300 $B/tests/ops/test_ops --device cuda >"$OUT/ops_cuda.log" 2>&1; echo "rc=$?"
grep -E "^FAIL" "$OUT/ops_cuda.log" | head -30; grep -iE "never called|uncalled" "$OUT/ops_cuda.log" | head -3; tail -1 "$OUT/ops_cuda.log"
# again with the generic cross-entropy kernels only (WEFT_XENT_NOVEC=1: tensor/cuda/cuda_softmax.cu)
WEFT_XENT_NOVEC=1 timeout 300 $B/tests/ops/test_ops --device cuda >"$OUT/ops_cuda_xentvec.log" 2>&1; echo "WEFT_XENT_NOVEC=1: rc=$?"
grep -E "^FAIL" "$OUT/ops_cuda_xentvec.log" | head -10; tail -1 "$OUT/ops_cuda_xentvec.log"
fi
if section graph "CUDA graphs"; then
timeout 200 $B/tests/cuda/test_cuda_graph >"$OUT/graph.log" 2>&1; echo "rc=$?"; grep -E "FAIL" "$OUT/graph.log" | head; tail -1 "$OUT/graph.log"
fi
if section tinygpt "tiny GPT, with and without CUDA graphs"; then
head -c 200000 /dev/urandom | base64 > "$OUT/tiny.txt"
for g in 0 1; do
  timeout 200 $B/examples/gpt/gpt --config tiny --data "$OUT/tiny.txt" --accelerator cuda --deterministic 1 --dropout 0 \
    --grad-accum 1 --max-iters 40 --log-interval 10 --eval-interval 20 --cuda-graphs $g --out-dir "/tmp/tiny_g$g" --logger none 2>&1 |
    grep -E "^iter (10|20|30|40)|error|^step|\{" | cut -c1-200 | sed "s/^/graphs=$g: /"
done
fi
if section resume "GPT stopped and resumed on CUDA, deterministic; fused vs unfused loss"; then
(cd $B && CK_RUN_CASE=core timeout 400 tests/examples/examples_test_gpt examples/gpt/gpt 2>&1 | tail -5) | tee "$OUT/gpt.log"
fi
if section optim "fused optimizer, caching allocator"; then
timeout 60 $B/tests/cuda/test_cuda_allocator >"$OUT/allocator.log" 2>&1; echo "rc=$?"; grep -E "^FAIL" "$OUT/allocator.log" | head; tail -1 "$OUT/allocator.log"
timeout 60 $B/tests/cuda/test_cuda_blas_load >"$OUT/blas_load.log" 2>&1; echo "test_cuda_blas_load rc=$?"; grep -E "^FAIL" "$OUT/blas_load.log" | head; tail -1 "$OUT/blas_load.log"
timeout 200 $B/tests/cuda/test_cuda_optim >"$OUT/optim.log" 2>&1; echo "rc=$?"; tail -1 "$OUT/optim.log"
for t in gelu mixed bgrad xent gelu_bias wgrad_f32; do   # the vector bias+GELU kernels, adds that read bf16 uncast, the column-sum bias gradient, the vector cross-entropy kernels, the GELU backward with the bias gradient, weight gradients in f32
  timeout 120 $B/tests/cuda/test_cuda_$t > "$OUT/cuda_$t.log" 2>&1; echo "test_cuda_$t rc=$?: $(grep -E "Checks|^[^:]+:[0-9]+:[EF]:" "$OUT/cuda_$t.log" | head -5 | tr '\n' ' ')"
done
timeout 120 $B/tests/cuda/test_cuda_gelu_epilogue > "$OUT/cuda_gelu_epilogue.log" 2>&1; echo "test_cuda_gelu_epilogue rc=$?"
grep -E "^FAIL" "$OUT/cuda_gelu_epilogue.log" | head -12; tail -1 "$OUT/cuda_gelu_epilogue.log"
timeout 200 $B/tests/cuda/test_cuda_fp8 >"$OUT/cuda_fp8.log" 2>&1; echo "test_cuda_fp8 rc=$? (77: skipped, no GPU of capability 8.9)"; grep -E "^(FAIL|skip|     last)" "$OUT/cuda_fp8.log" | head -20; tail -1 "$OUT/cuda_fp8.log"
fi
if section nccl "NCCL: one rank, every op; two ranks on one GPU"; then
timeout 120 $B/tests/dist/dist_test_nccl 2>&1 | tail -3
timeout 60 mpirun --oversubscribe --bind-to none -np 2 $B/tests/dist/dist_test_nccl --same-gpu 2>&1 | tail -2
fi
if section dist "mpi backend, CUDA tensors, ranks sharing the GPU: all_gather/reduce_scatter, ZeRO and FSDP vs DDP"; then
for np in 2 3; do
  for t in dist/dist_test_mpi_direct fabric/fabric_test_zero; do
    log="$OUT/${t#*/}_cuda_np$np.log"
    WF_TEST_DEVICE=cuda CK_FORK=no WF_DIST_TIMEOUT=60 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
      OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 240 \
      mpirun --oversubscribe --bind-to none -np $np $B/tests/$t > "$log" 2>&1
    rc=$?
    echo "${t#*/} np$np rc=$rc (77: skipped)"
    # the verdict, the first failures (each names rank, case, step, tensor and values), the figures
    grep -E "^[0-9]+%|:[FE]:|skipped" "$log" | sort -u | head -8 | cut -c1-400
    grep -E "^(mixed parity|memory on)" "$log" | sort | head -40
    tail -3 "$log"
  done
done
fi
if [ -n "$SPID" ]; then
  echo "== [${SECONDS}s] shakespeare-char: waiting"
  wait $SPID
  cat "$OUT/shakespeare_curve.log"
fi
if [ -n "${THREADS_AB-1}" ] && section threads "threads A/B, all cores"; then
  CORES=all ROUNDS=${ROUNDS:-2} bash bench/threads_run.sh $B 2>&1 | grep -v "^$" | grep -E "==|weft|pytorch" | sed -E 's/"final_loss[^,]*,//' | cut -c1-150
fi
if [ -n "${AFTER:-}" ] && section after "AFTER: $AFTER"; then eval "$AFTER"; fi   # e.g. the speed runs, the GPU alone again
echo "== [${SECONDS}s] done"
