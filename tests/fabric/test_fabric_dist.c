/* tests/fabric/test_fabric_dist.c: the Fabric across processes. Runs under
 * `mpirun -np 2` and `-np 3` (the Open MPI environment starts the processes; wf_fabric_launch
 * sets up the process group): properties, barrier, broadcast, all_gather (with gradients),
 * all_reduce, rank_zero_first with a failure on rank 0, DDP training equal on every rank and
 * equal to one process on the whole batch, no_backward_sync, checkpoints saved by rank 0 and
 * loaded by all, and the errors every rank must see together.
 *
 * CK_FORK=no (set by meson): each rank runs every test in order, so the collectives line up;
 * a short WF_DIST_TIMEOUT turns a failure that desynchronizes the ranks into an error, not a
 * hang. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

static wf_fabric *fab;
static int rank, world;
/* WF_TEST_DEVICE=cuda (the GPU machine): the ranks share its GPU through the mpi backend and
 * run the properties and the DDP parity test on CUDA tensors */
static bool on_cuda;
/* modules set up with fab stay registered with it: freed only after the Fabric */
static wf_module *keep[8];
static int n_keep;
static void keep_module(wf_module *m) { keep[n_keep++] = m; }

static void setup_fabric(void) {
    if (fab) return;
    fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = on_cuda ? "cuda" : "cpu", .quiet = true,
                                              .process_group_backend = on_cuda ? "mpi" : NULL });
    ck_assert_msg(fab, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(fab, NULL, NULL), 0);
    rank = wf_fabric_global_rank(fab);
    world = wf_fabric_world_size(fab);
}

START_TEST(test_properties) {
    setup_fabric();
    const char *r = getenv("OMPI_COMM_WORLD_RANK"), *n = getenv("OMPI_COMM_WORLD_SIZE");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(rank, atoi(r));
    ck_assert_int_eq(world, atoi(n));
    ck_assert_int_ge(world, 2);
    ck_assert_str_eq(wf_fabric_strategy_name(fab), "ddp");
    ck_assert_int_eq(wf_fabric_local_rank(fab), rank);   /* one node */
    ck_assert_int_eq(wf_fabric_node_rank(fab), 0);
    ck_assert(wf_fabric_is_global_zero(fab) == (rank == 0));
    wf_process_group *pg = wf_fabric_process_group(fab);
    ck_assert_ptr_nonnull(pg);
    ck_assert_int_eq(wf_process_group_size(pg), world);
    ck_assert_int_eq(wf_fabric_launch(fab, NULL, NULL), WF_ESTATE);   /* once */
    wf_clear_error();
    ck_assert_int_eq(wf_fabric_barrier(fab, "start"), 0);
}
END_TEST

