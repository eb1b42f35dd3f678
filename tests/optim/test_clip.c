/* tests/optim/test_clip.c: clip_grad_norm_ (p = 2, 1, inf, 3), the returned norm, the
 * non-finite error that leaves gradients untouched, the one-pass CPU path (several chunks,
 * independent of the thread count) and the per-tensor path for strided gradients,
 * wf_clip_grad_norm_tensor_, and clip_grad_value_. */
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


/* the one-pass CPU path: several f32/f64 gradients longer than one chunk, against sums in
 * plain loops; the result must not depend on the thread count (fixed chunk order) */
enum { NG = 5 };
static const int64_t GS[NG] = { 1, 16384, 16385, 50000, 100003 };
static void big_grads(wf_tensor **p, double **vals) {
    for (int j = 0; j < NG; j++) {
        wf_dtype dt = j % 2 ? WF_F32 : WF_F64;
        p[j] = wf_zeros(WF_SHAPE(GS[j]), dt);
        vals[j] = malloc(sizeof(double) * (size_t)GS[j]);
        for (int64_t i = 0; i < GS[j]; i++) {
            double v = sin(0.37 * (double)i + j) * (1 + j);
            vals[j][i] = dt == WF_F32 ? (double)(float)v : v;
        }
        wf_tensor *g = wf_from_data(vals[j], WF_SHAPE(GS[j]), WF_F64), *gc = wf_to_dtype(g, dt);
        wf_set_grad(p[j], gc);
        wf_tensor_free(g), wf_tensor_free(gc);
    }
}
static void big_free(wf_tensor **p, double **vals) {
    for (int j = 0; j < NG; j++) wf_tensor_free(p[j]), free(vals[j]);
}

START_TEST(test_one_pass_large) {
    const double types[] = { 2, 1, 3, INFINITY };
    int threads0 = wf_get_num_threads();
    for (int k = 0; k < 4; k++) {
        double pt = types[k], totals[2];
        for (int th = 0; th < 2; th++) {
            wf_set_num_threads(th ? 2 : 1);
            wf_tensor *p[NG];
            double *vals[NG];
            big_grads(p, vals);
            double acc = 0;
            for (int j = 0; j < NG; j++)
                for (int64_t i = 0; i < GS[j]; i++) {
                    double a = fabs(vals[j][i]);
                    if (isinf(pt)) acc = a > acc ? a : acc;
                    else acc += pt == 2 ? a * a : pt == 1 ? a : pow(a, pt);
                }
            double want = isinf(pt) ? acc : pt == 2 ? sqrt(acc) : pt == 1 ? acc : pow(acc, 1 / pt);
            ck_assert_int_eq(wf_clip_grad_norm_(p, NG, 0.5, pt, true, &totals[th]), 0);
            ck_assert_msg(fabs(totals[th] - want) <= 1e-9 * want, "p=%g: total %.17g, expected %.17g", pt, totals[th], want);
            double c = 0.5 / (totals[th] + 1e-6);
            for (int j = 0; j < NG; j++) {   /* every element scaled, in the gradient's dtype */
                double *got = malloc(sizeof(double) * (size_t)GS[j]);
                wf_to_array(wf_grad(p[j]), got, WF_F64);
                for (int64_t i = 0; i < GS[j]; i += 997) {
                    double e = j % 2 ? (double)((float)vals[j][i] * (float)c) : vals[j][i] * c;
                    ck_assert_msg(got[i] == e, "p=%g grad %d elem %lld: %.17g vs %.17g", pt, j, (long long)i, got[i], e);
                }
                free(got);
            }
            big_free(p, vals);
        }
        ck_assert_msg(totals[0] == totals[1], "p=%g: 1 thread %.17g, 2 threads %.17g", pt, totals[0], totals[1]);
    }
    wf_set_num_threads(threads0);
}
END_TEST

