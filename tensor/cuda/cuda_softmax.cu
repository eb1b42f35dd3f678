/* tensor/cuda/cuda_softmax.cu: softmax / log_softmax over the last dimension and their
 * backward, and the fused softmax cross-entropy (forward and backward) on the GPU; the CUDA
 * twin of tensor/cpu/softmax.c (the CPU's cross-entropy is in tensor/ops_fused.c). Rows are
 * reduced as cuda_rows.cuh plans. */
#include "cuda_rows.cuh"

#include <stdlib.h>
#include <string.h>

__device__ __forceinline__ float w_exp(float x) { return expf(x); }
__device__ __forceinline__ double w_exp(double x) { return exp(x); }
__device__ __forceinline__ float w_log(float x) { return logf(x); }
__device__ __forceinline__ double w_log(double x) { return log(x); }

template <class T, bool BLOCK>
__global__ void softmax_kernel(char *y, int ydt, const char *x, int xdt, int64_t rows, int64_t cols, bool lg, T sc,
                               T os, int64_t causal) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= rows) return;
    int xs = wfc_dtype_size(xdt), ys = wfc_dtype_size(ydt);
    const char *xr = x + row * cols * xs;
    char *yr = y + row * cols * ys;
    /* the causal mask's kept columns: [0, nv); the rest are excluded as -inf scores would be */
    int64_t nv = causal > 0 && row % causal + 1 < cols ? row % causal + 1 : cols;
    T mx = (T)-INFINITY;
    for (int64_t j = R::tid(); j < nv; j += R::nth()) mx = wfc_max_f()(mx, sc * wfc_ld<T>(xr + j * xs, xdt));
    mx = R::reduce(mx, wfc_max_f(), (T)-INFINITY);
    if (mx == (T)-INFINITY) mx = (T)0; /* all -inf row: avoid inf - inf */
    T sum = (T)0;
    for (int64_t j = R::tid(); j < nv; j += R::nth()) sum += w_exp(sc * wfc_ld<T>(xr + j * xs, xdt) - mx);
    sum = R::reduce(sum, wfc_add_f(), (T)0);
    if (lg) {
        T ls = mx + w_log(sum);
        for (int64_t j = R::tid(); j < cols; j += R::nth())
            wfc_st<T>(yr + j * ys, ydt, j < nv ? sc * wfc_ld<T>(xr + j * xs, xdt) - ls : (T)-INFINITY);
    } else {
        T inv = os / sum;
        for (int64_t j = R::tid(); j < cols; j += R::nth())
            wfc_st<T>(yr + j * ys, ydt, j < nv ? w_exp(sc * wfc_ld<T>(xr + j * xs, xdt) - mx) * inv : (T)0);
    }
}

template <class T, bool BLOCK>
__global__ void softmax_bwd_kernel(char *gx, int gxdt, const char *gy, int gydt, const char *y, int ydt, int64_t rows,
                                   int64_t cols, bool lg, T sc, T ios) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= rows) return;
    int gxs = wfc_dtype_size(gxdt), gys = wfc_dtype_size(gydt), ys = wfc_dtype_size(ydt);
    const char *gyr = gy + row * cols * gys, *yr = y + row * cols * ys;
    char *gxr = gx + row * cols * gxs;
    T s = (T)0;
    for (int64_t j = R::tid(); j < cols; j += R::nth()) {
        T g = wfc_ld<T>(gyr + j * gys, gydt);
        s += lg ? g : g * wfc_ld<T>(yr + j * ys, ydt);
    }
    s = R::reduce(s, wfc_add_f(), (T)0);
    if (!lg) s *= ios;   /* y = out_scale * softmax: sum(gy * y) / out_scale */
    for (int64_t j = R::tid(); j < cols; j += R::nth()) {
        T g = wfc_ld<T>(gyr + j * gys, gydt), yv = wfc_ld<T>(yr + j * ys, ydt);
        wfc_st<T>(gxr + j * gxs, gxdt, sc * (lg ? g - w_exp(yv) * s : yv * (g - s)));
    }
}

