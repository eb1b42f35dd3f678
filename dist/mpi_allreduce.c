/* dist/mpi_allreduce.c: recursive doubling and ring all-reduce over non-blocking MPI
 * point-to-point, as state machines (see mpi_allreduce.h). Why not MPI_Iallreduce: Open MPI's
 * non-blocking collectives (libnbc) reach 0.6-0.7 of blocking MPI_Allreduce on small messages,
 * and its large-message allreduce falls below gloo on one host; the blocking call cannot be
 * bounded by the group's timeout. */
#include "dist/mpi_allreduce.h"

#ifdef WEFT_HAVE_MPI
#include "dist/dist_impl.h"

#include <string.h>

/* ring: chunks in flight per direction (each receive needs a chunk of scratch) */
#define RING_WINDOW 4
/* recursive doubling: a message of 2..RD_MAX_PIECES pieces of at most `piece` bytes goes
 * as that many messages. Open MPI's shared-memory transport sends a message up to its eager
 * limit (4 KB with the header) at once, a larger one after a handshake with the receiver: two
 * eager messages cost less than one rendezvous (measured with 2 ranks: 4 KB 3.5x, 8 KB 2x,
 * 16 KB 1.6x faster in pieces of 4000 B; from 32 KB no gain). */
#define RD_MAX_PIECES 8

enum { RD_FOLD, RD_STEP, RD_UNFOLD, RD_EXTRA_RECV, RD_DONE };

struct wf__mpi_ar {
    wf__ar_algo algo;
    char *buf;
    int count;
    MPI_Datatype dt;
    size_t es;
    MPI_Op op;
    MPI_Comm comm;
    int me, size, tag;
    char *tmp;                /* received data before it is folded in */
    size_t tmp_n;
    wf__ar_scratch *scratch;  /* tmp is scratch->p when set */
    /* recursive doubling */
    int p, st, k, nrq;
    bool reduce_after;        /* fold tmp into buf once rq[] completes */
    int npieces, piece;       /* each message as npieces messages of piece elements (the last shorter) */
    MPI_Request rq[2 * RD_MAX_PIECES];
    /* ring: units u = 0..U-1, the first RSU the reduce-scatter's (step u / J, chunk u % J),
     * the rest the all-gather's */
    int J, U, RSU, chunk;     /* chunk in elements */
    int next_recv, next_send, done_u, send_done;
    MPI_Request rreq[RING_WINDOW], sreq[RING_WINDOW];
};

static int ar_fail(int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return wf__error(WF_EDIST, "mpi backend: all_reduce: %s failed: %s", what, s);
}

static int mod(int a, int n) { return ((a % n) + n) % n; }

/* ---------------------------------------------------------------- recursive doubling */

static int rd_post(wf__mpi_ar *a, bool send, void *p, int peer) {
    for (int i = 0; i < a->npieces; i++) {
        int lo = i * a->piece, cnt = i == a->npieces - 1 ? a->count - lo : a->piece;
        char *q = (char *)p + (size_t)lo * a->es;
        int rc = send ? MPI_Isend(q, cnt, a->dt, peer, a->tag, a->comm, &a->rq[a->nrq])
                      : MPI_Irecv(q, cnt, a->dt, peer, a->tag, a->comm, &a->rq[a->nrq]);
        if (rc != MPI_SUCCESS) return ar_fail(rc, send ? "MPI_Isend" : "MPI_Irecv");
        a->nrq++;
    }
    return 0;
}

