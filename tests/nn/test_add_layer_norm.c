/* tests/nn/test_add_layer_norm.c: wf_add_layer_norm's contract on the CPU (its kernel,
 * tensor/cpu/layer_norm.c): the sum as a second output with its own gradient, the gradients
 * in x's and r's dtypes, the composed fallback (autocast, meta), and the bad inputs; and
 * wf_add_bias_layer_norm's (the branch's bias added in the same node, its gradient summed by
 * the kernel). Values and finite differences on every backend: tests/ops (add_layer_norm and
 * add_bias_layer_norm rows). */
#include "test_util.h"
#include "weft_config.h"

#include <string.h>

/* the minimal preset composes it (tensor/ops.def): the same values, other nodes */
#ifdef WEFT_MINIMAL
#define ck_assert_fused(t) ((void)(t))
#else
#define ck_assert_fused(t) ck_assert_str_eq(wf_grad_fn_name(t), "AddLayerNormBackward")
#endif

static wf_tensor *leaf(wf_tensor *t) {
    t = wf_detach(t);
    wf_set_requires_grad(t, true);
    return t;
}

START_TEST(sum_and_norm_in_one_node) {
    WF_SCOPE {
        wf_manual_seed(3);
        wf_tensor *x = leaf(wf_randn(WF_SHAPE(3, 5), WF_F32));
        wf_tensor *r = leaf(wf_to_dtype(wf_randn(WF_SHAPE(3, 5), WF_F32), WF_BF16));
        wf_tensor *w = leaf(wf_randn(WF_SHAPE(5), WF_F32)), *b = leaf(wf_randn(WF_SHAPE(5), WF_F32));
        wf_tensor *s = NULL, *y = wf_add_layer_norm(x, r, WF_SHAPE(5), w, b, 1e-5, &s);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_fused(y);
        ck_assert_fused(s);   /* one node, two outputs */
        ck_assert_int_eq(wf_tensor_dtype(s), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
        tt_assert_close(s, wf_add(x, r), 0);
        tt_assert_close(y, wf_layer_norm(wf_add(x, r), WF_SHAPE(5), w, b, 1e-5), 1e-5);

        /* loss = sum(y * g) + 3 sum(s): x and r get d(layer norm) + 3, the composed path's */
        wf_tensor *g = wf_randn(WF_SHAPE(3, 5), WF_F32);
        ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(y, g)), wf_mul_scalar(wf_sum_all(s), 3)), NULL, false), 0);
        wf_tensor *xu = leaf(x), *ru = leaf(r), *wu = leaf(w), *bu = leaf(b), *su = wf_add(xu, ru);
        wf_tensor *yu = wf_layer_norm(su, WF_SHAPE(5), wu, bu, 1e-5);
        ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(yu, g)), wf_mul_scalar(wf_sum_all(su), 3)), NULL, false), 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(x)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(r)), WF_BF16);   /* written in r's dtype by the kernel */
        tt_assert_close(wf_grad(x), wf_grad(xu), 1e-5);
        tt_assert_close(wf_grad(r), wf_grad(ru), 1e-2);           /* one bf16 rounding apart at most */
        tt_assert_close(wf_grad(w), wf_grad(wu), 1e-5);
        tt_assert_close(wf_grad(b), wf_grad(bu), 1e-5);
    }
}
END_TEST

START_TEST(sum_not_taken) {
    WF_SCOPE {
        wf_tensor *x = leaf(wf_randn(WF_SHAPE(2, 4), WF_F64)), *r = leaf(wf_randn(WF_SHAPE(2, 4), WF_F64));
        wf_tensor *y = wf_add_layer_norm(x, r, WF_SHAPE(4), NULL, NULL, 1e-5, NULL);
        ck_assert_msg(y != NULL, "%s", wf_error_message());
        ck_assert_fused(y);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y, y)), NULL, false), 0);
        tt_assert_close(wf_grad(x), wf_grad(r), 0);   /* one gradient for both */
        ck_assert(wf_grad(x) != NULL);
    }
}
END_TEST

START_TEST(composes_where_not_fusable) {
    WF_SCOPE {
        /* autocast runs the norm of a bf16 sum in f32: the composed path, as x + r then layer_norm */
        wf_tensor *x = wf_to_dtype(wf_randn(WF_SHAPE(2, 4), WF_F32), WF_BF16), *r = wf_zeros_like(x), *s = NULL;
        ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
        wf_tensor *y = wf_add_layer_norm(x, r, WF_SHAPE(4), NULL, NULL, 1e-5, &s);
        wf_autocast_end();
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(s), WF_BF16);
        /* an f64 branch on an f32 stream: x + r is f64, so s is too (composed) */
        wf_tensor *x32 = wf_randn(WF_SHAPE(2, 4), WF_F32), *r64 = wf_randn(WF_SHAPE(2, 4), WF_F64);
        y = wf_add_layer_norm(x32, r64, WF_SHAPE(4), NULL, NULL, 1e-5, &s);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(s), WF_F64);
        /* meta: shapes only */
        wf_tensor *xm = wf_zeros_on(WF_SHAPE(3, 6), WF_F32, WF_META), *rm = wf_zeros_on(WF_SHAPE(3, 6), WF_BF16, WF_META);
        y = wf_add_layer_norm(xm, rm, WF_SHAPE(6), NULL, NULL, 1e-5, &s);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_shape(y, 3, 6);
        ck_assert_shape(s, 3, 6);
    }
}
END_TEST

