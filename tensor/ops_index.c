/* tensor/ops_index.c: gather, scatter_add, index_select, embedding, cat, stack.
 *
 * PyTorch semantics. Index tensors are int64 or int32; their values are checked here on the
 * host (CUDA indices are copied to the host for the check) so kernels never see a bad index.
 * Negative index values are refused, as torch.gather / index_select / embedding do.
 * These are the raw ops (tensor/ops_raw.h), forward and backward; the public functions
 * (and split and chunk, views made by wf_narrow) record their nodes in autograd/fn_index.c. */
#include "ops_raw.h"

#include <limits.h>

/* ---------------------------------------------------------------- helpers */

static bool is_meta(const wf_tensor *t) { return t->device.type == WF_DEV_META; }

static int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

static int check_index_dtype(const char *op, const wf_tensor *index) {
    if (index->dtype != WF_I64 && index->dtype != WF_I32)
        return wf__error(WF_EDTYPE, "%s: index must be int64 or int32, got %s", op, wf_dtype_name(index->dtype));
    return 0;
}

static int index_range_error(const char *op, int64_t v, int dim, int64_t size) {
    return wf__error(WF_EINDEX, "%s: index %lld is out of range for dimension %d with size %lld "
                     "(valid: 0..%lld)", op, (long long)v, dim, (long long)size, (long long)size - 1);
}

/* Every value of index in [0, size). CPU tensors are read in place when contiguous (strided
 * ones through wf_to_array). CUDA's index kernels check every index themselves: a bad one is
 * skipped and raises the device's index flag, reported as WF_EINDEX at the next synchronize
 * or copy to the host (as PyTorch's device-side assert). Reading the indices here would be a
 * host round trip per embedding lookup: a sync every step, and a step that cannot be
 * captured into a CUDA graph. */
static int check_index_values(const char *op, wf_tensor *index, int64_t size, int dim) {
    int64_t n = wf_numel(index);
    if (n == 0 || is_meta(index) || index->device.type == WF_DEV_CUDA) return 0;
    if (index->device.type == WF_DEV_CPU && wf_is_contiguous(index)) {
        const char *p = wf__host_ptr(index);
        if (index->dtype == WF_I64) {
            const int64_t *q = (const int64_t *)p;
            for (int64_t i = 0; i < n; i++)
                if (q[i] < 0 || q[i] >= size) return index_range_error(op, q[i], dim, size);
        } else {
            const int32_t *q = (const int32_t *)p;
            for (int64_t i = 0; i < n; i++)
                if (q[i] < 0 || q[i] >= size) return index_range_error(op, q[i], dim, size);
        }
        return 0;
    }
    size_t nbytes = (size_t)n * sizeof(int64_t);
    int64_t *buf = wf__malloc(nbytes);
    if (!buf) return wf__error(WF_ENOMEM, "%s: out of memory checking %lld indices", op, (long long)n);
    int rc = wf_to_array(index, buf, WF_I64);
    for (int64_t i = 0; !rc && i < n; i++)
        if (buf[i] < 0 || buf[i] >= size) rc = index_range_error(op, buf[i], dim, size);
    wf__free(buf, nbytes);
    return rc;
}

static int check_devices(const char *op, wf_tensor *a, wf_tensor *b, wf_tensor *c) {
    wf_tensor *ts[3] = { a, b, c };
    return wf__same_device(op, ts, c ? 3 : 2);
}

/* ---------------------------------------------------------------- gather / scatter_add */

