/* dist/backend_mpi.c: the "mpi" backend (Open MPI). Every collective is a non-blocking MPI
 * call (MPI_Ibcast, ...) on the group's own duplicated communicator; the front-end polls
 * MPI_Test against the timeout. all_reduce runs weft's own algorithms instead (recursive
 * doubling, ring: dist/mpi_allreduce.c) over point-to-point messages on a second communicator,
 * unless WF_MPI_ALLREDUCE=mpi (see read_ar_config); all_gather and reduce_scatter likewise run
 * weft's own direct exchanges (dist/mpi_direct.h) unless WF_MPI_ALLGATHER / WF_MPI_REDUCE_SCATTER
 * = mpi. CUDA tensors are staged through host
 * memory (copied down before, up after), so several ranks can share one GPU.
 *
 * MPI has no 16-bit floats: f16 and bf16 travel as MPI_UINT16_T and reduce with user ops that
 * compute in float and round to nearest even (the rounding of one f16/bf16 add). bool reduces
 * with MPI_LOR (sum, max) and MPI_LAND (min, prod). avg is a sum divided by the group size
 * afterwards (integers truncate, as NCCL does).
 *
 * Error handling: weft's own communicators return errors (MPI_ERRORS_RETURN), which become
 * WF_EDIST; MPI_COMM_WORLD keeps the application's handler (weft only meets on it at startup).
 * A rank that dies makes mpirun abort the whole job (Open MPI's default when a rank exits
 * non-zero); one that stops calling collectives is caught by the front-end's timeout. */
#include "dist/dist_impl.h"

#ifdef WEFT_HAVE_MPI
#include <mpi.h>

#include <stdlib.h>
#include <string.h>

#include "dist/mpi_allreduce.h"
#include "dist/mpi_direct.h"

#ifdef WEFT_HAVE_CUDA
#include "tensor/cuda/cuda_api.h"
#endif

/* ---------------------------------------------------------------- MPI lifetime */

static int g_users;          /* live weft groups (and wf_dist_init calls in progress) */
static bool g_we_inited;     /* weft called MPI_Init_thread, so weft finalizes */
static int g_level = -1;     /* the thread level MPI provided */
static MPI_Op g_half_ops[2][4];   /* [bf16?][sum, max, min, prod] */

static int mpi_fail(int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return wf__error(WF_EDIST, "mpi backend: %s failed: %s", what, s);
}

/* f16 / bf16 reductions in float, rounded back to nearest even */
#define HALF_OP(name, load, store, expr)                                                \
    static void name(void *in, void *inout, int *len, MPI_Datatype *dt) {              \
        (void)dt;                                                                      \
        const uint16_t *a = in;                                                        \
        uint16_t *b = inout;                                                           \
        for (int i = 0; i < *len; i++) {                                               \
            float x = load(a[i]), y = load(b[i]);                                      \
            b[i] = store(expr);                                                        \
        }                                                                              \
    }
HALF_OP(f16_sum, wf__f16_to_f32, wf__f32_to_f16, x + y)
HALF_OP(f16_max, wf__f16_to_f32, wf__f32_to_f16, (x > y || x != x) ? x : y)
HALF_OP(f16_min, wf__f16_to_f32, wf__f32_to_f16, (x < y || x != x) ? x : y)
HALF_OP(f16_prod, wf__f16_to_f32, wf__f32_to_f16, x * y)
HALF_OP(bf16_sum, wf__bf16_to_f32, wf__f32_to_bf16, x + y)
HALF_OP(bf16_max, wf__bf16_to_f32, wf__f32_to_bf16, (x > y || x != x) ? x : y)
HALF_OP(bf16_min, wf__bf16_to_f32, wf__f32_to_bf16, (x < y || x != x) ? x : y)
HALF_OP(bf16_prod, wf__bf16_to_f32, wf__f32_to_bf16, x * y)

int wf__mpi_acquire(void) {
    int fin = 0, inited = 0;
    MPI_Finalized(&fin);
    if (fin) return wf__error(WF_ESTATE, "mpi backend: MPI was already finalized in this process and cannot start again");
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread");
        g_we_inited = true;
        g_level = provided;
    } else if (g_level < 0) {
        MPI_Query_thread(&g_level);
    }
    if (g_users++ == 0) {
        MPI_User_function *fns[2][4] = {{f16_sum, f16_max, f16_min, f16_prod}, {bf16_sum, bf16_max, bf16_min, bf16_prod}};
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < 4; k++) MPI_Op_create(fns[b][k], 1, &g_half_ops[b][k]);
    }
    return 0;
}

void wf__mpi_release(void) {
    if (g_users <= 0) return;
    if (--g_users > 0) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;   /* the application finalized MPI itself */
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 4; k++) MPI_Op_free(&g_half_ops[b][k]);
    if (g_we_inited) {
        MPI_Finalize();
        g_we_inited = false;
    }
}

