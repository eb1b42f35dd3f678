/* tests/fabric/test_zero.c: the "deepspeed*" strategies, weft's ZeRO (fabric/strategy_zero.c),
 * under `mpirun -np 2` and `-np 3`; as one process only the name and option checks run.
 *
 * The model is Linear(4,5)-ReLU-Linear(5,3)-ReLU-Linear(3,1): dim 0 of 5 and 3 is uneven over
 * 2 or 3 ranks, and the last weight has one row, fewer than the ranks (some hold no part). For
 * stages 1, 2 and 3, N steps of Adam with gradient clipping (the global norm) give the
 * parameters of one process on the concatenated batch, and of DDP, within 1e-5 (f32); the
 * optimizer state per rank is its rows' size; stage 1 keeps the local full gradients until the
 * boundary (clip or step) and reduce-scatters them there, stage 2 reduces and frees them in the
 * backward; memory per rank follows ZeRO's formulas in bf16-mixed with Adam;
 * a checkpoint saved under ZeRO holds the full optimizer state and resumes exactly, also
 * under DDP; bad names and uses are refused with messages; under bf16-mixed each stage and FSDP
 * (FULL_SHARD) match DDP's losses, global norms and gathered f32 parameters, and hold less
 * memory per rank than DDP.
 *
 * WF_TEST_DEVICE=cuda (meson's test_zero_cuda_np2/np3, bench/gpu_check_run.sh): the same
 * parity and memory cases on CUDA under "bf16-mixed" and "16-mixed" (every rank on cuda:0
 * through the mpi backend), and stage 1's 16-mixed found-inf agreement; exit 77 (skipped)
 * without CUDA or a GPU.
 *
 * CK_FORK=no: every rank runs every test in order so the collectives line up; a short
 * WF_DIST_TIMEOUT turns a desynchronization into an error, not a hang. */
#include "dist_fixture.h"
#include "fabric/fabric_impl.h"
#include "fabric/shard_spec.h"
#include "fabric/fsdp_entries.h"
#include "fabric/zero_impl.h"
#include "optim/optim_impl.h"

#define STEPS 3
#define LR 0.01
#define CLIP 0.3

static const char *const stages[] = { "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3" };

static wf_optimizer *adam(wf_tensor *const *p) {
    return wf_adamw_new(p, NP, &(wf_adam_opts){ .lr = LR, .weight_decay = 0.01 });
}

/* rank r's micro-batch of step k: 3 rows */
static void reference(int steps, double *out) { tf_reference(7, steps, adam, CLIP, out); }

/* the full parameters of a set-up module (stage 3 gathers them) */
static void flatten_fabric(wf_fabric *f, wf_module *m, double *out) {
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, out);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
}

static wf_fabric *new_fabric(const char *strategy, const char *precision) {
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = strategy, .quiet = true,
                                                      .precision = precision });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    return f;
}

/* Bucket settings (fabric/strategy_zero_buckets.c) and the counts they give per step. */
typedef struct bucket_case { int64_t reduce, gather; bool rs; int64_t buckets, gathers; } bucket_case;

/* STEPS steps of the Fabric loop; out: the full parameters. bc: bucket settings (set before
 * setup), and their counts checked. */
static void run_fabric_in(const char *strategy, const char *precision, int steps, double *out, const bucket_case *bc) {
    wf_fabric *f = new_fabric(strategy, precision);
    zero_impl *z = f->strategy->zero_impl;
    if (bc) {
        ck_assert_ptr_nonnull(z);
        if (bc->reduce) z->reduce_bucket_size = bc->reduce;
        if (bc->gather) z->allgather_bucket_size = bc->gather;
        z->bucket_reduce_scatter = bc->rs;
    }
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    tf_train(f, m, o, 0, steps, CLIP);
    if (!strcmp(strategy, "deepspeed_stage_3")) {
        /* DeepSpeed's default stage3_max_reuse_distance (1e9) keeps a small model's units
         * gathered from forward to backward: each Linear gathered and reduced once a step */
        wf__fsdp_counters c;
        wf__fsdp_counters_get(f->strategy, &c);
        ck_assert_int_eq(c.n_units, 4);
        ck_assert_int_eq(c.gathers, 3 * steps);
        ck_assert_int_eq(c.reduces, 3 * steps);
    }
    flatten_fabric(f, m, out);
    if (f->strategy->desc->zero_stage) tf_check_state_rows(o, m, "exp_avg_sq");   /* this rank's rows (stages 1 and 2 as 3) */
    if (bc) {
        ck_assert_int_eq(z->buckets_launched, bc->buckets * steps);
        ck_assert_int_eq(z->reduces, NP * steps);
        /* in one default all-gather bucket, except that at 3 ranks the middle Linear (3 rows,
         * weight and bias) splits evenly and gathers in place, one all-gather each: the
         * bucket before it, the two, the bucket after (strategy_zero.c, gathers_in_place) */
        int64_t gathers = bc->gathers == 1 && world == 3 ? 4 : bc->gathers;
        ck_assert_int_eq(z->gathers, gathers * steps);
    }
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}

static void run_fabric(const char *strategy, int steps, double *out, const bucket_case *bc) {
    run_fabric_in(strategy, NULL, steps, out, bc);
}

/* Mixed precision with clipping ("16-mixed" on the CPU is "bf16-mixed": no grad scaler, so
 * stage 1's 16-mixed path, reducing at each backward's end, runs on CUDA only): stage 1's
 * boundary reduction gives exactly stage 2's steps (the same bf16 working copy, buckets and
 * reduce-scatter, the sum taken in the same order), and after a backward its module gradients
 * are local and its masters have none yet. */
START_TEST(test_mixed_clip) {
    if (world < 2) return;
    double two[NV], one[NV];
    run_fabric_in("deepspeed_stage_2", "16-mixed", STEPS, two, NULL);
    run_fabric_in("deepspeed_stage_1", "16-mixed", STEPS, one, NULL);
    for (int i = 0; i < NV; i++) ck_assert_msg(one[i] == two[i], "value %d: stage 1 %g, stage 2 %g", i, one[i], two[i]);
    wf_fabric *f = new_fabric("deepspeed_stage_1", "16-mixed");
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 0), m), 0);
        wf_module_parameters(m, p, NULL, NP);
        for (int i = 0; i < NP; i++) {
            ck_assert_ptr_nonnull(wf_grad(p[i]));
            ck_assert_int_eq(wf_tensor_dtype(wf_grad(p[i])), WF_BF16);
            ck_assert_ptr_null(wf_grad(o->groups[0].params[i]));
        }
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
        for (int i = 0; i < NP; i++) ck_assert_ptr_null(wf_grad(p[i]));
    }
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

