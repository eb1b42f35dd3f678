/* tests/autograd/test_fused_fronts.c: the fused front-ends (autograd/fn_fused.c) on a
 * backend that has the fused kernels.
 *
 * Only CUDA has them, so here a test table stands in for CUDA (wf__set_cuda_kernels_for_test):
 * the CPU's kernels plus naive f32 layer-norm and cross-entropy kernels written below. The
 * same calls on the CPU take nn/'s composed path, so each check compares the fused route
 * (raw forward, recorded node, raw backward) with the composed one, values and gradients. */
#include "test_util.h"

#include "tensor/tensor_impl.h"

static int ln_calls, xent_calls;

/* y = (x - mean) * rstd * w + b over the last D of rows = numel / D */
static int fake_ln_fwd(wf_tensor *y, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x, const wf_tensor *w,
                       const wf_tensor *b, double eps) {
    ln_calls++;
    int64_t rows = wf_numel(mean), D = wf_numel(x) / rows;
    const float *xp = (const float *)wf__host_ptr(x), *wp = w ? (const float *)wf__host_ptr(w) : NULL;
    const float *bp = b ? (const float *)wf__host_ptr(b) : NULL;
    float *yp = (float *)wf__host_ptr(y), *mp = (float *)wf__host_ptr(mean), *rp = (float *)wf__host_ptr(rstd);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < D; i++) s += xp[r * D + i];
        double m = s / (double)D;
        for (int64_t i = 0; i < D; i++) ss += (xp[r * D + i] - m) * (xp[r * D + i] - m);
        double rs = 1.0 / sqrt(ss / (double)D + eps);
        mp[r] = (float)m;
        rp[r] = (float)rs;
        for (int64_t i = 0; i < D; i++)
            yp[r * D + i] = (float)((xp[r * D + i] - m) * rs * (wp ? wp[i] : 1.0) + (bp ? bp[i] : 0.0));
    }
    return 0;
}

static int fake_ln_bwd(wf_tensor *gx, wf_tensor *gw, wf_tensor *gb, const wf_tensor *gy, const wf_tensor *x,
                       const wf_tensor *mean, const wf_tensor *rstd, const wf_tensor *w) {
    int64_t rows = wf_numel(mean), D = wf_numel(x) / rows;
    const float *xp = (const float *)wf__host_ptr(x), *gp = (const float *)wf__host_ptr(gy);
    const float *mp = (const float *)wf__host_ptr(mean), *rp = (const float *)wf__host_ptr(rstd);
    const float *wp = w ? (const float *)wf__host_ptr(w) : NULL;
    if (gw) memset(wf__host_ptr(gw), 0, sizeof(float) * (size_t)D);
    if (gb) memset(wf__host_ptr(gb), 0, sizeof(float) * (size_t)D);
    for (int64_t r = 0; r < rows; r++) {
        double s1 = 0, s2 = 0;   /* sum of dxhat, sum of dxhat * xhat */
        for (int64_t i = 0; i < D; i++) {
            double xh = (xp[r * D + i] - mp[r]) * rp[r], g = gp[r * D + i];
            double dxh = g * (wp ? wp[i] : 1.0);
            s1 += dxh;
            s2 += dxh * xh;
            if (gw) ((float *)wf__host_ptr(gw))[i] += (float)(g * xh);
            if (gb) ((float *)wf__host_ptr(gb))[i] += (float)g;
        }
        if (gx)
            for (int64_t i = 0; i < D; i++) {
                double xh = (xp[r * D + i] - mp[r]) * rp[r], dxh = gp[r * D + i] * (wp ? wp[i] : 1.0);
                ((float *)wf__host_ptr(gx))[r * D + i] = (float)(rp[r] * (dxh - s1 / (double)D - xh * s2 / (double)D));
            }
    }
    return 0;
}

static int fake_xent_fwd(wf_tensor *loss, wf_tensor *lse, const wf_tensor *logits, const wf_tensor *target,
                         int64_t ignore, double smoothing) {
    (void)smoothing;
    xent_calls++;
    int64_t N = logits->shape[0], C = logits->shape[1];
    const float *xp = (const float *)wf__host_ptr(logits);
    const int64_t *tp = (const int64_t *)wf__host_ptr(target);
    for (int64_t n = 0; n < N; n++) {
        double mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, xp[n * C + c]);
        for (int64_t c = 0; c < C; c++) s += exp(xp[n * C + c] - mx);
        double l = mx + log(s);
        if (lse) ((float *)wf__host_ptr(lse))[n] = (float)l;
        ((float *)wf__host_ptr(loss))[n] = tp[n] == ignore ? 0.0f : (float)(l - xp[n * C + tp[n]]);
    }
    return 0;
}

