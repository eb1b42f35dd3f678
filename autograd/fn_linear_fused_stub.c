/* autograd/fn_linear_fused_stub.c: wf_linear_gelu and wf_fused_mlp in the minimal (embedded)
 * preset, whose size budget leaves out the fused front-ends (fn_linear_fused.c,
 * tensor/ops_linear_fused.c): the composed ops (so wf_fused_mlp keeps its GELU's output for
 * backward there), the arguments checked as the full build checks them. (wf_linear_cross_entropy
 * composes there too: nn/linear_cross_entropy.c.) Included by fn_fused.c, not an object of its
 * own (each object costs the preset's budget about 1 KB). */
#include "../tensor/tensor_impl.h"

static bool bad_approx(const char *fn, wf_gelu_approx approximate) {
    if (approximate == WF_GELU_NONE || approximate == WF_GELU_TANH) return false;
    wf__error(WF_EINVAL, "%s: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", fn, (int)approximate);
    return true;
}

static wf_tensor *linear_gelu_body(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    if (wf__any_null("wf_linear_gelu", 2, x, w) || bad_approx("wf_linear_gelu", approximate)) return NULL;
    return wf_gelu(wf_linear(x, w, b), approximate);
}

static wf_tensor *fused_mlp_body(wf_tensor *x, wf_tensor *w1, wf_tensor *b1, wf_tensor *w2, wf_tensor *b2,
                                 wf_gelu_approx approximate) {
    if (wf__any_null("wf_fused_mlp", 3, x, w1, w2) || bad_approx("wf_fused_mlp", approximate)) return NULL;
    return wf_linear(wf_gelu(wf_linear(x, w1, b1), approximate), w2, b2);
}

wf_tensor *wf_fused_mlp(wf_tensor *x, wf_tensor *w1, wf_tensor *b1, wf_tensor *w2, wf_tensor *b2,
                        wf_gelu_approx approximate) {
    WF__NAMED("wf_fused_mlp", wf_tensor *, !r, fused_mlp_body(x, w1, b1, w2, b2, approximate));
}

wf_tensor *wf_linear_gelu(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    WF__NAMED("wf_linear_gelu", wf_tensor *, !r, linear_gelu_body(x, w, b, approximate));
}
