/* dist/mpi_reduce_scatter.c: weft's own reduce-scatter for the mpi backend (see
 * mpi_direct.h): block r of the send buffer goes straight to rank r; the N - 1 blocks this
 * rank receives wait in scratch and are folded into a copy of its own block once all are in. */
#include "dist/mpi_direct.h"

#include "dist/dist_impl.h"   /* also what keeps the file non-empty without MPI */

#ifdef WEFT_HAVE_MPI

#include <string.h>

int wf__mpi_reduce_scatter_start(wf__mpi_direct **out, const void *send, void *recv, int count, MPI_Datatype dt,
                                 size_t es, MPI_Op op, MPI_Comm comm, int me, int size, int tag, size_t piece,
                                 wf__ar_scratch *scratch) {
    *out = NULL;
    int np = count > 0 ? wf__mpi_direct_pieces(count, es, piece) : 0;
    wf__mpi_direct *d = wf__mpi_direct_new(2 * (size - 1) * np);
    if (!d) return wf__error(WF_ENOMEM, "mpi backend: reduce_scatter: out of memory");
    d->count = count, d->me = me, d->size = size, d->dt = dt, d->es = es, d->op = op, d->recv = recv;
    *out = d;
    size_t nb = (size_t)count * es;
    d->tmp_n = nb * (size_t)(size - 1);
    if (!d->tmp_n) {
        d->folded = true;
        if (count && recv != (const char *)send + (size_t)me * nb) memmove(recv, (const char *)send + (size_t)me * nb, nb);
        return 0;
    }
    if (scratch && !scratch->busy) {
        if (scratch->n < d->tmp_n) {
            wf__free(scratch->p, scratch->n);
            scratch->n = 0;
            scratch->p = wf__malloc(d->tmp_n);
            if (scratch->p) scratch->n = d->tmp_n;
        }
        if (scratch->p) {
            scratch->busy = true;
            d->scratch = scratch;
            d->tmp = scratch->p;
        }
    }
    if (!d->tmp && !(d->tmp = wf__malloc(d->tmp_n)))
        return wf__error(WF_ENOMEM, "mpi backend: reduce_scatter: no memory for a %zu-byte receive buffer", d->tmp_n);
    /* slot k - 1 holds rank (me + k)'s block: the fold's order (mpi_direct.c) */
    for (int k = 1; k < size; k++) {
        int rc;
        if ((rc = wf__mpi_direct_post(d, false, d->tmp + (size_t)(k - 1) * nb, count, (me + k) % size, comm, tag, piece)))
            return rc;
    }
    for (int k = 1; k < size; k++) {
        int to = (me - k + size) % size, rc;
        if ((rc = wf__mpi_direct_post(d, true, (char *)send + (size_t)to * nb, count, to, comm, tag, piece))) return rc;
    }
    memmove(recv, (const char *)send + (size_t)me * nb, nb);
    bool done;
    return wf__mpi_direct_test(d, &done);
}

#endif /* WEFT_HAVE_MPI */
