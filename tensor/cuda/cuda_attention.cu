/* tensor/cuda/cuda_attention.cu: fused scaled-dot-product attention (flash-attention 2 style).
 *
 * Forward: one block of 4 warps per (batch*head, 64-query tile); each warp owns 16 query rows.
 * Key/value tiles of 64 rows stream through shared memory; S = Q K^T and O += P V run on the
 * tensor cores (mma.sync m16n8k16, f16/bf16 inputs, f32 accumulation) with the online softmax
 * kept in registers (the S accumulator fragment is reused as the A operand of P V). Saves the
 * row log-sum-exp (natural log, f32) for the backward.
 *
 * Backward: one block per (batch*head, 64-key tile) iterating over query tiles: recomputes P
 * from the saved log-sum-exp, dP = dO V^T, dS = P (dP - Delta) * scale with Delta = rowsum(dO O)
 * (a small kernel first), accumulates dV = P^T dO and dK = dS^T Q in registers and adds
 * dQ = dS K into an f32 buffer with atomics (converted to the output dtype at the end).
 *
 * Head dims up to 128 (padded to 64 or 128 in shared memory); sequence lengths of any size
 * (tiles are zero-padded and masked); causal masking is top-left (key j <= query i), as in
 * the composed path of nn/functional.c. Only two head-dim variants per dtype are built to keep
 * compile time low. */
#include "cuda_common.cuh"

#include <cuda_bf16.h>
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

/* the pair M[r][c], M[r][c+1] of a shared-memory matrix with M[r][c] = s[r*rs + c*cs] (low half = c) */
__device__ __forceinline__ uint32_t sd_ld2(const uint16_t *s, int rs, int cs, int r, int c) {
    if (cs == 1) return *reinterpret_cast<const uint32_t *>(s + r * rs + c);
    return (uint32_t)s[r * rs + c * cs] | ((uint32_t)s[r * rs + (c + 1) * cs] << 16);
}
/* ldmatrix .trans (sm_80+ builds; the mma above needs sm_80 anyway): 8x8 b16 tiles whose
 * memory rows run along the fragment's k, so transposed operands load in one instruction
 * instead of two 16-bit loads per pair. Row addresses are 16-byte aligned: the tiles' leading
 * dimensions (DP + 8, SD_BR + 8) and column offsets are multiples of 8 elements. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define SD_LDSM 1
__device__ __forceinline__ void sd_ldsm_x2_t(uint32_t r[2], const uint16_t *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
}
__device__ __forceinline__ void sd_ldsm_x4_t(uint32_t r[4], const uint16_t *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
}
#else
#define SD_LDSM 0
#endif

/* A fragment (16x16, rows r0.., cols k0..) of M[r][c] = s[r*rs + c*cs] */
__device__ __forceinline__ void sd_ldA(uint32_t a[4], const uint16_t *s, int rs, int cs, int r0, int k0, int lane) {
#if SD_LDSM
    if (rs == 1) {   /* memory rows along c: matrix mi = lane/8 covers rows r0 + (mi&1)*8, cols k0 + (mi>>1)*8 */
        int mi = lane >> 3, i = lane & 7;
        sd_ldsm_x4_t(a, s + (k0 + i + (mi >> 1) * 8) * cs + r0 + (mi & 1) * 8);
        return;
    }
#endif
    int g = lane >> 2, t = lane & 3;
    a[0] = sd_ld2(s, rs, cs, r0 + g, k0 + 2 * t);
    a[1] = sd_ld2(s, rs, cs, r0 + g + 8, k0 + 2 * t);
    a[2] = sd_ld2(s, rs, cs, r0 + g, k0 + 2 * t + 8);
    a[3] = sd_ld2(s, rs, cs, r0 + g + 8, k0 + 2 * t + 8);
}
/* B fragment (16x8, k0.., n0..) of B[k][n] = s[k*ks + n*ns] */
__device__ __forceinline__ void sd_ldB(uint32_t b[2], const uint16_t *s, int ks, int ns, int k0, int n0, int lane) {
#if SD_LDSM
    if (ns == 1) {   /* memory rows along k: lanes 0-15 address rows k0..k0+15 */
        sd_ldsm_x2_t(b, s + (k0 + (lane & 15)) * ks + n0);
        return;
    }
#endif
    int g = lane >> 2, t = lane & 3;
    b[0] = sd_ld2(s, ns, ks, n0 + g, k0 + 2 * t);
    b[1] = sd_ld2(s, ns, ks, n0 + g, k0 + 2 * t + 8);
}

