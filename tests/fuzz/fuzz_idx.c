/* tests/fuzz/fuzz_idx.c: a file for wf_idx_load, as it comes: plain IDX, or anything
 * starting with the gzip magic (then the real gzip path, gzopen and all, reads it). */
#include <stdint.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "weft/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    wf_tensor *t = wf_idx_load(path);
    wf_tensor_free(t);
    close(fd);
    return 0;
}
