/* tests/ops/test_fast_tanh.c: the CPU's f32 exp, tanh and tanh GELU (tensor/cpu/vec_exp.h's
 * f_exp; tensor/cpu/elementwise.c's f_tanh, f_gelu_tanh and its derivative: arithmetic the
 * compiler vectorizes, no libm call per element) against double math, over dense sweeps, the
 * saturation ends, subnormals, odd lengths (the vector loops' tails), strided views (the
 * scalar path: the same bits) and NaN / inf (what the libm versions gave); and the softmax
 * rows' exp, the same f_exp.
 *
 * The tolerances, stated once:
 *   exp:       2 ulp of the exact result (measured 1.2);
 *   tanh:      3 ulp of the exact result (measured 1.5);
 *   GELU:      8 ulp of (|y| + |x s (1 - s) 2u|), s = sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3):
 *              the second term is the f32 rounding of u carried through (measured 3.1);
 *   its grad:  16 ulp of (s + |x s (1 - s) 2 du|) (1 + |2u|) (measured 6.8);
 *   both with an absolute 1e-30 where e^-2u leaves the f32 range (the exact value is below it). */
#include <float.h>

#include "test_util.h"

#define K 0.79788456080286535588 /* sqrt(2 / pi) */

/* one f32 ulp at |r| (the subnormal spacing below FLT_MIN) */
static double ulp(double r) {
    r = fabs(r);
    if (r < FLT_MIN) return 0x1p-149;
    int e;
    frexp(r, &e);
    return ldexp(1.0, e - 24);
}

/* x's values in f32 (n of them); the caller frees */
static float *values_of(wf_tensor *t) {
    int64_t n = wf_numel(t);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(wf_to_array(t, v, WF_F32), 0);
    return v;
}

/* the sweep: a dense grid over [-lim, lim] (an odd count, so the vector loops have a tail),
 * powers of two down to the least subnormal with both signs, and the points around the
 * series / exp switch at 0.55 and the saturation at 10 */
static int64_t sweep(float *v, int64_t cap, float lim, int64_t grid) {
    int64_t n = 0;
    for (int64_t i = 0; i <= grid && n < cap; i++) v[n++] = -lim + 2 * lim * (float)i / (float)grid;
    for (int k = -149; k <= 6 && n + 2 <= cap; k++) { v[n++] = ldexpf(1, k); v[n++] = -ldexpf(1, k); }
    const float edge[] = { 0.55f, 10.0f, 9.0f, 88.0f / 2 };
    for (int k = 0; k < 4; k++)
        for (int s = -3; s <= 3 && n + 2 <= cap; s++) {
            float e = edge[k];
            for (int j = 0; j < (s < 0 ? -s : s); j++) e = nextafterf(e, s < 0 ? 0 : INFINITY);
            v[n++] = e;
            v[n++] = -e;
        }
    return n;
}

START_TEST(tanh_f32_within_3_ulp) {
    WF_SCOPE {
        enum { CAP = 130000 };
        float *xs = malloc(sizeof(float) * CAP);
        ck_assert_ptr_nonnull(xs);
        int64_t n = sweep(xs, CAP, 12.0f, 120000);
        ck_assert(n % 2 == 1);
        wf_tensor *x = wf_from_data(xs, WF_SHAPE(n), WF_F32);
        float *y = values_of(wf_tanh(x));
        for (int64_t i = 0; i < n; i++) {
            double r = tanh((double)xs[i]);
            ck_assert_msg(fabs(y[i] - r) <= 3 * ulp(r), "tanh(%.9g) = %.9g, exact %.9g: %.2f ulp off", xs[i], y[i], r,
                          fabs(y[i] - r) / ulp(r));
        }
        /* every other element: the strided loop gives the same bits */
        float *ys = values_of(wf_tanh(wf_slice(x, 0, 1, n, 2)));
        for (int64_t i = 0; 1 + 2 * i < n; i++)
            ck_assert_msg(ys[i] == y[1 + 2 * i], "strided tanh(%.9g) = %.9g, contiguous %.9g", xs[1 + 2 * i], ys[i],
                          y[1 + 2 * i]);
        free(ys);
        free(y);
        free(xs);
    }
}
END_TEST

/* wf_exp on f32: f_exp itself, over its whole range, within 2 ulp (measured 1.2); past the
 * ends inf and 0, and subnormal results to the subnormal spacing */
