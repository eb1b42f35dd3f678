/* nn/module.c: the module header (parameters, buffers, children, hooks, modes), generic
 * walks (parameters, to, zero_grad, apply) and state dicts. */
#include "nn_impl.h"

#include <stdarg.h>
#include <string.h>

/* ================================================================ state dict */

typedef struct sd_entry { char *name; wf_tensor *t; } sd_entry;
struct wf_state_dict {
    sd_entry *v;
    int n, cap;
};

wf_state_dict *wf_state_dict_new(void) {
    wf_state_dict *sd = wf__calloc(1, sizeof *sd);
    if (!sd) wf__error(WF_ENOMEM, "wf_state_dict_new: out of memory");
    return sd;
}

void wf_state_dict_free(wf_state_dict *sd) {
    if (!sd) return;
    for (int i = 0; i < sd->n; i++) {
        wf__free(sd->v[i].name, strlen(sd->v[i].name) + 1);
        wf_tensor_free(sd->v[i].t);
    }
    wf__free(sd->v, (size_t)sd->cap * sizeof *sd->v);
    wf__free(sd, sizeof *sd);
}

static int sd_find(const wf_state_dict *sd, const char *name) {
    for (int i = 0; i < sd->n; i++)
        if (strcmp(sd->v[i].name, name) == 0) return i;
    return -1;
}

int wf_state_dict_set(wf_state_dict *sd, const char *name, wf_tensor *t) {
    if (!sd || !name || !t) return wf__any_null("wf_state_dict_set", 3, sd, name, t), WF_ENULL;
    if (!*name) return wf__error(WF_EINVAL, "wf_state_dict_set: empty name");
    int i = sd_find(sd, name);
    if (i >= 0) {
        wf_tensor_retain(t);
        wf_tensor_free(sd->v[i].t);
        sd->v[i].t = t;
        return 0;
    }
    if (sd->n == sd->cap) {
        int cap = sd->cap ? sd->cap * 2 : 16;
        sd_entry *v = wf__realloc(sd->v, (size_t)sd->cap * sizeof *v, (size_t)cap * sizeof *v);
        if (!v) return wf__error(WF_ENOMEM, "wf_state_dict_set: out of memory");
        sd->v = v;
        sd->cap = cap;
    }
    char *s = wf__strdup(name);
    if (!s) return wf__error(WF_ENOMEM, "wf_state_dict_set: out of memory");
    sd->v[sd->n].name = s;
    sd->v[sd->n].t = wf_tensor_retain(t);
    sd->n++;
    return 0;
}

wf_tensor *wf_state_dict_get(const wf_state_dict *sd, const char *name) {
    if (!sd || !name) return wf__any_null("wf_state_dict_get", 2, sd, name), NULL;
    int i = sd_find(sd, name);
    return i >= 0 ? sd->v[i].t : NULL;
}

int wf_state_dict_remove(wf_state_dict *sd, const char *name) {
    if (!sd || !name) return wf__any_null("wf_state_dict_remove", 2, sd, name), WF_ENULL;
    int i = sd_find(sd, name);
    if (i < 0) return wf__error(WF_ENOTFOUND, "wf_state_dict_remove: no entry \"%s\"", name);
    wf__free(sd->v[i].name, strlen(sd->v[i].name) + 1);
    wf_tensor_free(sd->v[i].t);
    memmove(sd->v + i, sd->v + i + 1, (size_t)(sd->n - i - 1) * sizeof *sd->v);
    sd->n--;
    return 0;
}

int wf_state_dict_count(const wf_state_dict *sd) {
    return sd ? sd->n : (wf__error(WF_ENULL, "wf_state_dict_count: NULL state dict"), 0);   /* documented: 0 */
}
const char *wf_state_dict_name_at(const wf_state_dict *sd, int i) {
    return sd && i >= 0 && i < sd->n ? sd->v[i].name : NULL;
}
wf_tensor *wf_state_dict_tensor_at(const wf_state_dict *sd, int i) {
    return sd && i >= 0 && i < sd->n ? sd->v[i].t : NULL;
}

/* ================================================================ lists */

static int list_find(const wf__mod_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0) return i;
    return -1;
}

static int list_push(wf__mod_list *l, const char *name, void *ptr) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        wf__mod_entry *v = wf__realloc(l->v, (size_t)l->cap * sizeof *v, (size_t)cap * sizeof *v);
        if (!v) return WF_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    char *s = wf__strdup(name);
    if (!s) return WF_ENOMEM;
    l->v[l->n].name = s;
    l->v[l->n].ptr = ptr;
    l->n++;
    return 0;
}

