/* tests/cuda/test_cuda_gelu_epilogue.c: the MLP's tanh GELU inside cuBLASLt's GEMM epilogues
 * (tensor/cuda/cuda_gemm.cu: GELU_AUX_BIAS forward, DGELU_BGRAD backward, and GELU_AUX / DGELU
 * without a bias), through the raw ops of tensor/ops_linear_fused.c and the public
 * wf_fused_mlp / wf_linear_gelu (autograd/fn_linear_fused.c).
 *
 * Each case draws x [rows, in], w1 [hid, in], b1 [hid], w2 [in, hid], b2 [in] and dy, rounds
 * them to the GPU's dtype, and compares against the composed MLP (linear, tanh GELU, linear)
 * in f64 on the CPU from the same rounded values: the raw ops' g, aux, dh, db1, and the public
 * ops' output, dx, dW1, db1, dW2, db2. The raw ops must take the GPT-like shapes (0: handled)
 * and decline (1) what cuBLASLt's epilogue cannot: a hidden width whose aux leading dimension is
 * no multiple of 8, a bias one element off its 16-byte alignment, f32; the public ops give the
 * same results either way (the fallback: GEMM + bias_gelu kernels).
 *
 * Tolerances: every compared value is a sum of k products (k = in, hid or rows) whose operands
 * and result are rounded to the dtype (unit roundoff u: 2^-8 bf16, 2^-11 f16) a few times
 * along the chain, each rounding an independent relative error of at most u per term: the sum's
 * error is ~ u sqrt(k) times a term, and the sum itself ~ sqrt(k) times a term, i.e. u times
 * the result's RMS. The check is |got - ref| <= 8 u (rms(ref) + |ref|): a lost bias, GELU
 * derivative or row is an error of order the RMS, 30x and more above it.
 *
 * A plain program like the other tests/cuda ones (the GPU machine has no Check): one line per
 * check, {"checks":N,"failed":M} last; exit 1 on a failure, 77 without a GPU. The backward
 * epilogue is opt-in (WEFT_DGELU_EPILOGUE=1, slower on the H100): this program sets it. */
#define _POSIX_C_SOURCE 200809L   /* setenv */
#include "weft/weft.h"

#include "tensor/ops_raw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void fail(const char *name, const char *why) {
    printf("FAIL %s: %s %s\n", name, why, wf_error() ? wf_error_message() : "");
    wf_clear_error();
    n_failed++;
}

/* f32: a loose 2^-16, for GEMMs whose f32 sums run in another order than the f64 reference's */
static double unit_roundoff(wf_dtype dt) { return dt == WF_BF16 ? 0x1p-8 : dt == WF_F16 ? 0x1p-11 : 0x1p-16; }

/* |got - ref| <= 8 u (rms(ref) + |ref|) elementwise (see the header) */
static void near(const char *name, wf_tensor *got, wf_tensor *ref, wf_dtype dt) {
    n_checks++;
    if (!got || !ref || wf_numel(got) != wf_numel(ref)) { fail(name, "missing or mis-sized"); return; }
    int64_t n = wf_numel(ref);
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    if (!x || !y || wf_to_array(got, x, WF_F64) || wf_to_array(ref, y, WF_F64)) {
        fail(name, "read back");
        free(x);
        free(y);
        return;
    }
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += y[i] * y[i];
    double rms = sqrt(ss / (double)n), tol = 8 * unit_roundoff(dt), worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(x[i] - y[i]) / (tol * (rms + fabs(y[i])) + 1e-300);
        if (!(d <= worst)) worst = d, at = i;   /* NaN counts as worst */
    }
    if (!(worst <= 1)) {
        printf("FAIL %s: worst error %.3g of the tolerance (element %lld: %.6g vs %.6g, rms %.3g)\n", name, worst,
               (long long)at, x[at], y[at], rms);
        n_failed++;
    } else {
        printf("ok   %s (%.2f of the tolerance)\n", name, worst);
    }
    free(x);
    free(y);
}

