/* autograd/node.c: graph nodes, recording, saved tensors. */
#include "autograd_impl.h"

#include <string.h>

static atomic_uint_fast64_t g_seq;

void wf__meta_of(wf_meta *m, const wf_tensor *t) {
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    m->dtype = t->dtype;
    m->device = t->device;
}

static void tensor_release(wf_tensor *t) {
    if (t->grad_fn) wf__node_release(t->grad_fn);
    t->grad_fn = NULL;
    wf_hook_entry *h = t->hooks;
    while (h) { wf_hook_entry *nx = h->next; wf__free(h, sizeof *h); h = nx; }
    t->hooks = NULL;
}
static const char *tensor_grad_fn_name(const wf_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }
static const wf__autograd_iface g_iface = { tensor_release, tensor_grad_fn_name };

void wf__autograd_install(void) {
    if (atomic_load_explicit(&wf__autograd, memory_order_relaxed) != &g_iface)
        atomic_store_explicit(&wf__autograd, &g_iface, memory_order_release);
}

static wf_node *node_alloc(const char *name, wf_backward_fn fn, int n_inputs, int n_outputs) {
    wf__autograd_install();   /* a tensor may own this node: tensor/ must be able to release it */
    wf_node *n = wf__calloc(1, sizeof *n);
    if (!n) { wf__error(WF_ENOMEM, "%s: out of memory recording the autograd graph", name); return NULL; }
    atomic_init(&n->refcount, 1);
    n->name = name;
    n->backward = fn;
    n->seq = atomic_fetch_add(&g_seq, 1);
    n->n_inputs = n_inputs;
    n->n_outputs = n_outputs;
    if (n_inputs <= WF_NODE_INLINE) {
        n->next = n->inline_next;
        n->in_meta = n->inline_in_meta;
        n->needs = n->inline_needs;
    } else {
        n->next = wf__calloc((size_t)n_inputs, sizeof *n->next);
        n->in_meta = wf__calloc((size_t)n_inputs, sizeof *n->in_meta);
        n->needs = wf__calloc((size_t)n_inputs, sizeof *n->needs);
    }
    n->out_meta = n_outputs <= 1 ? n->inline_out_meta : wf__calloc((size_t)n_outputs, sizeof *n->out_meta);
    if (!n->next || !n->in_meta || !n->needs || !n->out_meta) {
        wf__error(WF_ENOMEM, "%s: out of memory recording the autograd graph", name);
        n->n_inputs = 0;
        wf__node_release(n);
        return NULL;
    }
    return n;
}

void wf__node_retain(wf_node *n) { atomic_fetch_add(&n->refcount, 1); }

static void release_saved(wf_node *n) {
    for (int i = 0; i < n->n_saved; i++) wf_tensor_free(n->saved[i].t);
    wf__free(n->saved, (size_t)n->cap_saved * sizeof *n->saved);
    n->saved = NULL;
    n->n_saved = n->cap_saved = 0;
}

/* Iterative, so that dropping a very deep graph (long sequences) cannot overflow the stack. */
void wf__node_release(wf_node *n) {
    wf_node *local[64];
    wf_node **stack = local;
    size_t sp = 0, cap = 64;
    stack[sp++] = n;
    while (sp) {
        wf_node *m = stack[--sp];
        if (atomic_fetch_sub(&m->refcount, 1) != 1) continue;
        for (int i = 0; i < m->n_inputs; i++) {
            wf_node *fn = m->next[i].fn;
            if (!fn) continue;
            if (sp == cap) {
                size_t ncap = cap * 2;
                wf_node **ns = wf__malloc(ncap * sizeof *ns);
                if (!ns) { wf__node_release(fn); continue; } /* fall back to recursion */
                memcpy(ns, stack, sp * sizeof *ns);
                if (stack != local) wf__free(stack, cap * sizeof *stack);
                stack = ns;
                cap = ncap;
            }
            stack[sp++] = fn;
        }
        if (m->release) m->release(m);
        release_saved(m);
        if (m->leaf) {
            m->leaf->grad_accumulator = NULL;
            wf_tensor_free(m->leaf);
        }
        if (m->next != m->inline_next) {
            wf__free(m->next, 0);
            wf__free(m->in_meta, 0);
            wf__free(m->needs, 0);
        }
        if (m->out_meta != m->inline_out_meta) wf__free(m->out_meta, 0);
        wf__free(m, sizeof *m);
    }
    if (stack != local) wf__free(stack, cap * sizeof *stack);
}

