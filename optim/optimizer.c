/* optim/optimizer.c: the optimizer object: construction and validation (PyTorch's defaults
 * and checks), parameter groups, hyperparameter access, step / zero_grad, and the state
 * dict in PyTorch's layout. The update rules live in optim/update.c. */
#include "optim_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* zero = default; WF_OPTIM_ZERO (-0.0) = an explicit 0 */
static double dflt(double v, double d) {
    if (v == 0) return signbit(v) ? 0.0 : d;
    return v;
}

/* ---------------------------------------------------------------- hyperparameter table */

enum { M_SGD = 1 << WF_OPT_SGD, M_ADAM = 1 << WF_OPT_ADAM, M_ADAMW = 1 << WF_OPT_ADAMW,
       M_RMS = 1 << WF_OPT_RMSPROP, M_ADAGRAD = 1 << WF_OPT_ADAGRAD,
       M_ALL = M_SGD | M_ADAM | M_ADAMW | M_RMS | M_ADAGRAD, M_ADAMS = M_ADAM | M_ADAMW };

typedef struct hp_desc { const char *name; size_t off; bool is_bool; int mask; } hp_desc;
#define HD(f, m) { #f, offsetof(wf_hparams, f), false, m }
#define HB(f, m) { #f, offsetof(wf_hparams, f), true, m }
static const hp_desc HP[] = {
    HD(lr, M_ALL), HD(weight_decay, M_ALL), HD(momentum, M_SGD | M_RMS), HD(dampening, M_SGD),
    HD(beta1, M_ADAMS), HD(beta2, M_ADAMS), HD(eps, M_ADAMS | M_RMS | M_ADAGRAD),
    HD(alpha, M_RMS), HD(lr_decay, M_ADAGRAD), HD(initial_accumulator_value, M_ADAGRAD),
    HB(nesterov, M_SGD), HB(maximize, M_ALL), HB(amsgrad, M_ADAMS), HB(centered, M_RMS),
};
#define N_HP ((int)(sizeof HP / sizeof HP[0]))

static const hp_desc *hp_find(const wf_optimizer *opt, const char *name) {
    for (int i = 0; i < N_HP; i++)
        if (!strcmp(HP[i].name, name) && (HP[i].mask & (1 << opt->kind))) return &HP[i];
    return NULL;
}
static double hp_get(const wf_hparams *h, const hp_desc *d) {
    const char *b = (const char *)h + d->off;
    return d->is_bool ? (*(const bool *)b ? 1.0 : 0.0) : *(const double *)b;
}
static void hp_set(wf_hparams *h, const hp_desc *d, double v) {
    char *b = (char *)h + d->off;
    if (d->is_bool) *(bool *)b = v != 0;
    else *(double *)b = v;
}

