/* tensor/ops_matmul.c: the raw products of wf_matmul, wf_bmm and wf_linear over the device
 * GEMM (tensor/ops_raw.h); the public functions and their backward: autograd/fn_matmul.c.
 *
 * Every product ends in one or more calls of wf__kernels(dev)->gemm. Operands are handed to
 * GEMM as they are stored when their last two dims allow it (row-major with a leading
 * dimension, or transposed: a wf_t / wf_transpose view costs no copy); otherwise a
 * contiguous copy is made. Batch dims broadcast with stride 0. A batched product whose
 * right operand is one shared matrix is folded into one tall GEMM ([B*m, k] @ [k, n]). */
#include "ops_raw.h"

#include <string.h>

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static char *dptr(const wf_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype);
}

/* A matrix rows x cols with strides (sr, sc) as GEMM sees it: stored row-major (trans =
 * false) or as its transpose (trans = true), with leading dimension ld. False if neither. */
typedef struct { bool trans; int64_t ld; } mat_layout;
static bool layout_of(int64_t r, int64_t c, int64_t sr, int64_t sc, mat_layout *out) {
    if ((c <= 1 || sc == 1) && (r <= 1 || sr >= max64(c, 1))) {
        *out = (mat_layout){ false, r <= 1 ? max64(c, 1) : sr };
        return true;
    }
    if ((r <= 1 || sr == 1) && (c <= 1 || sc >= max64(r, 1))) {
        *out = (mat_layout){ true, c <= 1 ? max64(r, 1) : sc };
        return true;
    }
    return false;
}

/* contiguous copy with no autograd (a temporary of the current scope) */
static wf_tensor *contig_raw(wf_tensor *t, const wf_kernels *K) {
    wf_tensor *c = wf__empty(t->shape, t->ndim, t->dtype, t->device);
    if (!c) return NULL;
    if (t->device.type != WF_DEV_META && K->copy(c, t)) return NULL;
    return c;
}

static int check_pair(const char *op, wf_tensor *a, wf_tensor *b) {
    if (a->dtype != b->dtype)
        return wf__error(WF_EDTYPE, "%s: dtype mismatch (%s and %s); cast one with wf_to_dtype", op,
                         wf_dtype_name(a->dtype), wf_dtype_name(b->dtype));
    if (!wf_dtype_is_floating(a->dtype))
        return wf__error(WF_EDTYPE, "%s: %s tensors are not supported (floating dtypes only)", op,
                         wf_dtype_name(a->dtype));
    if (wf__same_device(op, (wf_tensor *[]){ a, b }, 2)) return wf_error();
    return 0;
}

static int inner_error(const char *op, wf_tensor *a, wf_tensor *b, int64_t ka, int64_t kb) {
    char s1[96], s2[96];
    return wf__error(WF_ESHAPE, "%s: %s @ %s: inner dimensions differ (%lld vs %lld)", op,
                     wf_shape_str(a, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2),
                     (long long)ka, (long long)kb);
}

/* Do batch dims (sizes shp, strides st; size-1 dims already dropped) step with one stride? */
static bool one_stride(int nd, const int64_t *shp, const int64_t *st) {
    for (int i = 0; i + 1 < nd; i++)
        if (st[i] != st[i + 1] * shp[i + 1]) return false;
    return true;
}

static bool any_zero(int nd, const int64_t *st) {
    for (int i = 0; i < nd; i++)
        if (!st[i]) return true;
    return false;
}

/* A contiguous copy of operand t's matrices [r, c] over the batch (sizes shp, element strides
 * st aligned to them), kept in the orientation GEMM reads (l): a transposed operand is packed
 * as [..., c, r] so that the copy reads and writes along the same unit stride. On return st
 * holds the packed batch strides and l its layout. No autograd; a temporary of the current
 * scope. */