int wf__mpi_thread_level(void) { return g_level; }

/* ---------------------------------------------------------------- types */

static MPI_Datatype mpi_type(wf_dtype dt) {
    switch (dt) {
    case WF_F32: return MPI_FLOAT;
    case WF_F64: return MPI_DOUBLE;
    case WF_F16:
    case WF_BF16: return MPI_UINT16_T;
    case WF_I64: return MPI_INT64_T;
    case WF_I32: return MPI_INT32_T;
    case WF_U8: return MPI_UINT8_T;
    case WF_BOOL: return MPI_C_BOOL;
    default: return MPI_DATATYPE_NULL;
    }
}

static MPI_Op mpi_op(wf_dtype dt, wf_dist_reduce_op op) {
    if (dt == WF_BOOL) return (op == WF_DIST_SUM || op == WF_DIST_MAX) ? MPI_LOR : MPI_LAND;
    int k = op == WF_DIST_MAX ? 1 : op == WF_DIST_MIN ? 2 : op == WF_DIST_PROD ? 3 : 0;
    if (dt == WF_F16 || dt == WF_BF16) return g_half_ops[dt == WF_BF16][k];
    return k == 1 ? MPI_MAX : k == 2 ? MPI_MIN : k == 3 ? MPI_PROD : MPI_SUM;
}

/* ---------------------------------------------------------------- group state */

/* How all_reduce runs (WF_MPI_ALLREDUCE, read when a group is made):
 *   auto (default): weft's own algorithms (dist/mpi_allreduce.c), recursive doubling below
 *         WF_MPI_RING_MIN bytes and the ring from it (with more than two ranks, Open MPI's
 *         path from WF_MPI_RING_MIN to WF_MPI_RING_MIN_MULTI, the ring above);
 *   weft: the same (kept as a name for A/B runs);
 *   rd / ring: one of weft's algorithms at every size (tests, benchmarks);
 *   mpi:  Open MPI's MPI_Iallreduce (blocking MPI_Allreduce after a bounded barrier for
 *         large blocking calls), as before.
 * Every rank must see the same setting (the choice is made per call from the size alone). */
enum { AR_AUTO, AR_WEFT, AR_RD, AR_RING, AR_MPI };
static const char *const ar_mode_names[] = {"auto", "weft", "rd", "ring", "mpi"};

/* from this many bytes the ring runs instead of recursive doubling (WF_MPI_RING_MIN). Measured
 * with 2 ranks (2 shared cores, best of 3): recursive doubling ahead to 64 KB (5.1 vs 2.8
 * GB/s), the two even from 128 KB to 1 MB, the ring ahead from 4 MB; with more ranks the
 * ring's share of the traffic (2 (N-1)/N against log2 N buffers) favours it sooner. */
#ifndef WF__MPI_RING_MIN
#define WF__MPI_RING_MIN ((size_t)256 * 1024)
#endif
/* with more than two ranks, sizes from WF_MPI_RING_MIN up to this (WF_MPI_RING_MIN_MULTI) take
 * Open MPI's path (see ar_algo) */
#ifndef WF__MPI_RING_MIN_MULTI
#define WF__MPI_RING_MIN_MULTI ((size_t)8 << 20)
#endif
/* the ring's chunk in bytes (WF_MPI_RING_CHUNK): a step's received chunk and the part of the
 * buffer it folds into stay in L2; 64 KB .. 1 MB measured within noise of each other here */
#ifndef WF__MPI_RING_CHUNK
#define WF__MPI_RING_CHUNK ((size_t)256 * 1024)
#endif
/* recursive doubling's message piece in bytes (WF_MPI_RD_PIECE; "none": whole messages):
 * under Open MPI's shared-memory eager limit (4096 bytes with its header) */
#ifndef WF__MPI_RD_PIECE
#define WF__MPI_RD_PIECE ((size_t)4000)
#endif

/* How all_gather and reduce_scatter run (WF_MPI_ALLGATHER, WF_MPI_REDUCE_SCATTER, read when a
 * group is made): auto (default): weft's own direct exchanges (dist/mpi_direct.h), except an
 * all_gather whose result reaches WF_MPI_ALLGATHER_MAX bytes, which takes Open MPI's path;
 * weft: weft's own at every size; mpi: Open MPI's MPI_Iallgather / MPI_Ireduce_scatter_block
 * (blocking forms after a bounded barrier for large blocking calls). Every rank must see the
 * same setting. Measured at 2 and 3 ranks on 2 shared cores (bench/NOTES.md, "Own all-gather
 * and reduce-scatter"): weft's reduce-scatter 1.2-5x faster at every size (Open MPI's libnbc
 * one is slow); its all-gather 1.4-2x faster to 1 MB, even at 4 MB with 2 ranks, 0.74-0.9x of
 * Open MPI's from 4 MB with 3 ranks and 16 MB with 2. */
