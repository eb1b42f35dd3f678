/* tensor/alloc.c: the host caching allocator and the pluggable system allocator.
 *
 * Tensor storage is rounded up to a size class (powers of two, with 4 sub-steps between
 * them) and freed blocks are kept per class, so a training loop that makes the same
 * tensors every step stops calling the system allocator after the first step.
 *
 * Blocks over HOST_CACHE_MAX_BLOCK go back to the system when freed: such a block is a
 * dataset, a whole-dataset copy or an evaluation batch's workspace far more often than a
 * tensor remade every step, and kept in the cache it stays resident for the rest of the
 * process (a freed 47 MB Fashion-MNIST train split held 45 MiB through the test pass,
 * bench/NOTES.md). Paying the page faults again when one comes back costs less than that. */
#include "tensor_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HOST_CACHE_MAX_BLOCK ((size_t)32 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

/* Blocks over HOST_CACHE_MAX_BLOCK are fresh memory every time (the cache does not keep
 * them), and at 4 KiB pages their first touch costs: a 47 MB Fashion-MNIST split is 11 500
 * page faults, about 25 ms, 15 % of inflating it from its .gz file (bench/NOTES.md). The
 * system allocator aligns them to 2 MiB and advise_huge asks for transparent huge pages,
 * which the kernel gives where it offers them (THP "always" or "madvise"): 250 faults, 22
 * of them for huge pages and the rest for the tail of under 2 MiB.
 * The advice is only a hint: where it is refused (THP "never" or absent, another OS) the
 * block is the same memory at 4 KiB pages. Such sizes are above glibc's largest mmap
 * threshold, so each block is a mapping of its own that free() unmaps: the advice never
 * spreads to the small-object heap. A user's allocator gets no advice (its memory, its
 * choice of pages). */
static void *sys_alloc(void *ud, size_t size) {
    (void)ud;
    void *p = NULL;
    if (posix_memalign(&p, size > HOST_CACHE_MAX_BLOCK ? HUGE_PAGE : 64, size ? size : 64)) return NULL;
    return p;
}

/* used: the bytes the caller asked for, not the size class: only whole huge pages of them
 * are advised, since a huge page is resident as a whole once touched, and the class's
 * unused tail (up to a quarter of the block) would otherwise be too (a 47 MB split in its
 * 48 MiB class: 1.1 MiB more peak memory). */
static void advise_huge(void *p, size_t used) {
#ifdef MADV_HUGEPAGE
    size_t whole = used & ~(HUGE_PAGE - 1);
    if (used > HOST_CACHE_MAX_BLOCK && (uintptr_t)p % HUGE_PAGE == 0) (void)madvise(p, whole, MADV_HUGEPAGE);
#else
    (void)p;
    (void)used;
#endif
}
static void sys_free(void *ud, void *p, size_t size) { (void)ud; (void)size; free(p); }

static wf_allocator g_alloc = { sys_alloc, sys_free, NULL };
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_memory_stats g_stats;
static bool g_used;

#define N_CLASSES 256
typedef struct block { struct block *next; } block;
static block *g_free[N_CLASSES];

/* Bookkeeping allocations (handles, storage headers, graph nodes, scopes) go through the
 * user's allocator too, behind a 64-byte header that records the size and the allocator
 * that made the block (wf_allocator passes sizes, like Lua's). Small blocks are recycled
 * through a per-thread cache: a tensor op makes several of them, and a lock or a trip to
 * the system allocator for each would cost more than the op itself. A thread's cache is
 * returned to the allocator when the thread ends (and the main thread's at exit). */
typedef struct {
    size_t n;                                   /* usable bytes asked for */
    void (*free)(void *ud, void *p, size_t size);
    void *ud;
    int cls;                                    /* thread-cache class, or -1 */
    char pad[64 - sizeof(size_t) - 2 * sizeof(void *) - sizeof(int)];
} hdr;
_Static_assert(sizeof(hdr) == 64, "header keeps 64-byte alignment");