START_TEST(exp_f32_within_2_ulp) {
    WF_SCOPE {
        enum { CAP = 210000 };
        float *xs = malloc(sizeof(float) * CAP);
        ck_assert_ptr_nonnull(xs);
        int64_t n = sweep(xs, CAP, 104.0f, 208000);
        wf_tensor *x = wf_from_data(xs, WF_SHAPE(n), WF_F32);
        float *y = values_of(wf_exp(x));
        for (int64_t i = 0; i < n; i++) {
            double r = exp((double)xs[i]);
            if (r > FLT_MAX) {
                ck_assert_msg(isinf(y[i]) && y[i] > 0, "exp(%.9g) = %.9g, not inf", xs[i], y[i]);
                continue;
            }
            ck_assert_msg(fabs(y[i] - r) <= 2 * ulp(r), "exp(%.9g) = %.9g, exact %.9g: %.2f ulp off", xs[i], y[i], r,
                          fabs(y[i] - r) / ulp(r));
        }
        free(y);
        const float sp[] = { NAN, INFINITY, -INFINITY, 88.72f, 89.0f, -104.0f, -150.0f };
        y = values_of(wf_exp(wf_from_data(sp, WF_SHAPE(7), WF_F32)));
        ck_assert(isnan(y[0]) && isinf(y[1]) && y[2] == 0 && isfinite(y[3]) && isinf(y[4]) && y[5] == 0 && y[6] == 0);
        free(y);
        free(xs);
    }
}
END_TEST

/* the exact GELU, its derivative and the tolerances above, at x */
typedef struct { double y, dy, tol, dtol; } gelu_ref;
static gelu_ref gelu_at(double x) {
    double u = K * (x + 0.044715 * x * x * x), e = exp(-2 * u), s = 1 / (1 + e);
    double du = K * (1 + 3 * 0.044715 * x * x), carried = fabs(2 * x * s * (1 - s));
    gelu_ref g = { x / (1 + e), s + 2 * x * s * (1 - s) * du, 0, 0 };
    g.tol = 8 * 0x1p-24 * (fabs(g.y) + carried * fabs(u)) + 1e-30;
    g.dtol = 16 * 0x1p-24 * (s + carried * du) * (1 + fabs(2 * u)) + 1e-30;
    return g;
}

START_TEST(gelu_tanh_f32_forward_and_grad) {
    WF_SCOPE {
        enum { CAP = 110000 };
        float *xs = malloc(sizeof(float) * CAP);
        ck_assert_ptr_nonnull(xs);
        int64_t n = sweep(xs, CAP, 20.0f, 100000);
        wf_tensor *x = wf_from_data(xs, WF_SHAPE(n), WF_F32);
        ck_assert_int_eq(wf_set_requires_grad(x, true), 0);
        wf_tensor *yt = wf_gelu(x, WF_GELU_TANH);
        ck_assert_int_eq(wf_backward(wf_sum_all(yt), NULL, false), 0);
        float *y = values_of(yt), *g = values_of(wf_grad(x));
        for (int64_t i = 0; i < n; i++) {
            gelu_ref r = gelu_at(xs[i]);
            ck_assert_msg(fabs(y[i] - r.y) <= r.tol, "gelu(%.9g) = %.9g, exact %.9g (tolerance %.3g)", xs[i], y[i], r.y,
                          r.tol);
            ck_assert_msg(fabs(g[i] - r.dy) <= r.dtol, "gelu'(%.9g) = %.9g, exact %.9g (tolerance %.3g)", xs[i], g[i],
                          r.dy, r.dtol);
        }
        free(y);
        free(g);
        /* a transposed view: the strided forward and backward give the contiguous bits */
        wf_tensor *x2 = wf_detach(wf_from_data(xs, WF_SHAPE(3, 1001), WF_F32));
        ck_assert_int_eq(wf_set_requires_grad(x2, true), 0);
        wf_tensor *xt = wf_transpose(x2, 0, 1);
        wf_tensor *y2 = wf_gelu(xt, WF_GELU_TANH);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y2, wf_transpose(wf_from_data(xs + 7, WF_SHAPE(3, 1001), WF_F32), 0, 1))), NULL, false), 0);
        float *a = values_of(wf_contiguous(wf_transpose(y2, 0, 1))), *ga = values_of(wf_grad(x2));
        wf_tensor *x3 = wf_from_data(xs, WF_SHAPE(3003), WF_F32);
        ck_assert_int_eq(wf_set_requires_grad(x3, true), 0);
        wf_tensor *y3 = wf_gelu(x3, WF_GELU_TANH);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y3, wf_from_data(xs + 7, WF_SHAPE(3003), WF_F32))), NULL, false), 0);
        float *b = values_of(y3), *gb = values_of(wf_grad(x3));
        for (int64_t i = 0; i < 3003; i++) {
            ck_assert_msg(a[i] == b[i], "gelu(%.9g): strided %.9g, contiguous %.9g", xs[i], a[i], b[i]);
            ck_assert_msg(ga[i] == gb[i], "gelu'(%.9g): strided %.9g, contiguous %.9g", xs[i], ga[i], gb[i]);
        }
        free(a);
        free(b);
        free(ga);
        free(gb);
        free(xs);
    }
}
END_TEST

