/* examples/fabric_mnist.c: examples/fashion_mnist.c moved onto Fabric (the five steps of
 * Fabric's "Convert PyTorch code to Fabric"; diff the two files to see them).
 *
 *   fabric_mnist --model mlp|cnn --epochs N [--batch 64] [--lr X] [--data DIR]
 *                [--device auto|cpu|cuda] [--seed S] [--workers W] [--precision 32-true|bf16-mixed|...]
 *                [--checkpoint-dir DIR [--save-every N]]
 *
 * MLP: 784-256-128-10. CNN: conv(32)-pool-conv(64)-pool-fc(128)-fc(10). Adam, with the
 * learning rate annealed to zero over the run (cosine, per step; --no-schedule keeps it fixed).
 * Shows a progress bar on a terminal (plain lines otherwise), per-epoch loss and accuracy,
 * and ends with one JSON line.
 *
 * Checkpoints: with --checkpoint-dir DIR the run saves DIR/last.ckpt every --save-every steps
 * (default 100) and at each epoch's end: model, optimizer, schedule, RNG, precision (grad
 * scaler) and the loader's position, so a run killed mid-epoch loses at most N steps. When
 * DIR/last.ckpt exists at the start, the run resumes from it, automatically: under
 * `weft run --max-restarts` the restarted ranks get the same command line, so a flag that
 * must be added for the second start would not help them (Lightning users pass ckpt_path;
 * delete the file, or pick another DIR, to start over). The resumed run gives the bits the
 * uninterrupted one would have (its epoch's printed loss covers only the steps since). */