/* PyTorch's checks (the __init__ of each torch.optim class), with the optimizer's name and the value. */
static int validate(const char *name, wf_optim_kind kind, const wf_hparams *h) {
    if (!(h->lr >= 0)) return wf__error(WF_EINVAL, "%s: invalid learning rate: %g (must be >= 0)", name, h->lr);
    if (!(h->weight_decay >= 0))
        return wf__error(WF_EINVAL, "%s: invalid weight_decay value: %g (must be >= 0)", name, h->weight_decay);
    switch (kind) {
    case WF_OPT_SGD:
        if (!(h->momentum >= 0)) return wf__error(WF_EINVAL, "%s: invalid momentum value: %g (must be >= 0)", name, h->momentum);
        if (!isfinite(h->dampening)) return wf__error(WF_EINVAL, "%s: invalid dampening value: %g", name, h->dampening);
        if (h->nesterov && (h->momentum <= 0 || h->dampening != 0))
            return wf__error(WF_EINVAL, "%s: Nesterov momentum requires a momentum and zero dampening "
                             "(momentum %g, dampening %g)", name, h->momentum, h->dampening);
        break;
    case WF_OPT_ADAM: case WF_OPT_ADAMW:
        if (!(h->eps >= 0)) return wf__error(WF_EINVAL, "%s: invalid epsilon value: %g (must be >= 0)", name, h->eps);
        if (!(h->beta1 >= 0 && h->beta1 < 1))
            return wf__error(WF_EINVAL, "%s: invalid beta parameter at index 0: %g (must be in [0, 1))", name, h->beta1);
        if (!(h->beta2 >= 0 && h->beta2 < 1))
            return wf__error(WF_EINVAL, "%s: invalid beta parameter at index 1: %g (must be in [0, 1))", name, h->beta2);
        break;
    case WF_OPT_RMSPROP:
        if (!(h->eps >= 0)) return wf__error(WF_EINVAL, "%s: invalid epsilon value: %g (must be >= 0)", name, h->eps);
        if (!(h->momentum >= 0)) return wf__error(WF_EINVAL, "%s: invalid momentum value: %g (must be >= 0)", name, h->momentum);
        if (!(h->alpha >= 0)) return wf__error(WF_EINVAL, "%s: invalid alpha value: %g (must be >= 0)", name, h->alpha);
        break;
    case WF_OPT_ADAGRAD:
        if (!(h->lr_decay >= 0)) return wf__error(WF_EINVAL, "%s: invalid lr_decay value: %g (must be >= 0)", name, h->lr_decay);
        if (!(h->initial_accumulator_value >= 0))
            return wf__error(WF_EINVAL, "%s: invalid initial_accumulator_value value: %g (must be >= 0)", name,
                             h->initial_accumulator_value);
        if (!(h->eps >= 0)) return wf__error(WF_EINVAL, "%s: invalid epsilon value: %g (must be >= 0)", name, h->eps);
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------- construction */

static bool in_optimizer(const wf_optimizer *opt, const wf_tensor *t) {
    for (int g = 0; g < opt->n_groups; g++)
        for (int i = 0; i < opt->groups[g].n; i++)
            if (opt->groups[g].params[i] == t) return true;
    return false;
}

static int check_params(const wf_optimizer *opt, const char *fn, wf_tensor *const *params, int n) {
    if (n < 0) return wf__error(WF_EINVAL, "%s: %s: negative parameter count %d", opt->name, fn, n);
    if (n > 0 && !params) return wf__error(WF_ENULL, "%s: %s: params is NULL", opt->name, fn);
    for (int i = 0; i < n; i++) {
        wf_tensor *t = params[i];
        if (!t) return wf__error(WF_ENULL, "%s: %s: parameter %d is NULL", opt->name, fn, i);
        if (!wf_dtype_is_floating(wf_tensor_dtype(t)))
            return wf__error(WF_EINVAL, "%s: %s: parameter %d has dtype %s; only floating-point tensors "
                             "can be optimized", opt->name, fn, i, wf_dtype_name(wf_tensor_dtype(t)));
        if (!wf_is_leaf(t))
            return wf__error(WF_EINVAL, "%s: %s: can't optimize a non-leaf tensor (parameter %d)", opt->name, fn, i);
        for (int j = 0; j < i; j++)
            if (params[j] == t)
                return wf__error(WF_EINVAL, "%s: %s: parameter %d appears twice in the list (also at %d)",
                                 opt->name, fn, i, j);
        if (in_optimizer(opt, t))
            return wf__error(WF_EINVAL, "%s: %s: some parameters appear in more than one parameter group "
                             "(parameter %d)", opt->name, fn, i);
    }
    return 0;
}

static int add_group(wf_optimizer *opt, wf_tensor *const *params, int n, const wf_hparams *h) {
    /* fresh arrays, so that a failed allocation leaves the optimizer as it was */
    wf_param_group *gs = wf__malloc((size_t)(opt->n_groups + 1) * sizeof *gs);
    wf_param_state *st = wf__malloc((size_t)(opt->n_params + n + 1) * sizeof *st);
    wf_tensor **ps = wf__malloc((size_t)(n + 1) * sizeof *ps);
    if (!gs || !st || !ps) {
        if (gs) wf__free(gs, (size_t)(opt->n_groups + 1) * sizeof *gs);
        if (st) wf__free(st, (size_t)(opt->n_params + n + 1) * sizeof *st);
        if (ps) wf__free(ps, (size_t)(n + 1) * sizeof *ps);
        return wf__error(WF_ENOMEM, "%s: out of memory", opt->name);
    }
    if (opt->n_groups) memcpy(gs, opt->groups, (size_t)opt->n_groups * sizeof *gs);
    if (opt->n_params) memcpy(st, opt->state, (size_t)opt->n_params * sizeof *st);
    memset(st + opt->n_params, 0, (size_t)(n + 1) * sizeof *st);
    if (opt->groups) wf__free(opt->groups, (size_t)opt->n_groups * sizeof *gs);
    if (opt->state) wf__free(opt->state, (size_t)(opt->n_params + 1) * sizeof *st);
    opt->groups = gs;
    opt->state = st;
    wf_param_group *g = &gs[opt->n_groups];
    memset(g, 0, sizeof *g);
    g->params = ps;
    g->n = n;
    g->first_index = opt->n_params;
    g->h = *h;
    for (int i = 0; i < n; i++) ps[i] = wf_tensor_retain(params[i]);
    opt->n_params += n;
    opt->n_groups++;
    return 0;
}

static void free_state(wf_param_state *st) {
    wf_tensor_free(st->exp_avg);
    wf_tensor_free(st->exp_avg_sq);
    wf_tensor_free(st->max_exp_avg_sq);
    wf_tensor_free(st->momentum_buffer);
    wf_tensor_free(st->square_avg);
    wf_tensor_free(st->grad_avg);
    wf_tensor_free(st->sum);
    wf_tensor_free(st->spare);
    memset(st, 0, sizeof *st);
}

void wf_optimizer_free(wf_optimizer *opt) {
    if (!opt) return;
    for (int g = 0; g < opt->n_groups; g++) {
        for (int i = 0; i < opt->groups[g].n; i++) wf_tensor_free(opt->groups[g].params[i]);
        wf__free(opt->groups[g].params, (size_t)(opt->groups[g].n + 1) * sizeof(wf_tensor *));
    }
    for (int i = 0; i < opt->n_params; i++) free_state(&opt->state[i]);
    if (opt->groups) wf__free(opt->groups, (size_t)opt->n_groups * sizeof *opt->groups);
    if (opt->state) wf__free(opt->state, (size_t)(opt->n_params + 1) * sizeof *opt->state);
    wf__free(opt, sizeof *opt);
}

static wf_optimizer *make(wf_optim_kind kind, const char *name, wf_tensor *const *params, int n,
                          const wf_hparams *h) {
    if (validate(name, kind, h)) return NULL;
    if (!params) { wf__error(WF_ENULL, "%s: params is NULL", name); return NULL; }
    if (n <= 0) { wf__error(WF_EINVAL, "%s: optimizer got an empty parameter list (n = %d)", name, n); return NULL; }
    wf_optimizer *opt = wf__calloc(1, sizeof *opt);
    if (!opt) { wf__error(WF_ENOMEM, "%s: out of memory", name); return NULL; }
    opt->kind = kind;
    opt->name = name;
    opt->defaults = *h;
    if (check_params(opt, "params", params, n) || add_group(opt, params, n, h)) {
        wf_optimizer_free(opt);
        return NULL;
    }
    return opt;
}

static wf_optimizer *wf_sgd_new__body(wf_tensor *const *params, int n, const wf_sgd_opts *o) {
    wf_sgd_opts z = {0};
    if (!o) o = &z;
    wf_hparams h = { .lr = dflt(o->lr, 1e-3), .momentum = dflt(o->momentum, 0),
                     .dampening = dflt(o->dampening, 0), .weight_decay = dflt(o->weight_decay, 0),
                     .nesterov = o->nesterov, .maximize = o->maximize };
    return make(WF_OPT_SGD, "SGD", params, n, &h);
}

wf_optimizer *wf_sgd_new(wf_tensor *const *params, int n, const wf_sgd_opts *o) {
    WF__NAMED("wf_sgd_new", wf_optimizer *, !r, wf_sgd_new__body(params, n, o));
}

static wf_optimizer *adam_like(wf_optim_kind kind, const char *name, wf_tensor *const *params, int n,
                               const wf_adam_opts *o, double wd_default) {
    wf_adam_opts z = {0};
    if (!o) o = &z;
    bool betas_default = o->betas[0] == 0 && o->betas[1] == 0 && !signbit(o->betas[0]) && !signbit(o->betas[1]);
    wf_hparams h = { .lr = dflt(o->lr, 1e-3), .beta1 = betas_default ? 0.9 : o->betas[0] + 0.0,
                     .beta2 = betas_default ? 0.999 : o->betas[1] + 0.0, .eps = dflt(o->eps, 1e-8),
                     .weight_decay = dflt(o->weight_decay, wd_default), .amsgrad = o->amsgrad,
                     .maximize = o->maximize };
    return make(kind, name, params, n, &h);
}
static wf_optimizer *wf_adam_new__body(wf_tensor *const *params, int n, const wf_adam_opts *o) {
    return adam_like(WF_OPT_ADAM, "Adam", params, n, o, 0);
}

wf_optimizer *wf_adam_new(wf_tensor *const *params, int n, const wf_adam_opts *o) {
    WF__NAMED("wf_adam_new", wf_optimizer *, !r, wf_adam_new__body(params, n, o));
}

static wf_optimizer *wf_adamw_new__body(wf_tensor *const *params, int n, const wf_adam_opts *o) {
    return adam_like(WF_OPT_ADAMW, "AdamW", params, n, o, 1e-2);
}

wf_optimizer *wf_adamw_new(wf_tensor *const *params, int n, const wf_adam_opts *o) {
    WF__NAMED("wf_adamw_new", wf_optimizer *, !r, wf_adamw_new__body(params, n, o));
}

static wf_optimizer *wf_rmsprop_new__body(wf_tensor *const *params, int n, const wf_rmsprop_opts *o) {
    wf_rmsprop_opts z = {0};
    if (!o) o = &z;
    wf_hparams h = { .lr = dflt(o->lr, 1e-2), .alpha = dflt(o->alpha, 0.99), .eps = dflt(o->eps, 1e-8),
                     .weight_decay = dflt(o->weight_decay, 0), .momentum = dflt(o->momentum, 0),
                     .centered = o->centered, .maximize = o->maximize };
    return make(WF_OPT_RMSPROP, "RMSprop", params, n, &h);
}

wf_optimizer *wf_rmsprop_new(wf_tensor *const *params, int n, const wf_rmsprop_opts *o) {
    WF__NAMED("wf_rmsprop_new", wf_optimizer *, !r, wf_rmsprop_new__body(params, n, o));
}

static int adagrad_init_state(wf_optimizer *opt, int group) {
    /* PyTorch's Adagrad creates step and sum in __init__ */
    wf_param_group *g = &opt->groups[group];
    for (int i = 0; i < g->n; i++) {
        wf_param_state *st = &opt->state[g->first_index + i];
        if (st->sum) continue;
        st->sum = wf__optim_take(wf_full_like(g->params[i], g->h.initial_accumulator_value));
        if (!st->sum) return wf_error() ? wf_error() : WF_ENOMEM;
        st->initialized = true;
    }
    return 0;
}

static wf_optimizer *wf_adagrad_new__body(wf_tensor *const *params, int n, const wf_adagrad_opts *o) {
    wf_adagrad_opts z = {0};
    if (!o) o = &z;
    wf_hparams h = { .lr = dflt(o->lr, 1e-2), .lr_decay = dflt(o->lr_decay, 0),
                     .weight_decay = dflt(o->weight_decay, 0),
                     .initial_accumulator_value = dflt(o->initial_accumulator_value, 0),
                     .eps = dflt(o->eps, 1e-10), .maximize = o->maximize };
    wf_optimizer *opt = make(WF_OPT_ADAGRAD, "Adagrad", params, n, &h);
    if (opt && adagrad_init_state(opt, 0)) { wf_optimizer_free(opt); return NULL; }
    return opt;
}

wf_optimizer *wf_adagrad_new(wf_tensor *const *params, int n, const wf_adagrad_opts *o) {
    WF__NAMED("wf_adagrad_new", wf_optimizer *, !r, wf_adagrad_new__body(params, n, o));
}

const char *wf_optimizer_name(const wf_optimizer *opt) { return opt ? opt->name : NULL; }

/* ---------------------------------------------------------------- groups */

static int tri(int v, bool d) { return v > 0 ? true : v < 0 ? false : d; }

static int wf_optimizer_add_param_group__body(wf_optimizer *opt, wf_tensor *const *params, int n,
                                 const wf_param_group_opts *o) {
    if (!opt) return wf__error(WF_ENULL, "wf_optimizer_add_param_group: optimizer is NULL");
    wf_param_group_opts z = {0};
    if (!o) o = &z;
    const wf_hparams *d = &opt->defaults;
    bool betas_default = o->betas[0] == 0 && o->betas[1] == 0 && !signbit(o->betas[0]) && !signbit(o->betas[1]);
    wf_hparams h = {
        .lr = dflt(o->lr, d->lr), .weight_decay = dflt(o->weight_decay, d->weight_decay),
        .momentum = dflt(o->momentum, d->momentum), .dampening = dflt(o->dampening, d->dampening),
        .beta1 = betas_default ? d->beta1 : o->betas[0] + 0.0, .beta2 = betas_default ? d->beta2 : o->betas[1] + 0.0,
        .eps = dflt(o->eps, d->eps), .alpha = dflt(o->alpha, d->alpha), .lr_decay = dflt(o->lr_decay, d->lr_decay),
        .initial_accumulator_value = dflt(o->initial_accumulator_value, d->initial_accumulator_value),
        .nesterov = tri(o->nesterov, d->nesterov), .maximize = tri(o->maximize, d->maximize),
        .amsgrad = tri(o->amsgrad, d->amsgrad), .centered = tri(o->centered, d->centered),
    };
    int rc = validate(opt->name, opt->kind, &h);
    if (!rc) rc = check_params(opt, "add_param_group", params, n);
    if (!rc) rc = add_group(opt, params, n, &h);
    if (!rc && opt->kind == WF_OPT_ADAGRAD) rc = adagrad_init_state(opt, opt->n_groups - 1);
    return rc;
}

int wf_optimizer_add_param_group(wf_optimizer *opt, wf_tensor *const *params, int n,
                                 const wf_param_group_opts *o) {
    WF__NAMED("wf_optimizer_add_param_group", int, r < 0, wf_optimizer_add_param_group__body(opt, params, n, o));
}

int wf_optimizer_num_groups(const wf_optimizer *opt) { return opt ? opt->n_groups : -1; }

static const wf_param_group *group_at(const wf_optimizer *opt, int group, const char *fn) {
    if (!opt) { wf__error(WF_ENULL, "%s: optimizer is NULL", fn); return NULL; }
    if (group < 0 || group >= opt->n_groups) {
        wf__error(WF_EINDEX, "%s: %s: group %d out of range (the optimizer has %d)", fn, opt->name, group, opt->n_groups);
        return NULL;
    }
    return &opt->groups[group];
}

int wf_optimizer_group_size(const wf_optimizer *opt, int group) {
    const wf_param_group *g = group_at(opt, group, "wf_optimizer_group_size");
    return g ? g->n : -1;
}

wf_tensor *wf_optimizer_group_param(const wf_optimizer *opt, int group, int i) {
    const wf_param_group *g = group_at(opt, group, "wf_optimizer_group_param");
    if (!g) return NULL;
    if (i < 0 || i >= g->n) {
        wf__error(WF_EINDEX, "wf_optimizer_group_param: %s: parameter %d out of range (group %d has %d)",
                  opt->name, i, group, g->n);
        return NULL;
    }
    return g->params[i];
}

double wf_optimizer_get_lr(const wf_optimizer *opt, int group) {
    const wf_param_group *g = group_at(opt, group, "wf_optimizer_get_lr");
    return g ? g->h.lr : NAN;
}

int wf_optimizer_set_lr(wf_optimizer *opt, int group, double lr) {
    const wf_param_group *g = group_at(opt, group, "wf_optimizer_set_lr");
    if (!g) return wf_error();
    if (!(lr >= 0) || isinf(lr))
        return wf__error(WF_EINVAL, "wf_optimizer_set_lr: %s: invalid learning rate: %g (must be finite and >= 0)", opt->name, lr);
    opt->groups[group].h.lr = lr;
    return 0;
}

static wf_extra *extra_find(const wf_param_group *g, const char *name) {
    for (int i = 0; i < g->n_extras; i++)
        if (!strcmp(g->extras[i].name, name)) return (wf_extra *)&g->extras[i];
    return NULL;
}

bool wf_optimizer_has_hparam(const wf_optimizer *opt, int group, const char *name) {
    if (!opt || !name || group < 0 || group >= opt->n_groups) return false;
    return hp_find(opt, name) || extra_find(&opt->groups[group], name);
}

double wf_optimizer_get_hparam(const wf_optimizer *opt, int group, const char *name) {
    const wf_param_group *g = group_at(opt, group, "wf_optimizer_get_hparam");
    if (!g) return NAN;
    if (!name) { wf__error(WF_ENULL, "wf_optimizer_get_hparam: name is NULL"); return NAN; }
    const hp_desc *d = hp_find(opt, name);
    if (d) return hp_get(&g->h, d);
    wf_extra *e = extra_find(g, name);
    if (e) return e->value;
    wf__error(WF_ENOTFOUND, "wf_optimizer_get_hparam: %s group %d has no hyperparameter '%s'", opt->name, group, name);
    return NAN;
}

static int wf_optimizer_set_hparam__body(wf_optimizer *opt, int group, const char *name, double value) {
    const wf_param_group *gc = group_at(opt, group, "wf_optimizer_set_hparam");
    if (!gc) return wf_error();
    if (!name) return wf__error(WF_ENULL, "wf_optimizer_set_hparam: name is NULL");
    wf_param_group *g = &opt->groups[group];
    const hp_desc *d = hp_find(opt, name);
    if (d) {
        wf_hparams h = g->h;
        hp_set(&h, d, value);
        int rc = validate(opt->name, opt->kind, &h);
        if (rc) return rc;
        g->h = h;
        return 0;
    }
    wf_extra *e = extra_find(g, name);
    if (!e) {
        if (g->n_extras == WF_OPT_MAX_EXTRAS)
            return wf__error(WF_EINVAL, "wf_optimizer_set_hparam: %s group %d: too many extra keys (max %d)",
                             opt->name, group, WF_OPT_MAX_EXTRAS);
        if (strlen(name) >= sizeof e->name)
            return wf__error(WF_EINVAL, "wf_optimizer_set_hparam: key '%s' is too long", name);
        e = &g->extras[g->n_extras++];
        snprintf(e->name, sizeof e->name, "%s", name);
    }
    e->value = value;
    return 0;
}

int wf_optimizer_set_hparam(wf_optimizer *opt, int group, const char *name, double value) {
    WF__NAMED("wf_optimizer_set_hparam", int, r < 0, wf_optimizer_set_hparam__body(opt, group, name, value));
}

/* ---------------------------------------------------------------- step / zero_grad */

int wf_optimizer_step(wf_optimizer *opt) {
    if (!opt) return wf__error(WF_ENULL, "wf_optimizer_step: optimizer is NULL");
    bool prev = wf_set_grad_enabled(false);
    int rc = 0;
    wf_optim_batch batch = { 0 };
    /* Checks and state allocation first, for every parameter: a step that fails there
     * (bad gradient, out of memory) leaves all parameters and states as they were. */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        for (int gi = 0; gi < opt->n_groups && !rc; gi++) {
            wf_param_group *g = &opt->groups[gi];
            for (int i = 0; i < g->n && !rc; i++) {
                wf_tensor *p = g->params[i], *gr = wf_grad(p);
                if (!gr) continue;
                if (!wf_same_shape(p, gr)) {
                    char b1[96], b2[96];
                    rc = wf__error(WF_ESHAPE, "wf_optimizer_step: %s: parameter %d has gradient shape %s, expected %s",
                                   opt->name, g->first_index + i, wf_shape_str(gr, b1, sizeof b1), wf_shape_str(p, b2, sizeof b2));
                    break;
                }
                if (!wf_device_eq(wf_tensor_device(p), wf_tensor_device(gr))) {
                    char b1[32], b2[32];
                    rc = wf__error(WF_EDEVICE, "wf_optimizer_step: %s: parameter %d is on %s but its gradient is on %s",
                                   opt->name, g->first_index + i, wf_device_str(wf_tensor_device(p), b1, sizeof b1),
                                   wf_device_str(wf_tensor_device(gr), b2, sizeof b2));
                    break;
                }
                if (pass == 0) rc = wf__optim_prepare(opt, &g->h, p, &opt->state[g->first_index + i]);
                else rc = wf__optim_update(opt, &g->h, p, gr, &opt->state[g->first_index + i], &batch);
            }
        }
    }
    int frc = wf__optim_flush(&batch);   /* also after an error: the parameters before it are updated, as before */
    if (!rc) rc = frc;
    for (int i = 0; i < opt->n_params; i++)
        if (opt->state[i].spare) {   /* not taken: the step failed, or took the generic path */
            wf_tensor_free(opt->state[i].spare);
            opt->state[i].spare = NULL;
        }
    wf_set_grad_enabled(prev);
    return rc;
}

int wf_optimizer_zero_grad(wf_optimizer *opt, bool set_to_none) {
    if (!opt) return wf__error(WF_ENULL, "wf_optimizer_zero_grad: optimizer is NULL");
    int rc = 0;
    for (int gi = 0; gi < opt->n_groups; gi++) {
        wf_param_group *g = &opt->groups[gi];
        for (int i = 0; i < g->n; i++) {
            wf_tensor *p = g->params[i];
            if (!wf_grad(p)) continue;
            int r = set_to_none ? wf_set_grad(p, NULL) : wf_zero_(wf_grad(p));
            if (r && !rc) rc = r;
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- state container */

typedef struct sd_entry { char *name; wf_tensor *t; } sd_entry;
struct wf_optim_state {
    sd_entry *e;
    int n, cap;
    char *json;
};

wf_optim_state *wf_optim_state_new(const char *json) {
    if (!json) { wf__error(WF_ENULL, "wf_optim_state_new: json is NULL"); return NULL; }
    wf_optim_state *s = wf__calloc(1, sizeof *s);
    if (!s || !(s->json = wf__strdup(json))) {
        if (s) wf__free(s, sizeof *s);
        wf__error(WF_ENOMEM, "wf_optim_state_new: out of memory");
        return NULL;
    }
    return s;
}

void wf_optim_state_free(wf_optim_state *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        wf__free(s->e[i].name, strlen(s->e[i].name) + 1);
        wf_tensor_free(s->e[i].t);
    }
    if (s->e) wf__free(s->e, (size_t)s->cap * sizeof *s->e);
    if (s->json) wf__free(s->json, strlen(s->json) + 1);
    wf__free(s, sizeof *s);
}

wf_tensor *wf_optim_state_find(const wf_optim_state *s, const char *name) {
    if (!s || !name) return NULL;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].name, name)) return s->e[i].t;
    return NULL;
}

