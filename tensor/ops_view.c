/* tensor/ops_view.c: views (new geometry over the same storage) and their autograd.
 * Backward functions are in autograd/backward_view.c. */
#include "tensor_impl.h"
#include "../autograd/backward.h"

#include <string.h>

static wf_tensor *make_view(wf_tensor *t, int nd, const int64_t *shape, const int64_t *stride, int64_t offset) {
    return wf__view_of(t, nd, shape, stride, offset);
}

/* Infer a -1 and check the element count. */
static int infer_shape(const char *op, const wf_tensor *t, const int64_t *shape, int nd, int64_t *out) {
    if (nd < 0 || nd > WF_MAX_DIMS) return wf__error(WF_ESHAPE, "%s: %d dimensions (at most %d)", op, nd, WF_MAX_DIMS);
    if (nd && !shape) return wf__error(WF_ENULL, "%s: NULL shape", op);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return wf__error(WF_ESHAPE, "%s: only one dimension can be inferred (-1)", op);
            infer = i;
        } else if (shape[i] < 0) {
            return wf__error(WF_ESHAPE, "%s: invalid size %lld in dimension %d", op, (long long)shape[i], i);
        } else if (__builtin_mul_overflow(known, shape[i], &known)) {
            char b[160];
            return wf__error(WF_ESHAPE, "%s: shape %s has more elements than an int64 can count", op,
                             wf__shape_text(nd, shape, b, sizeof b));
        }
        out[i] = shape[i];
    }
    int64_t n = wf_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known) {
            char b[96], b2[96];
            return wf__error(WF_ESHAPE, "%s: shape %s is invalid for input of shape %s", op,
                             wf__shape_text(nd, shape, b, sizeof b), wf_shape_str(t, b2, sizeof b2));
        }
        out[infer] = n / known;
        known *= out[infer];
    }
    if (known != n) {
        char b[96], b2[96];
        return wf__error(WF_ESHAPE, "%s: shape %s is invalid for input of shape %s (%lld elements)", op,
                         wf__shape_text(nd, shape, b, sizeof b), wf_shape_str(t, b2, sizeof b2), (long long)n);
    }
    return 0;
}

/* Strides for viewing t with a new shape without copying, if possible (PyTorch's
 * computeStride): returns false when the memory layout does not allow it. */
static bool view_strides(const wf_tensor *t, int nd, const int64_t *shape, int64_t *stride) {
    if (wf_numel(t) == 0 || t->ndim == 0) {
        wf__contiguous_strides(nd, shape, stride);
        return true;
    }
    int view_d = nd - 1;
    int64_t chunk_base_stride = t->stride[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (td > 0) {
                chunk_base_stride = t->stride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

static wf_tensor *record_reshape(wf_tensor *y, wf_tensor *x) {
    if (!y) return NULL;
    return wf__recorded(y, wf__record("ViewBackward", wf__view_backward, y, 1, &x), true, 1, &x);
}

wf_tensor *wf_view(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_view", 1, t), NULL;
    int64_t s[WF_MAX_DIMS], st[WF_MAX_DIMS];
    if (infer_shape("wf_view", t, shape, nd, s)) return NULL;
    if (!view_strides(t, nd, s, st)) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_view: the strides of the input (shape %s) do not allow this view; "
                  "use wf_reshape (which copies)", wf_shape_str(t, b, sizeof b));
        return NULL;
    }
    return record_reshape(make_view(t, nd, s, st, t->offset), t);
}

wf_tensor *wf_reshape(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_reshape", 1, t), NULL;
    int64_t s[WF_MAX_DIMS], st[WF_MAX_DIMS];
    if (infer_shape("wf_reshape", t, shape, nd, s)) return NULL;
    if (view_strides(t, nd, s, st)) return record_reshape(make_view(t, nd, s, st, t->offset), t);
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
    if (nd != t->ndim || (nd && !dims)) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_permute: %d dims given for a tensor of shape %s", nd, wf_shape_str(t, b, sizeof b));
        return NULL;
    }
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    bool seen[WF_MAX_DIMS] = { false };
    for (int i = 0; i < nd; i++) {
        int d = wf__dim("wf_permute", dims[i], nd);
        if (d < 0) return NULL;
        if (seen[d]) { wf__error(WF_EINDEX, "wf_permute: dimension %d repeats", dims[i]); return NULL; }
        seen[d] = true;
        shape[i] = t->shape[d];
        stride[i] = t->stride[d];
    }
    wf_tensor *y = make_view(t, nd, shape, stride, t->offset);
    if (!y) return NULL;
    wf_node *n = wf__record("PermuteBackward", wf__permute_backward, y, 1, &t);
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

/* slice along dim: start, count, step (already normalized) */
static wf_tensor *slice_view(const char *op, wf_tensor *t, int d, int64_t start, int64_t count, int64_t step, bool drop) {
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d) {
            if (drop) continue;
            shape[nd] = count;
            stride[nd] = t->stride[i] * step;
        } else {
            shape[nd] = t->shape[i];
            stride[nd] = t->stride[i];
        }
        nd++;
    }
    wf_tensor *y = make_view(t, nd, shape, stride, t->offset + start * t->stride[d]);
    if (!y) return NULL;
    wf_node *n = wf__record(op, wf__slice_backward, y, 1, &t);
    if (n) { n->i[0] = d; n->i[1] = start; n->i[2] = count; n->i[3] = step; n->i[4] = drop; }
    return wf__recorded(y, n, true, 1, &t);
}

