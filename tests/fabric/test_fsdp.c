/* tests/fabric/test_fsdp.c: the "fsdp" strategy (fabric/strategy_fsdp.c, fabric/fsdp_unit.c)
 * under `mpirun -np 2` and `-np 3`; as one process only the option checks run.
 *
 * The model is Linear(4,5)-ReLU-Linear(5,3)-ReLU-Linear(3,1): dim 0 of 5 and 3 is uneven over
 * 2 or 3 ranks, and the last weight has one row, fewer than the ranks (some hold none). For
 * FULL_SHARD, SHARD_GRAD_OP, NO_SHARD and HYBRID_SHARD (one node, and simulated nodes through
 * a cluster-environment plugin), N steps of SGD with momentum and gradient clipping give the
 * parameters of one process on the concatenated batch, and of DDP; the optimizer state per
 * rank is the shard's size; FULL_SHARD frees a unit's full parameters after its forward and
 * gathers each unit twice a step with two gathers in flight, SHARD_GRAD_OP keeps them;
 * no_backward_sync equals one large batch; bf16-true keeps f32 shards; a full checkpoint holds
 * the full tensors and resumes exactly; the shard entries describe the live shards; bad
 * options are refused with messages.
 *
 * CK_FORK=no: every rank runs every test in order so the collectives line up; a short
 * WF_DIST_TIMEOUT turns a desynchronization into an error, not a hang. */
#include "dist_fixture.h"
#include "fabric/fabric_impl.h"
#include "fabric/shard_spec.h"
#include "fabric/fsdp_entries.h"
#include "optim/optim_impl.h"

#include <sys/stat.h>
#include <unistd.h>

#define STEPS 3
#define LR 0.1
#define CLIP 0.3

/* rank r's micro-batch of step k: 3 rows */
static wf_optimizer *sgd(wf_tensor *const *p) { return wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 }); }
static void reference(int steps, double *out) { tf_reference(7, steps, sgd, CLIP, out); }

static const char *const linear_policy[] = { "Linear", NULL };

static wf_fabric *new_fabric(const char *strategy, const wf_fsdp_opts *fo) {
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = strategy, .quiet = true,
                                                      .fsdp = fo ? *fo : (wf_fsdp_opts){ 0 } });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    return f;
}

static void run_fabric(const char *strategy, const wf_fsdp_opts *fo, double *out, wf_optimizer **keep_opt) {
    wf_fabric *f = new_fabric(strategy, fo);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    tf_train(f, m, o, 0, STEPS, CLIP);
    wf__fsdp_counters c;
    wf__fsdp_counters_get(f->strategy, &c);
    if (fo && fo->auto_wrap_policy && !strcmp(fo->sharding_strategy, "FULL_SHARD")) {
        /* 3 Linear units and the root (no parameters of its own): each Linear gathered for
         * forward and again for backward, and reduced once, every step, except that from the
         * second step the last unit keeps its parameters from its forward to its backward;
         * from the second step the next unit's gather is started before waiting on the
         * current one */
        ck_assert_int_eq(c.n_units, 4);
        ck_assert_int_eq(c.gathers, 6 + 5 * (STEPS - 1));
        ck_assert_int_eq(c.reduces, 3 * STEPS);
        ck_assert_int_eq(c.max_in_flight, 2);
    } else if (fo && fo->auto_wrap_policy && !strcmp(fo->sharding_strategy, "SHARD_GRAD_OP")) {
        ck_assert_int_eq(c.gathers, 3 * STEPS);   /* once per step: kept through backward */
        ck_assert_int_eq(c.reduces, 3 * STEPS);
    }
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, out);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    /* the momentum buffers are the shards' size: rows wf__shard_rows(dim 0) of each */
    if (keep_opt) tf_check_state_rows(o, m, "momentum_buffer");
    wf_fabric_free(f);
    /* after the Fabric the module is whole again (a plain module) */
    double again[NV];
    tf_flatten(m, again);
    for (int i = 0; i < NV; i++) ck_assert_double_eq(again[i], out[i]);
    wf_optimizer_free(o);
    wf_module_free(m);
}

/* Several nodes on one machine, for HYBRID_SHARD: Open MPI's ranks, regrouped into nodes of
 * two ranks when the world is even and larger than 2, else of one rank each. */
