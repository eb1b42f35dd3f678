/* tensor/ops_binary.c: elementwise binary front-ends (broadcasting, type promotion),
 * scalar forms, where, and the in-place variants. Backward: autograd/backward_binary.c. */
#include "tensor_impl.h"
#include "../autograd/backward.h"

#include <math.h>
#include <string.h>

/* A stack-only view of t expanded to shape (no handle allocation: kernels read geometry). */
static void expand_into(wf_tensor *dst, const wf_tensor *t, int nd, const int64_t *shape) {
    *dst = *t;
    int lead = nd - t->ndim;
    dst->ndim = nd;
    for (int i = nd - 1; i >= 0; i--) {
        int j = i - lead;
        dst->shape[i] = shape[i];
        dst->stride[i] = (j < 0 || (t->shape[j] == 1 && shape[i] != 1)) ? 0 : t->stride[j];
    }
}

static bool is_pred(wf_binary_op op) { return op >= WF_B_EQ; }

static const char *const bw_names[WF_B_COUNT] = {
    [WF_B_ADD] = "AddBackward", [WF_B_SUB] = "SubBackward", [WF_B_MUL] = "MulBackward",
    [WF_B_DIV] = "DivBackward", [WF_B_POW] = "PowBackward", [WF_B_MAX] = "MaximumBackward",
    [WF_B_MIN] = "MinimumBackward",
};
static wf_backward_fn bw_fn(wf_binary_op op) {
    switch (op) {
    case WF_B_ADD: return wf__add_backward;
    case WF_B_SUB: return wf__sub_backward;
    case WF_B_MUL: return wf__mul_backward;
    case WF_B_DIV: return wf__div_backward;
    case WF_B_POW: return wf__pow_backward;
    default: return wf__minmax_backward;
    }
}

