/* tests/dist/test_mpi_allreduce.c: the mpi backend's own all_reduce (dist/mpi_allreduce.c):
 * recursive doubling and the chunked ring, chosen by size (WF_MPI_ALLREDUCE, WF_MPI_RING_MIN,
 * WF_MPI_RING_CHUNK, read when a group is made). f32, bf16 and i64 with sum, avg and max at
 * sizes on both sides of every threshold (the ring's minimum, one chunk, segments shorter
 * than a chunk or empty), in place and through work handles; every rank ends with the same
 * bits; a rank that skips makes the others time out (WF_ETIMEOUT) on both algorithms.
 * Run under `mpirun -np 2` and `-np 3` (CK_FORK=no: every rank runs the same tests in order). */
#include "mpi_test_util.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "dist/dist_impl.h"
#include "dist/mpi_allreduce.h"

static int R, S;
/* g_def: the defaults; g_small: ring from 4 KB in 1 KB chunks; g_ring / g_rd / g_mpi: one
 * path at every size (the ring in 64-byte chunks); g_rdp: recursive doubling in messages of at
 * most 100 bytes (2..8 of them, else whole); g_bad: unusable settings (the defaults
 * apply); g_to_*: 1 s timeouts, rank 1 skips */
static wf_process_group *g_def, *g_small, *g_ring, *g_rd, *g_rdp, *g_mpi, *g_bad, *g_to_rd, *g_to_ring;

static wf_process_group *make_group(const char *mode, const char *ring_min, const char *chunk, double timeout) {
    char m[64], r1[64], r2[64], ch[64];
    const char *env[5];
    int k = 0;
    if (mode) snprintf(m, sizeof m, "WF_MPI_ALLREDUCE=%s", mode), env[k++] = m;
    /* a lowered ring threshold applies to every group size (the tests want the ring) */
    if (ring_min) {
        snprintf(r1, sizeof r1, "WF_MPI_RING_MIN=%s", ring_min), env[k++] = r1;
        snprintf(r2, sizeof r2, "WF_MPI_RING_MIN_MULTI=%s", ring_min), env[k++] = r2;
    }
    if (chunk) snprintf(ch, sizeof ch, "WF_MPI_RING_CHUNK=%s", chunk), env[k++] = ch;
    env[k] = NULL;
    return mpi_test_group(env, timeout);
}

static wf_tensor *rank_tensor(wf_dtype dt, int64_t n) { return mpi_test_tensor(dt, R, n); }

typedef struct { wf_dtype dt; wf_dist_reduce_op op; } reduced_of;
static double reduced_want(const void *ctx, int64_t i) {
    const reduced_of *c = ctx;
    return mpi_test_reduced(c->dt, c->op, S, i);
}

/* every element of t equals the all-reduce's result every rank must hold */
static void check(wf_tensor *t, wf_dtype dt, wf_dist_reduce_op op, int64_t n, const char *what) {
    char w[160];
    snprintf(w, sizeof w, "%s: %s op %d, %lld elements", what, wf_dtype_name(dt), (int)op, (long long)n);
    mpi_test_expect(t, n, reduced_want, &(reduced_of){ dt, op }, w);
}

static const wf_dtype dtypes[] = {WF_F32, WF_BF16, WF_I64};
static const wf_dist_reduce_op ops[] = {WF_DIST_SUM, WF_DIST_AVG, WF_DIST_MAX};

/* all_reduce counts of every dtype and op on g, each on rank-specific data, checked */
static void run_counts(wf_process_group *g, const char *name, const int64_t *counts_bytes, int nc) {
    for (int d = 0; d < 3; d++)
        for (int o = 0; o < 3; o++)
            for (int k = 0; k < nc; k++) WF_SCOPE {
                    size_t es = wf_dtype_size(dtypes[d]);
                    /* a negative entry is an element count, a positive one bytes (whole elements) */
                    int64_t n = counts_bytes[k] < 0 ? -counts_bytes[k] : counts_bytes[k] / (int64_t)es;
                    wf_tensor *t = rank_tensor(dtypes[d], n);
                    int rc = wf_dist_all_reduce(g, t, ops[o], NULL);
                    ck_assert_msg(rc == 0, "%s: %s", name, wf_error_message());
                    check(t, dtypes[d], ops[o], n, name);
                }
}

