/* tensor/cpu/fp8_format.c: float <-> fp8 bytes (OCP FP8 E4M3 and E5M2), the CPU reference of
 * the cast kernel in tensor/cuda/cuda_fp8.cu.
 *
 * E4M3: bias 7, no infinity, S.1111.111 is NaN, so the largest finite value is S.1111.110 =
 * 448. E5M2: bias 15, IEEE-like (S.11111.00 infinity, S.11111.xx NaN), largest 57344.
 * Encoding saturates (as TE's cast and the hardware's .satfinite conversion do): an fp8
 * tensor never holds an infinity that a GEMM would spread. */
#include "fp8.h"

#include <math.h>

typedef struct { int mbits, bias; uint8_t max_code, nan_code; } fmt_desc;

static fmt_desc desc(wf__fp8_format fmt) {
    if (fmt == WF__FP8_E5M2) return (fmt_desc){ 2, 15, 0x7b, 0x7f };
    return (fmt_desc){ 3, 7, 0x7e, 0x7f };
}

float wf__fp8_max(wf__fp8_format fmt) { return fmt == WF__FP8_E5M2 ? WF__FP8_E5M2_MAX : WF__FP8_E4M3_MAX; }

uint8_t wf__fp8_encode(float x, wf__fp8_format fmt) {
    fmt_desc d = desc(fmt);
    if (isnan(x)) return d.nan_code;                /* 0x7f whatever x's sign, as the hardware's cvt */
    uint8_t sign = signbit(x) ? 0x80 : 0;
    double a = fabs((double)x);
    if (a >= (double)wf__fp8_max(fmt)) return sign | d.max_code;
    double min_normal = ldexp(1.0, 1 - d.bias);
    if (a < min_normal) {
        /* subnormal: multiples of 2^(1 - bias - mbits); a rounding up to min_normal gives the
         * code 1 << mbits, which is min_normal's code */
        double q = nearbyint(ldexp(a, d.bias - 1 + d.mbits));
        return sign | (uint8_t)q;
    }
    int ex;
    double f = frexp(a, &ex);                       /* a = f 2^ex, f in [0.5, 1) */
    int e = ex - 1;                                 /* a = (2 f) 2^e, 2 f in [1, 2) */
    double q = nearbyint(ldexp(2 * f - 1, d.mbits));
    if (q == ldexp(1.0, d.mbits)) { q = 0; e++; }
    int code = ((e + d.bias) << d.mbits) | (int)q;
    if (code > d.max_code) code = d.max_code;       /* rounded past the largest finite value */
    return sign | (uint8_t)code;
}

float wf__fp8_decode(uint8_t code, wf__fp8_format fmt) {
    fmt_desc d = desc(fmt);
    float s = code & 0x80 ? -1.0f : 1.0f;
    int mag = code & 0x7f, ebits = 7 - d.mbits, e = mag >> d.mbits, m = mag & ((1 << d.mbits) - 1);
    if (fmt == WF__FP8_E4M3 && mag == 0x7f) return NAN;
    if (fmt == WF__FP8_E5M2 && e == (1 << ebits) - 1) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexpf((float)m, 1 - d.bias - d.mbits);
    return s * ldexpf((float)((1 << d.mbits) | m), e - d.bias - d.mbits);
}