static int nodes_per = 1;
static bool fake_detect(const wf_cluster_env *env) { (void)env; return true; }
static int fake_fill(const wf_cluster_env *env, wf_cluster_info *out) {
    int rc = wf_cluster_env_mpi.fill(env, out);
    if (rc) return rc;
    snprintf(out->env_name, sizeof out->env_name, "fake_nodes");
    out->local_world_size = nodes_per;
    out->local_rank = out->global_rank % nodes_per;
    out->node_rank = out->global_rank / nodes_per;
    out->num_nodes = out->world_size / nodes_per;
    return 0;
}
static const wf_cluster_env fake_nodes = { "fake_nodes", fake_detect, fake_fill, NULL };

static const char *const modes[] = { "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD" };

START_TEST(test_parity_with_single_process_and_ddp) {
    if (world < 2) return;
    double ref[NV], ddp[NV], got[NV];
    reference(STEPS, ref);
    run_fabric("ddp", NULL, ddp, NULL);
    tf_assert_near(ddp, ref, "ddp vs one process");
    wf_fsdp_opts fo = { .sharding_strategy = modes[_i], .auto_wrap_policy = linear_policy };
    run_fabric("fsdp", &fo, got, _i == 2 ? NULL : (wf_optimizer **)1);
    tf_assert_near(got, ref, modes[_i]);
    tf_assert_near(got, ddp, modes[_i]);
    /* no policy: the whole model is one unit (the root) */
    if (_i == 0) {
        run_fabric("fsdp", &(wf_fsdp_opts){ 0 }, got, (wf_optimizer **)1);
        tf_assert_near(got, ref, "FULL_SHARD, one unit");
        /* a size policy: units of >= 16 parameters (the first Linear, 25; the rest go to the root) */
        run_fabric("fsdp_cpu_offload", &(wf_fsdp_opts){ .min_num_params = 16 }, got, (wf_optimizer **)1);
        tf_assert_near(got, ref, "FULL_SHARD, min_num_params");
    }
}
END_TEST

/* HYBRID_SHARD across (simulated) nodes: shards inside a node, gradients averaged across the
 * nodes' replicas; the same parameters as one process. */
START_TEST(test_hybrid_shard_nodes) {
    if (world < 2) return;
    nodes_per = world % 2 == 0 && world > 2 ? 2 : 1;
    char devices[8];
    snprintf(devices, sizeof devices, "%d", nodes_per);
    double ref[NV], got[NV];
    reference(STEPS, ref);
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "fsdp", .quiet = true,
                                                      .devices = devices, .num_nodes = world / nodes_per,
                                                      .plugins = { .cluster_env = &fake_nodes },
                                                      .fsdp = { .sharding_strategy = "HYBRID_SHARD",
                                                                .auto_wrap_policy = linear_policy } });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    /* a shard is the rows of this rank's index within its node */
    int64_t s0, c;
    wf__shard_rows(5, rank % nodes_per, nodes_per, &s0, &c);
    ck_assert_int_eq(wf_shape(o->groups[0].params[0])[0], c);
    tf_train(f, m, o, 0, STEPS, CLIP);
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, got);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    tf_assert_near(got, ref, "HYBRID_SHARD across nodes");
    /* a sharded checkpoint goes through the first node's shard group: a folder of nodes_per
     * rank files (the other nodes hold the same rows); every rank loads it back */
    char dir[256];
    if (rank == 0) snprintf(dir, sizeof dir, "%s/weft_test_fsdp_hybrid_%d_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                            (int)getpid(), world);
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, dir, sizeof dir, 0), 0);
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", o);
    ck_assert_msg(wf_fabric_save(f, dir, st, NULL) == 0, "%s", wf_error_message());
    char rf[320];
    struct stat sb;
    snprintf(rf, sizeof rf, "%s/rank-%d-of-%d.safetensors", dir, nodes_per - 1, nodes_per);
    ck_assert_msg(!stat(rf, &sb), "%s missing", rf);
    snprintf(rf, sizeof rf, "%s/rank-0-of-%d.safetensors", dir, world);
    ck_assert(stat(rf, &sb));
    tf_train(f, m, o, STEPS, STEPS + 1, CLIP);
    wf_fabric_state *rest = wf_fabric_load(f, dir, st, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    wf_fabric_state_free(rest);
    double back[NV];
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, back);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    for (int i = 0; i < NV; i++) ck_assert_double_eq(back[i], got[i]);
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    if (rank == 0) {
        for (int k = 0; k < nodes_per; k++) {
            snprintf(rf, sizeof rf, "%s/rank-%d-of-%d.safetensors", dir, k, nodes_per);
            unlink(rf);
        }
        snprintf(rf, sizeof rf, "%s/index.json", dir);
        unlink(rf);
        rmdir(dir);
    }
    wf_fabric_state_free(st);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* FULL_SHARD frees a unit's full parameters after its forward and gathers them again for its
 * backward; SHARD_GRAD_OP keeps them until the end of backward. Both free them after it. */
