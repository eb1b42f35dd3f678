/* fabric/sharded_index.c: index.json of a sharded checkpoint, checked as hostile input
 * (the format is in fabric/sharded_checkpoint.h; tests/fuzz/fuzz_sharded_index.c feeds it
 * arbitrary bytes). */
#include "fabric/sharded_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors_impl.h"
#include "tensor/tensor_impl.h"

#define IX_TOKEN "\"index_crc32\":\""
#define IX_MAX_WORLD 1048576
/* the tensors need 4 levels; the metadata object sits one level down, and a save refuses
 * metadata nested deeper than the index may be (WF__SHARDED_METADATA_DEPTH) */
#define IX_MAX_DEPTH (WF__SHARDED_METADATA_DEPTH + 1)

void wf__sharded_index_free(wf__sharded_index *ix) {
    if (!ix) return;
    for (int i = 0; i < ix->ntensors; i++)
        wf__free(ix->t[i].pieces, (size_t)ix->t[i].npieces * sizeof *ix->t[i].pieces);
    wf__free(ix->t, (size_t)ix->ntensors * sizeof *ix->t);
    wf__free(ix->by_name, (size_t)ix->ntensors * sizeof *ix->by_name);
    wf__free(ix->file_crc, (size_t)ix->world_size * sizeof *ix->file_crc);
    wf__json_free(ix->dom);
    wf__free(ix, sizeof *ix);
}

static int hex8(const char *s, size_t n, uint32_t *out) {
    if (n != 8) return -1;
    uint32_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else return -1;   /* lowercase only, as written: a flipped case bit is damage */
    }
    *out = v;
    return 0;
}

static int by_name(const void *a, const void *b, void *ctx) {
    const wf__sharded_index *ix = ctx;
    return strcmp(ix->t[*(const int *)a].name, ix->t[*(const int *)b].name);
}

int wf__sharded_index_find(const wf__sharded_index *ix, const char *name) {
    if (!ix || !name) return -1;
    int lo = 0, hi = ix->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->t[ix->by_name[mid]].name, name);
        if (!c) return ix->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

#define BAD(...) do { rc = wf__error(WF_ECORRUPT, __VA_ARGS__); goto fail; } while (0)

static int parse_tensor(const char *path, const wf_json *v, int world, wf__sharded_tensor *t) {
    int rc = 0;
    const char *name = v->key;
    t->name = name;
    if (strlen(name) != v->key_len || !*name) BAD("%s: a tensor name is empty or contains a NUL character", path);
    if (v->type != WF_JSON_OBJECT) BAD("%s: tensor '%s': not an object", path, name);
    const char *dt = wf__json_str(wf__json_get(v, "dtype"));
    if (!dt || (t->dtype = wf__st_dtype_parse(dt)) == WF_DTYPE_DEFAULT)
        BAD("%s: tensor '%s': missing or unknown \"dtype\"", path, name);
    const wf_json *sh = wf__json_get(v, "shape");
    if (!sh || sh->type != WF_JSON_ARRAY || sh->n > WF_MAX_DIMS)
        BAD("%s: tensor '%s': \"shape\" must be an array of at most %d dims", path, name, WF_MAX_DIMS);
    t->ndim = (int)sh->n;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (!wf__json_int(&sh->items[d], &t->shape[d]) || t->shape[d] < 0 || t->shape[d] > ((int64_t)1 << 48))
            BAD("%s: tensor '%s': shape[%d] is not a dimension", path, name, d);
        if (t->shape[d] && numel > ((uint64_t)1 << 56) / (uint64_t)t->shape[d])
            BAD("%s: tensor '%s': shape overflows", path, name);
        if (t->shape[d]) numel *= (uint64_t)t->shape[d];
    }
    const wf_json *rep = wf__json_get(v, "replicated");
    if (!rep || rep->type != WF_JSON_BOOL) BAD("%s: tensor '%s': missing or non-boolean \"replicated\"", path, name);
    t->replicated = rep->boolean;
    const wf_json *pc = wf__json_get(v, "pieces");
    if (!pc || pc->type != WF_JSON_ARRAY || pc->n > (size_t)world)
        BAD("%s: tensor '%s': \"pieces\" must be an array of at most %d pieces", path, name, world);
    t->npieces = (int)pc->n;
    t->pieces = wf__calloc(pc->n ? pc->n : 1, sizeof *t->pieces);
    if (!t->pieces) { t->npieces = 0; return wf__error(WF_ENOMEM, "%s: out of memory", path); }
    int64_t rows = t->ndim ? t->shape[0] : 1, at = 0;
    for (int k = 0; k < t->npieces; k++) {
        const wf_json *p = &pc->items[k];
        int64_t f, b, e;
        if (p->type != WF_JSON_ARRAY || p->n != 3 || !wf__json_int(&p->items[0], &f) ||
            !wf__json_int(&p->items[1], &b) || !wf__json_int(&p->items[2], &e))
            BAD("%s: tensor '%s': piece %d is not [file, first row, end row]", path, name, k);
        if (f < 0 || f >= world) BAD("%s: tensor '%s': piece %d names file %lld of %d", path, name, k, (long long)f, world);
        /* the pieces tile [0, rows) in order, none empty */
        if (b != at || e <= b || e > rows)
            BAD("%s: tensor '%s': piece %d holds rows [%lld, %lld), expected rows from %lld up to %lld", path, name, k,
                (long long)b, (long long)e, (long long)at, (long long)rows);
        t->pieces[k] = (wf__sharded_piece){ (int)f, b, e };
        at = e;
    }
    if (at != rows && numel)
        BAD("%s: tensor '%s': rows [%lld, %lld) are in no piece", path, name, (long long)at, (long long)rows);
    if (t->replicated && (t->npieces > 1 || (t->npieces == 1 && t->pieces[0].file != 0)))
        BAD("%s: tensor '%s': a replicated tensor is one piece in file 0", path, name);
    return 0;