enum { DC_AUTO, DC_WEFT, DC_MPI };
#ifndef WF__MPI_ALLGATHER_MAX
#define WF__MPI_ALLGATHER_MAX ((size_t)2 << 20)
#endif

typedef struct mpi_pg {
    MPI_Comm comm;   /* collectives */
    MPI_Comm dbg;    /* the WF_DIST_DEBUG agreement check (MPI_COMM_NULL when off) */
    MPI_Comm p2p;    /* weft's own all_reduce messages: apart from the user's send/recv tags */
    int ar_mode;
    int ag_mode, rs_mode;   /* DC_AUTO, DC_WEFT or DC_MPI */
    size_t ag_max;          /* auto: all_gather results from this many bytes take Open MPI's path */
    size_t ring_min, ring_min_multi, ring_chunk, rd_piece;
    unsigned ar_seq; /* all_reduce, all_gather and reduce_scatter calls on this group: each one's tag */
    wf__ar_scratch scratch;
} mpi_pg;

static size_t env_bytes(const char *name, size_t def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || v == 0) {   /* strtoull takes "-5" as a huge count */
        fprintf(stderr, "weft: %s=%s is not a positive byte count; using %zu\n", name, s, def);
        return def;
    }
    return (size_t)v;
}

/* read the all_reduce settings into m (an unknown mode is reported and ignored) */
static void read_ar_config(mpi_pg *m) {
    m->ar_mode = AR_AUTO;
    const char *s = getenv("WF_MPI_ALLREDUCE");
    if (s && *s) {
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(s, ar_mode_names[i])) k = i;
        if (k < 0) fprintf(stderr, "weft: WF_MPI_ALLREDUCE=%s is not auto, weft, rd, ring or mpi; using auto\n", s);
        else m->ar_mode = k;
    }
    const char *dc_env[2] = {"WF_MPI_ALLGATHER", "WF_MPI_REDUCE_SCATTER"};
    int *dc_mode[2] = {&m->ag_mode, &m->rs_mode};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(dc_env[i]);
        *dc_mode[i] = DC_AUTO;
        if (v && !strcmp(v, "mpi")) *dc_mode[i] = DC_MPI;
        else if (v && !strcmp(v, "weft")) *dc_mode[i] = DC_WEFT;
        else if (v && *v && strcmp(v, "auto"))
            fprintf(stderr, "weft: %s=%s is not auto, weft or mpi; using auto\n", dc_env[i], v);
    }
    m->ag_max = env_bytes("WF_MPI_ALLGATHER_MAX", WF__MPI_ALLGATHER_MAX);
    m->ring_min = env_bytes("WF_MPI_RING_MIN", WF__MPI_RING_MIN);
    m->ring_min_multi = env_bytes("WF_MPI_RING_MIN_MULTI", WF__MPI_RING_MIN_MULTI);
    m->ring_chunk = env_bytes("WF_MPI_RING_CHUNK", WF__MPI_RING_CHUNK);
    const char *pc = getenv("WF_MPI_RD_PIECE");
    m->rd_piece = pc && !strcmp(pc, "none") ? 0 : env_bytes("WF_MPI_RD_PIECE", WF__MPI_RD_PIECE);
}

/* Wait for req until deadline, letting other ranks run. WF_ETIMEOUT naming what. */
static int wait_req(MPI_Request *req, double deadline, const char *what) {
    unsigned it = 0;
    for (;;) {
        int flag = 0;
        int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
        if (flag) return 0;
        if (wf__dist_now() > deadline) return wf__error(WF_ETIMEOUT, "mpi backend: %s did not finish in time", what);
        wf__dist_backoff(&it);
    }
}

static int dup_comm(MPI_Comm from, MPI_Comm *to) {
    int rc = MPI_Comm_dup(from, to);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_dup");
    MPI_Comm_set_errhandler(*to, MPI_ERRORS_RETURN);
    return 0;
}

