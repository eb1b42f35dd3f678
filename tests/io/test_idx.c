/* tests/io/test_idx.c: the IDX (MNIST) reader on files written here, plain and gzip, and
 * on malformed files. */
#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/mman.h>
#include <sys/syscall.h>
#endif

#include "weft_config.h"
#include "weft/io.h"
#ifdef WEFT_HAVE_ZLIB
#include <zlib.h>
#endif

static char g_dir[256];

static void setup(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/weft_idx_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    wf_clear_error();
}

static void teardown(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *fpath(const char *name) {
    static char p[2][320];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* Build an IDX image in buf: header for (type, dims) and then data bytes as given. */
static size_t idx_image(unsigned char *buf, int type, int ndim, const uint32_t *dims,
                        const void *data, size_t data_bytes) {
    size_t k = 0;
    buf[k++] = 0; buf[k++] = 0; buf[k++] = (unsigned char)type; buf[k++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        buf[k++] = (unsigned char)(dims[i] >> 24); buf[k++] = (unsigned char)(dims[i] >> 16);
        buf[k++] = (unsigned char)(dims[i] >> 8); buf[k++] = (unsigned char)dims[i];
    }
    if (data_bytes) memcpy(buf + k, data, data_bytes);
    return k + data_bytes;
}

static void put_be(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

START_TEST(test_u8_plain) {
    unsigned char data[24], buf[64];
    for (int i = 0; i < 24; i++) data[i] = (unsigned char)(i * 10 + 3);
    size_t n = idx_image(buf, 0x08, 3, (const uint32_t[]){ 2, 3, 4 }, data, 24);
    write_bytes(fpath("u8.idx"), buf, n);
    wf_tensor *t = wf_idx_load(fpath("u8.idx"));
    ck_assert_shape(t, 2, 3, 4);
    ck_assert_int_eq(wf_tensor_dtype(t), WF_U8);
    ck_assert_int_eq(wf_tensor_device(t).type, WF_DEV_CPU);
    ck_assert(wf_is_contiguous(t));
    ck_assert_int_eq(memcmp(wf_data_ptr(t), data, 24), 0);
    wf_tensor_free(t);
}
END_TEST

START_TEST(test_all_types) {
    unsigned char raw[64], buf[128];
    /* i8 -> i32 */
    const int8_t i8[4] = { -128, -1, 0, 127 };
    size_t n = idx_image(buf, 0x09, 1, (const uint32_t[]){ 4 }, i8, 4);
    write_bytes(fpath("i8"), buf, n);
    wf_tensor *t = wf_idx_load(fpath("i8"));
    ck_assert_int_eq(wf_tensor_dtype(t), WF_I32);
    ck_assert_tensor_near(t, ((double[]){ -128, -1, 0, 127 }), 4, 0);
    wf_tensor_free(t);
    /* i16 -> i32 */
    const int16_t i16[3] = { -32768, -2, 300 };
    for (int i = 0; i < 3; i++) put_be(raw + 2 * i, (uint16_t)i16[i], 2);
    n = idx_image(buf, 0x0B, 1, (const uint32_t[]){ 3 }, raw, 6);
    write_bytes(fpath("i16"), buf, n);
    t = wf_idx_load(fpath("i16"));
    ck_assert_int_eq(wf_tensor_dtype(t), WF_I32);
    ck_assert_tensor_near(t, ((double[]){ -32768, -2, 300 }), 3, 0);
    wf_tensor_free(t);
    /* i32 (big-endian) */
    const int32_t i32[4] = { INT32_MIN, -7, 0x01020304, INT32_MAX };
    for (int i = 0; i < 4; i++) put_be(raw + 4 * i, (uint32_t)i32[i], 4);
    n = idx_image(buf, 0x0C, 2, (const uint32_t[]){ 2, 2 }, raw, 16);
    write_bytes(fpath("i32"), buf, n);
    t = wf_idx_load(fpath("i32"));
    ck_assert_shape(t, 2, 2);
    ck_assert_int_eq(wf_tensor_dtype(t), WF_I32);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), i32, 16), 0);
    wf_tensor_free(t);
    /* f32 */
    const float f32[3] = { 1.5f, -0.25f, 3.0e38f };
    for (int i = 0; i < 3; i++) { uint32_t u; memcpy(&u, &f32[i], 4); put_be(raw + 4 * i, u, 4); }
    n = idx_image(buf, 0x0D, 1, (const uint32_t[]){ 3 }, raw, 12);
    write_bytes(fpath("f32"), buf, n);
    t = wf_idx_load(fpath("f32"));
    ck_assert_int_eq(wf_tensor_dtype(t), WF_F32);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), f32, 12), 0);
    wf_tensor_free(t);
    /* f64 */
    const double f64[2] = { 0.1, -1e300 };
    for (int i = 0; i < 2; i++) { uint64_t u; memcpy(&u, &f64[i], 8); put_be(raw + 8 * i, u, 8); }
    n = idx_image(buf, 0x0E, 1, (const uint32_t[]){ 2 }, raw, 16);
    write_bytes(fpath("f64"), buf, n);
    t = wf_idx_load(fpath("f64"));
    ck_assert_int_eq(wf_tensor_dtype(t), WF_F64);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), f64, 16), 0);
    wf_tensor_free(t);
}
END_TEST