/* rows r0..r0+63 of a [rows, D] matrix (row stride rs elements, d stride 1) into dst [64][DP+8],
 * zero-padded beyond nrows / D */
template <int DP> __device__ __forceinline__ void sd_load_tile(uint16_t *dst, const uint16_t *src, int64_t rs, int r0,
                                                               int nrows, int D, int vec) {
    constexpr int LD = DP + 8;
    if (vec) {
        constexpr int CPR = DP / 8;
        for (int i = threadIdx.x; i < 64 * CPR; i += SD_THREADS) {
            int r = i / CPR, c = (i % CPR) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r0 + r < nrows && c < D) v = __ldg(reinterpret_cast<const uint4 *>(src + (int64_t)(r0 + r) * rs + c));
            *reinterpret_cast<uint4 *>(dst + r * LD + c) = v;
        }
    } else {
        for (int i = threadIdx.x; i < 64 * DP; i += SD_THREADS) {
            int r = i / DP, c = i % DP;
            dst[r * LD + c] = (r0 + r < nrows && c < D) ? src[(int64_t)(r0 + r) * rs + c] : (uint16_t)0;
        }
    }
}

template <bool BF, int DP> __global__ void __launch_bounds__(SD_THREADS) sdpa_fwd_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    constexpr int LD = DP + 8;
    uint16_t *Qs = reinterpret_cast<uint16_t *>(sd_smem), *Ks = Qs + SD_BR * LD, *Vs = Ks + SD_BC * LD;
    const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H;
    const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * SD_BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    const int Dr = (a.D + 15) & ~15;
    sd_load_tile<DP>(Qs, qg, a.qs[2], q0, a.L, a.D, a.vec_q);
    __syncthreads();
    uint32_t qf[DP / 16][4];   /* this warp's 16 query rows stay in registers */
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16)
        if (kk < Dr) sd_ldA(qf[kk / 16], Qs, LD, 1, warp * 16, kk, lane);

    float o[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.f, 0.f };
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    int kend = a.S;
    if (a.causal && q0 + SD_BR < kend) kend = q0 + SD_BR;
    const int nkt = (kend + SD_BC - 1) / SD_BC;
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * SD_BC;
        __syncthreads();
        sd_load_tile<DP>(Ks, kg, a.ks[2], k0, a.S, a.D, a.vec_k);
        sd_load_tile<DP>(Vs, vg, a.vs[2], k0, a.S, a.D, a.vec_v);
        __syncthreads();
        float s[SD_BC / 8][4];
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < DP; kk += 16) {
            if (kk < Dr) {
#pragma unroll
                for (int j = 0; j < SD_BC / 8; j++) {
                    uint32_t bf[2];
                    sd_ldB(bf, Ks, 1, LD, kk, j * 8, lane);
                    sd_mma<BF>(s[j], qf[kk / 16], bf);
                }
            }
        }
        const bool edge = k0 + SD_BC > a.S || (a.causal && k0 + SD_BC - 1 > q0 + warp * 16);
        float mx[2] = { m[0], m[1] };
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = s[j][e] * a.scale_log2;
                if (edge) {
                    int col = k0 + j * 8 + 2 * t + (e & 1), row = e < 2 ? r0 : r1;
                    if (col >= a.S || (a.causal && col > row)) v = -INFINITY;
                }
                s[j][e] = v;
                mx[e >> 1] = fmaxf(mx[e >> 1], v);
            }
        float mb[2], alpha[2], rs[2] = { 0.f, 0.f };
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            mb[i] = mx[i] == -INFINITY ? 0.f : mx[i];
            alpha[i] = exp2f(m[i] - mb[i]);
            m[i] = mx[i];
        }
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = exp2f(s[j][e] - mb[e >> 1]);
                s[j][e] = p;
                rs[e >> 1] += p;
            }
        l[0] = l[0] * alpha[0] + rs[0];
        l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
        for (int i = 0; i < DP / 8; i++) {
            o[i][0] *= alpha[0]; o[i][1] *= alpha[0];
            o[i][2] *= alpha[1]; o[i][3] *= alpha[1];
        }