static void list_free_names(wf__mod_list *l) {
    for (int i = 0; i < l->n; i++) wf__free(l->v[i].name, strlen(l->v[i].name) + 1);
    wf__free(l->v, (size_t)l->cap * sizeof *l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static void clear_name_cache(wf_module *m) {
    for (int i = 0; i < m->n_name_cache; i++) wf__free(m->name_cache[i], strlen(m->name_cache[i]) + 1);
    wf__free(m->name_cache, (size_t)m->n_name_cache * sizeof(char *));
    m->name_cache = NULL;
    m->n_name_cache = 0;
}

/* ================================================================ lifecycle */

static bool valid(const char *op, const wf_module *m) {
    if (!m) { wf__any_null(op, 1, m); return false; }
    if (m->magic != WF_MODULE_MAGIC) {
        wf__error(WF_EINVAL, "%s: not an initialized module (call wf_module_init or wf_module_create)", op);
        return false;
    }
    return true;
}

int wf_module_init(wf_module *m, const char *type_name, const wf_module_vtable *vt) {
    if (!m) return wf__any_null("wf_module_init", 1, m), WF_ENULL;
    memset(m, 0, sizeof *m);
    m->magic = WF_MODULE_MAGIC;
    m->training = true;
    m->type_name = type_name ? type_name : "Module";
    static const wf_module_vtable empty = { 0 };
    m->vt = vt ? vt : &empty;
    return 0;
}

void *wf__module_new(size_t size, const char *type_name, const wf_module_vtable *vt) {
    if (!type_name) {
        wf__error(WF_ENULL, "wf_module_create: NULL type name");
        return NULL;
    }
    if (size < sizeof(wf_module)) {
        wf__error(WF_EINVAL, "wf_module_create: size %zu is smaller than a wf_module (%zu)", size, sizeof(wf_module));
        return NULL;
    }
    wf_module *m = wf__calloc(1, size);
    if (!m) { wf__error(WF_ENOMEM, "wf_module_create: out of memory (%s)", type_name ? type_name : "Module"); return NULL; }
    wf_module_init(m, type_name, vt);
    m->owns_memory = true;
    m->alloc_size = size;
    return m;
}

void *wf_module_create(size_t size, const char *type_name, const wf_module_vtable *vt) {
    return wf__module_new(size, type_name, vt);
}

void wf_module_free(wf_module *m) {
    if (!m || m->magic != WF_MODULE_MAGIC) return;
    if (m->vt && m->vt->free_extra) m->vt->free_extra(m);
    for (int i = 0; i < m->params.n; i++) wf_tensor_free(m->params.v[i].ptr);
    for (int i = 0; i < m->buffers.n; i++) wf_tensor_free(m->buffers.v[i].ptr);
    for (int i = 0; i < m->children.n; i++) wf_module_free(m->children.v[i].ptr);
    list_free_names(&m->params);
    list_free_names(&m->buffers);
    list_free_names(&m->children);
    wf__free(m->hooks, (size_t)m->cap_hooks * sizeof *m->hooks);
    clear_name_cache(m);
    m->magic = 0;
    if (m->owns_memory) wf__free(m, m->alloc_size);
}

const char *wf_module_type(const wf_module *m) { return m && m->type_name ? m->type_name : ""; }

char *wf__module_desc(const wf_module *m, char *buf, size_t n) {
    char extra[160] = "";
    if (m->vt && m->vt->extra_repr) m->vt->extra_repr(m, extra, sizeof extra);
    snprintf(buf, n, "%s(%s)", wf_module_type(m), extra);
    return buf;
}

/* ================================================================ registration */

static int check_name(const char *op, wf_module *m, const char *name) {
    if (!name || !*name) return wf__error(WF_EINVAL, "%s: empty name", op);
    if (strchr(name, '.')) return wf__error(WF_EINVAL, "%s: name \"%s\" must not contain '.'", op, name);
    if (list_find(&m->params, name) >= 0 || list_find(&m->buffers, name) >= 0 || list_find(&m->children, name) >= 0)
        return wf__error(WF_EINVAL, "%s: %s already has an attribute named \"%s\"", op, wf_module_type(m), name);
    return 0;
}

static int register_tensor(const char *op, wf_module *m, const char *name, wf_tensor *t, bool param) {
    if (!t) {
        /* keep an earlier error (a failed creation), else say the tensor was NULL */
        if (!wf_error()) wf__error(WF_ENULL, "%s: tensor for \"%s\" is NULL", op, name ? name : "?");
        return wf_error();
    }
    int rc = 0;
    if (!valid(op, m)) rc = wf_error();
    else if ((rc = check_name(op, m, name))) {}
    else if (param && !wf_dtype_is_floating(wf_tensor_dtype(t)))
        rc = wf__error(WF_EDTYPE, "%s: parameter \"%s\" must have a floating dtype, got %s", op, name,
                       wf_dtype_name(wf_tensor_dtype(t)));
    else if (param && !wf_is_leaf(t))
        rc = wf__error(WF_EAUTOGRAD, "%s: parameter \"%s\" must be a leaf (use wf_detach)", op, name);
    else if (param && (rc = wf_set_requires_grad(t, true))) {}
    if (!rc) {
        wf__mod_list *l = param ? &m->params : &m->buffers;
        if (list_push(l, name, t)) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    if (rc) { wf_tensor_free(t); return rc; }
    wf__scope_unregister(t);    /* the module owns the caller's reference now */
    return 0;
}

int wf_module_register_parameter(wf_module *m, const char *name, wf_tensor *t) {
    return register_tensor("wf_module_register_parameter", m, name, t, true);
}
int wf_module_register_buffer(wf_module *m, const char *name, wf_tensor *t) {
    return register_tensor("wf_module_register_buffer", m, name, t, false);
}
int wf__param(wf_module *m, const char *name, wf_tensor *t) {
    return register_tensor("wf_module_register_parameter", m, name, t, true);
}
int wf__buffer(wf_module *m, const char *name, wf_tensor *t) {
    return register_tensor("wf_module_register_buffer", m, name, t, false);
}

/* Whether target is root or one of its descendants (depth-bounded: a tree deeper than this
 * is itself a bug, and the bound keeps an existing cycle from recursing forever). */
static bool reaches(const wf_module *root, const wf_module *target, int depth) {
    if (root == target) return true;
    if (depth > 256) return false;
    for (int i = 0; i < root->children.n; i++)
        if (reaches(root->children.v[i].ptr, target, depth + 1)) return true;
    return false;
}

int wf_module_add_child(wf_module *m, const char *name, wf_module *child) {
    const char *op = "wf_module_add_child";
    if (!child) {
        if (!wf_error()) wf__error(WF_ENULL, "%s: child \"%s\" is NULL", op, name ? name : "?");
        return wf_error();
    }
    int rc = 0;
    if (!valid(op, m)) rc = wf_error();
    else if (!valid(op, child)) rc = wf_error();
    else if (child == m) rc = wf__error(WF_EINVAL, "%s: a module cannot be its own child", op);
    else if (reaches(child, m, 0))
        rc = wf__error(WF_EINVAL, "%s: %s \"%s\" already contains this %s: adding it would make a cycle",
                       op, child->type_name, name ? name : "?", m->type_name);
    else if ((rc = check_name(op, m, name))) {}
    else if (list_push(&m->children, name, child)) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    /* an ancestor of m is not freed: it owns m, and its owner (the caller) still holds it */
    if (rc) { if (child != m && !reaches(child, m, 0)) wf_module_free(child); return rc; }
    return 0;
}

/* ================================================================ lookup */

/* Resolve the module owning a dotted name's last component. */
static const wf_module *resolve(const wf_module *m, const char *name, const char **leaf) {
    while (m && m->magic == WF_MODULE_MAGIC) {
        const char *dot = strchr(name, '.');
        if (!dot) { *leaf = name; return m; }
        size_t len = (size_t)(dot - name);
        const wf_module *next = NULL;
        for (int i = 0; i < m->children.n; i++)
            if (strlen(m->children.v[i].name) == len && strncmp(m->children.v[i].name, name, len) == 0) {
                next = m->children.v[i].ptr;
                break;
            }
        m = next;
        name = dot + 1;
    }
    return NULL;
}

static wf__mod_entry *lookup(const wf_module *m, const char *name, int kind) {
    if (!m || !name) return NULL;
    const char *leaf;
    const wf_module *o = resolve(m, name, &leaf);
    if (!o) return NULL;
    const wf__mod_list *l = kind == 0 ? &o->params : kind == 1 ? &o->buffers : &o->children;
    int i = list_find(l, leaf);
    return i >= 0 ? &l->v[i] : NULL;
}

wf_tensor *wf_module_get_parameter(const wf_module *m, const char *name) {
    if (!m || !name) return wf__any_null("wf_module_get_parameter", 2, m, name), NULL;
    wf__mod_entry *e = lookup(m, name, 0);
    return e ? e->ptr : NULL;
}
wf_tensor *wf_module_get_buffer(const wf_module *m, const char *name) {
    if (!m || !name) return wf__any_null("wf_module_get_buffer", 2, m, name), NULL;
    wf__mod_entry *e = lookup(m, name, 1);
    return e ? e->ptr : NULL;
}
wf_module *wf_module_get_child(const wf_module *m, const char *name) {
    if (!m || !name) return wf__any_null("wf_module_get_child", 2, m, name), NULL;
    wf__mod_entry *e = lookup(m, name, 2);
    return e ? e->ptr : NULL;
}

static int set_tensor(const char *op, wf_module *m, const char *name, wf_tensor *t, bool param) {
    if (!m || !name || !t) {
        if (t && (!m || !name)) wf_tensor_free(t);
        return wf__any_null(op, 3, m, name, t), wf_error() ? wf_error() : WF_ENULL;
    }
    wf__mod_entry *e = lookup(m, name, param ? 0 : 1);
    if (!e) {
        wf_tensor_free(t);
        return wf__error(WF_ENOTFOUND, "%s: %s has no %s \"%s\"", op, wf_module_type(m), param ? "parameter" : "buffer", name);
    }
    if (param) {
        int rc = 0;
        if (!wf_dtype_is_floating(wf_tensor_dtype(t)))
            rc = wf__error(WF_EDTYPE, "%s: parameter \"%s\" must have a floating dtype", op, name);
        else if (!wf_is_leaf(t)) rc = wf__error(WF_EAUTOGRAD, "%s: parameter \"%s\" must be a leaf", op, name);
        else rc = wf_set_requires_grad(t, true);
        if (rc) { wf_tensor_free(t); return rc; }
    }
    wf__scope_unregister(t);
    wf_tensor *old = e->ptr;
    e->ptr = t;
    wf_tensor_free(old);
    return 0;
}

int wf_module_set_parameter(wf_module *m, const char *name, wf_tensor *t) {
    return set_tensor("wf_module_set_parameter", m, name, t, true);
}
int wf_module_set_buffer(wf_module *m, const char *name, wf_tensor *t) {
    return set_tensor("wf_module_set_buffer", m, name, t, false);
}

int wf_module_num_children(const wf_module *m) {
    return m ? m->children.n : (wf__error(WF_ENULL, "wf_module_num_children: NULL module"), 0);
}
wf_module *wf_module_child_at(const wf_module *m, int i, const char **name) {
    if (!m) return wf__any_null("wf_module_child_at", 1, m), NULL;
    if (i < 0 || i >= m->children.n) return NULL;   /* an index walk's end: no error, as wf_state_dict_name_at */
    if (name) *name = m->children.v[i].name;
    return m->children.v[i].ptr;
}

/* ================================================================ forward and hooks */

/* Hooks and forward, without activation checkpointing (nn/checkpoint.c runs this inside
 * its segment). */
wf_tensor *wf__module_forward_plain(wf_module *m, wf_tensor *x) {
    if (!m->vt->forward) {
        wf__error(WF_ENOTSUP, "wf_module_forward: %s has no forward function", wf_module_type(m));
        return NULL;
    }
    wf_tensor *in = x;
    int nh = m->n_hooks;
    for (int i = 0; i < nh && i < m->n_hooks; i++) {
        if (!m->hooks[i].pre) continue;
        int rc = m->hooks[i].pre(m, &in, m->hooks[i].ud);
        if (rc || !in) {
            if (!wf_error()) wf__error(rc ? rc : WF_ENULL, "wf_module_forward: a forward pre hook of %s failed", wf_module_type(m));
            return NULL;
        }
    }
    wf_tensor *out = m->vt->forward(m, in);
    if (!out) {
        if (!wf_error()) wf__error(WF_EINVAL, "wf_module_forward: %s forward returned NULL", wf_module_type(m));
        return NULL;
    }
    nh = m->n_hooks;
    for (int i = 0; i < nh && i < m->n_hooks; i++) {
        if (!m->hooks[i].post) continue;
        int rc = m->hooks[i].post(m, in, &out, m->hooks[i].ud);
        if (rc || !out) {
            if (!wf_error()) wf__error(rc ? rc : WF_ENULL, "wf_module_forward: a forward hook of %s failed", wf_module_type(m));
            return NULL;
        }
    }
    return out;
}

static wf_tensor *wf_module_forward__body(wf_module *m, wf_tensor *x) {
    if (wf__any_null("wf_module_forward", 2, m, x)) return NULL;
    if (!valid("wf_module_forward", m)) return NULL;
    if (m->activation_checkpointing && wf_is_grad_enabled()) return wf_checkpoint_module(m, x);
    return wf__module_forward_plain(m, x);
}

wf_tensor *wf_module_forward(wf_module *m, wf_tensor *x) {
    WF__NAMED("wf_module_forward", wf_tensor *, !r, wf_module_forward__body(m, x));
}

static int add_hook(const char *op, wf_module *m, wf_forward_pre_hook pre, wf_forward_hook post, void *ud) {
    if (!m || (!pre && !post)) return wf__any_null(op, 2, m, NULL), WF_ENULL;
    if (!valid(op, m)) return wf_error();
    if (m->n_hooks == m->cap_hooks) {
        int cap = m->cap_hooks ? m->cap_hooks * 2 : 4;
        wf__mod_hook *h = wf__realloc(m->hooks, (size_t)m->cap_hooks * sizeof *h, (size_t)cap * sizeof *h);
        if (!h) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        m->hooks = h;
        m->cap_hooks = cap;
    }
    int id = m->next_hook_id++;
    m->hooks[m->n_hooks++] = (wf__mod_hook){ .id = id, .pre = pre, .post = post, .ud = ud };
    return id;
}

int wf_module_register_forward_pre_hook(wf_module *m, wf_forward_pre_hook fn, void *ud) {
    return add_hook("wf_module_register_forward_pre_hook", m, fn, NULL, ud);
}
int wf_module_register_forward_hook(wf_module *m, wf_forward_hook fn, void *ud) {
    return add_hook("wf_module_register_forward_hook", m, NULL, fn, ud);
}

bool wf_module_has_hooks(const wf_module *m) { return m && m->n_hooks > 0; }

int wf_module_remove_hook(wf_module *m, int handle) {
    if (!m) return wf__any_null("wf_module_remove_hook", 1, m), WF_ENULL;
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i].id == handle) {
            memmove(m->hooks + i, m->hooks + i + 1, (size_t)(m->n_hooks - i - 1) * sizeof *m->hooks);
            m->n_hooks--;
            return 0;
        }
    return wf__error(WF_ENOTFOUND, "wf_module_remove_hook: %s has no hook %d", wf_module_type(m), handle);
}

/* ================================================================ modes */

void wf_module_train(wf_module *m, bool training) {
    if (!m || m->magic != WF_MODULE_MAGIC) return;
    m->training = training;
    for (int i = 0; i < m->children.n; i++) wf_module_train(m->children.v[i].ptr, training);
}

bool wf_module_is_training(const wf_module *m) { return m && m->training; }

/* ================================================================ walks */

/* A collected entry: the dotted name and the slot that holds the tensor. */
typedef struct walk_item { char *name; wf_tensor **slot; } walk_item;
typedef struct walk { walk_item *v; int n, cap; int err; } walk;

static void walk_add(walk *w, const char *prefix, const char *name, wf_tensor **slot) {
    if (w->err) return;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        walk_item *v = wf__realloc(w->v, (size_t)w->cap * sizeof *v, (size_t)cap * sizeof *v);
        if (!v) { w->err = WF_ENOMEM; return; }
        w->v = v;
        w->cap = cap;
    }
    size_t lp = strlen(prefix), ln = strlen(name);
    char *s = wf__malloc(lp + ln + 1);
    if (!s) { w->err = WF_ENOMEM; return; }
    memcpy(s, prefix, lp);
    memcpy(s + lp, name, ln + 1);
    w->v[w->n].name = s;
    w->v[w->n].slot = slot;
    w->n++;
}

