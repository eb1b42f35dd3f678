/* tensor/ops_linear_fused.c: the raw pieces of the fused Linear front-ends of
 * autograd/fn_linear_fused.c: the bias + GELU epilogue of Linear + GELU, the GEMMs with the
 * GELU inside them (cuBLASLt's GELU_AUX_BIAS / DGELU_BGRAD, tanh form), the GELU's backward
 * that also makes the bias gradient of the Linear before it (gelu_bwd_bias), and the per-row
 * softmax cross-entropy of one chunk of logits (chunked linear + cross-entropy).
 *
 * Each piece runs the device's fused kernel where it has one for the dtype (CUDA: bias_gelu,
 * xent_fwd / xent_bwd) and otherwise composes itself from the other raw ops, so a backend
 * without the kernel never reaches another device's code. */
#include "ops_raw.h"

#include <stdio.h>
#include <string.h>

/* a op b (the operands' casts not wanted) */
static wf_tensor *bin(const char *op, wf_binary_op o, wf_tensor *a, wf_tensor *b) {
    wf_tensor *ins[2];
    return wf__binary_raw(op, o, a, b, ins);
}

static int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

static wf_tensor *contig_as(const wf_kernels *k, wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt && wf_is_contiguous(t)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && k->copy(c, t)) return NULL;
    return c;
}

/* ================================================================ bias + GELU */

bool wf__bias_gelu_fusable(wf_tensor *w, wf_tensor *b) {
    if (!b || !wf_device_eq(w->device, b->device) || b->dtype != w->dtype || b->ndim != 1 ||
        b->shape[0] != w->shape[0] || b->stride[0] != 1)
        return false;
    const wf_kernels *kt = wf__kernels(w->device);
    return kt && wf__supports(kt, WF_OPF_KERNEL, WF_K_BIAS_GELU, w->dtype) &&
           wf__supports(kt, WF_OPF_KERNEL, WF_K_BIAS_GELU_BWD, w->dtype);
}

wf_tensor *wf__bias_gelu_raw(wf_tensor *x, wf_tensor *b, bool tanh_approx) {
    const wf_kernels *kt = wf__kernels(x->device);
    wf_tensor *xc = kt ? contig_as(kt, x, x->dtype) : NULL;
    wf_tensor *y = xc ? wf__empty(x->shape, x->ndim, x->dtype, x->device) : NULL;
    if (!y) return NULL;
    return wf_numel(y) && kt->bias_gelu(y, xc, b, tanh_approx) ? NULL : y;
}

wf_tensor *wf__bias_gelu_bwd_raw(wf_tensor *gy, wf_tensor *x, wf_tensor *b, bool tanh_approx) {
    const wf_kernels *kt = wf__kernels(x->device);
    wf_tensor *g = kt ? contig_as(kt, gy, x->dtype) : NULL;
    wf_tensor *gx = g ? wf__empty(x->shape, x->ndim, x->dtype, x->device) : NULL;
    if (!gx) return NULL;
    return wf_numel(gx) && kt->bias_gelu_bwd(gx, g, x, b, tanh_approx) ? NULL : gx;
}

/* ================================================================ GELU backward + bias gradient */

