/* fabric/shard_spec.h: how a sharded state describes itself to the sharded checkpoint code.
 * Not installed.
 *
 * FSDP and ZeRO-3 shard every parameter (and its optimizer state) evenly along dim 0, as
 * FSDP2 does: rank r of N holds rows [r*c, min((r+1)*c, rows)) with c = ceil(rows / N), so a
 * rank may hold zero rows. A sharded state is therefore a list of entries, one per tensor,
 * each saying which rows of which global tensor this rank holds. The strategy builds the
 * list (fabric/strategy_fsdp.c); the checkpoint code (fabric/sharded_checkpoint.c) writes
 * and reads it at any world size without knowing what a module or an optimizer is. */
#ifndef WEFT_FABRIC_SHARD_SPEC_H
#define WEFT_FABRIC_SHARD_SPEC_H

#include "weft/tensor.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct wf__shard_entry {
    const char *name;                  /* the checkpoint key, e.g. "model/0.weight" (borrowed) */
    wf_tensor *local;                  /* this rank's rows, contiguous, on any device (borrowed);
                                          save reads it, load writes into it in place */
    int ndim;                          /* >= 1 for sharded entries; 0 allowed when replicated */
    int64_t global_shape[WF_MAX_DIMS]; /* the full tensor's shape; dims >= 1 equal local's */
    int64_t row_start;                 /* first global row held here (dim 0) */
    bool replicated;                   /* every rank holds the whole tensor (row_start 0,
                                          local = full): written once, by rank 0 */
} wf__shard_entry;

/* The rows rank r of world n holds of a dim-0 extent `rows`: [*start, *start + *count). */
static inline void wf__shard_rows(int64_t rows, int r, int n, int64_t *start, int64_t *count) {
    int64_t c = (rows + n - 1) / n;
    int64_t s = c * r;
    if (s > rows) s = rows;
    int64_t e = s + c;
    if (e > rows) e = rows;
    *start = s;
    *count = e - s;
}

#endif
