/* autograd/fn_view.c: the public views (wf_view, wf_reshape, wf_flatten, wf_permute,
 * wf_transpose, wf_t, wf_narrow, wf_slice, wf_select, wf_expand, wf_squeeze, wf_unsqueeze,
 * wf_detach) and their backward. The geometry is tensor/ops_view.c's raw views. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

/* ---------------------------------------------------------------- backward */

/* y = x.view(shape): gx = gy.reshape(x.shape) */
static int view_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    gx[0] = wf_reshape(gy[0], n->in_meta[0].shape, n->in_meta[0].ndim);
    return gx[0] ? 0 : wf_error();
}

/* y = x.permute(p): gx = gy.permute(inverse p) */
static int permute_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    int nd = n->in_meta[0].ndim, inv[WF_MAX_DIMS];
    for (int i = 0; i < nd; i++) inv[n->i[i]] = i;
    gx[0] = wf_permute(gy[0], inv, nd);
    return gx[0] ? 0 : wf_error();
}

/* y = x.expand(shape): gx = sum of gy over the expanded dims */
static int expand_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    gx[0] = wf__reduce_to(gy[0], &n->in_meta[0]);
    return gx[0] ? 0 : wf_error();
}

/* y = x[..., start : start+count*step : step, ...] (drop: select, the dim is removed):
 * gx = zeros like x with gy written into that slice */
static int slice_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *z = wf_zeros_on(m->shape, m->ndim, m->dtype, m->device);
    if (!z) return wf_error();
    int d = (int)n->i[0];
    int64_t start = n->i[1], count = n->i[2], step = n->i[3];
    wf_tensor *v = n->i[4] ? wf_select(z, d, start) : wf_slice(z, d, start, start + count * step, step);
    if (!v || wf_copy_(v, gy[0])) return wf_error();
    gx[0] = z;
    return 0;
}

/* ---------------------------------------------------------------- forward */

static wf_tensor *record_reshape(wf_tensor *y, wf_tensor *x) {
    if (!y) return NULL;
    return wf__recorded(y, wf__record("ViewBackward", view_backward, y, 1, &x), true, 1, &x);
}

wf_tensor *wf_view(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_view", 1, t), NULL;
    int64_t s[WF_MAX_DIMS], st[WF_MAX_DIMS];
    int ok = wf__reshape_geometry("wf_view", t, shape, nd, s, st);
    if (ok < 0) return NULL;
    if (!ok) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_view: the strides of the input (shape %s) do not allow this view; "
                  "use wf_reshape (which copies)", wf_shape_str(t, b, sizeof b));
        return NULL;
    }
    return record_reshape(wf__view_of(t, nd, s, st, t->offset), t);
}

