/* nn/functional.c: functional forms (dropout, norms, scaled dot product attention) composed
 * from tensor ops; autograd comes from the ops. */
#include "nn_impl.h"
#include "../tensor/ops_raw.h"   /* dropout's mask on its input's device */

#include <float.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

/* ================================================================ helpers */

wf_tensor *wf__scalar_like(const wf_tensor *t, double v) {
    wf_tensor *s = wf_scalar(v, wf_tensor_dtype(t));
    if (s && !wf_device_eq(wf_tensor_device(s), wf_tensor_device(t))) s = wf_to_device(s, wf_tensor_device(t));
    return s;
}

wf_tensor *wf__alias(wf_tensor *x) {
    if (!x) return NULL;
    return wf_to_dtype(x, wf_tensor_dtype(x));   /* same dtype: a new handle with an identity node */
}

double wf__dtype_eps(wf_dtype dt) {
    switch (dt) {
    case WF_F64: return DBL_EPSILON;
    case WF_F16: return 0.0009765625;
    case WF_BF16: return 0.0078125;
    default: return FLT_EPSILON;
    }
}

/* Run body-computed y out of a private scope: keep y, drop the rest. */
#define FN_SCOPE_RETURN(y) do { if (y) wf_keep(y); wf_scope_end(); return (y); } while (0)

/* ================================================================ dropout */

wf_tensor *wf_dropout(wf_tensor *x, double p, bool training) {
    if (!x) return wf__any_null("wf_dropout", 1, x), NULL;
    if (!(p >= 0 && p <= 1)) {
        wf__error(WF_EINVAL, "wf_dropout: dropout probability has to be between 0 and 1, but got %g", p);
        return NULL;
    }
    if (!wf_dtype_is_floating(wf_tensor_dtype(x))) {
        wf__error(WF_EDTYPE, "wf_dropout: needs a floating input, got %s", wf_dtype_name(wf_tensor_dtype(x)));
        return NULL;
    }
    if (!training || p == 0) return wf__alias(x);
    wf_scope_begin();
    wf_tensor *y;
    if (p == 1) y = wf_mul_scalar(x, 0.0);
    else {
        /* the mask made where x lives (made on the CPU and copied, it cost 30x a GPT step on CUDA) */
        wf_tensor *mask = wf__bernoulli_p_raw(wf_shape(x), wf_ndim(x), 1.0 - p, wf_tensor_dtype(x), wf_tensor_device(x));
        if (mask && wf_mul_scalar_(mask, 1.0 / (1.0 - p))) mask = NULL;
        y = wf_mul(x, mask);
    }
    FN_SCOPE_RETURN(y);
}

/* ================================================================ norms */

static int check_normalized(const char *op, wf_tensor *x, const int64_t *shape, int nd, wf_tensor *w, wf_tensor *b) {
    char b1[96], b2[96];
    if (!shape || nd < 1 || nd > WF_MAX_DIMS)
        return wf__error(WF_EINVAL, "%s: normalized_shape needs 1 to %d dims, got %d", op, WF_MAX_DIMS, nd);
    bool ok = wf_ndim(x) >= nd;
    for (int i = 0; ok && i < nd; i++) ok = wf_shape(x)[wf_ndim(x) - nd + i] == shape[i];
    if (!ok)
        return wf__error(WF_ESHAPE, "%s: input shape %s does not end with normalized_shape %s", op,
                         wf_shape_str(x, b1, sizeof b1), wf__shape_text(nd, shape, b2, sizeof b2));
    wf_tensor *ps[2] = { w, b };
    for (int k = 0; k < 2; k++) {
        wf_tensor *p = ps[k];
        if (!p) continue;
        bool same = wf_ndim(p) == nd;
        for (int i = 0; same && i < nd; i++) same = wf_shape(p)[i] == shape[i];
        if (!same)
            return wf__error(WF_ESHAPE, "%s: %s of shape %s does not match normalized_shape %s", op,
                             k ? "bias" : "weight", wf_shape_str(p, b1, sizeof b1), wf__shape_text(nd, shape, b2, sizeof b2));
    }
    if (!wf_dtype_is_floating(wf_tensor_dtype(x)))
        return wf__error(WF_EDTYPE, "%s: needs a floating input, got %s", op, wf_dtype_name(wf_tensor_dtype(x)));
    return 0;
}

