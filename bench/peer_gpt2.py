"""bench/peer_gpt2.py: the PyTorch + Lightning Fabric peer of weft's GPT-2 training step
(issue 15). nanoGPT's GPT-2 (124M: 12 layers, 12 heads, 768 wide, block 1024, vocabulary
padded to 50304, weight tying, GELU tanh, flash attention through
scaled_dot_product_attention), trained through Fabric with precision "bf16-mixed", AdamW
(lr 6e-4, betas 0.9/0.95, weight decay 0.1 on 2-D weights, fused) and clip_gradients(1.0).
Random tokens: the speed does not depend on the text.

  python3 bench/peer_gpt2.py [--compile] [--batch 16] [--seq 1024] [--steps 20] [--dropout P]
                            [--device cuda|cpu]

Prints one JSON line: tok_s, step_ms, mfu (against the device's bf16 dense peak), peak_gb
(torch.cuda.max_memory_allocated).

--device cpu: the peer of bench_gpt2 --accelerator cpu --precision 32-true (runs with Debian's
torch 1.13, /usr/bin/python3): fp32, no autocast, AdamW not fused; Fabric (accelerator "cpu",
precision "32-true") when lightning imports, else the plain loop (impl says which); threads
from OMP_NUM_THREADS; mfu null (no peak to hold it to); peak_gb the process's peak RSS. A torch
without F.scaled_dot_product_attention (before 2.0) gets the explicit causal attention, the
same math."""
import argparse, json, math, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--compile", action="store_true"); p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=1024); p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=5); p.add_argument("--layers", type=int, default=12)
p.add_argument("--heads", type=int, default=12); p.add_argument("--width", type=int, default=768)
p.add_argument("--vocab", type=int, default=50304); p.add_argument("--no-fabric", action="store_true")
p.add_argument("--dropout", type=float, default=0.0)   # nanoGPT's places: embeddings, attention, residuals
p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
a = p.parse_args()
cpu = a.device == "cpu"
SDPA = hasattr(F, "scaled_dot_product_attention")

def causal_attention(q, k, v, p, training):   # F.scaled_dot_product_attention(is_causal=True)'s math
    T_ = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(T_, T_, dtype=torch.bool, device=q.device).tril()
    att = F.dropout(att.masked_fill(~mask, float("-inf")).softmax(dim=-1), p, training)
    return att @ v
C, H, L, V, T, P = a.width, a.heads, a.layers, a.vocab, a.seq, a.dropout

class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln_1, s.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        s.c_attn, s.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        s.c_fc, s.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
    def forward(s, x):
        B, T_, _ = x.shape
        q, k, v = s.c_attn(s.ln_1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T_, H, C // H).transpose(1, 2) for t in (q, k, v)]
        if SDPA:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=P if s.training else 0.0, is_causal=True)
        else:
            y = causal_attention(q, k, v, P, s.training)
        x = x + F.dropout(s.c_proj(y.transpose(1, 2).contiguous().view(B, T_, C)), P, s.training)
        return x + F.dropout(s.mlp_proj(F.gelu(s.c_fc(s.ln_2(x)), approximate="tanh")), P, s.training)

class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        s.h = nn.ModuleList([Block() for _ in range(L)])
        s.ln_f = nn.LayerNorm(C)
        s.lm_head = nn.Linear(C, V, bias=False)
        s.lm_head.weight = s.wte.weight
        for n, q in s.named_parameters():
            if q.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") or n.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(q, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(q)
    def forward(s, idx, targets):
        x = F.dropout(s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device)), P, s.training)
        for b in s.h: x = b(x)
        logits = s.lm_head(s.ln_f(x))
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))

torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
model = GPT()
decay = [q for q in model.parameters() if q.dim() >= 2]
no_decay = [q for q in model.parameters() if q.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=6e-4, betas=(0.9, 0.95), **({} if cpu else {"fused": True}))
fabric_ok = not a.no_fabric
if cpu and fabric_ok:
    try:
        import lightning
    except ImportError:
        fabric_ok = False
if cpu:
    dev = torch.device("cpu")
    import contextlib
    ctx = contextlib.nullcontext
    if fabric_ok:
        import lightning as Lx
        fabric = Lx.Fabric(accelerator="cpu", devices=1, precision="32-true")
        model, opt = fabric.setup(model, opt)
        backward = fabric.backward
        clip = lambda: fabric.clip_gradients(model, opt, max_norm=1.0)
    else:
        backward = lambda loss: loss.backward()
        clip = lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
elif a.no_fabric:
    model, dev = model.cuda(), torch.device("cuda")
    ctx = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    backward = lambda loss: loss.backward()
    clip = lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
else:
    import lightning as Lx
    fabric = Lx.Fabric(accelerator="cuda", devices=1, precision="bf16-mixed")
    model, opt = fabric.setup(model, opt)
    dev = fabric.device
    import contextlib
    ctx = contextlib.nullcontext
    backward = fabric.backward
    clip = lambda: fabric.clip_gradients(model, opt, max_norm=1.0)
fwd = torch.compile(model) if a.compile else model
n_params = sum(q.numel() for q in model.parameters())
g = torch.Generator(device="cpu").manual_seed(1)
# tokens below GPT-2's 50257 words, or below --vocab when smaller (as bench_gpt2.c draws them)
idx = torch.randint(0, min(V, 50257), (a.batch, T + 1), generator=g).to(dev)
x, y = idx[:, :-1].contiguous(), idx[:, 1:].contiguous()
sync = (lambda: None) if cpu else torch.cuda.synchronize
if not cpu:
    torch.cuda.reset_peak_memory_stats()
for s in range(a.warmup + a.steps):
    if s == a.warmup:
        sync(); t0 = time.perf_counter()
    with ctx():
        loss = fwd(x, y)
    backward(loss)
    clip()
    opt.step()
    opt.zero_grad(set_to_none=True)
sync()
dt = (time.perf_counter() - t0) / a.steps
tokens = a.batch * T
# PaLM's estimate (as nanoGPT's estimate_mfu): 6N + 12 L H Q T flops per token, forward + backward
flops_tok = 6 * n_params + 12 * L * H * (C // H) * T
if cpu:
    import platform, resource
    name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                platform.processor() or "cpu")
    print(json.dumps({"impl": "pytorch" + ("+compile" if a.compile else "") + ("+fabric" if fabric_ok else ""),
                      "device": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "batch": a.batch, "seq": T, "params_m": round(n_params / 1e6, 2),
                      "step_ms": round(1000 * dt, 2), "tok_s": round(tokens / dt), "mfu": None,
                      "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
                      "loss": round(loss.item(), 4)}))
    raise SystemExit(0)
name = torch.cuda.get_device_name()
peak = 989e12 if "H100" in name or "H200" in name else 312e12   # dense bf16, SXM
print(json.dumps({"impl": "pytorch" + ("+compile" if a.compile else "") + ("" if a.no_fabric else "+fabric"),
                  "device": name, "batch": a.batch, "seq": T, "params_m": round(n_params / 1e6, 2),
                  "step_ms": round(1000 * dt, 2), "tok_s": round(tokens / dt), "mfu": round(flops_tok * tokens / dt / peak, 4),
                  "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2), "loss": round(loss.item(), 4)}))
