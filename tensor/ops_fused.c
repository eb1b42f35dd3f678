/* tensor/ops_fused.c: the raw ops over the optional fused kernels (wf_kernels' sdpa_*,
 * layer_norm_*, xent_*; tensor/ops_raw.h): scaled-dot-product attention, layer norm, softmax
 * cross-entropy. Each has a check (does this device's kernel take these arguments?), a
 * forward and a backward; the front-ends that record their nodes (wf__sdpa_fused, ...) are
 * in autograd/fn_fused.c. Temporaries join the current scope. */
#include "ops_raw.h"

#include <math.h>
#include <string.h>

/* a contiguous tensor of dtype dt with t's values (t itself when it is one) */
static wf_tensor *contig_as(const wf_kernels *k, wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt && wf_is_contiguous(t)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && k->copy(c, t)) return NULL;
    return c;
}

/* last-dim stride 1 (other strides free), dtype dt */
static wf_tensor *unit_last_raw(const wf_kernels *k, wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt && (t->ndim == 0 || t->stride[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && k->copy(c, t)) return NULL;
    return c;
}

static int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

/* ================================================================ attention */

bool wf__sdpa_fusable(wf_tensor *q, wf_tensor *k, wf_tensor *v) {
    if (!wf_device_eq(q->device, k->device) || !wf_device_eq(q->device, v->device)) return false;
    const wf_kernels *kt = wf__kernels(q->device);
    wf_dtype dt = q->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_FWD, dt) || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_BWD, dt))
        return false;
    if ((dt != WF_BF16 && dt != WF_F16) || k->dtype != dt || v->dtype != dt) return false;
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) return false;
    int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3], S = k->shape[2];
    if (k->shape[0] != B || k->shape[1] != H || k->shape[3] != D || v->shape[0] != B || v->shape[1] != H ||
        v->shape[2] != S || v->shape[3] != D)
        return false;
    return !(D < 1 || D > 128 || L < 1 || S < 1 || B < 1 || H < 1 || B * H > 2147483647LL || L > 4000000 || S > 4000000);
}

/* y [B, H, L, D] stored [B, L, H, D]: attention modules transpose it back to [B, L, H*D],
 * which is then a free reshape. A result of its own, not a view for autograd. */
static wf_tensor *bhld_output(int64_t B, int64_t H, int64_t L, int64_t D, wf_dtype dt, wf_device dev) {
    wf_tensor *base = wf__empty(WF_SHAPE(B, L, H, D), dt, dev);
    if (!base) return NULL;
    int64_t shape[4] = { B, H, L, D }, stride[4] = { L * H * D, D, H * D, 1 };
    wf_tensor *y = wf__view_of(base, 4, shape, stride, 0);
    if (!y) return NULL;
    wf_tensor_free(y->view_base);
    y->view_base = NULL;
    return y;
}

wf_tensor *wf__sdpa_fwd_raw(wf_tensor *q, wf_tensor *k, wf_tensor *v, double scale, bool causal, wf_tensor **lse) {
    int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3];
    *lse = wf__empty(WF_SHAPE(B, H, L), WF_F32, q->device);
    wf_tensor *y = *lse ? bhld_output(B, H, L, D, q->dtype, q->device) : NULL;
    if (!y || wf__kernels(q->device)->sdpa_fwd(y, *lse, q, k, v, scale, causal)) return NULL;
    return y;
}

int wf__sdpa_bwd_raw(wf_tensor *gy, wf_tensor *q, wf_tensor *k, wf_tensor *v, wf_tensor *o, wf_tensor *lse,
                     double scale, bool causal, wf_tensor **dq, wf_tensor **dk, wf_tensor **dv) {
    const wf_kernels *kt = wf__kernels(q->device);
    if (!kt) return wf_error();
    wf_tensor *dout = unit_last_raw(kt, gy, q->dtype);
    *dq = wf__empty(q->shape, q->ndim, q->dtype, q->device);
    *dk = wf__empty(k->shape, k->ndim, k->dtype, k->device);
    *dv = wf__empty(v->shape, v->ndim, v->dtype, v->device);
    if (!dout || !*dq || !*dk || !*dv) return err_or(WF_ENOMEM);
    return kt->sdpa_bwd(*dq, *dk, *dv, dout, q, k, v, o, lse, scale, causal);
}

/* Attention straight from a packed projection qkv [B, T, 3E] (q, k, v side by side along the
 * last dim, heads of D = E / H inside each): the kernels read the three [B, H, T, D] views in
 * place, and the backward writes dq, dk, dv straight into one [B, T, 3E] gradient. Composing
 * split + reshape + transpose instead costs, in the backward, a transposing copy of each of
 * dq/dk/dv plus the split's zero-fill, copy and sum (about 0.8 ms of a GPT block's 4.9 ms on
 * an H100). The output is y [B, H, T, D] stored as [B, T, H, D], as in wf__sdpa_fwd_raw. */
