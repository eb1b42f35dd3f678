/* fabric/sharded_checkpoint.h (internal): checkpoints of a sharded state (fabric/shard_spec.h),
 * saved at any world size and loaded at any other.
 *
 * Sharded: a folder DIR holding rank-<k>-of-<N>.safetensors (rank k's rows of every tensor,
 * each a weft safetensors file with its CRCs, written by that rank in parallel) and
 * index.json (written by group rank 0 once every rank reported success):
 *   {"format":"weft-sharded-1","world_size":N,
 *    "files":[{"name":"rank-0-of-N.safetensors","header_crc32":"xxxxxxxx"},...],
 *    "tensors":{"model/w":{"dtype":"F32","shape":[10,4],"replicated":false,
 *                          "pieces":[[0,0,5],[1,5,10]]},...},     (file, first row, end row)
 *    "metadata":{...the caller's JSON object...},
 *    "index_crc32":"xxxxxxxx"}
 * The index ends with exactly `"index_crc32":"xxxxxxxx"}` and a newline; the CRC-32 covers
 * every byte before `"index_crc32"`. The pieces of a tensor tile its rows [0, rows) (a 0-d
 * tensor has one row); a replicated tensor is one piece, in rank 0's file. Each file's
 * header checksum (weft/io.h) is recorded, so a rank file from another save is refused.
 *
 * Atomicity: a save writes into DIR.tmp, and rank 0 swaps it with DIR (renameat2
 * RENAME_EXCHANGE, one atomic step) only after every rank's file and the index are on disk;
 * the old folder is then removed. So DIR is always the previous complete checkpoint or the
 * new one: writing the index last into DIR itself would not do, since the rank files it
 * replaces would already be gone. All ranks must see DIR through one shared file system.
 *
 * Full: one ordinary weft checkpoint file (fabric/checkpoint.c's format: tensors under their
 * names, metadata "weft/format" = "weft-checkpoint-1" and "weft/entries"), gathered to
 * group rank 0 one piece of one tensor at a time and streamed to disk
 * (io/st_stream_writer.h), so rank 0 never holds more than its shards plus one piece.
 *
 * Metadata: metadata_json is a JSON object (NULL = {}) of non-tensor state; the sharded
 * index keeps it as it is, a full file turns each member into one metadata entry holding
 * its compact JSON text (a string quoted), which is how fabric/checkpoint.c stores an int, a
 * string, param_groups or a scheduler's state. "weft/entries" (fabric/checkpoint.c's
 * entry kinds) is derived from the tensor names when the object has none: "<p>/..." is a
 * module, or an optimizer when "<p>/param_groups" is a member; a name without '/' a tensor.
 * Only group rank 0's metadata_json is used; other ranks may pass NULL.
 *
 * Every function is collective over pg (NULL, or a group of one: a single process), must be
 * called by every member with the same entries in the same order, and agrees on the
 * outcome: a failure on any rank is the same error on every rank, naming the rank and the
 * file. A process outside pg (rank -1) gets WF_EINVAL. */
#ifndef WEFT_FABRIC_SHARDED_CHECKPOINT_H
#define WEFT_FABRIC_SHARDED_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fabric/shard_spec.h"
#include "io/json.h"
#include "weft/dist.h"

#define WF__SHARDED_FORMAT "weft-sharded-1"
/* How deeply metadata_json may nest (the JSON parser's default bound, less the index's level). */
#define WF__SHARDED_METADATA_DEPTH 63

/* Save e[0..n) (this rank's rows) into the folder dir. Returns 0 or a code. */
int wf__sharded_save(wf_process_group *pg, const char *dir, const wf__shard_entry *e, int n, const char *metadata_json);
/* Fill every e[i].local with its rows from the folder, whatever world size saved it: the
 * rows come straight from the rank files that hold them (no data moves between ranks), each
 * piece's CRC checked before any tensor is written. The index must hold every entry with
 * e[i]'s dtype and global shape. *metadata_out (may be NULL) receives the metadata JSON
 * text, owned by the caller (wf__free(p, strlen(p) + 1)). Returns 0 or a code:
 * WF_ENOTFOUND (a tensor is not in the checkpoint), WF_EDTYPE, WF_ESHAPE, WF_ECORRUPT (a
 * damaged or mismatched file or index), WF_EIO (a missing file), WF_ENOTSUP (a newer format). */
int wf__sharded_load(wf_process_group *pg, const char *dir, wf__shard_entry *e, int n, char **metadata_out);
/* Save e[0..n) as one full checkpoint file at path (written by group rank 0). */
int wf__full_save(wf_process_group *pg, const char *path, const wf__shard_entry *e, int n, const char *metadata_json);
/* Fill every e[i].local with its rows of the tensor of the same name in the full
 * safetensors file at path (a weft checkpoint or any safetensors file: load_raw). Each rank
 * copies only its rows; a tensor with a CRC is read whole once to check it first. */
int wf__full_load_rows(wf_process_group *pg, const char *path, wf__shard_entry *e, int n);
/* One process: the sharded folder dir as one full checkpoint file at out (not replaced if it
 * exists: WF_EINVAL), piece by piece (`weft consolidate`). Returns 0 or a code. */
int wf__sharded_consolidate(const char *dir, const char *out);

/* ---------------------------------------------------------------- the index, parsed */

typedef struct wf__sharded_piece {
    int file;                 /* the rank whose file holds it */
    int64_t row_begin, row_end;
} wf__sharded_piece;

typedef struct wf__sharded_tensor {
    const char *name;         /* borrowed from the index's DOM */
    wf_dtype dtype;
    int ndim;
    int64_t shape[WF_MAX_DIMS];
    bool replicated;
    int npieces;
    wf__sharded_piece *pieces;   /* sorted by row_begin, tiling [0, rows) */
} wf__sharded_tensor;

typedef struct wf__sharded_index {
    int world_size;
    uint32_t *file_crc;       /* world_size header checksums */
    int ntensors;
    wf__sharded_tensor *t;    /* in the index's order */
    int *by_name;             /* tensor indices sorted by name */
    const wf_json *metadata;  /* an object */
    wf_json *dom;
    size_t npieces_total;
} wf__sharded_index;

/* Parse and check an index (len bytes, not NUL-terminated; path names it in messages):
 * checksum first, then the JSON and every field (format, world size 1..1048576, file names
 * and checksums, dtypes, shapes, pieces tiling each tensor's rows, no duplicate names, a
 * metadata object). 0 and *out (wf__sharded_index_free), or WF_ECORRUPT / WF_ENOTSUP /
 * WF_ENOMEM with a message naming path and the problem. */
int wf__sharded_index_parse(const char *text, size_t len, const char *path, wf__sharded_index **out);
void wf__sharded_index_free(wf__sharded_index *ix);
/* Read and parse DIR/index.json (as wf__sharded_load does): 0 and *ix, or a code. */
int wf__sharded_index_load(const char *dir, wf__sharded_index **ix);
/* The index of the tensor named name, or -1. */
int wf__sharded_index_find(const wf__sharded_index *ix, const char *name);

#endif
