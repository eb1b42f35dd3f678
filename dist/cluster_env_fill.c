/* dist/cluster_env_fill.c: what each cluster environment reads (dist.h's wf_cluster_detect
 * lists the variables): the fill half of Lightning's ClusterEnvironment, for torchrun, SLURM,
 * Open MPI's mpirun, weft's own launcher (dist/launch.c) and a world of one. Which one applies
 * is dist/cluster_env.c's business. Every value is checked: a non-number, a negative value or
 * a rank outside the world is WF_EINVAL naming the variable and its value, because a rank that
 * silently guessed would hang its peers at the first collective. The minimal (embedded) preset
 * has dist/cluster_env_fill_stub.c instead. */
#include "dist/dist_impl.h"
#include "dist/launch_impl.h"
#include "weft_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#endif

#define OP "wf_cluster_detect"

/* ---------------------------------------------------------------- variable parsing */

/* Read an integer variable. Missing: *out = def and 0 when !required. */
static int env_int(const char *env, const char *name, bool required, int def, int min, int *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        if (required) return wf__error(WF_EINVAL, OP " (%s): %s is not set", env, name);
        *out = def;
        return 0;
    }
    errno = 0;
    char *end;
    long x = strtol(v, &end, 10);
    while (*end && isspace((unsigned char)*end)) end++;
    if (errno || end == v || *end || x > INT_MAX || x < INT_MIN)
        return wf__error(WF_EINVAL, OP " (%s): %s=\"%s\" is not an integer", env, name, v);
    if (x < min)
        return wf__error(WF_EINVAL, OP " (%s): %s=%ld must be >= %d", env, name, x, min);
    *out = (int)x;
    return 0;
}

static int check_below(const char *env, const char *name, int v, const char *bound_name, int bound) {
    if (v >= bound)
        return wf__error(WF_EINVAL, OP " (%s): %s=%d must be below %s=%d", env, name, v, bound_name, bound);
    return 0;
}

static int check_not_above(const char *env, const char *name, int v, const char *bound_name, int bound) {
    if (v > bound)
        return wf__error(WF_EINVAL, OP " (%s): %s=%d is larger than %s=%d", env, name, v, bound_name, bound);
    return 0;
}

static int set_address(const char *env, wf_cluster_info *out, const char *addr) {
    if (strlen(addr) >= sizeof out->main_address)
        return wf__error(WF_EINVAL, OP " (%s): main address \"%.40s...\" is longer than %zu bytes", env, addr,
                         sizeof out->main_address - 1);
    strcpy(out->main_address, addr);
    return 0;
}

/* MASTER_ADDR (or def) and MASTER_PORT (or def_port). */
static int read_master(const char *env, wf_cluster_info *out, const char *def_addr, int def_port) {
    const char *a = getenv("MASTER_ADDR");
    int rc = set_address(env, out, a && *a ? a : def_addr);
    if (rc) return rc;
    if ((rc = env_int(env, "MASTER_PORT", false, def_port, 0, &out->main_port))) return rc;
    if (out->main_port > 65535)
        return wf__error(WF_EINVAL, OP " (%s): MASTER_PORT=%d is not a TCP port (0..65535)", env, out->main_port);
    return 0;
}

static void set_name(wf_cluster_info *out, const char *name) {
    snprintf(out->env_name, sizeof out->env_name, "%s", name);
}

/* ---------------------------------------------------------------- torchrun */

int wf__torchrun_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    const char *env = "torchrun";
    memset(out, 0, sizeof *out);
    set_name(out, env);
    int rc;
    if ((rc = env_int(env, "WORLD_SIZE", true, 0, 1, &out->world_size))) return rc;
    if ((rc = env_int(env, "RANK", true, 0, 0, &out->global_rank))) return rc;
    if ((rc = check_below(env, "RANK", out->global_rank, "WORLD_SIZE", out->world_size))) return rc;
    if ((rc = env_int(env, "LOCAL_WORLD_SIZE", false, out->world_size, 1, &out->local_world_size))) return rc;
    if ((rc = check_not_above(env, "LOCAL_WORLD_SIZE", out->local_world_size, "WORLD_SIZE", out->world_size)))
        return rc;
    if ((rc = env_int(env, "LOCAL_RANK", true, 0, 0, &out->local_rank))) return rc;
    if ((rc = check_below(env, "LOCAL_RANK", out->local_rank, "LOCAL_WORLD_SIZE", out->local_world_size))) return rc;
    if ((rc = env_int(env, "GROUP_RANK", false, 0, 0, &out->node_rank))) return rc;
    /* torchrun starts the same number of processes on every node */
    out->num_nodes = (out->world_size + out->local_world_size - 1) / out->local_world_size;
    if ((rc = check_below(env, "GROUP_RANK", out->node_rank, "the node count WORLD_SIZE/LOCAL_WORLD_SIZE",
                          out->num_nodes)))
        return rc;
    out->creates_processes_externally = true;
    return read_master(env, out, "127.0.0.1", 0);
}

