/* examples/trainer/trainer.c: the trainer's loop (see trainer.h). */
#include "trainer.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

trainer *trainer_new(const trainer_config *cfg) {
    trainer *t = calloc(1, sizeof *t);
    if (!t) { wf_set_error(WF_ENOMEM, "trainer_new: out of memory"); return NULL; }
    t->cfg = *cfg;
    if (t->cfg.max_epochs <= 0) t->cfg.max_epochs = 1;
    if (t->cfg.log_every <= 0) t->cfg.log_every = 10;
    if (t->cfg.progress < 0) t->cfg.progress = isatty(STDOUT_FILENO);
    t->val_loss = t->val_acc = NAN;
    t->resumed_from = t->last_saved_step = -1;
    /* log_dir/csv/version_N/metrics.csv and log_dir/tensorboard/version_N/events.out.tfevents.*
     * (one name each, so that each run's two loggers get the same N) */
    wf_logger *loggers[2] = { NULL, NULL };
    int n_loggers = 0;
    if (cfg->log_dir) {
        loggers[0] = wf_csv_logger_new(cfg->log_dir, &(wf_logger_opts){ .name = "csv" });
        loggers[1] = loggers[0] ? wf_tensorboard_logger_new(cfg->log_dir, &(wf_logger_opts){ .name = "tensorboard" }) : NULL;
        if (!loggers[1]) { wf_logger_free(loggers[0]); free(t); return NULL; }
        n_loggers = 2;
    }
    t->fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = cfg->accelerator, .devices = cfg->devices,
                                                .precision = cfg->precision, .callbacks = cfg->callbacks,
                                                .n_callbacks = cfg->n_callbacks, .loggers = loggers,
                                                .n_loggers = n_loggers });
    if (!t->fab) { free(t); return NULL; }   /* the Fabric freed the loggers */
    return t;
}

void trainer_free(trainer *t) {
    if (!t) return;
    wf_fabric_loader_free(t->train_dl);
    wf_fabric_loader_free(t->val_dl);
    wf_fabric_free(t->fab);
    free(t);
}

/* ---------------------------------------------------------------- checkpoints */

/* Everything a bit-identical resume needs. Built afresh for each save and load, so that
 * on_save_checkpoint can add its own entries. */
static wf_fabric_state *trainer_state(trainer *t) {
    wf_fabric_state *s = wf_fabric_state_new();
    if (!s) return NULL;
    int rc = wf_fabric_state_add_module(s, "model", t->task->model);
    if (!rc) rc = wf_fabric_state_add_optimizer(s, "optimizer", t->task->optimizer);
    if (!rc && t->task->scheduler) rc = wf_fabric_state_add_scheduler(s, "scheduler", t->task->scheduler);
    if (!rc) rc = wf_fabric_state_add_precision(s, "precision", t->fab);
    if (!rc) rc = wf_fabric_state_add_rng(s, "rng");
    if (!rc) rc = wf_fabric_state_add_int(s, "global_step", &t->global_step);
    if (!rc) rc = wf_fabric_state_add_int(s, "epoch", &t->epoch);
    if (!rc) rc = wf_fabric_state_add_int(s, "batch_idx", &t->batch_idx);
    if (rc) { wf_fabric_state_free(s); return NULL; }
    return s;
}

static int save_checkpoint(trainer *t) {
    if (!t->cfg.ckpt_dir) return 0;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/step-%08lld.ckpt", t->cfg.ckpt_dir, (long long)t->global_step) >= sizeof path)
        return wf_set_error(WF_EINVAL, "checkpoint path too long");
    if (mkdir(t->cfg.ckpt_dir, 0777) && errno != EEXIST)
        return wf_set_error(WF_EIO, "cannot create %s: %s", t->cfg.ckpt_dir, strerror(errno));
    wf_fabric_state *s = trainer_state(t);
    if (!s) return -1;
    t->ckpt = s;
    int rc = wf_fabric_call(t->fab, "on_save_checkpoint", t);
    t->ckpt = NULL;
    if (!rc) rc = wf_fabric_save(t->fab, path, s, NULL);
    wf_fabric_state_free(s);
    if (!rc) t->last_saved_step = t->global_step;
    return rc;
}

