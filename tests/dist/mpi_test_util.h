/* tests/dist/mpi_test_util.h: what the tests of the mpi backend's own algorithms share
 * (test_mpi_allreduce.c, test_mpi_direct.c): a group made under the environment switches that
 * pick an algorithm, rank-specific values exact in every dtype, the reduction's reference
 * rounded as the backend rounds, and a check that names the first wrong element. */
#ifndef WEFT_TESTS_MPI_TEST_UTIL_H
#define WEFT_TESTS_MPI_TEST_UTIL_H

#include "test_util.h"
#include "tensor/tensor_impl.h"   /* bf16 rounding */
#include "dist/dist_impl.h"      /* wf__dist_now */

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A group of the mpi backend made with env's switches set ("NAME=value" strings, NULL-ended;
 * wf_dist_init reads them once), each cleared after, so the next group starts from the
 * defaults. A group that cannot start ends the rank: every later test needs it. */
static wf_process_group *mpi_test_group(const char *const *env, double timeout_s) {
    char name[64];
    for (const char *const *e = env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - *e) : 0, *e);
        if (eq) setenv(name, eq + 1, 1);
    }
    wf_process_group *g = wf_dist_init(&(wf_dist_options){ .backend = "mpi", .timeout_s = timeout_s });
    for (const char *const *e = env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - *e) : 0, *e);
        if (eq) unsetenv(name);
    }
    if (!g) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        exit(1);
    }
    return g;
}

/* rank r's element i: an integer, exact in bf16 (<= 13, and 13 summed over 3 ranks stays
 * exact) and distinct by position elsewhere */
static double mpi_test_val(wf_dtype dt, int r, int64_t i) {
    double v = (double)((i * 7 + r * 3) % 13 + 1);
    return dt == WF_BF16 ? v : v + 16.0 * (double)(i % 509);
}

/* element i reduced over `size` ranks' values, rounded as the backend does (avg: the sum / size
 * in the dtype's arithmetic; integers truncate) */
static double mpi_test_reduced(wf_dtype dt, wf_dist_reduce_op op, int size, int64_t i) {
    double acc = mpi_test_val(dt, 0, i);
    for (int r = 1; r < size; r++)
        acc = op == WF_DIST_MAX ? fmax(acc, mpi_test_val(dt, r, i)) : acc + mpi_test_val(dt, r, i);
    if (op != WF_DIST_AVG) return acc;
    if (dt == WF_I64) return trunc(acc / size);
    float q = (float)acc / (float)size;
    return dt == WF_BF16 ? (double)wf__bf16_to_f32(wf__f32_to_bf16(q)) : (double)q;
}

/* rank r's first n values, as a tensor of dtype dt (the current scope owns it) */
static wf_tensor *mpi_test_tensor(wf_dtype dt, int r, int64_t n) {
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = mpi_test_val(dt, r, i);
    wf_tensor *t = wf_to_dtype(wf_from_data(v, WF_SHAPE(n), WF_F64), dt);
    free(v);
    return t;
}

/* every element i < n of t equals want(ctx, i) exactly; else fails naming what (the caller's
 * words: the dtype, op and count), the element, and both values */
static void mpi_test_expect(wf_tensor *t, int64_t n, double (*want)(const void *ctx, int64_t i), const void *ctx,
                            const char *what) {
    double *got = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_int_eq(wf_to_array(t, got, WF_F64), 0);
    for (int64_t i = 0; i < n; i++) {
        double w = want(ctx, i);
        if (got[i] != w) {
            double g = got[i];
            free(got);
            ck_abort_msg("%s: [%lld] = %g, want %g", what, (long long)i, g, w);
        }
    }
    free(got);
}

/* After a collective that rank 1 skipped, started at t0: it failed after about the group's 1 s
 * timeout (not a hang, not at once), and its message names the collective (want) and rank 1
 * as the one that did not join. */
static void mpi_test_timed_out(double t0, const char *want) {
    double dt = wf__dist_now() - t0;
    ck_assert_msg(dt >= 0.9 && dt < 10, "timed out after %.2f s, expected about 1", dt);
    const char *m = wf_error_message();
    ck_assert_msg(strstr(m, want), "%s", m);
    ck_assert_msg(strstr(m, "ranks that did not join: 1"), "%s", m);
}

#endif
