/* autograd/backward_binary.c: gradients of binary ops, summed back over broadcast dims. */
#include "backward.h"

#define IN(i) (&n->in_meta[i])
#define SET(i, expr) do { if (n->needs[i]) { gx[i] = wf__reduce_to((expr), IN(i)); if (!gx[i]) return wf_error(); } } while (0)

int wf__add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    SET(0, gy[0]);
    SET(1, gy[0]);
    return 0;
}

int wf__sub_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    SET(0, gy[0]);
    SET(1, wf_neg(gy[0]));
    return 0;
}

int wf__mul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    SET(0, wf_mul(gy[0], b));
    SET(1, wf_mul(gy[0], a));
    return 0;
}

int wf__div_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
    if (!a || !b) return wf_error();
    SET(0, wf_div(gy[0], b));
    SET(1, wf_neg(wf_div(wf_mul(gy[0], a), wf_mul(b, b))));
    return 0;
}

/* y = a^b: da = b a^(b-1), db = y log(a) (taken as 0 where a == 0, as PyTorch does) */
int wf__pow_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
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
int wf__minmax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
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

int wf__where_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *c = wf__saved(n, 0);
    if (!c) return wf_error();
    wf_tensor *z = wf_zeros_on(NULL, 0, gy[0]->dtype, gy[0]->device);
    SET(0, wf_where(c, gy[0], z));
    SET(1, wf_where(c, z, gy[0]));
    return 0;
}

/* y = a op s (or s op a when reversed) */
int wf__scalar_op_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
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
