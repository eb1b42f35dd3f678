/* tensor/cpu/pool.c: 2-D max and average pooling on contiguous [N,C,H,W] (f32/f64).
 *
 * Every kernel works plane by plane (N*C planes of H*W, taken from the last two dims of the
 * input and output), planes in chunks on weft's thread pool (thread_pool.c).
 *  - max_pool2d: padding counts as -inf; argmax (i64, may be NULL) gets the flat index
 *    y*W + x inside the plane; NaN wins (as PyTorch). Ties keep the first element.
 *  - max_pool2d_backward: ZEROES gx itself, then gx[plane][argmax] += gy.
 *  - avg_pool2d: PyTorch's divisor: with count_include_pad, the window clipped to the padded
 *    input (H + ph, W + pw); without, the window clipped to the input.
 *  - avg_pool2d_backward: ZEROES gx itself, then spreads gy / divisor over each window.
 * The output size (oh, ow) is read from y / gy; the front-end computes it. */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <math.h>
#include <string.h>

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* The arguments of one pooling call, for its loop over planes on weft's thread pool. */
typedef struct {
    void *y, *gx;
    int64_t *am;
    const void *x, *gy;
    const int64_t *amc;
    int64_t planes, H, W, oh, ow, HW, L, blk;
    const int *k, *s, *p, *d;
    bool cip;
} pool_args;

/* planes per chunk: ~16K units of work (plane_work per plane); one chunk below that */
static int64_t plane_grain(int64_t planes, int64_t plane_work) {
    if (planes * plane_work <= 16384 || planes < 1) return planes > 0 ? planes : 1;
    return plane_work >= 16384 ? 1 : 16384 / plane_work;
}

/* the 2x2 kernel is compiled for AVX2 too and picked at load time (as the GEMM micro-kernels) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) &&    \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(WEFT_NO_TARGET_CLONES)
#define WF_POOL_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define WF_POOL_MULTIVERSION
#endif

#define DIMS_OF(t, H, W, planes)                                                                \
    int64_t H = (t)->shape[(t)->ndim - 2], W = (t)->shape[(t)->ndim - 1];                       \
    int64_t planes = (H * W > 0) ? wf__numel((t)->ndim, (t)->shape) / (H * W) : 0

/* avg-pool window [h0,h1) x [w0,w1) of output (oy, ox) and its divisor */
static inline int64_t avg_window(int64_t oy, int64_t ox, int64_t H, int64_t W, const int k[2],
                                 const int s[2], const int p[2], bool cip, int64_t *h0,
                                 int64_t *h1, int64_t *w0, int64_t *w1) {
    int64_t hs = oy * s[0] - p[0], ws = ox * s[1] - p[1];
    int64_t he = imin(hs + k[0], H + p[0]), we = imin(ws + k[1], W + p[1]);
    int64_t pool = (he - hs) * (we - ws);
    hs = imax(hs, 0); ws = imax(ws, 0); he = imin(he, H); we = imin(we, W);
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    return cip ? pool : (he - hs) * (we - ws);
}

/* 2x2 / stride 2 max pool of `planes` planes, row by row. A candidate wins if it is greater
 * or NaN, unless the best so far is NaN already: NaN wins, ties keep the first element
 * (PyTorch). With GCC, VL outputs at a time in vector registers (the even/odd input columns
 * split by shuffles, the selects as bit masks: scalar float compares cannot be if-converted
 * under -ftrapping-math, and their branches mispredict on random data); the window position
 * (0..3) goes to kb, the flat argmax is formed from it in a second loop. */
#define POOL_SEL(m, a, b) (((a) & ~(m)) | ((b) & (m)))
/* one output at a time, the selects as integer masks on the values' bits (no branches) */
#define POOL2X2_SCALAR(T, IT)                                                                   \
    for (; i < n; i++) {                                                                        \
        int64_t ox = o0 + i;                                                                    \
        T a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], e = r1[2 * ox + 1], best = a;     \
        IT ib, ic, ie, bb, kk = 0, m;                                                           \
        memcpy(&ib, &b, sizeof ib); memcpy(&ic, &c, sizeof ic); memcpy(&ie, &e, sizeof ie);     \
        memcpy(&bb, &a, sizeof bb);                                                             \
        m = -(IT)(((b > best) | (b != b)) & (best == best));                                    \
        bb = POOL_SEL(m, bb, ib); kk = POOL_SEL(m, kk, (IT)1); memcpy(&best, &bb, sizeof best); \
        m = -(IT)(((c > best) | (c != c)) & (best == best));                                    \
        bb = POOL_SEL(m, bb, ic); kk = POOL_SEL(m, kk, (IT)2); memcpy(&best, &bb, sizeof best); \
        m = -(IT)(((e > best) | (e != e)) & (best == best));                                    \
        bb = POOL_SEL(m, bb, ie); kk = POOL_SEL(m, kk, (IT)3); memcpy(&best, &bb, sizeof best); \
        yr[ox] = best;                                                                          \
        kb[i] = kk;                                                                             \
    }
