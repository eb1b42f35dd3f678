/* fabric/cli/weft.c: the `weft` program (Lightning's `fabric run`).
 *
 *     weft consolidate FOLDER [--output FILE]     (fabric/cli/consolidate.c)
 *     weft run [--accelerator A] [--strategy S] [--devices D] [--num-nodes N] [--node-rank R]
 *              [--main-address H] [--main-port P] [--precision P]
 *              [--max-restarts N] PROGRAM [ARGS...]
 *
 * It passes the settings to the ranks as WF_ACCELERATOR, WF_STRATEGY, WF_DEVICES,
 * WF_NUM_NODES, WF_PRECISION and WF_CLI_USED=1 (fabric/connector.c reads them; a config
 * value in the program that conflicts with them is an error there) and starts the ranks:
 *  - cpu (or auto without a GPU): devices is a process count; with more than one process in
 *    the world and Open MPI in this build, through mpirun (the "mpi" backend needs it), each
 *    rank under `weft __rank`, the per-rank supervisor, so that any program's failure is
 *    named; otherwise directly;
 *  - cuda/gpu: one process per requested device (a count, -1 for all, or a list "0,2"),
 *    started directly; NCCL meets through the store at MASTER_ADDR:MASTER_PORT, and each
 *    rank picks its device from LOCAL_RANK (CUDA_VISIBLE_DEVICES is left alone).
 * --max-restarts N (torchrun's): when a rank fails, the others are stopped and every rank is
 * started again, up to N times, as a new world (dist.h: wf_launch_opts.max_restarts); the
 * program tells a restart from WF_RESTART_COUNT and resumes from its checkpoint.
 * One process in all and no restarts: the program is exec'ed directly. The exit status is the program's, or
 * the first failing rank's (128+signal when killed). Usage errors exit 2; a program that
 * cannot be found exits 127. */
#include "weft/dist.h"
#include "weft/tensor.h"
#include "cli_impl.h"
#include "dist/launch_impl.h"
#include "weft_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_main =
    "usage: weft run [options] PROGRAM [ARGS...]\n"
    "       weft consolidate FOLDER [--output FILE]\n"
    "       weft --help | weft run --help | weft consolidate --help\n"
    "\n"
    "Commands:\n"
    "  run          launch PROGRAM on one or more processes (Lightning's `fabric run`)\n"
    "  consolidate  write a sharded checkpoint folder as one full checkpoint file\n";

static const char *usage_run =
    "usage: weft run [options] PROGRAM [ARGS...]\n"
    "\n"
    "Run PROGRAM (a weft program using wf_fabric) as the ranks of one job.\n"
    "\n"
    "Options (also as --name=value):\n"
    "  --accelerator A    cpu, cuda, gpu or auto (default: cpu)\n"
    "  --strategy S       the Fabric strategy (ddp, fsdp, ...; default: the program's)\n"
    "  --devices D        cpu: a process count; cuda: a count, -1 for all or a list \"0,2\" (default: 1)\n"
    "  --num-nodes N      nodes in the job (default: 1)\n"
    "  --node-rank R      this node's rank (default: 0)\n"
    "  --main-address H   where rank 0 serves the store (default: 127.0.0.1)\n"
    "  --main-port P      its port (default: a free port on one node, 29400 on several)\n"
    "  --precision P      32-true, bf16-mixed, 16-mixed, ... (default: the program's)\n"
    "  --max-restarts N   when a rank fails, restart all ranks up to N times (default: 0)\n"
    "                     (they see WF_RESTART_COUNT; resume from a checkpoint)\n"
    "  -h, --help         this text\n"
    "\n"
    "The ranks see WF_ACCELERATOR, WF_STRATEGY, WF_DEVICES, WF_NUM_NODES, WF_PRECISION and\n"
    "WF_CLI_USED=1, and RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.\n"
    "The exit status is the first failing rank's (128+signal when it was killed).\n";

static bool parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

typedef struct cli {
    const char *accelerator, *strategy, *devices, *num_nodes, *node_rank, *main_address, *main_port, *precision,
        *max_restarts;
} cli;

/* `weft run`'s arguments, parsed and checked (the strings point into argv). */
typedef struct run_args {
    cli c;
    const char *kind;            /* "cpu" or "cuda" (auto resolved) */
    long nodes, node_rank, port; /* port 0: a free one */
    long restarts;               /* --max-restarts */
    int nprocs;                  /* processes on this node */
    int prog;                    /* argv index of PROGRAM */
    bool help;                   /* -h/--help: print the usage, run nothing */
} run_args;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *msg, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
    return 2;
}

