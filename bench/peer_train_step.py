"""bench/peer_train_step.py: the PyTorch peer of bench_train_step.c (same model, batch,
optimizer, step count). --fabric runs the step through Lightning Fabric (setup + backward).

    python3 bench/peer_train_step.py --model mlp --device cpu [--fabric]
Last line: {"impl":"pytorch"|"pytorch+fabric", ..., "step_ms": ...}"""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--model", default="mlp")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--device", default="cpu")
p.add_argument("--fabric", action="store_true")
a = p.parse_args()

torch.manual_seed(0)
if a.model == "mlp":
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
else:
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
dev = torch.device(a.device)
opt_cls = torch.optim.Adam
if a.fabric:
    from lightning.fabric import Fabric
    fabric = Fabric(accelerator="cuda" if a.device.startswith("cuda") else "cpu", devices=1, precision="32-true")
    model = model.to(dev)
    opt = opt_cls(model.parameters(), lr=1e-3)
    model, opt = fabric.setup(model, opt)
    backward = fabric.backward
else:
    model = model.to(dev)
    opt = opt_cls(model.parameters(), lr=1e-3)
    backward = lambda loss: loss.backward()
x = torch.randn(a.batch, 1, 28, 28, device=dev)
y = torch.randint(0, 10, (a.batch,), device=dev)

def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()

warm = a.steps // 10 + 3
for s in range(warm + a.steps):
    if s == warm:
        sync(); t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    backward(loss)
    opt.step()
sync()
ms = 1000 * (time.perf_counter() - t0) / a.steps
print(json.dumps({"impl": "pytorch+fabric" if a.fabric else "pytorch", "model": a.model, "device": a.device,
                  "batch": a.batch, "threads": torch.get_num_threads(), "step_ms": round(ms, 4),
                  "final_loss": round(loss.item(), 4)}))
