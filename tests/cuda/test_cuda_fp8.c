/* tests/cuda/test_cuda_fp8.c: the "transformer-engine" precision's GPU pieces
 * (tensor/cuda/cuda_fp8.cu, autograd/fn_fp8_linear.c) on a GPU of compute capability >= 8.9:
 *   - the cast kernel bit for bit against the CPU reference (tensor/cpu/fp8_format.c) for f32,
 *     bf16 and f16 inputs, random and edge values (ties, subnormals, saturation, inf, NaN,
 *     signed zeros), E4M3 and E5M2: the bytes, the transposed copy, the amax (raised
 *     atomically, never lowered), the scale_inv written beside them and the column sums (the
 *     bias gradient, in fp8.h's order, bit for bit on both the 4-wide and the one-byte path);
 *   - the delayed-scaling update kernel against tensor/cpu/fp8_scaling.c over many steps (zero,
 *     inf and NaN amaxes, the history wrapping);
 *   - the fp8 GEMM against an f64 product of the dequantized operands (bf16 and f32 outputs,
 *     bias, beta 1, the tolerance that of f32 accumulation and the output's rounding), and its
 *     refusals (sizes not multiples of 16, E5M2 x E5M2);
 *   - a Linear forward and backward under "transformer-engine" against "bf16-mixed" (fp8's
 *     tolerance; the gradients' shapes and dtypes), the fallback for sizes that are not
 *     multiples of 16;
 *   - a small MLP trained for a few steps under "transformer-engine": the loss falls;
 *   - a training step captured in a CUDA graph and replayed equals eager steps to the bit
 *     (the scaling state moves on the device).
 * Below capability 8.9 it checks that the precision is refused (WF_ENOTSUP naming the
 * capability) and exits 77 (skipped), as without a GPU.
 *
 * A plain program like the other tests/cuda ones: one line per check, {"checks":N,"failed":M}
 * last; exit 1 on a failure. Failures print the values and indices involved. */
#define _POSIX_C_SOURCE 200809L
#include "weft/weft.h"
#include "tensor/tensor_impl.h"
#include "tensor/cuda/cuda_api.h"
#include "tensor/cpu/fp8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_checks, n_failed;

static void check(bool ok, const char *name, const char *detail) {
    n_checks++;
    if (ok) printf("ok   %s\n", name);
    else {
        n_failed++;
        printf("FAIL %s: %s\n", name, detail);
        if (wf_error()) { printf("     last error: %s\n", wf_error_message()); wf_clear_error(); }
    }
}

static void *dptr(const wf_tensor *t) { return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype); }
static const char *fname(int f) { return f ? "E5M2" : "E4M3"; }

