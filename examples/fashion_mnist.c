/* examples/fashion_mnist.c: train an MLP or a CNN on Fashion-MNIST with nn + optim.
 *
 *   fashion_mnist --model mlp|cnn --epochs N [--batch 64] [--lr X] [--data DIR]
 *                 [--device cpu|cuda] [--seed S] [--workers W] [--precision 32-true|bf16-mixed|...]
 *
 * MLP: 784-256-128-10. CNN: conv(32)-pool-conv(64)-pool-fc(128)-fc(10). Adam, with the
 * learning rate annealed to zero over the run (cosine, per step; --no-schedule keeps it fixed).
 * Shows a progress bar on a terminal (plain lines otherwise), per-epoch loss and accuracy,
 * and ends with one JSON line. */
#include "weft/weft.h"
#include "example_args.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/precision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static wf_module *make_mlp(void) {
    return wf_sequential_new(6, wf_flatten_new(1, -1), wf_linear_new(784, 256, true), wf_relu_new(),
                             wf_linear_new(256, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
}

static wf_module *make_cnn(void) {
    wf_pool2d_opts pool = { .kernel = { 2, 2 } };
    return wf_sequential_new(10,
        wf_conv2d_new(1, 32, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 }, .padding = { 1, 1 } }), wf_relu_new(),
        wf_max_pool2d_new(&pool),
        wf_conv2d_new(32, 64, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 }, .padding = { 1, 1 } }), wf_relu_new(),
        wf_max_pool2d_new(&pool),
        wf_flatten_new(1, -1), wf_linear_new(64 * 7 * 7, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
}

static void progress(int epoch, int64_t step, int64_t total, double loss, bool tty) {
    if (!tty) return;
    int width = 30, done = (int)(width * step / (total ? total : 1));
    printf("\repoch %d [", epoch);
    for (int i = 0; i < width; i++) putchar(i < done ? '=' : (i == done ? '>' : ' '));
    printf("] %lld/%lld loss %.4f", (long long)step, (long long)total, loss);
    fflush(stdout);
}

