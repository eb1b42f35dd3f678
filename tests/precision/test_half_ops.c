/* tests/precision/test_half_ops.c: every op family runs in float16 and bfloat16 on the CPU
 * and agrees with float32 (forward and gradients) within the half type's tolerance.
 * The f32 reference runs on the same (already rounded) input values, so the differences
 * measure only the rounding of results and intermediates. */
#include "test_util.h"
#include "weft/precision.h"

typedef wf_tensor *(*op_fn)(wf_tensor *const *in);

typedef struct {
    const char *name;
    op_fn fn;
    int n_in;
    int64_t shapes[4][4];   /* per input, up to 4 dims; 0 ends the shape */
    bool positive;          /* inputs in (0.5, 2) instead of N(0,1) */
    bool no_grad_check;     /* outputs without a useful gradient (comparisons, argmax) */
    double tol_scale;       /* multiplies the tolerance (1 if 0) */
} op_case;

static int nd_of(const int64_t *s) { int n = 0; while (n < 4 && s[n]) n++; return n; }

/* ---------------------------------------------------------------- ops */
#define U(nm, call) static wf_tensor *nm(wf_tensor *const *x) { return call; }
U(o_neg, wf_neg(x[0])) U(o_abs, wf_abs(x[0])) U(o_exp, wf_exp(x[0])) U(o_log, wf_log(x[0]))
U(o_log1p, wf_log1p(x[0])) U(o_sqrt, wf_sqrt(x[0])) U(o_rsqrt, wf_rsqrt(x[0])) U(o_sin, wf_sin(x[0]))
U(o_cos, wf_cos(x[0])) U(o_tanh, wf_tanh(x[0])) U(o_sigmoid, wf_sigmoid(x[0])) U(o_relu, wf_relu(x[0]))
U(o_gelu, wf_gelu(x[0], WF_GELU_NONE)) U(o_gelu_t, wf_gelu(x[0], WF_GELU_TANH)) U(o_silu, wf_silu(x[0]))
U(o_square, wf_square(x[0])) U(o_pow_s, wf_pow_scalar(x[0], 1.7)) U(o_clamp, wf_clamp(x[0], -0.5, 0.7))
U(o_add, wf_add(x[0], x[1])) U(o_sub, wf_sub(x[0], x[1])) U(o_mul, wf_mul(x[0], x[1]))
U(o_div, wf_div(x[0], x[1])) U(o_pow, wf_pow(x[0], x[1])) U(o_max, wf_maximum(x[0], x[1]))
U(o_min, wf_minimum(x[0], x[1])) U(o_lt, wf_lt(x[0], x[1])) U(o_add_s, wf_add_scalar(x[0], 0.3))
U(o_rdiv_s, wf_rdiv_scalar(x[0], 2.0)) U(o_where, wf_where(wf_gt_scalar(x[0], 0), x[0], x[1]))
U(o_sum, wf_sum(x[0], WF_DIMS(1), false)) U(o_mean, wf_mean(x[0], WF_DIMS(0), true))
U(o_var, wf_var(x[0], WF_DIMS(1), 1, false)) U(o_std, wf_std(x[0], WF_ALL_DIMS, 1, false))
U(o_amax, wf_amax(x[0], WF_DIMS(1), false)) U(o_argmax, wf_argmax(x[0], 1, false))
U(o_lse, wf_logsumexp(x[0], WF_DIMS(1), false)) U(o_norm, wf_norm(x[0], 2, WF_DIMS(1), false))
U(o_norm3, wf_norm(x[0], 3, WF_ALL_DIMS, false))
U(o_matmul, wf_matmul(x[0], x[1])) U(o_bmm, wf_bmm(x[0], x[1])) U(o_linear, wf_linear(x[0], x[1], x[2]))
U(o_mv, wf_matmul(x[0], wf_select(x[1], 1, 0)))
U(o_softmax, wf_softmax(x[0], 1)) U(o_lsm, wf_log_softmax(x[0], 0))
U(o_transpose, wf_contiguous(wf_transpose(x[0], 0, 1))) U(o_narrow, wf_clone(wf_narrow(x[0], 1, 1, 2)))
U(o_cat, wf_cat(x, 2, 0)) U(o_stack, wf_stack(x, 2, 1))
U(o_conv, wf_conv2d(x[0], x[1], x[2], &((wf_conv2d_opts){ { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 })))
U(o_conv_s2, wf_conv2d(x[0], x[1], NULL, &((wf_conv2d_opts){ { 2, 2 }, { 0, 0 }, { 1, 1 }, 1 })))
U(o_maxpool, wf_max_pool2d(x[0], &((wf_pool2d_opts){ .kernel = { 2, 2 } })))
U(o_avgpool, wf_avg_pool2d(x[0], &((wf_pool2d_opts){ .kernel = { 3, 3 }, .stride = { 1, 1 }, .padding = { 1, 1 } })))
U(o_adapt, wf_adaptive_avg_pool2d(x[0], 3, 2))
U(o_layer_norm, wf_layer_norm(x[0], WF_SHAPE(5), x[1], x[2], 1e-5))
U(o_rms_norm, wf_rms_norm(x[0], WF_SHAPE(5), x[1], 1e-5))
U(o_group_norm, wf_group_norm(x[0], 2, x[1], x[2], 1e-5))
U(o_batch_norm, wf_batch_norm(x[0], NULL, NULL, x[1], x[2], true, 0.1, 1e-5))
U(o_sdpa, wf_scaled_dot_product_attention(x[0], x[1], x[2], NULL, 0.0, true))
U(o_mse, wf_mse_loss(x[0], x[1], WF_REDUCTION_MEAN))
U(o_l1, wf_smooth_l1_loss(x[0], x[1], WF_REDUCTION_SUM, 1.0))
U(o_bce, wf_binary_cross_entropy_with_logits(x[0], wf_sigmoid(x[1]), NULL))
U(o_kl, wf_kl_div(wf_log_softmax(x[0], 1), wf_softmax(x[1], 1), WF_REDUCTION_BATCHMEAN, false))

static wf_tensor *o_gather(wf_tensor *const *x) {
    int64_t idx[] = { 0, 2, 1, 1, 3, 0 };
    return wf_gather(x[0], 1, wf_from_data(idx, WF_SHAPE(3, 2), WF_I64));
}
static wf_tensor *o_index_select(wf_tensor *const *x) {
    int64_t idx[] = { 2, 0, 2 };
    return wf_index_select(x[0], 0, wf_from_data(idx, WF_SHAPE(3), WF_I64));
}
static wf_tensor *o_embedding(wf_tensor *const *x) {
    int64_t idx[] = { 1, 3, 1, 0 };
    return wf_embedding(x[0], wf_from_data(idx, WF_SHAPE(2, 2), WF_I64));
}
static wf_tensor *o_scatter_add(wf_tensor *const *x) {
    int64_t idx[] = { 0, 1, 0, 2, 2, 1 };
    return wf_scatter_add(x[0], 0, wf_from_data(idx, WF_SHAPE(2, 3), WF_I64), x[1]);
}
static wf_tensor *o_cross_entropy(wf_tensor *const *x) {
    int64_t t[] = { 1, 0, 3 };
    return wf_cross_entropy(x[0], wf_from_data(t, WF_SHAPE(3), WF_I64), NULL);
}
static wf_tensor *o_split(wf_tensor *const *x) {
    wf_tensor *parts[3];
    int n = wf_chunk(x[0], 2, 1, parts, 3);
    return n == 2 ? wf_mul(parts[0], parts[1]) : NULL;
}
static wf_tensor *o_module(wf_tensor *const *x) {   /* a Linear + GELU + Linear stack */
    wf_tensor *h = wf_gelu(wf_linear(x[0], x[1], NULL), WF_GELU_TANH);
    return wf_linear(h, wf_transpose(x[1], 0, 1), NULL);
}

static const op_case cases[] = {
    { .name = "neg", .fn = o_neg, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "abs", .fn = o_abs, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "exp", .fn = o_exp, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "log", .fn = o_log, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true },
    { .name = "log1p", .fn = o_log1p, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true }, { .name = "sqrt", .fn = o_sqrt, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true },
    { .name = "rsqrt", .fn = o_rsqrt, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true }, { .name = "sin", .fn = o_sin, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "cos", .fn = o_cos, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "tanh", .fn = o_tanh, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "sigmoid", .fn = o_sigmoid, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "relu", .fn = o_relu, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "gelu", .fn = o_gelu, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "gelu_tanh", .fn = o_gelu_t, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "silu", .fn = o_silu, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "square", .fn = o_square, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "pow_scalar", .fn = o_pow_s, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true }, { .name = "clamp", .fn = o_clamp, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "add", .fn = o_add, .n_in = 2, .shapes = { { 3, 4 }, { 4 } } }, { .name = "sub", .fn = o_sub, .n_in = 2, .shapes = { { 3, 1 }, { 3, 4 } } },
    { .name = "mul", .fn = o_mul, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } } }, { .name = "div", .fn = o_div, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } }, .positive = true },
    { .name = "pow", .fn = o_pow, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } }, .positive = true }, { .name = "maximum", .fn = o_max, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } } },
    { .name = "minimum", .fn = o_min, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } } }, { .name = "lt", .fn = o_lt, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } }, .no_grad_check = true },
    { .name = "add_scalar", .fn = o_add_s, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "rdiv_scalar", .fn = o_rdiv_s, .n_in = 1, .shapes = { { 3, 4 } }, .positive = true },
    { .name = "where", .fn = o_where, .n_in = 2, .shapes = { { 3, 4 }, { 3, 4 } } },
    { .name = "sum", .fn = o_sum, .n_in = 1, .shapes = { { 3, 40 } } }, { .name = "mean", .fn = o_mean, .n_in = 1, .shapes = { { 30, 4 } } },
    { .name = "var", .fn = o_var, .n_in = 1, .shapes = { { 3, 40 } } }, { .name = "std", .fn = o_std, .n_in = 1, .shapes = { { 5, 7 } } },
    { .name = "amax", .fn = o_amax, .n_in = 1, .shapes = { { 3, 7 } } }, { .name = "argmax", .fn = o_argmax, .n_in = 1, .shapes = { { 3, 7 } }, .no_grad_check = true },
    { .name = "logsumexp", .fn = o_lse, .n_in = 1, .shapes = { { 3, 7 } } }, { .name = "norm2", .fn = o_norm, .n_in = 1, .shapes = { { 3, 7 } } },
    { .name = "norm3", .fn = o_norm3, .n_in = 1, .shapes = { { 3, 7 } } },
    { .name = "matmul", .fn = o_matmul, .n_in = 2, .shapes = { { 2, 5, 16 }, { 16, 3 } } }, { .name = "matvec", .fn = o_mv, .n_in = 2, .shapes = { { 5, 16 }, { 16, 3 } } },
    { .name = "bmm", .fn = o_bmm, .n_in = 2, .shapes = { { 2, 5, 16 }, { 2, 16, 3 } } },
    { .name = "linear", .fn = o_linear, .n_in = 3, .shapes = { { 6, 16 }, { 3, 16 }, { 3 } } },
    { .name = "softmax", .fn = o_softmax, .n_in = 1, .shapes = { { 3, 9 } } }, { .name = "log_softmax", .fn = o_lsm, .n_in = 1, .shapes = { { 9, 3 } } },
    { .name = "transpose", .fn = o_transpose, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "narrow", .fn = o_narrow, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "cat", .fn = o_cat, .n_in = 2, .shapes = { { 2, 4 }, { 3, 4 } } }, { .name = "stack", .fn = o_stack, .n_in = 2, .shapes = { { 2, 4 }, { 2, 4 } } },
    { .name = "chunk", .fn = o_split, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "gather", .fn = o_gather, .n_in = 1, .shapes = { { 3, 4 } } }, { .name = "index_select", .fn = o_index_select, .n_in = 1, .shapes = { { 3, 4 } } },
    { .name = "embedding", .fn = o_embedding, .n_in = 1, .shapes = { { 4, 5 } } }, { .name = "scatter_add", .fn = o_scatter_add, .n_in = 2, .shapes = { { 3, 3 }, { 2, 3 } } },
    { .name = "conv2d", .fn = o_conv, .n_in = 3, .shapes = { { 2, 3, 6, 5 }, { 4, 3, 3, 3 }, { 4 } } },
    { .name = "conv2d_stride", .fn = o_conv_s2, .n_in = 2, .shapes = { { 1, 2, 7, 7 }, { 3, 2, 3, 3 } } },
    { .name = "max_pool2d", .fn = o_maxpool, .n_in = 1, .shapes = { { 2, 3, 6, 6 } } },
    { .name = "avg_pool2d", .fn = o_avgpool, .n_in = 1, .shapes = { { 2, 3, 5, 5 } } },
    { .name = "adaptive_avg_pool2d", .fn = o_adapt, .n_in = 1, .shapes = { { 1, 2, 7, 5 } } },
    { .name = "layer_norm", .fn = o_layer_norm, .n_in = 3, .shapes = { { 4, 5 }, { 5 }, { 5 } }, .tol_scale = 2 },
    { .name = "rms_norm", .fn = o_rms_norm, .n_in = 2, .shapes = { { 4, 5 }, { 5 } } },
    { .name = "group_norm", .fn = o_group_norm, .n_in = 3, .shapes = { { 3, 4, 5 }, { 4 }, { 4 } }, .tol_scale = 2 },
    { .name = "batch_norm", .fn = o_batch_norm, .n_in = 3, .shapes = { { 6, 3 }, { 3 }, { 3 } }, .tol_scale = 2 },
    { .name = "sdpa", .fn = o_sdpa, .n_in = 3, .shapes = { { 2, 5, 8 }, { 2, 5, 8 }, { 2, 5, 8 } } },
    { .name = "cross_entropy", .fn = o_cross_entropy, .n_in = 1, .shapes = { { 3, 5 } } },
    { .name = "mse_loss", .fn = o_mse, .n_in = 2, .shapes = { { 3, 5 }, { 3, 5 } } }, { .name = "smooth_l1", .fn = o_l1, .n_in = 2, .shapes = { { 3, 5 }, { 3, 5 } } },
    { .name = "bce_logits", .fn = o_bce, .n_in = 2, .shapes = { { 3, 5 }, { 3, 5 } } }, { .name = "kl_div", .fn = o_kl, .n_in = 2, .shapes = { { 3, 5 }, { 3, 5 } } },
    { .name = "mlp", .fn = o_module, .n_in = 2, .shapes = { { 4, 8 }, { 6, 8 } } },
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* max over elements of |a-b| / (atol + rtol*|b|) */
static double worst(wf_tensor *a, wf_tensor *b, double tol) {
    int64_t n = wf_numel(b);
    ck_assert_int_eq(wf_numel(a), n);
    double *va = malloc(sizeof(double) * (size_t)(n ? n : 1)), *vb = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_int_eq(wf_to_array(a, va, WF_F64), 0);
    ck_assert_int_eq(wf_to_array(b, vb, WF_F64), 0);
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(va[i] - vb[i]) / (tol + tol * fabs(vb[i]));
        if (!(e <= w)) w = e;   /* NaN propagates */
    }
    free(va);
    free(vb);
    return w;
}

