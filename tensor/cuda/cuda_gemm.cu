/* tensor/cuda/cuda_gemm.cu: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] on the GPU, the
 * CUDA twin of tensor/cpu/gemm.c: cuBLASLt with a per-device plan cache (autotuned once per
 * shape), cublasGemmStridedBatchedEx for what Lt does not take, the TF32 switch, and the
 * cuBLASLt bias / bias-gradient epilogues of Linear. Handles and plans live in the device state
 * (cuda_device.cuh); the stream is the device's one stream, as for every other kernel. */
#include "cuda_device.cuh"

#include <stdlib.h>
#include <string.h>

static volatile int g_tf32;


extern "C" void wf__cuda_set_tf32(int enabled) { g_tf32 = enabled != 0; }
extern "C" int wf__cuda_get_tf32(void) { return g_tf32; }

/* C[b] = beta * C[b] (the k == 0 case, which cuBLAS may refuse for lda/ldb < 1) */
__global__ void gemm_scale_kernel(char *C, int dt, int64_t m, int64_t n, int64_t ldc, int64_t strideC,
                                  int64_t batch, double beta) {
    int64_t total = batch * m * n, es = dt == WF_F64 ? 8 : dt == WF_F32 ? 4 : 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / (m * n), r = i - b * m * n, row = r / n, col = r - row * n;
        char *p = C + (b * strideC + row * ldc + col) * es;
        wfc_st<double>(p, dt, beta == 0 ? 0.0 : beta * wfc_ld<double>(p, dt));
    }
}

/* ---------------------------------------------------------------- cuBLASLt plans
 * One plan per (dtype, tf32, transposes, sizes, leading dims, batch strides, pointer
 * alignments): the descriptors and the heuristic's best algorithm, found once. A plan whose
 * heuristic found nothing is cached too (ok = false: use cublasGemmStridedBatchedEx). */
#define LT_PLANS 128
#define LT_WS_BYTES ((size_t)32 << 20)
#define LT_CAND 6

struct lt_key {
    int dtype, tf32, ta, tb;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc, batch;
    int al_a, al_b, al_c;
    int epi;                         /* 0, or LT_EPI_* (bias and aux pointers set per call) */
    int al_bias, al_aux;             /* the epilogue's vector and aux matrix: alignments the heuristic sees */
    int64_t ldaux;                   /* the GELU epilogues' aux matrix: leading dimension (elements) */
    int c32;                         /* C and D f32 while A and B are f16 / bf16 (gemm_acc) */
};
#define LT_EPI_BIAS 1
#define LT_EPI_BGRAD 2
#define LT_EPI_GELU_AUX_BIAS 3       /* D = gelu(AB + bias), aux = AB + bias */
#define LT_EPI_DGELU_BGRAD 4         /* D = AB * gelu'(aux), bias = D's sums over Lt's columns */
#define LT_EPI_GELU_AUX 5            /* the two without the bias */
#define LT_EPI_DGELU 6
struct lt_plan {
    bool used, ok;
    lt_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int ncand;                       /* heuristic candidates (timed once when the call allows) */
    cublasLtMatmulAlgo_t cand[LT_CAND];
    bool tuned;
};

static void lt_plan_destroy(lt_plan *p) {
    if (!p->used) return;
    if (p->desc) wfc_blas.cublasLtMatmulDescDestroy(p->desc);
    if (p->la) wfc_blas.cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) wfc_blas.cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) wfc_blas.cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

static cublasLtMatrixLayout_t lt_layout(cudaDataType_t ty, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                        int64_t stride) {
    cublasLtMatrixLayout_t l = NULL;
    if (wfc_blas.cublasLtMatrixLayoutCreate(&l, ty, (uint64_t)rows, (uint64_t)cols, ld) != CUBLAS_STATUS_SUCCESS) return NULL;
    if (batch > 1) {
        int32_t bc = (int32_t)batch;
        wfc_blas.cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
        wfc_blas.cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
    }
    return l;
}

/* the epilogue's per-call pointers into p's descriptor: false when Lt refuses one */
static bool lt_set_epi_ptrs(lt_plan *p, void *biasp, void *auxp) {
    if (!p->key.epi) return true;
    if (p->key.epi < LT_EPI_GELU_AUX &&
        wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &biasp, sizeof biasp) !=
            CUBLAS_STATUS_SUCCESS)
        return false;
    if (p->key.epi < LT_EPI_GELU_AUX_BIAS) return true;
    return wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &auxp, sizeof auxp) ==
           CUBLAS_STATUS_SUCCESS;
}