static int accumulate_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);

wf_node *wf__grad_accumulator(wf_tensor *leaf) {
    if (leaf->grad_accumulator) {
        wf__node_retain(leaf->grad_accumulator);
        return leaf->grad_accumulator;
    }
    wf_node *n = node_alloc("AccumulateGrad", accumulate_backward, 0, 1);
    if (!n) return NULL;
    wf__meta_of(&n->out_meta[0], leaf);
    n->leaf = wf_tensor_retain(leaf);
    leaf->grad_accumulator = n;   /* weak: cleared when the node dies */
    return n;
}

/* The leaf's gradient is final when this node runs (the engine runs a node only after all
 * of its inputs arrived): accumulate, then fire the leaf's hooks. */
static int accumulate_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    (void)gx;
    wf_tensor *leaf = n->leaf, *g = gy[0];
    if (!wf_same_shape(leaf, g) || g->dtype != leaf->dtype) {
        g = wf__reduce_to(g, &n->out_meta[0]);
        if (!g) return wf_error();
    }
    if (!leaf->grad) {
        if (g == gy[0] && atomic_load(&g->refcount) == 1 && atomic_load(&g->storage->refcount) == 1 &&
            !g->scope && !g->view_base && !g->requires_grad && wf_is_contiguous(g)) {
            /* only the engine's buffer holds this gradient: take it instead of copying */
            leaf->grad = wf_tensor_retain(g);
        } else {
            wf_tensor *c = wf_clone(g);
            if (!c) return wf_error();
            wf__scope_unregister(c);           /* owned by the leaf */
            leaf->grad = c;
        }
    } else {
        int rc = wf_add_(leaf->grad, g);
        if (rc) return rc;
    }
    for (wf_hook_entry *h = leaf->hooks; h; h = h->next) {
        if (h->fn) { h->fn(leaf, h->ud); continue; }
        int rc = h->ready_fn(leaf, h->ud);
        if (rc) return wf_error() ? rc : wf__error(rc, "AccumulateGrad: a grad-ready hook failed (code %d)", rc);
    }
    return 0;
}

static wf_node *record(const char *name, wf_backward_fn fn, wf_tensor *const *ys, int n_out,
                       int n_in, wf_tensor *const *inputs) {
    if (!wf__needs_grad(n_in, inputs)) return NULL;
    wf_node *n = node_alloc(name, fn, n_in, n_out);
    if (!n) return NULL;
    /* Edges first: an in-place op passes y as an input too, and its edge must point at y's
     * previous history. */
    for (int i = 0; i < n_in; i++) {
        wf_tensor *x = inputs[i];
        if (!x) continue;
        wf__meta_of(&n->in_meta[i], x);
        if (!x->requires_grad) continue;
        n->needs[i] = true;
        if (x->grad_fn) {
            wf__node_retain(x->grad_fn);
            n->next[i] = (wf_edge){ x->grad_fn, x->output_nr };
        } else {
            wf_node *acc = wf__grad_accumulator(x);
            if (!acc) { wf__node_release(n); return NULL; }
            n->next[i] = (wf_edge){ acc, 0 };
        }
    }
    for (int o = 0; o < n_out; o++) {
        wf_tensor *y = ys[o];
        wf__meta_of(&n->out_meta[o], y);
        wf_node *old = y->grad_fn;
        wf__node_retain(n);
        y->grad_fn = n;
        y->output_nr = o;
        y->requires_grad = true;
        if (old) wf__node_release(old);
    }
    wf__node_release(n);   /* the outputs hold it now */
    return n;
}

wf_node *wf__record(const char *name, wf_backward_fn fn, wf_tensor *y, int n_inputs, wf_tensor *const *inputs) {
    return record(name, fn, &y, 1, n_inputs, inputs);
}

wf_node *wf__record_outputs(const char *name, wf_backward_fn fn, wf_tensor *const *ys, int n_outputs, int n_inputs,
                           wf_tensor *const *inputs) {
    return record(name, fn, ys, n_outputs, n_inputs, inputs);
}

