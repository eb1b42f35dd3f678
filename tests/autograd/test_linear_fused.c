/* tests/autograd/test_linear_fused.c: wf_linear_gelu, wf_fused_mlp and wf_linear_cross_entropy
 * (autograd/fn_linear_fused.c) on a backend with the fused kernels they use.
 *
 * Only CUDA has bias_gelu and xent_fwd/xent_bwd, so a test table stands in for CUDA
 * (wf__set_cuda_kernels_for_test): the CPU's kernels plus naive f32 versions of those four,
 * written below. The same calls on the CPU compose, so each check compares the fused route
 * (kernels called, node recorded, fused backward) against the composed one.
 * Also: the automatic chunk of the cross-entropy, and the accumulating GEMM (gemm_acc) its
 * backward sums the weight and bias gradients with. */
#include "test_util.h"

#include "autograd/fn_linear_fused.h"
#include "tensor/ops_raw.h"
#include "tensor/tensor_impl.h"

static int gelu_calls, gelu_bwd_calls, xent_calls, xent_bwd_calls, gemm_acc_calls, gemm_calls;

static int counting_gemm(wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k, double alpha, const void *A,
                         int64_t lda, int64_t sA, const void *B, int64_t ldb, int64_t sB, double beta, void *C, int64_t ldc,
                         int64_t sC, int64_t batch, wf_device dev) {
    gemm_calls++;
    return wf__cpu_kernels.gemm(dt, tA, tB, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch, dev);
}

static int counting_gemm_acc(wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                             const void *B, int64_t ldb, double beta, void *C, int64_t ldc, wf_device dev) {
    gemm_acc_calls++;
    return wf__cpu_kernels.gemm_acc(dt, tA, tB, m, n, k, A, lda, B, ldb, beta, C, ldc, dev);
}

static double gelu_ref(double v, bool t) {
    if (!t) return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
}
static double gelu_grad_ref(double v, bool t) {
    if (!t) return 0.5 * (1 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
    double k = sqrt(2 / M_PI), th = tanh(k * (v + 0.044715 * v * v * v));
    return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * k * (1 + 3 * 0.044715 * v * v);
}

static int fake_bias_gelu(wf_tensor *y, const wf_tensor *x, const wf_tensor *b, bool t) {
    gelu_calls++;
    int64_t n = wf_numel(x), D = b->shape[0];
    const float *xp = (const float *)wf__host_ptr(x), *bp = (const float *)wf__host_ptr(b);
    for (int64_t i = 0; i < n; i++) ((float *)wf__host_ptr(y))[i] = (float)gelu_ref((double)xp[i] + bp[i % D], t);
    return 0;
}
static int fake_bias_gelu_bwd(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x, const wf_tensor *b, bool t) {
    gelu_bwd_calls++;
    int64_t n = wf_numel(x), D = b->shape[0];
    const float *xp = (const float *)wf__host_ptr(x), *bp = (const float *)wf__host_ptr(b);
    const float *gp = (const float *)wf__host_ptr(gy);
    for (int64_t i = 0; i < n; i++)
        ((float *)wf__host_ptr(gx))[i] = (float)(gp[i] * gelu_grad_ref((double)xp[i] + bp[i % D], t));
    return 0;
}

/* rows of contiguous f32 logits [N, C]; loss with label smoothing ls, as PyTorch */
static int fake_xent_fwd(wf_tensor *loss, wf_tensor *lse, const wf_tensor *logits, const wf_tensor *target,
                         int64_t ignore, double ls) {
    xent_calls++;
    int64_t N = logits->shape[0], C = logits->shape[1];
    const float *xp = (const float *)wf__host_ptr(logits);
    const int64_t *tp = (const int64_t *)wf__host_ptr(target);
    for (int64_t n = 0; n < N; n++) {
        double mx = -INFINITY, s = 0, sum = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, xp[n * C + c]), sum += xp[n * C + c];
        for (int64_t c = 0; c < C; c++) s += exp(xp[n * C + c] - mx);
        double l = mx + log(s);
        if (lse) ((float *)wf__host_ptr(lse))[n] = (float)l;
        double v = tp[n] == ignore ? 0 : (1 - ls) * (l - xp[n * C + tp[n]]) + ls * (l - sum / (double)C);
        ((float *)wf__host_ptr(loss))[n] = (float)v;
    }
    return 0;
}
static int fake_xent_bwd(wf_tensor *glogits, const wf_tensor *gloss, double scale, const wf_tensor *logits,
                         const wf_tensor *target, const wf_tensor *lse, int64_t ignore, double ls) {
    xent_bwd_calls++;
    int64_t N = logits->shape[0], C = logits->shape[1];
    const float *xp = (const float *)wf__host_ptr(logits), *lp = (const float *)wf__host_ptr(lse);
    const int64_t *tp = (const int64_t *)wf__host_ptr(target);
    int64_t gs = gloss->ndim && gloss->shape[0] == N ? gloss->stride[0] : 0;
    for (int64_t n = 0; n < N; n++) {
        double g = ((const float *)wf__host_ptr(gloss))[n * gs] * scale;
        for (int64_t c = 0; c < C; c++) {
            double p = exp(xp[n * C + c] - lp[n]) - (1 - ls) * (c == tp[n]) - ls / (double)C;
            ((float *)wf__host_ptr(glogits))[n * C + c] = tp[n] == ignore ? 0.0f : (float)(g * p);
        }
    }
    return 0;
}

