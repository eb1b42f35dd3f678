/* tensor/ops_reduce.c: the raw reductions (tensor/ops_raw.h): sum, amax/amin and norm (one
 * kernel per p) into keepdim-shaped results, argmax/argmin, and the dims helpers. The public
 * functions (wf_sum, wf_mean, wf_var, wf_norm, wf_argmax, ...) and the backward of sum,
 * amax/amin and norm: autograd/fn_reduce.c. */
#include "ops_raw.h"

#include <math.h>

/* Normalize a dims set into a mask (all dims when n == 0). */
int wf__reduce_dims_mask(const char *op, const wf_tensor *x, const int *dims, int n, uint32_t *mask) {
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

void wf__reduce_kept_shape(const wf_tensor *x, uint32_t mask, bool keepdim, int *nd, int64_t *shape) {
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
    wf__reduce_kept_shape(x, mask, true, &nd, shape);
    if (wf__need_kernel(k, op, WF_OPF_REDUCE, r, x->dtype, x->device)) return NULL;
    wf_tensor *y = wf__empty(shape, nd, acc, x->device);
    if (!y) return NULL;
    if (k->reduce(r, y, x, mask, p)) { wf_tensor_free(y); return NULL; }
    return y;
}

static wf_dtype acc_dtype(wf_dtype dt) { return dt == WF_F64 ? WF_F64 : WF_F32; }

int64_t wf__reduce_count(const wf_tensor *x, uint32_t mask) {
    int64_t c = 1;
    for (int i = 0; i < x->ndim; i++) if (mask & (1u << i)) c *= x->shape[i];
    return c;
}

/* yk in dtype out through the copy kernel (the accumulator's dtype is not the result's) */
static wf_tensor *cast_raw(wf_tensor *yk, wf_dtype out) {
    if (yk->dtype == out) return yk;
    wf_tensor *c = wf__empty(yk->shape, yk->ndim, out, yk->device);
    if (c && wf__kernels(c->device)->copy(c, yk)) c = NULL;
    return c;
}

wf_tensor *wf__sum_raw(const char *op, wf_tensor *x, uint32_t mask) {
    bool fp = wf_dtype_is_floating(x->dtype);
    wf_tensor *yk = reduce_raw(op, WF_R_SUM, x, mask, 0, fp ? acc_dtype(x->dtype) : WF_F64);
    return yk ? cast_raw(yk, fp ? x->dtype : WF_I64) : NULL;
}

wf_tensor *wf__amax_raw(const char *op, bool is_max, wf_tensor *x, uint32_t mask) {
    if (wf__reduce_count(x, mask) == 0) {
        wf__error(WF_EINVAL, "%s: cannot reduce over an empty dimension (no identity for max/min)", op);
        return NULL;
    }
    wf_tensor *yk = reduce_raw(op, is_max ? WF_R_MAX : WF_R_MIN, x, mask, 0,
                               wf_dtype_is_floating(x->dtype) ? acc_dtype(x->dtype) : WF_F64);
    return yk ? cast_raw(yk, x->dtype) : NULL;
}

/* one reduction kernel per p, accumulated and rooted in f32/f64 (so a half-precision input's
 * sum of squares does not overflow before the root, as in PyTorch), then cast */
wf_tensor *wf__norm_raw(wf_tensor *x, double p, uint32_t mask) {
    wf_reduce_op r = isinf(p) ? WF_R_ABSMAX : p == 2 ? WF_R_SUMSQ : p == 1 ? WF_R_ABSSUM : WF_R_PNORM;
    wf_tensor *yk = reduce_raw("wf_norm", r, x, mask, p, acc_dtype(x->dtype));
    if (yk && p == 2) yk = wf__unary_raw("wf_norm", WF_U_SQRT, yk, 0, 0);
    else if (yk && !isinf(p) && p != 1) yk = wf__unary_raw("wf_norm", WF_U_POW, yk, 1.0 / p, 0);
    return yk ? wf__to_dtype_raw(yk, x->dtype) : NULL;
}

wf_tensor *wf__arg_reduce_raw(const char *op, bool is_max, wf_tensor *src, int d) {
    const wf_kernels *k = wf__kernels(src->device);
    if (!k) return NULL;
    if (src->shape[d] == 0) {
        wf__error(WF_EINVAL, "%s: cannot take the arg%s of an empty dimension", op, is_max ? "max" : "min");
        return NULL;
    }
    int64_t shape[WF_MAX_DIMS];
    for (int i = 0; i < src->ndim; i++) shape[i] = i == d ? 1 : src->shape[i];
    wf_tensor *y = NULL;
    if (!wf__need_kernel(k, op, WF_OPF_KERNEL, WF_K_ARG_REDUCE, src->dtype, src->device))
        y = wf__empty(shape, src->ndim, WF_I64, src->device);
    if (y && k->arg_reduce(is_max, y, src, d)) y = NULL;
    return y;
}
