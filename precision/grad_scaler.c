/* precision/grad_scaler.c: dynamic loss scaling (torch.amp.GradScaler).
 *
 * Per step: backward(scale(loss)); unscale_(opt) (optional, before clipping); step(opt)
 * (unscales if not done yet, skips the optimizer step when a gradient is inf/NaN);
 * update() (backoff on inf/NaN, growth after growth_interval good steps). The scale is kept
 * as a float32 value, as PyTorch keeps it in a float32 tensor; a growth that would
 * overflow float32 is not applied (PyTorch's _amp_update_scale_). Per optimizer the scaler
 * remembers, until update(), whether it was unscaled / stepped and whether an inf was found. */
#include "precision_impl.h"

#include <math.h>
#include <string.h>

#define MAX_OPTS 16

typedef struct { wf_optimizer *opt; bool unscaled, stepped; double found_inf; } opt_rec;

struct wf_grad_scaler {
    bool enabled;
    double scale, growth_factor, backoff_factor;
    int64_t growth_interval, growth_tracker;
    opt_rec recs[MAX_OPTS];
    int nrecs;
    bool last_found_inf;
    int64_t skipped;
    wf_found_inf_reducer reducer;
    void *reducer_ud;
};

static double f32(double v) { return (double)(float)v; }

static int check_params(const char *op, double init_scale, double growth, double backoff, int64_t interval) {
    if (!(init_scale > 0) || !isfinite(init_scale))
        return wf__error(WF_EINVAL, "%s: init_scale must be a finite value > 0, got %g", op, init_scale);
    if (!(growth > 1.0) || !isfinite(growth))
        return wf__error(WF_EINVAL, "%s: growth_factor must be > 1, got %g", op, growth);
    if (!(backoff > 0 && backoff < 1.0))
        return wf__error(WF_EINVAL, "%s: backoff_factor must be in (0, 1), got %g", op, backoff);
    if (interval < 1)
        return wf__error(WF_EINVAL, "%s: growth_interval must be >= 1, got %lld", op, (long long)interval);
    return 0;
}

wf_grad_scaler *wf_grad_scaler_new(double init_scale, double growth_factor, double backoff_factor,
                                   int growth_interval, bool enabled) {
    const char *op = "wf_grad_scaler_new";
    if (init_scale == 0) init_scale = 65536.0;
    if (growth_factor == 0) growth_factor = 2.0;
    if (backoff_factor == 0) backoff_factor = 0.5;
    if (growth_interval == 0) growth_interval = 2000;
    if (check_params(op, init_scale, growth_factor, backoff_factor, growth_interval)) return NULL;
    wf_grad_scaler *s = wf__calloc(1, sizeof *s);
    if (!s) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
    s->enabled = enabled;
    s->scale = f32(init_scale);
    s->growth_factor = growth_factor;
    s->backoff_factor = backoff_factor;
    s->growth_interval = growth_interval;
    return s;
}

void wf_grad_scaler_free(wf_grad_scaler *s) {
    if (s) wf__free(s, sizeof *s);
}

bool wf_grad_scaler_is_enabled(const wf_grad_scaler *s) { return s && s->enabled; }

wf_tensor *wf_grad_scaler_scale(wf_grad_scaler *s, wf_tensor *loss) {
    if (!s) { wf__error(WF_ENULL, "wf_grad_scaler_scale: scaler is NULL"); return NULL; }
    if (!loss) return wf__any_null("wf_grad_scaler_scale", 1, loss), NULL;
    if (!s->enabled) return wf_mul_scalar(loss, 1.0);
    return wf_mul_scalar(loss, s->scale);
}

static opt_rec *rec_for(wf_grad_scaler *s, wf_optimizer *opt, bool create) {
    for (int i = 0; i < s->nrecs; i++)
        if (s->recs[i].opt == opt) return &s->recs[i];
    if (!create) return NULL;
    if (s->nrecs == MAX_OPTS) {
        wf__error(WF_EINVAL, "wf_grad_scaler: more than %d optimizers between updates", MAX_OPTS);
        return NULL;
    }
    opt_rec *r = &s->recs[s->nrecs++];
    *r = (opt_rec){ opt, false, false, 0 };
    return r;
}

