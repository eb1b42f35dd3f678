/* fabric/ddp_reducer.h: DDP's gradient reducer (PyTorch's c10d Reducer), private to the
 * DDP strategy. Not installed.
 *
 * One reducer per set-up module. The module's gradients live in flat bucket buffers (each
 * parameter's .grad is a view into its bucket); a grad-ready hook on every parameter marks
 * it ready during backward, scaled by 1/world, and a bucket whose gradients are all ready
 * is all-reduced (sum) at once, asynchronously, in bucket order. An end-of-backward
 * callback launches what is left, waits for what is still in flight, agrees on unused
 * parameters and, after the first step, rebuilds the buckets once in the order the
 * gradients became ready (rank 0's order, so every rank has the same buckets). */
#ifndef WEFT_FABRIC_DDP_REDUCER_H
#define WEFT_FABRIC_DDP_REDUCER_H

#include "fabric/fabric_impl.h"

typedef struct wf_ddp_reducer wf_ddp_reducer;

typedef struct wf_ddp_reducer_opts {
    double bucket_cap_mb;            /* > 0 */
    double first_bucket_mb;          /* > 0 */
    bool find_unused_parameters;
    bool static_graph;
    wf_dtype comm_dtype;             /* WF_F16 / WF_BF16 compression, or the gradients' own (-1) */
} wf_ddp_reducer_opts;

/* Time spent, summed over the synced backwards so far (milliseconds): backward compute (from
 * arming to the end of the local graph), all-reduce (the union of the buckets' spans, launch
 * to completion as the host saw it) and their overlap. */
typedef struct wf_ddp_stats {
    double backward_ms, comm_ms, overlap_ms;
    int64_t steps, buckets_launched;
} wf_ddp_stats;

/* Build the buckets for m's parameters that require grad and register the hooks. The
 * reducer retains the parameters; free it with wf__ddp_reducer_free. NULL + error. */
wf_ddp_reducer *wf__ddp_reducer_new(wf_process_group *pg, wf_module *m, const wf_ddp_reducer_opts *o);
/* Arm for the synced backward about to run: hooks reduce, and the finalizer is queued as an
 * end-of-backward callback. 0 or a code. */
int wf__ddp_reducer_prepare(wf_ddp_reducer *r);
/* After the backward returned: when it never reached the engine (so the finalizer did not
 * run), run the finalizer now, so every rank still issues the same collectives. Returns rc
 * or the finalizer's error. */
int wf__ddp_reducer_after_backward(wf_ddp_reducer *r, int rc);
wf_module *wf__ddp_reducer_module(const wf_ddp_reducer *r);
/* p's name when r reduces it, else NULL (borrowed, lives as long as r). */
const char *wf__ddp_reducer_param_name(const wf_ddp_reducer *r, const wf_tensor *p);
int wf__ddp_reducer_num_buckets(const wf_ddp_reducer *r);
/* Tests: the bucket of the i-th parameter that requires grad (registration order), -1 if none. */
int wf__ddp_reducer_bucket_of(const wf_ddp_reducer *r, int i);
void wf__ddp_reducer_stats(const wf_ddp_reducer *r, wf_ddp_stats *out);
/* Remove the hooks, release the parameters (their grads, views, keep the buffers alive). */
void wf__ddp_reducer_free(wf_ddp_reducer *r);

/* Validate the config's DDP options (any strategy: a typo is an error at wf_fabric_new). */
int wf__ddp_check_opts(const wf_ddp_opts *o);

#endif
