/* fabric/sharded_checkpoint.c: sharded and full checkpoints of a sharded state at any world
 * size. The formats, the atomicity and the collective contract are in
 * fabric/sharded_checkpoint.h; the index parser is fabric/sharded_index.c. */
#include "fabric/sharded_checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>   /* renameat2, which older C libraries do not wrap */
#endif

#include "io/atomic_file.h"
#include "io/safetensors_impl.h"
#include "io/st_stream_writer.h"
#include "tensor/tensor_impl.h"
#include "weft/autograd.h"

#define FULL_FORMAT "weft-checkpoint-1"   /* fabric/checkpoint.c's */
#define INDEX_NAME "index.json"
#define MAX_INDEX ((size_t)256 << 20)
#define P2P_TAG 1401

/* ---------------------------------------------------------------- the group */

typedef struct grp {
    wf_process_group *pg;   /* NULL: one process */
    int rank, size;
    const char *op;
} grp;

static int grp_init(grp *g, wf_process_group *pg, const char *op) {
    g->pg = pg && wf_process_group_size(pg) > 1 ? pg : NULL;
    g->rank = pg ? wf_process_group_rank(pg) : 0;
    g->size = pg ? wf_process_group_size(pg) : 1;
    g->op = op;
    if (g->rank < 0) return wf__error(WF_EINVAL, "%s: this process is not a member of the process group", op);
    return 0;
}

/* One rank's word in an agreement: its status, its error message, and a value rank 0
 * collects (an entry count, a file's header checksum). */
typedef struct vote {
    int32_t rc, rank, n;
    uint32_t extra;
    char msg[496];
} vote;

/* Every rank reports rc; rank 0 adds its own verdict on what it collected (judge, may be
 * NULL) and tells every rank the first failure, which each returns as the same error. all
 * (size votes, rank 0 only, may be NULL) receives what the ranks reported. */
typedef int (*judge_fn)(const grp *g, const vote *all, void *ctx);

static int agree(const grp *g, int rc, int32_t n, uint32_t extra, vote *all, judge_fn judge, void *ctx) {
    vote mine;
    memset(&mine, 0, sizeof mine);
    mine.rc = rc;
    mine.rank = g->rank;
    mine.n = n;
    mine.extra = extra;
    if (rc) snprintf(mine.msg, sizeof mine.msg, "%s", wf_error_message());
    vote *v = all;
    bool own = false;
    if (g->rank == 0 && !v) {
        if (!(v = wf__calloc((size_t)g->size, sizeof *v))) return wf__error(WF_ENOMEM, "%s: out of memory", g->op);
        own = true;
    }
    int crc = 0;
    if (!g->pg) v[0] = mine;
    else crc = wf_dist_gather_bytes(g->pg, &mine, sizeof mine, v, 0);
    if (crc) {
        if (own) wf__free(v, (size_t)g->size * sizeof *v);
        return crc;
    }
    vote verdict;
    memset(&verdict, 0, sizeof verdict);
    if (g->rank == 0) {
        for (int r = 0; r < g->size && !verdict.rc; r++)
            if (v[r].rc) verdict = v[r];
        if (!verdict.rc && judge) {
            int jr = judge(g, v, ctx);
            if (jr) {
                verdict.rc = jr;
                verdict.rank = 0;
                snprintf(verdict.msg, sizeof verdict.msg, "%s", wf_error_message());
            }
        }
    }
    if (own) wf__free(v, (size_t)g->size * sizeof *v);
    if (g->pg && (crc = wf_dist_broadcast_bytes(g->pg, &verdict, sizeof verdict, 0))) return crc;
    if (!verdict.rc) return 0;
    verdict.msg[sizeof verdict.msg - 1] = 0;
    if (!g->pg) return wf__error(verdict.rc, "%s", verdict.msg);
    return wf__error(verdict.rc, "%s: rank %d of %d failed: %s", g->op, (int)verdict.rank, g->size, verdict.msg);
}

static int same_count(const grp *g, const vote *all, void *ctx) {
    (void)ctx;
    for (int r = 1; r < g->size; r++)
        if (all[r].n != all[0].n)
            return wf__error(WF_EINVAL, "%s: rank %d passed %d entries, rank 0 %d: every rank must pass the same list",
                             g->op, r, (int)all[r].n, (int)all[0].n);
    return 0;
}

/* ---------------------------------------------------------------- entries */

static int64_t rows_of(int ndim, const int64_t *shape) { return ndim ? shape[0] : 1; }

static uint64_t row_bytes(wf_dtype dt, int ndim, const int64_t *shape) {
    uint64_t b = wf_dtype_size(dt);
    for (int d = 1; d < ndim; d++) b *= (uint64_t)shape[d];
    return b;
}

/* This rank's rows of entry e: [*start, *start + *count). */
static void local_rows(const wf__shard_entry *e, int64_t *start, int64_t *count) {
    *start = e->replicated ? 0 : e->row_start;
    *count = e->local->ndim ? e->local->shape[0] : 1;
}

static int check_entries(const char *op, const wf__shard_entry *e, int n) {
    if (n < 0) return wf__error(WF_EINVAL, "%s: %d entries", op, n);
    if (n && !e) return wf__error(WF_ENULL, "%s: NULL entry list", op);
    for (int i = 0; i < n; i++) {
        const wf__shard_entry *x = &e[i];
        if (!x->name || !*x->name) return wf__error(WF_EINVAL, "%s: entry %d has no name", op, i);
        if (!x->local) return wf__error(WF_ENULL, "%s: entry '%s' has no local tensor", op, x->name);
        if (!wf__st_dtype_name(x->local->dtype))
            return wf__error(WF_EDTYPE, "%s: entry '%s': dtype %s cannot be stored", op, x->name,
                             wf_dtype_name(x->local->dtype));
        if (x->ndim < 0 || x->ndim > WF_MAX_DIMS || (!x->replicated && x->ndim < 1))
            return wf__error(WF_EINVAL, "%s: entry '%s': %d dims (a sharded entry has at least 1)", op, x->name, x->ndim);
        bool ok = x->local->ndim == x->ndim;
        for (int d = 0; ok && d < x->ndim; d++) {
            ok = x->global_shape[d] >= 0 && (d == 0 && !x->replicated ? true : x->local->shape[d] == x->global_shape[d]);
        }
        int64_t s, c;
        if (ok) {
            local_rows(x, &s, &c);
            ok = x->replicated ? x->row_start == 0 : s >= 0 && s <= rows_of(x->ndim, x->global_shape) - c;
        }
        if (!ok) {
            char a[160], b[160];
            wf__shape_text(x->ndim, x->global_shape, a, sizeof a);
            return wf__error(WF_ESHAPE, "%s: entry '%s': local shape %s from row %lld does not fit the global shape %s%s",
                             op, x->name, wf_shape_str(x->local, b, sizeof b), (long long)x->row_start, a,
                             x->replicated ? " (replicated: local must be the whole tensor)" : "");
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(e[j].name, x->name)) return wf__error(WF_EINVAL, "%s: entry '%s' appears twice", op, x->name);
    }
    return 0;
}

