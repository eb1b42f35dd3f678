/* bench/bench_fabric_overhead.c: Fabric's own cost per training step over the plain-C loop
 * on the same model and data, measured side by side in one run (alternating blocks of steps,
 * median of the blocks), on the CPU with "32-true". With --strategy ddp this is DDP's cost at
 * world size 1 (one process: the single-device strategy, as nothing is exchanged).
 *
 *   bench_fabric_overhead [--model mlp|cnn] [--strategy auto] [--steps-per-block 50]
 *                         [--blocks 15] [--batch 64]
 *
 * Last line: {"model":...,"strategy":...,"plain_step_ms":...,"fabric_step_ms":...,"overhead_pct":...} */
#include "bench_models.h"
#include "weft/fabric.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define now bench_now

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double block(wf_fabric *fab, wf_module *m, wf_optimizer *o, wf_tensor *x, wf_tensor *y, int steps) {
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        wf_scope_begin();
        wf_tensor *in = fab ? wf_fabric_to_device(fab, x) : x;
        wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, in), y, NULL);
        wf_optimizer_zero_grad(o, true);
        int rc = fab ? (wf_fabric_backward(fab, loss, m) || wf_fabric_step(fab, o, NULL))
                     : (wf_backward(loss, NULL, false) || wf_optimizer_step(o));
        wf_scope_end();
        if (rc) { fprintf(stderr, "error: %s\n", wf_error_message()); exit(1); }
    }
    return (now() - t0) / steps;
}

int main(int argc, char **argv) {
    int per_block = 50, blocks = 15;
    int64_t batch = 64;
    const char *model = "mlp", *strategy = "auto";
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long n = v ? strtol(v, &end, 10) : 0;
        bool num_ok = v && *v && end && !*end;
        if (!v) { fprintf(stderr, "%s needs a value\n", argv[i]); return 2; }
        if (!strcmp(argv[i], "--steps-per-block") && num_ok) per_block = (int)n;
        else if (!strcmp(argv[i], "--blocks") && num_ok) blocks = (int)n;
        else if (!strcmp(argv[i], "--batch") && num_ok) batch = n;
        else if (!strcmp(argv[i], "--model") && (!strcmp(v, "mlp") || !strcmp(v, "cnn"))) model = v;
        else if (!strcmp(argv[i], "--strategy")) strategy = v;
        else { fprintf(stderr, "bad argument %s %s\n", argv[i], v); return 2; }
    }
    if (per_block < 1 || blocks < 1 || batch < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    bool cnn = !strcmp(model, "cnn");
    wf_manual_seed(0);
    wf_tensor *x = cnn ? wf_randn(WF_SHAPE(batch, 1, 28, 28), WF_F32) : wf_randn(WF_SHAPE(batch, 784), WF_F32);
    wf_tensor *y = wf_randint(0, 10, WF_SHAPE(batch), WF_I64);
    wf_module *m1 = bench_make_model(cnn), *m2 = bench_make_model(cnn);
    wf_tensor *p[16];
    int n = wf_module_parameters(m1, p, NULL, 16);
    wf_optimizer *o1 = wf_adam_new(p, n, NULL);
    n = wf_module_parameters(m2, p, NULL, 16);
    wf_optimizer *o2 = wf_adam_new(p, n, NULL);
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .precision = "32-true",
                                                        .strategy = strategy, .devices = "1" });
    if (!fab || wf_fabric_setup(fab, m2, &o2, 1, NULL)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    block(NULL, m1, o1, x, y, per_block);   /* warm up both */
    block(fab, m2, o2, x, y, per_block);
    double *a = calloc((size_t)blocks, sizeof *a), *b = calloc((size_t)blocks, sizeof *b);
    for (int k = 0; k < blocks; k++) {
        if (k % 2) { b[k] = block(fab, m2, o2, x, y, per_block); a[k] = block(NULL, m1, o1, x, y, per_block); }
        else { a[k] = block(NULL, m1, o1, x, y, per_block); b[k] = block(fab, m2, o2, x, y, per_block); }
    }
    qsort(a, (size_t)blocks, sizeof *a, cmp);
    qsort(b, (size_t)blocks, sizeof *b, cmp);
    double pa = a[blocks / 2] * 1e3, pb = b[blocks / 2] * 1e3;
    printf("%s, batch %lld, Adam, cpu 32-true, strategy %s, %d blocks of %d steps (median)\n",
           cnn ? "CNN" : "MLP 784-256-128-10", (long long)batch, strategy, blocks, per_block);
    printf("plain-C loop: %.4f ms/step\nFabric loop:  %.4f ms/step\n", pa, pb);
    printf("{\"model\":\"%s\",\"strategy\":\"%s\",\"plain_step_ms\":%.4f,\"fabric_step_ms\":%.4f,\"overhead_pct\":%.2f}\n",
           model, strategy, pa, pb, 100.0 * (pb - pa) / pa);
    free(a); free(b);
    wf_fabric_free(fab);
    wf_optimizer_free(o1); wf_optimizer_free(o2);
    wf_module_free(m1); wf_module_free(m2);
    wf_tensor_free(x); wf_tensor_free(y);
    return 0;
}
