/* io/dataset.c: tensor and subset datasets, samplers, and the Fashion-MNIST dataset. */
#include "../tensor/tensor_impl.h"
#include "weft/data.h"
#include "weft/io.h"

#include <string.h>

/* ---------------------------------------------------------------- tensor dataset */

typedef struct { int n; wf_tensor **t; } tds;

static int64_t tds_len(void *ud) { tds *d = ud; return d->t[0]->shape[0]; }

static int tds_get(void *ud, const int64_t *idx, int64_t n, wf_tensor **out) {
    tds *d = ud;
    int rc = 0;
    wf_scope_begin();
    wf_tensor *it = wf_from_data(idx, &n, 1, WF_I64);
    for (int f = 0; f < d->n; f++) {
        out[f] = it ? wf_index_select(d->t[f], 0, it) : NULL;
        if (!out[f]) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
    }
    for (int f = 0; f < d->n && !rc; f++) wf_keep(out[f]);
    wf_scope_end();
    if (rc) for (int f = 0; f < d->n; f++) out[f] = NULL;
    return rc;
}

static void tds_free(void *ud) {
    tds *d = ud;
    for (int f = 0; f < d->n; f++) wf_tensor_free(d->t[f]);
    wf__free(d->t, 0);
    wf__free(d, sizeof *d);
}

int wf_tensor_dataset(wf_tensor *const *tensors, int n, wf_dataset *out) {
    if (!tensors || !out || n <= 0) return wf__error(WF_ENULL, "wf_tensor_dataset: no tensors given");
    for (int i = 0; i < n; i++) {
        if (!tensors[i]) return wf__error(WF_ENULL, "wf_tensor_dataset: tensor %d is NULL", i);
        if (tensors[i]->ndim == 0 || tensors[i]->shape[0] != tensors[0]->shape[0]) {
            char b1[96], b2[96];
            return wf__error(WF_ESHAPE, "wf_tensor_dataset: size mismatch between tensors (%s and %s): "
                             "all need the same first dimension", wf_shape_str(tensors[0], b1, sizeof b1),
                             wf_shape_str(tensors[i], b2, sizeof b2));
        }
    }
    tds *d = wf__calloc(1, sizeof *d);
    if (d) d->t = wf__calloc((size_t)n, sizeof *d->t);
    if (!d || !d->t) { wf__free(d, 0); return wf__error(WF_ENOMEM, "wf_tensor_dataset: out of memory"); }
    d->n = n;
    for (int i = 0; i < n; i++) {
        d->t[i] = wf_tensor_retain(tensors[i]);
    }
    *out = (wf_dataset){ tds_len, n, tds_get, tds_free, d };
    return 0;
}

/* ---------------------------------------------------------------- subset dataset */

typedef struct { wf_dataset base; int64_t *idx; int64_t n; } sub;

static int64_t sub_len(void *ud) { return ((sub *)ud)->n; }
static int sub_get(void *ud, const int64_t *idx, int64_t n, wf_tensor **out) {
    sub *s = ud;
    int64_t *map = wf__malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!map) return wf__error(WF_ENOMEM, "subset dataset: out of memory");
    for (int64_t i = 0; i < n; i++) map[i] = s->idx[idx[i]];
    int rc = s->base.get_batch(s->base.ud, map, n, out);
    wf__free(map, 0);
    return rc;
}
static void sub_free(void *ud) {
    sub *s = ud;
    wf__free(s->idx, 0);
    wf__free(s, sizeof *s);
}

int wf_subset_dataset(const wf_dataset *base, const int64_t *indices, int64_t n, wf_dataset *out) {
    if (!base || !out || (n && !indices)) return wf__error(WF_ENULL, "wf_subset_dataset: NULL argument");
    if (n < 0) return wf__error(WF_EINVAL, "wf_subset_dataset: negative count %lld", (long long)n);
    int64_t len = base->len(base->ud);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= len)
            return wf__error(WF_EINDEX, "wf_subset_dataset: index %lld out of range for a dataset of %lld",
                             (long long)indices[i], (long long)len);
    sub *s = wf__calloc(1, sizeof *s);
    if (s) s->idx = wf__malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!s || !s->idx) { wf__free(s, 0); return wf__error(WF_ENOMEM, "wf_subset_dataset: out of memory"); }
    memcpy(s->idx, indices, sizeof(int64_t) * (size_t)n);
    s->n = n;
    s->base = *base;   /* borrowed: the base outlives the subset */
    *out = (wf_dataset){ sub_len, base->n_fields, sub_get, sub_free, s };
    return 0;
}

void wf_dataset_free(wf_dataset *d) {
    if (d && d->free) d->free(d->ud);
    if (d) memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------- samplers */

typedef struct { int64_t n; uint64_t seed; bool shuffle; int64_t *idx; } smp;

/* Fisher-Yates with Philox keyed by the seed and counted by (epoch, position): the
 * permutation of an epoch depends on nothing else, so resuming at epoch e is exact. */
static void permute(int64_t *v, int64_t n, uint64_t seed, uint64_t epoch) {
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t r[4];
        wf__philox4x32(seed, (epoch << 40) ^ (uint64_t)i, r);
        uint64_t x = ((uint64_t)r[0] << 32) | r[1];
        int64_t j = (int64_t)(x % (uint64_t)(i + 1));
        int64_t t = v[i]; v[i] = v[j]; v[j] = t;
    }
}

