/* tensor/cuda/cuda_reduce.cu: reductions over a dim mask and arg max/min on the GPU, the CUDA
 * twin of tensor/cpu/reduce.c (softmax and cross-entropy: cuda_softmax.cu; layer norm:
 * cuda_layer_norm.cu).
 *
 * Reduction plan (host side): the kept dims and the reduced dims of x are each coalesced;
 * M outputs, R elements per output.
 *   row layout (the reduced elements are the closer ones in memory): one warp per output
 *     when R < 1024, else one 256-thread block per output;
 *   column layout (neighbouring outputs are neighbours in memory, e.g. summing over the
 *     batch dim): a warp reads 32 neighbours at a time; long reductions by tiles of 32
 *     outputs x 8 row lanes (reduce_cols_tile), short ones one thread per output.
 * When that leaves the GPU idle (few outputs, long reductions), R is split into chunks over
 * more blocks/threads that write partial results, and a second kernel combines them. */
#include "cuda_common.cuh"

#include <string.h>

#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- reduce */

struct red_geo {
    int kn, rn;
    int64_t ksh[WF_CUDA_MAX_DIMS], kxs[WF_CUDA_MAX_DIMS], kys[WF_CUDA_MAX_DIMS];
    int64_t rsh[WF_CUDA_MAX_DIMS], rxs[WF_CUDA_MAX_DIMS];
    int64_t M, R;
    const char *x;
    char *y;
    int xdt, ydt, op, kind; /* kind: 0 add, 1 max, 2 min */
    double p;
    int vec4;               /* reduce_rows_block: f32 rows of unit stride, 16-byte aligned starts */
};

__device__ __forceinline__ void kept_off(const red_geo &g, int64_t o, int64_t &ox, int64_t &oy) {
    ox = 0; oy = 0;
    for (int d = g.kn - 1; d >= 0; d--) {
        int64_t s = g.ksh[d], q = o / s, r = o - q * s;
        o = q;
        ox += r * g.kxs[d];
        oy += r * g.kys[d];
    }
}
__device__ __forceinline__ int64_t red_off(const red_geo &g, int64_t r) {
    if (g.rn == 1) return r * g.rxs[0];
    int64_t off = 0;
    for (int d = g.rn - 1; d >= 0; d--) {
        int64_t s = g.rsh[d], q = r / s;
        off += (r - q * s) * g.rxs[d];
        r = q;
    }
    return off;
}

template <class A> __device__ __forceinline__ A r_ident(int op) {
    if (op == WFC_R_MAX) return wfc_is_int<A>::value ? (A)INT64_MIN : (A)-INFINITY;
    if (op == WFC_R_MIN) return wfc_is_int<A>::value ? (A)INT64_MAX : (A)INFINITY;
    return (A)0;
}
template <class A> __device__ __forceinline__ A r_map(int op, A v, double p) {
    switch (op) {
    case WFC_R_SUMSQ: return v * v;
    case WFC_R_ABSSUM: case WFC_R_ABSMAX: return v < (A)0 ? -v : v;
    case WFC_R_PNORM:
        if (p == 0) return (A)(v != (A)0);
        if (p == 1) return v < (A)0 ? -v : v;
        if (p == 2) return v * v;
        return (A)pow(fabs((double)v), p);
    default: return v;
    }
}
struct r_comb {
    int kind;
    template <class A> __device__ __forceinline__ A operator()(A a, A b) const {
        if (kind == 0) return a + b;
        if (kind == 1) return (a > b || a != a) ? a : b;
        return (a < b || a != a) ? a : b;
    }
};

