/* fabric/connector.c: settings (config struct, then WF_* environment variables) -> an
 * accelerator, a device list, a strategy and a precision name, with Fabric's rules and
 * errors (lightning.fabric.connector._Connector). */
#include "fabric/fabric_impl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OP "wf_fabric_new"
#define WF_MAX_NUM_NODES 65536

static bool is_default(const char *v, const char *def) {
    return !v || !*v || (def && !strcasecmp(v, def));
}

/* Fabric's _argument_from_env: the environment wins; with the CLI in use, a config value
 * that differs from both the default and the environment is a conflict. */
static int from_env(const char *what, const char *env_name, const char *cfg_value, const char *def,
                    const char **out) {
    const char *env = getenv(env_name);
    *out = cfg_value;
    if (!env || !*env) return 0;
    const char *cli = getenv("WF_CLI_USED");
    if (cli && !strcmp(cli, "1") && !is_default(cfg_value, def) && strcasecmp(env, cfg_value))
        return wf__error(WF_EINVAL, OP ": your code has wf_fabric_config.%s = \"%s\" but it conflicts with "
                         "the value --%s=%s set through the CLI (%s). Remove it either from the CLI or "
                         "from the config", what, cfg_value, what, env, env_name);
    *out = env;
    return 0;
}

static const char *trim(const char *s, char *buf, size_t n) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= n) len = n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return buf;
}

/* parse a decimal int; returns false on junk */
static bool parse_int(const char *s, long *v) {
    if (!*s) return false;
    errno = 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (errno || *end) return false;
    *v = x;
    return true;
}

static int resolve_accelerator(const char *name, const wf_accelerator_vt **out) {
    char b[32];
    const char *a = trim(name ? name : "auto", b, sizeof b);
    if (!*a) return wf__error(WF_EINVAL, OP ": accelerator is an empty string (valid: auto, cpu, cuda, gpu; NULL means auto)");
    if (!strcasecmp(a, "auto")) {
        *out = wf__accel_cuda.is_available() ? &wf__accel_cuda : &wf__accel_cpu;
        return 0;
    }
    if (!strcasecmp(a, "cpu")) { *out = &wf__accel_cpu; return 0; }
    if (!strcasecmp(a, "cuda") || !strcasecmp(a, "gpu")) {
        if (!wf__accel_cuda.is_available())
            return wf__error(WF_EDEVICE, OP ": accelerator \"%s\" was requested but no CUDA device is available "
#ifdef WEFT_HAVE_CUDA
                             "(wf_cuda_device_count() is 0)"
#else
                             "(this build of weft has no CUDA support)"
#endif
                             "; use accelerator \"cpu\" or \"auto\"", a);
        *out = &wf__accel_cuda;
        return 0;
    }
    if (!strcasecmp(a, "mps"))
        return wf__error(WF_ENOTSUP, OP ": accelerator \"mps\" (Apple Metal) is not available: this build of weft "
                         "has no such hardware support (valid: auto, cpu, cuda, gpu)");
    if (!strcasecmp(a, "tpu") || !strcasecmp(a, "xla"))
        return wf__error(WF_ENOTSUP, OP ": accelerator \"%s\" (TPU/XLA) is not available: this build of weft "
                         "has no such hardware support (valid: auto, cpu, cuda, gpu)", a);
    return wf__error(WF_EINVAL, OP ": unknown accelerator \"%s\" (valid: auto, cpu, cuda, gpu)", a);
}