/* a strided gradient takes the per-tensor path: the same total as its contiguous copy */
START_TEST(test_strided_gradient) {
    wf_tensor *a = wf_zeros(WF_SHAPE(3, 2), WF_F32), *b = wf_zeros(WF_SHAPE(3, 2), WF_F32);
    float v[6] = { 1, 2, 3, 4, 5, 6 };
    wf_tensor *g = wf_from_data(v, WF_SHAPE(2, 3), WF_F32), *gt = wf_transpose(g, 0, 1), *gc = wf_contiguous(gt);
    ck_assert(!wf_is_contiguous(gt));
    wf_set_grad(a, gt);
    wf_set_grad(b, gc);
    double ta, tb;
    ck_assert_int_eq(wf_clip_grad_norm_(&a, 1, 1.0, 2, true, &ta), 0);
    ck_assert_int_eq(wf_clip_grad_norm_(&b, 1, 1.0, 2, true, &tb), 0);
    ck_assert_double_eq_tol(ta, sqrt(91.0), 1e-5);
    ck_assert_double_eq_tol(ta, tb, 1e-5);
    double ga[6], gb[6];
    wf_to_array(wf_grad(a), ga, WF_F64);
    wf_to_array(wf_grad(b), gb, WF_F64);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(ga[i], gb[i], 1e-7);
    wf_tensor_free(g), wf_tensor_free(gt), wf_tensor_free(gc), wf_tensor_free(a), wf_tensor_free(b);
}
END_TEST

/* wf_clip_grad_norm_tensor_: the norm as a tensor, the same clipping, no error for non-finite */
START_TEST(test_tensor_variant) {
    fx f = make(12);
    wf_tensor *t = wf_clip_grad_norm_tensor_(f.p, 3, 1.0, 2);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(wf_ndim(t), 0);
    ck_assert_int_eq(wf_tensor_dtype(t), WF_F64);   /* the first gradient's */
    ck_assert_double_eq_tol(wf_item(t), 13, 1e-5);
    double c = 1.0 / (13 + 1e-6);
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 3 * c, -4 * c }), 2, 1e-6);
    ck_assert_tensor_near(wf_grad(f.p[1]), ((double[]){ 12 * c }), 1, 1e-6);
    wf_tensor_free(t);
    fx_free(&f);

    f = make(INFINITY);   /* no error: the norm says inf, the gradients are scaled by 0 */
    t = wf_clip_grad_norm_tensor_(f.p, 3, 1.0, 2);
    ck_assert_ptr_nonnull(t);
    ck_assert(isinf(wf_item(t)));
    ck_assert_tensor_near(wf_grad(f.p[0]), ((double[]){ 0, 0 }), 2, 0);
    wf_tensor_free(t);

    t = wf_clip_grad_norm_tensor_(f.p + 2, 1, 1.0, 2);   /* no gradient: 0 */
    ck_assert_ptr_nonnull(t);
    ck_assert_double_eq(wf_item(t), 0);
    wf_tensor_free(t);

    ck_assert_ptr_null(wf_clip_grad_norm_tensor_(f.p, 3, 1.0, -2));
    ck_assert_error(WF_EINVAL, "norm_type");
    ck_assert_ptr_null(wf_clip_grad_norm_tensor_(f.p, 3, NAN, 2));
    ck_assert_error(WF_EINVAL, "max_norm");
    ck_assert_ptr_null(wf_clip_grad_norm_tensor_(NULL, 1, 1.0, 2));
    ck_assert_error(WF_ENULL, "wf_clip_grad_norm_tensor_");
    ck_assert_ptr_null(wf_clip_grad_norm_tensor_(f.p, -1, 1.0, 2));
    ck_assert_error(WF_EINVAL, "negative");
    fx_free(&f);
}
END_TEST

Suite *clip_suite(void) {
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_norms);
    tcase_add_test(tc, test_nonfinite);
    tcase_add_test(tc, test_value_and_errors);
    tcase_add_test(tc, test_with_backward);
    tcase_add_test(tc, test_one_pass_large);
    tcase_add_test(tc, test_strided_gradient);
    tcase_add_test(tc, test_tensor_variant);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(clip_suite()); }