static void expect_rc(const char *name, int got, int want) {
    n_checks++;
    if (got != want) {
        printf("FAIL %s: returned %d, expected %d (%s)\n", name, got, want, want ? "declined" : "handled");
        wf_clear_error();
        n_failed++;
    } else {
        printf("ok   %s: %s\n", name, got ? "declined" : "handled");
    }
}

/* a leaf on the GPU in dt with the values of t (f32 on the CPU) rounded to dt */
static wf_tensor *leaf(wf_tensor *t, wf_dtype dt) {
    wf_tensor *d = wf_detach(wf_to_device(wf_to_dtype(t, dt), WF_CUDA(0)));
    if (d && wf_set_requires_grad(d, true)) return NULL;
    return d;
}
/* the CPU f64 leaf with t's values rounded to dt */
static wf_tensor *ref_leaf(wf_tensor *t, wf_dtype dt) {
    wf_tensor *r = wf_detach(wf_to_dtype(wf_to_dtype(t, dt), WF_F64));
    if (r && wf_set_requires_grad(r, true)) return NULL;
    return r;
}
static wf_tensor *cpu(wf_tensor *t) { return t ? wf_to_device(t, WF_CPU) : NULL; }

typedef struct mlp_case {
    const char *what;
    wf_dtype dt;
    int64_t rows, in, hid;
    bool bias, bias_misaligned;
    int want;   /* the raw ops: 0 handled, 1 declined */
} mlp_case;