static int rd_test(wf__mpi_ar *a, bool *done) {
    *done = false;
    int rc = 0, me = a->me, p = a->p, extra = a->size - p;
    for (;;) {
        if (a->nrq) {
            int flag = 0;
            if ((rc = MPI_Testall(a->nrq, a->rq, &flag, MPI_STATUSES_IGNORE)) != MPI_SUCCESS) return ar_fail(rc, "MPI_Testall");
            if (!flag) return 0;
            a->nrq = 0;
            if (a->reduce_after) {
                /* buf = tmp op buf: the partner computes buf op tmp, the same value */
                if ((rc = MPI_Reduce_local(a->tmp, a->buf, a->count, a->dt, a->op)) != MPI_SUCCESS)
                    return ar_fail(rc, "MPI_Reduce_local");
                a->reduce_after = false;
            }
        }
        switch (a->st) {
        case RD_FOLD:   /* ranks >= p hand their data to rank - p */
            if (me >= p) {
                rc = rd_post(a, true, a->buf, me - p);
                a->st = RD_EXTRA_RECV;
            } else {
                if (me < extra) {
                    rc = rd_post(a, false, a->tmp, me + p);
                    a->reduce_after = true;
                }
                a->st = RD_STEP;
                a->k = 0;
            }
            break;
        case RD_STEP:
            if ((1 << a->k) >= p) {
                a->st = RD_UNFOLD;
                break;
            }
            {
                int peer = me ^ (1 << a->k);
                if (!(rc = rd_post(a, false, a->tmp, peer))) rc = rd_post(a, true, a->buf, peer);
                a->reduce_after = true;
                a->k++;
            }
            break;
        case RD_UNFOLD:
            if (me < extra) rc = rd_post(a, true, a->buf, me + p);
            a->st = RD_DONE;
            break;
        case RD_EXTRA_RECV:   /* our send is complete: the result comes back into buf */
            rc = rd_post(a, false, a->buf, me - p);
            a->st = RD_DONE;
            break;
        default:
            *done = true;
            return 0;
        }
        if (rc) return rc;
    }
}

/* ---------------------------------------------------------------- ring */

/* unit u's region: the segment it sends (send) or receives, its element offset and count */
static void ring_region(const wf__mpi_ar *a, int u, bool send, int64_t *off, int *cnt) {
    int N = a->size, s, j, seg;
    if (u < a->RSU) {
        s = u / a->J, j = u % a->J;
        seg = send ? mod(a->me - s, N) : mod(a->me - s - 1, N);
    } else {
        int v = u - a->RSU;
        s = v / a->J, j = v % a->J;
        seg = send ? mod(a->me + 1 - s, N) : mod(a->me - s, N);
    }
    int base = a->count / N, rem = a->count % N;
    int len = base + (seg < rem);
    int64_t start = (int64_t)seg * base + (seg < rem ? seg : rem);
    int lo = j * a->chunk;
    int hi = lo + a->chunk < len ? lo + a->chunk : len;
    *off = start + lo;
    *cnt = hi > lo ? hi - lo : 0;   /* a short segment's last chunk may be empty: sent anyway */
}

