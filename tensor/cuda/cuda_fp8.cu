/* tensor/cuda/cuda_fp8.cu: fp8 training (the "transformer-engine" precision) on GPUs of compute
 * capability 8.9 and newer: the cast of a tensor to E4M3 / E5M2 under a device scale (with
 * its transposed copy and its amax), the delayed-scaling update of the scales, and the fp8
 * GEMM through cuBLASLt. tensor/cpu/fp8_format.c and fp8_scaling.c are the CPU reference these
 * kernels match bit for bit (tests/cuda/test_cuda_fp8.c).
 *
 * Nothing here waits for the host: the scales are read and written on the device, so a step
 * that runs these can be captured in a CUDA graph. */
#include "cuda_device.cuh"
#include "../cpu/fp8.h"

#include <cuda_fp8.h>
#include <pthread.h>
#include <string.h>

extern "C" int wf__cuda_capability(int dev, int *major, int *minor) {
    int rc = wfc_check_index(dev, "cuda capability");
    if (rc) return rc;
    cudaError_t e = cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, dev);
    return e == cudaSuccess ? 0 : wfc_report(e, "cudaDeviceGetAttribute (compute capability)", dev);
}

/* ---------------------------------------------------------------- cast
 * One block casts a 32 x 32 tile: 32 x 8 threads, each 4 rows of one column. The tile goes
 * through shared memory for the transposed copy, which the backward GEMMs need because
 * cuBLASLt's fp8 kernels take only K-major operands ("TN"). The amax is of x before scaling
 * (what the history must see); |x| as bits orders like the floats (NaN above inf), so an
 * integer atomicMax takes the block's maximum. The amax is read with __ldcg (L2): another
 * block's atomic may have raised it, and a stale smaller value only costs an atomic. */
#define CT 32
#define CR 8

__device__ __forceinline__ uint8_t to_fp8(float v, int fmt) {
    /* round to nearest even, saturating to +-max (inf too), NaN -> NaN: fp8_format.c */
    return (uint8_t)__nv_cvt_float_to_fp8(v, __NV_SATFINITE, fmt ? __NV_E5M2 : __NV_E4M3);
}

template <int DT> __device__ __forceinline__ float ld_in(const void *x, int64_t i) {
    if (DT == WF_F32) return ((const float *)x)[i];
    uint16_t h = ((const uint16_t *)x)[i];
    return DT == WF_BF16 ? wfc_bf16_to_f(h) : wfc_h_to_f(h);
}

/* One element's cast: its |v| bits raise m (the amax is of v before scaling), and v * s is
 * rounded to fp8. The one-byte and the 4-wide kernels both cast through it, so their bytes
 * agree with each other and with fp8_format.c's reference. */
__device__ __forceinline__ uint8_t cast_elem(float v, float s, int fmt, unsigned &m) {
    unsigned a = __float_as_uint(v) & 0x7fffffffu;
    m = a > m ? a : m;
    return to_fp8(__fmul_rn(v, s), fmt);
}

/* The block's largest |x| bits m into *amax: one atomic per block at most, and none once the
 * maximum is already there (every block of a large tensor aims at the same word). W: the
 * block's warps; every thread of the block calls it. */
template <int W> __device__ __forceinline__ void block_amax(unsigned m, unsigned *amax) {
    __shared__ unsigned wmax[W];
    m = wfc_warp_reduce(m, wfc_max_f());
    int t = threadIdx.y * blockDim.x + threadIdx.x;
    if ((t & 31) == 0) wmax[t >> 5] = m;
    __syncthreads();
    if (t == 0) {
#pragma unroll
        for (int w = 1; w < W; w++) m = wmax[w] > m ? wmax[w] : m;
        if (m > __ldcg(amax)) atomicMax(amax, m);
    }
}

