/* tensor/cpu/threads.c: one threading model for the CPU.
 *
 * Every CPU loop of weft, and every GEMM, runs on weft's own pool (thread_pool.c) through
 * wf__parallel_for: the range is cut into chunks fixed by its size, the calling thread takes
 * chunks too, and a helper that wakes late finds nothing left, so a busy or preempted thread
 * never stalls a loop (OpenMP's fork-join regions did: bench/NOTES.md, "Small machines, what
 * is left of issue 12"). OpenBLAS runs single-threaded: a large product is cut into slices of
 * C (gemm.c), one BLAS call per slice, the slices run on the pool. Nothing else spins on the
 * cores, and results do not depend on the thread count (chunks, slices and the order in which
 * partial sums are combined depend on the sizes only).
 *
 * The pool's size: wf_set_num_threads, else OMP_NUM_THREADS (as PyTorch honours it), else the
 * cores this process may run on (as torch.get_num_threads). */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

#ifdef WEFT_HAVE_OPENBLAS
#include <cblas.h>
/* OpenBLAS's pthreads build: stops its server threads (its own fork and exit handlers call
 * it). Started when the library loads, they spin ~0.1 s with sched_yield before they sleep
 * (seen with perf on 2 cores, beside weft's threads); weft never uses them. Weak: absent from
 * OpenBLAS's OpenMP and serial builds, where there is nothing to stop. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

/* A slice of a BLAS product should be worth at least this many multiply-adds (a smaller one
 * costs more in waking a helper than it saves), at least min_side rows (or columns) of C
 * wide: each slice packs the whole other operand again (a row slice all of B, a column slice
 * all of A), so with 32 of them the conv backward's weight gradient (32 x 288 of C, k = 50K)
 * spent more time packing A than multiplying. At most max_slices. The cut depends on the
 * sizes only, never on the pool. */
static double slice_macs = 1 << 19;
static int max_slices = 16, min_side = 64;

static void init_once(void) {
    const char *e = getenv("WF_GEMM_SLICE_MACS");   /* A/B runs */
    if (e && atof(e) >= 1) slice_macs = atof(e);
    e = getenv("WF_GEMM_MAX_SLICES");
    if (e && atoi(e) >= 1) max_slices = atoi(e);
    e = getenv("WF_GEMM_MIN_SIDE");
    if (e && atoi(e) >= 1) min_side = atoi(e);
    openblas_set_num_threads(1);   /* its own pool would compete with weft's for the cores */
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

int wf__gemm_slices(double macs, int64_t side) {
    pthread_once(&once, init_once);
    if (wf__pool_in_region()) return 1;
    double s = macs / slice_macs;
    if (s > (double)side / min_side) s = (double)side / min_side;
    return s < 1 ? 1 : s > max_slices ? max_slices : (int)s;
}
#else
static void init_once(void) {}
#endif

int wf_set_num_threads(int n) {
    pthread_once(&once, init_once);
    return wf__pool_set_size(n);
}

int wf_get_num_threads(void) {
    pthread_once(&once, init_once);
    return wf__pool_get_size();
}
