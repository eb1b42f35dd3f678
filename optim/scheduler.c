/* optim/scheduler.c: learning-rate schedulers as torch.optim.lr_scheduler (PyTorch 2.x):
 * construction records initial_lr and performs the initial step; step() uses the chainable
 * form (get_lr), step(epoch) (SequentialLR's restart) the closed form where one exists. */
#include "optim_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum skind { S_STEP, S_MULTISTEP, S_EXP, S_LINEAR, S_COSINE, S_ONECYCLE, S_LAMBDA, S_SEQUENTIAL } skind;

typedef struct phase {
    double end_step;
    const char *start_lr, *end_lr, *start_momentum, *end_momentum;  /* group keys */
} phase;

struct wf_lr_scheduler {
    skind kind;
    const char *name;
    wf_optimizer *opt;
    int n_groups;
    double *base_lrs, *last_lr;
    int last_epoch, step_count;
    /* hyperparameters (each kind uses its own) */
    int step_size;
    double gamma;
    int *milestones, n_milestones;          /* MultiStepLR, SequentialLR */
    double start_factor, end_factor;
    int total_iters;
    int T_max;
    double eta_min;
    int total_steps;
    wf_anneal_strategy anneal;
    bool cycle_momentum, use_beta1;
    phase phases[3];
    int n_phases;
    wf_lr_lambda_fn fn;
    void *ud;
    wf_lr_scheduler **children;
    int n_children;
};

static void sched_free_raw(wf_lr_scheduler *s) {
    if (!s) return;
    if (s->base_lrs) wf__free(s->base_lrs, (size_t)s->n_groups * sizeof(double));
    if (s->last_lr) wf__free(s->last_lr, (size_t)s->n_groups * sizeof(double));
    if (s->milestones) wf__free(s->milestones, (size_t)s->n_milestones * sizeof(int));
    for (int i = 0; i < s->n_children; i++) wf_lr_scheduler_free(s->children[i]);
    if (s->children) wf__free(s->children, (size_t)s->n_children * sizeof *s->children);
    wf__free(s, sizeof *s);
}

void wf_lr_scheduler_free(wf_lr_scheduler *s) { sched_free_raw(s); }