START_TEST(test_parity_with_single_process_and_ddp) {
    if (world < 2) return;
    double ref[NV], ddp[NV], got[NV];
    reference(STEPS, ref);
    run_fabric("ddp", STEPS, ddp, NULL);
    tf_assert_near(ddp, ref, "ddp vs one process");
    run_fabric(stages[_i], STEPS, got, NULL);
    tf_assert_near(got, ref, stages[_i]);
    tf_assert_near(got, ddp, stages[_i]);
}
END_TEST

/* Buckets (fabric/strategy_zero_buckets.c): small reduce and all-gather buckets, and stage 2's
 * reduce-scatter layout, give the same parameters as DDP. Buckets take the parameters in
 * reverse (1, 3 | 3, 15 | 5 | 20 elements at reduce_bucket_size 4): four reductions per
 * backward; allgather_bucket_size 1: one all-gather per parameter and step. */
START_TEST(test_buckets) {
    if (world < 2) return;
    static const struct { int stage; bucket_case bc; } cs[] = {
        { 1, { 4, 1, false, 4, NP } }, { 2, { 4, 1, false, 4, NP } }, { 2, { 4, 1, true, 4, NP } },
        { 2, { 0, 0, true, 1, 1 } },   /* at 3 ranks: 4 gathers (see run_fabric) */
    };
    double ddp[NV], got[NV];
    run_fabric("ddp", STEPS, ddp, NULL);
    run_fabric(stages[cs[_i].stage - 1], STEPS, got, &cs[_i].bc);
    tf_assert_near(got, ddp, "bucketed zero vs ddp");
}
END_TEST

/* Two backwards per step (gradient accumulation: stage 2 reduces each, stage 1 sums them locally
 * and reduces once at the step, as DeepSpeed's stage 1 between boundaries) equal DDP's. Stage 1
 * launches no collective in a backward, and its module gradients are gone after the step. */
static void run_accumulating(const char *strategy, double *out) {
    wf_fabric *f = new_fabric(strategy, NULL);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    bool one = !strcmp(strategy, "deepspeed_stage_1");
    for (int k = 0; k < 2; k++) WF_SCOPE {
        for (int j = 0; j < 2; j++)
            ck_assert_msg(wf_fabric_backward(f, tf_loss_of(m, rank, 2 * k + j), m) == 0, "%s", wf_error_message());
        if (one) {
            ck_assert_int_eq(((zero_impl *)f->strategy->zero_impl)->buckets_launched, k);
            ck_assert_ptr_nonnull(wf_grad(p[0]));
        }
        ck_assert_msg(wf_fabric_step(f, o, NULL) == 0, "%s", wf_error_message());
        if (one) {
            ck_assert_int_eq(((zero_impl *)f->strategy->zero_impl)->buckets_launched, k + 1);
            for (int i = 0; i < NP; i++) ck_assert_ptr_null(wf_grad(p[i]));
        }
        wf_optimizer_zero_grad(o, true);
    }
    wf_fabric_summon_full_params_begin(f, m);
    tf_flatten(m, out);
    wf_fabric_summon_full_params_end(f, m);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}

START_TEST(test_accumulation) {
    if (world < 2) return;
    double ddp[NV], got[NV];
    run_accumulating("ddp", ddp);
    run_accumulating(stages[_i], got);
    tf_assert_near(got, ddp, stages[_i]);
}
END_TEST

/* What a user sees of the gradients (the header of fabric/strategy_zero.c). This pinned stage 1
 * keeping the full averaged gradients (an all-reduce, 1.5x DDP's traffic with the step's
 * all-gather); it now pins DeepSpeed's stage 1: after the backward the module's gradients are
 * the rank's own (equal to a plain backward of its batch, different across ranks), nothing was
 * reduced and the masters have no gradient; at the boundary (here clip_gradients) they are
 * reduce-scattered: the module's gradients gone, each master holding its rows of the average.
 * Stage 2 keeps only its part: the module's gradients are gone after the backward. Every
 * parameter reduced, in one bucket (the default reduce_bucket_size), one all-gather per step (at
 * 3 ranks four: see run_fabric). */
