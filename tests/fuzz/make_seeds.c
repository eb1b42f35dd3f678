/* tests/fuzz/make_seeds.c: writes the valid seed files of tests/fuzz/corpus/ with weft's own
 * writers, so that the fuzzers start from files weft really makes:
 *
 *     build/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus
 *
 * (the hand-written seeds and the crash inputs in corpus/ are kept as they are). The model
 * of the checkpoint seed is the one fuzz_checkpoint.c loads into. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/store_proto.h"
#include "fabric/sharded_checkpoint.h"
#include "weft/fabric.h"
#include "weft/io.h"
#include "weft_config.h"

#ifdef WEFT_HAVE_ZLIB
#include <zlib.h>
#endif

static const char *root;

static const char *at(const char *target, const char *name) {
    static char buf[2][4096];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s/%s", root, target, name);
    return buf[k];
}

static void put(const char *target, const char *name, const void *p, size_t n) {
    FILE *fp = fopen(at(target, name), "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp)) { fprintf(stderr, "cannot write %s\n", at(target, name)); exit(1); }
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    uint8_t *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, fp) != *n) exit(1);
    fclose(fp);
    return b;
}

static void check(int rc, const char *what) {
    if (rc) { fprintf(stderr, "%s: %s\n", what, wf_error_message()); exit(1); }
}

static void safetensors_seeds(void) {
    wf_st_writer *w = wf_st_writer_new();
    check(wf_st_writer_add(w, "w", wf_reshape(wf_arange(0, 6, 1, WF_F32), WF_SHAPE(2, 3))), "add w");
    check(wf_st_writer_add(w, "steps", wf_arange(0, 3, 1, WF_I64)), "add steps");
    check(wf_st_writer_add(w, "mask", wf_full(WF_SHAPE(2), 1, WF_BOOL)), "add mask");
    check(wf_st_writer_add(w, "half", wf_full(WF_SHAPE(2, 1), 0.5, WF_BF16)), "add half");
    check(wf_st_writer_add(w, "empty", wf_zeros(WF_SHAPE(0, 4), WF_U8)), "add empty");
    check(wf_st_writer_set_metadata(w, "format", "pt"), "metadata");
    check(wf_st_writer_save(w, at("safetensors", "valid_tensors.safetensors")), "save");
    wf_st_writer_free(w);
    w = wf_st_writer_new();
    check(wf_st_writer_save(w, at("safetensors", "valid_empty.safetensors")), "save empty");
    wf_st_writer_free(w);
    /* the header alone, for fuzz_safetensors_header */
    size_t n;
    uint8_t *b = slurp(at("safetensors", "valid_tensors.safetensors"), &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    put("safetensors_header", "valid_tensors.json", b + 8, (size_t)hl);
    free(b);
}

static void checkpoint_seeds(void) {
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    if (!fab) check(-1, "fabric");
    wf_manual_seed(3);
    wf_module *m = wf_sequential_new(2, wf_linear_new(2, 3, true), wf_linear_new(3, 1, false));
    wf_tensor *p[8];
    int np = wf_module_parameters(m, p, NULL, 8);
    wf_optimizer *o = wf_adamw_new(p, np, &(wf_adam_opts){ .lr = 1e-2 });
    wf_lr_scheduler *s = wf_step_lr_new(o, 2, 0.5);
    check(wf_fabric_setup(fab, m, &o, 1, s), "setup");
    WF_SCOPE {   /* one step, so the optimizer has state */
        wf_tensor *x = wf_ones(WF_SHAPE(4, 2), WF_F32);
        wf_tensor *loss = wf_mse_loss(wf_module_forward(m, x), wf_zeros(WF_SHAPE(4, 1), WF_F32), WF_REDUCTION_MEAN);
        check(wf_fabric_backward(fab, loss, m), "backward");
        check(wf_fabric_step(fab, o, NULL), "step");
    }
    int64_t it = 7;
    double best = 0.25;
    char note[16] = "hello";
    wf_tensor *extra = wf_arange(0, 3, 1, WF_I64);
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", o);
    wf_fabric_state_add_scheduler(st, "scheduler", s);
    wf_fabric_state_add_tensor(st, "extra", extra);
    wf_fabric_state_add_int(st, "iter", &it);
    wf_fabric_state_add_double(st, "best", &best);
    wf_fabric_state_add_string(st, "note", note, sizeof note);
    wf_fabric_state_add_rng(st, "rng");
    wf_fabric_state_add_precision(st, "precision", fab);
    check(wf_fabric_save(fab, at("checkpoint", "valid_full.ckpt"), st, NULL), "save checkpoint");
    wf_fabric_state_free(st);
    /* a plain weights file (wf_fabric_load_raw_module's input) */
    wf_st_writer *w = wf_st_writer_new();
    const char *names[8];
    np = wf_module_parameters(m, p, names, 8);
    for (int i = 0; i < np; i++) check(wf_st_writer_add(w, names[i], p[i]), "add param");
    check(wf_st_writer_save(w, at("checkpoint", "valid_raw_weights.safetensors")), "save raw");
    wf_st_writer_free(w);
    wf_tensor_free(extra);
    wf_lr_scheduler_free(s);
    wf_optimizer_free(o);
    wf_module_free(m);
    wf_fabric_free(fab);
}

