/* tensor/cpu/conv.c: im2col / col2im for conv2d on contiguous images [C,H,W].
 *
 * col row r = c*kh*kw + i*kw + j holds, for every output position (oy, ox), the input
 * x[c, oy*sh - ph + i*dh, ox*sw - pw + j*dw], or 0 where that falls in the padding.
 *  - wf__cpu_im2col / wf__cpu_col2im: one image, col [C*kh*kw, oh*ow]; col2im ADDS into x
 *    (the caller zeroes it).
 *  - wf__cpu_im2col_batch / wf__cpu_col2im_batch: N images [N,C,H,W] at once, col
 *    [C*kh*kw, N*oh*ow] (image n's columns are [n*oh*ow, (n+1)*oh*ow)), so one GEMM covers
 *    the batch; col2im_batch OVERWRITES x, each plane x[n,c] starting from bias[c] (or 0).
 *    With a 1x1 kernel (stride 1, no padding) they are the permutes [N,C,HW] <-> [C,N*HW]
 *    (a plain copy per plane), which conv2d uses to go between NCHW and the GEMM layout.
 * Every output row is cut once into [padding | interior | padding] (the interior range of ox
 * is computed, not tested per element), so 3x3 / stride 1 / padding 1 rows are a plain copy
 * with two zeroed edges. OpenMP over (row, image) for im2col and over (image, channel) planes
 * for col2im (planes are disjoint in x, so no atomics). f32/f64. */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <string.h>

