/* fabric/strategy_fsdp.c: the "fsdp" strategy (Lightning's FSDPStrategy) with FSDP2's
 * per-parameter sharding: every parameter is split along dim 0 over the ranks, each rank's
 * rows a leaf of its own that the optimizer steps, so parameters, gradients and optimizer
 * state all take 1/N of the memory.
 *
 * The process group, the collectives of the Fabric (all_gather, all_reduce, broadcast,
 * barrier), the 16-mixed found-inf agreement and the rank-0 checkpoint write are DDP's: this
 * strategy calls DDP's ops for them (s->impl stays DDP's state; ours is s->fsdp_impl).
 * NO_SHARD is DDP itself (PyTorch's NO_SHARD is DDP's algorithm), so it uses DDP's reducer.
 *
 * The timeline of one step (FULL_SHARD), per unit (fsdp_unit.c):
 *   forward pre hook   all-gather (the next unit's started first: prefetch, two at most)
 *   forward post hook  free the full parameters (not the root's nor the last unit's), hook
 *                      the output
 *   output's gradient  all-gather again (the next unit in backward prefetched)
 *   grads all final    reduce-scatter (average) into the shards' .grad, drop the full
 *                      gradients, free the full parameters
 *   end of backward    reduce what no hook reduced (unused parameters count zero), free all
 * Every rank must use the same parameters in a backward (as DDP without
 * find_unused_parameters): the reduce-scatters are then issued in the same order everywhere.
 * SHARD_GRAD_OP skips the free after forward (and so the second gather). */
#include "fabric/fabric_impl.h"
#include "fabric/fsdp_unit.h"
#include "fabric/shard_spec.h"
#include "fabric/fsdp_entries.h"
#include "tensor/meta_init.h"
#include "optim/optim_impl.h"
#include "autograd/autograd_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct fsdp_impl {
    fsdp_shared sh;
    fsdp_model **models;              /* owned */
    int n_models, cap_models;
} fsdp_impl;

static fsdp_impl *fimpl(const wf_strategy *s) { return s->fsdp_impl; }

void wf__fsdp_set_reshard_after_forward(wf_strategy *s, bool reshard) {
    s->fsdp.sharding = reshard ? FSDP_FULL_SHARD : FSDP_SHARD_GRAD_OP;
    if (fimpl(s)) fimpl(s)->sh.sharding = (fsdp_sharding)s->fsdp.sharding;
}

/* (the options are checked in strategy_options.c) */

/* ---------------------------------------------------------------- environment */

static bool no_shard(const wf_strategy *s) { return s->fsdp.sharding == FSDP_NO_SHARD; }

/* HYBRID_SHARD across nodes: the group of the ranks that hold the same rows on every node
 * (the same index within their node). Every node must have as many ranks, so that the rows
 * match: every rank learns every rank's (node, index, node size), then all create each
 * index's group in order. */
static int make_replica_group(wf_strategy *s, fsdp_impl *f) {
    int world = wf_process_group_size(s->pg), rc = 0;
    int32_t mine[3] = { s->cluster.node_rank, wf_process_group_rank(s->node_pg), wf_process_group_size(s->node_pg) };
    int32_t *all = wf__calloc((size_t)world * 3, sizeof *all);
    int *ranks = wf__calloc((size_t)world, sizeof *ranks);
    if (!all || !ranks) rc = wf__error(WF_ENOMEM, "wf_fabric_launch: out of memory");
    if (!rc) rc = wf_dist_gather_bytes(s->pg, mine, sizeof mine, all, 0);
    if (!rc) rc = wf_dist_broadcast_bytes(s->pg, all, (size_t)world * 3 * sizeof *all, 0);
    for (int r = 1; !rc && r < world; r++)
        if (all[3 * r + 2] != all[2])
            rc = wf__error(WF_EINVAL, "wf_fabric_launch: FSDP HYBRID_SHARD needs as many ranks on every node (each "
                           "node holds the whole model in shards): node %d has %d, node %d has %d", all[0], all[2],
                           all[3 * r], all[3 * r + 2]);
    for (int j = 0; !rc && j < all[2]; j++) {
        int n = 0;
        for (int r = 0; r < world; r++) if (all[3 * r + 1] == j) ranks[n++] = r;
        wf_process_group *g = wf_process_group_new_subgroup(s->pg, ranks, n);
        if (!g) { rc = wf_error() ? wf_error() : WF_EDIST; break; }
        if (j == mine[1]) f->sh.replica = g;
        else wf_process_group_free(g);
    }
    wf__free(all, 0);
    wf__free(ranks, 0);
    return rc;
}