/* kind bit 1: parameters, bit 2: buffers. Order: own params, own buffers, children. */
static void walk_module(walk *w, wf_module *m, const char *prefix, int kinds) {
    if (w->err) return;
    if (kinds & 1)
        for (int i = 0; i < m->params.n; i++) walk_add(w, prefix, m->params.v[i].name, (wf_tensor **)&m->params.v[i].ptr);
    if (kinds & 2)
        for (int i = 0; i < m->buffers.n; i++) walk_add(w, prefix, m->buffers.v[i].name, (wf_tensor **)&m->buffers.v[i].ptr);
    for (int i = 0; i < m->children.n && !w->err; i++) {
        const char *cn = m->children.v[i].name;
        size_t lp = strlen(prefix), lc = strlen(cn);
        char *p = wf__malloc(lp + lc + 2);
        if (!p) { w->err = WF_ENOMEM; return; }
        memcpy(p, prefix, lp);
        memcpy(p + lp, cn, lc);
        p[lp + lc] = '.';
        p[lp + lc + 1] = 0;
        walk_module(w, m->children.v[i].ptr, p, kinds);
        wf__free(p, lp + lc + 2);
    }
}

static void walk_free(walk *w) {
    for (int i = 0; i < w->n; i++)
        if (w->v[i].name) wf__free(w->v[i].name, strlen(w->v[i].name) + 1);
    wf__free(w->v, (size_t)w->cap * sizeof *w->v);
}