template <class A> __global__ void reduce_rows_block(red_geo g, A *partial, int64_t chunks) {
    int64_t o = blockIdx.x, c = blockIdx.y;
    int64_t len = (g.R + chunks - 1) / chunks;
    if (g.vec4) len = (len + 3) & ~(int64_t)3;
    int64_t r0 = c * len, r1 = r0 + len < g.R ? r0 + len : g.R;
    int64_t ox, oy;
    kept_off(g, o, ox, oy);
    r_comb f = { g.kind };
    A ident = r_ident<A>(g.op), acc = ident;
    const char *xb = g.x + ox;
    if (g.vec4) {   /* contiguous f32 rows: 16-byte loads (len is a multiple of 4 then, see run_reduce) */
        int64_t r = r0 + 4 * (int64_t)threadIdx.x;
        for (; r + 3 < r1; r += 4 * (int64_t)blockDim.x) {
            float4 v = __ldg(reinterpret_cast<const float4 *>(xb + r * 4));
            acc = f(acc, r_map<A>(g.op, (A)v.x, g.p));
            acc = f(acc, r_map<A>(g.op, (A)v.y, g.p));
            acc = f(acc, r_map<A>(g.op, (A)v.z, g.p));
            acc = f(acc, r_map<A>(g.op, (A)v.w, g.p));
        }
        for (; r < r1; r++) acc = f(acc, r_map<A>(g.op, (A)reinterpret_cast<const float *>(xb)[r], g.p));
    } else {
        for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x)
            acc = f(acc, r_map<A>(g.op, wfc_ld<A>(xb + red_off(g, r), g.xdt), g.p));
    }
    acc = wfc_block_reduce(acc, f, ident);
    if (threadIdx.x == 0) {
        if (chunks == 1) wfc_st<A>(g.y + oy, g.ydt, acc);
        else partial[c * g.M + o] = acc;
    }
}

template <class A> __global__ void reduce_rows_warp(red_geo g) {
    int64_t o = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= g.M) return;
    int lane = threadIdx.x & 31;
    int64_t ox, oy;
    kept_off(g, o, ox, oy);
    r_comb f = { g.kind };
    A acc = r_ident<A>(g.op);
    const char *xb = g.x + ox;
    for (int64_t r = lane; r < g.R; r += 32) acc = f(acc, r_map<A>(g.op, wfc_ld<A>(xb + red_off(g, r), g.xdt), g.p));
    acc = wfc_warp_reduce(acc, f);
    if (lane == 0) wfc_st<A>(g.y + oy, g.ydt, acc);
}

template <class A> __global__ void reduce_cols(red_geo g, A *partial, int64_t chunks) {
    int64_t total = g.M * chunks;
    r_comb f = { g.kind };
    GRID_LOOP(t, total) {
        int64_t o = t % g.M, c = t / g.M;
        int64_t len = (g.R + chunks - 1) / chunks, r0 = c * len, r1 = r0 + len < g.R ? r0 + len : g.R;
        int64_t ox, oy;
        kept_off(g, o, ox, oy);
        A acc = r_ident<A>(g.op);
        const char *xb = g.x + ox;
        for (int64_t r = r0; r < r1; r++) acc = f(acc, r_map<A>(g.op, wfc_ld<A>(xb + red_off(g, r), g.xdt), g.p));
        if (chunks == 1) wfc_st<A>(g.y + oy, g.ydt, acc);
        else partial[c * g.M + o] = acc;
    }
}

/* The column layout for long reductions: a block of 32 x CT_LANES threads takes 32 neighbouring
 * outputs over one chunk of rows, its CT_LANES row lanes striding the chunk, and adds the
 * lanes in shared memory in lane order (deterministic). A thread per output alone (reduce_cols)
 * made each thread walk its rows one dependent load after another: summing a bf16
 * [16384, 3072] over dim 0, the fp8 Linear's bias gradient, took ~160 us on the H100 against
 * ~30 for its 100 MB. */
#define CT_LANES 8
template <class A> __global__ void __launch_bounds__(32 * CT_LANES) reduce_cols_tile(red_geo g, A *partial, int64_t chunks) {
    __shared__ A sm[CT_LANES][32];
    int64_t o = (int64_t)blockIdx.x * 32 + threadIdx.x, c = blockIdx.y;
    int64_t len = (g.R + chunks - 1) / chunks, r0 = c * len, r1 = r0 + len < g.R ? r0 + len : g.R;
    r_comb f = { g.kind };
    A acc = r_ident<A>(g.op);
    int64_t ox = 0, oy = 0;
    if (o < g.M) {
        kept_off(g, o, ox, oy);
        const char *xb = g.x + ox;
#pragma unroll 4
        for (int64_t r = r0 + threadIdx.y; r < r1; r += CT_LANES)
            acc = f(acc, r_map<A>(g.op, wfc_ld<A>(xb + red_off(g, r), g.xdt), g.p));
    }
    sm[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y != 0 || o >= g.M) return;
#pragma unroll
    for (int l = 1; l < CT_LANES; l++) acc = f(acc, sm[l][threadIdx.x]);
    if (chunks == 1) wfc_st<A>(g.y + oy, g.ydt, acc);
    else partial[c * g.M + o] = acc;
}