int wf__save(wf_node *n, wf_tensor *t) {
    if (n->n_saved == n->cap_saved) {
        int cap = n->cap_saved ? n->cap_saved * 2 : 4;
        wf_saved *s = wf__realloc(n->saved, (size_t)n->cap_saved * sizeof *s, (size_t)cap * sizeof *s);
        if (!s) return wf__error(WF_ENOMEM, "%s: out of memory saving a tensor for backward", n->name);
        n->saved = s;
        n->cap_saved = cap;
    }
    /* A detached alias: shares storage (and so the version counter) but holds no history,
     * so saving an op's own output creates no reference cycle. */
    wf_tensor *a = wf__view_of(t, t->ndim, t->shape, t->stride, t->offset);
    if (!a) return wf_error();
    wf__scope_unregister(a);
    wf_tensor_free(a->view_base);
    a->view_base = NULL;
    n->saved[n->n_saved] = (wf_saved){ a, atomic_load(&t->storage->version) };
    return n->n_saved++;
}

wf_tensor *wf__recorded(wf_tensor *y, wf_node *n, bool saved_ok, int n_inputs, wf_tensor *const *inputs) {
    if (!y || (n ? saved_ok : !wf__needs_grad(n_inputs, inputs))) return y;
    if (wf_error() != WF_ENOMEM) wf__error(WF_ENOMEM, "out of memory recording the autograd graph");
    wf_tensor_free(y);
    return NULL;
}

wf_tensor *wf__saved(wf_node *n, int i) {
    if (n->freed || i >= n->n_saved) {
        wf__error(WF_EAUTOGRAD, "%s: trying to backward through the graph a second time (its saved "
                  "tensors were freed); pass retain_graph=true to the first wf_backward", n->name);
        return NULL;
    }
    wf_saved *s = &n->saved[i];
    unsigned now = atomic_load(&s->t->storage->version);
    if (now != s->version) {
        char b[96];
        wf__error(WF_EAUTOGRAD, "%s: a tensor of shape %s saved for backward was modified by an in-place "
                  "operation (version %u, expected %u)", n->name, wf_shape_str(s->t, b, sizeof b), now, s->version);
        return NULL;
    }
    return s->t;
}

void wf__node_free_saved(wf_node *n);
void wf__node_free_saved(wf_node *n) {
    release_saved(n);
    n->freed = true;
}

wf_tensor *wf__reduce_to(wf_tensor *g, const wf_meta *m) {
    if (!g) return NULL;
    bool same = g->ndim == m->ndim;
    for (int i = 0; same && i < m->ndim; i++) same = g->shape[i] == m->shape[i];
    if (!same) {
        int dims[WF_MAX_DIMS], nd = 0, lead = g->ndim - m->ndim;
        if (lead < 0) {
            wf__error(WF_EAUTOGRAD, "internal: gradient has fewer dims than its input");
            return NULL;
        }
        for (int i = 0; i < g->ndim; i++) {
            if (i < lead) dims[nd++] = i;
            else if (m->shape[i - lead] == 1 && g->shape[i] != 1) dims[nd++] = i;
        }
        wf_tensor *s = nd ? wf_sum(g, dims, nd, true) : g;
        g = wf_reshape(s, m->shape, m->ndim);
        if (!g) return NULL;
    }
    if (g->dtype != m->dtype) g = wf_to_dtype(g, m->dtype);
    return g;
}

/* The root of t's view chain is usable for a CopySlices rebase when it is contiguous (so a
 * view's geometry maps onto a fresh gradient of the base's shape). */
static bool base_rebasable(const wf_tensor *b) { return wf_is_contiguous(b); }

int wf__check_inplace(const char *op, wf_tensor *t) {
    /* PyTorch's internal-overlap rule: a stride-0 dimension of size > 1 (an expanded view)
     * makes several elements one memory location, so an in-place result would depend on the
     * order the kernel writes them. Refused whatever the grad mode. */
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] == 0 && t->shape[i] > 1)
            return wf__error(WF_EINVAL, "%s: more than one element of the written-to tensor refers to a "
                             "single memory location (dimension %d of size %lld has stride 0, as in an "
                             "expanded view); clone it before the in-place operation", op, i,
                             (long long)t->shape[i]);
    if (!wf_is_grad_enabled()) return 0;
    if (t->requires_grad && !t->grad_fn)
        return wf__error(WF_EAUTOGRAD, "%s: a leaf tensor that requires grad is being used in an "
                         "in-place operation (wrap it in WF_NO_GRAD, as optimizers do)", op);
    if (t->view_base) {
        wf_tensor *b = t->view_base;
        if (b->requires_grad && !b->grad_fn)
            return wf__error(WF_EAUTOGRAD, "%s: a view of a leaf tensor that requires grad is being "
                             "used in an in-place operation", op);
        if ((b->requires_grad || t->requires_grad) && !base_rebasable(b))
            return wf__error(WF_EAUTOGRAD, "%s: in-place operation on a view of a non-contiguous tensor "
                             "that requires grad is not supported; use the out-of-place op", op);
    }
    return 0;
}

