/* bench/bench_idx_load.c: wf_idx_load on Fashion-MNIST's .gz files against zlib's own speed:
 * a plain gzread loop over the same file into one buffer of the inflated size (what any
 * loader must at least do), allocated once. Files above 128 MB are cut there. Both read from the page cache after a first untimed pass;
 * best of --repeat runs each, alternating.
 *
 *   bench_idx_load [--file PATH.gz] [--repeat 5]
 * Last line: {"impl":"weft","file":...,"mb":...,"zlib_ms":...,"weft_ms":...,"ratio":...}
 * ratio = zlib time / weft time (1.0 = as fast as zlib; the goal is >= 0.9).
 * The line before it, {"impl":"weft","compare":"zlib_fresh",...}, times the same gzread loop
 * into a buffer malloc'ed for each pass (freed after), as a real load's output is new memory:
 * it pays the first-touch page faults weft's load pays, which the warm buffer does not. */
#include "bench_models.h"
#include "weft/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* into a buffer allocated and touched once, outside the timing: pure inflate speed (weft's
 * caching allocator hands its loads a warm block too after the first) */
static unsigned char *zbuf;
static size_t zcap = (size_t)128 << 20;

static double zlib_pass(const char *path, size_t *bytes) {
    if (!zbuf && !(zbuf = calloc(1, zcap))) return -1;
    memset(zbuf, 1, zcap);
    double t0 = bench_now();
    gzFile g = gzopen(path, "rb");
    if (!g) return -1;
    gzbuffer(g, 1 << 17);
    size_t len = 0;
    int r;
    while (len < zcap && (r = gzread(g, zbuf + len, (unsigned)(zcap - len < (1u << 20) ? zcap - len : (1u << 20)))) > 0)
        len += (size_t)r;
    gzclose(g);
    *bytes = len;
    return bench_now() - t0;
}

/* into fresh memory: what a loader that allocates its output with plain malloc pays */
static double zlib_fresh_pass(const char *path, size_t size) {
    double t0 = bench_now();
    unsigned char *b = malloc(size ? size : 1);
    if (!b) return -1;
    gzFile g = gzopen(path, "rb");
    if (!g) { free(b); return -1; }
    gzbuffer(g, 1 << 17);
    size_t len = 0;
    int r;
    while (len < size && (r = gzread(g, b + len, (unsigned)(size - len < (1u << 20) ? size - len : (1u << 20)))) > 0)
        len += (size_t)r;
    gzclose(g);
    free(b);
    return bench_now() - t0;
}

static double weft_pass(const char *path) {
    double t0 = bench_now();
    wf_tensor *t = wf_idx_load(path);
    double dt = bench_now() - t0;
    if (!t) return -1;
    wf_tensor_free(t);
    return dt;
}

int main(int argc, char **argv) {
    const char *path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    int repeat = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--file")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[i + 1]);
    }
    if (repeat < 1) repeat = 1;
    size_t bytes = 0;
    if (zlib_pass(path, &bytes) < 0 || weft_pass(path) < 0) {   /* warm the page cache */
        fprintf(stderr, "error: %s: %s\n", path, wf_error() ? wf_error_message() : "cannot read");
        return 1;
    }
    double best_z = 1e9, best_w = 1e9, best_f = 1e9;
    for (int r = 0; r < repeat; r++) {
        double z = zlib_pass(path, &bytes), w = weft_pass(path), f = zlib_fresh_pass(path, bytes);
        if (z < best_z) best_z = z;
        if (w < best_w) best_w = w;
        if (f >= 0 && f < best_f) best_f = f;
        fprintf(stderr, "  run %d: zlib %.1f ms, weft %.1f ms, zlib into fresh memory %.1f ms\n", r + 1, 1e3 * z,
                1e3 * w, 1e3 * f);
    }
    printf("{\"impl\":\"weft\",\"compare\":\"zlib_fresh\",\"file\":\"%s\",\"mb\":%.1f,\"zlib_fresh_ms\":%.1f,\"weft_ms\":%.1f,\"ratio\":%.3f}\n",
           path, (double)bytes / 1e6, 1e3 * best_f, 1e3 * best_w, best_f / best_w);
    printf("{\"impl\":\"weft\",\"file\":\"%s\",\"mb\":%.1f,\"zlib_ms\":%.1f,\"weft_ms\":%.1f,\"ratio\":%.3f}\n", path,
           (double)bytes / 1e6, 1e3 * best_z, 1e3 * best_w, best_z / best_w);
    return 0;
}
