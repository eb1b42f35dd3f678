/* tensor/cuda/cuda_attention_sm90.cu: the fused-attention kernels for Hopper (the sm_90a
 * image, built when gpu_arch is 90): forward and backward at head dim 64 with every product on
 * wgmma from 128-byte swizzled shared-memory tiles, and the probe that tells the host whether
 * the loaded image has them. In any other image they trap and are never started. The launchers
 * are in cuda_attention.cu; the shared helpers in cuda_attention.cuh. */
#include "cuda_attention.cuh"

/* ---------------------------------------------------------------- Hopper forward (wgmma)
 * D == 64, 16-byte aligned rows: the same tiling as sdpa_fwd_kernel (128 query rows, 64-key
 * tiles double-buffered with cp.async), but each of the two warpgroups computes its 64 x 64
 * S = Q K^T with wgmma straight from shared memory (Q and K in the 128-byte swizzled K-major
 * layout) and O += P V with P from registers and V from shared memory (MN-major, the
 * descriptor's transpose bit). The accumulators have the mma.sync C layout per warp (16 rows
 * each), so the online softmax is the one of sdpa_fwd_kernel. Needs sm_90a (built only when
 * the library is built for compute capability 9.0; sd_wg_probe tells the host whether the
 * loaded image has it). */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SD_WG 1
#else
#define SD_WG 0
#endif

__global__ void sd_wg_probe(int *ok) { *ok = SD_WG; }

/* shared-memory matrix descriptor: 128-byte swizzle, 8-row groups 1024 bytes apart (SBO);
 * the leading-byte offset is unused by the swizzled layouts used here */
__device__ __forceinline__ uint64_t sd_wg_desc(const void *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
/* one instruction without operands, only in the sm_90a image (elsewhere nothing: the kernels
 * that use it are never started there) */
#if SD_WG
#define SD_WG_ASM(text) asm volatile(text "\n" ::: "memory")
#else
#define SD_WG_ASM(text) ((void)0)
#endif
__device__ __forceinline__ void sd_wg_fence() { SD_WG_ASM("wgmma.fence.sync.aligned;"); }
/* the issued wgmma as one group; then wait for every group (work between the two overlaps the
 * wgmma, and must not touch their accumulators) */
__device__ __forceinline__ void sd_wg_commit() { SD_WG_ASM("wgmma.commit_group.sync.aligned;"); }
__device__ __forceinline__ void sd_wg_wait() { SD_WG_ASM("wgmma.wait_group.sync.aligned 0;"); }
__device__ __forceinline__ void sd_wg_commit_wait() {
    sd_wg_commit();
    sd_wg_wait();
}
__device__ __forceinline__ void sd_fence_async_smem() { SD_WG_ASM("fence.proxy.async.shared::cta;"); }
/* dst[0 .. bytes) += src[0 .. bytes) in f32, one bulk reduction by the L2 (TMA's
 * cp.reduce.async.bulk; 16-byte aligned, bytes a multiple of 16), then its group committed; the
 * generic writes of src must be fenced to the async proxy first. sd_bulk_wait_read: src may be
 * written again; sd_bulk_wait: the additions are done. */
__device__ __forceinline__ void sd_bulk_add_f32(float *dst, const float *src, unsigned bytes) {
#if SD_WG
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst),
                 "r"((uint32_t)__cvta_generic_to_shared(src)), "r"(bytes) : "memory");
#else
    (void)dst; (void)src; (void)bytes;
#endif
    SD_WG_ASM("cp.async.bulk.commit_group;");
}
__device__ __forceinline__ void sd_bulk_wait_read() { SD_WG_ASM("cp.async.bulk.wait_group.read 0;"); }
__device__ __forceinline__ void sd_bulk_wait() { SD_WG_ASM("cp.async.bulk.wait_group 0;"); }
/* One m64n64k16 wgmma with f32 accumulators d[8][4] (this thread's 32 of the 64 x 64 tile).
 * TY: "bf16" or "f16"; the A operand is a shared-memory descriptor (SS) or four registers in
 * the mma.sync A layout (RS); TRANS: the transpose flags of A and B ("0, 0" = both K-major). */