START_TEST(test_paths_and_settings) {
    ck_assert_str_eq(wf__mpi_allreduce_path(g_def, 256 * 1024 - 1), "rd");
    /* two ranks: the ring from 256 KB; more: Open MPI's path up to 8 MB, then the ring */
    ck_assert_str_eq(wf__mpi_allreduce_path(g_def, 256 * 1024), S == 2 ? "ring" : "mpi");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_def, ((size_t)8 << 20) - 1), S == 2 ? "ring" : "mpi");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_def, (size_t)8 << 20), "ring");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_small, 4095), "rd");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_small, 4096), "ring");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_ring, 4), "ring");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_rd, (size_t)1 << 30), "rd");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_mpi, 4), "mpi");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_mpi, (size_t)1 << 30), "mpi");
    /* WF_MPI_ALLREDUCE=bogus, WF_MPI_RING_MIN=-5: reported on stderr, the defaults apply */
    ck_assert_str_eq(wf__mpi_allreduce_path(g_bad, 256 * 1024 - 1), "rd");
    ck_assert_str_eq(wf__mpi_allreduce_path(g_bad, (size_t)8 << 20), "ring");
    ck_assert_ptr_null(wf__mpi_allreduce_path(NULL, 4));
    /* a subgroup reads the settings when made; a rank outside it has no path */
    setenv("WF_MPI_ALLREDUCE", "rd", 1);
    wf_process_group *sub = wf_process_group_new_subgroup(g_def, (int[]){0, S - 1}, 2);
    unsetenv("WF_MPI_ALLREDUCE");
    ck_assert_msg(sub != NULL, "%s", wf_error_message());
    if (R == 0 || R == S - 1) {
        ck_assert_str_eq(wf__mpi_allreduce_path(sub, (size_t)1 << 30), "rd");
        WF_SCOPE {
            wf_tensor *t = wf_full(WF_SHAPE(5), R + 1, WF_F32);
            ck_assert_int_eq(wf_dist_all_reduce(sub, t, WF_DIST_SUM, NULL), 0);
            ck_assert_double_eq(wf_item(wf_narrow(t, 0, 4, 1)), 1 + S);
        }
    } else {
        ck_assert_ptr_null(wf__mpi_allreduce_path(sub, 4));
    }
    wf_process_group_free(sub);
    /* bad arguments still fail in the front-end, before any message */
    ck_assert_int_eq(wf_dist_all_reduce(g_small, NULL, WF_DIST_SUM, NULL), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_dist_barrier(g_def), 0);
}
END_TEST

/* both sides of the ring's minimum (4 KB) and of one 1 KB chunk, odd counts, a segment with a
 * partial last chunk */
START_TEST(test_small_thresholds) {
    const int64_t sizes[] = {-1, -2, -3, 1024, 2048, 4096 - 8, 4096, 4096 + 8, 3 * 1024 + 8, -2501};
    run_counts(g_small, "ring from 4 KB, 1 KB chunks", sizes, (int)(sizeof sizes / sizeof sizes[0]));
}
END_TEST

/* the ring with fewer elements than ranks (empty segments) and many 64-byte chunks; recursive
 * doubling and Open MPI's path on the same sizes */
START_TEST(test_forced_paths) {
    const int64_t sizes[] = {-1, -2, -3, -4, -17, 64, 128 + 8, 1000};
    run_counts(g_ring, "ring only, 64 B chunks", sizes, 8);
    run_counts(g_rd, "recursive doubling only", sizes, 8);
    const int64_t piece_sizes[] = {64, 100, 136, 300, 500, 801, 1000};   /* 1 .. 11 pieces */
    run_counts(g_rdp, "recursive doubling, 100 B pieces", piece_sizes, 7);
    run_counts(g_mpi, "MPI_Iallreduce", sizes, 8);
}
END_TEST

/* the default thresholds (256 KB ring minimum and chunk): just below, at, above, and a ring of
 * several chunks per segment */
