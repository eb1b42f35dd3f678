/* tests/fabric/restart_prog.c: a training run that checkpoints every few steps and resumes
 * from its checkpoint, for tests/fabric/test_restart.c.
 *
 *     restart_prog DIR STEPS SAVE_EVERY [STOP_AT]
 *
 * Trains STEPS optimizer steps in all (Adam, a cosine schedule per step, noise from the
 * global RNG on every batch, a shuffled loader with 2 workers: everything a resume must
 * restore) and saves DIR/ckpt every SAVE_EVERY steps: model, optimizer, scheduler, RNG,
 * precision, the loader's position and the step. When DIR/ckpt exists at the start it is
 * loaded first (automatic resume, as under `weft run --max-restarts`). With STOP_AT it saves
 * and exits 0 after that step (the first half of "N steps, save, a new process, M steps").
 * At the end rank 0 writes the parameters' bytes to DIR/final.
 * WF_TEST_KILL_AT_STEP=K (with WF_TEST_KILL_RANK=R, default 1): rank R kills itself with
 * SIGKILL after step K, on the first start only (WF_RESTART_COUNT unset or 0).
 * The ranks come from mpirun or `weft run`; one process alone is a world of one. */
#include "weft/weft.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LEN = 30, NPAR = 2 };

static long arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 0 ? -1 : v;
}

/* deterministic data the program makes itself */
static void fill(double *v, int n, int salt) {
    for (int i = 0; i < n; i++) v[i] = (double)((i * 37 + salt * 11) % 17) / 8.0 - 1.0;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) { fprintf(stderr, "usage: restart_prog DIR STEPS SAVE_EVERY [STOP_AT]\n"); return 2; }
    long steps = arg(argv[2]), every = arg(argv[3]), stop_at = argc > 4 ? arg(argv[4]) : 0;
    if (steps < 1 || every < 1 || stop_at < 0) { fprintf(stderr, "restart_prog: bad numbers\n"); return 2; }
    const char *kv = getenv("WF_TEST_KILL_AT_STEP"), *kr = getenv("WF_TEST_KILL_RANK"), *rc_env = getenv("WF_RESTART_COUNT");
    long kill_at = kv ? arg(kv) : -1, kill_rank = kr ? arg(kr) : 1;
    bool first_start = !rc_env || !strcmp(rc_env, "0");
    char ckpt[512], final_path[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", argv[1]);
    snprintf(final_path, sizeof final_path, "%s/final", argv[1]);

    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    /* under mpirun alone the Fabric launches (per-rank supervisor); under `weft run` it may not */
    if (!fab || (!getenv("WF_CLI_USED") && wf_fabric_launch(fab, NULL, NULL))) {
        fprintf(stderr, "restart_prog: fabric: %s\n", wf_error_message());
        return 1;
    }
    int rank = wf_fabric_global_rank(fab);
    wf_seed_everything(7, false);

    double xv[LEN * 3], yv[LEN];
    fill(xv, LEN * 3, 1);
    fill(yv, LEN, 2);
    wf_tensor *ts[2] = { wf_from_data(xv, WF_SHAPE(LEN, 3), WF_F64), wf_from_data(yv, WF_SHAPE(LEN, 1), WF_F64) };
    wf_dataset ds;
    if (wf_tensor_dataset(ts, 2, &ds)) return 1;
    wf_tensor_free(ts[0]);
    wf_tensor_free(ts[1]);
    wf_fabric_loader *dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&ds, &(wf_dataloader_opts){
        .batch_size = 4, .shuffle = true, .seed = 3, .num_workers = 2 }), NULL);
    wf_module *m = wf_linear_new(3, 1, true);
    wf_module_to(m, WF_CPU, WF_F64);
    wf_tensor *p[NPAR];
    wf_module_parameters(m, p, NULL, NPAR);
    wf_optimizer *opt = wf_adam_new(p, NPAR, &(wf_adam_opts){ .lr = 0.05 });
    if (!dl || !opt || wf_fabric_setup(fab, m, &opt, 1, NULL)) {
        fprintf(stderr, "restart_prog: setup: %s\n", wf_error_message());
        return 1;
    }
    wf_module_parameters(m, p, NULL, NPAR);
    wf_lr_scheduler *sch = wf_cosine_annealing_lr_new(opt, (int)steps, 0.001);

    int64_t step = 0;
    wf_fabric_state *st = wf_fabric_state_new();
    if (!sch || !st || wf_fabric_state_add_module(st, "model", m) || wf_fabric_state_add_optimizer(st, "optimizer", opt) ||
        wf_fabric_state_add_scheduler(st, "scheduler", sch) || wf_fabric_state_add_rng(st, "rng") ||
        wf_fabric_state_add_precision(st, "precision", fab) || wf_fabric_state_add_loader(st, "loader", dl) ||
        wf_fabric_state_add_int(st, "step", &step)) {
        fprintf(stderr, "restart_prog: state: %s\n", wf_error_message());
        return 1;
    }
    if (access(ckpt, F_OK) == 0) {
        wf_fabric_state *rest = wf_fabric_load(fab, ckpt, st, true);
        if (!rest) { fprintf(stderr, "restart_prog: load: %s\n", wf_error_message()); return 1; }
        wf_fabric_state_free(rest);
    }

    int rc = 0;
    while (!rc && step < steps) {
        wf_tensor *b[2];
        wf_scope_begin();
        int r = wf_fabric_loader_next(dl, b);   /* 0: the epoch ended; the next call starts the next one */
        if (r == 1) {
            wf_optimizer_zero_grad(opt, true);
            wf_tensor *x = wf_add(b[0], wf_mul_scalar(wf_randn_like(b[0]), 0.01));   /* the RNG matters */
            wf_tensor *loss = wf_mean_all(wf_square(wf_sub(wf_module_forward(m, x), b[1])));
            if (!loss || wf_fabric_backward(fab, loss, m) || wf_fabric_step(fab, opt, NULL) || wf_lr_scheduler_step(sch))
                r = -1;
            else
                step++;
        }
        wf_scope_end();
        if (r < 0) { fprintf(stderr, "restart_prog: step %lld: %s\n", (long long)step, wf_error_message()); rc = 1; break; }
        if (r == 0) continue;
        if (step % every == 0 || step == stop_at) {
            if (wf_fabric_save(fab, ckpt, st, NULL)) { fprintf(stderr, "restart_prog: save: %s\n", wf_error_message()); rc = 1; }
        }
        if (step == kill_at && rank == kill_rank && first_start) raise(SIGKILL);
        if (step == stop_at) break;
    }
    if (!rc && step == steps && rank == 0) {
        FILE *f = fopen(final_path, "wb");
        for (int i = 0; f && i < NPAR; i++) {
            double v[8];
            int64_t n = wf_numel(p[i]);
            if (n > 8 || wf_to_array(p[i], v, WF_F64) || fwrite(v, sizeof(double), (size_t)n, f) != (size_t)n) rc = 1;
        }
        if (!f || fclose(f)) rc = 1;
        if (rc) fprintf(stderr, "restart_prog: cannot write %s\n", final_path);
    }
    wf_fabric_state_free(st);
    wf_lr_scheduler_free(sch);
    wf_optimizer_free(opt);
    wf_fabric_loader_free(dl);
    wf_fabric_free(fab);
    wf_module_free(m);
    return rc;
}
