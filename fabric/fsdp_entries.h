/* fabric/fsdp_entries.h: an FSDP-sharded state as wf__shard_entry lists, for the sharded
 * checkpoint code (fabric/sharded_checkpoint.c), which writes and reads them at any world size
 * without knowing what a module or an optimizer is. Not installed.
 *
 * Names are the normal checkpoint's (fabric/checkpoint.c): "<prefix>/<param or buffer>" for a
 * module, "<prefix>/state/<i>/<key>" for an optimizer. Each entry's local tensor is the live
 * tensor (a parameter's shard, a buffer, an optimizer state tensor), so a load writes into it
 * in place. An optimizer's "step" is a number, not a tensor, and is not listed: it is the same
 * on every rank (take it from wf_optimizer_state_dict, as "state/<i>/step"). */
#ifndef WEFT_FABRIC_FSDP_ENTRIES_H
#define WEFT_FABRIC_FSDP_ENTRIES_H

#include "fabric/fabric_impl.h"
#include "fabric/shard_spec.h"

typedef struct wf__shard_list {
    wf__shard_entry *v;               /* owned; the names too (entries borrow them from names) */
    char **names;
    int n;
} wf__shard_list;

/* m's parameters (sharded when FSDP shards them, else replicated) and persistent buffers
 * (replicated). m must be set up with the Fabric whose strategy is s. 0 or a code; on
 * failure *out is empty. */
int wf__fsdp_module_entries(wf_strategy *s, wf_module *m, const char *prefix, wf__shard_list *out);
/* o's per-parameter state tensors: sharded like their parameter's shard. */
int wf__fsdp_optimizer_entries(wf_strategy *s, wf_optimizer *o, const char *prefix, wf__shard_list *out);
void wf__shard_list_free(wf__shard_list *l);
/* Building such lists (strategy_fsdp.c; FSDP and ZeRO 1/2 differ only in the place callback):
 * each entry starts as its tensor replicated (local: the module's parameter or buffer, or the
 * optimizer state tensor; global NULL: the local shape) and place, called for a parameter's
 * entries, may make it sharded (a module entry may also take another local tensor). */
typedef struct wf__shard_place {
    wf_tensor *local;
    const wf_tensor *global;          /* whose shape is the global one; NULL: local's */
    int64_t row_start;
    bool sharded;
} wf__shard_place;
typedef void (*wf__shard_place_fn)(void *ud, wf_tensor *param, bool optimizer_state, wf__shard_place *pl);
/* m's state-dict entries ("prefix/name"); o's per-parameter state ("prefix/state/<i>/<key>").
 * 0 or a code; on failure *out is empty. */
int wf__shard_list_module(wf_module *m, const char *prefix, wf__shard_place_fn place, void *ud, wf__shard_list *out);
int wf__shard_list_optimizer(wf_optimizer *o, const char *prefix, wf__shard_place_fn place, void *ud,
                             wf__shard_list *out);
/* The same for ZeRO stages 1/2 (zero_state.c; the two above forward to them): module
 * tensors replicated, optimizer state as its master's rows. */
int wf__zero_module_entries(wf_strategy *s, wf_module *m, const char *prefix, wf__shard_list *out);
int wf__zero_optimizer_entries(wf_strategy *s, wf_optimizer *o, const char *prefix, wf__shard_list *out);
/* The rows this rank holds of t (a set-up module's parameter or its shard) and t's dim 0:
 * false when FSDP does not shard t (a 0-dim parameter, another strategy). */
bool wf__fsdp_param_rows(wf_strategy *s, const wf_tensor *t, int64_t *start, int64_t *count, int64_t *rows);
/* The group a sharded state is saved through (borrowed): the shard group, whose ranks hold
 * every row once. *writer: this rank saves (under HYBRID_SHARD only the first replica's shard
 * group does; the other replicas hold the same rows). */
wf_process_group *wf__fsdp_save_group(wf_strategy *s, bool *writer);

#endif
