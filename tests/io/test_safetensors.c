/* tests/io/test_safetensors.c: writer/reader round trips, files written by hand as other
 * writers write them, hostile files, atomic saves. */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft/io.h"

static char g_dir[256];

static void setup(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/weft_st_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    wf_clear_error();
}

static void teardown(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s'; rm -rf '%s'", g_dir, g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *fpath(const char *name) {
    static char p[4][320];
    static int k;
    k = (k + 1) & 3;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* A safetensors file from a header string and data bytes (as another writer would). */
static void write_st(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + n + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (n) memcpy(b + 8 + hl, data, n);
    write_bytes(path, b, 8 + hl + n);
    free(b);
}

/* Number of directory entries other than . and .. */
static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Assert a and b have the same shape, dtype and bytes. */
static void assert_same(wf_tensor *a, wf_tensor *b) {
    ck_assert_msg(a && b, "NULL tensor: %s", wf_error_message());
    ck_assert_int_eq(wf_tensor_dtype(a), wf_tensor_dtype(b));
    ck_assert(wf_same_shape(a, b));
    size_t n = (size_t)wf_numel(a) * wf_dtype_size(wf_tensor_dtype(a));
    void *x = malloc(n + 1), *y = malloc(n + 1);
    ck_assert_int_eq(wf_to_array(a, x, wf_tensor_dtype(a)), 0);
    ck_assert_int_eq(wf_to_array(b, y, wf_tensor_dtype(b)), 0);
    ck_assert_int_eq(memcmp(x, y, n), 0);
    free(x);
    free(y);
}

/* ---------------------------------------------------------------- round trips */

START_TEST(test_roundtrip_all_dtypes) {
    const double f64[6] = { 0.1, -2.5, 1e300, -0.0, 3.0, 1.0 / 3.0 };
    const float f32[4] = { 1.5f, -2.25f, 3.4e38f, 1e-40f };
    const uint16_t f16[3] = { 0x3c00, 0xc000, 0x7bff };           /* 1, -2, 65504 */
    const uint16_t bf16[3] = { 0x3f80, 0xc040, 0x4049 };          /* 1, -3, ~3.14 */
    const int64_t i64[3] = { INT64_MIN, -1, (int64_t)1 << 60 };
    const int32_t i32[4] = { INT32_MIN, -7, 0, INT32_MAX };
    const uint8_t u8[5] = { 0, 1, 127, 128, 255 };
    const uint8_t bl[4] = { 1, 0, 0, 1 };
    wf_tensor *ts[] = {
        wf_from_data(f64, WF_SHAPE(2, 3), WF_F64),
        wf_from_data(f32, WF_SHAPE(4), WF_F32),
        wf_from_data(f16, WF_SHAPE(3), WF_F16),
        wf_from_data(bf16, WF_SHAPE(3, 1), WF_BF16),
        wf_from_data(i64, WF_SHAPE(3), WF_I64),
        wf_from_data(i32, WF_SHAPE(2, 2), WF_I32),
        wf_from_data(u8, WF_SHAPE(5), WF_U8),
        wf_from_data(bl, WF_SHAPE(2, 2), WF_BOOL),
        wf_scalar(42.5, WF_F32),
        wf_zeros(WF_SHAPE(0, 3), WF_F32),
        wf_zeros(WF_SHAPE(2, 0, 2), WF_I64),
    };
    const char *names[] = { "model/w64", "model/w32", "half", "layers.0.bf", "i64", "i32", "bytes",
                            "mask", "scalar", "empty", "empty.i64" };
    int nt = (int)(sizeof ts / sizeof ts[0]);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < nt; i++) {
        ck_assert_msg(ts[i], "%s", wf_error_message());
        ck_assert_int_eq(wf_st_writer_add(w, names[i], ts[i]), 0);
    }
    /* a non-contiguous view is written in logical order */
    wf_tensor *base = wf_from_data(f64, WF_SHAPE(2, 3), WF_F64);
    wf_tensor *tr = wf_t(base);
    ck_assert(!wf_is_contiguous(tr));
    ck_assert_int_eq(wf_st_writer_add(w, "transposed", tr), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "format", "pt"), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "note", "quote \" backslash \\ newline \n h\xc3\xa9llo"), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "format", "weft"), 0);   /* replaces */
    ck_assert_int_eq(wf_st_writer_save(w, fpath("a.safetensors")), 0);
    ck_assert_int_eq(dir_entries(g_dir), 1);   /* no temporary left behind */

    wf_st_file *f = wf_st_open(fpath("a.safetensors"));
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_st_count(f), nt + 1);
    for (int i = 0; i < nt; i++) {
        ck_assert_int_ge(wf_st_find(f, names[i]), 0);
        wf_tensor *t = wf_st_load(f, names[i]);
        assert_same(t, ts[i]);
        ck_assert(wf_is_contiguous(t));
        ck_assert_int_eq(wf_tensor_device(t).type, WF_DEV_CPU);
        wf_tensor_free(t);
        char key[64];
        snprintf(key, sizeof key, "crc32/%s", names[i]);
        const char *crc = wf_st_metadata(f, key);
        ck_assert_ptr_nonnull(crc);
        ck_assert_int_eq(strlen(crc), 8);
    }
    wf_tensor *t = wf_st_load(f, "scalar");
    ck_assert_int_eq(wf_ndim(t), 0);
    ck_assert(wf_item(t) == 42.5);
    wf_tensor_free(t);
    t = wf_st_load(f, "transposed");
    ck_assert_shape(t, 3, 2);
    ck_assert_tensor_near(t, ((double[]){ 0.1, -0.0, -2.5, 3.0, 1e300, 1.0 / 3.0 }), 6, 0);
    wf_tensor_free(t);
    ck_assert_str_eq(wf_st_metadata(f, "format"), "weft");
    ck_assert_str_eq(wf_st_metadata(f, "note"), "quote \" backslash \\ newline \n h\xc3\xa9llo");
    ck_assert_ptr_null(wf_st_metadata(f, "absent"));
    ck_assert_int_eq(wf_st_metadata_count(f), 2 + nt + 1 + 2);   /* + weft/safetensors, weft/header_crc32 */
    ck_assert(wf_st_is_sealed(f));
    ck_assert_str_eq(wf_st_metadata_key(f, 0), "format");
    ck_assert_ptr_null(wf_st_metadata_key(f, 1000));
    ck_assert_ptr_null(wf_st_name(f, -1));
    ck_assert_ptr_null(wf_st_name(f, nt + 1));
    ck_assert_int_eq(wf_st_find(f, "nope"), WF_ENOTFOUND);
    ck_assert_int_eq(wf_error(), WF_OK);          /* a lookup records no error */
    ck_assert_ptr_null(wf_st_load(f, "nope"));
    ck_assert_error(WF_ENOTFOUND, "nope");
    /* info without reading */
    wf_dtype dt;
    int nd;
    int64_t shape[WF_MAX_DIMS];
    ck_assert_int_eq(wf_st_info(f, wf_st_find(f, "model/w64"), &dt, &nd, shape), 0);
    ck_assert_int_eq(dt, WF_F64);
    ck_assert_int_eq(nd, 2);
    ck_assert(shape[0] == 2 && shape[1] == 3);
    ck_assert_int_eq(wf_st_info(f, 99, &dt, &nd, shape), WF_EINDEX);
    wf_clear_error();
    wf_st_close(f);

    /* file layout: header padded to 8, every tensor naturally aligned */
    size_t n;
    unsigned char *b = read_all(fpath("a.safetensors"), &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    ck_assert_int_eq((8 + hl) % 8, 0);
    ck_assert_int_eq(b[8], '{');
    free(b);

    for (int i = 0; i < nt; i++) wf_tensor_free(ts[i]);
    wf_tensor_free(tr);
    wf_tensor_free(base);
    wf_st_writer_free(w);
}
END_TEST