static void run_case(const op_case *c, wf_dtype half) {
    double tol = (half == WF_BF16 ? 2e-2 : 3e-3) * (c->tol_scale ? c->tol_scale : 1);
    wf_manual_seed(1234);
    wf_scope_begin();
    wf_tensor *xf[4], *xh[4];
    for (int i = 0; i < c->n_in; i++) {
        int nd = nd_of(c->shapes[i]);
        wf_tensor *r = c->positive ? wf_add_scalar(wf_mul_scalar(wf_rand(c->shapes[i], nd, WF_F32), 1.5), 0.5)
                                   : wf_randn(c->shapes[i], nd, WF_F32);
        xh[i] = wf_to_dtype(r, half);                 /* rounded inputs */
        xf[i] = wf_to_dtype(xh[i], WF_F32);           /* the same values in f32 */
        ck_assert_ptr_nonnull(xf[i]);
        wf_set_requires_grad(xh[i], true);
        wf_set_requires_grad(xf[i], true);
    }
    wf_tensor *yf = c->fn(xf), *yh = c->fn(xh);
    ck_assert_msg(yf != NULL, "%s f32: %s", c->name, wf_error_message());
    ck_assert_msg(yh != NULL, "%s %s: %s", c->name, wf_dtype_name(half), wf_error_message());
    wf_dtype ydt = wf_tensor_dtype(yh);
    if (wf_dtype_is_floating(wf_tensor_dtype(yf)))
        ck_assert_msg(ydt == half, "%s: result dtype %s, expected %s", c->name, wf_dtype_name(ydt), wf_dtype_name(half));
    double w = worst(yh, yf, tol);
    ck_assert_msg(w <= 1, "%s %s forward: error %.3g x tolerance", c->name, wf_dtype_name(half), w);
    if (!c->no_grad_check) {
        wf_tensor *r = wf_randn(wf_shape(yf), wf_ndim(yf), WF_F32);
        wf_tensor *lf = wf_sum_all(wf_mul(yf, r));
        wf_tensor *lh = wf_sum_all(wf_mul(yh, wf_to_dtype(r, half)));
        ck_assert_int_eq(wf_backward(lf, NULL, false), 0);
        ck_assert_msg(wf_backward(lh, NULL, false) == 0, "%s backward: %s", c->name, wf_error_message());
        for (int i = 0; i < c->n_in; i++) {
            wf_tensor *gh = wf_grad(xh[i]), *gf = wf_grad(xf[i]);
            ck_assert_msg(gh && gf, "%s: input %d has no gradient", c->name, i);
            ck_assert_int_eq(wf_tensor_dtype(gh), half);
            double wg = worst(gh, gf, tol * 2);
            ck_assert_msg(wg <= 1, "%s %s gradient %d: error %.3g x tolerance", c->name, wf_dtype_name(half), i, wg);
        }
    }
    wf_scope_end();
}