static wf_op_support fake_support;
static wf_kernels fake;

static void fake_setup(void) {
    fake_support = *wf__cpu_kernels.support;
    uint16_t f32 = (uint16_t)WF_DTM(WF_F32);
    fake_support.kernel[WF_K_BIAS_GELU] = fake_support.kernel[WF_K_BIAS_GELU_BWD] = f32;
    fake_support.kernel[WF_K_XENT_FWD] = fake_support.kernel[WF_K_XENT_BWD] = f32;
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.bias_gelu = fake_bias_gelu;
    fake.bias_gelu_bwd = fake_bias_gelu_bwd;
    fake.xent_fwd = fake_xent_fwd;
    fake.xent_bwd = fake_xent_bwd;
    fake.gemm_acc = counting_gemm_acc;
    fake.gemm = counting_gemm;
    fake.support = &fake_support;
    gelu_calls = gelu_bwd_calls = xent_calls = xent_bwd_calls = gemm_acc_calls = gemm_calls = 0;
    wf__set_cuda_kernels_for_test(&fake);
}
static void fake_teardown(void) { wf__set_cuda_kernels_for_test(NULL); }

START_TEST(linear_gelu_fused_matches_composed) {
    for (int t = 0; t < 2; t++) {
        wf_scope_begin();
        gelu_calls = gelu_bwd_calls = 0;
        wf_manual_seed(7);
        wf_tensor *x0 = wf_randn(WF_SHAPE(2, 3, 6), WF_F32), *w0 = wf_randn(WF_SHAPE(5, 6), WF_F32);
        wf_tensor *b0 = wf_randn(WF_SHAPE(5), WF_F32), *gy = wf_randn(WF_SHAPE(2, 3, 5), WF_F32);
        wf_tensor *y[2], *gx[2], *gw[2], *gb[2];
        for (int d = 0; d < 2; d++) {
            wf_device dev = d ? WF_CUDA(0) : WF_CPU;
            wf_tensor *x = tt_leaf_on(x0, dev), *w = tt_leaf_on(w0, dev), *b = tt_leaf_on(b0, dev);
            y[d] = wf_linear_gelu(x, w, b, t ? WF_GELU_TANH : WF_GELU_NONE);
            ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
            ck_assert_int_eq(wf_backward(y[d], wf_to_device(gy, dev), false), 0);
            gx[d] = wf_grad(x), gw[d] = wf_grad(w), gb[d] = wf_grad(b);
        }
        /* the fake-CUDA call took the epilogue both ways, the CPU one composed */
        ck_assert_int_eq(gelu_calls, 1);
        ck_assert_int_eq(gelu_bwd_calls, 1);
        ck_assert_str_eq(wf_grad_fn_name(y[1]), "LinearGeluBackward");
        ck_assert_str_ne(wf_grad_fn_name(y[0]), "LinearGeluBackward");
        tt_assert_close(y[1], y[0], 1e-5);
        tt_assert_close(gx[1], gx[0], 1e-4);
        tt_assert_close(gw[1], gw[0], 1e-4);
        tt_assert_close(gb[1], gb[0], 1e-4);
        wf_scope_end();
    }
}
END_TEST

