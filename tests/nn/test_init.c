/* tests/nn/test_init.c: torch.nn.init counterparts: gains, fans, bounds, statistics,
 * orthogonality, errors. */
#include "test_util.h"
#include "weft/nn.h"

static double *values(wf_tensor *t) {
    double *v = malloc(sizeof(double) * (size_t)wf_numel(t));
    ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    return v;
}

static void stats(wf_tensor *t, double *mean, double *std, double *mn, double *mx) {
    int64_t n = wf_numel(t);
    double *v = values(t), s = 0, s2 = 0;
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) { s += v[i]; s2 += v[i] * v[i]; *mn = fmin(*mn, v[i]); *mx = fmax(*mx, v[i]); }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
    free(v);
}

START_TEST(test_gain_and_fans) {
    ck_assert_double_eq(wf_init_calculate_gain("linear", NAN), 1);
    ck_assert_double_eq(wf_init_calculate_gain("conv2d", NAN), 1);
    ck_assert_double_eq_tol(wf_init_calculate_gain("tanh", NAN), 5.0 / 3.0, 1e-15);
    ck_assert_double_eq_tol(wf_init_calculate_gain("relu", NAN), sqrt(2.0), 1e-15);
    ck_assert_double_eq_tol(wf_init_calculate_gain("leaky_relu", NAN), sqrt(2.0 / (1 + 0.0001)), 1e-15);
    ck_assert_double_eq_tol(wf_init_calculate_gain("leaky_relu", sqrt(5.0)), sqrt(1.0 / 3.0), 1e-15);
    ck_assert_double_eq(wf_init_calculate_gain("selu", NAN), 0.75);
    ck_assert(isnan(wf_init_calculate_gain("swish", NAN)));
    ck_assert_error(WF_EINVAL, "swish");
    WF_SCOPE {
        int64_t fi, fo;
        ck_assert_int_eq(wf_init_calculate_fans(wf_empty(WF_SHAPE(16, 8, 3, 5), WF_F32), &fi, &fo), 0);
        ck_assert_int_eq(fi, 8 * 15);
        ck_assert_int_eq(fo, 16 * 15);
        ck_assert_int_eq(wf_init_kaiming_uniform_(wf_empty(WF_SHAPE(5), WF_F32), 0, WF_FAN_IN, NULL), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "fewer than 2 dimensions");
        ck_assert_int_eq(wf_init_uniform_(wf_empty(WF_SHAPE(5), WF_I64), 0, 1), WF_EDTYPE);
        wf_clear_error();
        ck_assert_int_eq(wf_init_uniform_(wf_empty(WF_SHAPE(5), WF_F32), 1, 0), WF_EINVAL);
        wf_clear_error();
    }
}
END_TEST

