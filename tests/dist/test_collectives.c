/* tests/dist/test_collectives.c: every collective of the mpi backend, for every dtype, against
 * a reference computed locally; uneven all_gather; async handles; subgroups; WF_DIST_DEBUG.
 * Run under `mpirun -np 2` and `-np 3` (CK_FORK=no: every rank runs the same tests in order).
 * WF_DIST_TIMEOUT (set by meson) bounds a collective left waiting by a failed assertion. */
#include "test_util.h"

#include <mpi.h>
#include <stdio.h>

#include "dist/dist_impl.h"

static wf_process_group *pg;
static int R, S;   /* this rank, world size */

/* WF_TEST_DEVICE=cuda: the same tests on CUDA tensors (the mpi backend stages them through
 * host memory, so several ranks share one GPU), on the GPU machine. */
static wf_device DEV;
static wf_tensor *on(wf_tensor *t) { return t && DEV.type != WF_DEV_CPU ? wf_to_device(t, DEV) : t; }
static wf_tensor *dev_zeros(const int64_t *shape, int nd, wf_dtype dt) { return on(wf_zeros(shape, nd, dt)); }
static wf_tensor *dev_full(const int64_t *shape, int nd, double v, wf_dtype dt) { return on(wf_full(shape, nd, v, dt)); }
static wf_tensor *dev_ones(const int64_t *shape, int nd, wf_dtype dt) { return on(wf_ones(shape, nd, dt)); }
static wf_tensor *dev_dtype(wf_tensor *t, wf_dtype dt) { return on(wf_to_dtype(t, dt)); }

static const wf_dtype all_dtypes[] = {WF_F64, WF_F32, WF_F16, WF_BF16, WF_I64, WF_I32, WF_U8, WF_BOOL};
#define N_DTYPES ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))
#define COUNT 7

/* rank r's element i: small integers, exact in every dtype; bool: (r + i) % 3 == 0 */
static double val(wf_dtype dt, int r, int i) {
    if (dt == WF_BOOL) return (r + i) % 3 == 0;
    return (double)((r + 1) + i % 3);
}

static wf_tensor *rank_tensor(wf_dtype dt, int r, int n) {
    double v[64];
    for (int i = 0; i < n; i++) v[i] = val(dt, r, i);
    return dev_dtype(wf_from_data(v, WF_SHAPE(n), WF_F64), dt);
}

static double reference(wf_dtype dt, wf_dist_reduce_op op, int i) {
    double acc = val(dt, 0, i);
    for (int r = 1; r < S; r++) {
        double x = val(dt, r, i);
        switch (op) {
        case WF_DIST_SUM: case WF_DIST_AVG: acc += x; break;
        case WF_DIST_MAX: acc = x > acc ? x : acc; break;
        case WF_DIST_MIN: acc = x < acc ? x : acc; break;
        case WF_DIST_PROD: acc *= x; break;
        }
    }
    if (dt == WF_BOOL) return acc != 0;   /* sum/max = or, min/prod = and */
    if (op == WF_DIST_AVG) {
        acc /= S;
        if (!wf_dtype_is_floating(dt)) acc = trunc(acc);   /* integers truncate, as NCCL */
    }
    return acc;
}

START_TEST(test_all_reduce_every_dtype_and_op) {
    for (int d = 0; d < N_DTYPES; d++) {
        wf_dtype dt = all_dtypes[d];
        for (int op = WF_DIST_SUM; op <= WF_DIST_PROD; op++) {
            if (dt == WF_BOOL && op == WF_DIST_AVG) continue;
            WF_SCOPE {
                wf_tensor *t = rank_tensor(dt, R, COUNT);
                int rc = wf_dist_all_reduce(pg, t, (wf_dist_reduce_op)op, NULL);
                ck_assert_msg(rc == 0, "%s op %d: %s", wf_dtype_name(dt), op, wf_error_message());
                double want[COUNT];
                for (int i = 0; i < COUNT; i++) want[i] = reference(dt, (wf_dist_reduce_op)op, i);
                ck_assert_tensor_near(t, want, COUNT, 0);
                /* reduce to the last rank: the same values there */
                wf_tensor *u = rank_tensor(dt, R, COUNT);
                ck_assert_int_eq(wf_dist_reduce(pg, u, S - 1, (wf_dist_reduce_op)op, NULL), 0);
                if (R == S - 1) ck_assert_tensor_near(u, want, COUNT, 0);
            }
        }
    }
}
END_TEST

