/* examples/trainer/main.c: the trainer template (trainer.h) on Fashion-MNIST.
 *
 *   trainer [--epochs 3] [--batch 64] [--lr 1e-3] [--precision NAME] [--accelerator auto|cpu|cuda]
 *           [--devices D] [--ckpt-dir DIR] [--ckpt-every N] [--resume] [--log-dir DIR]
 *           [--max-steps N] [--limit-train-batches N] [--limit-val-batches N] [--clip MAX_NORM]
 *           [--log-every N] [--data DIR] [--seed S] [--workers W] [--progress | --no-progress]
 *
 * An MLP (784-128-ReLU-Dropout-10) with AdamW and a cosine learning rate over the planned
 * epochs. Two callbacks show the hooks: one keeps the best validation accuracy (and saves it
 * in the checkpoints), one times the epochs. Hyperparameters go to the loggers that take them
 * (TensorBoard; Fabric's CSV logger does not). The last line is JSON with a checksum of the
 * final weights, so that a resumed run can be compared with an uninterrupted one:
 *
 *   trainer --max-steps 6 --ckpt-every 3 --ckpt-dir ck     # stops at step 6
 *   trainer --max-steps 12 --ckpt-dir ck --resume          # continues from step 6
 *   trainer --max-steps 12                                 # same weights_checksum
 */
#include "trainer.h"

#include <math.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- the task */

static wf_tensor *training_step(trainer *t, wf_tensor *const *batch, void *ud) {
    (void)ud;
    return wf_cross_entropy(wf_module_forward(t->task->model, batch[0]), batch[1], NULL);
}

static wf_tensor *validation_step(trainer *t, wf_tensor *const *batch, int64_t *correct, void *ud) {
    (void)ud;
    wf_tensor *logits = wf_module_forward(t->task->model, batch[0]);
    *correct += (int64_t)wf_item(wf_sum_all(wf_eq(wf_argmax(logits, 1, false), batch[1])));
    return wf_cross_entropy(logits, batch[1], NULL);
}

/* ---------------------------------------------------------------- callbacks */

/* Keeps the best validation accuracy; it travels with the checkpoints. */
typedef struct best_tracker { double best_acc; int64_t best_epoch; } best_tracker;

static int best_on_validation_end(wf_fabric *fab, void *payload, void *ud) {
    trainer *t = payload;
    best_tracker *b = ud;
    if (t->val_acc > b->best_acc) {
        b->best_acc = t->val_acc;
        b->best_epoch = t->epoch;
        wf_fabric_print(fab, "  new best val_acc %.4f\n", b->best_acc);
    }
    return wf_fabric_log(fab, "best_val_acc", b->best_acc, t->global_step);
}

static int best_on_save_checkpoint(wf_fabric *fab, void *payload, void *ud) {
    (void)fab;
    trainer *t = payload;
    best_tracker *b = ud;
    int rc = wf_fabric_state_add_double(t->ckpt, "best_val_acc", &b->best_acc);
    return rc ? rc : wf_fabric_state_add_int(t->ckpt, "best_epoch", &b->best_epoch);
}

static int best_on_load_checkpoint(wf_fabric *fab, void *payload, void *ud) {
    (void)fab;
    trainer *t = payload;
    best_tracker *b = ud;
    /* t->ckpt holds the entries the trainer did not ask for: ours */
    if (wf_fabric_state_find(t->ckpt, "best_val_acc") < 0) return 0;   /* an older checkpoint */
    int rc = wf_fabric_state_get_double(t->ckpt, "best_val_acc", &b->best_acc);
    return rc ? rc : wf_fabric_state_get_int(t->ckpt, "best_epoch", &b->best_epoch);
}

static const wf_callback_hook best_hooks[] = {
    { "on_validation_end", best_on_validation_end },
    { "on_save_checkpoint", best_on_save_checkpoint },
    { "on_load_checkpoint", best_on_load_checkpoint },
    { NULL, NULL },
};

/* Times the epochs. */
typedef struct epoch_timer { double start; } epoch_timer;

static int timer_on_train_epoch_start(wf_fabric *fab, void *payload, void *ud) {
    (void)fab, (void)payload;
    ((epoch_timer *)ud)->start = now();
    return 0;
}

static int timer_on_train_epoch_end(wf_fabric *fab, void *payload, void *ud) {
    trainer *t = payload;
    wf_fabric_print(fab, "  epoch %lld took %.2f s\n", (long long)t->epoch, now() - ((epoch_timer *)ud)->start);
    return 0;
}

static const wf_callback_hook timer_hooks[] = {
    { "on_train_epoch_start", timer_on_train_epoch_start },
    { "on_train_epoch_end", timer_on_train_epoch_end },
    { NULL, NULL },
};