/* a device tensor from host data, owned (no scope open in this program) */
static wf_tensor *dev_from(const void *h, int64_t n, wf_dtype dt) {
    wf_tensor *c = wf_from_data(h, WF_SHAPE(n), dt);
    wf_tensor *d = c ? wf_to_device(c, WF_CUDA(0)) : NULL;
    wf_tensor_free(c);
    return d;
}
static int to_host(wf_tensor *t, void *h, size_t bytes) {
    return wf__cuda_to_host(h, dptr(t), bytes, t->device.index);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static bool is_nan_code(uint8_t c, int f) { return f ? (c & 0x7c) == 0x7c && (c & 3) : (c & 0x7f) == 0x7f; }

/* ---------------------------------------------------------------- cast */
static void test_cast(wf_dtype dt, int fmt, int64_t rows, int64_t cols, float scale, bool specials) {
    char name[160], d[512];
    snprintf(name, sizeof name, "cast %s -> %s [%lld, %lld] scale %g%s", wf_dtype_name(dt), fname(fmt), (long long)rows,
             (long long)cols, (double)scale, specials ? " with inf/NaN" : "");
    int64_t n = rows * cols;
    float *x = malloc(sizeof(float) * (size_t)n);
    float fmax = wf__fp8_max((wf__fp8_format)fmt);
    /* spread over the format's whole range, subnormals included */
    for (int64_t i = 0; i < n; i++) x[i] = (float)(nrand() * ldexp(1.0, (int)(urand() * (fmt ? 40 : 22)) - (fmt ? 22 : 12)));
    float edge[] = { 0.0f, -0.0f, fmax, -fmax, fmax * 1.01f, -fmax * 4, 1.0625f, 1.1875f, 1.125f, 1.375f,
                     0.0009765625f, 0.0029296875f, 7.62939453125e-06f, 1.52587890625e-05f, 1e-30f, -1e-30f,
                     0.0146484375f, 6e4f, 1e38f };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0] && (int64_t)i < n; i++) x[i] = edge[i] / scale;
    if (specials && n > 30) { x[n - 1] = INFINITY; x[n - 2] = -INFINITY; x[n / 2] = NAN; }
    /* the input in its dtype, and the exact values it holds */
    wf_tensor *h = wf_from_data(x, WF_SHAPE(rows, cols), WF_F32);
    wf_tensor *hd = wf_to_dtype(h, dt), *hv = wf_to_dtype(hd, WF_F32);
    wf_tensor *xd = wf_to_device(hd, WF_CUDA(0));
    float *xv = malloc(sizeof(float) * (size_t)n);
    if (!xd || !hv || wf_to_array(hv, xv, WF_F32)) { check(false, name, "setup"); goto out; }
    /* scale, pad, amax (starts at 0.5), pad, scale_inv out (16-byte aligned, as the fp8 Linear
     * keeps it for cuBLASLt), pad */
    float init[8] = { scale, 0, 0.5f, 0, 0, 0, 0, 0 };
    wf_tensor *sd = dev_from(init, 8, WF_F32);
    wf_tensor *y = wf_empty_on(WF_SHAPE(n), WF_U8, WF_CUDA(0)), *yt = wf_empty_on(WF_SHAPE(n), WF_U8, WF_CUDA(0));
    wf_tensor *cs = wf_empty_on(WF_SHAPE(cols), WF_F32, WF_CUDA(0));
    int rc = sd && y && yt && cs ? wf__cuda_fp8_cast(dptr(xd), dt, rows, cols, fmt, dptr(sd), dptr(y), dptr(yt),
                                                     (float *)dptr(sd) + 2, (float *)dptr(sd) + 4, dptr(cs), 0)
                                 : -1;
    uint8_t *gy = malloc((size_t)n), *gt = malloc((size_t)n);
    float got_s[8], *got_cs = malloc(sizeof(float) * (size_t)cols), *want_cs = malloc(sizeof(float) * (size_t)cols);
    /* the column sums, bit for bit against the host's in fp8.h's order (inputs in dtype, as x's) */
    float one = 1.0f;
    wf__fp8_cast_host(xv, WF_F32, rows, cols, fmt, &one, NULL, NULL, NULL, NULL, want_cs);
    if (rc || to_host(y, gy, (size_t)n) || to_host(yt, gt, (size_t)n) || to_host(sd, got_s, sizeof got_s) ||
        to_host(cs, got_cs, sizeof(float) * (size_t)cols)) {
        snprintf(d, sizeof d, "cast failed (rc %d)", rc);
        check(false, name, d);
    } else {
        int64_t bad = -1, badt = -1;
        float amax = 0.5f;
        bool any_nan = false;
        for (int64_t i = 0; i < n && bad < 0; i++) {
            float v = xv[i] * scale;
            uint8_t want = wf__fp8_encode(v, (wf__fp8_format)fmt);
            bool ok = isnan(v) ? is_nan_code(gy[i], fmt) : gy[i] == want;
            if (!ok) bad = i;
            if (isnan(xv[i])) any_nan = true;
            else if (fabsf(xv[i]) > amax) amax = fabsf(xv[i]);
        }
        for (int64_t r = 0; r < rows && badt < 0; r++)
            for (int64_t c = 0; c < cols && badt < 0; c++)
                if (gt[c * rows + r] != gy[r * cols + c]) badt = r * cols + c;
        if (bad >= 0) {
            int64_t i = bad;
            snprintf(d, sizeof d, "element %lld (row %lld, col %lld): x = %.9g, x * scale = %.9g: GPU 0x%02x, CPU 0x%02x",
                     (long long)i, (long long)(i / cols), (long long)(i % cols), (double)xv[i], (double)(xv[i] * scale),
                     gy[i], wf__fp8_encode(xv[i] * scale, (wf__fp8_format)fmt));
        } else if (badt >= 0) {
            snprintf(d, sizeof d, "transposed copy: element (%lld, %lld) is 0x%02x, the row-major copy 0x%02x",
                     (long long)(badt % cols), (long long)(badt / cols), gt[(badt % cols) * rows + badt / cols], gy[badt]);
        } else if (any_nan ? !isnan(got_s[2]) : memcmp(&got_s[2], &amax, 4) != 0) {
            snprintf(d, sizeof d, "amax %.9g, expected %s%.9g (from 0.5, raised only)", (double)got_s[2],
                     any_nan ? "NaN, not " : "", (double)amax);
            bad = 0;
        } else if (got_s[4] != 1.0f / scale) {
            snprintf(d, sizeof d, "scale_inv %.9g, expected %.9g", (double)got_s[4], (double)(1.0f / scale));
            bad = 0;
        } else {
            for (int64_t c = 0; c < cols && bad < 0; c++)
                if (isnan(want_cs[c]) ? !isnan(got_cs[c]) : memcmp(&got_cs[c], &want_cs[c], 4) != 0) {
                    uint32_t gb, wb;
                    memcpy(&gb, &got_cs[c], 4);
                    memcpy(&wb, &want_cs[c], 4);
                    snprintf(d, sizeof d, "column sum %lld: %.9g (0x%08x), the host's %.9g (0x%08x)", (long long)c,
                             (double)got_cs[c], (unsigned)gb, (double)want_cs[c], (unsigned)wb);
                    bad = c;
                }
        }
        check(bad < 0 && badt < 0, name, d);
    }
    free(gy);
    free(gt);
    free(got_cs);
    free(want_cs);
    wf_tensor_free(cs);
    wf_tensor_free(sd);
    wf_tensor_free(y);
    wf_tensor_free(yt);
