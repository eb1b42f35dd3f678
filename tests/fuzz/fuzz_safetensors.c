/* tests/fuzz/fuzz_safetensors.c: a whole safetensors file (8-byte header length, JSON
 * header, data) through wf_st_open, then every query and every tensor loaded, so the header
 * validation, the CRC check and the dtype widening all meet hostile input. */
#include <stdint.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "weft/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    wf_st_file *f = wf_st_open(path);
    if (f) {
        int n = wf_st_count(f);
        for (int i = 0; i < n; i++) {
            const char *name = wf_st_name(f, i);
            wf_dtype dt;
            int nd;
            int64_t shape[WF_MAX_DIMS];
            (void)wf_st_info(f, i, &dt, &nd, shape);
            if (wf_st_find(f, name) != i) abort();   /* names are unique, so find is exact */
            wf_tensor *t = wf_st_load(f, name);
            wf_tensor_free(t);
        }
        for (int i = 0; i < wf_st_metadata_count(f); i++) (void)wf_st_metadata(f, wf_st_metadata_key(f, i));
        wf_st_close(f);
    }
    close(fd);
    return 0;
}
