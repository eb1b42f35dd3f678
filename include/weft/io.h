/* weft/io.h: checksums, IDX (MNIST) files and safetensors files.
 *
 * Every reader treats its file as hostile: sizes and offsets are checked against the real
 * file before anything is allocated, and a malformed file is an error (WF_ECORRUPT with a
 * message naming the file and the problem), never a crash. A file that cannot be opened,
 * read or written is WF_EIO (the message names the path and the system's reason).
 * Errors follow weft/tensor.h: NULL or a negative code, and wf_error()/wf_error_message().
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- checksums */

/* CRC-32 as zlib computes it (polynomial 0xEDB88320, reflected, inverted). Start with
 * crc = 0 and pass the previous result to continue over more bytes. p may be NULL when
 * n is 0. wf_crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t wf_crc32(uint32_t crc, const void *p, size_t n);
/* CRC-32C (Castagnoli, 0x82F63B78), same conventions. wf_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t wf_crc32c(uint32_t crc, const void *p, size_t n);
/* The masked CRC-32C that TFRecord/TensorBoard event files store. */
static inline uint32_t wf_crc32c_mask(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---------------------------------------------------------------- IDX (MNIST) */

/* Read an IDX file (magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32 dims, then the
 * big-endian data), plain or gzip-compressed (recognised by its content, not its name;
 * gzip needs a build with zlib, else WF_ENOTSUP). Returns a new contiguous CPU tensor
 * with the file's shape, owned per tensor.h (the current scope, or the caller):
 *   0x08 unsigned byte -> WF_U8      0x09 signed byte -> WF_I32     0x0B short -> WF_I32
 *   0x0C int           -> WF_I32     0x0D float       -> WF_F32     0x0E double -> WF_F64
 * Fails with NULL and: WF_EIO (cannot open/read: names path and strerror), WF_ECORRUPT
 * (bad magic, unknown type code, ndim 0 or > 8, dims whose byte size overflows or does not
 * match the data, truncated data, trailing bytes, damaged gzip stream; data beyond 2 GiB
 * decompressed), WF_ENOTSUP (gzip without zlib), WF_ENOMEM.
 * The data is read (or inflated) straight into the tensor, chunk by chunk: no second copy.
 * A load that takes more than a second shows a progress line on stderr. */
wf_tensor *wf_idx_load(const char *path);

/* ---------------------------------------------------------------- safetensors
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the raw little-endian row-major data (offsets relative to the end of the header).
 * dtypes written: F64 F32 F16 BF16 I64 I32 U8 BOOL. weft adds metadata entries that other
 * readers see as ordinary strings and weft's reader verifies:
 *   "crc32/<name>"      = 8 lowercase hex digits, zlib CRC-32 of the tensor's bytes, per tensor;
 *   "weft/safetensors"  = "2", the mark of a weft-written file with these checks;
 *   "weft/header_crc32" = 8 hex digits, CRC-32 of the 8 length bytes and the header, with
 *                         these 8 digits read as "00000000"; written exactly as
 *                         "weft/header_crc32":"xxxxxxxx" (no spaces), the last metadata entry.
 * The tensors tile the data section (no gaps, no trailing bytes), so every byte of the file
 * is under a checksum. A file carrying either weft/ entry is weft-written: its header
 * checksum must verify, every tensor must have a checksum, every checksum must name a
 * tensor, and the data must be tiled, or wf_st_open refuses it (WF_ECORRUPT naming the
 * tensor or "the header"). Files without them (other writers, weft before this mark) load
 * with the checks they carry. CRCs catch accidents (bit rot, truncation, bad copies), not
 * an adversary, who can recompute them. */

typedef struct wf_st_writer wf_st_writer;
typedef struct wf_st_file wf_st_file;

/* A new, empty writer (caller frees with wf_st_writer_free). NULL + WF_ENOMEM on failure. */
wf_st_writer *wf_st_writer_new(void);
/* Add tensor t (any device, dtype, strides) under name. The writer keeps a reference to t
 * (wf_tensor_retain) until wf_st_writer_free; the values written are those t holds when
 * wf_st_writer_save runs. name must be non-empty UTF-8, not "__metadata__" and not already
 * added. Returns 0, WF_ENULL, WF_EINVAL (bad or duplicate name), WF_ENOTSUP (meta device),
 * WF_ENOMEM. */
int wf_st_writer_add(wf_st_writer *w, const char *name, wf_tensor *t);
/* Set a __metadata__ string entry (both copied; setting a key again replaces its value).
 * Keys starting with "crc32/", "weft/safetensors" and "weft/header_crc32" are reserved. Both must be UTF-8. Returns 0, WF_ENULL,
 * WF_EINVAL, WF_ENOMEM. */
int wf_st_writer_set_metadata(wf_st_writer *w, const char *key, const char *value);
/* Write the file atomically: the bytes go to "<path>.tmp" (one name per target, locked while
 * in use: a second save to the same path at the same time fails with WF_EIO; a save killed
 * at any moment leaves at most that one file, which the next save to path reuses), which
 * is fsynced and renamed over path; then the directory is fsynced. On any failure (a full
 * disk, RLIMIT_FSIZE: no SIGXFSZ reaches the process, short writes are retried) the
 * temporary file is removed and an existing file at path is left untouched. Data is ordered by element
 * size (largest first) so every tensor is naturally aligned; the header is padded with
 * spaces to a multiple of 8. The writer can be saved again afterwards. Returns 0, WF_ENULL,
 * WF_EIO (names the path and the reason), WF_ENOMEM, or a device copy's error. */
int wf_st_writer_save(wf_st_writer *w, const char *path);
/* Release the writer and its tensor references. NULL is fine. */
void wf_st_writer_free(wf_st_writer *w);

/* Open a safetensors file and validate its header: the header length (refused above
 * 100 MB or beyond the file before anything is allocated), the JSON, every entry (known
 * dtype, non-negative dims whose product times the element size equals end - begin,
 * offsets inside the data section, no two tensors overlapping, no duplicate names), the
 * metadata (string values; crc32/ entries are 8 hex digits), and for a weft-written file
 * the header checksum and the checks' coverage (see above). Tensors may appear in any
 * order. The file stays open until wf_st_close (caller owns the handle).
 * NULL + WF_EIO (cannot open/read), WF_ECORRUPT (message names path and problem),
 * WF_ENOMEM, WF_ENULL. */
wf_st_file *wf_st_open(const char *path);
/* Number of tensors (0 for NULL). */
int wf_st_count(const wf_st_file *f);
/* Name of tensor i in header order (borrowed, valid until wf_st_close); NULL if out of range. */
const char *wf_st_name(const wf_st_file *f, int i);
/* Index of the tensor named name, or WF_ENOTFOUND (records no error: a lookup). */
int wf_st_find(const wf_st_file *f, const char *name);
/* dtype and shape of tensor i without reading its data. *dtype gets the weft dtype it
 * loads as; shape needs WF_MAX_DIMS entries. Returns 0, WF_EINDEX, WF_ENULL, or WF_ENOTSUP
 * (the file's dtype or rank has no weft equivalent: F8, U64, complex, more than 8 dims). */
int wf_st_info(const wf_st_file *f, int i, wf_dtype *dtype, int *ndim, int64_t *shape);
/* Read the tensor named name into a new contiguous CPU tensor (owned per tensor.h), verify
 * its CRC when the file has one. F64 F32 F16 BF16 I64 I32 U8 BOOL load as themselves;
 * I8, I16 and U16 load as WF_I32, U32 as WF_I64; BOOL bytes are normalised to 0/1.
 * NULL + WF_ENOTFOUND (no such tensor), WF_ECORRUPT (CRC mismatch: names the tensor and
 * the file), WF_EIO (read failed or the file shrank), WF_ENOTSUP (see wf_st_info), WF_ENOMEM. */
wf_tensor *wf_st_load(wf_st_file *f, const char *name);
/* Read the tensor named name into dst (any device and dtype: values are cast), which must
 * have the same shape. Returns 0, or the codes of wf_st_load, or WF_ESHAPE. */
int wf_st_load_into(wf_st_file *f, const char *name, wf_tensor *dst);
/* Whether f is a weft-written file whose header checksum verified and whose tensors all have
 * checksums (false for NULL, other writers' files and weft files older than the mark). */
bool wf_st_is_sealed(const wf_st_file *f);
/* Read every tensor that has a checksum and verify it (1 MiB at a time, whatever the tensor
 * sizes), without keeping anything: a whole-file check before using any of it. Returns 0,
 * WF_ECORRUPT (names the tensor and the file), WF_EIO, WF_ENOMEM, WF_ENULL. */
int wf_st_verify(wf_st_file *f);
/* The __metadata__ value for key (borrowed, valid until wf_st_close), or NULL if absent. */
const char *wf_st_metadata(const wf_st_file *f, const char *key);
/* Number of __metadata__ entries (crc32/ entries included) and the key of entry i (header
 * order; borrowed; NULL if out of range). */
int wf_st_metadata_count(const wf_st_file *f);
const char *wf_st_metadata_key(const wf_st_file *f, int i);
/* Close the file and free everything it owns. NULL is fine. */
void wf_st_close(wf_st_file *f);

#ifdef __cplusplus
}
#endif
#endif