/* out_dtype of the *_out_dtype forms: WF_DTYPE_DEFAULT (as the plain form), f32 / half, or x's
 * own dtype (an f64 x may keep f64); nothing else (an integer y, or f64 from f32, which no
 * kernel writes: ask wf_to_dtype for that) */
static int check_out_dtype(const char *op, wf_tensor *x, wf_dtype out) {
    if (out == WF_DTYPE_DEFAULT || out == WF_F32 || out == WF_BF16 || out == WF_F16 || out == wf_tensor_dtype(x)) return 0;
    char u[32];
    snprintf(u, sizeof u, "dtype %d", (int)out);
    return wf__error(WF_EDTYPE, "%s: out_dtype must be float32, bfloat16 or float16 (or the input's %s), got %s", op,
                     wf_dtype_name(wf_tensor_dtype(x)), (int)out > 0 && out < WF_DTYPE_COUNT ? wf_dtype_name(out) : u);
}

/* x already autocast; out: y's dtype, WF_DTYPE_DEFAULT for x's */
static wf_tensor *layer_norm_out(const char *op, wf_tensor *x, const int64_t *normalized_shape, int ndim, wf_tensor *weight,
                                 wf_tensor *bias, double eps, wf_dtype out) {
    if (!x) return wf__any_null(op, 1, x), NULL;
    if (check_normalized(op, x, normalized_shape, ndim, weight, bias)) return NULL;
    wf_dtype ydt = out ? out : wf_tensor_dtype(x);
    bool handled;   /* fused kernel (CUDA f32/bf16/f16; the CPU for a y of another dtype) */
    wf_tensor *fused = wf__layer_norm_fused(x, ndim, weight, bias, eps, ydt, &handled);
    if (handled) return fused;
    int dims[WF_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = wf_ndim(x) - ndim + i;
    wf_scope_begin();
    wf_dtype xdt = wf_tensor_dtype(x);
    if (ydt == WF_F32 && (xdt == WF_BF16 || xdt == WF_F16)) {   /* an f32 y of a half x: in f32, as the kernels */
        x = wf_to_dtype(x, WF_F32);
        if (weight) weight = wf_to_dtype(weight, WF_F32);
        if (bias) bias = wf_to_dtype(bias, WF_F32);
    }
    wf_tensor *mean = wf_mean(x, dims, ndim, true);
    wf_tensor *xc = wf_sub(x, mean);
    wf_tensor *var = wf_mean(wf_mul(xc, xc), dims, ndim, true);
    wf_tensor *y = wf_mul(xc, wf_rsqrt(wf_add_scalar(var, eps)));
    if (weight) y = wf_mul(y, weight);
    if (bias) y = wf_add(y, bias);
    if (y && wf_tensor_dtype(y) != ydt) y = wf_to_dtype(y, ydt);   /* no kernel here (minimal, meta): a cast */
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_layer_norm(wf_tensor *x, const int64_t *normalized_shape, int ndim,
                         wf_tensor *weight, wf_tensor *bias, double eps) {
    x = wf__autocast_arg(x, WF__AC_F32), weight = wf__autocast_arg(weight, WF__AC_F32), bias = wf__autocast_arg(bias, WF__AC_F32);
    return layer_norm_out("wf_layer_norm", x, normalized_shape, ndim, weight, bias, eps, WF_DTYPE_DEFAULT);
}

wf_tensor *wf_layer_norm_out_dtype(wf_tensor *x, const int64_t *normalized_shape, int ndim, wf_tensor *weight,
                                   wf_tensor *bias, double eps, wf_dtype out_dtype) {
    const char *op = "wf_layer_norm_out_dtype";
    if (x && check_out_dtype(op, x, out_dtype)) return NULL;
    x = wf__autocast_arg(x, WF__AC_F32), weight = wf__autocast_arg(weight, WF__AC_F32), bias = wf__autocast_arg(bias, WF__AC_F32);
    return layer_norm_out(op, x, normalized_shape, ndim, weight, bias, eps, out_dtype);
}

/* r_bias (NULL: none) is the branch's bias, r + r_bias the branch (wf_add_bias_layer_norm) */
static wf_tensor *add_layer_norm_out(const char *op, wf_tensor *x, wf_tensor *r, wf_tensor *r_bias,
                                     const int64_t *normalized_shape, int ndim, wf_tensor *weight, wf_tensor *bias,
                                     double eps, wf_tensor **sum, wf_dtype out) {
    if (sum) *sum = NULL;
    if (!x || !r) return wf__any_null(op, 2, x, r), NULL;
    char b1[96], b2[96];
    if (!wf_same_shape(x, r)) {
        wf__error(WF_ESHAPE, "%s: x of shape %s and r of shape %s differ (the fused add does not broadcast)", op,
                  wf_shape_str(x, b1, sizeof b1), wf_shape_str(r, b2, sizeof b2));
        return NULL;
    }
    if (!wf_dtype_is_floating(wf_tensor_dtype(r))) {
        wf__error(WF_EDTYPE, "%s: needs a floating r, got %s", op, wf_dtype_name(wf_tensor_dtype(r)));
        return NULL;
    }
    if (check_out_dtype(op, x, out)) return NULL;
    if (r_bias && ndim != 1) {
        wf__error(WF_ESHAPE, "%s: r_bias needs one normalized dim (ndim 1), got ndim %d", op, ndim);
        return NULL;
    }
    if (r_bias && (wf_ndim(r_bias) != 1 || wf_ndim(x) < 1 || wf_shape(r_bias)[0] != wf_shape(x)[wf_ndim(x) - 1])) {
        wf__error(WF_ESHAPE, "%s: r_bias of shape %s is not [%lld], the normalized size of x of shape %s", op,
                  wf_shape_str(r_bias, b1, sizeof b1), wf_ndim(x) ? (long long)wf_shape(x)[wf_ndim(x) - 1] : 0LL,
                  wf_shape_str(x, b2, sizeof b2));
        return NULL;
    }
    if (r_bias && wf_tensor_dtype(r_bias) != wf_tensor_dtype(r) && wf_tensor_dtype(r_bias) != wf_tensor_dtype(x)) {
        wf__error(WF_EDTYPE, "%s: r_bias of %s must have r's dtype (%s) or x's (%s)", op,
                  wf_dtype_name(wf_tensor_dtype(r_bias)), wf_dtype_name(wf_tensor_dtype(r)),
                  wf_dtype_name(wf_tensor_dtype(x)));
        return NULL;
    }
    weight = wf__autocast_arg(weight, WF__AC_F32), bias = wf__autocast_arg(bias, WF__AC_F32);
    if (check_normalized(op, x, normalized_shape, ndim, weight, bias)) return NULL;
    wf_tensor *y = NULL, *s = NULL;
    bool handled = false;
    /* autocast would run the norm of a half sum in f32: the composed path does exactly that */
    bool fuse = wf__autocast_arg(x, WF__AC_F32) == x;
    wf_dtype ydt = out ? out : wf_tensor_dtype(x);
    if (fuse && r_bias) {
        y = wf__add_layer_norm_fused(x, r, r_bias, ndim, weight, bias, eps, ydt, sum ? &s : NULL, &handled);
        if (handled) {
            if (sum) *sum = s;
            return y;
        }
    }
    wf_scope_begin();
    /* the bias the kernel declined (or no kernel): the branch as r + r_bias would be */
    if (r_bias && !(r = wf_add(r, r_bias))) FN_SCOPE_RETURN(y);
    if (fuse) {
        y = wf__add_layer_norm_fused(x, r, NULL, ndim, weight, bias, eps, ydt, sum ? &s : NULL, &handled);
        if (handled) {
            if (y && sum) *sum = wf_keep(s);
            FN_SCOPE_RETURN(y);
        }
    }
    s = wf_add(x, r);
    y = s ? layer_norm_out(op, wf__autocast_arg(s, WF__AC_F32), normalized_shape, ndim, weight, bias, eps, out) : NULL;
    if (y && sum) *sum = wf_keep(s);
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_add_layer_norm(wf_tensor *x, wf_tensor *r, const int64_t *normalized_shape, int ndim, wf_tensor *weight,
                             wf_tensor *bias, double eps, wf_tensor **sum) {
    return add_layer_norm_out("wf_add_layer_norm", x, r, NULL, normalized_shape, ndim, weight, bias, eps, sum,
                              WF_DTYPE_DEFAULT);
}

wf_tensor *wf_add_layer_norm_out_dtype(wf_tensor *x, wf_tensor *r, const int64_t *normalized_shape, int ndim,
                                       wf_tensor *weight, wf_tensor *bias, double eps, wf_tensor **sum, wf_dtype out_dtype) {
    return add_layer_norm_out("wf_add_layer_norm_out_dtype", x, r, NULL, normalized_shape, ndim, weight, bias, eps, sum,
                              out_dtype);
}

wf_tensor *wf_add_bias_layer_norm(wf_tensor *x, wf_tensor *r, wf_tensor *r_bias, const int64_t *normalized_shape, int ndim,
                                  wf_tensor *weight, wf_tensor *bias, double eps, wf_tensor **sum, wf_dtype out_dtype) {
    return add_layer_norm_out("wf_add_bias_layer_norm", x, r, r_bias, normalized_shape, ndim, weight, bias, eps, sum,
                              out_dtype);
}

wf_tensor *wf_rms_norm(wf_tensor *x, const int64_t *normalized_shape, int ndim, wf_tensor *weight, double eps) {
    x = wf__autocast_arg(x, WF__AC_F32), weight = wf__autocast_arg(weight, WF__AC_F32);
    if (!x) return NULL;
    if (check_normalized("wf_rms_norm", x, normalized_shape, ndim, weight, NULL)) return NULL;
    if (eps <= 0) eps = wf__dtype_eps(wf_tensor_dtype(x));
    int dims[WF_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = wf_ndim(x) - ndim + i;
    wf_scope_begin();
    wf_tensor *ms = wf_mean(wf_mul(x, x), dims, ndim, true);
    wf_tensor *y = wf_mul(x, wf_rsqrt(wf_add_scalar(ms, eps)));
    if (weight) y = wf_mul(y, weight);
    FN_SCOPE_RETURN(y);
}

/* [1, C, 1, ...] view of a per-channel vector for an input of ndim dims */
static wf_tensor *channel_view(wf_tensor *v, int ndim) {
    int64_t shape[WF_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = 1;
    shape[1] = wf_numel(v);
    return wf_reshape(v, shape, ndim);
}

static int check_channel_vec(const char *op, const char *what, wf_tensor *p, int64_t C) {
    if (!p) return 0;
    if (wf_ndim(p) != 1 || wf_shape(p)[0] != C) {
        char b[96];
        return wf__error(WF_ESHAPE, "%s: %s should have shape [%lld], got %s", op, what, (long long)C,
                         wf_shape_str(p, b, sizeof b));
    }
    return 0;
}

wf_tensor *wf_group_norm(wf_tensor *x, int64_t num_groups, wf_tensor *weight, wf_tensor *bias, double eps) {
    const char *op = "wf_group_norm";
    x = wf__autocast_arg(x, WF__AC_F32), weight = wf__autocast_arg(weight, WF__AC_F32), bias = wf__autocast_arg(bias, WF__AC_F32);
    if (!x) return wf__any_null(op, 1, x), NULL;
    char b[96];
    if (wf_ndim(x) < 2) {
        wf__error(WF_ESHAPE, "%s: expected an input of at least 2 dims [N, C, *], got %s", op, wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    int64_t N = wf_shape(x)[0], C = wf_shape(x)[1];
    if (num_groups <= 0 || C % num_groups) {
        wf__error(WF_ESHAPE, "%s: expected the number of channels (%lld) to be divisible by num_groups (%lld)", op,
                  (long long)C, (long long)num_groups);
        return NULL;
    }
    if (check_channel_vec(op, "weight", weight, C) || check_channel_vec(op, "bias", bias, C)) return NULL;
    if (!wf_dtype_is_floating(wf_tensor_dtype(x))) {
        wf__error(WF_EDTYPE, "%s: needs a floating input, got %s", op, wf_dtype_name(wf_tensor_dtype(x)));
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *xr = wf_reshape(x, WF_SHAPE(N, num_groups, -1));
    wf_tensor *mean = wf_mean(xr, WF_DIMS(2), true);
    wf_tensor *xc = wf_sub(xr, mean);
    wf_tensor *var = wf_mean(wf_mul(xc, xc), WF_DIMS(2), true);
    wf_tensor *y = wf_mul(xc, wf_rsqrt(wf_add_scalar(var, eps)));
    y = wf_reshape(y, wf_shape(x), wf_ndim(x));
    if (weight) y = wf_mul(y, channel_view(weight, wf_ndim(x)));
    if (bias) y = wf_add(y, channel_view(bias, wf_ndim(x)));
    FN_SCOPE_RETURN(y);
}

wf_tensor *wf_batch_norm(wf_tensor *x, wf_tensor *running_mean, wf_tensor *running_var,
                         wf_tensor *weight, wf_tensor *bias, bool training, double momentum, double eps) {
    const char *op = "wf_batch_norm";
    x = wf__autocast_arg(x, WF__AC_F32), weight = wf__autocast_arg(weight, WF__AC_F32), bias = wf__autocast_arg(bias, WF__AC_F32);
    if (!x) return wf__any_null(op, 1, x), NULL;
    char b[96];
    if (wf_ndim(x) < 2) {
        wf__error(WF_ESHAPE, "%s: expected an input of at least 2 dims [N, C, *], got %s", op, wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (!wf_dtype_is_floating(wf_tensor_dtype(x))) {
        wf__error(WF_EDTYPE, "%s: needs a floating input, got %s", op, wf_dtype_name(wf_tensor_dtype(x)));
        return NULL;
    }
    int64_t C = wf_shape(x)[1];
    if (check_channel_vec(op, "weight", weight, C) || check_channel_vec(op, "bias", bias, C) ||
        check_channel_vec(op, "running_mean", running_mean, C) || check_channel_vec(op, "running_var", running_var, C))
        return NULL;
    if (!!running_mean != !!running_var) {
        wf__error(WF_EINVAL, "%s: running_mean and running_var must both be given or both be NULL", op);
        return NULL;
    }
    if (!running_mean) training = true;   /* no running statistics: batch statistics */
    int dims[WF_MAX_DIMS], nd = 0;
    for (int i = 0; i < wf_ndim(x); i++) if (i != 1) dims[nd++] = i;
    int64_t count = C ? wf_numel(x) / C : 0;
    if (training && count <= 1) {
        wf__error(WF_ESHAPE, "%s: expected more than 1 value per channel when training, got input size %s", op,
                  wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (training && !(momentum >= 0 && momentum <= 1) && running_mean) {
        wf__error(WF_EINVAL, "%s: momentum %g is not in [0, 1]", op, momentum);
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *y;
    if (training) {
        wf_tensor *mean = wf_mean(x, dims, nd, true);
        wf_tensor *xc = wf_sub(x, mean);
        wf_tensor *var = wf_mean(wf_mul(xc, xc), dims, nd, true);
        y = wf_mul(xc, wf_rsqrt(wf_add_scalar(var, eps)));
        if (y && running_mean) {
            bool prev = wf_set_grad_enabled(false);
            wf_tensor *m1 = wf_reshape(wf_detach(mean), WF_SHAPE(C));
            wf_tensor *v1 = wf_mul_scalar(wf_reshape(wf_detach(var), WF_SHAPE(C)), (double)count / (double)(count - 1));
            int rc = !m1 || !v1 ? wf_error() : 0;
            if (!rc) rc = wf_mul_scalar_(running_mean, 1.0 - momentum);
            if (!rc) rc = wf_add_scaled_(running_mean, m1, momentum);
            if (!rc) rc = wf_mul_scalar_(running_var, 1.0 - momentum);
            if (!rc) rc = wf_add_scaled_(running_var, v1, momentum);
            wf_set_grad_enabled(prev);
            if (rc) y = NULL;
        }
    } else {
        wf_tensor *rm = channel_view(running_mean, wf_ndim(x)), *rv = channel_view(running_var, wf_ndim(x));
        y = wf_mul(wf_sub(x, rm), wf_rsqrt(wf_add_scalar(rv, eps)));
    }
    if (weight) y = wf_mul(y, channel_view(weight, wf_ndim(x)));
    if (bias) y = wf_add(y, channel_view(bias, wf_ndim(x)));
    FN_SCOPE_RETURN(y);
}

/* ================================================================ attention */

wf_tensor *wf_scaled_dot_product_attention(wf_tensor *q, wf_tensor *k, wf_tensor *v,
                                           wf_tensor *attn_mask, double dropout_p, bool is_causal) {
    const char *op = "wf_scaled_dot_product_attention";
    if (wf__any_null(op, 3, q, k, v)) return NULL;
    char b1[96], b2[96], b3[96];
    if (wf_ndim(q) < 2 || wf_ndim(k) < 2 || wf_ndim(v) < 2) {
        wf__error(WF_ESHAPE, "%s: query %s, key %s and value %s need at least 2 dims [..., L, E]", op,
                  wf_shape_str(q, b1, sizeof b1), wf_shape_str(k, b2, sizeof b2), wf_shape_str(v, b3, sizeof b3));
        return NULL;
    }
    int64_t L = wf_shape(q)[wf_ndim(q) - 2], E = wf_shape(q)[wf_ndim(q) - 1];
    int64_t S = wf_shape(k)[wf_ndim(k) - 2];
    if (wf_shape(k)[wf_ndim(k) - 1] != E || wf_shape(v)[wf_ndim(v) - 2] != S) {
        wf__error(WF_ESHAPE, "%s: query %s, key %s and value %s do not fit (need q [..., L, E], k [..., S, E], v [..., S, Ev])",
                  op, wf_shape_str(q, b1, sizeof b1), wf_shape_str(k, b2, sizeof b2), wf_shape_str(v, b3, sizeof b3));
        return NULL;
    }
    if (!wf_dtype_is_floating(wf_tensor_dtype(q))) {
        wf__error(WF_EDTYPE, "%s: needs floating inputs, got %s", op, wf_dtype_name(wf_tensor_dtype(q)));
        return NULL;
    }
    if (!(dropout_p >= 0 && dropout_p <= 1)) {
        wf__error(WF_EINVAL, "%s: dropout_p %g is not in [0, 1]", op, dropout_p);
        return NULL;
    }
    double scale = E > 0 ? 1.0 / sqrt((double)E) : 1.0;
    if (!attn_mask && dropout_p == 0 && wf_tensor_device(q).type == WF_DEV_CUDA) {
        /* fused flash attention: 4-D f16/bf16 (after autocast, where attention is a low-precision
         * op as in PyTorch), head dim <= 128; anything else composes below */
        wf_tensor *qa = wf__autocast_arg(q, WF__AC_LOWER), *ka = wf__autocast_arg(k, WF__AC_LOWER),
                  *va = wf__autocast_arg(v, WF__AC_LOWER);
        if (!qa || !ka || !va) return NULL;
        bool handled;
        wf_tensor *fused = wf__sdpa_fused(qa, ka, va, scale, is_causal, &handled);
        if (handled) return fused;
    }
    wf_scope_begin();
    if (!attn_mask) {
        /* Composed as torch's math path under autocast: sdpa is one low-precision op, so the
         * scores stay in that dtype and softmax computes in f32 inside its kernel; the scale
         * and the causal mask are applied as the softmax reads the scores (no scaled copy, no
         * [.., L, S] mask or -inf tensor: issue 15). Dropout's 1 / (1 - p) is the softmax's
         * output scale too, so its mask is the bare 0/1 draw (wf_dropout's draw, the same
         * numbers for a seed) and costs no pass of its own. */
        q = wf__autocast_arg(q, WF__AC_LOWER), k = wf__autocast_arg(k, WF__AC_LOWER);
        bool fold = dropout_p > 0 && dropout_p < 1;
        wf_tensor *raw = q && k ? wf_matmul(q, wf_transpose(k, -2, -1)) : NULL;
        wf_tensor *attn = raw ? wf__softmax_attn(raw, scale, is_causal, fold ? 1.0 / (1.0 - dropout_p) : 1.0) : NULL;
        if (attn && fold) {
            wf_tensor *keep = wf__bernoulli_p_raw(wf_shape(attn), wf_ndim(attn), 1.0 - dropout_p,
                                                  wf_tensor_dtype(attn), wf_tensor_device(attn));
            attn = keep ? wf_mul(attn, keep) : NULL;
        } else if (attn && dropout_p > 0) {
            attn = wf_dropout(attn, dropout_p, true);   /* p = 1: every weight 0 */
        }
        wf_tensor *y = attn ? wf_matmul(attn, v) : NULL;
        FN_SCOPE_RETURN(y);
    }
    wf_tensor *scores = wf_mul_scalar(wf_matmul(q, wf_transpose(k, -2, -1)), scale);
    wf_tensor *ninf = scores ? wf__scalar_like(scores, -INFINITY) : NULL;
    if (is_causal && scores) {
        wf_tensor *row = wf_reshape(wf_arange(0, (double)L, 1, WF_I64), WF_SHAPE(L, 1));
        wf_tensor *col = wf_reshape(wf_arange(0, (double)S, 1, WF_I64), WF_SHAPE(1, S));
        wf_tensor *allowed = wf_le(col, row);
        if (allowed && !wf_device_eq(wf_tensor_device(allowed), wf_tensor_device(scores)))
            allowed = wf_to_device(allowed, wf_tensor_device(scores));
        scores = wf_where(allowed, scores, ninf);
    }
    if (attn_mask && scores) {
        if (wf_tensor_dtype(attn_mask) == WF_BOOL) scores = wf_where(attn_mask, scores, ninf);
        else if (wf_dtype_is_floating(wf_tensor_dtype(attn_mask))) scores = wf_add(scores, attn_mask);
        else {
            wf__error(WF_EDTYPE, "%s: attn_mask must be bool or floating, got %s", op, wf_dtype_name(wf_tensor_dtype(attn_mask)));
            scores = NULL;
        }
    }
    wf_tensor *attn = wf_softmax(scores, -1);
    if (dropout_p > 0) attn = wf_dropout(attn, dropout_p, true);
    wf_tensor *y = wf_matmul(attn, v);
    FN_SCOPE_RETURN(y);
}
