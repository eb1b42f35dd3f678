/* bench/bench_transformer_block.c: a GPT-style transformer block (pre-LN: x + attn(ln1(x)),
 * then + mlp(ln2(x)), 768 wide, 12 heads, MLP 4x with GELU) forward + backward under
 * bf16 autocast, batch 16, sequence 1024. Peer: bench/peer_transformer_block.py (PyTorch
 * eager with torch.autocast(bfloat16) on the same shapes).
 *   bench_transformer_block [--device cuda] [--batch 16] [--seq 1024] [--steps 10]
 * Last line: {"impl":"weft","block_ms":...} */
#include "weft/weft.h"
#include "weft/precision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *device = "cuda";
    int64_t B = 16, T = 1024, C = 768;
    int steps = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) B = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    }
    wf_device dev;
    if (wf_device_parse(device, &dev)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_manual_seed(0);
    wf_module *ln1 = wf_layer_norm_new(&C, 1, NULL), *ln2 = wf_layer_norm_new(&C, 1, NULL);
    wf_module *attn = wf_causal_self_attention_new(C, 12, true, 0.0);
    wf_module *mlp = wf_sequential_new(3, wf_linear_new(C, 4 * C, true), wf_gelu_new(WF_GELU_TANH),
                                       wf_linear_new(4 * C, C, true));
    wf_module *mods[4] = { ln1, ln2, attn, mlp };
    for (int i = 0; i < 4; i++)
        if (!mods[i] || wf_module_to(mods[i], dev, WF_F32)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_tensor *x = wf_to_device(wf_randn((int64_t[]){ B, T, C }, 3, WF_F32), dev);
    if (!x) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_set_requires_grad(x, true);
    double t0 = 0;
    int warm = 2;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) { if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index); t0 = now(); }
        wf_scope_begin();
        wf_autocast_begin(dev.type, WF_BF16);
        wf_tensor *h = wf_add(x, wf_module_forward(attn, wf_module_forward(ln1, x)));
        wf_tensor *y = wf_add(h, wf_module_forward(mlp, wf_module_forward(ln2, h)));
        wf_autocast_end();
        wf_tensor *loss = wf_mean_all(wf_to_dtype(y, WF_F32));
        int rc = !loss || wf_backward(loss, NULL, false);
        wf_scope_end();
        if (rc) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    }
    if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index);
    double ms = 1000.0 * (now() - t0) / steps;
    printf("{\"impl\":\"weft\",\"device\":\"%s\",\"batch\":%lld,\"seq\":%lld,\"width\":%lld,\"block_ms\":%.3f}\n",
           device, (long long)B, (long long)T, (long long)C, ms);
    for (int i = 0; i < 4; i++) wf_module_free(mods[i]);
    wf_tensor_free(x);
    return 0;
}
