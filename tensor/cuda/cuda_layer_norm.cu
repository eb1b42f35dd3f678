/* tensor/cuda/cuda_layer_norm.cu: layer norm over the last dimension, forward and backward
 * (with the weight and bias gradients), on the GPU: a general row kernel for any dtypes and a
 * fast one for the common shapes. Rows are reduced as cuda_rows.cuh plans.
 *
 * The same kernels run the residual add fused into the norm (add_layer_norm): given a branch
 * r (ln_args.res) the forward writes s = x + r (x's dtype) as it reads the row and normalizes
 * the stored s; the backward, handed s as x, adds s's own gradient gs and writes the sum as gx
 * (x's dtype) and gr (r's dtype). The row math is one code for both ops. y (and so gy) may
 * have another dtype than x: an f32 x normalized into a bf16 y under autocast, for the matmul
 * that reads it (nn.h's wf_layer_norm_out_dtype), with no cast kernel either way. The CPU's
 * kernel is tensor/cpu/layer_norm.c.
 *
 * The fast path's forward and backward were rewritten to wait on DRAM once a row (issue 15:
 * lnf_fwd1_kernel, lnf_bwd1_kernel; the argument is above each). On the H100 the backward
 * went from 2.64 to 1.81 ms a GPT-2 124M step, the forward from 1.33 to 1.29 (bench/NOTES.md);
 * the old forward is gone since. WEFT_LN_OLD=1 in the environment (read once, at the first
 * call) runs the previous backward, lnf_bwd_kernel, for A/B timing; it also serves a half x
 * with a gy of another dtype. The new backward adds the weight and bias gradients in a fixed
 * order, so two runs agree bit for bit; the old one's shared-memory atomicAdd does not fix the
 * order of its 8 warps.
 *
 * The branch's bias (ln_args.rb, add_layer_norm's r_bias: the Linear that made r runs without
 * it) is added to r's element as it is read, s = x + (r + rb) in f32 (f64 for f64); its
 * gradient (ln_args.grb) is the column sum of g, the gradient written as gx / gr. In
 * lnf_bwd1_kernel it is a third partial row next to the weight's and the bias's (the same
 * fixed order; with no r_bias a uniform branch skips it); the other backwards (the old one, the
 * general row kernel) leave it to a column sum of the gx (or gr) they wrote, ln_colsum_kernel. */
#include "cuda_rows.cuh"

#include <stdlib.h>
#include <string.h>


#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- layer norm */

struct ln_args {
    const char *x; int xdt;
    char *y; int ydt;
    const char *w; int wdt; /* may be NULL */
    const char *b; int bdt; /* may be NULL */
    char *mean; int mdt;    /* may be NULL */
    char *rstd; int rdt;    /* may be NULL */
    const char *gy; int gydt;
    char *gx; int gxdt;     /* may be NULL when gr is set */
    const char *res; int resdt;   /* add_layer_norm: the branch r (NULL: plain layer norm) */
    char *s;                      /* add_layer_norm: s = x + r, x's dtype */
    const char *gs;               /* add_layer_norm backward: s's own gradient, x's dtype (may be NULL) */
    char *gr; int grdt;           /* add_layer_norm backward: r's gradient (may be NULL) */
    const char *rb; int rbdt;     /* add_layer_norm: r's bias [D], added to r (may be NULL) */
    int64_t rows, D;
    double eps;
};

template <class T, bool BLOCK> __global__ void ln_fwd_kernel(ln_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt), ys = wfc_dtype_size(a.ydt), ws = wfc_dtype_size(a.wdt), bs = wfc_dtype_size(a.bdt);
    char *yr = a.y + row * a.D * ys;
    T s = (T)0;
    if (a.res) {   /* s = x + r, stored; each thread reads back only what it wrote */
        int rs = wfc_dtype_size(a.resdt), rbs = wfc_dtype_size(a.rbdt);
        const char *x0 = a.x + row * a.D * xs, *r0 = a.res + row * a.D * rs;
        char *s0 = a.s + row * a.D * xs;
        for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
            T rv = wfc_ld<T>(r0 + j * rs, a.resdt);
            if (a.rb) rv += wfc_ld<T>(a.rb + j * rbs, a.rbdt);
            wfc_st<T>(s0 + j * xs, a.xdt, wfc_ld<T>(x0 + j * xs, a.xdt) + rv);
            s += wfc_ld<T>(s0 + j * xs, a.xdt);
        }
    }
    const char *xr = (a.res ? a.s : a.x) + row * a.D * xs;
    if (!a.res)
        for (int64_t j = R::tid(); j < a.D; j += R::nth()) s += wfc_ld<T>(xr + j * xs, a.xdt);
    T mean = R::reduce(s, wfc_add_f(), (T)0) / (T)a.D;
    T v = (T)0;
    for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
        T d = wfc_ld<T>(xr + j * xs, a.xdt) - mean;
        v += d * d;
    }
    T var = R::reduce(v, wfc_add_f(), (T)0) / (T)a.D;
    T rstd = (T)1 / sqrt(var + (T)a.eps);
    for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
        T h = (wfc_ld<T>(xr + j * xs, a.xdt) - mean) * rstd;
        if (a.w) h *= wfc_ld<T>(a.w + j * ws, a.wdt);
        if (a.b) h += wfc_ld<T>(a.b + j * bs, a.bdt);
        wfc_st<T>(yr + j * ys, a.ydt, h);
    }
    if (R::tid() == 0) {
        if (a.mean) wfc_st<T>(a.mean + row * wfc_dtype_size(a.mdt), a.mdt, mean);
        if (a.rstd) wfc_st<T>(a.rstd + row * wfc_dtype_size(a.rdt), a.rdt, rstd);
    }
}

