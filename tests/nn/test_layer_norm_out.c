/* tests/nn/test_layer_norm_out.c: the layer norm whose output has its own dtype
 * (wf_layer_norm_out_dtype, wf_add_layer_norm_out_dtype, LayerNorm's autocast_output) on the
 * CPU: y written in the asked dtype by the kernel (tensor/cpu/layer_norm.c) with no cast node,
 * the gradients in the inputs' dtypes and equal to the f32 norm's given the same gradient, the
 * module's choice inside and outside autocast, the bad out dtypes. Values on every backend and
 * the CUDA kernels' shapes: tests/ops (layer_norm(... output) rows). */
#include "test_util.h"
#include "weft_config.h"

/* the minimal preset composes the norm and casts (tensor/ops.def): the same values, other nodes */
#ifdef WEFT_MINIMAL
#define ck_assert_node(t, name) ((void)(t))
#else
#define ck_assert_node(t, name) ck_assert_str_eq(wf_grad_fn_name(t), name)
#endif

static wf_tensor *leaf(wf_tensor *t) {
    t = wf_detach(t);
    wf_set_requires_grad(t, true);
    return t;
}

/* y = layer_norm(x) in out against the f32 norm cast after it; the gradients of x, w, b for
 * loss sum(y * g) against the f32 norm's with the same g */
static void check_plain(int64_t rows, int64_t D, wf_dtype out) {
    wf_manual_seed(11);
    wf_tensor *x = leaf(wf_mul_scalar(wf_randn(WF_SHAPE(rows, D), WF_F32), 3.0));
    wf_tensor *w = leaf(wf_randn(WF_SHAPE(D), WF_F32)), *b = leaf(wf_randn(WF_SHAPE(D), WF_F32));
    wf_tensor *g = wf_to_dtype(wf_randn(WF_SHAPE(rows, D), WF_F32), out);
    wf_tensor *y = wf_layer_norm_out_dtype(x, &D, 1, w, b, 1e-5, out);
    ck_assert_msg(y != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(y), out);
    ck_assert_node(y, "NativeLayerNormBackward");   /* written in out by the kernel: no cast node */
    wf_tensor *xu = leaf(x), *wu = leaf(w), *bu = leaf(b);
    wf_tensor *yu = wf_layer_norm(xu, &D, 1, wu, bu, 1e-5);
    tt_assert_close(y, wf_to_dtype(yu, out), out == WF_F16 ? 2e-3 : 1e-2);   /* one rounding apart at most */
    ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y, g)), NULL, false), 0);
    ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(yu, wf_to_dtype(g, WF_F32))), NULL, false), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(x)), WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(w)), WF_F32);
    tt_assert_close(wf_grad(x), wf_grad(xu), 1e-4);
    tt_assert_close(wf_grad(w), wf_grad(wu), 1e-4);
    tt_assert_close(wf_grad(b), wf_grad(bu), 1e-4);
}

