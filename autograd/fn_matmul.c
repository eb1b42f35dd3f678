/* autograd/fn_matmul.c: wf_matmul, wf_bmm, wf_linear and their backward. The products are
 * tensor/ops_matmul.c's raw ops; the gradients are written with the public ops under grad
 * mode off (so they work on every device and with every dtype wf_matmul accepts), except
 * the weight and bias gradients of a Linear with bias, which one fused GEMM gives where the
 * device has one. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- weight gradients in f32
 * (autograd_impl.h says why) */

#ifdef WEFT_MINIMAL
/* the embedded preset keeps the bf16 product and its cast (its size budget; autocast there is
 * rare and composes through f32 anyway): the same gradients PyTorch's autocast gives */
int64_t wf__wgrad_f32_bit(const wf_tensor *w, int iw) {
    (void)w, (void)iw;
    return 0;
}
wf_tensor *wf__linear_weight_grad(wf_node *n, int iw, wf_tensor *g2, wf_tensor *x2) {
    return wf__reduce_to(wf_matmul(wf_t(g2), x2), &n->in_meta[iw]);
}
#else
WF__ENV_SWITCH(wgrad_f32_old, "WEFT_WGRAD_F32_OLD")

int64_t wf__wgrad_f32_bit(const wf_tensor *w, int iw) {
    if (!w || (w->dtype != WF_BF16 && w->dtype != WF_F16) || wgrad_f32_old()) return 0;
    return wf__autocast_source_dtype(w) == WF_F32 ? (int64_t)1 << iw : 0;
}

wf_tensor *wf__linear_weight_grad(wf_node *n, int iw, wf_tensor *g2, wf_tensor *x2) {
    const wf_meta *m = &n->in_meta[iw];
    bool f32 = (n->i[WF__WGRAD_F32_SLOT] >> iw & 1) && g2->dtype == m->dtype && x2->dtype == m->dtype &&
               wf_device_eq(g2->device, x2->device);
    if (f32 && g2->device.type != WF_DEV_META) {   /* a backend without gemm_acc keeps the old path */
        const wf_kernels *K = wf__kernels(g2->device);
        f32 = K && K->gemm_acc;
        if (!K) wf_clear_error();
    }
    if (!f32) return wf__reduce_to(wf_matmul(wf_t(g2), x2), m);
    wf_tensor *gt = wf__permute_raw(g2, (int[]){ 1, 0 }, 2);   /* read transposed by the GEMM: no copy */
    wf_tensor *gw = gt ? wf__matmul_f32_raw(gt, x2) : NULL;
    if (!gw) return NULL;
    wf_meta m32 = *m;
    m32.dtype = gw->dtype;   /* keeps f32: only the shape is checked */
    return wf__reduce_to(gw, &m32);
}
#endif

/* ---------------------------------------------------------------- backward */

/* y = a @ b with a [..., m, k], b [..., k, n] (both at least 2-D, batch dims broadcast).
 * saved 0 = a, 1 = b. ga = gy @ b^T, gb = a^T @ gy, each summed back to its input's shape. */
static int matmul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    wf_tensor *g = gy[0];
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(wf_matmul(g, wf_transpose(b, -1, -2)), &n->in_meta[0]);
        if (!gx[0]) return wf_error();
    }
    if (n->needs[1]) {
        wf_tensor *gb;
        if (b->ndim == 2 && a->ndim > 2) {
            /* b was shared by every batch item: fold the batch into the rows, one GEMM
             * [k, B*m] @ [B*m, n] instead of a batched product and a sum. */
            int64_t k = a->shape[a->ndim - 1], nn = g->shape[g->ndim - 1];
            wf_tensor *a2 = wf_reshape(a, WF_SHAPE(-1, k));
            wf_tensor *g2 = wf_reshape(g, WF_SHAPE(-1, nn));
            gb = wf_matmul(wf_t(a2), g2);
        } else {
            gb = wf_matmul(wf_transpose(a, -1, -2), g);
        }
        gx[1] = wf__reduce_to(gb, &n->in_meta[1]);
        if (!gx[1]) return wf_error();
    }
    return 0;
}

/* y = x @ w^T (+ b): inputs x [..., in], w [out, in], optional b [out]; saved 0 = x, 1 = w.
 * gx = gy @ w, gw = gy2^T @ x2 (rows flattened), gb = sum of gy over all but the last dim. */
static int linear_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w = wf__saved(n, 1);
    if (!x || !w) return wf_error();
    wf_tensor *g = gy[0];
    int64_t out = w->shape[0], in = w->shape[1];
    wf_tensor *g2 = NULL;
    if (n->needs[1] || (n->n_inputs > 2 && n->needs[2])) {
        g2 = wf_reshape(g, WF_SHAPE(-1, out));
        if (!g2) return wf_error();
    }
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(wf_matmul(g, w), &n->in_meta[0]);
        if (!gx[0]) return wf_error();
    }
    if (n->needs[1]) {
        wf_tensor *x2 = wf_reshape(x, WF_SHAPE(-1, in));
        gx[1] = x2 ? wf__linear_weight_grad(n, 1, g2, x2) : NULL;
        if (!gx[1]) return wf_error();
    }
    if (n->n_inputs > 2 && n->needs[2]) {
        gx[2] = wf__reduce_to(wf_sum(g2, WF_DIMS(0), false), &n->in_meta[2]);
        if (!gx[2]) return wf_error();
    }
    return 0;
}