template <class T, bool BLOCK> __global__ void ln_bwd_kernel(ln_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt), gys = wfc_dtype_size(a.gydt), gxs = wfc_dtype_size(a.gxdt), ws = wfc_dtype_size(a.wdt);
    const char *xr = a.x + row * a.D * xs, *gyr = a.gy + row * a.D * gys;
    T mean = wfc_ld<T>(a.mean + row * wfc_dtype_size(a.mdt), a.mdt);
    T rstd = wfc_ld<T>(a.rstd + row * wfc_dtype_size(a.rdt), a.rdt);
    T s1 = (T)0, s2 = (T)0;
    for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
        T wg = wfc_ld<T>(gyr + j * gys, a.gydt);
        if (a.w) wg *= wfc_ld<T>(a.w + j * ws, a.wdt);
        T h = (wfc_ld<T>(xr + j * xs, a.xdt) - mean) * rstd;
        s1 += wg;
        s2 += wg * h;
    }
    s1 = R::reduce(s1, wfc_add_f(), (T)0) / (T)a.D;
    s2 = R::reduce(s2, wfc_add_f(), (T)0) / (T)a.D;
    for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
        T wg = wfc_ld<T>(gyr + j * gys, a.gydt);
        if (a.w) wg *= wfc_ld<T>(a.w + j * ws, a.wdt);
        T h = (wfc_ld<T>(xr + j * xs, a.xdt) - mean) * rstd, g = rstd * (wg - s1 - h * s2);
        int64_t e = row * a.D + j;
        if (a.gs) g += wfc_ld<T>(a.gs + e * xs, a.xdt);
        if (a.gx) wfc_st<T>(a.gx + e * gxs, a.gxdt, g);
        if (a.gr) wfc_st<T>(a.gr + e * wfc_dtype_size(a.grdt), a.grdt, g);
    }
}

/* gweight[j] = sum_rows gy*xhat, gbias[j] = sum_rows gy: thread per (column, row chunk) */
template <class T> __global__ void ln_wb_kernel(ln_args a, T *pw, T *pb, int64_t chunks) {
    int xs = wfc_dtype_size(a.xdt), gys = wfc_dtype_size(a.gydt);
    int64_t total = a.D * chunks, len = (a.rows + chunks - 1) / chunks;
    GRID_LOOP(t, total) {
        int64_t j = t % a.D, c = t / a.D, r0 = c * len, r1 = r0 + len < a.rows ? r0 + len : a.rows;
        T sw = (T)0, sb = (T)0;
        for (int64_t r = r0; r < r1; r++) {
            T g = wfc_ld<T>(a.gy + (r * a.D + j) * gys, a.gydt);
            T mean = wfc_ld<T>(a.mean + r * wfc_dtype_size(a.mdt), a.mdt);
            T rstd = wfc_ld<T>(a.rstd + r * wfc_dtype_size(a.rdt), a.rdt);
            sw += g * (wfc_ld<T>(a.x + (r * a.D + j) * xs, a.xdt) - mean) * rstd;
            sb += g;
        }
        pw[c * a.D + j] = sw;
        pb[c * a.D + j] = sb;
    }
}
template <class T> __global__ void ln_wb_finish(const T *pw, const T *pb, int64_t chunks, int64_t D, char *gw, int gwdt,
                                                char *gb, int gbdt) {
    GRID_LOOP(j, D) {
        T sw = (T)0, sb = (T)0;
        for (int64_t c = 0; c < chunks; c++) { sw += pw[c * D + j]; sb += pb[c * D + j]; }
        if (gw) wfc_st<T>(gw + j * wfc_dtype_size(gwdt), gwdt, sw);
        if (gb) wfc_st<T>(gb + j * wfc_dtype_size(gbdt), gbdt, sb);
    }
}

/* r_bias's gradient where the backward kernel did not sum it: p[c][j] = the sum of g[r][j] over
 * row chunk c, g the gradient that kernel wrote (gx or gr); ln_wb_finish adds the chunks */
template <class T> __global__ void ln_colsum_kernel(const char *g, int gdt, int64_t rows, int64_t D, T *p, int64_t chunks) {
    int gs = wfc_dtype_size(gdt);
    int64_t len = (rows + chunks - 1) / chunks;
    GRID_LOOP(t, D * chunks) {
        int64_t j = t % D, c = t / D, r0 = c * len, r1 = r0 + len < rows ? r0 + len : rows;
        T s = (T)0;
        for (int64_t r = r0; r < r1; r++) s += wfc_ld<T>(g + (r * D + j) * gs, gdt);
        p[c * D + j] = s;
    }
}

/* Fast layer norm for the common shapes: x, gx, weight, bias (and add_layer_norm's s, gs) of
 * one dtype, the kind K (f32, bf16 or f16); y / gy, r / gr each f32, bf16 or f16 of their own,
 * chosen at run time (lnf_ld4_dt); D a multiple of 4 up to 1024; each tensor 16-byte (f32) /
 * 8-byte (half) aligned; mean and rstd f32. One warp per row holds the row in registers (4 elements per load, NV loads per
 * lane), so the forward reads x once and the backward reads x and gy once. The backward also
 * accumulates the weight/bias gradients: each warp keeps its columns' partial sums over the
 * rows it visits (lnf_bwd_kernel: in registers; lnf_bwd1_kernel: in shared memory), the block
 * adds its warps' sums and writes one partial row per block; lnf_wb_finish adds those rows. */
#define LNF_WARPS 8
template <int K> __device__ __forceinline__ void lnf_ld4(const char *base, int64_t i, float v[4]) {
    if (K == 0) {
        float4 q = __ldg(reinterpret_cast<const float4 *>(base) + i);
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
        uint2 q = __ldg(reinterpret_cast<const uint2 *>(base) + i);
        uint16_t h[4] = { (uint16_t)(q.x & 0xffffu), (uint16_t)(q.x >> 16), (uint16_t)(q.y & 0xffffu), (uint16_t)(q.y >> 16) };
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = K == 1 ? wfc_bf16_to_f(h[e]) : wfc_h_to_f(h[e]);
    }
}
template <int K> __device__ __forceinline__ void lnf_st4(char *base, int64_t i, const float v[4]) {
    if (K == 0) {
        reinterpret_cast<float4 *>(base)[i] = make_float4(v[0], v[1], v[2], v[3]);
    } else {
        uint16_t h[4];
#pragma unroll
        for (int e = 0; e < 4; e++) h[e] = K == 1 ? wfc_f_to_bf16(v[e]) : wfc_f_to_h(v[e]);
        reinterpret_cast<uint2 *>(base)[i] = make_uint2(h[0] | ((uint32_t)h[1] << 16), h[2] | ((uint32_t)h[3] << 16));
    }
}

/* y / gy, the add_layer_norm branch and r's gradient: f32, bf16 or f16 chosen at run time (one
 * branch, the same for the whole grid), so the kernels are not instantiated per dtype pair */
