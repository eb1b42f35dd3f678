/* fabric/zero_impl.h: ZeRO stages 1 and 2's bookkeeping (fabric/strategy_zero.c), shared with
 * the checkpoint side (fabric/zero_state.c). Not installed. */
#ifndef WEFT_FABRIC_ZERO_IMPL_H
#define WEFT_FABRIC_ZERO_IMPL_H

#include "fabric/fabric_impl.h"

typedef struct zero_model zero_model;

typedef struct zero_param {
    zero_model *model;
    wf_tensor *p;                     /* the module's (working) parameter (retained) */
    const void *orig;                 /* the handle before the mixed-precision cast: the one the
                                         optimizer was built on (identity only, never read) */
    wf_tensor *master;                /* this rank's rows, a leaf the optimizer steps (owned) */
    wf_tensor *gpart;                 /* this rank's reduced gradient rows, working dtype,
                                         accumulated until the step (owned; NULL before; stage 1
                                         frees it with the step) */
    int64_t rows, row_numel, chunk;   /* dim 0 (1 for a 0-dim parameter), per row, ceil(rows/N) */
    int64_t row_start, row_count;     /* this rank's rows */
    int64_t offset;                   /* elements before it in a rank's region of the gather */
    int hook;                         /* stage 2's grad-ready hook on p, -1 when none */
    int bucket;                       /* its reduction bucket, -1 when none (no gradient) */
    int64_t boff;                     /* its place in the bucket (strategy_zero_buckets.c) */
    bool ready;                       /* this reduction: its gradient is in the bucket */
} zero_param;

/* A reduction bucket (fabric/strategy_zero_buckets.c): the buffers exist only from its first
 * gradient of a reduction until it is reduced. */
typedef struct zero_bucket {
    int *idx, n;                      /* its parameters (indices into the model's p); owned */
    int pending;                      /* not ready yet this backward */
    int64_t numel, per;               /* the buffer's elements; one rank's region (reduce-scatter) */
    bool rs;                          /* reduce-scatter layout (else all-reduce, natural layout) */
    bool launched, any;               /* any: a gradient came this backward */
    wf_tensor *buf, *out;             /* the gradients in; the rank's rows out (reduce-scatter) */
    wf_work *work;                    /* owned while in flight */
} zero_bucket;

typedef struct zero_impl zero_impl;
struct zero_model {
    zero_impl *z;
    wf_module *root;                  /* the set-up module (borrowed) */
    wf_optimizer *opt;                /* the optimizer set up with it (borrowed), NULL before */
    zero_param *p;                    /* owned */
    int n;
    int64_t per_rank;                 /* elements of one rank's region in the all-gather */
    wf_dtype work_dtype;              /* the working parameters' dtype */
    bool armed;                       /* a backward runs: the hooks reduce (stage 2) */
    bool local;                       /* stage 1: a backward left local gradients, not reduced */
    zero_bucket *b;                   /* owned */
    int nb, next_launch, next_done;   /* buckets; the next to launch, to wait for */
};

struct zero_impl {
    int stage;
    wf_process_group *pg;             /* borrowed (DDP's world group) */
    int rank, world;
    zero_model **models;              /* owned */
    int n_models, cap_models;
    int64_t reduces, gathers;         /* gradients reduced, all-gathers of the step's rows */
    int64_t buckets_launched;         /* reduction collectives */
    /* Fabric's DeepSpeedStrategy defaults, in elements: 2e8 each. Set before setup (tests). */
    int64_t reduce_bucket_size, allgather_bucket_size;
    bool bucket_reduce_scatter;       /* reduce-scatter the buckets (else all-reduce: tests) */
    int reduce_rc;                    /* stage 1: a failed reduction in grad_params, for the step */
};

static inline zero_impl *zimpl(const wf_strategy *s) { return s ? s->zero_impl : NULL; }

static inline wf_tensor *flat(wf_tensor *t) {
    wf_tensor *d = wf_detach(t);
    int64_t n = wf_numel(t);
    return d ? wf_view(d, &n, 1) : NULL;
}

static inline int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

/* Buckets (strategy_zero_buckets.c): built at setup for the parameters with hooks; a
 * gradient's hook; the backward's end (launch the rest, wait, rearm); free. 0 or a code. */
int wf__zero_buckets_build(zero_impl *z, zero_model *mod);
int wf__zero_grad_ready(zero_impl *z, zero_param *zp);
int wf__zero_buckets_flush(zero_impl *z, zero_model *mod);
void wf__zero_buckets_free(zero_model *mod);
/* Stage 1 at the optimizer boundary: the local gradients reduced into the masters. */
int wf__zero_reduce_local(zero_impl *z, zero_model *mod);

/* The entry whose working parameter or master is t (NULL if none); *in its model. */
zero_param *wf__zero_find_param(zero_impl *z, const void *t, zero_model **in);
/* DeepSpeed's rule, for stages 1-3: one optimizer, set up with its model. 0 or a code. */
int wf__zero_check_optimizers(const wf_strategy *s, const wf_module *m, int n);

#endif