static int collect(const char *op, wf_module *m, int kinds, walk *w) {
    memset(w, 0, sizeof *w);
    if (!valid(op, m)) return wf_error();
    walk_module(w, m, "", kinds);
    if (w->err) { walk_free(w); memset(w, 0, sizeof *w); return wf__error(WF_ENOMEM, "%s: out of memory", op); }
    return 0;
}

static int list_named(const char *op, wf_module *m, int kind, wf_tensor **out, const char **names, int max) {
    walk w;
    int rc = collect(op, m, kind, &w);
    if (rc) return rc;
    /* drop duplicates (shared tensors), keeping the first name */
    int k = 0;
    for (int i = 0; i < w.n; i++) {
        bool dup = false;
        for (int j = 0; j < k && !dup; j++) dup = *w.v[j].slot == *w.v[i].slot;
        if (dup) { wf__free(w.v[i].name, strlen(w.v[i].name) + 1); continue; }
        w.v[k++] = w.v[i];
    }
    w.n = k;
    if (names) {
        clear_name_cache(m);
        m->name_cache = wf__calloc((size_t)(k ? k : 1), sizeof(char *));
        if (!m->name_cache) { walk_free(&w); return wf__error(WF_ENOMEM, "%s: out of memory", op); }
        m->n_name_cache = k ? k : 1;
        for (int i = 0; i < k; i++) { m->name_cache[i] = w.v[i].name; w.v[i].name = NULL; }
        if (!k) { m->name_cache[0] = wf__strdup(""); }
    }
    for (int i = 0; i < k && i < max; i++) {
        if (out) out[i] = *w.v[i].slot;
        if (names) names[i] = m->name_cache[i];
    }
    walk_free(&w);
    return k;
}

