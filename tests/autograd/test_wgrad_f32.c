/* tests/autograd/test_wgrad_f32.c: Linear weight gradients made in the parameter's f32 under
 * autocast (autograd/fn_matmul.c wf__linear_weight_grad, tensor/ops_matmul.c
 * wf__matmul_f32_raw, the gemm_acc kernel with beta 0).
 *
 * meson runs this program twice: as is (the f32 gradient) and with WEFT_WGRAD_F32_OLD=1 (the
 * bf16 gradient and its cast, as before); each check says what either mode must give, so a
 * switch that does nothing fails one of the two runs.
 *   - wf_linear under bf16 autocast on the CPU: the weight's gradient equals, to f32 rounding,
 *     the f64 reference g^T x of the bf16 values (old mode: the same rounded to bf16);
 *   - on a test table standing in for CUDA (the CPU's kernels, copies counted, a bf16 bias +
 *     GELU, no BGRAD epilogue): wf_linear, wf_linear_gelu and wf_fused_mlp cast one weight
 *     gradient fewer per weight in backward and return f32 gradients not rounded to bf16;
 *   - a weight used under autocast and outside it, or by a Linear and a matmul under
 *     autocast: the gradients of both uses summed in f32;
 *   - a Linear with a bias whose gradient the CPU's BGRAD epilogue makes: kept as before;
 *   - wf__matmul_f32_raw and gemm_acc with beta 0 and 1, and their bad inputs. */
#include "test_util.h"

#include "tensor/ops_raw.h"
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool old_mode(void) {
    const char *e = getenv("WEFT_WGRAD_F32_OLD");
    return e && *e == '1';
}

/* ---------------------------------------------------------------- helpers */

static double *values_of(wf_tensor *t) {
    ck_assert_msg(t != NULL, "%s", wf_error_message());
    int64_t n = wf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_int_eq(wf_to_array(wf_to_device(t, WF_CPU), v, WF_F64), 0);
    return v;
}

/* how many of t's values bf16 holds exactly */
static int64_t bf16_exact(wf_tensor *t) {
    wf_tensor *c = wf_to_device(t, WF_CPU);
    double *a = values_of(c), *b = values_of(wf_to_dtype(wf_to_dtype(c, WF_BF16), WF_F64));
    int64_t n = wf_numel(c), k = 0;
    for (int64_t i = 0; i < n; i++) k += a[i] == b[i];
    free(a);
    free(b);
    return k;
}

static wf_tensor *randn_on(int64_t r, int64_t c, wf_dtype dt, uint32_t seed, wf_device dev) {
    wf_manual_seed(seed);
    wf_tensor *t = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(r, c), WF_F32), dt), dev);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* the new mode's gradient is not rounded to bf16 (nearly every value needs more bits); the
 * old mode's is (every value is a bf16) */
static void assert_rounding_of_mode(wf_tensor *g) {
    ck_assert_int_eq(wf_tensor_dtype(g), WF_F32);
    int64_t n = wf_numel(g), exact = bf16_exact(g);
    if (old_mode()) ck_assert_msg(exact == n, "old mode: %lld of %lld values are bf16", (long long)exact, (long long)n);
    else ck_assert_msg(exact < n / 4, "f32 mode: %lld of %lld values are bf16 (rounded?)", (long long)exact, (long long)n);
}

/* ---------------------------------------------------------------- the fake CUDA table */

static int casts;
static bool in_fake;

static int counting_copy(wf_tensor *y, const wf_tensor *x) {
    if (y->dtype != x->dtype && !in_fake) casts++;
    return wf__cpu_kernels.copy(y, x);
}

static wf_tensor *widened(const wf_tensor *t) {
    wf_tensor *f = wf__empty(t->shape, t->ndim, WF_F32, t->device);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(wf__cpu_kernels.copy(f, t), 0);
    return f;
}

static double gelu_tanh(double v) { return 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }
static double gelu_tanh_grad(double v) {
    double k = sqrt(2 / M_PI), th = tanh(k * (v + 0.044715 * v * v * v));
    return 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * k * (1 + 3 * 0.044715 * v * v);
}

