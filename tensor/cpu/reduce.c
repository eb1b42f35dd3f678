/* tensor/cpu/reduce.c: reductions over a set of dims, and argmax/argmin.
 *
 * y has x's rank with size 1 in the reduced dims. We view y expanded to x's shape (stride 0
 * in reduced dims) and stream over x once: where the innermost run reduces (y stride 0) the
 * run collapses into a register accumulator; where it does not (column sums) the run adds
 * into y element-wise. y is f32 or f64 (the front-end reduces half types into f32). */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <math.h>

typedef struct { wf_reduce_op op; double p; wf_dtype dx, dy; } red_ctx;

static inline double combine(wf_reduce_op op, double acc, double x, double p) {
    switch (op) {
    case WF_R_SUM: return acc + x;
    case WF_R_SUMSQ: return acc + x * x;
    case WF_R_ABSSUM: return acc + fabs(x);
    case WF_R_PNORM: return acc + pow(fabs(x), p);
    case WF_R_MAX: return (x != x || x > acc) ? x : acc;
    case WF_R_MIN: return (x != x || x < acc) ? x : acc;
    case WF_R_ABSMAX: { double a = fabs(x); return (a != a || a > acc) ? a : acc; }
    default: return NAN;
    }
}
static inline double merge(wf_reduce_op op, double acc, double part) {
    switch (op) {
    case WF_R_MAX: case WF_R_ABSMAX: return (part != part || part > acc) ? part : acc;
    case WF_R_MIN: return (part != part || part < acc) ? part : acc;
    default: return acc + part;
    }
}
static inline double init_of(wf_reduce_op op) {
    switch (op) {
    case WF_R_MAX: return -INFINITY;
    case WF_R_MIN: return INFINITY;
    default: return 0.0;
    }
}

WF_MULTIVERSION static void reduce_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    red_ctx *c = vc;
    char *y = p[0], *x = p[1];
    if ((c->dx == WF_BF16 || c->dx == WF_F16) && bs[1] == 2) {
        /* contiguous half input: stage 256-element blocks through f32 and take the f32 loops */
        float buf[256];
        red_ctx f = *c;
        f.dx = WF_F32;
        int64_t fs[2] = { bs[0], 4 };
        for (int64_t lo = 0; lo < n; lo += 256) {
            int64_t len = n - lo < 256 ? n - lo : 256;
            wf__half_to_f32_n(buf, (const uint16_t *)x + lo, len, c->dx == WF_BF16);
            char *q[2] = { y + lo * bs[0], (char *)buf };
            reduce_run(q, fs, len, &f);
        }
        return;
    }
    if (bs[0] == 0) {   /* the whole run folds into one output */
        double acc = init_of(c->op);
        if (c->dx == WF_F32 && bs[1] == 4 && c->op == WF_R_SUM) {
            const float *xf = (const float *)x;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = 0;
            for (; i + 4 <= n; i += 4) { s0 += xf[i]; s1 += xf[i + 1]; s2 += xf[i + 2]; s3 += xf[i + 3]; }
            for (; i < n; i++) s0 += xf[i];
            acc = (s0 + s1) + (s2 + s3);
        } else if (c->dx == WF_F32) {
            for (int64_t i = 0; i < n; i++) acc = combine(c->op, acc, *(const float *)(x + i * bs[1]), c->p);
        } else if (c->dx == WF_F64) {
            for (int64_t i = 0; i < n; i++) acc = combine(c->op, acc, *(const double *)(x + i * bs[1]), c->p);
        } else {
            for (int64_t i = 0; i < n; i++) acc = combine(c->op, acc, wf__load(x + i * bs[1], c->dx), c->p);
        }
        if (c->dy == WF_F32) *(float *)y = (float)merge(c->op, *(float *)y, acc);
        else *(double *)y = merge(c->op, *(double *)y, acc);
        return;
    }
    if (c->dy == WF_F32 && c->dx == WF_F32 && c->op == WF_R_SUM && bs[0] == 4 && bs[1] == 4) {
        float *restrict yf = (float *)y;
        const float *restrict xf = (const float *)x;
        for (int64_t i = 0; i < n; i++) yf[i] += xf[i];
        return;
    }
    if (c->dy == WF_F64 && c->dx == WF_F32 && c->op == WF_R_SUM && bs[0] == 8 && bs[1] == 4) {
        double *restrict yd = (double *)y;   /* an f32 sum's f64 accumulator (below) */
        const float *restrict xf = (const float *)x;
        for (int64_t i = 0; i < n; i++) yd[i] += (double)xf[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double xv = wf__load(x + i * bs[1], c->dx);
        char *yp = y + i * bs[0];
        if (c->dy == WF_F32) *(float *)yp = (float)combine(c->op, *(float *)yp, xv, c->p);
        else *(double *)yp = combine(c->op, *(double *)yp, xv, c->p);
    }
}

typedef struct {
    red_ctx *c;
    char *yb, *xb;
    int64_t ys, xs, cols;
} rows_ctx;

static void rows_chunk(void *vc, int64_t lo, int64_t hi) {
    const rows_ctx *r = vc;
    for (int64_t i = lo; i < hi; i++) {
        char *ptrs[2] = { r->yb + i * r->ys, r->xb + i * r->cols * r->xs };
        int64_t st[2] = { 0, r->xs };
        reduce_run(ptrs, st, r->cols, r->c);
    }
}

