/* dist/mpi_allreduce.h: weft's own all-reduce algorithms for the mpi backend, over
 * non-blocking point-to-point MPI (MPI_Isend / MPI_Irecv on a communicator of their own, the
 * reductions by MPI_Reduce_local, so every MPI datatype and user op works). Not installed.
 *
 * One all-reduce is a state machine: wf__mpi_ar_start posts the first messages, each
 * wf__mpi_ar_test advances it as far as it can without blocking. The backend calls test from
 * its work's test() hook, so the front-end's deadline (WF_ETIMEOUT, broken group) applies
 * unchanged.
 *
 *  - recursive doubling (WF__AR_RD): log2(p) exchanges of the whole buffer, p the largest
 *    power of two <= size; the ranks >= p first send their data to rank - p, which folds it
 *    in, and get the result back at the end. For small messages: latency-bound.
 *  - ring (WF__AR_RING): reduce-scatter then all-gather, size - 1 steps each, every step
 *    split in chunks (pipelined, a few in flight) so the received chunk and the one it folds
 *    into stay in cache. For large messages: bandwidth-bound.
 *
 * Every rank ends with bit-identical results: the reduction tree is the same on all ranks and
 * the ops are commutative (a + b == b + a in IEEE arithmetic). */
#ifndef WEFT_DIST_MPI_ALLREDUCE_H
#define WEFT_DIST_MPI_ALLREDUCE_H

#include "weft_config.h"

#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum wf__ar_algo { WF__AR_RD = 1, WF__AR_RING = 2 } wf__ar_algo;

/* A scratch buffer a group lends to its all-reduces (one at a time), so a run of calls does
 * not allocate (and fault in) fresh memory each time. Owned by the group. */
typedef struct wf__ar_scratch {
    void *p;
    size_t n;
    bool busy;
} wf__ar_scratch;

typedef struct wf__mpi_ar wf__mpi_ar;

/* Start an in-place all-reduce of count elements of dt (es bytes each) at buf over comm
 * (rank me of size ranks), with op, on tag. chunk: the ring's chunk in bytes; piece: recursive
 * doubling splits a message of 2..8 such pieces (bytes; 0: never) in as many. *out (owned by
 * the caller, freed with wf__mpi_ar_free) is set on success. 0 or WF_ENOMEM / WF_EDIST. */
int wf__mpi_ar_start(wf__mpi_ar **out, wf__ar_algo algo, void *buf, int count, MPI_Datatype dt, size_t es,
                     MPI_Op op, MPI_Comm comm, int me, int size, int tag, size_t chunk, size_t piece,
                     wf__ar_scratch *scratch);
/* Advance without blocking; *done once this rank's result is complete. 0 or WF_EDIST. */
int wf__mpi_ar_test(wf__mpi_ar *a, bool *done);
/* Free a finished (or failed) all-reduce. abandoned: it timed out and MPI may still use its
 * buffers, so they (and the scratch, left busy) are leaked instead. */
void wf__mpi_ar_free(wf__mpi_ar *a, bool abandoned);
/* The path an all_reduce of this many bytes takes on pg (backend_mpi.c, for tests and
 * benchmarks): "rd", "ring" or "mpi" (Open MPI's MPI_Iallreduce); NULL for a group that is not
 * the mpi backend's (or a subgroup this rank is not in). */
struct wf_process_group;
const char *wf__mpi_allreduce_path(const struct wf_process_group *pg, size_t bytes);
/* the group's scratch, when it goes (leaked while an abandoned all-reduce holds it) */
void wf__ar_scratch_free(wf__ar_scratch *s);

#endif
#endif