/* The number of processes that devices names for the accelerator; -1 with a message. */
static int count_processes(const char *acc, const char *devices, int gpus, char *msg, size_t nmsg) {
    long n;
    if (!strcmp(acc, "cpu")) {
        if (!strcmp(devices, "auto")) return 1;
        if (!parse_long(devices, &n) || n < 1 || n > 1024) {
            fail(msg, nmsg, "--devices=%s: the cpu accelerator takes a process count >= 1", devices);
            return -1;
        }
        return (int)n;
    }
    if (!strcmp(devices, "auto") || !strcmp(devices, "-1")) {
        n = gpus;
    } else if (strchr(devices, ',')) {
        /* a list of device indices, "0,2": one process per index; each must exist, once
         * (each rank takes the device of its LOCAL_RANK, so "0,0" would start a rank on a
         * device that is not there) */
        bool seen[1024] = { false };
        n = 0;
        const char *p = devices;
        while (*p) {
            char *end;
            errno = 0;
            long idx = strtol(p, &end, 10);
            if (end == p || (*end && *end != ',') || idx < 0 || errno) {
                fail(msg, nmsg, "--devices=%s: expected a list of device indices such as 0,2", devices);
                return -1;
            }
            if (idx >= gpus) {
                fail(msg, nmsg, "--devices=%s: device %ld does not exist (%d CUDA device(s))", devices, idx, gpus);
                return -1;
            }
            if (idx < (long)(sizeof seen / sizeof seen[0])) {
                if (seen[idx]) {
                    fail(msg, nmsg, "--devices=%s: device %ld is listed twice", devices, idx);
                    return -1;
                }
                seen[idx] = true;
            }
            n++;
            p = *end ? end + 1 : end;
        }
    } else if (!parse_long(devices, &n) || n < 1) {
        fail(msg, nmsg, "--devices=%s: expected a count, -1 or a list such as 0,2", devices);
        return -1;
    } else if (n > gpus) {
        fail(msg, nmsg, "--devices=%s: only %d CUDA device(s) are available", devices, gpus);
        return -1;
    }
    if (n < 1) {
        fail(msg, nmsg, "--accelerator=%s --devices=%s: no CUDA device is available", acc, devices);
        return -1;
    }
    return (int)n;
}

/* Parse and check `weft run`'s arguments (argv after "run") on a machine with gpus CUDA
 * devices; nothing is started and nothing printed. 0 (a->help for -h/--help), or the exit
 * status 2 with the message in msg and *usage true when the usage text should follow it.
 * tests/fuzz/fuzz_weft_run.c calls this directly. */
static int parse_run(int argc, char **argv, int gpus, run_args *a, char *msg, size_t nmsg, bool *usage) {
    *a = (run_args){ .c = { "cpu", NULL, "1", "1", "0", "127.0.0.1", NULL, NULL, "0" } };
    *usage = true;
    cli *c = &a->c;
    struct { const char *name; const char **dst; } flags[] = {
        { "accelerator", &c->accelerator }, { "strategy", &c->strategy }, { "devices", &c->devices },
        { "num-nodes", &c->num_nodes },   { "node-rank", &c->node_rank }, { "main-address", &c->main_address },
        { "main-port", &c->main_port },   { "precision", &c->precision }, { "max-restarts", &c->max_restarts },
    };
    int i = 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            a->help = true;
            return 0;
        }
        if (!strcmp(arg, "--")) { i++; break; }
        if (strncmp(arg, "--", 2)) {
            if (arg[0] == '-') return fail(msg, nmsg, "unknown option %s", arg);
            break;   /* PROGRAM: the rest are its arguments */
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t k = 0;
        for (; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].name) == len && !strncmp(flags[k].name, name, len)) break;
        if (k == sizeof flags / sizeof flags[0]) return fail(msg, nmsg, "unknown option %s", arg);
        if (eq) *flags[k].dst = eq + 1;
        else if (i + 1 < argc) *flags[k].dst = argv[++i];
        else return fail(msg, nmsg, "option %s needs a value", arg);
        if (!**flags[k].dst) return fail(msg, nmsg, "option %s has an empty value", arg);
    }
    if (i >= argc) return fail(msg, nmsg, "missing PROGRAM");
    a->prog = i;

    /* the accelerator */
    char acc[16];
    snprintf(acc, sizeof acc, "%s", c->accelerator);
    for (char *p = acc; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (!strcmp(acc, "gpu")) snprintf(acc, sizeof acc, "cuda");
    if (strcmp(acc, "cpu") && strcmp(acc, "cuda") && strcmp(acc, "auto"))
        return fail(msg, nmsg, "--accelerator=%s: expected cpu, cuda, gpu or auto", c->accelerator);
    if (gpus < 0) gpus = 0;
    a->kind = !strcmp(acc, "cpu") || (!strcmp(acc, "auto") && gpus == 0) ? "cpu" : "cuda";

    if (!parse_long(c->num_nodes, &a->nodes) || a->nodes < 1 || a->nodes > 65536)
        return fail(msg, nmsg, "--num-nodes=%s: expected a count >= 1", c->num_nodes);
    if (!parse_long(c->node_rank, &a->node_rank) || a->node_rank < 0 || a->node_rank >= a->nodes)
        return fail(msg, nmsg, "--node-rank=%s: expected 0 <= rank < --num-nodes", c->node_rank);
    if (c->main_port && (!parse_long(c->main_port, &a->port) || a->port < 1 || a->port > 65535))
        return fail(msg, nmsg, "--main-port=%s: expected a TCP port 1..65535", c->main_port);
    if (!parse_long(c->max_restarts, &a->restarts) || a->restarts < 0 || a->restarts > 1000000)
        return fail(msg, nmsg, "--max-restarts=%s: expected a count 0..1000000", c->max_restarts);
    if (a->restarts && a->nodes > 1)
        return fail(msg, nmsg, "--max-restarts=%s: restarts need --num-nodes 1 (each node's launcher would restart "
                    "only its own ranks; restart multi-node jobs from the scheduler)", c->max_restarts);
    if (!c->main_port && a->nodes > 1) a->port = 29400;   /* Lightning's default, the same on every node */
    a->nprocs = count_processes(a->kind, c->devices, gpus, msg, nmsg);
    if (a->nprocs < 0) {
        *usage = false;
        return 2;
    }
    return 0;
}

