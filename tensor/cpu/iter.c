/* tensor/cpu/iter.c: strided iteration over several same-shape operands.
 *
 * The shape is first coalesced: adjacent dims merge when every operand's memory steps over
 * them as one dim. The innermost remaining dim becomes the "run" handed to the callback, so
 * contiguous tensors are one call with the whole buffer. */
#include "cpu_kernels.h"

#define MAX_OPS 4

void wf__iter(int nops, wf_tensor *const *ops, wf_iter_fn fn, void *ctx) {
    const wf_tensor *t0 = ops[0];
    int nd = t0->ndim;
    int64_t shape[WF_MAX_DIMS], st[MAX_OPS][WF_MAX_DIMS];
    int d = 0;
    for (int i = 0; i < nd; i++) {
        if (t0->shape[i] == 0) return;        /* empty: nothing to do */
        if (t0->shape[i] == 1) continue;      /* size-1 dims do not move */
        shape[d] = t0->shape[i];
        for (int k = 0; k < nops; k++) st[k][d] = ops[k]->stride[i];
        d++;
    }
    /* coalesce from the inside out: dim j-1 merges into j if stride[j-1] == stride[j]*shape[j] */
    int m = 0;
    int64_t cs[WF_MAX_DIMS], cst[MAX_OPS][WF_MAX_DIMS];
    for (int i = d - 1; i >= 0; i--) {
        if (m > 0) {
            bool ok = true;
            for (int k = 0; k < nops; k++)
                if (st[k][i] != cst[k][m - 1] * cs[m - 1]) { ok = false; break; }
            if (ok) { cs[m - 1] *= shape[i]; continue; }
        }
        cs[m] = shape[i];
        for (int k = 0; k < nops; k++) cst[k][m] = st[k][i];
        m++;
    }
    /* now cs[0] is the innermost dim */
    char *base[MAX_OPS];
    int64_t es[MAX_OPS], bstride[MAX_OPS];
    for (int k = 0; k < nops; k++) {
        es[k] = (int64_t)wf_dtype_size(ops[k]->dtype);
        base[k] = wf__host_ptr(ops[k]);
    }
    if (m == 0) {   /* one element */
        for (int k = 0; k < nops; k++) bstride[k] = 0;
        fn(base, bstride, 1, ctx);
        return;
    }
    for (int k = 0; k < nops; k++) bstride[k] = cst[k][0] * es[k];
    int64_t outer = 1;
    for (int i = 1; i < m; i++) outer *= cs[i];
    int64_t idx[WF_MAX_DIMS] = { 0 };
    char *p[MAX_OPS];
    for (int64_t o = 0; o < outer; o++) {
        for (int k = 0; k < nops; k++) {
            int64_t off = 0;
            for (int i = 1; i < m; i++) off += idx[i] * cst[k][i];
            p[k] = base[k] + off * es[k];
        }
        fn(p, bstride, cs[0], ctx);
        for (int i = 1; i < m; i++) {
            if (++idx[i] < cs[i]) break;
            idx[i] = 0;
        }
    }
}
