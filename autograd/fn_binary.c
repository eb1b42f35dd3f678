/* autograd/fn_binary.c: the public elementwise binary functions (wf_add, wf_mul_scalar,
 * wf_where, the in-place wf_add_ ..., wf_fill_) and their backward, summed back over
 * broadcast dims. The computation is tensor/ops_binary.c's raw ops; this file adds the graph
 * node and in-place adoption. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

/* ---------------------------------------------------------------- backward */

#define IN(i) (&n->in_meta[i])
#define SET(i, expr) do { if (n->needs[i]) { gx[i] = wf__reduce_to((expr), IN(i)); if (!gx[i]) return wf_error(); } } while (0)

static int add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    SET(0, gy[0]);
    SET(1, gy[0]);
    return 0;
}

static int sub_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    SET(0, gy[0]);
    SET(1, wf_neg(gy[0]));
    return 0;
}

static int mul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    SET(0, wf_mul(gy[0], b));
    SET(1, wf_mul(gy[0], a));
    return 0;
}

static int div_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    SET(0, wf_div(gy[0], b));
    SET(1, wf_neg(wf_div(wf_mul(gy[0], a), wf_mul(b, b))));
    return 0;
}

/* y = a^b: da = b a^(b-1), db = y log(a) (taken as 0 where a == 0, as PyTorch does) */
static int pow_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1), *y = wf__saved(n, 2);
    if (!a || !b || !y) return wf_error();
    SET(0, wf_mul(gy[0], wf_mul(b, wf_pow(a, wf_sub_scalar(b, 1.0)))));
    if (n->needs[1]) {
        wf_tensor *z = wf_zeros_like(y);
        wf_tensor *lg = wf_where(wf_eq_scalar(a, 0.0), z, wf_mul(y, wf_log(a)));
        SET(1, wf_mul(gy[0], lg));
    }
    return 0;
}

/* maximum/minimum: the gradient goes to the selected input; ties split it in half */
static int minmax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    bool is_max = n->i[0] == WF_B_MAX;
    wf_tensor *win = is_max ? wf_gt(a, b) : wf_lt(a, b);
    wf_tensor *tie = wf_eq(a, b);
    wf_tensor *wa = wf_add(wf_to_dtype(win, gy[0]->dtype), wf_mul_scalar(wf_to_dtype(tie, gy[0]->dtype), 0.5));
    SET(0, wf_mul(gy[0], wa));
    SET(1, wf_mul(gy[0], wf_rsub_scalar(wa, 1.0)));
    return 0;
}

static int where_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *c = wf__saved(n, 0);
    if (!c) return wf_error();
    wf_tensor *z = wf_zeros_on(NULL, 0, gy[0]->dtype, gy[0]->device);
    SET(0, wf_where(c, gy[0], z));
    SET(1, wf_where(c, z, gy[0]));
    return 0;
}

/* y = a op s (or s op a when reversed) */
static int scalar_op_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    int op = (int)n->i[0];
    bool rev = n->i[1] != 0;
    double s = n->f[0];
    wf_tensor *g = gy[0], *r = NULL;
    switch (op) {
    case WF_B_ADD: r = g; break;
    case WF_B_SUB: r = rev ? wf_neg(g) : g; break;
    case WF_B_MUL: r = wf_mul_scalar(g, s); break;
    case WF_B_DIV:
        if (!rev) r = wf_div_scalar(g, s);
        else {
            wf_tensor *a = wf__saved(n, 0);
            if (!a) return wf_error();
            r = wf_mul_scalar(wf_div(g, wf_mul(a, a)), -s);
        }
        break;
    case WF_B_MAX: case WF_B_MIN: {
        wf_tensor *a = wf__saved(n, 0);
        if (!a) return wf_error();
        wf_tensor *win = op == WF_B_MAX ? wf_gt_scalar(a, s) : wf_lt_scalar(a, s);
        wf_tensor *w = wf_add(wf_to_dtype(win, g->dtype), wf_mul_scalar(wf_to_dtype(wf_eq_scalar(a, s), g->dtype), 0.5));
        r = wf_mul(g, w);
        break;
    }
    default:
        return wf__error(WF_EAUTOGRAD, "ScalarOpBackward: op %d has no gradient", op);
    }
    gx[0] = r;
    return r ? 0 : wf_error();
}

