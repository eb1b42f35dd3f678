/* tensor/ops_fused.c: front-ends of the optional fused kernels (wf_kernels' sdpa_*,
 * layer_norm_*, xent_*): scaled-dot-product attention, layer norm, softmax cross-entropy.
 *
 * nn/functional.c and nn/loss.c call these first; when the device has no such kernel or the
 * arguments do not suit it (see tensor_impl.h), *handled is false and they compose the op
 * from ordinary ops as before. Each fused op records one node whose backward calls the
 * matching backward kernel (those backwards are not themselves differentiable). */
#include "tensor_impl.h"
#include "../autograd/autograd_impl.h"

#include <math.h>
#include <string.h>

/* a contiguous tensor of dtype dt with t's values (t itself when it is one); no autograd */
static wf_tensor *contig_as(const wf_kernels *k, wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt && wf_is_contiguous(t)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && k->copy(c, t)) return NULL;
    return c;
}

/* last-dim stride 1 (other strides free), dtype dt; no autograd */
static wf_tensor *unit_last_raw(const wf_kernels *k, wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt && (t->ndim == 0 || t->stride[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && k->copy(c, t)) return NULL;
    return c;
}

/* ================================================================ attention */

static int sdpa_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *q = wf__saved(n, 0), *k = wf__saved(n, 1), *v = wf__saved(n, 2), *o = wf__saved(n, 3),
              *lse = wf__saved(n, 4);
    if (!q || !k || !v || !o || !lse) return wf_error();
    const wf_kernels *kt = wf__kernels(q->device);
    if (!kt) return wf_error();
    wf_tensor *dout = unit_last_raw(kt, gy[0], q->dtype);
    wf_tensor *dq = wf__empty(q->shape, q->ndim, q->dtype, q->device);
    wf_tensor *dk = wf__empty(k->shape, k->ndim, k->dtype, k->device);
    wf_tensor *dv = wf__empty(v->shape, v->ndim, v->dtype, v->device);
    if (!dout || !dq || !dk || !dv) return wf_error() ? wf_error() : WF_ENOMEM;
    int rc = kt->sdpa_bwd(dq, dk, dv, dout, q, k, v, o, lse, n->f[0], n->i[0] != 0);
    if (rc) return rc;
    if (n->needs[0]) gx[0] = dq;
    if (n->needs[1]) gx[1] = dk;
    if (n->needs[2]) gx[2] = dv;
    return 0;
}

wf_tensor *wf__sdpa_fused(wf_tensor *q, wf_tensor *k, wf_tensor *v, double scale, bool causal, bool *handled) {
    *handled = false;
    if (!wf_device_eq(q->device, k->device) || !wf_device_eq(q->device, v->device)) return NULL;
    const wf_kernels *kt = wf__kernels(q->device);
    wf_dtype dt = q->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_FWD, dt) || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_BWD, dt))
        return NULL;
    if ((dt != WF_BF16 && dt != WF_F16) || k->dtype != dt || v->dtype != dt) return NULL;
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) return NULL;
    int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3], S = k->shape[2];
    if (k->shape[0] != B || k->shape[1] != H || k->shape[3] != D || v->shape[0] != B || v->shape[1] != H ||
        v->shape[2] != S || v->shape[3] != D)
        return NULL;
    if (D < 1 || D > 128 || L < 1 || S < 1 || B < 1 || H < 1 || B * H > 2147483647LL || L > 4000000 || S > 4000000)
        return NULL;
    *handled = true;
    wf_scope_begin();
    /* the kernel reads any strides but needs unit stride along D */
    wf_tensor *in[3] = { q, k, v };
    for (int i = 0; i < 3; i++)
        if (in[i]->stride[3] != 1) in[i] = wf_contiguous(in[i]);
    wf_tensor *y = NULL;
    if (!in[0] || !in[1] || !in[2]) goto out;
    /* the output is stored [B, L, H, D] and seen as [B, H, L, D]: attention modules transpose
     * it back to [B, L, H*D], which is then a free reshape */
    wf_tensor *base = wf__empty(WF_SHAPE(B, L, H, D), dt, q->device);
    wf_tensor *lse = wf__empty(WF_SHAPE(B, H, L), WF_F32, q->device);
    if (!base || !lse) goto out;
    int64_t shape[4] = { B, H, L, D }, stride[4] = { L * H * D, D, H * D, 1 };
    y = wf__view_of(base, 4, shape, stride, 0);
    if (!y) goto out;
    wf_tensor_free(y->view_base);     /* a result of its own, not a view for autograd */
    y->view_base = NULL;
    if (kt->sdpa_fwd(y, lse, in[0], in[1], in[2], scale, causal)) { y = NULL; goto out; }
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

/* Attention straight from a packed projection qkv [B, T, 3E] (q, k, v side by side along the
 * last dim, heads of D = E / H inside each): the kernels read the three [B, H, T, D] views in
 * place, and the backward writes dq, dk, dv straight into one [B, T, 3E] gradient. Composing
 * split + reshape + transpose instead costs, in the backward, a transposing copy of each of
 * dq/dk/dv plus the split's zero-fill, copy and sum (about 0.8 ms of a GPT block's 4.9 ms on
 * an H100). The output is y [B, H, T, D] stored as [B, T, H, D], as in wf__sdpa_fused. */
