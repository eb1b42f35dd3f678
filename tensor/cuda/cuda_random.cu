/* tensor/cuda/cuda_random.cu: random fills (uniform, normal, integers, Bernoulli) on the GPU,
 * the CUDA twin of tensor/cpu/random.c.
 *
 * A file of its own because it must stay bit-identical to the CPU's layout: a change to one
 * of the two files needs the same change in the other, and keeping the Philox stream here,
 * apart from the other elementwise kernels, makes that pair easy to find. */
#include "cuda_common.cuh"

#define THREADS 256

#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- random
 * The layout of tensor/cpu/random.c, bit for bit: Philox4x32-10 of wf__philox4x32, element
 * i of contiguous y, the same float/double arithmetic with every rounding explicit (__f*_rn
 * and __d*_rn keep nvcc from contracting into FMAs, which the CPU build does not do). The
 * Box-Muller log/sin/cos are weft's own (tensor/random_math.h), shared with the CPU, so
 * normals agree bit for bit too. */

#include "../random_math.h"

__device__ __forceinline__ void philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}
__device__ __forceinline__ float u01(uint32_t x) { return __fmul_rn(__uint2float_rn(x >> 8), 1.0f / 16777216.0f); }
__device__ __forceinline__ double u01d(uint32_t hi, uint32_t lo) {
    return __dmul_rn(__ull2double_rn((((uint64_t)hi << 32) | lo) >> 11), 1.0 / 9007199254740992.0);
}

__device__ __forceinline__ uint16_t to_half_bits(float v, bool bf) { return bf ? wfc_f_to_bf16(v) : wfc_f_to_h(v); }
__device__ __forceinline__ float from_half_bits(uint16_t b, bool bf) { return bf ? wfc_bf16_to_f(b) : wfc_h_to_f(b); }

__device__ __forceinline__ uint16_t half_below(float v, float hi_f, bool check, bool bf) {
    uint16_t b = to_half_bits(v, bf);
    if (!check) return b;
    uint16_t hb = to_half_bits(hi_f, bf);
    float got = from_half_bits(b, bf), hv = from_half_bits(hb, bf);
    if (!(got >= hv)) return b;
    if (hv > 0) return (uint16_t)(hb - 1);
    if (hv == 0) return 0x8001;
    return (uint16_t)(hb + 1);
}

__device__ __forceinline__ void store_f(char *y, int64_t i, int dt, float v, float hi_f, bool check) {
    switch (dt) {
    case WF_F32:
        if (check && v >= hi_f) v = ::nextafterf(hi_f, -(float)INFINITY);
        ((float *)y)[i] = v;
        break;
    case WF_F16: ((uint16_t *)y)[i] = half_below(v, hi_f, check, false); break;
    case WF_BF16: ((uint16_t *)y)[i] = half_below(v, hi_f, check, true); break;
    default: wfc_st<double>(y + i * wfc_dtype_size(dt), dt, (double)v); break;
    }
}

__global__ void uniform_f_kernel(char *y, int dt, int64_t n, uint64_t seed, uint64_t offset, float lo_f,
                                 float span_f, float hi_f, bool check) {
    int64_t nc = (n + 3) / 4;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
#pragma unroll
        for (int l = 0; l < 4; l++)
            if (4 * c + l < n) store_f(y, 4 * c + l, dt, __fadd_rn(lo_f, __fmul_rn(span_f, u01(r[l]))), hi_f, check);
    }
}
__global__ void uniform_d_kernel(double *y, int64_t n, uint64_t seed, uint64_t offset, double lo, double span,
                                 double hi, bool check) {
    int64_t nc = (n + 1) / 2;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
#pragma unroll
        for (int l = 0; l < 2; l++)
            if (2 * c + l < n) {
                double v = __dadd_rn(lo, __dmul_rn(span, u01d(r[2 * l], r[2 * l + 1])));
                if (check && v >= hi) v = ::nextafter(hi, -(double)INFINITY);
                y[2 * c + l] = v;
            }
    }
}

