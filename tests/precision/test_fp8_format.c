/* tests/precision/test_fp8_format.c: the CPU reference of the fp8 formats and of delayed
 * scaling (tensor/cpu/fp8_format.c, fp8_scaling.c): a table of exact encodings (ties to even,
 * subnormals, saturation, NaN, signed zero), every one of the 256 codes of both formats
 * decoding and encoding back to itself, the amax history's rolling and its zero / inf /
 * NaN cases, and the order of the column sums a cast gives (fp8.h's WF__FP8_COLSUM_*, which the
 * GPU kernels follow bit for bit: tests/cuda/test_cuda_fp8.c). */
#include "test_util.h"
#include "tensor/cpu/fp8.h"

#include <math.h>
#include <string.h>

static const struct { float x; wf__fp8_format f; uint8_t code; } table[] = {
    /* E4M3: bias 7, 3 mantissa bits */
    { 0.0f, WF__FP8_E4M3, 0x00 }, { -0.0f, WF__FP8_E4M3, 0x80 },
    { 1.0f, WF__FP8_E4M3, 0x38 }, { -1.0f, WF__FP8_E4M3, 0xb8 },
    { 1.125f, WF__FP8_E4M3, 0x39 },
    { 1.0625f, WF__FP8_E4M3, 0x38 },       /* tie between 1 and 1.125: to even (1) */
    { 1.1875f, WF__FP8_E4M3, 0x3a },       /* tie between 1.125 and 1.25: to even (1.25) */
    { 1.07f, WF__FP8_E4M3, 0x39 },         /* above the tie */
    { 1.9375f, WF__FP8_E4M3, 0x40 },       /* tie between 1.875 and 2: carries into the exponent */
    { 448.0f, WF__FP8_E4M3, 0x7e }, { -448.0f, WF__FP8_E4M3, 0xfe },
    { 460.0f, WF__FP8_E4M3, 0x7e }, { 1e6f, WF__FP8_E4M3, 0x7e },       /* saturation */
    { INFINITY, WF__FP8_E4M3, 0x7e }, { -INFINITY, WF__FP8_E4M3, 0xfe },
    { NAN, WF__FP8_E4M3, 0x7f }, { -NAN, WF__FP8_E4M3, 0x7f },
    { 0.015625f, WF__FP8_E4M3, 0x08 },     /* 2^-6, the smallest normal */
    { 0.013671875f, WF__FP8_E4M3, 0x07 },  /* 7 * 2^-9, the largest subnormal */
    { 0.001953125f, WF__FP8_E4M3, 0x01 },  /* 2^-9, the smallest subnormal */
    { 0.0009765625f, WF__FP8_E4M3, 0x00 }, /* 2^-10: tie between 0 and 2^-9, to even (0) */
    { 0.0029296875f, WF__FP8_E4M3, 0x02 }, /* 1.5 * 2^-9: tie, to even (2 * 2^-9) */
    { 0.001f, WF__FP8_E4M3, 0x01 },
    { -1e-30f, WF__FP8_E4M3, 0x80 },       /* underflow keeps the sign */
    { 0.0146484375f, WF__FP8_E4M3, 0x08 }, /* 7.5 * 2^-9: rounds up to the smallest normal */
    /* E5M2: bias 15, 2 mantissa bits */
    { 1.0f, WF__FP8_E5M2, 0x3c }, { -2.0f, WF__FP8_E5M2, 0xc0 },
    { 1.125f, WF__FP8_E5M2, 0x3c },        /* tie between 1 and 1.25: to even (1) */
    { 1.375f, WF__FP8_E5M2, 0x3e },        /* tie between 1.25 and 1.5: to even (1.5) */
    { 57344.0f, WF__FP8_E5M2, 0x7b }, { 60000.0f, WF__FP8_E5M2, 0x7b }, { 1e30f, WF__FP8_E5M2, 0x7b },
    { INFINITY, WF__FP8_E5M2, 0x7b }, { -INFINITY, WF__FP8_E5M2, 0xfb },
    { NAN, WF__FP8_E5M2, 0x7f }, { -NAN, WF__FP8_E5M2, 0x7f },
    { 6.103515625e-05f, WF__FP8_E5M2, 0x04 },   /* 2^-14, the smallest normal */
    { 1.52587890625e-05f, WF__FP8_E5M2, 0x01 }, /* 2^-16, the smallest subnormal */
    { 7.62939453125e-06f, WF__FP8_E5M2, 0x00 }, /* 2^-17: tie, to even (0) */
    { -0.0f, WF__FP8_E5M2, 0x80 },
};

START_TEST(test_encode_table) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        uint8_t got = wf__fp8_encode(table[i].x, table[i].f);
        ck_assert_msg(got == table[i].code, "row %zu: %.10g as %s gave 0x%02x, expected 0x%02x", i, (double)table[i].x,
                      table[i].f == WF__FP8_E4M3 ? "E4M3" : "E5M2", got, table[i].code);
    }
}
END_TEST

