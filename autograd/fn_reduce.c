/* autograd/fn_reduce.c: the public reductions and their backward. sum, amax/amin and norm
 * run tensor/ops_reduce.c's raw ops and record a node (norm: PyTorch's gradient at a zero
 * norm); mean, var, std and logsumexp are compositions whose gradients follow from the parts;
 * argmax/argmin have no gradient. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

#include <math.h>

/* ---------------------------------------------------------------- backward */

/* y = sum(x, dims, keepdim=true): gx = gy expanded back to x's shape */
static int sum_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *g = gy[0];
    if (g->dtype != m->dtype) g = wf_to_dtype(g, m->dtype);
    gx[0] = wf_contiguous(wf_expand(g, m->shape, m->ndim));
    return gx[0] ? 0 : wf_error();
}

/* y = amax(x): the gradient is shared evenly by the elements equal to the max */
static int amax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *y = wf__saved(n, 1);
    if (!x || !y) return wf_error();
    wf_tensor *mask = wf_to_dtype(wf_eq(x, y), x->dtype);
    int dims[WF_MAX_DIMS], nd = 0;
    for (int i = 0; i < x->ndim; i++) if (y->shape[i] != x->shape[i] || x->shape[i] == 1) dims[nd++] = i;
    wf_tensor *count = wf_sum(mask, dims, nd, true);
    gx[0] = wf_mul(mask, wf_div(gy[0], count));
    return gx[0] ? 0 : wf_error();
}

/* y = norm_p(x) (keepdim-shaped), PyTorch's gradients: x |x|^(p-2) / y^(p-1), written as
 * sign(x) |x|^(p-1) so p < 2 is finite at x = 0, and 0 wherever the norm is 0 (not 0/0);
 * p = 1: sign(x); p = inf: sign(x) shared evenly by the elements where |x| is the max.
 * Half precision computes in f32 (y^(p-1) overflows f16 for moderate norms). */
static int norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *y = wf__saved(n, 1);
    if (!x || !y) return wf_error();
    double p = n->f[0];
    wf_dtype dt = x->dtype, ct = dt == WF_F64 ? WF_F64 : WF_F32;
    wf_tensor *xc = wf_to_dtype(x, ct), *yc = wf_to_dtype(y, ct), *g = wf_to_dtype(gy[0], ct), *r;
    if (isinf(p)) {
        wf_tensor *mask = wf_to_dtype(wf_eq(wf_abs(xc), yc), ct);
        int dims[WF_MAX_DIMS], nd = 0;
        for (int i = 0; i < x->ndim; i++) if (y->shape[i] != x->shape[i] || x->shape[i] == 1) dims[nd++] = i;
        r = wf_mul(wf_mul(mask, wf_sign(xc)), wf_div(g, wf_sum(mask, dims, nd, true)));
    } else if (p == 1) {
        r = wf_mul(wf_sign(xc), g);
    } else {
        wf_tensor *zero = wf_eq_scalar(yc, 0);
        wf_tensor *den = wf_where(zero, wf_ones_like(yc), p == 2 ? yc : wf_pow_scalar(yc, p - 1));
        wf_tensor *scale = wf_where(zero, wf_zeros_like(yc), wf_div(g, den));
        wf_tensor *t = p == 2 ? xc : wf_mul(wf_sign(xc), wf_pow_scalar(wf_abs(xc), p - 1));
        r = wf_mul(t, scale);
    }
    gx[0] = r && r->dtype != dt ? wf_to_dtype(r, dt) : r;
    return gx[0] ? 0 : wf_error();
}

/* ---------------------------------------------------------------- forward */

/* keepdim-shaped y -> final shape and dtype */
static wf_tensor *finish(wf_tensor *yk, wf_tensor *x, uint32_t mask, bool keepdim, wf_dtype out) {
    wf_tensor *y = yk;
    if (y && y->dtype != out) y = wf_to_dtype(y, out);
    if (y && !keepdim) {
        int nd;
        int64_t shape[WF_MAX_DIMS];
        wf__reduce_kept_shape(x, mask, false, &nd, shape);
        y = wf_view(y, shape, nd);
    }
    return y;
}

