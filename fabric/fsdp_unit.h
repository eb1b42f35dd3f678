/* fabric/fsdp_unit.h: FSDP's units, private to the FSDP strategy. Not installed.
 *
 * A unit is a submodule the auto-wrap policy picked (or the set-up root, for the parameters
 * no child unit took). Each of its parameters is sharded as FSDP2 does: rank r keeps rows
 * wf__shard_rows(dim0, r, world) as a leaf tensor of its own (the shard, what the optimizer
 * steps), and the module's parameter handle (the "full" tensor) keeps its shape and its
 * storage object, whose data is freed while the unit is resharded and allocated again when
 * the unit is gathered. Keeping the storage object (PyTorch FSDP's storage resize to 0 and
 * back) is what lets autograd's saved tensors, which alias that storage, see the values
 * again once the unit is re-gathered for its backward.
 *
 * One all-gather per unit: every rank packs its rows of every parameter into a flat buffer,
 * each parameter padded to ceil(rows / world) rows, so uneven dim 0 needs no special
 * collective; the gradients travel the same way in reduce-scatter. A unit whose parameters
 * all split evenly (rows a multiple of world) skips the flat buffer: each full parameter is
 * its own all-gather's output, rank r's rows its slice r, gathered in place (one all-gather
 * per parameter, all in flight at once): no copies into and out of a buffer. */
#ifndef WEFT_FABRIC_FSDP_UNIT_H
#define WEFT_FABRIC_FSDP_UNIT_H

#include "fabric/fabric_impl.h"

typedef enum fsdp_sharding { FSDP_FULL_SHARD, FSDP_SHARD_GRAD_OP, FSDP_NO_SHARD, FSDP_HYBRID_SHARD } fsdp_sharding;

typedef struct fsdp_unit fsdp_unit;

typedef struct fsdp_param {
    fsdp_unit *unit;          /* the unit holding it (its grad-ready hook's way back) */
    wf_tensor *full;          /* the module's parameter handle (retained) */
    wf_tensor *shard;         /* this rank's rows, a leaf (owned); f32 for half-precision params */
    char *name;               /* dotted name in the set-up module (owned) */
    int64_t rows;             /* dim 0 of the full tensor (1 for a 0-dim parameter) */
    int64_t row_numel;        /* elements per row */
    int64_t chunk;            /* ceil(rows / world): the padded rows per rank */
    int64_t row_start, row_count;   /* this rank's rows */
    int64_t offset;           /* elements before it in a rank's region of the flat buffers */
    unsigned version;         /* its storage's version when an in-place gather began */
    int hook;                 /* grad-ready hook handle, -1 when none */
    bool ready;               /* its gradient is final in the backward running now */
} fsdp_param;

typedef struct fsdp_model fsdp_model;

struct fsdp_unit {
    uint64_t id;              /* key of the live-unit registry (the module hooks' ud) */
    fsdp_model *model;        /* the set-up module it belongs to */
    wf_module *m;             /* borrowed */
    int index;                /* in model->units */
    bool is_root;
    fsdp_param *p;            /* owned */
    int n;
    int n_grad;               /* parameters that require grad */
    int n_ready;
    int64_t per_rank;         /* elements of one rank's region in the flat buffers */
    int64_t numel;            /* of all its parameters */
    wf_dtype dtype;           /* the full parameters' dtype (the all-gather's) */
    int pre_hook, post_hook;  /* forward hook handles on m, -1 when none */
    bool gathered;            /* the full parameters hold their values */
    bool reduced;             /* gradients reduce-scattered in this backward */
    wf_work *work;            /* in-flight all-gather (owned) */
    bool even;                /* every parameter splits evenly: gathered in place (see above) */
    wf_work **pwork;          /* even: each parameter's in-flight all-gather (owned, n entries) */
    bool pwork_live;          /* even: those are in flight */
    wf_tensor *send, *recv;   /* its buffers (owned while in flight) */
    wf_work *rs_work;         /* in-flight reduce-scatter (owned) */
    wf_tensor *rs_in, *rs_out;/* its buffers (owned while in flight) */
};