static int fsdp_setup_environment(wf_strategy *s) {
    /* CPU offload keeps shards and optimizer state in host memory: that is where they live
     * on the CPU already; for CUDA parameters it is not built yet, so say so, never ignore it */
    if (s->fsdp.cpu_offload && s->device.type != WF_DEV_CPU)
        return wf__error(WF_ENOTSUP, "wf_fabric_launch: FSDP cpu_offload (strategy \"fsdp_cpu_offload\" or "
                         "fsdp.cpu_offload) with CUDA parameters is not in this build; use \"fsdp\"");
    int rc = wf__ddp_ops.setup_environment(s);
    if (rc) return rc;
    fsdp_impl *f = wf__calloc(1, sizeof *f);
    if (!f) return wf__error(WF_ENOMEM, "wf_fabric_launch: out of memory");
    s->fsdp_impl = f;
    /* HYBRID_SHARD: shards inside the node, replicas across nodes (on one node: FULL_SHARD) */
    f->sh.pg = s->pg;
    if (s->fsdp.sharding == FSDP_HYBRID_SHARD && s->node_pg) {
        f->sh.pg = s->node_pg;
        if ((rc = make_replica_group(s, f))) return rc;
    }
    f->sh.rank = wf_process_group_rank(f->sh.pg);
    f->sh.world = wf_process_group_size(f->sh.pg);
    f->sh.sharding = (fsdp_sharding)s->fsdp.sharding;
    f->sh.reduce_dtype = s->fsdp.reduce_dtype;
    return 0;
}

/* ---------------------------------------------------------------- units */

/* Every rank must build the same model: a signature of the parameters' and buffers' dtypes
 * and shapes, compared by all-reducing its min and max. */
static int check_same_model(wf_strategy *s, wf_tensor **ts, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        int64_t v[WF_MAX_DIMS + 2] = { ts[i]->dtype, ts[i]->ndim };
        for (int d = 0; d < ts[i]->ndim; d++) v[d + 2] = ts[i]->shape[d];
        const unsigned char *b = (const unsigned char *)v;
        for (size_t k = 0; k < sizeof v; k++) h = (h ^ b[k]) * 1099511628211ull;
    }
    int64_t sig = (int64_t)(h >> 1);
    int rc = 0;
    wf_scope_begin();
    wf_tensor *lo = wf_full(WF_SHAPE(1), 0, WF_I64), *hi = wf_full(WF_SHAPE(1), 0, WF_I64);
    if (!lo || !hi) rc = wf_error() ? wf_error() : WF_ENOMEM;
    if (!rc) {
        *(int64_t *)wf_data_ptr(lo) = sig;
        *(int64_t *)wf_data_ptr(hi) = sig;
        rc = wf_dist_all_reduce(s->pg, lo, WF_DIST_MIN, NULL);
        if (!rc) rc = wf_dist_all_reduce(s->pg, hi, WF_DIST_MAX, NULL);
    }
    if (!rc && *(int64_t *)wf_data_ptr(lo) != *(int64_t *)wf_data_ptr(hi))
        rc = wf__error(WF_ESHAPE, "wf_fabric_setup: FSDP: the model's parameters or buffers differ across ranks (count, "
                       "dtype or shape): every rank must build the same model");
    wf_scope_end();
    return rc;
}

static bool wrap_type(const wf_strategy *s, const wf_module *m) {
    for (int i = 0; i < s->fsdp.n_wrap_types; i++)
        if (!strcmp(s->fsdp.wrap_types[i], wf_module_type(m))) return true;
    return false;
}

/* The auto-wrap policy, children first (as PyTorch's _recursive_wrap): a submodule becomes a
 * unit when its type is listed, or when the parameters below it that no unit took yet reach
 * min_num_params. The root is not listed: it is always the last unit. */
typedef struct wrap_list { wf_module **v; int n, cap; } wrap_list;

static int pick_units(const wf_strategy *s, wf_module *m, bool is_root, wrap_list *out, int64_t *unclaimed) {
    int64_t mine = 0;
    for (int i = 0; i < m->params.n; i++) mine += wf_numel(m->params.v[i].ptr);
    for (int c = 0; c < wf_module_num_children(m); c++) {
        int64_t sub = 0;
        int rc = pick_units(s, wf_module_child_at(m, c, NULL), false, out, &sub);
        if (rc) return rc;
        mine += sub;
    }
    *unclaimed = mine;
    if (is_root) return 0;
    if (!wrap_type(s, m) && !(s->fsdp.min_num_params > 0 && mine >= s->fsdp.min_num_params)) return 0;
    if (out->n == out->cap) {
        int nc = out->cap ? 2 * out->cap : 8;
        void *p = wf__realloc(out->v, (size_t)out->cap * sizeof *out->v, (size_t)nc * sizeof *out->v);
        if (!p) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        out->v = p;
        out->cap = nc;
    }
    out->v[out->n++] = m;
    *unclaimed = 0;
    return 0;
}

static void model_free(fsdp_model *mod) {
    if (!mod) return;
    for (int i = 0; i < mod->n_units; i++) wf__fsdp_unit_free(mod->units[i]);
    wf__free(mod->units, 0);
    wf__free(mod->order, 0);
    wf__free(mod->cur, 0);
    wf__free(mod, sizeof *mod);
}

