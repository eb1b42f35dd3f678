/* examples/grad_accumulation.c: gradient accumulation as Fabric's docs show it
 * ("Efficient Gradient Accumulation"): K micro-batches are forwarded and backwarded inside
 * no_backward_sync (no gradient synchronization between processes while accumulating; a
 * no-op on one device), and the optimizer steps once every K micro-batches:
 *
 *     for (iteration, batch) in enumerate(dataloader):
 *         is_accumulating = (iteration + 1) % K != 0
 *         with fabric.no_backward_sync(model, enabled=is_accumulating):
 *             loss = loss_fn(model(x), y) / K
 *             fabric.backward(loss)          # gradients add up while zero_grad is not called
 *         if not is_accumulating:
 *             optimizer.step()
 *             optimizer.zero_grad()
 *
 * (Fabric's page writes `is_accumulating = iteration % 8 != 0`, which also steps after the very
 * first batch; counting from iteration + 1 makes every step cover exactly K micro-batches.)
 * The loss is divided by K, so K micro-batches of B samples give the gradient of one batch of
 * K * B samples (the "effective batch"). Before training, the program checks that on the first
 * K micro-batches: the accumulated gradient against the gradient of the concatenated batch.
 *
 *   grad_accumulation [--batch 16] [--accumulate 4] [--epochs 1] [--max-steps N] [--lr X]
 *                     [--data DIR] [--seed S] [--accelerator auto|cpu|cuda] [--precision NAME]
 *
 * MLP 784-128-10 with SGD (momentum 0.9) on Fashion-MNIST. --max-steps counts optimizer steps.
 * Ends with one JSON line. */
#include "weft/weft.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/fabric.h"

#include <math.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_K 1024

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!*s || isspace((unsigned char)*s)) return false;   /* strto* would skip the spaces */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The largest |a - b| between the accumulated gradients of K micro-batches and the gradient
 * of the same samples as one batch (both computed here; the gradients are zeroed after). */
static int check_equivalence(wf_fabric *fab, wf_module *model, wf_optimizer *opt, wf_fabric_loader *dl, int64_t k,
                             double *max_diff, double *max_grad) {
    wf_tensor *params[16], *acc[16], *xs[MAX_K], *ys[MAX_K];
    int np = wf_module_parameters(model, params, NULL, 16), rc = 0;
    int64_t got = 0;
    *max_diff = *max_grad = 0;
    wf_scope_begin();
    wf_optimizer_zero_grad(opt, true);
    for (; got < k && rc >= 0; got++) {
        wf_tensor *b[2];
        rc = wf_fabric_loader_next(dl, b);
        if (rc != 1) break;
        xs[got] = b[0];
        ys[got] = b[1];
        bool is_accumulating = got + 1 < k;
        wf_fabric_no_backward_sync_begin(fab, model, is_accumulating);
        wf_tensor *loss = wf_div_scalar(wf_cross_entropy(wf_module_forward(model, b[0]), b[1], NULL), (double)k);
        if (!loss || wf_fabric_backward(fab, loss, model)) rc = -1;
        wf_fabric_no_backward_sync_end(fab);
    }
    if (rc >= 0 && got < k) rc = wf_set_error(WF_EINVAL, "check: the loader has fewer than %lld batches", (long long)k);
    if (rc >= 0) {
        for (int i = 0; i < np; i++) acc[i] = wf_clone(wf_grad(params[i]));
        wf_optimizer_zero_grad(opt, true);
        wf_tensor *loss = wf_cross_entropy(wf_module_forward(model, wf_cat(xs, (int)k, 0)), wf_cat(ys, (int)k, 0), NULL);
        if (!loss || wf_fabric_backward(fab, loss, model)) rc = -1;
        for (int i = 0; rc >= 0 && i < np; i++) {
            WF_NO_GRAD {
                *max_diff = fmax(*max_diff, wf_item(wf_amax(wf_abs(wf_sub(acc[i], wf_grad(params[i]))), NULL, 0, false)));
                *max_grad = fmax(*max_grad, wf_item(wf_amax(wf_abs(acc[i]), NULL, 0, false)));
            }
        }
    }
    wf_optimizer_zero_grad(opt, true);
    wf_scope_end();
    return rc < 0 ? rc : 0;
}

