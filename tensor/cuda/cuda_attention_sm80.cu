/* tensor/cuda/cuda_attention_sm80.cu: the fused-attention kernels for compute capability 8.0
 * and later (Ampere, Ada, and Hopper when the wgmma kernels do not apply): forward and
 * backward on mma.sync m16n8k16 with ldmatrix and cp.async, for head dims padded to 64 or 128.
 * The launchers are in cuda_attention.cu; the shared helpers in cuda_attention.cuh. */
#include "cuda_attention.cuh"

/* FULL: D == DP (no padded head-dim columns: every bound check on D drops out at compile time) */
template <bool BF, int DP, bool FULL>
__global__ void __launch_bounds__(SDF_THREADS(SDF_MT), DP == 64 ? 2 : 1) sdpa_fwd_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    constexpr int MT = SDF_MT, LD = DP + 8, NT = SDF_THREADS(MT);
    uint16_t *Qs = reinterpret_cast<uint16_t *>(sd_smem), *KV = Qs + SDF_BR * LD;   /* KV: [2][K, V][64][LD] */
    const int bh = a.tile_x ? blockIdx.y : blockIdx.x, b = bh / a.H, h = bh % a.H;
    const int qt = a.tile_x ? gridDim.x - 1 - blockIdx.x : gridDim.y - 1 - blockIdx.y, q0 = qt * SDF_BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    const int Dr = FULL ? DP : (a.D + 15) & ~15, Dv = FULL ? DP : a.D;
    int kend = a.S;
    if (a.causal && q0 + SDF_BR < kend) kend = q0 + SDF_BR;
    const int nkt = (kend + SD_BC - 1) / SD_BC;
    sd_load_tile<DP, SDF_BR, NT>(Qs, qg, a.qs[2], q0, a.L, Dv, a.vec_q);
    if (nkt > 0) {
        sd_load_tile<DP, SD_BC, NT>(KV, kg, a.ks[2], 0, a.S, Dv, a.vec_k);
        sd_load_tile<DP, SD_BC, NT>(KV + SD_BC * LD, vg, a.vs[2], 0, a.S, Dv, a.vec_v);
    }
    sd_cp_commit();
    sd_cp_wait_all();
    __syncthreads();
    const int w0 = q0 + warp * 16 * MT;   /* this warp's first query row; m-tile mi has rows w0 + 16 mi .. */
    uint32_t qf[MT][DP / 16][4];           /* the warp's query rows stay in registers */
#pragma unroll
    for (int mi = 0; mi < MT; mi++)
#pragma unroll
        for (int kk = 0; kk < DP; kk += 16)
            if (kk < Dr) sd_ldA_rows(qf[mi][kk / 16], Qs, LD, warp * 16 * MT + mi * 16, kk, lane);

    float o[MT][DP / 8][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mi = 0; mi < MT; mi++) {
#pragma unroll
        for (int i = 0; i < DP / 8; i++) o[mi][i][0] = o[mi][i][1] = o[mi][i][2] = o[mi][i][3] = 0.f;
        m[mi][0] = m[mi][1] = -INFINITY;
        l[mi][0] = l[mi][1] = 0.f;
    }
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * SD_BC;
        const uint16_t *Ks = KV + (kt & 1) * 2 * SD_BC * LD, *Vs = Ks + SD_BC * LD;
        if (kt + 1 < nkt) {   /* the other buffer was released by the barrier that ended the last step */
            uint16_t *nk = KV + ((kt + 1) & 1) * 2 * SD_BC * LD;
            sd_load_tile<DP, SD_BC, NT>(nk, kg, a.ks[2], k0 + SD_BC, a.S, Dv, a.vec_k);
            sd_load_tile<DP, SD_BC, NT>(nk + SD_BC * LD, vg, a.vs[2], k0 + SD_BC, a.S, Dv, a.vec_v);
            sd_cp_commit();
        }
        /* nothing to do for a warp whose rows are all past L or all before this tile (causal) */
        if (w0 < a.L && !(a.causal && k0 > w0 + 16 * MT - 1)) {
            float s[MT][SD_BC / 8][4];
#pragma unroll
            for (int mi = 0; mi < MT; mi++)
#pragma unroll
                for (int j = 0; j < SD_BC / 8; j++) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < DP; kk += 16) {
                if (kk < Dr) {
#pragma unroll
                    for (int j = 0; j < SD_BC / 8; j += 2) {
                        uint32_t b0[2], b1[2];
                        sd_ldB_nk(b0, b1, Ks, LD, kk, j * 8, lane);
#pragma unroll
                        for (int mi = 0; mi < MT; mi++) {
                            sd_mma<BF>(s[mi][j], qf[mi][kk / 16], b0);
                            sd_mma<BF>(s[mi][j + 1], qf[mi][kk / 16], b1);
                        }
                    }
                }
            }
            uint32_t pa[MT][SD_BC / 16][4];
