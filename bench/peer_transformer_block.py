"""bench/peer_transformer_block.py: PyTorch peer of bench_transformer_block.c: the same
pre-LN GPT block (768 wide, 12 heads, GELU tanh MLP) forward + backward in eager mode
under torch.autocast(bfloat16). PyTorch's scaled_dot_product_attention is used, as
nn.functional users would (it picks flash attention on an H100)."""
import argparse, json, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda"); p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=1024); p.add_argument("--steps", type=int, default=10)
a = p.parse_args()
C, H = 768, 12

class Attn(nn.Module):
    def __init__(s):
        super().__init__(); s.c_attn = nn.Linear(C, 3 * C); s.c_proj = nn.Linear(C, C)
    def forward(s, x):
        B, T, _ = x.shape
        q, k, v = s.c_attn(x).split(C, dim=2)
        q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return s.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

torch.manual_seed(0)
dev = torch.device(a.device)
ln1, ln2, attn = nn.LayerNorm(C).to(dev), nn.LayerNorm(C).to(dev), Attn().to(dev)
mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(approximate="tanh"), nn.Linear(4 * C, C)).to(dev)
x = torch.randn(a.batch, a.seq, C, device=dev, requires_grad=True)
for s in range(2 + a.steps):
    if s == 2:
        torch.cuda.synchronize(); t0 = time.perf_counter()
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
        h = x + attn(ln1(x))
        y = h + mlp(ln2(h))
    y.float().mean().backward()
torch.cuda.synchronize()
print(json.dumps({"impl": "pytorch", "device": a.device, "batch": a.batch, "seq": a.seq, "width": C,
                  "block_ms": round(1000 * (time.perf_counter() - t0) / a.steps, 3)}))