static double evaluate(wf_module *model, wf_fabric_loader *dl) {
    int64_t correct = 0, total = 0;
    wf_module_train(model, false);
    WF_NO_GRAD {
        for (;;) {
            wf_tensor *b[2];
            wf_scope_begin();
            int rc = wf_fabric_loader_next(dl, b);
            if (rc == 1) {
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(wf_argmax(wf_module_forward(model, b[0]), 1, false), b[1])));
                total += wf_size(b[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    wf_module_train(model, true);
    return total ? (double)correct / (double)total : 0.0;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--batch B] [--accumulate K] [--epochs N] [--max-steps N] [--lr X] [--data DIR] "
                    "[--seed S] [--accelerator auto|cpu|cuda] [--precision NAME]\n", argv0);
}

int main(int argc, char **argv) {
    const char *data = NULL, *accelerator = "auto", *precision = "32-true";
    int64_t batch = 16, k = 4, epochs = 1, max_steps = -1, seed = 7;
    double lr = 0.05;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(argv[0]); return 0; }
        static const char *const value_flags[] = { "--batch", "--accumulate", "--epochs", "--max-steps", "--seed", "--lr", "--data", "--accelerator", "--precision", NULL };
        bool known = false;
        for (const char *const *f = value_flags; *f; f++) known = known || !strcmp(a, *f);
        if (!known) { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); usage(argv[0]); return 2; }
        bool ok = true;
        if (!strcmp(a, "--batch")) ok = parse_i64(v, 1, INT32_MAX, &batch);
        else if (!strcmp(a, "--accumulate")) ok = parse_i64(v, 1, MAX_K, &k);
        else if (!strcmp(a, "--epochs")) ok = parse_i64(v, 1, 1000, &epochs);
        else if (!strcmp(a, "--max-steps")) ok = parse_i64(v, 1, INT64_MAX, &max_steps);
        else if (!strcmp(a, "--seed")) ok = parse_i64(v, 0, INT64_MAX, &seed);
        else if (!strcmp(a, "--lr")) {
            char *end;
            errno = 0;
            lr = strtod(v, &end);
            ok = *v && !isspace((unsigned char)*v) && !errno && end != v && !*end && lr > 0 && isfinite(lr);
        }
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--accelerator")) accelerator = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!ok) { fprintf(stderr, "error: bad value for %s: '%s'\n", a, v); usage(argv[0]); return 2; }
        i++;
    }

    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = accelerator, .precision = precision });
    if (!fab) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }
    wf_seed_everything((uint64_t)seed, true);
    wf_dataset train, test;
    if (wf_fashion_mnist(data, true, 0.2860, 0.3530, &train) || wf_fashion_mnist(data, false, 0.2860, 0.3530, &test)) {
        fprintf(stderr, "error: %s\n(install Debian's dataset-fashion-mnist or pass --data DIR)\n", wf_error_message());
        wf_fabric_free(fab);
        return 1;
    }
    wf_fabric_loader *train_dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&train, &(wf_dataloader_opts){
        .batch_size = batch, .shuffle = true, .seed = (uint64_t)seed + 1, .num_workers = 1 }), NULL);
    wf_fabric_loader *test_dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&test, &(wf_dataloader_opts){
        .batch_size = 1000 }), NULL);
    wf_module *model = wf_sequential_new(4, wf_flatten_new(1, -1), wf_linear_new(784, 128, true), wf_relu_new(),
                                         wf_linear_new(128, 10, true));
    wf_tensor *params[16];
    int np = model ? wf_module_parameters(model, params, NULL, 16) : 0;
    wf_optimizer *opt = model ? wf_sgd_new(params, np, &(wf_sgd_opts){ .lr = lr, .momentum = 0.9 }) : NULL;
    if (!train_dl || !test_dl || !opt || wf_fabric_setup(fab, model, &opt, 1, NULL)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    int64_t per_epoch = wf_fabric_loader_len(train_dl);
    printf("micro-batch %lld x accumulate %lld = effective batch %lld; %lld micro-batches per epoch\n",
           (long long)batch, (long long)k, (long long)(batch * k), (long long)per_epoch);

    /* the effective batch, checked: K accumulated micro-batches == one batch of K*B samples */
    double max_diff, max_grad;
    if (wf_fabric_loader_set_epoch(train_dl, 0) || check_equivalence(fab, model, opt, train_dl, k, &max_diff, &max_grad)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    printf("check: accumulated gradient vs one batch of %lld: max |diff| %.3g (max |grad| %.3g)\n",
           (long long)(batch * k), max_diff, max_grad);

    double t0 = now(), loss_sum = 0, last_loss = 0;
    int64_t opt_steps = 0, micro = 0, iteration = 0;
    int rc = 0;
    bool done = false;
    for (int64_t epoch = 0; epoch < epochs && !done && rc >= 0; epoch++) {
        rc = wf_fabric_loader_set_epoch(train_dl, (uint64_t)epoch);
        iteration = 0;
        while (rc >= 0 && !done) {
            wf_tensor *b[2];
            wf_scope_begin();
            int got = wf_fabric_loader_next(train_dl, b);
            if (got < 0) rc = got;
            if (got == 1) {
                bool is_accumulating = (iteration + 1) % k != 0;
                /* forward and backward inside no_backward_sync while accumulating */
                if (wf_fabric_no_backward_sync_begin(fab, model, is_accumulating)) rc = -1;
                else {
                    wf_tensor *loss = wf_cross_entropy(wf_module_forward(model, b[0]), b[1], NULL);
                    if (!loss || wf_fabric_backward(fab, wf_div_scalar(loss, (double)k), model)) rc = -1;
                    else loss_sum += wf_item(loss) / (double)k;
                    if (wf_fabric_no_backward_sync_end(fab)) rc = -1;
                }
                micro++;
                iteration++;
                if (rc >= 0 && !is_accumulating) {
                    /* the optimizer steps once per effective batch */
                    if (wf_fabric_step(fab, opt, NULL)) rc = -1;
                    wf_optimizer_zero_grad(opt, true);
                    opt_steps++;
                    last_loss = loss_sum;
                    loss_sum = 0;
                    if (opt_steps % 100 == 0 || opt_steps == max_steps)
                        printf("step %lld (micro-batch %lld): loss %.4f\n", (long long)opt_steps, (long long)micro, last_loss);
                    if (max_steps > 0 && opt_steps >= max_steps) done = true;
                }
            }
            wf_scope_end();
            if (got == 0) break;
        }
        /* micro-batches left over at the end of an epoch (fewer than K) are dropped */
        wf_optimizer_zero_grad(opt, true);
        loss_sum = 0;
    }
    if (rc < 0) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    double train_s = now() - t0, acc = evaluate(model, test_dl);
    printf("%lld optimizer steps over %lld micro-batches (%lld per step), test accuracy %.4f\n",
           (long long)opt_steps, (long long)micro, (long long)k, acc);
    printf("{\"batch\":%lld,\"accumulate\":%lld,\"effective_batch\":%lld,\"micro_batches\":%lld,\"optimizer_steps\":%lld,"
           "\"loss\":%.6f,\"test_acc\":%.4f,\"check_max_diff\":%.3g,\"train_s\":%.2f}\n",
           (long long)batch, (long long)k, (long long)(batch * k), (long long)micro, (long long)opt_steps, last_loss, acc,
           max_diff, train_s);
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_fabric_loader_free(train_dl);
    wf_fabric_loader_free(test_dl);
    wf_fabric_free(fab);
    return 0;
}
