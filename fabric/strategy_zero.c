/* fabric/strategy_zero.c: the "deepspeed*" strategies (Fabric's DeepSpeedStrategy), weft's own
 * ZeRO (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
 * Models"), so it runs on the CPU too:
 *   stage 1  parameters replicated; each rank keeps the optimizer state (and the f32 master
 *            copy) of its part of every parameter. The backward is local (no collective):
 *            the module's gradients are this rank's own, accumulated over the backwards since
 *            the last step. At the optimizer boundary (the first of clip_gradients or step
 *            after a backward) they are reduce-scattered in reduce_bucket_size buckets, each
 *            rank taking the average of its part, and dropped; the rank steps its part, then
 *            the parts are all-gathered (in allgather_bucket_size buckets). DeepSpeed's stage
 *            1 (partition_gradients off, reduce_scatter on): a reduce-scatter + an all-gather,
 *            DDP's traffic; the full averaged gradients never exist on any rank;
 *   stage 2  each gradient goes into its reduction bucket as soon as it is final (inside the
 *            backward) and is freed there; the rank keeps only its part of the reduced bucket
 *            (fabric/strategy_zero_buckets.c), accumulated over the backwards;
 *   stage 3  parameters sharded too: FSDP's FULL_SHARD units (strategy_fsdp.c), every module
 *            with parameters of its own a unit (fabric/strategy_zero3.c).
 * Checkpoints and shard lists of stages 1 and 2: fabric/zero_state.c.
 *
 * What a user sees of the gradients, as under DeepSpeed: after a backward, stage 1's module
 * parameters hold their local (unaveraged) gradients, summed since the last step, as
 * DeepSpeed's stage 1 keeps them between accumulation boundaries; stage 2's hold none. After
 * clip_gradients or the step (stage 1's boundary) the module's gradients are gone (NULL, as
 * DeepSpeed's zero_grad(set_to_none) after its reduction) and the optimizer's parameters, the
 * masters, hold the rank's rows of the averaged gradient until the step spends them. Under
 * "16-mixed" stage 1 reduces at the end of each backward instead: Fabric's clip_gradients
 * unscales the optimizer's gradients before the strategy is asked, so they must exist by then
 * (DeepSpeed under Fabric, whose gradient_accumulation_steps is 1, reduces in every backward).
 *
 * A rank's part of a parameter is its dim-0 rows (wf__shard_rows: ceil(rows / N) per rank),
 * the layout FSDP and the sharded checkpoints use (fabric/shard_spec.h), rather than a slice
 * of one flat buffer: an optimizer state saved under ZeRO then means the same rows as under
 * FSDP, and the master of a part is a tensor of the parameter's shape with fewer rows. The
 * cost: a parameter with fewer rows than ranks (a [1, n] weight, a 0-dim scalar) sits on the
 * first ranks only; for the usual [out, in] weights the parts are within one row of 1/N.
 *
 * Mixed precision ("bf16-mixed", "16-mixed"), as DeepSpeed does it: the module's parameters
 * are cast to the low dtype (the working copy the forward and backward use, and whose
 * gradients are reduced), and the rank's part is kept in f32 as the master the optimizer
 * steps: per rank 2 bytes/param of working parameters + 2 of gradients (stage 1: all of them,
 * local, from the backward to the boundary; stage 2: the part) + 12 of master, m and v for Adam
 * on the part. Under "*-true" and "32-true"
 * the working parameters keep their dtype, and the master is f32 for half-precision ones.
 *
 * Owned here: the masters, the gradient parts and the bookkeeping; the module's
 * parameter handles stay the module's. The process group and the Fabric's collectives are
 * DDP's (s->impl stays DDP's state; ours is s->zero_impl). DeepSpeed synchronizes every
 * backward: no_backward_sync is ignored (the Fabric warns), as in Fabric. */
#include "fabric/zero_impl.h"
#include "fabric/fsdp_unit.h"
#include "fabric/shard_spec.h"
#include "optim/optim_impl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- environment */

