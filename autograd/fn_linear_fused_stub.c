/* autograd/fn_linear_fused_stub.c: wf_linear_gelu and wf_linear_cross_entropy in the minimal
 * (embedded) preset, whose size budget leaves out the fused versions (fn_linear_fused.c,
 * tensor/ops_linear_fused.c): both compose, Linear then GELU, Linear then cross_entropy (the
 * logits materialized whole). The arguments are checked as the full build checks them. */
#include "linear_xent_check.h"

wf_tensor *wf_linear_gelu(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_linear_gelu: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", (int)approximate);
        return NULL;
    }
    return wf_gelu(wf_linear(x, w, b), approximate);
}

wf_tensor *wf_linear_cross_entropy(wf_tensor *h, wf_tensor *weight, wf_tensor *bias, wf_tensor *targets,
                                   const wf_cross_entropy_opts *opts, int64_t chunk_rows) {
    if (wf__any_null("wf_linear_cross_entropy", 3, h, weight, targets)) return NULL;
    wf_cross_entropy_opts o = opts ? *opts : (wf_cross_entropy_opts){ 0 };
    wf_tensor *hc = wf__autocast_arg(h, WF__AC_LOWER), *wc = wf__autocast_arg(weight, WF__AC_LOWER);
    wf_tensor *bc = wf__autocast_arg(bias, WF__AC_LOWER);
    if (!hc || !wc || wf__linear_xent_check(hc, wc, bc, targets, &o, chunk_rows)) return NULL;
    return wf_cross_entropy(wf_linear(h, weight, bias), targets, &o);
}
