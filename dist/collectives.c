/* dist/collectives.c: the collective front-ends (wf_dist_*) and work handles (wf_work_*).
 *
 * Each front-end validates its arguments (clear errors before any rank moves a byte),
 * numbers the collective, records it in the group's history, runs the WF_DIST_DEBUG
 * agreement check, hands raw buffers to the backend and then either returns a work handle
 * or waits for it. Waiting polls the backend's test() against the group's timeout with a
 * back-off, so no call waits without bound.
 *
 * A dead rank: under mpirun, Open MPI aborts the whole job when a rank exits non-zero, so the
 * others end with it; a rank that hangs or exits 0 early is caught here by the timeout. */
#include "dist/dist_impl.h"
#include "dist/trace.h"
#include "weft/autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESC_N (6 + WF_MAX_DIMS)   /* kind, dtype, count, root, op, ndim, shape... */

static const char *op_name(wf_dist_reduce_op op) {
    static const char *const n[] = {"sum", "avg", "max", "min", "prod"};
    return (op >= WF_DIST_SUM && op <= WF_DIST_PROD) ? n[op] : "?";
}

/* ---------------------------------------------------------------- validation */

static int check_pg(wf_process_group *pg, const char *fn) {
    if (!pg) return wf__error(WF_ENULL, "%s: NULL process group", fn);
    int rc = wf__pg_check_broken(pg, fn);
    if (rc) return rc;
    if (pg->rank < 0)
        return wf__error(WF_EINVAL, "%s: this process is not a member of process group %s (its rank is -1)", fn, pg->name);
    return 0;
}

static int check_tensor(wf_process_group *pg, const char *fn, const char *what, const wf_tensor *t) {
    if (!t) return wf__error(WF_ENULL, "%s: NULL %s", fn, what);
    if (!wf_is_contiguous(t)) {
        char s[96];
        return wf__error(WF_EINVAL, "%s: %s %s is not contiguous (call wf_contiguous first)", fn, what,
                         wf_shape_str(t, s, sizeof s));
    }
    if (t->device.type == WF_DEV_META || !pg->be->supports(pg, t->device))
        return wf__error(WF_EDEVICE, "%s: the %s backend cannot move %s tensors on device type %d (index %d)", fn,
                         pg->be->name, what, t->device.type, t->device.index);
    return 0;
}

static int check_rank(wf_process_group *pg, const char *fn, const char *what, int r) {
    if (r < 0 || r >= pg->size)
        return wf__error(WF_EINVAL, "%s: %s = %d is out of range for a group of size %d", fn, what, r, pg->size);
    return 0;
}

static int check_op(const char *fn, wf_dist_reduce_op op, wf_dtype dt) {
    if (op < WF_DIST_SUM || op > WF_DIST_PROD) return wf__error(WF_EINVAL, "%s: unknown reduce op %d", fn, (int)op);
    if (dt == WF_BOOL && op == WF_DIST_AVG)
        return wf__error(WF_EDTYPE, "%s: avg is not defined for bool (sum/max = or, min/prod = and)", fn);
    return 0;
}

static int check_pair(const char *fn, const wf_tensor *out, const wf_tensor *in) {
    if (out->dtype != in->dtype)
        return wf__error(WF_EDTYPE, "%s: out is %s but in is %s", fn, wf_dtype_name(out->dtype), wf_dtype_name(in->dtype));
    if (out->device.type != in->device.type || out->device.index != in->device.index)
        return wf__error(WF_EDEVICE, "%s: out and in are on different devices", fn);
    return 0;
}

/* big must be small with its first dimension times size (a 0-dim small counts as [1]) */
static int check_stacked(const char *fn, int size, const wf_tensor *big, const char *bn, const wf_tensor *small,
                         const char *sn) {
    char a[96], b[96], want[96];
    int64_t shape[WF_MAX_DIMS];
    int nd = small->ndim > 0 ? small->ndim : 1;
    for (int i = 0; i < nd; i++) shape[i] = small->ndim > 0 ? small->shape[i] : 1;
    shape[0] *= size;
    bool ok = big->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = big->shape[i] == shape[i];
    if (!ok)
        return wf__error(WF_ESHAPE, "%s: %s %s must be %s (group size %d x %s %s in the first dimension)", fn, bn,
                         wf_shape_str(big, a, sizeof a), wf__shape_text(nd, shape, want, sizeof want), size, sn,
                         wf_shape_str(small, b, sizeof b));
    return 0;
}

