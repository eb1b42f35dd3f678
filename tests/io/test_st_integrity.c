/* tests/io/test_st_integrity.c: the whole file under checksums. Every bit of a small
 * weft-written file flipped in turn is refused, naming a tensor or the header; checks that
 * are missing, altered or do not cover every tensor are refused even when the header's own
 * checksum was recomputed to match; files of other writers and of the previous weft format
 * still load. */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>

#include "weft/io.h"

static void setup(void) { tt_dir_make("sti"); }
static void teardown(void) { tt_dir_remove(); }

/* A small weft file: an F32 "a" [5], an I64 "b" [3], metadata epoch/seed/lr. */
static void write_small(const char *path) {
    const float av[5] = { 1.5f, -2, 3, 0.25f, 1e-3f };
    const int64_t bv[3] = { 7, -8, 1LL << 40 };
    wf_tensor *a = wf_from_data(av, WF_SHAPE(5), WF_F32), *b = wf_from_data(bv, WF_SHAPE(3), WF_I64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "a", a), 0);
    ck_assert_int_eq(wf_st_writer_add(w, "b", b), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "epoch", "3"), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "seed", "{\"seed\":\"42\"}"), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "lr", "0.001"), 0);
    ck_assert_int_eq(wf_st_writer_save(w, path), 0);
    wf_st_writer_free(w);
    wf_tensor_free(a);
    wf_tensor_free(b);
}

/* Open, verify and load everything. 0 when all of it succeeded, else the error code (the
 * message stays in wf_error_message()). */
static int open_all(const char *path, bool *sealed) {
    wf_clear_error();
    wf_st_file *f = wf_st_open(path);
    if (!f) return wf_error();
    if (sealed) *sealed = wf_st_is_sealed(f);
    int rc = wf_st_verify(f);
    for (int i = 0; !rc && i < wf_st_count(f); i++) {
        wf_tensor *t = wf_st_load(f, wf_st_name(f, i));
        if (!t) rc = wf_error();
        wf_tensor_free(t);
    }
    wf_st_close(f);
    return rc;
}

static bool names_tensor_or_header(const char *msg) {
    return strstr(msg, "header") || strstr(msg, "tensor 'a'") || strstr(msg, "tensor 'b'");
}

START_TEST(test_every_bit_flipped_is_refused) {
    const char *p = tt_path("small.safetensors");
    write_small(p);
    bool sealed = false;
    ck_assert_int_eq(open_all(p, &sealed), 0);
    ck_assert(sealed);
    size_t n;
    unsigned char *good = tt_read_file(p, &n);
    unsigned char *bad = malloc(n);
    int at_header = 0, at_tensor = 0;
    for (size_t pos = 0; pos < n; pos++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, n);
            bad[pos] ^= (unsigned char)(1u << bit);
            tt_write_file(tt_path("flip"), bad, n);
            int rc = open_all(tt_path("flip"), NULL);
            ck_assert_msg(rc != 0, "byte %zu bit %d flipped: the file still loads", pos, bit);
            ck_assert_msg(rc == WF_ECORRUPT, "byte %zu bit %d: %s: %s", pos, bit, wf_error_name(rc), wf_error_message());
            const char *msg = wf_error_message();
            ck_assert_msg(names_tensor_or_header(msg), "byte %zu bit %d: '%s' names neither a tensor nor the header",
                          pos, bit, msg);
            if (strstr(msg, "header")) at_header++;
            else at_tensor++;
        }
    /* both kinds were hit: the data bytes are 5*4 + 3*8 = 44, the rest is header */
    ck_assert_int_eq(at_tensor, 44 * 8);
    ck_assert_int_eq(at_header, (int)(n - 44) * 8);
    free(bad);
    free(good);
}
END_TEST

/* ---------------------------------------------------------------- edits that reseal */

/* The file's header as a string (caller frees) and its data section. */
static char *split(const unsigned char *file, size_t n, unsigned char **data, size_t *dn) {
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)file[i] << (8 * i);
    char *h = malloc(hl + 1);
    memcpy(h, file + 8, hl);
    h[hl] = 0;
    *data = (unsigned char *)file + 8 + hl;
    *dn = n - 8 - hl;
    return h;
}

/* Write header (padded to 8) + data, recomputing weft/header_crc32 as the format says (the
 * test's own implementation of it), as a careless tool editing the file would. */
static void write_resealed(const char *path, const char *header, const unsigned char *data, size_t dn) {
    size_t hl = strlen(header);
    size_t pad = (8 - (8 + hl) % 8) % 8;
    unsigned char *b = calloc(1, 8 + hl + pad + dn + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)(hl + pad) >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', pad);
    memcpy(b + 8 + hl + pad, data, dn);
    const char *tok = "\"weft/header_crc32\":\"";
    char *hit = strstr((char *)b + 8, tok);
    if (hit) {
        char *d = hit + strlen(tok);
        memcpy(d, "00000000", 8);
        char hex[9];
        snprintf(hex, sizeof hex, "%08x", (unsigned)wf_crc32(0, b, 8 + hl + pad));
        memcpy(d, hex, 8);
    }
    tt_write_file(path, b, 8 + hl + pad + dn);
    free(b);
}