START_TEST(layer_norm_writes_the_asked_dtype) {
    WF_SCOPE {
        check_plain(6, 12, WF_BF16);
        check_plain(5, 7, WF_F16);     /* an odd width */
        check_plain(70, 768, WF_BF16); /* past the CPU's parallel threshold */
        /* f32 from a half input: computed in f32 as it is */
        wf_tensor *xh = wf_to_dtype(wf_randn(WF_SHAPE(3, 8), WF_F32), WF_BF16);
        wf_tensor *y = wf_layer_norm_out_dtype(xh, WF_SHAPE(8), NULL, NULL, 1e-5, WF_F32);
        ck_assert_msg(y != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
        tt_assert_close(y, wf_layer_norm(wf_to_dtype(xh, WF_F32), WF_SHAPE(8), NULL, NULL, 1e-5), 1e-5);
        /* the default and x's own dtype: the plain form, values and node alike */
        wf_tensor *x = wf_randn(WF_SHAPE(3, 8), WF_F32);
        tt_assert_close(wf_layer_norm_out_dtype(x, WF_SHAPE(8), NULL, NULL, 1e-5, WF_DTYPE_DEFAULT),
                        wf_layer_norm(x, WF_SHAPE(8), NULL, NULL, 1e-5), 0);
        tt_assert_close(wf_layer_norm_out_dtype(x, WF_SHAPE(8), NULL, NULL, 1e-5, WF_F32),
                        wf_layer_norm(x, WF_SHAPE(8), NULL, NULL, 1e-5), 0);
        wf_tensor *x64 = wf_randn(WF_SHAPE(3, 8), WF_F64);
        ck_assert_int_eq(wf_tensor_dtype(wf_layer_norm_out_dtype(x64, WF_SHAPE(8), NULL, NULL, 1e-5, WF_F64)), WF_F64);
        /* meta: shapes and dtypes only */
        wf_tensor *xm = wf_zeros_on(WF_SHAPE(3, 6), WF_F32, WF_META);
        y = wf_layer_norm_out_dtype(xm, WF_SHAPE(6), NULL, NULL, 1e-5, WF_BF16);
        ck_assert_msg(y != NULL, "%s", wf_error_message());
        ck_assert_shape(y, 3, 6);
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
    }
}
END_TEST

START_TEST(add_layer_norm_writes_the_asked_dtype) {
    WF_SCOPE {
        /* a GPT's case: an f32 stream, a bf16 branch, the norm's output in bf16 */
        wf_manual_seed(12);
        int64_t D = 12;
        wf_tensor *x = leaf(wf_randn(WF_SHAPE(4, D), WF_F32));
        wf_tensor *r = leaf(wf_to_dtype(wf_randn(WF_SHAPE(4, D), WF_F32), WF_BF16));
        wf_tensor *w = leaf(wf_randn(WF_SHAPE(D), WF_F32)), *b = leaf(wf_randn(WF_SHAPE(D), WF_F32));
        wf_tensor *s = NULL, *y = wf_add_layer_norm_out_dtype(x, r, &D, 1, w, b, 1e-5, &s, WF_BF16);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(s), WF_F32);
        ck_assert_node(y, "AddLayerNormBackward");
        wf_tensor *xu = leaf(x), *ru = leaf(r), *wu = leaf(w), *bu = leaf(b), *su = wf_add(xu, ru);
        wf_tensor *yu = wf_layer_norm(su, &D, 1, wu, bu, 1e-5);
        tt_assert_close(s, su, 0);
        tt_assert_close(y, wf_to_dtype(yu, WF_BF16), 1e-2);
        /* loss = sum(y * g) + 3 sum(s) */
        wf_tensor *g = wf_to_dtype(wf_randn(WF_SHAPE(4, D), WF_F32), WF_BF16);
        ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(y, g)), wf_mul_scalar(wf_sum_all(s), 3)), NULL, false), 0);
        ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(wf_mul(yu, wf_to_dtype(g, WF_F32))), wf_mul_scalar(wf_sum_all(su), 3)),
                                     NULL, false), 0);
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(x)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(r)), WF_BF16);
        tt_assert_close(wf_grad(x), wf_grad(xu), 1e-4);
        tt_assert_close(wf_grad(r), wf_grad(ru), 1e-2);
        tt_assert_close(wf_grad(w), wf_grad(wu), 1e-4);
        tt_assert_close(wf_grad(b), wf_grad(bu), 1e-4);
        /* a half stream under autocast composes (the norm of its sum runs in f32), then casts */
        wf_tensor *xh = wf_to_dtype(wf_randn(WF_SHAPE(2, 4), WF_F32), WF_BF16);
        ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
        y = wf_add_layer_norm_out_dtype(xh, xh, WF_SHAPE(4), NULL, NULL, 1e-5, &s, WF_BF16);
        ck_assert_int_eq(wf_autocast_end(), 0);
        ck_assert_msg(y && s, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(s), WF_BF16);
    }
}
END_TEST

/* LayerNorm's forward under each autocast state: y's dtype */
static wf_dtype module_out(wf_module *ln, wf_tensor *x, wf_device_type region, wf_dtype low) {
    if (region != (wf_device_type)-1) ck_assert_int_eq(wf_autocast_begin(region, low), 0);
    wf_tensor *y = wf_module_forward(ln, x);
    if (region != (wf_device_type)-1) ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_msg(y != NULL, "%s", wf_error_message());
    return wf_tensor_dtype(y);
}