#pragma unroll
        for (int kc = 0; kc < SD_BC / 16; kc++) {
            uint32_t pa[4];
            pa[0] = sd_pack<BF>(s[2 * kc][0], s[2 * kc][1]);
            pa[1] = sd_pack<BF>(s[2 * kc][2], s[2 * kc][3]);
            pa[2] = sd_pack<BF>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
            pa[3] = sd_pack<BF>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
            for (int dt = 0; dt < DP / 8; dt++) {
                if (dt * 8 < Dr) {
                    uint32_t bf[2];
                    sd_ldB(bf, Vs, LD, 1, kc * 16, dt * 8, lane);
                    sd_mma<BF>(o[dt], pa, bf);
                }
            }
        }
    }
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        inv[i] = l[i] > 0.f ? 1.f / l[i] : 0.f;
    }
    uint16_t *og = a.out + b * a.os[0] + h * a.os[1];
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++) {
        int c = dt * 8 + 2 * t;
        if (c < a.D) {
            if (r0 < a.L) {
                og[(int64_t)r0 * a.os[2] + c] = sd_fromf<BF>(o[dt][0] * inv[0]);
                if (c + 1 < a.D) og[(int64_t)r0 * a.os[2] + c + 1] = sd_fromf<BF>(o[dt][1] * inv[0]);
            }
            if (r1 < a.L) {
                og[(int64_t)r1 * a.os[2] + c] = sd_fromf<BF>(o[dt][2] * inv[1]);
                if (c + 1 < a.D) og[(int64_t)r1 * a.os[2] + c + 1] = sd_fromf<BF>(o[dt][3] * inv[1]);
            }
        }
    }
    if (t == 0) {
        float *lse = a.lse + (int64_t)bh * a.L;
        if (r0 < a.L) lse[r0] = l[0] > 0.f ? (m[0] + log2f(l[0])) / SD_LOG2E : -INFINITY;
        if (r1 < a.L) lse[r1] = l[1] > 0.f ? (m[1] + log2f(l[1])) / SD_LOG2E : -INFINITY;
    }
}

/* delta[bh, i] = sum_d dO[i, d] * O[i, d]; one warp per row; also zeroes dqacc's row */
template <bool BF> __global__ void sdpa_delta_kernel(sdpa_args a, int64_t rows) {
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    int64_t bh = row / a.L, i = row % a.L, b = bh / a.H, h = bh % a.H;
    const uint16_t *dor = a.dout + b * a.dos[0] + h * a.dos[1] + i * a.dos[2];
    const uint16_t *orow = a.o + b * a.os[0] + h * a.os[1] + i * a.os[2];
    float s = 0.f;
    for (int d = lane; d < a.D; d += 32) s += sd_tof<BF>(dor[d]) * sd_tof<BF>(orow[d]);
    float *dq = a.dqacc + row * a.D;
    for (int d = lane; d < a.D; d += 32) dq[d] = 0.f;
    s = wfc_warp_reduce(s, wfc_add_f());
    if (lane == 0) a.delta[row] = s;
}