/* accuracy over a whole loader */
static double evaluate(wf_module *model, wf_dataloader *dl, wf_device dev, wf_precision *prec) {
    int64_t correct = 0, total = 0;
    wf_tensor *b[2];
    wf_module_train(model, false);
    WF_NO_GRAD {
        for (;;) {
            wf_scope_begin();
            int rc = wf_dataloader_next(dl, b);
            if (rc == 1) {
                wf_precision_forward_begin(prec);
                wf_tensor *logits = wf_module_forward(model, wf_precision_convert_input(prec, wf_to_device(b[0], dev)));
                wf_precision_forward_end(prec);
                wf_tensor *pred = wf_argmax(logits, 1, false);
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(pred, wf_to_device(b[1], dev))));
                total += wf_size(b[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    wf_module_train(model, true);
    return total ? (double)correct / (double)total : 0.0;
}

#define USAGE_FLAGS "--model mlp|cnn --epochs N [--batch 64] [--lr X] [--data DIR] [--device cpu|cuda] [--seed S] [--workers W] [--precision NAME] [--no-schedule]"

int main(int argc, char **argv) {
    const char *model_name = "mlp", *data = NULL, *device = "cpu", *precision = "32-true";
    int epochs = 0, workers = 1;
    int64_t batch = 64;
    double lr = 1e-3;
    uint64_t seed = 0;
    bool schedule = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-schedule")) { schedule = false; continue; }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return 2; }
        bool ok = true, known = true;
        if (!strcmp(a, "--model")) model_name = v;
        else if (!strcmp(a, "--epochs")) ok = ex_parse_int(v, 1, 1000000, &epochs);
        else if (!strcmp(a, "--batch")) ok = ex_parse_i64(v, 1, INT64_MAX, &batch);
        else if (!strcmp(a, "--lr")) ok = ex_parse_double(v, true, &lr);
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--seed")) ok = ex_parse_u64(v, &seed);
        else if (!strcmp(a, "--workers")) ok = ex_parse_int(v, 0, 64, &workers);
        else if (!strcmp(a, "--precision")) precision = v;
        else ok = known = false;
        if (!ok) {
            if (known) fprintf(stderr, "error: invalid value '%s' for %s\n", v, a);
            else fprintf(stderr, "error: unknown option %s\n", a);
            fprintf(stderr, "usage: %s " USAGE_FLAGS "\n", argv[0]);
            return 2;
        }
        i++;
    }
    bool is_cnn = !strcmp(model_name, "cnn");
    if (!is_cnn && strcmp(model_name, "mlp")) { fprintf(stderr, "error: --model must be mlp or cnn, got '%s'\n", model_name); return 2; }
    if (epochs <= 0) epochs = is_cnn ? 3 : 5;
    if (batch < 1 || !(lr > 0) || workers < 0) { fprintf(stderr, "error: --batch, --lr must be positive, --workers >= 0\n"); return 2; }
    wf_device dev;
    if (wf_device_parse(device, &dev) || wf_set_default_device(dev)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }
    wf_set_default_device(WF_CPU);   /* data stays on the host; the model moves */
    char warning[512];
    wf_precision *prec = wf_precision_new(precision, dev, warning, sizeof warning);
    if (!prec) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }
    if (warning[0]) fprintf(stderr, "warning: %s\n", warning);
    wf_manual_seed(seed);

    wf_dataset train, test;
    if (wf_fashion_mnist(data, true, 0.2860, 0.3530, &train) || wf_fashion_mnist(data, false, 0.2860, 0.3530, &test)) {
        fprintf(stderr, "error: %s\n(install Debian's dataset-fashion-mnist or pass --data DIR)\n", wf_error_message());
        return 1;
    }
    wf_dataloader *train_dl = wf_dataloader_new(&train, &(wf_dataloader_opts){ .batch_size = batch, .shuffle = true,
                                                                               .seed = seed + 1, .num_workers = workers });
    /* the test batches (1000 images, 3 MB as f32) are drawn on this thread: prefetching them
     * would hold three at once for ten batches' worth of overlap */
    wf_dataloader *test_dl = wf_dataloader_new(&test, &(wf_dataloader_opts){ .batch_size = 1000 });
    wf_module *model = is_cnn ? make_cnn() : make_mlp();
    if (!train_dl || !test_dl || !model || wf_module_to(model, dev, WF_DTYPE_DEFAULT) ||
        wf_precision_convert_module(prec, model)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    wf_tensor *params[64];
    int np = wf_module_parameters(model, params, NULL, 64);
    wf_optimizer *opt = wf_adam_new(params, np, &(wf_adam_opts){ .lr = lr });
    if (!opt) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int64_t steps_per_epoch = wf_dataloader_len(train_dl), steps = 0;
    wf_lr_scheduler *sched = schedule ? wf_cosine_annealing_lr_new(opt, (int)(epochs * steps_per_epoch), 0.0) : NULL;
    if (schedule && !sched) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }

    bool tty = isatty(STDOUT_FILENO);
    printf("%s: %lld parameters, %lld steps per epoch\n", model_name, (long long)wf_module_num_parameters(model),
           (long long)steps_per_epoch);
    double t0 = now(), acc = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        double loss_sum = 0;
        int64_t n = 0, correct = 0, seen = 0;
        wf_tensor *b[2];
        for (;;) {
            wf_scope_begin();
            int rc = wf_dataloader_next(train_dl, b);
            if (rc == 1) {
                wf_tensor *x = wf_precision_convert_input(prec, wf_to_device(b[0], dev)), *y = wf_to_device(b[1], dev);
                wf_precision_forward_begin(prec);
                wf_tensor *logits = wf_module_forward(model, x);
                wf_tensor *loss = wf_cross_entropy(logits, y, NULL);
                wf_precision_forward_end(prec);
                wf_optimizer_zero_grad(opt, true);
                bool skipped = false;   /* 16-mixed skips steps with inf/NaN gradients: the schedule waits */
                if (!loss || wf_precision_backward(prec, loss) || wf_precision_optimizer_step(prec, opt, &skipped) ||
                    (sched && !skipped && wf_lr_scheduler_step(sched))) rc = -1;
                else {
                    loss_sum += wf_item(loss);
                    WF_NO_GRAD { correct += (int64_t)wf_item(wf_sum_all(wf_eq(wf_argmax(logits, 1, false), y))); }
                    seen += wf_size(y, 0);
                    n++;
                    steps++;
                    if (n % 50 == 0 || n == steps_per_epoch) progress(epoch, n, steps_per_epoch, loss_sum / (double)n, tty);
                }
            }
            wf_scope_end();
            if (rc < 0) { fprintf(stderr, "\nerror: %s\n", wf_error_message()); return 1; }
            if (rc == 0) break;
        }
        acc = evaluate(model, test_dl, dev, prec);
        printf("%sepoch %d: train_loss %.4f train_acc %.4f test_acc %.4f (%.1f s)\n", tty ? "\n" : "", epoch,
               loss_sum / (double)(n ? n : 1), (double)correct / (double)(seen ? seen : 1), acc, now() - t0);
        fflush(stdout);
    }
    double train_s = now() - t0;
    printf("{\"model\":\"%s\",\"precision\":\"%s\",\"epochs\":%d,\"test_acc\":%.4f,\"train_s\":%.1f,\"step_ms\":%.3f}\n",
           model_name, wf_precision_name(prec), epochs, acc, train_s, 1000.0 * train_s / (double)(steps ? steps : 1));
    wf_lr_scheduler_free(sched);
    wf_optimizer_free(opt);
    wf_precision_free(prec);
    wf_module_free(model);
    wf_dataloader_free(train_dl);
    wf_dataloader_free(test_dl);
    return 0;
}
