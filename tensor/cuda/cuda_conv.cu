/* tensor/cuda/cuda_conv.cu: im2col / col2im for conv2d on the GPU (one contiguous image
 * [C,H,W] per call); the CUDA twin of tensor/cpu/conv.c, with the same col layout, so the
 * conv front-end runs one GEMM per image on either device. col2im adds into x. */
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
