/* autograd/fn_linear_fused.c: Linear fused with what follows it: Linear + GELU (the bias +
 * GELU epilogue; the tanh form inside the GEMM where the device has it), Linear + GELU +
 * Linear (a transformer's MLP that recomputes its GELU in backward instead of keeping it) and
 * Linear + cross-entropy chunked over the rows (an LM head's loss without the [N, V] logits,
 * its gradients made in the forward for a scalar loss).
 *
 * Both are written in raw ops (tensor/ops_linear_fused.c and the others), so they run on every
 * backend that has those; a backend's fused kernels (CUDA's bias_gelu, xent_fwd/bwd) are used
 * where it has them for the dtype.
 *
 * Backward of a GELU whose saved input includes the Linear's bias (the tanh form inside the
 * GEMM, and the MLP's whole-input modes): where the device has gelu_bwd_bias (CUDA, f32 /
 * bf16 / f16), one pass makes the GELU's input gradient and its column sums, the Linear's bias
 * gradient, and the weight gradient is a plain GEMM; otherwise (the CPU,
 * WEFT_GELU_BGRAD_OLD=1) the GELU's backward, then the weight-gradient GEMM with the bias
 * gradient from its BGRAD epilogue (or a sum), which reads that gradient a second time. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"
#include "fn_linear_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a op b (the operands' casts not wanted) */
static wf_tensor *bin(const char *op, wf_binary_op o, wf_tensor *a, wf_tensor *b) {
    wf_tensor *ins[2];
    return wf__binary_raw(op, o, a, b, ins);
}

/* WEFT_GELU_BGRAD_OLD=1 (read once): the bias gradient of the Linear before a GELU from the
 * weight-gradient GEMM's BGRAD epilogue (a reduction of its own over the GELU's output
 * gradient), as before gelu_bwd_bias; for the A/B timing on the GPU (bench/NOTES.md) */
WF__ENV_SWITCH(gelu_bgrad_old, "WEFT_GELU_BGRAD_OLD")

/* gp = gy * gelu'(pre) and gb = gp's column sums in one pass where the device has the kernel
 * (pre: the GELU's whole input): 0 with both made, 1 not here (compose), or a negative code.
 * Operands that do not fit (a gradient of another dtype) compose too. */
static int gelu_grads_with_bias(wf_tensor *gy, wf_tensor *pre, bool tanh, wf_tensor **gp, wf_tensor **gb) {
    *gp = *gb = NULL;
    if (gelu_bgrad_old() || !gy || !pre || gy->dtype != pre->dtype || !wf_device_eq(gy->device, pre->device) ||
        gy->ndim != pre->ndim || memcmp(gy->shape, pre->shape, sizeof(int64_t) * (size_t)pre->ndim))
        return 1;
    return wf__gelu_backward_bias_raw(gy, pre, tanh, gp, gb);
}

/* ================================================================ linear + gelu */

/* a Linear's weight and bias gradients from g2 [rows, out] and its input x2 [rows, in] (inputs
 * iw and ib of the node; ib < 0: no bias). gb: the bias gradient when a kernel already made it
 * (gelu_backward_bias), so the weight's is a plain GEMM; else one GEMM with the BGRAD epilogue
 * where the device has it, or the two products (the weight's in f32 if the node marked it) */
static int linear_wgrad(wf_node *n, int iw, int ib, wf_tensor *g2, wf_tensor *x2, wf_tensor *w, wf_tensor *gb,
                        wf_tensor **gx) {
    bool nb = ib >= 0 && n->needs[ib];
    wf_tensor *gw = NULL;
    int r = gb ? 1 : n->needs[iw] && nb ? wf__linear_wgrad_fused_raw(g2, x2, w, &gw, &gb) : 1;
    if (r < 0) return r;
    if (r > 0) {
        if (n->needs[iw] && !(gx[iw] = wf__linear_weight_grad(n, iw, g2, x2))) return wf_error();
        if (nb && !gb && !(gb = wf_sum(g2, WF_DIMS(0), false))) return wf_error();
    } else if (!(gx[iw] = wf__reduce_to(gw, &n->in_meta[iw]))) {
        return wf_error();
    }
    if (nb && !(gx[ib] = wf__reduce_to(gb, &n->in_meta[ib]))) return wf_error();
    return 0;
}

