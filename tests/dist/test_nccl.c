/* tests/dist/test_nccl.c: the nccl backend on a GPU (a plain C program: the GPU machine has no
 * Check library). Prints "N passed, M failed"; exit 0, 1 on a failure, 77 (skip) without a
 * GPU.
 *
 *   test_nccl              one rank: a world-of-one communicator runs every op for every
 *                          dtype through NCCL, in place and out of place, against a CPU
 *                          reference; async handles; stream ordering; subgroups; bad inputs;
 *                          a failed or timed-out op aborts the communicator and breaks the
 *                          group.
 *   test_nccl --same-gpu   two ranks both on cuda:0 (under `mpirun -np 2`, else two forked
 *                          processes meeting through the TCP store): wf_dist_init's nccl
 *                          backend refuses with an error naming both ranks, before NCCL
 *                          (and before any GPU is touched: this mode needs no GPU).
 *
 * The backend is driven through its vtable (dist/dist_impl.h), as the front-end does: start,
 * then stream_wait or test() polled against a deadline, finish, release. */
#include "dist/dist_impl.h"
#include "tensor/cuda/cuda_api.h"
#include "weft_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef WEFT_HAVE_NCCL
#include <cuda_runtime_api.h>
#endif
#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#endif

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) n_pass++;                                                       \
        else {                                                                    \
            n_fail++;                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                           \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
        }                                                                         \
    } while (0)

static int report(void) {
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

#ifndef WEFT_HAVE_NCCL
int main(void) {
    printf("SKIP: weft was built without NCCL\n");
    return 77;
}
#else

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *kind_name(wf__coll_kind k) {
    static const char *names[WF_COLL_COUNT] = {"all_reduce", "broadcast", "reduce", "all_gather",
                                               "reduce_scatter", "barrier", "send", "recv", "gather"};
    return (unsigned)k < WF_COLL_COUNT ? names[k] : "?";
}

static cudaStream_t compute(void) { return (cudaStream_t)wf__cuda_stream(0); }

/* ---------------------------------------------------------------- a minimal front-end */

static uint64_t g_seq;

typedef enum { WAIT_STREAM, WAIT_POLL } wait_mode;

/* start c and wait for it as wf_work_wait would; timeout_s bounds the wait */
static int run_coll(wf_process_group *pg, const wf__coll *c, wait_mode mode, double timeout_s) {
    wf_work w;
    memset(&w, 0, sizeof w);
    w.pg = pg;
    w.kind = c->kind;
    w.seq = ++g_seq;
    w.bytes = (size_t)c->count * wf_dtype_size(c->dtype);
    w.deadline = now_s() + timeout_s;
    int rc = pg->be->start(pg, c, &w);
    if (rc) return rc;
    if (mode == WAIT_STREAM && w.stream_wait) {
        rc = w.stream_wait(&w);
    } else {
        bool done = false;
        while (!done && !rc) {
            rc = w.test(&w, &done);
            if (!done && !rc && now_s() > w.deadline) {
                w.abort(&w);
                rc = wf__error(WF_ETIMEOUT, "test front-end: #%llu %s timed out",
                               (unsigned long long)w.seq, kind_name(c->kind));
            }
        }
    }
    if (!rc && w.finish) rc = w.finish(&w);
    w.release(&w);
    return rc;
}

/* ---------------------------------------------------------------- buffers */

static const wf_dtype DTYPES[] = {WF_F64, WF_F32, WF_F16, WF_BF16, WF_I64, WF_I32, WF_U8, WF_BOOL};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

/* element i of the test input: small exact values (1..7; bool 0/1) */
static void fill_host(void *dst, wf_dtype dt, int64_t n, int salt) {
    for (int64_t i = 0; i < n; i++) {
        int v = (int)((i + salt) % 7) + 1;
        switch (dt) {
        case WF_F64: ((double *)dst)[i] = v; break;
        case WF_F32: ((float *)dst)[i] = (float)v; break;
        case WF_F16: ((uint16_t *)dst)[i] = wf__f32_to_f16((float)v); break;
        case WF_BF16: ((uint16_t *)dst)[i] = wf__f32_to_bf16((float)v); break;
        case WF_I64: ((int64_t *)dst)[i] = v; break;
        case WF_I32: ((int32_t *)dst)[i] = v; break;
        case WF_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
        case WF_BOOL: ((uint8_t *)dst)[i] = (uint8_t)(v % 2); break;
        default: break;
        }
    }
}

static void *dev_alloc(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n ? n : 1) != cudaSuccess) { printf("cudaMalloc(%zu) failed\n", n); exit(1); }
    return p;
}

