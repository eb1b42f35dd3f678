/* tensor/cuda/cuda_common.cuh: helpers shared by weft's .cu files (CUDA C++ only).
 * Device state lives in cuda_device.cu (its layout in cuda_device.cuh); dtype loads/stores,
 * strided geometry and block reductions are here. */
#ifndef WEFT_CUDA_COMMON_CUH
#define WEFT_CUDA_COMMON_CUH

#include "cuda_api.h"
#include "../env_flag.h"

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>

/* wf_use_deterministic_algorithms' setting (weft/tensor.h) */
extern "C" bool wf_are_deterministic_algorithms_enabled(void);

/* ---------------------------------------------------------------- device state (cuda_device.cu) */
/* Make dev current and return its stream (lazily created). 0 or an error (recorded). */
int wfc_begin(int dev, const char *what, cudaStream_t *stream);
int wfc_num_sms(int dev);
/* device int set to 1 by kernels that meet an out-of-range index (checked at sync) */
int *wfc_index_flag(int dev);
/* Record a CUDA failure as WF_EDEVICEFAIL naming what failed; returns the code. */
int wfc_report(cudaError_t e, const char *what, int dev);
/* After a launch: cudaGetLastError -> 0 or a recorded error. */
static inline int wfc_check(const char *what, int dev) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : wfc_report(e, what, dev);
}
/* Record an error that is not a CUDA failure. */
int wfc_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

__host__ __device__ static inline int wfc_dtype_size(int dt) {
    switch (dt) {
    case WF_F64: case WF_I64: return 8;
    case WF_F32: case WF_I32: return 4;
    case WF_F16: case WF_BF16: return 2;
    default: return 1;
    }
}
__host__ __device__ static inline bool wfc_is_float(int dt) { return dt == WF_F32 || dt == WF_F64 || dt == WF_F16 || dt == WF_BF16; }
static inline int64_t wfc_numel(const wf_cuda_view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->shape[i];
    return n;
}
static inline bool wfc_contig(const wf_cuda_view *v) {
    int64_t s = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        if (v->shape[i] != 1 && v->stride[i] != s) return false;
        s *= v->shape[i];
    }
    return true;
}
/* out[i] = sum over the k rows of A [k, m] (row pitch lda elements, dtype dt: f32 / bf16 /
 * f16) of A[r][i], in f32, stored in out_dt (dt, or f32: a half tensor's sum as reductions keep
 * it): 16-byte loads, deterministic (cuda_gemm.cu). 1 when the layout or dtypes do not fit (m a
 * multiple of 16 bytes' elements, A and its pitch 16-byte aligned), else 0 or a negative code.
 * Linear's bias gradient and the column layout's sums (cuda_reduce.cu). */
int wfc_colsum(int dt, const void *A, int64_t k, int64_t m, int64_t lda, void *out, int out_dt, int dev,
               cudaStream_t st);

/* Column sums in two deterministic passes, shared by wfc_colsum and the kernels that sum the
 * columns of what they write (gelu_backward_bias, cuda_elementwise.cu): a block of WFC_CS_TX
 * columns (or 16-byte column vectors) x WFC_CS_TY row lanes sums one chunk of rows, each lane
 * its rows in order into acc; wfc_colsum_lanes meets the lanes' sums in shared memory in lane
 * order and writes the chunk's f32 row of partials (columns c0 .. c0 + W - 1 of ncols, at row
 * blockIdx.y); wfc_colsum_finish (cuda_gemm.cu) adds each column's partials in chunk order and
 * stores them in dt. No atomics: two calls give the same bits. */
#define WFC_CS_TX 32
#define WFC_CS_TY 8
template <int W>
__device__ __forceinline__ void wfc_colsum_lanes(float (*sm)[WFC_CS_TX][W], const float *acc, int64_t c0, int64_t ncols,
                                                 float *partial) {
#pragma unroll
    for (int j = 0; j < W; j++) sm[threadIdx.y][threadIdx.x][j] = acc[j];
    __syncthreads();
    if (threadIdx.y == 0 && c0 < ncols) {
        float *out = partial + (int64_t)blockIdx.y * ncols + c0;
#pragma unroll
        for (int j = 0; j < W; j++) {
            float t = 0.f;
            for (int y = 0; y < WFC_CS_TY; y++) t += sm[y][threadIdx.x][j];
            out[j] = t;
        }
    }
}
int wfc_colsum_finish(const float *partial, int64_t chunks, int64_t m, void *out, int dt, int dev, cudaStream_t st);