/* inputs x, w, b; saved x, w, pre, then b if any. n->i[0] = tanh form; n->i[1] = 0: pre = x @
 * w^T without the bias (the bias + GELU kernel's input), 1: pre = the GELU's whole input, as
 * the GEMM's GELU epilogue saved it (aux, with the bias) */
static int linear_gelu_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w = wf__saved(n, 1), *pre = wf__saved(n, 2);
    wf_tensor *b = n->n_saved > 3 ? wf__saved(n, 3) : NULL;
    if (!x || !w || !pre || (n->n_saved > 3 && !b)) return wf_error();
    int64_t out = w->shape[0], in = w->shape[1];
    bool nb = b && n->needs[2];
    wf_tensor *gp = NULL, *gb = NULL;
    /* pre with the bias: the GELU's backward sums the bias gradient as it goes, and the weight
     * gradient below is then a plain GEMM */
    int r = n->i[1] && nb ? gelu_grads_with_bias(gy[0], pre, n->i[0] != 0, &gp, &gb) : 1;
    if (r < 0) return r;
    if (r > 0)
        gp = n->i[1] ? wf__unary_backward_raw(WF_U_GELU_TANH, gy[0], pre, false, 0, 0)
                     : wf__bias_gelu_bwd_raw(gy[0], pre, b, n->i[0] != 0);
    wf_tensor *g2 = gp ? wf_reshape(gp, WF_SHAPE(-1, out)) : NULL, *x2 = wf_reshape(x, WF_SHAPE(-1, in));
    if (!g2 || !x2) return wf_error();
    if (n->needs[0]) {
        gx[0] = wf_reshape(wf_matmul(g2, w), n->in_meta[0].shape, n->in_meta[0].ndim);
        if (!gx[0]) return wf_error();
    }
    return linear_wgrad(n, 1, b ? 2 : -1, g2, x2, w, gb, gx);
}

/* y's node: saves x, w, pre, b (see linear_gelu_backward) */
static wf_tensor *linear_gelu_record(wf_tensor *y, wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor *pre, bool tanh,
                                     bool aux) {
    wf_tensor *ins[3] = { x, w, b };
    wf_node *nd = wf__record("LinearGeluBackward", linear_gelu_backward, y, 3, ins);
    if (nd) nd->i[0] = tanh, nd->i[1] = aux, nd->i[WF__WGRAD_F32_SLOT] = wf__wgrad_f32_bit(w, 1);
    return wf__recorded(y, nd,
                        nd && wf__save(nd, x) >= 0 && wf__save(nd, w) >= 0 && wf__save(nd, pre) >= 0 &&
                            (!b || wf__save(nd, b) >= 0),
                        3, ins);
}

static wf_tensor *linear_gelu_body(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    if (wf__any_null("wf_linear_gelu", 2, x, w)) return NULL;
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_linear_gelu: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", (int)approximate);
        return NULL;
    }
    x = wf__autocast_arg(x, WF__AC_LOWER), w = wf__autocast_arg(w, WF__AC_LOWER), b = wf__autocast_arg(b, WF__AC_LOWER);
    if (!x || !w) return NULL;
    if (approximate == WF_GELU_TANH) {
        /* the tanh form inside the GEMM where the device has it (cuBLASLt's GELU_AUX_BIAS):
         * no bias + GELU pass; the GELU's input (aux) is saved for the backward */
        wf_tensor *y = NULL, *aux = NULL;
        wf_scope_begin();
        int r = wf__linear_gelu_aux_raw(x, w, b, &y, &aux);
        if (r == 0) y = linear_gelu_record(y, x, w, b, aux, true, true);
        wf_keep(y);
        wf_scope_end();
        if (r <= 0) return y;   /* done, or failed (y NULL, the error recorded) */
    }
    /* a device without the epilogue (the CPU) composes: the same nodes as Linear then GELU */
    if (!b || w->ndim != 2 || x->dtype != w->dtype || !wf_device_eq(x->device, w->device) || !wf__bias_gelu_fusable(w, b))
        return wf_gelu(wf_linear(x, w, b), approximate);
    wf_tensor *y = NULL;
    wf_scope_begin();
    wf_tensor *pre = wf__linear_raw(x, w, NULL);
    if (pre) y = wf__bias_gelu_raw(pre, b, approximate == WF_GELU_TANH);
    if (y) y = linear_gelu_record(y, x, w, b, pre, approximate == WF_GELU_TANH, false);
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_linear_gelu(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    WF__NAMED("wf_linear_gelu", wf_tensor *, !r, linear_gelu_body(x, w, b, approximate));
}