START_TEST(test_broadcast_gather_scatter_every_dtype) {
    for (int d = 0; d < N_DTYPES; d++) {
        wf_dtype dt = all_dtypes[d];
        WF_SCOPE {
            for (int src = 0; src < S; src++) {
                wf_tensor *t = rank_tensor(dt, R, COUNT);
                ck_assert_int_eq(wf_dist_broadcast(pg, t, src, NULL), 0);
                double want[COUNT];
                for (int i = 0; i < COUNT; i++) want[i] = val(dt, src, i);
                ck_assert_tensor_near(t, want, COUNT, 0);
            }
            /* all_gather: rank r's slice at r */
            wf_tensor *in = rank_tensor(dt, R, COUNT);
            wf_tensor *out = dev_zeros(WF_SHAPE((int64_t)S * COUNT), dt);
            ck_assert_msg(wf_dist_all_gather(pg, out, in, NULL) == 0, "%s", wf_error_message());
            double want[3 * COUNT];
            for (int r = 0; r < S; r++)
                for (int i = 0; i < COUNT; i++) want[r * COUNT + i] = val(dt, r, i);
            int64_t n_all = S * COUNT;
            ck_assert_tensor_near(out, want, n_all, 0);
            /* reduce_scatter (sum): rank r gets the sum of every rank's slice r */
            double v[3 * COUNT];
            for (int k = 0; k < S * COUNT; k++) v[k] = val(dt, R, k);
            wf_tensor *big = dev_dtype(wf_from_data(v, WF_SHAPE((int64_t)S * COUNT), WF_F64), dt);
            wf_tensor *mine = dev_zeros(WF_SHAPE(COUNT), dt);
            ck_assert_int_eq(wf_dist_reduce_scatter(pg, mine, big, WF_DIST_SUM, NULL), 0);
            double rs[COUNT];
            for (int i = 0; i < COUNT; i++) {
                double acc = 0;
                for (int r = 0; r < S; r++) acc += val(dt, r, R * COUNT + i);
                rs[i] = dt == WF_BOOL ? acc != 0 : acc;
            }
            ck_assert_tensor_near(mine, rs, COUNT, 0);
        }
    }
}
END_TEST