/* copies on the compute stream, as weft's own kernels would be queued */
static void to_dev(void *d, const void *h, size_t n) {
    cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, compute());
    cudaStreamSynchronize(compute());
}
static void garbage(void *d, size_t n) { cudaMemsetAsync(d, 0xAB, n, compute()); }
static int from_dev(void *h, const void *d, size_t n) {
    cudaMemcpyAsync(h, d, n, cudaMemcpyDeviceToHost, compute());
    return cudaStreamSynchronize(compute()) == cudaSuccess ? 0 : -1;
}

static wf__coll coll(wf__coll_kind k, const void *send, void *recv, int64_t n, wf_dtype dt, wf_dist_reduce_op op) {
    wf__coll c;
    memset(&c, 0, sizeof c);
    c.kind = k;
    c.send = send;
    c.recv = recv;
    c.count = n;
    c.dtype = dt;
    c.op = op;
    c.root = 0;
    c.device = WF_CUDA(0);
    return c;
}

static int init_world1(wf_process_group *pg, double timeout_s) {
    memset(pg, 0, sizeof *pg);
    pg->be = &wf__backend_nccl;
    pg->timeout_s = timeout_s;
    wf_cluster_info ci;
    memset(&ci, 0, sizeof ci);
    snprintf(ci.env_name, sizeof ci.env_name, "local");
    ci.world_size = 1;
    ci.local_world_size = 1;
    ci.num_nodes = 1;
    wf_dist_options o;
    memset(&o, 0, sizeof o);
    o.backend = "nccl";
    o.timeout_s = timeout_s;
    o.device = WF_CUDA(0);
    return pg->be->init(pg, &ci, &o);
}

/* ---------------------------------------------------------------- every op, every dtype */

static const wf_dist_reduce_op OPS[] = {WF_DIST_SUM, WF_DIST_AVG, WF_DIST_MAX, WF_DIST_MIN, WF_DIST_PROD};
static const char *OP_NAMES[] = {"sum", "avg", "max", "min", "prod"};

static void test_ops(wf_process_group *pg) {
    const int64_t n = 1027;
    for (int d = 0; d < N_DTYPES; d++) {
        wf_dtype dt = DTYPES[d];
        size_t bytes = (size_t)n * wf_dtype_size(dt);
        unsigned char *in = malloc(bytes), *out = malloc(bytes);
        void *a = dev_alloc(bytes), *b = dev_alloc(bytes);
        fill_host(in, dt, n, d);
        const char *dn = wf_dtype_name(dt);
        /* world of one: every result equals the input; out of place with a garbage-filled
         * output shows that NCCL really wrote it */
        for (int o = 0; o < 5; o++) {
            for (int inplace = 0; inplace < 2; inplace++) {
                for (int k = 0; k < 3; k++) {
                    wf__coll_kind kind = k == 0 ? WF_COLL_ALL_REDUCE : k == 1 ? WF_COLL_REDUCE : WF_COLL_REDUCE_SCATTER;
                    to_dev(a, in, bytes);
                    garbage(b, bytes);
                    void *dst = inplace ? a : b;
                    wf__coll c = coll(kind, a, dst, n, dt, OPS[o]);
                    int rc = run_coll(pg, &c, k == 1 ? WAIT_POLL : WAIT_STREAM, 30);
                    if (dt == WF_BOOL && OPS[o] == WF_DIST_AVG) {
                        CHECK(rc == WF_EDTYPE && strstr(wf_error_message(), "avg"),
                              "%s bool avg: rc %d (%s)", kind_name(kind), rc, wf_error_message());
                        continue;
                    }
                    memset(out, 0, bytes);
                    CHECK(rc == 0 && from_dev(out, dst, bytes) == 0 && memcmp(out, in, bytes) == 0,
                          "%s %s %s %s: rc %d (%s)", kind_name(kind), OP_NAMES[o], dn,
                          inplace ? "in place" : "out of place", rc, rc ? wf_error_message() : "wrong values");
                }
            }
        }
        /* broadcast, all_gather, gather (device bytes as this dtype) */
        wf__coll_kind kinds[] = {WF_COLL_BROADCAST, WF_COLL_ALL_GATHER, WF_COLL_GATHER};
        for (int k = 0; k < 3; k++) {
            for (int inplace = 0; inplace < 2; inplace++) {
                to_dev(a, in, bytes);
                garbage(b, bytes);
                void *dst = inplace ? a : b;
                wf__coll c = coll(kinds[k], a, dst, n, dt, WF_DIST_SUM);
                int rc = run_coll(pg, &c, inplace ? WAIT_POLL : WAIT_STREAM, 30);
                memset(out, 0, bytes);
                CHECK(rc == 0 && from_dev(out, dst, bytes) == 0 && memcmp(out, in, bytes) == 0,
                      "%s %s %s: rc %d (%s)", kind_name(kinds[k]), dn, inplace ? "in place" : "out of place", rc,
                      rc ? wf_error_message() : "wrong values");
            }
        }
        cudaFree(a);
        cudaFree(b);
        free(in);
        free(out);
    }
    /* a zero-length op is fine */
    wf__coll z = coll(WF_COLL_ALL_REDUCE, NULL, NULL, 0, WF_F32, WF_DIST_SUM);
    int rc = run_coll(pg, &z, WAIT_STREAM, 30);
    CHECK(rc == 0, "empty all_reduce: %d (%s)", rc, wf_error_message());
    /* barrier: an all_reduce of one element, waited for by the host */
    wf__coll bar = coll(WF_COLL_BARRIER, NULL, NULL, 0, WF_U8, WF_DIST_SUM);
    rc = run_coll(pg, &bar, WAIT_STREAM, 30);
    CHECK(rc == 0, "barrier: %d (%s)", rc, wf_error_message());
    bar.device = WF_CPU;
    rc = run_coll(pg, &bar, WAIT_STREAM, 30);
    CHECK(rc == 0, "barrier (cpu device): %d (%s)", rc, wf_error_message());
}

