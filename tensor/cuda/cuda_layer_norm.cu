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
 * kernel is tensor/cpu/layer_norm.c. */
#include "cuda_rows.cuh"

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
        int rs = wfc_dtype_size(a.resdt);
        const char *x0 = a.x + row * a.D * xs, *r0 = a.res + row * a.D * rs;
        char *s0 = a.s + row * a.D * xs;
        for (int64_t j = R::tid(); j < a.D; j += R::nth()) {
            wfc_st<T>(s0 + j * xs, a.xdt, wfc_ld<T>(x0 + j * xs, a.xdt) + wfc_ld<T>(r0 + j * rs, a.resdt));
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

/* Fast layer norm for the common shapes: x, gx, weight, bias (and add_layer_norm's s, gs) of
 * one dtype, the kind K (f32, bf16 or f16); y / gy, r / gr each f32, bf16 or f16 of their own,
 * chosen at run time (lnf_ld4_dt); D a multiple of 4 up to 1024; each tensor 16-byte (f32) /
 * 8-byte (half) aligned; mean and rstd f32. One warp per row holds the row in registers (4 elements per load, NV loads per
 * lane), so the forward reads x once and the backward reads x and gy once. The backward also
 * accumulates the weight/bias gradients: each warp keeps its columns' partial sums over the
 * rows it visits in registers, the block adds its warps' sums in shared memory and writes one
 * partial row per block; ln_wb_finish adds those rows. */
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

template <int K, int NV> __global__ void __launch_bounds__(LNF_WARPS * 32) lnf_fwd_kernel(ln_args a) {
    const int64_t row = (int64_t)blockIdx.x * LNF_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, nc = (int)(a.D >> 2), es = K == 0 ? 4 : 2;
    if (row >= a.rows) return;
    const char *xr = a.x + row * a.D * es;
    float x[NV][4], s = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int c = lane + 32 * i;
        if (c < nc) {
            lnf_ld4<K>(xr, c, x[i]);
            if (a.res) {   /* s = x + r, stored, and normalized as stored */
                float r[4];
                lnf_ld4_dt(a.res + row * a.D * wfc_dtype_size(a.resdt), c, a.resdt, r);
#pragma unroll
                for (int e = 0; e < 4; e++) x[i][e] = lnf_round<K>(x[i][e] + r[e]);
                lnf_st4<K>(a.s + row * a.D * es, c, x[i]);
            }
            s += (x[i][0] + x[i][1]) + (x[i][2] + x[i][3]);
        } else x[i][0] = x[i][1] = x[i][2] = x[i][3] = 0.f;
    }
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

/* gw[j] = sum_c pw[c][j], gb likewise: 32 columns per block, the chunks split over 16 thread
 * rows (a thread per column alone makes `chunks` dependent loads in a row: ~30 us) */
__global__ void __launch_bounds__(512) lnf_wb_finish(const float *pw, const float *pb, int64_t chunks, int64_t D,
                                                     char *gw, int gwdt, char *gb, int gbdt) {
    __shared__ float sw[16][33], sb[16][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const int64_t j = (int64_t)blockIdx.x * 32 + tx;
    float a = 0.f, b = 0.f;
    if (j < D)
        for (int64_t c = ty; c < chunks; c += 16) { a += pw[c * D + j]; b += pb[c * D + j]; }
    sw[ty][tx] = a;
    sb[ty][tx] = b;
    __syncthreads();
    if (ty == 0 && j < D) {
        for (int r = 1; r < 16; r++) { a += sw[r][tx]; b += sb[r][tx]; }
        if (gw) wfc_st<float>(gw + j * wfc_dtype_size(gwdt), gwdt, a);
        if (gb) wfc_st<float>(gb + j * wfc_dtype_size(gbdt), gbdt, b);
    }
}

/* NV (4-element loads per lane) for the fast path, or 0 when the arguments do not suit it */
static bool lnf_dtype(int dt) { return dt == WF_F32 || dt == WF_BF16 || dt == WF_F16; }
static int lnf_nv(const ln_args &a, int dt) {
    if (!lnf_dtype(dt) || a.D % 4 || a.D > 1024 || a.rows > (int64_t)1 << 40) return 0;
    if ((a.res && !lnf_dtype(a.resdt)) || (a.gr && !lnf_dtype(a.grdt)) || (a.y && !lnf_dtype(a.ydt)) ||
        (a.gy && !lnf_dtype(a.gydt)))
        return 0;
    const void *ptrs[10] = { a.x, a.y, a.gy, a.gx, a.w, a.b, a.s, a.gs, a.res, a.gr };
    const int dts[10] = { dt, a.ydt, a.gydt, dt, dt, dt, dt, dt, a.resdt, a.grdt };
    for (int i = 0; i < 10; i++)
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

/* s and res: add_layer_norm's (both NULL: the plain layer norm) */
static int ln_forward(const wf_cuda_view *y, const wf_cuda_view *s, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                      const wf_cuda_view *x, const wf_cuda_view *res, const wf_cuda_view *weight,
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
    a.eps = eps;
    int nv = ((!weight || a.wdt == a.xdt) && (!bias || a.bdt == a.xdt) && (!res || s->dtype == a.xdt) &&
              (!mean || a.mdt == WF_F32) && (!rstd || a.rdt == WF_F32)) ? lnf_nv(a, a.xdt) : 0;
    if (nv) {
        unsigned g = (unsigned)((a.rows + LNF_WARPS - 1) / LNF_WARPS);
        LNF_DISPATCH(lnf_fwd_kernel, a.xdt, nv, g, 0, st, a);
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
    return ln_forward(y, NULL, mean, rstd, x, NULL, weight, bias, eps, dev);
}

extern "C" int wf__cuda_add_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *s, const wf_cuda_view *mean,
                                               const wf_cuda_view *rstd, const wf_cuda_view *x, const wf_cuda_view *r,
                                               const wf_cuda_view *weight, const wf_cuda_view *bias, double eps,
                                               int dev) {
    return ln_forward(y, s, mean, rstd, x, r, weight, bias, eps, dev);
}

/* gs, gr: add_layer_norm's (NULL: the plain layer norm); x is then the saved s */
static int ln_backward(const wf_cuda_view *gx, const wf_cuda_view *gr, const wf_cuda_view *gweight,
                       const wf_cuda_view *gbias, const wf_cuda_view *gy, const wf_cuda_view *gs, const wf_cuda_view *x,
                       const wf_cuda_view *mean, const wf_cuda_view *rstd, const wf_cuda_view *weight, int dev) {
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
    int nv = ((!gx || a.gxdt == a.xdt) && (!gs || gs->dtype == a.xdt) && (!weight || a.wdt == a.xdt) && a.mdt == WF_F32 &&
              a.rdt == WF_F32 && (!gweight || gweight->dtype != WF_F64) && (!gbias || gbias->dtype != WF_F64))
                 ? lnf_nv(a, a.xdt) : 0;
    if (nv) {
        int64_t need = (a.rows + LNF_WARPS - 1) / LNF_WARPS, cap = (int64_t)wfc_num_sms(dev) * 2;
        unsigned g = (unsigned)(need < cap ? need : cap);
        bool wb = gweight || gbias;
        size_t pbytes = wb ? (size_t)g * (size_t)a.D * 4 : 0;
        float *pw = NULL;
        if (wb && !(pw = (float *)wf__cuda_alloc(dev, 2 * pbytes))) return WF_ENOMEM;
        float *pb = pw ? pw + (size_t)g * (size_t)a.D : NULL;
        size_t smem = wb ? (size_t)a.D * 2 * 4 : 0;
        LNF_DISPATCH(lnf_bwd_kernel, a.xdt, nv, g, smem, st, a, pw, pb);
        rc = wfc_check("layer_norm backward kernel", dev);
        if (!rc && wb) {
            lnf_wb_finish<<<(unsigned)((a.D + 31) / 32), 512, 0, st>>>(
                pw, pb, (int64_t)g, a.D, gweight ? (char *)gweight->data : NULL, gweight ? gweight->dtype : WF_F32,
                gbias ? (char *)gbias->data : NULL, gbias ? gbias->dtype : WF_F32);
            rc = wfc_check("layer_norm backward (weight, bias) kernel", dev);
        }
        if (pw) wf__cuda_free(dev, pw, 2 * pbytes);
        return rc;
    }
    if (gx || gr) {
        bool block;
        unsigned grid, threads;
        row_launch_dims(a.rows, a.D, &block, &grid, &threads);
        ROW_DISPATCH(ln_bwd_kernel, f64, block, grid, threads, st, a);
        if ((rc = wfc_check("layer_norm backward kernel", dev))) return rc;
    }
    if (!gweight && !gbias) return 0;
    int64_t target = (int64_t)wfc_num_sms(dev) * 2048, chunks = 1;
    if (a.D < target) {
        chunks = (target + a.D - 1) / a.D;
        int64_t maxc = (a.rows + 15) / 16;
        if (chunks > maxc) chunks = maxc;
        if (chunks < 1) chunks = 1;
    }
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
    return ln_backward(gx, NULL, gweight, gbias, gy, NULL, x, mean, rstd, weight, dev);
}

extern "C" int wf__cuda_add_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gr,
                                                const wf_cuda_view *gweight, const wf_cuda_view *gbias,
                                                const wf_cuda_view *gy, const wf_cuda_view *gs, const wf_cuda_view *s,
                                                const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                                const wf_cuda_view *weight, int dev) {
    return ln_backward(gx, gr, gweight, gbias, gy, gs, s, mean, rstd, weight, dev);
}
