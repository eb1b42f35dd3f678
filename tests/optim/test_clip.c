/* tests/optim/test_clip.c: clip_grad_norm_ (p = 2, 1, inf, 3), the returned norm, the
 * non-finite error that leaves gradients untouched, and clip_grad_value_. */
#include "test_util.h"
#include "weft/optim.h"

typedef struct fx { wf_tensor *p[3]; } fx;

/* grads [3, -4], [12], and a parameter with no gradient */
static fx make(double g2) {
    fx f;
    f.p[0] = wf_zeros(WF_SHAPE(2), WF_F64);
    f.p[1] = wf_zeros(WF_SHAPE(1), WF_F32);
    f.p[2] = wf_zeros(WF_SHAPE(4), WF_F64);
    double a[] = { 3, -4 };
    float b[] = { (float)g2 };
    wf_tensor *ga = wf_from_data(a, WF_SHAPE(2), WF_F64), *gb = wf_from_data(b, WF_SHAPE(1), WF_F32);
    wf_set_grad(f.p[0], ga);
    wf_set_grad(f.p[1], gb);
    wf_tensor_free(ga);
    wf_tensor_free(gb);
    return f;
}
static void fx_free(fx *f) { for (int i = 0; i < 3; i++) wf_tensor_free(f->p[i]); }

START_TEST(test_norms) {
    struct { double p, total; } cases[] = { { 2, 13 }, { 1, 19 }, { INFINITY, 12 }, { 3, cbrt(27.0 + 64 + 1728) } };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fx f = make(12);
        double total = -1, max_norm = 2.5;
        ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, max_norm, cases[k].p, true, &total), 0);
        ck_assert_double_eq_tol(total, cases[k].total, 1e-5);   /* one gradient is f32 */
        double c = max_norm / (cases[k].total + 1e-6);
        ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 3 * c, -4 * c }), 2, 1e-6);
        ck_assert_tensor_near(wf_grad(f.p[1]), ((double[]){ 12 * c }), 1, 1e-6);
        ck_assert_ptr_null(wf_grad(f.p[2]));
        fx_free(&f);
    }
    /* below the limit: untouched */
    fx f = make(12);
    double total;
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 100, 2, false, &total), 0);
    ck_assert_double_eq_tol(total, 13, 1e-12);
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 3, -4 }), 2, 0);
    ck_assert_tensor_near(wf_grad(f.p[1]), ((double[]){ 12 }), 1, 0);
    /* total_norm may be NULL; no grads at all gives 0 */
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 1, 2, false, NULL), 0);
    ck_assert_int_eq(wf_clip_grad_norm_(f.p + 2, 1, 1, 2, false, &total), 0);
    ck_assert_double_eq(total, 0);
    ck_assert_int_eq(wf_clip_grad_norm_(NULL, 0, 1, 2, false, &total), 0);
    fx_free(&f);
}
END_TEST

START_TEST(test_nonfinite) {
    fx f = make(INFINITY);
    double total = 0;
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 1.0, 2, true, &total), WF_ENONFINITE);
    ck_assert(isinf(total));
    ck_assert_error(WF_ENONFINITE, "non-finite");
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 3, -4 }), 2, 0);   /* untouched */
    /* PyTorch without the check: scaled by max_norm / inf = 0 (inf * 0 = nan) */
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 1.0, 2, false, &total), 0);
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 0, 0 }), 2, 0);
    ck_assert(isnan(wf_item(wf_grad(f.p[1]))));
    fx_free(&f);
    f = make(NAN);
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 1.0, INFINITY, true, &total), WF_ENONFINITE);
    ck_assert(isnan(total));
    wf_clear_error();
    fx_free(&f);
}
END_TEST

START_TEST(test_value_and_errors) {
    fx f = make(12);
    ck_assert_int_eq(wf_clip_grad_value_(f.p, 3, 3.5), 0);
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 3, -3.5 }), 2, 0);
    ck_assert_tensor_near(wf_grad(f.p[1]), ((double[]){ 3.5 }), 1, 0);
    ck_assert_int_eq(wf_clip_grad_value_(f.p, 3, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "clip_value");
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, 1, 0, false, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "norm_type");
    ck_assert_int_eq(wf_clip_grad_norm_(f.p, 3, -1, 2, false, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "max_norm");
    ck_assert_int_eq(wf_clip_grad_norm_(NULL, 2, 1, 2, false, NULL), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_clip_grad_norm_");
    ck_assert_int_eq(wf_clip_grad_value_(NULL, 2, 1), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_clip_grad_value_");
    fx_free(&f);
}
END_TEST

/* clipping a real backward pass, then a step */
START_TEST(test_with_backward) {
    wf_tensor *w = wf_ones(WF_SHAPE(4), WF_F32);
    wf_set_requires_grad(w, true);
    WF_SCOPE {
        wf_tensor *loss = wf_sum_all(wf_mul_scalar(w, 10.0));   /* grad 10 each, norm 20 */
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    }
    double total;
    ck_assert_int_eq(wf_clip_grad_norm_(&w, 1, 1.0, 2, true, &total), 0);
    ck_assert_double_eq_tol(total, 20, 1e-5);
    double c = 10 / (20 + 1e-6);
    ck_assert_tensor_near(wf_grad(w), ((double[]){ c, c, c, c }), 4, 1e-6);
    wf_tensor_free(w);
}
END_TEST

Suite *clip_suite(void) {
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_norms);
    tcase_add_test(tc, test_nonfinite);
    tcase_add_test(tc, test_value_and_errors);
    tcase_add_test(tc, test_with_backward);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(clip_suite()); }