static int zero_setup_environment(wf_strategy *s) {
    /* "_offload" keeps the optimizer state and its step in host memory: on the CPU that is
     * where they are; with CUDA parameters it is not built, so say so rather than ignore it */
    if (s->desc->offload && s->device.type != WF_DEV_CPU)
        return wf__error(WF_ENOTSUP, "wf_fabric_launch: strategy \"%s\": offloading the optimizer state of CUDA "
                         "parameters to the host is not in this build; use \"deepspeed_stage_%d\"", s->desc->name,
                         s->desc->zero_stage);
    int rc = wf__ddp_ops.setup_environment(s);
    if (rc) return rc;
    zero_impl *z = wf__calloc(1, sizeof *z);
    if (!z) return wf__error(WF_ENOMEM, "wf_fabric_launch: out of memory");
    z->stage = s->desc->zero_stage;
    z->pg = s->pg;
    z->rank = wf_process_group_rank(s->pg);
    z->world = wf_process_group_size(s->pg);
    z->reduce_bucket_size = z->allgather_bucket_size = 200000000;
    z->bucket_reduce_scatter = true;   /* stage 2's layout: strategy_zero_buckets.c */
    s->zero_impl = z;
    /* checkpoints: the optimizer state gathered to rank 0 (fabric/checkpoint.c's full path) */
    s->fsdp.full_state_dict = true;
    return 0;
}

/* ---------------------------------------------------------------- setup */

/* The entry whose working parameter or master is t (or, when by_orig, whose handle before the
 * cast was: only while that handle is alive, between setup_module and setup_optimizers). */
static zero_param *find_param_in(zero_impl *z, const void *t, zero_model **in, bool by_orig) {
    for (int k = 0; z && k < z->n_models; k++)
        for (int i = 0; i < z->models[k]->n; i++) {
            zero_param *zp = &z->models[k]->p[i];
            if ((const void *)zp->p == t || (by_orig && zp->orig == t) || (const void *)zp->master == t) {
                if (in) *in = z->models[k];
                return zp;
            }
        }
    return NULL;
}
zero_param *wf__zero_find_param(zero_impl *z, const void *t, zero_model **in) { return find_param_in(z, t, in, false); }
static zero_param *find_param(zero_impl *z, const void *t, zero_model **in) { return find_param_in(z, t, in, false); }

/* The handles before the cast may be freed once setup is over (the optimizer let go of them):
 * forget them, so a new tensor at the same address is never taken for one. */
static void forget_origs(zero_impl *z) {
    for (int k = 0; k < z->n_models; k++)
        for (int i = 0; i < z->models[k]->n; i++) z->models[k]->p[i].orig = NULL;
}

static void model_free(zero_model *mod) {
    if (!mod) return;
    for (int i = 0; i < mod->n; i++) {
        zero_param *zp = &mod->p[i];
        if (zp->hook >= 0) wf_remove_grad_hook(zp->p, zp->hook);
        wf_tensor_free(zp->p);
        wf_tensor_free(zp->master);
        wf_tensor_free(zp->gpart);
    }
    wf__zero_buckets_free(mod);
    wf__free(mod->p, 0);
    wf__free(mod, sizeof *mod);
}

static int grad_ready(wf_tensor *leaf, void *ud);

/* The master of zp: this rank's rows of t, in f32 for half-precision parameters. */
static int make_master(zero_param *zp, wf_tensor *t, int rank, int world) {
    zp->rows = t->ndim ? t->shape[0] : 1;
    zp->row_numel = zp->rows ? wf_numel(t) / zp->rows : 0;
    zp->chunk = (zp->rows + world - 1) / world;
    wf__shard_rows(zp->rows, rank, world, &zp->row_start, &zp->row_count);
    wf_dtype mdt = (t->dtype == WF_BF16 || t->dtype == WF_F16) ? WF_F32 : t->dtype;
    int64_t shape[WF_MAX_DIMS];
    int nd = t->ndim ? t->ndim : 1;
    shape[0] = zp->row_count;
    for (int d = 1; d < nd; d++) shape[d] = t->shape[d];
    zp->master = wf_empty_on(shape, nd, mdt, t->device);
    if (!zp->master) return err_or(WF_ENOMEM);
    wf__scope_unregister(zp->master);
    int rc = 0;
    wf_scope_begin();
    if (zp->row_count) {
        wf_tensor *src = wf_narrow(flat(t), 0, zp->row_start * zp->row_numel, zp->row_count * zp->row_numel);
        wf_tensor *dst = flat(zp->master);
        rc = src && dst ? wf_copy_(dst, src) : err_or(WF_ENOMEM);
    }
    wf_scope_end();
    if (!rc && wf_requires_grad(t)) rc = wf_set_requires_grad(zp->master, true);
    return rc;
}

