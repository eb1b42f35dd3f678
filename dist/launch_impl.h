/* dist/launch_impl.h: the launcher's private pieces, shared by dist/launch*.c, dist/cluster_env.c
 * and the `weft` program (fabric/cli/weft.c). Not installed.
 *
 * Environment variables of weft's launcher (besides those dist.h's cluster environments read):
 *  WF_LAUNCH_STATUS_DIR  mpirun mode: a private directory where each rank's supervisor records
 *                        "<rank> exit <status> <monotonic s>" or "<rank> signal <n> <monotonic s>"
 *                        in rank<r>.status when the rank ends, and "<supervisor pid> <rank pid>"
 *                        in rank<r>.pid when it starts; the launcher polls it.
 *  WF_LAUNCH_SUPERVISED  set to 1 in a rank that already has its supervisor (`weft __rank`, or
 *                        wf_launch_rank_begin ran once), so that it is not supervised twice. */
#ifndef WEFT_DIST_LAUNCH_IMPL_H
#define WEFT_DIST_LAUNCH_IMPL_H

#include "weft/dist.h"

#include <stddef.h>

#define WF__LAUNCH_STATUS_DIR "WF_LAUNCH_STATUS_DIR"
#define WF__LAUNCH_SUPERVISED "WF_LAUNCH_SUPERVISED"

/* Resolve a program name as execvp would (a name with '/' is taken as a path, else PATH is
 * searched) into path (n bytes). 0, or WF_ENOTFOUND naming the program. */
int wf__launch_find_program(const char *name, char *path, size_t n);

/* `weft __rank PROGRAM ARGS`: fork, run argv in the child (which dies with its supervisor),
 * forward SIGTERM/SIGINT/SIGHUP to it, record its end in WF_LAUNCH_STATUS_DIR (when set) and
 * exit the way it did. Does not return. */
_Noreturn void wf__launch_supervise_exec(char *const *argv);

/* SLURM_NODELIST forms ("node[1-3,5],gpu07"): the first host and the host count. 0 or WF_EINVAL. */
int wf__slurm_nodelist(const char *list, char *first, size_t first_n, int *count);

#endif