static void *data_of(const wf_tensor *t) { return wf__host_ptr(t); }   /* device pointer for CUDA */

/* ---------------------------------------------------------------- WF_DIST_DEBUG */

static bool uses_root(wf__coll_kind k) { return k == WF_COLL_BROADCAST || k == WF_COLL_REDUCE || k == WF_COLL_GATHER; }
static bool uses_op(wf__coll_kind k) {
    return k == WF_COLL_ALL_REDUCE || k == WF_COLL_REDUCE || k == WF_COLL_REDUCE_SCATTER;
}

static void describe(char *buf, size_t n, int rank, const int64_t *d) {
    wf__coll_kind k = (wf__coll_kind)d[0];
    int64_t shape[WF_MAX_DIMS];
    int nd = (int)d[5];
    if (nd < 0 || nd > WF_MAX_DIMS) nd = 0;
    for (int i = 0; i < nd; i++) shape[i] = d[6 + i];
    char s[96];
    int len = snprintf(buf, n, "rank %d %s", rank, wf__coll_name(k));
    if (k != WF_COLL_BARRIER && len >= 0 && (size_t)len < n)
        len += snprintf(buf + len, n - (size_t)len, " %s %s", wf_dtype_name((wf_dtype)d[1]), wf__shape_text(nd, shape, s, sizeof s));
    if (uses_root(k) && len >= 0 && (size_t)len < n) len += snprintf(buf + len, n - (size_t)len, " root %lld", (long long)d[3]);
    if (uses_op(k) && len >= 0 && (size_t)len < n) snprintf(buf + len, n - (size_t)len, " %s", op_name((wf_dist_reduce_op)d[4]));
}

static bool same_desc(const int64_t *a, const int64_t *b) {
    if (a[0] != b[0]) return false;
    wf__coll_kind k = (wf__coll_kind)a[0];
    if (k == WF_COLL_BARRIER) return true;
    if (a[1] != b[1] || a[2] != b[2] || a[5] != b[5]) return false;
    if (uses_root(k) && a[3] != b[3]) return false;
    if (uses_op(k) && a[4] != b[4]) return false;
    for (int i = 0; i < a[5] && i < WF_MAX_DIMS; i++)
        if (a[6 + i] != b[6 + i]) return false;
    return true;
}

/* WF_DIST_DEBUG through the store, for backends without a side channel: every rank posts its
 * descriptor under the collective's number and reads the others'. (Keys stay in the store:
 * a debugging mode's cost.) */
static int store_exchange(wf_process_group *pg, const int64_t *mine, int n, int64_t *all, double deadline, uint64_t seq) {
    enum { KEY = 96 };
    int rc = 0;
    char *keys = wf__malloc((size_t)pg->size * KEY);
    const char **kp = wf__malloc(sizeof(char *) * (size_t)pg->size);
    if (!keys || !kp) { rc = wf__error(WF_ENOMEM, "WF_DIST_DEBUG: out of memory"); goto done; }
    for (int r = 0; r < pg->size; r++) {
        snprintf(keys + (size_t)r * KEY, KEY, "wf/pg%s/dbg/%llu/%d", pg->name, (unsigned long long)seq, r);
        kp[r] = keys + (size_t)r * KEY;
    }
    size_t nb = sizeof(int64_t) * (size_t)n;
    if ((rc = wf_store_set(pg->store, kp[pg->rank], mine, nb)) != 0) goto done;
    double left = deadline - wf__dist_now();
    if ((rc = wf_store_wait(pg->store, kp, pg->size, left > 0.001 ? left : 0.001)) != 0) goto done;
    for (int r = 0; r < pg->size && !rc; r++) {
        void *v = NULL;
        size_t vn = 0;
        if ((rc = wf_store_get(pg->store, kp[r], &v, &vn)) != 0) break;
        if (vn != nb) rc = wf__error(WF_EDIST, "WF_DIST_DEBUG: rank %d posted %zu bytes, expected %zu", r, vn, nb);
        else memcpy(all + (size_t)r * n, v, nb);
        free(v);
    }
done:
    wf__free(keys, keys ? (size_t)pg->size * KEY : 0);
    wf__free(kp, kp ? sizeof(char *) * (size_t)pg->size : 0);
    return rc;
}