#define SD_WG_DREGS "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define SD_WG_DOUT(d)                                                                                            \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),     \
        "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
        "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
        "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
#define SD_WG_SS(TY, TRANS)                                                                                       \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY \
                 " " SD_WG_DREGS ", %32, %33, p, 1, 1, " TRANS ";\n}\n"                                           \
                 : SD_WG_DOUT(d) : "l"(da), "l"(db), "r"(1))
#define SD_WG_RS(TY)                                                                                              \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY \
                 " " SD_WG_DREGS ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"                                     \
                 : SD_WG_DOUT(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))

/* d (64 x 64 f32, this thread's 32) += A (smem desc, K-major) * B (smem desc, K-major) */
template <bool BF> __device__ __forceinline__ void sd_wg_ss(float d[8][4], uint64_t da, uint64_t db) {
#if SD_WG
    if (BF) SD_WG_SS("bf16", "0, 0");
    else SD_WG_SS("f16", "0, 0");
#else
    (void)d; (void)da; (void)db;
    __trap();
#endif
}
/* d += A (smem desc, MN-major) * B (smem desc, MN-major): both transposed */
template <bool BF> __device__ __forceinline__ void sd_wg_ss_tt(float d[8][4], uint64_t da, uint64_t db) {
#if SD_WG
    if (BF) SD_WG_SS("bf16", "1, 1");
    else SD_WG_SS("f16", "1, 1");
#else
    (void)d; (void)da; (void)db;
    __trap();
#endif
}
/* d += A (registers, the mma.sync A layout per warp) * B (smem desc, MN-major: transposed) */
template <bool BF> __device__ __forceinline__ void sd_wg_rs(float d[8][4], const uint32_t a[4], uint64_t db) {
#if SD_WG
    if (BF) SD_WG_RS("bf16");
    else SD_WG_RS("f16");
#else
    (void)d; (void)a; (void)db;
    __trap();
#endif
}

/* ROWS x 64 (16-byte chunks) into the 128-byte swizzled layout: chunk c of row r at
 * r * 128 + ((c ^ (r & 7)) * 16) bytes; rows past nrows zero-filled */
template <int ROWS, int NT = 256>
__device__ __forceinline__ void sd_wg_load(unsigned char *dst, const uint16_t *src, int64_t rs, int r0, int nrows) {
    for (int i = threadIdx.x; i < ROWS * 8; i += NT) {
        int r = i >> 3, c = i & 7;
        bool in = r0 + r < nrows;
        sd_cp16(reinterpret_cast<uint16_t *>(dst + r * 128 + ((c ^ (r & 7)) << 4)),
                in ? src + (int64_t)(r0 + r) * rs + c * 8 : src, in);
    }
}

template <bool BF>
__global__ void __launch_bounds__(256, 2) sdpa_fwd_wg_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    /* the swizzle pattern repeats every 1024 bytes: tiles start on such a boundary */
    unsigned char *base = sd_smem + ((1024 - ((uint32_t)__cvta_generic_to_shared(sd_smem) & 1023)) & 1023);
    unsigned char *Qs = base, *KV = base + SDF_BR * 128;   /* KV: [2][K, V][64 rows x 128 bytes] */
    const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H;
    const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * SDF_BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int wg = warp >> 2, wl = warp & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    int kend = a.S;
    if (a.causal && q0 + SDF_BR < kend) kend = q0 + SDF_BR;
    const int nkt = (kend + SD_BC - 1) / SD_BC;
    sd_wg_load<SDF_BR>(Qs, qg, a.qs[2], q0, a.L);
    if (nkt > 0) {
        sd_wg_load<SD_BC>(KV, kg, a.ks[2], 0, a.S);
        sd_wg_load<SD_BC>(KV + SD_BC * 128, vg, a.vs[2], 0, a.S);
    }
    sd_cp_commit();
    sd_cp_wait_all();
    sd_fence_async_smem();
    __syncthreads();
    const int g0 = q0 + wg * 64, w0 = g0 + wl * 16;   /* the warpgroup's and this warp's first row */
    const uint64_t dq = sd_wg_desc(Qs + wg * 64 * 128);
    float o[8][4], m[2], l[2];
