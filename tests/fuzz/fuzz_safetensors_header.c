/* tests/fuzz/fuzz_safetensors_header.c: the input is only the JSON header of a safetensors
 * file; the 8-byte length and a 64-byte data section (bytes 0..63) are added here, so the
 * fuzzer spends its time on the header's meaning (dtypes, shapes, offsets, overlaps,
 * metadata, checksums) rather than on finding the framing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "weft/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *file = malloc(8 + size + 64);
    if (!file) return 0;
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)size >> (8 * i));
    if (size) memcpy(file + 8, data, size);
    for (int i = 0; i < 64; i++) file[8 + size + i] = (uint8_t)i;
    char path[64];
    int fd = fuzz_memfile(file, 8 + size + 64, path, sizeof path);
    free(file);
    if (fd < 0) return 0;
    wf_st_file *f = wf_st_open(path);
    if (f) {
        for (int i = 0; i < wf_st_count(f); i++) {
            wf_tensor *t = wf_st_load(f, wf_st_name(f, i));
            wf_tensor_free(t);
        }
        for (int i = 0; i < wf_st_metadata_count(f); i++) (void)wf_st_metadata(f, wf_st_metadata_key(f, i));
        wf_st_close(f);
    }
    close(fd);
    return 0;
}