/* Every rank starts from rank 0's parameters and buffers (as DDP); the masters are cut from
 * them before the mixed-precision cast, so they hold the exact f32 values. */
static int zero_setup_module(wf_strategy *s, wf_module *m) {
    zero_impl *z = zimpl(s);
    if (!z) return wf__error(WF_ESTATE, "wf_fabric_setup: the %s strategy is not launched", s->desc->name);
    int np = wf_module_parameters(m, NULL, NULL, 0), nb = wf_module_buffers(m, NULL, NULL, 0);
    if (np < 0) return np;
    if (nb < 0) return nb;
    forget_origs(z);
    wf_tensor **ts = wf__calloc((size_t)(np + nb + 1), sizeof *ts);
    zero_model *mod = wf__calloc(1, sizeof *mod);
    int rc = (!ts || !mod) ? wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory") : 0;
    if (!rc) {
        mod->p = wf__calloc((size_t)np + 1, sizeof *mod->p);
        if (!mod->p) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    }
    if (!rc) {
        wf_module_parameters(m, ts, NULL, np);
        wf_module_buffers(m, ts + np, NULL, nb);
    }
    for (int i = 0; i < np && !rc; i++)
        if (find_param(z, ts[i], NULL))
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: parameter %d also belongs to a module set up earlier under "
                           "DeepSpeed: a parameter can belong to one set-up module only", i);
    for (int i = 0; i < np + nb && !rc; i++) {
        if (!wf_is_contiguous(ts[i]))
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: %s %d is not contiguous", i < np ? "parameter" : "buffer", i);
        else rc = wf_dist_broadcast(z->pg, ts[i], 0, NULL);
    }
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < np && !rc; i++) {
        zero_param *zp = &mod->p[mod->n++];
        zp->model = mod;
        zp->hook = -1;
        zp->orig = ts[i];
        rc = make_master(zp, ts[i], z->rank, z->world);
    }
    wf_set_grad_enabled(prev);
    /* mixed precision: the working copy in the autocast dtype (DeepSpeed's bf16/fp16 engine) */
    wf_dtype low = wf_precision_compute_dtype(s->precision);
    bool cast = wf_precision_is_mixed(s->precision) && (low == WF_BF16 || low == WF_F16);
    if (!rc && cast) rc = wf_module_to(m, s->device, low);
    if (!rc && cast) wf_module_parameters(m, ts, NULL, np);   /* the new handles */
    for (int i = 0; i < np && !rc; i++) {
        zero_param *zp = &mod->p[i];
        zp->p = wf_tensor_retain(ts[i]);
        zp->offset = mod->per_rank;
        mod->per_rank += zp->chunk * zp->row_numel;
        if (!wf_requires_grad(zp->p) || z->stage != 2) continue;   /* stage 1 reduces at the boundary */
        zp->hook = wf_register_grad_ready_hook(zp->p, grad_ready, zp);
        if (zp->hook < 0) rc = zp->hook;
    }
    if (!rc) rc = wf__zero_buckets_build(z, mod);
    mod->work_dtype = np ? wf_tensor_dtype(ts[0]) : WF_F32;
    /* the step's all-gather carries every parameter in one buffer of one dtype */
    for (int i = 1; i < np && !rc; i++)
        if (wf_tensor_dtype(ts[i]) != mod->work_dtype)
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: DeepSpeed: parameter %d is %s but parameter 0 is %s: the "
                           "parameters of a model must share one dtype", i, wf_dtype_name(wf_tensor_dtype(ts[i])),
                           wf_dtype_name(mod->work_dtype));
    if (!rc && z->n_models == z->cap_models) {
        int nc = z->cap_models ? 2 * z->cap_models : 4;
        void *p = wf__realloc(z->models, (size_t)z->cap_models * sizeof *z->models, (size_t)nc * sizeof *z->models);
        if (!p) rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        else z->models = p, z->cap_models = nc;
    }
    if (!rc) {
        mod->z = z;
        mod->root = m;
        z->models[z->n_models++] = mod;
        s->zero_n_models++;
    } else {
        model_free(mod);
    }
    wf__free(ts, 0);
    return rc;
}