/* ---------------------------------------------------------------- forward */

static bool is_pred(wf_binary_op op) { return op >= WF_B_EQ; }

static const char *const bw_names[WF_B_COUNT] = {
    [WF_B_ADD] = "AddBackward", [WF_B_SUB] = "SubBackward", [WF_B_MUL] = "MulBackward",
    [WF_B_DIV] = "DivBackward", [WF_B_POW] = "PowBackward", [WF_B_MAX] = "MaximumBackward",
    [WF_B_MIN] = "MinimumBackward",
};
static wf_backward_fn bw_fn(wf_binary_op op) {
    switch (op) {
    case WF_B_ADD: return add_backward;
    case WF_B_SUB: return sub_backward;
    case WF_B_MUL: return mul_backward;
    case WF_B_DIV: return div_backward;
    case WF_B_POW: return pow_backward;
    default: return minmax_backward;
    }
}

/* The raw op computed on ins[]: the inputs cast to the result's dtype without history. When
 * an input needs a gradient, that cast becomes the node's input with a ToCopyBackward to the
 * original (wf__adopt_cast), so its gradient flows back as through wf_to_dtype. The cast is
 * not made a second time: under autocast every residual add (an f32 stream plus a bf16
 * branch) used to cast the branch twice. Returns false (error recorded) when recording ran
 * out of memory. */
static bool with_history(wf_tensor *const *orig, wf_tensor **ins, int n) {
    if (!wf__needs_grad(n, orig)) return true;
    for (int i = 0; i < n; i++)
        if (ins[i] != orig[i] && !wf__adopt_cast(ins[i], orig[i])) return false;
    return true;
}

/* Returns y, or NULL once y is freed (recording ran out of memory). */
static wf_tensor *record_binary(wf_binary_op op, wf_tensor *y, wf_tensor *a, wf_tensor *b) {
    wf_tensor *ins[2] = { a, b };
    wf_node *n = wf__record(bw_names[op], bw_fn(op), y, 2, ins);
    bool ok = true;
    if (n) {
        n->i[0] = op;
        switch (op) {
        case WF_B_MUL: case WF_B_DIV: case WF_B_MAX: case WF_B_MIN:
            ok = wf__save(n, a) >= 0 && wf__save(n, b) >= 0; break;
        case WF_B_POW:
            ok = wf__save(n, a) >= 0 && wf__save(n, b) >= 0 && wf__save(n, y) >= 0; break;
        default: break;
        }
    }
    return wf__recorded(y, n, ok, 2, ins);
}

static wf_tensor *binary(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b) {
    wf_tensor *ins[2];
    wf_tensor *y = wf__binary_raw(fname, op, a, b, ins);
    if (!y || is_pred(op) || op == WF_B_AND || op == WF_B_OR || !wf_dtype_is_floating(y->dtype)) return y;
    wf_tensor *orig[2] = { a, b };
    if (!with_history(orig, ins, 2)) { wf_tensor_free(y); return NULL; }
    return record_binary(op, y, ins[0], ins[1]);
}

wf_tensor *wf_add(wf_tensor *a, wf_tensor *b) { return binary("wf_add", WF_B_ADD, a, b); }
wf_tensor *wf_sub(wf_tensor *a, wf_tensor *b) { return binary("wf_sub", WF_B_SUB, a, b); }
wf_tensor *wf_mul(wf_tensor *a, wf_tensor *b) { return binary("wf_mul", WF_B_MUL, a, b); }
wf_tensor *wf_div(wf_tensor *a, wf_tensor *b) { return binary("wf_div", WF_B_DIV, a, b); }
wf_tensor *wf_pow(wf_tensor *a, wf_tensor *b) { return binary("wf_pow", WF_B_POW, a, b); }
wf_tensor *wf_maximum(wf_tensor *a, wf_tensor *b) { return binary("wf_maximum", WF_B_MAX, a, b); }
wf_tensor *wf_minimum(wf_tensor *a, wf_tensor *b) { return binary("wf_minimum", WF_B_MIN, a, b); }
wf_tensor *wf_eq(wf_tensor *a, wf_tensor *b) { return binary("wf_eq", WF_B_EQ, a, b); }
wf_tensor *wf_ne(wf_tensor *a, wf_tensor *b) { return binary("wf_ne", WF_B_NE, a, b); }
wf_tensor *wf_lt(wf_tensor *a, wf_tensor *b) { return binary("wf_lt", WF_B_LT, a, b); }
wf_tensor *wf_le(wf_tensor *a, wf_tensor *b) { return binary("wf_le", WF_B_LE, a, b); }
wf_tensor *wf_gt(wf_tensor *a, wf_tensor *b) { return binary("wf_gt", WF_B_GT, a, b); }
wf_tensor *wf_ge(wf_tensor *a, wf_tensor *b) { return binary("wf_ge", WF_B_GE, a, b); }
wf_tensor *wf_logical_and(wf_tensor *a, wf_tensor *b) { return binary("wf_logical_and", WF_B_AND, a, b); }
wf_tensor *wf_logical_or(wf_tensor *a, wf_tensor *b) { return binary("wf_logical_or", WF_B_OR, a, b); }