#define TL_CLASSES 6            /* 128, 256, ..., 4096 bytes including the header */
#define TL_MAX 128              /* blocks kept per class per thread */
typedef struct { block *head[TL_CLASSES]; int count[TL_CLASSES]; } tl_cache;
static _Thread_local tl_cache t_cache;
static _Thread_local bool t_hooked;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static size_t tl_size(int c) { return (size_t)128 << c; }
static int tl_class(size_t total) {
    for (int c = 0; c < TL_CLASSES; c++) if (total <= tl_size(c)) return c;
    return -1;
}

static void tl_flush(tl_cache *tc) {
    for (int c = 0; c < TL_CLASSES; c++) {
        while (tc->head[c]) {
            hdr *h = (hdr *)tc->head[c];
            tc->head[c] = tc->head[c]->next;
            h->free(h->ud, h, tl_size(c));
        }
        tc->count[c] = 0;
    }
}
static void tl_thread_exit(void *arg) { tl_flush(arg); }
static void tl_process_exit(void) { tl_flush(&t_cache); }
static void tl_key_init(void) {
    pthread_key_create(&g_key, tl_thread_exit);
    atexit(tl_process_exit);
}


/* size class: sizes up to 512 share class 0..; above, 4 steps per power of two */
static int size_class(size_t n, size_t *rounded) {
    if (n <= 512) { *rounded = 512; return 0; }
    int lg = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^lg < n <= 2^(lg+1) */
    size_t base = (size_t)1 << lg, step = base / 4;
    size_t k = (n - base + step - 1) / step;                  /* 1..4 */
    *rounded = base + k * step;
    int c = 1 + (lg - 9) * 4 + (int)(k - 1);
    return c < N_CLASSES ? c : -1;
}

int wf_set_allocator(const wf_allocator *a) {
    pthread_mutex_lock(&g_lock);
    if (g_used && g_stats.allocated) {
        pthread_mutex_unlock(&g_lock);
        return wf__error(WF_ESTATE, "wf_set_allocator: tensors are alive; set the allocator first");
    }
    pthread_mutex_unlock(&g_lock);
    wf_empty_cache();
    pthread_mutex_lock(&g_lock);
    if (a && a->alloc && a->free) g_alloc = *a;
    else g_alloc = (wf_allocator){ sys_alloc, sys_free, NULL };
    pthread_mutex_unlock(&g_lock);
    return 0;
}

void *wf__host_alloc(size_t nbytes) {
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    pthread_mutex_lock(&g_lock);
    g_used = true;
    void *p = NULL;
    bool fresh_sys = false;
    if (c >= 0 && g_free[c]) {
        p = g_free[c];
        g_free[c] = g_free[c]->next;
    } else {
        if (c < 0) rounded = nbytes;
        p = g_alloc.alloc(g_alloc.ud, rounded);
        fresh_sys = g_alloc.alloc == sys_alloc;
        if (p) { g_stats.reserved += rounded; g_stats.n_system_allocs++; }
    }
    if (p) {
        g_stats.allocated += rounded;
        if (g_stats.allocated > g_stats.peak_allocated) g_stats.peak_allocated = g_stats.allocated;
    }
    pthread_mutex_unlock(&g_lock);
    if (p && fresh_sys) advise_huge(p, nbytes);
    return p;
}

void wf__host_reset_peak_memory(void) {
    pthread_mutex_lock(&g_lock);
    g_stats.peak_allocated = g_stats.allocated;
    pthread_mutex_unlock(&g_lock);
}

