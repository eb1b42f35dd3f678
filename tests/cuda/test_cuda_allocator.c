/* tests/cuda/test_cuda_allocator.c: CUDA's caching allocator, which is no op and so not in the
 * op harness (tests/ops/): a training step's steady state makes no cudaMalloc and leaks no
 * bytes, wf_cuda_empty_cache gives cached blocks back without touching live tensors, and
 * wf_cuda_memory_stats refuses bad arguments. (These checks were part of the parity program,
 * whose op checks are now rows of tests/ops/op_table.c.)
 *
 * A plain C program (no Check), so the GPU machine, which has no Check library, builds it too.
 * Prints one FAIL line per failure, then {"checks":N,"failed":M}. Exit 1 on any failure, 77
 * (skip) without a GPU. */
#include "weft/weft.h"
#include "weft/cuda.h"

#include <stdio.h>
#include <string.h>

static int n_checks, n_failed;

static void check(bool ok, const char *what, const wf_memory_stats *a, const wf_memory_stats *b) {
    n_checks++;
    if (ok) return;
    n_failed++;
    printf("FAIL %s", what);
    if (a && b)
        printf(": cudaMalloc calls %zu -> %zu, allocated %zu -> %zu, reserved %zu -> %zu", a->n_system_allocs,
               b->n_system_allocs, a->allocated, b->allocated, a->reserved, b->reserved);
    printf(" (%s)\n", wf_error_message());
    wf_clear_error();
}

/* one matmul-and-reduce "step" on cuda:0 from a fresh input; everything it makes is freed
 * when its scope ends */
static void step(void) {
    WF_SCOPE {
        wf_tensor *a = wf_to_device(wf_randn(WF_SHAPE(256, 256), WF_F32), WF_CUDA(0));
        wf_sum_all(wf_matmul(a, a));
    }
}

int main(void) {
    if (wf_cuda_device_count() < 1) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    wf_clear_error();
    wf_manual_seed(5);
    wf_memory_stats s0, s1, s2;

    /* steady state: the first steps fill the cache, the next ones reuse it */
    for (int it = 0; it < 3; it++) step();
    check(wf_cuda_synchronize(0) == 0 && wf_cuda_memory_stats(0, &s0) == 0, "memory stats after warm-up", NULL, NULL);
    for (int it = 0; it < 10; it++) step();
    check(wf_cuda_synchronize(0) == 0 && wf_cuda_memory_stats(0, &s1) == 0, "memory stats after 10 steps", NULL, NULL);
    check(s1.n_system_allocs == s0.n_system_allocs, "a steady state makes no cudaMalloc", &s0, &s1);
    check(s1.allocated == s0.allocated, "a steady state leaks no bytes", &s0, &s1);
    check(s1.reserved >= s1.allocated && s1.peak_allocated >= s1.allocated, "reserved >= allocated <= peak", &s0, &s1);

    /* empty_cache: the cached blocks go back; a live tensor keeps its bytes and its values */
    WF_SCOPE {
        wf_tensor *live = wf_to_device(wf_full(WF_SHAPE(1000), 2.5, WF_F32), WF_CUDA(0));
        step();
        wf_cuda_memory_stats(0, &s1);
        wf_cuda_empty_cache();
        check(wf_cuda_memory_stats(0, &s2) == 0, "memory stats after empty_cache", NULL, NULL);
        check(s2.reserved <= s1.reserved, "empty_cache does not grow the reserve", &s1, &s2);
        check(s2.allocated == s1.allocated && s2.reserved >= s2.allocated, "empty_cache leaves live tensors alone", &s1,
              &s2);
        double v = 0;
        check(live && wf_to_array(wf_sum_all(live), &v, WF_F64) == 0 && v == 2500.0, "a live tensor after empty_cache",
              NULL, NULL);
        /* and the allocator serves again after it */
        step();
        check(wf_cuda_synchronize(0) == 0, "a step after empty_cache", NULL, NULL);
    }

    /* bad arguments */
    memset(&s2, 0xff, sizeof s2);
    int rc = wf_cuda_memory_stats(wf_cuda_device_count(), &s2);
    check(rc == WF_EDEVICE && strstr(wf_error_message(), "wf_cuda_memory_stats") && s2.allocated == 0 && s2.reserved == 0,
          "memory stats of a device that does not exist: WF_EDEVICE, zeroed", NULL, NULL);
    wf_clear_error();
    rc = wf_cuda_memory_stats(0, NULL);
    check(rc == WF_ENULL && strstr(wf_error_message(), "NULL output"), "memory stats into NULL: WF_ENULL", NULL, NULL);
    wf_clear_error();

    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