/* few outputs over many chunks: a block per output (a thread per output reads the chunks one
 * after another, ~25 us for 528 of them) */
template <class A> __global__ void reduce_finish_block(red_geo g, const A *partial, int64_t chunks) {
    r_comb f = { g.kind };
    int64_t o = blockIdx.x;
    A acc = r_ident<A>(g.op);
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) acc = f(acc, partial[c * g.M + o]);
    acc = wfc_block_reduce(acc, f, r_ident<A>(g.op));
    if (threadIdx.x == 0) {
        int64_t ox, oy;
        kept_off(g, o, ox, oy);
        wfc_st<A>(g.y + oy, g.ydt, acc);
    }
}

template <class A> __global__ void reduce_finish(red_geo g, const A *partial, int64_t chunks) {
    r_comb f = { g.kind };
    GRID_LOOP(o, g.M) {
        A acc = partial[o];
        for (int64_t c = 1; c < chunks; c++) acc = f(acc, partial[c * g.M + o]);
        int64_t ox, oy;
        kept_off(g, o, ox, oy);
        wfc_st<A>(g.y + oy, g.ydt, acc);
    }
}

template <class A> static int run_reduce(red_geo &g, int dev, cudaStream_t st) {
    int sms = wfc_num_sms(dev);
    bool row = g.rn > 0 && (g.kn == 0 || g.rxs[g.rn - 1] < g.kxs[g.kn - 1]);
    if (g.R == 0) { /* empty reduction: the identity */
        row = false;
    }
    /* the column layout's long reductions go by tiles (reduce_cols_tile); short ones (R < 64,
     * where most row lanes would idle) and grids too wide for y keep a thread per output */
    bool tile = !row && g.R >= 64 && (g.M + 31) / 32 <= 2147483647LL;
    int64_t chunks = 1;
    A *partial = NULL;
    size_t pbytes = 0;
    if (row && g.R < 1024) {
        int64_t blocks = (g.M + 7) / 8;
        reduce_rows_warp<A><<<(unsigned)blocks, 256, 0, st>>>(g);
        return wfc_check("reduce kernel", dev);
    }
    if (row) {
        int64_t target = 4 * (int64_t)sms;
        if (g.M < target) {
            chunks = (target + g.M - 1) / g.M;
            int64_t maxc = (g.R + 2047) / 2048;
            if (chunks > maxc) chunks = maxc;
            if (chunks > 65535) chunks = 65535;
            if (chunks < 1) chunks = 1;
        }
    } else if (tile) {
        /* 8 blocks an SM, each row lane at least 4 rows */
        int64_t tiles = (g.M + 31) / 32, target = (int64_t)sms * 8;
        if (tiles < target) {
            chunks = (target + tiles - 1) / tiles;
            int64_t maxc = (g.R + 4 * CT_LANES - 1) / (4 * CT_LANES);
            if (chunks > maxc) chunks = maxc;
            if (chunks > 65535) chunks = 65535;
            if (chunks < 1) chunks = 1;
        }
    } else {
        int64_t target = (int64_t)sms * 2048;
        if (g.M < target && g.R > 64) {
            chunks = (target + g.M - 1) / g.M;
            int64_t maxc = (g.R + 31) / 32;
            if (chunks > maxc) chunks = maxc;
            if (chunks < 1) chunks = 1;
        }
    }
    if (chunks > 1) {
        pbytes = (size_t)(chunks * g.M) * sizeof(A);
        partial = (A *)wf__cuda_alloc(dev, pbytes);
        if (!partial) return WF_ENOMEM;
    }
    if (row) {
        dim3 grid((unsigned)g.M, (unsigned)chunks);
        /* 16-byte loads: f32, unit stride along the reduced dim, every row start aligned */
        g.vec4 = g.xdt == WF_F32 && g.rn == 1 && g.rxs[0] == 4 && (uintptr_t)g.x % 16 == 0;
        for (int d = 0; d < g.kn && g.vec4; d++) g.vec4 = g.kxs[d] % 16 == 0;
        reduce_rows_block<A><<<grid, 256, 0, st>>>(g, partial, chunks);
    } else if (tile) {
        dim3 grid((unsigned)((g.M + 31) / 32), (unsigned)chunks), block(32, CT_LANES);
        reduce_cols_tile<A><<<grid, block, 0, st>>>(g, partial, chunks);
    } else {
        reduce_cols<A><<<wfc_blocks(g.M * chunks, 256, dev), 256, 0, st>>>(g, partial, chunks);
    }
    int rc = wfc_check("reduce kernel", dev);
    if (!rc && chunks > 1) {
        if (g.M <= 256 && chunks >= 64) reduce_finish_block<A><<<(unsigned)g.M, 256, 0, st>>>(g, partial, chunks);
        else reduce_finish<A><<<wfc_blocks(g.M, 256, dev), 256, 0, st>>>(g, partial, chunks);
        rc = wfc_check("reduce (finish) kernel", dev);
    }
    if (partial) wf__cuda_free(dev, partial, pbytes); /* stream-ordered: safe to reuse at once */
    return rc;
}

