/* fabric/callbacks.c: Fabric.call(hook_name, ...): every callback with that hook runs. */
#include "fabric/fabric_impl.h"

#include <string.h>

int wf_fabric_call(wf_fabric *fab, const char *hook, void *payload) {
    if (!fab || !hook) return wf__error(WF_ENULL, "wf_fabric_call: NULL %s", fab ? "hook name" : "fabric");
    for (int i = 0; i < fab->n_callbacks; i++) {
        const wf_callback *cb = &fab->callbacks[i];
        for (const wf_callback_hook *h = cb->hooks; h && h->name; h++) {
            if (strcmp(h->name, hook) || !h->fn) continue;
            int rc = h->fn(fab, payload, cb->ud);
            if (rc) {
                if (!wf_error())
                    wf__error(rc, "wf_fabric_call: callback %s, hook %s failed", cb->name ? cb->name : "(unnamed)", hook);
                return rc;
            }
        }
    }
    return 0;
}
