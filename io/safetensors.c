/* io/safetensors.c: safetensors writer (atomic through io/atomic_file.c; CRC-32 per tensor
 * and over the header in __metadata__) and a validating reader. See weft/io.h for the
 * format and the contract; io/safetensors_impl.h for the pieces the streaming writer and
 * the sharded checkpoints share (the header layout, ranged reads). */
#include "weft_config.h"
#include "weft/io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/json.h"
#include "io/safetensors_impl.h"
#include "tensor/tensor_impl.h"
#include "weft/autograd.h"

#define ST_MAX_HEADER ((uint64_t)100000000)   /* 100 MB, as the reference implementation */
#define ST_MAX_DEPTH 8                       /* {"t": {"shape": [..]}} needs 3 */
#define ST_CRC_PREFIX "crc32/"
/* weft's integrity entries (see weft/io.h). The header checksum is found by its exact bytes
 * before the JSON is parsed: a quote inside a JSON string is always escaped, so the token
 * below can only be a key followed by its value, never text inside a string. */
#define ST_MARK_KEY "weft/safetensors"
#define ST_MARK_VALUE "2"
#define ST_HCRC_KEY "weft/header_crc32"
#define ST_HCRC_TOKEN "\"" ST_HCRC_KEY "\":\""

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ST_BIG_ENDIAN 1
#else
#define ST_BIG_ENDIAN 0
#endif

/* ---------------------------------------------------------------- dtypes */

typedef struct st_dtype {
    const char *name;
    size_t size;
    wf_dtype loads_as;   /* WF_DTYPE_DEFAULT: no weft equivalent */
} st_dtype;

static const st_dtype st_dtypes[] = {
    { "F64", 8, WF_F64 }, { "F32", 4, WF_F32 }, { "F16", 2, WF_F16 }, { "BF16", 2, WF_BF16 },
    { "I64", 8, WF_I64 }, { "I32", 4, WF_I32 }, { "U8", 1, WF_U8 }, { "BOOL", 1, WF_BOOL },
    { "I16", 2, WF_I32 }, { "I8", 1, WF_I32 }, { "U16", 2, WF_I32 }, { "U32", 4, WF_I64 },
    { "U64", 8, WF_DTYPE_DEFAULT }, { "F8_E4M3", 1, WF_DTYPE_DEFAULT },
    { "F8_E5M2", 1, WF_DTYPE_DEFAULT }, { "F8_E8M0", 1, WF_DTYPE_DEFAULT },
    { "C64", 8, WF_DTYPE_DEFAULT },
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static int st_dtype_find(const char *s, size_t n) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strlen(st_dtypes[i].name) == n && !memcmp(st_dtypes[i].name, s, n)) return i;
    return -1;
}

static const char *st_name_of(wf_dtype dt) {
    switch (dt) {
    case WF_F64: return "F64";
    case WF_F32: return "F32";
    case WF_F16: return "F16";
    case WF_BF16: return "BF16";
    case WF_I64: return "I64";
    case WF_I32: return "I32";
    case WF_U8: return "U8";
    case WF_BOOL: return "BOOL";
    default: return NULL;
    }
}

static void swap_bytes(void *p, size_t nelem, size_t esize) {
    unsigned char *b = p;
    if (esize < 2) return;
    for (size_t i = 0; i < nelem; i++, b += esize)
        for (size_t j = 0; j < esize / 2; j++) {
            unsigned char t = b[j];
            b[j] = b[esize - 1 - j];
            b[esize - 1 - j] = t;
        }
}

/* ---------------------------------------------------------------- I/O helpers */

/* pread until n bytes or end of file; returns bytes read or -1 (errno set). */
static int64_t pread_all(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        size_t k = n - got;
        if (k > ((size_t)1 << 30)) k = (size_t)1 << 30;
        ssize_t r = pread(fd, (char *)buf + got, k, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

/* ---------------------------------------------------------------- writer */

typedef struct w_entry { char *name; wf_tensor *t; } w_entry;
typedef struct w_meta { char *key; char *value; } w_meta;

struct wf_st_writer {
    w_entry *e;
    int n, cap;
    w_meta *m;
    int nm, capm;
};

wf_st_writer *wf_st_writer_new(void) {
    wf_st_writer *w = wf__calloc(1, sizeof *w);
    if (!w) wf__error(WF_ENOMEM, "wf_st_writer_new: out of memory");
    return w;
}

void wf_st_writer_free(wf_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        wf__free(w->e[i].name, strlen(w->e[i].name) + 1);
        wf_tensor_free(w->e[i].t);
    }
    for (int i = 0; i < w->nm; i++) {
        wf__free(w->m[i].key, strlen(w->m[i].key) + 1);
        wf__free(w->m[i].value, strlen(w->m[i].value) + 1);
    }
    wf__free(w->e, (size_t)w->cap * sizeof(w_entry));
    wf__free(w->m, (size_t)w->capm * sizeof(w_meta));
    wf__free(w, sizeof *w);
}

static bool grow(void **arr, int *cap, int n, size_t esize) {
    if (n < *cap) return true;
    if (*cap > INT_MAX / 2) return false;
    int nc = *cap ? *cap * 2 : 8;
    void *na = wf__realloc(*arr, (size_t)*cap * esize, (size_t)nc * esize);
    if (!na) return false;
    *arr = na;
    *cap = nc;
    return true;
}

int wf_st_writer_add(wf_st_writer *w, const char *name, wf_tensor *t) {
    if (!w || !name || !t) {
        if (wf__any_null("wf_st_writer_add", 3, w, name, t)) return wf_error() ? wf_error() : WF_ENULL;
    }
    size_t nl = strlen(name);
    if (!nl) return wf__error(WF_EINVAL, "wf_st_writer_add: empty tensor name");
    if (!wf__utf8_valid(name, nl)) return wf__error(WF_EINVAL, "wf_st_writer_add: tensor name is not valid UTF-8");
    if (!strcmp(name, "__metadata__"))
        return wf__error(WF_EINVAL, "wf_st_writer_add: '__metadata__' is reserved and cannot name a tensor");
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return wf__error(WF_EINVAL, "wf_st_writer_add: tensor '%s' was already added", name);
    if (!st_name_of(t->dtype))
        return wf__error(WF_EDTYPE, "wf_st_writer_add: tensor '%s': dtype %s cannot be stored",
                         name, wf_dtype_name(t->dtype));
    if (t->device.type == WF_DEV_META)
        return wf__error(WF_ENOTSUP, "wf_st_writer_add: tensor '%s' is on the meta device (no data)", name);
    if (!grow((void **)&w->e, &w->cap, w->n, sizeof(w_entry)))
        return wf__error(WF_ENOMEM, "wf_st_writer_add: out of memory");
    char *nm = wf__strdup(name);
    if (!nm) return wf__error(WF_ENOMEM, "wf_st_writer_add: out of memory");
    w->e[w->n].name = nm;
    w->e[w->n].t = wf_tensor_retain(t);
    w->n++;
    return 0;
}

int wf_st_writer_set_metadata(wf_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) {
        if (wf__any_null("wf_st_writer_set_metadata", 3, w, key, value)) return wf_error() ? wf_error() : WF_ENULL;
    }
    if (!strncmp(key, ST_CRC_PREFIX, strlen(ST_CRC_PREFIX)))
        return wf__error(WF_EINVAL, "wf_st_writer_set_metadata: key '%s': the prefix '" ST_CRC_PREFIX
                         "' is reserved for checksums", key);
    if (!strcmp(key, ST_MARK_KEY) || !strcmp(key, ST_HCRC_KEY))
        return wf__error(WF_EINVAL, "wf_st_writer_set_metadata: key '%s' is reserved for weft's integrity checks", key);
    if (!wf__utf8_valid(key, strlen(key)) || !wf__utf8_valid(value, strlen(value)))
        return wf__error(WF_EINVAL, "wf_st_writer_set_metadata: key or value is not valid UTF-8");
    char *v = wf__strdup(value);
    if (!v) return wf__error(WF_ENOMEM, "wf_st_writer_set_metadata: out of memory");
    for (int i = 0; i < w->nm; i++)
        if (!strcmp(w->m[i].key, key)) {
            wf__free(w->m[i].value, strlen(w->m[i].value) + 1);
            w->m[i].value = v;
            return 0;
        }
    char *k = wf__strdup(key);
    if (!k || !grow((void **)&w->m, &w->capm, w->nm, sizeof(w_meta))) {
        wf__free(k, k ? strlen(k) + 1 : 0);
        wf__free(v, strlen(v) + 1);
        return wf__error(WF_ENOMEM, "wf_st_writer_set_metadata: out of memory");
    }
    w->m[w->nm].key = k;
    w->m[w->nm].value = v;
    w->nm++;
    return 0;
}

