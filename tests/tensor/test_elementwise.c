/* tests/tensor/test_elementwise.c: unary and binary ops: values, broadcasting, strides,
 * dtypes, in-place semantics and errors. Their gradcheck (finite differences) is the op
 * harness's, tests/ops/test_ops.c. */
#include "test_util.h"

typedef wf_tensor *(*unary_fn)(wf_tensor *);

static wf_tensor *gelu_none(wf_tensor *x) { return wf_gelu(x, WF_GELU_NONE); }
static wf_tensor *gelu_tanh(wf_tensor *x) { return wf_gelu(x, WF_GELU_TANH); }
static wf_tensor *clamp_m(wf_tensor *x) { return wf_clamp(x, -0.5, 0.7); }

START_TEST(test_unary_values) {
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ -2, -0.5, 0.5, 2 }, WF_SHAPE(4), WF_F64);
        ck_assert_tensor_near(wf_neg(x), ((double[]){ 2, 0.5, -0.5, -2 }), 4, 0);
        ck_assert_tensor_near(wf_abs(x), ((double[]){ 2, 0.5, 0.5, 2 }), 4, 0);
        ck_assert_tensor_near(wf_relu(x), ((double[]){ 0, 0, 0.5, 2 }), 4, 0);
        ck_assert_tensor_near(wf_exp(x), ((double[]){ exp(-2), exp(-0.5), exp(0.5), exp(2) }), 4, 1e-15);
        ck_assert_tensor_near(wf_sigmoid(x), ((double[]){ 1 / (1 + exp(2)), 1 / (1 + exp(0.5)), 1 / (1 + exp(-0.5)), 1 / (1 + exp(-2)) }), 4, 1e-15);
        ck_assert_tensor_near(wf_tanh(x), ((double[]){ tanh(-2), tanh(-0.5), tanh(0.5), tanh(2) }), 4, 1e-15);
        /* gelu(2) = 2 * Phi(2) = 1.9544997361036416 */
        ck_assert_tensor_near(wf_narrow(gelu_none(x), 0, 3, 1), ((double[]){ 1.9544997361036416 }), 1, 1e-12);
        ck_assert_tensor_near(wf_narrow(gelu_tanh(x), 0, 3, 1), ((double[]){ 1.9545976940871754 }), 1, 1e-12);
        ck_assert_tensor_near(wf_silu(x), ((double[]){ -2 / (1 + exp(2)), -0.5 / (1 + exp(0.5)), 0.5 / (1 + exp(-0.5)), 2 / (1 + exp(-2)) }), 4, 1e-15);
        ck_assert_tensor_near(clamp_m(x), ((double[]){ -0.5, -0.5, 0.5, 0.7 }), 4, 0);
        ck_assert_tensor_near(wf_sign(x), ((double[]){ -1, -1, 1, 1 }), 4, 0);
        wf_tensor *p = wf_from_data((double[]){ 1, 4, 9 }, WF_SHAPE(3), WF_F64);
        ck_assert_tensor_near(wf_sqrt(p), ((double[]){ 1, 2, 3 }), 3, 0);
        ck_assert_tensor_near(wf_rsqrt(p), ((double[]){ 1, 0.5, 1.0 / 3 }), 3, 1e-15);
        ck_assert_tensor_near(wf_log(p), ((double[]){ 0, log(4), log(9) }), 3, 1e-15);
        ck_assert_tensor_near(wf_pow_scalar(p, 0.5), ((double[]){ 1, 2, 3 }), 3, 1e-15);
        /* f32 and bf16 compute the same function within their precision */
        wf_tensor *xf = wf_to_dtype(x, WF_F32), *xb = wf_to_dtype(x, WF_BF16);
        ck_assert_tensor_near(wf_tanh(xf), ((double[]){ tanh(-2), tanh(-0.5), tanh(0.5), tanh(2) }), 4, 1e-6);
        ck_assert_tensor_near(wf_tanh(xb), ((double[]){ tanh(-2), tanh(-0.5), tanh(0.5), tanh(2) }), 4, 1e-2);
        ck_assert_int_eq(wf_tensor_dtype(wf_tanh(xb)), WF_BF16);
        /* integer inputs to float functions give floats; predicates give bool */
        wf_tensor *i = wf_arange(0, 3, 1, WF_I64);
        ck_assert_int_eq(wf_tensor_dtype(wf_exp(i)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_neg(i)), WF_I64);
        wf_tensor *inf = wf_from_data((double[]){ 1, INFINITY, NAN }, WF_SHAPE(3), WF_F64);
        ck_assert_tensor_near(wf_isfinite(inf), ((double[]){ 1, 0, 0 }), 3, 0);
        /* strided input */
        wf_tensor *m = wf_transpose(wf_reshape(wf_arange(0, 6, 1, WF_F64), WF_SHAPE(2, 3)), 0, 1);
        ck_assert_tensor_near(wf_square(m), ((double[]){ 0, 9, 1, 16, 4, 25 }), 6, 0);
    }
}
END_TEST

