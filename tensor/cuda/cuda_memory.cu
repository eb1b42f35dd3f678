/* tensor/cuda/cuda_memory.cu: device memory and copies, the CUDA twin of tensor/cpu/cpu_memory.c:
 * the caching allocator (size classes, per-device free lists, memory stats, empty_cache) and
 * host <-> device copies through two pinned staging buffers per device.
 *
 * One non-blocking stream per device carries all of weft's work on it (cuda_device.cu), so the
 * allocator is stream-ordered without events: a block freed on the host may be handed out
 * again at once, because any kernel that still uses it was queued before every kernel of the
 * next owner.
 *
 * CUDA graphs: while a graph is captured on a device (cuda_graph.cu), its allocations come
 * from the graph's private pool (wfc_pool, below), with the size classes of the cache. The
 * graph replays kernels at the addresses of the capture, so those blocks must never reach
 * eager code: a block of a pool, freed at any time, goes back to that pool. */
#include "cuda_device.cuh"

#include <stdlib.h>
#include <string.h>


/* ---------------------------------------------------------------- caching allocator */

static int size_class(size_t n, size_t *rounded) {
    if (n <= 512) { *rounded = 512; return 0; }
    int lg = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^lg < n <= 2^(lg+1) */
    size_t base = (size_t)1 << lg, step = base / 4;
    size_t k = (n - base + step - 1) / step;                   /* 1..4 */
    *rounded = base + k * step;
    int c = 1 + (lg - 9) * 4 + (int)(k - 1);
    if (c >= N_CLASSES) { *rounded = n; return -1; }
    return c;
}
static size_t class_size(int c) {
    if (c == 0) return 512;
    int lg = 9 + (c - 1) / 4;
    size_t base = (size_t)1 << lg;
    return base + (size_t)((c - 1) % 4 + 1) * (base / 4);
}

/* free every cached block of s (lock held); cudaFree synchronizes the device */
static void release_cache(dev_state *s) {
    for (int c = 0; c < N_CLASSES; c++) {
        free_list *fl = &s->cache[c];
        size_t sz = class_size(c);
        while (fl->n > 0) {
            cudaFree(fl->p[--fl->n]);
            s->stats.reserved -= sz;
        }
    }
    cudaGetLastError();
}


/* ---------------------------------------------------------------- graph pools */

struct wfc_pool {
    int dev;
    free_list cache[N_CLASSES];
    /* every block of the pool, free or not: open addressing, ptr -> rounded size */
    void **keys;
    size_t *sizes;
    size_t cap, n;
    void **big; size_t *big_size; int n_big, cap_big;   /* free blocks above the classes */
    size_t live;                 /* blocks handed out and not freed */
    bool released;               /* the graph is gone: free everything once live == 0 */
    wf_memory_stats stats;       /* the pool's own counters (also counted in the device's) */
    wfc_pool *next;
};

static size_t ptr_hash(const void *p, size_t cap) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return (size_t)x & (cap - 1);
}
static bool pool_find(const wfc_pool *pl, const void *p, size_t *size) {
    if (!pl->cap) return false;
    for (size_t i = ptr_hash(p, pl->cap);; i = (i + 1) & (pl->cap - 1)) {
        if (!pl->keys[i]) return false;
        if (pl->keys[i] == p) { if (size) *size = pl->sizes[i]; return true; }
    }
}
static bool pool_insert(wfc_pool *pl, void *p, size_t size) {
    if (2 * (pl->n + 1) > pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 64;
        void **nk = (void **)calloc(nc, sizeof *nk);
        size_t *ns = (size_t *)calloc(nc, sizeof *ns);
        if (!nk || !ns) { free(nk); free(ns); return false; }
        for (size_t i = 0; i < pl->cap; i++) {
            if (!pl->keys[i]) continue;
            size_t j = ptr_hash(pl->keys[i], nc);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = pl->keys[i], ns[j] = pl->sizes[i];
        }
        free(pl->keys), free(pl->sizes);
        pl->keys = nk, pl->sizes = ns, pl->cap = nc;
    }
    size_t j = ptr_hash(p, pl->cap);
    while (pl->keys[j]) j = (j + 1) & (pl->cap - 1);
    pl->keys[j] = p, pl->sizes[j] = size, pl->n++;
    return true;
}
static bool list_push(free_list *fl, void *p) {
    if (fl->n == fl->cap) {
        int nc = fl->cap ? fl->cap * 2 : 16;
        void **np = (void **)realloc(fl->p, (size_t)nc * sizeof(void *));
        if (!np) return false;
        fl->p = np, fl->cap = nc;
    }
    fl->p[fl->n++] = p;
    return true;
}