static void qkv_views(wf_tensor *qkv, int64_t H, wf_tensor **out) {
    int64_t B = qkv->shape[0], T = qkv->shape[1], E3 = qkv->shape[2], E = E3 / 3, D = E / H;
    int64_t shape[4] = { B, H, T, D }, stride[4] = { qkv->stride[0], D * qkv->stride[2], qkv->stride[1], qkv->stride[2] };
    for (int i = 0; i < 3; i++) out[i] = wf__view_of(qkv, 4, shape, stride, qkv->offset + i * E * qkv->stride[2]);
}

bool wf__sdpa_qkv_fusable(wf_tensor *qkv, int64_t H) {
    if (!qkv || qkv->ndim != 3 || H < 1) return false;
    const wf_kernels *kt = wf__kernels(qkv->device);
    wf_dtype dt = qkv->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_FWD, dt) || !wf__supports(kt, WF_OPF_KERNEL, WF_K_SDPA_BWD, dt))
        return false;
    int64_t B = qkv->shape[0], T = qkv->shape[1], E3 = qkv->shape[2];
    if ((dt != WF_BF16 && dt != WF_F16) || E3 % 3 || (E3 / 3) % H || qkv->stride[2] != 1) return false;
    int64_t E = E3 / 3, D = E / H;
    return !(D < 1 || D > 128 || T < 1 || B < 1 || B * H > 2147483647LL || T > 4000000);
}

wf_tensor *wf__sdpa_qkv_fwd_raw(wf_tensor *qkv, int64_t H, bool causal, double *scale, wf_tensor **lse) {
    int64_t B = qkv->shape[0], T = qkv->shape[1], D = qkv->shape[2] / 3 / H;
    wf_tensor *in[3];
    qkv_views(qkv, H, in);
    *lse = wf__empty(WF_SHAPE(B, H, T), WF_F32, qkv->device);
    wf_tensor *y = in[0] && in[1] && in[2] && *lse ? bhld_output(B, H, T, D, qkv->dtype, qkv->device) : NULL;
    *scale = 1.0 / sqrt((double)D);
    if (!y || wf__kernels(qkv->device)->sdpa_fwd(y, *lse, in[0], in[1], in[2], *scale, causal)) return NULL;
    return y;
}

wf_tensor *wf__sdpa_qkv_bwd_raw(wf_tensor *gy, wf_tensor *qkv, int64_t H, wf_tensor *o, wf_tensor *lse, double scale,
                                bool causal) {
    const wf_kernels *kt = wf__kernels(qkv->device);
    if (!kt) return NULL;
    wf_tensor *dout = unit_last_raw(kt, gy, qkv->dtype);
    wf_tensor *dqkv = wf__empty(qkv->shape, qkv->ndim, qkv->dtype, qkv->device);
    if (!dout || !dqkv) return err_or(WF_ENOMEM), NULL;
    wf_tensor *in[3], *d[3];
    qkv_views(qkv, H, in);
    qkv_views(dqkv, H, d);
    for (int i = 0; i < 3; i++)
        if (!in[i] || !d[i]) return NULL;
    if (kt->sdpa_bwd(d[0], d[1], d[2], dout, in[0], in[1], in[2], o, lse, scale, causal)) return NULL;
    return dqkv;
}

/* ================================================================ layer norm */

/* what both fused norms need beyond the kernels: weight and bias (either may be absent) of
 * x's dtype, on its device, contiguous; a non-empty x */
static bool norm_args_fit(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias) {
    wf_tensor *ps[2] = { weight, bias };
    for (int i = 0; i < 2; i++)
        if (ps[i] && (ps[i]->dtype != x->dtype || !wf_device_eq(ps[i]->device, x->device) || !wf_is_contiguous(ps[i])))
            return false;
    int64_t D = 1;
    for (int i = x->ndim - nd; i < x->ndim; i++) D *= x->shape[i];
    return D >= 1 && wf_numel(x) != 0;
}

/* y's dtype: f32 or half, whatever x's (the kernels compute in f32 and store y as asked) */
static bool norm_out_fits(wf_dtype ydt) { return ydt == WF_F32 || ydt == WF_BF16 || ydt == WF_F16; }

