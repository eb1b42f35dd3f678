/* tests/cuda/test_cuda_wgrad_f32.c: Linear weight gradients in the parameter's f32 on the GPU
 * (the gemm_acc kernel with beta 0 through cuBLASLt's C/D-f32 plans, tensor/cuda/cuda_gemm.cu;
 * autograd/fn_matmul.c wf__linear_weight_grad).
 *   - wf__matmul_f32_raw on 512x768 @ 768x768 bf16 (a read transposed, as a weight gradient
 *     reads dy) against the CPU's: f32 sums of the same products, so within f32 rounding, and
 *     not rounded to bf16; called again (the plan cache, after the autotune) identical; then
 *     wf__matmul_acc_raw_ (beta 1) doubles it;
 *   - wf_linear under bf16 autocast: the weight gradient is f32, within f32 rounding of the
 *     f64 reference g^T x of the bf16 values, and within bf16 rounding of the old path's bf16
 *     product (wf_matmul of the same bf16 operands);
 *   - wf_fused_mlp (tanh) under bf16 autocast: w1's gradient (a plain GEMM after
 *     gelu_bwd_bias) f32 and not rounded to bf16, near the f32 MLP's.
 * Under WEFT_WGRAD_F32_OLD=1 the autograd checks fail (the old path): run without it.
 *
 * A plain program like the other tests/cuda ones: one line per check, {"checks":N,"failed":M}
 * last; exit 1 on a failure, 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L
#include "weft/weft.h"

#include "tensor/ops_raw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void check(const char *name, bool ok, const char *why) {
    n_checks++;
    if (ok) printf("ok   %s\n", name);
    else { printf("FAIL %s: %s\n", name, why ? why : wf_error_message()); n_failed++; wf_clear_error(); }
}

/* max over elements of |got - ref| / (tol (scale + |ref|)) must be <= 1; tol 0: identical */
static void near(const char *name, wf_tensor *got, wf_tensor *ref, double tol, double scale) {
    int64_t n = ref ? wf_numel(ref) : 0;
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!got || !ref || wf_numel(got) != n || wf_to_array(got, x, WF_F64) || wf_to_array(ref, y, WF_F64)) {
        check(name, false, NULL);
    } else {
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = tol == 0 ? (x[i] != y[i] ? 2.0 : 0.0) : fabs(x[i] - y[i]) / (tol * (scale + fabs(y[i])));
            if (d > worst) worst = d;
        }
        char why[96];
        snprintf(why, sizeof why, "worst error %.3g of the tolerance", worst);
        check(name, worst <= 1, why);
    }
    free(x);
    free(y);
}

/* f32 and fewer than a quarter of the values held exactly by bf16 (not rounded to it) */
static void not_rounded(const char *name, wf_tensor *t) {
    if (!t || wf_tensor_dtype(t) != WF_F32) { check(name, false, t ? "not float32" : NULL); return; }
    wf_tensor *c = wf_to_device(t, WF_CPU);
    wf_tensor *r = wf_to_dtype(wf_to_dtype(c, WF_BF16), WF_F32);
    int64_t n = wf_numel(c), k = 0;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    if (wf_to_array(c, a, WF_F32) || wf_to_array(r, b, WF_F32)) { check(name, false, NULL); free(a), free(b); return; }
    for (int64_t i = 0; i < n; i++) k += a[i] == b[i];
    char why[96];
    snprintf(why, sizeof why, "%lld of %lld values are bf16", (long long)k, (long long)n);
    check(name, k < n / 4, why);
    free(a), free(b);
}

static wf_tensor *randn(int64_t r, int64_t c, uint32_t seed) {
    wf_manual_seed(seed);
    return wf_randn(WF_SHAPE(r, c), WF_F32);
}

static void raw_product(void) {
    wf_scope_begin();
    wf_device gpu = WF_CUDA(0);
    /* a [512, 768] read through the transpose of [768, 512], as dy^T in a weight gradient */
    wf_tensor *at = wf_to_dtype(randn(768, 512, 1), WF_BF16), *b = wf_to_dtype(randn(768, 768, 2), WF_BF16);
    wf_tensor *cpu = wf__matmul_f32_raw(wf_t(at), b);
    wf_tensor *atg = wf_to_device(at, gpu), *bg = wf_to_device(b, gpu);
    wf_tensor *g1 = wf__matmul_f32_raw(wf_t(atg), bg), *g2 = wf__matmul_f32_raw(wf_t(atg), bg);
    check("matmul_f32 on the GPU", g1 && g2 && wf_tensor_dtype(g1) == WF_F32, NULL);
    /* 768 products of size ~1 summed in f32: sqrt(768) ~ 28 the scale of the sums */
    near("matmul_f32 512x768 @ 768x768 bf16 vs the CPU (f32 rounding)", wf_to_device(g1, WF_CPU), cpu, 2e-5, 28);
    not_rounded("matmul_f32 not rounded to bf16", g1);
    near("matmul_f32 again (the cached plan) identical", wf_to_device(g2, WF_CPU), wf_to_device(g1, WF_CPU), 0, 0);
    int rc = g1 ? wf__matmul_acc_raw_("test", g1, wf_t(atg), bg) : -1;
    check("gemm_acc beta 1 on the GPU", rc == 0, NULL);
    near("beta 1 adds the product", wf_to_device(g1, WF_CPU), wf_mul_scalar(cpu, 2.0), 2e-5, 56);
    wf_scope_end();
}