/* ---------------------------------------------------------------- scalar forms */

static wf_tensor *binary_scalar(const char *fname, wf_binary_op op, wf_tensor *a, double s, bool reversed) {
    wf_tensor *y = wf__binary_scalar_raw(fname, op, a, s, reversed);
    /* an integer a was cast to y's dtype: it cannot require grad, so nothing is recorded */
    if (!y || is_pred(op) || y->dtype != a->dtype || !wf_dtype_is_floating(y->dtype)) return y;
    wf_node *n = wf__record("ScalarOpBackward", scalar_op_backward, y, 1, &a);
    if (n) {
        n->i[0] = op;
        n->i[1] = reversed;
        n->f[0] = s;
    }
    bool save = op == WF_B_MAX || op == WF_B_MIN || (op == WF_B_DIV && reversed);
    return wf__recorded(y, n, n && (!save || wf__save(n, a) >= 0), 1, &a);
}

wf_tensor *wf_add_scalar(wf_tensor *a, double s) { return binary_scalar("wf_add_scalar", WF_B_ADD, a, s, false); }
wf_tensor *wf_sub_scalar(wf_tensor *a, double s) { return binary_scalar("wf_sub_scalar", WF_B_SUB, a, s, false); }
wf_tensor *wf_rsub_scalar(wf_tensor *a, double s) { return binary_scalar("wf_rsub_scalar", WF_B_SUB, a, s, true); }
wf_tensor *wf_mul_scalar(wf_tensor *a, double s) { return binary_scalar("wf_mul_scalar", WF_B_MUL, a, s, false); }
wf_tensor *wf_div_scalar(wf_tensor *a, double s) { return binary_scalar("wf_div_scalar", WF_B_DIV, a, s, false); }
wf_tensor *wf_rdiv_scalar(wf_tensor *a, double s) { return binary_scalar("wf_rdiv_scalar", WF_B_DIV, a, s, true); }
wf_tensor *wf_maximum_scalar(wf_tensor *a, double s) { return binary_scalar("wf_maximum_scalar", WF_B_MAX, a, s, false); }
wf_tensor *wf_minimum_scalar(wf_tensor *a, double s) { return binary_scalar("wf_minimum_scalar", WF_B_MIN, a, s, false); }
wf_tensor *wf_eq_scalar(wf_tensor *a, double s) { return binary_scalar("wf_eq_scalar", WF_B_EQ, a, s, false); }
wf_tensor *wf_ne_scalar(wf_tensor *a, double s) { return binary_scalar("wf_ne_scalar", WF_B_NE, a, s, false); }
wf_tensor *wf_lt_scalar(wf_tensor *a, double s) { return binary_scalar("wf_lt_scalar", WF_B_LT, a, s, false); }
wf_tensor *wf_le_scalar(wf_tensor *a, double s) { return binary_scalar("wf_le_scalar", WF_B_LE, a, s, false); }
wf_tensor *wf_gt_scalar(wf_tensor *a, double s) { return binary_scalar("wf_gt_scalar", WF_B_GT, a, s, false); }
wf_tensor *wf_ge_scalar(wf_tensor *a, double s) { return binary_scalar("wf_ge_scalar", WF_B_GE, a, s, false); }

