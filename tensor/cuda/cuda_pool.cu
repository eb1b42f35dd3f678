/* tensor/cuda/cuda_pool.cu: 2-D max and average pooling, forward and backward, on the GPU;
 * the CUDA twin of tensor/cpu/pool.c.
 *
 * One thread per output element (forward) or per input element (average backward, which
 * gathers instead of scattering, so no atomics); max pooling saves the argmax (flat index
 * inside the plane, as the CPU does) and its backward scatters through it. */
#include "cuda_common.cuh"

#define THREADS 256
#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- pooling */

struct pool_geo {
    int64_t planes, H, W, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool cip;
};

static pool_geo make_pool(const wf_cuda_view *big, const wf_cuda_view *small, const int k[2], const int s[2],
                          const int p[2], const int *d, bool cip) {
    pool_geo g;
    int nd = big->ndim;
    g.H = nd >= 2 ? big->shape[nd - 2] : 1;
    g.W = nd >= 1 ? big->shape[nd - 1] : 1;
    g.oh = small->ndim >= 2 ? small->shape[small->ndim - 2] : 1;
    g.ow = small->ndim >= 1 ? small->shape[small->ndim - 1] : 1;
    int64_t n = wfc_numel(big);
    g.planes = (g.H * g.W != 0) ? n / (g.H * g.W) : 0;
    g.kh = k[0]; g.kw = k[1]; g.sh = s[0]; g.sw = s[1]; g.ph = p[0]; g.pw = p[1];
    g.dh = d ? d[0] : 1; g.dw = d ? d[1] : 1;
    g.cip = cip;
    return g;
}

template <class T> __global__ void max_pool_kernel(char *y, int ydt, int64_t *am, const char *x, int xdt, pool_geo g) {
    int64_t n = g.planes * g.oh * g.ow;
    int xs = wfc_dtype_size(xdt), ys = wfc_dtype_size(ydt);
    GRID_LOOP(i, n) {
        int64_t ox = i % g.ow, t = i / g.ow, oy = t % g.oh, plane = t / g.oh;
        const char *xp = x + plane * g.H * g.W * xs;
        int64_t h0 = oy * g.sh - g.ph, w0 = ox * g.sw - g.pw;
        T best = (T)-INFINITY;
        int64_t bi = -1;
        for (int a = 0; a < g.kh; a++) {
            int64_t h = h0 + (int64_t)a * g.dh;
            if (h < 0 || h >= g.H) continue;
            for (int b = 0; b < g.kw; b++) {
                int64_t w = w0 + (int64_t)b * g.dw;
                if (w < 0 || w >= g.W) continue;
                T v = wfc_ld<T>(xp + (h * g.W + w) * xs, xdt);
                /* NaN wins and the first NaN stays (as tensor/cpu/pool.c); ties keep the first */
                if (bi < 0 || (best == best && (v > best || v != v))) { best = v; bi = h * g.W + w; }
            }
        }
        wfc_st<T>(y + i * ys, ydt, best);
        if (am) am[i] = bi < 0 ? 0 : bi;
    }
}

__global__ void max_pool_bwd_kernel(char *gx, int gxdt, const char *gy, int gydt, const int64_t *am, int64_t n,
                                    int64_t ohw, int64_t HW) {
    int gys = wfc_dtype_size(gydt), gxs = wfc_dtype_size(gxdt);
    GRID_LOOP(i, n) {
        int64_t plane = i / ohw, k = am[i];
        if (k < 0 || k >= HW) continue;
        wfc_atomic_add(gx + (plane * HW + k) * gxs, gxdt, wfc_ld<double>(gy + i * gys, gydt));
    }
}

/* deterministic: one thread per plane, its outputs in order (a plane's outputs only reach its
 * own inputs, so threads never meet) */