/* Every rank sends (kind, dtype, count, root, op, shape) to all others before the collective;
 * any difference is WF_EDIST on every rank (all of them see the same table, so they agree to
 * skip the collective and the group stays usable). */
static int debug_check(wf_process_group *pg, const char *fn, const wf__coll *c, const wf_tensor *shape_of, wf_work *w) {
    if (!pg->be->exchange && !pg->store) return 0;   /* no side channel at all: nothing to check with */
    int64_t mine[DESC_N] = {0};
    mine[0] = c->kind;
    mine[1] = c->dtype;
    mine[2] = c->count;
    mine[3] = c->root;
    mine[4] = c->op;
    if (shape_of) {
        mine[5] = shape_of->ndim;
        for (int i = 0; i < shape_of->ndim; i++) mine[6 + i] = shape_of->shape[i];
    } else {
        mine[5] = 1;
        mine[6] = c->count;
    }
    size_t nb = sizeof(int64_t) * DESC_N * (size_t)pg->size;
    int64_t *all = wf__malloc(nb);
    if (!all) return wf__error(WF_ENOMEM, "%s: out of memory for the WF_DIST_DEBUG check", fn);
    int rc = pg->be->exchange ? pg->be->exchange(pg, mine, DESC_N, all, w->deadline)
                              : store_exchange(pg, mine, DESC_N, all, w->deadline, w->seq);
    if (rc == WF_ETIMEOUT) rc = wf__pg_timeout(pg, fn, c->kind, w->seq, w->bytes);
    else if (rc) wf__pg_break(pg, rc, wf_error_message());
    bool agree = true;
    for (int r = 1; !rc && r < pg->size; r++) agree = agree && same_desc(all, all + (size_t)r * DESC_N);
    if (!rc && !agree) {
        char msg[1024];
        size_t len = (size_t)snprintf(msg, sizeof msg, "%s: ranks disagree: ", fn);
        for (int r = 0; r < pg->size && len < sizeof msg - 1; r++) {
            if (r == 16) { snprintf(msg + len, sizeof msg - len, ", ..."); break; }
            char d[160];
            describe(d, sizeof d, r, all + (size_t)r * DESC_N);
            int k = snprintf(msg + len, sizeof msg - len, "%s%s", r ? ", " : "", d);
            if (k < 0) break;
            len += (size_t)k;
        }
        rc = wf__error(WF_EDIST, "%s", msg);
    }
    wf__free(all, nb);
    return rc;
}

/* ---------------------------------------------------------------- work handles */

/* WF_TRACE: the collective as the host sees it, from launch to the moment a test or wait
 * found it complete (or gave up), on the communication lane. */
static void trace_end(const wf_work *w, int rc) {
    char args[256];
    int n = snprintf(args, sizeof args, "\"seq\":%llu,\"bytes\":%zu,\"dtype\":\"%s\",\"group\":\"%s\",\"async\":%s",
                     (unsigned long long)w->seq, w->bytes, wf_dtype_name(w->trace.dtype), w->pg->name,
                     w->trace.async ? "true" : "false");
    if (n > 0 && (size_t)n < sizeof args && rc)
        n += snprintf(args + n, sizeof args - (size_t)n, ",\"error\":\"%s\"", wf_error_name(rc));
    if (n > 0 && (size_t)n < sizeof args && w->trace.tag[0])
        snprintf(args + n, sizeof args - (size_t)n, ",%s", w->trace.tag);
    wf__trace_span(WF_TRACE_COMM, wf__coll_name(w->kind), "comm", w->trace.t0_us, wf__trace_now_us() - w->trace.t0_us,
                   args);
}

