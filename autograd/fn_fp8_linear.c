/* autograd/fn_fp8_linear.c: Linear in fp8, Transformer Engine's recipe (the "transformer-engine"
 * precision, precision/plugins.c). Forward: x and w cast to E4M3 under their delayed scales
 * (their amaxes recorded), y = x w^T + b from cuBLASLt's fp8 GEMM in bf16 (bias in its
 * epilogue). For the backward it keeps only fp8 bytes: x^T and w^T, written by the same casts,
 * since the fp8 GEMMs take K-major operands only. Backward: the output gradient cast to E5M2,
 * dgrad = gy w -> bf16 and wgrad = gy^T x -> f32 (the master weight's dtype), the bias
 * gradient summed by that same cast as it reads gy (f32 column sums, in the bias's dtype: the
 * node takes the bias itself, its bf16 copy for the epilogue made outside autograd).
 *
 * Delayed scaling: each tensor is cast with the scale that the amax history of the steps before
 * gave, and its own amax enters the history afterwards (cuda_fp8.cu's update kernel; no host
 * synchronization, so the step can be captured in a CUDA graph). The scale_inv a GEMM needs is
 * the one its operand was cast with: each cast writes it beside its bytes, as the update moves
 * the state's own scale on before the backward runs.
 *
 * The per-Linear state (3 slots of scale, scale_inv, amax, history position and a 1024-step
 * amax history) lives on the weight's device and is not part of the module's parameters or
 * buffers, so checkpoints do not hold it: a resumed run starts its scales over from 1 (the
 * history refills within a few steps; TE keeps it in extra_state).
 *
 * On the CPU the same node runs on the launchers' host emulation (tensor/cpu/fp8_emulate.c):
 * tests/precision/test_fp8_linear.c checks its results exactly in every build. */
#include "autograd_impl.h"
#include "fn_fp8_linear.h"
#include "weft_config.h"
#include "../tensor/cpu/fp8.h"
#include "../tensor/ops_raw.h"
#ifdef WEFT_HAVE_CUDA
#include "../tensor/cuda/cuda_api.h"
#endif

#include <string.h>

enum { E4M3 = 0, E5M2 = 1 };

/* The three launchers, per device: CUDA's kernels and cuBLASLt (tensor/cuda/cuda_fp8.cu), or
 * their host emulation (tensor/cpu/fp8_emulate.c), which runs the whole node on the CPU for its
 * tests; the "transformer-engine" precision itself is refused on the CPU (no fp8 GEMM). */
typedef struct {
    int (*cast)(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, void *y, void *yt,
                float *amax, float *scale_inv_out, float *colsum, int dev);
    int (*update)(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin, int dev);
    int (*gemm)(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv, const void *B,
                int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta, const void *bias, int fast_accum,
                int dev);
} fp8_ops;

static int host_cast(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, void *y,
                     void *yt, float *amax, float *scale_inv_out, float *colsum, int dev) {
    (void)dev;
    return wf__fp8_cast_host(x, dtype, rows, cols, fmt, scale, y, yt, amax, scale_inv_out, colsum);
}
static int host_update(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin, int dev) {
    (void)dev;
    return wf__fp8_update_host(slots, nslots, slot_stride, len, fmt, margin);
}
static int host_gemm(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv, const void *B,
                     int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta, const void *bias,
                     int fast_accum, int dev) {
    (void)fast_accum, (void)dev;
    return wf__fp8_gemm_host(m, n, k, A, a_fmt, a_scale_inv, B, b_fmt, b_scale_inv, D, d_dtype, beta, bias);
}
static const fp8_ops host_ops = { host_cast, host_update, host_gemm };
#ifdef WEFT_HAVE_CUDA
static const fp8_ops cuda_ops = { wf__cuda_fp8_cast, wf__cuda_fp8_update, wf__cuda_fp8_gemm };
#endif

/* the launchers for dev, or NULL where there are none */
static const fp8_ops *ops_for(wf_device dev) {
    if (dev.type == WF_DEV_CPU) return &host_ops;
#ifdef WEFT_HAVE_CUDA
    if (dev.type == WF_DEV_CUDA) return &cuda_ops;
#endif
    return NULL;
}

