/* fabric/checkpoint.c: Fabric's save/load on weft's checkpoint container, a safetensors file
 * (io/'s wf_st_* API) in which a nested state is flattened:
 *   module "model"         -> tensors "model/<dotted parameter or buffer name>"
 *   optimizer "optimizer"  -> tensors "optimizer/state/<i>/<key>",
 *                             metadata "optimizer/param_groups" (PyTorch's param_groups JSON)
 *   tensor "t"             -> tensor "t"
 *   scheduler, int, double, string, rng, precision -> metadata "<name>" (JSON text)
 *   metadata "weft/format" = "weft-checkpoint-1", "weft/entries" = {"model":"module",...}
 * The writer adds a CRC-32 per tensor and one over the header (so the metadata above, an
 * epoch or a seed, is checked too) and saves atomically; the reader validates the whole
 * header (sizes against the real file) before allocating anything, and wf_fabric_load
 * verifies every tensor's checksum before it restores anything. */
#include "fabric/fabric_impl.h"
#include "fabric/fsdp_checkpoint.h"
#include "io/json.h"
#include "optim/optim_impl.h"
#include "weft/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT "weft-checkpoint-1"

typedef struct st_entry {
    char *name;
    wf_state_kind kind;
    bool owned;              /* values below belong to the state (a load remainder) */
    wf_module *m;
    wf_optimizer *opt;
    wf_lr_scheduler *sched;
    wf_tensor *t;            /* retained */
    int64_t *pi;
    double *pd;
    char *sbuf;
    size_t cap;
    wf_fabric *fab;
    wf_fabric_loader *loader;
    int64_t iv;
    double dv;
    char *str;               /* owned string value */
    wf_state_dict *sd;       /* owned tensors (TENSORS) */
    char *json;              /* owned JSON (JSON, or param_groups of TENSORS) */
} st_entry;

struct wf_fabric_state {
    st_entry *v;
    int n, cap;
};

static const char *kind_names[] = {
    [WF_STATE_MODULE] = "module", [WF_STATE_OPTIMIZER] = "optimizer", [WF_STATE_SCHEDULER] = "scheduler",
    [WF_STATE_TENSOR] = "tensor", [WF_STATE_INT] = "int", [WF_STATE_DOUBLE] = "double",
    [WF_STATE_STRING] = "string", [WF_STATE_RNG] = "rng", [WF_STATE_PRECISION] = "precision",
    [WF_STATE_TENSORS] = "tensors", [WF_STATE_JSON] = "json", [WF_STATE_LOADER] = "loader",
};
#define N_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

static int kind_parse(const char *s) {
    for (int k = 1; k < N_KINDS; k++) if (kind_names[k] && !strcmp(kind_names[k], s)) return k;
    return 0;
}

/* ---------------------------------------------------------------- the state container */

wf_fabric_state *wf_fabric_state_new(void) {
    wf_fabric_state *s = wf__calloc(1, sizeof *s);
    if (!s) wf__error(WF_ENOMEM, "wf_fabric_state_new: out of memory");
    return s;
}

static void free_entry(st_entry *e) {
    wf__free(e->name, 0);
    wf_tensor_free(e->t);
    wf__free(e->str, 0);
    wf_state_dict_free(e->sd);
    wf__free(e->json, 0);
}

void wf_fabric_state_free(wf_fabric_state *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free_entry(&s->v[i]);
    wf__free(s->v, 0);
    wf__free(s, sizeof *s);
}

static int find_entry(const wf_fabric_state *s, const char *name) {
    if (!s || !name) return -1;
    for (int i = 0; i < s->n; i++) if (!strcmp(s->v[i].name, name)) return i;
    return -1;
}

static st_entry *add_entry(wf_fabric_state *s, const char *op, const char *name, wf_state_kind kind, const void *obj) {
    if (!s || !name) { wf__error(WF_ENULL, "%s: NULL %s", op, s ? "name" : "state"); return NULL; }
    if (!obj) { if (!wf_error()) wf__error(WF_ENULL, "%s: NULL object for \"%s\"", op, name); return NULL; }
    if (!*name || strchr(name, '/') || !strcmp(name, "__metadata__") || !strncmp(name, "weft", 4) ||
        !strcmp(name, "crc32")) {
        wf__error(WF_EINVAL, "%s: invalid entry name \"%s\" (non-empty, no '/', not reserved)", op, name);
        return NULL;
    }
    if (find_entry(s, name) >= 0) { wf__error(WF_EINVAL, "%s: the state already has an entry \"%s\"", op, name); return NULL; }
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 8;
        st_entry *v = wf__realloc(s->v, (size_t)s->cap * sizeof *v, (size_t)nc * sizeof *v);
        if (!v) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
        s->v = v;
        s->cap = nc;
    }
    st_entry *e = &s->v[s->n];
    memset(e, 0, sizeof *e);
    e->name = wf__strdup(name);
    if (!e->name) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
    e->kind = kind;
    s->n++;
    return e;
}

int wf_fabric_state_add_module(wf_fabric_state *s, const char *name, wf_module *m) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_module", name, WF_STATE_MODULE, m);
    if (!e) return wf_error();
    e->m = m;
    return 0;
}
int wf_fabric_state_add_optimizer(wf_fabric_state *s, const char *name, wf_optimizer *opt) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_optimizer", name, WF_STATE_OPTIMIZER, opt);
    if (!e) return wf_error();
    e->opt = opt;
    return 0;
}
int wf_fabric_state_add_scheduler(wf_fabric_state *s, const char *name, wf_lr_scheduler *sched) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_scheduler", name, WF_STATE_SCHEDULER, sched);
    if (!e) return wf_error();
    e->sched = sched;
    return 0;
}
int wf_fabric_state_add_tensor(wf_fabric_state *s, const char *name, wf_tensor *t) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_tensor", name, WF_STATE_TENSOR, t);
    if (!e) return wf_error();
    e->t = wf_tensor_retain(t);
    return 0;
}
int wf_fabric_state_add_int(wf_fabric_state *s, const char *name, int64_t *v) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_int", name, WF_STATE_INT, v);
    if (!e) return wf_error();
    e->pi = v;
    return 0;
}
int wf_fabric_state_add_double(wf_fabric_state *s, const char *name, double *v) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_double", name, WF_STATE_DOUBLE, v);
    if (!e) return wf_error();
    e->pd = v;
    return 0;
}
int wf_fabric_state_add_string(wf_fabric_state *s, const char *name, char *buf, size_t cap) {
    if (buf && cap == 0) return wf__error(WF_EINVAL, "wf_fabric_state_add_string: \"%s\": capacity 0", name ? name : "");
    st_entry *e = add_entry(s, "wf_fabric_state_add_string", name, WF_STATE_STRING, buf);
    if (!e) return wf_error();
    e->sbuf = buf;
    e->cap = cap;
    return 0;
}
int wf_fabric_state_add_rng(wf_fabric_state *s, const char *name) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_rng", name, WF_STATE_RNG, "rng");
    return e ? 0 : wf_error();
}
int wf_fabric_state_add_precision(wf_fabric_state *s, const char *name, wf_fabric *fab) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_precision", name, WF_STATE_PRECISION, fab);
    if (!e) return wf_error();
    e->fab = fab;
    return 0;
}