extern "C" int wf__cuda_rand_uniform(const wf_cuda_view *y, uint64_t seed, uint64_t offset, double lo, double hi,
                                     int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "rand_uniform", &st);
    /* a captured launch keeps its seed and offset: every replay would draw the same numbers */
    if (!rc) rc = wf__cuda_refuse_in_capture(dev, "rand_uniform (a random op, e.g. dropout > 0: its seed and offset would "
                                                 "be replayed unchanged, the same numbers every step)");
    if (rc) return rc;
    int64_t n = wfc_numel(y);
    if (!n) return 0;
    bool check = hi > lo;
    if (y->dtype == WF_F64)
        uniform_d_kernel<<<wfc_blocks((n + 1) / 2, THREADS, dev), THREADS, 0, st>>>(
            (double *)y->data, n, seed, offset, lo, hi - lo, hi, check);
    else
        uniform_f_kernel<<<wfc_blocks((n + 3) / 4, THREADS, dev), THREADS, 0, st>>>(
            (char *)y->data, y->dtype, n, seed, offset, (float)lo, (float)(hi - lo), (float)hi, check);
    return wfc_check("rand_uniform kernel", dev);
}

#define TWO_PI_F 6.2831853071795864769f
#define TWO_PI 6.2831853071795864769

__global__ void normal_f_kernel(char *y, int dt, int64_t n, uint64_t seed, uint64_t offset, float mean_f, float std_f) {
    int64_t nc = (n + 1) / 2;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
        float u1 = __fmul_rn(__uint2float_rn((r[0] >> 8) + 1), 1.0f / 16777216.0f);
        float u2 = u01(r[1]);
        double rad = __dsqrt_rn(__dmul_rn(-2.0, wf__rm_log((double)u1))), sn, cs;
        wf__rm_sincos(__dmul_rn(TWO_PI, (double)u2), &sn, &cs);
        float zc = __double2float_rn(__dmul_rn(rad, cs)), zs = __double2float_rn(__dmul_rn(rad, sn));
        store_f(y, 2 * c, dt, __fadd_rn(mean_f, __fmul_rn(std_f, zc)), 0, false);
        if (2 * c + 1 < n) store_f(y, 2 * c + 1, dt, __fadd_rn(mean_f, __fmul_rn(std_f, zs)), 0, false);
    }
}
__global__ void normal_d_kernel(double *y, int64_t n, uint64_t seed, uint64_t offset, double mean, double sd) {
    int64_t nc = (n + 1) / 2;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
        double u1 = __dsub_rn(1.0, u01d(r[0], r[1]));
        double u2 = u01d(r[2], r[3]);
        double rad = __dsqrt_rn(__dmul_rn(-2.0, wf__rm_log(u1))), sn, cs;
        wf__rm_sincos(__dmul_rn(TWO_PI, u2), &sn, &cs);
        y[2 * c] = __dadd_rn(mean, __dmul_rn(sd, __dmul_rn(rad, cs)));
        if (2 * c + 1 < n) y[2 * c + 1] = __dadd_rn(mean, __dmul_rn(sd, __dmul_rn(rad, sn)));
    }
}

extern "C" int wf__cuda_rand_normal(const wf_cuda_view *y, uint64_t seed, uint64_t offset, double mean, double sd,
                                    int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "rand_normal", &st);
    /* a captured launch keeps its seed and offset: every replay would draw the same numbers */
    if (!rc) rc = wf__cuda_refuse_in_capture(dev, "rand_normal (a random op, e.g. dropout > 0: its seed and offset would "
                                                 "be replayed unchanged, the same numbers every step)");
    if (rc) return rc;
    int64_t n = wfc_numel(y);
    if (!n) return 0;
    unsigned g = wfc_blocks((n + 1) / 2, THREADS, dev);
    if (y->dtype == WF_F64) normal_d_kernel<<<g, THREADS, 0, st>>>((double *)y->data, n, seed, offset, mean, sd);
    else normal_f_kernel<<<g, THREADS, 0, st>>>((char *)y->data, y->dtype, n, seed, offset, (float)mean, (float)sd);
    return wfc_check("rand_normal kernel", dev);
}

__device__ __forceinline__ void store_int(char *y, int64_t i, int dt, int64_t v) {
    switch (dt) {
    case WF_I64: ((int64_t *)y)[i] = v; break;
    case WF_I32: ((int32_t *)y)[i] = (int32_t)v; break;
    case WF_U8: ((uint8_t *)y)[i] = (uint8_t)v; break;
    case WF_BOOL: ((uint8_t *)y)[i] = v != 0; break;
    default: wfc_st<double>(y + i * wfc_dtype_size(dt), dt, (double)v); break;
    }
}