static int cmd_run(int argc, char **argv) {
    run_args a;
    char msg[1024];
    bool usage;
    int gpus = wf_cuda_device_count();
    int rc = parse_run(argc, argv, gpus, &a, msg, sizeof msg, &usage);
    if (rc) {
        fprintf(stderr, "weft run: %s\n", msg);
        if (usage) fprintf(stderr, "\n%s", usage_run);
        return rc;
    }
    if (a.help) {
        fputs(usage_run, stdout);
        return 0;
    }
    cli c = a.c;
    char **prog = argv + a.prog;
    const char *kind = a.kind;
    (void)kind;   /* only the mpi launch path reads it */
    long nodes = a.nodes, node_rank = a.node_rank, port = a.port, restarts = a.restarts;
    int nprocs = a.nprocs;
    if (getenv("WF_LAUNCH_RANK") && *getenv("WF_LAUNCH_RANK")) {
        fprintf(stderr, "weft run: this process is already a rank of a weft launch; run the program itself\n");
        return 2;
    }

    /* the program must exist before anything starts */
    char path[4096];
    if (wf__launch_find_program(prog[0], path, sizeof path)) {
        fprintf(stderr, "weft run: %s\n", wf_error_message());
        return 127;
    }

    /* the settings, for the ranks (Fabric's connector reads them) */
    char nodes_s[32];
    snprintf(nodes_s, sizeof nodes_s, "%ld", nodes);
    setenv("WF_ACCELERATOR", c.accelerator, 1);
    setenv("WF_DEVICES", c.devices, 1);
    setenv("WF_NUM_NODES", nodes_s, 1);
    setenv("WF_CLI_USED", "1", 1);
    if (c.strategy) setenv("WF_STRATEGY", c.strategy, 1);
    if (c.precision) setenv("WF_PRECISION", c.precision, 1);

    long world = (long)nprocs * nodes;
    if (world == 1 && !restarts) {
        fflush(NULL);
        execv(path, prog);
        fprintf(stderr, "weft run: cannot run %s: %s\n", path, strerror(errno));
        return 127;
    }

    wf_launch_opts o = {0};
    o.nprocs = nprocs;
    o.num_nodes = (int)nodes;
    o.node_rank = (int)node_rank;
    o.main_address = c.main_address;
    o.main_port = (int)port;
    o.max_restarts = (int)restarts;
    bool mpi = false;
#ifdef WEFT_HAVE_MPI
    mpi = !strcmp(kind, "cpu") && world > 1;
#endif
    o.use_mpirun = mpi;
    char *report = NULL;
    if (mpi) {
        /* every rank under `weft __rank` (this program), so that its end is recorded */
        char self[4096];
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0) {
            fprintf(stderr, "weft run: cannot read /proc/self/exe: %s\n", strerror(errno));
            return 1;
        }
        self[len] = 0;
        int n = 0;
        while (prog[n]) n++;
        const char **args = calloc((size_t)n + 3, sizeof *args);
        if (!args) return 1;
        args[0] = self;
        args[1] = "__rank";
        args[2] = path;
        for (int k = 1; k < n; k++) args[2 + k] = prog[k];
        rc = wf_launch_processes(args, &o, &report);
        free(args);
    } else {
        prog[0] = path;
        rc = wf_launch_processes((const char *const *)prog, &o, &report);
    }
    if (rc < 0) {
        fprintf(stderr, "weft run: %s\n", wf_error_message());
        return 1;
    }
    if (report) {
        fprintf(stderr, "%s\n", report);
        free(report);
    }
    return rc;
}

#ifndef WEFT_CLI_NO_MAIN   /* tests/fuzz/fuzz_weft_run.c includes this file for parse_run */
int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "consolidate")) return weft_cmd_consolidate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "__rank")) {   /* internal: the per-rank supervisor under mpirun */
        if (argc < 3) {
            fprintf(stderr, "weft __rank: missing PROGRAM\n");
            return 2;
        }
        wf__launch_supervise_exec(argv + 2);
    }
    fprintf(stderr, "weft: unknown command \"%s\"\n\n%s", argv[1], usage_main);
    return 2;
}
#endif