static void qkv_views(wf_tensor *qkv, int64_t H, wf_tensor **out) {
    int64_t B = qkv->shape[0], T = qkv->shape[1], E3 = qkv->shape[2], E = E3 / 3, D = E / H;
    int64_t shape[4] = { B, H, T, D }, stride[4] = { qkv->stride[0], D * qkv->stride[2], qkv->stride[1], qkv->stride[2] };
    for (int i = 0; i < 3; i++) out[i] = wf__view_of(qkv, 4, shape, stride, qkv->offset + i * E * qkv->stride[2]);
}

static int sdpa_qkv_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *qkv = wf__saved(n, 0), *o = wf__saved(n, 1), *lse = wf__saved(n, 2);
    if (!qkv || !o || !lse) return wf_error();
    const wf_kernels *kt = wf__kernels(qkv->device);
    if (!kt) return wf_error();
    int64_t H = n->i[1];
    wf_tensor *dout = unit_last_raw(kt, gy[0], qkv->dtype);
    wf_tensor *dqkv = wf__empty(qkv->shape, qkv->ndim, qkv->dtype, qkv->device);
    if (!dout || !dqkv) return wf_error() ? wf_error() : WF_ENOMEM;
    wf_tensor *in[3], *d[3];
    qkv_views(qkv, H, in);
    qkv_views(dqkv, H, d);
    for (int i = 0; i < 3; i++)
        if (!in[i] || !d[i]) return wf_error();
    int rc = kt->sdpa_bwd(d[0], d[1], d[2], dout, in[0], in[1], in[2], o, lse, n->f[0], n->i[0] != 0);
    if (rc) return rc;
    gx[0] = dqkv;
    return 0;
}

wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled) {
    *handled = false;
    if (!qkv || qkv->ndim != 3 || H < 1) return NULL;
    const wf_kernels *kt = wf__kernels(qkv->device);
    wf_dtype dt = qkv->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_FWD, dt) || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_BWD, dt))
        return NULL;
    int64_t B = qkv->shape[0], T = qkv->shape[1], E3 = qkv->shape[2];
    if ((dt != WF_BF16 && dt != WF_F16) || E3 % 3 || (E3 / 3) % H || qkv->stride[2] != 1) return NULL;
    int64_t E = E3 / 3, D = E / H;
    if (D < 1 || D > 128 || T < 1 || B < 1 || B * H > 2147483647LL || T > 4000000) return NULL;
    *handled = true;
    wf_scope_begin();
    wf_tensor *in[3], *y = NULL;
    qkv_views(qkv, H, in);
    wf_tensor *base = wf__empty(WF_SHAPE(B, T, H, D), dt, qkv->device);
    wf_tensor *lse = wf__empty(WF_SHAPE(B, H, T), WF_F32, qkv->device);
    if (!in[0] || !in[1] || !in[2] || !base || !lse) goto out;
    int64_t shape[4] = { B, H, T, D }, stride[4] = { T * H * D, D, H * D, 1 };
    y = wf__view_of(base, 4, shape, stride, 0);
    if (!y) goto out;
    wf_tensor_free(y->view_base);     /* a result of its own, not a view for autograd */
    y->view_base = NULL;
    double scale = 1.0 / sqrt((double)D);
    if (kt->sdpa_fwd(y, lse, in[0], in[1], in[2], scale, causal)) { y = NULL; goto out; }
    wf_node *n = wf__record("ScaledDotProductFlashAttentionBackward", sdpa_qkv_backward, y, 1, &qkv);
    if (n) {
        n->f[0] = scale;
        n->i[0] = causal;
        n->i[1] = H;
        if (wf__save(n, qkv) < 0 || wf__save(n, y) < 0 || wf__save(n, lse) < 0) y = NULL;
    } else if (wf__needs_grad(1, &qkv)) {
        y = NULL;   /* recording ran out of memory */
    }
out:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ================================================================ layer norm */

static int layer_norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *mean = wf__saved(n, 1), *rstd = wf__saved(n, 2);
    if (!x || !mean || !rstd) return wf_error();
    wf_tensor *w = NULL;
    if (n->i[0]) {
        w = wf__saved(n, 3);
        if (!w) return wf_error();
    }
    const wf_kernels *kt = wf__kernels(x->device);
    if (!kt) return wf_error();
    wf_tensor *g = contig_as(kt, gy[0], x->dtype);
    if (!g) return wf_error() ? wf_error() : WF_ENOMEM;
    wf_tensor *dx = NULL, *dw = NULL, *db = NULL;
    if (n->needs[0] && !(dx = wf__empty(x->shape, x->ndim, x->dtype, x->device))) return wf_error();
    if (n->needs[1] && !(dw = wf__empty(n->in_meta[1].shape, n->in_meta[1].ndim, n->in_meta[1].dtype, x->device)))
        return wf_error();
    if (n->needs[2] && !(db = wf__empty(n->in_meta[2].shape, n->in_meta[2].ndim, n->in_meta[2].dtype, x->device)))
        return wf_error();
    int rc = kt->layer_norm_bwd(dx, dw, db, g, x, mean, rstd, w);
    if (rc) return rc;
    gx[0] = dx;
    gx[1] = dw;
    gx[2] = db;
    return 0;
}

