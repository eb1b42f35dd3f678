/* nn/loss.c: losses, composed from tensor ops (PyTorch's formulas). */
#include "nn_impl.h"

#include <math.h>
#include <string.h>

#define FN_SCOPE_RETURN(y) do { if (y) wf_keep(y); wf_scope_end(); return (y); } while (0)

static int check_reduction(const char *op, wf_reduction r, bool batchmean_ok) {
    if (r == WF_REDUCTION_MEAN || r == WF_REDUCTION_SUM || r == WF_REDUCTION_NONE) return 0;
    if (r == WF_REDUCTION_BATCHMEAN && batchmean_ok) return 0;
    return wf__error(WF_EINVAL, "%s: invalid reduction %d", op, (int)r);
}

static wf_tensor *reduce(wf_tensor *l, wf_reduction r) {
    switch (r) {
    case WF_REDUCTION_SUM: return wf_sum_all(l);
    case WF_REDUCTION_NONE: return l;
    default: return wf_mean_all(l);
    }
}

/* ================================================================ nll / cross entropy */

/* Validate class-index targets: dtype, shape against input, values in [0, C) or ignored. */
static int check_targets(const char *op, wf_tensor *input, wf_tensor *target, int cdim, int64_t C, int64_t ignore) {
    char b1[96], b2[96];
    if (wf_tensor_dtype(target) != WF_I64)
        return wf__error(WF_EDTYPE, "%s: class-index target must be int64, got %s", op, wf_dtype_name(wf_tensor_dtype(target)));
    /* target shape = input shape without the class dim */
    bool ok = wf_ndim(target) == wf_ndim(input) - 1;
    for (int i = 0, j = 0; ok && i < wf_ndim(input); i++) {
        if (i == cdim) continue;
        ok = wf_shape(target)[j++] == wf_shape(input)[i];
    }
    if (!ok)
        return wf__error(WF_ESHAPE, "%s: target of shape %s does not match input of shape %s (expected the input's shape "
                         "without the class dimension %d)", op, wf_shape_str(target, b1, sizeof b1),
                         wf_shape_str(input, b2, sizeof b2), cdim);
    int64_t n = wf_numel(target);
    if (!n) return 0;
    int64_t *v = wf__malloc(sizeof(int64_t) * (size_t)n);
    if (!v) return wf__error(WF_ENOMEM, "%s: out of memory", op);
    int rc = wf_to_array(target, v, WF_I64);
    for (int64_t i = 0; i < n && !rc; i++)
        if (v[i] != ignore && (v[i] < 0 || v[i] >= C))
            rc = wf__error(WF_EINDEX, "%s: target %lld is out of bounds for %lld classes (at element %lld)", op,
                           (long long)v[i], (long long)C, (long long)i);
    wf__free(v, sizeof(int64_t) * (size_t)n);
    return rc;
}

/* Shared validation; sets *cdim (class dim) and *C. */
static int check_input(const char *op, wf_tensor *input, const wf_cross_entropy_opts *o, int *cdim, int64_t *C) {
    char b[96];
    if (!wf_dtype_is_floating(wf_tensor_dtype(input)))
        return wf__error(WF_EDTYPE, "%s: input must be floating, got %s", op, wf_dtype_name(wf_tensor_dtype(input)));
    if (wf_ndim(input) < 1)
        return wf__error(WF_ESHAPE, "%s: input must have at least 1 dim ([C] or [N, C, ...]), got %s", op,
                         wf_shape_str(input, b, sizeof b));
    *cdim = wf_ndim(input) == 1 ? 0 : 1;
    *C = wf_shape(input)[*cdim];
    if (check_reduction(op, o->reduction, false)) return wf_error();
    if (o->weight) {
        if (wf_ndim(o->weight) != 1 || wf_shape(o->weight)[0] != *C)
            return wf__error(WF_ESHAPE, "%s: weight should be a 1-D tensor of size %lld (the number of classes), got %s", op,
                             (long long)*C, wf_shape_str(o->weight, b, sizeof b));
        if (!wf_dtype_is_floating(wf_tensor_dtype(o->weight)))
            return wf__error(WF_EDTYPE, "%s: weight must be floating, got %s", op, wf_dtype_name(wf_tensor_dtype(o->weight)));
    }
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        return wf__error(WF_EINVAL, "%s: label_smoothing must be between 0.0 and 1.0, got %g", op, o->label_smoothing);
    return 0;
}