static void run(const mlp_case *c) {
    char name[192];
    wf_scope_begin();
    wf_manual_seed(11);
    int64_t rows = c->rows, in = c->in, hid = c->hid, out = c->in;
    /* weights scaled to keep pre-activations ~1: the GELU's curved part is exercised */
    wf_tensor *x0 = wf_randn(WF_SHAPE(rows, in), WF_F32);
    wf_tensor *w10 = wf_mul_scalar(wf_randn(WF_SHAPE(hid, in), WF_F32), 1.0 / sqrt((double)in));
    wf_tensor *b10 = wf_mul_scalar(wf_randn(WF_SHAPE(hid), WF_F32), 0.5);
    wf_tensor *w20 = wf_mul_scalar(wf_randn(WF_SHAPE(out, hid), WF_F32), 1.0 / sqrt((double)hid));
    wf_tensor *b20 = wf_mul_scalar(wf_randn(WF_SHAPE(out), WF_F32), 0.5);
    wf_tensor *gy0 = wf_randn(WF_SHAPE(rows, out), WF_F32);
    wf_dtype dt = c->dt;

    /* the reference: the composed MLP in f64 on the CPU */
    wf_tensor *xr = ref_leaf(x0, dt), *w1r = ref_leaf(w10, dt), *b1r = c->bias ? ref_leaf(b10, dt) : NULL;
    wf_tensor *w2r = ref_leaf(w20, dt), *b2r = ref_leaf(b20, dt), *gyr = wf_to_dtype(wf_to_dtype(gy0, dt), WF_F64);
    wf_tensor *hr = wf_linear(xr, w1r, b1r), *gr = wf_gelu(hr, WF_GELU_TANH), *yr = wf_linear(gr, w2r, b2r);
    /* dh, the GELU's input gradient: the second half again from h as a leaf */
    wf_tensor *hleaf = hr ? wf_detach(hr) : NULL;
    wf_tensor *y2 = hleaf && !wf_set_requires_grad(hleaf, true)
                        ? wf_linear(wf_gelu(hleaf, WF_GELU_TANH), wf_detach(w2r), wf_detach(b2r)) : NULL;
    if (!yr || !y2 || wf_backward(yr, gyr, false) || wf_backward(y2, gyr, false)) {
        fail(c->what, "the reference");
        wf_scope_end();
        return;
    }
    wf_tensor *dhr = wf_grad(hleaf);

    /* the GPU's leaves; b1 one element into a larger tensor when it is to be misaligned */
    wf_tensor *x = leaf(x0, dt), *w1 = leaf(w10, dt), *w2 = leaf(w20, dt), *b2 = leaf(b20, dt), *b1 = NULL, *b1leaf = NULL;
    if (c->bias && c->bias_misaligned) {
        wf_tensor *big = wf_cat((wf_tensor *[]){ wf_zeros(WF_SHAPE(1), WF_F32), b10 }, 2, 0);
        b1leaf = leaf(big, dt);
        b1 = b1leaf ? wf_narrow(b1leaf, 0, 1, hid) : NULL;
    } else if (c->bias) {
        b1 = b1leaf = leaf(b10, dt);
    }
    wf_tensor *gy = wf_to_device(wf_to_dtype(gy0, dt), WF_CUDA(0));
    if (!x || !w1 || !w2 || !b2 || !gy || (c->bias && !b1)) { fail(c->what, "the GPU's inputs"); wf_scope_end(); return; }

    /* the raw ops: handled or declined as the case says, and right when handled */
    WF_NO_GRAD {
        wf_tensor *g = NULL, *aux = NULL, *dh = NULL, *db = NULL;
        int r = wf__linear_gelu_aux_raw(x, w1, b1, &g, &aux);
        snprintf(name, sizeof name, "%s: gemm_gelu forward", c->what);
        expect_rc(name, r, c->want);
        if (r == 0) {
            snprintf(name, sizeof name, "%s: forward aux = x w1^T + b1", c->what);
            near(name, cpu(aux), hr, dt);
            snprintf(name, sizeof name, "%s: forward g = gelu_tanh(aux)", c->what);
            near(name, cpu(g), gr, dt);
            r = wf__linear_dgelu_bgrad_raw(gy, w2, aux, &dh, c->bias ? &db : NULL);
            snprintf(name, sizeof name, "%s: gemm_gelu backward", c->what);
            expect_rc(name, r, c->want);
            if (r == 0) {
                /* against the GELU's gradient taken through the reference's own graph */
                snprintf(name, sizeof name, "%s: backward dh = (dy w2) gelu'(aux)", c->what);
                near(name, cpu(dh), dhr, dt);
                if (c->bias) {
                    snprintf(name, sizeof name, "%s: backward db1 = dh's column sums", c->what);
                    near(name, cpu(db), wf_grad(b1r), dt);
                }
            }
        } else if (r < 0) {
            fail(c->what, "the forward raw op failed");
        }
        wf_clear_error();
    }

    /* the public ops: the MLP with its GELU recomputed (wf_fused_mlp), and kept (wf_linear_gelu
     * then wf_linear), each against the reference */
    for (int keep = 0; keep < 2; keep++) {
        wf_tensor *leaves[5] = { x, w1, b1leaf, w2, b2 };
        for (int i = 0; i < 5; i++)
            if (leaves[i]) wf_set_grad(leaves[i], NULL);
        wf_tensor *y = keep ? wf_linear(wf_linear_gelu(x, w1, b1, WF_GELU_TANH), w2, b2)
                            : wf_fused_mlp(x, w1, b1, w2, b2, WF_GELU_TANH);
        const char *how = keep ? "linear_gelu + linear" : "fused_mlp";
        if (!y || wf_backward(y, gy, false)) {
            snprintf(name, sizeof name, "%s: %s", c->what, how);
            fail(name, "forward or backward");
            continue;
        }
        snprintf(name, sizeof name, "%s: %s y", c->what, how);
        near(name, cpu(y), yr, dt);
        snprintf(name, sizeof name, "%s: %s dx", c->what, how);
        near(name, cpu(wf_grad(x)), wf_grad(xr), dt);
        snprintf(name, sizeof name, "%s: %s dW1", c->what, how);
        near(name, cpu(wf_grad(w1)), wf_grad(w1r), dt);
        if (c->bias) {
            wf_tensor *gb = wf_grad(b1leaf);
            if (gb && c->bias_misaligned) gb = wf_narrow(gb, 0, 1, hid);
            snprintf(name, sizeof name, "%s: %s db1", c->what, how);
            near(name, cpu(gb), wf_grad(b1r), dt);
        }
        snprintf(name, sizeof name, "%s: %s dW2", c->what, how);
        near(name, cpu(wf_grad(w2)), wf_grad(w2r), dt);
        snprintf(name, sizeof name, "%s: %s db2", c->what, how);
        near(name, cpu(wf_grad(b2)), wf_grad(b2r), dt);
    }
    wf_scope_end();
}

