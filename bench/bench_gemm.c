/* bench/bench_gemm.c: wf_matmul against cblas_sgemm on the same f32 shapes, in one run.
 *
 * For each (m, k, n): A [m,k] @ B [k,n], best-of-R wall time of wf_matmul (inside a scope,
 * so allocation of the result through the caching allocator is included, as in training)
 * and of cblas_sgemm into a preallocated C. Prints a table and, last, one JSON object:
 * {"shapes":[...],"weft_gflops":[...],"blas_gflops":[...],"ratio":[...],"max_abs_diff":...}
 * where ratio = weft time / blas time (1.0 = as fast as OpenBLAS).
 * Usage: bench_gemm [repeats]   (default 5) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "weft/weft.h"
#include "weft_config.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    static const int shapes[][3] = { { 64, 784, 256 }, { 256, 256, 256 }, { 512, 512, 512 },
                                     { 1024, 1024, 1024 } };
    enum { NS = sizeof shapes / sizeof shapes[0] };
    double wg[NS], bg[NS], ratio[NS], maxdiff = 0;
#ifdef WEFT_HAVE_OPENBLAS
    const char *backend = "openblas";
#else
    const char *backend = "builtin";
#endif
    printf("weft GEMM backend: %s; best of %d runs\n", backend, reps);
    printf("%6s %6s %6s  %12s %12s %8s\n", "m", "k", "n", "weft GFLOP/s", "blas GFLOP/s", "ratio");
    wf_manual_seed(0);
    for (int s = 0; s < NS; s++) {
        int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        wf_tensor *a = wf_randn((int64_t[]){ m, k }, 2, WF_F32);
        wf_tensor *b = wf_randn((int64_t[]){ k, n }, 2, WF_F32);
        float *c = malloc(sizeof(float) * (size_t)m * (size_t)n);
        float *cw = malloc(sizeof(float) * (size_t)m * (size_t)n);
        if (!a || !b || !c || !cw) {
            fprintf(stderr, "bench_gemm: setup failed: %s\n", wf_error_message());
            return 1;
        }
        const float *pa = wf_data_ptr(a), *pb = wf_data_ptr(b);
        double flops = 2.0 * m * n * k, tw = INFINITY, tb = INFINITY;
        /* warm up both (thread pools, caching allocator) */
        WF_SCOPE { wf_matmul(a, b); }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, pa, k, pb, n, 0.0f, c, n);
        int inner = flops < 1e8 ? 20 : flops < 1e9 ? 5 : 1;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (int i = 0; i < inner; i++) {
                WF_SCOPE {
                    wf_tensor *y = wf_matmul(a, b);
                    if (!y) { fprintf(stderr, "bench_gemm: %s\n", wf_error_message()); exit(1); }
                    if (i == 0 && r == 0) wf_to_array(y, cw, WF_F32);
                }
            }
            double t1 = now();
            for (int i = 0; i < inner; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, pa, k, pb, n,
                            0.0f, c, n);
            double t2 = now();
            if ((t1 - t0) / inner < tw) tw = (t1 - t0) / inner;
            if ((t2 - t1) / inner < tb) tb = (t2 - t1) / inner;
        }
        for (long i = 0; i < (long)m * n; i++) {
            double d = fabs((double)cw[i] - (double)c[i]);
            if (d > maxdiff) maxdiff = d;
        }
        wg[s] = flops / tw * 1e-9;
        bg[s] = flops / tb * 1e-9;
        ratio[s] = tw / tb;
        printf("%6d %6d %6d  %12.2f %12.2f %8.3f\n", m, k, n, wg[s], bg[s], ratio[s]);
        free(c);
        free(cw);
        wf_tensor_free(a);
        wf_tensor_free(b);
    }
    printf("{\"backend\":\"%s\",\"shapes\":[", backend);
    for (int s = 0; s < NS; s++)
        printf("%s\"%dx%dx%d\"", s ? "," : "", shapes[s][0], shapes[s][1], shapes[s][2]);
    printf("],\"weft_gflops\":[");
    for (int s = 0; s < NS; s++) printf("%s%.2f", s ? "," : "", wg[s]);
    printf("],\"blas_gflops\":[");
    for (int s = 0; s < NS; s++) printf("%s%.2f", s ? "," : "", bg[s]);
    printf("],\"ratio\":[");
    for (int s = 0; s < NS; s++) printf("%s%.3f", s ? "," : "", ratio[s]);
    printf("],\"max_abs_diff\":%.3g}\n", maxdiff);
    return 0;
}
