/* tests/nn/test_sdpa_math.c: attention's composed path (wf_scaled_dot_product_attention when
 * the fused kernel does not run: dropout, the CPU) with its scale and causal mask applied
 * inside the softmax (wf__softmax_attn, issue 15). Checked against the composition it replaced
 * (matmul, * scale, where(tril, ., -inf), softmax, matmul) in values and gradients, with and
 * without dropout; the raw softmax on shapes with L != S, in half precision, under autocast,
 * and its bad inputs. */
#include "test_util.h"

#include "autograd/autograd_api.h"

/* the old composition: softmax(where(j <= i, scale * q @ k^T, -inf)) [dropout] @ v */
static wf_tensor *sdpa_by_where(wf_tensor *q, wf_tensor *k, wf_tensor *v, double p, bool causal) {
    int64_t L = wf_shape(q)[wf_ndim(q) - 2], S = wf_shape(k)[wf_ndim(k) - 2];
    double scale = 1.0 / sqrt((double)wf_shape(q)[wf_ndim(q) - 1]);
    wf_tensor *s = wf_mul_scalar(wf_matmul(q, wf_transpose(k, -2, -1)), scale);
    if (causal) {
        wf_tensor *allowed = wf_le(wf_reshape(wf_arange(0, (double)S, 1, WF_I64), WF_SHAPE(1, S)),
                                   wf_reshape(wf_arange(0, (double)L, 1, WF_I64), WF_SHAPE(L, 1)));
        s = wf_where(allowed, s, wf_full_like(s, -INFINITY));
    }
    wf_tensor *a = wf_softmax(s, -1);
    if (p > 0) a = wf_dropout(a, p, true);
    return wf_matmul(a, v);
}

START_TEST(sdpa_matches_the_where_composition) {
    static double pq[2 * 3 * 5 * 4], pk[2 * 3 * 5 * 4], pv[2 * 3 * 5 * 4], pw[2 * 3 * 5 * 4];
    tt_fill(pq, 120, 1), tt_fill(pk, 120, 2), tt_fill(pv, 120, 3), tt_fill(pw, 120, 4);
    for (int causal = 0; causal < 2; causal++)
        for (int drop = 0; drop < 2; drop++) WF_SCOPE {
            double p = drop ? 0.3 : 0.0;
            wf_tensor *w = tt_f64(pw, WF_SHAPE(2, 3, 5, 4));
            wf_tensor *q = tt_leaf(pq, WF_SHAPE(2, 3, 5, 4)), *k = tt_leaf(pk, WF_SHAPE(2, 3, 5, 4)),
                      *v = tt_leaf(pv, WF_SHAPE(2, 3, 5, 4));
            wf_manual_seed(42);
            wf_tensor *y = wf_scaled_dot_product_attention(q, k, v, NULL, p, causal);
            ck_assert_shape(y, 2, 3, 5, 4);
            ck_assert_int_eq(wf_backward(wf_sum(wf_mul(y, w), WF_ALL_DIMS, false), NULL, false), 0);

            wf_tensor *q2 = tt_leaf(pq, WF_SHAPE(2, 3, 5, 4)), *k2 = tt_leaf(pk, WF_SHAPE(2, 3, 5, 4)),
                      *v2 = tt_leaf(pv, WF_SHAPE(2, 3, 5, 4));
            wf_manual_seed(42);   /* the same dropout mask: one draw of the same shape */
            wf_tensor *y2 = sdpa_by_where(q2, k2, v2, p, causal);
            ck_assert_int_eq(wf_backward(wf_sum(wf_mul(y2, w), WF_ALL_DIMS, false), NULL, false), 0);
            tt_assert_close(y, y2, 1e-14);
            tt_assert_close(wf_grad(q), wf_grad(q2), 1e-13);
            tt_assert_close(wf_grad(k), wf_grad(k2), 1e-13);
            tt_assert_close(wf_grad(v), wf_grad(v2), 1e-13);
        }
}
END_TEST

static wf_tensor *attn_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    const double *sc = ud;
    return wf__softmax_attn(in[0], sc[0], true, sc[1]);
}

/* scores [2, L, S] for L < S, L == S, L > S: the kept entries j <= i, each row's softmax of
 * scale * x over them, 0 elsewhere; the gradient by finite differences */