/* bad inputs to the raw ops decline (1) without an error: the composed path reports them */
static void bad_inputs(void) {
    wf_clear_error();
    wf_scope_begin();
    wf_tensor *x = wf_to_device(wf_zeros(WF_SHAPE(16, 64), WF_BF16), WF_CUDA(0));
    wf_tensor *w = wf_to_device(wf_zeros(WF_SHAPE(128, 64), WF_BF16), WF_CUDA(0));
    wf_tensor *w_odd = wf_to_device(wf_zeros(WF_SHAPE(128, 32), WF_BF16), WF_CUDA(0));
    wf_tensor *b = wf_to_device(wf_zeros(WF_SHAPE(128), WF_BF16), WF_CUDA(0));
    wf_tensor *b_short = wf_to_device(wf_zeros(WF_SHAPE(127), WF_BF16), WF_CUDA(0));
    wf_tensor *b_f32 = wf_to_device(wf_zeros(WF_SHAPE(128), WF_F32), WF_CUDA(0));
    wf_tensor *x_cpu = wf_zeros(WF_SHAPE(16, 64), WF_BF16);
    wf_tensor *g, *aux, *dh, *db;
    expect_rc("raw forward: in_features differ", wf__linear_gelu_aux_raw(x, w_odd, b, &g, &aux), 1);
    expect_rc("raw forward: bias of the wrong length", wf__linear_gelu_aux_raw(x, w, b_short, &g, &aux), 1);
    expect_rc("raw forward: bias of another dtype", wf__linear_gelu_aux_raw(x, w, b_f32, &g, &aux), 1);
    expect_rc("raw forward: input on another device", wf__linear_gelu_aux_raw(x_cpu, w, b, &g, &aux), 1);
    expect_rc("raw forward: NULL input", wf__linear_gelu_aux_raw(NULL, w, b, &g, &aux), 1);
    wf_tensor *gy = wf_to_device(wf_zeros(WF_SHAPE(16, 128), WF_BF16), WF_CUDA(0));
    wf_tensor *aux_bad = wf_to_device(wf_zeros(WF_SHAPE(15, 64), WF_BF16), WF_CUDA(0));
    expect_rc("raw backward: aux rows differ from dy's", wf__linear_dgelu_bgrad_raw(gy, w, aux_bad, &dh, &db), 1);
    n_checks++;
    if (wf_error()) fail("raw ops' declines", "recorded an error");
    else printf("ok   raw ops' declines record no error\n");
    wf_scope_end();
}

int main(void) {
    setenv("WEFT_DGELU_EPILOGUE", "1", 1);   /* the backward epilogue is opt-in (tensor/cuda/cuda_gemm.cu) */
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    static const mlp_case cases[] = {
        /* GPT-2's MLP on 512 rows, and a second GPT-like width */
        { "bf16 [512, 768] -> 3072 -> 768", WF_BF16, 512, 768, 3072, true, false, 0 },
        { "bf16 [300, 256] -> 1024 -> 256", WF_BF16, 300, 256, 1024, true, false, 0 },
        { "f16 [256, 128] -> 512 -> 128", WF_F16, 256, 128, 512, true, false, 0 },
        /* no bias: GELU_AUX / DGELU */
        { "bf16 no bias [256, 128] -> 512 -> 128", WF_BF16, 256, 128, 512, false, false, 0 },
        /* the fallback: aux's leading dimension 100 (no multiple of 8), a misaligned bias, f32 */
        { "bf16 hid 100 (fallback)", WF_BF16, 96, 64, 100, true, false, 1 },
        { "bf16 bias one element off (fallback)", WF_BF16, 128, 64, 256, true, true, 1 },
        { "f32 (fallback)", WF_F32, 128, 64, 256, true, false, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run(&cases[i]);
    bad_inputs();
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