extern "C" int wf__cuda_softmax(const wf_cuda_view *y, const wf_cuda_view *x, int log, double scale, double out_scale,
                                int64_t causal, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "softmax", &st);
    if (rc) return rc;
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    if (!rows || !cols) return 0;
    bool block;
    unsigned grid, threads;
    row_launch_dims(rows, cols, &block, &grid, &threads);
    ROW_DISPATCH(softmax_kernel, x->dtype == WF_F64, block, grid, threads, st, (char *)y->data, y->dtype,
                 (const char *)x->data, x->dtype, rows, cols, log != 0, scale, out_scale, causal);
    return wfc_check("softmax kernel", dev);
}

extern "C" int wf__cuda_softmax_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *y,
                                         int log, double scale, double out_scale, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "softmax backward", &st);
    if (rc) return rc;
    int64_t rows, cols;
    rows_cols(y, &rows, &cols);
    if (!rows || !cols) return 0;
    bool block;
    unsigned grid, threads;
    row_launch_dims(rows, cols, &block, &grid, &threads);
    ROW_DISPATCH(softmax_bwd_kernel, y->dtype == WF_F64 || gx->dtype == WF_F64, block, grid, threads, st,
                 (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const char *)y->data, y->dtype,
                 rows, cols, log != 0, scale, 1.0 / out_scale);
    return wfc_check("softmax backward kernel", dev);
}

/* ---------------------------------------------------------------- softmax cross-entropy
 * loss[r] = (1 - ls)(lse - x[t]) + ls (lse - mean(x)), 0 on ignored rows, lse = log sum exp(x)
 * over the row; gx = g (softmax(x) - (1 - ls) onehot(t) - ls / cols), 0 on ignored rows.
 *
 * Two kernels each way. The vector ones take the case that matters (GPT-2's chunked LM loss:
 * bf16 rows of 50304 logits): f32 / bf16 / f16 logits (and, backward, a gradient of the same
 * dtype), contiguous, 16-byte aligned, cols a multiple of the elements in 16 bytes. One block
 * per row; each thread moves 16-byte vectors (XENT_UNROLL in flight) with the dtype a template
 * parameter and 32-bit offsets within the row. The forward reads the row once: an online
 * log-sum-exp (a running max and a sum rescaled when the max rises; Milakov & Gimelshein
 * 2018, as flash-attention and Triton's cross-entropy do) beside the sum of x for label
 * smoothing, then x[t] read directly. The backward reads x once and writes gx once, from the
 * forward's lse. The generic kernels (any dtypes, f64, odd cols, strided or misaligned rows;
 * a warp per short row, a block per long one) are the fallback. WEFT_XENT_NOVEC=1 (read once)
 * forces the generic ones everywhere (A/B timing): on the H100 the vector kernels took GPT-2
 * 124M's step from 45.6 to 41.8 ms (bench/NOTES.md).
 *
 * Both compute through the device functions below (xent_exp, xent_lse, xent_row_loss,
 * xent_grad_elem), but they sum a row in different orders (the generic: max then sum of exp,
 * strided by thread; the vector: folded per vector, then the threads' partial (max, sum)
 * merged), so lse and loss agree with the generic kernels' within f32 rounding, not bit for
 * bit; the gradient follows from lse element by element. Deterministic: a row is reduced by
 * one block in a fixed order, no atomics across blocks. */

struct xent_args {
    const char *x;
    int xdt;
    int64_t rows, cols;
    const char *t;
    int tdt;
    int64_t tstride; /* bytes */
    char *loss;
    int ldt;
    int64_t lstride; /* bytes */
    char *lse;       /* may be NULL; f32, or f64 for f64 logits (so a double's backward keeps its bits) */
    int lsedt;
    char *gx;
    int gxdt;
    const char *g;
    int gdt;
    int64_t gstride; /* bytes; 0 = broadcast */
    double scale;
    int64_t ignore;
    double ls;
    int *flag;
};