START_TEST(linear_gelu_without_bias_composes) {
    wf_scope_begin();
    wf_tensor *x = tt_leaf_on(wf_randn(WF_SHAPE(3, 6), WF_F32), WF_CUDA(0));
    wf_tensor *w = tt_leaf_on(wf_randn(WF_SHAPE(5, 6), WF_F32), WF_CUDA(0));
    wf_tensor *y = wf_linear_gelu(x, w, NULL, WF_GELU_NONE);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(gelu_calls, 0);   /* no bias to fuse: Linear then GELU */
    ck_assert_str_ne(wf_grad_fn_name(y), "LinearGeluBackward");
    wf_scope_end();
}
END_TEST

/* wf_fused_mlp against linear(gelu(linear)): the fake-CUDA route (bias + GELU kernels, the
 * GELU made again in backward: two forward calls) and the CPU one (plain GELU recomputed),
 * with and without biases, both GELU forms; values and all five gradients. */
START_TEST(fused_mlp_matches_composed) {
    for (int c = 0; c < 4; c++) {
        bool tanh = c & 1, bias = c < 2;
        wf_gelu_approx ap = tanh ? WF_GELU_TANH : WF_GELU_NONE;
        wf_scope_begin();
        wf_manual_seed(11 + c);
        wf_tensor *x0 = wf_randn(WF_SHAPE(2, 3, 6), WF_F32), *w10 = wf_randn(WF_SHAPE(8, 6), WF_F32);
        wf_tensor *b10 = wf_randn(WF_SHAPE(8), WF_F32), *w20 = wf_randn(WF_SHAPE(5, 8), WF_F32);
        wf_tensor *b20 = wf_randn(WF_SHAPE(5), WF_F32), *gy = wf_randn(WF_SHAPE(2, 3, 5), WF_F32);
        for (int d = 0; d < 2; d++) {
            gelu_calls = gelu_bwd_calls = 0;
            wf_device dev = d ? WF_CUDA(0) : WF_CPU;
            wf_tensor *in[5], *ref[5];
            wf_tensor *src[5] = { x0, w10, b10, w20, b20 };
            for (int i = 0; i < 5; i++) in[i] = tt_leaf_on(src[i], dev), ref[i] = tt_leaf_on(src[i], dev);
            wf_tensor *b1 = bias ? in[2] : NULL, *b2 = bias ? in[4] : NULL;
            wf_tensor *y = wf_fused_mlp(in[0], in[1], b1, in[3], b2, ap);
            ck_assert_msg(y != NULL, "%s", wf_error_message());
            ck_assert_str_eq(wf_grad_fn_name(y), "FusedMlpBackward");
            wf_tensor *yr = wf_linear(wf_gelu(wf_linear(ref[0], ref[1], bias ? ref[2] : NULL), ap), ref[3], bias ? ref[4] : NULL);
            ck_assert_int_eq(wf_backward(y, wf_to_device(gy, dev), false), 0);
            ck_assert_int_eq(wf_backward(yr, wf_to_device(gy, dev), false), 0);
            /* the bias + GELU kernel where it applies: once forward, once more to remake g, once backward */
            ck_assert_int_eq(gelu_calls, d && bias ? 2 : 0);
            ck_assert_int_eq(gelu_bwd_calls, d && bias ? 1 : 0);
            tt_assert_close(y, yr, 1e-5);
            for (int i = 0; i < 5; i++) {
                if (!bias && (i == 2 || i == 4)) {
                    ck_assert_ptr_null(wf_grad(in[i]));
                    continue;
                }
                ck_assert_msg(wf_grad(in[i]) != NULL, "case %d device %d: input %d has no gradient", c, d, i);
                tt_assert_close(wf_grad(in[i]), wf_grad(ref[i]), 1e-4);
            }
        }
        wf_scope_end();
    }
}
END_TEST

static wf_tensor *mlp_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    return wf_fused_mlp(in[0], in[1], in[2], in[3], in[4], *(const wf_gelu_approx *)ud);
}

