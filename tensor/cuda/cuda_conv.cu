/* tensor/cuda/cuda_conv.cu: im2col / col2im for conv2d on the GPU; the CUDA twin of
 * tensor/cpu/conv.c, with the same col layouts. conv2d (tensor/ops_conv.c) runs the batched
 * pair (a chunk of images per call, one GEMM per group); the per-image pair (col2im adds
 * into x) stays for the kernel table's per-image entries. */
#include "cuda_common.cuh"

#define THREADS 256
#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- im2col / col2im */

struct conv_geo {
    int64_t C, H, W, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
};

template <class E> __global__ void im2col_kernel(E *col, const E *x, conv_geo g) {
    int64_t n = g.C * g.kh * g.kw * g.oh * g.ow;
    GRID_LOOP(i, n) {
        int64_t ox = i % g.ow, t = i / g.ow;
        int64_t oy = t % g.oh;
        int64_t row = t / g.oh;
        int64_t j = row % g.kw, r2 = row / g.kw;
        int64_t ii = r2 % g.kh, c = r2 / g.kh;
        int64_t h = oy * g.sh - g.ph + ii * g.dh, w = ox * g.sw - g.pw + j * g.dw;
        col[i] = (h >= 0 && h < g.H && w >= 0 && w < g.W) ? x[(c * g.H + h) * g.W + w] : (E)0;
    }
}

template <class T> __global__ void col2im_kernel(char *x, const char *col, int dt, conv_geo g) {
    int64_t n = g.C * g.H * g.W;
    int es = wfc_dtype_size(dt);
    int64_t L = g.oh * g.ow;
    GRID_LOOP(i, n) {
        int64_t w = i % g.W, t = i / g.W;
        int64_t h = t % g.H, c = t / g.H;
        T acc = wfc_ld<T>(x + i * es, dt); /* adds onto x, like tensor/cpu/conv.c */
        for (int ii = 0; ii < g.kh; ii++) {
            int64_t hy = h + g.ph - (int64_t)ii * g.dh;
            if (hy < 0 || hy % g.sh) continue;
            int64_t oy = hy / g.sh;
            if (oy >= g.oh) continue;
            for (int j = 0; j < g.kw; j++) {
                int64_t wx = w + g.pw - (int64_t)j * g.dw;
                if (wx < 0 || wx % g.sw) continue;
                int64_t ox = wx / g.sw;
                if (ox >= g.ow) continue;
                int64_t row = (c * g.kh + ii) * g.kw + j;
                acc += wfc_ld<T>(col + (row * L + oy * g.ow + ox) * es, dt);
            }
        }
        wfc_st<T>(x + i * es, dt, acc);
    }
}

static conv_geo make_conv(int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                          int dw, int64_t oh, int64_t ow) {
    conv_geo g = { C, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw };
    return g;
}

extern "C" int wf__cuda_im2col(void *col, const void *x, int dtype, int64_t C, int64_t H, int64_t W, int kh, int kw,
                               int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "im2col", &st);
    if (rc) return rc;
    conv_geo g = make_conv(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow);
    int64_t n = C * kh * kw * oh * ow;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    switch (wfc_dtype_size(dtype)) {
    case 8: im2col_kernel<uint64_t><<<b, THREADS, 0, st>>>((uint64_t *)col, (const uint64_t *)x, g); break;
    case 4: im2col_kernel<uint32_t><<<b, THREADS, 0, st>>>((uint32_t *)col, (const uint32_t *)x, g); break;
    case 2: im2col_kernel<uint16_t><<<b, THREADS, 0, st>>>((uint16_t *)col, (const uint16_t *)x, g); break;
    default: im2col_kernel<uint8_t><<<b, THREADS, 0, st>>>((uint8_t *)col, (const uint8_t *)x, g); break;
    }
    return wfc_check("im2col kernel", dev);
}

extern "C" int wf__cuda_col2im(void *x, const void *col, int dtype, int64_t C, int64_t H, int64_t W, int kh, int kw,
                               int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "col2im", &st);
    if (rc) return rc;
    conv_geo g = make_conv(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow);
    int64_t n = C * H * W;
    if (n <= 0) return 0;
    unsigned b = wfc_blocks(n, THREADS, dev);
    if (dtype == WF_F64) col2im_kernel<double><<<b, THREADS, 0, st>>>((char *)x, (const char *)col, dtype, g);
    else if (wfc_is_float(dtype)) col2im_kernel<float><<<b, THREADS, 0, st>>>((char *)x, (const char *)col, dtype, g);
    else col2im_kernel<int64_t><<<b, THREADS, 0, st>>>((char *)x, (const char *)col, dtype, g);
    return wfc_check("col2im kernel", dev);
}