static wf_tensor *pack_batch(wf_tensor *t, int nd, const int64_t *shp, int64_t *st, int64_t r, int64_t c,
                             mat_layout *l, const wf_kernels *K) {
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    int64_t sr = t->stride[t->ndim - 2], sc = t->stride[t->ndim - 1];
    for (int i = 0; i < nd; i++) { shape[i] = shp[i]; stride[i] = st[i]; }
    shape[nd] = l->trans ? c : r; stride[nd] = l->trans ? sc : sr;
    shape[nd + 1] = l->trans ? r : c; stride[nd + 1] = l->trans ? sr : sc;
    /* the batch strides above are relative to t's data pointer (dptr), which includes the offset */
    wf_tensor *src = wf__view_of(t, nd + 2, shape, stride, t->offset);
    wf_tensor *dst = src ? wf__empty(shape, nd + 2, t->dtype, t->device) : NULL;
    if (!dst || K->copy(dst, src)) return NULL;
    for (int i = 0; i < nd; i++) st[i] = dst->stride[i];
    *l = (mat_layout){ l->trans, max64(shape[nd + 1], 1) };
    return dst;
}

/* y = a @ b, both at least 2-D, y allocated (contiguous) with the broadcast batch shape.
 * No autograd. Returns 0 or a code. */
