/* bench/bench_ops.c: elementwise bandwidth and per-op overhead on the CPU.
 *  - add of two f32 tensors as a fraction of memcpy bandwidth, both on wf_get_num_threads()
 *    threads (weft's pool; the memcpy on as many pthreads)
 *    (bytes moved: read a, read b, write y = 3 x size; memcpy 2 x size per copy), at 4M
 *    elements (the size; may sit in a large L3) and at 64M (out of cache);
 *  - per-op overhead: add of two 64-element tensors, forward + backward, in a scope.
 * Last line: one JSON object with the figures. */
#include "weft/weft.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { char *dst; const char *src; size_t bytes; } cpy_part;
static void *cpy_main(void *v) {
    cpy_part *p = v;
    memcpy(p->dst, p->src, p->bytes);
    return NULL;
}
/* memcpy in nt parts, one thread each (the caller runs part 0) */
static void par_memcpy(char *dst, const char *src, size_t bytes, int nt) {
    enum { MAXT = 256 };
    pthread_t th[MAXT];
    cpy_part parts[MAXT];
    if (nt > MAXT) nt = MAXT;
    size_t cs = bytes / (size_t)nt;
    for (int i = 0; i < nt; i++)
        parts[i] = (cpy_part){ dst + i * cs, src + i * cs, i == nt - 1 ? bytes - i * cs : cs };
    int started = 1;
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, cpy_main, &parts[started])) break;
    for (int i = started; i < nt; i++) cpy_main(&parts[i]);
    cpy_main(&parts[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    double add_frac[2], add_gb[2], cpy_gb[2];
    const int64_t sizes[2] = { 4 << 20, 64 << 20 };
    for (int si = 0; si < 2; si++) {
        int64_t n = sizes[si];
        size_t bytes = (size_t)n * 4;
        char *src = malloc(bytes), *dst = malloc(bytes);
        memset(src, 1, bytes);
        memset(dst, 0, bytes);
        double best_cpy = 1e9;
        for (int r = 0; r < 10; r++) {
            double t = now();
            par_memcpy(dst, src, bytes, wf_get_num_threads());
            t = now() - t;
            if (t < best_cpy) best_cpy = t;
        }
        cpy_gb[si] = 2.0 * (double)bytes / best_cpy / 1e9;
        wf_tensor *a = wf_randn(&n, 1, WF_F32), *b = wf_randn(&n, 1, WF_F32);
        double best_add = 1e9;
        for (int r = 0; r < 10; r++) {
            wf_scope_begin();
            double t = now();
            wf_tensor *y = wf_add(a, b);
            t = now() - t;
            if (!y) { fprintf(stderr, "%s\n", wf_error_message()); return 1; }
            wf_scope_end();
            if (t < best_add) best_add = t;
        }
        add_gb[si] = 3.0 * (double)bytes / best_add / 1e9;
        add_frac[si] = add_gb[si] / cpy_gb[si];
        wf_tensor_free(a);
        wf_tensor_free(b);
        free(src);
        free(dst);
    }
    /* per-op overhead */
    wf_tensor *p = wf_randn(WF_SHAPE(64), WF_F32), *q = wf_randn(WF_SHAPE(64), WF_F32);
    wf_set_requires_grad(p, true);
    int iters = 200000;
    double t_fwd, t_fb;
    {
        double t = now();
        for (int i = 0; i < iters; i++) { wf_scope_begin(); wf_add(p, q); wf_scope_end(); }
        t_fwd = (now() - t) / iters;
    }
    {
        wf_tensor *g = wf_ones(WF_SHAPE(64), WF_F32);
        double t = now();
        for (int i = 0; i < iters / 4; i++) {
            wf_scope_begin();
            wf_tensor *y = wf_add(p, q);
            wf_backward(y, g, false);
            wf_scope_end();
        }
        t_fb = (now() - t) / (iters / 4);
        wf_tensor_free(g);
    }
    printf("4M: memcpy %.1f GB/s, add %.1f GB/s (%.0f%%); 64M: memcpy %.1f GB/s, add %.1f GB/s (%.0f%%); "
           "add[64] forward %.3f us, forward+backward %.3f us\n", cpy_gb[0], add_gb[0], 100 * add_frac[0],
           cpy_gb[1], add_gb[1], 100 * add_frac[1], 1e6 * t_fwd, 1e6 * t_fb);
    printf("{\"memcpy4m_gbs\":%.2f,\"add4m_gbs\":%.2f,\"add4m_vs_memcpy\":%.3f,\"memcpy64m_gbs\":%.2f,"
           "\"add64m_gbs\":%.2f,\"add64m_vs_memcpy\":%.3f,\"add64_fwd_us\":%.4f,\"add64_fwd_bwd_us\":%.4f}\n",
           cpy_gb[0], add_gb[0], add_frac[0], cpy_gb[1], add_gb[1], add_frac[1], 1e6 * t_fwd, 1e6 * t_fb);
    wf_tensor_free(p); wf_tensor_free(q);
    return 0;
}