/* [1, C, 1, ...] (or [C] for 1-D input) view of the class weights */
static wf_tensor *class_view(wf_tensor *w, int ndim, int cdim) {
    int64_t shape[WF_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = 1;
    shape[cdim] = wf_numel(w);
    return wf_reshape(w, shape, ndim);
}

/* nll on log-probabilities logp with validated class targets. Returns the reduced loss; also
 * writes the non-ignored mask and per-element weights (for label smoothing) if asked. */
/* sum(loss) / wsum for the mean reduction. Half precision sums in f32 (the total of a large
 * batch overflows f16 where the mean does not, and PyTorch's does not). Every target ignored
 * (wsum 0) gives NaN, as PyTorch's, with zero gradients rather than the NaN ones of 0/0. */
static wf_tensor *weighted_mean(wf_tensor *loss, wf_tensor *wsum) {
    wf_dtype dt = loss ? wf_tensor_dtype(loss) : WF_F32;
    bool half = dt == WF_F16 || dt == WF_BF16;
    wf_tensor *total = half ? wf_sum_all(wf_to_dtype(loss, WF_F32)) : wf_sum_all(loss);
    if (half && wsum) wsum = wf_to_dtype(wsum, WF_F32);
    wf_tensor *none = wsum ? wf_eq_scalar(wsum, 0) : NULL;
    wf_tensor *den = none ? wf_where(none, wf_ones_like(wsum), wsum) : NULL;
    wf_tensor *y = den ? wf_div(total, den) : NULL;
    y = y ? wf_where(none, wf_full_like(y, NAN), y) : NULL;
    return half && y ? wf_to_dtype(y, dt) : y;
}

static wf_tensor *nll_core(wf_tensor *logp, wf_tensor *target, int cdim, const wf_cross_entropy_opts *o, int64_t ignore,
                           wf_tensor **mask_out, wf_tensor **wsum_out) {
    wf_tensor *keep_b = wf_ne_scalar(target, (double)ignore);                         /* bool */
    wf_tensor *safe = wf_where(keep_b, target, wf__scalar_like(target, 0));           /* i64 */
    wf_tensor *picked = wf_squeeze(wf_gather(logp, cdim, wf_unsqueeze(safe, cdim)), cdim);
    wf_tensor *keep = wf_to_dtype(keep_b, wf_tensor_dtype(logp));
    wf_tensor *wi = keep;
    if (o->weight) {
        wf_tensor *wflat = wf_index_select(wf_to_dtype(o->weight, wf_tensor_dtype(logp)), 0, wf_flatten(safe, 0, -1));
        wi = wf_mul(wf_reshape(wflat, wf_shape(target), wf_ndim(target)), keep);
    }
    wf_tensor *loss = wf_neg(wf_mul(picked, wi));
    if (mask_out) *mask_out = keep_b;
    wf_tensor *wsum = o->reduction == WF_REDUCTION_MEAN ? wf_sum_all(wi) : NULL;
    if (wsum_out) *wsum_out = wsum;
    switch (o->reduction) {
    case WF_REDUCTION_SUM: return wf_sum_all(loss);
    case WF_REDUCTION_NONE: return loss;
    default: return weighted_mean(loss, wsum);
    }
}

static const wf_cross_entropy_opts default_ce = { 0 };

wf_tensor *wf_nll_loss(wf_tensor *input, wf_tensor *target, const wf_cross_entropy_opts *opts) {
    const char *op = "wf_nll_loss";
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null(op, 2, input, target)) return NULL;
    const wf_cross_entropy_opts *o = opts ? opts : &default_ce;
    int cdim;
    int64_t C, ignore = o->ignore_index_set ? o->ignore_index : -100;
    if (check_input(op, input, o, &cdim, &C)) return NULL;
    if (o->label_smoothing != 0) {
        wf__error(WF_EINVAL, "%s: label_smoothing is not an option of nll_loss (use wf_cross_entropy)", op);
        return NULL;
    }
    if (check_targets(op, input, target, cdim, C, ignore)) return NULL;
    wf_scope_begin();
    wf_tensor *y = nll_core(input, target, cdim, o, ignore, NULL, NULL);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_cross_entropy(wf_tensor *input, wf_tensor *target, const wf_cross_entropy_opts *opts) {
    const char *op = "wf_cross_entropy";
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null(op, 2, input, target)) return NULL;
    const wf_cross_entropy_opts *o = opts ? opts : &default_ce;
    int cdim;
    int64_t C, ignore = o->ignore_index_set ? o->ignore_index : -100;
    if (check_input(op, input, o, &cdim, &C)) return NULL;
    double eps = o->label_smoothing;
    char b1[96], b2[96];
    if (wf_dtype_is_floating(wf_tensor_dtype(target))) {
        /* class probabilities */
        if (!wf_same_shape(input, target)) {
            wf__error(WF_ESHAPE, "%s: probability target of shape %s must have the input's shape %s", op,
                      wf_shape_str(target, b1, sizeof b1), wf_shape_str(input, b2, sizeof b2));
            return NULL;
        }
        wf_scope_begin();
        wf_tensor *logp = wf_log_softmax(input, cdim);
        wf_tensor *t = target;
        if (eps > 0) t = wf_add_scalar(wf_mul_scalar(t, 1.0 - eps), eps / (double)C);
        wf_tensor *prod = wf_mul(logp, t);
        if (o->weight) prod = wf_mul(prod, class_view(wf_to_dtype(o->weight, wf_tensor_dtype(input)), wf_ndim(input), cdim));
        wf_tensor *y;
        switch (o->reduction) {
        case WF_REDUCTION_SUM: y = wf_neg(wf_sum_all(prod)); break;
        case WF_REDUCTION_NONE: y = wf_neg(wf_sum(prod, &cdim, 1, false)); break;
        default: {
            int64_t n = C ? wf_numel(input) / C : 0;
            y = wf_div_scalar(wf_neg(wf_sum_all(prod)), n ? (double)n : NAN);
        }
        }
        FN_SCOPE_RETURN(y);
    }
    if (!o->weight && eps == 0 && wf_ndim(input) == 2) {
        /* fused softmax cross-entropy (CUDA): targets are checked by the kernel, which
         * reports an index out of range as WF_EINDEX at the next synchronize */
        bool handled;
        wf_tensor *fused = wf__cross_entropy_fused(input, target, ignore, (int)o->reduction, &handled);
        if (handled) return fused;
    }
    if (check_targets(op, input, target, cdim, C, ignore)) return NULL;
    wf_scope_begin();
    wf_tensor *logp = wf_log_softmax(input, cdim);
    wf_tensor *keep_b = NULL, *wsum = NULL;
    wf_tensor *nll = nll_core(logp, target, cdim, o, ignore, &keep_b, &wsum);
    wf_tensor *y = nll;
    if (eps > 0 && nll) {
        wf_tensor *lw = logp;
        if (o->weight) lw = wf_mul(logp, class_view(wf_to_dtype(o->weight, wf_tensor_dtype(input)), wf_ndim(input), cdim));
        wf_tensor *smooth = wf_neg(wf_sum(lw, &cdim, 1, false));
        smooth = wf_where(keep_b, smooth, wf__scalar_like(logp, 0));
        wf_tensor *ret;
        switch (o->reduction) {
        case WF_REDUCTION_SUM: ret = wf_sum_all(smooth); break;
        case WF_REDUCTION_NONE: ret = smooth; break;
        default: ret = weighted_mean(smooth, wsum); break;
        }
        y = wf_add(wf_mul_scalar(nll, 1.0 - eps), wf_mul_scalar(ret, eps / (double)C));
    }
    FN_SCOPE_RETURN(y);
}

