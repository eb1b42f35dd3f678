/* tensor/cpu/half_convert.c: contiguous bf16/f16 <-> f32 array conversions.
 *
 * Every half-precision CPU path (casts, GEMM operands, elementwise math staged through f32)
 * funnels through these loops, so they are written to vectorize: bf16 is a bit shift one way
 * and a branch-free round-to-nearest-even the other (NaN kept quiet by a select, not a branch).
 * The results are bit-identical to the scalar wf__bf16_to_f32 / wf__f32_to_bf16. f16 keeps
 * the scalar conversions (its subnormal rounding does not vectorize as simply); it is the
 * rarer CPU dtype, since "16-mixed" on the CPU falls back to bf16. */
#include "cpu_kernels.h"

/* Pure integer lane work: AVX-512 halves its cost (16 lanes, and a one-instruction 32 -> 16
 * bit narrowing), hence the x86-64-v4 clones (WF_MULTIVERSION_V4, tensor/tensor_impl.h). */

WF_MULTIVERSION_V4 static void bf16_to_f32_n(float *restrict y, const uint16_t *restrict x, int64_t n) {
    uint32_t *restrict yu = (uint32_t *)y;
    for (int64_t i = 0; i < n; i++) yu[i] = (uint32_t)x[i] << 16;
}

WF_MULTIVERSION_V4 static void f32_to_bf16_n(uint16_t *restrict y, const float *restrict x, int64_t n) {
    const uint32_t *restrict xu = (const uint32_t *)x;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = xu[i];
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t quiet = (u >> 16) | 0x40u;
        y[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
    }
}

void wf__half_to_f32_n(float *y, const uint16_t *x, int64_t n, bool bf16) {
    if (bf16) { bf16_to_f32_n(y, x, n); return; }
    for (int64_t i = 0; i < n; i++) y[i] = wf__f16_to_f32(x[i]);
}

void wf__f32_to_half_n(uint16_t *y, const float *x, int64_t n, bool bf16) {
    if (bf16) { f32_to_bf16_n(y, x, n); return; }
    for (int64_t i = 0; i < n; i++) y[i] = wf__f32_to_f16(x[i]);
}
