/* optim/optim_impl.h: private structures of the optimizers, schedulers and the small JSON
 * reader/writer they share. Not installed. */
#ifndef WEFT_OPTIM_IMPL_H
#define WEFT_OPTIM_IMPL_H

#include "weft/optim.h"
#include "tensor/tensor_impl.h"
#include "tensor/cuda/cuda_api.h"   /* plain C declarations; the launchers exist in CUDA builds only */

#include <stddef.h>

typedef enum wf_optim_kind {
    WF_OPT_SGD, WF_OPT_ADAM, WF_OPT_ADAMW, WF_OPT_RMSPROP, WF_OPT_ADAGRAD
} wf_optim_kind;

/* Hyperparameters of one group (all optimizers share the struct; each uses its subset). */
typedef struct wf_hparams {
    double lr, weight_decay, momentum, dampening, beta1, beta2, eps, alpha, lr_decay,
           initial_accumulator_value;
    bool nesterov, maximize, amsgrad, centered;
} wf_hparams;

/* Extra numeric keys added by schedulers ("initial_lr", "max_lr", ...). */
#define WF_OPT_MAX_EXTRAS 8
typedef struct wf_extra { char name[24]; double value; } wf_extra;

typedef struct wf_param_group {
    wf_tensor **params;     /* retained */
    int n;
    int first_index;        /* index of params[0] across all groups (state_dict numbering) */
    wf_hparams h;
    wf_extra extras[WF_OPT_MAX_EXTRAS];
    int n_extras;
} wf_param_group;

/* Per-parameter state; tensors owned (NULL until created). */
typedef struct wf_param_state {
    bool initialized;
    double step;
    wf_tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq;   /* Adam/AdamW */
    wf_tensor *momentum_buffer;                         /* SGD, RMSprop */
    wf_tensor *square_avg, *grad_avg;                   /* RMSprop */
    wf_tensor *sum;                                     /* Adagrad */
    wf_tensor *spare;   /* SGD: the first momentum buffer, allocated by wf__optim_prepare and
                         * taken by the update; freed at the end of the step if not taken */
} wf_param_state;

struct wf_optimizer {
    wf_optim_kind kind;
    const char *name;
    wf_hparams defaults;
    wf_param_group *groups;
    int n_groups;
    wf_param_state *state;   /* one per parameter, indexed like the state_dict */
    int n_params;
};

/* Tensor made in a (possibly open) scope becomes owned by the caller. */
static inline wf_tensor *wf__optim_take(wf_tensor *t) {
    if (t && t->scope) wf__scope_unregister(t);
    return t;
}

/* Force the generic (tensor-op) update path even where the fused CPU loop applies (tests). */
void wf__optim_force_generic(bool on);

/* Adam/AdamW updates deferred to one parallel pass over all parameters of a step (the
 * common case: contiguous f32/f64 on the CPU, no amsgrad, no maximize). The scalars are the
 * single-tensor loop's, so each element's result is the same bits. */
typedef struct wf_adam_job {
    void *p, *m, *v;
    const void *g;
    int64_t n;
    bool f64;
    double nstep, bc2s, eps, w1, b2, w2, wd, decay;
} wf_adam_job;
#define WF_ADAM_BATCH 32
/* CUDA parameters of the step go to the multi-tensor kernel (tensor/cuda/cuda_optim.cu) in
 * lists of up to WF_ADAM_CUDA_BATCH, all on cuda_dev */
#define WF_ADAM_CUDA_BATCH 64
typedef struct wf_optim_batch {
    int n;
    wf_adam_job jobs[WF_ADAM_BATCH];
    int n_cuda, cuda_dev;
    wf_cuda_adam_param cuda[WF_ADAM_CUDA_BATCH];
} wf_optim_batch;
/* run and empty the batch; 0 or the code of a failed CUDA launch (the CPU part cannot fail) */
int wf__optim_flush(wf_optim_batch *b);
#ifdef WEFT_HAVE_CUDA
/* optim/cuda_step.c: launch the CUDA list (empties it). 0 or the code of a failed launch. */
int wf__optim_cuda_flush(wf_optim_batch *b);
/* optim/cuda_step.c: 0, or WF_EINVAL when p's update is being captured into a CUDA graph and
 * cannot be replayed correctly (state not created yet, or not the fused Adam/AdamW step,
 * whose scalars are refreshed before each replay). */
int wf__optim_cuda_capture_check(const wf_optimizer *opt, wf_tensor *p, const wf_param_state *st, bool cuda_fused);
#else
/* Builds without CUDA (the minimal preset among them): the answers inline, so no object is
 * compiled for them (each object costs the preset's 1 MB budget ~1 KB). Nothing is ever
 * queued there (update.c's cuda_fusable is false), so the flush's error is a guard. */
static inline int wf__optim_cuda_flush(wf_optim_batch *b) {
    if (!b->n_cuda) return 0;
    int n = b->n_cuda;
    b->n_cuda = 0;
    return wf__error(WF_ENOTSUP, "wf_optimizer_step: %d CUDA parameters queued in a build without CUDA", n);
}
static inline int wf__optim_cuda_capture_check(const wf_optimizer *opt, wf_tensor *p, const wf_param_state *st,
                                               bool cuda_fused) {
    (void)opt, (void)p, (void)st, (void)cuda_fused;
    return 0;
}
#endif

/* update kernels (optim/update.c): one parameter; p, g; state already initialized. With a
 * batch, an update that can be batched is queued there (and runs at wf__optim_flush, or
 * when the batch fills); with NULL it runs now. */
int wf__optim_update(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_tensor *g,
                     wf_param_state *st, wf_optim_batch *batch);
/* Allocate the state tensors p's update needs (as the first update would), so that a step
 * can fail for want of memory before it changes any parameter. Returns 0 or a code. */
int wf__optim_prepare(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_param_state *st);

/* ---------------------------------------------------------------- JSON (optim/ojson.c) */

/* growable text buffer */
typedef struct wf_osbuf { char *p; size_t n, cap; bool oom; } wf_osbuf;
void wf__osb_printf(wf_osbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void wf__osb_double(wf_osbuf *b, double v);   /* shortest round-trip text; inf/nan as Infinity/NaN */
void wf__osb_free(wf_osbuf *b);

typedef enum wf_ojtype { WF_OJ_NULL, WF_OJ_BOOL, WF_OJ_NUM, WF_OJ_STR, WF_OJ_ARR, WF_OJ_OBJ } wf_ojtype;
typedef struct wf_ojval wf_ojval;
struct wf_ojval {
    wf_ojtype type;
    double num;          /* NUM, BOOL (0/1) */
    char *str;           /* STR */
    int n;               /* ARR / OBJ: number of items */
    wf_ojval *items;      /* ARR / OBJ */
    char **keys;         /* OBJ */
};
/* Parse text into *out (depth-limited, bounds-checked). Returns 0 or WF_ECORRUPT (message
 * names op and the byte offset). */
int wf__ojson_parse(const char *op, const char *text, wf_ojval *out);
void wf__ojson_free(wf_ojval *v);
const wf_ojval *wf__ojson_get(const wf_ojval *obj, const char *key);   /* NULL if absent */

/* replace_params.c: point o's parameters olds[j] at news[j] (j < n) and move their state to the
 * new device and dtype (Fabric's setup after casting or moving a module). 0 or a code. */
int wf__optimizer_replace_params(wf_optimizer *o, wf_tensor *const *olds, wf_tensor *const *news, int n);

#endif
