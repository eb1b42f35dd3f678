/* tests/nn/test_attention.c: scaled dot product attention, MultiheadAttention (PyTorch's
 * names and conventions) and the GPT-style causal self-attention block. */
#include "test_util.h"
#include "weft/nn.h"

START_TEST(test_sdpa_causal_by_hand) {
    WF_SCOPE {
        /* one head, L = S = 2, E = 1 (scale 1): q = [1, 2], k = [1, 0], v = [[1, 2], [3, 4]] */
        wf_tensor *q = wf_from_data((double[]){ 1, 2 }, WF_SHAPE(1, 2, 1), WF_F64);
        wf_tensor *k = wf_from_data((double[]){ 1, 0 }, WF_SHAPE(1, 2, 1), WF_F64);
        wf_tensor *v = wf_from_data((double[]){ 1, 2, 3, 4 }, WF_SHAPE(1, 2, 2), WF_F64);
        /* row 0 sees only key 0: v0. row 1: scores [2, 0] -> weights [e^2, 1] / (e^2 + 1) */
        double w0 = exp(2) / (exp(2) + 1), w1 = 1 / (exp(2) + 1);
        double expect[] = { 1, 2, w0 * 1 + w1 * 3, w0 * 2 + w1 * 4 };
        ck_assert_tensor_near(wf_scaled_dot_product_attention(q, k, v, NULL, 0, true), expect, 4, 1e-12);
        /* the same with an explicit bool mask (true = takes part) and with a float mask */
        wf_tensor *bm = wf_from_data((bool[]){ true, false, true, true }, WF_SHAPE(2, 2), WF_BOOL);
        ck_assert_tensor_near(wf_scaled_dot_product_attention(q, k, v, bm, 0, false), expect, 4, 1e-12);
        wf_tensor *fm = wf_from_data((double[]){ 0, -INFINITY, 0, 0 }, WF_SHAPE(2, 2), WF_F64);
        ck_assert_tensor_near(wf_scaled_dot_product_attention(q, k, v, fm, 0, false), expect, 4, 1e-12);
        /* no mask: row 0 scores [1, 0] */
        double a0 = exp(1) / (exp(1) + 1), a1 = 1 / (exp(1) + 1);
        wf_tensor *y = wf_scaled_dot_product_attention(q, k, v, NULL, 0, false);
        ck_assert_tensor_near(wf_narrow(y, 1, 0, 1), ((double[]){ a0 + 3 * a1, 2 * a0 + 4 * a1 }), 2, 1e-12);
        /* scale 1/sqrt(E) with E = 4 */
        wf_tensor *q4 = wf_full(WF_SHAPE(1, 4), 1.0, WF_F64), *k4 = wf_from_data((double[]){ 1, 1, 1, 1, 0, 0, 0, 0 }, WF_SHAPE(2, 4), WF_F64);
        wf_tensor *v4 = wf_from_data((double[]){ 1, 0 }, WF_SHAPE(2, 1), WF_F64);
        ck_assert_tensor_near(wf_scaled_dot_product_attention(q4, k4, v4, NULL, 0, false),
                              ((double[]){ exp(2) / (exp(2) + 1) }), 1, 1e-12);
        ck_assert_ptr_null(wf_scaled_dot_product_attention(q, wf_zeros(WF_SHAPE(1, 2, 3), WF_F64), v, NULL, 0, false));
        ck_assert_error(WF_ESHAPE, "wf_scaled_dot_product_attention");
    }
}
END_TEST

static wf_tensor *sdpa_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    return wf_scaled_dot_product_attention(in[0], in[1], in[2], NULL, 0, true);
}

START_TEST(test_sdpa_gradcheck) {
    WF_SCOPE {
        wf_tensor *in[3] = { wf_randn(WF_SHAPE(2, 3, 4), WF_F64), wf_randn(WF_SHAPE(2, 3, 4), WF_F64),
                             wf_randn(WF_SHAPE(2, 3, 2), WF_F64) };
        for (int i = 0; i < 3; i++) wf_set_requires_grad(in[i], true);
        ck_assert_msg(wf_gradcheck(sdpa_fn, in, 3, NULL, 1e-6, 1e-5, 1e-4) == 0, "%s", wf_error_message());
    }
}
END_TEST