static int resolve_devices(const char *devices, const wf_accelerator_vt *acc, wf_connector_result *out) {
    char b[256];
    const char *d = trim(devices ? devices : "auto", b, sizeof b);
    out->n_devices = 0;
    if (!*d)
        return wf__error(WF_EINVAL, OP ": devices is an empty string (expected \"auto\", a count N, -1 or a list "
                         "of indices like \"0,2\"; NULL means auto)");
    if (!strcasecmp(d, "auto")) {
        int n = acc->auto_device_count();
        if (n < 1) n = 1;
        if (n > 64) n = 64;
        for (int i = 0; i < n; i++) out->devices[out->n_devices++] = i;
        return 0;
    }
    bool list = strchr(d, ',') != NULL || (d[0] == '[');
    if (!strcmp(d, "[]"))
        return wf__error(WF_EINVAL, OP ": devices=[] is not a valid input using the %s accelerator", acc->name);
    if (!list) {
        long n;
        if (!parse_int(d, &n))
            return wf__error(WF_EINVAL, OP ": devices=\"%s\" is not valid: expected \"auto\", a count N, -1 or a "
                             "list of indices like \"0,2\"", d);
        if (n == 0)
            return wf__error(WF_EINVAL, OP ": devices=%s is not a valid input using the %s accelerator", d, acc->name);
        if (acc->takes_process_count) {
            if (n < 0)
                return wf__error(WF_EINVAL, OP ": devices selected with the cpu accelerator should be an int > 0 "
                                 "(a number of processes), got %ld", n);
            if (n > 64) return wf__error(WF_EINVAL, OP ": devices=%ld: at most 64 processes per node", n);
            for (int i = 0; i < n; i++) out->devices[out->n_devices++] = i;
            return 0;
        }
        int avail = acc->max_devices();
        if (n == -1) n = avail;
        if (n < -1) return wf__error(WF_EINVAL, OP ": devices=%ld is not valid (use -1 for all devices)", n);
        if (n > avail)
            return wf__error(WF_EDEVICE, OP ": devices=%ld requested but only %d %s device(s) are available", n, avail,
                             acc->name);
        for (int i = 0; i < n && i < 64; i++) out->devices[out->n_devices++] = i;
        return 0;
    }
    if (acc->takes_process_count)
        return wf__error(WF_EINVAL, OP ": devices selected with the cpu accelerator should be an int > 0 "
                         "(a number of processes), got the list \"%s\"", d);
    /* a list of indices: "0,2", "[0, 2]", "1," */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", d + (d[0] == '['));
    size_t tl = strlen(tmp);
    if (d[0] == '[') {
        if (!tl || tmp[tl - 1] != ']') return wf__error(WF_EINVAL, OP ": devices=\"%s\": unbalanced brackets", d);
        tmp[--tl] = 0;
    }
    int avail = acc->max_devices();
    char *save = NULL;
    for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char tb[32];
        const char *t = trim(tok, tb, sizeof tb);
        if (!*t) continue;
        long idx;
        if (!parse_int(t, &idx) || idx < 0)
            return wf__error(WF_EINVAL, OP ": devices=\"%s\": \"%s\" is not a device index", d, t);
        if (idx >= avail)
            return wf__error(WF_EDEVICE, OP ": devices=\"%s\": device index %ld does not exist (%d %s device(s) "
                             "available)", d, idx, avail, acc->name);
        for (int j = 0; j < out->n_devices; j++)
            if (out->devices[j] == idx) return wf__error(WF_EINVAL, OP ": devices=\"%s\": index %ld appears twice", d, idx);
        if (out->n_devices >= 64) return wf__error(WF_EINVAL, OP ": devices=\"%s\": too many devices", d);
        out->devices[out->n_devices++] = (int)idx;
    }
    if (!out->n_devices)
        return wf__error(WF_EINVAL, OP ": devices=\"%s\" is not a valid input using the %s accelerator", d, acc->name);
    return 0;
}

static void warn(wf_connector_result *out, const char *msg) {
    if (out->n_warnings < WF_CONNECTOR_MAX_WARNINGS)
        snprintf(out->warnings[out->n_warnings++], sizeof out->warnings[0], "%s", msg);
}

