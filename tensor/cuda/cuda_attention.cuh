/* tensor/cuda/cuda_attention.cuh: what the fused-attention files share (CUDA C++ only): the
 * kernel arguments (sdpa_args), the tile sizes, the mma.sync / ldmatrix / cp.async wrappers,
 * the tile loaders and the online-softmax steps, and the launch functions of the two
 * architecture files, which the launchers in cuda_attention.cu call. See cuda_attention.cu
 * for the algorithm. */
#ifndef WEFT_CUDA_ATTENTION_CUH
#define WEFT_CUDA_ATTENTION_CUH

#include "cuda_common.cuh"

#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#define SD_BR 64
#define SD_BC 64
#define SD_THREADS 128
#define SD_LOG2E 1.4426950408889634f

struct sdpa_args {
    const uint16_t *q, *k, *v, *o, *dout;
    int64_t qs[3], ks[3], vs[3], os[3], dos[3];  /* element strides of b, h, t (d stride is 1) */
    uint16_t *out;   /* forward output (strides os) */
    float *lse;      /* [B*H*L] */
    float *delta;    /* [B*H*L] (backward) */
    float *dqacc;    /* [B*H*L*D] f32 (backward) */
    uint16_t *dk, *dv;
    int64_t dks[3], dvs[3];
    int H, L, S, D;
    float scale, scale_log2;
    int causal;
    int vec_q, vec_k, vec_v, vec_do; /* 16-byte loads allowed */
    int vec_o;       /* forward: output pairs stored as one 32-bit word */
    int vec_oin;     /* backward: delta kernel with 16-byte loads of dO and O (D a power of 2 >= 8) */
    int tile_x;      /* grid: tiles along x and batch*head along y (keeps each head's working set in L2) */
    int dq_v4;       /* Hopper backward: dQ added with 16-byte atomics (off: WEFT_SDPA_DQ_V2=1, A/B timing) */
    int pair;        /* backward, causal and square: a block per pair of key tiles (sd_bwd_tiles) */
    int dq_bulk;     /* Hopper backward, two warpgroups: dQ rows added by bulk reductions (WEFT_SDPA_DQ_BULK=1) */
};

template <bool BF> __device__ __forceinline__ uint32_t sd_pack(float lo, float hi) {
    if (BF) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    } else {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
}
template <bool BF> __device__ __forceinline__ float sd_tof(uint16_t h) {
    return BF ? __uint_as_float((uint32_t)h << 16) : __half2float(__ushort_as_half(h));
}
template <bool BF> __device__ __forceinline__ uint16_t sd_fromf(float f) {
    return BF ? __bfloat16_as_ushort(__float2bfloat16_rn(f)) : __half_as_ushort(__float2half_rn(f));
}

template <bool BF> __device__ __forceinline__ void sd_mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (BF)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)c; (void)a; (void)b;
    __trap();
#endif
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define SD_SM80 1
#else
#define SD_SM80 0
#endif

/* ldmatrix: four 8x8 b16 tiles; lane l gives the row address of tile l/8, row l%8 (16-byte
 * aligned: leading dimensions and column offsets are multiples of 8 elements) */
__device__ __forceinline__ void sd_ldsm_x4(uint32_t r[4], const uint16_t *p) {
#if SD_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
#else
    (void)r; (void)p;
    __trap();
#endif
}
__device__ __forceinline__ void sd_ldsm_x4_t(uint32_t r[4], const uint16_t *p) {
#if SD_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
#else
    (void)r; (void)p;
    __trap();
#endif
}

/* A fragment (16x16: rows r0.., k0..) of A[r][k] = s[r*ld + k] (rows in memory) */
__device__ __forceinline__ void sd_ldA_rows(uint32_t a[4], const uint16_t *s, int ld, int r0, int k0, int lane) {
    sd_ldsm_x4(a, s + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + k0 + (lane >> 4) * 8);
}
/* A fragment of A[r][k] = s[k*ld + r] (columns in memory: a transposed operand) */
__device__ __forceinline__ void sd_ldA_cols(uint32_t a[4], const uint16_t *s, int ld, int r0, int k0, int lane) {
    int mi = lane >> 3, i = lane & 7;
    sd_ldsm_x4_t(a, s + (k0 + i + (mi >> 1) * 8) * ld + r0 + (mi & 1) * 8);
}
/* B fragments (16x8) of the n-tiles n0 and n0+8 of B[k][n] = s[n*ld + k] (memory rows along k,
 * e.g. K for S = Q K^T): b0 for n0, b1 for n0 + 8 */