__device__ __forceinline__ void lnf_ld4_dt(const char *base, int64_t i, int dt, float v[4]) {
    if (dt == WF_F32) lnf_ld4<0>(base, i, v);
    else if (dt == WF_BF16) lnf_ld4<1>(base, i, v);
    else lnf_ld4<2>(base, i, v);
}
__device__ __forceinline__ void lnf_st4_dt(char *base, int64_t i, int dt, const float v[4]) {
    if (dt == WF_F32) lnf_st4<0>(base, i, v);
    else if (dt == WF_BF16) lnf_st4<1>(base, i, v);
    else lnf_st4<2>(base, i, v);
}
/* v rounded to the dtype of kind K, as storing and loading it would */
template <int K> __device__ __forceinline__ float lnf_round(float v) {
    return K == 0 ? v : K == 1 ? wfc_bf16_to_f(wfc_f_to_bf16(v)) : wfc_h_to_f(wfc_f_to_h(v));
}

/* gx (if a.gx) and, when pw, per-block partial weight/bias gradients pw/pb [gridDim.x][D] */
template <int K, int NV> __global__ void __launch_bounds__(LNF_WARPS * 32, 2) lnf_bwd_kernel(ln_args a, float *pw, float *pb) {
    extern __shared__ float lnf_smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nc = (int)(a.D >> 2), es = K == 0 ? 4 : 2;
    float dw[NV][4], db[NV][4];
#pragma unroll
    for (int i = 0; i < NV; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dw[i][e] = db[i][e] = 0.f;
    const float invD = 1.f / (float)a.D;
    for (int64_t row = (int64_t)blockIdx.x * LNF_WARPS + warp; row < a.rows; row += (int64_t)gridDim.x * LNF_WARPS) {
        const float mean = reinterpret_cast<const float *>(a.mean)[row], rstd = reinterpret_cast<const float *>(a.rstd)[row];
        const char *xr = a.x + row * a.D * es, *gyr = a.gy + row * a.D * wfc_dtype_size(a.gydt);
        float s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                float x[4], g[4], w[4] = { 1.f, 1.f, 1.f, 1.f };
                lnf_ld4<K>(xr, c, x);
                lnf_ld4_dt(gyr, c, a.gydt, g);
                if (a.w) lnf_ld4<K>(a.w, c, w);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float h = (x[e] - mean) * rstd, wg = g[e] * w[e];
                    s1 += wg;
                    s2 += wg * h;
                    dw[i][e] += g[e] * h;
                    db[i][e] += g[e];
                }
            }
        }
        if (a.gx || a.gr) {
            /* second pass over the row (x and gy again, from L1) keeps the registers for dw/db */
            s1 = wfc_warp_reduce(s1, wfc_add_f()) * invD;
            s2 = wfc_warp_reduce(s2, wfc_add_f()) * invD;
            char *gxr = a.gx ? a.gx + row * a.D * es : NULL;
#pragma unroll
            for (int i = 0; i < NV; i++) {
                int c = lane + 32 * i;
                if (c < nc) {
                    float x[4], g[4], w[4] = { 1.f, 1.f, 1.f, 1.f }, o[4];
                    lnf_ld4<K>(xr, c, x);
                    lnf_ld4_dt(gyr, c, a.gydt, g);
                    if (a.w) lnf_ld4<K>(a.w, c, w);
#pragma unroll
                    for (int e = 0; e < 4; e++) o[e] = rstd * (g[e] * w[e] - s1 - (x[e] - mean) * rstd * s2);
                    if (a.gs) {   /* add_layer_norm: s's own gradient joins here, not in another kernel */
                        float q[4];
                        lnf_ld4<K>(a.gs + row * a.D * es, c, q);
#pragma unroll
                        for (int e = 0; e < 4; e++) o[e] += q[e];
                    }
                    if (a.gx) lnf_st4<K>(gxr, c, o);
                    if (a.gr) lnf_st4_dt(a.gr + row * a.D * wfc_dtype_size(a.grdt), c, a.grdt, o);
                }
            }
        }
    }
    if (!pw) return;
    float *sw = lnf_smem, *sb = lnf_smem + a.D;
    for (int j = threadIdx.x; j < a.D; j += blockDim.x) sw[j] = sb[j] = 0.f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int c = lane + 32 * i;
        if (c < nc)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                atomicAdd(sw + 4 * c + e, dw[i][e]);
                atomicAdd(sb + 4 * c + e, db[i][e]);
            }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < a.D; j += blockDim.x) {
        pw[(int64_t)blockIdx.x * a.D + j] = sw[j];
        pb[(int64_t)blockIdx.x * a.D + j] = sb[j];
    }
}

/* The backward of the fast path, one DRAM round trip a row (lnf_bwd_kernel, kept for A/B
 * timing under WEFT_LN_OLD=1, makes two). The GPT-2 124M case: rows 16384, D 768, x = the saved
 * sum s and gs f32, gy bf16; it reads x, gy, gs (125 MB) and writes gx (f32) and gr (bf16)
 * (75 MB): 200 MB, ~60 us at 3.35 TB/s. An SM must then keep ~25 B/ns x ~1 us of loaded DRAM
 * latency = ~25-40 KB in flight. The old kernel loads x and gy (4.5 KB a warp), waits, reduces,
 * then loads gs (3 KB, its first read) and waits again; its dw/db partial sums take 48 registers
 * a thread, so 2 blocks (16 warps) an SM, and each row pays two latencies with at most 3-4.5 KB
 * a warp in flight: it measured ~105 us. Here:
 * - each row issues every load it needs (x, gy and gs: 7.5 KB a warp, ~120 KB an SM with 16
 *   warps, 3x what Little's law asks) before the first use, held raw (gy bf16 as bf16: 60
 *   registers at D 768), so a row waits on DRAM once; w (3 KB, the same for every row) comes
 *   from L1 each time it is used. ptxas (CUDA 12, sm_90) gives the GPT's instance 125
 *   registers, so still 2 blocks an SM: a bound of 3 (80 registers) spilled 172 bytes a thread,
 *   and 16 warps are enough once each has a whole row in flight;
 * - dw/db leave the registers for this warp's own slice of shared memory: 2 x D floats a warp
 *   (48 KB a block at D 768), read and written once a row by the lanes that own those columns
 *   (12 KB of shared-memory traffic a warp-row, ~100 cycles against the row's ~1 us DRAM wait),
 *   with no atomics and no barrier until the block adds its 8 warps in warp order: a fixed
 *   summation order, so two runs agree bit for bit (the old kernel's shared atomicAdd did not
 *   fix it);
 * - the grid is what stays resident (the occupancy the register count and the shared memory
 *   allow, asked of the runtime), shrunk to the fewest warps that still give each warp at most
 *   ceil(rows / resident warps) rows (the GPT: 8 rows, 256 blocks), so fewer partial rows for
 *   lnf_wb_finish at no cost in the slowest warp's row count.
 * gy's dtype G is a template parameter, not lnf_ld4_dt's run-time branch: a load inside that
 * branch is followed by its conversion in the same block, which would serialize the NV loads. */