/* the shift under the exponentials: the row's max, or 0 while it is -inf (no inf - inf) */
template <class T> __device__ __forceinline__ T xent_base(T m) { return m == (T)-INFINITY ? (T)0 : m; }
/* one term of sum exp(x - m), m the (running) max */
template <class T> __device__ __forceinline__ T xent_exp(T x, T m) { return w_exp(x - xent_base(m)); }
/* s = sum exp(x - m_old) re-expressed against m_new >= m_old (NaN stays NaN) */
template <class T> __device__ __forceinline__ T xent_rescale(T s, T m_old, T m_new) {
    return m_old == m_new ? s : s * w_exp(m_old - xent_base(m_new));
}
/* log sum exp(x) from the max m and s = sum exp(x - m): -inf for a row of -inf */
template <class T> __device__ __forceinline__ T xent_lse(T m, T s) { return xent_base(m) + w_log(s); }
/* a kept row's loss; the smoothing term only when ls > 0, so a -inf logit (a masked class)
 * does not make 0 * inf = NaN */
template <class T> __device__ __forceinline__ T xent_row_loss(T lse, T xt, T sumx, double ls, int64_t cols) {
    T l = (T)(1.0 - ls) * (lse - xt);
    if (ls > 0) l += (T)ls * (lse - sumx / (T)cols);
    return l;
}
/* one logit's gradient: g (softmax - (1 - ls) [hit] - ls / cols); on = 1 - ls, off = ls / cols */
template <class T> __device__ __forceinline__ T xent_grad_elem(T x, T lse, T g, bool hit, T on, T off) {
    return g * (w_exp(x - lse) - (hit ? on : (T)0) - off);
}
/* the row's class target (any integer dtype) */
__device__ __forceinline__ int64_t xent_target(const xent_args &a, int64_t row) {
    return wfc_ld_index(a.t + row * a.tstride, a.tdt);
}

template <class T, bool BLOCK> __device__ __forceinline__ T row_lse(const xent_args &a, const char *xr, T *sumx) {
    typedef row_ctx<BLOCK> R;
    int xs = wfc_dtype_size(a.xdt);
    T mx = (T)-INFINITY, sx = (T)0;
    for (int64_t j = R::tid(); j < a.cols; j += R::nth()) {
        T v = wfc_ld<T>(xr + j * xs, a.xdt);
        mx = wfc_max_f()(mx, v);
        sx += v;
    }
    mx = R::reduce(mx, wfc_max_f(), (T)-INFINITY);
    if (sumx) *sumx = R::reduce(sx, wfc_add_f(), (T)0);
    T s = (T)0;
    for (int64_t j = R::tid(); j < a.cols; j += R::nth()) s += xent_exp(wfc_ld<T>(xr + j * xs, a.xdt), mx);
    s = R::reduce(s, wfc_add_f(), (T)0);
    return xent_lse(mx, s);
}

/* thread 0's part of the forward: lse and the loss of row `row`, its target t (x[t] read by
 * the caller's loader: ld(t) for 0 <= t < cols) */
template <class T, class LD>
__device__ __forceinline__ void xent_fwd_store(const xent_args &a, int64_t row, int64_t t, T lse, T sumx, LD ld) {
    if (a.lse) wfc_st<T>(a.lse + row * wfc_dtype_size(a.lsedt), a.lsedt, lse);
    T loss = (T)0;
    if (t != a.ignore) {
        if (t < 0 || t >= a.cols) {
            atomicExch(a.flag, 1);
            loss = (T)NAN;
        } else {
            loss = xent_row_loss(lse, (T)ld(t), sumx, a.ls, a.cols);
        }
    }
    wfc_st<T>(a.loss + row * a.lstride, a.ldt, loss);
}

template <class T> struct xent_generic_ld {
    const char *xr;
    int xdt, xs;
    __device__ __forceinline__ T operator()(int64_t j) const { return wfc_ld<T>(xr + j * xs, xdt); }
};

template <class T, bool BLOCK> __global__ void xent_fwd_kernel(xent_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt);
    const char *xr = a.x + row * a.cols * xs;
    T sumx;
    T lse = row_lse<T, BLOCK>(a, xr, &sumx);
    if (R::tid() != 0) return;
    xent_generic_ld<T> ld = { xr, a.xdt, xs };
    xent_fwd_store<T>(a, row, xent_target(a, row), lse, sumx, ld);
}