/* finite differences on the CPU (f64), both GELU forms */
START_TEST(fused_mlp_gradcheck) {
    for (int t = 0; t < 2; t++) {
        wf_scope_begin();
        wf_manual_seed(5);
        wf_tensor *in[5] = { wf_randn(WF_SHAPE(3, 4), WF_F64), wf_randn(WF_SHAPE(6, 4), WF_F64), wf_randn(WF_SHAPE(6), WF_F64),
                             wf_randn(WF_SHAPE(2, 6), WF_F64), wf_randn(WF_SHAPE(2), WF_F64) };
        for (int i = 0; i < 5; i++) wf_set_requires_grad(in[i], true);
        wf_gelu_approx ap = t ? WF_GELU_TANH : WF_GELU_NONE;
        ck_assert_msg(wf_gradcheck(mlp_fn, in, 5, &ap, 1e-6, 1e-6, 1e-4) == 0, "%s", wf_error_message());
        wf_scope_end();
    }
}
END_TEST

/* What it is for: held for backward, the MLP keeps its GELU's input but not its output, so
 * between forward and backward it holds rows * hidden elements less than the composed ops. */
START_TEST(fused_mlp_keeps_less) {
    const int64_t rows = 64, in = 16, hid = 256, out = 16;
    size_t held[2];
    for (int f = 0; f < 2; f++) {
        wf_scope_begin();
        wf_manual_seed(2);
        wf_tensor *x = tt_leaf_on(wf_randn(WF_SHAPE(rows, in), WF_F64), WF_CPU);
        wf_tensor *w1 = tt_leaf_on(wf_randn(WF_SHAPE(hid, in), WF_F64), WF_CPU), *b1 = tt_leaf_on(wf_randn(WF_SHAPE(hid), WF_F64), WF_CPU);
        wf_tensor *w2 = tt_leaf_on(wf_randn(WF_SHAPE(out, hid), WF_F64), WF_CPU), *b2 = tt_leaf_on(wf_randn(WF_SHAPE(out), WF_F64), WF_CPU);
        wf_memory_stats m0, m1;
        wf_memory_stats_get(&m0);
        wf_tensor *y = f ? wf_fused_mlp(x, w1, b1, w2, b2, WF_GELU_NONE) : wf_linear(wf_gelu(wf_linear(x, w1, b1), WF_GELU_NONE), w2, b2);
        ck_assert_ptr_nonnull(y);
        wf_memory_stats_get(&m1);
        held[f] = m1.allocated - m0.allocated;
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        wf_scope_end();
    }
    size_t g = (size_t)(rows * hid) * sizeof(double);
    ck_assert_msg(held[0] >= held[1] + g, "composed holds %zu bytes, fused %zu: the GELU output (%zu) is still kept",
                  held[0], held[1], g);
}
END_TEST

START_TEST(fused_mlp_bad_inputs) {
    wf_scope_begin();
    wf_tensor *x = wf_ones(WF_SHAPE(2, 4), WF_F32), *w1 = wf_ones(WF_SHAPE(6, 4), WF_F32), *w2 = wf_ones(WF_SHAPE(3, 6), WF_F32);
    ck_assert_ptr_null(wf_fused_mlp(x, w1, NULL, w2, NULL, (wf_gelu_approx)7));
    ck_assert_error(WF_EINVAL, "wf_fused_mlp: approximate must be");
    ck_assert_ptr_null(wf_fused_mlp(x, w1, NULL, NULL, NULL, WF_GELU_NONE));
    ck_assert_error(WF_ENULL, "wf_fused_mlp");
    ck_assert_ptr_null(wf_fused_mlp(x, w1, NULL, wf_ones(WF_SHAPE(3, 5), WF_F32), NULL, WF_GELU_NONE));
    ck_assert_error(WF_ESHAPE, "in_features differ (6 vs 5)");
    ck_assert_ptr_null(wf_fused_mlp(x, w1, wf_ones(WF_SHAPE(5), WF_F32), w2, NULL, WF_GELU_NONE));
    ck_assert_error(WF_ESHAPE, "bias must be [6]");
    ck_assert_ptr_null(wf_fused_mlp(x, w1, NULL, w2, wf_ones(WF_SHAPE(3), WF_F64), WF_GELU_NONE));
    ck_assert_error(WF_EDTYPE, "wf_fused_mlp");
    wf_scope_end();
}
END_TEST