#pragma unroll
            for (int mi = 0; mi < MT; mi++) {
                const int r0 = w0 + mi * 16 + g, r1 = r0 + 8;
                const bool edge = k0 + SD_BC > a.S || (a.causal && k0 + SD_BC - 1 > w0 + mi * 16);
                /* the max is taken on the raw scores (scale > 0 keeps the order), the scale is
                 * folded into the exponent's FFMA: exp2(s * scale_log2 - m) */
                if (edge) {
#pragma unroll
                    for (int j = 0; j < SD_BC / 8; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int col = k0 + j * 8 + 2 * t + (e & 1), row = e < 2 ? r0 : r1;
                            if (col >= a.S || (a.causal && col > row)) s[mi][j][e] = -INFINITY;
                        }
                }
                sd_softmax_tile(s[mi], m[mi], l[mi], o[mi], a.scale_log2);
#pragma unroll
                for (int kc = 0; kc < SD_BC / 16; kc++) {
                    pa[mi][kc][0] = sd_pack<BF>(s[mi][2 * kc][0], s[mi][2 * kc][1]);
                    pa[mi][kc][1] = sd_pack<BF>(s[mi][2 * kc][2], s[mi][2 * kc][3]);
                    pa[mi][kc][2] = sd_pack<BF>(s[mi][2 * kc + 1][0], s[mi][2 * kc + 1][1]);
                    pa[mi][kc][3] = sd_pack<BF>(s[mi][2 * kc + 1][2], s[mi][2 * kc + 1][3]);
                }
            }
#pragma unroll
            for (int kc = 0; kc < SD_BC / 16; kc++) {
#pragma unroll
                for (int dt = 0; dt < DP / 8; dt += 2) {
                    if (dt * 8 < Dr) {
                        uint32_t b0[2], b1[2];
                        sd_ldB_kn(b0, b1, Vs, LD, kc * 16, dt * 8, lane);
#pragma unroll
                        for (int mi = 0; mi < MT; mi++) {
                            sd_mma<BF>(o[mi][dt], pa[mi][kc], b0);
                            sd_mma<BF>(o[mi][dt + 1], pa[mi][kc], b1);
                        }
                    }
                }
            }
        }
        sd_cp_wait_all();
        __syncthreads();
    }
    uint16_t *og = a.out + b * a.os[0] + h * a.os[1];
#pragma unroll
    for (int mi = 0; mi < MT; mi++) {
        const int r0 = w0 + mi * 16 + g, r1 = r0 + 8;
        float inv[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            l[mi][i] += __shfl_xor_sync(0xffffffffu, l[mi][i], 1);
            l[mi][i] += __shfl_xor_sync(0xffffffffu, l[mi][i], 2);
            inv[i] = l[mi][i] > 0.f ? 1.f / l[mi][i] : 0.f;
        }
#pragma unroll
        for (int dt = 0; dt < DP / 8; dt++) {
            int c = dt * 8 + 2 * t;
            if (c < Dv) {
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int r = hh ? r1 : r0;
                    if (r >= a.L) continue;
                    uint16_t *p = og + (int64_t)r * a.os[2] + c;
                    float v0 = o[mi][dt][2 * hh] * inv[hh], v1 = o[mi][dt][2 * hh + 1] * inv[hh];
                    if (a.vec_o && c + 1 < Dv) *reinterpret_cast<uint32_t *>(p) = sd_pack<BF>(v0, v1);
                    else {
                        p[0] = sd_fromf<BF>(v0);
                        if (c + 1 < Dv) p[1] = sd_fromf<BF>(v1);
                    }
                }
            }
        }
        if (t == 0) {
            float *lse = a.lse + (int64_t)bh * a.L;
            if (r0 < a.L) lse[r0] = l[mi][0] > 0.f ? (m[mi][0] + log2f(l[mi][0])) / SD_LOG2E : -INFINITY;
            if (r1 < a.L) lse[r1] = l[mi][1] > 0.f ? (m[mi][1] + log2f(l[mi][1])) / SD_LOG2E : -INFINITY;
        }
    }
}

