/* tensor/cpu/random.c: random fills from the Philox4x32-10 stream (seed, offset).
 *
 * THE LAYOUT (the CUDA kernels implement exactly the same, so a tensor drawn with the same
 * seed and offset is bit-identical on both devices; change both or neither):
 *
 *   y is contiguous; element i is its linear row-major index. philox(c) below means
 *   wf__philox4x32(seed, offset + c) -> r[0..3]; u01(x) = (x >> 8) * 2^-24 (wf__u01);
 *   u01d(a, b) = (((a << 32) | b) >> 11) * 2^-53 (wf__u01d).
 *
 *   uniform [lo,hi)   f32/f16/bf16: r = philox(i/4); u = u01(r[i%4]);
 *                        v = (float)lo + (float)(hi - lo) * u  (float arithmetic),
 *                        rounded to y's dtype (nearest even)
 *                     f64: r = philox(i/2); u = u01d(r[2*(i%2)], r[2*(i%2)+1]);
 *                        v = lo + (hi - lo) * u  (double arithmetic)
 *                     If rounding made v >= hi (hi > lo), v becomes the largest value of
 *                     y's dtype below hi, so results stay in [lo,hi).
 *                     counters used: ceil(n/4) (f32/f16/bf16), ceil(n/2) (f64)
 *   normal            r = philox(i/2)   (both elements of a pair share one counter)
 *                     f32/f16/bf16 (float math): u1 = ((r[0] >> 8) + 1) * 2^-24 in (0,1],
 *                        u2 = u01(r[1]); in double, with weft's own log/sincos
 *                        (tensor/random_math.h): rad = sqrt(-2 log(u1)),
 *                        z = (float)(i even ? rad * cos(2 pi u2) : rad * sin(2 pi u2));
 *                        v = (float)mean + (float)std * z, rounded to y's dtype
 *                     f64 (double math): u1 = 1 - u01d(r[0], r[1]) in (0,1],
 *                        u2 = u01d(r[2], r[3]); same z; v = mean + std * z
 *                     counters used: ceil(n/2)
 *   randint [lo,hi)   range = hi - lo (as uint64). range <= 2^32: r = philox(i/4),
 *                        v = lo + r[i%4] % range; counters ceil(n/4)
 *                     range > 2^32: r = philox(i/2), w = (r[2*(i%2)] << 32) | r[2*(i%2)+1],
 *                        v = lo + w % range; counters ceil(n/2)
 *                     v is stored exactly in i64 (and i32/u8 when it fits), else cast.
 *   bernoulli         r = philox(i/4); u = u01(r[i%4]); y = (u < p) ? 1 : 0 with p either
 *                     the scalar p or element i of p_t (p_t has y's shape, any strides,
 *                     compared in float: u < (float)p); counters ceil(n/4)
 *
 * The front-end reserves the counters (wf__rng_reserve) and passes the first as offset. */
#include "cpu_kernels.h"
#include "../random_math.h"
#include "weft_config.h"

#include <math.h>
#include <string.h>

#define PAR_MIN_ELEMS 16384
#define TWO_PI_F 6.2831853071795864769f
#define TWO_PI 6.2831853071795864769

/* ---------------------------------------------------------------- dtype helpers */

/* Round float v to dt and keep it below hi (see the layout comment). Returns the bits. */
static inline uint16_t half_below(float v, float hi_f, bool check, bool bf) {
    uint16_t b = bf ? wf__f32_to_bf16(v) : wf__f32_to_f16(v);
    if (!check) return b;
    uint16_t hb = bf ? wf__f32_to_bf16(hi_f) : wf__f32_to_f16(hi_f);
    float got = bf ? wf__bf16_to_f32(b) : wf__f16_to_f32(b);
    float hv = bf ? wf__bf16_to_f32(hb) : wf__f16_to_f32(hb);
    if (!(got >= hv)) return b;
    /* the largest value of the format below hv */
    if (hv > 0) return (uint16_t)(hb - 1);
    if (hv == 0) return 0x8001;                 /* smallest negative subnormal */
    return (uint16_t)(hb + 1);                  /* negative: one step away from zero */
}

static inline void store_f(char *y, int64_t i, wf_dtype dt, float v, float hi_f, bool check) {
    switch (dt) {
    case WF_F32: {
        if (check && v >= hi_f) v = nextafterf(hi_f, -INFINITY);
        ((float *)y)[i] = v;
        break;
    }
    case WF_F16: ((uint16_t *)y)[i] = half_below(v, hi_f, check, false); break;
    case WF_BF16: ((uint16_t *)y)[i] = half_below(v, hi_f, check, true); break;
    default: wf__store(y + (size_t)i * wf_dtype_size(dt), dt, v); break;
    }
}

