/* optim/clip.c: torch.nn.utils.clip_grad_norm_ and clip_grad_value_.
 *
 * The total norm is one reduction over all the gradients together, not one per tensor:
 *  - CPU, every gradient contiguous f32/f64: one parallel region over fixed chunks of all
 *    the tensors (per-chunk partial sums in double, combined in chunk order, so the result
 *    does not depend on the thread count), and the scaling is one more such region;
 *  - CUDA, every gradient contiguous and floating on one device: the multi-tensor kernels of
 *    tensor/cuda/cuda_optim.cu (per-chunk partials, a finishing kernel that also computes
 *    the clip coefficient on the device, then one scaling pass that reads it), so
 *    wf_clip_grad_norm_tensor_ never waits for the GPU;
 *  - anything else (mixed devices, other layouts): one wf_norm per tensor. */
#include "optim_impl.h"
#include "weft_config.h"

#include <math.h>

#define CLIP_CHUNK 16384

/* the gradients to clip: those of params[i] that exist and are not empty (owned by the
 * parameters; *out is wf__malloc'd, the caller frees it) */
static int collect(const char *N, wf_tensor *const *params, int n, wf_tensor ***out, int *count) {
    *out = NULL, *count = 0;
    if (!n) return 0;
    wf_tensor **gs = wf__malloc((size_t)n * sizeof *gs);
    if (!gs) return wf__error(WF_ENOMEM, "%s: out of memory for %d gradients", N, n);
    int k = 0;
    for (int i = 0; i < n; i++) {
        wf_tensor *g = params[i] ? wf_grad(params[i]) : NULL;
        if (g && wf_numel(g)) gs[k++] = g;
    }
    *out = gs, *count = k;
    return 0;
}

enum { PATH_GENERIC, PATH_CPU, PATH_CUDA };

static int pick_path(wf_tensor **gs, int k) {
    if (!k) return PATH_GENERIC;
    wf_device d0 = wf_tensor_device(gs[0]);
    bool cpu = d0.type == WF_DEV_CPU, cuda = d0.type == WF_DEV_CUDA;
    for (int i = 0; i < k && (cpu || cuda); i++) {
        wf_dtype dt = wf_tensor_dtype(gs[i]);
        if (!wf_device_eq(wf_tensor_device(gs[i]), d0) || !wf_is_contiguous(gs[i])) return PATH_GENERIC;
        if (dt != WF_F32 && dt != WF_F64) cpu = false;
        if (dt != WF_F32 && dt != WF_F64 && dt != WF_BF16 && dt != WF_F16) cuda = false;
    }
#ifdef WEFT_HAVE_CUDA
    if (cuda) return PATH_CUDA;
#endif
    return cpu ? PATH_CPU : PATH_GENERIC;
}

/* ---------------------------------------------------------------- CPU, one pass */

