/* tests/ops/op_expect.c: PyTorch semantics the f64 reference of test_ops.c cannot judge
 * (it is weft itself), checked against values written down from PyTorch 2.x:
 *   - NaN propagates: relu, clamp, maximum/minimum, amax/amin, argmax/argmin (NaN wins),
 *     max pooling;
 *   - type promotion with 0-dim tensors and scalars (torch.result_type);
 *   - gradients at the edges: relu/abs/sign at 0, sqrt at 0, clamp at its bounds, amax ties
 *     (spread evenly), maximum ties (halved), max(dim)/max pooling ties (one index), the norm
 *     at zero, a cross-entropy whose targets are all ignored.
 *   - Linear and CausalSelfAttention under bf16 autocast against f32 on the CPU;
 *   - linear_cross_entropy and linear_gelu against the unfused ops (f64, f32, bf16 autocast);
 *   - add_layer_norm against add + layer_norm (values and the four gradients in their dtypes), and
 *     add_bias_layer_norm against add(x, add(r, r_bias)) + layer_norm (the five);
 *   - error codes and messages of the paths these touch (norm, amax, relu, broadcasting);
 *   - a second backward adds into the leaves' gradients (CUDA: the axpy kernels);
 *   - on CUDA, what the values cannot show: the fused kernels are taken (attention at every
 *     head-dim class and layout of the table's samples, attention on a packed qkv, layer norm
 *     at every width class, linear + GELU), and an out-of-range index is WF_EINDEX and leaves
 *     the device usable. (The caching allocator, not an op: tests/cuda/test_cuda_allocator.c.)
 * One function per group; each runs on the device it is given, in every floating dtype. */
#include "op_table.h"
#include "weft/cuda.h"
#include "weft_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const wf_dtype fdts[4] = { WF_F32, WF_F64, WF_F16, WF_BF16 };

static wf_tensor *vec(wf_device dev, wf_dtype dt, const double *v, int64_t n) {
    return wf_to_device(wf_to_dtype(wf_from_data(v, &n, 1, WF_F64), dt), dev);
}
static wf_tensor *leaf(wf_device dev, wf_dtype dt, const double *v, int64_t n) {
    wf_tensor *t = wf_detach(vec(dev, dt, v, n));
    if (t) wf_set_requires_grad(t, true);
    return t;
}
#define VEC(dev, dt, ...) vec(dev, dt, (const double[]){ __VA_ARGS__ }, (int64_t)(sizeof((double[]){ __VA_ARGS__ }) / sizeof(double)))
#define LEAF(dev, dt, ...) leaf(dev, dt, (const double[]){ __VA_ARGS__ }, (int64_t)(sizeof((double[]){ __VA_ARGS__ }) / sizeof(double)))

/* t's values equal e (NaN where e is NaN), within tol relative; one FAIL line if not */
static int expect(const char *what, wf_device dev, wf_tensor *t, const double *e, int64_t n, double tol, int *checks) {
    ++*checks;
    char dn[16];
    wf_device_str(dev, dn, sizeof dn);
    if (!t) {
        printf("FAIL %s on %s: %s\n", what, dn, wf_error_message());
        wf_clear_error();
        return 1;
    }
    if (wf_numel(t) != n) {
        printf("FAIL %s on %s: %lld values, expected %lld\n", what, dn, (long long)wf_numel(t), (long long)n);
        return 1;
    }
    double v[16];
    if (n > 16 || wf_to_array(t, v, WF_F64)) {
        printf("FAIL %s on %s: reading: %s\n", what, dn, wf_error_message());
        wf_clear_error();
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        bool ok = isnan(e[i]) ? isnan(v[i]) : (v[i] == e[i] || fabs(v[i] - e[i]) <= tol * (1 + fabs(e[i])));
        if (!ok) {
            printf("FAIL %s on %s (%s): element %lld is %.9g, PyTorch gives %.9g\n", what, dn,
                   wf_dtype_name(wf_tensor_dtype(t)), (long long)i, v[i], e[i]);
            return 1;
        }
    }
    return 0;
}
#define EXPECT(what, t, ...) \
    expect(what, dev, t, (const double[]){ __VA_ARGS__ }, (int64_t)(sizeof((double[]){ __VA_ARGS__ }) / sizeof(double)), 1e-2, checks)

static int expect_dtype(const char *what, wf_device dev, wf_tensor *t, wf_dtype want, int *checks) {
    ++*checks;
    if (t && wf_tensor_dtype(t) == want) return 0;
    char dn[16];
    wf_device_str(dev, dn, sizeof dn);
    printf("FAIL %s on %s: dtype %s, PyTorch gives %s%s%s\n", what, dn, t ? wf_dtype_name(wf_tensor_dtype(t)) : "(error)",
           wf_dtype_name(want), t ? "" : ": ", t ? "" : wf_error_message());
    wf_clear_error();
    return 1;
}

static int grad_of(wf_tensor *y) { return y ? wf_backward(wf_sum_all(y), NULL, false) : wf_error(); }

/* ---------------------------------------------------------------- NaN propagation */

static int nan_propagates(wf_device dev, int *checks) {
    int f = 0;
    for (int i = 0; i < 4; i++) {
        wf_dtype dt = fdts[i];
        wf_tensor *x = VEC(dev, dt, NAN, -1, 0, 2);
        f += EXPECT("relu(NaN)", wf_relu(x), NAN, 0, 0, 2);
        wf_tensor *c = wf_clone(x);
        if (c && wf_relu_(c)) c = NULL;
        f += EXPECT("relu_(NaN)", c, NAN, 0, 0, 2);
        f += EXPECT("clamp(NaN)", wf_clamp(x, -0.5, 1), NAN, -0.5, 0, 1);
        f += EXPECT("maximum(NaN, x)", wf_maximum(x, VEC(dev, dt, 1, NAN, -1, 1)), NAN, NAN, 0, 2);
        f += EXPECT("minimum(NaN, x)", wf_minimum(x, VEC(dev, dt, 1, NAN, -1, 1)), NAN, NAN, -1, 1);
        f += EXPECT("maximum_scalar(NaN)", wf_maximum_scalar(x, 0), NAN, 0, 0, 2);
        f += EXPECT("amax with NaN", wf_amax(x, NULL, 0, false), NAN);
        f += EXPECT("amin with NaN", wf_amin(x, NULL, 0, false), NAN);
        wf_tensor *x2 = VEC(dev, dt, 1, NAN, 3, NAN);
        f += EXPECT("argmax: the first NaN wins", wf_argmax(x2, 0, false), 1);
        f += EXPECT("argmin: the first NaN wins", wf_argmin(x2, 0, false), 1);
        f += EXPECT("norm(inf) with NaN", wf_norm(x2, INFINITY, NULL, 0, false), NAN);
        wf_pool2d_opts po = { .kernel = { 2, 2 } };
        wf_tensor *img = wf_reshape(VEC(dev, dt, 1, NAN, 3, 4, 5, 6, 7, 8), (int64_t[]){ 1, 1, 2, 4 }, 4);
        f += EXPECT("max_pool2d window with NaN", wf_max_pool2d(img, &po), NAN, 8);
        wf_clear_error();
    }
    return f;
}