START_TEST(test_gradients_kept_or_freed) {
    if (world < 2) return;
    wf_fabric *f = new_fabric(stages[_i], NULL);
    ck_assert_ptr_eq(f->strategy->ops, &wf__zero_ops);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    zero_impl *z = f->strategy->zero_impl;
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 0), m), 0);
        wf_module_parameters(m, p, NULL, NP);
        if (_i == 0) {
            /* the same model outside the Fabric (every rank built it from seed 7, the values
             * setup broadcast): its plain backward of this rank's batch */
            wf_module *plain = tf_mlp(7);
            wf_tensor *q[NP];
            wf_module_parameters(plain, q, NULL, NP);
            ck_assert_int_eq(wf_backward(tf_loss_of(plain, rank, 0), NULL, false), 0);
            ck_assert_int_eq(z->buckets_launched, 0);
            ck_assert_int_eq(z->reduces, 0);
            double spread = 0;
            wf_tensor *avg[NP];
            for (int i = 0; i < NP; i++) {
                wf_tensor *g = wf_grad(p[i]);
                ck_assert_ptr_nonnull(g);
                ck_assert_double_eq(wf_item(wf_amax(wf_abs(wf_sub(g, wf_grad(q[i]))), NULL, 0, false)), 0);
                ck_assert_ptr_null(wf_grad(o->groups[0].params[i]));
                wf_tensor *mx = wf_fabric_all_reduce(f, g, WF_FABRIC_MAX), *mn = wf_fabric_all_reduce(f, g, WF_FABRIC_MIN);
                spread += wf_item(wf_amax(wf_abs(wf_sub(mx, mn)), NULL, 0, false));
                avg[i] = wf_fabric_all_reduce(f, g, WF_FABRIC_MEAN);
            }
            ck_assert_double_gt(spread, 0);   /* local, not averaged */
            wf_module_free(plain);
            /* the boundary: a norm far above the gradients' leaves them as they are */
            double norm = 0;
            ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = 1e9 }, &norm), 0);
            ck_assert_double_gt(norm, 0);
            ck_assert_int_eq(z->buckets_launched, 1);
            for (int i = 0; i < NP; i++) {
                ck_assert_ptr_null(wf_grad(p[i]));
                zero_param *zp = wf__zero_find_param(z, p[i], NULL);
                ck_assert_ptr_nonnull(zp);
                wf_tensor *mg = wf_grad(o->groups[0].params[i]);
                ck_assert_ptr_nonnull(mg);
                if (!zp->row_count) continue;
                wf_tensor *want = wf_narrow(wf_reshape(avg[i], (int64_t[]){ -1 }, 1), 0, zp->row_start * zp->row_numel,
                                            zp->row_count * zp->row_numel);
                double d = wf_item(wf_amax(wf_abs(wf_sub(wf_reshape(mg, (int64_t[]){ -1 }, 1), want)), NULL, 0, false));
                ck_assert_msg(d < 1e-6, "parameter %d: master gradient off the average by %g", i, d);
            }
        }
        for (int i = 0; i < NP; i++) {
            if (_i == 1) ck_assert_ptr_null(wf_grad(p[i]));
            /* the optimizer's parameter (the master of this rank's rows) has the gradient */
            wf_tensor *master = o->groups[0].params[i];
            ck_assert_ptr_ne(master, p[i]);
            ck_assert_ptr_nonnull(wf_grad(master));
            ck_assert_int_eq(wf_numel(wf_grad(master)), wf_numel(master));
        }
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
        /* the master's gradient is spent with the step (DeepSpeed's engine.step) */
        ck_assert_ptr_null(wf_grad(o->groups[0].params[0]));
    }
    /* the sharded checkpoint's view: module tensors whole, Adam's state as the master's rows */
    wf__shard_list l;
    ck_assert_int_eq(wf__fsdp_module_entries(f->strategy, m, "model", &l), 0);
    ck_assert_int_eq(l.n, NP);
    for (int i = 0; i < l.n; i++) ck_assert(l.v[i].replicated);
    ck_assert_str_eq(l.v[0].name, "model/0.weight");
    wf__shard_list_free(&l);
    ck_assert_int_eq(wf__fsdp_optimizer_entries(f->strategy, o, "optimizer", &l), 0);
    ck_assert_int_eq(l.n, 2 * NP);
    for (int i = 0; i < l.n; i++) {
        wf_tensor *p0 = p[i / 2];
        int64_t s0, c0;
        wf__shard_rows(wf_shape(p0)[0], rank, world, &s0, &c0);
        ck_assert(!l.v[i].replicated);
        ck_assert_int_eq(l.v[i].ndim, wf_ndim(p0));
        ck_assert_int_eq(l.v[i].global_shape[0], wf_shape(p0)[0]);
        ck_assert_int_eq(l.v[i].row_start, s0);
        ck_assert_int_eq(wf_shape(l.v[i].local)[0], c0);
    }
    ck_assert_str_eq(l.v[1].name, "optimizer/state/0/exp_avg_sq");
    wf__shard_list_free(&l);
    wf__zero_counters c;
    wf__zero_counters_get(f->strategy, &c);
    ck_assert_int_eq(c.stage, _i + 1);
    ck_assert_int_eq(c.reduces, NP);
    ck_assert_int_eq(c.gathers, world == 3 ? 4 : 1);   /* at 3 ranks: see run_fabric */
    ck_assert_int_eq(((zero_impl *)f->strategy->zero_impl)->buckets_launched, 1);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* Memory per rank for parameters + gradients + optimizer state after one bf16-mixed AdamW
 * step (before zero_grad), against ZeRO's formulas for Adam in mixed precision, Ψ parameters,
 * N ranks. In weft's layout:
 *   stage 1: 4Ψ + 12Ψ/N = bf16 working parameters (2Ψ) + their full bf16 gradients (2Ψ) + the
 *            rank's rows: f32 master, exp_avg, exp_avg_sq (12Ψ/N). Its gradients are full
 *            from a backward to the boundary (the step reduce-scatters and drops them), so it
 *            is measured after the next backward; after the step itself it holds 2Ψ + 12Ψ/N
 *            (no full gradients, as DeepSpeed's stage 1 after its reduction)
 *   stage 2: 2Ψ + 14Ψ/N = bf16 working parameters (2Ψ) + the rank's reduced bf16 gradient
 *            rows (2Ψ/N) + f32 master, exp_avg, exp_avg_sq (12Ψ/N)
 *   stage 3: 16Ψ/N     = FSDP's shards: f32 parameter rows (4Ψ/N), which are the master, and
 *            their f32 gradients (4Ψ/N; DeepSpeed's 2Ψ/N bf16 rows + 2Ψ/N bf16 gradients)
 *            + exp_avg, exp_avg_sq (8Ψ/N); the gathered parameters are freed after the step
 * The master's f32 gradient exists from the backward to the step only (freed by it).
 * Ψ = 12288 (one 96x128 weight): its rows and bytes fall on the allocator's size classes at
 * N = 2 and 3, so the counter sees the formula's bytes. */
START_TEST(test_memory_formulas) {
    if (world < 2) return;
    const double psi = 96.0 * 128;
    double want[3] = { 4 * psi + 12 * psi / world, 2 * psi + 14 * psi / world, 16 * psi / world };
    wf_fabric *f = new_fabric(stages[_i], "bf16-mixed");
    wf_memory_stats a0, a1;
    wf_tensor *x = wf_randn(WF_SHAPE(4, 128), WF_F32);
    ck_assert_int_eq(wf_fabric_memory_stats(f, &a0), 0);
    wf_manual_seed(3);
    wf_module *m = wf_linear_new(128, 96, false);
    wf_tensor *p[1];
    wf_module_parameters(m, p, NULL, 1);
    wf_optimizer *o = wf_adamw_new(p, 1, &(wf_adam_opts){ .lr = 1e-3 });
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, wf_mean_all(wf_square(wf_module_forward(m, x))), m), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
    }
    ck_assert_int_eq(wf_fabric_memory_stats(f, &a1), 0);
    double got = (double)a1.allocated - (double)a0.allocated;
    if (_i == 0) {
        double after_step = 2 * psi + 12 * psi / world;
        ck_assert_msg(fabs(got - after_step) <= 0.1 * after_step, "stage 1 after the step: %.0f bytes, want %.0f", got,
                      after_step);
        WF_SCOPE ck_assert_int_eq(wf_fabric_backward(f, wf_mean_all(wf_square(wf_module_forward(m, x))), m), 0);
        ck_assert_int_eq(wf_fabric_memory_stats(f, &a1), 0);
        got = (double)a1.allocated - (double)a0.allocated;
    }
    if (rank == 0)
        fprintf(stderr, "zero memory: %s at %d ranks: %.0f bytes per rank, formula %.0f (%+.1f%%)\n", stages[_i], world,
                got, want[_i], 100 * (got - want[_i]) / want[_i]);
    ck_assert_msg(fabs(got - want[_i]) <= 0.1 * want[_i], "%s at %d ranks: %.0f bytes, formula %.0f", stages[_i], world,
                  got, want[_i]);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
    wf_tensor_free(x);
}
END_TEST