/* build p for key (lock held); p->ok tells whether Lt can run it. biasp / auxp: this call's
 * epilogue pointers, set before the heuristic (which reads their alignment from them) */
static void lt_plan_build(dev_state *s, lt_plan *p, const lt_key *key, cudaDataType_t ty, cublasComputeType_t ct,
                          void *biasp, void *auxp) {
    memset(p, 0, sizeof *p);
    p->used = true;
    p->key = *key;
    cublasOperation_t opA = key->tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* Lt's A is weft's B (row-major swap) */
    cublasOperation_t opB = key->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (wfc_blas.cublasLtMatmulDescCreate(&p->desc, ct, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) { p->desc = NULL; return; }
    wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA);
    wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB);
    if (key->epi) {
        /* Lt's D is weft's C^T: EPILOGUE_BIAS adds bias[n] down D's rows (weft's columns);
         * BGRADB reduces Lt's B (weft's op(A)) over k into bias[m] (D's columns). The GELU
         * ones: aux is D's shape (weft's [m, n] row-major, Lt's n x m column-major, ld
         * ldaux), the bias / its gradient one element per D row (weft's n): DGELU_BGRAD sums
         * D = dgelu(...) along Lt's columns, i.e. over weft's rows. */
        cublasLtEpilogue_t e = key->epi == LT_EPI_BIAS             ? CUBLASLT_EPILOGUE_BIAS
                               : key->epi == LT_EPI_BGRAD          ? CUBLASLT_EPILOGUE_BGRADB
                               : key->epi == LT_EPI_GELU_AUX_BIAS  ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                               : key->epi == LT_EPI_DGELU_BGRAD    ? CUBLASLT_EPILOGUE_DGELU_BGRAD
                               : key->epi == LT_EPI_GELU_AUX       ? CUBLASLT_EPILOGUE_GELU_AUX
                                                                   : CUBLASLT_EPILOGUE_DGELU;
        cudaDataType_t bt = ty;
        if (wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e) != CUBLAS_STATUS_SUCCESS)
            return;
        if (key->epi < LT_EPI_GELU_AUX &&
            wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt) != CUBLAS_STATUS_SUCCESS)
            return;
        if (key->epi >= LT_EPI_GELU_AUX_BIAS &&
            wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &key->ldaux, sizeof key->ldaux) !=
                CUBLAS_STATUS_SUCCESS)
            return;
        if (!lt_set_epi_ptrs(p, biasp, auxp)) return;
    }
    int64_t n = key->n, m = key->m, k = key->k;
    p->la = lt_layout(ty, opA == CUBLAS_OP_N ? n : k, opA == CUBLAS_OP_N ? k : n, key->ldb, key->batch, key->sb);
    p->lb = lt_layout(ty, opB == CUBLAS_OP_N ? k : m, opB == CUBLAS_OP_N ? m : k, key->lda, key->batch, key->sa);
    p->lc = lt_layout(key->c32 ? CUDA_R_32F : ty, n, m, key->ldc, key->batch, key->sc);
    if (!p->la || !p->lb || !p->lc) return;
    cublasLtMatmulPreference_t pref = NULL;
    if (wfc_blas.cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return;
    uint64_t ws = LT_WS_BYTES;
    uint32_t aa = (uint32_t)key->al_b, ab = (uint32_t)key->al_a, ac = (uint32_t)key->al_c;
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
    cublasLtMatmulHeuristicResult_t res[LT_CAND];
    int nres = 0;
    cublasStatus_t st = wfc_blas.cublasLtMatmulAlgoGetHeuristic(s->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, LT_CAND, res,
                                                       &nres);
    wfc_blas.cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) return;
    for (int i = 0; i < nres; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) p->cand[p->ncand++] = res[i].algo;
    if (p->ncand > 0) {
        p->algo = p->cand[0];
        p->ok = true;
    }
}