/* header with the first occurrence of from replaced by to (caller frees). */
static char *replace(const char *header, const char *from, const char *to) {
    const char *at = strstr(header, from);
    ck_assert_msg(at, "'%s' not in the header %s", from, header);
    size_t n = strlen(header) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    size_t k = (size_t)(at - header);
    memcpy(r, header, k);
    strcpy(r + k, to);
    strcat(r, at + strlen(from));
    return r;
}

/* The value of the metadata entry key in header ("xxxxxxxx" of "key":"xxxxxxxx"). */
static void value_of(const char *header, const char *key, char out[9]) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *at = strstr(header, pat);
    ck_assert_ptr_nonnull(at);
    memcpy(out, at + strlen(pat), 8);
    out[8] = 0;
}

static void expect_refused(const char *header, const unsigned char *data, size_t dn, int code, const char *text) {
    write_resealed(tt_path("edit"), header, data, dn);
    int rc = open_all(tt_path("edit"), NULL);
    ck_assert_msg(rc == code, "expected %s for '%s', got %s: %s", wf_error_name(code), text, wf_error_name(rc),
                  wf_error_message());
    ck_assert_msg(strstr(wf_error_message(), text), "message '%s' does not say '%s'", wf_error_message(), text);
    ck_assert_msg(strstr(wf_error_message(), tt_path("edit")), "message '%s' does not name the file", wf_error_message());
    wf_clear_error();
}

START_TEST(test_altered_checks_are_refused) {
    write_small(tt_path("small"));
    size_t n, dn;
    unsigned char *file = tt_read_file(tt_path("small"), &n), *data;
    char *h = split(file, n, &data, &dn);
    char ca[9], cb[9], hc[9];
    value_of(h, "crc32/a", ca);
    value_of(h, "crc32/b", cb);
    value_of(h, "weft/header_crc32", hc);

    /* resealing unchanged gives back a loadable file: the test's checksum is the format's */
    write_resealed(tt_path("same"), h, data, dn);
    ck_assert_int_eq(open_all(tt_path("same"), NULL), 0);

    char *e;
    /* a flipped character in a crc key: the tensor loses its check */
    e = replace(h, "\"crc32/a\"", "\"crc32/c\"");
    expect_refused(e, data, dn, WF_ECORRUPT, "tensor 'a' has no checksum");
    free(e);
    e = replace(h, "\"crc32/a\"", "\"crc22/a\"");
    expect_refused(e, data, dn, WF_ECORRUPT, "tensor 'a' has no checksum");
    free(e);
    /* a deleted check */
    char ent[64];
    snprintf(ent, sizeof ent, "\"crc32/b\":\"%s\",", cb);
    e = replace(h, ent, "");
    expect_refused(e, data, dn, WF_ECORRUPT, "tensor 'b' has no checksum");
    free(e);
    /* a check of the wrong tensor: b's value under a's key */
    snprintf(ent, sizeof ent, "\"crc32/a\":\"%s\"", ca);
    char to[64];
    snprintf(to, sizeof to, "\"crc32/a\":\"%s\"", cb);
    e = replace(h, ent, to);
    expect_refused(e, data, dn, WF_ECORRUPT, "tensor 'a': CRC32 mismatch");
    free(e);
    /* a check of a tensor that is not there */
    e = replace(h, "\"epoch\":", "\"crc32/zz\":\"00000000\",\"epoch\":");
    expect_refused(e, data, dn, WF_ECORRUPT, "checksum 'crc32/zz' names no tensor");
    free(e);
    /* the header's own checksum deleted, altered, duplicated, or its key damaged */
    snprintf(ent, sizeof ent, ",\"weft/header_crc32\":\"%s\"", hc);
    e = replace(h, ent, "");
    expect_refused(e, data, dn, WF_ECORRUPT, "the header: its checksum (weft/header_crc32) is missing");
    free(e);
    e = replace(h, "\"weft/header_crc32\"", "\"weft/header_crc33\"");
    expect_refused(e, data, dn, WF_ECORRUPT, "the header: its checksum (weft/header_crc32) is missing");
    free(e);
    e = replace(h, "\"epoch\":", "\"weft/header_crc32\":\"00000000\",\"epoch\":");
    expect_refused(e, data, dn, WF_ECORRUPT, "appears 2 times");
    free(e);
    e = replace(h, "\"weft/header_crc32\":\"", "\"weft/header_crc32\":\"xyz");
    expect_refused(e, data, dn, WF_ECORRUPT, "not 8 hex digits");
    free(e);
    /* a metadata value changed without resealing: the epoch silently changing is caught */
    e = replace(h, "\"epoch\":\"3\"", "\"epoch\":\"4\"");
    {
        /* keep the old header checksum: write the bytes as they are, padded the same way */
        size_t hl = strlen(e);
        unsigned char *b = malloc(8 + hl + dn);
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
        memcpy(b + 8, e, hl);
        memcpy(b + 8 + hl, data, dn);
        tt_write_file(tt_path("edit"), b, 8 + hl + dn);
        free(b);
        ck_assert_int_eq(open_all(tt_path("edit"), NULL), WF_ECORRUPT);
        ck_assert_error(WF_ECORRUPT, "the header: CRC32 mismatch");
    }
    free(e);
    /* the mark deleted or from the future */
    e = replace(h, "\"weft/safetensors\":\"2\",", "");
    expect_refused(e, data, dn, WF_ECORRUPT, "the mark weft/safetensors is missing");
    free(e);
    e = replace(h, "\"weft/safetensors\":\"2\"", "\"weft/safetensors\":\"3\"");
    expect_refused(e, data, dn, WF_ENOTSUP, "newer than this weft");
    free(e);
    /* bytes outside every tensor: appended, or a gap */
    {
        unsigned char *more = malloc(dn + 8);
        memcpy(more, data, dn);
        memset(more + dn, 0, 8);
        expect_refused(h, more, dn + 8, WF_ECORRUPT, "belong to no tensor");
        free(more);
    }
    e = replace(h, "\"data_offsets\":[24,44]", "\"data_offsets\":[28,48]");   /* "a": F32 after b's 24 bytes */
    {
        unsigned char *gap = calloc(1, dn + 4);
        memcpy(gap, data, 24);
        memcpy(gap + 28, data + 24, dn - 24);
        expect_refused(e, gap, dn + 4, WF_ECORRUPT, "belong to no tensor");
        free(gap);
    }
    free(e);
    /* both weft entries removed (a deliberate edit, not a flipped bit): the file reads as
     * one of the previous format, its tensors still checked */
    snprintf(ent, sizeof ent, "\"weft/safetensors\":\"2\",\"weft/header_crc32\":\"%s\"", hc);
    e = replace(h, ent, "\"k\":\"v\"");
    write_resealed(tt_path("old"), e, data, dn);
    bool sealed = true;
    ck_assert_int_eq(open_all(tt_path("old"), &sealed), 0);
    ck_assert(!sealed);
    free(e);
    free(h);
    free(file);
}
END_TEST