static int complete(wf_work *w, int rc) {
    if (rc == 0 && w->finish) rc = w->finish(w);
    w->done = true;
    w->rc = rc;
    wf__pg_history_end(w->pg, w->seq, rc ? rc : 1);
    if (w->trace.on) trace_end(w, rc);
    if (rc == WF_EDIST || rc == WF_EDEVICEFAIL) wf__pg_break(w->pg, rc, wf_error_message());
    for (int i = 0; i < 2; i++) { wf_tensor_free(w->keep[i]); w->keep[i] = NULL; }
    return rc;
}

/* The deadline passed (or the group broke under us): the backend cancels what it can; the
 * buffers stay allocated because MPI/NCCL may still write into them. */
static int give_up(wf_work *w, bool timed_out) {
    if (w->abort) w->abort(w);
    w->abandoned = true;
    w->done = true;
    w->rc = timed_out ? wf__pg_timeout(w->pg, w->fn, w->kind, w->seq, w->bytes)
                      : wf__pg_check_broken(w->pg, w->fn);
    wf__pg_history_end(w->pg, w->seq, w->rc);
    if (w->trace.on) trace_end(w, w->rc);
    return w->rc;
}

static int step(wf_work *w, bool *done) {
    bool d = true;
    int rc = w->test ? w->test(w, &d) : 0;
    if (rc) { *done = true; return complete(w, rc); }
    if (d) { *done = true; return complete(w, 0); }
    *done = false;
    if (w->pg->broken) { *done = true; return give_up(w, false); }
    if (wf__dist_now() > w->deadline) { *done = true; return give_up(w, true); }
    return 0;
}

int wf_work_test(wf_work *w, bool *done) {
    if (!w || !done) return wf__error(WF_ENULL, "wf_work_test: NULL %s", w ? "done" : "work");
    if (w->done) {
        *done = true;
        return w->rc ? wf__error(w->rc, "%s: #%llu failed earlier: %s", w->fn, (unsigned long long)w->seq,
                                 w->pg->broken ? w->pg->broken_msg : wf_error_name(w->rc)) : 0;
    }
    return step(w, done);
}

int wf_work_wait(wf_work *w) {
    if (!w) return wf__error(WF_ENULL, "wf_work_wait: NULL work");
    if (w->done) {
        bool d;
        return wf_work_test(w, &d);
    }
    if (w->stream_wait) {
        /* a CUDA op (nccl): the caller's stream waits for it, not the host; the backend's
         * watchdog reports a later failure on the group's next call */
        int rc = w->pg->broken ? wf__pg_check_broken(w->pg, w->fn) : w->stream_wait(w);
        return complete(w, rc);
    }
    unsigned it = 0;
    for (;;) {
        bool d = false;
        int rc = step(w, &d);
        if (d) return rc;
        wf__dist_backoff(&it);
    }
}

void wf_work_free(wf_work *w) {
    if (!w) return;
    if (!w->done) {
        /* freeing an unfinished work waits for it (bounded); its error stays recorded */
        (void)wf_work_wait(w);
    }
    if (w->release) w->release(w);
    if (!w->abandoned)
        for (int i = 0; i < 2; i++) wf_tensor_free(w->keep[i]);
    wf__free(w, sizeof *w);
}

/* ---------------------------------------------------------------- the common path */

static int launch(wf_process_group *pg, const char *fn, const wf__coll *c, size_t bytes, const wf_tensor *shape_of,
                  wf_tensor *k0, wf_tensor *k1, wf_work **work) {
    if (work) *work = NULL;
    if (c->count > (int64_t)INT32_MAX)
        return wf__error(WF_ENOTSUP, "%s: %lld elements is more than one collective moves (at most %d); split the tensor",
                         fn, (long long)c->count, INT32_MAX);
    wf__coll cb = *c;
    cb.blocking = work == NULL;
    c = &cb;
    wf_work *w = wf__calloc(1, sizeof *w);
    if (!w) return wf__error(WF_ENOMEM, "%s: out of memory", fn);
    w->pg = pg;
    w->kind = c->kind;
    w->seq = ++pg->seq;
    w->bytes = bytes;
    w->deadline = wf__dist_now() + pg->timeout_s;
    w->fn = fn;
    wf__pg_history_start(pg, w, c->dtype);
    if (wf__trace_recording()) {   /* off: this one branch */
        w->trace.on = true;
        w->trace.async = work != NULL;
        w->trace.dtype = c->dtype;
        wf__trace_take_tag(w->trace.tag, sizeof w->trace.tag);
        w->trace.t0_us = wf__trace_now_us();
    }
    int rc = 0;
    if (pg->debug && c->kind != WF_COLL_SEND && c->kind != WF_COLL_RECV) rc = debug_check(pg, fn, c, shape_of, w);
    if (!rc) {
        rc = pg->be->start(pg, c, w);
        if (rc && (rc == WF_EDIST || rc == WF_ETIMEOUT || rc == WF_EDEVICEFAIL)) wf__pg_break(pg, rc, wf_error_message());
    }
    if (rc) {
        wf__pg_history_end(pg, w->seq, rc);
        if (w->release) w->release(w);
        wf__free(w, sizeof *w);
        return rc;
    }
    w->keep[0] = k0 ? wf_tensor_retain(k0) : NULL;
    w->keep[1] = k1 ? wf_tensor_retain(k1) : NULL;
    if (work) { *work = w; return 0; }
    rc = wf_work_wait(w);
    wf_work_free(w);
    return rc;
}