/* CUDA's bias + GELU (tanh form) and its backward for f32 and bf16, computed in f32; only the
 * tanh form is asked for below */
static int fake_bias_gelu(wf_tensor *y, const wf_tensor *x, const wf_tensor *b, bool t) {
    ck_assert(t);
    in_fake = true;
    wf_tensor *xf = widened(x), *bf = widened(b), *yf = wf__empty(y->shape, y->ndim, WF_F32, y->device);
    int64_t n = wf_numel(x), D = b->shape[0];
    const float *xp = (const float *)wf__host_ptr(xf), *bp = (const float *)wf__host_ptr(bf);
    float *yp = (float *)wf__host_ptr(yf);
    for (int64_t i = 0; i < n; i++) yp[i] = (float)gelu_tanh((double)xp[i] + bp[i % D]);
    int rc = wf__cpu_kernels.copy(y, yf);
    in_fake = false;
    wf_tensor_free(xf), wf_tensor_free(bf), wf_tensor_free(yf);
    return rc;
}
static int fake_bias_gelu_bwd(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x, const wf_tensor *b, bool t) {
    ck_assert(t);
    in_fake = true;
    wf_tensor *xf = widened(x), *bf = widened(b), *gf = widened(gy), *of = wf__empty(gx->shape, gx->ndim, WF_F32, gx->device);
    int64_t n = wf_numel(x), D = b->shape[0];
    const float *xp = (const float *)wf__host_ptr(xf), *bp = (const float *)wf__host_ptr(bf);
    const float *gp = (const float *)wf__host_ptr(gf);
    float *op = (float *)wf__host_ptr(of);
    for (int64_t i = 0; i < n; i++) op[i] = (float)(gp[i] * gelu_tanh_grad((double)xp[i] + bp[i % D]));
    int rc = wf__cpu_kernels.copy(gx, of);
    in_fake = false;
    wf_tensor_free(xf), wf_tensor_free(bf), wf_tensor_free(gf), wf_tensor_free(of);
    return rc;
}

static wf_op_support fake_support;
static wf_kernels fake;

/* no gemm_epilogue: as CUDA where the bias gradient comes from elsewhere (gelu_bwd_bias) */
static void use_fake(void) {
    fake_support = *wf__cpu_kernels.support;
    uint16_t half = (uint16_t)(WF_DTM(WF_F32) | WF_DTM(WF_BF16));
    fake_support.kernel[WF_K_BIAS_GELU] = fake_support.kernel[WF_K_BIAS_GELU_BWD] = half;
    fake_support.kernel[WF_K_GEMM_EPILOGUE] = 0;
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.copy = counting_copy;
    fake.bias_gelu = fake_bias_gelu;
    fake.bias_gelu_bwd = fake_bias_gelu_bwd;
    fake.gemm_epilogue = NULL;
    fake.support = &fake_support;
    casts = 0;
    wf__set_cuda_kernels_for_test(&fake);
}
static void fake_teardown(void) { wf__set_cuda_kernels_for_test(NULL); }

/* ---------------------------------------------------------------- wf_linear on the CPU */