START_TEST(test_writer_keeps_reference_and_resaves) {
    wf_tensor *t = wf_arange(0, 10, 1, WF_F32);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "x", t), 0);
    wf_tensor_free(t);                              /* the writer still holds it */
    ck_assert_int_eq(wf_st_writer_save(w, fpath("k.safetensors")), 0);
    ck_assert_int_eq(wf_st_writer_save(w, fpath("k.safetensors")), 0);   /* replaces atomically */
    wf_st_writer_free(w);
    wf_st_file *f = wf_st_open(fpath("k.safetensors"));
    ck_assert_ptr_nonnull(f);
    t = wf_st_load(f, "x");
    ck_assert_tensor_near(t, ((double[]){ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }), 10, 0);
    wf_tensor_free(t);
    wf_st_close(f);
    /* an empty writer makes a valid file */
    w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_save(w, fpath("empty.safetensors")), 0);
    wf_st_writer_free(w);
    f = wf_st_open(fpath("empty.safetensors"));
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_st_count(f), 0);
    ck_assert_int_eq(wf_st_metadata_count(f), 2);   /* the mark and the header checksum */
    ck_assert(wf_st_is_sealed(f));
    wf_st_close(f);
}
END_TEST

START_TEST(test_writer_errors) {
    wf_st_writer *w = wf_st_writer_new();
    wf_tensor *t = wf_zeros(WF_SHAPE(2), WF_F32);
    ck_assert_int_eq(wf_st_writer_add(w, "a", t), 0);
    ck_assert_int_eq(wf_st_writer_add(w, "a", t), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "already added");
    ck_assert_int_eq(wf_st_writer_add(w, "__metadata__", t), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "reserved");
    ck_assert_int_eq(wf_st_writer_add(w, "", t), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "empty");
    ck_assert_int_eq(wf_st_writer_add(w, "bad\xff", t), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "UTF-8");
    ck_assert_int_eq(wf_st_writer_add(w, "n", NULL), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_st_writer_add(NULL, "n", t), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "crc32/a", "00000000"), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "reserved");
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "k", NULL), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_st_writer_save(w, NULL), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_st_writer_save(w, ""), WF_EINVAL);
    wf_clear_error();
    wf_st_writer_free(w);
    wf_st_writer_free(NULL);
    wf_st_close(NULL);
    ck_assert_ptr_null(wf_st_open(NULL));
    ck_assert_int_eq(wf_error(), WF_ENULL);
    wf_clear_error();
    wf_tensor_free(t);
}
END_TEST

