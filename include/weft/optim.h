/* weft/optim.h: optimizers (SGD, Adam, AdamW, RMSprop, Adagrad), parameter groups, state
 * dicts in PyTorch's layout, learning-rate schedulers and gradient clipping.
 *
 * Every formula, default and state_dict key follows torch.optim (PyTorch 2.x).
 *
 * Options structs: zero means the PyTorch default. For a double field whose default is not
 * zero (AdamW's weight_decay 0.01, Adam's eps, ...) write WF_OPTIM_ZERO to ask for an
 * explicit 0. Betas: {0, 0} means the default pair; any other pair is taken as given.
 *
 * Ownership: an optimizer borrows its parameters (they belong to modules) and retains each
 * one; wf_optimizer_free releases them. Per-parameter state (exp_avg, ...) belongs to the
 * optimizer; it is created on the first step that sees a gradient for that parameter
 * (Adagrad: at construction, as PyTorch does).
 *
 * Errors: constructors return NULL and record an error (wf_error()) whose message names the
 * optimizer and the offending value ("Adam: invalid beta parameter at index 0: 1.5 (must be
 * in [0, 1))"); int functions return 0 or a negative WF_E* code.
 */
#ifndef WEFT_OPTIM_H
#define WEFT_OPTIM_H

#include "tensor.h"
#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An explicit zero for an options field whose default is not zero (negative zero). */
#define WF_OPTIM_ZERO (-0.0)

typedef struct wf_optimizer wf_optimizer;

/* ---------------------------------------------------------------- constructors */

typedef struct wf_sgd_opts {
    double lr;            /* 0 = 1e-3 (PyTorch 2.x default) */
    double momentum;      /* 0 */
    double dampening;     /* 0 */
    double weight_decay;  /* 0; L2 penalty added to the gradient */
    bool nesterov;        /* requires momentum > 0 and dampening == 0 */
    bool maximize;
} wf_sgd_opts;

/* Adam and AdamW. */
typedef struct wf_adam_opts {
    double lr;            /* 0 = 1e-3 */
    double betas[2];      /* {0,0} = {0.9, 0.999}; each in [0, 1) */
    double eps;           /* 0 = 1e-8 */
    double weight_decay;  /* Adam: 0 (L2, added to the gradient); AdamW: 0 = 0.01 (decoupled) */
    bool amsgrad;
    bool maximize;
} wf_adam_opts;

typedef struct wf_rmsprop_opts {
    double lr;            /* 0 = 1e-2 */
    double alpha;         /* 0 = 0.99 (smoothing constant) */
    double eps;           /* 0 = 1e-8 */
    double weight_decay;  /* 0 */
    double momentum;      /* 0 */
    bool centered;
    bool maximize;
} wf_rmsprop_opts;

typedef struct wf_adagrad_opts {
    double lr;                         /* 0 = 1e-2 */
    double lr_decay;                   /* 0 */
    double weight_decay;               /* 0 */
    double initial_accumulator_value;  /* 0 */
    double eps;                        /* 0 = 1e-10 */
    bool maximize;
} wf_adagrad_opts;

/* Each constructor makes an optimizer with one parameter group holding params[0..n-1]
 * (n >= 1; the same tensor twice is an error). o may be NULL (all defaults). Parameters must
 * be floating-point leaves; they are retained until wf_optimizer_free.
 * Errors: WF_ENULL (params, or one of them, NULL), WF_EINVAL (empty list, invalid value,
 * duplicate parameter, non-leaf or non-floating parameter). */
wf_optimizer *wf_sgd_new(wf_tensor *const *params, int n, const wf_sgd_opts *o);
wf_optimizer *wf_adam_new(wf_tensor *const *params, int n, const wf_adam_opts *o);
wf_optimizer *wf_adamw_new(wf_tensor *const *params, int n, const wf_adam_opts *o);
wf_optimizer *wf_rmsprop_new(wf_tensor *const *params, int n, const wf_rmsprop_opts *o);
wf_optimizer *wf_adagrad_new(wf_tensor *const *params, int n, const wf_adagrad_opts *o);

/* Release the optimizer, its state and its references to the parameters. NULL ok. */
void wf_optimizer_free(wf_optimizer *opt);

/* "SGD", "Adam", "AdamW", "RMSprop", "Adagrad" (static storage), or NULL for NULL. */
const char *wf_optimizer_name(const wf_optimizer *opt);

/* ---------------------------------------------------------------- parameter groups */

