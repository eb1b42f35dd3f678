/* tensor/cpu/fp8_emulate.c: the fp8 Linear's three launchers (tensor/cuda/cuda_api.h's
 * wf__cuda_fp8_cast / _update / _gemm) on host memory, from this folder's reference formats
 * and scaling: the same arguments and results, the GEMM summed in double. The CPU has no fp8
 * GEMM, so the "transformer-engine" precision stays refused there (precision/plugins.c); this
 * lets the fp8 Linear node (autograd/fn_fp8_linear.c) run its whole path on the CPU, so that
 * its wiring (which bytes, which scales, which transposed copy, when the scales move) is
 * tested in every build, not only on a GPU of capability 8.9. Not in the minimal preset. */
#include "fp8.h"
#include "../tensor_impl.h"

#include <math.h>
#include <string.h>

/* colsum[c] = the f32 sum of column c of x [rows, cols] in fp8.h's order (WF__FP8_COLSUM_*) */
static void colsum_host(const char *xp, wf_dtype dt, int64_t rows, int64_t cols, float *colsum) {
    size_t es = wf_dtype_size(dt);
    for (int64_t c = 0; c < cols; c++) colsum[c] = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += WF__FP8_COLSUM_ROWS)
        for (int64_t c = 0; c < cols; c++) {
            float block = 0.0f;
            for (int k = 0; k < WF__FP8_COLSUM_LANES; k++) {
                float lane = 0.0f;
                for (int64_t r = r0 + k; r < r0 + WF__FP8_COLSUM_ROWS && r < rows; r += WF__FP8_COLSUM_LANES)
                    lane += (float)wf__load(xp + (size_t)(r * cols + c) * es, dt);
                block = k ? block + lane : lane;
            }
            colsum[c] += block;
        }
}

int wf__fp8_cast_host(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, void *y,
                      void *yt, float *amax, float *scale_inv_out, float *colsum) {
    const char *xp = x;
    uint8_t *yp = y, *tp = yt;
    size_t es = wf_dtype_size((wf_dtype)dtype);
    float sc = *scale, m = amax ? *amax : 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = (float)wf__load(xp + (size_t)(r * cols + c) * es, (wf_dtype)dtype);
            uint8_t q = wf__fp8_encode(v * sc, (wf__fp8_format)fmt);
            if (yp) yp[r * cols + c] = q;
            if (tp) tp[c * rows + r] = q;
            if (isnan(v) || isnan(m)) m = NAN;   /* NaN wins, as the kernel's */
            else if (fabsf(v) > m) m = fabsf(v);
        }
    if (amax) *amax = m;
    if (scale_inv_out) *scale_inv_out = 1.0f / sc;
    if (colsum) colsum_host(xp, (wf_dtype)dtype, rows, cols, colsum);
    return 0;
}

/* slots as cuda_api.h lays them out: { scale, scale_inv, amax, pos (int bits), history[len] } */
int wf__fp8_update_host(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin) {
    for (int s = 0; s < nslots; s++) {
        float *p = slots + s * slot_stride;
        int pos;
        memcpy(&pos, &p[3], sizeof pos);
        wf__fp8_scaling_update(p + 4, len, &pos, p[2], wf__fp8_max((wf__fp8_format)fmt), margin, &p[0], &p[1]);
        memcpy(&p[3], &pos, sizeof pos);
        p[2] = 0;   /* the next step's amax starts from 0 */
    }
    return 0;
}

int wf__fp8_gemm_host(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv,
                      const void *B, int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta,
                      const void *bias) {
    const uint8_t *a = A, *b = B;
    size_t ds = wf_dtype_size((wf_dtype)d_dtype);
    double scale = (double)*a_scale_inv * (double)*b_scale_inv;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t t = 0; t < k; t++)
                acc += (double)wf__fp8_decode(a[i * k + t], (wf__fp8_format)a_fmt) *
                       (double)wf__fp8_decode(b[j * k + t], (wf__fp8_format)b_fmt);
            acc *= scale;
            if (bias) acc += wf__load((const char *)bias + (size_t)j * 2, WF_BF16);
            char *d = (char *)D + (size_t)(i * n + j) * ds;
            if (beta != 0) acc += (double)beta * wf__load(d, (wf_dtype)d_dtype);
            wf__store(d, (wf_dtype)d_dtype, acc);
        }
    return 0;
}