START_TEST(linear_weight_grad_is_f32) {
    enum { R = 6, I = 40, O = 5 };
    wf_scope_begin();
    wf_tensor *x = randn_on(R, I, WF_F32, 1, WF_CPU), *w = tt_leaf_on(randn_on(O, I, WF_F32, 2, WF_CPU), WF_CPU);
    wf_tensor *gy = randn_on(R, O, WF_BF16, 3, WF_CPU);
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
    wf_tensor *y = wf_linear(x, w, NULL);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_msg(y != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
    ck_assert_int_eq(wf_backward(y, gy, false), 0);
    wf_tensor *gw = wf_grad(w);
    assert_rounding_of_mode(gw);
    /* the f64 reference of g^T x with g and x the bf16 values the GEMM read */
    double *g = values_of(gy), *xb = values_of(wf_to_dtype(x, WF_BF16)), *got = values_of(gw);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double ref = 0, mag = 0;
            for (int r = 0; r < R; r++) ref += g[r * O + o] * xb[r * I + i], mag += fabs(g[r * O + o] * xb[r * I + i]);
            double v = got[o * I + i], err = fabs(v - ref);
            if (old_mode()) {   /* the f32 sum rounded to bf16: within half a bf16 step of it */
                ck_assert_msg(err <= 0x1p-8 * fabs(ref) + 8 * 0x1p-24 * mag, "[%d,%d] %.9g vs %.9g", o, i, v, ref);
            } else {            /* f32 rounding of the sum only */
                ck_assert_msg(err <= 8 * 0x1p-24 * mag, "[%d,%d] %.9g vs %.9g", o, i, v, ref);
            }
        }
    free(g), free(xb), free(got);
    wf_scope_end();
}
END_TEST

/* wf_linear_cross_entropy (an LM head's tied weight) under CPU bf16 autocast: its weight
 * gradient, summed over the chunks by the GEMM in f32, comes back as the f32 parameter's
 * gradient as it stands (new mode) or rounded to the copy's bf16 and cast back (old mode);
 * either way near the gradient of the same loss without autocast */
START_TEST(lm_head_weight_grad_is_f32) {
    enum { N = 12, C = 40, V = 50 };
    wf_scope_begin();
    wf_tensor *h = randn_on(N, C, WF_F32, 21, WF_CPU), *w0 = randn_on(V, C, WF_F32, 22, WF_CPU);
    wf_manual_seed(23);
    wf_tensor *t = wf_randint(0, V, WF_SHAPE(N), WF_I64);
    wf_tensor *gw[2] = { NULL, NULL };
    for (int ac = 0; ac < 2; ac++) {   /* 0: bf16 autocast, 1: f32 */
        wf_tensor *w = tt_leaf_on(w0, WF_CPU);
        if (!ac) ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
        wf_tensor *loss = wf_linear_cross_entropy(h, w, NULL, t, NULL, 5);   /* 3 chunks */
        if (!ac) ck_assert_int_eq(wf_autocast_end(), 0);
        ck_assert_msg(loss != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
        gw[ac] = wf_grad(w);
        ck_assert_ptr_nonnull(gw[ac]);
    }
    assert_rounding_of_mode(gw[0]);
    double *a = values_of(gw[0]), *b = values_of(gw[1]), big = 0;
    for (int i = 0; i < V * C; i++) big = fmax(big, fabs(b[i]));
    for (int i = 0; i < V * C; i++)   /* bf16 operands: a few bf16 steps of the largest value */
        ck_assert_msg(fabs(a[i] - b[i]) <= 0x1p-5 * big, "[%d] %.9g vs %.9g (largest %.3g)", i, a[i], b[i], big);
    free(a), free(b);
    wf_scope_end();
}
END_TEST

/* A Linear with a bias on the CPU: its weight and bias gradients come from one GEMM with the
 * BGRAD epilogue in the weight's dtype, kept as it was (bf16 values) in both modes */
START_TEST(linear_bias_fused_bgrad_is_kept) {
    wf_scope_begin();
    wf_tensor *x = randn_on(6, 40, WF_F32, 4, WF_CPU), *w = tt_leaf_on(randn_on(5, 40, WF_F32, 5, WF_CPU), WF_CPU);
    wf_tensor *b = tt_leaf_on(randn_on(1, 5, WF_F32, 6, WF_CPU), WF_CPU);
    b = wf_reshape(b, WF_SHAPE(5));
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
    wf_tensor *y = wf_linear(x, w, b);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_int_eq(wf_backward(y, randn_on(6, 5, WF_BF16, 7, WF_CPU), false), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(w)), WF_F32);
    ck_assert_int_eq(bf16_exact(wf_grad(w)), wf_numel(wf_grad(w)));
    wf_scope_end();
}
END_TEST

