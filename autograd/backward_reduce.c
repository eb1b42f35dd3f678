/* autograd/backward_reduce.c: gradients of sum and amax/amin (keepdim-shaped outputs). */
#include "backward.h"

/* y = sum(x, dims, keepdim=true): gx = gy expanded back to x's shape */
int wf__sum_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *g = gy[0];
    if (g->dtype != m->dtype) g = wf_to_dtype(g, m->dtype);
    gx[0] = wf_contiguous(wf_expand(g, m->shape, m->ndim));
    return gx[0] ? 0 : wf_error();
}

/* y = amax(x): the gradient is shared evenly by the elements equal to the max */
int wf__amax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *y = wf__saved(n, 1);
    if (!x || !y) return wf_error();
    wf_tensor *mask = wf_to_dtype(wf_eq(x, y), x->dtype);
    int dims[WF_MAX_DIMS], nd = 0;
    for (int i = 0; i < x->ndim; i++) if (y->shape[i] != x->shape[i] || x->shape[i] == 1) dims[nd++] = i;
    wf_tensor *count = wf_sum(mask, dims, nd, true);
    gx[0] = wf_mul(mask, wf_div(gy[0], count));
    return gx[0] ? 0 : wf_error();
}