/* ================================================================ linear + gelu + linear */

/* The MLP keeps h, the GELU's input, and not g = gelu(h), the second Linear's input: backward
 * makes g again from h (one elementwise pass) for the second weight's gradient. n->i[1] says
 * what h is: 0 the GELU's whole input (x @ w1^T + b1; the plain GELU op, the CPU's path), 1
 * x @ w1^T without the bias (the device's bias + GELU kernel adds it), 2 the whole input as
 * the GEMM's GELU epilogue saved it (tanh form; backward makes dh and b1's gradient in the
 * GEMM of gy2 @ w2, DGELU_BGRAD, where the backend runs it: on CUDA only with
 * WEFT_DGELU_EPILOGUE=1, which was slower on the H100; else the GEMM and then one pass over h
 * that makes dh and b1's gradient, gelu_bwd_bias, with w1's gradient a plain GEMM, or where
 * the device has no such kernel (or WEFT_GELU_BGRAD_OLD=1) the GELU's backward pass over h and
 * the BGRAD column sums). MLP_COMPOSED's h is the whole input too and takes gelu_bwd_bias the
 * same way where the device has it. */
#define MLP_COMPOSED 0
#define MLP_BIAS_GELU 1
#define MLP_EPILOGUE 2
static wf_tensor *mlp_gelu(wf_node *n, wf_tensor *h, wf_tensor *b1) {
    bool tanh = n->i[0] != 0;
    if (n->i[1] == MLP_BIAS_GELU) return wf__bias_gelu_raw(h, b1, tanh);
    return wf__unary_raw("wf_fused_mlp", tanh ? WF_U_GELU_TANH : WF_U_GELU, h, 0, 0);
}

/* the first Linear's gradients from dh [rows, hid] (and db1 when the GEMM made it) */
static int mlp_first_grads(wf_node *n, wf_tensor *dh, wf_tensor *db1, bool has_b1, wf_tensor *x, wf_tensor *w1,
                           wf_tensor **gx) {
    int64_t hid = w1->shape[0], in = w1->shape[1];
    wf_tensor *dh2 = wf_reshape(dh, WF_SHAPE(-1, hid)), *x2 = wf_reshape(x, WF_SHAPE(-1, in));
    if (!dh2 || !x2) return wf_error();
    if (n->needs[0] && !(gx[0] = wf_reshape(wf_matmul(dh2, w1), n->in_meta[0].shape, n->in_meta[0].ndim)))
        return wf_error();
    return linear_wgrad(n, 1, has_b1 || db1 ? 2 : -1, dh2, x2, w1, db1, gx);
}

