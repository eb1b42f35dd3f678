/* tensor/ops_copy.c: the raw copies (tensor/ops_raw.h): dtype casts, device moves and the
 * in-place copy. The public functions (wf_contiguous, wf_clone, wf_to_dtype, wf_to_device,
 * wf_copy_) and their backward: autograd/fn_copy.c. */
#include "ops_raw.h"

#include <string.h>

static wf_tensor *copy_raw(wf_tensor *x, wf_dtype dt, wf_device dev);

/* the census labels a copy by what it does, and gives the op around it its label back */
wf_tensor *wf__copy_raw(wf_tensor *x, wf_dtype dt, wf_device dev) {
    WF__CENSUS_OP_BEGIN(!wf_device_eq(x->device, dev) ? "to_device" : x->dtype != dt ? "to_dtype" : "copy");
    wf_tensor *y = copy_raw(x, dt, dev);
    WF__CENSUS_OP_END();
    return y;
}

static wf_tensor *copy_raw(wf_tensor *x, wf_dtype dt, wf_device dev) {
    wf_tensor *y = wf__empty(x->shape, x->ndim, dt, dev);
    if (!y || !wf_numel(x)) return y;
    int rc;
    if (wf_device_eq(x->device, dev)) {
        rc = wf__kernels(dev)->copy(y, x);
    } else {
        /* across devices: make a contiguous source of the target dtype on its own device,
         * then move the bytes through the host */
        wf_scope_begin();
        wf_tensor *src = x;
        if (!wf_is_contiguous(x) || x->dtype != dt) {
            src = wf__empty(x->shape, x->ndim, dt, x->device);
            rc = src ? wf__kernels(x->device)->copy(src, x) : wf_error();
        } else rc = 0;
        if (!rc) {
            size_t nb = (size_t)wf_numel(x) * wf_dtype_size(dt);
            if (src->device.type == WF_DEV_CPU) rc = wf__kernels(dev)->from_host(y, wf__host_ptr(src));
            else if (dev.type == WF_DEV_CPU) rc = wf__kernels(src->device)->to_host(wf__host_ptr(y), src);
            else {
                void *tmp = wf__host_alloc(nb);
                if (!tmp) rc = wf__error(WF_ENOMEM, "out of host memory staging a device copy");
                else {
                    rc = wf__kernels(src->device)->to_host(tmp, src);
                    if (!rc) rc = wf__kernels(dev)->from_host(y, tmp);
                    wf__host_free(tmp, nb);
                }
            }
        }
        wf_scope_end();
    }
    if (rc) { wf_tensor_free(y); return NULL; }
    return y;
}

wf_tensor *wf__to_dtype_raw(wf_tensor *x, wf_dtype dt) {
    if (!x) return wf__any_null("wf_to_dtype", 1, x), NULL;
    return x->dtype == dt ? x : wf__copy_raw(x, dt, x->device);
}

int wf__copy_raw_(wf_tensor *dst, wf_tensor *src) {
    wf_scope_begin();
    wf_tensor *s = src;
    if (!wf_device_eq(src->device, dst->device)) s = wf__copy_raw(src, src->dtype, dst->device);
    wf_tensor *e = s ? wf__expand_raw(s, dst->ndim, dst->shape) : NULL;
    int rc = e ? (wf_numel(dst) ? wf__kernels(dst->device)->copy(dst, e) : 0) : wf_error();
    if (!rc) wf__bump_version(dst);
    wf_scope_end();
    return rc;
}