int wf_fabric_state_add_loader(wf_fabric_state *s, const char *name, wf_fabric_loader *l) {
    st_entry *e = add_entry(s, "wf_fabric_state_add_loader", name, WF_STATE_LOADER, l);
    if (!e) return wf_error();
    e->loader = l;
    return 0;
}

int wf_fabric_state_count(const wf_fabric_state *s) {
    return s ? s->n : (wf__error(WF_ENULL, "wf_fabric_state_count: NULL state"), 0);
}
const char *wf_fabric_state_name_at(const wf_fabric_state *s, int i) {
    return s && i >= 0 && i < s->n ? s->v[i].name : NULL;
}
wf_state_kind wf_fabric_state_kind_at(const wf_fabric_state *s, int i) {
    return s && i >= 0 && i < s->n ? s->v[i].kind : (wf_state_kind)0;
}
int wf_fabric_state_find(const wf_fabric_state *s, const char *name) {
    int i = find_entry(s, name);
    return i >= 0 ? i : WF_ENOTFOUND;
}

static const st_entry *get_kind(const wf_fabric_state *s, const char *op, const char *name, wf_state_kind k) {
    if (!s || !name) return wf__any_null(op, 2, s, name), NULL;
    int i = find_entry(s, name);
    if (i < 0) { wf__error(WF_ENOTFOUND, "%s: no entry \"%s\"", op, name ? name : "(null)"); return NULL; }
    const st_entry *e = &s->v[i];
    if (e->kind != k && !(k == WF_STATE_JSON && e->kind == WF_STATE_TENSORS)) {
        wf__error(WF_EDTYPE, "%s: entry \"%s\" is a %s, not a %s", op, name, kind_names[e->kind], kind_names[k]);
        return NULL;
    }
    return e;
}

int wf_fabric_state_get_int(const wf_fabric_state *s, const char *name, int64_t *out) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_int", name, WF_STATE_INT);
    if (!e) return wf_error();
    if (out) *out = e->owned ? e->iv : *e->pi;
    return 0;
}
int wf_fabric_state_get_double(const wf_fabric_state *s, const char *name, double *out) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_double", name, WF_STATE_DOUBLE);
    if (!e) return wf_error();
    if (out) *out = e->owned ? e->dv : *e->pd;
    return 0;
}
const char *wf_fabric_state_get_string(const wf_fabric_state *s, const char *name) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_string", name, WF_STATE_STRING);
    return e ? (e->owned ? e->str : e->sbuf) : NULL;
}
wf_tensor *wf_fabric_state_get_tensor(const wf_fabric_state *s, const char *name) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_tensor", name, WF_STATE_TENSOR);
    return e ? e->t : NULL;
}
const wf_state_dict *wf_fabric_state_get_tensors(const wf_fabric_state *s, const char *name) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_tensors", name, WF_STATE_TENSORS);
    return e ? e->sd : NULL;
}
const char *wf_fabric_state_get_json(const wf_fabric_state *s, const char *name) {
    const st_entry *e = get_kind(s, "wf_fabric_state_get_json", name, WF_STATE_JSON);
    if (e && !e->json) { wf__error(WF_ENOTFOUND, "wf_fabric_state_get_json: entry \"%s\" has no JSON", name); return NULL; }
    return e ? e->json : NULL;
}

/* ---------------------------------------------------------------- save */