/* inputs x, w1, b1, w2, b2 (a missing bias: a NULL input); saved x, w1, w2, h, then b1 if any */
static int fused_mlp_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w1 = wf__saved(n, 1), *w2 = wf__saved(n, 2), *h = wf__saved(n, 3);
    wf_tensor *b1 = n->n_saved > 4 ? wf__saved(n, 4) : NULL;
    if (!x || !w1 || !w2 || !h || (n->n_saved > 4 && !b1)) return wf_error();
    int64_t hid = w1->shape[0], out = w2->shape[0];
    wf_tensor *gy2 = wf_reshape(gy[0], WF_SHAPE(-1, out));
    wf_tensor *g2 = wf_reshape(mlp_gelu(n, h, b1), WF_SHAPE(-1, hid));   /* recomputed */
    if (!gy2 || !g2) return wf_error();
    int rc = linear_wgrad(n, 3, 4, gy2, g2, w2, NULL, gx);
    if (rc) return rc;
    if (n->i[1] == MLP_EPILOGUE) {   /* dh = (gy2 @ w2) * gelu'(h) and db1 in one GEMM */
        wf_tensor *dh = NULL, *db1 = NULL;
        bool want_db = b1 && n->needs[2];
        int r = wf__linear_dgelu_bgrad_raw(gy2, w2, h, &dh, want_db ? &db1 : NULL);
        if (r < 0) return r;
        if (r == 0) return mlp_first_grads(n, dh, db1, b1 != NULL, x, w1, gx);
        /* declined (a plan cuBLASLt refused): composed below; h is the whole input here */
    }
    wf_tensor *dg = wf_matmul(gy2, w2);   /* [rows, hid] */
    if (dg && n->i[1] != MLP_BIAS_GELU && b1 && n->needs[2]) {
        /* h is the GELU's whole input: dh and db1 in one pass, then w1's gradient a plain GEMM */
        wf_tensor *dh = NULL, *db1 = NULL;
        int r = gelu_grads_with_bias(dg, wf_reshape(h, WF_SHAPE(-1, hid)), n->i[0] != 0, &dh, &db1);
        if (r < 0) return r;
        if (r == 0) return mlp_first_grads(n, dh, db1, true, x, w1, gx);
    }
    wf_tensor *dh = !dg ? NULL
                    : n->i[1] == MLP_BIAS_GELU ? wf__bias_gelu_bwd_raw(dg, h, b1, n->i[0] != 0)
                                               : wf__unary_backward_raw(n->i[0] ? WF_U_GELU_TANH : WF_U_GELU, dg,
                                                                        wf_reshape(h, WF_SHAPE(-1, hid)), false, 0, 0);
    if (!dh) return wf_error();
    return mlp_first_grads(n, dh, NULL, b1 != NULL, x, w1, gx);
}

static wf_tensor *fused_mlp_body(wf_tensor *x, wf_tensor *w1, wf_tensor *b1, wf_tensor *w2, wf_tensor *b2,
                                 wf_gelu_approx approximate) {
    if (wf__any_null("wf_fused_mlp", 3, x, w1, w2)) return NULL;
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_fused_mlp: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", (int)approximate);
        return NULL;
    }
    x = wf__autocast_arg(x, WF__AC_LOWER), w1 = wf__autocast_arg(w1, WF__AC_LOWER);
    b1 = wf__autocast_arg(b1, WF__AC_LOWER), w2 = wf__autocast_arg(w2, WF__AC_LOWER);
    b2 = wf__autocast_arg(b2, WF__AC_LOWER);
    if (!x || !w1 || !w2) return NULL;
    bool tanh = approximate == WF_GELU_TANH;
    wf_tensor *y = NULL, *h = NULL, *g = NULL;
    int mode = MLP_COMPOSED;
    wf_scope_begin();
    /* the tanh form: the first GEMM makes g and h (cuBLASLt's GELU_AUX_BIAS) where it can */
    int r = tanh ? wf__linear_gelu_aux_raw(x, w1, b1, &g, &h) : 1;
    if (r == 0) mode = MLP_EPILOGUE;
    else if (r > 0) {
        mode = b1 && w1->ndim == 2 && wf__bias_gelu_fusable(w1, b1) ? MLP_BIAS_GELU : MLP_COMPOSED;
        h = wf__linear_raw(x, w1, mode == MLP_BIAS_GELU ? NULL : b1);
        g = !h ? NULL
            : mode == MLP_BIAS_GELU ? wf__bias_gelu_raw(h, b1, tanh)
                                    : wf__unary_raw("wf_fused_mlp", tanh ? WF_U_GELU_TANH : WF_U_GELU, h, 0, 0);
    }
    if (g) y = wf__linear_raw(g, w2, b2);
    if (y) {
        wf_tensor *ins[5] = { x, w1, b1, w2, b2 };
        wf_node *nd = wf__record("FusedMlpBackward", fused_mlp_backward, y, 5, ins);
        if (nd) {
            nd->i[0] = tanh, nd->i[1] = mode;
            nd->i[WF__WGRAD_F32_SLOT] = wf__wgrad_f32_bit(w1, 1) | wf__wgrad_f32_bit(w2, 3);
        }
        y = wf__recorded(y, nd,
                         nd && wf__save(nd, x) >= 0 && wf__save(nd, w1) >= 0 && wf__save(nd, w2) >= 0 &&
                             wf__save(nd, h) >= 0 && (!b1 || wf__save(nd, b1) >= 0),
                         5, ins);
    }
    wf_keep(y);
    wf_scope_end();   /* g goes here: nothing keeps it */
    return y;
}