__global__ void max_pool_bwd_det_kernel(char *gx, int gxdt, const char *gy, int gydt, const int64_t *am,
                                        int64_t planes, int64_t ohw, int64_t HW) {
    int gys = wfc_dtype_size(gydt), gxs = wfc_dtype_size(gxdt);
    GRID_LOOP(p, planes) {
        for (int64_t o = 0; o < ohw; o++) {
            int64_t i = p * ohw + o, k = am[i];
            if (k < 0 || k >= HW) continue;
            char *d = gx + (p * HW + k) * gxs;
            wfc_st<double>(d, gxdt, wfc_ld<double>(d, gxdt) + wfc_ld<double>(gy + i * gys, gydt));
        }
    }
}

__device__ __forceinline__ int64_t avg_div(const pool_geo &g, int64_t oy, int64_t ox, int64_t *hs, int64_t *he,
                                           int64_t *ws, int64_t *we) {
    int64_t h0 = oy * g.sh - g.ph, w0 = ox * g.sw - g.pw;
    int64_t h1 = h0 + g.kh < g.H + g.ph ? h0 + g.kh : g.H + g.ph;
    int64_t w1 = w0 + g.kw < g.W + g.pw ? w0 + g.kw : g.W + g.pw;
    int64_t pool = (h1 - h0) * (w1 - w0);
    h0 = h0 > 0 ? h0 : 0; w0 = w0 > 0 ? w0 : 0;
    h1 = h1 < g.H ? h1 : g.H; w1 = w1 < g.W ? w1 : g.W;
    *hs = h0; *he = h1; *ws = w0; *we = w1;
    int64_t dv = g.cip ? pool : (h1 - h0) * (w1 - w0);
    return dv > 0 ? dv : 1;
}

template <class T> __global__ void avg_pool_kernel(char *y, int ydt, const char *x, int xdt, pool_geo g) {
    int64_t n = g.planes * g.oh * g.ow;
    int xs = wfc_dtype_size(xdt), ys = wfc_dtype_size(ydt);
    GRID_LOOP(i, n) {
        int64_t ox = i % g.ow, t = i / g.ow, oy = t % g.oh, plane = t / g.oh;
        const char *xp = x + plane * g.H * g.W * xs;
        int64_t h0, h1, w0, w1;
        int64_t dv = avg_div(g, oy, ox, &h0, &h1, &w0, &w1);
        T s = (T)0;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) s += wfc_ld<T>(xp + (h * g.W + w) * xs, xdt);
        wfc_st<T>(y + i * ys, ydt, s / (T)dv);
    }
}

template <class T> __global__ void avg_pool_bwd_kernel(char *gx, int gxdt, const char *gy, int gydt, pool_geo g) {
    int64_t n = g.planes * g.H * g.W;
    int gxs = wfc_dtype_size(gxdt), gys = wfc_dtype_size(gydt);
    GRID_LOOP(i, n) {
        int64_t w = i % g.W, t = i / g.W, h = t % g.H, plane = t / g.H;
        const char *gp = gy + plane * g.oh * g.ow * gys;
        /* outputs whose window [oy*sh - ph, oy*sh - ph + kh) contains h */
        int64_t oy0 = h + g.ph - g.kh + 1;
        oy0 = oy0 <= 0 ? 0 : (oy0 + g.sh - 1) / g.sh;
        int64_t oy1 = (h + g.ph) / g.sh;
        if (oy1 >= g.oh) oy1 = g.oh - 1;
        int64_t ox0 = w + g.pw - g.kw + 1;
        ox0 = ox0 <= 0 ? 0 : (ox0 + g.sw - 1) / g.sw;
        int64_t ox1 = (w + g.pw) / g.sw;
        if (ox1 >= g.ow) ox1 = g.ow - 1;
        T s = (T)0;
        for (int64_t oy = oy0; oy <= oy1; oy++)
            for (int64_t ox = ox0; ox <= ox1; ox++) {
                int64_t h0, h1, w0, w1;
                int64_t dv = avg_div(g, oy, ox, &h0, &h1, &w0, &w1);
                if (h < h0 || h >= h1 || w < w0 || w >= w1) continue;
                s += wfc_ld<T>(gp + (oy * g.ow + ox) * gys, gydt) / (T)dv;
            }
        wfc_st<T>(gx + i * gxs, gxdt, s);
    }
}

