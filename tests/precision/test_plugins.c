/* tests/precision/test_plugins.c: precision plugins by Fabric's names (aliases, warnings,
 * the CPU fallback of 16-mixed, the error listing valid names), module conversion, the init
 * and forward contexts, input/output conversion, loss scaling through the plugin, the
 * "16-true" overflow refusal, state, and the Fashion-MNIST MLP in bf16-mixed reaching the
 * f32 accuracy band. */
#include "test_util.h"
#include "weft/precision.h"

#include <unistd.h>

START_TEST(test_names) {
    static const struct { const char *in, *canon; wf_dtype param, compute; bool warns; } cases[] = {
        { "64-true", "64-true", WF_F64, WF_F64, false }, { "32-true", "32-true", WF_F32, WF_F32, false },
        { "16-true", "16-true", WF_F16, WF_F16, false }, { "bf16-true", "bf16-true", WF_BF16, WF_BF16, false },
        { "bf16-mixed", "bf16-mixed", WF_F32, WF_BF16, false }, { "64", "64-true", WF_F64, WF_F64, false },
        { "32", "32-true", WF_F32, WF_F32, false }, { "bf16", "bf16-mixed", WF_F32, WF_BF16, true },
    };
    char w[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wf_precision *p = wf_precision_new(cases[i].in, WF_CPU, w, sizeof w);
        ck_assert_msg(p != NULL, "%s: %s", cases[i].in, wf_error_message());
        ck_assert_str_eq(wf_precision_name(p), cases[i].canon);
        ck_assert_int_eq(wf_precision_param_dtype(p), cases[i].param);
        ck_assert_int_eq(wf_precision_compute_dtype(p), cases[i].compute);
        ck_assert_msg((w[0] != 0) == cases[i].warns, "%s: warning '%s'", cases[i].in, w);
        ck_assert(!wf_precision_needs_fabric_backward(p));
        ck_assert_ptr_null(wf_precision_grad_scaler(p));
        wf_precision_free(p);
    }
    /* "bf16" warns as Fabric does */
    wf_precision *t32 = wf_precision_new("32-true", WF_CPU, w, sizeof w);
    ck_assert(!wf_precision_is_mixed(t32));
    wf_precision_free(t32);
    ck_assert(!wf_precision_is_mixed(NULL));
    wf_precision *p = wf_precision_new("bf16", WF_CPU, w, sizeof w);
    ck_assert_ptr_nonnull(strstr(w, "`precision=bf16` is supported for historical reasons"));
    ck_assert_ptr_nonnull(strstr(w, "bf16-mixed"));
    wf_precision_free(p);
    /* "16" -> "16-mixed" (warns), which on the CPU falls back to bf16-mixed (warns again) */
    p = wf_precision_new("16", WF_CPU, w, sizeof w);
    ck_assert_str_eq(wf_precision_name(p), "bf16-mixed");
    ck_assert(wf_precision_is_mixed(p));
    ck_assert_ptr_nonnull(strstr(w, "`precision=16` is supported for historical reasons"));
    ck_assert_ptr_nonnull(strstr(w, "AMP with fp16 is not supported on CPU"));
    wf_precision_free(p);
    p = wf_precision_new("16-mixed", WF_CPU, w, sizeof w);
    ck_assert_str_eq(wf_precision_name(p), "bf16-mixed");
    ck_assert_ptr_nonnull(strstr(w, "Using `precision='bf16-mixed'` instead"));
    ck_assert(!wf_precision_needs_fabric_backward(p));
    wf_precision_free(p);
    /* 16-mixed on CUDA keeps fp16 and a scaler (constructing needs no GPU) */
    p = wf_precision_new("16-mixed", WF_CUDA(0), w, sizeof w);
    ck_assert_str_eq(wf_precision_name(p), "16-mixed");
    ck_assert_str_eq(w, "");
    ck_assert(wf_precision_needs_fabric_backward(p));
    ck_assert_ptr_nonnull(wf_precision_grad_scaler(p));
    ck_assert_int_eq(wf_precision_compute_dtype(p), WF_F16);
    double scale;
    int64_t tracker;
    ck_assert_int_eq(wf_precision_state(p, &scale, &tracker), 0);
    ck_assert_double_eq(scale, 65536);
    ck_assert_int_eq(tracker, 0);
    wf_precision_free(p);
    /* unknown names list the valid ones */
    ck_assert_ptr_null(wf_precision_new("fp8", WF_CPU, w, sizeof w));
    ck_assert_error(WF_EINVAL, "'64-true', '32-true', '16-true', 'bf16-true', '16-mixed', 'bf16-mixed', "
                               "'transformer-engine', '64', '32', '16', 'bf16'");
    ck_assert_ptr_null(wf_precision_new("16-Mixed", WF_CPU, NULL, 0));
    ck_assert_error(WF_EINVAL, "precision '16-Mixed' is invalid");
    ck_assert_ptr_null(wf_precision_new(NULL, WF_CPU, NULL, 0));
    ck_assert_error(WF_ENULL, "valid");
}
END_TEST

