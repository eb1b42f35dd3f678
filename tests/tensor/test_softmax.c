/* tests/tensor/test_softmax.c: wf_softmax and wf_log_softmax: worked values, every float
 * dtype, stability, any dim, gradients (by hand and gradcheck) and bad inputs. */
#include "test_util.h"

static wf_tensor *leaf(const double *v, const int64_t *shape, int nd) {
    wf_tensor *t = tt_f64(v, shape, nd);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(wf_set_requires_grad(t, true), 0);
    return t;
}

START_TEST(softmax_worked_values) {
    WF_SCOPE {
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3 }, WF_SHAPE(3));
        const double e[] = { 0.090030573170380462, 0.24472847105479767, 0.66524095577481771 };
        const double le[] = { -2.4076059644443806, -1.4076059644443806, -0.40760596444438030 };
        ck_assert_tensor_near(wf_softmax(x, 0), e, 3, 1e-12);
        ck_assert_tensor_near(wf_softmax(x, -1), e, 3, 1e-12);
        ck_assert_tensor_near(wf_log_softmax(x, -1), le, 3, 1e-12);
        /* shift invariance / stability with large values */
        wf_tensor *big = tt_f64((double[]){ 1001, 1002, 1003 }, WF_SHAPE(3));
        ck_assert_tensor_near(wf_softmax(big, 0), e, 3, 1e-12);
        ck_assert_tensor_near(wf_log_softmax(big, 0), le, 3, 1e-12);
        wf_tensor *neg = tt_f64((double[]){ -1001, -1002, -1003 }, WF_SHAPE(3));
        const double en[] = { e[2], e[1], e[0] };
        ck_assert_tensor_near(wf_softmax(neg, 0), en, 3, 1e-12);
    }
}
END_TEST

START_TEST(softmax_dim0_and_3d) {
    WF_SCOPE {
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3, 4, 6, 8 }, WF_SHAPE(2, 3));
        double a = 1 / (1 + exp(3)), b = 1 / (1 + exp(4)), c = 1 / (1 + exp(5));
        const double e[] = { a, b, c, 1 - a, 1 - b, 1 - c };
        wf_tensor *y = wf_softmax(x, 0);
        ck_assert_shape(y, 2, 3);
        ck_assert(wf_is_contiguous(y));
        ck_assert_tensor_near(y, e, 6, 1e-12);
        const double le[] = { log(a), log(b), log(c), log(1 - a), log(1 - b), log(1 - c) };
        ck_assert_tensor_near(wf_log_softmax(x, -2), le, 6, 1e-12);

        /* 3-D, middle dim, against a direct computation */
        double v[2 * 3 * 4], r[2 * 3 * 4];
        for (int i = 0; i < 24; i++) v[i] = sin(0.7 * i) * 3;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) {
                double m = -INFINITY, s = 0;
                for (int j = 0; j < 3; j++) m = fmax(m, v[i * 12 + j * 4 + k]);
                for (int j = 0; j < 3; j++) s += exp(v[i * 12 + j * 4 + k] - m);
                for (int j = 0; j < 3; j++) r[i * 12 + j * 4 + k] = exp(v[i * 12 + j * 4 + k] - m) / s;
            }
        wf_tensor *x3 = tt_f64(v, WF_SHAPE(2, 3, 4));
        wf_tensor *y3 = wf_softmax(x3, 1);
        ck_assert_shape(y3, 2, 3, 4);
        ck_assert_tensor_near(y3, r, 24, 1e-12);

        /* non-contiguous input (transposed) */
        wf_tensor *xt = wf_transpose(x3, 0, 2);   /* [4,3,2] */
        wf_tensor *yt = wf_softmax(xt, 1);
        ck_assert_shape(yt, 4, 3, 2);
        wf_tensor *ytt = wf_contiguous(wf_transpose(yt, 0, 2));
        ck_assert_tensor_near(ytt, r, 24, 1e-12);

        /* 0-d: softmax is 1, log_softmax 0 */
        wf_tensor *s0 = wf_scalar(5, WF_F64);
        ck_assert_double_eq_tol(wf_item(wf_softmax(s0, 0)), 1.0, 1e-15);
        ck_assert_double_eq_tol(wf_item(wf_log_softmax(s0, -1)), 0.0, 1e-15);
    }
}
END_TEST