/* ---------------------------------------------------------------- casts in backward */

/* casts in one backward of loss(op(...)); *gws: the weights' gradients */
enum { N_LIN, N_GELU, N_MLP };
static int backward_casts(int which, wf_tensor **gws, int *nw) {
    enum { R = 8, I = 16, H = 32, O = 16 };
    wf_device dev = WF_CUDA(0);
    wf_tensor *x = randn_on(R, I, WF_F32, 11, dev);
    wf_tensor *w1 = tt_leaf_on(randn_on(H, I, WF_F32, 12, WF_CPU), dev);
    wf_tensor *b1 = wf_reshape(tt_leaf_on(randn_on(1, H, WF_F32, 13, WF_CPU), dev), WF_SHAPE(H));
    wf_tensor *w2 = tt_leaf_on(randn_on(O, H, WF_F32, 14, WF_CPU), dev);
    wf_tensor *b2 = wf_reshape(tt_leaf_on(randn_on(1, O, WF_F32, 15, WF_CPU), dev), WF_SHAPE(O));
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CUDA, WF_BF16), 0);
    wf_tensor *y = which == N_LIN    ? wf_linear(wf_linear(x, w1, NULL), w2, NULL)
                   : which == N_GELU ? wf_linear_gelu(x, w1, b1, WF_GELU_TANH)
                                     : wf_fused_mlp(x, w1, b1, w2, b2, WF_GELU_TANH);
    ck_assert_int_eq(wf_autocast_end(), 0);
    ck_assert_msg(y != NULL, "%s", wf_error_message());
    const char *want = which == N_LIN ? "LinearBackward" : which == N_GELU ? "LinearGeluBackward" : "FusedMlpBackward";
    ck_assert_str_eq(wf_grad_fn_name(y), want);
    wf_tensor *gy = randn_on(R, which == N_GELU ? H : O, WF_BF16, 16, dev);
    casts = 0;
    ck_assert_int_eq(wf_backward(y, gy, false), 0);
    int n = casts;
    gws[0] = wf_to_device(wf_grad(w1), WF_CPU);
    gws[1] = which == N_GELU ? NULL : wf_to_device(wf_grad(w2), WF_CPU);
    *nw = which == N_GELU ? 1 : 2;
    return n;
}

START_TEST(fewer_casts_per_weight) {
    /* casts in backward with the bf16 gradients (old), as WEFT_WGRAD_F32_OLD=1 gives them:
     * Linear-Linear: the gradient between them stays bf16, each weight's gradient cast (2);
     * Linear + GELU: w1's, and b1's gradient twice (wf_sum of the bf16 gradient accumulates
     * in f32 and casts its result to bf16, then ToCopyBackward casts it back) (3); the MLP:
     * both weights and both biases so (6). The f32 mode saves one per weight. */
    static const int old_casts[3] = { 2, 3, 6 };
    for (int which = 0; which < 3; which++) {
        wf_scope_begin();
        use_fake();
        wf_tensor *gws[2];
        int nw;
        int n = backward_casts(which, gws, &nw);
        int want = old_mode() ? old_casts[which] : old_casts[which] - nw;
        ck_assert_msg(n == want, "op %d: %d casts in backward, want %d (%s mode)", which, n, want,
                      old_mode() ? "old" : "f32");
        for (int i = 0; i < nw; i++) assert_rounding_of_mode(gws[i]);
        wf_scope_end();   /* before the teardown: the fake device's tensors go back through its table */
        fake_teardown();
    }
}
END_TEST

/* The same gradients without autocast (f32 throughout): the f32-mode ones are at least as
 * close as bf16 rounding allows (the forward's bf16 operands dominate the difference). */