template <int DT> __global__ void fp8_cast_kernel(const void *x, int64_t rows, int64_t cols, int fmt,
                                                  const float *scale, uint8_t *y, uint8_t *yt, unsigned *amax,
                                                  float *scale_inv_out) {
    __shared__ uint8_t tile[CT][CT + 4];
    const float s = *scale;
    if (scale_inv_out && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        *scale_inv_out = __frcp_rn(s);
    int64_t r0 = (int64_t)blockIdx.y * CT, c0 = (int64_t)blockIdx.x * CT;
    int64_t c = c0 + threadIdx.x;
    unsigned m = 0;
#pragma unroll
    for (int j = 0; j < CT / CR; j++) {
        int tr = threadIdx.y + j * CR;
        int64_t r = r0 + tr;
        if (r < rows && c < cols) {
            uint8_t q = cast_elem(ld_in<DT>(x, r * cols + c), s, fmt, m);
            if (y) y[r * cols + c] = q;
            tile[tr][threadIdx.x] = q;
        }
    }
    if (amax) block_amax<CT * CR / 32>(m, amax);
    if (!yt) return;
    __syncthreads();
    /* yt[c][r] = tile[r - r0][c - c0]: thread x walks the rows so the writes are contiguous */
    int64_t r = r0 + threadIdx.x;
#pragma unroll
    for (int j = 0; j < CT / CR; j++) {
        int tc = threadIdx.y + j * CR;
        int64_t cc = c0 + tc;
        if (r < rows && cc < cols) yt[cc * rows + r] = tile[threadIdx.x][tc];
    }
}

/* The same cast for the shapes the fp8 Linear makes (rows and cols multiples of 4, x aligned
 * to 4 elements, y and yt to 4 bytes): a block of 16 x 16 threads takes a 64 x 64 tile, each
 * thread 4 neighbouring columns of 4 rows, loaded as one vector and stored as one 4-byte word;
 * the transposed copy packs 4 rows of a column into one word. The one-byte loads and stores
 * of fp8_cast_kernel made it the largest kernel of an fp8 GPT-2 step. Same values, bit for bit:
 * the per-element math is the same (tests/cuda/test_cuda_fp8.c checks both paths). */
#define VT 64
#define VL 16
template <int DT> __device__ __forceinline__ void ld4(const void *x, int64_t i, float v[4]) {
    if (DT == WF_F32) {
        float4 f = *reinterpret_cast<const float4 *>((const float *)x + i);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    } else {
        uint2 u = *reinterpret_cast<const uint2 *>((const uint16_t *)x + i);
        uint16_t h[4] = { (uint16_t)(u.x & 0xffff), (uint16_t)(u.x >> 16), (uint16_t)(u.y & 0xffff), (uint16_t)(u.y >> 16) };
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = DT == WF_BF16 ? wfc_bf16_to_f(h[e]) : wfc_h_to_f(h[e]);
    }
}

static_assert(VT == WF__FP8_COLSUM_ROWS && VL == WF__FP8_COLSUM_LANES, "the column sums' order is the vec kernel's tiling");
template <int DT> __global__ void __launch_bounds__(VL * VL) fp8_cast_vec_kernel(const void *x, int64_t rows, int64_t cols, int fmt,
                                                                   const float *scale, uint8_t *y, uint8_t *yt,
                                                                   unsigned *amax, float *scale_inv_out, float *part) {
    __shared__ uint8_t tile[VT][VT + 4];
    __shared__ float lanes[VL][VT];   /* part: each lane's column sums (lane = threadIdx.y) */
    const float s = *scale;
    if (scale_inv_out && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        *scale_inv_out = __frcp_rn(s);
    int64_t r0 = (int64_t)blockIdx.y * VT, c0 = (int64_t)blockIdx.x * VT;
    int64_t c = c0 + 4 * threadIdx.x;
    unsigned m = 0;
    float cs[4] = { 0.f, 0.f, 0.f, 0.f };   /* this lane's sums of its 4 columns (rows y, y + 16, ...) */
#pragma unroll
    for (int j = 0; j < VT / VL; j++) {
        int tr = threadIdx.y + j * VL;
        int64_t r = r0 + tr;
        if (r < rows && c < cols) {
            float v[4];
            ld4<DT>(x, r * cols + c, v);
            uint32_t w = 0;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                uint8_t q = cast_elem(v[e], s, fmt, m);
                w |= (uint32_t)q << (8 * e);
                tile[tr][4 * threadIdx.x + e] = q;
                cs[e] = __fadd_rn(cs[e], v[e]);
            }
            if (y) *reinterpret_cast<uint32_t *>(y + r * cols + c) = w;
        }
    }
    if (part) {
#pragma unroll
        for (int e = 0; e < 4; e++) lanes[threadIdx.y][4 * threadIdx.x + e] = cs[e];
    }
    if (amax) block_amax<VL * VL / 32>(m, amax);   /* its __syncthreads also publishes lanes */
    else if (part) __syncthreads();
    if (part) {
        /* the block's sum of column c0 + t: lane 0, plus lane 1, ... in turn (fp8.h's order) */
        int t = threadIdx.y * VL + threadIdx.x;
        if (t < VT && c0 + t < cols) {
            float p = lanes[0][t];
#pragma unroll
            for (int k = 1; k < VL; k++) p = __fadd_rn(p, lanes[k][t]);
            part[(int64_t)blockIdx.y * cols + c0 + t] = p;
        }
    }
    if (!yt) return;
    __syncthreads();
    /* yt[cc][r..r+3] = tile[r - r0 .. +3][cc - c0]: 4 rows of one column in one word */
    int64_t r = r0 + 4 * threadIdx.x;
#pragma unroll
    for (int j = 0; j < VT / VL; j++) {
        int tc = threadIdx.y + j * VL;
        int64_t cc = c0 + tc;
        if (r < rows && cc < cols) {
            int tr = 4 * threadIdx.x;
            uint32_t w = (uint32_t)tile[tr][tc] | (uint32_t)tile[tr + 1][tc] << 8 | (uint32_t)tile[tr + 2][tc] << 16 |
                         (uint32_t)tile[tr + 3][tc] << 24;
            *reinterpret_cast<uint32_t *>(yt + cc * rows + r) = w;
        }
    }
}

/* The column sums of a cast the vec kernel did not take (the one-byte kernel's shapes):
 * part[b][c] = block b's sum of column c in fp8.h's order, one thread per (block, column). */
template <int DT> __global__ void fp8_colsum_part_kernel(const void *x, int64_t rows, int64_t cols, int64_t nb,
                                                         float *part) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nb * cols; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / cols, c = i % cols, r0 = b * WF__FP8_COLSUM_ROWS;
        float p = 0.f;
        for (int k = 0; k < WF__FP8_COLSUM_LANES; k++) {
            float lane = 0.f;
            for (int64_t r = r0 + k; r < r0 + WF__FP8_COLSUM_ROWS && r < rows; r += WF__FP8_COLSUM_LANES)
                lane = __fadd_rn(lane, ld_in<DT>(x, r * cols + c));
            p = k ? __fadd_rn(p, lane) : lane;
        }
        part[i] = p;
    }
}