START_TEST(test_empty_dim) {
    unsigned char buf[32];
    size_t n = idx_image(buf, 0x08, 2, (const uint32_t[]){ 0, 28 }, NULL, 0);
    write_bytes(fpath("empty"), buf, n);
    wf_tensor *t = wf_idx_load(fpath("empty"));
    ck_assert_shape(t, 0, 28);
    ck_assert_int_eq(wf_numel(t), 0);
    wf_tensor_free(t);
}
END_TEST

START_TEST(test_large_chunked) {
    /* more than one read chunk (1 MiB) of f32 */
    const uint32_t rows = 300, cols = 1000;
    size_t nb = (size_t)rows * cols * 4;
    unsigned char *buf = malloc(nb + 16);
    unsigned char *d = buf + 12;
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        float v = (float)i * 0.5f;
        uint32_t u;
        memcpy(&u, &v, 4);
        put_be(d + 4 * i, u, 4);
    }
    size_t n = idx_image(buf, 0x0D, 2, (const uint32_t[]){ rows, cols }, NULL, 0);
    ck_assert_int_eq(n, 12);
    write_bytes(fpath("big"), buf, n + nb);
    wf_tensor *t = wf_idx_load(fpath("big"));
    ck_assert_shape(t, rows, cols);
    const float *p = wf_data_ptr(t);
    for (size_t i = 0; i < (size_t)rows * cols; i += 9973) ck_assert(p[i] == (float)i * 0.5f);
    ck_assert(p[(size_t)rows * cols - 1] == (float)((size_t)rows * cols - 1) * 0.5f);
    wf_tensor_free(t);
    free(buf);
}
END_TEST

static void expect_corrupt(const void *bytes, size_t n, const char *text) {
    write_bytes(fpath("bad"), bytes, n);
    wf_clear_error();
    ck_assert_ptr_null(wf_idx_load(fpath("bad")));
    ck_assert_msg(strstr(wf_error_message(), fpath("bad")), "message '%s' does not name the file",
                  wf_error_message());
    ck_assert_error(WF_ECORRUPT, text);
}

