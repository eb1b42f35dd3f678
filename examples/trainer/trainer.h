/* examples/trainer/trainer.h: a small trainer on top of Fabric, Lightning's "build your own
 * trainer" template in C. It is meant to be copied and changed: the whole loop is in
 * trainer.c (about 300 lines), main.c shows how to use it.
 *
 * What it does:
 *  - epochs of training steps (zero_grad, the task's training_step, Fabric's backward,
 *    optional gradient clipping, Fabric's step, the LR scheduler per step), capped by
 *    max_steps and limit_train_batches;
 *  - validation at the end of every epoch (the task's validation_step, no grad, eval mode);
 *  - callbacks: the Fabric's callbacks are called by name (wf_fabric_call) at fixed points,
 *    with the trainer as payload (see TRAINER_HOOKS below);
 *  - logging through the Fabric's loggers (CSV and TensorBoard under log_dir): train_loss and
 *    lr every log_every steps, val_loss and val_acc every epoch;
 *  - checkpoints (ckpt_dir/step-NNNNNNNN.ckpt) every ckpt_every steps, at each epoch's end and
 *    when training stops, and resuming from the newest one, bit-identically: model, optimizer, scheduler, the
 *    precision plugin (grad scaler), the global RNG, the epoch, the position in the epoch and
 *    the global step are restored (the loader's order depends only on its seed and the
 *    epoch, so the position is restored by skipping the batches already seen);
 *  - a progress bar on a terminal, plain lines otherwise.
 */
#ifndef EXAMPLES_TRAINER_H
#define EXAMPLES_TRAINER_H

#include "weft/weft.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/fabric.h"

/* The hooks the trainer calls (payload: the trainer):
 *   on_train_start, on_train_epoch_start, on_train_batch_end, on_train_epoch_end,
 *   on_validation_start, on_validation_end, on_save_checkpoint (t->ckpt: the state about to
 *   be saved; add entries to it), on_load_checkpoint (t->ckpt: what the checkpoint held
 *   beyond the trainer's own entries), on_train_end.
 * A hook returning nonzero stops the trainer with that error; setting t->should_stop stops
 * it cleanly after the current step. */

typedef struct trainer trainer;

/* What is trained (the template's LightningModule): a model, its optimizer and scheduler,
 * and the two steps. */
typedef struct trainer_task {
    wf_module *model;
    wf_optimizer *optimizer;
    wf_lr_scheduler *scheduler;    /* may be NULL; stepped after every optimizer step */
    /* The loss of one training batch (a scalar tensor in the caller's scope); NULL on error. */
    wf_tensor *(*training_step)(trainer *t, wf_tensor *const *batch, void *ud);
    /* The loss of one validation batch; adds the number of right predictions to *correct.
     * May be NULL (no validation). */
    wf_tensor *(*validation_step)(trainer *t, wf_tensor *const *batch, int64_t *correct, void *ud);
    void *ud;
} trainer_task;

typedef struct trainer_config {
    const char *accelerator;       /* Fabric's: "auto", "cpu", "cuda" (NULL = auto) */
    const char *devices;           /* NULL = "auto" */
    const char *precision;         /* NULL = "32-true" */
    int64_t max_epochs;            /* 0 = 1 */
    int64_t max_steps;             /* > 0: stop after this many optimizer steps */
    int64_t limit_train_batches;   /* > 0: at most this many batches per epoch */
    int64_t limit_val_batches;     /* > 0: at most this many validation batches */
    double clip_max_norm;          /* > 0: clip the gradients' total norm */
    const char *ckpt_dir;          /* NULL: no checkpoints */
    int64_t ckpt_every;            /* > 0: also a checkpoint every this many steps */
    const char *log_dir;           /* NULL: no loggers; else CSV + TensorBoard under it */
    int64_t log_every;             /* 0 = 10 */
    int progress;                  /* 1: a progress bar, 0: plain lines, -1: bar on a terminal */
    const wf_callback *callbacks;
    int n_callbacks;
} trainer_config;

struct trainer {
    wf_fabric *fab;
    trainer_config cfg;
    trainer_task *task;
    int64_t global_step;           /* optimizer steps done */
    int64_t epoch;                 /* the current epoch (from 0) */
    int64_t batch_idx;             /* batches done in the current epoch */
    int64_t resumed_from;          /* the global step of the checkpoint loaded, -1 if none */
    double train_loss;             /* the last step's loss */
    double val_loss, val_acc;      /* the last validation (NAN before the first) */
    bool should_stop;              /* set by the trainer (max_steps) or a callback */
    wf_fabric_state *ckpt;         /* during on_save_checkpoint / on_load_checkpoint */
    wf_fabric_loader *train_dl, *val_dl;   /* set up by trainer_fit */
    int64_t last_saved_step;       /* -1: none yet */
};

/* A trainer with its Fabric (loggers and callbacks from cfg). NULL + wf_error_message(). */
trainer *trainer_new(const trainer_config *cfg);
/* Set up the task's model and optimizer and the loaders with the Fabric (which takes the
 * loaders: they are freed by trainer_free), optionally load the newest checkpoint of
 * cfg->ckpt_dir (none there: start from scratch), and train. val may be NULL.
 * Returns 0 or a code (wf_error_message() says why). */
int trainer_fit(trainer *t, trainer_task *task, wf_dataloader *train, wf_dataloader *val, bool resume);
/* The newest checkpoint in dir (the highest step) into path; 0, or WF_ENOTFOUND when none. */
int trainer_newest_checkpoint(const char *dir, char *path, size_t cap);
void trainer_free(trainer *t);   /* NULL ok; the task's objects stay the caller's */

#endif