static void forget_model(wf_strategy *s, zero_impl *z, wf_module *m) {
    for (int k = 0; k < z->n_models; k++)
        if (z->models[k]->root == m) {
            model_free(z->models[k]);
            z->models[k] = z->models[--z->n_models];
            s->zero_n_models--;
            return;
        }
}

/* DeepSpeed's engine takes one model and one optimizer together (Fabric refuses the rest). */
int wf__zero_check_optimizers(const wf_strategy *s, const wf_module *m, int n) {
    if (!m)
        return wf__error(WF_ENOTSUP, "wf_fabric_setup_optimizers: DeepSpeed (strategy \"%s\") sets up a model and its "
                         "optimizer together: call wf_fabric_setup(fab, model, &optimizer, 1, NULL)", s->desc->name);
    if (n > 1)
        return wf__error(WF_EINVAL, "wf_fabric_setup: DeepSpeed (strategy \"%s\") supports one optimizer per model, "
                         "got %d", s->desc->name, n);
    return 0;
}

/* The optimizer steps on the masters: its parameters are replaced. A state built on the full
 * parameters would have the wrong shape, so it must not exist yet. */
static int zero_setup_optimizers(wf_strategy *s, wf_module *m, wf_optimizer *const *opts, int n) {
    zero_impl *z = zimpl(s);
    int rc = wf__zero_check_optimizers(s, m, n);
    if (!rc && !z) rc = wf__error(WF_ESTATE, "wf_fabric_setup: the %s strategy is not launched", s->desc->name);
    zero_model *mod = NULL;
    for (int k = 0; z && k < z->n_models; k++) if (z->models[k]->root == m) mod = z->models[k];
    if (rc || !mod) {
        if (z && m) forget_model(s, z, m);
        return rc ? rc : wf__error(WF_ESTATE, "wf_fabric_setup: the model was not set up under DeepSpeed");
    }
    wf_optimizer *o = opts[0];
    for (int g = 0; g < o->n_groups && !rc; g++)
        for (int i = 0; i < o->groups[g].n && !rc; i++) {
            zero_model *in = NULL;
            zero_param *zp = find_param_in(z, o->groups[g].params[i], &in, true);
            if (!zp || in != mod) continue;
            wf_param_state *st = &o->state[o->groups[g].first_index + i];
            if (st->initialized || st->exp_avg || st->momentum_buffer || st->square_avg || st->sum)
                rc = wf__error(WF_ESTATE, "wf_fabric_setup: DeepSpeed: optimizer %s already has state for parameter %d: "
                               "set it up before its first step (its state is partitioned over the ranks)",
                               wf_optimizer_name(o), o->groups[g].first_index + i);
        }
    for (int g = 0; g < o->n_groups && !rc; g++)
        for (int i = 0; i < o->groups[g].n && !rc; i++) {
            wf_tensor *old = o->groups[g].params[i];
            zero_model *in = NULL;
            zero_param *zp = find_param_in(z, old, &in, true);
            if (zp && in == mod && old != zp->master) rc = wf__optimizer_replace_params(o, &old, &zp->master, 1);
        }
    if (rc) forget_model(s, z, m);
    else mod->opt = o;
    if (!rc) forget_origs(z);
    return rc;
}

/* ---------------------------------------------------------------- backward */

static int grad_ready(wf_tensor *leaf, void *ud) {
    (void)leaf;
    zero_param *zp = ud;
    if (!zp->model->armed) return 0;
    return wf__zero_grad_ready(zp->model->z, zp);
}

/* Stage 1 at the optimizer boundary: the models a backward left local gradients in, reduced
 * (only those stepped by o when o is not NULL). Every rank reaches the boundary at the same
 * call, so the collectives line up. */