/* ---------------------------------------------------------------- SLURM */

/* The hosts of a node list such as "node[1-3,5],gpu07,a[08-09]-ib": the first host into first
 * (may be NULL) and the count into *count. Handles one bracket group per name, which is what
 * SLURM prints for ordinary allocations. Returns 0 or WF_EINVAL. */
int wf__slurm_nodelist(const char *list, char *first, size_t first_n, int *count) {
    int n = 0;
    const char *p = list;
    if (!list || !*list) return wf__error(WF_EINVAL, OP " (slurm): SLURM_NODELIST is empty");
    while (*p) {
        /* one name: prefix [ranges] suffix, up to a comma outside brackets */
        const char *lb = NULL, *rb = NULL, *q = p;
        while (*q && *q != ',' && *q != '[') q++;
        if (*q == '[') {
            lb = q;
            rb = strchr(lb, ']');
            if (!rb) return wf__error(WF_EINVAL, OP " (slurm): SLURM_NODELIST=\"%s\" has an unclosed '['", list);
            q = rb + 1;
            while (*q && *q != ',') q++;
        }
        if (q == p) return wf__error(WF_EINVAL, OP " (slurm): SLURM_NODELIST=\"%s\" has an empty host name", list);
        int hosts = 1;
        char firsthost[256];
        if (!lb) {
            snprintf(firsthost, sizeof firsthost, "%.*s", (int)(q - p), p);
        } else {
            hosts = 0;
            const char *r = lb + 1;
            const char *first_item = r;
            size_t first_len = 0;
            while (r < rb) {
                const char *c = r;
                while (c < rb && *c != ',') c++;
                char *end;
                long lo = strtol(r, &end, 10), hi = lo;
                if (end == r) goto bad;
                if (*end == '-') {
                    const char *h = end + 1;
                    hi = strtol(h, &end, 10);
                    if (end == h) goto bad;
                }
                if (end != c || hi < lo || hi - lo > 100000) goto bad;
                if (r == first_item) {
                    first_len = 0;
                    while (isdigit((unsigned char)first_item[first_len])) first_len++;
                }
                hosts += (int)(hi - lo + 1);
                r = c < rb ? c + 1 : c;
            }
            if (!hosts) goto bad;
            /* the first number is kept as written: zero padding ("a[08-09]") is part of the name */
            snprintf(firsthost, sizeof firsthost, "%.*s%.*s%.*s", (int)(lb - p), p, (int)first_len, first_item,
                     (int)(q - rb - 1), rb + 1);
        }
        if (n == 0 && first) snprintf(first, first_n, "%s", firsthost);
        n += hosts;
        p = *q ? q + 1 : q;
    }
    if (count) *count = n;
    return 0;
bad:
    return wf__error(WF_EINVAL, OP " (slurm): SLURM_NODELIST=\"%s\": cannot read the host ranges", list);
}