static fsdp_param *find_param(fsdp_impl *f, const wf_tensor *t, fsdp_model **in) {
    for (int k = 0; f && k < f->n_models; k++)
        for (int i = 0; i < f->models[k]->n_units; i++) {
            fsdp_unit *u = f->models[k]->units[i];
            for (int j = 0; j < u->n; j++)
                if (u->p[j].full == t || u->p[j].shard == t) {
                    if (in) *in = f->models[k];
                    return &u->p[j];
                }
        }
    return NULL;
}

static fsdp_model *find_model(fsdp_impl *f, const wf_module *m) {
    for (int k = 0; f && k < f->n_models; k++) if (f->models[k]->root == m) return f->models[k];
    return NULL;
}

/* Build m's units from its parameters (all ranks hold rank 0's values by now). */
static int build_units(wf_strategy *s, fsdp_model *mod, wf_tensor **ps, char **names, int np) {
    wrap_list wl = { 0 };
    int64_t unclaimed = 0;
    int rc = pick_units(s, mod->root, true, &wl, &unclaimed);
    int nu = wl.n + 1;
    bool *taken = wf__calloc((size_t)np + 1, sizeof *taken);
    wf_tensor **up = wf__calloc((size_t)np + 1, sizeof *up);
    const char **un = wf__calloc((size_t)np + 1, sizeof *un);
    mod->units = wf__calloc((size_t)nu, sizeof *mod->units);
    mod->order = wf__calloc((size_t)nu, sizeof *mod->order);
    mod->cur = wf__calloc((size_t)nu, sizeof *mod->cur);
    if (!rc && (!taken || !up || !un || !mod->units || !mod->order || !mod->cur))
        rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    for (int k = 0; k < nu && !rc; k++) {
        wf_module *um = k < wl.n ? wl.v[k] : mod->root;
        int n = 0;
        if (k < wl.n) {
            /* the unit's parameters not taken by a unit below it */
            int cnt = wf_module_parameters(um, NULL, NULL, 0);
            wf_tensor **sub = cnt >= 0 ? wf__calloc((size_t)cnt + 1, sizeof *sub) : NULL;
            if (cnt < 0) rc = cnt;
            else if (!sub) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
            else {
                wf_module_parameters(um, sub, NULL, cnt);
                for (int j = 0; j < np; j++)
                    for (int q = 0; q < cnt && !taken[j]; q++)
                        if (sub[q] == ps[j]) { taken[j] = true; up[n] = ps[j]; un[n++] = names[j]; }
            }
            wf__free(sub, 0);
        } else {
            for (int j = 0; j < np; j++) if (!taken[j]) { taken[j] = true; up[n] = ps[j]; un[n++] = names[j]; }
        }
        if (rc) break;
        fsdp_unit *u = wf__fsdp_unit_new(mod, um, k == wl.n, up, un, n);
        if (!u) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        u->index = k;
        mod->units[mod->n_units++] = u;
        rc = wf__fsdp_unit_hook_module(u);
    }
    /* the full parameters' memory goes: from now on each rank holds its rows only */
    for (int k = 0; k < mod->n_units && !rc; k++) rc = wf__fsdp_unit_reshard(mod->units[k]);
    wf__free(wl.v, 0);
    wf__free(taken, 0);
    wf__free(up, 0);
    wf__free(un, 0);
    return rc;
}

static int fsdp_setup_module(wf_strategy *s, wf_module *m) {
    if (no_shard(s)) return wf__ddp_ops.setup_module(s, m);
    fsdp_impl *f = fimpl(s);
    int np = wf_module_parameters(m, NULL, NULL, 0), nb = wf_module_buffers(m, NULL, NULL, 0);
    if (np < 0) return np;
    if (nb < 0) return nb;
    wf_tensor **ts = wf__calloc((size_t)(np + nb + 1), sizeof *ts);
    char **names = wf__calloc((size_t)(np + 1), sizeof *names);
    const char **cn = wf__calloc((size_t)(np + 1), sizeof *cn);
    fsdp_model *mod = wf__calloc(1, sizeof *mod);
    int rc = (!ts || !names || !cn || !mod) ? wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory") : 0;
    if (!rc) {
        /* the module's name cache is shared by both calls: copy the parameters' names */
        wf_module_parameters(m, ts, cn, np);
        for (int i = 0; i < np && !rc; i++) {
            if (!(names[i] = wf__strdup(cn[i]))) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
            else if (find_param(f, ts[i], NULL))
                rc = wf__error(WF_EINVAL, "wf_fabric_setup: parameter \"%s\" also belongs to a module set up earlier "
                               "under FSDP: a parameter can belong to one set-up module only", names[i]);
        }
        if (!rc) wf_module_buffers(m, ts + np, NULL, nb);
    }
    if (!rc) rc = check_same_model(s, ts, np + nb);
    for (int i = 0; i < np + nb && !rc; i++) {
        if (!wf_is_contiguous(ts[i]))
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: %s %d is not contiguous", i < np ? "parameter" : "buffer", i);
        else if (!wf__meta_pending(ts[i])) rc = wf_dist_broadcast(s->pg, ts[i], 0, NULL);
        /* (a parameter built on the meta device has no values yet: every rank computes its own
         * rows from the initializer's note, the same on every rank for the same seed) */
    }
    if (!rc && f->n_models == f->cap_models) {
        int nc = f->cap_models ? 2 * f->cap_models : 4;
        void *p = wf__realloc(f->models, (size_t)f->cap_models * sizeof *f->models, (size_t)nc * sizeof *f->models);
        if (!p) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        else f->models = p, f->cap_models = nc;
    }
    if (!rc) {
        mod->sh = &f->sh;
        mod->root = m;
        rc = build_units(s, mod, ts, names, np);
    }
    if (!rc) f->models[f->n_models++] = mod;
    else model_free(mod);
    for (int i = 0; names && i < np; i++) wf__free(names[i], 0);
    wf__free(names, 0);
    wf__free(cn, 0);
    wf__free(ts, 0);
    return rc;
}