/* "[2, 3, 4]" into buf */
static const char *shape_str(const wf_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int wf__gelu_backward_bias_raw(wf_tensor *gy, wf_tensor *pre, bool tanh_approx, wf_tensor **gx, wf_tensor **gb) {
    static const char *const fn = "wf__gelu_backward_bias_raw";
    if (gx) *gx = NULL;
    if (gb) *gb = NULL;
    if (!gy || !pre || !gx || !gb)
        return wf__error(WF_ENULL, "%s: NULL %s", fn, !gy ? "gy" : !pre ? "pre" : "output pointer");
    char a[96], b[96];
    if (pre->ndim < 1)
        return wf__error(WF_ESHAPE, "%s: pre must have a last dim (rows x N), got a 0-dim tensor", fn);
    if (gy->ndim != pre->ndim || memcmp(gy->shape, pre->shape, sizeof(int64_t) * (size_t)pre->ndim))
        return wf__error(WF_ESHAPE, "%s: gy %s and pre %s must have one shape", fn, shape_str(gy, a, sizeof a),
                         shape_str(pre, b, sizeof b));
    if (gy->dtype != pre->dtype)
        return wf__error(WF_EDTYPE, "%s: gy is %s and pre is %s; they must have one dtype", fn,
                         wf_dtype_name(gy->dtype), wf_dtype_name(pre->dtype));
    if (!wf_device_eq(gy->device, pre->device)) {
        wf_device_str(gy->device, a, sizeof a);
        wf_device_str(pre->device, b, sizeof b);
        return wf__error(WF_EDEVICE, "%s: gy is on %s and pre on %s", fn, a, b);
    }
    if (pre->device.type == WF_DEV_META) return 1;
    const wf_kernels *kt = wf__kernels(pre->device);
    if (!kt) return wf_error();
    if (!kt->gelu_bwd_bias || !wf__supports(kt, WF_OPF_KERNEL, WF_K_GELU_BWD_BIAS, pre->dtype)) return 1;
    int64_t N = pre->shape[pre->ndim - 1];
    wf_tensor *gc = contig_as(kt, gy, gy->dtype), *pc = gc ? contig_as(kt, pre, pre->dtype) : NULL;
    wf_tensor *gxt = pc ? wf__empty(pre->shape, pre->ndim, pre->dtype, pre->device) : NULL;
    wf_tensor *gbt = gxt ? wf__empty(&N, 1, pre->dtype, pre->device) : NULL;
    if (!gbt) return err_or(WF_ENOMEM);
    /* no rows: the sums are 0 (the kernel is not called on empty tensors) */
    int r = wf_numel(gxt) ? kt->gelu_bwd_bias(gxt, gbt, gc, pc, tanh_approx) : N ? wf__fill_raw_(gbt, 0) : 0;
    if (r) return r;   /* an error, or the kernel declined the case (1: the scope takes gxt, gbt) */
    *gx = gxt, *gb = gbt;
    return 0;
}

/* ================================================================ GEMM + GELU epilogues */

static char *dptr(const wf_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype);
}

/* the device's gemm_gelu for dt (a yes counts as a call of the op) */
static const wf_kernels *gemm_gelu_kernels(wf_device dev, wf_dtype dt) {
    if (dev.type == WF_DEV_META) return NULL;
    const wf_kernels *kt = wf__kernels(dev);
    if (!kt) {
        wf_clear_error();
        return NULL;
    }
    return kt->gemm_gelu && wf__supports(kt, WF_OPF_KERNEL, WF_K_GEMM_GELU, dt) ? kt : NULL;
}

/* x [..., in] with rows = numel / in, or -1 */
static int64_t rows_of(wf_tensor *x, int64_t in) {
    if (x->ndim < 1 || in <= 0 || x->shape[x->ndim - 1] != in) return -1;
    return wf_numel(x) / in;
}