/* chunk c of the list: tensor j = the last with first[j] <= c */
static int chunk_tensor(const int64_t *first, int k, int64_t c) {
    int lo = 0, hi = k - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (first[mid] <= c) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* chunk c of the gradients gs: its tensor (returned) and its element range [*lo, *hi) there */
static int chunk_span(wf_tensor *const *gs, const int64_t *first, int k, int64_t c, int64_t *lo, int64_t *hi) {
    int j = chunk_tensor(first, k, c);
    int64_t n = wf_numel(gs[j]);
    *lo = (c - first[j]) * CLIP_CHUNK;
    *hi = *lo + CLIP_CHUNK < n ? *lo + CLIP_CHUNK : n;
    return j;
}

/* sums of x^2 or |x| over one chunk in 8 fixed lanes (vectorizes without reassociating:
 * the order, hence the bits, is the same for any thread count and any CPU) */
#define DEFINE_LANE_SUM(NAME, T, MAP)                                                          \
WF_MULTIVERSION static double NAME(const T *x, int64_t n) {                                    \
    double lane[8] = { 0 };                                                                    \
    int64_t i = 0;                                                                             \
    for (; i + 8 <= n; i += 8)                                                                 \
        for (int l = 0; l < 8; l++) { double v = (double)x[i + l]; lane[l] += MAP; }           \
    double s = 0;                                                                              \
    for (; i < n; i++) { double v = (double)x[i]; s += MAP; }                                  \
    for (int l = 0; l < 8; l++) s += lane[l];                                                  \
    return s;                                                                                  \
}
DEFINE_LANE_SUM(sumsq_f32, float, v * v)
DEFINE_LANE_SUM(sumsq_f64, double, v * v)
DEFINE_LANE_SUM(sumabs_f32, float, fabs(v))
DEFINE_LANE_SUM(sumabs_f64, double, fabs(v))

/* the other norms: max |x| (NaN wins) or sum |x|^p, element by element */
static double chunk_other(const float *xf, const double *xd, int64_t n, int kind, double p) {
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs(xf ? (double)xf[i] : xd[i]);
        if (kind == 0) acc = isnan(acc) ? acc : (a > acc || isnan(a)) ? a : acc;
        else acc += pow(a, p);
    }
    return acc;
}

typedef struct {
    wf_tensor **gs;
    int k;
    const int64_t *first;
    double *partial;
    int kind;
    double p;
} total_ctx;

static void total_chunks(void *vt, int64_t c0, int64_t c1) {
    const total_ctx *t = vt;
    for (int64_t c = c0; c < c1; c++) {
        int64_t lo, hi;
        int j = chunk_span(t->gs, t->first, t->k, c, &lo, &hi);
        bool f64 = wf_tensor_dtype(t->gs[j]) == WF_F64;
        const float *xf = f64 ? NULL : (const float *)(void *)wf__host_ptr(t->gs[j]) + lo;
        const double *xd = f64 ? (const double *)(void *)wf__host_ptr(t->gs[j]) + lo : NULL;
        t->partial[c] = t->kind == 2 ? (f64 ? sumsq_f64(xd, hi - lo) : sumsq_f32(xf, hi - lo))
                   : t->kind == 1 ? (f64 ? sumabs_f64(xd, hi - lo) : sumabs_f32(xf, hi - lo))
                               : chunk_other(xf, xd, hi - lo, t->kind, t->p);
    }
}

/* kind: 0 max (infinity norm), 1 sum |x|, 2 sum x^2, 3 sum |x|^p */
static double cpu_total(wf_tensor **gs, int k, const int64_t *first, double *partial, int kind, double p) {
    int64_t nchunks = first[k], total = 0;
    for (int j = 0; j < k; j++) total += wf_numel(gs[j]);
    total_ctx tc = { gs, k, first, partial, kind, p };
    /* partials per CLIP_CHUNK, combined below in chunk order: the same bits at any thread count */
    wf__parallel_for(nchunks, total > 65536 ? 4 : (nchunks ? nchunks : 1), total_chunks, &tc);
    double acc = 0;
    for (int64_t c = 0; c < nchunks; c++) {
        if (kind == 0) acc = isnan(acc) ? acc : (partial[c] > acc || isnan(partial[c])) ? partial[c] : acc;
        else acc += partial[c];
    }
    return kind == 2 ? sqrt(acc) : kind == 3 ? pow(acc, 1.0 / p) : acc;
}

typedef struct {
    wf_tensor **gs;
    int k;
    const int64_t *first;
    double coef;
} scale_ctx;

static void scale_chunks(void *vt, int64_t c0, int64_t c1) {
    const scale_ctx *t = vt;
    for (int64_t c = c0; c < c1; c++) {
        int64_t lo, hi;
        int j = chunk_span(t->gs, t->first, t->k, c, &lo, &hi);
        if (wf_tensor_dtype(t->gs[j]) == WF_F64) {
            double *x = (double *)(void *)wf__host_ptr(t->gs[j]);
            for (int64_t i = lo; i < hi; i++) x[i] *= t->coef;
        } else {
            float *x = (float *)(void *)wf__host_ptr(t->gs[j]);
            const float cf = (float)t->coef;   /* as wf_mul_scalar_ on an f32 tensor */
            for (int64_t i = lo; i < hi; i++) x[i] *= cf;
        }
    }
}

