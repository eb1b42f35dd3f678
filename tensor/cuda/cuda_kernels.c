/* tensor/cuda/cuda_kernels.c: the CUDA kernel table (C side of the CUDA backend).
 *
 * Turns wf_tensor handles into wf_cuda_view descriptors and calls the launchers of the .cu
 * files (see cuda_api.h for why the backend is split this way). Also the public API of
 * include/weft/cuda.h. */
#include "../tensor_impl.h"
#include "cuda_api.h"
#include "weft/cuda.h"

#include <string.h>

/* The .cu files number ops with cuda_api.h's WFC_* names. Both enums are generated from
 * tensor/ops.def, so they agree by construction; these checks guard against a hand edit. */
#define WF_UNARY_OP(id, name, cpu, cuda) _Static_assert((int)WFC_U_##id == (int)WF_U_##id, "WFC_U_" #id);
#define WF_BINARY_OP(id, name, cpu, cuda) _Static_assert((int)WFC_B_##id == (int)WF_B_##id, "WFC_B_" #id);
#define WF_REDUCE_OP(id, name, cpu, cuda) _Static_assert((int)WFC_R_##id == (int)WF_R_##id, "WFC_R_" #id);
#include "../ops.def"
_Static_assert((int)WFC_U_COUNT == (int)WF_U_COUNT && (int)WFC_B_COUNT == (int)WF_B_COUNT &&
               (int)WFC_R_COUNT == (int)WF_R_COUNT, "cuda_api.h and tensor_impl.h op counts disagree");
_Static_assert(WF_MAX_DIMS <= WF_CUDA_MAX_DIMS, "wf_cuda_view holds too few dims");

void wf__cuda_set_error(int code, const char *msg) { wf__error(code, "%s", msg); }

static wf_cuda_view view(const wf_tensor *t) {
    wf_cuda_view v;
    memset(&v, 0, sizeof v);
    v.data = (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype);
    v.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) { v.shape[i] = t->shape[i]; v.stride[i] = t->stride[i]; }
    v.dtype = (int)t->dtype;
    return v;
}
#define DEV(t) ((int)(t)->device.index)

/* ---------------------------------------------------------------- memory */

static void *k_alloc(wf_device dev, size_t nbytes) { return wf__cuda_alloc(dev.index, nbytes); }
static void k_free(wf_device dev, void *p, size_t nbytes) { wf__cuda_free(dev.index, p, nbytes); }

static int k_copy(wf_tensor *y, const wf_tensor *x) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_copy(&vy, &vx, DEV(y), DEV(x));
}
static int k_fill(wf_tensor *y, double v) {
    unsigned char elem[8] = { 0 };
    wf__store(elem, y->dtype, v);
    wf_cuda_view vy = view(y);
    return wf__cuda_fill(&vy, elem, DEV(y));
}
static int k_to_host(void *dst, const wf_tensor *x) {
    wf_cuda_view vx = view(x);
    return wf__cuda_to_host(dst, vx.data, (size_t)wf_numel(x) * wf_dtype_size(x->dtype), DEV(x));
}
static int k_from_host(wf_tensor *y, const void *src) {
    wf_cuda_view vy = view(y);
    return wf__cuda_from_host(vy.data, src, (size_t)wf_numel(y) * wf_dtype_size(y->dtype), DEV(y));
}

/* ---------------------------------------------------------------- elementwise */

static int k_unary(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_unary((int)op, &vy, &vx, a, b, DEV(y));
}
static int k_unary_backward(wf_unary_op op, wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x,
                            const wf_tensor *y, double a, double b) {
    wf_cuda_view vgx = view(gx), vgy = view(gy), vx, vy;
    if (x) vx = view(x);
    if (y) vy = view(y);
    return wf__cuda_unary_backward((int)op, &vgx, &vgy, x ? &vx : NULL, y ? &vy : NULL, a, b, DEV(gx));
}
static int k_binary(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b) {
    wf_cuda_view vy = view(y), va = view(a), vb = view(b);
    return wf__cuda_binary((int)op, &vy, &va, &vb, DEV(y));
}
static int k_binary_scalar(wf_binary_op op, wf_tensor *y, const wf_tensor *a, double s, bool reversed) {
    wf_cuda_view vy = view(y), va = view(a);
    return wf__cuda_binary_scalar((int)op, &vy, &va, s, reversed, DEV(y));
}
static int k_where(wf_tensor *y, const wf_tensor *cond, const wf_tensor *a, const wf_tensor *b) {
    wf_cuda_view vy = view(y), vc = view(cond), va = view(a), vb = view(b);
    return wf__cuda_where(&vy, &vc, &va, &vb, DEV(y));
}
static int k_axpy(wf_tensor *a, const wf_tensor *b, double alpha) {
    wf_cuda_view va = view(a), vb = view(b);
    return wf__cuda_axpy(&va, &vb, alpha, DEV(a));
}