/* ---------------------------------------------------------------- im2col_batch / col2im_batch
 * N images [N,C,H,W] <-> col [C*kh*kw, N*oh*ow] (image n in columns [n*oh*ow, (n+1)*oh*ow)),
 * the layouts of tensor/cpu/conv.c, so conv2d runs ONE GEMM per group per chunk of images.
 * One thread per output element: blockIdx.y walks col's rows (im2col) or x's planes
 * (col2im), the x dimension the elements of a row / plane, so a thread splits its index with
 * two divisions instead of six. Indices are 32-bit unless a buffer needs more. col2im_batch
 * is a gather (each x element sums its own col entries), so no atomics and the same bits
 * every run: it OVERWRITES x, starting from bias[c] (or 0) and adding the entries in the CPU
 * loop's order (kernel row i, then column j), so f32/f64 match the CPU bit for bit. Halves
 * sum in f32 and round once. */

#define ROWS_MAX 65535   /* gridDim.y's limit: more rows / planes loop */

struct conv_bgeo {
    int64_t N, C, H, W, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
};

template <class E, class I> __global__ void im2col_batch_kernel(E *col, const E *x, conv_bgeo g) {
    const I L = (I)(g.oh * g.ow), NL = (I)g.N * L, HW = (I)(g.H * g.W), rows = (I)g.C * g.kh * g.kw;
    for (I r = blockIdx.y; r < rows; r += gridDim.y) {
        I j = r % g.kw, t = r / g.kw, i = t % g.kh, c = t / g.kh;
        I dy = i * g.dh - g.ph, dx = j * g.dw - g.pw;
        E *dst = col + r * NL;
        const E *xc = x + c * HW;
        for (I q = blockIdx.x * (I)blockDim.x + threadIdx.x; q < NL; q += (I)gridDim.x * blockDim.x) {
            I n = q / L, e = q - n * L, oy = e / (I)g.ow, ox = e - oy * (I)g.ow;
            I h = oy * g.sh + dy, w = ox * g.sw + dx;
            dst[q] = (h >= 0 && h < (I)g.H && w >= 0 && w < (I)g.W) ? xc[n * (I)g.C * HW + h * (I)g.W + w] : (E)0;
        }
    }
}

/* storage <-> sum type of col2im_batch, by dtype */
template <int DT> struct cvt;
template <> struct cvt<WF_F32> {
    typedef float S; typedef float A;
    static __device__ __forceinline__ A ld(S v) { return v; }
    static __device__ __forceinline__ S st(A v) { return v; }
};
template <> struct cvt<WF_F64> {
    typedef double S; typedef double A;
    static __device__ __forceinline__ A ld(S v) { return v; }
    static __device__ __forceinline__ S st(A v) { return v; }
};
template <> struct cvt<WF_F16> {
    typedef uint16_t S; typedef float A;
    static __device__ __forceinline__ A ld(S v) { return wfc_h_to_f(v); }
    static __device__ __forceinline__ S st(A v) { return wfc_f_to_h(v); }
};
template <> struct cvt<WF_BF16> {
    typedef uint16_t S; typedef float A;
    static __device__ __forceinline__ A ld(S v) { return wfc_bf16_to_f(v); }
    static __device__ __forceinline__ S st(A v) { return wfc_f_to_bf16(v); }
};

/* UNIT: stride 1 both ways (no divisibility tests) */
template <int DT, class I, bool UNIT>
__global__ void col2im_batch_kernel(typename cvt<DT>::S *x, const typename cvt<DT>::S *col,
                                    const typename cvt<DT>::S *bias, conv_bgeo g) {
    typedef cvt<DT> V;
    typedef typename V::A A;
    const I L = (I)(g.oh * g.ow), NL = (I)g.N * L, HW = (I)(g.H * g.W), planes = (I)g.N * (I)g.C;
    for (I p = blockIdx.y; p < planes; p += gridDim.y) {
        I n = p / (I)g.C, c = p - n * (I)g.C;
        A v0 = bias ? V::ld(bias[c]) : (A)0;
        const typename V::S *src = col + c * (I)g.kh * g.kw * NL + n * L;
        for (I e = blockIdx.x * (I)blockDim.x + threadIdx.x; e < HW; e += (I)gridDim.x * blockDim.x) {
            I h = e / (I)g.W, w = e - h * (I)g.W;
            A acc = v0;
            for (int i = 0; i < g.kh; i++) {
                I hy = h + g.ph - (I)i * g.dh;
                if (hy < 0) break;   /* larger i only lowers hy */
                I oy = hy;
                if (!UNIT) {
                    if (hy % g.sh) continue;
                    oy = hy / g.sh;
                }
                if (oy >= (I)g.oh) continue;
                const typename V::S *srow = src + (I)i * g.kw * NL + oy * (I)g.ow;
                for (int j = 0; j < g.kw; j++) {
                    I wx = w + g.pw - (I)j * g.dw;
                    if (wx < 0) break;
                    I ox = wx;
                    if (!UNIT) {
                        if (wx % g.sw) continue;
                        ox = wx / g.sw;
                    }
                    if (ox >= (I)g.ow) continue;
                    acc += V::ld(srow[(I)j * NL + ox]);
                }
            }
            x[p * HW + e] = V::st(acc);
        }
    }
}

