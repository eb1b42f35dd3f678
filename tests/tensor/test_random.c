/* tests/tensor/test_random.c: the Philox4x32-10 generator and the random fills: known-answer
 * vectors, the element layout shared with CUDA, reproducibility and state replay, and the
 * statistics of uniform, normal, randint and bernoulli draws. */
#include "test_util.h"

#include <stdint.h>

/* In the library (tensor/random.c); private, declared here for the known-answer tests. */
void wf__philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]);

/* A reference Philox4x32-10 with a full 4-word counter (the library only sets the first
 * two words), written from the Random123 paper for the known-answer vectors. */
static void philox_ref(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static float u01(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
static double u01d(uint32_t hi, uint32_t lo) {
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}

static double *host(wf_tensor *t) {
    ck_assert_msg(t != NULL, "%s", wf_error_message());
    double *v = malloc(sizeof(double) * (size_t)(wf_numel(t) ? wf_numel(t) : 1));
    ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    return v;
}

static void moments(const double *v, int64_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *var = s2 / (double)(n - 1);
}

START_TEST(philox_known_answers) {
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
        { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
          { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
        { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
          { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
    };
    for (int k = 0; k < 3; k++) {
        uint32_t o[4];
        philox_ref(kat[k].ctr, kat[k].key, o);
        for (int l = 0; l < 4; l++) ck_assert_uint_eq(o[l], kat[k].out[l]);
    }
    /* the library's entry: counter (lo, hi, 0, 0), key (lo32(seed), hi32(seed)) */
    uint32_t o[4];
    wf__philox4x32(0, 0, o);
    for (int l = 0; l < 4; l++) ck_assert_uint_eq(o[l], kat[0].out[l]);
    const uint64_t seeds[] = { 0, 1, 42, 0x299f31d0a4093822ull, UINT64_MAX };
    const uint64_t ctrs[] = { 0, 1, 7, 0x85a308d3243f6a88ull, UINT64_MAX };
    for (int s = 0; s < 5; s++)
        for (int c = 0; c < 5; c++) {
            uint32_t ctr[4] = { (uint32_t)ctrs[c], (uint32_t)(ctrs[c] >> 32), 0, 0 };
            uint32_t key[2] = { (uint32_t)seeds[s], (uint32_t)(seeds[s] >> 32) };
            uint32_t r[4];
            philox_ref(ctr, key, r);
            wf__philox4x32(seeds[s], ctrs[c], o);
            for (int l = 0; l < 4; l++) ck_assert_uint_eq(o[l], r[l]);
        }
}
END_TEST

START_TEST(same_seed_same_numbers) {
    WF_SCOPE {
        wf_manual_seed(42);
        double *a = host(wf_rand(WF_SHAPE(101), WF_F32));
        double *an = host(wf_randn(WF_SHAPE(7, 3), WF_F64));
        wf_manual_seed(42);
        double *b = host(wf_rand(WF_SHAPE(101), WF_F32));
        double *bn = host(wf_randn(WF_SHAPE(7, 3), WF_F64));
        for (int i = 0; i < 101; i++) ck_assert(a[i] == b[i]);
        for (int i = 0; i < 21; i++) ck_assert(an[i] == bn[i]);
        wf_manual_seed(43);
        double *c = host(wf_rand(WF_SHAPE(101), WF_F32));
        int same = 0;
        for (int i = 0; i < 101; i++) same += a[i] == c[i];
        ck_assert_int_lt(same, 5);
        /* consecutive draws differ */
        double *d = host(wf_rand(WF_SHAPE(101), WF_F32));
        same = 0;
        for (int i = 0; i < 101; i++) same += c[i] == d[i];
        ck_assert_int_lt(same, 5);
        free(a); free(an); free(b); free(bn); free(c); free(d);
    }
}
END_TEST

START_TEST(state_replay) {
    WF_SCOPE {
        wf_manual_seed(9);
        wf_tensor *warm = wf_rand(WF_SHAPE(5), WF_F32);
        (void)warm;
        wf_rng_state s = wf_rng_get_state();
        ck_assert_uint_eq(s.seed, 9);
        double *a = host(wf_randn(WF_SHAPE(50), WF_F32));
        double *b = host(wf_rand(WF_SHAPE(33), WF_F64));
        double *c = host(wf_randint(0, 1000, WF_SHAPE(17), WF_I64));
        double *d = host(wf_bernoulli_p(WF_SHAPE(9), 0.5, WF_F32));
        wf_rng_state after = wf_rng_get_state();
        ck_assert_uint_gt(after.offset, s.offset);
        wf_rng_set_state(s);
        double *a2 = host(wf_randn(WF_SHAPE(50), WF_F32));
        double *b2 = host(wf_rand(WF_SHAPE(33), WF_F64));
        double *c2 = host(wf_randint(0, 1000, WF_SHAPE(17), WF_I64));
        double *d2 = host(wf_bernoulli_p(WF_SHAPE(9), 0.5, WF_F32));
        ck_assert(!memcmp(a, a2, 50 * sizeof(double)));
        ck_assert(!memcmp(b, b2, 33 * sizeof(double)));
        ck_assert(!memcmp(c, c2, 17 * sizeof(double)));
        ck_assert(!memcmp(d, d2, 9 * sizeof(double)));
        wf_rng_state again = wf_rng_get_state();
        ck_assert_uint_eq(again.seed, after.seed);
        ck_assert_uint_eq(again.offset, after.offset);
        free(a); free(b); free(c); free(d); free(a2); free(b2); free(c2); free(d2);
    }
}
END_TEST

/* The layout documented in tensor/cpu/random.c, which CUDA reproduces. */
START_TEST(element_layout) {
    WF_SCOPE {
        wf_manual_seed(0x1234567890ull);
        wf_rand(WF_SHAPE(3), WF_F32);   /* move the offset off zero */
        wf_rng_state s = wf_rng_get_state();
        float f[10];
        ck_assert_int_eq(wf_to_array(wf_rand(WF_SHAPE(2, 5), WF_F32), f, WF_F32), 0);
        for (int i = 0; i < 10; i++) {
            uint32_t r[4];
            wf__philox4x32(s.seed, s.offset + (uint64_t)(i / 4), r);
            ck_assert_msg(f[i] == u01(r[i % 4]), "f32 element %d", i);
        }
        s = wf_rng_get_state();
        double d[7];
        ck_assert_int_eq(wf_to_array(wf_rand(WF_SHAPE(7), WF_F64), d, WF_F64), 0);
        for (int i = 0; i < 7; i++) {
            uint32_t r[4];
            wf__philox4x32(s.seed, s.offset + (uint64_t)(i / 2), r);
            ck_assert_msg(d[i] == u01d(r[2 * (i % 2)], r[2 * (i % 2) + 1]), "f64 element %d", i);
        }
        s = wf_rng_get_state();
        float z[5];
        ck_assert_int_eq(wf_to_array(wf_randn(WF_SHAPE(5), WF_F32), z, WF_F32), 0);
        for (int i = 0; i < 5; i++) {
            uint32_t r[4];
            wf__philox4x32(s.seed, s.offset + (uint64_t)(i / 2), r);
            float u1 = (float)((r[0] >> 8) + 1) * (1.0f / 16777216.0f), u2 = u01(r[1]);
            float rad = sqrtf(-2.0f * logf(u1));
            float e = (i % 2) ? rad * sinf(6.2831853071795864769f * u2) : rad * cosf(6.2831853071795864769f * u2);
            ck_assert_msg(fabsf(z[i] - e) <= 1e-6f * (1 + fabsf(e)), "normal element %d: %g vs %g", i, z[i], e);
        }
        s = wf_rng_get_state();
        int64_t k[6];
        ck_assert_int_eq(wf_to_array(wf_randint(-5, 95, WF_SHAPE(6), WF_I64), k, WF_I64), 0);
        for (int i = 0; i < 6; i++) {
            uint32_t r[4];
            wf__philox4x32(s.seed, s.offset + (uint64_t)(i / 4), r);
            ck_assert_int_eq(k[i], -5 + (int64_t)(r[i % 4] % 100));
        }
        s = wf_rng_get_state();
        float b[6];
        ck_assert_int_eq(wf_to_array(wf_bernoulli_p(WF_SHAPE(6), 0.4, WF_F32), b, WF_F32), 0);
        for (int i = 0; i < 6; i++) {
            uint32_t r[4];
            wf__philox4x32(s.seed, s.offset + (uint64_t)(i / 4), r);
            ck_assert(b[i] == (u01(r[i % 4]) < 0.4f ? 1.0f : 0.0f));
        }
    }
}
END_TEST

START_TEST(uniform_stats) {
    WF_SCOPE {
        wf_manual_seed(1);
        const int64_t n = 100000;
        const wf_dtype dts[] = { WF_F32, WF_F64, WF_F16, WF_BF16 };
        for (int k = 0; k < 4; k++) {
            double *v = host(wf_rand(&n, 1, dts[k]));
            double mean, var, lo = 1, hi = 0;
            moments(v, n, &mean, &var);
            for (int64_t i = 0; i < n; i++) { lo = fmin(lo, v[i]); hi = fmax(hi, v[i]); }
            ck_assert_msg(fabs(mean - 0.5) < 0.005, "%s mean %g", wf_dtype_name(dts[k]), mean);
            ck_assert_msg(fabs(var - 1.0 / 12) < 0.002, "%s var %g", wf_dtype_name(dts[k]), var);
            ck_assert_msg(lo >= 0 && hi < 1, "%s range [%g, %g]", wf_dtype_name(dts[k]), lo, hi);
            ck_assert(lo < 0.01 && hi > 0.99);
            free(v);
        }
        /* uniform_ on a range, in place, also non-contiguous */
        wf_tensor *t = wf_empty(WF_SHAPE(400, 250), WF_F32);
        ck_assert_int_eq(wf_uniform_(t, -2, 3), 0);
        double *v = host(t);
        double mean, var, lo = 9, hi = -9;
        moments(v, n, &mean, &var);
        for (int64_t i = 0; i < n; i++) { lo = fmin(lo, v[i]); hi = fmax(hi, v[i]); }
        ck_assert(fabs(mean - 0.5) < 0.03 && fabs(var - 25.0 / 12) < 0.05);
        ck_assert(lo >= -2 && hi < 3);
        free(v);
        wf_tensor *tt = wf_transpose(wf_zeros(WF_SHAPE(300, 200), WF_F64), 0, 1);
        ck_assert_int_eq(wf_uniform_(tt, 1, 2), 0);
        v = host(tt);
        for (int64_t i = 0; i < 60000; i++) ck_assert(v[i] >= 1 && v[i] < 2);
        free(v);
        /* f16/bf16 on [1,2): values that round up to hi are pulled below it */
        wf_tensor *hb = wf_empty(&n, 1, WF_BF16);
        ck_assert_int_eq(wf_uniform_(hb, 1, 2), 0);
        v = host(hb);
        for (int64_t i = 0; i < n; i++) ck_assert(v[i] >= 1 && v[i] < 2);
        free(v);
    }
}
END_TEST

START_TEST(normal_stats) {
    WF_SCOPE {
        wf_manual_seed(2);
        const int64_t n = 100000;
        const wf_dtype dts[] = { WF_F32, WF_F64, WF_BF16 };
        for (int k = 0; k < 3; k++) {
            double *v = host(wf_randn(&n, 1, dts[k]));
            double mean, var;
            moments(v, n, &mean, &var);
            int64_t within = 0;
            for (int64_t i = 0; i < n; i++) within += fabs(v[i]) < 1;
            ck_assert_msg(fabs(mean) < 0.02, "%s mean %g", wf_dtype_name(dts[k]), mean);
            ck_assert_msg(fabs(var - 1) < 0.03, "%s var %g", wf_dtype_name(dts[k]), var);
            ck_assert_msg(fabs((double)within / (double)n - 0.6827) < 0.01, "%s within 1 sd", wf_dtype_name(dts[k]));
            for (int64_t i = 0; i < n; i++) ck_assert(isfinite(v[i]));
            free(v);
        }
        wf_tensor *t = wf_empty(&n, 1, WF_F32);
        ck_assert_int_eq(wf_normal_(t, 3, 2), 0);
        double *v = host(t);
        double mean, var;
        moments(v, n, &mean, &var);
        ck_assert(fabs(mean - 3) < 0.05 && fabs(sqrt(var) - 2) < 0.05);
        free(v);
        /* odd count: the last element uses the cos half of its pair */
        double *o = host(wf_randn(WF_SHAPE(3), WF_F64));
        ck_assert(isfinite(o[2]));
        free(o);
    }
}
END_TEST

START_TEST(randint_bounds) {
    WF_SCOPE {
        wf_manual_seed(3);
        const int64_t n = 10000;
        int64_t *v = malloc(sizeof(int64_t) * (size_t)n);
        ck_assert_int_eq(wf_to_array(wf_randint(-3, 4, &n, 1, WF_I64), v, WF_I64), 0);
        int seen[7] = { 0 };
        for (int64_t i = 0; i < n; i++) {
            ck_assert(v[i] >= -3 && v[i] < 4);
            seen[v[i] + 3]++;
        }
        for (int k = 0; k < 7; k++) ck_assert_msg(abs(seen[k] - 10000 / 7) < 200, "value %d seen %d", k - 3, seen[k]);
        wf_tensor *t32 = wf_randint(10, 12, &n, 1, WF_I32);
        ck_assert_int_eq(wf_tensor_dtype(t32), WF_I32);
        ck_assert_int_eq(wf_to_array(t32, v, WF_I64), 0);
        for (int64_t i = 0; i < n; i++) ck_assert(v[i] == 10 || v[i] == 11);
        /* default dtype is int64 */
        ck_assert_int_eq(wf_tensor_dtype(wf_randint(0, 2, WF_SHAPE(3), WF_DTYPE_DEFAULT)), WF_I64);
        /* ranges wider than 2^32 use 64-bit draws */
        const int64_t big = (int64_t)1 << 40;
        ck_assert_int_eq(wf_to_array(wf_randint(0, big, &n, 1, WF_I64), v, WF_I64), 0);
        int64_t mx = 0;
        for (int64_t i = 0; i < n; i++) {
            ck_assert(v[i] >= 0 && v[i] < big);
            if (v[i] > mx) mx = v[i];
        }
        ck_assert(mx > ((int64_t)1 << 39));
        const int64_t lo = -((int64_t)1 << 62), hi = (int64_t)1 << 62;
        ck_assert_int_eq(wf_to_array(wf_randint(lo, hi, &n, 1, WF_I64), v, WF_I64), 0);
        int neg = 0;
        for (int64_t i = 0; i < n; i++) {
            ck_assert(v[i] >= lo && v[i] < hi);
            neg += v[i] < 0;
        }
        ck_assert(abs(neg - 5000) < 300);
        free(v);
        ck_assert_ptr_null(wf_randint(5, 5, WF_SHAPE(3), WF_I64));
        ck_assert_error(WF_EINVAL, "wf_randint");
    }
}
END_TEST

START_TEST(bernoulli_freq) {
    WF_SCOPE {
        wf_manual_seed(4);
        const int64_t n = 100000;
        double *v = host(wf_bernoulli_p(&n, 1, 0.3, WF_F32));
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            ck_assert(v[i] == 0 || v[i] == 1);
            s += v[i];
        }
        ck_assert_msg(fabs(s / (double)n - 0.3) < 0.01, "frequency %g", s / (double)n);
        free(v);
        /* per-element p, given transposed (non-contiguous): columns p = 0, 1, 0.5, 0.9 */
        double pv[4 * 2000];
        const double col[4] = { 0, 1, 0.5, 0.9 };
        for (int i = 0; i < 2000; i++)
            for (int j = 0; j < 4; j++) pv[j * 2000 + i] = col[j];
        wf_tensor *p = wf_transpose(tt_f64(pv, WF_SHAPE(4, 2000)), 0, 1);   /* [2000,4] */
        wf_tensor *b = wf_bernoulli(p);
        ck_assert_shape(b, 2000, 4);
        ck_assert_int_eq(wf_tensor_dtype(b), WF_F64);
        v = host(b);
        double cnt[4] = { 0 };
        for (int i = 0; i < 2000; i++)
            for (int j = 0; j < 4; j++) cnt[j] += v[i * 4 + j];
        ck_assert(cnt[0] == 0 && cnt[1] == 2000);
        ck_assert(fabs(cnt[2] / 2000 - 0.5) < 0.05 && fabs(cnt[3] / 2000 - 0.9) < 0.03);
        free(v);
        ck_assert_ptr_null(wf_bernoulli_p(WF_SHAPE(2), 1.5, WF_F32));
        ck_assert_error(WF_EINVAL, "wf_bernoulli_p");
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("random");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, same_seed_same_numbers);
    tcase_add_test(tc, state_replay);
    tcase_add_test(tc, element_layout);
    tcase_add_test(tc, uniform_stats);
    tcase_add_test(tc, normal_stats);
    tcase_add_test(tc, randint_bounds);
    tcase_add_test(tc, bernoulli_freq);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
