/* tensor/ops_reduce.c: reductions. sum and amax/amin have their own kernels and backward;
 * mean, var, std and logsumexp are compositions whose gradients follow from the parts; norm has
 * one kernel per p and its own backward (PyTorch's gradient at a zero norm). */
#include "tensor_impl.h"
#include "../autograd/backward.h"

#include <math.h>

/* Normalize a dims set into a mask (all dims when n == 0). */
static int dims_mask(const char *op, const wf_tensor *x, const int *dims, int n, uint32_t *mask) {
    *mask = 0;
    if (n == 0 || !dims) { *mask = x->ndim ? (1u << x->ndim) - 1 : 0; return 0; }
    for (int i = 0; i < n; i++) {
        int d = wf__dim(op, dims[i], x->ndim);
        if (d < 0) return wf_error();
        if (x->ndim == 0) continue;
        if (*mask & (1u << d)) return wf__error(WF_EINDEX, "%s: dimension %d appears twice", op, dims[i]);
        *mask |= 1u << d;
    }
    return 0;
}

static void kept_shape(const wf_tensor *x, uint32_t mask, bool keepdim, int *nd, int64_t *shape) {
    int k = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (mask & (1u << i)) { if (keepdim) shape[k++] = 1; }
        else shape[k++] = x->shape[i];
    }
    *nd = k;
}

/* Reduce into a keepdim-shaped tensor of dtype acc (f32/f64), no autograd. */
static wf_tensor *reduce_raw(const char *op, wf_reduce_op r, wf_tensor *x, uint32_t mask, double p, wf_dtype acc) {
    const wf_kernels *k = wf__kernels(x->device);
    if (!k) return NULL;
    int nd;
    int64_t shape[WF_MAX_DIMS];
    kept_shape(x, mask, true, &nd, shape);
    if (wf__need_kernel(k, op, WF_OPF_REDUCE, r, x->dtype, x->device)) return NULL;
    wf_tensor *y = wf__empty(shape, nd, acc, x->device);
    if (!y) return NULL;
    if (k->reduce(r, y, x, mask, p)) { wf_tensor_free(y); return NULL; }
    return y;
}

static wf_dtype acc_dtype(wf_dtype dt) { return dt == WF_F64 ? WF_F64 : WF_F32; }

/* keepdim-shaped y -> final shape and dtype */
static wf_tensor *finish(wf_tensor *yk, wf_tensor *x, uint32_t mask, bool keepdim, wf_dtype out) {
    wf_tensor *y = yk;
    if (y && y->dtype != out) y = wf_to_dtype(y, out);
    if (y && !keepdim) {
        int nd;
        int64_t shape[WF_MAX_DIMS];
        kept_shape(x, mask, false, &nd, shape);
        y = wf_view(y, shape, nd);
    }
    return y;
}

