"""bench/peer_block_parts.py: PyTorch peer of bench_block_parts.c (same pieces, same shapes)."""
import json, time
import torch, torch.nn as nn, torch.nn.functional as F

def run(f, steps=20):
    for _ in range(2): f()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(steps): f()
    torch.cuda.synchronize()
    return round(1000 * (time.perf_counter() - t0) / steps, 3)

d = "cuda"
q, k, v = [torch.randn(16, 12, 1024, 64, device=d, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
g = torch.randn(16, 12, 1024, 64, device=d, dtype=torch.bfloat16)
r = {"impl": "pytorch"}
with torch.no_grad():
    r["sdpa_fwd"] = run(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
r["sdpa_fwd_bwd"] = run(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g))
x = torch.randn(16, 1024, 768, device=d, requires_grad=True); gx = torch.randn_like(x)
r["layer_norm_fwd_bwd"] = run(lambda: F.layer_norm(x, (768,), eps=1e-5).backward(gx))
lin = nn.Linear(768, 3072).to(d); gl = torch.randn(16, 1024, 3072, device=d, dtype=torch.bfloat16)
def lf():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = lin(x)
    y.backward(gl)
r["linear_768x3072_fwd_bwd"] = run(lf)
h = torch.randn(16, 1024, 3072, device=d, dtype=torch.bfloat16, requires_grad=True)
r["gelu_tanh_bf16_fwd_bwd"] = run(lambda: F.gelu(h, approximate="tanh").backward(gl))
a = torch.randn(16, 1024, 768, device=d, requires_grad=True); b = torch.randn(16, 1024, 768, device=d, dtype=torch.bfloat16, requires_grad=True)
r["residual_add_f32_bf16_fwd_bwd"] = run(lambda: (a + b).backward(gx))
print(json.dumps(r))
