/* io/idx.c: IDX (MNIST) reader, plain or gzip-compressed. See weft/io.h. */
#include "weft_config.h"
#include "weft/io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifdef WEFT_HAVE_ZLIB
#include <zlib.h>
#endif

#include "tensor/tensor_impl.h"

#define IDX_GZ_CAP ((uint64_t)2 << 30)   /* most data accepted from a stream of unknown size */
#define IDX_CHUNK ((size_t)1 << 20)

/* A progress line on stderr, shown only once a load has taken more than a second (a slow
 * disk or a large file): quick loads stay silent. */
typedef struct progress {
    const char *path;
    uint64_t total;
    double start, last;
    bool shown;
} progress;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_start(progress *p, const char *path, uint64_t total) {
    *p = (progress){ .path = path, .total = total, .start = mono_now() };
    p->last = p->start;
}

static void progress_update(progress *p, uint64_t done) {
    double t = mono_now();
    if (t - p->start < 1.0 || (p->shown && t - p->last < 0.25 && done < p->total)) return;
    fprintf(stderr, "\rloading %s: %.1f of %.1f MB (%.0f%%)", p->path, (double)done / 1e6,
            (double)p->total / 1e6, p->total ? 100.0 * (double)done / (double)p->total : 100.0);
    fflush(stderr);
    p->shown = true;
    p->last = t;
}

static void progress_end(progress *p) {
    if (p->shown) fprintf(stderr, "\n");
    p->shown = false;
}

typedef struct src {
    const char *path;
    FILE *fp;
#ifdef WEFT_HAVE_ZLIB
    gzFile gz;
#endif
    bool is_gz;
    unsigned char pre[2];   /* bytes already read while sniffing the format (plain files) */
    size_t npre;
} src;

/* Read up to n bytes; returns the count (short only at the end of data) or -1 with an
 * error recorded. */
static int64_t src_read(src *s, void *buf, size_t n) {
    if (!n) return 0;
#ifdef WEFT_HAVE_ZLIB
    if (s->is_gz) {
        size_t got = 0;
        while (got < n) {
            unsigned k = (unsigned)(n - got > IDX_CHUNK ? IDX_CHUNK : n - got);
            int r = gzread(s->gz, (char *)buf + got, k);
            if (r < 0) {
                int zerr;
                const char *msg = gzerror(s->gz, &zerr);
                if (zerr == Z_ERRNO)
                    wf__error(WF_EIO, "wf_idx_load: %s: %s", s->path, strerror(errno));
                else
                    wf__error(WF_ECORRUPT, "wf_idx_load: %s: damaged gzip stream (%s)", s->path,
                              msg ? msg : "unknown zlib error");
                return -1;
            }
            if (r == 0) {
                int zerr;
                const char *msg = gzerror(s->gz, &zerr);
                if (zerr != Z_OK && zerr != Z_STREAM_END) {
                    wf__error(WF_ECORRUPT, "wf_idx_load: %s: damaged gzip stream (%s)", s->path,
                              msg ? msg : "unknown zlib error");
                    return -1;
                }
                break;
            }
            got += (size_t)r;
        }
        return (int64_t)got;
    }
#endif
    size_t got = 0;
    while (s->npre && got < n) {
        ((unsigned char *)buf)[got++] = s->pre[0];
        s->pre[0] = s->pre[1];
        s->npre--;
    }
    got += fread((char *)buf + got, 1, n - got, s->fp);
    if (got < n && ferror(s->fp)) {
        wf__error(WF_EIO, "wf_idx_load: %s: read failed: %s", s->path, strerror(errno));
        return -1;
    }
    return (int64_t)got;
}

static void src_close(src *s) {
#ifdef WEFT_HAVE_ZLIB
    if (s->gz) gzclose(s->gz);
    s->gz = NULL;
#endif
    if (s->fp) fclose(s->fp);
    s->fp = NULL;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Convert n big-endian elements of IDX type code from raw into dst (the output dtype). */
static void convert(void *dst, const unsigned char *raw, size_t n, int type) {
    switch (type) {
    case 0x08: memcpy(dst, raw, n); break;
    case 0x09: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int8_t)raw[i];
        break;
    }
    case 0x0B: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)(uint16_t)((unsigned)raw[2 * i] << 8 | raw[2 * i + 1]);
        break;
    }
    case 0x0C: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int32_t)be32(raw + 4 * i);
        break;
    }
    case 0x0D: {
        float *d = dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = be32(raw + 4 * i);
            memcpy(&d[i], &u, 4);
        }
        break;
    }
    case 0x0E: {
        double *d = dst;
        for (size_t i = 0; i < n; i++) {
            uint64_t u = (uint64_t)be32(raw + 8 * i) << 32 | be32(raw + 8 * i + 4);
            memcpy(&d[i], &u, 8);
        }
        break;
    }
    }
}

static const char *type_name(int type) {
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return NULL;
    }
}

/* file_size: the exact data size of a plain file, -1 for a stream. gz_limit: the most bytes
 * the stream can inflate to (0 when unknown); a claim within it is allocated up front. */