/* cublasGemmStridedBatchedEx over batches of at most 65535 (row-major: operands swapped) */
static cublasStatus_t ex_gemm(cublasHandle_t h, int es, cudaDataType_t ty, cublasComputeType_t ct, int transA,
                              int transB, int64_t m, int64_t n, int64_t k, const void *pa, const void *A, int64_t lda,
                              int64_t strideA, const void *B, int64_t ldb, int64_t strideB, const void *pb, void *C,
                              int64_t ldc, int64_t strideC, int64_t batch) {
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int64_t MAXB = 65535;
    for (int64_t b0 = 0; b0 < batch; b0 += MAXB) {
        int nb = (int)(batch - b0 < MAXB ? batch - b0 : MAXB);
        const char *a = (const char *)A + b0 * strideA * es;
        const char *b = (const char *)B + b0 * strideB * es;
        char *c = (char *)C + b0 * strideC * es;
        cublasStatus_t s = wfc_blas.cublasGemmStridedBatchedEx(
            h, opB, opA, (int)n, (int)m, (int)k, pa, b, ty, (int)ldb, (long long)strideB, a, ty, (int)lda,
            (long long)strideA, pb, c, ty, (int)ldc, (long long)strideC, nb, ct, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* Time each heuristic candidate (and cublasGemmStridedBatchedEx) once on the real operands;
 * only for beta == 0, where running the product several times leaves C as one run would. */
static void lt_autotune(dev_state *s, lt_plan *p, cudaStream_t st, int es, cudaDataType_t ty, cublasComputeType_t ct,
                        int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const void *A, int64_t lda,
                        int64_t sA, const void *B, int64_t ldb, int64_t sB, float beta, void *C, int64_t ldc,
                        int64_t sC, int64_t batch) {
    p->tuned = true;
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess) { cudaGetLastError(); return; }
    if (cudaEventCreate(&e1) != cudaSuccess) { cudaEventDestroy(e0); cudaGetLastError(); return; }
    float best = 1e30f;
    int bi = -1;
    /* -1: cublasGemmStridedBatchedEx (no epilogue, and C of the operands' type only) */
    for (int i = p->key.epi || p->key.c32 ? 0 : -1; i < p->ncand; i++) {
        bool ok = true;
        for (int r = 0; r < 4 && ok; r++) {
            if (r == 1) cudaEventRecord(e0, st);
            cublasStatus_t bs =
                i < 0 ? ex_gemm(s->blas, es, ty, ct, ta, tb, m, n, k, &alpha, A, lda, sA, B, ldb, sB, &beta, C, ldc, sC,
                                batch)
                      : wfc_blas.cublasLtMatmul(s->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc,
                                       &p->cand[i], s->lt_ws, LT_WS_BYTES, st);
            ok = bs == CUBLAS_STATUS_SUCCESS;
        }
        if (!ok) continue;
        cudaEventRecord(e1, st);
        float ms = 0;
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) continue;
        if (ms < best) { best = ms; bi = i; }
    }
    cudaGetLastError();
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (bi < 0) p->ok = false;           /* cublasGemmStridedBatchedEx is as fast: use it */
    else p->algo = p->cand[bi];
}

/* The device's cuBLASLt handle, plan cache and workspace, made on first use (lt_lock held);
 * false when Lt cannot be used there (then never tried again) */
static bool lt_ready(dev_state *s, int dev) {
    if (s->lt_failed) return false;
    if (!s->lt) {
        s->lt_plans = (lt_plan *)calloc(LT_PLANS, sizeof(lt_plan));
        s->lt_ws = wf__cuda_alloc(dev, LT_WS_BYTES);
        if (!s->lt_ws) wf_clear_error(); /* not fatal: Lt is skipped */
        if (!s->lt_plans || !s->lt_ws || wfc_blas.cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) {
            s->lt_failed = true;
            s->lt = NULL;
            return false;
        }
    }
    return true;
}

/* cuda_api.h: the handle and workspace for cuda_fp8.cu's GEMMs (the same stream's work) */
extern "C" int wf__cuda_lt(int dev, void **lt, void **ws, size_t *ws_bytes) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "cuBLASLt", &st);
    if (rc) return rc;
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&s->lt_lock);
    bool ok = lt_ready(s, dev);
    *lt = s->lt;
    *ws = s->lt_ws;
    *ws_bytes = LT_WS_BYTES;
    pthread_mutex_unlock(&s->lt_lock);
    return ok ? 0 : wfc_error(WF_EDEVICEFAIL, "cuda:%d: cuBLASLt could not be set up (handle or its %zu-byte workspace)",
                              dev, (size_t)LT_WS_BYTES);
}