START_TEST(test_free_after_forward) {
    if (world < 2) return;
    wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .sharding_strategy = _i ? "SHARD_GRAD_OP" : "FULL_SHARD",
                                                         .auto_wrap_policy = linear_policy });
    wf_module *m = tf_mlp(7);
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    wf_tensor *w0 = wf_module_get_parameter(m, "0.weight"), *w4 = wf_module_get_parameter(m, "4.weight");
    /* after setup: only the shards */
    ck_assert_ptr_null(w0->storage->data);
    ck_assert_ptr_null(w4->storage->data);
    wf_memory_stats before, during, after;
    ck_assert_int_eq(wf_fabric_memory_stats(f, &before), 0);
    WF_SCOPE {
        wf_tensor *loss = tf_loss_of(m, rank, 0);
        ck_assert_ptr_nonnull(loss);
        if (_i == 0) ck_assert_ptr_null(w0->storage->data);
        else ck_assert_ptr_nonnull(w0->storage->data);
        ck_assert_int_eq(wf_fabric_memory_stats(f, &during), 0);
        ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
        ck_assert_ptr_null(w0->storage->data);
        ck_assert_ptr_null(w4->storage->data);
        ck_assert_ptr_null(wf_grad(w0));   /* the full gradient is spent into the shard's */
    }
    ck_assert_int_eq(wf_fabric_memory_stats(f, &after), 0);
    ck_assert(during.peak_allocated >= during.allocated);
    ck_assert_int_eq(wf_fabric_reset_peak_memory_stats(f), 0);
    wf_memory_stats reset;
    ck_assert_int_eq(wf_fabric_memory_stats(f, &reset), 0);
    ck_assert(reset.peak_allocated <= after.peak_allocated);
    ck_assert_uint_eq(reset.peak_allocated, reset.allocated);
    /* summoning the full parameters allocates them (20 floats of 0.weight at least) */
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    ck_assert_ptr_nonnull(w0->storage->data);
    wf_memory_stats full;
    ck_assert_int_eq(wf_fabric_memory_stats(f, &full), 0);
    ck_assert(full.allocated >= reset.allocated + 20 * sizeof(float));
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    ck_assert_ptr_null(w0->storage->data);
    (void)before;
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

/* no_backward_sync: two micro-batches accumulated without sync, then the synced step, equal
 * one step on both together (Fabric's FSDP supports it: full gradients accumulate). */
