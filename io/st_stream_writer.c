/* io/st_stream_writer.c: safetensors written tensor by tensor as the bytes arrive. See
 * io/st_stream_writer.h; the header layout is io/safetensors.c's (wf__st_layout_*). */
#include "weft_config.h"
#include "io/st_stream_writer.h"

#include <string.h>

#include "io/atomic_file.h"
#include "tensor/tensor_impl.h"

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SS_BIG_ENDIAN 1
#else
#define SS_BIG_ENDIAN 0
#endif

typedef struct ss_tensor {
    char *name;              /* owned */
    wf_dtype dtype;
    uint64_t written;        /* bytes given so far */
    uint32_t crc;            /* of those bytes */
} ss_tensor;

struct wf__st_stream {
    const char *op;          /* a literal */
    wf__atomic_file af;
    wf__st_layout L;
    ss_tensor *t;
    int n;
};

static void ss_free(wf__st_stream *s) {
    for (int i = 0; i < s->n; i++) wf__free(s->t[i].name, strlen(s->t[i].name) + 1);
    wf__free(s->t, (s->n ? (size_t)s->n : 1) * sizeof *s->t);
    wf__st_layout_free(&s->L);
    wf__free(s, sizeof *s);
}

static bool reserved_key(const char *k) {
    return !strncmp(k, "crc32/", 6) || !strcmp(k, "weft/safetensors") || !strcmp(k, "weft/header_crc32");
}

static int check_args(const char *path, const wf__st_tensor_desc *t, int n, const char *const *mkeys,
                      const char *const *mvals, int nm, const char *op) {
    if (!path || (n && !t) || (nm && (!mkeys || !mvals)) || n < 0 || nm < 0)
        return wf__error(n < 0 || nm < 0 ? WF_EINVAL : WF_ENULL, "%s: NULL path, tensor list or metadata", op);
    if (!*path) return wf__error(WF_EINVAL, "%s: empty path", op);
    for (int i = 0; i < n; i++) {
        const wf__st_tensor_desc *d = &t[i];
        if (!d->name || !*d->name || !strcmp(d->name, "__metadata__") || !wf__utf8_valid(d->name, strlen(d->name)))
            return wf__error(WF_EINVAL, "%s: %s: tensor %d has an empty, reserved or non-UTF-8 name", op, path, i);
        if (!wf__st_dtype_name(d->dtype))
            return wf__error(WF_EDTYPE, "%s: %s: tensor '%s': dtype %s cannot be stored", op, path, d->name,
                             wf_dtype_name(d->dtype));
        if (d->ndim < 0 || d->ndim > WF_MAX_DIMS || (d->ndim && !d->shape))
            return wf__error(WF_EINVAL, "%s: %s: tensor '%s': %d dims", op, path, d->name, d->ndim);
        for (int j = 0; j < d->ndim; j++)
            if (d->shape[j] < 0)
                return wf__error(WF_EINVAL, "%s: %s: tensor '%s': negative dim %lld", op, path, d->name,
                                 (long long)d->shape[j]);
    }
    /* duplicates: checkpoints hold at most thousands of tensors, a quadratic scan is cheap */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return wf__error(WF_EINVAL, "%s: %s: tensor '%s' appears twice", op, path, t[i].name);
    for (int i = 0; i < nm; i++) {
        if (!mkeys[i] || !mvals[i]) return wf__error(WF_ENULL, "%s: %s: NULL metadata key or value", op, path);
        if (reserved_key(mkeys[i]))
            return wf__error(WF_EINVAL, "%s: %s: metadata key '%s' is reserved for weft's integrity checks", op, path,
                             mkeys[i]);
        if (!wf__utf8_valid(mkeys[i], strlen(mkeys[i])) || !wf__utf8_valid(mvals[i], strlen(mvals[i])))
            return wf__error(WF_EINVAL, "%s: %s: metadata key or value is not valid UTF-8", op, path);
        for (int j = 0; j < i; j++)
            if (!strcmp(mkeys[i], mkeys[j]))
                return wf__error(WF_EINVAL, "%s: %s: metadata key '%s' appears twice", op, path, mkeys[i]);
    }
    return 0;
}

wf__st_stream *wf__st_stream_open(const char *path, const wf__st_tensor_desc *t, int n, const char *const *mkeys,
                                  const char *const *mvals, int nm, const char *op) {
    if (check_args(path, t, n, mkeys, mvals, nm, op)) return NULL;
    wf__st_stream *s = wf__calloc(1, sizeof *s);
    ss_tensor *v = wf__calloc(n ? (size_t)n : 1, sizeof *v);
    if (!s || !v) {
        wf__free(s, sizeof *s);
        wf__free(v, (n ? (size_t)n : 1) * sizeof *v);
        wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path);
        return NULL;
    }
    s->op = op;
    s->t = v;
    for (int i = 0; i < n; i++, s->n++) {
        if (!(v[i].name = wf__strdup(t[i].name))) {
            wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path);
            ss_free(s);
            return NULL;
        }
        v[i].dtype = t[i].dtype;
    }
    if (wf__st_layout_build(&s->L, t, n, mkeys, mvals, nm, op, path)) {
        ss_free(s);
        return NULL;
    }
    if (wf__atomic_open(&s->af, op, path)) {
        ss_free(s);
        return NULL;
    }
    return s;
}