template <int K> struct lnf_io;
template <> struct lnf_io<0> {
    typedef float4 raw;
    static __device__ __forceinline__ raw load(const char *base, int64_t i) {
        return __ldg(reinterpret_cast<const float4 *>(base) + i);
    }
    static __device__ __forceinline__ void unpack(const raw &q, float v[4]) { v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w; }
};
template <int K> struct lnf_io_half {
    typedef uint2 raw;
    static __device__ __forceinline__ raw load(const char *base, int64_t i) {
        return __ldg(reinterpret_cast<const uint2 *>(base) + i);
    }
    static __device__ __forceinline__ void unpack(const raw &q, float v[4]) {
        uint16_t h[4] = { (uint16_t)(q.x & 0xffffu), (uint16_t)(q.x >> 16), (uint16_t)(q.y & 0xffffu), (uint16_t)(q.y >> 16) };
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = K == 1 ? wfc_bf16_to_f(h[e]) : wfc_h_to_f(h[e]);
    }
};
template <> struct lnf_io<1> : lnf_io_half<1> {};
template <> struct lnf_io<2> : lnf_io_half<2> {};

/* both sums of a row over the warp, their shuffles interleaved (one latency chain, not two) */
__device__ __forceinline__ void lnf_warp_sum2(float &a, float &b) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_xor_sync(0xffffffffu, b, o);
    }
}

/* x, gs, gx (and w) of kind K, gy of kind G, gr any; when pw, per-block partial weight/bias
 * gradients pw/pb [gridDim.x][D] from LNF_WARPS * 2 * D floats of shared memory, and when pr
 * (only with pw) r_bias's, pr [gridDim.x][D], from LNF_WARPS * 3 * D */
template <int K, int G, int NV>
__global__ void __launch_bounds__(LNF_WARPS * 32, 2) lnf_bwd1_kernel(ln_args a, float *pw, float *pb, float *pr) {
    extern __shared__ float4 lnf_acc4[];
    typedef lnf_io<K> IX;
    typedef lnf_io<G> IG;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nc = (int)(a.D >> 2);
    const int xes = K == 0 ? 4 : 2, ges = G == 0 ? 4 : 2;
    /* this warp's partial sums, nc float4 of dw, then nc of db (then nc of dr); lane touches only
     * its columns */
    const int na = pr ? 3 : 2;
    float4 *dw4 = lnf_acc4 + (size_t)warp * na * nc, *db4 = dw4 + nc, *dr4 = db4 + nc;
    if (pw)
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                dw4[c] = db4[c] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (pr) dr4[c] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
        }
    const float invD = 1.f / (float)a.D;
    for (int64_t row = (int64_t)blockIdx.x * LNF_WARPS + warp; row < a.rows; row += (int64_t)gridDim.x * LNF_WARPS) {
        const char *xr = a.x + row * a.D * xes, *gyr = a.gy + row * a.D * ges;
        typename IX::raw xq[NV], qq[NV];
        typename IG::raw gq[NV];
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) { xq[i] = IX::load(xr, c); gq[i] = IG::load(gyr, c); }
        }
        if (a.gs) {
            const char *gsr = a.gs + row * a.D * xes;
#pragma unroll
            for (int i = 0; i < NV; i++) {
                int c = lane + 32 * i;
                if (c < nc) qq[i] = IX::load(gsr, c);
            }
        }
        const float mean = __ldg(reinterpret_cast<const float *>(a.mean) + row);
        const float rstd = __ldg(reinterpret_cast<const float *>(a.rstd) + row);
        float s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                float x[4], g[4], h[4], w[4] = { 1.f, 1.f, 1.f, 1.f };
                IX::unpack(xq[i], x);
                IG::unpack(gq[i], g);
                if (a.w) lnf_ld4<K>(a.w, c, w);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    h[e] = (x[e] - mean) * rstd;
                    float wg = g[e] * w[e];
                    s1 += wg;
                    s2 += wg * h[e];
                }
                if (pw) {
                    float4 p = dw4[c], q = db4[c];
                    p.x += g[0] * h[0]; p.y += g[1] * h[1]; p.z += g[2] * h[2]; p.w += g[3] * h[3];
                    q.x += g[0]; q.y += g[1]; q.z += g[2]; q.w += g[3];
                    dw4[c] = p;
                    db4[c] = q;
                }
            }
        }
        if (!a.gx && !a.gr && !pr) continue;
        lnf_warp_sum2(s1, s2);
        s1 *= invD;
        s2 *= invD;
        char *gxr = a.gx ? a.gx + row * a.D * xes : NULL;
        char *grr = a.gr ? a.gr + row * a.D * wfc_dtype_size(a.grdt) : NULL;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                float x[4], g[4], w[4] = { 1.f, 1.f, 1.f, 1.f }, o[4];
                IX::unpack(xq[i], x);
                IG::unpack(gq[i], g);
                if (a.w) lnf_ld4<K>(a.w, c, w);
#pragma unroll
                for (int e = 0; e < 4; e++) o[e] = rstd * (g[e] * w[e] - s1 - (x[e] - mean) * rstd * s2);
                if (a.gs) {   /* add_layer_norm: s's own gradient */
                    float q[4];
                    IX::unpack(qq[i], q);
#pragma unroll
                    for (int e = 0; e < 4; e++) o[e] += q[e];
                }
                if (gxr) lnf_st4<K>(gxr, c, o);
                if (grr) lnf_st4_dt(grr, c, a.grdt, o);
                if (pr) {   /* r_bias's gradient: the column sums of g, before any rounding */
                    float4 q = dr4[c];
                    q.x += o[0]; q.y += o[1]; q.z += o[2]; q.w += o[3];
                    dr4[c] = q;
                }
            }
        }
    }
    if (!pw) return;
    __syncthreads();
    /* the block's partial row: warps added in warp order, each column by one thread */
    const float *acc = reinterpret_cast<const float *>(lnf_acc4);
    for (int64_t j = threadIdx.x; j < a.D; j += blockDim.x) {
        float sw = 0.f, sb = 0.f, sr = 0.f;
#pragma unroll
        for (int w = 0; w < LNF_WARPS; w++) {
            sw += acc[(int64_t)w * na * a.D + j];
            sb += acc[(int64_t)w * na * a.D + a.D + j];
            if (pr) sr += acc[(int64_t)w * na * a.D + 2 * a.D + j];
        }
        pw[(int64_t)blockIdx.x * a.D + j] = sw;
        pb[(int64_t)blockIdx.x * a.D + j] = sb;
        if (pr) pr[(int64_t)blockIdx.x * a.D + j] = sr;
    }
}