/* Try the GEMM through cuBLASLt. 0 = done; 1 = not handled (use cublasGemmStridedBatchedEx). */
static int lt_gemm(int dev, cudaStream_t st, int dtype, cudaDataType_t ty, cublasComputeType_t ct, int ta, int tb,
                   int64_t m, int64_t n, int64_t k, float alpha, const void *A, int64_t lda, int64_t sA,
                   const void *B, int64_t ldb, int64_t sB, float beta, void *C, int64_t ldc, int64_t sC,
                   int64_t batch, int epi = 0, void *biasp = NULL, void *auxp = NULL, int64_t ldaux = 0,
                   int c32 = 0) {
    dev_state *s = &wfc_dev[dev];
    if (batch > 1 && (sA == 0 || sB == 0 || sC == 0)) return 1;   /* broadcast batches */
    if (batch > 2147483647LL) return 1;
    pthread_mutex_lock(&s->lt_lock);
    if (!lt_ready(s, dev)) { pthread_mutex_unlock(&s->lt_lock); return 1; }
    lt_key key;
    memset(&key, 0, sizeof key);
    key.dtype = dtype; key.tf32 = ct == CUBLAS_COMPUTE_32F_FAST_TF32; key.ta = ta; key.tb = tb;
    key.m = m; key.n = n; key.k = k; key.lda = lda; key.ldb = ldb; key.ldc = ldc;
    key.batch = batch;
    if (batch > 1) { key.sa = sA; key.sb = sB; key.sc = sC; }
    key.al_a = wfc_ptr_align(A); key.al_b = wfc_ptr_align(B); key.al_c = wfc_ptr_align(C);
    key.epi = epi;
    key.c32 = c32;
    if (epi && epi < LT_EPI_GELU_AUX) key.al_bias = wfc_ptr_align(biasp);
    if (epi >= LT_EPI_GELU_AUX_BIAS) { key.al_aux = wfc_ptr_align(auxp); key.ldaux = ldaux; }
    lt_plan *p = NULL;
    for (int i = 0; i < LT_PLANS; i++)
        if (s->lt_plans[i].used && !memcmp(&s->lt_plans[i].key, &key, sizeof key)) { p = &s->lt_plans[i]; break; }
    if (!p) {
        p = &s->lt_plans[s->lt_next];
        s->lt_next = (s->lt_next + 1) % LT_PLANS;
        lt_plan_destroy(p);
        lt_plan_build(s, p, &key, ty, ct, biasp, auxp);
    }
    if (p->ok && !lt_set_epi_ptrs(p, biasp, auxp)) p->ok = false;
    /* timing waits for events: not inside a CUDA graph capture (the heuristic's pick is used) */
    if (p->ok && !p->tuned && !s->capture && beta == 0 && (double)m * (double)n * (double)k * (double)batch >= 16777216.0)
        lt_autotune(s, p, st, wfc_dtype_size(dtype), ty, ct, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C,
                    ldc, sC, batch);
    int rc = 1;
    if (p->ok) {
        cublasStatus_t bs = wfc_blas.cublasLtMatmul(s->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc,
                                           &p->algo, s->lt_ws, LT_WS_BYTES, st);
        if (bs == CUBLAS_STATUS_SUCCESS) rc = 0;
        else p->ok = false;   /* do not try this plan again */
    }
    pthread_mutex_unlock(&s->lt_lock);
    return rc;
}