/* colsum[c] = 0 + part[0][c] + part[1][c] + ... in turn */
__global__ void fp8_colsum_final_kernel(const float *part, int64_t nb, int64_t cols, float *colsum) {
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols; c += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.f;
        for (int64_t b = 0; b < nb; b++) s = __fadd_rn(s, part[b * cols + c]);
        colsum[c] = s;
    }
}

/* WEFT_FP8_CAST_SCALAR=1 (read once): the one-byte kernel for every shape (A/B, tests) */
WF__ENV_SWITCH(cast_scalar_only, "WEFT_FP8_CAST_SCALAR")

/* the cast's bytes, transposed copy, amax and scale_inv (and part's column sums, where the vec
 * kernel takes the shape) */
static int fp8_cast_launch(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, uint8_t *y8,
                           uint8_t *yt8, unsigned *am, float *scale_inv_out, float *part, bool *part_done,
                           cudaStream_t st, int dev) {
    int es = dtype == WF_F32 ? 4 : 2;
    *part_done = false;
    if (!cast_scalar_only() && rows % 4 == 0 && cols % 4 == 0 && (rows + VT - 1) / VT <= 65535 &&
        (uintptr_t)x % (4 * es) == 0 && (uintptr_t)y8 % 4 == 0 && (uintptr_t)yt8 % 4 == 0) {
        dim3 grid((unsigned)((cols + VT - 1) / VT), (unsigned)((rows + VT - 1) / VT)), block(VL, VL);
        if (dtype == WF_F32) fp8_cast_vec_kernel<WF_F32><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out, part);
        else if (dtype == WF_BF16) fp8_cast_vec_kernel<WF_BF16><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out, part);
        else fp8_cast_vec_kernel<WF_F16><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out, part);
        *part_done = true;
        return wfc_check("fp8 cast kernel", dev);
    }
    int64_t gy = (rows + CT - 1) / CT, gx = (cols + CT - 1) / CT;
    if (gy > 65535 || gx > 2147483647LL)
        return wfc_error(WF_ENOTSUP, "fp8 cast on cuda:%d: %lld x %lld is too large (at most %d rows)", dev,
                         (long long)rows, (long long)cols, 65535 * CT);
    dim3 grid((unsigned)gx, (unsigned)gy), block(CT, CR);
    if (dtype == WF_F32) fp8_cast_kernel<WF_F32><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out);
    else if (dtype == WF_BF16) fp8_cast_kernel<WF_BF16><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out);
    else fp8_cast_kernel<WF_F16><<<grid, block, 0, st>>>(x, rows, cols, fmt, scale, y8, yt8, am, scale_inv_out);
    return wfc_check("fp8 cast kernel", dev);
}