out:
    free(x);
    free(xv);
    wf_tensor_free(h);
    wf_tensor_free(hd);
    wf_tensor_free(hv);
    wf_tensor_free(xd);
}

/* ---------------------------------------------------------------- scaling update */
static void test_update(int len, int steps, int fmt) {
    char name[128], d[512] = "";
    snprintf(name, sizeof name, "scaling update, history %d, %d steps, %s", len, steps, fname(fmt));
    enum { SLOTS = 2 };
    int64_t stride = 4 + len + (4 - len % 4) % 4;
    float *host = calloc((size_t)(SLOTS * stride), sizeof(float));
    float *ref_h[SLOTS], ref_s[SLOTS], ref_i[SLOTS];
    int ref_pos[SLOTS];
    for (int s = 0; s < SLOTS; s++) {
        host[s * stride] = host[s * stride + 1] = 1.0f;
        ref_h[s] = calloc((size_t)len, sizeof(float));
        ref_s[s] = ref_i[s] = 1.0f;
        ref_pos[s] = 0;
    }
    wf_tensor *st = dev_from(host, SLOTS * stride, WF_F32);
    bool ok = st != NULL;
    for (int k = 0; k < steps && ok; k++) {
        float am[SLOTS];
        for (int s = 0; s < SLOTS; s++) {
            double u = urand();
            am[s] = u < 0.05 ? 0.0f : u < 0.08 ? INFINITY : u < 0.10 ? NAN : (float)(fabs(nrand()) * ldexp(1.0, (int)(urand() * 30) - 15));
            /* the amax as a cast would leave it */
            if (wf__cuda_from_host((float *)dptr(st) + s * stride + 2, &am[s], sizeof(float), 0)) ok = false;
        }
        if (!ok || wf__cuda_fp8_update(dptr(st), SLOTS, stride, len, fmt, 0, 0) ||
            to_host(st, host, sizeof(float) * (size_t)(SLOTS * stride))) {
            snprintf(d, sizeof d, "step %d: the update failed", k);
            ok = false;
            break;
        }
        for (int s = 0; s < SLOTS && ok; s++) {
            wf__fp8_scaling_update(ref_h[s], len, &ref_pos[s], am[s], wf__fp8_max((wf__fp8_format)fmt), 0, &ref_s[s], &ref_i[s]);
            float *g = host + s * stride;
            int gpos;
            memcpy(&gpos, &g[3], sizeof gpos);
            if (memcmp(&g[0], &ref_s[s], 4) || memcmp(&g[1], &ref_i[s], 4) || g[2] != 0.0f || gpos != ref_pos[s]) {
                snprintf(d, sizeof d, "step %d slot %d (amax %.9g): scale %.9g / %.9g, scale_inv %.9g / %.9g, amax after %g, "
                         "pos %d / %d (GPU / CPU)", k, s, (double)am[s], (double)g[0], (double)ref_s[s], (double)g[1],
                         (double)ref_i[s], (double)g[2], gpos, ref_pos[s]);
                ok = false;
            }
            for (int i = 0; i < len && ok; i++)
                if (memcmp(&g[4 + i], &ref_h[s][i], 4) && !(isnan(g[4 + i]) && isnan(ref_h[s][i]))) {
                    snprintf(d, sizeof d, "step %d slot %d: history[%d] %.9g, expected %.9g", k, s, i, (double)g[4 + i],
                             (double)ref_h[s][i]);
                    ok = false;
                }
        }
    }
    check(ok, name, d);
    for (int s = 0; s < SLOTS; s++) free(ref_h[s]);
    free(host);
    wf_tensor_free(st);
}