/* Per-group hyperparameters for wf_optimizer_add_param_group. A zero double, {0,0} betas or
 * a zero int inherits the optimizer's default (the constructor's value), as PyTorch's
 * param_group.setdefault does. Booleans are ints here: 0 inherit, > 0 true, < 0 false.
 * Fields the optimizer does not use are ignored. */
typedef struct wf_param_group_opts {
    double lr;
    double weight_decay;
    double momentum;
    double dampening;
    double betas[2];
    double eps;
    double alpha;
    double lr_decay;
    double initial_accumulator_value;
    int nesterov;
    int maximize;
    int amsgrad;
    int centered;
} wf_param_group_opts;

/* Add a group of parameters with their own hyperparameters (o may be NULL). A tensor that is
 * already in a group is an error (WF_EINVAL), as in PyTorch. The optimizer is unchanged on
 * error. Returns 0 or a code. */
int wf_optimizer_add_param_group(wf_optimizer *opt, wf_tensor *const *params, int n,
                                 const wf_param_group_opts *o);
int wf_optimizer_num_groups(const wf_optimizer *opt);     /* -1 for NULL */
int wf_optimizer_group_size(const wf_optimizer *opt, int group);  /* params in a group; -1 + error */
/* The i-th parameter of a group (borrowed), or NULL + WF_EINDEX. */
wf_tensor *wf_optimizer_group_param(const wf_optimizer *opt, int group, int i);

/* Learning rate of a group (NAN + WF_EINDEX for a bad group). */
double wf_optimizer_get_lr(const wf_optimizer *opt, int group);
/* Set a group's learning rate (lr >= 0). Returns 0 or a code. */
int wf_optimizer_set_lr(wf_optimizer *opt, int group, double lr);

/* Any hyperparameter of a group by its PyTorch name: "lr", "weight_decay", "momentum",
 * "dampening", "beta1", "beta2" (the two betas), "eps", "alpha", "lr_decay",
 * "initial_accumulator_value", "nesterov", "maximize", "amsgrad", "centered" (booleans as 0/1),
 * and the extra keys schedulers add ("initial_lr", "max_lr", "min_lr", "max_momentum",
 * "base_momentum"). get: NAN + WF_ENOTFOUND when the group has no such key.
 * set: creates an extra key when the name is not a hyperparameter of this optimizer. */
double wf_optimizer_get_hparam(const wf_optimizer *opt, int group, const char *name);
int wf_optimizer_set_hparam(wf_optimizer *opt, int group, const char *name, double value);
/* Does the group have this key? */
bool wf_optimizer_has_hparam(const wf_optimizer *opt, int group, const char *name);

/* ---------------------------------------------------------------- stepping */

/* One optimization step over every parameter that has a gradient (others are skipped, their
 * state untouched). Runs with grad mode off. Steady state allocates nothing on the CPU fast
 * path (contiguous f32/f64 parameter and gradient); other devices and layouts use in-place
 * tensor ops with scoped temporaries. Returns 0 or a code (WF_EINVAL for a sparse/mismatched
 * gradient, device errors). */
int wf_optimizer_step(wf_optimizer *opt);

/* Reset gradients: set_to_none drops them (PyTorch 2 default: pass true), otherwise zeroes
 * them in place. Returns 0 or a code. */
int wf_optimizer_zero_grad(wf_optimizer *opt, bool set_to_none);

/* ---------------------------------------------------------------- state dict
 *
 * PyTorch's optimizer.state_dict() flattened: tensors named
 *   state/<idx>/<key>     e.g. state/0/exp_avg, state/0/step (0-dim f32, as PyTorch stores it)
 * where idx numbers the parameters across groups in order, and a JSON text holding the
 * param_groups list: [{"lr":0.001,"betas":[0.9,0.999],...,"params":[0,1]}].
 * Keys per optimizer: SGD momentum_buffer (when momentum != 0); Adam/AdamW step, exp_avg,
 * exp_avg_sq, max_exp_avg_sq (amsgrad); RMSprop step, square_avg, momentum_buffer
 * (momentum > 0), grad_avg (centered); Adagrad step, sum. */
typedef struct wf_optim_state wf_optim_state;

/* Snapshot of the optimizer's state: new tensors (copies) owned by the returned container.
 * Free with wf_optim_state_free. NULL + error on failure. */