int wf_module_parameters(wf_module *m, wf_tensor **out, const char **names, int max) {
    return list_named("wf_module_parameters", m, 1, out, names, max);
}
int wf_module_buffers(wf_module *m, wf_tensor **out, const char **names, int max) {
    return list_named("wf_module_buffers", m, 2, out, names, max);
}

int64_t wf_module_num_parameters(wf_module *m) {
    walk w;
    if (collect("wf_module_num_parameters", m, 1, &w)) return -1;
    int64_t total = 0;
    for (int i = 0; i < w.n; i++) {
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = *w.v[j].slot == *w.v[i].slot;
        if (!dup) total += wf_numel(*w.v[i].slot);
    }
    walk_free(&w);
    return total;
}

void wf_module_zero_grad(wf_module *m, bool set_to_none) {
    walk w;
    if (collect("wf_module_zero_grad", m, 1, &w)) return;
    for (int i = 0; i < w.n; i++) {
        wf_tensor *p = *w.v[i].slot;
        if (!wf_grad(p)) continue;
        if (set_to_none) wf_set_grad(p, NULL);
        else {
            bool prev = wf_set_grad_enabled(false);
            wf_zero_(wf_grad(p));
            wf_set_grad_enabled(prev);
        }
    }
    walk_free(&w);
}

