/* tests/precision/test_fp8_plugin.c: the "transformer-engine" precision (fp8) where there is no
 * fp8 GEMM: the name is known (it is in the valid-names message) and refused with WF_ENOTSUP by
 * wf_precision_new and wf_fabric_new on the CPU, the message naming the device and what it
 * needs; on cuda:0 without a GPU of capability 8.9 it fails as well (the GPU case is
 * tests/cuda/test_cuda_fp8.c). */
#include "test_util.h"
#include "weft/fabric.h"
#include "weft/precision.h"
#include "autograd/fn_fp8_linear.h"

START_TEST(test_valid_names_list_it) {
    ck_assert_ptr_null(wf_precision_new("fp8", WF_CPU, NULL, 0));
    ck_assert_error(WF_EINVAL, "'bf16-mixed', 'transformer-engine', '64'");
    ck_assert_ptr_null(wf_precision_new("transformer_engine", WF_CPU, NULL, 0));
    ck_assert_error(WF_EINVAL, "precision 'transformer_engine' is invalid");
}
END_TEST

START_TEST(test_refused_on_the_cpu) {
    char w[256] = "x";
    ck_assert_ptr_null(wf_precision_new("transformer-engine", WF_CPU, w, sizeof w));
    ck_assert_msg(wf_error() == WF_ENOTSUP, "%s", wf_error_message());
    ck_assert_str_eq(w, "");
    ck_assert_error(WF_ENOTSUP, "wf_precision_new: precision 'transformer-engine' needs compute capability 8.9 or "
                                "newer (Ada, Hopper); the CPU has no fp8 GEMM");
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .precision = "transformer-engine", .quiet = true });
    ck_assert_ptr_null(f);
    ck_assert_error(WF_ENOTSUP, "wf_fabric_new: precision: wf_precision_new: precision 'transformer-engine' needs compute "
                                "capability 8.9 or newer (Ada, Hopper); the CPU has no fp8 GEMM");
}
END_TEST

START_TEST(test_cuda_without_a_gpu) {
    if (wf_cuda_device_count() > 0) return;   /* a GPU here: tests/cuda/test_cuda_fp8.c's case */
    ck_assert_ptr_null(wf_precision_new("transformer-engine", WF_CUDA(0), NULL, 0));
    int e = wf_error();
    ck_assert_msg(e == WF_ENOTSUP || e == WF_EDEVICE, "got %s: %s", wf_error_name(e), wf_error_message());
    ck_assert_msg(strstr(wf_error_message(), "cuda:0"), "%s", wf_error_message());
    wf_clear_error();
}
END_TEST

/* the fp8 region the plugin's forward context opens: off outside, nested, per thread's depth
 * (wf_fp8_autocast_enabled, which examples/gpt's MLP reads to go through its Linear modules) */
START_TEST(test_fp8_region) {
    ck_assert(!wf_fp8_autocast_enabled());
    wf__fp8_autocast_begin();
    wf__fp8_autocast_begin();
    ck_assert(wf_fp8_autocast_enabled());
    wf__fp8_autocast_end();
    ck_assert(wf_fp8_autocast_enabled());
    wf__fp8_autocast_end();
    ck_assert(!wf_fp8_autocast_enabled());
    wf__fp8_autocast_end();   /* one too many: stays off */
    ck_assert(!wf_fp8_autocast_enabled());
    wf__fp8_autocast_begin();
    ck_assert(wf_fp8_autocast_enabled());
    wf__fp8_autocast_end();
}
END_TEST

int main(void) {
    Suite *s = suite_create("fp8_plugin");
    TCase *tc = tcase_create("fp8_plugin");
    tcase_add_test(tc, test_valid_names_list_it);
    tcase_add_test(tc, test_refused_on_the_cpu);
    tcase_add_test(tc, test_cuda_without_a_gpu);
    tcase_add_test(tc, test_fp8_region);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