START_TEST(test_malformed) {
    unsigned char buf[256], data[64] = { 0 };
    /* bad magic */
    size_t n = idx_image(buf, 0x08, 1, (const uint32_t[]){ 4 }, data, 4);
    buf[0] = 0x50; buf[1] = 0x4b;
    expect_corrupt(buf, n, "bad magic");
    /* too short for a header */
    expect_corrupt("\0\0", 2, "truncated header");
    expect_corrupt("", 0, "truncated header");
    /* dims cut short */
    n = idx_image(buf, 0x08, 3, (const uint32_t[]){ 2, 2, 2 }, NULL, 0);
    expect_corrupt(buf, n - 3, "truncated header");
    /* unknown type code */
    n = idx_image(buf, 0x0A, 1, (const uint32_t[]){ 4 }, data, 4);
    expect_corrupt(buf, n, "unknown data type code 0x0a");
    /* ndim 0 and ndim 9 */
    n = idx_image(buf, 0x08, 0, NULL, data, 4);
    expect_corrupt(buf, n, "0 dimensions");
    n = idx_image(buf, 0x08, 9, (const uint32_t[]){ 1, 1, 1, 1, 1, 1, 1, 1, 1 }, data, 1);
    expect_corrupt(buf, n, "9 dimensions");
    /* truncated data */
    n = idx_image(buf, 0x0C, 2, (const uint32_t[]){ 3, 4 }, data, 40);
    expect_corrupt(buf, n, "need 48 data bytes, the file has 40");
    /* trailing garbage */
    n = idx_image(buf, 0x08, 1, (const uint32_t[]){ 4 }, data, 7);
    expect_corrupt(buf, n, "3 trailing bytes");
    /* a huge claim: 60000 x 28 x 28 x 1000 of doubles against 10 bytes */
    n = idx_image(buf, 0x0E, 4, (const uint32_t[]){ 60000, 28, 28, 1000 }, data, 10);
    expect_corrupt(buf, n, "need 376320000000 data bytes, the file has 10");
    /* a product that overflows 64 bits */
    n = idx_image(buf, 0x0E, 8, (const uint32_t[]){ 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                                                    0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu }, data, 8);
    expect_corrupt(buf, n, "overflow");
}
END_TEST

START_TEST(test_missing_file) {
    ck_assert_ptr_null(wf_idx_load(fpath("does-not-exist")));
    ck_assert_msg(strstr(wf_error_message(), "does-not-exist"), "%s", wf_error_message());
    ck_assert_error(WF_EIO, strerror(ENOENT));
    ck_assert_ptr_null(wf_idx_load(g_dir));
    ck_assert_error(WF_EIO, g_dir);
    wf_clear_error();
    ck_assert_ptr_null(wf_idx_load(NULL));
    ck_assert_int_eq(wf_error(), WF_ENULL);
    wf_clear_error();
}
END_TEST

#ifdef WEFT_HAVE_ZLIB
static void write_gz(const char *path, const void *p, size_t n) {
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    if (n) ck_assert_int_eq(gzwrite(g, p, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

START_TEST(test_gz) {
    unsigned char data[6 * 5], buf[128];
    for (int i = 0; i < 30; i++) data[i] = (unsigned char)(255 - i);
    size_t n = idx_image(buf, 0x08, 2, (const uint32_t[]){ 6, 5 }, data, 30);
    write_gz(fpath("u8.idx.gz"), buf, n);
    wf_tensor *t = wf_idx_load(fpath("u8.idx.gz"));
    ck_assert_shape(t, 6, 5);
    ck_assert_int_eq(wf_tensor_dtype(t), WF_U8);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), data, 30), 0);
    wf_tensor_free(t);
    /* the format is recognised by content: a gzip file without the .gz name */
    write_gz(fpath("noext"), buf, n);
    t = wf_idx_load(fpath("noext"));
    ck_assert_shape(t, 6, 5);
    wf_tensor_free(t);
    /* f32 big-endian through gzip, larger than one chunk */
    const uint32_t cnt = 600000;
    unsigned char *big = malloc(12 + (size_t)cnt * 4);
    size_t h = idx_image(big, 0x0D, 2, (const uint32_t[]){ cnt / 1000, 1000 }, NULL, 0);
    for (uint32_t i = 0; i < cnt; i++) {
        float v = (float)i - 5.0f;
        uint32_t u;
        memcpy(&u, &v, 4);
        put_be(big + h + 4 * (size_t)i, u, 4);
    }
    write_gz(fpath("f32.gz"), big, h + (size_t)cnt * 4);
    t = wf_idx_load(fpath("f32.gz"));
    ck_assert_shape(t, cnt / 1000, 1000);
    const float *p = wf_data_ptr(t);
    for (uint32_t i = 0; i < cnt; i += 7919) ck_assert(p[i] == (float)i - 5.0f);
    ck_assert(p[cnt - 1] == (float)(cnt - 1) - 5.0f);
    wf_tensor_free(t);
    free(big);
}
END_TEST