START_TEST(test_all_gather_2d_and_uneven) {
    WF_SCOPE {
        /* [2,3] per rank -> [2S,3] */
        double v[6];
        for (int i = 0; i < 6; i++) v[i] = R * 100 + i;
        wf_tensor *in = dev_dtype(wf_from_data(v, WF_SHAPE(2, 3), WF_F64), WF_F32);
        wf_tensor *out = dev_zeros(WF_SHAPE(2 * S, 3), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(pg, out, in, NULL), 0);
        double want[18];
        for (int r = 0; r < S; r++)
            for (int i = 0; i < 6; i++) want[r * 6 + i] = r * 100 + i;
        int64_t n_out = 6 * S;
        ck_assert_tensor_near(out, want, n_out, 0);
        wf_tensor *bad = dev_zeros(WF_SHAPE(2 * S + 1, 3), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(pg, bad, in, NULL), WF_ESHAPE);
        wf_clear_error();

        /* rank r has r+1 rows [r*10 + row, -(r*10 + row)] */
        double u[6];
        for (int row = 0; row <= R; row++) u[2 * row] = R * 10 + row, u[2 * row + 1] = -(R * 10 + row);
        wf_tensor *ui = dev_dtype(wf_from_data(u, WF_SHAPE(R + 1, 2), WF_F64), WF_I64);
        wf_tensor *g = wf_dist_all_gather_uneven(pg, ui);
        int rows = S * (S + 1) / 2;
        ck_assert_shape(g, rows, 2);
        double gw[12];
        int k = 0;
        for (int r = 0; r < S; r++)
            for (int row = 0; row <= r; row++) gw[k++] = r * 10 + row, gw[k++] = -(r * 10 + row);
        int64_t n_g = rows * 2;
        ck_assert_tensor_near(g, gw, n_g, 0);

        /* trailing dimensions that differ: every rank gets WF_ESHAPE, none hangs */
        wf_tensor *odd = dev_zeros(WF_SHAPE(1, R == 0 ? 2 : 3), WF_F32);
        ck_assert_ptr_null(wf_dist_all_gather_uneven(pg, odd));
        ck_assert_error(WF_ESHAPE, "only the first dimension may differ");
        /* and a rank with zero rows */
        wf_tensor *z = dev_zeros(WF_SHAPE(R == 1 ? 0 : 1, 2), WF_F32);
        wf_tensor *gz = wf_dist_all_gather_uneven(pg, z);
        ck_assert_shape(gz, S - 1, 2);
    }
}
END_TEST

/* Large blocking collectives take the barrier + blocking MPI path (>= 256 KB). */
START_TEST(test_large_collectives) {
    enum { N = 100000 };   /* 400 KB of f32 */
    WF_SCOPE {
        wf_tensor *t = dev_full(WF_SHAPE(N), R + 1, WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_AVG, NULL), 0);
        ck_assert_double_eq(wf_item(wf_narrow(t, 0, N - 1, 1)), (S + 1) / 2.0);
        wf_tensor *h = dev_full(WF_SHAPE(2 * N), R + 1, WF_BF16);   /* 400 KB, user op */
        ck_assert_int_eq(wf_dist_all_reduce(pg, h, WF_DIST_PROD, NULL), 0);
        ck_assert_double_eq(wf_item(wf_narrow(h, 0, 2 * N - 1, 1)), S == 2 ? 2 : 6);
        wf_tensor *b = dev_full(WF_SHAPE(N), R, WF_I32);
        ck_assert_int_eq(wf_dist_broadcast(pg, b, S - 1, NULL), 0);
        ck_assert_double_eq(wf_item(wf_narrow(b, 0, N / 2, 1)), S - 1);
        ck_assert_int_eq(wf_dist_reduce(pg, b, 0, WF_DIST_SUM, NULL), 0);
        if (R == 0) ck_assert_double_eq(wf_item(wf_narrow(b, 0, 7, 1)), S * (S - 1));
        wf_tensor *in = dev_full(WF_SHAPE(N), R, WF_F32);
        wf_tensor *out = dev_zeros(WF_SHAPE((int64_t)S * N), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(pg, out, in, NULL), 0);
        for (int r = 0; r < S; r++) ck_assert_double_eq(wf_item(wf_narrow(out, 0, (int64_t)r * N + 5, 1)), r);
        wf_tensor *mine = dev_zeros(WF_SHAPE(N), WF_F32);
        ck_assert_int_eq(wf_dist_reduce_scatter(pg, mine, out, WF_DIST_MAX, NULL), 0);
        ck_assert_double_eq(wf_item(wf_narrow(mine, 0, N - 1, 1)), R);
    }
}
END_TEST