/* max |u - v| / max(|v|, 1e-3), both read as f64 */
static double half_rel_diff(wf_tensor *u, wf_tensor *v) {
    wf_tensor *a = wf_to_dtype(u, WF_F64), *b = wf_to_dtype(v, WF_F64);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(wf_numel(a), wf_numel(b));
    const double *pa = wf_data_ptr(a), *pb = wf_data_ptr(b);
    double worst = 0;
    for (int64_t i = 0; i < wf_numel(a); i++) {
        double d = fabs(pa[i] - pb[i]) / fmax(fabs(pb[i]), 1e-3);
        if (!(d <= worst)) worst = d;   /* NaN makes it NaN */
    }
    return worst;
}

START_TEST(test_half_contiguous_matches_strided) {
    /* Contiguous bf16/f16 operands take the f32-staged loops and the vectorized casts; the
     * same values seen through step-2 views take the element-by-element paths. Both compute
     * in f32 and round once, so they agree to one rounding (over two 256-element blocks and
     * a tail). */
    wf_dtype dts[2] = { WF_BF16, WF_F16 };
    for (int d = 0; d < 2; d++) WF_SCOPE {
        wf_dtype dt = dts[d];
        double tol = dt == WF_BF16 ? 1.0 / 128 : 1.0 / 1024;
        int64_t n = 601;
        wf_manual_seed(11 + (uint64_t)d);
        wf_tensor *wa = wf_to_dtype(wf_randn(WF_SHAPE(2 * n), WF_F32), dt);
        wf_tensor *wb = wf_to_dtype(wf_add_scalar(wf_rand(WF_SHAPE(2 * n), WF_F32), 0.5), dt);
        wf_tensor *sa = wf_slice(wa, 0, 0, 2 * n, 2), *sb = wf_slice(wb, 0, 0, 2 * n, 2);
        ck_assert(!wf_is_contiguous(sa));
        wf_tensor *ca = wf_contiguous(sa), *cb = wf_contiguous(sb);
        ck_assert(wf_is_contiguous(ca));
        unary_fn fns[] = { wf_relu, wf_exp, wf_tanh, wf_sigmoid, gelu_tanh, wf_square };
        for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
            wf_tensor *yc = fns[i](ca), *ys = fns[i](sa);
            ck_assert_int_eq(wf_tensor_dtype(yc), dt);
            ck_assert_msg(half_rel_diff(yc, ys) <= tol, "unary %zu dtype %d", i, (int)dt);
        }
        ck_assert(half_rel_diff(wf_add(ca, cb), wf_add(sa, sb)) <= tol);
        ck_assert(half_rel_diff(wf_mul(ca, cb), wf_mul(sa, sb)) <= tol);
        ck_assert(half_rel_diff(wf_div(ca, cb), wf_div(sa, sb)) <= tol);
        ck_assert(half_rel_diff(wf_mul_scalar(ca, 0.37), wf_mul_scalar(sa, 0.37)) <= tol);
        wf_tensor *one = wf_narrow(cb, 0, 5, 1);   /* broadcast operand (stride 0) */
        ck_assert(half_rel_diff(wf_sub(ca, one), wf_sub(sa, one)) <= tol);
        /* in place: y aliases x */
        wf_tensor *ip = wf_contiguous(wf_slice(wf_to_dtype(wa, WF_F32), 0, 0, 2 * n, 2));
        ip = wf_to_dtype(ip, dt);
        ck_assert_int_eq(wf_add_(ip, cb), 0);
        ck_assert(half_rel_diff(ip, wf_add(sa, sb)) <= tol);
        /* reductions accumulate in f32 or wider */
        ck_assert(half_rel_diff(wf_sum_all(ca), wf_sum_all(sa)) <= 1e-5);
        wf_tensor *m2 = wf_reshape(wf_narrow(ca, 0, 0, 600), WF_SHAPE(20, 30));
        wf_tensor *m2s = wf_transpose(wf_contiguous(wf_transpose(m2, 0, 1)), 0, 1);
        ck_assert(!wf_is_contiguous(m2s));
        ck_assert(half_rel_diff(wf_sum(m2, WF_DIMS(0), false), wf_sum(m2s, WF_DIMS(0), false)) <= 1e-5);
        /* unary backward: gradients of tanh through the staged and the strided paths */
        wf_tensor *lc = wf_detach(ca), *lw = wf_detach(wa);
        wf_set_requires_grad(lc, true);
        wf_set_requires_grad(lw, true);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_to_dtype(wf_tanh(lc), WF_F32)), NULL, false), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_to_dtype(wf_tanh(wf_slice(lw, 0, 0, 2 * n, 2)), WF_F32)), NULL, false), 0);
        ck_assert(half_rel_diff(wf_grad(lc), wf_slice(wf_grad(lw), 0, 0, 2 * n, 2)) <= tol);
        /* casts: f32 -> half -> f32 contiguous equals the strided round trip exactly */
        wf_tensor *f = wf_randn(WF_SHAPE(2 * n), WF_F32);
        wf_tensor *fs = wf_slice(f, 0, 0, 2 * n, 2);
        ck_assert(half_rel_diff(wf_to_dtype(wf_contiguous(fs), dt), wf_to_dtype(fs, dt)) == 0);
    }
    /* round to nearest even, NaN stays NaN, overflow to inf, signed zero: on the vector path */
    WF_SCOPE {
        float v[] = { 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -(1.0f + 1.0f / 256 + 1.0f / 65536), 3.4e38f, -0.0f, INFINITY, NAN };
        wf_tensor *x = wf_empty(WF_SHAPE(7), WF_F32);
        memcpy(wf_data_ptr(x), v, sizeof v);
        wf_tensor *b = wf_to_dtype(wf_to_dtype(x, WF_BF16), WF_F32);
        const float *o = wf_data_ptr(b);
        ck_assert(o[0] == 1.0f);                      /* tie, even below */
        ck_assert(o[1] == 1.0f + 4.0f / 256);         /* tie, even above */
        ck_assert(o[2] == -(1.0f + 2.0f / 256));      /* above the tie: away */
        ck_assert(isinf(o[3]) && o[3] > 0);           /* past bf16's largest: inf */
        ck_assert(o[4] == 0.0f && signbit(o[4]));
        ck_assert(isinf(o[5]));
        ck_assert(isnan(o[6]));
    }
}
END_TEST