typedef struct w_order { int idx; size_t esize; } w_order;

static int order_cmp(const void *a, const void *b) {
    const w_order *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;   /* largest first */
    return (x->idx > y->idx) - (x->idx < y->idx);                    /* stable */
}

static void put_hex8(char *d, uint32_t v) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 7; i >= 0; i--, v >>= 4) d[i] = hex[v & 15];
}

const char *wf__st_dtype_name(wf_dtype dt) { return st_name_of(dt); }

wf_dtype wf__st_dtype_parse(const char *name) {
    for (int d = 1; d < WF_DTYPE_COUNT; d++)
        if (st_name_of((wf_dtype)d) && name && !strcmp(st_name_of((wf_dtype)d), name)) return (wf_dtype)d;
    return WF_DTYPE_DEFAULT;
}

/* The header's checksum: CRC-32 of the 8 length bytes and the header, with the 8 digits of
 * the checksum itself read as "00000000" (pos is their offset in the header). */
static uint32_t header_crc(const unsigned char lenb[8], const char *hdr, size_t len, size_t pos) {
    uint32_t c = wf_crc32(0, lenb, 8);
    c = wf_crc32(c, hdr, pos);
    c = wf_crc32(c, "00000000", 8);
    return wf_crc32(c, hdr + pos + 8, len - pos - 8);
}

void wf__st_layout_free(wf__st_layout *L) {
    size_t nn = L->n ? (size_t)L->n : 1;
    wf__sb_free(&L->hdr);
    wf__free(L->order, nn * sizeof *L->order);
    wf__free(L->slot, nn * sizeof *L->slot);
    wf__free(L->offs, (nn + 1) * sizeof *L->offs);
    wf__free(L->crc_pos, nn * sizeof *L->crc_pos);
    memset(L, 0, sizeof *L);
}

int wf__st_layout_build(wf__st_layout *L, const wf__st_tensor_desc *t, int n, const char *const *mkeys,
                        const char *const *mvals, int nm, const char *op, const char *path) {
    memset(L, 0, sizeof *L);
    wf__sb_init(&L->hdr);
    L->n = n;
    size_t nn = n ? (size_t)n : 1;
    w_order *ord = wf__malloc(nn * sizeof *ord);
    L->order = wf__malloc(nn * sizeof *L->order);
    L->slot = wf__malloc(nn * sizeof *L->slot);
    L->offs = wf__malloc((nn + 1) * sizeof *L->offs);
    L->crc_pos = wf__malloc(nn * sizeof *L->crc_pos);
    int rc = 0;
    if (!ord || !L->order || !L->slot || !L->offs || !L->crc_pos) {
        rc = wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        ord[i].idx = i;
        ord[i].esize = wf_dtype_size(t[i].dtype);
    }
    if (n) qsort(ord, (size_t)n, sizeof *ord, order_cmp);
    L->offs[0] = 0;
    for (int k = 0; k < n; k++) {
        const wf__st_tensor_desc *d = &t[ord[k].idx];
        L->order[k] = ord[k].idx;
        L->slot[ord[k].idx] = k;
        uint64_t nb = ord[k].esize;
        for (int j = 0; j < d->ndim; j++) {
            uint64_t dim = (uint64_t)d->shape[j];
            if (dim && nb > UINT64_MAX / dim) { rc = wf__error(WF_EINVAL, "%s: %s: data too large", op, path); goto done; }
            nb *= dim;
        }
        if (nb > UINT64_MAX - L->offs[k]) { rc = wf__error(WF_EINVAL, "%s: %s: data too large", op, path); goto done; }
        L->offs[k + 1] = L->offs[k] + nb;
    }

    /* metadata first (user entries, one crc placeholder per tensor, the weft mark, the
     * header's own checksum last), then the tensors, tiling the data section */
    wf_sb *sb = &L->hdr;
    wf__sb_puts(sb, "{\"__metadata__\":{");
    for (int i = 0; i < nm; i++) {
        wf__sb_json_string(sb, mkeys[i], strlen(mkeys[i]));
        wf__sb_putc(sb, ':');
        wf__sb_json_string(sb, mvals[i], strlen(mvals[i]));
        wf__sb_putc(sb, ',');
    }
    for (int k = 0; k < n; k++) {
        const char *name = t[L->order[k]].name;
        size_t nl = strlen(name);
        char *key = wf__malloc(nl + sizeof ST_CRC_PREFIX);
        if (!key) { rc = wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path); goto done; }
        memcpy(key, ST_CRC_PREFIX, sizeof ST_CRC_PREFIX - 1);
        memcpy(key + sizeof ST_CRC_PREFIX - 1, name, nl + 1);
        wf__sb_json_string(sb, key, nl + sizeof ST_CRC_PREFIX - 1);
        wf__free(key, nl + sizeof ST_CRC_PREFIX);
        wf__sb_puts(sb, ":\"");
        L->crc_pos[k] = sb->len;
        wf__sb_puts(sb, "00000000\",");
    }
    wf__sb_puts(sb, "\"" ST_MARK_KEY "\":\"" ST_MARK_VALUE "\"," ST_HCRC_TOKEN);
    L->hcrc_pos = sb->len;
    wf__sb_puts(sb, "00000000\"}");
    for (int k = 0; k < n; k++) {
        const wf__st_tensor_desc *d = &t[L->order[k]];
        wf__sb_putc(sb, ',');
        wf__sb_json_string(sb, d->name, strlen(d->name));
        wf__sb_printf(sb, ":{\"dtype\":\"%s\",\"shape\":[", st_name_of(d->dtype));
        for (int j = 0; j < d->ndim; j++) {
            if (j) wf__sb_putc(sb, ',');
            wf__sb_json_int(sb, d->shape[j]);
        }
        wf__sb_printf(sb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)L->offs[k],
                      (unsigned long long)L->offs[k + 1]);
    }
    wf__sb_putc(sb, '}');
    while (!wf__sb_failed(sb) && (8 + sb->len) % 8) wf__sb_putc(sb, ' ');   /* a failed buffer stops growing */
    if (wf__sb_failed(sb)) { rc = wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path); goto done; }
    uint64_t hl = sb->len;
    for (int i = 0; i < 8; i++) L->lenb[i] = (unsigned char)(hl >> (8 * i));
