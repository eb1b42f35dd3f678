/* fabric/strategy_ddp.c: the multi-process strategy (Lightning's DDPStrategy): one process
 * per device, the same model on each, gradients averaged over the ranks during backward.
 *
 * Setup checks that every rank built the same model (parameter shapes and dtypes), then
 * broadcasts rank 0's parameters and buffers; each set-up module gets a reducer
 * (ddp_reducer.c) that all-reduces its gradients in buckets while backward still runs.
 * Before each forward rank 0's buffers are broadcast (unless ddp.no_broadcast_buffers).
 * "ddp_spawn" and "ddp_fork" run exactly as "ddp": weft's launcher always re-executes the
 * program (there is no Python interpreter state to spawn or fork), so the three differ
 * only in name. */
#include "fabric/fabric_impl.h"
#include "fabric/ddp_reducer.h"
#include "autograd/autograd_impl.h"
#include "dist/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ddp_impl {
    wf_module **modules;              /* set up with this strategy (borrowed) */
    wf_ddp_reducer **reducers;        /* per module (owned) */
    int n_modules, cap_modules;
    wf_tensor *found_inf;             /* f64 [1] for the grad scaler's cross-rank agreement */
    wf_ddp_reducer_opts ropts;        /* resolved DDP options */
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
    /* the options: the config's, defaults for zeros, the strategy name's suffix */
    const char *name = s->desc ? s->desc->name : "ddp";
    size_t ln = strlen(name);
    d->ropts.bucket_cap_mb = s->ddp.bucket_cap_mb > 0 ? s->ddp.bucket_cap_mb : 25;
    d->ropts.first_bucket_mb = s->ddp.first_bucket_mb > 0 ? s->ddp.first_bucket_mb : 1;
    d->ropts.find_unused_parameters = s->ddp.find_unused_parameters;
    if (ln >= 28 && !strcmp(name + ln - 28, "_find_unused_parameters_true")) d->ropts.find_unused_parameters = true;
    if (ln >= 29 && !strcmp(name + ln - 29, "_find_unused_parameters_false")) d->ropts.find_unused_parameters = false;
    d->ropts.static_graph = s->ddp.static_graph;
    const char *hook = s->ddp.comm_hook ? s->ddp.comm_hook : "";
    d->ropts.comm_dtype = !strcmp(hook, "bf16_compress") ? WF_BF16 : !strcmp(hook, "fp16_compress") ? WF_F16 : (wf_dtype)-1;
    wf_dist_options o = { .timeout_s = s->timeout_s, .cluster = &s->cluster, .device = s->device,
                          .backend = s->pg_backend[0] ? s->pg_backend : NULL };
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

/* Every rank must have built the same model: rank 0 gathers each rank's parameter and buffer
 * count, then their dtypes and shapes, and tells every rank the first difference (naming the
 * tensor and the ranks), so all fail together before any broadcast mixes mismatched data. */
typedef struct shape_rec { int32_t dtype, ndim; int64_t shape[WF_MAX_DIMS]; } shape_rec;

static void rec_text(const shape_rec *r, char *buf, size_t n) {
    char b[96];
    snprintf(buf, n, "%s %s", wf_dtype_name((wf_dtype)r->dtype), wf__shape_text(r->ndim, r->shape, b, sizeof b));
}

int wf__ddp_broadcast_status(wf_strategy *s, bool local, int *code, char *msg, size_t n);

