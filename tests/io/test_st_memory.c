/* tests/io/test_st_memory.c: wf__st_open_memory, the from-memory entry of the safetensors
 * reader (the checkpoint fuzz target loads through it). It must be wf_st_open with the bytes
 * taken from memory: the same tensors, metadata and seal for a good file, and for each
 * damaged one the same error code and message as the file gives when its path is the name. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors_impl.h"
#include "weft/io.h"

static void setup(void) { tt_dir_make("stm"); }
static void teardown(void) { tt_dir_remove(); }

/* A small weft file (an F32 "a" [5], an I64 "b" [2, 2], metadata "epoch"), read back into
 * memory (caller frees); *n its size, p its path. */
static unsigned char *small_file(const char *p, size_t *n) {
    const float av[5] = { 1.5f, -2, 3, 0.25f, 1e-3f };
    const int64_t bv[4] = { 7, -8, 1LL << 40, 0 };
    wf_tensor *a = wf_from_data(av, WF_SHAPE(5), WF_F32), *b = wf_from_data(bv, WF_SHAPE(2, 2), WF_I64);
    wf_st_writer *w = wf_st_writer_new();
    ck_assert_int_eq(wf_st_writer_add(w, "a", a), 0);
    ck_assert_int_eq(wf_st_writer_add(w, "b", b), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "epoch", "3"), 0);
    ck_assert_int_eq(wf_st_writer_save(w, p), 0);
    wf_st_writer_free(w);
    wf_tensor_free(a);
    wf_tensor_free(b);
    return tt_read_file(p, n);
}

/* Open (from memory when mem), verify and load every tensor: 0, or the first error's code
 * with its message copied into msg. */
static int open_all(const char *path, const unsigned char *mem, size_t n, char *msg, size_t cap) {
    wf_clear_error();
    msg[0] = 0;
    wf_st_file *f = mem ? wf__st_open_memory(mem, n, path) : wf_st_open(path);
    int rc = f ? wf_st_verify(f) : wf_error();
    for (int i = 0; f && !rc && i < wf_st_count(f); i++) {
        wf_tensor *t = wf_st_load(f, wf_st_name(f, i));
        if (!t) rc = wf_error();
        wf_tensor_free(t);
    }
    wf_st_close(f);
    if (rc) snprintf(msg, cap, "%s", wf_error_message());
    return rc;
}

START_TEST(test_same_file_as_from_disk) {
    const char *p = tt_path("small.safetensors");
    size_t n;
    unsigned char *bytes = small_file(p, &n);
    wf_st_file *d = wf_st_open(p), *m = wf__st_open_memory(bytes, n, p);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(wf_st_count(m), 2);
    ck_assert_int_eq(wf_st_count(m), wf_st_count(d));
    ck_assert(wf_st_is_sealed(m) && wf_st_is_sealed(d));
    ck_assert_int_eq(wf_st_verify(m), 0);
    ck_assert_str_eq(wf_st_metadata(m, "epoch"), "3");
    for (int i = 0; i < wf_st_count(m); i++) {
        ck_assert_str_eq(wf_st_name(m, i), wf_st_name(d, i));
        wf_tensor *tm = wf_st_load(m, wf_st_name(m, i)), *td = wf_st_load(d, wf_st_name(d, i));
        ck_assert_ptr_nonnull(tm);
        ck_assert_ptr_nonnull(td);
        ck_assert(wf_same_shape(tm, td));
        ck_assert_int_eq(wf_tensor_dtype(tm), wf_tensor_dtype(td));
        ck_assert_mem_eq(wf_data_ptr(tm), wf_data_ptr(td), (size_t)wf_numel(td) * wf_dtype_size(wf_tensor_dtype(td)));
        wf_tensor_free(tm);
        wf_tensor_free(td);
    }
    /* into an existing tensor, and a value check that does not rely on the file's reader */
    wf_tensor *a = wf_zeros(WF_SHAPE(5), WF_F32);
    ck_assert_int_eq(wf_st_load_into(m, "a", a), 0);
    ck_assert_tensor_near(a, ((double[]){ 1.5, -2, 3, 0.25, 1e-3 }), 5, 1e-7);
    wf_tensor_free(a);
    wf_st_close(d);
    wf_st_close(m);
    free(bytes);
}
END_TEST

/* One bit flipped in each byte in turn (the bit moves with the byte): refused from memory
 * exactly as from the file, and both refuse it. */
START_TEST(test_damage_reported_as_from_disk) {
    const char *p = tt_path("small.safetensors");
    size_t n;
    unsigned char *good = small_file(p, &n);
    unsigned char *bad = malloc(n);
    const char *fp = tt_path("flip");
    char mm[1024], fm[1024];
    for (size_t pos = 0; pos < n; pos++) {
        memcpy(bad, good, n);
        bad[pos] ^= (unsigned char)(1u << (pos % 8));
        tt_write_file(fp, bad, n);
        int rf = open_all(fp, NULL, 0, fm, sizeof fm), rm = open_all(fp, bad, n, mm, sizeof mm);
        ck_assert_msg(rf != 0, "byte %zu flipped: the file still loads", pos);
        ck_assert_msg(rm == rf && !strcmp(mm, fm), "byte %zu: from memory %s '%s', from the file %s '%s'", pos,
                      wf_error_name(rm), mm, wf_error_name(rf), fm);
    }
    /* cut short at every length */
    for (size_t k = 0; k < n; k += 7) {
        tt_write_file(fp, good, k);
        int rf = open_all(fp, NULL, 0, fm, sizeof fm), rm = open_all(fp, good, k, mm, sizeof mm);
        ck_assert_msg(rf != 0 && rm == rf && !strcmp(mm, fm), "%zu bytes: from memory %s '%s', from the file %s '%s'",
                      k, wf_error_name(rm), mm, wf_error_name(rf), fm);
    }
    free(bad);
    free(good);
}
END_TEST

START_TEST(test_bad_arguments) {
    const unsigned char b[8] = { 0 };
    wf_clear_error();
    ck_assert_ptr_null(wf__st_open_memory(NULL, 8, "x"));
    ck_assert_error(WF_ENULL, "wf__st_open_memory: NULL data");
    ck_assert_ptr_null(wf__st_open_memory(b, 8, NULL));
    ck_assert_error(WF_ENULL, "wf__st_open_memory: NULL name");
    /* empty and too short: refused naming the name given */
    ck_assert_ptr_null(wf__st_open_memory(b, 0, "input-0"));
    ck_assert_error(WF_ECORRUPT, "input-0: file is 0 bytes, shorter than the 8-byte header length");
    ck_assert_ptr_null(wf__st_open_memory(b, 8, "input-8"));
    ck_assert_error(WF_ECORRUPT, "input-8: header length 0 is too small");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("io_st_memory");
    TCase *tc = tcase_create("memory");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_same_file_as_from_disk);
    tcase_add_test(tc, test_damage_reported_as_from_disk);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
