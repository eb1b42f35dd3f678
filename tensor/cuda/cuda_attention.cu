/* tensor/cuda/cuda_attention.cu: fused scaled-dot-product attention (flash-attention 2 style).
 *
 * Forward: one block of 8 warps per (batch*head, 128-query tile); each warp owns 16 query rows,
 * kept in registers as mma A fragments. Key/value tiles of 64 rows stream through shared memory,
 * double-buffered with cp.async (the next tile loads while this one is used); S = Q K^T and
 * O += P V run on the tensor cores (mma.sync m16n8k16, f16/bf16 inputs, f32 accumulation) with
 * the online softmax in registers (the S accumulator fragment is reused as the A operand of
 * P V; exp2 with the scale folded in). Every shared-memory operand is read with ldmatrix (x4:
 * two n-tiles or one A fragment per instruction). Under causal masking, tiles past the block's
 * last query are never loaded and a warp skips the tiles entirely above its rows. Saves the row
 * log-sum-exp (natural log, f32) for the backward.
 *
 * Backward: one block of 4 warps per (batch*head, 64-key tile) iterating over query tiles
 * (double-buffered with cp.async for D <= 64): recomputes P from the saved log-sum-exp,
 * dP = dO V^T, dS = P (dP - Delta) * scale with Delta = rowsum(dO O) (a small vectorized kernel
 * first, which also zeroes the f32 dQ buffer), accumulates dV = P^T dO and dK = dS^T Q in
 * registers and adds dQ = dS K into the f32 buffer with atomics (two floats per atomic on sm_90; four
 * in the Hopper kernel, WEFT_SDPA_DQ_V2=1 for two),
 * converted to the output dtype at the end.
 *
 * Head dims up to 128 (padded to 64 or 128 in shared memory); sequence lengths of any size
 * (tiles are zero-padded and masked); causal masking is top-left (key j <= query i), as in
 * the composed path of nn/functional.c. Only two head-dim variants per dtype are built to keep
 * compile time low.
 *
 * Hopper (sm_90a image, D == 64, 16-byte aligned rows): sdpa_fwd_wg_kernel and
 * sdpa_bwd_wg_kernel keep the tiling above but run every product on wgmma with the operands in
 * 128-byte swizzled shared-memory tiles (no ldmatrix); the host probes once whether the loaded
 * image has them (wfc_sdpa_wgmma_ok). WEFT_SDPA_NOWGMMA=1 selects the mma.sync kernels
 * instead, and WEFT_SDPA_NOFULL=1 the general ones (A/B timing).
 *
 * Files: this one holds the launchers and the two small arch-neutral backward kernels (delta,
 * dq); the mma.sync kernels are in cuda_attention_sm80.cu, the wgmma ones in
 * cuda_attention_sm90.cu, and what they share in cuda_attention.cuh. */
#include "cuda_attention.cuh"

/* delta[bh, i] = sum_d dO[i, d] * O[i, d] and a zero dqacc row; a group of G = D/8 threads per
 * row with 16-byte loads when vec (D % 8 == 0, aligned), else one warp per row */