static int resolve_strategy(const char *name, wf_connector_result *out) {
    char b[64];
    const char *s = trim(name ? name : "auto", b, sizeof b);
    int world = out->n_devices * out->num_nodes;
    if (!*s) return wf__error(WF_EINVAL, OP ": strategy is an empty string (valid: %s; NULL means auto)", wf__strategy_names());
    if (!strcasecmp(s, "auto")) {
        out->strategy = wf__strategy_find(world > 1 ? "ddp" : "single_device");
    } else {
        if (!strcmp(s, "ddp_notebook") || !strncmp(s, "ddp_notebook_", 13))
            return wf__error(WF_ENOTSUP, OP ": strategy \"%s\" is for Jupyter notebooks and does not apply to weft "
                             "(use \"ddp\" or \"ddp_fork\")", s);
        if (!strcmp(s, "xla") || !strcmp(s, "single_xla") || !strcmp(s, "xla_fsdp"))
            return wf__error(WF_ENOTSUP, OP ": strategy \"%s\" needs TPUs, which this build has no support for", s);
        const wf_strategy_vt *st = wf__strategy_find(s);
        if (!st) return wf__error(WF_EINVAL, OP ": unknown strategy \"%s\" (valid: %s)", s, wf__strategy_names());
        if (!strcmp(s, "dp")) {
            /* DataParallel (one process driving several devices) is not part of weft: DDP does
             * the same job, one process per device */
            warn(out, out->accel == &wf__accel_cpu
                          ? "strategy \"dp\" is not supported on CPUs, hence setting strategy=\"ddp\""
                          : "strategy \"dp\" (DataParallel) is not supported by weft, hence setting strategy=\"ddp\"");
            st = wf__strategy_find("ddp");
        }
        out->strategy = st;
    }
    const wf_strategy_vt *st = out->strategy;
    /* weft's ZeRO is its own (strategy_zero.c), so it runs on the CPU too; ZeRO-Infinity's
     * NVMe offload is not part of it */
    if (st->nvme)
        return wf__error(WF_ENOTSUP, OP ": strategy \"%s\" offloads parameters and optimizer state to NVMe "
                         "(DeepSpeed's ZeRO-Infinity), which weft's ZeRO does not do; use \"deepspeed_stage_3_offload\" "
                         "(host memory) or \"deepspeed_stage_3\"", st->name);
    if (!strcmp(st->name, "single_device") && world > 1)
        return wf__error(WF_EINVAL, OP ": strategy \"single_device\" runs on one device, but %d devices x %d node(s) "
                         "were requested", out->n_devices, out->num_nodes);
    return 0;
}

/* The cluster environment: the plugin's, else the detected one. When processes were started
 * by a launcher, its world must agree with devices x num_nodes; "auto" devices take its
 * local world size (so `mpirun -np 2 prog` needs no devices setting). */
static int resolve_cluster(const wf_fabric_config *c, const char *devices, wf_connector_result *out) {
    int rc;
    wf_cluster_info *ci = &out->cluster;
    if (c->plugins.cluster_env) {
        const wf_cluster_env *env = c->plugins.cluster_env;
        if (!env->fill)
            return wf__error(WF_EINVAL, OP ": plugins.cluster_env (%s) has no fill function", env->name ? env->name : "unnamed");
        memset(ci, 0, sizeof *ci);
        if ((rc = env->fill(env, ci))) return rc;
        if (!ci->env_name[0]) snprintf(ci->env_name, sizeof ci->env_name, "%s", env->name ? env->name : "plugin");
        if (ci->world_size < 1 || ci->global_rank < 0 || ci->global_rank >= ci->world_size || ci->local_rank < 0)
            return wf__error(WF_EINVAL, OP ": plugins.cluster_env (%s) gave rank %d of world size %d (local rank %d)",
                             ci->env_name, ci->global_rank, ci->world_size, ci->local_rank);
    } else if ((rc = wf_cluster_detect(ci))) {
        return rc;
    }
    if (ci->num_nodes < 1) ci->num_nodes = 1;
    if (ci->local_world_size < 1) ci->local_world_size = ci->world_size / ci->num_nodes;
    if (!ci->creates_processes_externally) return 0;
    char b[256];
    const char *d = trim(devices ? devices : "auto", b, sizeof b);
    if (!*d || !strcasecmp(d, "auto")) {
        int n = ci->local_world_size;
        if (n < 1 || n > 64) return wf__error(WF_EINVAL, OP ": the %s environment has %d processes per node", ci->env_name, n);
        int gpus = out->accel == &wf__accel_cuda ? out->accel->max_devices() : n;
        /* ranks share GPUs only through the mpi backend (NCCL refuses two ranks on one GPU) */
        bool share = out->accel == &wf__accel_cuda && !strcmp(out->pg_backend, "mpi");
        if (out->accel == &wf__accel_cuda && n > gpus && !share)
            return wf__error(WF_EDEVICE, OP ": the %s environment runs %d processes per node but only %d CUDA device(s) "
                             "are available (process_group_backend \"mpi\" lets ranks share GPUs)", ci->env_name, n,
                             gpus);
        if (gpus < 1) return wf__error(WF_EDEVICE, OP ": no CUDA device is available");
        out->n_devices = n;
        for (int i = 0; i < n; i++) out->devices[i] = i % gpus;
        out->num_nodes = ci->num_nodes;
    }
    if (out->n_devices * out->num_nodes != ci->world_size)
        return wf__error(WF_EINVAL, OP ": devices=%d x num_nodes=%d = %d processes, but the %s environment started %d; "
                         "make them agree (or leave devices at \"auto\")", out->n_devices, out->num_nodes,
                         out->n_devices * out->num_nodes, ci->env_name, ci->world_size);
    return 0;
}