/* Returns y, or NULL once y is freed (recording ran out of memory). */
static wf_tensor *record_binary(wf_binary_op op, wf_tensor *y, wf_tensor *a, wf_tensor *b) {
    if (is_pred(op) || op == WF_B_AND || op == WF_B_OR || !wf_dtype_is_floating(y->dtype)) return y;
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
    if (wf__any_null(fname, 2, a, b)) return NULL;
    wf_tensor *ts[2] = { a, b };
    if (wf__same_device(fname, ts, 2)) return NULL;
    const wf_kernels *k = wf__kernels(a->device);
    if (!k) return NULL;
    int nd;
    int64_t shape[WF_MAX_DIMS];
    if (wf__broadcast_shapes(fname, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    wf_dtype dt = wf__result_type(a, b);
    if ((op == WF_B_DIV || (op == WF_B_POW && !wf_dtype_is_floating(dt))) && !wf_dtype_is_floating(dt))
        dt = wf_get_default_dtype();   /* true division */
    if (op == WF_B_AND || op == WF_B_OR) dt = WF_BOOL;
    if (dt == WF_BOOL && !(is_pred(op) || op == WF_B_AND || op == WF_B_OR || op == WF_B_MAX || op == WF_B_MIN)) {
        if (op == WF_B_ADD || op == WF_B_MUL) { /* bool + bool is logical or/and in PyTorch */
            op = op == WF_B_ADD ? WF_B_OR : WF_B_AND;
        } else {
            wf__error(WF_EDTYPE, "%s: not defined for bool tensors", fname);
            return NULL;
        }
    }
    if (wf__need_kernel(k, fname, WF_OPF_BINARY, op, dt, a->device)) return NULL;
    wf_tensor *a2 = a, *b2 = b;
    if (a->dtype != dt) a2 = wf_to_dtype(a, dt);
    if (b->dtype != dt) b2 = wf_to_dtype(b, dt);
    if (!a2 || !b2) return NULL;
    wf_tensor *y = wf__empty(shape, nd, is_pred(op) ? WF_BOOL : dt, a->device);
    if (!y) return NULL;
    if (wf_numel(y)) {
        wf_tensor ae, be;
        expand_into(&ae, a2, nd, shape);
        expand_into(&be, b2, nd, shape);
        if (k->binary(op, y, &ae, &be)) { wf_tensor_free(y); return NULL; }
    }
    return record_binary(op, y, a2, b2);
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
    (void)fname;   /* names the op in messages of the generic paths */
    if (!a) return wf__any_null(fname, 1, a), NULL;
    const wf_kernels *k = wf__kernels(a->device);
    if (!k) return NULL;
    wf_dtype dt = a->dtype;
    bool integral = s == floor(s) && fabs(s) < 9.2e18;
    if (!wf_dtype_is_floating(dt) && !is_pred(op) && (op == WF_B_DIV || !integral)) dt = wf_get_default_dtype();
    if (dt == WF_BOOL && !is_pred(op)) dt = WF_I64;
    if (wf__need_kernel(k, fname, WF_OPF_BINARY, op, dt, a->device)) return NULL;
    wf_tensor *a2 = dt == a->dtype ? a : wf_to_dtype(a, dt);
    if (!a2) return NULL;
    wf_tensor *y = wf__empty(a->shape, a->ndim, is_pred(op) ? WF_BOOL : dt, a->device);
    if (!y) return NULL;
    if (wf_numel(y) && k->binary_scalar(op, y, a2, s, reversed)) { wf_tensor_free(y); return NULL; }
    if (!is_pred(op) && wf_dtype_is_floating(dt)) {
        wf_node *n = wf__record("ScalarOpBackward", wf__scalar_op_backward, y, 1, &a2);
        if (n) {
            n->i[0] = op;
            n->i[1] = reversed;
            n->f[0] = s;
        }
        bool save = op == WF_B_MAX || op == WF_B_MIN || (op == WF_B_DIV && reversed);
        y = wf__recorded(y, n, n && (!save || wf__save(n, a2) >= 0), 1, &a2);
    }
    return y;
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
    if (wf__any_null("wf_where", 3, cond, a, b)) return NULL;
    wf_tensor *ts[3] = { cond, a, b };
    if (wf__same_device("wf_where", ts, 3)) return NULL;
    int nd, nd2;
    int64_t s1[WF_MAX_DIMS], shape[WF_MAX_DIMS];
    if (wf__broadcast_shapes("wf_where", a->ndim, a->shape, b->ndim, b->shape, &nd, s1)) return NULL;
    if (wf__broadcast_shapes("wf_where", cond->ndim, cond->shape, nd, s1, &nd2, shape)) return NULL;
    wf_dtype dt = wf__result_type(a, b);
    wf_tensor *a2 = a->dtype == dt ? a : wf_to_dtype(a, dt), *b2 = b->dtype == dt ? b : wf_to_dtype(b, dt);
    if (!a2 || !b2) return NULL;
    wf_tensor *y = wf__empty(shape, nd2, dt, a->device);
    if (!y) return NULL;
    if (wf_numel(y)) {
        wf_tensor ce, ae, be;
        expand_into(&ce, cond, nd2, shape);
        expand_into(&ae, a2, nd2, shape);
        expand_into(&be, b2, nd2, shape);
        const wf_kernels *k = wf__kernels(y->device);
        if (!k || wf__need_kernel(k, "wf_where", WF_OPF_KERNEL, WF_K_WHERE, dt, y->device) ||
            k->where(y, &ce, &ae, &be)) { wf_tensor_free(y); return NULL; }
    }
    if (wf_dtype_is_floating(dt)) {
        wf_tensor *ins[2] = { a2, b2 };
        wf_node *n = wf__record("WhereBackward", wf__where_backward, y, 2, ins);
        y = wf__recorded(y, n, n && wf__save(n, cond) >= 0, 2, ins);
    }
    return y;
}

/* ---------------------------------------------------------------- in place */

static int binary_(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, double alpha) {
    if (wf__any_null(fname, 2, a, b)) return wf_error();
    wf_tensor *ts[2] = { a, b };
    if (wf__same_device(fname, ts, 2)) return wf_error();
    int nd;
    int64_t shape[WF_MAX_DIMS];
    if (wf__broadcast_shapes(fname, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return wf_error();
    if (nd != a->ndim || memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd)) {
        char b1[96], b2[96];
        return wf__error(WF_ESHAPE, "%s: output shape %s does not match the broadcast shape %s", fname,
                         wf_shape_str(a, b1, sizeof b1), wf__shape_text(nd, shape, b2, sizeof b2));
    }
    if (wf__check_inplace(fname, a)) return wf_error();
    wf_dtype dt = wf__result_type(a, b);
    if (dt != a->dtype && wf_dtype_is_floating(dt) && !wf_dtype_is_floating(a->dtype))
        return wf__error(WF_EDTYPE, "%s: result type %s can't be cast to the output's type %s", fname,
                         wf_dtype_name(dt), wf_dtype_name(a->dtype));
    int rc = 0;
    wf_scope_begin();
    if (wf__needs_grad(2, ts)) {
        /* autograd: compute out of place on a copy of a, then write back and take over the
         * history (the copy keeps what backward needs unmodified) */
        wf_tensor *ac = wf_clone(a);
        wf_tensor *rhs = alpha == 1.0 ? b : wf_mul_scalar(b, alpha);
        wf_tensor *y = binary(fname, op, ac, rhs);
        if (y && y->dtype != a->dtype) y = wf_to_dtype(y, a->dtype);
        rc = y ? wf__adopt(a, y) : wf_error();
    } else {
        wf_tensor *b2 = b->dtype == a->dtype ? b : wf_to_dtype(b, a->dtype);
        if (!b2) rc = wf_error();
        else if (wf_numel(a)) {
            wf_tensor be;
            expand_into(&be, b2, a->ndim, a->shape);
            const wf_kernels *k = wf__kernels(a->device);
            if (!k) {
                rc = wf_error();
            } else if (op == WF_B_ADD || op == WF_B_SUB) {
                rc = wf__need_kernel(k, fname, WF_OPF_KERNEL, WF_K_AXPY, a->dtype, a->device);
                if (!rc) rc = k->axpy(a, &be, op == WF_B_ADD ? alpha : -alpha);
            } else {
                rc = wf__need_kernel(k, fname, WF_OPF_BINARY, op, a->dtype, a->device);
                if (!rc) rc = k->binary(op, a, a, &be);
            }
        }
        if (!rc) wf__bump_version(a);
    }
    wf_scope_end();
    return rc;
}

int wf_add_(wf_tensor *a, wf_tensor *b) { return binary_("wf_add_", WF_B_ADD, a, b, 1.0); }
int wf_sub_(wf_tensor *a, wf_tensor *b) { return binary_("wf_sub_", WF_B_SUB, a, b, 1.0); }
int wf_mul_(wf_tensor *a, wf_tensor *b) { return binary_("wf_mul_", WF_B_MUL, a, b, 1.0); }
int wf_div_(wf_tensor *a, wf_tensor *b) { return binary_("wf_div_", WF_B_DIV, a, b, 1.0); }
int wf_add_scaled_(wf_tensor *a, wf_tensor *b, double alpha) { return binary_("wf_add_scaled_", WF_B_ADD, a, b, alpha); }

static int scalar_(const char *fname, wf_binary_op op, wf_tensor *a, double s) {
    if (!a) return wf__any_null(fname, 1, a), WF_ENULL;
    if (wf__check_inplace(fname, a)) return wf_error();
    int rc = 0;
    if (wf__needs_grad(1, &a)) {
        wf_scope_begin();
        wf_tensor *ac = wf_clone(a);
        wf_tensor *y = binary_scalar(fname, op, ac, s, false);
        rc = y ? wf__adopt(a, y) : wf_error();
        wf_scope_end();
        return rc;
    }
    const wf_kernels *k = wf__kernels(a->device);
    rc = k ? wf__need_kernel(k, fname, WF_OPF_BINARY, op, a->dtype, a->device) : wf_error();
    if (!rc && wf_numel(a)) rc = k->binary_scalar(op, a, a, s, false);
    if (!rc) wf__bump_version(a);
    return rc;
}

int wf_add_scalar_(wf_tensor *a, double s) { return scalar_("wf_add_scalar_", WF_B_ADD, a, s); }
int wf_mul_scalar_(wf_tensor *a, double s) { return scalar_("wf_mul_scalar_", WF_B_MUL, a, s); }

int wf_fill_(wf_tensor *a, double v) {
    if (!a) return wf__any_null("wf_fill_", 1, a), WF_ENULL;
    if (wf__check_fill_value("wf_fill_", a->dtype, v)) return wf_error();
    if (wf__check_inplace("wf_fill_", a)) return wf_error();
    int rc = wf_numel(a) ? wf__kernels(a->device)->fill(a, v) : 0;
    if (rc) return rc;
    wf__bump_version(a);
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
