/* fabric/sharded_checkpoint_stub.c: the minimal (embedded) preset has no sharded checkpoints
 * (it has no sharded strategies either, and the code would take its library past its size
 * budget): each function says so by name. The index parser (fabric/sharded_index.c) goes too. */
#include "fabric/sharded_checkpoint.h"

#include "tensor/tensor_impl.h"

static int absent(const char *fn) {
    return wf__error(WF_ENOTSUP, "%s: sharded checkpoints are not in the minimal (embedded) build of weft", fn);
}

int wf__sharded_save(wf_process_group *pg, const char *dir, const wf__shard_entry *e, int n, const char *metadata_json) {
    (void)pg, (void)dir, (void)e, (void)n, (void)metadata_json;
    return absent("wf__sharded_save");
}

int wf__sharded_load(wf_process_group *pg, const char *dir, wf__shard_entry *e, int n, char **metadata_out) {
    (void)pg, (void)dir, (void)e, (void)n;
    if (metadata_out) *metadata_out = NULL;
    return absent("wf__sharded_load");
}

int wf__full_save(wf_process_group *pg, const char *path, const wf__shard_entry *e, int n, const char *metadata_json) {
    (void)pg, (void)path, (void)e, (void)n, (void)metadata_json;
    return absent("wf__full_save");
}

int wf__full_load_rows(wf_process_group *pg, const char *path, wf__shard_entry *e, int n) {
    (void)pg, (void)path, (void)e, (void)n;
    return absent("wf__full_load_rows");
}

int wf__sharded_consolidate(const char *dir, const char *out) {
    (void)dir, (void)out;
    return absent("wf__sharded_consolidate");
}
