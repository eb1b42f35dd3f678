/* fabric/strategy_dist_stub.c: the multi-process strategies in the minimal (embedded) preset,
 * which runs one process: it has no process launcher and no MPI or NCCL backend, so DDP and
 * FSDP (and ZeRO) can never have a second rank there and their code would only cost size (the preset's
 * library must stay under 1 MB). Every name still resolves as in a full build, and one process
 * runs the single-device strategy (strategy.c); were several ranks ever met, setting up the
 * environment fails, naming the preset. The options are checked as in a full build
 * (strategy_options.c). */
#include "fabric/fabric_impl.h"

static int no_dist(wf_strategy *s) {
    return wf__error(WF_ENOTSUP, "wf_fabric_launch: the \"%s\" strategy needs several processes, and the minimal "
                     "build of weft runs one (no launcher, no MPI or NCCL); use a full build",
                     s->desc ? s->desc->name : "ddp");
}

const wf_strategy_ops wf__ddp_ops = { .setup_environment = no_dist };
const wf_strategy_ops wf__fsdp_ops = { .setup_environment = no_dist };
const wf_strategy_ops wf__zero_ops = { .setup_environment = no_dist };
const wf_strategy_ops wf__zero3_ops = { .setup_environment = no_dist };
bool wf__zero_active(const wf_strategy *s) { (void)s; return false; }
void wf__zero_counters_get(const wf_strategy *s, wf__zero_counters *out) { (void)s; *out = (wf__zero_counters){ 0 }; }

bool wf__fsdp_active(const wf_strategy *s) { (void)s; return false; }
void wf__fsdp_counters_get(const wf_strategy *s, wf__fsdp_counters *out) { (void)s; *out = (wf__fsdp_counters){ 0 }; }
int wf__fsdp_summon(wf_strategy *s, wf_module *m, bool gather) { (void)s; (void)m; (void)gather; return 0; }
int wf__fsdp_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out, bool *sharded) {
    (void)s; (void)t; (void)local;
    *out = NULL;
    *sharded = false;
    return 0;
}
int wf__fsdp_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows, bool *sharded) {
    (void)s; (void)t; (void)full;
    *rows = NULL;
    *sharded = false;
    return 0;
}
