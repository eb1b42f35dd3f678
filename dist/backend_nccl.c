/* dist/backend_nccl.c: the "nccl" process-group backend (CUDA tensors on one GPU per rank).
 *
 * Ordering, as in PyTorch's ProcessGroupNCCL: each group has its own non-blocking CUDA
 * stream on the rank's device. Before an op an event is recorded on weft's compute stream
 * (wf__cuda_stream) and the group's stream waits for it, so the op sees every kernel queued
 * before it; the NCCL call goes on the group's stream, followed by an end event. Waiting
 * (the work's stream_wait hook) makes the compute stream wait for the end event: the host
 * never blocks. test() asks the end event (cudaEventQuery) and polls ncclCommGetAsyncError.
 *
 * Bounded waits: communicators are non-blocking (ncclConfig_t.blocking = 0), so init, split,
 * launches (which may connect to peers) and finalize return ncclInProgress and are polled
 * against a deadline instead of hanging in NCCL when a peer is gone. Ops whose completion
 * was handed to the compute stream are watched by a thread per group (started at the first
 * such wait): an end event late past its deadline, or an asynchronous NCCL error, aborts the
 * communicator (ncclCommAbort, which also ends the NCCL kernels the compute stream waits on)
 * and breaks the group; its next call fails with the message. Every NCCL call and the abort
 * hold the group's lock, so the abort never races a launch.
 *
 * Startup: every rank publishes (node rank, CUDA index) and wf_dist_check_device_map refuses
 * two ranks on one GPU naming both (NCCL would only say "Duplicate GPU"); then rank 0's
 * ncclUniqueId reaches the others through MPI (when MPI is initialized and is this world) or
 * the TCP store. Bytes ops on host buffers (broadcast/gather of objects) are staged through
 * device buffers; their works are polled (the host needs the bytes). */
#include "weft_config.h"

#ifdef WEFT_HAVE_NCCL

#include "dist/dist_impl.h"
#include "tensor/cuda/cuda_api.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#endif

#define PENDING_MAX 256   /* ops handed to the compute stream and not yet seen complete */

typedef struct pending_op {
    cudaEvent_t end;       /* owned */
    double deadline;
    uint64_t seq;
    wf__coll_kind kind;
    size_t bytes;
} pending_op;

typedef struct nccl_group {
    pthread_mutex_t lock;  /* comm, pending, fatal */
    ncclComm_t comm;       /* NULL after an abort */
    int dev;
    cudaStream_t stream;   /* the group's communication stream (owned) */
    void *scratch;         /* 16 device bytes for barrier (owned, cudaMalloc) */
    int rank, size;
    double timeout_s;
    int fatal;             /* first fatal error; later calls fail with it */
    char fatal_msg[600];
    pending_op pending[PENDING_MAX];
    int n_pending;
    ncclComm_t split_out;  /* ncclCommSplit's output: NCCL's init job writes it asynchronously,
                              so it lives here, not on a stack that may be gone by then */
    pthread_t watchdog;
    bool watchdog_on, stopping;
    pthread_cond_t wake;
} nccl_group;

typedef struct nccl_work {
    nccl_group *g;
    cudaEvent_t end;       /* owned until handed to the pending list */
    bool complete;         /* end event seen complete (or stream-waited) */
    bool aborted;
    /* host staging for bytes ops on host buffers */
    void *dsend, *drecv;   /* device (wf__cuda_alloc), owned */
    size_t dsend_n, drecv_n;
    void *host_out;        /* where finish() copies host_src (the caller's buffer) */
    const void *host_src;  /* dsend or drecv */
    size_t host_out_n;
} nccl_work;

static void nap(void) {
    struct timespec ts = {0, 100000}; /* 0.1 ms: polls of a stuck op cost little */
    nanosleep(&ts, NULL);
}

static int code_of(ncclResult_t r) {
    switch (r) {
    case ncclInvalidArgument: case ncclInvalidUsage: return WF_EINVAL;
    case ncclUnhandledCudaError: return WF_EDEVICEFAIL;
    default: return WF_EDIST;
    }
}

/* Record the group's first fatal error (lock held). */
static void set_fatal(nccl_group *g, int code, const char *msg) {
    if (g->fatal) return;
    g->fatal = code;
    snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", msg);
}

/* Abort the communicator (lock held): NCCL kernels in flight end, so streams waiting on
 * them drain; the group is broken with msg. */
static void abort_comm(nccl_group *g, int code, const char *msg) {
    set_fatal(g, code, msg);
    if (g->comm) {
        ncclCommAbort(g->comm);
        g->comm = NULL;
    }
}

static int fail_fatal(const nccl_group *g) {
    return wf__error(g->fatal, "%s", g->fatal_msg);
}

/* An NCCL call returned r (lock held): wait out ncclInProgress against the deadline;
 * an error aborts the communicator and names NCCL's error string and last message. */