typedef void (*lnf_bwd_fn)(ln_args, float *, float *, float *);
template <int K, int G> static lnf_bwd_fn lnf_bwd1_nv(int nv) {
    switch (nv) {
    case 1: return lnf_bwd1_kernel<K, G, 1>;
    case 2: return lnf_bwd1_kernel<K, G, 2>;
    case 4: return lnf_bwd1_kernel<K, G, 4>;
    case 6: return lnf_bwd1_kernel<K, G, 6>;
    default: return lnf_bwd1_kernel<K, G, 8>;
    }
}
/* WEFT_LN_OLD=1: the previous backward (lnf_bwd_kernel), for A/B timing; read once */
WF__ENV_SWITCH(lnf_old, "WEFT_LN_OLD")
/* the kernel for x's dtype and gy's, or NULL where lnf_bwd_kernel serves (WEFT_LN_OLD, or a
 * half x with a gy of another dtype, which no model makes) */
static lnf_bwd_fn lnf_bwd1_pick(int xdt, int gydt, int nv) {
    if (lnf_old()) return NULL;
    if (xdt == WF_F32) return gydt == WF_F32 ? lnf_bwd1_nv<0, 0>(nv) : gydt == WF_BF16 ? lnf_bwd1_nv<0, 1>(nv) : lnf_bwd1_nv<0, 2>(nv);
    if (gydt != xdt) return NULL;
    return xdt == WF_BF16 ? lnf_bwd1_nv<1, 1>(nv) : lnf_bwd1_nv<2, 2>(nv);
}

/* The forward with every DRAM load of the row issued before the first use (the previous
 * forward read add_layer_norm's branch r through lnf_ld4_dt: a run-time
 * dtype branch a 4-element load, the add that follows each load in the same block, so the
 * NV loads of r may wait one after another). The GPT's call: x f32 and r bf16 read (75 MB),
 * s f32 and y bf16 written (75 MB), ~45 us at 3.35 TB/s against the 53 us measured; with 48
 * warps an SM (40 registers: 6 blocks) most of a serialized latency is hidden already, so the
 * gain is the part that was not: x is loaded raw, then r under one dtype branch for the whole
 * row (raw, then unpacked), then x unpacked, so both are in flight together (60 registers, no
 * spill: 4 blocks, 32 warps an SM, 4.5 KB each in flight, ~140 KB). */
template <int R, int NV> __device__ __forceinline__ void lnf_ld_row(const char *base, int lane, int nc, float v[NV][4]) {
    typename lnf_io<R>::raw q[NV];
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < nc) q[i] = lnf_io<R>::load(base, lane + 32 * i);
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < nc) lnf_io<R>::unpack(q[i], v[i]);
}
/* RB: r's bias (a.rb) added to r before the sum. A template flag, not a run-time branch: the
 * branch alone took the GPT's instance (K 0, NV 6) from 60 to 68 registers (ptxas, CUDA 13,
 * sm_90), 4 blocks an SM down to 3, with or without a bias */
template <int K, int NV, bool RB> __device__ __forceinline__ void lnf_fwd1_row(const ln_args &a) {
    typedef lnf_io<K> IX;
    const int64_t row = (int64_t)blockIdx.x * LNF_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, nc = (int)(a.D >> 2), es = K == 0 ? 4 : 2;
    if (row >= a.rows) return;
    typename IX::raw xq[NV];
    float x[NV][4], s = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < nc) xq[i] = IX::load(a.x + row * a.D * es, lane + 32 * i);
    if (a.res) {   /* s = x + r, stored, and normalized as stored */
        float r[NV][4];
        const char *rr = a.res + row * a.D * wfc_dtype_size(a.resdt);
        if (a.resdt == WF_F32) lnf_ld_row<0, NV>(rr, lane, nc, r);
        else if (a.resdt == WF_BF16) lnf_ld_row<1, NV>(rr, lane, nc, r);
        else lnf_ld_row<2, NV>(rr, lane, nc, r);
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                if (RB) {   /* r's bias (D values, from L1 / L2 after the first rows), added before the sum */
                    float q[4];
                    lnf_ld4_dt(a.rb, c, a.rbdt, q);
#pragma unroll
                    for (int e = 0; e < 4; e++) r[i][e] += q[e];
                }
                IX::unpack(xq[i], x[i]);
#pragma unroll
                for (int e = 0; e < 4; e++) x[i][e] = lnf_round<K>(x[i][e] + r[i][e]);
                lnf_st4<K>(a.s + row * a.D * es, c, x[i]);
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < NV; i++)
            if (lane + 32 * i < nc) IX::unpack(xq[i], x[i]);
    }
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < nc) s += (x[i][0] + x[i][1]) + (x[i][2] + x[i][3]);
    const float mean = wfc_warp_reduce(s, wfc_add_f()) / (float)a.D;
    float v = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (lane + 32 * i < nc)
#pragma unroll
            for (int e = 0; e < 4; e++) { float d = x[i][e] - mean; v += d * d; }
    const float rstd = 1.f / sqrtf(wfc_warp_reduce(v, wfc_add_f()) / (float)a.D + (float)a.eps);
    char *yr = a.y + row * a.D * wfc_dtype_size(a.ydt);
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int c = lane + 32 * i;
        if (c < nc) {
            float w[4] = { 1.f, 1.f, 1.f, 1.f }, b[4] = { 0.f, 0.f, 0.f, 0.f }, y[4];
            if (a.w) lnf_ld4<K>(a.w, c, w);
            if (a.b) lnf_ld4<K>(a.b, c, b);
#pragma unroll
            for (int e = 0; e < 4; e++) y[e] = (x[i][e] - mean) * rstd * w[e] + b[e];
            lnf_st4_dt(yr, c, a.ydt, y);
        }
    }
    if (lane == 0) {
        if (a.mean) reinterpret_cast<float *>(a.mean)[row] = mean;
        if (a.rstd) reinterpret_cast<float *>(a.rstd)[row] = rstd;
    }
}
template <int K, int NV> __global__ void __launch_bounds__(LNF_WARPS * 32) lnf_fwd1_kernel(ln_args a) {
    lnf_fwd1_row<K, NV, false>(a);
}
template <int K, int NV> __global__ void __launch_bounds__(LNF_WARPS * 32) lnf_fwd1_rb_kernel(ln_args a) {
    lnf_fwd1_row<K, NV, true>(a);
}

