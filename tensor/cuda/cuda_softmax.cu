/* tensor/cuda/cuda_softmax.cu: softmax / log_softmax over the last dimension and their
 * backward, and the fused softmax cross-entropy (forward and backward) on the GPU; the CUDA
 * twin of tensor/cpu/softmax.c (the CPU's cross-entropy is in tensor/ops_fused.c). Rows are
 * reduced as cuda_rows.cuh plans. */
#include "cuda_rows.cuh"

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

/* ---------------------------------------------------------------- softmax cross-entropy */

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
    T m0 = mx == (T)-INFINITY ? (T)0 : mx;
    T s = (T)0;
    for (int64_t j = R::tid(); j < a.cols; j += R::nth()) s += w_exp(wfc_ld<T>(xr + j * xs, a.xdt) - m0);
    s = R::reduce(s, wfc_add_f(), (T)0);
    return m0 + w_log(s);
}

template <class T, bool BLOCK> __global__ void xent_fwd_kernel(xent_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt);
    const char *xr = a.x + row * a.cols * xs;
    T sumx;
    T lse = row_lse<T, BLOCK>(a, xr, &sumx);
    if (R::tid() != 0) return;
    if (a.lse) wfc_st<T>(a.lse + row * wfc_dtype_size(a.lsedt), a.lsedt, lse);
    int64_t t = wfc_ld_index(a.t + row * a.tstride, a.tdt);
    T loss = (T)0;
    if (t != a.ignore) {
        if (t < 0 || t >= a.cols) {
            atomicExch(a.flag, 1);
            loss = (T)NAN;
        } else {
            T xt = wfc_ld<T>(xr + t * xs, a.xdt);
            loss = (T)(1.0 - a.ls) * (lse - xt) + (T)a.ls * (lse - sumx / (T)a.cols);
        }
    }
    wfc_st<T>(a.loss + row * a.lstride, a.ldt, loss);
}

template <class T, bool BLOCK> __global__ void xent_bwd_kernel(xent_args a) {
    typedef row_ctx<BLOCK> R;
    int64_t row = R::row();
    if (row >= a.rows) return;
    int xs = wfc_dtype_size(a.xdt), gs = wfc_dtype_size(a.gxdt);
    const char *xr = a.x + row * a.cols * xs;
    char *gr = a.gx + row * a.cols * gs;
    T lse = a.lse ? wfc_ld<T>(a.lse + row * wfc_dtype_size(a.lsedt), a.lsedt) : row_lse<T, BLOCK>(a, xr, (T *)NULL);
    int64_t t = wfc_ld_index(a.t + row * a.tstride, a.tdt);
    bool skip = t == a.ignore || t < 0 || t >= a.cols;
    T g = skip ? (T)0 : wfc_ld<T>(a.g + row * a.gstride, a.gdt) * (T)a.scale;
    T on = (T)(1.0 - a.ls), off = (T)(a.ls / (double)a.cols);
    for (int64_t j = R::tid(); j < a.cols; j += R::nth()) {
        T v = skip ? (T)0 : g * (w_exp(wfc_ld<T>(xr + j * xs, a.xdt) - lse) - (j == t ? on : (T)0) - off);
        wfc_st<T>(gr + j * gs, a.gxdt, v);
    }
}

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
    bool block;
    unsigned grid, threads;
    row_launch_dims(a.rows, a.cols, &block, &grid, &threads);
    ROW_DISPATCH(xent_bwd_kernel, a.xdt == WF_F64, block, grid, threads, st, a);
    return wfc_check("cross_entropy backward kernel", dev);
}