/* bytes of objects on the host (wf_dist_broadcast_bytes / gather_bytes): staged on the GPU */
static void test_host_bytes(wf_process_group *pg) {
    char msg[] = "weft nccl bytes", got[sizeof msg];
    memset(got, '#', sizeof got);
    wf__coll c = coll(WF_COLL_GATHER, msg, got, sizeof msg, WF_U8, WF_DIST_SUM);
    c.device = WF_CPU;
    int rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == 0 && memcmp(got, msg, sizeof msg) == 0, "gather host bytes: rc %d (%s) got '%.16s'", rc,
          rc ? wf_error_message() : "", got);
    char buf[] = "broadcast me";
    c = coll(WF_COLL_BROADCAST, buf, buf, sizeof buf, WF_U8, WF_DIST_SUM);
    c.device = WF_CPU;
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == 0 && strcmp(buf, "broadcast me") == 0, "broadcast host bytes: rc %d (%s)", rc,
          rc ? wf_error_message() : "");
    /* gather on the root without an output buffer */
    c = coll(WF_COLL_GATHER, msg, NULL, sizeof msg, WF_U8, WF_DIST_SUM);
    c.device = WF_CPU;
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_ENULL, "gather without output: %d (%s)", rc, wf_error_message());
}

/* async handles: several ops in flight, completed out of order; the compute stream's later
 * work sees their results; a big op queued right after a long memset on the compute stream
 * reads the memset's values (the group's stream waits for the compute stream) */
