/* fabric/fsdp_checkpoint.c: Fabric's checkpoints of an FSDP state (the folder of
 * state_dict_type "sharded", the streamed file of "full"), and checkpoint folders read at
 * any world size by any strategy. See fsdp_checkpoint.h; the formats are
 * fabric/sharded_checkpoint.h's and fabric/checkpoint.c's. */
#include "fabric/fsdp_checkpoint.h"
#include "fabric/fsdp_entries.h"
#include "fabric/sharded_checkpoint.h"
#include "optim/optim_impl.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- a growing entry list */

typedef struct elist {
    wf__shard_entry *v;   /* owned; names owned too (names[i] == v[i].name) */
    char **names;
    int n, cap;
} elist;

static void elist_free(elist *l) {
    for (int i = 0; i < l->n; i++) wf__free(l->names[i], 0);
    wf__free(l->v, 0);
    wf__free(l->names, 0);
    memset(l, 0, sizeof *l);
}

/* Append a copy of e (its name copied). */
static int elist_add(elist *l, const wf__shard_entry *e, const char *op) {
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 16;
        wf__shard_entry *v = wf__realloc(l->v, (size_t)l->cap * sizeof *v, (size_t)nc * sizeof *v);
        if (v) l->v = v;
        char **nm = v ? wf__realloc(l->names, (size_t)l->cap * sizeof *nm, (size_t)nc * sizeof *nm) : NULL;
        if (!v || !nm) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        l->names = nm;
        l->cap = nc;
    }
    char *name = wf__strdup(e->name);
    if (!name) return wf__error(WF_ENOMEM, "%s: out of memory", op);
    l->v[l->n] = *e;
    l->v[l->n].name = name;
    l->names[l->n++] = name;
    return 0;
}

/* A tensor every rank holds whole, under name. */
static int add_whole(elist *l, const char *name, wf_tensor *t, const char *op) {
    wf__shard_entry e = { .name = name, .local = t, .ndim = wf_ndim(t), .replicated = true };
    for (int d = 0; d < e.ndim; d++) e.global_shape[d] = wf_shape(t)[d];
    return elist_add(l, &e, op);
}

static int add_list(elist *l, wf__shard_list *s, const char *op) {
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++) rc = elist_add(l, &s->v[i], op);
    wf__shard_list_free(s);
    return rc;
}

static char *join2(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = wf__malloc(la + lb + 2);
    if (s) {
        memcpy(s, a, la);
        s[la] = '/';
        memcpy(s + la + 1, b, lb + 1);
    }
    return s;
}

/* ---------------------------------------------------------------- an optimizer's light state */

wf_optim_state *wf__optimizer_state_light(wf_optimizer *o) {
    /* wf_optimizer_state_dict clones every state tensor; with them hidden for the call it
     * gives the param_groups and the steps alone (the shards are saved from their slots) */
    size_t sz = (size_t)(o->n_params ? o->n_params : 1) * sizeof(wf_param_state);
    wf_param_state *saved = wf__malloc(sz);
    if (!saved) { wf__error(WF_ENOMEM, "wf_fabric_save: out of memory"); return NULL; }
    memcpy(saved, o->state, (size_t)o->n_params * sizeof *saved);
    for (int i = 0; i < o->n_params; i++) {
        wf_param_state *st = &o->state[i];
        st->exp_avg = st->exp_avg_sq = st->max_exp_avg_sq = st->momentum_buffer = NULL;
        st->square_avg = st->grad_avg = st->sum = NULL;
    }
    wf_optim_state *os = wf_optimizer_state_dict(o);
    memcpy(o->state, saved, (size_t)o->n_params * sizeof *saved);
    wf__free(saved, sz);
    return os;
}

/* ---------------------------------------------------------------- save */

/* The shard entries of the items, in their order. keep[i] holds optimizer i's light state:
 * its scalar "step" tensors are saved whole (every rank has the same). */