/* IDX: magic 0 0 type ndim, big-endian u32 dims, big-endian data */
static size_t idx_make(uint8_t *b, int type, int ndim, const uint32_t *dims, size_t esize) {
    size_t n = 4, numel = 1;
    b[0] = b[1] = 0;
    b[2] = (uint8_t)type;
    b[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++, n += 4) { wf__put_u32(b + n, dims[i]); numel *= dims[i]; }
    for (size_t i = 0; i < numel * esize; i++) b[n + i] = (uint8_t)(i * 37 + 1);
    return n + numel * esize;
}

static void idx_seeds(void) {
    uint8_t b[512];
    size_t n;
    n = idx_make(b, 0x08, 1, (uint32_t[]){ 10 }, 1);
    put("idx", "valid_u8_1d.idx", b, n);
    put("idx_gz", "valid_u8_1d.idx", b, n);
#ifdef WEFT_HAVE_ZLIB
    gzFile gz = gzopen(at("idx", "valid_u8_1d.idx.gz"), "wb");
    if (!gz || gzwrite(gz, b, (unsigned)n) != (int)n || gzclose(gz) != Z_OK) check(-1, "gzip");
#endif
    n = idx_make(b, 0x08, 3, (uint32_t[]){ 2, 2, 3 }, 1);
    put("idx", "valid_u8_images.idx", b, n);
    put("idx_gz", "valid_u8_images.idx", b, n);
    n = idx_make(b, 0x09, 1, (uint32_t[]){ 5 }, 1);
    put("idx", "valid_i8.idx", b, n);
    n = idx_make(b, 0x0B, 2, (uint32_t[]){ 2, 3 }, 2);
    put("idx", "valid_i16.idx", b, n);
    put("idx_gz", "valid_i16.idx", b, n);
    n = idx_make(b, 0x0C, 1, (uint32_t[]){ 4 }, 4);
    put("idx", "valid_i32.idx", b, n);
    n = idx_make(b, 0x0D, 2, (uint32_t[]){ 3, 2 }, 4);
    put("idx", "valid_f32.idx", b, n);
    put("idx_gz", "valid_f32.idx", b, n);
    n = idx_make(b, 0x0E, 1, (uint32_t[]){ 3 }, 8);
    put("idx", "valid_f64.idx", b, n);
    n = idx_make(b, 0x08, 2, (uint32_t[]){ 0, 5 }, 1);
    put("idx", "valid_empty.idx", b, n);
}

/* store frames: u32 length (code + body), u8 code, body */
static size_t frame(uint8_t *p, uint8_t code, const void *body, size_t n) {
    wf__put_u32(p, (uint32_t)(1 + n));
    p[4] = code;
    memcpy(p + 5, body, n);
    return 5 + n;
}

static size_t key(uint8_t *p, const char *k) {
    wf__put_u32(p, (uint32_t)strlen(k));
    memcpy(p + 4, k, strlen(k));
    return 4 + strlen(k);
}