START_TEST(test_decode_values) {
    ck_assert(wf__fp8_decode(0x7e, WF__FP8_E4M3) == 448.0f);
    ck_assert(wf__fp8_decode(0x01, WF__FP8_E4M3) == 0.001953125f);
    ck_assert(wf__fp8_decode(0x38, WF__FP8_E4M3) == 1.0f);
    ck_assert(isnan(wf__fp8_decode(0x7f, WF__FP8_E4M3)) && isnan(wf__fp8_decode(0xff, WF__FP8_E4M3)));
    ck_assert(signbit(wf__fp8_decode(0x80, WF__FP8_E4M3)) && wf__fp8_decode(0x80, WF__FP8_E4M3) == 0);
    ck_assert(wf__fp8_decode(0x7b, WF__FP8_E5M2) == 57344.0f);
    ck_assert(wf__fp8_decode(0x7c, WF__FP8_E5M2) == INFINITY && wf__fp8_decode(0xfc, WF__FP8_E5M2) == -INFINITY);
    ck_assert(isnan(wf__fp8_decode(0x7d, WF__FP8_E5M2)) && isnan(wf__fp8_decode(0x7f, WF__FP8_E5M2)));
    ck_assert(wf__fp8_decode(0x01, WF__FP8_E5M2) == 1.52587890625e-05f);
    ck_assert(wf__fp8_max(WF__FP8_E4M3) == 448.0f && wf__fp8_max(WF__FP8_E5M2) == 57344.0f);
}
END_TEST

/* decode then encode gives every code back: NaNs aside, and E5M2's infinities, which the
 * saturating cast maps to +-max */
START_TEST(test_all_codes_round_trip) {
    for (int f = 0; f < 2; f++) {
        int nan = 0, inf = 0;
        for (int c = 0; c < 256; c++) {
            float v = wf__fp8_decode((uint8_t)c, (wf__fp8_format)f);
            if (isnan(v)) { nan++; continue; }
            uint8_t back = wf__fp8_encode(v, (wf__fp8_format)f);
            if (isinf(v)) {
                inf++;
                ck_assert_int_eq(back, (c & 0x80) | 0x7b);
                continue;
            }
            ck_assert_msg(back == c, "%s code 0x%02x decodes to %.10g, which encodes to 0x%02x", f ? "E5M2" : "E4M3", c,
                          (double)v, back);
            /* ordered: the next code up is larger (positive codes below the largest) */
            if (c < 0x7e - f * 3 && c != 0x7f) ck_assert(wf__fp8_decode((uint8_t)(c + 1), (wf__fp8_format)f) > v);
        }
        ck_assert_int_eq(nan, f ? 6 : 2);
        ck_assert_int_eq(inf, f ? 2 : 0);
    }
}
END_TEST

/* a value between two neighbouring codes goes to the nearer one, for every neighbouring pair */
START_TEST(test_midpoints_round_to_nearest) {
    for (int f = 0; f < 2; f++) {
        uint8_t top = f ? 0x7b : 0x7e;
        for (int c = 0; c < top; c++) {
            float lo = wf__fp8_decode((uint8_t)c, (wf__fp8_format)f), hi = wf__fp8_decode((uint8_t)(c + 1), (wf__fp8_format)f);
            float mid = (lo + hi) / 2, q = (hi - lo) / 8;
            ck_assert_int_eq(wf__fp8_encode(mid - q, (wf__fp8_format)f), c);
            ck_assert_int_eq(wf__fp8_encode(mid + q, (wf__fp8_format)f), c + 1);
            ck_assert_int_eq(wf__fp8_encode(mid, (wf__fp8_format)f), c & 1 ? c + 1 : c);   /* tie: even code */
            ck_assert_int_eq(wf__fp8_encode(-(mid + q), (wf__fp8_format)f), 0x80 | (c + 1));
        }
    }
}
END_TEST

START_TEST(test_scaling_first_steps_and_rolling) {
    enum { L = 4 };
    float h[L] = { 0 }, scale = 1, sinv = 1;
    int pos = 0;
    /* nothing seen: the scale stays 1 */
    wf__fp8_scaling_update(h, L, &pos, 0.0f, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 1.0f && sinv == 1.0f && pos == 1);
    wf__fp8_scaling_update(h, L, &pos, 2.0f, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 224.0f && sinv == 1.0f / 224.0f);
    /* a larger amax wins at once; a smaller one only once the larger has rolled out */
    wf__fp8_scaling_update(h, L, &pos, 8.0f, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 56.0f);
    float amaxes[] = { 1.0f, 1.0f, 1.0f, 1.0f };
    float want[] = { 56.0f, 56.0f, 56.0f, 448.0f };   /* 8 entered at step 3, gone 4 entries later */
    for (int i = 0; i < 4; i++) {
        wf__fp8_scaling_update(h, L, &pos, amaxes[i], 448.0f, 0, &scale, &sinv);
        ck_assert_msg(scale == want[i], "step %d: scale %g, expected %g", i, (double)scale, (double)want[i]);
        ck_assert(sinv == 1.0f / want[i]);
    }
    ck_assert_int_eq(pos, 7 % L);
    /* margin: one more power of two of headroom */
    wf__fp8_scaling_update(h, L, &pos, 1.0f, 57344.0f, 1, &scale, &sinv);
    ck_assert(scale == 28672.0f && sinv == 1.0f / 28672.0f);
}
END_TEST