#pragma unroll
    for (int i = 0; i < 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * SD_BC;
        unsigned char *Ks = KV + (kt & 1) * 2 * SD_BC * 128, *Vs = Ks + SD_BC * 128;
        if (kt + 1 < nkt) {
            unsigned char *nk = KV + ((kt + 1) & 1) * 2 * SD_BC * 128;
            sd_wg_load<SD_BC>(nk, kg, a.ks[2], k0 + SD_BC, a.S);
            sd_wg_load<SD_BC>(nk + SD_BC * 128, vg, a.vs[2], k0 + SD_BC, a.S);
            sd_cp_commit();
        }
        /* warpgroup-uniform: nothing to do when all its rows are past L or before this tile */
        if (g0 < a.L && !(a.causal && k0 > g0 + 63)) {
            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
            const uint64_t dk = sd_wg_desc(Ks);
            sd_wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) sd_wg_ss<BF>(s, dq + kk * 2, dk + kk * 2);   /* +32 bytes per k16 */
            sd_wg_commit_wait();
            const int r0 = w0 + g, r1 = r0 + 8;
            const bool edge = k0 + SD_BC > a.S || (a.causal && k0 + SD_BC - 1 > w0);
            if (edge) {
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int col = k0 + j * 8 + 2 * t + (e & 1), row = e < 2 ? r0 : r1;
                        if (col >= a.S || (a.causal && col > row)) s[j][e] = -INFINITY;
                    }
            }
            sd_softmax_tile(s, m, l, o, a.scale_log2);
            uint32_t pa[4][4];
#pragma unroll
            for (int kc = 0; kc < 4; kc++) {
                pa[kc][0] = sd_pack<BF>(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = sd_pack<BF>(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = sd_pack<BF>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = sd_pack<BF>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            }
            const uint64_t dv = sd_wg_desc(Vs);
            sd_wg_fence();
#pragma unroll
            for (int kc = 0; kc < 4; kc++) sd_wg_rs<BF>(o, pa[kc], dv + kc * (16 * 128 >> 4));   /* 16 keys per k16 */
            sd_wg_commit_wait();
        }
        sd_cp_wait_all();
        sd_fence_async_smem();
        __syncthreads();
    }
    uint16_t *og = a.out + b * a.os[0] + h * a.os[1];
    const int r0 = w0 + g, r1 = r0 + 8;
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        inv[i] = l[i] > 0.f ? 1.f / l[i] : 0.f;
    }
#pragma unroll
    for (int dt = 0; dt < 8; dt++) {
        int c = dt * 8 + 2 * t;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            int r = hh ? r1 : r0;
            if (r >= a.L) continue;
            uint16_t *p = og + (int64_t)r * a.os[2] + c;
            float v0 = o[dt][2 * hh] * inv[hh], v1 = o[dt][2 * hh + 1] * inv[hh];
            if (a.vec_o) *reinterpret_cast<uint32_t *>(p) = sd_pack<BF>(v0, v1);
            else { p[0] = sd_fromf<BF>(v0); p[1] = sd_fromf<BF>(v1); }
        }
    }
    if (t == 0) {
        float *lse = a.lse + (int64_t)bh * a.L;
        if (r0 < a.L) lse[r0] = l[0] > 0.f ? (m[0] + log2f(l[0])) / SD_LOG2E : -INFINITY;
        if (r1 < a.L) lse[r1] = l[1] > 0.f ? (m[1] + log2f(l[1])) / SD_LOG2E : -INFINITY;
    }
}

/* dqacc rows r0 and r1 (this thread's two rows of the mma layout; a row past L is skipped) +=
 * c[j], the 8-column d-tiles dt0 + j. With a.dq_v4, 16-byte atomics: the lanes t and t^1 trade
 * halves, so the even one holds four consecutive floats of row r0 and the odd one four of row
 * r1 (half the atomics of the 8-byte pairs, WEFT_SDPA_DQ_V2=1). */