wf_tensor *wf_fused_mlp(wf_tensor *x, wf_tensor *w1, wf_tensor *b1, wf_tensor *w2, wf_tensor *b2,
                        wf_gelu_approx approximate) {
    WF__NAMED("wf_fused_mlp", wf_tensor *, !r, fused_mlp_body(x, w1, b1, w2, b2, approximate));
}

/* ================================================================ linear + cross-entropy */

static const char *const LCE = "wf_linear_cross_entropy";

/* The automatic chunk: as few equal chunks as keep one chunk's logits under 2^28 elements
 * (512 MiB in bf16). Each chunk costs three GEMMs with the weight (its logits, then dh and dw;
 * a fourth, the logits again, where the backward makes the gradients), so fewer chunks run
 * faster: GPT-2 124M at 16 x 1024 rows (H100,
 * bf16) stepped in 64.0 ms with 2^25 (25 chunks of 667 rows), 54.1 ms with 4 chunks of 4096
 * (what 2^28 gives) and 53.6 ms with one, which peaks 2.8 GB higher (bench/NOTES.md). */
#define LCE_CHUNK_ELEMS ((int64_t)1 << 28)

/* ceil(N / nchunks) rows with nchunks = ceil(N * V / LCE_CHUNK_ELEMS): the last chunk is not
 * a short remainder (16384 rows of 50304: 4 x 4096, not 3 x 5336 and 376) */
int64_t wf__lce_chunk_rows(int64_t N, int64_t V, int64_t chunk_rows) {
    if (chunk_rows > 0) return chunk_rows;
    if (N <= 0 || V <= 0) return 1;
    int64_t per = LCE_CHUNK_ELEMS / V > 1 ? LCE_CHUNK_ELEMS / V : 1;   /* rows under the budget */
    int64_t nchunks = (N + per - 1) / per;
    return (N + nchunks - 1) / nchunks;
}

/* rows [r0, r0 + n) of t (dim 0) */
static wf_tensor *rows(wf_tensor *t, int64_t r0, int64_t n) {
    wf__slice_args a;
    return wf__narrow_args(t, 0, r0, n, &a) ? NULL : wf__slice_raw(t, &a);
}

/* columns [c0, c0 + n) of t (dim 1) */
static wf_tensor *cols(wf_tensor *t, int64_t c0, int64_t n) {
    wf__slice_args a;
    return wf__narrow_args(t, 1, c0, n, &a) ? NULL : wf__slice_raw(t, &a);
}

/* dst's rows [r0, r0 + n) = src */
static int put_rows(wf_tensor *dst, int64_t r0, int64_t n, wf_tensor *src) {
    wf_tensor *d = rows(dst, r0, n);
    return d ? wf__copy_raw_(d, src) : wf_error();
}

/* WEFT_LCE_RECOMPUTE=1 (read once): the gradients made in the backward from the chunks'
 * logits computed again, as before they were made in the forward (A/B timing) */
WF__ENV_SWITCH(lce_recompute, "WEFT_LCE_RECOMPUTE")

/* The gradients' buffers and one chunk's share of them. dh [N, C] in h's dtype, dw [V, C] and
 * db [1, V] in wp (each NULL when not wanted), ones [1, chunk] for db's column sums. */
typedef struct { wf_tensor *dh, *dw, *db, *ones; } lce_grads;

