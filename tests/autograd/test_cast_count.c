/* tests/autograd/test_cast_count.c: how many cast kernels mixed precision launches.
 *
 * A GPT-2 step under bf16 autocast launched ~318 casts on the GPU; each is a pass over its
 * tensor. These checks count the dtype-changing copies a backend is asked for, on a test
 * table standing in for CUDA (wf__set_cuda_kernels_for_test): the CPU's kernels, with copy
 * wrapped to count, and (in the "widening" variant) a binary that reads bf16 operands of an
 * f32 result itself, as CUDA's does (binary_widens).
 *   - a mixed-dtype add casts its half operand once, not once for the kernel and once more
 *     for the autograd node;
 *   - where the backend widens, an f32 + bf16 add, sub or mul casts nothing and gives the
 *     same values and gradients as casting first (the CPU route); a div still casts;
 *   - autocast casts a parameter once per region however often it is used, again after an
 *     in-place change, and afresh in the next region;
 *   - a GPT block under bf16 autocast whose norms write bf16 (LayerNorm's autocast_output,
 *     wf_add_layer_norm_out_dtype) casts 4 times fewer a step: the two norms' outputs no longer
 *     cast to bf16 for the matmul after them, nor their gradients back to f32. */
#include "test_util.h"

#include "tensor/tensor_impl.h"

#include <math.h>

static int casts, casts_of_12;   /* dtype-changing copies; those of 12 elements (the weight) */
static bool in_fake_binary;

static int counting_copy(wf_tensor *y, const wf_tensor *x) {
    if (y->dtype != x->dtype && !in_fake_binary) {
        casts++;
        if (wf_numel(y) == 12) casts_of_12++;
    }
    return wf__cpu_kernels.copy(y, x);
}

/* As CUDA's binary: operands read in their own dtype. The CPU kernel wants one dtype, so
 * the operands are widened into f32 temporaries here (exact for bf16), not counted. */
static int widening_binary(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b) {
    const wf_tensor *in[2] = { a, b };
    wf_tensor *tmp[2] = { NULL, NULL };
    int rc = 0;
    in_fake_binary = true;
    for (int i = 0; i < 2 && !rc; i++) {
        if (in[i]->dtype == y->dtype) continue;
        ck_assert_int_eq(y->dtype, WF_F32);
        ck_assert(in[i]->dtype == WF_BF16 || in[i]->dtype == WF_F16);
        tmp[i] = wf__empty(y->shape, y->ndim, WF_F32, y->device);
        rc = tmp[i] ? wf__cpu_kernels.copy(tmp[i], in[i]) : -1;
        in[i] = tmp[i];
    }
    in_fake_binary = false;
    if (!rc) rc = wf__cpu_kernels.binary(op, y, in[0], in[1]);
    wf_tensor_free(tmp[0]);
    wf_tensor_free(tmp[1]);
    return rc;
}

static wf_kernels fake;

static void use_fake(bool widens) {
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.copy = counting_copy;
    if (widens) {
        fake.binary = widening_binary;
        fake.binary_widens = true;
    }
    casts = casts_of_12 = 0;
    wf__set_cuda_kernels_for_test(&fake);
}
static void fake_teardown(void) { wf__set_cuda_kernels_for_test(NULL); }

static wf_tensor *values(int64_t r, int64_t c, wf_dtype dt, uint32_t seed) {
    wf_manual_seed(seed);
    wf_tensor *t = wf_to_dtype(wf_randn(WF_SHAPE(r, c), WF_F32), dt);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* bitwise equality of two tensors' values (as f64: every f32 / bf16 converts exactly) */
static void assert_same(wf_tensor *a, wf_tensor *b) {
    ck_assert_msg(a && b, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(a), wf_tensor_dtype(b));
    int64_t n = wf_numel(a);
    ck_assert_int_eq(n, wf_numel(b));
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    ck_assert_int_eq(wf_to_array(a, x, WF_F64), 0);
    ck_assert_int_eq(wf_to_array(b, y, WF_F64), 0);
    for (int64_t i = 0; i < n; i++) ck_assert_msg(x[i] == y[i], "element %lld: %.9g vs %.9g", (long long)i, x[i], y[i]);
    free(x);
    free(y);
}

START_TEST(mixed_add_casts_once) {
    wf_scope_begin();
    use_fake(false);
    wf_tensor *a0 = values(3, 5, WF_F32, 1), *b0 = values(3, 5, WF_BF16, 2);
    wf_tensor *a = tt_leaf_on(a0, WF_CUDA(0)), *b = tt_leaf_on(b0, WF_CUDA(0));
    casts = 0;
    wf_tensor *y = wf_add(a, b);
    ck_assert_msg(y != NULL, "%s", wf_error_message());
    ck_assert_int_eq(casts, 1);   /* b to f32, for the kernel and the node alike */
    ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
    ck_assert_str_eq(wf_grad_fn_name(y), "AddBackward");
    ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
    ck_assert_int_eq(casts, 2);   /* b's gradient back to bf16 */
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(b)), WF_BF16);
    ck_assert_tensor_near(wf_grad(b), ((double[15]){ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }), 15, 0);
    /* the values of casting first (the CPU's route) */
    assert_same(wf_to_device(y, WF_CPU), wf_add(a0, wf_to_dtype(b0, WF_F32)));
    /* no grad needed: the one cast, no node */
    casts = 0;
    WF_NO_GRAD {
        ck_assert_ptr_nonnull(wf_add(a, b));
    }
    ck_assert_int_eq(casts, 1);
    wf_scope_end();   /* before the teardown: the fake device's tensors go back through its table */
    fake_teardown();
}
END_TEST

