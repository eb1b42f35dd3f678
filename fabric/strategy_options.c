/* fabric/strategy_options.c: the checks of the DDP and FSDP options of a Fabric config. They
 * live apart from the strategies so that a build without those strategies (the minimal
 * preset, one process: fabric/strategy_dist_stub.c) still refuses the same bad values with
 * the same messages. */
#include "fabric/fabric_impl.h"
#include "fabric/ddp_reducer.h"
#include "fabric/fsdp_unit.h"

#include <string.h>

int wf__ddp_check_opts(const wf_ddp_opts *o) {
    if (o->bucket_cap_mb < 0 || o->first_bucket_mb < 0)
        return wf__error(WF_EINVAL, "wf_fabric_new: ddp.bucket_cap_mb = %g and ddp.first_bucket_mb = %g must not be "
                         "negative (0 = the defaults, 25 and 1)", o->bucket_cap_mb, o->first_bucket_mb);
    const char *h = o->comm_hook;
    if (h && *h && strcmp(h, "none") && strcmp(h, "bf16_compress") && strcmp(h, "fp16_compress"))
        return wf__error(WF_EINVAL, "wf_fabric_new: unknown ddp.comm_hook \"%s\" (valid: none, bf16_compress, "
                         "fp16_compress)", h);
    return 0;
}

static const char *const sharding_names[] = { "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD" };

int wf__fsdp_settings_from(const wf_fsdp_opts *o, const char *strategy_name, int num_nodes, wf__fsdp_settings *out) {
    const char *op = "wf_fabric_new";
    (void)num_nodes;   /* HYBRID_SHARD checks the nodes' sizes at launch, when the ranks are known */
    memset(out, 0, sizeof *out);
    out->reduce_dtype = WF_F32;
    const char *ss = o->sharding_strategy;
    if (ss && *ss) {
        int k = -1;
        for (int i = 0; i < 4; i++) if (!strcmp(ss, sharding_names[i])) k = i;
        if (k < 0)
            return wf__error(WF_EINVAL, "%s: unknown fsdp.sharding_strategy \"%s\" (valid: FULL_SHARD, SHARD_GRAD_OP, "
                             "NO_SHARD, HYBRID_SHARD)", op, ss);
        out->sharding = k;
    }
    const char *rd = o->reduce_dtype;
    if (rd && *rd) {
        wf_dtype dt;
        if (wf_dtype_parse(rd, &dt) || (dt != WF_F32 && dt != WF_BF16 && dt != WF_F16 && dt != WF_F64))
            return wf__error(WF_EINVAL, "%s: unknown fsdp.reduce_dtype \"%s\" (valid: float32, bfloat16, float16, "
                             "float64)", op, rd);
        out->reduce_dtype = dt;
    }
    const char *sd = o->state_dict_type;
    if (sd && *sd) {
        if (!strcmp(sd, "full")) out->full_state_dict = true;
        else if (strcmp(sd, "sharded"))
            return wf__error(WF_EINVAL, "%s: unknown fsdp.state_dict_type \"%s\" (valid: sharded, full)", op, sd);
    }
    if (o->min_num_params < 0)
        return wf__error(WF_EINVAL, "%s: fsdp.min_num_params = %lld: must be >= 0 (0: off)", op,
                         (long long)o->min_num_params);
    out->min_num_params = o->min_num_params;
    for (int i = 0; o->auto_wrap_policy && o->auto_wrap_policy[i]; i++) {
        const char *t = o->auto_wrap_policy[i];
        if (i >= WF_FSDP_MAX_WRAP_TYPES)
            return wf__error(WF_EINVAL, "%s: fsdp.auto_wrap_policy names more than %d module types", op,
                             WF_FSDP_MAX_WRAP_TYPES);
        if (!*t || strlen(t) >= sizeof out->wrap_types[0])
            return wf__error(WF_EINVAL, "%s: fsdp.auto_wrap_policy[%d] = \"%s\" is not a module type name", op, i, t);
        snprintf(out->wrap_types[i], sizeof out->wrap_types[i], "%s", t);
        out->n_wrap_types = i + 1;
    }
    for (int i = 0; o->activation_checkpointing_policy && o->activation_checkpointing_policy[i]; i++) {
        const char *t = o->activation_checkpointing_policy[i];
        if (i >= WF_FSDP_MAX_WRAP_TYPES)
            return wf__error(WF_EINVAL, "%s: fsdp.activation_checkpointing_policy names more than %d module types", op,
                             WF_FSDP_MAX_WRAP_TYPES);
        if (!*t || strlen(t) >= sizeof out->ac_types[0])
            return wf__error(WF_EINVAL, "%s: fsdp.activation_checkpointing_policy[%d] = \"%s\" is not a module type "
                             "name", op, i, t);
        snprintf(out->ac_types[i], sizeof out->ac_types[i], "%s", t);
        out->n_ac_types = i + 1;
    }
    out->cpu_offload = o->cpu_offload || (strategy_name && !strcmp(strategy_name, "fsdp_cpu_offload"));
    return 0;
}