START_TEST(test_no_backward_sync) {
    if (world < 2) return;
    double ref[NV], got[NV];
    WF_SCOPE {
        wf_module *m = tf_mlp(7);
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR });
        wf_tensor *loss = NULL;
        for (int r = 0; r < world; r++)
            for (int k = 0; k < 2; k++) {
                wf_tensor *l = tf_loss_of(m, r, k);
                loss = loss ? wf_add(loss, l) : l;
            }
        ck_assert_int_eq(wf_backward(wf_mul_scalar(loss, 1.0 / world), NULL, false), 0);
        ck_assert_int_eq(wf_optimizer_step(o), 0);
        tf_flatten(m, ref);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .auto_wrap_policy = linear_policy });
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR });
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_no_backward_sync_begin(f, m, true), 0);
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 0), m), 0);
        ck_assert_int_eq(wf_fabric_no_backward_sync_end(f), 0);
        ck_assert_ptr_nonnull(wf_grad(p[0]));   /* unsharded, waiting for the synced backward */
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 1), m), 0);
        ck_assert_ptr_null(wf_grad(p[0]));
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
    }
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, got);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    tf_assert_near(got, ref, "no_backward_sync");
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* state_dict_type "full": the file holds the full tensors (not a rank's shard), and loading
 * it into a fresh model and optimizer resumes exactly (the default, "sharded", a folder:
 * tests/fabric/test_fsdp_checkpoint.c). */
START_TEST(test_full_checkpoint) {
    if (world < 2) return;
    char path[256];
    if (rank == 0) snprintf(path, sizeof path, "%s/weft_test_fsdp_%d_%d.ckpt", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                            (int)getpid(), world);
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, path, sizeof path, 0), 0);
    wf_fsdp_opts fo = { .auto_wrap_policy = linear_policy, .state_dict_type = "full" };
    double a[NV], b[NV], saved[NV];
    {
        wf_fabric *f = new_fabric("fsdp", &fo);
        wf_module *m = tf_mlp(7);
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
        ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
        tf_train(f, m, o, 0, 2, CLIP);
        wf_fabric_state *st = wf_fabric_state_new();
        wf_fabric_state_add_module(st, "model", m);
        wf_fabric_state_add_optimizer(st, "optimizer", o);
        ck_assert_msg(wf_fabric_save(f, path, st, NULL) == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        tf_flatten(m, saved);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        if (rank == 0) WF_SCOPE {
            wf_st_file *sf = wf_st_open(path);
            ck_assert_ptr_nonnull(sf);
            wf_tensor *w = wf_st_load(sf, "model/0.weight");
            ck_assert_shape(w, 5, 4);
            ck_assert_tensor_near(w, saved, 20, 1e-7);
            ck_assert_shape(wf_st_load(sf, "model/4.weight"), 1, 3);
            ck_assert_shape(wf_st_load(sf, "optimizer/state/0/momentum_buffer"), 5, 4);
            ck_assert_shape(wf_st_load(sf, "optimizer/state/4/momentum_buffer"), 1, 3);
            wf_st_close(sf);
        }
        tf_train(f, m, o, 2, 3, CLIP);
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        tf_flatten(m, a);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        /* the default state_dict_type */
        wf_fabric *g = new_fabric("fsdp", NULL);
        wf_module *m2 = tf_mlp(7);
        ck_assert_int_eq(wf_fabric_setup_module(g, m2, true), 0);
        wf_fabric_state *st2 = wf_fabric_state_new();
        wf_fabric_state_add_module(st2, "model", m2);
        /* (a folder: its parent must exist; tests/fabric/test_fsdp_checkpoint.c writes them) */
        ck_assert_int_eq(wf_fabric_save(g, "/nonexistent/x.ckpt", st2, NULL), WF_EIO);
        ck_assert_error(WF_EIO, "/nonexistent/x.ckpt");
        wf_fabric_state_free(st2);
        wf_fabric_free(g);
        wf_module_free(m2);
        wf_fabric_state_free(st);
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    {
        wf_fabric *f = new_fabric("fsdp", &fo);
        wf_module *m = tf_mlp(99);   /* other weights: the load must replace them */
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
        ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
        wf_fabric_state *st = wf_fabric_state_new();
        wf_fabric_state_add_module(st, "model", m);
        wf_fabric_state_add_optimizer(st, "optimizer", o);
        wf_fabric_state *rest = wf_fabric_load(f, path, st, true);
        ck_assert_msg(rest, "%s", wf_error_message());
        wf_fabric_state_free(rest);
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        tf_flatten(m, b);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        tf_assert_near(b, saved, "loaded");
        tf_train(f, m, o, 2, 3, CLIP);   /* with the loaded momentum */
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        tf_flatten(m, b);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        tf_assert_near(b, a, "resumed");
        /* load_raw of a full (plain safetensors) file into the sharded model */
        char raw[300];
        snprintf(raw, sizeof raw, "%s.raw", path);
        double want[NV];
        wf_module *plain = tf_mlp(5);
        tf_flatten(plain, want);
        if (rank == 0) {
            wf_st_writer *w = wf_st_writer_new();
            wf_tensor *pp[NP];
            const char *pn[NP];
            wf_module_parameters(plain, pp, pn, NP);
            for (int i = 0; i < NP; i++) ck_assert_int_eq(wf_st_writer_add(w, pn[i], pp[i]), 0);
            ck_assert_int_eq(wf_st_writer_save(w, raw), 0);
            wf_st_writer_free(w);
        }
        wf_dist_barrier(pg);
        ck_assert_msg(wf_fabric_load_raw_module(f, raw, m, true) == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        tf_flatten(m, b);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        tf_assert_near(b, want, "load_raw");
        wf_module_free(plain);
        wf_dist_barrier(pg);
        if (rank == 0) unlink(raw);
        wf_fabric_state_free(st);
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    wf_dist_barrier(pg);
    if (rank == 0) unlink(path);
}
END_TEST

/* Mixed precision from the Fabric's precision: under "bf16-true" the module computes in
 * bf16 (parameters gathered in bf16), the shards and their gradients stay f32 (reduced in
 * f32), so the optimizer steps in f32; every rank ends with the same parameters, close to
 * the f32 run. */
START_TEST(test_bf16_true_keeps_f32_shards) {
    if (world < 2) return;
    double ref[NV], got[NV];
    reference(STEPS, ref);
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "fsdp", .quiet = true,
                                                      .precision = "bf16-true",
                                                      .fsdp = { .auto_wrap_policy = linear_policy } });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    wf_module_parameters(m, p, NULL, NP);
    ck_assert_int_eq(wf_tensor_dtype(p[0]), WF_BF16);
    wf_tensor *shard0 = o->groups[0].params[0];
    ck_assert_int_eq(wf_tensor_dtype(shard0), WF_F32);
    for (int k = 0; k < STEPS; k++) WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, k), m), 0);
        ck_assert_ptr_nonnull(wf_grad(shard0));
        ck_assert_int_eq(wf_tensor_dtype(wf_grad(shard0)), WF_F32);
        ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = CLIP }, NULL), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
        wf_optimizer_zero_grad(o, true);
    }
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, got);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    WF_SCOPE {
        wf_tensor *lo = wf_from_data(got, WF_SHAPE(NV), WF_F64), *hi = wf_clone(lo);
        ck_assert_int_eq(wf_dist_all_reduce(pg, lo, WF_DIST_MIN, NULL), 0);
        ck_assert_int_eq(wf_dist_all_reduce(pg, hi, WF_DIST_MAX, NULL), 0);
        ck_assert_tensor_near(lo, got, NV, 0);
        ck_assert_tensor_near(hi, got, NV, 0);
    }
    for (int i = 0; i < NV; i++) ck_assert_msg(fabs(got[i] - ref[i]) < 0.05, "element %d: %g vs %g", i, got[i], ref[i]);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* The sharded state as the sharded checkpoint code will see it: every parameter and
 * momentum buffer an entry holding this rank's rows (the live shard) and the global shape. */