START_TEST(linear_xent_fused_chunks_match_composed) {
    const wf_reduction reds[3] = { WF_REDUCTION_MEAN, WF_REDUCTION_SUM, WF_REDUCTION_NONE };
    for (int r = 0; r < 3; r++) {
        wf_scope_begin();
        xent_calls = xent_bwd_calls = gemm_acc_calls = gemm_calls = 0;
        wf_manual_seed(5);
        wf_tensor *h0 = wf_randn(WF_SHAPE(5, 4), WF_F32), *w0 = wf_randn(WF_SHAPE(7, 4), WF_F32);
        wf_tensor *b0 = wf_randn(WF_SHAPE(7), WF_F32);
        wf_tensor *t0 = wf_from_data((int64_t[]){ 1, 6, -100, 0, 3 }, WF_SHAPE(5), WF_I64);
        wf_cross_entropy_opts o = { .label_smoothing = 0.1, .reduction = reds[r] };
        wf_tensor *y[2], *gh[2], *gw[2], *gb[2];
        for (int d = 0; d < 2; d++) {
            wf_device dev = d ? WF_CUDA(0) : WF_CPU;
            wf_tensor *h = tt_leaf_on(h0, dev), *w = tt_leaf_on(w0, dev), *b = tt_leaf_on(b0, dev);
            y[d] = wf_linear_cross_entropy(h, w, b, wf_to_device(t0, dev), &o, 2);
            ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
            ck_assert_int_eq(wf_backward(wf_sum_all(y[d]), NULL, false), 0);
            gh[d] = wf_grad(h), gw[d] = wf_grad(w), gb[d] = wf_grad(b);
        }
        ck_assert_int_eq(xent_calls, 3);   /* chunks of 2 rows: 2 + 2 + 1, each through the kernels */
        ck_assert_int_eq(xent_bwd_calls, 3);
        ck_assert_int_eq(gemm_acc_calls, 6);   /* the weight and the bias gradient of each chunk summed by the GEMM */
        /* each chunk's logits and its dh rows: a scalar loss makes its gradients in the forward,
         * from the logits it has (3 + 3); 'none' makes the logits again in the backward (3 + 3 + 3) */
        ck_assert_int_eq(gemm_calls, reds[r] == WF_REDUCTION_NONE ? 9 : 6);
        ck_assert_str_eq(wf_grad_fn_name(y[1]), "LinearCrossEntropyBackward");
        tt_assert_close(y[1], y[0], 1e-5);
        tt_assert_close(gh[1], gh[0], 1e-5);
        tt_assert_close(gw[1], gw[0], 1e-5);
        tt_assert_close(gb[1], gb[0], 1e-5);
        wf_scope_end();
    }
}
END_TEST

/* reduction 'none' saves h for its backward: changing it in place before the backward is an
 * error, not a wrong gradient. A scalar loss made its gradients in the forward and saves no
 * input: the change comes too late to matter, and the gradients are those of the forward's h. */
START_TEST(linear_xent_refuses_modified_input) {
    wf_scope_begin();
    wf_manual_seed(9);
    wf_tensor *h0 = wf_randn(WF_SHAPE(4, 3), WF_F32), *w0 = wf_randn(WF_SHAPE(5, 3), WF_F32);
    wf_tensor *t = wf_to_device(wf_from_data((int64_t[]){ 0, 1, 2, 4 }, WF_SHAPE(4), WF_I64), WF_CUDA(0));
    wf_cross_entropy_opts none = { .reduction = WF_REDUCTION_NONE };
    wf_tensor *gw[2];
    for (int r = 0; r < 3; r++) {
        wf_tensor *leaf = tt_leaf_on(h0, WF_CUDA(0)), *w = tt_leaf_on(w0, WF_CUDA(0));
        wf_tensor *h = wf_mul_scalar(leaf, 2.0);
        wf_tensor *y = wf_linear_cross_entropy(h, w, NULL, t, r == 0 ? &none : NULL, 0);
        ck_assert_ptr_nonnull(y);
        if (r < 2) ck_assert_int_eq(wf_add_scalar_(h, 1.0), 0);   /* r 2: unmodified */
        if (r == 0) {
            ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_EAUTOGRAD);
            ck_assert_error(WF_EAUTOGRAD, "LinearCrossEntropyBackward");
            continue;
        }
        ck_assert_int_eq(wf_backward(y, NULL, false), 0);
        gw[r - 1] = wf_grad(w);
    }
    tt_assert_close(gw[0], gw[1], 0);
    wf_scope_end();
}
END_TEST