#if defined(__GNUC__) && !defined(__clang__)
/* VL outputs from the input row pair p0 / p1 (2*VL elements each) into yo[0..VL), ko[0..VL) */
#define POOL2X2_BODY(VL, MK, p0, p1, yo, ko)                                                    \
    do {                                                                                        \
        V u0, u1, w0, w1;                                                                       \
        memcpy(&u0, p0, sizeof u0); memcpy(&u1, (p0) + VL, sizeof u1);                          \
        memcpy(&w0, p1, sizeof w0); memcpy(&w1, (p1) + VL, sizeof w1);                          \
        V a = __builtin_shuffle(u0, u1, (VI)MK##_EVEN), b = __builtin_shuffle(u0, u1, (VI)MK##_ODD); \
        V c = __builtin_shuffle(w0, w1, (VI)MK##_EVEN), e = __builtin_shuffle(w0, w1, (VI)MK##_ODD); \
        VI best = (VI)a, kk = (VI){ 0 }, m;                                                     \
        m = ((b > (V)best) | (b != b)) & ((V)best == (V)best);                                  \
        best = POOL_SEL(m, best, (VI)b); kk = POOL_SEL(m, kk, (VI){ 0 } + 1);                   \
        m = ((c > (V)best) | (c != c)) & ((V)best == (V)best);                                  \
        best = POOL_SEL(m, best, (VI)c); kk = POOL_SEL(m, kk, (VI){ 0 } + 2);                   \
        m = ((e > (V)best) | (e != e)) & ((V)best == (V)best);                                  \
        best = POOL_SEL(m, best, (VI)e); kk = POOL_SEL(m, kk, (VI){ 0 } + 3);                   \
        memcpy(yo, &best, sizeof best);                                                         \
        memcpy(ko, &kk, sizeof kk);                                                             \
    } while (0)
/* full vectors (the tail of the row goes to POOL2X2_SCALAR) */
#define POOL2X2_VECTOR(T, IT, VL, MK)                                                           \
    typedef T V __attribute__((vector_size(VL * sizeof(T))));                                   \
    typedef IT VI __attribute__((vector_size(VL * sizeof(T))));                                 \
    for (; i + VL <= n; i += VL)                                                                \
        POOL2X2_BODY(VL, MK, r0 + 2 * (o0 + i), r1 + 2 * (o0 + i), yr + o0 + i, kb + i);
#else
#define POOL2X2_VECTOR(T, IT, VL, MK)
#endif
#define DEFINE_POOL2X2(T, S, IT, VL, MK)                                                        \
    WF_POOL_MULTIVERSION                                                                        \
    static void maxpool2x2_##S(T *restrict y, int64_t *restrict am, const T *restrict x,        \
                               int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow) {  \
        enum { B = 256 };                                                                       \
        IT kb[B];                                                                               \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            const T *xp = x + pl * H * W;                                                       \
            for (int64_t oy = 0; oy < oh; oy++) {                                               \
                const T *r0 = xp + 2 * oy * W, *r1 = r0 + W;                                    \
                T *yr = y + (pl * oh + oy) * ow;                                                \
                int64_t *ar = am + (pl * oh + oy) * ow;                                         \
                for (int64_t o0 = 0; o0 < ow; o0 += B) {                                        \
                    int64_t n = ow - o0 < B ? ow - o0 : B, i = 0;                               \
                    POOL2X2_VECTOR(T, IT, VL, MK)                                               \
                    POOL2X2_SCALAR(T, IT)                                                       \
                    int64_t base = 2 * oy * W + 2 * o0;                                         \
                    for (i = 0; i < n; i++)                                                     \
                        ar[o0 + i] = base + 2 * i + (kb[i] & 1) + (int64_t)(kb[i] >> 1) * W;    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

#define F32_EVEN { 0, 2, 4, 6, 8, 10, 12, 14 }
#define F32_ODD { 1, 3, 5, 7, 9, 11, 13, 15 }
#define F64_EVEN { 0, 2, 4, 6 }
#define F64_ODD { 1, 3, 5, 7 }
DEFINE_POOL2X2(float, f32, int32_t, 8, F32)
DEFINE_POOL2X2(double, f64, int64_t, 4, F64)

#define DEFINE_POOL(T, S)                                                                       \
    static void mp2x2_blocks_##S(void *va, int64_t b0, int64_t b1) {                            \
        const pool_args *a = va;                                                                \
        int64_t blk = a->blk, planes = a->planes, H = a->H, W = a->W, oh = a->oh, ow = a->ow;   \
        for (int64_t b = b0; b < b1; b++) {                                                     \
            int64_t p1 = (b + 1) * blk < planes ? (b + 1) * blk : planes;                       \
            maxpool2x2_##S((T *)a->y + b * blk * oh * ow, a->am + b * blk * oh * ow,            \
                           (const T *)a->x + b * blk * H * W, p1 - b * blk, H, W, oh, ow);      \
        }                                                                                       \
    }                                                                                           \
    static void mp_planes_##S(void *va, int64_t p0, int64_t p1) {                               \
        const pool_args *a = va;                                                                \
        T *y = a->y;                                                                            \
        int64_t *am = a->am;                                                                    \
        const T *x = a->x;                                                                      \
        int64_t H = a->H, W = a->W, oh = a->oh, ow = a->ow;                                     \
        const int *k = a->k, *s = a->s, *p = a->p, *d = a->d;                                   \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            const T *xp = x + pl * H * W;                                                       \
            T *yp = y + pl * oh * ow;                                                           \
            int64_t *ap = am ? am + pl * oh * ow : NULL;                                        \
            for (int64_t oy = 0; oy < oh; oy++)                                                 \
                for (int64_t ox = 0; ox < ow; ox++) {                                           \
                    int64_t hs = oy * s[0] - p[0], ws = ox * s[1] - p[1];                       \
                    int64_t he = imin(hs + (int64_t)(k[0] - 1) * d[0] + 1, H);                  \
                    int64_t we = imin(ws + (int64_t)(k[1] - 1) * d[1] + 1, W);                  \
                    while (hs < 0) hs += d[0];                                                  \
                    while (ws < 0) ws += d[1];                                                  \
                    T best = -(T)INFINITY;                                                      \
                    int64_t bi = hs * W + ws;                                                   \
                    for (int64_t h = hs; h < he; h += d[0])                                     \
                        for (int64_t w = ws; w < we; w += d[1]) {                               \
                            T v = xp[h * W + w];                                                \
                            if (v > best || isnan(v)) { best = v; bi = h * W + w; }             \
                            if (isnan(v)) goto done_##S;                                        \
                        }                                                                       \
                done_##S:                                                                       \
                    yp[oy * ow + ox] = best;                                                    \
                    if (ap) ap[oy * ow + ox] = bi;                                              \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void maxpool_##S(T *y, int64_t *am, const T *x, int64_t planes, int64_t H,           \
                            int64_t W, int64_t oh, int64_t ow, const int k[2], const int s[2],  \
                            const int p[2], const int d[2]) {                                   \
        int64_t plane_work = oh * ow * k[0] * k[1];                                             \
        if (k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && p[0] == 0 && p[1] == 0 &&       \
            d[0] == 1 && d[1] == 1 && am && oh * 2 <= H && ow * 2 <= W) {                       \
            /* the common 2x2/2 case: vectorized, a block of planes per task */                 \
            int64_t blk = (4096 + oh * ow - 1) / (oh * ow), nblk = (planes + blk - 1) / blk;    \
            pool_args a = { .y = y, .am = am, .x = x, .planes = planes, .H = H, .W = W, .oh = oh, \
                            .ow = ow, .blk = blk };                                             \
            wf__parallel_for(nblk, planes * plane_work <= 16384 ? nblk : 1, mp2x2_blocks_##S, &a); \
            return;                                                                             \
        }                                                                                       \
        pool_args a_ = { .y = y, .am = am, .x = x, .H = H, .W = W, .oh = oh, .ow = ow, .k = k, .s = s, .p = p, .d = d }; \
        wf__parallel_for(planes, plane_grain(planes, plane_work), mp_planes_##S, &a_);          \
    }                                                                                           \
    static void mpbw_planes_##S(void *va, int64_t p0, int64_t p1) {                             \
        const pool_args *a = va;                                                                \
        T *gx = a->gx;                                                                          \
        const T *gy = a->gy;                                                                    \
        const int64_t *am = a->amc;                                                             \
        int64_t HW = a->HW, L = a->L;                                                           \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            T *g = gx + pl * HW;                                                                \
            for (int64_t i = 0; i < HW; i++) g[i] = 0;                                          \
            const T *gp = gy + pl * L;                                                          \
            const int64_t *ap = am + pl * L;                                                    \
            for (int64_t i = 0; i < L; i++) g[ap[i]] += gp[i];                                  \
        }                                                                                       \
    }                                                                                           \
    static void maxpool_bw_##S(T *gx, const T *gy, const int64_t *am, int64_t planes,           \
                               int64_t HW, int64_t L) {                                         \
        int64_t plane_work = HW + L;                                                            \
        pool_args a_ = { .gx = gx, .gy = gy, .amc = am, .HW = HW, .L = L };                     \
        wf__parallel_for(planes, plane_grain(planes, plane_work), mpbw_planes_##S, &a_);        \
    }                                                                                           \
    static void ap_planes_##S(void *va, int64_t p0, int64_t p1) {                               \
        const pool_args *a = va;                                                                \
        T *y = a->y;                                                                            \
        const T *x = a->x;                                                                      \
        int64_t H = a->H, W = a->W, oh = a->oh, ow = a->ow;                                     \
        const int *k = a->k, *s = a->s, *p = a->p;                                              \
        bool cip = a->cip;                                                                      \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            const T *xp = x + pl * H * W;                                                       \
            T *yp = y + pl * oh * ow;                                                           \
            for (int64_t oy = 0; oy < oh; oy++)                                                 \
                for (int64_t ox = 0; ox < ow; ox++) {                                           \
                    int64_t h0, h1, w0, w1;                                                     \
                    int64_t div = avg_window(oy, ox, H, W, k, s, p, cip, &h0, &h1, &w0, &w1);   \
                    T acc = 0;                                                                  \
                    for (int64_t h = h0; h < h1; h++)                                           \
                        for (int64_t w = w0; w < w1; w++) acc += xp[h * W + w];                 \
                    yp[oy * ow + ox] = div > 0 ? acc / (T)div : (T)0;                           \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void avgpool_##S(T *y, const T *x, int64_t planes, int64_t H, int64_t W, int64_t oh, \
                            int64_t ow, const int k[2], const int s[2], const int p[2],         \
                            bool cip) {                                                         \
        int64_t plane_work = oh * ow * k[0] * k[1];                                             \
        pool_args a_ = { .y = y, .x = x, .H = H, .W = W, .oh = oh, .ow = ow, .k = k, .s = s, .p = p, .cip = cip }; \
        wf__parallel_for(planes, plane_grain(planes, plane_work), ap_planes_##S, &a_);          \
    }                                                                                           \
    static void apbw_planes_##S(void *va, int64_t p0, int64_t p1) {                             \
        const pool_args *a = va;                                                                \
        T *gx = a->gx;                                                                          \
        const T *gy = a->gy;                                                                    \
        int64_t H = a->H, W = a->W, oh = a->oh, ow = a->ow;                                     \
        const int *k = a->k, *s = a->s, *p = a->p;                                              \
        bool cip = a->cip;                                                                      \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            T *g = gx + pl * H * W;                                                             \
            for (int64_t i = 0; i < H * W; i++) g[i] = 0;                                       \
            const T *gp = gy + pl * oh * ow;                                                    \
            for (int64_t oy = 0; oy < oh; oy++)                                                 \
                for (int64_t ox = 0; ox < ow; ox++) {                                           \
                    int64_t h0, h1, w0, w1;                                                     \
                    int64_t div = avg_window(oy, ox, H, W, k, s, p, cip, &h0, &h1, &w0, &w1);   \
                    if (div <= 0) continue;                                                     \
                    T v = gp[oy * ow + ox] / (T)div;                                            \
                    for (int64_t h = h0; h < h1; h++)                                           \
                        for (int64_t w = w0; w < w1; w++) g[h * W + w] += v;                    \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void avgpool_bw_##S(T *gx, const T *gy, int64_t planes, int64_t H, int64_t W,        \
                               int64_t oh, int64_t ow, const int k[2], const int s[2],          \
                               const int p[2], bool cip) {                                      \
        int64_t plane_work = H * W + oh * ow * k[0] * k[1];                                     \
        pool_args a_ = { .gx = gx, .gy = gy, .H = H, .W = W, .oh = oh, .ow = ow, .k = k, .s = s, .p = p, .cip = cip }; \
        wf__parallel_for(planes, plane_grain(planes, plane_work), apbw_planes_##S, &a_);        \
    }

DEFINE_POOL(float, f32)
DEFINE_POOL(double, f64)

static int bad(const char *op, wf_dtype dt) {
    return wf__error(WF_EDTYPE, "%s (cpu): dtype %s is not supported (float32/float64 only)", op,
                     wf_dtype_name(dt));
}

int wf__cpu_max_pool2d(wf_tensor *y, wf_tensor *argmax, const wf_tensor *x, const int k[2],
                       const int s[2], const int p[2], const int d[2]) {
    DIMS_OF(x, H, W, planes);
    int64_t oh = y->shape[y->ndim - 2], ow = y->shape[y->ndim - 1];
    int64_t *am = argmax ? (int64_t *)wf__host_ptr(argmax) : NULL;
    switch (x->dtype) {
    case WF_F32:
        maxpool_f32((float *)wf__host_ptr(y), am, (const float *)wf__host_ptr(x), planes, H, W, oh,
                    ow, k, s, p, d);
        return 0;
    case WF_F64:
        maxpool_f64((double *)wf__host_ptr(y), am, (const double *)wf__host_ptr(x), planes, H, W,
                    oh, ow, k, s, p, d);
        return 0;
    default: return bad("max_pool2d", x->dtype);
    }
}

int wf__cpu_max_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *argmax) {
    DIMS_OF(gx, H, W, planes);
    int64_t L = gy->shape[gy->ndim - 2] * gy->shape[gy->ndim - 1];
    const int64_t *am = (const int64_t *)wf__host_ptr(argmax);
    switch (gx->dtype) {
    case WF_F32:
        maxpool_bw_f32((float *)wf__host_ptr(gx), (const float *)wf__host_ptr(gy), am, planes, H * W, L);
        return 0;
    case WF_F64:
        maxpool_bw_f64((double *)wf__host_ptr(gx), (const double *)wf__host_ptr(gy), am, planes, H * W, L);
        return 0;
    default: return bad("max_pool2d_backward", gx->dtype);
    }
}

int wf__cpu_avg_pool2d(wf_tensor *y, const wf_tensor *x, const int k[2], const int s[2],
                       const int p[2], bool count_include_pad) {
    DIMS_OF(x, H, W, planes);
    int64_t oh = y->shape[y->ndim - 2], ow = y->shape[y->ndim - 1];
    switch (x->dtype) {
    case WF_F32:
        avgpool_f32((float *)wf__host_ptr(y), (const float *)wf__host_ptr(x), planes, H, W, oh, ow,
                    k, s, p, count_include_pad);
        return 0;
    case WF_F64:
        avgpool_f64((double *)wf__host_ptr(y), (const double *)wf__host_ptr(x), planes, H, W, oh,
                    ow, k, s, p, count_include_pad);
        return 0;
    default: return bad("avg_pool2d", x->dtype);
    }
}

int wf__cpu_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const int k[2],
                                const int s[2], const int p[2], bool count_include_pad) {
    DIMS_OF(gx, H, W, planes);
    int64_t oh = gy->shape[gy->ndim - 2], ow = gy->shape[gy->ndim - 1];
    switch (gx->dtype) {
    case WF_F32:
        avgpool_bw_f32((float *)wf__host_ptr(gx), (const float *)wf__host_ptr(gy), planes, H, W,
                       oh, ow, k, s, p, count_include_pad);
        return 0;
    case WF_F64:
        avgpool_bw_f64((double *)wf__host_ptr(gx), (const double *)wf__host_ptr(gy), planes, H, W,
                       oh, ow, k, s, p, count_include_pad);
        return 0;
    default: return bad("avg_pool2d_backward", gx->dtype);
    }
}