/* ---------------------------------------------------------------- GEMM */
static void test_gemm(int64_t m, int64_t n, int64_t k, int fa, int fb, wf_dtype ddt, bool bias, bool beta1, int fast) {
    char name[200], d[512] = "";
    snprintf(name, sizeof name, "fp8 gemm [%lld x %lld] %s . [%lld x %lld] %s -> %s%s%s%s", (long long)m, (long long)k,
             fname(fa), (long long)n, (long long)k, fname(fb), wf_dtype_name(ddt), bias ? " + bias" : "",
             beta1 ? " (beta 1)" : "", fast ? " (fast accumulation)" : "");
    uint8_t *A = malloc((size_t)(m * k)), *B = malloc((size_t)(n * k));
    for (int64_t i = 0; i < m * k; i++) A[i] = wf__fp8_encode((float)(nrand() * 4), (wf__fp8_format)fa);
    for (int64_t i = 0; i < n * k; i++) B[i] = wf__fp8_encode((float)(nrand() * 4), (wf__fp8_format)fb);
    float sc[8] = { 0.5f, 0, 0, 0, 0.125f, 0, 0, 0 };   /* each scale 16-byte aligned, as cuBLASLt needs */
    float *bh = malloc(sizeof(float) * (size_t)n), *d0 = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t j = 0; j < n; j++) bh[j] = (float)nrand();
    for (int64_t i = 0; i < m * n; i++) d0[i] = beta1 ? (float)nrand() : 0.0f;
    wf_tensor *Ad = dev_from(A, m * k, WF_U8), *Bd = dev_from(B, n * k, WF_U8), *sd = dev_from(sc, 8, WF_F32);
    wf_tensor *bf = wf_from_data(bh, WF_SHAPE(n), WF_F32), *bb = bf ? wf_to_dtype(bf, WF_BF16) : NULL;
    wf_tensor *bbd = bb ? wf_to_device(bb, WF_CUDA(0)) : NULL, *bbv = bb ? wf_to_dtype(bb, WF_F32) : NULL;
    wf_tensor *Dh = wf_from_data(d0, WF_SHAPE(m * n), WF_F32), *Dd = Dh ? wf_to_device(wf_to_dtype(Dh, ddt), WF_CUDA(0)) : NULL;
    float *bv = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)(m * n));
    int rc = Ad && Bd && sd && bbd && bbv && Dd && !wf_to_array(bbv, bv, WF_F32)
                 ? wf__cuda_fp8_gemm(m, n, k, dptr(Ad), fa, (float *)dptr(sd), dptr(Bd), fb, (float *)dptr(sd) + 4,
                                     dptr(Dd), ddt, beta1 ? 1.0f : 0.0f, bias ? dptr(bbd) : NULL, fast, 0)
                 : -1;
    wf_tensor *Dc = rc ? NULL : wf_to_device(Dd, WF_CPU);
    if (rc || !Dc || wf_to_array(Dc, got, WF_F32)) {
        snprintf(d, sizeof d, "the GEMM failed (rc %d)", rc);
        check(false, name, d);
    } else {
        double worst = 0;
        int64_t wi = 0;
        double wref = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0, mag = 0;
                for (int64_t t = 0; t < k; t++) {
                    double p = (double)wf__fp8_decode(A[i * k + t], (wf__fp8_format)fa) * sc[0] *
                               (double)wf__fp8_decode(B[j * k + t], (wf__fp8_format)fb) * sc[4];
                    acc += p;
                    mag += fabs(p);
                }
                if (beta1) { acc += d0[i * n + j]; mag += fabs(d0[i * n + j]); }
                if (bias) { acc += bv[j]; mag += fabs(bv[j]); }
                /* Hopper's fp8 tensor cores add their products with about 14 bits kept (DeepSeek-V3's
                 * report, section 3.3.2), and cuBLASLt promotes those partial sums to f32 only every
                 * so many k (fast accumulation: less often): on the H100 the f32 output of k = 128
                 * was off by 1.4e-4 of the products' magnitude, 9 times an f32 sum's bound. So
                 * 2^-11 of the magnitude (fast: 1e-3), plus the output's rounding (bf16: 2^-8) */
                double tol = (fast ? 1e-3 : ldexp(1.0, -11)) * mag +
                             (ddt == WF_BF16 ? ldexp(1.0, -8) : ldexp(1.0, -23)) * fabs(acc) + 1e-30;
                double e = fabs(got[i * n + j] - acc) / tol;
                if (e > worst) { worst = e; wi = i * n + j; wref = acc; }
            }
        snprintf(d, sizeof d, "worst at D[%lld][%lld]: GPU %.9g, f64 %.9g (%.3g of the tolerance)", (long long)(wi / n),
                 (long long)(wi % n), (double)got[wi], wref, worst);
        check(worst <= 1, name, d);
    }
    free(A); free(B); free(bh); free(d0); free(bv); free(got);
    wf_tensor_free(Ad); wf_tensor_free(Bd); wf_tensor_free(sd); wf_tensor_free(bf); wf_tensor_free(bb);
    wf_tensor_free(bbd); wf_tensor_free(bbv); wf_tensor_free(Dh); wf_tensor_free(Dd); wf_tensor_free(Dc);
}