/* ================================================================ regression losses */

static int check_pair(const char *op, wf_tensor *input, wf_tensor *target, wf_reduction r) {
    if (check_reduction(op, r, false)) return wf_error();
    if (!wf_dtype_is_floating(wf_tensor_dtype(input)) || !wf_dtype_is_floating(wf_tensor_dtype(target)))
        return wf__error(WF_EDTYPE, "%s: input and target must be floating, got %s and %s", op,
                         wf_dtype_name(wf_tensor_dtype(input)), wf_dtype_name(wf_tensor_dtype(target)));
    return 0;
}

static wf_tensor *wf_mse_loss__body(wf_tensor *input, wf_tensor *target, wf_reduction reduction) {
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null("wf_mse_loss", 2, input, target)) return NULL;
    if (check_pair("wf_mse_loss", input, target, reduction)) return NULL;
    wf_scope_begin();
    wf_tensor *d = wf_sub(input, target);
    wf_tensor *y = reduce(wf_mul(d, d), reduction);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_mse_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction) {
    WF__NAMED("wf_mse_loss", wf_tensor *, !r, wf_mse_loss__body(input, target, reduction));
}

wf_tensor *wf_l1_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction) {
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null("wf_l1_loss", 2, input, target)) return NULL;
    if (check_pair("wf_l1_loss", input, target, reduction)) return NULL;
    wf_scope_begin();
    wf_tensor *y = reduce(wf_abs(wf_sub(input, target)), reduction);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_smooth_l1_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction, double beta) {
    const char *op = "wf_smooth_l1_loss";
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null(op, 2, input, target)) return NULL;
    if (check_pair(op, input, target, reduction)) return NULL;
    if (!(beta >= 0)) { wf__error(WF_EINVAL, "%s: beta must be non-negative, got %g", op, beta); return NULL; }
    wf_scope_begin();
    wf_tensor *d = wf_sub(input, target);
    wf_tensor *ad = wf_abs(d);
    wf_tensor *l;
    if (beta == 0) l = ad;
    else l = wf_where(wf_lt_scalar(ad, beta), wf_mul_scalar(wf_mul(d, d), 0.5 / beta), wf_sub_scalar(ad, 0.5 * beta));
    wf_tensor *y = reduce(l, reduction);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_binary_cross_entropy_with_logits(wf_tensor *input, wf_tensor *target, const wf_bce_opts *opts) {
    const char *op = "wf_binary_cross_entropy_with_logits";
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null(op, 2, input, target)) return NULL;
    wf_bce_opts o = opts ? *opts : (wf_bce_opts){ 0 };
    if (check_pair(op, input, target, o.reduction)) return NULL;
    if (!wf_same_shape(input, target)) {
        char b1[96], b2[96];
        wf__error(WF_ESHAPE, "%s: target size %s must be the same as input size %s", op, wf_shape_str(target, b1, sizeof b1),
                  wf_shape_str(input, b2, sizeof b2));
        return NULL;
    }
    wf_scope_begin();
    /* log_sigmoid(x) = -(log1p(exp(-|x|)) + max(-x, 0)) */
    wf_tensor *log_sig = wf_neg(wf_add(wf_log1p(wf_exp(wf_neg(wf_abs(input)))), wf_relu(wf_neg(input))));
    if (o.pos_weight) {
        wf_tensor *log_weight = wf_add_scalar(wf_mul(wf_sub_scalar(o.pos_weight, 1.0), target), 1.0);
        log_sig = wf_mul(log_sig, log_weight);
    }
    wf_tensor *loss = wf_sub(wf_mul(wf_rsub_scalar(target, 1.0), input), log_sig);
    if (o.weight) loss = wf_mul(loss, o.weight);
    wf_tensor *y = reduce(loss, o.reduction);
    FN_SCOPE_RETURN(y);
}

