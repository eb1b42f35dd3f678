/* dist/mpi_allgather.c: weft's own all-gather for the mpi backend (see mpi_direct.h): every
 * rank's block sent straight to every other rank and received straight into its place in
 * recv, no intermediate buffer. */
#include "dist/mpi_direct.h"

#include "dist/dist_impl.h"   /* also what keeps the file non-empty without MPI */

#ifdef WEFT_HAVE_MPI

#include <string.h>

int wf__mpi_allgather_start(wf__mpi_direct **out, const void *send, void *recv, int count, MPI_Datatype dt, size_t es,
                            MPI_Comm comm, int me, int size, int tag, size_t piece) {
    *out = NULL;
    int np = count > 0 ? wf__mpi_direct_pieces(count, es, piece) : 0;
    wf__mpi_direct *d = wf__mpi_direct_new(2 * (size - 1) * np);
    if (!d) return wf__error(WF_ENOMEM, "mpi backend: all_gather: out of memory");
    d->count = count, d->me = me, d->size = size, d->dt = dt, d->es = es;
    *out = d;
    if (!count) return 0;
    size_t nb = (size_t)count * es;
    char *own = (char *)recv + (size_t)me * nb;
    /* receives first, so a peer's send finds its match waiting */
    for (int k = 1; k < size; k++) {
        int from = (me - k + size) % size, rc;
        if ((rc = wf__mpi_direct_post(d, false, (char *)recv + (size_t)from * nb, count, from, comm, tag, piece)))
            return rc;
    }
    for (int k = 1; k < size; k++) {
        int rc;
        if ((rc = wf__mpi_direct_post(d, true, (void *)send, count, (me + k) % size, comm, tag, piece))) return rc;
    }
    if (own != (const char *)send) memmove(own, send, nb);   /* while the messages travel */
    bool done;
    return wf__mpi_direct_test(d, &done);
}

#endif /* WEFT_HAVE_MPI */
