/* dist/launch_stub.c: the process launcher of the minimal (embedded) build, which has none.
 * Starting, supervising and restarting processes takes fork, exec, mpirun and a status
 * directory that a tool near firmware does not have, and leaving launch.c and
 * launch_supervise.c out keeps the stripped static library under 1 MB (tests/embedded).
 * Every entry point says so by name; a process started some other way (torchrun, SLURM,
 * mpirun) still finds its cluster environment. */
#include "dist/launch_impl.h"
#include "tensor/tensor_impl.h"

#include <stdio.h>
#include <stdlib.h>

#define NO_LAUNCHER "this weft was built with -Dminimal=true, which has no process launcher"

int wf_launch_processes(const char *const *argv, const wf_launch_opts *o, char **report) {
    (void)argv, (void)o;
    if (report) *report = NULL;
    return wf__error(WF_ENOTSUP, "wf_launch_processes: " NO_LAUNCHER);
}

int wf_launch_self(const wf_launch_opts *o) {
    (void)o;
    return wf__error(WF_ENOTSUP, "wf_launch_self: " NO_LAUNCHER);
}

/* nothing started this rank through weft's launcher: nothing to supervise */
int wf_launch_rank_begin(void) { return 0; }

int wf__launch_find_program(const char *name, char *path, size_t n) {
    (void)name, (void)path, (void)n;
    return wf__error(WF_ENOTSUP, "weft run: " NO_LAUNCHER);
}

_Noreturn void wf__launch_supervise_exec(char *const *argv) {
    (void)argv;
    fprintf(stderr, "weft __rank: " NO_LAUNCHER "\n");
    exit(127);
}
