/* tensor/cuda/cuda_elementwise.cu: copy, fill, unary (and backward), binary, where, axpy,
 * bias+GELU, the GELU's backward with the bias gradient (random fills: cuda_random.cu).
 *
 * One kernel per kind and compute type (float, double, int64): dtypes are loaded and stored
 * through a uniform runtime switch and the op is a uniform runtime switch too, which keeps
 * compile time small; operands are coalesced on the host, so contiguous tensors index with
 * one multiply. Float math uses --use_fast_math intrinsics except pow (done in double: the
 * fast __powf is NaN for negative bases). */
#include "cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

#define THREADS 256

enum ctype { CT_F, CT_D, CT_I };

/* double if any floating operand is f64, float if any is floating, else int64 */
static ctype pick(const wf_cuda_view *const *v, int n) {
    bool fl = false, d = false;
    for (int i = 0; i < n; i++) {
        if (!v[i]) continue;
        if (v[i]->dtype == WF_F64) d = true;
        if (wfc_is_float(v[i]->dtype)) fl = true;
    }
    return d ? CT_D : fl ? CT_F : CT_I;
}

#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- math wrappers by type */
__device__ __forceinline__ float w_exp(float x) { return expf(x); }
__device__ __forceinline__ double w_exp(double x) { return exp(x); }
__device__ __forceinline__ float w_log(float x) { return logf(x); }
__device__ __forceinline__ double w_log(double x) { return log(x); }
__device__ __forceinline__ float w_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double w_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float w_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double w_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float w_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double w_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float w_sin(float x) { return sinf(x); }
__device__ __forceinline__ double w_sin(double x) { return sin(x); }
__device__ __forceinline__ float w_cos(float x) { return cosf(x); }
__device__ __forceinline__ double w_cos(double x) { return cos(x); }
__device__ __forceinline__ float w_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double w_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float w_erf(float x) { return erff(x); }
__device__ __forceinline__ double w_erf(double x) { return erf(x); }
__device__ __forceinline__ float w_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double w_abs(double x) { return fabs(x); }
template <class T> __device__ __forceinline__ T w_pow(T x, T a) {
    if (a == (T)2) return x * x;
    if (a == (T)1) return x;
    return (T)pow((double)x, (double)a);
}
__device__ __forceinline__ int64_t ipow(int64_t x, int64_t e) {
    if (e < 0) return x == 1 ? 1 : x == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)x;
    while (e) { if (e & 1) r *= b; b *= b; e >>= 1; }
    return (int64_t)r;
}
template <class T> __device__ __forceinline__ T w_sigmoid(T x) { return (T)1 / ((T)1 + w_exp(-x)); }

#define K_GELU 0.7978845608028654  /* sqrt(2/pi) */
#define K_GELU3 0.044715
#define K_INVSQRT2 0.70710678118654752440
#define K_INVSQRT2PI 0.39894228040143267794

template <class T> __device__ __forceinline__ T gelu_f(T x, bool tanh_form) {
    if (tanh_form) return (T)0.5 * x * ((T)1 + w_tanh((T)K_GELU * (x + (T)K_GELU3 * x * x * x)));
    return (T)0.5 * x * ((T)1 + w_erf(x * (T)K_INVSQRT2));
}
template <class T> __device__ __forceinline__ T gelu_grad(T x, bool tanh_form) {
    if (tanh_form) {
        T u = (T)K_GELU * (x + (T)K_GELU3 * x * x * x);
        T t = w_tanh(u);
        T du = (T)K_GELU * ((T)1 + (T)(3 * K_GELU3) * x * x);
        return (T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * du;
    }
    T cdf = (T)0.5 * ((T)1 + w_erf(x * (T)K_INVSQRT2));
    return cdf + x * (T)K_INVSQRT2PI * w_exp((T)-0.5 * x * x);
}


/* ---------------------------------------------------------------- contiguous vector path
 * Every operand contiguous (one coalesced dim of element stride), f32 / bf16 / f16 (compute
 * in float), base pointers 16-byte aligned: each thread moves 8 elements per step (one
 * 16-byte load per half operand, two per f32 operand); the < 8 tail element by element. The
 * op is a template parameter for the hot ones (-1: runtime switch). Same float math as the
 * strided kernels, so results agree bit for bit. */
#define VEC 8

static bool vec_dtype(int dt) { return dt == WF_F32 || dt == WF_BF16 || dt == WF_F16; }
template <int N> static bool vec_ok(const wfc_pack<N> &p, int nops) {
    if (p.ndim != 1) return false;
    for (int k = 0; k < nops; k++) {
        if (!vec_dtype(p.dt[k]) || p.st[k][0] != wfc_dtype_size(p.dt[k]) || ((uintptr_t)p.ptr[k] & 15)) return false;
    }
    return true;
}

__device__ __forceinline__ void ld8(const char *base, int dt, int64_t i, float *o) {
    if (dt == WF_F32) {
        float4 a = ((const float4 *)base)[2 * i], b = ((const float4 *)base)[2 * i + 1];
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    } else {
        uint4 u = ((const uint4 *)base)[i];
        uint32_t w[4] = { u.x, u.y, u.z, u.w };
        if (dt == WF_BF16) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                o[2 * j] = __uint_as_float(w[j] << 16);
                o[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
            }
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                o[2 * j] = wfc_h_to_f((uint16_t)(w[j] & 0xffffu));
                o[2 * j + 1] = wfc_h_to_f((uint16_t)(w[j] >> 16));
            }
        }
    }
}
__device__ __forceinline__ void st8(char *base, int dt, int64_t i, const float *v) {
    if (dt == WF_F32) {
        ((float4 *)base)[2 * i] = make_float4(v[0], v[1], v[2], v[3]);
        ((float4 *)base)[2 * i + 1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        uint32_t w[4];
        if (dt == WF_BF16) {
#pragma unroll
            for (int j = 0; j < 4; j++) w[j] = (uint32_t)wfc_f_to_bf16(v[2 * j]) | ((uint32_t)wfc_f_to_bf16(v[2 * j + 1]) << 16);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) w[j] = (uint32_t)wfc_f_to_h(v[2 * j]) | ((uint32_t)wfc_f_to_h(v[2 * j + 1]) << 16);
        }
        ((uint4 *)base)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}
/* element index of this thread in the tail [n8 * 8, n) (first threads of the grid) */
#define VEC_TAIL(t, n)                                                                  \
    for (int64_t t = ((n) / VEC) * VEC + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; \
         t < (n); t += (int64_t)gridDim.x * blockDim.x)
/* WEFT_ELEM_NOFAST=1: the vec kernels also where a fast (single-dtype) kernel applies (A/B timing) */
WF__ENV_SWITCH(fast_off, "WEFT_ELEM_NOFAST")
static unsigned vec_blocks(int64_t n, int dev) {
    int64_t w = n / VEC;
    return wfc_blocks(w > 0 ? w : 1, THREADS, dev);
}

/* ---------------------------------------------------------------- unary */

template <class T> __device__ __forceinline__ T unary_float(int op, T x, T a, T b) {
    switch (op) {
    case WFC_U_NEG: return -x;
    case WFC_U_ABS: return w_abs(x);
    case WFC_U_EXP: return w_exp(x);
    case WFC_U_LOG: return w_log(x);
    case WFC_U_LOG1P: return w_log1p(x);
    case WFC_U_SQRT: return w_sqrt(x);
    case WFC_U_RSQRT: return w_rsqrt(x);
    case WFC_U_SIN: return w_sin(x);
    case WFC_U_COS: return w_cos(x);
    case WFC_U_TANH: return w_tanh(x);
    case WFC_U_SIGMOID: return w_sigmoid(x);
    case WFC_U_RELU: return x <= (T)0 ? (T)0 : x;   /* NaN stays NaN, as PyTorch's (and the CPU's) */
    case WFC_U_GELU: return gelu_f(x, false);
    case WFC_U_GELU_TANH: return gelu_f(x, true);
    case WFC_U_SILU: return x * w_sigmoid(x);
    case WFC_U_SQUARE: return x * x;
    case WFC_U_SIGN: return (T)((x > (T)0) - (x < (T)0)); /* as the CPU: NaN -> 0 */
    case WFC_U_POW: return w_pow(x, a);
    case WFC_U_CLAMP: return x < a ? a : (x > b ? b : x);
    case WFC_U_LOGICAL_NOT: return (T)(x == (T)0);
    case WFC_U_ISFINITE: return (T)(isfinite(x) ? 1 : 0);
    default: return x;
    }
}

__device__ __forceinline__ int64_t unary_int(int op, int64_t x, double a, double b) {
    switch (op) {
    case WFC_U_NEG: return (int64_t)(0 - (uint64_t)x);
    case WFC_U_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
    case WFC_U_RELU: return x < 0 ? 0 : x;
    case WFC_U_SQUARE: return (int64_t)((uint64_t)x * (uint64_t)x);
    case WFC_U_SIGN: return (x > 0) - (x < 0);
    case WFC_U_POW:
        if (a == floor(a)) return ipow(x, (int64_t)a);
        return wfc_to_i64(pow((double)x, a));
    case WFC_U_CLAMP: {
        double v = (double)x;
        if (v < a) return wfc_to_i64(ceil(a));
        if (v > b) return wfc_to_i64(floor(b));
        return x;
    }
    case WFC_U_LOGICAL_NOT: return x == 0;
    case WFC_U_ISFINITE: return 1;
    default: return wfc_to_i64(unary_float<double>(op, (double)x, a, b));
    }
}

template <class T> __global__ void unary_kernel(wfc_pack<2> p, int op, double a, double b) {
    GRID_LOOP(i, p.n) {
        int64_t off[2];
        wfc_offsets(p, i, off);
        if constexpr (wfc_is_int<T>::value) {
            int64_t x = wfc_ld<int64_t>(p.ptr[1] + off[1], p.dt[1]);
            wfc_st<int64_t>(p.ptr[0] + off[0], p.dt[0], unary_int(op, x, a, b));
        } else {
            T x = wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]);
            wfc_st<T>(p.ptr[0] + off[0], p.dt[0], unary_float<T>(op, x, (T)a, (T)b));
        }
    }
}