/* one context for every fill: each loop below reads the fields it needs */
typedef struct {
    char *yp;
    uint64_t seed;
    uint64_t offset;
    int64_t n;
    wf_dtype dt;
    bool check;
    double span;
    double lo;
    double hi;
    float lo_f;
    float span_f;
    float hi_f;
    double mean;
    double std;
    float mean_f;
    float std_f;
    uint64_t range;
    int64_t ilo;
    const wf_tensor *p_t;
    const char *pp;
    float pf;
} rng_ctx;

static void uniform_f64_chunks(void *v, int64_t c0, int64_t c1);
static void uniform_f32_chunks(void *v, int64_t c0, int64_t c1);
static void normal_f64_chunks(void *v, int64_t c0, int64_t c1);
static void normal_f32_chunks(void *v, int64_t c0, int64_t c1);
static void randint_32bit_chunks(void *v, int64_t c0, int64_t c1);
static void randint_64bit_chunks(void *v, int64_t c0, int64_t c1);
static void bernoulli_chunks(void *v, int64_t c0, int64_t c1);

/* ---------------------------------------------------------------- uniform */

int wf__cpu_rand_uniform(wf_tensor *y, uint64_t seed, uint64_t offset, double lo, double hi) {
    int64_t n = wf__numel(y->ndim, y->shape);
    if (n == 0) return 0;
    char *yp = wf__host_ptr(y);
    wf_dtype dt = y->dtype;
    if (dt == WF_F64) {
        int64_t nc = (n + 1) / 2;
        bool check = hi > lo;
        double span = hi - lo;
        (void)check;
        rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .check = check, .span = span, .lo = lo, .hi = hi };
        wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, uniform_f64_chunks, &k_);
        return 0;
    }
    int64_t nc = (n + 3) / 4;
    float lo_f = (float)lo, span_f = (float)(hi - lo), hi_f = (float)hi;
    bool check = hi > lo;
    rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .dt = dt, .check = check, .lo_f = lo_f, .span_f = span_f, .hi_f = hi_f };
    wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, uniform_f32_chunks, &k_);
    return 0;
}

/* ---------------------------------------------------------------- normal */

int wf__cpu_rand_normal(wf_tensor *y, uint64_t seed, uint64_t offset, double mean, double std) {
    int64_t n = wf__numel(y->ndim, y->shape);
    if (n == 0) return 0;
    char *yp = wf__host_ptr(y);
    wf_dtype dt = y->dtype;
    int64_t nc = (n + 1) / 2;
    if (dt == WF_F64) {
        rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .mean = mean, .std = std };
        wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, normal_f64_chunks, &k_);
        return 0;
    }
    float mean_f = (float)mean, std_f = (float)std;
    rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .dt = dt, .mean_f = mean_f, .std_f = std_f };
    wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, normal_f32_chunks, &k_);
    return 0;
}

/* ---------------------------------------------------------------- integers */

static inline void store_int(char *y, int64_t i, wf_dtype dt, int64_t v) {
    switch (dt) {
    case WF_I64: ((int64_t *)y)[i] = v; break;
    case WF_I32: ((int32_t *)y)[i] = (int32_t)v; break;
    case WF_U8: ((uint8_t *)y)[i] = (uint8_t)v; break;
    case WF_BOOL: ((uint8_t *)y)[i] = v != 0; break;
    default: wf__store(y + (size_t)i * wf_dtype_size(dt), dt, (double)v); break;
    }
}

int wf__cpu_rand_int(wf_tensor *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi) {
    int64_t n = wf__numel(y->ndim, y->shape);
    if (n == 0) return 0;
    char *yp = wf__host_ptr(y);
    wf_dtype dt = y->dtype;
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    if (range == 0) range = 1;   /* lo == hi is refused by the front-end; stay defined */
    if (range <= ((uint64_t)1 << 32)) {
        int64_t nc = (n + 3) / 4;
        rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .dt = dt, .ilo = lo, .range = range };
        wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, randint_32bit_chunks, &k_);
        return 0;
    }
    int64_t nc = (n + 1) / 2;
    rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .dt = dt, .ilo = lo, .range = range };
    wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, randint_64bit_chunks, &k_);
    return 0;
}

/* ---------------------------------------------------------------- bernoulli */

/* Element i of p_t (any strides) as float. */
static inline float p_at(const wf_tensor *p_t, const char *pp, int64_t i) {
    int64_t off = 0;
    for (int d = p_t->ndim - 1; d >= 0; d--) {
        int64_t s = p_t->shape[d];
        off += (i % s) * p_t->stride[d];
        i /= s;
    }
    const char *e = pp + off * (int64_t)wf_dtype_size(p_t->dtype);
    switch (p_t->dtype) {
    case WF_F32: return *(const float *)e;
    case WF_F64: return (float)*(const double *)e;
    case WF_F16: return wf__f16_to_f32(*(const uint16_t *)e);
    case WF_BF16: return wf__bf16_to_f32(*(const uint16_t *)e);
    default: return (float)wf__load(e, p_t->dtype);
    }
}