static int settle(nccl_group *g, ncclComm_t comm, ncclResult_t r, double deadline, const char *what) {
    /* a call may answer ncclSuccess while its work still runs in NCCL's group thread
     * (ncclCommSplit does: the parent's state says ncclInProgress until the split is done),
     * so the communicator's state is asked even then */
    if (r == ncclSuccess && ncclCommGetAsyncError(comm, &r) != ncclSuccess) r = ncclInternalError;
    while (r == ncclInProgress) {
        if (wf__dist_now() > deadline) {
            char msg[600];
            snprintf(msg, sizeof msg, "nccl %s: timed out after %.1f s waiting for NCCL (rank %d of %d, "
                     "cuda:%d); the communicator was aborted", what, g->timeout_s, g->rank, g->size, g->dev);
            if (comm == g->comm) abort_comm(g, WF_ETIMEOUT, msg);
            else { ncclCommAbort(comm); set_fatal(g, WF_ETIMEOUT, msg); }
            return fail_fatal(g);
        }
        nap();
        if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) r = ncclInternalError;
    }
    if (r == ncclSuccess) return 0;
    char msg[600];
    const char *last = ncclGetLastError(comm);
    snprintf(msg, sizeof msg, "nccl %s failed on rank %d of %d (cuda:%d): %s%s%s", what, g->rank, g->size,
             g->dev, ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
    if (comm == g->comm) abort_comm(g, code_of(r), msg);
    else { ncclCommAbort(comm); set_fatal(g, code_of(r), msg); }
    return fail_fatal(g);
}

static int cuda_fail(cudaError_t e, const char *what, int dev) {
    cudaGetLastError();
    return wf__error(WF_EDEVICEFAIL, "nccl: %s failed on cuda:%d: %s", what, dev, cudaGetErrorString(e));
}

static int dtype_of(wf_dtype dt, ncclDataType_t *out) {
    switch (dt) {
    case WF_F64: *out = ncclFloat64; return 0;
    case WF_F32: *out = ncclFloat32; return 0;
    case WF_F16: *out = ncclFloat16; return 0;
    case WF_BF16: *out = ncclBfloat16; return 0;
    case WF_I64: *out = ncclInt64; return 0;
    case WF_I32: *out = ncclInt32; return 0;
    case WF_U8: case WF_BOOL: *out = ncclUint8; return 0;
    default: return wf__error(WF_EDTYPE, "nccl: dtype %d has no NCCL type", (int)dt);
    }
}

/* bool reduces as logical or (sum, max) / and (prod, min) on 0/1 bytes. */
static int op_of(wf_dist_reduce_op op, wf_dtype dt, ncclRedOp_t *out) {
    if (dt == WF_BOOL) {
        switch (op) {
        case WF_DIST_SUM: case WF_DIST_MAX: *out = ncclMax; return 0;
        case WF_DIST_PROD: case WF_DIST_MIN: *out = ncclMin; return 0;
        default: return wf__error(WF_EDTYPE, "nccl: reduce op avg is not defined for bool tensors");
        }
    }
    switch (op) {
    case WF_DIST_SUM: *out = ncclSum; return 0;
    case WF_DIST_AVG:
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
        *out = ncclAvg; return 0;
#else
        return wf__error(WF_ENOTSUP, "nccl: avg needs NCCL >= 2.10 (this is %d)", NCCL_VERSION_CODE);
#endif
    case WF_DIST_MAX: *out = ncclMax; return 0;
    case WF_DIST_MIN: *out = ncclMin; return 0;
    case WF_DIST_PROD: *out = ncclProd; return 0;
    default: return wf__error(WF_EINVAL, "nccl: unknown reduce op %d", (int)op);
    }
}

/* ---------------------------------------------------------------- watchdog */

/* One pass over the pending ops (lock held): drop completed ones; abort on a late one or on
 * an asynchronous NCCL error. Returns true when something failed. */
static bool scan_pending(nccl_group *g) {
    double t = wf__dist_now();
    int j = 0;
    bool failed = false;
    for (int i = 0; i < g->n_pending; i++) {
        pending_op *p = &g->pending[i];
        cudaError_t q = cudaEventQuery(p->end);
        if (q == cudaSuccess || g->fatal) { cudaEventDestroy(p->end); continue; }
        if (q != cudaErrorNotReady) {
            char msg[600];
            snprintf(msg, sizeof msg, "nccl: #%llu %s (%zu B) failed on cuda:%d: %s",
                     (unsigned long long)p->seq, wf__coll_name(p->kind), p->bytes, g->dev, cudaGetErrorString(q));
            cudaGetLastError();
            abort_comm(g, WF_EDEVICEFAIL, msg);
            cudaEventDestroy(p->end);
            failed = true;
            continue;
        }
        if (t > p->deadline) {
            char msg[600];
            snprintf(msg, sizeof msg, "nccl: #%llu %s (%zu B) timed out after %.1f s on rank %d of %d "
                     "(cuda:%d); the communicator was aborted", (unsigned long long)p->seq,
                     wf__coll_name(p->kind), p->bytes, g->timeout_s, g->rank, g->size, g->dev);
            fprintf(stderr, "weft: %s\n", msg);   /* nobody may be waiting on the host */
            abort_comm(g, WF_ETIMEOUT, msg);
            cudaEventDestroy(p->end);
            failed = true;
            continue;
        }
        g->pending[j++] = *p;
    }
    g->n_pending = j;
    if (g->comm && g->n_pending > 0) {
        ncclResult_t a = ncclSuccess;
        if (ncclCommGetAsyncError(g->comm, &a) == ncclSuccess && a != ncclSuccess && a != ncclInProgress) {
            char msg[600];
            const char *last = ncclGetLastError(g->comm);
            snprintf(msg, sizeof msg, "nccl: asynchronous error on rank %d of %d (cuda:%d): %s%s%s", g->rank,
                     g->size, g->dev, ncclGetErrorString(a), last && *last ? ": " : "", last ? last : "");
            fprintf(stderr, "weft: %s\n", msg);
            abort_comm(g, code_of(a), msg);
            failed = true;
        }
    }
    return failed;
}