static int64_t smp_len(void *ud) { return ((smp *)ud)->n; }
static int smp_indices(void *ud, uint64_t epoch, int64_t *out) {
    smp *s = ud;
    for (int64_t i = 0; i < s->n; i++) out[i] = s->idx ? s->idx[i] : i;
    if (s->shuffle) permute(out, s->n, s->seed, epoch);
    return 0;
}
static void smp_free(void *ud) {
    smp *s = ud;
    wf__free(s->idx, 0);
    wf__free(s, sizeof *s);
}

static int make_sampler(int64_t n, const int64_t *idx, bool shuffle, uint64_t seed, wf_sampler *out) {
    if (!out) return wf__error(WF_ENULL, "sampler: NULL output");
    if (n < 0) return wf__error(WF_EINVAL, "sampler: negative length %lld", (long long)n);
    smp *s = wf__calloc(1, sizeof *s);
    if (!s) return wf__error(WF_ENOMEM, "sampler: out of memory");
    if (idx) {
        s->idx = wf__malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!s->idx) { wf__free(s, 0); return wf__error(WF_ENOMEM, "sampler: out of memory"); }
        memcpy(s->idx, idx, sizeof(int64_t) * (size_t)n);
    }
    s->n = n; s->shuffle = shuffle; s->seed = seed;
    *out = (wf_sampler){ smp_len, smp_indices, smp_free, s };
    return 0;
}

static int wf_sequential_sampler__body(int64_t n, wf_sampler *out) { return make_sampler(n, NULL, false, 0, out); }

int wf_sequential_sampler(int64_t n, wf_sampler *out) {
    WF__NAMED("wf_sequential_sampler", int, r < 0, wf_sequential_sampler__body(n, out));
}

static int wf_random_sampler__body(int64_t n, uint64_t seed, wf_sampler *out) { return make_sampler(n, NULL, true, seed, out); }

int wf_random_sampler(int64_t n, uint64_t seed, wf_sampler *out) {
    WF__NAMED("wf_random_sampler", int, r < 0, wf_random_sampler__body(n, seed, out));
}

static int wf_subset_sampler__body(const int64_t *indices, int64_t n, bool shuffle, uint64_t seed, wf_sampler *out) {
    if (n && !indices) return wf__error(WF_ENULL, "wf_subset_sampler: NULL indices");
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0)
            return wf__error(WF_EINVAL, "wf_subset_sampler: index %lld at position %lld is negative",
                             (long long)indices[i], (long long)i);
    return make_sampler(n, indices, shuffle, seed, out);
}

int wf_subset_sampler(const int64_t *indices, int64_t n, bool shuffle, uint64_t seed, wf_sampler *out) {
    WF__NAMED("wf_subset_sampler", int, r < 0, wf_subset_sampler__body(indices, n, shuffle, seed, out));
}

void wf_sampler_free(wf_sampler *s) {
    if (s && s->free) s->free(s->ud);
    if (s) memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- Fashion-MNIST */

static int wf_fashion_mnist__body(const char *dir, bool train, double mean, double std, wf_dataset *out) {
    if (!out) return wf__error(WF_ENULL, "wf_fashion_mnist: NULL output");
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    const char *split = train ? "train" : "t10k";
    char ip[4096], lp[4096];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    int rc = 0;
    wf_scope_begin();
    wf_tensor *img = wf_idx_load(ip), *lab = img ? wf_idx_load(lp) : NULL;
    if (!img || !lab) rc = wf_error();
    else if (img->ndim != 3 || lab->ndim != 1 || img->shape[0] != lab->shape[0] || img->dtype != WF_U8 || lab->dtype != WF_U8)
        rc = wf__error(WF_ECORRUPT, "wf_fashion_mnist: %s and %s do not hold N images of HxW bytes and N labels", ip, lp);
    else {
        /* the bytes stay bytes (a view adds the channel dim); labels widen to i64 once
         * (8 bytes a sample); the u8 label tensor dies with the scope */
        wf_tensor *x = wf_view(img, (int64_t[]){ img->shape[0], 1, img->shape[1], img->shape[2] }, 4);
        wf_tensor *y = wf_to_dtype(lab, WF_I64);
        rc = x && y ? wf_uint8_image_dataset(x, y, mean, std > 0 ? std : 0, out) : wf_error();
    }
    wf_scope_end();
    return rc;
}

int wf_fashion_mnist(const char *dir, bool train, double mean, double std, wf_dataset *out) {
    WF__NAMED("wf_fashion_mnist", int, r < 0, wf_fashion_mnist__body(dir, train, mean, std, out));
}
