/* tests/cuda/test_cuda_gelu.c: the bias + GELU kernels' two paths (tensor/cuda/
 * cuda_elementwise.cu) agree bit for bit. The vector path takes contiguous 16-byte-aligned
 * operands of one dtype with D a multiple of 16 bytes; the same values one element off the
 * alignment take the generic kernel. Both must give identical bits (one device function does
 * the per-element math), and both must be near a CPU reference (gelu(x + b) in f64, composed).
 * Shapes: small, D not a multiple of the vector (generic only), and one larger than the
 * grid's threads (the grid-stride loop's 32-bit column step wraps around rows).
 *
 * A plain program like the other tests/cuda ones (the GPU machine has no Check): one line
 * per check, {"checks":N,"failed":M} last; exit 1 on a failure, 77 without a GPU. */
#include "weft/weft.h"

#include "tensor/ops_raw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void fail(const char *what, const char *name) {
    printf("FAIL %s %s: %s\n", what, name, wf_error() ? wf_error_message() : "");
    wf_clear_error();
    n_failed++;
}

/* a and b (any devices) identical as f64 values (every f32 / f16 / bf16 is exact in f64) */
static void same_bits(const char *name, wf_tensor *a, wf_tensor *b) {
    n_checks++;
    if (!a || !b) { fail("same_bits", name); return; }
    int64_t n = wf_numel(a);
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    if (wf_to_array(a, x, WF_F64) || wf_to_array(b, y, WF_F64)) { fail("same_bits", name); free(x); free(y); return; }
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (x[i] != y[i] && !(isnan(x[i]) && isnan(y[i]))) { bad++; if (first < 0) first = i; }
    if (bad) {
        printf("FAIL same_bits %s: %lld of %lld differ (first %lld: %.9g vs %.9g)\n", name, (long long)bad,
               (long long)n, (long long)first, x[first], y[first]);
        n_failed++;
    } else {
        printf("ok   same_bits %s (%lld)\n", name, (long long)n);
    }
    free(x);
    free(y);
}

static void near(const char *name, wf_tensor *got, wf_tensor *ref, double tol) {
    n_checks++;
    if (!got || !ref) { fail("near", name); return; }
    int64_t n = wf_numel(ref);
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    if (wf_to_array(got, x, WF_F64) || wf_to_array(ref, y, WF_F64)) { fail("near", name); free(x); free(y); return; }
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(x[i] - y[i]) / (tol * (1 + fabs(y[i])));
        if (d > worst) worst = d;
    }
    if (worst > 1) { printf("FAIL near %s: worst error %.3g of the tolerance\n", name, worst); n_failed++; }
    else printf("ok   near %s\n", name);
    free(x);
    free(y);
}

/* t's values in a fresh [rows, D] view one element into a buffer of numel + 1: contiguous,
 * but its data pointer is not 16-byte aligned */
static wf_tensor *misaligned(wf_tensor *t, int64_t rows, int64_t D) {
    wf_tensor *buf = wf_zeros_on(WF_SHAPE(rows * D + 1), wf_tensor_dtype(t), WF_CUDA(0));
    wf_tensor *v = buf ? wf_view(wf_narrow(buf, 0, 1, rows * D), WF_SHAPE(rows, D)) : NULL;
    if (!v || wf_copy_(v, t)) return NULL;
    return v;
}

static void run(wf_dtype dt, int64_t rows, int64_t D, bool tanh_form) {
    char name[96];
    snprintf(name, sizeof name, "%s [%lld, %lld]%s", wf_dtype_name(dt), (long long)rows, (long long)D,
             tanh_form ? " tanh" : "");
    wf_scope_begin();
    wf_manual_seed(11);
    wf_tensor *x0 = wf_mul_scalar(wf_randn(WF_SHAPE(rows, D), WF_F32), 2.0);
    wf_tensor *b0 = wf_randn(WF_SHAPE(D), WF_F32), *g0 = wf_randn(WF_SHAPE(rows, D), WF_F32);
    wf_tensor *x = wf_to_device(wf_to_dtype(x0, dt), WF_CUDA(0)), *b = wf_to_device(wf_to_dtype(b0, dt), WF_CUDA(0));
    wf_tensor *gy = wf_to_device(wf_to_dtype(g0, dt), WF_CUDA(0));
    wf_tensor *xm = x ? misaligned(x, rows, D) : NULL, *gm = gy ? misaligned(gy, rows, D) : NULL;
    if (!x || !b || !gy || !xm || !gm) { fail("setup", name); wf_scope_end(); return; }
    wf_tensor *y = wf__bias_gelu_raw(x, b, tanh_form), *ym = wf__bias_gelu_raw(xm, b, tanh_form);
    wf_tensor *gx = wf__bias_gelu_bwd_raw(gy, x, b, tanh_form), *gxm = wf__bias_gelu_bwd_raw(gm, x, b, tanh_form);
    char n2[128];
    snprintf(n2, sizeof n2, "forward %s", name);
    same_bits(n2, y, ym);
    snprintf(n2, sizeof n2, "backward %s", name);
    same_bits(n2, gx, gxm);
    /* the reference on the CPU, in f64, from the same (rounded) inputs */
    wf_tensor *xc = wf_to_dtype(wf_to_device(x, WF_CPU), WF_F64), *bc = wf_to_dtype(wf_to_device(b, WF_CPU), WF_F64);
    wf_tensor *gc = wf_to_dtype(wf_to_device(gy, WF_CPU), WF_F64);
    wf_gelu_approx ap = tanh_form ? WF_GELU_TANH : WF_GELU_NONE;
    wf_tensor *v = wf_detach(wf_add(xc, bc)), *yr = v ? wf_gelu(v, ap) : NULL, *gr = NULL;
    if (v && !wf_set_requires_grad(v, true)) {   /* gr = gc * gelu'(x + b) */
        wf_tensor *o = wf_gelu(v, ap);
        if (o && !wf_backward(o, gc, false)) gr = wf_grad(v);
    }
    /* catches a wrong column or a lost element (errors of order 1), not ulps: the kernels'
     * tanh / erf are the fast-math ones */
    double tol = dt == WF_F32 ? 1e-3 : dt == WF_F16 ? 4e-3 : 2e-2;
    snprintf(n2, sizeof n2, "forward %s vs CPU", name);
    near(n2, y, yr, tol);
    snprintf(n2, sizeof n2, "backward %s vs CPU", name);
    near(n2, gx, gr, tol);
    wf_scope_end();
}

int main(void) {
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    const wf_dtype dts[3] = { WF_BF16, WF_F16, WF_F32 };
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 2; t++) {
            run(dts[i], 37, 64, t);   /* vector vs generic */
            run(dts[i], 37, 60, t);   /* D not a multiple of the vector: generic both ways */
        }
    /* more vectors than the grid has threads (132 SMs x 32 blocks x 256 on an H100): the
     * column step wraps; D = 3080 makes it a step that is not a multiple of the row */
    run(WF_BF16, 4500, 3072, true);
    run(WF_BF16, 4500, 3080, false);
    run(WF_F32, 2300, 3080, true);
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
