/* tensor/cpu/softmax.c: softmax / log_softmax over the last dimension, and their backward.
 *
 * x (and y, gy, gx) are contiguous and viewed as rows x cols, cols = the last dimension
 * (1 for a 0-d tensor). Each row is independent, so rows are spread over weft's thread pool in chunks fixed by the shape.
 * Forward is numerically stable: m = max(x), s = sum(exp(x - m)),
 *   softmax y = exp(x - m) / s,   log_softmax y = x - m - log(s).
 * Backward, with y the forward output:
 *   softmax      gx = y * (gy - sum(gy * y))
 *   log_softmax  gx = gy - exp(y) * sum(gy)
 * f64 computes in double; f32, f16 and bf16 compute in float (half types convert on load
 * and round to nearest even on store). A row of -inf gives NaN, as in PyTorch.
 * Attention's extras (tensor_impl.h's softmax entry): x is scaled by `scale` as it is read
 * (no scaled copy of the scores), a causal mask excludes columns past the row's position,
 * the output may be scaled by `out_scale` (dropout's 1 / (1 - p), so that its mask is a plain
 * 0/1 draw), and the backward takes both: gx = scale * y * (gy - sum(gy * y) / out_scale)
 * for y = out_scale * softmax(scale * x). */
#include "cpu_kernels.h"
#include "vec_exp.h"
#include "weft_config.h"

#include <math.h>

/* Parallelize when there is enough work to pay for the threads. */
#define PAR_MIN_ELEMS 32768

static void geometry(const wf_tensor *x, int64_t *rows, int64_t *cols) {
    int64_t n = wf__numel(x->ndim, x->shape);
    int64_t c = x->ndim ? x->shape[x->ndim - 1] : 1;
    *cols = c;
    *rows = c ? n / c : 0;
}

/* ---------------------------------------------------------------- loads and stores */

static inline float ld_half(const uint16_t *p, int64_t j, bool bf) {
    return bf ? wf__bf16_to_f32(p[j]) : wf__f16_to_f32(p[j]);
}
static inline uint16_t st_half(float v, bool bf) { return bf ? wf__f32_to_bf16(v) : wf__f32_to_f16(v); }

/* ---------------------------------------------------------------- forward rows */

/* f32 sums and the max in 8 interleaved lanes: the loops vectorize (a float += chain does not,
 * and the max's compare chain is 8 independent ones), and the order is fixed by n alone */
