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
/* A thread joins a GEMM for every this many multiply-adds (a smaller product runs on fewer
 * threads: splitting it further costs more in packing and waking than it saves). */
static double macs_per_thread = 1 << 18;
/* A/B runs: WF_PAR_GRAIN_SCALE scales the grain of wf__par_threads */
static double grain_scale = 1;

static void init_once(void) {
    const char *e = getenv("WF_GEMM_THREADING");
    blas_own_threads = e && !strcmp(e, "blas");
    const char *m = getenv("WF_GEMM_MACS_PER_THREAD");   /* A/B runs */
    if (m && atof(m) >= 1) macs_per_thread = atof(m);
    const char *g = getenv("WF_PAR_GRAIN_SCALE");        /* A/B runs: 0.001 = every thread */
    if (g && atof(g) > 0) grain_scale = atof(g);
#ifdef WEFT_HAVE_OPENBLAS
    if (!blas_own_threads) openblas_set_num_threads(1);
#endif
}

int wf__gemm_threads(double macs) {
    pthread_once(&once, init_once);
    if (blas_own_threads) return 1;
    int nt = 1;
#ifdef WEFT_HAVE_OPENMP
    if (!omp_in_parallel()) nt = omp_get_max_threads();
#endif
    double cap = macs / macs_per_thread;
    if (cap < nt) nt = cap < 1 ? 1 : (int)cap;
    return nt;
}

/* A parallel region wakes every thread of the team and waits for the last one, so its cost
 * grows with the team: on the 16-core host a 16-thread region for a 200K-element Adam step
 * cost 0.31 ms against 0.07 ms on 6 threads (bench/NOTES.md, "threads on 16 cores"), and
 * one thread preempted by anything else on the machine stalls the whole region. So a region
 * takes one thread per `grain` units of work, up to the team's size. */
int wf__par_threads(int64_t work, int64_t grain) {
    pthread_once(&once, init_once);
    int nt = 1;
#ifdef WEFT_HAVE_OPENMP
    if (!omp_in_parallel()) nt = omp_get_max_threads();
#endif
    double cap = (double)work / ((double)grain * grain_scale);
    if (cap < nt) nt = cap < 1 ? 1 : (int)cap;
    return nt;
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