extern "C" int wf__cuda_fp8_cast(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale,
                                 void *y, void *yt, float *amax, float *scale_inv_out, float *colsum, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "fp8 cast", &st);
    if (rc) return rc;
    if (dtype != WF_F32 && dtype != WF_BF16 && dtype != WF_F16)
        return wfc_error(WF_ENOTSUP, "fp8 cast on cuda:%d: input dtype %s is not supported (f32, bf16, f16)", dev,
                         wf_dtype_name((wf_dtype)dtype));
    if (fmt != 0 && fmt != 1) return wfc_error(WF_EINVAL, "fp8 cast on cuda:%d: format %d is neither E4M3 (0) nor E5M2 (1)", dev, fmt);
    if (cols <= 0) return 0;
    if (rows <= 0) {
        cudaError_t e = colsum ? cudaMemsetAsync(colsum, 0, (size_t)cols * sizeof(float), st) : cudaSuccess;
        return e == cudaSuccess ? 0 : wfc_report(e, "fp8 cast (the column sums of no rows)", dev);
    }
    /* the column sums: each 64-row block's into part, then those summed in order */
    const int64_t nb = (rows + WF__FP8_COLSUM_ROWS - 1) / WF__FP8_COLSUM_ROWS;
    const size_t pbytes = colsum ? (size_t)(nb * cols) * sizeof(float) : 0;
    float *part = colsum ? (float *)wf__cuda_alloc(dev, pbytes) : NULL;
    if (colsum && !part) return WF_ENOMEM;
    bool part_done = false;
    rc = fp8_cast_launch(x, dtype, rows, cols, fmt, scale, (uint8_t *)y, (uint8_t *)yt, (unsigned *)amax, scale_inv_out,
                         part, &part_done, st, dev);
    if (!rc && part && !part_done) {
        if (dtype == WF_F32) fp8_colsum_part_kernel<WF_F32><<<wfc_blocks(nb * cols, 256, dev), 256, 0, st>>>(x, rows, cols, nb, part);
        else if (dtype == WF_BF16) fp8_colsum_part_kernel<WF_BF16><<<wfc_blocks(nb * cols, 256, dev), 256, 0, st>>>(x, rows, cols, nb, part);
        else fp8_colsum_part_kernel<WF_F16><<<wfc_blocks(nb * cols, 256, dev), 256, 0, st>>>(x, rows, cols, nb, part);
        rc = wfc_check("fp8 cast (column sums) kernel", dev);
    }
    if (!rc && part) {
        fp8_colsum_final_kernel<<<wfc_blocks(cols, 256, dev), 256, 0, st>>>(part, nb, cols, colsum);
        rc = wfc_check("fp8 cast (column sums) kernel", dev);
    }
    if (part) wf__cuda_free(dev, part, pbytes);
    return rc;
}

/* fp8 bytes -> f32 (for tests and checks; the GEMMs read the bytes themselves) */
__global__ void fp8_decode_kernel(const uint8_t *x, int64_t n, int fmt, float *y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)x[i], fmt ? __NV_E5M2 : __NV_E4M3);
        y[i] = __half2float(__half(h));
    }
}

