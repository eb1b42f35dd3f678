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
#include "weft_config.h"

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
    bool blocking;             /* appended: the caller waits for it at once (work == NULL) */
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
    /* appended by collectives.c */
    const char *fn;            /* the front-end's name, for messages ("wf_dist_all_reduce") */
    bool abandoned;            /* timed out: the backend may still write into the buffers, so
                                  they (and keep[]) are leaked rather than freed */
    struct {                   /* WF_TRACE (dist/trace.h): the span of this collective */
        bool on, async;
        wf_dtype dtype;
        double t0_us;
        char tag[64];          /* wf__trace_tag_next_collective's args ("\"bucket\":3") */
    } trace;
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
    /* Optional (appended; NULL: WF_DIST_DEBUG falls back to pg->store, else is skipped):
     * gather n host int64 from every group rank into all (size * n, rank-major), blocking but
     * bounded by deadline (WF_ETIMEOUT after it). Used by the WF_DIST_DEBUG agreement check,
     * on a channel separate from the collectives'. */
    int (*exchange)(wf_process_group *pg, const int64_t *mine, int n, int64_t *all, double deadline);
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
    /* appended by process_group.c */
    char name[40];             /* "0" for the world, "0.2" for its 2nd subgroup ...: the same on
                                  every rank, so store keys ("wf/pg<name>/seq/<rank>") agree */
    int n_children_made;       /* numbers the next subgroup's name */
    wf_process_group *first_child, *next_sibling;   /* live subgroups (detached if the parent dies first) */
    bool holds_mpi;            /* a non-mpi world group made under mpirun keeps MPI up until freed */
};

/* monotonic clock in seconds */
double wf__dist_now(void);
/* the default timeout: WF_DIST_TIMEOUT or 1800 s */
double wf__dist_default_timeout(void);

/* ---------------------------------------------------------------- process_group.c helpers
 * (used by collectives.c and the backends) */

/* One step of a polling loop's back-off: spins for the first calls, then sched_yield (MPI
 * progresses only while tested; ranks oversubscribed on few cores still let each other run),
 * then, after a long wait, sleeps growing to 1 ms. *iter starts at 0; the call advances it. */
void wf__dist_backoff(unsigned *iter);
/* Record the collective w in pg's history (state "started"); update it when it ends. */
void wf__pg_history_start(wf_process_group *pg, const wf_work *w, wf_dtype dtype);
void wf__pg_history_end(wf_process_group *pg, uint64_t seq, int state);
/* Fail with pg's first fatal error if pg is broken (records it again, returns the code);
 * 0 otherwise. fn names the caller. */
int wf__pg_check_broken(wf_process_group *pg, const char *fn);
/* Break pg with this error (the first one sticks). Returns code. */
int wf__pg_break(wf_process_group *pg, int code, const char *msg);
/* The timeout of w (fn: the front-end's name): names the op, seq, bytes and the ranks that
 * did not join (through pg->store when set), prints the history to stderr, breaks the
 * group. Returns WF_ETIMEOUT with the message recorded. */
int wf__pg_timeout(wf_process_group *pg, const char *fn, wf__coll_kind kind, uint64_t seq, size_t bytes);

#ifdef WEFT_HAVE_MPI
/* MPI lifetime (backend_mpi.c): acquire initializes MPI (MPI_THREAD_MULTIPLE asked) when
 * nobody has, and counts a user; release drops one and finalizes when the last user goes,
 * only if weft initialized it. Returns 0 or WF_EDIST / WF_ESTATE (already finalized). */
int wf__mpi_acquire(void);
void wf__mpi_release(void);
/* the thread level MPI provided (MPI_THREAD_*), -1 before any acquire */
int wf__mpi_thread_level(void);
#endif

/* ---------------------------------------------------------------- cluster environments */

/* true when the variable is set and not empty (dist/cluster_env.c) */
bool wf__env_set(const char *name);
/* What each built-in cluster environment reads, into *out: dist/cluster_env_fill.c (the
 * minimal preset: dist/cluster_env_fill_stub.c). 0 or a code naming the variable. */
int wf__torchrun_fill(const wf_cluster_env *e, wf_cluster_info *out);
int wf__slurm_fill(const wf_cluster_env *e, wf_cluster_info *out);
int wf__mpi_fill(const wf_cluster_env *e, wf_cluster_info *out);
int wf__weft_fill(const wf_cluster_env *e, wf_cluster_info *out);
int wf__local_fill(const wf_cluster_env *e, wf_cluster_info *out);

#endif
