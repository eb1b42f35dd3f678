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

#ifdef WEFT_HAVE_OPENBLAS
#include <cblas.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void) {
#ifdef WEFT_HAVE_OPENBLAS
    openblas_set_num_threads(1);   /* its own pool would compete with weft's for the cores */
#endif
}

/* A slice of a BLAS product should be worth at least this many multiply-adds (a smaller one
 * costs more in packing B again and in waking a helper than it saves), and a product is cut
 * into at most GEMM_MAX_SLICES: the cut depends on the sizes only, never on the pool. */
#define GEMM_SLICE_MACS (1 << 19)
#define GEMM_MAX_SLICES 16

int wf__gemm_slices(double macs) {
    pthread_once(&once, init_once);
    if (wf__pool_in_region()) return 1;
    double s = macs / GEMM_SLICE_MACS;
    return s < 1 ? 1 : s > GEMM_MAX_SLICES ? GEMM_MAX_SLICES : (int)s;
}

int wf_set_num_threads(int n) {
    pthread_once(&once, init_once);
    return wf__pool_set_size(n);
}

int wf_get_num_threads(void) {
    pthread_once(&once, init_once);
    return wf__pool_get_size();
}