__device__ __forceinline__ void sd_ldB_nk(uint32_t b0[2], uint32_t b1[2], const uint16_t *s, int ld, int k0, int n0,
                                          int lane) {
    uint32_t r[4];
    sd_ldsm_x4(r, s + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8);
    b0[0] = r[0]; b0[1] = r[1]; b1[0] = r[2]; b1[1] = r[3];
}
/* the same for B[k][n] = s[k*ld + n] (memory rows along n, e.g. V for O = P V) */
__device__ __forceinline__ void sd_ldB_kn(uint32_t b0[2], uint32_t b1[2], const uint16_t *s, int ld, int k0, int n0,
                                          int lane) {
    uint32_t r[4];
    sd_ldsm_x4_t(r, s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8);
    b0[0] = r[0]; b0[1] = r[1]; b1[0] = r[2]; b1[1] = r[3];
}

/* cp.async of 16 bytes (zero-filled when !in); then commit / wait for all */
__device__ __forceinline__ void sd_cp16(uint16_t *dst, const uint16_t *src, bool in) {
#if SD_SM80
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(in ? 16 : 0));
#else
    (void)dst; (void)src; (void)in;
    __trap();
#endif
}
__device__ __forceinline__ void sd_cp4(float *dst, const float *src, bool in) {
#if SD_SM80
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(in ? 4 : 0));
#else
    (void)dst; (void)src; (void)in;
    __trap();
#endif
}
__device__ __forceinline__ void sd_cp_commit() {
#if SD_SM80
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
__device__ __forceinline__ void sd_cp_wait_all() {
#if SD_SM80
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

/* rows r0..r0+ROWS-1 of a [rows, D] matrix (row stride rs elements, d stride 1) into dst
 * [ROWS][DP+8], zero-padded beyond nrows / D; with vec (16-byte aligned rows, D % 8 == 0)
 * through cp.async (complete after sd_cp_wait_all), else with plain loads */
template <int DP, int ROWS, int NT>
__device__ __forceinline__ void sd_load_tile(uint16_t *dst, const uint16_t *src, int64_t rs, int r0, int nrows, int D,
                                             int vec) {
    constexpr int LD = DP + 8;
    if (vec) {
        constexpr int CPR = DP / 8;
        for (int i = threadIdx.x; i < ROWS * CPR; i += NT) {
            int r = i / CPR, c = (i % CPR) * 8;
            bool in = r0 + r < nrows && c < D;
            sd_cp16(dst + r * LD + c, in ? src + (int64_t)(r0 + r) * rs + c : src, in);
        }
    } else {
        for (int i = threadIdx.x; i < ROWS * DP; i += NT) {
            int r = i / DP, c = i % DP;
            dst[r * LD + c] = (r0 + r < nrows && c < D) ? src[(int64_t)(r0 + r) * rs + c] : (uint16_t)0;
        }
    }
}

#define SDF_BR 128
/* forward warps: D <= 64 gives each of 4 warps two 16-row m-tiles (every K/V fragment read from
 * shared memory feeds two mma), D <= 128 gives each of 8 warps one (registers) */
/* m-tiles of 16 query rows per warp: the code takes any MT; two per warp (4 warps) halve the
 * shared-memory reads per mma but measured 0.232 vs 0.209 ms for 8 warps of one at
 * [16,12,1024,64] causal (fewer warps hide less latency), so one it is */
#define SDF_MT 1
#define SDF_THREADS(MT) (32 * 8 / (MT))

/* The backward's P = exp(S * scale - lse), recomputed in place over s[NT][4] (this thread's
 * rows rl0/rl1 of the query tile at q0, columns 8j + 2t (+1) of the key tile at k0; l0/l1
 * the rows' log-sum-exp in log2 units); on an edge tile, entries past L or S or above the
 * causal diagonal become 0. Shared by the mma.sync and the wgmma backward. */
template <int NT>
__device__ __forceinline__ void sd_recompute_p(float (&s)[NT][4], const sdpa_args &a, float l0, float l1, bool edge,
                                               int k0, int q0, int rl0, int rl1, int t) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int rl = e < 2 ? rl0 : rl1;
            float p = exp2f(s[j][e] * a.scale_log2 - (e < 2 ? l0 : l1));
            if (edge) {
                int col = k0 + j * 8 + 2 * t + (e & 1), row = q0 + rl;
                if (col >= a.S || row >= a.L || (a.causal && col > row)) p = 0.f;
            }
            s[j][e] = p;
        }
    }
}

/* One key tile of the online softmax, for this thread's two rows (a quad of lanes holds a
 * row): s[NT][4] raw scores in, exp2 probabilities out; m[2] the running max (log2 domain,
 * scaled) and l[2] the running sum updated; o[NO][4] the output accumulator rescaled to the
 * new max. Row max and sum are trees over the NT n-tiles (short dependency chains); once the
 * max settles (most tiles past the first few) there is nothing to rescale. Shared by the
 * mma.sync and the wgmma forward. */