template <int OP> __device__ __forceinline__ void unary_vec_body(wfc_pack<2> p, int op, float a, float b) {
    const int o = OP >= 0 ? OP : op;
    int64_t n8 = p.n / VEC;
    GRID_LOOP(i, n8) {
        float v[VEC];
        ld8(p.ptr[1], p.dt[1], i, v);
#pragma unroll
        for (int j = 0; j < VEC; j++) v[j] = unary_float<float>(o, v[j], a, b);
        st8(p.ptr[0], p.dt[0], i, v);
    }
    VEC_TAIL(t, p.n) {
        float x = wfc_ld<float>(p.ptr[1] + t * p.st[1][0], p.dt[1]);
        wfc_st<float>(p.ptr[0] + t * p.st[0][0], p.dt[0], unary_float<float>(o, x, a, b));
    }
}
__global__ void unary_vec_kernel(wfc_pack<2> p, int op, float a, float b) {
    switch (op) {
    case WFC_U_GELU_TANH: unary_vec_body<WFC_U_GELU_TANH>(p, op, a, b); break;
    case WFC_U_GELU: unary_vec_body<WFC_U_GELU>(p, op, a, b); break;
    case WFC_U_RELU: unary_vec_body<WFC_U_RELU>(p, op, a, b); break;
    case WFC_U_SILU: unary_vec_body<WFC_U_SILU>(p, op, a, b); break;
    default: unary_vec_body<-1>(p, op, a, b); break;
    }
}

/* One dtype for every operand (f32, bf16 or f16, known at compile time), n % 8 == 0, the op a
 * template parameter: one 8-element vector per thread and no grid-stride loop. The dtype
 * switches of ld8/st8 fold away, so these kernels need about half the registers of the
 * vec kernels (twice the resident threads for the loads in flight); same float math, same
 * bits. */
template <int N> static int fast_dtype(const wfc_pack<N> &p, int nops) {
    if (p.n % VEC) return -1;
    for (int k = 1; k < nops; k++)
        if (p.dt[k] != p.dt[0]) return -1;
    return p.dt[0];
}
static unsigned fast_blocks(int64_t n) { return (unsigned)((n / VEC + THREADS - 1) / THREADS); }
static bool fast_unary_op(int op) {
    return op == WFC_U_GELU_TANH || op == WFC_U_GELU || op == WFC_U_RELU || op == WFC_U_SILU;
}
#define FAST_DISPATCH(DT, OP, LAUNCH)                                                            \
    do {                                                                                         \
        switch (OP) {                                                                            \
        case WFC_U_GELU_TANH: LAUNCH(DT, WFC_U_GELU_TANH); break;                                \
        case WFC_U_GELU: LAUNCH(DT, WFC_U_GELU); break;                                          \
        case WFC_U_RELU: LAUNCH(DT, WFC_U_RELU); break;                                          \
        default: LAUNCH(DT, WFC_U_SILU); break;                                                  \
        }                                                                                        \
    } while (0)
#define FAST_BY_DTYPE(DTV, OP, LAUNCH)                                                           \
    do {                                                                                         \
        if ((DTV) == WF_F32) FAST_DISPATCH(WF_F32, OP, LAUNCH);                                  \
        else if ((DTV) == WF_BF16) FAST_DISPATCH(WF_BF16, OP, LAUNCH);                           \
        else FAST_DISPATCH(WF_F16, OP, LAUNCH);                                                  \
    } while (0)

template <int DT, int OP> __global__ void unary_fast_kernel(wfc_pack<2> p, float a, float b) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= p.n / VEC) return;
    float v[VEC];
    ld8(p.ptr[1], DT, i, v);
#pragma unroll
    for (int j = 0; j < VEC; j++) v[j] = unary_float<float>(OP, v[j], a, b);
    st8(p.ptr[0], DT, i, v);
}

extern "C" int wf__cuda_unary(int op, const wf_cuda_view *y, const wf_cuda_view *x, double a, double b, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "unary", &st);
    if (rc) return rc;
    const wf_cuda_view *v[2] = { y, x };
    wfc_pack<2> p = wfc_make_pack<2>(v);
    if (!p.n) return 0;
    if (pick(v, 2) == CT_F && vec_ok(p, 2)) {
        int fdt = fast_unary_op(op) ? fast_dtype(p, 2) : -1;
        if (fdt >= 0 && !fast_off()) {
#define UF_LAUNCH(DT, OP) unary_fast_kernel<DT, OP><<<fast_blocks(p.n), THREADS, 0, st>>>(p, (float)a, (float)b)
            FAST_BY_DTYPE(fdt, op, UF_LAUNCH);
#undef UF_LAUNCH
            return wfc_check("unary kernel", dev);
        }
        unary_vec_kernel<<<vec_blocks(p.n, dev), THREADS, 0, st>>>(p, op, (float)a, (float)b);
        return wfc_check("unary kernel", dev);
    }
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    switch (pick(v, 2)) {
    case CT_F: unary_kernel<float><<<g, THREADS, 0, st>>>(p, op, a, b); break;
    case CT_D: unary_kernel<double><<<g, THREADS, 0, st>>>(p, op, a, b); break;
    default: unary_kernel<int64_t><<<g, THREADS, 0, st>>>(p, op, a, b); break;
    }
    return wfc_check("unary kernel", dev);
}