/* the automatic chunk: as few equal chunks as keep a chunk under 2^28 logits */
START_TEST(linear_xent_chunk_rule) {
    ck_assert_int_eq(wf__lce_chunk_rows(16384, 50304, 0), 4096);   /* GPT-2 124M, 16 x 1024: 4 chunks */
    ck_assert_int_eq(wf__lce_chunk_rows(16384, 50257, 0), 4096);
    ck_assert_int_eq(wf__lce_chunk_rows(5336, 50304, 0), 5336);     /* 5336 rows fit: one chunk */
    ck_assert_int_eq(wf__lce_chunk_rows(5337, 50304, 0), 2669);     /* one more: two equal chunks */
    ck_assert_int_eq(wf__lce_chunk_rows(16009, 50304, 0), 4003);    /* 4 chunks, the last 4000 rows, not 1 */
    ck_assert_int_eq(wf__lce_chunk_rows(5, 7, 0), 5);
    ck_assert_int_eq(wf__lce_chunk_rows(3, ((int64_t)1 << 28) + 1, 0), 1);   /* a row over the budget: one a chunk */
    ck_assert_int_eq(wf__lce_chunk_rows(0, 7, 0), 1);
    ck_assert_int_eq(wf__lce_chunk_rows(16384, 50304, 3), 3);       /* given: kept */
}
END_TEST

/* c += a @ b in f32 from bf16 operands: the product is not rounded to bf16 before it is added */
START_TEST(gemm_acc_sums_in_f32) {
    wf_scope_begin();
    const double e = 1.0 + 1.0 / 128;   /* exact in bf16; e * e = 1 + 2^-6 + 2^-14 is not */
    wf_tensor *a = wf_to_dtype(wf_from_data((double[]){ e, 1 }, WF_SHAPE(1, 2), WF_F64), WF_BF16);
    wf_tensor *b = wf_to_dtype(wf_from_data((double[]){ e, 3 }, WF_SHAPE(1, 2), WF_F64), WF_BF16);
    wf_tensor *c = wf_from_data((float[]){ 0.5f, 0, 0, 1 }, WF_SHAPE(2, 2), WF_F32);
    ck_assert_int_eq(wf__matmul_acc_raw_("t", c, wf_t(a), b), 0);   /* [2, 1] @ [1, 2], a read transposed */
    ck_assert_tensor_near(c, ((double[]){ 0.5 + e * e, 3 * e, e, 4 }), 4, 0);
    /* f32 and f64 operands (a transposed view, b a strided slice that is copied) against matmul + add */
    for (int f = 0; f < 2; f++) {
        wf_dtype dt = f ? WF_F64 : WF_F32;
        wf_manual_seed(3);
        wf_tensor *at = wf_randn(WF_SHAPE(3, 5), dt), *bb = wf_randn(WF_SHAPE(3, 8), dt), *c0 = wf_randn(WF_SHAPE(5, 4), dt);
        wf_tensor *bs = wf_slice(bb, 1, 0, 8, 2), *acc = wf_clone(c0);
        ck_assert_int_eq(wf__matmul_acc_raw_("t", acc, wf_t(at), bs), 0);
        ck_assert_int_eq(wf__matmul_acc_raw_("t", acc, wf_t(at), bs), 0);   /* twice: it accumulates */
        wf_tensor *p = wf_matmul(wf_t(at), bs);
        tt_assert_close(acc, wf_add(c0, wf_add(p, p)), f ? 1e-12 : 1e-5);
    }
    /* bad inputs: named errors, c untouched */
    wf_tensor *x = wf_ones(WF_SHAPE(2, 3), WF_F32), *y = wf_ones(WF_SHAPE(3, 4), WF_F32), *acc = wf_zeros(WF_SHAPE(2, 4), WF_F32);
    ck_assert_int_eq(wf__matmul_acc_raw_("t", NULL, x, y), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf__matmul_acc_raw_("t", wf_zeros(WF_SHAPE(2, 4), WF_BF16), wf_to_dtype(x, WF_BF16), wf_to_dtype(y, WF_BF16)),
                     WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "t: the accumulator of a bfloat16 product must be float32, got bfloat16");
    ck_assert_int_eq(wf__matmul_acc_raw_("t", acc, x, wf_to_dtype(y, WF_F64)), WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "dtype mismatch");
    ck_assert_int_eq(wf__matmul_acc_raw_("t", acc, x, x), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "inner dimensions differ (3 vs 2)");
    ck_assert_int_eq(wf__matmul_acc_raw_("t", wf_zeros(WF_SHAPE(2, 5), WF_F32), x, y), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "accumulator [2,5] does not match [2,3] @ [3,4]");
    ck_assert_int_eq(wf__matmul_acc_raw_("t", acc, wf_ones(WF_SHAPE(1, 2, 3), WF_F32), y), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "2-D");
    ck_assert_int_eq(wf__matmul_acc_raw_("t", wf_t(wf_zeros(WF_SHAPE(4, 2), WF_F32)), x, y), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "must be row-major");
    ck_assert_double_eq(wf_item(wf_sum_all(wf_abs(acc))), 0);
    wf_scope_end();
}
END_TEST