/* ---------------------------------------------------------------- helpers */

/* FNV-1a over the parameters' values (as f32): equal checksums mean equal weights. */
static uint64_t weights_checksum(wf_module *m) {
    wf_tensor *p[64];
    int n = wf_module_parameters(m, p, NULL, 64);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)wf_numel(p[i]);
        float *v = malloc(k * sizeof *v + 1);
        if (!v || wf_to_array(p[i], v, WF_F32)) { free(v); return 0; }
        const unsigned char *bytes = (const unsigned char *)v;
        for (size_t j = 0; j < k * sizeof *v; j++) h = (h ^ bytes[j]) * 1099511628211ull;
        free(v);
    }
    return h;
}

static bool parse_i64(const char *s, int64_t lo, int64_t *out) {
    if (!*s || isspace((unsigned char)*s)) return false;   /* strto* would skip the spaces */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double *out) {
    if (!*s || isspace((unsigned char)*s)) return false;   /* strto* would skip the spaces */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* a JSON number, or null for NaN */
static const char *jnum(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "null");
    else snprintf(buf, n, "%.9g", v);
    return buf;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--epochs N] [--batch B] [--lr X] [--precision NAME] [--accelerator auto|cpu|cuda]\n"
            "          [--devices D] [--ckpt-dir DIR] [--ckpt-every N] [--resume] [--log-dir DIR] [--max-steps N]\n"
            "          [--limit-train-batches N] [--limit-val-batches N] [--clip MAX_NORM] [--log-every N]\n"
            "          [--data DIR] [--seed S] [--workers W] [--progress | --no-progress]\n", argv0);
}

