/* tests/dist/test_dist_timeout.c: rank 1 skips a collective. The others get WF_ETIMEOUT
 * within the group's timeout (WF_DIST_TIMEOUT=2, set before wf_dist_init), naming the op, its
 * sequence number and bytes; the group is then broken (later calls fail at once). An async
 * handle times out through wf_work_test too. A second group, untouched, brings the ranks
 * together at the end. Run under `mpirun -np 2` and `-np 3` with CK_FORK=no. */
#include "test_util.h"

#include <stdio.h>
#include <time.h>

#include "dist/dist_impl.h"

static wf_process_group *pg, *pg_async, *pg_parent, *pg_big, *sync_pg;
static int R, S;

START_TEST(test_skipped_collective_times_out) {
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), 0);   /* #1: everyone */
        if (R != 1) {
            double t0 = wf__dist_now();
            ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), WF_ETIMEOUT);   /* #2: rank 1 is absent */
            double dt = wf__dist_now() - t0;
            ck_assert_msg(dt >= 1.9 && dt < 10, "timed out after %.2f s, expected about 2", dt);
            const char *m = wf_error_message();
            ck_assert_msg(strstr(m, "wf_dist_all_reduce: timed out after 2 s in collective #2 all_reduce (16 B)"), "%s", m);
            /* the store (rank 0 serves it) names the rank that skipped */
            ck_assert_msg(strstr(m, "ranks that did not join: 1"), "%s", m);
            ck_assert_msg(!strstr(m, "ranks that did not join: 1,"), "%s", m);
            char hist[512];
            wf_process_group_history(pg, hist, sizeof hist);
            ck_assert_msg(strstr(hist, "#1 all_reduce float32 16 B done\n#2 all_reduce float32 16 B failed (WF_ETIMEOUT)\n"),
                          "%s", hist);
            /* broken: every later call fails at once with the first error */
            t0 = wf__dist_now();
            ck_assert_int_eq(wf_dist_barrier(pg), WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "broken by an earlier error: wf_dist_all_reduce: timed out");
            ck_assert_int_eq(wf_dist_broadcast(pg, t, 0, NULL), WF_ETIMEOUT);
            wf_clear_error();
            ck_assert(wf__dist_now() - t0 < 0.5);
        }
        /* a large blocking collective (barrier + blocking MPI) times out the same way */
        wf_tensor *big = wf_zeros(WF_SHAPE(1 << 17), WF_F32);
        if (R != 1) {
            ck_assert_int_eq(wf_dist_all_reduce(pg_big, big, WF_DIST_SUM, NULL), WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "collective #1 all_reduce (524288 B)");
        }
    }
    ck_assert_int_eq(wf_dist_barrier(sync_pg), 0);
}
END_TEST

START_TEST(test_async_work_times_out) {
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(8), WF_F64);
        if (R != 1) {
            wf_work *w = NULL;
            ck_assert_int_eq(wf_dist_all_reduce(pg_async, t, WF_DIST_MAX, &w), 0);
            bool done = false;
            int rc = 0;
            double t0 = wf__dist_now();
            while (!done && wf__dist_now() - t0 < 20) {
                rc = wf_work_test(w, &done);
                if (!done) {
                    struct timespec ts = {0, 1000000};
                    nanosleep(&ts, NULL);
                }
            }
            ck_assert(done);
            ck_assert_int_eq(rc, WF_ETIMEOUT);
            ck_assert_error(WF_ETIMEOUT, "collective #1 all_reduce (64 B)");
            ck_assert_int_eq(wf_work_wait(w), WF_ETIMEOUT);   /* the same error again */
            wf_clear_error();
            wf_work_free(w);
        }
    }
    ck_assert_int_eq(wf_dist_barrier(sync_pg), 0);
}
END_TEST

/* a subgroup listed last-rank-first: its rank 0 (world rank S-1) skips; world rank 0 names it
 * by group and world rank */
START_TEST(test_subgroup_timeout_names_world_rank) {
    wf_process_group *sub = wf_process_group_new_subgroup(pg_parent, (int[]){S - 1, 0}, 2);
    ck_assert_msg(sub != NULL, "%s", wf_error_message());
    if (R == 0) {
        ck_assert_int_eq(wf_process_group_rank(sub), 1);
        ck_assert_int_eq(wf_dist_barrier(sub), WF_ETIMEOUT);
        char want[96];
        snprintf(want, sizeof want, "ranks that did not join: 0 (world rank %d)", S - 1);
        ck_assert_error(WF_ETIMEOUT, want);
    }
    ck_assert_int_eq(wf_dist_barrier(sync_pg), 0);
    wf_process_group_free(sub);
}
END_TEST

int main(void) {
    sync_pg = wf_dist_init(&(wf_dist_options){.timeout_s = 60});
    setenv("WF_DIST_TIMEOUT", "2", 1);
    pg = wf_dist_init(NULL);
    pg_async = wf_dist_init(&(wf_dist_options){.timeout_s = 1});
    pg_parent = wf_dist_init(&(wf_dist_options){.timeout_s = 1});
    pg_big = wf_dist_init(&(wf_dist_options){.timeout_s = 1});
    if (!sync_pg || !pg || !pg_async || !pg_parent || !pg_big) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        return 1;
    }
    R = wf_process_group_rank(pg);
    S = wf_process_group_size(pg);
    if (S < 2 || wf_process_group_timeout(pg) != 2) {
        fprintf(stderr, "run under mpirun -np 2 or more (world size %d, timeout %g)\n", S, wf_process_group_timeout(pg));
        return 1;
    }
    Suite *s = suite_create("dist_timeout");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_skipped_collective_times_out);
    tcase_add_test(tc, test_async_work_times_out);
    tcase_add_test(tc, test_subgroup_timeout_names_world_rank);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    /* freeing groups with abandoned collectives must not hang (MPI_Comm_free is local) */
    wf_process_group_free(pg_big);
    wf_process_group_free(pg_parent);
    wf_process_group_free(pg_async);
    wf_process_group_free(pg);
    wf_process_group_free(sync_pg);
    return rc;
}