/* gw[j] = sum_c pw[c][j], gb likewise (and grb from pr, when pr): 32 columns per block, the
 * chunks split over 16 thread rows (a thread per column alone makes `chunks` dependent loads in
 * a row: ~30 us) */
__global__ void __launch_bounds__(512) lnf_wb_finish(const float *pw, const float *pb, const float *pr, int64_t chunks,
                                                     int64_t D, char *gw, int gwdt, char *gb, int gbdt, char *grb,
                                                     int grbdt) {
    __shared__ float sw[16][33], sb[16][33], sr[16][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int64_t j = (int64_t)blockIdx.x * 32 + tx;
    float a = 0.f, b = 0.f, q = 0.f;
    if (j < D)
        for (int64_t c = ty; c < chunks; c += 16) {
            a += pw[c * D + j];
            b += pb[c * D + j];
            if (pr) q += pr[c * D + j];
        }
    sw[ty][tx] = a;
    sb[ty][tx] = b;
    sr[ty][tx] = q;
    __syncthreads();
    if (ty == 0 && j < D) {
        for (int r = 1; r < 16; r++) { a += sw[r][tx]; b += sb[r][tx]; q += sr[r][tx]; }
        if (gw) wfc_st<float>(gw + j * wfc_dtype_size(gwdt), gwdt, a);
        if (gb) wfc_st<float>(gb + j * wfc_dtype_size(gbdt), gbdt, b);
        if (grb) wfc_st<float>(grb + j * wfc_dtype_size(grbdt), grbdt, q);
    }
}

/* NV (4-element loads per lane) for the fast path, or 0 when the arguments do not suit it */
static bool lnf_dtype(int dt) { return dt == WF_F32 || dt == WF_BF16 || dt == WF_F16; }
static int lnf_nv(const ln_args &a, int dt) {
    if (!lnf_dtype(dt) || a.D % 4 || a.D > 1024 || a.rows > (int64_t)1 << 40) return 0;
    if ((a.res && !lnf_dtype(a.resdt)) || (a.gr && !lnf_dtype(a.grdt)) || (a.y && !lnf_dtype(a.ydt)) ||
        (a.gy && !lnf_dtype(a.gydt)) || (a.rb && !lnf_dtype(a.rbdt)))
        return 0;
    const void *ptrs[11] = { a.x, a.y, a.gy, a.gx, a.w, a.b, a.s, a.gs, a.res, a.gr, a.rb };
    const int dts[11] = { dt, a.ydt, a.gydt, dt, dt, dt, dt, dt, a.resdt, a.grdt, a.rbdt };
    for (int i = 0; i < 11; i++)
        if ((uintptr_t)ptrs[i] % (dts[i] == WF_F32 ? 16 : 8)) return 0;
    int need = (int)((a.D / 4 + 31) / 32);
    return need <= 1 ? 1 : need <= 2 ? 2 : need <= 4 ? 4 : need <= 6 ? 6 : 8;
}
#define LNF_DISPATCH(KERNEL, dt, nv, grid, smem, st, ...)                                                  \
    do {                                                                                                   \
        int k_ = dt == WF_F32 ? 0 : dt == WF_BF16 ? 1 : 2;                                                 \
        switch (k_ * 16 + nv) {                                                                            \
        case 1: KERNEL<0, 1><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                      \
        case 2: KERNEL<0, 2><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                      \
        case 4: KERNEL<0, 4><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                      \
        case 6: KERNEL<0, 6><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                      \
        case 8: KERNEL<0, 8><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                      \
        case 17: KERNEL<1, 1><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 18: KERNEL<1, 2><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 20: KERNEL<1, 4><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 22: KERNEL<1, 6><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 24: KERNEL<1, 8><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 33: KERNEL<2, 1><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 34: KERNEL<2, 2><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 36: KERNEL<2, 4><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        case 38: KERNEL<2, 6><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        default: KERNEL<2, 8><<<grid, LNF_WARPS * 32, smem, st>>>(__VA_ARGS__); break;                     \
        }                                                                                                  \
    } while (0)

/* s, res and rb: add_layer_norm's (all NULL: the plain layer norm; rb may be NULL) */
static int ln_forward(const wf_cuda_view *y, const wf_cuda_view *s, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                      const wf_cuda_view *x, const wf_cuda_view *res, const wf_cuda_view *rb, const wf_cuda_view *weight,
                      const wf_cuda_view *bias, double eps, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "layer_norm", &st);
    if (rc) return rc;
    ln_args a;
    memset(&a, 0, sizeof a);
    rows_cols(x, &a.rows, &a.D);
    if (!a.rows || !a.D) return 0;
    a.x = (const char *)x->data; a.xdt = x->dtype;
    a.y = (char *)y->data; a.ydt = y->dtype;
    if (weight) { a.w = (const char *)weight->data; a.wdt = weight->dtype; }
    if (bias) { a.b = (const char *)bias->data; a.bdt = bias->dtype; }
    if (mean) { a.mean = (char *)mean->data; a.mdt = mean->dtype; }
    if (rstd) { a.rstd = (char *)rstd->data; a.rdt = rstd->dtype; }
    if (res) { a.res = (const char *)res->data; a.resdt = res->dtype; a.s = (char *)s->data; }
    if (res && rb) { a.rb = (const char *)rb->data; a.rbdt = rb->dtype; }
    a.eps = eps;
    int nv = ((!weight || a.wdt == a.xdt) && (!bias || a.bdt == a.xdt) && (!res || s->dtype == a.xdt) &&
              (!mean || a.mdt == WF_F32) && (!rstd || a.rdt == WF_F32)) ? lnf_nv(a, a.xdt) : 0;
    if (nv) {
        unsigned g = (unsigned)((a.rows + LNF_WARPS - 1) / LNF_WARPS);
        if (a.rb) LNF_DISPATCH(lnf_fwd1_rb_kernel, a.xdt, nv, g, 0, st, a);
        else LNF_DISPATCH(lnf_fwd1_kernel, a.xdt, nv, g, 0, st, a);
        return wfc_check("layer_norm kernel", dev);
    }
    bool block;
    unsigned grid, threads;
    row_launch_dims(a.rows, a.D, &block, &grid, &threads);
    ROW_DISPATCH(ln_fwd_kernel, a.xdt == WF_F64, block, grid, threads, st, a);
    return wfc_check("layer_norm kernel", dev);
}