START_TEST(test_gz_malformed) {
    unsigned char buf[256], data[64] = { 0 };
    /* data ends early inside a valid gzip stream */
    size_t n = idx_image(buf, 0x08, 2, (const uint32_t[]){ 4, 4 }, data, 10);
    write_gz(fpath("short.gz"), buf, n);
    ck_assert_ptr_null(wf_idx_load(fpath("short.gz")));
    ck_assert_error(WF_ECORRUPT, "truncated data");
    /* trailing bytes inside the stream */
    n = idx_image(buf, 0x08, 1, (const uint32_t[]){ 4 }, data, 9);
    write_gz(fpath("trail.gz"), buf, n);
    ck_assert_ptr_null(wf_idx_load(fpath("trail.gz")));
    ck_assert_error(WF_ECORRUPT, "trailing bytes");
    /* a huge claim in a tiny stream: refused before any allocation of that size */
    n = idx_image(buf, 0x0E, 3, (const uint32_t[]){ 60000, 28, 28000 }, data, 16);
    write_gz(fpath("huge.gz"), buf, n);
    ck_assert_ptr_null(wf_idx_load(fpath("huge.gz")));
    ck_assert_error(WF_ECORRUPT, "more than the");
    /* a claim under the cap, but the stream is short: error, memory follows the real data */
    n = idx_image(buf, 0x08, 2, (const uint32_t[]){ 30000, 30000 }, data, 16);
    write_gz(fpath("claim.gz"), buf, n);
    ck_assert_ptr_null(wf_idx_load(fpath("claim.gz")));
    ck_assert_error(WF_ECORRUPT, "the stream has 16");
    /* bad magic inside gzip */
    n = idx_image(buf, 0x08, 1, (const uint32_t[]){ 4 }, data, 4);
    buf[1] = 7;
    write_gz(fpath("magic.gz"), buf, n);
    ck_assert_ptr_null(wf_idx_load(fpath("magic.gz")));
    ck_assert_error(WF_ECORRUPT, "bad magic");
    /* the compressed file itself cut short */
    unsigned char *big = calloc(1, 4096 + 8);
    n = idx_image(big, 0x08, 1, (const uint32_t[]){ 4096 }, NULL, 0);
    for (int i = 0; i < 4096; i++) big[n + (size_t)i] = (unsigned char)(i * 7919 >> 3);
    write_gz(fpath("cut.gz"), big, n + 4096);
    free(big);
    FILE *f = fopen(fpath("cut.gz"), "rb");
    unsigned char gzb[16384];
    size_t gn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    ck_assert_int_gt(gn, 100);
    write_bytes(fpath("cut.gz"), gzb, gn / 2);
    ck_assert_ptr_null(wf_idx_load(fpath("cut.gz")));
    ck_assert_int_eq(wf_error(), WF_ECORRUPT);
    wf_clear_error();
    /* garbage after the gzip magic */
    write_bytes(fpath("junk.gz"), "\x1f\x8b\x08\x00garbagegarbage", 18);
    ck_assert_ptr_null(wf_idx_load(fpath("junk.gz")));
    ck_assert_int_eq(wf_error(), WF_ECORRUPT);
    wf_clear_error();
}
END_TEST

#if defined(__linux__) && defined(MADV_HUGEPAGE)
/* madvise as the library sees it: this definition comes before libc's, so the test sees
 * each huge-page request and can refuse it as a kernel without transparent huge pages does
 * (EINVAL). Every call still reaches the kernel, or is refused, through the system call. */
static int g_madv_refuse, g_madv_calls;
static uintptr_t g_madv_lo, g_madv_hi;
int madvise(void *addr, size_t len, int advice) {
    if (advice == MADV_HUGEPAGE) {
        g_madv_calls++;
        g_madv_lo = (uintptr_t)addr;
        g_madv_hi = (uintptr_t)addr + len;
        if (g_madv_refuse) { errno = EINVAL; return -1; }
    }
    return (int)syscall(SYS_madvise, addr, len, advice);
}

/* A u8 IDX of 33.2 MiB in gzip (a tensor the host cache does not keep, as Fashion-MNIST's
 * 47 MB train split, and not a whole number of huge pages): its bytes, and the file written. */