int wf__slurm_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    const char *env = "slurm";
    memset(out, 0, sizeof *out);
    set_name(out, env);
    int rc;
    if ((rc = env_int(env, "SLURM_NTASKS", true, 0, 1, &out->world_size))) return rc;
    if ((rc = env_int(env, "SLURM_PROCID", true, 0, 0, &out->global_rank))) return rc;
    if ((rc = check_below(env, "SLURM_PROCID", out->global_rank, "SLURM_NTASKS", out->world_size))) return rc;
    if ((rc = env_int(env, "SLURM_LOCALID", true, 0, 0, &out->local_rank))) return rc;
    if ((rc = env_int(env, "SLURM_NODEID", true, 0, 0, &out->node_rank))) return rc;
    const char *list = getenv("SLURM_NODELIST");
    if (!list || !*list) list = getenv("SLURM_JOB_NODELIST");
    if (!list || !*list) return wf__error(WF_EINVAL, OP " (slurm): SLURM_NODELIST is not set");
    char first[256];
    if ((rc = wf__slurm_nodelist(list, first, sizeof first, &out->num_nodes))) return rc;
    if (wf__env_set("SLURM_NNODES") && (rc = env_int(env, "SLURM_NNODES", true, 0, 1, &out->num_nodes))) return rc;
    if ((rc = check_below(env, "SLURM_NODEID", out->node_rank, "the node count", out->num_nodes))) return rc;
    /* SLURM_NTASKS_PER_NODE may read "4" or "4(x2)": the leading count is this layout's */
    const char *tpn = getenv("SLURM_NTASKS_PER_NODE");
    if (tpn && *tpn) {
        char *end;
        errno = 0;
        long x = strtol(tpn, &end, 10);
        if (errno || end == tpn || x < 1 || x > INT_MAX || (*end && *end != '(' && *end != ','))
            return wf__error(WF_EINVAL, OP " (slurm): SLURM_NTASKS_PER_NODE=\"%s\" is not a task count", tpn);
        out->local_world_size = (int)x;
    } else {
        out->local_world_size = (out->world_size + out->num_nodes - 1) / out->num_nodes;
    }
    if ((rc = check_below(env, "SLURM_LOCALID", out->local_rank, "SLURM_NTASKS_PER_NODE", out->local_world_size)))
        return rc;
    /* the port: MASTER_PORT, else Lightning's rule, 15000 + the job id's last four digits, so
     * that every task of the job (and only this job) agrees on it without talking */
    const char *job = getenv("SLURM_JOB_ID");
    int port = 0;
    if (job && *job) {
        size_t len = strlen(job);
        for (size_t i = 0; i < len; i++)
            if (!isdigit((unsigned char)job[i]))
                return wf__error(WF_EINVAL, OP " (slurm): SLURM_JOB_ID=\"%s\" is not a number", job);
        port = 15000 + atoi(job + (len > 4 ? len - 4 : 0));
    } else if (!wf__env_set("MASTER_PORT")) {
        return wf__error(WF_EINVAL, OP " (slurm): neither MASTER_PORT nor SLURM_JOB_ID is set: "
                         "the ranks cannot agree on a port");
    }
    out->creates_processes_externally = true;
    return read_master(env, out, first, port);
}

/* ---------------------------------------------------------------- Open MPI */

#ifdef WEFT_HAVE_MPI
/* Node rank and count from every rank's host name: the index of this host among the distinct
 * names, in order of first appearance by rank (Lightning's MPIEnvironment does the same). */
static int mpi_nodes_from_hosts(wf_cluster_info *out) {
    enum { HN = 256 };
    char me[HN] = {0};
    if (gethostname(me, HN - 1)) snprintf(me, HN, "unknown");
    size_t n_all = (size_t)out->world_size * HN;
    char *all = wf__malloc(n_all);
    if (!all) return wf__error(WF_ENOMEM, OP " (mpi): no memory for %d host names", out->world_size);
    if (MPI_Allgather(me, HN, MPI_CHAR, all, HN, MPI_CHAR, MPI_COMM_WORLD) != MPI_SUCCESS) {
        wf__free(all, n_all);
        return wf__error(WF_EDIST, OP " (mpi): MPI_Allgather of the host names failed");
    }
    int distinct = 0;
    out->node_rank = -1;
    for (int r = 0; r < out->world_size; r++) {
        const char *h = all + (size_t)r * HN;
        bool seen = false;
        for (int q = 0; q < r && !seen; q++) seen = !strncmp(h, all + (size_t)q * HN, HN);
        if (seen) continue;
        if (!strncmp(h, me, HN)) out->node_rank = distinct;
        distinct++;
    }
    wf__free(all, n_all);
    out->num_nodes = distinct;
    if (out->node_rank < 0) return wf__error(WF_EDIST, OP " (mpi): this host \"%s\" is not among the ranks' hosts", me);
    return 0;
}
#endif