wf_tensor *wf__gather_raw(wf_tensor *x, int dim, wf_tensor *index) {
    const char *op = "wf_gather";
    if (wf__any_null(op, 2, x, index)) return NULL;
    if (check_index_dtype(op, index) || check_devices(op, x, index, NULL)) return NULL;
    int d = wf__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    char bx[96], bi[96];
    if (index->ndim != x->ndim) {
        wf__error(WF_ESHAPE, "%s: index %s has %d dimensions but x %s has %d (they must match)", op,
                  wf_shape_str(index, bi, sizeof bi), index->ndim, wf_shape_str(x, bx, sizeof bx), x->ndim);
        return NULL;
    }
    for (int k = 0; k < x->ndim; k++)
        if (k != d && index->shape[k] > x->shape[k]) {
            wf__error(WF_ESHAPE, "%s: index %s is larger than x %s in dimension %d (%lld > %lld)", op,
                      wf_shape_str(index, bi, sizeof bi), wf_shape_str(x, bx, sizeof bx), k,
                      (long long)index->shape[k], (long long)x->shape[k]);
            return NULL;
        }
    if (check_index_values(op, index, x->ndim ? x->shape[d] : 1, d)) return NULL;
    wf_tensor *y = wf__empty(index->shape, index->ndim, x->dtype, x->device);
    if (!y) return NULL;
    const wf_kernels *K = wf__kernels(y->device);
    if (!is_meta(y) && wf_numel(y) && (wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_GATHER, x->dtype, y->device) ||
                                       K->gather(y, x, d, index))) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf__scatter_add_raw(wf_tensor *x, int dim, wf_tensor *index, wf_tensor *src) {
    const char *op = "wf_scatter_add";
    if (wf__any_null(op, 3, x, index, src)) return NULL;
    if (check_index_dtype(op, index) || check_devices(op, x, index, src)) return NULL;
    if (src->dtype != x->dtype) {
        wf__error(WF_EDTYPE, "%s: src dtype %s differs from x dtype %s", op, wf_dtype_name(src->dtype),
                  wf_dtype_name(x->dtype));
        return NULL;
    }
    int d = wf__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    char bx[96], bi[96], bs[96];
    if (index->ndim != x->ndim || src->ndim != x->ndim) {
        wf__error(WF_ESHAPE, "%s: x %s, index %s and src %s must have the same number of dimensions", op,
                  wf_shape_str(x, bx, sizeof bx), wf_shape_str(index, bi, sizeof bi), wf_shape_str(src, bs, sizeof bs));
        return NULL;
    }
    for (int k = 0; k < x->ndim; k++) {
        if (index->shape[k] > src->shape[k] || (k != d && index->shape[k] > x->shape[k])) {
            wf__error(WF_ESHAPE, "%s: index %s does not fit src %s and x %s in dimension %d "
                      "(index must be no larger than src in every dimension and than x except in dim %d)",
                      op, wf_shape_str(index, bi, sizeof bi), wf_shape_str(src, bs, sizeof bs),
                      wf_shape_str(x, bx, sizeof bx), k, d);
            return NULL;
        }
    }
    if (check_index_values(op, index, x->ndim ? x->shape[d] : 1, d)) return NULL;
    wf_tensor *y = wf__empty(x->shape, x->ndim, x->dtype, x->device);
    if (!y) return NULL;
    if (!is_meta(y) && wf_numel(y)) {
        const wf_kernels *k = wf__kernels(y->device);
        if (wf__need_kernel(k, op, WF_OPF_KERNEL, WF_K_SCATTER_ADD, y->dtype, y->device) || k->copy(y, x) ||
            (wf_numel(index) && k->scatter_add(y, d, index, src))) {
            wf_tensor_free(y);
            return NULL;
        }
    }
    return y;
}

/* ---------------------------------------------------------------- index_select / embedding */