START_TEST(test_load_into) {
    wf_tensor *a = wf_arange(0, 6, 1, WF_F32);
    wf_tensor *a2 = wf_reshape(a, WF_SHAPE(2, 3));
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "a", a2), 0);
    ck_assert_int_eq(wf_st_writer_save(w, fpath("li.safetensors")), 0);
    wf_st_writer_free(w);
    wf_st_file *f = wf_st_open(fpath("li.safetensors"));
    wf_tensor *dst = wf_zeros(WF_SHAPE(2, 3), WF_F64);
    ck_assert_int_eq(wf_st_load_into(f, "a", dst), 0);
    ck_assert_tensor_near(dst, ((double[]){ 0, 1, 2, 3, 4, 5 }), 6, 0);
    wf_tensor *bad = wf_zeros(WF_SHAPE(3, 2), WF_F32);
    ck_assert_int_eq(wf_st_load_into(f, "a", bad), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "[2,3]");
    ck_assert_int_eq(wf_st_load_into(f, "zz", bad), WF_ENOTFOUND);
    wf_clear_error();
    wf_st_close(f);
    wf_tensor_free(a);
    wf_tensor_free(a2);
    wf_tensor_free(dst);
    wf_tensor_free(bad);
}
END_TEST

/* ---------------------------------------------------------------- other writers */