wfc_pool *wfc_pool_new(int dev) {
    wfc_pool *pl = (wfc_pool *)calloc(1, sizeof *pl);
    if (!pl) { wfc_error(WF_ENOMEM, "cuda graph: out of host memory for a memory pool"); return NULL; }
    pl->dev = dev;
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&s->lock);
    pl->next = s->pools;
    s->pools = pl;
    pthread_mutex_unlock(&s->lock);
    return pl;
}

/* give every block back to the driver and forget the pool (lock held, live == 0) */
static void pool_destroy(dev_state *s, wfc_pool *pl) {
    for (wfc_pool **q = &s->pools; *q; q = &(*q)->next)
        if (*q == pl) { *q = pl->next; break; }
    cudaSetDevice(pl->dev);
    for (size_t i = 0; i < pl->cap; i++)
        if (pl->keys[i]) { cudaFree(pl->keys[i]); s->stats.reserved -= pl->sizes[i]; }
    cudaGetLastError();
    for (int c = 0; c < N_CLASSES; c++) free(pl->cache[c].p);
    free(pl->keys), free(pl->sizes), free(pl->big), free(pl->big_size);
    free(pl);
}

void wfc_pool_release(wfc_pool *pl) {
    if (!pl) return;
    dev_state *s = &wfc_dev[pl->dev];
    pthread_mutex_lock(&s->lock);
    if (s->capture_pool == pl) s->capture_pool = NULL;
    pl->released = true;
    if (!pl->live) pool_destroy(s, pl);
    pthread_mutex_unlock(&s->lock);
}

void wfc_pool_stats(const wfc_pool *pl, wf_memory_stats *out) {
    dev_state *s = &wfc_dev[pl->dev];
    pthread_mutex_lock(&s->lock);
    *out = pl->stats;
    pthread_mutex_unlock(&s->lock);
}

/* a block of the pool (lock held); NULL + error. cudaMalloc is not a stream operation, so a
 * capture does not see it; the thread-local capture mode would refuse it as unsafe, hence
 * the relaxed mode around it (as PyTorch's allocator does): safe here because the pool keeps
 * the block for as long as the graph may replay. */
