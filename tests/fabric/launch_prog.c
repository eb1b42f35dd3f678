/* tests/fabric/launch_prog.c: a small Fabric program for the launcher tests.
 *   launch_prog MODE DIR
 * MODE "ok": wf_fabric_launch(fn) with 2 CPU devices from a plain process; fn all-reduces
 * rank+1 and writes DIR/rank<r> holding the sum. "fail1": as ok, but rank 1 returns 3.
 * "cli": no launch (the processes come from `weft run`); the same all-reduce. */
#include <stdio.h>
#include <string.h>

#include "weft/weft.h"

typedef struct args { const char *mode, *dir; } args;

static int body(wf_fabric *fab, void *ud) {
    args *a = ud;
    int rank = wf_fabric_global_rank(fab);
    double sum = -1;
    WF_SCOPE {
        wf_tensor *t = wf_fabric_all_reduce(fab, wf_full(WF_SHAPE(1), rank + 1, WF_F64), WF_FABRIC_SUM);
        if (t) wf_to_array(t, &sum, WF_F64);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/rank%d", a->dir, rank);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "%g %d %s\n", sum, wf_fabric_world_size(fab), wf_fabric_strategy_name(fab));
    fclose(f);
    if (!strcmp(a->mode, "fail1") && rank == 1) return 3;
    return sum > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: launch_prog ok|fail1|cli DIR\n"); return 2; }
    args a = { argv[1], argv[2] };
    bool cli = !strcmp(a.mode, "cli");
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = cli ? NULL : "cpu", .devices = cli ? NULL : "2",
                                                        .quiet = true });
    if (!fab) { fprintf(stderr, "launch_prog: %s\n", wf_error_message()); return 1; }
    int rc = cli ? body(fab, &a) : wf_fabric_launch(fab, body, &a);
    if (rc < 0) fprintf(stderr, "launch_prog: %s\n", wf_error_message());
    wf_fabric_free(fab);
    return rc < 0 ? 1 : rc;
}