int wf__linear_gelu_aux_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor **g, wf_tensor **aux) {
    *g = *aux = NULL;
    /* anything unusual declines: the composed path checks and reports it */
    if (!x || !w || w->ndim != 2 || x->dtype != w->dtype || !wf_device_eq(x->device, w->device) ||
        (b && (b->ndim != 1 || b->dtype != w->dtype || !wf_device_eq(b->device, w->device))))
        return 1;
    int64_t out = w->shape[0], in = w->shape[1], rows = rows_of(x, in);
    if (rows <= 0 || out <= 0 || (b && b->shape[0] != out)) return 1;
    const wf_kernels *kt = gemm_gelu_kernels(w->device, w->dtype);
    if (!kt) return 1;
    wf_tensor *xc = contig_as(kt, x, x->dtype), *wc = xc ? contig_as(kt, w, w->dtype) : NULL;
    wf_tensor *bc = wc && b ? contig_as(kt, b, b->dtype) : NULL;
    int64_t shape[WF_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = out;
    wf_tensor *gt = wc && (bc || !b) ? wf__empty(shape, x->ndim, x->dtype, x->device) : NULL;
    wf_tensor *at = gt ? wf__empty(shape, x->ndim, x->dtype, x->device) : NULL;
    if (!at) return err_or(WF_ENOMEM);
    /* g [rows, out] = gelu(x [rows, in] @ w^T + b), aux = the GELU's input */
    int r = kt->gemm_gelu(x->dtype, false, true, rows, out, in, dptr(xc), in, dptr(wc), in, dptr(gt), out, dptr(at), out,
                          bc ? dptr(bc) : NULL, NULL, false, x->device);
    if (r) return r;   /* declined (1): the scope takes gt, at */
    *g = gt, *aux = at;
    return 0;
}

int wf__linear_dgelu_bgrad_raw(wf_tensor *gy, wf_tensor *w, wf_tensor *aux, wf_tensor **dh, wf_tensor **db) {
    *dh = NULL;
    if (db) *db = NULL;
    if (!gy || !w || !aux || w->ndim != 2 || gy->dtype != w->dtype || aux->dtype != w->dtype ||
        !wf_device_eq(gy->device, w->device) || !wf_device_eq(aux->device, w->device))
        return 1;
    int64_t out = w->shape[0], hid = w->shape[1], rows = rows_of(gy, out);
    if (rows <= 0 || hid <= 0 || rows_of(aux, hid) != rows) return 1;
    const wf_kernels *kt = gemm_gelu_kernels(w->device, w->dtype);
    if (!kt) return 1;
    wf_tensor *gc = contig_as(kt, gy, gy->dtype), *wc = gc ? contig_as(kt, w, w->dtype) : NULL;
    wf_tensor *ac = wc ? contig_as(kt, aux, aux->dtype) : NULL;
    wf_tensor *ht = ac ? wf__empty(aux->shape, aux->ndim, aux->dtype, aux->device) : NULL;
    wf_tensor *bt = ht && db ? wf__empty(&hid, 1, aux->dtype, aux->device) : NULL;
    if (!ht || (db && !bt)) return err_or(WF_ENOMEM);
    /* dh [rows, hid] = (gy [rows, out] @ w [out, hid]) * gelu'(aux); db = dh's column sums */
    int r = kt->gemm_gelu(w->dtype, false, false, rows, hid, out, dptr(gc), out, dptr(wc), hid, dptr(ht), hid, dptr(ac),
                          hid, NULL, bt ? dptr(bt) : NULL, true, w->device);
    if (r) return r;
    *dh = ht;
    if (db) *db = bt;
    return 0;
}

/* ================================================================ chunk cross-entropy */

/* the kernels keep lse in f32: f64 chunks compose, so a gradcheck in f64 stays exact */
static bool xent_rows_fusable(const wf_kernels *kt, wf_tensor *logits) {
    return logits->dtype != WF_F64 && wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_FWD, logits->dtype) &&
           wf__supports(kt, WF_OPF_KERNEL, WF_K_XENT_BWD, logits->dtype);
}

/* target as [n, 1] with ignored rows pointed at class 0 (so gather/scatter stay in range),
 * and the rows' mask (1 kept, 0 ignored) in dtype wp, [n, 1] */
static int safe_targets(const char *op, wf_tensor *target, int64_t ignore_index, wf_dtype wp, wf_tensor **tsafe,
                        wf_tensor **keep) {
    int64_t sh[2] = { target->shape[0], 1 };
    wf_tensor *t2 = wf__view_of(target, 2, sh, (int64_t[]){ target->stride[0], 1 }, target->offset);
    wf_tensor *ne = t2 ? wf__binary_scalar_raw(op, WF_B_NE, t2, (double)ignore_index, false) : NULL;
    *tsafe = ne ? bin(op, WF_B_MUL, t2, ne) : NULL;
    *keep = ne ? wf__to_dtype_raw(ne, wp) : NULL;
    return *tsafe && *keep ? 0 : err_or(WF_ENOMEM);
}