/* Save under ZeRO after 2 steps (the optimizer state gathered to rank 0 in the parameters'
 * shapes), load into other weights under the same stage and under DDP: the third step
 * equals the uninterrupted run. */
START_TEST(test_checkpoint_round_trip) {
    if (world < 2) return;
    char path[256];
    if (rank == 0)
        snprintf(path, sizeof path, "%s/weft_test_zero_%d_%d_%d.ckpt", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                 (int)getpid(), world, _i);
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, path, sizeof path, 0), 0);
    double a[NV], b[NV], saved[NV];
    {
        wf_fabric *f = new_fabric(stages[_i], NULL);
        wf_module *m = tf_mlp(7);
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = adam(p);
        ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
        tf_train(f, m, o, 0, 2, CLIP);
        wf_fabric_state *st = wf_fabric_state_new();
        wf_fabric_state_add_module(st, "model", m);
        wf_fabric_state_add_optimizer(st, "optimizer", o);
        ck_assert_msg(wf_fabric_save(f, path, st, NULL) == 0, "%s", wf_error_message());
        flatten_fabric(f, m, saved);
        if (rank == 0) WF_SCOPE {
            wf_st_file *sf = wf_st_open(path);
            ck_assert_ptr_nonnull(sf);
            ck_assert_shape(wf_st_load(sf, "model/0.weight"), 5, 4);
            ck_assert_shape(wf_st_load(sf, "optimizer/state/0/exp_avg"), 5, 4);
            ck_assert_shape(wf_st_load(sf, "optimizer/state/4/exp_avg_sq"), 1, 3);
            ck_assert_shape(wf_st_load(sf, "optimizer/state/5/exp_avg"), 1);
            wf_st_close(sf);
        }
        tf_train(f, m, o, 2, 3, CLIP);
        flatten_fabric(f, m, a);
        wf_fabric_state_free(st);
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    for (int into = 0; into < 2; into++) {
        wf_fabric *f = new_fabric(into ? "ddp" : stages[_i], NULL);
        wf_module *m = tf_mlp(99);   /* other weights: the load must replace them */
        wf_tensor *p[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer *o = adam(p);
        ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
        wf_fabric_state *st = wf_fabric_state_new();
        wf_fabric_state_add_module(st, "model", m);
        wf_fabric_state_add_optimizer(st, "optimizer", o);
        wf_fabric_state *rest = wf_fabric_load(f, path, st, true);
        ck_assert_msg(rest, "%s", wf_error_message());
        wf_fabric_state_free(rest);
        flatten_fabric(f, m, b);
        tf_assert_near(b, saved, "loaded");
        tf_train(f, m, o, 2, 3, CLIP);   /* with the loaded Adam state */
        flatten_fabric(f, m, b);
        tf_assert_near(b, a, into ? "resumed under ddp" : "resumed");
        wf_fabric_state_free(st);
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_module_free(m);
    }
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    if (rank == 0) unlink(path);
}
END_TEST

/* Two models (a GAN's pair) under bf16-mixed: each its own optimizer on its own masters, the
 * working parameters bf16 and the masters f32; a step of one leaves the other alone. */
START_TEST(test_two_models_mixed) {
    if (world < 2) return;
    wf_fabric *f = new_fabric(stages[_i], "bf16-mixed");
    wf_module *ms[2] = { tf_mlp(7), tf_mlp(8) };
    wf_optimizer *os[2];
    for (int k = 0; k < 2; k++) {
        wf_tensor *p[NP];
        wf_module_parameters(ms[k], p, NULL, NP);
        os[k] = adam(p);
        ck_assert_msg(wf_fabric_setup(f, ms[k], &os[k], 1, NULL) == 0, "%s", wf_error_message());
        wf_module_parameters(ms[k], p, NULL, NP);
        ck_assert_int_eq(wf_tensor_dtype(p[0]), WF_BF16);
        ck_assert_int_eq(wf_tensor_dtype(os[k]->groups[0].params[0]), WF_F32);
        ck_assert_ptr_ne(os[k]->groups[0].params[0], os[0]->groups[0].params[k ? 0 : 1]);
    }
    double before[NV], after[NV], other[NV], other_after[NV];
    tf_flatten(ms[0], before);
    tf_flatten(ms[1], other);
    for (int k = 0; k < 2; k++) WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, wf_to_dtype(tf_loss_of(ms[0], rank, k), WF_F32), ms[0]), 0);
        ck_assert_int_eq(wf_fabric_step(f, os[0], NULL), 0);
        wf_optimizer_zero_grad(os[0], true);
    }
    tf_flatten(ms[0], after);
    tf_flatten(ms[1], other_after);
    int changed = 0;
    for (int i = 0; i < NV; i++) {
        changed += after[i] != before[i];
        ck_assert_double_eq(other_after[i], other[i]);
    }
    ck_assert_int_gt(changed, NV / 2);
    /* every rank holds the same working parameters after the all-gather */
    WF_SCOPE {
        wf_tensor *t = wf_from_data(after, WF_SHAPE(NV), WF_F64);
        wf_tensor *mx = wf_fabric_all_reduce(f, t, WF_FABRIC_MAX), *mn = wf_fabric_all_reduce(f, t, WF_FABRIC_MIN);
        ck_assert_double_eq(wf_item(wf_amax(wf_abs(wf_sub(mx, mn)), NULL, 0, false)), 0);
    }
    wf_fabric_free(f);
    for (int k = 0; k < 2; k++) {
        wf_optimizer_free(os[k]);
        wf_module_free(ms[k]);
    }
}
END_TEST