wf_tensor *wf_reshape(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_reshape", 1, t), NULL;
    int64_t s[WF_MAX_DIMS], st[WF_MAX_DIMS];
    int ok = wf__reshape_geometry("wf_reshape", t, shape, nd, s, st);
    if (ok < 0) return NULL;
    if (ok) return record_reshape(wf__view_of(t, nd, s, st, t->offset), t);
    wf_scope_begin();
    wf_tensor *c = wf_contiguous(t);
    wf_tensor *y = c ? wf_view(c, s, nd) : NULL;
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_flatten(wf_tensor *t, int start, int end) {
    if (!t) return wf__any_null("wf_flatten", 1, t), NULL;
    if (t->ndim == 0) return wf_reshape(t, (const int64_t[]){ 1 }, 1);
    int s = wf__dim("wf_flatten", start, t->ndim), e = wf__dim("wf_flatten", end, t->ndim);
    if (s < 0 || e < 0) return NULL;
    if (s > e) { wf__error(WF_EINDEX, "wf_flatten: start_dim %d comes after end_dim %d", start, end); return NULL; }
    int64_t shape[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s; i++) shape[nd++] = t->shape[i];
    int64_t m = 1;
    for (int i = s; i <= e; i++) m *= t->shape[i];
    shape[nd++] = m;
    for (int i = e + 1; i < t->ndim; i++) shape[nd++] = t->shape[i];
    return wf_reshape(t, shape, nd);
}

wf_tensor *wf_permute(wf_tensor *t, const int *dims, int nd) {
    if (!t) return wf__any_null("wf_permute", 1, t), NULL;
    wf_tensor *y = wf__permute_raw(t, dims, nd);
    if (!y) return NULL;
    wf_node *n = wf__record("PermuteBackward", permute_backward, y, 1, &t);
    if (n) for (int i = 0; i < nd; i++) n->i[i] = wf__dim("", dims[i], nd);
    return wf__recorded(y, n, true, 1, &t);
}

wf_tensor *wf_transpose(wf_tensor *t, int d0, int d1) {
    if (!t) return wf__any_null("wf_transpose", 1, t), NULL;
    int nd = t->ndim ? t->ndim : 1;
    int a = wf__dim("wf_transpose", d0, t->ndim), b = wf__dim("wf_transpose", d1, t->ndim);
    if (a < 0 || b < 0) return NULL;
    if (t->ndim == 0) return wf_permute(t, NULL, 0);
    int dims[WF_MAX_DIMS];
    for (int i = 0; i < nd; i++) dims[i] = i;
    dims[a] = b;
    dims[b] = a;
    return wf_permute(t, dims, t->ndim);
}

wf_tensor *wf_t(wf_tensor *t) {
    if (!t) return wf__any_null("wf_t", 1, t), NULL;
    if (t->ndim > 2) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_t: expects a tensor with <= 2 dimensions, got shape %s", wf_shape_str(t, b, sizeof b));
        return NULL;
    }
    if (t->ndim < 2) return wf_permute(t, (const int[]){ 0 }, t->ndim);
    return wf_transpose(t, 0, 1);
}

static wf_tensor *slice_view(const char *name, wf_tensor *t, const wf__slice_args *a) {
    wf_tensor *y = wf__slice_raw(t, a);
    if (!y) return NULL;
    wf_node *n = wf__record(name, slice_backward, y, 1, &t);
    if (n) { n->i[0] = a->dim; n->i[1] = a->start; n->i[2] = a->count; n->i[3] = a->step; n->i[4] = a->drop; }
    return wf__recorded(y, n, true, 1, &t);
}

wf_tensor *wf_narrow(wf_tensor *t, int dim, int64_t start, int64_t length) {
    wf__slice_args a;
    return wf__narrow_args(t, dim, start, length, &a) ? NULL : slice_view("NarrowBackward", t, &a);
}

wf_tensor *wf_slice(wf_tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
    wf__slice_args a;
    return wf__slice_args_of(t, dim, start, end, step, &a) ? NULL : slice_view("SliceBackward", t, &a);
}

wf_tensor *wf_select(wf_tensor *t, int dim, int64_t index) {
    wf__slice_args a;
    return wf__select_args(t, dim, index, &a) ? NULL : slice_view("SelectBackward", t, &a);
}

wf_tensor *wf_expand(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_expand", 1, t), NULL;
    wf_tensor *y = wf__expand_checked_raw(t, shape, nd);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("ExpandBackward", expand_backward, y, 1, &t), true, 1, &t);
}

wf_tensor *wf_squeeze(wf_tensor *t, int dim) {
    if (!t) return wf__any_null("wf_squeeze", 1, t), NULL;
    return record_reshape(wf__squeeze_raw(t, dim), t);
}

wf_tensor *wf_squeeze_all(wf_tensor *t) {
    if (!t) return wf__any_null("wf_squeeze_all", 1, t), NULL;
    return record_reshape(wf__squeeze_all_raw(t), t);
}

wf_tensor *wf_unsqueeze(wf_tensor *t, int dim) {
    if (!t) return wf__any_null("wf_unsqueeze", 1, t), NULL;
    return record_reshape(wf__unsqueeze_raw(t, dim), t);
}

/* a view that forgets the history and the view base (so in-place checks see a new tensor) */
wf_tensor *wf_detach(wf_tensor *t) {
    if (!t) return wf__any_null("wf_detach", 1, t), NULL;
    wf_tensor *y = wf__view_of(t, t->ndim, t->shape, t->stride, t->offset);
    if (y) { wf_tensor_free(y->view_base); y->view_base = NULL; }
    return y;
}