wf_tensor *wf__index_select_raw(wf_tensor *x, int dim, wf_tensor *index) {
    const char *op = "wf_index_select";
    if (wf__any_null(op, 2, x, index)) return NULL;
    if (check_index_dtype(op, index) || check_devices(op, x, index, NULL)) return NULL;
    char b[96];
    if (index->ndim > 1) {
        wf__error(WF_ESHAPE, "%s: index must be 1-D, got shape %s", op, wf_shape_str(index, b, sizeof b));
        return NULL;
    }
    if (x->ndim == 0) {
        wf__error(WF_EINDEX, "%s: cannot select from a 0-d tensor (no dimension %d)", op, dim);
        return NULL;
    }
    int d = wf__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    if (check_index_values(op, index, x->shape[d], d)) return NULL;
    int64_t shape[WF_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    shape[d] = wf_numel(index);
    wf_tensor *y = wf__empty(shape, x->ndim, x->dtype, x->device);
    if (!y) return NULL;
    const wf_kernels *K = wf__kernels(y->device);
    if (!is_meta(y) && wf_numel(y) &&
        (wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_INDEX_SELECT, x->dtype, y->device) ||
         K->index_select(y, x, d, index))) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf__embedding_raw(wf_tensor *weight, wf_tensor *indices, wf_tensor **flat_out) {
    const char *op = "wf_embedding";
    if (wf__any_null(op, 2, weight, indices)) return NULL;
    if (check_index_dtype(op, indices) || check_devices(op, weight, indices, NULL)) return NULL;
    char b[96];
    if (weight->ndim != 2) {
        wf__error(WF_ESHAPE, "%s: weight must be 2-D [num_embeddings, embedding_dim], got shape %s", op,
                  wf_shape_str(weight, b, sizeof b));
        return NULL;
    }
    if (indices->ndim + 1 > WF_MAX_DIMS) {
        wf__error(WF_ESHAPE, "%s: indices %s have too many dimensions (the result would have %d, at most %d)",
                  op, wf_shape_str(indices, b, sizeof b), indices->ndim + 1, WF_MAX_DIMS);
        return NULL;
    }
    int64_t V = weight->shape[0], D = weight->shape[1], N = wf_numel(indices);
    if (check_index_values(op, indices, V, 0)) return NULL;
    int64_t shape[WF_MAX_DIMS];
    for (int k = 0; k < indices->ndim; k++) shape[k] = indices->shape[k];
    shape[indices->ndim] = D;
    wf_tensor *y = wf__empty(shape, indices->ndim + 1, weight->dtype, weight->device);
    if (!y) return NULL;
    int rc = 0;
    wf_scope_begin();
    /* indices as a contiguous 1-D [N], y as [N, D] */
    wf_tensor *flat = NULL;
    wf_tensor *src = indices;
    if (!wf_is_contiguous(indices)) {
        src = wf__empty(indices->shape, indices->ndim, indices->dtype, indices->device);
        if (!src) rc = err_or(WF_ENOMEM);
        else if (!is_meta(src)) rc = wf__kernels(src->device)->copy(src, indices);
    }
    if (!rc) {
        flat = wf__view_of(src, 1, &N, (const int64_t[]){ 1 }, src->offset);
        if (!flat) rc = err_or(WF_ENOMEM);
    }
    if (!rc && !is_meta(y) && N > 0 && D > 0) {
        wf_tensor *y2 = wf__view_of(y, 2, (const int64_t[]){ N, D }, (const int64_t[]){ D, 1 }, y->offset);
        const wf_kernels *K = wf__kernels(y->device);
        rc = wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_INDEX_SELECT, weight->dtype, y->device);
        if (!rc) rc = y2 ? K->index_select(y2, weight, 0, flat) : err_or(WF_ENOMEM);
    }
    if (!rc) {
        wf__scope_unregister(flat);   /* outlives the scope: the caller's reference */
    }
    wf_scope_end();
    if (rc) {
        wf_tensor_free(y);
        return NULL;
    }
    *flat_out = flat;
    return y;
}

/* ---------------------------------------------------------------- cat / stack */

/* Common checks of a tensor list: non-empty, no NULL, one device. Sets the promoted dtype. */
static int check_list(const char *op, wf_tensor *const *ts, int n, wf_dtype *dt) {
    if (n <= 0) return wf__error(WF_EINVAL, "%s: expected a non-empty list of tensors, got %d", op, n);
    if (!ts) return wf__error(WF_ENULL, "%s: NULL tensor list", op);
    for (int i = 0; i < n; i++)
        if (!ts[i]) return wf_error() ? wf_error() : wf__error(WF_ENULL, "%s: tensor %d is NULL", op, i);
    if (wf__same_device(op, ts, n)) return wf_error();
    wf_dtype p = ts[0]->dtype;
    for (int i = 1; i < n; i++) p = wf__promote(p, ts[i]->dtype);
    *dt = p;
    return 0;
}