static void test_async(wf_process_group *pg) {
    const int64_t n = 1 << 22; /* 16 MiB of f32 */
    size_t bytes = (size_t)n * 4;
    float *x = dev_alloc(bytes), *y[3];
    for (int i = 0; i < 3; i++) y[i] = dev_alloc(bytes);
    float *h = malloc(bytes);
    for (int rep = 0; rep < 3; rep++) cudaMemsetAsync(x, 0, bytes, compute());
    cudaMemsetAsync(x, 0x3F, bytes, compute());   /* 0x3F3F3F3F = 0.7470... */
    wf_work w[3];
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].pg = pg;
        w[i].kind = WF_COLL_ALL_REDUCE;
        w[i].seq = ++g_seq;
        w[i].bytes = bytes;
        w[i].deadline = now_s() + 30;
        wf__coll c = coll(i == 1 ? WF_COLL_ALL_GATHER : WF_COLL_ALL_REDUCE, x, y[i], n, WF_F32,
                          i == 2 ? WF_DIST_MAX : WF_DIST_SUM);
        rc = pg->be->start(pg, &c, &w[i]);
        CHECK(rc == 0, "async start %d: %d (%s)", i, rc, wf_error_message());
    }
    if (rc) return;
    CHECK(w[0].stream_wait && w[0].test && w[0].release, "hooks are set");
    /* the last first: poll it; then stream-wait the others */
    bool done = false;
    double dl = now_s() + 30;
    while (!done && !rc && now_s() < dl) rc = w[2].test(&w[2], &done);
    CHECK(rc == 0 && done, "async test: rc %d done %d", rc, done);
    rc = w[0].stream_wait(&w[0]);
    CHECK(rc == 0, "stream_wait: %d (%s)", rc, wf_error_message());
    done = false;
    rc = w[0].test(&w[0], &done);
    CHECK(rc == 0 && done, "test after stream_wait: rc %d done %d", rc, done);
    rc = w[1].stream_wait(&w[1]);
    CHECK(rc == 0, "stream_wait: %d", rc);
    for (int i = 0; i < 3; i++) w[i].release(&w[i]);
    float want;
    uint32_t bits = 0x3F3F3F3Fu;
    memcpy(&want, &bits, 4);
    for (int i = 0; i < 3; i++) {
        from_dev(h, y[i], bytes);
        int bad = 0;
        for (int64_t j = 0; j < n; j++) bad += h[j] != want;
        CHECK(bad == 0, "async op %d: %d wrong elements (first %g, want %g)", i, bad, (double)h[0], (double)want);
    }
    cudaFree(x);
    for (int i = 0; i < 3; i++) cudaFree(y[i]);
    free(h);
}

static void test_bad_inputs(wf_process_group *pg) {
    void *a = dev_alloc(64);
    wf__coll c = coll(WF_COLL_BROADCAST, a, a, 4, WF_F32, WF_DIST_SUM);
    c.root = 1;
    int rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_EINVAL && strstr(wf_error_message(), "rank 1"), "root outside: %d (%s)", rc, wf_error_message());
    c = coll(WF_COLL_ALL_REDUCE, a, a, 4, WF_F32, WF_DIST_SUM);
    c.device = WF_CPU;
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_EDEVICE && strstr(wf_error_message(), "CUDA"), "cpu all_reduce: %d (%s)", rc, wf_error_message());
    c.device = WF_CUDA(1);
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_EDEVICE && strstr(wf_error_message(), "cuda:1"), "other gpu: %d (%s)", rc, wf_error_message());
    c.device = WF_CUDA(0);
    c.count = -3;
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_EINVAL && strstr(wf_error_message(), "-3"), "negative count: %d (%s)", rc, wf_error_message());
    c.count = 4;
    c.dtype = WF_DTYPE_DEFAULT;
    rc = run_coll(pg, &c, WAIT_STREAM, 30);
    CHECK(rc == WF_EDTYPE, "bad dtype: %d (%s)", rc, wf_error_message());
    CHECK(pg->be->supports(pg, WF_CUDA(0)), "supports cuda:0");
    CHECK(pg->be->supports(pg, WF_CPU), "supports host memory (for the bytes ops)");
    CHECK(!pg->be->supports(pg, WF_META), "does not support meta");
    CHECK(!pg->be->supports(pg, WF_CUDA(1)), "does not support cuda:1");
    cudaFree(a);

    wf_process_group bad;
    memset(&bad, 0, sizeof bad);
    bad.be = &wf__backend_nccl;
    wf_cluster_info ci;
    memset(&ci, 0, sizeof ci);
    ci.world_size = 1;
    wf_dist_options o;
    memset(&o, 0, sizeof o);
    o.device = WF_CUDA(97);
    rc = bad.be->init(&bad, &ci, &o);
    CHECK(rc == WF_EDEVICE && strstr(wf_error_message(), "cuda:97"), "init on cuda:97: %d (%s)", rc,
          wf_error_message());
    CHECK(bad.impl == NULL, "failed init leaves no state");
}