template <class T, bool BLOCK> __global__ void xent_bwd_kernel(xent_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt), gs = wfc_dtype_size(a.gxdt);
    const char *xr = a.x + row * a.cols * xs;
    char *gr = a.gx + row * a.cols * gs;
    T lse = a.lse ? wfc_ld<T>(a.lse + row * wfc_dtype_size(a.lsedt), a.lsedt) : row_lse<T, BLOCK>(a, xr, (T *)NULL);
    int64_t t = xent_target(a, row);
    bool skip = t == a.ignore || t < 0 || t >= a.cols;
    T g = skip ? (T)0 : wfc_ld<T>(a.g + row * a.gstride, a.gdt) * (T)a.scale;
    T on = (T)(1.0 - a.ls), off = (T)(a.ls / (double)a.cols);
    for (int64_t j = R::tid(); j < a.cols; j += R::nth()) {
        T v = skip ? (T)0 : xent_grad_elem(wfc_ld<T>(xr + j * xs, a.xdt), lse, g, j == t, on, off);
        wfc_st<T>(gr + j * gs, a.gxdt, v);
    }
}

/* ---------------------------------------------------------------- the vector kernels */

#define XENT_VEC_THREADS 512   /* at most; fewer for short rows */
#define XENT_UNROLL 2          /* vectors each thread has in flight */