wf_tensor *wf__cat_raw(wf_tensor *const *ts, int n, int dim) {
    const char *op = "wf_cat";
    wf_dtype dt;
    if (check_list(op, ts, n, &dt)) return NULL;
    int nd = ts[0]->ndim;
    if (nd == 0) {
        wf__error(WF_ESHAPE, "%s: zero-dimensional tensor (at position 0) cannot be concatenated", op);
        return NULL;
    }
    int d = wf__dim(op, dim, nd);
    if (d < 0) return NULL;
    int64_t shape[WF_MAX_DIMS];
    for (int k = 0; k < nd; k++) shape[k] = ts[0]->shape[k];
    for (int i = 1; i < n; i++) {
        char b0[96], bi[96];
        if (ts[i]->ndim != nd) {
            wf__error(WF_ESHAPE, "%s: tensor %d %s has %d dimensions but tensor 0 %s has %d", op, i,
                      wf_shape_str(ts[i], bi, sizeof bi), ts[i]->ndim, wf_shape_str(ts[0], b0, sizeof b0), nd);
            return NULL;
        }
        for (int k = 0; k < nd; k++)
            if (k != d && ts[i]->shape[k] != ts[0]->shape[k]) {
                wf__error(WF_ESHAPE, "%s: sizes must match except in dimension %d, but tensor %d %s and "
                          "tensor 0 %s differ in dimension %d (%lld vs %lld)", op, d, i,
                          wf_shape_str(ts[i], bi, sizeof bi), wf_shape_str(ts[0], b0, sizeof b0), k,
                          (long long)ts[i]->shape[k], (long long)ts[0]->shape[k]);
                return NULL;
            }
        shape[d] += ts[i]->shape[d];
    }
    wf_tensor *y = wf__empty(shape, nd, dt, ts[0]->device);
    if (!y) return NULL;
    int rc = 0;
    if (!is_meta(y) && wf_numel(y)) {
        const wf_kernels *k = wf__kernels(y->device);
        wf_scope_begin();
        int64_t off = 0;
        for (int i = 0; i < n && !rc; i++) {
            if (wf_numel(ts[i])) {
                wf_tensor *v = wf__view_of(y, nd, ts[i]->shape, y->stride, y->offset + off * y->stride[d]);
                rc = v ? k->copy(v, ts[i]) : err_or(WF_ENOMEM);
            }
            off += ts[i]->shape[d];
        }
        wf_scope_end();
    }
    if (rc) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf__stack_raw(wf_tensor *const *ts, int n, int dim) {
    const char *op = "wf_stack";
    wf_dtype dt;
    if (check_list(op, ts, n, &dt)) return NULL;
    int nd = ts[0]->ndim;
    for (int i = 1; i < n; i++)
        if (!wf_same_shape(ts[i], ts[0])) {
            char b0[96], bi[96];
            wf__error(WF_ESHAPE, "%s: all tensors must have the same shape, but tensor %d is %s and tensor 0 is %s",
                      op, i, wf_shape_str(ts[i], bi, sizeof bi), wf_shape_str(ts[0], b0, sizeof b0));
            return NULL;
        }
    if (nd + 1 > WF_MAX_DIMS) {
        wf__error(WF_ESHAPE, "%s: the result would have %d dimensions (at most %d)", op, nd + 1, WF_MAX_DIMS);
        return NULL;
    }
    int d = wf__dim(op, dim, nd + 1);
    if (d < 0) return NULL;
    int64_t shape[WF_MAX_DIMS];
    for (int k = 0, j = 0; k < nd + 1; k++) shape[k] = k == d ? n : ts[0]->shape[j++];
    wf_tensor *y = wf__empty(shape, nd + 1, dt, ts[0]->device);
    if (!y) return NULL;
    int rc = 0;
    if (!is_meta(y) && wf_numel(y)) {
        const wf_kernels *k = wf__kernels(y->device);
        int64_t st[WF_MAX_DIMS];
        for (int q = 0, j = 0; q < nd + 1; q++)
            if (q != d) st[j++] = y->stride[q];
        wf_scope_begin();
        for (int i = 0; i < n && !rc; i++) {
            wf_tensor *v = wf__view_of(y, nd, ts[i]->shape, st, y->offset + i * y->stride[d]);
            rc = v ? k->copy(v, ts[i]) : err_or(WF_ENOMEM);
        }
        wf_scope_end();
    }
    if (rc) {
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

/* ---------------------------------------------------------------- backward
 * gx of an input of shape shape[ndim], dtype dt, on dev: fresh contiguous tensors (never
 * views of gy), NULL with an error recorded on failure. */

/* t as a tensor of dtype dt (t itself if it already is). */
static wf_tensor *as_dtype(wf_tensor *t, wf_dtype dt) {
    if (t->dtype == dt) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, dt, t->device);
    if (c && !is_meta(c) && wf_numel(c) && wf__kernels(c->device)->copy(c, t)) return NULL;
    return c;
}

static wf_tensor *nomem(void) {
    if (!wf_error()) wf__error(WF_ENOMEM, "out of memory in a backward of an indexing op");
    return NULL;
}

wf_tensor *wf__gather_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                   wf_dtype dt, wf_device dev) {
    wf_tensor *g = wf_zeros_on(shape, ndim, dt, dev);
    wf_tensor *src = g ? as_dtype(gy, g->dtype) : NULL;
    if (!src) return nomem();
    if (!is_meta(g) && wf_numel(index)) {
        const wf_kernels *k = wf__kernels(g->device);
        int rc = wf__need_kernel(k, "wf_gather (backward)", WF_OPF_KERNEL, WF_K_SCATTER_ADD, g->dtype, g->device);
        if (!rc) rc = k->scatter_add(g, dim, index, src);
        if (rc) return NULL;
    }
    return g;
}

wf_tensor *wf__scatter_add_src_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                            wf_dtype dt, wf_device dev) {
    wf_tensor *g = wf__empty(index->shape, index->ndim, dt, dev);
    wf_tensor *src = g ? as_dtype(gy, dt) : NULL;
    if (!src) return nomem();
    const wf_kernels *k = wf__kernels(g->device);
    if (!is_meta(g) && wf_numel(g) && k->gather(g, src, dim, index)) {
        if (!wf_error()) wf__error(WF_EDEVICEFAIL, "wf_scatter_add (backward): the gather kernel failed");
        return NULL;
    }
    bool same = g->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = g->shape[i] == shape[i];
    if (!same) {   /* src larger than index: zero outside index's extent */
        wf_tensor *full = wf_zeros_on(shape, ndim, dt, dev);
        if (!full) return nomem();
        if (!is_meta(full) && wf_numel(g)) {
            wf_tensor *v = wf__view_of(full, g->ndim, g->shape, full->stride, full->offset);
            int rc = v ? k->copy(v, g) : err_or(WF_ENOMEM);
            wf_tensor_free(v);
            if (rc) return v ? NULL : nomem();
        }
        g = full;
    }
    return g;
}

