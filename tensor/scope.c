/* tensor/scope.c: scopes own the temporaries created while they are open.
 *
 * Each thread has a stack of scopes; each scope holds one reference to every tensor
 * created in it. Ending a scope drops those references: what nobody else retained (a
 * module, an optimizer, a graph node, wf_keep) is freed.
 *
 * The tensors of a scope are a list threaded through the handles themselves (scope_prev /
 * scope_next), so listing a tensor and moving it to the enclosing scope (wf_keep) never
 * allocate and cannot fail: an op's result is never left without an owner when memory runs
 * out, and the many callers that ignore wf_keep's result stay correct. */
#include "tensor_impl.h"

#include <string.h>

typedef struct wf_scope {
    wf_tensor *head;              /* most recently listed first */
    struct wf_scope *parent;
} wf_scope;

static _Thread_local wf_scope *g_top;
/* wf_scope_begin cannot report a failure, and a scope that was not opened would leave its
 * temporaries to nobody and make the matching wf_scope_end close the enclosing one. So when
 * the allocator refuses, the thread's reserve scope is used; when that is in use too (nested
 * scopes opened out of memory), the begin only counts and the temporaries go to the
 * enclosing scope, which releases them at its end. */
static _Thread_local wf_scope t_reserve;
static _Thread_local bool t_reserve_used;
static _Thread_local int64_t t_unopened;

void wf_scope_begin(void) {
    wf_scope *s = t_unopened ? NULL : wf__calloc(1, sizeof *s);
    if (!s && !t_unopened && !t_reserve_used) {
        s = &t_reserve;
        t_reserve_used = true;
    }
    if (!s) { t_unopened++; return; }
    s->parent = g_top;
    g_top = s;
}

static void scope_push(wf_scope *s, wf_tensor *t) {
    t->scope = s;
    t->scope_prev = NULL;
    t->scope_next = s->head;
    if (s->head) s->head->scope_prev = t;
    s->head = t;
}

void wf_scope_end(void) {
    if (t_unopened) { t_unopened--; return; }
    wf_scope *s = g_top;
    if (!s) return;
    g_top = s->parent;
    /* Release in reverse creation order: outputs before the inputs they reference. Freeing
     * one tensor can unlist others of this scope (wf_tensor_free unregisters), so always
     * take the current head. */
    while (s->head) {
        wf_tensor *t = s->head;
        wf__scope_unregister(t);
        wf_tensor_free(t);
    }
    if (s == &t_reserve) {
        memset(s, 0, sizeof *s);
        t_reserve_used = false;
    } else {
        wf__free(s, sizeof *s);
    }
}

void wf__scope_register(wf_tensor *t) {
    if (t->scope) return;   /* already listed by a scope: one listing per handle */
    if (g_top) scope_push(g_top, t);
}

void wf__scope_unregister(wf_tensor *t) {
    wf_scope *s = t->scope;
    if (!s) return;
    if (t->scope_prev) t->scope_prev->scope_next = t->scope_next;
    else s->head = t->scope_next;
    if (t->scope_next) t->scope_next->scope_prev = t->scope_prev;
    t->scope = NULL;
    t->scope_prev = t->scope_next = NULL;
}

wf_tensor *wf_keep(wf_tensor *t) {
    if (!t) return NULL;
    wf_scope *s = t->scope;
    if (!s) return t;   /* already owned by the caller */
    if (t_unopened && s == g_top) return t;   /* made in a scope that was not opened: already there */
    wf_scope *to = s->parent;
    wf__scope_unregister(t);
    if (to) scope_push(to, t);
    return t;
}
