/* tests/tensor/test_views.c: views share storage, their geometry, and their gradients. */
#include "test_util.h"

static wf_tensor *iota(int64_t n, const int64_t *shape, int nd) {
    wf_tensor *a = wf_arange(0, (double)n, 1, WF_F64);
    return wf_reshape(a, shape, nd);
}

START_TEST(test_view_geometry) {
    WF_SCOPE {
        wf_tensor *x = iota(6, WF_SHAPE(2, 3));
        wf_tensor *t = wf_transpose(x, 0, 1);
        ck_assert_shape(t, 3, 2);
        ck_assert(!wf_is_contiguous(t));
        ck_assert_tensor_near(t, ((double[]){ 0, 3, 1, 4, 2, 5 }), 6, 0);
        ck_assert_tensor_near(wf_contiguous(t), ((double[]){ 0, 3, 1, 4, 2, 5 }), 6, 0);
        /* a view of a transposed tensor needs a copy: view refuses, reshape copies */
        ck_assert_ptr_null(wf_view(t, WF_SHAPE(6)));
        ck_assert_error(WF_ESHAPE, "wf_view");
        ck_assert_tensor_near(wf_reshape(t, WF_SHAPE(6)), ((double[]){ 0, 3, 1, 4, 2, 5 }), 6, 0);
        ck_assert_shape(wf_view(x, WF_SHAPE(3, -1)), 3, 2);
        ck_assert_ptr_null(wf_view(x, WF_SHAPE(4, -1)));
        ck_assert_error(WF_ESHAPE, "wf_view");
        wf_tensor *s = wf_slice(iota(10, WF_SHAPE(10)), 0, 1, 9, 3);
        ck_assert_tensor_near(s, ((double[]){ 1, 4, 7 }), 3, 0);
        ck_assert_tensor_near(wf_slice(iota(10, WF_SHAPE(10)), 0, -3, 100, 1), ((double[]){ 7, 8, 9 }), 3, 0);
        ck_assert_tensor_near(wf_select(x, 1, -1), ((double[]){ 2, 5 }), 2, 0);
        ck_assert_tensor_near(wf_narrow(x, 1, 1, 2), ((double[]){ 1, 2, 4, 5 }), 4, 0);
        ck_assert_shape(wf_unsqueeze(x, 1), 2, 1, 3);
        ck_assert_shape(wf_unsqueeze(x, -1), 2, 3, 1);
        ck_assert_shape(wf_squeeze(wf_unsqueeze(x, 0), 0), 2, 3);
        ck_assert_shape(wf_squeeze_all(wf_zeros(WF_SHAPE(1, 2, 1, 3), WF_F32)), 2, 3);
        ck_assert_shape(wf_flatten(wf_zeros(WF_SHAPE(2, 3, 4, 5), WF_F32), 1, 2), 2, 12, 5);
        wf_tensor *e = wf_expand(wf_from_data((double[]){ 1, 2 }, WF_SHAPE(2, 1), WF_F64), WF_SHAPE(2, 3));
        ck_assert_tensor_near(e, ((double[]){ 1, 1, 1, 2, 2, 2 }), 6, 0);
        ck_assert_int_eq(wf_strides(e)[1], 0);
        wf_tensor *p = wf_permute(wf_zeros(WF_SHAPE(2, 3, 4), WF_F32), WF_DIMS(2, 0, 1));
        ck_assert_shape(p, 4, 2, 3);
        /* views share storage: writing through one is seen through the other */
        wf_tensor *row = wf_select(x, 0, 1);
        ck_assert_int_eq(wf_fill_(row, 9), 0);
        ck_assert_tensor_near(x, ((double[]){ 0, 1, 2, 9, 9, 9 }), 6, 0);
        wf_tensor *c = wf_clone(x);
        wf_fill_(c, 0);
        ck_assert_double_eq(wf_item(wf_sum_all(x)), 30);
        /* copy_ broadcasts and casts */
        wf_tensor *d = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        ck_assert_int_eq(wf_copy_(d, wf_from_data((double[]){ 1, 2, 3 }, WF_SHAPE(3), WF_F64)), 0);
        ck_assert_tensor_near(d, ((double[]){ 1, 2, 3, 1, 2, 3 }), 6, 0);
    }
}
END_TEST