static inline void store_bit(char *y, int64_t i, wf_dtype dt, bool one) {
    switch (dt) {
    case WF_F32: ((float *)y)[i] = one ? 1.0f : 0.0f; break;
    case WF_F64: ((double *)y)[i] = one ? 1.0 : 0.0; break;
    case WF_F16: ((uint16_t *)y)[i] = one ? 0x3c00 : 0; break;
    case WF_BF16: ((uint16_t *)y)[i] = one ? 0x3f80 : 0; break;
    default: wf__store(y + (size_t)i * wf_dtype_size(dt), dt, one ? 1.0 : 0.0); break;
    }
}

int wf__cpu_bernoulli(wf_tensor *y, uint64_t seed, uint64_t offset, const wf_tensor *p_t, double p) {
    int64_t n = wf__numel(y->ndim, y->shape);
    if (n == 0) return 0;
    char *yp = wf__host_ptr(y);
    const char *pp = p_t ? wf__host_ptr(p_t) : NULL;
    wf_dtype dt = y->dtype;
    float pf = (float)p;
    int64_t nc = (n + 3) / 4;
    rng_ctx k_ = { .yp = yp, .seed = seed, .offset = offset, .n = n, .dt = dt, .p_t = p_t, .pp = pp, .pf = pf };
    wf__parallel_for(nc, n >= PAR_MIN_ELEMS ? 1024 : nc, bernoulli_chunks, &k_);
    return 0;
}

/* ---------------------------------------------------------------- the loops, per chunk of counters */

static void uniform_f64_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        for (int l = 0; l < 2 && 2 * c + l < k->n; l++) {
            double v = k->lo + k->span * wf__u01d(r[2 * l], r[2 * l + 1]);
            if (k->check && v >= k->hi) v = nextafter(k->hi, -INFINITY);
            ((double *)k->yp)[2 * c + l] = v;
        }
    }
}

static void uniform_f32_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        for (int l = 0; l < 4 && 4 * c + l < k->n; l++)
            store_f(k->yp, 4 * c + l, k->dt, k->lo_f + k->span_f * wf__u01(r[l]), k->hi_f, k->check);
    }
}

static void normal_f64_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        double u1 = 1.0 - wf__u01d(r[0], r[1]);
        double u2 = wf__u01d(r[2], r[3]);
        double rad = sqrt(-2.0 * wf__rm_log(u1)), sn, cs;
        wf__rm_sincos(TWO_PI * u2, &sn, &cs);
        ((double *)k->yp)[2 * c] = k->mean + k->std * (rad * cs);
        if (2 * c + 1 < k->n) ((double *)k->yp)[2 * c + 1] = k->mean + k->std * (rad * sn);
    }
}

static void normal_f32_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        float u1 = (float)((r[0] >> 8) + 1) * (1.0f / 16777216.0f);
        float u2 = wf__u01(r[1]);
        /* the transform in double with weft's own log/sincos (tensor/random_math.h), so the
         * CUDA kernel produces the same bits; the result rounds to float once */
        double rad = sqrt(-2.0 * wf__rm_log((double)u1)), sn, cs;
        wf__rm_sincos(TWO_PI * (double)u2, &sn, &cs);
        float zc = (float)(rad * cs), zs = (float)(rad * sn);
        store_f(k->yp, 2 * c, k->dt, k->mean_f + k->std_f * zc, 0, false);
        if (2 * c + 1 < k->n) store_f(k->yp, 2 * c + 1, k->dt, k->mean_f + k->std_f * zs, 0, false);
    }
}

static void randint_32bit_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        for (int l = 0; l < 4 && 4 * c + l < k->n; l++)
            store_int(k->yp, 4 * c + l, k->dt, (int64_t)((uint64_t)k->ilo + (uint64_t)r[l] % k->range));
    }
}

static void randint_64bit_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        for (int l = 0; l < 2 && 2 * c + l < k->n; l++) {
            uint64_t w = ((uint64_t)r[2 * l] << 32) | r[2 * l + 1];
            store_int(k->yp, 2 * c + l, k->dt, (int64_t)((uint64_t)k->ilo + w % k->range));
        }
    }
}

static void bernoulli_chunks(void *v, int64_t c0, int64_t c1) {
    const rng_ctx *k = v;
    for (int64_t c = c0; c < c1; c++) {
        uint32_t r[4];
        wf__philox4x32(k->seed, k->offset + (uint64_t)c, r);
        for (int l = 0; l < 4 && 4 * c + l < k->n; l++) {
            int64_t i = 4 * c + l;
            float pi = k->p_t ? p_at(k->p_t, k->pp, i) : k->pf;
            store_bit(k->yp, i, k->dt, wf__u01(r[l]) < pi);
        }
    }
}