static inline float sum8(const float *v, int64_t n) {
    float acc[8] = { 0 };
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += v[j + k];
    for (; j < n; j++) acc[j & 7] += v[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
static inline float dot8(const float *a, const float *b, int64_t n) {
    float acc[8] = { 0 };
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    for (; j < n; j++) acc[j & 7] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
/* max of sc * x[j]; NaN entries are passed over (they make the row NaN through exp later) */
static inline float max8(const float *x, int64_t n, float sc) {
    float acc[8], m = -INFINITY;
    for (int k = 0; k < 8; k++) acc[k] = -INFINITY;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) { float v = sc * x[j + k]; acc[k] = v > acc[k] ? v : acc[k]; }
    for (; j < n; j++) { float v = sc * x[j]; m = v > m ? v : m; }
    for (int k = 0; k < 8; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

/* Each row: y = os * softmax(sc * x) (log: log_softmax(sc * x); os is 1 there) over its first
 * nv entries (the causal mask's kept columns; nv = n without one); the other n - nv entries
 * are excluded, giving 0 (log: -inf). sc = os = 1 multiply exactly, so plain softmax keeps
 * its bits. f32's exp is vec_exp.h's (a vectorized loop, not a libm call per element). y may
 * be x (each loop reads x[j] before writing y[j], and later loops read only y). */
WF_MULTIVERSION static void row_f32(float *y, const float *x, int64_t n, int64_t nv, float sc, float os, bool is_log) {
    float m = max8(x, nv, sc);
    if (m == -INFINITY) m = 0;   /* all -inf: exp(-inf - 0) = 0, sum 0 -> NaN / -inf as torch */
    if (is_log) {
        float buf[256], s = 0;   /* e^(sc x - m) a block at a time: y is not written before the end */
        for (int64_t j0 = 0; j0 < nv; j0 += 256) {
            int64_t len = nv - j0 < 256 ? nv - j0 : 256;
            for (int64_t j = 0; j < len; j++) buf[j] = f_exp(sc * x[j0 + j] - m);
            s += sum8(buf, len);
        }
        float ls = logf(s) + m;
        for (int64_t j = 0; j < nv; j++) y[j] = sc * x[j] - ls;
    } else {
        for (int64_t j = 0; j < nv; j++) y[j] = f_exp(sc * x[j] - m);
        float inv = os / sum8(y, nv);
        for (int64_t j = 0; j < nv; j++) y[j] *= inv;
    }
    for (int64_t j = nv; j < n; j++) y[j] = is_log ? -INFINITY : 0.0f;
}

static void row_f64(double *y, const double *x, int64_t n, int64_t nv, double sc, double os, bool is_log) {
    double m = -INFINITY;
    for (int64_t j = 0; j < nv; j++) { double v = sc * x[j]; m = v > m ? v : m; }
    if (m == -INFINITY) m = 0;
    double s = 0;
    if (is_log) {
        for (int64_t j = 0; j < nv; j++) s += exp(sc * x[j] - m);
        double ls = log(s) + m;
        for (int64_t j = 0; j < nv; j++) y[j] = sc * x[j] - ls;
    } else {
        for (int64_t j = 0; j < nv; j++) { double e = exp(sc * x[j] - m); y[j] = e; s += e; }
        double inv = os / s;
        for (int64_t j = 0; j < nv; j++) y[j] *= inv;
    }
    for (int64_t j = nv; j < n; j++) y[j] = is_log ? -INFINITY : 0.0;
}

static void row_half(uint16_t *y, const uint16_t *x, int64_t n, int64_t nv, float sc, float os, bool is_log, bool bf) {
    float m = -INFINITY;
    for (int64_t j = 0; j < nv; j++) { float v = sc * ld_half(x, j, bf); m = v > m ? v : m; }
    if (m == -INFINITY) m = 0;
    float s = 0;
    for (int64_t j = 0; j < nv; j++) s += expf(sc * ld_half(x, j, bf) - m);
    if (is_log) {
        float ls = logf(s) + m;
        for (int64_t j = 0; j < nv; j++) y[j] = st_half(sc * ld_half(x, j, bf) - ls, bf);
    } else {
        float inv = os / s;
        for (int64_t j = 0; j < nv; j++) y[j] = st_half(expf(sc * ld_half(x, j, bf) - m) * inv, bf);
    }
    for (int64_t j = nv; j < n; j++) y[j] = st_half(is_log ? -INFINITY : 0.0f, bf);
}

typedef struct {
    char *y;
    const char *x, *gy;
    int64_t cols, causal;
    double scale, out_scale;
    size_t es;
    wf_dtype dt;
    bool is_log;
} sm_ctx;

/* rows per chunk: ~16K elements, fixed by the shape; one chunk when the whole is small */
static int64_t row_grain(int64_t rows, int64_t cols) {
    if (rows < 2 || rows * cols < PAR_MIN_ELEMS) return rows > 0 ? rows : 1;
    return cols >= 16384 ? 1 : 16384 / cols;
}

static void fwd_rows(void *vc, int64_t lo, int64_t hi) {
    const sm_ctx *c = vc;
    int64_t cols = c->cols;
    float sf = (float)c->scale, of = (float)c->out_scale;
    for (int64_t r = lo; r < hi; r++) {
        size_t off = (size_t)(r * cols) * c->es;
        int64_t nv = cols;
        if (c->causal > 0 && r % c->causal + 1 < cols) nv = r % c->causal + 1;
        switch (c->dt) {
        case WF_F32: row_f32((float *)(c->y + off), (const float *)(c->x + off), cols, nv, sf, of, c->is_log); break;
        case WF_F64:
            row_f64((double *)(c->y + off), (const double *)(c->x + off), cols, nv, c->scale, c->out_scale, c->is_log);
            break;
        case WF_F16: row_half((uint16_t *)(c->y + off), (const uint16_t *)(c->x + off), cols, nv, sf, of, c->is_log, false); break;
        case WF_BF16: row_half((uint16_t *)(c->y + off), (const uint16_t *)(c->x + off), cols, nv, sf, of, c->is_log, true); break;
        default: break;   /* the front-end admits floating dtypes only */
        }
    }
}

int wf__cpu_softmax(wf_tensor *y, const wf_tensor *x, bool is_log, double scale, double out_scale, int64_t causal) {
    int64_t rows, cols;
    geometry(x, &rows, &cols);
    if (rows == 0 || cols == 0) return 0;
    sm_ctx c = { wf__host_ptr(y), wf__host_ptr(x), NULL, cols, causal, scale, out_scale, wf_dtype_size(x->dtype), x->dtype,
                 is_log };
    return wf__parallel_for(rows, row_grain(rows, cols), fwd_rows, &c);
}

/* ---------------------------------------------------------------- backward rows */

WF_MULTIVERSION static void brow_f32(float *gx, const float *gy, const float *y, int64_t n, float sc, float ios,
                                     bool is_log) {
    if (is_log) {
        float s = sum8(gy, n);
        for (int64_t j = 0; j < n; j++) gx[j] = sc * (gy[j] - f_exp(y[j]) * s);
    } else {
        float s = dot8(gy, y, n) * ios;
        for (int64_t j = 0; j < n; j++) gx[j] = sc * (y[j] * (gy[j] - s));
    }
}

static void brow_f64(double *gx, const double *gy, const double *y, int64_t n, double sc, double ios, bool is_log) {
    double s = 0;
    if (is_log) {
        for (int64_t j = 0; j < n; j++) s += gy[j];
        for (int64_t j = 0; j < n; j++) gx[j] = sc * (gy[j] - exp(y[j]) * s);
    } else {
        for (int64_t j = 0; j < n; j++) s += gy[j] * y[j];
        s *= ios;
        for (int64_t j = 0; j < n; j++) gx[j] = sc * (y[j] * (gy[j] - s));
    }
}

static void brow_half(uint16_t *gx, const uint16_t *gy, const uint16_t *y, int64_t n, float sc, float ios, bool is_log,
                      bool bf) {
    float s = 0;
    if (is_log) {
        for (int64_t j = 0; j < n; j++) s += ld_half(gy, j, bf);
        for (int64_t j = 0; j < n; j++)
            gx[j] = st_half(sc * (ld_half(gy, j, bf) - expf(ld_half(y, j, bf)) * s), bf);
    } else {
        for (int64_t j = 0; j < n; j++) s += ld_half(gy, j, bf) * ld_half(y, j, bf);
        s *= ios;
        for (int64_t j = 0; j < n; j++)
            gx[j] = st_half(sc * (ld_half(y, j, bf) * (ld_half(gy, j, bf) - s)), bf);
    }
}

static void bwd_rows(void *vc, int64_t lo, int64_t hi) {
    const sm_ctx *c = vc;
    int64_t cols = c->cols;
    float sf = (float)c->scale, iof = (float)(1.0 / c->out_scale);
    double io = 1.0 / c->out_scale;
    for (int64_t r = lo; r < hi; r++) {
        size_t off = (size_t)(r * cols) * c->es;
        switch (c->dt) {
        case WF_F32:
            brow_f32((float *)(c->y + off), (const float *)(c->gy + off), (const float *)(c->x + off), cols, sf, iof, c->is_log);
            break;
        case WF_F64:
            brow_f64((double *)(c->y + off), (const double *)(c->gy + off), (const double *)(c->x + off), cols, c->scale,
                     io, c->is_log);
            break;
        case WF_F16:
        case WF_BF16:
            brow_half((uint16_t *)(c->y + off), (const uint16_t *)(c->gy + off), (const uint16_t *)(c->x + off),
                      cols, sf, iof, c->is_log, c->dt == WF_BF16);
            break;
        default: break;
        }
    }
}

/* sm_ctx for backward: y is gx, x is the forward's output y */
int wf__cpu_softmax_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *y, bool is_log, double scale,
                             double out_scale) {
    int64_t rows, cols;
    geometry(y, &rows, &cols);
    if (rows == 0 || cols == 0) return 0;
    sm_ctx c = { wf__host_ptr(gx), wf__host_ptr(y), wf__host_ptr(gy), cols, 0, scale, out_scale, wf_dtype_size(y->dtype), y->dtype,
                 is_log };
    return wf__parallel_for(rows, row_grain(rows, cols), bwd_rows, &c);
}