template <bool BF, int DP, bool FULL>
__device__ __forceinline__ void sdpa_bwd_tile(const sdpa_args &a, unsigned char *sd_smem, int bh, int kt) {
    constexpr int LD = DP + 8, LDP = SD_BR + 8, NB = DP == 64 ? 2 : 1;   /* Q/dO buffers */
    uint16_t *Ks = reinterpret_cast<uint16_t *>(sd_smem), *Vs = Ks + SD_BC * LD, *QD = Vs + SD_BC * LD,
             *Ps = QD + NB * 2 * SD_BR * LD, *dSs = Ps + SD_BR * LDP;   /* QD: [NB][Q, dO][64][LD] */
    float *ld_s = reinterpret_cast<float *>(dSs + SD_BR * LDP);           /* [NB][lse, delta][64] */
    const int b = bh / a.H, h = bh % a.H, k0 = kt * SD_BC;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint16_t *qg = a.q + b * a.qs[0] + h * a.qs[1];
    const uint16_t *kg = a.k + b * a.ks[0] + h * a.ks[1];
    const uint16_t *vg = a.v + b * a.vs[0] + h * a.vs[1];
    const uint16_t *dog = a.dout + b * a.dos[0] + h * a.dos[1];
    const float *lseg = a.lse + (int64_t)bh * a.L, *deltag = a.delta + (int64_t)bh * a.L;
    float *dqg = a.dqacc + (int64_t)bh * a.L * a.D;
    const int Dr = FULL ? DP : (a.D + 15) & ~15, Dv = FULL ? DP : a.D;
    const bool dpair = FULL || (a.D & 1) == 0;
    const int qt0 = a.causal ? k0 / SD_BR : 0, nqt = (a.L + SD_BR - 1) / SD_BR;
    /* Q, dO, lse, delta of query tile qt into buffer nb */
    auto load_q = [&](int qt, int nb) {
        const int q0 = qt * SD_BR;
        uint16_t *qs = QD + nb * 2 * SD_BR * LD;
        sd_load_tile<DP, SD_BR, SD_THREADS>(qs, qg, a.qs[2], q0, a.L, Dv, a.vec_q);
        sd_load_tile<DP, SD_BR, SD_THREADS>(qs + SD_BR * LD, dog, a.dos[2], q0, a.L, Dv, a.vec_do);
        /* lse and delta through cp.async too (a plain load would stall these threads right
         * here); rows past L read as 0 and are masked where used */
        float *ls = ld_s + nb * 2 * SD_BR;
        for (int i = threadIdx.x; i < 2 * SD_BR; i += SD_THREADS) {
            int r = i % SD_BR;
            bool in = q0 + r < a.L;
            const float *src = i < SD_BR ? lseg : deltag;
            sd_cp4(ls + i, in ? src + q0 + r : src, in);
        }
    };
    sd_load_tile<DP, SD_BC, SD_THREADS>(Ks, kg, a.ks[2], k0, a.S, Dv, a.vec_k);
    sd_load_tile<DP, SD_BC, SD_THREADS>(Vs, vg, a.vs[2], k0, a.S, Dv, a.vec_v);
    if (qt0 < nqt) load_q(qt0, 0);
    sd_cp_commit();
    sd_cp_wait_all();
    __syncthreads();

    float dk[DP / 8][4], dv[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
    const int rl0 = warp * 16 + g, rl1 = rl0 + 8;
    for (int qt = qt0; qt < nqt; qt++) {
        const int q0 = qt * SD_BR, nb = NB == 2 ? (qt - qt0) & 1 : 0;
        const uint16_t *Qs = QD + nb * 2 * SD_BR * LD, *dOs = Qs + SD_BR * LD;
        const float *lse_s = ld_s + nb * 2 * SD_BR, *delta_s = lse_s + SD_BR;
        if (NB == 2 && qt + 1 < nqt) {   /* prefetch the next query tile into the other buffer */
            load_q(qt + 1, nb ^ 1);
            sd_cp_commit();
        }
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
                sd_ldA_rows(af, Qs, LD, warp * 16, kk, lane);
                sd_ldA_rows(df, dOs, LD, warp * 16, kk, lane);
#pragma unroll
                for (int j = 0; j < SD_BC / 8; j += 2) {
                    uint32_t b0[2], b1[2];
                    sd_ldB_nk(b0, b1, Ks, LD, kk, j * 8, lane);
                    sd_mma<BF>(s[j], af, b0);
                    sd_mma<BF>(s[j + 1], af, b1);
                    sd_ldB_nk(b0, b1, Vs, LD, kk, j * 8, lane);
                    sd_mma<BF>(dp[j], df, b0);
                    sd_mma<BF>(dp[j + 1], df, b1);
                }
            }
        }
        const float l0 = lse_s[rl0] * SD_LOG2E, l1 = lse_s[rl1] * SD_LOG2E, d0 = delta_s[rl0], d1 = delta_s[rl1];
        const bool edge = k0 + SD_BC > a.S || q0 + SD_BR > a.L || (a.causal && k0 + SD_BC - 1 > q0 + warp * 16);
        sd_recompute_p(s, a, l0, l1, edge, k0, q0, rl0, rl1, t);
#pragma unroll
        for (int j = 0; j < SD_BC / 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++)
                dp[j][e] = s[j][e] * (dp[j][e] - (e < 2 ? d0 : d1));   /* dS / scale: the scale is applied to dK, dQ */
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
            sd_ldA_cols(pa, Ps, LDP, warp * 16, kc * 16, lane);
            sd_ldA_cols(sa, dSs, LDP, warp * 16, kc * 16, lane);
#pragma unroll
            for (int dt = 0; dt < DP / 8; dt += 2) {
                if (dt * 8 < Dr) {
                    uint32_t b0[2], b1[2];
                    sd_ldB_kn(b0, b1, dOs, LD, kc * 16, dt * 8, lane);
                    sd_mma<BF>(dv[dt], pa, b0);
                    sd_mma<BF>(dv[dt + 1], pa, b1);
                    sd_ldB_kn(b0, b1, Qs, LD, kc * 16, dt * 8, lane);
                    sd_mma<BF>(dk[dt], sa, b0);
                    sd_mma<BF>(dk[dt + 1], sa, b1);
                }
            }
        }
        /* dQ += dS K for this warp's 16 query rows (f32 atomics); all d-tiles accumulate at once
         * (kc outermost), so the mma chains are independent instead of four deep per pair */
