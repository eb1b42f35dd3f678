/* autograd/fn_softmax.c: wf_softmax and wf_log_softmax along any dimension, and their
 * backward; both directions run tensor/ops_softmax.c's raw ops. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

/* n->i[0] = dim (normalized), n->i[1] = 1 for log_softmax, n->f[0] = the input's scale and
 * n->f[1] the output's (1 but for attention's); saved 0 = y (the output) */
static int softmax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *y = wf__saved(n, 0);
    if (!y) return wf_error() ? wf_error() : WF_EAUTOGRAD;
    if (!n->needs[0]) return 0;
    gx[0] = wf__softmax_backward_scaled_raw(gy[0], y, (int)n->i[0], n->i[1] != 0, n->f[0], n->f[1]);
    return gx[0] ? 0 : wf_error();
}

static wf_tensor *softmax_op(const char *op, wf_tensor *x, int dim, bool is_log) {
    wf_tensor *y = wf__softmax_raw(op, x, dim, is_log);
    if (!y) return NULL;
    wf_node *n = wf__record(is_log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, y, 1, &x);
    if (n) {
        n->i[0] = wf__dim(op, dim, x->ndim);
        n->i[1] = is_log;
        n->f[0] = n->f[1] = 1.0;
    }
    return wf__recorded(y, n, n && wf__save(n, y) >= 0, 1, &x);
}

/* The causal mask needs nothing in the backward: its excluded entries have y = 0, so
 * softmax's backward gives them 0, as the composed where's backward did. */
wf_tensor *wf__softmax_attn(wf_tensor *x, double scale, bool is_causal, double out_scale) {
    wf_tensor *y = wf__softmax_attn_raw(x, scale, is_causal, out_scale);
    if (!y) return NULL;
    wf_node *n = wf__record("SoftmaxBackward", softmax_backward, y, 1, &x);
    if (n) {
        n->i[0] = x->ndim - 1;
        n->i[1] = 0;
        n->f[0] = scale;
        n->f[1] = out_scale;
    }
    return wf__recorded(y, n, n && wf__save(n, y) >= 0, 1, &x);
}

wf_tensor *wf_softmax(wf_tensor *x, int dim) { return softmax_op("wf_softmax", wf__autocast_arg(x, WF__AC_F32), dim, false); }
wf_tensor *wf_log_softmax(wf_tensor *x, int dim) { return softmax_op("wf_log_softmax", wf__autocast_arg(x, WF__AC_F32), dim, true); }
