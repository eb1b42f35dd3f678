/* weft/dist.h: processes that train together (torch.distributed in C).
 *
 * Four pieces, each usable alone:
 *  - cluster environments: who am I (rank, world size, node) and where do we meet, read from
 *    the variables of torchrun, SLURM, Open MPI or weft's own launcher;
 *  - a TCP key-value store (rendezvous: rank 0 serves, every rank sets/gets/waits/adds);
 *  - process groups with collectives over three backends: "mpi" (Open MPI; CPU tensors, and
 *    CUDA tensors staged through pinned host memory), "nccl" (CUDA tensors, own stream,
 *    ordered against the compute stream with events) and "local" (a world of one);
 *  - launching: start N local processes (through mpirun for CPU ranks), supervise them, and
 *    stop them all when one dies, naming it.
 *
 *     wf_process_group *pg = wf_dist_init(NULL);          // detects the environment
 *     wf_dist_all_reduce(pg, grad, WF_DIST_AVG, NULL);   // in place, on every rank
 *     wf_process_group_free(pg);
 *
 * Every blocking call has a timeout (default 30 minutes; WF_DIST_TIMEOUT=seconds or the
 * options). A timeout is WF_ETIMEOUT whose message names the op, its sequence number, its
 * bytes and the ranks that did not join; a failed peer is WF_EDIST. After either, the group
 * is broken: every later call on it fails at once with the first error. WF_DIST_DEBUG=1
 * makes every collective first check that all ranks agree on op, dtype and shape.
 *
 * Errors follow weft/tensor.h: NULL or a negative WF_E* code with wf_error_message().
 */
#ifndef WEFT_DIST_H
#define WEFT_DIST_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ cluster environments */

/* Where this process stands. Filled by a cluster environment. */
typedef struct wf_cluster_info {
    char env_name[32];         /* "torchrun", "slurm", "mpi", "weft", "local" or the plugin's */
    int world_size;            /* processes in the job */
    int global_rank;           /* 0..world_size-1 */
    int local_rank;            /* rank on this node */
    int local_world_size;      /* processes on this node */
    int node_rank;             /* 0..num_nodes-1 */
    int num_nodes;
    char main_address[256];    /* MASTER_ADDR; "127.0.0.1" when one node and unset */
    int main_port;             /* MASTER_PORT; 0 when unset (the store then picks one) */
    bool creates_processes_externally;   /* processes were started by the environment */
} wf_cluster_info;

/* A cluster environment (Lightning's ClusterEnvironment): detect() tells whether this
 * process runs under it; fill() reads the values. Users may pass their own in the Fabric
 * config (plugins); the built-in ones are below. */
typedef struct wf_cluster_env {
    const char *name;
    bool (*detect)(const struct wf_cluster_env *env);
    int (*fill)(const struct wf_cluster_env *env, wf_cluster_info *out);   /* 0 or a code */
    void *ud;
} wf_cluster_env;

extern const wf_cluster_env wf_cluster_env_torchrun;  /* RANK, WORLD_SIZE, LOCAL_RANK, GROUP_RANK, MASTER_* */
extern const wf_cluster_env wf_cluster_env_slurm;     /* SLURM_NTASKS, SLURM_PROCID, ...; port from the job id */
extern const wf_cluster_env wf_cluster_env_mpi;       /* OMPI_COMM_WORLD_*; node rank from the hosts */
extern const wf_cluster_env wf_cluster_env_weft;      /* weft's launcher (WF_LAUNCH_*) */
extern const wf_cluster_env wf_cluster_env_local;     /* a world of one */