/* Multiply g by inv in place (inv 1: only check); *nonfinite: any element of the result inf/NaN. */
static int unscale_one(wf_tensor *g, double inv, bool *nonfinite) {
    *nonfinite = false;
    int64_t n = wf_numel(g);
    if (n == 0) return 0;
    if (g->device.type == WF_DEV_CPU && wf_is_contiguous(g) && (g->dtype == WF_F32 || g->dtype == WF_F64)) {
        /* fast path: one pass, no allocation */
        int bad = 0;
        bool write = inv != 1.0;
        if (g->dtype == WF_F32) {
            float *p = (float *)wf__host_ptr(g), fi = (float)inv;
            if (write) for (int64_t i = 0; i < n; i++) { float v = p[i] * fi; p[i] = v; bad |= !(v - v == 0); }
            else for (int64_t i = 0; i < n; i++) { float v = p[i]; bad |= !(v - v == 0); }
        } else {
            double *p = (double *)wf__host_ptr(g);
            if (write) for (int64_t i = 0; i < n; i++) { double v = p[i] * inv; p[i] = v; bad |= !(v - v == 0); }
            else for (int64_t i = 0; i < n; i++) { double v = p[i]; bad |= !(v - v == 0); }
        }
        if (write) wf__bump_version(g);
        *nonfinite = bad != 0;
        return 0;
    }
    int rc = 0;
    wf_scope_begin();
    bool prev = wf_set_grad_enabled(false);
    if (inv != 1.0) rc = wf_mul_scalar_(g, inv);
    if (!rc) {
        wf_tensor *bad = wf_sum_all(wf_logical_not(wf_isfinite(g)));
        double v = bad ? wf_item(bad) : NAN;
        if (v != v) rc = wf_error() ? wf_error() : WF_ENOMEM;
        else *nonfinite = v > 0;
    }
    wf_set_grad_enabled(prev);
    wf_scope_end();
    return rc;
}

int wf__grads_nonfinite(wf_optimizer *opt, double inv, int *bad_group, int *bad_index) {
    int ng = wf_optimizer_num_groups(opt);
    if (ng < 0) return wf_error() ? wf_error() : WF_EINVAL;
    int found = 0;
    for (int gi = 0; gi < ng; gi++) {
        int np = wf_optimizer_group_size(opt, gi);
        for (int i = 0; i < np; i++) {
            wf_tensor *p = wf_optimizer_group_param(opt, gi, i);
            wf_tensor *g = p ? wf_grad(p) : NULL;
            if (!g) continue;
            bool nf;
            int rc = unscale_one(g, inv, &nf);
            if (rc) return rc;
            if (nf && !found) {
                found = 1;
                if (bad_group) *bad_group = gi;
                if (bad_index) *bad_index = i;
            }
        }
    }
    return found;
}

int wf_grad_scaler_unscale_(wf_grad_scaler *s, wf_optimizer *opt) {
    const char *op = "wf_grad_scaler_unscale_";
    if (!s || !opt) return wf__error(WF_ENULL, "%s: scaler and optimizer must not be NULL", op);
    if (!s->enabled) return 0;
    opt_rec *r = rec_for(s, opt, true);
    if (!r) return wf_error();
    if (r->unscaled)
        return wf__error(WF_ESTATE, "%s: unscale_() has already been called on this optimizer since the last update()", op);
    if (r->stepped)
        return wf__error(WF_ESTATE, "%s: unscale_() is being called after step()", op);
    double inv = f32(1.0 / s->scale);
    int found = wf__grads_nonfinite(opt, inv, NULL, NULL);
    if (found < 0) return found;
    double fi = found ? 1.0 : 0.0;
    if (s->reducer) {
        int rc = s->reducer(&fi, s->reducer_ud);
        if (rc) return wf_error() ? wf_error() : rc;
    }
    r->found_inf = fi > 0 ? 1.0 : 0.0;
    r->unscaled = true;
    s->last_found_inf = r->found_inf > 0;
    return 0;
}

