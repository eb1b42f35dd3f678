/* bench/bench_ddp_step.c: one DDP training step (forward, cross-entropy, backward with the
 * gradient all-reduce, Adam) of the Fashion-MNIST MLP or CNN on a fixed random batch per
 * rank, through Fabric with N CPU processes. The peer is bench/peer_ddp_step.py (PyTorch DDP
 * over gloo, through Lightning Fabric, the same ranks and threads).
 *
 *   bench_ddp_step --model mlp|cnn|wide [--devices 2] [--batch 64] [--steps 200]
 *                  [--strategy ddp|fsdp|deepspeed_stage_1|deepspeed_stage_2|deepspeed_stage_3]
 *                  [--sharding FULL_SHARD|SHARD_GRAD_OP|NO_SHARD] [--precision 32-true|bf16-mixed]
 *                  [--width 1024] [--layers 8] [--accelerator cpu|cuda] [--backend mpi|nccl]
 *                  [--per-rank]
 * --model wide: an MLP of --layers Linear layers (784 -> width, width -> width ..., width ->
 * 10, ReLU between), for memory runs where the parameters, gradients and Adam's state dominate
 * (bench/shard_memory_run.sh). --accelerator cuda puts every rank on a GPU; the process
 * group is then the mpi backend unless --backend says otherwise, so several ranks may share
 * one GPU (rank -> cuda:local_rank % GPUs); start the ranks with mpirun and --devices auto.
 * --per-rank: every rank prints its own line, {"rank":r,...,"setup_mb":..,"peak_mb":..} (on
 * CUDA the allocator's peak since the process began: its reset is not in this build).
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

typedef struct args {
    const char *model, *strategy, *precision;
    int64_t batch, width;
    int steps, layers;
    bool per_rank;
} args;

/* --model wide: layers Linear layers, width wide */
static wf_module *make_wide(int64_t width, int layers) {
    wf_module *m = wf_sequential_new(1, wf_flatten_new(1, -1));
    for (int i = 0; m && i < layers; i++) {
        int64_t in = i == 0 ? 784 : width, out = i == layers - 1 ? 10 : width;
        if (wf_sequential_append(m, wf_linear_new(in, out, true)) ||
            (i < layers - 1 && wf_sequential_append(m, wf_relu_new())))
            return NULL;
    }
    return m;
}

static double max_over_ranks(wf_fabric *fab, double v) {
    double r = v;
    WF_SCOPE {
        wf_tensor *t = wf_fabric_all_reduce(fab, wf_full(WF_SHAPE(1), v, WF_F64), WF_FABRIC_MAX);
        if (t) r = wf_item(t);
    }
    return r;
}

static int64_t n_params(wf_tensor *const *p, int n) {
    int64_t t = 0;
    for (int i = 0; i < n; i++) t += wf_numel(p[i]);
    return t;
}

static int run(wf_fabric *fab, void *ud) {
    args *a = ud;
    bool cnn = !strcmp(a->model, "cnn");
    wf_manual_seed(0);
    wf_module *m = !strcmp(a->model, "wide") ? make_wide(a->width, a->layers) : bench_make_model(cnn);
    if (!m) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_tensor *params[128];
    int np = wf_module_parameters(m, params, NULL, 128);
    wf_optimizer *opt = wf_adam_new(params, np, NULL);
    if (!opt || wf_fabric_setup(fab, m, &opt, 1, NULL)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_memory_stats mem;
    wf_fabric_memory_stats(fab, &mem);
    double setup_mb = max_over_ranks(fab, mem.allocated / 1048576.0);
    wf_manual_seed(1 + (uint64_t)wf_fabric_global_rank(fab));   /* each rank its own batch */
    wf_tensor *x = wf_fabric_to_device(fab, wf_randn(WF_SHAPE(a->batch, 1, 28, 28), WF_F32));
    wf_tensor *y = wf_fabric_to_device(fab, wf_randint(0, 10, WF_SHAPE(a->batch), WF_I64));
    if (!x || !y) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int warm = a->steps / 10 + 3;
    double t0 = 0;
    for (int s = 0; s < warm + a->steps; s++) {
        if (s == warm) {
            if (wf_fabric_barrier(fab, "timing")) return 1;
            if (wf_fabric_device(fab).type == WF_DEV_CPU) wf_fabric_reset_peak_memory_stats(fab);
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
    wf_memory_stats mem0 = mem;
    wf_fabric_memory_stats(fab, &mem);
    if (a->per_rank) {
        wf_device d = wf_fabric_device(fab);
        printf("{\"rank\":%d,\"ranks\":%d,\"impl\":\"weft-%s\",\"model\":\"%s\",\"device\":\"%s:%d\",\"params\":%lld,"
               "\"setup_mb\":%.3f,\"peak_mb\":%.3f,\"step_ms\":%.4f}\n", wf_fabric_global_rank(fab), wf_fabric_world_size(fab),
               a->strategy, a->model, d.type == WF_DEV_CUDA ? "cuda" : "cpu", d.type == WF_DEV_CUDA ? d.index : 0,
               (long long)n_params(params, np), mem0.allocated / 1048576.0, mem.peak_allocated / 1048576.0, ms);
        fflush(stdout);
    }
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
    args a = { "mlp", "ddp", NULL, 64, 1024, 200, 8, false };
    const char *devices = "2", *sharding = NULL, *accel = "cpu", *backend = NULL;
    static const char *const wrap[] = { "Linear", "Conv2d", NULL };
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--per-rank")) {   /* the one flag without a value */
            a.per_rank = true;
            for (int j = i; j + 1 < argc; j++) argv[j] = argv[j + 1];
            argc--;
            break;
        }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) a.model = argv[i + 1];
        else if (!strcmp(argv[i], "--width")) a.width = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) a.layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--accelerator")) accel = argv[i + 1];
        else if (!strcmp(argv[i], "--backend")) backend = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) a.batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) a.steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--devices")) devices = argv[i + 1];
        else if (!strcmp(argv[i], "--strategy")) a.strategy = argv[i + 1];
        else if (!strcmp(argv[i], "--sharding")) sharding = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) a.precision = argv[i + 1];
    }
    if (strcmp(a.model, "mlp") && strcmp(a.model, "cnn") && strcmp(a.model, "wide")) {
        fprintf(stderr, "error: --model %s: expected mlp, cnn or wide\n", a.model);
        return 2;
    }
    if (a.layers < 2 || a.width < 1 || a.batch < 1 || a.steps < 1) {
        fprintf(stderr, "error: --layers %d (>= 2), --width %lld, --batch %lld, --steps %d (>= 1 each)\n", a.layers,
                (long long)a.width, (long long)a.batch, a.steps);
        return 2;
    }
    /* several ranks share one GPU only through the mpi backend (NCCL refuses two on one) */
    if (!backend && (!strcmp(accel, "cuda") || !strcmp(accel, "gpu"))) backend = "mpi";
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = accel, .strategy = a.strategy, .devices = devices,
                                                        .precision = a.precision, .process_group_backend = backend,
                                                        .fsdp = { .sharding_strategy = sharding, .auto_wrap_policy = wrap } });
    if (!fab) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int rc = wf_fabric_launch(fab, run, &a);
    if (rc < 0) fprintf(stderr, "error: %s\n", wf_error_message());
    wf_fabric_free(fab);
    return rc ? 1 : 0;
}