static void test_subgroup(wf_process_group *pg) {
    wf_process_group child;
    memset(&child, 0, sizeof child);
    child.be = pg->be;
    child.parent = pg;
    int ranks[] = {0};
    int rc = pg->be->subgroup(pg, ranks, 1, &child);
    CHECK(rc == 0 && child.rank == 0 && child.size == 1 && child.impl, "subgroup [0]: rc %d rank %d (%s)", rc,
          child.rank, rc ? wf_error_message() : "");
    if (rc) return;
    float in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
    float *a = dev_alloc(sizeof in), *b = dev_alloc(sizeof in);
    to_dev(a, in, sizeof in);
    wf__coll c = coll(WF_COLL_ALL_REDUCE, a, b, 5, WF_F32, WF_DIST_SUM);
    rc = run_coll(&child, &c, WAIT_STREAM, 30);
    CHECK(rc == 0 && from_dev(out, b, sizeof out) == 0 && memcmp(in, out, sizeof in) == 0,
          "all_reduce on the subgroup: %d", rc);
    child.be->free(&child);
    int bad[] = {3};
    memset(&child, 0, sizeof child);
    rc = pg->be->subgroup(pg, bad, 1, &child);
    CHECK(rc == WF_EINVAL && strstr(wf_error_message(), "3"), "subgroup [3]: %d (%s)", rc, wf_error_message());
    cudaFree(a);
    cudaFree(b);
}

/* A send to self with no matching receive: NCCL 2.28 refuses it at launch ("invalid usage:
 * Trying to send to self without a matching recv", seen on the H200), and that refusal must
 * abort the communicator and break the group, its later calls failing with NCCL's message.
 * Were the send let through, it would never complete: then the deadline aborts (mode poll:
 * the front-end's abort(); mode stream: the watchdog, and the compute stream, which waits on
 * the op, must drain afterwards) and the later calls fail with the timeout. */
static void test_timeout(wait_mode mode) {
    wf_process_group pg;
    int rc = init_world1(&pg, 2);
    CHECK(rc == 0, "init: %d (%s)", rc, wf_error_message());
    if (rc) return;
    float *a = dev_alloc(64);
    wf__coll c = coll(WF_COLL_SEND, a, NULL, 4, WF_F32, WF_DIST_SUM);
    double t0 = now_s();
    rc = run_coll(&pg, &c, mode, 2);
    if (mode == WAIT_POLL) {
        CHECK(rc == WF_ETIMEOUT || rc == WF_EDIST || rc == WF_EINVAL, "unmatched send: %d (%s)", rc,
              wf_error_message());
    } else {
        CHECK(rc == 0 || rc == WF_EINVAL || rc == WF_EDIST, "unmatched send (stream wait): %d (%s)", rc,
              wf_error_message());
        /* the compute stream must drain once the watchdog aborts (bounded wait here) */
        cudaError_t q = cudaErrorNotReady;
        while ((q = cudaStreamQuery(compute())) == cudaErrorNotReady && now_s() - t0 < 20) usleep(1000);
        CHECK(q == cudaSuccess, "compute stream drained after the abort: %s (%.1f s)", cudaGetErrorString(q),
              now_s() - t0);
    }
    printf("  unmatched send (%s): rc %d after %.1f s: %s\n", mode == WAIT_POLL ? "poll" : "stream", rc,
           now_s() - t0, rc ? wf_error_message() : "");
    /* the group is broken: the next op fails at once with the first error (a timeout, or
     * NCCL's refusal of the unmatched send if it refused at launch) */
    usleep(100000);
    char first[600];
    snprintf(first, sizeof first, "%s", wf_error_message());
    wf__coll c2 = coll(WF_COLL_ALL_REDUCE, a, a, 4, WF_F32, WF_DIST_SUM);
    int rc2 = run_coll(&pg, &c2, WAIT_STREAM, 2);
    if (rc == 0 || rc == WF_ETIMEOUT)
        CHECK(rc2 == WF_ETIMEOUT && strstr(wf_error_message(), "send") && strstr(wf_error_message(), "abort"),
              "after the timeout: %d (%s)", rc2, wf_error_message());
    else
        CHECK(rc2 == rc && strstr(wf_error_message(), "send"), "after the failed send: %d (%s; first: %s)", rc2,
              wf_error_message(), first);
    pg.be->free(&pg);
    /* the aborted op may still hold a; it is the process's to drop */
    (void)a;
}

