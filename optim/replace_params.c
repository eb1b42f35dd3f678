/* optim/replace_params.c: point an optimizer at replacement parameters, its state along.
 * Fabric's setup casts or moves a module's tensors (new handles on the accelerator, in the
 * precision's dtype); the optimizers built on the old handles follow here, so fabric/ never
 * writes optimizer fields. */
#include "optim/optim_impl.h"

/* A state tensor to the parameter's device, and to its dtype when floating (step counters and
 * other integer state keep theirs). */
static int move_state_tensor(wf_tensor **slot, const wf_tensor *param) {
    if (!*slot) return 0;
    wf_tensor *t = *slot;
    if (wf_device_eq(wf_tensor_device(t), wf_tensor_device(param)) &&
        (wf_tensor_dtype(t) == wf_tensor_dtype(param) || !wf_dtype_is_floating(wf_tensor_dtype(t))))
        return 0;
    wf_scope_begin();
    wf_tensor *n = wf_to_device(t, wf_tensor_device(param));
    if (n && wf_dtype_is_floating(wf_tensor_dtype(t))) n = wf_to_dtype(n, wf_tensor_dtype(param));
    n = n ? wf_contiguous(n) : NULL;
    if (n) wf_keep(n);
    wf_scope_end();
    if (!n) return wf_error() ? wf_error() : WF_ENOMEM;
    wf__scope_unregister(n);
    wf_tensor_free(t);
    *slot = n;
    return 0;
}

int wf__optimizer_replace_params(wf_optimizer *o, wf_tensor *const *olds, wf_tensor *const *news, int n) {
    for (int g = 0; g < o->n_groups; g++) {
        wf_param_group *grp = &o->groups[g];
        for (int i = 0; i < grp->n; i++) {
            for (int j = 0; j < n; j++) {
                if (grp->params[i] != olds[j] || olds[j] == news[j]) continue;
                wf_tensor_retain(news[j]);
                wf_tensor_free(grp->params[i]);
                grp->params[i] = news[j];
                wf_param_state *st = &o->state[grp->first_index + i];
                wf_tensor **slots[] = { &st->exp_avg, &st->exp_avg_sq, &st->max_exp_avg_sq, &st->momentum_buffer,
                                        &st->square_avg, &st->grad_avg, &st->sum };
                for (size_t k = 0; k < sizeof slots / sizeof slots[0]; k++) {
                    int rc = move_state_tensor(slots[k], news[j]);
                    if (rc) return rc;
                }
                break;
            }
        }
    }
    return 0;
}