static void identity_mha(wf_module *m, int64_t E) {
    wf_tensor *w = wf_module_get_parameter(m, "in_proj_weight");
    WF_SCOPE {
        wf_tensor *eye = wf_eye(E, E, WF_F64);
        wf_tensor *cat = wf_cat((wf_tensor *[]){ eye, eye, eye }, 3, 0);
        WF_NO_GRAD {
            wf_copy_(w, cat);
            wf_copy_(wf_module_get_parameter(m, "out_proj.weight"), eye);
        }
    }
}

START_TEST(test_mha) {
    wf_manual_seed(5);
    wf_module *m = wf_mha_new(4, 2, NULL);
    ck_assert_ptr_nonnull(m);
    const char *names[8];
    wf_tensor *ps[8];
    ck_assert_int_eq(wf_module_parameters(m, ps, names, 8), 4);
    ck_assert_str_eq(names[0], "in_proj_weight");
    ck_assert_str_eq(names[1], "in_proj_bias");
    ck_assert_str_eq(names[2], "out_proj.weight");
    ck_assert_str_eq(names[3], "out_proj.bias");
    ck_assert_shape(ps[0], 12, 4);
    ck_assert_shape(ps[1], 12);
    WF_SCOPE {
        ck_assert_double_eq(wf_item(wf_sum_all(wf_abs(ps[1]))), 0);
        ck_assert_double_eq(wf_item(wf_sum_all(wf_abs(ps[3]))), 0);
        /* xavier bound sqrt(6 / (12 + 4)) */
        ck_assert_double_le(wf_item(wf_amax(wf_abs(ps[0]), WF_ALL_DIMS, false)), sqrt(6.0 / 16.0) + 1e-7);
    }
    ck_assert_int_eq(wf_module_to(m, WF_CPU, WF_F64), 0);
    identity_mha(m, 4);
    WF_SCOPE {
        /* identity projections: each head attends over its 2 channels with scale 1/sqrt(2) */
        wf_tensor *x = wf_randn(WF_SHAPE(3, 1, 4), WF_F64);           /* [L, N, E] */
        wf_tensor *y = wf_mha_forward(m, x, x, x, NULL, true);
        ck_assert_shape(y, 3, 1, 4);
        wf_tensor *xb = wf_transpose(x, 0, 1);                         /* [1, 3, 4] */
        wf_tensor *h = wf_transpose(wf_reshape(xb, WF_SHAPE(1, 3, 2, 2)), 1, 2);
        wf_tensor *ref = wf_scaled_dot_product_attention(h, h, h, NULL, 0, true);
        ref = wf_transpose(wf_reshape(wf_transpose(ref, 1, 2), WF_SHAPE(1, 3, 4)), 0, 1);
        double rv[12];
        wf_to_array(ref, rv, WF_F64);
        ck_assert_tensor_near(y, rv, 12, 1e-12);
        /* bool attn_mask: true = NOT allowed (upper triangle) equals is_causal */
        wf_tensor *mask = wf_from_data((bool[]){ 0, 1, 1, 0, 0, 1, 0, 0, 0 }, WF_SHAPE(3, 3), WF_BOOL);
        ck_assert_tensor_near(wf_mha_forward(m, x, x, x, mask, false), rv, 12, 1e-12);
        /* batch_first gives the same numbers transposed; self-attention through wf_module_forward */
        wf_tensor *ys = wf_module_forward(m, x);
        ck_assert_shape(ys, 3, 1, 4);
        ck_assert_ptr_null(wf_mha_forward(m, x, x, wf_zeros(WF_SHAPE(3, 1, 5), WF_F64), NULL, false));
        ck_assert_error(WF_ESHAPE, "MultiheadAttention(embed_dim=4, num_heads=2");
        ck_assert_ptr_null(wf_mha_forward(m, x, x, x, wf_zeros(WF_SHAPE(2, 3), WF_BOOL), false));
        ck_assert_error(WF_ESHAPE, "attn_mask");
    }
    wf_module_free(m);
    wf_module *bf = wf_mha_new(4, 1, &(wf_mha_opts){ .batch_first = true, .no_bias = true });
    ck_assert_int_eq(wf_module_parameters(bf, NULL, NULL, 0), 2);
    ck_assert_int_eq(wf_module_to(bf, WF_CPU, WF_F64), 0);
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(2, 3, 4), WF_F64);   /* [N, L, E] */
        wf_tensor *y = wf_module_forward(bf, x);
        ck_assert_shape(y, 2, 3, 4);
        /* unbatched [L, E] equals batch element 0 */
        wf_tensor *y0 = wf_module_forward(bf, wf_select(x, 0, 0));
        double r[12];
        wf_to_array(wf_select(y, 0, 0), r, WF_F64);
        ck_assert_tensor_near(y0, r, 12, 1e-12);
    }
    wf_module_free(bf);
    ck_assert_ptr_null(wf_mha_new(5, 2, NULL));
    ck_assert_error(WF_EINVAL, "divisible");
}
END_TEST

