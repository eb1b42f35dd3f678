#!/usr/bin/env bash
# bench/dist_run.sh: one GPU-machine session for dist/: build weft with CUDA, NCCL and MPI,
# run the dist suites that need the GPU (a one-rank NCCL communicator through every op, two
# ranks sharing the GPU through the mpi backend with CUDA tensors, two NCCL ranks on one GPU
# refused clearly, DDP parity on CUDA tensors, the Fabric across processes), then time
# all-reduce over mpi against plain MPI_Allreduce and PyTorch's gloo with the same ranks, and
# a DDP step against PyTorch DDP + Lightning Fabric, in the same run.
# Usage on the device: CHECK=.carry/check bash bench/dist_run.sh   (Check carried: the GPU
# machine has none; logs under $OUT when set). PARTS=gpu,suites,allreduce,ddp,overhead,trace
# picks sections (default: all); RANKS="2 4" the all-reduce rank counts.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PARTS=${PARTS:-gpu,suites,allreduce,ddp,overhead,trace}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
[ -n "${CHECK:-}" ] && export PKG_CONFIG_PATH="$PWD/$CHECK/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
nproc
meson setup build-gpu -Dcuda=enabled -Dnccl=enabled -Dmpi=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
ninja -C build-gpu >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
MPI="mpirun --oversubscribe --bind-to none"
if part gpu; then
  echo "== nccl: one rank, every op"; timeout 120 build-gpu/tests/dist/dist_test_nccl 2>&1 | tail -4
  echo "== nccl: two ranks on one GPU (mpirun, then the store)"
  timeout 60 $MPI -np 2 build-gpu/tests/dist/dist_test_nccl --same-gpu 2>&1 | tail -3
  timeout 60 build-gpu/tests/dist/dist_test_nccl --same-gpu 2>&1 | tail -2
  echo "== mpi backend, CUDA tensors, 2 and 3 ranks on one GPU"
  for np in 2 3; do
    WF_TEST_DEVICE=cuda CK_FORK=no WF_DIST_TIMEOUT=60 OMP_NUM_THREADS=1 timeout 180 $MPI -np $np \
      build-gpu/tests/dist/dist_test_collectives 2>&1 | grep -E "^[0-9]+%|:F:|:E:" | head -6
  done
  echo "== DDP parity on CUDA tensors, 2 ranks sharing the GPU through the mpi backend"
  WF_TEST_DEVICE=cuda CK_FORK=no WF_DIST_TIMEOUT=60 OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 \
    build-gpu/tests/fabric/fabric_test_fabric_dist 2>&1 | grep -E "^[0-9]+%|:F:|:E:" | head -6
fi
if part suites; then
  echo "== the dist and fabric suites (CPU ranks)"
  meson test -C build-gpu --suite dist --suite fabric --num-processes 4 2>&1 | grep -E "^ *[0-9]+/|^(Ok|Fail|Skipped|Timeout)"
fi
if part allreduce; then
  echo "== all_reduce bandwidth: weft (mpi) vs MPI_Allreduce, then PyTorch gloo; same ranks"
  SIZES=${SIZES:-4096,65536,1048576,16777216,268435456}
  for np in ${RANKS:-2 4}; do
    OMP_NUM_THREADS=1 timeout 240 $MPI -np $np build-gpu/bench/bench_allreduce --sizes $SIZES 2>&1 | grep '^{'
    [ -n "${NO_GLOO:-}" ] || OMP_NUM_THREADS=1 timeout 240 python3 bench/peer_allreduce.py --ranks $np --sizes $SIZES 2>&1 | grep '^{'
  done
fi
if part ddp; then
  echo "== DDP training step: weft (Fabric, mpi) vs PyTorch DDP (gloo) + Lightning Fabric, 2 ranks x 4 threads"
  for m in mlp cnn; do
    steps=300; [ $m = cnn ] && steps=60
    for r in 1 2; do
      OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 timeout 200 build-gpu/bench/bench_ddp_step --model $m --devices 2 --steps $steps 2>&1 | grep '^{'
      OMP_NUM_THREADS=4 timeout 200 python3 bench/peer_ddp_step.py --model $m --devices 2 --steps $steps 2>&1 | grep '^{'
    done
  done
fi
if part overhead; then
  echo "== DDP's own cost at world size 1: strategy ddp on one process vs the plain loop, in one process"
  echo "   (alternating blocks, median of 15), 4 threads"
  for m in mlp cnn; do
    spb=50; [ $m = cnn ] && spb=5
    for r in 1 2; do
      OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 timeout 200 build-gpu/bench/bench_fabric_overhead --model $m \
        --strategy ddp --steps-per-block $spb 2>&1 | tail -1
    done
  done
fi
if part trace; then
  echo "== a traced DDP run (CNN, 2 ranks x 4 threads): the timeline of docs/distributed.md"
  WF_TRACE="$OUT/ddp_cnn" WF_DDP_SUMMARY=1 OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 timeout 120 \
    build-gpu/bench/bench_ddp_step --model cnn --devices 2 --steps 20 2>&1 | tail -2
  python3 bench/trace_summary.py "$OUT"/ddp_cnn.rank0.json 2>&1 | tail -3
fi