/* Names, and the uses DeepSpeed refuses. */
START_TEST(test_names_and_bad_uses) {
    static const char *const ok[] = { "deepspeed", "deepspeed_stage_1", "deepspeed_stage_1_offload", "deepspeed_stage_2",
                                      "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload" };
    static const int stage_of[] = { 2, 1, 1, 2, 2, 3, 3 };
    for (int i = 0; i < 7; i++) {
        wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = ok[i], .quiet = true });
        ck_assert_msg(f, "%s: %s", ok[i], wf_error_message());
        ck_assert_int_eq(f->strategy->desc->zero_stage, stage_of[i]);
        ck_assert_int_eq(f->strategy->desc->sharded, stage_of[i] == 3);
        /* one process is the single-device strategy, whatever the name */
        if (world == 1) ck_assert_ptr_eq(f->strategy->ops, &wf__single_device_ops);
        else ck_assert_ptr_eq(f->strategy->ops, stage_of[i] == 3 ? &wf__zero3_ops : &wf__zero_ops);
        wf_fabric_free(f);
    }
    ck_assert_ptr_null(wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "deepspeed_stage_3_offload_nvme",
                                                          .quiet = true }));
    ck_assert_error(WF_ENOTSUP, "NVMe");
    ck_assert_ptr_null(wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = "deepspeed_stage_4",
                                                          .quiet = true }));
    ck_assert_error(WF_EINVAL, "unknown strategy \"deepspeed_stage_4\"");
    if (world < 2) return;
    for (int s = 0; s < 3; s++) {
        wf_fabric *f = new_fabric(stages[s], NULL);
        wf_module *m = tf_mlp(7), *m2 = tf_mlp(8);
        wf_tensor *p[NP], *p2[NP];
        wf_module_parameters(m, p, NULL, NP);
        wf_module_parameters(m2, p2, NULL, NP);
        wf_optimizer *o = adam(p), *o2 = adam(p2);
        wf_optimizer *two[2] = { wf_adamw_new(p, 3, NULL), wf_adamw_new(p + 3, 3, NULL) };
        /* optimizers apart from their model: refused (Fabric's DeepSpeed rule) */
        ck_assert_int_eq(wf_fabric_setup_module(f, m2, true), 0);
        ck_assert_int_eq(wf_fabric_setup_optimizers(f, &o2, 1), WF_ENOTSUP);
        ck_assert_error(WF_ENOTSUP, "sets up a model and its optimizer together");
        /* two optimizers for one model: refused */
        ck_assert_int_eq(wf_fabric_setup(f, m, two, 2, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "one optimizer per model, got 2");
        wf_optimizer_free(two[0]);
        wf_optimizer_free(two[1]);
        wf_module_free(m);
        m = tf_mlp(7);
        wf_module_parameters(m, p, NULL, NP);
        wf_optimizer_free(o);
        o = adam(p);
        ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "%s", wf_error_message());
        WF_SCOPE {
            /* two models set up: backward must name the model */
            ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 0), NULL), WF_EINVAL);
            ck_assert_error(WF_EINVAL, "pass the model that made the loss");
            /* no_backward_sync: a warning, and the gradients are reduced anyway (stage 1: at the
             * step, its boundary, whatever the block said) */
            ck_assert_int_eq(wf_fabric_no_backward_sync_begin(f, m, true), 0);
            ck_assert_ptr_nonnull(strstr(wf_fabric_warnings(f), "does not support skipping the gradient synchronization"));
            ck_assert_int_eq(wf_fabric_backward(f, tf_loss_of(m, rank, 0), m), 0);
            ck_assert_int_eq(wf_fabric_no_backward_sync_end(f), 0);
            wf_tensor *gp = o->groups[0].params[0];
            if (s == 0) ck_assert_ptr_null(wf_grad(gp));
            else ck_assert_ptr_nonnull(wf_grad(gp));
            int64_t before = s < 2 ? ((zero_impl *)f->strategy->zero_impl)->reduces : 0;
            ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
            if (s == 0) ck_assert_int_eq(((zero_impl *)f->strategy->zero_impl)->reduces, before + NP);
        }
        wf_fabric_free(f);
        wf_optimizer_free(o);
        wf_optimizer_free(o2);
        wf_module_free(m);
        wf_module_free(m2);
    }
    /* parameters of two dtypes: refused (one all-gather buffer per model) */
    wf_fabric *f = new_fabric("deepspeed", NULL);
    wf_module *m = tf_mlp(7);
    ck_assert_int_eq(wf_module_to(wf_module_child_at(m, 2, NULL), WF_CPU, WF_F64), 0);
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "must share one dtype");
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

/* ================================================================ CUDA (WF_TEST_DEVICE=cuda)
 *
 * On the GPU machine every rank uses cuda:0 through the mpi backend (NCCL refuses two ranks on
 * one GPU; the backend stages CUDA tensors through host memory). Without CUDA in the build or
 * a visible GPU the program says "no CUDA device: skipped" and exits 77 (meson: SKIP), before
 * MPI is started. No GPU here when these were written: every failure names the rank, the
 * strategy, the precision, the step, the tensor and both values, so one GPU run diagnoses. */

static bool on_cuda;
#define CSTEPS 4   /* with the scaler's first steps and clipping in each */
static const char *const cuda_strategies[] = { "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp" };
static const char *const cuda_precisions[] = { "bf16-mixed", "16-mixed" };
/* the autocast dtype's machine epsilon (the gap above 1): bf16 2^-7, f16 2^-10 */
static double precision_eps(const char *precision) { return strcmp(precision, "16-mixed") ? 0x1p-7 : 0x1p-10; }
static const char *const param_names[NP] = { "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias" };

/* element i of the NV values: which parameter, and its flat index in it */
static const char *value_name(int i, char *buf, size_t n) {
    static const int numel[NP] = { 20, 5, 15, 3, 3, 1 };
    int p = 0;
    while (p < NP - 1 && i >= numel[p]) i -= numel[p++];
    snprintf(buf, n, "%s[%d]", param_names[p], i);
    return buf;
}

static wf_fabric *new_dev_fabric(const char *strategy, const char *precision) {
    static const char *const wrap[] = { "Linear", NULL };   /* FSDP: each Linear a unit, as stage 3 */
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = on_cuda ? "cuda" : "cpu", .strategy = strategy, .quiet = true,
                                                      .precision = precision, .process_group_backend = "mpi",
                                                      .fsdp = { .sharding_strategy = "FULL_SHARD",
                                                                .auto_wrap_policy = wrap } });
    ck_assert_msg(f, "rank %d: %s %s on %s: %s", rank, strategy, precision, on_cuda ? "cuda" : "cpu", wf_error_message());
    ck_assert_msg(wf_fabric_launch(f, NULL, NULL) == 0, "rank %d: %s %s: launch: %s", rank, strategy, precision,
                  wf_error_message());
    ck_assert_msg(wf_fabric_device(f).type == (on_cuda ? WF_DEV_CUDA : WF_DEV_CPU), "rank %d: %s: the Fabric's device is not %s",
                  rank, strategy, on_cuda ? "CUDA" : "the CPU");
    return f;
}

/* The optimizer's parameters gathered to every rank as NV f64 values: under DDP the full
 * f32 parameters (every rank holds all, the same); under ZeRO and FSDP the f32 masters /
 * shards, each rank its dim-0 rows (wf__shard_rows). Every value must be held by exactly the
 * ranks expected (one, or all under DDP), which the counts check. */