/* Allocate and record initial_lr / base_lrs (LRScheduler.__init__ with last_epoch = -1). */
static wf_lr_scheduler *sched_alloc(skind kind, const char *name, wf_optimizer *opt) {
    if (!opt) { wf__error(WF_ENULL, "%s: optimizer is NULL", name); return NULL; }
    wf_lr_scheduler *s = wf__calloc(1, sizeof *s);
    int ng = opt->n_groups;
    if (s) {
        s->n_groups = ng;
        s->base_lrs = wf__calloc((size_t)ng, sizeof(double));
        s->last_lr = wf__calloc((size_t)ng, sizeof(double));
    }
    if (!s || !s->base_lrs || !s->last_lr) {
        sched_free_raw(s);
        wf__error(WF_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    s->kind = kind;
    s->name = name;
    s->opt = opt;
    s->last_epoch = -1;
    return s;
}

static int record_initial_lr(wf_lr_scheduler *s) {
    for (int g = 0; g < s->n_groups; g++) {
        if (!wf_optimizer_has_hparam(s->opt, g, "initial_lr")) {
            int rc = wf_optimizer_set_hparam(s->opt, g, "initial_lr", s->opt->groups[g].h.lr);
            if (rc) return rc;
        }
        s->base_lrs[g] = wf_optimizer_get_hparam(s->opt, g, "initial_lr");
    }
    return 0;
}

static double annealf(wf_anneal_strategy a, double start, double end, double pct) {
    if (a == WF_ANNEAL_LINEAR) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

static double group_key(const wf_lr_scheduler *s, int g, const char *key) {
    return wf_optimizer_get_hparam(s->opt, g, key);
}

/* get_lr(): the chainable form, from each group's current lr. Fills out[]. */
static int get_lr(wf_lr_scheduler *s, double *out) {
    const int e = s->last_epoch;
    for (int g = 0; g < s->n_groups; g++) {
        double lr = s->opt->groups[g].h.lr, base = s->base_lrs[g];
        switch (s->kind) {
        case S_STEP: out[g] = (e == 0 || e % s->step_size != 0) ? lr : lr * s->gamma; break;
        case S_MULTISTEP: {
            int c = 0;
            for (int i = 0; i < s->n_milestones; i++) c += s->milestones[i] == e;
            out[g] = c ? lr * pow(s->gamma, c) : lr;
            break;
        }
        case S_EXP: out[g] = e == 0 ? lr : lr * s->gamma; break;
        case S_LINEAR:
            if (e == 0) out[g] = lr * s->start_factor;
            else if (e > s->total_iters) out[g] = lr;
            else out[g] = lr * (1.0 + (s->end_factor - s->start_factor) /
                                (s->total_iters * s->start_factor + (e - 1) * (s->end_factor - s->start_factor)));
            break;
        case S_COSINE:
            out[g] = e == 0 ? lr : s->eta_min + (base - s->eta_min) * (1 + cos(M_PI * e / s->T_max)) / 2;
            break;
        case S_LAMBDA: out[g] = base * s->fn(e, s->ud); break;
        case S_ONECYCLE: {
            if (e > s->total_steps)
                return wf__error(WF_ESTATE, "OneCycleLR: tried to step %d times; the specified number of total "
                                 "steps is %d", e, s->total_steps);
            double start_step = 0, v = lr, mom = 0;
            for (int i = 0; i < s->n_phases; i++) {
                const phase *ph = &s->phases[i];
                if (e <= ph->end_step || i == s->n_phases - 1) {
                    double pct = (e - start_step) / (ph->end_step - start_step);
                    v = annealf(s->anneal, group_key(s, g, ph->start_lr), group_key(s, g, ph->end_lr), pct);
                    if (s->cycle_momentum)
                        mom = annealf(s->anneal, group_key(s, g, ph->start_momentum), group_key(s, g, ph->end_momentum), pct);
                    break;
                }
                start_step = ph->end_step;
            }
            out[g] = v;
            if (s->cycle_momentum) {
                int rc = wf_optimizer_set_hparam(s->opt, g, s->use_beta1 ? "beta1" : "momentum", mom);
                if (rc) return rc;
            }
            break;
        }
        case S_SEQUENTIAL: out[g] = lr; break;   /* not used */
        }
    }
    return 0;
}

/* _get_closed_form_lr where PyTorch has one; false otherwise. */
static bool closed_form(const wf_lr_scheduler *s, double *out) {
    const int e = s->last_epoch;
    for (int g = 0; g < s->n_groups; g++) {
        double base = s->base_lrs[g];
        switch (s->kind) {
        case S_STEP: out[g] = base * pow(s->gamma, e / s->step_size); break;
        case S_MULTISTEP: {
            int c = 0;
            for (int i = 0; i < s->n_milestones; i++) c += s->milestones[i] <= e;
            out[g] = base * pow(s->gamma, c);
            break;
        }
        case S_EXP: out[g] = base * pow(s->gamma, e); break;
        case S_LINEAR:
            out[g] = base * (s->start_factor + (s->end_factor - s->start_factor) *
                             (e < s->total_iters ? e : s->total_iters) / s->total_iters);
            break;
        case S_COSINE: out[g] = s->eta_min + (base - s->eta_min) * (1 + cos(M_PI * e / s->T_max)) / 2; break;
        default: return false;
        }
    }
    return true;
}

static int apply(wf_lr_scheduler *s, const double *v) {
    for (int g = 0; g < s->n_groups; g++) {
        s->opt->groups[g].h.lr = v[g];
        s->last_lr[g] = v[g];
    }
    return 0;
}

static int check_groups(const wf_lr_scheduler *s) {
    if (s->opt->n_groups != s->n_groups)
        return wf__error(WF_ESTATE, "%s: the optimizer now has %d parameter groups, the scheduler was made for %d",
                         s->name, s->opt->n_groups, s->n_groups);
    return 0;
}

/* step(): or step(epoch) when epoch >= 0 */
static int sched_step(wf_lr_scheduler *s, int epoch) {
    int rc = check_groups(s);
    if (rc) return rc;
    int save_epoch = s->last_epoch, save_count = s->step_count;
    s->step_count++;
    if (s->kind == S_SEQUENTIAL) {
        s->last_epoch++;
        int idx = 0;
        while (idx < s->n_milestones && s->milestones[idx] <= s->last_epoch) idx++;   /* bisect_right */
        wf_lr_scheduler *c = s->children[idx];
        rc = sched_step(c, (idx > 0 && s->milestones[idx - 1] == s->last_epoch) ? 0 : -1);
        if (!rc) memcpy(s->last_lr, c->last_lr, (size_t)s->n_groups * sizeof(double));
    } else {
        double vbuf[16], *v = vbuf;
        if (s->n_groups > 16 && !(v = wf__malloc((size_t)s->n_groups * sizeof(double))))
            rc = wf__error(WF_ENOMEM, "%s: out of memory", s->name);
        if (!rc) {
            s->last_epoch = epoch >= 0 ? epoch : s->last_epoch + 1;
            if (!(epoch >= 0 && closed_form(s, v))) rc = get_lr(s, v);
            if (!rc) apply(s, v);
        }
        if (v != vbuf && v) wf__free(v, (size_t)s->n_groups * sizeof(double));
    }
    if (rc) { s->last_epoch = save_epoch; s->step_count = save_count; }
    return rc;
}

int wf_lr_scheduler_step(wf_lr_scheduler *s) {
    if (!s) return wf__error(WF_ENULL, "wf_lr_scheduler_step: scheduler is NULL");
    return sched_step(s, -1);
}

/* record initial_lr, then _initial_step(); frees s and returns NULL on failure */
static wf_lr_scheduler *finish(wf_lr_scheduler *s) {
    int rc = record_initial_lr(s);
    if (!rc) { s->step_count = 0; rc = sched_step(s, -1); }
    if (rc) { sched_free_raw(s); return NULL; }
    return s;
}

static wf_lr_scheduler *wf_step_lr_new__body(wf_optimizer *opt, int step_size, double gamma) {
    if (step_size <= 0) { wf__error(WF_EINVAL, "StepLR: step_size must be positive (got %d)", step_size); return NULL; }
    wf_lr_scheduler *s = sched_alloc(S_STEP, "StepLR", opt);
    if (!s) return NULL;
    s->step_size = step_size;
    s->gamma = gamma == 0 && !signbit(gamma) ? 0.1 : gamma;
    return finish(s);
}

wf_lr_scheduler *wf_step_lr_new(wf_optimizer *opt, int step_size, double gamma) {
    WF__NAMED("wf_step_lr_new", wf_lr_scheduler *, !r, wf_step_lr_new__body(opt, step_size, gamma));
}

static wf_lr_scheduler *wf_multistep_lr_new__body(wf_optimizer *opt, const int *milestones, int n, double gamma) {
    if (n < 0 || (n > 0 && !milestones)) { wf__error(WF_ENULL, "MultiStepLR: milestones is NULL"); return NULL; }
    for (int i = 1; i < n; i++)
        if (milestones[i] < milestones[i - 1]) {
            wf__error(WF_EINVAL, "MultiStepLR: milestones must be increasing (%d after %d)", milestones[i], milestones[i - 1]);
            return NULL;
        }
    wf_lr_scheduler *s = sched_alloc(S_MULTISTEP, "MultiStepLR", opt);
    if (!s) return NULL;
    s->gamma = gamma == 0 && !signbit(gamma) ? 0.1 : gamma;
    if (n > 0) {
        if (!(s->milestones = wf__malloc((size_t)n * sizeof(int)))) {
            sched_free_raw(s);
            wf__error(WF_ENOMEM, "MultiStepLR: out of memory");
            return NULL;
        }
        memcpy(s->milestones, milestones, (size_t)n * sizeof(int));
        s->n_milestones = n;
    }
    return finish(s);
}

wf_lr_scheduler *wf_multistep_lr_new(wf_optimizer *opt, const int *milestones, int n, double gamma) {
    WF__NAMED("wf_multistep_lr_new", wf_lr_scheduler *, !r, wf_multistep_lr_new__body(opt, milestones, n, gamma));
}

static wf_lr_scheduler *wf_exponential_lr_new__body(wf_optimizer *opt, double gamma) {
    if (!(gamma > 0)) { wf__error(WF_EINVAL, "ExponentialLR: gamma must be positive (got %g)", gamma); return NULL; }
    wf_lr_scheduler *s = sched_alloc(S_EXP, "ExponentialLR", opt);
    if (!s) return NULL;
    s->gamma = gamma;
    return finish(s);
}

wf_lr_scheduler *wf_exponential_lr_new(wf_optimizer *opt, double gamma) {
    WF__NAMED("wf_exponential_lr_new", wf_lr_scheduler *, !r, wf_exponential_lr_new__body(opt, gamma));
}

static wf_lr_scheduler *wf_linear_lr_new__body(wf_optimizer *opt, const wf_linear_lr_opts *o) {
    wf_linear_lr_opts z = {0};
    if (!o) o = &z;
    double sf = o->start_factor == 0 && !signbit(o->start_factor) ? 1.0 / 3 : o->start_factor;
    double ef = o->end_factor == 0 && !signbit(o->end_factor) ? 1.0 : o->end_factor + 0.0;
    int ti = o->total_iters ? o->total_iters : 5;
    if (!(sf > 0 && sf <= 1)) {
        wf__error(WF_EINVAL, "LinearLR: starting multiplicative factor expected to be greater than 0 and less or "
                  "equal to 1 (got %g)", sf);
        return NULL;
    }
    if (!(ef >= 0 && ef <= 1)) {
        wf__error(WF_EINVAL, "LinearLR: ending multiplicative factor expected to be between 0 and 1 (got %g)", ef);
        return NULL;
    }
    if (ti <= 0) { wf__error(WF_EINVAL, "LinearLR: total_iters must be positive (got %d)", ti); return NULL; }
    wf_lr_scheduler *s = sched_alloc(S_LINEAR, "LinearLR", opt);
    if (!s) return NULL;
    s->start_factor = sf;
    s->end_factor = ef;
    s->total_iters = ti;
    return finish(s);
}

wf_lr_scheduler *wf_linear_lr_new(wf_optimizer *opt, const wf_linear_lr_opts *o) {
    WF__NAMED("wf_linear_lr_new", wf_lr_scheduler *, !r, wf_linear_lr_new__body(opt, o));
}

static wf_lr_scheduler *wf_cosine_annealing_lr_new__body(wf_optimizer *opt, int T_max, double eta_min) {
    if (T_max <= 0) { wf__error(WF_EINVAL, "CosineAnnealingLR: T_max must be positive (got %d)", T_max); return NULL; }
    if (!(eta_min >= 0)) { wf__error(WF_EINVAL, "CosineAnnealingLR: eta_min must be >= 0 (got %g)", eta_min); return NULL; }
    wf_lr_scheduler *s = sched_alloc(S_COSINE, "CosineAnnealingLR", opt);
    if (!s) return NULL;
    s->T_max = T_max;
    s->eta_min = eta_min;
    return finish(s);
}

wf_lr_scheduler *wf_cosine_annealing_lr_new(wf_optimizer *opt, int T_max, double eta_min) {
    WF__NAMED("wf_cosine_annealing_lr_new", wf_lr_scheduler *, !r, wf_cosine_annealing_lr_new__body(opt, T_max, eta_min));
}

static wf_lr_scheduler *wf_lambda_lr_new__body(wf_optimizer *opt, wf_lr_lambda_fn fn, void *ud) {
    if (!fn) { wf__error(WF_ENULL, "LambdaLR: lr_lambda is NULL"); return NULL; }
    wf_lr_scheduler *s = sched_alloc(S_LAMBDA, "LambdaLR", opt);
    if (!s) return NULL;
    s->fn = fn;
    s->ud = ud;
    return finish(s);
}

wf_lr_scheduler *wf_lambda_lr_new(wf_optimizer *opt, wf_lr_lambda_fn fn, void *ud) {
    WF__NAMED("wf_lambda_lr_new", wf_lr_scheduler *, !r, wf_lambda_lr_new__body(opt, fn, ud));
}

static double dflt(double v, double d) { return v == 0 ? (signbit(v) ? 0.0 : d) : v; }

static wf_lr_scheduler *wf_one_cycle_lr_new__body(wf_optimizer *opt, const wf_one_cycle_opts *o) {
    const char *N = "OneCycleLR";
    if (!o) { wf__error(WF_ENULL, "%s: options are NULL (max_lr and total_steps are required)", N); return NULL; }
    if (!opt) { wf__error(WF_ENULL, "%s: optimizer is NULL", N); return NULL; }
    int total = o->total_steps;
    if (total == 0) {
        if (o->epochs <= 0) { wf__error(WF_EINVAL, "%s: expected positive integer epochs, but got %d (or give total_steps)", N, o->epochs); return NULL; }
        if (o->steps_per_epoch <= 0) { wf__error(WF_EINVAL, "%s: expected positive integer steps_per_epoch, but got %d", N, o->steps_per_epoch); return NULL; }
        total = o->epochs * o->steps_per_epoch;
    }
    if (total <= 0) { wf__error(WF_EINVAL, "%s: expected positive integer total_steps, but got %d", N, total); return NULL; }
    if (!(o->max_lr > 0)) { wf__error(WF_EINVAL, "%s: max_lr must be positive (got %g)", N, o->max_lr); return NULL; }
    double pct = dflt(o->pct_start, 0.3), divf = dflt(o->div_factor, 25.0), fdiv = dflt(o->final_div_factor, 1e4);
    double base_m = dflt(o->base_momentum, 0.85), max_m = dflt(o->max_momentum, 0.95);
    if (!(pct >= 0 && pct <= 1)) { wf__error(WF_EINVAL, "%s: expected float between 0 and 1 pct_start, but got %g", N, pct); return NULL; }
    if (o->anneal_strategy != WF_ANNEAL_COS && o->anneal_strategy != WF_ANNEAL_LINEAR) {
        wf__error(WF_EINVAL, "%s: anneal_strategy must be cos or linear (got %d)", N, (int)o->anneal_strategy);
        return NULL;
    }
    if (!(divf > 0) || !(fdiv > 0)) { wf__error(WF_EINVAL, "%s: div_factor and final_div_factor must be positive", N); return NULL; }
    bool cyc = !o->no_cycle_momentum;
    bool use_beta1 = opt->kind == WF_OPT_ADAM || opt->kind == WF_OPT_ADAMW;
    if (cyc && !use_beta1 && opt->kind != WF_OPT_SGD && opt->kind != WF_OPT_RMSPROP) {
        wf__error(WF_EINVAL, "%s: optimizer %s must support momentum or beta1 with cycle_momentum enabled", N, opt->name);
        return NULL;
    }
    wf_lr_scheduler *s = sched_alloc(S_ONECYCLE, N, opt);
    if (!s) return NULL;
    s->total_steps = total;
    s->anneal = o->anneal_strategy;
    s->cycle_momentum = cyc;
    s->use_beta1 = use_beta1;
    if (o->three_phase) {
        s->n_phases = 3;
        s->phases[0] = (phase){ pct * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum" };
        s->phases[1] = (phase){ 2 * pct * total - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum" };
        s->phases[2] = (phase){ total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum" };
    } else {
        s->n_phases = 2;
        s->phases[0] = (phase){ pct * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum" };
        s->phases[1] = (phase){ total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum" };
    }
    int rc = 0;
    for (int g = 0; g < s->n_groups && !rc; g++) {
        double init = o->max_lr / divf;
        rc = wf_optimizer_set_hparam(opt, g, "initial_lr", init);
        if (!rc) rc = wf_optimizer_set_hparam(opt, g, "max_lr", o->max_lr);
        if (!rc) rc = wf_optimizer_set_hparam(opt, g, "min_lr", init / fdiv);
        if (!rc && cyc) {
            rc = wf_optimizer_set_hparam(opt, g, use_beta1 ? "beta1" : "momentum", max_m);
            if (!rc) rc = wf_optimizer_set_hparam(opt, g, "max_momentum", max_m);
            if (!rc) rc = wf_optimizer_set_hparam(opt, g, "base_momentum", base_m);
        }
    }
    if (rc) { sched_free_raw(s); return NULL; }
    return finish(s);
}

wf_lr_scheduler *wf_one_cycle_lr_new(wf_optimizer *opt, const wf_one_cycle_opts *o) {
    WF__NAMED("wf_one_cycle_lr_new", wf_lr_scheduler *, !r, wf_one_cycle_lr_new__body(opt, o));
}

static wf_lr_scheduler *wf_sequential_lr_new__body(wf_optimizer *opt, wf_lr_scheduler *const *scheds, int n,
                                      const int *milestones) {
    const char *N = "SequentialLR";
    if (!opt || !scheds || (n > 1 && !milestones)) { wf__error(WF_ENULL, "%s: an argument is NULL", N); return NULL; }
    if (n < 1) { wf__error(WF_EINVAL, "%s: expects at least one scheduler (got %d)", N, n); return NULL; }
    for (int i = 0; i < n; i++) {
        if (!scheds[i]) { wf__error(WF_ENULL, "%s: scheduler %d is NULL", N, i); return NULL; }
        if (scheds[i]->opt != opt) {
            wf__error(WF_EINVAL, "%s: expects all schedulers to belong to the same optimizer, but scheduler %d "
                      "does not", N, i);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (scheds[j] == scheds[i]) { wf__error(WF_EINVAL, "%s: scheduler %d appears twice", N, i); return NULL; }
    }
    for (int i = 1; i < n - 1; i++)
        if (milestones[i] <= milestones[i - 1]) {
            wf__error(WF_EINVAL, "%s: milestones must be increasing (%d after %d)", N, milestones[i], milestones[i - 1]);
            return NULL;
        }
    wf_lr_scheduler *s = sched_alloc(S_SEQUENTIAL, N, opt);
    if (!s) return NULL;
    s->children = wf__malloc((size_t)n * sizeof *s->children);
    s->milestones = n > 1 ? wf__malloc((size_t)(n - 1) * sizeof(int)) : NULL;
    if (!s->children || (n > 1 && !s->milestones)) {
        if (s->children) wf__free(s->children, (size_t)n * sizeof *s->children);
        s->children = NULL;
        sched_free_raw(s);
        wf__error(WF_ENOMEM, "%s: out of memory", N);
        return NULL;
    }
    if (n > 1) memcpy(s->milestones, milestones, (size_t)(n - 1) * sizeof(int));
    s->n_milestones = n - 1;
    int rc = check_groups(scheds[0]);
    if (rc) {
        wf__free(s->children, (size_t)n * sizeof *s->children);
        s->children = NULL;
        sched_free_raw(s);
        return NULL;
    }
    s->last_epoch = 0;
    /* reset the lrs to initial_lr and undo the other schedulers' initial steps */
    for (int g = 0; g < s->n_groups; g++) {
        double init = wf_optimizer_has_hparam(opt, g, "initial_lr") ? wf_optimizer_get_hparam(opt, g, "initial_lr")
                                                                     : opt->groups[g].h.lr;
        opt->groups[g].h.lr = init;
        s->base_lrs[g] = init;
    }
    for (int i = 0; i < n; i++) scheds[i]->last_epoch -= 1;
    scheds[0]->step_count = 0;
    rc = sched_step(scheds[0], -1);
    if (rc) {
        for (int i = 0; i < n; i++) scheds[i]->last_epoch += 1;
        wf__free(s->children, (size_t)n * sizeof *s->children);
        s->children = NULL;
        sched_free_raw(s);
        return NULL;
    }
    memcpy(s->children, scheds, (size_t)n * sizeof *scheds);
    s->n_children = n;
    s->step_count = 1;   /* counts the initial step, as for the other schedulers */
    memcpy(s->last_lr, scheds[0]->last_lr, (size_t)s->n_groups * sizeof(double));
    return s;
}

wf_lr_scheduler *wf_sequential_lr_new(wf_optimizer *opt, wf_lr_scheduler *const *scheds, int n,
                                      const int *milestones) {
    WF__NAMED("wf_sequential_lr_new", wf_lr_scheduler *, !r, wf_sequential_lr_new__body(opt, scheds, n, milestones));
}

double wf_lr_scheduler_get_last_lr(const wf_lr_scheduler *s, int group) {
    if (!s) { wf__error(WF_ENULL, "wf_lr_scheduler_get_last_lr: scheduler is NULL"); return NAN; }
    if (group < 0 || group >= s->n_groups) {
        wf__error(WF_EINDEX, "wf_lr_scheduler_get_last_lr: %s: group %d out of range (%d groups)", s->name, group, s->n_groups);
        return NAN;
    }
    return s->last_lr[group];
}

int wf_lr_scheduler_last_epoch(const wf_lr_scheduler *s) {
    if (!s) { wf__error(WF_ENULL, "wf_lr_scheduler_last_epoch: scheduler is NULL"); return -1; }
    return s->last_epoch;
}

/* ---------------------------------------------------------------- state dict */

static void json_list(wf_osbuf *b, const char *key, const double *v, int n) {
    wf__osb_printf(b, ", \"%s\": [", key);
    for (int i = 0; i < n; i++) {
        if (i) wf__osb_printf(b, ", ");
        wf__osb_double(b, v[i]);
    }
    wf__osb_printf(b, "]");
}

static void sched_json(const wf_lr_scheduler *s, wf_osbuf *b) {
    wf__osb_printf(b, "{\"type\": \"%s\"", s->name);
    switch (s->kind) {
    case S_STEP: wf__osb_printf(b, ", \"step_size\": %d, \"gamma\": ", s->step_size); wf__osb_double(b, s->gamma); break;
    case S_MULTISTEP:
        wf__osb_printf(b, ", \"milestones\": [");
        for (int i = 0; i < s->n_milestones; i++) wf__osb_printf(b, "%s%d", i ? ", " : "", s->milestones[i]);
        wf__osb_printf(b, "], \"gamma\": ");
        wf__osb_double(b, s->gamma);
        break;
    case S_EXP: wf__osb_printf(b, ", \"gamma\": "); wf__osb_double(b, s->gamma); break;
    case S_LINEAR:
        wf__osb_printf(b, ", \"start_factor\": "); wf__osb_double(b, s->start_factor);
        wf__osb_printf(b, ", \"end_factor\": "); wf__osb_double(b, s->end_factor);
        wf__osb_printf(b, ", \"total_iters\": %d", s->total_iters);
        break;
    case S_COSINE: wf__osb_printf(b, ", \"T_max\": %d, \"eta_min\": ", s->T_max); wf__osb_double(b, s->eta_min); break;
    case S_ONECYCLE:
        wf__osb_printf(b, ", \"total_steps\": %d, \"_anneal_func_type\": \"%s\", \"cycle_momentum\": %s, \"use_beta1\": %s, "
                      "\"_schedule_phases\": [", s->total_steps, s->anneal == WF_ANNEAL_COS ? "cos" : "linear",
                      s->cycle_momentum ? "true" : "false", s->use_beta1 ? "true" : "false");
        for (int i = 0; i < s->n_phases; i++) {
            const phase *p = &s->phases[i];
            wf__osb_printf(b, "%s{\"end_step\": ", i ? ", " : "");
            wf__osb_double(b, p->end_step);
            wf__osb_printf(b, ", \"start_lr\": \"%s\", \"end_lr\": \"%s\", \"start_momentum\": \"%s\", \"end_momentum\": \"%s\"}",
                          p->start_lr, p->end_lr, p->start_momentum, p->end_momentum);
        }
        wf__osb_printf(b, "]");
        break;
    case S_LAMBDA:
        wf__osb_printf(b, ", \"lr_lambdas\": [");
        for (int i = 0; i < s->n_groups; i++) wf__osb_printf(b, "%snull", i ? ", " : "");
        wf__osb_printf(b, "]");
        break;
    case S_SEQUENTIAL:
        wf__osb_printf(b, ", \"_milestones\": [");
        for (int i = 0; i < s->n_milestones; i++) wf__osb_printf(b, "%s%d", i ? ", " : "", s->milestones[i]);
        wf__osb_printf(b, "], \"_schedulers\": [");
        for (int i = 0; i < s->n_children; i++) {
            if (i) wf__osb_printf(b, ", ");
            sched_json(s->children[i], b);
        }
        wf__osb_printf(b, "]");
        break;
    }
    if (s->kind != S_SEQUENTIAL) json_list(b, "base_lrs", s->base_lrs, s->n_groups);
    wf__osb_printf(b, ", \"last_epoch\": %d, \"_step_count\": %d", s->last_epoch, s->step_count);
    json_list(b, "_last_lr", s->last_lr, s->n_groups);
    wf__osb_printf(b, "}");
}

int wf_lr_scheduler_state_dict(const wf_lr_scheduler *s, char *buf, size_t n) {
    if (!s) return wf__error(WF_ENULL, "wf_lr_scheduler_state_dict: scheduler is NULL");
    if (n > 0 && !buf) return wf__error(WF_ENULL, "wf_lr_scheduler_state_dict: buf is NULL");
    wf_osbuf b = {0};
    sched_json(s, &b);
    if (b.oom || b.n > (size_t)0x7fffffff) { wf__osb_free(&b); return wf__error(WF_ENOMEM, "wf_lr_scheduler_state_dict: out of memory"); }
    int len = (int)b.n;
    if (n > 0) {
        size_t k = b.n < n - 1 ? b.n : n - 1;
        memcpy(buf, b.p, k);
        buf[k] = 0;
    }
    wf__osb_free(&b);
    return len;
}

static const char *const LS = "wf_lr_scheduler_load_state_dict";

static int get_num(const wf_ojval *o, const char *key, bool required, double *out, const char *who) {
    const wf_ojval *v = wf__ojson_get(o, key);
    if (!v) return required ? wf__error(WF_EINVAL, "%s: %s: missing '%s'", LS, who, key) : 0;
    if (v->type != WF_OJ_NUM) return wf__error(WF_EINVAL, "%s: %s: '%s' must be a number", LS, who, key);
    *out = v->num;
    return 0;
}

static int get_int(const wf_ojval *o, const char *key, bool required, int *out, const char *who) {
    double d = *out;
    int rc = get_num(o, key, required, &d, who);
    if (rc) return rc;
    if (d != floor(d) || fabs(d) > 1e9) return wf__error(WF_EINVAL, "%s: %s: '%s' must be an integer", LS, who, key);
    *out = (int)d;
    return 0;
}

static int get_list(const wf_ojval *o, const char *key, double *out, int n, const char *who) {
    const wf_ojval *v = wf__ojson_get(o, key);
    if (!v) return wf__error(WF_EINVAL, "%s: %s: missing '%s'", LS, who, key);
    if (v->type != WF_OJ_ARR || v->n != n)
        return wf__error(WF_EINVAL, "%s: %s: '%s' must be a list of %d numbers (one per group)", LS, who, key, n);
    for (int i = 0; i < n; i++) {
        if (v->items[i].type != WF_OJ_NUM) return wf__error(WF_EINVAL, "%s: %s: '%s'[%d] is not a number", LS, who, key, i);
        out[i] = v->items[i].num;
    }
    return 0;
}

/* Validate everything into a copy first, then commit (no partial loads). */
static int sched_load(wf_lr_scheduler *s, const wf_ojval *o, bool commit) {
    if (o->type != WF_OJ_OBJ) return wf__error(WF_EINVAL, "%s: %s: state must be a JSON object", LS, s->name);
    const wf_ojval *ty = wf__ojson_get(o, "type");
    if (ty && (ty->type != WF_OJ_STR || strcmp(ty->str, s->name)))
        return wf__error(WF_EINVAL, "%s: state is for %s, the scheduler is %s", LS,
                         ty->type == WF_OJ_STR ? ty->str : "?", s->name);
    wf_lr_scheduler t = *s;   /* scalar fields only; arrays handled below */
    double bl[64], ll[64];
    if (s->n_groups > 64) return wf__error(WF_ENOTSUP, "%s: %s: more than 64 groups", LS, s->name);
    int rc = 0;
    if (!rc) rc = get_int(o, "last_epoch", true, &t.last_epoch, s->name);
    if (!rc) rc = get_int(o, "_step_count", true, &t.step_count, s->name);
    if (!rc) rc = get_list(o, "_last_lr", ll, s->n_groups, s->name);
    if (!rc && s->kind != S_SEQUENTIAL) rc = get_list(o, "base_lrs", bl, s->n_groups, s->name);
    switch (s->kind) {
    case S_STEP:
        if (!rc) rc = get_int(o, "step_size", false, &t.step_size, s->name);
        if (!rc) rc = get_num(o, "gamma", false, &t.gamma, s->name);
        if (!rc && t.step_size <= 0) rc = wf__error(WF_EINVAL, "%s: StepLR: step_size must be positive", LS);
        break;
    case S_MULTISTEP: case S_EXP: if (!rc) rc = get_num(o, "gamma", false, &t.gamma, s->name); break;
    case S_LINEAR:
        if (!rc) rc = get_num(o, "start_factor", false, &t.start_factor, s->name);
        if (!rc) rc = get_num(o, "end_factor", false, &t.end_factor, s->name);
        if (!rc) rc = get_int(o, "total_iters", false, &t.total_iters, s->name);
        if (!rc && t.total_iters <= 0) rc = wf__error(WF_EINVAL, "%s: LinearLR: total_iters must be positive", LS);
        break;
    case S_COSINE:
        if (!rc) rc = get_int(o, "T_max", false, &t.T_max, s->name);
        if (!rc) rc = get_num(o, "eta_min", false, &t.eta_min, s->name);
        if (!rc && t.T_max <= 0) rc = wf__error(WF_EINVAL, "%s: CosineAnnealingLR: T_max must be positive", LS);
        break;
    case S_ONECYCLE:
        if (!rc) rc = get_int(o, "total_steps", false, &t.total_steps, s->name);
        break;
    case S_LAMBDA: break;
    case S_SEQUENTIAL: {
        const wf_ojval *ch = wf__ojson_get(o, "_schedulers");
        if (!rc && (!ch || ch->type != WF_OJ_ARR || ch->n != s->n_children))
            rc = wf__error(WF_EINVAL, "%s: SequentialLR: '_schedulers' must list %d scheduler states", LS, s->n_children);
        for (int i = 0; i < s->n_children && !rc; i++) rc = sched_load(s->children[i], &ch->items[i], commit);
        break;
    }
    }
    if (rc || !commit) return rc;
    s->last_epoch = t.last_epoch;
    s->step_count = t.step_count;
    s->step_size = t.step_size;
    s->gamma = t.gamma;
    s->start_factor = t.start_factor;
    s->end_factor = t.end_factor;
    s->total_iters = t.total_iters;
    s->T_max = t.T_max;
    s->eta_min = t.eta_min;
    s->total_steps = t.total_steps;
    memcpy(s->last_lr, ll, (size_t)s->n_groups * sizeof(double));
    if (s->kind != S_SEQUENTIAL) memcpy(s->base_lrs, bl, (size_t)s->n_groups * sizeof(double));
    return 0;
}

int wf_lr_scheduler_load_state_dict(wf_lr_scheduler *s, const char *json) {
    if (!s || !json) return wf__error(WF_ENULL, "%s: an argument is NULL", LS);
    wf_ojval root;
    int rc = wf__ojson_parse(LS, json, &root);
    if (rc) return rc;
    rc = sched_load(s, &root, false);
    if (!rc) rc = sched_load(s, &root, true);
    wf__ojson_free(&root);
    return rc;
}