START_TEST(test_barrier_p2p_bytes) {
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    WF_SCOPE {
        /* 0 -> 1, then 1 -> 0 with each value + 1 */
        if (R <= 1) {
            wf_tensor *t = dev_zeros(WF_SHAPE(5), WF_BF16);
            if (R == 0) {
                double v[5] = {1, 2, 3, 4, 5};
                t = dev_dtype(wf_from_data(v, WF_SHAPE(5), WF_F64), WF_BF16);
                ck_assert_int_eq(wf_dist_send(pg, t, 1, 7), 0);
                ck_assert_int_eq(wf_dist_recv(pg, t, 1, 8), 0);
                ck_assert_tensor_near(t, ((double[]){2, 3, 4, 5, 6}), 5, 0);
            } else {
                ck_assert_int_eq(wf_dist_recv(pg, t, 0, 7), 0);
                ck_assert_tensor_near(t, ((double[]){1, 2, 3, 4, 5}), 5, 0);
                wf_tensor *t1 = wf_add_scalar(t, 1);
                ck_assert_int_eq(wf_dist_send(pg, t1, 0, 8), 0);
            }
        }
    }
    char buf[32] = {0};
    if (R == S - 1) snprintf(buf, sizeof buf, "from rank %d", R);
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, buf, sizeof buf, S - 1), 0);
    char want[32];
    snprintf(want, sizeof want, "from rank %d", S - 1);
    ck_assert_str_eq(buf, want);

    char mine[8], all[3 * 8];
    snprintf(mine, sizeof mine, "r%d", R);
    ck_assert_int_eq(wf_dist_gather_bytes(pg, mine, sizeof mine, R == 0 ? all : NULL, 0), 0);
    if (R == 0)
        for (int r = 0; r < S; r++) {
            snprintf(want, sizeof want, "r%d", r);
            ck_assert_str_eq(all + 8 * r, want);
        }
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
}
END_TEST

START_TEST(test_async_handles) {
    WF_SCOPE {
        wf_tensor *a = dev_full(WF_SHAPE(1000), R + 1, WF_F32);
        wf_tensor *b = dev_full(WF_SHAPE(10), R, WF_I32);
        wf_tensor *c = dev_full(WF_SHAPE(3), 1, WF_F64);
        wf_work *wa = NULL, *wb = NULL, *wc = NULL;
        ck_assert_int_eq(wf_dist_all_reduce(pg, a, WF_DIST_SUM, &wa), 0);
        ck_assert_int_eq(wf_dist_all_reduce(pg, b, WF_DIST_MAX, &wb), 0);
        ck_assert_int_eq(wf_dist_broadcast(pg, c, 0, &wc), 0);
        ck_assert_ptr_nonnull(wa);
        /* poll one to completion through test() */
        bool done = false;
        for (int spins = 0; !done && spins < 10000000; spins++) ck_assert_int_eq(wf_work_test(wc, &done), 0);
        ck_assert(done);
        ck_assert_int_eq(wf_work_wait(wb), 0);
        ck_assert_int_eq(wf_work_wait(wa), 0);
        ck_assert_int_eq(wf_work_wait(wa), 0);   /* twice is fine */
        wf_work_free(wa);
        wf_work_free(wb);
        wf_work_free(wc);
        ck_assert_double_eq(wf_item(wf_narrow(a, 0, 999, 1)), S * (S + 1) / 2.0);
        ck_assert_double_eq(wf_item(wf_narrow(b, 0, 0, 1)), S - 1);
        /* freeing an unfinished work waits for it */
        wf_tensor *d = dev_full(WF_SHAPE(4), 2, WF_F32);
        wf_work *wd = NULL;
        ck_assert_int_eq(wf_dist_all_reduce(pg, d, WF_DIST_PROD, &wd), 0);
        wf_work_free(wd);
        ck_assert_double_eq(wf_item(wf_narrow(d, 0, 0, 1)), pow(2, S));
    }
    char hist[1024];
    wf_process_group_history(pg, hist, sizeof hist);
    ck_assert_msg(strstr(hist, "all_reduce float32 4000 B done") != NULL, "%s", hist);
}
END_TEST

