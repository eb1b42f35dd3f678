/* tests/dist/test_mpi_direct.c: the mpi backend's own all_gather and reduce_scatter
 * (dist/mpi_allgather.c, mpi_reduce_scatter.c, mpi_direct.c): chosen by WF_MPI_ALLGATHER /
 * WF_MPI_REDUCE_SCATTER / WF_MPI_ALLGATHER_MAX; f32, bf16, i64 (sum, avg, max for the
 * reduce-scatter) at counts from 1 element to several messages in pieces, against a reference
 * computed here and against Open MPI's path; in place; several in flight with all_reduces, finished out
 * of order; bad arguments; a rank that skips makes the others time out (WF_ETIMEOUT naming it).
 * The same all_gather / reduce_scatter (sum, avg; in place and out of place; uneven) on CUDA
 * tensors with WF_TEST_DEVICE=cuda, against the host results (see "CUDA tensors" below).
 * Run under `mpirun -np 2` and `-np 3` (CK_FORK=no: every rank runs the same tests in order). */
#include "mpi_test_util.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "dist/dist_impl.h"
#include "dist/mpi_direct.h"

static int R, S;
/* g_def: defaults; g_weft: weft's own at every size, messages in pieces of at most 100 bytes;
 * g_mpi: Open MPI's; g_bad: unusable settings (the defaults apply); g_to: 1 s timeout */
static wf_process_group *g_def, *g_weft, *g_mpi, *g_bad, *g_to;

static wf_process_group *make_group(const char *ag, const char *rs, const char *ag_max, const char *piece, double timeout) {
    char e0[64], e1[64], e2[64], e3[64];
    const char *env[5];
    int k = 0;
    if (ag) snprintf(e0, sizeof e0, "WF_MPI_ALLGATHER=%s", ag), env[k++] = e0;
    if (rs) snprintf(e1, sizeof e1, "WF_MPI_REDUCE_SCATTER=%s", rs), env[k++] = e1;
    if (ag_max) snprintf(e2, sizeof e2, "WF_MPI_ALLGATHER_MAX=%s", ag_max), env[k++] = e2;
    if (piece) snprintf(e3, sizeof e3, "WF_MPI_RD_PIECE=%s", piece), env[k++] = e3;
    env[k] = NULL;
    return mpi_test_group(env, timeout);
}

static wf_tensor *from_vals(wf_dtype dt, int r, int64_t n) { return mpi_test_tensor(dt, r, n); }

typedef struct { wf_dtype dt; wf_dist_reduce_op op; int64_t n; } want_of;

/* the reduce-scatter's element j of rank R's block (count n): rounded as the backend does */
static double rs_want(const void *ctx, int64_t j) {
    const want_of *c = ctx;
    return mpi_test_reduced(c->dt, c->op, S, (int64_t)R * c->n + j);
}

/* all_gather's element i of the result (count n per rank): rank i / n's value */
static double ag_want(const void *ctx, int64_t i) {
    const want_of *c = ctx;
    return mpi_test_val(c->dt, (int)(i / c->n), i % c->n);
}

static void expect(wf_tensor *t, int64_t n, double (*want)(const void *, int64_t), wf_dtype dt, wf_dist_reduce_op op,
                   int64_t cnt, const char *what) {
    char w[320];
    snprintf(w, sizeof w, "rank %d: %s: %s op %d, count %lld", R, what, wf_dtype_name(dt), (int)op, (long long)cnt);
    mpi_test_expect(t, n, want, &(want_of){ dt, op, cnt }, w);
}

static const wf_dtype dtypes[] = {WF_F32, WF_BF16, WF_I64};
static const wf_dist_reduce_op ops[] = {WF_DIST_SUM, WF_DIST_AVG, WF_DIST_MAX};
/* elements per rank: one, odd, under one 100-byte piece, 2..8 pieces (f32: 25 a piece), more
 * than 8 (whole messages) */
static const int64_t counts[] = {1, 3, 7, 24, 26, 77, 200, 201, 1000};
#define NCOUNTS ((int)(sizeof counts / sizeof counts[0]))

