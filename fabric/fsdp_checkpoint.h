/* fabric/fsdp_checkpoint.h: Fabric's checkpoints of an FSDP-sharded state, and checkpoint
 * folders read by any strategy (fabric/fsdp_checkpoint.c). Not installed.
 *
 * fabric/checkpoint.c keeps the format (names, kinds, the non-tensor state as JSON) and
 * hands over the tensors: a save gives the entries holding tensors (modules, optimizers,
 * tensors) and the metadata JSON object; this file turns them into shard entries
 * (fsdp_entries.h) and writes them with fabric/sharded_checkpoint.c, in the right group. A
 * folder load reads the folder into place (an FSDP module's shards) or into full tensors
 * (everything else: the rows of this rank for an FSDP optimizer's state), and checkpoint.c
 * restores from those as from a file.
 *
 * The minimal preset has neither FSDP nor folders: fabric/strategy_dist_stub.c says so. */
#ifndef WEFT_FABRIC_FSDP_CHECKPOINT_H
#define WEFT_FABRIC_FSDP_CHECKPOINT_H

#include "fabric/fabric_impl.h"

/* One entry of a Fabric state holding tensors (borrowed). */
typedef struct wf__ckpt_item {
    const char *name;
    wf_state_kind kind;            /* MODULE, OPTIMIZER, TENSOR or TENSORS */
    wf_module *m;
    wf_optimizer *o;
    wf_tensor *t;
    const wf_state_dict *sd;       /* TENSORS: a load's remainder, saved again */
} wf__ckpt_item;

/* Save items under FSDP: full = one file gathered to rank 0 piece by piece (wf__full_save),
 * else the folder path (wf__sharded_save). metadata_json: the JSON object of the non-tensor
 * state (fabric/checkpoint.c's metadata entries, "weft/entries" included). HYBRID_SHARD: the
 * first replica's shard group writes; every rank returns its result. Collective. */
int wf__fsdp_checkpoint_save(wf_strategy *s, const char *path, const wf__ckpt_item *it, int n,
                             const char *metadata_json, bool full);

/* o's state dict without its per-parameter tensors: the param_groups JSON and the "step"
 * scalars (wf_optimizer_state_dict would copy every state tensor). NULL + error. */
wf_optim_state *wf__optimizer_state_light(wf_optimizer *o);

/* What a folder load produced: every tensor not loaded in place, by its checkpoint name
 * (owned), and the metadata object's text (owned, wf__free(p, 0)). */
typedef struct wf__folder_read {
    wf_state_dict *tensors;
    char *metadata;
    bool modules_in_place;         /* FSDP: the requested modules' shards are already loaded */
} wf__folder_read;

/* true when path is a checkpoint folder (a directory holding index.json). */
bool wf__checkpoint_is_folder(const char *path);
/* Read the folder dir at any world size: under FSDP, the requested modules (want[], kind
 * MODULE) straight into their shards, and the requested optimizers' sharded state as this
 * rank's rows; every other tensor whole. strict: a requested module's tensor missing from the
 * folder, or one in the folder it does not have, is an error. Collective over the strategy's
 * ranks; on failure out is empty and nothing was written. */
int wf__checkpoint_folder_read(wf_strategy *s, const char *dir, const wf__ckpt_item *want, int n, bool strict,
                               wf__folder_read *out);
void wf__folder_read_free(wf__folder_read *r);

/* Under FSDP: the set-up module m's rows from the full checkpoint file path (its tensors
 * "<prefix>/<name>", prefix NULL: "<name>"), every rank reading only its rows
 * (wf__full_load_rows): the full model is never in memory. names: the file's tensor names
 * (n of them), for the strict check. Collective. */
int wf__fsdp_module_load_rows(wf_strategy *s, const char *path, const char *const *names, int n, wf_module *m,
                              const char *prefix, bool strict);

#endif
