/* tests/examples/test_gpt_model.c: the pieces of examples/gpt that a loss curve would not
 * show wrong: nanoGPT's parameter count and names, the tied lm_head, GPT-2's init scales,
 * causality, the two AdamW groups, sampling with top-k, and refused configs. */
#include "test_util.h"
#include "weft/nn.h"
#include "gpt_model.h"

static const gpt_config small = { .vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 8 };

static double std_of(wf_tensor *t) {
    double v = NAN;
    WF_SCOPE { v = wf_item(wf_std(t, WF_ALL_DIMS, 0, false)); }
    return v;
}

START_TEST(test_params_tied_init) {
    wf_manual_seed(0);
    gpt_config c = { .vocab_size = 65, .block_size = 32, .n_layer = 4, .n_head = 4, .n_embd = 64 };
    wf_module *m = gpt_new(&c);
    ck_assert_msg(m != NULL, "%s", wf_error_message());
    /* nanoGPT (bias=False): wte V*C + wpe T*C + per layer 12 C^2 + 2 LayerNorm weights C, + ln_f C;
     * no lm_head weight of its own */
    int64_t C = 64, per_layer = 12 * C * C + 2 * C;
    ck_assert_int_eq(wf_module_num_parameters(m), 65 * C + 32 * C + 4 * per_layer + C);
    ck_assert_int_eq(gpt_num_params(m), 65 * C + 4 * per_layer + C);
    ck_assert_ptr_nonnull(wf_module_get_parameter(m, "transformer.h.3.attn.c_attn.weight"));
    ck_assert_ptr_nonnull(wf_module_get_parameter(m, "transformer.h.0.mlp.c_fc.weight"));
    ck_assert_ptr_null(wf_module_get_parameter(m, "transformer.h.0.mlp.c_fc.bias"));   /* bias off */
    ck_assert_ptr_null(wf_module_get_parameter(m, "lm_head.weight"));
    /* GPT-2's init: 0.02, the residual projections 0.02/sqrt(2 n_layer) (large tensors: 5% off at most) */
    double s_fc = std_of(wf_module_get_parameter(m, "transformer.h.0.mlp.c_fc.weight"));
    double s_proj = std_of(wf_module_get_parameter(m, "transformer.h.0.mlp.c_proj.weight"));
    double s_wte = std_of(wf_module_get_parameter(m, "transformer.wte.weight"));
    ck_assert_msg(fabs(s_fc - 0.02) < 0.001 && fabs(s_wte - 0.02) < 0.002, "c_fc %g wte %g", s_fc, s_wte);
    ck_assert_msg(fabs(s_proj - 0.02 / sqrt(8.0)) < 0.0005, "c_proj %g", s_proj);
    WF_SCOPE {   /* LayerNorms keep ones */
        wf_tensor *lnw = wf_module_get_parameter(m, "transformer.ln_f.weight");
        ck_assert(wf_item(wf_sum_all(wf_eq_scalar(lnw, 1.0))) == 64);
    }
    /* the logits reach wte's gradient twice: as the embedding rows used and as lm_head */
    WF_SCOPE {
        int64_t idx[4] = { 1, 2, 3, 4 };
        wf_tensor *x = wf_from_data(idx, WF_SHAPE(1, 4), WF_I64);
        wf_tensor *logits = wf_module_forward(m, x);
        ck_assert_shape(logits, 1, 4, 65);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_select(wf_select(logits, 2, 7), 0, 0)), NULL, false), 0);
        /* d logits[., 7] / d wte[7] = the final hidden states: row 7 gets a gradient though token 7 is unused */
        wf_tensor *g = wf_grad(wf_module_get_parameter(m, "transformer.wte.weight"));
        ck_assert_ptr_nonnull(g);
        ck_assert(wf_item(wf_sum_all(wf_abs(wf_select(g, 0, 7)))) > 0);
        ck_assert(wf_item(wf_sum_all(wf_abs(wf_select(g, 0, 9)))) == 0);
    }
    wf_module_free(m);
}
END_TEST