/* ---------------------------------------------------------------- promotion */

static int promotes(wf_device dev, int *checks) {
    int f = 0;
    wf_tensor *h = VEC(dev, WF_F16, 1, 2), *s = VEC(dev, WF_F32, 1, 2), *i32 = VEC(dev, WF_I32, 1, 2);
    wf_tensor *u8 = VEC(dev, WF_U8, 1, 2), *b = VEC(dev, WF_BOOL, 1, 0);
    wf_tensor *s0 = wf_to_device(wf_scalar(1.5, WF_F32), dev), *d0 = wf_to_device(wf_scalar(1.5, WF_F64), dev);
    wf_tensor *l0 = wf_to_device(wf_scalar(2, WF_I64), dev), *b0 = wf_to_device(wf_scalar(1, WF_BOOL), dev);
    wf_dtype df = wf_get_default_dtype();
    f += expect_dtype("float16 tensor + float32 0-dim", dev, wf_add(h, s0), WF_F16, checks);
    f += expect_dtype("float32 0-dim * float16 tensor", dev, wf_mul(s0, h), WF_F16, checks);
    f += expect_dtype("float32 tensor + float64 0-dim", dev, wf_add(s, d0), WF_F32, checks);
    f += expect_dtype("int32 tensor + float64 0-dim", dev, wf_add(i32, d0), WF_F64, checks);
    f += expect_dtype("int32 tensor + int64 0-dim", dev, wf_add(i32, l0), WF_I32, checks);
    f += expect_dtype("uint8 tensor + int64 0-dim", dev, wf_add(u8, l0), WF_U8, checks);
    f += expect_dtype("bool tensor + int64 0-dim", dev, wf_add(b, l0), WF_I64, checks);
    f += expect_dtype("int32 tensor + bool 0-dim", dev, wf_add(i32, b0), WF_I32, checks);
    f += expect_dtype("float32 0-dim + float64 0-dim", dev, wf_add(s0, d0), WF_F64, checks);
    f += expect_dtype("float16 tensor + float32 tensor", dev, wf_add(h, s), WF_F32, checks);
    f += expect_dtype("int32 tensor + 0.5", dev, wf_add_scalar(i32, 0.5), df, checks);
    f += expect_dtype("int32 tensor + 2", dev, wf_add_scalar(i32, 2), WF_I32, checks);
    f += expect_dtype("bool tensor + 1", dev, wf_add_scalar(b, 1), WF_I64, checks);
    f += expect_dtype("float16 tensor * 3.5", dev, wf_mul_scalar(h, 3.5), WF_F16, checks);
    f += expect_dtype("where(c, float16 tensor, float32 0-dim)", dev, wf_where(wf_gt_scalar(h, 1), h, s0), WF_F16, checks);
    f += expect_dtype("maximum(int32 tensor, float64 0-dim)", dev, wf_maximum(i32, d0), WF_F64, checks);
    f += EXPECT("float16 tensor + float32 0-dim: values", wf_add(h, s0), 2.5, 3.5);
    {   /* in place keeps the output's dtype; a float 0-dim into an int tensor is an error */
        wf_tensor *c = wf_clone(h);
        int rc = c ? wf_add_(c, d0) : -1;
        ++*checks;
        if (rc || wf_tensor_dtype(c) != WF_F16) { printf("FAIL float16 tensor += float64 0-dim: %s\n", wf_error_message()); f++; }
        wf_clear_error();
        wf_tensor *ci = wf_clone(i32);
        ++*checks;
        if (!ci || wf_add_(ci, d0) != WF_EDTYPE) { printf("FAIL int32 tensor += float64 0-dim should be WF_EDTYPE\n"); f++; }
        wf_clear_error();
    }
    return f;
}

/* ---------------------------------------------------------------- gradients at the edges */

static int edge_grads(wf_device dev, int *checks) {
    int f = 0;
    for (int i = 0; i < 4; i++) {
        wf_dtype dt = fdts[i];
        wf_tensor *x;
        x = LEAF(dev, dt, -1, 0, 2);
        f += grad_of(wf_relu(x)) ? EXPECT("relu backward", NULL, 0) : EXPECT("relu grad at 0", wf_grad(x), 0, 0, 1);
        x = LEAF(dev, dt, -1, 0, 2);
        f += grad_of(wf_abs(x)) ? EXPECT("abs backward", NULL, 0) : EXPECT("abs grad at 0", wf_grad(x), -1, 0, 1);
        x = LEAF(dev, dt, -1, 0, 2);
        f += grad_of(wf_sign(x)) ? EXPECT("sign backward", NULL, 0) : EXPECT("sign grad", wf_grad(x), 0, 0, 0);
        x = LEAF(dev, dt, 0, 4);
        f += grad_of(wf_sqrt(x)) ? EXPECT("sqrt backward", NULL, 0) : EXPECT("sqrt grad at 0", wf_grad(x), INFINITY, 0.25);
        x = LEAF(dev, dt, -1, -0.5, 0, 1, 2);
        f += grad_of(wf_clamp(x, -0.5, 1)) ? EXPECT("clamp backward", NULL, 0)
                                           : EXPECT("clamp grad at its bounds", wf_grad(x), 0, 1, 1, 1, 0);
        x = LEAF(dev, dt, 1, 3, 3);
        f += grad_of(wf_amax(x, NULL, 0, false)) ? EXPECT("amax backward", NULL, 0)
                                                 : EXPECT("amax ties spread evenly", wf_grad(x), 0, 0.5, 0.5);
        x = LEAF(dev, dt, 3, 1, 3, 3);
        f += grad_of(wf_amin(wf_neg(x), NULL, 0, false)) ? EXPECT("amin backward", NULL, 0)
                                                         : EXPECT("amin ties spread evenly", wf_grad(x), -1.0 / 3, 0, -1.0 / 3, -1.0 / 3);
        f += EXPECT("argmax ties: the first index", wf_argmax(VEC(dev, dt, 3, 1, 3), 0, false), 0);
        x = LEAF(dev, dt, 1, 2, 3);
        wf_tensor *y = LEAF(dev, dt, 1, 5, 0);
        if (grad_of(wf_maximum(x, y))) f += EXPECT("maximum backward", NULL, 0);
        else {
            f += EXPECT("maximum ties: half to each (x)", wf_grad(x), 0.5, 0, 1);
            f += EXPECT("maximum ties: half to each (y)", wf_grad(y), 0.5, 1, 0);
        }
        wf_pool2d_opts po = { .kernel = { 2, 2 } };
        x = leaf(dev, dt, (const double[]){ 2, 2, 2, 1 }, 4);
        wf_tensor *img = x ? wf_reshape(x, (int64_t[]){ 1, 1, 2, 2 }, 4) : NULL;
        f += grad_of(wf_max_pool2d(img, &po)) ? EXPECT("max_pool2d backward", NULL, 0)
                                               : EXPECT("max_pool2d ties: one index", wf_grad(x), 1, 0, 0, 0);
        x = LEAF(dev, dt, 0, 0, 0);
        f += grad_of(wf_norm(x, 2, NULL, 0, false)) ? EXPECT("norm backward", NULL, 0)
                                                    : EXPECT("norm(2) grad at zero", wf_grad(x), 0, 0, 0);
        x = LEAF(dev, dt, 0, 0, 0);
        f += grad_of(wf_norm(x, 3, NULL, 0, false)) ? EXPECT("norm backward", NULL, 0)
                                                    : EXPECT("norm(3) grad at zero", wf_grad(x), 0, 0, 0);
        f += EXPECT("norm(2) of zeros", wf_norm(VEC(dev, dt, 0, 0), 2, NULL, 0, false), 0);
        f += EXPECT("norm(2) of inf", wf_norm(VEC(dev, dt, INFINITY, 1), 2, NULL, 0, false), INFINITY);
        {   /* every target ignored */
            wf_tensor *lg = LEAF(dev, dt, 1, 2, 3, 4, 5, 6);
            wf_tensor *l2 = lg ? wf_reshape(lg, (int64_t[]){ 2, 3 }, 2) : NULL;
            wf_tensor *t = wf_to_device(wf_from_data((int64_t[]){ -100, -100 }, (int64_t[]){ 2 }, 1, WF_I64), dev);
            wf_cross_entropy_opts o = { 0 };
            wf_tensor *loss = wf_cross_entropy(l2, t, &o);
            f += EXPECT("cross_entropy(mean), every target ignored", loss, NAN);
            if (loss && wf_backward(loss, NULL, false)) f += EXPECT("cross_entropy backward", NULL, 0);
            else f += EXPECT("cross_entropy(mean) grad, every target ignored", wf_grad(lg), 0, 0, 0, 0, 0, 0);
            wf_cross_entropy_opts os = { .reduction = WF_REDUCTION_SUM };
            f += EXPECT("cross_entropy(sum), every target ignored", wf_cross_entropy(l2, t, &os), 0);
            wf_cross_entropy_opts ol = { .label_smoothing = 0.1 };
            f += EXPECT("cross_entropy(label smoothing), every target ignored", wf_cross_entropy(l2, t, &ol), NAN);
        }
        wf_clear_error();
    }
    return f;
}

