/* tests/fabric/test_ddp_resume.c: a DDP run saved by rank 0 and resumed on every rank is the
 * run that never stopped. Under `mpirun -np 2` / `-np 3`:
 *   phase "save"   (argv[1]): E1 epochs, save (model, Adam, cosine schedule, epoch, RNG), then
 *                             E2 more epochs; write rank 0's final parameters to argv[2].ref;
 *   phase "resume" (argv[1]): new processes, new model, load the checkpoint on every rank,
 *                             E2 epochs; the parameters must equal the reference bit for bit.
 * Data: a tensor dataset through Fabric's loader (DistributedSampler, shuffled per epoch). */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>

enum { LEN = 30, E1 = 2, E2 = 2, NPAR = 2 };

static int train_epochs(wf_fabric *fab, wf_module *m, wf_optimizer *opt, wf_lr_scheduler *sch, wf_fabric_loader *dl,
                        int64_t first, int64_t n) {
    for (int64_t e = first; e < first + n; e++) {
        if (wf_fabric_loader_set_epoch(dl, (uint64_t)e)) return 1;
        wf_tensor *b[2];
        for (;;) {
            int rc;
            wf_scope_begin();
            rc = wf_fabric_loader_next(dl, b);
            if (rc == 1) {
                wf_optimizer_zero_grad(opt, true);
                wf_tensor *loss = wf_mean_all(wf_square(wf_sub(wf_module_forward(m, b[0]), b[1])));
                if (!loss || wf_fabric_backward(fab, loss, m) || wf_fabric_step(fab, opt, NULL) ||
                    wf_lr_scheduler_step(sch))
                    rc = -1;
            }
            wf_scope_end();
            if (rc < 0) { fprintf(stderr, "train: %s\n", wf_error_message()); return 1; }
            if (rc == 0) break;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: test_ddp_resume save|resume PATH\n"); return 2; }
    bool resume = !strcmp(argv[1], "resume");
    char ckpt[512], ref[512];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", argv[2]);
    snprintf(ref, sizeof ref, "%s.ref", argv[2]);

    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    if (!fab || wf_fabric_launch(fab, NULL, NULL)) { fprintf(stderr, "fabric: %s\n", wf_error_message()); return 1; }
    int rank = wf_fabric_global_rank(fab);
    wf_seed_everything(7, false);

    double xv[LEN * 3], yv[LEN];
    tt_fill(xv, LEN * 3, 1);
    tt_fill(yv, LEN, 2);
    wf_tensor *ts[2] = { wf_from_data(xv, WF_SHAPE(LEN, 3), WF_F64), wf_from_data(yv, WF_SHAPE(LEN, 1), WF_F64) };
    wf_dataset ds;
    if (wf_tensor_dataset(ts, 2, &ds)) return 1;
    wf_tensor_free(ts[0]);
    wf_tensor_free(ts[1]);
    wf_fabric_loader *dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&ds, &(wf_dataloader_opts){
        .batch_size = 4, .shuffle = true, .seed = 3 }), NULL);
    wf_manual_seed(100 + (uint64_t)rank);   /* different init per rank: setup broadcasts rank 0's */
    wf_module *m = wf_linear_new(3, 1, true);
    wf_module_to(m, WF_CPU, WF_F64);
    wf_tensor *p[NPAR];
    wf_module_parameters(m, p, NULL, NPAR);
    wf_optimizer *opt = wf_adam_new(p, NPAR, &(wf_adam_opts){ .lr = 0.05 });
    if (!dl || !opt || wf_fabric_setup(fab, m, &opt, 1, NULL)) { fprintf(stderr, "setup: %s\n", wf_error_message()); return 1; }
    wf_module_parameters(m, p, NULL, NPAR);
    wf_lr_scheduler *sch = wf_cosine_annealing_lr_new(opt, 40, 0.001);

    int64_t epoch = 0;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", opt);
    wf_fabric_state_add_scheduler(st, "scheduler", sch);
    wf_fabric_state_add_int(st, "epoch", &epoch);
    wf_fabric_state_add_rng(st, "rng");
    wf_fabric_state_add_precision(st, "precision", fab);

    int rc = 0;
    if (!resume) {
        rc = train_epochs(fab, m, opt, sch, dl, 0, E1);
        epoch = E1;
        if (!rc && wf_fabric_save(fab, ckpt, st, NULL)) { fprintf(stderr, "save: %s\n", wf_error_message()); rc = 1; }
    } else {
        wf_fabric_state *rest = wf_fabric_load(fab, ckpt, st, true);
        if (!rest) { fprintf(stderr, "load: %s\n", wf_error_message()); rc = 1; }
        wf_fabric_state_free(rest);
        if (!rc && epoch != E1) { fprintf(stderr, "rank %d: epoch %lld after load\n", rank, (long long)epoch); rc = 1; }
    }
    if (!rc) rc = train_epochs(fab, m, opt, sch, dl, epoch, E2);
    /* the final parameters: rank 0 writes the reference (save) or compares with it (resume) */
    double final[8];
    int64_t nf = 0;
    for (int i = 0; i < NPAR && !rc; i++) {
        wf_to_array(p[i], final + nf, WF_F64);
        nf += wf_numel(p[i]);
    }
    if (!rc && rank == 0) {
        FILE *f = fopen(ref, resume ? "rb" : "wb");
        if (!f) { fprintf(stderr, "cannot open %s\n", ref); rc = 1; }
        else if (!resume) {
            rc = fwrite(final, sizeof(double), (size_t)nf, f) != (size_t)nf;
        } else {
            double want[8];
            rc = fread(want, sizeof(double), (size_t)nf, f) != (size_t)nf;
            for (int64_t i = 0; !rc && i < nf; i++)
                if (memcmp(&want[i], &final[i], sizeof(double))) {
                    fprintf(stderr, "parameter element %lld: resumed %.17g, uninterrupted %.17g\n", (long long)i,
                            final[i], want[i]);
                    rc = 1;
                }
        }
        if (f) fclose(f);
    }
    /* every rank learns rank 0's verdict (no rank left waiting in the next collective) */
    int32_t verdict = rc;
    if (wf_fabric_broadcast_bytes(fab, &verdict, sizeof verdict, 0)) rc = 1;
    if (verdict) rc = 1;
    /* every rank holds the same parameters */
    wf_tensor *g = rc ? NULL : wf_fabric_all_gather(fab, p[0], false);
    if (!rc && !g) rc = 1;
    if (!rc) {
        const double *gv = wf_data_ptr(g);
        int64_t n = wf_numel(p[0]);
        for (int r = 1; r < wf_fabric_world_size(fab); r++)
            if (memcmp(gv, gv + r * n, (size_t)n * sizeof(double))) { fprintf(stderr, "rank %d differs\n", r); rc = 1; }
    }
    wf_tensor_free(g);
    printf("rank %d: %s %s\n", rank, argv[1], rc ? "FAILED" : "ok");
    wf_fabric_state_free(st);
    wf_lr_scheduler_free(sch);
    wf_optimizer_free(opt);
    wf_fabric_loader_free(dl);
    wf_fabric_free(fab);
    wf_module_free(m);
    if (resume && rank == 0) { unlink(ckpt); unlink(ref); }
    return rc;
}
