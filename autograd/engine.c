/* autograd/engine.c: wf_backward.
 *
 * 1. Walk the graph from the root and count, for every node, how many edges point at it.
 * 2. Run nodes whose gradients are complete (count reached zero), latest-created first,
 *    summing each node's input gradients into the buffers of the nodes they flow to.
 * A leaf's AccumulateGrad node runs once all its contributions are summed: that is when
 * the leaf's gradient hooks fire. Each node runs inside its own scope, so the temporaries
 * of a backward function die as soon as it returns; only the gradients passed on survive. */
#include "autograd_impl.h"

#include <string.h>

void wf__node_free_saved(wf_node *n);

/* The memory census's context (tensor/census.c): the allocations of a node's backward are
 * "backward of <Node> / <op>", those of summing gradients "gradient sum for <Node> / add". */
typedef struct { const char *prefix, *name, *op; bool on; } census_ctx;
static census_ctx census_enter(const char *prefix, const char *name) {
    census_ctx c = { 0 };
#ifndef WEFT_MINIMAL
    if (!WF__CENSUS_ON()) return c;
    c.on = true;
    wf__census_swap_context(prefix, name, &c.prefix, &c.name);
    c.op = wf__census_swap_op(NULL);
#else
    (void)prefix; (void)name;
#endif
    return c;
}
static void census_leave(census_ctx c) {
#ifndef WEFT_MINIMAL
    if (!c.on) return;
    wf__census_swap_context(c.prefix, c.name, NULL, NULL);
    wf__census_swap_op(c.op);
#else
    (void)c;
#endif
}

typedef struct { wf_node **v; size_t n, cap; } vec;

static int vec_push(vec *a, wf_node *x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        wf_node **p = wf__realloc(a->v, a->cap * sizeof *p, cap * sizeof *p);
        if (!p) return wf__error(WF_ENOMEM, "wf_backward: out of memory ordering the graph");
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* max-heap on seq: the most recently created ready node runs first */
static void heap_push(vec *h, wf_node *x) {
    size_t i = h->n - 1;
    h->v[i] = x;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p]->seq >= h->v[i]->seq) break;
        wf_node *t = h->v[p]; h->v[p] = h->v[i]; h->v[i] = t;
        i = p;
    }
}
static wf_node *heap_pop(vec *h) {
    wf_node *top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l]->seq > h->v[m]->seq) m = l;
        if (r < h->n && h->v[r]->seq > h->v[m]->seq) m = r;
        if (m == i) break;
        wf_node *t = h->v[m]; h->v[m] = h->v[i]; h->v[i] = t;
        i = m;
    }
    return top;
}

static void free_bufs(wf_node *n) {
    if (!n->grad_buf) return;
    for (int o = 0; o < n->n_outputs; o++) wf_tensor_free(n->grad_buf[o]);
    wf__free(n->grad_buf, 0);
    n->grad_buf = NULL;
}

/* Nothing but the gradient buffer itself sees b: one handle reference (the buffer's own; a
 * scope or a node holding it counts too), its storage not shared (no view, no tensor passed
 * through to two buffers), no history. */
static bool buffer_private(const wf_tensor *b) {
    return atomic_load(&b->refcount) == 1 && atomic_load(&b->storage->refcount) == 1 && !b->view_base &&
           !b->grad_fn && !b->requires_grad;
}
/* May g be added into the buffer b in place? When b is private and the sum keeps b's dtype and
 * shape (no promotion, no broadcast). */
static bool summable_in_place(const wf_tensor *b, const wf_tensor *g) {
    return buffer_private(b) && b->dtype == g->dtype && wf_device_eq(b->device, g->device) && wf_same_shape(b, g);
}

/* t has the shape recorded in m */
static bool shape_of_meta(const wf_tensor *t, const wf_meta *m) {
    bool ok = t->ndim == m->ndim;
    for (int d = 0; ok && d < m->ndim; d++) ok = t->shape[d] == m->shape[d];
    return ok;
}

/* WEFT_NO_GRAD_SINK=1: no backward adds into a waiting gradient (A/B timing) */
WF__ENV_SWITCH(grad_sink_off, "WEFT_NO_GRAD_SINK")

wf_tensor *wf__grad_sink(wf_node *n, int i) {
    if (i < 0 || i >= n->n_inputs || !n->next[i].fn || wf_is_grad_enabled() || grad_sink_off()) return NULL;
    const wf_node *to = n->next[i].fn;
    wf_tensor *b = to->grad_buf ? to->grad_buf[n->next[i].output_nr] : NULL;
    const wf_meta *m = &n->in_meta[i];
    bool fits = b && buffer_private(b) && b->dtype == m->dtype && wf_device_eq(b->device, m->device) &&
                shape_of_meta(b, m) && wf_is_contiguous(b);
    return fits ? b : NULL;
}

