/* autograd/linear_xent_check.c: the argument checks of wf_linear_cross_entropy, shared by
 * its chunked front-end (fn_linear_fused.c) and the minimal preset's composed one
 * (fn_linear_fused_stub.c), so both refuse the same arguments with the same messages. */
#include "linear_xent_check.h"

static const char *const LCE = "wf_linear_cross_entropy";

int wf__linear_xent_check(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, const wf_cross_entropy_opts *o,
                          int64_t chunk_rows) {
    char s1[96], s2[96];
    if (h->ndim != 2 || !wf_dtype_is_floating(h->dtype))
        return wf__error(WF_ESHAPE, "%s: hidden states must be floating [N, C], got %s %s", LCE, wf_dtype_name(h->dtype),
                         wf_shape_str(h, s1, sizeof s1));
    if (w->ndim != 2 || w->shape[1] != h->shape[1] || w->shape[0] < 1)
        return wf__error(WF_ESHAPE, "%s: weight %s must be [V, C] with V >= 1 and C = %lld (hidden states %s)", LCE,
                         wf_shape_str(w, s1, sizeof s1), (long long)h->shape[1], wf_shape_str(h, s2, sizeof s2));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return wf__error(WF_ESHAPE, "%s: bias %s must be [%lld], one per row of the weight", LCE,
                         wf_shape_str(b, s1, sizeof s1), (long long)w->shape[0]);
    if (t->dtype != WF_I64 || t->ndim != 1 || t->shape[0] != h->shape[0])
        return wf__error(WF_EDTYPE, "%s: targets must be int64 [%lld] (one class per row), got %s %s", LCE,
                         (long long)h->shape[0], wf_dtype_name(t->dtype), wf_shape_str(t, s1, sizeof s1));
    if (w->dtype != h->dtype || (b && b->dtype != h->dtype))
        return wf__error(WF_EDTYPE, "%s: hidden states (%s), weight (%s) and bias (%s) must have one dtype", LCE,
                         wf_dtype_name(h->dtype), wf_dtype_name(w->dtype), b ? wf_dtype_name(b->dtype) : "none");
    wf_tensor *all[4] = { h, w, t, b };
    if (wf__same_device(LCE, all, b ? 4 : 3)) return wf_error();
    if (chunk_rows < 0) return wf__error(WF_EINVAL, "%s: chunk_rows must be >= 0 (0: automatic), got %lld", LCE, (long long)chunk_rows);
    if (o->weight) return wf__error(WF_ENOTSUP, "%s: class weights are not supported (use wf_cross_entropy)", LCE);
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        return wf__error(WF_EINVAL, "%s: label_smoothing must be in [0, 1], got %g", LCE, o->label_smoothing);
    if (o->reduction != WF_REDUCTION_MEAN && o->reduction != WF_REDUCTION_SUM && o->reduction != WF_REDUCTION_NONE)
        return wf__error(WF_EINVAL, "%s: reduction must be mean, sum or none, got %d", LCE, (int)o->reduction);
    if (t->device.type == WF_DEV_CPU) {   /* CUDA's kernels report a bad class at the next synchronize */
        int64_t ign = o->ignore_index_set ? o->ignore_index : -100, V = w->shape[0];
        const int64_t *tp = (const int64_t *)wf__host_ptr(t);
        for (int64_t i = 0; i < t->shape[0]; i++) {
            int64_t c = tp[i * t->stride[0]];
            if (c != ign && (c < 0 || c >= V))
                return wf__error(WF_EINDEX, "%s: target %lld of row %lld is out of range [0, %lld)", LCE, (long long)c,
                                 (long long)i, (long long)V);
        }
    }
    return 0;
}
