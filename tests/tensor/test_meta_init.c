/* tests/tensor/test_meta_init.c: the notes of tensors built on the meta device and their
 * materialization by rows (tensor/meta_init.h, tensor/random.c): for every split of an odd
 * shape into row ranges, the rows of a noted uniform or normal draw (f32, f64, bf16: 4 or 2
 * elements per Philox counter, so ranges start mid-counter) equal the same rows of the
 * tensor the same seed draws on the CPU, bit for bit; fills too; a meta tensor changed by an
 * unnoted op, one without a note, and rows out of range are refused with messages. */
#include "test_util.h"
#include "tensor/meta_init.h"

#include <string.h>

enum { ROWS = 7, COLS = 3 };

static wf_tensor *meta_drawn(int kind, wf_dtype dt, unsigned seed) {
    wf_manual_seed(seed);
    wf_tensor *t = wf_empty_on(WF_SHAPE(ROWS, COLS), dt, WF_META);
    ck_assert_ptr_nonnull(t);
    if (kind == 0) ck_assert_int_eq(wf_uniform_(t, -1, 2), 0);
    else if (kind == 1) ck_assert_int_eq(wf_normal_(t, 0.5, 3), 0);
    else ck_assert_int_eq(wf_fill_(t, 0.25), 0);
    return t;
}

static void check_rows(int kind, wf_dtype dt) {
    WF_SCOPE {
        bool prev = wf__meta_record(true);
        wf_tensor *t = meta_drawn(kind, dt, 42);
        wf__meta_record(prev);
        ck_assert(wf__meta_pending(t));
        /* the same draw for real */
        wf_manual_seed(42);
        wf_tensor *ref = wf_empty_on(WF_SHAPE(ROWS, COLS), dt, WF_CPU);
        if (kind == 0) wf_uniform_(ref, -1, 2);
        else if (kind == 1) wf_normal_(ref, 0.5, 3);
        else wf_fill_(ref, 0.25);
        double want[ROWS * COLS];
        ck_assert_int_eq(wf_to_array(ref, want, WF_F64), 0);
        for (int r0 = 0; r0 <= ROWS; r0++)
            for (int c = 0; r0 + c <= ROWS; c++) {
                wf_tensor *dst = wf_empty_on(WF_SHAPE(c, COLS), dt, WF_CPU);
                ck_assert_msg(wf__meta_materialize_rows(t, r0, c, dst, "t") == 0, "%s", wf_error_message());
                double got[ROWS * COLS];
                ck_assert_int_eq(wf_to_array(dst, got, WF_F64), 0);
                for (int i = 0; i < c * COLS; i++)
                    ck_assert_msg(got[i] == want[r0 * COLS + i], "kind %d %s rows [%d,%d) element %d: %.9g vs %.9g",
                                  kind, wf_dtype_name(dt), r0, r0 + c, i, got[i], want[r0 * COLS + i]);
            }
        /* into another dtype (an f32 shard of a bf16 parameter): the values rounded once */
        wf_tensor *d32 = wf_empty_on(WF_SHAPE(2, COLS), WF_F32, WF_CPU);
        ck_assert_int_eq(wf__meta_materialize_rows(t, 5, 2, d32, "t"), 0);
        double got[2 * COLS];
        wf_to_array(d32, got, WF_F64);
        for (int i = 0; i < 2 * COLS; i++) ck_assert(got[i] == (double)(float)want[5 * COLS + i]);
        wf__meta_forget(t);
        ck_assert(!wf__meta_pending(t));
    }
}

START_TEST(test_rows_equal_the_real_draw) {
    static const wf_dtype dts[] = { WF_F32, WF_F64, WF_BF16 };
    for (int kind = 0; kind < 3; kind++)
        for (int d = 0; d < 3; d++) check_rows(kind, dts[d]);
}
END_TEST

START_TEST(test_refusals) {
    WF_SCOPE {
        bool prev = wf__meta_record(true);
        wf_tensor *t = meta_drawn(0, WF_F32, 1);
        wf_tensor *u = wf_empty_on(WF_SHAPE(ROWS, COLS), WF_F32, WF_META);   /* no initializer */
        WF_NO_GRAD { ck_assert_int_eq(wf_mul_scalar_(t, 2), 0); }            /* not noted */
        wf__meta_record(prev);
        wf_tensor *dst = wf_empty_on(WF_SHAPE(1, COLS), WF_F32, WF_CPU);
        ck_assert_int_eq(wf__meta_materialize_rows(t, 0, 1, dst, "w"), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "\"w\" was built on the meta device and then changed by an operation weft cannot replay");
        ck_assert_int_eq(wf__meta_materialize_rows(u, 0, 1, dst, "u"), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "\"u\" was built on the meta device (init_module with empty_init under FSDP) without "
                        "an initializer weft recorded");
        /* a fresh note replaces the stale one; rows must fit */
        wf__meta_record(true);
        ck_assert_int_eq(wf_uniform_(t, 0, 1), 0);
        wf__meta_record(prev);
        ck_assert_int_eq(wf__meta_materialize_rows(t, 0, 1, dst, "w"), 0);
        ck_assert_int_eq(wf__meta_materialize_rows(t, 6, 2, dst, "w"), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "\"w\": rows [6, 8) of 7 do not fit the destination");
        /* not recording: no notes */
        wf_tensor *v = wf_empty_on(WF_SHAPE(2), WF_F32, WF_META);
        ck_assert_int_eq(wf_uniform_(v, 0, 1), 0);
        ck_assert(!wf__meta_pending(v));
        wf__meta_forget_all();
        ck_assert(!wf__meta_pending(t));
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("meta_init");
    TCase *tc = tcase_create("meta_init");
    tcase_add_test(tc, test_rows_equal_the_real_draw);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