static void cpu_scale(wf_tensor **gs, int k, const int64_t *first, double coef) {
    int64_t nchunks = first[k], total = 0;
    for (int j = 0; j < k; j++) total += wf_numel(gs[j]);
    scale_ctx sc = { gs, k, first, coef };
    wf__parallel_for(nchunks, total > 65536 ? 4 : (nchunks ? nchunks : 1), scale_chunks, &sc);
    for (int j = 0; j < k; j++) wf__bump_version(gs[j]);
}

/* ---------------------------------------------------------------- generic (per tensor) */

static int generic_total(const char *N, wf_tensor **gs, int k, double norm_type, double *out) {
    bool inf = isinf(norm_type);
    double acc = 0;
    int rc = 0;
    wf_scope_begin();
    for (int i = 0; i < k && !rc; i++) {
        wf_tensor *nt = wf_norm(gs[i], norm_type, WF_ALL_DIMS, false);
        if (!nt) { rc = wf_error() ? wf_error() : wf__error(WF_ENOMEM, "%s: cannot compute a norm", N); break; }
        double v = wf_item(nt);
        wf_tensor_free(nt);
        if (inf) acc = (isnan(v) || isnan(acc)) ? NAN : (v > acc ? v : acc);
        else acc += norm_type == 1 ? v : norm_type == 2 ? v * v : pow(v, norm_type);
    }
    wf_scope_end();
    *out = inf ? acc : norm_type == 1 ? acc : norm_type == 2 ? sqrt(acc) : pow(acc, 1.0 / norm_type);
    return rc;
}

static int generic_scale(wf_tensor **gs, int k, double coef) {
    bool prev = wf_set_grad_enabled(false);
    int rc = 0;
    for (int i = 0; i < k && !rc; i++) rc = wf_mul_scalar_(gs[i], coef);
    wf_set_grad_enabled(prev);
    return rc;
}

/* ---------------------------------------------------------------- CUDA */

#ifdef WEFT_HAVE_CUDA
/* Queue the norm of gs into norm_t (0-d f32) and the clip coefficient into coef_t (0-d f32),
 * both on gs's device. No synchronization. */
static int cuda_norm(const char *N, wf_tensor **gs, int k, double norm_type, double max_norm, wf_tensor *norm_t,
                     wf_tensor *coef_t, wf_cuda_span **spans_out) {
    wf_cuda_span *sp = wf__malloc((size_t)k * sizeof *sp);
    if (!sp) return wf__error(WF_ENOMEM, "%s: out of memory for %d gradients", N, k);
    for (int i = 0; i < k; i++)
        sp[i] = (wf_cuda_span){ .data = wf__host_ptr(gs[i]), .n = wf_numel(gs[i]), .dtype = (int)wf_tensor_dtype(gs[i]) };
    int rc = wf__cuda_multi_norm(sp, k, norm_type, (float *)(void *)wf__host_ptr(norm_t),
                                 coef_t ? (float *)(void *)wf__host_ptr(coef_t) : NULL, max_norm,
                                 wf_tensor_device(gs[0]).index);
    if (rc) { wf__free(sp, (size_t)k * sizeof *sp); return rc; }
    *spans_out = sp;
    return 0;
}
static int cuda_scale(wf_tensor **gs, int k, wf_cuda_span *sp, wf_tensor *coef_t) {
    int rc = wf__cuda_multi_scale(sp, k, (const float *)(void *)wf__host_ptr(coef_t), wf_tensor_device(gs[0]).index);
    if (!rc)
        for (int j = 0; j < k; j++) wf__bump_version(gs[j]);
    return rc;
}
#endif

