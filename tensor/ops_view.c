/* tensor/ops_view.c: the raw views (tensor/ops_raw.h): new geometry over the same storage,
 * validated, with no graph. The public views (wf_view, wf_reshape, wf_permute, wf_slice,
 * wf_expand, wf_squeeze, wf_detach, ...) and their backward: autograd/fn_view.c. */
#include "ops_raw.h"

#include <string.h>

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

int wf__reshape_geometry(const char *op, const wf_tensor *t, const int64_t *shape, int nd, int64_t *s, int64_t *st) {
    if (infer_shape(op, t, shape, nd, s)) return wf_error();
    return view_strides(t, nd, s, st) ? 1 : 0;
}

wf_tensor *wf__permute_raw(wf_tensor *t, const int *dims, int nd) {
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
    return wf__view_of(t, nd, shape, stride, t->offset);
}

wf_tensor *wf__slice_raw(wf_tensor *t, const wf__slice_args *a) {
    int d = a->dim;
    int64_t start = a->start, count = a->count, step = a->step;
    bool drop = a->drop;
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
    return wf__view_of(t, nd, shape, stride, t->offset + start * t->stride[d]);
}

int wf__narrow_args(wf_tensor *t, int dim, int64_t start, int64_t length, wf__slice_args *a) {
    if (!t) return wf__any_null("wf_narrow", 1, t), WF_ENULL;
    int d = wf__dim("wf_narrow", dim, t->ndim);
    if (d < 0) return wf_error();
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_narrow: cannot narrow a 0-d tensor"); return wf_error(); }
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (start < 0 || length < 0 || start > size || start + length > size) {
        wf__error(WF_EINDEX, "wf_narrow: start %lld + length %lld exceeds dimension %d of size %lld",
                  (long long)start, (long long)length, dim, (long long)size);
        return wf_error();
    }
    *a = (wf__slice_args){ d, start, length, 1, false };
    return 0;
}

int wf__slice_args_of(wf_tensor *t, int dim, int64_t start, int64_t end, int64_t step, wf__slice_args *a) {
    if (!t) return wf__any_null("wf_slice", 1, t), WF_ENULL;
    int d = wf__dim("wf_slice", dim, t->ndim);
    if (d < 0) return wf_error();
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_slice: cannot slice a 0-d tensor"); return wf_error(); }
    if (step <= 0) { wf__error(WF_EINVAL, "wf_slice: step must be positive, got %lld", (long long)step); return wf_error(); }
    int64_t size = t->shape[d];
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (start < 0) start = 0;
    if (start > size) start = size;
    if (end > size) end = size;
    if (end < start) end = start;
    int64_t count = (end - start) / step + ((end - start) % step != 0);   /* no overflow for a huge step */
    *a = (wf__slice_args){ d, start, count, step, false };
    return 0;
}

int wf__select_args(wf_tensor *t, int dim, int64_t index, wf__slice_args *a) {
    if (!t) return wf__any_null("wf_select", 1, t), WF_ENULL;
    if (t->ndim == 0) { wf__error(WF_EINDEX, "wf_select: cannot select from a 0-d tensor"); return wf_error(); }
    int d = wf__dim("wf_select", dim, t->ndim);
    if (d < 0) return wf_error();
    int64_t size = t->shape[d];
    if (index < -size || index >= size) {
        wf__error(WF_EINDEX, "wf_select: index %lld is out of range for dimension %d of size %lld",
                  (long long)index, dim, (long long)size);
        return wf_error();
    }
    if (index < 0) index += size;
    *a = (wf__slice_args){ d, index, 1, 1, true };
    return 0;
}

wf_tensor *wf__expand_raw(wf_tensor *t, int nd, const int64_t *shape) {
    int64_t stride[WF_MAX_DIMS];
    int lead = nd - t->ndim;
    for (int i = 0; i < nd; i++) {
        int j = i - lead;
        if (j < 0) stride[i] = 0;
        else stride[i] = (t->shape[j] == 1 && shape[i] != 1) ? 0 : t->stride[j];
    }
    return wf__view_of(t, nd, shape, stride, t->offset);
}

wf_tensor *wf__expand_checked_raw(wf_tensor *t, const int64_t *shape, int nd) {
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
    return wf__expand_raw(t, nd, s);
}

wf_tensor *wf__squeeze_raw(wf_tensor *t, int dim) {
    int d = wf__dim("wf_squeeze", dim, t->ndim);
    if (d < 0) return NULL;
    if (t->ndim == 0 || t->shape[d] != 1) return wf__view_of(t, t->ndim, t->shape, t->stride, t->offset);
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) { shape[nd] = t->shape[i]; stride[nd] = t->stride[i]; nd++; }
    return wf__view_of(t, nd, shape, stride, t->offset);
}

wf_tensor *wf__squeeze_all_raw(wf_tensor *t) {
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) { shape[nd] = t->shape[i]; stride[nd] = t->stride[i]; nd++; }
    return wf__view_of(t, nd, shape, stride, t->offset);
}

wf_tensor *wf__unsqueeze_raw(wf_tensor *t, int dim) {
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
    return wf__view_of(t, nd, shape, stride, t->offset);
}

