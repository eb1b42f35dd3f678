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

#endif