/* Geometry of a view relative to its contiguous base: i[0] = ndim, i[1] = offset delta;
 * ctx holds shape and strides (2 * ndim int64). */
typedef struct { int ndim; int64_t delta; int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS]; } view_geom;

static void geom_release(wf_node *n) { wf__free(n->ctx, sizeof(view_geom)); n->ctx = NULL; }

static int set_geom(wf_node *n, const wf_tensor *v, const wf_tensor *base) {
    view_geom *g = wf__calloc(1, sizeof *g);
    if (!g) return wf__error(WF_ENOMEM, "%s: out of memory", n->name);
    g->ndim = v->ndim;
    g->delta = v->offset - base->offset;
    for (int i = 0; i < v->ndim; i++) { g->shape[i] = v->shape[i]; g->stride[i] = v->stride[i]; }
    n->ctx = g;
    n->release = geom_release;
    return 0;
}

/* The region of a base-shaped contiguous tensor z that the view covered. */
static wf_tensor *region(wf_tensor *z, const view_geom *g) {
    return wf__view_of(z, g->ndim, g->shape, g->stride, z->offset + g->delta);
}

/* base after "base[region] = r": the base's old values outside the region, r inside */
static int copy_slices_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const view_geom *g = n->ctx;
    if (n->needs[0]) {
        wf_tensor *gb = wf_clone(gy[0]);
        wf_tensor *reg = gb ? region(gb, g) : NULL;
        if (!reg || wf_fill_(reg, 0.0)) return wf_error();
        gx[0] = gb;
    }
    if (n->needs[1]) {
        wf_tensor *c = wf_contiguous(gy[0]);
        wf_tensor *reg = c ? region(c, g) : NULL;
        gx[1] = reg ? wf_contiguous(reg) : NULL;
        if (!gx[1]) return wf_error();
    }
    return 0;
}

/* view = base[region] (after the base was rebased): gradient lands in the region */
static int as_strided_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    const wf_meta *m = &n->in_meta[0];
    wf_tensor *z = wf_zeros_on(m->shape, m->ndim, m->dtype, m->device);
    wf_tensor *reg = z ? region(z, n->ctx) : NULL;
    if (!reg || wf_add_(reg, gy[0])) return wf_error();
    gx[0] = z;
    return 0;
}

int wf__adopt(wf_tensor *a, wf_tensor *y) {
    const wf_kernels *k = wf__kernels(a->device);
    if (!k) return wf_error();
    int rc = wf_numel(a) ? k->copy(a, y) : 0;
    if (rc) return rc;
    wf__bump_version(a);
    if (!y->requires_grad) return 0;
    wf_tensor *base = a->view_base;
    if (!base) {   /* a takes over y's history */
        wf__node_retain(y->grad_fn);
        wf_node *old = a->grad_fn;
        a->grad_fn = y->grad_fn;
        a->output_nr = y->output_nr;
        a->requires_grad = true;
        if (old) wf__node_release(old);
        return 0;
    }
    /* a view: the base's history becomes "old base with the region replaced by y"
     * (PyTorch's CopySlices), and the view becomes a region of the new base */
    wf_tensor *ins[2] = { base, y };
    wf_node *cs = wf__record("CopySlices", copy_slices_backward, base, 2, ins);
    if (!cs || set_geom(cs, a, base)) return wf_error() ? wf_error() : WF_EAUTOGRAD;
    wf_node *av = wf__record("AsStridedBackward", as_strided_backward, a, 1, &base);
    if (!av || set_geom(av, a, base)) return wf_error() ? wf_error() : WF_EAUTOGRAD;
    return 0;
}
