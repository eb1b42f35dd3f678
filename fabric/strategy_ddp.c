/* fabric/strategy_ddp.c: the multi-process strategy (Lightning's DDPStrategy): one process
 * per device, the same model on each, gradients averaged over the ranks after backward.
 *
 * This is the plain, synchronous form: after the local backward, every gradient is
 * all-reduced (averaged) in parameter order. Overlapping the reduction with backward in
 * buckets is DDP proper's job (it replaces gradient_sync below); everything else here (the
 * process group, setup broadcast, collectives, checkpoints) stays. */
#include "fabric/fabric_impl.h"
#include "dist/trace.h"
#include "autograd/autograd_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct ddp_impl {
    wf_module **modules;              /* set up with this strategy (borrowed) */
    int n_modules, cap_modules;
    wf_tensor *found_inf;             /* f64 [1] for the grad scaler's cross-rank agreement */
} ddp_impl;

static ddp_impl *impl_of(wf_strategy *s) { return s->impl; }

/* ---------------------------------------------------------------- environment */

/* The ranks of this node, as a subgroup (for local rank_zero_first): every rank learns every
 * rank's node, then all create each node's group in node order. */
static int make_node_group(wf_strategy *s) {
    int world = s->cluster.world_size, rc = 0;
    if (s->cluster.num_nodes <= 1) return 0;
    int32_t mine = s->cluster.node_rank;
    int32_t *all = wf__calloc((size_t)world, sizeof *all);
    int *ranks = wf__calloc((size_t)world, sizeof *ranks);
    if (!all || !ranks) rc = wf__error(WF_ENOMEM, "wf_fabric_launch: out of memory");
    if (!rc) rc = wf_dist_gather_bytes(s->pg, &mine, sizeof mine, all, 0);
    if (!rc) rc = wf_dist_broadcast_bytes(s->pg, all, (size_t)world * sizeof *all, 0);
    int32_t max_node = 0;
    for (int r = 0; !rc && r < world; r++) if (all[r] > max_node) max_node = all[r];
    for (int32_t node = 0; !rc && node <= max_node; node++) {
        int n = 0;
        for (int r = 0; r < world; r++) if (all[r] == node) ranks[n++] = r;
        if (!n) continue;
        wf_process_group *g = wf_process_group_new_subgroup(s->pg, ranks, n);
        if (!g) { rc = wf_error() ? wf_error() : WF_EDIST; break; }
        if (node == mine) s->node_pg = g;
        else wf_process_group_free(g);
    }
    wf__free(all, 0);
    wf__free(ranks, 0);
    return rc;
}

static int found_inf_reducer(double *found_inf, void *ud) {
    wf_strategy *s = ud;
    ddp_impl *d = impl_of(s);
    double *p = wf_data_ptr(d->found_inf);
    *p = *found_inf;
    int rc = wf_dist_all_reduce(s->pg, d->found_inf, WF_DIST_MAX, NULL);
    if (!rc) *found_inf = *p;
    return rc;
}

static int ddp_setup_environment(wf_strategy *s) {
    ddp_impl *d = wf__calloc(1, sizeof *d);
    if (!d) return wf__error(WF_ENOMEM, "wf_fabric_launch: out of memory");
    s->impl = d;
    wf_dist_options o = { .timeout_s = s->timeout_s, .cluster = &s->cluster, .device = s->device };
    s->pg = wf_dist_init(&o);
    if (!s->pg) return wf_error() ? wf_error() : WF_EDIST;
    int rc = make_node_group(s);
    if (rc) return rc;
    /* 16-mixed: every rank must skip the same steps, so found-inf is agreed on (max) */
    wf_grad_scaler *gs = wf_precision_grad_scaler(s->precision);
    if (gs) {
        d->found_inf = wf_zeros(WF_SHAPE(1), WF_F64);
        if (!d->found_inf) return wf_error();
        wf__scope_unregister(d->found_inf);
        rc = wf_grad_scaler_set_found_inf_reducer(gs, found_inf_reducer, s);
    }
    /* WF_TRACE: time zero just after a barrier, so the ranks' timelines line up */
    if (!rc && wf__trace_enabled() && (rc = wf_dist_barrier(s->pg)) == 0)
        wf__trace_start_or_warn(wf_process_group_rank(s->pg), wf_process_group_size(s->pg));
    return rc;
}

/* ---------------------------------------------------------------- module */

static int ddp_setup_module(wf_strategy *s, wf_module *m) {
    ddp_impl *d = impl_of(s);
    if (d->n_modules == d->cap_modules) {
        int nc = d->cap_modules ? 2 * d->cap_modules : 4;
        void *p = wf__realloc(d->modules, (size_t)d->cap_modules * sizeof *d->modules, (size_t)nc * sizeof *d->modules);
        if (!p) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        d->modules = p;
        d->cap_modules = nc;
    }
    /* every rank starts from rank 0's weights and buffers */
    int np = wf_module_parameters(m, NULL, NULL, 0), nb = wf_module_buffers(m, NULL, NULL, 0);
    if (np < 0) return np;
    if (nb < 0) return nb;
    wf_tensor **ts = wf__calloc((size_t)(np + nb + 1), sizeof *ts);
    if (!ts) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    wf_module_parameters(m, ts, NULL, np);
    wf_module_buffers(m, ts + np, NULL, nb);
    int rc = 0;
    for (int i = 0; i < np + nb && !rc; i++) {
        if (!wf_is_contiguous(ts[i]))
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: parameter/buffer %d of the module is not contiguous", i);
        else rc = wf_dist_broadcast(s->pg, ts[i], 0, NULL);
    }
    wf__free(ts, 0);
    if (!rc) d->modules[d->n_modules++] = m;
    return rc;
}

