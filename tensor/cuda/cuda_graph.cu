/* tensor/cuda/cuda_graph.cu: CUDA graphs (torch.cuda.CUDAGraph): record the work that weft
 * queues on a device's stream once, then launch all of it again with one call per step.
 *
 * A capture runs on weft's compute stream in thread-local mode, so other threads' CUDA calls
 * are not affected. Nothing captured runs during the capture: the first replay runs it.
 * While the capture is open:
 *   - allocations on the device come from the graph's private pool (cuda_memory.cu), whose
 *     blocks never go to eager code, so the addresses baked into the graph stay valid;
 *   - whatever would wait for the device (wf_item, wf_to_array, a synchronize, emptying the
 *     cache, a random op whose seed would be baked in) is refused with WF_EINVAL naming it,
 *     and the capture is spoiled: capture_end reports the first such failure;
 *   - a copy from the host (wf_arange's positions, made on the host and moved) is a constant:
 *     the values are kept in pinned memory the graph owns, and every replay copies them;
 *   - code that bakes a value that changes every step into a kernel (the optimizer's
 *     learning rate and step count) registers a hook (wf__cuda_graph_add_hook) that rewrites
 *     the kernel's arguments in the executable graph before each replay. */
#include "cuda_device.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct graph_hook {
    wf_cuda_graph_hook fn;
    void *ctx;
    void (*free_fn)(void *);
} graph_hook;

enum { G_NEW, G_CAPTURING, G_READY, G_FAILED };

struct wf_cuda_graph {
    int state;
    int dev;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    wfc_pool *pool;            /* owned; released (not freed while blocks are live) by free */
    int err;                   /* the first failure inside the capture */
    char err_msg[600];
    graph_hook *hooks;
    int n_hooks, cap_hooks;
    void **host_bufs;          /* pinned snapshots of host data copied in the capture (owned) */
    int n_host, cap_host;
    int64_t replays;
};

/* the graph this thread is capturing: a capture is per thread (thread-local mode) */
static __thread wf_cuda_graph *tl_capture;

void wfc_capture_note(int dev, int code, const char *msg) {
    wf_cuda_graph *g = wfc_dev[dev].capture;
    if (!g || g->err) return;
    g->err = code ? code : WF_EDEVICEFAIL;
    snprintf(g->err_msg, sizeof g->err_msg, "%s", msg && *msg ? msg : "unknown failure");
}

extern "C" int wf__cuda_refuse_in_capture(int dev, const char *what) {
    if (dev < 0 || dev >= MAX_DEVICES || !wfc_dev[dev].capture) return 0;
    int rc = wfc_error(WF_EINVAL, "cuda:%d is being captured into a CUDA graph (wf_cuda_graph_capture_begin): %s "
                       "cannot be captured; do it before capture_begin or after capture_end (a replay's "
                       "results can be read once it is queued)", dev, what);
    wfc_capture_note(dev, rc, wf_error_message());
    return rc;
}

int wfc_graph_own_host(int dev, void *pinned) {
    wf_cuda_graph *g = wfc_dev[dev].capture;
    if (!g) return wfc_error(WF_EINVAL, "cuda graph: no capture in progress on cuda:%d", dev);
    if (g->n_host == g->cap_host) {
        int nc = g->cap_host ? 2 * g->cap_host : 8;
        void **nb = (void **)realloc(g->host_bufs, (size_t)nc * sizeof *nb);
        if (!nb) {
            int rc = wfc_error(WF_ENOMEM, "cuda graph: out of host memory to keep a copied constant");
            wfc_capture_note(dev, rc, wf_error_message());
            return rc;
        }
        g->host_bufs = nb, g->cap_host = nc;
    }
    g->host_bufs[g->n_host++] = pinned;
    return 0;
}

static void free_hooks(wf_cuda_graph *g) {
    for (int i = 0; i < g->n_hooks; i++)
        if (g->hooks[i].free_fn) g->hooks[i].free_fn(g->hooks[i].ctx);
    free(g->hooks);
    g->hooks = NULL;
    g->n_hooks = g->cap_hooks = 0;
}

extern "C" int wf__cuda_capturing(int dev) {
    return dev >= 0 && dev < MAX_DEVICES && wfc_dev[dev].capture != NULL;
}

