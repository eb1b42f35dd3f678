/* tests/tensor/test_reduce.c: reductions over dim sets, keepdim, arg reductions, gradients. */
#include "test_util.h"

START_TEST(test_reduce_values) {
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(0, 24, 1, WF_F64), WF_SHAPE(2, 3, 4));
        ck_assert_double_eq(wf_item(wf_sum_all(x)), 276);
        ck_assert_double_eq(wf_item(wf_mean_all(x)), 11.5);
        wf_tensor *s1 = wf_sum(x, WF_DIMS(1), false);
        ck_assert_shape(s1, 2, 4);
        ck_assert_tensor_near(s1, ((double[]){ 12, 15, 18, 21, 48, 51, 54, 57 }), 8, 0);
        wf_tensor *s02 = wf_sum(x, WF_DIMS(0, -1), true);
        ck_assert_shape(s02, 1, 3, 1);
        ck_assert_tensor_near(s02, ((double[]){ 60, 92, 124 }), 3, 0);
        ck_assert_tensor_near(wf_amax(x, WF_DIMS(2), false), ((double[]){ 3, 7, 11, 15, 19, 23 }), 6, 0);
        ck_assert_tensor_near(wf_amin(x, WF_DIMS(0, 1), false), ((double[]){ 0, 1, 2, 3 }), 4, 0);
        wf_tensor *v = wf_from_data((double[]){ 1, 2, 3, 4 }, WF_SHAPE(4), WF_F64);
        ck_assert_double_eq_tol(wf_item(wf_var(v, WF_ALL_DIMS, 1, false)), 5.0 / 3.0, 1e-15);
        ck_assert_double_eq_tol(wf_item(wf_var(v, WF_ALL_DIMS, 0, false)), 1.25, 1e-15);
        ck_assert_double_eq_tol(wf_item(wf_std(v, WF_ALL_DIMS, 1, false)), sqrt(5.0 / 3.0), 1e-15);
        ck_assert_double_eq_tol(wf_item(wf_logsumexp(v, WF_ALL_DIMS, false)), log(exp(1) + exp(2) + exp(3) + exp(4)), 1e-14);
        ck_assert_double_eq_tol(wf_item(wf_norm(v, 2, WF_ALL_DIMS, false)), sqrt(30), 1e-14);
        ck_assert_double_eq_tol(wf_item(wf_norm(v, 1, WF_ALL_DIMS, false)), 10, 1e-14);
        ck_assert_double_eq_tol(wf_item(wf_norm(v, INFINITY, WF_ALL_DIMS, false)), 4, 1e-14);
        ck_assert_double_eq_tol(wf_item(wf_norm(v, 3, WF_ALL_DIMS, false)), cbrt(100), 1e-13);
        /* logsumexp is stable for large values */
        wf_tensor *big = wf_from_data((double[]){ 1000, 1000 }, WF_SHAPE(2), WF_F64);
        ck_assert_double_eq_tol(wf_item(wf_logsumexp(big, WF_ALL_DIMS, false)), 1000 + log(2), 1e-12);
        wf_tensor *am = wf_argmax(wf_from_data((double[]){ 1, 5, 2, 7, 0, 3 }, WF_SHAPE(2, 3), WF_F64), 1, false);
        ck_assert_int_eq(wf_tensor_dtype(am), WF_I64);
        ck_assert_tensor_near(am, ((double[]){ 1, 0 }), 2, 0);
        ck_assert_tensor_near(wf_argmin(wf_from_data((double[]){ 1, 5, 2, 7, 0, 3 }, WF_SHAPE(2, 3), WF_F64), 0, true), ((double[]){ 0, 1, 0 }), 3, 0);
        ck_assert_double_eq(wf_item(wf_argmax(wf_from_data((double[]){ 1, 5, 2, 7, 0, 3 }, WF_SHAPE(2, 3), WF_F64), WF_DIM_NONE, false)), 3);
        /* sums over strided, half and integer inputs */
        ck_assert_tensor_near(wf_sum(wf_transpose(x, 0, 2), WF_DIMS(1, 2), false), ((double[]){ 60, 66, 72, 78 }), 4, 0);
        ck_assert_double_eq(wf_item(wf_sum_all(wf_to_dtype(x, WF_BF16))), 276);
        wf_tensor *si = wf_sum_all(wf_arange(0, 10, 1, WF_I32));
        ck_assert_int_eq(wf_tensor_dtype(si), WF_I64);
        ck_assert_double_eq(wf_item(si), 45);
        /* big reductions use the threaded path for rows */
        wf_tensor *ones = wf_ones(WF_SHAPE(300, 1000), WF_F32);
        wf_tensor *rs = wf_sum(ones, WF_DIMS(1), false);
        ck_assert_double_eq(wf_item(wf_amin(rs, WF_ALL_DIMS, false)), 1000);
        ck_assert_double_eq(wf_item(wf_sum_all(wf_sum(ones, WF_DIMS(0), false))), 300000);
        /* empty: sum is 0, max is an error */
        ck_assert_double_eq(wf_item(wf_sum_all(wf_zeros(WF_SHAPE(0), WF_F32))), 0);
    }
}
END_TEST

