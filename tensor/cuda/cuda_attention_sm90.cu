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
__device__ __forceinline__ void sd_wg_fence() {
#if SD_WG
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void sd_wg_commit_wait() {
#if SD_WG
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void sd_fence_async_smem() {
#if SD_WG
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
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

/* Hopper backward (wgmma), D == 64 with 16-byte rows: sdpa_bwd_kernel's tiling (one block of
 * one warpgroup per 64-key tile, 64-query tiles double-buffered with cp.async) with every
 * product on wgmma: S = Q K^T and dP = dO V^T from shared memory (K-major), dV += P^T dO and
 * dK += dS^T Q with both operands MN-major (P and dS are stored [query][key], Q and dO
 * [query][d]), dQ = dS K with dS from registers (this warp's rows) and K MN-major. All tiles
 * are 64 x 128 bytes in the 128-byte swizzled layout. The accumulators have the per-warp
 * mma.sync layout, so the softmax-gradient code and the stores are sdpa_bwd_kernel's. */
template <bool BF>
__device__ __forceinline__ void sdpa_bwd_wg_tile(const sdpa_args &a, unsigned char *base, int bh, int kt) {
    constexpr int T = SD_BC * 128;   /* bytes of one 64-row tile */
    unsigned char *Ks = base, *Vs = base + T, *QD = base + 2 * T, *Ps = base + 6 * T, *dSs = base + 7 * T;
    float *ld_s = reinterpret_cast<float *>(base + 8 * T);   /* [2][lse, delta][64] */
    const int b = bh / a.H, h = bh % a.H, k0 = kt * SD_BC;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    const uint16_t *dog = a.dout + b * a.dos[0] + h * a.dos[1];
    const float *lseg = a.lse + (int64_t)bh * a.L, *deltag = a.delta + (int64_t)bh * a.L;
    float *dqg = a.dqacc + (int64_t)bh * a.L * 64;
    const int qt0 = a.causal ? k0 / SD_BR : 0, nqt = (a.L + SD_BR - 1) / SD_BR;
    auto load_q = [&](int qt, int nb) {
        const int q0 = qt * SD_BR;
        unsigned char *qs = QD + nb * 2 * T;
        sd_wg_load<SD_BR, SD_THREADS>(qs, qg, a.qs[2], q0, a.L);
        sd_wg_load<SD_BR, SD_THREADS>(qs + T, dog, a.dos[2], q0, a.L);
        float *ls = ld_s + nb * 2 * SD_BR;
        for (int i = threadIdx.x; i < 2 * SD_BR; i += SD_THREADS) {
            int r = i % SD_BR;
            bool in = q0 + r < a.L;
            const float *src = i < SD_BR ? lseg : deltag;
            sd_cp4(ls + i, in ? src + q0 + r : src, in);
        }
    };
    sd_wg_load<SD_BC, SD_THREADS>(Ks, kg, a.ks[2], k0, a.S);
    sd_wg_load<SD_BC, SD_THREADS>(Vs, vg, a.vs[2], k0, a.S);
    if (qt0 < nqt) load_q(qt0, 0);
    sd_cp_commit();
    sd_cp_wait_all();
    sd_fence_async_smem();
    __syncthreads();

    const uint64_t dK = sd_wg_desc(Ks), dV = sd_wg_desc(Vs), dP = sd_wg_desc(Ps), dS = sd_wg_desc(dSs);
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
    const int rl0 = warp * 16 + g, rl1 = rl0 + 8;
    for (int qt = qt0; qt < nqt; qt++) {
        const int q0 = qt * SD_BR, nb = (qt - qt0) & 1;
        const uint64_t dQd = sd_wg_desc(QD + nb * 2 * T), dOd = sd_wg_desc(QD + nb * 2 * T + T);
        const float *lse_s = ld_s + nb * 2 * SD_BR, *delta_s = lse_s + SD_BR;
        if (qt + 1 < nqt) {
            load_q(qt + 1, nb ^ 1);
            sd_cp_commit();
        }
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
        uint32_t dsa[4][4];
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
        /* dQ += dS K for this warp's rows (dS from registers, K MN-major), f32 atomics */
        float c[8][4];
#pragma unroll
        for (int dt = 0; dt < 8; dt++) c[dt][0] = c[dt][1] = c[dt][2] = c[dt][3] = 0.f;
        auto dq_atomics = [&]() {
            const int r0 = q0 + rl0, r1 = q0 + rl1;
#if SD_WG
            if (a.dq_v4) {
                /* 16-byte atomics: the lanes t and t^1 trade halves, so the even one holds four
                 * consecutive floats of row r0 and the odd one four of row r1 (half the atomics) */
                const bool odd = t & 1;
                const int row = odd ? r1 : r0;
#pragma unroll
                for (int dt = 0; dt < 8; dt++) {
                    float x0 = __shfl_xor_sync(0xffffffffu, odd ? c[dt][0] : c[dt][2], 1);
                    float x1 = __shfl_xor_sync(0xffffffffu, odd ? c[dt][1] : c[dt][3], 1);
                    float4 v = odd ? make_float4(x0, x1, c[dt][2], c[dt][3]) : make_float4(c[dt][0], c[dt][1], x0, x1);
                    if (row < a.L) atomicAdd(reinterpret_cast<float4 *>(dqg + (int64_t)row * 64 + dt * 8 + 2 * (t & 2)), v);
                }
                return;
            }
#endif
#pragma unroll
            for (int dt = 0; dt < 8; dt++) {
                int col = dt * 8 + 2 * t;
                if (r0 < a.L) sd_atomic2(dqg + (int64_t)r0 * 64 + col, c[dt][0], c[dt][1], true);
                if (r1 < a.L) sd_atomic2(dqg + (int64_t)r1 * 64 + col, c[dt][2], c[dt][3], true);
            }
        };
        sd_wg_fence();
#pragma unroll
        for (int kc = 0; kc < 4; kc++) sd_wg_rs<BF>(c, dsa[kc], dK + kc * (16 * 128 >> 4));
        sd_wg_commit_wait();
        dq_atomics();
        sd_fence_async_smem();   /* P and dS (generic stores) are read by wgmma next */
        __syncthreads();
        /* dV += P^T dO, dK += dS^T Q (keys = this warp's 16 rows of the accumulators) */
        sd_wg_fence();
#pragma unroll
        for (int kc = 0; kc < 4; kc++) sd_wg_ss_tt<BF>(dv, dP + kc * (16 * 128 >> 4), dOd + kc * (16 * 128 >> 4));
#pragma unroll
        for (int kc = 0; kc < 4; kc++) sd_wg_ss_tt<BF>(dk, dS + kc * (16 * 128 >> 4), dQd + kc * (16 * 128 >> 4));
        sd_wg_commit_wait();
        sd_cp_wait_all();
        sd_fence_async_smem();
        __syncthreads();
    }
    uint16_t *dkg = a.dk + b * a.dks[0] + h * a.dks[1], *dvg = a.dv + b * a.dvs[0] + h * a.dvs[1];
    const int r0 = k0 + rl0, r1 = k0 + rl1;
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

/* a block per key tile, or per pair of key tiles (a.pair: sd_bwd_tiles in cuda_attention.cuh) */
template <bool BF>
__global__ void __launch_bounds__(SD_THREADS, 3) sdpa_bwd_wg_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    /* the swizzle pattern repeats every 1024 bytes: tiles start on such a boundary */
    unsigned char *base = sd_smem + ((1024 - ((uint32_t)__cvta_generic_to_shared(sd_smem) & 1023)) & 1023);
    sd_bwd_tiles(a, [&](int bh, int kt) { sdpa_bwd_wg_tile<BF>(a, base, bh, kt); });
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

int wfc_sdpa_bwd_sm90(const sdpa_args &a, bool bf, dim3 grid, size_t wsmem, cudaStream_t st, int dev) {
    int rc;
    if (bf) {
        if ((rc = sd_smem_attr(sdpa_bwd_wg_kernel<true>, wsmem, dev))) return rc;
        sdpa_bwd_wg_kernel<true><<<grid, SD_THREADS, wsmem, st>>>(a);
    } else {
        if ((rc = sd_smem_attr(sdpa_bwd_wg_kernel<false>, wsmem, dev))) return rc;
        sdpa_bwd_wg_kernel<false><<<grid, SD_THREADS, wsmem, st>>>(a);
    }
    return 0;
}
