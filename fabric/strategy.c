/* fabric/strategy.c: the strategy registry (Fabric's names and rules) and the strategy
 * object's life. Which ops a name gets: one process runs the single-device strategy (for
 * every name: "ddp" on one device is a world of one); several processes run DDP's, FSDP's
 * for "fsdp*", ZeRO's for "deepspeed*" (strategy_zero.c; stage 3 on FSDP's units). The
 * object owns the process group; Fabric only delegates to its ops. */
#include "fabric/fabric_impl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "ddp_spawn" and "ddp_fork" run exactly as "ddp" (weft's launcher always re-executes the
 * program: there is no interpreter state to spawn or fork); a "_find_unused_parameters_true"
 * / "_false" suffix sets DDP's find_unused_parameters (strategy_ddp.c reads it); "dp" is
 * replaced by "ddp" with a warning in the connector. */
static const wf_strategy_vt strategies[] = {
    { "single_device", false, 0, false, false, false },
    { "ddp", true, 0, false, false, false },
    { "ddp_spawn", true, 0, false, false, false },
    { "ddp_fork", true, 0, false, false, false },
    { "ddp_find_unused_parameters_true", true, 0, false, false, false },
    { "ddp_find_unused_parameters_false", true, 0, false, false, false },
    { "ddp_spawn_find_unused_parameters_true", true, 0, false, false, false },
    { "ddp_spawn_find_unused_parameters_false", true, 0, false, false, false },
    { "ddp_fork_find_unused_parameters_true", true, 0, false, false, false },
    { "ddp_fork_find_unused_parameters_false", true, 0, false, false, false },
    { "dp", false, 0, false, false, false },
    { "fsdp", true, 0, true, false, false },
    { "fsdp_cpu_offload", true, 0, true, false, false },
    /* Fabric's DeepSpeedStrategy names: "deepspeed" is stage 2, its default */
    { "deepspeed", true, 2, false, false, false },
    { "deepspeed_stage_1", true, 1, false, false, false },
    { "deepspeed_stage_1_offload", true, 1, false, true, false },
    { "deepspeed_stage_2", true, 2, false, false, false },
    { "deepspeed_stage_2_offload", true, 2, false, true, false },
    { "deepspeed_stage_3", true, 3, true, false, false },
    { "deepspeed_stage_3_offload", true, 3, true, true, false },
    { "deepspeed_stage_3_offload_nvme", true, 3, true, true, true },
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
           "deepspeed_stage_1, deepspeed_stage_1_offload, deepspeed_stage_2, deepspeed_stage_2_offload, deepspeed_stage_3, "
           "deepspeed_stage_3_offload, deepspeed_stage_3_offload_nvme";
}

/* ---------------------------------------------------------------- default checkpoint IO */

static int default_save(const wf_checkpoint_io *io, wf_st_writer *w, const char *path) {
    (void)io;
    return wf_st_writer_save(w, path);
}
static wf_st_file *default_load(const wf_checkpoint_io *io, const char *path) {
    (void)io;
    return wf_st_open(path);
}
static int default_remove(const wf_checkpoint_io *io, const char *path) {
    (void)io;
    if (unlink(path)) return wf__error(WF_EIO, "wf_checkpoint_io: cannot remove %s", path);
    return 0;
}
const wf_checkpoint_io wf__default_checkpoint_io = { "safetensors", default_save, default_load, default_remove, NULL };

/* ---------------------------------------------------------------- life */

wf_strategy *wf__strategy_new(const wf_strategy_vt *desc, wf_precision *precision, wf_device device,
                              const wf_cluster_info *cluster, const wf_checkpoint_io *io, double timeout_s) {
    wf_strategy *s = wf__calloc(1, sizeof *s);
    if (!s) { wf__error(WF_ENOMEM, "wf_fabric_new: out of memory"); return NULL; }
    s->desc = desc;
    s->precision = precision;
    s->device = device;
    s->cluster = *cluster;
    s->timeout_s = timeout_s;
    s->io = io ? *io : wf__default_checkpoint_io;
    if (!s->io.save) s->io.save = default_save;
    if (!s->io.load) s->io.load = default_load;
    if (!s->io.remove) s->io.remove = default_remove;
    if (cluster->world_size <= 1) s->ops = &wf__single_device_ops;
    else if (desc && desc->zero_stage) s->ops = desc->zero_stage == 3 ? &wf__zero3_ops : &wf__zero_ops;
    else s->ops = desc && desc->sharded ? &wf__fsdp_ops : &wf__ddp_ops;
    return s;
}

void wf__strategy_free(wf_strategy *s) {
    if (!s) return;
    if (s->ops->teardown) s->ops->teardown(s);
    wf__free(s, sizeof *s);
}

int wf__module_params(wf_module *m, wf_tensor ***out) {
    int n = wf_module_parameters(m, NULL, NULL, 0);
    if (n < 0) return n;
    wf_tensor **p = wf__calloc((size_t)(n ? n : 1), sizeof *p);
    if (!p) return wf__error(WF_ENOMEM, "wf_fabric: out of memory");
    int rc = wf_module_parameters(m, p, NULL, n);
    if (rc < 0) {
        wf__free(p, 0);
        return rc;
    }
    *out = p;
    return n;
}