/* ---------------------------------------------------------------- unary backward
 * operands: 0 gx, 1 gy, 2 x (or gy when absent), 3 y (or gy when absent) */
template <class T> __device__ __forceinline__ T unary_grad(int op, T g, T x, T y, bool hx, bool hy, T a, T b) {
    switch (op) {
    case WFC_U_NEG: return -g;
    case WFC_U_ABS: return x > (T)0 ? g : (x < (T)0 ? -g : (T)0);
    case WFC_U_EXP: return g * (hy ? y : w_exp(x));
    case WFC_U_LOG: return g / x;
    case WFC_U_LOG1P: return g / ((T)1 + x);
    case WFC_U_SQRT: return g * (T)0.5 / (hy ? y : w_sqrt(x));
    case WFC_U_RSQRT: { T r = hy ? y : w_rsqrt(x); return g * (T)-0.5 * r * r * r; }
    case WFC_U_SIN: return g * w_cos(x);
    case WFC_U_COS: return -g * w_sin(x);
    case WFC_U_TANH: { T t = hy ? y : w_tanh(x); return g * ((T)1 - t * t); }
    case WFC_U_SIGMOID: { T s = hy ? y : w_sigmoid(x); return g * s * ((T)1 - s); }
    case WFC_U_RELU: return (hx ? x > (T)0 : y > (T)0) ? g : (T)0;
    case WFC_U_GELU: return g * gelu_grad(x, false);
    case WFC_U_GELU_TANH: return g * gelu_grad(x, true);
    case WFC_U_SILU: { T s = w_sigmoid(x); return g * s * ((T)1 + x * ((T)1 - s)); }
    case WFC_U_SQUARE: return g * (T)2 * x;
    case WFC_U_POW:
        if (a == (T)0) return (T)0;
        return g * a * w_pow(x, a - (T)1);
    case WFC_U_CLAMP: return (x >= a && x <= b) ? g : (T)0;
    default: return (T)0; /* sign, logical_not, isfinite: zero gradient */
    }
}

template <class T> __global__ void unary_bwd_kernel(wfc_pack<4> p, int op, bool hx, bool hy, double a, double b) {
    GRID_LOOP(i, p.n) {
        int64_t off[4];
        wfc_offsets(p, i, off);
        T g = wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]);
        T x = hx ? wfc_ld<T>(p.ptr[2] + off[2], p.dt[2]) : (T)0;
        T y = hy ? wfc_ld<T>(p.ptr[3] + off[3], p.dt[3]) : (T)0;
        wfc_st<T>(p.ptr[0] + off[0], p.dt[0], unary_grad<T>(op, g, x, y, hx, hy, (T)a, (T)b));
    }
}


template <int OP> __device__ __forceinline__ void unary_bwd_vec_body(wfc_pack<4> p, int op, bool hx, bool hy, float a,
                                                                   float b) {
    const int o = OP >= 0 ? OP : op;
    int64_t n8 = p.n / VEC;
    GRID_LOOP(i, n8) {
        float g[VEC], x[VEC], y[VEC];
        ld8(p.ptr[1], p.dt[1], i, g);
        if (hx) ld8(p.ptr[2], p.dt[2], i, x);
        else {
#pragma unroll
            for (int j = 0; j < VEC; j++) x[j] = 0.f;
        }
        if (hy) ld8(p.ptr[3], p.dt[3], i, y);
        else {
#pragma unroll
            for (int j = 0; j < VEC; j++) y[j] = 0.f;
        }
#pragma unroll
        for (int j = 0; j < VEC; j++) g[j] = unary_grad<float>(o, g[j], x[j], y[j], hx, hy, a, b);
        st8(p.ptr[0], p.dt[0], i, g);
    }
    VEC_TAIL(t, p.n) {
        float g = wfc_ld<float>(p.ptr[1] + t * p.st[1][0], p.dt[1]);
        float x = hx ? wfc_ld<float>(p.ptr[2] + t * p.st[2][0], p.dt[2]) : 0.f;
        float y = hy ? wfc_ld<float>(p.ptr[3] + t * p.st[3][0], p.dt[3]) : 0.f;
        wfc_st<float>(p.ptr[0] + t * p.st[0][0], p.dt[0], unary_grad<float>(o, g, x, y, hx, hy, a, b));
    }
}
__global__ void unary_bwd_vec_kernel(wfc_pack<4> p, int op, bool hx, bool hy, float a, float b) {
    switch (op) {
    case WFC_U_GELU_TANH: unary_bwd_vec_body<WFC_U_GELU_TANH>(p, op, hx, hy, a, b); break;
    case WFC_U_GELU: unary_bwd_vec_body<WFC_U_GELU>(p, op, hx, hy, a, b); break;
    case WFC_U_RELU: unary_bwd_vec_body<WFC_U_RELU>(p, op, hx, hy, a, b); break;
    case WFC_U_SILU: unary_bwd_vec_body<WFC_U_SILU>(p, op, hx, hy, a, b); break;
    default: unary_bwd_vec_body<-1>(p, op, hx, hy, a, b); break;
    }
}

/* operands 0 gx, 1 gy, 2 x (the forward input is present: hx) */
template <int DT, int OP> __global__ void unary_bwd_fast_kernel(wfc_pack<4> p, float a, float b) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= p.n / VEC) return;
    float g[VEC], x[VEC];
    ld8(p.ptr[1], DT, i, g);
    ld8(p.ptr[2], DT, i, x);
#pragma unroll
    for (int j = 0; j < VEC; j++) g[j] = unary_grad<float>(OP, g[j], x[j], 0.f, true, false, a, b);
    st8(p.ptr[0], DT, i, g);
}

extern "C" int wf__cuda_unary_backward(int op, const wf_cuda_view *gx, const wf_cuda_view *gy,
                                       const wf_cuda_view *x, const wf_cuda_view *y, double a, double b,
                                       int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "unary backward", &st);
    if (rc) return rc;
    bool y_ok = op == WFC_U_EXP || op == WFC_U_SQRT || op == WFC_U_RSQRT || op == WFC_U_TANH ||
                op == WFC_U_SIGMOID || op == WFC_U_RELU || op == WFC_U_NEG || op == WFC_U_SIGN ||
                op == WFC_U_LOGICAL_NOT || op == WFC_U_ISFINITE;
    if (!x && !(y && y_ok))
        return wfc_error(WF_EINVAL, "unary backward on cuda:%d: op %d needs the forward input x", dev, op);
    const wf_cuda_view *v[4] = { gx, gy, x ? x : gy, y ? y : gy };
    wfc_pack<4> p = wfc_make_pack<4>(v);
    if (!p.n) return 0;
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    const wf_cuda_view *tv[4] = { gx, gy, x, y };
    if (pick(tv, 4) == CT_F && vec_ok(p, 4)) {
        int fdt = x && fast_unary_op(op) ? fast_dtype(p, 3) : -1;   /* y is not read by these ops */
        if (fdt >= 0 && !fast_off()) {
#define UBF_LAUNCH(DT, OP) unary_bwd_fast_kernel<DT, OP><<<fast_blocks(p.n), THREADS, 0, st>>>(p, (float)a, (float)b)
            FAST_BY_DTYPE(fdt, op, UBF_LAUNCH);
#undef UBF_LAUNCH
            return wfc_check("unary backward kernel", dev);
        }
        unary_bwd_vec_kernel<<<vec_blocks(p.n, dev), THREADS, 0, st>>>(p, op, x != NULL, y != NULL, (float)a, (float)b);
        return wfc_check("unary backward kernel", dev);
    }
    if (pick(tv, 4) == CT_D) unary_bwd_kernel<double><<<g, THREADS, 0, st>>>(p, op, x != NULL, y != NULL, a, b);
    else unary_bwd_kernel<float><<<g, THREADS, 0, st>>>(p, op, x != NULL, y != NULL, a, b);
    return wfc_check("unary backward kernel", dev);
}