static void *dptr(const wf_tensor *t) { return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype); }
static float *slot(wf_tensor *state, int s) { return (float *)dptr(state) + (int64_t)s * WF__FP8_SLOT_FLOATS; }

/* a fresh state on dev: scales 1, empty histories (owned by the caller, in no scope) */
static wf_tensor *state_new(wf_device dev) {
    int64_t n = (int64_t)WF__FP8_SLOTS * WF__FP8_SLOT_FLOATS;
    float *h = wf__calloc((size_t)n, sizeof(float));
    if (!h) { wf__error(WF_ENOMEM, "fp8 linear: out of memory for the scaling state"); return NULL; }
    for (int s = 0; s < WF__FP8_SLOTS; s++) h[s * WF__FP8_SLOT_FLOATS] = h[s * WF__FP8_SLOT_FLOATS + 1] = 1.0f;
    wf_tensor *t = NULL;
    wf_scope_begin();
    wf_tensor *c = wf_from_data(h, WF_SHAPE(n), WF_F32);
    if (c) t = wf_to_device(c, dev);
    if (t) wf_keep(t);
    wf_scope_end();
    if (t) wf__scope_unregister(t);   /* the Linear's, not a scope's */
    wf__free(h, (size_t)n * sizeof(float));
    return t;
}

static bool fp8_dtype(wf_dtype d) { return d == WF_F32 || d == WF_BF16 || d == WF_F16; }

/* x's scale_inv at sinv[0], w's at sinv[SINV_W]: 16 bytes apart, since cuBLASLt's fp8 matmul
 * refused ("not supported") every product whose scale pointer was only 4-byte aligned on the
 * H100/H200 with cuBLAS 13, after its heuristic had accepted the plan */
#define SINV_W 4
#define SINV_LEN 8

/* node: inputs x, w (, b); saved xt [K, M] and wt [K, N] (u8, each NULL-standing-in when its
 * gradient is not needed: a 1-byte tensor), sinv [SINV_LEN] f32 (x's and w's scale_inv as cast);
 * ctx = the state (a reference); i[0..2] = M, N, K */
static void fp8_release(wf_node *n) {
    wf_tensor_free(n->ctx);
    n->ctx = NULL;
}