/* What each rank holds of each entry, gathered on rank 0: the rows and a signature of the
 * name, dtype, global shape and replication, which must agree across ranks. */
typedef struct held {
    int64_t start, count;
    uint32_t sig, pad;
} held;

static uint32_t signature(const wf__shard_entry *x) {
    int32_t v[3] = { (int32_t)x->local->dtype, x->ndim, x->replicated };
    uint32_t c = wf_crc32(0, x->name, strlen(x->name) + 1);
    c = wf_crc32(c, v, sizeof v);
    return wf_crc32(c, x->global_shape, (size_t)x->ndim * sizeof x->global_shape[0]);
}

typedef struct table {
    const wf__shard_entry *e;
    int n;
    held *all;             /* rank 0: size x n, rank-major */
} table;

/* Gather the table on rank 0 (the entry counts already agree). */
static int gather_table(const grp *g, const wf__shard_entry *e, int n, table *t) {
    t->e = e;
    t->n = n;
    t->all = NULL;
    size_t nn = n ? (size_t)n : 1;
    held *mine = wf__calloc(nn, sizeof *mine);
    if (g->rank == 0) t->all = wf__calloc(nn * (size_t)g->size, sizeof *t->all);
    int rc = 0;
    if (!mine || (g->rank == 0 && !t->all)) rc = wf__error(WF_ENOMEM, "%s: out of memory", g->op);
    for (int i = 0; !rc && i < n; i++) {
        local_rows(&e[i], &mine[i].start, &mine[i].count);
        mine[i].sig = signature(&e[i]);
    }
    /* (out of memory here, a rank cannot join the gather: the others' wait ends at the
     * group's timeout with an error naming it) */
    int crc = 0;
    if (!rc && !g->pg) memcpy(t->all, mine, (size_t)n * sizeof *mine);
    else if (!rc) crc = wf_dist_gather_bytes(g->pg, mine, (size_t)n * sizeof(held), t->all, 0);
    wf__free(mine, nn * sizeof *mine);
    return rc ? rc : crc;
}

static void table_free(const grp *g, table *t) {
    wf__free(t->all, (t->n ? (size_t)t->n : 1) * (size_t)g->size * sizeof *t->all);
    t->all = NULL;
}

typedef struct piece { int rank; int64_t start, count; } piece;

static int piece_cmp(const void *a, const void *b) {
    const piece *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->rank - y->rank;
}

/* Rank 0: the pieces of entry i in row order (replicated: rank 0's whole tensor). out holds
 * size pieces; returns how many. */
static int pieces_of(const grp *g, const table *t, int i, piece *out) {
    const wf__shard_entry *x = &t->e[i];
    if (x->replicated) {
        out[0] = (piece){ 0, 0, rows_of(x->ndim, x->global_shape) };
        return out[0].count ? 1 : 0;
    }
    int m = 0;
    for (int r = 0; r < g->size; r++) {
        const held *h = &t->all[(size_t)r * (size_t)t->n + (size_t)i];
        if (h->count > 0) out[m++] = (piece){ r, h->start, h->count };
    }
    qsort(out, (size_t)m, sizeof *out, piece_cmp);
    return m;
}

/* Rank 0's check of the gathered table: the same entries everywhere, rows held exactly once. */
static int judge_table(const grp *g, const vote *all, void *ctx) {
    (void)all;
    const table *t = ctx;
    piece *p = wf__malloc((size_t)g->size * sizeof *p);
    if (!p) return wf__error(WF_ENOMEM, "%s: out of memory", g->op);
    int rc = 0;
    for (int i = 0; i < t->n && !rc; i++) {
        const wf__shard_entry *x = &t->e[i];
        for (int r = 1; r < g->size && !rc; r++)
            if (t->all[(size_t)r * (size_t)t->n + (size_t)i].sig != t->all[i].sig)
                rc = wf__error(WF_EINVAL, "%s: entry %d ('%s' on rank 0) differs on rank %d in name, dtype, global shape "
                               "or replication", g->op, i, x->name, r);
        if (rc || x->replicated) continue;
        int m = pieces_of(g, t, i, p);
        int64_t at = 0, rows = rows_of(x->ndim, x->global_shape);
        for (int k = 0; k < m && !rc; k++) {
            if (p[k].start > at)
                rc = wf__error(WF_EINVAL, "%s: entry '%s': rows [%lld, %lld) are held by no rank", g->op, x->name,
                               (long long)at, (long long)p[k].start);
            else if (p[k].start < at)
                rc = wf__error(WF_EINVAL, "%s: entry '%s': rows from %lld are held by rank %d and an earlier rank (replicas "
                               "save through their shard group)", g->op, x->name, (long long)p[k].start, p[k].rank);
            at = p[k].start + p[k].count;
        }
        if (!rc && at != rows)
            rc = wf__error(WF_EINVAL, "%s: entry '%s': rows [%lld, %lld) are held by no rank", g->op, x->name,
                           (long long)at, (long long)rows);
    }
    wf__free(p, (size_t)g->size * sizeof *p);
    return rc;
}

/* ---------------------------------------------------------------- metadata */