template <int NDT>
__device__ __forceinline__ void sd_wg_dq_add(const sdpa_args &a, float *dqg, const float (&c)[NDT][4], int dt0, int r0,
                                             int r1, int t) {
#if SD_WG
    if (a.dq_v4) {
        const bool odd = t & 1;
        const int row = odd ? r1 : r0;
#pragma unroll
        for (int j = 0; j < NDT; j++) {
            float x0 = __shfl_xor_sync(0xffffffffu, odd ? c[j][0] : c[j][2], 1);
            float x1 = __shfl_xor_sync(0xffffffffu, odd ? c[j][1] : c[j][3], 1);
            float4 v = odd ? make_float4(x0, x1, c[j][2], c[j][3]) : make_float4(c[j][0], c[j][1], x0, x1);
            if (row < a.L) atomicAdd(reinterpret_cast<float4 *>(dqg + (int64_t)row * 64 + (dt0 + j) * 8 + 2 * (t & 2)), v);
        }
        return;
    }
#endif
#pragma unroll
    for (int j = 0; j < NDT; j++) {
        int col = (dt0 + j) * 8 + 2 * t;
        if (r0 < a.L) sd_atomic2(dqg + (int64_t)r0 * 64 + col, c[j][0], c[j][1], true);
        if (r1 < a.L) sd_atomic2(dqg + (int64_t)r1 * 64 + col, c[j][2], c[j][3], true);
    }
}

/* ---------------------------------------------------------------- Hopper backward (wgmma)
 * D == 64 with 16-byte rows: sdpa_bwd_kernel's tiling (64-key tiles, one warpgroup each,
 * iterating over 64-query tiles double-buffered with cp.async) with every product on wgmma:
 * S = Q K^T and dP = dO V^T from shared memory (K-major), dV += P^T dO and dK += dS^T Q with
 * both operands MN-major (P and dS are stored [query][key], Q and dO [query][d]), dQ = dS K with
 * dS from registers (this warp's rows) and K MN-major. All tiles are 64 x 128 bytes in the
 * 128-byte swizzled layout. The accumulators have the per-warp mma.sync layout, so the
 * softmax-gradient code and the stores are sdpa_bwd_kernel's. The pieces below serve one
 * tile function, sdpa_bwd_wg_tile, with one or two warpgroups a block. */
#define SD_TILE_BYTES (SD_BC * 128)   /* one 64-row swizzled tile */

/* head bh's operands */
struct sd_bwd_head {
    const uint16_t *q, *k, *v, *dout;
    const float *lse, *delta;
    float *dq;
    __device__ __forceinline__ sd_bwd_head(const sdpa_args &a, int bh) {
        const int b = bh / a.H, h = bh % a.H;
        q = a.q + b * a.qs[0] + h * a.qs[1];
        k = a.k + b * a.ks[0] + h * a.ks[1];
        v = a.v + b * a.vs[0] + h * a.vs[1];
        dout = a.dout + b * a.dos[0] + h * a.dos[1];
        lse = a.lse + (int64_t)bh * a.L;
        delta = a.delta + (int64_t)bh * a.L;
        dq = a.dqacc + (int64_t)bh * a.L * 64;
    }
};

/* query tile q0's Q and dO into qs (two tiles) and its lse and delta into ls[2][64], by NT
 * threads with cp.async (the caller commits) */
template <int NT>
__device__ __forceinline__ void sd_wg_load_qdo(const sdpa_args &a, const sd_bwd_head &hd, unsigned char *qs, float *ls,
                                               int q0) {
    sd_wg_load<SD_BR, NT>(qs, hd.q, a.qs[2], q0, a.L);
    sd_wg_load<SD_BR, NT>(qs + SD_TILE_BYTES, hd.dout, a.dos[2], q0, a.L);
    for (int i = threadIdx.x; i < 2 * SD_BR; i += NT) {
        int r = i % SD_BR;
        bool in = q0 + r < a.L;
        const float *src = i < SD_BR ? hd.lse : hd.delta;
        sd_cp4(ls + i, in ? src + q0 + r : src, in);
    }
}

/* One query tile (q0) against this warpgroup's key tile (k0): S = Q K^T and dP = dO V^T on
 * wgmma (descriptors dQd, dOd, dK, dV), P recomputed from the lse, dS = P (dP - delta) (dS /
 * scale); P and dS stored into the swizzled [query][key] tiles Ps and dSs for dV and dK, and dS
 * left in dsa as the A fragments of dQ = dS K. lse_s / delta_s: the tile's rows; warp: the
 * warp within the warpgroup. */