START_TEST(test_collectives) {
    setup_fabric();
    WF_SCOPE {
        /* broadcast from rank 1: every rank gets rank 1's values; the input is not changed */
        wf_tensor *t = wf_full(WF_SHAPE(2, 3), rank + 10, WF_F32);
        wf_tensor *b = wf_fabric_broadcast(fab, t, 1);
        double e6[6] = { 11, 11, 11, 11, 11, 11 };
        ck_assert_tensor_near(b, e6, 6, 0);
        double mine[6];
        for (int i = 0; i < 6; i++) mine[i] = rank + 10;
        ck_assert_tensor_near(t, mine, 6, 0);
        ck_assert_ptr_null(wf_fabric_broadcast(fab, t, world));
        ck_assert_error(WF_EINVAL, "src=");

        char msg[32] = "";
        if (rank == 0) snprintf(msg, sizeof msg, "hello from zero");
        ck_assert_int_eq(wf_fabric_broadcast_bytes(fab, msg, sizeof msg, 0), 0);
        ck_assert_str_eq(msg, "hello from zero");

        /* all_gather: a new leading dimension, row r from rank r */
        wf_tensor *g = wf_fabric_all_gather(fab, wf_full(WF_SHAPE(3), rank, WF_F64), false);
        ck_assert_shape(g, world, 3);
        double *eg = calloc((size_t)world * 3, sizeof *eg);
        for (int r = 0; r < world; r++) for (int j = 0; j < 3; j++) eg[r * 3 + j] = r;
        int64_t ng = (int64_t)world * 3;
        ck_assert_tensor_near(g, eg, ng, 0);
        free(eg);

        /* all_gather keeps the gradient flow: loss = sum_k (k+1) * sum(y[k]) on every rank, so
         * d(total)/dx_r = world * (r+1) (each rank's backward reduce-scatters its gradient) */
        wf_tensor *x = wf_full(WF_SHAPE(2), rank, WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *y = wf_fabric_all_gather(fab, x, true);
        wf_tensor *w = wf_empty(WF_SHAPE(world, 1), WF_F64);
        for (int k = 0; k < world; k++) ((double *)wf_data_ptr(w))[k] = k + 1;
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(y, w)), NULL, false), 0);
        double eg2[2] = { world * (rank + 1.0), world * (rank + 1.0) };
        ck_assert_tensor_near(wf_grad(x), eg2, 2, 0);

        /* all_reduce: mean, sum, max, min of rank+1 */
        wf_tensor *v = wf_full(WF_SHAPE(4), rank + 1, WF_F32);
        double sum = world * (world + 1) / 2.0;
        double e_mean[4] = { sum / world, sum / world, sum / world, sum / world };
        double e_sum[4] = { sum, sum, sum, sum };
        double e_max[4] = { world, world, world, world };
        double e_min[4] = { 1, 1, 1, 1 };
        ck_assert_tensor_near(wf_fabric_all_reduce(fab, v, WF_FABRIC_MEAN), e_mean, 4, 1e-6);
        ck_assert_tensor_near(wf_fabric_all_reduce(fab, v, WF_FABRIC_SUM), e_sum, 4, 0);
        ck_assert_tensor_near(wf_fabric_all_reduce(fab, v, WF_FABRIC_MAX), e_max, 4, 0);
        ck_assert_tensor_near(wf_fabric_all_reduce(fab, v, WF_FABRIC_MIN), e_min, 4, 0);
    }
}
END_TEST

/* rank 0 fails inside the block: the others get an error naming it instead of waiting */
START_TEST(test_rank_zero_first) {
    setup_fabric();
    char path[128];
    snprintf(path, sizeof path, "/tmp/weft_rzf_%s.txt", getenv("OMPI_MCA_orte_ess_jobid") ? getenv("OMPI_MCA_orte_ess_jobid") : "x");
    int rc = wf_fabric_rank_zero_first_begin(fab, false);
    if (rank == 0) {
        ck_assert_int_eq(rc, 0);
        wf_set_error(WF_EIO, "prepare: cannot download the data set");
        ck_assert_int_eq(wf_fabric_rank_zero_first_fail(fab, WF_EIO), WF_EIO);
        ck_assert_error(WF_EIO, "cannot download");
    } else {
        ck_assert_int_eq(rc, WF_EDIST);
        ck_assert_error(WF_EDIST, "rank 0 failed");
    }
    /* a block that succeeds: rank 0 writes first, the others read what it wrote */
    rc = wf_fabric_rank_zero_first_begin(fab, true);
    ck_assert_int_eq(rc, 0);
    if (rank == 0) {
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("ready", f);
        fclose(f);
    } else {
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "rank %d ran before rank 0 finished", rank);
        fclose(f);
    }
    ck_assert_int_eq(wf_fabric_rank_zero_first_end(fab), 0);
    ck_assert_int_eq(wf_fabric_barrier(fab, NULL), 0);
    if (rank == 0) unlink(path);
}
END_TEST

/* inputs of rank r: deterministic, different per rank */
static wf_tensor *batch_x(int r, int n) {
    double v[64];
    tt_fill(v, n * 4, 100 + (unsigned)r);
    return wf_from_data(v, WF_SHAPE(n, 4), WF_F64);
}
static wf_tensor *batch_y(int r, int n) {
    double v[32];
    tt_fill(v, n * 2, 200 + (unsigned)r);
    return wf_from_data(v, WF_SHAPE(n, 2), WF_F64);
}
static wf_tensor *mse(wf_tensor *p, wf_tensor *t) { return wf_mean_all(wf_square(wf_sub(p, t))); }

