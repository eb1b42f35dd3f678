/* tests/tensor/test_core.c: creation, properties, errors, scopes, allocator, dtypes, printing. */
#include "test_util.h"

START_TEST(test_creation) {
    wf_tensor *z = wf_zeros(WF_SHAPE(2, 3), WF_F32);
    ck_assert_shape(z, 2, 3);
    ck_assert_int_eq(wf_numel(z), 6);
    ck_assert_int_eq(wf_tensor_dtype(z), WF_F32);
    ck_assert(wf_is_contiguous(z));
    ck_assert_tensor_near(z, ((double[]){ 0, 0, 0, 0, 0, 0 }), 6, 0);
    wf_tensor *o = wf_full(WF_SHAPE(2), 2.5, WF_F64);
    ck_assert_tensor_near(o, ((double[]){ 2.5, 2.5 }), 2, 0);
    wf_tensor *a = wf_arange(0, 5, 1, WF_I64);
    ck_assert_tensor_near(a, ((double[]){ 0, 1, 2, 3, 4 }), 5, 0);
    wf_tensor *a2 = wf_arange(1, 2, 0.25, WF_F32);
    ck_assert_tensor_near(a2, ((double[]){ 1, 1.25, 1.5, 1.75 }), 4, 0);
    wf_tensor *l = wf_linspace(0, 1, 5, WF_F64);
    ck_assert_tensor_near(l, ((double[]){ 0, 0.25, 0.5, 0.75, 1 }), 5, 0);
    wf_tensor *e = wf_eye(2, 3, WF_F32);
    ck_assert_tensor_near(e, ((double[]){ 1, 0, 0, 0, 1, 0 }), 6, 0);
    float data[] = { 1, 2, 3, 4 };
    wf_tensor *f = wf_from_data(data, WF_SHAPE(2, 2), WF_F32);
    ck_assert_tensor_near(f, ((double[]){ 1, 2, 3, 4 }), 4, 0);
    WF_SCOPE { ck_assert_double_eq(wf_item(wf_scalar(7, WF_F64)), 7); }
    wf_tensor *ts[] = { z, o, a, a2, l, e, f };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) wf_tensor_free(ts[i]);
}
END_TEST

START_TEST(test_dtypes_and_casts) {
    ck_assert_str_eq(wf_dtype_name(WF_BF16), "bfloat16");
    ck_assert_int_eq(wf_dtype_size(WF_F16), 2);
    wf_dtype dt;
    ck_assert_int_eq(wf_dtype_parse("bf16", &dt), 0);
    ck_assert_int_eq(dt, WF_BF16);
    ck_assert_int_eq(wf_dtype_parse("float128", &dt), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "float128");
    WF_SCOPE {
        /* values exactly representable survive f16/bf16; 1/3 rounds to nearest even */
        double v[] = { 1.0, -2.5, 65504.0, 1.0 / 3.0 };
        wf_tensor *x = wf_from_data(v, WF_SHAPE(4), WF_F64);
        wf_tensor *h = wf_to_dtype(x, WF_F16);
        ck_assert_tensor_near(h, ((double[]){ 1.0, -2.5, 65504.0, 0.333251953125 }), 4, 0);
        wf_tensor *b = wf_to_dtype(x, WF_BF16);
        ck_assert_tensor_near(wf_narrow(b, 0, 0, 2), ((double[]){ 1.0, -2.5 }), 2, 0);
        ck_assert_tensor_near(wf_narrow(b, 0, 3, 1), ((double[]){ 0.333984375 }), 1, 0);
        /* f16 overflow becomes inf, as IEEE rounding says */
        wf_tensor *big = wf_to_dtype(wf_full(WF_SHAPE(1), 70000.0, WF_F32), WF_F16);
        ck_assert(isinf(wf_item(big)));
        wf_tensor *i = wf_to_dtype(wf_full(WF_SHAPE(2), 3.7, WF_F32), WF_I32);
        ck_assert_tensor_near(i, ((double[]){ 3, 3 }), 2, 0);
    }
}
END_TEST

