/* io/safetensors_impl.h (internal): the pieces of io/safetensors.c that the streaming writer
 * (io/st_stream_writer.c) and the sharded checkpoints (fabric/sharded_checkpoint.c) share
 * with it, so that there is one header layout and one reader, not copies.
 *
 * Layout: the header of a weft-written file is laid out from the tensors' names, dtypes and
 * shapes alone (metadata first, one 8-digit CRC placeholder per tensor, the weft mark, the
 * header's own checksum last; data ordered by element size, largest first, so every tensor
 * is aligned). Its length is therefore known before any data exists: a writer can stream
 * the data and fill the CRCs in at the end. */
#ifndef WEFT_IO_SAFETENSORS_IMPL_H
#define WEFT_IO_SAFETENSORS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/json.h"
#include "weft/io.h"

/* wf_st_open on a file's bytes already in memory: the same header parser, checks and tensor
 * reads (they all get their bytes through one function, which reads from memory here instead
 * of pread), without a file, for the fuzz targets. data is borrowed and must outlive the
 * returned file (wf_st_close); name stands for the path in messages. NULL + error as
 * wf_st_open (WF_ENULL for a NULL data or name). */
wf_st_file *wf__st_open_memory(const void *data, size_t size, const char *name);

/* The safetensors name of a weft dtype ("F32"...), NULL for one that cannot be stored. */
const char *wf__st_dtype_name(wf_dtype dt);
/* The weft dtype stored under a safetensors name, only where the bytes are weft's own
 * (F64 F32 F16 BF16 I64 I32 U8 BOOL); WF_DTYPE_DEFAULT otherwise. */
wf_dtype wf__st_dtype_parse(const char *name);

typedef struct wf__st_tensor_desc {
    const char *name;       /* borrowed */
    wf_dtype dtype;         /* one wf__st_dtype_name knows */
    int ndim;
    const int64_t *shape;   /* borrowed, ndim entries */
} wf__st_tensor_desc;

typedef struct wf__st_layout {
    wf_sb hdr;              /* the header text, padded to 8 bytes with the length field */
    int n;
    int *order;             /* slot k of the data section holds tensor order[k] */
    int *slot;              /* tensor i sits in slot slot[i] */
    uint64_t *offs;         /* n + 1 offsets by slot, relative to the data section */
    size_t *crc_pos;        /* by slot: where its 8 CRC digits sit in hdr */
    size_t hcrc_pos;        /* where the header checksum's digits sit */
    unsigned char lenb[8];  /* the little-endian header length */
} wf__st_layout;

/* Lay out the header for n tensors and nm metadata entries (names, keys and values were
 * checked by the caller). op and path name the failure (WF_ENOMEM, WF_EINVAL: data too
 * large). On failure L holds nothing to free. */
int wf__st_layout_build(wf__st_layout *L, const wf__st_tensor_desc *t, int n, const char *const *mkeys,
                        const char *const *mvals, int nm, const char *op, const char *path);
/* The CRC of the tensor in slot k, then (after all of them) the header's own checksum. */
void wf__st_layout_set_crc(wf__st_layout *L, int k, uint32_t crc);
void wf__st_layout_seal(wf__st_layout *L);
void wf__st_layout_free(wf__st_layout *L);

/* Is tensor i stored in one of weft's own dtypes (its bytes load unchanged)? */
bool wf__st_is_native(const wf_st_file *f, int i);
/* Bytes [begin, end) of tensor i's data into dst (little-endian file order, swapped to the
 * host's on big-endian hosts; bool bytes normalised to 0/1). With verify, the whole tensor
 * is read, 1 MiB at a time, and its CRC checked (when the file has one) before returning,
 * whatever range is asked for; dst may then be NULL (a check only). Without verify only
 * the range is read. begin and end must be whole elements inside the tensor. Returns 0,
 * WF_ECORRUPT (CRC mismatch naming the tensor and file), WF_EIO, WF_EINVAL, WF_ENOMEM. */
int wf__st_read_range(wf_st_file *f, int i, uint64_t begin, uint64_t end, void *dst, bool verify, const char *op);
/* The file's path as it was opened (borrowed). */
const char *wf__st_path(const wf_st_file *f);

#endif
