/* bench/bench_train_step.c: time one training step (forward, cross-entropy, backward, Adam)
 * of the Fashion-MNIST MLP or CNN on a fixed random batch. The PyTorch peer is
 * bench/peer_train_step.py with the same arguments; bench/run_train_step.sh runs both.
 *
 *   bench_train_step --model mlp|cnn [--batch 64] [--steps 200] [--device cpu|cuda] [--probe 1]
 *                    [--cuda-graphs 0|1] [--threads N]
 * Last line: {"impl":"weft","model":"mlp","device":"cpu","batch":64,"step_ms":...,"step_p50_ms":...}
 *
 * --threads N calls wf_set_num_threads(N) first; 0 (the default) keeps the library's default
 * (OMP_NUM_THREADS, else the cores the process may use). An unknown option is an error: until
 * 2026-12-07 this program ignored them, and two sessions' "--threads 1" runs were default runs
 * (bench/NOTES.md, "the 2-vCPU tail was two default runs"). step_p50/p90/p99/max_ms are the
 * timed steps' own times, sorted: they tell a run slow throughout from one that stalled.
 *
 * --cuda-graphs 1 (--device cuda only; default 0, eager): after GRAPH_WARMUP eager steps, one
 * whole step (zero_grad, forward, cross-entropy, backward, the fused Adam step) is captured
 * into a CUDA graph (weft/cuda.h) and the timed steps are its replays, one launch each; the
 * batch is fixed, so the static inputs are x and y themselves. The phase split is then 0
 * (nothing runs step by step on the host). The peer (bench/peer_train_step.py) stays eager.
 *
 * --probe 1 adds what the machine gave the run, to tell a slow run's cause apart from weft's
 * code (bench/NOTES.md, "the MLP's slow mode"):
 *   - "par_probe": the time of two threads each running the same register-only FMA loop,
 *     over one thread's time (best of 5 each, after the steps). 1.0 when the two CPUs are
 *     two independent cores for this process; towards 2.0 when they share one core's FMA
 *     units (SMT siblings on the host) or one is taken by something else.
 *   - "task_run_ms": CPU time of each of the process's threads (/proc/self/task/N/schedstat),
 *     the main thread first: shows whether a pool that should be asleep (OpenBLAS's) ran. */