/* ---------------------------------------------------------------- binary */

template <class T> __device__ __forceinline__ T binary_op(int op, T a, T b) {
    switch (op) {
    case WFC_B_ADD: return a + b;
    case WFC_B_SUB: return a - b;
    case WFC_B_MUL: return a * b;
    case WFC_B_DIV: return a / b;
    case WFC_B_POW: return w_pow(a, b);
    case WFC_B_MAX: return (a > b || a != a) ? a : b;
    case WFC_B_MIN: return (a < b || a != a) ? a : b;
    case WFC_B_EQ: return (T)(a == b);
    case WFC_B_NE: return (T)(a != b);
    case WFC_B_LT: return (T)(a < b);
    case WFC_B_LE: return (T)(a <= b);
    case WFC_B_GT: return (T)(a > b);
    case WFC_B_GE: return (T)(a >= b);
    case WFC_B_AND: return (T)(a != (T)0 && b != (T)0);
    case WFC_B_OR: return (T)(a != (T)0 || b != (T)0);
    default: return a;
    }
}
template <> __device__ __forceinline__ int64_t binary_op<int64_t>(int op, int64_t a, int64_t b) {
    switch (op) {
    case WFC_B_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case WFC_B_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case WFC_B_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case WFC_B_DIV: return b == 0 ? 0 : (b == -1 ? (int64_t)(0 - (uint64_t)a) : a / b);
    case WFC_B_POW: return ipow(a, b);
    case WFC_B_MAX: return a > b ? a : b;
    case WFC_B_MIN: return a < b ? a : b;
    case WFC_B_EQ: return a == b;
    case WFC_B_NE: return a != b;
    case WFC_B_LT: return a < b;
    case WFC_B_LE: return a <= b;
    case WFC_B_GT: return a > b;
    case WFC_B_GE: return a >= b;
    case WFC_B_AND: return a != 0 && b != 0;
    case WFC_B_OR: return a != 0 || b != 0;
    default: return a;
    }
}

template <class T> __global__ void binary_kernel(wfc_pack<3> p, int op) {
    GRID_LOOP(i, p.n) {
        int64_t off[3];
        wfc_offsets(p, i, off);
        T a = wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]);
        T b = wfc_ld<T>(p.ptr[2] + off[2], p.dt[2]);
        wfc_st<T>(p.ptr[0] + off[0], p.dt[0], binary_op<T>(op, a, b));
    }
}

/* float32 contiguous fast path (the common training case): no index math, no dtype switch */
__global__ void binary_f32_contig(float *y, const float *a, const float *b, int64_t n, int op) {
    GRID_LOOP(i, n) y[i] = binary_op<float>(op, a[i], b[i]);
}


__global__ void binary_vec_kernel(wfc_pack<3> p, int op) {
    int64_t n8 = p.n / VEC;
    GRID_LOOP(i, n8) {
        float a[VEC], b[VEC];
        ld8(p.ptr[1], p.dt[1], i, a);
        ld8(p.ptr[2], p.dt[2], i, b);
#pragma unroll
        for (int j = 0; j < VEC; j++) a[j] = binary_op<float>(op, a[j], b[j]);
        st8(p.ptr[0], p.dt[0], i, a);
    }
    VEC_TAIL(t, p.n) {
        float a = wfc_ld<float>(p.ptr[1] + t * p.st[1][0], p.dt[1]);
        float b = wfc_ld<float>(p.ptr[2] + t * p.st[2][0], p.dt[2]);
        wfc_st<float>(p.ptr[0] + t * p.st[0][0], p.dt[0], binary_op<float>(op, a, b));
    }
}

extern "C" int wf__cuda_binary(int op, const wf_cuda_view *y, const wf_cuda_view *a, const wf_cuda_view *b, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "binary", &st);
    if (rc) return rc;
    const wf_cuda_view *v[3] = { y, a, b };
    wfc_pack<3> p = wfc_make_pack<3>(v);
    if (!p.n) return 0;
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    bool is_pred = op >= WFC_B_EQ;
    if (op != WFC_B_POW && vec_ok(p, 3)) {  /* pow: double math in w_pow, keep the general kernel */
        binary_vec_kernel<<<vec_blocks(p.n, dev), THREADS, 0, st>>>(p, op);
        return wfc_check("binary kernel", dev);
    }
    if (!is_pred && p.ndim <= 1 && y->dtype == WF_F32 && a->dtype == WF_F32 && b->dtype == WF_F32 &&
        (p.ndim == 0 || (p.st[0][0] == 4 && p.st[1][0] == 4 && p.st[2][0] == 4))) {
        binary_f32_contig<<<g, THREADS, 0, st>>>((float *)y->data, (const float *)a->data,
                                                (const float *)b->data, p.n, op);
        return wfc_check("binary kernel", dev);
    }
    /* predicates compute in the inputs' type, arithmetic in the type of all three */
    ctype ct = is_pred ? pick(v + 1, 2) : pick(v, 3);
    switch (ct) {
    case CT_F: binary_kernel<float><<<g, THREADS, 0, st>>>(p, op); break;
    case CT_D: binary_kernel<double><<<g, THREADS, 0, st>>>(p, op); break;
    default: binary_kernel<int64_t><<<g, THREADS, 0, st>>>(p, op); break;
    }
    return wfc_check("binary kernel", dev);
}

template <class T> __global__ void binary_scalar_kernel(wfc_pack<2> p, int op, T s, bool rev) {
    GRID_LOOP(i, p.n) {
        int64_t off[2];
        wfc_offsets(p, i, off);
        T a = wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]);
        wfc_st<T>(p.ptr[0] + off[0], p.dt[0], rev ? binary_op<T>(op, s, a) : binary_op<T>(op, a, s));
    }
}

extern "C" int wf__cuda_binary_scalar(int op, const wf_cuda_view *y, const wf_cuda_view *a, double s, int reversed,
                                      int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "binary scalar", &st);
    if (rc) return rc;
    const wf_cuda_view *v[2] = { y, a };
    wfc_pack<2> p = wfc_make_pack<2>(v);
    if (!p.n) return 0;
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    bool is_pred = op >= WFC_B_EQ;
    ctype ct = is_pred ? pick(v + 1, 1) : pick(v, 2);
    /* an integer tensor against a fractional scalar compares / computes in double */
    if (ct == CT_I && (s != floor(s) || !(fabs(s) < 9.2e18))) ct = CT_D;
    switch (ct) {
    case CT_F: binary_scalar_kernel<float><<<g, THREADS, 0, st>>>(p, op, (float)s, reversed != 0); break;
    case CT_D: binary_scalar_kernel<double><<<g, THREADS, 0, st>>>(p, op, s, reversed != 0); break;
    default: binary_scalar_kernel<int64_t><<<g, THREADS, 0, st>>>(p, op, (int64_t)s, reversed != 0); break;
    }
    return wfc_check("binary scalar kernel", dev);
}

/* ---------------------------------------------------------------- where, axpy */

template <class T> __global__ void where_kernel(wfc_pack<4> p) {
    GRID_LOOP(i, p.n) {
        int64_t off[4];
        wfc_offsets(p, i, off);
        bool c = wfc_ld<double>(p.ptr[1] + off[1], p.dt[1]) != 0.0;
        int k = c ? 2 : 3;
        wfc_st<T>(p.ptr[0] + off[0], p.dt[0], wfc_ld<T>(p.ptr[k] + off[k], p.dt[k]));
    }
}

