/* tests/cuda/test_cuda_gelu_bias.c: the GELU backward that also sums the bias gradient
 * (gelu_backward_bias: tensor/cuda/cuda_elementwise.cu, wf__gelu_backward_bias_raw).
 *   - gx bit for bit against wf__unary_backward_raw's GELU backward (the same per-element
 *     formula), on the vector path (N a multiple of 16 bytes, aligned), the generic one (N odd,
 *     or operands one element off 16-byte alignment), for f32 / f16 / bf16 and both forms;
 *   - gb against the f64 column sums of gx's values as stored: |gb - sum| <= 2e-5 * sum |gx|
 *     (the kernel's f32 adds over a tree of a few hundred levels) + gb's own rounding (2^-8
 *     relative for bf16, 2^-10 for f16, 0 for f32). A lost row or column is off by a value's size;
 *   - determinism: a second call gives the same bits of gx and gb;
 *   - GPT-2's c_fc case, 16384 x 3072 bf16 (tanh);
 *   - the autograd route: wf_linear_gelu (tanh) and wf_fused_mlp (tanh) under bf16 autocast
 *     call the kernel once in their backward (cuBLASLt's GELU epilogue made the GELU's input)
 *     and their bias gradients match the composed Linear + GELU's.
 * A plain program like the other tests/cuda ones (the GPU machine has no Check): one line per
 * check, {"checks":N,"failed":M} last; exit 1 on a failure, 77 without a GPU. */
#include "weft/weft.h"

#include "tensor/ops_raw.h"
#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void result(bool ok, const char *what, const char *name, const char *why) {
    n_checks++;
    if (ok) {
        printf("ok   %s %s\n", what, name);
        return;
    }
    printf("FAIL %s %s: %s%s%s\n", what, name, why, wf_error() ? ": " : "", wf_error() ? wf_error_message() : "");
    wf_clear_error();
    n_failed++;
}

static double *host(wf_tensor *t) {
    int64_t n = t ? wf_numel(t) : 0;
    double *p = t ? malloc(sizeof(double) * (size_t)(n ? n : 1)) : NULL;
    if (p && wf_to_array(t, p, WF_F64)) {
        free(p);
        return NULL;
    }
    return p;
}

/* a and b hold the same values (as f64: every f32 / f16 / bf16 is exact) */
static void same_bits(const char *what, const char *name, wf_tensor *a, wf_tensor *b) {
    double *x = host(a), *y = host(b);
    char why[160] = "missing or unreadable";
    bool ok = x && y && wf_numel(a) == wf_numel(b);
    for (int64_t i = 0; ok && i < wf_numel(a); i++)
        if (x[i] != y[i] && !(isnan(x[i]) && isnan(y[i]))) {
            snprintf(why, sizeof why, "element %lld: %.9g vs %.9g", (long long)i, x[i], y[i]);
            ok = false;
        }
    result(ok, what, name, why);
    free(x);
    free(y);
}

/* gb [N] against the f64 column sums of gx [rows, N] */
static void sums_ok(const char *name, wf_tensor *gx, wf_tensor *gb, int64_t rows, int64_t N, wf_dtype dt) {
    double *x = host(gx), *b = host(gb);
    char why[200] = "missing or unreadable";
    bool ok = x && b && wf_numel(gb) == N && wf_tensor_dtype(gb) == dt;
    double rel = dt == WF_BF16 ? 1.0 / 256 : dt == WF_F16 ? 1.0 / 1024 : 0;
    for (int64_t c = 0; ok && c < N; c++) {
        double s = 0, sa = 0;
        for (int64_t r = 0; r < rows; r++) s += x[r * N + c], sa += fabs(x[r * N + c]);
        if (!(fabs(b[c] - s) <= 2e-5 * sa + rel * fabs(s))) {
            snprintf(why, sizeof why, "gb[%lld] = %.9g, the column sums to %.9g (sum |gx| %.6g)", (long long)c, b[c], s,
                     sa);
            ok = false;
        }
    }
    result(ok, "column sums", name, why);
    free(x);
    free(b);
}

/* t's values in a fresh [rows, N] view one element into a buffer: contiguous, not 16-byte aligned */
static wf_tensor *misaligned(wf_tensor *t, int64_t rows, int64_t N) {
    wf_tensor *buf = wf_zeros_on(WF_SHAPE(rows * N + 1), wf_tensor_dtype(t), WF_CUDA(0));
    wf_tensor *v = buf ? wf_view(wf_narrow(buf, 0, 1, rows * N), WF_SHAPE(rows, N)) : NULL;
    return v && !wf_copy_(v, t) ? v : NULL;
}

