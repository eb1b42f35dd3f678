/* fabric/strategy_zero_buckets.c: ZeRO stages 1 and 2 reduce gradients in buckets, as
 * DeepSpeed does (its reduce_bucket_size; Fabric's DeepSpeedStrategy passes 2e8 elements), not
 * one collective per parameter: on CPU ranks a collective's fixed cost (a few tens of
 * microseconds of matching and waking) dominates a small model's reduction.
 *
 * Buckets take the parameters in reverse registration order (backward makes the last layers'
 * gradients first), up to reduce_bucket_size elements each. A gradient is copied into its
 * bucket's flat buffer and dropped from the parameter (its memory moves into the bucket and
 * goes with it once reduced): stage 2 as soon as it is final (its grad-ready hook, inside the
 * backward); stage 1 at the optimizer boundary (wf__zero_reduce_local: every gradient
 * accumulated locally since the last step, in bucket order). A bucket whose gradients are all
 * in is launched at once, in bucket order on every rank (so the collectives line up), at most
 * two in flight (each holds its gradients; a third waits for the oldest). The end launches
 * what did not fill and waits for everything, so the step sees reduced gradients.
 *
 * The collective: each rank needs only its rows, so a reduce-scatter (sum, in place; the rows
 * are scaled by 1/N as they are taken), half the data of an all-reduce: stage 1 then moves
 * what DDP moves (a reduce-scatter + the step's all-gather), as DeepSpeed's stage 1 does. On
 * the MPI backend weft's own (dist/mpi_reduce_scatter.c) takes about half an all-reduce's time
 * at 2 CPU ranks (Open MPI's took longer than the all-reduce: bench/NOTES.md, "Own all-gather
 * and reduce-scatter"). z->bucket_reduce_scatter selects its layout: each rank's rows of every
 * parameter of the bucket contiguous, padded to ceil(rows/N) (else an all-reduce with SUM, the
 * natural layout, kept for the tests). */
#include "fabric/zero_impl.h"
#include "fabric/shard_spec.h"

#include <string.h>

void wf__zero_buckets_free(zero_model *mod) {
    for (int b = 0; b < mod->nb; b++) {
        zero_bucket *bk = &mod->b[b];
        wf_work_free(bk->work);   /* (waits: none is in flight outside a backward) */
        wf_tensor_free(bk->buf);
        wf_tensor_free(bk->out);
        wf__free(bk->idx, 0);
    }
    wf__free(mod->b, 0);
    mod->b = NULL;
    mod->nb = 0;
}

/* Each parameter's place in its bucket: the natural layout (the gradients one after another)
 * for an all-reduce, or each rank's region (its rows of every parameter, padded) for a
 * reduce-scatter. */
int wf__zero_buckets_build(zero_impl *z, zero_model *mod) {
    wf__zero_buckets_free(mod);
    int n = 0;
    for (int i = 0; i < mod->n; i++) mod->p[i].bucket = -1;
    for (int i = 0; i < mod->n; i++) n += wf_requires_grad(mod->p[i].p);
    if (!n) return 0;
    mod->b = wf__calloc((size_t)n, sizeof *mod->b);
    if (!mod->b) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory building DeepSpeed's buckets");
    int64_t cap = z->reduce_bucket_size > 0 ? z->reduce_bucket_size : 1;
    zero_bucket *bk = NULL;
    for (int i = mod->n - 1; i >= 0; i--) {
        zero_param *zp = &mod->p[i];
        if (!wf_requires_grad(zp->p)) continue;
        if (!bk || bk->numel >= cap) {
            bk = &mod->b[mod->nb++];
            bk->idx = wf__calloc((size_t)n, sizeof *bk->idx);
            if (!bk->idx) {
                wf__zero_buckets_free(mod);
                return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory building DeepSpeed's buckets");
            }
        }
        zp->bucket = (int)(bk - mod->b);
        bk->idx[bk->n++] = i;
        zp->boff = z->bucket_reduce_scatter ? bk->per : bk->numel;
        bk->per += zp->chunk * zp->row_numel;
        bk->numel += wf_numel(zp->p);
    }
    for (int b = 0; b < mod->nb; b++) {
        mod->b[b].pending = mod->b[b].n;
        mod->b[b].rs = z->bucket_reduce_scatter;
        if (mod->b[b].rs) mod->b[b].numel = mod->b[b].per * z->world;
    }
    return 0;
}

static int finish_bucket(zero_impl *z, zero_model *mod, int b);

