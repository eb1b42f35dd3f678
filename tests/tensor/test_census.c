/* tests/tensor/test_census.c: the memory census (wf_memory_record_history, wf_memory_snapshot,
 * wf_memory_summary, wf_memory_set_label): a known sequence of CPU allocations gives the
 * known rows at the peak, the ops' labels, the backward's labels, and bad inputs give clear
 * errors. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "weft/autograd.h"
#include "weft/tensor.h"

/* the row of label (and dtype) in rows, or NULL */
static const wf_memory_census_row *find(const wf_memory_census_row *rows, int n, const char *label, wf_dtype dt) {
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].label, label) && rows[i].dtype == dt) return &rows[i];
    return NULL;
}

START_TEST(test_known_sequence_peak) {
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    ck_assert(wf_memory_is_recording());
    wf_tensor *a = wf_zeros(WF_SHAPE(1000), WF_F32);                 /* "empty" (the factories' label) 4000 B */
    wf_tensor *b = wf_add(a, a);                                      /* "add" 4000 B */
    const char *prev = wf_memory_set_label("mine");
    ck_assert_ptr_null(prev);
    wf_tensor *c = wf_zeros(WF_SHAPE(10), WF_F64);                    /* "mine / empty" 80 B */
    wf_tensor *d = wf_to_dtype(a, WF_BF16);                           /* "mine / to_dtype" 2000 B */
    ck_assert_ptr_eq(wf_memory_set_label(NULL), "mine");
    ck_assert(a && b && c && d);
    wf_tensor_free(b);
    wf_tensor_free(c);
    wf_tensor *e = wf_empty(WF_SHAPE(100), WF_F32);                  /* 400 B: below the peak */

    wf_memory_census_row rows[8];
    size_t total = 0;
    int n = wf_memory_snapshot(WF_CPU, true, rows, 8, &total);
    ck_assert_int_eq(n, 4);
    ck_assert_uint_eq(total, 4000 + 4000 + 80 + 2000);
    /* biggest first; equal sizes by label */
    ck_assert_str_eq(rows[0].label, "add");
    ck_assert_str_eq(rows[1].label, "empty");
    ck_assert_str_eq(rows[2].label, "mine / to_dtype");
    ck_assert_str_eq(rows[3].label, "mine / empty");
    ck_assert_int_eq(rows[0].dtype, WF_F32);
    ck_assert_int_eq(rows[2].dtype, WF_BF16);
    ck_assert_int_eq(rows[3].dtype, WF_F64);
    ck_assert_uint_eq(rows[0].bytes, 4000);
    ck_assert_int_eq(rows[0].count, 1);
    ck_assert_uint_eq(rows[1].bytes, 4000);
    ck_assert_int_eq(rows[1].count, 1);
    ck_assert_uint_eq(rows[2].bytes, 2000);
    ck_assert_uint_eq(rows[3].bytes, 80);
    ck_assert(wf_device_eq(rows[0].device, WF_CPU));

    /* now: a, d and e ("empty" holds a and e) */
    n = wf_memory_snapshot(WF_CPU, false, rows, 8, &total);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_eq(total, 4000 + 400 + 2000);
    const wf_memory_census_row *r = find(rows, n, "empty", WF_F32);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->bytes, 4400);
    ck_assert_int_eq(r->count, 2);
    ck_assert_ptr_null(find(rows, n, "add", WF_F32));   /* freed: not alive now */

    /* a new peak replaces the old one */
    wf_tensor *big = wf_ones(WF_SHAPE(5000), WF_F32);                /* 20000 B */
    n = wf_memory_snapshot(WF_CPU, true, rows, 8, &total);
    ck_assert_uint_eq(total, 4400 + 2000 + 20000);
    ck_assert_str_eq(rows[0].label, "empty");
    ck_assert_uint_eq(rows[0].bytes, 24400);
    ck_assert_ptr_null(find(rows, n, "add", WF_F32));

    /* reset: the peak restarts from what is live */
    wf_tensor_free(big);
    ck_assert_int_eq(wf_memory_history_reset_peak(), 0);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, true, NULL, 0, &total), 2);
    ck_assert_uint_eq(total, 4400 + 2000);

    /* too few rows: the biggest ones, and how many there are */
    wf_memory_census_row one[2];
    memset(one, 0x5a, sizeof one);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, false, one, 1, NULL), 2);
    ck_assert_str_eq(one[0].label, "empty");
    ck_assert_int_eq((unsigned char)one[1].label[0], 0x5a);   /* untouched */

    wf_tensor_free(a), wf_tensor_free(d), wf_tensor_free(e);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, false, NULL, 0, &total), 0);
    ck_assert_uint_eq(total, 0);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
    ck_assert(!wf_memory_is_recording());
}
END_TEST