/* Detect and fill *out: weft's launcher first when WF_LAUNCH_RANK is set (its ranks also
 * carry torchrun's variables and may run inside a SLURM job that describes the launcher),
 * then Fabric's order: torchrun, SLURM, Open MPI, else local. Inconsistent variables
 * (rank >= world size, non-numbers) are WF_EINVAL naming the variable. Returns 0 or a code.
 *
 * What each reads:
 *  - torchrun (all of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set): GROUP_RANK
 *    is the node rank, LOCAL_WORLD_SIZE the processes per node, num_nodes = world / local.
 *  - slurm (SLURM_NTASKS set, SLURM_JOB_NAME not "bash"/"interactive"): SLURM_PROCID,
 *    SLURM_LOCALID, SLURM_NODEID, SLURM_NODELIST ("node[1-3,5],gpu07": its first host is the
 *    main address unless MASTER_ADDR is set), SLURM_NTASKS_PER_NODE, SLURM_NNODES; the port
 *    is MASTER_PORT, else 15000 + the last four digits of SLURM_JOB_ID (Lightning's rule).
 *  - mpi (OMPI_COMM_WORLD_SIZE and _RANK set): _LOCAL_RANK, _LOCAL_SIZE; with MPI initialized
 *    the node rank is this host's index among the ranks' distinct host names (an Allgather
 *    over MPI_COMM_WORLD, so every rank must call it then), before MPI_Init it is
 *    rank / local size (mpirun's default mapping); MASTER_ADDR or 127.0.0.1, MASTER_PORT or 0.
 *  - weft (WF_LAUNCH_RANK and WF_LAUNCH_WORLD_SIZE set, by wf_launch_processes for the ranks
 *    it starts itself): WF_LAUNCH_LOCAL_RANK, WF_LAUNCH_LOCAL_SIZE, WF_LAUNCH_NODE_RANK,
 *    WF_LAUNCH_NUM_NODES, MASTER_ADDR, MASTER_PORT. Those ranks also get torchrun's names
 *    (for programs that read them) and may run inside a SLURM job whose variables describe
 *    the launcher, so where WF_LAUNCH_RANK is set, weft's environment is chosen first.
 *  - local: a world of one (MASTER_ADDR/MASTER_PORT still read). */
int wf_cluster_detect(wf_cluster_info *out);

/* Check a rank -> GPU mapping before NCCL starts: devices[r] is the CUDA index of global
 * rank r on node nodes[r] (n ranks). Two ranks on one GPU of one node is WF_EINVAL naming
 * both ranks and the device. Returns 0 or a code. */
int wf_dist_check_device_map(const int *nodes, const int *devices, int n);

/* ================================================================ TCP store */

typedef struct wf_store wf_store;

typedef struct wf_store_opts {
    double timeout_s;   /* bound on every wait and connect; 0 = WF_DIST_TIMEOUT or 1800 */
    int world_size;     /* ranks expected (for wf_store_wait_ranks); 0 = unknown */
} wf_store_opts;

/* Rank 0 serves (is_server) on host:port (port 0 = any free port; wf_store_port tells which)
 * and also acts as a client; other ranks connect, retrying until the timeout. Messages are
 * length-prefixed; malformed or oversized ones (keys over 4 KB, values over 64 MB) are
 * refused and the connection dropped, never trusted. Owned by the caller (wf_store_free).
 * NULL + WF_EDIST / WF_ETIMEOUT naming host:port. */
wf_store *wf_store_new(const char *host, int port, bool is_server, const wf_store_opts *o);
int wf_store_port(const wf_store *s);
/* set(key, value) overwrites. */
int wf_store_set(wf_store *s, const char *key, const void *value, size_t n);
/* get(key): waits until the key exists (bounded); *value is malloc'ed (the caller free()s
 * it), *n its length. WF_ETIMEOUT naming the key. */
int wf_store_get(wf_store *s, const char *key, void **value, size_t *n);
/* wait(keys): until all exist. WF_ETIMEOUT naming the missing keys. */
int wf_store_wait(wf_store *s, const char *const *keys, int n, double timeout_s);
/* add(key, delta): atomic counter (a missing key counts 0); *out the new value (may be NULL). */
int wf_store_add(wf_store *s, const char *key, int64_t delta, int64_t *out);
/* Does key exist (no wait)? 1, 0, or a code. */
int wf_store_check(wf_store *s, const char *key);
/* Startup barrier: every rank adds itself under prefix and waits for world_size arrivals;
 * a timeout lists the ranks that never arrived. */
int wf_store_wait_ranks(wf_store *s, const char *prefix, int rank, int world_size, double timeout_s);
void wf_store_free(wf_store *s);   /* NULL ok; the server stops when its owner frees it */

/* ================================================================ process groups */

typedef struct wf_process_group wf_process_group;
typedef struct wf_work wf_work;

typedef enum wf_dist_reduce_op {
    WF_DIST_SUM = 0, WF_DIST_AVG, WF_DIST_MAX, WF_DIST_MIN, WF_DIST_PROD
} wf_dist_reduce_op;

