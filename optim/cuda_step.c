/* optim/cuda_step.c: the CUDA side of a batched optimizer step: the queued Adam/AdamW
 * parameters (optim/update.c) go to the multi-tensor kernel of tensor/cuda/cuda_optim.cu in
 * a few launches, without a host synchronization. A separate file so that update.c stays
 * the same in builds with and without CUDA. */
#include "optim_impl.h"
#include "weft_config.h"

int wf__optim_cuda_flush(wf_optim_batch *b) {
    if (!b->n_cuda) return 0;
    int n = b->n_cuda;
    b->n_cuda = 0;
#ifdef WEFT_HAVE_CUDA
    /* no grad scaler state here: Fabric's 16-mixed unscales (and skips) before the step */
    return wf__cuda_adam_multi(b->cuda, n, NULL, NULL, b->cuda_dev);
#else
    return wf__error(WF_ENOTSUP, "wf_optimizer_step: %d CUDA parameters queued in a build without CUDA", n);
#endif
}