/* the bucket's collective: all-reduce (AVG) in place, or reduce-scatter into out */
static int launch_bucket(zero_impl *z, zero_model *mod, int b) {
    zero_bucket *bk = &mod->b[b];
    int rc = 0;
    if (mod->next_launch - mod->next_done == 2) rc = finish_bucket(z, mod, mod->next_done);
    bk->launched = true;
    mod->next_launch = b + 1;
    if (!bk->any) return rc;   /* nothing of it was ready on this rank or any (see flush) */
    /* the buffer is not zeroed when made (most of it is overwritten): the slots of the
     * parameters that got no gradient this backward are zeroed here */
    for (int j = 0; j < bk->n && !rc; j++) {
        zero_param *zp = &mod->p[bk->idx[j]];
        if (zp->ready) continue;
        wf_scope_begin();
        if (!bk->rs) rc = wf_zero_(wf_narrow(bk->buf, 0, zp->boff, wf_numel(zp->p)));
        for (int r = 0; r < z->world && bk->rs && !rc; r++)
            rc = wf_zero_(wf_narrow(bk->buf, 0, r * bk->per + zp->boff, zp->chunk * zp->row_numel));
        wf_scope_end();
    }
    if (!rc && bk->rs) {
        /* in place: the rank's region of the buffer (no second buffer at the peak) */
        wf_scope_begin();
        bk->out = wf_narrow(bk->buf, 0, (int64_t)z->rank * bk->per, bk->per);
        if (bk->out) wf__scope_unregister(bk->out);
        wf_scope_end();
        rc = bk->out ? wf_dist_reduce_scatter(z->pg, bk->out, bk->buf, WF_DIST_SUM, &bk->work) : err_or(WF_ENOMEM);
    } else if (!rc) {
        /* sums, and scales only its rows by 1/N as it takes them (finish_bucket): the
         * backend's AVG would divide the whole buffer */
        rc = wf_dist_all_reduce(z->pg, bk->buf, WF_DIST_SUM, &bk->work);
    }
    if (!rc) z->buckets_launched++;
    return rc;
}

/* zp's gradient is final: into its bucket; a full bucket (and the full ones after it, in
 * order) launched. */