wf_tensor *wf_sum(wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_sum", 1, x), NULL;
    uint32_t mask;
    if (wf__reduce_dims_mask("wf_sum", x, dims, ndims, &mask)) return NULL;
    bool fp = wf_dtype_is_floating(x->dtype);
    wf_dtype out = fp ? x->dtype : WF_I64;
    wf_scope_begin();
    wf_tensor *yk = wf__sum_raw("wf_sum", x, mask);
    if (yk && fp) {
        wf_node *n = wf__record("SumBackward", sum_backward, yk, 1, &x);
        if (n) n->i[0] = mask;
        yk = wf__recorded(yk, n, true, 1, &x);
    }
    wf_tensor *y = finish(yk, x, mask, keepdim, out);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

static wf_tensor *wf_sum_all__body(wf_tensor *x) { return wf_sum(x, NULL, 0, false); }

wf_tensor *wf_sum_all(wf_tensor *x) { WF__NAMED("wf_sum_all", wf_tensor *, !r, wf_sum_all__body(x)); }

wf_tensor *wf_mean(wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_mean", 1, x), NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "wf_mean: needs a floating dtype, got %s (cast it first)", wf_dtype_name(x->dtype));
        return NULL;
    }
    uint32_t mask;
    if (wf__reduce_dims_mask("wf_mean", x, dims, ndims, &mask)) return NULL;
    int64_t c = wf__reduce_count(x, mask);
    wf_scope_begin();
    /* half precision: the sum in f32, as PyTorch's (a mean of 70K f16 values must not overflow) */
    bool half = x->dtype == WF_F16 || x->dtype == WF_BF16;
    wf_tensor *y = wf_div_scalar(wf_sum(half ? wf_to_dtype(x, WF_F32) : x, dims, ndims, keepdim), (double)c);
    if (y && half) y = wf_to_dtype(y, x->dtype);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}
static wf_tensor *wf_mean_all__body(wf_tensor *x) { return wf_mean(x, NULL, 0, false); }

wf_tensor *wf_mean_all(wf_tensor *x) { WF__NAMED("wf_mean_all", wf_tensor *, !r, wf_mean_all__body(x)); }

wf_tensor *wf_var(wf_tensor *x, const int *dims, int ndims, int correction, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_var", 1, x), NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "wf_var: needs a floating dtype, got %s", wf_dtype_name(x->dtype));
        return NULL;
    }
    if (correction < 0) { wf__error(WF_EINVAL, "wf_var: correction must be >= 0, got %d", correction); return NULL; }
    uint32_t mask;
    if (wf__reduce_dims_mask("wf_var", x, dims, ndims, &mask)) return NULL;
    int64_t c = wf__reduce_count(x, mask);
    double denom = (double)(c - correction);
    wf_scope_begin();
    wf_tensor *m = wf_mean(x, dims, ndims, true);
    wf_tensor *d = wf_sub(x, m);
    wf_tensor *y = wf_div_scalar(wf_sum(wf_mul(d, d), dims, ndims, keepdim), denom > 0 ? denom : 0.0);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