START_TEST(test_scaling_keeps_scale_on_zero_inf_nan) {
    enum { L = 3 };
    float h[L] = { 0 }, scale = 1, sinv = 1;
    int pos = 0;
    wf__fp8_scaling_update(h, L, &pos, 4.0f, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 112.0f);
    /* an overflow in the step: kept while it is in the history */
    wf__fp8_scaling_update(h, L, &pos, INFINITY, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 112.0f && sinv == 1.0f / 112.0f);
    wf__fp8_scaling_update(h, L, &pos, NAN, 448.0f, 0, &scale, &sinv);
    ck_assert(scale == 112.0f);
    wf__fp8_scaling_update(h, L, &pos, 1.0f, 448.0f, 0, &scale, &sinv);   /* pushes out the 4 */
    ck_assert(scale == 112.0f);
    wf__fp8_scaling_update(h, L, &pos, 1.0f, 448.0f, 0, &scale, &sinv);   /* pushes out inf */
    ck_assert(scale == 112.0f);
    wf__fp8_scaling_update(h, L, &pos, 1.0f, 448.0f, 0, &scale, &sinv);   /* pushes out NaN */
    ck_assert(scale == 448.0f && sinv == 1.0f / 448.0f);
    /* an amax too small for a finite scale keeps the scale */
    float h2[2] = { 0 }, s2 = 3, i2 = 1.0f / 3;
    int p2 = 0;
    wf__fp8_scaling_update(h2, 2, &p2, 1e-38f, 448.0f, 0, &s2, &i2);
    ck_assert(s2 == 3.0f && i2 == 1.0f / 3);
}
END_TEST

/* Three columns whose f32 sums tell fp8.h's order from its neighbours: rows in 64-row blocks,
 * lanes of every 16th row within a block, the lanes then the blocks summed in turn.
 *   A: rows 0 and 16 (lane 0) cancel, rows 1..3 add 1 each: 3 (a sum down the rows in turn
 *      loses the 1s to 2^24 and gives 0); plus row 64 (block 1) 0.5: 3.5.
 *   B: rows 0, 1, 2 = 2^24, 1, 1: lanes 2^24, 1, 1 summed in turn lose both 1s: 2^24 (the exact
 *      sum, in double, is 2^24 + 2).
 *   C: row 0 = 2^24 (block 0), rows 64 and 65 = 1 (block 1's lanes 0 and 1: 2): 2^24 + 2 (lanes
 *      running down the whole column, not per block, would give row 0 + row 64 = 2^24 first). */
START_TEST(test_colsum_order) {
    enum { R = 80, C = 3 };
    float x[R * C] = { 0 };
    const float big = 16777216.0f;
    x[0 * C + 0] = big, x[16 * C + 0] = -big, x[1 * C + 0] = x[2 * C + 0] = x[3 * C + 0] = 1, x[64 * C + 0] = 0.5f;
    x[0 * C + 1] = big, x[1 * C + 1] = x[2 * C + 1] = 1;
    x[0 * C + 2] = big, x[64 * C + 2] = x[65 * C + 2] = 1;
    float one = 1, cs[C] = { -1, -1, -1 };
    ck_assert_int_eq(wf__fp8_cast_host(x, WF_F32, R, C, WF__FP8_E4M3, &one, NULL, NULL, NULL, NULL, cs), 0);
    ck_assert_msg(cs[0] == 3.5f, "A: %.9g, expected 3.5", (double)cs[0]);
    ck_assert_msg(cs[1] == big, "B: %.9g, expected 2^24", (double)cs[1]);
    ck_assert_msg(cs[2] == big + 2, "C: %.9g, expected 2^24 + 2", (double)cs[2]);
    /* no rows: zeros */
    ck_assert_int_eq(wf__fp8_cast_host(x, WF_F32, 0, C, WF__FP8_E4M3, &one, NULL, NULL, NULL, NULL, cs), 0);
    ck_assert(cs[0] == 0 && cs[1] == 0 && cs[2] == 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fp8_format");
    TCase *tc = tcase_create("fp8_format");
    tcase_add_test(tc, test_encode_table);
    tcase_add_test(tc, test_decode_values);
    tcase_add_test(tc, test_all_codes_round_trip);
    tcase_add_test(tc, test_midpoints_round_to_nearest);
    tcase_add_test(tc, test_scaling_first_steps_and_rolling);
    tcase_add_test(tc, test_scaling_keeps_scale_on_zero_inf_nan);
    tcase_add_test(tc, test_colsum_order);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
