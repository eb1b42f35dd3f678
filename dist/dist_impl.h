/* dist/dist_impl.h: private structures of the distributed layer. Not installed.
 *
 * The front-ends in dist/collectives.c validate arguments, number each collective, keep the
 * history, run the WF_DIST_DEBUG agreement check and enforce timeouts; a backend only moves
 * raw buffers. One collective is described by a wf__coll; a backend starts it and fills the
 * wf_work's hooks, the front-end polls test() until done or the deadline. */
#ifndef WEFT_DIST_IMPL_H
#define WEFT_DIST_IMPL_H

#include "weft/dist.h"
#include "tensor/tensor_impl.h"

typedef enum wf__coll_kind {
    WF_COLL_ALL_REDUCE = 0, WF_COLL_BROADCAST, WF_COLL_REDUCE, WF_COLL_ALL_GATHER,
    WF_COLL_REDUCE_SCATTER, WF_COLL_BARRIER, WF_COLL_SEND, WF_COLL_RECV, WF_COLL_GATHER,
    WF_COLL_COUNT
} wf__coll_kind;
const char *wf__coll_name(wf__coll_kind k);   /* "all_reduce", ... */

/* One collective on raw buffers. Pointers are device pointers for CUDA tensors.
 *  all_reduce/broadcast/reduce: send == recv (in place), count elements.
 *  all_gather: send count elements, recv size*count.
 *  reduce_scatter: send size*count, recv count.
 *  gather (bytes): send count, recv size*count on root.
 *  send/recv: root is the peer. barrier: no buffers. */
typedef struct wf__coll {
    wf__coll_kind kind;
    const void *send;
    void *recv;
    int64_t count;
    wf_dtype dtype;            /* WF_U8 for bytes */
    wf_dist_reduce_op op;
    int root;                  /* src / dst / peer, a group rank */
    int tag;
    wf_device device;
} wf__coll;

struct wf_work {
    wf_process_group *pg;
    wf__coll_kind kind;
    uint64_t seq;              /* the group's collective number */
    size_t bytes;
    double deadline;           /* monotonic seconds */
    /* backend hooks: test() makes progress without blocking and sets *done; finish() runs
     * once after completion (AVG division, copy back from staging, unpadding); abort()
     * cancels what can be cancelled after a timeout; release() frees backend state. */
    int (*test)(wf_work *w, bool *done);
    int (*finish)(wf_work *w);
    void (*abort)(wf_work *w);
    void (*release)(wf_work *w);
    /* optional (NULL: the front-end polls test()): end a wait without blocking the host.
     * nccl sets it for CUDA-tensor ops: the caller's compute stream is made to wait for the
     * op's end event (PyTorch's work.wait()), then the work counts as complete: the
     * front-end runs finish() and release(), and drops keep[] (safe: every later use of that
     * memory is queued on the compute stream, now ordered after the op). The backend keeps
     * watching the op; a timeout or NCCL error after that fails the group's next call. */
    int (*stream_wait)(wf_work *w);
    void *impl;
    wf_tensor *keep[2];        /* retained until completion */
    bool done;
    int rc;
};

typedef struct wf__pg_backend {
    const char *name;
    /* make pg the world group of this process: set pg->rank, pg->size, pg->impl (ci is the
     * detected environment; o the caller's options, never NULL here). */
    int (*init)(wf_process_group *pg, const wf_cluster_info *ci, const wf_dist_options *o);
    /* can it move buffers of this device type? */
    bool (*supports)(const wf_process_group *pg, wf_device dev);
    /* start c; fill w's hooks. Blocking backends may complete at once (test then says done). */
    int (*start)(wf_process_group *pg, const wf__coll *c, wf_work *w);
    /* make child a group of the given parent ranks (collective over parent); child->rank,
     * size and impl are set by the backend. */
    int (*subgroup)(wf_process_group *parent, const int *ranks, int n, wf_process_group *child);
    void (*free)(wf_process_group *pg);
} wf__pg_backend;

extern const wf__pg_backend wf__backend_local, wf__backend_mpi, wf__backend_nccl;

#define WF_DIST_HISTORY 16
typedef struct wf__history_entry {
    uint64_t seq;
    wf__coll_kind kind;
    wf_dtype dtype;
    size_t bytes;
    int state;                 /* 0 started, 1 done, <0 error */
} wf__history_entry;

struct wf_process_group {
    const wf__pg_backend *be;
    void *impl;
    int rank, size;            /* rank in this group (-1: not a member) */
    int *world_ranks;          /* group rank -> world rank (size entries) */
    wf_process_group *parent;  /* NULL for the world group */
    double timeout_s;
    uint64_t seq;
    bool debug;                /* WF_DIST_DEBUG */
    int broken;                /* first fatal error code; later calls fail at once */
    char broken_msg[512];
    wf_store *store;           /* may be NULL; used to name absent ranks on timeouts */
    bool owns_store;
    wf__history_entry history[WF_DIST_HISTORY];
    int n_subgroups;           /* live children */
};

/* monotonic clock in seconds */
double wf__dist_now(void);
/* the default timeout: WF_DIST_TIMEOUT or 1800 s */
double wf__dist_default_timeout(void);

#endif