START_TEST(test_binary_values_and_broadcast) {
    WF_SCOPE {
        wf_tensor *a = wf_from_data((double[]){ 1, 2, 3, 4, 5, 6 }, WF_SHAPE(2, 3), WF_F64);
        wf_tensor *b = wf_from_data((double[]){ 10, 20, 30 }, WF_SHAPE(3), WF_F64);
        wf_tensor *c = wf_from_data((double[]){ 2, 4 }, WF_SHAPE(2, 1), WF_F64);
        ck_assert_tensor_near(wf_add(a, b), ((double[]){ 11, 22, 33, 14, 25, 36 }), 6, 0);
        ck_assert_tensor_near(wf_sub(a, c), ((double[]){ -1, 0, 1, 0, 1, 2 }), 6, 0);
        ck_assert_tensor_near(wf_mul(b, c), ((double[]){ 20, 40, 60, 40, 80, 120 }), 6, 0);
        ck_assert_shape(wf_mul(b, c), 2, 3);
        ck_assert_tensor_near(wf_div(a, c), ((double[]){ 0.5, 1, 1.5, 1, 1.25, 1.5 }), 6, 0);
        ck_assert_tensor_near(wf_pow(c, wf_scalar(2, WF_F64)), ((double[]){ 4, 16 }), 2, 0);
        ck_assert_tensor_near(wf_maximum(a, wf_scalar(3.5, WF_F64)), ((double[]){ 3.5, 3.5, 3.5, 4, 5, 6 }), 6, 0);
        ck_assert_tensor_near(wf_minimum(a, c), ((double[]){ 1, 2, 2, 4, 4, 4 }), 6, 0);
        ck_assert_tensor_near(wf_gt(a, wf_scalar(3, WF_F64)), ((double[]){ 0, 0, 0, 1, 1, 1 }), 6, 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_eq(a, a)), WF_BOOL);
        ck_assert_tensor_near(wf_where(wf_le_scalar(a, 2), a, wf_neg(a)), ((double[]){ 1, 2, -3, -4, -5, -6 }), 6, 0);
        ck_assert_tensor_near(wf_rsub_scalar(b, 1), ((double[]){ -9, -19, -29 }), 3, 0);
        ck_assert_tensor_near(wf_rdiv_scalar(b, 60), ((double[]){ 6, 3, 2 }), 3, 0);
        /* type promotion: int + float -> float; int / int -> float (true division) */
        wf_tensor *i = wf_arange(1, 4, 1, WF_I64);
        ck_assert_int_eq(wf_tensor_dtype(wf_add(i, b)), WF_F64);
        ck_assert_int_eq(wf_tensor_dtype(wf_add(i, i)), WF_I64);
        ck_assert_tensor_near(wf_div(i, wf_full(WF_SHAPE(1), 2, WF_I64)), ((double[]){ 0.5, 1, 1.5 }), 3, 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_mul_scalar(i, 0.5)), WF_F32);
        /* large contiguous operands go through the threaded path */
        wf_tensor *big = wf_ones(WF_SHAPE(100000), WF_F32);
        ck_assert_double_eq(wf_item(wf_sum_all(wf_add(big, big))), 200000);
        /* empty tensors */
        wf_tensor *e = wf_add(wf_zeros(WF_SHAPE(0, 3), WF_F32), wf_ones(WF_SHAPE(3), WF_F32));
        ck_assert_shape(e, 0, 3);
    }
}
END_TEST