static void run(wf_dtype dt, int64_t rows, int64_t N, bool tanh, bool off) {
    char name[96];
    snprintf(name, sizeof name, "%s [%lld, %lld] %s%s", wf_dtype_name(dt), (long long)rows, (long long)N,
             tanh ? "tanh" : "erf", off ? " misaligned" : "");
    wf_scope_begin();
    wf_manual_seed(5);
    wf_tensor *pre = wf_to_device(wf_to_dtype(wf_mul_scalar(wf_randn(WF_SHAPE(rows, N), WF_F32), 2.0), dt), WF_CUDA(0));
    wf_tensor *gy = wf_to_device(wf_to_dtype(wf_randn(WF_SHAPE(rows, N), WF_F32), dt), WF_CUDA(0));
    if (off && pre && gy) pre = misaligned(pre, rows, N), gy = misaligned(gy, rows, N);
    wf_tensor *gx = NULL, *gb = NULL, *gx2 = NULL, *gb2 = NULL;
    int rc = pre && gy ? wf__gelu_backward_bias_raw(gy, pre, tanh, &gx, &gb) : -1;
    result(rc == 0 && gx && gb, "runs", name, "did not run");
    if (rc == 0 && gx && gb) {
        wf_tensor *ref = wf__unary_backward_raw(tanh ? WF_U_GELU_TANH : WF_U_GELU, gy, pre, false, 0, 0);
        same_bits("gx = unary GELU backward", name, gx, ref);
        sums_ok(name, gx, gb, rows, N, dt);
        rc = wf__gelu_backward_bias_raw(gy, pre, tanh, &gx2, &gb2);
        same_bits("deterministic gx", name, gx, rc ? NULL : gx2);
        same_bits("deterministic gb", name, gb, rc ? NULL : gb2);
    }
    wf_scope_end();
}

static unsigned kernel_calls(void) {
    return atomic_load(&wf__op_calls[1][wf__op_index(WF_OPF_KERNEL, WF_K_GELU_BWD_BIAS)]);
}

/* the autograd route under bf16 autocast, against the composed ops (same leaves, f32) */
static void autograd_route(bool mlp) {
    const char *name = mlp ? "wf_fused_mlp (tanh, bf16 autocast)" : "wf_linear_gelu (tanh, bf16 autocast)";
    wf_scope_begin();
    wf_manual_seed(9);
    wf_tensor *src[5] = { wf_randn(WF_SHAPE(4, 32, 64), WF_F32),
                          wf_mul_scalar(wf_randn(WF_SHAPE(256, 64), WF_F32), 0.2), wf_randn(WF_SHAPE(256), WF_F32),
                          wf_mul_scalar(wf_randn(WF_SHAPE(64, 256), WF_F32), 0.1), wf_randn(WF_SHAPE(64), WF_F32) };
    wf_tensor *a[5], *u[5];
    for (int i = 0; i < 5; i++) {
        a[i] = wf_detach(wf_to_device(src[i], WF_CUDA(0)));
        u[i] = wf_detach(wf_to_device(src[i], WF_CUDA(0)));
        wf_set_requires_grad(a[i], true);
        wf_set_requires_grad(u[i], true);
    }
    wf_autocast_begin(WF_DEV_CUDA, WF_BF16);
    wf_tensor *yf = mlp ? wf_fused_mlp(a[0], a[1], a[2], a[3], a[4], WF_GELU_TANH)
                        : wf_linear(wf_linear_gelu(a[0], a[1], a[2], WF_GELU_TANH), a[3], a[4]);
    wf_tensor *yu = wf_linear(wf_gelu(wf_linear(u[0], u[1], u[2]), WF_GELU_TANH), u[3], u[4]);
    wf_autocast_end();
    unsigned c0 = kernel_calls();
    int rc = yf && yu ? wf_backward(wf_sum_all(wf_to_dtype(yf, WF_F32)), NULL, false) : -1;
    unsigned c1 = kernel_calls();
    if (!rc) rc = wf_backward(wf_sum_all(wf_to_dtype(yu, WF_F32)), NULL, false);
    result(!rc, "backward", name, "failed");
    char why[96];
    snprintf(why, sizeof why, "the kernel was called %u times, expected once", c1 - c0);
    result(c1 - c0 == 1, "takes gelu_backward_bias", name, why);
    /* bf16 products against bf16 products of another order: a few bf16 ulps of the largest */
    static const char *names[5] = { "dx", "dW1", "db1", "dW2", "db2" };
    for (int i = 0; !rc && i < 5; i++) {
        double *p = host(wf_grad(a[i])), *q = host(wf_grad(u[i]));
        double md = 0, mq = 0;
        int64_t n = wf_numel(u[i]);
        for (int64_t k = 0; p && q && k < n; k++) {
            if (!(fabs(p[k] - q[k]) <= md)) md = fabs(p[k] - q[k]);
            if (fabs(q[k]) > mq) mq = fabs(q[k]);
        }
        snprintf(why, sizeof why, "max difference %.3g of max %.3g", md, mq);
        char what[64];
        snprintf(what, sizeof what, "%s against the composed ops:", names[i]);
        result(p && q && md <= 3e-2 * mq, what, name, why);
        free(p);
        free(q);
    }
    wf_scope_end();
}

int main(void) {
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    const wf_dtype dts[3] = { WF_BF16, WF_F16, WF_F32 };
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 2; t++) {
            run(dts[i], 2048, 96, t, false);
            run(dts[i], 700, 1000, t, false);
            run(dts[i], 700, 1000, t, true);   /* the generic kernel on a multiple of the vector */
            run(dts[i], 700, 999, t, false);
            run(dts[i], 64, 3072, t, false);
            run(dts[i], 3, 5, t, false);
        }
    run(WF_BF16, 16384, 3072, true, false);   /* GPT-2 124M's c_fc: 16 x 1024 tokens, 4 x 768 */
    /* f64 has no kernel: declines, nothing made, no error */
    wf_tensor *d = wf_zeros_on(WF_SHAPE(4, 8), WF_F64, WF_CUDA(0)), *gx = NULL, *gb = NULL;
    int rc = d ? wf__gelu_backward_bias_raw(d, d, true, &gx, &gb) : -1;
    result(rc == 1 && !gx && !gb && !wf_error(), "declines", "float64", "did not decline");
    wf_tensor_free(d);
    autograd_route(false);
    autograd_route(true);
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