/* Undo the setup of m (a later step of wf_fabric_setup failed): the module gets its full
 * values back and is no longer FSDP's. Collective, as the setup was. */
static void forget_model(fsdp_impl *f, wf_module *m) {
    for (int k = 0; k < f->n_models; k++) {
        fsdp_model *mod = f->models[k];
        if (mod->root != m) continue;
        for (int i = 0; i < mod->n_units; i++) wf__fsdp_unit_gather_wait(mod->units[i]);
        model_free(mod);
        f->models[k] = f->models[--f->n_models];
        return;
    }
}

/* The optimizers step on the shards: their parameters (the full handles) are replaced. A
 * state built on full parameters would have the wrong shape, so it must not exist yet; all
 * are checked before any is changed. */
static int fsdp_setup_optimizers(wf_strategy *s, wf_module *m, wf_optimizer *const *opts, int n) {
    fsdp_impl *f = fimpl(s);
    if (no_shard(s) || !f) return 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < n; k++) {
            wf_optimizer *o = opts[k];
            for (int g = 0; g < o->n_groups; g++)
                for (int i = 0; i < o->groups[g].n; i++) {
                    fsdp_model *in = NULL;
                    fsdp_param *p = find_param(f, o->groups[g].params[i], &in);
                    if (!p || (m && in->root != m) || p->shard == o->groups[g].params[i]) continue;
                    wf_param_state *st = &o->state[o->groups[g].first_index + i];
                    if (pass == 0 && (st->initialized || st->exp_avg || st->momentum_buffer || st->square_avg || st->sum)) {
                        int rc = wf__error(WF_ESTATE, "wf_fabric_setup: FSDP: optimizer %d (%s) already has state for "
                                           "parameter \"%s\": set it up before its first step (its state is sharded with "
                                           "the parameter)", k, wf_optimizer_name(o), p->name);
                        if (m) forget_model(f, m);
                        return rc;
                    }
                    if (pass == 1) {
                        int rc = wf__optimizer_replace_params(o, &p->full, &p->shard, 1);
                        if (rc) return rc;
                    }
                }
        }
    return 0;
}

/* ---------------------------------------------------------------- backward */

static int finalize(int status, void *ud) {
    fsdp_model *mod = ud;
    mod->finalizer_queued = false;
    int rc = 0;
    /* every rank reduces what its hooks did not, in unit order, so the collectives match; a
     * unit none of whose parameters got a gradient (a model the loss did not reach) keeps no
     * gradients, as in PyTorch (the ranks use the same parameters, see the header) */
    for (int i = 0; i < mod->n_units && mod->armed; i++) {
        fsdp_unit *u = mod->units[i];
        if (u->reduced || !u->n_grad) continue;
        bool any = false;
        for (int j = 0; j < u->n && !any; j++) any = wf_grad(u->p[j].full) != NULL;
        if (!any) continue;
        int r = wf__fsdp_unit_reduce(u);
        u->reduced = true;
        if (!rc) rc = r;
    }
    int r = wf__fsdp_reduce_flush(mod->sh);
    if (!rc) rc = r;
    for (int i = 0; i < mod->n_units; i++) {
        r = wf__fsdp_unit_reshard(mod->units[i]);
        if (!rc) rc = r;
    }
    mod->armed = false;
    (void)status;
    return rc;
}

static int arm(fsdp_model *mod, bool sync) {
    mod->armed = sync;
    for (int i = 0; i < mod->n_units; i++) {
        fsdp_unit *u = mod->units[i];
        u->reduced = false;
        u->n_ready = 0;
        for (int j = 0; j < u->n; j++) u->p[j].ready = false;
    }
    int rc = wf_queue_backward_callback(finalize, mod);
    if (!rc) mod->finalizer_queued = true;
    return rc;
}

/* Under no_backward_sync (Fabric's FSDP supports it) the hooks do not reduce: the full
 * gradients accumulate on the full parameters, and the next synced backward reduce-scatters
 * the sum (more memory meanwhile: one unsharded gradient per parameter, as in PyTorch). */