/* Add g into node's buffer for output o (takes a reference of its own). */
static int deliver(wf_node *n, int o, wf_tensor *g) {
    if (!n->grad_buf) {
        n->grad_buf = wf__calloc((size_t)n->n_outputs, sizeof *n->grad_buf);
        if (!n->grad_buf) return wf__error(WF_ENOMEM, "wf_backward: out of memory");
    }
    if (!n->grad_buf[o]) {
        n->grad_buf[o] = wf_tensor_retain(g);
        return 0;
    }
    census_ctx cc = census_enter("gradient sum for ", n->name);
    wf_tensor *b = n->grad_buf[o];
    if (summable_in_place(b, g)) {
        /* b is the buffer's alone: add into it (PyTorch's InputBuffer does the same) rather
         * than hold b, g and their sum at once; a tied embedding's gradient is 154 MB at
         * GPT-2 124M (bench/NOTES.md). b + 1*g rounds as b + g does: the same values. */
        int rc = wf_add_(b, g);
        census_leave(cc);
        return rc;
    }
    wf_scope_begin();
    wf_tensor *s = wf_add(b, g);
    if (s) wf_tensor_retain(s);
    wf_scope_end();
    census_leave(cc);
    if (!s) return wf_error();
    wf_tensor_free(n->grad_buf[o]);
    n->grad_buf[o] = s;
    return 0;
}

static int run_node(wf_node *n) {
    int rc = 0;
    wf_tensor *gy_inline[4], **gy = n->n_outputs <= 4 ? gy_inline : wf__calloc((size_t)n->n_outputs, sizeof *gy);
    wf_tensor *gx_inline[4], **gx = n->n_inputs <= 4 ? gx_inline : wf__calloc((size_t)n->n_inputs, sizeof *gx);
    if (!gy || !gx) { rc = wf__error(WF_ENOMEM, "wf_backward: out of memory"); goto out; }
    memset(gx, 0, sizeof(*gx) * (size_t)(n->n_inputs > 4 ? n->n_inputs : 4));
    census_ctx cc = census_enter("backward of ", n->name);
    wf_scope_begin();
    for (int o = 0; o < n->n_outputs; o++) {
        gy[o] = n->grad_buf ? n->grad_buf[o] : NULL;
        if (!gy[o]) {   /* an output nobody used: its gradient is zero */
            const wf_meta *m = &n->out_meta[o];
            gy[o] = wf_zeros_on(m->shape, m->ndim, m->dtype, m->device);
            if (!gy[o]) { rc = wf_error(); break; }
        }
    }
    if (!rc) rc = n->backward(n, gy, gx);
    if (!rc) {
        for (int i = 0; i < n->n_inputs; i++) {
            if (!gx[i] || !n->next[i].fn) continue;
            const wf_meta *m = &n->in_meta[i];
            if (!shape_of_meta(gx[i], m)) {
                char b1[96], b2[96];
                rc = wf__error(WF_EAUTOGRAD, "%s: backward produced a gradient of shape %s for an input of shape %s",
                               n->name, wf_shape_str(gx[i], b1, sizeof b1), wf__shape_text(m->ndim, m->shape, b2, sizeof b2));
                break;
            }
            if ((rc = deliver(n->next[i].fn, n->next[i].output_nr, gx[i]))) break;
        }
    } else if (!wf_error()) {
        rc = wf__error(rc, "%s: backward failed", n->name);
    }
    wf_scope_end();
    census_leave(cc);
out:
    if (gy && gy != gy_inline) wf__free(gy, 0);
    if (gx && gx != gx_inline) wf__free(gx, 0);
    free_bufs(n);
    return rc;
}