#pragma unroll
        for (int dh = 0; dh < DP; dh += 64) {   /* 64 columns at a time (registers at D 128) */
            constexpr int NC = DP < 64 ? DP / 8 : 8;
            float c[NC][4];
#pragma unroll
            for (int dt = 0; dt < NC; dt++) c[dt][0] = c[dt][1] = c[dt][2] = c[dt][3] = 0.f;
#pragma unroll
            for (int kc = 0; kc < SD_BC / 16; kc++) {
                uint32_t sa[4];
                sd_ldA_rows(sa, dSs, LDP, warp * 16, kc * 16, lane);
#pragma unroll
                for (int dt = 0; dt < NC; dt += 2) {
                    if (dh + dt * 8 < Dr) {
                        uint32_t b0[2], b1[2];
                        sd_ldB_kn(b0, b1, Ks, LD, kc * 16, dh + dt * 8, lane);
                        sd_mma<BF>(c[dt], sa, b0);
                        sd_mma<BF>(c[dt + 1], sa, b1);
                    }
                }
            }
            const int r0 = q0 + rl0, r1 = q0 + rl1;
#pragma unroll
            for (int dt = 0; dt < NC; dt++) {
                int col = dh + dt * 8 + 2 * t;
                if (col < Dv) {
                    bool pair = dpair && col + 1 < Dv;
                    if (r0 < a.L) sd_atomic2(dqg + (int64_t)r0 * Dv + col, c[dt][0], c[dt][1], pair);
                    if (r1 < a.L) sd_atomic2(dqg + (int64_t)r1 * Dv + col, c[dt][2], c[dt][3], pair);
                    if (!pair && col + 1 < Dv) {   /* odd D: the second column on its own */
                        if (r0 < a.L) atomicAdd(dqg + (int64_t)r0 * Dv + col + 1, c[dt][1]);
                        if (r1 < a.L) atomicAdd(dqg + (int64_t)r1 * Dv + col + 1, c[dt][3]);
                    }
                }
            }
        }
        if (NB == 1 && qt + 1 < nqt) {   /* single buffer: load the next tile once everyone is done */
            __syncthreads();
            load_q(qt + 1, 0);
            sd_cp_commit();
        }
        sd_cp_wait_all();
        __syncthreads();
    }
    uint16_t *dkg = a.dk + b * a.dks[0] + h * a.dks[1], *dvg = a.dv + b * a.dvs[0] + h * a.dvs[1];
    const int r0 = k0 + rl0, r1 = k0 + rl1;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = e < 2 ? r0 : r1, col = dt * 8 + 2 * t + (e & 1);
            if (row < a.S && col < Dv) {
                dkg[(int64_t)row * a.dks[2] + col] = sd_fromf<BF>(dk[dt][e] * a.scale);
                dvg[(int64_t)row * a.dvs[2] + col] = sd_fromf<BF>(dv[dt][e]);
            }
        }
    }
}