wf_optim_state *wf_optimizer_state_dict(const wf_optimizer *opt);
/* Restore from a state dict (from wf_optimizer_state_dict, or built with wf_optim_state_new
 * from a checkpoint). Checks the number of groups, the parameter count of each group, every
 * state tensor's index, key and shape; values are copied (cast to the parameter's dtype and
 * device, step kept as a count). The optimizer is unchanged on error. Returns 0 or a code
 * (WF_EINVAL / WF_ESHAPE / WF_ECORRUPT for bad JSON) with a message naming the entry. */
int wf_optimizer_load_state_dict(wf_optimizer *opt, const wf_optim_state *sd);

/* An empty container holding a copy of json (the param_groups text); NULL + error. */
wf_optim_state *wf_optim_state_new(const char *json);
/* Add a named tensor (retained by the container; name copied). Duplicate names: WF_EINVAL. */
int wf_optim_state_add(wf_optim_state *s, const char *name, wf_tensor *t);
int wf_optim_state_count(const wf_optim_state *s);                 /* -1 for NULL */
const char *wf_optim_state_name(const wf_optim_state *s, int i);   /* borrowed; NULL if out of range */
wf_tensor *wf_optim_state_tensor(const wf_optim_state *s, int i);  /* borrowed; NULL if out of range */
wf_tensor *wf_optim_state_find(const wf_optim_state *s, const char *name); /* borrowed or NULL */
const char *wf_optim_state_json(const wf_optim_state *s);          /* borrowed param_groups JSON */
void wf_optim_state_free(wf_optim_state *s);                       /* NULL ok */

/* ---------------------------------------------------------------- LR schedulers
 *
 * A scheduler drives the "lr" of every group of one optimizer (it borrows the optimizer,
 * which must outlive it). As in PyTorch, construction records "initial_lr" in each group
 * (unless already there), sets base_lrs from it and performs the initial step (last_epoch 0),
 * so LinearLR multiplies the lr by start_factor at once and OneCycleLR sets max_lr/div_factor.
 * Call wf_lr_scheduler_step after wf_optimizer_step.
 * Chainable forms are PyTorch's (StepLR, MultiStepLR, ExponentialLR and LinearLR update the
 * group's current lr); CosineAnnealingLR uses the closed form
 *   eta_min + (base_lr - eta_min) * (1 + cos(pi * last_epoch / T_max)) / 2,
 * which equals PyTorch's recursive form under plain stepping. */
typedef struct wf_lr_scheduler wf_lr_scheduler;

/* StepLR: lr *= gamma every step_size steps. gamma 0 = 0.1. */
wf_lr_scheduler *wf_step_lr_new(wf_optimizer *opt, int step_size, double gamma);
/* MultiStepLR: lr *= gamma at each milestone (increasing ints). gamma 0 = 0.1. */
wf_lr_scheduler *wf_multistep_lr_new(wf_optimizer *opt, const int *milestones, int n, double gamma);
/* ExponentialLR: lr *= gamma each step (gamma > 0 required). */
wf_lr_scheduler *wf_exponential_lr_new(wf_optimizer *opt, double gamma);

typedef struct wf_linear_lr_opts {
    double start_factor;   /* 0 = 1/3; in (0, 1] */
    double end_factor;     /* 0 = 1.0; in [0, 1] (WF_OPTIM_ZERO for 0) */
    int total_iters;       /* 0 = 5 */
} wf_linear_lr_opts;
wf_lr_scheduler *wf_linear_lr_new(wf_optimizer *opt, const wf_linear_lr_opts *o);

/* CosineAnnealingLR (T_max >= 1, eta_min >= 0). */
wf_lr_scheduler *wf_cosine_annealing_lr_new(wf_optimizer *opt, int T_max, double eta_min);

typedef enum wf_anneal_strategy { WF_ANNEAL_COS = 0, WF_ANNEAL_LINEAR = 1 } wf_anneal_strategy;
typedef struct wf_one_cycle_opts {
    double max_lr;              /* required (> 0), the same for every group */
    int total_steps;            /* required (> 0) unless epochs and steps_per_epoch are given */
    int epochs, steps_per_epoch;
    double pct_start;           /* 0 = 0.3; in [0, 1] */
    wf_anneal_strategy anneal_strategy;  /* 0 = cos */
    bool no_cycle_momentum;     /* PyTorch's cycle_momentum=False */
    double base_momentum;       /* 0 = 0.85 */
    double max_momentum;        /* 0 = 0.95 */
    double div_factor;          /* 0 = 25 */
    double final_div_factor;    /* 0 = 1e4 */
    bool three_phase;
} wf_one_cycle_opts;
/* OneCycleLR. With cycle_momentum it sets beta1 (Adam/AdamW) or momentum (SGD, RMSprop);
 * Adagrad needs no_cycle_momentum. Stepping beyond total_steps is WF_ESTATE. */