template <bool BF, int DP> __global__ void __launch_bounds__(SD_THREADS) sdpa_bwd_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    constexpr int LD = DP + 8, LDP = SD_BR + 8;
    uint16_t *Ks = reinterpret_cast<uint16_t *>(sd_smem), *Vs = Ks + SD_BC * LD, *Qs = Vs + SD_BC * LD,
             *dOs = Qs + SD_BR * LD, *Ps = dOs + SD_BR * LD, *dSs = Ps + SD_BR * LDP;
    float *lse_s = reinterpret_cast<float *>(dSs + SD_BR * LDP), *delta_s = lse_s + SD_BR;
    const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H;
    const int kt = gridDim.y - 1 - blockIdx.y, k0 = kt * SD_BC;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    const uint16_t *dog = a.dout + b * a.dos[0] + h * a.dos[1];
    const float *lseg = a.lse + (int64_t)bh * a.L, *deltag = a.delta + (int64_t)bh * a.L;
    float *dqg = a.dqacc + (int64_t)bh * a.L * a.D;
    const int Dr = (a.D + 15) & ~15;
    sd_load_tile<DP>(Ks, kg, a.ks[2], k0, a.S, a.D, a.vec_k);
    sd_load_tile<DP>(Vs, vg, a.vs[2], k0, a.S, a.D, a.vec_v);

    float dk[DP / 8][4], dv[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
    const int rl0 = warp * 16 + g, rl1 = rl0 + 8;
    const int qt0 = a.causal ? k0 / SD_BR : 0, nqt = (a.L + SD_BR - 1) / SD_BR;
    for (int qt = qt0; qt < nqt; qt++) {
        const int q0 = qt * SD_BR;
        __syncthreads();
        sd_load_tile<DP>(Qs, qg, a.qs[2], q0, a.L, a.D, a.vec_q);
        sd_load_tile<DP>(dOs, dog, a.dos[2], q0, a.L, a.D, a.vec_do);
        for (int i = threadIdx.x; i < SD_BR; i += SD_THREADS) {
            bool in = q0 + i < a.L;
            lse_s[i] = in ? lseg[q0 + i] * SD_LOG2E : INFINITY;
            delta_s[i] = in ? deltag[q0 + i] : 0.f;
        }
        __syncthreads();
        /* S = Q K^T and dP = dO V^T for this warp's 16 query rows x 64 keys */
        float s[SD_BC / 8][4], dp[SD_BC / 8][4];
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < DP; kk += 16) {
            if (kk < Dr) {
                uint32_t af[4], df[4];
                sd_ldA(af, Qs, LD, 1, warp * 16, kk, lane);
                sd_ldA(df, dOs, LD, 1, warp * 16, kk, lane);
#pragma unroll
                for (int j = 0; j < SD_BC / 8; j++) {
                    uint32_t bf[2];
                    sd_ldB(bf, Ks, 1, LD, kk, j * 8, lane);
                    sd_mma<BF>(s[j], af, bf);
                    sd_ldB(bf, Vs, 1, LD, kk, j * 8, lane);
                    sd_mma<BF>(dp[j], df, bf);
                }
            }
        }
        const float l0 = lse_s[rl0], l1 = lse_s[rl1], d0 = delta_s[rl0], d1 = delta_s[rl1];
        const bool edge = k0 + SD_BC > a.S || q0 + SD_BR > a.L || (a.causal && k0 + SD_BC - 1 > q0 + warp * 16);
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int rl = e < 2 ? rl0 : rl1;
                float p = exp2f(s[j][e] * a.scale_log2 - (e < 2 ? l0 : l1));
                if (edge) {
                    int col = k0 + j * 8 + 2 * t + (e & 1), row = q0 + rl;
                    if (col >= a.S || row >= a.L || (a.causal && col > row)) p = 0.f;
                }
                s[j][e] = p;
                dp[j][e] = p * (dp[j][e] - (e < 2 ? d0 : d1)) * a.scale;
            }
            int c = j * 8 + 2 * t;
            *reinterpret_cast<uint32_t *>(Ps + rl0 * LDP + c) = sd_pack<BF>(s[j][0], s[j][1]);
            *reinterpret_cast<uint32_t *>(Ps + rl1 * LDP + c) = sd_pack<BF>(s[j][2], s[j][3]);
            *reinterpret_cast<uint32_t *>(dSs + rl0 * LDP + c) = sd_pack<BF>(dp[j][0], dp[j][1]);
            *reinterpret_cast<uint32_t *>(dSs + rl1 * LDP + c) = sd_pack<BF>(dp[j][2], dp[j][3]);
        }
        __syncthreads();
        /* dV += P^T dO, dK += dS^T Q for this warp's 16 keys */
