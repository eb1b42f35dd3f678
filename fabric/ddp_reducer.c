/* fabric/ddp_reducer.c: DDP's gradient reducer (see ddp_reducer.h for the outline).
 *
 * Why each piece:
 *  - Buckets, in reverse order of registration: backward produces the last layers' gradients
 *    first, so the first bucket fills early and its all-reduce overlaps the rest of the
 *    backward. The first bucket is small (1 MB) so communication starts soon; the others are
 *    large (25 MB) so there are few collectives. A bucket holds one dtype on one device, so
 *    it is one flat tensor the backend reduces in one call.
 *  - Gradients are views into the bucket: the engine accumulates straight into the buffer
 *    (wf_add_ on the existing .grad), the all-reduce works in place, and nothing is copied
 *    back. A gradient the engine created anew (after zero_grad(set_to_none)) or that the user
 *    replaced is copied in once, in its hook, and the view becomes .grad again.
 *  - Averaging is folded into the hook (scale by 1/world, then all-reduce SUM), so the result
 *    needs no second pass.
 *  - Buckets are launched strictly in bucket order, so every rank issues the same collectives
 *    in the same order even when gradients become ready in a different order on each rank.
 *  - The end-of-backward callback launches whatever did not fill (a parameter without a
 *    gradient: zeros, or its gradient accumulated under no_backward_sync), so every rank
 *    always issues one all-reduce per bucket; then it waits, then the ranks agree on which
 *    parameters were used (an all-reduce MIN of a mask), so a parameter unused on any rank is
 *    an error on every rank, never a rank left waiting.
 *  - After the first step the buckets are rebuilt once in the order the gradients actually
 *    became ready (rank 0's order, broadcast), so the buckets fill as early as possible. */
#include "fabric/ddp_reducer.h"
#include "autograd/autograd_impl.h"
#include "dist/trace.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct param_rec {
    wf_ddp_reducer *r;
    wf_tensor *p;          /* retained */
    char *name;            /* owned copy (the module's name cache moves) */
    int hook;              /* grad-ready hook handle */
    int bucket;
    int64_t offset;        /* elements into the bucket */
    wf_tensor *view;       /* owned: p's gradient view into its bucket */
    bool ready;            /* this backward: its slot holds the scaled gradient */
    bool used;             /* this backward: its hook fired (a gradient flowed) */
    bool had_grad;         /* this backward: it had a .grad when the finalizer marked it */
    bool used_anywhere;    /* find_unused_parameters: some rank used it (last agreement) */
} param_rec;

typedef struct bucket {
    wf_tensor *buf;        /* owned flat buffer (one dtype, one device) */
    wf_tensor *comm;       /* owned while in flight: the compressed copy (comm hook) */
    int *idx, n;           /* its parameters (indices into ps), in slot order; owned */
    int pending;           /* parameters not ready yet this backward */
    wf_work *work;         /* owned while in flight */
    bool launched, done;
    double t_launch, t_done;   /* seconds, monotonic (the summary) */
} bucket;

