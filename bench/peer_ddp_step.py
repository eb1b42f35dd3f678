"""bench/peer_ddp_step.py: the PyTorch peer of bench_ddp_step.c: the same model, batch per rank,
Adam and step count, through Lightning Fabric with strategy "ddp" on N CPU processes (gloo).

    python3 bench/peer_ddp_step.py --model mlp|cnn [--devices 2] [--batch 64] [--steps 200]
Threads per rank: torch.set_num_threads(OMP_NUM_THREADS). Rank 0's last line:
  {"impl":"pytorch-ddp+fabric","model":"mlp","ranks":2,"batch":64,"step_ms":...}
(step_ms: the slowest rank's mean)."""
import argparse, json, os, time

import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.fabric import Fabric

p = argparse.ArgumentParser()
p.add_argument("--model", default="mlp")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--devices", type=int, default=2)
a = p.parse_args()


def make_model(cnn):
    if not cnn:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def run(fabric):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    model = make_model(a.model == "cnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model, opt = fabric.setup(model, opt)
    torch.manual_seed(1 + fabric.global_rank)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))
    warm = a.steps // 10 + 3
    for s in range(warm + a.steps):
        if s == warm:
            fabric.barrier()
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        fabric.backward(loss)
        opt.step()
    ms = 1000 * (time.perf_counter() - t0) / a.steps
    slowest = fabric.all_reduce(torch.tensor([ms], dtype=torch.float64), reduce_op="max").item()
    if fabric.global_rank == 0:
        print(json.dumps({"impl": "pytorch-ddp+fabric", "model": a.model, "ranks": fabric.world_size,
                          "batch": a.batch, "threads": torch.get_num_threads(), "step_ms": round(slowest, 4)}),
              flush=True)


fabric = Fabric(accelerator="cpu", devices=a.devices, strategy="ddp" if a.devices > 1 else "auto")
fabric.launch(run)
