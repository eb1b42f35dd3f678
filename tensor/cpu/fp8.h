/* tensor/cpu/fp8.h: the CPU reference of the fp8 formats (OCP FP8: E4M3, E5M2) and of
 * Transformer Engine's delayed scaling, which the GPU kernels of tensor/cuda/cuda_fp8.cu must
 * reproduce bit for bit (tests/cuda/test_cuda_fp8.c compares them). Not in the minimal preset. */
#ifndef WEFT_CPU_FP8_H
#define WEFT_CPU_FP8_H

#include <stdint.h>

/* the format numbers of cuda_api.h's fp8 launchers: E4M3 for the forward (inputs, weights),
 * E5M2 for gradients (TE's HYBRID recipe) */
typedef enum { WF__FP8_E4M3 = 0, WF__FP8_E5M2 = 1 } wf__fp8_format;

#define WF__FP8_E4M3_MAX 448.0f
#define WF__FP8_E5M2_MAX 57344.0f

/* the largest finite value of fmt */
float wf__fp8_max(wf__fp8_format fmt);
/* x as an fp8 byte: round to nearest even, subnormals kept, |x| beyond the largest finite
 * value (infinities too) saturating to +-max as TE's cast does; NaN -> 0x7f (E4M3's
 * S.1111.111, an E5M2 NaN too) whatever its sign, as the GPU's conversion (cvt .satfinite). */
uint8_t wf__fp8_encode(float x, wf__fp8_format fmt);
/* the value of an fp8 byte (exact in float) */
float wf__fp8_decode(uint8_t code, wf__fp8_format fmt);

/* Delayed scaling (TE's DelayedScaling, amax_compute_algo "max"): the step's amax enters a
 * rolling history of len entries at *pos (which then advances, wrapping), amax = the history's
 * maximum (a NaN anywhere makes it NaN), and scale = fp8_max / amax / 2^margin, scale_inv =
 * 1 / scale; the old scale and scale_inv stay when amax is 0 or not finite, or the new scale
 * would not be finite. Starts from scale 1 and a zero history. */
void wf__fp8_scaling_update(float *history, int len, int *pos, float amax, float fp8_max, int margin, float *scale,
                            float *scale_inv);

/* The column sums a cast can give beside its bytes (the bias gradient of the fp8 Linear's
 * backward, Transformer Engine's cast_transpose_dbias), in f32 and in one fixed order, which the
 * GPU kernels follow so that every build gives the same bits: rows in blocks of
 * WF__FP8_COLSUM_ROWS; within a block, lane k (0 .. WF__FP8_COLSUM_LANES - 1) sums the rows
 * k, k + LANES, k + 2 LANES, ... from 0 (rows past the end skipped), the block's sum is lane 0
 * plus lane 1 plus ... in turn, and the column's sum 0 plus the blocks' sums in turn. */
#define WF__FP8_COLSUM_ROWS 64
#define WF__FP8_COLSUM_LANES 16

/* tensor/cuda/cuda_api.h's wf__cuda_fp8_cast / _update / _gemm on host memory, the same
 * arguments less the device (tensor/cpu/fp8_emulate.c): the fp8 Linear's path on the CPU, for
 * its tests (the CPU has no fp8 GEMM; the precision is refused there). 0 always. */
int wf__fp8_cast_host(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, void *y,
                      void *yt, float *amax, float *scale_inv_out, float *colsum);
int wf__fp8_update_host(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin);
int wf__fp8_gemm_host(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv,
                      const void *B, int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta,
                      const void *bias);

#endif