static int matmul_into(wf_tensor *y, wf_tensor *a, wf_tensor *b) {
    if (y->device.type == WF_DEV_META) {
        wf__meta_flops_add(2 * wf__numel(y->ndim, y->shape) * a->shape[a->ndim - 1]);
        return 0;
    }
    const wf_kernels *K = wf__kernels(y->device);
    if (!K) return wf_error();
    int nk = wf__need_kernel(K, "wf_matmul", WF_OPF_KERNEL, WF_K_GEMM, y->dtype, y->device);
    if (nk) return nk;
    int nb = y->ndim - 2;
    int64_t m = y->shape[nb], n = y->shape[nb + 1], k = a->shape[a->ndim - 1];
    if (wf__numel(y->ndim, y->shape) == 0) return 0;

    mat_layout la, lb;
    int rc = 0;
    wf_scope_begin();
    if (!layout_of(m, k, a->stride[a->ndim - 2], a->stride[a->ndim - 1], &la)) {
        a = contig_raw(a, K);
        if (!a) { rc = wf_error(); goto out; }
        la = (mat_layout){ false, max64(k, 1) };
    }
    if (!layout_of(k, n, b->stride[b->ndim - 2], b->stride[b->ndim - 1], &lb)) {
        b = contig_raw(b, K);
        if (!b) { rc = wf_error(); goto out; }
        lb = (mat_layout){ false, max64(n, 1) };
    }

    /* batch strides aligned to y's batch dims; 0 where an operand broadcasts */
    int64_t shp[WF_MAX_DIMS], sa[WF_MAX_DIMS], sb[WF_MAX_DIMS], sy[WF_MAX_DIMS];
    int nd = 0;
    bool b_shared = true;
    for (int i = 0; i < nb; i++) {
        int da = a->ndim - 2 - (nb - i), db = b->ndim - 2 - (nb - i);
        int64_t s_a = (da >= 0 && a->shape[da] != 1) ? a->stride[da] : 0;
        int64_t s_b = (db >= 0 && b->shape[db] != 1) ? b->stride[db] : 0;
        if (y->shape[i] == 1) continue;
        if (s_b) b_shared = false;
        shp[nd] = y->shape[i]; sa[nd] = s_a; sb[nd] = s_b; sy[nd] = y->stride[i];
        nd++;
    }
    /* fold: b shared by all items and a's rows run on through the batch -> one tall GEMM */
    if (nd > 0 && b_shared && !la.trans) {
        bool chain = true;
        int64_t expect = m * la.ld;
        for (int i = nd - 1; i >= 0 && chain; i--) {
            chain = sa[i] == expect;
            expect *= shp[i];
        }
        if (chain) {
            int64_t rows = wf__numel(nd, shp) * m;
            rc = K->gemm(y->dtype, la.trans, lb.trans, rows, n, k, 1.0, dptr(a), la.ld, 0, dptr(b),
                         lb.ld, 0, 0.0, dptr(y), n, 0, 1, y->device);
            goto out;
        }
    }
    /* An operand whose batch dims do not run on with one stride (attention's q, k, v: views
     * [B, H, T, D] of a packed [B, T, 3, H, D] projection) would split the product into one
     * GEMM per outer item (B*H launches on CUDA); one packed copy and one batched call is
     * cheaper. Only full (not broadcast) operands are packed: materializing a broadcast could
     * cost far more memory than the calls it saves. */
    if (nd > 1) {
        bool pa = !one_stride(nd, shp, sa), pb = !one_stride(nd, shp, sb);
        if ((pa || pb) && (!pa || !any_zero(nd, sa)) && (!pb || !any_zero(nd, sb))) {
            if (pa && !(a = pack_batch(a, nd, shp, sa, m, k, &la, K))) { rc = wf_error(); goto out; }
            if (pb && !(b = pack_batch(b, nd, shp, sb, k, n, &lb, K))) { rc = wf_error(); goto out; }
        }
    }
    /* coalesce batch dims that are contiguous in all three operands */
    int cd = 0;
    int64_t cs[WF_MAX_DIMS], ca[WF_MAX_DIMS], cb[WF_MAX_DIMS], cy[WF_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        if (cd > 0 && ca[cd - 1] == sa[i] * shp[i] && cb[cd - 1] == sb[i] * shp[i] &&
            cy[cd - 1] == sy[i] * shp[i]) {
            cs[cd - 1] *= shp[i];
            ca[cd - 1] = sa[i]; cb[cd - 1] = sb[i]; cy[cd - 1] = sy[i];
        } else {
            cs[cd] = shp[i]; ca[cd] = sa[i]; cb[cd] = sb[i]; cy[cd] = sy[i];
            cd++;
        }
    }
    int64_t inner = cd ? cs[cd - 1] : 1;
    int64_t ia = cd ? ca[cd - 1] : 0, ib = cd ? cb[cd - 1] : 0, iy = cd ? cy[cd - 1] : 0;
    int64_t outer = 1;
    for (int i = 0; i < cd - 1; i++) outer *= cs[i];
    size_t es = wf_dtype_size(y->dtype);
    int64_t idx[WF_MAX_DIMS] = { 0 };
    for (int64_t o = 0; o < outer && !rc; o++) {
        int64_t oa = 0, ob = 0, oy = 0;
        for (int i = 0; i < cd - 1; i++) { oa += idx[i] * ca[i]; ob += idx[i] * cb[i]; oy += idx[i] * cy[i]; }
        /* every launch counts as a dispatch (wf__op_calls), so a product split per batch
         * item shows in the counts (tests/tensor/test_matmul_batch.c) */
        if (o > 0) (void)wf__supports(K, WF_OPF_KERNEL, WF_K_GEMM, y->dtype);
        rc = K->gemm(y->dtype, la.trans, lb.trans, m, n, k, 1.0, dptr(a) + oa * (int64_t)es, la.ld,
                     ia, dptr(b) + ob * (int64_t)es, lb.ld, ib, 0.0, dptr(y) + oy * (int64_t)es, n,
                     iy, inner, y->device);
        for (int i = cd - 2; i >= 0; i--) {
            if (++idx[i] < cs[i]) break;
            idx[i] = 0;
        }
    }
out:
    wf_scope_end();
    return rc;
}