extern "C" int wf__cuda_gemm(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k,
                             double alpha, const void *A, int64_t lda, int64_t strideA,
                             const void *B, int64_t ldb, int64_t strideB,
                             double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "gemm", &st);
    if (rc) return rc;
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
    const int64_t IMAX = 2147483647;
    if (m > IMAX || n > IMAX || k > IMAX || lda > IMAX || ldb > IMAX || ldc > IMAX)
        return wfc_error(WF_ENOTSUP, "gemm on cuda:%d: a dimension exceeds 2^31-1 (m=%lld n=%lld k=%lld)", dev,
                         (long long)m, (long long)n, (long long)k);
    cudaDataType_t ty;
    cublasComputeType_t ct;
    float af = (float)alpha, bf = (float)beta;
    const void *pa = &af, *pb = &bf;
    switch (dtype) {
    case WF_F32: ty = CUDA_R_32F; ct = g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; break;
    case WF_F16: ty = CUDA_R_16F; ct = CUBLAS_COMPUTE_32F; break;
    case WF_BF16: ty = CUDA_R_16BF; ct = CUBLAS_COMPUTE_32F; break;
    case WF_F64: ty = CUDA_R_64F; ct = CUBLAS_COMPUTE_64F; pa = &alpha; pb = &beta; break;
    default:
        return wfc_error(WF_ENOTSUP, "gemm on cuda:%d: dtype %s is not supported (f32, f64, f16, bf16)", dev,
                         wf_dtype_name((wf_dtype)dtype));
    }
    int es = wfc_dtype_size(dtype);
    if (k <= 0) {
        if (beta == 1) return 0;
        int64_t total = batch * m * n;
        gemm_scale_kernel<<<wfc_blocks(total, 256, dev), 256, 0, st>>>((char *)C, dtype, m, n, ldc, strideC, batch, beta);
        return wfc_check("gemm (k = 0)", dev);
    }
    static int no_lt = -1;   /* WEFT_NO_CUBLASLT=1: cublasGemmStridedBatchedEx only (comparisons) */
    if (no_lt < 0) no_lt = getenv("WEFT_NO_CUBLASLT") != NULL;
    /* cuBLASLt (autotuned once per shape) measured ahead of cublasGemmEx up to ~2048^3 on the
     * H100 (bf16 1024^3: 88 vs 82 TFLOP/s) and behind it at 8192^3 (f16 658 vs 738): large
     * products keep cublasGemmStridedBatchedEx (bench/NOTES.md, 2026-11 fused-kernels run). */
    if (dtype != WF_F64 && !no_lt && (double)m * (double)n * (double)k * (double)batch <= 8589934592.0 &&
        lt_gemm(dev, st, dtype, ty, ct, transA, transB, m, n, k, af, A, lda, strideA, B, ldb, strideB, bf, C, ldc,
                strideC, batch) == 0)
        return wfc_check("gemm (cuBLASLt)", dev);
    cublasHandle_t h = wfc_dev[dev].blas;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands and
     * keep each op (a row-major matrix read column-major is its transpose). */
    {
        cublasStatus_t s = ex_gemm(h, es, ty, ct, transA, transB, m, n, k, pa, A, lda, strideA, B, ldb, strideB, pb, C,
                                   ldc, strideC, batch);
        if (s != CUBLAS_STATUS_SUCCESS) {
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) return wfc_report(e, "gemm (cuBLAS)", dev);
            return wfc_error(WF_EDEVICEFAIL, "cuda:%d: gemm failed in cublasGemmStridedBatchedEx: %s "
                             "(%s, m=%lld n=%lld k=%lld batch=%lld)", dev, wfc_blas.cublasGetStatusString(s),
                             wf_dtype_name((wf_dtype)dtype), (long long)m, (long long)n, (long long)k,
                             (long long)batch);
        }
    }
    return wfc_check("gemm", dev);
}

/* ---------------------------------------------------------------- bias gradient by column sums
 * WEFT_BGRAD=colsum (read once): Linear's bias gradient, the column sums of dy [rows, out]
 * (A below, transposed), comes from colsum_* after a plain GEMM for the weight gradient,
 * instead of cuBLASLt's BGRAD epilogue. Bytes moved do not decide between them: the epilogue
 * runs as a reduction kernel of its own (globalKernelBgradAB in the H100 trace of a GPT-2
 * step: 1.36 ms in 48 calls, against ~2.7 GB of bf16 dy, about 2 TB/s), and this one reads
 * dy once as well (plus partials of chunks x out f32, ~1 MB), and the weight-gradient GEMM
 * takes wf__cuda_gemm's usual route (Lt or cublasGemmEx by size). So
 * the default stays the epilogue, and the choice is there to be measured on the GPU
 * (bench/NOTES.md). Deterministic: per-chunk partials summed in a fixed order, in f32.
 *
 * colsum_partial: block (WFC_CS_TX, WFC_CS_TY) = 32 column vectors of 16 bytes (one warp reads 512
 * contiguous bytes of a row) x 8 row lanes, over one chunk of rows; the 8 lanes' sums meet
 * in shared memory and one f32 row of partials per chunk is written. colsum_finish: each
 * column's partials in chunk order, stored in the bias dtype. */

/* a: rows x (nvec vectors) with row pitch ld_bytes; partial: chunks x (nvec * N) floats */
template <int DT> __global__ void colsum_partial(const char *a, int64_t rows, int64_t ld_bytes, int nvec,
                                                 int64_t rows_per_chunk, float *partial) {
    typedef wfc_vec16<DT> V;
    __shared__ float sm[WFC_CS_TY][WFC_CS_TX][V::N];
    int v = blockIdx.x * WFC_CS_TX + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc[V::N];
#pragma unroll
    for (int j = 0; j < V::N; j++) acc[j] = 0.f;
    if (v < nvec) {
        const char *p = a + (int64_t)v * 16;
#pragma unroll 4
        for (int64_t r = r0 + threadIdx.y; r < r1; r += WFC_CS_TY) {
            float x[V::N];
            V::ld(p + r * ld_bytes, 0, x);
#pragma unroll
            for (int j = 0; j < V::N; j++) acc[j] += x[j];
        }
    }
    wfc_colsum_lanes<V::N>(sm, acc, (int64_t)v * V::N, (int64_t)nvec * V::N, partial);
}