static void run_all(wf_process_group *g, const char *name) {
    for (int d = 0; d < 3; d++)
        for (int k = 0; k < NCOUNTS; k++) WF_SCOPE {
                int64_t n = counts[k];
                wf_tensor *in = from_vals(dtypes[d], R, n), *out = wf_full(WF_SHAPE(n * S), -1, dtypes[d]);
                ck_assert_msg(wf_dist_all_gather(g, out, in, NULL) == 0, "%s: %s", name, wf_error_message());
                expect(out, n * S, ag_want, dtypes[d], WF_DIST_SUM, n, name);
                for (int o = 0; o < 3; o++) {
                    /* the reduce-scatter's input: rank R's values of the whole (S * n) range */
                    wf_tensor *big = from_vals(dtypes[d], R, n * S), *res = wf_full(WF_SHAPE(n), -1, dtypes[d]);
                    ck_assert_msg(wf_dist_reduce_scatter(g, res, big, ops[o], NULL) == 0, "%s: %s", name, wf_error_message());
                    expect(res, n, rs_want, dtypes[d], ops[o], n, name);
                }
            }
}

START_TEST(test_paths_and_settings) {
    ck_assert_str_eq(wf__mpi_direct_path(g_def, true, ((size_t)2 << 20) - 1), "weft");
    ck_assert_str_eq(wf__mpi_direct_path(g_def, true, (size_t)2 << 20), "mpi");
    ck_assert_str_eq(wf__mpi_direct_path(g_def, false, (size_t)1 << 30), "weft");
    ck_assert_str_eq(wf__mpi_direct_path(g_weft, true, (size_t)1 << 30), "weft");
    ck_assert_str_eq(wf__mpi_direct_path(g_mpi, true, 4), "mpi");
    ck_assert_str_eq(wf__mpi_direct_path(g_mpi, false, 4), "mpi");
    /* WF_MPI_ALLGATHER=bogus, WF_MPI_ALLGATHER_MAX=-5: reported on stderr, the defaults apply */
    ck_assert_str_eq(wf__mpi_direct_path(g_bad, true, 4), "weft");
    ck_assert_str_eq(wf__mpi_direct_path(g_bad, true, (size_t)2 << 20), "mpi");
    ck_assert_str_eq(wf__mpi_direct_path(g_bad, false, 4), "weft");
    ck_assert_ptr_null(wf__mpi_direct_path(NULL, true, 4));
    /* a subgroup of ranks 0 and S - 1 reads the settings when made; the others have no path */
    setenv("WF_MPI_ALLGATHER", "mpi", 1);
    wf_process_group *sub = wf_process_group_new_subgroup(g_def, (int[]){0, S - 1}, 2);
    unsetenv("WF_MPI_ALLGATHER");
    ck_assert_msg(sub != NULL, "%s", wf_error_message());
    if (R == 0 || R == S - 1) {
        ck_assert_str_eq(wf__mpi_direct_path(sub, true, 4), "mpi");
        WF_SCOPE {
            int me = R == 0 ? 0 : 1;
            wf_tensor *big = wf_from_data((double[]){1 + R, 10 + R}, WF_SHAPE(2), WF_F64), *res = wf_zeros(WF_SHAPE(1), WF_F64);
            ck_assert_int_eq(wf_dist_reduce_scatter(sub, res, big, WF_DIST_SUM, NULL), 0);
            ck_assert_double_eq(wf_item(res), (me == 0 ? 1 + 1 + (S - 1) : 20 + (S - 1)));
        }
    } else {
        ck_assert_ptr_null(wf__mpi_direct_path(sub, true, 4));
    }
    wf_process_group_free(sub);
    ck_assert_int_eq(wf_dist_barrier(g_def), 0);
}
END_TEST

START_TEST(test_weft_values) { run_all(g_weft, "weft, 100 B pieces"); }
END_TEST

START_TEST(test_default_values) { run_all(g_def, "defaults"); }
END_TEST

START_TEST(test_mpi_values) { run_all(g_mpi, "Open MPI's"); }
END_TEST