/* ---------------------------------------------------------------- backward */

/* Average every gradient over the ranks. Ranks first agree on which parameters have a
 * gradient: a parameter without one on any rank is an error on every rank (naming it),
 * never a rank left waiting in a collective the others skipped. */
static int gradient_sync(wf_strategy *s, wf_module *m) {
    int rc = 0;
    wf_tensor **ps = NULL;
    int np = wf__module_params(m, &ps);
    if (np < 0) return np;
    const char **names = wf__calloc((size_t)(np ? np : 1), sizeof *names);
    if (!names) { wf__free(ps, 0); return wf__error(WF_ENOMEM, "wf_fabric_backward: out of memory"); }
    wf_module_parameters(m, ps, names, np);
    wf_scope_begin();
    wf_tensor *has = np ? wf_zeros(WF_SHAPE(np), WF_I32) : NULL;
    if (np && !has) rc = wf_error();
    for (int i = 0; i < np && !rc; i++) ((int32_t *)wf_data_ptr(has))[i] = wf_grad(ps[i]) != NULL;
    if (np && !rc) rc = wf_dist_all_reduce(s->pg, has, WF_DIST_MIN, NULL);
    for (int i = 0; i < np && !rc; i++) {
        bool mine = wf_grad(ps[i]) != NULL, all = ((int32_t *)wf_data_ptr(has))[i] != 0;
        if (!all && !wf_requires_grad(ps[i])) continue;
        if (!all)
            rc = wf__error(WF_ESTATE, "wf_fabric_backward: parameter \"%s\" has no gradient on %s: every "
                           "parameter that requires grad must take part in the loss on every rank under DDP",
                           names[i], mine ? "another rank" : "this rank");
    }
    for (int i = 0; i < np && !rc; i++) {
        wf_tensor *g = wf_grad(ps[i]);
        if (!g) continue;
        if (!wf_is_contiguous(g))
            rc = wf__error(WF_EINVAL, "wf_fabric_backward: the gradient of \"%s\" is not contiguous", names[i]);
        else rc = wf_dist_all_reduce(s->pg, g, WF_DIST_AVG, NULL);
    }
    wf_scope_end();
    wf__free(names, 0);
    wf__free(ps, 0);
    return rc;
}

static int ddp_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    int rc = wf_precision_backward(s->precision, loss);
    if (rc || s->no_sync_depth > 0) return rc;
    ddp_impl *d = impl_of(s);
    if (m) return gradient_sync(s, m);
    for (int i = 0; i < d->n_modules && !rc; i++) rc = gradient_sync(s, d->modules[i]);
    return rc;
}

static int ddp_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    return wf_precision_optimizer_step(s->precision, o, skipped);
}

/* ---------------------------------------------------------------- collectives */

static int ddp_barrier(wf_strategy *s, const char *name) {
    (void)name;
    return wf_dist_barrier(s->pg);
}

static int ddp_broadcast(wf_strategy *s, wf_tensor *t, int src) { return wf_dist_broadcast(s->pg, t, src, NULL); }

static int ddp_broadcast_bytes(wf_strategy *s, void *buf, size_t n, int src) {
    return wf_dist_broadcast_bytes(s->pg, buf, n, src);
}

/* all_gather with sync_grads: the gradient of t is the sum over ranks of the gradient of
 * slice r, a reduce-scatter (torch.distributed.nn.functional.all_gather's backward). */
static int all_gather_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_strategy *s = n->ctx;
    wf_tensor *g = wf_contiguous(gy[0]);
    if (!g) return wf_error();
    const wf_meta *in = &n->in_meta[0];
    int64_t shape1[WF_MAX_DIMS + 1];
    shape1[0] = 1;
    for (int i = 0; i < in->ndim; i++) shape1[i + 1] = in->shape[i];
    wf_tensor *out = wf_empty_on(shape1, in->ndim + 1, g->dtype, g->device);
    if (!out) return wf_error();
    int rc = wf_dist_reduce_scatter(s->pg, out, g, WF_DIST_SUM, NULL);
    if (rc) return rc;
    gx[0] = wf_view(out, in->shape, in->ndim);
    return gx[0] ? 0 : wf_error();
}

