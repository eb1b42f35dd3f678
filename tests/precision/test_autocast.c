/* tests/precision/test_autocast.c: the autocast policy per op class, nesting, device types,
 * thread locality, the cast cache and gradients through autocast. */
#include "test_util.h"
#include "weft/precision.h"

#include <pthread.h>

static wf_tensor *rn(int64_t a, int64_t b, wf_dtype dt) { return wf_randn(WF_SHAPE(a, b), dt); }

START_TEST(test_lower_class) {
    wf_scope_begin();
    wf_tensor *x = rn(4, 8, WF_F32), *w = rn(3, 8, WF_F32), *b = wf_zeros(WF_SHAPE(3), WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(wf_linear(x, w, b)), WF_F32);   /* off: unchanged */
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
    ck_assert(wf_autocast_enabled(WF_DEV_CPU));
    ck_assert(!wf_autocast_enabled(WF_DEV_CUDA));
    ck_assert_int_eq(wf_autocast_dtype(), WF_BF16);
    ck_assert_int_eq(wf_tensor_dtype(wf_linear(x, w, b)), WF_BF16);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(w))), WF_BF16);
    ck_assert_int_eq(wf_tensor_dtype(wf_bmm(wf_unsqueeze(x, 0), wf_unsqueeze(wf_t(w), 0))), WF_BF16);
    wf_tensor *img = wf_randn(WF_SHAPE(1, 2, 5, 5), WF_F32), *k = wf_randn(WF_SHAPE(3, 2, 3, 3), WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(wf_conv2d(img, k, NULL, NULL)), WF_BF16);
    /* attention is built from bmm/matmul and softmax: its output is low precision */
    wf_tensor *q = wf_randn(WF_SHAPE(2, 4, 8), WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(wf_scaled_dot_product_attention(q, q, q, NULL, 0, true)), WF_BF16);
    /* mixed inputs (bf16 activation, f32 weight) are both lowered */
    ck_assert_int_eq(wf_tensor_dtype(wf_linear(wf_to_dtype(x, WF_BF16), w, NULL)), WF_BF16);
    /* f64 is not eligible (as PyTorch): stays f64 */
    wf_tensor *xd = rn(2, 2, WF_F64);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(xd, xd)), WF_F64);
    /* values: the bf16 product of the rounded inputs */
    wf_tensor *y = wf_matmul(x, wf_t(w));
    wf_tensor *ref;
    ck_assert_int_eq(wf_autocast_end(), 0);
    ref = wf_matmul(x, wf_t(w));
    ck_assert_int_eq(wf_tensor_dtype(ref), WF_F32);
    double v[12], r[12];
    wf_to_array(y, v, WF_F64);
    wf_to_array(ref, r, WF_F64);
    for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(v[i], r[i], 0.05 * (1 + fabs(r[i])));
    ck_assert(!wf_autocast_enabled(WF_DEV_CPU));
    ck_assert_int_eq(wf_autocast_dtype(), WF_DTYPE_DEFAULT);
    wf_scope_end();
}
END_TEST

START_TEST(test_f32_class) {
    wf_scope_begin();
    wf_tensor *h = wf_to_dtype(rn(3, 5, WF_F32), WF_BF16);
    wf_tensor *pos = wf_to_dtype(wf_add_scalar(wf_rand(WF_SHAPE(3, 5), WF_F32), 0.5), WF_BF16);
    int64_t t[] = { 0, 4, 2 };
    wf_tensor *tgt = wf_from_data(t, WF_SHAPE(3), WF_I64);
    WF_AUTOCAST(WF_DEV_CPU, WF_BF16) {
        ck_assert_int_eq(wf_tensor_dtype(wf_softmax(h, 1)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_log_softmax(h, 1)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_exp(h)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_log(pos)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_pow_scalar(pos, 2.5)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_sum(h, WF_DIMS(1), false)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_sum_all(h)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_mean_all(h)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_var(h, WF_DIMS(1), 1, false)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_std(h, WF_DIMS(1), 1, false)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_logsumexp(h, WF_DIMS(1), false)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_norm(h, 2, WF_ALL_DIMS, false)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_layer_norm(h, WF_SHAPE(5), NULL, NULL, 1e-5)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_rms_norm(h, WF_SHAPE(5), NULL, 0)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_batch_norm(h, NULL, NULL, NULL, NULL, true, 0.1, 1e-5)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_group_norm(wf_unsqueeze(h, 2), 1, NULL, NULL, 1e-5)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_cross_entropy(h, tgt, NULL)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_mse_loss(h, pos, WF_REDUCTION_MEAN)), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_l1_loss(h, pos, WF_REDUCTION_MEAN)), WF_F32);
        /* other ops keep their dtype; binary ops take the widest input */
        ck_assert_int_eq(wf_tensor_dtype(wf_relu(h)), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(wf_tanh(h)), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(wf_add(h, h)), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(wf_add(h, rn(3, 5, WF_F32))), WF_F32);
        ck_assert_int_eq(wf_tensor_dtype(wf_mul(h, rn(3, 5, WF_F64))), WF_F64);
        ck_assert_int_eq(wf_tensor_dtype(wf_amax(h, WF_DIMS(1), false)), WF_BF16);
        /* f32 inputs stay f32 in the f32 class */
        ck_assert_int_eq(wf_tensor_dtype(wf_softmax(rn(2, 2, WF_F32), 1)), WF_F32);
    }
    /* outside: half in, half out */
    ck_assert_int_eq(wf_tensor_dtype(wf_softmax(h, 1)), WF_BF16);
    ck_assert_int_eq(wf_tensor_dtype(wf_sum_all(h)), WF_BF16);
    wf_scope_end();
}
END_TEST