/* ---------------------------------------------------------------- entry points */

static int check_args(const char *N, wf_tensor *const *params, int n, double max_norm, double norm_type) {
    if (n < 0) return wf__error(WF_EINVAL, "%s: negative parameter count %d", N, n);
    if (n > 0 && !params) return wf__error(WF_ENULL, "%s: params is NULL", N);
    if (!(norm_type > 0)) return wf__error(WF_EINVAL, "%s: norm_type must be > 0 or INFINITY (got %g)", N, norm_type);
    if (!(max_norm >= 0)) return wf__error(WF_EINVAL, "%s: max_norm must be >= 0 (got %g)", N, max_norm);
    return 0;
}

static int norm_kind(double norm_type) {
    return isinf(norm_type) ? 0 : norm_type == 1 ? 1 : norm_type == 2 ? 2 : 3;
}

/* the chunk table of the CPU path (wf__malloc'd; NULL + error) */
static int64_t *chunk_table(const char *N, wf_tensor **gs, int k, double **partial) {
    int64_t *first = wf__malloc((size_t)(k + 1) * sizeof *first);
    if (!first) { wf__error(WF_ENOMEM, "%s: out of memory", N); return NULL; }
    first[0] = 0;
    for (int j = 0; j < k; j++) first[j + 1] = first[j] + (wf_numel(gs[j]) + CLIP_CHUNK - 1) / CLIP_CHUNK;
    *partial = wf__malloc((size_t)(first[k] ? first[k] : 1) * sizeof **partial);
    if (!*partial) { wf__free(first, (size_t)(k + 1) * sizeof *first); wf__error(WF_ENOMEM, "%s: out of memory", N); return NULL; }
    return first;
}

int wf_clip_grad_norm_(wf_tensor *const *params, int n, double max_norm, double norm_type,
                       bool error_if_nonfinite, double *total_norm) {
    const char *N = "wf_clip_grad_norm_";
    if (total_norm) *total_norm = 0;
    int rc = check_args(N, params, n, max_norm, norm_type);
    wf_tensor **gs = NULL;
    int k = 0;
    if (!rc) rc = collect(N, params, n, &gs, &k);
    if (rc || !k) { if (gs) wf__free(gs, (size_t)n * sizeof *gs); return rc; }
    int path = pick_path(gs, k);
    double total = 0, *partial = NULL;
    int64_t *first = NULL;
#ifdef WEFT_HAVE_CUDA
    wf_tensor *norm_t = NULL, *coef_t = NULL;
    wf_cuda_span *sp = NULL;
#endif
    if (path == PATH_CPU) {
        first = chunk_table(N, gs, k, &partial);
        if (!first) rc = wf_error();
        else total = cpu_total(gs, k, first, partial, norm_kind(norm_type), norm_type);
#ifdef WEFT_HAVE_CUDA
    } else if (path == PATH_CUDA) {
        wf_device d = wf_tensor_device(gs[0]);
        norm_t = wf_empty_on(NULL, 0, WF_F32, d);
        coef_t = wf_empty_on(NULL, 0, WF_F32, d);
        rc = norm_t && coef_t ? cuda_norm(N, gs, k, norm_type, max_norm, norm_t, coef_t, &sp)
                              : (wf_error() ? wf_error() : WF_ENOMEM);
        if (!rc) total = wf_item(norm_t);   /* the one synchronization: the caller asked for a double */
#endif
    } else {
        rc = generic_total(N, gs, k, norm_type, &total);
    }
    if (!rc && total_norm) *total_norm = total;
    if (!rc && !isfinite(total) && error_if_nonfinite)
        rc = wf__error(WF_ENONFINITE, "%s: the total norm of order %g for gradients is non-finite (%g), so it "
                       "cannot be clipped; gradients are unchanged (pass error_if_nonfinite = false to scale "
                       "them by the non-finite norm anyway)", N, norm_type, total);
    double coef = max_norm / (total + 1e-6);
    bool scale = !rc && (coef < 1.0 || isnan(coef));   /* clamp(max=1): multiplying by 1 changes nothing */
    if (scale && path == PATH_CPU) cpu_scale(gs, k, first, coef);
#ifdef WEFT_HAVE_CUDA
    else if (scale && path == PATH_CUDA) rc = cuda_scale(gs, k, sp, coef_t);
#endif
    else if (scale) rc = generic_scale(gs, k, coef);
#ifdef WEFT_HAVE_CUDA
    wf_tensor_free(norm_t);
    wf_tensor_free(coef_t);
    wf__free(sp, (size_t)k * sizeof *sp);
#endif
    if (first) {
        wf__free(partial, (size_t)(first[k] ? first[k] : 1) * sizeof *partial);
        wf__free(first, (size_t)(k + 1) * sizeof *first);
    }
    wf__free(gs, (size_t)n * sizeof *gs);
    return rc;
}