extern "C" int wf__cuda_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                           const wf_cuda_view *x, const wf_cuda_view *weight,
                                           const wf_cuda_view *bias, double eps, int dev) {
    return ln_forward(y, NULL, mean, rstd, x, NULL, NULL, weight, bias, eps, dev);
}

extern "C" int wf__cuda_add_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *s, const wf_cuda_view *mean,
                                               const wf_cuda_view *rstd, const wf_cuda_view *x, const wf_cuda_view *r,
                                               const wf_cuda_view *r_bias, const wf_cuda_view *weight,
                                               const wf_cuda_view *bias, double eps, int dev) {
    return ln_forward(y, s, mean, rstd, x, r, r_bias, weight, bias, eps, dev);
}

/* chunks of rows for the general backward's column sums (weight, bias, r_bias): about 2048
 * threads an SM over a.D columns, each chunk at least 16 rows */
static int64_t ln_col_chunks(const ln_args &a, int dev) {
    int64_t target = (int64_t)wfc_num_sms(dev) * 2048, chunks = 1;
    if (a.D < target) {
        chunks = (target + a.D - 1) / a.D;
        int64_t maxc = (a.rows + 15) / 16;
        if (chunks > maxc) chunks = maxc;
        if (chunks < 1) chunks = 1;
    }
    return chunks;
}

/* r_bias's gradient grb as the column sums of the g that the backward kernel wrote (a.gx, else
 * a.gr): for the backwards other than lnf_bwd1_kernel, which sums it itself */
static int ln_rbias_colsum(const ln_args &a, const wf_cuda_view *grb, int dev, cudaStream_t st) {
    const char *g = a.gx ? a.gx : a.gr;
    int gdt = a.gx ? a.gxdt : a.grdt;
    bool f64 = gdt == WF_F64 || grb->dtype == WF_F64;
    int64_t chunks = ln_col_chunks(a, dev);
    size_t pbytes = (size_t)(chunks * a.D) * (f64 ? 8 : 4);
    char *p = (char *)wf__cuda_alloc(dev, pbytes);
    if (!p) return WF_ENOMEM;
    char *gb = (char *)grb->data;
    if (f64) {
        ln_colsum_kernel<double><<<wfc_blocks(a.D * chunks, 256, dev), 256, 0, st>>>(g, gdt, a.rows, a.D, (double *)p, chunks);
        ln_wb_finish<double><<<wfc_blocks(a.D, 256, dev), 256, 0, st>>>((double *)p, (double *)p, chunks, a.D, gb,
                                                                         grb->dtype, NULL, WF_F64);
    } else {
        ln_colsum_kernel<float><<<wfc_blocks(a.D * chunks, 256, dev), 256, 0, st>>>(g, gdt, a.rows, a.D, (float *)p, chunks);
        ln_wb_finish<float><<<wfc_blocks(a.D, 256, dev), 256, 0, st>>>((float *)p, (float *)p, chunks, a.D, gb,
                                                                        grb->dtype, NULL, WF_F32);
    }
    int rc = wfc_check("add_layer_norm backward (r_bias) kernel", dev);
    wf__cuda_free(dev, p, pbytes);
    return rc;
}