/* ---------------------------------------------------------------- errors */

/* the call failed with code and a message containing text */
static int expect_error(const char *what, wf_device dev, bool failed, int code, const char *text, int *checks) {
    ++*checks;
    int got = wf_error();
    const char *msg = wf_error_message();
    bool ok = failed && got == code && msg && strstr(msg, text);
    if (!ok) {
        char dn[16];
        wf_device_str(dev, dn, sizeof dn);
        printf("FAIL %s on %s: expected %s with \"%s\", got %s (%s)\n", what, dn, wf_error_name(code), text,
               failed ? wf_error_name(got) : "success", failed && msg ? msg : "");
    }
    wf_clear_error();
    return ok ? 0 : 1;
}

static int errors(wf_device dev, int *checks) {
    int f = 0;
    wf_tensor *x = VEC(dev, WF_F32, 1, -2, 3);
    wf_tensor *e = wf_to_device(wf_zeros(WF_SHAPE(2, 0), WF_F32), dev);
    f += expect_error("norm with p = -1", dev, !wf_norm(x, -1, NULL, 0, false), WF_EINVAL, "wf_norm: p must be > 0", checks);
    f += expect_error("norm(inf) over an empty dim", dev, !wf_norm(e, INFINITY, (int[]){ 1 }, 1, false), WF_EINVAL,
                      "wf_norm: the infinity norm of an empty dimension", checks);
    f += expect_error("norm of an int tensor", dev, !wf_norm(VEC(dev, WF_I64, 1, 2), 2, NULL, 0, false), WF_EDTYPE,
                      "wf_norm: needs a floating dtype", checks);
    f += expect_error("amax over an empty dim", dev, !wf_amax(e, (int[]){ 1 }, 1, false), WF_EINVAL, "empty dimension", checks);
    f += expect_error("relu of a bool tensor", dev, !wf_relu(VEC(dev, WF_BOOL, 1, 0)), WF_EDTYPE, "wf_relu", checks);
    f += expect_error("add with a NULL operand", dev, !wf_add(x, NULL), WF_ENULL, "wf_add", checks);
    f += expect_error("add of shapes that do not broadcast", dev, !wf_add(x, VEC(dev, WF_F32, 1, 2)), WF_ESHAPE,
                      "do not broadcast", checks);
    wf_tensor *t = wf_to_device(wf_from_data((int64_t[]){ 0, 7 }, WF_SHAPE(2), WF_I64), dev);
    wf_cross_entropy_opts o = { 0 };
    wf_tensor *bad = wf_cross_entropy(wf_reshape(VEC(dev, WF_F32, 1, 2, 3, 4, 5, 6), WF_SHAPE(2, 3)), t, &o);
    if (dev.type == WF_DEV_CUDA) {
        /* a GPU kernel finds the bad index while the host runs ahead (as PyTorch's device-side
         * assert): the error arrives at the next synchronize, naming the kernel, and is then
         * cleared, so the next op on the device runs */
        int rc = bad ? wf_cuda_synchronize(dev.index) : -1;
        f += expect_error("cross_entropy with a target out of range, at the next synchronize", dev, bad && rc < 0,
                          WF_EINDEX, "cross_entropy", checks);
        ++*checks;
        if (wf_cuda_synchronize(dev.index) < 0) {
            printf("FAIL the synchronize after a delivered index error on cuda:%d: %s\n", dev.index, wf_error_message());
            wf_clear_error();
            f++;
        }
    } else {
        f += expect_error("cross_entropy with a target out of range", dev, !bad, WF_EINDEX, "wf_cross_entropy", checks);
    }
    return f;
}

/* ---------------------------------------------------------------- autocast */

/* max |a - b| <= tol * max |b| (low-precision results against an f32 reference) */
static int close_rel(const char *what, wf_device dev, wf_tensor *a, wf_tensor *b, double tol, int *checks) {
    ++*checks;
    char dn[16];
    wf_device_str(dev, dn, sizeof dn);
    int64_t n = a && b ? wf_numel(b) : 0;
    double *va = n ? malloc(sizeof(double) * (size_t)n) : NULL, *vb = n ? malloc(sizeof(double) * (size_t)n) : NULL;
    bool ok = va && vb && wf_numel(a) == n && !wf_to_array(a, va, WF_F64) && !wf_to_array(b, vb, WF_F64);
    double md = 0, mb = 0;
    for (int64_t i = 0; ok && i < n; i++) {
        double d = fabs(va[i] - vb[i]);
        if (!(d <= md)) md = isnan(d) ? INFINITY : d;
        if (fabs(vb[i]) > mb) mb = fabs(vb[i]);
    }
    if (ok && !(md <= tol * mb)) ok = false;
    if (!ok) printf("FAIL %s on %s: max difference %.3g of max %.3g (tolerance %g) %s\n", what, dn, md, mb, tol, wf_error_message());
    wf_clear_error();
    free(va);
    free(vb);
    return ok ? 0 : 1;
}

