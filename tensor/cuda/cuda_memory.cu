/* tensor/cuda/cuda_memory.cu: device memory and copies, the CUDA twin of tensor/cpu/cpu_memory.c:
 * the caching allocator (size classes, per-device free lists, memory stats, empty_cache) and
 * host <-> device copies through two pinned staging buffers per device.
 *
 * One non-blocking stream per device carries all of weft's work on it (cuda_device.cu), so the
 * allocator is stream-ordered without events: a block freed on the host may be handed out
 * again at once, because any kernel that still uses it was queued before every kernel of the
 * next owner. */
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

extern "C" void *wf__cuda_alloc(int dev, size_t nbytes) {
    if (wfc_begin(dev, "cuda alloc", NULL)) return NULL;
    dev_state *s = &wfc_dev[dev];
    size_t rounded;
    int c = size_class(nbytes, &rounded);
    void *p = NULL;
    pthread_mutex_lock(&s->lock);
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

extern "C" int wf__cuda_from_host(void *dst, const void *src, size_t nbytes, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "copy from host", &st);
    if (rc || !nbytes) return rc;
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