extern "C" int wf__cuda_max_pool2d(const wf_cuda_view *y, const wf_cuda_view *argmax, const wf_cuda_view *x,
                                   const int k[2], const int s[2], const int p[2], const int d[2], int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "max_pool2d", &st);
    if (rc) return rc;
    pool_geo g = make_pool(x, y, k, s, p, d, false);
    int64_t n = g.planes * g.oh * g.ow;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    int64_t *am = argmax ? (int64_t *)argmax->data : NULL;
    if (x->dtype == WF_F64) max_pool_kernel<double><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, am, (const char *)x->data, x->dtype, g);
    else max_pool_kernel<float><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, am, (const char *)x->data, x->dtype, g);
    return wfc_check("max_pool2d kernel", dev);
}

extern "C" int wf__cuda_max_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *argmax,
                                            int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "max_pool2d backward", &st);
    if (rc) return rc;
    int64_t nx = wfc_numel(gx), n = wfc_numel(gy);
    if (nx <= 0) return 0;
    cudaError_t e = cudaMemsetAsync(gx->data, 0, (size_t)nx * wfc_dtype_size(gx->dtype), st);
    if (e != cudaSuccess) return wfc_report(e, "max_pool2d backward (cudaMemsetAsync)", dev);
    if (n <= 0) return 0;
    int64_t HW = gx->ndim >= 2 ? gx->shape[gx->ndim - 1] * gx->shape[gx->ndim - 2] : nx;
    int64_t ohw = gy->ndim >= 2 ? gy->shape[gy->ndim - 1] * gy->shape[gy->ndim - 2] : n;
    if (wf_are_deterministic_algorithms_enabled()) {
        int64_t planes = ohw ? n / ohw : 0;
        max_pool_bwd_det_kernel<<<wfc_blocks(planes, THREADS, dev), THREADS, 0, st>>>(
            (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const int64_t *)argmax->data, planes, ohw, HW);
    } else {
        max_pool_bwd_kernel<<<wfc_blocks(n, THREADS, dev), THREADS, 0, st>>>(
            (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const int64_t *)argmax->data, n, ohw, HW);
    }
    return wfc_check("max_pool2d backward kernel", dev);
}

extern "C" int wf__cuda_avg_pool2d(const wf_cuda_view *y, const wf_cuda_view *x, const int k[2], const int s[2],
                                   const int p[2], int count_include_pad, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "avg_pool2d", &st);
    if (rc) return rc;
    pool_geo g = make_pool(x, y, k, s, p, NULL, count_include_pad != 0);
    int64_t n = g.planes * g.oh * g.ow;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    if (x->dtype == WF_F64) avg_pool_kernel<double><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype, g);
    else avg_pool_kernel<float><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype, g);
    return wfc_check("avg_pool2d kernel", dev);
}

extern "C" int wf__cuda_avg_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const int k[2],
                                            const int s[2], const int p[2], int count_include_pad, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "avg_pool2d backward", &st);
    if (rc) return rc;
    pool_geo g = make_pool(gx, gy, k, s, p, NULL, count_include_pad != 0);
    int64_t n = g.planes * g.H * g.W;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    if (gx->dtype == WF_F64) avg_pool_bwd_kernel<double><<<b, THREADS, 0, st>>>((char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, g);
    else avg_pool_bwd_kernel<float><<<b, THREADS, 0, st>>>((char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, g);
    return wfc_check("avg_pool2d backward kernel", dev);
}

/* ---------------------------------------------------------------- adaptive average pooling
 * PyTorch's bins: output i covers input [floor(i*H/oh), ceil((i+1)*H/oh)), so neighbouring
 * bins may overlap by one row when H is not a multiple of oh. */

__device__ __forceinline__ int64_t abin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ __forceinline__ int64_t abin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <class T> __global__ void adaptive_pool_kernel(char *y, int ydt, const char *x, int xdt, pool_geo g) {
    int64_t n = g.planes * g.oh * g.ow;
    int xs = wfc_dtype_size(xdt), ys = wfc_dtype_size(ydt);
    GRID_LOOP(i, n) {
        int64_t ox = i % g.ow, t = i / g.ow, oy = t % g.oh, plane = t / g.oh;
        const char *xp = x + plane * g.H * g.W * xs;
        int64_t h0 = abin_start(oy, g.H, g.oh), h1 = abin_end(oy, g.H, g.oh);
        int64_t w0 = abin_start(ox, g.W, g.ow), w1 = abin_end(ox, g.W, g.ow);
        T s = (T)0;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) s += wfc_ld<T>(xp + (h * g.W + w) * xs, xdt);
        wfc_st<T>(y + i * ys, ydt, s / (T)((h1 - h0) * (w1 - w0)));
    }
}