static void free_impl(mpi_pg *m) {
    if (!m) return;
    int fin = 0;
    MPI_Finalized(&fin);
    /* MPI_Comm_free is local and leaves operations still pending on the communicator alone
     * (an abandoned collective after a timeout), so it never waits. */
    if (!fin) {
        if (m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
        if (m->dbg != MPI_COMM_NULL) MPI_Comm_free(&m->dbg);
        if (m->p2p != MPI_COMM_NULL) MPI_Comm_free(&m->p2p);
    }
    wf__ar_scratch_free(&m->scratch);
    wf__free(m, sizeof *m);
}

static int mpi_init(wf_process_group *pg, const wf_cluster_info *ci, const wf_dist_options *o) {
    int rc = wf__mpi_acquire();
    if (rc) return rc;
    int size = 0, rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size != ci->world_size) {
        wf__mpi_release();
        return wf__error(WF_EDIST, "wf_dist_init: the environment (%s) says world size %d but MPI_COMM_WORLD has %d "
                         "rank(s): start the ranks with mpirun (or weft's launcher) for the mpi backend",
                         ci->env_name, ci->world_size, size);
    }
    /* Meet first with a bounded barrier: MPI_Comm_dup below blocks without a timeout. */
    MPI_Request req;
    rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) rc = mpi_fail(rc, "MPI_Ibarrier");
    else rc = wait_req(&req, wf__dist_now() + o->timeout_s, "wf_dist_init's startup barrier");
    if (rc == WF_ETIMEOUT)
        wf__error(WF_ETIMEOUT, "wf_dist_init: not every rank of the %d reached wf_dist_init within %g s "
                  "(ranks that did not arrive: unknown without a store)", size, o->timeout_s);
    mpi_pg *m = rc ? NULL : wf__calloc(1, sizeof *m);
    if (!rc && !m) rc = wf__error(WF_ENOMEM, "wf_dist_init: out of memory");
    if (m) {
        m->comm = m->dbg = m->p2p = MPI_COMM_NULL;
        read_ar_config(m);
        rc = dup_comm(MPI_COMM_WORLD, &m->comm);
        if (!rc) rc = dup_comm(MPI_COMM_WORLD, &m->p2p);
        if (!rc && pg->debug) rc = dup_comm(MPI_COMM_WORLD, &m->dbg);
    }
    if (rc) {
        free_impl(m);
        wf__mpi_release();
        return rc;
    }
    pg->rank = rank;
    pg->size = size;
    pg->impl = m;
    return 0;
}

static bool mpi_supports(const wf_process_group *pg, wf_device dev) {
    (void)pg;
    if (dev.type == WF_DEV_CPU) return true;
#ifdef WEFT_HAVE_CUDA
    if (dev.type == WF_DEV_CUDA) return true;   /* staged through host memory */
#endif
    return false;
}

