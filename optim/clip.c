/* optim/clip.c: torch.nn.utils.clip_grad_norm_ and clip_grad_value_. */
#include "optim_impl.h"

#include <math.h>

int wf_clip_grad_norm_(wf_tensor *const *params, int n, double max_norm, double norm_type,
                       bool error_if_nonfinite, double *total_norm) {
    const char *N = "wf_clip_grad_norm_";
    if (total_norm) *total_norm = 0;
    if (n < 0) return wf__error(WF_EINVAL, "%s: negative parameter count %d", N, n);
    if (n > 0 && !params) return wf__error(WF_ENULL, "%s: params is NULL", N);
    if (!(norm_type > 0)) return wf__error(WF_EINVAL, "%s: norm_type must be > 0 or INFINITY (got %g)", N, norm_type);
    if (!(max_norm >= 0)) return wf__error(WF_EINVAL, "%s: max_norm must be >= 0 (got %g)", N, max_norm);
    bool inf = isinf(norm_type);
    double acc = 0;
    int rc = 0, count = 0;
    wf_scope_begin();
    for (int i = 0; i < n && !rc; i++) {
        if (!params[i] || !wf_grad(params[i])) continue;
        wf_tensor *g = wf_grad(params[i]);
        if (!wf_numel(g)) continue;
        count++;
        wf_tensor *nt = wf_norm(g, norm_type, WF_ALL_DIMS, false);
        if (!nt) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        double v = wf_item(nt);
        wf_tensor_free(nt);
        if (inf) acc = (isnan(v) || isnan(acc)) ? NAN : (v > acc ? v : acc);
        else acc += norm_type == 1 ? v : norm_type == 2 ? v * v : pow(v, norm_type);
    }
    wf_scope_end();
    if (rc) return rc;
    double total = inf || !count ? acc : norm_type == 1 ? acc : norm_type == 2 ? sqrt(acc) : pow(acc, 1.0 / norm_type);
    if (total_norm) *total_norm = total;
    if (!count) return 0;
    if (!isfinite(total) && error_if_nonfinite)
        return wf__error(WF_ENONFINITE, "%s: the total norm of order %g for gradients is non-finite (%g), so it "
                         "cannot be clipped; gradients are unchanged (pass error_if_nonfinite = false to scale "
                         "them by the non-finite norm anyway)", N, norm_type, total);
    double coef = max_norm / (total + 1e-6);
    if (!(coef < 1.0) && !isnan(coef)) return 0;   /* clamp(max=1): multiplying by 1 changes nothing */
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < n && !rc; i++) {
        if (!params[i] || !wf_grad(params[i])) continue;
        rc = wf_mul_scalar_(wf_grad(params[i]), coef);
    }
    wf_set_grad_enabled(prev);
    return rc;
}

int wf_clip_grad_value_(wf_tensor *const *params, int n, double clip_value) {
    const char *N = "wf_clip_grad_value_";
    if (n < 0) return wf__error(WF_EINVAL, "%s: negative parameter count %d", N, n);
    if (n > 0 && !params) return wf__error(WF_ENULL, "%s: params is NULL", N);
    if (!(clip_value >= 0)) return wf__error(WF_EINVAL, "%s: clip_value must be >= 0 (got %g)", N, clip_value);
    bool prev = wf_set_grad_enabled(false);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!params[i] || !wf_grad(params[i])) continue;
        rc = wf_clamp_(wf_grad(params[i]), -clip_value, clip_value);
    }
    wf_set_grad_enabled(prev);
    return rc;
}
