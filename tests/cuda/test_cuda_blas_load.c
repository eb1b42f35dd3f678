/* tests/cuda/test_cuda_blas_load.c: cuBLAS and cuBLASLt are loaded on the first CUDA device
 * set-up, not at process start (tensor/cuda/cuda_blas_api.cuh: linking them cost every program
 * about 80 ms and 210 MB before main, CPU-only runs included).
 *
 * Runs without a GPU too (the loading needs only the toolkit's libraries): a program that
 * trains on the CPU and asks how many GPUs there are has neither library mapped; the loader
 * maps both, resolves every symbol, and a second call returns the same result. With a GPU,
 * the first CUDA GEMM works through the loaded table.
 *
 * A plain C program (no Check), so the GPU machine builds it too. Prints one FAIL line per
 * failure, then {"checks":N,"failed":M}. Exit 1 on any failure. */
#include "weft/weft.h"
#include "weft/cuda.h"
#include "tensor/cuda/cuda_api.h"

#include <stdio.h>
#include <string.h>

static int n_checks, n_failed;

static void check(bool ok, const char *what) {
    n_checks++;
    if (ok) return;
    n_failed++;
    printf("FAIL %s (%s)\n", what, wf_error_message());
    wf_clear_error();
}

/* whether a library whose file name starts with `prefix` is mapped into this process */
static bool mapped(const char *prefix) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *slash = strrchr(line, '/');
        found = slash && !strncmp(slash + 1, prefix, strlen(prefix));
    }
    fclose(f);
    return found;
}

int main(void) {
    FILE *probe = fopen("/proc/self/maps", "r");
    if (!probe) {
        printf("no /proc/self/maps: skipped\n");
        return 77;
    }
    fclose(probe);
    wf_clear_error();

    /* a CPU step's worth of work, and the device count (which starts the CUDA runtime) */
    int ngpu = wf_cuda_device_count();
    WF_SCOPE {
        wf_tensor *a = wf_randn(WF_SHAPE(64, 64), WF_F32);
        check(wf_sum_all(wf_matmul(a, a)) != NULL, "a CPU matmul");
    }
    check(!mapped("libcublasLt.so"), "libcublasLt is not mapped before the first CUDA device set-up");
    check(!mapped("libcublas.so"), "libcublas is not mapped before the first CUDA device set-up");

    check(wf__cuda_blas_load() == 0, "wf__cuda_blas_load finds the toolkit's cuBLAS");
    check(mapped("libcublasLt.so") && mapped("libcublas.so"), "both libraries are mapped after the load");
    check(wf__cuda_blas_load() == 0, "a second load returns the first one's result");

    if (ngpu > 0) {   /* the table in use: a GEMM on the GPU against the CPU's */
        WF_SCOPE {
            wf_tensor *a = wf_randn(WF_SHAPE(32, 48), WF_F32), *b = wf_randn(WF_SHAPE(48, 16), WF_F32);
            wf_tensor *want = wf_matmul(a, b);
            wf_tensor *got = wf_to_device(wf_matmul(wf_to_device(a, WF_CUDA(0)), wf_to_device(b, WF_CUDA(0))),
                                          WF_CPU);
            wf_tensor *err = got && want ? wf_amax(wf_abs(wf_sub(got, want)), NULL, 0, false) : NULL;
            check(err && wf_item(err) < 1e-3, "a CUDA matmul through the loaded cuBLAS, within 1e-3 of the CPU's");
        }
    } else {
        printf("no CUDA device: the GEMM check skipped\n");
    }
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