typedef struct wf_dist_options {
    const char *backend;      /* "auto" (NULL): nccl for a CUDA device when built with NCCL,
                                 else mpi when world size > 1, else local; or "mpi", "nccl", "local" */
    double timeout_s;         /* per collective; 0 = WF_DIST_TIMEOUT or 1800 */
    const wf_cluster_info *cluster;   /* NULL: wf_cluster_detect() */
    wf_device device;         /* this rank's device (nccl: its CUDA device) */
    wf_store *store;          /* borrowed; NULL: one is made when the backend needs it */
} wf_dist_options;

/* The world group of this process. Under an MPI launcher MPI is initialized (and finalized
 * when the last group is freed). The group owns what it made (store, communicators); free
 * with wf_process_group_free. NULL + error (WF_ENOTSUP: backend not in this build; WF_EDIST /
 * WF_ETIMEOUT: the ranks could not meet, naming those missing). */
wf_process_group *wf_dist_init(const wf_dist_options *o);
/* A group of the given world ranks (PyTorch's new_group): every rank of pg must call it with
 * the same list. Ranks outside the list get a group whose rank is -1 (collectives on it are
 * WF_EINVAL). Owned by the caller; free it before its parent. */
wf_process_group *wf_process_group_new_subgroup(wf_process_group *pg, const int *ranks, int n);
void wf_process_group_free(wf_process_group *pg);   /* NULL ok */

int wf_process_group_rank(const wf_process_group *pg);        /* -1 when not a member */
int wf_process_group_size(const wf_process_group *pg);
const char *wf_process_group_backend(const wf_process_group *pg);   /* "mpi", "nccl", "local" */
double wf_process_group_timeout(const wf_process_group *pg);
/* The group's rank of world rank r, or -1. */
int wf_process_group_rank_of(const wf_process_group *pg, int world_rank);

/* Collectives. Tensors must be contiguous, on a device the backend serves, of any weft
 * dtype (bool reduces as logical or/and). All ranks must call the same collectives in the
 * same order with matching dtypes and sizes (WF_DIST_DEBUG=1 checks it).
 * work == NULL: blocking. Otherwise *work receives a handle and the call returns at once;
 * the tensors stay retained until the work completes: wf_work_wait / wf_work_test, then
 * wf_work_free (freeing an unfinished work waits for it first). */
int wf_dist_all_reduce(wf_process_group *pg, wf_tensor *t, wf_dist_reduce_op op, wf_work **work);
int wf_dist_broadcast(wf_process_group *pg, wf_tensor *t, int src, wf_work **work);
/* The result lands on dst; other ranks' t is left unspecified. */
int wf_dist_reduce(wf_process_group *pg, wf_tensor *t, int dst, wf_dist_reduce_op op, wf_work **work);
/* all_gather_into_tensor: out's first dimension is size x in's, rank r's slice at r. In
 * place: in may be out's slice r itself. */
int wf_dist_all_gather(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_work **work);
/* Unequal first dimensions: sizes are exchanged, inputs padded to the largest, gathered and
 * trimmed; returns [sum of first dims, ...] (a new tensor in the caller's scope) or NULL. */
wf_tensor *wf_dist_all_gather_uneven(wf_process_group *pg, wf_tensor *in);
/* reduce_scatter_tensor: in's first dimension is size x out's; rank r gets the reduced slice r.
 * In place: out may be in's slice r itself (in's other slices are then left undefined). */
int wf_dist_reduce_scatter(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_dist_reduce_op op, wf_work **work);
int wf_dist_barrier(wf_process_group *pg);
/* Point to point (blocking): t's size and dtype must match on both ends. */
int wf_dist_send(wf_process_group *pg, wf_tensor *t, int dst, int tag);
int wf_dist_recv(wf_process_group *pg, wf_tensor *t, int src, int tag);
/* Bytes (objects): broadcast n bytes from src; gather n bytes from each rank into out
 * (size x n bytes, on dst only; other ranks may pass NULL). */
int wf_dist_broadcast_bytes(wf_process_group *pg, void *buf, size_t n, int src);
int wf_dist_gather_bytes(wf_process_group *pg, const void *buf, size_t n, void *out, int dst);

/* Async handles. wait: 0 or the collective's error (bounded by the group's timeout).
 * test: *done tells whether it finished; returns 0 or its error. */
int wf_work_wait(wf_work *w);
int wf_work_test(wf_work *w, bool *done);
void wf_work_free(wf_work *w);   /* NULL ok; waits for an unfinished work first */

/* The last collectives this process issued on pg, newest last, as text lines
 * ("#12 all_reduce float32 4096 B done"); written into buf (NUL-terminated, truncated to n).
 * Printed on every timeout. Returns the length written. */