wf_tensor *wf_narrow(wf_tensor *t, int dim, int64_t start, int64_t length) {
    if (!t) return wf__any_null("wf_narrow", 1, t), NULL;
    int d = wf__dim("wf_narrow", dim, t->ndim);
    if (d < 0) return NULL;
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_narrow: cannot narrow a 0-d tensor"); return NULL; }
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (start < 0 || length < 0 || start > size || start + length > size) {
        wf__error(WF_EINDEX, "wf_narrow: start %lld + length %lld exceeds dimension %d of size %lld",
                  (long long)start, (long long)length, dim, (long long)size);
        return NULL;
    }
    return slice_view("NarrowBackward", t, d, start, length, 1, false);
}

wf_tensor *wf_slice(wf_tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
    if (!t) return wf__any_null("wf_slice", 1, t), NULL;
    int d = wf__dim("wf_slice", dim, t->ndim);
    if (d < 0) return NULL;
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_slice: cannot slice a 0-d tensor"); return NULL; }
    if (step <= 0) { wf__error(WF_EINVAL, "wf_slice: step must be positive, got %lld", (long long)step); return NULL; }
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (start < 0) start = 0;
    if (start > size) start = size;
    if (end > size) end = size;
    if (end < start) end = start;
    int64_t count = (end - start) / step + ((end - start) % step != 0);   /* no overflow for a huge step */
    return slice_view("SliceBackward", t, d, start, count, step, false);
}

wf_tensor *wf_select(wf_tensor *t, int dim, int64_t index) {
    if (!t) return wf__any_null("wf_select", 1, t), NULL;
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_select: cannot select from a 0-d tensor"); return NULL; }
    int d = wf__dim("wf_select", dim, t->ndim);
    if (d < 0) return NULL;
    int64_t size = t->shape[d];
    if (index < -size || index >= size) {
        wf__error(WF_EINDEX, "wf_select: index %lld is out of range for dimension %d of size %lld",
                  (long long)index, dim, (long long)size);
        return NULL;
    }
    if (index < 0) index += size;
    return slice_view("SelectBackward", t, d, index, 1, 1, true);
}

wf_tensor *wf__expand_raw(wf_tensor *t, int nd, const int64_t *shape) {
    int64_t stride[WF_MAX_DIMS];
    int lead = nd - t->ndim;
    for (int i = 0; i < nd; i++) {
        int j = i - lead;
        if (j < 0) stride[i] = 0;
        else stride[i] = (t->shape[j] == 1 && shape[i] != 1) ? 0 : t->stride[j];
    }
    return make_view(t, nd, shape, stride, t->offset);
}