static wf_tensor *mha_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    return wf_mha_forward(ud, in[0], in[1], in[1], NULL, true);
}

START_TEST(test_mha_gradcheck) {
    wf_module *m = wf_mha_new(4, 2, NULL);
    ck_assert_int_eq(wf_module_to(m, WF_CPU, WF_F64), 0);
    WF_SCOPE {
        wf_tensor *in[6] = { wf_randn(WF_SHAPE(3, 2, 4), WF_F64), wf_randn(WF_SHAPE(3, 2, 4), WF_F64) };
        wf_set_requires_grad(in[0], true);
        wf_set_requires_grad(in[1], true);
        ck_assert_int_eq(wf_module_parameters(m, in + 2, NULL, 4), 4);
        WF_NO_GRAD {   /* nonzero biases so their gradients are exercised */
            wf_uniform_(in[3], -0.5, 0.5);
            wf_uniform_(in[5], -0.5, 0.5);
        }
        ck_assert_msg(wf_gradcheck(mha_fn, in, 6, m, 1e-6, 1e-5, 1e-4) == 0, "%s", wf_error_message());
    }
    wf_module_free(m);
}
END_TEST

static wf_tensor *module_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    return wf_module_forward(ud, in[0]);
}

START_TEST(test_causal_self_attention) {
    wf_manual_seed(9);
    wf_module *a = wf_causal_self_attention_new(4, 2, true, 0.0);
    ck_assert_ptr_nonnull(a);
    wf_state_dict *sd = wf_state_dict_new();
    wf_module_state_dict(a, sd, "transformer.h.0.attn.");
    ck_assert_int_eq(wf_state_dict_count(sd), 4);
    ck_assert_str_eq(wf_state_dict_name_at(sd, 0), "transformer.h.0.attn.c_attn.weight");
    ck_assert_shape(wf_state_dict_tensor_at(sd, 0), 12, 4);
    ck_assert_str_eq(wf_state_dict_name_at(sd, 3), "transformer.h.0.attn.c_proj.bias");
    wf_state_dict_free(sd);
    ck_assert_int_eq(wf_module_to(a, WF_CPU, WF_F64), 0);
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(1, 3, 4), WF_F64);
        wf_tensor *y = wf_module_forward(a, x);
        ck_assert_shape(y, 1, 3, 4);
        /* causal: changing the last position leaves the first two outputs unchanged */
        wf_tensor *x2 = wf_clone(x);
        wf_fill_(wf_select(x2, 1, 2), 5.0);
        wf_tensor *y2 = wf_module_forward(a, x2);
        double r[8];
        wf_to_array(wf_narrow(y, 1, 0, 2), r, WF_F64);
        ck_assert_tensor_near(wf_narrow(y2, 1, 0, 2), r, 8, 1e-12);
        ck_assert_double_gt(wf_item(wf_sum_all(wf_abs(wf_sub(wf_select(y, 1, 2), wf_select(y2, 1, 2))))), 1e-6);
        ck_assert_ptr_null(wf_module_forward(a, wf_zeros(WF_SHAPE(1, 3, 5), WF_F64)));
        ck_assert_error(WF_ESHAPE, "CausalSelfAttention");
        wf_tensor *in[5];
        in[0] = wf_randn(WF_SHAPE(2, 3, 4), WF_F64);
        wf_set_requires_grad(in[0], true);
        ck_assert_int_eq(wf_module_parameters(a, in + 1, NULL, 4), 4);
        ck_assert_msg(wf_gradcheck(module_fn, in, 5, a, 1e-6, 1e-5, 1e-4) == 0, "%s", wf_error_message());
    }
    wf_module_free(a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_attention");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, test_sdpa_causal_by_hand);
    tcase_add_test(tc, test_sdpa_gradcheck);
    tcase_add_test(tc, test_mha);
    tcase_add_test(tc, test_mha_gradcheck);
    tcase_add_test(tc, test_causal_self_attention);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