extern "C" int wf__cuda_reduce(int op, const wf_cuda_view *y, const wf_cuda_view *x, uint32_t mask, double p, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "reduce", &st);
    if (rc) return rc;
    red_geo g;
    memset(&g, 0, sizeof g);
    int xes = wfc_dtype_size(x->dtype), yes = wfc_dtype_size(y->dtype);
    int64_t ksh[8], kxs[8], kys[8], rsh[8], rxs[8];
    int kn = 0, rn = 0;
    g.M = 1; g.R = 1;
    for (int i = 0; i < x->ndim; i++) {
        int64_t s = x->shape[i];
        bool red = (mask >> i) & 1u;
        if (red) g.R *= s; else g.M *= s;
        if (s == 1) continue;
        if (red) { rsh[rn] = s; rxs[rn] = x->stride[i] * xes; rn++; }
        else { ksh[kn] = s; kxs[kn] = x->stride[i] * xes; kys[kn] = y->stride[i] * yes; kn++; }
    }
    if (g.M == 0) return 0;
    /* coalesce each group (outer -> inner order kept) */
    g.kn = 0;
    for (int i = 0; i < kn; i++) {
        if (g.kn > 0 && kxs[i] * ksh[i] == g.kxs[g.kn - 1] && kys[i] * ksh[i] == g.kys[g.kn - 1]) {
            g.ksh[g.kn - 1] *= ksh[i];
            g.kxs[g.kn - 1] = kxs[i];
            g.kys[g.kn - 1] = kys[i];
            continue;
        }
        g.ksh[g.kn] = ksh[i]; g.kxs[g.kn] = kxs[i]; g.kys[g.kn] = kys[i]; g.kn++;
    }
    g.rn = 0;
    for (int i = 0; i < rn; i++) {
        if (g.rn > 0 && rxs[i] * rsh[i] == g.rxs[g.rn - 1]) {
            g.rsh[g.rn - 1] *= rsh[i];
            g.rxs[g.rn - 1] = rxs[i];
            continue;
        }
        g.rsh[g.rn] = rsh[i]; g.rxs[g.rn] = rxs[i]; g.rn++;
    }
    if (g.R == 0) g.rn = 0;
    g.x = (const char *)x->data;
    g.y = (char *)y->data;
    g.xdt = x->dtype;
    g.ydt = y->dtype;
    g.op = op;
    g.p = p;
    g.kind = (op == WFC_R_MAX || op == WFC_R_ABSMAX) ? 1 : op == WFC_R_MIN ? 2 : 0;
    /* a sum over the rows of a [R, M] matrix with contiguous rows (a bias gradient, the fp8
     * Linear's among them) through cuda_gemm.cu's 16-byte column sums: the fp8 GPT-2 step's 48
     * of them took 5.8 ms as reduce_cols_tile, which loads one element a thread. Opt-in,
     * WEFT_REDUCE_COLSUM=1 (read once), until a GPU run has checked this routing (the kernel
     * itself is Linear's checked WEFT_BGRAD=colsum path; the harness's "sum(dim 0, long)"
     * rows reach it). A bf16 / f16 input's sum comes here with an f32 output (wf__sum_raw's
     * accumulator dtype): until the ninth session the routing asked for equal dtypes, so the
     * fp8 step's bf16 bias gradients never reached it (42.63 ms with and without) */
    static int colsum_on = -1;
    if (wf__env_flag("WEFT_REDUCE_COLSUM", &colsum_on) && op == WFC_R_SUM && g.kn == 1 && g.rn == 1 && g.R > 0 &&
        (x->dtype == y->dtype || y->dtype == WF_F32) && g.kxs[0] == xes && g.kys[0] == yes && g.rxs[0] % xes == 0 &&
        g.rxs[0] >= g.M * xes) {
        rc = wfc_colsum(x->dtype, g.x, g.R, g.M, g.rxs[0] / xes, g.y, y->dtype, dev, st);
        if (rc != 1) return rc;
    }
    if (x->dtype == WF_F64 || (op == WFC_R_PNORM && !wfc_is_float(x->dtype))) return run_reduce<double>(g, dev, st);
    if (wfc_is_float(x->dtype)) return run_reduce<float>(g, dev, st);
    return run_reduce<int64_t>(g, dev, st);
}