/* ---------------------------------------------------------------- gelu_bwd_bias
 * A second stand-in for CUDA: the GELU inside the forward GEMM (gemm_gelu, forward only: the
 * backward epilogue declines, as CUDA's does by default) and the GELU backward that sums the
 * bias gradient (gelu_bwd_bias), no bias_gelu. So wf_linear_gelu (tanh) saves the GELU's whole
 * input (aux) and wf_fused_mlp runs its epilogue (tanh) or composed (erf) mode: every one of
 * them must take gelu_bwd_bias for the bias gradient, and match the CPU's composed gradients. */
static int gemm_gelu_calls, gelu_bias_calls;

static int fake_gemm_gelu(wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                          const void *B, int64_t ldb, void *C, int64_t ldc, void *aux, int64_t ldaux, const void *bias,
                          void *bgrad, bool backward, wf_device dev) {
    (void)bgrad, (void)dev;
    if (backward || dt != WF_F32) return 1;
    gemm_gelu_calls++;
    const float *a = A, *b = B, *bi = bias;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = bi ? bi[j] : 0;
            for (int64_t p = 0; p < k; p++)
                v += (double)(tA ? a[p * lda + i] : a[i * lda + p]) * (tB ? b[j * ldb + p] : b[p * ldb + j]);
            ((float *)aux)[i * ldaux + j] = (float)v;
            ((float *)C)[i * ldc + j] = (float)gelu_ref((float)v, true);
        }
    return 0;
}
static int fake_gelu_bwd_bias(wf_tensor *gx, wf_tensor *gb, const wf_tensor *gy, const wf_tensor *pre, bool t) {
    gelu_bias_calls++;
    int64_t N = gb->shape[0], rows = wf_numel(pre) / N;
    const float *g = (const float *)wf__host_ptr(gy), *x = (const float *)wf__host_ptr(pre);
    float *o = (float *)wf__host_ptr(gx), *ob = (float *)wf__host_ptr(gb);
    for (int64_t c = 0; c < N; c++) ob[c] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < N; c++) {
            o[r * N + c] = (float)(g[r * N + c] * gelu_grad_ref(x[r * N + c], t));
            ob[c] += o[r * N + c];
        }
    return 0;
}

static void fake_bias_setup(void) {
    fake_support = *wf__cpu_kernels.support;
    fake_support.kernel[WF_K_GEMM_GELU] = fake_support.kernel[WF_K_GELU_BWD_BIAS] = (uint16_t)WF_DTM(WF_F32);
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.gemm_gelu = fake_gemm_gelu;
    fake.gelu_bwd_bias = fake_gelu_bwd_bias;
    fake.support = &fake_support;
    gemm_gelu_calls = gelu_bias_calls = 0;
    wf__set_cuda_kernels_for_test(&fake);
}