static int collect(wf_strategy *s, const wf__ckpt_item *it, int n, elist *l, wf_optim_state **keep) {
    static const char *op = "wf_fabric_save";
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        wf__shard_list sl = { 0 };
        switch (it[i].kind) {
        case WF_STATE_MODULE:
            if (!(rc = wf__fsdp_module_entries(s, it[i].m, it[i].name, &sl))) rc = add_list(l, &sl, op);
            break;
        case WF_STATE_OPTIMIZER: {
            if ((rc = wf__fsdp_optimizer_entries(s, it[i].o, it[i].name, &sl))) break;
            if ((rc = add_list(l, &sl, op))) break;
            if (!(keep[i] = wf__optimizer_state_light(it[i].o))) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
            for (int k = 0; k < wf_optim_state_count(keep[i]) && !rc; k++) {
                char *name = join2(it[i].name, wf_optim_state_name(keep[i], k));
                if (!name) { rc = wf__error(WF_ENOMEM, "%s: out of memory", op); break; }
                rc = add_whole(l, name, wf_optim_state_tensor(keep[i], k), op);
                wf__free(name, 0);
            }
            break;
        }
        case WF_STATE_TENSOR:
            rc = add_whole(l, it[i].name, it[i].t, op);
            break;
        case WF_STATE_TENSORS:
            for (int k = 0; k < wf_state_dict_count(it[i].sd) && !rc; k++) {
                char *name = join2(it[i].name, wf_state_dict_name_at(it[i].sd, k));
                if (!name) { rc = wf__error(WF_ENOMEM, "%s: out of memory", op); break; }
                rc = add_whole(l, name, wf_state_dict_tensor_at(it[i].sd, k), op);
                wf__free(name, 0);
            }
            break;
        default:
            rc = wf__error(WF_EINVAL, "%s: entry \"%s\" holds no tensors", op, it[i].name);
        }
    }
    return rc;
}

int wf__fsdp_checkpoint_save(wf_strategy *s, const char *path, const wf__ckpt_item *it, int n,
                             const char *metadata_json, bool full) {
    bool writer = true;
    wf_process_group *pg = wf__fsdp_save_group(s, &writer);
    elist l = { 0 };
    wf_optim_state **keep = wf__calloc((size_t)n + 1, sizeof *keep);
    int rc = keep ? 0 : wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
    if (writer) {
        if (!rc) rc = collect(s, it, n, &l, keep);
        /* a local failure still enters the collective (with an invalid count), so every rank
         * of the group learns it instead of waiting */
        char msg[600] = "";
        if (rc) snprintf(msg, sizeof msg, "%s", wf_error_message());
        int r = full ? wf__full_save(pg, path, l.v, rc ? -1 : l.n, metadata_json)
                     : wf__sharded_save(pg, path, l.v, rc ? -1 : l.n, metadata_json);
        if (rc) wf__error(rc, "%s", msg);
        else rc = r;
    }
    /* HYBRID_SHARD across nodes: the other replicas learn the first one's result */
    if (pg != s->pg) {
        int code = rc;
        char msg[600] = "";
        if (rc) snprintf(msg, sizeof msg, "%s", wf_error_message());
        int r = s->ops->broadcast_status(s, false, &code, msg, sizeof msg);
        if (r) rc = r;
        else if (code && !rc) rc = wf__error(code, "%s", msg);
    }
    for (int i = 0; keep && i < n; i++) wf_optim_state_free(keep[i]);
    wf__free(keep, 0);
    elist_free(&l);
    return rc;
}

/* ---------------------------------------------------------------- load */

bool wf__checkpoint_is_folder(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) || !S_ISDIR(st.st_mode)) return false;
    char *ip = join2(path, "index.json");
    bool ok = ip && !stat(ip, &st);
    wf__free(ip, 0);
    return ok;
}

void wf__folder_read_free(wf__folder_read *r) {
    if (!r) return;
    wf_state_dict_free(r->tensors);
    wf__free(r->metadata, 0);
    memset(r, 0, sizeof *r);
}