__global__ void colsum_finish(const float *partial, int64_t chunks, int64_t m, char *out, int dt) {
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < m; c += (int64_t)gridDim.x * blockDim.x) {
        float t = 0.f;
        for (int64_t ch = 0; ch < chunks; ch++) t += partial[ch * m + c];
        wfc_st<float>(out + c * wfc_dtype_size(dt), dt, t);
    }
}

int wfc_colsum_finish(const float *partial, int64_t chunks, int64_t m, void *out, int dt, int dev, cudaStream_t st) {
    colsum_finish<<<wfc_blocks(m, 256, dev), 256, 0, st>>>(partial, chunks, m, (char *)out, dt);
    return wfc_check("column sums (finish) kernel", dev);
}

static bool bgrad_colsum(void) {
    static int v = -1;
    if (v < 0) { const char *e = getenv("WEFT_BGRAD"); v = e && !strcmp(e, "colsum"); }
    return v == 1;
}

/* out[i] = sum over the k rows of A [k, m] (row pitch lda elements) of A[r][i], A and out
 * of dtype dt (f32 / f16 / bf16). 1 when the layout does not fit (the caller keeps the
 * epilogue), else 0 or a negative code. */
static int colsum_launch(int dt, const void *A, int64_t k, int64_t m, int64_t lda, void *out, int out_dt, int dev,
                         cudaStream_t st) {
    int es = wfc_dtype_size(dt), w = 16 / es;
    if (m % w || ((uintptr_t)A & 15) || (lda * es) % 16 || m / w > 2147483647LL / WFC_CS_TX) return 1;
    int nvec = (int)(m / w);
    int64_t tiles = (nvec + WFC_CS_TX - 1) / WFC_CS_TX;
    /* enough blocks to fill the GPU (8 per SM), each row lane at least 4 rows */
    int64_t chunks = ((int64_t)wfc_num_sms(dev) * 8 + tiles - 1) / tiles, maxc = (k + 4 * WFC_CS_TY - 1) / (4 * WFC_CS_TY);
    if (chunks > maxc) chunks = maxc;
    if (chunks > 65535) chunks = 65535;
    if (chunks < 1) chunks = 1;
    int64_t rpc = (k + chunks - 1) / chunks;
    chunks = (k + rpc - 1) / rpc;
    size_t pbytes = (size_t)chunks * (size_t)m * sizeof(float);
    float *partial = (float *)wf__cuda_alloc(dev, pbytes);
    if (!partial) return WF_ENOMEM;
    dim3 grid((unsigned)tiles, (unsigned)chunks), block(WFC_CS_TX, WFC_CS_TY);
    const char *a = (const char *)A;
    if (dt == WF_BF16) colsum_partial<WF_BF16><<<grid, block, 0, st>>>(a, k, lda * es, nvec, rpc, partial);
    else if (dt == WF_F16) colsum_partial<WF_F16><<<grid, block, 0, st>>>(a, k, lda * es, nvec, rpc, partial);
    else colsum_partial<WF_F32><<<grid, block, 0, st>>>(a, k, lda * es, nvec, rpc, partial);
    int rc = wfc_check("bias gradient (column sums) kernel", dev);
    if (!rc) {
        rc = wfc_colsum_finish(partial, chunks, m, out, out_dt, dev, st);
    }
    wf__cuda_free(dev, partial, pbytes);   /* stream-ordered: safe to reuse at once */
    return rc;
}

int wfc_colsum(int dt, const void *A, int64_t k, int64_t m, int64_t lda, void *out, int out_dt, int dev,
               cudaStream_t st) {
    if (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) return 1;
    if (out_dt != dt && out_dt != WF_F32) return 1;
    return colsum_launch(dt, A, k, m, lda, out, out_dt, dev, st);
}


