/* tensor/ops_unary.c: the raw elementwise unary ops (tensor/ops_raw.h). The public
 * functions (wf_exp, wf_relu_, ...) and their backward: autograd/fn_unary.c. */
#include "ops_raw.h"

/* ops that keep integer dtypes (the rest compute in floating point) */
static bool keeps_int(wf_unary_op op) {
    return op == WF_U_NEG || op == WF_U_ABS || op == WF_U_RELU || op == WF_U_SQUARE || op == WF_U_SIGN || op == WF_U_CLAMP;
}

wf_tensor *wf__unary_raw(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b) {
    if (!x) return wf__any_null(fname, 1, x), NULL;
    const wf_kernels *k = wf__kernels(x->device);
    if (!k) return NULL;
    bool pred = op == WF_U_LOGICAL_NOT || op == WF_U_ISFINITE;
    wf_dtype dt = x->dtype;
    wf_tensor *xin = x;
    if (!pred && !wf_dtype_is_floating(dt) && !keeps_int(op)) {
        dt = wf_get_default_dtype();   /* exp of an integer tensor is a float tensor */
    }
    if (!pred && dt == WF_BOOL && op != WF_U_CLAMP) {
        wf__error(WF_EDTYPE, "%s: not defined for bool tensors", fname);
        return NULL;
    }
    if (wf__need_kernel(k, fname, WF_OPF_UNARY, op, dt, x->device)) return NULL;
    wf_tensor *y = wf__empty(x->shape, x->ndim, pred ? WF_BOOL : dt, x->device);
    if (!y) return NULL;
    if (dt != x->dtype && !pred) {
        xin = wf__to_dtype_raw(x, dt);
        if (!xin) { wf_tensor_free(y); return NULL; }
    }
    int rc = wf_numel(y) ? k->unary(op, y, xin, a, b) : 0;
    if (rc) { wf_tensor_free(y); return NULL; }
    return y;
}

int wf__unary_raw_(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b) {
    const wf_kernels *k = wf__kernels(x->device);
    if (!k) return wf_error();
    int rc = wf__need_kernel(k, fname, WF_OPF_UNARY, op, x->dtype, x->device);
    if (!rc && wf_numel(x)) rc = k->unary(op, x, x, a, b);
    if (!rc) wf__bump_version(x);
    return rc;
}

wf_tensor *wf__unary_backward_raw(wf_unary_op op, wf_tensor *g, wf_tensor *s, bool by_output, double a, double b) {
    if (g->dtype != s->dtype) g = wf__to_dtype_raw(g, s->dtype);
    if (!g) return NULL;
    if (op == WF_U_SIGN) return wf_zeros_like(s);   /* PyTorch's: a zero gradient, not none */
    wf_tensor *out = wf__empty(s->shape, s->ndim, s->dtype, s->device);
    if (!out) return NULL;
    const wf_kernels *k = wf__kernels(out->device);
    int rc = !k ? wf_error() : wf_numel(out) ? k->unary_backward(op, out, g, by_output ? NULL : s, by_output ? s : NULL, a, b) : 0;
    return rc ? NULL : out;
}
