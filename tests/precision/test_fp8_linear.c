/* tests/precision/test_fp8_linear.c: the fp8 Linear node (autograd/fn_fp8_linear.c) on the CPU,
 * through the host emulation of its launchers (tensor/cpu/fp8_emulate.c), so that its wiring is
 * checked in every build: the GPU of capability 8.9 that runs the real kernels is
 * tests/cuda/test_cuda_fp8.c's. The emulated GEMM sums in double in a fixed order, so each
 * result is compared exactly with the same sums written here from the reference formats:
 *   - step 1: x and w cast to E4M3 at scale 1, y = x_q w_q^T + b (bias in bf16) in bf16;
 *   - its backward: the output gradient (in y's dtype, bf16) cast to E5M2 at scale 1, dx = g_q w_q in bf16 then x's
 *     dtype, dw = g_q^T x_q in f32, db the cast's f32 column sum of g, in f32 (the bias's dtype);
 *   - step 2: each tensor cast with the scale its step-1 amax gave (delayed scaling: 448 / amax),
 *     and the GEMM scaled back by both scale_invs;
 *   - a Linear whose sizes are not multiples of 16 stays the plain Linear;
 *   - a small MLP learns under fp8. */
#include "test_util.h"

#include "autograd/fn_fp8_linear.h"
#include "tensor/cpu/fp8.h"

enum { M = 16, K = 32, N = 48 };

static double q(float v, float scale, wf__fp8_format f) { return (double)wf__fp8_decode(wf__fp8_encode(v * scale, f), f); }

static float amax_of(const float *v, int n) {
    float m = 0;
    for (int i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

/* the values of t rounded to dtype dt (as a store would), back as doubles */
static void rounded(const double *v, int n, wf_dtype dt, double *out) {
    wf_tensor *t = wf_to_dtype(wf_to_dtype(wf_from_data(v, WF_SHAPE(n), WF_F64), dt), WF_F64);
    ck_assert_int_eq(wf_to_array(t, out, WF_F64), 0);
}

static void expect_exact(wf_tensor *got, const double *want, int n, const char *what) {
    double *g = malloc(sizeof(double) * (size_t)n);
    ck_assert_int_eq(wf_to_array(got, g, WF_F64), 0);
    for (int i = 0; i < n; i++) ck_assert_msg(g[i] == want[i], "%s: element %d is %.9g, expected %.9g", what, i, g[i], want[i]);
    free(g);
}

/* y_ref [M, N] = round_bf16(sum_t q(x) q(w) * sxi * swi + b_bf16) */
static void forward_ref(const float *x, const float *w, const double *bb, float sx, float sw, double *y) {
    double sc = (double)(1.0f / sx) * (double)(1.0f / sw), *acc = malloc(sizeof(double) * M * N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int t = 0; t < K; t++) s += q(x[i * K + t], sx, WF__FP8_E4M3) * q(w[j * K + t], sw, WF__FP8_E4M3);
            acc[i * N + j] = s * sc + bb[j];
        }
    rounded(acc, M * N, WF_BF16, y);
    free(acc);
}

START_TEST(test_steps_exact) {
    wf_scope_begin();
    wf_manual_seed(3);
    wf_module *lin = wf_linear_new(K, N, true);
    wf_tensor *W = wf_module_get_parameter(lin, "weight"), *B = wf_module_get_parameter(lin, "bias");
    ck_assert_int_eq(wf_init_normal_(B, 0.0, 0.5), 0);
    float w[N * K], b[N], x1[M * K], x2[M * K], gy[M * N];
    ck_assert_int_eq(wf_to_array(W, w, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(B, b, WF_F32), 0);
    wf_tensor *X1 = wf_randn(WF_SHAPE(M, K), WF_F32), *X2 = wf_mul_scalar(wf_randn(WF_SHAPE(M, K), WF_F32), 3.0);
    wf_tensor *GY = wf_mul_scalar(wf_randn(WF_SHAPE(M, N), WF_F32), 0.01);
    ck_assert_int_eq(wf_to_array(X1, x1, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(X2, x2, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(GY, gy, WF_F32), 0);
    wf_set_requires_grad(X1, true);
    double bd[N], bb[N];
    for (int j = 0; j < N; j++) bd[j] = b[j];
    rounded(bd, N, WF_BF16, bb);

    wf__fp8_autocast_begin();
    ck_assert(wf_fp8_autocast_enabled());
    /* step 1: every scale 1 */
    wf_tensor *y1 = wf_module_forward(lin, X1);
    ck_assert_msg(y1, "%s", wf_error_message());
    ck_assert_str_eq(wf_grad_fn_name(y1), "Fp8LinearBackward");
    ck_assert_int_eq(wf_tensor_dtype(y1), WF_BF16);
    double *want = malloc(sizeof(double) * M * N * 2);
    forward_ref(x1, w, bb, 1.0f, 1.0f, want);
    expect_exact(y1, want, M * N, "step 1 y");
    ck_assert_int_eq(wf_backward(y1, GY, false), 0);
    /* the gradient reaches the node in y's dtype (bf16), and is cast to E5M2 from there */
    double gd[M * N], gb16[M * N];
    for (int i = 0; i < M * N; i++) gd[i] = gy[i];
    rounded(gd, M * N, WF_BF16, gb16);
    for (int i = 0; i < M * N; i++) gy[i] = (float)gb16[i];
    /* dx [M, K] = round_bf16(sum_n q5(gy) q4(w)), then f32 (x's dtype) */
    double dx[M * K], dxr[M * K], dw[N * K], db[N];
    for (int i = 0; i < M; i++)
        for (int t = 0; t < K; t++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += q(gy[i * N + j], 1.0f, WF__FP8_E5M2) * q(w[j * K + t], 1.0f, WF__FP8_E4M3);
            dx[i * K + t] = s;
        }
    rounded(dx, M * K, WF_BF16, dxr);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(X1)), WF_F32);
    expect_exact(wf_grad(X1), dxr, M * K, "step 1 dx");
    for (int j = 0; j < N; j++)
        for (int t = 0; t < K; t++) {
            double s = 0;
            for (int i = 0; i < M; i++) s += q(gy[i * N + j], 1.0f, WF__FP8_E5M2) * q(x1[i * K + t], 1.0f, WF__FP8_E4M3);
            dw[j * K + t] = s;
        }
    double dwr[N * K];
    rounded(dw, N * K, WF_F32, dwr);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(W)), WF_F32);
    expect_exact(wf_grad(W), dwr, N * K, "step 1 dw");
    /* db: the E5M2 cast's column sums of g, in f32 (with M = 16 rows, fp8.h's order is the rows
     * in turn), straight into the f32 bias (no bf16 rounding between) */
    for (int j = 0; j < N; j++) {
        float s = 0;
        for (int i = 0; i < M; i++) s += gy[i * N + j];
        db[j] = s;
    }
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(B)), WF_F32);
    expect_exact(wf_grad(B), db, N, "step 1 db");

    /* step 2: x and w cast with the scales their step-1 amaxes gave, the GEMM scaled back */
    float sx = 448.0f / amax_of(x1, M * K), sw = 448.0f / amax_of(w, N * K);
    wf_tensor *y2 = wf_module_forward(lin, X2);
    ck_assert_msg(y2, "%s", wf_error_message());
    forward_ref(x2, w, bb, sx, sw, want);
    expect_exact(y2, want, M * N, "step 2 y (delayed scales)");
    wf__fp8_autocast_end();
    ck_assert(!wf_fp8_autocast_enabled());
    free(want);
    wf_module_free(lin);
    wf_scope_end();
}
END_TEST