static wf_module *mlp(void) {
    return wf_sequential_new(3, wf_linear_new(8, 16, true), wf_relu_new(), wf_linear_new(16, 4, true));
}

START_TEST(test_convert_and_contexts) {
    wf_scope_begin();
    /* true plugins convert the module; mixed keeps f32 master weights */
    const char *names[] = { "64-true", "16-true", "bf16-true", "bf16-mixed", "32-true" };
    wf_dtype want[] = { WF_F64, WF_F16, WF_BF16, WF_F32, WF_F32 };
    for (int i = 0; i < 5; i++) {
        wf_precision *p = wf_precision_new(names[i], WF_CPU, NULL, 0);
        wf_module *m = mlp();
        ck_assert_int_eq(wf_precision_convert_module(p, m), 0);
        wf_tensor *ps[4];
        ck_assert_int_eq(wf_module_parameters(m, ps, NULL, 4), 4);
        for (int k = 0; k < 4; k++) ck_assert_int_eq(wf_tensor_dtype(ps[k]), want[i]);
        /* init context: parameters created directly in the parameter dtype */
        ck_assert_int_eq(wf_precision_init_begin(p), 0);
        wf_module *m2 = mlp();
        ck_assert_int_eq(wf_precision_init_end(p), 0);
        ck_assert_int_eq(wf_module_parameters(m2, ps, NULL, 4), 4);
        ck_assert_int_eq(wf_tensor_dtype(ps[0]), want[i]);
        ck_assert_int_eq(wf_get_default_dtype(), WF_F32);       /* restored */
        ck_assert_int_eq(wf_precision_init_end(p), WF_ESTATE);
        wf_clear_error();
        /* input / forward / output */
        wf_tensor *x = wf_randn(WF_SHAPE(2, 8), WF_F32);
        wf_tensor *xi = wf_precision_convert_input(p, x);
        ck_assert_int_eq(wf_tensor_dtype(xi), want[i]);
        ck_assert_int_eq(wf_precision_forward_begin(p), 0);
        wf_tensor *y = wf_module_forward(m, xi);
        ck_assert_msg(y != NULL, "%s: %s", names[i], wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), wf_precision_compute_dtype(p));
        ck_assert_int_eq(wf_precision_forward_end(p), 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_precision_convert_output(p, y)), i == 0 ? WF_F32 : WF_F32);
        ck_assert_int_eq(wf_autocast_depth(), 0);
        /* integer inputs pass through */
        wf_tensor *idx = wf_zeros(WF_SHAPE(2), WF_I64);
        ck_assert_int_eq(wf_tensor_dtype(wf_precision_convert_input(p, idx)), WF_I64);
        ck_assert_int_eq(wf_precision_forward_end(p), WF_ESTATE);
        wf_clear_error();
        wf_module_free(m);
        wf_module_free(m2);
        wf_precision_free(p);
    }
    wf_scope_end();
}
END_TEST

/* Loss scaling through the plugin ("16-mixed" built for a CUDA accelerator: its scaler and
 * backward work on CPU tensors, autocast does not touch them). */
