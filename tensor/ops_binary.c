/* tensor/ops_binary.c: the raw elementwise binary ops (tensor/ops_raw.h): broadcasting,
 * type promotion, scalar forms, where, and the in-place variants. The public functions
 * (wf_add, wf_add_, wf_where, ...) and their backward: autograd/fn_binary.c. */
#include "ops_raw.h"

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
static bool is_half(wf_dtype dt) { return dt == WF_BF16 || dt == WF_F16; }

wf_tensor *wf__binary_raw(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, wf_tensor **ins) {
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
    /* A backend that widens halves itself (binary_widens) gets them as they are for f32
     * add / sub / mul: the same result without a cast kernel, and backward the same too
     * (add and sub save nothing; mul's gy * b reads b widened again). Other ops keep the
     * casts: div's backward would square a half operand in its own dtype. */
    bool widen = k->binary_widens && dt == WF_F32 && (op == WF_B_ADD || op == WF_B_SUB || op == WF_B_MUL);
    wf_tensor *a2 = a, *b2 = b;
    if (a->dtype != dt && !(widen && is_half(a->dtype))) a2 = wf__to_dtype_raw(a, dt);
    if (b->dtype != dt && !(widen && is_half(b->dtype))) b2 = wf__to_dtype_raw(b, dt);
    if (!a2 || !b2) return NULL;
    wf_tensor *y = wf__empty(shape, nd, is_pred(op) ? WF_BOOL : dt, a->device);
    if (!y) return NULL;
    if (wf_numel(y)) {
        wf_tensor ae, be;
        expand_into(&ae, a2, nd, shape);
        expand_into(&be, b2, nd, shape);
        if (k->binary(op, y, &ae, &be)) { wf_tensor_free(y); return NULL; }
    }
    ins[0] = a2;
    ins[1] = b2;
    return y;
}

/* ---------------------------------------------------------------- scalar forms */

wf_tensor *wf__binary_scalar_raw(const char *fname, wf_binary_op op, wf_tensor *a, double s, bool reversed) {
    (void)fname;   /* names the op in messages of the generic paths */
    if (!a) return wf__any_null(fname, 1, a), NULL;
    const wf_kernels *k = wf__kernels(a->device);
    if (!k) return NULL;
    wf_dtype dt = a->dtype;
    bool integral = s == floor(s) && fabs(s) < 9.2e18;
    if (!wf_dtype_is_floating(dt) && !is_pred(op) && (op == WF_B_DIV || !integral)) dt = wf_get_default_dtype();
    if (dt == WF_BOOL && !is_pred(op)) dt = WF_I64;
    if (wf__need_kernel(k, fname, WF_OPF_BINARY, op, dt, a->device)) return NULL;
    wf_tensor *a2 = dt == a->dtype ? a : wf__to_dtype_raw(a, dt);
    if (!a2) return NULL;
    wf_tensor *y = wf__empty(a->shape, a->ndim, is_pred(op) ? WF_BOOL : dt, a->device);
    if (!y) return NULL;
    if (wf_numel(y) && k->binary_scalar(op, y, a2, s, reversed)) { wf_tensor_free(y); return NULL; }
    return y;
}

/* ---------------------------------------------------------------- where */

wf_tensor *wf__where_raw(wf_tensor *cond, wf_tensor *a, wf_tensor *b, wf_tensor **ins) {
    if (wf__any_null("wf_where", 3, cond, a, b)) return NULL;
    wf_tensor *ts[3] = { cond, a, b };
    if (wf__same_device("wf_where", ts, 3)) return NULL;
    int nd, nd2;
    int64_t s1[WF_MAX_DIMS], shape[WF_MAX_DIMS];
    if (wf__broadcast_shapes("wf_where", a->ndim, a->shape, b->ndim, b->shape, &nd, s1)) return NULL;
    if (wf__broadcast_shapes("wf_where", cond->ndim, cond->shape, nd, s1, &nd2, shape)) return NULL;
    wf_dtype dt = wf__result_type(a, b);
    wf_tensor *a2 = a->dtype == dt ? a : wf__to_dtype_raw(a, dt), *b2 = b->dtype == dt ? b : wf__to_dtype_raw(b, dt);
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
    ins[0] = a2;
    ins[1] = b2;
    return y;
}

/* ---------------------------------------------------------------- in place */

int wf__binary_check_(const char *fname, wf_tensor *a, wf_tensor *b) {
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
    wf_dtype dt = wf__result_type(a, b);
    if (dt != a->dtype && wf_dtype_is_floating(dt) && !wf_dtype_is_floating(a->dtype))
        return wf__error(WF_EDTYPE, "%s: result type %s can't be cast to the output's type %s", fname,
                         wf_dtype_name(dt), wf_dtype_name(a->dtype));
    return 0;
}

int wf__binary_raw_(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, double alpha) {
    int rc = 0;
    wf_scope_begin();
    wf_tensor *b2 = b->dtype == a->dtype ? b : wf__to_dtype_raw(b, a->dtype);
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
    wf_scope_end();
    return rc;
}

int wf__binary_scalar_raw_(const char *fname, wf_binary_op op, wf_tensor *a, double s) {
    const wf_kernels *k = wf__kernels(a->device);
    int rc = k ? wf__need_kernel(k, fname, WF_OPF_BINARY, op, a->dtype, a->device) : wf_error();
    if (!rc && wf_numel(a)) rc = k->binary_scalar(op, a, a, s, false);
    if (!rc) wf__bump_version(a);
    return rc;
}

int wf__fill_raw_(wf_tensor *a, double v) {
    const wf_kernels *k = wf__kernels(a->device);
    int rc = !k ? wf_error() : wf_numel(a) ? k->fill(a, v) : 0;
    if (!rc) wf__bump_version(a);
    return rc;
}