int wf__mpi_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    const char *env = "mpi";
    memset(out, 0, sizeof *out);
    set_name(out, env);
    int rc;
    if ((rc = env_int(env, "OMPI_COMM_WORLD_SIZE", true, 0, 1, &out->world_size))) return rc;
    if ((rc = env_int(env, "OMPI_COMM_WORLD_RANK", true, 0, 0, &out->global_rank))) return rc;
    if ((rc = check_below(env, "OMPI_COMM_WORLD_RANK", out->global_rank, "OMPI_COMM_WORLD_SIZE", out->world_size)))
        return rc;
    if ((rc = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", false, out->world_size, 1, &out->local_world_size)))
        return rc;
    if ((rc = check_not_above(env, "OMPI_COMM_WORLD_LOCAL_SIZE", out->local_world_size, "OMPI_COMM_WORLD_SIZE",
                          out->world_size)))
        return rc;
    if ((rc = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", false, 0, 0, &out->local_rank))) return rc;
    if ((rc = check_below(env, "OMPI_COMM_WORLD_LOCAL_RANK", out->local_rank, "OMPI_COMM_WORLD_LOCAL_SIZE",
                          out->local_world_size)))
        return rc;
    bool from_hosts = false;
#ifdef WEFT_HAVE_MPI
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) {
        if ((rc = mpi_nodes_from_hosts(out))) return rc;
        from_hosts = true;
    }
#endif
    if (!from_hosts) {
        /* Before MPI_Init nobody can see the other ranks' hosts. OMPI_COMM_WORLD_NODE_RANK is
         * not the node index (it numbers the processes of one node), so assume mpirun's
         * default mapping: ranks fill each node in order, local_size per node. */
        out->node_rank = out->global_rank / out->local_world_size;
        out->num_nodes = (out->world_size + out->local_world_size - 1) / out->local_world_size;
    }
    out->creates_processes_externally = true;
    return read_master(env, out, "127.0.0.1", 0);
}

/* ---------------------------------------------------------------- weft's launcher */

/* dist/launch.c sets, for each rank it starts itself: WF_LAUNCH_RANK, WF_LAUNCH_WORLD_SIZE,
 * WF_LAUNCH_LOCAL_RANK, WF_LAUNCH_LOCAL_SIZE, WF_LAUNCH_NODE_RANK, WF_LAUNCH_NUM_NODES,
 * MASTER_ADDR and MASTER_PORT (and torchrun's names, for programs that read those). */

int wf__weft_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    const char *env = "weft";
    memset(out, 0, sizeof *out);
    set_name(out, env);
    int rc;
    if ((rc = env_int(env, "WF_LAUNCH_WORLD_SIZE", true, 0, 1, &out->world_size))) return rc;
    if ((rc = env_int(env, "WF_LAUNCH_RANK", true, 0, 0, &out->global_rank))) return rc;
    if ((rc = check_below(env, "WF_LAUNCH_RANK", out->global_rank, "WF_LAUNCH_WORLD_SIZE", out->world_size))) return rc;
    if ((rc = env_int(env, "WF_LAUNCH_LOCAL_SIZE", false, out->world_size, 1, &out->local_world_size))) return rc;
    if ((rc = check_not_above(env, "WF_LAUNCH_LOCAL_SIZE", out->local_world_size, "WF_LAUNCH_WORLD_SIZE",
                          out->world_size)))
        return rc;
    if ((rc = env_int(env, "WF_LAUNCH_LOCAL_RANK", false, out->global_rank % out->local_world_size, 0,
                      &out->local_rank)))
        return rc;
    if ((rc = check_below(env, "WF_LAUNCH_LOCAL_RANK", out->local_rank, "WF_LAUNCH_LOCAL_SIZE",
                          out->local_world_size)))
        return rc;
    if ((rc = env_int(env, "WF_LAUNCH_NUM_NODES", false, 1, 1, &out->num_nodes))) return rc;
    if ((rc = env_int(env, "WF_LAUNCH_NODE_RANK", false, 0, 0, &out->node_rank))) return rc;
    if ((rc = check_below(env, "WF_LAUNCH_NODE_RANK", out->node_rank, "WF_LAUNCH_NUM_NODES", out->num_nodes)))
        return rc;
    out->creates_processes_externally = true;
    return read_master(env, out, "127.0.0.1", 0);
}

/* ---------------------------------------------------------------- local */

int wf__local_fill(const wf_cluster_env *e, wf_cluster_info *out) {
    (void)e;
    memset(out, 0, sizeof *out);
    set_name(out, "local");
    out->world_size = out->local_world_size = out->num_nodes = 1;
    /* a world of one still may serve a store (MASTER_PORT lets the user pick its port) */
    return read_master("local", out, "127.0.0.1", 0);
}