static int fp8_linear_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    static const char *op = "fp8 linear backward";
    wf_tensor *xt = wf__saved(n, 0), *wt = wf__saved(n, 1), *sinv = wf__saved(n, 2), *state = n->ctx;
    if (!xt || !wt || !sinv || !state) return wf_error() ? wf_error() : wf__error(WF_EAUTOGRAD, "%s: state lost", op);
    int64_t M = n->i[0], N = n->i[1], K = n->i[2];
    int dev = state->device.index;
    const fp8_ops *o = ops_for(state->device);
    wf_tensor *g = wf_reshape(gy[0], WF_SHAPE(M, N));
    if (g && !fp8_dtype(g->dtype)) g = wf__to_dtype_raw(g, WF_BF16);
    if (g && !wf_is_contiguous(g)) g = wf__copy_raw(g, g->dtype, g->device);
    if (!g) return wf_error();
    wf_tensor *gq = n->needs[0] ? wf__empty(WF_SHAPE(M, N), WF_U8, g->device) : NULL;
    wf_tensor *gt = n->needs[1] ? wf__empty(WF_SHAPE(N, M), WF_U8, g->device) : NULL;
    wf_tensor *gsinv = wf__empty(WF_SHAPE(SINV_LEN), WF_F32, g->device);
    if ((n->needs[0] && !gq) || (n->needs[1] && !gt) || !gsinv) return wf_error();
    /* the bias gradient, g's column sums in f32, from the cast's own read of g (TE's
     * cast_transpose_dbias): no second pass over g */
    bool db_in_cast = (gq || gt) && n->n_inputs > 2 && n->needs[2];
    wf_tensor *db = db_in_cast ? wf__empty(WF_SHAPE(N), WF_F32, g->device) : NULL;
    if (db_in_cast && !db) return wf_error();
    float *sg = slot(state, WF__FP8_SLOT_GY);
    int rc = 0;
    if (gq || gt) {
        rc = o->cast(dptr(g), g->dtype, M, N, E5M2, sg, gq ? dptr(gq) : NULL, gt ? dptr(gt) : NULL, sg + 2,
                     dptr(gsinv), db ? dptr(db) : NULL, dev);
        if (!rc) rc = o->update(sg, 1, WF__FP8_SLOT_FLOATS, WF__FP8_HISTORY_LEN, E5M2, WF__FP8_MARGIN, dev);
    }
    const float *sx = dptr(sinv), *sw = (const float *)dptr(sinv) + SINV_W;
    if (!rc && n->needs[0]) {
        /* dx [M, K] = gy [M, N] . (w^T [K, N])^T */
        wf_tensor *dx = wf__empty(WF_SHAPE(M, K), WF_BF16, g->device);
        rc = dx ? o->gemm(M, K, N, dptr(gq), E5M2, dptr(gsinv), dptr(wt), E4M3, sw, dptr(dx), WF_BF16, 0.0f,
                                    NULL, 0, dev)
                : wf_error();
        if (!rc && dx->dtype != n->in_meta[0].dtype) dx = wf__to_dtype_raw(dx, n->in_meta[0].dtype);
        if (!rc && !(gx[0] = dx ? wf_reshape(dx, n->in_meta[0].shape, n->in_meta[0].ndim) : NULL)) rc = wf_error();
    }
    if (!rc && n->needs[1]) {
        /* dw [N, K] = (gy^T [N, M]) . (x^T [K, M])^T, in f32 */
        wf_tensor *dw = wf__empty(WF_SHAPE(N, K), WF_F32, g->device);
        rc = dw ? o->gemm(N, K, M, dptr(gt), E5M2, dptr(gsinv), dptr(xt), E4M3, sx, dptr(dw), WF_F32, 0.0f,
                                    NULL, 0, dev)
                : wf_error();
        if (!rc && dw->dtype != n->in_meta[1].dtype) dw = wf__to_dtype_raw(dw, n->in_meta[1].dtype);
        if (!rc && !(gx[1] = dw)) rc = wf_error();
    }
    if (!rc && n->n_inputs > 2 && n->needs[2]) {
        /* in the bias's own dtype (f32 for an f32 bias: no bf16 rounding between) */
        gx[2] = wf__reduce_to(db ? db : wf_sum(g, WF_DIMS(0), false), &n->in_meta[2]);
        if (!gx[2]) rc = wf_error();
    }
    return rc;
}

/* x [.., K], w [N, K] on one device with fp8 launchers (CUDA, or the CPU's emulation), in
 * f32 / bf16 / f16, all of M, N, K multiples of 16 (cuBLASLt's; the emulation keeps them) */
static bool fp8_fits(wf_tensor *x, wf_tensor *w, wf_tensor *b) {
    if (!ops_for(x->device) || !wf_device_eq(x->device, w->device) || w->ndim != 2 || x->ndim < 1)
        return false;
    if (!fp8_dtype(x->dtype) || !fp8_dtype(w->dtype) || (b && (!fp8_dtype(b->dtype) || b->ndim != 1)))
        return false;
    int64_t K = w->shape[1], N = w->shape[0];
    if (x->shape[x->ndim - 1] != K || K % 16 || N % 16 || K == 0 || N == 0 || (b && b->shape[0] != N)) return false;
    int64_t M = wf_numel(x) / K;
    return M > 0 && M % 16 == 0;
}

