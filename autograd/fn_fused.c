/* autograd/fn_fused.c: the front-ends of the optional fused kernels: scaled-dot-product
 * attention (also from a packed qkv projection), layer norm, softmax cross-entropy.
 *
 * nn/functional.c, nn/attention.c and nn/loss.c call these first (declared in
 * tensor/tensor_impl.h, which nn/ reaches them through); when the device has no such kernel
 * or the arguments do not suit it (tensor/ops_fused.c's *_fusable checks), *handled is false
 * and nn/ composes the op from ordinary ops. Each fused op records one node whose backward
 * runs the matching raw backward (those backwards are not themselves differentiable). */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

#include <math.h>

/* ================================================================ attention */

/* saved q, k, v, o, lse; n->f[0] = scale, n->i[0] = causal */
static int sdpa_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *q = wf__saved(n, 0), *k = wf__saved(n, 1), *v = wf__saved(n, 2), *o = wf__saved(n, 3),
              *lse = wf__saved(n, 4);
    if (!q || !k || !v || !o || !lse) return wf_error();
    wf_tensor *dq, *dk, *dv;
    int rc = wf__sdpa_bwd_raw(gy[0], q, k, v, o, lse, n->f[0], n->i[0] != 0, &dq, &dk, &dv);
    if (rc) return rc;
    if (n->needs[0]) gx[0] = dq;
    if (n->needs[1]) gx[1] = dk;
    if (n->needs[2]) gx[2] = dv;
    return 0;
}

wf_tensor *wf__sdpa_fused(wf_tensor *q, wf_tensor *k, wf_tensor *v, double scale, bool causal, bool *handled) {
    *handled = wf__sdpa_fusable(q, k, v);
    if (!*handled) return NULL;
    wf_scope_begin();
    /* the kernel reads any strides but needs unit stride along D */
    wf_tensor *in[3] = { q, k, v }, *y = NULL, *lse = NULL;
    for (int i = 0; i < 3; i++)
        if (in[i]->stride[3] != 1) in[i] = wf_contiguous(in[i]);
    if (!in[0] || !in[1] || !in[2]) goto out;
    y = wf__sdpa_fwd_raw(in[0], in[1], in[2], scale, causal, &lse);
    if (!y) goto out;
    wf_node *n = wf__record("ScaledDotProductFlashAttentionBackward", sdpa_backward, y, 3, in);
    if (n) {
        n->f[0] = scale;
        n->i[0] = causal;
        if (wf__save(n, in[0]) < 0 || wf__save(n, in[1]) < 0 || wf__save(n, in[2]) < 0 || wf__save(n, y) < 0 ||
            wf__save(n, lse) < 0)
            y = NULL;
    } else if (wf__needs_grad(3, in)) {
        y = NULL;   /* recording ran out of memory */
    }
out:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* saved qkv, o, lse; n->f[0] = scale, n->i[0] = causal, n->i[1] = heads */
static int sdpa_qkv_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *qkv = wf__saved(n, 0), *o = wf__saved(n, 1), *lse = wf__saved(n, 2);
    if (!qkv || !o || !lse) return wf_error();
    gx[0] = wf__sdpa_qkv_bwd_raw(gy[0], qkv, n->i[1], o, lse, n->f[0], n->i[0] != 0);
    return gx[0] ? 0 : wf_error();
}

wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled) {
    *handled = wf__sdpa_qkv_fusable(qkv, H);
    if (!*handled) return NULL;
    wf_scope_begin();
    wf_tensor *lse = NULL;
    double scale = 0;
    wf_tensor *y = wf__sdpa_qkv_fwd_raw(qkv, H, causal, &scale, &lse);
    if (y) {
        wf_node *n = wf__record("ScaledDotProductFlashAttentionBackward", sdpa_qkv_backward, y, 1, &qkv);
        if (n) {
            n->f[0] = scale;
            n->i[0] = causal;
            n->i[1] = H;
            if (wf__save(n, qkv) < 0 || wf__save(n, y) < 0 || wf__save(n, lse) < 0) y = NULL;
        } else if (wf__needs_grad(1, &qkv)) {
            y = NULL;   /* recording ran out of memory */
        }
    }
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ================================================================ layer norm */

/* inputs x, weight, bias; saved x, mean, rstd (and weight when n->i[0]); gy in y's dtype
 * (out_meta: x's, or the lower one the forward wrote), x's gradient in x's */
static int layer_norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *mean = wf__saved(n, 1), *rstd = wf__saved(n, 2);
    if (!x || !mean || !rstd) return wf_error();
    wf_tensor *w = NULL;
    if (n->i[0]) {
        w = wf__saved(n, 3);
        if (!w) return wf_error();
    }
    const wf_meta *mw = &n->in_meta[1], *mb = &n->in_meta[2];
    return wf__layer_norm_bwd_raw(gy[0], n->out_meta[0].dtype, x, mean, rstd, w, mw->shape, mw->ndim, mb->shape, mb->ndim, n->needs[0],
                                  n->needs[1], n->needs[2], &gx[0], &gx[1], &gx[2]);
}

wf_tensor *wf__layer_norm_fused(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, double eps, wf_dtype ydt,
                                bool *handled) {
    *handled = wf__layer_norm_fusable(x, nd, weight, bias, ydt);
    if (!*handled) return NULL;
    wf_scope_begin();
    wf_tensor *xc = wf_is_contiguous(x) ? x : wf_contiguous(x), *y = NULL, *mean = NULL, *rstd = NULL;
    if (xc) y = wf__layer_norm_fwd_raw(xc, nd, weight, bias, eps, ydt, &mean, &rstd);
    if (y) {
        wf_node *n = wf__record("NativeLayerNormBackward", layer_norm_backward, y, 3, (wf_tensor *[]){ xc, weight, bias });
        if (n) {
            n->i[0] = weight != NULL;
            if (wf__save(n, xc) < 0 || wf__save(n, mean) < 0 || wf__save(n, rstd) < 0 ||
                (weight && wf__save(n, weight) < 0))
                y = NULL;
        } else if (wf__needs_grad(3, (wf_tensor *[]){ xc, weight, bias })) {
            y = NULL;   /* recording ran out of memory */
        }
    }
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ================================================================ add + layer norm */

#ifndef WEFT_MINIMAL
/* inputs x, r, weight, bias, r_bias; outputs y and, when the caller took it, s = x + r (+ r_bias)
 * (gy[1]: the gradient of s's other uses, added by the kernel, so the engine sums nothing);
 * saved s, mean, rstd (and weight when n->i[0]); r_bias's gradient is the column sum of s's,
 * formed in the same kernel */
static int add_layer_norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *s = wf__saved(n, 0), *mean = wf__saved(n, 1), *rstd = wf__saved(n, 2), *w = NULL;
    if (!s || !mean || !rstd || (n->i[0] && !(w = wf__saved(n, 3)))) return wf_error();
    const wf_meta *mw = &n->in_meta[2], *mb = &n->in_meta[3];
    return wf__add_layer_norm_bwd_raw(gy[0], n->out_meta[0].dtype, n->n_outputs > 1 ? gy[1] : NULL, s, mean, rstd, w,
                                      n->in_meta[1].dtype, mw->shape, mw->ndim, mb->shape, mb->ndim,
                                      n->in_meta[4].dtype, n->needs, &gx[0], &gx[1], &gx[2], &gx[3], &gx[4]);
}