int wf_module_apply(wf_module *m, int (*fn)(wf_module *m, void *ud), void *ud) {
    if (!m || !fn) return wf__any_null("wf_module_apply", 2, m, NULL), WF_ENULL;
    for (int i = 0; i < m->children.n; i++) {
        int rc = wf_module_apply(m->children.v[i].ptr, fn, ud);
        if (rc) return rc;
    }
    return fn(m, ud);
}

/* ================================================================ to(device, dtype) */

static wf_tensor *convert(wf_tensor *t, wf_device dev, wf_dtype dt) {
    wf_tensor *r = t;
    if (!wf_device_eq(wf_tensor_device(t), dev)) r = wf_to_device(r, dev);
    if (r && dt != WF_DTYPE_DEFAULT && wf_dtype_is_floating(wf_tensor_dtype(r)) && wf_tensor_dtype(r) != dt)
        r = wf_to_dtype(r, dt);
    return r;
}

static int wf_module_to__body(wf_module *m, wf_device device, wf_dtype dtype) {
    const char *op = "wf_module_to";
    if (dtype != WF_DTYPE_DEFAULT && !wf_dtype_is_floating(dtype))
        return wf__error(WF_EDTYPE, "%s: can only cast to a floating dtype, got %s", op, wf_dtype_name(dtype));
    if (!wf__kernels(device)) return wf_error();
    walk w;
    int rc = collect(op, m, 3, &w);
    if (rc) return rc;
    wf_tensor **olds = wf__calloc((size_t)(w.n ? w.n : 1), sizeof *olds);
    wf_tensor **news = wf__calloc((size_t)(w.n ? w.n : 1), sizeof *news);
    if (!olds || !news) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    int nmap = 0;
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < w.n && !rc; i++) {
        wf_tensor *t = *w.v[i].slot;
        int seen = -1;
        for (int j = 0; j < nmap; j++) if (olds[j] == t) { seen = j; break; }
        if (seen >= 0) {   /* a shared tensor: keep it shared */
            *w.v[i].slot = wf_tensor_retain(news[seen]);
            wf_tensor_free(t);
            continue;
        }
        wf_scope_begin();
        wf_tensor *nt = convert(t, device, dtype);
        if (nt && nt != t && wf_grad(t)) {
            wf_tensor *ng = convert(wf_grad(t), device, wf_tensor_dtype(nt));
            if (!ng || wf_set_grad(nt, ng)) nt = NULL;
        }
        if (!nt) { rc = wf_error() ? wf_error() : WF_ENOMEM; wf_scope_end(); break; }
        if (nt == t) { wf_scope_end(); continue; }
        wf_keep(nt);
        wf_scope_end();
        wf__scope_unregister(nt);
        if (wf_requires_grad(t)) (void)wf_set_requires_grad(nt, true);   /* a floating leaf: cannot fail */
        olds[nmap] = t;
        news[nmap] = nt;
        nmap++;
        *w.v[i].slot = nt;
        wf_tensor_free(t);
    }
    wf_set_grad_enabled(prev);
    wf__free(olds, 0);
    wf__free(news, 0);
    walk_free(&w);
    return rc;
}

