/* tests/dist/test_process_group.c: process groups in one process: the local backend (every
 * op, every dtype), backend selection, timeouts from the environment and the options,
 * argument errors, the history and the broken state after a timeout. Runs without MPI. */
#include "test_util.h"

#include "dist/dist_impl.h"
#include "weft_config.h"

static const wf_dtype all_dtypes[] = {WF_F64, WF_F32, WF_F16, WF_BF16, WF_I64, WF_I32, WF_U8, WF_BOOL};

static wf_process_group *local_pg(void) {
    wf_process_group *pg = wf_dist_init(&(wf_dist_options){.backend = "local"});
    ck_assert_msg(pg != NULL, "%s", wf_error_message());
    return pg;
}

START_TEST(test_init_defaults) {
    unsetenv("WF_DIST_TIMEOUT");
    wf_process_group *pg = wf_dist_init(NULL);
    ck_assert_msg(pg != NULL, "%s", wf_error_message());
    ck_assert_str_eq(wf_process_group_backend(pg), "local");
    ck_assert_int_eq(wf_process_group_rank(pg), 0);
    ck_assert_int_eq(wf_process_group_size(pg), 1);
    ck_assert_double_eq(wf_process_group_timeout(pg), 1800);
    ck_assert_int_eq(wf_process_group_rank_of(pg, 0), 0);
    ck_assert_int_eq(wf_process_group_rank_of(pg, 1), -1);
    wf_process_group_free(pg);
    wf_process_group_free(NULL);

    setenv("WF_DIST_TIMEOUT", "7.5", 1);
    pg = local_pg();
    ck_assert_double_eq(wf_process_group_timeout(pg), 7.5);
    wf_process_group_free(pg);
    pg = wf_dist_init(&(wf_dist_options){.backend = "local", .timeout_s = 3});
    ck_assert_double_eq(wf_process_group_timeout(pg), 3);   /* the options win */
    wf_process_group_free(pg);
    setenv("WF_DIST_TIMEOUT", "soon", 1);   /* not a number: the default, never "no timeout" */
    pg = local_pg();
    ck_assert_double_eq(wf_process_group_timeout(pg), 1800);
    wf_process_group_free(pg);
    unsetenv("WF_DIST_TIMEOUT");
}
END_TEST

START_TEST(test_init_errors) {
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.backend = "gloo"}));
    ck_assert_error(WF_EINVAL, "unknown backend \"gloo\"");
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.backend = "local", .timeout_s = -1}));
    ck_assert_error(WF_EINVAL, "timeout_s");
#ifndef WEFT_HAVE_NCCL
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.backend = "nccl"}));
    ck_assert_error(WF_ENOTSUP, "-Dnccl");
#endif
    wf_cluster_info two = {.world_size = 2, .global_rank = 1, .env_name = "torchrun"};
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.backend = "local", .cluster = &two}));
    ck_assert_error(WF_EINVAL, "world size 2");
    wf_cluster_info bad = {.world_size = 2, .global_rank = 2};
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.cluster = &bad}));
    ck_assert_error(WF_EINVAL, "rank 2 of world size 2");
#ifndef WEFT_HAVE_MPI
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.backend = "mpi"}));
    ck_assert_error(WF_ENOTSUP, "-Dmpi");
    ck_assert_ptr_null(wf_dist_init(&(wf_dist_options){.cluster = &two}));   /* auto, world of two */
    ck_assert_error(WF_ENOTSUP, "-Dmpi");
#endif
}
END_TEST