done:
    wf__free(ord, nn * sizeof *ord);
    if (rc) wf__st_layout_free(L);
    return rc;
}

void wf__st_layout_set_crc(wf__st_layout *L, int k, uint32_t crc) { put_hex8(L->hdr.buf + L->crc_pos[k], crc); }

void wf__st_layout_seal(wf__st_layout *L) {
    put_hex8(L->hdr.buf + L->hcrc_pos, header_crc(L->lenb, L->hdr.buf, L->hdr.len, L->hcrc_pos));
}

/* Write the tensor's bytes (logical row-major order, little-endian) at off and CRC them. */
static int write_tensor(wf__atomic_file *af, wf_tensor *t, size_t nbytes, uint64_t off, uint32_t *crc,
                        const char *path, const char *name) {
    *crc = 0;
    if (!nbytes) return 0;
    const void *src;
    void *buf = NULL;
    if (t->device.type == WF_DEV_CPU && wf_is_contiguous(t) && !ST_BIG_ENDIAN) {
        src = wf__host_ptr(t);
    } else {
        buf = wf__malloc(nbytes);
        if (!buf)
            return wf__error(WF_ENOMEM, "wf_st_writer_save: %s: out of memory copying tensor '%s' (%zu bytes)",
                             path, name, nbytes);
        int rc = wf_to_array(t, buf, t->dtype);
        if (rc) {
            wf__free(buf, nbytes);
            return rc;
        }
        if (ST_BIG_ENDIAN) swap_bytes(buf, nbytes / wf_dtype_size(t->dtype), wf_dtype_size(t->dtype));
        src = buf;
    }
    *crc = wf_crc32(0, src, nbytes);
    int rc = wf__atomic_pwrite(af, src, nbytes, off);
    if (buf) wf__free(buf, nbytes);
    return rc;
}

int wf_st_writer_save(wf_st_writer *w, const char *path) {
    if (!w || !path) {
        if (wf__any_null("wf_st_writer_save", 2, w, path)) return wf_error() ? wf_error() : WF_ENULL;
    }
    if (!*path) return wf__error(WF_EINVAL, "wf_st_writer_save: empty path");
    int rc = 0;
    bool opened = false, laid = false;
    wf__atomic_file af;
    wf__st_layout L;
    size_t nn = w->n ? (size_t)w->n : 1, nmm = w->nm ? (size_t)w->nm : 1;
    wf__st_tensor_desc *d = wf__malloc(nn * sizeof *d);
    const char **mk = wf__malloc(nmm * sizeof *mk), **mv = wf__malloc(nmm * sizeof *mv);
    if (!d || !mk || !mv) { rc = wf__error(WF_ENOMEM, "wf_st_writer_save: %s: out of memory", path); goto done; }
    for (int i = 0; i < w->n; i++) {
        wf_tensor *t = w->e[i].t;
        d[i] = (wf__st_tensor_desc){ w->e[i].name, t->dtype, t->ndim, t->shape };
    }
    for (int i = 0; i < w->nm; i++) {
        mk[i] = w->m[i].key;
        mv[i] = w->m[i].value;
    }
    if ((rc = wf__st_layout_build(&L, d, w->n, mk, mv, w->nm, "wf_st_writer_save", path))) goto done;
    laid = true;
    if ((rc = wf__atomic_open(&af, "wf_st_writer_save", path))) goto done;
    opened = true;
    uint64_t hl = L.hdr.len;
    /* the data first, then the header with every checksum filled in: a file cut short by a
     * crash is never the target (the rename comes last), so the order is only about
     * writing the header once */
    for (int k = 0; k < w->n; k++) {
        const w_entry *e = &w->e[L.order[k]];
        uint32_t crc;
        rc = write_tensor(&af, e->t, (size_t)(L.offs[k + 1] - L.offs[k]), 8 + hl + L.offs[k], &crc, path, e->name);
        if (rc) goto done;
        wf__st_layout_set_crc(&L, k, crc);
    }
    wf__st_layout_seal(&L);
    if ((rc = wf__atomic_pwrite(&af, L.lenb, 8, 0)) || (rc = wf__atomic_pwrite(&af, L.hdr.buf, L.hdr.len, 8))) goto done;
    opened = false;
    rc = wf__atomic_commit(&af);

done:
    if (opened) wf__atomic_abort(&af);
    if (laid) wf__st_layout_free(&L);
    wf__free(d, nn * sizeof *d);
    wf__free(mk, nmm * sizeof *mk);
    wf__free(mv, nmm * sizeof *mv);
    return rc;
}

/* ---------------------------------------------------------------- reader */

