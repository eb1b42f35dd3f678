/* dist/cluster_env.c: who am I and where do we meet (Lightning's ClusterEnvironment): which
 * launcher started this process, told by the variables it sets, tried in Fabric's order with a
 * world of one as the fallback. What each environment then reads is in dist/cluster_env_fill.c
 * (the minimal preset, one process, has dist/cluster_env_fill_stub.c, which refuses the job
 * environments by name); the rank -> GPU check NCCL runs at start-up is here too. */
#include "dist/dist_impl.h"

#include <stdlib.h>
#include <string.h>

#define OP "wf_cluster_detect"

bool wf__env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

/* ---------------------------------------------------------------- detection */

static bool torchrun_detect(const wf_cluster_env *e) {
    (void)e;
    /* Lightning's TorchElasticEnvironment requires all five */
    return wf__env_set("RANK") && wf__env_set("WORLD_SIZE") && wf__env_set("LOCAL_RANK") && wf__env_set("MASTER_ADDR") &&
           wf__env_set("MASTER_PORT");
}

static bool slurm_detect(const wf_cluster_env *e) {
    (void)e;
    if (!wf__env_set("SLURM_NTASKS")) return false;
    /* an interactive allocation (salloc's shell) is not a job of ranks: Lightning skips it */
    const char *job = getenv("SLURM_JOB_NAME");
    return !(job && (!strcmp(job, "bash") || !strcmp(job, "interactive")));
}

static bool mpi_detect(const wf_cluster_env *e) {
    (void)e;
    return wf__env_set("OMPI_COMM_WORLD_SIZE") && wf__env_set("OMPI_COMM_WORLD_RANK");
}

static bool weft_detect(const wf_cluster_env *e) {
    (void)e;
    return wf__env_set("WF_LAUNCH_RANK") && wf__env_set("WF_LAUNCH_WORLD_SIZE");
}

static bool local_detect(const wf_cluster_env *e) {
    (void)e;
    return true;
}

const wf_cluster_env wf_cluster_env_torchrun = { "torchrun", torchrun_detect, wf__torchrun_fill, NULL };
const wf_cluster_env wf_cluster_env_slurm = { "slurm", slurm_detect, wf__slurm_fill, NULL };
const wf_cluster_env wf_cluster_env_mpi = { "mpi", mpi_detect, wf__mpi_fill, NULL };
const wf_cluster_env wf_cluster_env_weft = { "weft", weft_detect, wf__weft_fill, NULL };
const wf_cluster_env wf_cluster_env_local = { "local", local_detect, wf__local_fill, NULL };

/* weft's launcher also sets torchrun's variables (so that programs reading RANK & co. work)
 * and may itself run inside a SLURM or MPI job, whose variables then describe the launcher,
 * not the ranks it started. WF_LAUNCH_RANK is set only by weft's launcher for one rank, so
 * where it is present it is the most specific description and comes first; otherwise the
 * order is Fabric's: torchrun, SLURM, Open MPI, weft, local. */
static const wf_cluster_env *detect_env(void) {
    if (weft_detect(&wf_cluster_env_weft)) return &wf_cluster_env_weft;
    const wf_cluster_env *order[] = { &wf_cluster_env_torchrun, &wf_cluster_env_slurm, &wf_cluster_env_mpi,
                                      &wf_cluster_env_weft };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (order[i]->detect(order[i])) return order[i];
    return &wf_cluster_env_local;
}

int wf_cluster_detect(wf_cluster_info *out) {
    if (!out) return wf__error(WF_ENULL, OP ": out is NULL");
    const wf_cluster_env *e = detect_env();
    return e->fill(e, out);
}

bool wf_launched(void) {
    return detect_env() != &wf_cluster_env_local;
}

/* ---------------------------------------------------------------- rank -> GPU map */

int wf_dist_check_device_map(const int *nodes, const int *devices, int n) {
    if (n < 0) return wf__error(WF_EINVAL, "wf_dist_check_device_map: n=%d ranks", n);
    if (n > 0 && (!nodes || !devices)) return wf__error(WF_ENULL, "wf_dist_check_device_map: nodes or devices is NULL");
    for (int r = 0; r < n; r++) {
        if (devices[r] < 0 || nodes[r] < 0)
            return wf__error(WF_EINVAL, "wf_dist_check_device_map: rank %d has device cuda:%d on node %d "
                             "(both must be >= 0)", r, devices[r], nodes[r]);
        for (int q = 0; q < r; q++)
            if (nodes[q] == nodes[r] && devices[q] == devices[r])
                return wf__error(WF_EINVAL, "wf_dist_check_device_map: ranks %d and %d both use cuda:%d on node %d: "
                                 "NCCL cannot run two ranks on one GPU (give each local rank its own device, "
                                 "or use the \"mpi\" backend)", q, r, devices[r], nodes[r]);
    }
    return 0;
}