int wf__zero_grad_ready(zero_impl *z, zero_param *zp) {
    zero_model *mod = zp->model;
    wf_tensor *g = wf_grad(zp->p);
    if (zp->bucket < 0 || zp->ready || !g) return 0;
    zero_bucket *bk = &mod->b[zp->bucket];
    if (bk->launched)
        return wf__error(WF_ESTATE, "wf_fabric_backward: DeepSpeed: a gradient became ready after its bucket was "
                         "reduced (a parameter used again after its gradient was final?)");
    int rc = 0;
    int64_t numel = wf_numel(zp->p), rn = zp->row_numel;
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    if (!bk->buf) {
        wf_tensor *buf = wf_empty_on(&bk->numel, 1, wf_tensor_dtype(g), wf_tensor_device(g));
        if (buf) wf__scope_unregister(buf);   /* ours until the bucket is reduced */
        bk->buf = buf;
        if (!buf) rc = err_or(WF_ENOMEM);
    }
    wf_tensor *src = rc ? NULL : flat(wf_contiguous(g));
    if (!rc && !src) rc = err_or(WF_ENOMEM);
    if (!rc && !bk->rs) {
        /* the gradient is dropped: its rows come out of the buffer */
        wf_tensor *dst = wf_narrow(bk->buf, 0, zp->boff, numel);
        rc = dst ? wf_copy_(dst, src) : err_or(WF_ENOMEM);
        if (!rc) rc = wf_set_grad(zp->p, NULL);
    } else if (!rc) {
        for (int r = 0; r < z->world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(zp->rows, r, z->world, &s0, &c);
            if (c) rc = wf_copy_(wf_narrow(bk->buf, 0, r * bk->per + zp->boff, c * rn), wf_narrow(src, 0, s0 * rn, c * rn));
            if (!rc && c < zp->chunk)   /* the padding of a short rank */
                rc = wf_zero_(wf_narrow(bk->buf, 0, r * bk->per + zp->boff + c * rn, (zp->chunk - c) * rn));
        }
        if (!rc) rc = wf_set_grad(zp->p, NULL);
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    if (rc) return rc;
    zp->ready = true;
    bk->any = true;
    bk->pending--;
    while (!rc && mod->next_launch < mod->nb && mod->b[mod->next_launch].pending == 0)
        rc = launch_bucket(z, mod, mod->next_launch);
    return rc;
}

/* The oldest bucket in flight done: each of its parameters that was ready gets its averaged
 * rows added to its part (kept until the step); the master's gradient becomes the part in the
 * master's dtype, overwritten: it holds the sum since the last step. */
static int finish_bucket(zero_impl *z, zero_model *mod, int b) {
    zero_bucket *bk = &mod->b[b];
    mod->next_done = b + 1;
    int rc = bk->work ? wf_work_wait(bk->work) : 0;
    wf_work_free(bk->work);
    bk->work = NULL;
    bool prev = wf_set_grad_enabled(false);
    for (int j = 0; j < bk->n && !rc && bk->any; j++) {
        zero_param *zp = &mod->p[bk->idx[j]];
        if (!zp->ready) continue;
        int64_t cnt = zp->row_count * zp->row_numel;
        wf_scope_begin();
        wf_tensor *rows = bk->rs ? wf_narrow(bk->out, 0, zp->boff, cnt)
                                 : wf_narrow(bk->buf, 0, zp->boff + zp->row_start * zp->row_numel, cnt);
        if (!rows) rc = err_or(WF_ENOMEM);
        if (!rc) {
            if (!zp->gpart) {
                zp->gpart = wf_zeros_on(&cnt, 1, wf_tensor_dtype(bk->buf), wf_tensor_device(bk->buf));
                if (!zp->gpart) rc = err_or(WF_ENOMEM);
                else wf__scope_unregister(zp->gpart);
            }
            if (!rc && cnt) rc = wf_add_scaled_(zp->gpart, rows, 1.0 / z->world);
            rows = zp->gpart;
        }
        if (!rc) {
            wf_tensor *v = wf_view(rows, wf_shape(zp->master), wf_ndim(zp->master));
            bool same = wf_tensor_dtype(rows) == wf_tensor_dtype(zp->master);
            /* the part itself when the dtypes agree (it holds the sum since the last step, as
             * the master's gradient must, and both are reset by the step) */
            wf_tensor *mg = !v ? NULL : !same ? wf_to_dtype(v, wf_tensor_dtype(zp->master)) : v;
            rc = mg ? wf_set_grad(zp->master, mg) : err_or(WF_ENOMEM);
        }
        wf_scope_end();
        if (!rc) z->reduces++;
    }
    wf_set_grad_enabled(prev);
    wf_tensor_free(bk->out);
    bk->out = NULL;
    wf_tensor_free(bk->buf);   /* its gradients are reduced: their memory goes */
    bk->buf = NULL;
    return rc;
}

/* The backward's end (also after an error, so nothing outlives its buffers or leaves a rank
 * waiting): the buckets that did not fill are launched in order (a parameter without a
 * gradient this backward keeps none: its zeros are reduced but not taken), then everything
 * is waited for and the buckets rearmed. */
int wf__zero_buckets_flush(zero_impl *z, zero_model *mod) {
    int rc = 0;
    while (mod->next_launch < mod->nb) {
        int r = launch_bucket(z, mod, mod->next_launch);
        if (!rc) rc = r;
    }
    while (mod->next_done < mod->next_launch) {
        int r = finish_bucket(z, mod, mod->next_done);
        if (!rc) rc = r;
    }
    for (int b = 0; b < mod->nb; b++) {
        zero_bucket *bk = &mod->b[b];
        wf_work_free(bk->work);
        wf_tensor_free(bk->out);
        bk->work = NULL;
        bk->out = NULL;
        wf_tensor_free(bk->buf);
        bk->buf = NULL;
        bk->launched = bk->any = false;
        bk->pending = bk->n;
    }
    for (int i = 0; i < mod->n; i++) mod->p[i].ready = false;
    mod->next_launch = mod->next_done = 0;
    return rc;
}

/* Stage 1 at the optimizer boundary: every gradient accumulated locally since the last step
 * into its bucket (in bucket order, so the buckets fill and launch as in a backward), then the
 * rest launched and everything waited for. Afterwards the module's gradients are gone and the
 * masters hold the rank's averaged rows. 0 or a code (every bucket landed, also after one). */
int wf__zero_reduce_local(zero_impl *z, zero_model *mod) {
    int rc = 0;
    for (int b = 0; b < mod->nb && !rc; b++)
        for (int j = 0; j < mod->b[b].n && !rc; j++) rc = wf__zero_grad_ready(z, &mod->p[mod->b[b].idx[j]]);
    int r = wf__zero_buckets_flush(z, mod);
    return rc ? rc : r;
}
