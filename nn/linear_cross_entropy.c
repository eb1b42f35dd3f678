/* nn/linear_cross_entropy.c: wf_linear_cross_entropy, cross_entropy(linear(h)) without the
 * logits. The arguments are checked here (the loss's options are nn's); the chunked forward
 * and backward are autograd's (autograd/fn_linear_fused.c). The minimal (embedded) preset
 * leaves those out for its size budget and composes Linear then cross_entropy instead. */
#include "nn_impl.h"
#include "../autograd/fn_linear_fused.h"

static const char *const LCE = "wf_linear_cross_entropy";

/* the checks on the (autocast) arguments: 0 or a code */
static int check(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, const wf_cross_entropy_opts *o, int64_t chunk_rows) {
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

static wf_tensor *linear_xent_body(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t,
                                   const wf_cross_entropy_opts *opts, int64_t chunk_rows) {
    if (wf__any_null(LCE, 3, h, w, t)) return NULL;
    wf_cross_entropy_opts o = opts ? *opts : (wf_cross_entropy_opts){ 0 };
    wf_dtype out_dt = h->dtype;   /* the loss as cross_entropy(linear(h)) gives it: f32 under autocast */
    wf_tensor *hc = wf__autocast_arg(h, WF__AC_LOWER), *wc = wf__autocast_arg(w, WF__AC_LOWER);
    wf_tensor *bc = wf__autocast_arg(b, WF__AC_LOWER);
    if (!hc || !wc || check(hc, wc, bc, t, &o, chunk_rows)) return NULL;
#ifdef WEFT_MINIMAL
    (void)out_dt;
    return wf_cross_entropy(wf_linear(h, w, b), t, &o);
#else
    return wf__linear_cross_entropy(hc, wc, bc, t, o.ignore_index_set ? o.ignore_index : -100, o.label_smoothing,
                                    (int)o.reduction, chunk_rows, out_dt);
#endif
}

wf_tensor *wf_linear_cross_entropy(wf_tensor *h, wf_tensor *weight, wf_tensor *bias, wf_tensor *targets,
                                   const wf_cross_entropy_opts *opts, int64_t chunk_rows) {
    WF__NAMED(LCE, wf_tensor *, !r, linear_xent_body(h, weight, bias, targets, opts, chunk_rows));
}