START_TEST(test_causal) {
    wf_manual_seed(1);
    wf_module *m = gpt_new(&small);
    ck_assert_ptr_nonnull(m);
    WF_SCOPE {
        int64_t a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 1, 2, 3, 9, 9, 9 };
        wf_tensor *la = wf_module_forward(m, wf_from_data(a, WF_SHAPE(1, 6), WF_I64));
        wf_tensor *lb = wf_module_forward(m, wf_from_data(b, WF_SHAPE(1, 6), WF_I64));
        double va[66], vb[66];
        ck_assert_int_eq(wf_to_array(la, va, WF_F64), 0);
        ck_assert_int_eq(wf_to_array(lb, vb, WF_F64), 0);
        for (int i = 0; i < 33; i++) ck_assert_msg(va[i] == vb[i], "position %d saw the future", i / 11);
        bool differ = false;
        for (int i = 33; i < 66; i++) differ |= va[i] != vb[i];
        ck_assert(differ);
        /* a sequence longer than the block is refused, as are float inputs */
        int64_t long_seq[9] = { 0 };
        ck_assert_ptr_null(wf_module_forward(m, wf_from_data(long_seq, WF_SHAPE(1, 9), WF_I64)));
        ck_assert_error(WF_ESHAPE, "cannot forward a sequence of length 9, block size is only 8");
        ck_assert_ptr_null(wf_module_forward(m, wf_zeros(WF_SHAPE(1, 3), WF_F32)));
        ck_assert_error(WF_ESHAPE, "expected token indices [B, T] of int64");
    }
    wf_module_free(m);
}
END_TEST

START_TEST(test_optimizer_groups) {
    gpt_config c = small;
    c.bias = true;
    wf_module *m = gpt_new(&c);
    wf_optimizer *opt = gpt_configure_optimizer(m, 0.1, 1e-3, 0.9, 0.99);
    ck_assert_msg(opt != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_optimizer_num_groups(opt), 2);
    int n0 = wf_optimizer_group_size(opt, 0), n1 = wf_optimizer_group_size(opt, 1);
    for (int i = 0; i < n0; i++) ck_assert_int_eq(wf_ndim(wf_optimizer_group_param(opt, 0, i)), 2);
    for (int i = 0; i < n1; i++) ck_assert_int_eq(wf_ndim(wf_optimizer_group_param(opt, 1, i)), 1);
    /* 2-D: wte, wpe and 4 Linear weights per layer; 1-D: 4 Linear biases and 2 LayerNorms (weight, bias) per layer, ln_f */
    ck_assert_int_eq(n0, 2 + 4 * 2);
    ck_assert_int_eq(n1, (4 + 4) * 2 + 2);
    ck_assert_int_eq(n0 + n1, wf_module_parameters(m, NULL, NULL, 0));
    ck_assert(wf_optimizer_get_hparam(opt, 0, "weight_decay") == 0.1);
    ck_assert(wf_optimizer_get_hparam(opt, 1, "weight_decay") == 0);
    ck_assert(wf_optimizer_get_hparam(opt, 1, "beta2") == 0.99);
    ck_assert(wf_optimizer_get_lr(opt, 1) == 1e-3);
    wf_optimizer_free(opt);
    wf_module_free(m);
}
END_TEST

