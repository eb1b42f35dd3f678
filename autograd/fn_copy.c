/* autograd/fn_copy.c: the public copies (wf_contiguous, wf_clone, wf_to_dtype, wf_to_device,
 * wf_copy_) and their backward. The copying itself is tensor/ops_copy.c's raw ops. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

#include <string.h>

static int identity_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    (void)n;
    gx[0] = gy[0];
    return 0;
}

/* dtype or device change: the gradient goes back to the input's dtype and device */
static int cast_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *g = gy[0];
    if (!wf_device_eq(g->device, m->device)) g = wf_to_device(g, m->device);
    if (g && g->dtype != m->dtype) g = wf_to_dtype(g, m->dtype);
    gx[0] = g;
    return g ? 0 : wf_error();
}

/* A new handle with t's geometry and history: what "returns t itself" means for a
 * function whose result belongs to the caller's scope. */
static wf_tensor *alias(wf_tensor *t) {
    wf_tensor *y = wf__view_of(t, t->ndim, t->shape, t->stride, t->offset);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("AliasBackward", identity_backward, y, 1, &t), true, 1, &t);
}

wf_tensor *wf_contiguous(wf_tensor *t) {
    if (!t) return wf__any_null("wf_contiguous", 1, t), NULL;
    if (wf_is_contiguous(t)) {
        /* a new handle on the same tensor (the caller's scope owns it like any result) */
        return alias(t);
    }
    wf_tensor *y = wf__copy_raw(t, t->dtype, t->device);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("CloneBackward", identity_backward, y, 1, &t), true, 1, &t);
}

wf_tensor *wf_clone(wf_tensor *t) {
    if (!t) return wf__any_null("wf_clone", 1, t), NULL;
    wf_tensor *y = wf__copy_raw(t, t->dtype, t->device);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("CloneBackward", identity_backward, y, 1, &t), true, 1, &t);
}

wf_tensor *wf_to_dtype(wf_tensor *t, wf_dtype dt) {
    if (!t) return wf__any_null("wf_to_dtype", 1, t), NULL;
    dt = wf__dtype(dt);
    if ((unsigned)dt >= WF_DTYPE_COUNT) { wf__error(WF_EDTYPE, "wf_to_dtype: invalid dtype %d", (int)dt); return NULL; }
    if (dt == t->dtype) {
        return alias(t);
    }
    wf_tensor *y = wf__copy_raw(t, dt, t->device);
    if (y && wf_dtype_is_floating(dt))
        y = wf__recorded(y, wf__record("ToCopyBackward", cast_backward, y, 1, &t), true, 1, &t);
    return y;
}

#ifndef WEFT_MINIMAL   /* its one caller, fn_matmul.c's f32 weight gradients, is not in that preset */
wf_dtype wf__autocast_source_dtype(const wf_tensor *t) {
    if (!t) return WF_DTYPE_DEFAULT;
    const wf_node *n = t->grad_fn;
    if (!n || n->backward != cast_backward || n->n_inputs != 1) return t->dtype;
    wf_dtype src = n->in_meta[0].dtype;
    return wf_dtype_is_floating(src) && wf_dtype_size(src) > wf_dtype_size(t->dtype) ? src : t->dtype;
}
#endif

bool wf__adopt_cast(wf_tensor *y, wf_tensor *t) {
    if (!wf_dtype_is_floating(y->dtype)) return true;   /* as wf_to_dtype: no history */
    if (wf__record("ToCopyBackward", cast_backward, y, 1, &t) || !wf__needs_grad(1, &t)) return true;
    if (wf_error() != WF_ENOMEM) wf__error(WF_ENOMEM, "out of memory recording the autograd graph");
    return false;
}

static wf_tensor *wf_to_device__body(wf_tensor *t, wf_device dev) {
    if (!t) return wf__any_null("wf_to_device", 1, t), NULL;
    if (!wf__kernels(dev)) return NULL;
    if (t->device.type == WF_DEV_META && dev.type != WF_DEV_META) {
        wf__error(WF_ENOTSUP, "wf_to_device: cannot copy out of a meta tensor: it has no data");
        return NULL;
    }
    if (wf_device_eq(dev, t->device)) {
        return alias(t);
    }
    wf_tensor *y = wf__copy_raw(t, t->dtype, dev);
    if (!y) return NULL;
    return wf__recorded(y, wf__record("ToCopyBackward", cast_backward, y, 1, &t), true, 1, &t);
}

wf_tensor *wf_to_device(wf_tensor *t, wf_device dev) {
    WF__NAMED("wf_to_device", wf_tensor *, !r, wf_to_device__body(t, dev));
}

int wf_copy_(wf_tensor *dst, wf_tensor *src) {
    if (!dst || !src) return wf__any_null("wf_copy_", 2, dst, src), WF_ENULL;
    if (src->device.type == WF_DEV_META && dst->device.type != WF_DEV_META)
        return wf__error(WF_ENOTSUP, "wf_copy_: cannot copy out of a meta tensor: it has no data");
    int nd;
    int64_t shape[WF_MAX_DIMS];
    if (wf__broadcast_shapes("wf_copy_", dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape)) return wf_error();
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[96], b2[96];
        return wf__error(WF_ESHAPE, "wf_copy_: source of shape %s does not broadcast to destination shape %s",
                         wf_shape_str(src, b1, sizeof b1), wf_shape_str(dst, b2, sizeof b2));
    }
    if (wf__check_inplace("wf_copy_", dst)) return wf_error();
    if (!wf__needs_grad(1, &src)) {
        int rc = wf__copy_raw_(dst, src);
        if (!rc && dst->grad_fn && wf_is_grad_enabled() && !dst->view_base) {
            /* overwritten by a value without history: the old history is gone */
            wf_node *old = dst->grad_fn;
            dst->grad_fn = NULL;
            dst->requires_grad = false;
            wf__node_release(old);
        }
        return rc;
    }
    /* autograd: the new value of dst is src broadcast and cast (a tensor with src's
     * history), written back with wf__adopt (which also handles dst being a view) */
    wf_scope_begin();
    wf_tensor *s = src;
    if (!wf_device_eq(src->device, dst->device)) s = wf_to_device(src, dst->device);
    wf_tensor *y = s ? wf_contiguous(wf_to_dtype(wf_expand(s, dst->shape, dst->ndim), dst->dtype)) : NULL;
    int rc = y ? wf__adopt(dst, y) : wf_error();
    wf_scope_end();
    return rc;
}