template <int NT, int NO>
__device__ __forceinline__ void sd_softmax_tile(float (&s)[NT][4], float (&m)[2], float (&l)[2], float (&o)[NO][4],
                                                float scale_log2) {
    float mx[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        float q[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) q[j] = fmaxf(s[j][2 * hf], s[j][2 * hf + 1]);
#pragma unroll
        for (int w = NT / 2; w >= 1; w >>= 1)
#pragma unroll
            for (int j = 0; j < w; j++) q[j] = fmaxf(q[j], q[j + w]);
        mx[hf] = q[0];
    }
    float mb[2], alpha[2], rs[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        float mn = fmaxf(m[i], mx[i] * scale_log2);
        mb[i] = mn == -INFINITY ? 0.f : mn;
        alpha[i] = exp2f(m[i] - mb[i]);
        m[i] = mn;
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[j][e] = exp2f(fmaf(s[j][e], scale_log2, -mb[e >> 1]));
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        float q[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) q[j] = s[j][2 * hf] + s[j][2 * hf + 1];
#pragma unroll
        for (int w = NT / 2; w >= 1; w >>= 1)
#pragma unroll
            for (int j = 0; j < w; j++) q[j] += q[j + w];
        rs[hf] = q[0];
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
        for (int i = 0; i < NO; i++) {
            o[i][0] *= alpha[0]; o[i][1] *= alpha[0];
            o[i][2] *= alpha[1]; o[i][3] *= alpha[1];
        }
    }
}

/* dqacc[p], dqacc[p+1] += x, y (one 8-byte atomic on sm_90) */
__device__ __forceinline__ void sd_atomic2(float *p, float x, float y, bool pair) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (pair) { atomicAdd(reinterpret_cast<float2 *>(p), make_float2(x, y)); return; }
#endif
    atomicAdd(p, x);
    if (pair) atomicAdd(p + 1, y);
}

/* The backward's blocks: each runs tile(bh, kt) for one key tile kt (BK keys) of head bh, or (a.pair,
 * causal attention with L == S) for the pair of key tiles i and ntile - 1 - i. Under the causal
 * mask key tile kt meets ntile - kt query tiles, so a pair always meets ntile + 1 and every
 * block does the same work; one tile a block, the blocks ran 1 to ntile query tiles each and
 * the grid ended on its longest ones, most of the GPU idle while they finished. Blocks are
 * numbered from the grid's end (the key-tile index counts down), as before the pairs. */
template <int BK = SD_BC, class TILE> __device__ __forceinline__ void sd_bwd_tiles(const sdpa_args &a, TILE tile) {
    const int bh = a.tile_x ? blockIdx.y : blockIdx.x;
    const int i = a.tile_x ? gridDim.x - 1 - blockIdx.x : gridDim.y - 1 - blockIdx.y;
    const int other = a.pair ? (a.S + BK - 1) / BK - 1 - i : i;
    /* a loop, not two calls: one inlined copy of the tile's code (two copies spilled 16 bytes) */
    for (int n = 0; n < (other != i ? 2 : 1); n++) {
        if (n) __syncthreads();   /* the first tile's shared memory is free again */
        tile(bh, n ? other : i);
    }
}

template <class K> static int sd_smem_attr(K kern, size_t bytes, int dev) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e == cudaSuccess ? 0 : wfc_report(e, "sdpa (shared memory attribute)", dev);
}

/* ---------------------------------------------------------------- the architecture files
 * Each starts its kernels for the launchers in cuda_attention.cu, which pick the file: 0 or a
 * recorded error (a failed launch itself is left to the caller's wfc_check). */
/* cuda_attention_sm80.cu: mma.sync, compute capability 8.0 or later; DP 64 when small, else 128 */
int wfc_sdpa_fwd_sm80(const sdpa_args &a, bool bf, bool small, bool full, dim3 grid, size_t smem, cudaStream_t st,
                      int dev);
int wfc_sdpa_bwd_sm80(const sdpa_args &a, bool bf, bool small, bool full, dim3 grid, size_t smem, cudaStream_t st,
                      int dev);
/* cuda_attention_sm90.cu: wgmma, head dim 64, only in the sm_90a image. wfc_sdpa_wgmma_ok: on
 * unless WEFT_SDPA_NOWGMMA=1, and only where the loaded image has the wgmma kernels. */
bool wfc_sdpa_wgmma_ok(cudaStream_t st);
int wfc_sdpa_fwd_sm90(const sdpa_args &a, bool bf, dim3 grid, size_t wsmem, cudaStream_t st, int dev);
/* two: two warpgroups a block, 128 keys (WEFT_SDPA_BWD128=1), else one, 64 keys */
int wfc_sdpa_bwd_sm90(const sdpa_args &a, bool bf, bool two, dim3 grid, cudaStream_t st, int dev);

#endif
