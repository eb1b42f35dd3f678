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
    wf_tensor *gpart;                 /* stage 2: this rank's reduced gradient rows, working
                                         dtype, accumulated until the step (owned; NULL before) */
    int64_t rows, row_numel, chunk;   /* dim 0 (1 for a 0-dim parameter), per row, ceil(rows/N) */
    int64_t row_start, row_count;     /* this rank's rows */
    int64_t offset;                   /* elements before it in a rank's region of the gather */
    int hook;                         /* grad-ready hook on p, -1 when none */
    wf_work *work;                    /* its reduction in flight (owned), NULL when none */
    wf_tensor *rs_in, *rs_out;        /* the reduction's buffers (owned while in flight) */
} zero_param;

typedef struct zero_impl zero_impl;
struct zero_model {
    zero_impl *z;
    wf_module *root;                  /* the set-up module (borrowed) */
    wf_optimizer *opt;                /* the optimizer set up with it (borrowed), NULL before */
    zero_param *p;                    /* owned */
    int n;
    int64_t per_rank;                 /* elements of one rank's region in the all-gather */
    wf_dtype work_dtype;              /* the working parameters' dtype */
    bool armed;                       /* a backward runs: the hooks reduce */
};

struct zero_impl {
    int stage;
    wf_process_group *pg;             /* borrowed (DDP's world group) */
    int rank, world;
    zero_model **models;              /* owned */
    int n_models, cap_models;
    int64_t reduces, gathers;
    zero_param *pending[2];           /* reductions in flight, oldest first */
    int n_pending;
};

static inline zero_impl *zimpl(const wf_strategy *s) { return s ? s->zero_impl : NULL; }

static inline wf_tensor *flat(wf_tensor *t) {
    wf_tensor *d = wf_detach(t);
    int64_t n = wf_numel(t);
    return d ? wf_view(d, &n, 1) : NULL;
}

static inline int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

/* The entry whose working parameter or master is t (NULL if none); *in its model. */
zero_param *wf__zero_find_param(zero_impl *z, const void *t, zero_model **in);
/* DeepSpeed's rule, for stages 1-3: one optimizer, set up with its model. 0 or a code. */
int wf__zero_check_optimizers(const wf_strategy *s, const wf_module *m, int n);

#endif