int wf__cpu_reduce(wf_reduce_op op, wf_tensor *y, const wf_tensor *x, uint32_t mask, double p) {
    (void)mask;
    wf__cpu_fill(y, init_of(op));
    if (wf_numel(x) == 0) return 0;
    red_ctx c = { op, p, x->dtype, y->dtype };
    /* y expanded to x's shape: stride 0 where y has size 1 and x does not */
    wf_tensor ye = *y;
    for (int i = 0; i < x->ndim; i++) {
        ye.shape[i] = x->shape[i];
        if (y->shape[i] != x->shape[i]) ye.stride[i] = 0;
    }
    /* Parallel over independent outputs: when the reduction is over the innermost dims of a
     * contiguous x, each output row is one run; split the rows across threads. */
    int64_t rows = wf_numel(y), cols = wf_numel(x) / (rows ? rows : 1);
    bool inner = wf_is_contiguous(x) && wf_is_contiguous(y) && rows > 1 && cols > 1;
    for (int i = 0; inner && i < x->ndim; i++) {
        bool reduced = y->shape[i] != x->shape[i];
        /* reduced dims must all come after the kept ones */
        for (int j = i + 1; reduced && j < x->ndim; j++)
            if (y->shape[j] == x->shape[j] && x->shape[j] != 1) inner = false;
    }
    if (inner && wf_numel(x) >= 65536) {
        char *yb = wf__host_ptr(y), *xb = wf__host_ptr(x);
        int64_t ys = (int64_t)wf_dtype_size(y->dtype), xs = (int64_t)wf_dtype_size(x->dtype);
        rows_ctx rc = { &c, yb, xb, ys, xs, cols };
        /* rows in chunks of ~16K elements, fixed by the shape; each row is reduced whole by
         * one thread, so the bits do not depend on the thread count */
        wf__parallel_for(rows, cols >= 16384 ? 1 : 16384 / cols, rows_chunk, &rc);
        return 0;
    }
    /* Elsewhere the runs add into y as they go (column sums: one add per row). An f32 y would
     * round at every add: 1e-4 relative after 200 000 rows, where PyTorch's cascade stays near
     * 1e-7. So sums go into an f64 copy of y, rounded once at the end, when y is small enough
     * to copy (bias gradients, per-channel sums: up to 1M outputs); larger ones keep f32. */
    bool additive = op == WF_R_SUM || op == WF_R_SUMSQ || op == WF_R_ABSSUM || op == WF_R_PNORM;
    int64_t ny = wf_numel(y);
    double *acc = y->dtype == WF_F32 && additive && wf_is_contiguous(y) && ny <= ((int64_t)1 << 20)
                      ? wf__host_alloc((size_t)ny * sizeof *acc)   /* the kernels' cached scratch, as gemm.c */
                      : NULL;
    wf_storage accs = { .data = acc, .nbytes = (size_t)ny * sizeof *acc, .device = y->device };
    if (acc) {
        for (int64_t i = 0; i < ny; i++) acc[i] = 0.0;
        ye.storage = &accs;
        ye.offset = 0;
        ye.dtype = WF_F64;
        int64_t st = 1;   /* y is contiguous: the same strides, counted afresh (size-1 dims too) */
        for (int i = x->ndim - 1; i >= 0; i--) {
            if (y->shape[i] == x->shape[i]) ye.stride[i] = st;
            st *= y->shape[i];
        }
        c.dy = WF_F64;
    }
    wf_tensor *ops[2] = { &ye, (wf_tensor *)x };
    wf__iter(2, ops, reduce_run, &c);
    if (acc) {
        float *yf = (float *)wf__host_ptr(y);
        for (int64_t i = 0; i < ny; i++) yf[i] = (float)acc[i];
        wf__host_free(acc, (size_t)ny * sizeof *acc);
    }
    return 0;
}

int wf__cpu_arg_reduce(bool is_max, wf_tensor *y, const wf_tensor *x, int dim) {
    int64_t n = x->shape[dim], xs = x->stride[dim];
    int64_t outer = wf_numel(y);
    size_t es = wf_dtype_size(x->dtype);
    const char *xb = wf__host_ptr(x);
    int64_t *yb = (int64_t *)wf__host_ptr(y);   /* y is contiguous i64 */
    for (int64_t o = 0; o < outer; o++) {
        /* position of output o in x (dim fixed at 0) */
        int64_t rem = o, off = 0;
        for (int d = x->ndim - 1; d >= 0; d--) {
            int64_t sz = d == dim ? 1 : x->shape[d];
            off += (rem % sz) * x->stride[d];
            rem /= sz;
        }
        int64_t best = 0;
        double bv = wf__load(xb + (size_t)off * es, x->dtype);
        for (int64_t i = 1; i < n && bv == bv; i++) {
            double v = wf__load(xb + (size_t)(off + i * xs) * es, x->dtype);
            if (v != v || (is_max ? v > bv : v < bv)) { bv = v; best = i; }
        }
        yb[o] = best;
    }
    return 0;
}