/* one thread per input element, gathering from the (at most two per axis) bins that hold it:
 * no atomics, so the result does not depend on the schedule */
template <class T> __global__ void adaptive_pool_bwd_kernel(char *gx, int gxdt, const char *gy, int gydt, pool_geo g) {
    int64_t n = g.planes * g.H * g.W;
    int gxs = wfc_dtype_size(gxdt), gys = wfc_dtype_size(gydt);
    GRID_LOOP(i, n) {
        int64_t w = i % g.W, t = i / g.W, h = t % g.H, plane = t / g.H;
        const char *gp = gy + plane * g.oh * g.ow * gys;
        /* candidate bins from the bin formulas, widened by one and checked exactly below */
        int64_t oy0 = h * g.oh / g.H - 1, oy1 = ((h + 1) * g.oh - 1) / g.H + 1;
        int64_t ox0 = w * g.ow / g.W - 1, ox1 = ((w + 1) * g.ow - 1) / g.W + 1;
        oy0 = oy0 < 0 ? 0 : oy0; ox0 = ox0 < 0 ? 0 : ox0;
        oy1 = oy1 >= g.oh ? g.oh - 1 : oy1; ox1 = ox1 >= g.ow ? g.ow - 1 : ox1;
        T s = (T)0;
        for (int64_t oy = oy0; oy <= oy1; oy++) {
            int64_t h0 = abin_start(oy, g.H, g.oh), h1 = abin_end(oy, g.H, g.oh);
            if (h < h0 || h >= h1) continue;
            for (int64_t ox = ox0; ox <= ox1; ox++) {
                int64_t w0 = abin_start(ox, g.W, g.ow), w1 = abin_end(ox, g.W, g.ow);
                if (w < w0 || w >= w1) continue;
                s += wfc_ld<T>(gp + (oy * g.ow + ox) * gys, gydt) / (T)((h1 - h0) * (w1 - w0));
            }
        }
        wfc_st<T>(gx + i * gxs, gxdt, s);
    }
}

extern "C" int wf__cuda_adaptive_avg_pool2d(const wf_cuda_view *y, const wf_cuda_view *x, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "adaptive_avg_pool2d", &st);
    if (rc) return rc;
    static const int one[2] = { 1, 1 }, zero[2] = { 0, 0 };
    pool_geo g = make_pool(x, y, one, one, zero, NULL, false);
    int64_t n = g.planes * g.oh * g.ow;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    if (x->dtype == WF_F64) adaptive_pool_kernel<double><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype, g);
    else adaptive_pool_kernel<float><<<b, THREADS, 0, st>>>((char *)y->data, y->dtype, (const char *)x->data, x->dtype, g);
    return wfc_check("adaptive_avg_pool2d kernel", dev);
}

extern "C" int wf__cuda_adaptive_avg_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "adaptive_avg_pool2d backward", &st);
    if (rc) return rc;
    static const int one[2] = { 1, 1 }, zero[2] = { 0, 0 };
    pool_geo g = make_pool(gx, gy, one, one, zero, NULL, false);
    int64_t n = g.planes * g.H * g.W;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    if (gx->dtype == WF_F64) adaptive_pool_bwd_kernel<double><<<b, THREADS, 0, st>>>((char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, g);
    else adaptive_pool_bwd_kernel<float><<<b, THREADS, 0, st>>>((char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, g);
    return wfc_check("adaptive_avg_pool2d backward kernel", dev);
}
