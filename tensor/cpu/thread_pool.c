/* tensor/cpu/thread_pool.c: weft's own thread pool, and wf__parallel_for on it.
 *
 * Why not OpenMP: a fork-join region waits for its slowest thread, so one team thread that
 * the OS has not scheduled yet (a loaded 2-core machine, or a 16-core host with anything else
 * on it) stalls every region; and libgomp reads its spin policy once, in its constructor, so
 * weft cannot tune it (bench/NOTES.md, "Small machines, what is left of issue 12").
 *
 * Here a region's range is cut into chunks that depend on (n, grain) only. The calling thread
 * takes chunks too; helpers claim chunks through atomic words. A helper that wakes after the
 * last chunk was claimed finds nothing and goes back to sleep: the caller waits only for
 * chunks already started, never for a thread that has not started one. At worst the caller
 * runs every chunk itself, at one thread's speed plus the cost of a wake-up.
 *
 * The chunks are dealt into one contiguous block per thread (as OpenMP's static schedule):
 * thread i starts on block i, so from one step to the next the same thread touches the same
 * memory (measured: claiming from one shared counter made the MLP step's Adam update 3x slower
 * on 2 cores, its data moving between the cores' caches every step); a thread whose block is
 * done takes the leftovers of the others, so nobody waits for a late one.
 *
 * Each block's claim word packs (generation, chunks left to claim): a compare-and-swap
 * succeeds only for the region it read, and a chunk it holds keeps that region (and the
 * region's fields, written before the words were published) alive until it reports it done.
 * Helpers spin 20 us (WF_POOL_SPIN_US) after their last chunk, since a training step's loops
 * come back to back (on 2 cores the fast-mode MLP step took 0.47 ms with it, 0.60 without),
 * then sleep on a futex; with no loop running nothing spins longer than that. One region runs at a time: a second thread that
 * calls in meanwhile, and any call from inside a body, runs its loop inline.
 *
 * When the help stops paying region after region (the other cores busy with something else),
 * the caller runs the next regions alone and tries the helpers again later (end of
 * wf__parallel_for).
 *
 * After fork() the child has no helper threads: the child handler forgets them, and the
 * next region starts new ones. */
#define WF_PARALLEL_FOR_FUNCTION   /* the function, also in the minimal preset */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* the embedded preset (-Dminimal=true) stays single-threaded: no helper is ever started */
#if defined(__linux__) && !defined(WEFT_MINIMAL)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define WF_POOL_HAVE_FUTEX 1
#endif

#ifdef WF_POOL_HAVE_FUTEX

#define POOL_MAX 256                        /* threads, caller included */
#define GEN_SHIFT 32                        /* claim words: gen (32 bits) | left to claim (32) */
#define LEFT_MASK 0xffffffffull
#define POOL_UNHELPED_MAX 16                /* regions in a row the help did not pay, before running alone */
#define POOL_ALONE_MIN 16                   /* regions run alone, doubled while helpers stay away */
#define POOL_ALONE_MAX 1024

static struct {
    pthread_mutex_t region_lock;            /* held by the thread whose region runs; also
                                             * guards nhelpers and helpers[] against resizing */
    _Atomic int size;                       /* threads a region may use, caller included */
    int nhelpers;                           /* helper threads running now */
    /* the current region: written by its caller before `claim` is published */
    void (*body)(void *, int64_t, int64_t);
    void *ctx;
    int64_t n, grain, nchunks;
    _Atomic int nblocks;                    /* blocks of this region (a hint before a claim) */
    _Atomic uint32_t done;                  /* chunks finished this region */
    _Atomic int joined;                     /* threads that took a chunk this region */
    _Atomic uint32_t caller_sleeping;
    _Atomic uint32_t wake_seq;              /* bumped per region: helpers sleep on it */
    _Atomic uint32_t sleepers;              /* helpers in (or entering) futex wait */
    _Atomic uint32_t stop;                  /* helpers exit (resize) */
    uint32_t gen;
    long spin_ns;
    /* help that does not pay (end of wf__parallel_for): guarded by region_lock */
    int unhelped;                           /* regions in a row the help did not pay */
    int inline_left, inline_len;            /* regions still to run alone; the next such stretch */
} P = { .region_lock = PTHREAD_MUTEX_INITIALIZER, .size = 1, .spin_ns = 20000, .inline_len = POOL_ALONE_MIN };

/* zero-initialized, so in .bss rather than in every binary's data */
static pthread_t helpers[POOL_MAX];
static struct { _Atomic uint64_t w; char pad[56]; } claim[POOL_MAX];   /* one line per block */