static int lce_grads_new(lce_grads *G, wf_tensor *h, int64_t V, int64_t chunk, wf_dtype wp, bool need_h, bool need_w,
                         bool need_b) {
    int64_t N = h->shape[0], C = h->shape[1];
    G->dh = need_h ? wf__empty(h->shape, 2, h->dtype, h->device) : NULL;
    G->dw = need_w ? wf__empty(WF_SHAPE(V, C), wp, h->device) : NULL;
    G->db = need_b ? wf__empty(WF_SHAPE(1, V), wp, h->device) : NULL;
    /* db's column sums as a product: ones [1, rows] @ gl, accumulated in wp like dw */
    G->ones = need_b ? wf__empty(WF_SHAPE(1, chunk < N ? chunk : N), h->dtype, h->device) : NULL;
    if ((need_h && !G->dh) || (need_w && !G->dw) || (need_b && (!G->db || !G->ones))) return wf_error();
    if ((G->dw && wf__fill_raw_(G->dw, 0)) || (G->db && wf__fill_raw_(G->db, 0)) || (G->ones && wf__fill_raw_(G->ones, 1)))
        return wf_error();
    return 0;
}

/* rows [r0, r0 + m) of the gradients from gl, the chunk's logits gradient, and hc, its rows of h */
static int lce_grads_add(lce_grads *G, wf_tensor *gl, wf_tensor *hc, wf_tensor *w, int64_t r0, int64_t m) {
    if (G->dh) {
        wf_tensor *d = wf__matmul_nd_raw(LCE, gl, w);
        int rc = d ? put_rows(G->dh, r0, m, d) : wf_error();
        if (rc) return rc;
    }
    /* dw += gl^T @ hc and db += ones @ gl by the GEMM itself, in wp (f32 under half precision):
     * no [V, C] product per chunk rounded to half and then added (a read, a write and a
     * rounding of all of dw per chunk) */
    if (G->dw) {
        wf_tensor *glt = wf__permute_raw(gl, (int[]){ 1, 0 }, 2);
        int rc = glt ? wf__matmul_acc_raw_(LCE, G->dw, glt, hc) : wf_error();
        if (rc) return rc;
    }
    if (G->db) {
        wf_tensor *o = cols(G->ones, 0, m);
        return o ? wf__matmul_acc_raw_(LCE, G->db, o, gl) : wf_error();
    }
    return 0;
}

/* coef[n]: the loss's gradient reaching row n per unit of the loss's own gradient g (NULL:
 * 1): 0 on ignored rows, 1 / max(count, 1) for the mean */
static wf_tensor *lce_coef(wf_tensor *t, int64_t ign, int reduction, wf_tensor *cnt, wf_tensor *g, wf_dtype wp) {
    wf_tensor *coef = wf__to_dtype_raw(wf__binary_scalar_raw(LCE, WF_B_NE, t, (double)ign, false), wp);
    if (coef && g) coef = bin(LCE, WF_B_MUL, coef, g);
    if (coef && reduction == 0) coef = bin(LCE, WF_B_DIV, coef, wf__binary_scalar_raw(LCE, WF_B_MAX, cnt, 1.0, false));
    return coef;
}

/* the gradients as the node gives them: dw in the parameter's f32 where the weight is
 * autocast's copy of one (no round trip through the copy's dtype), the others in their inputs' */
static int lce_grads_out(wf_node *n, lce_grads *G, int64_t V, wf_tensor **gx) {
    if (G->dh && !(gx[0] = wf__reduce_to(G->dh, &n->in_meta[0]))) return wf_error();
    if (G->dw) {
        wf_meta mw = n->in_meta[1];
        if ((n->i[WF__WGRAD_F32_SLOT] >> 1 & 1) && G->dw->dtype == WF_F32) mw.dtype = WF_F32;
        if (!(gx[1] = wf__reduce_to(G->dw, &mw))) return wf_error();
    }
    if (G->db && !(gx[2] = wf__reduce_to(wf_reshape(G->db, WF_SHAPE(V)), &n->in_meta[2]))) return wf_error();
    return 0;
}

/* node: inputs h, w, b; n->i[0] ignore_index, i[1] reduction, i[2] chunk rows, i[3] has bias,
 * i[4] gradients made in the forward, i[5] V, i[6] wp (dw's dtype); n->f[0] label smoothing. Saved: with i[4], the
 * gradients for a loss gradient of 1 (dh, dw, db, as lce_grads; lse stands in for each one not
 * wanted); else h, w, b (or h as a stand-in), target, lse [N], count, from which the chunks'
 * logits are made again. */