int main(int argc, char **argv) {
    trainer_config cfg = { .accelerator = "auto", .precision = "32-true", .max_epochs = 3, .progress = -1,
                           .log_dir = "logs" };
    const char *data = NULL;
    int64_t batch = 64, seed = 42, workers = 1;
    double lr = 1e-3;
    bool resume = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(argv[0]); return 0; }
        if (!strcmp(a, "--resume")) { resume = true; continue; }
        if (!strcmp(a, "--progress")) { cfg.progress = 1; continue; }
        if (!strcmp(a, "--no-progress")) { cfg.progress = 0; continue; }
        static const char *const value_flags[] = {
            "--epochs", "--batch", "--lr", "--precision", "--accelerator", "--devices", "--ckpt-dir", "--ckpt-every",
            "--log-dir", "--max-steps", "--limit-train-batches", "--limit-val-batches", "--clip", "--log-every",
            "--data", "--seed", "--workers", NULL };
        bool known = false;
        for (const char *const *f = value_flags; *f; f++) known = known || !strcmp(a, *f);
        if (!known) { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); usage(argv[0]); return 2; }
        bool ok = true;
        if (!strcmp(a, "--epochs")) ok = parse_i64(v, 1, &cfg.max_epochs);
        else if (!strcmp(a, "--batch")) ok = parse_i64(v, 1, &batch);
        else if (!strcmp(a, "--lr")) ok = parse_double(v, 1e-300, &lr);
        else if (!strcmp(a, "--precision")) cfg.precision = v;
        else if (!strcmp(a, "--accelerator")) cfg.accelerator = v;
        else if (!strcmp(a, "--devices")) cfg.devices = v;
        else if (!strcmp(a, "--ckpt-dir")) cfg.ckpt_dir = v;
        else if (!strcmp(a, "--ckpt-every")) ok = parse_i64(v, 0, &cfg.ckpt_every);
        else if (!strcmp(a, "--log-dir")) cfg.log_dir = v;
        else if (!strcmp(a, "--max-steps")) ok = parse_i64(v, 1, &cfg.max_steps);
        else if (!strcmp(a, "--limit-train-batches")) ok = parse_i64(v, 1, &cfg.limit_train_batches);
        else if (!strcmp(a, "--limit-val-batches")) ok = parse_i64(v, 1, &cfg.limit_val_batches);
        else if (!strcmp(a, "--clip")) ok = parse_double(v, 0, &cfg.clip_max_norm);
        else if (!strcmp(a, "--log-every")) ok = parse_i64(v, 1, &cfg.log_every);
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--seed")) ok = parse_i64(v, 0, &seed);
        else if (!strcmp(a, "--workers")) ok = parse_i64(v, 0, &workers) && workers <= 64;
        else { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!ok) { fprintf(stderr, "error: bad value for %s: '%s'\n", a, v); usage(argv[0]); return 2; }
        i++;
    }
    if (resume && !cfg.ckpt_dir) { fprintf(stderr, "error: --resume needs --ckpt-dir\n"); return 2; }

    best_tracker best = { .best_acc = 0, .best_epoch = -1 };
    epoch_timer timer = { 0 };
    wf_callback callbacks[] = { { "best", best_hooks, &best }, { "timer", timer_hooks, &timer } };
    cfg.callbacks = callbacks;
    cfg.n_callbacks = 2;
    trainer *t = trainer_new(&cfg);
    if (!t) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }   /* bad --precision, ... */
    wf_seed_everything((uint64_t)seed, true);   /* the model's initialization and dropout */

    wf_dataset train = { 0 }, val = { 0 };
    if (wf_fashion_mnist(data, true, 0.2860, 0.3530, &train) || wf_fashion_mnist(data, false, 0.2860, 0.3530, &val)) {
        fprintf(stderr, "error: %s\n(install Debian's dataset-fashion-mnist or pass --data DIR)\n", wf_error_message());
        wf_dataset_free(&train);
        trainer_free(t);
        return 1;
    }

    /* explicit loader seeds: the shuffled order is a function of (seed, epoch), which resuming needs */
    wf_dataloader *train_dl = wf_dataloader_new(&train, &(wf_dataloader_opts){
        .batch_size = batch, .shuffle = true, .seed = (uint64_t)seed + 1, .num_workers = (int)workers });
    wf_dataloader *val_dl = wf_dataloader_new(&val, &(wf_dataloader_opts){ .batch_size = 500, .num_workers = (int)workers });

    trainer_task task = { .training_step = training_step, .validation_step = validation_step };
    task.model = wf_sequential_new(5, wf_flatten_new(1, -1), wf_linear_new(784, 128, true), wf_relu_new(),
                                   wf_dropout_new(0.2), wf_linear_new(128, 10, true));
    wf_tensor *params[16];
    int np = task.model ? wf_module_parameters(task.model, params, NULL, 16) : 0;
    task.optimizer = task.model ? wf_adamw_new(params, np, &(wf_adam_opts){ .lr = lr }) : NULL;
    int64_t per_epoch = train_dl ? wf_dataloader_len(train_dl) : 0;
    if (cfg.limit_train_batches > 0 && cfg.limit_train_batches < per_epoch) per_epoch = cfg.limit_train_batches;
    /* the schedule spans the planned epochs (not --max-steps: a short run is a prefix of the long one) */
    task.scheduler = task.optimizer ? wf_cosine_annealing_lr_new(task.optimizer, (int)(cfg.max_epochs * per_epoch), 0) : NULL;
    if (!train_dl || !val_dl || !task.scheduler) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }

    /* hyperparameters to every logger that takes them */
    const char *hp_names[] = { "lr", "batch_size", "max_epochs", "precision", "optimizer", "seed" };
    const char *hp_strs[] = { NULL, NULL, NULL, cfg.precision, "adamw", NULL };
    double hp_nums[] = { lr, (double)batch, (double)cfg.max_epochs, 0, 0, (double)seed };
    bool hp_isnum[] = { true, true, true, false, false, true };
    if (cfg.log_dir && wf_fabric_log_hyperparams(t->fab, hp_names, hp_strs, hp_nums, hp_isnum, 6)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    wf_fabric_print(t->fab, "trainer: %lld parameters, %lld batches per epoch, %s on %s%s%s\n",
                    (long long)wf_module_num_parameters(task.model), (long long)per_epoch, wf_fabric_precision_name(t->fab),
                    wf_fabric_accelerator_name(t->fab), cfg.log_dir ? ", logs in " : "",
                    cfg.log_dir ? wf_logger_log_dir(wf_fabric_logger(t->fab)) : "");

    double t0 = now();
    int rc = trainer_fit(t, &task, train_dl, val_dl, resume);
    if (rc) {
        fprintf(stderr, "%serror: %s\n", cfg.progress ? "\n" : "", wf_error_message());
        return 1;
    }
    char b1[32], b2[32], b3[32], b4[32];
    printf("{\"epochs\":%lld,\"global_step\":%lld,\"resumed_from\":%lld,\"train_loss\":%s,\"val_loss\":%s,\"val_acc\":%s,"
           "\"best_val_acc\":%s,\"weights_checksum\":\"%016llx\",\"train_s\":%.2f}\n",
           (long long)t->epoch, (long long)t->global_step, (long long)t->resumed_from,
           jnum(b1, sizeof b1, t->train_loss), jnum(b2, sizeof b2, t->val_loss), jnum(b3, sizeof b3, t->val_acc),
           jnum(b4, sizeof b4, best.best_epoch >= 0 ? best.best_acc : NAN),
           (unsigned long long)weights_checksum(task.model), now() - t0);
    trainer_free(t);
    wf_lr_scheduler_free(task.scheduler);
    wf_optimizer_free(task.optimizer);
    wf_module_free(task.model);
    return 0;
}
