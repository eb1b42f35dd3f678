/* bench/ktrace.c: a tiny CUDA kernel tracer for the GPU machine, where Nsight Systems is not
 * usable. Built as a shared library and loaded by the CUDA driver through
 * CUDA_INJECTION64_PATH (works for any CUDA program: weft's benchmarks and PyTorch alike):
 * it records every kernel, memcpy and memset with CUPTI's activity API and, at exit, writes
 * one CSV line per record to $KTRACE_OUT (default ktrace.csv):
 *   K,<start ns>,<end ns>,<stream>,<grid x*y*z>,<block x>,<regs>,<dyn smem>,<name>
 *   C,<start>,<end>,<stream>,<bytes>,<copy kind>
 *   S,<start>,<end>,<stream>,<bytes>
 * bench/ktrace_summary.py turns that into per-kernel totals and the idle gaps of one step.
 * Build (bench/gpu_fused_run.sh does it): cc -shared -fPIC -I<cupti include> ktrace.c -lcupti
 * The activity struct versions are chosen at build time (-DKT_KERNEL=CUpti_ActivityKernel9 ...)
 * to match the toolkit's headers. */
#include <cupti.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KT_KERNEL
#define KT_KERNEL CUpti_ActivityKernel9
#endif
#ifndef KT_MEMCPY
#define KT_MEMCPY CUpti_ActivityMemcpy6
#endif
#ifndef KT_MEMSET
#define KT_MEMSET CUpti_ActivityMemset4
#endif

#define KT_BUF (8u << 20)

static FILE *kt_out;

static void CUPTIAPI kt_request(uint8_t **buf, size_t *size, size_t *max_records) {
    *buf = (uint8_t *)aligned_alloc(8, KT_BUF);
    *size = *buf ? KT_BUF : 0;
    *max_records = 0;
}

static void CUPTIAPI kt_complete(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
    (void)ctx; (void)stream; (void)size;
    CUpti_Activity *r = NULL;
    while (kt_out && cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind == CUPTI_ACTIVITY_KIND_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
            const KT_KERNEL *k = (const KT_KERNEL *)r;
            fprintf(kt_out, "K,%llu,%llu,%u,%lld,%d,%d,%d,%s\n", (unsigned long long)k->start,
                    (unsigned long long)k->end, k->streamId, (long long)k->gridX * k->gridY * k->gridZ, k->blockX,
                    k->registersPerThread, k->dynamicSharedMemory, k->name ? k->name : "?");
        } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            const KT_MEMCPY *m = (const KT_MEMCPY *)r;
            fprintf(kt_out, "C,%llu,%llu,%u,%llu,%d\n", (unsigned long long)m->start, (unsigned long long)m->end,
                    m->streamId, (unsigned long long)m->bytes, (int)m->copyKind);
        } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const KT_MEMSET *m = (const KT_MEMSET *)r;
            fprintf(kt_out, "S,%llu,%llu,%u,%llu\n", (unsigned long long)m->start, (unsigned long long)m->end,
                    m->streamId, (unsigned long long)m->bytes);
        }
    }
    free(buf);
}

static void kt_finish(void) {
    cuptiActivityFlushAll(1);
    if (kt_out) fclose(kt_out);
    kt_out = NULL;
}

int InitializeInjection(void) {
    const char *path = getenv("KTRACE_OUT");
    kt_out = fopen(path && *path ? path : "ktrace.csv", "w");
    if (!kt_out) return 0;
    if (cuptiActivityRegisterCallbacks(kt_request, kt_complete) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "ktrace: CUPTI activity setup failed\n");
        return 0;
    }
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
    atexit(kt_finish);
    return 1;
}
