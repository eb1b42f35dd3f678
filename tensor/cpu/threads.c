/* tensor/cpu/threads.c: one threading model for the CPU.
 *
 * weft's loops run on one OpenMP team, and so do its GEMMs: OpenBLAS is told to run
 * single-threaded and each large product is split across the team (gemm.c), one BLAS call
 * per thread on its slice. Two pools on the same cores (OpenBLAS's pthreads and the OpenMP
 * team, each spinning while the other works) made a 2-core MLP step six times slower than
 * one thread (bench/NOTES.md, "Small machines: threads"). With one team, a thread that spins
 * waits for its own team's next region, on a core nobody else wants.
 *
 * The team's size: wf_set_num_threads, else OMP_NUM_THREADS, else the cores this process may
 * run on (as torch.get_num_threads). WF_GEMM_THREADING=blas restores OpenBLAS's own threads
 * (for A/B measurements only). */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef WEFT_HAVE_OPENBLAS
#include <cblas.h>
#endif
#ifdef WEFT_HAVE_OPENMP
#include <omp.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool blas_own_threads;

static void init_once(void) {
    const char *e = getenv("WF_GEMM_THREADING");
    blas_own_threads = e && !strcmp(e, "blas");
#ifdef WEFT_HAVE_OPENBLAS
    if (!blas_own_threads) openblas_set_num_threads(1);
#endif
}

bool wf__gemm_team_split(void) {
    pthread_once(&once, init_once);
    return !blas_own_threads;
}

int wf_set_num_threads(int n) {
    if (n < 1) return wf__error(WF_EINVAL, "wf_set_num_threads: n = %d must be at least 1", n);
    pthread_once(&once, init_once);
#ifdef WEFT_HAVE_OPENMP
    omp_set_num_threads(n);
#endif
#ifdef WEFT_HAVE_OPENBLAS
    if (blas_own_threads) openblas_set_num_threads(n);
#endif
    return 0;
}

int wf_get_num_threads(void) {
#ifdef WEFT_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