extern "C" int wf__cuda_where(const wf_cuda_view *y, const wf_cuda_view *cond, const wf_cuda_view *a,
                              const wf_cuda_view *b, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "where", &st);
    if (rc) return rc;
    const wf_cuda_view *v[4] = { y, cond, a, b };
    wfc_pack<4> p = wfc_make_pack<4>(v);
    if (!p.n) return 0;
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    const wf_cuda_view *dv[3] = { y, a, b };
    switch (pick(dv, 3)) {
    case CT_F: where_kernel<float><<<g, THREADS, 0, st>>>(p); break;
    case CT_D: where_kernel<double><<<g, THREADS, 0, st>>>(p); break;
    default: where_kernel<int64_t><<<g, THREADS, 0, st>>>(p); break;
    }
    return wfc_check("where kernel", dev);
}

template <class T> __global__ void axpy_kernel(wfc_pack<2> p, T alpha) {
    GRID_LOOP(i, p.n) {
        int64_t off[2];
        wfc_offsets(p, i, off);
        char *pa = p.ptr[0] + off[0];
        T r = wfc_ld<T>(pa, p.dt[0]) + alpha * wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]);
        wfc_st<T>(pa, p.dt[0], r);
    }
}


__global__ void axpy_vec_kernel(wfc_pack<2> p, float alpha) {
    int64_t n8 = p.n / VEC;
    GRID_LOOP(i, n8) {
        float a[VEC], b[VEC];
        ld8(p.ptr[0], p.dt[0], i, a);
        ld8(p.ptr[1], p.dt[1], i, b);
#pragma unroll
        for (int j = 0; j < VEC; j++) a[j] = a[j] + alpha * b[j];
        st8(p.ptr[0], p.dt[0], i, a);
    }
    VEC_TAIL(t, p.n) {
        char *pa = p.ptr[0] + t * p.st[0][0];
        wfc_st<float>(pa, p.dt[0], wfc_ld<float>(pa, p.dt[0]) + alpha * wfc_ld<float>(p.ptr[1] + t * p.st[1][0], p.dt[1]));
    }
}

extern "C" int wf__cuda_axpy(const wf_cuda_view *a, const wf_cuda_view *b, double alpha, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "axpy", &st);
    if (rc) return rc;
    const wf_cuda_view *v[2] = { a, b };
    wfc_pack<2> p = wfc_make_pack<2>(v);
    if (!p.n) return 0;
    if (pick(v, 2) == CT_F && vec_ok(p, 2)) {
        axpy_vec_kernel<<<vec_blocks(p.n, dev), THREADS, 0, st>>>(p, (float)alpha);
        return wfc_check("axpy kernel", dev);
    }
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    if (pick(v, 2) == CT_F) axpy_kernel<float><<<g, THREADS, 0, st>>>(p, (float)alpha);
    else axpy_kernel<double><<<g, THREADS, 0, st>>>(p, alpha);
    return wfc_check("axpy kernel", dev);
}

/* ---------------------------------------------------------------- copy, fill */

template <class T> __global__ void copy_kernel(wfc_pack<2> p) {
    GRID_LOOP(i, p.n) {
        int64_t off[2];
        wfc_offsets(p, i, off);
        wfc_st<T>(p.ptr[0] + off[0], p.dt[0], wfc_ld<T>(p.ptr[1] + off[1], p.dt[1]));
    }
}
template <class E> __global__ void copy_raw_kernel(wfc_pack<2> p) {
    GRID_LOOP(i, p.n) {
        int64_t off[2];
        wfc_offsets(p, i, off);
        *(E *)(p.ptr[0] + off[0]) = *(const E *)(p.ptr[1] + off[1]);
    }
}


/* casts between f32 / bf16 / f16, contiguous and aligned (the autocast casts) */
__global__ void cast_vec_kernel(wfc_pack<2> p) {
    int64_t n8 = p.n / VEC;
    GRID_LOOP(i, n8) {
        float v[VEC];
        ld8(p.ptr[1], p.dt[1], i, v);
        st8(p.ptr[0], p.dt[0], i, v);
    }
    VEC_TAIL(t, p.n) wfc_st<float>(p.ptr[0] + t * p.st[0][0], p.dt[0], wfc_ld<float>(p.ptr[1] + t * p.st[1][0], p.dt[1]));
}

static int launch_copy(const wf_cuda_view *y, const wf_cuda_view *x, int dev, cudaStream_t st) {
    const wf_cuda_view *v[2] = { y, x };
    wfc_pack<2> p = wfc_make_pack<2>(v);
    if (!p.n) return 0;
    int es = wfc_dtype_size(y->dtype);
    bool same = y->dtype == x->dtype;
    if (same && (p.ndim == 0 || (p.ndim == 1 && p.st[0][0] == es && p.st[1][0] == es))) {
        cudaError_t e = cudaMemcpyAsync(y->data, x->data, (size_t)p.n * es, cudaMemcpyDeviceToDevice, st);
        return e == cudaSuccess ? 0 : wfc_report(e, "copy (cudaMemcpyAsync)", dev);
    }
    if (!same && vec_ok(p, 2)) {
        cast_vec_kernel<<<vec_blocks(p.n, dev), THREADS, 0, st>>>(p);
        return wfc_check("copy kernel", dev);
    }
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    if (same) {
        switch (es) {
        case 8: copy_raw_kernel<uint64_t><<<g, THREADS, 0, st>>>(p); break;
        case 4: copy_raw_kernel<uint32_t><<<g, THREADS, 0, st>>>(p); break;
        case 2: copy_raw_kernel<uint16_t><<<g, THREADS, 0, st>>>(p); break;
        default: copy_raw_kernel<uint8_t><<<g, THREADS, 0, st>>>(p); break;
        }
        return wfc_check("copy kernel", dev);
    }
    bool fy = wfc_is_float(y->dtype), fx = wfc_is_float(x->dtype);
    if (fy && fx && y->dtype != WF_F64 && x->dtype != WF_F64) copy_kernel<float><<<g, THREADS, 0, st>>>(p);
    else if (!fy && !fx) copy_kernel<int64_t><<<g, THREADS, 0, st>>>(p);
    else copy_kernel<double><<<g, THREADS, 0, st>>>(p); /* as wf__load/wf__store: through double */
    return wfc_check("copy kernel", dev);
}

extern "C" int wf__cuda_copy(const wf_cuda_view *y, const wf_cuda_view *x, int dev, int xdev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "copy", &st);
    if (rc) return rc;
    if (xdev == dev) return launch_copy(y, x, dev, st);

    /* across devices: make x contiguous on its device, peer-copy, then cast on ours */
    int64_t n = wfc_numel(x);
    if (!n) return 0;
    size_t nb = (size_t)n * wfc_dtype_size(x->dtype);
    cudaStream_t xst;
    if ((rc = wfc_begin(xdev, "copy (source device)", &xst))) return rc;
    wf_cuda_view xc = *x;
    void *xbuf = NULL;
    if (!wfc_contig(x)) {
        if (!(xbuf = wf__cuda_alloc(xdev, nb))) return WF_ENOMEM;
        xc.data = xbuf;
        int64_t s = 1;
        for (int i = x->ndim - 1; i >= 0; i--) { xc.stride[i] = s; s *= x->shape[i]; }
        if ((rc = launch_copy(&xc, x, xdev, xst))) { wf__cuda_free(xdev, xbuf, nb); return rc; }
    }
    cudaError_t e = cudaStreamSynchronize(xst);
    if (e != cudaSuccess) { rc = wfc_report(e, "copy (source device)", xdev); goto out; }
    if ((rc = wfc_begin(dev, "copy", &st))) goto out;
    {
        wf_cuda_view yc = *y;
        void *ybuf = NULL;
        bool direct = y->dtype == x->dtype && wfc_contig(y);
        if (!direct) {
            if (!(ybuf = wf__cuda_alloc(dev, nb))) { rc = WF_ENOMEM; goto out; }
            yc = xc;
            yc.data = ybuf;
        }
        e = cudaMemcpyPeerAsync(yc.data, dev, xc.data, xdev, nb, st);
        if (e != cudaSuccess) rc = wfc_report(e, "copy between devices (cudaMemcpyPeerAsync)", dev);
        if (!rc && !direct) rc = launch_copy(y, &yc, dev, st);
        if (!rc && (e = cudaStreamSynchronize(st)) != cudaSuccess) rc = wfc_report(e, "copy between devices", dev);
        if (ybuf) wf__cuda_free(dev, ybuf, nb);
    }
