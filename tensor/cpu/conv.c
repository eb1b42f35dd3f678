/* tensor/cpu/conv.c: im2col / col2im for conv2d on one contiguous image [C,H,W].
 *
 * col has shape [C*kh*kw, oh*ow] (row-major); row r = c*kh*kw + i*kw + j holds, for every
 * output position (oy, ox), the input x[c, oy*sh - ph + i*dh, ox*sw - pw + j*dw], or 0 where
 * that falls in the padding. col2im is the adjoint: it adds every col entry back into x at
 * the same position (x must be zeroed, or hold what the sum should start from). f32/f64. */
#include "cpu_kernels.h"
#include "weft_config.h"

#define DEFINE_IM2COL(T, S)                                                                     \
    static void im2col_##S(T *col, const T *x, int64_t C, int64_t H, int64_t W, int kh, int kw, \
                           int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,          \
                           int64_t ow) {                                                        \
        int64_t rows = C * kh * kw, L = oh * ow;                                                \
        WF_OMP_FOR_ROWS                                                                         \
        for (int64_t r = 0; r < rows; r++) {                                                    \
            int64_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;                           \
            const T *xc = x + c * H * W;                                                        \
            T *dst = col + r * L;                                                               \
            for (int64_t oy = 0; oy < oh; oy++) {                                               \
                int64_t y = oy * sh - ph + (int64_t)i * dh;                                     \
                T *d = dst + oy * ow;                                                           \
                if (y < 0 || y >= H) {                                                          \
                    for (int64_t ox = 0; ox < ow; ox++) d[ox] = 0;                              \
                    continue;                                                                   \
                }                                                                               \
                const T *xr = xc + y * W;                                                       \
                int64_t x0 = (int64_t)j * dw - pw;                                              \
                if (sw == 1 && x0 >= 0 && x0 + ow <= W) {                                       \
                    for (int64_t ox = 0; ox < ow; ox++) d[ox] = xr[x0 + ox];                    \
                    continue;                                                                   \
                }                                                                               \
                for (int64_t ox = 0; ox < ow; ox++) {                                           \
                    int64_t xx = x0 + ox * sw;                                                  \
                    d[ox] = (xx >= 0 && xx < W) ? xr[xx] : (T)0;                                \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    /* one thread per channel: channels write disjoint parts of x */                           \
    static void col2im_##S(T *x, const T *col, int64_t C, int64_t H, int64_t W, int kh, int kw, \
                           int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,          \
                           int64_t ow) {                                                        \
        int64_t L = oh * ow;                                                                    \
        WF_OMP_FOR_CHANNELS                                                                     \
        for (int64_t c = 0; c < C; c++) {                                                       \
            T *xc = x + c * H * W;                                                              \
            for (int i = 0; i < kh; i++)                                                        \
                for (int j = 0; j < kw; j++) {                                                  \
                    const T *src = col + ((c * kh + i) * kw + j) * L;                           \
                    for (int64_t oy = 0; oy < oh; oy++) {                                       \
                        int64_t y = oy * sh - ph + (int64_t)i * dh;                             \
                        if (y < 0 || y >= H) continue;                                          \
                        T *xr = xc + y * W;                                                     \
                        const T *s = src + oy * ow;                                             \
                        int64_t x0 = (int64_t)j * dw - pw;                                      \
                        for (int64_t ox = 0; ox < ow; ox++) {                                   \
                            int64_t xx = x0 + ox * sw;                                          \
                            if (xx >= 0 && xx < W) xr[xx] += s[ox];                             \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
        }                                                                                       \
    }

#ifdef WEFT_HAVE_OPENMP
#define WF_OMP_FOR_ROWS _Pragma("omp parallel for schedule(static) if (rows * L > 32768)")
#define WF_OMP_FOR_CHANNELS _Pragma("omp parallel for schedule(static) if (C * H * W > 32768)")
#else
#define WF_OMP_FOR_ROWS
#define WF_OMP_FOR_CHANNELS
#endif

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

int wf__cpu_im2col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,
                   int64_t ow, wf_device dev) {
    (void)dev;
    switch (dt) {
    case WF_F32: im2col_f32(col, x, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    case WF_F64: im2col_f64(col, x, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    default:
        return wf__error(WF_EDTYPE, "im2col (cpu): dtype %s is not supported (float32/float64 only)",
                         wf_dtype_name(dt));
    }
}

int wf__cpu_col2im(void *x, const void *col, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh,
                   int64_t ow, wf_device dev) {
    (void)dev;
    switch (dt) {
    case WF_F32: col2im_f32(x, col, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    case WF_F64: col2im_f64(x, col, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow); return 0;
    default:
        return wf__error(WF_EDTYPE, "col2im (cpu): dtype %s is not supported (float32/float64 only)",
                         wf_dtype_name(dt));
    }
}