START_TEST(test_reduce_errors) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        ck_assert_ptr_null(wf_sum(x, WF_DIMS(2), false));
        ck_assert_error(WF_EINDEX, "wf_sum");
        ck_assert_ptr_null(wf_sum(x, WF_DIMS(1, -1), false));
        ck_assert_error(WF_EINDEX, "twice");
        ck_assert_ptr_null(wf_amax(wf_zeros(WF_SHAPE(0, 3), WF_F32), WF_DIMS(0), false));
        ck_assert_error(WF_EINVAL, "wf_amax");
        ck_assert_ptr_null(wf_mean(wf_zeros(WF_SHAPE(2), WF_I64), WF_ALL_DIMS, false));
        ck_assert_error(WF_EDTYPE, "wf_mean");
        ck_assert_ptr_null(wf_norm(x, -1, WF_ALL_DIMS, false));
        ck_assert_error(WF_EINVAL, "wf_norm");
        ck_assert_ptr_null(wf_argmax(x, 3, false));
        ck_assert_error(WF_EINDEX, "wf_argmax");
    }
}
END_TEST

static int g_which;
static wf_tensor *f_reduce(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *x = in[0];
    switch (g_which) {
    case 0: return wf_sum(x, WF_DIMS(0, 2), false);
    case 1: return wf_mean(x, WF_DIMS(1), true);
    case 2: return wf_var(x, WF_DIMS(2), 1, false);
    case 3: return wf_std(x, WF_ALL_DIMS, 0, false);
    case 4: return wf_amax(x, WF_DIMS(1), false);
    case 5: return wf_amin(x, WF_ALL_DIMS, false);
    case 6: return wf_logsumexp(x, WF_DIMS(0, 1), true);
    case 7: return wf_norm(x, 2, WF_DIMS(2), false);
    case 8: return wf_norm(x, 3, WF_ALL_DIMS, false);
    case 9: return wf_norm(x, 1, WF_DIMS(0), false);
    default: return NULL;
    }
}

START_TEST(test_reduce_gradients) {
    /* the reductions and dims the op harness does not gradcheck (tests/ops/op_table.c has
     * sum(dims 0,2), amax(dim 1), amin(all) and var(dim 2) on strided samples) */
    static const int kept[] = { 1, 3, 6, 7, 8, 9 };
    for (size_t c = 0; c < sizeof kept / sizeof kept[0]; c++) WF_SCOPE {
        g_which = kept[c];
        wf_tensor *x = wf_permute(wf_detach(wf_randn(WF_SHAPE(4, 2, 3), WF_F64)), WF_DIMS(1, 2, 0));  /* [2,3,4] strided */
        wf_set_requires_grad(x, true);
        wf_tensor *in[] = { x };
        ck_assert_msg(wf_gradcheck(f_reduce, in, 1, NULL, 1e-6, 1e-7, 1e-5) == 0, "case %d: %s", g_which, wf_error_message());
    }
    /* ties in amax share the gradient */
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 3, 3 }, WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(x, true);
        wf_backward(wf_amax(x, WF_ALL_DIMS, false), NULL, false);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 0, 0.5, 0.5 }), 3, 0);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor_reduce");
    TCase *tc = tcase_create("reduce");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reduce_values);
    tcase_add_test(tc, test_reduce_errors);
    tcase_add_test(tc, test_reduce_gradients);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