static void linear_under_autocast(void) {
    enum { R = 512, I = 768, O = 768 };
    wf_scope_begin();
    wf_device gpu = WF_CUDA(0);
    wf_tensor *x = wf_to_device(randn(R, I, 3), gpu);
    wf_tensor *w = wf_detach(wf_to_device(randn(O, I, 4), gpu));
    wf_tensor *gy = wf_to_device(wf_to_dtype(randn(R, O, 5), WF_BF16), gpu);
    if (!x || !w || !gy || wf_set_requires_grad(w, true)) { check("linear setup", false, NULL); wf_scope_end(); return; }
    wf_autocast_begin(WF_DEV_CUDA, WF_BF16);
    wf_tensor *y = wf_linear(x, w, NULL);
    wf_autocast_end();
    check("linear backward", y && wf_backward(y, gy, false) == 0, NULL);
    wf_tensor *gw = wf_grad(w);
    not_rounded("linear weight grad f32, not rounded to bf16", gw);
    wf_tensor *gw_cpu = gw ? wf_to_device(gw, WF_CPU) : NULL;
    wf_tensor *xb = wf_to_dtype(x, WF_BF16);
    /* the f64 reference of the bf16 values; the old path: the bf16 GEMM of the same operands */
    wf_tensor *ref = wf_matmul(wf_t(wf_to_dtype(wf_to_device(gy, WF_CPU), WF_F64)),
                               wf_to_dtype(wf_to_device(xb, WF_CPU), WF_F64));
    near("linear weight grad vs f64 (f32 rounding)", gw_cpu, ref, 2e-5, 23);
    wf_tensor *old = wf_to_device(wf_to_dtype(wf_matmul(wf_t(gy), xb), WF_F32), WF_CPU);
    near("linear weight grad vs the old bf16 path (bf16 rounding)", gw_cpu, old, 0x1p-8, 1);
    wf_scope_end();
}

static void mlp_under_autocast(void) {
    enum { R = 64, I = 64, H = 256, O = 64 };
    wf_scope_begin();
    wf_device gpu = WF_CUDA(0);
    wf_tensor *x = wf_to_device(randn(R, I, 6), gpu), *gy = wf_to_device(randn(R, O, 7), gpu);
    /* weights at Linear's scale (1/sqrt(fan_in)): with unit-variance weights the GELU's inputs
     * reach +-30 and bf16's rounding of them alone moved w1's gradient by 7x this tolerance, in
     * the old bf16 path as much as in this one (H100, 2026-12-07) */
    wf_tensor *p0[4] = { wf_mul_scalar(randn(H, I, 8), 0.125), wf_mul_scalar(wf_reshape(randn(1, H, 9), WF_SHAPE(H)), 0.1),
                         wf_mul_scalar(randn(O, H, 10), 0.0625), wf_mul_scalar(wf_reshape(randn(1, O, 11), WF_SHAPE(O)), 0.1) };
    wf_tensor *gw1[2] = { NULL, NULL };
    for (int a = 0; a < 2; a++) {   /* 0: bf16 autocast, 1: f32 */
        wf_tensor *p[4];
        for (int i = 0; i < 4; i++) {
            p[i] = wf_detach(wf_to_device(p0[i], gpu));
            if (!p[i] || wf_set_requires_grad(p[i], true)) { check("mlp setup", false, NULL); wf_scope_end(); return; }
        }
        if (!a) wf_autocast_begin(WF_DEV_CUDA, WF_BF16);
        wf_tensor *y = wf_fused_mlp(x, p[0], p[1], p[2], p[3], WF_GELU_TANH);
        if (!a) wf_autocast_end();
        check(a ? "fused_mlp f32 backward" : "fused_mlp bf16 autocast backward",
              y && wf_backward(y, wf_to_dtype(gy, wf_tensor_dtype(y)), false) == 0, NULL);
        gw1[a] = wf_grad(p[0]);
    }
    not_rounded("fused_mlp w1 grad f32, not rounded to bf16", gw1[0]);
    near("fused_mlp w1 grad near the f32 MLP's", gw1[0] ? wf_to_device(gw1[0], WF_CPU) : NULL,
         gw1[1] ? wf_to_device(gw1[1], WF_CPU) : NULL, 3e-2, 8);
    wf_scope_end();
}

int main(void) {
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    raw_product();
    linear_under_autocast();
    mlp_under_autocast();
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