int trainer_newest_checkpoint(const char *dir, char *path, size_t cap) {
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) return wf_set_error(WF_ENOTFOUND, "no checkpoint directory %s", dir ? dir : "(none)");
    long long best = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        long long step;
        int end = 0;
        if (sscanf(de->d_name, "step-%lld.ckpt%n", &step, &end) == 1 && end > 0 && !de->d_name[end] && step > best)
            best = step;
    }
    closedir(d);
    if (best < 0) return wf_set_error(WF_ENOTFOUND, "no step-N.ckpt in %s", dir);
    snprintf(path, cap, "%s/step-%08lld.ckpt", dir, best);
    return 0;
}

static int load_checkpoint(trainer *t) {
    char path[4096];
    if (trainer_newest_checkpoint(t->cfg.ckpt_dir, path, sizeof path)) {
        wf_fabric_print(t->fab, "resume: %s; starting from scratch\n", wf_error_message());
        return 0;
    }
    wf_fabric_state *s = trainer_state(t);
    if (!s) return -1;
    wf_fabric_state *rest = wf_fabric_load(t->fab, path, s, true);   /* restores in place */
    wf_fabric_state_free(s);
    if (!rest) return -1;
    t->ckpt = rest;
    int rc = wf_fabric_call(t->fab, "on_load_checkpoint", t);
    t->ckpt = NULL;
    wf_fabric_state_free(rest);
    t->resumed_from = t->last_saved_step = t->global_step;
    wf_fabric_print(t->fab, "resumed from %s: epoch %lld, batch %lld, step %lld\n", path, (long long)t->epoch,
                    (long long)t->batch_idx, (long long)t->global_step);
    return rc;
}

/* ---------------------------------------------------------------- output */

static void show_progress(trainer *t, int64_t total) {
    if (!wf_fabric_is_global_zero(t->fab)) return;
    if (t->cfg.progress) {
        int width = 30, done = (int)(width * t->batch_idx / (total ? total : 1));
        printf("\repoch %lld [", (long long)t->epoch);
        for (int i = 0; i < width; i++) putchar(i < done ? '=' : (i == done ? '>' : ' '));
        printf("] %lld/%lld loss %.4f", (long long)t->batch_idx, (long long)total, t->train_loss);
        fflush(stdout);
    } else if (t->global_step % t->cfg.log_every == 0) {
        printf("epoch %lld batch %lld/%lld step %lld: loss %.4f\n", (long long)t->epoch, (long long)t->batch_idx,
               (long long)total, (long long)t->global_step, t->train_loss);
    }
}

/* ---------------------------------------------------------------- loops */

static int validation_loop(trainer *t) {
    if (!t->val_dl || !t->task->validation_step) return 0;
    int rc = wf_fabric_call(t->fab, "on_validation_start", t);
    if (rc) return rc;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, batches = 0, limit = t->cfg.limit_val_batches;
    wf_module_train(t->task->model, false);
    WF_NO_GRAD {
        rc = wf_fabric_loader_set_epoch(t->val_dl, 0);
        while (!rc && (limit <= 0 || batches < limit)) {
            wf_tensor *b[2];
            wf_scope_begin();
            int got = wf_fabric_loader_next(t->val_dl, b);
            if (got == 1) {
                wf_tensor *loss = t->task->validation_step(t, b, &correct, t->task->ud);
                if (!loss) rc = -1;
                else {
                    int64_t n = wf_size(b[0], 0);
                    loss_sum += wf_item(loss) * (double)n;
                    seen += n;
                    batches++;
                }
            } else if (got < 0) rc = got;
            wf_scope_end();
            if (got == 0) break;
        }
    }
    wf_module_train(t->task->model, true);
    if (rc) return rc;
    t->val_loss = seen ? loss_sum / (double)seen : NAN;
    t->val_acc = seen ? (double)correct / (double)seen : NAN;
    wf_fabric_log_dict(t->fab, (const char *[]){ "val_loss", "val_acc" }, (double[]){ t->val_loss, t->val_acc }, 2,
                       t->global_step);
    wf_fabric_print(t->fab, "%sepoch %lld: val_loss %.4f val_acc %.4f (step %lld)\n", t->cfg.progress ? "\n" : "",
                    (long long)t->epoch, t->val_loss, t->val_acc, (long long)t->global_step);
    return wf_fabric_call(t->fab, "on_validation_end", t);
}