int wf__connector_resolve(const wf_fabric_config *c, wf_connector_result *out) {
    static const wf_fabric_config zero;
    if (!c) c = &zero;
    memset(out, 0, sizeof *out);
    const char *accel, *strategy, *devices, *nodes_s, *precision;
    char dev_list[256] = "", nodes_buf[24] = "";
    if (c->device_ids) {
        if (c->devices) return wf__error(WF_EINVAL, OP ": give either devices or device_ids, not both");
        if (c->n_device_ids < 0 || c->n_device_ids > 64)
            return wf__error(WF_EINVAL, OP ": n_device_ids=%d is out of range", c->n_device_ids);
        if (!c->n_device_ids) snprintf(dev_list, sizeof dev_list, "[]");
        for (int i = 0; i < c->n_device_ids; i++) {
            size_t l = strlen(dev_list);
            snprintf(dev_list + l, sizeof dev_list - l, "%s%d", i ? "," : "", c->device_ids[i]);
        }
        if (c->n_device_ids == 1) strncat(dev_list, ",", sizeof dev_list - strlen(dev_list) - 1);
    }
    if (c->num_nodes) snprintf(nodes_buf, sizeof nodes_buf, "%d", c->num_nodes);
    int rc;
    if ((rc = from_env("accelerator", "WF_ACCELERATOR", c->accelerator, "auto", &accel))) return rc;
    if ((rc = from_env("strategy", "WF_STRATEGY", c->strategy, "auto", &strategy))) return rc;
    if ((rc = from_env("devices", "WF_DEVICES", c->device_ids ? dev_list : c->devices, "auto", &devices))) return rc;
    if ((rc = from_env("num_nodes", "WF_NUM_NODES", nodes_buf[0] ? nodes_buf : NULL, "1", &nodes_s))) return rc;
    if ((rc = from_env("precision", "WF_PRECISION", c->precision, "32-true", &precision))) return rc;

    if ((rc = resolve_accelerator(accel, &out->accel))) return rc;
    const char *be = c->process_group_backend;
    if (be && *be && strcasecmp(be, "auto")) {
        if (!strcmp(be, "gloo")) be = "mpi";   /* Lightning's CPU backend: weft's is mpi */
        if (strcmp(be, "mpi") && strcmp(be, "nccl"))
            return wf__error(WF_EINVAL, OP ": process_group_backend \"%s\" is not one of auto, mpi, nccl (gloo's role "
                             "is played by mpi)", be);
        if (!strcmp(be, "nccl") && out->accel != &wf__accel_cuda)
            return wf__error(WF_EINVAL, OP ": process_group_backend \"nccl\" needs the cuda accelerator");
        snprintf(out->pg_backend, sizeof out->pg_backend, "%s", be);
    }
    long nodes = 1;
    if (nodes_s) {
        char b[32];
        const char *t = trim(nodes_s, b, sizeof b);
        /* the bound (weft run's) keeps devices x num_nodes, the world size, within an int */
        if (!parse_int(t, &nodes) || nodes < 1 || nodes > WF_MAX_NUM_NODES)
            return wf__error(WF_EINVAL, OP ": num_nodes must be an int >= 1 and <= %d, got \"%s\"", WF_MAX_NUM_NODES, t);
    }
    out->num_nodes = (int)nodes;
    if ((rc = resolve_devices(devices, out->accel, out))) return rc;
    if ((rc = resolve_cluster(c, devices, out))) return rc;
    if ((rc = resolve_strategy(strategy, out))) return rc;
    char pb[32];
    trim(precision ? precision : "32-true", pb, sizeof pb);
    if (!pb[0]) return wf__error(WF_EINVAL, OP ": precision is an empty string (NULL means \"32-true\")");
    snprintf(out->precision, sizeof out->precision, "%s", pb[0] ? pb : "32-true");
    return 0;
}
