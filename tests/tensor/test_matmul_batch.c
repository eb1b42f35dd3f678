/* tests/tensor/test_matmul_batch.c: a batched product over views whose batch dims do not run
 * on with one stride (attention's q, k, v as views of a packed [B, T, 3, H, D] projection)
 * is one GEMM call, forward and backward, with the values of a naive loop. The count is the
 * kernel table's (tensor_impl.h: wf__op_calls counts every GEMM launch), so the test fails
 * when such a product is split per batch item again (issue 15: 384 launches per product). */
#include "test_util.h"
#include "weft_config.h"

#include "tensor/tensor_impl.h"

#ifdef WEFT_MINIMAL   /* the minimal preset does not count calls (tensor_impl.h): values only */
#define ck_assert_calls(delta, n) ((void)(delta))
#else
#define ck_assert_calls(delta, n) ck_assert_uint_eq((delta), (n))
#endif

enum { B = 3, T = 5, H = 4, D = 6 };

static unsigned gemm_calls(void) {
    return atomic_load(&wf__op_calls[0][wf__op_index(WF_OPF_KERNEL, WF_K_GEMM)]);
}

/* element [b, t, which, h, d] of the packed projection */
static double qkv_at(const double *p, int b, int t, int which, int h, int d) {
    return p[((((int64_t)b * T + t) * 3 + which) * H + h) * D + d];
}

/* q, k or v ([B, H, T, D]) as a view of qkv [B, T, 3, H, D], the way attention takes them */
static wf_tensor *head_view(wf_tensor *qkv, int which) {
    return wf_permute(wf_select(qkv, 2, which), (int[]){ 0, 2, 1, 3 }, 4);
}

START_TEST(attention_products_are_one_gemm) {
    static double p[B * T * 3 * H * D];
    tt_fill(p, B * T * 3 * H * D, 15);
    WF_SCOPE {
        wf_tensor *qkv = tt_f64(p, WF_SHAPE(B, T, 3, H, D));
        wf_tensor *q = head_view(qkv, 0), *k = head_view(qkv, 1), *v = head_view(qkv, 2);
        ck_assert_ptr_nonnull(v);

        unsigned c0 = gemm_calls();
        wf_tensor *s = wf_matmul(q, wf_transpose(k, -2, -1));
        ck_assert_shape(s, B, H, T, T);
        ck_assert_calls(gemm_calls() - c0, 1);
        static double es[B * H * T * T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++)
                    for (int j = 0; j < T; j++) {
                        double acc = 0;
                        for (int d = 0; d < D; d++) acc += qkv_at(p, b, i, 0, h, d) * qkv_at(p, b, j, 1, h, d);
                        es[((b * H + h) * T + i) * T + j] = acc;
                    }
        ck_assert_tensor_near(s, es, B * H * T * T, 1e-13);

        c0 = gemm_calls();
        wf_tensor *o = wf_matmul(s, v);
        ck_assert_shape(o, B, H, T, D);
        ck_assert_calls(gemm_calls() - c0, 1);
        static double eo[B * H * T * D];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++)
                    for (int d = 0; d < D; d++) {
                        double acc = 0;
                        for (int j = 0; j < T; j++) acc += es[((b * H + h) * T + i) * T + j] * qkv_at(p, b, j, 2, h, d);
                        eo[((b * H + h) * T + i) * D + d] = acc;
                    }
        ck_assert_tensor_near(o, eo, B * H * T * D, 1e-12);

        /* the view with an offset (k starts H*D elements into the storage) read as stored */
        wf_tensor *kk = wf_matmul(k, wf_transpose(k, -2, -1));
        ck_assert_ptr_nonnull(kk);
        double d00 = 0;
        for (int d = 0; d < D; d++) d00 += qkv_at(p, 2, 3, 1, 1, d) * qkv_at(p, 2, 3, 1, 1, d);
        ck_assert_double_eq_tol(wf_item(wf_select(wf_select(wf_select(wf_select(kk, 0, 2), 0, 1), 0, 3), 0, 3)), d00,
                                1e-13);
    }
}
END_TEST

/* (q @ k^T) @ v through autograd: 2 GEMMs forward, 4 backward (each operand's gradient), and
 * the gradient equals that of the same products on contiguous copies. */
