/* tests/cuda/test_cuda_bgrad.c: WEFT_BGRAD=colsum (tensor/cuda/cuda_gemm.cu), Linear's bias
 * gradient from the column-sum kernels instead of cuBLASLt's BGRAD epilogue. The variable is
 * read once per process, so this program sets it before its first call. Linear backward on
 * the GPU against the CPU in f64 (from the same rounded inputs): the bias gradient (column
 * sums of dy) and the weight gradient (the plain GEMM that runs beside them), for f32, f16 and
 * bf16, with out a multiple of the 16-byte vector (the kernels), not one (the epilogue or the
 * composed route), and rows from one chunk to many. Run twice, the sums must be identical
 * (deterministic: fixed-order partials).
 *
 * A plain program like the other tests/cuda ones: one line per check, {"checks":N,"failed":M}
 * last; exit 1 on a failure, 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L
#include "weft/weft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

/* max over elements of |got - ref| / (tol (scale + |ref|)) must be <= 1; tol 0: identical */
static void near(const char *name, wf_tensor *got, wf_tensor *ref, double tol, double scale) {
    n_checks++;
    int64_t n = ref ? wf_numel(ref) : 0;
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!got || !ref || wf_numel(got) != n || wf_to_array(got, x, WF_F64) || wf_to_array(ref, y, WF_F64)) {
        printf("FAIL %s: %s\n", name, wf_error_message());
        wf_clear_error();
        n_failed++;
    } else {
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = tol == 0 ? (x[i] != y[i] ? 2.0 : 0.0) : fabs(x[i] - y[i]) / (tol * (scale + fabs(y[i])));
            if (d > worst) worst = d;
        }
        if (worst > 1) { printf("FAIL %s: worst error %.3g of the tolerance\n", name, worst); n_failed++; }
        else printf("ok   %s\n", name);
    }
    free(x);
    free(y);
}

static void same(const char *name, wf_tensor *a, wf_tensor *b) { near(name, a, b, 0, 0); }

/* y = x w^T + b on the GPU, backward with gy; returns the GPU's gb and gw (CPU copies) */
static void linear_grads(wf_tensor *x0, wf_tensor *w0, wf_tensor *b0, wf_tensor *gy0, wf_dtype dt, wf_tensor **gw,
                         wf_tensor **gb) {
    wf_tensor *x = wf_to_device(wf_to_dtype(x0, dt), WF_CUDA(0));
    wf_tensor *w = wf_detach(wf_to_device(wf_to_dtype(w0, dt), WF_CUDA(0)));
    wf_tensor *b = wf_detach(wf_to_device(wf_to_dtype(b0, dt), WF_CUDA(0)));
    wf_tensor *gy = wf_to_device(wf_to_dtype(gy0, dt), WF_CUDA(0));
    *gw = *gb = NULL;
    if (!x || !w || !b || !gy || wf_set_requires_grad(w, true) || wf_set_requires_grad(b, true)) return;
    wf_tensor *y = wf_linear(x, w, b);
    if (!y || wf_backward(y, gy, false)) return;
    *gw = wf_to_device(wf_grad(w), WF_CPU);
    *gb = wf_to_device(wf_grad(b), WF_CPU);
}

static void run(wf_dtype dt, int64_t rows, int64_t in, int64_t out) {
    char name[128];
    wf_scope_begin();
    wf_manual_seed(5);
    wf_tensor *x0 = wf_randn(WF_SHAPE(rows, in), WF_F32), *w0 = wf_randn(WF_SHAPE(out, in), WF_F32);
    wf_tensor *b0 = wf_randn(WF_SHAPE(out), WF_F32), *gy0 = wf_randn(WF_SHAPE(rows, out), WF_F32);
    wf_tensor *gw, *gb, *gw2, *gb2;
    linear_grads(x0, w0, b0, gy0, dt, &gw, &gb);
    linear_grads(x0, w0, b0, gy0, dt, &gw2, &gb2);
    /* the reference: the same rounded inputs in f64 on the CPU */
    wf_tensor *gyr = wf_to_dtype(wf_to_dtype(gy0, dt), WF_F64), *xr = wf_to_dtype(wf_to_dtype(x0, dt), WF_F64);
    wf_tensor *gbr = wf_sum(gyr, WF_DIMS(0), false), *gwr = wf_matmul(wf_t(gyr), xr);
    /* sums of `rows` terms of size ~1 rounded once to dt; f32 loose enough for TF32. These
     * catch a lost row, chunk or column (errors of order 1), not rounding */
    double tol = dt == WF_F32 ? 1e-3 : dt == WF_F16 ? 2e-3 : 1e-2, scale = sqrt((double)rows);
    snprintf(name, sizeof name, "bias grad %s rows %lld out %lld", wf_dtype_name(dt), (long long)rows, (long long)out);
    near(name, gb, gbr, tol, scale);
    snprintf(name, sizeof name, "weight grad %s rows %lld out %lld", wf_dtype_name(dt), (long long)rows, (long long)out);
    near(name, gw, gwr, tol, scale);
    snprintf(name, sizeof name, "bias grad %s rows %lld out %lld run twice", wf_dtype_name(dt), (long long)rows,
             (long long)out);
    same(name, gb2, gb);
    wf_scope_end();
}

int main(void) {
    setenv("WEFT_BGRAD", "colsum", 1);
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    const wf_dtype dts[3] = { WF_BF16, WF_F16, WF_F32 };
    for (int i = 0; i < 3; i++) {
        run(dts[i], 3, 16, 24);      /* one chunk, rows below one row lane's 4 */
        run(dts[i], 1000, 64, 768);  /* many chunks, 3 column tiles */
        run(dts[i], 4096, 32, 776);  /* a last tile with 1 (bf16) or 2 (f32) vectors of 32 */
        run(dts[i], 257, 16, 20);    /* out not a multiple of the vector for halves */
    }
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
