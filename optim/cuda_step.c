/* optim/cuda_step.c: the CUDA side of a batched optimizer step: the queued Adam/AdamW
 * parameters (optim/update.c) go to the multi-tensor kernel of tensor/cuda/cuda_optim.cu in
 * a few launches, without a host synchronization. A separate file so that update.c stays
 * the same in builds with and without CUDA.
 *
 * CUDA graphs: a captured launch keeps the scalars it was captured with (the learning rate
 * and the bias corrections of that step). So during a capture the launches are recorded,
 * and a hook of the graph recomputes each parameter's scalars from the optimizer's host
 * state (its group's hyperparameters, which a scheduler changes, and its step count, which
 * each replay advances) and writes them into the executable graph before every replay. The
 * kernels then see the step's values, without a host round trip. Compiled only in builds with
 * CUDA; without it, optim_impl.h answers inline. */
#include "optim_impl.h"
#include "weft_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* update.c's adam_queue_cuda scalars (the same expressions, so a replay's bits equal an
 * eager step's; tests/cuda/test_cuda_graph.c compares them) */
static void adam_scalars(wf_cuda_adam_param *q) {
    const wf_hparams *h = q->host_hparams;
    const double step = *q->host_step;
    const double bc1 = 1 - pow(h->beta1, step), bc2 = 1 - pow(h->beta2, step);
    bool l2 = !q->decoupled && h->weight_decay != 0, dw = q->decoupled && h->weight_decay != 0;
    q->nstep = (float)-(h->lr / bc1);
    q->bc2s = (float)sqrt(bc2);
    q->eps = (float)h->eps;
    q->w1 = (float)(1 - h->beta1);
    q->b2 = (float)h->beta2;
    q->w2 = (float)(1 - h->beta2);
    q->wd = (float)(l2 ? h->weight_decay : 0);
    q->decay = (float)(dw ? 1 - h->lr * h->weight_decay : 1);
}

typedef struct adam_hook {
    void *record;               /* owned: wf__cuda_adam_record_free */
    int n;
    wf_cuda_adam_param *ps;     /* owned copy of the captured list */
} adam_hook;

static void adam_hook_free(void *ctx) {
    adam_hook *k = ctx;
    if (!k) return;
    wf__cuda_adam_record_free(k->record);
    wf__free(k->ps, (size_t)k->n * sizeof *k->ps);
    wf__free(k, sizeof *k);
}

/* before a replay: the capture advanced the step counts for the first replay (as an eager
 * step would have); every later replay is one more step */
static int adam_hook_run(void *ctx, void *exec, int first) {
    adam_hook *k = ctx;
    for (int j = 0; j < k->n; j++) {
        if (!first) *k->ps[j].host_step += 1;
        adam_scalars(&k->ps[j]);
    }
    int rc = wf__cuda_adam_record_update(k->record, exec, k->ps, k->n);
    if (rc && !first)
        for (int j = 0; j < k->n; j++) *k->ps[j].host_step -= 1;   /* the step did not happen */
    return rc;
}

static int capture_flush(const wf_cuda_adam_param *ps, int n, int dev) {
    for (int j = 0; j < n; j++)
        if (!ps[j].host_step || !ps[j].host_hparams)
            return wf__error(WF_EINVAL, "wf_optimizer_step: parameter %d of a captured step has no host state to "
                             "recompute its learning rate and step count from before each replay", j);
    adam_hook *k = wf__calloc(1, sizeof *k);
    wf_cuda_adam_param *copy = k ? wf__malloc((size_t)n * sizeof *copy) : NULL;
    if (!copy) {
        if (k) wf__free(k, sizeof *k);
        return wf__error(WF_ENOMEM, "wf_optimizer_step: out of memory to record %d captured parameters", n);
    }
    memcpy(copy, ps, (size_t)n * sizeof *copy);
    k->ps = copy, k->n = n;
    int rc = wf__cuda_adam_multi_capture(ps, n, NULL, NULL, dev, &k->record);
    if (!rc) rc = wf__cuda_graph_add_hook(dev, adam_hook_run, k, adam_hook_free);
    if (rc) adam_hook_free(k);
    return rc;
}

int wf__optim_cuda_capture_check(const wf_optimizer *opt, wf_tensor *p, const wf_param_state *st, bool cuda_fused) {
    wf_device d = wf_tensor_device(p);
    if (d.type != WF_DEV_CUDA || !wf__cuda_capturing(d.index)) return 0;
    /* refused through the graph, so that its capture_end fails with the same message */
    char what[320];
    if (!st->initialized)
        snprintf(what, sizeof what, "a first %s step (wf_optimizer_step: the parameter's state would be created "
                 "inside the capture and zeroed again by every replay; run the step eagerly once first)", opt->name);
    else if (!cuda_fused)
        snprintf(what, sizeof what, "this %s update (wf_optimizer_step: only the fused CUDA Adam/AdamW step gets its "
                 "learning rate and step count refreshed before each replay; amsgrad, maximize, non-contiguous or "
                 "mixed-device tensors and the other optimizers would replay the captured values)", opt->name);
    else return 0;
    return wf__cuda_refuse_in_capture(d.index, what);
}

int wf__optim_cuda_flush(wf_optim_batch *b) {
    if (!b->n_cuda) return 0;
    int n = b->n_cuda;
    b->n_cuda = 0;
    if (wf__cuda_capturing(b->cuda_dev)) return capture_flush(b->cuda, n, b->cuda_dev);
    /* no grad scaler state here: Fabric's 16-mixed unscales (and skips) before the step */
    return wf__cuda_adam_multi(b->cuda, n, NULL, NULL, b->cuda_dev);
}