START_TEST(test_other_writers_and_previous_format) {
    /* another writer: no crc, a gap and trailing bytes (as some writers leave) */
    const float v[2] = { 1, 2 };
    unsigned char data[16] = { 0 };
    memcpy(data + 4, v, 8);
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    size_t hl = strlen(hdr);
    unsigned char b[128];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    memcpy(b + 8 + hl, data, sizeof data);
    tt_write_file(tt_path("other"), b, 8 + hl + sizeof data);
    bool sealed = true;
    ck_assert_int_eq(open_all(tt_path("other"), &sealed), 0);
    ck_assert(!sealed);
    /* weft's previous format: crc32/ entries only, verified */
    char h2[256];
    snprintf(h2, sizeof h2,
             "{\"__metadata__\":{\"crc32/x\":\"%08x\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             (unsigned)wf_crc32(0, v, 8));
    hl = strlen(h2);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h2, hl);
    memcpy(b + 8 + hl, v, 8);
    tt_write_file(tt_path("prev"), b, 8 + hl + 8);
    ck_assert_int_eq(open_all(tt_path("prev"), &sealed), 0);
    ck_assert(!sealed);
    b[8 + hl] ^= 1;
    tt_write_file(tt_path("prev"), b, 8 + hl + 8);
    ck_assert_int_eq(open_all(tt_path("prev"), NULL), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "tensor 'x': CRC32 mismatch");
    /* the integrity keys are reserved to the writer */
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "weft/header_crc32", "00000000"), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "reserved");
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "weft/safetensors", "2"), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "reserved");
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "weft/format", "x"), 0);   /* other weft/ keys are free */
    /* the checksum's text inside a value or a name is escaped, never taken for the checksum */
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "note", "\"weft/header_crc32\":\"00000000\""), 0);
    wf_tensor *t = wf_ones(WF_SHAPE(2), WF_F32);
    ck_assert_int_eq(wf_st_writer_add(w, "\"weft/header_crc32\":\"", t), 0);
    ck_assert_int_eq(wf_st_writer_save(w, tt_path("quoted")), 0);
    ck_assert_msg(open_all(tt_path("quoted"), &sealed) == 0, "%s", wf_error_message());
    ck_assert(sealed);
    wf_tensor_free(t);
    wf_st_writer_free(w);
    ck_assert_int_eq(wf_st_verify(NULL), WF_ENULL);
    wf_clear_error();
    ck_assert(!wf_st_is_sealed(NULL));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("io_st_integrity");
    TCase *tc = tcase_create("integrity");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_bit_flipped_is_refused);
    tcase_add_test(tc, test_altered_checks_are_refused);
    tcase_add_test(tc, test_other_writers_and_previous_format);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
