/* tensor/alloc.c: the host caching allocator and the pluggable system allocator.
 *
 * Tensor storage is rounded up to a size class (powers of two, with 4 sub-steps between
 * them) and freed blocks are kept per class, so a training loop that makes the same
 * tensors every step stops calling the system allocator after the first step. */
#include "tensor_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *sys_alloc(void *ud, size_t size) {
    (void)ud;
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64)) return NULL;
    return p;
}
static void sys_free(void *ud, void *p, size_t size) { (void)ud; (void)size; free(p); }

static wf_allocator g_alloc = { sys_alloc, sys_free, NULL };
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_memory_stats g_stats;
static bool g_used;

#define N_CLASSES 256
typedef struct block { struct block *next; } block;
static block *g_free[N_CLASSES];

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
    if (c >= 0 && g_free[c]) {
        p = g_free[c];
        g_free[c] = g_free[c]->next;
    } else {
        if (c < 0) rounded = nbytes;
        p = g_alloc.alloc(g_alloc.ud, rounded);
        if (p) { g_stats.reserved += rounded; g_stats.n_system_allocs++; }
    }
    if (p) {
        g_stats.allocated += rounded;
        if (g_stats.allocated > g_stats.peak_allocated) g_stats.peak_allocated = g_stats.allocated;
    }
    pthread_mutex_unlock(&g_lock);
    return p;
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
    } else {
        g_stats.allocated -= rounded;
        block *b = p;
        b->next = g_free[c];
        g_free[c] = b;
    }
    pthread_mutex_unlock(&g_lock);
}

void wf_empty_cache(void) {
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
    pthread_mutex_lock(&g_lock);
    *out = g_stats;
    pthread_mutex_unlock(&g_lock);
}

/* Bookkeeping allocations go through the user's allocator too, with a size header so
 * that free knows the size (the wf_allocator interface passes sizes, like Lua's). */
typedef struct { size_t n; size_t pad[7]; } hdr;  /* 64 bytes keeps alignment */

void *wf__malloc(size_t n) {
    hdr *h = g_alloc.alloc(g_alloc.ud, n + sizeof(hdr));
    if (!h) return NULL;
    h->n = n;
    return h + 1;
}
void *wf__calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = wf__malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}
void wf__free(void *p, size_t n) {
    (void)n;
    if (!p) return;
    hdr *h = (hdr *)p - 1;
    g_alloc.free(g_alloc.ud, h, h->n + sizeof(hdr));
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