/* The largest power of two (at most 256) that divides p's address: cuBLASLt's plans are
 * asked for this alignment (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), since an algorithm the
 * heuristic chose for 256-byte operands is refused by cublasLtMatmul on less. */

static inline int wfc_ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    int a = 1;
    while (a < 256 && !(u & (uintptr_t)a)) a <<= 1;
    return a;
}

static inline unsigned wfc_blocks(int64_t n, int threads, int dev) {
    int64_t b = (n + threads - 1) / threads;
    int64_t cap = (int64_t)wfc_num_sms(dev) * 32;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned)b;
}

/* ---------------------------------------------------------------- dtype conversions */
__device__ __forceinline__ float wfc_bf16_to_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
/* identical to wf__f32_to_bf16 (tensor_impl.h) */
__device__ __forceinline__ uint16_t wfc_f_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}
__device__ __forceinline__ float wfc_h_to_f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t wfc_f_to_h(float f) { return __half_as_ushort(__float2half_rn(f)); }

template <class T> struct wfc_is_int { static const bool value = false; };
template <> struct wfc_is_int<int64_t> { static const bool value = true; };

/* load one element of runtime dtype dt as T */
template <class T> __device__ __forceinline__ T wfc_ld(const char *p, int dt) {
    switch (dt) {
    case WF_F32: return (T) * (const float *)p;
    case WF_F64: return (T) * (const double *)p;
    case WF_F16: return (T)wfc_h_to_f(*(const uint16_t *)p);
    case WF_BF16: return (T)wfc_bf16_to_f(*(const uint16_t *)p);
    case WF_I64: return (T) * (const int64_t *)p;
    case WF_I32: return (T) * (const int32_t *)p;
    case WF_U8: return (T) * (const uint8_t *)p;
    default: return (T)(*(const uint8_t *)p != 0);
    }
}

/* floating -> integer as wf__store does: non-finite -> 0, else truncate */
template <class T> __device__ __forceinline__ int64_t wfc_to_i64(T v) {
    if (wfc_is_int<T>::value) return (int64_t)v;
    double d = (double)v;
    return isfinite(d) ? (int64_t)d : 0;
}

/* store v (compute type T) as runtime dtype dt */
template <class T> __device__ __forceinline__ void wfc_st(char *p, int dt, T v) {
    switch (dt) {
    case WF_F32: *(float *)p = (float)v; break;
    case WF_F64: *(double *)p = (double)v; break;
    case WF_F16: *(uint16_t *)p = wfc_f_to_h((float)v); break;
    case WF_BF16: *(uint16_t *)p = wfc_f_to_bf16((float)v); break;
    case WF_I64: *(int64_t *)p = wfc_to_i64(v); break;
    case WF_I32: *(int32_t *)p = (int32_t)wfc_to_i64(v); break;
    case WF_U8: *(uint8_t *)p = (uint8_t)wfc_to_i64(v); break;
    default: *(uint8_t *)p = (v != (T)0); break;
    }
}

/* ---------------------------------------------------------------- strided geometry
 * N operands of one shape, dims of size 1 dropped and adjacent dims coalesced where every
 * operand steps over them as one (like tensor/cpu/iter.c). Strides in bytes; dim 0 is the
 * outermost. A contiguous operand set becomes one dim. */
template <int N> struct wfc_pack {
    int ndim;
    int64_t n;
    int64_t shape[WF_CUDA_MAX_DIMS];
    int64_t st[N][WF_CUDA_MAX_DIMS];
    char *ptr[N];
    int dt[N];
};