static void gather_masters(wf_optimizer *o, wf_module *m, bool replicated, const char *what, double *out) {
    wf_tensor *mp[NP];
    ck_assert_int_eq(wf_module_parameters(m, mp, NULL, NP), NP);
    ck_assert_int_eq(o->groups[0].n, NP);
    double *v = calloc(2 * NV, sizeof *v), *cnt = v + NV;
    ck_assert_ptr_nonnull(v);
    int off = 0;
    for (int i = 0; i < NP; i++) {
        wf_tensor *P = o->groups[0].params[i];
        int64_t rows = wf_ndim(mp[i]) ? wf_shape(mp[i])[0] : 1, row_numel = wf_numel(mp[i]) / rows, s0 = 0, c = rows;
        if (!replicated) wf__shard_rows(rows, rank, world, &s0, &c);
        ck_assert_msg(wf_numel(P) == c * row_numel, "rank %d: %s: optimizer parameter %s holds %lld values, want rows %lld..%lld "
                      "of %lld (%lld values)", rank, what, param_names[i], (long long)wf_numel(P), (long long)s0,
                      (long long)(s0 + c), (long long)rows, (long long)(c * row_numel));
        ck_assert_msg(wf_tensor_dtype(P) == WF_F32, "rank %d: %s: optimizer parameter %s is %s, want float32 (the master)", rank,
                      what, param_names[i], wf_dtype_name(wf_tensor_dtype(P)));
        if (c) ck_assert_msg(wf_to_array(P, v + off + s0 * row_numel, WF_F64) == 0, "%s", wf_error_message());
        for (int64_t j = 0; j < c * row_numel; j++) cnt[off + s0 * row_numel + j] += 1;
        off += (int)wf_numel(mp[i]);
    }
    WF_SCOPE {
        wf_tensor *t = wf_from_data(v, WF_SHAPE(2 * NV), WF_F64);
        ck_assert_msg(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL) == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    }
    for (int i = 0; i < NV; i++) {
        char nm[32];
        ck_assert_msg(cnt[i] == (replicated ? world : 1), "rank %d: %s: %s is held by %g ranks, want %d", rank, what,
                      value_name(i, nm, sizeof nm), cnt[i], replicated ? world : 1);
        out[i] = v[i] / cnt[i];   /* exact: equal f32 values summed in f64 */
    }
    free(v);
}

/* What a run gives, per rank: its loss and the global gradient norm clip_gradients returned
 * at each step, whether the step was skipped, the gathered parameters after, and the CUDA
 * allocator's bytes this run added (before the model was built to after the last step). */
typedef struct cuda_run {
    double loss[CSTEPS], norm[CSTEPS];
    bool skipped[CSTEPS];
    double w[NV];
} cuda_run;

/* The initial loss scale: 2^16 (GradScaler's) overflows f16 gradients of this model's size
 * in the first steps on some ranks and not others, which would make the comparison about
 * which steps the scaler skipped; 2^10 keeps every scaled gradient finite and above f16's
 * subnormals here. Both runs start from it. */
#define CUDA_SCALE 1024.0

static void run_cuda(const char *strategy, const char *precision, cuda_run *out) {
    wf_fabric *f = new_dev_fabric(strategy, precision);
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "rank %d: %s %s: setup: %s", rank, strategy, precision,
                  wf_error_message());
    wf_precision *prec = wf_fabric_precision(f);
    if (wf_precision_grad_scaler(prec)) ck_assert_int_eq(wf_precision_load_state(prec, CUDA_SCALE, 0), 0);
    for (int k = 0; k < CSTEPS; k++) WF_SCOPE {
        wf_tensor *loss = tf_loss_on(f, m, rank, k);
        ck_assert_msg(loss, "rank %d: %s %s step %d: forward: %s", rank, strategy, precision, k, wf_error_message());
        out->loss[k] = wf_item(loss);
        ck_assert_msg(wf_fabric_backward(f, loss, m) == 0, "rank %d: %s %s step %d: backward: %s", rank, strategy,
                      precision, k, wf_error_message());
        out->norm[k] = 0;
        ck_assert_msg(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = CLIP, .no_error_if_nonfinite = true },
                                               &out->norm[k]) == 0,
                      "rank %d: %s %s step %d: clip_gradients: %s", rank, strategy, precision, k, wf_error_message());
        out->skipped[k] = false;
        ck_assert_msg(wf_fabric_step(f, o, &out->skipped[k]) == 0, "rank %d: %s %s step %d: step: %s", rank, strategy,
                      precision, k, wf_error_message());
        wf_optimizer_zero_grad(o, true);
    }
    gather_masters(o, m, !strcmp(strategy, "ddp"), strategy, out->w);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}

/* Each sharded strategy against DDP under the same precision on CUDA: CSTEPS steps of AdamW
 * with clip_gradients (global norm CLIP). The tolerances, from eps, the autocast dtype's
 * epsilon (bf16 2^-7, f16 2^-10):
 *  - DDP reduces f32 gradients; ZeRO reduces the working copy's low-precision ones (FSDP
 *    reduces in f32 too), and after the first step a master that differs by a rounding can
 *    round to a neighbouring working value. So the averaged gradients agree to a relative
 *    delta of a few eps (4 eps taken).
 *  - The global norm (the unscaled, averaged gradients') then agrees within 4 eps relative
 *    (8 eps allowed). Every scale bug (a sum for a mean: x N; a missed unscale: x 2^10) is
 *    far outside it.
 *  - Adam's update is lr m/(sqrt(v)+e): at the first step +-lr whatever the gradient's
 *    size; later a relative gradient delta d moves m/sqrt(v) by at most about
 *    (1 + sqrt(k)) d at step k, so after CSTEPS steps the masters differ by at most
 *    lr (1+1)+(1+1.4)+(1+1.7)+(1+2) d = 10 lr d ~ 40 eps lr (bf16 3.1e-3, f16 3.9e-4);
 *    a skipped, doubled or wrong-sign step (lr) or a rank's rows lost is well outside.
 *  - The losses: the same batch through parameters that differ by the above, and a forward
 *    in the low dtype: within 8 eps (1 + |loss|).
 * The skipped flags must agree (none expected: see CUDA_SCALE). */