extern "C" int wf__cuda_fp8_decode(const void *x, int64_t n, int fmt, float *y, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "fp8 decode", &st);
    if (rc || n <= 0) return rc;
    fp8_decode_kernel<<<wfc_blocks(n, 256, dev), 256, 0, st>>>((const uint8_t *)x, n, fmt, y);
    return wfc_check("fp8 decode kernel", dev);
}

/* ---------------------------------------------------------------- delayed scaling
 * One block per slot (cuda_api.h's layout: scale, scale_inv, amax, pos, history[len]). The
 * same float operations as fp8_scaling.c, in IEEE division (the build's --use_fast_math would
 * otherwise approximate it). */
__global__ void fp8_update_kernel(float *slots, int64_t stride, int len, float fp8_max, int margin) {
    float *s = slots + (int64_t)blockIdx.x * stride, *hist = s + 4;
    int pos = __float_as_int(s[3]);
    if (threadIdx.x == 0) hist[pos] = s[2];
    __syncthreads();
    float m = 0.f;
    for (int i = threadIdx.x; i < len; i += blockDim.x) m = wfc_max_f()(m, hist[i]);
    m = wfc_block_reduce(m, wfc_max_f(), 0.f);
    if (threadIdx.x != 0) return;
    s[2] = 0.f;                                     /* the next step's amax starts from 0 */
    s[3] = __int_as_float((pos + 1) % len);
    if (!(m > 0.f) || isinf(m) || m != m) return;
    float sc = ldexpf(__fdiv_rn(fp8_max, m), -margin);
    if (isinf(sc) || !(sc > 0.f)) return;
    s[0] = sc;
    s[1] = __frcp_rn(sc);
}

extern "C" int wf__cuda_fp8_update(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "fp8 scaling update", &st);
    if (rc || nslots <= 0) return rc;
    if (len <= 0 || slot_stride < 4 + len)
        return wfc_error(WF_EINVAL, "fp8 scaling update on cuda:%d: history length %d does not fit a slot of %lld floats",
                         dev, len, (long long)slot_stride);
    fp8_update_kernel<<<nslots, 256, 0, st>>>(slots, slot_stride, len, fmt ? 57344.0f : 448.0f, margin);
    return wfc_check("fp8 scaling update kernel", dev);
}

/* ---------------------------------------------------------------- GEMM
 * D[m, n] = A[m, k] B[n, k]^T, both row-major with k contiguous, is cuBLASLt's column-major
 * D^T = op(B') op(A') with B' = our B read as k x n (transposed: "T") and A' = our A read as
 * k x m ("N"): the "TN" layout its fp8 kernels require, with m, n, k multiples of 16 and
 * 16-byte aligned pointers. Plans (descriptors and the heuristic's first algorithm) are
 * cached per device and shape, like cuda_gemm.cu's; the handle and workspace are its. */
#define F8_PLANS 64
#define F8_CAND 8

struct f8_key {
    int64_t m, n, k;
    int fa, fb, dt, fast, bias, beta1;
    int al_a, al_b, al_d, al_bias;   /* the operands' alignments (wfc_ptr_align), asked of the heuristic */
};
struct f8_plan {
    bool used, ok;
    f8_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo[F8_CAND];   /* the heuristic's choices, the one that last ran first */
    int nalgo;
    cublasStatus_t why;          /* what failed when !ok */
    const char *where;           /* and at which stage: "descriptor", "heuristic", "no algorithm" */
};
static f8_plan *g_plans[MAX_DEVICES];
static int g_next[MAX_DEVICES];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void f8_destroy(f8_plan *p) {
    if (p->desc) wfc_blas.cublasLtMatmulDescDestroy(p->desc);
    if (p->la) wfc_blas.cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) wfc_blas.cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) wfc_blas.cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

static const char *fmt_name(int f) { return f ? "E5M2" : "E4M3"; }

/* The scale pointers (and the bias's) are set before the heuristic is asked, as NVIDIA's fp8
 * sample, Transformer Engine and PyTorch's scaled_mm do: on the H100 with cuBLAS 13 the
 * heuristic found no fp8 algorithm without them (every shape "not supported"). Each call sets
 * its own pointers again on the cached descriptor. */