template <int N> static wfc_pack<N> wfc_make_pack(const wf_cuda_view *const *v) {
    wfc_pack<N> p;
    const wf_cuda_view *v0 = v[0];
    int64_t shape[WF_CUDA_MAX_DIMS], st[N][WF_CUDA_MAX_DIMS];
    int d = 0;
    p.n = 1;
    for (int i = 0; i < v0->ndim; i++) p.n *= v0->shape[i];
    for (int i = 0; i < v0->ndim; i++) {
        if (v0->shape[i] == 1) continue;
        shape[d] = v0->shape[i];
        for (int k = 0; k < N; k++) st[k][d] = v[k]->stride[i] * wfc_dtype_size(v[k]->dtype);
        d++;
    }
    /* coalesce from the inside out into cs (cs[0] innermost) */
    int m = 0;
    int64_t cs[WF_CUDA_MAX_DIMS], cst[N][WF_CUDA_MAX_DIMS];
    for (int i = d - 1; i >= 0; i--) {
        if (m > 0) {
            bool ok = true;
            for (int k = 0; k < N; k++)
                if (st[k][i] != cst[k][m - 1] * cs[m - 1]) { ok = false; break; }
            if (ok) { cs[m - 1] *= shape[i]; continue; }
        }
        cs[m] = shape[i];
        for (int k = 0; k < N; k++) cst[k][m] = st[k][i];
        m++;
    }
    p.ndim = m;
    for (int i = 0; i < m; i++) {           /* back to outer -> inner order */
        p.shape[i] = cs[m - 1 - i];
        for (int k = 0; k < N; k++) p.st[k][i] = cst[k][m - 1 - i];
    }
    for (int k = 0; k < N; k++) { p.ptr[k] = (char *)v[k]->data; p.dt[k] = v[k]->dtype; }
    return p;
}

/* byte offsets of linear element i for every operand */
template <int N> __device__ __forceinline__ void wfc_offsets(const wfc_pack<N> &p, int64_t i, int64_t *off) {
#pragma unroll
    for (int k = 0; k < N; k++) off[k] = 0;
    if (p.ndim == 1) {
#pragma unroll
        for (int k = 0; k < N; k++) off[k] = i * p.st[k][0];
        return;
    }
    for (int d = p.ndim - 1; d >= 0; d--) {
        int64_t s = p.shape[d];
        int64_t q = i / s, r = i - q * s;
        i = q;
#pragma unroll
        for (int k = 0; k < N; k++) off[k] += r * p.st[k][d];
    }
}

/* offset (in bytes) of linear index i within a view-like geometry */
struct wfc_geo {
    int ndim;
    int64_t shape[WF_CUDA_MAX_DIMS];
    int64_t st[WF_CUDA_MAX_DIMS]; /* bytes */
};
static inline wfc_geo wfc_make_geo(const wf_cuda_view *v) {
    wfc_geo g;
    g.ndim = v->ndim;
    int es = wfc_dtype_size(v->dtype);
    for (int i = 0; i < v->ndim; i++) { g.shape[i] = v->shape[i]; g.st[i] = v->stride[i] * es; }
    return g;
}
__device__ __forceinline__ int64_t wfc_geo_off(const wfc_geo &g, int64_t i) {
    int64_t off = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t s = g.shape[d];
        int64_t q = i / s;
        off += (i - q * s) * g.st[d];
        i = q;
    }
    return off;
}

/* ---------------------------------------------------------------- reductions in a warp / block */
template <class T, class F> __device__ __forceinline__ T wfc_warp_reduce(T v, F f) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* all threads of the block get the result; blockDim.x a multiple of 32, <= 1024 */
template <class T, class F> __device__ __forceinline__ T wfc_block_reduce(T v, F f, T ident) {
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = wfc_warp_reduce(v, f);
    __syncthreads();                     /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : ident;
    v = wfc_warp_reduce(v, f);
    return v;
}

struct wfc_add_f { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; } };
struct wfc_max_f { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (a > b || a != a) ? a : b; } };
struct wfc_min_f { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (a < b || a != a) ? a : b; } };