/* Every op is the identity (or a copy) in a world of one, for every dtype. */
START_TEST(test_local_ops_all_dtypes) {
    wf_process_group *pg = local_pg();
    for (size_t d = 0; d < sizeof all_dtypes / sizeof all_dtypes[0]; d++) {
        wf_dtype dt = all_dtypes[d];
        WF_SCOPE {
            double v[6] = {1, 0, 3, 1, 2, 0};
            wf_tensor *t = wf_to_dtype(tt_f64(v, WF_SHAPE(2, 3)), dt);
            for (int op = WF_DIST_SUM; op <= WF_DIST_PROD; op++) {
                if (dt == WF_BOOL && op == WF_DIST_AVG) {
                    ck_assert_int_eq(wf_dist_all_reduce(pg, t, op, NULL), WF_EDTYPE);
                    ck_assert_error(WF_EDTYPE, "avg is not defined for bool");
                    continue;
                }
                ck_assert_msg(wf_dist_all_reduce(pg, t, (wf_dist_reduce_op)op, NULL) == 0, "%s", wf_error_message());
                ck_assert_int_eq(wf_dist_reduce(pg, t, 0, (wf_dist_reduce_op)op, NULL), 0);
            }
            ck_assert_int_eq(wf_dist_broadcast(pg, t, 0, NULL), 0);
            double want[6];
            for (int i = 0; i < 6; i++) want[i] = dt == WF_BOOL ? (v[i] != 0) : v[i];
            ck_assert_tensor_near(t, want, 6, 0);

            wf_tensor *out = wf_zeros(WF_SHAPE(2, 3), dt);
            ck_assert_int_eq(wf_dist_all_gather(pg, out, t, NULL), 0);
            ck_assert_tensor_near(out, want, 6, 0);
            wf_tensor *rs = wf_zeros(WF_SHAPE(2, 3), dt);
            ck_assert_int_eq(wf_dist_reduce_scatter(pg, rs, t, WF_DIST_SUM, NULL), 0);
            ck_assert_tensor_near(rs, want, 6, 0);
            wf_tensor *u = wf_dist_all_gather_uneven(pg, t);
            ck_assert_shape(u, 2, 3);
            ck_assert_tensor_near(u, want, 6, 0);
        }
    }
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    char msg[16] = "hello", got[16] = {0};
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, msg, 6, 0), 0);
    ck_assert_int_eq(wf_dist_gather_bytes(pg, msg, 6, got, 0), 0);
    ck_assert_str_eq(got, "hello");
    wf_process_group_free(pg);
}
END_TEST

START_TEST(test_argument_errors) {
    wf_process_group *pg = local_pg();
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(2, 3), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(NULL, t, WF_DIST_SUM, NULL), WF_ENULL);
        ck_assert_error(WF_ENULL, "NULL process group");
        ck_assert_int_eq(wf_dist_all_reduce(pg, NULL, WF_DIST_SUM, NULL), WF_ENULL);
        ck_assert_error(WF_ENULL, "wf_dist_all_reduce: NULL tensor");
        ck_assert_int_eq(wf_dist_all_reduce(pg, wf_transpose(t, 0, 1), WF_DIST_SUM, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "not contiguous");
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, (wf_dist_reduce_op)9, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "unknown reduce op 9");
        ck_assert_int_eq(wf_dist_broadcast(pg, t, 1, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "src = 1 is out of range for a group of size 1");
        ck_assert_int_eq(wf_dist_reduce(pg, t, -1, WF_DIST_SUM, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "dst = -1");
        wf_tensor *out = wf_zeros(WF_SHAPE(3, 3), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(pg, out, t, NULL), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "out [3,3] must be [2,3]");
        ck_assert_int_eq(wf_dist_reduce_scatter(pg, t, out, WF_DIST_SUM, NULL), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "in [3,3] must be [2,3]");
        wf_tensor *out64 = wf_zeros(WF_SHAPE(2, 3), WF_F64);
        ck_assert_int_eq(wf_dist_all_gather(pg, out64, t, NULL), WF_EDTYPE);
        ck_assert_error(WF_EDTYPE, "out is float64 but in is float32");
        wf_tensor *meta = wf_empty_on(WF_SHAPE(2), WF_F32, (wf_device){WF_DEV_META, 0});
        if (meta) {
            ck_assert_int_eq(wf_dist_all_reduce(pg, meta, WF_DIST_SUM, NULL), WF_EDEVICE);
            ck_assert_error(WF_EDEVICE, "the local backend cannot move");
        }
        wf_clear_error();
        ck_assert_int_eq(wf_dist_send(pg, t, 0, 0), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "cannot send to itself");
        ck_assert_int_eq(wf_dist_recv(pg, t, 3, 0), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "src = 3");
        ck_assert_int_eq(wf_dist_broadcast_bytes(pg, NULL, 4, 0), WF_ENULL);
        ck_assert_error(WF_ENULL, "NULL buffer of 4 bytes");
        ck_assert_int_eq(wf_dist_gather_bytes(pg, "ab", 2, NULL, 0), WF_ENULL);
        ck_assert_error(WF_ENULL, "NULL out on the destination rank 0");
        ck_assert_ptr_null(wf_dist_all_gather_uneven(pg, wf_scalar(1, WF_F32)));
        ck_assert_error(WF_ESHAPE, "0-dim");
        ck_assert_int_eq(wf_work_wait(NULL), WF_ENULL);
        wf_clear_error();
    }
    wf_process_group_free(pg);
}
END_TEST