/* ox in [*lo, *hi) reads input column x0 + ox*sw inside [0, W) */
static inline void inner_range(int64_t x0, int sw, int64_t W, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw;
    int64_t h = (W - 1 - x0) < 0 ? 0 : (W - 1 - x0) / sw + 1;
    if (l > ow) l = ow;
    if (h > ow) h = ow;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* One im2col / col2im call's arguments, for its loop on weft's thread pool. */
typedef struct {
    void *out;
    const void *in, *bias;
    int64_t ldcol, N, C, H, W, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool accumulate;
} conv_args;

/* units (rows of col x images, or planes) per chunk: ~16K elements each; one chunk below
 * 32K elements in all (threads cost more than they save there) */
static int64_t conv_grain(int64_t units, int64_t unit_elems) {
    if (units * unit_elems <= 32768 || units < 1) return units > 0 ? units : 1;
    return unit_elems >= 16384 ? 1 : 16384 / unit_elems;
}

#define DEFINE_IM2COL(T, S)                                                                     \
    /* col [C*kh*kw, ldcol]: image n's block starts at column n*oh*ow */                       \
    static void im2col_rng_##S(T *col, int64_t ldcol, const T *x, int64_t N, int64_t C, int64_t H, \
                               int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, \
                               int dw, int64_t oh, int64_t ow, int64_t q0, int64_t q1) { \
        int64_t rows = C * kh * kw, L = oh * ow;                                                \
        bool plain = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;            \
        (void)rows;                                                                             \
        for (int64_t q = q0; q < q1; q++) {                                                     \
            {   /* a continue below goes on with the next q */                                  \
                int64_t r = q / N, n = q % N;                                                   \
                int64_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;                       \
                const T *xc = x + (n * C + c) * H * W;                                          \
                T *dst = col + r * ldcol + n * L;                                               \
                if (plain) { /* 1x1: the plane is the row segment */                            \
                    for (int64_t e = 0; e < L; e++) dst[e] = xc[e];                             \
                    continue;                                                                   \
                }                                                                               \
                int64_t x0 = j * dw - pw, lo, hi;                                               \
                inner_range(x0, sw, W, ow, &lo, &hi);                                           \
                if (sh == 1 && sw == 1 && ow == W && hi > lo) {                                 \
                    /* "same"-width stride-1 rows (3x3/pad 1): the source rows follow each  \
                     * other like the destination rows, so the valid rows are ONE copy at a  \
                     * fixed offset; then the edge columns (which that copy filled from the  \
                     * neighbouring row) and the rows in the padding are zeroed. Rows of ~14 \
                     * elements otherwise cost more in loop overhead than in copying. */      \
                    int64_t dy = (int64_t)i * dh - ph;                                          \
                    int64_t oy0 = dy < 0 ? -dy : 0, oy1 = H - dy < oh ? H - dy : oh;            \
                    if (oy1 < oy0) oy1 = oy0;                                                   \
                    for (int64_t e = 0; e < oy0 * ow; e++) dst[e] = 0;                          \
                    if (oy1 > oy0) {                                                            \
                        const T *src = xc + (oy0 + dy) * W + x0;                                \
                        int64_t a = oy0 * ow + lo, b = (oy1 - 1) * ow + hi;                     \
                        memcpy(dst + a, src + lo, (size_t)(b - a) * sizeof(T));                 \
                        for (int64_t oy = oy0; oy < oy1; oy++) {                                \
                            for (int64_t ox = 0; ox < lo; ox++) dst[oy * ow + ox] = 0;          \
                            for (int64_t ox = hi; ox < ow; ox++) dst[oy * ow + ox] = 0;         \
                        }                                                                       \
                    }                                                                           \
                    for (int64_t e = oy1 * ow; e < oh * ow; e++) dst[e] = 0;                    \
                    continue;                                                                   \
                }                                                                               \
                for (int64_t oy = 0; oy < oh; oy++) {                                           \
                    int64_t y = oy * sh - ph + i * dh;                                          \
                    T *restrict d = dst + oy * ow;                                              \
                    if (y < 0 || y >= H) {                                                      \
                        for (int64_t ox = 0; ox < ow; ox++) d[ox] = 0;                          \
                        continue;                                                               \
                    }                                                                           \
                    const T *restrict xr = xc + y * W;                                          \
                    for (int64_t ox = 0; ox < lo; ox++) d[ox] = 0;                              \
                    if (sw == 1)                                                                \
                        for (int64_t ox = lo; ox < hi; ox++) d[ox] = xr[x0 + ox];               \
                    else                                                                        \
                        for (int64_t ox = lo; ox < hi; ox++) d[ox] = xr[x0 + ox * sw];          \
                    for (int64_t ox = hi; ox < ow; ox++) d[ox] = 0;                             \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void im2col_body_##S(void *va, int64_t q0, int64_t q1) {                             \
        const conv_args *a = va;                                                                \
        im2col_rng_##S(a->out, a->ldcol, a->in, a->N, a->C, a->H, a->W, a->kh, a->kw, a->sh,    \
                       a->sw, a->ph, a->pw, a->dh, a->dw, a->oh, a->ow, q0, q1);                \
    }                                                                                           \
    static void im2col_##S(T *col, int64_t ldcol, const T *x, int64_t N, int64_t C, int64_t H,  \
                           int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,   \
                           int dw, int64_t oh, int64_t ow) {                                    \
        conv_args a = { col, x, NULL, ldcol, N, C, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, \
                        false };                                                                \
        int64_t units = C * kh * kw * N;                                                        \
        wf__parallel_for(units, conv_grain(units, oh * ow), im2col_body_##S, &a);               \
    }                                                                                           \
    /* planes [q0, q1) of col2im below */                                                       \
    static void col2im_rng_##S(T *x, const T *col, const T *bias, int64_t ldcol, int64_t N,     \
                               int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, \
                               int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,          \
                               bool accumulate, int64_t q0, int64_t q1) {                       \
        (void)N;                                                                                \
        int64_t L = oh * ow;                                                                    \
        bool plain = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;            \
        bool same3 = kw == 3 && sw == 1 && dw == 1 && pw == 1 && ow == W && W >= 2;             \
        for (int64_t pl = q0; pl < q1; pl++) {                                                  \
            int64_t n = pl / C, c = pl % C;                                                     \
            T *restrict xc = x + pl * H * W;                                                    \
            T v0 = bias ? bias[c] : (T)0;                                                       \
            if (plain && !accumulate) { /* 1x1: the plane is the row segment */                 \
                const T *restrict s = col + c * ldcol + n * L;                                  \
                for (int64_t e = 0; e < L; e++) xc[e] = v0 + s[e];                              \
                continue;                                                                       \
            }                                                                                   \
            if (!accumulate)                                                                    \
                for (int64_t e = 0; e < H * W; e++) xc[e] = v0;                                 \
            if (same3) {                                                                        \
                /* 3-wide kernel, stride 1, padding 1, same width: the three kernel columns  \
                 * of a row are added in one pass over the input row (in the order j = 0, 1, \
                 * 2 of the general loop, so the same bits), edges peeled */                  \
                for (int i = 0; i < kh; i++) {                                                  \
                    const T *s0 = col + (c * kh + i) * 3 * ldcol + n * L;                       \
                    for (int64_t oy = 0; oy < oh; oy++) {                                       \
                        int64_t y = oy * sh - ph + (int64_t)i * dh;                             \
                        if (y < 0 || y >= H) continue;                                          \
                        T *restrict xr = xc + y * W;                                            \
                        const T *restrict a = s0 + oy * ow, *restrict b = a + ldcol;            \
                        const T *restrict d = b + ldcol;                                        \
                        xr[0] = (xr[0] + a[1]) + b[0];                                          \
                        for (int64_t x = 1; x < W - 1; x++) xr[x] = ((xr[x] + a[x + 1]) + b[x]) + d[x - 1]; \
                        xr[W - 1] = (xr[W - 1] + b[W - 1]) + d[W - 2];                          \
                    }                                                                           \
                }                                                                               \
                continue;                                                                       \
            }                                                                                   \
            for (int i = 0; i < kh; i++)                                                        \
                for (int j = 0; j < kw; j++) {                                                  \
                    const T *src = col + ((c * kh + i) * kw + j) * ldcol + n * L;               \
                    int64_t x0 = (int64_t)j * dw - pw, lo, hi;                                  \
                    inner_range(x0, sw, W, ow, &lo, &hi);                                       \
                    for (int64_t oy = 0; oy < oh; oy++) {                                       \
                        int64_t y = oy * sh - ph + (int64_t)i * dh;                             \
                        if (y < 0 || y >= H) continue;                                          \
                        T *restrict xr = xc + y * W;                                            \
                        const T *restrict s = src + oy * ow;                                    \
                        if (sw == 1)                                                            \
                            for (int64_t ox = lo; ox < hi; ox++) xr[x0 + ox] += s[ox];          \
                        else                                                                    \
                            for (int64_t ox = lo; ox < hi; ox++) xr[x0 + ox * sw] += s[ox];     \
                    }                                                                           \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void col2im_body_##S(void *va, int64_t q0, int64_t q1) {                             \
        const conv_args *a = va;                                                                \
        col2im_rng_##S(a->out, a->in, a->bias, a->ldcol, a->N, a->C, a->H, a->W, a->kh, a->kw,  \
                       a->sh, a->sw, a->ph, a->pw, a->dh, a->dw, a->oh, a->ow, a->accumulate, q0, q1); \
    }                                                                                           \
    /* the adjoint; accumulate: add into x, else overwrite it starting from bias[c] or 0 */     \
    static void col2im_##S(T *x, const T *col, const T *bias, int64_t ldcol, int64_t N,         \
                           int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw,     \
                           int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,              \
                           bool accumulate) {                                                   \
        conv_args a = { x, col, bias, ldcol, N, C, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, \
                        accumulate };                                                           \
        wf__parallel_for(N * C, conv_grain(N * C, H * W), col2im_body_##S, &a);                 \
    }

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

static int bad_dtype(const char *what, wf_dtype dt) {
    return wf__error(WF_EDTYPE, "%s (cpu): dtype %s is not supported (float32/float64 only)", what,
                     wf_dtype_name(dt));
}

int wf__cpu_im2col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,
                   int64_t ow, wf_device dev) {
    return wf__cpu_im2col_batch(col, x, dt, 1, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dev);
}

int wf__cpu_col2im(void *x, const void *col, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,
                   int64_t ow, wf_device dev) {
    (void)dev;
    int64_t L = oh * ow;
    switch (dt) {
    case WF_F32: col2im_f32(x, col, NULL, L, 1, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, true); return 0;
    case WF_F64: col2im_f64(x, col, NULL, L, 1, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, true); return 0;
    default: return bad_dtype("col2im", dt);
    }
}

int wf__cpu_im2col_batch(void *col, const void *x, wf_dtype dt, int64_t N, int64_t C, int64_t H,
                         int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                         int64_t oh, int64_t ow, wf_device dev) {
    (void)dev;
    int64_t ld = N * oh * ow;
    switch (dt) {
    case WF_F32: im2col_f32(col, ld, x, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    case WF_F64: im2col_f64(col, ld, x, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    default: return bad_dtype("im2col", dt);
    }
}

int wf__cpu_col2im_batch(void *x, const void *col, const void *bias, wf_dtype dt, int64_t N,
                         int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph,
                         int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    (void)dev;
    int64_t ld = N * oh * ow;
    switch (dt) {
    case WF_F32: col2im_f32(x, col, bias, ld, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, false); return 0;
    case WF_F64: col2im_f64(x, col, bias, ld, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, false); return 0;
    default: return bad_dtype("col2im", dt);
    }
}
