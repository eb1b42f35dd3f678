/* nn/checkpoint.c: activation checkpointing for modules (torch.utils.checkpoint around a
 * module's call; Lightning's activation_checkpointing_policy). wf_checkpoint (autograd/)
 * needs every tensor that wants a gradient among its inputs, so a module's parameters are
 * passed as inputs after x. The recompute in backward gets detached copies of them: for its
 * duration they take the parameters' places in the module tree (every slot, so a parameter
 * shared by two submodules stays shared), and the gradients computed for them flow back to
 * the real parameters through the checkpoint node, once per backward. */
#include "nn_impl.h"

#include <string.h>

/* Put news[i] in every parameter slot of m's tree that holds olds[i]; with olds and news
 * swapped this undoes it. No references change hands: the caller keeps both alive. */
static void swap_slots(wf_module *m, wf_tensor *const *olds, wf_tensor *const *news, int n) {
    for (int i = 0; i < m->params.n; i++)
        for (int j = 0; j < n; j++)
            if (m->params.v[i].ptr == olds[j]) { m->params.v[i].ptr = news[j]; break; }
    for (int c = 0; c < m->children.n; c++) swap_slots(m->children.v[c].ptr, olds, news, n);
}

static wf_tensor *module_segment(wf_tensor *const *in, int n, void *ud) {
    wf_module *m = ud;
    int np = n - 1;
    wf_tensor **params = wf__calloc((size_t)(np > 0 ? np : 1), sizeof *params);
    if (!params) { wf__error(WF_ENOMEM, "wf_checkpoint_module: out of memory"); return NULL; }
    int got = wf_module_parameters(m, params, NULL, np);
    wf_tensor *y = NULL;
    if (got != np) {
        if (got >= 0)
            wf__error(WF_ESTATE, "wf_checkpoint_module: %s has %d parameters now and had %d at the forward; "
                      "a checkpointed module must keep its parameters until backward", wf_module_type(m), got, np);
    } else {
        bool same = true;   /* in[1+i] is params[i] itself (forward) or a detached copy (recompute) */
        for (int i = 0; i < np; i++) same = same && in[1 + i] == params[i];
        if (!same) swap_slots(m, params, in + 1, np);
        y = wf__module_forward_plain(m, in[0]);
        if (!same) swap_slots(m, in + 1, params, np);
    }
    wf__free(params, 0);
    return y;
}

static wf_tensor *checkpoint_module_body(wf_module *m, wf_tensor *x) {
    if (wf__any_null("wf_checkpoint_module", 2, m, x)) return NULL;
    int np = wf_module_parameters(m, NULL, NULL, 0);
    if (np < 0) return NULL;
    wf_tensor **in = wf__calloc((size_t)np + 1, sizeof *in);
    if (!in) { wf__error(WF_ENOMEM, "wf_checkpoint_module: out of memory"); return NULL; }
    in[0] = x;
    wf_tensor *y = NULL;
    if (wf_module_parameters(m, in + 1, NULL, np) == np) y = wf_checkpoint(module_segment, in, np + 1, m);
    wf__free(in, 0);
    return y;
}

wf_tensor *wf_checkpoint_module(wf_module *m, wf_tensor *x) {
    WF__NAMED("wf_checkpoint_module", wf_tensor *, !r, checkpoint_module_body(m, x));
}

int wf_module_set_activation_checkpointing(wf_module *m, bool on) {
    if (!m) return wf__any_null("wf_module_set_activation_checkpointing", 1, m), WF_ENULL;
    if (m->magic != WF_MODULE_MAGIC)
        return wf__error(WF_EINVAL, "wf_module_set_activation_checkpointing: not a module (freed or never initialized)");
    if (on && !m->vt->forward)
        return wf__error(WF_ENOTSUP, "wf_module_set_activation_checkpointing: %s has no forward of its own to checkpoint "
                         "(set it on the modules inside)", wf_module_type(m));
    m->activation_checkpointing = on;
    return 0;
}

bool wf_module_activation_checkpointing(const wf_module *m) {
    return m && m->magic == WF_MODULE_MAGIC && m->activation_checkpointing;
}