template <bool BF>
__device__ __forceinline__ void sd_wg_bwd_p_ds(const sdpa_args &a, uint64_t dQd, uint64_t dOd, uint64_t dK, uint64_t dV,
                                               const float *lse_s, const float *delta_s, unsigned char *Ps,
                                               unsigned char *dSs, int k0, int q0, int warp, int g, int t,
                                               uint32_t (&dsa)[4][4]) {
    const int rl0 = warp * 16 + g, rl1 = rl0 + 8;
    float s[8][4], dp[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.f;
    sd_wg_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) sd_wg_ss<BF>(s, dQd + kk * 2, dK + kk * 2);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) sd_wg_ss<BF>(dp, dOd + kk * 2, dV + kk * 2);
    sd_wg_commit_wait();
    const float l0 = lse_s[rl0] * SD_LOG2E, l1 = lse_s[rl1] * SD_LOG2E, d0 = delta_s[rl0], d1 = delta_s[rl1];
    const bool edge = k0 + SD_BC > a.S || q0 + SD_BR > a.L || (a.causal && k0 + SD_BC - 1 > q0 + warp * 16);
    sd_recompute_p(s, a, l0, l1, edge, k0, q0, rl0, rl1, t);
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) dp[j][e] = s[j][e] * (dp[j][e] - (e < 2 ? d0 : d1));   /* dS / scale */
        /* element (row, 8j + 2t) of a swizzled [64][64] tile: chunk j of the row */
        const int o0 = rl0 * 128 + ((j ^ (rl0 & 7)) << 4) + 4 * t, o1 = rl1 * 128 + ((j ^ (rl1 & 7)) << 4) + 4 * t;
        const uint32_t s0 = sd_pack<BF>(dp[j][0], dp[j][1]), s1 = sd_pack<BF>(dp[j][2], dp[j][3]);
        dsa[j >> 1][(j & 1) * 2] = s0;
        dsa[j >> 1][(j & 1) * 2 + 1] = s1;
        *reinterpret_cast<uint32_t *>(Ps + o0) = sd_pack<BF>(s[j][0], s[j][1]);
        *reinterpret_cast<uint32_t *>(Ps + o1) = sd_pack<BF>(s[j][2], s[j][3]);
        *reinterpret_cast<uint32_t *>(dSs + o0) = s0;
        *reinterpret_cast<uint32_t *>(dSs + o1) = s1;
    }
}

/* c = dS K for this warp's rows (dS from registers, K MN-major), waited for */
template <bool BF> __device__ __forceinline__ void sd_wg_bwd_dq(float (&c)[8][4], const uint32_t (&dsa)[4][4], uint64_t dK) {
#pragma unroll
    for (int dt = 0; dt < 8; dt++) c[dt][0] = c[dt][1] = c[dt][2] = c[dt][3] = 0.f;
    sd_wg_fence();
#pragma unroll
    for (int kc = 0; kc < 4; kc++) sd_wg_rs<BF>(c, dsa[kc], dK + kc * (16 * 128 >> 4));
    sd_wg_commit_wait();
}

/* dV += P^T dO, dK += dS^T Q (keys = this warp's 16 rows of the accumulators), issued; the
 * caller commits and waits */
template <bool BF>
__device__ __forceinline__ void sd_wg_bwd_dkdv(float (&dk)[8][4], float (&dv)[8][4], uint64_t dP, uint64_t dS,
                                               uint64_t dQd, uint64_t dOd) {
    sd_wg_fence();
#pragma unroll
    for (int kc = 0; kc < 4; kc++) sd_wg_ss_tt<BF>(dv, dP + kc * (16 * 128 >> 4), dOd + kc * (16 * 128 >> 4));
#pragma unroll
    for (int kc = 0; kc < 4; kc++) sd_wg_ss_tt<BF>(dk, dS + kc * (16 * 128 >> 4), dQd + kc * (16 * 128 >> 4));
}