/* The caller's metadata object (NULL text: an empty one). */
static int parse_metadata(const char *op, const char *text, wf_json **out) {
    *out = NULL;
    const char *s = text ? text : "{}";
    char err[160] = "";
    int rc = wf__json_parse(s, strlen(s), WF__SHARDED_METADATA_DEPTH, out, err, sizeof err);
    if (rc == WF_ENOMEM) return wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (rc) return wf__error(WF_EINVAL, "%s: metadata_json is not valid JSON: %s", op, err);
    if ((*out)->type != WF_JSON_OBJECT) {
        wf__json_free(*out);
        *out = NULL;
        return wf__error(WF_EINVAL, "%s: metadata_json is not a JSON object", op);
    }
    return 0;
}

typedef struct meta_list {
    char **k, **v;
    int n, cap;
} meta_list;

static void meta_free(meta_list *m) {
    for (int i = 0; i < m->n; i++) {
        wf__free(m->k[i], strlen(m->k[i]) + 1);
        wf__free(m->v[i], strlen(m->v[i]) + 1);
    }
    wf__free(m->k, (size_t)m->cap * sizeof *m->k);
    wf__free(m->v, (size_t)m->cap * sizeof *m->v);
    memset(m, 0, sizeof *m);
}

/* Takes v (owned) in any case. */
static int meta_add(meta_list *m, const char *key, size_t klen, char *v, const char *op) {
    if (m->n == m->cap) {
        int nc = m->cap ? 2 * m->cap : 16;
        char **nk = wf__realloc(m->k, (size_t)m->cap * sizeof *nk, (size_t)nc * sizeof *nk);
        if (nk) m->k = nk;
        char **nv = nk ? wf__realloc(m->v, (size_t)m->cap * sizeof *nv, (size_t)nc * sizeof *nv) : NULL;
        if (nv) m->v = nv;
        if (!nk || !nv) {
            if (v) wf__free(v, strlen(v) + 1);
            return wf__error(WF_ENOMEM, "%s: out of memory", op);
        }
        m->cap = nc;
    }
    char *k = v ? wf__malloc(klen + 1) : NULL;
    if (!k) {
        if (v) wf__free(v, strlen(v) + 1);
        return wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    memcpy(k, key, klen);
    k[klen] = 0;
    m->k[m->n] = k;
    m->v[m->n] = v;
    m->n++;
    return 0;
}

/* The full file's metadata entries: the members of md, each as its JSON text (as
 * fabric/checkpoint.c stores an int, a string or a scheduler's state), "weft/entries" derived from the tensor names unless md has it, and the format. */
static int full_metadata(const char *op, const wf_json *md, const char *const *names, int n, meta_list *m) {
    memset(m, 0, sizeof *m);
    int rc = 0;
    for (size_t i = 0; i < md->n && !rc; i++) {
        const wf_json *it = &md->items[i];
        if (strlen(it->key) != it->key_len)
            return wf__error(WF_EINVAL, "%s: a metadata key contains a NUL character", op);
        if (!strcmp(it->key, "weft/format")) continue;
        wf_sb sb;
        wf__sb_init(&sb);
        wf__sb_json_value(&sb, it);
        char *v = wf__sb_take(&sb, NULL);
        if (!v) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        rc = meta_add(m, it->key, it->key_len, v, op);
    }
    if (!rc && !wf__json_get(md, "weft/entries")) {
        wf_sb sb;
        wf__sb_init(&sb);
        wf__sb_putc(&sb, '{');
        int written = 0;
        for (int i = 0; i < n; i++) {
            const char *slash = strchr(names[i], '/');
            size_t pl = slash ? (size_t)(slash - names[i]) : strlen(names[i]);
            bool seen = false;
            for (int j = 0; j < i && !seen; j++)
                seen = !strncmp(names[j], names[i], pl) && (names[j][pl] == '/' || !names[j][pl]);
            if (seen || !pl) continue;
            const char *kind = "tensor";
            if (slash) {
                char key[512];
                snprintf(key, sizeof key, "%.*s/param_groups", (int)pl, names[i]);
                kind = wf__json_get(md, key) ? "optimizer" : "module";
            }
            if (written++) wf__sb_putc(&sb, ',');
            wf__sb_json_string(&sb, names[i], pl);
            wf__sb_printf(&sb, ":\"%s\"", kind);
        }
        wf__sb_putc(&sb, '}');
        char *v = wf__sb_take(&sb, NULL);
        rc = v ? meta_add(m, "weft/entries", strlen("weft/entries"), v, op) : wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    if (!rc) {
        char *v = wf__strdup(FULL_FORMAT);
        rc = v ? meta_add(m, "weft/format", strlen("weft/format"), v, op) : wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    if (rc) meta_free(m);
    return rc;
}

/* ---------------------------------------------------------------- folders */

static char *path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = wf__malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static void str_free(char *s) {
    if (s) wf__free(s, strlen(s) + 1);
}

/* dir without trailing slashes, and "<dir>.tmp" / "<dir>.old" beside it. */
static char *sibling(const char *dir, const char *suffix) {
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/') l--;
    size_t ls = strlen(suffix);
    char *s = wf__malloc(l + ls + 1);
    if (!s) return NULL;
    memcpy(s, dir, l);
    memcpy(s + l, suffix, ls + 1);
    return s;
}

static bool ours(const char *name) {
    int k, n, used = 0;
    if (!strncmp(name, INDEX_NAME, strlen(INDEX_NAME))) return true;   /* index.json and index.json.tmp */
    return sscanf(name, "rank-%d-of-%d.safetensors%n", &k, &n, &used) == 2 && used > 0;
}

/* Remove a folder this code wrote: its files (only names it writes) and the folder. */
static int remove_folder(const char *op, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : wf__error(WF_EIO, "%s: %s: %s", op, dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!ours(de->d_name)) continue;
        char *p = path_join(dir, de->d_name);
        if (!p) { rc = wf__error(WF_ENOMEM, "%s: out of memory", op); break; }
        if (unlink(p) && errno != ENOENT) rc = wf__error(WF_EIO, "%s: removing %s: %s", op, p, strerror(errno));
        str_free(p);
    }
    closedir(d);
    if (!rc && rmdir(dir))
        rc = wf__error(WF_EIO, "%s: removing %s: %s%s", op, dir, strerror(errno),
                       errno == ENOTEMPTY ? " (it holds files weft did not write)" : "");
    return rc;
}

static void fsync_parent(const char *path) {
    char *p = wf__strdup(path);
    if (!p) return;
    char *s = strrchr(p, '/');
    const char *dir = s ? (s == p ? "/" : (*s = 0, p)) : ".";
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    str_free(p);
}

/* Rank 0, before any rank writes: a fresh empty dir.tmp (a crashed save's leftovers removed). */
static int prepare_tmp(const char *op, const char *dir, const char *tmp) {
    struct stat st;
    if (!stat(dir, &st) && !S_ISDIR(st.st_mode))
        return wf__error(WF_EINVAL, "%s: %s exists and is not a folder", op, dir);
    if (!stat(tmp, &st)) {
        if (!S_ISDIR(st.st_mode)) return wf__error(WF_EIO, "%s: %s exists and is not a folder", op, tmp);
        int rc = remove_folder(op, tmp);
        if (rc) return rc;
    }
    if (mkdir(tmp, 0777)) return wf__error(WF_EIO, "%s: creating %s: %s", op, tmp, strerror(errno));
    return 0;
}

/* Rank 0, once the index is written: put tmp in dir's place in one step. */
static int swap_in(const char *op, const char *dir, const char *tmp) {
    struct stat st;
    if (stat(dir, &st)) {
        if (rename(tmp, dir)) return wf__error(WF_EIO, "%s: renaming %s to %s: %s", op, tmp, dir, strerror(errno));
        fsync_parent(dir);
        return 0;
    }
    int rc = -1;
#if defined(SYS_renameat2)
    rc = (int)syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, dir, 2 /* RENAME_EXCHANGE */);
#endif
    if (!rc) {
        fsync_parent(dir);
        remove_folder(op, tmp);   /* the old checkpoint; left behind if it holds other files */
        return 0;
    }
    /* no atomic exchange on this file system: the old folder steps aside first, so a crash
     * between the two renames leaves it as <dir>.old */
    char *old = sibling(dir, ".old");
    if (!old) return wf__error(WF_ENOMEM, "%s: out of memory", op);
    remove_folder(op, old);
    if (rename(dir, old)) rc = wf__error(WF_EIO, "%s: renaming %s to %s: %s", op, dir, old, strerror(errno));
    else if (rename(tmp, dir)) {
        rc = wf__error(WF_EIO, "%s: renaming %s to %s: %s", op, tmp, dir, strerror(errno));
        rename(old, dir);
    } else {
        rc = 0;
        fsync_parent(dir);
        remove_folder(op, old);
    }
    str_free(old);
    return rc;
}

/* ---------------------------------------------------------------- sharded save */

static char *rank_file(const char *dir, int k, int n) {
    char name[64];
    snprintf(name, sizeof name, "rank-%d-of-%d.safetensors", k, n);
    return path_join(dir, name);
}

/* This rank's file: its rows of every entry (replicated ones on rank 0 only). *hcrc gets the
 * file's header checksum, which the index records. */
static int write_rank_file(const grp *g, const char *path, const wf__shard_entry *e, int n, uint32_t *hcrc) {
    wf_st_writer *w = wf_st_writer_new();
    if (!w) return wf_error();
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int64_t s, c;
        local_rows(&e[i], &s, &c);
        if (!c || (e[i].replicated && g->rank != 0)) continue;
        rc = wf_st_writer_add(w, e[i].name, e[i].local);
    }
    if (!rc) rc = wf_st_writer_set_metadata(w, "weft/sharded", WF__SHARDED_FORMAT);
    if (!rc) rc = wf_st_writer_save(w, path);
    wf_st_writer_free(w);
    if (rc) return rc;
    wf_st_file *f = wf_st_open(path);
    if (!f) return wf_error();
    const char *h = wf_st_metadata(f, "weft/header_crc32");
    *hcrc = h ? (uint32_t)strtoul(h, NULL, 16) : 0;
    wf_st_close(f);
    return 0;
}