static wf_tensor *wf_kl_div__body(wf_tensor *input, wf_tensor *target, wf_reduction reduction, bool log_target) {
    const char *op = "wf_kl_div";
    input = wf__autocast_arg(input, WF__AC_F32), target = wf__autocast_arg(target, WF__AC_F32);   /* autocast: losses in f32 */
    if (wf__any_null(op, 2, input, target)) return NULL;
    if (check_reduction(op, reduction, true)) return NULL;
    if (check_pair(op, input, target, WF_REDUCTION_MEAN)) return NULL;
    wf_scope_begin();
    wf_tensor *l;
    if (log_target) l = wf_mul(wf_exp(target), wf_sub(target, input));
    else {
        /* xlogy(t, t) - t * input, with 0 where t == 0 */
        wf_tensor *pos = wf_gt_scalar(target, 0.0);
        wf_tensor *safe = wf_where(pos, target, wf__scalar_like(target, 1.0));
        wf_tensor *xlogy = wf_where(pos, wf_mul(target, wf_log(safe)), wf__scalar_like(target, 0.0));
        l = wf_sub(xlogy, wf_mul(target, input));
    }
    wf_tensor *y;
    if (reduction == WF_REDUCTION_BATCHMEAN) {
        int64_t n = wf_ndim(input) ? wf_shape(input)[0] : 1;
        y = wf_div_scalar(wf_sum_all(l), (double)n);
    } else y = reduce(l, reduction);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_kl_div(wf_tensor *input, wf_tensor *target, wf_reduction reduction, bool log_target) {
    WF__NAMED("wf_kl_div", wf_tensor *, !r, wf_kl_div__body(input, target, reduction, log_target));
}