START_TEST(test_shard_entries) {
    if (world < 2) return;
    wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .auto_wrap_policy = linear_policy });
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    tf_train(f, m, o, 0, 1, CLIP);
    wf__shard_list ml, ol;
    ck_assert_int_eq(wf__fsdp_module_entries(f->strategy, m, "model", &ml), 0);
    ck_assert_int_eq(wf__fsdp_optimizer_entries(f->strategy, o, "optimizer", &ol), 0);
    ck_assert_int_eq(ml.n, NP);
    ck_assert_int_eq(ol.n, NP);
    const int64_t rows[NP] = { 5, 5, 3, 3, 1, 1 };
    for (int i = 0; i < NP; i++) {
        int64_t s0, c;
        wf__shard_rows(rows[i], rank, world, &s0, &c);
        ck_assert(!ml.v[i].replicated);
        ck_assert_int_eq(ml.v[i].global_shape[0], rows[i]);
        ck_assert_int_eq(ml.v[i].row_start, s0);
        ck_assert_int_eq(wf_shape(ml.v[i].local)[0], c);
        ck_assert_ptr_eq(ml.v[i].local, o->groups[0].params[i]);   /* the shard the optimizer steps */
        ck_assert_int_eq(wf_shape(ol.v[i].local)[0], c);
        ck_assert_int_eq(ol.v[i].global_shape[0], rows[i]);
        char want[64];
        snprintf(want, sizeof want, "optimizer/state/%d/momentum_buffer", i);
        ck_assert_str_eq(ol.v[i].name, want);
    }
    ck_assert_str_eq(ml.v[0].name, "model/0.weight");
    ck_assert_int_eq(ml.v[0].ndim, 2);
    ck_assert_int_eq(ml.v[0].global_shape[1], 4);
    wf__shard_list_free(&ml);
    wf__shard_list_free(&ol);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* Two models under one sharded strategy (a GAN's two nets): each set up on its own, one
 * backward through both, each optimizer on its own shards. Then a backward through the first
 * only leaves the second without gradients. */
START_TEST(test_two_models) {
    if (world < 2) return;
    double ra[NV], rb[NV], ga[NV], gb[NV];
    tf_reference(7, STEPS, sgd, CLIP, ra);
    tf_reference(8, STEPS, sgd, CLIP, rb);
    wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .auto_wrap_policy = linear_policy });
    wf_module *ms[2] = { tf_mlp(7), tf_mlp(8) };
    wf_optimizer *os[2];
    for (int j = 0; j < 2; j++) {
        wf_tensor *p[NP];
        wf_module_parameters(ms[j], p, NULL, NP);
        os[j] = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
        ck_assert_int_eq(wf_fabric_setup(f, ms[j], &os[j], 1, NULL), 0);
    }
    for (int k = 0; k < STEPS; k++) WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, wf_add(tf_loss_of(ms[0], rank, k), tf_loss_of(ms[1], rank, k)), NULL), 0);
        for (int j = 0; j < 2; j++) {
            ck_assert_int_eq(wf_fabric_clip_gradients(f, ms[j], os[j], &(wf_clip_opts){ .max_norm = CLIP }, NULL), 0);
            ck_assert_int_eq(wf_fabric_step(f, os[j], NULL), 0);
            wf_optimizer_zero_grad(os[j], true);
        }
    }
    double *outs[2] = { ga, gb };
    for (int j = 0; j < 2; j++) {
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, ms[j]), 0);
        tf_flatten(ms[j], outs[j]);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, ms[j]), 0);
    }
    tf_assert_near(ga, ra, "first model");
    tf_assert_near(gb, rb, "second model");
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(ms[0], rank, 0), ms[0]), 0);
        ck_assert_ptr_nonnull(wf_grad(os[0]->groups[0].params[0]));
        ck_assert_ptr_null(wf_grad(os[1]->groups[0].params[0]));
    }
    wf_fabric_free(f);
    for (int j = 0; j < 2; j++) {
        wf_optimizer_free(os[j]);
        wf_module_free(ms[j]);
    }
}
END_TEST