/* Linear and CausalSelfAttention under bf16 autocast with f32 leaves (the GPT block's case:
 * on CUDA the fused bias epilogue and the packed-qkv attention) against the CPU in f32 */
static int autocast_bf16(wf_device dev, int *checks) {
    int f = 0;
    {
        wf_manual_seed(11);
        wf_tensor *src[3] = { wf_randn(WF_SHAPE(2, 33, 96), WF_F32), wf_mul_scalar(wf_randn(WF_SHAPE(37, 96), WF_F32), 0.2),
                              wf_randn(WF_SHAPE(37), WF_F32) };
        wf_tensor *lc[3], *ld[3];
        for (int i = 0; i < 3; i++) {   /* values exact in bf16 */
            wf_tensor *r = wf_to_dtype(wf_to_dtype(src[i], WF_BF16), WF_F32);
            lc[i] = wf_clone(r);
            ld[i] = wf_detach(wf_to_device(r, dev));
            wf_set_requires_grad(lc[i], true);
            wf_set_requires_grad(ld[i], true);
        }
        wf_tensor *yc = wf_linear(lc[0], lc[1], lc[2]), *yd;
        wf_autocast_begin(dev.type, WF_BF16);
        yd = wf_linear(ld[0], ld[1], ld[2]);
        wf_autocast_end();
        f += expect_dtype("linear under bf16 autocast", dev, yd, WF_BF16, checks);   /* autocast took it */
        f += close_rel("linear under bf16 autocast", dev, yd, yc, 1.5e-2, checks);
        wf_tensor *g = wf_to_dtype(wf_to_dtype(wf_randn(WF_SHAPE(2, 33, 37), WF_F32), WF_BF16), WF_F32);
        if (!yd || !yc || wf_backward(yd, wf_to_device(wf_to_dtype(g, wf_tensor_dtype(yd)), dev), false) ||
            wf_backward(yc, g, false)) {
            f += close_rel("linear under bf16 autocast: backward", dev, NULL, NULL, 0, checks);
        } else {
            f += close_rel("linear under bf16 autocast: dx", dev, wf_grad(ld[0]), wf_grad(lc[0]), 3e-2, checks);
            f += close_rel("linear under bf16 autocast: dw", dev, wf_grad(ld[1]), wf_grad(lc[1]), 3e-2, checks);
            f += close_rel("linear under bf16 autocast: db", dev, wf_grad(ld[2]), wf_grad(lc[2]), 3e-2, checks);
        }
    }
    {
        const int64_t B = 2, T = 40, E = 96, H = 3;
        wf_manual_seed(77);
        wf_module *mc = wf_causal_self_attention_new(E, H, true, 0.0);
        wf_manual_seed(77);
        wf_module *md = wf_causal_self_attention_new(E, H, true, 0.0);
        wf_tensor *x = wf_randn(WF_SHAPE(B, T, E), WF_F32), *xc = wf_clone(x), *xd = wf_detach(wf_to_device(x, dev));
        wf_set_requires_grad(xc, true);
        wf_set_requires_grad(xd, true);
        wf_tensor *yc = NULL, *yd = NULL;
        if (mc && md && !wf_module_to(md, dev, WF_F32)) {
            yc = wf_module_forward(mc, xc);
            wf_autocast_begin(dev.type, WF_BF16);
            yd = wf_module_forward(md, xd);
            wf_autocast_end();
        }
        f += close_rel("CausalSelfAttention under bf16 autocast", dev, yd ? wf_to_dtype(yd, WF_F32) : NULL, yc, 3e-2, checks);
        wf_tensor *w = wf_randn(WF_SHAPE(B, T, E), WF_F32);
        wf_tensor *ld = yd ? wf_sum_all(wf_mul(wf_to_dtype(yd, WF_F32), wf_to_device(w, dev))) : NULL;
        wf_tensor *lc = yc ? wf_sum_all(wf_mul(yc, w)) : NULL;
        if (!ld || !lc || wf_backward(ld, NULL, false) || wf_backward(lc, NULL, false)) {
            f += close_rel("CausalSelfAttention under bf16 autocast: backward", dev, NULL, NULL, 0, checks);
        } else {
            f += close_rel("CausalSelfAttention under bf16 autocast: dx", dev, wf_grad(xd), wf_grad(xc), 5e-2, checks);
            wf_module *ad = wf_module_get_child(md, "c_attn"), *ac = wf_module_get_child(mc, "c_attn");
            f += close_rel("CausalSelfAttention under bf16 autocast: d c_attn.weight", dev,
                           ad ? wf_grad(wf_module_get_parameter(ad, "weight")) : NULL,
                           ac ? wf_grad(wf_module_get_parameter(ac, "weight")) : NULL, 5e-2, checks);
            f += close_rel("CausalSelfAttention under bf16 autocast: d c_attn.bias", dev,
                           ad ? wf_grad(wf_module_get_parameter(ad, "bias")) : NULL,
                           ac ? wf_grad(wf_module_get_parameter(ac, "bias")) : NULL, 5e-2, checks);
        }
        wf_module_free(mc);
        wf_module_free(md);
    }
    return f;
}

/* ---------------------------------------------------------------- fused Linear front-ends */

/* leaves on dev of dtype dt with src's values (rounded to bf16 first, so that every dtype
 * starts from the same numbers) */
static wf_tensor *leaf_of(wf_tensor *src, wf_device dev, wf_dtype dt) {
    wf_tensor *t = wf_detach(wf_to_device(wf_to_dtype(wf_to_dtype(src, WF_BF16), dt), dev));
    if (t) wf_set_requires_grad(t, true);
    return t;
}

/* the sum of y's elements as a loss (any shape) */
static wf_tensor *sum_f32(wf_tensor *y) { return y ? wf_sum_all(wf_to_dtype(y, WF_F32)) : NULL; }

/* wf_linear_cross_entropy (several chunks), wf_linear_gelu and wf_fused_mlp (its GELU made
 * again in backward) against the unfused ops on the same device: loss, dh, dweight, dbias. f64 and f32 plain, bf16 through autocast over f32
 * leaves (the GPT's case on CUDA: the fused kernels); the unfused side runs the same way. */