static wf_tensor *ddp_all_gather(wf_strategy *s, wf_tensor *t, bool sync_grads) {
    int nd = wf_ndim(t), world = s->cluster.world_size;
    int64_t shape[WF_MAX_DIMS + 1];
    if (nd >= WF_MAX_DIMS) {
        wf__error(WF_ESHAPE, "wf_fabric_all_gather: a %d-dimensional tensor leaves no room for the rank dimension", nd);
        return NULL;
    }
    shape[0] = 1;
    for (int i = 0; i < nd; i++) shape[i + 1] = wf_shape(t)[i];
    wf_tensor *in = NULL, *out = NULL;
    WF_NO_GRAD {
        in = wf_contiguous(t);
        in = in ? wf_view(in, shape, nd + 1) : NULL;
    }
    if (!in) return NULL;
    shape[0] = world;
    out = wf_empty_on(shape, nd + 1, wf_tensor_dtype(t), wf_tensor_device(t));
    if (!out || wf_dist_all_gather(s->pg, out, in, NULL)) return NULL;
    if (sync_grads) {
        wf_node *n = wf__record("AllGatherBackward", all_gather_backward, out, 1, &t);
        if (n) n->ctx = s;   /* the strategy outlives the graph's backward in any sane program */
    }
    return out;
}

static wf_dist_reduce_op map_op(wf_fabric_reduce op) {
    switch (op) {
    case WF_FABRIC_SUM: return WF_DIST_SUM;
    case WF_FABRIC_MAX: return WF_DIST_MAX;
    case WF_FABRIC_MIN: return WF_DIST_MIN;
    default: return WF_DIST_AVG;
    }
}

static wf_tensor *ddp_all_reduce(wf_strategy *s, wf_tensor *t, wf_fabric_reduce op) {
    wf_tensor *r = NULL;
    WF_NO_GRAD { r = wf_clone(t); }
    r = r ? wf_contiguous(r) : NULL;
    if (!r || wf_dist_all_reduce(s->pg, r, map_op(op), NULL)) return NULL;
    return r;
}

static int ddp_reduce_boolean_decision(wf_strategy *s, bool decision, bool all, bool *out) {
    int rc = 0;
    wf_scope_begin();
    wf_tensor *t = wf_zeros(WF_SHAPE(1), WF_I32);
    if (!t) rc = wf_error();
    if (!rc) {
        *(int32_t *)wf_data_ptr(t) = decision;
        rc = wf_dist_all_reduce(s->pg, t, all ? WF_DIST_MIN : WF_DIST_MAX, NULL);
    }
    if (!rc) *out = *(int32_t *)wf_data_ptr(t) != 0;
    wf_scope_end();
    return rc;
}

typedef struct status_msg { int32_t code; char msg[500]; } status_msg;

static int ddp_broadcast_status(wf_strategy *s, bool local, int *code, char *msg, size_t n) {
    wf_process_group *g = local && s->node_pg ? s->node_pg : s->pg;
    status_msg m;
    memset(&m, 0, sizeof m);
    m.code = *code;
    if (msg) snprintf(m.msg, sizeof m.msg, "%s", msg);
    int rc = wf_dist_broadcast_bytes(g, &m, sizeof m, 0);
    if (rc) return rc;
    *code = m.code;
    if (msg && n) snprintf(msg, n, "%s", m.msg);
    return 0;
}

/* Rank 0 writes; every rank returns rank 0's result, so a failed save is an error
 * everywhere (never a rank that believes the checkpoint exists). */
static int ddp_save_checkpoint(wf_strategy *s, wf_st_writer *w, const char *path, int prior) {
    int code = 0;
    char msg[500] = "";
    if (s->cluster.global_rank == 0) {
        code = prior ? prior : s->io.save(&s->io, w, path);
        if (code) snprintf(msg, sizeof msg, "%s", wf_error_message());
    }
    int rc = ddp_broadcast_status(s, false, &code, msg, sizeof msg);
    if (rc) return rc;
    if (code && s->cluster.global_rank != 0)
        return wf__error(code, "wf_fabric_save: rank 0 could not save %s: %s", path, msg);
    return code;
}

static void ddp_teardown(wf_strategy *s) {
    ddp_impl *d = impl_of(s);
    if (d) {
        wf_grad_scaler *gs = wf_precision_grad_scaler(s->precision);
        if (gs && d->found_inf) wf_grad_scaler_set_found_inf_reducer(gs, NULL, NULL);
        wf_tensor_free(d->found_inf);
        wf__free(d->modules, 0);
        wf__free(d, sizeof *d);
        s->impl = NULL;
    }
    wf_process_group_free(s->node_pg);
    wf_process_group_free(s->pg);
    s->node_pg = s->pg = NULL;
}

const wf_strategy_ops wf__ddp_ops = {
    .setup_environment = ddp_setup_environment,
    .setup_module = ddp_setup_module,
    .backward = ddp_backward,
    .optimizer_step = ddp_optimizer_step,
    .barrier = ddp_barrier,
    .broadcast = ddp_broadcast,
    .broadcast_bytes = ddp_broadcast_bytes,
    .all_gather = ddp_all_gather,
    .all_reduce = ddp_all_reduce,
    .reduce_boolean_decision = ddp_reduce_boolean_decision,
    .broadcast_status = ddp_broadcast_status,
    .save_checkpoint = ddp_save_checkpoint,
    .teardown = ddp_teardown,
};