START_TEST(test_bad_options) {
    struct { wf_fsdp_opts o; int code; const char *text; } bad[] = {
        { { .sharding_strategy = "FULL" }, WF_EINVAL, "unknown fsdp.sharding_strategy \"FULL\" (valid: FULL_SHARD" },
        { { .reduce_dtype = "int8" }, WF_EINVAL, "unknown fsdp.reduce_dtype \"int8\"" },
        { { .state_dict_type = "local" }, WF_EINVAL, "unknown fsdp.state_dict_type \"local\" (valid: sharded, full)" },
        { { .min_num_params = -3 }, WF_EINVAL, "fsdp.min_num_params = -3" },
        { { .auto_wrap_policy = (const char *const[]){ "", NULL } }, WF_EINVAL, "fsdp.auto_wrap_policy[0]" },
        { { .activation_checkpointing_policy = (const char *const[]){ "Linear", "", NULL } }, WF_EINVAL,
          "fsdp.activation_checkpointing_policy[1] = \"\" is not a module type name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "fsdp", .quiet = true,
                                                              .fsdp = bad[i].o }));
        ck_assert_error(bad[i].code, bad[i].text);
    }
    /* the valid spellings */
    wf_fabric *ok = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "fsdp", .quiet = true,
        .fsdp = { .sharding_strategy = "SHARD_GRAD_OP", .reduce_dtype = "bfloat16", .state_dict_type = "full",
                  .min_num_params = 100, .auto_wrap_policy = linear_policy } });
    ck_assert_msg(ok, "%s", wf_error_message());
    ck_assert_int_eq(ok->strategy->fsdp.reduce_dtype, WF_BF16);
    ck_assert(ok->strategy->fsdp.full_state_dict);
    ck_assert(!ok->strategy->fsdp.cpu_offload);
    wf_fabric_free(ok);
    ok = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "fsdp_cpu_offload", .quiet = true });
    ck_assert_msg(ok, "%s", wf_error_message());
    ck_assert(ok->strategy->fsdp.cpu_offload);
    wf_fabric_free(ok);
    /* deepspeed's NVMe offload stays refused (the ZeRO stages: tests/fabric/test_zero.c) */
    ck_assert_ptr_null(wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "deepspeed_stage_3_offload_nvme",
                                                          .quiet = true }));
    ck_assert_int_eq(wf_error(), WF_ENOTSUP);
    wf_clear_error();
    if (world < 2) return;
    /* an optimizer that already stepped has full-sized state: refused */
    wf_fabric *f = new_fabric("fsdp", NULL);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
    WF_SCOPE {
        ck_assert_int_eq(wf_backward(tf_loss_of(m, rank, 0), NULL, false), 0);
        ck_assert_int_eq(wf_optimizer_step(o), 0);
    }
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "set it up before its first step");
    /* the module is whole again, and can be set up (with a fresh optimizer) */
    ck_assert_ptr_nonnull(p[0]->storage->data);
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    ck_assert_ptr_null(p[0]->storage->data);
    /* Fabric's other order: the module first, then an optimizer built on its parameters */
    wf_optimizer *o2 = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR });
    ck_assert_int_eq(wf_fabric_setup_optimizers(f, &o2, 1), 0);
    ck_assert_ptr_ne(o2->groups[0].params[0], p[0]);
    int64_t s0, c;
    wf__shard_rows(5, rank, world, &s0, &c);
    ck_assert_int_eq(wf_shape(o2->groups[0].params[0])[0], c);
    wf_fabric_free(f);
    wf_optimizer_free(o2);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* activation_checkpointing_policy: each Linear recomputes its forward in backward. Under
 * FULL_SHARD the unit was resharded after its forward, so the recompute (its forward hooks
 * again, inside the backward) must find its parameters gathered; the parameters after N
 * steps equal those without checkpointing, and the recompute gathers nothing twice under
 * SHARD_GRAD_OP. Under DDP the policy applies too, with a warning; a type with no forward
 * of its own is refused at setup. */