wf_tensor *wf__layer_norm_fused(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, double eps, bool *handled) {
    *handled = false;
    const wf_kernels *kt = wf__kernels(x->device);
    wf_dtype dt = x->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_LAYER_NORM_FWD, dt) ||
        !wf__supports(kt, WF_OPF_KERNEL, WF_K_LAYER_NORM_BWD, dt))
        return NULL;
    if (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) return NULL;
    wf_tensor *ps[2] = { weight, bias };
    for (int i = 0; i < 2; i++)
        if (ps[i] && (ps[i]->dtype != dt || !wf_device_eq(ps[i]->device, x->device) || !wf_is_contiguous(ps[i])))
            return NULL;
    int64_t D = 1;
    for (int i = x->ndim - nd; i < x->ndim; i++) D *= x->shape[i];
    int64_t numel = wf_numel(x);
    if (D < 1 || numel == 0) return NULL;
    *handled = true;
    wf_scope_begin();
    wf_tensor *xc = wf_is_contiguous(x) ? x : wf_contiguous(x), *y = NULL;
    wf_tensor *mean = wf__empty(WF_SHAPE(numel / D), WF_F32, x->device);
    wf_tensor *rstd = wf__empty(WF_SHAPE(numel / D), WF_F32, x->device);
    if (!xc || !mean || !rstd) goto out;
    y = wf__empty(x->shape, x->ndim, dt, x->device);
    if (!y) goto out;
    if (kt->layer_norm_fwd(y, mean, rstd, xc, weight, bias, eps)) { y = NULL; goto out; }
    wf_node *n = wf__record("NativeLayerNormBackward", layer_norm_backward, y, 3, (wf_tensor *[]){ xc, weight, bias });
    if (n) {
        n->i[0] = weight != NULL;
        if (wf__save(n, xc) < 0 || wf__save(n, mean) < 0 || wf__save(n, rstd) < 0 || (weight && wf__save(n, weight) < 0))
            y = NULL;
    } else if (wf__needs_grad(3, (wf_tensor *[]){ xc, weight, bias })) {
        y = NULL;   /* recording ran out of memory */
    }
out:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ================================================================ cross entropy */

static int xent_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *t = wf__saved(n, 1), *lse = wf__saved(n, 2);
    if (!x || !t || !lse) return wf_error();
    const wf_kernels *kt = wf__kernels(x->device);
    if (!kt) return wf_error();
    wf_tensor *gx0 = wf__empty(x->shape, x->ndim, x->dtype, x->device);
    if (!gx0) return wf_error();
    int rc = kt->xent_bwd(gx0, gy[0], 1.0, x, t, lse, n->i[0], 0.0);
    if (rc) return rc;
    gx[0] = gx0;
    return 0;
}

wf_tensor *wf__cross_entropy_fused(wf_tensor *input, wf_tensor *target, int64_t ignore_index, int reduction,
                                   bool *handled) {
    *handled = false;
    if (!wf_device_eq(input->device, target->device)) return NULL;
    const wf_kernels *kt = wf__kernels(input->device);
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_FWD, input->dtype) ||
        !wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_BWD, input->dtype))
        return NULL;
    if (input->ndim != 2 || target->ndim != 1 || target->dtype != WF_I64 || target->shape[0] != input->shape[0])
        return NULL;
    if (!wf_dtype_is_floating(input->dtype) || input->shape[0] < 1 || input->shape[1] < 1) return NULL;
    if (reduction < 0 || reduction > 2) return NULL;
    *handled = true;
    int64_t N = input->shape[0];
    wf_scope_begin();
    wf_tensor *xc = wf_is_contiguous(input) ? input : wf_contiguous(input), *y = NULL;
    wf_tensor *loss = wf__empty(WF_SHAPE(N), input->dtype, input->device);
    wf_tensor *lse = wf__empty(WF_SHAPE(N), WF_F32, input->device);
    if (!xc || !loss || !lse) goto out;
    if (kt->xent_fwd(loss, lse, xc, target, ignore_index, 0.0)) goto out;
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
    default: {   /* mean over the non-ignored rows, summed in f32; none left: NaN with zero
                  * gradients, as PyTorch's (nn/loss.c's composed path does the same) */
        wf_tensor *cnt = wf_sum_all(wf_to_dtype(wf_ne_scalar(target, (double)ignore_index), WF_F32));
        wf_tensor *none = cnt ? wf_eq_scalar(cnt, 0) : NULL;
        wf_tensor *m = none ? wf_div(wf_sum_all(wf_to_dtype(loss, WF_F32)), wf_where(none, wf_ones_like(cnt), cnt)) : NULL;
        y = m ? wf_to_dtype(wf_where(none, wf_full_like(m, NAN), m), input->dtype) : NULL;
    }
    }
out:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}