static int reduce_local(zero_impl *z, const wf_optimizer *o) {
    int rc = 0;
    for (int k = 0; k < z->n_models; k++) {
        zero_model *mod = z->models[k];
        if (!mod->local || (o && mod->opt != o)) continue;
        mod->local = false;
        int r = wf__zero_reduce_local(z, mod);
        if (!rc) rc = r;
    }
    return rc;
}

/* Stage 2 reduces in every backward (DeepSpeed has no no_backward_sync: the Fabric warns when
 * asked); stage 1 only marks its gradients local (reduced at the boundary, reduce_local).
 * Stage 2's hooks run inside the backward, in the order the gradients become final, which is the
 * same on every rank when every rank uses the same parameters (as DDP without
 * find_unused_parameters). */
static int zero_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    zero_impl *z = zimpl(s);
    if (!z) return wf__error(WF_ESTATE, "wf_fabric_backward: the %s strategy is not launched", s->desc->name);
    if (!m && z->n_models > 1)
        return wf__error(WF_EINVAL, "wf_fabric_backward: with several models set up under DeepSpeed (strategy \"%s\"), "
                         "pass the model that made the loss: wf_fabric_backward(fab, loss, model)", s->desc->name);
    for (int k = 0; k < z->n_models; k++) z->models[k]->armed = !m || z->models[k]->root == m;
    int rc = wf_precision_backward(s->precision, loss);
    if (z->stage == 1) {
        for (int k = 0; k < z->n_models; k++) z->models[k]->local |= z->models[k]->armed;
        for (int k = 0; k < z->n_models; k++) z->models[k]->armed = false;
        /* 16-mixed: the gradients must exist before clip_gradients unscales them (header) */
        if (wf_precision_grad_scaler(s->precision)) {
            int r = reduce_local(z, NULL);
            if (!rc) rc = r;
        }
        return rc;
    }
    for (int k = 0; k < z->n_models; k++) z->models[k]->armed = false;
    /* the buckets still open or in flight land before the backward returns (also after an
     * error, so none outlives its buffers) */
    for (int k = 0; k < z->n_models; k++) {
        int r = wf__zero_buckets_flush(z, z->models[k]);
        if (!rc) rc = r;
    }
    return rc;
}

/* ---------------------------------------------------------------- step */

/* The updated rows of every rank into every rank's working parameters of p[i0, i1): one
 * all-gather (each rank's region holds its rows of each of them, padded to ceil(rows/N)). */
static int gather_range(zero_impl *z, zero_model *mod, int i0, int i1) {
    int rc = 0, world = z->world;
    int64_t base = mod->p[i0].offset;
    int64_t per = (i1 < mod->n ? mod->p[i1].offset : mod->per_rank) - base, all = per * world;
    if (!per) return 0;
    wf_device dev = wf_tensor_device(mod->p[i0].p);
    wf_scope_begin();
    wf_tensor *send = wf_empty_on(&per, 1, mod->work_dtype, dev);
    wf_tensor *recv = send ? wf_empty_on(&all, 1, mod->work_dtype, dev) : NULL;
    if (!send || !recv) rc = err_or(WF_ENOMEM);
    for (int i = i0; i < i1 && !rc; i++) {
        zero_param *zp = &mod->p[i];
        int64_t cnt = zp->row_count * zp->row_numel, pad = zp->chunk * zp->row_numel - cnt;
        if (cnt) rc = wf_copy_(wf_narrow(send, 0, zp->offset - base, cnt), flat(zp->master));
        /* the padding is never read back, but is sent: defined bytes */
        if (!rc && pad) rc = wf_zero_(wf_narrow(send, 0, zp->offset - base + cnt, pad));
    }
    /* through a work handle and a wait: on this machine's MPI (CPU ranks sharing cores) the
     * blocking call took about 5x longer for the same 0.5 MB (bench/NOTES.md) */
    wf_work *w = NULL;
    if (!rc) rc = wf_dist_all_gather(z->pg, recv, send, &w);
    if (!rc) rc = wf_work_wait(w);
    wf_work_free(w);
    for (int i = i0; i < i1 && !rc; i++) {
        zero_param *zp = &mod->p[i];
        wf_tensor *dst = flat(zp->p);
        if (!dst) { rc = err_or(WF_ENOMEM); break; }
        bool same = wf_tensor_dtype(zp->p) == mod->work_dtype;
        for (int r = 0; r < world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(zp->rows, r, world, &s0, &c);
            if (!c) continue;
            wf_tensor *src = wf_narrow(recv, 0, r * per + zp->offset - base, c * zp->row_numel);
            if (src && !same) src = wf_to_dtype(src, wf_tensor_dtype(zp->p));
            rc = src ? wf_copy_(wf_narrow(dst, 0, s0 * zp->row_numel, c * zp->row_numel), src) : err_or(WF_ENOMEM);
        }
        if (!rc) atomic_fetch_add(&zp->p->storage->version, 1);
    }
    wf_scope_end();
    if (!rc) z->gathers++;
    return rc;
}