/* ---------------------------------------------------------------- where */

wf_tensor *wf_where(wf_tensor *cond, wf_tensor *a, wf_tensor *b) {
    wf_tensor *ins[2];
    wf_tensor *y = wf__where_raw(cond, a, b, ins);
    if (!y || !wf_dtype_is_floating(y->dtype)) return y;
    wf_tensor *orig[2] = { a, b };
    if (!with_history(orig, ins, 2)) { wf_tensor_free(y); return NULL; }
    wf_node *n = wf__record("WhereBackward", where_backward, y, 2, ins);
    return wf__recorded(y, n, n && wf__save(n, cond) >= 0, 2, ins);
}

/* ---------------------------------------------------------------- in place
 * Under autograd the op runs out of place on a copy of a (which keeps what backward needs
 * unmodified); the result is written back and takes over the history (wf__adopt). */

static int binary_(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, double alpha) {
    if (wf__binary_check_(fname, a, b)) return wf_error();
    if (wf__check_inplace(fname, a)) return wf_error();
    wf_tensor *ts[2] = { a, b };
    if (!wf__needs_grad(2, ts)) return wf__binary_raw_(fname, op, a, b, alpha);
    wf_scope_begin();
    wf_tensor *ac = wf_clone(a);
    wf_tensor *rhs = alpha == 1.0 ? b : wf_mul_scalar(b, alpha);
    wf_tensor *y = binary(fname, op, ac, rhs);
    if (y && y->dtype != a->dtype) y = wf_to_dtype(y, a->dtype);
    int rc = y ? wf__adopt(a, y) : wf_error();
    wf_scope_end();
    return rc;
}

static int scalar_(const char *fname, wf_binary_op op, wf_tensor *a, double s) {
    if (!a) return wf__any_null(fname, 1, a), WF_ENULL;
    if (wf__check_inplace(fname, a)) return wf_error();
    if (!wf__needs_grad(1, &a)) return wf__binary_scalar_raw_(fname, op, a, s);
    wf_scope_begin();
    wf_tensor *ac = wf_clone(a);
    wf_tensor *y = binary_scalar(fname, op, ac, s, false);
    int rc = y ? wf__adopt(a, y) : wf_error();
    wf_scope_end();
    return rc;
}

int wf_add_(wf_tensor *a, wf_tensor *b) { return binary_("wf_add_", WF_B_ADD, a, b, 1.0); }
int wf_sub_(wf_tensor *a, wf_tensor *b) { return binary_("wf_sub_", WF_B_SUB, a, b, 1.0); }
int wf_mul_(wf_tensor *a, wf_tensor *b) { return binary_("wf_mul_", WF_B_MUL, a, b, 1.0); }
int wf_div_(wf_tensor *a, wf_tensor *b) { return binary_("wf_div_", WF_B_DIV, a, b, 1.0); }
int wf_add_scaled_(wf_tensor *a, wf_tensor *b, double alpha) { return binary_("wf_add_scaled_", WF_B_ADD, a, b, alpha); }
int wf_add_scalar_(wf_tensor *a, double s) { return scalar_("wf_add_scalar_", WF_B_ADD, a, s); }
int wf_mul_scalar_(wf_tensor *a, double s) { return scalar_("wf_mul_scalar_", WF_B_MUL, a, s); }

int wf_fill_(wf_tensor *a, double v) {
    if (!a) return wf__any_null("wf_fill_", 1, a), WF_ENULL;
    if (wf__check_fill_value("wf_fill_", a->dtype, v)) return wf_error();
    if (wf__check_inplace("wf_fill_", a)) return wf_error();
    int rc = wf__fill_raw_(a, v);
    if (rc) return rc;
    if (a->grad_fn) {   /* the old history no longer reaches this value */
        wf_node *old = a->grad_fn;
        a->grad_fn = NULL;
        a->requires_grad = false;
        wf__node_release(old);
    }
    return 0;
}
static int wf_zero___body(wf_tensor *a) { return wf_fill_(a, 0.0); }

int wf_zero_(wf_tensor *a) { WF__NAMED("wf_zero_", int, r < 0, wf_zero___body(a)); }