START_TEST(fused_weight_grads_match_f32) {
    for (int which = 0; which < 3; which++) {
        wf_scope_begin();
        use_fake();
        wf_tensor *gws[2];
        int nw;
        backward_casts(which, gws, &nw);
        /* f32 reference: the same graph with autocast off, composed on the CPU */
        wf_tensor *x = randn_on(8, 16, WF_F32, 11, WF_CPU);
        wf_tensor *w1 = tt_leaf_on(randn_on(32, 16, WF_F32, 12, WF_CPU), WF_CPU);
        wf_tensor *b1 = wf_reshape(tt_leaf_on(randn_on(1, 32, WF_F32, 13, WF_CPU), WF_CPU), WF_SHAPE(32));
        wf_tensor *w2 = tt_leaf_on(randn_on(16, 32, WF_F32, 14, WF_CPU), WF_CPU);
        wf_tensor *b2 = wf_reshape(tt_leaf_on(randn_on(1, 16, WF_F32, 15, WF_CPU), WF_CPU), WF_SHAPE(16));
        wf_tensor *y = which == N_LIN    ? wf_linear(wf_linear(x, w1, NULL), w2, NULL)
                       : which == N_GELU ? wf_gelu(wf_linear(x, w1, b1), WF_GELU_TANH)
                                         : wf_linear(wf_gelu(wf_linear(x, w1, b1), WF_GELU_TANH), w2, b2);
        wf_tensor *gy = wf_to_dtype(randn_on(8, which == N_GELU ? 32 : 16, WF_BF16, 16, WF_CPU), WF_F32);
        ck_assert_int_eq(wf_backward(y, gy, false), 0);
        wf_tensor *ref[2] = { wf_grad(w1), wf_grad(w2) };
        for (int i = 0; i < nw; i++) {
            double *a = values_of(gws[i]), *r = values_of(ref[i]), mx = 0;
            int64_t n = wf_numel(ref[i]);
            for (int64_t j = 0; j < n; j++) mx = fmax(mx, fabs(r[j]));
            for (int64_t j = 0; j < n; j++)
                ck_assert_msg(fabs(a[j] - r[j]) <= 0.05 * mx, "op %d weight %d [%lld]: %.6g vs %.6g", which, i,
                              (long long)j, a[j], r[j]);
            free(a), free(r);
        }
        wf_scope_end();
        fake_teardown();
    }
}
END_TEST

/* ---------------------------------------------------------------- a weight used twice */

START_TEST(weight_used_twice_sums_in_f32) {
    enum { R = 4, I = 24, O = 3 };
    wf_scope_begin();
    wf_tensor *x = randn_on(R, I, WF_F32, 21, WF_CPU), *w = tt_leaf_on(randn_on(O, I, WF_F32, 22, WF_CPU), WF_CPU);
    wf_tensor *g1 = randn_on(R, O, WF_BF16, 23, WF_CPU), *g2 = randn_on(R, O, WF_F32, 24, WF_CPU);
    wf_tensor *g3 = randn_on(O, R, WF_BF16, 25, WF_CPU);
    ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
    wf_tensor *y1 = wf_linear(x, w, NULL);                 /* the bf16 copy: an f32 gradient */
    wf_tensor *y3 = wf_matmul(w, wf_t(x));                 /* the same cached copy: a bf16 one */
    ck_assert_int_eq(wf_autocast_end(), 0);
    wf_tensor *y2 = wf_linear(x, w, NULL);                 /* w itself, f32 */
    ck_assert_msg(y1 && y2 && y3, "%s", wf_error_message());
    wf_tensor *l = wf_add(wf_add(wf_sum_all(wf_mul(wf_to_dtype(y1, WF_F32), wf_to_dtype(g1, WF_F32))),
                                 wf_sum_all(wf_mul(y2, g2))),
                          wf_sum_all(wf_mul(wf_to_dtype(y3, WF_F32), wf_to_dtype(g3, WF_F32))));
    ck_assert_int_eq(wf_backward(l, NULL, false), 0);
    wf_tensor *gw = wf_grad(w);
    ck_assert_int_eq(wf_tensor_dtype(gw), WF_F32);
    /* reference: g1^T xb + g2^T x + g3^T xb in f64; g3's term is rounded to bf16 (matmul) */
    double *a = values_of(g1), *b = values_of(g2), *c = values_of(g3), *xv = values_of(x);
    double *xb = values_of(wf_to_dtype(x, WF_BF16)), *got = values_of(gw);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double ref = 0, mag = 0;
            for (int r = 0; r < R; r++) {
                double t1 = a[r * O + o] * xb[r * I + i], t2 = b[r * O + o] * xv[r * I + i], t3 = c[o * R + r] * xb[r * I + i];
                ref += t1 + t2 + t3;
                mag += fabs(t1) + fabs(t2) + fabs(t3);
            }
            ck_assert_msg(fabs(got[o * I + i] - ref) <= 0x1p-7 * mag, "[%d,%d] %.9g vs %.9g", o, i, got[o * I + i], ref);
        }
    free(a), free(b), free(c), free(xv), free(xb), free(got);
    wf_scope_end();
}
END_TEST