static _Thread_local int tl_worker = 0;     /* this thread's slot in the running region, in
                                             * the order threads took their first chunk */
static _Thread_local bool tl_in_region = false;

static void futex_wait(_Atomic uint32_t *w, uint32_t v) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *w, int n) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Claim and run chunks of the current region until none is left: from block `home` first,
 * then the others' leftovers. A thread takes the next scratch slot (wf__pool_worker) when it
 * claims its first chunk of a region, so slots stay below the number of chunks even when the
 * helpers take them all; by generation: a helper may scan a region twice (when it saw the
 * region's chunks before the wake-up meant for them), and its scan may reach the next region. */
static _Thread_local uint64_t tl_joined_gen = UINT64_MAX;
static int64_t run_chunks(int home) {
    int64_t ran = 0;
    int nb = atomic_load_explicit(&P.nblocks, memory_order_relaxed);
    for (int k = 0; k < nb; k++) {
        int b = (home + k) % nb;
        uint64_t w = atomic_load_explicit(&claim[b].w, memory_order_acquire);
        while (w & LEFT_MASK) {
            if (!atomic_compare_exchange_weak_explicit(&claim[b].w, &w, w - 1, memory_order_acq_rel,
                                                       memory_order_acquire))
                continue;
            /* the chunk is ours, so the region (and its fields) lives until we report it done */
            if ((w >> GEN_SHIFT) != tl_joined_gen) {
                tl_worker = atomic_fetch_add(&P.joined, 1);
                tl_joined_gen = w >> GEN_SHIFT;
            }
            int64_t nchunks = P.nchunks, nbr = atomic_load_explicit(&P.nblocks, memory_order_relaxed);
            int64_t c = (b + 1) * nchunks / nbr - (int64_t)(w & LEFT_MASK);
            int64_t lo = c * P.grain, hi = lo + P.grain < P.n ? lo + P.grain : P.n;
            P.body(P.ctx, lo, hi);
            ran++;
            uint32_t d = atomic_fetch_add(&P.done, 1) + 1;
            if (d == (uint32_t)nchunks && atomic_load(&P.caller_sleeping)) futex_wake(&P.done, 1);
            w = atomic_load_explicit(&claim[b].w, memory_order_acquire);
        }
    }
    return ran;
}

static void *helper_main(void *arg) {
    int home = (int)(intptr_t)arg;
    tl_in_region = true;   /* a body's own parallel loops run inline on helpers */
    uint32_t seen = atomic_load(&P.wake_seq);
    for (;;) {
        if (atomic_load(&P.stop)) return NULL;
        run_chunks(home);
        /* regions of a training step come back to back: stay awake a few microseconds */
        long t0 = now_ns();
        bool woke = false;
        for (int i = 0;; i++) {
            if (atomic_load_explicit(&P.wake_seq, memory_order_acquire) != seen) { woke = true; break; }
            if ((i & 63) == 63 && now_ns() - t0 > P.spin_ns) break;
            cpu_relax();
        }
        if (!woke) {
            atomic_fetch_add(&P.sleepers, 1);
            futex_wait(&P.wake_seq, seen);
            atomic_fetch_sub(&P.sleepers, 1);
        }
        seen = atomic_load(&P.wake_seq);
    }
}

/* region_lock held. Stops every helper (a resize, or the pool's size going to 1). */
static void stop_helpers(void) {
    if (!P.nhelpers) return;
    atomic_store(&P.stop, 1);
    atomic_fetch_add(&P.wake_seq, 1);
    futex_wake(&P.wake_seq, INT32_MAX);
    for (int i = 0; i < P.nhelpers; i++) pthread_join(helpers[i], NULL);
    P.nhelpers = 0;
    atomic_store(&P.stop, 0);
}

/* region_lock held. Starts helpers up to size - 1; a failed pthread_create leaves fewer
 * (regions still complete: the caller runs what nobody claims). */
static void start_helpers(void) {
    while (P.nhelpers < P.size - 1) {
        if (pthread_create(&helpers[P.nhelpers], NULL, helper_main, (void *)(intptr_t)(P.nhelpers + 1)))
            break;
        P.nhelpers++;
    }
}

/* the cores this process may run on, as torch.get_num_threads; OMP_NUM_THREADS first. 1
 * where helpers cannot run (no futex: the minimal preset, non-Linux systems). */
static int default_size(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) >= 1) return atoi(e) > POOL_MAX ? POOL_MAX : atoi(e);
    int n = 1;
#if defined(__linux__)
    cpu_set_t set;
    if (!sched_getaffinity(0, sizeof set, &set)) n = CPU_COUNT(&set);