typedef struct r_entry {
    const char *name;       /* borrowed from the header DOM */
    int st;                 /* index into st_dtypes */
    int ndim;               /* may exceed WF_MAX_DIMS (then shape holds the first 8) */
    int64_t shape[WF_MAX_DIMS];
    uint64_t begin, end;    /* relative to the data section */
    bool has_crc;
    uint32_t crc;
} r_entry;

struct wf_st_file {
    char *path;
    int fd;                  /* -1 for a file in memory */
    const unsigned char *mem;   /* wf__st_open_memory's bytes (borrowed), or NULL */
    uint64_t mem_size;
    uint64_t data_start, data_size;
    wf_json *hdr;
    r_entry *e;
    int n;
    int *by_name;            /* entry indices sorted by name */
    const wf_json *meta;     /* the __metadata__ object or NULL */
    bool sealed;             /* weft-written: header checksum verified, every tensor checked */
};

/* n bytes at off, from the file or from memory: the one place the reader gets bytes, so a
 * file in memory takes every other step a file on disk does. Returns bytes read (fewer at
 * the end) or -1 (errno set). */
static int64_t read_at(const wf_st_file *f, void *buf, size_t n, uint64_t off) {
    if (!f->mem) return pread_all(f->fd, buf, n, off);
    if (off >= f->mem_size) return 0;
    size_t k = f->mem_size - off < n ? (size_t)(f->mem_size - off) : n;
    memcpy(buf, f->mem + off, k);
    return (int64_t)k;
}

void wf_st_close(wf_st_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    wf__json_free(f->hdr);
    wf__free(f->e, (size_t)f->n * sizeof *f->e);
    wf__free(f->by_name, (size_t)f->n * sizeof *f->by_name);
    if (f->path) wf__free(f->path, strlen(f->path) + 1);
    wf__free(f, sizeof *f);
}

typedef int (*idx_cmp)(const void *ctx, int a, int b);

/* Merge sort of indices (stable, O(n log n), comparator with a context). */
static void sort_idx(int *v, int *tmp, int n, const void *ctx, idx_cmp cmp) {
    if (n < 2) return;
    int h = n / 2;
    sort_idx(v, tmp, h, ctx, cmp);
    sort_idx(v + h, tmp, n - h, ctx, cmp);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(ctx, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, (size_t)n * sizeof *v);
}

static int by_name_cmp(const void *ctx, int a, int b) {
    const r_entry *e = ctx;
    return strcmp(e[a].name, e[b].name);
}

