/* bench/bench_block_parts.c: the pieces of bench_transformer_block (16 x 1024 x 768, 12
 * heads, bf16 autocast) timed one by one on CUDA, forward + backward each, to see where the
 * block's time goes. Peer: bench/peer_block_parts.py.
 * Last line: one JSON object (ms per call). */
#include "weft/weft.h"
#include "weft/precision.h"

#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define DEV WF_CUDA(0)
typedef struct { wf_tensor *a, *b, *c, *g; wf_module *m; int which; } ctx;

static void step(ctx *c) {
    wf_tensor *y = NULL;
    switch (c->which) {
    case 0: y = wf_scaled_dot_product_attention(c->a, c->b, c->c, NULL, 0.0, true); break;
    case 1: { int64_t D = 768; y = wf_layer_norm(c->a, &D, 1, NULL, NULL, 1e-5); break; }
    case 2: wf_autocast_begin(WF_DEV_CUDA, WF_BF16); y = wf_module_forward(c->m, c->a); wf_autocast_end(); break;
    case 3: y = wf_gelu(c->a, WF_GELU_TANH); break;
    case 4: y = wf_add(c->a, c->b); break;
    case 5: y = wf_scaled_dot_product_attention(c->a, c->b, c->c, NULL, 0.0, true); c->g = NULL; break;
    }
    if (!y) { fprintf(stderr, "error: %s\n", wf_error_message()); return; }
    if (c->which != 5 && wf_backward(y, c->g, false)) fprintf(stderr, "error: %s\n", wf_error_message());
}

static double run(ctx *c, int steps) {
    for (int i = 0; i < 2; i++) WF_SCOPE { step(c); }
    wf_cuda_synchronize(0);
    double t0 = now();
    for (int i = 0; i < steps; i++) WF_SCOPE { step(c); }
    wf_cuda_synchronize(0);
    return 1000.0 * (now() - t0) / steps;
}

static wf_tensor *leaf(wf_tensor *t) { wf_set_requires_grad(t, true); return t; }

int main(void) {
    if (wf_cuda_device_count() < 1) return 77;
    wf_set_default_device(DEV);
    double ms[6];
    WF_SCOPE {
        ctx c = { 0 };
        c.a = leaf(wf_randn(WF_SHAPE(16, 12, 1024, 64), WF_BF16));
        c.b = leaf(wf_randn(WF_SHAPE(16, 12, 1024, 64), WF_BF16));
        c.c = leaf(wf_randn(WF_SHAPE(16, 12, 1024, 64), WF_BF16));
        c.g = wf_randn(WF_SHAPE(16, 12, 1024, 64), WF_BF16);
        c.which = 5; ms[5] = run(&c, 20);
        c.g = wf_randn(WF_SHAPE(16, 12, 1024, 64), WF_BF16);
        c.which = 0; ms[0] = run(&c, 20);
        c.a = leaf(wf_randn(WF_SHAPE(16, 1024, 768), WF_F32));
        c.g = wf_randn(WF_SHAPE(16, 1024, 768), WF_F32);
        c.which = 1; ms[1] = run(&c, 20);
        c.m = wf_linear_new(768, 3072, true);
        wf_module_to(c.m, DEV, WF_F32);
        c.g = wf_randn(WF_SHAPE(16, 1024, 3072), WF_BF16);
        c.which = 2; ms[2] = run(&c, 20);
        c.a = leaf(wf_randn(WF_SHAPE(16, 1024, 3072), WF_BF16));
        c.which = 3; ms[3] = run(&c, 20);
        c.a = leaf(wf_randn(WF_SHAPE(16, 1024, 768), WF_F32));
        c.b = leaf(wf_randn(WF_SHAPE(16, 1024, 768), WF_BF16));
        c.g = wf_randn(WF_SHAPE(16, 1024, 768), WF_F32);
        c.which = 4; ms[4] = run(&c, 20);
        wf_module_free(c.m);
    }
    printf("{\"impl\":\"weft\",\"sdpa_fwd\":%.3f,\"sdpa_fwd_bwd\":%.3f,\"layer_norm_fwd_bwd\":%.3f,\"linear_768x3072_fwd_bwd\":%.3f,"
           "\"gelu_tanh_bf16_fwd_bwd\":%.3f,\"residual_add_f32_bf16_fwd_bwd\":%.3f}\n", ms[5], ms[0], ms[1], ms[2], ms[3], ms[4]);
    return 0;
}
