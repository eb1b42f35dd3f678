/* bench/bench_startup.c: process start to the end of the first training step, on data
 * already in memory (an in-memory uint8 dataset: no file is read), for the Fashion-MNIST
 * MLP (or --model cnn). The parent spawns itself --runs times; each child trains one step
 * as examples/fashion_mnist.c would (DataLoader with one worker, batch 64, Adam) and reports
 * when each phase ended, on CLOCK_MONOTONIC (shared by both processes), so the figure
 * includes exec, the dynamic loader and library constructors.
 *
 *   bench_startup [--model mlp|cnn] [--runs 10]
 * Last line: {"impl":"weft","model":"mlp","startup_ms_median":...,"startup_ms_min":...}
 * -DBENCH_F32_DATASET builds it against a libweft without wf_uint8_image_dataset (a before/after). */
#include "bench_models.h"
#include "weft/optim.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { P_MAIN, P_INIT, P_DATA, P_MODEL, P_BATCH, P_FORWARD, P_BACKWARD, P_STEP, P_N };
static const char *phase_name[P_N] = { "main() entered", "first weft call", "dataset+loader", "model+optimizer",
                                       "first batch", "forward+loss", "backward", "optimizer step" };

static int child(bool cnn, double t_spawn, int fd) {
    double t[P_N];
    t[P_MAIN] = bench_now();
    wf_manual_seed(0);
    t[P_INIT] = bench_now();
    enum { N = 256 };
    static uint8_t pixels[N * 784];
    for (int i = 0; i < N * 784; i++) pixels[i] = (uint8_t)(i * 7 + i / 784);
    wf_dataset ds;
    wf_tensor *x = wf_from_data(pixels, WF_SHAPE(N, 1, 28, 28), WF_U8);
    wf_tensor *y = wf_randint(0, 10, WF_SHAPE(N), WF_I64);
#ifdef BENCH_F32_DATASET
    /* the path before uint8 datasets (to build this file against an older libweft): the
     * whole dataset normalized to f32 up front */
    wf_tensor *xf = wf_div_scalar(wf_sub_scalar(wf_div_scalar(wf_to_dtype(x, WF_F32), 255.0), 0.2860), 0.3530);
    if (!xf || !y || wf_tensor_dataset((wf_tensor *[]){ xf, y }, 2, &ds)) goto fail;
#else
    if (!x || !y || wf_uint8_image_dataset(x, y, 0.2860, 0.3530, &ds)) goto fail;
#endif
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 64, .shuffle = true, .num_workers = 1 });
    if (!dl) goto fail;
    t[P_DATA] = bench_now();
    wf_module *m = bench_make_model(cnn);
    wf_tensor *params[32];
    int np = m ? wf_module_parameters(m, params, NULL, 32) : 0;
    wf_optimizer *opt = np ? wf_adam_new(params, np, &(wf_adam_opts){ .lr = 1e-3 }) : NULL;
    if (!opt) goto fail;
    t[P_MODEL] = bench_now();
    wf_tensor *b[2];
    wf_scope_begin();
    if (wf_dataloader_next(dl, b) != 1) goto fail;
    t[P_BATCH] = bench_now();
    wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, b[0]), b[1], NULL);
    if (!loss) goto fail;
    t[P_FORWARD] = bench_now();
    wf_optimizer_zero_grad(opt, true);
    if (wf_backward(loss, NULL, false)) goto fail;
    t[P_BACKWARD] = bench_now();
    if (wf_optimizer_step(opt)) goto fail;
    t[P_STEP] = bench_now();
    wf_scope_end();
    double ms[P_N];
    for (int i = 0; i < P_N; i++) ms[i] = 1e3 * (t[i] - t_spawn);
    if (write(fd, ms, sizeof ms) != (ssize_t)sizeof ms) return 1;
    /* the figure ends at the step: tearing down is not start-up */
    wf_dataloader_free(dl);
    return 0;
fail:
    fprintf(stderr, "error: %s\n", wf_error_message());
    return 1;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = "mlp";
    int runs = 10, fd = -1;
    double t_spawn = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--child-fd")) fd = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--spawned-at")) t_spawn = atof(argv[i + 1]);
    }
    bool cnn = !strcmp(model, "cnn");
    if (fd >= 0) return child(cnn, t_spawn, fd);
    if (runs < 1) runs = 1;
    double *total = calloc((size_t)runs, sizeof *total), sum[P_N] = { 0 };
    for (int r = 0; r < runs; r++) {
        int pp[2];
        if (pipe(pp)) return 1;
        char fds[16], ts[64];
        snprintf(fds, sizeof fds, "%d", pp[1]);
        double t0 = bench_now();
        snprintf(ts, sizeof ts, "%.9f", t0);
        char *args[] = { argv[0], "--model", (char *)model, "--child-fd", fds, "--spawned-at", ts, NULL };
        pid_t pid;
        if (posix_spawn(&pid, argv[0], NULL, NULL, args, environ)) { perror("posix_spawn"); return 1; }
        close(pp[1]);
        double ms[P_N];
        ssize_t got = read(pp[0], ms, sizeof ms);
        close(pp[0]);
        int st;
        waitpid(pid, &st, 0);
        if (got != (ssize_t)sizeof ms || !WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "child failed\n"); return 1; }
        total[r] = ms[P_STEP];
        for (int i = 0; i < P_N; i++) sum[i] += ms[i];
    }
    fprintf(stderr, "mean time since spawn at the end of each phase (%d runs):\n", runs);
    for (int i = 0; i < P_N; i++) fprintf(stderr, "  %-18s %7.2f ms\n", phase_name[i], sum[i] / runs);
    qsort(total, (size_t)runs, sizeof *total, cmp);
    printf("{\"impl\":\"weft\",\"model\":\"%s\",\"runs\":%d,\"startup_ms_median\":%.2f,\"startup_ms_min\":%.2f}\n", model, runs,
           total[runs / 2], total[0]);
    free(total);
    return 0;
}