out:
    if (xbuf) wf__cuda_free(xdev, xbuf, nb);
    cudaSetDevice(dev);
    return rc;
}

template <class E> __global__ void fill_kernel(wfc_pack<1> p, E v) {
    GRID_LOOP(i, p.n) {
        int64_t off[1];
        wfc_offsets(p, i, off);
        *(E *)(p.ptr[0] + off[0]) = v;
    }
}

extern "C" int wf__cuda_fill(const wf_cuda_view *y, const void *elem, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "fill", &st);
    if (rc) return rc;
    const wf_cuda_view *v[1] = { y };
    wfc_pack<1> p = wfc_make_pack<1>(v);
    if (!p.n) return 0;
    int es = wfc_dtype_size(y->dtype);
    unsigned char b[8] = { 0 };
    memcpy(b, elem, (size_t)es);
    bool zero = true;
    for (int i = 0; i < es; i++) if (b[i]) zero = false;
    bool contig = p.ndim == 0 || (p.ndim == 1 && p.st[0][0] == es);
    if (contig && (zero || es == 1)) {
        cudaError_t e = cudaMemsetAsync(y->data, b[0], (size_t)p.n * es, st);
        return e == cudaSuccess ? 0 : wfc_report(e, "fill (cudaMemsetAsync)", dev);
    }
    unsigned g = wfc_blocks(p.n, THREADS, dev);
    switch (es) {
    case 8: { uint64_t e; memcpy(&e, b, 8); fill_kernel<uint64_t><<<g, THREADS, 0, st>>>(p, e); break; }
    case 4: { uint32_t e; memcpy(&e, b, 4); fill_kernel<uint32_t><<<g, THREADS, 0, st>>>(p, e); break; }
    case 2: { uint16_t e; memcpy(&e, b, 2); fill_kernel<uint16_t><<<g, THREADS, 0, st>>>(p, e); break; }
    default: fill_kernel<uint8_t><<<g, THREADS, 0, st>>>(p, b[0]); break;
    }
    return wfc_check("fill kernel", dev);
}

/* ---------------------------------------------------------------- fused bias + GELU
 * y = gelu(x + b[col]) and gx = gy * gelu'(x + b[col]) over x [rows, D] (contiguous; the
 * callers in tensor/ops_linear_fused.c make it so), b [D].
 *
 * Two kernels each: the vector one for the case that matters (GPT-2's MLP: bf16 [B*T, 4C]),
 * where every operand has one dtype among f32 / bf16 / f16 (a template parameter, so no
 * per-element dtype switch), is contiguous and 16-byte aligned, and D is a multiple of the
 * elements in 16 bytes: each thread moves one 16-byte vector per operand and finds its bias
 * column with 32-bit arithmetic. The generic one (any dtypes, f64, odd D or alignment) stays
 * as the fallback. Both compute every element through bias_gelu_elem / bias_gelu_bwd_elem
 * with the same loads and stores (wfc_ld / wfc_st use the same conversions as wfc_vec16),
 * so the two paths agree bit for bit. WEFT_GELU_NOVEC=1 (read once) forces the generic one
 * (A/B timing, and a way out if the vector path were ever suspected). */

template <class T> __device__ __forceinline__ T bias_gelu_elem(T x, T b, bool tanh_form) {
    return gelu_f(x + b, tanh_form);
}
template <class T> __device__ __forceinline__ T bias_gelu_bwd_elem(T g, T x, T b, bool tanh_form) {
    return g * gelu_grad(x + b, tanh_form);
}

template <class T> __global__ void bias_gelu_kernel(char *y, int ydt, const char *x, int xdt, const char *b, int bdt,
                                                   int64_t n, int64_t D, bool tanh_form) {
    int xs = wfc_dtype_size(xdt), ys = wfc_dtype_size(ydt), bs = wfc_dtype_size(bdt);
    GRID_LOOP(i, n) {
        T v = bias_gelu_elem(wfc_ld<T>(x + i * xs, xdt), wfc_ld<T>(b + (i % D) * bs, bdt), tanh_form);
        wfc_st<T>(y + i * ys, ydt, v);
    }
}
template <class T> __global__ void bias_gelu_bwd_kernel(char *gx, int gxdt, const char *gy, int gydt, const char *x,
                                                       int xdt, const char *b, int bdt, int64_t n, int64_t D,
                                                       bool tanh_form) {
    int xs = wfc_dtype_size(xdt), gys = wfc_dtype_size(gydt), gxs = wfc_dtype_size(gxdt), bs = wfc_dtype_size(bdt);
    GRID_LOOP(i, n) {
        T v = bias_gelu_bwd_elem(wfc_ld<T>(gy + i * gys, gydt), wfc_ld<T>(x + i * xs, xdt),
                                 wfc_ld<T>(b + (i % D) * bs, bdt), tanh_form);
        wfc_st<T>(gx + i * gxs, gxdt, v);
    }
}

/* The bias column (in vectors) of vector i is i % dv. A thread starts at its first i and
 * steps the grid stride each time: its column moves by step = stride % dv (< dv), so one
 * 64-bit division per thread and then a 32-bit add and compare per vector. */
#define VEC_ROWS_LOOP(i, c, nv, dv, step)                                                      \
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;                                 \
    for (int c = (int)(i % (dv)); i < (nv); i += (int64_t)gridDim.x * blockDim.x,              \
             c = c + (step) >= (dv) ? c + (step) - (dv) : c + (step))

template <int DT> __global__ void bias_gelu_vec_kernel(char *y, const char *x, const char *b, int64_t nv, int dv,
                                                      int step, bool tanh_form) {
    typedef wfc_vec16<DT> V;
    VEC_ROWS_LOOP(i, c, nv, dv, step) {
        float xv[V::N], bv[V::N], yv[V::N];
        V::ld(x, i, xv);
        V::ld(b, c, bv);
#pragma unroll
        for (int j = 0; j < V::N; j++) yv[j] = bias_gelu_elem(xv[j], bv[j], tanh_form);
        V::st(y, i, yv);
    }
}
template <int DT> __global__ void bias_gelu_bwd_vec_kernel(char *gx, const char *gy, const char *x, const char *b,
                                                          int64_t nv, int dv, int step, bool tanh_form) {
    typedef wfc_vec16<DT> V;
    VEC_ROWS_LOOP(i, c, nv, dv, step) {
        float gv[V::N], xv[V::N], bv[V::N], ov[V::N];
        V::ld(gy, i, gv);
        V::ld(x, i, xv);
        V::ld(b, c, bv);
#pragma unroll
        for (int j = 0; j < V::N; j++) ov[j] = bias_gelu_bwd_elem(gv[j], xv[j], bv[j], tanh_form);
        V::st(gx, i, ov);
    }
}

WF__ENV_SWITCH(gelu_novec, "WEFT_GELU_NOVEC")

/* The vector path's conditions, checked here on the host: ops[0] the output, the rest
 * inputs, ops[nops - 1] the bias; all of x's shape but the bias. Returns the elements per
 * vector (4 or 8), or 0 for the generic kernel. */