wf_lr_scheduler *wf_one_cycle_lr_new(wf_optimizer *opt, const wf_one_cycle_opts *o);

/* LambdaLR: lr = base_lr * fn(last_epoch, ud) for every group. */
typedef double (*wf_lr_lambda_fn)(int epoch, void *ud);
wf_lr_scheduler *wf_lambda_lr_new(wf_optimizer *opt, wf_lr_lambda_fn fn, void *ud);

/* SequentialLR: scheds[0] until milestones[0], then scheds[1] (restarted at its epoch 0),
 * ... n schedulers, n-1 increasing milestones; all over opt. On success the SequentialLR owns
 * the schedulers (wf_lr_scheduler_free frees them); on failure the caller still does. */
wf_lr_scheduler *wf_sequential_lr_new(wf_optimizer *opt, wf_lr_scheduler *const *scheds, int n,
                                      const int *milestones);

/* Advance one step: sets every group's lr. Returns 0 or a code. */
int wf_lr_scheduler_step(wf_lr_scheduler *s);
/* The lr this scheduler last set for a group (NAN + WF_EINDEX for a bad group). */
double wf_lr_scheduler_get_last_lr(const wf_lr_scheduler *s, int group);
/* The scheduler's epoch counter (last_epoch), -1 + error for NULL. */
int wf_lr_scheduler_last_epoch(const wf_lr_scheduler *s);
/* State as JSON text (PyTorch's scheduler.state_dict(): the hyperparameters, base_lrs,
 * last_epoch, _step_count, _last_lr; SequentialLR nests its schedulers under "_schedulers").
 * Writes at most n bytes (NUL-terminated) into buf and returns the full length without the
 * NUL, as snprintf does, so a call with n = 0 sizes the buffer; negative code on error. */
int wf_lr_scheduler_state_dict(const wf_lr_scheduler *s, char *buf, size_t n);
/* Restore from that JSON (the scheduler must be of the same kind and group count). The
 * optimizer's lrs are not touched (they live in the optimizer's state dict, as in PyTorch).
 * Returns 0 or a code (WF_ECORRUPT for malformed JSON, WF_EINVAL for a mismatch). */
int wf_lr_scheduler_load_state_dict(wf_lr_scheduler *s, const char *json);
void wf_lr_scheduler_free(wf_lr_scheduler *s);   /* NULL ok; does not free the optimizer */

/* ---------------------------------------------------------------- gradient clipping */

/* torch.nn.utils.clip_grad_norm_: total = the norm_type-norm (p > 0 or INFINITY) of all the
 * gradients together; the gradients are multiplied by min(1, max_norm / (total + 1e-6)).
 * Parameters without a gradient (and NULL entries) are skipped. The total norm (before
 * clipping) is written to *total_norm when it is not NULL (0 with no gradients).
 * Non-finite total with error_if_nonfinite: WF_ENONFINITE and the gradients are untouched;
 * without it the gradients are scaled anyway (becoming NaN), as PyTorch does.
 * Returns 0 or a code (WF_ENULL for params NULL with n > 0, WF_EINVAL for a bad norm_type or a
 * negative max_norm). */
int wf_clip_grad_norm_(wf_tensor *const *params, int n, double max_norm, double norm_type,
                       bool error_if_nonfinite, double *total_norm);
/* clip_grad_norm_ without a host synchronization (error_if_nonfinite=False, foreach): the
 * total norm is returned as a new 0-d tensor on the gradients' device (f32; f64 when the
 * first gradient is f64 on the CPU), owned by the caller (registered in an open scope), and
 * on CUDA the clip coefficient is computed and applied on the device, so the call only
 * queues work. A non-finite norm scales the gradients to NaN (check the returned tensor when
 * it matters). NULL + error as wf_clip_grad_norm_'s codes. */
wf_tensor *wf_clip_grad_norm_tensor_(wf_tensor *const *params, int n, double max_norm, double norm_type);
/* torch.nn.utils.clip_grad_value_: clamp every gradient to [-clip_value, clip_value]
 * (clip_value >= 0). Returns 0 or a code. */
int wf_clip_grad_value_(wf_tensor *const *params, int n, double clip_value);

#ifdef __cplusplus
}
#endif
#endif