wf_tensor *wf__matmul_nd_raw(const char *op, wf_tensor *a, wf_tensor *b) {
    int64_t out[WF_MAX_DIMS];
    int nbo = 0;
    if (wf__broadcast_shapes(op, a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nbo, out))
        return NULL;
    if (nbo + 2 > WF_MAX_DIMS) {
        wf__error(WF_ESHAPE, "%s: result would have %d dimensions (at most %d)", op, nbo + 2, WF_MAX_DIMS);
        return NULL;
    }
    out[nbo] = a->shape[a->ndim - 2];
    out[nbo + 1] = b->shape[b->ndim - 1];
    wf_tensor *y = wf__empty(out, nbo + 2, a->dtype, a->device);
    if (!y) return NULL;
    if (matmul_into(y, a, b)) { wf_tensor_free(y); return NULL; }
    return y;
}

int wf__matmul_check(const char *op, wf_tensor *a, wf_tensor *b) {
    if (wf__any_null(op, 2, a, b)) return wf_error();
    if (check_pair(op, a, b)) return wf_error();
    if (a->ndim == 0 || b->ndim == 0) {
        wf__error(WF_ESHAPE, "%s: both arguments need at least 1 dimension, got %d-d and %d-d", op,
                  a->ndim, b->ndim);
        return wf_error();
    }
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
    if (ka != kb) return inner_error(op, a, b, ka, kb);
    return 0;
}

int wf__bmm_check(wf_tensor *a, wf_tensor *b) {
    static const char *op = "wf_bmm";
    if (wf__any_null(op, 2, a, b)) return wf_error();
    if (check_pair(op, a, b)) return wf_error();
    char s1[96], s2[96];
    if (a->ndim != 3 || b->ndim != 3) {
        wf__error(WF_ESHAPE, "%s: %s @ %s: both arguments must be 3-D [batch, rows, cols]", op,
                  wf_shape_str(a, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2));
        return wf_error();
    }
    if (a->shape[0] != b->shape[0]) {
        wf__error(WF_ESHAPE, "%s: %s @ %s: batch sizes differ (%lld vs %lld)", op,
                  wf_shape_str(a, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2),
                  (long long)a->shape[0], (long long)b->shape[0]);
        return wf_error();
    }
    if (a->shape[2] != b->shape[1]) return inner_error(op, a, b, a->shape[2], b->shape[1]);
    return 0;
}