/* What every unit of every set-up module shares (the strategy's FSDP state). */
typedef struct fsdp_shared {
    wf_process_group *pg;     /* the sharding group (borrowed): the world, or this node's ranks
                                 under HYBRID_SHARD across nodes */
    wf_process_group *replica;/* HYBRID_SHARD across nodes: the ranks holding the same rows on the
                                 other nodes, whose gradients are averaged too (owned by the
                                 strategy), else NULL */
    int rank, world;
    fsdp_sharding sharding;
    wf_dtype reduce_dtype;
    int in_flight;            /* all-gathers started and not yet waited for (at most 2) */
    int max_in_flight;        /* the most seen at once */
    fsdp_unit *rs_pending[2]; /* reduce-scatters in flight, oldest first (at most 2: each holds
                                 a unit's gradients, so more would pile up unsharded memory) */
    int n_rs;
    int64_t gathers, reduces; /* counters, for tests and the benchmark */
} fsdp_shared;

struct fsdp_model {
    fsdp_shared *sh;
    wf_module *root;          /* the set-up module (borrowed) */
    fsdp_unit **units;        /* owned; the root unit is last */
    int n_units;
    int *order, *cur;         /* unit indices in the order the last forward ran them, and the
                                 forward running now (n_units entries each, owned) */
    int n_order, n_cur;
    bool armed;               /* a synced backward: grad-ready hooks reduce-scatter */
    bool finalizer_queued;    /* armed and not yet finalized: a backward is running (a forward
                                 now is activation checkpointing's recompute) */
};

/* clip_grad_norm_ (strategy_fsdp.c) over gradients whose parts are disjoint across pg's ranks
 * (FSDP's shards, ZeRO's rows): the norm of them all, the same scale on every rank. */
int wf__sharded_clip_grad_norm(wf_process_group *pg, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                               bool error_if_nonfinite, double *total_norm);
/* FULL_SHARD (reshard) or SHARD_GRAD_OP: the one choice the shards' layout does not depend on,
 * so it may change between setups (ZeRO-3, strategy_zero3.c). */
void wf__fsdp_set_reshard_after_forward(wf_strategy *s, bool reshard);

/* Build a unit for m holding the given parameters (names copied): shards from the full
 * values (which must already agree across ranks), hooks registered. NULL + error. */
fsdp_unit *wf__fsdp_unit_new(fsdp_model *mod, wf_module *m, bool is_root, wf_tensor *const *params,
                             const char *const *names, int n);
void wf__fsdp_unit_free(fsdp_unit *u);
/* Start the unit's all-gather (async) unless it is gathered or in flight. */
int wf__fsdp_unit_gather_start(fsdp_unit *u);
/* Finish it (starting it first when needed): the full parameters hold their values. */
int wf__fsdp_unit_gather_wait(fsdp_unit *u);
/* Free the full parameters' data (a no-op when not gathered). Waits for an in-flight gather
 * first so its buffers are not left behind. */
int wf__fsdp_unit_reshard(fsdp_unit *u);
/* Start the reduce-scatter (sum, in the reduce dtype) of the full gradients, then drop them
 * (they are copied into its buffer): a parameter without a gradient contributes zeros. The
 * shards take their rows scaled by 1/N (the average). Asynchronous; when two are in flight
 * already, the oldest is finished first. */
int wf__fsdp_unit_reduce(fsdp_unit *u);
/* Finish every reduce-scatter in flight: the results land in the shards' .grad (accumulating
 * into an existing one). */
int wf__fsdp_reduce_flush(fsdp_shared *sh);
/* Under FULL_SHARD a non-root unit's output is wrapped in an identity node whose backward
 * re-gathers the unit (and prefetches the one the backward reaches next). */
int wf__fsdp_unit_hook_output(fsdp_unit *u, wf_tensor **output);
/* Register the unit's forward pre/post hooks on its module (they outlive the unit harmlessly). */
int wf__fsdp_unit_hook_module(fsdp_unit *u);
/* The next unit to prefetch after u in the direction given, or NULL. */
fsdp_unit *wf__fsdp_next_unit(fsdp_unit *u, bool backward);

#endif