START_TEST(module_autocast_output) {
    WF_SCOPE {
        int64_t D = 8;
        wf_module *on = wf_layer_norm_new(&D, 1, &(wf_layer_norm_opts){ .autocast_output = true });
        wf_module *off = wf_layer_norm_new(&D, 1, NULL);
        ck_assert_ptr_nonnull(on);
        wf_tensor *x = wf_randn(WF_SHAPE(3, D), WF_F32);
        const wf_device_type none = (wf_device_type)-1;
        ck_assert_int_eq(module_out(on, x, none, WF_BF16), WF_F32);           /* outside autocast: as before */
        tt_assert_close(wf_module_forward(on, x), wf_module_forward(off, x), 0);
        ck_assert_int_eq(module_out(on, x, WF_DEV_CPU, WF_BF16), WF_BF16);    /* the region's low dtype */
        ck_assert_int_eq(module_out(on, x, WF_DEV_CPU, WF_F16), WF_F16);
        ck_assert_int_eq(module_out(off, x, WF_DEV_CPU, WF_BF16), WF_F32);    /* torch.autocast's f32 */
        ck_assert_int_eq(module_out(on, x, WF_DEV_CUDA, WF_BF16), WF_F32);    /* a region for another device */
        /* a bf16 input: autocast's f32 norm, written in bf16 */
        ck_assert_int_eq(module_out(on, wf_to_dtype(x, WF_BF16), WF_DEV_CPU, WF_BF16), WF_BF16);
        /* the parameters and their names are LayerNorm's */
        ck_assert_ptr_nonnull(wf_module_get_parameter(on, "weight"));
        ck_assert_ptr_nonnull(wf_module_get_parameter(on, "bias"));
        wf_module_free(on);
        wf_module_free(off);
    }
}
END_TEST

START_TEST(bad_out_dtype) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 4), WF_F32), *s = x;
        ck_assert_ptr_null(wf_layer_norm_out_dtype(x, WF_SHAPE(4), NULL, NULL, 1e-5, WF_I64));
        ck_assert_error(WF_EDTYPE, "wf_layer_norm_out_dtype: out_dtype must be float32, bfloat16 or float16 "
                                   "(or the input's float32), got int64");
        ck_assert_ptr_null(wf_layer_norm_out_dtype(x, WF_SHAPE(4), NULL, NULL, 1e-5, WF_F64));
        ck_assert_error(WF_EDTYPE, "got float64");
        ck_assert_ptr_null(wf_layer_norm_out_dtype(x, WF_SHAPE(4), NULL, NULL, 1e-5, (wf_dtype)99));
        ck_assert_error(WF_EDTYPE, "got dtype 99");
        ck_assert_ptr_null(wf_add_layer_norm_out_dtype(x, x, WF_SHAPE(4), NULL, NULL, 1e-5, &s, WF_BOOL));
        ck_assert_ptr_null(s);
        ck_assert_error(WF_EDTYPE, "wf_add_layer_norm_out_dtype: out_dtype must be float32, bfloat16 or float16 "
                                   "(or the input's float32), got bool");
        ck_assert_ptr_null(wf_layer_norm_out_dtype(NULL, WF_SHAPE(4), NULL, NULL, 1e-5, WF_BF16));
        ck_assert_error(WF_ENULL, "wf_layer_norm_out_dtype");
        ck_assert_ptr_null(wf_layer_norm_out_dtype(x, WF_SHAPE(3), NULL, NULL, 1e-5, WF_BF16));
        ck_assert_error(WF_ESHAPE, "wf_layer_norm_out_dtype: input shape [2,4] does not end with normalized_shape [3]");
        ck_assert_ptr_null(wf_layer_norm_out_dtype(wf_zeros(WF_SHAPE(2, 4), WF_I64), WF_SHAPE(4), NULL, NULL, 1e-5, WF_BF16));
        ck_assert_error(WF_EDTYPE, "needs a floating input, got int64");
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("layer_norm_out");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, layer_norm_writes_the_asked_dtype);
    tcase_add_test(tc, add_layer_norm_writes_the_asked_dtype);
    tcase_add_test(tc, module_autocast_output);
    tcase_add_test(tc, bad_out_dtype);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