static int gelu_vec_width(const wf_cuda_view *const *ops, int nops, int64_t D) {
    if (gelu_novec()) return 0;
    int dt = ops[0]->dtype;
    if (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) return 0;
    int w = 16 / wfc_dtype_size(dt);
    if (D % w || D / w > INT32_MAX / 2) return 0;   /* c + step < 2 dv fits in an int */
    for (int k = 0; k < nops; k++) {
        const wf_cuda_view *v = ops[k];
        if (v->dtype != dt || !wfc_contig(v) || ((uintptr_t)v->data & 15)) return 0;
    }
    return wfc_numel(ops[nops - 1]) == D ? w : 0;
}

/* grid for nv vectors and the column step of its stride */
static unsigned gelu_vec_grid(int64_t nv, int dv, int dev, int *step) {
    unsigned g = wfc_blocks(nv, THREADS, dev);
    *step = (int)(((int64_t)g * THREADS) % dv);
    return g;
}

extern "C" int wf__cuda_bias_gelu(const wf_cuda_view *y, const wf_cuda_view *x, const wf_cuda_view *bias,
                                  int tanh_approx, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "bias_gelu", &st);
    if (rc) return rc;
    int64_t n = wfc_numel(x), D = x->ndim ? x->shape[x->ndim - 1] : 1;
    if (!n) return 0;
    const wf_cuda_view *ops[3] = { y, x, bias };
    int w = gelu_vec_width(ops, 3, D);
    if (w) {
        int64_t nv = n / w;
        int dv = (int)(D / w), step;
        unsigned g = gelu_vec_grid(nv, dv, dev, &step);
        char *yp = (char *)y->data;
        const char *xp = (const char *)x->data, *bp = (const char *)bias->data;
        bool tf = tanh_approx != 0;
        if (y->dtype == WF_BF16) bias_gelu_vec_kernel<WF_BF16><<<g, THREADS, 0, st>>>(yp, xp, bp, nv, dv, step, tf);
        else if (y->dtype == WF_F16) bias_gelu_vec_kernel<WF_F16><<<g, THREADS, 0, st>>>(yp, xp, bp, nv, dv, step, tf);
        else bias_gelu_vec_kernel<WF_F32><<<g, THREADS, 0, st>>>(yp, xp, bp, nv, dv, step, tf);
        return wfc_check("bias_gelu kernel", dev);
    }
    unsigned g = wfc_blocks(n, THREADS, dev);
    if (x->dtype == WF_F64 || y->dtype == WF_F64)
        bias_gelu_kernel<double><<<g, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype,
                                                        (const char *)bias->data, bias->dtype, n, D, tanh_approx != 0);
    else
        bias_gelu_kernel<float><<<g, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype,
                                                       (const char *)bias->data, bias->dtype, n, D, tanh_approx != 0);
    return wfc_check("bias_gelu kernel", dev);
}

extern "C" int wf__cuda_bias_gelu_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *x,
                                           const wf_cuda_view *bias, int tanh_approx, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "bias_gelu backward", &st);
    if (rc) return rc;
    int64_t n = wfc_numel(x), D = x->ndim ? x->shape[x->ndim - 1] : 1;
    if (!n) return 0;
    const wf_cuda_view *ops[4] = { gx, gy, x, bias };
    int w = gelu_vec_width(ops, 4, D);
    if (w) {
        int64_t nv = n / w;
        int dv = (int)(D / w), step;
        unsigned g = gelu_vec_grid(nv, dv, dev, &step);
        char *gp = (char *)gx->data;
        const char *gyp = (const char *)gy->data, *xp = (const char *)x->data, *bp = (const char *)bias->data;
        bool tf = tanh_approx != 0;
        if (gx->dtype == WF_BF16)
            bias_gelu_bwd_vec_kernel<WF_BF16><<<g, THREADS, 0, st>>>(gp, gyp, xp, bp, nv, dv, step, tf);
        else if (gx->dtype == WF_F16)
            bias_gelu_bwd_vec_kernel<WF_F16><<<g, THREADS, 0, st>>>(gp, gyp, xp, bp, nv, dv, step, tf);
        else bias_gelu_bwd_vec_kernel<WF_F32><<<g, THREADS, 0, st>>>(gp, gyp, xp, bp, nv, dv, step, tf);
        return wfc_check("bias_gelu backward kernel", dev);
    }
    unsigned g = wfc_blocks(n, THREADS, dev);
    if (x->dtype == WF_F64 || gx->dtype == WF_F64)
        bias_gelu_bwd_kernel<double><<<g, THREADS, 0, st>>>(
            (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const char *)x->data, x->dtype,
            (const char *)bias->data, bias->dtype, n, D, tanh_approx != 0);
    else
        bias_gelu_bwd_kernel<float><<<g, THREADS, 0, st>>>(
            (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const char *)x->data, x->dtype,
            (const char *)bias->data, bias->dtype, n, D, tanh_approx != 0);
    return wfc_check("bias_gelu backward kernel", dev);
}

/* ---------------------------------------------------------------- GELU backward + bias gradient
 * gx = gy * gelu'(pre) over [rows, N] (contiguous, one dtype among f32 / bf16 / f16) and
 * gb [N] = gx's column sums, the bias gradient of the Linear before the GELU (GPT-2's c_fc):
 * the pass that makes gx reads gy and pre anyway, so summing gx there saves the separate
 * reduction (cuBLASLt's BGRAD epilogue) that would read all of gx again.
 *
 * gx element by element is unary_grad<float> of the GELU ops, the function every unary
 * backward kernel above computes with, so gx has the bits of wf__cuda_unary_backward's. The
 * sums add gx's values as stored (rounded to the dtype), in f32, in a fixed order, in the two
 * passes of wfc_colsum (cuda_common.cuh: wfc_colsum_lanes, wfc_colsum_finish), with blocks of
 * WFC_CS_TX columns (16-byte vectors, or single elements on the generic path) x WFC_CS_TY row
 * lanes over one chunk of rows and the partials in a workspace from the caching allocator. The
 * chunking depends on the shape and the device (SMs, the kernel's
 * occupancy) only: two calls give the same bits (no atomics). The vector kernel issues GB_U
 * rows' loads before it converts any, so each thread has 2 x GB_U 16-byte loads in flight.
 * WEFT_GELU_NOVEC=1 forces the generic kernel. */
#define GB_U 4

template <bool TANH> __device__ __forceinline__ float gelu_bias_grad(float g, float x) {
    return unary_grad<float>(TANH ? WFC_U_GELU_TANH : WFC_U_GELU, g, x, 0.f, true, false, 0.f, 0.f);
}
/* v as dt stores it */
__device__ __forceinline__ float round_as(float v, int dt) {
    return dt == WF_BF16 ? wfc_bf16_to_f(wfc_f_to_bf16(v)) : dt == WF_F16 ? wfc_h_to_f(wfc_f_to_h(v)) : v;
}