/* ---------------------------------------------------------------- the raw op and the kernel */

START_TEST(matmul_f32_raw_writes_f32) {
    wf_scope_begin();
    const double e = 1.0 + 1.0 / 128;   /* exact in bf16; e * e = 1 + 2^-6 + 2^-14 is not */
    wf_tensor *a = wf_to_dtype(wf_from_data((double[]){ e, 1 }, WF_SHAPE(1, 2), WF_F64), WF_BF16);
    wf_tensor *b = wf_to_dtype(wf_from_data((double[]){ e, 3 }, WF_SHAPE(1, 2), WF_F64), WF_BF16);
    wf_tensor *c = wf__matmul_f32_raw(wf_t(a), b);   /* [2, 1] @ [1, 2], a read transposed */
    ck_assert_msg(c != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(c), WF_F32);
    ck_assert_tensor_near(c, ((double[]){ e * e, 3 * e, e, 3 }), 4, 0);
    /* f64 operands give f64; f32 against wf_matmul */
    wf_manual_seed(3);
    wf_tensor *p = wf_randn(WF_SHAPE(3, 5), WF_F64), *q = wf_randn(WF_SHAPE(5, 4), WF_F64);
    wf_tensor *r = wf__matmul_f32_raw(p, q);
    ck_assert_int_eq(wf_tensor_dtype(r), WF_F64);
    tt_assert_close(r, wf_matmul(p, q), 1e-12);
    wf_tensor *pf = wf_to_dtype(p, WF_F32), *qs = wf_slice(wf_to_dtype(wf_randn(WF_SHAPE(5, 8), WF_F64), WF_F32), 1, 0, 8, 2);
    tt_assert_close(wf__matmul_f32_raw(pf, qs), wf_matmul(pf, qs), 1e-5);
    /* an empty inner dimension: zeros */
    wf_tensor *z = wf__matmul_f32_raw(wf_ones(WF_SHAPE(2, 0), WF_BF16), wf_ones(WF_SHAPE(0, 3), WF_BF16));
    ck_assert_tensor_near(z, ((double[6]){ 0 }), 6, 0);
    /* bad inputs */
    ck_assert_ptr_null(wf__matmul_f32_raw(NULL, b));
    ck_assert_int_eq(wf_error(), WF_ENULL);
    ck_assert_ptr_null(wf__matmul_f32_raw(a, wf_ones(WF_SHAPE(2, 2), WF_F32)));
    ck_assert_error(WF_EDTYPE, "wf__matmul_f32_raw: dtype mismatch (bfloat16 and float32)");
    ck_assert_ptr_null(wf__matmul_f32_raw(wf_ones(WF_SHAPE(2, 2), WF_I32), wf_ones(WF_SHAPE(2, 2), WF_I32)));
    ck_assert_error(WF_EDTYPE, "int32 tensors are not supported");
    ck_assert_ptr_null(wf__matmul_f32_raw(wf_ones(WF_SHAPE(2), WF_F32), wf_ones(WF_SHAPE(2, 2), WF_F32)));
    ck_assert_error(WF_ESHAPE, "wf__matmul_f32_raw: needs 2-D tensors, got [2] @ [2,2]");
    ck_assert_ptr_null(wf__matmul_f32_raw(wf_ones(WF_SHAPE(2, 3), WF_F32), wf_ones(WF_SHAPE(2, 2), WF_F32)));
    ck_assert_error(WF_ESHAPE, "inner dimensions differ (3 vs 2)");
    wf_scope_end();
}
END_TEST