START_TEST(test_sizes_not_multiples_of_16_stay_plain) {
    wf_scope_begin();
    wf_module *lin = wf_linear_new(30, 48, true);
    wf_tensor *x = wf_randn(WF_SHAPE(16, 30), WF_F32);
    wf_set_requires_grad(x, true);
    wf__fp8_autocast_begin();
    wf_tensor *y = wf_module_forward(lin, x);
    wf__fp8_autocast_end();
    ck_assert_ptr_nonnull(y);
    ck_assert_str_ne(wf_grad_fn_name(y), "Fp8LinearBackward");
    ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);   /* no autocast region: the plain f32 Linear */
    wf_module_free(lin);
    wf_scope_end();
}
END_TEST

/* a 32-64-16 MLP fitting a fixed target under fp8: the loss falls by half */
START_TEST(test_mlp_learns) {
    wf_manual_seed(11);
    wf_module *m = wf_sequential_new(3, wf_linear_new(32, 64, true), wf_relu_new(), wf_linear_new(64, 16, true));
    wf_tensor *p[4];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, 4), 4);
    wf_optimizer *opt = wf_adam_new(p, 4, &(wf_adam_opts){ .lr = 1e-2 });
    ck_assert_ptr_nonnull(opt);
    wf_tensor *x = wf_randn(WF_SHAPE(32, 32), WF_F32), *t = wf_randn(WF_SHAPE(32, 16), WF_F32);
    double first = 0, last = 0;
    for (int step = 0; step < 40; step++) WF_SCOPE {
        wf_optimizer_zero_grad(opt, true);
        wf__fp8_autocast_begin();
        wf_tensor *out = wf_module_forward(m, x);
        wf__fp8_autocast_end();
        ck_assert_msg(out, "%s", wf_error_message());
        ck_assert_str_eq(wf_grad_fn_name(out), "Fp8LinearBackward");
        wf_tensor *loss = wf_mse_loss(wf_to_dtype(out, WF_F32), t, WF_REDUCTION_MEAN);
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
        ck_assert_int_eq(wf_optimizer_step(opt), 0);
        double l = wf_item(loss);
        if (step == 0) first = l;
        last = l;
    }
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_tensor_free(x);
    wf_tensor_free(t);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fp8_linear");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_steps_exact);
    tcase_add_test(tc, test_sizes_not_multiples_of_16_stay_plain);
    tcase_add_test(tc, test_mlp_learns);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