template <int DT, bool TANH>
__global__ void __launch_bounds__(WFC_CS_TX *WFC_CS_TY) gelu_bias_vec_kernel(char *__restrict__ gx, const char *__restrict__ gy,
                                                                    const char *__restrict__ pre, int64_t rows,
                                                                    int nvec, int64_t rows_per_chunk,
                                                                    float *__restrict__ partial) {
    typedef wfc_vec16<DT> V;
    __shared__ float sm[WFC_CS_TY][WFC_CS_TX][V::N];
    int v = blockIdx.x * WFC_CS_TX + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc[V::N];
#pragma unroll
    for (int j = 0; j < V::N; j++) acc[j] = 0.f;
    if (v < nvec) {
        int64_t r = r0 + threadIdx.y;
        for (; r + (GB_U - 1) * WFC_CS_TY < r1; r += GB_U * WFC_CS_TY) {
            typename V::raw graw[GB_U], praw[GB_U];
#pragma unroll
            for (int u = 0; u < GB_U; u++) {
                int64_t i = (r + u * WFC_CS_TY) * nvec + v;
                graw[u] = V::ldr(gy, i);
                praw[u] = V::ldr(pre, i);
            }
#pragma unroll
            for (int u = 0; u < GB_U; u++) {
                float g[V::N], x[V::N];
                V::cvt(graw[u], g);
                V::cvt(praw[u], x);
#pragma unroll
                for (int j = 0; j < V::N; j++) g[j] = gelu_bias_grad<TANH>(g[j], x[j]);
                V::st(gx, (r + u * WFC_CS_TY) * nvec + v, g);
#pragma unroll
                for (int j = 0; j < V::N; j++) acc[j] += round_as(g[j], DT);
            }
        }
        for (; r < r1; r += WFC_CS_TY) {
            float g[V::N], x[V::N];
            V::ld(gy, r * nvec + v, g);
            V::ld(pre, r * nvec + v, x);
#pragma unroll
            for (int j = 0; j < V::N; j++) g[j] = gelu_bias_grad<TANH>(g[j], x[j]);
            V::st(gx, r * nvec + v, g);
#pragma unroll
            for (int j = 0; j < V::N; j++) acc[j] += round_as(g[j], DT);
        }
    }
    wfc_colsum_lanes<V::N>(sm, acc, (int64_t)v * V::N, (int64_t)nvec * V::N, partial);
}

/* any N and alignment: one column per thread (a warp reads WFC_CS_TX consecutive elements) */
template <bool TANH>
__global__ void __launch_bounds__(WFC_CS_TX *WFC_CS_TY) gelu_bias_kernel(char *__restrict__ gx, const char *__restrict__ gy,
                                                                const char *__restrict__ pre, int dt, int64_t rows,
                                                                int64_t N, int64_t rows_per_chunk,
                                                                float *__restrict__ partial) {
    __shared__ float sm[WFC_CS_TY][WFC_CS_TX][1];
    int64_t c = (int64_t)blockIdx.x * WFC_CS_TX + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    int es = wfc_dtype_size(dt);
    float acc[1] = { 0.f };
    if (c < N) {
        for (int64_t r = r0 + threadIdx.y; r < r1; r += WFC_CS_TY) {
            int64_t i = (r * N + c) * es;
            float o = gelu_bias_grad<TANH>(wfc_ld<float>(gy + i, dt), wfc_ld<float>(pre + i, dt));
            wfc_st<float>(gx + i, dt, o);
            acc[0] += round_as(o, dt);
        }
    }
    wfc_colsum_lanes<1>(sm, acc, c, N, partial);
}

typedef void (*gelu_bias_vec_fn)(char *, const char *, const char *, int64_t, int, int64_t, float *);
typedef void (*gelu_bias_gen_fn)(char *, const char *, const char *, int, int64_t, int64_t, int64_t, float *);
static gelu_bias_vec_fn gelu_bias_vec_pick(int dt, bool tf) {
    if (dt == WF_BF16) return tf ? gelu_bias_vec_kernel<WF_BF16, true> : gelu_bias_vec_kernel<WF_BF16, false>;
    if (dt == WF_F16) return tf ? gelu_bias_vec_kernel<WF_F16, true> : gelu_bias_vec_kernel<WF_F16, false>;
    return tf ? gelu_bias_vec_kernel<WF_F32, true> : gelu_bias_vec_kernel<WF_F32, false>;
}

/* Chunks of rows for `tiles` column tiles: one wave of the blocks the GPU holds at once (the
 * kernel's occupancy on every SM), so no second, partly filled wave; each row lane at least
 * GB_U rows; 65535 at most (grid y). */
static int64_t gelu_bias_chunks(const void *fn, int64_t tiles, int64_t rows, int dev) {
    int per = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, fn, WFC_CS_TX * WFC_CS_TY, 0) != cudaSuccess || per < 1) {
        (void)cudaGetLastError();
        per = 4;
    }
    int64_t chunks = (int64_t)wfc_num_sms(dev) * per / tiles;
    int64_t maxc = (rows + GB_U * WFC_CS_TY - 1) / (GB_U * WFC_CS_TY);
    if (chunks > maxc) chunks = maxc;
    if (chunks > 65535) chunks = 65535;
    return chunks < 1 ? 1 : chunks;
}

extern "C" int wf__cuda_gelu_backward_bias(const wf_cuda_view *gx, const wf_cuda_view *gb, const wf_cuda_view *gy,
                                           const wf_cuda_view *pre, int tanh_approx, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "gelu_backward_bias", &st);
    if (rc) return rc;
    int dt = pre->dtype;
    if ((dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) || gx->dtype != dt || gy->dtype != dt || gb->dtype != dt)
        return wfc_error(WF_EDTYPE, "gelu_backward_bias on cuda:%d: f32, bf16 or f16 of one dtype, got %d/%d/%d/%d",
                         dev, gx->dtype, gb->dtype, gy->dtype, dt);
    if (!wfc_contig(gx) || !wfc_contig(gb) || !wfc_contig(gy) || !wfc_contig(pre) || pre->ndim < 1)
        return wfc_error(WF_EINVAL, "gelu_backward_bias on cuda:%d: operands must be contiguous", dev);
    int64_t n = wfc_numel(pre), N = pre->shape[pre->ndim - 1];
    if (!N) return 0;
    int64_t rows = n / N;
    int es = wfc_dtype_size(dt), w = 16 / es;
    bool vec = !gelu_novec() && N % w == 0 && N / w <= INT32_MAX - WFC_CS_TX && !((uintptr_t)gx->data & 15) &&
               !((uintptr_t)gy->data & 15) && !((uintptr_t)pre->data & 15);
    int64_t tiles = ((vec ? N / w : N) + WFC_CS_TX - 1) / WFC_CS_TX;
    if (tiles > INT32_MAX)
        return wfc_error(WF_EINVAL, "gelu_backward_bias on cuda:%d: %lld columns", dev, (long long)N);
    bool tf = tanh_approx != 0;
    gelu_bias_vec_fn vf = vec ? gelu_bias_vec_pick(dt, tf) : NULL;
    gelu_bias_gen_fn gf = vec ? NULL : tf ? gelu_bias_kernel<true> : gelu_bias_kernel<false>;
    int64_t chunks = gelu_bias_chunks(vec ? (const void *)vf : (const void *)gf, tiles, rows, dev);
    int64_t rpc = (rows + chunks - 1) / chunks;
    if (rows) chunks = (rows + rpc - 1) / rpc;
    size_t pbytes = (size_t)chunks * (size_t)N * sizeof(float);
    float *partial = (float *)wf__cuda_alloc(dev, pbytes);
    if (!partial) return WF_ENOMEM;
    dim3 grid((unsigned)tiles, (unsigned)chunks), block(WFC_CS_TX, WFC_CS_TY);
    char *gxp = (char *)gx->data;
    const char *gyp = (const char *)gy->data, *pp = (const char *)pre->data;
    if (vec) vf<<<grid, block, 0, st>>>(gxp, gyp, pp, rows, (int)(N / w), rpc, partial);
    else gf<<<grid, block, 0, st>>>(gxp, gyp, pp, dt, rows, N, rpc, partial);
    rc = wfc_check("gelu_backward_bias kernel", dev);
    if (!rc) {
        rc = wfc_colsum_finish(partial, chunks, N, gb->data, dt, dev, st);
    }
    wf__cuda_free(dev, partial, pbytes);   /* stream-ordered: safe to reuse at once */
    return rc;
}