START_TEST(test_async_and_history) {
    wf_process_group *pg = local_pg();
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(4), WF_F32);
        wf_work *w = NULL;
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_AVG, &w), 0);
        ck_assert_ptr_nonnull(w);
        bool done = false;
        ck_assert_int_eq(wf_work_test(w, &done), 0);
        ck_assert(done);
        ck_assert_int_eq(wf_work_wait(w), 0);
        wf_work_free(w);
        wf_work_free(NULL);
        ck_assert_int_eq(wf_dist_barrier(pg), 0);
        /* an argument error is not a collective: not numbered, not in the history */
        ck_assert_int_eq(wf_dist_broadcast(pg, t, 5, NULL), WF_EINVAL);
        wf_clear_error();
    }
    char buf[512];
    size_t n = wf_process_group_history(pg, buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_str_eq(buf, "#1 all_reduce float32 16 B done\n#2 barrier - 0 B done\n");
    char small[10];
    n = wf_process_group_history(pg, small, sizeof small);
    ck_assert_uint_eq(n, 9);
    ck_assert_str_eq(small, "#1 all_re");
    /* more than the history holds: the newest are kept */
    for (int i = 0; i < 20; i++) ck_assert_int_eq(wf_dist_barrier(pg), 0);
    char big[2048];
    wf_process_group_history(pg, big, sizeof big);
    ck_assert_ptr_null(strstr(big, "#6 barrier"));
    ck_assert_ptr_nonnull(strstr(big, "#7 barrier"));
    ck_assert_ptr_nonnull(strstr(big, "#22 barrier - 0 B done\n"));
    wf_process_group_free(pg);
}
END_TEST

/* The timeout path itself (a world of one never waits): the message, then the broken group. */
START_TEST(test_timeout_breaks_group) {
    wf_process_group *pg = local_pg();
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    ck_assert_int_eq(wf__pg_timeout(pg, "wf_dist_all_reduce", WF_COLL_ALL_REDUCE, 2, 64), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "wf_dist_all_reduce: timed out after 1800 s in collective #2 all_reduce (64 B)");
    ck_assert_int_eq(wf__pg_timeout(pg, "x", WF_COLL_BARRIER, 3, 0), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "ranks that did not join: unknown (no store)");
    double t0 = wf__dist_now();
    ck_assert_int_eq(wf_dist_barrier(pg), WF_ETIMEOUT);
    ck_assert_error(WF_ETIMEOUT, "broken by an earlier error: wf_dist_all_reduce: timed out");
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), WF_ETIMEOUT);
        ck_assert_ptr_null(wf_dist_all_gather_uneven(pg, t));
        ck_assert_error(WF_ETIMEOUT, "#2 all_reduce");
    }
    ck_assert_ptr_null(wf_process_group_new_subgroup(pg, (int[]){0}, 1));
    ck_assert_error(WF_ETIMEOUT, "broken");
    ck_assert(wf__dist_now() - t0 < 1.0);   /* at once */
    wf_process_group_free(pg);
}
END_TEST

START_TEST(test_subgroups) {
    wf_process_group *pg = local_pg();
    wf_process_group *sub = wf_process_group_new_subgroup(pg, (int[]){0}, 1);
    ck_assert_msg(sub != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_process_group_rank(sub), 0);
    ck_assert_int_eq(wf_process_group_size(sub), 1);
    ck_assert_str_eq(wf_process_group_backend(sub), "local");
    ck_assert_int_eq(wf_dist_barrier(sub), 0);
    ck_assert_ptr_null(wf_process_group_new_subgroup(pg, (int[]){1}, 1));
    ck_assert_error(WF_EINVAL, "ranks[0] = 1 is not a world rank");
    ck_assert_ptr_null(wf_process_group_new_subgroup(pg, (int[]){0, 0}, 2));
    ck_assert_error(WF_EINVAL, "2 ranks for a subgroup of a group of size 1");
    ck_assert_ptr_null(wf_process_group_new_subgroup(NULL, (int[]){0}, 1));
    ck_assert_error(WF_ENULL, "NULL process group");
    wf_process_group_free(sub);
    wf_process_group_free(pg);
}
END_TEST

START_TEST(test_debug_check_local) {
    setenv("WF_DIST_DEBUG", "1", 1);
    wf_process_group *pg = local_pg();
    unsetenv("WF_DIST_DEBUG");
    ck_assert(pg->debug);
    WF_SCOPE {
        wf_tensor *t = wf_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), 0);   /* one rank always agrees */
    }
    wf_process_group_free(pg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist_process_group");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_defaults);
    tcase_add_test(tc, test_init_errors);
    tcase_add_test(tc, test_local_ops_all_dtypes);
    tcase_add_test(tc, test_argument_errors);
    tcase_add_test(tc, test_async_and_history);
    tcase_add_test(tc, test_timeout_breaks_group);
    tcase_add_test(tc, test_subgroups);
    tcase_add_test(tc, test_debug_check_local);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
