/* tests/io/st_tool.c: helper for check_safetensors.py (interoperability with the Python
 * safetensors package).
 *   st_tool write PATH   writes a file with known tensors of every dtype and metadata
 *   st_tool dump PATH    prints the file as one JSON object:
 *                        {"tensors": {name: {"dtype": "float32", "shape": [..], "values": [..]}},
 *                         "metadata": {key: value}}
 * Exit status 0 on success, 1 with the weft error on stderr otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tensor/tensor_impl.h"
#include "weft/io.h"
#include "weft/weft.h"

static int fail(const char *what) {
    fprintf(stderr, "st_tool: %s: %s (%s)\n", what, wf_error_message(), wf_error_name(wf_error()));
    return 1;
}

/* The values check_safetensors.py expects (keep the two in step). */
static int write_file(const char *path) {
    double f64[6];
    for (int i = 0; i < 6; i++) f64[i] = i * 0.5 - 1.0 + 1e-9 * i;
    float f32[3] = { 0.1f, -2.5f, 3.4e38f };
    uint16_t f16[4] = { 0x3c00, 0xc000, 0x7bff, 0x3555 };    /* 1, -2, 65504, ~0.333 */
    uint16_t bf16[3] = { 0x3f80, 0xc040, 0x4049 };           /* 1, -3, 3.140625 */
    int64_t i64[2] = { -9007199254740993LL, 4611686018427387904LL };
    int32_t i32[4] = { -2147483647 - 1, -1, 0, 2147483647 };
    uint8_t u8[5] = { 0, 1, 127, 128, 255 };
    uint8_t bl[3] = { 1, 0, 1 };
    wf_st_writer *w = wf_st_writer_new();
    if (!w) return fail("writer");
    wf_tensor *ts[] = {
        wf_from_data(f64, WF_SHAPE(2, 3), WF_F64), wf_from_data(f32, WF_SHAPE(3), WF_F32),
        wf_from_data(f16, WF_SHAPE(2, 2), WF_F16), wf_from_data(bf16, WF_SHAPE(3), WF_BF16),
        wf_from_data(i64, WF_SHAPE(2), WF_I64), wf_from_data(i32, WF_SHAPE(2, 2), WF_I32),
        wf_from_data(u8, WF_SHAPE(5), WF_U8), wf_from_data(bl, WF_SHAPE(3), WF_BOOL),
        wf_full(NULL, 0, 7.25, WF_F32), wf_zeros(WF_SHAPE(0, 4), WF_F32),
    };
    const char *names[] = { "f64", "f32", "f16", "bf16", "i64", "i32", "u8", "bool", "scalar", "empty" };
    int rc = 0;
    for (int i = 0; i < 10 && !rc; i++) {
        if (!ts[i]) { rc = fail("tensor"); break; }
        if (wf_st_writer_add(w, names[i], ts[i])) rc = fail("add");
    }
    if (!rc && (wf_st_writer_set_metadata(w, "epoch", "3") ||
                wf_st_writer_set_metadata(w, "note", "h\xc3\xa9llo \"quoted\"\n")))
        rc = fail("metadata");
    if (!rc && wf_st_writer_save(w, path)) rc = fail("save");
    for (int i = 0; i < 10; i++) wf_tensor_free(ts[i]);
    wf_st_writer_free(w);
    return rc;
}

static int dump_file(const char *path) {
    wf_st_file *f = wf_st_open(path);
    if (!f) return fail("open");
    wf_sb b;
    wf__sb_init(&b);
    wf__sb_puts(&b, "{\"tensors\":{");
    int rc = 0;
    for (int i = 0; i < wf_st_count(f) && !rc; i++) {
        const char *name = wf_st_name(f, i);
        wf_tensor *t = wf_st_load(f, name);
        if (!t) { rc = fail(name); break; }
        int64_t n = wf_numel(t);
        double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
        if (wf_to_array(t, v, WF_F64)) { rc = fail("to_array"); free(v); wf_tensor_free(t); break; }
        if (i) wf__sb_putc(&b, ',');
        wf__sb_json_string(&b, name, strlen(name));
        wf__sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", wf_dtype_name(wf_tensor_dtype(t)));
        for (int d = 0; d < wf_ndim(t); d++) {
            if (d) wf__sb_putc(&b, ',');
            wf__sb_json_int(&b, wf_shape(t)[d]);
        }
        wf__sb_puts(&b, "],\"values\":[");
        for (int64_t k = 0; k < n; k++) {
            if (k) wf__sb_putc(&b, ',');
            if (wf_tensor_dtype(t) == WF_I64) {   /* exact, beyond 2^53 */
                wf__sb_json_int(&b, ((const int64_t *)wf_data_ptr(t))[k]);
            } else if (isinf(v[k])) {
                wf__sb_puts(&b, v[k] > 0 ? "\"inf\"" : "\"-inf\"");
            } else {
                wf__sb_json_number(&b, v[k]);
            }
        }
        wf__sb_puts(&b, "]}");
        free(v);
        wf_tensor_free(t);
    }
    wf__sb_puts(&b, "},\"metadata\":{");
    for (int i = 0; i < wf_st_metadata_count(f); i++) {
        const char *k = wf_st_metadata_key(f, i);
        if (i) wf__sb_putc(&b, ',');
        wf__sb_json_string(&b, k, strlen(k));
        wf__sb_putc(&b, ':');
        wf__sb_json_string(&b, wf_st_metadata(f, k), strlen(wf_st_metadata(f, k)));
    }
    wf__sb_puts(&b, "}}");
    if (!rc) {
        if (wf__sb_failed(&b)) rc = 1;
        else printf("%s\n", b.buf);
    }
    wf__sb_free(&b);
    wf_st_close(f);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "write")) return write_file(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump_file(argv[2]);
    fprintf(stderr, "usage: st_tool write|dump PATH\n");
    return 2;
}