int wf_optim_state_add(wf_optim_state *s, const char *name, wf_tensor *t) {
    if (!s || !name || !t) return wf__error(WF_ENULL, "wf_optim_state_add: an argument is NULL");
    if (wf_optim_state_find(s, name)) return wf__error(WF_EINVAL, "wf_optim_state_add: duplicate name '%s'", name);
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        sd_entry *e = wf__realloc(s->e, (size_t)s->cap * sizeof *e, (size_t)nc * sizeof *e);
        if (!e) return wf__error(WF_ENOMEM, "wf_optim_state_add: out of memory");
        s->e = e;
        s->cap = nc;
    }
    char *nm = wf__strdup(name);
    if (!nm) return wf__error(WF_ENOMEM, "wf_optim_state_add: out of memory");
    s->e[s->n].name = nm;
    s->e[s->n].t = wf_tensor_retain(t);
    s->n++;
    return 0;
}

int wf_optim_state_count(const wf_optim_state *s) { return s ? s->n : -1; }
const char *wf_optim_state_name(const wf_optim_state *s, int i) { return s && i >= 0 && i < s->n ? s->e[i].name : NULL; }
wf_tensor *wf_optim_state_tensor(const wf_optim_state *s, int i) { return s && i >= 0 && i < s->n ? s->e[i].t : NULL; }
const char *wf_optim_state_json(const wf_optim_state *s) { return s ? s->json : NULL; }

