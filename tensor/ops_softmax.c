/* tensor/ops_softmax.c: softmax and log_softmax along any dimension, and their backward.
 *
 * The kernels work on the last dimension of contiguous tensors. For another dim, the input
 * is copied into a contiguous buffer with dim swapped to last, the kernel runs there, and
 * the result is copied back through the swapped view, so the output always has x's shape
 * and is contiguous. The backward uses the same path. Attention's softmax (wf__softmax_attn_raw)
 * reads its scores scaled and causally masked in the one kernel pass, so neither a scaled
 * copy nor a [.., L, S] mask and -inf tensor is ever made (issue 15). These are the raw ops
 * (tensor/ops_raw.h); wf_softmax, wf_log_softmax and their backward: autograd/fn_softmax.c. */
#include "ops_raw.h"

#include <math.h>

/* A handle on t with dims a and b swapped (no autograd); registered in the current scope. */
static wf_tensor *swapped(wf_tensor *t, int a, int b) {
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) { shape[i] = t->shape[i]; stride[i] = t->stride[i]; }
    shape[a] = t->shape[b]; stride[a] = t->stride[b];
    shape[b] = t->shape[a]; stride[b] = t->stride[a];
    return wf__view_of(t, t->ndim, shape, stride, t->offset);
}

/* t (optionally with dims dim/last swapped) as a contiguous tensor of dtype dt. Returns t
 * itself when it already is one; temporaries join the current scope. */
static wf_tensor *lastdim_contig(const wf_kernels *k, wf_tensor *t, wf_dtype dt, bool swap, int dim,
                                 int last, int *rc) {
    wf_tensor *v = swap ? swapped(t, dim, last) : t;
    if (!v) { *rc = wf_error() ? wf_error() : WF_ENOMEM; return NULL; }
    if (wf_is_contiguous(v) && v->dtype == dt) return v;
    wf_tensor *c = wf__empty(v->shape, v->ndim, dt, v->device);
    if (!c) { *rc = wf_error() ? wf_error() : WF_ENOMEM; return NULL; }
    *rc = k->copy(c, v);
    return c;
}

/* Run the softmax kernel (backward = false: out = softmax(a)) or its backward (backward =
 * true: out = gx from a = gy, b = y) along dim of tensors of any layout. out is contiguous,
 * freshly allocated, with a's shape; a and b are cast to out's dtype. */
static int softmax_along(wf_tensor *out, wf_tensor *a, wf_tensor *b, int dim, bool is_log, bool backward,
                         double scale, double out_scale, int64_t causal) {
    if (out->device.type == WF_DEV_META || wf__numel(out->ndim, out->shape) == 0) return 0;
    const wf_kernels *k = wf__kernels(out->device);
    if (!k) return wf_error();
    int nd = out->ndim, last = nd - 1;
    bool swap = nd > 1 && dim != last;
    int rc = 0;
    wf_scope_begin();
    wf_tensor *ac = lastdim_contig(k, a, out->dtype, swap, dim, last, &rc);
    wf_tensor *bc = NULL, *dst = out;
    if (!rc && b) bc = lastdim_contig(k, b, out->dtype, swap, dim, last, &rc);
    if (!rc && swap) {
        dst = wf__empty(ac->shape, ac->ndim, out->dtype, out->device);
        if (!dst) rc = wf_error() ? wf_error() : WF_ENOMEM;
    }
    if (!rc)
        rc = wf__need_kernel(k, backward ? "wf_softmax (backward)" : (is_log ? "wf_log_softmax" : "wf_softmax"),
                             WF_OPF_KERNEL, backward ? WF_K_SOFTMAX_BACKWARD : WF_K_SOFTMAX, out->dtype, out->device);
    if (!rc)
        rc = backward ? k->softmax_backward(dst, ac, bc, is_log, scale, out_scale)
                      : k->softmax(dst, ac, is_log, scale, out_scale, causal);
    if (!rc && swap) {
        wf_tensor *back = swapped(dst, dim, last);
        rc = back ? k->copy(out, back) : (wf_error() ? wf_error() : WF_ENOMEM);
    }
    wf_scope_end();
    return rc;
}

wf_tensor *wf__softmax_raw(const char *op, wf_tensor *x, int dim, bool is_log) {
    if (wf__any_null(op, 1, x)) return NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "%s: expected a floating-point tensor, got %s", op, wf_dtype_name(x->dtype));
        return NULL;
    }
    int d = wf__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    wf_tensor *y = wf__empty(x->shape, x->ndim, x->dtype, x->device);
    if (!y) return NULL;
    if (softmax_along(y, x, NULL, d, is_log, false, 1.0, 1.0, 0)) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf__softmax_attn_raw(wf_tensor *x, double scale, bool is_causal, double out_scale) {
    static const char *op = "wf_scaled_dot_product_attention (softmax)";
    if (wf__any_null(op, 1, x)) return NULL;
    if (!wf_dtype_is_floating(x->dtype)) {
        wf__error(WF_EDTYPE, "%s: expected a floating-point tensor, got %s", op, wf_dtype_name(x->dtype));
        return NULL;
    }
    if (x->ndim < 2) {
        wf__error(WF_ESHAPE, "%s: scores need at least 2 dims [..., L, S], got %d-d", op, x->ndim);
        return NULL;
    }
    if (!isfinite(scale)) {
        wf__error(WF_EINVAL, "%s: scale %g is not finite", op, scale);
        return NULL;
    }
    if (!(isfinite(out_scale) && out_scale > 0)) {
        wf__error(WF_EINVAL, "%s: out_scale %g is not a positive finite number", op, out_scale);
        return NULL;
    }
    wf_tensor *y = wf__empty(x->shape, x->ndim, x->dtype, x->device);
    if (!y) return NULL;
    int64_t L = x->shape[x->ndim - 2];
    if (softmax_along(y, x, NULL, x->ndim - 1, false, false, scale, out_scale, is_causal ? (L > 0 ? L : 1) : 0)) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf__softmax_backward_raw(wf_tensor *gy, wf_tensor *y, int dim, bool is_log) {
    return wf__softmax_backward_scaled_raw(gy, y, dim, is_log, 1.0, 1.0);
}

wf_tensor *wf__softmax_backward_scaled_raw(wf_tensor *gy, wf_tensor *y, int dim, bool is_log, double scale,
                                           double out_scale) {
    wf_tensor *g = wf__empty(y->shape, y->ndim, y->dtype, y->device);
    if (!g) return NULL;
    if (softmax_along(g, gy, y, dim, is_log, true, scale, out_scale, 0)) {
        if (!wf_error()) wf__error(WF_ENOMEM, "wf_softmax (backward): out of memory");
        return NULL;
    }
    return g;
}
