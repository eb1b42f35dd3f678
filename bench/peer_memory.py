"""bench/peer_memory.py: the PyTorch peer of bench_memory.c: peak resident memory of a
one-epoch Fashion-MNIST run trained the same way (the same .gz files read with gzip, images
kept as uint8 like torchvision's FashionMNIST, ToTensor + Normalize(0.2860, 0.3530) per
sample, shuffled batches of 64 with one loader worker, Adam lr 1e-3 with a per-step cosine
schedule to zero, then test accuracy in batches of 1000 on the main process). As in
bench_memory.c, the test split is loaded after training, once the train split is freed.

    python3 bench/peer_memory.py --model mlp|cnn [--data DIR] [--workers 1] [--steps N]
Last line: {"impl":"pytorch","model":...,"peak_rss_mb":...,"worker_peak_rss_mb":...}
peak_rss_mb is this process (getrusage RUSAGE_SELF); a loader worker is a forked process,
whose own peak is reported apart (RUSAGE_CHILDREN, after the loader has ended)."""
import argparse, gzip, json, os, resource, struct, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--model", default="mlp")
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--workers", type=int, default=1)
p.add_argument("--steps", type=int, default=0)   # 0 = the whole epoch (as bench_memory --steps)
a = p.parse_args()

def peak_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss * 1024 / 1e6   # Linux: kilobytes

def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).copy()).view(*dims)

class FashionMNIST(torch.utils.data.Dataset):   # torchvision's layout: uint8 data, int targets
    def __init__(self, split):
        self.data = idx(os.path.join(a.data, f"{split}-images-idx3-ubyte.gz"))
        self.targets = idx(os.path.join(a.data, f"{split}-labels-idx1-ubyte.gz")).long()
    def __len__(self):
        return len(self.targets)
    def __getitem__(self, i):   # ToTensor() then Normalize(mean, std)
        x = self.data[i].unsqueeze(0).float().div(255)
        return (x - 0.2860) / 0.3530, self.targets[i]

torch.manual_seed(0)
t0 = time.time()
train = FashionMNIST("train")
load_s = time.time() - t0
if a.model == "mlp":
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
else:
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
tr = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, num_workers=a.workers)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(tr), eta_min=0.0)
t0 = time.time()
steps = 0
for x, y in tr:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    steps += 1
    if a.steps and steps >= a.steps:
        break
train_s = time.time() - t0
del tr, train   # ends the worker (its peak is then in RUSAGE_CHILDREN) and frees the train split
t0 = time.time()
test = FashionMNIST("t10k")
load_s += time.time() - t0
te = torch.utils.data.DataLoader(test, batch_size=1000, num_workers=0)
model.eval()
correct = total = 0
with torch.no_grad():
    for x, y in te:
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "model": a.model,
                  "peak_rss_mb": round(peak_mb(), 1), "worker_peak_rss_mb": round(peak_mb(resource.RUSAGE_CHILDREN), 1),
                  "load_s": round(load_s, 3), "train_s": round(train_s, 2), "steps": steps,
                  "test_acc": round(correct / total, 4), "threads": torch.get_num_threads()}))