#endif
    return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : n;
}

static void atfork_child(void) {
    /* the helpers did not come along; whoever forked may have held the lock */
    pthread_mutex_init(&P.region_lock, NULL);
    P.nhelpers = 0;
    atomic_store(&P.sleepers, 0);
    atomic_store(&P.stop, 0);
    for (int b = 0; b < POOL_MAX; b++) atomic_store(&claim[b].w, 0);
    tl_in_region = false;
    tl_worker = 0;
}

/* At exit the helpers are stopped and joined, so a leak checker (valgrind, LeakSanitizer)
 * sees no thread still holding its stack. Only when no region runs: one that is running (an
 * exit from inside a body, or from another thread mid-loop) keeps its helpers. */
static void at_exit_stop(void) {
    if (pthread_mutex_trylock(&P.region_lock)) return;
    stop_helpers();
    pthread_mutex_unlock(&P.region_lock);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void) {
    pthread_atfork(NULL, NULL, atfork_child);
    atexit(at_exit_stop);
    const char *s = getenv("WF_POOL_SPIN_US");   /* A/B runs */
    if (s && atof(s) >= 0) P.spin_ns = (long)(atof(s) * 1000);
    atomic_store(&P.size, default_size());   /* before any region or resize: both call us first */
}

static void run_inline(int64_t n, int64_t grain, void (*body)(void *, int64_t, int64_t), void *ctx) {
    int saved = tl_worker;
    bool saved_in = tl_in_region;
    tl_worker = 0;
    tl_in_region = true;
    for (int64_t lo = 0; lo < n; lo += grain) body(ctx, lo, n - lo < grain ? n : lo + grain);
    tl_worker = saved;
    tl_in_region = saved_in;
}

int wf__parallel_for(int64_t n, int64_t grain, void (*body)(void *ctx, int64_t begin, int64_t end),
                     void *ctx) {
    if (n < 0 || grain < 1 || !body)
        return wf__error(WF_EINVAL, "wf__parallel_for: n = %lld, grain = %lld, body %s: need n >= 0, "
                         "grain >= 1 and a body", (long long)n, (long long)grain, body ? "given" : "NULL");
    if (n == 0) return 0;
    pthread_once(&once, init_once);
    int64_t nchunks = (n - 1) / grain + 1;
    if (nchunks > INT32_MAX) return wf__error(WF_EINVAL, "wf__parallel_for: n = %lld in chunks of %lld "
                                              "makes %lld chunks, more than %d", (long long)n,
                                              (long long)grain, (long long)nchunks, INT32_MAX);
    if (nchunks == 1 || tl_in_region || atomic_load(&P.size) <= 1 ||
        pthread_mutex_trylock(&P.region_lock)) {
        run_inline(n, grain, body, ctx);
        return 0;
    }
    if (P.size <= 1) {   /* resized to 1 between the check and the lock */
        pthread_mutex_unlock(&P.region_lock);
        run_inline(n, grain, body, ctx);
        return 0;
    }
    if (P.inline_left > 0) {   /* the helpers have not been coming: run alone, wake nobody */
        P.inline_left--;
        pthread_mutex_unlock(&P.region_lock);
        run_inline(n, grain, body, ctx);
        return 0;
    }
    if (P.nhelpers < P.size - 1) start_helpers();
    P.body = body;
    P.ctx = ctx;
    P.n = n;
    P.grain = grain;
    P.nchunks = nchunks;
    atomic_store(&P.done, 0);
    atomic_store(&P.caller_sleeping, 0);
    atomic_store(&P.joined, 0);
    P.gen++;
    /* nblocks first: a helper that reads the new count before the new words finds their old
     * values, all 0 left, and claims nothing */
    int nb = P.nhelpers + 1 < nchunks ? P.nhelpers + 1 : (int)nchunks;
    atomic_store_explicit(&P.nblocks, nb, memory_order_relaxed);
    for (int b = 0; b < nb; b++) {
        int64_t first = b * nchunks / nb, end = (b + 1) * nchunks / nb;
        atomic_store_explicit(&claim[b].w, ((uint64_t)P.gen << GEN_SHIFT) | (uint64_t)(end - first),
                              memory_order_release);
    }
    atomic_fetch_add(&P.wake_seq, 1);
    /* spinning helpers see wake_seq move; only sleeping ones need the system call */
    if (atomic_load(&P.sleepers)) futex_wake(&P.wake_seq, P.nhelpers < nchunks - 1 ? P.nhelpers : (int)(nchunks - 1));
    tl_in_region = true;
    long r0 = now_ns();
    int64_t mine = run_chunks(0);
    long r1 = now_ns();
    /* what is left: chunks helpers started; spin briefly, then sleep until the last is done */
    long t0 = 0;
    for (int i = 0; atomic_load(&P.done) != (uint32_t)nchunks; i++) {
        if ((i & 63) == 63) {
            if (!t0) t0 = now_ns();
            else if (now_ns() - t0 > P.spin_ns) {
                atomic_store(&P.caller_sleeping, 1);
                uint32_t d = atomic_load(&P.done);
                if (d == (uint32_t)nchunks) break;
                futex_wait(&P.done, d);
                continue;
            }
        }
        cpu_relax();
    }
    /* Help that does not pay, region after region: the helpers' cores are busy with something
     * else. Measured on a 2-vCPU machine with nothing else of ours running: for a minute at a
     * time only 56 of 2661 regions got a helper, each woken for nothing, and the step was 12 %
     * slower than one thread. A region paid when it took under 0.9 of what the caller alone
     * would have needed (its time per chunk, times every chunk). After POOL_UNHELPED_MAX
     * regions in a row that did not, the next ones run alone, waking nobody; then the helpers
     * are tried again, the stretch doubling while they stay away. The chunks are the same
     * either way, so are the bits. */
    long r2 = now_ns();
    bool paid = mine == 0 || (double)(r2 - r0) * (double)mine < 0.9 * (double)(r1 - r0) * (double)nchunks;
    if (paid) {
        P.unhelped = 0;
        P.inline_len = POOL_ALONE_MIN;
    } else if (++P.unhelped >= POOL_UNHELPED_MAX) {
        P.unhelped = 0;
        P.inline_left = P.inline_len;
        P.inline_len = P.inline_len * 2 < POOL_ALONE_MAX ? P.inline_len * 2 : POOL_ALONE_MAX;
    }
    tl_in_region = false;
    tl_worker = 0;
    pthread_mutex_unlock(&P.region_lock);
    return 0;
}

