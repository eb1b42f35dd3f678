/* tensor/cpu/vec_exp.h: e^x in f32 as plain arithmetic and bit selects, for loops the compiler
 * vectorizes (libm's expf is a call per element): the tanh GELU and tanh of elementwise.c and
 * the softmax rows of softmax.c. Within 1.3 ulp of the exact e^x over the whole f32 range
 * (swept once against double exp; tests/ops/test_fast_tanh.c holds tanh, built on it, to 3 ulp). */
#ifndef WEFT_CPU_VEC_EXP_H
#define WEFT_CPU_VEC_EXP_H

#include <stdint.h>
#include <string.h>

static inline float f_bits(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline int32_t i_bits(float f) { int32_t i; memcpy(&i, &f, sizeof i); return i; }
/* c ? a : b on the bits: gcc 12 (default -ftrapping-math) leaves a loop scalar for a float
 * ?: it will not if-convert; this form always vectorizes */
static inline float pick(int c, float a, float b) {
    int32_t m = -c;
    return f_bits((i_bits(a) & m) | (i_bits(b) & ~m));
}

/* e^v: v = n ln2 + r, |r| <= ln2 / 2 (ln2 split in two so n ln2 is exact), e^r by its Taylor
 * series to r^7 (last term < 2^-27), times 2^n built in the exponent bits in two halves (so
 * that n = 128 and the subnormal results come out right). v is clamped to [-104, 89], past
 * which the product is 0 (below half the least subnormal) or inf anyway; NaN stays NaN. */
static inline float f_exp(float v) {
    float c = pick(!(v <= 89.0f), 89.0f, pick(v < -104.0f, -104.0f, v));   /* NaN: fixed below */
    int32_t n = (int32_t)(c * 1.44269504f + pick(c < 0, -0.5f, 0.5f));   /* round(c / ln2) */
    float kf = (float)n;
    float r = (c - kf * 0.693145752f) - kf * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
              r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t n1 = n / 2;
    float e = p * f_bits((n1 + 127) << 23) * f_bits((n - n1 + 127) << 23);
    return pick(v != v, v, e);
}

#endif