static const wf_save_filter *filter_for(const wf_save_filter *f, const char *name) {
    for (; f && f->key; f++) if (!strcmp(f->key, name)) return f;
    return NULL;
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = wf__malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int add_tensor(wf_st_writer *w, const char *prefix, const char *name, wf_tensor *t, const wf_save_filter *flt) {
    if (flt && flt->fn && !flt->fn(name, t, flt->ud)) return 0;
    if (!prefix) return wf_st_writer_add(w, name, t);
    char *full = join(prefix, name);
    if (!full) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
    int rc = wf_st_writer_add(w, full, t);
    wf__free(full, 0);
    return rc;
}

static int set_meta_sb(wf_st_writer *w, const char *key, wf_sb *sb) {
    if (wf__sb_failed(sb)) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
    return wf_st_writer_set_metadata(w, key, sb->buf ? sb->buf : "");
}

/* The JSON text of a non-tensor entry (its metadata value) appended to sb. */
static int entry_json(const st_entry *e, wf_sb *sb) {
    int rc = 0;
    switch (e->kind) {
    case WF_STATE_SCHEDULER: {
        int len = wf_lr_scheduler_state_dict(e->sched, NULL, 0);
        if (len < 0) return len;
        char *buf = wf__malloc((size_t)len + 1);
        if (!buf) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
        rc = wf_lr_scheduler_state_dict(e->sched, buf, (size_t)len + 1);
        if (rc >= 0) wf__sb_puts(sb, buf);
        wf__free(buf, 0);
        break;
    }
    case WF_STATE_INT:
        wf__sb_json_int(sb, e->owned ? e->iv : *e->pi);
        break;
    case WF_STATE_DOUBLE:
        wf__sb_json_number(sb, e->owned ? e->dv : *e->pd);
        break;
    case WF_STATE_STRING: {
        const char *v = e->owned ? e->str : e->sbuf;
        wf__sb_json_string(sb, v, strlen(v));
        break;
    }
    case WF_STATE_RNG: {
        wf_rng_state r = wf_rng_get_state();
        wf__sb_printf(sb, "{\"seed\":\"%llu\",\"offset\":\"%llu\"}", (unsigned long long)r.seed,
                      (unsigned long long)r.offset);
        break;
    }
    case WF_STATE_PRECISION: {
        double scale = 1;
        int64_t tracker = 0;
        if ((rc = wf_precision_state(e->fab->precision, &scale, &tracker))) break;
        wf__sb_puts(sb, "{\"precision\":");
        const char *pn = wf_precision_name(e->fab->precision);
        wf__sb_json_string(sb, pn, strlen(pn));
        wf__sb_puts(sb, ",\"scale\":");
        wf__sb_json_number(sb, scale);
        wf__sb_puts(sb, ",\"growth_tracker\":");
        wf__sb_json_int(sb, tracker);
        wf__sb_putc(sb, '}');
        break;
    }
    case WF_STATE_LOADER: {
        uint64_t epoch = 0;
        int64_t batches = 0;
        if ((rc = wf_dataloader_position(wf_fabric_loader_inner(e->loader), &epoch, &batches))) break;
        wf__sb_printf(sb, "{\"epoch\":\"%llu\",\"batches\":", (unsigned long long)epoch);
        wf__sb_json_int(sb, batches);
        wf__sb_putc(sb, '}');
        break;
    }
    case WF_STATE_JSON:
        wf__sb_puts(sb, e->json ? e->json : "null");
        break;
    default:
        return wf__error(WF_EINVAL, "wf_fabric_save: entry \"%s\" holds tensors", e->name);
    }
    if (wf__sb_failed(sb)) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
    return rc < 0 ? rc : 0;
}

static int save_entry(wf_st_writer *w, const st_entry *e, const wf_save_filter *flt, wf_state_dict **keep_sd,
                      wf_optim_state **keep_os) {
    int rc = 0;
    wf_sb sb;
    wf__sb_init(&sb);
    switch (e->kind) {
    case WF_STATE_MODULE: {
        wf_state_dict *sd = wf_state_dict_new();
        if (!sd) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
        *keep_sd = sd;
        if ((rc = wf_module_state_dict(e->m, sd, NULL))) break;
        for (int i = 0; i < wf_state_dict_count(sd) && !rc; i++)
            rc = add_tensor(w, e->name, wf_state_dict_name_at(sd, i), wf_state_dict_tensor_at(sd, i), flt);
        break;
    }
    case WF_STATE_OPTIMIZER: {
        wf_optim_state *os = wf_optimizer_state_dict(e->opt);
        if (!os) return wf_error() ? wf_error() : WF_ENOMEM;
        *keep_os = os;
        for (int i = 0; i < wf_optim_state_count(os) && !rc; i++)
            rc = add_tensor(w, e->name, wf_optim_state_name(os, i), wf_optim_state_tensor(os, i), flt);
        if (!rc) {
            char *key = join(e->name, "param_groups");
            if (!key) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
            rc = wf_st_writer_set_metadata(w, key, wf_optim_state_json(os));
            wf__free(key, 0);
        }
        break;
    }
    case WF_STATE_TENSOR:
        rc = add_tensor(w, NULL, e->name, e->t, flt);
        break;
    case WF_STATE_TENSORS: {
        for (int i = 0; i < wf_state_dict_count(e->sd) && !rc; i++)
            rc = add_tensor(w, e->name, wf_state_dict_name_at(e->sd, i), wf_state_dict_tensor_at(e->sd, i), flt);
        if (!rc && e->json) {
            char *key = join(e->name, "param_groups");
            if (!key) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
            rc = wf_st_writer_set_metadata(w, key, e->json);
            wf__free(key, 0);
        }
        break;
    }
    default:
        if (!(rc = entry_json(e, &sb))) rc = set_meta_sb(w, e->name, &sb);
        break;
    }
    wf__sb_free(&sb);
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- FSDP, state_dict_type "full"
 * Every rank walks the modules' and optimizers' tensors in the same order; each sharded one
 * is gathered to rank 0 on its own (one all-gather per tensor, never the whole model in one
 * collective), and rank 0 adds the full tensor to the writer. (The writer keeps what it was
 * given until the file is written: io/'s safetensors writer has no streaming mode.) w is NULL
 * on the other ranks. */

static bool fsdp_kind(const wf_fabric *fab, const st_entry *e) {
    return wf__fsdp_active(fab->strategy) && (e->kind == WF_STATE_MODULE || e->kind == WF_STATE_OPTIMIZER);
}

/* the parameter behind the optimizer's state index idx (PyTorch's flat numbering) */
static wf_tensor *opt_param_at(const wf_optimizer *o, int idx) {
    for (int g = 0; g < o->n_groups; g++)
        if (idx >= o->groups[g].first_index && idx < o->groups[g].first_index + o->groups[g].n)
            return o->groups[g].params[idx - o->groups[g].first_index];
    return NULL;
}

static int state_index(const char *name) {
    int idx = -1, used = 0;
    if (sscanf(name, "state/%d/%n", &idx, &used) != 1 || !used) return -1;
    return idx;
}

/* t's full value: gathered when FSDP shards it (rank 0 gets it, the others NULL), else t.
 * rows: t holds key's rows (optimizer state); else t is key itself (a parameter). */
static int full_of(wf_fabric *fab, const wf_tensor *key, wf_tensor *t, bool rows, wf_tensor **out) {
    bool sharded = false;
    int rc = key ? wf__fsdp_gather_full(fab->strategy, key, rows ? t : NULL, out, &sharded) : 0;
    if (!rc && !sharded) *out = t;
    return rc;
}

static int fsdp_save_entry(wf_fabric *fab, wf_st_writer *w, const st_entry *e, const wf_save_filter *flt,
                           wf_state_dict **keep_sd, wf_optim_state **keep_os) {
    int rc = 0;
    if (e->kind == WF_STATE_MODULE) {
        /* the names and the buffers (aliases, nothing is read until the write) */
        wf_state_dict *sd = wf_state_dict_new();
        if (!sd) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
        *keep_sd = sd;
        if ((rc = wf_module_state_dict(e->m, sd, NULL))) return rc;
        for (int i = 0; i < wf_state_dict_count(sd) && !rc; i++) {
            const char *name = wf_state_dict_name_at(sd, i);
            wf_tensor *full = NULL;
            rc = full_of(fab, wf_module_get_parameter(e->m, name), wf_state_dict_tensor_at(sd, i), false, &full);
            if (!rc && w) rc = add_tensor(w, e->name, name, full, flt);
        }
        return rc;
    }
    wf_optim_state *os = wf_optimizer_state_dict(e->opt);
    if (!os) return wf_error() ? wf_error() : WF_ENOMEM;
    *keep_os = os;
    for (int i = 0; i < wf_optim_state_count(os) && !rc; i++) {
        const char *name = wf_optim_state_name(os, i);
        wf_tensor *full = NULL;
        int idx = state_index(name);
        rc = full_of(fab, idx >= 0 ? opt_param_at(e->opt, idx) : NULL, wf_optim_state_tensor(os, i), true, &full);
        if (!rc && w) rc = add_tensor(w, e->name, name, full, flt);
    }
    if (!rc && w) {
        char *key = join(e->name, "param_groups");
        if (!key) return wf__error(WF_ENOMEM, "wf_fabric_save: out of memory");
        rc = wf_st_writer_set_metadata(w, key, wf_optim_state_json(os));
        wf__free(key, 0);
    }
    return rc;
}

/* The ranks other than 0 take part in the gathers of a full FSDP save, then learn rank 0's
 * result. */
static int fsdp_save_other_rank(wf_fabric *fab, const char *path, wf_fabric_state *state) {
    int rc = 0;
    for (int i = 0; i < state->n; i++) {
        if (!fsdp_kind(fab, &state->v[i])) continue;
        wf_state_dict *sd = NULL;
        wf_optim_state *os = NULL;
        wf_scope_begin();
        int r = fsdp_save_entry(fab, NULL, &state->v[i], NULL, &sd, &os);
        wf_scope_end();
        wf_state_dict_free(sd);
        wf_optim_state_free(os);
        if (!rc) rc = r;
    }
    int r = fab->strategy->ops->save_checkpoint(fab->strategy, NULL, path, 0);
    return rc ? rc : r;
}

/* ---------------------------------------------------------------- FSDP, streamed
 * state_dict_type "sharded" (a folder, each rank writing its rows) and "full" (one file
 * gathered to rank 0 piece by piece) through fabric/fsdp_checkpoint.c: the tensors as shard
 * entries, the rest as the same metadata entries a file holds, in one JSON object. */

/* After entry i of a save: its error (rc) names the file and the entry, and the entry's name
 * and kind join the "weft/entries" map in ent. */
static void entry_saved(const char *op, const char *path, const st_entry *e, int rc, int i, wf_sb *ent) {
    if (rc) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        wf__error(rc, "%s: %s: entry \"%s\": %s", op, path, e->name, msg);
    }
    if (i) wf__sb_putc(ent, ',');
    wf__sb_json_string(ent, e->name, strlen(e->name));
    wf__sb_putc(ent, ':');
    wf__sb_json_string(ent, kind_names[e->kind], strlen(kind_names[e->kind]));
}

static int fsdp_save_streamed(wf_fabric *fab, const char *path, wf_fabric_state *state, bool full) {
    const char *op = "wf_fabric_save";
    wf__ckpt_item *it = wf__calloc((size_t)state->n + 1, sizeof *it);
    int n = 0, rc = it ? 0 : wf__error(WF_ENOMEM, "%s: out of memory", op);
    wf_sb md, ent;
    wf__sb_init(&md);
    wf__sb_init(&ent);
    wf__sb_putc(&md, '{');
    wf__sb_putc(&ent, '{');
    for (int i = 0; i < state->n && !rc; i++) {
        const st_entry *e = &state->v[i];
        const char *pg_json = NULL;
        wf_optim_state *os = NULL;
        switch (e->kind) {
        case WF_STATE_MODULE: case WF_STATE_OPTIMIZER: case WF_STATE_TENSOR: case WF_STATE_TENSORS:
            it[n++] = (wf__ckpt_item){ e->name, e->kind, e->m, e->opt, e->t, e->sd };
            if (e->kind == WF_STATE_OPTIMIZER) {
                if (!(os = wf__optimizer_state_light(e->opt))) rc = wf_error() ? wf_error() : WF_ENOMEM;
                else pg_json = wf_optim_state_json(os);
            } else if (e->kind == WF_STATE_TENSORS) {
                pg_json = e->json;
            }
            if (pg_json) {
                char *key = join(e->name, "param_groups");
                if (!key) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
                else {
                    wf__sb_printf(&md, "%s", md.len > 1 ? "," : "");
                    wf__sb_json_string(&md, key, strlen(key));
                    wf__sb_putc(&md, ':');
                    wf__sb_puts(&md, pg_json);
                    wf__free(key, 0);
                }
            }
            wf_optim_state_free(os);
            break;
        default:
            wf__sb_printf(&md, "%s", md.len > 1 ? "," : "");
            wf__sb_json_string(&md, e->name, strlen(e->name));
            wf__sb_putc(&md, ':');
            rc = entry_json(e, &md);
        }
        entry_saved(op, path, e, rc, i, &ent);
    }
    wf__sb_putc(&ent, '}');
    wf__sb_printf(&md, "%s\"weft/entries\":%s}", md.len > 1 ? "," : "", ent.buf ? ent.buf : "{}");
    if (!rc && (wf__sb_failed(&md) || wf__sb_failed(&ent))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    /* a failure here still enters the collective save (no entries), so no rank waits */
    char msg[768] = "";
    if (rc) snprintf(msg, sizeof msg, "%s", wf_error_message());
    int r = wf__fsdp_checkpoint_save(fab->strategy, path, it, rc ? 0 : n, rc ? "{}" : md.buf, full);
    if (rc) wf__error(rc, "%s", msg);
    else rc = r;
    wf__sb_free(&md);
    wf__sb_free(&ent);
    wf__free(it, 0);
    return rc;
}

static int wf_fabric_save__body(wf_fabric *fab, const char *path, wf_fabric_state *state, const wf_save_filter *filter) {
    const char *op = "wf_fabric_save";
    if (!fab || !path || !state) return wf__error(WF_ENULL, "%s: NULL %s", op, !fab ? "fabric" : !path ? "path" : "state");
    for (const wf_save_filter *f = filter; f && f->key; f++)
        if (find_entry(state, f->key) < 0)
            return wf__error(WF_EINVAL, "%s: the filter names \"%s\", which is not an entry of the state", op, f->key);
    if (!fab->launched) return wf__error(WF_ESTATE, "%s: call wf_fabric_launch first", op);
    bool fsdp = wf__fsdp_active(fab->strategy), full = fab->strategy->fsdp.full_state_dict;
    /* a filter's predicate sees whole tensors, and a checkpoint IO plugin writes whole files:
     * both take the gathered path, which "sharded" cannot */
    bool plain_io = fab->strategy->io.save == wf__default_checkpoint_io.save;
    if (fsdp && !full && (filter || !plain_io))
        return wf__error(WF_ENOTSUP, "%s: %s: FSDP's state_dict_type \"sharded\" writes a folder of each rank's rows: "
                         "%s; set fsdp.state_dict_type = \"full\"", op, path,
                         filter ? "a save filter needs the whole tensors" : "a checkpoint IO plugin writes single files");
    if (fsdp && plain_io && !filter) return fsdp_save_streamed(fab, path, state, full);
    if (fab->global_rank != 0)
        return fsdp ? fsdp_save_other_rank(fab, path, state) : fab->strategy->ops->save_checkpoint(fab->strategy, NULL, path, 0);
    wf_st_writer *w = wf_st_writer_new();
    if (!w) return wf_error();
    wf_state_dict **sds = wf__calloc((size_t)(state->n ? state->n : 1), sizeof *sds);
    wf_optim_state **oss = wf__calloc((size_t)(state->n ? state->n : 1), sizeof *oss);
    int rc = (!sds || !oss) ? wf__error(WF_ENOMEM, "%s: out of memory", op) : 0;
    wf_sb ent;
    wf__sb_init(&ent);
    wf__sb_putc(&ent, '{');
    for (int i = 0; i < state->n && sds && oss; i++) {
        const st_entry *e = &state->v[i];
        /* after an error the FSDP entries still run: the other ranks wait in their gathers */
        if (rc && !fsdp_kind(fab, e)) continue;
        wf_scope_begin();
        int r = fsdp_kind(fab, e) ? fsdp_save_entry(fab, w, e, filter_for(filter, e->name), &sds[i], &oss[i])
                                  : save_entry(w, e, filter_for(filter, e->name), &sds[i], &oss[i]);
        wf_scope_end();
        if (rc) continue;
        rc = r;
        entry_saved(op, path, e, rc, i, &ent);
    }
    wf__sb_putc(&ent, '}');
    if (!rc) rc = wf_st_writer_set_metadata(w, "weft/format", FORMAT);
    if (!rc) rc = set_meta_sb(w, "weft/entries", &ent);
    /* the strategy writes (rank 0, through the checkpoint IO) and tells every rank the result */
    rc = fab->strategy->ops->save_checkpoint(fab->strategy, w, path, rc);
    wf__sb_free(&ent);
    wf_st_writer_free(w);
    for (int i = 0; sds && oss && i < state->n; i++) { wf_state_dict_free(sds[i]); wf_optim_state_free(oss[i]); }
    wf__free(sds, 0);
    wf__free(oss, 0);
    return rc;
}

int wf_fabric_save(wf_fabric *fab, const char *path, wf_fabric_state *state, const wf_save_filter *filter) {
    WF__NAMED("wf_fabric_save", int, r < 0, wf_fabric_save__body(fab, path, state, filter));
}

/* ---------------------------------------------------------------- load */

/* Where a load reads from: a checkpoint file, or what a folder read produced (its tensors
 * whole, or an FSDP optimizer's rows, and its metadata object). */
typedef struct ck_src {
    wf_st_file *f;             /* the file, or NULL for a folder */
    const char *path;
    wf__folder_read fr;        /* folder: the tensors by checkpoint name (owned) */
    wf_json *meta;             /* folder: the metadata object (owned) */
    char **texts;              /* folder: metadata texts handed out (owned) */
    int nt;
} ck_src;

static void src_close(ck_src *s) {
    wf_st_close(s->f);
    wf__folder_read_free(&s->fr);
    wf__json_free(s->meta);
    for (int i = 0; i < s->nt; i++) wf__free(s->texts[i], 0);
    wf__free(s->texts, 0);
}

static int src_count(const ck_src *s) { return s->f ? wf_st_count(s->f) : wf_state_dict_count(s->fr.tensors); }
static const char *src_name(const ck_src *s, int i) {
    return s->f ? wf_st_name(s->f, i) : wf_state_dict_name_at(s->fr.tensors, i);
}

/* name's tensor: a new one in the caller's scope (file) or the folder's (borrowed). */
static wf_tensor *src_tensor(ck_src *s, const char *name) {
    if (s->f) return wf_st_load(s->f, name);
    wf_tensor *t = wf_state_dict_get(s->fr.tensors, name);
    if (!t) wf__error(WF_ENOTFOUND, "wf_fabric_load: %s: no tensor \"%s\"", s->path, name);
    return t;
}

static int src_load_into(ck_src *s, const char *name, wf_tensor *dst) {
    if (s->f) return wf_st_load_into(s->f, name, dst);
    wf_tensor *t = src_tensor(s, name);
    if (!t) return wf_error();
    if (!wf_same_shape(t, dst) || wf_tensor_dtype(t) != wf_tensor_dtype(dst)) {
        char a[96], b[96];
        return wf__error(WF_ESHAPE, "wf_fabric_load: %s: tensor \"%s\" is %s %s, the state's %s %s", s->path, name,
                         wf_dtype_name(wf_tensor_dtype(t)), wf_shape_str(t, a, sizeof a),
                         wf_dtype_name(wf_tensor_dtype(dst)), wf_shape_str(dst, b, sizeof b));
    }
    bool prev = wf_set_grad_enabled(false);
    int rc = wf_copy_(dst, t);
    wf_set_grad_enabled(prev);
    return rc;
}

/* All tensors "prefix/..." into a new state dict (names stripped). */
static wf_state_dict *load_group(ck_src *src, const char *prefix) {
    wf_state_dict *sd = wf_state_dict_new();
    if (!sd) { wf__error(WF_ENOMEM, "wf_fabric_load: out of memory"); return NULL; }
    size_t pl = strlen(prefix);
    for (int i = 0; i < src_count(src); i++) {
        const char *n = src_name(src, i);
        if (strncmp(n, prefix, pl) || n[pl] != '/') continue;
        wf_scope_begin();
        wf_tensor *t = src_tensor(src, n);
        int rc = t ? wf_state_dict_set(sd, n + pl + 1, t) : (wf_error() ? wf_error() : WF_ENOMEM);
        wf_scope_end();
        if (rc) { wf_state_dict_free(sd); return NULL; }
    }
    return sd;
}

static const char *meta_of(ck_src *src, const char *key, bool required) {
    const char *v = NULL;
    if (src->f) {
        v = wf_st_metadata(src->f, key);
    } else {
        const wf_json *j = wf__json_get(src->meta, key);
        char **tx = j ? wf__realloc(src->texts, (size_t)src->nt * sizeof *tx, (size_t)(src->nt + 1) * sizeof *tx) : NULL;
        if (tx) src->texts = tx;
        wf_sb sb;
        wf__sb_init(&sb);
        if (tx) wf__sb_json_value(&sb, j);
        char *t = tx ? wf__sb_take(&sb, NULL) : NULL;
        if (j && !t) {
            wf__sb_free(&sb);
            wf__error(WF_ENOMEM, "wf_fabric_load: out of memory");
            return NULL;
        }
        if (t) v = src->texts[src->nt++] = t;
    }
    if (!v && required) wf__error(WF_ECORRUPT, "wf_fabric_load: %s: metadata entry \"%s\" is missing", src->path, key);
    return v;
}

static int parse_json(const char *path, const char *key, const char *text, wf_json **out) {
    char err[160] = "";
    int rc = wf__json_parse(text, strlen(text), 0, out, err, sizeof err);
    if (rc == WF_ENOMEM) return wf__error(WF_ENOMEM, "wf_fabric_load: out of memory");
    if (rc) return wf__error(WF_ECORRUPT, "wf_fabric_load: %s: entry \"%s\" is not valid JSON: %s", path, key, err);
    return 0;
}

static int parse_u64(const wf_json *v, uint64_t *out) {
    const char *s = wf__json_str(v);
    if (!s || !*s) return -1;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end) return -1;
    *out = x;
    return 0;
}

/* Restore e (a requested entry of stored kind k) from f. */
static int restore(wf_fabric *fab, ck_src *f, st_entry *e, bool strict) {
    const char *op = "wf_fabric_load", *path = f->path;
    int rc = 0;
    switch (e->kind) {
    case WF_STATE_MODULE: {
        /* FSDP: a folder's rows went into the shards already; a file's rows are read by each
         * rank (the full model is never in one rank's memory) */
        if (!f->f && f->fr.modules_in_place) return 0;
        if (wf__fsdp_active(fab->strategy) && fab->strategy->io.load == wf__default_checkpoint_io.load) {
            int n = wf_st_count(f->f);
            const char **names = wf__calloc((size_t)n + 1, sizeof *names);
            if (!names) return wf__error(WF_ENOMEM, "%s: out of memory", op);
            for (int i = 0; i < n; i++) names[i] = wf_st_name(f->f, i);
            rc = wf__fsdp_module_load_rows(fab->strategy, path, names, n, e->m, e->name, strict);
            wf__free(names, 0);
            return rc;
        }
        wf_state_dict *sd = load_group(f, e->name);
        /* FSDP: the full parameters for the load, then each rank keeps its rows (collective) */
        int g = wf__fsdp_summon(fab->strategy, e->m, true);
        if (!sd) rc = wf_error();
        else if (!g) rc = wf_module_load_state_dict(e->m, sd, strict, NULL);
        int r = wf__fsdp_summon(fab->strategy, e->m, false);
        wf_state_dict_free(sd);
        return g ? g : rc ? rc : r;
    }
    case WF_STATE_OPTIMIZER: {
        char *key = join(e->name, "param_groups");
        if (!key) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        const char *js = meta_of(f, key, true);
        wf__free(key, 0);
        if (!js) return wf_error();
        wf_optim_state *os = wf_optim_state_new(js);
        if (!os) return wf_error();
        wf_state_dict *sd = load_group(f, e->name);
        if (!sd) { wf_optim_state_free(os); return wf_error(); }
        for (int i = 0; i < wf_state_dict_count(sd) && !rc; i++) {
            const char *name = wf_state_dict_name_at(sd, i);
            wf_tensor *t = wf_state_dict_tensor_at(sd, i), *rows = NULL;
            /* FSDP: the state of a sharded parameter is full in the file; this rank keeps its rows */
            int idx = state_index(name);
            wf_tensor *p = idx >= 0 ? opt_param_at(e->opt, idx) : NULL;
            bool sharded = false;
            wf_scope_begin();
            if (p) rc = wf__fsdp_rows_of(fab->strategy, p, t, &rows, &sharded);
            if (!rc) rc = wf_optim_state_add(os, name, sharded ? rows : t);
            wf_scope_end();
        }
        if (!rc) rc = wf_optimizer_load_state_dict(e->opt, os);
        wf_state_dict_free(sd);
        wf_optim_state_free(os);
        return rc;
    }
    case WF_STATE_TENSOR:
        return src_load_into(f, e->name, e->t);
    case WF_STATE_SCHEDULER: {
        const char *js = meta_of(f, e->name, true);
        return js ? wf_lr_scheduler_load_state_dict(e->sched, js) : wf_error();
    }
    default: break;
    }
    const char *js = meta_of(f, e->name, true);
    if (!js) return wf_error();
    wf_json *v = NULL;
    if ((rc = parse_json(path, e->name, js, &v))) return rc;
    switch (e->kind) {
    case WF_STATE_INT: {
        int64_t x;
        if (!wf__json_int(v, &x)) rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not an integer: %s", op, path, e->name, js);
        else if (e->owned) e->iv = x;
        else *e->pi = x;
        break;
    }
    case WF_STATE_DOUBLE: {
        double x = NAN;
        if (v->type == WF_JSON_NUMBER) x = v->number;
        else if (v->type != WF_JSON_NULL) { rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not a number: %s", op, path, e->name, js); break; }
        if (e->owned) e->dv = x; else *e->pd = x;
        break;
    }
    case WF_STATE_STRING: {
        const char *s = wf__json_str(v);
        if (!s) { rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not a string", op, path, e->name); break; }
        if (e->owned) {
            e->str = wf__strdup(s);
            if (!e->str) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
        } else if (v->str_len + 1 > e->cap) {
            rc = wf__error(WF_EINVAL, "%s: %s: string \"%s\" holds %zu bytes, the buffer only %zu", op, path, e->name,
                           v->str_len, e->cap - 1);
        } else {
            memcpy(e->sbuf, s, v->str_len + 1);
        }
        break;
    }
    case WF_STATE_RNG: {
        wf_rng_state r;
        if (parse_u64(wf__json_get(v, "seed"), &r.seed) || parse_u64(wf__json_get(v, "offset"), &r.offset))
            rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not an RNG state: %s", op, path, e->name, js);
        else
            wf_rng_set_state(r);
        break;
    }
    case WF_STATE_PRECISION: {
        const wf_json *sc = wf__json_get(v, "scale");
        int64_t tr;
        if (!sc || sc->type != WF_JSON_NUMBER || !wf__json_int(wf__json_get(v, "growth_tracker"), &tr))
            rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not a precision state: %s", op, path, e->name, js);
        else
            rc = wf_precision_load_state(e->fab->precision, sc->number, tr);
        break;
    }
    case WF_STATE_LOADER: {
        uint64_t epoch;
        int64_t batches;
        if (parse_u64(wf__json_get(v, "epoch"), &epoch) || !wf__json_int(wf__json_get(v, "batches"), &batches))
            rc = wf__error(WF_ECORRUPT, "%s: %s: entry \"%s\" is not a loader position: %s", op, path, e->name, js);
        else
            rc = wf_dataloader_set_position(wf_fabric_loader_inner(e->loader), epoch, batches);
        break;
    }
    default:
        rc = wf__error(WF_EINVAL, "%s: entry \"%s\" of kind %s cannot be restored in place", op, e->name,
                       kind_names[e->kind]);
    }
    wf__json_free(v);
    (void)fab;
    return rc;
}

/* An owned remainder entry for a stored entry of kind k that was not requested. */
static int add_remainder(ck_src *f, wf_fabric_state *rest, const char *name, int k) {
    const char *op = "wf_fabric_load";
    int rc = 0;
    st_entry *e;
    switch (k) {
    case WF_STATE_MODULE: case WF_STATE_OPTIMIZER: case WF_STATE_TENSORS: {
        if (!(e = add_entry(rest, op, name, WF_STATE_TENSORS, "x"))) return wf_error();
        e->owned = true;
        if (!(e->sd = load_group(f, name))) return wf_error();
        char *key = join(name, "param_groups");
        if (!key) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        const char *js = meta_of(f, key, false);
        wf__free(key, 0);
        if (js && !(e->json = wf__strdup(js))) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        return 0;
    }
    case WF_STATE_TENSOR: {
        if (!(e = add_entry(rest, op, name, WF_STATE_TENSOR, "x"))) return wf_error();
        e->owned = true;
        wf_scope_begin();
        wf_tensor *t = src_tensor(f, name);
        if (t) e->t = wf_tensor_retain(t);
        wf_scope_end();
        return t ? 0 : wf_error();
    }
    case WF_STATE_INT: case WF_STATE_DOUBLE: case WF_STATE_STRING:
        if (!(e = add_entry(rest, op, name, (wf_state_kind)k, "x"))) return wf_error();
        e->owned = true;
        return restore(NULL, f, e, false);
    default: {   /* scheduler, rng, precision, json: the JSON text */
        const char *js = meta_of(f, name, true);
        if (!js) return wf_error();
        if (!(e = add_entry(rest, op, name, WF_STATE_JSON, "x"))) return wf_error();
        e->owned = true;
        if (!(e->json = wf__strdup(js))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
        return rc;
    }
    }
}

static wf_fabric_state *wf_fabric_load__body(wf_fabric *fab, const char *path, wf_fabric_state *state, bool strict) {
    const char *op = "wf_fabric_load";
    if (!fab || !path) { wf__error(WF_ENULL, "%s: NULL %s", op, fab ? "path" : "fabric"); return NULL; }
    ck_src src = { .path = path }, *f = &src;
    wf_fabric_state *rest = NULL;
    wf_json *ents = NULL;
    int rc = 0;
    const char *fmt = FORMAT;
    if (wf__checkpoint_is_folder(path)) {
        /* a sharded folder (any world size): read by every rank, each checked before any is
         * written (fabric/fsdp_checkpoint.c); then restored as from a file */
        int nw = 0;
        wf__ckpt_item *want = wf__calloc((size_t)(state ? state->n : 0) + 1, sizeof *want);
        if (!want) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
        for (int i = 0; !rc && state && i < state->n; i++) {
            const st_entry *e = &state->v[i];
            if (e->kind == WF_STATE_MODULE || e->kind == WF_STATE_OPTIMIZER)
                want[nw++] = (wf__ckpt_item){ e->name, e->kind, e->m, e->opt, NULL, NULL };
        }
        if (!rc) rc = wf__checkpoint_folder_read(fab->strategy, path, want, nw, strict, &src.fr);
        wf__free(want, 0);
        if (!rc) rc = parse_json(path, "metadata", src.fr.metadata, &src.meta);
        if (!rc && src.meta->type != WF_JSON_OBJECT)
            rc = wf__error(WF_ECORRUPT, "%s: %s: the index's metadata is not an object", op, path);
        if (rc) goto out;
    } else {
        if (!(src.f = fab->strategy->io.load(&fab->strategy->io, path))) return NULL;
        /* every tensor's checksum before anything is restored: a damaged optimizer state found
         * after the model was already overwritten would leave the caller half-loaded */
        if ((rc = wf_st_verify(src.f))) goto out;
        fmt = wf_st_metadata(src.f, "weft/format");
    }
    if (!fmt) {
        rc = wf__error(WF_ECORRUPT, "%s: %s is not a weft checkpoint (no \"weft/format\" metadata); for a plain "
                       "safetensors file use wf_fabric_load_raw_module", op, path);
        goto out;
    }
    if (strcmp(fmt, FORMAT)) {
        rc = wf__error(WF_ENOTSUP, "%s: %s has checkpoint format \"%s\"; this weft reads \"%s\"", op, path, fmt, FORMAT);
        goto out;
    }
    const char *ej = meta_of(f, "weft/entries", true);
    if (!ej) { rc = wf_error(); goto out; }
    if ((rc = parse_json(path, "weft/entries", ej, &ents))) goto out;
    if (ents->type != WF_JSON_OBJECT) { rc = wf__error(WF_ECORRUPT, "%s: %s: weft/entries is not an object", op, path); goto out; }
    for (size_t i = 0; i < ents->n; i++) {
        const char *ks = wf__json_str(&ents->items[i]);
        if (!ks || !kind_parse(ks) || !ents->items[i].key[0] || strlen(ents->items[i].key) != ents->items[i].key_len) {
            rc = wf__error(WF_ECORRUPT, "%s: %s: weft/entries has an invalid entry", op, path);
            goto out;
        }
    }
    /* requested entries */
    for (int i = 0; state && i < state->n; i++) {
        st_entry *e = &state->v[i];
        const wf_json *k = wf__json_get(ents, e->name);
        if (!k) {
            if (!strict) continue;
            wf_sb names;
            wf__sb_init(&names);
            for (size_t j = 0; j < ents->n; j++) wf__sb_printf(&names, "%s\"%s\"", j ? ", " : "", ents->items[j].key);
            rc = wf__error(WF_ENOTFOUND, "%s: %s: the requested key \"%s\" is not in the checkpoint (it has: %s); pass "
                           "strict=false to skip it", op, path, e->name, names.buf ? names.buf : "nothing");
            wf__sb_free(&names);
            goto out;
        }
        int kind = kind_parse(wf__json_str(k));
        bool ok = kind == (int)e->kind || (e->kind == WF_STATE_MODULE && kind == WF_STATE_TENSORS);
        if (!ok) {
            rc = wf__error(WF_EINVAL, "%s: %s: entry \"%s\" holds a %s, the state asks for a %s", op, path, e->name,
                           kind_names[kind], kind_names[e->kind]);
            goto out;
        }
        rc = restore(fab, f, e, strict);
        if (rc) {
            char msg[768];
            snprintf(msg, sizeof msg, "%s", wf_error_message());
            wf__error(rc, "%s: %s: entry \"%s\": %s", op, path, e->name, msg);
            goto out;
        }
    }
    /* the remainder */
    if (!(rest = wf_fabric_state_new())) { rc = wf_error(); goto out; }
    for (size_t i = 0; i < ents->n && !rc; i++) {
        const char *name = ents->items[i].key;
        if (find_entry(state, name) >= 0) continue;
        rc = add_remainder(f, rest, name, kind_parse(wf__json_str(&ents->items[i])));
    }
out:
    wf__json_free(ents);
    src_close(&src);
    if (rc) { wf_fabric_state_free(rest); return NULL; }
    return rest;
}

wf_fabric_state *wf_fabric_load(wf_fabric *fab, const char *path, wf_fabric_state *state, bool strict) {
    WF__NAMED("wf_fabric_load", wf_fabric_state *, !r, wf_fabric_load__body(fab, path, state, strict));
}

/* ---------------------------------------------------------------- raw files */

static int wf_fabric_load_raw_module__body(wf_fabric *fab, const char *path, wf_module *m, bool strict) {
    if (!fab || !path || !m) return wf__error(WF_ENULL, "wf_fabric_load_raw_module: NULL argument");
    wf_st_file *f = fab->strategy->io.load(&fab->strategy->io, path);
    if (!f) return wf_error();
    wf_state_dict *sd = wf_state_dict_new();
    int rc = sd ? 0 : wf__error(WF_ENOMEM, "wf_fabric_load_raw_module: out of memory");
    /* FSDP: each rank reads its rows of each tensor, never the whole model (collective) */
    bool rows = wf__fsdp_active(fab->strategy) && fab->strategy->io.load == wf__default_checkpoint_io.load;
    if (!rc && rows) {
        int n = wf_st_count(f);
        const char **names = wf__calloc((size_t)n + 1, sizeof *names);
        if (!names) rc = wf__error(WF_ENOMEM, "wf_fabric_load_raw_module: out of memory");
        for (int i = 0; names && i < n; i++) names[i] = wf_st_name(f, i);
        rc = wf__fsdp_module_load_rows(fab->strategy, path, names, names ? n : -1, m, NULL, strict);
        wf__free(names, 0);
    }
    for (int i = 0; !rows && i < wf_st_count(f) && !rc; i++) {
        wf_scope_begin();
        wf_tensor *t = wf_st_load(f, wf_st_name(f, i));
        rc = t ? wf_state_dict_set(sd, wf_st_name(f, i), t) : wf_error();
        wf_scope_end();
    }
    /* another checkpoint IO under FSDP: into the full parameters, then each rank keeps its rows */
    if (!rc && !rows) {
        int g = wf__fsdp_summon(fab->strategy, m, true);
        rc = g ? g : wf_module_load_state_dict(m, sd, strict, NULL);
        int r = wf__fsdp_summon(fab->strategy, m, false);
        if (!rc) rc = r;
    }
    if (rc) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        wf__error(rc, "wf_fabric_load_raw_module: %s: %s", path, msg);
    }
    wf_state_dict_free(sd);
    wf_st_close(f);
    return rc;
}

int wf_fabric_load_raw_module(wf_fabric *fab, const char *path, wf_module *m, bool strict) {
    WF__NAMED("wf_fabric_load_raw_module", int, r < 0, wf_fabric_load_raw_module__body(fab, path, m, strict));
}

static int wf_fabric_load_raw_optimizer__body(wf_fabric *fab, const char *path, wf_optimizer *opt) {
    if (!fab || !path || !opt) return wf__error(WF_ENULL, "wf_fabric_load_raw_optimizer: NULL argument");
    wf_st_file *f = fab->strategy->io.load(&fab->strategy->io, path);
    if (!f) return wf_error();
    int rc = 0;
    const char *js = wf_st_metadata(f, "param_groups");
    wf_optim_state *os = NULL;
    if (!js) rc = wf__error(WF_ECORRUPT, "wf_fabric_load_raw_optimizer: %s: no \"param_groups\" metadata entry", path);
    else if (!(os = wf_optim_state_new(js))) rc = wf_error();
    for (int i = 0; i < wf_st_count(f) && !rc; i++) {
        wf_scope_begin();
        wf_tensor *t = wf_st_load(f, wf_st_name(f, i));
        rc = t ? wf_optim_state_add(os, wf_st_name(f, i), t) : wf_error();
        wf_scope_end();
    }
    if (!rc) rc = wf_optimizer_load_state_dict(opt, os);
    wf_optim_state_free(os);
    wf_st_close(f);
    return rc;
}

int wf_fabric_load_raw_optimizer(wf_fabric *fab, const char *path, wf_optimizer *opt) {
    WF__NAMED("wf_fabric_load_raw_optimizer", int, r < 0, wf_fabric_load_raw_optimizer__body(fab, path, opt));
}
