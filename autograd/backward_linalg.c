/* autograd/backward_linalg.c: gradients of matmul / bmm / linear, written with the public
 * ops (so they work on every device and with every dtype wf_matmul accepts). */
#include "backward_linalg.h"

int wf__matmul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    wf_tensor *g = gy[0];
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(wf_matmul(g, wf_transpose(b, -1, -2)), &n->in_meta[0]);
        if (!gx[0]) return wf_error();
    }
    if (n->needs[1]) {
        wf_tensor *gb;
        if (b->ndim == 2 && a->ndim > 2) {
            /* b was shared by every batch item: fold the batch into the rows, one GEMM
             * [k, B*m] @ [B*m, n] instead of a batched product and a sum. */
            int64_t k = a->shape[a->ndim - 1], nn = g->shape[g->ndim - 1];
            wf_tensor *a2 = wf_reshape(a, WF_SHAPE(-1, k));
            wf_tensor *g2 = wf_reshape(g, WF_SHAPE(-1, nn));
            gb = wf_matmul(wf_t(a2), g2);
        } else {
            gb = wf_matmul(wf_transpose(a, -1, -2), g);
        }
        gx[1] = wf__reduce_to(gb, &n->in_meta[1]);
        if (!gx[1]) return wf_error();
    }
    return 0;
}

int wf__linear_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w = wf__saved(n, 1);
    if (!x || !w) return wf_error();
    wf_tensor *g = gy[0];
    int64_t out = w->shape[0], in = w->shape[1];
    wf_tensor *g2 = NULL;
    if (n->needs[1] || (n->n_inputs > 2 && n->needs[2])) {
        g2 = wf_reshape(g, WF_SHAPE(-1, out));
        if (!g2) return wf_error();
    }
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(wf_matmul(g, w), &n->in_meta[0]);
        if (!gx[0]) return wf_error();
    }
    if (n->needs[1]) {
        wf_tensor *x2 = wf_reshape(x, WF_SHAPE(-1, in));
        gx[1] = wf__reduce_to(wf_matmul(wf_t(g2), x2), &n->in_meta[1]);
        if (!gx[1]) return wf_error();
    }
    if (n->n_inputs > 2 && n->needs[2]) {
        gx[2] = wf__reduce_to(wf_sum(g2, WF_DIMS(0), false), &n->in_meta[2]);
        if (!gx[2]) return wf_error();
    }
    return 0;
}
