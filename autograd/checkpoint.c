/* autograd/checkpoint.c: activation checkpointing (torch.utils.checkpoint). The forward of a
 * segment runs without recording a graph, so none of its activations stay alive; one node
 * stands for the whole segment. Its backward runs the segment again with grad on, from
 * detached copies of the saved inputs, under the RNG state and the autocast policy the
 * forward had (so dropout draws the same mask and the same casts happen), and backpropagates
 * through that fresh graph. Memory: the inputs instead of every activation; time: one more
 * forward.
 *
 * The recomputed graph reaches only the detached inputs, never the caller's tensors: its
 * nested wf_backward touches no node of the outer graph, so a parameter used both inside and
 * outside the segment still gets one accumulation per backward, through the outer engine, and
 * its gradient hooks (DDP, FSDP) fire once. That is why every tensor the segment needs a
 * gradient for must be an input: one captured from elsewhere would get no gradient, so it
 * is refused with an error instead. */
#include "autograd_impl.h"

#include <string.h>

typedef struct ckpt_ctx {
    wf_checkpoint_fn fn;
    void *ud;
    wf_rng_state rng;
    wf__autocast_state ac;
} ckpt_ctx;

static void ckpt_release(wf_node *n) {
    wf__free(n->ctx, sizeof(ckpt_ctx));
    n->ctx = NULL;
}

/* Does the graph below y reach a leaf that requires grad other than xs[0..n)? */
static int check_leaves(wf_tensor *y, wf_tensor *const *xs, int n) {
    if (!y->grad_fn) return 0;
    wf_node **seen = NULL, **stack = NULL;
    size_t n_seen = 0, n_stack = 0, cap = 0;
    int rc = 0;
#define PUSH(node)                                                                          \
    do {                                                                                    \
        if (n_seen == cap) {                                                                \
            size_t nc = cap ? 2 * cap : 64;                                                 \
            wf_node **a = wf__realloc(seen, cap * sizeof *a, nc * sizeof *a);               \
            wf_node **b = a ? wf__realloc(stack, cap * sizeof *b, nc * sizeof *b) : NULL;   \
            if (a) seen = a;                                                                \
            if (!b) { rc = wf__error(WF_ENOMEM, "wf_checkpoint: out of memory"); break; }   \
            stack = b;                                                                      \
            cap = nc;                                                                       \
        }                                                                                   \
        seen[n_seen++] = (node);                                                            \
        stack[n_stack++] = (node);                                                          \
    } while (0)
    PUSH(y->grad_fn);
    while (!rc && n_stack) {
        wf_node *nd = stack[--n_stack];
        if (nd->leaf) {
            bool ours = false;
            for (int i = 0; i < n && !ours; i++) ours = nd->leaf == xs[i];
            if (!ours) {
                char b[96];
                rc = wf__error(WF_EAUTOGRAD, "wf_checkpoint: the function uses a tensor of shape %s that requires grad "
                               "but is not one of its inputs, so it would get no gradient; pass it as an input "
                               "(wf_checkpoint_module passes a module's parameters)",
                               wf_shape_str(nd->leaf, b, sizeof b));
                break;
            }
        }
        for (int i = 0; i < nd->n_inputs && !rc; i++) {
            wf_node *m = nd->next[i].fn;
            if (!m) continue;
            bool known = false;
            for (size_t k = 0; k < n_seen && !known; k++) known = seen[k] == m;
            if (!known) PUSH(m);
        }
    }
#undef PUSH
    wf__free(seen, cap * sizeof *seen);
    wf__free(stack, cap * sizeof *stack);
    return rc;
}