START_TEST(test_subgroup_first_and_last) {
    int ranks[2] = {0, S - 1};
    wf_process_group *sub = wf_process_group_new_subgroup(pg, ranks, 2);
    ck_assert_msg(sub != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_process_group_size(sub), 2);
    int want_rank = R == 0 ? 0 : R == S - 1 ? 1 : -1;
    ck_assert_int_eq(wf_process_group_rank(sub), want_rank);
    ck_assert_int_eq(wf_process_group_rank_of(sub, S - 1), 1);
    WF_SCOPE {
        wf_tensor *t = dev_full(WF_SHAPE(4), R + 1, WF_F32);
        if (want_rank < 0) {
            ck_assert_int_eq(wf_dist_all_reduce(sub, t, WF_DIST_SUM, NULL), WF_EINVAL);
            ck_assert_error(WF_EINVAL, "not a member");
        } else {
            ck_assert_int_eq(wf_dist_all_reduce(sub, t, WF_DIST_SUM, NULL), 0);
            ck_assert_double_eq(wf_item(wf_narrow(t, 0, 0, 1)), 1 + S);   /* ranks 0 and S-1 */
            wf_tensor *g = dev_zeros(WF_SHAPE(2), WF_I64);
            wf_tensor *mine = dev_full(WF_SHAPE(1), R, WF_I64);
            ck_assert_int_eq(wf_dist_all_gather(sub, g, mine, NULL), 0);
            ck_assert_tensor_near(g, ((double[]){0, S - 1}), 2, 0);
            ck_assert_int_eq(wf_dist_broadcast(sub, mine, 1, NULL), 0);   /* group rank 1 = world S-1 */
            ck_assert_double_eq(wf_item(mine), S - 1);
            ck_assert_int_eq(wf_dist_barrier(sub), 0);
        }
    }
    /* the listed order is the group's order */
    int rev[2] = {S - 1, 0};
    wf_process_group *sub2 = wf_process_group_new_subgroup(pg, rev, 2);
    ck_assert_msg(sub2 != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_process_group_rank(sub2), R == S - 1 ? 0 : R == 0 ? 1 : -1);
    wf_process_group_free(sub2);
    wf_process_group_free(sub);
    /* the world group still works after the subgroups */
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
}
END_TEST

START_TEST(test_debug_mismatch) {
    setenv("WF_DIST_DEBUG", "1", 1);
    wf_process_group *dbg = wf_dist_init(NULL);
    unsetenv("WF_DIST_DEBUG");
    ck_assert_msg(dbg != NULL, "%s", wf_error_message());
    WF_SCOPE {
        wf_tensor *t = dev_ones(WF_SHAPE(R == 1 ? 5 : 4), WF_F32);
        ck_assert_int_eq(wf_dist_all_reduce(dbg, t, WF_DIST_SUM, NULL), WF_EDIST);
        const char *m = wf_error_message();
        ck_assert_msg(strstr(m, "wf_dist_all_reduce: ranks disagree: rank 0 all_reduce float32 [4] sum, "
                                "rank 1 all_reduce float32 [5] sum") != NULL, "%s", m);
        wf_clear_error();
        /* dtypes and roots too */
        wf_tensor *u = dev_ones(WF_SHAPE(4), R == 0 ? WF_F64 : WF_F32);
        ck_assert_int_eq(wf_dist_broadcast(dbg, u, 0, NULL), WF_EDIST);
        ck_assert_error(WF_EDIST, "rank 0 broadcast float64 [4] root 0, rank 1 broadcast float32 [4] root 0");
        wf_tensor *v = dev_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_reduce(dbg, v, R == 0 ? 0 : 1, WF_DIST_MAX, NULL), WF_EDIST);
        ck_assert_error(WF_EDIST, "rank 1 reduce float32 [4] root 1 max");
        /* the check agrees on matching calls, and the group is still usable */
        wf_tensor *w = dev_ones(WF_SHAPE(4), WF_F32);
        ck_assert_msg(wf_dist_all_reduce(dbg, w, WF_DIST_SUM, NULL) == 0, "%s", wf_error_message());
        ck_assert_double_eq(wf_item(wf_narrow(w, 0, 0, 1)), S);
        ck_assert_int_eq(wf_dist_barrier(dbg), 0);

        /* a backend without its own side channel (as NCCL may be) checks through the store */
        ck_assert_ptr_nonnull(dbg->store);
        static wf__pg_backend no_exchange;
        no_exchange = *dbg->be;
        no_exchange.exchange = NULL;
        dbg->be = &no_exchange;
        wf_tensor *x = dev_ones(WF_SHAPE(2, R == S - 1 ? 4 : 2), WF_I32);
        ck_assert_int_eq(wf_dist_all_reduce(dbg, x, WF_DIST_MIN, NULL), WF_EDIST);
        char want[96];
        snprintf(want, sizeof want, "rank %d all_reduce int32 [2,4] min", S - 1);
        ck_assert_error(WF_EDIST, want);
        ck_assert_int_eq(wf_dist_all_reduce(dbg, w, WF_DIST_SUM, NULL), 0);
        ck_assert_double_eq(wf_item(wf_narrow(w, 0, 0, 1)), S * S);
        dbg->be = &wf__backend_mpi;
    }
    wf_process_group_free(dbg);
}
END_TEST