static wf__coll coll_of(wf__coll_kind k, const wf_tensor *t) {
    wf__coll c = {0};
    c.kind = k;
    if (t) {
        c.send = data_of(t);
        c.recv = data_of(t);
        c.count = wf_numel(t);
        c.dtype = t->dtype;
        c.device = t->device;
    } else {
        c.dtype = WF_U8;
        c.device = WF_CPU;
    }
    return c;
}

static size_t nbytes(const wf_tensor *t) { return (size_t)wf_numel(t) * wf_dtype_size(t->dtype); }

/* ---------------------------------------------------------------- tensors */

int wf_dist_all_reduce(wf_process_group *pg, wf_tensor *t, wf_dist_reduce_op op, wf_work **work) {
    static const char *fn = "wf_dist_all_reduce";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "tensor", t)) || (rc = check_op(fn, op, t->dtype))) return rc;
    wf__coll c = coll_of(WF_COLL_ALL_REDUCE, t);
    c.op = op;
    wf__bump_version(t);
    return launch(pg, fn, &c, nbytes(t), t, t, NULL, work);
}

int wf_dist_broadcast(wf_process_group *pg, wf_tensor *t, int src, wf_work **work) {
    static const char *fn = "wf_dist_broadcast";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "tensor", t)) || (rc = check_rank(pg, fn, "src", src))) return rc;
    wf__coll c = coll_of(WF_COLL_BROADCAST, t);
    c.root = src;
    if (pg->rank != src) wf__bump_version(t);
    return launch(pg, fn, &c, nbytes(t), t, t, NULL, work);
}

int wf_dist_reduce(wf_process_group *pg, wf_tensor *t, int dst, wf_dist_reduce_op op, wf_work **work) {
    static const char *fn = "wf_dist_reduce";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "tensor", t)) || (rc = check_rank(pg, fn, "dst", dst)) ||
        (rc = check_op(fn, op, t->dtype)))
        return rc;
    wf__coll c = coll_of(WF_COLL_REDUCE, t);
    c.root = dst;
    c.op = op;
    wf__bump_version(t);
    return launch(pg, fn, &c, nbytes(t), t, t, NULL, work);
}

int wf_dist_all_gather(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_work **work) {
    static const char *fn = "wf_dist_all_gather";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "out", out)) || (rc = check_tensor(pg, fn, "in", in)) ||
        (rc = check_pair(fn, out, in)) || (rc = check_stacked(fn, pg->size, out, "out", in, "in")))
        return rc;
    wf__coll c = coll_of(WF_COLL_ALL_GATHER, in);
    c.recv = data_of(out);
    wf__bump_version(out);
    return launch(pg, fn, &c, nbytes(in), in, out, in, work);
}

int wf_dist_reduce_scatter(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_dist_reduce_op op, wf_work **work) {
    static const char *fn = "wf_dist_reduce_scatter";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "out", out)) || (rc = check_tensor(pg, fn, "in", in)) ||
        (rc = check_pair(fn, out, in)) || (rc = check_stacked(fn, pg->size, in, "in", out, "out")) ||
        (rc = check_op(fn, op, in->dtype)))
        return rc;
    wf__coll c = coll_of(WF_COLL_REDUCE_SCATTER, out);
    c.send = data_of(in);
    c.op = op;
    wf__bump_version(out);
    return launch(pg, fn, &c, nbytes(in), in, out, in, work);
}