/* fold n values into a thread's running (max m, sum s of exp(x - m)) and sum of x */
template <int N> __device__ __forceinline__ void xent_fold(const float *x, float &m, float &s, float &sx) {
    float mv = x[0];
#pragma unroll
    for (int k = 1; k < N; k++) mv = wfc_max_f()(mv, x[k]);
    float mn = wfc_max_f()(m, mv);
    s = xent_rescale(s, m, mn);
    m = mn;
#pragma unroll
    for (int k = 0; k < N; k++) {
        s += xent_exp(x[k], m);
        sx += x[k];
    }
}
/* (m1, s1) merged with (m2, s2) into (m1, s1) */
__device__ __forceinline__ void xent_merge(float &m1, float &s1, float m2, float s2) {
    float mn = wfc_max_f()(m1, m2);
    s1 = xent_rescale(s1, m1, mn) + xent_rescale(s2, m2, mn);
    m1 = mn;
}
/* the block's (m, s) and sum of x, in every thread; blockDim.x a multiple of 32, <= 1024 */
__device__ __forceinline__ void xent_block_reduce(float &m, float &s, float &sx) {
    __shared__ float shm[32], shs[32], shx[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        xent_merge(m, s, m2, s2);
        sx += __shfl_xor_sync(0xffffffffu, sx, o);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { shm[w] = m; shs[w] = s; shx[w] = sx; }
    __syncthreads();
    m = lane < nw ? shm[lane] : -INFINITY;
    s = lane < nw ? shs[lane] : 0.f;
    sx = lane < nw ? shx[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        xent_merge(m, s, m2, s2);
        sx += __shfl_xor_sync(0xffffffffu, sx, o);
    }
}

template <int DT> struct xent_vec_ld {
    const char *xr;
    __device__ __forceinline__ float operator()(int64_t j) const { return wfc_vec16<DT>::ld1(xr, (int)j); }
};

/* one block per row; nv = cols / N vectors per row */
template <int DT> __global__ void __launch_bounds__(XENT_VEC_THREADS, 3) xent_fwd_vec_kernel(xent_args a, int nv) {
    typedef wfc_vec16<DT> V;
    int64_t row = blockIdx.x;
    const char *xr = a.x + row * (int64_t)nv * 16;
    const int nth = (int)blockDim.x;
    /* the target is loaded now and used after the row: its latency hides under the loads */
    int64_t t = threadIdx.x == 0 ? xent_target(a, row) : 0;
    float m = -INFINITY, s = 0.f, sx = 0.f;
    for (int v0 = (int)threadIdx.x; v0 < nv; v0 += XENT_UNROLL * nth) {
        typename V::raw r[XENT_UNROLL];
#pragma unroll
        for (int u = 0; u < XENT_UNROLL; u++)   /* every load issued before the math */
            if (v0 + u * nth < nv) r[u] = V::ldr(xr, v0 + u * nth);
#pragma unroll
        for (int u = 0; u < XENT_UNROLL; u++)
            if (v0 + u * nth < nv) {
                float x[V::N];
                V::cvt(r[u], x);
                xent_fold<V::N>(x, m, s, sx);
            }
    }
    xent_block_reduce(m, s, sx);
    if (threadIdx.x != 0) return;
    xent_vec_ld<DT> ld = { xr };
    xent_fwd_store<float>(a, row, t, xent_lse(m, s), sx, ld);
}

template <int DT> __global__ void __launch_bounds__(XENT_VEC_THREADS, 3) xent_bwd_vec_kernel(xent_args a, int nv) {
    typedef wfc_vec16<DT> V;
    int64_t row = blockIdx.x;
    const char *xr = a.x + row * (int64_t)nv * 16;
    char *gr = a.gx + row * (int64_t)nv * 16;
    const int nth = (int)blockDim.x;
    /* the row's three scalars loaded together (one latency, not two after the branch) */
    int64_t t = xent_target(a, row);
    float lse = wfc_ld<float>(a.lse + row * wfc_dtype_size(a.lsedt), a.lsedt);
    float g = wfc_ld<float>(a.g + row * a.gstride, a.gdt) * (float)a.scale;
    if (t == a.ignore || t < 0 || t >= a.cols) {   /* zeros, as the generic kernel's skip, x unread */
        float z[V::N];
#pragma unroll
        for (int k = 0; k < V::N; k++) z[k] = 0.f;
        for (int v = (int)threadIdx.x; v < nv; v += nth) V::st(gr, v, z);
        return;
    }
    float on = (float)(1.0 - a.ls), off = (float)(a.ls / (double)a.cols);
    int tc = (int)t;   /* < cols, which the host checked fits in an int */
    for (int v0 = (int)threadIdx.x; v0 < nv; v0 += XENT_UNROLL * nth) {
        typename V::raw r[XENT_UNROLL];
#pragma unroll
        for (int u = 0; u < XENT_UNROLL; u++)
            if (v0 + u * nth < nv) r[u] = V::ldr(xr, v0 + u * nth);
#pragma unroll
        for (int u = 0; u < XENT_UNROLL; u++) {
            int v = v0 + u * nth;
            if (v >= nv) continue;
            float x[V::N], o[V::N];
            V::cvt(r[u], x);
#pragma unroll
            for (int k = 0; k < V::N; k++) o[k] = xent_grad_elem(x[k], lse, g, v * V::N + k == tc, on, off);
            V::st(gr, v, o);
        }
    }
}

WF__ENV_SWITCH(xent_novec, "WEFT_XENT_NOVEC")

/* The vector path's conditions for an operand of the logits' shape (the logits, or their
 * gradient, which must then have the logits' dtype): returns the elements per vector, or 0
 * for the generic kernels. cols < 2^30 keeps every element offset and the loops' index
 * (v0 + XENT_UNROLL * threads) in an int. */
static int xent_vec_width(const wf_cuda_view *v, int dt, int64_t cols) {
    if (xent_novec()) return 0;
    if (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) return 0;
    int w = 16 / wfc_dtype_size(dt);
    if (v->dtype != dt || cols % w || cols >= ((int64_t)1 << 30)) return 0;
    return wfc_contig(v) && !((uintptr_t)v->data & 15) ? w : 0;
}

/* threads for nv vectors a row: enough that each has XENT_UNROLL of them, a whole number of
 * warps, at most XENT_VEC_THREADS */
static unsigned xent_vec_threads(int nv) {
    int th = (nv + XENT_UNROLL - 1) / XENT_UNROLL;
    th = (th + 31) / 32 * 32;
    return (unsigned)(th > XENT_VEC_THREADS ? XENT_VEC_THREADS : th);
}

#define XENT_VEC_DISPATCH(KERNEL, dt, grid, threads, st, ...)                                  \
    do {                                                                                       \
        if ((dt) == WF_BF16) KERNEL<WF_BF16><<<grid, threads, 0, st>>>(__VA_ARGS__);           \
        else if ((dt) == WF_F16) KERNEL<WF_F16><<<grid, threads, 0, st>>>(__VA_ARGS__);        \
        else KERNEL<WF_F32><<<grid, threads, 0, st>>>(__VA_ARGS__);                            \
    } while (0)

static xent_args xent_common(const wf_cuda_view *logits, const wf_cuda_view *target, int64_t ignore_index,
                             double ls, int dev) {
    xent_args a;
    memset(&a, 0, sizeof a);
    rows_cols(logits, &a.rows, &a.cols);
    a.x = (const char *)logits->data;
    a.xdt = logits->dtype;
    a.t = (const char *)target->data;
    a.tdt = target->dtype;
    a.tstride = target->ndim ? target->stride[0] * wfc_dtype_size(target->dtype) : 0;
    a.ignore = ignore_index;
    a.ls = ls;
    a.flag = wfc_index_flag(dev);
    return a;
}

extern "C" int wf__cuda_softmax_xent_forward(const wf_cuda_view *loss, const wf_cuda_view *lse,
                                             const wf_cuda_view *logits, const wf_cuda_view *target,
                                             int64_t ignore_index, double label_smoothing, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "cross_entropy", &st);
    if (rc) return rc;
    xent_args a = xent_common(logits, target, ignore_index, label_smoothing, dev);
    if (!a.rows || !a.cols) return 0;
    a.loss = (char *)loss->data;
    a.ldt = loss->dtype;
    a.lstride = loss->ndim ? loss->stride[0] * wfc_dtype_size(loss->dtype) : 0;
    a.lse = lse ? (char *)lse->data : NULL;
    a.lsedt = lse ? lse->dtype : WF_F32;
    int w = a.rows <= INT32_MAX ? xent_vec_width(logits, a.xdt, a.cols) : 0;
    if (w) {
        int nv = (int)(a.cols / w);
        XENT_VEC_DISPATCH(xent_fwd_vec_kernel, a.xdt, (unsigned)a.rows, xent_vec_threads(nv), st, a, nv);
        return wfc_check("cross_entropy kernel", dev);
    }
    bool block;
    unsigned grid, threads;
    row_launch_dims(a.rows, a.cols, &block, &grid, &threads);
    ROW_DISPATCH(xent_fwd_kernel, a.xdt == WF_F64, block, grid, threads, st, a);
    return wfc_check("cross_entropy kernel", dev);
}

