/* fabric/strategy_zero3.c: "deepspeed_stage_3" (and "_offload"): ZeRO-3 is FSDP's FULL_SHARD
 * (fabric/strategy_fsdp.c) with DeepSpeed's rules on top: every module with parameters of its
 * own a unit (unless fsdp.auto_wrap_policy / min_num_params choose), checkpoints gathered to
 * rank 0, one optimizer set up with its model, every backward synchronized (the Fabric warns
 * at no_backward_sync). Stages 1 and 2: fabric/strategy_zero.c.
 *
 * When a unit's gathered parameters go: DeepSpeed releases a module's parameters after its
 * forward only when their next use (its backward) is more than stage3_max_reuse_distance
 * elements of other parameters away, and keeps at most stage3_max_live_parameters gathered;
 * both default to 1e9, and Fabric's DeepSpeedStrategy keeps the defaults. So a model of at
 * most 1e9 parameters keeps every unit gathered from its forward to its backward (FSDP's
 * SHARD_GRAD_OP: one all-gather per unit and step, not two), and all are freed when the
 * backward has reduced them; a larger model frees each unit after its forward (FULL_SHARD). */
#include "fabric/zero_impl.h"
#include "fabric/fsdp_unit.h"

#define MAX_REUSE_DISTANCE 1000000000   /* stage3_max_reuse_distance = stage3_max_live_parameters */

static int z3_setup_environment(wf_strategy *s) {
    if (s->desc->offload && s->device.type != WF_DEV_CPU)
        return wf__error(WF_ENOTSUP, "wf_fabric_launch: strategy \"%s\": offloading the shards and optimizer state "
                         "of CUDA parameters to the host is not in this build; use \"deepspeed_stage_3\"", s->desc->name);
    s->fsdp.sharding = FSDP_SHARD_GRAD_OP;   /* until a model is too large: z3_setup_module */
    s->fsdp.full_state_dict = true;
    s->fsdp.cpu_offload = s->desc->offload;
    if (!s->fsdp.min_num_params && !s->fsdp.n_wrap_types) s->fsdp.min_num_params = 1;
    return wf__fsdp_ops.setup_environment(s);
}

static int z3_setup_module(wf_strategy *s, wf_module *m) {
    int np = wf_module_parameters(m, NULL, NULL, 0);
    wf_tensor **ps = np > 0 ? wf__calloc((size_t)np, sizeof *ps) : NULL;
    if (np > 0 && !ps) return wf__error(WF_ENOMEM, "wf_fabric_setup: out of memory");
    int64_t numel = 0;
    if (ps) wf_module_parameters(m, ps, NULL, np);
    for (int i = 0; i < np; i++) numel += wf_numel(ps[i]);
    wf__free(ps, 0);
    if (numel > MAX_REUSE_DISTANCE) wf__fsdp_set_reshard_after_forward(s, true);
    int rc = wf__fsdp_ops.setup_module(s, m);
    if (!rc) s->zero_n_models++;
    return rc;
}

static int z3_setup_optimizers(wf_strategy *s, wf_module *m, wf_optimizer *const *opts, int n) {
    int rc = wf__zero_check_optimizers(s, m, n);
    return rc ? rc : wf__fsdp_ops.setup_optimizers(s, m, opts, n);
}

static int z3_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    if (!m && s->zero_n_models > 1)
        return wf__error(WF_EINVAL, "wf_fabric_backward: with several models set up under DeepSpeed (strategy \"%s\"), "
                         "pass the model that made the loss: wf_fabric_backward(fab, loss, model)", s->desc->name);
    int depth = s->no_sync_depth;
    s->no_sync_depth = 0;   /* DeepSpeed reduces every backward */
    int rc = wf__fsdp_ops.backward(s, loss, m);
    s->no_sync_depth = depth;
    return rc;
}

static int z3_pre_forward(wf_strategy *s, wf_module *m) { return wf__fsdp_ops.pre_forward(s, m); }
static int z3_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    return wf__fsdp_ops.optimizer_step(s, o, skipped);
}
static void z3_grad_params(wf_strategy *s, wf_tensor **ps, int n) { wf__fsdp_ops.grad_params(s, ps, n); }
static int z3_clip_grad_norm(wf_strategy *s, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                             bool error_if_nonfinite, double *total_norm) {
    return wf__fsdp_ops.clip_grad_norm(s, ps, n, max_norm, norm_type, error_if_nonfinite, total_norm);
}
static void z3_teardown(wf_strategy *s) { wf__fsdp_ops.teardown(s); }


const wf_strategy_ops wf__zero3_ops = {
    .setup_environment = z3_setup_environment,
    .setup_module = z3_setup_module,
    .backward = z3_backward,
    .pre_forward = z3_pre_forward,
    .optimizer_step = z3_optimizer_step,
    .setup_optimizers = z3_setup_optimizers,
    .grad_params = z3_grad_params,
    .clip_grad_norm = z3_clip_grad_norm,
    WF__DDP_COLLECTIVE_OPS,
    .teardown = z3_teardown,
};