int wf__xent_rows_raw(const char *op, wf_tensor *logits, wf_tensor *target, int64_t ignore_index, double ls,
                      wf_dtype wp, wf_tensor **loss, wf_tensor **lse) {
    const wf_kernels *kt = wf__kernels(logits->device);
    if (!kt) return wf_error();
    int64_t n = logits->shape[0], V = logits->shape[1];
    *loss = *lse = NULL;
    if (wp == WF_F32 && xent_rows_fusable(kt, logits)) {
        wf_tensor *xc = contig_as(kt, logits, logits->dtype);
        *loss = wf__empty(WF_SHAPE(n), WF_F32, logits->device);
        *lse = wf__empty(WF_SHAPE(n), WF_F32, logits->device);
        if (!xc || !*loss || !*lse) return err_or(WF_ENOMEM);
        return kt->xent_fwd(*loss, *lse, xc, target, ignore_index, ls);
    }
    /* lse = m + log(sum(exp(x - m))); loss = (1-ls)(lse - x_t) + ls (lse - mean(x)), 0 if ignored */
    wf_tensor *x = wf__to_dtype_raw(logits, wp), *tsafe, *keep;
    if (!x || safe_targets(op, target, ignore_index, wp, &tsafe, &keep)) return err_or(WF_ENOMEM);
    wf_tensor *m = wf__amax_raw(op, true, x, 2u);
    wf_tensor *d = m ? bin(op, WF_B_SUB, x, m) : NULL;
    wf_tensor *e = d ? wf__unary_raw(op, WF_U_EXP, d, 0, 0) : NULL;
    wf_tensor *s = e ? wf__sum_raw(op, e, 2u) : NULL;
    wf_tensor *ls2 = s ? bin(op, WF_B_ADD, m, wf__unary_raw(op, WF_U_LOG, s, 0, 0)) : NULL;
    wf_tensor *xt = ls2 ? wf__gather_raw(x, 1, tsafe) : NULL;
    wf_tensor *l = xt ? bin(op, WF_B_SUB, ls2, xt) : NULL;
    if (l && ls > 0) {
        wf_tensor *mean = wf__binary_scalar_raw(op, WF_B_MUL, wf__sum_raw(op, x, 2u), 1.0 / (double)V, false);
        wf_tensor *sm = mean ? bin(op, WF_B_SUB, ls2, mean) : NULL;
        wf_tensor *a = sm ? wf__binary_scalar_raw(op, WF_B_MUL, l, 1.0 - ls, false) : NULL;
        l = a ? bin(op, WF_B_ADD, a, wf__binary_scalar_raw(op, WF_B_MUL, sm, ls, false)) : NULL;
    }
    if (l) l = bin(op, WF_B_MUL, l, keep);
    if (!l) return err_or(WF_ENOMEM);
    *loss = wf__view_of(l, 1, (int64_t[]){ n }, (int64_t[]){ 1 }, l->offset);
    *lse = wf__view_of(ls2, 1, (int64_t[]){ n }, (int64_t[]){ 1 }, ls2->offset);
    return *loss && *lse ? 0 : err_or(WF_ENOMEM);
}

wf_tensor *wf__xent_rows_bwd_raw(const char *op, wf_tensor *coef, wf_tensor *logits, wf_tensor *target,
                                 wf_tensor *lse, int64_t ignore_index, double ls) {
    const wf_kernels *kt = wf__kernels(logits->device);
    if (!kt) return NULL;
    int64_t n = logits->shape[0], V = logits->shape[1];
    if (lse->dtype == WF_F32 && xent_rows_fusable(kt, logits)) {
        wf_tensor *xc = contig_as(kt, logits, logits->dtype);
        wf_tensor *gx = xc ? wf__empty(logits->shape, 2, logits->dtype, logits->device) : NULL;
        return gx && !kt->xent_bwd(gx, coef, 1.0, xc, target, lse, ignore_index, ls) ? gx : NULL;
    }
    /* coef[n] * (softmax - (1-ls) onehot(t) - ls/V), 0 on ignored rows */
    wf_dtype wp = lse->dtype;
    wf_tensor *x = wf__to_dtype_raw(logits, wp), *tsafe, *keep;
    if (!x || safe_targets(op, target, ignore_index, wp, &tsafe, &keep)) return NULL;
    int64_t sh[2] = { n, 1 };
    wf_tensor *l2 = wf__view_of(lse, 2, sh, (int64_t[]){ lse->stride[0], 1 }, lse->offset);
    wf_tensor *c2 = wf__view_of(coef, 2, sh, (int64_t[]){ coef->stride[0], 1 }, coef->offset);
    wf_tensor *p = l2 ? wf__unary_raw(op, WF_U_EXP, bin(op, WF_B_SUB, x, l2), 0, 0) : NULL;
    if (p && ls > 0) p = wf__binary_scalar_raw(op, WF_B_SUB, p, ls / (double)V, false);
    wf_tensor *hot = p ? wf__binary_scalar_raw(op, WF_B_MUL, keep, -(1.0 - ls), false) : NULL;
    if (hot) p = wf__scatter_add_raw(p, 1, tsafe, hot);
    wf_tensor *ck = p && c2 ? bin(op, WF_B_MUL, c2, keep) : NULL;
    wf_tensor *g = ck ? bin(op, WF_B_MUL, p, ck) : NULL;
    return g ? wf__to_dtype_raw(g, logits->dtype) : NULL;
}