static int mpi_subgroup(wf_process_group *parent, const int *ranks, int n, wf_process_group *child) {
    mpi_pg *p = parent->impl;
    MPI_Request req;
    int rc = MPI_Ibarrier(p->comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Ibarrier");
    rc = wait_req(&req, wf__dist_now() + parent->timeout_s, "the subgroup's barrier");
    if (rc == WF_ETIMEOUT)
        return wf__error(WF_ETIMEOUT, "wf_process_group_new_subgroup: not every rank of group %s called it within %g s",
                         parent->name, parent->timeout_s);
    if (rc) return rc;
    int idx = -1;
    for (int i = 0; i < n; i++)
        if (ranks[i] == parent->rank) idx = i;
    mpi_pg *m = wf__calloc(1, sizeof *m);
    if (!m) return wf__error(WF_ENOMEM, "wf_process_group_new_subgroup: out of memory");
    m->comm = m->dbg = m->p2p = MPI_COMM_NULL;
    read_ar_config(m);
    /* the key orders the new ranks as listed, so group rank i is ranks[i] */
    rc = MPI_Comm_split(p->comm, idx >= 0 ? 0 : MPI_UNDEFINED, idx >= 0 ? idx : 0, &m->comm);
    if (rc != MPI_SUCCESS) {
        wf__free(m, sizeof *m);
        return mpi_fail(rc, "MPI_Comm_split");
    }
    if (m->comm != MPI_COMM_NULL) {
        MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
        if ((rc = dup_comm(m->comm, &m->p2p)) != 0 || (child->debug && (rc = dup_comm(m->comm, &m->dbg)) != 0)) {
            free_impl(m);
            return rc;
        }
    }
    if ((rc = wf__mpi_acquire()) != 0) {
        free_impl(m);
        return rc;
    }
    child->rank = idx;
    child->size = n;
    child->impl = m;
    return 0;
}

static void mpi_free(wf_process_group *pg) {
    free_impl(pg->impl);
    pg->impl = NULL;
    wf__mpi_release();
}

static int mpi_exchange(wf_process_group *pg, const int64_t *mine, int n, int64_t *all, double deadline) {
    mpi_pg *m = pg->impl;
    if (m->dbg == MPI_COMM_NULL) {
        memcpy(all, mine, sizeof(int64_t) * (size_t)n);   /* made without WF_DIST_DEBUG: nothing to compare */
        for (int r = 1; r < pg->size; r++) memcpy(all + (size_t)r * n, mine, sizeof(int64_t) * (size_t)n);
        return 0;
    }
    /* Own buffers: after a timeout MPI may still use them, so they are then leaked. */
    size_t nb = sizeof(int64_t) * (size_t)n;
    int64_t *buf = wf__malloc(nb * (size_t)(pg->size + 1));
    if (!buf) return wf__error(WF_ENOMEM, "mpi backend: out of memory for the WF_DIST_DEBUG check");
    memcpy(buf, mine, nb);
    MPI_Request req;
    int rc = MPI_Iallgather(buf, n, MPI_INT64_T, buf + n, n, MPI_INT64_T, m->dbg, &req);
    if (rc != MPI_SUCCESS) rc = mpi_fail(rc, "MPI_Iallgather (WF_DIST_DEBUG)");
    else rc = wait_req(&req, deadline, "the WF_DIST_DEBUG agreement check");
    if (rc == WF_ETIMEOUT) return rc;
    if (!rc) memcpy(all, buf + n, nb * (size_t)pg->size);
    wf__free(buf, nb * (size_t)(pg->size + 1));
    return rc;
}

/* ---------------------------------------------------------------- one collective */

/* from this many bytes, a blocking collective runs as barrier + blocking MPI call */
#ifndef WF__MPI_BLOCKING_MIN
#define WF__MPI_BLOCKING_MIN ((size_t)256 * 1024)
#endif

typedef struct mpi_work {
    wf__coll c;
    MPI_Request req;
    bool arrival;               /* req is the arrival barrier of a blocking collective */
    MPI_Comm comm;
    MPI_Datatype dt;
    void *sbuf, *rbuf;          /* what MPI reads and writes (host staging for CUDA) */
    void *stage_s, *stage_r;    /* staging allocations (NULL for host tensors) */
    size_t stage_s_n, stage_r_n;
    size_t rbytes;              /* bytes of rbuf */
    bool writes;                /* this rank receives a result */
    bool rs_in_place;           /* Open MPI's reduce_scatter with out inside in (rank's slice):
                                   run with MPI_IN_PLACE, the result moved from slice 0 after */
    bool ag_in_place;           /* Open MPI's all_gather with in being out's slice of this rank:
                                   MPI_IN_PLACE (MPI forbids overlapping buffers) */
    wf__mpi_ar *ar;             /* weft's own all_reduce (NULL: an MPI request) */
    wf__mpi_direct *dc;         /* weft's own all_gather / reduce_scatter */
} mpi_work;

/* avg = sum / size on the host result. For a power-of-two size the floats are multiplied by
 * the reciprocal instead: the same bits (x * 2^-k and x / 2^k are the same exact value, rounded
 * once), but a multiply the compiler vectorizes where a division is a slow scalar loop (it was a
 * tenth of ZeRO-1's 2-rank MLP step, bench/NOTES.md "Own all-gather and reduce-scatter"). */
static void divide(void *p, int64_t n, wf_dtype dt, int size) {
    bool pow2 = size > 0 && (size & (size - 1)) == 0;
    switch (dt) {
    case WF_F32:
        if (pow2) {
            float inv = 1.0f / (float)size;
            for (int64_t i = 0; i < n; i++) ((float *)p)[i] *= inv;
        } else {
            for (int64_t i = 0; i < n; i++) ((float *)p)[i] /= (float)size;
        }
        break;
    case WF_F64:
        if (pow2) {
            double inv = 1.0 / (double)size;
            for (int64_t i = 0; i < n; i++) ((double *)p)[i] *= inv;
        } else {
            for (int64_t i = 0; i < n; i++) ((double *)p)[i] /= (double)size;
        }
        break;
    case WF_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = wf__f32_to_f16(wf__f16_to_f32(((uint16_t *)p)[i]) / (float)size);
        break;
    case WF_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)p)[i] = wf__f32_to_bf16(wf__bf16_to_f32(((uint16_t *)p)[i]) / (float)size);
        break;
    case WF_I64: for (int64_t i = 0; i < n; i++) ((int64_t *)p)[i] /= size; break;
    case WF_I32: for (int64_t i = 0; i < n; i++) ((int32_t *)p)[i] /= size; break;
    case WF_U8: for (int64_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)(((uint8_t *)p)[i] / size); break;
    default: break;
    }
}

