"""bench/peer_allreduce.py: the PyTorch peer of bench_allreduce.c: torch.distributed all_reduce
(gloo, CPU, f32, in place, SUM) on the same sizes, ranks started here with torch.multiprocessing.

    python3 bench/peer_allreduce.py --ranks 4 [--sizes 4096,1048576] [--iters N] [--rounds R]

Each size runs R rounds of N back-to-back calls and keeps the best round; a call's time is the
slowest rank's; GB/s is bytes / seconds per call (1 GB = 1e9 B), as in bench_allreduce.c.
Rank 0 prints one JSON line per size with bench_allreduce.c's fields (no MPI baseline here:
baseline_gbps and ratio are null):
  {"bench":"allreduce","impl":"torch-gloo","ranks":4,"bytes":4096,"iters":..,"gbps":..,
   "baseline":null,"baseline_gbps":null,"ratio":null}"""
import argparse, json, os, socket, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(rank, a, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    for nbytes in a.sizes:
        t = torch.zeros(nbytes // 4, dtype=torch.float32)   # zeros: sums stay finite
        iters = a.iters if a.iters > 0 else max(2, min(1000, int(2e8 / nbytes)))
        dist.all_reduce(t)   # warm-up
        best = float("inf")
        for _ in range(a.rounds):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(t)
            dt = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)   # the slowest rank's
            best = min(best, dt.item())
        if rank == 0:
            print(json.dumps({"bench": "allreduce", "impl": "torch-gloo", "ranks": a.ranks, "bytes": nbytes,
                              "iters": iters, "gbps": round(nbytes / best / 1e9, 4), "baseline": None,
                              "baseline_gbps": None, "ratio": None}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--sizes", default=",".join(str(4096 * 4 ** k) for k in range(9)))   # 4 KB .. 256 MB
    p.add_argument("--iters", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",")]
    mp.spawn(run, args=(a, free_port()), nprocs=a.ranks, join=True)