/* NaN and inf as the libm forms gave (and PyTorch gives): tanh(+-inf) = +-1, tanh(-0) = -0;
 * gelu(+inf) = inf, gelu(-inf) = NaN (-inf * 0), gelu(-50) = -0; gelu' NaN at +-inf */
START_TEST(nan_inf_and_saturation) {
    WF_SCOPE {
        const float xs[] = { NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 50.0f, -50.0f, 1e30f, -1e30f };
        enum { N = 9 };
        wf_tensor *x = wf_from_data(xs, WF_SHAPE(N), WF_F32);
        float *t = values_of(wf_tanh(x));
        ck_assert(isnan(t[0]));
        ck_assert(t[1] == 1 && t[2] == -1 && t[5] == 1 && t[6] == -1 && t[7] == 1 && t[8] == -1);
        ck_assert(t[3] == 0 && !signbit(t[3]) && t[4] == 0 && signbit(t[4]));
        wf_tensor *xl = wf_detach(wf_from_data(xs, WF_SHAPE(N), WF_F32));
        ck_assert_int_eq(wf_set_requires_grad(xl, true), 0);
        wf_tensor *yt = wf_gelu(xl, WF_GELU_TANH);
        ck_assert_int_eq(wf_backward(wf_sum_all(yt), NULL, false), 0);
        float *y = values_of(yt), *g = values_of(wf_grad(xl));
        ck_assert(isnan(y[0]) && isinf(y[1]) && y[1] > 0 && isnan(y[2]));
        ck_assert(y[3] == 0 && y[4] == 0 && y[5] == 50 && y[6] == 0 && y[7] == 1e30f && y[8] == 0);
        ck_assert(isnan(g[0]) && isnan(g[1]) && isnan(g[2]));
        ck_assert(g[3] == 0.5f && g[4] == 0.5f && g[5] == 1 && g[6] == 0);
        free(t);
        free(y);
        free(g);
    }
}
END_TEST

/* the softmax rows' exp (vec_exp.h's f_exp, which tanh is built on): rows { x, 0 } give
 * e^x / (e^x + 1) down to the subnormals, within 4 ulp (f_exp's 1.3, the sum, the quotient) */
START_TEST(softmax_f32_exp_sweep) {
    WF_SCOPE {
        enum { N = 110001 };
        float *xs = calloc(2 * N, sizeof(float));
        ck_assert_ptr_nonnull(xs);
        for (int64_t i = 0; i < N; i++) xs[2 * i] = -110.0f + 110.0f * (float)i / (float)(N - 1);
        float *y = values_of(wf_softmax(wf_from_data(xs, WF_SHAPE(N, 2), WF_F32), 1));
        for (int64_t i = 0; i < N; i++) {
            double e = exp((double)xs[2 * i]), r = e / (e + 1);
            ck_assert_msg(fabs(y[2 * i] - r) <= 4 * ulp(r), "softmax({%.9g, 0})[0] = %.9g, exact %.9g", xs[2 * i],
                          y[2 * i], r);
        }
        free(y);
        free(xs);
    }
}
END_TEST

START_TEST(bad_inputs) {
    WF_SCOPE {
        ck_assert_ptr_null(wf_tanh(NULL));
        ck_assert_error(WF_ENULL, "wf_tanh");
        wf_tensor *x = wf_zeros(WF_SHAPE(3), WF_F32);
        ck_assert_ptr_null(wf_gelu(x, (wf_gelu_approx)7));
        ck_assert_error(WF_EINVAL, "wf_gelu: unknown approximate mode 7");
        ck_assert_ptr_null(wf_gelu(NULL, WF_GELU_TANH));
        ck_assert_error(WF_ENULL, "wf_gelu");
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("fast_tanh");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tanh_f32_within_3_ulp);
    tcase_add_test(tc, exp_f32_within_2_ulp);
    tcase_add_test(tc, gelu_tanh_f32_forward_and_grad);
    tcase_add_test(tc, nan_inf_and_saturation);
    tcase_add_test(tc, softmax_f32_exp_sweep);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