static int linear_fused_vs_unfused(wf_device dev, int *checks) {
    int f = 0;
    const int64_t N = 37, C = 24, V = 53;
    wf_manual_seed(21);
    wf_tensor *hs = wf_randn(WF_SHAPE(N, C), WF_F32), *ws = wf_mul_scalar(wf_randn(WF_SHAPE(V, C), WF_F32), 0.3);
    wf_tensor *bs = wf_randn(WF_SHAPE(V), WF_F32);
    wf_tensor *w2s = wf_mul_scalar(wf_randn(WF_SHAPE(7, V), WF_F32), 0.3), *b2s = wf_randn(WF_SHAPE(7), WF_F32);
    wf_tensor *t = wf_randint(0, V, WF_SHAPE(N), WF_I64);
    int64_t *tp = malloc(sizeof(int64_t) * (size_t)N);
    if (tp && !wf_to_array(t, tp, WF_I64)) {   /* some rows ignored */
        tp[3] = tp[20] = -100;
        t = wf_from_data(tp, WF_SHAPE(N), WF_I64);
    }
    free(tp);
    t = wf_to_device(t, dev);
    const struct { wf_dtype leaf; bool autocast; double tol; const char *name; } cases[3] = {
        { WF_F64, false, 1e-10, "f64" }, { WF_F32, false, 2e-5, "f32" }, { WF_F32, true, 3e-2, "bf16 autocast" } };
    const wf_reduction reds[2] = { WF_REDUCTION_MEAN, WF_REDUCTION_NONE };
    for (int c = 0; c < 3; c++)
        for (int r = 0; r < 2; r++) {
            wf_tensor *hf = leaf_of(hs, dev, cases[c].leaf), *wf = leaf_of(ws, dev, cases[c].leaf), *bf = leaf_of(bs, dev, cases[c].leaf);
            wf_tensor *hu = leaf_of(hs, dev, cases[c].leaf), *wu = leaf_of(ws, dev, cases[c].leaf), *bu = leaf_of(bs, dev, cases[c].leaf);
            wf_cross_entropy_opts o = { .reduction = reds[r], .label_smoothing = r ? 0.0 : 0.05 };
            if (cases[c].autocast) wf_autocast_begin(dev.type, WF_BF16);
            wf_tensor *lf = wf_linear_cross_entropy(hf, wf, bf, t, &o, 10);
            wf_tensor *lu = wf_cross_entropy(wf_linear(hu, wu, bu), t, &o);
            /* a GELU MLP's first half, batched [2, N/2.., C] */
            wf_tensor *x3f = hf ? wf_reshape(wf_narrow(hf, 0, 0, 36), WF_SHAPE(2, 18, C)) : NULL;
            wf_tensor *x3u = hu ? wf_reshape(wf_narrow(hu, 0, 0, 36), WF_SHAPE(2, 18, C)) : NULL;
            wf_tensor *gf = wf_linear_gelu(x3f, wf, bf, WF_GELU_TANH), *gu = wf_gelu(wf_linear(x3u, wu, bu), WF_GELU_TANH);
            /* the MLP's second Linear on top: [2, 18, V] -> [2, 18, 7] */
            wf_tensor *w2f = leaf_of(w2s, dev, cases[c].leaf), *b2f = leaf_of(b2s, dev, cases[c].leaf);
            wf_tensor *w2u = leaf_of(w2s, dev, cases[c].leaf), *b2u = leaf_of(b2s, dev, cases[c].leaf);
            wf_tensor *mf = wf_fused_mlp(x3f, wf, bf, w2f, b2f, WF_GELU_NONE);
            wf_tensor *mu = wf_linear(wf_gelu(wf_linear(x3u, wu, bu), WF_GELU_NONE), w2u, b2u);
            if (cases[c].autocast) wf_autocast_end();
            char what[128];
            snprintf(what, sizeof what, "linear_cross_entropy %s (%s) against linear + cross_entropy", cases[c].name,
                     r ? "none" : "mean, label smoothing");
            f += close_rel(what, dev, lf, lu, cases[c].tol, checks);
            snprintf(what, sizeof what, "linear_gelu %s against gelu(linear)", cases[c].name);
            f += close_rel(what, dev, gf, gu, cases[c].tol, checks);
            snprintf(what, sizeof what, "fused_mlp %s against linear(gelu(linear))", cases[c].name);
            f += close_rel(what, dev, mf, mu, cases[c].tol, checks);
            wf_tensor *sf = lf && gf && mf ? wf_add(wf_add(sum_f32(lf), sum_f32(gf)), sum_f32(mf)) : NULL;
            wf_tensor *su = lu && gu && mu ? wf_add(wf_add(sum_f32(lu), sum_f32(gu)), sum_f32(mu)) : NULL;
            if (!sf || !su || wf_backward(sf, NULL, false) || wf_backward(su, NULL, false)) {
                f += close_rel("linear fused: backward", dev, NULL, NULL, 0, checks);
                continue;
            }
            snprintf(what, sizeof what, "linear fused %s (%s): dh", cases[c].name, r ? "none" : "mean");
            f += close_rel(what, dev, wf_grad(hf), wf_grad(hu), cases[c].tol, checks);
            snprintf(what, sizeof what, "linear fused %s (%s): dweight", cases[c].name, r ? "none" : "mean");
            f += close_rel(what, dev, wf_grad(wf), wf_grad(wu), cases[c].tol, checks);
            snprintf(what, sizeof what, "linear fused %s (%s): dbias", cases[c].name, r ? "none" : "mean");
            f += close_rel(what, dev, wf_grad(bf), wf_grad(bu), cases[c].tol, checks);
            snprintf(what, sizeof what, "fused_mlp %s: the second weight's and bias's gradients", cases[c].name);
            f += close_rel(what, dev, wf_grad(w2f), wf_grad(w2u), cases[c].tol, checks);
            f += close_rel(what, dev, wf_grad(b2f), wf_grad(b2u), cases[c].tol, checks);
        }
    {   /* every target ignored: a NaN mean and zero gradients, as cross_entropy */
        wf_tensor *h = leaf_of(hs, dev, WF_F32), *w = leaf_of(ws, dev, WF_F32);
        wf_tensor *ti = wf_to_device(wf_full(WF_SHAPE(N), -100, WF_I64), dev);
        wf_tensor *l = wf_linear_cross_entropy(h, w, NULL, ti, NULL, 8);
        f += expect("linear_cross_entropy with every target ignored", dev, l, (const double[]){ NAN }, 1, 0, checks);
        if (l && !wf_backward(l, NULL, false))
            f += expect("linear_cross_entropy with every target ignored: dh", dev, wf_amax(wf_abs(wf_grad(h)), NULL, 0, false),
                        (const double[]){ 0 }, 1, 0, checks);
        wf_clear_error();
    }
    {   /* errors */
        wf_tensor *h = wf_to_device(wf_zeros(WF_SHAPE(4, 3), WF_F32), dev), *w = wf_to_device(wf_zeros(WF_SHAPE(5, 3), WF_F32), dev);
        wf_tensor *tt = wf_to_device(wf_from_data((int64_t[]){ 0, 1, 2, 3 }, WF_SHAPE(4), WF_I64), dev);
        wf_cross_entropy_opts o = { .weight = wf_to_device(wf_ones(WF_SHAPE(5), WF_F32), dev) };
        f += expect_error("linear_cross_entropy with class weights", dev, !wf_linear_cross_entropy(h, w, NULL, tt, &o, 0),
                          WF_ENOTSUP, "wf_linear_cross_entropy: class weights are not supported", checks);
        o = (wf_cross_entropy_opts){ .label_smoothing = 1.5 };
        f += expect_error("linear_cross_entropy with label_smoothing 1.5", dev, !wf_linear_cross_entropy(h, w, NULL, tt, &o, 0),
                          WF_EINVAL, "label_smoothing must be in [0, 1], got 1.5", checks);
        f += expect_error("linear_cross_entropy with chunk_rows -1", dev, !wf_linear_cross_entropy(h, w, NULL, tt, NULL, -1),
                          WF_EINVAL, "chunk_rows must be >= 0", checks);
        f += expect_error("linear_cross_entropy with a weight of the wrong width", dev,
                          !wf_linear_cross_entropy(h, wf_to_device(wf_zeros(WF_SHAPE(5, 4), WF_F32), dev), NULL, tt, NULL, 0),
                          WF_ESHAPE, "weight [5,4] must be [V, C] with V >= 1 and C = 3", checks);
        f += expect_error("linear_cross_entropy with a bias of the wrong size", dev,
                          !wf_linear_cross_entropy(h, w, wf_to_device(wf_zeros(WF_SHAPE(4), WF_F32), dev), tt, NULL, 0),
                          WF_ESHAPE, "bias [4] must be [5]", checks);
        f += expect_error("linear_cross_entropy with int32 targets", dev,
                          !wf_linear_cross_entropy(h, w, NULL, wf_to_dtype(tt, WF_I32), NULL, 0), WF_EDTYPE,
                          "targets must be int64 [4]", checks);
        f += expect_error("linear_cross_entropy with a NULL weight", dev, !wf_linear_cross_entropy(h, NULL, NULL, tt, NULL, 0),
                          WF_ENULL, "wf_linear_cross_entropy", checks);
        if (dev.type == WF_DEV_CPU)   /* CUDA reports a bad class at the next synchronize */
            f += expect_error("linear_cross_entropy with a target out of range", dev,
                              !wf_linear_cross_entropy(h, w, NULL, wf_from_data((int64_t[]){ 0, 9, 1, 1 }, WF_SHAPE(4), WF_I64),
                                                       NULL, 0),
                              WF_EINDEX, "target 9 of row 1 is out of range [0, 5)", checks);
        f += expect_error("linear_gelu with approximate 7", dev, !wf_linear_gelu(h, w, NULL, (wf_gelu_approx)7), WF_EINVAL,
                          "wf_linear_gelu: approximate must be", checks);
        f += expect_error("linear_gelu with mismatched widths", dev,
                          !wf_linear_gelu(h, wf_to_device(wf_zeros(WF_SHAPE(5, 4), WF_F32), dev), NULL, WF_GELU_NONE),
                          WF_ESHAPE, "wf_linear", checks);
    }
    return f;
}