/* a storage made before the census started, or under an earlier recording, is not taken off */
START_TEST(test_storages_from_before) {
    wf_tensor *old = wf_empty(WF_SHAPE(256), WF_F32);
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_tensor *mid = wf_empty(WF_SHAPE(64), WF_F32);
    ck_assert_int_eq(wf_memory_record_history(true), 0);   /* restart: forgets mid */
    wf_tensor *now = wf_empty(WF_SHAPE(16), WF_F32);
    wf_tensor_free(old);
    wf_tensor_free(mid);
    size_t total = 1;
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, false, NULL, 0, &total), 1);
    ck_assert_uint_eq(total, 64);
    wf_tensor_free(now);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, false, NULL, 0, &total), 0);
    ck_assert_uint_eq(total, 0);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

/* the engine labels a backward's allocations with the node that made them */
START_TEST(test_backward_labels) {
    wf_tensor *x = wf_rand(WF_SHAPE(32, 32), WF_F32);
    wf_set_requires_grad(x, true);
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_memory_set_label("forward");
    wf_tensor *y = wf_mul(x, x);
    wf_tensor *s = wf_sum(y, WF_ALL_DIMS, false);
    wf_memory_set_label(NULL);
    ck_assert_int_eq(wf_backward(s, NULL, false), 0);
    wf_memory_census_row rows[32];
    int n = wf_memory_snapshot(WF_CPU, true, rows, 32, NULL);
    ck_assert_int_gt(n, 0);
    ck_assert_int_le(n, 32);
    ck_assert_ptr_nonnull(find(rows, n, "forward / mul", WF_F32));
    bool mul_bw = false;
    for (int i = 0; i < n; i++)
        if (!strncmp(rows[i].label, "backward of MulBackward", 23)) mul_bw = true;
    ck_assert_msg(mul_bw, "no row of MulBackward's allocations");
    /* the forward's label does not leak into the backward: it ran under the engine's */
    ck_assert_ptr_null(find(rows, n, "forward / expand", WF_F32));
    wf_tensor_free(s), wf_tensor_free(y), wf_tensor_free(x);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

START_TEST(test_summary_text) {
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_memory_set_label("optimizer");
    wf_tensor *a = wf_zeros(WF_SHAPE(3, 1024), WF_F32);
    wf_memory_set_label(NULL);
    char buf[4096];
    int len = wf_memory_summary(WF_CPU, buf, sizeof buf);
    ck_assert_int_gt(len, 0);
    ck_assert_uint_eq(strlen(buf), (size_t)len);
    ck_assert_ptr_nonnull(strstr(buf, "at the peak 12.00 KiB (12288 bytes) in 1 storages"));
    ck_assert_ptr_nonnull(strstr(buf, "optimizer / empty"));
    ck_assert_ptr_nonnull(strstr(buf, "float32"));
    /* too small a buffer: an error naming the size needed, nothing written past it */
    char small[16] = "untouched";
    ck_assert_int_eq(wf_memory_summary(WF_CPU, small, sizeof small), WF_EINVAL);
    ck_assert_ptr_nonnull(strstr(wf_error_message(), "the table needs"));
    ck_assert_str_eq(small, "untouched");
    wf_clear_error();
    wf_tensor_free(a);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

START_TEST(test_bad_inputs) {
    wf_memory_census_row rows[2];
    char buf[64];
    /* off */
    ck_assert_int_eq(wf_memory_record_history(false), 0);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, true, rows, 2, NULL), WF_ESTATE);
    ck_assert_ptr_nonnull(strstr(wf_error_message(), "census is off"));
    ck_assert_int_eq(wf_memory_summary(WF_CPU, buf, sizeof buf), WF_ESTATE);
    ck_assert_int_eq(wf_memory_history_reset_peak(), WF_ESTATE);
    wf_clear_error();
    /* on, bad buffers and devices */
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, true, NULL, 2, NULL), WF_ENULL);
    ck_assert_ptr_nonnull(strstr(wf_error_message(), "rows is NULL"));
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, true, rows, -1, NULL), WF_EINVAL);
    ck_assert_int_eq(wf_memory_summary(WF_CPU, NULL, 10), WF_ENULL);
    ck_assert_int_eq(wf_memory_summary(WF_CPU, buf, 0), WF_EINVAL);
    ck_assert_int_eq(wf_memory_snapshot(WF_META, true, rows, 2, NULL), WF_EDEVICE);
    ck_assert_ptr_nonnull(strstr(wf_error_message(), "meta"));
    wf_clear_error();
    /* meta storages hold no memory: not counted */
    wf_tensor *m = wf_empty_on(WF_SHAPE(1 << 20), WF_F32, WF_META);
    ck_assert_ptr_nonnull(m);
    size_t total = 1;
    ck_assert_int_eq(wf_memory_snapshot(WF_CPU, true, NULL, 0, &total), 0);
    ck_assert_uint_eq(total, 0);
    wf_tensor_free(m);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("census");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_sequence_peak);
    tcase_add_test(tc, test_storages_from_before);
    tcase_add_test(tc, test_backward_labels);
    tcase_add_test(tc, test_summary_text);
    tcase_add_test(tc, test_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