START_TEST(test_errors_under_mpi) {
    ck_assert_str_eq(wf_process_group_backend(pg), "mpi");
    WF_SCOPE {
        wf_tensor *t = dev_ones(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_broadcast(pg, t, S, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "src = ");
        ck_assert_int_eq(wf_dist_send(pg, t, R, 0), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "cannot send to itself");
        wf_tensor *o = dev_zeros(WF_SHAPE(4), WF_F32);
        ck_assert_int_eq(wf_dist_all_gather(pg, o, t, NULL), WF_ESHAPE);
        char want[64];
        snprintf(want, sizeof want, "out [4] must be [%d]", 4 * S);
        ck_assert_error(WF_ESHAPE, want);
    }
    ck_assert_ptr_null(wf_process_group_new_subgroup(pg, (int[]){0, S}, 2));
    ck_assert_error(WF_EINVAL, "is not a world rank");
    ck_assert_int_eq(wf_dist_barrier(pg), 0);   /* argument errors do not desynchronize the ranks */
}
END_TEST

int main(void) {
    const char *dev = getenv("WF_TEST_DEVICE");
    DEV = dev && !strcmp(dev, "cuda") ? WF_CUDA(0) : WF_CPU;
    if (DEV.type == WF_DEV_CUDA && wf_cuda_device_count() < 1) {
        fprintf(stderr, "WF_TEST_DEVICE=cuda but no CUDA device\n");
        return 77;
    }
    int was_init = 0;
    MPI_Initialized(&was_init);
    pg = wf_dist_init(NULL);
    if (!pg) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        return 1;
    }
    R = wf_process_group_rank(pg);
    S = wf_process_group_size(pg);
    if (S < 2 || S > 3) {
        fprintf(stderr, "run under mpirun -np 2 or 3 (world size %d)\n", S);
        return 1;
    }
    Suite *s = suite_create("dist_collectives");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_all_reduce_every_dtype_and_op);
    tcase_add_test(tc, test_broadcast_gather_scatter_every_dtype);
    tcase_add_test(tc, test_all_gather_2d_and_uneven);
    tcase_add_test(tc, test_large_collectives);
    tcase_add_test(tc, test_barrier_p2p_bytes);
    tcase_add_test(tc, test_async_handles);
    tcase_add_test(tc, test_subgroup_first_and_last);
    tcase_add_test(tc, test_debug_mismatch);
    tcase_add_test(tc, test_errors_under_mpi);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group_free(pg);
    /* weft started MPI (nobody had), so freeing the last group finalized it */
    int fin = 0;
    MPI_Finalized(&fin);
    if (was_init || !fin) {
        fprintf(stderr, "MPI was %s before wf_dist_init and is %s after the last free\n",
                was_init ? "initialized" : "not initialized", fin ? "finalized" : "not finalized");
        rc = 1;
    }
    return rc;
}
