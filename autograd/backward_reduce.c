/* autograd/backward_reduce.c: gradients of sum, amax/amin and norm (keepdim-shaped outputs). */
#include "backward.h"

#include <math.h>

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

/* y = norm_p(x) (keepdim-shaped), PyTorch's gradients: x |x|^(p-2) / y^(p-1), written as
 * sign(x) |x|^(p-1) so p < 2 is finite at x = 0, and 0 wherever the norm is 0 (not 0/0);
 * p = 1: sign(x); p = inf: sign(x) shared evenly by the elements where |x| is the max.
 * Half precision computes in f32 (y^(p-1) overflows f16 for moderate norms). */
int wf__norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *y = wf__saved(n, 1);
    if (!x || !y) return wf_error();
    double p = n->f[0];
    wf_dtype dt = x->dtype, ct = dt == WF_F64 ? WF_F64 : WF_F32;
    wf_tensor *xc = wf_to_dtype(x, ct), *yc = wf_to_dtype(y, ct), *g = wf_to_dtype(gy[0], ct), *r;
    if (isinf(p)) {
        wf_tensor *mask = wf_to_dtype(wf_eq(wf_abs(xc), yc), ct);
        int dims[WF_MAX_DIMS], nd = 0;
        for (int i = 0; i < x->ndim; i++) if (y->shape[i] != x->shape[i] || x->shape[i] == 1) dims[nd++] = i;
        r = wf_mul(wf_mul(mask, wf_sign(xc)), wf_div(g, wf_sum(mask, dims, nd, true)));
    } else if (p == 1) {
        r = wf_mul(wf_sign(xc), g);
    } else {
        wf_tensor *zero = wf_eq_scalar(yc, 0);
        wf_tensor *den = wf_where(zero, wf_ones_like(yc), p == 2 ? yc : wf_pow_scalar(yc, p - 1));
        wf_tensor *scale = wf_where(zero, wf_zeros_like(yc), wf_div(g, den));
        wf_tensor *t = p == 2 ? xc : wf_mul(wf_sign(xc), wf_pow_scalar(wf_abs(xc), p - 1));
        r = wf_mul(t, scale);
    }
    gx[0] = r && r->dtype != dt ? wf_to_dtype(r, dt) : r;
    return gx[0] ? 0 : wf_error();
}