START_TEST(test_foreign_file) {
    /* as the Python writer lays it out: sorted names, no crc keys, padding with spaces,
     * here with tensors listed out of data order and a few dtypes weft widens */
    unsigned char data[64];
    size_t k = 0;
    float fv[2] = { 1.25f, -8.0f };
    memcpy(data + k, fv, 8); k += 8;                       /* b: F32 [2]     [0,8)   */
    int16_t sv[2] = { -300, 7 };
    memcpy(data + k, sv, 4); k += 4;                       /* s: I16 [2]     [8,12)  */
    uint32_t uv[1] = { 4000000000u };
    memcpy(data + k, uv, 4); k += 4;                       /* u: U32 [1]     [12,16) */
    int8_t cv[3] = { -1, 2, -128 };
    memcpy(data + k, cv, 3); k += 3;                       /* c: I8 [3]      [16,19) */
    uint16_t wv[1] = { 65535 };
    memcpy(data + k, wv, 2); k += 2;                       /* w: U16 [1]     [19,21) */
    data[k++] = 2;                                         /* m: BOOL [1]    [21,22) */
    const char *hdr =
        "{\"s\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[8,12]},"
        "\"__metadata__\":{\"format\":\"np\"},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
        "\"u\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"c\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]},"
        "\"w\":{\"dtype\":\"U16\",\"shape\":[],\"data_offsets\":[19,21]},"
        "\"m\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[21,22]},"
        "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[0],\"data_offsets\":[22,22]}}      ";
    write_st(fpath("foreign.safetensors"), hdr, data, k);
    wf_st_file *f = wf_st_open(fpath("foreign.safetensors"));
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_st_count(f), 7);
    ck_assert_str_eq(wf_st_name(f, 0), "s");
    ck_assert_str_eq(wf_st_name(f, 1), "b");
    ck_assert_str_eq(wf_st_metadata(f, "format"), "np");
    wf_tensor *t = wf_st_load(f, "b");
    ck_assert_shape(t, 1, 2);
    ck_assert_tensor_near(t, ((double[]){ 1.25, -8.0 }), 2, 0);
    wf_tensor_free(t);
    t = wf_st_load(f, "s");
    ck_assert_int_eq(wf_tensor_dtype(t), WF_I32);
    ck_assert_tensor_near(t, ((double[]){ -300, 7 }), 2, 0);
    wf_tensor_free(t);
    t = wf_st_load(f, "u");
    ck_assert_int_eq(wf_tensor_dtype(t), WF_I64);
    ck_assert_tensor_near(t, ((double[]){ 4000000000.0 }), 1, 0);
    wf_tensor_free(t);
    t = wf_st_load(f, "c");
    ck_assert_tensor_near(t, ((double[]){ -1, 2, -128 }), 3, 0);
    wf_tensor_free(t);
    t = wf_st_load(f, "w");
    ck_assert_int_eq(wf_ndim(t), 0);
    ck_assert(wf_item(t) == 65535);
    wf_tensor_free(t);
    t = wf_st_load(f, "m");
    ck_assert_int_eq(wf_tensor_dtype(t), WF_BOOL);
    ck_assert_int_eq(((uint8_t *)wf_data_ptr(t))[0], 1);   /* normalised */
    wf_tensor_free(t);
    ck_assert_ptr_null(wf_st_load(f, "f8"));
    ck_assert_error(WF_ENOTSUP, "F8_E4M3");
    wf_st_close(f);
}
END_TEST

/* ---------------------------------------------------------------- hostile files */

static void expect_open_fails(const char *name, int code, const char *text) {
    wf_clear_error();
    wf_st_file *f = wf_st_open(fpath(name));
    if (f) wf_st_close(f);
    ck_assert_msg(!f, "%s: opened a bad file", name);
    ck_assert_msg(strstr(wf_error_message(), fpath(name)), "'%s' does not name the file", wf_error_message());
    ck_assert_error(code, text);
}

static void bad_header(const char *header, size_t data_len, const char *text) {
    unsigned char data[256] = { 0 };
    ck_assert_uint_le(data_len, sizeof data);
    write_st(fpath("bad.safetensors"), header, data, data_len);
    expect_open_fails("bad.safetensors", WF_ECORRUPT, text);
}

START_TEST(test_corrupt_headers) {
#define T(body) "{\"t\":{" body "}}"
    bad_header("{\"t\":", 0, "not valid JSON");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "not valid JSON");
    bad_header("[1,2]", 0, "not a JSON object");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 4, "beyond the 4-byte data section");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"), 8, "needs 12 bytes, data_offsets span 8");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"), 8, "end before they begin");
    bad_header(T("\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]"), 8, "unknown dtype 'F33'");
    bad_header(T("\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]"), 8, "dtype");
    bad_header(T("\"shape\":[2],\"data_offsets\":[0,8]"), 8, "dtype");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 8, "non-negative");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]"), 8, "non-negative integer");
    bad_header(T("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8, "shape");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]"), 8, "data_offsets");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]"), 8, "data_offsets");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]"), 8, "data_offsets");
    bad_header(T("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]"), 8,
               "shape overflows");
    bad_header("{\"t\":[]}", 0, "not an object");
    bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    bad_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, "'a' appears twice");
    bad_header("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "NUL");
    bad_header("{\"__metadata__\":{\"k\":1}}", 0, "value for 'k' is not a string");
    bad_header("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    bad_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "key 'k' appears twice");
    bad_header("{\"__metadata__\":{\"crc32/t\":\"xyz\"}}", 0, "not 8 hex digits");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[[[1]]]]]]]]]],\"data_offsets\":[0,4]}}", 4, "nesting");