int wf_dist_barrier(wf_process_group *pg) {
    static const char *fn = "wf_dist_barrier";
    int rc;
    if ((rc = check_pg(pg, fn))) return rc;
    wf__coll c = coll_of(WF_COLL_BARRIER, NULL);
    return launch(pg, fn, &c, 0, NULL, NULL, NULL, NULL);
}

static int p2p(wf_process_group *pg, const char *fn, wf__coll_kind k, wf_tensor *t, int peer, int tag) {
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_tensor(pg, fn, "tensor", t)) ||
        (rc = check_rank(pg, fn, k == WF_COLL_SEND ? "dst" : "src", peer)))
        return rc;
    if (peer == pg->rank)
        return wf__error(WF_EINVAL, "%s: rank %d cannot %s itself", fn, peer, k == WF_COLL_SEND ? "send to" : "receive from");
    if (tag < 0) return wf__error(WF_EINVAL, "%s: tag = %d must be >= 0", fn, tag);
    wf__coll c = coll_of(k, t);
    c.root = peer;
    c.tag = tag;
    if (k == WF_COLL_RECV) wf__bump_version(t);
    return launch(pg, fn, &c, nbytes(t), t, t, NULL, NULL);
}

int wf_dist_send(wf_process_group *pg, wf_tensor *t, int dst, int tag) {
    return p2p(pg, "wf_dist_send", WF_COLL_SEND, t, dst, tag);
}
int wf_dist_recv(wf_process_group *pg, wf_tensor *t, int src, int tag) {
    return p2p(pg, "wf_dist_recv", WF_COLL_RECV, t, src, tag);
}

/* ---------------------------------------------------------------- bytes */

int wf_dist_broadcast_bytes(wf_process_group *pg, void *buf, size_t n, int src) {
    static const char *fn = "wf_dist_broadcast_bytes";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_rank(pg, fn, "src", src))) return rc;
    if (!buf && n) return wf__error(WF_ENULL, "%s: NULL buffer of %zu bytes", fn, n);
    if (!pg->be->supports(pg, WF_CPU))
        return wf__error(WF_EDEVICE, "%s: the %s backend cannot move host bytes", fn, pg->be->name);
    wf__coll c = coll_of(WF_COLL_BROADCAST, NULL);
    c.send = c.recv = buf;
    c.count = (int64_t)n;
    c.root = src;
    return launch(pg, fn, &c, n, NULL, NULL, NULL, NULL);
}

