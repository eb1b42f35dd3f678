/* tests/fuzz/fuzz_idx_gz.c: the input is an IDX file that this target gzips before
 * wf_idx_load reads it, so that the stream-of-unknown-size path (the growing buffer, the
 * size claims checked against the 2 GiB cap, trailing bytes) sees fuzzed IDX headers rather
 * than mostly broken deflate data (fuzz_idx covers those). Without zlib it does nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "weft/io.h"
#include "weft_config.h"

#ifdef WEFT_HAVE_ZLIB
#include <zlib.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#ifdef WEFT_HAVE_ZLIB
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;   /* 15+16: gzip */
    uLong cap = deflateBound(&z, (uLong)size);
    uint8_t *gz = malloc(cap);
    if (!gz) { deflateEnd(&z); return 0; }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    int zr = deflate(&z, Z_FINISH);
    size_t n = z.total_out;
    deflateEnd(&z);
    if (zr == Z_STREAM_END) {
        char path[64];
        int fd = fuzz_memfile(gz, n, path, sizeof path);
        if (fd >= 0) {
            wf_tensor *t = wf_idx_load(path);
            wf_tensor_free(t);
            close(fd);
        }
    }
    free(gz);
#else
    (void)data;
    (void)size;
#endif
    return 0;
}