/* ---------------------------------------------------------------- reductions */

static int k_reduce(wf_reduce_op op, wf_tensor *y, const wf_tensor *x, uint32_t mask, double p) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_reduce((int)op, &vy, &vx, mask, p, DEV(y));
}
static int k_arg_reduce(bool is_max, wf_tensor *y, const wf_tensor *x, int dim) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_arg_reduce(is_max, &vy, &vx, dim, DEV(y));
}

/* ---------------------------------------------------------------- random */

static int k_rand_uniform(wf_tensor *y, uint64_t seed, uint64_t offset, double lo, double hi) {
    wf_cuda_view vy = view(y);
    return wf__cuda_rand_uniform(&vy, seed, offset, lo, hi, DEV(y));
}
static int k_rand_normal(wf_tensor *y, uint64_t seed, uint64_t offset, double mean, double std) {
    wf_cuda_view vy = view(y);
    return wf__cuda_rand_normal(&vy, seed, offset, mean, std, DEV(y));
}
static int k_rand_int(wf_tensor *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi) {
    wf_cuda_view vy = view(y);
    return wf__cuda_rand_int(&vy, seed, offset, lo, hi, DEV(y));
}
static int k_bernoulli(wf_tensor *y, uint64_t seed, uint64_t offset, const wf_tensor *p_t, double p) {
    wf_cuda_view vy = view(y), vp;
    if (p_t) vp = view(p_t);
    return wf__cuda_bernoulli(&vy, seed, offset, p_t ? &vp : NULL, p, DEV(y));
}

/* ---------------------------------------------------------------- GEMM, softmax */

static int k_gemm(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha,
                  const void *A, int64_t lda, int64_t strideA, const void *B, int64_t ldb, int64_t strideB,
                  double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, wf_device dev) {
    return wf__cuda_gemm((int)dt, transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc,
                         strideC, batch, dev.index);
}
static int k_gemm_epilogue(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                           int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                           void *bgrad, wf_device dev) {
    return wf__cuda_gemm_epilogue((int)dt, transA, transB, m, n, k, A, lda, B, ldb, C, ldc, bias, bgrad, dev.index);
}
static int k_gemm_acc(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                      int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc, wf_device dev) {
    return wf__cuda_gemm_acc((int)dt, transA, transB, m, n, k, A, lda, B, ldb, beta, C, ldc, dev.index);
}
static int k_gemm_gelu(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                       int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, void *aux, int64_t ldaux,
                       const void *bias, void *bgrad, bool backward, wf_device dev) {
    return wf__cuda_gemm_gelu((int)dt, transA, transB, m, n, k, A, lda, B, ldb, C, ldc, aux, ldaux, bias, bgrad,
                              backward, dev.index);
}
static int k_bias_gelu(wf_tensor *y, const wf_tensor *x, const wf_tensor *bias, bool tanh_approx) {
    wf_cuda_view vy = view(y), vx = view(x), vb = view(bias);
    return wf__cuda_bias_gelu(&vy, &vx, &vb, tanh_approx, DEV(y));
}
static int k_bias_gelu_bwd(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x, const wf_tensor *bias,
                           bool tanh_approx) {
    wf_cuda_view vgx = view(gx), vgy = view(gy), vx = view(x), vb = view(bias);
    return wf__cuda_bias_gelu_backward(&vgx, &vgy, &vx, &vb, tanh_approx, DEV(gx));
}
static int k_gelu_bwd_bias(wf_tensor *gx, wf_tensor *gb, const wf_tensor *gy, const wf_tensor *pre, bool tanh_approx) {
    wf_cuda_view vgx = view(gx), vgb = view(gb), vgy = view(gy), vp = view(pre);
    return wf__cuda_gelu_backward_bias(&vgx, &vgb, &vgy, &vp, tanh_approx, DEV(gx));
}
static int k_softmax(wf_tensor *y, const wf_tensor *x, bool log, double scale, double out_scale, int64_t causal) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_softmax(&vy, &vx, log, scale, out_scale, causal, DEV(y));
}
static int k_softmax_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *y, bool log, double scale,
                              double out_scale) {
    wf_cuda_view vgx = view(gx), vgy = view(gy), vy = view(y);
    return wf__cuda_softmax_backward(&vgx, &vgy, &vy, log, scale, out_scale, DEV(gx));
}

