"""bench/peer_cuda_ops.py: PyTorch peer of bench_cuda_ops.c (same shapes and timing method)."""
import json, time
import torch

def t_gemm(n, dt, reps=5, tf32=False):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device="cuda").to(dt); b = torch.randn(n, n, device="cuda").to(dt)
    best = 1e9
    for r in range(reps + 2):
        torch.cuda.synchronize(); t = time.perf_counter()
        c = a @ b
        torch.cuda.synchronize(); t = time.perf_counter() - t
        if r >= 2: best = min(best, t)
    return 2 * n ** 3 / best / 1e12

out = {}
for n in (1024, 4096, 8192):
    out[f"gemm{n}_f32_tflops"] = round(t_gemm(n, torch.float32), 1)
    out[f"gemm{n}_tf32_tflops"] = round(t_gemm(n, torch.float32, tf32=True), 1)
    out[f"gemm{n}_f16_tflops"] = round(t_gemm(n, torch.float16), 1)
    out[f"gemm{n}_bf16_tflops"] = round(t_gemm(n, torch.bfloat16), 1)
m = 64 << 20
a = torch.randn(m, device="cuda"); b = torch.randn(m, device="cuda")
ba = bc = 1e9
for r in range(12):
    torch.cuda.synchronize(); t = time.perf_counter(); y = a + b; torch.cuda.synchronize(); t = time.perf_counter() - t
    t2 = time.perf_counter(); c = a.clone(); torch.cuda.synchronize(); t2 = time.perf_counter() - t2
    if r >= 2: ba = min(ba, t); bc = min(bc, t2)
out["add_gbs"] = round(3 * 4 * m / ba / 1e9); out["copy_gbs"] = round(2 * 4 * m / bc / 1e9)
out["add_vs_copy"] = round(out["add_gbs"] / out["copy_gbs"], 3)
print(json.dumps(out))