int wf_module_to(wf_module *m, wf_device device, wf_dtype dtype) {
    WF__NAMED("wf_module_to", int, r < 0, wf_module_to__body(m, device, dtype));
}

/* ================================================================ state dict of a module */

int wf_module_state_dict(wf_module *m, wf_state_dict *sd, const char *prefix) {
    const char *op = "wf_module_state_dict";
    if (!m || !sd) return wf__any_null(op, 2, m, sd), WF_ENULL;
    walk w;
    int rc = collect(op, m, 3, &w);
    if (rc) return rc;
    size_t lp = prefix ? strlen(prefix) : 0;
    for (int i = 0; i < w.n && !rc; i++) {
        wf_tensor *d = wf_detach(*w.v[i].slot);
        if (!d) { rc = wf_error(); break; }
        wf__scope_unregister(d);   /* our reference (not the open scope's): sd takes its own below */
        const char *name = w.v[i].name;
        char *full = NULL;
        if (lp) {
            size_t ln = strlen(name);
            full = wf__malloc(lp + ln + 1);
            if (!full) { wf_tensor_free(d); rc = wf__error(WF_ENOMEM, "%s: out of memory", op); break; }
            memcpy(full, prefix, lp);
            memcpy(full + lp, name, ln + 1);
            name = full;
        }
        rc = wf_state_dict_set(sd, name, d);
        wf_tensor_free(d);
        if (full) wf__free(full, strlen(full) + 1);
    }
    walk_free(&w);
    return rc;
}