static void *watchdog_main(void *arg) {
    nccl_group *g = arg;
    cudaSetDevice(g->dev);
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        scan_pending(g);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

/* Wait (bounded by each op's deadline) until no op is pending (lock held). */
static void drain_pending(nccl_group *g) {
    while (g->n_pending > 0) {
        scan_pending(g);
        if (g->n_pending == 0) break;
        pthread_mutex_unlock(&g->lock);
        nap();
        pthread_mutex_lock(&g->lock);
    }
}

/* ---------------------------------------------------------------- work hooks */

static int work_test(wf_work *w, bool *done) {
    nccl_work *nw = w->impl;
    nccl_group *g = nw->g;
    *done = false;
    if (nw->complete) { *done = true; return 0; }
    pthread_mutex_lock(&g->lock);
    int rc = 0;
    cudaError_t q = cudaEventQuery(nw->end);
    if (q == cudaSuccess) {
        nw->complete = true;
        *done = true;
    } else if (g->fatal) {
        *done = true;
        rc = fail_fatal(g);
    } else if (q != cudaErrorNotReady) {
        char msg[600];
        snprintf(msg, sizeof msg, "nccl: #%llu %s failed on cuda:%d: %s", (unsigned long long)w->seq,
                 wf__coll_name(w->kind), g->dev, cudaGetErrorString(q));
        cudaGetLastError();
        abort_comm(g, WF_EDEVICEFAIL, msg);
        *done = true;
        rc = fail_fatal(g);
    } else if (g->comm) {
        ncclResult_t a = ncclSuccess;
        if (ncclCommGetAsyncError(g->comm, &a) == ncclSuccess && a != ncclSuccess && a != ncclInProgress) {
            char msg[600];
            const char *last = ncclGetLastError(g->comm);
            snprintf(msg, sizeof msg, "nccl: #%llu %s: asynchronous NCCL error on rank %d of %d (cuda:%d): %s%s%s",
                     (unsigned long long)w->seq, wf__coll_name(w->kind), g->rank, g->size, g->dev,
                     ncclGetErrorString(a), last && *last ? ": " : "", last ? last : "");
            abort_comm(g, code_of(a), msg);
            *done = true;
            rc = fail_fatal(g);
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (*done && rc) nw->aborted = true;
    return rc;
}

/* Host-staged bytes: copy the result to the caller's buffer (the op is complete). */
static int work_finish(wf_work *w) {
    nccl_work *nw = w->impl;
    if (!nw->host_out || !nw->complete || nw->aborted) return 0;
    cudaError_t e = cudaMemcpy(nw->host_out, nw->host_src, nw->host_out_n, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return cuda_fail(e, "copy of the received bytes to the host", nw->g->dev);
    return 0;
}

/* The front-end's deadline passed: abort the communicator (NCCL kernels end). */
static void work_abort(wf_work *w) {
    nccl_work *nw = w->impl;
    nccl_group *g = nw->g;
    char msg[600];
    snprintf(msg, sizeof msg, "nccl: #%llu %s (%zu B) timed out on rank %d of %d (cuda:%d); the "
             "communicator was aborted", (unsigned long long)w->seq, wf__coll_name(w->kind), w->bytes, g->rank,
             g->size, g->dev);
    pthread_mutex_lock(&g->lock);
    abort_comm(g, WF_ETIMEOUT, msg);
    pthread_mutex_unlock(&g->lock);
    nw->aborted = true;
}

static int work_stream_wait(wf_work *w) {
    nccl_work *nw = w->impl;
    nccl_group *g = nw->g;
    if (nw->complete) return 0;
    pthread_mutex_lock(&g->lock);
    if (g->fatal) { pthread_mutex_unlock(&g->lock); nw->aborted = true; return fail_fatal(g); }
    cudaStream_t compute = (cudaStream_t)wf__cuda_stream(g->dev);
    if (!compute) { pthread_mutex_unlock(&g->lock); return WF_EDEVICEFAIL; }
    cudaError_t e = cudaStreamWaitEvent(compute, nw->end, 0);
    if (e != cudaSuccess) { pthread_mutex_unlock(&g->lock); return cuda_fail(e, "cudaStreamWaitEvent", g->dev); }
    /* the watchdog owns the event from here; room is made by waiting for the oldest ops */
    while (g->n_pending == PENDING_MAX && !g->fatal) {
        scan_pending(g);
        if (g->n_pending < PENDING_MAX) break;
        pthread_mutex_unlock(&g->lock);
        nap();
        pthread_mutex_lock(&g->lock);
    }
    if (g->fatal) { pthread_mutex_unlock(&g->lock); nw->aborted = true; return fail_fatal(g); }
    g->pending[g->n_pending++] = (pending_op){nw->end, w->deadline, w->seq, w->kind, w->bytes};
    nw->end = NULL;
    nw->complete = true;
    int rc = 0;
    if (!g->watchdog_on) {
        if (pthread_create(&g->watchdog, NULL, watchdog_main, g) == 0) g->watchdog_on = true;
        else rc = wf__error(WF_ESTATE, "nccl: could not start the watchdog thread of the group");
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

static void work_release(wf_work *w) {
    nccl_work *nw = w->impl;
    if (!nw) return;
    if (nw->end) cudaEventDestroy(nw->end);
    /* staging buffers are reused by the compute stream only once the op is over; after an
     * abort the NCCL kernel may still touch them: leak them (small, and the group is dead) */
    if (nw->complete && !nw->aborted) {
        if (nw->dsend) wf__cuda_free(nw->g->dev, nw->dsend, nw->dsend_n);
        if (nw->drecv) wf__cuda_free(nw->g->dev, nw->drecv, nw->drecv_n);
    }
    wf__free(nw, sizeof *nw);
    w->impl = NULL;
}

/* ---------------------------------------------------------------- start */

/* Launch c on the group's stream (lock held). */
static ncclResult_t launch(nccl_group *g, const wf__coll *c, const void *send, void *recv, ncclDataType_t dt,
                           ncclRedOp_t op) {
    size_t n = (size_t)c->count;
    ncclComm_t comm = g->comm;
    cudaStream_t st = g->stream;
    ncclResult_t r, r2;
    switch (c->kind) {
    case WF_COLL_ALL_REDUCE: return ncclAllReduce(send, recv, n, dt, op, comm, st);
    case WF_COLL_BROADCAST: return ncclBroadcast(send, recv, n, dt, c->root, comm, st);
    case WF_COLL_REDUCE: return ncclReduce(send, recv, n, dt, op, c->root, comm, st);
    case WF_COLL_ALL_GATHER: return ncclAllGather(send, recv, n, dt, comm, st);
    case WF_COLL_REDUCE_SCATTER: return ncclReduceScatter(send, recv, n, dt, op, comm, st);
    case WF_COLL_BARRIER: return ncclAllReduce(g->scratch, g->scratch, 1, ncclFloat32, ncclSum, comm, st);
    case WF_COLL_SEND:
        ncclGroupStart();
        r = ncclSend(send, n, dt, c->root, comm, st);
        r2 = ncclGroupEnd();
        return r != ncclSuccess && r != ncclInProgress ? r : r2;
    case WF_COLL_RECV:
        ncclGroupStart();
        r = ncclRecv(recv, n, dt, c->root, comm, st);
        r2 = ncclGroupEnd();
        return r != ncclSuccess && r != ncclInProgress ? r : r2;
    case WF_COLL_GATHER: {
        /* every rank sends its bytes to the root; the root receives one slice per rank
         * (its own through NCCL too, so a world of one still exercises the path) */
        size_t es = wf_dtype_size(c->dtype);
        ncclGroupStart();
        r = ncclSend(send, n, dt, c->root, comm, st);
        if (g->rank == c->root)
            for (int p = 0; p < g->size && (r == ncclSuccess || r == ncclInProgress); p++)
                r = ncclRecv((char *)recv + (size_t)p * n * es, n, dt, p, comm, st);
        r2 = ncclGroupEnd();
        return r != ncclSuccess && r != ncclInProgress ? r : r2;
    }
    default: return ncclInvalidArgument;
    }
}

static int nccl_start(wf_process_group *pg, const wf__coll *c, wf_work *w) {
    nccl_group *g = pg->impl;
    const char *name = wf__coll_name(c->kind);
    if (!g) return wf__error(WF_EINVAL, "nccl %s: this process is not a member of the group", name);
    if (g->fatal) return fail_fatal(g);
    if ((unsigned)c->kind >= WF_COLL_COUNT) return wf__error(WF_EINVAL, "nccl: unknown collective %d", (int)c->kind);
    if (c->count < 0) return wf__error(WF_EINVAL, "nccl %s: negative count %lld", name, (long long)c->count);
    bool rooted = c->kind == WF_COLL_BROADCAST || c->kind == WF_COLL_REDUCE || c->kind == WF_COLL_SEND ||
                  c->kind == WF_COLL_RECV || c->kind == WF_COLL_GATHER;
    if (rooted && (c->root < 0 || c->root >= g->size))
        return wf__error(WF_EINVAL, "nccl %s: rank %d is outside the group (size %d)", name, c->root, g->size);
    bool host = c->device.type == WF_DEV_CPU;
    if (host && !(c->kind == WF_COLL_BROADCAST || c->kind == WF_COLL_GATHER || c->kind == WF_COLL_BARRIER))
        return wf__error(WF_EDEVICE, "nccl %s: NCCL moves CUDA tensors only (got a CPU buffer); use the mpi "
                         "backend for CPU tensors", name);
    if (!host && c->kind != WF_COLL_BARRIER && (c->device.type != WF_DEV_CUDA || c->device.index != g->dev))
        return wf__error(WF_EDEVICE, "nccl %s: the tensor is on %s:%d but the group's device is cuda:%d", name,
                         c->device.type == WF_DEV_CUDA ? "cuda" : "meta", (int)c->device.index, g->dev);
    ncclDataType_t dt = ncclUint8;
    ncclRedOp_t op = ncclSum;
    int rc = dtype_of(c->dtype, &dt);
    if (rc) return rc;
    if ((c->kind == WF_COLL_ALL_REDUCE || c->kind == WF_COLL_REDUCE || c->kind == WF_COLL_REDUCE_SCATTER) &&
        (rc = op_of(c->op, c->dtype, &op)))
        return rc;
    size_t es = wf_dtype_size(c->dtype);
    size_t nbytes = (size_t)c->count * es;

    if ((rc = wf__cuda_set_device(g->dev))) return rc;
    cudaStream_t compute = (cudaStream_t)wf__cuda_stream(g->dev);
    if (!compute) return WF_EDEVICEFAIL;
    nccl_work *nw = wf__calloc(1, sizeof *nw);
    if (!nw) return wf__error(WF_ENOMEM, "nccl %s: out of host memory", name);
    nw->g = g;
    const void *send = c->send;
    void *recv = c->recv;
    cudaError_t e;
    cudaEvent_t pre = NULL;
    if (host && c->kind != WF_COLL_BARRIER && nbytes > 0) {
        /* host bytes: stage through device buffers from the caching allocator (ordered on
         * the compute stream, which the group's stream waits on below) */
        bool is_root = g->rank == c->root;
        const void *src = c->send ? c->send : c->recv;
        if ((c->kind == WF_COLL_GATHER || is_root) && !src) {
            wf__free(nw, sizeof *nw);
            return wf__error(WF_ENULL, "nccl %s: no bytes to send", name);
        }
        if (c->kind == WF_COLL_GATHER ? is_root && !c->recv : !c->recv) {
            wf__free(nw, sizeof *nw);
            return wf__error(WF_ENULL, "nccl %s: no buffer for the received bytes", name);
        }
        nw->dsend_n = nbytes;
        if (!(nw->dsend = wf__cuda_alloc(g->dev, nbytes))) { rc = WF_ENOMEM; goto fail; }
        if (c->kind == WF_COLL_GATHER && is_root) {
            nw->drecv_n = nbytes * (size_t)g->size;
            if (!(nw->drecv = wf__cuda_alloc(g->dev, nw->drecv_n))) { rc = WF_ENOMEM; goto fail; }
        }
        if (c->kind == WF_COLL_GATHER || is_root) {
            e = cudaMemcpyAsync(nw->dsend, src, nbytes, cudaMemcpyHostToDevice, compute);
            if (e != cudaSuccess) { rc = cuda_fail(e, "copy of the bytes to the device", g->dev); goto fail; }
        }
        send = nw->dsend;
        /* gather lands in drecv on the root; broadcast works in place in dsend */
        recv = c->kind == WF_COLL_GATHER ? nw->drecv : nw->dsend;
        if (c->kind == WF_COLL_BROADCAST || is_root) {
            nw->host_out = c->recv;
            nw->host_src = recv;
            nw->host_out_n = c->kind == WF_COLL_GATHER ? nw->drecv_n : nbytes;
        }
    }
    if ((e = cudaEventCreateWithFlags(&pre, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&nw->end, cudaEventDisableTiming)) != cudaSuccess) {
        rc = cuda_fail(e, "cudaEventCreate", g->dev);
        goto fail;
    }
    if ((e = cudaEventRecord(pre, compute)) != cudaSuccess ||
        (e = cudaStreamWaitEvent(g->stream, pre, 0)) != cudaSuccess) {
        rc = cuda_fail(e, "ordering the group's stream after the compute stream", g->dev);
        goto fail;
    }
    cudaEventDestroy(pre);   /* released by CUDA once the wait is resolved */
    pre = NULL;

    double deadline = w->deadline > 0 ? w->deadline : wf__dist_now() + g->timeout_s;
    pthread_mutex_lock(&g->lock);
    if (g->fatal || !g->comm) {
        pthread_mutex_unlock(&g->lock);
        rc = g->fatal ? fail_fatal(g) : wf__error(WF_ESTATE, "nccl %s: the communicator is gone", name);
        goto fail;
    }
    ncclComm_t comm = g->comm;
    rc = settle(g, comm, launch(g, c, send, recv, dt, op), deadline, name);
    if (!rc && (e = cudaEventRecord(nw->end, g->stream)) != cudaSuccess)
        rc = cuda_fail(e, "cudaEventRecord (end of the op)", g->dev);
    pthread_mutex_unlock(&g->lock);
    if (rc) goto fail;

    w->impl = nw;
    w->test = work_test;
    w->finish = work_finish;
    w->abort = work_abort;
    w->release = work_release;
    /* CUDA tensors: waiting orders the compute stream; host bytes and the barrier are
     * waited for by the host (the caller needs the bytes / the meeting point) */
    w->stream_wait = host || c->kind == WF_COLL_BARRIER ? NULL : work_stream_wait;
    return 0;
fail:
    if (pre) cudaEventDestroy(pre);
    if (nw->end) cudaEventDestroy(nw->end);
    /* the staging buffers may be read by a queued copy or an aborted op: free them only
     * when nothing was launched on them */
    if (!g->fatal) {
        if (nw->dsend) wf__cuda_free(g->dev, nw->dsend, nw->dsend_n);
        if (nw->drecv) wf__cuda_free(g->dev, nw->drecv, nw->drecv_n);
    }
    wf__free(nw, sizeof *nw);
    return rc;
}

/* ---------------------------------------------------------------- groups */

/* CUDA tensors on the group's device. Host memory too, for the bytes ops alone (broadcast
 * and gather of objects, staged through the GPU; the front-ends ask supports(WF_CPU) before
 * them): start() refuses CPU tensors for every other collective with WF_EDEVICE. */
static bool nccl_supports(const wf_process_group *pg, wf_device dev) {
    const nccl_group *g = pg->impl;
    if (!g) return false;
    return dev.type == WF_DEV_CPU || (dev.type == WF_DEV_CUDA && dev.index == g->dev);
}

static nccl_group *group_new(int dev, int rank, int size, double timeout_s) {
    nccl_group *g = wf__calloc(1, sizeof *g);
    if (!g) { wf__error(WF_ENOMEM, "nccl: out of host memory"); return NULL; }
    g->dev = dev;
    g->rank = rank;
    g->size = size;
    g->timeout_s = timeout_s > 0 ? timeout_s : 1800;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cuda_fail(e, "cudaStreamCreateWithFlags (the group's stream)", dev);
        goto fail;
    }
    if ((e = cudaMalloc(&g->scratch, 16)) != cudaSuccess || (e = cudaMemset(g->scratch, 0, 16)) != cudaSuccess) {
        cuda_fail(e, "cudaMalloc (barrier scratch)", dev);
        goto fail;
    }
    return g;
fail:
    if (g->stream) cudaStreamDestroy(g->stream);
    if (g->scratch) cudaFree(g->scratch);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    wf__free(g, sizeof *g);
    return NULL;
}

static void group_free(nccl_group *g) {
    if (!g) return;
    pthread_mutex_lock(&g->lock);
    drain_pending(g);   /* bounded: each op's deadline, then abort */
    g->stopping = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    if (g->watchdog_on) pthread_join(g->watchdog, NULL);
    if (g->comm) {
        /* finalize flushes this rank's queued ops; bounded by the timeout, then abort */
        double deadline = wf__dist_now() + g->timeout_s;
        ncclComm_t comm = g->comm;
        int rc = settle(g, comm, ncclCommFinalize(comm), deadline, "finalize");
        if (!rc && g->comm) ncclCommDestroy(g->comm);
        g->comm = NULL;
    }
    cudaSetDevice(g->dev);
    if (!g->fatal) cudaStreamSynchronize(g->stream);   /* ops are over: bounded */
    cudaStreamDestroy(g->stream);
    if (g->scratch && !g->fatal) cudaFree(g->scratch);   /* after an abort: left to the process */
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    wf__free(g, sizeof *g);
}

static ncclConfig_t make_config(void) {
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;   /* every NCCL call is polled against a deadline (see the header) */
    return cfg;
}

/* Exchange a fixed-size record of every rank: all[r * n .. ] = rank r's mine (n bytes).
 * Through MPI_Allgather when MPI is up and is this world, else through the store. */
static int exchange_all(wf_store *store, bool use_mpi, const char *prefix, int rank, int size, const void *mine,
                        size_t n, void *all) {
#ifdef WEFT_HAVE_MPI
    if (use_mpi) {
        int e = MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, MPI_COMM_WORLD);
        return e == MPI_SUCCESS ? 0 : wf__error(WF_EDIST, "nccl: MPI_Allgather of %s failed (MPI error %d)", prefix, e);
    }
#else
    (void)use_mpi;
#endif
    char key[256];
    snprintf(key, sizeof key, "%s/%d", prefix, rank);
    int rc = wf_store_set(store, key, mine, n);
    if (rc) return rc;
    for (int r = 0; r < size; r++) {
        void *v = NULL;
        size_t vn = 0;
        snprintf(key, sizeof key, "%s/%d", prefix, r);
        if ((rc = wf_store_get(store, key, &v, &vn))) return rc;
        if (vn != n) {
            free(v);
            return wf__error(WF_ECORRUPT, "nccl: store key %s has %zu bytes, expected %zu", key, vn, n);
        }
        memcpy((char *)all + (size_t)r * n, v, n);
        free(v);
    }
    return 0;
}

/* Rank 0's unique id to every rank. */
static int exchange_id(wf_store *store, bool use_mpi, const char *prefix, int rank, ncclUniqueId *id) {
#ifdef WEFT_HAVE_MPI
    if (use_mpi) {
        int e = MPI_Bcast(id, (int)sizeof *id, MPI_BYTE, 0, MPI_COMM_WORLD);
        return e == MPI_SUCCESS ? 0 : wf__error(WF_EDIST, "nccl: MPI_Bcast of the NCCL unique id failed (MPI error %d)", e);
    }
#else
    (void)use_mpi;
#endif
    char key[256];
    snprintf(key, sizeof key, "%s/id", prefix);
    if (rank == 0) return wf_store_set(store, key, id, sizeof *id);
    void *v = NULL;
    size_t vn = 0;
    int rc = wf_store_get(store, key, &v, &vn);
    if (rc) return rc;
    if (vn != sizeof *id) {
        free(v);
        return wf__error(WF_ECORRUPT, "nccl: store key %s has %zu bytes, expected %zu (an ncclUniqueId)", key, vn,
                         sizeof *id);
    }
    memcpy(id, v, sizeof *id);
    free(v);
    return 0;
}

/* Free a store that init made for itself, after the other ranks have stopped reading it
 * (rank 0 serves it: closing at once would turn their clear error into a dropped connection). */
static void drop_store(wf_process_group *pg, const char *prefix, int rank, int size, double timeout) {
    if (!pg->owns_store) return;
    char key[160];
    snprintf(key, sizeof key, "%s/leaving", prefix);
    char saved[600];
    snprintf(saved, sizeof saved, "%s", wf_error_message());
    int code = wf_error();
    (void)wf_store_wait_ranks(pg->store, key, rank, size, timeout < 30 ? timeout : 30);
    wf_store_free(pg->store);
    pg->store = NULL;
    pg->owns_store = false;
    if (code) wf__error(code, "%s", saved);   /* the caller's error, not the barrier's */
}

static int nccl_init(wf_process_group *pg, const wf_cluster_info *ci, const wf_dist_options *o) {
    static int generation;   /* world groups made by this process: keys of one init differ from the next */
    int rank = ci->global_rank, size = ci->world_size;
    int ndev = wf_cuda_device_count();
    int dev = o->device.type == WF_DEV_CUDA ? o->device.index : ci->local_rank;
    if (size < 1 || rank < 0 || rank >= size)
        return wf__error(WF_EINVAL, "wf_dist_init(nccl): rank %d outside world size %d", rank, size);
    double timeout = o->timeout_s > 0 ? o->timeout_s : (pg->timeout_s > 0 ? pg->timeout_s : 1800);
    double deadline = wf__dist_now() + timeout;
    int gen = generation++;
    char prefix[96];
    snprintf(prefix, sizeof prefix, "weft/nccl/%d", gen);
    int rc = 0;

    bool use_mpi = false;
#ifdef WEFT_HAVE_MPI
    int up = 0, fin = 0, msize = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&fin);
    if (up && !fin) {
        MPI_Comm_size(MPI_COMM_WORLD, &msize);
        use_mpi = msize == size;
    }
#endif
    wf_store *store = pg->store ? pg->store : o->store;
    if (size > 1 && !use_mpi && !store) {
        wf_store_opts so = {timeout, size};
        store = wf_store_new(ci->main_address[0] ? ci->main_address : "127.0.0.1", ci->main_port, rank == 0, &so);
        if (!store) return wf_error() ? wf_error() : WF_EDIST;
        pg->store = store;   /* owned by the group: the front-end frees it with the group */
        pg->owns_store = true;
    }

    /* Every rank publishes (node, GPU, GPUs it sees) before any rank touches its GPU, so all
     * of them refuse a bad mapping together, naming the ranks, instead of some going on into
     * NCCL and waiting there for the others: first two ranks on one GPU (NCCL would only say
     * "Duplicate GPU"), then a rank whose GPU does not exist. */
    int *all = wf__malloc(sizeof(int) * 3 * (size_t)size);
    int *nodes = wf__malloc(sizeof(int) * (size_t)size);
    int *devs = wf__malloc(sizeof(int) * (size_t)size);
    if (!all || !nodes || !devs) rc = wf__error(WF_ENOMEM, "wf_dist_init(nccl): out of host memory");
    int mine[3] = {ci->node_rank, dev, ndev};
    char pfx[128];
    snprintf(pfx, sizeof pfx, "%s/devmap", prefix);
    if (!rc) {
        if (size > 1) rc = exchange_all(store, use_mpi, pfx, rank, size, mine, sizeof mine, all);
        else memcpy(all, mine, sizeof mine);
    }
    if (!rc) {
        for (int r = 0; r < size; r++) { nodes[r] = all[3 * r]; devs[r] = all[3 * r + 1]; }
        rc = wf_dist_check_device_map(nodes, devs, size);
        if (rc) {
            char inner[512];
            snprintf(inner, sizeof inner, "%s", wf_error_message());
            wf__error(rc, "wf_dist_init(nccl): the rank-to-GPU mapping was refused before NCCL started: %s", inner);
        }
    }
    for (int r = 0; r < size && !rc; r++) {
        int d = all[3 * r + 1], n = all[3 * r + 2];
        if (n == 0)
            rc = wf__error(WF_ENOTSUP, "wf_dist_init(nccl): no CUDA device is visible to rank %d%s", r,
                           r == rank ? "" : " (another process)");
        else if (d < 0 || d >= n)
            rc = wf__error(WF_EDEVICE, "wf_dist_init(nccl): rank %d asks for cuda:%d but sees %d CUDA device(s)%s",
                           r, d, n, r == rank && o->device.type != WF_DEV_CUDA ? " (no device given: cuda:<local "
                           "rank> was used)" : "");
    }
    if (all) wf__free(all, sizeof(int) * 3 * (size_t)size);
    if (nodes) wf__free(nodes, sizeof(int) * (size_t)size);
    if (devs) wf__free(devs, sizeof(int) * (size_t)size);
    if (rc) goto fail;
    if ((rc = wf__cuda_set_device(dev))) goto fail;

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) {
            rc = wf__error(code_of(r), "wf_dist_init(nccl): ncclGetUniqueId failed: %s", ncclGetErrorString(r));
            goto fail;
        }
    }
    if (size > 1 && (rc = exchange_id(store, use_mpi, prefix, rank, &id))) goto fail;

    nccl_group *g = group_new(dev, rank, size, timeout);
    if (!g) { rc = WF_EDEVICEFAIL; goto fail; }
    ncclConfig_t cfg = make_config();
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclCommInitRankConfig(&comm, size, id, rank, &cfg);
    pthread_mutex_lock(&g->lock);
    if (r != ncclSuccess && r != ncclInProgress && !comm) {
        pthread_mutex_unlock(&g->lock);
        const char *last = ncclGetLastError(NULL);
        rc = wf__error(code_of(r), "wf_dist_init(nccl): ncclCommInitRank failed on rank %d of %d (cuda:%d): %s%s%s",
                       rank, size, dev, ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
        group_free(g);
        goto fail;
    }
    g->comm = comm;
    rc = settle(g, comm, r, deadline, "ncclCommInitRank");
    pthread_mutex_unlock(&g->lock);
    if (rc) {
        char inner[600];
        snprintf(inner, sizeof inner, "%s", wf_error_message());
        group_free(g);
        rc = wf__error(rc, "wf_dist_init(nccl): %s", inner);
        goto fail;
    }
    pg->rank = rank;
    pg->size = size;
    pg->impl = g;
    if (pg->timeout_s <= 0) pg->timeout_s = timeout;
    return 0;
fail:
    drop_store(pg, prefix, rank, size, timeout);
    return rc;
}

static int nccl_subgroup(wf_process_group *parent, const int *ranks, int n, wf_process_group *child) {
    nccl_group *pgp = parent->impl;
    if (!pgp) return wf__error(WF_EINVAL, "nccl subgroup: this process is not a member of the parent group");
    if (pgp->fatal) return fail_fatal(pgp);
    int key = -1;
    for (int i = 0; i < n; i++) {
        if (ranks[i] < 0 || ranks[i] >= pgp->size)
            return wf__error(WF_EINVAL, "nccl subgroup: rank %d is outside the parent group (size %d)", ranks[i],
                             pgp->size);
        if (ranks[i] == pgp->rank) key = i;
    }
    int rc = wf__cuda_set_device(pgp->dev);
    if (rc) return rc;
    nccl_group *g = NULL;
    if (key >= 0 && !(g = group_new(pgp->dev, key, n, pgp->timeout_s))) return WF_EDEVICEFAIL;
    ncclConfig_t cfg = make_config();
    ncclComm_t comm = NULL;
    double deadline = wf__dist_now() + pgp->timeout_s;
    /* collective over the parent: members share color 0 (ordered by their index in ranks),
     * the others pass NCCL_SPLIT_NOCOLOR and get no communicator */
    pthread_mutex_lock(&pgp->lock);
    if (!pgp->comm) {
        pthread_mutex_unlock(&pgp->lock);
        if (g) group_free(g);
        return fail_fatal(pgp);
    }
    pgp->split_out = NULL;
    ncclResult_t r = ncclCommSplit(pgp->comm, key >= 0 ? 0 : NCCL_SPLIT_NOCOLOR, key >= 0 ? key : 0, &pgp->split_out,
                                   &cfg);
    /* the parent's state tells when a non-blocking split finished on this rank; the new
     * handle is stored by NCCL's init job as it ends (wait for it, bounded) */
    rc = settle(pgp, pgp->comm, r, deadline, "ncclCommSplit");
    while (!rc && key >= 0 && !(comm = __atomic_load_n(&pgp->split_out, __ATOMIC_ACQUIRE)) && wf__dist_now() < deadline)
        nap();
    pthread_mutex_unlock(&pgp->lock);
    if (!rc && comm && g) {
        pthread_mutex_lock(&g->lock);
        g->comm = comm;
        rc = settle(g, comm, ncclSuccess, deadline, "ncclCommSplit (new communicator)");
        pthread_mutex_unlock(&g->lock);
    }
    if (rc) {
        if (g) group_free(g);
        return rc;
    }
    if (key >= 0 && !comm) {
        group_free(g);
        return wf__error(WF_EDIST, "nccl subgroup: ncclCommSplit gave rank %d no communicator", pgp->rank);
    }
    child->rank = key;
    child->size = n;
    child->impl = g;
    if (child->timeout_s <= 0) child->timeout_s = pgp->timeout_s;
    return 0;
}

static void nccl_free(wf_process_group *pg) {
    group_free(pg->impl);
    pg->impl = NULL;
}

const wf__pg_backend wf__backend_nccl = {
    .name = "nccl",
    .init = nccl_init,
    .supports = nccl_supports,
    .start = nccl_start,
    .subgroup = nccl_subgroup,
    .free = nccl_free,
};

#else
typedef int wf__backend_nccl_unused;   /* ISO C: no empty translation unit */
#endif
