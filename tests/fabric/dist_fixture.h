/* tests/fabric/dist_fixture.h: what the multi-process strategy tests (test_ddp.c, test_fsdp.c,
 * test_zero.c) share, in dist_fixture.c: the process group held for the whole run and the
 * main that runs a suite on every rank, and, for the sharded strategies, the model, its
 * per-rank batches, the one-process reference and the Fabric loop they are compared on.
 *
 * The model is Linear(4,5)-ReLU-Linear(5,3)-ReLU-Linear(3,1): dim 0 of 5 and 3 is uneven over
 * 2 or 3 ranks, and the last weight has one row, fewer than the ranks (some hold none). */
#ifndef WEFT_TESTS_FABRIC_DIST_FIXTURE_H
#define WEFT_TESTS_FABRIC_DIST_FIXTURE_H

#include "test_util.h"

/* held for the whole run, so MPI stays initialized between Fabrics */
extern wf_process_group *pg;
extern int rank, world;

/* CK_FORK=no (every rank runs every test in order, so the collectives line up), a short
 * WF_DIST_TIMEOUT unless set (a desynchronization is an error, not a hang), the group made,
 * a suite of one test case (timeout 120 s) filled by add and run; the exit status. */
int tf_dist_main(const char *name, void (*add)(TCase *tc));

#define NP 6        /* parameters of the model */
#define NV 47       /* their elements: 20+5 + 15+3 + 3+1 */

wf_module *tf_mlp(unsigned seed);
/* the mean squared error of rank r's micro-batch of step k (3 rows), made by m */
wf_tensor *tf_loss_of(wf_module *m, int r, int k);
/* the same loss with the batch moved to f's device (CUDA runs: the module is there) */
wf_tensor *tf_loss_on(wf_fabric *f, wf_module *m, int r, int k);
/* m's NV parameter values, in order (each must hold data) */
void tf_flatten(wf_module *m, double *out);
/* One process on the ranks' batches together (the mean of the ranks' mean losses), the
 * gradients clipped to norm clip, with the optimizer make builds on the NP parameters. */
void tf_reference(unsigned seed, int steps, wf_optimizer *(*make)(wf_tensor *const *p), double clip, double *out);
/* steps k0..k1-1 of the Fabric loop: backward, clip (the norm must be positive), step,
 * zero_grad */
void tf_train(wf_fabric *f, wf_module *m, wf_optimizer *o, int k0, int k1, double clip);
/* o's state tensor key ("exp_avg_sq", "momentum_buffer") of each of m's NP parameters holds
 * this rank's rows of it (wf__shard_rows of dim 0) */
void tf_check_state_rows(wf_optimizer *o, wf_module *m, const char *key);
/* every one of NV values within 1e-5 (relative) */
void tf_assert_near(const double *got, const double *want, const char *what);

#endif
