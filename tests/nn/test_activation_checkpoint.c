/* tests/nn/test_activation_checkpoint.c: checkpointed modules train as plain ones: the same
 * gradients (dropout included), shared parameters kept shared, hooks run again in the
 * recompute, and misuse refused. */
#include "test_util.h"

static wf_module *mlp(void) {
    wf_manual_seed(3);
    return wf_sequential_new(4, wf_linear_new(6, 8, true), wf_gelu_new(WF_GELU_NONE), wf_dropout_new(0.3),
                             wf_linear_new(8, 4, true));
}

/* parameters' gradients of m after one backward of sum(m(x)^2), seeded */
static void grads(wf_module *m, wf_tensor *x, double *out, int *n_out) {
    wf_module_zero_grad(m, true);
    wf_manual_seed(11);
    WF_SCOPE {
        wf_tensor *y = wf_module_forward(m, x);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_square(y)), NULL, false), 0);
        wf_tensor *p[8];
        int np = wf_module_parameters(m, p, NULL, 8), k = 0;
        for (int i = 0; i < np; i++) {
            int64_t n = wf_numel(p[i]);
            ck_assert_ptr_nonnull(wf_grad(p[i]));
            ck_assert_int_eq(wf_to_array(wf_grad(p[i]), out + k, WF_F64), 0);
            k += (int)n;
        }
        *n_out = k;
    }
}

START_TEST(test_module_checkpoint_matches_plain) {
    wf_module *m = mlp();
    wf_tensor *x = wf_randn(WF_SHAPE(5, 6), WF_F32);
    double a[256], b[256];
    int na, nb;
    grads(m, x, a, &na);
    ck_assert_int_eq(wf_module_set_activation_checkpointing(m, true), 0);
    ck_assert(wf_module_activation_checkpointing(m));
    grads(m, x, b, &nb);
    ck_assert_int_eq(na, nb);
    for (int i = 0; i < na; i++) ck_assert_msg(a[i] == b[i], "grad %d: %g vs %g", i, a[i], b[i]);
    /* the direct call too, on a child */
    ck_assert_int_eq(wf_module_set_activation_checkpointing(m, false), 0);
    WF_SCOPE {
        wf_tensor *y = wf_checkpoint_module(wf_module_get_child(m, "0"), x);
        ck_assert_str_eq(wf_grad_fn_name(y), "CheckpointBackward");
        WF_NO_GRAD { y = wf_module_forward(m, x); }
        ck_assert_ptr_null(wf_grad_fn_name(y));
    }
    wf_tensor_free(x);
    wf_module_free(m);
}
END_TEST

/* an encoder whose first Linear's weight is also used outside it (tied weights) */
START_TEST(test_tied_weight_outside_the_segment) {
    wf_module *enc = wf_sequential_new(2, wf_linear_new(4, 4, false), wf_tanh_new());
    wf_tensor *x = wf_randn(WF_SHAPE(3, 4), WF_F32);
    wf_tensor *w = wf_module_get_parameter(enc, "0.weight");
    double ref[16], got[16];
    for (int pass = 0; pass < 2; pass++) {
        wf_module_zero_grad(enc, true);
        ck_assert_int_eq(wf_module_set_activation_checkpointing(enc, pass == 1), 0);
        WF_SCOPE {
            wf_tensor *y = wf_matmul(wf_module_forward(enc, x), w);   /* w again, outside */
            ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
            ck_assert_int_eq(wf_to_array(wf_grad(w), pass ? got : ref, WF_F64), 0);
        }
    }
    for (int i = 0; i < 16; i++) ck_assert_double_eq_tol(got[i], ref[i], 1e-6);
    wf_tensor_free(x);
    wf_module_free(enc);
}
END_TEST

static int g_pre;
static int count_pre(wf_module *m, wf_tensor **in, void *ud) { (void)m; (void)in; (void)ud; g_pre++; return 0; }

START_TEST(test_hooks_run_again_and_misuse) {
    wf_module *lin = wf_linear_new(3, 2, true);
    ck_assert_int_ge(wf_module_register_forward_pre_hook(lin, count_pre, NULL), 0);
    ck_assert_int_eq(wf_module_set_activation_checkpointing(lin, true), 0);
    g_pre = 0;
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(2, 3), WF_F32);
        wf_tensor *y = wf_module_forward(lin, x);
        ck_assert_int_eq(g_pre, 1);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        ck_assert_int_eq(g_pre, 2);   /* the recompute ran the module's call again */
        /* a parameter replaced between forward and backward: refused, not a wrong gradient */
        y = wf_module_forward(lin, x);
        ck_assert_int_eq(wf_module_register_parameter(lin, "extra", wf_zeros(WF_SHAPE(2), WF_F32)), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "keep its parameters");
    }
    wf_module *list = wf_module_list_new();
    ck_assert_int_eq(wf_module_set_activation_checkpointing(list, true), WF_ENOTSUP);
    ck_assert_error(WF_ENOTSUP, "no forward");
    ck_assert_int_eq(wf_module_set_activation_checkpointing(NULL, true), WF_ENULL);
    wf_clear_error();
    ck_assert_ptr_null(wf_checkpoint_module(lin, NULL));
    ck_assert_error(WF_ENULL, "wf_checkpoint_module");
    ck_assert(!wf_module_activation_checkpointing(NULL));
    wf_module_free(list);
    wf_module_free(lin);
}
END_TEST

int main(void) {
    Suite *s = suite_create("activation_checkpoint");
    TCase *tc = tcase_create("modules");
    tcase_add_test(tc, test_module_checkpoint_matches_plain);
    tcase_add_test(tc, test_tied_weight_outside_the_segment);
    tcase_add_test(tc, test_hooks_run_again_and_misuse);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