wf_tensor *wf__linear_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b) {
    static const char *op = "wf_linear";
    if (wf__any_null(op, 2, x, w)) return NULL;
    if (check_pair(op, x, w)) return NULL;
    if (b && (check_pair(op, x, b))) return NULL;
    char s1[96], s2[96];
    if (w->ndim != 2) {
        wf__error(WF_ESHAPE, "%s: weight must be 2-D [out_features, in_features], got %s", op,
                  wf_shape_str(w, s1, sizeof s1));
        return NULL;
    }
    if (x->ndim < 1) {
        wf__error(WF_ESHAPE, "%s: input must have at least 1 dimension [..., in_features], got 0-d", op);
        return NULL;
    }
    int64_t out = w->shape[0], in = w->shape[1];
    if (x->shape[x->ndim - 1] != in) {
        wf__error(WF_ESHAPE, "%s: input %s and weight %s: in_features differ (%lld vs %lld)", op,
                  wf_shape_str(x, s1, sizeof s1), wf_shape_str(w, s2, sizeof s2),
                  (long long)x->shape[x->ndim - 1], (long long)in);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != out)) {
        wf__error(WF_ESHAPE, "%s: bias must be [%lld] (out_features of weight %s), got %s", op,
                  (long long)out, wf_shape_str(w, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    int64_t shape[WF_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = out;
    int64_t rows = in ? wf_numel(x) / in : wf__numel(x->ndim - 1, x->shape);

    wf_scope_begin();
    wf_tensor *y = wf__empty(shape, x->ndim, x->dtype, x->device);
    int rc = y ? 0 : wf_error();
    if (!rc && y->device.type == WF_DEV_META) wf__meta_flops_add(2 * wf_numel(y) * in);
    if (!rc && y->device.type != WF_DEV_META && wf_numel(y) > 0) {
        const wf_kernels *K = wf__kernels(y->device);
        if (!K) rc = wf_error();
        wf_tensor *xc = x, *wc = w;
        mat_layout lx = { false, max64(in, 1) }, lw;
        /* x as [rows, in]: contiguous, or a 2-D matrix GEMM can read as stored */
        if (!rc && !wf_is_contiguous(x) &&
            !(x->ndim == 2 && layout_of(rows, in, x->stride[0], x->stride[1], &lx))) {
            xc = contig_raw(x, K);
            lx = (mat_layout){ false, max64(in, 1) };
            if (!xc) rc = wf_error();
        }
        /* op(B) = w^T: w stored row-major [out, in] -> transB; a transposed view -> no trans */
        if (!rc && !layout_of(out, in, w->stride[0], w->stride[1], &lw)) {
            wc = contig_raw(w, K);
            lw = (mat_layout){ false, max64(in, 1) };
            if (!wc) rc = wf_error();
        }
        double beta = 0.0;
        bool done = false;
        /* bias fused into the GEMM where the device offers it (cuBLASLt epilogue on CUDA) */
        if (!rc) rc = wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_GEMM, y->dtype, y->device);
        if (!rc && b && wf__supports(K, WF_OPF_KERNEL, WF_K_GEMM_EPILOGUE, y->dtype) && b->stride[0] == 1 &&
            b->dtype == y->dtype) {
            int r = K->gemm_epilogue(y->dtype, lx.trans, !lw.trans, rows, out, in, dptr(xc), lx.ld, dptr(wc), lw.ld,
                                     dptr(y), out, dptr(b), NULL, y->device);
            if (r <= 0) { rc = r; done = true; }
        }
        if (!rc && !done && b) {
            wf_tensor *be = wf__expand_raw(b, y->ndim, y->shape);
            rc = be ? K->copy(y, be) : wf_error();
            beta = 1.0;
        }
        if (!rc && !done)
            rc = K->gemm(y->dtype, lx.trans, !lw.trans, rows, out, in, 1.0, dptr(xc), lx.ld, 0,
                         dptr(wc), lw.ld, 0, beta, dptr(y), out, 0, 1, y->device);
    }
    if (rc) y = NULL;
    wf_keep(y);
    wf_scope_end();
    return y;
}

int wf__linear_wgrad_fused_raw(wf_tensor *g, wf_tensor *x, wf_tensor *w, wf_tensor **gw, wf_tensor **gb) {
    const wf_kernels *K = wf__kernels(g->device);
    if (!K || !wf__supports(K, WF_OPF_KERNEL, WF_K_GEMM_EPILOGUE, g->dtype) || g->device.type == WF_DEV_META ||
        g->dtype != x->dtype || g->dtype != w->dtype)
        return 1;
    int64_t out = w->shape[0], in = w->shape[1];
    int64_t rows = out ? wf_numel(g) / out : 0;
    if (rows <= 0 || in <= 0 || out <= 0) return 1;
    wf_tensor *g2 = wf_is_contiguous(g) ? g : contig_raw(g, K);
    wf_tensor *x2 = wf_is_contiguous(x) ? x : contig_raw(x, K);
    *gw = wf__empty(w->shape, 2, w->dtype, g->device);
    *gb = wf__empty(&out, 1, w->dtype, g->device);
    if (!g2 || !x2 || !*gw || !*gb) return wf_error();
    /* gw [out, in] = g2^T [out, rows] @ x2 [rows, in]; gb = g2^T's row sums */
    return K->gemm_epilogue(g->dtype, true, false, out, in, rows, dptr(g2), out, dptr(x2), in, dptr(*gw), in, NULL,
                            dptr(*gb), g->device);
}

/* c = a @ b + beta * c through gemm_acc (beta 0: c only written), c f32 (f64 for f64) */
static int matmul_wide(const char *op, wf_tensor *c, wf_tensor *a, wf_tensor *b, double beta) {
    if (wf__any_null(op, 3, c, a, b) || check_pair(op, a, b)) return wf_error();
    char s1[96], s2[96], s3[96];
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2)
        return wf__error(WF_ESHAPE, "%s: accumulating product needs 2-D tensors, got %s += %s @ %s", op,
                         wf_shape_str(c, s3, sizeof s3), wf_shape_str(a, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2));
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    if (b->shape[0] != k) return inner_error(op, a, b, k, b->shape[0]);
    if (c->shape[0] != m || c->shape[1] != n)
        return wf__error(WF_ESHAPE, "%s: accumulator %s does not match %s @ %s", op, wf_shape_str(c, s3, sizeof s3),
                         wf_shape_str(a, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2));
    wf_dtype cdt = a->dtype == WF_F64 ? WF_F64 : WF_F32;
    if (c->dtype != cdt)
        return wf__error(WF_EDTYPE, "%s: the accumulator of a %s product must be %s, got %s", op, wf_dtype_name(a->dtype),
                         wf_dtype_name(cdt), wf_dtype_name(c->dtype));
    if (wf__same_device(op, (wf_tensor *[]){ c, a }, 2)) return wf_error();
    mat_layout lc;
    if (!layout_of(m, n, c->stride[0], c->stride[1], &lc) || lc.trans)
        return wf__error(WF_EINVAL, "%s: the accumulator %s must be row-major (a contiguous or row-sliced tensor)", op,
                         wf_shape_str(c, s3, sizeof s3));
    if (c->device.type == WF_DEV_META) {
        wf__meta_flops_add(2 * m * n * k);
        return 0;
    }
    const wf_kernels *K = wf__kernels(c->device);
    if (!K) return wf_error();
    int rc = wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_GEMM_ACC, a->dtype, c->device);
    if (rc || m == 0 || n == 0 || (k == 0 && beta == 1)) return rc;
    mat_layout la, lb;
    wf_scope_begin();
    if (!layout_of(m, k, a->stride[0], a->stride[1], &la)) {
        a = contig_raw(a, K);
        la = (mat_layout){ false, max64(k, 1) };
        if (!a) rc = wf_error();
    }
    if (!rc && !layout_of(k, n, b->stride[0], b->stride[1], &lb)) {
        b = contig_raw(b, K);
        lb = (mat_layout){ false, max64(n, 1) };
        if (!b) rc = wf_error();
    }
    if (!rc)
        rc = K->gemm_acc(a->dtype, la.trans, lb.trans, m, n, k, dptr(a), la.ld, dptr(b), lb.ld, beta, dptr(c), lc.ld,
                         c->device);
    wf_scope_end();
    return rc;
}

int wf__matmul_acc_raw_(const char *op, wf_tensor *c, wf_tensor *a, wf_tensor *b) {
    return matmul_wide(op, c, a, b, 1.0);
}

wf_tensor *wf__matmul_f32_raw(wf_tensor *a, wf_tensor *b) {
    static const char *op = "wf__matmul_f32_raw";
    if (wf__any_null(op, 2, a, b) || check_pair(op, a, b)) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        char s1[96], s2[96];
        wf__error(WF_ESHAPE, "%s: needs 2-D tensors, got %s @ %s", op, wf_shape_str(a, s1, sizeof s1),
                  wf_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    if (a->shape[1] != b->shape[0]) {
        inner_error(op, a, b, a->shape[1], b->shape[0]);
        return NULL;
    }
    /* f32 for every half dtype (and f32 itself), f64 for f64: gemm_acc's accumulator */
    wf_tensor *c = wf__empty(WF_SHAPE(a->shape[0], b->shape[1]), a->dtype == WF_F64 ? WF_F64 : WF_F32, a->device);
    if (!c) return NULL;
    if (matmul_wide(op, c, a, b, 0.0)) {
        wf_tensor_free(c);
        return NULL;
    }
    return c;
}
