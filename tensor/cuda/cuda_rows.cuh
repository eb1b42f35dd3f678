/* tensor/cuda/cuda_rows.cuh: the launch plan shared by the row kernels (softmax and its
 * cross-entropy in cuda_softmax.cu, layer norm in cuda_layer_norm.cu): each row of the last
 * dimension is reduced by one warp, or by one block when it is long. CUDA C++ only. */
#ifndef WEFT_CUDA_ROWS_CUH
#define WEFT_CUDA_ROWS_CUH
#include "cuda_common.cuh"

/* ---------------------------------------------------------------- row kernels
 * BLOCK = false: one warp per row, 8 rows per 256-thread block; BLOCK = true: one block
 * (512 threads) per row. Rows are contiguous. */

template <bool BLOCK> struct row_ctx {
    __device__ __forceinline__ static int64_t row() {
        return BLOCK ? (int64_t)blockIdx.x : (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    }
    __device__ __forceinline__ static int tid() { return BLOCK ? (int)threadIdx.x : (int)(threadIdx.x & 31); }
    __device__ __forceinline__ static int nth() { return BLOCK ? (int)blockDim.x : 32; }
    template <class T, class F> __device__ __forceinline__ static T reduce(T v, F f, T ident) {
        if (BLOCK) return wfc_block_reduce(v, f, ident);
        return wfc_warp_reduce(v, f);
    }
};

#define ROW_THREADS_WARP 256
#define ROW_THREADS_BLOCK 512

static void row_launch_dims(int64_t rows, int64_t cols, bool *block, unsigned *grid, unsigned *threads) {
    *block = cols > 1024;
    if (*block) { *grid = (unsigned)rows; *threads = ROW_THREADS_BLOCK; }
    else { *grid = (unsigned)((rows + 7) / 8); *threads = ROW_THREADS_WARP; }
}

#define ROW_DISPATCH(KERNEL, isf64, block, grid, threads, st, ...)                          \
    do {                                                                                  \
        if (isf64) {                                                                      \
            if (block) KERNEL<double, true><<<grid, threads, 0, st>>>(__VA_ARGS__);       \
            else KERNEL<double, false><<<grid, threads, 0, st>>>(__VA_ARGS__);            \
        } else {                                                                          \
            if (block) KERNEL<float, true><<<grid, threads, 0, st>>>(__VA_ARGS__);        \
            else KERNEL<float, false><<<grid, threads, 0, st>>>(__VA_ARGS__);             \
        }                                                                                 \
    } while (0)

static void rows_cols(const wf_cuda_view *x, int64_t *rows, int64_t *cols) {
    int64_t n = wfc_numel(x);
    *cols = x->ndim ? x->shape[x->ndim - 1] : 1;
    *rows = *cols ? n / *cols : 0;
}

/* ---------------------------------------------------------------- 16-byte row vectors
 * One 16-byte vector of dtype DT (f32, bf16 or f16; a template parameter, so no per-element
 * dtype switch) as N floats, with the conversions of wfc_ld / wfc_st. For row kernels whose
 * rows are contiguous, 16-byte aligned and a whole number of vectors long (the cross-entropy
 * kernels' vector path in cuda_softmax.cu). Offsets are 32-bit, from the row's start: i is the
 * vector's index in the row, j an element's; the host checks that a row fits. ldr / cvt split
 * ld in two, so that a kernel can issue several loads before it unpacks any (fewer registers
 * held than unpacked floats). */
template <int DT> struct row_vec;
template <> struct row_vec<WF_F32> {
    enum { N = 4, ES = 4 };
    typedef float4 raw;
    static __device__ __forceinline__ raw ldr(const char *row, int i) { return ((const float4 *)row)[i]; }
    static __device__ __forceinline__ void cvt(raw a, float *o) { o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; }
    static __device__ __forceinline__ void ld(const char *row, int i, float *o) { cvt(ldr(row, i), o); }
    static __device__ __forceinline__ void st(char *row, int i, const float *v) {
        ((float4 *)row)[i] = make_float4(v[0], v[1], v[2], v[3]);
    }
    static __device__ __forceinline__ float ld1(const char *row, int j) { return ((const float *)row)[j]; }
};
template <int DT> struct row_vec_half {   /* bf16 and f16: 8 elements, two per 32-bit word */
    enum { N = 8, ES = 2 };
    static __device__ __forceinline__ float to_f(uint32_t h) {
        return DT == WF_BF16 ? wfc_bf16_to_f((uint16_t)h) : wfc_h_to_f((uint16_t)h);
    }
    static __device__ __forceinline__ uint32_t from_f(float f) {
        return DT == WF_BF16 ? wfc_f_to_bf16(f) : wfc_f_to_h(f);
    }
    typedef uint4 raw;
    static __device__ __forceinline__ raw ldr(const char *row, int i) { return ((const uint4 *)row)[i]; }
    static __device__ __forceinline__ void ld(const char *row, int i, float *o) { cvt(ldr(row, i), o); }
    static __device__ __forceinline__ void cvt(raw u, float *o) {
        uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int k = 0; k < 4; k++) {
            o[2 * k] = to_f(w[k] & 0xffffu);
            o[2 * k + 1] = to_f(w[k] >> 16);
        }
    }
    static __device__ __forceinline__ void st(char *row, int i, const float *v) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = from_f(v[2 * k]) | (from_f(v[2 * k + 1]) << 16);
        ((uint4 *)row)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
    static __device__ __forceinline__ float ld1(const char *row, int j) { return to_f(((const uint16_t *)row)[j]); }
};
template <> struct row_vec<WF_BF16> : row_vec_half<WF_BF16> {};
template <> struct row_vec<WF_F16> : row_vec_half<WF_F16> {};

#endif