START_TEST(test_scaled_backward_and_skip) {
    wf_scope_begin();
    wf_precision *p = wf_precision_new("16-mixed", WF_CUDA(0), NULL, 0);
    wf_tensor *w = wf_ones(WF_SHAPE(2), WF_F32);
    wf_set_requires_grad(w, true);
    wf_optimizer *opt = wf_sgd_new(&w, 1, &(wf_sgd_opts){ .lr = 0.5 });
    wf_tensor *loss = wf_sum_all(wf_mul_scalar(w, 3.0));
    ck_assert_int_eq(wf_precision_backward(p, loss), 0);
    double g[2];
    wf_to_array(wf_grad(w), g, WF_F64);
    ck_assert_double_eq(g[0], 3.0 * 65536);                    /* scaled */
    ck_assert_int_eq(wf_precision_unscale(p, opt), 0);
    ck_assert_int_eq(wf_precision_unscale(p, opt), 0);         /* idempotent within the step */
    wf_to_array(wf_grad(w), g, WF_F64);
    ck_assert_double_eq(g[0], 3.0);
    bool skipped = true;
    ck_assert_int_eq(wf_precision_optimizer_step(p, opt, &skipped), 0);
    ck_assert(!skipped);
    ck_assert(!wf_precision_last_step_skipped(p));
    double wv[2];
    wf_to_array(w, wv, WF_F64);
    ck_assert_double_eq(wv[0], 1 - 0.5 * 3);
    /* an overflowing loss: step skipped, scale backs off, the scheduler can tell */
    wf_optimizer_zero_grad(opt, true);
    loss = wf_sum_all(wf_mul_scalar(w, 1e38));
    ck_assert_int_eq(wf_precision_backward(p, loss), 0);
    ck_assert_int_eq(wf_precision_optimizer_step(p, opt, &skipped), 0);
    ck_assert(skipped);
    ck_assert(wf_precision_last_step_skipped(p));
    ck_assert_int_eq(wf_precision_skipped_steps(p), 1);
    wf_to_array(w, wv, WF_F64);
    ck_assert_double_eq(wv[0], -0.5);                           /* untouched */
    double scale;
    int64_t tracker;
    wf_precision_state(p, &scale, &tracker);
    ck_assert_double_eq(scale, 32768);
    ck_assert_int_eq(tracker, 0);
    /* state round trip */
    ck_assert_int_eq(wf_precision_load_state(p, 1024, 5), 0);
    wf_precision_state(p, &scale, &tracker);
    ck_assert_double_eq(scale, 1024);
    ck_assert_int_eq(tracker, 5);
    ck_assert_int_eq(wf_precision_load_state(p, -1, 0), WF_EINVAL);
    wf_clear_error();
    wf_optimizer_free(opt);
    wf_precision_free(p);
    wf_scope_end();
}
END_TEST

/* "16-true": a float16 model whose gradient overflows. The step is refused with
 * WF_ENONFINITE and the weights stay finite and unchanged. */
START_TEST(test_16_true_overflow_reported) {
    wf_scope_begin();
    wf_precision *p = wf_precision_new("16-true", WF_CPU, NULL, 0);
    wf_manual_seed(3);
    wf_module *m = wf_linear_new(4, 4, true);
    ck_assert_int_eq(wf_precision_convert_module(p, m), 0);
    wf_tensor *ps[2];
    wf_module_parameters(m, ps, NULL, 2);
    wf_optimizer *opt = wf_sgd_new(ps, 2, &(wf_sgd_opts){ .lr = 0.1 });
    double before[16], after[16];
    wf_to_array(ps[0], before, WF_F64);
    /* inputs ~ 200: y ~ 1e2..1e3, loss = sum(y^2) * 100: gradients beyond 65504 */
    wf_tensor *x = wf_precision_convert_input(p, wf_full(WF_SHAPE(8, 4), 200.0, WF_F32));
    wf_precision_forward_begin(p);
    wf_tensor *y = wf_module_forward(m, x);
    wf_tensor *loss = wf_mul_scalar(wf_sum_all(wf_mul(y, y)), 100.0);
    wf_precision_forward_end(p);
    ck_assert_int_eq(wf_tensor_dtype(loss), WF_F16);
    ck_assert_int_eq(wf_precision_backward(p, loss), 0);
    bool skipped = false;
    ck_assert_int_eq(wf_precision_optimizer_step(p, opt, &skipped), WF_ENONFINITE);
    ck_assert(skipped);
    ck_assert_error(WF_ENONFINITE, "inf/NaN");
    wf_to_array(ps[0], after, WF_F64);
    for (int i = 0; i < 16; i++) {
        ck_assert(isfinite(after[i]));
        ck_assert_double_eq(after[i], before[i]);
    }
    /* a finite gradient steps normally */
    wf_optimizer_zero_grad(opt, true);
    wf_tensor *l2 = wf_sum_all(wf_module_forward(m, wf_precision_convert_input(p, wf_ones(WF_SHAPE(2, 4), WF_F32))));
    ck_assert_int_eq(wf_precision_backward(p, l2), 0);
    ck_assert_int_eq(wf_precision_optimizer_step(p, opt, &skipped), 0);
    ck_assert(!skipped);
    wf_to_array(ps[0], after, WF_F64);
    ck_assert_double_ne(after[0], before[0]);
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_precision_free(p);
    wf_scope_end();
}
END_TEST