static int write_index(const grp *g, const char *path, const table *t, const vote *votes, const wf_json *md) {
    wf_sb sb;
    wf__sb_init(&sb);
    wf__sb_printf(&sb, "{\"format\":\"" WF__SHARDED_FORMAT "\",\"world_size\":%d,\"files\":[", g->size);
    for (int r = 0; r < g->size; r++)
        wf__sb_printf(&sb, "%s\n{\"name\":\"rank-%d-of-%d.safetensors\",\"header_crc32\":\"%08x\"}", r ? "," : "", r,
                      g->size, (unsigned)votes[r].extra);
    wf__sb_puts(&sb, "],\n\"tensors\":{");
    piece *p = wf__malloc((size_t)g->size * sizeof *p);
    if (!p) {
        wf__sb_free(&sb);
        return wf__error(WF_ENOMEM, "%s: out of memory", g->op);
    }
    for (int i = 0; i < t->n; i++) {
        const wf__shard_entry *x = &t->e[i];
        wf__sb_puts(&sb, i ? ",\n" : "\n");
        wf__sb_json_string(&sb, x->name, strlen(x->name));
        wf__sb_printf(&sb, ":{\"dtype\":\"%s\",\"shape\":[", wf__st_dtype_name(x->local->dtype));
        for (int d = 0; d < x->ndim; d++) wf__sb_printf(&sb, "%s%lld", d ? "," : "", (long long)x->global_shape[d]);
        wf__sb_printf(&sb, "],\"replicated\":%s,\"pieces\":[", x->replicated ? "true" : "false");
        int m = pieces_of(g, t, i, p);
        for (int k = 0; k < m; k++)
            wf__sb_printf(&sb, "%s[%d,%lld,%lld]", k ? "," : "", p[k].rank, (long long)p[k].start,
                          (long long)(p[k].start + p[k].count));
        wf__sb_puts(&sb, "]}");
    }
    wf__free(p, (size_t)g->size * sizeof *p);
    wf__sb_puts(&sb, "},\n\"metadata\":");
    wf__sb_json_value(&sb, md);
    wf__sb_puts(&sb, ",\n");
    if (wf__sb_failed(&sb)) {
        wf__sb_free(&sb);
        return wf__error(WF_ENOMEM, "%s: out of memory", g->op);
    }
    wf__sb_printf(&sb, "\"index_crc32\":\"%08x\"}\n", (unsigned)wf_crc32(0, sb.buf, sb.len));
    if (wf__sb_failed(&sb)) {
        wf__sb_free(&sb);
        return wf__error(WF_ENOMEM, "%s: out of memory", g->op);
    }
    wf__atomic_file af;
    int rc = wf__atomic_open(&af, g->op, path);
    if (!rc && (rc = wf__atomic_pwrite(&af, sb.buf, sb.len, 0))) wf__atomic_abort(&af);
    else if (!rc) rc = wf__atomic_commit(&af);
    wf__sb_free(&sb);
    return rc;
}