START_TEST(test_view_errors) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        ck_assert_ptr_null(wf_transpose(x, 0, 2));
        ck_assert_error(WF_EINDEX, "wf_transpose");
        ck_assert_ptr_null(wf_narrow(x, 1, 2, 2));
        ck_assert_error(WF_EINDEX, "wf_narrow");
        ck_assert_ptr_null(wf_select(x, 0, 2));
        ck_assert_error(WF_EINDEX, "wf_select");
        ck_assert_ptr_null(wf_permute(x, WF_DIMS(0, 0)));
        ck_assert_error(WF_EINDEX, "wf_permute");
        ck_assert_ptr_null(wf_expand(x, WF_SHAPE(4, 3)));
        ck_assert_error(WF_ESHAPE, "wf_expand");
        ck_assert_ptr_null(wf_slice(x, 0, 0, 2, 0));
        ck_assert_error(WF_EINVAL, "wf_slice");
        ck_assert_int_eq(wf_copy_(x, wf_zeros(WF_SHAPE(3, 3), WF_F32)), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_copy_");
        ck_assert_ptr_null(wf_flatten(x, 1, 0));
        ck_assert_error(WF_EINDEX, "wf_flatten");
    }
}
END_TEST

static wf_tensor *f_view_chain(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *x = in[0];                              /* [2,3,4] */
    wf_tensor *a = wf_transpose(x, 0, 2);              /* [4,3,2] */
    wf_tensor *b = wf_reshape(a, WF_SHAPE(4, 6));      /* copies */
    wf_tensor *c = wf_slice(b, 1, 1, 6, 2);            /* [4,3] */
    wf_tensor *d = wf_select(wf_unsqueeze(c, 0), 0, 0);
    wf_tensor *e = wf_expand(wf_unsqueeze(wf_narrow(d, 0, 1, 2), 0), WF_SHAPE(3, 2, 3));
    wf_tensor *f = wf_flatten(wf_permute(e, WF_DIMS(2, 0, 1)), 0, -1);
    return wf_mul(f, f);
}

START_TEST(test_view_gradients) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(2, 3, 4), WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *in[] = { x };
        ck_assert_msg(wf_gradcheck(f_view_chain, in, 1, NULL, 1e-6, 1e-6, 1e-4) == 0, "%s", wf_error_message());
    }
}
END_TEST

static wf_tensor *f_copy(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *z = wf_zeros(WF_SHAPE(2, 3), WF_F64);
    wf_copy_(z, in[0]);                               /* broadcast [3] -> [2,3] */
    return wf_mul(z, wf_exp(z));
}

START_TEST(test_copy_and_cast_gradients) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *in[] = { x };
        ck_assert_msg(wf_gradcheck(f_copy, in, 1, NULL, 1e-6, 1e-6, 1e-4) == 0, "%s", wf_error_message());
        /* through a cast to f32 and back the gradient returns in f64 */
        wf_set_grad(x, NULL);
        wf_tensor *y = wf_sum_all(wf_to_dtype(wf_mul_scalar(x, 3.0), WF_F32));
        ck_assert_int_eq(wf_backward(y, NULL, false), 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(x)), WF_F64);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 3, 3, 3 }), 3, 0);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor_views");
    TCase *tc = tcase_create("views");
    tcase_add_test(tc, test_view_geometry);
    tcase_add_test(tc, test_view_errors);
    tcase_add_test(tc, test_view_gradients);
    tcase_add_test(tc, test_copy_and_cast_gradients);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