#undef T
    /* empty tensors may share offsets with others */
    write_st(fpath("ok.safetensors"),
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]}}", "\0\0\0\0\0\0\0\0", 8);
    wf_st_file *f = wf_st_open(fpath("ok.safetensors"));
    ck_assert_msg(f, "%s", wf_error_message());
    wf_st_close(f);
}
END_TEST

START_TEST(test_corrupt_lengths) {
    /* shorter than 8 bytes */
    write_bytes(fpath("tiny"), "\x02\0\0", 3);
    expect_open_fails("tiny", WF_ECORRUPT, "shorter than the 8-byte header length");
    /* header length beyond the file */
    unsigned char b[64] = { 0 };
    b[0] = 200;
    memcpy(b + 8, "{}", 2);
    write_bytes(fpath("beyond"), b, 10);
    expect_open_fails("beyond", WF_ECORRUPT, "header length 200 exceeds file size 10");
    /* a header length of terabytes: refused before allocating */
    memset(b, 0, 8);
    b[5] = 1;   /* 2^40 */
    write_bytes(fpath("tera"), b, 10);
    expect_open_fails("tera", WF_ECORRUPT, "header length 1099511627776 exceeds file size 10");
    memset(b, 0xff, 8);
    write_bytes(fpath("max"), b, 10);
    expect_open_fails("max", WF_ECORRUPT, "header length 18446744073709551615 exceeds file size 10");
    /* a header length within a (sparse) file but above the 100 MB limit */
    memset(b, 0, 8);
    uint64_t hl = 200000000;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    write_bytes(fpath("sparse"), b, 8);
    ck_assert_int_eq(truncate(fpath("sparse"), 300000000), 0);
    expect_open_fails("sparse", WF_ECORRUPT, "exceeds the 100000000-byte limit");
    /* zero-length header */
    memset(b, 0, 8);
    write_bytes(fpath("zero"), b, 8);
    expect_open_fails("zero", WF_ECORRUPT, "too small");
    /* missing file, directory */
    expect_open_fails("missing", WF_EIO, strerror(ENOENT));
    ck_assert_ptr_null(wf_st_open(g_dir));
    ck_assert_error(WF_EIO, "not a regular file");
}
END_TEST

START_TEST(test_crc_mismatch) {
    wf_tensor *a = wf_arange(0, 100, 1, WF_F32), *b = wf_arange(0, 10, 1, WF_I64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "a", a), 0);
    ck_assert_int_eq(wf_st_writer_add(w, "b", b), 0);
    ck_assert_int_eq(wf_st_writer_save(w, fpath("c.safetensors")), 0);
    wf_st_writer_free(w);
    /* flip one bit of the last byte of the file: the F32 tensor (written after the I64 one) */
    size_t n;
    unsigned char *bytes = read_all(fpath("c.safetensors"), &n);
    bytes[n - 1] ^= 0x01;
    write_bytes(fpath("c.safetensors"), bytes, n);
    free(bytes);
    wf_st_file *f = wf_st_open(fpath("c.safetensors"));
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_null(wf_st_load(f, "a"));
    ck_assert_msg(strstr(wf_error_message(), fpath("c.safetensors")), "%s", wf_error_message());
    ck_assert_error(WF_ECORRUPT, "tensor 'a': CRC32 mismatch");
    wf_tensor *t = wf_st_load(f, "b");             /* the other tensor is intact */
    assert_same(t, b);
    wf_tensor_free(t);
    wf_st_close(f);
    /* the file shrinking after open is an I/O error, not a crash */
    f = wf_st_open(fpath("c.safetensors"));
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(truncate(fpath("c.safetensors"), (off_t)(n - 100)), 0);
    ck_assert_ptr_null(wf_st_load(f, "a"));
    ck_assert_error(WF_EIO, "unexpected end of file");
    wf_st_close(f);
    wf_tensor_free(a);
    wf_tensor_free(b);
}
END_TEST