START_TEST(test_default_thresholds) {
    const int64_t sizes[] = {256 * 1024 - 8, 256 * 1024, 256 * 1024 + 8};
    run_counts(g_def, "defaults", sizes, 3);
    WF_SCOPE {
        int64_t n = (3 << 20) / 4 + 5;   /* 3 MB f32: 6 (2 ranks) or 4 (3 ranks) chunks a segment */
        wf_tensor *t = rank_tensor(WF_F32, n);
        ck_assert_int_eq(wf_dist_all_reduce(g_def, t, WF_DIST_AVG, NULL), 0);
        check(t, WF_F32, WF_DIST_AVG, n, "defaults, 3 MB");
    }
}
END_TEST

/* several all_reduces in flight on each algorithm, finished out of order */
START_TEST(test_async_handles) {
    wf_process_group *gs[2] = {g_small, g_def};
    for (int gi = 0; gi < 2; gi++) WF_SCOPE {
            wf_process_group *g = gs[gi];
            int64_t n_big = gi == 0 ? 3000 : 100000;   /* ring */
            wf_tensor *a = rank_tensor(WF_F32, n_big), *b = rank_tensor(WF_BF16, 100), *c = rank_tensor(WF_I64, n_big),
                      *d = rank_tensor(WF_F32, 7);
            wf_work *wa, *wb, *wc, *wd;
            ck_assert_int_eq(wf_dist_all_reduce(g, a, WF_DIST_SUM, &wa), 0);
            ck_assert_int_eq(wf_dist_all_reduce(g, b, WF_DIST_AVG, &wb), 0);
            ck_assert_int_eq(wf_dist_all_reduce(g, c, WF_DIST_MAX, &wc), 0);
            ck_assert_int_eq(wf_dist_all_reduce(g, d, WF_DIST_MAX, &wd), 0);
            bool done = false;
            for (long spins = 0; !done && spins < 100000000L; spins++) ck_assert_int_eq(wf_work_test(wd, &done), 0);
            ck_assert(done);
            ck_assert_int_eq(wf_work_wait(wc), 0);
            ck_assert_int_eq(wf_work_wait(wb), 0);
            ck_assert_int_eq(wf_work_wait(wa), 0);
            ck_assert_int_eq(wf_work_wait(wa), 0);   /* twice is fine */
            wf_work_free(wa);
            wf_work_free(wb);
            wf_work_free(wc);
            wf_work_free(wd);
            check(a, WF_F32, WF_DIST_SUM, n_big, "async");
            check(b, WF_BF16, WF_DIST_AVG, 100, "async");
            check(c, WF_I64, WF_DIST_MAX, n_big, "async");
            check(d, WF_F32, WF_DIST_MAX, 7, "async");
            /* freeing an unfinished work waits for it */
            wf_tensor *e = rank_tensor(WF_F32, n_big);
            wf_work *we;
            ck_assert_int_eq(wf_dist_all_reduce(g, e, WF_DIST_SUM, &we), 0);
            wf_work_free(we);
            check(e, WF_F32, WF_DIST_SUM, n_big, "async, freed unfinished");
        }
}
END_TEST

/* sums that round differently in another order: every rank still holds the same bits (one
 * reduction tree for all), close to the exact sum */
START_TEST(test_ranks_agree_bitwise) {
    wf_process_group *gs[4] = {g_rd, g_small, g_ring, g_rdp};
    for (int gi = 0; gi < 4; gi++) WF_SCOPE {
            int64_t n = 5000;
            float *v = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) v[i] = (float)(0.1 * (double)i + 1.0 / (R + 3.0) + 1e-3 * R * R);
            wf_tensor *t = wf_from_data(v, WF_SHAPE(n), WF_F32);
            free(v);
            ck_assert_int_eq(wf_dist_all_reduce(gs[gi], t, WF_DIST_SUM, NULL), 0);
            wf_tensor *all = wf_zeros(WF_SHAPE((int64_t)S * n), WF_F32);
            ck_assert_int_eq(wf_dist_all_gather(g_def, all, t, NULL), 0);
            const float *p = wf_data_ptr(all);
            for (int r = 1; r < S; r++)
                ck_assert_msg(memcmp(p, p + (size_t)r * n, sizeof(float) * (size_t)n) == 0, "group %d: rank %d differs from rank 0", gi, r);
            for (int64_t i = 0; i < n; i += 97) {
                double exact = 0;
                for (int r = 0; r < S; r++) exact += (float)(0.1 * (double)i + 1.0 / (r + 3.0) + 1e-3 * r * r);
                ck_assert_double_eq_tol(p[i], exact, 1e-3 * fabs(exact) + 1e-6);
            }
        }
}
END_TEST

