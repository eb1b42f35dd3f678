/* examples/softmax_regression.c: Fashion-MNIST softmax regression with raw tensor ops and
 * autograd only (no nn, no optim): the smallest real training loop weft can run.
 *
 *   build/examples/softmax_regression [--epochs N] [--batch B] [--lr X] [--data DIR] [--seed S]
 *
 * Prints one line per epoch and, last, one JSON object with the figures. */
#include "weft/weft.h"
#include "example_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; } } while (0)

/* accuracy of logits = x @ W + b on a whole split */
static double evaluate(wf_dataloader *dl, wf_tensor *W, wf_tensor *b) {
    int64_t correct = 0, total = 0;
    wf_tensor *batch[2];
    WF_NO_GRAD {
        for (;;) {
            wf_scope_begin();
            int rc = wf_dataloader_next(dl, batch);
            if (rc == 1) {
                wf_tensor *x = wf_flatten(batch[0], 1, -1);
                wf_tensor *pred = wf_argmax(wf_add(wf_matmul(x, W), b), 1, false);
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(pred, batch[1])));
                total += wf_size(batch[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    return total ? (double)correct / (double)total : 0.0;
}

int main(int argc, char **argv) {
    int epochs = 3;
    int64_t batch_size = 64;
    double lr = 0.1;
    uint64_t seed = 0;
    const char *data = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (ok && !strcmp(a, "--epochs")) ok = ex_parse_int(v, 1, 1000000, &epochs);
        else if (ok && !strcmp(a, "--batch")) ok = ex_parse_i64(v, 1, INT64_MAX, &batch_size);
        else if (ok && !strcmp(a, "--lr")) ok = ex_parse_double(v, true, &lr);
        else if (ok && !strcmp(a, "--data")) data = v;
        else if (ok && !strcmp(a, "--seed")) ok = ex_parse_u64(v, &seed);
        else ok = false;
        if (!ok) {
            if (v) fprintf(stderr, "error: invalid option or value: %s %s\n", a, v);
            fprintf(stderr, "usage: %s [--epochs N] [--batch B] [--lr X] [--data DIR] [--seed S]\n", argv[0]);
            return 2;
        }
        i++;
    }
    if (epochs < 1 || batch_size < 1 || !(lr > 0)) { fprintf(stderr, "error: epochs, batch and lr must be positive\n"); return 2; }
    wf_manual_seed(seed);

    wf_dataset train, test;
    CHECK(wf_fashion_mnist(data, true, 0, 0, &train) == 0);
    CHECK(wf_fashion_mnist(data, false, 0, 0, &test) == 0);
    wf_dataloader *train_dl = wf_dataloader_new(&train, &(wf_dataloader_opts){ .batch_size = batch_size, .shuffle = true, .seed = seed + 1, .num_workers = 1 });
    wf_dataloader *test_dl = wf_dataloader_new(&test, &(wf_dataloader_opts){ .batch_size = 1000 });
    CHECK(train_dl && test_dl);

    /* parameters: owned by us (no scope is open here) */
    wf_tensor *W = wf_zeros(WF_SHAPE(784, 10), WF_F32), *b = wf_zeros(WF_SHAPE(10), WF_F32);
    CHECK(W && b);
    wf_set_requires_grad(W, true);
    wf_set_requires_grad(b, true);

    double t0 = now();
    int64_t steps = 0;
    for (int epoch = 0; epoch < epochs; epoch++) {
        double loss_sum = 0;
        int64_t nb = 0;
        wf_tensor *batch[2];
        for (;;) {
            wf_scope_begin();                       /* one step = one scope */
            int rc = wf_dataloader_next(train_dl, batch);
            if (rc == 1) {
                wf_tensor *x = wf_flatten(batch[0], 1, -1);                 /* [B,784] */
                wf_tensor *logp = wf_log_softmax(wf_add(wf_matmul(x, W), b), 1);
                wf_tensor *picked = wf_gather(logp, 1, wf_unsqueeze(batch[1], 1));
                wf_tensor *loss = wf_neg(wf_mean_all(picked));             /* cross-entropy */
                if (!loss || wf_backward(loss, NULL, false)) rc = -1;
                else {
                    loss_sum += wf_item(loss);
                    WF_NO_GRAD {                                            /* plain SGD */
                        wf_add_scaled_(W, wf_grad(W), -lr);
                        wf_add_scaled_(b, wf_grad(b), -lr);
                    }
                    wf_set_grad(W, NULL);
                    wf_set_grad(b, NULL);
                    nb++;
                    steps++;
                }
            }
            wf_scope_end();
            if (rc < 0) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
            if (rc == 0) break;
        }
        double acc = evaluate(test_dl, W, b);
        printf("epoch %d: loss %.4f test_acc %.4f\n", epoch + 1, loss_sum / (double)(nb ? nb : 1), acc);
        fflush(stdout);
    }
    double train_s = now() - t0;
    double acc = evaluate(test_dl, W, b);
    printf("{\"model\":\"softmax_regression\",\"epochs\":%d,\"test_acc\":%.4f,\"train_s\":%.2f,\"step_ms\":%.4f}\n",
           epochs, acc, train_s, 1000.0 * train_s / (double)(steps ? steps : 1));
    wf_tensor_free(W);
    wf_tensor_free(b);
    wf_dataloader_free(train_dl);
    wf_dataloader_free(test_dl);
    return 0;
}