/* larger than a piece or the eager limit, odd, both ways of the default all-gather limit */
START_TEST(test_large) {
    const int64_t ns[] = {100003, ((int64_t)2 << 20) / 4 / 3 + 1};   /* 2 MB result: Open MPI's from 2 ranks */
    for (int k = 0; k < 2; k++) WF_SCOPE {
            int64_t n = ns[k];
            wf_tensor *in = from_vals(WF_F32, R, n), *out = wf_zeros(WF_SHAPE(n * S), WF_F32);
            ck_assert_int_eq(wf_dist_all_gather(g_def, out, in, NULL), 0);
            expect(out, n * S, ag_want, WF_F32, WF_DIST_SUM, n, "large all_gather");
            wf_tensor *big = from_vals(WF_F32, R, n * S), *res = wf_zeros(WF_SHAPE(n), WF_F32);
            ck_assert_int_eq(wf_dist_reduce_scatter(g_def, res, big, WF_DIST_AVG, NULL), 0);
            expect(res, n, rs_want, WF_F32, WF_DIST_AVG, n, "large reduce_scatter");
        }
}
END_TEST

/* several collectives in flight on one group (all_reduce, all_gather and reduce_scatter share
 * its tags), finished out of order; freeing an unfinished one waits for it */
START_TEST(test_async_mixed) {
    wf_process_group *gs[2] = {g_weft, g_def};
    for (int gi = 0; gi < 2; gi++) WF_SCOPE {
            wf_process_group *g = gs[gi];
            int64_t n = 3001;
            wf_tensor *in = from_vals(WF_F32, R, n), *out = wf_zeros(WF_SHAPE(n * S), WF_F32);
            wf_tensor *big = from_vals(WF_I64, R, n * S), *res = wf_zeros(WF_SHAPE(n), WF_I64);
            wf_tensor *ar = wf_full(WF_SHAPE(5), R + 1, WF_F32);
            wf_tensor *big2 = from_vals(WF_BF16, R, 7 * S), *res2 = wf_zeros(WF_SHAPE(7), WF_BF16);
            wf_work *w1, *w2, *w3, *w4;
            ck_assert_int_eq(wf_dist_all_gather(g, out, in, &w1), 0);
            ck_assert_int_eq(wf_dist_reduce_scatter(g, res, big, WF_DIST_MAX, &w2), 0);
            ck_assert_int_eq(wf_dist_all_reduce(g, ar, WF_DIST_SUM, &w3), 0);
            ck_assert_int_eq(wf_dist_reduce_scatter(g, res2, big2, WF_DIST_SUM, &w4), 0);
            ck_assert_int_eq(wf_work_wait(w4), 0);
            ck_assert_int_eq(wf_work_wait(w2), 0);
            ck_assert_int_eq(wf_work_wait(w3), 0);
            wf_work_free(w1);   /* unfinished as far as we know: waits */
            wf_work_free(w2);
            wf_work_free(w3);
            wf_work_free(w4);
            expect(out, n * S, ag_want, WF_F32, WF_DIST_SUM, n, "async all_gather");
            expect(res, n, rs_want, WF_I64, WF_DIST_MAX, n, "async reduce_scatter");
            expect(res2, 7, rs_want, WF_BF16, WF_DIST_SUM, 7, "async reduce_scatter bf16");
            ck_assert_double_eq(wf_item(wf_narrow(ar, 0, 4, 1)), S * (S + 1) / 2);
        }
}
END_TEST

/* in place: out is in's slice of this rank (as FSDP and ZeRO reduce their gradients), on
 * weft's path and Open MPI's (which reduces with MPI_IN_PLACE and moves the result), blocking
 * and large (Open MPI's blocking form) */
START_TEST(test_reduce_scatter_in_place) {
    wf_process_group *gs[3] = {g_weft, g_mpi, g_def};
    const int64_t ns[] = {7, 200, 70001};
    for (int gi = 0; gi < 3; gi++)
        for (int k = 0; k < 3; k++) WF_SCOPE {
                int64_t n = ns[k];
                wf_tensor *big = from_vals(WF_F32, R, n * S), *res = wf_narrow(big, 0, (int64_t)R * n, n);
                ck_assert_msg(wf_dist_reduce_scatter(gs[gi], res, big, WF_DIST_SUM, NULL) == 0, "%s", wf_error_message());
                expect(res, n, rs_want, WF_F32, WF_DIST_SUM, n, gi == 0 ? "in place, weft" : gi == 1 ? "in place, mpi" : "in place");
                wf_tensor *big2 = from_vals(WF_I64, R, n * S), *res2 = wf_narrow(big2, 0, (int64_t)R * n, n);
                wf_work *w = NULL;
                ck_assert_int_eq(wf_dist_reduce_scatter(gs[gi], res2, big2, WF_DIST_AVG, &w), 0);
                ck_assert_int_eq(wf_work_wait(w), 0);
                wf_work_free(w);
                expect(res2, n, rs_want, WF_I64, WF_DIST_AVG, n, "in place, async avg");
            }
}
END_TEST