START_TEST(test_errors_and_null_propagation) {
    wf_clear_error();
    wf_tensor *bad = wf_zeros(WF_SHAPE(2, -1), WF_F32);
    ck_assert_ptr_null(bad);
    ck_assert_error(WF_ESHAPE, "negative size");
    WF_SCOPE {
        wf_tensor *a = wf_zeros(WF_SHAPE(2, 3), WF_F32), *b = wf_zeros(WF_SHAPE(4, 3), WF_F32);
        wf_tensor *r = wf_add(wf_exp(wf_add(a, b)), a);   /* the first error stays */
        ck_assert_ptr_null(r);
        ck_assert_error(WF_ESHAPE, "wf_add");
        ck_assert_ptr_null(wf_exp(NULL));
        ck_assert_error(WF_ENULL, "wf_exp");   /* a NULL input alone is recorded (nothing came before) */
        ck_assert_ptr_null(wf_add(a, NULL));
        ck_assert_error(WF_ENULL, "wf_add");
        ck_assert(isnan(wf_item(a)));
        ck_assert_error(WF_ESHAPE, "wf_item");
        ck_assert_ptr_null(wf_zeros_on(WF_SHAPE(2), WF_F32, WF_CUDA(7)));
        ck_assert(wf_error() == WF_ENOTSUP || wf_error() == WF_EDEVICE);
        ck_assert(strstr(wf_error_message(), "cuda:7") != NULL);
        wf_clear_error();
        ck_assert_int_eq(wf_size(a, 5), -1);
        ck_assert_error(WF_EINDEX, "wf_size");
        wf_device d;
        ck_assert_int_eq(wf_device_parse("tpu", &d), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "tpu");
        ck_assert_int_eq(wf_device_parse("cuda:1", &d), 0);
        ck_assert_int_eq(d.type, WF_DEV_CUDA);
        ck_assert_int_eq(d.index, 1);
    }
}
END_TEST

START_TEST(test_scopes_release_temporaries) {
    wf_memory_stats s0, s1, s2;
    wf_memory_stats_get(&s0);
    wf_tensor *kept = NULL;
    wf_scope_begin();
    for (int i = 0; i < 100; i++) {
        wf_tensor *t = wf_ones(WF_SHAPE(256), WF_F32);
        wf_tensor *u = wf_add(t, t);
        if (i == 99) kept = wf_keep(u);
    }
    wf_scope_end();
    wf_memory_stats_get(&s1);
    ck_assert_ptr_nonnull(kept);
    /* only the kept tensor remains */
    ck_assert_uint_le(s1.allocated - s0.allocated, 2048);
    WF_SCOPE { ck_assert_double_eq(wf_item(wf_sum_all(kept)), 512.0); }
    /* steady state: the cache serves repeated allocations without new system allocations */
    for (int i = 0; i < 10; i++) WF_SCOPE { wf_add(wf_ones(WF_SHAPE(1000), WF_F32), wf_ones(WF_SHAPE(1000), WF_F32)); }
    wf_memory_stats_get(&s1);
    wf_scope_begin();
    for (int i = 0; i < 10; i++) WF_SCOPE { wf_add(wf_ones(WF_SHAPE(1000), WF_F32), wf_ones(WF_SHAPE(1000), WF_F32)); }
    wf_scope_end();
    wf_memory_stats_get(&s2);
    ck_assert_uint_eq(s2.n_system_allocs, s1.n_system_allocs);
    wf_tensor_free(kept);
}
END_TEST

/* A freed block over 32 MiB (a dataset, an evaluation workspace) goes back to the system
 * instead of staying resident in the cache; a small one is kept for the next step. */
START_TEST(test_large_blocks_not_cached) {
    wf_empty_cache();
    wf_memory_stats s0, s1, s2;
    wf_memory_stats_get(&s0);
    wf_tensor *big = wf_empty(WF_SHAPE(40 << 20), WF_U8);
    ck_assert_ptr_nonnull(big);
    wf_memory_stats_get(&s1);
    ck_assert_uint_ge(s1.reserved - s0.reserved, (size_t)40 << 20);
    wf_tensor_free(big);
    wf_memory_stats_get(&s2);
    ck_assert_uint_eq(s2.reserved, s0.reserved);
    ck_assert_uint_eq(s2.allocated, s0.allocated);
    wf_tensor *small = wf_empty(WF_SHAPE(1 << 20), WF_U8);
    ck_assert_ptr_nonnull(small);
    wf_tensor_free(small);
    wf_memory_stats_get(&s2);
    ck_assert_uint_ge(s2.reserved - s0.reserved, (size_t)1 << 20);   /* cached */
    wf_tensor *again = wf_empty(WF_SHAPE(1 << 20), WF_U8);
    wf_memory_stats n;
    wf_memory_stats_get(&n);
    ck_assert_uint_eq(n.n_system_allocs, s2.n_system_allocs);      /* served from the cache */
    wf_tensor_free(again);
    wf_empty_cache();
}
END_TEST