START_TEST(test_binary_errors) {
    WF_SCOPE {
        wf_tensor *a = wf_zeros(WF_SHAPE(2, 3), WF_F32), *b = wf_zeros(WF_SHAPE(4), WF_F32);
        ck_assert_ptr_null(wf_mul(a, b));
        ck_assert_error(WF_ESHAPE, "[2,3] and [4]");
        ck_assert_ptr_null(wf_sub(wf_ones(WF_SHAPE(2), WF_BOOL), wf_ones(WF_SHAPE(2), WF_BOOL)));
        ck_assert_error(WF_EDTYPE, "wf_sub");
        ck_assert_ptr_null(wf_where(NULL, a, a));
        ck_assert_error(WF_ENULL, "wf_where");
        ck_assert_int_eq(wf_add_(b, a), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_add_");
        ck_assert_int_eq(wf_add_(wf_zeros(WF_SHAPE(2), WF_I64), wf_ones(WF_SHAPE(2), WF_F32)), WF_EDTYPE);
        ck_assert_error(WF_EDTYPE, "wf_add_");
        ck_assert_ptr_null(wf_clamp(a, 1, 0));
        ck_assert_error(WF_EINVAL, "wf_clamp");
    }
}
END_TEST

START_TEST(test_inplace) {
    WF_SCOPE {
        wf_tensor *a = wf_from_data((double[]){ 1, 2, 3 }, WF_SHAPE(3), WF_F64);
        ck_assert_int_eq(wf_add_(a, wf_scalar(1, WF_F64)), 0);
        ck_assert_int_eq(wf_mul_scalar_(a, 2), 0);
        ck_assert_int_eq(wf_add_scaled_(a, wf_ones(WF_SHAPE(3), WF_F64), -0.5), 0);
        ck_assert_tensor_near(a, ((double[]){ 3.5, 5.5, 7.5 }), 3, 0);
        ck_assert_int_eq(wf_relu_(wf_neg(a)), 0);
        /* a leaf that requires grad refuses in-place ops unless grad mode is off */
        wf_tensor *w = wf_ones(WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(w, true);
        ck_assert_int_eq(wf_mul_scalar_(w, 2), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "leaf");
        WF_NO_GRAD { ck_assert_int_eq(wf_mul_scalar_(w, 2), 0); }
        ck_assert_tensor_near(w, ((double[]){ 2, 2, 2 }), 3, 0);
        /* in place on a non-leaf keeps the gradient right: y = (w*3); y += w; y *= w */
        wf_tensor *y = wf_mul_scalar(w, 3);
        ck_assert_int_eq(wf_add_(y, w), 0);
        ck_assert_int_eq(wf_mul_(y, w), 0);      /* y = 4w * w = 4 w^2 -> dy/dw = 8w = 16 */
        ck_assert_str_eq(wf_grad_fn_name(y), "MulBackward");
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 16, 16, 16 }), 3, 1e-12);
    }
}
END_TEST