wf_tensor *wf__index_select_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                         wf_dtype dt, wf_device dev) {
    wf_tensor *g = wf_zeros_on(shape, ndim, dt, dev);
    wf_tensor *src = g ? as_dtype(gy, g->dtype) : NULL;
    if (!src) return nomem();
    if (!is_meta(g) && wf_numel(src)) {
        const wf_kernels *k = wf__kernels(g->device);
        int rc = wf__need_kernel(k, "wf_index_select (backward)", WF_OPF_KERNEL, WF_K_INDEX_ADD, g->dtype, g->device);
        if (!rc) rc = k->index_add(g, dim, index, src);
        if (rc) return NULL;
    }
    return g;
}

wf_tensor *wf__embedding_backward_raw(wf_tensor *gy, wf_tensor *index, const int64_t *shape, wf_dtype dt, wf_device dev) {
    wf_tensor *g = wf_zeros_on(shape, 2, dt, dev);
    if (!g) return nomem();
    return wf__embedding_backward_into_raw(g, gy, index) ? NULL : g;
}

int wf__embedding_backward_into_raw(wf_tensor *g, wf_tensor *gy, wf_tensor *index) {
    wf_dtype dt = g->dtype;
    int64_t N = wf_numel(index), D = g->shape[1];
    if (!is_meta(g) && N > 0 && D > 0) {
        const wf_kernels *k = wf__kernels(g->device);
        /* gy [*indices.shape, D] as a contiguous [N, D] of the weight's dtype */
        wf_tensor *src = gy;
        if (!wf_is_contiguous(src) || src->dtype != dt) {
            src = wf__empty(gy->shape, gy->ndim, dt, gy->device);
            if (!src) { nomem(); return WF_ENOMEM; }
            if (k->copy(src, gy)) {
                if (!wf_error()) wf__error(WF_EDEVICEFAIL, "wf_embedding (backward): the copy kernel failed");
                return err_or(WF_EDEVICEFAIL);
            }
        }
        wf_tensor *g2 = wf__view_of(src, 2, (const int64_t[]){ N, D }, (const int64_t[]){ D, 1 }, src->offset);
        if (!g2) { nomem(); return WF_ENOMEM; }
        int rc = wf__need_kernel(k, "wf_embedding (backward)", WF_OPF_KERNEL, WF_K_INDEX_ADD, g->dtype, g->device);
        if (!rc) rc = k->index_add(g, 0, index, g2);
        wf_tensor_free(g2);
        if (rc) return err_or(WF_EDEVICEFAIL);
    }
    return 0;
}

wf_tensor *wf__copy_view_raw(wf_tensor *g, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset,
                             wf_dtype dt, wf_device dev) {
    wf_tensor *out = wf__empty(shape, ndim, dt, dev);
    if (!out) return nomem();
    if (is_meta(out) || wf_numel(out) == 0) return out;
    wf_tensor *v = wf__view_of(g, ndim, shape, stride, offset);
    if (!v) return nomem();
    int rc = wf__kernels(out->device)->copy(out, v);
    wf_tensor_free(v);
    return rc ? NULL : out;
}
