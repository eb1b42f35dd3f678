/* tensor/cuda/cuda_index.cu: gather / scatter_add / index_select / index_add on the GPU, the
 * CUDA twin of tensor/cpu/index.c, and max and average pooling, forward and backward
 * (im2col / col2im: cuda_conv.cu).
 *
 * Index kernels check every index against its range: an out-of-range index is skipped
 * (gather and index_select write 0) and raises the device's index flag, which the next
 * synchronize or copy to the host reports as WF_EINDEX; a bad index never becomes an
 * illegal address (which would make the CUDA context unusable). */
#include "cuda_common.cuh"

#include <string.h>

#define THREADS 256
#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- gather / scatter family
 * Iterate tensor A (shape `shape`); index element at off1; tensor B is addressed with A's
 * coordinates except along dim, where it takes the index value. Strides in bytes. */
struct idx_geo {
    int ndim, dim;
    int64_t n, dimsize;
    int64_t shape[WF_CUDA_MAX_DIMS], sa[WF_CUDA_MAX_DIMS], si[WF_CUDA_MAX_DIMS], sb[WF_CUDA_MAX_DIMS];
    char *a; int adt;
    const char *idx; int idt;
    char *b; int bdt;
    int *flag;
};

__device__ __forceinline__ bool idx_offsets(const idx_geo &g, int64_t i, int64_t &oa, int64_t &ob) {
    int64_t oi = 0;
    oa = 0; ob = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t s = g.shape[d], q = i / s, c = i - q * s;
        i = q;
        oa += c * g.sa[d];
        oi += c * g.si[d];
        if (d != g.dim) ob += c * g.sb[d];
    }
    int64_t k = wfc_ld_index(g.idx + oi, g.idt);
    if (k < 0 || k >= g.dimsize) {
        atomicExch(g.flag, 1);
        return false;
    }
    ob += k * g.sb[g.dim];
    return true;
}

/* A[i] = B[...] */
__global__ void gather_kernel(idx_geo g) {
    int es = wfc_dtype_size(g.adt);
    bool same = g.adt == g.bdt;
    GRID_LOOP(i, g.n) {
        int64_t oa, ob;
        char *pa = g.a + 0;
        bool ok = idx_offsets(g, i, oa, ob);
        pa += oa;
        if (!ok) { for (int k = 0; k < es; k++) pa[k] = 0; continue; }
        const char *pb = g.b + ob;
        if (same) {
            switch (es) {
            case 8: *(uint64_t *)pa = *(const uint64_t *)pb; break;
            case 4: *(uint32_t *)pa = *(const uint32_t *)pb; break;
            case 2: *(uint16_t *)pa = *(const uint16_t *)pb; break;
            default: *pa = *pb; break;
            }
        } else {
            wfc_st<double>(pa, g.adt, wfc_ld<double>(pb, g.bdt));
        }
    }
}

/* B[...] += A[i] (atomic) */
__global__ void scatter_add_kernel(idx_geo g) {
    GRID_LOOP(i, g.n) {
        int64_t oa, ob;
        if (!idx_offsets(g, i, oa, ob)) continue;
        wfc_atomic_add(g.b + ob, g.bdt, wfc_ld<double>(g.a + oa, g.adt));
    }
}

/* it: the iterated tensor (A); other: B; index strides follow A's coordinates, or only
 * `dim` when index_1d */
static idx_geo make_idx_geo(const wf_cuda_view *it, const wf_cuda_view *other, const wf_cuda_view *index, int dim,
                            bool index_1d, int dev) {
    idx_geo g;
    memset(&g, 0, sizeof g);
    /* the iteration shape: the index's for gather / scatter_add (PyTorch lets it be smaller
     * than src), the iterated tensor's for the 1-D index forms */
    const wf_cuda_view *sh = index_1d ? it : index;
    g.ndim = sh->ndim;
    g.dim = dim;
    g.n = wfc_numel(sh);
    g.dimsize = other->ndim ? other->shape[dim] : 1;
    int ea = wfc_dtype_size(it->dtype), eb = wfc_dtype_size(other->dtype), ei = wfc_dtype_size(index->dtype);
    for (int d = 0; d < sh->ndim; d++) {
        g.shape[d] = sh->shape[d];
        g.sa[d] = it->stride[d] * ea;
        g.sb[d] = other->stride[d] * eb;
        if (index_1d) g.si[d] = d == dim && index->ndim ? index->stride[0] * ei : 0;
        else g.si[d] = index->stride[d] * ei;
    }
    g.a = (char *)it->data; g.adt = it->dtype;
    g.b = (char *)other->data; g.bdt = other->dtype;
    g.idx = (const char *)index->data; g.idt = index->dtype;
    g.flag = wfc_index_flag(dev);
    return g;
}

static int run_idx(bool gather, const idx_geo &g, int dev, cudaStream_t st, const char *name) {
    if (!g.n) return 0;
    if (gather) gather_kernel<<<wfc_blocks(g.n, THREADS, dev), THREADS, 0, st>>>(g);
    else scatter_add_kernel<<<wfc_blocks(g.n, THREADS, dev), THREADS, 0, st>>>(g);
    return wfc_check(name, dev);
}

extern "C" int wf__cuda_gather(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "gather", &st);
    if (rc) return rc;
    return run_idx(true, make_idx_geo(y, x, index, dim, false, dev), dev, st, "gather kernel");
}
extern "C" int wf__cuda_scatter_add(const wf_cuda_view *y, int dim, const wf_cuda_view *index, const wf_cuda_view *src,
                                    int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "scatter_add", &st);
    if (rc) return rc;
    return run_idx(false, make_idx_geo(src, y, index, dim, false, dev), dev, st, "scatter_add kernel");
}
extern "C" int wf__cuda_index_select(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index,
                                     int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "index_select", &st);
    if (rc) return rc;
    return run_idx(true, make_idx_geo(y, x, index, dim, true, dev), dev, st, "index_select kernel");
}
extern "C" int wf__cuda_index_add(const wf_cuda_view *gx, int dim, const wf_cuda_view *index, const wf_cuda_view *gy,
                                  int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "index_add", &st);
    if (rc) return rc;
    return run_idx(false, make_idx_geo(gy, gx, index, dim, true, dev), dev, st, "index_add kernel");
}

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
    max_pool_bwd_kernel<<<wfc_blocks(n, THREADS, dev), THREADS, 0, st>>>(
        (char *)gx->data, gx->dtype, (const char *)gy->data, gy->dtype, (const int64_t *)argmax->data, n, ohw, HW);
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