static int fsdp_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    if (no_shard(s)) return wf__ddp_ops.backward(s, loss, m);
    fsdp_impl *f = fimpl(s);
    int rc = 0, armed = 0;
    for (int i = 0; i < f->n_models && !rc; i++) {
        if (m && f->models[i]->root != m) continue;
        rc = arm(f->models[i], s->no_sync_depth == 0);
        if (!rc) armed = i + 1;
    }
    if (!rc) rc = wf_precision_backward(s->precision, loss);
    /* a backward that never reached the engine left the finalizer queued: run it now, so
     * every rank still issues the same collectives */
    for (int i = 0; i < armed; i++) {
        fsdp_model *mod = f->models[i];
        if (!mod->finalizer_queued) continue;
        wf__backward_callback_cancel(finalize, mod);
        int r = finalize(rc, mod);
        if (!rc) rc = r;
    }
    return rc;
}

static int reshard_all(fsdp_impl *f) {
    int rc = 0;
    for (int k = 0; f && k < f->n_models; k++)
        for (int i = 0; i < f->models[k]->n_units; i++) {
            int r = wf__fsdp_unit_reshard(f->models[k]->units[i]);
            if (!rc) rc = r;
        }
    return rc;
}

/* The shards change: full parameters still gathered (an evaluation forward under
 * SHARD_GRAD_OP, the root after a forward without backward) would be stale, so free them. */
static int fsdp_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    int rc = wf_precision_optimizer_step(s->precision, o, skipped);
    int r = reshard_all(fimpl(s));
    return rc ? rc : r;
}

/* ---------------------------------------------------------------- clipping */

static void fsdp_grad_params(wf_strategy *s, wf_tensor **ps, int n) {
    fsdp_impl *f = fimpl(s);
    if (no_shard(s) || !f) return;
    for (int i = 0; i < n; i++) {
        fsdp_param *p = ps[i] ? find_param(f, ps[i], NULL) : NULL;
        if (p) ps[i] = p->shard;
    }
}

/* clip_grad_norm_ over parts that are disjoint across pg's ranks (FSDP's shards, ZeRO's rows):
 * the local sum of |g|^p (max for inf) all-reduced over pg, so every rank scales by the same
 * global norm. */
int wf__sharded_clip_grad_norm(wf_process_group *pg, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                               bool error_if_nonfinite, double *total_norm) {
    const char *op = "wf_fabric_clip_gradients";
    bool inf = isinf(norm_type);
    if (!inf && !(norm_type > 0)) return wf__error(WF_EINVAL, "%s: norm_type = %g must be > 0 or inf", op, norm_type);
    int rc = 0;
    double acc = 0;
    wf_scope_begin();
    for (int i = 0; i < n && !rc; i++) {
        wf_tensor *g = ps[i] ? wf_grad(ps[i]) : NULL;
        if (!g || !wf_numel(g)) continue;
        wf_tensor *a = wf_abs(wf_to_dtype(g, WF_F64));
        wf_tensor *v = inf ? wf_amax(a, NULL, 0, false) : wf_sum_all(wf_pow_scalar(a, norm_type));
        if (!v) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        double x = wf_item(v);
        acc = inf ? (x > acc ? x : acc) : acc + x;
    }
    wf_tensor *t = rc ? NULL : wf_full(WF_SHAPE(1), acc, WF_F64);
    if (!rc && !t) rc = wf_error() ? wf_error() : WF_ENOMEM;
    if (!rc) rc = wf_dist_all_reduce(pg, t, inf ? WF_DIST_MAX : WF_DIST_SUM, NULL);
    double total = rc ? 0 : (inf ? wf_item(t) : pow(wf_item(t), 1.0 / norm_type));
    if (total_norm) *total_norm = total;
    if (!rc && !isfinite(total) && error_if_nonfinite)
        rc = wf__error(WF_ENONFINITE, "%s: the total norm of order %g of the gradients is non-finite (%g), so it "
                       "cannot be clipped; pass no_error_if_nonfinite to scale them anyway", op, norm_type, total);
    double coef = max_norm / (total + 1e-6);
    for (int i = 0; i < n && !rc && coef < 1; i++) {
        wf_tensor *g = ps[i] ? wf_grad(ps[i]) : NULL;
        if (g && wf_numel(g)) rc = wf_mul_scalar_(g, coef);
    }
    wf_scope_end();
    return rc;
}