/* ---------------------------------------------------------------- gradient accumulation */

/* Two backward passes through the same leaf: the second adds into its gradient (PyTorch's
 * accumulation; CUDA's axpy kernels, vector path and misaligned). The first pass's gradient,
 * doubled, is the reference: 2g is exact in every dtype. */
static int grads_accumulate(wf_device dev, int *checks) {
    int f = 0;
    for (int i = 0; i < 4; i++)
        for (int mis = 0; mis < 2; mis++) {
            wf_dtype dt = fdts[i];
            wf_manual_seed(31);
            wf_tensor *base = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(4100), WF_F32), dt), dev);
            wf_tensor *x = base ? wf_detach(wf_narrow(base, 0, mis, 4099)) : NULL;
            if (x) wf_set_requires_grad(x, true);
            wf_tensor *g1 = NULL;
            int rc = grad_of(wf_gelu(x, WF_GELU_TANH));
            if (!rc) g1 = wf_clone(wf_grad(x));
            if (!rc) rc = grad_of(wf_gelu(x, WF_GELU_TANH));
            char what[96];
            snprintf(what, sizeof what, "a second backward adds into the gradient (%s, %s)", wf_dtype_name(dt),
                     mis ? "misaligned" : "aligned");
            ++*checks;
            wf_tensor *d = rc || !g1 ? NULL : wf_amax(wf_abs(wf_sub(wf_grad(x), wf_mul_scalar(g1, 2))), NULL, 0, false);
            double v = -1;
            if (!d || wf_to_array(d, &v, WF_F64) || v != 0) {
                char dn[16];
                wf_device_str(dev, dn, sizeof dn);
                printf("FAIL %s on %s: max |grad - 2 g1| = %g %s\n", what, dn, v, d ? "" : wf_error_message());
                wf_clear_error();
                f++;
            }
        }
    return f;
}

/* ---------------------------------------------------------------- CUDA only */

/* autograd/fn_fused.c (not in a public header; op_table.c's qkv rows check its values) */
wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled);

/* wf_add_layer_norm against wf_add + wf_layer_norm on the same device: y, the sum s, and the
 * gradients of x and r (each in its own dtype), weight and bias, with s used again (its own
 * gradient joins in the kernel) or not; at the CUDA fast kernel's width classes and the
 * general kernel's (1500, 3). Where the device has the kernel the fused node is taken.
 * with_rb: wf_add_bias_layer_norm against wf_add(x, wf_add(r, r_bias)) + wf_layer_norm, r_bias
 * of x's dtype (the GPT's f32 bias beside a bf16 branch), its gradient the fifth compared */
static int add_ln_cmp(wf_device dev, int *checks, bool with_rb) {
    int f = 0;
    static const struct { wf_dtype x, r; double tol; } cs[] = { { WF_F32, WF_F32, 2e-5 }, { WF_F32, WF_BF16, 2e-5 },
                                                               { WF_F32, WF_F16, 2e-5 }, { WF_F64, WF_F64, 1e-10 },
                                                               { WF_BF16, WF_BF16, 5e-2 }, { WF_F16, WF_F16, 1e-2 } };
    static const int64_t widths[] = { 96, 768, 132, 1500, 3 };
    wf_manual_seed(23);
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
            int64_t D = widths[wi];
            bool use_s = wi % 2 == 0;
            wf_tensor *xs = wf_randn(WF_SHAPE(2, 3, D), WF_F32), *rs = wf_randn(WF_SHAPE(2, 3, D), WF_F32);
            wf_tensor *ws = wf_randn(WF_SHAPE(D), WF_F32), *bs = wf_randn(WF_SHAPE(D), WF_F32);
            wf_tensor *gy = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(2, 3, D), WF_F32), cs[c].x), dev);
            wf_tensor *gs = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(2, 3, D), WF_F32), cs[c].x), dev);
            wf_tensor *rbs = with_rb ? wf_randn(WF_SHAPE(D), WF_F32) : NULL;
            wf_tensor *in[2][5] = { { 0 } };
            for (int p = 0; p < 2; p++) {
                in[p][0] = leaf_of(xs, dev, cs[c].x);
                in[p][1] = leaf_of(rs, dev, cs[c].r);
                in[p][2] = leaf_of(ws, dev, cs[c].x);
                in[p][3] = leaf_of(bs, dev, cs[c].x);
                if (with_rb) in[p][4] = leaf_of(rbs, dev, cs[c].x);
            }
            wf_tensor *sf = NULL, *yf = with_rb ? wf_add_bias_layer_norm(in[0][0], in[0][1], in[0][4], &D, 1, in[0][2], in[0][3],
                                                                          1e-5, &sf, WF_DTYPE_DEFAULT)
                                                : wf_add_layer_norm(in[0][0], in[0][1], &D, 1, in[0][2], in[0][3], 1e-5, &sf);
            wf_tensor *su = wf_add(in[1][0], with_rb ? wf_add(in[1][1], in[1][4]) : in[1][1]);
            wf_tensor *yu = wf_layer_norm(su, &D, 1, in[1][2], in[1][3], 1e-5);
            char what[128];
            snprintf(what, sizeof what, "add_%slayer_norm %s + %s width %lld", with_rb ? "bias_" : "",
                     wf_dtype_name(cs[c].x), wf_dtype_name(cs[c].r), (long long)D);