/* y = op(a, b) and its gradients on the widening table against the CPU's (which casts). */
static void check_widened(wf_tensor *(*op)(wf_tensor *, wf_tensor *), int expect_casts) {
    wf_tensor *a0 = values(4, 6, WF_F32, 3), *b0 = values(4, 6, WF_BF16, 4), *gy = values(4, 6, WF_F32, 5);
    wf_tensor *y[2], *ga[2], *gb[2];
    for (int d = 0; d < 2; d++) {
        wf_device dev = d ? WF_CUDA(0) : WF_CPU;
        wf_tensor *a = tt_leaf_on(a0, dev), *b = tt_leaf_on(b0, dev);
        casts = 0;
        y[d] = op(a, b);
        ck_assert_msg(y[d] != NULL, "%s", wf_error_message());
        if (d) ck_assert_int_eq(casts, expect_casts);
        ck_assert_int_eq(wf_backward(y[d], wf_to_device(gy, dev), false), 0);
        y[d] = wf_to_device(y[d], WF_CPU);
        ga[d] = wf_to_device(wf_grad(a), WF_CPU), gb[d] = wf_to_device(wf_grad(b), WF_CPU);
    }
    assert_same(y[1], y[0]);
    assert_same(ga[1], ga[0]);
    assert_same(gb[1], gb[0]);
    ck_assert_int_eq(wf_tensor_dtype(gb[1]), WF_BF16);
}

START_TEST(widening_backend_skips_the_cast) {
    wf_scope_begin();
    use_fake(true);
    check_widened(wf_add, 0);
    check_widened(wf_sub, 0);
    check_widened(wf_mul, 0);
    check_widened(wf_div, 1);   /* its backward needs b in f32: cast as before */
    /* a half result (bf16 + bf16) or a bf16 operand of an f64 result are not widened */
    wf_tensor *h = wf_to_device(values(2, 3, WF_BF16, 6), WF_CUDA(0));
    wf_tensor *d = wf_to_device(wf_to_dtype(values(2, 3, WF_F32, 7), WF_F64), WF_CUDA(0));
    casts = 0;
    ck_assert_int_eq(wf_tensor_dtype(wf_add(h, h)), WF_BF16);
    ck_assert_int_eq(casts, 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_add(h, d)), WF_F64);
    ck_assert_int_eq(casts, 1);
    wf_scope_end();   /* before the teardown: the fake device's tensors go back through its table */
    fake_teardown();
}
END_TEST

START_TEST(autocast_casts_a_parameter_once_per_region) {
    wf_scope_begin();
    use_fake(false);
    wf_tensor *w = tt_leaf_on(values(3, 4, WF_F32, 8), WF_CUDA(0));      /* 12 elements */
    wf_tensor *x = wf_to_device(values(2, 4, WF_F32, 9), WF_CUDA(0));   /* 8, no grad */
    casts = casts_of_12 = 0;
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CUDA, WF_BF16), 0);
    wf_tensor *y1 = wf_linear(x, w, NULL), *y2 = wf_linear(x, w, NULL);
    ck_assert_msg(y1 && y2, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(y1), WF_BF16);
    ck_assert_int_eq(casts_of_12, 1);   /* the weight: once for both uses */
    ck_assert_int_eq(casts, 3);         /* and x (not a parameter) at each use */
    WF_NO_GRAD { ck_assert_int_eq(wf_mul_scalar_(w, 2.0), 0); }
    wf_tensor *y3 = wf_linear(x, w, NULL);
    ck_assert_int_eq(casts_of_12, 2);   /* changed in place: cast again */
    ck_assert_int_eq(wf_autocast_end(), 0);
    assert_same(wf_mul_scalar(y1, 2.0), y3);   /* x2 is exact in bf16 */
    ck_assert_int_eq(wf_autocast_cache_size(), 0);
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CUDA, WF_BF16), 0);
    ck_assert_ptr_nonnull(wf_linear(x, w, NULL));
    ck_assert_int_eq(casts_of_12, 3);   /* a new region casts afresh */
    ck_assert_int_eq(wf_autocast_end(), 0);
    /* both uses' gradients reach the f32 weight through the one cast */
    ck_assert_int_eq(wf_backward(wf_add(wf_sum_all(y1), wf_sum_all(y2)), NULL, false), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(w)), WF_F32);
    wf_scope_end();   /* before the teardown: the fake device's tensors go back through its table */
    fake_teardown();
}
END_TEST