START_TEST(softmax_attn_values_and_gradient) {
    static const int64_t shapes[3][2] = { { 3, 5 }, { 4, 4 }, { 5, 2 } };
    for (int c = 0; c < 3; c++) WF_SCOPE {
        int64_t L = shapes[c][0], S = shapes[c][1];
        double x[2 * 5 * 5], e[2 * 5 * 5], scale = 0.7, scales[2] = { 0.7, 1.25 };
        tt_fill(x, 2 * L * S, 10 + (unsigned)c);
        for (int b = 0; b < 2; b++)
            for (int64_t i = 0; i < L; i++) {
                const double *r = x + (b * L + i) * S;
                double m = -INFINITY, s = 0;
                for (int64_t j = 0; j <= i && j < S; j++) m = fmax(m, scale * r[j]);
                for (int64_t j = 0; j <= i && j < S; j++) s += exp(scale * r[j] - m);
                for (int64_t j = 0; j < S; j++) e[(b * L + i) * S + j] = j <= i ? exp(scale * r[j] - m) / s : 0.0;
            }
        wf_tensor *xt = tt_leaf(x, WF_SHAPE(2, L, S));
        wf_tensor *y = wf__softmax_attn(xt, scale, true, 1.0);
        ck_assert_shape(y, 2, L, S);
        int64_t n = 2 * L * S;
        ck_assert_tensor_near(y, e, n, 1e-15);
        /* the output scale (dropout's 1 / (1 - p)) multiplies the weights; gradients of both */
        tt_assert_close(wf__softmax_attn(xt, scale, true, 1.25), wf_mul_scalar(y, 1.25), 1e-15);
        ck_assert_int_eq(wf_gradcheck(attn_fn, &xt, 1, (double[]){ scale, 1.0 }, 1e-6, 1e-8, 1e-6), 0);
        ck_assert_int_eq(wf_gradcheck(attn_fn, &xt, 1, scales, 1e-6, 1e-8, 1e-6), 0);
        /* not causal: softmax(scale * x) over whole rows */
        tt_assert_close(wf__softmax_attn(xt, scale, false, 1.0), wf_softmax(wf_mul_scalar(xt, scale), -1), 1e-15);
    }
}
END_TEST

/* the half kernels: f16 / bf16 scores give the f64 values within their rounding, masked
 * entries exactly 0 */
START_TEST(softmax_attn_half) {
    double x[6 * 6];
    tt_fill(x, 36, 20);
    const wf_dtype dts[2] = { WF_F16, WF_BF16 };
    for (int d = 0; d < 2; d++) WF_SCOPE {
        wf_tensor *ref = wf__softmax_attn(tt_f64(x, WF_SHAPE(6, 6)), 0.5, true, 1.0);
        wf_tensor *h = wf__softmax_attn(wf_to_dtype(tt_f64(x, WF_SHAPE(6, 6)), dts[d]), 0.5, true, 1.0);
        ck_assert_int_eq(wf_tensor_dtype(h), dts[d]);
        double v[36], r[36];
        ck_assert_int_eq(wf_to_array(h, v, WF_F64), 0);
        ck_assert_int_eq(wf_to_array(ref, r, WF_F64), 0);
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                if (j > i) ck_assert(v[i * 6 + j] == 0.0);
                else ck_assert_double_eq_tol(v[i * 6 + j], r[i * 6 + j], d ? 1e-2 : 2e-3);
            }
    }
}
END_TEST

/* under autocast the composed attention computes in the low dtype, as torch's sdpa (one
 * low-precision op): y in bf16, close to the f32 result, gradients back in f32 */
START_TEST(sdpa_under_autocast) {
    static double pq[2 * 6 * 8];
    tt_fill(pq, 96, 30);
    WF_SCOPE {
        wf_tensor *q = wf_detach(wf_to_dtype(tt_f64(pq, WF_SHAPE(2, 6, 8)), WF_F32));
        ck_assert_int_eq(wf_set_requires_grad(q, true), 0);
        wf_tensor *ref = wf_scaled_dot_product_attention(q, q, q, NULL, 0.0, true);
        ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
        wf_tensor *y = wf_scaled_dot_product_attention(q, q, q, NULL, 0.1, true);
        wf_tensor *y0 = wf_scaled_dot_product_attention(q, q, q, NULL, 0.0, true);
        ck_assert_int_eq(wf_autocast_end(), 0);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(y0), WF_BF16);
        tt_assert_close(y0, ref, 2e-2);
        ck_assert_int_eq(wf_backward(wf_sum(wf_to_dtype(y, WF_F32), WF_ALL_DIMS, false), NULL, false), 0);
        ck_assert_ptr_nonnull(wf_grad(q));
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(q)), WF_F32);
    }
}
END_TEST