/* DDP: after N steps the parameters are bit-identical on every rank and equal (within
 * rounding) to one process training on the concatenated batch. */
START_TEST(test_ddp_training) {
    setup_fabric();
    enum { N = 4, STEPS = 3 };
    wf_manual_seed(1000 + (uint64_t)rank);   /* different initial weights: setup broadcasts rank 0's */
    wf_module *m = wf_linear_new(4, 2, true);
    wf_module_to(m, WF_CPU, WF_F64);
    wf_tensor *p[2];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, 2), 2);
    wf_optimizer *opt = wf_sgd_new(p, 2, &(wf_sgd_opts){ .lr = 0.1 });
    ck_assert_int_eq(wf_fabric_setup(fab, m, &opt, 1, NULL), 0);
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, 2), 2);
    /* the reference: one process, the whole batch, starting from rank 0's weights */
    wf_module *ref = wf_linear_new(4, 2, true);
    wf_module_to(ref, WF_CPU, WF_F64);
    wf_tensor *rp[2];
    wf_module_parameters(ref, rp, NULL, 2);
    WF_NO_GRAD { for (int i = 0; i < 2; i++) wf_copy_(rp[i], wf_to_device(p[i], WF_CPU)); }
    wf_optimizer *ropt = wf_sgd_new(rp, 2, &(wf_sgd_opts){ .lr = 0.1 });
    for (int s = 0; s < STEPS; s++) {
        WF_SCOPE {
            wf_optimizer_zero_grad(opt, true);
            wf_tensor *loss = mse(wf_module_forward(m, wf_fabric_to_device(fab, batch_x(rank, N))),
                                  wf_fabric_to_device(fab, batch_y(rank, N)));
            ck_assert_int_eq(wf_fabric_backward(fab, loss, m), 0);
            ck_assert_int_eq(wf_fabric_step(fab, opt, NULL), 0);
            wf_optimizer_zero_grad(ropt, true);
            wf_tensor *xs[8], *ys[8];
            for (int r = 0; r < world; r++) { xs[r] = batch_x(r, N); ys[r] = batch_y(r, N); }
            wf_tensor *rl = mse(wf_module_forward(ref, wf_cat(xs, world, 0)), wf_cat(ys, world, 0));
            ck_assert_int_eq(wf_backward(rl, NULL, false), 0);
            ck_assert_int_eq(wf_optimizer_step(ropt), 0);
        }
    }
    WF_SCOPE {
        for (int i = 0; i < 2; i++) {
            /* bit-identical on every rank: gather and compare with rank 0's copy */
            wf_tensor *g = wf_fabric_all_gather(fab, p[i], false);
            int64_t n = wf_numel(p[i]);
            double gv[8 * 8];
            ck_assert_int_le(n * world, 64);
            ck_assert_int_eq(wf_to_array(g, gv, WF_F64), 0);
            for (int r = 1; r < world; r++)
                ck_assert_msg(!memcmp(gv, gv + r * n, (size_t)n * sizeof(double)), "param %d differs on rank %d", i, r);
            double ev[8];
            wf_to_array(rp[i], ev, WF_F64);
            ck_assert_tensor_near(p[i], ev, n, 1e-12);
        }
    }
    /* no_backward_sync: local accumulation, then one synced backward reduces the sum (CPU) */
    if (!on_cuda) WF_SCOPE {
        wf_optimizer_zero_grad(opt, true);
        ck_assert_int_eq(wf_fabric_no_backward_sync_begin(fab, m, true), 0);
        ck_assert_int_eq(wf_fabric_backward(fab, mse(wf_module_forward(m, batch_x(rank, N)), batch_y(rank, N)), m), 0);
        double local[2];
        wf_to_array(wf_sum_all(wf_grad(p[1])), &local[0], WF_F64);
        ck_assert_int_eq(wf_fabric_no_backward_sync_end(fab), 0);
        ck_assert_int_eq(wf_fabric_backward(fab, mse(wf_module_forward(m, batch_x(rank + 7, N)), batch_y(rank + 7, N)), m), 0);
        /* expected: the mean over ranks of (g_a + g_b), computed by hand from each rank's own */
        wf_tensor *mg = wf_zeros_like(p[1]);
        WF_NO_GRAD {
            wf_module *c = wf_linear_new(4, 2, true);
            wf_module_to(c, WF_CPU, WF_F64);
            wf_tensor *cp[2];
            wf_module_parameters(c, cp, NULL, 2);
            for (int i = 0; i < 2; i++) wf_copy_(cp[i], p[i]);
            wf_set_grad_enabled(true);
            ck_assert_int_eq(wf_backward(mse(wf_module_forward(c, batch_x(rank, N)), batch_y(rank, N)), NULL, false), 0);
            ck_assert_int_eq(wf_backward(mse(wf_module_forward(c, batch_x(rank + 7, N)), batch_y(rank + 7, N)), NULL, false), 0);
            wf_set_grad_enabled(false);
            wf_copy_(mg, wf_grad(cp[1]));
            wf_module_free(c);
        }
        wf_tensor *expect = wf_fabric_all_reduce(fab, mg, WF_FABRIC_MEAN);
        double ev[2];
        wf_to_array(expect, ev, WF_F64);
        ck_assert_tensor_near(wf_grad(p[1]), ev, 2, 1e-12);
        (void)local;
    }
    wf_optimizer_free(ropt);
    wf_module_free(ref);
    wf_optimizer_free(opt);
    keep_module(m);
}
END_TEST