template <bool BF> __global__ void sdpa_delta_kernel(sdpa_args a, int64_t rows) {
    int lane = threadIdx.x & 31;
    if (a.vec_do && a.vec_oin) {
        const int G = a.D / 8;   /* 1..16 threads per row, rows never straddle a warp when G | 32 */
        int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
        int64_t row = tid / 32 * (32 / G) + (lane / G);
        int sub = lane % G;
        bool live = lane < (32 / G) * G && row < rows;
        float s = 0.f;
        if (live) {
            int64_t bh = row / a.L, i = row % a.L, b = bh / a.H, h = bh % a.H;
            uint4 x = *reinterpret_cast<const uint4 *>(a.dout + b * a.dos[0] + h * a.dos[1] + i * a.dos[2] + sub * 8);
            uint4 y = *reinterpret_cast<const uint4 *>(a.o + b * a.os[0] + h * a.os[1] + i * a.os[2] + sub * 8);
            const uint16_t *xh = reinterpret_cast<const uint16_t *>(&x), *yh = reinterpret_cast<const uint16_t *>(&y);
#pragma unroll
            for (int e = 0; e < 8; e++) s += sd_tof<BF>(xh[e]) * sd_tof<BF>(yh[e]);
            float4 *dq = reinterpret_cast<float4 *>(a.dqacc + row * a.D + sub * 8);
            dq[0] = make_float4(0.f, 0.f, 0.f, 0.f);
            dq[1] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
        for (int off = 1; off < G; off <<= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (live && sub == 0) a.delta[row] = s;
        return;
    }
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
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

/* dq (any strides, d stride 1) = scale * dqacc (the backward kernel accumulates dS / scale);
 * 4 elements per thread when D % 4 == 0 */
template <bool BF> __global__ void sdpa_dq_kernel(sdpa_args a, uint16_t *dq, int64_t s0, int64_t s1, int64_t s2,
                                                  int64_t total) {
    if ((a.D & 3) == 0) {
        for (int64_t i4 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i4 < total / 4;
             i4 += (int64_t)gridDim.x * blockDim.x) {
            int64_t i = i4 * 4, d = i % a.D, r = i / a.D, row = r % a.L, bh = r / a.L, b = bh / a.H, h = bh % a.H;
            float4 v = reinterpret_cast<const float4 *>(a.dqacc)[i4];
            uint16_t *p = dq + b * s0 + h * s1 + row * s2 + d;
            p[0] = sd_fromf<BF>(v.x * a.scale); p[1] = sd_fromf<BF>(v.y * a.scale);
            p[2] = sd_fromf<BF>(v.z * a.scale); p[3] = sd_fromf<BF>(v.w * a.scale);
        }
        return;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % a.D, r = i / a.D, row = r % a.L, bh = r / a.L, b = bh / a.H, h = bh % a.H;
        dq[b * s0 + h * s1 + row * s2 + d] = sd_fromf<BF>(a.dqacc[i] * a.scale);
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

/* WEFT_SDPA_DQ_V2=1: the Hopper backward adds dQ with 8-byte atomics, as before the 16-byte
 * ones (A/B timing) */
WF__ENV_SWITCH(sd_dq_v2, "WEFT_SDPA_DQ_V2")

/* WEFT_SDPA_BWD_NOPAIR=1: the causal backward's blocks one key tile each, as before the
 * pairs (A/B timing) */
WF__ENV_SWITCH(sd_bwd_nopair, "WEFT_SDPA_BWD_NOPAIR")

/* WEFT_SDPA_BWD128=1: the Hopper backward with two warpgroups and 128 keys a block
 * (sdpa_bwd_wg_kernel<BF, 2>); off until timed against the one-warpgroup kernel */
WF__ENV_SWITCH(sd_bwd128, "WEFT_SDPA_BWD128")

/* WEFT_SDPA_DQ_BULK=1 (with WEFT_SDPA_BWD128=1): the two-warpgroup backward adds each dQ tile
 * with bulk reductions (cp.reduce.async.bulk) instead of atomics; on trial like it */
WF__ENV_SWITCH(sd_dq_bulk, "WEFT_SDPA_DQ_BULK")

/* WEFT_SDPA_NOFULL=1: the general kernels also where D is 64 or 128 (A/B timing) */
WF__ENV_SWITCH(sd_nofull, "WEFT_SDPA_NOFULL")

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
    a.vec_o = a.D % 2 == 0 && (uintptr_t)o->data % 4 == 0 && a.os[0] % 2 == 0 && a.os[1] % 2 == 0 && a.os[2] % 2 == 0;
    /* heaviest tiles first across all heads (batch*head along x): measured faster here than the
     * tiles along x (0.208 vs 0.231 ms at [16,12,1024,64] causal), unlike the backward */
    unsigned ntile = (unsigned)((a.L + SDF_BR - 1) / SDF_BR);
    a.tile_x = 0;
    dim3 grid((unsigned)(B * H), ntile);
    bool bf = dt == WF_BF16, small = a.D <= 64;
    size_t smem = (size_t)(SDF_BR + 4 * SD_BC) * ((small ? 64 : 128) + 8) * 2;
    bool full = a.D == (small ? 64 : 128) && !sd_nofull();
    if (full && small && a.vec_q && a.vec_k && a.vec_v && wfc_sdpa_wgmma_ok(st)) {
        size_t wsmem = (size_t)(SDF_BR + 4 * SD_BC) * 128 + 1024;
        if ((rc = wfc_sdpa_fwd_sm90(a, bf, grid, wsmem, st, dev))) return rc;
        return wfc_check("scaled_dot_product_attention kernel", dev);
    }
    if ((rc = wfc_sdpa_fwd_sm80(a, bf, small, full, grid, smem, st, dev))) return rc;
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
    a.vec_oin = sd_vec(o) && a.vec_do && (a.D == 8 || a.D == 16 || a.D == 32 || a.D == 64 || a.D == 128);
    if (rows) {
        int64_t per_warp = a.vec_oin ? 32 / (a.D / 8) : 1;
        unsigned blocks = (unsigned)(((rows + per_warp - 1) / per_warp * 32 + 255) / 256);
        if (bf) sdpa_delta_kernel<true><<<blocks, 256, 0, st>>>(a, rows);
        else sdpa_delta_kernel<false><<<blocks, 256, 0, st>>>(a, rows);
        if ((rc = wfc_check("scaled_dot_product_attention backward (delta) kernel", dev))) goto done;
    }
    if (a.S) {
        int DPv = small ? 64 : 128, nbuf = small ? 2 : 1;   /* Q/dO buffers, as in sdpa_bwd_kernel */
        size_t smem = (size_t)(2 + 2 * nbuf) * SD_BC * (DPv + 8) * 2 + (size_t)2 * SD_BR * (SD_BR + 8) * 2 +
                      (size_t)nbuf * 2 * SD_BR * 4;
        /* the D == 128 specialization spills (registers are full there): D 64 only */
        bool full = a.D == 64 && !sd_nofull();
        bool wg = full && a.vec_q && a.vec_k && a.vec_v && a.vec_do && wfc_sdpa_wgmma_ok(st);
        bool wg2 = wg && sd_bwd128();   /* two warpgroups, 128 keys a block */
        int bk = wg2 ? 128 : SD_BC;
        unsigned ntile = (unsigned)((a.S + bk - 1) / bk);
        /* key tiles along x, batch*head along y: the blocks resident at once cover few heads, so
         * their dQ accumulators (256 KB a head at D 64) stay in L2; with batch*head along x all
         * 50 MB were in flight and the kernel moved 1.2 GB through DRAM instead of 0.24 */
        a.tile_x = B * H <= 65535;
        a.dq_v4 = !sd_dq_v2();
        a.dq_bulk = wg2 && sd_dq_bulk();
        /* causal and square: a block per pair of key tiles, every block the same work (sd_bwd_tiles) */
        a.pair = a.causal && a.L == a.S && ntile > 1 && !sd_bwd_nopair();
        unsigned nblk = a.pair ? (ntile + 1) / 2 : ntile;
        dim3 grid = a.tile_x ? dim3(nblk, (unsigned)(B * H)) : dim3((unsigned)(B * H), nblk);
        if (wg) {
            rc = wfc_sdpa_bwd_sm90(a, bf, wg2, grid, st, dev);
        } else {
            rc = wfc_sdpa_bwd_sm80(a, bf, small, full, grid, smem, st, dev);
        }
        if (rc) goto done;
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