/* every in-place and scalar-comparison form, by hand, and their bad inputs */
START_TEST(test_inplace_and_scalar_forms) {
    WF_SCOPE {
        wf_tensor *a = wf_from_data((double[]){ 1, 4, 9 }, WF_SHAPE(3), WF_F64);
        wf_tensor *b = wf_from_data((double[]){ 1, 2, 3 }, WF_SHAPE(3), WF_F64);
        ck_assert_int_eq(wf_sub_(a, b), 0);                       /* 0 2 6 */
        ck_assert_int_eq(wf_div_(a, wf_scalar(2, WF_F64)), 0);     /* 0 1 3 */
        ck_assert_tensor_near(a, ((double[]){ 0, 1, 3 }), 3, 0);
        ck_assert_int_eq(wf_clamp_(a, 0.5, 2), 0);
        ck_assert_tensor_near(a, ((double[]){ 0.5, 1, 2 }), 3, 0);
        ck_assert_int_eq(wf_zero_(a), 0);
        ck_assert_tensor_near(a, ((double[]){ 0, 0, 0 }), 3, 0);
        ck_assert_tensor_near(wf_sub_scalar(b, 1), ((double[]){ 0, 1, 2 }), 3, 0);
        ck_assert_tensor_near(wf_minimum_scalar(b, 2), ((double[]){ 1, 2, 2 }), 3, 0);
        ck_assert_tensor_near(wf_eq_scalar(b, 2), ((double[]){ 0, 1, 0 }), 3, 0);
        ck_assert_tensor_near(wf_ne_scalar(b, 2), ((double[]){ 1, 0, 1 }), 3, 0);
        ck_assert_tensor_near(wf_lt_scalar(b, 2), ((double[]){ 1, 0, 0 }), 3, 0);
        ck_assert_tensor_near(wf_ge_scalar(b, 2), ((double[]){ 0, 1, 1 }), 3, 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_ge_scalar(b, 2)), WF_BOOL);
        /* bad inputs: clear errors naming the op */
        ck_assert_int_eq(wf_clamp_(a, 2, 1), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "wf_clamp_");
        ck_assert_int_eq(wf_div_(a, wf_zeros(WF_SHAPE(4), WF_F64)), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_div_");
        ck_assert_int_eq(wf_sub_(NULL, b), WF_ENULL);
        ck_assert_error(WF_ENULL, "wf_sub_");
        ck_assert_int_eq(wf_zero_(NULL), WF_ENULL);
        ck_assert_error(WF_ENULL, "wf_fill_");
        ck_assert_ptr_null(wf_lt_scalar(NULL, 1));
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor_elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_unary_values);
    tcase_add_test(tc, test_half_contiguous_matches_strided);
    tcase_add_test(tc, test_binary_values_and_broadcast);
    tcase_add_test(tc, test_binary_errors);
    tcase_add_test(tc, test_inplace);
    tcase_add_test(tc, test_inplace_and_scalar_forms);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