static void test_gemm_refusals(void) {
    wf_tensor *buf = wf_zeros_on(WF_SHAPE(4096), WF_F32, WF_CUDA(0));
    void *p = buf ? dptr(buf) : NULL;
    float *s = p ? (float *)p : NULL;
    int rc = wf__cuda_fp8_gemm(24, 32, 32, p, 0, s, p, 0, s, p, WF_BF16, 0, NULL, 0, 0);
    check(rc == WF_ENOTSUP && strstr(wf_error_message(), "m=24 n=32 k=32 must be positive multiples of 16"),
          "fp8 gemm refuses m = 24", wf_error_message());
    wf_clear_error();
    rc = wf__cuda_fp8_gemm(32, 32, 32, p, 1, s, p, 1, s, p, WF_BF16, 0, NULL, 0, 0);
    check(rc == WF_ENOTSUP && strstr(wf_error_message(), "E5M2 x E5M2"), "fp8 gemm refuses E5M2 x E5M2", wf_error_message());
    wf_clear_error();
    rc = wf__cuda_fp8_gemm(32, 32, 32, (char *)p + 8, 0, s, p, 0, s, p, WF_BF16, 0, NULL, 0, 0);
    check(rc == WF_ENOTSUP && strstr(wf_error_message(), "16-byte aligned"), "fp8 gemm refuses a misaligned operand",
          wf_error_message());
    wf_clear_error();
    wf_tensor_free(buf);
}

/* ---------------------------------------------------------------- Linear under the plugin */
/* ||a - b|| / ||b|| */
static double rel_err(wf_tensor *a, wf_tensor *b) {
    int64_t n = b ? wf_numel(b) : 0;
    if (!a || !b || wf_numel(a) != n || n == 0) return INFINITY;
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n), num = 0, den = 0;
    if (!wf_to_array(a, x, WF_F64) && !wf_to_array(b, y, WF_F64))
        for (int64_t i = 0; i < n; i++) { num += (x[i] - y[i]) * (x[i] - y[i]); den += y[i] * y[i]; }
    else num = INFINITY;
    free(x);
    free(y);
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct { wf_tensor *y, *gx, *gw, *gb; const char *fn; } lin_out;

/* y = Linear(x) under precision `prec` (steps forwards first, to fill the amax history),
 * then the backward of sum(y * gy) */
static lin_out linear_run(const char *prec, wf_module *lin, wf_tensor *x0, wf_tensor *gy, int steps) {
    lin_out o = { 0 };
    wf_precision *p = wf_precision_new(prec, WF_CUDA(0), NULL, 0);
    if (!p) return o;
    wf_tensor *w = wf_module_get_parameter(lin, "weight"), *b = wf_module_get_parameter(lin, "bias");
    for (int s = 0; s < steps; s++) {
        wf_scope_begin();
        wf_tensor *x = wf_detach(x0);
        wf_set_requires_grad(x, true);
        wf_tensor *y = NULL;
        if (!wf_precision_forward_begin(p)) {
            y = wf_module_forward(lin, x);
            wf_precision_forward_end(p);
        }
        if (y && s == steps - 1) {
            o.fn = wf_grad_fn_name(y);
            o.y = wf_to_device(y, WF_CPU);
        }
        if (y) wf_backward(y, gy, false);
        if (s == steps - 1) {
            o.gx = wf_grad(x) ? wf_to_device(wf_grad(x), WF_CPU) : NULL;
            o.gw = wf_grad(w) ? wf_to_device(wf_grad(w), WF_CPU) : NULL;
            o.gb = b && wf_grad(b) ? wf_to_device(wf_grad(b), WF_CPU) : NULL;
            wf_keep(o.y); wf_keep(o.gx); wf_keep(o.gw); wf_keep(o.gb);
        }
        wf_scope_end();
        if (wf_grad(w)) wf_set_grad(w, NULL);
        if (b && wf_grad(b)) wf_set_grad(b, NULL);
    }
    wf_precision_free(p);
    return o;
}

static void lin_free(lin_out *o) { wf_tensor_free(o->y); wf_tensor_free(o->gx); wf_tensor_free(o->gw); wf_tensor_free(o->gb); }