/* dK (times the scale) and dV of the key rows k0 + rl0, k0 + rl0 + 8 (those below S) */
template <bool BF>
__device__ __forceinline__ void sd_wg_bwd_store(const sdpa_args &a, int bh, int k0, int rl0, int t,
                                                const float (&dk)[8][4], const float (&dv)[8][4]) {
    const int b = bh / a.H, h = bh % a.H;
    uint16_t *dkg = a.dk + b * a.dks[0] + h * a.dks[1], *dvg = a.dv + b * a.dvs[0] + h * a.dvs[1];
    const int r0 = k0 + rl0, r1 = r0 + 8;
#pragma unroll
    for (int dt = 0; dt < 8; dt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = e < 2 ? r0 : r1, col = dt * 8 + 2 * t + (e & 1);
            if (row < a.S) {
                dkg[(int64_t)row * a.dks[2] + col] = sd_fromf<BF>(dk[dt][e] * a.scale);
                dvg[(int64_t)row * a.dvs[2] + col] = sd_fromf<BF>(dv[dt][e]);
            }
        }
    }
}

/* NWG warpgroups a block, NWG x 64 keys: warpgroup w owns the key tile k0 + 64 w.
 *
 * NWG 1 (the default): a block per 64-key tile; dQ's atomics follow its product, then dV and dK.
 *
 * NWG 2 (WEFT_SDPA_BWD128=1 until timed against NWG 1): each Q/dO tile is loaded once for both
 * warpgroups (NWG 1 loads it once per 64 keys), and the two warpgroups' dQ partials for the
 * same 64 query rows are summed in shared memory before the atomics: warpgroup w adds the d
 * columns 32 w .. 32 w + 31 of both, so each dQ element gets one atomic per 128 keys instead of
 * two. Those two streams (Q/dO reads, dQ read-modify-writes) are most of NWG 1's L2 traffic,
 * which bound it (83 % of L2 throughput on the H100, ninth session). dV and dK are started
 * before the atomics and run under them. A warpgroup whose key tile lies wholly past S, or
 * wholly above the causal diagonal of this query tile, runs its products anyway and the mask
 * zeroes its P, dS and dQ partial: a branch around wgmma makes ptxas serialize every wgmma of
 * the kernel (C7518), and such tiles are 2 of 18 a block at L 1024.
 *
 * With a.dq_bulk (WEFT_SDPA_DQ_BULK=1, NWG 2 only, on trial as well), the summed 64 x 64 dQ
 * tile goes to shared memory and each of its rows into dqacc by one bulk reduction in the L2
 * (cp.reduce.async.bulk, as FlashAttention-3's backward adds its dQ), issued after the
 * iteration's last barrier and waited for before the rows are written again: 64 bulk
 * operations a tile in place of 1024 16-byte atomics.
 *
 * Shared memory, 64-row tiles: K[NWG] | V[NWG] | Q dO, Q dO (two buffers) | P[NWG] | dS[NWG],
 * then lse/delta [2][2][64] f32 and, for NWG 2, the dQ halves [2][16][128] f32 and the summed
 * dQ tile [64][SD_DQS_LD] f32 (rows padded: the mma layout's stores hit two wavefronts, not
 * eight). */
#define SD_DQS_LD 72
#define SD_BWD_WG_SMEM(NWG)                                                                                      \
    ((size_t)(4 * (NWG) + 4) * SD_TILE_BYTES + (size_t)4 * SD_BR * 4 +                                          \
     (size_t)((NWG) - 1) * (2 * 16 * SD_THREADS + SD_BR * SD_DQS_LD) * 4 + 1024)