static wf_tensor *wf_std__body(wf_tensor *x, const int *dims, int ndims, int correction, bool keepdim) {
    if (!x) return wf__any_null("wf_std", 1, x), NULL;
    wf_scope_begin();
    wf_tensor *y = wf_sqrt(wf_var(x, dims, ndims, correction, keepdim));
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_std(wf_tensor *x, const int *dims, int ndims, int correction, bool keepdim) {
    WF__NAMED("wf_std", wf_tensor *, !r, wf_std__body(x, dims, ndims, correction, keepdim));
}

static wf_tensor *amax_amin(const char *op, bool is_max, wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    if (!x) return wf__any_null(op, 1, x), NULL;
    uint32_t mask;
    if (wf__reduce_dims_mask(op, x, dims, ndims, &mask)) return NULL;
    wf_scope_begin();
    wf_tensor *yk = wf__amax_raw(op, is_max, x, mask);
    if (yk && wf_dtype_is_floating(x->dtype)) {
        wf_node *n = wf__record(is_max ? "AmaxBackward" : "AminBackward", amax_backward, yk, 1, &x);
        yk = wf__recorded(yk, n, n && wf__save(n, x) >= 0 && wf__save(n, yk) >= 0, 1, &x);
    }
    wf_tensor *y = finish(yk, x, mask, keepdim, x->dtype);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_amax(wf_tensor *x, const int *dims, int ndims, bool keepdim) { return amax_amin("wf_amax", true, x, dims, ndims, keepdim); }
wf_tensor *wf_amin(wf_tensor *x, const int *dims, int ndims, bool keepdim) { return amax_amin("wf_amin", false, x, dims, ndims, keepdim); }

static wf_tensor *arg(const char *op, bool is_max, wf_tensor *x, int dim, bool keepdim) {
    if (!x) return wf__any_null(op, 1, x), NULL;
    if (!wf__kernels(x->device)) return NULL;
    wf_scope_begin();
    wf_tensor *src = x;
    int d;
    if (dim == WF_DIM_NONE) {
        src = wf_reshape(x, (const int64_t[]){ -1 }, 1);
        d = 0;
        keepdim = keepdim && false;
    } else {
        d = wf__dim(op, dim, x->ndim);
        if (x->ndim == 0 && d >= 0) src = wf_reshape(x, (const int64_t[]){ 1 }, 1), d = 0;
    }
    wf_tensor *y = NULL;
    if (src && d >= 0) {
        y = wf__arg_reduce_raw(op, is_max, src, d);
        if (y && (!keepdim || dim == WF_DIM_NONE || x->ndim == 0)) {
            int nd = 0;
            int64_t s2[WF_MAX_DIMS];
            if (dim != WF_DIM_NONE && x->ndim > 0)
                for (int i = 0; i < src->ndim; i++) if (i != d) s2[nd++] = src->shape[i];
            y = wf_view(y, s2, nd);
        }
    }
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_argmax(wf_tensor *x, int dim, bool keepdim) { return arg("wf_argmax", true, x, dim, keepdim); }
wf_tensor *wf_argmin(wf_tensor *x, int dim, bool keepdim) { return arg("wf_argmin", false, x, dim, keepdim); }

wf_tensor *wf_logsumexp(wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_logsumexp", 1, x), NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "wf_logsumexp: needs a floating dtype, got %s", wf_dtype_name(x->dtype));
        return NULL;
    }
    uint32_t mask;
    if (wf__reduce_dims_mask("wf_logsumexp", x, dims, ndims, &mask)) return NULL;
    wf_scope_begin();
    /* shift by the max (held constant: the result does not depend on it) */
    wf_tensor *m = NULL;
    WF_NO_GRAD {
        wf_tensor *mx = wf_amax(x, dims, ndims, true);
        m = wf_where(wf_isfinite(mx), mx, wf_zeros_like(mx));
    }
    wf_tensor *s = wf_log(wf_sum(wf_exp(wf_sub(x, m)), dims, ndims, true));
    wf_tensor *y = wf_add(s, m);
    if (y && !keepdim) {
        int nd;
        int64_t shape[WF_MAX_DIMS];
        wf__reduce_kept_shape(x, mask, false, &nd, shape);
        y = wf_view(y, shape, nd);
    }
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_norm(wf_tensor *x, double p, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_norm", 1, x), NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "wf_norm: needs a floating dtype, got %s", wf_dtype_name(x->dtype));
        return NULL;
    }
    if (!(p > 0)) { wf__error(WF_EINVAL, "wf_norm: p must be > 0 (or INFINITY), got %g", p); return NULL; }
    uint32_t mask;
    if (wf__reduce_dims_mask("wf_norm", x, dims, ndims, &mask)) return NULL;
    if (isinf(p) && wf__reduce_count(x, mask) == 0) {
        wf__error(WF_EINVAL, "wf_norm: the infinity norm of an empty dimension is undefined (no identity for max)");
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *yk = wf__norm_raw(x, p, mask);
    if (yk) {
        wf_node *n = wf__record("NormBackward", norm_backward, yk, 1, &x);
        if (n) n->f[0] = p;
        yk = wf__recorded(yk, n, n && wf__save(n, x) >= 0 && wf__save(n, yk) >= 0, 1, &x);
    }
    wf_tensor *y = finish(yk, x, mask, keepdim, x->dtype);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}