/* a block per key tile, or per pair of key tiles (a.pair: sd_bwd_pair in cuda_attention.cuh) */
template <bool BF, int DP, bool FULL>
__global__ void __launch_bounds__(SD_THREADS, DP == 64 ? 3 : 1) sdpa_bwd_kernel(sdpa_args a) {
    extern __shared__ __align__(16) unsigned char sd_smem[];
    sd_bwd_tiles(a, [&](int bh, int kt) { sdpa_bwd_tile<BF, DP, FULL>(a, sd_smem, bh, kt); });
}

/* ---------------------------------------------------------------- launch (cuda_attention.cu decides) */

int wfc_sdpa_fwd_sm80(const sdpa_args &a, bool bf, bool small, bool full, dim3 grid, size_t smem, cudaStream_t st,
                      int dev) {
    int rc;
#define SD_FWD(BFV, DPV, FV)                                                                  \
    do {                                                                                      \
        if ((rc = sd_smem_attr(sdpa_fwd_kernel<BFV, DPV, FV>, smem, dev))) return rc;         \
        sdpa_fwd_kernel<BFV, DPV, FV><<<grid, SDF_THREADS(SDF_MT), smem, st>>>(a);            \
    } while (0)
    if (bf) {
        if (small) { if (full) SD_FWD(true, 64, true); else SD_FWD(true, 64, false); }
        else { if (full) SD_FWD(true, 128, true); else SD_FWD(true, 128, false); }
    } else {
        if (small) { if (full) SD_FWD(false, 64, true); else SD_FWD(false, 64, false); }
        else { if (full) SD_FWD(false, 128, true); else SD_FWD(false, 128, false); }
    }
#undef SD_FWD
    return 0;
}

int wfc_sdpa_bwd_sm80(const sdpa_args &a, bool bf, bool small, bool full, dim3 grid, size_t smem, cudaStream_t st,
                      int dev) {
    int rc;
#define SD_BWD(BFV, DPV, FV)                                                               \
    do {                                                                                   \
        if ((rc = sd_smem_attr(sdpa_bwd_kernel<BFV, DPV, FV>, smem, dev))) return rc;      \
        sdpa_bwd_kernel<BFV, DPV, FV><<<grid, SD_THREADS, smem, st>>>(a);                  \
    } while (0)
    if (bf) {
        if (small) { if (full) SD_BWD(true, 64, true); else SD_BWD(true, 64, false); }
        else SD_BWD(true, 128, false);
    } else {
        if (small) { if (full) SD_BWD(false, 64, true); else SD_BWD(false, 64, false); }
        else SD_BWD(false, 128, false);
    }
#undef SD_BWD
    return 0;
}