static void f8_build(f8_plan *p, const f8_key *key, cublasLtHandle_t lt, size_t ws_bytes, const float *lt_a_scale,
                     const float *lt_b_scale, const void *bias) {
    memset(p, 0, sizeof *p);
    p->used = true;
    p->key = *key;
    cudaDataType_t ta = key->fa ? CUDA_R_8F_E5M2 : CUDA_R_8F_E4M3, tb = key->fb ? CUDA_R_8F_E5M2 : CUDA_R_8F_E4M3;
    cudaDataType_t td = key->dt == WF_F32 ? CUDA_R_32F : CUDA_R_16BF;
    p->where = "descriptor";
#define F8_TRY(call) do { p->why = (call); if (p->why != CUBLAS_STATUS_SUCCESS) return; } while (0)
    F8_TRY(wfc_blas.cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
    F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    int8_t fast = (int8_t)key->fast;
    F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast));
    F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &lt_a_scale, sizeof lt_a_scale));
    F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &lt_b_scale, sizeof lt_b_scale));
    if (key->bias) {
        cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = td;
        F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
        F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        F8_TRY(wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    /* Lt's A is our B (k x n, "T"), Lt's B our A (k x m), D is n x m */
    F8_TRY(wfc_blas.cublasLtMatrixLayoutCreate(&p->la, tb, (uint64_t)key->k, (uint64_t)key->n, key->k));
    F8_TRY(wfc_blas.cublasLtMatrixLayoutCreate(&p->lb, ta, (uint64_t)key->k, (uint64_t)key->m, key->k));
    F8_TRY(wfc_blas.cublasLtMatrixLayoutCreate(&p->ld, td, (uint64_t)key->n, (uint64_t)key->m, key->n));
    cublasLtMatmulPreference_t pref = NULL;
    F8_TRY(wfc_blas.cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = ws_bytes;
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    /* Lt's A is our B; without these the heuristic assumes 256-byte operands and the matmul
     * refuses ours (the caching allocator's blocks and views may be only 16-byte aligned) */
    uint32_t aa = (uint32_t)key->al_b, ab = (uint32_t)key->al_a, ad = (uint32_t)key->al_d;
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad);
    wfc_blas.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad);
    cublasLtMatmulHeuristicResult_t res[F8_CAND];
    int nres = 0;
    p->where = "heuristic";
    p->why = wfc_blas.cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, F8_CAND, res, &nres);
    wfc_blas.cublasLtMatmulPreferenceDestroy(pref);
    if (p->why != CUBLAS_STATUS_SUCCESS) return;
    for (int i = 0; i < nres; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) p->algo[p->nalgo++] = res[i].algo;
    if (p->nalgo < 1) {
        p->where = "no algorithm from the heuristic";
        p->why = CUBLAS_STATUS_NOT_SUPPORTED;
        return;
    }
    p->ok = true;
#undef F8_TRY
}