/* ---------------------------------------------------------------- arg max / min */

template <class A> __device__ __forceinline__ bool arg_better(bool is_max, A a, A b) {
    /* a strictly better than b; NaN beats every number */
    if (a != a) return b == b;
    if (b != b) return false;
    return is_max ? a > b : a < b;
}

template <class A> __global__ void arg_reduce_kernel(red_geo g, bool is_max) {
    int64_t o = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= g.M) return;
    int lane = threadIdx.x & 31;
    int64_t ox, oy;
    kept_off(g, o, ox, oy);
    const char *xb = g.x + ox;
    int64_t stride = g.rn ? g.rxs[0] : 0;
    A best = (A)0;
    int64_t bi = -1;
    for (int64_t r = lane; r < g.R; r += 32) {
        A v = wfc_ld<A>(xb + r * stride, g.xdt);
        if (bi < 0 || arg_better(is_max, v, best)) { best = v; bi = r; }
    }
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) {
        A ov = __shfl_xor_sync(0xffffffffu, best, s);
        int64_t oi = __shfl_xor_sync(0xffffffffu, bi, s);
        if (oi < 0) continue;
        bool take = bi < 0 || arg_better(is_max, ov, best) ||
                    (!arg_better(is_max, best, ov) && oi < bi); /* equal (or both NaN): first index */
        if (take) { best = ov; bi = oi; }
    }
    if (lane == 0) *(int64_t *)(g.y + oy) = bi < 0 ? 0 : bi;
}

extern "C" int wf__cuda_arg_reduce(int is_max, const wf_cuda_view *y, const wf_cuda_view *x, int dim, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "arg_reduce", &st);
    if (rc) return rc;
    red_geo g;
    memset(&g, 0, sizeof g);
    int xes = wfc_dtype_size(x->dtype), yes = wfc_dtype_size(y->dtype);
    g.M = 1;
    g.R = x->ndim ? x->shape[dim] : 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i == dim) continue;
        g.M *= x->shape[i];
        if (x->shape[i] == 1) continue;
        g.ksh[g.kn] = x->shape[i]; g.kxs[g.kn] = x->stride[i] * xes; g.kys[g.kn] = y->stride[i] * yes; g.kn++;
    }
    if (g.M == 0 || g.R == 0) return 0;
    g.rn = 1;
    g.rsh[0] = g.R;
    g.rxs[0] = x->ndim ? x->stride[dim] * xes : 0;
    g.x = (const char *)x->data;
    g.y = (char *)y->data;
    g.xdt = x->dtype;
    g.ydt = y->dtype;
    unsigned blocks = (unsigned)((g.M + 7) / 8);
    if (x->dtype == WF_F64) arg_reduce_kernel<double><<<blocks, 256, 0, st>>>(g, is_max != 0);
    else if (wfc_is_float(x->dtype)) arg_reduce_kernel<float><<<blocks, 256, 0, st>>>(g, is_max != 0);
    else arg_reduce_kernel<int64_t><<<blocks, 256, 0, st>>>(g, is_max != 0);
    return wfc_check("arg_reduce kernel", dev);
}