static conv_bgeo make_bgeo(int64_t N, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph,
                           int pw, int dh, int dw, int64_t oh, int64_t ow) {
    conv_bgeo g = { N, C, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw };
    return g;
}

/* 32-bit indices when every offset a thread forms (plus a grid stride) fits */
static bool fits32(int64_t a, int64_t b) {
    const int64_t lim = (int64_t)1 << 30;
    return a < lim && b < lim;
}

/* blocks: x over `inner` elements, y over `outer` rows/planes, at most ~32 blocks an SM in all */
static dim3 grid2(int64_t inner, int64_t outer, int dev) {
    int64_t bx = (inner + THREADS - 1) / THREADS, by = outer < ROWS_MAX ? outer : ROWS_MAX;
    int64_t cap = (int64_t)wfc_num_sms(dev) * 32;
    if (by < 1) by = 1;
    int64_t xcap = cap / by > 0 ? cap / by : 1;
    if (bx > xcap) bx = xcap;
    if (bx < 1) bx = 1;
    return dim3((unsigned)bx, (unsigned)by, 1);
}

static int batch_dtype(const char *what, int dtype) {
    if (dtype == WF_F32 || dtype == WF_F64 || dtype == WF_F16 || dtype == WF_BF16) return 0;
    return wfc_error(WF_EDTYPE, "%s (cuda): dtype %s is not supported (floating dtypes only)", what,
                     wf_dtype_name((wf_dtype)dtype));
}

extern "C" int wf__cuda_im2col_batch(void *col, const void *x, int dtype, int64_t N, int64_t C, int64_t H,
                                     int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                                     int64_t oh, int64_t ow, int dev) {
    int rc = batch_dtype("im2col_batch", dtype);
    cudaStream_t st;
    if (rc || (rc = wfc_begin(dev, "im2col_batch", &st))) return rc;
    int64_t rows = C * kh * kw, nl = N * oh * ow;
    if (rows <= 0 || nl <= 0) return 0;
    conv_bgeo g = make_bgeo(N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow);
    dim3 b = grid2(nl, rows, dev);
    bool small = fits32(rows * nl, N * C * H * W);
#define IM2COL_B(E)                                                                                 \
    do {                                                                                            \
        if (small) im2col_batch_kernel<E, int32_t><<<b, THREADS, 0, st>>>((E *)col, (const E *)x, g); \
        else im2col_batch_kernel<E, int64_t><<<b, THREADS, 0, st>>>((E *)col, (const E *)x, g);     \
    } while (0)
    switch (wfc_dtype_size(dtype)) {
    case 8: IM2COL_B(uint64_t); break;
    case 4: IM2COL_B(uint32_t); break;
    default: IM2COL_B(uint16_t); break;
    }
#undef IM2COL_B
    return wfc_check("im2col_batch kernel", dev);
}

template <int DT>
static void launch_col2im_batch(void *x, const void *col, const void *bias, const conv_bgeo &g, bool small, dim3 b,
                                cudaStream_t st) {
    typedef typename cvt<DT>::S S;
    bool unit = g.sh == 1 && g.sw == 1;
    S *xs = (S *)x;
    const S *cs = (const S *)col, *bs = (const S *)bias;
    if (small && unit) col2im_batch_kernel<DT, int32_t, true><<<b, THREADS, 0, st>>>(xs, cs, bs, g);
    else if (small) col2im_batch_kernel<DT, int32_t, false><<<b, THREADS, 0, st>>>(xs, cs, bs, g);
    else if (unit) col2im_batch_kernel<DT, int64_t, true><<<b, THREADS, 0, st>>>(xs, cs, bs, g);
    else col2im_batch_kernel<DT, int64_t, false><<<b, THREADS, 0, st>>>(xs, cs, bs, g);
}

extern "C" int wf__cuda_col2im_batch(void *x, const void *col, const void *bias, int dtype, int64_t N, int64_t C,
                                     int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                                     int dw, int64_t oh, int64_t ow, int dev) {
    int rc = batch_dtype("col2im_batch", dtype);
    cudaStream_t st;
    if (rc || (rc = wfc_begin(dev, "col2im_batch", &st))) return rc;
    int64_t planes = N * C, hw = H * W;
    if (planes <= 0 || hw <= 0) return 0;
    conv_bgeo g = make_bgeo(N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow);
    dim3 b = grid2(hw, planes, dev);
    bool small = fits32(C * kh * kw * N * oh * ow, planes * hw);
    switch (dtype) {
    case WF_F32: launch_col2im_batch<WF_F32>(x, col, bias, g, small, b, st); break;
    case WF_F64: launch_col2im_batch<WF_F64>(x, col, bias, g, small, b, st); break;
    case WF_F16: launch_col2im_batch<WF_F16>(x, col, bias, g, small, b, st); break;
    default: launch_col2im_batch<WF_BF16>(x, col, bias, g, small, b, st); break;
    }
    return wfc_check("col2im_batch kernel", dev);
}