START_TEST(bad_inputs) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 4), WF_F32), *s = x;
        ck_assert_ptr_null(wf_add_layer_norm(x, wf_zeros(WF_SHAPE(2, 3), WF_F32), WF_SHAPE(4), NULL, NULL, 1e-5, &s));
        ck_assert_ptr_null(s);   /* *sum is NULL on error */
        ck_assert_error(WF_ESHAPE, "x of shape [2,4] and r of shape [2,3] differ");
        ck_assert_ptr_null(wf_add_layer_norm(x, wf_zeros(WF_SHAPE(4), WF_F32), WF_SHAPE(4), NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_ESHAPE, "does not broadcast");
        ck_assert_ptr_null(wf_add_layer_norm(x, x, WF_SHAPE(3), NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_ESHAPE, "does not end with normalized_shape [3]");
        ck_assert_ptr_null(wf_add_layer_norm(x, x, WF_SHAPE(4), wf_ones(WF_SHAPE(3), WF_F32), NULL, 1e-5, NULL));
        ck_assert_error(WF_ESHAPE, "weight of shape [3]");
        ck_assert_ptr_null(wf_add_layer_norm(x, x, NULL, 1, NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_EINVAL, "normalized_shape");
        wf_tensor *xi = wf_zeros(WF_SHAPE(2, 4), WF_I64);
        ck_assert_ptr_null(wf_add_layer_norm(x, xi, WF_SHAPE(4), NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_EDTYPE, "needs a floating r, got int64");
        ck_assert_ptr_null(wf_add_layer_norm(xi, x, WF_SHAPE(4), NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_EDTYPE, "needs a floating input, got int64");
        ck_assert_ptr_null(wf_add_layer_norm(NULL, x, WF_SHAPE(4), NULL, NULL, 1e-5, NULL));
        ck_assert_error(WF_ENULL, "wf_add_layer_norm");
    }
}
END_TEST

/* r + r_bias as the op forms it: in f32 in the kernel; the minimal preset composes it, so a bf16
 * r_bias's r + r_bias rounds to bf16 there */
static wf_tensor *branch(wf_tensor *r, wf_tensor *rb) {
#ifdef WEFT_MINIMAL
    return wf_add(r, rb);
#else
    return wf_add(wf_to_dtype(r, WF_F32), wf_to_dtype(rb, WF_F32));
#endif
}

/* x + (r + r_bias) in one node: values and the five gradients against the composed ops, r_bias
 * of x's dtype (the GPT's f32 bias beside a bf16 branch) and of r's */
START_TEST(bias_in_the_add) {
    WF_SCOPE {
        wf_manual_seed(5);
        for (int k = 0; k < 2; k++) {
            wf_tensor *x = leaf(wf_randn(WF_SHAPE(3, 2, 6), WF_F32));
            wf_tensor *r = leaf(wf_to_dtype(wf_randn(WF_SHAPE(3, 2, 6), WF_F32), WF_BF16));
            wf_tensor *rb = leaf(wf_to_dtype(wf_randn(WF_SHAPE(6), WF_F32), k ? WF_BF16 : WF_F32));
            wf_tensor *w = leaf(wf_randn(WF_SHAPE(6), WF_F32)), *b = leaf(wf_randn(WF_SHAPE(6), WF_F32));
            wf_tensor *s = NULL, *y = wf_add_bias_layer_norm(x, r, rb, WF_SHAPE(6), w, b, 1e-5, &s, WF_DTYPE_DEFAULT);
            ck_assert_msg(y && s, "%s", wf_error_message());
            ck_assert_fused(y);
            ck_assert_fused(s);
            ck_assert_int_eq(wf_tensor_dtype(s), WF_F32);
            ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
            wf_tensor *rr = branch(r, rb);
            tt_assert_close(s, wf_add(x, rr), 1e-6);
            tt_assert_close(y, wf_layer_norm(wf_add(x, rr), WF_SHAPE(6), w, b, 1e-5), 1e-5);

            wf_tensor *g = wf_randn(WF_SHAPE(3, 2, 6), WF_F32);
            ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(y, g)), wf_mul_scalar(wf_sum_all(s), 3)), NULL, false), 0);
            wf_tensor *xu = leaf(x), *ru = leaf(r), *rbu = leaf(rb), *wu = leaf(w), *bu = leaf(b);
            wf_tensor *su = wf_add(xu, branch(ru, rbu));
            wf_tensor *yu = wf_layer_norm(su, WF_SHAPE(6), wu, bu, 1e-5);
            ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(yu, g)), wf_mul_scalar(wf_sum_all(su), 3)), NULL, false), 0);
            ck_assert_int_eq(wf_tensor_dtype(wf_grad(r)), WF_BF16);
            ck_assert_int_eq(wf_tensor_dtype(wf_grad(rb)), wf_tensor_dtype(rb));   /* in r_bias's dtype */
            tt_assert_close(wf_grad(x), wf_grad(xu), 1e-5);
            tt_assert_close(wf_grad(r), wf_grad(ru), 1e-2);
            tt_assert_close(wf_grad(rb), wf_grad(rbu), k ? 5e-2 : 1e-5);   /* the column sums of x's gradient */
            tt_assert_close(wf_grad(rb), wf_sum(wf_grad(xu), (int[]){ 0, 1 }, 2, false), k ? 5e-2 : 1e-5);
            tt_assert_close(wf_grad(w), wf_grad(wu), 1e-5);
            tt_assert_close(wf_grad(b), wf_grad(bu), 1e-5);
        }
    }
}
END_TEST