static const char *const ac_modes[] = { "FULL_SHARD", "SHARD_GRAD_OP" };

START_TEST(test_activation_checkpointing) {
    if (world < 2) return;
    double ref[NV], got[NV];
    reference(STEPS, ref);
    wf_fsdp_opts fo = { .sharding_strategy = ac_modes[_i], .auto_wrap_policy = linear_policy,
                        .activation_checkpointing_policy = linear_policy };
    for (int strat = 0; strat < 2; strat++) {
        wf_fabric *f = new_fabric(strat ? "ddp" : "fsdp", &fo);
        wf_module *m = tf_mlp(7);
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = wf_sgd_new(p, NP, &(wf_sgd_opts){ .lr = LR, .momentum = 0.9 });
        ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
        for (int c = 0; c < wf_module_num_children(m); c++) {
            wf_module *ch = wf_module_child_at(m, c, NULL);
            ck_assert_int_eq(wf_module_activation_checkpointing(ch), !strcmp(wf_module_type(ch), "Linear"));
        }
        ck_assert(!wf_module_activation_checkpointing(m));
        tf_train(f, m, o, 0, STEPS, CLIP);
        if (strat) {
            tf_flatten(m, got);
            ck_assert_msg(wf_fabric_warnings(f) && strstr(wf_fabric_warnings(f), "activation_checkpointing_policy is an "
                          "FSDP option in Lightning; weft applies it under the \"ddp\" strategy too (3 modules"),
                          "%s", wf_fabric_warnings(f) ? wf_fabric_warnings(f) : "(no warnings)");
        } else {
            wf__fsdp_counters c;
            wf__fsdp_counters_get(f->strategy, &c);
            /* SHARD_GRAD_OP: the recompute finds each unit still gathered (once per step);
             * FULL_SHARD: as many gathers as without checkpointing (the recompute gathers the
             * unit for its backward and prefetches the next one the backward reaches) */
            if (_i == 1) ck_assert_int_eq(c.gathers, 3 * STEPS);
            else ck_assert_int_eq(c.gathers, 6 + 5 * (STEPS - 1));
            ck_assert_int_eq(c.reduces, 3 * STEPS);
            ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
            tf_flatten(m, got);
            ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        }
        tf_assert_near(got, ref, strat ? "ddp, checkpointed" : ac_modes[_i]);
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    /* a container type: nothing of its own to recompute */
    wf_fsdp_opts bad = { .activation_checkpointing_policy = (const char *const[]){ "ModuleList", NULL } };
    wf_fabric *f = new_fabric("fsdp", &bad);
    wf_module *m = wf_module_list_new();
    ck_assert_int_eq(wf_module_list_append(m, wf_linear_new(2, 2, true)), 0);
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_ENOTSUP);
    ck_assert_error(WF_ENOTSUP, "fsdp.activation_checkpointing_policy: wf_module_set_activation_checkpointing: ModuleList");
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

/* init_module(empty_init=true) under FSDP: the model is built on the meta device (no memory,
 * however many layers) and setup gives each rank its rows only, with the values the same
 * seed gives a model built normally: kaiming_uniform_ (Linear), fills (LayerNorm),
 * trunc_normal_ and orthogonal_ (run again whole, one tensor at a time). A change the notes
 * cannot replay is refused at setup. */
#define MD 64
static wf_module *meta_model(int layers, unsigned seed, bool untracked) {
    wf_manual_seed(seed);
    wf_module *m = wf_sequential_new(0);
    for (int i = 0; i < layers; i++) ck_assert_int_eq(wf_sequential_append(m, wf_linear_new(MD, MD, true)), 0);
    ck_assert_int_eq(wf_sequential_append(m, wf_layer_norm_new(WF_SHAPE(MD), NULL)), 0);
    wf_tensor *w0 = wf_module_get_parameter(m, "0.weight"), *w1 = wf_module_get_parameter(m, "1.weight");
    ck_assert_int_eq(wf_init_trunc_normal_(w0, 0, 0.02, -0.04, 0.04), 0);
    ck_assert_int_eq(wf_init_orthogonal_(w1, 1.5), 0);
    if (untracked) WF_NO_GRAD { ck_assert_int_eq(wf_mul_scalar_(w1, 2), 0); }
    return m;
}

static void flatten_all(wf_module *m, double *out, int n) {
    int np = wf_module_parameters(m, NULL, NULL, 0), off = 0;
    wf_tensor *p[64];
    ck_assert_int_le(np, 64);
    wf_module_parameters(m, p, NULL, np);
    for (int i = 0; i < np; i++) {
        ck_assert_int_le(off + wf_numel(p[i]), n);
        ck_assert_int_eq(wf_to_array(p[i], out + off, WF_F64), 0);
        off += (int)wf_numel(p[i]);
    }
    ck_assert_int_eq(off, n);
}

START_TEST(test_meta_init) {
    if (world < 2) return;
    size_t grew[2];
    const int layers[2] = { 2, 8 };
    for (int k = 0; k < 2; k++) {
        wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .auto_wrap_policy = linear_policy });
        wf_memory_stats a, b, c;
        ck_assert_int_eq(wf_fabric_memory_stats(f, &a), 0);
        ck_assert_int_eq(wf_fabric_init_module_begin(f, true), 0);
        wf_module *m = meta_model(layers[k], 11, false);
        ck_assert_int_eq(wf_fabric_init_module_end(f), 0);
        ck_assert_int_eq(wf_tensor_device(wf_module_get_parameter(m, "0.weight")).type, WF_DEV_META);
        ck_assert_int_eq(wf_fabric_memory_stats(f, &b), 0);
        grew[k] = b.allocated - a.allocated;
        ck_assert_msg(wf_fabric_setup_module(f, m, true) == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_fabric_memory_stats(f, &c), 0);
        /* each rank's rows: about 1/N of the parameters (the root unit, LayerNorm, is not
         * freed: it is whole on every rank) */
        int n = layers[k] * (MD * MD + MD) + 2 * MD;
        size_t total = (size_t)layers[k] * (MD * MD + MD) * 4, mine = c.allocated - b.allocated;
        ck_assert_msg(mine <= total / world + total / 10 + 4096, "rank %d holds %zu bytes of %zu", rank, mine,
                      total);
        ck_assert_msg(mine >= total / world / 2, "rank %d holds %zu bytes of %zu", rank, mine, total);
        /* the values of the normally built model, bit for bit */
        double *got = malloc(sizeof(double) * (size_t)n), *want = malloc(sizeof(double) * (size_t)n);
        wf_module *ref = meta_model(layers[k], 11, false);
        flatten_all(ref, want, n);
        ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
        flatten_all(m, got, n);
        ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
        for (int i = 0; i < n; i++) ck_assert_msg(got[i] == want[i], "element %d: %.9g vs %.9g", i, got[i], want[i]);
        free(got);
        free(want);
        wf_module_free(ref);
        wf_fabric_free(f);
        wf_module_free(m);
    }
    /* before setup nothing grows with the model: 8 layers cost what 2 do */
    ck_assert_msg(grew[0] == grew[1], "allocated before setup: %zu bytes with 2 layers, %zu with 8", grew[0], grew[1]);
    ck_assert_msg(grew[1] < 1024, "allocated before setup: %zu bytes", grew[1]);
    /* an in-place change the notes cannot replay */
    wf_fabric *f = new_fabric("fsdp", &(wf_fsdp_opts){ .auto_wrap_policy = linear_policy });
    ck_assert_int_eq(wf_fabric_init_module_begin(f, true), 0);
    wf_module *m = meta_model(2, 11, true);
    ck_assert_int_eq(wf_fabric_init_module_end(f), 0);
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "\"1.weight\" was built on the meta device and then changed by an operation weft cannot "
                    "replay");
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

static void add_tests(TCase *tc) {
    tcase_add_test(tc, test_bad_options);
    tcase_add_loop_test(tc, test_parity_with_single_process_and_ddp, 0, 4);
    tcase_add_loop_test(tc, test_free_after_forward, 0, 2);
    tcase_add_test(tc, test_no_backward_sync);
    tcase_add_test(tc, test_full_checkpoint);
    tcase_add_test(tc, test_bf16_true_keeps_f32_shards);
    tcase_add_test(tc, test_shard_entries);
    tcase_add_test(tc, test_hybrid_shard_nodes);
    tcase_add_test(tc, test_two_models);
    tcase_add_loop_test(tc, test_activation_checkpointing, 0, 2);
    tcase_add_test(tc, test_meta_init);
}

int main(void) { return tf_dist_main("fsdp", add_tests); }
