/* fabric/fsdp_unit.c: one FSDP unit's life: shards, all-gather before use, free after,
 * reduce-scatter of the gradients (see fsdp_unit.h for the layout).
 *
 * Everything here runs with grad mode off (the copies into and out of the flat buffers are
 * not part of the model's graph) and inside its own scope, so the temporaries never leak
 * into the caller's scope, which may be a forward's or the engine's. */
#include "fabric/fsdp_unit.h"
#include "fabric/shard_spec.h"
#include "tensor/meta_init.h"
#include "autograd/autograd_impl.h"

#include <string.h>

/* ---------------------------------------------------------------- live units
 * Module forward hooks cannot be removed once the module is gone, and a set-up module may be
 * freed before its Fabric: the hooks carry a unit id and find nothing once the unit is freed
 * (as fabric.c's live-Fabric registry). */
static fsdp_unit **live;
static int n_live, cap_live;
static uint64_t next_id = 1;

static int live_add(fsdp_unit *u) {
    if (n_live == cap_live) {
        int nc = cap_live ? 2 * cap_live : 16;
        void *p = wf__realloc(live, (size_t)cap_live * sizeof *live, (size_t)nc * sizeof *live);
        if (!p) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        live = p;
        cap_live = nc;
    }
    u->id = next_id++;
    live[n_live++] = u;
    return 0;
}
static void live_remove(fsdp_unit *u) {
    for (int i = 0; i < n_live; i++)
        if (live[i] == u) { live[i] = live[--n_live]; break; }
    if (!n_live) {
        wf__free(live, (size_t)cap_live * sizeof *live);
        live = NULL;
        cap_live = 0;
    }
}
static fsdp_unit *live_find(uint64_t id) {
    for (int i = 0; i < n_live; i++) if (live[i]->id == id) return live[i];
    return NULL;
}

/* ---------------------------------------------------------------- storage
 * The full parameter keeps its storage object; only the data comes and goes. */

static int storage_alloc(wf_tensor *t) {
    wf_storage *st = t->storage;
    if (st->data || !st->nbytes) return 0;
    const wf_kernels *k = wf__kernels(st->device);
    if (!k) return wf_error();
    st->data = k->alloc(st->device, st->nbytes);
    if (!st->data)
        return wf_error() ? wf_error()
                          : wf__error(WF_ENOMEM, "fsdp: out of memory gathering a parameter (%zu bytes)", st->nbytes);
    return 0;
}
static void storage_release_data(wf_tensor *t) {
    wf_storage *st = t->storage;
    if (!st->data) return;
    const wf_kernels *k = wf__kernels(st->device);
    if (k) k->free(st->device, st->data, st->nbytes);
    st->data = NULL;
}

/* t as a flat 1-D alias without history (t contiguous) */
static wf_tensor *flat(wf_tensor *t) {
    wf_tensor *d = wf_detach(t);
    int64_t n = wf_numel(t);
    return d ? wf_view(d, &n, 1) : NULL;
}

/* ---------------------------------------------------------------- life */

static int grad_ready(wf_tensor *leaf, void *ud);