struct wf_ddp_reducer {
    wf_process_group *pg;  /* borrowed: the strategy's */
    wf_module *m;          /* borrowed */
    wf_ddp_reducer_opts o;
    int world, rank;
    param_rec *ps;
    int np;
    bucket *bs;
    int nb, next_launch;
    int next_done;         /* buckets before it are known complete this backward */
    bool armed, rebuilt;
    int *order, n_order;   /* indices in the order they became ready this backward */
    int64_t iteration;     /* finished synced backwards */
    double t_arm, tr_arm;
    wf_ddp_stats st;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keep a tensor made inside the engine's (or no) scope: the scope drops its reference,
 * ours stays. */
#define KEEP(expr, out) do { wf_scope_begin(); (out) = (expr); if (out) wf_tensor_retain(out); wf_scope_end(); } while (0)


/* ---------------------------------------------------------------- buckets */

static void free_buckets(bucket *bs, int nb) {
    for (int b = 0; b < nb; b++) {
        wf_work_free(bs[b].work);
        wf_tensor_free(bs[b].comm);
        wf_tensor_free(bs[b].buf);
        wf__free(bs[b].idx, 0);
    }
    wf__free(bs, 0);
}

/* Assign the parameters, taken in `order`, to buckets: per (dtype, device) an open bucket is
 * filled until it reaches its limit (the first of each kind first_bucket_mb, later ones
 * bucket_cap_mb). Buckets are numbered in the order they were opened, which is the order
 * their first gradient is expected. Then allocate the buffers, make every parameter's view
 * and move the current gradients in (grad = view). On failure nothing changes. */
static int build_buckets(wf_ddp_reducer *r, const int *order) {
    int np = r->np, rc = 0, nb = 0;
    int *pb = wf__calloc((size_t)np + 1, sizeof *pb);            /* bucket of each parameter */
    int *open = wf__calloc((size_t)np + 1, sizeof *open);        /* per kind: its open bucket or -1 */
    int *closed = wf__calloc((size_t)np + 1, sizeof *closed);    /* per kind: buckets closed so far */
    int64_t *kbytes = wf__calloc((size_t)np + 1, sizeof *kbytes);
    int *kind_of_bucket = wf__calloc((size_t)np + 1, sizeof *kind_of_bucket);
    int *kind_rep = wf__calloc((size_t)np + 1, sizeof *kind_rep);   /* a parameter of each kind */
    bucket *bs = wf__calloc((size_t)np + 1, sizeof *bs);
    wf_tensor **views = wf__calloc((size_t)np + 1, sizeof *views);
    int64_t *offs = wf__calloc((size_t)np + 1, sizeof *offs);
    if (!pb || !open || !closed || !kbytes || !kind_of_bucket || !kind_rep || !bs || !views || !offs) {
        rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory building DDP's buckets");
        goto out;
    }
    int nk = 0;
    double first = r->o.first_bucket_mb * 1048576.0, cap = r->o.bucket_cap_mb * 1048576.0;
    for (int j = 0; j < np; j++) {
        wf_tensor *p = r->ps[order[j]].p;
        int k = 0;
        for (; k < nk; k++) {
            wf_tensor *q = r->ps[kind_rep[k]].p;
            if (q->dtype == p->dtype && wf_device_eq(q->device, p->device)) break;
        }
        if (k == nk) { kind_rep[nk] = order[j]; open[nk] = -1; nk++; }
        if (open[k] < 0) { open[k] = nb; kind_of_bucket[nb] = k; nb++; }
        int b = open[k];
        pb[order[j]] = b;
        bs[b].n++;
        kbytes[k] += wf_numel(p) * (int64_t)wf_dtype_size(p->dtype);
        if ((double)kbytes[k] >= (closed[k] ? cap : first)) { open[k] = -1; closed[k]++; kbytes[k] = 0; }
    }
    /* slots in order; buffers; views */
    for (int b = 0; b < nb && !rc; b++) {
        bs[b].idx = wf__calloc((size_t)bs[b].n, sizeof *bs[b].idx);
        if (!bs[b].idx) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory building DDP's buckets");
        bs[b].n = 0;
    }
    int64_t *total = kbytes;   /* reuse: elements per bucket */
    memset(total, 0, ((size_t)np + 1) * sizeof *total);
    for (int j = 0; j < np && !rc; j++) {
        int i = order[j], b = pb[i];
        bs[b].idx[bs[b].n++] = i;
        offs[i] = total[b];
        total[b] += wf_numel(r->ps[i].p);
    }
    for (int b = 0; b < nb && !rc; b++) {
        wf_tensor *rep = r->ps[kind_rep[kind_of_bucket[b]]].p;
        int64_t n = total[b];
        KEEP(wf_zeros_on(&n, 1, rep->dtype, rep->device), bs[b].buf);
        if (!bs[b].buf) rc = wf_error() ? wf_error() : WF_ENOMEM;
        bs[b].pending = bs[b].n;
    }
    for (int i = 0; i < np && !rc; i++) {
        wf_tensor *p = r->ps[i].p;
        int64_t stride[WF_MAX_DIMS];
        wf__contiguous_strides(p->ndim, p->shape, stride);
        KEEP(wf__view_of(bs[pb[i]].buf, p->ndim, p->shape, stride, offs[i]), views[i]);
        if (!views[i]) rc = wf_error() ? wf_error() : WF_ENOMEM;
    }
    /* the current gradients move into the buckets (a rebuild keeps the reduced values) */
    for (int i = 0; i < np && !rc; i++) {
        wf_tensor *g = r->ps[i].p->grad;
        if (g) rc = wf_copy_(views[i], g);
    }
    if (rc) goto out;
    for (int i = 0; i < np; i++) {
        param_rec *pr = &r->ps[i];
        if (pr->p->grad) wf_set_grad(pr->p, views[i]);
        wf_tensor_free(pr->view);
        pr->view = views[i];
        views[i] = NULL;
        pr->bucket = pb[i];
        pr->offset = offs[i];
    }
    free_buckets(r->bs, r->nb);
    r->bs = bs;
    r->nb = nb;
    bs = NULL;
out:
    if (bs) free_buckets(bs, nb);
    for (int i = 0; views && i < np; i++) wf_tensor_free(views[i]);
    wf__free(views, 0);
    wf__free(pb, 0);
    wf__free(open, 0);
    wf__free(closed, 0);
    wf__free(kbytes, 0);
    wf__free(kind_of_bucket, 0);
    wf__free(kind_rep, 0);
    wf__free(offs, 0);
    return rc;
}

/* ---------------------------------------------------------------- communication */

static int launch(wf_ddp_reducer *r, int b) {
    bucket *bk = &r->bs[b];
    wf_tensor *t = bk->buf;
    int rc = 0;
    bk->launched = true;
    bk->done = false;
    bk->t_launch = now_s();
    if ((int)r->o.comm_dtype >= 0 && r->o.comm_dtype != t->dtype) {
        /* gradient compression (Fabric's bf16/fp16 comm hooks): reduce a half copy */
        KEEP(wf_to_dtype(t, r->o.comm_dtype), bk->comm);
        if (!bk->comm) return wf_error() ? wf_error() : WF_ENOMEM;
        t = bk->comm;
    }
    if (r->world == 1) return 0;   /* nothing to exchange: the bucket already holds the average */
    if (wf__trace_recording()) {   /* the collective's span (dist/collectives.c) names its bucket */
        char tag[32];
        snprintf(tag, sizeof tag, "\"bucket\":%d", b);
        wf__trace_tag_next_collective(tag);
    }
    rc = wf_dist_all_reduce(r->pg, t, WF_DIST_SUM, &bk->work);
    r->st.buckets_launched++;
    return rc;
}

/* The bucket's all-reduce is over (wait bounded by the group's timeout): decompress. */
static int complete(wf_ddp_reducer *r, int b) {
    bucket *bk = &r->bs[b];
    int rc = bk->work ? wf_work_wait(bk->work) : 0;
    bk->t_done = now_s();
    bk->done = true;
    wf_work_free(bk->work);
    bk->work = NULL;
    if (!rc && bk->comm) rc = wf_copy_(bk->buf, bk->comm);
    wf_tensor_free(bk->comm);
    bk->comm = NULL;
    return rc;
}

/* Note finished all-reduces without blocking (and give MPI's progress engine a turn while
 * backward still runs). Buckets finish in launch order, so only the oldest unfinished one is
 * tested: O(1) per hook. */
static int poll(wf_ddp_reducer *r) {
    while (r->next_done < r->next_launch) {
        bucket *bk = &r->bs[r->next_done];
        if (!bk->done) {
            bool done = false;
            int rc = bk->work ? wf_work_test(bk->work, &done) : 0;
            if (rc) return rc;
            if (!done) return 0;
            if ((rc = complete(r, r->next_done))) return rc;
        }
        r->next_done++;
    }
    return 0;
}

/* ---------------------------------------------------------------- readiness */

/* Make the slot hold this parameter's gradient, scaled by 1/world: copy it in unless .grad
 * already is the view (then it accumulated in place), zeros when it has none. */
static int take_grad(wf_ddp_reducer *r, param_rec *pr) {
    wf_tensor *g = pr->p->grad;
    int rc = 0;
    if (g != pr->view) {
        rc = g ? wf_copy_(pr->view, g) : wf_zero_(pr->view);
        if (!rc) rc = wf_set_grad(pr->p, pr->view);
    }
    if (!rc && g && r->world > 1) rc = wf_mul_scalar_(pr->view, 1.0 / r->world);
    return rc;
}

static int mark_ready(wf_ddp_reducer *r, int i) {
    param_rec *pr = &r->ps[i];
    int rc = take_grad(r, pr);
    if (rc) return rc;
    pr->ready = true;
    r->order[r->n_order++] = i;
    r->bs[pr->bucket].pending--;
    /* launch in bucket order only: every rank issues the same collectives in the same order */
    while (!rc && r->next_launch < r->nb && r->bs[r->next_launch].pending == 0) rc = launch(r, r->next_launch++);
    return rc;
}

static int ready_hook(wf_tensor *leaf, void *ud) {
    param_rec *pr = ud;
    wf_ddp_reducer *r = pr->r;
    (void)leaf;
    if (!r->armed) return 0;   /* no_backward_sync or a plain wf_backward: accumulate only */
    if (pr->ready)
        return wf__error(WF_ESTATE, "wf_fabric_backward: the gradient of parameter \"%s\" became ready twice in one "
                         "backward under DDP (a parameter shared by two set-up models?)", pr->name);
    pr->used = true;
    int rc = mark_ready(r, (int)(pr - r->ps));
    return rc ? rc : poll(r);
}

/* ---------------------------------------------------------------- end of backward */

/* "\"a\", \"b\" and 3 more" */
static void name_list(wf_ddp_reducer *r, const int32_t *mask, char *buf, size_t n) {
    size_t len = 0;
    int shown = 0, missing = 0;
    buf[0] = 0;
    for (int i = 0; i < r->np; i++) {
        if (mask[i]) continue;
        missing++;
        if (shown < 8 && len < n) {
            int w = snprintf(buf + len, n - len, "%s\"%s\"", shown ? ", " : "", r->ps[i].name);
            if (w > 0) len += (size_t)w;
            shown++;
        }
    }
    if (missing > shown && len < n) snprintf(buf + len, n - len, " and %d more", missing - shown);
}

/* The ranks agree on which parameters got a gradient, and whether every rank's backward
 * succeeded (the last entry), so a decision taken from it is the same on every rank. Without
 * find_unused_parameters every parameter must be used on every rank (MIN of the mask). With
 * it, what counts is whether any rank used it (MIN of minus the mask, i.e. minus the MAX): a
 * parameter no rank used keeps no gradient, as PyTorch's reducer leaves it. */
static int agree(wf_ddp_reducer *r, int status, bool *all_ok) {
    int rc = 0;
    bool any = r->o.find_unused_parameters;
    *all_ok = false;
    wf_scope_begin();
    wf_tensor *mask = wf_zeros(WF_SHAPE(r->np + 1), WF_I32);
    if (!mask) rc = wf_error();
    if (!rc) {
        int32_t *mv = wf_data_ptr(mask);
        for (int i = 0; i < r->np; i++) mv[i] = any ? -(int32_t)r->ps[i].used : (int32_t)r->ps[i].used;
        mv[r->np] = status == 0;
        if (r->world > 1) {
            wf__trace_tag_next_collective("\"ddp\":\"unused_parameters\"");
            rc = wf_dist_all_reduce(r->pg, mask, WF_DIST_MIN, NULL);
        }
    }
    if (!rc && any) {
        int32_t *mv = wf_data_ptr(mask);
        for (int i = 0; i < r->np; i++) r->ps[i].used_anywhere = mv[i] != 0;
        *all_ok = mv[r->np] != 0;
    } else if (!rc) {
        int32_t *mv = wf_data_ptr(mask);
        bool used_everywhere = true;
        for (int i = 0; i < r->np; i++) used_everywhere &= mv[i] != 0;
        *all_ok = mv[r->np] != 0 && used_everywhere;
        if (!used_everywhere) {
            char names[400];
            name_list(r, mv, names, sizeof names);
            bool mine = true;
            for (int i = 0; i < r->np; i++) if (!mv[i] && !r->ps[i].used) mine = false;
            rc = wf__error(WF_ESTATE, "wf_fabric_backward: parameter(s) %s received no gradient on %s: under DDP every "
                           "parameter that requires grad must take part in the loss on every rank (or use "
                           "find_unused_parameters, e.g. strategy \"ddp_find_unused_parameters_true\")",
                           names, mine ? "another rank" : "this rank");
        }
    }
    wf_scope_end();
    return rc;
}

/* Rebuild the buckets once in the order the gradients became ready on rank 0. */
static int rebuild(wf_ddp_reducer *r) {
    int32_t *ord = wf__calloc((size_t)r->np + 1, sizeof *ord);
    bool *seen = wf__calloc((size_t)r->np + 1, sizeof *seen);
    int *order = wf__calloc((size_t)r->np + 1, sizeof *order);
    int rc = (!ord || !seen || !order) ? wf__error(WF_ENOMEM, "wf_fabric_backward: out of memory") : 0;
    for (int j = 0; !rc && j < r->np; j++) ord[j] = r->order[j];
    if (!rc && r->world > 1) {
        wf__trace_tag_next_collective("\"ddp\":\"rebuild_buckets\"");
        rc = wf_dist_broadcast_bytes(r->pg, ord, (size_t)r->np * sizeof *ord, 0);
    }
    for (int j = 0; !rc && j < r->np; j++) {
        if (ord[j] < 0 || ord[j] >= r->np || seen[ord[j]])
            rc = wf__error(WF_EDIST, "wf_fabric_backward: rank 0's gradient order is not a permutation of %d parameters", r->np);
        else { seen[ord[j]] = true; order[j] = ord[j]; }
    }
    if (!rc) rc = build_buckets(r, order);
    r->rebuilt = true;   /* once, even if it failed: every rank tried, none retries alone */
    wf__free(ord, 0);
    wf__free(seen, 0);
    wf__free(order, 0);
    return rc;
}

static void account(wf_ddp_reducer *r, double t_end) {
    /* buckets were launched in index order: merge their spans into a union */
    double comm = 0, overlap = 0, cs = 0, ce = -1;
    for (int b = 0; b <= r->nb; b++) {
        bool flush = b == r->nb || r->bs[b].t_launch > ce;
        if (flush && ce >= cs) {
            comm += ce - cs;
            double s = cs > r->t_arm ? cs : r->t_arm, e = ce < t_end ? ce : t_end;
            if (e > s) overlap += e - s;
        }
        if (b == r->nb || !r->bs[b].launched) continue;
        if (flush) { cs = r->bs[b].t_launch; ce = r->bs[b].t_done; }
        else if (r->bs[b].t_done > ce) ce = r->bs[b].t_done;
    }
    r->st.backward_ms += (t_end - r->t_arm) * 1e3;
    r->st.comm_ms += comm * 1e3;
    r->st.overlap_ms += overlap * 1e3;
    r->st.steps++;
}

/* The end-of-backward callback. Always runs the same collectives on every rank (the buckets
 * not launched yet, the waits, the agreement, the one rebuild), whatever happened locally. */
static int finalize(int status, void *ud) {
    wf_ddp_reducer *r = ud;
    if (!r->armed) return 0;
    r->armed = false;
    double t_end = now_s(), tr_end = wf__trace_begin();
    int rc = 0;
    /* parameters without a gradient this backward: their slot gets their accumulated
     * gradient (no_backward_sync) or zeros, so their buckets complete */
    for (int i = 0; i < r->np; i++) {
        r->ps[i].had_grad = r->ps[i].ready || r->ps[i].p->grad;
        if (r->ps[i].ready) continue;
        int e = mark_ready(r, i);
        if (e && !rc) rc = e;
    }
    while (r->next_launch < r->nb) {   /* only after an error above */
        int e = launch(r, r->next_launch++);
        if (e && !rc) rc = e;
    }
    for (int b = 0; b < r->nb; b++) {
        if (!r->bs[b].launched || r->bs[b].done) continue;
        int e = complete(r, b);
        if (e && !rc) rc = e;
    }
    /* the timeline: the local graph on the compute lane (CPU: it ran on this thread), then
     * the wait for the buckets still in flight on the host lane */
    if (r->tr_arm >= 0 && tr_end >= 0)
        wf__trace_span(WF_TRACE_COMPUTE, "backward_compute", "ddp", r->tr_arm, tr_end - r->tr_arm, NULL);
    wf__trace_end(WF_TRACE_HOST, "ddp_wait", "ddp", tr_end, NULL);
    account(r, t_end);
    int err = status ? status : rc;
    /* agreement: every step (an unused parameter must be an error on every rank, or, with
     * find_unused_parameters, left without a gradient on every rank), except under static_graph
     * after the first step: the set of used parameters is fixed then */
    bool need = !(r->o.static_graph && r->iteration > 0);
    bool all_ok = false;
    if (need) {
        int e = agree(r, err, &all_ok);
        if (e && !rc) rc = e;
    } else if (!r->o.find_unused_parameters) {
        for (int i = 0; i < r->np && !rc; i++)
            if (!r->ps[i].used)
                rc = wf__error(WF_ESTATE, "wf_fabric_backward: parameter \"%s\" received no gradient, but static_graph "
                               "fixed the set of used parameters at the first step", r->ps[i].name);
    }
    /* a parameter no rank used: no gradient, so the optimizer leaves it alone (its slot is
     * zeros, and its grad stays what it was: none, or the user's zeros) */
    if (r->o.find_unused_parameters && !rc && !err)
        for (int i = 0; i < r->np; i++)
            if (!r->ps[i].used_anywhere && !r->ps[i].had_grad) wf_set_grad(r->ps[i].p, NULL);
    if (need && all_ok && !r->rebuilt) {
        int e = rebuild(r);
        if (e && !rc) rc = e;
    }
    /* ready for the next backward */
    for (int i = 0; i < r->np; i++) r->ps[i].ready = r->ps[i].used = false;
    for (int b = 0; b < r->nb; b++) {
        r->bs[b].pending = r->bs[b].n;
        r->bs[b].launched = r->bs[b].done = false;
    }
    r->next_launch = r->next_done = 0;
    r->n_order = 0;
    r->iteration++;
    return rc;
}

int wf__ddp_reducer_prepare(wf_ddp_reducer *r) {
    if (r->armed) return wf__error(WF_ESTATE, "wf_fabric_backward: DDP's reducer is already armed (a backward inside a backward?)");
    int rc = wf_queue_backward_callback(finalize, r);
    if (rc) return rc;
    r->armed = true;
    r->t_arm = now_s();
    r->tr_arm = wf__trace_begin();
    return 0;
}

int wf__ddp_reducer_after_backward(wf_ddp_reducer *r, int rc) {
    if (!r->armed) return rc;
    /* the backward never reached the engine: the queued finalizer did not run */
    wf__backward_callback_cancel(finalize, r);
    int e = finalize(rc ? rc : WF_EAUTOGRAD, r);
    return rc ? rc : e;
}

/* ---------------------------------------------------------------- life */

wf_ddp_reducer *wf__ddp_reducer_new(wf_process_group *pg, wf_module *m, const wf_ddp_reducer_opts *o) {
    int n = wf_module_parameters(m, NULL, NULL, 0);
    if (n < 0) return NULL;
    wf_ddp_reducer *r = wf__calloc(1, sizeof *r);
    wf_tensor **ts = wf__calloc((size_t)n + 1, sizeof *ts);
    const char **names = wf__calloc((size_t)n + 1, sizeof *names);
    if (!r || !ts || !names) goto oom;
    r->pg = pg;
    r->m = m;
    r->o = *o;
    r->world = wf_process_group_size(pg);
    r->rank = wf_process_group_rank(pg);
    wf_module_parameters(m, ts, names, n);
    r->ps = wf__calloc((size_t)n + 1, sizeof *r->ps);
    r->order = wf__calloc((size_t)n + 1, sizeof *r->order);
    if (!r->ps || !r->order) goto oom;
    for (int i = 0; i < n; i++) {
        if (!wf_requires_grad(ts[i])) continue;   /* frozen parameters take no part */
        param_rec *pr = &r->ps[r->np];
        size_t len = strlen(names[i]) + 1;
        pr->name = wf__malloc(len);
        if (!pr->name) goto oom;
        memcpy(pr->name, names[i], len);
        pr->r = r;
        pr->p = wf_tensor_retain(ts[i]);
        pr->hook = -1;
        r->np++;
    }
    /* reverse order of registration: the last layers' gradients come first in backward */
    int *order = r->order;
    for (int j = 0; j < r->np; j++) order[j] = r->np - 1 - j;
    if (build_buckets(r, order)) goto fail;
    for (int i = 0; i < r->np; i++) {
        int h = wf_register_grad_ready_hook(r->ps[i].p, ready_hook, &r->ps[i]);
        if (h < 0) goto fail;
        r->ps[i].hook = h;
    }
    wf__free(ts, 0);
    wf__free(names, 0);
    return r;
oom:
    wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory setting up DDP's reducer");
fail:
    wf__free(ts, 0);
    wf__free(names, 0);
    wf__ddp_reducer_free(r);
    return NULL;
}

wf_module *wf__ddp_reducer_module(const wf_ddp_reducer *r) { return r->m; }
const char *wf__ddp_reducer_param_name(const wf_ddp_reducer *r, const wf_tensor *p) {
    for (int i = 0; i < r->np; i++)
        if (r->ps[i].p == p) return r->ps[i].name;
    return NULL;
}
int wf__ddp_reducer_num_buckets(const wf_ddp_reducer *r) { return r->nb; }
int wf__ddp_reducer_bucket_of(const wf_ddp_reducer *r, int i) { return i >= 0 && i < r->np ? r->ps[i].bucket : -1; }
void wf__ddp_reducer_stats(const wf_ddp_reducer *r, wf_ddp_stats *out) { *out = r->st; }

void wf__ddp_reducer_free(wf_ddp_reducer *r) {
    if (!r) return;
    if (r->armed) wf__backward_callback_cancel(finalize, r);
    for (int i = 0; r->ps && i < r->np; i++) {
        param_rec *pr = &r->ps[i];
        if (pr->hook >= 0) wf_remove_grad_hook(pr->p, pr->hook);
        wf_tensor_free(pr->view);
        wf_tensor_free(pr->p);
        wf__free(pr->name, 0);
    }
    free_buckets(r->bs, r->nb);
    wf__free(r->ps, 0);
    wf__free(r->order, 0);
    wf__free(r, sizeof *r);
}