wf_tensor *wf_expand(wf_tensor *t, const int64_t *shape, int nd) {
    if (!t) return wf__any_null("wf_expand", 1, t), NULL;
    if (nd < t->ndim || nd > WF_MAX_DIMS || (nd && !shape)) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_expand: cannot expand shape %s to %d dims", wf_shape_str(t, b, sizeof b), nd);
        return NULL;
    }
    int64_t s[WF_MAX_DIMS];
    int lead = nd - t->ndim;
    for (int i = 0; i < nd; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (want == -1) {
            if (j < 0) { wf__error(WF_ESHAPE, "wf_expand: -1 is not allowed in a new leading dimension"); return NULL; }
            want = t->shape[j];
        }
        if (want < 0) {
            char b2[160];
            wf__error(WF_ESHAPE, "wf_expand: invalid size %lld in dimension %d of %s", (long long)want, i,
                      wf__shape_text(nd, shape, b2, sizeof b2));
            return NULL;
        }
        if (j >= 0 && t->shape[j] != 1 && t->shape[j] != want) {
            char b[96], b2[96];
            wf__error(WF_ESHAPE, "wf_expand: shape %s cannot expand to %s (dimension %d: %lld vs %lld)",
                      wf_shape_str(t, b, sizeof b), wf__shape_text(nd, shape, b2, sizeof b2), i,
                      (long long)t->shape[j], (long long)want);
            return NULL;
        }
        s[i] = want;
    }
    if (wf__check_shape("wf_expand", s, nd)) return NULL;
    wf_tensor *y = wf__expand_raw(t, nd, s);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("ExpandBackward", wf__expand_backward, y, 1, &t), true, 1, &t);
}

static wf_tensor *reshape_view(wf_tensor *t, int nd, const int64_t *shape, const int64_t *stride) {
    return record_reshape(make_view(t, nd, shape, stride, t->offset), t);
}

wf_tensor *wf_squeeze(wf_tensor *t, int dim) {
    if (!t) return wf__any_null("wf_squeeze", 1, t), NULL;
    int d = wf__dim("wf_squeeze", dim, t->ndim);
    if (d < 0) return NULL;
    if (t->ndim == 0 || t->shape[d] != 1) return reshape_view(t, t->ndim, t->shape, t->stride);
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) { shape[nd] = t->shape[i]; stride[nd] = t->stride[i]; nd++; }
    return reshape_view(t, nd, shape, stride);
}

wf_tensor *wf_squeeze_all(wf_tensor *t) {
    if (!t) return wf__any_null("wf_squeeze_all", 1, t), NULL;
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) { shape[nd] = t->shape[i]; stride[nd] = t->stride[i]; nd++; }
    return reshape_view(t, nd, shape, stride);
}

wf_tensor *wf_unsqueeze(wf_tensor *t, int dim) {
    if (!t) return wf__any_null("wf_unsqueeze", 1, t), NULL;
    if (t->ndim >= WF_MAX_DIMS) { wf__error(WF_ESHAPE, "wf_unsqueeze: tensor already has %d dims", WF_MAX_DIMS); return NULL; }
    int d = wf__dim("wf_unsqueeze", dim, t->ndim + 1);
    if (d < 0) return NULL;
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[nd] = 1;
            stride[nd] = i < t->ndim ? t->stride[i] * t->shape[i] : 1;
            nd++;
        }
        if (i < t->ndim) { shape[nd] = t->shape[i]; stride[nd] = t->stride[i]; nd++; }
    }
    return reshape_view(t, nd, shape, stride);
}

wf_tensor *wf_detach(wf_tensor *t) {
    if (!t) return wf__any_null("wf_detach", 1, t), NULL;
    wf_tensor *y = make_view(t, t->ndim, t->shape, t->stride, t->offset);
    if (y) { wf_tensor_free(y->view_base); y->view_base = NULL; }
    return y;
}