bool wf__layer_norm_fusable(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, wf_dtype ydt) {
    /* meta composes (shapes only: no kernel); the CPU composes a norm that keeps x's dtype, as
     * it always has, and runs its kernel only to write y in another dtype without a cast */
    if (x->device.type == WF_DEV_META || (x->device.type == WF_DEV_CPU && ydt == x->dtype) || !norm_out_fits(ydt))
        return false;
    const wf_kernels *kt = wf__kernels(x->device);
    wf_dtype dt = x->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_LAYER_NORM_FWD, dt) ||
        !wf__supports(kt, WF_OPF_KERNEL, WF_K_LAYER_NORM_BWD, dt))
        return false;
    if (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) return false;
    return norm_args_fit(x, nd, weight, bias);
}

wf_tensor *wf__layer_norm_fwd_raw(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, double eps, wf_dtype ydt,
                                  wf_tensor **mean, wf_tensor **rstd) {
    int64_t D = 1;
    for (int i = x->ndim - nd; i < x->ndim; i++) D *= x->shape[i];
    int64_t rows = wf_numel(x) / D;
    *mean = wf__empty(WF_SHAPE(rows), WF_F32, x->device);
    *rstd = wf__empty(WF_SHAPE(rows), WF_F32, x->device);
    wf_tensor *y = *mean && *rstd ? wf__empty(x->shape, x->ndim, ydt, x->device) : NULL;
    if (!y || wf__kernels(x->device)->layer_norm_fwd(y, *mean, *rstd, x, weight, bias, eps)) return NULL;
    return y;
}

int wf__layer_norm_bwd_raw(wf_tensor *gy, wf_dtype ydt, wf_tensor *x, wf_tensor *mean, wf_tensor *rstd, wf_tensor *w,
                           const int64_t *wshape, int wndim, const int64_t *bshape, int bndim, bool need_x, bool need_w,
                           bool need_b, wf_tensor **dx, wf_tensor **dw, wf_tensor **db) {
    const wf_kernels *kt = wf__kernels(x->device);
    if (!kt) return wf_error();
    wf_tensor *g = contig_as(kt, gy, ydt);
    if (!g) return err_or(WF_ENOMEM);
    *dx = *dw = *db = NULL;
    if (need_x && !(*dx = wf__empty(x->shape, x->ndim, x->dtype, x->device))) return wf_error();
    if (need_w && !(*dw = wf__empty(wshape, wndim, x->dtype, x->device))) return wf_error();
    if (need_b && !(*db = wf__empty(bshape, bndim, x->dtype, x->device))) return wf_error();
    return kt->layer_norm_bwd(*dx, *dw, *db, g, x, mean, rstd, w);
}

/* ================================================================ add + layer norm */

#ifndef WEFT_MINIMAL   /* composed in the minimal preset (autograd/fn_fused.c) */
bool wf__add_layer_norm_fusable(wf_tensor *x, wf_tensor *r, wf_tensor *rb, int nd, wf_tensor *weight, wf_tensor *bias,
                                wf_dtype ydt) {
    /* meta composes (shapes only; its table has no such entry) */
    if (x->device.type == WF_DEV_META || !wf_device_eq(x->device, r->device) || !wf_same_shape(x, r)) return false;
    /* r_bias: contiguous [D] (nd 1) of r's or x's dtype on x's device, as the kernels read it */
    if (rb && (nd != 1 || rb->ndim != 1 || rb->shape[0] != x->shape[x->ndim - 1] || !wf_is_contiguous(rb) ||
               !wf_device_eq(rb->device, x->device) || (rb->dtype != r->dtype && rb->dtype != x->dtype)))
        return false;
    if (ydt != x->dtype && !norm_out_fits(ydt)) return false;   /* y as x (f64 too), or f32 / half */
    const wf_kernels *kt = wf__kernels(x->device);
    wf_dtype dt = x->dtype;
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_ADD_LAYER_NORM_FWD, dt) ||
        !wf__supports(kt, WF_OPF_KERNEL, WF_K_ADD_LAYER_NORM_BWD, dt))
        return false;
    /* s keeps x's dtype only where the composed x + r would have it (f32 + bf16: f32) */
    if (!wf_dtype_is_floating(dt) || !wf_dtype_is_floating(r->dtype) || wf__promote(dt, r->dtype) != dt) return false;
    return norm_args_fit(x, nd, weight, bias);
}