/* 16-mixed (CUDA only: on the CPU it is bf16-mixed, without a scaler): the ranks agree on
 * found-inf, so an overflow on one rank skips the step on every rank and the weights stay
 * equal; the scaler's state (scale, growth tracker) resumes from a checkpoint. */
START_TEST(test_16_mixed_found_inf) {
    setup_fabric();
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cuda", .precision = "16-mixed", .quiet = true,
                                                      .process_group_backend = "mpi" });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    wf_manual_seed(5);
    wf_module *m = wf_linear_new(4, 2, true);
    wf_tensor *p[2];
    wf_module_parameters(m, p, NULL, 2);
    wf_optimizer *opt = wf_sgd_new(p, 2, &(wf_sgd_opts){ .lr = 0.1 });
    ck_assert_int_eq(wf_fabric_setup(f, m, &opt, 1, NULL), 0);
    wf_module_parameters(m, p, NULL, 2);
    wf_precision *prec = wf_fabric_precision(f);
    double scale0, scale;
    int64_t tracker;
    ck_assert_int_eq(wf_precision_state(prec, &scale0, &tracker), 0);
    for (int step = 0; step < 3; step++) {
        WF_SCOPE {
            wf_optimizer_zero_grad(opt, true);
            wf_tensor *x = wf_to_dtype(batch_x(rank, 4), WF_F32), *y = wf_to_dtype(batch_y(rank, 4), WF_F32);
            wf_tensor *loss = mse(wf_module_forward(m, wf_fabric_to_device(f, x)), wf_fabric_to_device(f, y));
            ck_assert_msg(loss, "%s", wf_error_message());
            ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
            /* after the all-reduce, an overflow on the last rank only */
            if (step == 1 && rank == world - 1) WF_NO_GRAD { ck_assert_int_eq(wf_fill_(wf_grad(p[0]), INFINITY), 0); }
            bool skipped = false;
            ck_assert_int_eq(wf_fabric_step(f, opt, &skipped), 0);
            ck_assert_msg(skipped == (step == 1), "rank %d step %d: skipped %d", rank, step, skipped);
            for (int i = 0; i < 2; i++) {
                wf_tensor *g = wf_fabric_all_gather(f, p[i], false);
                int64_t n = wf_numel(p[i]);
                float gv[8 * 8];
                ck_assert_int_eq(wf_to_array(g, gv, WF_F32), 0);
                for (int r = 1; r < world; r++)
                    ck_assert_msg(!memcmp(gv, gv + r * n, (size_t)n * sizeof(float)), "step %d: param %d differs on rank %d",
                                  step, i, r);
            }
        }
    }
    ck_assert_int_eq(wf_precision_state(prec, &scale, &tracker), 0);
    ck_assert_msg(scale == scale0 * 0.5 && tracker == 1, "scale %g (from %g), tracker %lld", scale, scale0,
                  (long long)tracker);
    /* the scaler's state resumes from a checkpoint saved by rank 0 */
    char path[256] = "";
    if (rank == 0) snprintf(path, sizeof path, "/tmp/weft_fabric_dist_16mixed_%d.ckpt", (int)getpid());
    ck_assert_int_eq(wf_fabric_broadcast_bytes(f, path, sizeof path, 0), 0);
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_precision(st, "scaler", f);
    ck_assert_int_eq(wf_fabric_save(f, path, st, NULL), 0);
    ck_assert_int_eq(wf_precision_load_state(prec, 7.0, 3), 0);
    wf_fabric_state *rest = wf_fabric_load(f, path, st, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    wf_fabric_state_free(rest);
    double scale2;
    int64_t tracker2;
    ck_assert_int_eq(wf_precision_state(prec, &scale2, &tracker2), 0);
    ck_assert_msg(scale2 == scale && tracker2 == tracker, "resumed scale %g tracker %lld", scale2, (long long)tracker2);
    ck_assert_int_eq(wf_fabric_barrier(f, NULL), 0);
    if (rank == 0) unlink(path);
    wf_fabric_state_free(st);
    wf_fabric_free(f);
    wf_optimizer_free(opt);
    wf_module_free(m);
}
END_TEST