static void test_linear(int64_t in, int64_t out, bool expect_fp8) {
    char name[160], d[600];
    snprintf(name, sizeof name, "Linear(%lld, %lld) under transformer-engine against bf16-mixed", (long long)in, (long long)out);
    wf_manual_seed(7);
    wf_module *lin = wf_linear_new(in, out, true);
    wf_tensor *x = wf_randn(WF_SHAPE(4, 32, in), WF_F32), *gy = wf_randn(WF_SHAPE(4, 32, out), WF_F32);
    wf_tensor *xd = x ? wf_to_device(x, WF_CUDA(0)) : NULL, *gyd = gy ? wf_to_device(wf_to_dtype(gy, WF_BF16), WF_CUDA(0)) : NULL;
    if (!lin || !xd || !gyd || wf_module_to(lin, WF_CUDA(0), WF_F32)) { check(false, name, "setup"); goto out; }
    lin_out f = linear_run("transformer-engine", lin, xd, gyd, 3), r = linear_run("bf16-mixed", lin, xd, gyd, 1);
    double ey = rel_err(f.y, r.y), ex = rel_err(f.gx, r.gx), ew = rel_err(f.gw, r.gw), eb = rel_err(f.gb, r.gb);
    bool shapes = f.y && f.gx && f.gw && f.gb && wf_tensor_dtype(f.y) == WF_BF16 && wf_tensor_dtype(f.gw) == WF_F32 &&
                  wf_tensor_dtype(f.gb) == WF_F32 && wf_tensor_dtype(f.gx) == WF_F32 && wf_numel(f.gw) == in * out &&
                  wf_numel(f.gb) == out && wf_numel(f.gx) == 4 * 32 * in && wf_shape(f.y)[2] == out;
    bool fp8 = f.fn && !strcmp(f.fn, "Fp8LinearBackward");
    /* E4M3 keeps 3 mantissa bits (relative rounding up to 2^-4), E5M2 2: a product of K such
     * terms is within a few percent in norm; bf16-mixed is the reference */
    double lim = expect_fp8 ? 0.08 : 0.0, glim = expect_fp8 ? 0.12 : 0.0;   /* gradients: E5M2 too */
    snprintf(d, sizeof d, "grad_fn %s (%s expected); relative errors y %.3g (limit %.3g), dx %.3g, dw %.3g (limit %.3g), "
             "db %.3g; dtypes/shapes %s", f.fn ? f.fn : "(none)", expect_fp8 ? "Fp8LinearBackward" : "not fp8", ey, lim, ex,
             ew, glim, eb, shapes ? "ok" : "wrong");
    check(shapes && fp8 == expect_fp8 && ey <= lim && ex <= glim && ew <= glim && eb <= (expect_fp8 ? 0.02 : 0.0), name, d);
    lin_free(&f);
    lin_free(&r);
out:
    wf_module_free(lin);
    wf_tensor_free(x); wf_tensor_free(gy); wf_tensor_free(xd); wf_tensor_free(gyd);
}

/* ---------------------------------------------------------------- training */
static void test_mlp_trains(void) {
    const char *name = "MLP 64-128-32 under transformer-engine: the loss falls";
    char d[400] = "";
    wf_manual_seed(3);
    wf_module *teacher = wf_linear_new(64, 32, true);
    wf_module *net = wf_sequential_new(3, wf_linear_new(64, 128, true), wf_gelu_new(WF_GELU_TANH), wf_linear_new(128, 32, true));
    wf_tensor *x = wf_randn(WF_SHAPE(256, 64), WF_F32), *t = NULL, *xd = NULL, *td = NULL;
    wf_precision *p = wf_precision_new("transformer-engine", WF_CUDA(0), NULL, 0);
    wf_tensor *params[8];
    wf_optimizer *opt = NULL;
    int np = net ? wf_module_parameters(net, params, NULL, 8) : 0;
    if (teacher && x) {
        WF_SCOPE { t = wf_keep(wf_detach(wf_module_forward(teacher, x))); }
    }
    if (!net || !t || !p || wf_module_to(net, WF_CUDA(0), WF_F32) || !(xd = wf_to_device(x, WF_CUDA(0))) ||
        !(td = wf_to_device(t, WF_CUDA(0))) || np != 4 ||
        !(opt = wf_adamw_new(params, np, &(wf_adam_opts){ .lr = 3e-3, .weight_decay = 1e-4 }))) {
        check(false, name, "setup");
        goto out;
    }
    double first = NAN, last = NAN;
    const char *fn = NULL;
    for (int s = 0; s < 60; s++) {
        double l = NAN;
        wf_scope_begin();
        wf_tensor *y = NULL;
        if (!wf_precision_forward_begin(p)) {
            y = wf_module_forward(net, xd);
            wf_precision_forward_end(p);
        }
        if (s == 0 && y) fn = wf_grad_fn_name(y);
        wf_tensor *loss = y ? wf_mse_loss(wf_to_dtype(y, WF_F32), td, WF_REDUCTION_MEAN) : NULL;
        if (loss && !wf_optimizer_zero_grad(opt, true) && !wf_precision_backward(p, loss) &&
            !wf_precision_optimizer_step(p, opt, NULL))
            l = wf_item(loss);
        wf_scope_end();
        if (isnan(l)) { snprintf(d, sizeof d, "step %d failed", s); break; }
        if (s == 0) first = l;
        last = l;
    }
    if (!d[0])
        snprintf(d, sizeof d, "loss %.5g -> %.5g over 60 steps (must fall below a third); last Linear's node %s", first, last,
                 fn ? fn : "(none)");
    check(!isnan(last) && last < first / 3 && fn && !strcmp(fn, "Fp8LinearBackward"), name, d);
out:
    wf_optimizer_free(opt);
    wf_precision_free(p);
    wf_module_free(net);
    wf_module_free(teacher);
    wf_tensor_free(x); wf_tensor_free(t); wf_tensor_free(xd); wf_tensor_free(td);
}