static int check_shapes(wf_strategy *s, wf_tensor **ts, const char **names, int np, int n) {
    int world = s->cluster.world_size, rank = wf_process_group_rank(s->pg), rc = 0, code = 0;
    char msg[500] = "";
    int32_t cnt[2] = { np, n - np }, *cnts = wf__calloc((size_t)world * 2, sizeof *cnts);
    shape_rec *mine = wf__calloc((size_t)n + 1, sizeof *mine), *all = NULL;
    if (!cnts || !mine) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    if (!rc) rc = wf_dist_gather_bytes(s->pg, cnt, sizeof cnt, cnts, 0);
    for (int r = 1; !rc && rank == 0 && r < world && !code; r++)
        if (cnts[2 * r] != np || cnts[2 * r + 1] != n - np) {
            code = WF_ESHAPE;
            snprintf(msg, sizeof msg, "the model has %d parameters and %d buffers on rank 0 but %d and %d on rank %d: "
                     "every rank must build the same model", np, n - np, cnts[2 * r], cnts[2 * r + 1], r);
        }
    if (!rc) rc = wf__ddp_broadcast_status(s, false, &code, msg, sizeof msg);
    if (!rc && !code) {
        for (int i = 0; i < n; i++) {
            mine[i].dtype = (int32_t)wf_tensor_dtype(ts[i]);
            mine[i].ndim = wf_ndim(ts[i]);
            for (int k = 0; k < mine[i].ndim; k++) mine[i].shape[k] = wf_shape(ts[i])[k];
        }
        if (rank == 0 && !(all = wf__calloc((size_t)world * (size_t)n + 1, sizeof *all)))
            code = WF_ENOMEM, snprintf(msg, sizeof msg, "out of memory checking the model's shapes");
        if (n) rc = wf_dist_gather_bytes(s->pg, mine, (size_t)n * sizeof *mine, all, 0);
        for (int i = 0; !rc && rank == 0 && all && i < n && !code; i++) {
            char ranks[200] = "", other[120] = "", here[120];
            size_t len = 0;
            int bad = 0;
            for (int r = 1; r < world; r++) {
                if (!memcmp(&all[(size_t)r * n + i], &all[i], sizeof *all)) continue;
                if (!bad) rec_text(&all[(size_t)r * n + i], other, sizeof other);
                if (len < sizeof ranks) {
                    int w = snprintf(ranks + len, sizeof ranks - len, "%s%d", bad ? ", " : "", r);
                    if (w > 0) len += (size_t)w;
                }
                bad++;
            }
            if (!bad) continue;
            rec_text(&all[i], here, sizeof here);
            code = WF_ESHAPE;
            snprintf(msg, sizeof msg, "%s \"%s\" is %s on rank 0 but %s on rank%s %s: every rank must build the "
                     "same model", i < np ? "parameter" : "buffer", names[i], here, other, bad > 1 ? "s" : "", ranks);
        }
        if (!rc) rc = wf__ddp_broadcast_status(s, false, &code, msg, sizeof msg);
    }
    if (!rc && code) rc = wf__error(code, "wf_fabric_setup: %s", msg);
    wf__free(cnts, 0);
    wf__free(mine, 0);
    wf__free(all, 0);
    return rc;
}

