/* tensor/cuda/cuda_blas_api.cuh: cuBLAS and cuBLASLt, loaded on the first CUDA device set-up
 * instead of at process start.
 *
 * Why: linking libcublas/libcublasLt makes the dynamic loader map and relocate them before
 * main(), about 80 ms and 210 MB of resident memory on a 2-core machine (bench/NOTES.md,
 * "cuBLAS loaded on first use"), paid by every program built with CUDA, including the ones
 * that only ever train on the CPU (issue 12: start-up under 20 ms, an MLP epoch under 80 MB).
 * libcudart is cheap (about 1 ms) and stays linked; the kernels' registration needs it.
 *
 * Every cuBLAS function weft calls is one row of WFC_BLAS_FUNCS; the calls read
 * `wfc_blas.cublasLtMatmul(...)`. The members are named as the headers name the functions, so
 * cublas_v2.h's macros (cublasCreate -> cublasCreate_v2) pick the versioned symbol for the
 * member, the call and dlsym alike. wf__cuda_blas_load() (cuda_api.h) runs in a device's
 * first set-up (cuda_device.cu), before any call through the table can happen. */
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

/* C++ overloads these two (the headers add inline versions with a legacy compute type), so
 * their type is written out: the C symbols' */
typedef cublasStatus_t (*wfc_gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                         const void *, const void *, cudaDataType, int, const void *,
                                         cudaDataType, int, const void *, void *, cudaDataType, int,
                                         cublasComputeType_t, cublasGemmAlgo_t);
typedef cublasStatus_t (*wfc_gemm_strided_batched_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                                         int, int, int, const void *, const void *, cudaDataType,
                                                         int, long long int, const void *, cudaDataType, int,
                                                         long long int, const void *, void *, cudaDataType, int,
                                                         long long int, int, cublasComputeType_t,
                                                         cublasGemmAlgo_t);

/* X(function) takes the type from the header's declaration; T(function, type) names it */
#define WFC_BLAS_FUNCS(X, T)                                                                       \
    X(cublasCreate) X(cublasSetStream) X(cublasSetWorkspace) X(cublasGetStatusString)              \
    T(cublasGemmEx, wfc_gemm_ex_fn) T(cublasGemmStridedBatchedEx, wfc_gemm_strided_batched_ex_fn)  \
    X(cublasLtCreate) X(cublasLtMatmul) X(cublasLtMatmulAlgoGetHeuristic)                          \
    X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute)     \
    X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy)                           \
    X(cublasLtMatmulPreferenceSetAttribute)                                                        \
    X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute)

/* the types first, at namespace scope: a member declared with decltype of its own name would
 * change that name's meaning inside the struct */
#define WFC_BLAS_TYPE(f) typedef decltype(&f) wfc_blas_##f##_fn;
#define WFC_BLAS_TYPE_T(f, type) typedef type wfc_blas_##f##_fn;
WFC_BLAS_FUNCS(WFC_BLAS_TYPE, WFC_BLAS_TYPE_T)
#undef WFC_BLAS_TYPE
#undef WFC_BLAS_TYPE_T

struct wfc_blas_api {
#define WFC_BLAS_MEMBER(f) wfc_blas_##f##_fn f;
#define WFC_BLAS_MEMBER_T(f, type) WFC_BLAS_MEMBER(f)
    WFC_BLAS_FUNCS(WFC_BLAS_MEMBER, WFC_BLAS_MEMBER_T)
#undef WFC_BLAS_MEMBER
#undef WFC_BLAS_MEMBER_T
};

/* filled by wf__cuda_blas_load (cuda_blas_api.cu); read-only after it */
extern struct wfc_blas_api wfc_blas;