/* ---------------------------------------------------------------- CUDA graph */
typedef struct { wf_module *net; wf_tensor *p[4]; wf_optimizer *opt; wf_precision *prec; } gnet;

static int gnet_init(gnet *g) {
    memset(g, 0, sizeof *g);
    wf_manual_seed(11);
    g->net = wf_sequential_new(3, wf_linear_new(64, 128, true), wf_gelu_new(WF_GELU_TANH), wf_linear_new(128, 32, true));
    g->prec = wf_precision_new("transformer-engine", WF_CUDA(0), NULL, 0);
    if (!g->net || !g->prec || wf_module_to(g->net, WF_CUDA(0), WF_F32) || wf_module_parameters(g->net, g->p, NULL, 4) != 4)
        return -1;
    g->opt = wf_adamw_new(g->p, 4, &(wf_adam_opts){ .lr = 1e-3 });
    return g->opt ? 0 : -1;
}

static void gnet_free(gnet *g) {
    wf_optimizer_free(g->opt);
    wf_precision_free(g->prec);
    wf_module_free(g->net);
}

/* one training step under the plugin, nothing read back (capturable); *loss_out kept */
static int gnet_step(gnet *g, wf_tensor *x, wf_tensor *t, wf_tensor **loss_out) {
    int rc = 0;
    wf_scope_begin();
    wf_tensor *y = NULL;
    if (!(rc = wf_precision_forward_begin(g->prec))) {
        y = wf_module_forward(g->net, x);
        rc = wf_precision_forward_end(g->prec);
    }
    wf_tensor *loss = y && !rc ? wf_mse_loss(wf_to_dtype(y, WF_F32), t, WF_REDUCTION_MEAN) : NULL;
    if (!rc) rc = loss ? 0 : (wf_error() ? wf_error() : -1);
    if (!rc) rc = wf_precision_backward(g->prec, loss);
    if (!rc) rc = wf_precision_optimizer_step(g->prec, g->opt, NULL);
    if (!rc) rc = wf_optimizer_zero_grad(g->opt, true);
    if (!rc && loss_out) *loss_out = wf_tensor_retain(loss);
    wf_scope_end();
    return rc;
}

/* 3 eager steps, a capture, 5 replays against 8 eager steps: the scales move on the device
 * in both, so the weights and the loss agree to the bit */