#include "bench_models.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Eight independent FMA chains in registers: no memory traffic, no sharing between threads. */
static void *fma_loop(void *arg) {
    double v[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, a = 0.999999, b = 1e-7;
    for (long i = 0; i < 4000000; i++)
        for (int j = 0; j < 8; j++) {
            v[j] = v[j] * a + b;
            __asm__ volatile("" : "+x"(v[j]));
        }
    *(double *)arg = v[0] + v[7];
    return NULL;
}

static double fma_time(int nt) {
    pthread_t th[2];
    double sink[2];
    double t0 = bench_now();
    for (int i = 1; i < nt; i++) pthread_create(&th[i], NULL, fma_loop, &sink[i]);
    fma_loop(&sink[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
    return bench_now() - t0;
}

static void print_probe(void) {
    double one = 1e30, two = 1e30;
    for (int r = 0; r < 5; r++) {
        double t = fma_time(1);
        if (t < one) one = t;
        t = fma_time(2);
        if (t < two) two = t;
    }
    printf(",\"par_probe\":%.3f,\"task_run_ms\":[", two / one);
    char self[32];
    snprintf(self, sizeof self, "%d", (int)getpid());
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    bool first = true;
    for (int pass = 0; d && pass < 2; pass++) {   /* the main thread first, then the others */
        rewinddir(d);
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || (pass == 0) != !strcmp(e->d_name, self)) continue;
            char path[300];
            unsigned long long run = 0;
            snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
            FILE *f = fopen(path, "r");
            if (f) {
                if (fscanf(f, "%llu", &run) != 1) run = 0;
                fclose(f);
            }
            printf("%s%.1f", first ? "" : ",", (double)run / 1e6);
            first = false;
        }
    }
    if (d) closedir(d);
    printf("]");
}

/* --cuda-graphs: eager steps before the capture (cuBLAS plans, the optimizer's state and the
 * memory cache are made there, never inside the capture) */
#define GRAPH_WARMUP 3

/* One step on x, y; *loss_keep (owned by the caller) receives its loss tensor. phase (may be
 * NULL) adds the host time of forward, backward, optimizer. No host synchronization. */
static int train_step(wf_module *m, wf_optimizer *opt, wf_tensor *x, wf_tensor *y, wf_tensor **loss_keep,
                      double *phase) {
    int rc = 0;
    wf_scope_begin();
    double ta = bench_now();
    wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, x), y, NULL);
    rc = wf_optimizer_zero_grad(opt, true);
    double tb = bench_now();
    rc = rc || !loss || wf_backward(loss, NULL, false);
    double tc = bench_now();
    rc = rc || wf_optimizer_step(opt);
    if (phase) { phase[0] += tb - ta; phase[1] += tc - tb; phase[2] += bench_now() - tc; }
    if (!rc) {
        wf_tensor_free(*loss_keep);
        *loss_keep = wf_tensor_retain(loss);
    }
    wf_scope_end();
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *model = "mlp", *device = "cpu";
    int64_t batch = 64;
    int steps = 200;
    int threads = 0;
    bool probe = false, graphs = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--probe")) probe = atoi(argv[i + 1]) != 0;
        else if (!strcmp(argv[i], "--cuda-graphs")) graphs = atoi(argv[i + 1]) != 0;
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "error: unknown option %s (see the comment at the top of bench_train_step.c)\n", argv[i]);
            return 1;
        }
    }
    if (argc % 2 == 0) { fprintf(stderr, "error: option %s has no value\n", argv[argc - 1]); return 1; }
    /* 0 (the default): the library's own default, OMP_NUM_THREADS or the cores it may use */
    if (threads < 0 || (threads > 0 && wf_set_num_threads(threads))) {
        fprintf(stderr, "error: --threads %d: %s\n", threads, threads < 0 ? "need 0 (default) or more" : wf_error_message());
        return 1;
    }
    if (steps < 1) { fprintf(stderr, "error: --steps %d: need at least 1\n", steps); return 1; }
    bool cnn = !strcmp(model, "cnn");
    wf_device dev;
    if (wf_device_parse(device, &dev) || !wf_zeros_on(WF_SHAPE(1), WF_F32, dev)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    wf_clear_error();
    if (graphs && dev.type != WF_DEV_CUDA) {
        fprintf(stderr, "error: --cuda-graphs 1 needs --device cuda (got %s)\n", device);
        return 1;
    }
    wf_manual_seed(0);
    wf_module *m = bench_make_model(cnn);
    if (!m || wf_module_to(m, dev, WF_DTYPE_DEFAULT)) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    wf_tensor *params[32];
    int np = wf_module_parameters(m, params, NULL, 32);
    wf_optimizer *opt = wf_adam_new(params, np, NULL);
    wf_tensor *x = wf_to_device(wf_randn(WF_SHAPE(batch, 1, 28, 28), WF_F32), dev);
    wf_tensor *y = wf_to_device(wf_randint(0, 10, WF_SHAPE(batch), WF_I64), dev);
    if (!opt || !x || !y) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    int warm = steps / 10 + 3;
    if (graphs && warm < GRAPH_WARMUP + 2) warm = GRAPH_WARMUP + 2;   /* the capture and its first replay untimed */
    double t0 = 0, last = 0, phase[3] = { 0, 0, 0 };
    wf_tensor *loss = NULL;   /* the last step's loss (with graphs: the captured one, every replay's) */
    wf_cuda_graph *graph = NULL;
    /* each timed step's own time (host clock; on CUDA the launches only), for the tail: a run's
     * mean hides whether it was slow throughout or stalled a few times */
    double *step_s = calloc((size_t)(steps > 0 ? steps : 1), sizeof *step_s), ts = 0;
    if (!step_s) { fprintf(stderr, "error: out of memory for %d step times\n", steps); return 1; }
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) {
            if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index);
            t0 = bench_now();
        }
        if (s >= warm) ts = bench_now();
        int rc = 0;
        if (graphs && s >= GRAPH_WARMUP) {
            if (!graph) {   /* capture one step (nothing runs), then replay it at once */
                wf_cuda_empty_cache();   /* the eager steps' cached blocks: the capture has its own pool */
                graph = wf_cuda_graph_new();
                rc = graph ? wf_cuda_graph_capture_begin(graph, dev) : wf_error();
                if (!rc) {
                    rc = train_step(m, opt, x, y, &loss, NULL);
                    int end = wf_cuda_graph_capture_end(graph);
                    if (!rc) rc = end;
                }
            }
            if (!rc) rc = wf_cuda_graph_replay(graph);
        } else {
            rc = train_step(m, opt, x, y, &loss, s >= warm ? phase : NULL);
        }
        if (rc) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
        if (s == warm + steps - 1) last = wf_item(loss);
        if (s >= warm) step_s[s - warm] = bench_now() - ts;
    }
    if (dev.type == WF_DEV_CUDA) wf_cuda_synchronize(dev.index);
    double ms = 1000.0 * (bench_now() - t0) / steps;
    /* the phase split is host time: meaningful on the CPU (CUDA work is asynchronous) */
    printf("{\"impl\":\"weft\",\"model\":\"%s\",\"device\":\"%s\",\"batch\":%lld,\"step_ms\":%.4f,\"final_loss\":%.4f,"
           "\"forward_ms\":%.4f,\"backward_ms\":%.4f,\"optimizer_ms\":%.4f,\"cuda_graphs\":%d",
           model, device, (long long)batch, ms, last, 1000 * phase[0] / steps, 1000 * phase[1] / steps,
           1000 * phase[2] / steps, graphs);
    qsort(step_s, (size_t)steps, sizeof *step_s, cmp_double);
    printf(",\"step_p50_ms\":%.4f,\"step_p90_ms\":%.4f,\"step_p99_ms\":%.4f,\"step_max_ms\":%.4f",
           1000 * step_s[steps / 2], 1000 * step_s[steps * 9 / 10], 1000 * step_s[steps * 99 / 100],
           1000 * step_s[steps - 1]);
    free(step_s);
    if (probe) print_probe();
    printf("}\n");
    wf_tensor_free(loss);
    wf_cuda_graph_free(graph);
    wf_optimizer_free(opt);
    wf_module_free(m);
    wf_tensor_free(x);
    wf_tensor_free(y);
    return 0;
}