static int backward_graph(wf_tensor *t, wf_tensor *grad, bool retain_graph) {
    if (!t) return wf__any_null("wf_backward", 1, t), WF_ENULL;
    if (!t->requires_grad)
        return wf__error(WF_EAUTOGRAD, "wf_backward: the tensor does not require grad and has no grad_fn "
                         "(did you compute it under WF_NO_GRAD, or forget wf_set_requires_grad?)");
    if (grad) {
        if (!wf_same_shape(grad, t)) {
            char b1[96], b2[96];
            return wf__error(WF_ESHAPE, "wf_backward: gradient shape %s does not match output shape %s",
                             wf_shape_str(grad, b1, sizeof b1), wf_shape_str(t, b2, sizeof b2));
        }
    } else if (wf_numel(t) != 1) {
        char b[96];
        return wf__error(WF_ESHAPE, "wf_backward: grad can be implicitly created only for one-element "
                         "outputs (shape %s); pass a gradient", wf_shape_str(t, b, sizeof b));
    }

    bool prev_mode = wf_set_grad_enabled(false);
    int rc = 0;
    vec all = { 0 }, ready = { 0 };
    wf_node *root;
    int root_nr = 0;
    if (t->grad_fn) { root = t->grad_fn; root_nr = t->output_nr; wf__node_retain(root); }
    else root = wf__grad_accumulator(t);
    if (!root) { wf_set_grad_enabled(prev_mode); return wf_error(); }

    /* 1. discover and count dependencies (iterative DFS) */
    static _Thread_local int epoch;
    int mark = ++epoch;
    vec stack = { 0 };
    root->visit = mark;
    root->deps = 0;
    if ((rc = vec_push(&stack, root)) || (rc = vec_push(&all, root))) goto done;
    while (stack.n) {
        wf_node *n = stack.v[--stack.n];
        for (int i = 0; i < n->n_inputs; i++) {
            wf_node *m = n->next[i].fn;
            if (!m) continue;
            if (m->visit != mark) {
                m->visit = mark;
                m->deps = 0;
                if ((rc = vec_push(&stack, m)) || (rc = vec_push(&all, m))) goto done;
            }
            m->deps++;
        }
    }

    /* 2. seed the root and run */
    census_ctx cc = census_enter("backward seed", NULL);
    wf_scope_begin();
    wf_tensor *g0 = grad ? grad : wf_ones_like(t);
    if (g0 && g0->dtype != t->dtype) g0 = wf_to_dtype(g0, t->dtype);
    rc = g0 ? deliver(root, root_nr, g0) : wf_error();
    wf_scope_end();
    census_leave(cc);
    if (rc) goto done;
    if ((rc = vec_push(&ready, root))) goto done;
    heap_push(&ready, root);
    while (ready.n) {
        wf_node *n = heap_pop(&ready);
        if ((rc = run_node(n))) break;
        /* its saved tensors have served: drop them now, as PyTorch does, not after the whole
         * backward, when every activation would still be alive next to every gradient */
        if (!retain_graph) wf__node_free_saved(n);
        for (int i = 0; i < n->n_inputs; i++) {
            wf_node *m = n->next[i].fn;
            if (!m) continue;
            if (--m->deps == 0) {
                if ((rc = vec_push(&ready, m))) break;
                heap_push(&ready, m);
            }
        }
        if (rc) break;
    }

done:
    for (size_t i = 0; i < all.n; i++) {
        free_bufs(all.v[i]);
        if (!retain_graph && !rc) wf__node_free_saved(all.v[i]);
    }
    wf__free(all.v, 0);
    wf__free(ready.v, 0);
    wf__free(stack.v, 0);
    wf__node_release(root);
    wf_set_grad_enabled(prev_mode);
    return rc;
}

/* ---------------------------------------------------------------- end-of-backward callbacks
 * A per-thread FIFO: DDP queues its finalizer before (or during) a backward; the outermost
 * wf_backward on the thread runs the queue when its graph is done. */
typedef struct { wf_backward_callback_fn fn; void *ud; } callback;
static _Thread_local callback *cb_q;
static _Thread_local size_t cb_n, cb_cap;
static _Thread_local int bw_depth;

int wf_queue_backward_callback(wf_backward_callback_fn fn, void *ud) {
    if (!fn) return wf__error(WF_ENULL, "wf_queue_backward_callback: NULL function");
    if (cb_n == cb_cap) {
        size_t cap = cb_cap ? cb_cap * 2 : 8;
        callback *q = wf__realloc(cb_q, cb_cap * sizeof *q, cap * sizeof *q);
        if (!q) return wf__error(WF_ENOMEM, "wf_queue_backward_callback: out of memory");
        cb_q = q;
        cb_cap = cap;
    }
    cb_q[cb_n++] = (callback){ fn, ud };
    return 0;
}

bool wf__backward_callback_cancel(wf_backward_callback_fn fn, void *ud) {
    for (size_t i = 0; i < cb_n; i++) {
        if (cb_q[i].fn != fn || cb_q[i].ud != ud) continue;
        memmove(cb_q + i, cb_q + i + 1, (cb_n - i - 1) * sizeof *cb_q);
        cb_n--;
        return true;
    }
    return false;
}

/* Run the queue in order (callbacks may queue more); the first failure becomes the result
 * unless the backward already failed. The queue is freed when empty, so a thread that ends
 * leaks nothing. */
static int run_callbacks(int rc) {
    for (size_t i = 0; i < cb_n; i++) {
        callback c = cb_q[i];
        int crc = c.fn(rc, c.ud);
        if (crc && !rc) rc = wf_error() ? crc : wf__error(crc, "wf_backward: an end-of-backward callback failed (code %d)", crc);
    }
    wf__free(cb_q, cb_cap * sizeof *cb_q);
    cb_q = NULL;
    cb_n = cb_cap = 0;
    return rc;
}

int wf_backward(wf_tensor *t, wf_tensor *grad, bool retain_graph) {
    bw_depth++;
    int rc = backward_graph(t, grad, retain_graph);
    /* still at depth 1 while they run: a backward inside a callback leaves the queue to us */
    if (bw_depth == 1 && cb_n) rc = run_callbacks(rc);
    bw_depth--;
    return rc;
}