/* ---------------------------------------------------------------- indexing */

static int k_gather(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index) {
    wf_cuda_view vy = view(y), vx = view(x), vi = view(index);
    return wf__cuda_gather(&vy, &vx, dim, &vi, DEV(y));
}
static int k_scatter_add(wf_tensor *y, int dim, const wf_tensor *index, const wf_tensor *src) {
    wf_cuda_view vy = view(y), vi = view(index), vs = view(src);
    return wf__cuda_scatter_add(&vy, dim, &vi, &vs, DEV(y));
}
static int k_index_select(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index) {
    wf_cuda_view vy = view(y), vx = view(x), vi = view(index);
    return wf__cuda_index_select(&vy, &vx, dim, &vi, DEV(y));
}
static int k_index_add(wf_tensor *gx, int dim, const wf_tensor *index, const wf_tensor *gy) {
    wf_cuda_view vgx = view(gx), vi = view(index), vgy = view(gy);
    return wf__cuda_index_add(&vgx, dim, &vi, &vgy, DEV(gx));
}

/* ---------------------------------------------------------------- conv helpers, pooling */

static int k_im2col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh,
                    int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    return wf__cuda_im2col(col, x, (int)dt, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dev.index);
}
static int k_col2im(void *x, const void *col, wf_dtype dt, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh,
                    int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    return wf__cuda_col2im(x, col, (int)dt, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dev.index);
}
static int k_im2col_batch(void *col, const void *x, wf_dtype dt, int64_t N, int64_t C, int64_t H, int64_t W, int kh,
                          int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    return wf__cuda_im2col_batch(col, x, (int)dt, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dev.index);
}
static int k_col2im_batch(void *x, const void *col, const void *bias, wf_dtype dt, int64_t N, int64_t C, int64_t H,
                          int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,
                          int64_t ow, wf_device dev) {
    return wf__cuda_col2im_batch(x, col, bias, (int)dt, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow,
                                 dev.index);
}
static int k_max_pool2d(wf_tensor *y, wf_tensor *argmax, const wf_tensor *x, const int k[2], const int s[2],
                        const int p[2], const int d[2]) {
    wf_cuda_view vy = view(y), vx = view(x), va;
    if (argmax) va = view(argmax);
    return wf__cuda_max_pool2d(&vy, argmax ? &va : NULL, &vx, k, s, p, d, DEV(y));
}
static int k_max_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *argmax) {
    wf_cuda_view vgx = view(gx), vgy = view(gy), va = view(argmax);
    return wf__cuda_max_pool2d_backward(&vgx, &vgy, &va, DEV(gx));
}
static int k_avg_pool2d(wf_tensor *y, const wf_tensor *x, const int k[2], const int s[2], const int p[2],
                        bool count_include_pad) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_avg_pool2d(&vy, &vx, k, s, p, count_include_pad, DEV(y));
}
static int k_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const int k[2], const int s[2], const int p[2],
                                 bool count_include_pad) {
    wf_cuda_view vgx = view(gx), vgy = view(gy);
    return wf__cuda_avg_pool2d_backward(&vgx, &vgy, k, s, p, count_include_pad, DEV(gx));
}

static int k_adaptive_avg_pool2d(wf_tensor *y, const wf_tensor *x) {
    wf_cuda_view vy = view(y), vx = view(x);
    return wf__cuda_adaptive_avg_pool2d(&vy, &vx, DEV(y));
}
static int k_adaptive_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy) {
    wf_cuda_view vgx = view(gx), vgy = view(gy);
    return wf__cuda_adaptive_avg_pool2d_backward(&vgx, &vgy, DEV(gx));
}

/* ---------------------------------------------------------------- fused */