wf_tensor *wf__add_layer_norm_fwd_raw(wf_tensor *x, wf_tensor *r, wf_tensor *rb, int nd, wf_tensor *weight,
                                      wf_tensor *bias, double eps, wf_dtype ydt, wf_tensor **s, wf_tensor **mean,
                                      wf_tensor **rstd) {
    int64_t D = 1;
    for (int i = x->ndim - nd; i < x->ndim; i++) D *= x->shape[i];
    int64_t rows = wf_numel(x) / D;
    wf_dtype sdt = x->dtype == WF_F64 ? WF_F64 : WF_F32;   /* f64's backward needs f64 statistics */
    *mean = wf__empty(WF_SHAPE(rows), sdt, x->device);
    *rstd = wf__empty(WF_SHAPE(rows), sdt, x->device);
    *s = *mean && *rstd ? wf__empty(x->shape, x->ndim, x->dtype, x->device) : NULL;
    wf_tensor *y = *s ? wf__empty(x->shape, x->ndim, ydt, x->device) : NULL;
    if (!y || wf__kernels(x->device)->add_layer_norm_fwd(y, *s, *mean, *rstd, x, r, rb, weight, bias, eps)) return NULL;
    return y;
}

int wf__add_layer_norm_bwd_raw(wf_tensor *gy, wf_dtype ydt, wf_tensor *gs, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd,
                               wf_tensor *w, wf_dtype rdt, const int64_t *wshape, int wndim, const int64_t *bshape,
                               int bndim, wf_dtype rbdt, const bool need[5], wf_tensor **dx, wf_tensor **dr,
                               wf_tensor **dw, wf_tensor **db, wf_tensor **drb) {
    const wf_kernels *kt = wf__kernels(s->device);
    if (!kt) return wf_error();
    wf_tensor *g = contig_as(kt, gy, ydt), *gsc = gs ? contig_as(kt, gs, s->dtype) : NULL;
    if (!g || (gs && !gsc)) return err_or(WF_ENOMEM);
    *dx = *dr = *dw = *db = *drb = NULL;
    /* x and r of one dtype: one gradient serves both (as the composed add's backward hands out) */
    bool share = need[0] && need[1] && rdt == s->dtype;
    if (need[0] && !(*dx = wf__empty(s->shape, s->ndim, s->dtype, s->device))) return wf_error();
    if (need[1] && !share && !(*dr = wf__empty(s->shape, s->ndim, rdt, s->device))) return wf_error();
    if (need[2] && !(*dw = wf__empty(wshape, wndim, s->dtype, s->device))) return wf_error();
    if (need[3] && !(*db = wf__empty(bshape, bndim, s->dtype, s->device))) return wf_error();
    if (need[4] && !(*drb = wf__empty(WF_SHAPE(s->shape[s->ndim - 1]), rbdt, s->device))) return wf_error();
    int rc = kt->add_layer_norm_bwd(*dx, *dr, *dw, *db, *drb, g, gsc, s, mean, rstd, w);
    if (share) *dr = *dx;
    return rc;
}
#endif

/* ================================================================ cross entropy */

bool wf__cross_entropy_fusable(wf_tensor *input, wf_tensor *target, int reduction) {
    if (!wf_device_eq(input->device, target->device)) return false;
    const wf_kernels *kt = wf__kernels(input->device);
    if (!kt || !wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_FWD, input->dtype) ||
        !wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_BWD, input->dtype))
        return false;
    if (input->ndim != 2 || target->ndim != 1 || target->dtype != WF_I64 || target->shape[0] != input->shape[0])
        return false;
    if (!wf_dtype_is_floating(input->dtype) || input->shape[0] < 1 || input->shape[1] < 1) return false;
    return reduction >= 0 && reduction <= 2;
}

wf_tensor *wf__cross_entropy_fwd_raw(wf_tensor *x, wf_tensor *target, int64_t ignore_index, wf_tensor **lse) {
    int64_t N = x->shape[0];
    wf_tensor *loss = wf__empty(WF_SHAPE(N), x->dtype, x->device);
    /* the row log-sum-exp in f32, or f64 for f64 logits (the backward rebuilds softmax from it) */
    *lse = wf__empty(WF_SHAPE(N), x->dtype == WF_F64 ? WF_F64 : WF_F32, x->device);
    if (!loss || !*lse || wf__kernels(x->device)->xent_fwd(loss, *lse, x, target, ignore_index, 0.0)) return NULL;
    return loss;
}

wf_tensor *wf__cross_entropy_bwd_raw(wf_tensor *gloss, wf_tensor *x, wf_tensor *target, wf_tensor *lse,
                                     int64_t ignore_index) {
    const wf_kernels *kt = wf__kernels(x->device);
    if (!kt) return NULL;
    wf_tensor *gx = wf__empty(x->shape, x->ndim, x->dtype, x->device);
    if (!gx || kt->xent_bwd(gx, gloss, 1.0, x, target, lse, ignore_index, 0.0)) return NULL;
    return gx;
}
