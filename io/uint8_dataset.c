/* io/uint8_dataset.c: 8-bit images kept as bytes, turned into normalized f32 one batch at a
 * time (torchvision's ToTensor() + Normalize(mean, std), fused).
 *
 * Why: an f32 copy of a dataset is four times its bytes (188 MB for Fashion-MNIST's 47 MB),
 * and building it through tensor ops made several such copies at once. Here the dataset
 * holds only the bytes; each batch is gathered and normalized in one pass over its own
 * samples. The arithmetic is the one the op chain did (f32: x / 255, then (x - mean) / std),
 * so the values are bit for bit those of the old f32 path. */
#include "../tensor/tensor_impl.h"
#include "weft/data.h"

#include <math.h>
#include <string.h>

typedef struct {
    float mean, std;
    bool normalize;
} norm;

static norm make_norm(double mean, double std) {
    return (norm){ (float)mean, (float)std, std > 0 };
}

/* One pass: byte -> f32, scale, normalize. The same f32 operations, in the same order, as
 * wf_div_scalar(x, 255) then wf_sub_scalar(., mean) and wf_div_scalar(., std). */
WF_MULTIVERSION static void normalize_row(float *dst, const uint8_t *src, int64_t n, norm nm) {
    const float scale = 255.0f;
    if (nm.normalize)
        for (int64_t j = 0; j < n; j++) dst[j] = ((float)src[j] / scale - nm.mean) / nm.std;
    else
        for (int64_t j = 0; j < n; j++) dst[j] = (float)src[j] / scale;
}

static int check_u8_cpu(const char *fn, const wf_tensor *x) {
    if (!x) return wf__error(WF_ENULL, "%s: NULL tensor", fn);
    if (x->dtype != WF_U8)
        return wf__error(WF_EDTYPE, "%s: images must be uint8 (WF_U8), got %s", fn, wf_dtype_name(x->dtype));
    if (x->device.type != WF_DEV_CPU)
        return wf__error(WF_EDEVICE, "%s: images must be on the CPU (the dataset normalizes on the host)", fn);
    return 0;
}

wf_tensor *wf_normalize_uint8(wf_tensor *x, double mean, double std) {
    if (check_u8_cpu("wf_normalize_uint8", x)) return NULL;
    if (!(std >= 0) || !isfinite(mean) || !isfinite(std)) {
        wf__error(WF_EINVAL, "wf_normalize_uint8: std must be >= 0 and mean and std finite, got mean=%g std=%g", mean, std);
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *c = wf_contiguous(x);
    wf_tensor *y = c ? wf_empty_on(x->shape, x->ndim, WF_F32, WF_CPU) : NULL;
    if (y && wf_numel(y)) normalize_row((float *)wf__host_ptr(y), (const uint8_t *)wf__host_ptr(c), wf_numel(y), make_norm(mean, std));
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ---------------------------------------------------------------- the dataset */

typedef struct {
    wf_tensor *images;    /* U8, contiguous, [N, ...]: retained */
    wf_tensor *targets;   /* [N, ...] any dtype, retained; NULL for an images-only dataset */
    int64_t n, row;       /* samples, bytes per sample */
    norm nm;
} u8ds;

static int64_t u8_len(void *ud) { return ((u8ds *)ud)->n; }

static int u8_get(void *ud, const int64_t *idx, int64_t n, wf_tensor **out) {
    u8ds *d = ud;
    int nf = d->targets ? 2 : 1;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= d->n)
            return wf__error(WF_EINDEX, "uint8 image dataset: index %lld out of range for %lld samples",
                             (long long)idx[i], (long long)d->n);
    int64_t shape[WF_MAX_DIMS];
    memcpy(shape, d->images->shape, sizeof(int64_t) * (size_t)d->images->ndim);
    shape[0] = n;
    int rc = 0;
    /* a scope, so that loader threads (none open) hand back tensors the caller owns */
    wf_scope_begin();
    wf_tensor *x = wf_empty_on(shape, d->images->ndim, WF_F32, WF_CPU);
    if (x) {
        float *dst = (float *)wf__host_ptr(x);
        const uint8_t *src = (const uint8_t *)wf__host_ptr(d->images);
        for (int64_t i = 0; i < n; i++) normalize_row(dst + i * d->row, src + idx[i] * d->row, d->row, d->nm);
    }
    out[0] = x;
    if (x && d->targets) {
        wf_tensor *it = wf_from_data(idx, &n, 1, WF_I64);
        out[1] = it ? wf_index_select(d->targets, 0, it) : NULL;
    }
    for (int f = 0; f < nf; f++)
        if (!out[f]) { rc = wf_error() ? wf_error() : WF_ENOMEM; break; }
    for (int f = 0; f < nf && !rc; f++) wf_keep(out[f]);
    wf_scope_end();
    if (rc) for (int f = 0; f < nf; f++) out[f] = NULL;
    return rc;
}

static void u8_free(void *ud) {
    u8ds *d = ud;
    wf_tensor_free(d->images);
    if (d->targets) wf_tensor_free(d->targets);
    wf__free(d, sizeof *d);
}

int wf_uint8_image_dataset(wf_tensor *images, wf_tensor *targets, double mean, double std, wf_dataset *out) {
    if (!out) return wf__error(WF_ENULL, "wf_uint8_image_dataset: NULL output");
    int rc = check_u8_cpu("wf_uint8_image_dataset", images);
    if (rc) return rc;
    if (images->ndim < 1)
        return wf__error(WF_ESHAPE, "wf_uint8_image_dataset: images need a first (sample) dimension, got a scalar");
    if (targets && (targets->ndim < 1 || targets->shape[0] != images->shape[0])) {
        char b1[96], b2[96];
        return wf__error(WF_ESHAPE, "wf_uint8_image_dataset: size mismatch between images %s and targets %s: "
                         "both need the same first dimension", wf_shape_str(images, b1, sizeof b1),
                         wf_shape_str(targets, b2, sizeof b2));
    }
    if (!(std >= 0) || !isfinite(mean))
        return wf__error(WF_EINVAL, "wf_uint8_image_dataset: mean %g and std %g must be finite, std >= 0 (0 = no normalization)",
                         mean, std);
    u8ds *d = wf__calloc(1, sizeof *d);
    if (!d) return wf__error(WF_ENOMEM, "wf_uint8_image_dataset: out of memory");
    /* a strided view is copied once here; contiguous bytes (the usual case) are shared */
    wf_scope_begin();
    wf_tensor *c = wf_contiguous(images);
    if (c) d->images = wf_tensor_retain(c);
    wf_scope_end();
    if (!d->images) { wf__free(d, sizeof *d); return wf_error() ? wf_error() : WF_ENOMEM; }
    d->targets = targets ? wf_tensor_retain(targets) : NULL;
    d->n = images->shape[0];
    d->row = d->n ? wf_numel(images) / d->n : 0;
    if (!d->n) {   /* numel is 0 then: the row size comes from the other dims */
        d->row = 1;
        for (int i = 1; i < images->ndim; i++) d->row *= images->shape[i];
    }
    d->nm = make_norm(mean, std);
    *out = (wf_dataset){ u8_len, targets ? 2 : 1, u8_get, u8_free, d };
    return 0;
}