static void *pool_alloc(dev_state *s, wfc_pool *pl, int dev, size_t nbytes, int c, size_t rounded) {
    void *p = NULL;
    if (c >= 0 && pl->cache[c].n > 0) p = pl->cache[c].p[--pl->cache[c].n];
    if (!p && c < 0)
        for (int i = 0; i < pl->n_big; i++)
            if (pl->big_size[i] >= rounded && pl->big_size[i] <= rounded + rounded / 8) {
                p = pl->big[i], rounded = pl->big_size[i];
                pl->big[i] = pl->big[pl->n_big - 1], pl->big_size[i] = pl->big_size[pl->n_big - 1], pl->n_big--;
                break;
            }
    if (!p) {
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&mode);
        cudaError_t e = cudaMalloc(&p, rounded);
        cudaThreadExchangeStreamCaptureMode(&mode);
        if (e != cudaSuccess) {
            cudaGetLastError();
            wfc_error(e == cudaErrorMemoryAllocation ? WF_ENOMEM : WF_EDEVICEFAIL,
                      "CUDA graph pool on cuda:%d: cudaMalloc of %zu bytes (%zu rounded) failed: %s (the pool "
                      "holds %zu bytes; the device cache is not emptied during a capture)",
                      dev, nbytes, rounded, cudaGetErrorString(e), pl->stats.reserved);
            return NULL;
        }
        if (!pool_insert(pl, p, rounded)) {
            cudaFree(p);
            cudaGetLastError();
            wfc_error(WF_ENOMEM, "CUDA graph pool on cuda:%d: out of host memory to track a block", dev);
            return NULL;
        }
        s->stats.reserved += rounded, s->stats.n_system_allocs++;
        pl->stats.reserved += rounded, pl->stats.n_system_allocs++;
    } else if (c >= 0) {
        rounded = class_size(c);
    }
    pl->live++;
    pl->stats.allocated += rounded;
    if (pl->stats.allocated > pl->stats.peak_allocated) pl->stats.peak_allocated = pl->stats.allocated;
    s->stats.allocated += rounded;
    if (s->stats.allocated > s->stats.peak_allocated) s->stats.peak_allocated = s->stats.allocated;
    return p;
}

/* p back to the pool that owns it (lock held); false when no pool owns p */
static bool pool_free(dev_state *s, void *p) {
    for (wfc_pool *pl = s->pools; pl; pl = pl->next) {
        size_t size;
        if (!pool_find(pl, p, &size)) continue;
        size_t r;
        int c = size_class(size, &r);
        bool kept = c >= 0 && r == size ? list_push(&pl->cache[c], p) : false;
        if (!kept && c < 0) {
            if (pl->n_big == pl->cap_big) {
                int nc = pl->cap_big ? 2 * pl->cap_big : 8;
                void **nb = (void **)realloc(pl->big, (size_t)nc * sizeof *nb);
                if (nb) pl->big = nb;
                size_t *ns = nb ? (size_t *)realloc(pl->big_size, (size_t)nc * sizeof *ns) : NULL;
                if (ns) pl->big_size = ns, pl->cap_big = nc;
            }
            if (pl->n_big < pl->cap_big) pl->big[pl->n_big] = p, pl->big_size[pl->n_big++] = size, kept = true;
        }
        /* a block that cannot be listed again stays owned (and unused) until the pool goes */
        pl->live--;
        pl->stats.allocated -= size;
        s->stats.allocated -= size;
        if (pl->released && !pl->live) pool_destroy(s, pl);
        return true;
    }
    return false;
}

extern "C" void *wf__cuda_alloc(int dev, size_t nbytes) {
    if (wfc_begin(dev, "cuda alloc", NULL)) return NULL;
    dev_state *s = &wfc_dev[dev];
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    void *p = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->capture_pool) {
        p = pool_alloc(s, s->capture_pool, dev, nbytes, c, rounded);
        pthread_mutex_unlock(&s->lock);
        if (!p) wfc_capture_note(dev, wf_error(), wf_error_message());
        return p;
    }
    if (c >= 0 && s->cache[c].n > 0) p = s->cache[c].p[--s->cache[c].n];
    else {
        cudaError_t e = cudaMalloc(&p, rounded);
        if (e != cudaSuccess) {
            cudaGetLastError();         /* out of memory is not sticky: clear it */
            release_cache(s);
            p = NULL;
            e = cudaMalloc(&p, rounded);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t fr = 0, tot = 0;
            cudaMemGetInfo(&fr, &tot);
            cudaGetLastError();
            wf_memory_stats st = s->stats;
            pthread_mutex_unlock(&s->lock);
            if (e == cudaErrorMemoryAllocation)
                wfc_error(WF_ENOMEM, "CUDA out of memory on cuda:%d: tried to allocate %zu bytes (%zu rounded); "
                          "weft holds %zu bytes in tensors and %zu reserved; the device has %zu of %zu bytes free",
                          dev, nbytes, rounded, st.allocated, st.reserved, fr, tot);
            else
                wfc_report(e, "cudaMalloc", dev);
            return NULL;
        }
        s->stats.reserved += rounded;
        s->stats.n_system_allocs++;
    }
    s->stats.allocated += rounded;
    if (s->stats.allocated > s->stats.peak_allocated) s->stats.peak_allocated = s->stats.allocated;
    pthread_mutex_unlock(&s->lock);
    return p;
}