/* A parameter without a gradient is an error on every rank, naming it. */
START_TEST(test_unused_parameter) {
    setup_fabric();
    wf_module *m = wf_sequential_new(2, wf_linear_new(4, 2, true), wf_linear_new(2, 2, true));
    wf_module_to(m, WF_CPU, WF_F64);
    ck_assert_int_eq(wf_fabric_setup_module(fab, m, true), 0);
    wf_module *first = wf_module_child_at(m, 0, NULL);
    WF_SCOPE {
        /* rank 0 uses the whole model, the others only the first layer */
        wf_tensor *out = rank == 0 ? wf_module_forward(m, batch_x(rank, 2)) : wf_module_forward(first, batch_x(rank, 2));
        ck_assert_int_eq(wf_fabric_backward(fab, wf_sum_all(out), m), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "\"1.weight\", \"1.bias\" received no gradient");
    }
    keep_module(m);
}
END_TEST

/* Rank 0 saves, every rank loads; a save that fails on rank 0 fails everywhere. */
START_TEST(test_checkpoint) {
    setup_fabric();
    wf_module *m = wf_linear_new(3, 2, true);
    ck_assert_int_eq(wf_fabric_setup_module(fab, m, true), 0);
    wf_tensor *p[2];
    wf_module_parameters(m, p, NULL, 2);
    char path[256] = "";
    if (rank == 0) snprintf(path, sizeof path, "/tmp/weft_fabric_dist_%d.ckpt", (int)getpid());
    ck_assert_int_eq(wf_fabric_broadcast_bytes(fab, path, sizeof path, 0), 0);
    wf_fabric_state *st = wf_fabric_state_new();
    int64_t step = 42;
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_int(st, "step", &step);
    ck_assert_int_eq(wf_fabric_save(fab, path, st, NULL), 0);
    double before[6];
    wf_to_array(p[0], before, WF_F64);
    WF_NO_GRAD { wf_fill_(p[0], 0); }
    step = 0;
    wf_fabric_state *rest = wf_fabric_load(fab, path, st, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    wf_fabric_state_free(rest);
    ck_assert_int_eq(step, 42);
    ck_assert_tensor_near(p[0], before, 6, 0);
    ck_assert_int_eq(wf_fabric_barrier(fab, NULL), 0);
    if (rank == 0) unlink(path);
    /* rank 0 cannot write: every rank returns the error */
    ck_assert_int_eq(wf_fabric_save(fab, "/nonexistent-dir/x.ckpt", st, NULL), WF_EIO);
    ck_assert_error(WF_EIO, "/nonexistent-dir/x.ckpt");
    wf_fabric_state_free(st);
    keep_module(m);
}
END_TEST

/* setup_dataloader gives each rank its shard: together they cover the data set, every rank
 * the same number of batches. */
START_TEST(test_dataloader) {
    setup_fabric();
    enum { LEN = 10 };
    int64_t ids[LEN];
    for (int i = 0; i < LEN; i++) ids[i] = i;
    wf_tensor *t = wf_from_data(ids, WF_SHAPE(LEN), WF_I64);
    wf_dataset ds;
    ck_assert_int_eq(wf_tensor_dataset(&t, 1, &ds), 0);
    wf_tensor_free(t);
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 2, .shuffle = true, .seed = 5 });
    ck_assert_ptr_nonnull(dl);
    wf_fabric_loader *l = wf_fabric_setup_dataloader(fab, dl, NULL);
    ck_assert_msg(l, "%s", wf_error_message());
    int64_t per_rank = (LEN + world - 1) / world;
    ck_assert_int_eq(wf_fabric_loader_len(l), (per_rank + 1) / 2);
    ck_assert_int_eq(wf_fabric_loader_set_epoch(l, 3), 0);
    WF_SCOPE {
        wf_tensor *mine = wf_full(WF_SHAPE(per_rank), -1, WF_I64);
        int64_t *mv = wf_data_ptr(mine), k = 0;
        wf_tensor *b[1];
        int rc;
        while ((rc = wf_fabric_loader_next(l, b)) == 1) {
            int64_t v[2];
            int64_t n = wf_numel(b[0]);
            wf_to_array(b[0], v, WF_I64);
            for (int64_t i = 0; i < n; i++) mv[k++] = v[i];
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(k, per_rank);
        wf_tensor *all = wf_fabric_all_gather(fab, mine, false);
        const int64_t *av = wf_data_ptr(wf_contiguous(all));
        int seen[LEN] = { 0 };
        for (int64_t i = 0; i < per_rank * world; i++) {
            ck_assert(av[i] >= 0 && av[i] < LEN);
            seen[av[i]]++;
        }
        for (int i = 0; i < LEN; i++) ck_assert_msg(seen[i] >= 1, "index %d on no rank", i);
    }
    wf_fabric_loader_free(l);
}
END_TEST