/* r_bias NULL is wf_add_layer_norm_out_dtype, bit for bit, gradients too; r_bias only (x and r
 * constants) still gets its gradient */
START_TEST(no_bias_same_bits) {
    WF_SCOPE {
        wf_manual_seed(6);
        wf_tensor *x = leaf(wf_randn(WF_SHAPE(5, 8), WF_F32)), *r = leaf(wf_randn(WF_SHAPE(5, 8), WF_F32));
        wf_tensor *w = wf_randn(WF_SHAPE(8), WF_F32), *b = wf_randn(WF_SHAPE(8), WF_F32);
        wf_tensor *s1 = NULL, *y1 = wf_add_bias_layer_norm(x, r, NULL, WF_SHAPE(8), w, b, 1e-5, &s1, WF_BF16);
        wf_tensor *x2 = leaf(x), *r2 = leaf(r);
        wf_tensor *s2 = NULL, *y2 = wf_add_layer_norm_out_dtype(x2, r2, WF_SHAPE(8), w, b, 1e-5, &s2, WF_BF16);
        ck_assert_msg(y1 && y2, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y1), WF_BF16);
        tt_assert_close(y1, y2, 0);
        tt_assert_close(s1, s2, 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y1, y1)), NULL, false), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y2, y2)), NULL, false), 0);
        tt_assert_close(wf_grad(x), wf_grad(x2), 0);
        tt_assert_close(wf_grad(r), wf_grad(r2), 0);

        wf_tensor *xc = wf_randn(WF_SHAPE(5, 8), WF_F32), *rc = wf_randn(WF_SHAPE(5, 8), WF_F32);
        wf_tensor *rb = leaf(wf_randn(WF_SHAPE(8), WF_F32)), *rbu = leaf(rb);
        wf_tensor *y = wf_add_bias_layer_norm(xc, rc, rb, WF_SHAPE(8), w, b, 1e-5, NULL, WF_DTYPE_DEFAULT);
        wf_tensor *yu = wf_layer_norm(wf_add(xc, wf_add(rc, rbu)), WF_SHAPE(8), w, b, 1e-5);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y, wf_mul(y, y))), NULL, false), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(yu, wf_mul(yu, yu))), NULL, false), 0);
        tt_assert_close(wf_grad(rb), wf_grad(rbu), 1e-5);
    }
}
END_TEST

