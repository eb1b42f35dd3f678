/* autograd/backward_index.c: backward of the indexing and
 * joining ops (gather, scatter_add, index_select, embedding, cat, stack).
 *
 * These run with grad mode off inside the engine's scope, so every tensor made here is a
 * temporary of that scope. They call the device kernels directly; gradients handed back
 * are fresh contiguous tensors of the input's shape and dtype (never views of gy). */
#include "backward_index.h"

static int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }
static bool is_meta(const wf_tensor *t) { return t->device.type == WF_DEV_META; }

/* t as a tensor of dtype dt (t itself if it already is). */
static wf_tensor *as_dtype(wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && !is_meta(c) && wf_numel(c) && wf__kernels(c->device)->copy(c, t)) return NULL;
    return c;
}

/* Zeros with the shape, dtype and device of an input. */
static wf_tensor *zeros_meta(const wf_meta *m) {
    return wf_zeros_on(m->shape, m->ndim, m->dtype, m->device);
}

/* A contiguous copy (with m's dtype) of the view of g given by shape/stride/offset. */
static wf_tensor *copy_of_view(wf_tensor *g, int ndim, const int64_t *shape, const int64_t *stride,
                               int64_t offset, const wf_meta *m) {
    wf_tensor *out = wf__empty(shape, ndim, m->dtype, m->device);
    if (!out) return NULL;
    if (is_meta(out) || wf_numel(out) == 0) return out;
    wf_tensor *v = wf__view_of(g, ndim, shape, stride, offset);
    if (!v) return NULL;
    int rc = wf__kernels(out->device)->copy(out, v);
    wf_tensor_free(v);
    return rc ? NULL : out;
}

/* ---------------------------------------------------------------- gather / scatter_add */

int wf__gather_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    wf_tensor *g = zeros_meta(&n->in_meta[0]);
    wf_tensor *src = g ? as_dtype(gy[0], g->dtype) : NULL;
    if (!src) return err_or(WF_ENOMEM);
    if (!is_meta(g) && wf_numel(index)) {
        const wf_kernels *k = wf__kernels(g->device);
        int rc = wf__need_kernel(k, "wf_gather (backward)", WF_OPF_KERNEL, WF_K_SCATTER_ADD, g->dtype, g->device);
        if (!rc) rc = k->scatter_add(g, (int)n->i[0], index, src);
        if (rc) return rc;
    }
    gx[0] = g;
    return 0;
}

int wf__scatter_add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    int d = (int)n->i[0];
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(gy[0], &n->in_meta[0]);
        if (!gx[0]) return err_or(WF_ENOMEM);
    }
    if (n->needs[1]) {
        const wf_meta *m = &n->in_meta[1];
        wf_tensor *g = wf__empty(index->shape, index->ndim, m->dtype, m->device);
        wf_tensor *src = g ? as_dtype(gy[0], m->dtype) : NULL;
        if (!src) return err_or(WF_ENOMEM);
        const wf_kernels *k = wf__kernels(g->device);
        if (!is_meta(g) && wf_numel(g) && k->gather(g, src, d, index)) return err_or(WF_EDEVICEFAIL);
        bool same = g->ndim == m->ndim;
        for (int i = 0; same && i < m->ndim; i++) same = g->shape[i] == m->shape[i];
        if (!same) {   /* src larger than index: zero outside index's extent */
            wf_tensor *full = zeros_meta(m);
            if (!full) return err_or(WF_ENOMEM);
            if (!is_meta(full) && wf_numel(g)) {
                wf_tensor *v = wf__view_of(full, g->ndim, g->shape, full->stride, full->offset);
                int rc = v ? k->copy(v, g) : err_or(WF_ENOMEM);
                wf_tensor_free(v);
                if (rc) return rc;
            }
            g = full;
        }
        gx[1] = g;
    }
    return 0;
}

/* ---------------------------------------------------------------- index_select / embedding */

int wf__index_select_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    wf_tensor *g = zeros_meta(&n->in_meta[0]);
    wf_tensor *src = g ? as_dtype(gy[0], g->dtype) : NULL;
    if (!src) return err_or(WF_ENOMEM);
    if (!is_meta(g) && wf_numel(src)) {
        const wf_kernels *k = wf__kernels(g->device);
        int rc = wf__need_kernel(k, "wf_index_select (backward)", WF_OPF_KERNEL, WF_K_INDEX_ADD, g->dtype, g->device);
        if (!rc) rc = k->index_add(g, (int)n->i[0], index, src);
        if (rc) return rc;
    }
    gx[0] = g;
    return 0;
}

int wf__embedding_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *g = zeros_meta(m);
    if (!g) return err_or(WF_ENOMEM);
    int64_t N = wf_numel(index), D = m->shape[1];
    if (!is_meta(g) && N > 0 && D > 0) {
        const wf_kernels *k = wf__kernels(g->device);
        /* gy [*indices.shape, D] as a contiguous [N, D] of the weight's dtype */
        wf_tensor *src = gy[0];
        if (!wf_is_contiguous(src) || src->dtype != m->dtype) {
            src = wf__empty(gy[0]->shape, gy[0]->ndim, m->dtype, gy[0]->device);
            if (!src) return err_or(WF_ENOMEM);
            if (k->copy(src, gy[0])) return err_or(WF_EDEVICEFAIL);
        }
        wf_tensor *g2 = wf__view_of(src, 2, (const int64_t[]){ N, D }, (const int64_t[]){ D, 1 }, src->offset);
        if (!g2) return err_or(WF_ENOMEM);
        int rc = wf__need_kernel(k, "wf_embedding (backward)", WF_OPF_KERNEL, WF_K_INDEX_ADD, g->dtype, g->device);
        if (!rc) rc = k->index_add(g, 0, index, g2);
        wf_tensor_free(g2);
        if (rc) return rc;
    }
    gx[0] = g;
    return 0;
}

/* ---------------------------------------------------------------- cat / stack */

int wf__cat_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *g = gy[0];
    int d = (int)n->i[0];
    int64_t off = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        const wf_meta *m = &n->in_meta[i];
        int64_t size = m->shape[d];
        if (n->needs[i]) {
            int64_t shape[WF_MAX_DIMS];
            for (int k = 0; k < g->ndim; k++) shape[k] = g->shape[k];
            shape[d] = size;
            gx[i] = copy_of_view(g, g->ndim, shape, g->stride, g->offset + off * g->stride[d], m);
            if (!gx[i]) return err_or(WF_ENOMEM);
        }
        off += size;
    }
    return 0;
}

int wf__stack_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *g = gy[0];
    int d = (int)n->i[0];
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    for (int k = 0, j = 0; k < g->ndim; k++)
        if (k != d) { shape[j] = g->shape[k]; stride[j] = g->stride[k]; j++; }
    for (int i = 0; i < n->n_inputs; i++) {
        if (!n->needs[i]) continue;
        gx[i] = copy_of_view(g, g->ndim - 1, shape, stride, g->offset + i * g->stride[d], &n->in_meta[i]);
        if (!gx[i]) return err_or(WF_ENOMEM);
    }
    return 0;
}