START_TEST(test_teardown) {
    setup_fabric();
    ck_assert_int_eq(wf_fabric_barrier(fab, "end"), 0);
    wf_fabric_free(fab);
    fab = NULL;
    for (int i = 0; i < n_keep; i++) wf_module_free(keep[i]);
}
END_TEST

int main(void) {
    const char *dev = getenv("WF_TEST_DEVICE");
    on_cuda = dev && !strcmp(dev, "cuda");
    if (on_cuda && wf_cuda_device_count() < 1) { fprintf(stderr, "WF_TEST_DEVICE=cuda but no GPU\n"); return 77; }
    setenv("CK_FORK", "no", 1);
    if (!getenv("WF_DIST_TIMEOUT")) setenv("WF_DIST_TIMEOUT", "30", 1);
    Suite *s = suite_create("fabric_dist");
    TCase *tc = tcase_create("fabric_dist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_properties);
    if (!on_cuda) {
        tcase_add_test(tc, test_collectives);
        tcase_add_test(tc, test_rank_zero_first);
    }
    tcase_add_test(tc, test_ddp_training);
    if (on_cuda) tcase_add_test(tc, test_16_mixed_found_inf);
    if (!on_cuda) {
        tcase_add_test(tc, test_unused_parameter);
        tcase_add_test(tc, test_checkpoint);
        tcase_add_test(tc, test_dataloader);
    }
    tcase_add_test(tc, test_teardown);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    return rc;
}