START_TEST(bias_composes_where_not_fusable) {
    WF_SCOPE {
        wf_manual_seed(7);
        /* a strided r_bias (a column): r + r_bias first, then the fused add */
        wf_tensor *x = wf_randn(WF_SHAPE(3, 4), WF_F32), *r = wf_randn(WF_SHAPE(3, 4), WF_F32);
        wf_tensor *rb2 = leaf(wf_randn(WF_SHAPE(4, 2), WF_F32)), *rb = wf_select(rb2, 1, 1), *s = NULL;
        ck_assert(!wf_is_contiguous(rb));
        wf_tensor *y = wf_add_bias_layer_norm(x, r, rb, WF_SHAPE(4), NULL, NULL, 1e-5, &s, WF_DTYPE_DEFAULT);
        ck_assert_msg(y && s, "%s", wf_error_message());
        tt_assert_close(s, wf_add(x, wf_add(r, rb)), 0);
        tt_assert_close(y, wf_layer_norm(s, WF_SHAPE(4), NULL, NULL, 1e-5), 1e-5);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y, y)), NULL, false), 0);
        ck_assert_ptr_nonnull(wf_grad(rb2));
        /* autocast: as wf_add_layer_norm_out_dtype there (a bf16 stream composed, its norm in f32) */
        wf_tensor *xh = wf_to_dtype(x, WF_BF16), *rh = wf_to_dtype(r, WF_BF16), *rbh = wf_to_dtype(wf_randn(WF_SHAPE(4), WF_F32), WF_BF16);
        ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
        wf_tensor *s2 = NULL, *y1 = wf_add_bias_layer_norm(xh, rh, rbh, WF_SHAPE(4), NULL, NULL, 1e-5, &s, WF_BF16);
        wf_tensor *y2 = wf_add_layer_norm_out_dtype(xh, wf_add(rh, rbh), WF_SHAPE(4), NULL, NULL, 1e-5, &s2, WF_BF16);
        wf_autocast_end();
        ck_assert_msg(y1 && y2, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y1), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(s), WF_BF16);
        tt_assert_close(y1, y2, 0);
        tt_assert_close(s, s2, 0);
        /* meta: shapes only */
        wf_tensor *xm = wf_zeros_on(WF_SHAPE(3, 6), WF_F32, WF_META), *rm = wf_zeros_on(WF_SHAPE(3, 6), WF_BF16, WF_META);
        y = wf_add_bias_layer_norm(xm, rm, wf_zeros_on(WF_SHAPE(6), WF_F32, WF_META), WF_SHAPE(6), NULL, NULL, 1e-5, &s,
                                   WF_DTYPE_DEFAULT);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_shape(y, 3, 6);
        ck_assert_shape(s, 3, 6);
    }
}
END_TEST

START_TEST(bias_bad_inputs) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 4), WF_F32), *r = wf_zeros(WF_SHAPE(2, 4), WF_BF16), *s = x;
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(3), WF_F32), WF_SHAPE(4), NULL, NULL, 1e-5, &s,
                                                  WF_DTYPE_DEFAULT));
        ck_assert_ptr_null(s);
        ck_assert_error(WF_ESHAPE, "wf_add_bias_layer_norm: r_bias of shape [3] is not [4], the normalized size of x of shape [2,4]");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(1, 4), WF_F32), WF_SHAPE(4), NULL, NULL, 1e-5, NULL,
                                                  WF_DTYPE_DEFAULT));
        ck_assert_error(WF_ESHAPE, "r_bias of shape [1,4] is not [4]");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(4), WF_F32), WF_SHAPE(2, 4), NULL, NULL, 1e-5, NULL,
                                                  WF_DTYPE_DEFAULT));
        ck_assert_error(WF_ESHAPE, "r_bias needs one normalized dim (ndim 1), got ndim 2");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(4), WF_F64), WF_SHAPE(4), NULL, NULL, 1e-5, NULL,
                                                  WF_DTYPE_DEFAULT));
        ck_assert_error(WF_EDTYPE, "r_bias of float64 must have r's dtype (bfloat16) or x's (float32)");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(4), WF_I64), WF_SHAPE(4), NULL, NULL, 1e-5, NULL,
                                                  WF_DTYPE_DEFAULT));
        ck_assert_error(WF_EDTYPE, "r_bias of int64");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, r, wf_zeros(WF_SHAPE(4), WF_F32), WF_SHAPE(4), NULL, NULL, 1e-5, NULL,
                                                  WF_BOOL));
        ck_assert_error(WF_EDTYPE, "wf_add_bias_layer_norm: out_dtype");
        ck_assert_ptr_null(wf_add_bias_layer_norm(NULL, r, NULL, WF_SHAPE(4), NULL, NULL, 1e-5, NULL, WF_DTYPE_DEFAULT));
        ck_assert_error(WF_ENULL, "wf_add_bias_layer_norm");
        ck_assert_ptr_null(wf_add_bias_layer_norm(x, wf_zeros(WF_SHAPE(2, 3), WF_F32), wf_zeros(WF_SHAPE(4), WF_F32),
                                                  WF_SHAPE(4), NULL, NULL, 1e-5, NULL, WF_DTYPE_DEFAULT));
        ck_assert_error(WF_ESHAPE, "wf_add_bias_layer_norm: x of shape [2,4] and r of shape [2,3] differ");
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("add_layer_norm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sum_and_norm_in_one_node);
    tcase_add_test(tc, sum_not_taken);
    tcase_add_test(tc, composes_where_not_fusable);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, bias_in_the_add);
    tcase_add_test(tc, no_bias_same_bits);
    tcase_add_test(tc, bias_composes_where_not_fusable);
    tcase_add_test(tc, bias_bad_inputs);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