wf_tensor *wf_clip_grad_norm_tensor_(wf_tensor *const *params, int n, double max_norm, double norm_type) {
    const char *N = "wf_clip_grad_norm_tensor_";
    int rc = check_args(N, params, n, max_norm, norm_type);
    wf_tensor **gs = NULL;
    int k = 0;
    if (!rc) rc = collect(N, params, n, &gs, &k);
    if (rc) return NULL;
#ifdef WEFT_HAVE_CUDA
    if (pick_path(gs, k) == PATH_CUDA) {
        wf_device d = wf_tensor_device(gs[0]);
        wf_tensor *norm_t = wf_empty_on(NULL, 0, WF_F32, d), *coef_t = wf_empty_on(NULL, 0, WF_F32, d);
        wf_cuda_span *sp = NULL;
        rc = norm_t && coef_t ? cuda_norm(N, gs, k, norm_type, max_norm, norm_t, coef_t, &sp)
                              : (wf_error() ? wf_error() : WF_ENOMEM);
        if (!rc) rc = cuda_scale(gs, k, sp, coef_t);
        wf_tensor_free(coef_t);   /* the caching allocator frees in stream order: after the scaling */
        wf__free(sp, (size_t)k * sizeof *sp);
        wf__free(gs, (size_t)n * sizeof *gs);
        if (rc) { wf_tensor_free(norm_t); return NULL; }
        return norm_t;
    }
#endif
    /* elsewhere the norm is on the host anyway: the double path, then a tensor of it */
    wf_device d = k ? wf_tensor_device(gs[0]) : (wf_device){ WF_DEV_CPU, 0 };
    wf_dtype dt = k && wf_tensor_dtype(gs[0]) == WF_F64 ? WF_F64 : WF_F32;
    wf__free(gs, (size_t)n * sizeof *gs);
    double total = 0;
    rc = wf_clip_grad_norm_(params, n, max_norm, norm_type, false, &total);
    if (rc) return NULL;
    wf_tensor *t = wf_scalar(total, dt);
    if (t && d.type != WF_DEV_CPU) {
        wf_tensor *m = wf_to_device(t, d);
        wf_tensor_free(t);
        t = m;
    }
    return t;
}

int wf_clip_grad_value_(wf_tensor *const *params, int n, double clip_value) {
    const char *N = "wf_clip_grad_value_";
    if (n < 0) return wf__error(WF_EINVAL, "%s: negative parameter count %d", N, n);
    if (n > 0 && !params) return wf__error(WF_ENULL, "%s: params is NULL", N);
    if (!(clip_value >= 0)) return wf__error(WF_EINVAL, "%s: clip_value must be >= 0 (got %g)", N, clip_value);
    bool prev = wf_set_grad_enabled(false);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!params[i] || !wf_grad(params[i])) continue;
        rc = wf_clamp_(wf_grad(params[i]), -clip_value, clip_value);
    }
    wf_set_grad_enabled(prev);
    return rc;
}