size_t wf_process_group_history(const wf_process_group *pg, char *buf, size_t n);

/* ================================================================ launching
 *
 * Direct mode (GPU ranks): the launcher forks and execs every rank with RANK, LOCAL_RANK,
 * WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT and WF_LAUNCH_RANK,
 * WF_LAUNCH_WORLD_SIZE, WF_LAUNCH_LOCAL_RANK, WF_LAUNCH_LOCAL_SIZE, WF_LAUNCH_NODE_RANK,
 * WF_LAUNCH_NUM_NODES; ranks stay in the launcher's process group and die with it
 * (PR_SET_PDEATHSIG).
 * mpirun mode (CPU ranks): `mpirun -np N --oversubscribe --bind-to none [--allow-run-as-root]
 * -x WF_* -x OMP_NUM_THREADS -x MASTER_ADDR -x MASTER_PORT ... PROGRAM ARGS` in its own
 * process group, with WF_LAUNCH_STATUS_DIR naming a private directory. Each rank runs under a
 * per-rank supervisor that records "<rank> exit|signal <n> <monotonic time>" there when the
 * rank ends, forwards SIGTERM/SIGINT/SIGHUP to it and exits the same way; the launcher polls
 * the directory, so the report names the first rank that failed. The supervisor is
 * wf_launch_rank_begin() in weft programs (wf_fabric_launch calls it), or `weft __rank` for
 * any program under `weft run`; a rank without one still runs and is stopped, but a failure
 * can then only be reported as mpirun's exit status.
 * A SIGINT/SIGTERM/SIGHUP to the launcher stops the ranks the same way and returns 128+signal
 * with "weft: interrupted by signal N". */

typedef struct wf_launch_opts {
    int nprocs;                /* local processes (>= 1) */
    int num_nodes;             /* 0 = 1 */
    int node_rank;
    const char *main_address;  /* NULL = 127.0.0.1 */
    int main_port;             /* 0 = a free port */
    bool use_mpirun;           /* start ranks through Open MPI's mpirun (CPU ranks) */
    double grace_s;            /* SIGTERM -> SIGKILL grace period; 0 = 5 s */
    const char *const *env;    /* extra "NAME=value" entries for every rank, NULL-terminated (may be NULL) */
    int max_restarts;          /* torchrun's --max-restarts: after a failure, start every rank again up
                                * to this many times (0..1000000; 0 = never; one node only) */
} wf_launch_opts;

/* Run argv (argv[0] a path or a program on PATH) as o->nprocs local ranks and supervise
 * them: OMP_NUM_THREADS is set to cores / nprocs when unset; when a rank exits non-zero or
 * is killed, the others get SIGTERM, then SIGKILL after the grace period, and the result
 * names the first rank that failed with its exit status or signal. Returns the exit status
 * to exit with (0 when all succeeded, the failing rank's status, 128+signal when killed)
 * or a negative code when nothing could be started; *report (may be NULL) receives a
 * malloc'ed line naming the failure (the caller free()s it), NULL when all succeeded. */
int wf_launch_processes(const char *const *argv, const wf_launch_opts *o, char **report);
/* With o->max_restarts > 0, a failure (after the others were stopped as above) prints one
 * line to stderr naming the rank, its status or signal and the attempt, and starts every
 * rank again as a new world: a fresh MASTER_PORT (unless main_port is fixed) and the attempt
 * number in WF_RESTART_COUNT and TORCHELASTIC_RESTART_COUNT (0 on the first start;
 * TORCHELASTIC_MAX_RESTARTS holds the limit), so the program can resume from its checkpoint.
 * An interruption is never restarted. When the restarts are used up, the result is the last
 * attempt's, its report ending "(after N restarts)". */
/* Re-execute this program (/proc/self/exe with its arguments) as o->nprocs local ranks
 * under the supervision above. On success it does not return: the process exits with the
 * job's status (the failure report printed to stderr). Returns a negative code when nothing
 * could be started. */
int wf_launch_self(const wf_launch_opts *o);
/* In a rank that a weft launcher started through mpirun: split into a small supervisor that
 * waits for the rank and records its exit status or signal for the launcher, and the rank
 * itself, which returns 0 and goes on. Elsewhere a no-op returning 0. */
int wf_launch_rank_begin(void);
/* Is this process a rank started by a launcher (weft's, torchrun, SLURM, mpirun)? */
bool wf_launched(void);

#ifdef __cplusplus
}
#endif
#endif
