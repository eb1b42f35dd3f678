/* tests/dist/launch_child.c: a rank for tests/dist/test_launch.c.
 *
 *     launch_child MODE [DIR]
 *
 * It calls wf_launch_rank_begin() first (as wf_fabric_launch does), learns its rank from
 * wf_cluster_detect, writes what it sees into DIR/rank<R> when DIR is given, then by MODE:
 *   ok        exit 0
 *   fail      rank 1 exits 3 after 0.2 s; the others sleep 60 s (the launcher must stop them)
 *   kill      rank 1 kills itself with SIGKILL after 0.2 s; the others sleep 60 s
 *   stubborn  like fail, but the others ignore SIGTERM (only SIGKILL stops them)
 *   sleep     every rank sleeps 60 s
 *   flaky     on the first start (WF_RESTART_COUNT 0) as fail; once restarted, exit 0
 *   self-MODE, mpi-self-MODE
 *             not launched yet: re-execute itself as 3 ranks with wf_launch_self (directly, or
 *             through mpirun), which exits with the job's status; the ranks then act by MODE */
#include "weft/dist.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void nap(double s) {
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts)) { }
}

int main(int argc, char **argv) {
    if (wf_launch_rank_begin()) return 100;
    const char *mode = argc > 1 ? argv[1] : "ok";
    bool via_mpi = !strncmp(mode, "mpi-self-", 9);
    if (via_mpi || !strncmp(mode, "self-", 5)) {
        if (!wf_launched()) {
            wf_launch_opts o = { .nprocs = 3, .use_mpirun = via_mpi };
            wf_launch_self(&o);
            fprintf(stderr, "launch_child: wf_launch_self returned: %s\n", wf_error_message());
            return 104;
        }
        mode += via_mpi ? 9 : 5;
    }
    wf_cluster_info ci;
    if (wf_cluster_detect(&ci)) {
        fprintf(stderr, "launch_child: %s\n", wf_error_message());
        return 101;
    }
    int rank = ci.global_rank;
    if (argc > 2) {
        char path[4096];
        snprintf(path, sizeof path, "%s/rank%d", argv[2], rank);
        FILE *f = fopen(path, "w");
        if (!f) return 102;
        const char *names[] = { "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "WF_LAUNCH_RANK",
                                "WF_DEVICES", "WF_ACCELERATOR", "WF_CLI_USED", "WF_TEST_EXTRA",
                                "OMPI_COMM_WORLD_RANK", "WF_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT",
                                "TORCHELASTIC_MAX_RESTARTS" };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const char *v = getenv(names[i]);
            fprintf(f, "%s=%s\n", names[i], v ? v : "(unset)");
        }
        fprintf(f, "detect=%s %d %d %d %d %d\n", ci.env_name, ci.world_size, ci.global_rank, ci.local_rank,
                ci.node_rank, ci.main_port);
        fclose(f);
    }
    if (!strcmp(mode, "flaky")) {
        const char *rc = getenv("WF_RESTART_COUNT");
        if (rc && strcmp(rc, "0")) return 0;
        mode = "fail";
    }
    if (!strcmp(mode, "ok")) return 0;
    if (!strcmp(mode, "stubborn")) signal(SIGTERM, SIG_IGN);
    if (rank == 1 && strcmp(mode, "sleep")) {
        nap(0.2);
        if (!strcmp(mode, "kill")) raise(SIGKILL);
        return 3;
    }
    nap(60);
    return 0;
}