START_TEST(test_nesting_and_devices) {
    wf_scope_begin();
    wf_tensor *x = rn(2, 4, WF_F32);
    ck_assert_int_eq(wf_autocast_depth(), 0);
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_F16), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_F16);
    ck_assert_int_eq(wf_autocast_begin_ex(WF_DEV_CPU, WF_BF16, false), 0);     /* disabled inside */
    ck_assert(!wf_autocast_enabled(WF_DEV_CPU));
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_F32);
    /* a CUDA region does not change CPU tensors */
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CUDA, WF_DTYPE_DEFAULT), 0);
    ck_assert(wf_autocast_enabled(WF_DEV_CUDA));
    ck_assert(!wf_autocast_enabled(WF_DEV_CPU));
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_F32);
    ck_assert_int_eq(wf_autocast_depth(), 4);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_F16);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_BF16);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_matmul(x, wf_t(x))), WF_F32);
    /* errors */
    ck_assert_int_eq(wf_autocast_end(), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "no autocast region");
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_F32), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "float16 or bfloat16");
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_META, WF_BF16), WF_EINVAL);
    wf_clear_error();
    /* CPU default low dtype is bf16 */
    WF_AUTOCAST(WF_DEV_CPU, WF_DTYPE_DEFAULT) { ck_assert_int_eq(wf_autocast_dtype(), WF_BF16); }
    ck_assert_int_eq(wf_autocast_depth(), 0);
    wf_scope_end();
}
END_TEST

static void *other_thread(void *arg) {
    *(int *)arg = wf_autocast_enabled(WF_DEV_CPU) ? 1 : 2;
    return NULL;
}

START_TEST(test_thread_local) {
    int seen = 0;
    pthread_t th;
    WF_AUTOCAST(WF_DEV_CPU, WF_BF16) {
        pthread_create(&th, NULL, other_thread, &seen);
        pthread_join(th, NULL);
    }
    ck_assert_int_eq(seen, 2);
}
END_TEST

START_TEST(test_cast_cache) {
    wf_scope_begin();
    wf_tensor *w = rn(3, 4, WF_F32), *x = rn(2, 4, WF_F32);
    wf_set_requires_grad(w, true);
    wf_autocast_begin(WF_DEV_CPU, WF_BF16);
    wf_tensor *y1 = wf_linear(x, w, NULL);
    ck_assert_int_eq(wf_autocast_cache_size(), 1);
    wf_autocast_begin(WF_DEV_CPU, WF_BF16);                   /* nested: same cache */
    wf_tensor *y2 = wf_linear(x, w, NULL);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_autocast_cache_size(), 1);            /* w was cast once */
    ck_assert_int_eq(wf_tensor_dtype(y2), WF_BF16);
    /* a non-parameter (x, no grad) is not cached */
    ck_assert_int_eq(wf_autocast_cache_size(), 1);
    /* an in-place change of w invalidates its entry */
    WF_NO_GRAD { wf_mul_scalar_(w, 2.0); }
    wf_tensor *y3 = wf_linear(x, w, NULL);
    ck_assert_int_eq(wf_autocast_cache_size(), 1);
    double a[6], c[6];
    wf_to_array(y1, a, WF_F64);
    wf_to_array(y3, c, WF_F64);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(c[i], 2 * a[i], 0.03 * (1 + fabs(a[i])));
    /* gradients reach the f32 parameter through both uses */
    wf_tensor *loss = wf_add(wf_sum_all(y1), wf_sum_all(y2));
    ck_assert_int_eq(wf_tensor_dtype(loss), WF_F32);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_autocast_cache_size(), 0);            /* cleared with the outermost region */
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    wf_tensor *g = wf_grad(w);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(wf_tensor_dtype(g), WF_F32);
    /* d/dw sum(x w^T) twice = 2 * column sums of x, per output row */
    double xv[8], gv[12];
    wf_to_array(x, xv, WF_F64);
    wf_to_array(g, gv, WF_F64);
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 4; i++) {
            double e = 2 * (xv[i] + xv[4 + i]);
            ck_assert_double_eq_tol(gv[o * 4 + i], e, 0.03 * (1 + fabs(e)));
        }
    wf_scope_end();
}
END_TEST

/* With no scope open, casts made by autocast are released when the region ends (ASan). */
START_TEST(test_no_scope) {
    wf_tensor *x = rn(2, 4, WF_F32), *w = rn(3, 4, WF_F32);
    wf_set_requires_grad(w, true);
    wf_autocast_begin(WF_DEV_CPU, WF_BF16);
    wf_tensor *y = wf_linear(x, w, NULL);
    wf_tensor *s = wf_softmax(y, 1);
    ck_assert_int_eq(wf_tensor_dtype(s), WF_F32);
    wf_autocast_end();
    wf_tensor *l = wf_sum_all(s);
    ck_assert_int_eq(wf_backward(l, NULL, false), 0);
    ck_assert_ptr_nonnull(wf_grad(w));
    wf_tensor_free(l); wf_tensor_free(s); wf_tensor_free(y); wf_tensor_free(x); wf_tensor_free(w);
}
END_TEST

int main(void) {
    Suite *s = suite_create("autocast");
    TCase *tc = tcase_create("autocast");
    tcase_add_test(tc, test_lower_class);
    tcase_add_test(tc, test_f32_class);
    tcase_add_test(tc, test_nesting_and_devices);
    tcase_add_test(tc, test_thread_local);
    tcase_add_test(tc, test_cast_cache);
    tcase_add_test(tc, test_no_scope);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