fsdp_unit *wf__fsdp_unit_new(fsdp_model *mod, wf_module *m, bool is_root, wf_tensor *const *params,
                             const char *const *names, int n) {
    fsdp_shared *sh = mod->sh;
    fsdp_unit *u = wf__calloc(1, sizeof *u);
    if (!u) { wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory"); return NULL; }
    u->model = mod;
    u->m = m;
    u->is_root = is_root;
    u->pre_hook = u->post_hook = -1;
    u->gathered = true;   /* the full parameters hold the (broadcast) values until the first reshard */
    u->p = wf__calloc((size_t)(n ? n : 1), sizeof *u->p);
    if (!u->p || live_add(u)) {
        if (u->p) wf__free(u->p, 0);
        else wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
        wf__free(u, sizeof *u);
        return NULL;
    }
    int rc = 0;
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        wf_tensor *t = params[i];
        p->unit = u;
        p->hook = -1;
        p->full = wf_tensor_retain(t);
        u->n = i + 1;
        size_t l = strlen(names[i]) + 1;
        if (!(p->name = wf__malloc(l))) { rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory"); break; }
        memcpy(p->name, names[i], l);
        if (!wf_is_contiguous(t) || t->offset != 0) {
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: FSDP: parameter \"%s\" is not contiguous: it cannot be sharded "
                           "in place", names[i]);
            break;
        }
        if (i == 0) u->dtype = t->dtype;
        else if (t->dtype != u->dtype) {
            rc = wf__error(WF_EINVAL, "wf_fabric_setup: FSDP: parameters \"%s\" (%s) and \"%s\" (%s) of one unit (%s) "
                           "have different dtypes: one all-gather carries a unit, in one dtype", names[0],
                           wf_dtype_name(u->dtype), names[i], wf_dtype_name(t->dtype), wf_module_type(m));
            break;
        }
        p->rows = t->ndim ? t->shape[0] : 1;
        p->row_numel = p->rows ? wf_numel(t) / p->rows : 0;
        p->chunk = (p->rows + sh->world - 1) / sh->world;
        wf__shard_rows(p->rows, sh->rank, sh->world, &p->row_start, &p->row_count);
        p->offset = u->per_rank;
        u->per_rank += p->chunk * p->row_numel;
        u->numel += wf_numel(t);
        /* the shard: f32 for half-precision parameters (FSDP's mixed precision keeps f32
         * shards, the optimizer steps in f32), else the parameter's own dtype */
        wf_dtype sdt = (t->dtype == WF_BF16 || t->dtype == WF_F16) ? WF_F32 : t->dtype;
        int64_t shape[WF_MAX_DIMS];
        int nd = t->ndim ? t->ndim : 1;
        shape[0] = p->row_count;
        for (int d = 1; d < nd; d++) shape[d] = t->shape[d];
        p->shard = wf_empty_on(shape, nd, sdt, t->device);
        if (!p->shard) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        wf__scope_unregister(p->shard);
        wf_scope_begin();
        if (wf__meta_pending(t)) {
            /* built on the meta device: this rank's rows straight from the initializer's note,
             * the full tensor never exists (its storage has no data until a gather) */
            rc = wf__meta_materialize_rows(t, p->row_start, p->row_count, p->shard, names[i]);
            if (!rc) wf__meta_forget(t);
        } else if (p->row_count) {
            wf_tensor *src = wf_narrow(flat(t), 0, p->row_start * p->row_numel, p->row_count * p->row_numel);
            wf_tensor *dst = flat(p->shard);
            rc = src && dst ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);
        }
        wf_scope_end();
        if (!rc && wf_requires_grad(t)) {
            rc = wf_set_requires_grad(p->shard, true);
            u->n_grad++;
            if (!rc) {
                p->hook = wf_register_grad_ready_hook(t, grad_ready, p);
                if (p->hook < 0) rc = p->hook;
            }
        }
    }
    wf_set_grad_enabled(prev);
    /* every parameter splits evenly: gathered in place, without the flat buffers */
    bool even = !rc && sh->world > 1 && u->n > 0;
    for (int i = 0; even && i < u->n; i++)
        even = u->p[i].rows > 0 && u->p[i].row_numel > 0 && u->p[i].chunk * sh->world == u->p[i].rows;
    if (even && !(u->pwork = wf__calloc((size_t)u->n, sizeof *u->pwork)))
        rc = wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    u->even = even && !rc;
    if (rc) {
        wf__fsdp_unit_free(u);
        return NULL;
    }
    return u;
}