#define HP_DIMS 34, 1024, 1000
static unsigned char *hp_file(const char *name, size_t *nbytes) {
    const uint32_t dims[3] = { HP_DIMS };
    size_t n = (size_t)dims[0] * dims[1] * dims[2];
    unsigned char *buf = malloc(16 + n);
    ck_assert_ptr_nonnull(buf);
    size_t h = idx_image(buf, 0x08, 3, dims, NULL, 0);
    for (size_t i = 0; i < n; i++) buf[h + i] = (unsigned char)(i * 131u + (i >> 13));
    gzFile g = gzopen(fpath(name), "wb1");   /* fastest level: the test times nothing */
    ck_assert_ptr_nonnull(g);
    for (size_t o = 0; o < h + n; o += (size_t)1 << 24) {
        unsigned k = (unsigned)(h + n - o < ((size_t)1 << 24) ? h + n - o : ((size_t)1 << 24));
        ck_assert_int_eq(gzwrite(g, buf + o, k), (int)k);
    }
    ck_assert_int_eq(gzclose(g), Z_OK);
    *nbytes = n;
    memmove(buf, buf + h, n);
    return buf;
}

START_TEST(test_gz_hugepages) {
    /* a large load asks for huge pages from a 2 MiB boundary on the whole 2 MiB pages of its
     * data (not of its size class, whose tail would then be resident too), and its bytes are
     * the file's bit for bit */
    size_t n;
    unsigned char *want = hp_file("big.gz", &n);
    g_madv_calls = 0;
    wf_tensor *t = wf_idx_load(fpath("big.gz"));
    ck_assert_ptr_nonnull(t);
    ck_assert_shape(t, HP_DIMS);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), want, n), 0);
    uintptr_t p = (uintptr_t)wf_data_ptr(t);
    ck_assert_int_ge(g_madv_calls, 1);
    ck_assert_msg(p % ((uintptr_t)2 << 20) == 0, "data at %p is not on a 2 MiB boundary", (void *)p);
    ck_assert_msg(g_madv_lo == p && g_madv_hi - g_madv_lo == (n & ~(((size_t)2 << 20) - 1)),
                  "advised [%p, %p) for data [%p, +%zu)", (void *)g_madv_lo, (void *)g_madv_hi, (void *)p, n);
    wf_tensor_free(t);
    /* a small load stays on the ordinary heap, unadvised */
    g_madv_calls = 0;
    unsigned char small[16 + 4096];
    write_gz(fpath("small.gz"), small, idx_image(small, 0x08, 1, (const uint32_t[]){ 4096 }, want, 4096));
    t = wf_idx_load(fpath("small.gz"));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), want, 4096), 0);
    ck_assert_int_eq(g_madv_calls, 0);
    wf_tensor_free(t);
    free(want);
}
END_TEST

START_TEST(test_gz_hugepages_refused) {
    /* a kernel that refuses the advice still gets the same load, without an error */
    size_t n;
    unsigned char *want = hp_file("big.gz", &n);
    g_madv_refuse = 1;
    g_madv_calls = 0;
    wf_clear_error();
    wf_tensor *t = wf_idx_load(fpath("big.gz"));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_ge(g_madv_calls, 1);
    ck_assert_int_eq(wf_error(), WF_OK);
    ck_assert_shape(t, HP_DIMS);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), want, n), 0);
    wf_tensor_free(t);
    /* and again, as a dataset load followed by another (the block is not cached) */
    t = wf_idx_load(fpath("big.gz"));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(memcmp(wf_data_ptr(t), want, n), 0);
    wf_tensor_free(t);
    g_madv_refuse = 0;
    free(want);
}
END_TEST
#endif
#else
START_TEST(test_gz_without_zlib) {
    write_bytes(fpath("x.gz"), "\x1f\x8b\x08\x00\x00\x00\x00\x00", 8);
    ck_assert_ptr_null(wf_idx_load(fpath("x.gz")));
    ck_assert_error(WF_ENOTSUP, "without zlib");
}
END_TEST
#endif

static Suite *suite(void) {
    Suite *s = suite_create("io_idx");
    TCase *tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_u8_plain);
    tcase_add_test(tc, test_all_types);
    tcase_add_test(tc, test_empty_dim);
    tcase_add_test(tc, test_large_chunked);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_missing_file);
#ifdef WEFT_HAVE_ZLIB
    tcase_add_test(tc, test_gz);
    tcase_add_test(tc, test_gz_malformed);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    tcase_add_test(tc, test_gz_hugepages);
    tcase_add_test(tc, test_gz_hugepages_refused);
#endif
#else
    tcase_add_test(tc, test_gz_without_zlib);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