extern "C" int wf__cuda_graph_add_hook(int dev, wf_cuda_graph_hook fn, void *ctx, void (*free_fn)(void *)) {
    wf_cuda_graph *g = dev >= 0 && dev < MAX_DEVICES ? wfc_dev[dev].capture : NULL;
    if (!g || !fn) return wfc_error(WF_EINVAL, "cuda graph: no capture in progress on cuda:%d to add a replay hook to", dev);
    if (g->n_hooks == g->cap_hooks) {
        int nc = g->cap_hooks ? 2 * g->cap_hooks : 8;
        graph_hook *nh = (graph_hook *)realloc(g->hooks, (size_t)nc * sizeof *nh);
        if (!nh) return wfc_error(WF_ENOMEM, "cuda graph: out of host memory for a replay hook");
        g->hooks = nh, g->cap_hooks = nc;
    }
    g->hooks[g->n_hooks++] = graph_hook{ fn, ctx, free_fn };
    return 0;
}

extern "C" int wf__cuda_graph_last_node(int dev, void **node) {
    cudaStreamCaptureStatus cs;
    const cudaGraphNode_t *deps = NULL;
    size_t nd = 0;
    cudaError_t e = cudaStreamGetCaptureInfo(wfc_dev[dev].stream, &cs, NULL, NULL, &deps, NULL, &nd);
    if (e != cudaSuccess) return wfc_report(e, "cudaStreamGetCaptureInfo", dev);
    if (cs != cudaStreamCaptureStatusActive || nd != 1)
        return wfc_error(WF_EINVAL, "cuda graph: cannot find the node just captured on cuda:%d (status %d, %zu "
                         "dependencies)", dev, (int)cs, nd);
    *node = (void *)deps[0];
    return 0;
}

/* ---------------------------------------------------------------- public API (weft/cuda.h) */

extern "C" wf_cuda_graph *wf_cuda_graph_new(void) {
    wf_cuda_graph *g = (wf_cuda_graph *)calloc(1, sizeof *g);
    if (!g) { wfc_error(WF_ENOMEM, "wf_cuda_graph_new: out of host memory"); return NULL; }
    g->dev = -1;
    return g;
}

extern "C" int wf_cuda_graph_capture_begin(wf_cuda_graph *g, wf_device device) {
    const char *N = "wf_cuda_graph_capture_begin";
    if (!g) return wfc_error(WF_EINVAL, "%s: graph is NULL", N);
    if (device.type != WF_DEV_CUDA)
        return wfc_error(WF_ENOTSUP, "%s: CUDA graphs capture work on a CUDA device; device type %d is not one "
                         "(a CPU step runs eagerly)", N, (int)device.type);
    if (tl_capture)
        return wfc_error(WF_EINVAL, "%s: this thread is already capturing a CUDA graph on cuda:%d; captures "
                         "cannot be nested (end the first with wf_cuda_graph_capture_end)", N, tl_capture->dev);
    if (g->state != G_NEW)
        return wfc_error(WF_EINVAL, "%s: this graph was already %s; a graph is captured once (make a new one "
                         "with wf_cuda_graph_new)", N, g->state == G_CAPTURING ? "being captured" : "captured");
    int dev = device.index;
    cudaStream_t st;
    int rc = wfc_begin(dev, N, &st);
    if (rc) return rc;
    if (wfc_dev[dev].capture)
        return wfc_error(WF_EINVAL, "%s: cuda:%d is already being captured (by another thread); captures cannot "
                         "be nested", N, dev);
    /* work queued before the capture, and its index errors, are reported here, not inside it */
    if ((rc = wf__cuda_sync(dev))) return rc;
    wfc_pool *pool = wfc_pool_new(dev);
    if (!pool) return WF_ENOMEM;
    g->dev = dev;
    g->pool = pool;
    g->err = 0;
    g->err_msg[0] = 0;
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&s->lock);
    s->capture = g;
    s->capture_pool = pool;
    pthread_mutex_unlock(&s->lock);
    cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        pthread_mutex_lock(&s->lock);
        s->capture = NULL;
        s->capture_pool = NULL;
        pthread_mutex_unlock(&s->lock);
        rc = wfc_report(e, "cudaStreamBeginCapture", dev);
        wfc_pool_release(pool);
        g->pool = NULL;
        return rc;
    }
    g->state = G_CAPTURING;
    tl_capture = g;
    return 0;
}

/* leave capture mode on g's device (the graph, when there is one, goes to *out) */
static cudaError_t stop_capture(wf_cuda_graph *g, cudaGraph_t *out) {
    dev_state *s = &wfc_dev[g->dev];
    cudaSetDevice(g->dev);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(s->stream, &graph);
    pthread_mutex_lock(&s->lock);
    s->capture = NULL;
    s->capture_pool = NULL;   /* the pool keeps its blocks; no new ones come from it */
    pthread_mutex_unlock(&s->lock);
    if (tl_capture == g) tl_capture = NULL;
    if (e != cudaSuccess && graph) { cudaGraphDestroy(graph); graph = NULL; }
    *out = graph;
    return e;
}