__global__ void randint_kernel(char *y, int dt, int64_t n, uint64_t seed, uint64_t offset, int64_t lo, uint64_t range) {
    bool small = range <= ((uint64_t)1 << 32);
    int64_t per = small ? 4 : 2, nc = (n + per - 1) / per;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
        if (small) {
            for (int l = 0; l < 4; l++)
                if (4 * c + l < n) store_int(y, 4 * c + l, dt, (int64_t)((uint64_t)lo + (uint64_t)r[l] % range));
        } else {
            for (int l = 0; l < 2; l++)
                if (2 * c + l < n) {
                    uint64_t w = ((uint64_t)r[2 * l] << 32) | r[2 * l + 1];
                    store_int(y, 2 * c + l, dt, (int64_t)((uint64_t)lo + w % range));
                }
        }
    }
}

extern "C" int wf__cuda_rand_int(const wf_cuda_view *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "rand_int", &st);
    /* a captured launch keeps its seed and offset: every replay would draw the same numbers */
    if (!rc) rc = wf__cuda_refuse_in_capture(dev, "rand_int (a random op, e.g. dropout > 0: its seed and offset would "
                                                 "be replayed unchanged, the same numbers every step)");
    if (rc) return rc;
    int64_t n = wfc_numel(y);
    if (!n) return 0;
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    if (range == 0) range = 1;
    int64_t per = range <= ((uint64_t)1 << 32) ? 4 : 2;
    randint_kernel<<<wfc_blocks((n + per - 1) / per, THREADS, dev), THREADS, 0, st>>>(
        (char *)y->data, y->dtype, n, seed, offset, lo, range);
    return wfc_check("rand_int kernel", dev);
}

__global__ void bernoulli_kernel(char *y, int dt, int64_t n, uint64_t seed, uint64_t offset, const char *pp,
                                 wfc_geo pg, int pdt, float pf) {
    int64_t nc = (n + 3) / 4;
    GRID_LOOP(c, nc) {
        uint32_t r[4];
        philox(seed, offset + (uint64_t)c, r);
#pragma unroll
        for (int l = 0; l < 4; l++) {
            int64_t i = 4 * c + l;
            if (i >= n) break;
            float pi = pp ? wfc_ld<float>(pp + wfc_geo_off(pg, i), pdt) : pf;
            float one = u01(r[l]) < pi ? 1.0f : 0.0f;
            switch (dt) {
            case WF_F32: ((float *)y)[i] = one; break;
            case WF_F64: ((double *)y)[i] = one; break;
            case WF_F16: ((uint16_t *)y)[i] = one != 0.0f ? 0x3c00 : 0; break;
            case WF_BF16: ((uint16_t *)y)[i] = one != 0.0f ? 0x3f80 : 0; break;
            default: wfc_st<float>(y + i * wfc_dtype_size(dt), dt, one); break;
            }
        }
    }
}

extern "C" int wf__cuda_bernoulli(const wf_cuda_view *y, uint64_t seed, uint64_t offset, const wf_cuda_view *p_t,
                                  double p, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "bernoulli", &st);
    /* a captured launch keeps its seed and offset: every replay would draw the same numbers */
    if (!rc) rc = wf__cuda_refuse_in_capture(dev, "bernoulli (a random op, e.g. dropout > 0: its seed and offset would "
                                                 "be replayed unchanged, the same numbers every step)");
    if (rc) return rc;
    int64_t n = wfc_numel(y);
    if (!n) return 0;
    wfc_geo pg;
    memset(&pg, 0, sizeof pg);
    if (p_t) pg = wfc_make_geo(p_t);
    bernoulli_kernel<<<wfc_blocks((n + 3) / 4, THREADS, dev), THREADS, 0, st>>>(
        (char *)y->data, y->dtype, n, seed, offset, p_t ? (const char *)p_t->data : NULL, pg,
        p_t ? p_t->dtype : WF_F32, (float)p);
    return wfc_check("bernoulli kernel", dev);
}