static void test_graph(void) {
    const char *name = "fp8 MLP: 3 eager steps + a captured step replayed 5 times equals 8 eager steps, bit for bit";
    char d[300] = "";
    bool det = wf_are_deterministic_algorithms_enabled();
    wf_use_deterministic_algorithms(true);   /* reductions in a fixed order, as tests/cuda/test_cuda_graph.c */
    wf_manual_seed(5);
    wf_tensor *xc = wf_randn(WF_SHAPE(128, 64), WF_F32), *tc = wf_randn(WF_SHAPE(128, 32), WF_F32);
    wf_tensor *x = xc ? wf_to_device(xc, WF_CUDA(0)) : NULL, *t = tc ? wf_to_device(tc, WF_CUDA(0)) : NULL;
    gnet a, b;
    wf_tensor *la = NULL, *lb = NULL;
    wf_cuda_graph *g = wf_cuda_graph_new();
    int rc = x && t && g ? 0 : -1;
    if (!rc) rc = gnet_init(&a);
    for (int k = 0; k < 8 && !rc; k++) {
        wf_tensor_free(la);
        la = NULL;
        rc = gnet_step(&a, x, t, &la);
    }
    if (rc) snprintf(d, sizeof d, "eager run failed (rc %d)", rc);
    int rb = rc ? rc : gnet_init(&b);
    for (int k = 0; k < 3 && !rb; k++) rb = gnet_step(&b, x, t, NULL);
    if (!rb) {
        rb = wf_cuda_graph_capture_begin(g, WF_CUDA(0));
        if (!rb) rb = gnet_step(&b, x, t, &lb);
        int rc2 = wf_cuda_graph_capture_end(g);
        if (!rb) rb = rc2;
    }
    for (int k = 0; k < 5 && !rb; k++) rb = wf_cuda_graph_replay(g);
    if (!rc && rb) snprintf(d, sizeof d, "graph run failed (rc %d)", rb);
    bool same = !rc && !rb;
    for (int i = 0; i < 4 && same; i++) {
        int64_t n = wf_numel(a.p[i]);
        float *u = malloc(sizeof(float) * (size_t)n), *v = malloc(sizeof(float) * (size_t)n);
        same = !wf_to_array(a.p[i], u, WF_F32) && !wf_to_array(b.p[i], v, WF_F32) && !memcmp(u, v, sizeof(float) * (size_t)n);
        if (!same) snprintf(d, sizeof d, "parameter %d differs", i);
        free(u), free(v);
    }
    if (same) {
        double fa = wf_item(la), fb = wf_item(lb);
        same = fa == fb;
        snprintf(d, sizeof d, "last loss eager %.9g, replayed %.9g", fa, fb);
    }
    check(same, name, d);
    wf_cuda_graph_free(g);
    wf_tensor_free(la), wf_tensor_free(lb);
    if (!rc) gnet_free(&a);
    if (!rc) gnet_free(&b);
    wf_tensor_free(xc), wf_tensor_free(tc), wf_tensor_free(x), wf_tensor_free(t);
    wf_use_deterministic_algorithms(det);
}

int main(void) {
    if (wf_cuda_device_count() < 1) {
        printf("skip: no CUDA device\n");
        return 77;
    }
    int major = 0, minor = 0;
    if (wf__cuda_capability(0, &major, &minor)) {
        printf("FAIL: compute capability: %s\n", wf_error_message());
        return 1;
    }
    if (major * 10 + minor < 89) {
        wf_precision *p = wf_precision_new("transformer-engine", WF_CUDA(0), NULL, 0);
        char want[64];
        snprintf(want, sizeof want, "cuda:0 is %d.%d", major, minor);
        check(!p && wf_error() == WF_ENOTSUP && strstr(wf_error_message(), want) &&
                  strstr(wf_error_message(), "needs compute capability 8.9 or newer (Ada, Hopper)"),
              "transformer-engine refused below 8.9", wf_error_message());
        wf_precision_free(p);
        printf("skip: cuda:0 has compute capability %d.%d; fp8 needs 8.9 or newer\n", major, minor);
        printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
        return n_failed ? 1 : 77;
    }
    printf("cuda:0, compute capability %d.%d\n", major, minor);
    const wf_dtype dts[3] = { WF_F32, WF_BF16, WF_F16 };
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 3; i++) {
            /* the 4-wide kernel (rows and cols multiples of 4: partial and whole 64 x 64
             * tiles, specials) and the one-byte one (odd sizes) */
            test_cast(dts[i], f, 80, 48, 1.0f, false);
            test_cast(dts[i], f, 68, 132, 3.0f, true);
            test_cast(dts[i], f, 256, 1024, 0.25f, false);
            test_cast(dts[i], f, 37, 53, 3.0f, true);
            test_cast(dts[i], f, 257, 1024, 0.25f, false);
        }
    test_update(16, 200, 0);
    test_update(16, 200, 1);
    test_update(1024, 40, 0);
    test_gemm(64, 48, 96, 0, 0, WF_BF16, false, false, 0);
    test_gemm(64, 48, 96, 0, 0, WF_BF16, true, false, 0);
    test_gemm(128, 64, 256, 1, 0, WF_BF16, false, false, 0);
    test_gemm(64, 96, 128, 1, 0, WF_F32, false, false, 0);
    test_gemm(64, 96, 128, 1, 0, WF_F32, false, true, 0);
    test_gemm(256, 128, 512, 0, 1, WF_BF16, true, false, 1);
    test_gemm_refusals();
    test_linear(64, 96, true);
    test_linear(60, 96, false);   /* in not a multiple of 16: bf16 autocast, as bf16-mixed */
    test_mlp_trains();
    test_graph();
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