template <bool BF, int NWG>
__device__ __forceinline__ void sdpa_bwd_wg_tile(const sdpa_args &a, unsigned char *base, int bh, int kt) {
    constexpr int T = SD_TILE_BYTES, NT = NWG * SD_THREADS;
    const int wg = NWG == 1 ? 0 : threadIdx.x / SD_THREADS, tw = threadIdx.x % SD_THREADS;
    unsigned char *Ks = base, *Vs = base + NWG * T, *QD = base + 2 * NWG * T, *Ps = base + (2 * NWG + 4 + wg) * T,
                  *dSs = base + (3 * NWG + 4 + wg) * T;
    float *ld_s = reinterpret_cast<float *>(base + (4 * NWG + 4) * T);   /* [2][lse, delta][64] */
    float *xch = ld_s + 4 * SD_BR;   /* NWG 2: [2][16][128], each warpgroup's half for the other */
    float *dqs = xch + 2 * 16 * SD_THREADS;   /* NWG 2 with a.dq_bulk: the summed tile */
    const bool bulk = NWG == 2 && a.dq_bulk;
    const int k0 = kt * NWG * SD_BC, kw = k0 + wg * SD_BC;
    const int warp = tw >> 5, lane = tw & 31, g = lane >> 2, t = lane & 3;
    const sd_bwd_head hd(a, bh);
    const int qt0 = a.causal ? k0 / SD_BR : 0, nqt = (a.L + SD_BR - 1) / SD_BR;
    sd_wg_load<NWG * SD_BC, NT>(Ks, hd.k, a.ks[2], k0, a.S);
    sd_wg_load<NWG * SD_BC, NT>(Vs, hd.v, a.vs[2], k0, a.S);
    if (qt0 < nqt) sd_wg_load_qdo<NT>(a, hd, QD, ld_s, qt0 * SD_BR);
    sd_cp_commit();
    sd_cp_wait_all();
    sd_fence_async_smem();
    __syncthreads();

    const uint64_t dK = sd_wg_desc(Ks + wg * T), dV = sd_wg_desc(Vs + wg * T), dP = sd_wg_desc(Ps),
                   dS = sd_wg_desc(dSs);
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
    const int rl0 = warp * 16 + g, rl1 = rl0 + 8;
    for (int qt = qt0; qt < nqt; qt++) {
        const int q0 = qt * SD_BR, nb = (qt - qt0) & 1;
        const uint64_t dQd = sd_wg_desc(QD + nb * 2 * T), dOd = sd_wg_desc(QD + nb * 2 * T + T);
        const float *lse_s = ld_s + nb * 2 * SD_BR;
        if (qt + 1 < nqt) {
            sd_wg_load_qdo<NT>(a, hd, QD + (nb ^ 1) * 2 * T, ld_s + (nb ^ 1) * 2 * SD_BR, q0 + SD_BR);
            sd_cp_commit();
        }
        uint32_t dsa[4][4];
        sd_wg_bwd_p_ds<BF>(a, dQd, dOd, dK, dV, lse_s, lse_s + SD_BR, Ps, dSs, kw, q0, warp, g, t, dsa);
        float c[8][4];
        sd_wg_bwd_dq<BF>(c, dsa, dK);
        if constexpr (NWG == 1) {
            sd_wg_dq_add(a, hd.dq, c, 0, q0 + rl0, q0 + rl1, t);
            sd_fence_async_smem();   /* P and dS (generic stores) are read by wgmma next */
            __syncthreads();
            sd_wg_bwd_dkdv<BF>(dk, dv, dP, dS, dQd, dOd);
            sd_wg_commit_wait();
        } else {
            /* the other warpgroup's columns of the partial to it: d-tiles 4..7 from warpgroup 0,
             * 0..3 from warpgroup 1 (selects, not a runtime index: c stays in registers) */
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) xch[(wg * 16 + j * 4 + e) * SD_THREADS + tw] = wg ? c[j][e] : c[4 + j][e];
            if (bulk) sd_bulk_wait_read();   /* the last tile's rows are read out of dqs before it is written */
            sd_fence_async_smem();
            __syncthreads();
            sd_wg_bwd_dkdv<BF>(dk, dv, dP, dS, dQd, dOd);
            sd_wg_commit();   /* waited for after the atomics, which run under it */
            float m[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    m[j][e] = (wg ? c[4 + j][e] : c[j][e]) + xch[((1 - wg) * 16 + j * 4 + e) * SD_THREADS + tw];
            if (bulk) {
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int col = (wg * 4 + j) * 8 + 2 * t;
                    *reinterpret_cast<float2 *>(dqs + rl0 * SD_DQS_LD + col) = make_float2(m[j][0], m[j][1]);
                    *reinterpret_cast<float2 *>(dqs + rl1 * SD_DQS_LD + col) = make_float2(m[j][2], m[j][3]);
                }
            } else {
                sd_wg_dq_add(a, hd.dq, m, wg * 4, q0 + rl0, q0 + rl1, t);
            }
            sd_wg_wait();
        }
        sd_cp_wait_all();
        sd_fence_async_smem();
        __syncthreads();
        /* the tile's rows below L into dqacc (dqs is complete and fenced) */
        if (bulk && (int)threadIdx.x < SD_BR && q0 + (int)threadIdx.x < a.L)
            sd_bulk_add_f32(hd.dq + (int64_t)(q0 + threadIdx.x) * 64, dqs + threadIdx.x * SD_DQS_LD, 64 * 4);
    }
    if (bulk) sd_bulk_wait();   /* done before dqs is reused (the pair's next tile) or freed */
    sd_wg_bwd_store<BF>(a, bh, kw, rl0, t, dk, dv);
}