START_TEST(test_ops_bf16) {
    run_case(&cases[_i], WF_BF16);
}
END_TEST

START_TEST(test_ops_f16) {
    run_case(&cases[_i], WF_F16);
}
END_TEST

/* Conversions round to nearest even, in both directions of a tie. */
START_TEST(test_round_nearest_even) {
    /* bf16 has 8 significant bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> 1 (even);
     * 1 + 3*2^-8 is halfway between 1+2^-7 and 1+2^-6 -> 1 + 2^-6 (even) */
    float v[] = { 1.0f + 0.00390625f, 1.0f + 3 * 0.00390625f, 65520.0f, 1.0f + 0.00048828125f };
    wf_tensor *x = wf_from_data(v, WF_SHAPE(4), WF_F32);
    wf_tensor *b = wf_to_dtype(x, WF_BF16), *h = wf_to_dtype(x, WF_F16);
    double vb[4], vh[4];
    wf_to_array(b, vb, WF_F64);
    wf_to_array(h, vh, WF_F64);
    ck_assert_double_eq(vb[0], 1.0);
    ck_assert_double_eq(vb[1], 1.015625);
    ck_assert(isinf(vh[2]));             /* 65520 is halfway to 65536: rounds to even = inf */
    ck_assert_double_eq(vh[3], 1.0);     /* f16: 1 + 2^-11 is halfway -> 1 */
    /* an op computing in f32 rounds its result the same way: 1 + (2^-8) in bf16 arithmetic */
    wf_tensor *one = wf_ones(WF_SHAPE(1), WF_BF16);
    wf_tensor *s = wf_add_scalar(one, 0.00390625);
    ck_assert_double_eq(wf_item(s), 1.0);
    wf_tensor_free(x); wf_tensor_free(b); wf_tensor_free(h); wf_tensor_free(one); wf_tensor_free(s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("half_ops");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, test_ops_bf16, 0, N_CASES);
    tcase_add_loop_test(tc, test_ops_f16, 0, N_CASES);
    tcase_add_test(tc, test_round_nearest_even);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
