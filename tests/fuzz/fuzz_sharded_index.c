/* tests/fuzz/fuzz_sharded_index.c: the index of a sharded checkpoint (fabric/sharded_index.c,
 * wf__sharded_index_parse). Byte 0 picks the mode: odd, the rest is the whole file as it is
 * (the checksum check itself); even, the rest is the body before "index_crc32" and the
 * correct checksum is appended here, so the fuzzer spends its time on the JSON's meaning
 * (format, files, dtypes, shapes, pieces, metadata) rather than on a CRC. A parsed index
 * must hold what the parser promises: pieces tiling each tensor's rows, every name found. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/sharded_checkpoint.h"
#include "tensor/tensor_impl.h"
#include "weft/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    size_t n = size - 1;
    char *text = malloc(n + 32);
    if (!text) return 0;
    if (n) memcpy(text, data + 1, n);
    if (!(data[0] & 1)) n += (size_t)sprintf(text + n, "\"index_crc32\":\"%08x\"}\n", (unsigned)wf_crc32(0, text, n));
    wf__sharded_index *ix = NULL;
    int rc = wf__sharded_index_parse(text, n, "fuzz/index.json", &ix);
    if (rc) {
        if (ix || (rc != WF_ECORRUPT && rc != WF_ENOTSUP && rc != WF_ENOMEM) || !wf_error_message()[0]) abort();
    } else {
        if (!ix || ix->world_size < 1 || !ix->metadata) abort();
        for (int i = 0; i < ix->ntensors; i++) {
            const wf__sharded_tensor *t = &ix->t[i];
            if (wf__sharded_index_find(ix, t->name) != i) abort();
            int64_t at = 0;
            for (int k = 0; k < t->npieces; k++) {
                const wf__sharded_piece *p = &t->pieces[k];
                if (p->row_begin != at || p->row_end <= at || p->file < 0 || p->file >= ix->world_size) abort();
                at = p->row_end;
            }
            if (at > (t->ndim ? t->shape[0] : 1)) abort();
        }
        wf__sharded_index_free(ix);
    }
    wf_clear_error();
    free(text);
    return 0;
}