static int fake_xent_bwd(wf_tensor *glogits, const wf_tensor *gloss, double scale, const wf_tensor *logits,
                         const wf_tensor *target, const wf_tensor *lse, int64_t ignore, double smoothing) {
    (void)smoothing;
    int64_t N = logits->shape[0], C = logits->shape[1];
    const float *xp = (const float *)wf__host_ptr(logits), *lp = (const float *)wf__host_ptr(lse);
    const int64_t *tp = (const int64_t *)wf__host_ptr(target);
    for (int64_t n = 0; n < N; n++) {
        int64_t gs = gloss->ndim && gloss->shape[0] == N ? gloss->stride[0] : 0;
        double g = ((const float *)wf__host_ptr(gloss))[n * gs] * scale;
        for (int64_t c = 0; c < C; c++) {
            double p = exp(xp[n * C + c] - lp[n]) - (c == tp[n]);
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
    fake_support.kernel[WF_K_LAYER_NORM_FWD] = fake_support.kernel[WF_K_LAYER_NORM_BWD] = f32;
    fake_support.kernel[WF_K_XENT_FWD] = fake_support.kernel[WF_K_XENT_BWD] = f32;
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.layer_norm_fwd = fake_ln_fwd;
    fake.layer_norm_bwd = fake_ln_bwd;
    fake.xent_fwd = fake_xent_fwd;
    fake.xent_bwd = fake_xent_bwd;
    fake.support = &fake_support;
    ln_calls = xent_calls = 0;
    wf__set_cuda_kernels_for_test(&fake);
}
static void fake_teardown(void) { wf__set_cuda_kernels_for_test(NULL); }

START_TEST(layer_norm_fused_matches_composed) {
    wf_scope_begin();
    wf_manual_seed(3);
    wf_tensor *x0 = wf_randn(WF_SHAPE(3, 4, 8), WF_F32), *w0 = wf_randn(WF_SHAPE(8), WF_F32);
    wf_tensor *b0 = wf_randn(WF_SHAPE(8), WF_F32), *gy = wf_randn(WF_SHAPE(3, 4, 8), WF_F32);
    wf_tensor *y[2], *gx[2], *gw[2], *gb[2];
    for (int d = 0; d < 2; d++) {
        wf_device dev = d ? WF_CUDA(0) : WF_CPU;
        wf_tensor *x = tt_leaf_on(x0, dev), *w = tt_leaf_on(w0, dev), *b = tt_leaf_on(b0, dev);
        y[d] = wf_layer_norm(x, WF_SHAPE(8), w, b, 1e-5);
        ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_backward(y[d], wf_to_device(gy, dev), false), 0);
        gx[d] = wf_grad(x), gw[d] = wf_grad(w), gb[d] = wf_grad(b);
    }
    ck_assert_int_eq(ln_calls, 1);   /* the fake-CUDA call took the fused route, the CPU one did not */
    ck_assert_str_eq(wf_grad_fn_name(y[1]), "NativeLayerNormBackward");
    tt_assert_close(y[1], y[0], 1e-5);
    tt_assert_close(gx[1], gx[0], 1e-4);
    tt_assert_close(gw[1], gw[0], 1e-4);
    tt_assert_close(gb[1], gb[0], 1e-5);
    wf_scope_end();
}
END_TEST

START_TEST(layer_norm_fused_refuses_modified_input) {
    wf_scope_begin();
    wf_tensor *leaf = tt_leaf_on(wf_randn(WF_SHAPE(2, 8), WF_F32), WF_CUDA(0));
    wf_tensor *x = wf_mul_scalar(leaf, 2.0);   /* saved by the fused node as it is */
    wf_tensor *y = wf_layer_norm(x, WF_SHAPE(8), NULL, NULL, 1e-5);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ln_calls, 1);
    ck_assert_int_eq(wf_add_scalar_(x, 1.0), 0);
    ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_EAUTOGRAD);
    ck_assert_error(WF_EAUTOGRAD, "NativeLayerNormBackward");
    wf_scope_end();
}
END_TEST

START_TEST(cross_entropy_fused_matches_composed) {
    wf_scope_begin();
    wf_manual_seed(5);
    wf_tensor *x0 = wf_randn(WF_SHAPE(5, 7), WF_F32);
    int64_t t[5] = { 1, 6, -100, 0, 3 };   /* one row ignored (PyTorch's default ignore_index) */
    wf_tensor *t0 = wf_from_data(t, WF_SHAPE(5), WF_I64);
    wf_tensor *y[2], *gx[2];
    for (int d = 0; d < 2; d++) {
        wf_device dev = d ? WF_CUDA(0) : WF_CPU;
        wf_tensor *x = tt_leaf_on(x0, dev);
        y[d] = wf_cross_entropy(x, wf_to_device(t0, dev), NULL);
        ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_backward(y[d], NULL, false), 0);
        gx[d] = wf_grad(x);
    }
    ck_assert_int_eq(xent_calls, 1);
    tt_assert_close(y[1], y[0], 1e-5);
    tt_assert_close(gx[1], gx[0], 1e-5);
    wf_scope_end();
}
END_TEST

int main(void) {
    Suite *s = suite_create("fused_fronts");
    TCase *tc = tcase_create("fake_cuda");
    tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
    tcase_add_test(tc, layer_norm_fused_matches_composed);
    tcase_add_test(tc, layer_norm_fused_refuses_modified_input);
    tcase_add_test(tc, cross_entropy_fused_matches_composed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