static int ddp_setup_module(wf_strategy *s, wf_module *m) {
    ddp_impl *d = impl_of(s);
    if (d->n_modules == d->cap_modules) {
        int nc = d->cap_modules ? 2 * d->cap_modules : 4;
        void *p = wf__realloc(d->modules, (size_t)d->cap_modules * sizeof *d->modules, (size_t)nc * sizeof *d->modules);
        if (!p) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        d->modules = p;
        p = wf__realloc(d->reducers, (size_t)d->cap_modules * sizeof *d->reducers, (size_t)nc * sizeof *d->reducers);
        if (!p) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        d->reducers = p;
        d->cap_modules = nc;
    }
    /* the same model everywhere, then every rank starts from rank 0's weights and buffers */
    int np = wf_module_parameters(m, NULL, NULL, 0), nb = wf_module_buffers(m, NULL, NULL, 0);
    if (np < 0) return np;
    if (nb < 0) return nb;
    wf_tensor **ts = wf__calloc((size_t)(np + nb + 1), sizeof *ts);
    const char **names = wf__calloc((size_t)(np + nb + 1), sizeof *names);
    char **copies = wf__calloc((size_t)(np + nb + 1), sizeof *copies);
    int rc = 0;
    if (!ts || !names || !copies) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    if (!rc) {
        /* the module's name cache is shared by both calls: copy the parameters' names */
        wf_module_parameters(m, ts, names, np);
        for (int i = 0; i < np && !rc; i++) {
            size_t l = strlen(names[i]) + 1;
            if (!(copies[i] = wf__malloc(l))) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
            else memcpy(copies[i], names[i], l), names[i] = copies[i];
        }
        if (!rc) wf_module_buffers(m, ts + np, names + np, nb);
    }
    /* a parameter shared with a module set up earlier would be reduced (and averaged) twice,
     * and its .grad can be a view into one bucket only: refuse it on every rank alike */
    for (int i = 0; i < np && !rc; i++)
        for (int k = 0; k < d->n_modules && !rc; k++) {
            const char *other = wf_requires_grad(ts[i]) ? wf__ddp_reducer_param_name(d->reducers[k], ts[i]) : NULL;
            if (other)
                rc = wf__error(WF_EINVAL, "wf_fabric_setup: parameter \"%s\" is also parameter \"%s\" of the module set "
                               "up %s under DDP: a parameter can belong to one set-up module only (set up the "
                               "modules that share it as one, e.g. in a container module)", names[i], other,
                               k == 0 ? "first" : "earlier");
        }
    if (!rc) rc = check_shapes(s, ts, names, np, np + nb);
    for (int i = 0; i < np + nb && !rc; i++) {
        if (!wf_is_contiguous(ts[i]))
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: %s \"%s\" is not contiguous", i < np ? "parameter" : "buffer",
                           names[i]);
        else rc = wf_dist_broadcast(s->pg, ts[i], 0, NULL);
    }
    for (int i = 0; copies && i < np; i++) wf__free(copies[i], 0);
    wf__free(copies, 0);
    wf__free(names, 0);
    wf__free(ts, 0);
    if (rc) return rc;
    wf_ddp_reducer *r = wf__ddp_reducer_new(s->pg, m, &d->ropts);
    if (!r) return wf_error() ? wf_error() : WF_ENOMEM;
    d->reducers[d->n_modules] = r;
    d->modules[d->n_modules++] = m;
    return 0;
}

/* Rank 0's buffers (running statistics) before each forward, as DDP's broadcast_buffers. */
static int ddp_pre_forward(wf_strategy *s, wf_module *m) {
    if (s->ddp.no_broadcast_buffers || wf_process_group_size(s->pg) == 1) return 0;
    int nb = wf_module_buffers(m, NULL, NULL, 0);
    if (nb <= 0) return nb;
    wf_tensor **ts = wf__calloc((size_t)nb, sizeof *ts);
    if (!ts) return wf__error(WF_ENOMEM, "wf_fabric forward: out of memory");
    wf_module_buffers(m, ts, NULL, nb);
    int rc = 0;
    for (int i = 0; i < nb && !rc; i++) rc = wf_dist_broadcast(s->pg, ts[i], 0, NULL);
    wf__free(ts, 0);
    return rc;
}

/* ---------------------------------------------------------------- backward */

/* Arm the reducers of the module(s) the loss belongs to, run the precision's backward (the
 * reducers all-reduce their buckets while it runs and wait at its end), then settle any
 * reducer whose finalizer could not run. Under no_backward_sync nothing is armed: gradients
 * accumulate into their bucket views and the next synced backward reduces the sum. */
static int ddp_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    if (s->no_sync_depth > 0) return wf_precision_backward(s->precision, loss);
    ddp_impl *d = impl_of(s);
    int rc = 0, armed = 0;
    for (int i = 0; i < d->n_modules && !rc; i++) {
        if (m && d->modules[i] != m) continue;
        rc = wf__ddp_reducer_prepare(d->reducers[i]);
        if (!rc) armed = i + 1;
    }
    if (!rc) rc = wf_precision_backward(s->precision, loss);
    for (int i = 0; i < armed; i++)
        if (!m || d->modules[i] == m) rc = wf__ddp_reducer_after_backward(d->reducers[i], rc);
    return rc;
}