static wf_tensor *load(src *s, int64_t file_size, uint64_t gz_limit) {
    const char *path = s->path;
    unsigned char hdr[4 + 4 * WF_MAX_DIMS];
    int64_t got = src_read(s, hdr, 4);
    if (got < 0) return NULL;
    if (got < 4) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: truncated header (%lld of 4 bytes)", path, (long long)got);
        return NULL;
    }
    if (hdr[0] || hdr[1]) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: bad magic 0x%02x%02x%02x%02x (expected 0x0000 <type> <ndim>)",
                  path, hdr[0], hdr[1], hdr[2], hdr[3]);
        return NULL;
    }
    int type = hdr[2], ndim = hdr[3];
    size_t esize;
    wf_dtype dt;
    switch (type) {
    case 0x08: esize = 1; dt = WF_U8; break;
    case 0x09: esize = 1; dt = WF_I32; break;
    case 0x0B: esize = 2; dt = WF_I32; break;
    case 0x0C: esize = 4; dt = WF_I32; break;
    case 0x0D: esize = 4; dt = WF_F32; break;
    case 0x0E: esize = 8; dt = WF_F64; break;
    default:
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: unknown data type code 0x%02x", path, type);
        return NULL;
    }
    if (ndim < 1 || ndim > WF_MAX_DIMS) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: %d dimensions (must be 1 to %d)", path, ndim, WF_MAX_DIMS);
        return NULL;
    }
    got = src_read(s, hdr + 4, 4 * (size_t)ndim);
    if (got < 0) return NULL;
    if (got < 4 * ndim) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: truncated header (%lld of %d dimension bytes)",
                  path, (long long)got, 4 * ndim);
        return NULL;
    }
    int64_t shape[WF_MAX_DIMS];
    /* span: the product of the non-zero dims. It must fit even when a zero dim makes the
     * tensor empty, since the strides of [0, 2^32-1, 2^32-1, ...] would still overflow. */
    uint64_t span = 1;
    bool overflow = false, zero = false;
    for (int i = 0; i < ndim; i++) {
        shape[i] = be32(hdr + 4 + 4 * i);
        if (!shape[i]) zero = true;
        else if (span > (UINT64_MAX >> 8) / (uint64_t)shape[i]) overflow = true;
        else span *= (uint64_t)shape[i];
    }
    uint64_t numel = zero ? 0 : span;
    char sbuf[160];
    wf__shape_text(ndim, shape, sbuf, sizeof sbuf);
    if (overflow || span > (uint64_t)INT64_MAX / esize) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: dims %s overflow", path, sbuf);
        return NULL;
    }
    uint64_t nbytes = numel * esize;
    uint64_t hdr_bytes = 4 + 4 * (uint64_t)ndim;
    if (file_size >= 0) {
        uint64_t avail = (uint64_t)file_size > hdr_bytes ? (uint64_t)file_size - hdr_bytes : 0;
        if (nbytes > avail) {
            wf__error(WF_ECORRUPT, "wf_idx_load: %s: dims %s of %s need %llu data bytes, the file has %llu (truncated or bad dims)",
                      path, sbuf, type_name(type), (unsigned long long)nbytes, (unsigned long long)avail);
            return NULL;
        }
        if (nbytes < avail) {
            wf__error(WF_ECORRUPT, "wf_idx_load: %s: %llu trailing bytes after the %llu data bytes of dims %s",
                      path, (unsigned long long)(avail - nbytes), (unsigned long long)nbytes, sbuf);
            return NULL;
        }
    } else if (nbytes > IDX_GZ_CAP) {
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: dims %s of %s claim %llu bytes, more than the %llu accepted from a compressed stream",
                  path, sbuf, type_name(type), (unsigned long long)nbytes, (unsigned long long)IDX_GZ_CAP);
        return NULL;
    }
    if (nbytes > SIZE_MAX) {
        wf__error(WF_ENOMEM, "wf_idx_load: %s: %llu bytes do not fit in memory", path, (unsigned long long)nbytes);
        return NULL;
    }

    wf_tensor *t = NULL;
    size_t osize = wf_dtype_size(dt);
    if (file_size >= 0 || nbytes <= gz_limit) {
        /* The size is verified against the file, or is one the compressed file can hold:
         * allocate once and inflate straight into the tensor (bytes) or through a chunk
         * (wider types), so loading never holds two copies of the data. */
        t = wf_empty_on(shape, ndim, dt, WF_CPU);
        if (!t) return NULL;
        if (!numel && file_size >= 0) return t;   /* a stream still gets its trailing-bytes check */
        char *out = numel ? wf__host_ptr(t) : NULL;   /* an empty tensor has no storage data (NULL + 0 is UB) */
        bool direct = esize == 1 && osize == 1;
        size_t chunk = IDX_CHUNK;
        unsigned char *raw = direct ? NULL : wf__malloc(chunk);
        if (!direct && !raw) { wf_tensor_free(t); wf__error(WF_ENOMEM, "wf_idx_load: %s: out of memory", path); return NULL; }
        progress pg;
        progress_start(&pg, path, nbytes);
        uint64_t done = 0;
        while (done < nbytes) {
            size_t k = (size_t)(nbytes - done < chunk ? nbytes - done : chunk);
            int64_t r = src_read(s, direct ? (unsigned char *)out + done : raw, k);
            if (r < 0 || (size_t)r < k) {
                if (r >= 0 && file_size >= 0)
                    wf__error(WF_ECORRUPT, "wf_idx_load: %s: truncated data (file shrank while reading)", path);
                else if (r >= 0)
                    wf__error(WF_ECORRUPT, "wf_idx_load: %s: truncated data: dims %s of %s need %llu bytes, the stream has %llu",
                              path, sbuf, type_name(type), (unsigned long long)nbytes, (unsigned long long)(done + (uint64_t)r));
                progress_end(&pg);
                wf__free(raw, chunk);
                wf_tensor_free(t);
                return NULL;
            }
            if (!direct) convert(out + (done / esize) * osize, raw, k / esize, type);
            done += k;
            progress_update(&pg, done);
        }
        progress_end(&pg);
        wf__free(raw, chunk);
        if (file_size < 0) {   /* a stream: nothing may follow the data */
            unsigned char extra;
            int64_t r = src_read(s, &extra, 1);
            if (r != 0) {
                if (r > 0)
                    wf__error(WF_ECORRUPT, "wf_idx_load: %s: trailing bytes after the %llu data bytes of dims %s",
                              path, (unsigned long long)nbytes, sbuf);
                wf_tensor_free(t);
                return NULL;
            }
        }
        return t;
    }

    /* unknown size (a pipe, or a gzip file too small to hold what its header claims): grow a
     * buffer as data actually arrives, never beyond nbytes, so memory follows the real data
     * and the error can say how much there was */
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    while (len < nbytes) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : IDX_CHUNK;
            if (nc > nbytes) nc = (size_t)nbytes;
            unsigned char *nb = wf__realloc(buf, cap, nc);
            if (!nb) {
                wf__free(buf, cap);
                wf__error(WF_ENOMEM, "wf_idx_load: %s: out of memory", path);
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        int64_t r = src_read(s, buf + len, cap - len);
        if (r < 0) { wf__free(buf, cap); return NULL; }
        len += (size_t)r;
        if (len < cap) break;   /* end of data */
    }
    if (len < nbytes) {
        wf__free(buf, cap);
        wf__error(WF_ECORRUPT, "wf_idx_load: %s: truncated data: dims %s of %s need %llu bytes, the stream has %llu",
                  path, sbuf, type_name(type), (unsigned long long)nbytes, (unsigned long long)len);
        return NULL;
    }
    unsigned char extra;
    int64_t r = src_read(s, &extra, 1);
    if (r != 0) {
        wf__free(buf, cap);
        if (r > 0)
            wf__error(WF_ECORRUPT, "wf_idx_load: %s: trailing bytes after the %llu data bytes of dims %s",
                      path, (unsigned long long)nbytes, sbuf);
        return NULL;
    }
    t = wf_empty_on(shape, ndim, dt, WF_CPU);
    if (t && numel) convert(wf__host_ptr(t), buf, (size_t)numel, type);
    wf__free(buf, cap);
    return t;
}