static uint64_t tensor_bytes(const wf__st_stream *s, int i) {
    int k = s->L.slot[i];
    return s->L.offs[k + 1] - s->L.offs[k];
}

int wf__st_stream_write(wf__st_stream *s, int i, const void *p, size_t nbytes) {
    if (!s) return wf__error(WF_ENULL, "wf__st_stream_write: NULL stream");
    if (i < 0 || i >= s->n) return wf__error(WF_EINDEX, "%s: %s: tensor index %d out of range [0, %d)", s->op,
                                             s->af.path, i, s->n);
    ss_tensor *e = &s->t[i];
    uint64_t total = tensor_bytes(s, i);
    if (nbytes > total - e->written)
        return wf__error(WF_EINVAL, "%s: %s: tensor '%s': %zu more bytes after %llu of its %llu", s->op, s->af.path,
                         e->name, nbytes, (unsigned long long)e->written, (unsigned long long)total);
    if (!nbytes) return 0;
    if (!p) return wf__error(WF_ENULL, "%s: NULL data for tensor '%s'", s->op, e->name);
    uint64_t off = 8 + s->L.hdr.len + s->L.offs[s->L.slot[i]] + e->written;
    int rc = wf__atomic_pwrite(&s->af, p, nbytes, off);
    if (rc) return rc;
    e->crc = wf_crc32(e->crc, p, nbytes);
    e->written += nbytes;
    return 0;
}

int wf__st_stream_write_tensor(wf__st_stream *s, int i, wf_tensor *t) {
    if (!s || !t) return wf__error(WF_ENULL, "wf__st_stream_write_tensor: NULL %s", s ? "tensor" : "stream");
    if (i < 0 || i >= s->n) return wf__st_stream_write(s, i, NULL, 0);
    if (t->dtype != s->t[i].dtype)
        return wf__error(WF_EDTYPE, "%s: tensor '%s' is %s, given %s", s->op, s->t[i].name,
                         wf_dtype_name(s->t[i].dtype), wf_dtype_name(t->dtype));
    size_t nbytes = (size_t)wf_numel(t) * wf_dtype_size(t->dtype);
    if (!nbytes) return 0;
    if (t->device.type == WF_DEV_CPU && wf_is_contiguous(t) && !SS_BIG_ENDIAN)
        return wf__st_stream_write(s, i, wf__host_ptr(t), nbytes);
    void *buf = wf__malloc(nbytes);
    if (!buf) return wf__error(WF_ENOMEM, "%s: out of memory copying tensor '%s' (%zu bytes)", s->op, s->t[i].name, nbytes);
    int rc = wf_to_array(t, buf, t->dtype);
    if (!rc && SS_BIG_ENDIAN) {
        size_t es = wf_dtype_size(t->dtype);
        unsigned char *b = buf;
        for (size_t k = 0; k < nbytes; k += es)
            for (size_t j = 0; j < es / 2; j++) {
                unsigned char c = b[k + j];
                b[k + j] = b[k + es - 1 - j];
                b[k + es - 1 - j] = c;
            }
    }
    if (!rc) rc = wf__st_stream_write(s, i, buf, nbytes);
    wf__free(buf, nbytes);
    return rc;
}

int wf__st_stream_commit(wf__st_stream *s) {
    if (!s) return wf__error(WF_ENULL, "wf__st_stream_commit: NULL stream");
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++)
        if (s->t[i].written != tensor_bytes(s, i))
            rc = wf__error(WF_EINVAL, "%s: %s: tensor '%s' got %llu of its %llu bytes", s->op, s->af.path, s->t[i].name,
                           (unsigned long long)s->t[i].written, (unsigned long long)tensor_bytes(s, i));
    if (rc) {
        wf__st_stream_abort(s);
        return rc;
    }
    for (int i = 0; i < s->n; i++) wf__st_layout_set_crc(&s->L, s->L.slot[i], s->t[i].crc);
    wf__st_layout_seal(&s->L);
    if ((rc = wf__atomic_pwrite(&s->af, s->L.lenb, 8, 0)) ||
        (rc = wf__atomic_pwrite(&s->af, s->L.hdr.buf, s->L.hdr.len, 8))) {
        wf__st_stream_abort(s);
        return rc;
    }
    rc = wf__atomic_commit(&s->af);
    ss_free(s);
    return rc;
}

void wf__st_stream_abort(wf__st_stream *s) {
    if (!s) return;
    wf__atomic_abort(&s->af);
    ss_free(s);
}