START_TEST(test_mixed_parity_with_ddp) {
    if (world < 2) return;
    const char *strategy = cuda_strategies[_i % 4], *precision = cuda_precisions[_i / 4];
    double eps = precision_eps(precision), tol_w = 40 * eps * LR, tol_norm = 8 * eps;
    cuda_run ddp, got;
    run_cuda("ddp", precision, &ddp);
    run_cuda(strategy, precision, &got);
    for (int k = 0; k < CSTEPS; k++) {
        double dl = fabs(got.loss[k] - ddp.loss[k]), tl = 8 * eps * (1 + fabs(ddp.loss[k]));
        ck_assert_msg(dl <= tl, "rank %d: %s %s step %d: loss %.9g, ddp %.9g (|diff| %.3g > %.3g)", rank, strategy, precision,
                      k, got.loss[k], ddp.loss[k], dl, tl);
        ck_assert_msg(got.norm[k] > 0 && fabs(got.norm[k] - ddp.norm[k]) <= tol_norm * ddp.norm[k],
                      "rank %d: %s %s step %d: clip_gradients' global norm %.9g, ddp %.9g (relative tolerance %.3g)", rank,
                      strategy, precision, k, got.norm[k], ddp.norm[k], tol_norm);
        ck_assert_msg(got.skipped[k] == ddp.skipped[k] && !ddp.skipped[k],
                      "rank %d: %s %s step %d: skipped %d, ddp skipped %d (none expected at scale %g)", rank, strategy,
                      precision, k, got.skipped[k], ddp.skipped[k], CUDA_SCALE);
    }
    double worst = 0;
    for (int i = 0; i < NV; i++) {
        char nm[32];
        double d = fabs(got.w[i] - ddp.w[i]);
        worst = fmax(worst, d);
        ck_assert_msg(d <= tol_w, "rank %d: %s %s after %d steps: parameter %s = %.9g, ddp %.9g (|diff| %.3g > %.3g)", rank,
                      strategy, precision, CSTEPS, value_name(i, nm, sizeof nm), got.w[i], ddp.w[i], d, tol_w);
    }
    if (rank == 0)
        fprintf(stderr, "mixed parity on %s: %s %s at %d ranks: largest parameter difference to ddp %.3g (tolerance %.3g)\n",
                on_cuda ? "cuda" : "cpu", strategy, precision, world, worst, tol_w);
}
END_TEST

/* the full working parameters, the same on every rank: max - min over the ranks is 0 */
static void assert_same_on_every_rank(wf_fabric *f, wf_module *m, int step) {
    double w[NV], hi[NV], lo[NV];
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    tf_flatten(m, w);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
    memcpy(hi, w, sizeof w);
    memcpy(lo, w, sizeof w);
    WF_SCOPE {
        wf_tensor *th = wf_from_data(hi, WF_SHAPE(NV), WF_F64), *tl = wf_from_data(lo, WF_SHAPE(NV), WF_F64);
        ck_assert_int_eq(wf_dist_all_reduce(pg, th, WF_DIST_MAX, NULL), 0);
        ck_assert_int_eq(wf_dist_all_reduce(pg, tl, WF_DIST_MIN, NULL), 0);
        ck_assert_int_eq(wf_to_array(th, hi, WF_F64), 0);
        ck_assert_int_eq(wf_to_array(tl, lo, WF_F64), 0);
    }
    for (int i = 0; i < NV; i++) {
        char nm[32];
        ck_assert_msg(hi[i] == lo[i], "rank %d: step %d: parameter %s differs across ranks: here %.9g, max %.9g, min %.9g",
                      rank, step, value_name(i, nm, sizeof nm), w[i], hi[i], lo[i]);
    }
}

/* Stage 1 under 16-mixed reduces at the end of each backward (Fabric's clip_gradients
 * unscales before the strategy sees it: the header of fabric/strategy_zero.c), so after a
 * backward the masters hold their rows of the average. An inf put into the last rank's
 * first master gradient that has rows there, after the backward, skips the step on every
 * rank (the ranks agree on found-inf): no master changes anywhere, the working parameters
 * stay equal across ranks, and the scale halves (2 steps taken, one skipped: tracker 1), as
 * test_16_mixed_found_inf (tests/fabric/test_fabric_dist.c) for DDP. */
START_TEST(test_stage1_16_mixed_found_inf) {
    wf_fabric *f = new_dev_fabric("deepspeed_stage_1", "16-mixed");
    wf_module *m = tf_mlp(7);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = adam(p);
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "rank %d: setup: %s", rank, wf_error_message());
    wf_precision *prec = wf_fabric_precision(f);
    ck_assert_msg(wf_precision_grad_scaler(prec), "rank %d: 16-mixed on cuda has no grad scaler", rank);
    ck_assert_int_eq(wf_precision_load_state(prec, CUDA_SCALE, 0), 0);
    double scale0, scale, before[NV], after[NV];
    int64_t tracker;
    ck_assert_int_eq(wf_precision_state(prec, &scale0, &tracker), 0);
    for (int step = 0; step < 3; step++) {
        gather_masters(o, m, false, "stage 1 16-mixed", before);
        WF_SCOPE {
            ck_assert_msg(wf_fabric_backward(f, tf_loss_on(f, m, rank, step), m) == 0, "rank %d step %d: backward: %s", rank,
                          step, wf_error_message());
            /* reduced in the backward: the module's gradients gone, the masters' rows there */
            wf_module_parameters(m, p, NULL, NP);
            int first = -1;
            for (int i = 0; i < NP; i++) {
                wf_tensor *mi = o->groups[0].params[i];
                ck_assert_msg(!wf_grad(p[i]), "rank %d step %d: module gradient of %s kept after a 16-mixed backward", rank,
                              step, param_names[i]);
                if (wf_numel(mi) == 0) continue;
                ck_assert_msg(wf_grad(mi), "rank %d step %d: master of %s (%lld values) has no gradient after the backward",
                              rank, step, param_names[i], (long long)wf_numel(mi));
                if (first < 0) first = i;
            }
            ck_assert_msg(first >= 0, "rank %d: holds no rows of any parameter", rank);
            if (step == 1 && rank == world - 1)
                WF_NO_GRAD { ck_assert_int_eq(wf_fill_(wf_grad(o->groups[0].params[first]), INFINITY), 0); }
            bool skipped = false;
            ck_assert_msg(wf_fabric_step(f, o, &skipped) == 0, "rank %d step %d: step: %s", rank, step, wf_error_message());
            ck_assert_msg(skipped == (step == 1), "rank %d step %d: skipped %d, want %d (inf put on rank %d at step 1)", rank,
                          step, skipped, step == 1, world - 1);
            wf_optimizer_zero_grad(o, true);
        }
        gather_masters(o, m, false, "stage 1 16-mixed", after);
        for (int i = 0; i < NV; i++) {
            char nm[32];
            if (step == 1)
                ck_assert_msg(after[i] == before[i], "rank %d step %d (skipped): master %s changed: %.9g -> %.9g", rank, step,
                              value_name(i, nm, sizeof nm), before[i], after[i]);
        }
        if (step != 1) {
            int changed = 0;
            for (int i = 0; i < NV; i++) changed += after[i] != before[i];
            ck_assert_msg(changed > NV / 2, "rank %d step %d: only %d of %d masters changed in a step taken", rank, step,
                          changed, NV);
        }
        assert_same_on_every_rank(f, m, step);
    }
    ck_assert_int_eq(wf_precision_state(prec, &scale, &tracker), 0);
    ck_assert_msg(scale == scale0 * 0.5 && tracker == 1, "rank %d: scale %g (from %g, want %g), growth tracker %lld (want 1)",
                  rank, scale, scale0, scale0 * 0.5, (long long)tracker);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* The CUDA allocator's bytes per rank (wf_fabric_memory_stats: issue 14 item 7) that a model
 * and its AdamW state add, from before the model is built to after one step (the batch's
 * activations gone): each sharded strategy below DDP's on every rank. Loose: DDP holds f32
 * parameters, gradients and Adam's state (16 bytes a parameter, and its buckets), the sharded
 * ones at most 4 + 12/N (stage 1, the working copy whole) of them: under 0.9 x DDP's at N >= 2.
 * One 256 x 256 weight, so the allocator's rounding is small beside it. */