static int k_sdpa_fwd(wf_tensor *o, wf_tensor *lse, const wf_tensor *q, const wf_tensor *k, const wf_tensor *v,
                      double scale, bool causal) {
    wf_cuda_view vo = view(o), vl = view(lse), vq = view(q), vk = view(k), vv = view(v);
    return wf__cuda_sdpa_forward(&vo, &vl, &vq, &vk, &vv, scale, causal, DEV(o));
}
static int k_sdpa_bwd(wf_tensor *dq, wf_tensor *dk, wf_tensor *dv, const wf_tensor *dout, const wf_tensor *q,
                      const wf_tensor *k, const wf_tensor *v, const wf_tensor *o, const wf_tensor *lse, double scale,
                      bool causal) {
    wf_cuda_view vdq = view(dq), vdk = view(dk), vdv = view(dv), vdo = view(dout), vq = view(q), vk = view(k),
                 vv = view(v), vo = view(o), vl = view(lse);
    return wf__cuda_sdpa_backward(&vdq, &vdk, &vdv, &vdo, &vq, &vk, &vv, &vo, &vl, scale, causal, DEV(q));
}
static int k_layer_norm_fwd(wf_tensor *y, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                            const wf_tensor *weight, const wf_tensor *bias, double eps) {
    wf_cuda_view vy = view(y), vm = view(mean), vr = view(rstd), vx = view(x), vw, vb;
    if (weight) vw = view(weight);
    if (bias) vb = view(bias);
    return wf__cuda_layer_norm_forward(&vy, &vm, &vr, &vx, weight ? &vw : NULL, bias ? &vb : NULL, eps, DEV(y));
}
static int k_layer_norm_bwd(wf_tensor *gx, wf_tensor *gweight, wf_tensor *gbias, const wf_tensor *gy,
                            const wf_tensor *x, const wf_tensor *mean, const wf_tensor *rstd, const wf_tensor *weight) {
    wf_cuda_view vgx, vgw, vgb, vgy = view(gy), vx = view(x), vm = view(mean), vr = view(rstd), vw;
    if (gx) vgx = view(gx);
    if (gweight) vgw = view(gweight);
    if (gbias) vgb = view(gbias);
    if (weight) vw = view(weight);
    return wf__cuda_layer_norm_backward(gx ? &vgx : NULL, gweight ? &vgw : NULL, gbias ? &vgb : NULL, &vgy, &vx, &vm,
                                        &vr, weight ? &vw : NULL, DEV(x));
}
static int k_add_layer_norm_fwd(wf_tensor *y, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                                const wf_tensor *r, const wf_tensor *r_bias, const wf_tensor *weight,
                                const wf_tensor *bias, double eps) {
    wf_cuda_view vy = view(y), vs = view(s), vm = view(mean), vr = view(rstd), vx = view(x), vres = view(r), vrb, vw, vb;
    if (r_bias) vrb = view(r_bias);
    if (weight) vw = view(weight);
    if (bias) vb = view(bias);
    return wf__cuda_add_layer_norm_forward(&vy, &vs, &vm, &vr, &vx, &vres, r_bias ? &vrb : NULL, weight ? &vw : NULL,
                                           bias ? &vb : NULL, eps, DEV(y));
}
static int k_add_layer_norm_bwd(wf_tensor *gx, wf_tensor *gr, wf_tensor *gweight, wf_tensor *gbias, wf_tensor *grbias,
                                const wf_tensor *gy, const wf_tensor *gs, const wf_tensor *s, const wf_tensor *mean,
                                const wf_tensor *rstd, const wf_tensor *weight) {
    wf_cuda_view vgx, vgr, vgw, vgb, vgrb, vgy = view(gy), vgs, vs = view(s), vm = view(mean), vr = view(rstd), vw;
    if (gx) vgx = view(gx);
    if (gr) vgr = view(gr);
    if (gweight) vgw = view(gweight);
    if (gbias) vgb = view(gbias);
    if (grbias) vgrb = view(grbias);
    if (gs) vgs = view(gs);
    if (weight) vw = view(weight);
    return wf__cuda_add_layer_norm_backward(gx ? &vgx : NULL, gr ? &vgr : NULL, gweight ? &vgw : NULL,
                                            gbias ? &vgb : NULL, grbias ? &vgrb : NULL, &vgy, gs ? &vgs : NULL, &vs,
                                            &vm, &vr, weight ? &vw : NULL, DEV(s));
}
static int k_xent_fwd(wf_tensor *loss, wf_tensor *lse, const wf_tensor *logits, const wf_tensor *target,
                      int64_t ignore_index, double label_smoothing) {
    wf_cuda_view vl = view(loss), vs, vx = view(logits), vt = view(target);
    if (lse) vs = view(lse);
    return wf__cuda_softmax_xent_forward(&vl, lse ? &vs : NULL, &vx, &vt, ignore_index, label_smoothing, DEV(logits));
}
static int k_xent_bwd(wf_tensor *glogits, const wf_tensor *gloss, double scale, const wf_tensor *logits,
                      const wf_tensor *target, const wf_tensor *lse, int64_t ignore_index, double label_smoothing) {
    wf_cuda_view vg = view(glogits), vgl = view(gloss), vx = view(logits), vt = view(target), vs;
    if (lse) vs = view(lse);
    return wf__cuda_softmax_xent_backward(&vg, &vgl, scale, &vx, &vt, lse ? &vs : NULL, ignore_index, label_smoothing,
                                          DEV(logits));
}