static int fsdp_clip_grad_norm(wf_strategy *s, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                               bool error_if_nonfinite, double *total_norm) {
    if (no_shard(s)) return wf_clip_grad_norm_(ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
    /* over the shard group: replicas (HYBRID_SHARD) hold the same rows and must count once */
    return wf__sharded_clip_grad_norm(fimpl(s)->sh.pg, ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
}

/* ---------------------------------------------------------------- full values */

/* FSDP's own units exist (fsdp ops, or deepspeed stage 3 on them) */
static bool fsdp_on(const wf_strategy *s) { return s && s->fsdp_impl && !no_shard(s); }

/* The checkpoint code's question, "is the state split over the ranks?": also ZeRO stages 1
 * and 2 (strategy_zero.c), whose optimizer state is; the functions below forward to it. */
bool wf__fsdp_active(const wf_strategy *s) { return fsdp_on(s) || wf__zero_active(s); }

void wf__fsdp_counters_get(const wf_strategy *s, wf__fsdp_counters *out) {
    memset(out, 0, sizeof *out);
    const fsdp_impl *f = fsdp_on(s) ? fimpl(s) : NULL;
    if (!f) return;
    out->gathers = f->sh.gathers;
    out->reduces = f->sh.reduces;
    out->max_in_flight = f->sh.max_in_flight;
    for (int k = 0; k < f->n_models; k++) out->n_units += f->models[k]->n_units;
}

int wf__fsdp_summon(wf_strategy *s, wf_module *m, bool gather) {
    if (wf__zero_active(s)) return wf__zero_summon(s, m, gather);
    fsdp_impl *f = fsdp_on(s) ? fimpl(s) : NULL;
    fsdp_model *mod = find_model(f, m);
    if (!mod) return 0;
    int rc = 0;
    for (int i = 0; i < mod->n_units && !rc; i++) {
        fsdp_unit *u = mod->units[i];
        if (gather) { rc = wf__fsdp_unit_gather_wait(u); continue; }
        bool prev = wf_set_grad_enabled(false);
        wf_scope_begin();
        for (int j = 0; j < u->n && !rc && u->gathered; j++) {
            fsdp_param *p = &u->p[j];
            if (!p->row_count) continue;
            int64_t nn = wf_numel(p->full);
            wf_tensor *src = wf_narrow(wf_view(wf_detach(p->full), &nn, 1), 0, p->row_start * p->row_numel,
                                       p->row_count * p->row_numel);
            int64_t sn = wf_numel(p->shard);
            wf_tensor *dst = wf_view(wf_detach(p->shard), &sn, 1);
            rc = src && dst ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);
            if (!rc) atomic_fetch_add(&p->shard->storage->version, 1);
        }
        wf_scope_end();
        wf_set_grad_enabled(prev);
        if (!rc) rc = wf__fsdp_unit_reshard(u);
    }
    return rc;
}

int wf__fsdp_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out, bool *sharded) {
    if (wf__zero_active(s)) return wf__zero_gather_full(s, t, local, out, sharded);
    *out = NULL;
    *sharded = false;
    fsdp_impl *f = fsdp_on(s) ? fimpl(s) : NULL;
    fsdp_param *p = find_param(f, t, NULL);
    if (!p) return 0;
    wf_tensor *rows = local ? local : p->shard;
    if (wf_ndim(rows) < 1 || wf_shape(rows)[0] != p->row_count || wf_numel(rows) != p->row_count * p->row_numel)
        return 0;   /* a scalar of the state (step): the same on every rank */
    *sharded = true;
    int world = f->sh.world, rc = 0;
    int64_t per = p->chunk * p->row_numel, all = per * world;
    wf_dtype dt = wf_tensor_dtype(rows);
    wf_device dev = wf_tensor_device(rows);
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    wf_tensor *send = wf_zeros_on(&per, 1, dt, dev), *recv = send ? wf_empty_on(&all, 1, dt, dev) : NULL;
    if (!send || !recv) rc = wf_error() ? wf_error() : WF_ENOMEM;
    if (!rc && p->row_count) {
        int64_t rn = wf_numel(rows);
        wf_tensor *src = wf_view(wf_contiguous(wf_detach(rows)), &rn, 1);
        wf_tensor *dst = wf_narrow(send, 0, 0, rn);
        rc = src && dst ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);
    }
    if (!rc) rc = wf_dist_all_gather(f->sh.pg, recv, send, NULL);
    wf_tensor *full = NULL;
    if (!rc && f->sh.rank == 0) {
        int64_t shape[WF_MAX_DIMS];
        int nd = wf_ndim(p->full);
        for (int d = 0; d < nd; d++) shape[d] = wf_shape(p->full)[d];
        full = wf_empty_on(shape, nd, dt, dev);
        int64_t fn = wf_numel(p->full);
        wf_tensor *ff = full ? wf_view(full, &fn, 1) : NULL;
        if (!ff) rc = wf_error() ? wf_error() : WF_ENOMEM;
        for (int r = 0; r < world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(p->rows, r, world, &s0, &c);
            if (!c) continue;
            rc = wf_copy_(wf_narrow(ff, 0, s0 * p->row_numel, c * p->row_numel),
                          wf_narrow(recv, 0, r * per, c * p->row_numel));
        }
        if (!rc) wf_keep(full);
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    if (!rc) *out = full;
    return rc;
}

int wf__fsdp_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows, bool *sharded) {
    if (wf__zero_active(s)) return wf__zero_rows_of(s, t, full, rows, sharded);
    *rows = NULL;
    *sharded = false;
    fsdp_impl *f = fsdp_on(s) ? fimpl(s) : NULL;
    fsdp_param *p = find_param(f, t, NULL);
    if (!p || wf_ndim(full) < 1 || wf_numel(full) != p->rows * p->row_numel) return 0;
    *sharded = true;
    *rows = wf_narrow(full, 0, p->row_start, p->row_count);
    return *rows ? 0 : (wf_error() ? wf_error() : WF_ENOMEM);
}