extern "C" void wf__cuda_free(int dev, void *p, size_t nbytes) {
    if (!p || dev < 0 || dev >= MAX_DEVICES || !wfc_dev[dev].ready) return;
    dev_state *s = &wfc_dev[dev];
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    pthread_mutex_lock(&s->lock);
    if (s->pools && pool_free(s, p)) { pthread_mutex_unlock(&s->lock); return; }
    s->stats.allocated -= rounded;
    if (c < 0) {
        cudaSetDevice(dev);
        cudaFree(p);
        cudaGetLastError();
        s->stats.reserved -= rounded;
    } else {
        free_list *fl = &s->cache[c];
        if (fl->n == fl->cap) {
            int nc = fl->cap ? fl->cap * 2 : 16;
            void **np = (void **)realloc(fl->p, (size_t)nc * sizeof(void *));
            if (!np) { /* cannot remember it: give it back */
                cudaSetDevice(dev);
                cudaFree(p);
                cudaGetLastError();
                s->stats.reserved -= rounded;
                pthread_mutex_unlock(&s->lock);
                return;
            }
            fl->p = np;
            fl->cap = nc;
        }
        fl->p[fl->n++] = p;
    }
    pthread_mutex_unlock(&s->lock);
}

extern "C" int wf__cuda_memory_stats(int dev, wf_memory_stats *out) {
    memset(out, 0, sizeof *out);
    int rc = wfc_check_index(dev, "wf_cuda_memory_stats");
    if (rc) return rc;
    dev_state *s = &wfc_dev[dev];
    if (!s->ready) return 0;
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

extern "C" void wf__cuda_empty_cache(void) {
    int n = wf__cuda_count();
    for (int d = 0; d < n; d++) {
        dev_state *s = &wfc_dev[d];
        if (!s->ready) continue;
        /* cudaFree during a capture would invalidate it: the capture fails, naming this */
        if (s->capture) { wfc_refuse_in_capture(d, "wf_cuda_empty_cache (cudaFree)"); continue; }
        cudaSetDevice(d);
        pthread_mutex_lock(&s->lock);
        release_cache(s);
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---------------------------------------------------------------- host <-> device */

static int stage_ready(dev_state *s, int dev) {
    if (s->stage[0]) return 0;
    for (int i = 0; i < 2; i++) {
        cudaError_t e = cudaMallocHost(&s->stage[i], STAGE_BYTES);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->stage_ev[i], cudaEventDisableTiming);
        if (e != cudaSuccess) {
            cudaGetLastError();
            if (s->stage[0]) cudaFreeHost(s->stage[0]);
            if (i == 1 && s->stage[1]) cudaFreeHost(s->stage[1]);
            s->stage[0] = s->stage[1] = NULL;
            (void)dev;
            return -1; /* fall back to plain copies */
        }
    }
    return 0;
}

extern "C" int wf__cuda_to_host(void *dst, const void *src, size_t nbytes, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "copy to host", &st);
    if (!rc) rc = wfc_refuse_in_capture(dev, "a copy to the host (wf_item, wf_to_array, a move to the CPU), which "
                                             "waits for the device");
    if (rc || !nbytes) return rc ? rc : wf__cuda_sync(dev);
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&s->stage_lock);
    cudaError_t e = cudaSuccess;
    if (stage_ready(s, dev)) {
        e = cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    } else {
        /* pipeline: the device fills one buffer while the host drains the other */
        size_t nchunks = (nbytes + STAGE_BYTES - 1) / STAGE_BYTES;
        for (size_t k = 0; k <= nchunks && e == cudaSuccess; k++) {
            if (k < nchunks) {
                size_t off = k * STAGE_BYTES, len = nbytes - off < STAGE_BYTES ? nbytes - off : STAGE_BYTES;
                e = cudaMemcpyAsync(s->stage[k % 2], (const char *)src + off, len, cudaMemcpyDeviceToHost, st);
                if (e == cudaSuccess) e = cudaEventRecord(s->stage_ev[k % 2], st);
            }
            if (k > 0 && e == cudaSuccess) {
                size_t j = k - 1, off = j * STAGE_BYTES;
                size_t len = nbytes - off < STAGE_BYTES ? nbytes - off : STAGE_BYTES;
                e = cudaEventSynchronize(s->stage_ev[j % 2]);
                if (e == cudaSuccess) memcpy((char *)dst + off, s->stage[j % 2], len);
            }
        }
    }
    pthread_mutex_unlock(&s->stage_lock);
    if (e != cudaSuccess) return wfc_report(e, "copy to host (or a kernel queued before it)", dev);
    return wf__cuda_sync(dev); /* reports index errors of earlier kernels */
}

