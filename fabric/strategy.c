/* fabric/strategy.c: the strategy registry (Fabric's names). Every strategy runs with
 * single-process semantics in this build; the multi-process ones are recognized so that
 * the connector can apply Fabric's rules and refuse world sizes above one clearly. */
#include "fabric/fabric_impl.h"

#include <string.h>

static const wf_strategy_vt strategies[] = {
    { "single_device", false, false, false },
    { "ddp", true, false, false },
    { "ddp_spawn", true, false, false },
    { "ddp_fork", true, false, false },
    { "ddp_find_unused_parameters_true", true, false, false },
    { "ddp_find_unused_parameters_false", true, false, false },
    { "ddp_spawn_find_unused_parameters_true", true, false, false },
    { "ddp_spawn_find_unused_parameters_false", true, false, false },
    { "ddp_fork_find_unused_parameters_true", true, false, false },
    { "ddp_fork_find_unused_parameters_false", true, false, false },
    { "dp", false, false, false },
    { "fsdp", true, false, true },
    { "fsdp_cpu_offload", true, false, true },
    { "deepspeed", true, true, false },
    { "deepspeed_stage_1", true, true, false },
    { "deepspeed_stage_2", true, true, false },
    { "deepspeed_stage_2_offload", true, true, false },
    { "deepspeed_stage_3", true, true, true },
    { "deepspeed_stage_3_offload", true, true, true },
    { "deepspeed_stage_3_offload_nvme", true, true, true },
};

const wf_strategy_vt *wf__strategy_find(const char *name) {
    for (size_t i = 0; i < sizeof strategies / sizeof strategies[0]; i++)
        if (!strcmp(strategies[i].name, name)) return &strategies[i];
    return NULL;
}

const char *wf__strategy_names(void) {
    return "auto, single_device, ddp, ddp_spawn, ddp_fork, ddp_find_unused_parameters_true, "
           "ddp_find_unused_parameters_false, ddp_spawn_find_unused_parameters_true, "
           "ddp_spawn_find_unused_parameters_false, ddp_fork_find_unused_parameters_true, "
           "ddp_fork_find_unused_parameters_false, dp, fsdp, fsdp_cpu_offload, deepspeed, "
           "deepspeed_stage_1, deepspeed_stage_2, deepspeed_stage_2_offload, deepspeed_stage_3, "
           "deepspeed_stage_3_offload, deepspeed_stage_3_offload_nvme";
}