/* the fake-CUDA run of f (kernels counted) against the CPU's composed one: values, five gradients */
static void gelu_bias_case(int which, bool bias, int want_gemm_gelu, int want_gelu_bias) {
    wf_scope_begin();
    wf_manual_seed(31 + which);
    wf_tensor *src[5] = { wf_randn(WF_SHAPE(2, 5, 6), WF_F32), wf_randn(WF_SHAPE(8, 6), WF_F32),
                          wf_randn(WF_SHAPE(8), WF_F32), wf_randn(WF_SHAPE(4, 8), WF_F32), wf_randn(WF_SHAPE(4), WF_F32) };
    wf_tensor *gy = wf_randn(WF_SHAPE(2, 5, 4), WF_F32), *y[2], *in[2][5];
    for (int d = 0; d < 2; d++) {
        wf_device dev = d ? WF_CUDA(0) : WF_CPU;
        for (int i = 0; i < 5; i++) in[d][i] = tt_leaf_on(src[i], dev);
        wf_tensor **a = in[d], *b1 = bias ? a[2] : NULL;
        gemm_gelu_calls = gelu_bias_calls = 0;
        y[d] = which == 0   ? wf_linear(wf_linear_gelu(a[0], a[1], b1, WF_GELU_TANH), a[3], a[4])
               : which == 1 ? wf_fused_mlp(a[0], a[1], b1, a[3], a[4], WF_GELU_TANH)
                            : wf_fused_mlp(a[0], a[1], b1, a[3], a[4], WF_GELU_NONE);
        ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_backward(y[d], wf_to_device(gy, dev), false), 0);
        ck_assert_int_eq(gemm_gelu_calls, d ? want_gemm_gelu : 0);
        ck_assert_int_eq(gelu_bias_calls, d ? want_gelu_bias : 0);
    }
    tt_assert_close(y[1], y[0], 1e-5);
    for (int i = 0; i < 5; i++) {
        if (!bias && i == 2) {
            ck_assert_ptr_null(wf_grad(in[1][i]));
            continue;
        }
        ck_assert_msg(wf_grad(in[1][i]) != NULL, "case %d: input %d has no gradient", which, i);
        tt_assert_close(wf_grad(in[1][i]), wf_grad(in[0][i]), 1e-4);
    }
    wf_scope_end();
}

START_TEST(linear_gelu_tanh_takes_gelu_bwd_bias) { gelu_bias_case(0, true, 1, 1); }
END_TEST
START_TEST(fused_mlp_epilogue_takes_gelu_bwd_bias) { gelu_bias_case(1, true, 1, 1); }
END_TEST
START_TEST(fused_mlp_composed_takes_gelu_bwd_bias) { gelu_bias_case(2, true, 0, 1); }
END_TEST
START_TEST(gelu_bwd_bias_not_without_bias) {
    gelu_bias_case(0, false, 1, 0);
    gelu_bias_case(1, false, 1, 0);
    gelu_bias_case(2, false, 0, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("linear_fused");
    TCase *tc = tcase_create("fake_cuda");
    tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
    tcase_add_test(tc, linear_gelu_fused_matches_composed);
    tcase_add_test(tc, linear_gelu_without_bias_composes);
    tcase_add_test(tc, fused_mlp_matches_composed);
    tcase_add_test(tc, linear_xent_fused_chunks_match_composed);
    tcase_add_test(tc, linear_xent_refuses_modified_input);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("fake_cuda_gelu_bias");
    tcase_add_checked_fixture(tb, fake_bias_setup, fake_teardown);
    tcase_add_test(tb, linear_gelu_tanh_takes_gelu_bwd_bias);
    tcase_add_test(tb, fused_mlp_epilogue_takes_gelu_bwd_bias);
    tcase_add_test(tb, fused_mlp_composed_takes_gelu_bwd_bias);
    tcase_add_test(tb, gelu_bwd_bias_not_without_bias);
    suite_add_tcase(s, tb);
    TCase *tr = tcase_create("raw");
    tcase_add_test(tr, linear_xent_chunk_rule);
    tcase_add_test(tr, gemm_acc_sums_in_f32);
    tcase_add_test(tr, fused_mlp_gradcheck);
    tcase_add_test(tr, fused_mlp_keeps_less);
    tcase_add_test(tr, fused_mlp_bad_inputs);
    suite_add_tcase(s, tr);
    return tt_run(s);
}