void wf__host_free(void *p, size_t nbytes) {
    if (!p) return;
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    pthread_mutex_lock(&g_lock);
    if (c < 0) {
        g_stats.allocated -= nbytes;
        g_stats.reserved -= nbytes;
        g_alloc.free(g_alloc.ud, p, nbytes);
    } else if (rounded > HOST_CACHE_MAX_BLOCK) {
        g_stats.allocated -= rounded;
        g_stats.reserved -= rounded;
        g_alloc.free(g_alloc.ud, p, rounded);
    } else {
        g_stats.allocated -= rounded;
        block *b = p;
        b->next = g_free[c];
        g_free[c] = b;
    }
    pthread_mutex_unlock(&g_lock);
}

void wf_empty_cache(void) {
    tl_flush(&t_cache);   /* this thread's small bookkeeping blocks */
    pthread_mutex_lock(&g_lock);
    for (int c = 0; c < N_CLASSES; c++) {
        size_t sz;
        if (c == 0) sz = 512;
        else {
            int lg = 9 + (c - 1) / 4;
            if (lg >= 62) break;   /* no size class beyond 2^62 can be cached */
            size_t base = (size_t)1 << lg;
            sz = base + (size_t)((c - 1) % 4 + 1) * (base / 4);
        }
        while (g_free[c]) {
            block *b = g_free[c];
            g_free[c] = b->next;
            g_alloc.free(g_alloc.ud, b, sz);
            g_stats.reserved -= sz;
        }
    }
    pthread_mutex_unlock(&g_lock);
}

void wf_memory_stats_get(wf_memory_stats *out) {
    if (!out) { wf__error(WF_ENULL, "wf_memory_stats_get: NULL output pointer"); return; }
    pthread_mutex_lock(&g_lock);
    *out = g_stats;
    pthread_mutex_unlock(&g_lock);
}

void *wf__malloc(size_t n) {
    if (n > SIZE_MAX - sizeof(hdr)) return NULL;
    int c = tl_class(n + sizeof(hdr));
    if (c >= 0) {
        while (t_cache.head[c]) {
            hdr *h = (hdr *)t_cache.head[c];
            t_cache.head[c] = t_cache.head[c]->next;
            t_cache.count[c]--;
            if (h->free == g_alloc.free && h->ud == g_alloc.ud) {   /* still the current allocator */
                h->n = n;
                return h + 1;
            }
            h->free(h->ud, h, tl_size(c));
        }
    }
    size_t total = c >= 0 ? tl_size(c) : n + sizeof(hdr);
    hdr *h = g_alloc.alloc(g_alloc.ud, total);
    if (!h) return NULL;
    if (g_alloc.alloc == sys_alloc) advise_huge(h, total);
    h->n = n;
    h->free = g_alloc.free;
    h->ud = g_alloc.ud;
    h->cls = c;
    return h + 1;
}
void wf__free(void *p, size_t n) {
    (void)n;
    if (!p) return;
    hdr *h = (hdr *)p - 1;
    int c = h->cls;
    if (c >= 0 && t_cache.count[c] < TL_MAX) {
        if (!t_hooked) {   /* first block kept by this thread: arrange the flush at its end */
            pthread_once(&g_key_once, tl_key_init);
            pthread_setspecific(g_key, &t_cache);
            t_hooked = true;
        }
        block *b = (block *)h;
        b->next = t_cache.head[c];
        t_cache.head[c] = b;
        t_cache.count[c]++;
        return;
    }
    h->free(h->ud, h, c >= 0 ? tl_size(c) : h->n + sizeof(hdr));
}
void *wf__calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = wf__malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}
void *wf__realloc(void *p, size_t old, size_t n) {
    void *q = wf__malloc(n);
    if (!q) return NULL;
    if (p) {
        memcpy(q, p, old < n ? old : n);
        wf__free(p, old);
    }
    return q;
}
char *wf__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = wf__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

#ifdef WEFT_MINIMAL
/* The memory census's refusals in the minimal preset (tensor/census.c is left out for its
 * size): compiled here rather than as an object of their own, whose ELF headers alone cost
 * the 1 MB budget some 1.5 KB. */
#include "census_stub.c"
#endif