extern "C" int wf__cuda_fp8_gemm(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv,
                                 const void *B, int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta,
                                 const void *bias, int fast_accum, int dev) {
    const char *what = "fp8 gemm";
    cudaStream_t st;
    int rc = wfc_begin(dev, what, &st);
    if (rc) return rc;
    if (d_dtype != WF_BF16 && d_dtype != WF_F32)
        return wfc_error(WF_ENOTSUP, "%s on cuda:%d: output dtype %s (bf16 or f32)", what, dev, wf_dtype_name((wf_dtype)d_dtype));
    if (a_fmt == 1 && b_fmt == 1)
        return wfc_error(WF_ENOTSUP, "%s on cuda:%d: cuBLASLt has no E5M2 x E5M2 product", what, dev);
    if (m <= 0 || n <= 0 || k <= 0 || m % 16 || n % 16 || k % 16 || m > 2147483647LL || n > 2147483647LL ||
        k > 2147483647LL)
        return wfc_error(WF_ENOTSUP, "%s on cuda:%d: m=%lld n=%lld k=%lld must be positive multiples of 16 (cuBLASLt's fp8 kernels)",
                         what, dev, (long long)m, (long long)n, (long long)k);
    if (((uintptr_t)A | (uintptr_t)B | (uintptr_t)D | (uintptr_t)bias) & 15)
        return wfc_error(WF_ENOTSUP, "%s on cuda:%d: the operands must be 16-byte aligned (A %p, B %p, D %p, bias %p)", what,
                         dev, A, B, D, bias);
    if (bias && d_dtype != WF_BF16)
        return wfc_error(WF_ENOTSUP, "%s on cuda:%d: the bias epilogue is for a bf16 output", what, dev);
    void *lt = NULL, *ws = NULL;
    size_t ws_bytes = 0;
    if ((rc = wf__cuda_lt(dev, &lt, &ws, &ws_bytes))) return rc;
    f8_key key;
    memset(&key, 0, sizeof key);
    key.m = m; key.n = n; key.k = k; key.fa = a_fmt; key.fb = b_fmt; key.dt = d_dtype; key.fast = fast_accum != 0;
    key.bias = bias != NULL; key.beta1 = beta != 0;
    key.al_a = wfc_ptr_align(A); key.al_b = wfc_ptr_align(B); key.al_d = wfc_ptr_align(D);
    key.al_bias = bias ? wfc_ptr_align(bias) : 0;
    pthread_mutex_lock(&g_lock);
    if (!g_plans[dev] && !(g_plans[dev] = (f8_plan *)calloc(F8_PLANS, sizeof(f8_plan)))) {
        pthread_mutex_unlock(&g_lock);
        return wfc_error(WF_ENOMEM, "%s on cuda:%d: out of host memory for the plan cache", what, dev);
    }
    f8_plan *p = NULL;
    for (int i = 0; i < F8_PLANS; i++)
        if (g_plans[dev][i].used && !memcmp(&g_plans[dev][i].key, &key, sizeof key)) { p = &g_plans[dev][i]; break; }
    if (!p) {
        p = &g_plans[dev][g_next[dev]];
        g_next[dev] = (g_next[dev] + 1) % F8_PLANS;
        f8_destroy(p);
        f8_build(p, &key, (cublasLtHandle_t)lt, ws_bytes, b_scale_inv, a_scale_inv, bias);
    }
    cublasStatus_t bs = p->why;
    const char *where = p->where;
    int tried = p->ok ? p->nalgo : 0;
    if (p->ok) {
        where = "matmul";
        bs = wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &b_scale_inv, sizeof b_scale_inv);
        if (bs == CUBLAS_STATUS_SUCCESS)
            bs = wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a_scale_inv, sizeof a_scale_inv);
        if (bs == CUBLAS_STATUS_SUCCESS && bias)
            bs = wfc_blas.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        const float one = 1.0f;
        /* a candidate the matmul refuses ("not supported") gives way to the next; the one that
         * runs moves to the front, so later calls try it first */
        for (int i = 0; bs == CUBLAS_STATUS_SUCCESS && i < p->nalgo; i++) {
            bs = wfc_blas.cublasLtMatmul((cublasLtHandle_t)lt, p->desc, &one, B, p->la, A, p->lb, &beta, D, p->ld, D, p->ld,
                                &p->algo[i], ws, ws_bytes, st);
            if (bs == CUBLAS_STATUS_SUCCESS) {
                if (i) { cublasLtMatmulAlgo_t a = p->algo[i]; p->algo[i] = p->algo[0]; p->algo[0] = a; }
                break;
            }
            if (bs != CUBLAS_STATUS_NOT_SUPPORTED || i + 1 == p->nalgo) break;
            bs = CUBLAS_STATUS_SUCCESS;
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return wfc_report(e, "fp8 gemm (cuBLASLt)", dev);
        return wfc_error(WF_EDEVICEFAIL, "cuda:%d: fp8 gemm failed in cuBLASLt (%s): %s (A %s [%lld, %lld], B %s [%lld, %lld], D %s, "
                         "beta %g, bias %s, fast accumulation %d, alignments A %d B %d D %d bytes, %d algorithms tried)", dev, where,
                         wfc_blas.cublasGetStatusString(bs), fmt_name(a_fmt), (long long)m, (long long)k, fmt_name(b_fmt), (long long)n,
                         (long long)k, wf_dtype_name((wf_dtype)d_dtype), (double)beta, bias ? "yes" : "no", fast_accum,
                         key.al_a, key.al_b, key.al_d, tried);
    }
    return wfc_check("fp8 gemm (cuBLASLt)", dev);
}
