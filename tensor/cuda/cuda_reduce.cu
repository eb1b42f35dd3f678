/* tensor/cuda/cuda_reduce.cu: reductions over a dim mask, arg max/min, and layer norm (a row
 * kernel planned by cuda_rows.cuh; softmax and cross-entropy: cuda_softmax.cu).
 *
 * Reduction plan (host side): the kept dims and the reduced dims of x are each coalesced;
 * M outputs, R elements per output.
 *   row layout (the reduced elements are the closer ones in memory): one warp per output
 *     when R < 1024, else one 256-thread block per output;
 *   column layout (neighbouring outputs are neighbours in memory, e.g. summing over the
 *     batch dim): one thread per output, so a warp reads 32 neighbours at a time.
 * When that leaves the GPU idle (few outputs, long reductions), R is split into chunks over
 * more blocks/threads that write partial results, and a second kernel combines them. */
#include "cuda_rows.cuh"

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

/* ---------------------------------------------------------------- layer norm */

struct ln_args {
    const char *x; int xdt;
    char *y; int ydt;
    const char *w; int wdt; /* may be NULL */
    const char *b; int bdt; /* may be NULL */
    char *mean; int mdt;    /* may be NULL */
    char *rstd; int rdt;    /* may be NULL */
    const char *gy; int gydt;
    char *gx; int gxdt;
    int64_t rows, D;
    double eps;
};

template <class T, bool BLOCK> __global__ void ln_fwd_kernel(ln_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt), ys = wfc_dtype_size(a.ydt), ws = wfc_dtype_size(a.wdt), bs = wfc_dtype_size(a.bdt);
    const char *xr = a.x + row * a.D * xs;
    char *yr = a.y + row * a.D * ys;
    T s = (T)0;
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
    char *gxr = a.gx + row * a.D * gxs;
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
        T h = (wfc_ld<T>(xr + j * xs, a.xdt) - mean) * rstd;
        wfc_st<T>(gxr + j * gxs, a.gxdt, rstd * (wg - s1 - h * s2));
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

/* Fast layer norm for the common shapes: x, y, gy, gx, weight, bias all of one dtype (f32,
 * bf16 or f16), D a multiple of 4 up to 1024, 16-byte (f32) / 8-byte (half) aligned, mean and
 * rstd f32. One warp per row holds the row in registers (4 elements per load, NV loads per
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
    char *yr = a.y + row * a.D * es;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int c = lane + 32 * i;
        if (c < nc) {
            float w[4] = { 1.f, 1.f, 1.f, 1.f }, b[4] = { 0.f, 0.f, 0.f, 0.f }, y[4];
            if (a.w) lnf_ld4<K>(a.w, c, w);
            if (a.b) lnf_ld4<K>(a.b, c, b);
#pragma unroll
            for (int e = 0; e < 4; e++) y[e] = (x[i][e] - mean) * rstd * w[e] + b[e];
            lnf_st4<K>(yr, c, y);
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
        const char *xr = a.x + row * a.D * es, *gr = a.gy + row * a.D * es;
        float s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            int c = lane + 32 * i;
            if (c < nc) {
                float x[4], g[4], w[4] = { 1.f, 1.f, 1.f, 1.f };
                lnf_ld4<K>(xr, c, x);
                lnf_ld4<K>(gr, c, g);
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
        if (a.gx) {
            /* second pass over the row (x and gy again, from L1) keeps the registers for dw/db */
            s1 = wfc_warp_reduce(s1, wfc_add_f()) * invD;
            s2 = wfc_warp_reduce(s2, wfc_add_f()) * invD;
            char *gxr = a.gx + row * a.D * es;
#pragma unroll
            for (int i = 0; i < NV; i++) {
                int c = lane + 32 * i;
                if (c < nc) {
                    float x[4], g[4], w[4] = { 1.f, 1.f, 1.f, 1.f }, o[4];
                    lnf_ld4<K>(xr, c, x);
                    lnf_ld4<K>(gr, c, g);
                    if (a.w) lnf_ld4<K>(a.w, c, w);
#pragma unroll
                    for (int e = 0; e < 4; e++) o[e] = rstd * (g[e] * w[e] - s1 - (x[e] - mean) * rstd * s2);
                    lnf_st4<K>(gxr, c, o);
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
static int lnf_nv(const ln_args &a, int dt) {
    if ((dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) || a.D % 4 || a.D > 1024 || a.rows > (int64_t)1 << 40) return 0;
    size_t al = dt == WF_F32 ? 16 : 8;
    const void *ptrs[6] = { a.x, a.y, a.gy, a.gx, a.w, a.b };
    for (int i = 0; i < 6; i++)
        if ((uintptr_t)ptrs[i] % al) return 0;
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

extern "C" int wf__cuda_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                           const wf_cuda_view *x, const wf_cuda_view *weight,
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
    a.eps = eps;
    int nv = (a.ydt == a.xdt && (!weight || a.wdt == a.xdt) && (!bias || a.bdt == a.xdt) &&
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

extern "C" int wf__cuda_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gweight,
                                            const wf_cuda_view *gbias, const wf_cuda_view *gy,
                                            const wf_cuda_view *x, const wf_cuda_view *mean,
                                            const wf_cuda_view *rstd, const wf_cuda_view *weight, int dev) {
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
    if (weight) { a.w = (const char *)weight->data; a.wdt = weight->dtype; }
    a.mean = (char *)mean->data; a.mdt = mean->dtype;
    a.rstd = (char *)rstd->data; a.rdt = rstd->dtype;
    bool f64 = a.xdt == WF_F64;
    int nv = (a.gydt == a.xdt && (!gx || a.gxdt == a.xdt) && (!weight || a.wdt == a.xdt) && a.mdt == WF_F32 &&
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
    if (gx) {
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
