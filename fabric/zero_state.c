/* fabric/zero_state.c: ZeRO stages 1 and 2 (fabric/strategy_zero.c) for the checkpoint code:
 * the wf__fsdp_* functions (strategy_fsdp.c) forward here when stage 1 or 2 runs. The
 * parameters are whole on every rank; the optimizer state of each master holds its rows, so a
 * full checkpoint gathers it to rank 0 in the parameter's shape (what DDP or one process
 * saves) and a load hands each rank its rows. */
#include "fabric/zero_impl.h"
#include "fabric/shard_spec.h"
#include "fabric/fsdp_entries.h"
#include "optim/optim_impl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- checkpoints */

bool wf__zero_active(const wf_strategy *s) { return zimpl(s) != NULL; }

void wf__zero_counters_get(const wf_strategy *s, wf__zero_counters *out) {
    memset(out, 0, sizeof *out);
    const zero_impl *z = zimpl(s);
    if (!z) return;
    out->reduces = z->reduces;
    out->gathers = z->gathers;
    out->stage = z->stage;
}

/* The parameters are whole on every rank, so there is nothing to gather; afterwards (a load
 * or an edit of the full parameters) each master takes its rows again. */
int wf__zero_summon(wf_strategy *s, wf_module *m, bool gather) {
    zero_impl *z = zimpl(s);
    if (!z || gather) return 0;
    int rc = 0;
    bool prev = wf_set_grad_enabled(false);
    for (int k = 0; k < z->n_models && !rc; k++) {
        zero_model *mod = z->models[k];
        if (mod->root != m) continue;
        for (int i = 0; i < mod->n && !rc; i++) {
            zero_param *zp = &mod->p[i];
            if (!zp->row_count) continue;
            wf_scope_begin();
            wf_tensor *src = wf_narrow(flat(zp->p), 0, zp->row_start * zp->row_numel, zp->row_count * zp->row_numel);
            wf_tensor *dst = flat(zp->master);
            rc = src && dst ? wf_copy_(dst, src) : err_or(WF_ENOMEM);
            if (!rc) atomic_fetch_add(&zp->master->storage->version, 1);
            wf_scope_end();
        }
    }
    wf_set_grad_enabled(prev);
    return rc;
}

/* Optimizer state of a master (local: its rows) gathered to rank 0 in the parameter's shape,
 * so the checkpoint holds what DDP or one process would have saved. */
int wf__zero_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out, bool *sharded) {
    *out = NULL;
    *sharded = false;
    zero_impl *z = zimpl(s);
    zero_param *zp = wf__zero_find_param(z, t, NULL);
    if (!zp || !local || t != zp->master) return 0;   /* parameters are whole: saved as they are */
    if (wf_ndim(local) < 1 || wf_shape(local)[0] != zp->row_count || wf_numel(local) != zp->row_count * zp->row_numel)
        return 0;   /* a scalar of the state: the same on every rank */
    *sharded = true;
    int world = z->world, rc = 0;
    int64_t per = zp->chunk * zp->row_numel, all = per * world;
    wf_dtype dt = wf_tensor_dtype(local);
    wf_device dev = wf_tensor_device(local);
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    wf_tensor *send = wf_zeros_on(&per, 1, dt, dev), *recv = send ? wf_empty_on(&all, 1, dt, dev) : NULL;
    if (!send || !recv) rc = err_or(WF_ENOMEM);
    if (!rc && zp->row_count) rc = wf_copy_(wf_narrow(send, 0, 0, wf_numel(local)), flat(wf_contiguous(local)));
    if (!rc) rc = wf_dist_all_gather(z->pg, recv, send, NULL);
    wf_tensor *full = NULL;
    if (!rc && z->rank == 0) {
        full = wf_empty_on(wf_shape(zp->p), wf_ndim(zp->p), dt, dev);
        wf_tensor *ff = full ? flat(full) : NULL;
        if (!ff) rc = err_or(WF_ENOMEM);
        for (int r = 0; r < world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(zp->rows, r, world, &s0, &c);
            if (c) rc = wf_copy_(wf_narrow(ff, 0, s0 * zp->row_numel, c * zp->row_numel),
                                 wf_narrow(recv, 0, r * per, c * zp->row_numel));
        }
        if (!rc) wf_keep(full);
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    if (!rc) *out = full;
    return rc;
}

int wf__zero_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows, bool *sharded) {
    *rows = NULL;
    *sharded = false;
    zero_param *zp = wf__zero_find_param(zimpl(s), t, NULL);
    /* a 0-dim entry is a scalar of the state (Adam's step), the same on every rank */
    if (!zp || t != zp->master || wf_ndim(full) < 1 || wf_numel(full) != zp->rows * zp->row_numel) return 0;
    *sharded = true;
    *rows = wf_narrow(full, 0, zp->row_start, zp->row_count);
    return *rows ? 0 : err_or(WF_ENOMEM);
}

/* ---------------------------------------------------------------- shard entries
 * The sharded checkpoint code's view (fabric/shard_spec.h, reached through
 * wf__fsdp_module_entries / wf__fsdp_optimizer_entries): a module's tensors are whole on every
 * rank (replicated); an optimizer's state tensors hold the rows of their master. */

/* module tensors are whole on every rank: the defaults (replicated); an optimizer state of a
 * master holds its rows */
static void zero_place(void *ud, wf_tensor *param, bool optimizer_state, wf__shard_place *pl) {
    zero_param *zp = optimizer_state ? wf__zero_find_param(ud, param, NULL) : NULL;
    if (!zp || param != zp->master) return;
    pl->global = zp->p;
    pl->row_start = zp->row_start;
    pl->sharded = true;
}

int wf__zero_module_entries(wf_strategy *s, wf_module *m, const char *prefix, wf__shard_list *out) {
    return wf__shard_list_module(m, prefix, zero_place, zimpl(s), out);
}

int wf__zero_optimizer_entries(wf_strategy *s, wf_optimizer *o, const char *prefix, wf__shard_list *out) {
    return wf__shard_list_optimizer(o, prefix, zero_place, zimpl(s), out);
}