int wf_grad_scaler_step(wf_grad_scaler *s, wf_optimizer *opt, bool *skipped) {
    const char *op = "wf_grad_scaler_step";
    if (skipped) *skipped = false;
    if (!s || !opt) return wf__error(WF_ENULL, "%s: scaler and optimizer must not be NULL", op);
    if (!s->enabled) return wf_optimizer_step(opt);
    opt_rec *r = rec_for(s, opt, false);
    if (r && r->stepped)
        return wf__error(WF_ESTATE, "%s: step() has already been called since the last update()", op);
    if (!r || !r->unscaled) {
        int rc = wf_grad_scaler_unscale_(s, opt);
        if (rc) return rc;
        r = rec_for(s, opt, false);
    }
    r->stepped = true;
    if (r->found_inf > 0) {
        s->skipped++;
        if (skipped) *skipped = true;
        return 0;
    }
    return wf_optimizer_step(opt);
}

int wf_grad_scaler_update(wf_grad_scaler *s) {
    if (!s) return wf__error(WF_ENULL, "wf_grad_scaler_update: scaler is NULL");
    if (!s->enabled) return 0;
    if (s->nrecs == 0)
        return wf__error(WF_ESTATE, "wf_grad_scaler_update: no inf checks were recorded prior to update "
                         "(call unscale_() or step() first)");
    bool found = false;
    for (int i = 0; i < s->nrecs; i++) found |= s->recs[i].found_inf > 0;
    if (found) {
        s->scale = f32(s->scale * s->backoff_factor);
        s->growth_tracker = 0;
    } else if (++s->growth_tracker >= s->growth_interval) {
        double ns = f32(s->scale * s->growth_factor);
        if (isfinite(ns)) s->scale = ns;
        s->growth_tracker = 0;
    }
    s->nrecs = 0;
    return 0;
}

int wf_grad_scaler_set_scale(wf_grad_scaler *s, double scale) {
    if (!s) return wf__error(WF_ENULL, "wf_grad_scaler_set_scale: scaler is NULL");
    if (!(scale > 0) || !isfinite(scale))
        return wf__error(WF_EINVAL, "wf_grad_scaler_set_scale: scale must be a finite value > 0, got %g", scale);
    s->scale = f32(scale);
    s->nrecs = 0;
    return 0;
}

double wf_grad_scaler_get_scale(const wf_grad_scaler *s) { return s && s->enabled ? s->scale : 1.0; }
int64_t wf_grad_scaler_growth_tracker(const wf_grad_scaler *s) { return s ? s->growth_tracker : 0; }
bool wf_grad_scaler_found_inf(const wf_grad_scaler *s) { return s && s->last_found_inf; }
int64_t wf_grad_scaler_skipped_steps(const wf_grad_scaler *s) { return s ? s->skipped : 0; }

int wf_grad_scaler_state_get(const wf_grad_scaler *s, wf_grad_scaler_state *out) {
    if (!s || !out) return wf__error(WF_ENULL, "wf_grad_scaler_state_get: NULL argument");
    *out = (wf_grad_scaler_state){ s->scale, s->growth_factor, s->backoff_factor, s->growth_interval,
                                   s->growth_tracker };
    return 0;
}

int wf_grad_scaler_state_set(wf_grad_scaler *s, const wf_grad_scaler_state *st) {
    const char *op = "wf_grad_scaler_state_set";
    if (!s || !st) return wf__error(WF_ENULL, "%s: NULL argument", op);
    if (check_params(op, st->scale, st->growth_factor, st->backoff_factor, st->growth_interval)) return wf_error();
    if (st->growth_tracker < 0 || st->growth_tracker >= st->growth_interval)
        return wf__error(WF_EINVAL, "%s: growth_tracker %lld is not in [0, growth_interval = %lld)", op,
                         (long long)st->growth_tracker, (long long)st->growth_interval);
    s->scale = f32(st->scale);
    s->growth_factor = st->growth_factor;
    s->backoff_factor = st->backoff_factor;
    s->growth_interval = st->growth_interval;
    s->growth_tracker = st->growth_tracker;
    s->nrecs = 0;
    return 0;
}

int wf_grad_scaler_set_found_inf_reducer(wf_grad_scaler *s, wf_found_inf_reducer fn, void *ud) {
    if (!s) return wf__error(WF_ENULL, "wf_grad_scaler_set_found_inf_reducer: scaler is NULL");
    s->reducer = fn;
    s->reducer_ud = ud;
    return 0;
}

bool wf__grad_scaler_unscaled(wf_grad_scaler *s, wf_optimizer *opt) {
    opt_rec *r = s ? rec_for(s, opt, false) : NULL;
    return r && r->unscaled;
}