/* The blocking collective itself, once every rank has arrived. */
static int run_blocking(wf_process_group *pg, mpi_work *mw) {
    const wf__coll *c = &mw->c;
    int cnt = (int)c->count, me = pg->rank, rc;
    MPI_Op op = mpi_op(c->dtype, c->op);
    switch (c->kind) {
    case WF_COLL_ALL_REDUCE: rc = MPI_Allreduce(MPI_IN_PLACE, mw->rbuf, cnt, mw->dt, op, mw->comm); break;
    case WF_COLL_BROADCAST: rc = MPI_Bcast(mw->rbuf, cnt, mw->dt, c->root, mw->comm); break;
    case WF_COLL_REDUCE:
        rc = me == c->root ? MPI_Reduce(MPI_IN_PLACE, mw->rbuf, cnt, mw->dt, op, c->root, mw->comm)
                           : MPI_Reduce(mw->sbuf, NULL, cnt, mw->dt, op, c->root, mw->comm);
        break;
    case WF_COLL_ALL_GATHER:
        rc = MPI_Allgather(mw->ag_in_place ? MPI_IN_PLACE : mw->sbuf, cnt, mw->dt, mw->rbuf, cnt, mw->dt, mw->comm);
        break;
    case WF_COLL_REDUCE_SCATTER:
        rc = mw->rs_in_place ? MPI_Reduce_scatter_block(MPI_IN_PLACE, mw->sbuf, cnt, mw->dt, op, mw->comm)
                             : MPI_Reduce_scatter_block(mw->sbuf, mw->rbuf, cnt, mw->dt, op, mw->comm);
        break;
    case WF_COLL_GATHER: rc = MPI_Gather(mw->sbuf, cnt, mw->dt, mw->rbuf, cnt, mw->dt, c->root, mw->comm); break;
    default: return wf__error(WF_EINVAL, "mpi backend: %s has no blocking form here", wf__coll_name(c->kind));
    }
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, wf__coll_name(c->kind));
}

static int mw_test(wf_work *w, bool *done) {
    mpi_work *mw = w->impl;
    int flag = 0;
    int rc = MPI_Test(&mw->req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, wf__coll_name(mw->c.kind));
    if (flag && mw->arrival) {
        /* Everyone is here: the blocking form cannot wait on an absent rank now (a rank that
         * dies mid-way makes mpirun end the job). */
        mw->arrival = false;
        if ((rc = run_blocking(w->pg, mw)) != 0) return rc;
    }
    *done = flag != 0;
    return 0;
}

/* the all_reduce algorithm for n bytes on group m of `ranks` ranks; 0: Open MPI's path.
 * Above two ranks the ring starts later (WF_MPI_RING_MIN_MULTI): on the H100 machine's host
 * (4 ranks, bench/bench_allreduce.c) Open MPI's path ran 1 MB at 1.00 of MPI_Allreduce and the
 * ring at 0.84, both 0.97 at 16 MB, and the ring 1.92 against 1.04 at 256 MB. */
static wf__ar_algo ar_algo(const mpi_pg *m, size_t n, int ranks) {
    switch (m->ar_mode) {
    case AR_MPI: return (wf__ar_algo)0;
    case AR_RD: return WF__AR_RD;
    case AR_RING: return WF__AR_RING;
    default:
        if (n < m->ring_min) return WF__AR_RD;
        if (ranks > 2 && n < m->ring_min_multi) return (wf__ar_algo)0;
        return WF__AR_RING;
    }
}

const char *wf__mpi_allreduce_path(const wf_process_group *pg, size_t bytes) {
    if (!pg || pg->be != &wf__backend_mpi || !pg->impl || ((const mpi_pg *)pg->impl)->comm == MPI_COMM_NULL) return NULL;
    wf__ar_algo a = ar_algo(pg->impl, bytes, pg->size);
    return a == WF__AR_RD ? "rd" : a == WF__AR_RING ? "ring" : "mpi";
}

/* weft's own all_gather (of a result of rn bytes) or reduce_scatter on group m? */
static bool dc_weft(const mpi_pg *m, bool all_gather, size_t rn) {
    int mode = all_gather ? m->ag_mode : m->rs_mode;
    return mode == DC_WEFT || (mode == DC_AUTO && (!all_gather || rn < m->ag_max));
}

const char *wf__mpi_direct_path(const wf_process_group *pg, bool all_gather, size_t bytes) {
    if (!pg || pg->be != &wf__backend_mpi || !pg->impl || ((const mpi_pg *)pg->impl)->comm == MPI_COMM_NULL) return NULL;
    return dc_weft(pg->impl, all_gather, bytes) ? "weft" : "mpi";
}

static int mw_ar_test(wf_work *w, bool *done) {
    mpi_work *mw = w->impl;
    return wf__mpi_ar_test(mw->ar, done);
}

static int mw_dc_test(wf_work *w, bool *done) {
    mpi_work *mw = w->impl;
    return wf__mpi_direct_test(mw->dc, done);
}

static int mw_finish(wf_work *w) {
    mpi_work *mw = w->impl;
    const wf__coll *c = &mw->c;
    if (!mw->writes) return 0;
    if (mw->rs_in_place) memmove(mw->rbuf, mw->sbuf, mw->rbytes);
    if (c->op == WF_DIST_AVG &&
        (c->kind == WF_COLL_ALL_REDUCE || c->kind == WF_COLL_REDUCE || c->kind == WF_COLL_REDUCE_SCATTER))
        divide(mw->rbuf, c->count, c->dtype, w->pg->size);
#ifdef WEFT_HAVE_CUDA
    if (mw->stage_r) return wf__cuda_from_host(c->recv, mw->stage_r, mw->rbytes, c->device.index);
#endif
    return 0;
}