#pragma unroll
        for (int kc = 0; kc < SD_BR / 16; kc++) {
            uint32_t pa[4], sa[4];
            sd_ldA(pa, Ps, 1, LDP, warp * 16, kc * 16, lane);
            sd_ldA(sa, dSs, 1, LDP, warp * 16, kc * 16, lane);
#pragma unroll
            for (int dt = 0; dt < DP / 8; dt++) {
                if (dt * 8 < Dr) {
                    uint32_t bf[2];
                    sd_ldB(bf, dOs, LD, 1, kc * 16, dt * 8, lane);
                    sd_mma<BF>(dv[dt], pa, bf);
                    sd_ldB(bf, Qs, LD, 1, kc * 16, dt * 8, lane);
                    sd_mma<BF>(dk[dt], sa, bf);
                }
            }
        }
        /* dQ += dS K for this warp's 16 query rows (f32 atomics) */
        {
            uint32_t sa[SD_BC / 16][4];
#pragma unroll
            for (int kc = 0; kc < SD_BC / 16; kc++) sd_ldA(sa[kc], dSs, LDP, 1, warp * 16, kc * 16, lane);
            const int r0 = q0 + rl0, r1 = q0 + rl1;
#pragma unroll
            for (int dt = 0; dt < DP / 8; dt++) {
                if (dt * 8 < Dr) {
                    float c[4] = { 0.f, 0.f, 0.f, 0.f };
#pragma unroll
                    for (int kc = 0; kc < SD_BC / 16; kc++) {
                        uint32_t bf[2];
                        sd_ldB(bf, Ks, LD, 1, kc * 16, dt * 8, lane);
                        sd_mma<BF>(c, sa[kc], bf);
                    }
                    int col = dt * 8 + 2 * t;
                    if (col < a.D) {
                        if (r0 < a.L) atomicAdd(dqg + (int64_t)r0 * a.D + col, c[0]);
                        if (r1 < a.L) atomicAdd(dqg + (int64_t)r1 * a.D + col, c[2]);
                    }
                    if (col + 1 < a.D) {
                        if (r0 < a.L) atomicAdd(dqg + (int64_t)r0 * a.D + col + 1, c[1]);
                        if (r1 < a.L) atomicAdd(dqg + (int64_t)r1 * a.D + col + 1, c[3]);
                    }
                }
            }
        }
    }
    uint16_t *dkg = a.dk + b * a.dks[0] + h * a.dks[1], *dvg = a.dv + b * a.dvs[0] + h * a.dvs[1];
    const int r0 = k0 + rl0, r1 = k0 + rl1;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = e < 2 ? r0 : r1, col = dt * 8 + 2 * t + (e & 1);
            if (row < a.S && col < a.D) {
                dkg[(int64_t)row * a.dks[2] + col] = sd_fromf<BF>(dk[dt][e]);
                dvg[(int64_t)row * a.dvs[2] + col] = sd_fromf<BF>(dv[dt][e]);
            }
        }
    }
}

/* dq (any strides, d stride 1) = dqacc */
template <bool BF> __global__ void sdpa_dq_kernel(sdpa_args a, uint16_t *dq, int64_t s0, int64_t s1, int64_t s2,
                                                  int64_t total) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % a.D, r = i / a.D, row = r % a.L, bh = r / a.L, b = bh / a.H, h = bh % a.H;
        dq[b * s0 + h * s1 + row * s2 + d] = sd_fromf<BF>(a.dqacc[i]);
    }
}

/* ---------------------------------------------------------------- launchers */

static int sd_dims_ok(const wf_cuda_view *v, int dt) {
    return v->ndim == 4 && v->dtype == dt && v->stride[3] == 1;
}
static void sd_strides(const wf_cuda_view *v, int64_t s[3]) {
    s[0] = v->stride[0];
    s[1] = v->stride[1];
    s[2] = v->stride[2];
}
static int sd_vec(const wf_cuda_view *v) {
    int64_t D = v->shape[3];
    return D % 8 == 0 && ((uintptr_t)v->data % 16) == 0 && v->stride[0] % 8 == 0 && v->stride[1] % 8 == 0 &&
           v->stride[2] % 8 == 0;
}