extern "C" int wf__cuda_softmax_xent_backward(const wf_cuda_view *glogits, const wf_cuda_view *gloss, double scale,
                                              const wf_cuda_view *logits, const wf_cuda_view *target,
                                              const wf_cuda_view *lse, int64_t ignore_index, double label_smoothing,
                                              int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "cross_entropy backward", &st);
    if (rc) return rc;
    xent_args a = xent_common(logits, target, ignore_index, label_smoothing, dev);
    if (!a.rows || !a.cols) return 0;
    a.gx = (char *)glogits->data;
    a.gxdt = glogits->dtype;
    a.g = (const char *)gloss->data;
    a.gdt = gloss->dtype;
    a.gstride = (wfc_numel(gloss) <= 1 || !gloss->ndim) ? 0 : gloss->stride[0] * wfc_dtype_size(gloss->dtype);
    a.scale = scale;
    a.lse = lse ? (char *)lse->data : NULL;
    a.lsedt = lse ? lse->dtype : WF_F32;
    /* the vector kernel needs the forward's lse (it reads x once) */
    int w = a.lse && a.rows <= INT32_MAX ? xent_vec_width(logits, a.xdt, a.cols) : 0;
    if (w && xent_vec_width(glogits, a.xdt, a.cols) == w) {
        int nv = (int)(a.cols / w);
        XENT_VEC_DISPATCH(xent_bwd_vec_kernel, a.xdt, (unsigned)a.rows, xent_vec_threads(nv), st, a, nv);
        return wfc_check("cross_entropy backward kernel", dev);
    }
    bool block;
    unsigned grid, threads;
    row_launch_dims(a.rows, a.cols, &block, &grid, &threads);
    ROW_DISPATCH(xent_bwd_kernel, a.xdt == WF_F64, block, grid, threads, st, a);
    return wfc_check("cross_entropy backward kernel", dev);
}