static void mw_release(wf_work *w) {
    mpi_work *mw = w->impl;
    if (!mw) return;
    wf__mpi_ar_free(mw->ar, w->abandoned);
    wf__mpi_direct_free(mw->dc, w->abandoned);
    if (!w->abandoned) {   /* after a timeout MPI may still write into them: leaked */
        if (mw->stage_s) wf__host_free(mw->stage_s, mw->stage_s_n);
        if (mw->stage_r && mw->stage_r != mw->stage_s) wf__host_free(mw->stage_r, mw->stage_r_n);
        wf__free(mw, sizeof *mw);
    }
    w->impl = NULL;
}

static int mpi_start(wf_process_group *pg, const wf__coll *c, wf_work *w) {
    mpi_pg *m = pg->impl;
    mpi_work *mw = wf__calloc(1, sizeof *mw);
    if (!mw) return wf__error(WF_ENOMEM, "mpi backend: out of memory");
    w->impl = mw;
    w->test = mw_test;
    w->finish = mw_finish;
    w->abort = NULL;   /* MPI cannot cancel a collective: the request is abandoned */
    w->release = mw_release;
    mw->c = *c;
    mw->req = MPI_REQUEST_NULL;
    int S = pg->size, me = pg->rank;
    size_t es = wf_dtype_size(c->dtype);
    size_t n = (size_t)c->count * es;
    /* bytes this rank sends and receives; in-place ops share one buffer */
    size_t sn = 0, rn = 0;
    bool inplace = false;
    switch (c->kind) {
    case WF_COLL_ALL_REDUCE: sn = rn = n; inplace = true; mw->writes = true; break;
    case WF_COLL_BROADCAST: sn = rn = n; inplace = true; mw->writes = me != c->root; break;
    case WF_COLL_REDUCE: sn = rn = n; inplace = true; mw->writes = me == c->root; break;
    case WF_COLL_ALL_GATHER: sn = n; rn = n * (size_t)S; mw->writes = true; break;
    case WF_COLL_REDUCE_SCATTER: sn = n * (size_t)S; rn = n; mw->writes = true; break;
    case WF_COLL_GATHER: sn = n; rn = me == c->root ? n * (size_t)S : 0; mw->writes = me == c->root; break;
    case WF_COLL_SEND: sn = n; break;
    case WF_COLL_RECV: rn = n; mw->writes = true; break;
    default: break;
    }
    mw->rbytes = rn;
    mw->sbuf = (void *)c->send;
    mw->rbuf = c->recv;
#ifdef WEFT_HAVE_CUDA
    if (c->device.type == WF_DEV_CUDA) {
        /* Stage: copy the input down now (synchronous: the compute stream's writes are in),
         * copy the result up in finish(). */
        int rc = 0;
        if (sn) {
            mw->stage_s_n = sn;
            mw->stage_s = wf__host_alloc(sn);
            if (!mw->stage_s) return wf__error(WF_ENOMEM, "mpi backend: no host memory to stage %zu bytes", sn);
            rc = wf__cuda_to_host(mw->stage_s, c->send, sn, c->device.index);
            if (rc) return rc;
        }
        if (inplace) mw->stage_r = mw->stage_s, mw->stage_r_n = mw->stage_s_n;
        else if (rn) {
            mw->stage_r_n = rn;
            mw->stage_r = wf__host_alloc(rn);
            if (!mw->stage_r) return wf__error(WF_ENOMEM, "mpi backend: no host memory to stage %zu bytes", rn);
        }
        mw->sbuf = mw->stage_s;
        mw->rbuf = mw->stage_r;
    }
#else
    (void)inplace;
#endif
    MPI_Datatype dt = c->kind == WF_COLL_GATHER ? MPI_BYTE : mpi_type(c->dtype);
    int cnt = (int)c->count;
    int rc = MPI_SUCCESS;
    mw->comm = m->comm;
    mw->dt = dt;
    if (c->kind == WF_COLL_ALL_REDUCE) {
        /* every all_reduce takes a number, whichever path it runs, so the tags agree */
        int tag = (int)(m->ar_seq++ & 0x7fff);
        wf__ar_algo algo = ar_algo(m, n, pg->size);
        if (algo && S > 1) {
            w->test = mw_ar_test;
            rc = wf__mpi_ar_start(&mw->ar, algo, mw->rbuf, cnt, dt, es, mpi_op(c->dtype, c->op), m->p2p, me, S, tag,
                                  m->ring_chunk, m->rd_piece, &m->scratch);
            return rc;
        }
    }
    if (c->kind == WF_COLL_ALL_GATHER || c->kind == WF_COLL_REDUCE_SCATTER) {
        int tag = (int)(m->ar_seq++ & 0x7fff);   /* taken on every path, as all_reduce's */
        if (S > 1 && c->kind == WF_COLL_ALL_GATHER && dc_weft(m, true, rn)) {
            w->test = mw_dc_test;
            return wf__mpi_allgather_start(&mw->dc, mw->sbuf, mw->rbuf, cnt, dt, es, m->p2p, me, S, tag, m->rd_piece);
        }
        if (S > 1 && c->kind == WF_COLL_REDUCE_SCATTER && dc_weft(m, false, rn)) {
            w->test = mw_dc_test;
            return wf__mpi_reduce_scatter_start(&mw->dc, mw->sbuf, mw->rbuf, cnt, dt, es, mpi_op(c->dtype, c->op), m->p2p,
                                                me, S, tag, m->rd_piece, &m->scratch);
        }
    }
    /* MPI forbids overlapping buffers: an in-place reduce_scatter (out is in's slice of this
     * rank, as NCCL allows) reduces in in's place, its slice 0 then holds the result; an
     * in-place all_gather (in is out's slice) sends MPI_IN_PLACE */
    mw->rs_in_place = c->kind == WF_COLL_REDUCE_SCATTER && mw->rbuf == (char *)mw->sbuf + (size_t)me * rn;
    mw->ag_in_place = c->kind == WF_COLL_ALL_GATHER && mw->sbuf == (char *)mw->rbuf + (size_t)me * sn;
    /* Open MPI's non-blocking collectives (libnbc) run at about half the bandwidth of the
     * blocking ones (measured with 2 ranks on one host: 4 KB 1.5 vs 3.0-3.5 GB/s, 16 MB 1.4-2.2
     * vs 2.3-3.3 GB/s). A large collective the caller waits for at once therefore meets first
     * with a bounded non-blocking barrier (the timeout still catches a rank that never comes)
     * and then runs the blocking form, whose cost hides the barrier's few microseconds. */
    size_t big = sn > rn ? sn : rn;
    if (c->blocking && big >= WF__MPI_BLOCKING_MIN && c->kind != WF_COLL_BARRIER && c->kind != WF_COLL_SEND &&
        c->kind != WF_COLL_RECV) {
        mw->arrival = true;
        rc = MPI_Ibarrier(m->comm, &mw->req);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Ibarrier");
    }
    switch (c->kind) {
    case WF_COLL_ALL_REDUCE:
        rc = MPI_Iallreduce(MPI_IN_PLACE, mw->rbuf, cnt, dt, mpi_op(c->dtype, c->op), m->comm, &mw->req);
        break;
    case WF_COLL_BROADCAST: rc = MPI_Ibcast(mw->rbuf, cnt, dt, c->root, m->comm, &mw->req); break;
    case WF_COLL_REDUCE:
        rc = me == c->root ? MPI_Ireduce(MPI_IN_PLACE, mw->rbuf, cnt, dt, mpi_op(c->dtype, c->op), c->root, m->comm, &mw->req)
                           : MPI_Ireduce(mw->sbuf, NULL, cnt, dt, mpi_op(c->dtype, c->op), c->root, m->comm, &mw->req);
        break;
    case WF_COLL_ALL_GATHER:
        rc = MPI_Iallgather(mw->ag_in_place ? MPI_IN_PLACE : mw->sbuf, cnt, dt, mw->rbuf, cnt, dt, m->comm, &mw->req);
        break;
    case WF_COLL_REDUCE_SCATTER:
        rc = mw->rs_in_place
                 ? MPI_Ireduce_scatter_block(MPI_IN_PLACE, mw->sbuf, cnt, dt, mpi_op(c->dtype, c->op), m->comm, &mw->req)
                 : MPI_Ireduce_scatter_block(mw->sbuf, mw->rbuf, cnt, dt, mpi_op(c->dtype, c->op), m->comm, &mw->req);
        break;
    case WF_COLL_GATHER: rc = MPI_Igather(mw->sbuf, cnt, dt, mw->rbuf, cnt, dt, c->root, m->comm, &mw->req); break;
    case WF_COLL_BARRIER: rc = MPI_Ibarrier(m->comm, &mw->req); break;
    case WF_COLL_SEND: rc = MPI_Isend(mw->sbuf, cnt, dt, c->root, c->tag, m->comm, &mw->req); break;
    case WF_COLL_RECV: rc = MPI_Irecv(mw->rbuf, cnt, dt, c->root, c->tag, m->comm, &mw->req); break;
    default: return wf__error(WF_EINVAL, "mpi backend: unknown collective %d", (int)c->kind);
    }
    if (rc != MPI_SUCCESS) return mpi_fail(rc, wf__coll_name(c->kind));
    return 0;
}

const wf__pg_backend wf__backend_mpi = {
    .name = "mpi",
    .init = mpi_init,
    .supports = mpi_supports,
    .start = mpi_start,
    .subgroup = mpi_subgroup,
    .free = mpi_free,
    .exchange = mpi_exchange,
};

#endif /* WEFT_HAVE_MPI */
