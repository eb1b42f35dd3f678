/* tensor/scope.c: scopes own the temporaries created while they are open.
 *
 * Each thread has a stack of scopes; each scope holds one reference to every tensor
 * created in it (a slot array, so removal is O(1)). Ending a scope drops those references:
 * what nobody else retained (a module, an optimizer, a graph node, wf_keep) is freed. */
#include "tensor_impl.h"

#include <string.h>

typedef struct wf_scope {
    wf_tensor **slots;
    int64_t n, cap;
    struct wf_scope *parent;
} wf_scope;

static _Thread_local wf_scope *g_top;

void wf_scope_begin(void) {
    wf_scope *s = wf__calloc(1, sizeof *s);
    if (!s) { wf__error(WF_ENOMEM, "wf_scope_begin: out of memory"); return; }
    s->parent = g_top;
    g_top = s;
}

static int scope_push(wf_scope *s, wf_tensor *t) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        wf_tensor **p = wf__realloc(s->slots, (size_t)s->cap * sizeof *p, (size_t)cap * sizeof *p);
        if (!p) return WF_ENOMEM;
        s->slots = p;
        s->cap = cap;
    }
    t->scope = s;
    t->scope_slot = s->n;
    s->slots[s->n++] = t;
    return 0;
}

void wf_scope_end(void) {
    wf_scope *s = g_top;
    if (!s) return;
    g_top = s->parent;
    /* Release in reverse creation order: outputs before the inputs they reference. */
    for (int64_t i = s->n - 1; i >= 0; i--) {
        wf_tensor *t = s->slots[i];
        if (!t) continue;
        t->scope = NULL;
        wf_tensor_free(t);
    }
    wf__free(s->slots, (size_t)s->cap * sizeof(wf_tensor *));
    wf__free(s, sizeof *s);
}

void wf__scope_register(wf_tensor *t) {
    if (t->scope) return;   /* already listed by a scope: one listing per handle */
    if (g_top && scope_push(g_top, t) != 0) {
        /* Could not record ownership: the tensor stays owned by the caller. Rare (OOM). */
        t->scope = NULL;
    }
}

void wf__scope_unregister(wf_tensor *t) {
    wf_scope *s = t->scope;
    if (!s) return;
    s->slots[t->scope_slot] = NULL;
    t->scope = NULL;
}

wf_tensor *wf_keep(wf_tensor *t) {
    if (!t) return NULL;
    wf_scope *s = t->scope;
    if (!s) return t;   /* already owned by the caller */
    wf__scope_unregister(t);
    if (s->parent && scope_push(s->parent, t) != 0) t->scope = NULL;
    return t;
}
