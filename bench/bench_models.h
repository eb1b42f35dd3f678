/* bench/bench_models.h: what the training-step benchmarks share: a monotonic clock and the
 * Fashion-MNIST models (MLP 784-256-128-10; CNN conv(32)-pool-conv(64)-pool-fc(128)-fc(10)),
 * the same as the PyTorch peers build. */
#ifndef WEFT_BENCH_MODELS_H
#define WEFT_BENCH_MODELS_H

#include <time.h>

#include "weft/weft.h"

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline wf_module *bench_make_model(bool cnn) {
    if (!cnn)
        return wf_sequential_new(6, wf_flatten_new(1, -1), wf_linear_new(784, 256, true), wf_relu_new(),
                                 wf_linear_new(256, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
    wf_pool2d_opts pool = { .kernel = { 2, 2 } };
    return wf_sequential_new(10,
        wf_conv2d_new(1, 32, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 }, .padding = { 1, 1 } }), wf_relu_new(),
        wf_max_pool2d_new(&pool),
        wf_conv2d_new(32, 64, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 }, .padding = { 1, 1 } }), wf_relu_new(),
        wf_max_pool2d_new(&pool),
        wf_flatten_new(1, -1), wf_linear_new(64 * 7 * 7, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
}

#endif