int wf__pool_worker(void) { return tl_worker; }

bool wf__pool_in_region(void) { return tl_in_region; }

int wf__pool_size(void) {
    pthread_once(&once, init_once);
    return tl_in_region ? 1 : atomic_load(&P.size);
}

int wf__pool_set_size(int n) {
    if (n < 1) return wf__error(WF_EINVAL, "wf_set_num_threads: n = %d must be at least 1", n);
    pthread_once(&once, init_once);
    if (tl_in_region)
        return wf__error(WF_EINVAL, "wf_set_num_threads: called from inside a parallel loop (n = %d)", n);
    if (n > POOL_MAX) n = POOL_MAX;
    pthread_mutex_lock(&P.region_lock);
    if (n != P.size) stop_helpers();
    atomic_store(&P.size, n);
    pthread_mutex_unlock(&P.region_lock);
    return 0;
}

int wf__pool_get_size(void) {
    pthread_once(&once, init_once);
    return atomic_load(&P.size);
}

#else /* no helper threads: the minimal preset, systems without futexes */

static _Thread_local bool tl_in_region = false;

int wf__parallel_for(int64_t n, int64_t grain, void (*body)(void *ctx, int64_t begin, int64_t end),
                     void *ctx) {
    if (n < 0 || grain < 1 || !body)
        return wf__error(WF_EINVAL, "wf__parallel_for: n = %lld, grain = %lld, body %s: need n >= 0, "
                         "grain >= 1 and a body", (long long)n, (long long)grain, body ? "given" : "NULL");
    if ((n - 1) / grain + 1 > INT32_MAX)
        return wf__error(WF_EINVAL, "wf__parallel_for: n = %lld in chunks of %lld makes more than %d chunks",
                         (long long)n, (long long)grain, INT32_MAX);
    bool saved = tl_in_region;
    tl_in_region = true;
    for (int64_t lo = 0; lo < n; lo += grain) body(ctx, lo, n - lo < grain ? n : lo + grain);
    tl_in_region = saved;
    return 0;
}

int wf__pool_worker(void) { return 0; }
bool wf__pool_in_region(void) { return tl_in_region; }
int wf__pool_size(void) { return 1; }
int wf__pool_get_size(void) { return 1; }

int wf__pool_set_size(int n) {
    if (n < 1) return wf__error(WF_EINVAL, "wf_set_num_threads: n = %d must be at least 1", n);
    if (tl_in_region)
        return wf__error(WF_EINVAL, "wf_set_num_threads: called from inside a parallel loop (n = %d)", n);
    return 0;   /* accepted; the size stays 1 */
}

#endif