/* A parameter whose rows split evenly over the ranks, contiguous and in the working dtype, is
 * its own all-gather's output: rank r's rows are its slice r. Such a parameter is gathered in
 * place (its master's rows copied into its own slice, then an in-place all-gather) instead of
 * through a bucket, which would copy every rank's rows in and out of a flat buffer: on 2 CPU
 * ranks those copies cost about as much as the all-gather itself (bench/NOTES.md, "Own
 * all-gather and reduce-scatter"). */
static bool gathers_in_place(const zero_impl *z, const zero_model *mod, const zero_param *zp) {
    return zp->chunk * z->world == zp->rows && zp->row_count == zp->chunk && wf_numel(zp->p) > 0 &&
           wf_tensor_dtype(zp->p) == mod->work_dtype && wf_is_contiguous(zp->p);
}

/* start zp's in-place all-gather (*w: its work, owned by the caller) */
static int gather_start_in_place(zero_impl *z, zero_param *zp, wf_work **w) {
    int rc = 0;
    int64_t cnt = zp->row_count * zp->row_numel;
    wf_scope_begin();
    wf_tensor *all = flat(zp->p);
    wf_tensor *mine = all ? wf_narrow(all, 0, zp->row_start * zp->row_numel, cnt) : NULL;
    rc = mine ? wf_copy_(mine, flat(zp->master)) : err_or(WF_ENOMEM);   /* casts to the working dtype */
    if (!rc) rc = wf_dist_all_gather(z->pg, all, mine, w);
    wf_scope_end();
    return rc;
}

/* The step's all-gather: the parameters that can gather in place one each (all in flight at
 * once), the others in buckets of at most allgather_bucket_size elements received (DeepSpeed's
 * allgather_bucket_size; a larger parameter goes alone), in parameter order on every rank. */
static int gather_model(zero_impl *z, zero_model *mod) {
    int rc = 0, nw = 0;
    bool prev = wf_set_grad_enabled(false);
    wf_work **ws = wf__calloc((size_t)mod->n + 1, sizeof *ws);
    int *wi = wf__calloc((size_t)mod->n + 1, sizeof *wi);
    if (!ws || !wi) rc = wf__error(WF_ENOMEM, "wf_fabric_step: DeepSpeed: out of memory for the all-gathers");
    for (int i0 = 0; i0 < mod->n && !rc;) {
        if (gathers_in_place(z, mod, &mod->p[i0])) {
            rc = gather_start_in_place(z, &mod->p[i0], &ws[nw]);
            if (!rc) wi[nw++] = i0;
            i0++;
            continue;
        }
        int i1 = i0 + 1;
        int64_t per = mod->p[i0].chunk * mod->p[i0].row_numel;
        while (i1 < mod->n && !gathers_in_place(z, mod, &mod->p[i1]) &&
               (per + mod->p[i1].chunk * mod->p[i1].row_numel) * z->world <= z->allgather_bucket_size) {
            per += mod->p[i1].chunk * mod->p[i1].row_numel;
            i1++;
        }
        rc = gather_range(z, mod, i0, i1);
        i0 = i1;
    }
    /* every started one is waited for, also after an error (none outlives the step) */
    for (int k = 0; k < nw; k++) {
        int r = wf_work_wait(ws[k]);
        wf_work_free(ws[k]);
        if (!rc) rc = r;
        /* the values changed under autograd's feet: as gather_range, a new version */
        if (!r) atomic_fetch_add(&mod->p[wi[k]].p->storage->version, 1);
        if (!r) z->gathers++;
    }
    wf__free(ws, 0);
    wf__free(wi, 0);
    wf_set_grad_enabled(prev);
    return rc;
}

