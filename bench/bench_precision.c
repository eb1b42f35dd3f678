/* bench/bench_precision.c: one CPU training step of the Fashion-MNIST MLP (784-256-128-10,
 * cross-entropy, Adam) on a fixed random batch, per precision plugin, and the ratio of each
 * to "32-true". The goal for "bf16-mixed" on the CPU: at most 1.5x the f32 step.
 *
 *   bench_precision [--batch 64] [--steps 200] [--precisions 32-true,bf16-mixed,bf16-true]
 * Last line: {"bench":"precision","batch":64,"32-true_ms":...,"bf16-mixed_ms":...,"bf16-mixed_ratio":...} */
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

static double step_ms(const char *name, int64_t batch, int steps) {
    wf_precision *p = wf_precision_new(name, WF_CPU, NULL, 0);
    if (!p) { fprintf(stderr, "error: %s\n", wf_error_message()); exit(1); }
    wf_manual_seed(0);
    wf_module *m = wf_sequential_new(6, wf_flatten_new(1, -1), wf_linear_new(784, 256, true), wf_relu_new(),
                                     wf_linear_new(256, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
    if (!m || wf_precision_convert_module(p, m)) { fprintf(stderr, "error: %s\n", wf_error_message()); exit(1); }
    wf_tensor *params[8];
    int np = wf_module_parameters(m, params, NULL, 8);
    wf_optimizer *opt = wf_adam_new(params, np, &(wf_adam_opts){ .lr = 1e-3 });
    wf_tensor *x = wf_randn(WF_SHAPE(batch, 1, 28, 28), WF_F32);
    wf_tensor *y = wf_randint(0, 10, WF_SHAPE(batch), WF_I64);
    int warm = 20;
    double t0 = 0, phase[3] = { 0, 0, 0 };
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) t0 = now();
        wf_scope_begin();
        double ta = now();
        wf_precision_forward_begin(p);
        wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, wf_precision_convert_input(p, x)), y, NULL);
        wf_precision_forward_end(p);
        wf_optimizer_zero_grad(opt, true);
        double tb = now();
        int rc = (!loss || wf_precision_backward(p, loss));
        double tc = now();
        rc = rc || wf_precision_optimizer_step(p, opt, NULL);
        if (s >= warm) { phase[0] += tb - ta; phase[1] += tc - tb; phase[2] += now() - tc; }
        wf_scope_end();
        if (rc) { fprintf(stderr, "error (%s): %s\n", name, wf_error_message()); exit(1); }
    }
    double ms = 1000.0 * (now() - t0) / steps;
    fprintf(stderr, "%-12s forward %.3f  backward %.3f  optimizer %.3f ms\n", name, 1000 * phase[0] / steps,
            1000 * phase[1] / steps, 1000 * phase[2] / steps);
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_tensor_free(x);
    wf_tensor_free(y);
    wf_precision_free(p);
    return ms;
}

int main(int argc, char **argv) {
    int64_t batch = 64;
    int steps = 200;
    char list[256] = "32-true,bf16-mixed,bf16-true";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precisions")) snprintf(list, sizeof list, "%s", argv[i + 1]);
        else { fprintf(stderr, "usage: %s [--batch N] [--steps N] [--precisions a,b,c]\n", argv[0]); return 2; }
    }
    if (batch < 1 || steps < 1) { fprintf(stderr, "error: --batch and --steps must be positive\n"); return 2; }
    char json[1024];
    int off = snprintf(json, sizeof json, "{\"bench\":\"precision\",\"device\":\"cpu\",\"batch\":%lld", (long long)batch);
    double base = step_ms("32-true", batch, steps);
    printf("%-12s %8.3f ms/step\n", "32-true", base);
    off += snprintf(json + off, sizeof json - (size_t)off, ",\"32-true_ms\":%.4f", base);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "32-true")) continue;
        double ms = step_ms(tok, batch, steps);
        printf("%-12s %8.3f ms/step  (%.2fx 32-true)\n", tok, ms, ms / base);
        if ((size_t)off < sizeof json)
            off += snprintf(json + off, sizeof json - (size_t)off, ",\"%s_ms\":%.4f,\"%s_ratio\":%.3f", tok, ms, tok, ms / base);
    }
    printf("%s}\n", json);
    return 0;
}