extern "C" int wf_cuda_graph_capture_end(wf_cuda_graph *g) {
    const char *N = "wf_cuda_graph_capture_end";
    if (!g) return wfc_error(WF_EINVAL, "%s: graph is NULL", N);
    if (g->state != G_CAPTURING)
        return wfc_error(WF_EINVAL, "%s: this graph is not being captured (call wf_cuda_graph_capture_begin first)", N);
    if (tl_capture != g)
        return wfc_error(WF_EINVAL, "%s: the capture must be ended by the thread that began it", N);
    int dev = g->dev;
    cudaGraph_t graph = NULL;
    cudaError_t e = stop_capture(g, &graph);
    cudaGetLastError();
    g->state = G_FAILED;
    if (g->err) {
        if (graph) cudaGraphDestroy(graph);
        free_hooks(g);
        return wfc_error(g->err, "%s: the capture on cuda:%d failed, and the graph was discarded: %s", N, dev, g->err_msg);
    }
    if (e != cudaSuccess || !graph) {
        free_hooks(g);
        int rc = wfc_report(e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture", dev);
        return wfc_error(rc, "%s: the capture on cuda:%d was invalidated (some CUDA call in it is not allowed in a "
                         "capture, such as a synchronous copy or memset): %s", N, dev, wf_error_message());
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaGraphDestroy(graph);
        free_hooks(g);
        return wfc_report(e, "wf_cuda_graph_capture_end: cudaGraphInstantiateWithFlags", dev);
    }
    e = cudaGraphUpload(exec, wfc_dev[dev].stream);   /* the first replay then costs no more than the others */
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        free_hooks(g);
        return wfc_report(e, "wf_cuda_graph_capture_end: cudaGraphUpload", dev);
    }
    g->graph = graph;
    g->exec = exec;
    g->state = G_READY;
    return 0;
}

extern "C" int wf_cuda_graph_replay(wf_cuda_graph *g) {
    const char *N = "wf_cuda_graph_replay";
    if (!g) return wfc_error(WF_EINVAL, "%s: graph is NULL", N);
    if (g->state != G_READY)
        return wfc_error(WF_EINVAL, "%s: the graph is %s", N,
                         g->state == G_NEW ? "empty (capture it first)"
                         : g->state == G_CAPTURING ? "still being captured (call wf_cuda_graph_capture_end)"
                                                   : "unusable: its capture failed");
    cudaStream_t st;
    int rc = wfc_begin(g->dev, N, &st);
    if (rc) return rc;
    if (wfc_dev[g->dev].capture)
        return wfc_error(WF_EINVAL, "%s: cuda:%d is being captured into another graph; replay outside it", N, g->dev);
    for (int i = 0; i < g->n_hooks; i++)
        if ((rc = g->hooks[i].fn(g->hooks[i].ctx, (void *)g->exec, g->replays == 0))) return rc;
    cudaError_t e = cudaGraphLaunch(g->exec, st);
    if (e != cudaSuccess) return wfc_report(e, "wf_cuda_graph_replay: cudaGraphLaunch", g->dev);
    g->replays++;
    return 0;
}

extern "C" void wf_cuda_graph_free(wf_cuda_graph *g) {
    if (!g) return;
    if (g->state == G_CAPTURING) {   /* abandoned capture: leave capture mode first */
        cudaGraph_t graph = NULL;
        stop_capture(g, &graph);
        cudaGetLastError();
        if (graph) cudaGraphDestroy(graph);
    }
    if (g->dev >= 0) cudaSetDevice(g->dev);
    if (g->exec) cudaGraphExecDestroy(g->exec);   /* a replay in flight completes first (the driver defers) */
    if (g->graph) cudaGraphDestroy(g->graph);
    cudaGetLastError();
    free_hooks(g);
    if (g->pool) {
        /* blocks still in use by a replay in flight: wait before the pool can give them back */
        cudaStreamSynchronize(wfc_dev[g->dev].stream);
        cudaGetLastError();
        wfc_pool_release(g->pool);
    }
    for (int i = 0; i < g->n_host; i++) cudaFreeHost(g->host_bufs[i]);   /* after the wait above */
    cudaGetLastError();
    free(g->host_bufs);
    free(g);
}

extern "C" int wf_cuda_graph_pool_stats(const wf_cuda_graph *g, wf_memory_stats *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!g || !out) return wfc_error(WF_EINVAL, "wf_cuda_graph_pool_stats: %s is NULL", g ? "out" : "graph");
    if (g->pool) wfc_pool_stats(g->pool, out);
    return 0;
}

extern "C" bool wf_cuda_is_capturing(int device) {
    return wf__cuda_capturing(device) != 0;
}