/* After the step (DeepSpeed's engine.step): the masters' gradients are spent and freed (the
 * f32 gradient exists only from the reduction to the step), and the parts are zeroed in place
 * for the next accumulation (stage 2, which keeps them: its formula's 2Ψ/N) or freed (stage 1,
 * whose gradient memory between steps is the local gradients: DeepSpeed frees its
 * averaged_gradients with the step). */
static int clear_grads(zero_impl *z, zero_model *mod) {
    int rc = 0;
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < mod->n && !rc; i++) {
        zero_param *zp = &mod->p[i];
        rc = wf_set_grad(zp->master, NULL);
        wf_tensor *g = wf_grad(zp->p);
        if (!rc && g) rc = wf_zero_(g);
        if (!rc && zp->gpart && z->stage == 1) {
            wf_tensor_free(zp->gpart);
            zp->gpart = NULL;
        } else if (!rc && zp->gpart) {
            rc = wf_zero_(zp->gpart);
        }
    }
    wf_set_grad_enabled(prev);
    return rc;
}

static int zero_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    zero_impl *z = zimpl(s);
    bool sk = false;
    int rc = 0;
    if (z && z->stage == 1) {
        /* a reduction that failed in grad_params (clip_gradients) is reported here */
        rc = z->reduce_rc;
        z->reduce_rc = 0;
        int r = reduce_local(z, o);
        if (!rc) rc = r;
    }
    if (!rc) rc = wf_precision_optimizer_step(s->precision, o, &sk);
    if (skipped) *skipped = sk;
    for (int k = 0; z && k < z->n_models; k++) {
        zero_model *mod = z->models[k];
        if (mod->opt != o) continue;
        /* a step skipped (16-mixed found inf: every rank agrees) changed no master */
        if (!rc && !sk) rc = gather_model(z, mod);
        int r = clear_grads(z, mod);
        if (!rc) rc = r;
    }
    return rc;
}

/* ---------------------------------------------------------------- clipping */

/* Clipping's boundary: stage 1 reduces first (a failure is kept for clip_grad_norm or the step:
 * this hook returns nothing). */
static void zero_grad_params(wf_strategy *s, wf_tensor **ps, int n) {
    zero_impl *z = zimpl(s);
    if (z && z->stage == 1) {
        int r = reduce_local(z, NULL);
        if (!z->reduce_rc) z->reduce_rc = r;
    }
    for (int i = 0; z && i < n; i++) {
        zero_param *zp = ps[i] ? find_param(z, ps[i], NULL) : NULL;
        if (zp) ps[i] = zp->master;
    }
}

/* clip_grad_norm_ over the parts (disjoint across the ranks): the global norm */
static int zero_clip_grad_norm(wf_strategy *s, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                               bool error_if_nonfinite, double *total_norm) {
    zero_impl *z = zimpl(s);
    if (!z) return wf_clip_grad_norm_(ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
    if (z->reduce_rc) {
        int rc = z->reduce_rc;
        z->reduce_rc = 0;
        return rc;
    }
    return wf__sharded_clip_grad_norm(z->pg, ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
}

/* ---------------------------------------------------------------- teardown */

/* The module keeps its working parameters (their current values); the masters go. */
static void zero_teardown(wf_strategy *s) {
    zero_impl *z = zimpl(s);
    if (z) {
        for (int k = 0; k < z->n_models; k++) model_free(z->models[k]);
        wf__free(z->models, 0);
        wf__free(z, sizeof *z);
        s->zero_impl = NULL;
    }
    wf__ddp_ops.teardown(s);
}


const wf_strategy_ops wf__zero_ops = {
    .setup_environment = zero_setup_environment,
    .setup_module = zero_setup_module,
    .backward = zero_backward,
    .optimizer_step = zero_optimizer_step,
    .setup_optimizers = zero_setup_optimizers,
    .grad_params = zero_grad_params,
    .clip_grad_norm = zero_clip_grad_norm,
    WF__DDP_COLLECTIVE_OPS,
    .teardown = zero_teardown,
};
