/* bench/bench_cuda_ops.c: GEMM throughput and elementwise bandwidth on one GPU.
 * Peer: bench/peer_cuda_ops.py (torch.matmul, torch.add, clone) with the same shapes.
 *   GEMM: M=N=K in {1024, 4096, 8192}; f32 (TF32 off and on), f16, bf16.
 *   elementwise: add of two 64M-element f32 tensors vs a device-to-device copy of one
 *   (bytes moved: add 3 x 256 MB, copy 2 x 256 MB).
 * Last line: one JSON object. */
#include "weft/weft.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define DEV WF_CUDA(0)

static double time_gemm(int64_t n, wf_dtype dt, int reps) {
    double best = 1e9;
    WF_SCOPE {
        wf_tensor *a = wf_to_dtype(wf_randn_like(wf_zeros_on(WF_SHAPE(n, n), WF_F32, DEV)), dt);
        wf_tensor *b = wf_to_dtype(wf_randn_like(wf_zeros_on(WF_SHAPE(n, n), WF_F32, DEV)), dt);
        for (int r = 0; r < reps + 2; r++) {
            wf_scope_begin();
            wf_cuda_synchronize(0);
            double t = now();
            wf_tensor *c = wf_matmul(a, b);
            wf_cuda_synchronize(0);
            t = now() - t;
            if (!c) fprintf(stderr, "%s\n", wf_error_message());
            wf_scope_end();
            if (r >= 2 && t < best) best = t;
        }
    }
    return 2.0 * (double)n * (double)n * (double)n / best / 1e12;
}

int main(void) {
    if (wf_cuda_device_count() < 1) { printf("no CUDA device\n"); return 77; }
    const int64_t sizes[] = { 1024, 4096, 8192 };
    printf("{");
    for (int i = 0; i < 3; i++) {
        int64_t n = sizes[i];
        wf_cuda_set_tf32(false);
        double f32 = time_gemm(n, WF_F32, 5);
        wf_cuda_set_tf32(true);
        double tf32 = time_gemm(n, WF_F32, 5);
        wf_cuda_set_tf32(false);
        double f16 = time_gemm(n, WF_F16, 5), bf16 = time_gemm(n, WF_BF16, 5);
        printf("\"gemm%lld_f32_tflops\":%.1f,\"gemm%lld_tf32_tflops\":%.1f,\"gemm%lld_f16_tflops\":%.1f,\"gemm%lld_bf16_tflops\":%.1f,",
               (long long)n, f32, (long long)n, tf32, (long long)n, f16, (long long)n, bf16);
    }
    const int64_t m = 64 << 20;
    double best_add = 1e9, best_cpy = 1e9;
    WF_SCOPE {
        wf_tensor *a = wf_randn_like(wf_zeros_on(&m, 1, WF_F32, DEV)), *b = wf_randn_like(a);
        for (int r = 0; r < 12; r++) {
            wf_scope_begin();
            wf_cuda_synchronize(0);
            double t = now();
            wf_tensor *y = wf_add(a, b);
            wf_cuda_synchronize(0);
            t = now() - t;
            double t2 = now();
            wf_tensor *c = wf_clone(a);
            wf_cuda_synchronize(0);
            t2 = now() - t2;
            (void)y; (void)c;
            wf_scope_end();
            if (r >= 2) { if (t < best_add) best_add = t; if (t2 < best_cpy) best_cpy = t2; }
        }
    }
    double add_gbs = 3.0 * 4 * (double)m / best_add / 1e9, cpy_gbs = 2.0 * 4 * (double)m / best_cpy / 1e9;
    printf("\"add_gbs\":%.0f,\"copy_gbs\":%.0f,\"add_vs_copy\":%.3f}\n", add_gbs, cpy_gbs, add_gbs / cpy_gbs);
    return 0;
}