/* ---------------------------------------------------------------- shard entries
 * The lists themselves, for FSDP here and ZeRO 1/2 (zero_state.c): they differ only in where a
 * parameter's tensors lie (the place callbacks). */

void wf__shard_list_free(wf__shard_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) wf__free(l->names[i], 0);
    wf__free(l->names, 0);
    wf__free(l->v, 0);
    memset(l, 0, sizeof *l);
}

static int list_init(wf__shard_list *l, int cap) {
    memset(l, 0, sizeof *l);
    l->v = wf__calloc((size_t)cap + 1, sizeof *l->v);
    l->names = wf__calloc((size_t)cap + 1, sizeof *l->names);
    if (!l->v || !l->names) {
        wf__shard_list_free(l);
        return wf__error(WF_ENOMEM, "shard entries: out of memory");
    }
    return 0;
}

/* "prefix/key" at pl: the global shape is pl->global's, or (NULL) the local tensor's */
static int list_add(wf__shard_list *l, int cap, const char *prefix, const char *key, const wf__shard_place *pl) {
    if (l->n >= cap) return wf__error(WF_ESTATE, "shard entries: more tensors than counted");
    size_t len = strlen(prefix) + strlen(key) + 2;
    char *name = wf__malloc(len);
    if (!name) return wf__error(WF_ENOMEM, "shard entries: out of memory");
    snprintf(name, len, "%s/%s", prefix, key);
    wf__shard_entry *e = &l->v[l->n];
    memset(e, 0, sizeof *e);
    l->names[l->n++] = name;
    e->name = name;
    e->local = pl->local;
    const wf_tensor *shape_of = pl->global ? pl->global : pl->local;
    e->ndim = wf_ndim(shape_of);
    for (int d = 0; d < e->ndim; d++) e->global_shape[d] = wf_shape(shape_of)[d];
    e->row_start = pl->row_start;
    e->replicated = !pl->sharded;
    return 0;
}

int wf__shard_list_module(wf_module *m, const char *prefix, wf__shard_place_fn place, void *ud, wf__shard_list *out) {
    wf_state_dict *sd = wf_state_dict_new();
    if (!sd) return wf__error(WF_ENOMEM, "shard entries: out of memory");
    int rc = wf_module_state_dict(m, sd, NULL);
    int n = rc ? 0 : wf_state_dict_count(sd);
    if (!rc) rc = list_init(out, n);
    for (int i = 0; i < n && !rc; i++) {
        const char *name = wf_state_dict_name_at(sd, i);
        wf_tensor *param = wf_module_get_parameter(m, name);
        wf__shard_place pl = { .local = param ? param : wf_module_get_buffer(m, name) };
        if (param) place(ud, param, false, &pl);
        rc = list_add(out, n, prefix, name, &pl);
    }
    wf_state_dict_free(sd);
    if (rc) wf__shard_list_free(out);
    return rc;
}

int wf__shard_list_optimizer(wf_optimizer *o, const char *prefix, wf__shard_place_fn place, void *ud,
                             wf__shard_list *out) {
    static const char *const keys[] = { "momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq",
                                        "square_avg", "grad_avg", "sum" };
    int cap = o->n_params * 7, rc = list_init(out, cap);
    for (int g = 0; g < o->n_groups && !rc; g++)
        for (int i = 0; i < o->groups[g].n && !rc; i++) {
            int idx = o->groups[g].first_index + i;
            wf_param_state *st = &o->state[idx];
            wf_tensor *slots[] = { st->momentum_buffer, st->exp_avg, st->exp_avg_sq, st->max_exp_avg_sq,
                                   st->square_avg, st->grad_avg, st->sum };
            for (int k = 0; k < 7 && !rc; k++) {
                if (!slots[k]) continue;
                char key[96];
                snprintf(key, sizeof key, "state/%d/%s", idx, keys[k]);
                wf__shard_place pl = { .local = slots[k] };
                place(ud, o->groups[g].params[i], true, &pl);
                rc = list_add(out, cap, prefix, key, &pl);
            }
        }
    if (rc) wf__shard_list_free(out);
    return rc;
}

/* An FSDP parameter's module entry is its shard, an optimizer state its shard's rows; a 0-dim
 * parameter (which rank 0 alone holds: its shard is [1] there) has the local tensor's shape. */
static void fsdp_place(void *ud, wf_tensor *param, bool optimizer_state, wf__shard_place *pl) {
    fsdp_param *p = find_param(ud, param, NULL);
    if (!p) return;
    if (!optimizer_state) pl->local = p->shard;
    pl->global = p->full->ndim >= 1 ? p->full : NULL;
    pl->row_start = p->full->ndim >= 1 ? p->row_start : 0;
    pl->sharded = true;
}

int wf__fsdp_module_entries(wf_strategy *s, wf_module *m, const char *prefix, wf__shard_list *out) {
    if (wf__zero_active(s)) return wf__zero_module_entries(s, m, prefix, out);
    return wf__shard_list_module(m, prefix, fsdp_place, fsdp_on(s) ? fimpl(s) : NULL, out);
}