int wf__sharded_save(wf_process_group *pg, const char *dir, const wf__shard_entry *e, int n, const char *metadata_json) {
    static const char *op = "wf__sharded_save";
    grp g;
    int rc = grp_init(&g, pg, op);
    if (rc) return rc;
    wf_json *md = NULL;
    char *tmp = NULL, *mine = NULL;
    vote *votes = NULL;
    table t = { 0 };
    bool made_tmp = false;
    if (!dir || !*dir) rc = wf__error(dir ? WF_EINVAL : WF_ENULL, "%s: no folder given", op);
    if (!rc) rc = check_entries(op, e, n);
    if (!rc && g.rank == 0) rc = parse_metadata(op, metadata_json, &md);
    if (!rc && !(tmp = sibling(dir, ".tmp"))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (!rc && g.rank == 0 && !(rc = prepare_tmp(op, dir, tmp))) made_tmp = true;
    /* 1: everyone's entries are sane and the temporary folder exists */
    if ((rc = agree(&g, rc, n, 0, NULL, same_count, NULL))) goto out;
    /* 2: rank 0 sees what every rank holds: one consistent tiling */
    rc = gather_table(&g, e, n, &t);
    if ((rc = agree(&g, rc, n, 0, NULL, judge_table, &t))) goto out;
    /* 3: every rank writes its file in parallel; rank 0 collects the header checksums */
    if (!(mine = rank_file(tmp, g.rank, g.size))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    uint32_t hcrc = 0;
    if (!rc) rc = write_rank_file(&g, mine, e, n, &hcrc);
    if (g.rank == 0 && !(votes = wf__calloc((size_t)g.size, sizeof *votes)))
        rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    if ((rc = agree(&g, rc, n, hcrc, votes, NULL, NULL))) goto out;
    /* 4: the index, then the folder swapped into place */
    if (g.rank == 0) {
        char *ip = path_join(tmp, INDEX_NAME);
        rc = ip ? write_index(&g, ip, &t, votes, md) : wf__error(WF_ENOMEM, "%s: out of memory", op);
        str_free(ip);
        if (!rc && !(rc = swap_in(op, dir, tmp))) made_tmp = false;
    }
    rc = agree(&g, rc, n, 0, NULL, NULL, NULL);
out:
    /* every rank knows rc (it came from an agreement); a failed save's temporary folder is
     * gone before any rank returns, so a caller never sees it half-removed */
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        if (made_tmp) remove_folder(op, tmp);
        if (!agree(&g, 0, n, 0, NULL, NULL, NULL)) wf__error(rc, "%s", msg);
    }
    table_free(&g, &t);
    if (votes) wf__free(votes, (size_t)g.size * sizeof *votes);
    str_free(tmp);
    str_free(mine);
    wf__json_free(md);
    return rc;
}

/* ---------------------------------------------------------------- reading pieces */

static int read_file(const char *op, const char *path, char **buf, size_t *len) {
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wf__error(WF_EIO, "%s: %s: %s", op, path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) rc = wf__error(WF_EIO, "%s: %s: not a readable file", op, path);
    else if ((uint64_t)st.st_size > MAX_INDEX)
        rc = wf__error(WF_ECORRUPT, "%s: %s: %lld bytes, more than an index may hold", op, path, (long long)st.st_size);
    else if (!(*buf = wf__malloc((size_t)st.st_size + 1))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    size_t got = 0;
    while (!rc && got < (size_t)st.st_size) {
        ssize_t r = read(fd, *buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) rc = wf__error(WF_EIO, "%s: reading %s: %s", op, path, r ? strerror(errno) : "the file shrank");
        else got += (size_t)r;
    }
    close(fd);
    if (rc && *buf) {
        wf__free(*buf, (size_t)st.st_size + 1);
        *buf = NULL;
    }
    *len = got;
    return rc;
}

static int load_index(const char *op, const char *dir, wf__sharded_index **ix) {
    char *ip = path_join(dir, INDEX_NAME);
    if (!ip) return wf__error(WF_ENOMEM, "%s: out of memory", op);
    char *buf;
    size_t len = 0;
    int rc = read_file(op, ip, &buf, &len);
    if (!rc) {
        rc = wf__sharded_index_parse(buf, len, ip, ix);
        wf__free(buf, len + 1);
    }
    str_free(ip);
    return rc;
}

int wf__sharded_index_load(const char *dir, wf__sharded_index **ix) {
    *ix = NULL;
    if (!dir || !*dir) return wf__error(dir ? WF_EINVAL : WF_ENULL, "wf__sharded_index_load: no folder given");
    return load_index("wf__sharded_index_load", dir, ix);
}

/* The rank files of a folder, opened once each when first needed and checked against the
 * index (their header checksums). */
typedef struct files {
    const char *dir;
    const wf__sharded_index *ix;
    wf_st_file **f;
} files;

static wf_st_file *file_get(files *fs, int k, const char *op) {
    if (fs->f[k]) return fs->f[k];
    char *p = rank_file(fs->dir, k, fs->ix->world_size);
    if (!p) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
    wf_st_file *f = wf_st_open(p);
    if (!f) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        wf__error(wf_error(), "%s: rank file %d of %d: %s", op, k, fs->ix->world_size, msg);
    } else {
        const char *h = wf_st_metadata(f, "weft/header_crc32");
        unsigned long hv = h ? strtoul(h, NULL, 16) : 0;
        if (!h || !wf_st_is_sealed(f) || (uint32_t)hv != fs->ix->file_crc[k]) {
            wf__error(WF_ECORRUPT, "%s: %s: its header checksum %s is not the index's %08x: a file from another save",
                      op, p, h ? h : "(none)", (unsigned)fs->ix->file_crc[k]);
            wf_st_close(f);
            f = NULL;
        }
    }
    str_free(p);
    return fs->f[k] = f;
}

/* Piece k of index tensor T inside its rank file: the file's tensor index, checked. */
static int piece_in_file(files *fs, const wf__sharded_tensor *T, int k, wf_st_file **fout, int *idx, const char *op) {
    const wf__sharded_piece *pc = &T->pieces[k];
    wf_st_file *f = file_get(fs, pc->file, op);
    if (!f) return wf_error();
    int i = wf_st_find(f, T->name);
    if (i < 0) return wf__error(WF_ECORRUPT, "%s: %s has no tensor '%s' (the index says rows [%lld, %lld) are there)", op,
                                wf__st_path(f), T->name, (long long)pc->row_begin, (long long)pc->row_end);
    wf_dtype dt;
    int nd;
    int64_t sh[WF_MAX_DIMS];
    bool ok = wf__st_is_native(f, i) && !wf_st_info(f, i, &dt, &nd, sh) && dt == T->dtype &&
              nd == (T->ndim ? T->ndim : 0);
    for (int d = 0; ok && d < nd; d++) ok = sh[d] == (d ? T->shape[d] : pc->row_end - pc->row_begin);
    if (!ok) return wf__error(WF_ECORRUPT, "%s: %s: tensor '%s' is not the piece the index describes", op, wf__st_path(f),
                              T->name);
    *fout = f;
    *idx = i;
    return 0;
}

/* ---------------------------------------------------------------- sharded load */

/* Where entry x's rows come from: the index tensor, checked against x. */
static int match_entry(const char *op, const char *where, const wf__sharded_index *ix, const wf__shard_entry *x,
                       const wf__sharded_tensor **T) {
    int ti = wf__sharded_index_find(ix, x->name);
    if (ti < 0) return wf__error(WF_ENOTFOUND, "%s: %s: tensor '%s' is not in the checkpoint", op, where, x->name);
    *T = &ix->t[ti];
    if ((*T)->dtype != x->local->dtype)
        return wf__error(WF_EDTYPE, "%s: %s: tensor '%s' was saved as %s, the state asks for %s", op, where, x->name,
                         wf__st_dtype_name((*T)->dtype), wf__st_dtype_name(x->local->dtype));
    bool same = (*T)->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = (*T)->shape[d] == x->global_shape[d];
    if (!same) {
        char a[160], b[160];
        wf__shape_text((*T)->ndim, (*T)->shape, a, sizeof a);
        wf__shape_text(x->ndim, x->global_shape, b, sizeof b);
        return wf__error(WF_ESHAPE, "%s: %s: tensor '%s' was saved with shape %s, the state asks for %s", op, where,
                         x->name, a, b);
    }
    return 0;
}

/* Fill x.local from the pieces of T (verify: check each overlapping piece's CRC only). */
static int fill_entry(files *fs, const wf__sharded_tensor *T, const wf__shard_entry *x, bool verify, const char *op) {
    int64_t s, c;
    local_rows(x, &s, &c);
    uint64_t rb = row_bytes(T->dtype, T->ndim, T->shape);
    int rc = 0;
    wf_scope_begin();
    wf_tensor *dst = NULL;
    unsigned char *out = NULL;
    if (!verify && c) {
        bool direct = x->local->device.type == WF_DEV_CPU && wf_is_contiguous(x->local);
        dst = direct ? x->local : wf_empty_on(x->local->shape, x->local->ndim, x->local->dtype, WF_CPU);
        if (!dst) rc = wf_error();
        else out = (unsigned char *)wf__host_ptr(dst);
    }
    for (int k = 0; k < T->npieces && !rc; k++) {
        const wf__sharded_piece *pc = &T->pieces[k];
        int64_t lo = pc->row_begin > s ? pc->row_begin : s, hi = pc->row_end < s + c ? pc->row_end : s + c;
        if (lo >= hi) continue;
        wf_st_file *f;
        int i;
        if ((rc = piece_in_file(fs, T, k, &f, &i, op))) break;
        rc = wf__st_read_range(f, i, (uint64_t)(lo - pc->row_begin) * rb, (uint64_t)(hi - pc->row_begin) * rb,
                               verify ? NULL : out + (uint64_t)(lo - s) * rb, verify, op);
    }
    if (!rc && dst && dst != x->local) {
        bool prev = wf_set_grad_enabled(false);
        rc = wf_copy_(x->local, dst);
        wf_set_grad_enabled(prev);
    } else if (!rc && dst) {
        wf__bump_version(x->local);
    }
    wf_scope_end();
    return rc;
}

int wf__sharded_load(wf_process_group *pg, const char *dir, wf__shard_entry *e, int n, char **metadata_out) {
    static const char *op = "wf__sharded_load";
    grp g;
    int rc = grp_init(&g, pg, op);
    if (rc) return rc;
    if (metadata_out) *metadata_out = NULL;
    wf__sharded_index *ix = NULL;
    files fs = { dir, NULL, NULL };
    if (!dir || !*dir) rc = wf__error(dir ? WF_EINVAL : WF_ENULL, "%s: no folder given", op);
    if (!rc) rc = check_entries(op, e, n);
    if (!rc) rc = load_index(op, dir, &ix);
    if (!rc) {
        fs.ix = ix;
        if (!(fs.f = wf__calloc((size_t)ix->world_size, sizeof *fs.f))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    /* every piece this rank needs is checked before any tensor is written, and every rank
     * knows that of every other: a damaged file leaves all ranks' state as it was */
    for (int i = 0; i < n && !rc; i++) {
        const wf__sharded_tensor *T;
        if (!(rc = match_entry(op, dir, ix, &e[i], &T))) rc = fill_entry(&fs, T, &e[i], true, op);
    }
    if ((rc = agree(&g, rc, n, 0, NULL, NULL, NULL))) goto out;
    for (int i = 0; i < n && !rc; i++) {
        const wf__sharded_tensor *T;
        if (!(rc = match_entry(op, dir, ix, &e[i], &T))) rc = fill_entry(&fs, T, &e[i], false, op);
    }
    if (!rc && metadata_out) {
        wf_sb sb;
        wf__sb_init(&sb);
        wf__sb_json_value(&sb, ix->metadata);
        if (!(*metadata_out = wf__sb_take(&sb, NULL))) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    }
    rc = agree(&g, rc, n, 0, NULL, NULL, NULL);
    if (rc && metadata_out && *metadata_out) {
        str_free(*metadata_out);
        *metadata_out = NULL;
    }
out:
    for (int k = 0; fs.f && k < ix->world_size; k++) wf_st_close(fs.f[k]);
    if (fs.f) wf__free(fs.f, (size_t)ix->world_size * sizeof *fs.f);
    wf__sharded_index_free(ix);
    return rc;
}

/* ---------------------------------------------------------------- full save */

int wf__full_save(wf_process_group *pg, const char *path, const wf__shard_entry *e, int n, const char *metadata_json) {
    static const char *op = "wf__full_save";
    grp g;
    int rc = grp_init(&g, pg, op);
    if (rc) return rc;
    wf_json *md = NULL;
    table t = { 0 };
    meta_list ml = { 0 };
    wf__st_stream *s = NULL;
    piece *p = NULL;
    if (!path || !*path) rc = wf__error(path ? WF_EINVAL : WF_ENULL, "%s: no path given", op);
    if (!rc) rc = check_entries(op, e, n);
    if (!rc && g.rank == 0) rc = parse_metadata(op, metadata_json, &md);
    if ((rc = agree(&g, rc, n, 0, NULL, same_count, NULL))) goto out;
    rc = gather_table(&g, e, n, &t);
    if ((rc = agree(&g, rc, n, 0, NULL, judge_table, &t))) goto out;
    /* rank 0 opens the file from the global shapes alone */
    if (g.rank == 0) {
        size_t nn = n ? (size_t)n : 1;
        wf__st_tensor_desc *d = wf__malloc(nn * sizeof *d);
        const char **names = wf__malloc(nn * sizeof *names);
        p = wf__malloc((size_t)g.size * sizeof *p);
        if (!d || !names || !p) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
        for (int i = 0; !rc && i < n; i++) {
            d[i] = (wf__st_tensor_desc){ e[i].name, e[i].local->dtype, e[i].ndim, e[i].global_shape };
            names[i] = e[i].name;
        }
        if (!rc) rc = full_metadata(op, md, names, n, &ml);
        if (!rc && !(s = wf__st_stream_open(path, d, n, (const char *const *)ml.k, (const char *const *)ml.v, ml.n, op)))
            rc = wf_error();
        wf__free(d, nn * sizeof *d);
        wf__free(names, nn * sizeof *names);
    }
    if ((rc = agree(&g, rc, n, 0, NULL, NULL, NULL))) goto out;
    /* one piece at a time: rank 0 receives each in row order and streams it to the file; a
     * failure on rank 0 keeps receiving (and dropping) so that every send finds its match */
    for (int i = 0; i < n; i++) {
        const wf__shard_entry *x = &e[i];
        int64_t ms, mc;
        local_rows(x, &ms, &mc);
        if (g.rank != 0) {
            if (!x->replicated && mc > 0 && g.pg) {
                int sr = wf_dist_send(g.pg, x->local, 0, P2P_TAG);
                if (sr && !rc) rc = sr;
                if (sr) break;   /* the group is broken: nothing else will get through */
            }
            continue;
        }
        int m = pieces_of(&g, &t, i, p);
        for (int k = 0; k < m; k++) {
            int wr = 0;
            if (p[k].rank == 0) {
                wr = rc ? 0 : wf__st_stream_write_tensor(s, i, x->local);
            } else {
                wf_scope_begin();
                int64_t shape[WF_MAX_DIMS];
                memcpy(shape, x->global_shape, sizeof shape);
                shape[0] = p[k].count;
                wf_tensor *buf = wf_empty_on(shape, x->ndim, x->local->dtype, x->local->device);
                int rr = buf ? wf_dist_recv(g.pg, buf, p[k].rank, P2P_TAG) : wf_error();
                if (!rr && !rc) wr = wf__st_stream_write_tensor(s, i, buf);
                wf_scope_end();
                if (rr) {
                    rc = rc ? rc : rr;
                    i = n;   /* the group is broken */
                    break;
                }
            }
            if (wr && !rc) rc = wr;
        }
    }
    if (g.rank == 0 && s) {
        int cr = rc ? (wf__st_stream_abort(s), 0) : wf__st_stream_commit(s);
        s = NULL;
        if (!rc) rc = cr;
    }
    rc = agree(&g, rc, n, 0, NULL, NULL, NULL);
out:
    wf__st_stream_abort(s);
    wf__free(p, (size_t)g.size * sizeof *p);
    meta_free(&ml);
    table_free(&g, &t);
    wf__json_free(md);
    return rc;
}

/* ---------------------------------------------------------------- load_raw of a full file */

/* Tensor k of f for entry x: present, stored in x's dtype, with x's global shape. */
static int raw_match(const char *op, wf_st_file *f, const char *path, const wf__shard_entry *x, int *kout) {
    int k = wf_st_find(f, x->name);
    if (k < 0) return wf__error(WF_ENOTFOUND, "%s: %s: no tensor '%s'", op, path, x->name);
    wf_dtype dt;
    int nd;
    int64_t sh[WF_MAX_DIMS];
    int rc = wf_st_info(f, k, &dt, &nd, sh);
    if (rc) return rc;
    if (!wf__st_is_native(f, k) || dt != x->local->dtype)
        return wf__error(WF_EDTYPE, "%s: %s: tensor '%s' is stored as %s, the state asks for %s", op, path, x->name,
                         wf__st_is_native(f, k) ? wf__st_dtype_name(dt) : "another dtype",
                         wf__st_dtype_name(x->local->dtype));
    bool same = nd == x->ndim;
    for (int d = 0; same && d < nd; d++) same = sh[d] == x->global_shape[d];
    if (!same) {
        char a[160], b[160];
        wf__shape_text(nd, sh, a, sizeof a);
        wf__shape_text(x->ndim, x->global_shape, b, sizeof b);
        return wf__error(WF_ESHAPE, "%s: %s: tensor '%s' has shape %s, the state asks for %s", op, path, x->name, a, b);
    }
    *kout = k;
    return 0;
}

int wf__full_load_rows(wf_process_group *pg, const char *path, wf__shard_entry *e, int n) {
    static const char *op = "wf__full_load_rows";
    grp g;
    int rc = grp_init(&g, pg, op);
    if (rc) return rc;
    wf_st_file *f = NULL;
    int k;
    if (!path || !*path) rc = wf__error(path ? WF_EINVAL : WF_ENULL, "%s: no path given", op);
    if (!rc) rc = check_entries(op, e, n);
    if (!rc && !(f = wf_st_open(path))) rc = wf_error();
    /* as in the sharded load: every tensor's CRC on every rank before any is written */
    for (int i = 0; i < n && !rc; i++)
        if (!(rc = raw_match(op, f, path, &e[i], &k))) rc = wf__st_read_range(f, k, 0, 0, NULL, true, op);
    if ((rc = agree(&g, rc, n, 0, NULL, NULL, NULL))) goto out;
    for (int i = 0; i < n && !rc; i++) {
        const wf__shard_entry *x = &e[i];
        if ((rc = raw_match(op, f, path, x, &k))) break;
        int64_t s, c;
        local_rows(x, &s, &c);
        if (!c) continue;
        uint64_t rb = row_bytes(x->local->dtype, x->ndim, x->global_shape);
        wf_scope_begin();
        bool direct = x->local->device.type == WF_DEV_CPU && wf_is_contiguous(x->local);
        wf_tensor *dst = direct ? x->local : wf_empty_on(x->local->shape, x->local->ndim, x->local->dtype, WF_CPU);
        if (!dst) rc = wf_error();
        if (!rc) rc = wf__st_read_range(f, k, (uint64_t)s * rb, (uint64_t)(s + c) * rb, wf__host_ptr(dst), false, op);
        if (!rc && dst != x->local) {
            bool prev = wf_set_grad_enabled(false);
            rc = wf_copy_(x->local, dst);
            wf_set_grad_enabled(prev);
        } else if (!rc) {
            wf__bump_version(x->local);
        }
        wf_scope_end();
    }
    rc = agree(&g, rc, n, 0, NULL, NULL, NULL);
out:
    wf_st_close(f);
    return rc;
}

/* ---------------------------------------------------------------- consolidate */

int wf__sharded_consolidate(const char *dir, const char *out) {
    static const char *op = "wf__sharded_consolidate";
    if (!dir || !out) return wf__error(WF_ENULL, "%s: NULL folder or output", op);
    struct stat st;
    if (!stat(out, &st)) return wf__error(WF_EINVAL, "%s: %s already exists: choose another output or remove it", op, out);
    wf__sharded_index *ix = NULL;
    int rc = load_index(op, dir, &ix);
    if (rc) return rc;
    files fs = { dir, ix, wf__calloc((size_t)ix->world_size, sizeof(wf_st_file *)) };
    size_t nn = ix->ntensors ? (size_t)ix->ntensors : 1;
    wf__st_tensor_desc *d = wf__malloc(nn * sizeof *d);
    const char **names = wf__malloc(nn * sizeof *names);
    meta_list ml = { 0 };
    wf__st_stream *s = NULL;
    enum { CHUNK = 4 << 20 };
    unsigned char *buf = wf__malloc(CHUNK);
    if (!fs.f || !d || !names || !buf) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    for (int i = 0; !rc && i < ix->ntensors; i++) {
        d[i] = (wf__st_tensor_desc){ ix->t[i].name, ix->t[i].dtype, ix->t[i].ndim, ix->t[i].shape };
        names[i] = ix->t[i].name;
    }
    if (!rc) rc = full_metadata(op, ix->metadata, names, ix->ntensors, &ml);
    if (!rc && !(s = wf__st_stream_open(out, d, ix->ntensors, (const char *const *)ml.k, (const char *const *)ml.v, ml.n, op)))
        rc = wf_error();
    for (int i = 0; !rc && i < ix->ntensors; i++) {
        const wf__sharded_tensor *T = &ix->t[i];
        uint64_t rb = row_bytes(T->dtype, T->ndim, T->shape);
        for (int k = 0; !rc && k < T->npieces; k++) {
            wf_st_file *f;
            int fi;
            if ((rc = piece_in_file(&fs, T, k, &f, &fi, op))) break;
            /* the piece's CRC first, then its bytes a chunk at a time: bounded memory */
            if ((rc = wf__st_read_range(f, fi, 0, 0, NULL, true, op))) break;
            uint64_t total = (uint64_t)(T->pieces[k].row_end - T->pieces[k].row_begin) * rb;
            uint64_t step = CHUNK - CHUNK % wf_dtype_size(T->dtype);
            for (uint64_t at = 0; !rc && at < total; at += step) {
                uint64_t len = total - at < step ? total - at : step;
                if (!(rc = wf__st_read_range(f, fi, at, at + len, buf, false, op)))
                    rc = wf__st_stream_write(s, i, buf, (size_t)len);
            }
        }
    }
    if (s) {
        if (rc) wf__st_stream_abort(s);
        else rc = wf__st_stream_commit(s);
    }
    for (int k = 0; fs.f && k < ix->world_size; k++) wf_st_close(fs.f[k]);
    if (fs.f) wf__free(fs.f, (size_t)ix->world_size * sizeof *fs.f);
    wf__free(buf, CHUNK);
    wf__free(d, nn * sizeof *d);
    wf__free(names, nn * sizeof *names);
    meta_free(&ml);
    wf__sharded_index_free(ix);
    return rc;
}
