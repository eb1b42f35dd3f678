/* autograd/fn_unary.c: the public elementwise unary functions (wf_exp, wf_relu, wf_relu_,
 * ...) and their backward. The computation is tensor/ops_unary.c's raw op; this file adds
 * autocast, the graph node and in-place adoption. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

static const char *const unary_names[WF_U_COUNT] = {
    [WF_U_NEG] = "NegBackward", [WF_U_ABS] = "AbsBackward", [WF_U_EXP] = "ExpBackward",
    [WF_U_LOG] = "LogBackward", [WF_U_LOG1P] = "Log1pBackward", [WF_U_SQRT] = "SqrtBackward",
    [WF_U_RSQRT] = "RsqrtBackward", [WF_U_SIN] = "SinBackward", [WF_U_COS] = "CosBackward",
    [WF_U_TANH] = "TanhBackward", [WF_U_SIGMOID] = "SigmoidBackward", [WF_U_RELU] = "ReluBackward",
    [WF_U_GELU] = "GeluBackward", [WF_U_GELU_TANH] = "GeluBackward", [WF_U_SILU] = "SiluBackward",
    [WF_U_SQUARE] = "PowBackward", [WF_U_SIGN] = "SignBackward", [WF_U_POW] = "PowBackward",
    [WF_U_CLAMP] = "ClampBackward", [WF_U_LOGICAL_NOT] = "", [WF_U_ISFINITE] = "",
};

/* ops whose derivative is written in terms of the output */
static bool uses_output(wf_unary_op op) {
    return op == WF_U_EXP || op == WF_U_SQRT || op == WF_U_RSQRT || op == WF_U_TANH || op == WF_U_SIGMOID;
}

/* n->i[0] = op, n->i[1] = uses_output, n->f[0..1] = op params; saved 0 = x or y */
static int unary_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *s = wf__saved(n, 0);
    if (!s) return wf_error();
    gx[0] = wf__unary_backward_raw((wf_unary_op)n->i[0], gy[0], s, n->i[1] != 0, n->f[0], n->f[1]);
    return gx[0] ? 0 : wf_error();
}

static wf_tensor *unary(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b) {
    wf_tensor *y = wf__unary_raw(fname, op, x, a, b);
    /* an integer x was cast to y's dtype: it cannot require grad, so nothing is recorded */
    if (!y || y->dtype != x->dtype || !wf_dtype_is_floating(y->dtype)) return y;
    wf_node *n = wf__record(unary_names[op], unary_backward, y, 1, &x);
    if (n) {
        n->i[0] = op;
        n->f[0] = a;
        n->f[1] = b;
        n->i[1] = uses_output(op);
    }
    return wf__recorded(y, n, n && wf__save(n, uses_output(op) ? y : x) >= 0, 1, &x);
}

wf_tensor *wf_neg(wf_tensor *x) { return unary("wf_neg", WF_U_NEG, x, 0, 0); }
wf_tensor *wf_abs(wf_tensor *x) { return unary("wf_abs", WF_U_ABS, x, 0, 0); }
wf_tensor *wf_exp(wf_tensor *x) { return unary("wf_exp", WF_U_EXP, wf__autocast_arg(x, WF__AC_F32), 0, 0); }
wf_tensor *wf_log(wf_tensor *x) { return unary("wf_log", WF_U_LOG, wf__autocast_arg(x, WF__AC_F32), 0, 0); }
wf_tensor *wf_log1p(wf_tensor *x) { return unary("wf_log1p", WF_U_LOG1P, x, 0, 0); }
wf_tensor *wf_sqrt(wf_tensor *x) { return unary("wf_sqrt", WF_U_SQRT, x, 0, 0); }
wf_tensor *wf_rsqrt(wf_tensor *x) { return unary("wf_rsqrt", WF_U_RSQRT, x, 0, 0); }
wf_tensor *wf_sin(wf_tensor *x) { return unary("wf_sin", WF_U_SIN, x, 0, 0); }
wf_tensor *wf_cos(wf_tensor *x) { return unary("wf_cos", WF_U_COS, x, 0, 0); }
wf_tensor *wf_tanh(wf_tensor *x) { return unary("wf_tanh", WF_U_TANH, x, 0, 0); }
wf_tensor *wf_sigmoid(wf_tensor *x) { return unary("wf_sigmoid", WF_U_SIGMOID, x, 0, 0); }
wf_tensor *wf_relu(wf_tensor *x) { return unary("wf_relu", WF_U_RELU, x, 0, 0); }
wf_tensor *wf_silu(wf_tensor *x) { return unary("wf_silu", WF_U_SILU, x, 0, 0); }
wf_tensor *wf_square(wf_tensor *x) { return unary("wf_square", WF_U_SQUARE, x, 0, 0); }
wf_tensor *wf_sign(wf_tensor *x) { return unary("wf_sign", WF_U_SIGN, x, 0, 0); }
wf_tensor *wf_logical_not(wf_tensor *x) { return unary("wf_logical_not", WF_U_LOGICAL_NOT, x, 0, 0); }
wf_tensor *wf_isfinite(wf_tensor *x) { return unary("wf_isfinite", WF_U_ISFINITE, x, 0, 0); }
wf_tensor *wf_pow_scalar(wf_tensor *x, double e) { return unary("wf_pow_scalar", WF_U_POW, wf__autocast_arg(x, WF__AC_F32), e, 0); }

wf_tensor *wf_gelu(wf_tensor *x, wf_gelu_approx approximate) {
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_gelu: unknown approximate mode %d (WF_GELU_NONE or WF_GELU_TANH)", (int)approximate);
        return NULL;
    }
    return unary("wf_gelu", approximate == WF_GELU_TANH ? WF_U_GELU_TANH : WF_U_GELU, x, 0, 0);
}

wf_tensor *wf_clamp(wf_tensor *x, double lo, double hi) {
    if (lo != lo || hi != hi || lo > hi) {
        wf__error(WF_EINVAL, "wf_clamp: invalid bounds [%g, %g]", lo, hi);
        return NULL;
    }
    return unary("wf_clamp", WF_U_CLAMP, x, lo, hi);
}

/* In place: modify x's storage. Under autograd the op runs out of place on a copy of x
 * (which keeps what backward needs) and the result is written back with wf__adopt. */
static int unary_(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b) {
    if (!x) return wf__any_null(fname, 1, x), WF_ENULL;
    if (wf__check_inplace(fname, x)) return wf_error();
    if (!wf__kernels(x->device)) return wf_error();
    if (wf__needs_grad(1, &x)) {
        wf_scope_begin();
        wf_tensor *y = unary(fname, op, wf_clone(x), a, b);
        int rc = y ? wf__adopt(x, y) : wf_error();
        wf_scope_end();
        return rc;
    }
    return wf__unary_raw_(fname, op, x, a, b);
}

int wf_relu_(wf_tensor *x) { return unary_("wf_relu_", WF_U_RELU, x, 0, 0); }
int wf_clamp_(wf_tensor *x, double lo, double hi) {
    if (lo != lo || hi != hi || lo > hi) return wf__error(WF_EINVAL, "wf_clamp_: invalid bounds [%g, %g]", lo, hi);
    return unary_("wf_clamp_", WF_U_CLAMP, x, lo, hi);
}