static wf_tensor *fp8_linear_body(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor **state) {
    static const char *op = "wf_linear (fp8)";
    if (wf__any_null(op, 2, x, w)) return NULL;
    if (!fp8_fits(x, w, b)) return wf_linear(x, w, b);
    if (*state && !wf_device_eq((*state)->device, w->device)) {
        wf_tensor_free(*state);
        *state = NULL;
    }
    if (!*state && !(*state = state_new(w->device))) return NULL;
    wf_tensor *st = *state;
    int dev = w->device.index;
    const fp8_ops *o = ops_for(w->device);
    int64_t N = w->shape[0], K = w->shape[1], M = wf_numel(x) / K;
    wf_tensor *y = NULL;
    wf_scope_begin();
    /* the bias in bf16 for the epilogue, a copy outside autograd: the node takes b itself, so
     * its gradient, the f32 column sums, reaches an f32 bias without a round trip through bf16
     * (and two small cast kernels less per Linear and step) */
    wf_tensor *bb = b;
    if (bb && (bb->dtype != WF_BF16 || !wf_is_contiguous(bb) || ((uintptr_t)dptr(bb) & 15)))
        bb = wf__copy_raw(bb, WF_BF16, bb->device);   /* fresh: contiguous and aligned */
    wf_tensor *ins[3] = { x, w, b };
    int nin = b ? 3 : 2;
    bool grad = wf__needs_grad(nin, ins);
    bool need_xt = grad && w->requires_grad, need_wt = grad && x->requires_grad;
    wf_tensor *xc = wf_is_contiguous(x) ? x : wf__copy_raw(x, x->dtype, x->device);
    wf_tensor *wc = wf_is_contiguous(w) ? w : wf__copy_raw(w, w->dtype, w->device);
    wf_tensor *xq = wf__empty(WF_SHAPE(M, K), WF_U8, x->device), *wq = wf__empty(WF_SHAPE(N, K), WF_U8, x->device);
    /* a 16-element stand-in when a transposed copy is not needed (saved all the same) */
    int64_t xt_shape[2] = { need_xt ? K : 1, need_xt ? M : 16 }, wt_shape[2] = { need_wt ? K : 1, need_wt ? N : 16 };
    wf_tensor *xt = wf__empty(xt_shape, 2, WF_U8, x->device), *wt = wf__empty(wt_shape, 2, WF_U8, x->device);
    wf_tensor *sinv = wf__empty(WF_SHAPE(SINV_LEN), WF_F32, x->device);
    int64_t shape[WF_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = N;
    wf_tensor *yy = wf__empty(shape, x->ndim, WF_BF16, x->device);   /* [M, N] to the GEMM */
    int rc = xc && wc && xq && wq && xt && wt && sinv && yy && (!b || bb) ? 0 : wf_error();
    float *sx = slot(st, WF__FP8_SLOT_X), *sw = slot(st, WF__FP8_SLOT_W), *si = rc ? NULL : dptr(sinv);
    if (!rc) rc = o->cast(dptr(xc), xc->dtype, M, K, E4M3, sx, dptr(xq), need_xt ? dptr(xt) : NULL, sx + 2, si, NULL, dev);
    if (!rc) rc = o->cast(dptr(wc), wc->dtype, N, K, E4M3, sw, dptr(wq), need_wt ? dptr(wt) : NULL, sw + 2, si + SINV_W,
                          NULL, dev);
    /* x's and w's slots are adjacent: one launch updates both */
    if (!rc) rc = o->update(sx, 2, WF__FP8_SLOT_FLOATS, WF__FP8_HISTORY_LEN, E4M3, WF__FP8_MARGIN, dev);
    if (!rc) rc = o->gemm(M, N, K, dptr(xq), E4M3, si, dptr(wq), E4M3, si + SINV_W, dptr(yy), WF_BF16, 0.0f,
                                    bb ? dptr(bb) : NULL, 1, dev);
    if (!rc) y = yy;
    if (y) {
        wf_node *nd = wf__record("Fp8LinearBackward", fp8_linear_backward, y, nin, ins);
        if (nd) {
            nd->i[0] = M, nd->i[1] = N, nd->i[2] = K;
            nd->ctx = wf_tensor_retain(st);
            nd->release = fp8_release;
        }
        y = wf__recorded(y, nd, nd && wf__save(nd, xt) >= 0 && wf__save(nd, wt) >= 0 && wf__save(nd, sinv) >= 0, nin, ins);
    }
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf__fp8_linear(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor **state) {
    WF__NAMED("wf_linear", wf_tensor *, !r, fp8_linear_body(x, w, b, state));
}