/* One optimizer step on one batch. */
static int training_step(trainer *t, wf_tensor *const *batch) {
    trainer_task *task = t->task;
    wf_optimizer_zero_grad(task->optimizer, true);
    wf_tensor *loss = task->training_step(t, batch, task->ud);
    if (!loss || wf_fabric_backward(t->fab, loss, task->model)) return -1;
    if (t->cfg.clip_max_norm > 0 &&
        wf_fabric_clip_gradients(t->fab, task->model, task->optimizer, &(wf_clip_opts){ .max_norm = t->cfg.clip_max_norm }, NULL))
        return -1;
    if (wf_fabric_step(t->fab, task->optimizer, NULL)) return -1;
    /* skipped when the step was (16-mixed overflow): the schedule waits for a real step */
    if (task->scheduler && wf_fabric_scheduler_step(t->fab, task->scheduler)) return -1;
    t->train_loss = wf_item(loss);
    return 0;
}

/* Stop training: max_steps reached, or a callback asked. */
static bool stop_requested(trainer *t) {
    if (t->cfg.max_steps > 0 && t->global_step >= t->cfg.max_steps) t->should_stop = true;
    return t->should_stop;
}

/* The rest of the current epoch (from t->batch_idx). *complete: the epoch ran to its end. */
static int train_epoch(trainer *t, bool *complete) {
    int64_t total = wf_fabric_loader_len(t->train_dl), limit = t->cfg.limit_train_batches;
    if (limit > 0 && limit < total) total = limit;
    int rc = wf_fabric_loader_set_epoch(t->train_dl, (uint64_t)t->epoch);
    /* resuming mid-epoch: the order depends only on (seed, epoch), so skip what was seen */
    for (int64_t i = 0; !rc && i < t->batch_idx; i++) {
        wf_tensor *b[2];
        int got = 0;
        WF_SCOPE { got = wf_fabric_loader_next(t->train_dl, b); }
        if (got < 0) rc = got;
        else if (got == 0) rc = wf_set_error(WF_ESTATE, "resume: epoch %lld has fewer than %lld batches",
                                             (long long)t->epoch, (long long)t->batch_idx);
    }
    if (!rc) rc = wf_fabric_call(t->fab, "on_train_epoch_start", t);
    *complete = false;
    while (!rc) {
        if (t->batch_idx >= total) { *complete = true; break; }
        if (stop_requested(t)) break;   /* mid-epoch: the position is kept (and checkpointed) */
        wf_tensor *b[2];
        wf_scope_begin();
        int got = wf_fabric_loader_next(t->train_dl, b);
        if (got == 1) rc = training_step(t, b);
        else if (got < 0) rc = got;
        wf_scope_end();
        if (got == 0) { *complete = true; break; }
        if (rc) break;
        t->global_step++;
        t->batch_idx++;
        if (t->global_step % t->cfg.log_every == 0) {
            double lr = wf_optimizer_get_lr(t->task->optimizer, 0);
            wf_fabric_log_dict(t->fab, (const char *[]){ "train_loss", "lr" }, (double[]){ t->train_loss, lr }, 2,
                               t->global_step);
        }
        show_progress(t, total);
        rc = wf_fabric_call(t->fab, "on_train_batch_end", t);
        if (!rc && t->cfg.ckpt_every > 0 && t->global_step % t->cfg.ckpt_every == 0) rc = save_checkpoint(t);
    }
    return rc;
}

int trainer_fit(trainer *t, trainer_task *task, wf_dataloader *train, wf_dataloader *val, bool resume) {
    t->task = task;
    t->train_dl = wf_fabric_setup_dataloader(t->fab, train, NULL);
    t->val_dl = val ? wf_fabric_setup_dataloader(t->fab, val, NULL) : NULL;
    if (!t->train_dl || (val && !t->val_dl)) return -1;
    int rc = wf_fabric_setup(t->fab, task->model, &task->optimizer, 1, task->scheduler);
    if (!rc && resume) rc = load_checkpoint(t);
    if (!rc) rc = wf_fabric_call(t->fab, "on_train_start", t);
    while (!rc && !stop_requested(t) && t->epoch < t->cfg.max_epochs) {
        bool complete;
        rc = train_epoch(t, &complete);
        if (rc || !complete) break;   /* stopped mid-epoch: no validation, the position stays */
        rc = validation_loop(t);
        if (!rc) rc = wf_fabric_call(t->fab, "on_train_epoch_end", t);
        if (rc) break;
        t->epoch++;
        t->batch_idx = 0;
        rc = save_checkpoint(t);
    }
    if (!rc) rc = wf_fabric_call(t->fab, "on_train_end", t);
    if (!rc && t->last_saved_step != t->global_step) rc = save_checkpoint(t);
    for (int i = 0; i < wf_fabric_num_loggers(t->fab); i++) wf_logger_flush(wf_fabric_logger_at(t->fab, i));
    return rc;
}