START_TEST(softmax_dtypes) {
    const wf_dtype dts[] = { WF_F32, WF_F16, WF_BF16 };
    const double tol[] = { 1e-6, 2e-3, 1e-2 };
    WF_SCOPE {
        double v[4 * 37];
        for (int i = 0; i < 4 * 37; i++) v[i] = cos(0.37 * i) * 4;
        wf_tensor *x64 = tt_f64(v, WF_SHAPE(4, 37));
        double ref[4 * 37], lref[4 * 37];
        ck_assert_int_eq(wf_to_array(wf_softmax(x64, 1), ref, WF_F64), 0);
        ck_assert_int_eq(wf_to_array(wf_log_softmax(x64, 1), lref, WF_F64), 0);
        for (int k = 0; k < 3; k++) {
            wf_tensor *x = wf_to_dtype(x64, dts[k]);
            wf_tensor *y = wf_softmax(x, 1);
            ck_assert_int_eq(wf_tensor_dtype(y), dts[k]);
            ck_assert_tensor_near(y, ref, 4 * 37, tol[k]);
            wf_tensor *ly = wf_log_softmax(x, -1);
            ck_assert_int_eq(wf_tensor_dtype(ly), dts[k]);
            ck_assert_tensor_near(ly, lref, 4 * 37, tol[k] * 4);
        }
        /* large f32 rows: sums are 1 (exercises the threaded path) */
        wf_manual_seed(3);
        wf_tensor *big = wf_mul_scalar(wf_randn(WF_SHAPE(64, 1000), WF_F32), 10);
        wf_tensor *s = wf_sum(wf_softmax(big, -1), WF_DIMS(1), false);
        double sums[64], ones[64];
        ck_assert_int_eq(wf_to_array(s, sums, WF_F64), 0);
        for (int i = 0; i < 64; i++) ones[i] = 1;
        ck_assert_tensor_near(s, ones, 64, 1e-5);
    }
}
END_TEST

START_TEST(softmax_backward_by_hand) {
    WF_SCOPE {
        wf_tensor *x = leaf((double[]){ 1, 2, 3 }, WF_SHAPE(3));
        wf_tensor *y = wf_softmax(x, 0);
        ck_assert_str_eq(wf_grad_fn_name(y), "SoftmaxBackward");
        wf_tensor *gy = tt_f64((double[]){ 1, 0, 0 }, WF_SHAPE(3));
        ck_assert_int_eq(wf_backward(y, gy, false), 0);
        double p[3];
        wf_to_array(y, p, WF_F64);
        /* d y0 / d x_j = y0 (delta_0j - y_j) */
        const double e[] = { p[0] * (1 - p[0]), -p[0] * p[1], -p[0] * p[2] };
        ck_assert_tensor_near(wf_grad(x), e, 3, 1e-12);

        wf_tensor *x2 = leaf((double[]){ 1, 2, 3 }, WF_SHAPE(3));
        wf_tensor *ly = wf_log_softmax(x2, 0);
        ck_assert_str_eq(wf_grad_fn_name(ly), "LogSoftmaxBackward");
        ck_assert_int_eq(wf_backward(ly, wf_ones(WF_SHAPE(3), WF_F64), false), 0);
        /* gx = 1 - 3 * softmax */
        const double e2[] = { 1 - 3 * p[0], 1 - 3 * p[1], 1 - 3 * p[2] };
        ck_assert_tensor_near(wf_grad(x2), e2, 3, 1e-12);
    }
}
END_TEST

typedef struct { int dim; bool log; bool transpose; } sm_args;

static wf_tensor *sm_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    sm_args *a = ud;
    wf_tensor *x = a->transpose ? wf_transpose(in[0], 0, 1) : in[0];
    return a->log ? wf_log_softmax(x, a->dim) : wf_softmax(x, a->dim);
}

START_TEST(softmax_gradcheck) {
    WF_SCOPE {
        /* (log_)softmax of 2-D inputs over either dim, plain and transposed, are op harness
         * rows (tests/ops/op_table.c); here the middle dim of a 3-D input */
        double v3[2 * 3 * 2];
        for (int i = 0; i < 12; i++) v3[i] = cos(0.9 * i);
        wf_tensor *x3 = leaf(v3, WF_SHAPE(2, 3, 2));
        sm_args a = { 1, false, false };
        ck_assert_msg(wf_gradcheck(sm_fn, &x3, 1, &a, 1e-6, 1e-7, 1e-5) == 0, "%s", wf_error_message());
        a.log = true;
        ck_assert_msg(wf_gradcheck(sm_fn, &x3, 1, &a, 1e-6, 1e-7, 1e-5) == 0, "%s", wf_error_message());
    }
}
END_TEST

START_TEST(softmax_bad_inputs) {
    WF_SCOPE {
        wf_clear_error();
        ck_assert_ptr_null(wf_softmax(NULL, 0));
        ck_assert_error(WF_ENULL, "wf_softmax");
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        ck_assert_ptr_null(wf_softmax(x, 2));
        ck_assert_error(WF_EINDEX, "wf_softmax");
        ck_assert_ptr_null(wf_log_softmax(x, -3));
        ck_assert_error(WF_EINDEX, "wf_log_softmax");
        wf_tensor *xi = wf_zeros(WF_SHAPE(2, 3), WF_I64);
        ck_assert_ptr_null(wf_softmax(xi, 1));
        ck_assert_error(WF_EDTYPE, "wf_softmax");
        /* empty tensors are fine */
        wf_tensor *e = wf_softmax(wf_zeros(WF_SHAPE(0, 3), WF_F32), 1);
        ck_assert_shape(e, 0, 3);
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("softmax");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, softmax_worked_values);
    tcase_add_test(tc, softmax_dim0_and_3d);
    tcase_add_test(tc, softmax_dtypes);
    tcase_add_test(tc, softmax_backward_by_hand);
    tcase_add_test(tc, softmax_gradcheck);
    tcase_add_test(tc, softmax_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
