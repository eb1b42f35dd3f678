/* autograd/backward_view.c: gradients of views, copies and casts. */
#include "backward.h"

/* y = x.view(shape): gx = gy.reshape(x.shape) */
int wf__view_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    gx[0] = wf_reshape(gy[0], n->in_meta[0].shape, n->in_meta[0].ndim);
    return gx[0] ? 0 : wf_error();
}

/* y = x.permute(p): gx = gy.permute(inverse p) */
int wf__permute_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    int nd = n->in_meta[0].ndim, inv[WF_MAX_DIMS];
    for (int i = 0; i < nd; i++) inv[n->i[i]] = i;
    gx[0] = wf_permute(gy[0], inv, nd);
    return gx[0] ? 0 : wf_error();
}

/* y = x.expand(shape): gx = sum of gy over the expanded dims */
int wf__expand_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    gx[0] = wf__reduce_to(gy[0], &n->in_meta[0]);
    return gx[0] ? 0 : wf_error();
}

/* y = x[..., start : start+count*step : step, ...] (drop: select, the dim is removed):
 * gx = zeros like x with gy written into that slice */
int wf__slice_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
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