/* One step of a GPT block as examples/gpt runs it, on the counting table under bf16 autocast:
 * ln_1 (a module), attention, the residual add fused into ln_2, the MLP, the second residual
 * add, and the backward of the stream's sum. low: the norms write bf16 (else f32, as
 * torch.autocast's layer_norm). Returns the casts; *loss and *gx: the loss and x's gradient. */
static int gpt_block_casts(bool low, double *loss, wf_tensor **gx) {
    enum { B = 2, T = 4, C = 8, H = 2 };
    int64_t c = C;
    wf_device dev = WF_CUDA(0);
    wf_manual_seed(21);
    wf_layer_norm_opts lo = { .autocast_output = low };
    wf_module *ln_1 = wf_layer_norm_new(&c, 1, &lo), *ln_2 = wf_layer_norm_new(&c, 1, &lo);
    wf_module *attn = wf_causal_self_attention_new(C, H, true, 0.0);
    wf_module *fc = wf_linear_new(C, 4 * C, true), *gelu = wf_gelu_new(WF_GELU_TANH), *proj = wf_linear_new(4 * C, C, true);
    wf_module *ms[6] = { ln_1, ln_2, attn, fc, gelu, proj };
    for (int i = 0; i < 6; i++) {
        ck_assert_ptr_nonnull(ms[i]);
        ck_assert_int_eq(wf_module_to(ms[i], dev, WF_DTYPE_DEFAULT), 0);
    }
    wf_tensor *x = tt_leaf_on(wf_randn(WF_SHAPE(B, T, C), WF_F32), dev), *s = NULL;
    casts = 0;
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CUDA, WF_BF16), 0);
    wf_tensor *h = wf_module_forward(ln_1, x);
    ck_assert_msg(h != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(h), low ? WF_BF16 : WF_F32);
    h = wf_add_layer_norm_out_dtype(x, wf_module_forward(attn, h), &c, 1, wf_module_get_parameter(ln_2, "weight"),
                                    wf_module_get_parameter(ln_2, "bias"), 1e-5, &s, low ? WF_BF16 : WF_DTYPE_DEFAULT);
    ck_assert_msg(h && s, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(h), low ? WF_BF16 : WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(s), WF_F32);   /* the stream stays f32 */
    wf_tensor *y = wf_add(s, wf_module_forward(proj, wf_module_forward(gelu, wf_module_forward(fc, h))));
    ck_assert_int_eq(wf_autocast_end(), 0);
    wf_tensor *l = wf_sum_all(wf_mul(y, y));
    ck_assert_msg(l != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_backward(l, NULL, false), 0);
    int n = casts;
    *loss = wf_item(wf_to_device(l, WF_CPU));
    *gx = wf_to_device(wf_grad(x), WF_CPU);
    ck_assert_int_eq(wf_tensor_dtype(*gx), WF_F32);
    for (int i = 0; i < 6; i++) wf_module_free(ms[i]);
    return n;
}

START_TEST(gpt_block_norms_write_bf16) {
    wf_scope_begin();
    use_fake(false);
    double l_f32, l_low;
    wf_tensor *g_f32, *g_low;
    int f32_out = gpt_block_casts(false, &l_f32, &g_f32), low_out = gpt_block_casts(true, &l_low, &g_low);
    /* two norms, each a cast of its output for the matmul and one of its gradient */
    ck_assert_msg(f32_out - low_out == 4, "casts: %d with f32 norms, %d with bf16 norms", f32_out, low_out);
    /* the same step: the bf16 the matmul read is the same rounding of the same f32 norm */
    ck_assert_msg(fabs(l_f32 - l_low) <= 1e-3 * fabs(l_f32), "loss %.9g vs %.9g", l_f32, l_low);
    tt_assert_close(g_low, g_f32, 1e-2);
    wf_scope_end();   /* before the teardown: the fake device's tensors go back through its table */
    fake_teardown();
}
END_TEST

int main(void) {
    Suite *s = suite_create("cast_count");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, mixed_add_casts_once);
    tcase_add_test(tc, widening_backend_skips_the_cast);
    tcase_add_test(tc, autocast_casts_a_parameter_once_per_region);
    tcase_add_test(tc, gpt_block_norms_write_bf16);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