int wf_dist_gather_bytes(wf_process_group *pg, const void *buf, size_t n, void *out, int dst) {
    static const char *fn = "wf_dist_gather_bytes";
    int rc;
    if ((rc = check_pg(pg, fn)) || (rc = check_rank(pg, fn, "dst", dst))) return rc;
    if (!buf && n) return wf__error(WF_ENULL, "%s: NULL buffer of %zu bytes", fn, n);
    if (!out && n && pg->rank == dst) return wf__error(WF_ENULL, "%s: NULL out on the destination rank %d", fn, dst);
    if (!pg->be->supports(pg, WF_CPU))
        return wf__error(WF_EDEVICE, "%s: the %s backend cannot move host bytes", fn, pg->be->name);
    wf__coll c = coll_of(WF_COLL_GATHER, NULL);
    c.send = buf;
    c.recv = pg->rank == dst ? out : NULL;
    c.count = (int64_t)n;
    c.root = dst;
    return launch(pg, fn, &c, n, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- uneven all_gather */

/* Shapes are exchanged first (so a mismatch in the trailing dimensions is a clear WF_ESHAPE on
 * every rank instead of a truncated message), inputs padded to the largest first dimension,
 * gathered with one equal-size all_gather, and the pieces trimmed and concatenated. */
static wf_tensor *gather_uneven(wf_process_group *pg, wf_tensor *in, const char *fn) {
    int S = pg->size;
    int64_t mine[1 + WF_MAX_DIMS] = {0};
    mine[0] = in->ndim;
    for (int i = 0; i < in->ndim; i++) mine[1 + i] = in->shape[i];
    wf_tensor *m = wf_from_data(mine, WF_SHAPE(1 + WF_MAX_DIMS), WF_I64);
    if (m && in->device.type != WF_DEV_CPU) m = wf_to_device(m, in->device);
    wf_tensor *shapes = wf_empty_on(WF_SHAPE((int64_t)S * (1 + WF_MAX_DIMS)), WF_I64, in->device);
    if (!m || !shapes) return NULL;
    if (wf_dist_all_gather(pg, shapes, m, NULL) != 0) return NULL;
    int64_t *all = wf__malloc(sizeof(int64_t) * (size_t)S * (1 + WF_MAX_DIMS));
    if (!all) { wf__error(WF_ENOMEM, "%s: out of memory", fn); return NULL; }
    wf_tensor *result = NULL;
    if (wf_to_array(shapes, all, WF_I64) != 0) goto done;
    int64_t maxd = 0, sum = 0;
    for (int r = 0; r < S; r++) {
        const int64_t *d = all + (size_t)r * (1 + WF_MAX_DIMS);
        bool same = d[0] == in->ndim;
        for (int i = 1; same && i < in->ndim; i++) same = d[1 + i] == in->shape[i];
        if (!same) {
            char a[96], b[96];
            int nd = d[0] >= 0 && d[0] <= WF_MAX_DIMS ? (int)d[0] : 0;
            wf__error(WF_ESHAPE, "%s: rank %d has %s but rank %d has %s: only the first dimension may differ", fn, r,
                      wf__shape_text(nd, d + 1, a, sizeof a), pg->rank, wf_shape_str(in, b, sizeof b));
            goto done;
        }
        if (d[1] > maxd) maxd = d[1];
        sum += d[1];
    }
    int64_t shape[WF_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++) shape[i] = in->shape[i];
    shape[0] = maxd;
    wf_tensor *padded = in;
    if (in->shape[0] != maxd) {
        padded = wf_zeros_on(shape, in->ndim, in->dtype, in->device);
        wf_tensor *head = padded ? wf_narrow(padded, 0, 0, in->shape[0]) : NULL;
        if (!head || wf_copy_(head, in) != 0) goto done;
    }
    shape[0] = maxd * S;
    wf_tensor *gathered = wf_empty_on(shape, in->ndim, in->dtype, in->device);
    if (!gathered || wf_dist_all_gather(pg, gathered, padded, NULL) != 0) goto done;
    if (sum == 0) {
        shape[0] = 0;
        result = wf_empty_on(shape, in->ndim, in->dtype, in->device);
        goto done;
    }
    wf_tensor **pieces = wf__malloc(sizeof(wf_tensor *) * (size_t)S);
    if (!pieces) { wf__error(WF_ENOMEM, "%s: out of memory", fn); goto done; }
    int np = 0;
    for (int r = 0; r < S; r++) {
        int64_t d0 = all[(size_t)r * (1 + WF_MAX_DIMS) + 1];
        if (d0 > 0) pieces[np++] = wf_narrow(gathered, 0, (int64_t)r * maxd, d0);
    }
    result = wf_cat(pieces, np, 0);
    wf__free(pieces, sizeof(wf_tensor *) * (size_t)S);
done:
    wf__free(all, sizeof(int64_t) * (size_t)S * (1 + WF_MAX_DIMS));
    return result;
}

wf_tensor *wf_dist_all_gather_uneven(wf_process_group *pg, wf_tensor *in) {
    static const char *fn = "wf_dist_all_gather_uneven";
    if (check_pg(pg, fn) || check_tensor(pg, fn, "in", in)) return NULL;
    if (in->ndim < 1) {
        wf__error(WF_ESHAPE, "%s: in must have a first dimension (got a 0-dim tensor)", fn);
        return NULL;
    }
    bool grad = wf_set_grad_enabled(false);   /* a communication result, not a graph node */
    wf_scope_begin();
    wf_tensor *r = gather_uneven(pg, in, fn);
    if (r) wf_keep(r);
    wf_scope_end();
    wf_set_grad_enabled(grad);
    return r;
}