/* linear_backward, with the weight and bias gradients from one GEMM (bias gradient in its
 * epilogue) where the device offers gemm_epilogue (wf__linear_wgrad_fused_raw); otherwise,
 * or when it declines, the composed linear_backward. The fused GEMM writes the weight's
 * dtype: a weight marked for an f32 gradient still takes it where the device fuses (CUDA, and
 * the CPU for bf16 / f16; its gradient then cast by ToCopyBackward as before), since making the bias gradient by a
 * separate sum to save that cast has not been measured (bench/NOTES.md). */
static int linear_bias_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w = wf__saved(n, 1), *g = gy[0];
    if (!x || !w) return wf_error();
    if (!n->needs[1] || !n->needs[2] || wf_is_grad_enabled() || n->in_meta[1].dtype != w->dtype ||
        n->in_meta[2].dtype != w->dtype)
        return linear_backward(n, gy, gx);
    wf_tensor *gw = NULL, *gb = NULL;
    int r = wf__linear_wgrad_fused_raw(g, x, w, &gw, &gb);
    if (r < 0) return r;
    if (r > 0) return linear_backward(n, gy, gx);
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(wf_matmul(g, w), &n->in_meta[0]);
        if (!gx[0]) return wf_error();
    }
    gx[1] = wf__reduce_to(gw, &n->in_meta[1]);
    gx[2] = wf__reduce_to(gb, &n->in_meta[2]);
    return gx[1] && gx[2] ? 0 : wf_error();
}

/* ---------------------------------------------------------------- forward */

/* a @ b for a, b at least 2-D (checked by the caller): the raw product, recorded. */
static wf_tensor *matmul_nd(const char *op, wf_tensor *a, wf_tensor *b) {
    wf_tensor *y = wf__matmul_nd_raw(op, a, b);
    if (!y) return NULL;
    int nbo = y->ndim - 2;
    wf_node *nd = wf__record(nbo ? "BmmBackward" : "MmBackward", matmul_backward, y, 2, (wf_tensor *[]){ a, b });
    return wf__recorded(y, nd, nd && wf__save(nd, a) >= 0 && wf__save(nd, b) >= 0, 2, (wf_tensor *[]){ a, b });
}

static wf_tensor *wf_matmul__body(wf_tensor *a, wf_tensor *b) {
    static const char *op = "wf_matmul";
    a = wf__autocast_arg(a, WF__AC_LOWER), b = wf__autocast_arg(b, WF__AC_LOWER);
    if (wf__matmul_check(op, a, b)) return NULL;
    if (a->ndim >= 2 && b->ndim >= 2) return matmul_nd(op, a, b);

    /* 1-D operands: promote to a matrix ([k] -> [1,k] on the left, [k,1] on the right),
     * multiply, and drop the added dimension (as torch.matmul). */
    wf_tensor *y = NULL;
    wf_scope_begin();
    wf_tensor *a2 = a->ndim == 1 ? wf_unsqueeze(a, 0) : a;
    wf_tensor *b2 = b->ndim == 1 ? wf_unsqueeze(b, 1) : b;
    if (a2 && b2) y = matmul_nd(op, a2, b2);
    if (y && a->ndim == 1) y = wf_squeeze(y, -2);
    if (y && b->ndim == 1) y = wf_squeeze(y, -1);
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_matmul(wf_tensor *a, wf_tensor *b) { WF__NAMED("wf_matmul", wf_tensor *, !r, wf_matmul__body(a, b)); }

wf_tensor *wf_bmm(wf_tensor *a, wf_tensor *b) {
    a = wf__autocast_arg(a, WF__AC_LOWER), b = wf__autocast_arg(b, WF__AC_LOWER);
    if (wf__bmm_check(a, b)) return NULL;
    return matmul_nd("wf_bmm", a, b);
}

static wf_tensor *wf_linear__body(wf_tensor *x, wf_tensor *w, wf_tensor *b) {
    x = wf__autocast_arg(x, WF__AC_LOWER), w = wf__autocast_arg(w, WF__AC_LOWER), b = wf__autocast_arg(b, WF__AC_LOWER);
    wf_tensor *y = wf__linear_raw(x, w, b);
    if (!y) return NULL;
    wf_tensor *ins[3] = { x, w, b };
    wf_node *nd = wf__record("LinearBackward", b ? linear_bias_backward : linear_backward, y, b ? 3 : 2, ins);
    if (nd) nd->i[WF__WGRAD_F32_SLOT] = wf__wgrad_f32_bit(w, 1);
    return wf__recorded(y, nd, nd && wf__save(nd, x) >= 0 && wf__save(nd, w) >= 0, b ? 3 : 2, ins);
}

wf_tensor *wf_linear(wf_tensor *x, wf_tensor *w, wf_tensor *b) {
    WF__NAMED("wf_linear", wf_tensor *, !r, wf_linear__body(x, w, b));
}