START_TEST(attention_backward_is_one_gemm_per_product) {
    static double p[B * T * 3 * H * D], w[B * H * T * D];
    tt_fill(p, B * T * 3 * H * D, 7);
    tt_fill(w, B * H * T * D, 8);
    WF_SCOPE {
        wf_tensor *wt = tt_f64(w, WF_SHAPE(B, H, T, D));
        wf_tensor *qkv = tt_leaf(p, WF_SHAPE(B, T, 3, H, D));
        wf_tensor *q = head_view(qkv, 0), *k = head_view(qkv, 1), *v = head_view(qkv, 2);
        unsigned c0 = gemm_calls();
        wf_tensor *o = wf_matmul(wf_matmul(q, wf_transpose(k, -2, -1)), v);
        ck_assert_calls(gemm_calls() - c0, 2);
        wf_tensor *loss = wf_sum(wf_mul(o, wt), WF_ALL_DIMS, false);
        ck_assert_ptr_nonnull(loss);
        c0 = gemm_calls();
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
        ck_assert_calls(gemm_calls() - c0, 4);
        wf_tensor *g = wf_grad(qkv);
        ck_assert_ptr_nonnull(g);

        wf_tensor *ref = tt_leaf(p, WF_SHAPE(B, T, 3, H, D));
        wf_tensor *qc = wf_contiguous(head_view(ref, 0)), *kc = wf_contiguous(head_view(ref, 1)),
                  *vc = wf_contiguous(head_view(ref, 2));
        wf_tensor *oc = wf_matmul(wf_matmul(qc, wf_transpose(kc, -2, -1)), vc);
        tt_assert_close(o, oc, 1e-13);
        ck_assert_int_eq(wf_backward(wf_sum(wf_mul(oc, wt), WF_ALL_DIMS, false), NULL, false), 0);
        tt_assert_close(g, wf_grad(ref), 1e-12);
    }
}
END_TEST

/* A batch that broadcasts in one dim only is not materialized: one call per outer item, and
 * the values still right. */
START_TEST(partial_broadcast_keeps_the_loop) {
    static double pa[2 * 3 * 2 * 4], pb[1 * 3 * 4 * 5];
    tt_fill(pa, 2 * 3 * 2 * 4, 1);
    tt_fill(pb, 3 * 4 * 5, 2);
    WF_SCOPE {
        /* a [2, 3, 2, 4] as a permuted view (batch strides do not chain), b [1, 3, 4, 5] */
        wf_tensor *a = wf_permute(tt_f64(pa, WF_SHAPE(3, 2, 2, 4)), (int[]){ 1, 0, 2, 3 }, 4);
        wf_tensor *b = tt_f64(pb, WF_SHAPE(1, 3, 4, 5));
        unsigned c0 = gemm_calls();
        wf_tensor *y = wf_matmul(a, b);
        ck_assert_shape(y, 2, 3, 2, 5);
        ck_assert_calls(gemm_calls() - c0, 2);
        static double e[2 * 3 * 2 * 5];
        for (int i = 0; i < 2; i++)
            for (int h = 0; h < 3; h++)
                for (int r = 0; r < 2; r++)
                    for (int c = 0; c < 5; c++) {
                        double acc = 0;
                        for (int x = 0; x < 4; x++) acc += pa[((h * 2 + i) * 2 + r) * 4 + x] * pb[(h * 4 + x) * 5 + c];
                        e[((i * 3 + h) * 2 + r) * 5 + c] = acc;
                    }
        ck_assert_tensor_near(y, e, 2 * 3 * 2 * 5, 1e-13);
    }
}
END_TEST

START_TEST(bad_inputs) {
    WF_SCOPE {
        wf_tensor *qkv = wf_zeros(WF_SHAPE(B, T, 3, H, D), WF_F64);
        wf_tensor *q = head_view(qkv, 0), *k = head_view(qkv, 1);
        /* q @ k without the transpose: [.., T, D] @ [.., T, D] */
        ck_assert_ptr_null(wf_matmul(q, k));
        ck_assert_error(WF_ESHAPE, "inner dimensions differ (6 vs 5)");
        ck_assert_ptr_null(wf_matmul(q, wf_to_dtype(wf_transpose(k, -2, -1), WF_F32)));
        ck_assert_error(WF_EDTYPE, "dtype mismatch");
        /* batch dims that do not broadcast */
        ck_assert_ptr_null(wf_matmul(q, wf_zeros(WF_SHAPE(2, H, D, T), WF_F64)));
        ck_assert_int_eq(wf_error(), WF_ESHAPE);
        wf_clear_error();
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("matmul_batch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, attention_products_are_one_gemm);
    tcase_add_test(tc, attention_backward_is_one_gemm_per_product);
    tcase_add_test(tc, partial_broadcast_keeps_the_loop);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