/* gemm_acc's beta: 0 writes C without reading it (NaN gone), 1 adds; k == 0 is C = beta * C */
START_TEST(gemm_acc_beta) {
    wf_scope_begin();
    const wf_kernels *K = &wf__cpu_kernels;
    uint16_t a[4], b[4];   /* bf16 [[1, 2], [3, 4]] and [[1, 0], [0, 1]] */
    wf_tensor *ta = wf_to_dtype(wf_from_data((double[]){ 1, 2, 3, 4 }, WF_SHAPE(2, 2), WF_F64), WF_BF16);
    wf_tensor *tb = wf_to_dtype(wf_from_data((double[]){ 1, 0, 0, 1 }, WF_SHAPE(2, 2), WF_F64), WF_BF16);
    memcpy(a, wf__host_ptr(ta), sizeof a);
    memcpy(b, wf__host_ptr(tb), sizeof b);
    for (int f = 0; f < 2; f++) {   /* bf16 operands, then f32 ones */
        wf_dtype dt = f ? WF_F32 : WF_BF16;
        wf_tensor *pa = wf_to_dtype(ta, dt), *pb = wf_to_dtype(tb, dt);
        float c[4] = { NAN, NAN, NAN, NAN };
        ck_assert_int_eq(K->gemm_acc(dt, false, false, 2, 2, 2, wf__host_ptr(pa), 2, wf__host_ptr(pb), 2, 0.0, c, 2, WF_CPU), 0);
        ck_assert(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
        ck_assert_int_eq(K->gemm_acc(dt, true, false, 2, 2, 2, wf__host_ptr(pa), 2, wf__host_ptr(pb), 2, 1.0, c, 2, WF_CPU), 0);
        ck_assert(c[0] == 2 && c[1] == 5 && c[2] == 5 && c[3] == 8);   /* + A^T */
        ck_assert_int_eq(K->gemm_acc(dt, false, false, 2, 2, 0, NULL, 1, NULL, 2, 1.0, c, 2, WF_CPU), 0);
        ck_assert(c[0] == 2 && c[3] == 8);
        ck_assert_int_eq(K->gemm_acc(dt, false, false, 2, 2, 0, NULL, 1, NULL, 2, 0.0, c, 2, WF_CPU), 0);
        ck_assert(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    }
    float c[4] = { 0 };
    ck_assert_int_eq(K->gemm_acc(WF_BF16, false, false, 2, 2, 2, a, 2, b, 2, 2.0, c, 2, WF_CPU), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "gemm_acc (cpu): beta must be 0 (overwrite) or 1 (accumulate), got 2");
    ck_assert_int_eq(K->gemm_acc(WF_I32, false, false, 2, 2, 2, a, 2, b, 2, 0.0, c, 2, WF_CPU), WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "gemm_acc (cpu): dtype int32 is not supported");
    wf_scope_end();
}
END_TEST

int main(void) {
    Suite *s = suite_create(old_mode() ? "wgrad_f32 (WEFT_WGRAD_F32_OLD=1)" : "wgrad_f32");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, linear_weight_grad_is_f32);
    tcase_add_test(tc, lm_head_weight_grad_is_f32);
    tcase_add_test(tc, linear_bias_fused_bgrad_is_kept);
    tcase_add_test(tc, fewer_casts_per_weight);
    tcase_add_test(tc, fused_weight_grads_match_f32);
    tcase_add_test(tc, weight_used_twice_sums_in_f32);
    tcase_add_test(tc, matmul_f32_raw_writes_f32);
    tcase_add_test(tc, gemm_acc_beta);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