/* A copy from the host inside a CUDA graph capture (a constant such as wf_arange's positions,
 * made on the host then moved): the values are snapshotted into pinned memory that the graph
 * owns, and the captured copy reads that snapshot, so every replay copies the values of the
 * capture. (A copy from src itself could not be captured: src is pageable and may be gone.) */
static int capture_from_host(void *dst, const void *src, size_t nbytes, int dev, cudaStream_t st) {
    void *pinned = NULL;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;   /* not a stream operation: see pool_alloc */
    cudaThreadExchangeStreamCaptureMode(&mode);
    cudaError_t e = cudaMallocHost(&pinned, nbytes);
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (e != cudaSuccess) return wfc_report(e, "a copy from the host in a CUDA graph capture (cudaMallocHost)", dev);
    int rc = wfc_graph_own_host(dev, pinned);
    if (rc) { cudaFreeHost(pinned); return rc; }
    memcpy(pinned, src, nbytes);
    e = cudaMemcpyAsync(dst, pinned, nbytes, cudaMemcpyHostToDevice, st);
    return e == cudaSuccess ? 0 : wfc_report(e, "a copy from the host in a CUDA graph capture", dev);
}

extern "C" int wf__cuda_from_host(void *dst, const void *src, size_t nbytes, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "copy from host", &st);
    if (rc || !nbytes) return rc;
    if (wfc_dev[dev].capture) return capture_from_host(dst, src, nbytes, dev, st);
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&s->stage_lock);
    cudaError_t e = cudaSuccess;
    if (stage_ready(s, dev)) {
        e = cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    } else {
        size_t nchunks = (nbytes + STAGE_BYTES - 1) / STAGE_BYTES;
        for (size_t k = 0; k < nchunks && e == cudaSuccess; k++) {
            size_t off = k * STAGE_BYTES, len = nbytes - off < STAGE_BYTES ? nbytes - off : STAGE_BYTES;
            e = cudaEventSynchronize(s->stage_ev[k % 2]); /* the buffer's previous copy is done */
            if (e != cudaSuccess) break;
            memcpy(s->stage[k % 2], (const char *)src + off, len);
            e = cudaMemcpyAsync((char *)dst + off, s->stage[k % 2], len, cudaMemcpyHostToDevice, st);
            if (e == cudaSuccess) e = cudaEventRecord(s->stage_ev[k % 2], st);
        }
    }
    pthread_mutex_unlock(&s->stage_lock);
    if (e != cudaSuccess) return wfc_report(e, "copy from host (or a kernel queued before it)", dev);
    return 0;
}