wf_tensor *wf_sum(wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_sum", 1, x), NULL;
    uint32_t mask;
    if (dims_mask("wf_sum", x, dims, ndims, &mask)) return NULL;
    bool fp = wf_dtype_is_floating(x->dtype);
    wf_dtype out = fp ? x->dtype : WF_I64;
    wf_scope_begin();
    wf_tensor *yk = reduce_raw("wf_sum", WF_R_SUM, x, mask, 0, fp ? acc_dtype(x->dtype) : WF_F64);
    if (yk && yk->dtype != out) {
        wf_tensor *c = wf__empty(yk->shape, yk->ndim, out, yk->device);
        if (c && wf__kernels(c->device)->copy(c, yk)) c = NULL;
        yk = c;
    }
    if (yk && fp) {
        wf_node *n = wf__record("SumBackward", wf__sum_backward, yk, 1, &x);
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

static int64_t reduced_count(const wf_tensor *x, uint32_t mask) {
    int64_t c = 1;
    for (int i = 0; i < x->ndim; i++) if (mask & (1u << i)) c *= x->shape[i];
    return c;
}

wf_tensor *wf_mean(wf_tensor *x, const int *dims, int ndims, bool keepdim) {
    x = wf__autocast_arg(x, WF__AC_F32);
    if (!x) return wf__any_null("wf_mean", 1, x), NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "wf_mean: needs a floating dtype, got %s (cast it first)", wf_dtype_name(x->dtype));
        return NULL;
    }
    uint32_t mask;
    if (dims_mask("wf_mean", x, dims, ndims, &mask)) return NULL;
    int64_t c = reduced_count(x, mask);
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
    if (dims_mask("wf_var", x, dims, ndims, &mask)) return NULL;
    int64_t c = reduced_count(x, mask);
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
    if (dims_mask(op, x, dims, ndims, &mask)) return NULL;
    if (reduced_count(x, mask) == 0) {
        wf__error(WF_EINVAL, "%s: cannot reduce over an empty dimension (no identity for max/min)", op);
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *yk = reduce_raw(op, is_max ? WF_R_MAX : WF_R_MIN, x, mask, 0,
                               wf_dtype_is_floating(x->dtype) ? acc_dtype(x->dtype) : WF_F64);
    if (yk && yk->dtype != x->dtype) {
        wf_tensor *c = wf__empty(yk->shape, yk->ndim, x->dtype, yk->device);
        if (c && wf__kernels(c->device)->copy(c, yk)) c = NULL;
        yk = c;
    }
    if (yk && wf_dtype_is_floating(x->dtype)) {
        wf_node *n = wf__record(is_max ? "AmaxBackward" : "AminBackward", wf__amax_backward, yk, 1, &x);
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
    const wf_kernels *k = wf__kernels(x->device);
    if (!k) return NULL;
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
        if (src->shape[d] == 0) {
            wf__error(WF_EINVAL, "%s: cannot take the arg%s of an empty dimension", op, is_max ? "max" : "min");
        } else {
            int64_t shape[WF_MAX_DIMS];
            for (int i = 0; i < src->ndim; i++) shape[i] = i == d ? 1 : src->shape[i];
            if (!wf__need_kernel(k, op, WF_OPF_KERNEL, WF_K_ARG_REDUCE, src->dtype, src->device))
                y = wf__empty(shape, src->ndim, WF_I64, src->device);
            if (y && k->arg_reduce(is_max, y, src, d)) y = NULL;
            if (y && (!keepdim || dim == WF_DIM_NONE || x->ndim == 0)) {
                int nd = 0;
                int64_t s2[WF_MAX_DIMS];
                if (dim != WF_DIM_NONE && x->ndim > 0)
                    for (int i = 0; i < src->ndim; i++) if (i != d) s2[nd++] = src->shape[i];
                y = wf_view(y, s2, nd);
            }
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
    if (dims_mask("wf_logsumexp", x, dims, ndims, &mask)) return NULL;
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
        kept_shape(x, mask, false, &nd, shape);
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
    if (dims_mask("wf_norm", x, dims, ndims, &mask)) return NULL;
    if (isinf(p) && reduced_count(x, mask) == 0) {
        wf__error(WF_EINVAL, "wf_norm: the infinity norm of an empty dimension is undefined (no identity for max)");
        return NULL;
    }
    /* one reduction kernel per p, accumulated and rooted in f32/f64 (so a half-precision
     * input's sum of squares does not overflow before the root, as in PyTorch), then cast */
    wf_reduce_op r = isinf(p) ? WF_R_ABSMAX : p == 2 ? WF_R_SUMSQ : p == 1 ? WF_R_ABSSUM : WF_R_PNORM;
    wf_scope_begin();
    wf_tensor *yk = reduce_raw("wf_norm", r, x, mask, p, acc_dtype(x->dtype));
    if (yk && p == 2) yk = wf_sqrt(yk);
    else if (yk && !isinf(p) && p != 1) yk = wf_pow_scalar(yk, 1.0 / p);
    if (yk && yk->dtype != x->dtype) yk = wf_to_dtype(yk, x->dtype);
    if (yk) {
        wf_node *n = wf__record("NormBackward", wf__norm_backward, yk, 1, &x);
        if (n) n->f[0] = p;
        yk = wf__recorded(yk, n, n && wf__save(n, x) >= 0 && wf__save(n, yk) >= 0, 1, &x);
    }
    wf_tensor *y = finish(yk, x, mask, keepdim, x->dtype);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}