static int ring_test(wf__mpi_ar *a, bool *done) {
    const int W = RING_WINDOW, left = mod(a->me - 1, a->size), right = mod(a->me + 1, a->size);
    size_t chunk_b = (size_t)a->chunk * a->es;
    int rc;
    bool progress = true;
    while (progress) {
        progress = false;
        /* receives, up to W ahead of the last one folded in. The all-gather's land in buf
         * directly, so they wait until the reduce-scatter is over (its sends read the same
         * segments, its folds write them). */
        while (a->next_recv < a->U && a->next_recv < a->done_u + W) {
            int u = a->next_recv;
            if (u >= a->RSU && (a->done_u < a->RSU || a->send_done < a->RSU)) break;
            int64_t off;
            int cnt;
            ring_region(a, u, false, &off, &cnt);
            void *dst = u < a->RSU ? a->tmp + (size_t)(u % W) * chunk_b : a->buf + (size_t)off * a->es;
            if ((rc = MPI_Irecv(dst, cnt, a->dt, left, a->tag, a->comm, &a->rreq[u % W])) != MPI_SUCCESS)
                return ar_fail(rc, "MPI_Irecv");
            a->next_recv++;
            progress = true;
        }
        /* sends: unit u forwards what unit u - J brought in (folded, or the final values) */
        while (a->next_send < a->U && a->next_send < a->send_done + W &&
               (a->next_send < a->J || a->done_u > a->next_send - a->J)) {
            int u = a->next_send;
            int64_t off;
            int cnt;
            ring_region(a, u, true, &off, &cnt);
            if ((rc = MPI_Isend(a->buf + (size_t)off * a->es, cnt, a->dt, right, a->tag, a->comm, &a->sreq[u % W])) !=
                MPI_SUCCESS)
                return ar_fail(rc, "MPI_Isend");
            a->next_send++;
            progress = true;
        }
        /* receives in order: fold the reduce-scatter's into buf */
        while (a->done_u < a->next_recv) {
            int u = a->done_u, flag = 0;
            if ((rc = MPI_Test(&a->rreq[u % W], &flag, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return ar_fail(rc, "MPI_Test");
            if (!flag) break;
            if (u < a->RSU) {
                int64_t off;
                int cnt;
                ring_region(a, u, false, &off, &cnt);
                if (cnt > 0 && (rc = MPI_Reduce_local(a->tmp + (size_t)(u % W) * chunk_b, a->buf + (size_t)off * a->es, cnt,
                                                      a->dt, a->op)) != MPI_SUCCESS)
                    return ar_fail(rc, "MPI_Reduce_local");
            }
            a->done_u++;
            progress = true;
        }
        while (a->send_done < a->next_send) {
            int flag = 0;
            if ((rc = MPI_Test(&a->sreq[a->send_done % W], &flag, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
                return ar_fail(rc, "MPI_Test");
            if (!flag) break;
            a->send_done++;
            progress = true;
        }
    }
    *done = a->done_u == a->U && a->send_done == a->U;
    return 0;
}

/* ---------------------------------------------------------------- common */

int wf__mpi_ar_start(wf__mpi_ar **out, wf__ar_algo algo, void *buf, int count, MPI_Datatype dt, size_t es,
                     MPI_Op op, MPI_Comm comm, int me, int size, int tag, size_t chunk, size_t piece,
                     wf__ar_scratch *scratch) {
    *out = NULL;
    wf__mpi_ar *a = wf__calloc(1, sizeof *a);
    if (!a) return wf__error(WF_ENOMEM, "mpi backend: all_reduce: out of memory");
    a->algo = algo;
    a->buf = buf;
    a->count = count;
    a->dt = dt;
    a->es = es;
    a->op = op;
    a->comm = comm;
    a->me = me;
    a->size = size;
    a->tag = tag;
    if (algo == WF__AR_RD) {
        a->p = 1;
        while (a->p * 2 <= size) a->p *= 2;
        a->st = RD_FOLD;
        a->tmp_n = (size_t)count * es;
        int64_t pe = (int64_t)(piece / es);
        int64_t np = pe > 0 ? (count + pe - 1) / pe : 0;
        a->npieces = np >= 2 && np <= RD_MAX_PIECES ? (int)np : 1;
        a->piece = a->npieces > 1 ? (count + a->npieces - 1) / a->npieces : count;   /* even pieces */
    } else {
        int64_t seg_max = (count + size - 1) / size;
        int64_t c = (int64_t)(chunk / es);
        a->chunk = (int)(c < 1 ? 1 : c > seg_max && seg_max > 0 ? seg_max : c);
        a->J = seg_max > 0 ? (int)((seg_max + a->chunk - 1) / a->chunk) : 1;
        a->RSU = (size - 1) * a->J;
        a->U = 2 * a->RSU;
        a->tmp_n = (size_t)RING_WINDOW * (size_t)a->chunk * es;
    }
    if (count == 0 || size == 1) a->tmp_n = 0, a->st = RD_DONE, a->U = a->RSU = 0;
    if (a->tmp_n) {
        if (scratch && !scratch->busy) {
            if (scratch->n < a->tmp_n) {
                wf__free(scratch->p, scratch->n);
                scratch->n = 0;
                scratch->p = wf__malloc(a->tmp_n);
                if (scratch->p) scratch->n = a->tmp_n;
            }
            if (scratch->p) {
                scratch->busy = true;
                a->scratch = scratch;
                a->tmp = scratch->p;
            }
        }
        if (!a->tmp && !(a->tmp = wf__malloc(a->tmp_n))) {
            size_t n = a->tmp_n;
            wf__free(a, sizeof *a);
            return wf__error(WF_ENOMEM, "mpi backend: all_reduce: no memory for a %zu-byte receive buffer", n);
        }
    }
    *out = a;
    bool done;
    return wf__mpi_ar_test(a, &done);   /* post the first messages now */
}

int wf__mpi_ar_test(wf__mpi_ar *a, bool *done) {
    return a->algo == WF__AR_RD ? rd_test(a, done) : ring_test(a, done);
}

void wf__mpi_ar_free(wf__mpi_ar *a, bool abandoned) {
    if (!a || abandoned) return;   /* MPI may still read or write tmp: leaked, scratch stays busy */
    if (a->scratch) a->scratch->busy = false;
    else if (a->tmp) wf__free(a->tmp, a->tmp_n);
    wf__free(a, sizeof *a);
}

void wf__ar_scratch_free(wf__ar_scratch *s) {
    if (!s || s->busy) return;
    wf__free(s->p, s->n);
    s->p = NULL;
    s->n = 0;
}

#endif /* WEFT_HAVE_MPI */