/* a growing message buffer */
typedef struct msgbuf { char *s; size_t n, cap; } msgbuf;
static void msg_add(msgbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t len = (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256);
        while (cap < b->n + len + 1) cap *= 2;
        char *s = wf__realloc(b->s, b->cap, cap);
        if (!s) return;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, tmp, len);
    b->n += len;
    b->s[b->n] = 0;
}

int wf_module_load_state_dict(wf_module *m, const wf_state_dict *sd, bool strict, wf_load_report *report) {
    const char *op = "wf_module_load_state_dict";
    if (report) memset(report, 0, sizeof *report);
    if (!m || !sd) return wf__any_null(op, 2, m, sd), WF_ENULL;
    walk w;
    int rc = collect(op, m, 3, &w);
    if (rc) return rc;
    msgbuf missing = { 0 }, unexpected = { 0 };
    int n_missing = 0, n_unexpected = 0, n_loaded = 0;
    for (int i = 0; i < w.n && !rc; i++) {
        wf_tensor *dst = *w.v[i].slot, *src = wf_state_dict_get(sd, w.v[i].name);
        if (!src) {
            msg_add(&missing, "%s\"%s\"", n_missing ? ", " : "", w.v[i].name);
            n_missing++;
            continue;
        }
        if (!wf_same_shape(dst, src)) {
            char b1[96], b2[96];
            rc = wf__error(WF_ESHAPE, "%s: size mismatch for \"%s\": copying a param with shape %s from the "
                           "state_dict, the shape in the current model is %s", op, w.v[i].name,
                           wf_shape_str(src, b1, sizeof b1), wf_shape_str(dst, b2, sizeof b2));
        }
    }
    for (int i = 0; i < wf_state_dict_count(sd) && !rc; i++) {
        const char *name = wf_state_dict_name_at(sd, i);
        bool found = false;
        for (int j = 0; j < w.n && !found; j++) found = strcmp(w.v[j].name, name) == 0;
        if (!found) {
            msg_add(&unexpected, "%s\"%s\"", n_unexpected ? ", " : "", name);
            n_unexpected++;
        }
    }
    if (!rc && strict && (n_missing || n_unexpected)) {
        rc = wf__error(n_missing ? WF_ENOTFOUND : WF_EINVAL, "%s: error(s) in loading state_dict for %s:%s%s%s%s%s",
                       op, wf_module_type(m),
                       n_missing ? " missing key(s) in state_dict: " : "", n_missing ? missing.s : "",
                       n_missing && n_unexpected ? ";" : "",
                       n_unexpected ? " unexpected key(s) in state_dict: " : "", n_unexpected ? unexpected.s : "");
    }
    if (!rc) {
        bool prev = wf_set_grad_enabled(false);
        for (int i = 0; i < w.n && !rc; i++) {
            wf_tensor *src = wf_state_dict_get(sd, w.v[i].name);
            if (!src) continue;
            if (*w.v[i].slot == src) { n_loaded++; continue; }
            rc = wf_copy_(*w.v[i].slot, src);
            if (!rc) n_loaded++;
        }
        wf_set_grad_enabled(prev);
    }
    if (report) { report->missing = n_missing; report->unexpected = n_unexpected; report->loaded = n_loaded; }
    wf__free(missing.s, missing.cap);
    wf__free(unexpected.s, unexpected.cap);
    walk_free(&w);
    return rc;
}

/* ================================================================ printing */

static void print_rec(FILE *f, const wf_module *m, int indent) {
    char extra[256] = "";
    if (m->vt && m->vt->extra_repr) m->vt->extra_repr(m, extra, sizeof extra);
    fprintf(f, "%s(", wf_module_type(m));
    if (!m->children.n) { fprintf(f, "%s)", extra); return; }
    fputc('\n', f);
    if (*extra) fprintf(f, "%*s%s\n", indent + 2, "", extra);
    for (int i = 0; i < m->children.n; i++) {
        fprintf(f, "%*s(%s): ", indent + 2, "", m->children.v[i].name);
        print_rec(f, m->children.v[i].ptr, indent + 2);
        fputc('\n', f);
    }
    fprintf(f, "%*s)", indent, "");
}

int wf_module_fprint(FILE *f, const wf_module *m) {
    if (!f || !m) return wf__any_null("wf_module_fprint", 2, f, m), WF_ENULL;
    print_rec(f, m, 0);
    fputc('\n', f);
    return ferror(f) ? wf__error(WF_EIO, "wf_module_fprint: write failed") : 0;
}