static int by_offset_cmp(const void *ctx, int a, int b) {
    const r_entry *x = (const r_entry *)ctx + a, *y = (const r_entry *)ctx + b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_key_cmp(const void *ctx, int a, int b) {
    const wf_json *m = ctx;
    return strcmp(m->items[a].key, m->items[b].key);
}

static int parse_hex8(const char *s, size_t n, uint32_t *out) {
    if (n != 8) return -1;
    uint32_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

#define CORRUPT(...) do { rc = wf__error(WF_ECORRUPT, __VA_ARGS__); goto fail; } while (0)

static int validate_entry(wf_st_file *f, const wf_json *v, r_entry *e) {
    int rc = 0;
    const char *path = f->path;
    const char *name = v->key;
    e->name = name;
    if (strlen(name) != v->key_len) CORRUPT("wf_st_open: %s: a tensor name contains a NUL character", path);
    if (v->type != WF_JSON_OBJECT) CORRUPT("wf_st_open: %s: tensor '%s': entry is not an object", path, name);
    const wf_json *dt = wf__json_get(v, "dtype");
    if (!dt || dt->type != WF_JSON_STRING) CORRUPT("wf_st_open: %s: tensor '%s': missing or non-string \"dtype\"", path, name);
    e->st = st_dtype_find(dt->str, dt->str_len);
    if (e->st < 0) CORRUPT("wf_st_open: %s: tensor '%s': unknown dtype '%.32s'", path, name, dt->str);
    const wf_json *sh = wf__json_get(v, "shape");
    if (!sh || sh->type != WF_JSON_ARRAY) CORRUPT("wf_st_open: %s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (sh->n > INT_MAX) CORRUPT("wf_st_open: %s: tensor '%s': too many dims", path, name);
    e->ndim = (int)sh->n;
    uint64_t numel = 1;
    bool zero = false, overflow = false;
    for (size_t i = 0; i < sh->n; i++) {
        int64_t d;
        if (!wf__json_int(&sh->items[i], &d) || d < 0)
            CORRUPT("wf_st_open: %s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        if (i < WF_MAX_DIMS) e->shape[i] = d;
        if (d == 0) zero = true;
        else if (numel > UINT64_MAX / 16 / (uint64_t)d) overflow = true;
        else numel *= (uint64_t)d;
    }
    /* numel is the product of the non-zero dims: it must fit even for an empty tensor, whose
     * strides still multiply the other dims */
    if (overflow || numel > (uint64_t)INT64_MAX / 16)
        CORRUPT("wf_st_open: %s: tensor '%s': shape overflows", path, name);
    if (zero) numel = 0;
    const wf_json *off = wf__json_get(v, "data_offsets");
    int64_t b, en;
    if (!off || off->type != WF_JSON_ARRAY || off->n != 2 || !wf__json_int(&off->items[0], &b) ||
        !wf__json_int(&off->items[1], &en) || b < 0 || en < 0)
        CORRUPT("wf_st_open: %s: tensor '%s': \"data_offsets\" must be two non-negative integers", path, name);
    if (b > en) CORRUPT("wf_st_open: %s: tensor '%s': data_offsets [%lld, %lld] end before they begin",
                        path, name, (long long)b, (long long)en);
    if ((uint64_t)en > f->data_size)
        CORRUPT("wf_st_open: %s: tensor '%s': data_offsets [%lld, %lld] beyond the %llu-byte data section",
                path, name, (long long)b, (long long)en, (unsigned long long)f->data_size);
    uint64_t want = numel * st_dtypes[e->st].size;
    if (want != (uint64_t)(en - b)) {
        char sbuf[160];
        wf__shape_text(e->ndim < WF_MAX_DIMS ? e->ndim : WF_MAX_DIMS, e->shape, sbuf, sizeof sbuf);
        CORRUPT("wf_st_open: %s: tensor '%s': shape %s%s of %s needs %llu bytes, data_offsets span %llu",
                path, name, sbuf, e->ndim > WF_MAX_DIMS ? "..." : "", st_dtypes[e->st].name,
                (unsigned long long)want, (unsigned long long)(en - b));
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    return 0;
fail:
    return rc;
}

static int by_begin_cmp(const void *a, const void *b) {
    const r_entry *x = *(const r_entry *const *)a, *y = *(const r_entry *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* A weft-written file (either of its two integrity entries present: one flipped bit cannot
 * remove both) must carry all its checks: the header's checksum, verified; the mark; a
 * checksum for every tensor and none for a tensor that does not exist; and tensors that
 * tile the data section, so no byte of the file escapes every check. Files without either
 * entry (other writers, and weft before these entries) are checked as far as they say. */
static int check_sealed(wf_st_file *f, bool header_verified) {
    int rc = 0;
    const char *path = f->path;
    const wf_json *mark = f->meta ? wf__json_get(f->meta, ST_MARK_KEY) : NULL;
    const wf_json *hc = f->meta ? wf__json_get(f->meta, ST_HCRC_KEY) : NULL;
    if (!mark && !hc && !header_verified) return 0;
    if (!hc || !header_verified)
        CORRUPT("wf_st_open: %s: the header: its checksum (" ST_HCRC_KEY ") is missing from a weft-written file", path);
    if (!mark)
        CORRUPT("wf_st_open: %s: the header: the mark " ST_MARK_KEY " is missing beside its checksum", path);
    if (strcmp(mark->str, ST_MARK_VALUE))
        return wf__error(WF_ENOTSUP, "wf_st_open: %s: the header: integrity format %s=\"%.16s\" is newer than this "
                         "weft's (\"" ST_MARK_VALUE "\")", path, ST_MARK_KEY, mark->str);
    for (int i = 0; i < f->n; i++)
        if (!f->e[i].has_crc)
            CORRUPT("wf_st_open: %s: tensor '%s' has no checksum (" ST_CRC_PREFIX "%s) in a weft-written file", path,
                    f->e[i].name, f->e[i].name);
    for (size_t i = 0; i < f->meta->n; i++) {
        const char *k = f->meta->items[i].key;
        if (!strncmp(k, ST_CRC_PREFIX, strlen(ST_CRC_PREFIX)) && wf_st_find(f, k + strlen(ST_CRC_PREFIX)) < 0)
            CORRUPT("wf_st_open: %s: the header: checksum '%s' names no tensor of the file", path, k);
    }
    /* tiling: overlaps were refused already, so sorted non-empty ranges must abut */
    const r_entry **v = wf__malloc((f->n ? (size_t)f->n : 1) * sizeof *v);
    if (!v) return wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path);
    int m = 0;
    for (int i = 0; i < f->n; i++) if (f->e[i].end > f->e[i].begin) v[m++] = &f->e[i];
    qsort(v, (size_t)m, sizeof *v, by_begin_cmp);
    uint64_t at = 0;
    for (int i = 0; i < m && v[i]->begin == at; i++) at = v[i]->end;
    wf__free(v, (f->n ? (size_t)f->n : 1) * sizeof *v);
    if (at != f->data_size)
        CORRUPT("wf_st_open: %s: the header: the data section (%llu bytes) has bytes from offset %llu that "
                "belong to no tensor (a weft-written file has none)", path, (unsigned long long)f->data_size,
                (unsigned long long)at);
    f->sealed = true;
    return 0;
fail:
    return rc;
}

/* wf_st_open's body: a file by path (mem NULL), or mem_size bytes at mem named path. */
static wf_st_file *st_open(const char *path, const unsigned char *mem, size_t mem_size) {
    if (!path) { wf__error(WF_ENULL, "wf_st_open: NULL path"); return NULL; }
    int rc = 0;
    char *hbuf = NULL;
    uint64_t hlen = 0;
    int *tmp = NULL;
    wf_st_file *f = wf__calloc(1, sizeof *f);
    if (!f) { wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path); return NULL; }
    f->fd = -1;
    f->path = wf__strdup(path);
    if (!f->path) { wf__free(f, sizeof *f); wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path); return NULL; }
    uint64_t fsize = mem_size;
    f->mem = mem;
    f->mem_size = mem_size;
    if (!mem) {
        f->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (f->fd < 0) { rc = wf__error(WF_EIO, "wf_st_open: %s: %s", path, strerror(errno)); goto fail; }
        struct stat st;
        if (fstat(f->fd, &st)) { rc = wf__error(WF_EIO, "wf_st_open: %s: %s", path, strerror(errno)); goto fail; }
        if (!S_ISREG(st.st_mode)) { rc = wf__error(WF_EIO, "wf_st_open: %s: not a regular file", path); goto fail; }
        fsize = (uint64_t)st.st_size;
    }
    if (fsize < 8) CORRUPT("wf_st_open: %s: file is %llu bytes, shorter than the 8-byte header length", path,
                           (unsigned long long)fsize);
    unsigned char lb[8];
    int64_t r = read_at(f, lb, 8, 0);
    if (r < 0) { rc = wf__error(WF_EIO, "wf_st_open: %s: %s", path, strerror(errno)); goto fail; }
    if (r < 8) CORRUPT("wf_st_open: %s: file shrank while reading", path);
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)lb[i] << (8 * i);
    if (hlen > fsize - 8)
        CORRUPT("wf_st_open: %s: header length %llu exceeds file size %llu", path, (unsigned long long)hlen,
                (unsigned long long)fsize);
    if (hlen > ST_MAX_HEADER)
        CORRUPT("wf_st_open: %s: header length %llu exceeds the %llu-byte limit", path, (unsigned long long)hlen,
                (unsigned long long)ST_MAX_HEADER);
    if (hlen < 2) CORRUPT("wf_st_open: %s: header length %llu is too small for a JSON object", path, (unsigned long long)hlen);
    f->data_start = 8 + hlen;
    f->data_size = fsize - 8 - hlen;
    hbuf = wf__malloc((size_t)hlen);
    if (!hbuf) { rc = wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory for a %llu-byte header", path, (unsigned long long)hlen); goto fail; }
    r = read_at(f, hbuf, (size_t)hlen, 8);
    if (r < 0) { rc = wf__error(WF_EIO, "wf_st_open: %s: %s", path, strerror(errno)); goto fail; }
    if ((uint64_t)r < hlen) CORRUPT("wf_st_open: %s: file shrank while reading", path);
    /* the header's checksum, before the JSON is even parsed: a damaged header is reported
     * as such, not as whatever the damage happens to look like */
    bool header_verified = false;
    {
        const char *tok = ST_HCRC_TOKEN;
        size_t tl = strlen(tok);
        const char *hit = NULL;
        int hits = 0;
        for (const char *p = hbuf, *end = hbuf + hlen; (p = memmem(p, (size_t)(end - p), tok, tl)); p += tl) {
            if (!hit) hit = p;
            hits++;
        }
        if (hits > 1) CORRUPT("wf_st_open: %s: the header: its checksum " ST_HCRC_KEY " appears %d times", path, hits);
        if (hit) {
            size_t pos = (size_t)(hit - hbuf) + tl;
            uint32_t stored;
            /* lowercase only, as written: the digits are outside their own checksum, and an
             * 'a' read as 'A' would let a flipped bit through */
            bool lower = pos + 8 <= hlen;
            for (size_t i = 0; lower && i < 8; i++) lower = !(hbuf[pos + i] >= 'A' && hbuf[pos + i] <= 'F');
            if (!lower || pos + 9 > hlen || hbuf[pos + 8] != '"' || parse_hex8(hbuf + pos, 8, &stored))
                CORRUPT("wf_st_open: %s: the header: its checksum " ST_HCRC_KEY " is not 8 hex digits", path);
            uint32_t c = header_crc(lb, hbuf, (size_t)hlen, pos);
            if (c != stored)
                CORRUPT("wf_st_open: %s: the header: CRC32 mismatch (stored %08x, computed %08x): the header or "
                        "its length is damaged", path, (unsigned)stored, (unsigned)c);
            header_verified = true;
        }
    }
    char jerr[160];
    int jr = wf__json_parse(hbuf, (size_t)hlen, ST_MAX_DEPTH, &f->hdr, jerr, sizeof jerr);
    wf__free(hbuf, (size_t)hlen);
    hbuf = NULL;
    if (jr == WF_ENOMEM) { rc = wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory parsing the header", path); goto fail; }
    if (jr) CORRUPT("wf_st_open: %s: header is not valid JSON: %s", path, jerr);
    if (f->hdr->type != WF_JSON_OBJECT) CORRUPT("wf_st_open: %s: header is not a JSON object", path);

    size_t nent = 0;
    for (size_t i = 0; i < f->hdr->n; i++) {
        const wf_json *it = &f->hdr->items[i];
        if (!strcmp(it->key, "__metadata__") && it->key_len == strlen("__metadata__")) {
            if (f->meta) CORRUPT("wf_st_open: %s: two __metadata__ entries", path);
            if (it->type != WF_JSON_OBJECT) CORRUPT("wf_st_open: %s: __metadata__ is not an object", path);
            f->meta = it;
        } else {
            nent++;
        }
    }
    if (nent > (size_t)INT_MAX / 2) CORRUPT("wf_st_open: %s: too many tensors", path);
    f->e = wf__calloc(nent ? nent : 1, sizeof *f->e);
    f->by_name = wf__malloc((nent ? nent : 1) * sizeof *f->by_name);
    tmp = wf__malloc((nent ? nent : 1) * sizeof *tmp);
    if (!f->e || !f->by_name || !tmp) { rc = wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path); goto fail; }
    for (size_t i = 0; i < f->hdr->n; i++) {
        const wf_json *it = &f->hdr->items[i];
        if (it == f->meta) continue;
        rc = validate_entry(f, it, &f->e[f->n]);
        if (rc) goto fail;
        f->by_name[f->n] = f->n;
        f->n++;
    }
    /* duplicate names */
    sort_idx(f->by_name, tmp, f->n, f->e, by_name_cmp);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->e[f->by_name[i]].name, f->e[f->by_name[i - 1]].name))
            CORRUPT("wf_st_open: %s: tensor '%s' appears twice", path, f->e[f->by_name[i]].name);
    /* overlaps: order by begin; every non-empty range starts at or after the previous end */
    int *by_off = wf__malloc((f->n ? (size_t)f->n : 1) * sizeof *by_off);
    if (!by_off) { rc = wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path); goto fail; }
    for (int i = 0; i < f->n; i++) by_off[i] = i;
    sort_idx(by_off, tmp, f->n, f->e, by_offset_cmp);
    const r_entry *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        const r_entry *e = &f->e[by_off[i]];
        if (e->begin == e->end) continue;
        if (prev && e->begin < prev->end) {
            rc = wf__error(WF_ECORRUPT, "wf_st_open: %s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                           path, prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                           e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
            wf__free(by_off, (size_t)f->n * sizeof *by_off);
            goto fail;
        }
        prev = e;
    }
    wf__free(by_off, (f->n ? (size_t)f->n : 1) * sizeof *by_off);
    /* metadata: string values, unique keys, well-formed checksums */
    if (f->meta) {
        const wf_json *m = f->meta;
        if (m->n > (size_t)INT_MAX / 2) CORRUPT("wf_st_open: %s: too many __metadata__ entries", path);
        int mn = (int)m->n;
        int *ki = wf__malloc((mn ? (size_t)mn : 1) * sizeof *ki), *kt = wf__malloc((mn ? (size_t)mn : 1) * sizeof *kt);
        if (!ki || !kt) {
            wf__free(ki, 0);
            wf__free(kt, 0);
            rc = wf__error(WF_ENOMEM, "wf_st_open: %s: out of memory", path);
            goto fail;
        }
        for (int i = 0; i < mn; i++) ki[i] = i;
        sort_idx(ki, kt, mn, m, by_key_cmp);
        int dup = -1;
        for (int i = 1; i < mn && dup < 0; i++)
            if (!strcmp(m->items[ki[i]].key, m->items[ki[i - 1]].key)) dup = ki[i];
        wf__free(ki, 0);
        wf__free(kt, 0);
        if (dup >= 0) CORRUPT("wf_st_open: %s: __metadata__ key '%s' appears twice", path, m->items[dup].key);
        for (size_t i = 0; i < m->n; i++) {
            const wf_json *it = &m->items[i];
            if (strlen(it->key) != it->key_len) CORRUPT("wf_st_open: %s: a __metadata__ key contains a NUL character", path);
            if (it->type != WF_JSON_STRING)
                CORRUPT("wf_st_open: %s: __metadata__ value for '%s' is not a string", path, it->key);
            if (!strncmp(it->key, ST_CRC_PREFIX, strlen(ST_CRC_PREFIX))) {
                uint32_t c;
                if (parse_hex8(it->str, it->str_len, &c))
                    CORRUPT("wf_st_open: %s: checksum '%s' is '%.16s', not 8 hex digits", path, it->key, it->str);
                int k = wf_st_find(f, it->key + strlen(ST_CRC_PREFIX));
                if (k >= 0) {
                    f->e[k].has_crc = true;
                    f->e[k].crc = c;
                }
            }
        }
    }
    if ((rc = check_sealed(f, header_verified))) goto fail;
    wf__free(tmp, (nent ? nent : 1) * sizeof *tmp);
    return f;
fail:
    (void)rc;
    if (hbuf) wf__free(hbuf, (size_t)hlen);
    if (tmp) wf__free(tmp, 1);
    /* wf_st_close frees e/by_name sized by n; sizes are informational for wf__free */
    wf_st_close(f);
    return NULL;
}

wf_st_file *wf_st_open(const char *path) { return st_open(path, NULL, 0); }

wf_st_file *wf__st_open_memory(const void *data, size_t size, const char *name) {
    if (!data || !name) {
        wf__error(WF_ENULL, "wf__st_open_memory: NULL %s", data ? "name" : "data");
        return NULL;
    }
    return st_open(name, data, size);
}

int wf_st_count(const wf_st_file *f) { return f ? f->n : 0; }

const char *wf_st_name(const wf_st_file *f, int i) {
    if (!f || i < 0 || i >= f->n) return NULL;
    return f->e[i].name;
}

int wf_st_find(const wf_st_file *f, const char *name) {
    if (!f || !name) return wf__any_null("wf_st_find", 2, f, name), WF_ENULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->e[f->by_name[mid]].name, name);
        if (!c) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return WF_ENOTFOUND;
}