START_TEST(test_distributions) {
    wf_manual_seed(11);
    WF_SCOPE {
        double m, s, lo, hi;
        wf_tensor *t = wf_empty(WF_SHAPE(200, 100), WF_F32);
        /* parameters requiring grad are filled under no-grad */
        wf_set_requires_grad(t, true);
        ck_assert_int_eq(wf_init_uniform_(t, -2, 3), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert(lo >= -2 && hi < 3);
        ck_assert_double_lt(fabs(m - 0.5), 0.05);
        ck_assert_int_eq(wf_init_normal_(t, 1, 2), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert_double_lt(fabs(m - 1), 0.05);
        ck_assert_double_lt(fabs(s - 2), 0.05);
        /* truncated standard normal on [-2, 2]: std 0.8796 */
        ck_assert_int_eq(wf_init_trunc_normal_(t, 0, 1, -2, 2), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert(lo >= -2 && hi <= 2);
        ck_assert_double_lt(fabs(m), 0.03);
        ck_assert_double_lt(fabs(s - 0.8796), 0.02);
        ck_assert_int_eq(wf_init_trunc_normal_(t, 0, 0.02, -0.04, 0.04), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert(lo >= -0.04 && hi <= 0.04);
        ck_assert_double_lt(fabs(s - 0.02 * 0.8796), 0.001);
        /* xavier: fan_in 100, fan_out 200 */
        ck_assert_int_eq(wf_init_xavier_uniform_(t, 2.0), 0);
        stats(t, &m, &s, &lo, &hi);
        double b = 2.0 * sqrt(6.0 / 300.0);
        ck_assert(lo >= -b && hi <= b && hi > 0.95 * b);
        ck_assert_int_eq(wf_init_xavier_normal_(t, 1.0), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert_double_lt(fabs(s - sqrt(2.0 / 300.0)), 0.003);
        /* kaiming */
        ck_assert_int_eq(wf_init_kaiming_normal_(t, 0, WF_FAN_OUT, "relu"), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert_double_lt(fabs(s - sqrt(2.0 / 200.0)), 0.003);
        ck_assert_int_eq(wf_init_kaiming_uniform_(t, 0, WF_FAN_IN, NULL), 0);
        stats(t, &m, &s, &lo, &hi);
        b = sqrt(3.0) * sqrt(2.0) / sqrt(100.0);
        ck_assert(lo >= -b && hi <= b && hi > 0.95 * b);
        ck_assert_int_eq(wf_init_constant_(t, 0.5), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert(lo == 0.5 && hi == 0.5);
        ck_assert_int_eq(wf_init_zeros_(t), 0);
        ck_assert_int_eq(wf_init_ones_(t), 0);
        stats(t, &m, &s, &lo, &hi);
        ck_assert(lo == 1 && hi == 1);
        ck_assert(wf_is_leaf(t) && wf_requires_grad(t));
        wf_tensor *e = wf_empty(WF_SHAPE(2, 3), WF_F64);
        ck_assert_int_eq(wf_init_eye_(e), 0);
        ck_assert_tensor_near(e, ((double[]){ 1, 0, 0, 0, 1, 0 }), 6, 0);
    }
}
END_TEST

START_TEST(test_orthogonal) {
    wf_manual_seed(2);
    WF_SCOPE {
        int64_t shapes[3][2] = { { 5, 3 }, { 3, 5 }, { 4, 4 } };
        for (int k = 0; k < 3; k++) {
            int64_t r = shapes[k][0], c = shapes[k][1];
            wf_tensor *t = wf_empty(WF_SHAPE(r, c), WF_F64);
            ck_assert_int_eq(wf_init_orthogonal_(t, 1.5), 0);
            /* rows >= cols: Q^T Q = gain^2 I; rows < cols: Q Q^T = gain^2 I */
            wf_tensor *g = r >= c ? wf_matmul(wf_t(t), t) : wf_matmul(t, wf_t(t));
            int64_t n = r >= c ? c : r;
            double *v = values(g);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) ck_assert_double_eq_tol(v[i * n + j], i == j ? 2.25 : 0, 1e-10);
            free(v);
        }
        wf_tensor *c4 = wf_empty(WF_SHAPE(2, 3, 2, 2), WF_F32);   /* flattened to [2, 12] */
        ck_assert_int_eq(wf_init_orthogonal_(c4, 1.0), 0);
        wf_tensor *f = wf_reshape(c4, WF_SHAPE(2, 12));
        double *v = values(wf_matmul(f, wf_t(f)));
        ck_assert_double_eq_tol(v[0], 1, 1e-5);
        ck_assert_double_eq_tol(v[1], 0, 1e-5);
        free(v);
        ck_assert_int_eq(wf_init_orthogonal_(wf_empty(WF_SHAPE(3), WF_F32), 1.0), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "2 or more dimensions");
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_init");
    TCase *tc = tcase_create("init");
    tcase_add_test(tc, test_gain_and_fans);
    tcase_add_test(tc, test_distributions);
    tcase_add_test(tc, test_orthogonal);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
