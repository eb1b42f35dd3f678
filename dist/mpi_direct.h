/* dist/mpi_direct.h: weft's own all-gather and reduce-scatter for the mpi backend, over
 * non-blocking point-to-point MPI on the group's point-to-point communicator (the one its own
 * all-reduce uses), as state machines polled from the work's test() hook like
 * dist/mpi_allreduce.h's, so the front-end's deadline applies unchanged. Not installed.
 *
 * Both are "direct": every rank posts its messages to and from every other rank at once (N - 1
 * each way), the sends staggered (rank me first to me + 1, then me + 2, ...) so the ranks do
 * not all start on the same peer. On one host (shared memory) that moves the minimum traffic,
 * (N - 1) / N of the result per rank, in one round; at 2 ranks it is a single exchange, half
 * the traffic of an all-reduce. Why not MPI_Iallgather / MPI_Ireduce_scatter_block: Open MPI's
 * non-blocking collectives (libnbc) run at about half the bandwidth of its blocking ones, and
 * its reduce-scatter's AVG needs a second pass (bench/NOTES.md, "ZeRO buckets and FSDP").
 *
 *  - all-gather (dist/mpi_allgather.c): rank r's count elements land at recv + r * count on
 *    every rank; this rank's own block is copied (unless send is already there).
 *  - reduce-scatter (dist/mpi_reduce_scatter.c): block r (count elements) of every rank's send
 *    buffer is sent to rank r; this rank folds the N - 1 blocks it receives into a copy of its
 *    own block, in a fixed order (ranks me + 1, me + 2, ...), so a run repeats bit for bit.
 *    The received blocks wait in (N - 1) * count elements of the group's scratch.
 *
 * A message of 2..8 pieces of at most `piece` bytes goes as that many messages (Open MPI's
 * shared-memory eager limit: see dist/mpi_allreduce.c's RD_MAX_PIECES). */
#ifndef WEFT_DIST_MPI_DIRECT_H
#define WEFT_DIST_MPI_DIRECT_H

#include "weft_config.h"

#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#include "dist/mpi_allreduce.h"

/* One collective in flight (the machinery shared by both, dist/mpi_direct.c). */
typedef struct wf__mpi_direct {
    MPI_Request *rq;          /* every send and receive, posted at start */
    int nrq;
    void *recv;               /* reduce-scatter: the result, folded once all is in */
    char *tmp;                /* reduce-scatter: the received blocks, (size - 1) * count */
    size_t tmp_n;
    wf__ar_scratch *scratch;  /* tmp is scratch->p when set */
    int count, me, size;
    MPI_Datatype dt;
    size_t es;
    MPI_Op op;                /* MPI_OP_NULL: an all-gather, nothing to fold */
    bool folded;
} wf__mpi_direct;

/* Start an all-gather of count elements of dt (es bytes each) from send into recv (size *
 * count elements) over comm, on tag. *out (owned by the caller, freed with
 * wf__mpi_direct_free) is set on success. 0 or WF_ENOMEM / WF_EDIST. */
int wf__mpi_allgather_start(wf__mpi_direct **out, const void *send, void *recv, int count, MPI_Datatype dt, size_t es,
                            MPI_Comm comm, int me, int size, int tag, size_t piece);
/* Start a reduce-scatter with op: send holds size * count elements, recv gets count.
 * scratch: the group's (used when free and large enough, grown when free; else a buffer of
 * its own). 0 or WF_ENOMEM / WF_EDIST. */
int wf__mpi_reduce_scatter_start(wf__mpi_direct **out, const void *send, void *recv, int count, MPI_Datatype dt,
                                 size_t es, MPI_Op op, MPI_Comm comm, int me, int size, int tag, size_t piece,
                                 wf__ar_scratch *scratch);
/* Advance without blocking; *done once this rank's result is complete. 0 or WF_EDIST. */
int wf__mpi_direct_test(wf__mpi_direct *d, bool *done);
/* Free a finished (or failed) one. abandoned: it timed out and MPI may still use its buffers,
 * so they (and the scratch, left busy) are leaked instead. */
void wf__mpi_direct_free(wf__mpi_direct *d, bool abandoned);

/* The path an all_gather (all_gather true: of `bytes` result bytes) or a reduce_scatter takes
 * on pg (backend_mpi.c, for tests and benchmarks): "weft" or "mpi"; NULL for a group that is
 * not the mpi backend's (or a subgroup this rank is not in). */
struct wf_process_group;
const char *wf__mpi_direct_path(const struct wf_process_group *pg, bool all_gather, size_t bytes);

/* shared by the two (dist/mpi_direct.c): a zeroed state with room for n requests; post one
 * message of cnt elements at p to or from peer, in pieces; a failed MPI call as WF_EDIST */
wf__mpi_direct *wf__mpi_direct_new(int n_requests);
int wf__mpi_direct_post(wf__mpi_direct *d, bool send, void *p, int cnt, int peer, MPI_Comm comm, int tag, size_t piece);
int wf__mpi_direct_fail(int rc, const char *coll, const char *what);
/* the number of messages cnt elements of es bytes go as (1, or 2..8 pieces) */
int wf__mpi_direct_pieces(int cnt, size_t es, size_t piece);

#endif
#endif