template <class K> static int sd_smem_attr(K kern, size_t bytes, int dev) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e == cudaSuccess ? 0 : wfc_report(e, "sdpa (shared memory attribute)", dev);
}

extern "C" int wf__cuda_sdpa_forward(const wf_cuda_view *o, const wf_cuda_view *lse, const wf_cuda_view *q,
                                     const wf_cuda_view *k, const wf_cuda_view *v, double scale, int causal,
                                     int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "scaled_dot_product_attention", &st);
    if (rc) return rc;
    int dt = q->dtype;
    if ((dt != WF_BF16 && dt != WF_F16) || !sd_dims_ok(q, dt) || !sd_dims_ok(k, dt) || !sd_dims_ok(v, dt) ||
        !sd_dims_ok(o, dt) || q->shape[3] > 128 || k->shape[3] != q->shape[3] || v->shape[3] != q->shape[3])
        return wfc_error(WF_ENOTSUP, "cuda:%d: fused attention needs 4-D f16/bf16 q, k, v with unit last stride and "
                         "head dim <= 128", dev);
    sdpa_args a;
    memset(&a, 0, sizeof a);
    int64_t B = q->shape[0], H = q->shape[1];
    a.H = (int)H; a.L = (int)q->shape[2]; a.S = (int)k->shape[2]; a.D = (int)q->shape[3];
    if (!B || !H || !a.L) return 0;
    a.q = (const uint16_t *)q->data; a.k = (const uint16_t *)k->data; a.v = (const uint16_t *)v->data;
    a.out = (uint16_t *)o->data;
    a.lse = (float *)lse->data;
    sd_strides(q, a.qs); sd_strides(k, a.ks); sd_strides(v, a.vs); sd_strides(o, a.os);
    a.vec_q = sd_vec(q); a.vec_k = sd_vec(k); a.vec_v = sd_vec(v);
    a.scale = (float)scale;
    a.scale_log2 = (float)scale * SD_LOG2E;
    a.causal = causal != 0;
    dim3 grid((unsigned)(B * H), (unsigned)((a.L + SD_BR - 1) / SD_BR));
    bool bf = dt == WF_BF16, small = a.D <= 64;
    size_t smem = (size_t)3 * 64 * ((small ? 64 : 128) + 8) * 2;
#define SD_FWD(BFV, DPV)                                                                 \
    do {                                                                                 \
        if ((rc = sd_smem_attr(sdpa_fwd_kernel<BFV, DPV>, smem, dev))) return rc;        \
        sdpa_fwd_kernel<BFV, DPV><<<grid, SD_THREADS, smem, st>>>(a);                    \
    } while (0)
    if (bf) { if (small) SD_FWD(true, 64); else SD_FWD(true, 128); }
    else { if (small) SD_FWD(false, 64); else SD_FWD(false, 128); }
#undef SD_FWD
    return wfc_check("scaled_dot_product_attention kernel", dev);
}