static double cuda_bytes(const char *strategy, const char *precision) {
    wf_fabric *f = new_dev_fabric(strategy, precision);
    wf_manual_seed(3);
    wf_tensor *x = NULL;
    WF_SCOPE {   /* x outlives the scope (freed below); the host batch does not */
        x = wf_fabric_to_device(f, wf_randn(WF_SHAPE(8, 256), WF_F32));
        wf__scope_unregister(x);
    }
    ck_assert_msg(x, "rank %d: %s: the batch: %s", rank, strategy, wf_error_message());
    wf_memory_stats a0, a1;
    ck_assert_msg(wf_fabric_memory_stats(f, &a0) == 0, "rank %d: %s: memory_stats: %s", rank, strategy, wf_error_message());
    wf_module *m = wf_linear_new(256, 256, false);
    wf_tensor *p[1];
    wf_module_parameters(m, p, NULL, 1);
    wf_optimizer *o = wf_adamw_new(p, 1, &(wf_adam_opts){ .lr = 1e-3 });
    ck_assert_msg(wf_fabric_setup(f, m, &o, 1, NULL) == 0, "rank %d: %s: setup: %s", rank, strategy, wf_error_message());
    wf_precision *prec = wf_fabric_precision(f);
    if (wf_precision_grad_scaler(prec)) ck_assert_int_eq(wf_precision_load_state(prec, CUDA_SCALE, 0), 0);
    WF_SCOPE {
        ck_assert_msg(wf_fabric_backward(f, wf_mean_all(wf_square(wf_module_forward(m, x))), m) == 0,
                      "rank %d: %s: backward: %s", rank, strategy, wf_error_message());
        bool skipped = false;
        ck_assert_msg(wf_fabric_step(f, o, &skipped) == 0, "rank %d: %s: step: %s", rank, strategy, wf_error_message());
        ck_assert_msg(!skipped, "rank %d: %s %s: the step was skipped", rank, strategy, precision);
    }
    ck_assert_int_eq(wf_fabric_memory_stats(f, &a1), 0);
    double got = (double)a1.allocated - (double)a0.allocated;
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
    wf_tensor_free(x);
    return got;
}

START_TEST(test_memory_below_ddp) {
    if (world < 2) return;
    const char *strategy = cuda_strategies[_i % 4], *precision = cuda_precisions[_i / 4];
    double ddp = cuda_bytes("ddp", precision), got = cuda_bytes(strategy, precision);
    fprintf(stderr, "memory on %s: rank %d of %d, %s: %s %.0f bytes, ddp %.0f (%.2f x)\n", on_cuda ? "cuda" : "cpu", rank, world, precision, strategy,
            got, ddp, ddp > 0 ? got / ddp : 0.0);
    ck_assert_msg(ddp > 0 && got > 0, "rank %d: %s %s: the CUDA allocator counted %.0f bytes (ddp %.0f): not counting?",
                  rank, strategy, precision, got, ddp);
    ck_assert_msg(got < 0.9 * ddp, "rank %d of %d: %s %s: %.0f bytes, not below 0.9 x ddp's %.0f", rank, world, strategy,
                  precision, got, ddp);
}
END_TEST

static void add_cuda_tests(TCase *tc) {
    tcase_add_loop_test(tc, test_mixed_parity_with_ddp, 0, 8);
    tcase_add_test(tc, test_stage1_16_mixed_found_inf);
    tcase_add_loop_test(tc, test_memory_below_ddp, 0, 8);
}

static void add_tests(TCase *tc) {
    tcase_add_test(tc, test_names_and_bad_uses);
    tcase_add_loop_test(tc, test_parity_with_single_process_and_ddp, 0, 3);
    tcase_add_loop_test(tc, test_buckets, 0, 4);
    tcase_add_loop_test(tc, test_accumulation, 0, 3);
    tcase_add_test(tc, test_mixed_clip);
    tcase_add_loop_test(tc, test_gradients_kept_or_freed, 0, 2);
    tcase_add_loop_test(tc, test_memory_formulas, 0, 3);
    tcase_add_loop_test(tc, test_two_models_mixed, 0, 2);
    tcase_add_loop_test(tc, test_checkpoint_round_trip, 0, 3);
    /* the CUDA cases' CPU half: bf16-mixed only (16-mixed is bf16-mixed on the CPU, no scaler) */
    tcase_add_loop_test(tc, test_mixed_parity_with_ddp, 0, 4);
    tcase_add_loop_test(tc, test_memory_below_ddp, 0, 4);
}

/* WF_TEST_DEVICE=cuda: the CUDA cases only (above), else the CPU ones. */
int main(void) {
    const char *dev = getenv("WF_TEST_DEVICE");
    on_cuda = dev && !strcmp(dev, "cuda");
    if (!on_cuda) return tf_dist_main("zero", add_tests);
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    bool first = !r || !strcmp(r, "0");
    if (wf_cuda_device_count() < 1) {
#ifdef WEFT_HAVE_CUDA
        if (first) printf("no CUDA device: skipped (WF_TEST_DEVICE=cuda, none visible)\n");
#else
        if (first) printf("no CUDA device: skipped (WF_TEST_DEVICE=cuda, a build without CUDA)\n");
#endif
        return 77;
    }
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n || atoi(n) < 2) {
        if (first) printf("the CUDA cases compare ranks: run under mpirun -np 2 or 3: skipped\n");
        return 77;
    }
    return tf_dist_main("zero_cuda", add_cuda_tests);
}
