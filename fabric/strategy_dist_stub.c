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
void wf__zero_counters_get(const wf_strategy *s, wf__zero_counters *out) { (void)s; *out = (wf__zero_counters){ 0 }; }

void wf__fsdp_counters_get(const wf_strategy *s, wf__fsdp_counters *out) { (void)s; *out = (wf__fsdp_counters){ 0 }; }

/* Checkpoints of a sharded state and checkpoint folders (fabric/fsdp_checkpoint.c): no FSDP
 * here, and a folder is refused by name. */
#include "fabric/fsdp_checkpoint.h"

#include <sys/stat.h>

int wf__fsdp_checkpoint_save(wf_strategy *s, const char *path, const wf__ckpt_item *it, int n,
                             const char *metadata_json, bool full) {
    (void)it, (void)n, (void)metadata_json, (void)full, (void)path;
    return no_dist(s);
}
bool wf__checkpoint_is_folder(const char *path) {
    struct stat st;
    return path && !stat(path, &st) && S_ISDIR(st.st_mode);
}
int wf__checkpoint_folder_read(wf_strategy *s, const char *dir, const wf__ckpt_item *want, int n, bool strict,
                               wf__folder_read *out) {
    (void)s, (void)want, (void)n, (void)strict;
    *out = (wf__folder_read){ 0 };
    return wf__error(WF_ENOTSUP, "wf_fabric_load: %s is a folder (a sharded checkpoint?): checkpoint folders are not "
                     "in the minimal (embedded) build of weft; consolidate it into one file with a full build "
                     "(`weft consolidate`)", dir);
}
void wf__folder_read_free(wf__folder_read *r) {
    if (r) wf_state_dict_free(r->tensors), wf__free(r->metadata, 0), *r = (wf__folder_read){ 0 };
}
int wf__fsdp_module_load_rows(wf_strategy *s, const char *path, const char *const *names, int n, wf_module *m,
                              const char *prefix, bool strict) {
    (void)path, (void)names, (void)n, (void)m, (void)prefix, (void)strict;
    return no_dist(s);
}
wf_optim_state *wf__optimizer_state_light(wf_optimizer *o) { return wf_optimizer_state_dict(o); }