static void store_seeds(void) {
    uint8_t b[1024], body[256];
    size_t n = 0, k;
    b[n++] = 0;   /* server side */
    uint8_t hello[8];
    wf__put_u32(hello, WF_STORE_MAGIC);
    wf__put_u32(hello + 4, WF_STORE_VERSION);
    n += frame(b + n, WF_STORE_HELLO, hello, 8);
    put("store", "valid_hello.bin", b, n);
    k = key(body, "rank/0");
    memcpy(body + k, "ready", 5);
    n += frame(b + n, WF_STORE_SET, body, k + 5);
    k = key(body, "rank/0");
    n += frame(b + n, WF_STORE_GET, body, k);
    k = key(body, "counter");
    wf__put_u64(body + k, 5);
    n += frame(b + n, WF_STORE_ADD, body, k + 8);
    n += frame(b + n, WF_STORE_ADD, body, k + 8);
    k = key(body, "rank/0");   /* ADD on a non-integer value */
    wf__put_u64(body + k, 1);
    n += frame(b + n, WF_STORE_ADD, body, k + 8);
    wf__put_u32(body, 3);
    k = 4;
    k += key(body + k, "rank/0");
    k += key(body + k, "rank/1");
    k += key(body + k, "counter");
    n += frame(b + n, WF_STORE_CHECK, body, k);
    put("store", "valid_session.bin", b, n);
    /* client side: a CHECK reply for 3 keys naming key 1 as missing */
    uint8_t r[16] = { 1, WF_STORE_OK, 3 };
    wf__put_u32(r + 3, 1);
    wf__put_u32(r + 7, 1);
    put("store", "valid_check_reply.bin", r, 11);
}

/* A sharded checkpoint saved by one process: its index as it is (mode byte 1) and its body
 * without the checksum (mode byte 0), and bodies with one thing wrong each. */
static void sharded_index_seeds(void) {
    char dir[4096], ip[4200];
    snprintf(dir, sizeof dir, "%s/sharded_index/tmp_ckpt", root);
    wf_tensor *w = wf_reshape(wf_arange(0, 6, 1, WF_F32), WF_SHAPE(3, 2)), *s = wf_full(NULL, 0, 4, WF_I64);
    wf__shard_entry e[2] = {
        { .name = "model/w", .local = w, .ndim = 2, .global_shape = { 3, 2 } },
        { .name = "optimizer/state/0/step", .local = s, .ndim = 0, .replicated = true },
    };
    int rc = wf__sharded_save(NULL, dir, e, 2, "{\"epoch\":1,\"optimizer/param_groups\":[{\"lr\":0.1}]}");
    if (rc == WF_ENOTSUP) {   /* the minimal preset */
        printf("sharded_index seeds skipped: %s\n", wf_error_message());
        return;
    }
    check(rc, "sharded save");
    snprintf(ip, sizeof ip, "%s/index.json", dir);
    size_t n;
    uint8_t *b = slurp(ip, &n);
    uint8_t *m = malloc(n + 1);
    m[0] = 1;
    memcpy(m + 1, b, n);
    put("sharded_index", "valid_index.json", m, n + 1);
    const char *tok = "\"index_crc32\"";
    size_t body = (size_t)((const uint8_t *)strstr((const char *)b, tok) - b);
    m[0] = 0;
    put("sharded_index", "valid_body.json", m, body + 1);
    /* one change each, the checksum recomputed by the target */
    static const char *const edits[][3] = {
        { "invalid_gap.json", "[0,0,3]", "[0,1,3]" },
        { "invalid_dtype.json", "\"F32\"", "\"F8\"" },
        { "invalid_format.json", "weft-sharded-1", "weft-sharded-9" },
        { "invalid_file_name.json", "rank-0-of-1", "rank-0-of-2" },
        { "invalid_world.json", "\"world_size\":1", "\"world_size\":2" },
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        char *t = malloc(body + 64);
        memcpy(t, b, body);
        t[body] = 0;
        char *at = strstr(t, edits[k][1]);
        if (!at) { fprintf(stderr, "seed %s: no '%s'\n", edits[k][0], edits[k][1]); exit(1); }
        size_t la = strlen(edits[k][1]), lb = strlen(edits[k][2]);
        uint8_t *o = malloc(body + 64);
        o[0] = 0;
        size_t pre = (size_t)(at - t);
        memcpy(o + 1, t, pre);
        memcpy(o + 1 + pre, edits[k][2], lb);
        memcpy(o + 1 + pre + lb, at + la, body - pre - la);
        put("sharded_index", edits[k][0], o, 1 + body - la + lb);
        free(o);
        free(t);
    }
    free(m);
    free(b);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]); return 2; }
    root = argv[1];
    safetensors_seeds();
    checkpoint_seeds();
    idx_seeds();
    store_seeds();
    sharded_index_seeds();
    printf("seeds written under %s\n", root);
    return 0;
}