static int linear_xent_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    if (n->i[4]) {
        /* the loss is a scalar (mean or sum): the gradients scale with its gradient */
        lce_grads G = { n->needs[0] ? wf__saved(n, 0) : NULL, n->needs[1] ? wf__saved(n, 1) : NULL,
                        n->i[3] && n->needs[2] ? wf__saved(n, 2) : NULL, NULL };
        if ((n->needs[0] && !G.dh) || (n->needs[1] && !G.dw) || (n->i[3] && n->needs[2] && !G.db)) return wf_error();
        wf_tensor *g = wf__to_dtype_raw(gy[0], (wf_dtype)n->i[6]);
        if (!g) return wf_error();
        if (G.dh && !(G.dh = bin(LCE, WF_B_MUL, G.dh, g))) return wf_error();
        if (G.dw && !(G.dw = bin(LCE, WF_B_MUL, G.dw, g))) return wf_error();
        if (G.db && !(G.db = bin(LCE, WF_B_MUL, G.db, g))) return wf_error();
        return lce_grads_out(n, &G, n->i[5], gx);
    }
    wf_tensor *h = wf__saved(n, 0), *w = wf__saved(n, 1), *b = n->i[3] ? wf__saved(n, 2) : NULL;
    wf_tensor *t = wf__saved(n, 3), *lse = wf__saved(n, 4), *cnt = wf__saved(n, 5);
    if (!h || !w || (n->i[3] && !b) || !t || !lse || !cnt) return wf_error();
    int64_t N = h->shape[0], V = w->shape[0], chunk = n->i[2], ign = n->i[0];
    wf_dtype wp = lse->dtype;
    wf_tensor *coef = lce_coef(t, ign, (int)n->i[1], cnt, wf__to_dtype_raw(gy[0], wp), wp);
    if (!coef) return wf_error();
    lce_grads G;
    int rc = lce_grads_new(&G, h, V, chunk, wp, n->needs[0], n->needs[1], n->i[3] && n->needs[2]);
    for (int64_t r0 = 0; r0 < N && !rc; r0 += chunk) {
        int64_t m = N - r0 < chunk ? N - r0 : chunk;
        wf_scope_begin();
        /* the chunk's logits again, then softmax - onehot straight into dh, dw, db */
        wf_tensor *hc = rows(h, r0, m), *tc = rows(t, r0, m);
        wf_tensor *logits = hc && tc ? wf__linear_raw(hc, w, b) : NULL;
        wf_tensor *gl = logits ? wf__xent_rows_bwd_raw(LCE, rows(coef, r0, m), logits, tc, rows(lse, r0, m), ign,
                                                       n->f[0])
                               : NULL;
        rc = gl ? lce_grads_add(&G, gl, hc, w, r0, m) : wf_error();
        wf_scope_end();
    }
    return rc ? rc : lce_grads_out(n, &G, V, gx);
}

/* The forward makes the gradients too, for a loss gradient of 1, when the loss is a scalar
 * (mean or sum) and any input wants one (Liger's fused linear cross-entropy): each chunk's
 * logits are made once, where the backward made them a second time (one of the head's four
 * GEMMs: an [N, C] x [C, V] product, about 1.8 ms of a GPT-2 124M step on the H100), and the
 * backward only scales them by the loss's gradient. Not under f16, where a loss scale must
 * reach the logits' gradient before it is rounded (1 / N of a probability underflows f16),
 * nor with WEFT_LCE_RECOMPUTE=1. The gradients wait in memory from the forward to the
 * backward: dw [V, C] in f32, as the backward's own buffer was, and dh [N, C]. */