/* all_gather in place: in is out's slice of this rank, on every path */
START_TEST(test_all_gather_in_place) {
    wf_process_group *gs[3] = {g_weft, g_mpi, g_def};
    const int64_t ns[] = {7, 200, 300001};   /* the last: a 2.4 MB result, Open MPI's path by default */
    for (int gi = 0; gi < 3; gi++)
        for (int k = 0; k < 3; k++) WF_SCOPE {
                int64_t n = ns[k];
                wf_tensor *out = wf_full(WF_SHAPE(n * S), -1, WF_F32), *mine = wf_narrow(out, 0, (int64_t)R * n, n);
                ck_assert_int_eq(wf_copy_(mine, from_vals(WF_F32, R, n)), 0);
                wf_work *w = NULL;
                ck_assert_msg(wf_dist_all_gather(gs[gi], out, mine, k == 1 ? &w : NULL) == 0, "%s", wf_error_message());
                if (w) ck_assert_int_eq(wf_work_wait(w), 0);
                wf_work_free(w);
                expect(out, n * S, ag_want, WF_F32, WF_DIST_SUM, n, gi == 0 ? "ag in place, weft" : gi == 1 ? "ag in place, mpi" : "ag in place");
            }
}
END_TEST

/* wrong shapes, dtypes and tensors fail in the front-end, before any message, naming them */
START_TEST(test_bad_arguments) {
    WF_SCOPE {
        wf_tensor *in = wf_zeros(WF_SHAPE(4), WF_F32), *out = wf_zeros(WF_SHAPE(4 * S + 1), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(g_weft, out, in, NULL), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_dist_all_gather: out");
        ck_assert_int_eq(wf_dist_reduce_scatter(g_weft, in, out, WF_DIST_SUM, NULL), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_dist_reduce_scatter: in");
        wf_tensor *wrong = wf_zeros(WF_SHAPE(4 * S), WF_F64);
        ck_assert_int_eq(wf_dist_all_gather(g_weft, wrong, in, NULL), WF_EDTYPE);
        ck_assert_error(WF_EDTYPE, "out is float64 but in is float32");
        ck_assert_int_eq(wf_dist_reduce_scatter(g_weft, in, NULL, WF_DIST_SUM, NULL), WF_ENULL);
        ck_assert_int_eq(wf_dist_all_gather(NULL, out, in, NULL), WF_ENULL);
        wf_clear_error();
    }
    ck_assert_int_eq(wf_dist_barrier(g_def), 0);   /* nothing was left half-sent */
}
END_TEST

/* rank 1 skips an all_gather and a reduce_scatter: the others time out after the group's 1 s
 * (blocking, and through a work handle polled with wf_work_test), naming rank 1 */
START_TEST(test_timeout_names_rank) {
    WF_SCOPE {
        wf_tensor *in = wf_ones(WF_SHAPE(4), WF_F32), *out = wf_zeros(WF_SHAPE(4 * S), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(g_to, out, in, NULL), 0);   /* #1: everyone */
        if (R != 1) {
            double t0 = wf__dist_now();
            ck_assert_int_eq(wf_dist_all_gather(g_to, out, in, NULL), WF_ETIMEOUT);
            mpi_test_timed_out(t0, "wf_dist_all_gather: timed out after 1 s in collective #2 all_gather");
            ck_assert_int_eq(wf_dist_reduce_scatter(g_to, in, out, WF_DIST_SUM, NULL), WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "broken by an earlier error");
            wf_clear_error();
        }
    }
    ck_assert_int_eq(wf_dist_barrier(g_def), 0);
}
END_TEST

/* ================================================================ CUDA tensors
 *
 * WF_TEST_DEVICE=cuda (meson's test_mpi_direct_cuda_np2/np3, bench/gpu_check_run.sh): every
 * rank on cuda:0, the mpi backend staging CUDA tensors through host memory (dist/backend_mpi.c)
 * around weft's own algorithms and Open MPI's. Each collective runs once on host tensors and
 * once on CUDA copies of the same inputs; the CUDA result must equal the host result exactly
 * (and the host result the reference), the CUDA input be left as it was (out of place), and
 * every result stay on the device. Without CUDA or a GPU: exit 77 (skipped) before MPI starts.
 * Written without a GPU: a failure names the rank, the group, the collective, the dtype, the
 * op, the count, the element and both values. Without WF_TEST_DEVICE the same cases run with
 * "device" = the CPU (the comparison code's own check). */
static wf_device DEV;
static const char *dev_name(void) { return DEV.type == WF_DEV_CUDA ? "cuda" : "cpu"; }
static wf_tensor *on_dev(wf_tensor *t) { return DEV.type == WF_DEV_CPU ? wf_clone(t) : wf_to_device(t, DEV); }
static const char *op_name(wf_dist_reduce_op op) { return op == WF_DIST_SUM ? "sum" : op == WF_DIST_AVG ? "avg" : "max"; }

/* d (on DEV) equals h (on the host) element by element, exactly */
static void same_as_host(wf_tensor *d, wf_tensor *h, const char *what) {
    ck_assert_msg(d && h, "rank %d: %s: no tensor (%s)", R, what, wf_error_message());
    ck_assert_msg(wf_tensor_device(d).type == DEV.type, "rank %d: %s: the result left the %s", R, what, dev_name());
    int64_t n = wf_numel(h);
    ck_assert_msg(wf_numel(d) == n, "rank %d: %s: %lld values on %s, %lld on the host", R, what, (long long)wf_numel(d),
                  dev_name(), (long long)n);
    double *a = malloc(sizeof(double) * (size_t)(2 * n + 1)), *b = a + n;
    ck_assert_ptr_nonnull(a);
    ck_assert_msg(wf_to_array(d, a, WF_F64) == 0, "rank %d: %s: reading the %s result: %s", R, what, dev_name(),
                  wf_error_message());
    ck_assert_int_eq(wf_to_array(h, b, WF_F64), 0);
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            double x = a[i], y = b[i];
            free(a);
            ck_abort_msg("rank %d: %s: [%lld] = %.9g on %s, %.9g on the host", R, what, (long long)i, x, dev_name(), y);
        }
    free(a);
}

static const char *group_name(int gi) { return gi == 0 ? "weft, 100 B pieces" : gi == 1 ? "Open MPI's" : "defaults"; }

/* out of place, blocking and through a work handle (the copy back to the device happens at
 * the wait), f32, bf16 and i64, sum and avg, counts from 1 to several pieces, odd ones */
START_TEST(test_device_out_of_place) {
    wf_process_group *gs[3] = {g_weft, g_mpi, g_def};
    const int64_t ns[] = {1, 3, 26, 77, 201, 1000};
    for (int gi = 0; gi < 3; gi++)
        for (int d = 0; d < 3; d++)
            for (int k = 0; k < 6; k++) WF_SCOPE {
                    wf_dtype dt = dtypes[d];
                    int64_t n = ns[k];
                    bool async = k % 2;
                    char what[192];
                    snprintf(what, sizeof what, "all_gather (%s, %s), %s, count %lld%s", group_name(gi), dev_name(),
                             wf_dtype_name(dt), (long long)n, async ? ", async" : "");
                    wf_tensor *in = from_vals(dt, R, n), *out = wf_full(WF_SHAPE(n * S), -1, dt);
                    wf_tensor *din = on_dev(in), *dout = on_dev(out);
                    ck_assert_msg(wf_dist_all_gather(gs[gi], out, in, NULL) == 0, "%s: %s", what, wf_error_message());
                    expect(out, n * S, ag_want, dt, WF_DIST_SUM, n, what);
                    wf_work *w = NULL;
                    ck_assert_msg(wf_dist_all_gather(gs[gi], dout, din, async ? &w : NULL) == 0, "rank %d: %s: %s", R, what,
                                  wf_error_message());
                    if (w) ck_assert_msg(wf_work_wait(w) == 0, "rank %d: %s: wait: %s", R, what, wf_error_message());
                    wf_work_free(w);
                    same_as_host(dout, out, what);
                    same_as_host(din, in, what);   /* the input untouched */
                    for (int o = 0; o < 2; o++) {
                        wf_dist_reduce_op op = ops[o];
                        snprintf(what, sizeof what, "reduce_scatter (%s, %s), %s %s, count %lld%s", group_name(gi), dev_name(),
                                 wf_dtype_name(dt), op_name(op), (long long)n, async ? ", async" : "");
                        wf_tensor *big = from_vals(dt, R, n * S), *res = wf_full(WF_SHAPE(n), -1, dt);
                        wf_tensor *dbig = on_dev(big), *dres = on_dev(res);
                        ck_assert_msg(wf_dist_reduce_scatter(gs[gi], res, big, op, NULL) == 0, "%s: %s", what,
                                      wf_error_message());
                        expect(res, n, rs_want, dt, op, n, what);
                        w = NULL;
                        ck_assert_msg(wf_dist_reduce_scatter(gs[gi], dres, dbig, op, async ? &w : NULL) == 0,
                                      "rank %d: %s: %s", R, what, wf_error_message());
                        if (w) ck_assert_msg(wf_work_wait(w) == 0, "rank %d: %s: wait: %s", R, what, wf_error_message());
                        wf_work_free(w);
                        same_as_host(dres, res, what);
                        same_as_host(dbig, big, what);
                    }
                }
}
END_TEST

/* in place, as FSDP and ZeRO use them: the reduce-scatter's out is in's slice of this rank,
 * the all-gather's in is out's slice; sizes on both sides of the pieces and of the default
 * all-gather limit (300001 f32 x 2 ranks: Open MPI's path under the defaults) */
START_TEST(test_device_in_place) {
    wf_process_group *gs[3] = {g_weft, g_mpi, g_def};
    const int64_t ns[] = {7, 200, 300001};
    for (int gi = 0; gi < 3; gi++)
        for (int k = 0; k < 3; k++)
            for (int d = 0; d < 2; d++) WF_SCOPE {
                    wf_dtype dt = dtypes[d];   /* f32, bf16 */
                    int64_t n = ns[k];
                    char what[192];
                    for (int o = 0; o < 2; o++) {
                        snprintf(what, sizeof what, "reduce_scatter in place (%s, %s), %s %s, count %lld", group_name(gi),
                                 dev_name(), wf_dtype_name(dt), op_name(ops[o]), (long long)n);
                        wf_tensor *big = from_vals(dt, R, n * S), *res = wf_narrow(big, 0, (int64_t)R * n, n);
                        wf_tensor *dbig = on_dev(big), *dres = wf_narrow(dbig, 0, (int64_t)R * n, n);
                        ck_assert_msg(wf_dist_reduce_scatter(gs[gi], res, big, ops[o], NULL) == 0, "%s: %s", what,
                                      wf_error_message());
                        expect(res, n, rs_want, dt, ops[o], n, what);
                        ck_assert_msg(wf_dist_reduce_scatter(gs[gi], dres, dbig, ops[o], NULL) == 0, "rank %d: %s: %s", R,
                                      what, wf_error_message());
                        same_as_host(dres, res, what);
                    }
                    snprintf(what, sizeof what, "all_gather in place (%s, %s), %s, count %lld", group_name(gi), dev_name(),
                             wf_dtype_name(dt), (long long)n);
                    wf_tensor *out = wf_full(WF_SHAPE(n * S), -1, dt), *mine = wf_narrow(out, 0, (int64_t)R * n, n);
                    ck_assert_int_eq(wf_copy_(mine, from_vals(dt, R, n)), 0);
                    wf_tensor *dout = on_dev(out), *dmine = wf_narrow(dout, 0, (int64_t)R * n, n);
                    ck_assert_msg(wf_dist_all_gather(gs[gi], out, mine, NULL) == 0, "%s: %s", what, wf_error_message());
                    expect(out, n * S, ag_want, dt, WF_DIST_SUM, n, what);
                    ck_assert_msg(wf_dist_all_gather(gs[gi], dout, dmine, NULL) == 0, "rank %d: %s: %s", R, what,
                                  wf_error_message());
                    same_as_host(dout, out, what);
                }
}
END_TEST

/* uneven first dimensions (rank r: r + 1 rows of 3; ZeRO's and FSDP's uneven shards): the
 * sizes exchanged, padded, gathered and trimmed, on CUDA as on the host */
START_TEST(test_device_uneven) {
    wf_process_group *gs[3] = {g_weft, g_mpi, g_def};
    for (int gi = 0; gi < 3; gi++)
        for (int d = 0; d < 3; d++) WF_SCOPE {
                wf_dtype dt = dtypes[d];
                char what[192];
                snprintf(what, sizeof what, "all_gather_uneven (%s, %s), %s, %d x 3 on rank %d", group_name(gi), dev_name(),
                         wf_dtype_name(dt), R + 1, R);
                wf_tensor *in = wf_reshape(from_vals(dt, R, 3 * (R + 1)), WF_SHAPE(R + 1, 3));
                wf_tensor *h = wf_dist_all_gather_uneven(gs[gi], in);
                ck_assert_msg(h, "%s: %s", what, wf_error_message());
                ck_assert_int_eq(wf_shape(h)[0], S * (S + 1) / 2);
                wf_tensor *dv = wf_dist_all_gather_uneven(gs[gi], on_dev(in));
                ck_assert_msg(dv, "rank %d: %s: %s", R, what, wf_error_message());
                ck_assert_msg(wf_ndim(dv) == 2 && wf_shape(dv)[0] == wf_shape(h)[0] && wf_shape(dv)[1] == 3,
                              "rank %d: %s: shape [%lld, %lld] on %s", R, what, (long long)wf_shape(dv)[0],
                              (long long)(wf_ndim(dv) > 1 ? wf_shape(dv)[1] : -1), dev_name());
                same_as_host(dv, h, what);
                /* rank r's rows are its values */
                int64_t row = 0;
                for (int r = 0; r < S; r++) {
                    wf_tensor *want = wf_reshape(from_vals(dt, r, 3 * (r + 1)), WF_SHAPE(r + 1, 3));
                    same_as_host(wf_narrow(dv, 0, row, r + 1), want, what);
                    row += r + 1;
                }
            }
}
END_TEST

int main(void) {
    const char *dev = getenv("WF_TEST_DEVICE");
    bool on_cuda = dev && !strcmp(dev, "cuda");
    DEV = on_cuda ? WF_CUDA(0) : WF_CPU;
    if (on_cuda && wf_cuda_device_count() < 1) {
        const char *r = getenv("OMPI_COMM_WORLD_RANK");
        if (!r || !strcmp(r, "0")) printf("no CUDA device: skipped (WF_TEST_DEVICE=cuda)\n");
        return 77;
    }
    g_def = make_group(NULL, NULL, NULL, NULL, 0);
    g_weft = make_group("weft", "weft", NULL, "100", 0);
    g_mpi = make_group("mpi", "mpi", NULL, NULL, 0);
    g_bad = make_group("bogus", "auto", "-5", NULL, 0);
    g_to = make_group(NULL, NULL, NULL, NULL, 1);
    R = wf_process_group_rank(g_def);
    S = wf_process_group_size(g_def);
    if (S < 2 || S > 3) {
        fprintf(stderr, "run under mpirun -np 2 or 3 (world size %d)\n", S);
        return 1;
    }
    Suite *s = suite_create(on_cuda ? "dist_mpi_direct_cuda" : "dist_mpi_direct");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_device_out_of_place);
    tcase_add_test(tc, test_device_in_place);
    tcase_add_test(tc, test_device_uneven);
    if (!on_cuda) {   /* the host-only cases (they ran on the CPU machines) */
        tcase_add_test(tc, test_paths_and_settings);
        tcase_add_test(tc, test_weft_values);
        tcase_add_test(tc, test_default_values);
        tcase_add_test(tc, test_mpi_values);
        tcase_add_test(tc, test_large);
        tcase_add_test(tc, test_async_mixed);
        tcase_add_test(tc, test_reduce_scatter_in_place);
        tcase_add_test(tc, test_all_gather_in_place);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_timeout_names_rank);
    }
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group *gs[] = {g_to, g_bad, g_mpi, g_weft, g_def};
    for (int i = 0; i < 5; i++) wf_process_group_free(gs[i]);
    return rc;
}
