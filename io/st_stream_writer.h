/* io/st_stream_writer.h (internal): a safetensors writer that never holds the data.
 *
 * wf_st_writer (weft/io.h) keeps a reference to every tensor until it saves; a checkpoint
 * gathered from many ranks cannot exist whole in one process, so this writer takes the
 * names, dtypes and shapes first (the header's length follows from them alone: see
 * io/safetensors_impl.h), then the bytes of each tensor as they arrive, piece by piece and
 * in row-major order, tensors in any order. CRCs are computed as the bytes pass. Commit
 * checks that every tensor was filled, writes the header with its checksums and renames the
 * file into place (io/atomic_file.h): the result is exactly what wf_st_writer_save writes
 * for the same tensors and metadata, and an existing file at the path stays untouched until
 * then. The file format is weft/io.h's. */
#ifndef WEFT_IO_ST_STREAM_WRITER_H
#define WEFT_IO_ST_STREAM_WRITER_H

#include <stddef.h>

#include "io/safetensors_impl.h"

typedef struct wf__st_stream wf__st_stream;

/* Start writing path. t (n tensors: non-empty unique UTF-8 names other than "__metadata__",
 * storable dtypes, 0..WF_MAX_DIMS dims) and the nm metadata entries (not weft's reserved
 * keys, UTF-8) are copied. op names the caller in messages. The caller owns the result:
 * wf__st_stream_commit or wf__st_stream_abort releases it. NULL + WF_ENULL, WF_EINVAL,
 * WF_EDTYPE, WF_ENOMEM, WF_EIO (names the path). */
wf__st_stream *wf__st_stream_open(const char *path, const wf__st_tensor_desc *t, int n, const char *const *mkeys,
                                  const char *const *mvals, int nm, const char *op);
/* Append nbytes of tensor i's data (little-endian, row-major), after the bytes already
 * given for it. More than the tensor holds is WF_EINVAL naming it; WF_EIO. */
int wf__st_stream_write(wf__st_stream *s, int i, const void *p, size_t nbytes);
/* Append all of t's values (any device and strides; t's dtype must be tensor i's). */
int wf__st_stream_write_tensor(wf__st_stream *s, int i, wf_tensor *t);
/* Finish: every tensor complete (else WF_EINVAL naming the first short one and nothing is
 * written to path), header written, file renamed into place. Releases s either way. */
int wf__st_stream_commit(wf__st_stream *s);
/* Drop everything written; path is untouched. NULL is fine. */
void wf__st_stream_abort(wf__st_stream *s);

#endif