/* ---------------------------------------------------------------- Fashion-MNIST MLP */

static const char *fmnist_dir(void) {
    const char *d = getenv("WEFT_FASHION_MNIST");
    if (d) return d;
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) == 0)
        return "/usr/share/datasets/fashion-mnist";
    return NULL;
}

/* One epoch of the example's MLP (784-256-128-10, Adam 1e-3, batch 64) on the training set,
 * accuracy on the test set. */
static double train_mlp(const char *precision, const char *dir) {
    wf_precision *p = wf_precision_new(precision, WF_CPU, NULL, 0);
    ck_assert_ptr_nonnull(p);
    wf_manual_seed(7);
    wf_dataset train, test;
    ck_assert_int_eq(wf_fashion_mnist(dir, true, 0.2860, 0.3530, &train), 0);
    ck_assert_int_eq(wf_fashion_mnist(dir, false, 0.2860, 0.3530, &test), 0);
    wf_dataloader *tl = wf_dataloader_new(&train, &(wf_dataloader_opts){ .batch_size = 64, .shuffle = true, .seed = 8 });
    wf_dataloader *vl = wf_dataloader_new(&test, &(wf_dataloader_opts){ .batch_size = 1000 });
    wf_precision_init_begin(p);
    wf_module *m = wf_sequential_new(6, wf_flatten_new(1, -1), wf_linear_new(784, 256, true), wf_relu_new(),
                                     wf_linear_new(256, 128, true), wf_relu_new(), wf_linear_new(128, 10, true));
    wf_precision_init_end(p);
    ck_assert_int_eq(wf_precision_convert_module(p, m), 0);
    wf_tensor *ps[8];
    int np = wf_module_parameters(m, ps, NULL, 8);
    wf_optimizer *opt = wf_adam_new(ps, np, &(wf_adam_opts){ .lr = 1e-3 });
    wf_tensor *b[2];
    for (;;) {
        wf_scope_begin();
        int rc = wf_dataloader_next(tl, b);
        if (rc == 1) {
            wf_precision_forward_begin(p);
            wf_tensor *logits = wf_module_forward(m, wf_precision_convert_input(p, b[0]));
            wf_tensor *loss = wf_cross_entropy(logits, b[1], NULL);
            wf_precision_forward_end(p);
            wf_optimizer_zero_grad(opt, true);
            ck_assert_int_eq(wf_precision_backward(p, loss), 0);
            ck_assert_int_eq(wf_precision_optimizer_step(p, opt, NULL), 0);
        }
        wf_scope_end();
        ck_assert_int_ge(rc, 0);
        if (rc == 0) break;
    }
    int64_t correct = 0, total = 0;
    WF_NO_GRAD {
        for (;;) {
            wf_scope_begin();
            int rc = wf_dataloader_next(vl, b);
            if (rc == 1) {
                wf_precision_forward_begin(p);
                wf_tensor *logits = wf_module_forward(m, wf_precision_convert_input(p, b[0]));
                wf_precision_forward_end(p);
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(wf_argmax(logits, 1, false), b[1])));
                total += wf_size(b[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_dataloader_free(tl);
    wf_dataloader_free(vl);
    wf_precision_free(p);
    return (double)correct / (double)total;
}

START_TEST(test_mlp_bf16_mixed_accuracy_band) {
    const char *dir = fmnist_dir();
    if (!dir) {
        fprintf(stderr, "test_mlp_bf16_mixed_accuracy_band: Fashion-MNIST not found, skipped\n");
        return;
    }
    double a32 = train_mlp("32-true", dir);
    double abf = train_mlp("bf16-mixed", dir);
    fprintf(stderr, "fashion-mnist MLP, 1 epoch: 32-true %.4f, bf16-mixed %.4f\n", a32, abf);
    ck_assert_double_gt(a32, 0.82);
    ck_assert_msg(fabs(abf - a32) <= 0.015, "bf16-mixed %.4f outside the f32 band %.4f +- 0.015", abf, a32);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plugins");
    TCase *tc = tcase_create("plugins");
    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_convert_and_contexts);
    tcase_add_test(tc, test_scaled_backward_and_skip);
    tcase_add_test(tc, test_16_true_overflow_reported);
    tcase_add_test(tc, test_mlp_bf16_mixed_accuracy_band);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