int wf__fsdp_optimizer_entries(wf_strategy *s, wf_optimizer *o, const char *prefix, wf__shard_list *out) {
    if (wf__zero_active(s)) return wf__zero_optimizer_entries(s, o, prefix, out);
    return wf__shard_list_optimizer(o, prefix, fsdp_place, fsdp_on(s) ? fimpl(s) : NULL, out);
}

bool wf__fsdp_param_rows(wf_strategy *s, const wf_tensor *t, int64_t *start, int64_t *count, int64_t *rows) {
    fsdp_impl *f = fsdp_on(s) ? fimpl(s) : NULL;
    const fsdp_param *p = t ? find_param(f, t, NULL) : NULL;
    if (!p || p->full->ndim < 1) return false;
    *start = p->row_start;
    *count = p->row_count;
    *rows = p->rows;
    return true;
}

wf_process_group *wf__fsdp_save_group(wf_strategy *s, bool *writer) {
    if (!fsdp_on(s)) {   /* ZeRO 1/2: the world holds every part once (replicated tensors: rank 0's) */
        *writer = true;
        return s->pg;
    }
    fsdp_impl *f = fimpl(s);
    *writer = !f->sh.replica || wf_process_group_rank(f->sh.replica) == 0;
    return f->sh.pg;
}

/* ---------------------------------------------------------------- meta-device init */

/* Tensors built on the meta device (init_module(empty_init) under FSDP) move to the Fabric's
 * device without data: the parameters get this rank's rows at the strategy's setup
 * (fsdp_unit.c), the buffers (replicated, small) their whole values now. */
int wf__fsdp_adopt_meta(wf_module *m, wf_device device, const char *op) {
    int np = wf_module_parameters(m, NULL, NULL, 0), nb = wf_module_buffers(m, NULL, NULL, 0);
    if (np < 0 || nb < 0) return np < 0 ? np : nb;
    wf_tensor **ts = wf__calloc((size_t)(np + nb) + 1, sizeof *ts);
    const char **names = wf__calloc((size_t)(np + nb) + 1, sizeof *names);
    int rc = ts && names ? 0 : wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (!rc) {
        wf_module_parameters(m, ts, names, np);
        wf_module_buffers(m, ts + np, names + np, nb);
    }
    for (int i = 0; i < np + nb && !rc; i++) {
        wf_tensor *t = ts[i];
        if (wf_tensor_device(t).type != WF_DEV_META) continue;
        if (!wf__meta_pending(t)) {
            /* the message names it: materializing a tensor without a note says why */
            rc = wf__meta_materialize_rows(t, 0, 0, t, names[i]);
            break;
        }
        if ((rc = wf__meta_adopt(t, device)) || i < np) continue;
        wf_storage *st = t->storage;
        const wf_kernels *k = wf__kernels(st->device);
        st->data = k && st->nbytes ? k->alloc(st->device, st->nbytes) : NULL;
        if (st->nbytes && !st->data) rc = wf_error() ? wf_error() : wf__error(WF_ENOMEM, "%s: out of memory", op);
        int64_t rows = wf_ndim(t) ? wf_shape(t)[0] : 1;
        if (!rc) rc = wf__meta_materialize_rows(t, 0, rows, t, names[i]);
        if (!rc) wf__meta_forget(t);
    }
    wf__free(ts, 0);
    wf__free(names, 0);
    return rc;
}

/* ---------------------------------------------------------------- teardown */

/* The set-up modules get their full values back (a module outliving its Fabric runs as a
 * plain module), then the units go. */
static void fsdp_teardown(wf_strategy *s) {
    fsdp_impl *f = fimpl(s);
    if (f) {
        for (int k = 0; k < f->n_models; k++) {
            fsdp_model *mod = f->models[k];
            if (mod->finalizer_queued) wf__backward_callback_cancel(finalize, mod);
            for (int i = 0; i < mod->n_units; i++) wf__fsdp_unit_gather_wait(mod->units[i]);
            model_free(mod);
        }
        wf__free(f->models, 0);
        wf_process_group_free(f->sh.replica);
        wf__free(f, sizeof *f);
        s->fsdp_impl = NULL;
    }
    wf__ddp_ops.teardown(s);
}

/* NO_SHARD is DDP: rank 0's buffers before each forward, as DDP's broadcast_buffers. The
 * sharded modes leave buffers alone, as PyTorch's FSDP does. */
static int f_pre_forward(wf_strategy *s, wf_module *m) {
    return no_shard(s) ? wf__ddp_ops.pre_forward(s, m) : 0;
}

const wf_strategy_ops wf__fsdp_ops = {
    .setup_environment = fsdp_setup_environment,
    .setup_module = fsdp_setup_module,
    .backward = fsdp_backward,
    .pre_forward = f_pre_forward,
    .optimizer_step = fsdp_optimizer_step,
    .setup_optimizers = fsdp_setup_optimizers,
    .grad_params = fsdp_grad_params,
    .clip_grad_norm = fsdp_clip_grad_norm,
    WF__DDP_COLLECTIVE_OPS,
    .teardown = fsdp_teardown,
};