/* gs, gr, grb: add_layer_norm's (NULL: the plain layer norm); x is then the saved s */
static int ln_backward(const wf_cuda_view *gx, const wf_cuda_view *gr, const wf_cuda_view *gweight,
                       const wf_cuda_view *gbias, const wf_cuda_view *grb, const wf_cuda_view *gy, const wf_cuda_view *gs,
                       const wf_cuda_view *x, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                       const wf_cuda_view *weight, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "layer_norm backward", &st);
    if (rc) return rc;
    ln_args a;
    memset(&a, 0, sizeof a);
    rows_cols(x, &a.rows, &a.D);
    if (!a.rows || !a.D) return 0;
    a.x = (const char *)x->data; a.xdt = x->dtype;
    a.gy = (const char *)gy->data; a.gydt = gy->dtype;
    a.gx = gx ? (char *)gx->data : NULL; a.gxdt = gx ? gx->dtype : WF_F32;
    if (gr) { a.gr = (char *)gr->data; a.grdt = gr->dtype; }
    if (gs) a.gs = (const char *)gs->data;
    if (weight) { a.w = (const char *)weight->data; a.wdt = weight->dtype; }
    a.mean = (char *)mean->data; a.mdt = mean->dtype;
    a.rstd = (char *)rstd->data; a.rdt = rstd->dtype;
    bool f64 = a.xdt == WF_F64;
    /* r_bias's gradient from a column sum of g after the kernel (rb_after): g must then be
     * written somewhere, a scratch gx of x's dtype where neither gx nor gr is wanted */
    bool rb_after = grb != NULL;
    char *scratch = NULL;
    size_t scratch_bytes = (size_t)a.rows * (size_t)a.D * (size_t)wfc_dtype_size(a.xdt);
    int nv = ((!gx || a.gxdt == a.xdt) && (!gs || gs->dtype == a.xdt) && (!weight || a.wdt == a.xdt) && a.mdt == WF_F32 &&
              a.rdt == WF_F32 && (!gweight || gweight->dtype != WF_F64) && (!gbias || gbias->dtype != WF_F64) &&
              (!grb || grb->dtype != WF_F64))
                 ? lnf_nv(a, a.xdt) : 0;
    if (nv) {
        int64_t need = (a.rows + LNF_WARPS - 1) / LNF_WARPS, cap = (int64_t)wfc_num_sms(dev) * 2;
        unsigned g = (unsigned)(need < cap ? need : cap);
        lnf_bwd_fn fn = lnf_bwd1_pick(a.xdt, a.gydt, nv);
        bool wb = gweight || gbias || (grb && fn);   /* the partial rows (r_bias's only in lnf_bwd1_kernel) */
        size_t smem = (gweight || gbias) ? (size_t)a.D * 2 * 4 : 0;
        if (fn) {   /* the resident grid, each warp ceil(rows / its warps) rows */
            size_t smem1 = wb ? (size_t)LNF_WARPS * (grb ? 3 : 2) * (size_t)a.D * 4 : 0;
            int nb = 0;
            cudaError_t e = cudaSuccess;
            if (smem1 > 48 * 1024) e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem1);
            if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, LNF_WARPS * 32, smem1);
            if (e != cudaSuccess) (void)cudaGetLastError();   /* handled here: not the launch's error */
            if (nb < 1) {   /* no room on this GPU (shared memory): the old kernel */
                fn = NULL;
                wb = gweight || gbias;
            } else {
                int64_t warps = (int64_t)nb * wfc_num_sms(dev) * LNF_WARPS, per = (a.rows + warps - 1) / warps;
                warps = (a.rows + per - 1) / per;
                g = (unsigned)((warps + LNF_WARPS - 1) / LNF_WARPS);
                smem = smem1;
                rb_after = false;
            }
        }
        if (rb_after && !a.gx && !a.gr) {
            if (!(scratch = (char *)wf__cuda_alloc(dev, scratch_bytes))) return WF_ENOMEM;
            a.gx = scratch; a.gxdt = a.xdt;
        }
        int na = fn && grb ? 3 : 2;
        size_t pbytes = wb ? (size_t)g * (size_t)a.D * 4 : 0;
        float *pw = NULL;
        if (wb && !(pw = (float *)wf__cuda_alloc(dev, na * pbytes))) {
            if (scratch) wf__cuda_free(dev, scratch, scratch_bytes);
            return WF_ENOMEM;
        }
        float *pb = pw ? pw + (size_t)g * (size_t)a.D : NULL, *pr = pw && na == 3 ? pb + (size_t)g * (size_t)a.D : NULL;
        if (fn) fn<<<g, LNF_WARPS * 32, smem, st>>>(a, pw, pb, pr);
        else LNF_DISPATCH(lnf_bwd_kernel, a.xdt, nv, g, smem, st, a, pw, pb);
        rc = wfc_check("layer_norm backward kernel", dev);
        if (!rc && wb) {
            lnf_wb_finish<<<(unsigned)((a.D + 31) / 32), 512, 0, st>>>(
                pw, pb, pr, (int64_t)g, a.D, gweight ? (char *)gweight->data : NULL, gweight ? gweight->dtype : WF_F32,
                gbias ? (char *)gbias->data : NULL, gbias ? gbias->dtype : WF_F32, pr ? (char *)grb->data : NULL,
                pr ? grb->dtype : WF_F32);
            rc = wfc_check("layer_norm backward (weight, bias) kernel", dev);
        }
        if (pw) wf__cuda_free(dev, pw, na * pbytes);
        if (!rc && rb_after) rc = ln_rbias_colsum(a, grb, dev, st);
        if (scratch) wf__cuda_free(dev, scratch, scratch_bytes);
        return rc;
    }
    if (rb_after && !a.gx && !a.gr) {
        if (!(scratch = (char *)wf__cuda_alloc(dev, scratch_bytes))) return WF_ENOMEM;
        a.gx = scratch; a.gxdt = a.xdt;
    }
    if (a.gx || a.gr) {
        bool block;
        unsigned grid, threads;
        row_launch_dims(a.rows, a.D, &block, &grid, &threads);
        ROW_DISPATCH(ln_bwd_kernel, f64, block, grid, threads, st, a);
        if ((rc = wfc_check("layer_norm backward kernel", dev))) {
            if (scratch) wf__cuda_free(dev, scratch, scratch_bytes);
            return rc;
        }
    }
    if (rb_after) {
        rc = ln_rbias_colsum(a, grb, dev, st);
        if (scratch) wf__cuda_free(dev, scratch, scratch_bytes);
        if (rc) return rc;
    }
    if (!gweight && !gbias) return 0;
    int64_t chunks = ln_col_chunks(a, dev);
    size_t es = f64 ? 8 : 4, pbytes = (size_t)(chunks * a.D) * es;
    char *pw = (char *)wf__cuda_alloc(dev, 2 * pbytes);
    if (!pw) return WF_ENOMEM;
    char *pb = pw + pbytes;
    char *gw = gweight ? (char *)gweight->data : NULL, *gb = gbias ? (char *)gbias->data : NULL;
    int gwdt = gweight ? gweight->dtype : WF_F32, gbdt = gbias ? gbias->dtype : WF_F32;
    if (f64) {
        ln_wb_kernel<double><<<wfc_blocks(a.D * chunks, 256, dev), 256, 0, st>>>(a, (double *)pw, (double *)pb, chunks);
        ln_wb_finish<double><<<wfc_blocks(a.D, 256, dev), 256, 0, st>>>((double *)pw, (double *)pb, chunks, a.D, gw,
                                                                         gwdt, gb, gbdt);
    } else {
        ln_wb_kernel<float><<<wfc_blocks(a.D * chunks, 256, dev), 256, 0, st>>>(a, (float *)pw, (float *)pb, chunks);
        ln_wb_finish<float><<<wfc_blocks(a.D, 256, dev), 256, 0, st>>>((float *)pw, (float *)pb, chunks, a.D, gw,
                                                                        gwdt, gb, gbdt);
    }
    rc = wfc_check("layer_norm backward (weight, bias) kernel", dev);
    wf__cuda_free(dev, pw, 2 * pbytes);
    return rc;
}

extern "C" int wf__cuda_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gweight,
                                            const wf_cuda_view *gbias, const wf_cuda_view *gy,
                                            const wf_cuda_view *x, const wf_cuda_view *mean,
                                            const wf_cuda_view *rstd, const wf_cuda_view *weight, int dev) {
    return ln_backward(gx, NULL, gweight, gbias, NULL, gy, NULL, x, mean, rstd, weight, dev);
}

extern "C" int wf__cuda_add_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gr,
                                                const wf_cuda_view *gweight, const wf_cuda_view *gbias,
                                                const wf_cuda_view *grbias, const wf_cuda_view *gy,
                                                const wf_cuda_view *gs, const wf_cuda_view *s,
                                                const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                                const wf_cuda_view *weight, int dev) {
    return ln_backward(gx, gr, gweight, gbias, grbias, gy, gs, s, mean, rstd, weight, dev);
}