#ifdef WEFT_MINIMAL
            bool cpu_fuses = false;   /* the minimal preset composes it (tensor/ops.def) */
#else
            bool cpu_fuses = true;
#endif
            if (dev.type == WF_DEV_CPU ? cpu_fuses : cs[c].x != WF_F64) {   /* CUDA's kernel: f32 and the halves */
                const char *fn = yf ? wf_grad_fn_name(yf) : NULL;
                ++*checks;
                if (!fn || strcmp(fn, "AddLayerNormBackward")) {
                    char dn[16];
                    wf_device_str(dev, dn, sizeof dn);
                    printf("FAIL %s on %s: not the fused kernel (grad_fn %s)\n", what, dn, fn ? fn : "none");
                    f++;
                }
            }
            f += close_rel(what, dev, yf, yu, cs[c].tol, checks);
            f += close_rel(what, dev, sf, su, cs[c].tol, checks);
            wf_tensor *lf = yf && sf ? wf_sum_all(wf_mul(yf, gy)) : NULL, *lu = yu ? wf_sum_all(wf_mul(yu, gy)) : NULL;
            if (use_s && lf && lu) {
                lf = wf_add(lf, wf_sum_all(wf_mul(sf, gs)));
                lu = wf_add(lu, wf_sum_all(wf_mul(su, gs)));
            }
            if (!lf || !lu || wf_backward(lf, NULL, false) || wf_backward(lu, NULL, false)) {
                f += close_rel(what, dev, NULL, NULL, 0, checks);
                continue;
            }
            static const char *const names[5] = { "dx", "dr", "dweight", "dbias", "dr_bias" };
            for (int i = 0; i < (with_rb ? 5 : 4); i++) {
                char w2[160];
                snprintf(w2, sizeof w2, "%s%s: %s", what, use_s ? " (s used)" : "", names[i]);
                /* dr of a half r: both sides round it once, from sums a few f32 ulps apart */
                double tol = i == 1 && cs[c].r != cs[c].x ? 1e-2 : 2 * cs[c].tol;
                f += close_rel(w2, dev, wf_grad(in[0][i]), wf_grad(in[1][i]), tol, checks);
                ++*checks;
                if (wf_grad(in[0][i]) && wf_tensor_dtype(wf_grad(in[0][i])) != wf_tensor_dtype(in[0][i])) {
                    printf("FAIL %s: the gradient is %s\n", w2, wf_dtype_name(wf_tensor_dtype(wf_grad(in[0][i]))));
                    f++;
                }
            }
        }
    return f;
}
static int add_ln_vs_composed(wf_device dev, int *checks) { return add_ln_cmp(dev, checks, false); }
static int add_bias_ln_vs_composed(wf_device dev, int *checks) { return add_ln_cmp(dev, checks, true); }

static int fused_path(int *checks, const char *what, wf_tensor *y, const char *node) {
    ++*checks;
    const char *fn = y ? wf_grad_fn_name(y) : NULL;
    if (fn && strstr(fn, node)) return 0;
    printf("FAIL %s on cuda: not the fused kernel (grad_fn %s; %s)\n", what, fn ? fn : "none", wf_error_message());
    wf_clear_error();
    return 1;
}

/* q, k, v [B, H, L|S, D] of dt on dev, leaves; bthd: [B, T, H, D] storage seen as [B, H, T, D] */
static int sdpa_takes_fused(wf_device dev, wf_dtype dt, int64_t H, int64_t L, int64_t S, int64_t D, bool causal,
                            bool bthd, int *checks) {
    wf_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        int64_t T = i ? S : L;
        int64_t sh[4] = { 1, bthd ? T : H, bthd ? H : T, D };
        wf_tensor *r = wf_to_device(wf_to_dtype(wf_randn(sh, 4, WF_F32), dt), dev);
        in[i] = r ? wf_detach(bthd ? wf_transpose(r, 1, 2) : r) : NULL;
        if (in[i]) wf_set_requires_grad(in[i], true);
    }
    char what[128];
    snprintf(what, sizeof what, "scaled_dot_product_attention %s H%lld L%lld S%lld D%lld%s%s", wf_dtype_name(dt),
             (long long)H, (long long)L, (long long)S, (long long)D, causal ? " causal" : "", bthd ? " [B,T,H,D]" : "");
    return fused_path(checks, what, wf_scaled_dot_product_attention(in[0], in[1], in[2], NULL, 0, causal), "Flash");
}