wf_tensor *wf__add_layer_norm_fused(wf_tensor *x, wf_tensor *r, wf_tensor *r_bias, int nd, wf_tensor *weight,
                                    wf_tensor *bias, double eps, wf_dtype ydt, wf_tensor **sum, bool *handled) {
    *handled = wf__add_layer_norm_fusable(x, r, r_bias, nd, weight, bias, ydt);
    if (!*handled) return NULL;
    wf_scope_begin();
    wf_tensor *in[5] = { wf_is_contiguous(x) ? x : wf_contiguous(x), wf_is_contiguous(r) ? r : wf_contiguous(r), weight,
                         bias, r_bias };
    wf_tensor *y = NULL, *s = NULL, *mean = NULL, *rstd = NULL;
    if (in[0] && in[1])
        y = wf__add_layer_norm_fwd_raw(in[0], in[1], r_bias, nd, weight, bias, eps, ydt, &s, &mean, &rstd);
    if (y) {
        wf_node *n = wf__record_outputs("AddLayerNormBackward", add_layer_norm_backward, (wf_tensor *[]){ y, s },
                                        sum ? 2 : 1, 5, in);
        if (n) {
            n->i[0] = weight != NULL;
            if (wf__save(n, s) < 0 || wf__save(n, mean) < 0 || wf__save(n, rstd) < 0 || (weight && wf__save(n, weight) < 0))
                y = NULL;
        } else if (wf__needs_grad(5, in)) {
            y = NULL;   /* recording ran out of memory */
        }
    }
    if (y) {
        wf_keep(y);
        if (sum) *sum = wf_keep(s);
    }
    wf_scope_end();
    return y;
}
#else
/* the minimal preset's size budget: nn/functional.c composes wf_add + wf_layer_norm */
wf_tensor *wf__add_layer_norm_fused(wf_tensor *x, wf_tensor *r, wf_tensor *r_bias, int nd, wf_tensor *weight,
                                    wf_tensor *bias, double eps, wf_dtype ydt, wf_tensor **sum, bool *handled) {
    (void)x, (void)r, (void)r_bias, (void)nd, (void)weight, (void)bias, (void)eps, (void)ydt, (void)sum;
    *handled = false;
    return NULL;
}
#endif

/* ================================================================ cross entropy */

/* saved x, target, lse; n->i[0] = ignore_index */
static int xent_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *t = wf__saved(n, 1), *lse = wf__saved(n, 2);
    if (!x || !t || !lse) return wf_error();
    gx[0] = wf__cross_entropy_bwd_raw(gy[0], x, t, lse, n->i[0]);
    return gx[0] ? 0 : wf_error();
}

wf_tensor *wf__cross_entropy_fused(wf_tensor *input, wf_tensor *target, int64_t ignore_index, int reduction,
                                   bool *handled) {
    *handled = wf__cross_entropy_fusable(input, target, reduction);
    if (!*handled) return NULL;
    wf_scope_begin();
    wf_tensor *xc = wf_is_contiguous(input) ? input : wf_contiguous(input), *y = NULL, *lse = NULL;
    wf_tensor *loss = xc ? wf__cross_entropy_fwd_raw(xc, target, ignore_index, &lse) : NULL;
    if (!loss) goto out;
    wf_node *n = wf__record("CrossEntropyLossBackward", xent_backward, loss, 1, &xc);
    if (n) {
        n->i[0] = ignore_index;
        if (wf__save(n, xc) < 0 || wf__save(n, target) < 0 || wf__save(n, lse) < 0) goto out;
    } else if (wf__needs_grad(1, &xc)) {
        goto out;   /* recording ran out of memory */
    }
    switch (reduction) {
    case 2: y = loss; break;                                   /* none */
    case 1: y = wf_sum_all(loss); break;                       /* sum */
    default: {   /* mean over the non-ignored rows, summed in f32 (f64 for f64 logits); none left:
                  * NaN with zero gradients, as PyTorch's (nn/loss.c's composed path does the same) */
        wf_dtype acc = input->dtype == WF_F64 ? WF_F64 : WF_F32;
        wf_tensor *cnt = wf_sum_all(wf_to_dtype(wf_ne_scalar(target, (double)ignore_index), acc));
        wf_tensor *none = cnt ? wf_eq_scalar(cnt, 0) : NULL;
        wf_tensor *m = none ? wf_div(wf_sum_all(wf_to_dtype(loss, acc)), wf_where(none, wf_ones_like(cnt), cnt)) : NULL;
        y = m ? wf_to_dtype(wf_where(none, wf_full_like(m, NAN), m), input->dtype) : NULL;
    }
    }
out:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

#ifdef WEFT_MINIMAL
/* The minimal preset's wf_linear_gelu and wf_fused_mlp, composed (fn_linear_fused_stub.c):
 * compiled here rather than as an object of their own, whose ELF headers alone cost the
 * preset's 1 MB budget about 1 KB (as tensor/alloc.c includes census_stub.c). */
#include "fn_linear_fused_stub.c"
#endif