START_TEST(test_truncated_files) {
    /* every prefix of a valid file is refused cleanly (or, never, accepted) */
    wf_tensor *a = wf_arange(0, 7, 1, WF_F64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "a", a), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "m", "v"), 0);
    ck_assert_int_eq(wf_st_writer_save(w, fpath("full")), 0);
    wf_st_writer_free(w);
    size_t n;
    unsigned char *bytes = read_all(fpath("full"), &n);
    for (size_t k = 0; k < n; k++) {
        write_bytes(fpath("prefix"), bytes, k);
        wf_st_file *f = wf_st_open(fpath("prefix"));
        ck_assert_msg(!f, "prefix of %zu bytes opened", k);
        ck_assert_int_eq(wf_error(), WF_ECORRUPT);
        wf_clear_error();
    }
    /* random single-byte corruptions never crash; a load either fails or returns data */
    srand(1234);
    for (int trial = 0; trial < 500; trial++) {
        unsigned char *c = malloc(n);
        memcpy(c, bytes, n);
        size_t pos = (size_t)rand() % n;
        c[pos] = (unsigned char)rand();
        write_bytes(fpath("fuzz"), c, n);
        free(c);
        wf_st_file *f = wf_st_open(fpath("fuzz"));
        if (f) {
            for (int i = 0; i < wf_st_count(f); i++) wf_tensor_free(wf_st_load(f, wf_st_name(f, i)));
            wf_st_close(f);
        }
        wf_clear_error();
    }
    free(bytes);
    wf_tensor_free(a);
}
END_TEST

/* ---------------------------------------------------------------- atomic saves */

static void save_v(const char *path, double v, int expect) {
    wf_tensor *t = wf_full(WF_SHAPE(4), v, WF_F64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "v", t), 0);
    int rc = wf_st_writer_save(w, path);
    ck_assert_msg(rc == expect, "save %s: %d (%s)", path, rc, wf_error_message());
    wf_st_writer_free(w);
    wf_tensor_free(t);
}

static double load_v(const char *path) {
    wf_st_file *f = wf_st_open(path);
    ck_assert_msg(f, "%s", wf_error_message());
    wf_tensor *t = wf_st_load(f, "v");
    ck_assert_ptr_nonnull(t);
    double v[4];
    ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    wf_tensor_free(t);
    wf_st_close(f);
    return v[0];
}

START_TEST(test_atomic_bad_paths) {
    /* a directory that does not exist */
    save_v(fpath("nodir/x.safetensors"), 1, WF_EIO);
    ck_assert_error(WF_EIO, "nodir/x.safetensors");
    /* the target is a directory: the rename fails after the data was written */
    ck_assert_int_eq(mkdir(fpath("adir"), 0755), 0);
    save_v(fpath("adir"), 1, WF_EIO);
    ck_assert_error(WF_EIO, "renaming");
    struct stat st;
    ck_assert_int_eq(stat(fpath("adir"), &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(dir_entries(g_dir), 1);   /* the temporary file was removed */
}
END_TEST

START_TEST(test_atomic_keeps_old_file) {
    const char *p = fpath("ckpt.safetensors");
    save_v(p, 1.0, 0);
    ck_assert(load_v(p) == 1.0);
    /* a read-only directory (only meaningful when not root: root ignores permissions) */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(g_dir, 0500), 0);
        save_v(p, 2.0, WF_EIO);
        ck_assert_error(WF_EIO, "cannot create");
        ck_assert_int_eq(chmod(g_dir, 0700), 0);
        ck_assert(load_v(p) == 1.0);
    }
    /* a failure in the middle of writing the data (file size limit): old file intact */
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    /* SIGXFSZ keeps its default action (kill): the save must not raise it in the caller */
    struct rlimit lim = { 4096, old.rlim_max };
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    wf_tensor *big = wf_full(WF_SHAPE(100000), 3.0, WF_F64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "v", big), 0);
    int rc = wf_st_writer_save(w, p);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(rc, WF_EIO);
    ck_assert_error(WF_EIO, "ckpt.safetensors");
    wf_st_writer_free(w);
    wf_tensor_free(big);
    ck_assert(load_v(p) == 1.0);
    ck_assert_int_eq(dir_entries(g_dir), 1);
    /* and a successful save replaces it */
    save_v(p, 5.0, 0);
    ck_assert(load_v(p) == 5.0);
    ck_assert_int_eq(dir_entries(g_dir), 1);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("io_safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_roundtrip_all_dtypes);
    tcase_add_test(tc, test_writer_keeps_reference_and_resaves);
    tcase_add_test(tc, test_writer_errors);
    tcase_add_test(tc, test_load_into);
    tcase_add_test(tc, test_foreign_file);
    tcase_add_test(tc, test_corrupt_headers);
    tcase_add_test(tc, test_corrupt_lengths);
    tcase_add_test(tc, test_crc_mismatch);
    tcase_add_test(tc, test_truncated_files);
    tcase_add_test(tc, test_atomic_bad_paths);
    tcase_add_test(tc, test_atomic_keeps_old_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