/* a counting allocator, as an embedding program would install */
static size_t g_live;
static void *count_alloc(void *ud, size_t n) { (void)ud; g_live += n; void *p = NULL; return posix_memalign(&p, 64, n) ? NULL : p; }
static void count_free(void *ud, void *p, size_t n) { (void)ud; g_live -= n; free(p); }

START_TEST(test_custom_allocator) {
    wf_empty_cache();
    ck_assert_int_eq(wf_set_allocator(&(wf_allocator){ count_alloc, count_free, NULL }), 0);
    wf_tensor *t = wf_ones(WF_SHAPE(1000), WF_F32);
    ck_assert_uint_ge(g_live, 4000);
    wf_tensor *held = wf_ones(WF_SHAPE(10), WF_F32);
    ck_assert_int_eq(wf_set_allocator(NULL), WF_ESTATE);   /* tensors alive: refused */
    ck_assert_error(WF_ESTATE, "wf_set_allocator");
    wf_tensor_free(t);
    wf_tensor_free(held);
    wf_empty_cache();
    ck_assert_uint_eq(g_live, 0);
    ck_assert_int_eq(wf_set_allocator(NULL), 0);
}
END_TEST

START_TEST(test_print) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 2, 3, 4 }, WF_SHAPE(2, 2), WF_F64);
        ck_assert_int_eq(wf_fprint(f, x), 0);
        wf_fprint(f, wf_arange(0, 3, 1, WF_I64));
    }
    fclose(f);
    ck_assert_msg(strstr(buf, "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=float64)") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "tensor([0, 1, 2])") != NULL, "%s", buf);
    free(buf);
}
END_TEST


/* thread defaults, the *_like constructors and the text helpers */
START_TEST(test_defaults_like_and_names) {
    ck_assert_int_eq(wf_get_default_dtype(), WF_F32);
    ck_assert_int_eq(wf_set_default_dtype(WF_F64), 0);
    WF_SCOPE {
        wf_tensor *z = wf_zeros(WF_SHAPE(2, 3), WF_DTYPE_DEFAULT);
        ck_assert_int_eq(wf_tensor_dtype(z), WF_F64);
        wf_tensor *e = wf_empty_like(z);
        ck_assert_shape(e, 2, 3);
        ck_assert_int_eq(wf_tensor_dtype(e), WF_F64);
        wf_tensor *r = wf_rand_like(z);
        ck_assert_shape(r, 2, 3);
        ck_assert(wf_item(wf_amin(r, WF_ALL_DIMS, false)) >= 0 && wf_item(wf_amax(r, WF_ALL_DIMS, false)) < 1);
        char buf[32];
        ck_assert_str_eq(wf_shape_str(z, buf, sizeof buf), "[2,3]");
        ck_assert_str_eq(wf_shape_str(NULL, buf, sizeof buf), "(null)");
        ck_assert_ptr_null(wf_rand_like(wf_zeros(WF_SHAPE(2), WF_I64)));   /* integer: refused */
        ck_assert_error(WF_EDTYPE, "wf_rand_like");
    }
    ck_assert_int_eq(wf_set_default_dtype(WF_I32), WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "wf_set_default_dtype");
    ck_assert_int_eq(wf_set_default_dtype(WF_F32), 0);
    ck_assert_int_eq(wf_get_default_device().type, WF_DEV_CPU);
    char d[16];
    ck_assert_str_eq(wf_device_str(WF_CUDA(3), d, sizeof d), "cuda:3");
    ck_assert_str_eq(wf_device_str(WF_META, d, sizeof d), "meta");
    if (wf_cuda_device_count() == 0) {
        ck_assert_int_ne(wf_set_default_device(WF_CUDA(0)), 0);   /* no such device: refused */
        wf_clear_error();
        ck_assert_int_eq(wf_get_default_device().type, WF_DEV_CPU);
    }
    /* wf_print goes to stdout: it must succeed on a tensor and refuse NULL */
    WF_SCOPE { ck_assert_int_eq(wf_print(wf_arange(0, 2, 1, WF_I64)), 0); }
    ck_assert_int_eq(wf_print(NULL), WF_ENULL);
    wf_clear_error();
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor_core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_creation);
    tcase_add_test(tc, test_dtypes_and_casts);
    tcase_add_test(tc, test_errors_and_null_propagation);
    tcase_add_test(tc, test_scopes_release_temporaries);
    tcase_add_test(tc, test_large_blocks_not_cached);
    tcase_add_test(tc, test_custom_allocator);
    tcase_add_test(tc, test_print);
    tcase_add_test(tc, test_defaults_like_and_names);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
