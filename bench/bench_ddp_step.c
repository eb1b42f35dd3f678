/* bench/bench_ddp_step.c: one DDP training step (forward, cross-entropy, backward with the
 * gradient all-reduce, Adam) of the Fashion-MNIST MLP or CNN on a fixed random batch per
 * rank, through Fabric with N CPU processes. The peer is bench/peer_ddp_step.py (PyTorch DDP
 * over gloo, through Lightning Fabric, the same ranks and threads).
 *
 *   bench_ddp_step --model mlp|cnn [--devices 2] [--batch 64] [--steps 200]
 *                  [--strategy ddp|fsdp|deepspeed_stage_1|deepspeed_stage_2|deepspeed_stage_3]
 *                  [--sharding FULL_SHARD|SHARD_GRAD_OP|NO_SHARD] [--precision 32-true|bf16-mixed]
 * --strategy fsdp (and deepspeed_stage_3, FSDP's units) wraps every Linear and Conv2d as a
 * unit; deepspeed_stage_1/2 partition Adam's state (and stage 2 the gradients) over the
 * ranks (fabric/strategy_zero.c). Each rank's host memory is read
 * after setup (parameters, or their shards) and its peak over the timed steps (after a
 * reset once the warm-up has allocated the optimizer state).
 * The program launches its own ranks (wf_fabric_launch); set OMP_NUM_THREADS and
 * OPENBLAS_NUM_THREADS for the threads per rank. --devices 1 runs the same loop with one
 * process (strategy "ddp" on one device), the baseline for DDP's own cost.
 * Rank 0's last line: {"impl":"weft-ddp","model":"mlp","ranks":2,"batch":64,"step_ms":...,
 * "setup_mb":...,"peak_mb":...} where step_ms is the slowest rank's mean and the memory the
 * largest rank's. */
#include "bench_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct args { const char *model, *strategy, *precision; int64_t batch; int steps; } args;

static double max_over_ranks(wf_fabric *fab, double v) {
    double r = v;
    WF_SCOPE {
        wf_tensor *t = wf_fabric_all_reduce(fab, wf_full(WF_SHAPE(1), v, WF_F64), WF_FABRIC_MAX);
        if (t) r = wf_item(t);
    }
    return r;
}

static int run(wf_fabric *fab, void *ud) {
    args *a = ud;
    bool cnn = !strcmp(a->model, "cnn");
    wf_manual_seed(0);
    wf_module *m = bench_make_model(cnn);
    wf_tensor *params[32];
    int np = wf_module_parameters(m, params, NULL, 32);
    wf_optimizer *opt = wf_adam_new(params, np, NULL);
    if (!opt || wf_fabric_setup(fab, m, &opt, 1, NULL)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_memory_stats mem;
    wf_fabric_memory_stats(fab, &mem);
    double setup_mb = max_over_ranks(fab, mem.allocated / 1048576.0);
    wf_manual_seed(1 + (uint64_t)wf_fabric_global_rank(fab));   /* each rank its own batch */
    wf_tensor *x = wf_randn(WF_SHAPE(a->batch, 1, 28, 28), WF_F32);
    wf_tensor *y = wf_randint(0, 10, WF_SHAPE(a->batch), WF_I64);
    int warm = a->steps / 10 + 3;
    double t0 = 0;
    for (int s = 0; s < warm + a->steps; s++) {
        if (s == warm) {
            if (wf_fabric_barrier(fab, "timing")) return 1;
            wf_fabric_reset_peak_memory_stats(fab);
            t0 = bench_now();
        }
        wf_scope_begin();
        wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, x), y, NULL);
        wf_optimizer_zero_grad(opt, true);
        int rc = !loss || wf_fabric_backward(fab, loss, m) || wf_fabric_step(fab, opt, NULL);
        wf_scope_end();
        if (rc) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    }
    double ms = 1000.0 * (bench_now() - t0) / a->steps;
    wf_fabric_memory_stats(fab, &mem);
    double slowest = max_over_ranks(fab, ms), peak_mb = max_over_ranks(fab, mem.peak_allocated / 1048576.0);
    if (wf_fabric_is_global_zero(fab))
        printf("{\"impl\":\"weft-%s\",\"model\":\"%s\",\"ranks\":%d,\"batch\":%lld,\"step_ms\":%.4f,\"setup_mb\":%.3f,"
               "\"peak_mb\":%.3f}\n", a->strategy, a->model, wf_fabric_world_size(fab), (long long)a->batch, slowest,
               setup_mb, peak_mb);
    wf_tensor_free(x);
    wf_tensor_free(y);
    wf_optimizer_free(opt);
    return 0;   /* the module stays registered with the Fabric: freed with the process */
}

int main(int argc, char **argv) {
    args a = { "mlp", "ddp", NULL, 64, 200 };
    const char *devices = "2", *sharding = NULL;
    static const char *const wrap[] = { "Linear", "Conv2d", NULL };
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) a.model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) a.batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) a.steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--devices")) devices = argv[i + 1];
        else if (!strcmp(argv[i], "--strategy")) a.strategy = argv[i + 1];
        else if (!strcmp(argv[i], "--sharding")) sharding = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) a.precision = argv[i + 1];
    }
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = a.strategy, .devices = devices,
                                                        .precision = a.precision,
                                                        .fsdp = { .sharding_strategy = sharding, .auto_wrap_policy = wrap } });
    if (!fab) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int rc = wf_fabric_launch(fab, run, &a);
    if (rc < 0) fprintf(stderr, "error: %s\n", wf_error_message());
    wf_fabric_free(fab);
    return rc ? 1 : 0;
}