int wf_st_info(const wf_st_file *f, int i, wf_dtype *dtype, int *ndim, int64_t *shape) {
    if (!f) return wf__error(WF_ENULL, "wf_st_info: NULL file");
    if (i < 0 || i >= f->n) return wf__error(WF_EINDEX, "wf_st_info: %s: index %d out of range [0, %d)", f->path, i, f->n);
    const r_entry *e = &f->e[i];
    if (st_dtypes[e->st].loads_as == WF_DTYPE_DEFAULT)
        return wf__error(WF_ENOTSUP, "wf_st_info: %s: tensor '%s': dtype %s has no weft equivalent", f->path,
                         e->name, st_dtypes[e->st].name);
    if (e->ndim > WF_MAX_DIMS)
        return wf__error(WF_ENOTSUP, "wf_st_info: %s: tensor '%s' has %d dims (weft supports %d)", f->path,
                         e->name, e->ndim, WF_MAX_DIMS);
    if (dtype) *dtype = st_dtypes[e->st].loads_as;
    if (ndim) *ndim = e->ndim;
    if (shape) memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return 0;
}

static void widen(void *dst, const unsigned char *src, size_t n, const char *st_name) {
    if (!strcmp(st_name, "I8")) {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int8_t)src[i];
    } else if (!strcmp(st_name, "I16")) {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)(uint16_t)(src[2 * i] | (unsigned)src[2 * i + 1] << 8);
    } else if (!strcmp(st_name, "U16")) {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int32_t)(src[2 * i] | (unsigned)src[2 * i + 1] << 8);
    } else if (!strcmp(st_name, "U32")) {
        int64_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = (int64_t)((uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                             (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24);
    }
}

wf_tensor *wf_st_load(wf_st_file *f, const char *name) {
    if (wf__any_null("wf_st_load", 2, f, name)) return NULL;
    int i = wf_st_find(f, name);
    if (i < 0) { wf__error(WF_ENOTFOUND, "wf_st_load: %s: no tensor named '%s'", f->path, name); return NULL; }
    wf_dtype dt;
    int ndim;
    int64_t shape[WF_MAX_DIMS];
    if (wf_st_info(f, i, &dt, &ndim, shape)) return NULL;
    const r_entry *e = &f->e[i];
    const st_dtype *sd = &st_dtypes[e->st];
    size_t nbytes = (size_t)(e->end - e->begin);
    if ((uint64_t)nbytes != e->end - e->begin) {
        wf__error(WF_ENOMEM, "wf_st_load: %s: tensor '%s' does not fit in memory", f->path, name);
        return NULL;
    }
    wf_tensor *t = wf_empty_on(shape, ndim, dt, WF_CPU);
    if (!t) return NULL;
    if (!nbytes) return t;
    size_t numel = nbytes / sd->size;
    bool direct = wf_dtype_size(dt) == sd->size;
    unsigned char *buf = direct ? (unsigned char *)wf__host_ptr(t) : wf__malloc(nbytes);
    if (!buf) {
        wf_tensor_free(t);
        wf__error(WF_ENOMEM, "wf_st_load: %s: out of memory reading tensor '%s'", f->path, name);
        return NULL;
    }
    int64_t r = read_at(f, buf, nbytes, f->data_start + e->begin);
    if (r < 0 || (size_t)r < nbytes) {
        if (r < 0) wf__error(WF_EIO, "wf_st_load: %s: reading tensor '%s': %s", f->path, name, strerror(errno));
        else wf__error(WF_EIO, "wf_st_load: %s: reading tensor '%s': unexpected end of file (the file shrank)", f->path, name);
        goto fail;
    }
    if (e->has_crc) {
        uint32_t c = wf_crc32(0, buf, nbytes);
        if (c != e->crc) {
            wf__error(WF_ECORRUPT, "wf_st_load: %s: tensor '%s': CRC32 mismatch (stored %08x, computed %08x)",
                      f->path, name, (unsigned)e->crc, (unsigned)c);
            goto fail;
        }
    }
    if (direct) {
        if (ST_BIG_ENDIAN) swap_bytes(buf, numel, sd->size);
        if (dt == WF_BOOL)
            for (size_t k = 0; k < numel; k++) buf[k] = buf[k] != 0;
    } else {
        widen(wf__host_ptr(t), buf, numel, sd->name);
        wf__free(buf, nbytes);
    }
    return t;
fail:
    if (!direct) wf__free(buf, nbytes);
    wf_tensor_free(t);
    return NULL;
}

int wf_st_load_into(wf_st_file *f, const char *name, wf_tensor *dst) {
    if (wf__any_null("wf_st_load_into", 3, f, name, dst)) return wf_error() ? wf_error() : WF_ENULL;
    int i = wf_st_find(f, name);
    if (i < 0) return wf__error(WF_ENOTFOUND, "wf_st_load_into: %s: no tensor named '%s'", f->path, name);
    const r_entry *e = &f->e[i];
    bool same = e->ndim == dst->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == dst->shape[d];
    if (!same) {
        char a[160], b[160];
        wf__shape_text(e->ndim < WF_MAX_DIMS ? e->ndim : WF_MAX_DIMS, e->shape, a, sizeof a);
        return wf__error(WF_ESHAPE, "wf_st_load_into: %s: tensor '%s' has shape %s%s, destination %s", f->path, name,
                         a, e->ndim > WF_MAX_DIMS ? "..." : "", wf_shape_str(dst, b, sizeof b));
    }
    wf_tensor *t = wf_st_load(f, name);
    if (!t) return wf_error();
    bool prev = wf_set_grad_enabled(false);
    int rc = wf_copy_(dst, t);
    wf_set_grad_enabled(prev);
    wf_tensor_free(t);
    return rc;
}

bool wf_st_is_sealed(const wf_st_file *f) { return f && f->sealed; }

int wf_st_verify(wf_st_file *f) {
    if (!f) return wf__error(WF_ENULL, "wf_st_verify: NULL file");
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = NULL;
    int rc = 0;
    for (int i = 0; i < f->n && !rc; i++) {
        const r_entry *e = &f->e[i];
        if (!e->has_crc) continue;
        if (!buf && !(buf = wf__malloc(CHUNK))) return wf__error(WF_ENOMEM, "wf_st_verify: %s: out of memory", f->path);
        uint32_t c = 0;
        for (uint64_t at = e->begin; at < e->end && !rc;) {
            size_t k = e->end - at < CHUNK ? (size_t)(e->end - at) : CHUNK;
            int64_t r = read_at(f, buf, k, f->data_start + at);
            if (r < 0) rc = wf__error(WF_EIO, "wf_st_verify: %s: reading tensor '%s': %s", f->path, e->name, strerror(errno));
            else if ((size_t)r < k)
                rc = wf__error(WF_EIO, "wf_st_verify: %s: reading tensor '%s': unexpected end of file (the file shrank)",
                               f->path, e->name);
            c = wf_crc32(c, buf, k);
            at += k;
        }
        if (!rc && c != e->crc)
            rc = wf__error(WF_ECORRUPT, "wf_st_verify: %s: tensor '%s': CRC32 mismatch (stored %08x, computed %08x)",
                           f->path, e->name, (unsigned)e->crc, (unsigned)c);
    }
    if (buf) wf__free(buf, CHUNK);
    return rc;
}

const char *wf_st_metadata(const wf_st_file *f, const char *key) {
    if (!f || !key || !f->meta) return NULL;
    const wf_json *v = wf__json_get(f->meta, key);
    return v ? v->str : NULL;
}

int wf_st_metadata_count(const wf_st_file *f) { return f && f->meta ? (int)f->meta->n : 0; }

const char *wf_st_metadata_key(const wf_st_file *f, int i) {
    if (!f || !f->meta || i < 0 || (size_t)i >= f->meta->n) return NULL;
    return f->meta->items[i].key;
}

/* ---------------------------------------------------------------- shared with io/ and fabric/ */

const char *wf__st_path(const wf_st_file *f) { return f ? f->path : NULL; }

bool wf__st_is_native(const wf_st_file *f, int i) {
    if (!f || i < 0 || i >= f->n) return false;
    const st_dtype *sd = &st_dtypes[f->e[i].st];
    return sd->loads_as != WF_DTYPE_DEFAULT && wf_dtype_size(sd->loads_as) == sd->size && f->e[i].ndim <= WF_MAX_DIMS;
}

int wf__st_read_range(wf_st_file *f, int i, uint64_t begin, uint64_t end, void *dst, bool verify, const char *op) {
    if (!f) return wf__error(WF_ENULL, "%s: NULL file", op);
    if (i < 0 || i >= f->n) return wf__error(WF_EINDEX, "%s: %s: tensor index %d out of range [0, %d)", op, f->path, i, f->n);
    const r_entry *e = &f->e[i];
    const st_dtype *sd = &st_dtypes[e->st];
    uint64_t size = e->end - e->begin;
    if (begin > end || end > size || begin % sd->size || end % sd->size)
        return wf__error(WF_EINVAL, "%s: %s: tensor '%s': byte range [%llu, %llu) is not whole elements of its %llu bytes",
                         op, f->path, e->name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)size);
    if ((uint64_t)(size_t)(end - begin) != end - begin)
        return wf__error(WF_ENOMEM, "%s: %s: tensor '%s' does not fit in memory", op, f->path, e->name);
    unsigned char *out = dst;
    int rc = 0;
    if (!verify || !e->has_crc) {
        if (end > begin && out) {
            int64_t r = read_at(f, out, (size_t)(end - begin), f->data_start + e->begin + begin);
            if (r < 0) return wf__error(WF_EIO, "%s: %s: reading tensor '%s': %s", op, f->path, e->name, strerror(errno));
            if ((uint64_t)r < end - begin)
                return wf__error(WF_EIO, "%s: %s: reading tensor '%s': unexpected end of file (the file shrank)", op,
                                 f->path, e->name);
        }
    } else {
        /* the whole tensor passes under the CRC, the asked-for bytes are copied on the way */
        enum { CHUNK = 1 << 20 };
        unsigned char *buf = wf__malloc(CHUNK);
        if (!buf) return wf__error(WF_ENOMEM, "%s: %s: out of memory", op, f->path);
        uint32_t c = 0;
        for (uint64_t at = 0; at < size && !rc;) {
            size_t k = size - at < CHUNK ? (size_t)(size - at) : CHUNK;
            int64_t r = read_at(f, buf, k, f->data_start + e->begin + at);
            if (r < 0) rc = wf__error(WF_EIO, "%s: %s: reading tensor '%s': %s", op, f->path, e->name, strerror(errno));
            else if ((size_t)r < k)
                rc = wf__error(WF_EIO, "%s: %s: reading tensor '%s': unexpected end of file (the file shrank)", op,
                               f->path, e->name);
            if (rc) break;
            c = wf_crc32(c, buf, k);
            uint64_t lo = at > begin ? at : begin, hi = at + k < end ? at + k : end;
            if (out && lo < hi) memcpy(out + (lo - begin), buf + (lo - at), (size_t)(hi - lo));
            at += k;
        }
        wf__free(buf, CHUNK);
        if (!rc && c != e->crc)
            rc = wf__error(WF_ECORRUPT, "%s: %s: tensor '%s': CRC32 mismatch (stored %08x, computed %08x)", op, f->path,
                           e->name, (unsigned)e->crc, (unsigned)c);
        if (rc) return rc;
    }
    if (out) {
        size_t nel = (size_t)(end - begin) / sd->size;
        if (ST_BIG_ENDIAN) swap_bytes(out, nel, sd->size);
        if (!strcmp(sd->name, "BOOL"))
            for (size_t k = 0; k < nel; k++) out[k] = out[k] != 0;
    }
    return 0;
}