/* a block per NWG key tiles, or per pair of such (a.pair: sd_bwd_tiles in cuda_attention.cuh);
 * NWG 1 fits 3 blocks an SM, NWG 2 one (210 registers a thread) */
template <bool BF, int NWG>
__global__ void __launch_bounds__(NWG * SD_THREADS, NWG == 1 ? 3 : 1) sdpa_bwd_wg_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    /* the swizzle pattern repeats every 1024 bytes: tiles start on such a boundary */
    unsigned char *base = sd_smem + ((1024 - ((uint32_t)__cvta_generic_to_shared(sd_smem) & 1023)) & 1023);
    sd_bwd_tiles<NWG * SD_BC>(a, [&](int bh, int kt) { sdpa_bwd_wg_tile<BF, NWG>(a, base, bh, kt); });
}

/* ---------------------------------------------------------------- launch (cuda_attention.cu decides) */

/* the wgmma forward: on unless WEFT_SDPA_NOWGMMA=1, and only where the loaded image was built
 * for sm_90a (probed once per process on the first device that asks) */
bool wfc_sdpa_wgmma_ok(cudaStream_t st) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("WEFT_SDPA_NOWGMMA");
        v = 0;
        if (!(e && *e == '1')) {
            int *d = NULL, h = 0;
            if (cudaMalloc(&d, sizeof(int)) == cudaSuccess) {
                sd_wg_probe<<<1, 1, 0, st>>>(d);
                if (cudaMemcpyAsync(&h, d, sizeof(int), cudaMemcpyDeviceToHost, st) == cudaSuccess &&
                    cudaStreamSynchronize(st) == cudaSuccess)
                    v = h == 1;
                cudaFree(d);
            }
            cudaGetLastError();
        }
    }
    return v == 1;
}

int wfc_sdpa_fwd_sm90(const sdpa_args &a, bool bf, dim3 grid, size_t wsmem, cudaStream_t st, int dev) {
    int rc;
    if (bf) {
        if ((rc = sd_smem_attr(sdpa_fwd_wg_kernel<true>, wsmem, dev))) return rc;
        sdpa_fwd_wg_kernel<true><<<grid, 256, wsmem, st>>>(a);
    } else {
        if ((rc = sd_smem_attr(sdpa_fwd_wg_kernel<false>, wsmem, dev))) return rc;
        sdpa_fwd_wg_kernel<false><<<grid, 256, wsmem, st>>>(a);
    }
    return 0;
}

template <int NWG> static int sd_bwd_wg_launch(const sdpa_args &a, bool bf, dim3 grid, cudaStream_t st, int dev) {
    int rc;
    const size_t smem = SD_BWD_WG_SMEM(NWG);
    if (bf) {
        if ((rc = sd_smem_attr(sdpa_bwd_wg_kernel<true, NWG>, smem, dev))) return rc;
        sdpa_bwd_wg_kernel<true, NWG><<<grid, NWG * SD_THREADS, smem, st>>>(a);
    } else {
        if ((rc = sd_smem_attr(sdpa_bwd_wg_kernel<false, NWG>, smem, dev))) return rc;
        sdpa_bwd_wg_kernel<false, NWG><<<grid, NWG * SD_THREADS, smem, st>>>(a);
    }
    return 0;
}

int wfc_sdpa_bwd_sm90(const sdpa_args &a, bool bf, bool two, dim3 grid, cudaStream_t st, int dev) {
    return two ? sd_bwd_wg_launch<2>(a, bf, grid, st, dev) : sd_bwd_wg_launch<1>(a, bf, grid, st, dev);
}