/* rank 1 skips one all_reduce: the others time out after the group's 1 s, on recursive
 * doubling (blocking) and on the ring (a work handle polled with wf_work_test) */
START_TEST(test_timeout_on_weft_paths) {
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(g_to_rd, t, WF_DIST_SUM, NULL), 0);   /* #1: everyone */
        ck_assert_double_eq(wf_item(wf_narrow(t, 0, 0, 1)), S);
        if (R != 1) {
            double t0 = wf__dist_now();
            ck_assert_int_eq(wf_dist_all_reduce(g_to_rd, t, WF_DIST_SUM, NULL), WF_ETIMEOUT);
            mpi_test_timed_out(t0, "wf_dist_all_reduce: timed out after 1 s in collective #2 all_reduce (16 B)");
            /* broken: later calls fail at once */
            ck_assert_int_eq(wf_dist_all_reduce(g_to_rd, t, WF_DIST_SUM, NULL), WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "broken by an earlier error");

            wf_tensor *big = wf_zeros(WF_SHAPE(10000), WF_F32);
            ck_assert_str_eq(wf__mpi_allreduce_path(g_to_ring, 40000), "ring");
            wf_work *w = NULL;
            ck_assert_int_eq(wf_dist_all_reduce(g_to_ring, big, WF_DIST_SUM, &w), 0);
            bool done = false;
            int rc = 0;
            t0 = wf__dist_now();
            while (!done && wf__dist_now() - t0 < 20) {
                rc = wf_work_test(w, &done);
                if (!done) nanosleep(&(struct timespec){0, 1000000}, NULL);
            }
            ck_assert(done);
            ck_assert_int_eq(rc, WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "collective #1 all_reduce (40000 B)");
            ck_assert_int_eq(wf_work_wait(w), WF_ETIMEOUT);
            wf_clear_error();
            wf_work_free(w);
        }
    }
    ck_assert_int_eq(wf_dist_barrier(g_def), 0);
}
END_TEST

int main(void) {
    g_def = make_group(NULL, NULL, NULL, 0);
    g_small = make_group("auto", "4096", "1024", 0);
    g_ring = make_group("ring", NULL, "64", 0);
    g_rd = make_group("rd", NULL, NULL, 0);
    g_rdp = mpi_test_group((const char *[]){ "WF_MPI_ALLREDUCE=rd", "WF_MPI_RD_PIECE=100", NULL }, 0);
    g_mpi = make_group("mpi", NULL, NULL, 0);
    g_bad = make_group("bogus", "-5", "0", 0);
    g_to_rd = make_group("auto", "4096", "1024", 1);
    g_to_ring = make_group("auto", "4096", "1024", 1);
    R = wf_process_group_rank(g_def);
    S = wf_process_group_size(g_def);
    if (S < 2 || S > 3) {
        fprintf(stderr, "run under mpirun -np 2 or 3 (world size %d)\n", S);
        return 1;
    }
    Suite *s = suite_create("dist_mpi_allreduce");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_paths_and_settings);
    tcase_add_test(tc, test_small_thresholds);
    tcase_add_test(tc, test_forced_paths);
    tcase_add_test(tc, test_default_thresholds);
    tcase_add_test(tc, test_async_handles);
    tcase_add_test(tc, test_ranks_agree_bitwise);
    tcase_add_test(tc, test_timeout_on_weft_paths);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group *gs[] = {g_to_ring, g_to_rd, g_bad, g_mpi, g_rdp, g_rd, g_ring, g_small, g_def};
    for (int i = 0; i < 9; i++) wf_process_group_free(gs[i]);
    return rc;
}
