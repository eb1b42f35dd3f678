/* bench/bench_train_step.c: time one training step (forward, cross-entropy, backward, Adam)
 * of the Fashion-MNIST MLP or CNN on a fixed random batch. The PyTorch peer is
 * bench/peer_train_step.py with the same arguments; bench/run_train_step.sh runs both.
 *
 *   bench_train_step --model mlp|cnn [--batch 64] [--steps 200] [--device cpu|cuda]
 * Last line: {"impl":"weft","model":"mlp","device":"cpu","batch":64,"step_ms":...} */
#include "bench_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *model = "mlp", *device = "cpu";
    int64_t batch = 64;
    int steps = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
    }
    bool cnn = !strcmp(model, "cnn");
    wf_device dev;
    if (wf_device_parse(device, &dev) || !wf_zeros_on(WF_SHAPE(1), WF_F32, dev)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    wf_clear_error();
    wf_manual_seed(0);
    wf_module *m = bench_make_model(cnn);
    if (!m || wf_module_to(m, dev, WF_DTYPE_DEFAULT)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_tensor *params[32];
    int np = wf_module_parameters(m, params, NULL, 32);
    wf_optimizer *opt = wf_adam_new(params, np, NULL);
    wf_tensor *x = wf_to_device(wf_randn(WF_SHAPE(batch, 1, 28, 28), WF_F32), dev);
    wf_tensor *y = wf_to_device(wf_randint(0, 10, WF_SHAPE(batch), WF_I64), dev);
    if (!opt || !x || !y) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int warm = steps / 10 + 3;
    double t0 = 0, last = 0, phase[3] = { 0, 0, 0 };
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) {
            if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index);
            t0 = bench_now();
        }
        wf_scope_begin();
        double ta = bench_now();
        wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, x), y, NULL);
        wf_optimizer_zero_grad(opt, true);
        double tb = bench_now();
        int rc = (!loss || wf_backward(loss, NULL, false));
        double tc = bench_now();
        rc = rc || wf_optimizer_step(opt);
        if (s >= warm) { phase[0] += tb - ta; phase[1] += tc - tb; phase[2] += bench_now() - tc; }
        if (s == warm + steps - 1) last = wf_item(loss);
        wf_scope_end();
        if (rc) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    }
    if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index);
    double ms = 1000.0 * (bench_now() - t0) / steps;
    /* the phase split is host time: meaningful on the CPU (CUDA work is asynchronous) */
    printf("{\"impl\":\"weft\",\"model\":\"%s\",\"device\":\"%s\",\"batch\":%lld,\"step_ms\":%.4f,\"final_loss\":%.4f,"
           "\"forward_ms\":%.4f,\"backward_ms\":%.4f,\"optimizer_ms\":%.4f}\n",
           model, device, (long long)batch, ms, last, 1000 * phase[0] / steps, 1000 * phase[1] / steps,
           1000 * phase[2] / steps);
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_tensor_free(x);
    wf_tensor_free(y);
    return 0;
}