static int ddp_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    return wf_precision_optimizer_step(s->precision, o, skipped);
}

/* ---------------------------------------------------------------- collectives */

int wf__ddp_barrier(wf_strategy *s, const char *name) {
    (void)name;
    return wf_dist_barrier(s->pg);
}

int wf__ddp_broadcast(wf_strategy *s, wf_tensor *t, int src) { return wf_dist_broadcast(s->pg, t, src, NULL); }

int wf__ddp_broadcast_bytes(wf_strategy *s, void *buf, size_t n, int src) {
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

wf_tensor *wf__ddp_all_gather(wf_strategy *s, wf_tensor *t, bool sync_grads) {
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

wf_tensor *wf__ddp_all_reduce(wf_strategy *s, wf_tensor *t, wf_fabric_reduce op) {
    wf_tensor *r = NULL;
    WF_NO_GRAD { r = wf_clone(t); }
    r = r ? wf_contiguous(r) : NULL;
    if (!r || wf_dist_all_reduce(s->pg, r, map_op(op), NULL)) return NULL;
    return r;
}

int wf__ddp_reduce_boolean_decision(wf_strategy *s, bool decision, bool all, bool *out) {
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

int wf__ddp_broadcast_status(wf_strategy *s, bool local, int *code, char *msg, size_t n) {
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
int wf__ddp_save_checkpoint(wf_strategy *s, wf_st_writer *w, const char *path, int prior) {
    int code = 0;
    char msg[500] = "";
    if (s->cluster.global_rank == 0) {
        code = prior ? prior : s->io.save(&s->io, w, path);
        if (code) snprintf(msg, sizeof msg, "%s", wf_error_message());
    }
    int rc = wf__ddp_broadcast_status(s, false, &code, msg, sizeof msg);
    if (rc) return rc;
    if (code && s->cluster.global_rank != 0)
        return wf__error(code, "wf_fabric_save: rank 0 could not save %s: %s", path, msg);
    return code;
}

/* PyTorch's DDP logger, in one line on rank 0: how long backward computed, how long the
 * all-reduces ran, and how much of that was hidden under backward. */
static void print_summary(wf_strategy *s, ddp_impl *d) {
    const char *e = getenv("WF_DDP_SUMMARY");
    if (!(wf__trace_enabled() || (e && !strcmp(e, "1"))) || s->cluster.global_rank != 0 || !d->n_modules) return;
    wf_ddp_stats t = { 0 };
    int buckets = 0;
    for (int i = 0; i < d->n_modules; i++) {
        wf_ddp_stats st;
        wf__ddp_reducer_stats(d->reducers[i], &st);
        t.backward_ms += st.backward_ms;
        t.comm_ms += st.comm_ms;
        t.overlap_ms += st.overlap_ms;
        if (st.steps > t.steps) t.steps = st.steps;
        buckets += wf__ddp_reducer_num_buckets(d->reducers[i]);
    }
    fprintf(stderr, "ddp: backward %.1f ms, all-reduce %.1f ms, overlapped %.1f ms (%.0f%%) over %lld steps, %d buckets\n",
            t.backward_ms, t.comm_ms, t.overlap_ms, t.comm_ms > 0 ? 100.0 * t.overlap_ms / t.comm_ms : 0.0,
            (long long)t.steps, buckets);
}

static void ddp_teardown(wf_strategy *s) {
    ddp_impl *d = impl_of(s);
    if (d) {
        print_summary(s, d);
        for (int i = 0; i < d->n_modules; i++) wf__ddp_reducer_free(d->reducers[i]);
        wf__free(d->reducers, 0);
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
    .pre_forward = ddp_pre_forward,
    .optimizer_step = ddp_optimizer_step,
    WF__DDP_COLLECTIVE_OPS,
    .teardown = ddp_teardown,
};