extern "C" int wf__cuda_gemm_epilogue(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k,
                                      const void *A, int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc,
                                      const void *bias, void *bgrad, int dev) {
    if ((bias != NULL) == (bgrad != NULL)) return 1;
    cudaDataType_t ty;
    cublasComputeType_t ct;
    switch (dtype) {
    case WF_F32: ty = CUDA_R_32F; ct = g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; break;
    case WF_F16: ty = CUDA_R_16F; ct = CUBLAS_COMPUTE_32F; break;
    case WF_BF16: ty = CUDA_R_16BF; ct = CUBLAS_COMPUTE_32F; break;
    default: return 1;
    }
    const int64_t IMAX = 2147483647;
    if (m <= 0 || n <= 0 || k <= 0 || m > IMAX || n > IMAX || k > IMAX || lda > IMAX || ldb > IMAX || ldc > IMAX)
        return 1;
    void *bp = bias ? (void *)bias : bgrad;
    if (wfc_ptr_align(bp) < 16) return 1;
    static int no_lt = -1;
    if (no_lt < 0) no_lt = getenv("WEFT_NO_CUBLASLT") != NULL || getenv("WEFT_NO_GEMM_EPILOGUE") != NULL;
    if (no_lt) return 1;
    cudaStream_t st;
    int rc = wfc_begin(dev, "gemm (epilogue)", &st);
    if (rc) return rc;
    /* the bias gradient of op(A) = A^T [m, k]: the column sums of A stored [k, m] */
    if (bgrad && transA && bgrad_colsum()) {
        int c = colsum_launch(dtype, A, k, m, lda, bgrad, dtype, dev, st);
        if (c <= 0) {
            if (c < 0) return c;
            return wf__cuda_gemm(dtype, transA, transB, m, n, k, 1.0, A, lda, 0, B, ldb, 0, 0.0, C, ldc, 0, 1, dev);
        }
    }
    if (lt_gemm(dev, st, dtype, ty, ct, transA, transB, m, n, k, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C, ldc, 0, 1,
                bias ? LT_EPI_BIAS : LT_EPI_BGRAD, bp) != 0) {
        cudaGetLastError();
        return 1;
    }
    return wfc_check("gemm (cuBLASLt epilogue)", dev);
}

/* ---------------------------------------------------------------- the GELU epilogues
 * Linear + GELU (tanh form, cuBLASLt's only one) inside the GEMM: forward GELU_AUX_BIAS writes
 * g = gelu(h) as D and h = AB + bias into aux, so neither a bias + GELU pass nor a saved
 * pre-activation pass over the [rows, hidden] matrix is needed; backward DGELU_BGRAD makes
 * dh = (dy W) * gelu'(h) and the bias gradient (dh's column sums) in the GEMM that makes dy W.
 * Without a bias: GELU_AUX / DGELU. cuBLASLt's conditions (cublasLt.h, EPILOGUE_AUX_LD): the
 * aux leading dimension a multiple of 8 and at least D's rows (weft's n); the aux matrix of
 * the output's dtype. Vectors, aux and C are asked 16-byte aligned; anything else declines (1)
 * and the caller composes the GEMM with the GELU kernels. WEFT_NO_GELU_EPILOGUE=1 (read once)
 * declines every call: the A/B switch for timing (bench/NOTES.md). The backward epilogue is
 * opt-in, WEFT_DGELU_EPILOGUE=1: on the H100 (cuBLAS 13) cuBLASLt ran DGELU_BGRAD as a kernel of
 * its own after the GEMM (`epilogue::impl::globalKernel`, 4.19 ms a GPT-2 124M step in 12
 * calls), where the GEMM, the GELU backward pass and the BGRAD column sums take about 1.8 ms. */
extern "C" int wf__cuda_gemm_gelu(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A,
                                  int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, void *aux,
                                  int64_t ldaux, const void *bias, void *bgrad, int backward, int dev) {
    if (!aux || !C || (backward ? bias != NULL : bgrad != NULL)) return 1;
    cudaDataType_t ty;
    switch (dtype) {   /* f32 keeps the GEMM + bias_gelu kernels */
    case WF_F16: ty = CUDA_R_16F; break;
    case WF_BF16: ty = CUDA_R_16BF; break;
    default: return 1;
    }
    const int64_t IMAX = 2147483647;
    if (m <= 0 || n <= 0 || k <= 0 || m > IMAX || n > IMAX || k > IMAX || lda > IMAX || ldb > IMAX || ldc > IMAX ||
        ldaux > IMAX)
        return 1;
    if (ldaux % 8 || ldaux < n || ldc < n) return 1;
    void *bp = backward ? bgrad : (void *)bias;
    if ((bp && wfc_ptr_align(bp) < 16) || wfc_ptr_align(aux) < 16 || wfc_ptr_align(C) < 16) return 1;
    static int off = -1, dgelu = -1;
    if (off < 0)
        off = getenv("WEFT_NO_GELU_EPILOGUE") != NULL || getenv("WEFT_NO_GEMM_EPILOGUE") != NULL ||
              getenv("WEFT_NO_CUBLASLT") != NULL;
    if (off || (backward && !wf__env_flag("WEFT_DGELU_EPILOGUE", &dgelu))) return 1;
    cudaStream_t st;
    int rc = wfc_begin(dev, "gemm (GELU epilogue)", &st);
    if (rc) return rc;
    int epi = backward ? (bp ? LT_EPI_DGELU_BGRAD : LT_EPI_DGELU) : (bp ? LT_EPI_GELU_AUX_BIAS : LT_EPI_GELU_AUX);
    if (lt_gemm(dev, st, dtype, ty, CUBLAS_COMPUTE_32F, transA, transB, m, n, k, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C,
                ldc, 0, 1, epi, bp, aux, ldaux) != 0) {
        cudaGetLastError();
        return 1;
    }
    return wfc_check("gemm (cuBLASLt GELU epilogue)", dev);
}