static int one_rank(void) {
    wf_process_group pg;
    double t0 = now_s();
    int rc = init_world1(&pg, 60);
    CHECK(rc == 0 && pg.rank == 0 && pg.size == 1 && pg.impl, "init world of one: %d (%s)", rc, wf_error_message());
    if (rc) return report();
    printf("  init %.2f s\n", now_s() - t0);
    test_ops(&pg);
    test_host_bytes(&pg);
    test_async(&pg);
    test_bad_inputs(&pg);
    test_subgroup(&pg);
    pg.be->free(&pg);
    CHECK(pg.impl == NULL, "free clears impl");
    test_timeout(WAIT_POLL);
    test_timeout(WAIT_STREAM);
    return report();
}

/* ---------------------------------------------------------------- two ranks, one GPU */

/* The mapping is checked before any rank touches a GPU, so this runs without one too. */
static int g_port2;   /* the second store's port (fork mode) */

static int same_gpu_rank(int rank, int size, int port) {
    wf_process_group pg;
    memset(&pg, 0, sizeof pg);
    pg.be = &wf__backend_nccl;
    pg.timeout_s = 30;
    wf_cluster_info ci;
    memset(&ci, 0, sizeof ci);
    ci.world_size = size;
    ci.global_rank = rank;
    ci.local_rank = rank;
    ci.local_world_size = size;
    ci.num_nodes = 1;
    snprintf(ci.main_address, sizeof ci.main_address, "127.0.0.1");
    ci.main_port = port;
    wf_dist_options o;
    memset(&o, 0, sizeof o);
    o.timeout_s = 30;
    o.device = WF_CUDA(0);   /* both ranks on cuda:0 */
    int rc = pg.be->init(&pg, &ci, &o);
    const char *m = wf_error_message();
    printf("  rank %d: rc %d: %s\n", rank, rc, m);
    CHECK(rc == WF_EINVAL, "rank %d: two ranks on cuda:0 must be refused: %d", rank, rc);
    CHECK(strstr(m, "0") && strstr(m, "1") && strstr(m, "rank"), "the error names both ranks: %s", m);
    CHECK(!strstr(m, "Duplicate GPU"), "the error is weft's, before NCCL: %s", m);
    CHECK(pg.store == NULL && !pg.owns_store, "a failed init frees the store it made");
    if (!rc) pg.be->free(&pg);

    /* distinct GPUs that do not exist (cuda:7, cuda:8): every rank fails, naming rank 0 */
    memset(&pg, 0, sizeof pg);
    pg.be = &wf__backend_nccl;
    pg.timeout_s = 30;
    if (port) ci.main_port = g_port2;   /* a fresh store: the first one's server is gone */
    o.device = WF_CUDA(7 + rank);
    rc = pg.be->init(&pg, &ci, &o);
    m = wf_error_message();
    printf("  rank %d: rc %d: %s\n", rank, rc, m);
    if (wf_cuda_device_count() == 0)
        CHECK(rc == WF_ENOTSUP && strstr(m, "no CUDA device is visible to rank 0"), "no GPU: %d (%s)", rc, m);
    else
        CHECK(rc == WF_EDEVICE && strstr(m, "rank 0 asks for cuda:7"), "cuda:7: %d (%s)", rc, m);
    if (!rc) pg.be->free(&pg);
    return report();
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int same_gpu(void) {
#ifdef WEFT_HAVE_MPI
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        MPI_Init(NULL, NULL);
        int rank = 0, size = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        int rc = size == 2 ? same_gpu_rank(rank, size, 0) : (printf("SKIP: run with -np 2\n"), 77);
        /* every rank ends the same way, or mpirun reports the odd one */
        int worst = rc;
        MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        MPI_Finalize();
        return worst;
    }
#endif
    /* no MPI launcher: two forked ranks meet through the TCP store (the parent never touches
     * CUDA, which does not survive a fork) */
    int port = free_port();
    g_port2 = free_port();
    if (g_port2 == port) g_port2 = port + 1;
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm(60);   /* never hang */
            fflush(stdout);
            _exit(same_gpu_rank(r, 2, port));
        }
    }
    int worst = 0;
    for (int r = 0; r < 2; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (code == 77 && worst == 0) worst = 77;
        else if (code != 0 && code != 77) worst = code;
    }
    printf("same-gpu ranks: %s\n", worst == 0 ? "both refused clearly" : worst == 77 ? "skipped" : "FAILED");
    return worst;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "--same-gpu") == 0) return same_gpu();
    if (wf_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    return one_rank();
}
#endif
