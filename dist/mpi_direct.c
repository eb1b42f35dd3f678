/* dist/mpi_direct.c: what weft's own all-gather and reduce-scatter share (see mpi_direct.h):
 * posting a message in pieces, polling every request at once, folding the reduce-scatter's
 * received blocks once they are all in, and freeing. */
#include "dist/mpi_direct.h"

#include "dist/dist_impl.h"   /* also what keeps the file non-empty without MPI */

#ifdef WEFT_HAVE_MPI

#include <string.h>

#define MAX_PIECES 8

int wf__mpi_direct_fail(int rc, const char *coll, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return wf__error(WF_EDIST, "mpi backend: %s: %s failed: %s", coll, what, s);
}

int wf__mpi_direct_pieces(int cnt, size_t es, size_t piece) {
    int64_t pe = (int64_t)(piece / es);
    int64_t np = pe > 0 ? (cnt + pe - 1) / pe : 0;
    return np >= 2 && np <= MAX_PIECES ? (int)np : 1;
}

wf__mpi_direct *wf__mpi_direct_new(int n_requests) {
    wf__mpi_direct *d = wf__calloc(1, sizeof *d);
    if (!d) return NULL;
    d->op = MPI_OP_NULL;
    if (n_requests > 0 && !(d->rq = wf__calloc((size_t)n_requests, sizeof *d->rq))) {
        wf__free(d, sizeof *d);
        return NULL;
    }
    return d;
}

int wf__mpi_direct_post(wf__mpi_direct *d, bool send, void *p, int cnt, int peer, MPI_Comm comm, int tag, size_t piece) {
    int np = wf__mpi_direct_pieces(cnt, d->es, piece);
    int per = np > 1 ? (cnt + np - 1) / np : cnt;   /* even pieces, the last shorter */
    for (int i = 0; i < np; i++) {
        int lo = i * per, c = i == np - 1 ? cnt - lo : per;
        char *q = (char *)p + (size_t)lo * d->es;
        int rc = send ? MPI_Isend(q, c, d->dt, peer, tag, comm, &d->rq[d->nrq])
                      : MPI_Irecv(q, c, d->dt, peer, tag, comm, &d->rq[d->nrq]);
        if (rc != MPI_SUCCESS)
            return wf__mpi_direct_fail(rc, d->op == MPI_OP_NULL ? "all_gather" : "reduce_scatter",
                                       send ? "MPI_Isend" : "MPI_Irecv");
        d->nrq++;
    }
    return 0;
}

int wf__mpi_direct_test(wf__mpi_direct *d, bool *done) {
    *done = false;
    const char *coll = d->op == MPI_OP_NULL ? "all_gather" : "reduce_scatter";
    if (d->nrq) {
        int flag = 0, rc = MPI_Testall(d->nrq, d->rq, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return wf__mpi_direct_fail(rc, coll, "MPI_Testall");
        if (!flag) return 0;
        d->nrq = 0;
    }
    if (d->op != MPI_OP_NULL && !d->folded) {
        /* recv = block (me + k) op recv for k = 1..size-1: one order on every run */
        size_t nb = (size_t)d->count * d->es;
        for (int k = 1; k < d->size; k++) {
            int rc = MPI_Reduce_local(d->tmp + (size_t)(k - 1) * nb, d->recv, d->count, d->dt, d->op);
            if (rc != MPI_SUCCESS) return wf__mpi_direct_fail(rc, coll, "MPI_Reduce_local");
        }
        d->folded = true;
    }
    *done = true;
    return 0;
}

void wf__mpi_direct_free(wf__mpi_direct *d, bool abandoned) {
    if (!d || abandoned) return;   /* MPI may still read or write the buffers: leaked, scratch stays busy */
    if (d->scratch) d->scratch->busy = false;
    else if (d->tmp) wf__free(d->tmp, d->tmp_n);
    wf__free(d->rq, 0);
    wf__free(d, sizeof *d);
}

#endif /* WEFT_HAVE_MPI */