void wf__fsdp_unit_free(fsdp_unit *u) {
    if (!u) return;
    live_remove(u);
    if (u->rs_work) {
        fsdp_shared *sh = u->model->sh;
        wf_work_wait(u->rs_work);
        wf_work_free(u->rs_work);
        for (int i = 0; i < sh->n_rs; i++)
            if (sh->rs_pending[i] == u) {
                for (int j = i + 1; j < sh->n_rs; j++) sh->rs_pending[j - 1] = sh->rs_pending[j];
                sh->n_rs--;
                break;
            }
    }
    wf_tensor_free(u->rs_in);
    wf_tensor_free(u->rs_out);
    if (u->work) {
        wf_work_wait(u->work);
        wf_work_free(u->work);
        u->model->sh->in_flight--;
    }
    if (u->pwork_live) {
        for (int i = 0; i < u->n; i++) {
            wf_work_wait(u->pwork[i]);
            wf_work_free(u->pwork[i]);
        }
        u->model->sh->in_flight--;
    }
    wf__free(u->pwork, 0);
    wf_tensor_free(u->send);
    wf_tensor_free(u->recv);
    for (int i = 0; i < u->n; i++) {
        fsdp_param *p = &u->p[i];
        if (p->hook >= 0) wf_remove_grad_hook(p->full, p->hook);
        wf_tensor_free(p->full);
        wf_tensor_free(p->shard);
        wf__free(p->name, 0);
    }
    wf__free(u->p, 0);
    wf__free(u, sizeof *u);
}

/* ---------------------------------------------------------------- all-gather */

static bool gather_in_flight(const fsdp_unit *u) { return u->work || u->pwork_live; }

/* Wait for every started in-place all-gather of u (also after an error: none outlives its
 * storage); the full parameters keep the versions they had (as gather_wait's copies). */
static int in_place_wait(fsdp_unit *u, int n_started) {
    int rc = 0;
    for (int i = 0; i < n_started; i++) {
        int r = wf_work_wait(u->pwork[i]);
        wf_work_free(u->pwork[i]);
        u->pwork[i] = NULL;
        if (!rc) rc = r;
        atomic_store(&u->p[i].full->storage->version, u->p[i].version);
    }
    return rc;
}

/* An even unit: each parameter's storage, its rows copied into its own slice, then gathered
 * in place. */