/* ---------------------------------------------------------------- state_dict */

/* keys of the per-parameter state, in PyTorch's order, and where they live */
typedef struct skey { const char *name; size_t off; int mask; } skey;
#define SK(f, m) { #f, offsetof(wf_param_state, f), m }
static const skey SKEYS[] = {
    SK(momentum_buffer, M_SGD), SK(exp_avg, M_ADAMS), SK(exp_avg_sq, M_ADAMS),
    SK(max_exp_avg_sq, M_ADAMS), SK(square_avg, M_RMS), SK(momentum_buffer, M_RMS),
    SK(grad_avg, M_RMS), SK(sum, M_ADAGRAD),
};
#define N_SKEYS ((int)(sizeof SKEYS / sizeof SKEYS[0]))
static wf_tensor **skey_slot(wf_param_state *st, const skey *k) { return (wf_tensor **)((char *)st + k->off); }
static bool has_step(wf_optim_kind k) { return k != WF_OPT_SGD; }

/* PyTorch's param_group keys per optimizer (null/false constants for the flags weft ignores) */
static const char *const GROUP_KEYS[5][12] = {
    [WF_OPT_SGD] = { "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                     "foreach=null", "differentiable=false", "fused=null", NULL },
    [WF_OPT_ADAM] = { "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach=null",
                      "capturable=false", "differentiable=false", "fused=null", NULL },
    [WF_OPT_ADAMW] = { "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach=null",
                       "capturable=false", "differentiable=false", "fused=null", NULL },
    [WF_OPT_RMSPROP] = { "lr", "momentum", "alpha", "eps", "centered", "weight_decay", "capturable=false",
                         "foreach=null", "maximize", "differentiable=false", NULL },
    [WF_OPT_ADAGRAD] = { "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps",
                         "foreach=null", "maximize", "differentiable=false", "fused=null", NULL },
};

static int groups_json(const wf_optimizer *opt, wf_osbuf *b) {
    wf__osb_printf(b, "[");
    for (int gi = 0; gi < opt->n_groups; gi++) {
        const wf_param_group *g = &opt->groups[gi];
        wf__osb_printf(b, "%s{", gi ? ", " : "");
        bool first = true;
        for (const char *const *k = GROUP_KEYS[opt->kind]; *k; k++) {
            wf__osb_printf(b, "%s", first ? "" : ", ");
            first = false;
            const char *eq = strchr(*k, '=');
            if (eq) { wf__osb_printf(b, "\"%.*s\": %s", (int)(eq - *k), *k, eq + 1); continue; }
            if (!strcmp(*k, "betas")) {
                wf__osb_printf(b, "\"betas\": [");
                wf__osb_double(b, g->h.beta1);
                wf__osb_printf(b, ", ");
                wf__osb_double(b, g->h.beta2);
                wf__osb_printf(b, "]");
                continue;
            }
            const hp_desc *d = hp_find(opt, *k);
            wf__osb_printf(b, "\"%s\": ", *k);
            if (d->is_bool) wf__osb_printf(b, "%s", hp_get(&g->h, d) != 0 ? "true" : "false");
            else wf__osb_double(b, hp_get(&g->h, d));
        }
        for (int e = 0; e < g->n_extras; e++) {
            wf__osb_printf(b, ", \"%s\": ", g->extras[e].name);
            wf__osb_double(b, g->extras[e].value);
        }
        wf__osb_printf(b, ", \"params\": [");
        for (int i = 0; i < g->n; i++) wf__osb_printf(b, "%s%d", i ? ", " : "", g->first_index + i);
        wf__osb_printf(b, "]}");
    }
    wf__osb_printf(b, "]");
    return b->oom ? wf__error(WF_ENOMEM, "wf_optimizer_state_dict: out of memory") : 0;
}

wf_optim_state *wf_optimizer_state_dict(const wf_optimizer *opt) {
    if (!opt) { wf__error(WF_ENULL, "wf_optimizer_state_dict: optimizer is NULL"); return NULL; }
    wf_osbuf b = {0};
    if (groups_json(opt, &b)) { wf__osb_free(&b); return NULL; }
    wf_optim_state *s = wf_optim_state_new(b.p);
    wf__osb_free(&b);
    if (!s) return NULL;
    int rc = 0;
    char name[64];
    wf_scope_begin();
    for (int i = 0; i < opt->n_params && !rc; i++) {
        wf_param_state *st = &opt->state[i];
        if (!st->initialized) continue;
        if (has_step(opt->kind)) {
            snprintf(name, sizeof name, "state/%d/step", i);
            wf_tensor *t = wf_scalar(st->step, WF_F32);
            rc = t ? wf_optim_state_add(s, name, t) : wf_error();
        }
        for (int k = 0; k < N_SKEYS && !rc; k++) {
            if (!(SKEYS[k].mask & (1 << opt->kind))) continue;
            wf_tensor *src = *skey_slot(st, &SKEYS[k]);
            if (!src) continue;
            snprintf(name, sizeof name, "state/%d/%s", i, SKEYS[k].name);
            wf_tensor *t = wf_clone(src);
            rc = t ? wf_optim_state_add(s, name, t) : wf_error();
        }
    }
    wf_scope_end();   /* the container holds its own references */
    if (rc) { wf_optim_state_free(s); return NULL; }
    return s;
}

/* ---------------------------------------------------------------- load_state_dict */

static const char *const LD = "wf_optimizer_load_state_dict";

static int load_group_hparams(const wf_optimizer *opt, int gi, const wf_ojval *jg, wf_param_group *out) {
    const wf_param_group *g = &opt->groups[gi];
    out->h = g->h;
    out->n_extras = 0;
    for (int k = 0; k < jg->n; k++) {
        const char *key = jg->keys[k];
        const wf_ojval *v = &jg->items[k];
        if (!strcmp(key, "params") || !strcmp(key, "param_names")) continue;
        if (!strcmp(key, "betas")) {
            if (!hp_find(opt, "beta1")) continue;
            if (v->type != WF_OJ_ARR || v->n != 2 || v->items[0].type != WF_OJ_NUM || v->items[1].type != WF_OJ_NUM)
                return wf__error(WF_EINVAL, "%s: %s: param_groups[%d].betas must be a list of two numbers", LD, opt->name, gi);
            out->h.beta1 = v->items[0].num;
            out->h.beta2 = v->items[1].num;
            continue;
        }
        const hp_desc *d = hp_find(opt, key);
        if (d) {
            if (v->type != WF_OJ_NUM && v->type != WF_OJ_BOOL)
                return wf__error(WF_EINVAL, "%s: %s: param_groups[%d].%s must be a number", LD, opt->name, gi, key);
            hp_set(&out->h, d, v->num);
            continue;
        }
        if (v->type != WF_OJ_NUM) continue;   /* foreach, fused, capturable, ...: not used by weft */
        if (out->n_extras == WF_OPT_MAX_EXTRAS || strlen(key) >= sizeof out->extras[0].name)
            return wf__error(WF_EINVAL, "%s: %s: param_groups[%d]: too many or too long extra keys ('%s')", LD, opt->name, gi, key);
        wf_extra *e = &out->extras[out->n_extras++];
        snprintf(e->name, sizeof e->name, "%s", key);
        e->value = v->num;
    }
    return validate(opt->name, opt->kind, &out->h);
}

/* parse "state/<idx>/<key>" */
static bool parse_state_name(const char *name, int *idx, const char **key) {
    if (strncmp(name, "state/", 6)) return false;
    const char *s = name + 6;
    if (*s < '0' || *s > '9') return false;
    long v = 0;
    while (*s >= '0' && *s <= '9') { v = v * 10 + (*s - '0'); if (v > 1 << 30) return false; s++; }
    if (*s != '/' || !s[1]) return false;
    *idx = (int)v;
    *key = s + 1;
    return true;
}

int wf_optimizer_load_state_dict(wf_optimizer *opt, const wf_optim_state *sd) {
    if (!opt || !sd) return wf__error(WF_ENULL, "%s: an argument is NULL", LD);
    wf_ojval root;
    int rc = wf__ojson_parse(LD, sd->json, &root);
    if (rc) return rc;
    wf_param_group *ng = NULL;
    wf_param_state *ns = NULL;
    if (root.type != WF_OJ_ARR) { rc = wf__error(WF_EINVAL, "%s: %s: param_groups JSON must be a list", LD, opt->name); goto done; }
    if (root.n != opt->n_groups) {
        rc = wf__error(WF_EINVAL, "%s: %s: loaded state dict has %d parameter groups, the optimizer has %d",
                       LD, opt->name, root.n, opt->n_groups);
        goto done;
    }
    ng = wf__calloc((size_t)opt->n_groups, sizeof *ng);
    ns = wf__calloc((size_t)(opt->n_params ? opt->n_params : 1), sizeof *ns);
    if (!ng || !ns) { rc = wf__error(WF_ENOMEM, "%s: out of memory", LD); goto done; }
    /* groups: sizes, then hyperparameters; the saved indices must number params in order */
    for (int gi = 0; gi < root.n && !rc; gi++) {
        const wf_ojval *jg = &root.items[gi];
        const wf_ojval *jp = wf__ojson_get(jg, "params");
        if (jg->type != WF_OJ_OBJ || !jp || jp->type != WF_OJ_ARR) {
            rc = wf__error(WF_EINVAL, "%s: %s: param_groups[%d] is not an object with a params list", LD, opt->name, gi);
            break;
        }
        if (jp->n != opt->groups[gi].n) {
            rc = wf__error(WF_EINVAL, "%s: %s: loaded state dict contains a parameter group (%d) that doesn't match "
                           "the size of optimizer's group (%d params saved, %d in the optimizer)",
                           LD, opt->name, gi, jp->n, opt->groups[gi].n);
            break;
        }
        for (int i = 0; i < jp->n; i++) {
            const wf_ojval *x = &jp->items[i];
            if (x->type != WF_OJ_NUM || x->num != opt->groups[gi].first_index + i) {
                rc = wf__error(WF_EINVAL, "%s: %s: param_groups[%d].params[%d] should be %d", LD, opt->name, gi, i,
                               opt->groups[gi].first_index + i);
                break;
            }
        }
        if (!rc) rc = load_group_hparams(opt, gi, jg, &ng[gi]);
    }
    /* state tensors: copies cast to each parameter's dtype and device */
    for (int e = 0; e < sd->n && !rc; e++) {
        const char *name = sd->e[e].name, *key;
        wf_tensor *t = sd->e[e].t;
        int idx;
        if (!parse_state_name(name, &idx, &key)) {
            rc = wf__error(WF_EINVAL, "%s: %s: unexpected entry '%s' (expected state/<index>/<key>)", LD, opt->name, name);
            break;
        }
        if (idx >= opt->n_params) {
            rc = wf__error(WF_EINVAL, "%s: %s: entry '%s' refers to parameter %d, the optimizer has %d",
                           LD, opt->name, name, idx, opt->n_params);
            break;
        }
        wf_tensor *p = NULL;
        for (int gi = 0; gi < opt->n_groups; gi++)
            if (idx >= opt->groups[gi].first_index && idx < opt->groups[gi].first_index + opt->groups[gi].n)
                p = opt->groups[gi].params[idx - opt->groups[gi].first_index];
        wf_param_state *st = &ns[idx];
        st->initialized = true;
        if (!strcmp(key, "step") && has_step(opt->kind)) {
            if (wf_numel(t) != 1) {
                rc = wf__error(WF_ESHAPE, "%s: %s: '%s' must hold one value (has %lld)", LD, opt->name, name, (long long)wf_numel(t));
                break;
            }
            double v = wf_item(t);
            if (!(v >= 0) || v != floor(v)) { rc = wf__error(WF_EINVAL, "%s: %s: '%s' is not a step count (%g)", LD, opt->name, name, v); break; }
            st->step = v;
            continue;
        }
        const skey *k = NULL;
        for (int j = 0; j < N_SKEYS; j++)
            if ((SKEYS[j].mask & (1 << opt->kind)) && !strcmp(SKEYS[j].name, key)) k = &SKEYS[j];
        if (!k) { rc = wf__error(WF_EINVAL, "%s: %s has no state '%s' ('%s')", LD, opt->name, key, name); break; }
        if (!wf_same_shape(t, p)) {
            char b1[96], b2[96];
            rc = wf__error(WF_ESHAPE, "%s: %s: '%s' has shape %s, parameter %d has shape %s", LD, opt->name, name,
                           wf_shape_str(t, b1, sizeof b1), idx, wf_shape_str(p, b2, sizeof b2));
            break;
        }
        wf_tensor **slot = skey_slot(st, k);
        if (*slot) { rc = wf__error(WF_EINVAL, "%s: %s: duplicate entry '%s'", LD, opt->name, name); break; }
        wf_tensor *c = wf__optim_take(wf_empty_like(p));
        if (!c || wf_copy_(c, t)) { wf_tensor_free(c); rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        *slot = c;
    }
    if (!rc) {
        /* commit: hyperparameters, then replace the state */
        for (int gi = 0; gi < opt->n_groups; gi++) {
            opt->groups[gi].h = ng[gi].h;
            opt->groups[gi].n_extras = ng[gi].n_extras;
            memcpy(opt->groups[gi].extras, ng[gi].extras, sizeof ng[gi].extras);
        }
        for (int i = 0; i < opt->n_params; i++) {
            free_state(&opt->state[i]);
            opt->state[i] = ns[i];
        }
        if (opt->kind == WF_OPT_ADAGRAD)   /* params without saved state get their init state */
            for (int gi = 0; gi < opt->n_groups && !rc; gi++) rc = adagrad_init_state(opt, gi);
    } else if (ns) {
        for (int i = 0; i < opt->n_params; i++) free_state(&ns[i]);
    }
done:
    if (ng) wf__free(ng, (size_t)opt->n_groups * sizeof *ng);
    if (ns) wf__free(ns, (size_t)(opt->n_params ? opt->n_params : 1) * sizeof *ns);
    wf__ojson_free(&root);
    return rc;
}