wf_tensor *wf__linear_cross_entropy(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, int64_t ign, double ls,
                                    int reduction, int64_t chunk_rows, wf_dtype out_dt) {
    int64_t N = h->shape[0], V = w->shape[0];
    int64_t chunk = wf__lce_chunk_rows(N, V, chunk_rows);
    wf_dtype wp = h->dtype == WF_F64 ? WF_F64 : WF_F32;
    wf_tensor *ins[3] = { h, w, b };
    bool grads = wf__needs_grad(3, ins);
    bool early = grads && reduction != 2 && h->dtype != WF_F16 && !lce_recompute();
    wf_tensor *y = NULL;
    wf_scope_begin();
    wf_tensor *hc = wf_is_contiguous(h) ? h : wf__copy_raw(h, h->dtype, h->device);
    wf_tensor *tcn = wf_is_contiguous(t) ? t : wf__copy_raw(t, t->dtype, t->device);
    wf_tensor *loss = wf__empty(WF_SHAPE(N), wp, h->device), *lse = wf__empty(WF_SHAPE(N), wp, h->device);
    /* kept rows: the mean's divisor (none kept: 0/0, NaN, as PyTorch) */
    wf_tensor *cnt = tcn ? wf__sum_raw(LCE, wf__to_dtype_raw(wf__binary_scalar_raw(LCE, WF_B_NE, tcn, (double)ign, false), wp), 1u)
                         : NULL;
    int rc = hc && tcn && loss && lse && cnt ? 0 : wf_error();
    lce_grads G = { 0 };
    wf_tensor *coef = NULL;
    if (!rc && early) {
        coef = lce_coef(tcn, ign, reduction, cnt, NULL, wp);
        rc = coef ? lce_grads_new(&G, h, V, chunk, wp, h->requires_grad, w->requires_grad, b && b->requires_grad)
                  : wf_error();
    }
    for (int64_t r0 = 0; r0 < N && !rc; r0 += chunk) {
        int64_t m = N - r0 < chunk ? N - r0 : chunk;
        wf_scope_begin();   /* the chunk's logits live here only */
        wf_tensor *tc = rows(tcn, r0, m), *hr = rows(hc, r0, m), *lc = NULL, *sc = NULL;
        wf_tensor *logits = hr ? wf__linear_raw(hr, w, b) : NULL;
        /* the loss's own temporaries (the composed path's [m, V] ones, where the device has no
         * kernel) go before the gradient's are made */
        wf_scope_begin();
        rc = logits && tc ? wf__xent_rows_raw(LCE, logits, tc, ign, ls, wp, &lc, &sc) : wf_error();
        if (!rc) rc = put_rows(loss, r0, m, lc);
        if (!rc) rc = put_rows(lse, r0, m, sc);
        wf_scope_end();
        if (!rc && early) {
            wf_tensor *gl = wf__xent_rows_bwd_raw(LCE, rows(coef, r0, m), logits, tc, rows(lse, r0, m), ign, ls);
            rc = gl ? lce_grads_add(&G, gl, hr, w, r0, m) : wf_error();
        }
        wf_scope_end();
    }
    if (!rc) {
        if (reduction == 2) y = loss;
        else y = wf__sum_raw(LCE, loss, 1u);
        if (y && reduction == 0) y = bin(LCE, WF_B_DIV, y, cnt);
        if (y && reduction != 2) y = wf__view_of(y, 0, (int64_t[]){ 1 }, (int64_t[]){ 1 }, y->offset);
        if (y) y = wf__copy_raw(y, out_dt, y->device);   /* fresh: the saved tensors are not views of it */
    }
    if (y) {
        wf_node *nd = wf__record("LinearCrossEntropyBackward", linear_xent_backward, y, 3, ins);
        if (nd) {
            nd->i[0] = ign, nd->i[1] = reduction, nd->i[2] = chunk, nd->i[3] = b != NULL, nd->i[4] = early, nd->i[5] = V, nd->i[6] = wp;
            nd->i[WF__WGRAD_F32_SLOT] = wf__wgrad_f32_bit(w, 1);
            nd->f[0] = ls;
        }
        bool saved;
        if (early) {
            /* lse stands in for each gradient not wanted (its slot kept) */
            saved = nd && wf__save(nd, G.dh ? G.dh : lse) >= 0 && wf__save(nd, G.dw ? G.dw : lse) >= 0 &&
                    wf__save(nd, G.db ? G.db : lse) >= 0;
        } else {
            saved = nd && wf__save(nd, hc) >= 0 && wf__save(nd, w) >= 0 && wf__save(nd, b ? b : hc) >= 0 &&
                    wf__save(nd, tcn) >= 0 && wf__save(nd, lse) >= 0 && wf__save(nd, cnt) >= 0;
        }
        y = wf__recorded(y, nd, saved, 3, ins);
    }
    wf_keep(y);
    wf_scope_end();
    return y;
}
