/* tests/dist/trace_prog.c: a small Fabric DDP program for the WF_TRACE test.
 *   trace_prog            wf_fabric_launch with 2 CPU devices (re-executes through mpirun);
 *                         each rank trains a linear model for 3 steps (forward, backward with
 *                         the gradients' all_reduce, optimizer step) and frees the Fabric,
 *                         which writes "<WF_TRACE>.rank<r>.json".
 * Exit 0 on success. */
#include <stdio.h>

#include "weft/weft.h"

static int body(wf_fabric *fab, void *ud) {
    (void)ud;
    int rank = wf_fabric_global_rank(fab);
    wf_manual_seed(7);
    wf_module *m = wf_linear_new(8, 4, true);
    wf_tensor *p[2];
    if (!m || wf_module_parameters(m, p, NULL, 2) != 2) return 1;
    wf_optimizer *opt = wf_sgd_new(p, 2, &(wf_sgd_opts){ .lr = 0.1 });
    if (!opt || wf_fabric_setup(fab, m, &opt, 1, NULL) != 0) return 1;
    int rc = 0;
    for (int s = 0; s < 3 && !rc; s++) {
        WF_SCOPE {
            wf_optimizer_zero_grad(opt, true);
            wf_tensor *x = wf_full(WF_SHAPE(2, 8), 0.5 + rank + s, WF_F32);
            wf_tensor *loss = wf_sum_all(wf_module_forward(m, x));
            rc = loss ? wf_fabric_backward(fab, loss, m) : 1;
            if (!rc) rc = wf_fabric_step(fab, opt, NULL);
        }
    }
    if (rc) fprintf(stderr, "trace_prog: rank %d: %s\n", rank, wf_error_message());
    wf_optimizer_free(opt);
    wf_module_free(m);
    return rc ? 1 : 0;
}

int main(void) {
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .devices = "2", .quiet = true });
    if (!fab) { fprintf(stderr, "trace_prog: %s\n", wf_error_message()); return 1; }
    int rc = wf_fabric_launch(fab, body, NULL);
    if (rc < 0) fprintf(stderr, "trace_prog: %s\n", wf_error_message());
    wf_fabric_free(fab);
    return rc < 0 ? 1 : rc;
}