#include "weft/weft.h"
#include "example_args.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/precision.h"
#include "weft/fabric.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* accuracy over a whole loader; with several processes each rank sees its shard of the test
 * set, so the counts are summed over the ranks (Fabric's all_reduce) */
static double evaluate(wf_fabric *fab, wf_module *model, wf_fabric_loader *dl) {
    int64_t correct = 0, total = 0;
    wf_tensor *b[2];
    wf_module_train(model, false);
    WF_NO_GRAD {
        for (;;) {
            wf_scope_begin();
            int rc = wf_fabric_loader_next(dl, b);
            if (rc == 1) {
                wf_tensor *logits = wf_module_forward(model, b[0]);
                wf_tensor *pred = wf_argmax(logits, 1, false);
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(pred, b[1])));
                total += wf_size(b[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    wf_module_train(model, true);
    double counts[2] = { (double)correct, (double)total };
    WF_SCOPE {
        wf_tensor *c = wf_fabric_all_reduce(fab, wf_from_data(counts, WF_SHAPE(2), WF_F64), WF_FABRIC_SUM);
        if (!c || wf_to_array(c, counts, WF_F64)) counts[1] = 0;
    }
    return counts[1] > 0 ? counts[0] / counts[1] : 0.0;
}

#define USAGE_FLAGS "--model mlp|cnn --epochs N [--batch 64] [--lr X] [--data DIR] [--device auto|cpu|cuda] [--seed S] [--workers W] [--precision NAME] [--no-schedule] [--checkpoint-dir DIR [--save-every N]]"

int main(int argc, char **argv) {
    const char *model_name = "mlp", *data = NULL, *device = "auto", *precision = "32-true";
    int epochs = 0, workers = 1;
    int64_t batch = 64;
    double lr = 1e-3;
    uint64_t seed = 0;
    bool schedule = true;
    const char *ckdir = NULL;
    long save_every = 100;
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
        else if (!strcmp(a, "--checkpoint-dir")) ckdir = v;
        else if (!strcmp(a, "--save-every")) {
            int64_t se = 0;
            ok = ex_parse_i64(v, 1, INT64_MAX, &se);
            save_every = (long)se;
        }
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
    /* step 1: a Fabric with the accelerator and precision (WF_* environment variables override) */
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = device, .precision = precision });
    if (!fab) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }
    wf_seed_everything(seed, true);
    bool tty = isatty(STDOUT_FILENO) && wf_fabric_is_global_zero(fab);   /* one progress bar */

    wf_dataset train, test;
    if (wf_fashion_mnist(data, true, 0.2860, 0.3530, &train) || wf_fashion_mnist(data, false, 0.2860, 0.3530, &test)) {
        fprintf(stderr, "error: %s\n(install Debian's dataset-fashion-mnist or pass --data DIR)\n", wf_error_message());
        return 1;
    }
    /* step 3: set up the loaders (batches arrive on the device) */
    wf_fabric_loader *train_dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&train, &(wf_dataloader_opts){
        .batch_size = batch, .shuffle = true, .seed = seed + 1, .num_workers = workers }), NULL);
    wf_fabric_loader *test_dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&test, &(wf_dataloader_opts){
        .batch_size = 1000 }), NULL);   /* drawn on this thread: see examples/fashion_mnist.c */
    wf_module *model = is_cnn ? make_cnn() : make_mlp();
    if (!train_dl || !test_dl || !model) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    wf_tensor *params[64];
    int np = wf_module_parameters(model, params, NULL, 64);
    wf_optimizer *opt = wf_adam_new(params, np, &(wf_adam_opts){ .lr = lr });
    /* step 2: set up the model and optimizer (moved to the device, precision applied) */
    if (!opt || wf_fabric_setup(fab, model, &opt, 1, NULL)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int64_t steps_per_epoch = wf_fabric_loader_len(train_dl), steps = 0;
    wf_lr_scheduler *sched = schedule ? wf_cosine_annealing_lr_new(opt, (int)(epochs * steps_per_epoch), 0.0) : NULL;
    if (schedule && !sched) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }

    /* what a resume restores; the loader's position also gives the epoch */
    int64_t saved_steps = 0;
    char ckpt[4096] = "";
    wf_fabric_state *st = NULL;
    int first_epoch = 1;
    if (ckdir) {
        if (snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", ckdir) >= (int)sizeof ckpt) { fprintf(stderr, "error: --checkpoint-dir is too long\n"); return 2; }
        if (mkdir(ckdir, 0777) && errno != EEXIST) { fprintf(stderr, "error: cannot create %s: %s\n", ckdir, strerror(errno)); return 1; }
        st = wf_fabric_state_new();
        if (!st || wf_fabric_state_add_module(st, "model", model) || wf_fabric_state_add_optimizer(st, "optimizer", opt) ||
            (sched && wf_fabric_state_add_scheduler(st, "scheduler", sched)) || wf_fabric_state_add_rng(st, "rng") ||
            wf_fabric_state_add_precision(st, "precision", fab) || wf_fabric_state_add_loader(st, "loader", train_dl) ||
            wf_fabric_state_add_int(st, "step", &saved_steps)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
        struct stat sb;
        if (!stat(ckpt, &sb)) {
            wf_fabric_state *rest = wf_fabric_load(fab, ckpt, st, true);
            if (!rest) { fprintf(stderr, "error: resuming from %s: %s\n", ckpt, wf_error_message()); return 1; }
            wf_fabric_state_free(rest);
            uint64_t e;
            int64_t k;
            if (wf_dataloader_position(wf_fabric_loader_inner(train_dl), &e, &k)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
            first_epoch = (int)e + 1;   /* the loader counts epochs from 0 */
            steps = saved_steps;
            wf_fabric_print(fab, "resumed from %s: epoch %d, batch %lld, step %lld\n", ckpt, first_epoch, (long long)k,
                            (long long)steps);
        }
    }
    wf_fabric_print(fab, "%s: %lld parameters, %lld steps per epoch\n", model_name, (long long)wf_module_num_parameters(model),
           (long long)steps_per_epoch);
    double t0 = now(), acc = 0;
    for (int epoch = first_epoch; epoch <= epochs; epoch++) {
        double loss_sum = 0;
        int64_t n = 0, correct = 0, seen = 0;
        wf_tensor *b[2];
        for (;;) {
            wf_scope_begin();
            int rc = wf_fabric_loader_next(train_dl, b);
            if (rc == 1) {
                wf_tensor *x = b[0], *y = b[1];   /* step 4: no more moves or casts by hand */
                wf_tensor *logits = wf_module_forward(model, x);
                wf_tensor *loss = wf_cross_entropy(logits, y, NULL);
                wf_optimizer_zero_grad(opt, true);
                bool skipped = false;   /* 16-mixed skips steps with inf/NaN gradients: the schedule waits */
                /* step 5: Fabric's backward and optimizer step */
                if (!loss || wf_fabric_backward(fab, loss, model) || wf_fabric_step(fab, opt, &skipped) ||
                    (sched && !skipped && wf_lr_scheduler_step(sched))) rc = -1;
                else {
                    loss_sum += wf_item(loss);
                    WF_NO_GRAD { correct += (int64_t)wf_item(wf_sum_all(wf_eq(wf_argmax(logits, 1, false), y))); }
                    seen += wf_size(y, 0);
                    n++;
                    steps++;
                    if (n % 50 == 0 || n == steps_per_epoch) progress(epoch, n, steps_per_epoch, loss_sum / (double)n, tty);
                    saved_steps = steps;
                    if (st && steps % save_every == 0 && wf_fabric_save(fab, ckpt, st, NULL)) rc = -1;
                }
            }
            wf_scope_end();
            if (rc < 0) { fprintf(stderr, "\nerror: %s\n", wf_error_message()); return 1; }
            if (rc == 0) break;
        }
        acc = evaluate(fab, model, test_dl);
        wf_fabric_print(fab, "%sepoch %d: train_loss %.4f train_acc %.4f test_acc %.4f (%.1f s)\n", tty ? "\n" : "", epoch,
               loss_sum / (double)(n ? n : 1), (double)correct / (double)(seen ? seen : 1), acc, now() - t0);
        fflush(stdout);
        saved_steps = steps;
        if (st && wf_fabric_save(fab, ckpt, st, NULL)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    }
    double train_s = now() - t0;
    wf_fabric_print(fab, "{\"model\":\"%s\",\"precision\":\"%s\",\"epochs\":%d,\"test_acc\":%.4f,\"train_s\":%.1f,\"step_ms\":%.3f}\n",
           model_name, wf_fabric_precision_name(fab), epochs, acc, train_s, 1000.0 * train_s / (double)(steps ? steps : 1));
    wf_fabric_state_free(st);
    wf_lr_scheduler_free(sched);
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_fabric_loader_free(train_dl);
    wf_fabric_loader_free(test_dl);
    wf_fabric_free(fab);
    return 0;
}
