/* autograd/grad_mode.c: the thread-local grad mode and leaf properties. */
#include "autograd_impl.h"

static _Thread_local bool g_grad_enabled = true;

bool wf_set_grad_enabled(bool enabled) {
    bool prev = g_grad_enabled;
    g_grad_enabled = enabled;
    return prev;
}
bool wf_is_grad_enabled(void) { return g_grad_enabled; }

bool wf__needs_grad(int n, wf_tensor *const *ts) {
    if (!g_grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->requires_grad) return true;
    return false;
}

int wf_set_requires_grad(wf_tensor *t, bool requires_grad) {
    if (!t) return wf__any_null("wf_set_requires_grad", 1, t), WF_ENULL;
    if (t->grad_fn) {
        if (requires_grad) return 0;
        return wf__error(WF_EAUTOGRAD, "wf_set_requires_grad: %s output is not a leaf; "
                         "use wf_detach to get a tensor without history", t->grad_fn->name);
    }
    if (requires_grad && !wf_dtype_is_floating(t->dtype))
        return wf__error(WF_EAUTOGRAD, "wf_set_requires_grad: only floating tensors can require "
                         "gradients (got %s)", wf_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return 0;
}

bool wf_requires_grad(const wf_tensor *t) { return t ? t->requires_grad : (wf__any_null("wf_requires_grad", 1, t), false); }
bool wf_is_leaf(const wf_tensor *t) { return t ? !t->grad_fn : (wf__any_null("wf_is_leaf", 1, t), false); }
wf_tensor *wf_grad(const wf_tensor *t) { return t ? t->grad : (wf__any_null("wf_grad", 1, t), NULL); }
const char *wf_grad_fn_name(const wf_tensor *t) {
    if (!t) return wf__any_null("wf_grad_fn_name", 1, t), NULL;
    return t->grad_fn ? t->grad_fn->name : NULL;
}

int wf_set_grad(wf_tensor *t, wf_tensor *g) {
    if (!t) return wf__any_null("wf_set_grad", 1, t), WF_ENULL;
    if (g && !wf_same_shape(t, g)) {
        char b1[96], b2[96];
        return wf__error(WF_ESHAPE, "wf_set_grad: gradient shape %s does not match tensor shape %s",
                         wf_shape_str(g, b1, sizeof b1), wf_shape_str(t, b2, sizeof b2));
    }
    /* as PyTorch's "assigned grad has data of a different type/device": an optimizer would
     * otherwise mix dtypes or devices in its update */
    if (g && g->dtype != t->dtype)
        return wf__error(WF_EDTYPE, "wf_set_grad: gradient dtype %s does not match tensor dtype %s",
                         wf_dtype_name(g->dtype), wf_dtype_name(t->dtype));
    if (g && !wf_device_eq(g->device, t->device)) {
        char b1[32], b2[32];
        return wf__error(WF_EDEVICE, "wf_set_grad: gradient on %s but the tensor is on %s",
                         wf_device_str(g->device, b1, sizeof b1), wf_device_str(t->device, b2, sizeof b2));
    }
    if (g) wf_tensor_retain(g);    /* t's own reference; g's scope keeps and drops its own */
    wf_tensor *old = t->grad;
    t->grad = g;
    wf_tensor_free(old);
    return 0;
}

static int add_hook(const char *fn_name, wf_tensor *leaf, wf_grad_hook_fn fn, wf_grad_ready_hook_fn ready_fn,
                    void *ud) {
    if (!leaf || (!fn && !ready_fn)) return wf__error(WF_ENULL, "%s: NULL %s", fn_name, leaf ? "hook function" : "tensor");
    if (leaf->grad_fn || !leaf->requires_grad)
        return wf__error(WF_EAUTOGRAD, "%s: the tensor is not a leaf that requires grad", fn_name);
    wf_hook_entry *h = wf__calloc(1, sizeof *h);
    if (!h) return wf__error(WF_ENOMEM, "%s: out of memory", fn_name);
    wf__autograd_install();
    int id = 0;
    for (wf_hook_entry *e = leaf->hooks; e; e = e->next) if (e->id >= id) id = e->id + 1;
    h->fn = fn; h->ready_fn = ready_fn; h->ud = ud; h->id = id;
    /* append, so hooks run in registration order */
    wf_hook_entry **pp = &leaf->hooks;
    while (*pp) pp = &(*pp)->next;
    *pp = h;
    return id;
}

int wf_register_grad_hook(wf_tensor *leaf, wf_grad_hook_fn fn, void *ud) {
    return add_hook("wf_register_grad_hook", leaf, fn, NULL, ud);
}

int wf_register_grad_ready_hook(wf_tensor *leaf, wf_grad_ready_hook_fn fn, void *ud) {
    return add_hook("wf_register_grad_ready_hook", leaf, NULL, fn, ud);
}

int wf_remove_grad_hook(wf_tensor *leaf, int handle) {
    if (!leaf) return wf__any_null("wf_remove_grad_hook", 1, leaf), WF_ENULL;
    for (wf_hook_entry **pp = &leaf->hooks; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == handle) {
            wf_hook_entry *h = *pp;
            *pp = h->next;
            wf__free(h, sizeof *h);
            return 0;
        }
    }
    return wf__error(WF_ENOTFOUND, "wf_remove_grad_hook: no hook with handle %d", handle);
}