wf_tensor *wf_idx_load(const char *path) {
    if (!path) { wf__error(WF_ENULL, "wf_idx_load: NULL path"); return NULL; }
    src s = { .path = path };
    s.fp = fopen(path, "rb");
    if (!s.fp) { wf__error(WF_EIO, "wf_idx_load: %s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(s.fp), &st)) {
        wf__error(WF_EIO, "wf_idx_load: %s: %s", path, strerror(errno));
        src_close(&s);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        wf__error(WF_EIO, "wf_idx_load: %s: is a directory", path);
        src_close(&s);
        return NULL;
    }
    unsigned char m[2];
    size_t k = fread(m, 1, 2, s.fp);
    if (k == 2 && m[0] == 0x1f && m[1] == 0x8b) {
#ifdef WEFT_HAVE_ZLIB
        src_close(&s);
        s.gz = gzopen(path, "rb");
        if (!s.gz) { wf__error(WF_EIO, "wf_idx_load: %s: %s", path, strerror(errno)); return NULL; }
        s.is_gz = true;
        gzbuffer(s.gz, 1 << 17);
        /* deflate expands at most about 1032:1, so a gzip file of st_size bytes cannot hold
         * more than this; a header claiming more is damaged and takes the measuring path */
        uint64_t limit = (uint64_t)st.st_size * 1040u + 4096u;
        wf_tensor *t = load(&s, -1, limit);
        src_close(&s);
        return t;
#else
        src_close(&s);
        wf__error(WF_ENOTSUP, "wf_idx_load: %s: gzip-compressed, and weft was built without zlib", path);
        return NULL;
#endif
    }
    memcpy(s.pre, m, k);
    s.npre = k;
    /* regular files: sizes are checked against st_size before allocating; others (pipes)
     * are read incrementally like gzip streams */
    int64_t size = S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
    wf_tensor *t = load(&s, size, 0);
    src_close(&s);
    return t;
}