extern "C" int wf__cuda_sdpa_backward(const wf_cuda_view *dq, const wf_cuda_view *dk, const wf_cuda_view *dv,
                                      const wf_cuda_view *dout, const wf_cuda_view *q, const wf_cuda_view *k,
                                      const wf_cuda_view *v, const wf_cuda_view *o, const wf_cuda_view *lse,
                                      double scale, int causal, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "scaled_dot_product_attention backward", &st);
    if (rc) return rc;
    int dt = q->dtype;
    if ((dt != WF_BF16 && dt != WF_F16) || !sd_dims_ok(q, dt) || !sd_dims_ok(k, dt) || !sd_dims_ok(v, dt) ||
        !sd_dims_ok(o, dt) || !sd_dims_ok(dout, dt) || !sd_dims_ok(dq, dt) || !sd_dims_ok(dk, dt) ||
        !sd_dims_ok(dv, dt) || q->shape[3] > 128)
        return wfc_error(WF_ENOTSUP, "cuda:%d: fused attention backward needs 4-D f16/bf16 tensors with unit last "
                         "stride and head dim <= 128", dev);
    sdpa_args a;
    memset(&a, 0, sizeof a);
    int64_t B = q->shape[0], H = q->shape[1];
    a.H = (int)H; a.L = (int)q->shape[2]; a.S = (int)k->shape[2]; a.D = (int)q->shape[3];
    if (!B || !H || (!a.L && !a.S)) return 0;
    a.q = (const uint16_t *)q->data; a.k = (const uint16_t *)k->data; a.v = (const uint16_t *)v->data;
    a.o = (const uint16_t *)o->data; a.dout = (const uint16_t *)dout->data;
    a.lse = (float *)lse->data;
    a.dk = (uint16_t *)dk->data; a.dv = (uint16_t *)dv->data;
    sd_strides(q, a.qs); sd_strides(k, a.ks); sd_strides(v, a.vs); sd_strides(o, a.os); sd_strides(dout, a.dos);
    sd_strides(dk, a.dks); sd_strides(dv, a.dvs);
    a.vec_q = sd_vec(q); a.vec_k = sd_vec(k); a.vec_v = sd_vec(v); a.vec_do = sd_vec(dout);
    a.scale = (float)scale;
    a.scale_log2 = (float)scale * SD_LOG2E;
    a.causal = causal != 0;
    int64_t rows = B * H * a.L;
    size_t dq_bytes = (size_t)(rows * a.D) * 4, delta_bytes = (size_t)rows * 4;
    char *work = (char *)wf__cuda_alloc(dev, dq_bytes + delta_bytes + 16);
    if (!work && dq_bytes + delta_bytes) return WF_ENOMEM;
    a.dqacc = (float *)work;
    a.delta = (float *)(work + dq_bytes);
    bool bf = dt == WF_BF16, small = a.D <= 64;
    if (rows) {
        unsigned blocks = (unsigned)((rows * 32 + 255) / 256);
        if (bf) sdpa_delta_kernel<true><<<blocks, 256, 0, st>>>(a, rows);
        else sdpa_delta_kernel<false><<<blocks, 256, 0, st>>>(a, rows);
        if ((rc = wfc_check("scaled_dot_product_attention backward (delta) kernel", dev))) goto done;
    }
    if (a.S) {
        int DPv = small ? 64 : 128;
        size_t smem = (size_t)4 * 64 * (DPv + 8) * 2 + (size_t)2 * 64 * (64 + 8) * 2 + 2 * 64 * 4;
        dim3 grid((unsigned)(B * H), (unsigned)((a.S + SD_BC - 1) / SD_BC));
#define SD_BWD(BFV, DPV)                                                                   \
    do {                                                                                   \
        if ((rc = sd_smem_attr(sdpa_bwd_kernel<BFV, DPV>, smem, dev))) goto done;          \
        sdpa_bwd_kernel<BFV, DPV><<<grid, SD_THREADS, smem, st>>>(a);                      \
    } while (0)
        if (bf) { if (small) SD_BWD(true, 64); else SD_BWD(true, 128); }
        else { if (small) SD_BWD(false, 64); else SD_BWD(false, 128); }
#undef SD_BWD
        if ((rc = wfc_check("scaled_dot_product_attention backward kernel", dev))) goto done;
    }
    if (rows) {
        int64_t total = rows * a.D;
        if (bf) sdpa_dq_kernel<true><<<wfc_blocks(total, 256, dev), 256, 0, st>>>(a, (uint16_t *)dq->data, dq->stride[0],
                                                                                  dq->stride[1], dq->stride[2], total);
        else sdpa_dq_kernel<false><<<wfc_blocks(total, 256, dev), 256, 0, st>>>(a, (uint16_t *)dq->data, dq->stride[0],
                                                                                 dq->stride[1], dq->stride[2], total);
        rc = wfc_check("scaled_dot_product_attention backward (dq) kernel", dev);
    }
done:
    wf__cuda_free(dev, work, dq_bytes + delta_bytes + 16);
    return rc;
}