/* unchanged semantics of the masked path: a row with every key masked out gives NaN (the
 * math path's softmax of an all -inf row), as before */
START_TEST(fully_masked_row_is_nan) {
    WF_SCOPE {
        wf_tensor *q = wf_ones(WF_SHAPE(1, 2, 3), WF_F64);
        bool mv[4] = { false, false, true, true };   /* row 0: nothing allowed */
        wf_tensor *mask = wf_from_data(mv, WF_SHAPE(2, 2), WF_BOOL);
        wf_tensor *kv = wf_ones(WF_SHAPE(1, 2, 3), WF_F64);
        wf_tensor *y = wf_scaled_dot_product_attention(q, kv, kv, mask, 0.0, true);
        double v[6];
        ck_assert_int_eq(wf_to_array(y, v, WF_F64), 0);
        for (int j = 0; j < 3; j++) ck_assert(isnan(v[j]));
        for (int j = 3; j < 6; j++) ck_assert_double_eq_tol(v[j], 1.0, 1e-15);
    }
}
END_TEST

/* dropout_p = 1 drops every weight: y = 0, and the gradients 0 */
START_TEST(dropout_one_gives_zero) {
    static double pq[2 * 3 * 4];
    tt_fill(pq, 24, 40);
    WF_SCOPE {
        wf_tensor *q = tt_leaf(pq, WF_SHAPE(2, 3, 4));
        wf_tensor *y = wf_scaled_dot_product_attention(q, q, q, NULL, 1.0, true);
        static const double zero[24];
        ck_assert_tensor_near(y, zero, 24, 0);
        ck_assert_int_eq(wf_backward(wf_sum(y, WF_ALL_DIMS, false), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(q), zero, 24, 0);
    }
}
END_TEST

START_TEST(bad_inputs) {
    WF_SCOPE {
        ck_assert_ptr_null(wf__softmax_attn(NULL, 1.0, true, 1.0));
        ck_assert_int_eq(wf_error(), WF_ENULL);
        wf_clear_error();
        ck_assert_ptr_null(wf__softmax_attn(wf_ones(WF_SHAPE(4), WF_F32), 1.0, true, 1.0));
        ck_assert_error(WF_ESHAPE, "at least 2 dims");
        ck_assert_ptr_null(wf__softmax_attn(wf_ones(WF_SHAPE(2, 2), WF_I64), 1.0, true, 1.0));
        ck_assert_error(WF_EDTYPE, "int64");
        ck_assert_ptr_null(wf__softmax_attn(wf_ones(WF_SHAPE(2, 2), WF_F32), NAN, false, 1.0));
        ck_assert_error(WF_EINVAL, "scale nan is not finite");
        ck_assert_ptr_null(wf__softmax_attn(wf_ones(WF_SHAPE(2, 2), WF_F32), 1.0, false, 0.0));
        ck_assert_error(WF_EINVAL, "out_scale 0 is not a positive finite number");
        ck_assert_ptr_null(wf__softmax_attn(wf_ones(WF_SHAPE(2, 2), WF_F32), 1.0, false, INFINITY));
        ck_assert_error(WF_EINVAL, "out_scale inf");
        /* sdpa's own checks run before the composition */
        wf_tensor *q = wf_ones(WF_SHAPE(2, 3, 4), WF_F32);
        ck_assert_ptr_null(wf_scaled_dot_product_attention(q, q, q, NULL, 1.5, true));
        ck_assert_error(WF_EINVAL, "dropout_p 1.5");
        ck_assert_ptr_null(wf_scaled_dot_product_attention(q, wf_ones(WF_SHAPE(2, 3, 5), WF_F32), q, NULL, 0.0, true));
        ck_assert_error(WF_ESHAPE, "do not fit");
        /* a product that fails inside the composition keeps its own message */
        ck_assert_ptr_null(wf_scaled_dot_product_attention(q, wf_ones(WF_SHAPE(3, 3, 4), WF_F32), q, NULL, 0.2, true));
        ck_assert_int_eq(wf_error(), WF_ESHAPE);
        ck_assert_msg(strstr(wf_error_message(), "wf_matmul") != NULL, "message: %s", wf_error_message());
        wf_clear_error();
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("sdpa_math");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sdpa_matches_the_where_composition);
    tcase_add_test(tc, softmax_attn_values_and_gradient);
    tcase_add_test(tc, softmax_attn_half);
    tcase_add_test(tc, sdpa_under_autocast);
    tcase_add_test(tc, fully_masked_row_is_nan);
    tcase_add_test(tc, dropout_one_gives_zero);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
