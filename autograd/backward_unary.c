/* autograd/backward_unary.c: gx = gy * op'(x), computed by the device's unary_backward kernel. */
#include "backward.h"

int wf__unary_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *s = wf__saved(n, 0);
    if (!s) return wf_error();
    wf_tensor *g = gy[0];
    if (g->dtype != s->dtype) g = wf_to_dtype(g, s->dtype);
    if (!g) return wf_error();
    if ((wf_unary_op)n->i[0] == WF_U_SIGN) {   /* PyTorch's: a zero gradient, not none */
        gx[0] = wf_zeros_like(s);
        return gx[0] ? 0 : wf_error();
    }
    wf_tensor *out = wf__empty(s->shape, s->ndim, s->dtype, s->device);
    if (!out) return wf_error();
    bool by_output = n->i[1] != 0;
    int rc = wf_numel(out) ? wf__kernels(out->device)->unary_backward((wf_unary_op)n->i[0], out, g,
                                by_output ? NULL : s, by_output ? s : NULL, n->f[0], n->f[1]) : 0;
    if (rc) return rc;
    gx[0] = out;
    return 0;
}
