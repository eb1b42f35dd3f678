/* autograd/fn_linear_fused_stub.c: wf_linear_gelu in the minimal (embedded) preset, whose size
 * budget leaves out the fused front-ends (fn_linear_fused.c, tensor/ops_linear_fused.c): Linear
 * then GELU, the argument checked as the full build checks it. (wf_linear_cross_entropy
 * composes there too: nn/linear_cross_entropy.c.) */
#include "../tensor/tensor_impl.h"

static wf_tensor *linear_gelu_body(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    if (wf__any_null("wf_linear_gelu", 2, x, w)) return NULL;
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_linear_gelu: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", (int)approximate);
        return NULL;
    }
    return wf_gelu(wf_linear(x, w, b), approximate);
}

wf_tensor *wf_linear_gelu(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate) {
    WF__NAMED("wf_linear_gelu", wf_tensor *, !r, linear_gelu_body(x, w, b, approximate));
}