static int ckpt_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    ckpt_ctx *c = n->ctx;
    wf_tensor *xs_inline[8], **xs = n->n_inputs <= 8 ? xs_inline : wf__calloc((size_t)n->n_inputs, sizeof *xs);
    if (!xs) return wf__error(WF_ENOMEM, "CheckpointBackward: out of memory");
    int rc = 0;
    for (int i = 0; i < n->n_inputs && !rc; i++) {
        wf_tensor *a = wf__saved(n, i);
        if (!a) { rc = wf_error(); break; }
        xs[i] = wf_detach(a);   /* a temporary of the engine's scope */
        if (!xs[i]) rc = wf_error();
        else if (n->needs[i]) rc = wf_set_requires_grad(xs[i], true);
    }
    if (rc) goto out;

    bool prev = wf_set_grad_enabled(true);
    wf_rng_state now = wf_rng_get_state();
    wf_rng_set_state(c->rng);
    rc = wf__autocast_enter(&c->ac);
    wf_tensor *y = NULL;
    if (!rc) {
        y = c->fn(xs, n->n_inputs, c->ud);
        wf__autocast_leave();
    }
    wf_rng_set_state(now);
    if (!rc && !y) rc = wf_error() ? wf_error() : wf__error(WF_EAUTOGRAD, "CheckpointBackward: the function returned NULL");
    if (!rc) {
        const wf_meta *m = &n->out_meta[0];
        bool same = y->ndim == m->ndim && y->dtype == m->dtype;
        for (int d = 0; same && d < m->ndim; d++) same = y->shape[d] == m->shape[d];
        if (!same) {
            char b[96];
            rc = wf__error(WF_EAUTOGRAD, "CheckpointBackward: the recomputed output (%s %s) differs from the forward's; "
                           "the function must compute the same thing each time", wf_shape_str(y, b, sizeof b),
                           wf_dtype_name(y->dtype));
        }
    }
    if (!rc && y->requires_grad) rc = check_leaves(y, xs, n->n_inputs);
    if (!rc && y->requires_grad) rc = wf_backward(y, gy[0], false);
    wf_set_grad_enabled(prev);
    for (int i = 0; !rc && i < n->n_inputs; i++)
        if (n->needs[i]) gx[i] = wf_grad(xs[i]);   /* alive until the engine's scope ends */
out:
    if (xs != xs_inline) wf__free(xs, 0);
    return rc;
}

static wf_tensor *checkpoint_body(wf_checkpoint_fn fn, wf_tensor *const *inputs, int n, void *ud) {
    if (!fn) { wf__error(WF_ENULL, "wf_checkpoint: NULL function"); return NULL; }
    if (n < 0 || (n > 0 && !inputs)) { wf__error(WF_EINVAL, "wf_checkpoint: %d inputs at %p", n, (const void *)inputs); return NULL; }
    for (int i = 0; i < n; i++)
        if (!inputs[i]) { wf__error(WF_ENULL, "wf_checkpoint: input %d is NULL", i); return NULL; }
    if (!wf__needs_grad(n, inputs)) return fn(inputs, n, ud);

    ckpt_ctx *c = wf__calloc(1, sizeof *c);
    if (!c) { wf__error(WF_ENOMEM, "wf_checkpoint: out of memory"); return NULL; }
    c->fn = fn;
    c->ud = ud;
    c->rng = wf_rng_get_state();
    wf__autocast_capture(&c->ac);
    wf_tensor *y;
    WF_NO_GRAD { y = fn(inputs, n, ud); }
    if (!y) {
        wf__free(c, sizeof *c);
        if (!wf_error()) wf__error(WF_EAUTOGRAD, "wf_checkpoint: the function returned NULL");
        return NULL;
    }
    /* the result must be a handle of its own: it takes the segment's node */
    bool alias = y->requires_grad;   /* a leaf the function returned as it is */
    for (int i = 0; i < n; i++) alias = alias || y == inputs[i];
    if (alias && !(y = wf_detach(y))) { wf__free(c, sizeof *c); return NULL; }
    wf_node *nd = wf__record("CheckpointBackward", ckpt_backward, y, n, inputs);
    bool ok = true;
    if (nd) {
        nd->ctx = c;
        nd->release = ckpt_release;
        for (int i = 0; i < n && ok; i++) ok = wf__save(nd, inputs[i]) >= 0;
    } else {
        wf__free(c, sizeof *c);
    }
    return wf__recorded(y, nd, ok, n, inputs);
}

wf_tensor *wf_checkpoint(wf_checkpoint_fn fn, wf_tensor *const *inputs, int n, void *ud) {
    WF__NAMED("wf_checkpoint", wf_tensor *, !r, checkpoint_body(fn, inputs, n, ud));
}