/* C (f32; f64 for f64) = op(A) @ op(B) + beta * C, beta 0 or 1 (the gemm_acc contract): f32
 * and f64 are the plain GEMM; f16 / bf16 operands write or add a f32 C (compute 32F), so the
 * product is never rounded to the operands' dtype. cuBLASLt first, with a plan of its own (key
 * c32: C and D f32) and, for beta 0 (a Linear's weight gradient in its f32 parameter's dtype),
 * the same one-time autotune as wf__cuda_gemm; cublasGemmEx where Lt declines, for products
 * past 2^33 (as wf__cuda_gemm) or under WEFT_NO_CUBLASLT. */
extern "C" int wf__cuda_gemm_acc(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A,
                                 int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc, int dev) {
    if (beta != 0 && beta != 1)
        return wfc_error(WF_EINVAL, "gemm_acc on cuda:%d: beta must be 0 (overwrite) or 1 (accumulate), got %g", dev,
                         beta);
    if (dtype == WF_F32 || dtype == WF_F64)
        return wf__cuda_gemm(dtype, transA, transB, m, n, k, 1.0, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, dev);
    cudaDataType_t ty;
    switch (dtype) {
    case WF_F16: ty = CUDA_R_16F; break;
    case WF_BF16: ty = CUDA_R_16BF; break;
    default:
        return wfc_error(WF_ENOTSUP, "gemm_acc on cuda:%d: dtype %s is not supported (f32, f64, f16, bf16)", dev,
                         wf_dtype_name((wf_dtype)dtype));
    }
    cudaStream_t st;
    int rc = wfc_begin(dev, "gemm_acc", &st);
    if (rc) return rc;
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {   /* C = beta * C: nothing for 1, zeros for 0 */
        if (beta == 1) return 0;
        gemm_scale_kernel<<<wfc_blocks(m * n, 256, dev), 256, 0, st>>>((char *)C, WF_F32, m, n, ldc, 0, 1, 0.0);
        return wfc_check("gemm_acc (k = 0)", dev);
    }
    const int64_t IMAX = 2147483647;
    if (m > IMAX || n > IMAX || k > IMAX || lda > IMAX || ldb > IMAX || ldc > IMAX)
        return wfc_error(WF_ENOTSUP, "gemm_acc on cuda:%d: a dimension exceeds 2^31-1 (m=%lld n=%lld k=%lld)", dev,
                         (long long)m, (long long)n, (long long)k);
    const float one = 1.0f, bf = (float)beta;
    static int no_lt = -1;
    if (no_lt < 0) no_lt = getenv("WEFT_NO_CUBLASLT") != NULL;
    if (!no_lt && (double)m * (double)n * (double)k <= 8589934592.0 &&
        lt_gemm(dev, st, dtype, ty, CUBLAS_COMPUTE_32F, transA, transB, m, n, k, one, A, lda, 0, B, ldb, 0, bf, C, ldc,
                0, 1, 0, NULL, NULL, 0, 1) == 0)
        return wfc_check("gemm_acc (cuBLASLt)", dev);
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: operands swapped, as in ex_gemm */
    cublasStatus_t s = wfc_blas.cublasGemmEx(wfc_dev[dev].blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    (int)n, (int)m, (int)k, &one, B, ty, (int)ldb, A, ty, (int)lda, &bf, C, CUDA_R_32F,
                                    (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return wfc_report(e, "gemm_acc (cuBLAS)", dev);
        return wfc_error(WF_EDEVICEFAIL, "cuda:%d: gemm_acc failed in cublasGemmEx: %s (%s operands, f32 C, m=%lld n=%lld k=%lld)",
                         dev, wfc_blas.cublasGetStatusString(s), wf_dtype_name((wf_dtype)dtype), (long long)m, (long long)n,
                         (long long)k);
    }
    return wfc_check("gemm_acc", dev);
}