static const wf__ckpt_item *item_of(const wf__ckpt_item *want, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(want[i].name) == len && !strncmp(want[i].name, name, len)) return &want[i];
    return NULL;
}

/* The parameter behind optimizer o's state "state/<idx>/...", or NULL. */
static wf_tensor *state_param(const wf_optimizer *o, const char *key) {
    int idx = -1, used = 0;
    if (sscanf(key, "state/%d/%n", &idx, &used) != 1 || !used) return NULL;
    for (int g = 0; g < o->n_groups; g++)
        if (idx >= o->groups[g].first_index && idx < o->groups[g].first_index + o->groups[g].n)
            return o->groups[g].params[idx - o->groups[g].first_index];
    return NULL;
}

/* An FSDP module's shard entries that the folder (or file) holds, checked for strictness:
 * has(name) says whether the checkpoint holds a tensor. */
typedef bool (*has_fn)(const void *ctx, const char *name);

static int module_entries(wf_strategy *s, const wf__ckpt_item *w, has_fn has, const void *ctx, bool strict,
                          const char *where, elist *l, const char *op) {
    wf__shard_list sl = { 0 };
    int rc = wf__fsdp_summon(s, w->m, false);   /* nothing gathered: the shards are the values */
    if (!rc) rc = wf__fsdp_module_entries(s, w->m, w->name, &sl);
    for (int i = 0; i < sl.n && !rc; i++) {
        if (has(ctx, sl.v[i].name)) rc = elist_add(l, &sl.v[i], op);
        else if (strict)
            rc = wf__error(WF_ENOTFOUND, "%s: %s: the module \"%s\" has \"%s\", which the checkpoint does not hold; "
                           "pass strict=false to skip it", op, where, w->name, sl.v[i].name + strlen(w->name) + 1);
    }
    wf__shard_list_free(&sl);
    return rc;
}

static bool index_has(const void *ctx, const char *name) {
    return wf__sharded_index_find(ctx, name) >= 0;
}

/* strict: every checkpoint tensor "<module>/..." must be one of the module's entries. */
static int no_unexpected(const char *const *names, int n, const wf__ckpt_item *w, const elist *l, int first,
                         const char *where, const char *op) {
    size_t pl = w->name ? strlen(w->name) : 0;
    for (int i = 0; i < n; i++) {
        if (pl && (strncmp(names[i], w->name, pl) || names[i][pl] != '/')) continue;
        bool found = false;
        for (int j = first; j < l->n && !found; j++) found = !strcmp(l->v[j].name, names[i]);
        if (!found)
            return wf__error(WF_EINVAL, "%s: %s: the checkpoint holds \"%s\", which the module \"%s\" does not have; "
                             "pass strict=false to skip it", op, where, names[i], w->name ? w->name : "");
    }
    return 0;
}