/* the cuda column of tensor/ops.def */
static const wf_op_support cuda_support = {
#define WF_UNARY_OP(id, name, cpu, cuda) [WF_U_##id] = (cuda),
    .unary = {
#include "../ops.def"
    },
#define WF_BINARY_OP(id, name, cpu, cuda) [WF_B_##id] = (cuda),
    .binary = {
#include "../ops.def"
    },
#define WF_REDUCE_OP(id, name, cpu, cuda) [WF_R_##id] = (cuda),
    .reduce = {
#include "../ops.def"
    },
#define WF_KERNEL_OP(id, name, field, cpu, cuda) [WF_K_##id] = (cuda),
    .kernel = {
#include "../ops.def"
    },
    /* dq (attention) and the weight/bias partials (layer norm) are summed with atomics */
    .kernel_nondeterministic = 1ull << WF_K_SDPA_BWD | 1ull << WF_K_LAYER_NORM_BWD | 1ull << WF_K_ADD_LAYER_NORM_BWD,
};

const wf_kernels wf__cuda_kernels = {
    .name = "cuda",
    .alloc = k_alloc,
    .free = k_free,
    .copy = k_copy,
    .fill = k_fill,
    .to_host = k_to_host,
    .from_host = k_from_host,
    .unary = k_unary,
    .unary_backward = k_unary_backward,
    .binary = k_binary,
    .binary_widens = true,   /* wf__cuda_binary loads each operand in its own dtype */
    .binary_scalar = k_binary_scalar,
    .where = k_where,
    .axpy = k_axpy,
    .reduce = k_reduce,
    .arg_reduce = k_arg_reduce,
    .rand_uniform = k_rand_uniform,
    .rand_normal = k_rand_normal,
    .rand_int = k_rand_int,
    .bernoulli = k_bernoulli,
    .gemm = k_gemm,
    .softmax = k_softmax,
    .softmax_backward = k_softmax_backward,
    .gather = k_gather,
    .scatter_add = k_scatter_add,
    .index_select = k_index_select,
    .index_add = k_index_add,
    .im2col = k_im2col,
    .col2im = k_col2im,
    .im2col_batch = k_im2col_batch,
    .col2im_batch = k_col2im_batch,
    .max_pool2d = k_max_pool2d,
    .max_pool2d_backward = k_max_pool2d_backward,
    .avg_pool2d = k_avg_pool2d,
    .avg_pool2d_backward = k_avg_pool2d_backward,
    .adaptive_avg_pool2d = k_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = k_adaptive_avg_pool2d_backward,
    .sdpa_fwd = k_sdpa_fwd,
    .sdpa_bwd = k_sdpa_bwd,
    .layer_norm_fwd = k_layer_norm_fwd,
    .layer_norm_bwd = k_layer_norm_bwd,
    .add_layer_norm_fwd = k_add_layer_norm_fwd,
    .add_layer_norm_bwd = k_add_layer_norm_bwd,
    .xent_fwd = k_xent_fwd,
    .xent_bwd = k_xent_bwd,
    .gemm_epilogue = k_gemm_epilogue,
    .gemm_acc = k_gemm_acc,
    .gemm_gelu = k_gemm_gelu,
    .bias_gelu = k_bias_gelu,
    .bias_gelu_bwd = k_bias_gelu_bwd,
    .gelu_bwd_bias = k_gelu_bwd_bias,
    .support = &cuda_support,
};

/* ---------------------------------------------------------------- public API (weft/cuda.h) */

int wf_cuda_memory_stats(int device, wf_memory_stats *out) {
    if (!out) return wf__error(WF_ENULL, "wf_cuda_memory_stats: NULL output");
    return wf__cuda_memory_stats(device, out);
}
void wf_cuda_empty_cache(void) { wf__cuda_empty_cache(); }
int wf_cuda_synchronize(int device) {
    int n = wf_cuda_device_count();
    if (device < 0 || device >= n)
        return wf__error(WF_EDEVICE, "wf_cuda_synchronize: cuda:%d is not available (%d CUDA device(s) found)", device,
                         n < 0 ? 0 : n);
    return wf__cuda_sync(device);
}
void wf_cuda_set_tf32(bool enabled) { wf__cuda_set_tf32(enabled); }
bool wf_cuda_get_tf32(void) { return wf__cuda_get_tf32() != 0; }