START_TEST(test_generate) {
    wf_manual_seed(2);
    wf_module *m = gpt_new(&small);
    int64_t ctx[20] = { 3 }, ctx2[20] = { 3 };
    /* top_k 1 is greedy: the argmax of the last position each time, whatever the temperature */
    ck_assert_int_eq(gpt_generate(m, ctx, 1, 12, 5.0, 1), 0);   /* longer than the block: the context is cropped */
    for (int i = 1; i < 13; i++) {
        int64_t T = i < small.block_size ? i : small.block_size;
        WF_SCOPE {
            wf_module_eval(m);
            wf_tensor *l = wf_module_forward(m, wf_from_data(ctx + i - T, WF_SHAPE(1, T), WF_I64));
            ck_assert_int_eq((int64_t)wf_item(wf_argmax(wf_select(wf_select(l, 0, 0), 0, T - 1), 0, false)), ctx[i]);
        }
    }
    ck_assert(wf_module_is_training(m) == false);
    wf_module_train(m, true);
    ck_assert_int_eq(gpt_generate(m, ctx2, 1, 12, 1.0, 0), 0);
    for (int i = 0; i < 13; i++) ck_assert(ctx2[i] >= 0 && ctx2[i] < small.vocab_size);
    ck_assert(wf_module_is_training(m));   /* the mode is restored */
    ck_assert_int_eq(gpt_generate(m, ctx2, 1, 1, 0.0, 0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "temperature > 0");
    wf_module_free(m);
}
END_TEST

static int noop_hook(wf_module *m, wf_tensor **in, void *ud) { (void)m; (void)in; (void)ud; return 0; }

/* the residual stream fused into the layer norms (wf_add_layer_norm, the c_proj biases moved
 * into the adds: wf_add_bias_layer_norm) against Block's forward, which the model runs when a
 * hook must see a module's forward: logits and every gradient. The Linear biases are made
 * non-zero (gpt_init zeroes them) so that a bias left out or added twice shows; both MLP forms
 * (wf_linear_gelu + wf_linear, wf_fused_mlp); in eval with dropout (an identity there, so the
 * bias moves) and in training with it (the modules' own forwards, the same dropout masks) */
START_TEST(test_fused_stream_matches_blocks) {
    int variant = _i;   /* 0: plain, 1: recompute_gelu, 2: dropout in eval, 3: dropout in training */
    wf_manual_seed(7);
    wf_module *m = gpt_new(&(gpt_config){ .vocab_size = 11, .block_size = 8, .n_layer = 3, .n_head = 2, .n_embd = 8,
                                          .bias = true, .recompute_gelu = variant == 1,
                                          .dropout = variant >= 2 ? 0.25 : 0.0 });
    ck_assert_ptr_nonnull(m);
    if (variant == 2) wf_module_eval(m);
    int n = wf_module_parameters(m, NULL, NULL, 0);
    wf_tensor *g[2][64];
    ck_assert_int_lt(n, 64);
    {
        wf_tensor *ps[64];
        const char *names[64];
        wf_module_parameters(m, ps, names, n);
        for (int i = 0; i < n; i++)
            if (strstr(names[i], ".bias") && !strstr(names[i], "ln_")) ck_assert_int_eq(wf_init_normal_(ps[i], 0.0, 0.5), 0);
    }
    WF_SCOPE {
        wf_tensor *idx = wf_randint(0, 11, WF_SHAPE(2, 8), WF_I64), *logits[2];
        for (int pass = 0; pass < 2; pass++) {
            wf_module *ln_f = wf_module_get_child(wf_module_get_child(m, "transformer"), "ln_f");
            if (pass) ck_assert_int_ge(wf_module_register_forward_pre_hook(ln_f, noop_hook, NULL), 0);
            wf_module_zero_grad(m, true);
            wf_manual_seed(99);   /* the same dropout masks both passes */
            logits[pass] = wf_module_forward(m, idx);
            ck_assert_ptr_nonnull(logits[pass]);
            ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(logits[pass], logits[pass])), NULL, false), 0);
            wf_tensor *ps[64];
            wf_module_parameters(m, ps, NULL, n);
            for (int i = 0; i < n; i++) g[pass][i] = wf_clone(wf_grad(ps[i]));
        }
        tt_assert_close(logits[0], logits[1], 1e-5);
        for (int i = 0; i < n; i++) tt_assert_close(g[0][i], g[1][i], 1e-4);
    }
    wf_module_free(m);
}
END_TEST

START_TEST(test_bad_configs) {
    gpt_config c = small;
    c.n_embd = 9;
    ck_assert_ptr_null(gpt_new(&c));
    ck_assert_error(WF_EINVAL, "the width divisible by the heads");
    c = small;
    c.dropout = 1.0;
    ck_assert_ptr_null(gpt_new(&c));
    ck_assert_error(WF_EINVAL, "dropout 1");
    c = small;
    c.vocab_size = 0;
    ck_assert_ptr_null(gpt_new(&c));
    ck_assert_error(WF_EINVAL, "vocab 0");
    ck_assert_ptr_null(gpt_new(NULL));
    ck_assert_error(WF_EINVAL, "bad config");
}
END_TEST

int main(void) {
    Suite *s = suite_create("examples_gpt_model");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_params_tied_init);
    tcase_add_test(tc, test_causal);
    tcase_add_test(tc, test_optimizer_groups);
    tcase_add_test(tc, test_generate);
    tcase_add_test(tc, test_bad_configs);
    tcase_add_loop_test(tc, test_fused_stream_matches_blocks, 0, 4);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
