/* dist/cluster_env_fill_stub.c: the cluster environments of the minimal (embedded) preset,
 * which runs one process (no launcher, no store, no collectives) and whose library must stay
 * under 1 MB. A world of one is all it can be; a job environment detected around it (torchrun,
 * SLURM, mpirun, weft's launcher) fails naming itself, so two copies of a program never train
 * apart believing each is the whole job. The full reader: dist/cluster_env_fill.c. */
#include "dist/dist_impl.h"

#include <string.h>

static int refuse(const wf_cluster_env *e, const char *vars) {
    return wf__error(WF_ENOTSUP, "wf_cluster_detect: this process runs under %s (%s set), but the minimal build "
                     "of weft runs one process only (no launcher, store or collectives): build without "
                     "-Dminimal=true for multi-process training, or unset those variables", e->name, vars);
}

int wf__torchrun_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)out;
    return refuse(e, "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT");
}
int wf__slurm_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)out;
    return refuse(e, "SLURM_NTASKS");
}
int wf__mpi_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)out;
    return refuse(e, "OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_RANK");
}
int wf__weft_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)out;
    return refuse(e, "WF_LAUNCH_RANK, WF_LAUNCH_WORLD_SIZE");
}

/* a world of one; no store exists in this preset, so MASTER_ADDR / MASTER_PORT mean nothing */
int wf__local_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    memset(out, 0, sizeof *out);
    strcpy(out->env_name, "local");
    strcpy(out->main_address, "127.0.0.1");
    out->world_size = out->local_world_size = out->num_nodes = 1;
    return 0;
}