static int cuda_extras(wf_device dev, int *checks) {
    if (dev.type != WF_DEV_CUDA) return 0;
    int f = 0;
    for (int i = 2; i < 4; i++) {   /* f16, bf16: the fused kernels */
        wf_dtype dt = fdts[i];
        wf_manual_seed(3);
        wf_tensor *q = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(1, 2, 70, 64), WF_F32), dt), dev));
        wf_set_requires_grad(q, true);
        f += fused_path(checks, "scaled_dot_product_attention (half)", wf_scaled_dot_product_attention(q, q, q, NULL, 0, true),
                        "Flash");
        /* the op table's attention samples (values checked there) take the fused kernel */
        static const struct { int64_t H, L, S, D; bool bthd; } at[] = {
            { 2, 130, 130, 64, false }, { 2, 50, 90, 40, false }, { 2, 33, 70, 36, false }, { 3, 45, 300, 33, false },
            { 2, 129, 129, 128, false }, { 2, 100, 64, 96, true }, { 2, 384, 384, 64, false }, { 2, 300, 100, 64, false },
            { 1, 50, 200, 128, true }, { 2, 200, 200, 32, true },
        };
        for (size_t a = 0; a < sizeof at / sizeof at[0]; a++)
            for (int c = 0; c < 2; c++) f += sdpa_takes_fused(dev, dt, at[a].H, at[a].L, at[a].S, at[a].D, c, at[a].bthd, checks);
        /* attention read in place from a packed qkv (rows wider than 3E: strided) */
        static const struct { int64_t T, E, H, pad; } qk[] = { { 77, 128, 2, 0 }, { 130, 192, 2, 8 }, { 65, 72, 2, 0 },
                                                               { 100, 128, 1, 16 }, { 64, 96, 1, 0 } };
        for (size_t a = 0; a < sizeof qk / sizeof qk[0]; a++) {
            wf_tensor *p = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(2, qk[a].T, 3 * qk[a].E + qk[a].pad), WF_F32), dt), dev);
            wf_tensor *qkv = p ? wf_detach(wf_narrow(p, 2, 0, 3 * qk[a].E)) : NULL;
            if (qkv) wf_set_requires_grad(qkv, true);
            bool handled = false;
            wf_tensor *o = qkv ? wf__sdpa_qkv_fused(qkv, qk[a].H, true, &handled) : NULL;
            char what[96];
            snprintf(what, sizeof what, "attention on a packed qkv %s T%lld E%lld H%lld%s", wf_dtype_name(dt), (long long)qk[a].T,
                     (long long)qk[a].E, (long long)qk[a].H, qk[a].pad ? " strided" : "");
            f += fused_path(checks, what, handled ? o : NULL, "Flash");
        }
        /* layer norm: the fast kernel's width classes and the general kernel (1500, 3) */
        static const int64_t lw[] = { 96, 132, 768, 1024, 1500, 3 };
        for (size_t a = 0; a < sizeof lw / sizeof lw[0]; a++) {
            int64_t D = lw[a];
            wf_tensor *x = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(5, D), WF_F32), dt), dev));
            wf_tensor *w = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(D), WF_F32), dt), dev));
            wf_set_requires_grad(x, true);
            char what[64];
            snprintf(what, sizeof what, "layer_norm %s width %lld", wf_dtype_name(dt), (long long)D);
            f += fused_path(checks, what, wf_layer_norm(x, &D, 1, a % 2 ? w : NULL, NULL, 1e-5), "NativeLayerNorm");
        }
        wf_tensor *x = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(5, 96), WF_F32), dt), dev));
        wf_set_requires_grad(x, true);
        wf_tensor *w = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(40, 96), WF_F32), dt), dev));
        wf_tensor *b = wf_detach(wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(40), WF_F32), dt), dev));
        f += fused_path(checks, "linear_gelu (half): the bias_gelu epilogue", wf_linear_gelu(x, w, b, WF_GELU_NONE), "LinearGelu");
    }
    {   /* an out-of-range index is reported, and the device stays usable */
        wf_tensor *x = wf_to_device(wf_zeros(WF_SHAPE(4, 3), WF_F32), dev);
        wf_tensor *bad = wf_to_device(wf_from_data((int64_t[]){ 0, 99 }, WF_SHAPE(2), WF_I64), dev);
        wf_tensor *r = wf_index_select(x, 0, bad);
        int rc = r ? wf_cuda_synchronize(dev.index) : wf_error();
        ++*checks;
        if (rc != WF_EINDEX) { printf("FAIL out-of-range index on cuda gave %d, not WF_EINDEX\n", rc); f++; }
        wf_clear_error();
        ++*checks;
        if (wf_cuda_synchronize(dev.index)) { printf("FAIL cuda after an index error: %s\n", wf_error_message()); f++; }
        wf_clear_error();
    }
    return f;
}

/* The MLP with the tanh GELU, wf_fused_mlp and wf_linear_gelu + wf_linear, against the unfused
 * ops: a hidden width (64) cuBLASLt's GELU epilogues take, so on CUDA under bf16 autocast the
 * GELU runs inside the GEMMs (gemm_gelu); f32 and the CPU compose. Output and every gradient. */
static int mlp_tanh_vs_unfused(wf_device dev, int *checks) {
    int f = 0;
    wf_manual_seed(23);
    wf_tensor *xs = wf_randn(WF_SHAPE(2, 16, 32), WF_F32);
    wf_tensor *w1s = wf_mul_scalar(wf_randn(WF_SHAPE(64, 32), WF_F32), 0.2), *b1s = wf_randn(WF_SHAPE(64), WF_F32);
    wf_tensor *w2s = wf_mul_scalar(wf_randn(WF_SHAPE(32, 64), WF_F32), 0.2), *b2s = wf_randn(WF_SHAPE(32), WF_F32);
    const struct { bool autocast; double tol; const char *name; } cases[2] = { { false, 2e-5, "f32" },
                                                                                { true, 3e-2, "bf16 autocast" } };
    for (int c = 0; c < 2; c++)
        for (int keep = 0; keep < 2; keep++) {
            wf_tensor *in[2][5];
            for (int s = 0; s < 2; s++) {
                wf_tensor *src[5] = { xs, w1s, b1s, w2s, b2s };
                for (int i = 0; i < 5; i++) in[s][i] = leaf_of(src[i], dev, WF_F32);
            }
            wf_tensor **a = in[0], **u = in[1];
            if (cases[c].autocast) wf_autocast_begin(dev.type, WF_BF16);
            wf_tensor *yf = keep ? wf_linear(wf_linear_gelu(a[0], a[1], a[2], WF_GELU_TANH), a[3], a[4])
                                 : wf_fused_mlp(a[0], a[1], a[2], a[3], a[4], WF_GELU_TANH);
            wf_tensor *yu = wf_linear(wf_gelu(wf_linear(u[0], u[1], u[2]), WF_GELU_TANH), u[3], u[4]);
            if (cases[c].autocast) wf_autocast_end();
            char what[128];
            const char *how = keep ? "linear_gelu + linear" : "fused_mlp";
            snprintf(what, sizeof what, "%s tanh %s against linear(gelu(linear))", how, cases[c].name);
            f += close_rel(what, dev, yf, yu, cases[c].tol, checks);
            if (!yf || !yu || wf_backward(sum_f32(yf), NULL, false) || wf_backward(sum_f32(yu), NULL, false)) {
                f += close_rel(what, dev, NULL, NULL, 0, checks);
                continue;
            }
            static const char *names[5] = { "dx", "dW1", "db1", "dW2", "db2" };
            for (int i = 0; i < 5; i++) {
                snprintf(what, sizeof what, "%s tanh %s: %s", how, cases[c].name, names[i]);
                f += close_rel(what, dev, wf_grad(a[i]), wf_grad(u[i]), cases[c].tol, checks);
            }
        }
    return f;
}

int gelu_bias_vs_composed(wf_device dev, int *checks);   /* op_gelu_bias.c */

const op_expect op_expects[] = {
    { "nan", nan_propagates },
    { "promotion", promotes },
    { "edge gradients", edge_grads },
    { "errors", errors },
    { "autocast", autocast_bf16 },
    { "linear fused", linear_fused_vs_unfused },
    { "mlp tanh", mlp_tanh_vs_unfused },
    { "gelu_backward_bias", gelu_bias_vs_composed },
    { "add_layer_norm", add_ln_vs_composed },
    { "add_bias_layer_norm", add_bias_ln_vs_composed },
    { "accumulate", grads_accumulate },
    { "cuda", cuda_extras },
};
const int op_nexpects = (int)(sizeof op_expects / sizeof op_expects[0]);