static int in_place_start(fsdp_unit *u) {
    fsdp_shared *sh = u->model->sh;
    int rc = 0, started = 0;
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    for (int i = 0; i < u->n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        if ((rc = storage_alloc(p->full))) break;
        p->version = atomic_load(&p->full->storage->version);
        int64_t cnt = p->row_count * p->row_numel;
        wf_tensor *fv = flat(p->full);
        wf_tensor *mine = fv ? wf_narrow(fv, 0, p->row_start * p->row_numel, cnt) : NULL;
        wf_tensor *src = flat(p->shard);
        rc = mine && src ? wf_copy_(mine, src) : (wf_error() ? wf_error() : WF_ENOMEM);   /* casts to the full dtype */
        if (!rc) rc = wf_dist_all_gather(sh->pg, fv, mine, &u->pwork[i]);
        if (!rc) started++;
        /* the copy and the gather bumped the version: autograd's saved tensors alias this
         * storage and must see the version they saved (the values are the same shards) */
        atomic_store(&p->full->storage->version, p->version);
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    if (rc) {
        in_place_wait(u, started);
        for (int i = 0; i < u->n; i++) storage_release_data(u->p[i].full);
        return rc;
    }
    u->pwork_live = true;
    if (++sh->in_flight > sh->max_in_flight) sh->max_in_flight = sh->in_flight;
    return 0;
}

int wf__fsdp_unit_gather_start(fsdp_unit *u) {
    if (u->gathered || gather_in_flight(u) || !u->n) return 0;
    if (u->even) return in_place_start(u);
    fsdp_shared *sh = u->model->sh;
    wf_device dev = u->p[0].full->device;
    int64_t all = u->per_rank * sh->world;
    int rc = 0;
    bool prev = wf_set_grad_enabled(false);
    u->send = wf_empty_on(&u->per_rank, 1, u->dtype, dev);
    u->recv = u->send ? wf_empty_on(&all, 1, u->dtype, dev) : NULL;
    if (!u->send || !u->recv) rc = wf_error() ? wf_error() : WF_ENOMEM;
    if (u->send) wf__scope_unregister(u->send);
    if (u->recv) wf__scope_unregister(u->recv);
    wf_scope_begin();
    for (int i = 0; i < u->n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        int64_t cnt = p->row_count * p->row_numel, pad = p->chunk * p->row_numel - cnt;
        /* the padding is never read back, but is sent: defined bytes */
        if (pad) rc = wf_zero_(wf_narrow(u->send, 0, p->offset + cnt, pad));
        if (rc || !cnt) continue;
        wf_tensor *dst = wf_narrow(u->send, 0, p->offset, cnt);
        wf_tensor *src = flat(p->shard);
        rc = dst && src ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);   /* casts to the full dtype */
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    if (!rc) rc = wf_dist_all_gather(sh->pg, u->recv, u->send, &u->work);
    if (rc) {
        wf_tensor_free(u->send);
        wf_tensor_free(u->recv);
        u->send = u->recv = NULL;
        u->work = NULL;
        return rc;
    }
    if (++sh->in_flight > sh->max_in_flight) sh->max_in_flight = sh->in_flight;
    return 0;
}

int wf__fsdp_unit_gather_wait(fsdp_unit *u) {
    if (u->gathered || !u->n) return 0;
    int rc = wf__fsdp_unit_gather_start(u);
    if (rc) return rc;
    fsdp_shared *sh = u->model->sh;
    if (u->even) {
        rc = in_place_wait(u, u->n);
        u->pwork_live = false;
        sh->in_flight--;
        if (rc) {
            for (int i = 0; i < u->n; i++) storage_release_data(u->p[i].full);
            return rc;
        }
        u->gathered = true;
        sh->gathers++;
        return 0;
    }
    rc = wf_work_wait(u->work);
    wf_work_free(u->work);
    u->work = NULL;
    sh->in_flight--;
    wf_tensor_free(u->send);   /* before the full parameters are allocated: a lower peak */
    u->send = NULL;
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    for (int i = 0; i < u->n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        if ((rc = storage_alloc(p->full))) break;
        /* the values written are those autograd saved (the same shards): keep the storage's
         * version, so a saved tensor aliasing it passes autograd's in-place check */
        unsigned version = atomic_load(&p->full->storage->version);
        wf_tensor *fv = flat(p->full);
        if (!fv) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        for (int r = 0; r < sh->world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(p->rows, r, sh->world, &s0, &c);
            if (!c) continue;
            wf_tensor *src = wf_narrow(u->recv, 0, r * u->per_rank + p->offset, c * p->row_numel);
            wf_tensor *dst = wf_narrow(fv, 0, s0 * p->row_numel, c * p->row_numel);
            rc = src && dst ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);
        }
        atomic_store(&p->full->storage->version, version);
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    wf_tensor_free(u->send);
    wf_tensor_free(u->recv);
    u->send = u->recv = NULL;
    if (rc) return rc;
    u->gathered = true;
    sh->gathers++;
    return 0;
}

int wf__fsdp_unit_reshard(fsdp_unit *u) {
    int rc = 0;
    if (gather_in_flight(u)) rc = wf__fsdp_unit_gather_wait(u);   /* a prefetch nobody used */
    if (!u->gathered) return rc;
    for (int i = 0; i < u->n; i++) storage_release_data(u->p[i].full);
    u->gathered = false;
    return rc;
}

/* ---------------------------------------------------------------- reduce-scatter */

static wf_tensor *p_full(fsdp_unit *u, int i) { return u->p[i].full; }

/* The oldest reduce-scatter in flight: wait, then its rows into the shards' gradients. */
static int reduce_finish_oldest(fsdp_shared *sh) {
    if (!sh->n_rs) return 0;
    fsdp_unit *u = sh->rs_pending[0];
    sh->rs_pending[0] = sh->rs_pending[1];
    sh->n_rs--;
    int rc = wf_work_wait(u->rs_work);
    wf_work_free(u->rs_work);
    u->rs_work = NULL;
    /* HYBRID_SHARD: the node's average, then the average over the nodes' replicas (equal
     * node sizes, so the average of averages is the world's); always reduce-scattered */
    if (!rc && sh->replica) rc = wf_dist_all_reduce(sh->replica, u->rs_out, WF_DIST_AVG, NULL);
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    for (int i = 0; i < u->n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        if (!wf_requires_grad(p->shard)) continue;
        /* a rank without rows still gets an (empty) gradient, so its optimizer keeps an empty
         * state for the parameter and every rank's state lists the same entries */
        int64_t cnt = p->row_count * p->row_numel;
        wf_tensor *src = wf_narrow(u->rs_out, 0, p->offset, cnt);
        src = src ? wf_to_dtype(wf_view(src, wf_shape(p->shard), wf_ndim(p->shard)), wf_tensor_dtype(p->shard)) : NULL;
        if (!src) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        /* the reduce-scatter summed: the average is taken here, in the same pass (the
         * backend's AVG would divide in a pass of its own). HYBRID_SHARD: the replicas
         * averaged the node sums, so 1/N (N the node's ranks) makes the world's average. */
        double scale = 1.0 / sh->world;
        wf_tensor *sg = wf_grad(p->shard);
        if (sg) rc = wf_add_scaled_(sg, src, scale);   /* accumulation across steps without zero_grad */
        else {
            wf_tensor *c = wf_mul_scalar(src, scale);
            rc = c ? wf_set_grad(p->shard, c) : (wf_error() ? wf_error() : WF_ENOMEM);
        }
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    wf_tensor_free(u->rs_in);
    wf_tensor_free(u->rs_out);
    u->rs_in = u->rs_out = NULL;
    if (!rc) sh->reduces++;
    return rc;
}

int wf__fsdp_reduce_flush(fsdp_shared *sh) {
    int rc = 0;
    while (sh->n_rs) {
        int r = reduce_finish_oldest(sh);
        if (!rc) rc = r;
    }
    return rc;
}

/* A reduce-scatter (sum; the rows are scaled by 1/N as they are taken): half an all-reduce's
 * bytes. On the MPI backend it is weft's own (dist/mpi_reduce_scatter.c), which at 2 CPU
 * ranks takes about half an all-reduce's time, where Open MPI's took longer than the
 * all-reduce (bench/NOTES.md, "Own all-gather and reduce-scatter"). */
int wf__fsdp_unit_reduce(fsdp_unit *u) {
    if (!u->n_grad) return 0;
    fsdp_shared *sh = u->model->sh;
    int rc = sh->n_rs == 2 ? reduce_finish_oldest(sh) : 0;
    if (rc) return rc;
    wf_device dev = u->p[0].full->device;
    wf_dtype rdt = sh->reduce_dtype;
    int64_t all = u->per_rank * sh->world;
    bool prev = wf_set_grad_enabled(false);
    /* not zeroed: every slot is written below (a gradient, or zeros for none and padding) */
    u->rs_in = wf_empty_on(&all, 1, rdt, dev);
    /* in place: the rank's rows are its slice of the buffer (no second buffer at the peak) */
    u->rs_out = u->rs_in ? wf_narrow(u->rs_in, 0, (int64_t)sh->rank * u->per_rank, u->per_rank) : NULL;
    if (!u->rs_in || !u->rs_out) rc = wf_error() ? wf_error() : WF_ENOMEM;
    if (u->rs_in) wf__scope_unregister(u->rs_in);
    if (u->rs_out) wf__scope_unregister(u->rs_out);
    wf_scope_begin();
    for (int i = 0; i < u->n && !rc; i++) {
        fsdp_param *p = &u->p[i];
        wf_tensor *g = wf_grad(p->full);
        wf_tensor *gf = g ? flat(wf_contiguous(g)) : NULL;
        if (g && !gf) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
        for (int r = 0; r < sh->world && !rc; r++) {
            int64_t s0, c;
            wf__shard_rows(p->rows, r, sh->world, &s0, &c);
            int64_t at = r * u->per_rank + p->offset;
            wf_tensor *dst = c ? wf_narrow(u->rs_in, 0, at, c * p->row_numel) : NULL;
            if (c && gf) {
                wf_tensor *src = wf_narrow(gf, 0, s0 * p->row_numel, c * p->row_numel);
                rc = src && dst ? wf_copy_(dst, src) : (wf_error() ? wf_error() : WF_ENOMEM);
            } else if (c) {   /* unused here (no gradient): zeros */
                rc = dst ? wf_zero_(dst) : (wf_error() ? wf_error() : WF_ENOMEM);
            }
            if (!rc && c < p->chunk) rc = wf_zero_(wf_narrow(u->rs_in, 0, at + c * p->row_numel, (p->chunk - c) * p->row_numel));
        }
    }
    wf_scope_end();
    wf_set_grad_enabled(prev);
    /* the full gradients are spent (copied into the buffer) */
    for (int i = 0; i < u->n && !rc; i++) if (wf_requires_grad(p_full(u, i))) wf_set_grad(p_full(u, i), NULL);
    if (!rc) rc = wf_dist_reduce_scatter(sh->pg, u->rs_out, u->rs_in, WF_DIST_SUM, &u->rs_work);
    if (rc) {
        wf_tensor_free(u->rs_in);
        wf_tensor_free(u->rs_out);
        u->rs_in = u->rs_out = NULL;
        u->rs_work = NULL;
        return rc;
    }
    sh->rs_pending[sh->n_rs++] = u;
    return 0;
}

/* A parameter's gradient is final: once the unit's are all final, reduce-scatter them and
 * free the full parameters (the unit's backward is over). Only in a synced backward. */
static int grad_ready(wf_tensor *leaf, void *ud) {
    (void)leaf;
    fsdp_param *p = ud;
    fsdp_unit *u = p->unit;
    if (!u->model->armed || p->ready || u->reduced) return 0;
    p->ready = true;
    if (++u->n_ready < u->n_grad) return 0;
    int rc = wf__fsdp_unit_reduce(u);
    u->reduced = true;
    if (!rc) rc = wf__fsdp_unit_reshard(u);
    return rc;
}

/* ---------------------------------------------------------------- prefetch and backward */

fsdp_unit *wf__fsdp_next_unit(fsdp_unit *u, bool backward) {
    fsdp_model *m = u->model;
    for (int i = 0; i < m->n_order; i++) {
        if (m->order[i] != u->index) continue;
        int j = backward ? i - 1 : i + 1;
        return j >= 0 && j < m->n_order ? m->units[m->order[j]] : NULL;
    }
    return NULL;
}

/* The gradient of the unit's output arrives before any of the unit's own backward nodes
 * run (they need it): the moment to gather the parameters their saved tensors alias. The
 * output's gradient is the one signal that comes early enough; a parameter's gradient
 * arrives only after the node that needed the full weight already ran. */
static int pre_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    fsdp_unit *u = live_find((uint64_t)n->i[0]);
    int rc = 0;
    if (u && !u->gathered) {
        rc = wf__fsdp_unit_gather_start(u);
        fsdp_unit *next = rc ? NULL : wf__fsdp_next_unit(u, true);
        if (next && !next->gathered && !gather_in_flight(next) && !next->reduced && u->model->sh->in_flight < 2)
            rc = wf__fsdp_unit_gather_start(next);
        if (!rc) rc = wf__fsdp_unit_gather_wait(u);
    }
    gx[0] = gy[0];
    return rc;
}

int wf__fsdp_unit_hook_output(fsdp_unit *u, wf_tensor **output) {
    if (!*output || !wf_is_grad_enabled() || !wf_requires_grad(*output)) return 0;
    wf_tensor *y = wf_detach(*output);
    if (!y) return wf_error() ? wf_error() : WF_ENOMEM;
    wf_node *n = wf__record("FSDPPreBackward", pre_backward, y, 1, output);
    if (!n) return wf_error() ? wf_error() : wf__error(WF_EAUTOGRAD, "fsdp: could not hook the output of %s",
                                                        wf_module_type(u->m));
    n->i[0] = (int64_t)u->id;
    *output = y;
    return 0;
}

/* ---------------------------------------------------------------- forward hooks */

/* Before the unit's forward: its all-gather (prefetched, or started now), the next unit's
 * started before waiting on this one (the order of the previous forward; at most two in
 * flight), then wait. The root's forward starts a new recorded order. */
static int pre_forward(wf_module *m, wf_tensor **input, void *ud) {
    (void)m; (void)input;
    fsdp_unit *u = live_find((uint64_t)(uintptr_t)ud);
    if (!u) return 0;
    fsdp_model *mod = u->model;
    /* a forward inside the backward is activation checkpointing's recompute: the unit is
     * gathered for its backward, and the unit the backward reaches next is prefetched (the
     * recorded forward order stays as it was) */
    if (mod->finalizer_queued) {
        if (u->gathered) return 0;
        int rc = wf__fsdp_unit_gather_start(u);
        fsdp_unit *next = rc ? NULL : wf__fsdp_next_unit(u, true);
        if (next && !next->gathered && !gather_in_flight(next) && !next->reduced && mod->sh->in_flight < 2)
            rc = wf__fsdp_unit_gather_start(next);
        return rc ? rc : wf__fsdp_unit_gather_wait(u);
    }
    if (u->is_root) mod->n_cur = 0;
    bool seen = false;
    for (int i = 0; i < mod->n_cur && !seen; i++) seen = mod->cur[i] == u->index;
    if (!seen && mod->n_cur < mod->n_units) mod->cur[mod->n_cur++] = u->index;
    if (u->gathered) return 0;
    int rc = wf__fsdp_unit_gather_start(u);
    fsdp_unit *next = rc ? NULL : wf__fsdp_next_unit(u, false);
    if (next && !next->gathered && !gather_in_flight(next) && mod->sh->in_flight < 2) rc = wf__fsdp_unit_gather_start(next);
    if (!rc) rc = wf__fsdp_unit_gather_wait(u);
    return rc;
}

/* After it: under FULL_SHARD a non-root unit frees its full parameters (the root keeps them:
 * its backward comes first), with its output hooked so its backward gathers them again. */
static int post_forward(wf_module *m, wf_tensor *input, wf_tensor **output, void *ud) {
    (void)m; (void)input;
    fsdp_unit *u = live_find((uint64_t)(uintptr_t)ud);
    if (!u) return 0;
    fsdp_model *mod = u->model;
    /* the recompute's parameters serve the backward that follows it: they stay gathered until
     * the unit's gradients are reduced (grad_ready reshards then) */
    if (mod->finalizer_queued) return 0;
    if (u->is_root) {
        memcpy(mod->order, mod->cur, (size_t)mod->n_cur * sizeof *mod->order);
        mod->n_order = mod->n_cur;
    }
    if (mod->sh->sharding != FSDP_FULL_SHARD && mod->sh->sharding != FSDP_HYBRID_SHARD) return 0;
    if (u->is_root) return 0;
    /* the unit that ran last in the previous forward, running at that place again, keeps its
     * parameters: its backward comes first, so freeing them would only gather them again at
     * once (torchtitan leaves the last block unresharded too). Should more units follow this
     * time, it stays gathered until its gradients are reduced: more memory, same values. */
    if (mod->n_order && mod->order[mod->n_order - 1] == u->index && mod->n_cur == mod->n_order) return 0;
    int rc = wf__fsdp_unit_hook_output(u, output);
    if (!rc) rc = wf__fsdp_unit_reshard(u);
    return rc;
}

int wf__fsdp_unit_hook_module(fsdp_unit *u) {
    void *ud = (void *)(uintptr_t)u->id;
    u->pre_hook = wf_module_register_forward_pre_hook(u->m, pre_forward, ud);
    if (u->pre_hook < 0) return u->pre_hook;
    u->post_hook = wf_module_register_forward_hook(u->m, post_forward, ud);
    return u->post_hook < 0 ? u->post_hook : 0;
}