/* ---------------------------------------------------------------- atomics on any dtype */
__device__ __forceinline__ void wfc_atomic_add(char *p, int dt, double v) {
    switch (dt) {
    case WF_F32: atomicAdd((float *)p, (float)v); break;
    case WF_F64: atomicAdd((double *)p, v); break;
    case WF_F16: atomicAdd((__half *)p, __float2half_rn((float)v)); break;
    case WF_BF16: {
        /* CAS on the aligned 32-bit word holding the bf16 (same rounding as wfc_f_to_bf16) */
        unsigned int *w = (unsigned int *)((uintptr_t)p & ~(uintptr_t)3);
        unsigned shift = ((uintptr_t)p & 2) ? 16 : 0;
        unsigned int old = *w, assumed;
        do {
            assumed = old;
            uint16_t h = (uint16_t)(assumed >> shift);
            uint16_t nh = wfc_f_to_bf16(wfc_bf16_to_f(h) + (float)v);
            unsigned int nw = (assumed & ~(0xffffu << shift)) | ((unsigned int)nh << shift);
            old = atomicCAS(w, assumed, nw);
        } while (old != assumed);
        break;
    }
    case WF_I64: atomicAdd((unsigned long long *)p, (unsigned long long)(long long)wfc_to_i64(v)); break;
    case WF_I32: atomicAdd((int *)p, (int)wfc_to_i64(v)); break;
    default: { /* u8 / bool: CAS on the containing word */
        unsigned int *w = (unsigned int *)((uintptr_t)p & ~(uintptr_t)3);
        unsigned shift = (unsigned)((uintptr_t)p & 3) * 8;
        unsigned int old = *w, assumed;
        do {
            assumed = old;
            unsigned b = (assumed >> shift) & 0xffu;
            unsigned nb = dt == WF_BOOL ? ((b != 0 || v != 0) ? 1u : 0u)
                                        : (unsigned)(uint8_t)((int64_t)b + wfc_to_i64(v));
            unsigned int nw = (assumed & ~(0xffu << shift)) | (nb << shift);
            old = atomicCAS(w, assumed, nw);
        } while (old != assumed);
        break;
    }
    }
}

/* index element as int64 (i64 or i32 or other) */
__device__ __forceinline__ int64_t wfc_ld_index(const char *p, int dt) {
    switch (dt) {
    case WF_I64: return *(const int64_t *)p;
    case WF_I32: return *(const int32_t *)p;
    default: return wfc_ld<int64_t>(p, dt);
    }
}

/* ---------------------------------------------------------------- 16-byte vectors
 * wfc_vec16<DT>: one 16-byte vector of dtype DT (f32: 4 elements; bf16 / f16: 8, two per
 * 32-bit word) as N floats, with the conversions of wfc_ld / wfc_st, so a vector kernel and
 * its element-by-element fallback see the same values. ld / st take a vector index into
 * base (16-byte aligned); ldr + cvt split a load so that a kernel can issue several before it
 * unpacks any; ld1 reads element j as a scalar. The bias + GELU, column-sum and cross-entropy
 * vector kernels share it. */
template <int DT> struct wfc_vec16;
template <> struct wfc_vec16<WF_F32> {
    enum { N = 4, ES = 4 };
    typedef float4 raw;
    static __device__ __forceinline__ raw ldr(const char *base, int64_t i) { return ((const float4 *)base)[i]; }
    static __device__ __forceinline__ void cvt(raw a, float *o) { o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; }
    static __device__ __forceinline__ void ld(const char *base, int64_t i, float *o) { cvt(ldr(base, i), o); }
    static __device__ __forceinline__ void st(char *base, int64_t i, const float *v) {
        ((float4 *)base)[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
    static __device__ __forceinline__ float ld1(const char *base, int64_t j) { return ((const float *)base)[j]; }
};
template <int DT> struct wfc_vec16_half {
    enum { N = 8, ES = 2 };
    static __device__ __forceinline__ float to_f(uint32_t h) {
        return DT == WF_BF16 ? wfc_bf16_to_f((uint16_t)h) : wfc_h_to_f((uint16_t)h);
    }
    static __device__ __forceinline__ uint32_t from_f(float f) {
        return DT == WF_BF16 ? wfc_f_to_bf16(f) : wfc_f_to_h(f);
    }
    typedef uint4 raw;
    static __device__ __forceinline__ raw ldr(const char *base, int64_t i) { return ((const uint4 *)base)[i]; }
    static __device__ __forceinline__ void cvt(raw u, float *o) {
        uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int k = 0; k < 4; k++) {
            o[2 * k] = to_f(w[k] & 0xffffu);
            o[2 * k + 1] = to_f(w[k] >> 16);
        }
    }
    static __device__ __forceinline__ void ld(const char *base, int64_t i, float *o) { cvt(ldr(base, i), o); }
    static __device__ __forceinline__ void st(char *base, int64_t i, const float *v) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = from_f(v[2 * k]) | (from_f(v[2 * k + 1]) << 16);
        ((uint4 *)base)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
    static __device__ __forceinline__ float ld1(const char *base, int64_t j) { return to_f(((const uint16_t *)base)[j]); }
};
template <> struct wfc_vec16<WF_BF16> : wfc_vec16_half<WF_BF16> {};
template <> struct wfc_vec16<WF_F16> : wfc_vec16_half<WF_F16> {};

#endif