fail:
    return rc;
}

int wf__sharded_index_parse(const char *text, size_t len, const char *path, wf__sharded_index **out) {
    int rc = 0;
    if (out) *out = NULL;
    if (!text || !path || !out) return wf__error(WF_ENULL, "wf__sharded_index_parse: NULL argument");
    wf__sharded_index *ix = wf__calloc(1, sizeof *ix);
    if (!ix) return wf__error(WF_ENOMEM, "%s: out of memory", path);
    /* the checksum before the JSON: damage is reported as damage */
    size_t tl = strlen(IX_TOKEN);
    if (len < tl + 11 || memcmp(text + len - 11 - tl, IX_TOKEN, tl) || memcmp(text + len - 3, "\"}\n", 3))
        BAD("%s: the index does not end with its checksum (\"index_crc32\":\"xxxxxxxx\"}): truncated or not an index", path);
    uint32_t stored, computed = wf_crc32(0, text, len - 11 - tl);
    if (hex8(text + len - 11, 8, &stored)) BAD("%s: the index checksum is not 8 lowercase hex digits", path);
    if (stored != computed)
        BAD("%s: the index: CRC32 mismatch (stored %08x, computed %08x): the file is damaged", path, (unsigned)stored,
            (unsigned)computed);
    char err[160] = "";
    int jr = wf__json_parse(text, len, IX_MAX_DEPTH, &ix->dom, err, sizeof err);
    if (jr == WF_ENOMEM) { rc = wf__error(WF_ENOMEM, "%s: out of memory parsing the index", path); goto fail; }
    if (jr) BAD("%s: the index is not valid JSON: %s", path, err);
    const wf_json *d = ix->dom;
    if (d->type != WF_JSON_OBJECT) BAD("%s: the index is not a JSON object", path);
    const char *fmt = wf__json_str(wf__json_get(d, "format"));
    if (!fmt) BAD("%s: the index has no \"format\"", path);
    if (strcmp(fmt, WF__SHARDED_FORMAT)) {
        rc = wf__error(WF_ENOTSUP, "%s: sharded checkpoint format \"%.40s\"; this weft reads \"" WF__SHARDED_FORMAT "\"",
                       path, fmt);
        goto fail;
    }
    int64_t ws;
    if (!wf__json_int(wf__json_get(d, "world_size"), &ws) || ws < 1 || ws > IX_MAX_WORLD)
        BAD("%s: \"world_size\" is not an integer in [1, %d]", path, IX_MAX_WORLD);
    const wf_json *files = wf__json_get(d, "files");
    if (!files || files->type != WF_JSON_ARRAY || files->n != (size_t)ws)
        BAD("%s: \"files\" must list the %lld rank files", path, (long long)ws);
    if (!(ix->file_crc = wf__calloc((size_t)ws, sizeof *ix->file_crc))) {
        rc = wf__error(WF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    ix->world_size = (int)ws;
    for (int k = 0; k < ix->world_size; k++) {
        char want[64];
        snprintf(want, sizeof want, "rank-%d-of-%d.safetensors", k, ix->world_size);
        const wf_json *f = &files->items[k];
        const char *nm = wf__json_str(wf__json_get(f, "name"));
        const wf_json *c = wf__json_get(f, "header_crc32");
        /* the name is fixed by the rank: a name from the file is never used as a path */
        if (f->type != WF_JSON_OBJECT || !nm || strcmp(nm, want))
            BAD("%s: files[%d] must be named \"%s\"", path, k, want);
        if (!c || c->type != WF_JSON_STRING || hex8(c->str, c->str_len, &ix->file_crc[k]))
            BAD("%s: files[%d]: \"header_crc32\" is not 8 lowercase hex digits", path, k);
    }
    const wf_json *ts = wf__json_get(d, "tensors");
    if (!ts || ts->type != WF_JSON_OBJECT || ts->n > (size_t)1 << 24) BAD("%s: \"tensors\" is not an object", path);
    size_t nt = ts->n ? ts->n : 1;
    ix->t = wf__calloc(nt, sizeof *ix->t);
    ix->by_name = wf__malloc(nt * sizeof *ix->by_name);
    if (!ix->t || !ix->by_name) {
        wf__free(ix->t, nt * sizeof *ix->t);
        wf__free(ix->by_name, nt * sizeof *ix->by_name);
        ix->t = NULL;
        ix->by_name = NULL;
        rc = wf__error(WF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < ts->n; i++) {
        ix->ntensors++;
        ix->by_name[i] = (int)i;
        if ((rc = parse_tensor(path, &ts->items[i], ix->world_size, &ix->t[i]))) goto fail;
        ix->npieces_total += (size_t)ix->t[i].npieces;
    }
    qsort_r(ix->by_name, (size_t)ix->ntensors, sizeof *ix->by_name, by_name, ix);
    for (int i = 1; i < ix->ntensors; i++)
        if (!strcmp(ix->t[ix->by_name[i]].name, ix->t[ix->by_name[i - 1]].name))
            BAD("%s: tensor '%s' appears twice", path, ix->t[ix->by_name[i]].name);
    ix->metadata = wf__json_get(d, "metadata");
    if (!ix->metadata || ix->metadata->type != WF_JSON_OBJECT) BAD("%s: \"metadata\" is not an object", path);
    *out = ix;
    return 0;
fail:
    wf__sharded_index_free(ix);
    return rc;
}