int wf__checkpoint_folder_read(wf_strategy *s, const char *dir, const wf__ckpt_item *want, int n, bool strict,
                               wf__folder_read *out) {
    static const char *op = "wf_fabric_load";
    memset(out, 0, sizeof *out);
    bool fsdp = wf__fsdp_active(s);
    wf__sharded_index *ix = NULL;
    elist l = { 0 };
    const char **names = NULL;
    int rc = wf__sharded_index_load(dir, &ix);
    if (!rc && !(out->tensors = wf_state_dict_new())) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (!rc && !(names = wf__calloc((size_t)ix->ntensors + 1, sizeof *names)))
        rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    /* the requested FSDP modules: their shards, in place */
    for (int i = 0; fsdp && !rc && i < n; i++) {
        if (want[i].kind != WF_STATE_MODULE) continue;
        int first = l.n;
        rc = module_entries(s, &want[i], index_has, ix, strict, dir, &l, op);
        for (int k = 0; !rc && strict && k < ix->ntensors; k++) names[k] = ix->t[k].name;
        if (!rc && strict) rc = no_unexpected(names, ix->ntensors, &want[i], &l, first, dir, op);
    }
    /* everything else whole, but an FSDP optimizer's sharded state: this rank's rows */
    wf_scope_begin();
    for (int k = 0; !rc && ix && k < ix->ntensors; k++) {
        const wf__sharded_tensor *T = &ix->t[k];
        const char *slash = strchr(T->name, '/');
        const wf__ckpt_item *w = slash ? item_of(want, n, T->name, (size_t)(slash - T->name)) : NULL;
        if (fsdp && w && w->kind == WF_STATE_MODULE) continue;
        wf__shard_entry e = { .name = T->name, .ndim = T->ndim, .replicated = T->ndim == 0 };
        memcpy(e.global_shape, T->shape, sizeof e.global_shape);
        int64_t shape[WF_MAX_DIMS], start, count, rows;
        memcpy(shape, T->shape, sizeof shape);
        wf_tensor *p = fsdp && w && w->kind == WF_STATE_OPTIMIZER && !T->replicated ? state_param(w->o, slash + 1) : NULL;
        if (p && T->ndim >= 1 && wf__fsdp_param_rows(s, p, &start, &count, &rows) && rows == T->shape[0]) {
            shape[0] = count;
            e.row_start = start;
        }
        e.local = wf_empty(shape, T->ndim, T->dtype);
        if (!e.local) rc = wf_error() ? wf_error() : WF_ENOMEM;
        if (!rc) rc = wf_state_dict_set(out->tensors, T->name, e.local);
        if (!rc) rc = elist_add(&l, &e, op);
    }
    wf_scope_end();
    /* every rank enters the load, a failed one with an invalid count: all agree */
    char msg[600] = "";
    if (rc) snprintf(msg, sizeof msg, "%s", wf_error_message());
    int r = wf__sharded_load(s->pg, dir, l.v, rc ? -1 : l.n, &out->metadata);
    if (rc) wf__error(rc, "%s", msg);
    else rc = r;
    out->modules_in_place = fsdp;
    wf__free(names, 0);
    elist_free(&l);
    wf__sharded_index_free(ix);
    if (rc) wf__folder_read_free(out);
    return rc;
}

typedef struct names_ctx { const char *const *v; int n; } names_ctx;

static bool names_has(const void *ctx, const char *name) {
    const names_ctx *c = ctx;
    for (int i = 0; i < c->n; i++) if (!strcmp(c->v[i], name)) return true;
    return false;
}

int wf__fsdp_module_load_rows(wf_strategy *s, const char *path, const char *const *names, int n, wf_module *m,
                              const char *prefix, bool strict) {
    static const char *op = "wf_fabric_load";
    elist l = { 0 };
    names_ctx ctx = { names, n };
    /* without a prefix (load_raw) the entries are named "x/<name>" and matched without it */
    wf__ckpt_item w = { .name = prefix ? prefix : "x", .kind = WF_STATE_MODULE, .m = m };
    const char **bare = NULL;
    int rc = 0;
    if (!prefix) {
        if (!(bare = wf__calloc((size_t)n + 1, sizeof *bare))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
        for (int i = 0; !rc && i < n; i++) {
            char *nm = join2("x", names[i]);
            if (!nm) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
            bare[i] = nm;
        }
        ctx.v = bare;
    }
    if (!rc) rc = module_entries(s, &w, names_has, &ctx, strict, path, &l, op);
    if (!rc && strict) rc = no_unexpected(ctx.v, n, &w, &l, 0, path, op);
    for (int i = 0; !prefix && i < l.n; i++) l.v[i].name += 2;
    char msg[600] = "";
    if (rc) snprintf(msg, sizeof msg, "%s", wf_error_message());
    int r = wf__full_load_rows(s->pg, path, l.v, rc ? -1 : l.n);
    if (rc) wf__error(rc, "%s", msg);
    else rc = r;
    for (int i = 0; bare && i < n; i++) wf__free((char *)bare[i], 0);
    wf__free(bare, 0);
    elist_free(&l);
    return rc;
}
