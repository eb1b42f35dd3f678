/* tests/fabric/test_throughput.c: Fabric's throughput utilities (fabric/throughput.c): the
 * sliding-window arithmetic of wf_throughput (rates, FLOPs, MFU, world size), the monitor's
 * logging, measure_flops's exact GEMM count on the meta device, and the peak table. */
#include "test_util.h"
#include "weft/fabric.h"

static char root[64];

static wf_throughput *tp_new(int window, int world, double peak) {
    wf_throughput *t = wf_throughput_new(&(wf_throughput_opts){ .window_size = window, .world_size = world,
                                                                .available_flops = peak });
    ck_assert_msg(t != NULL, "%s", wf_error_message());
    return t;
}

#define NEAR(a, b) do { double na_ = (a), nb_ = (b); \
    ck_assert_msg(fabs(na_ - nb_) <= 1e-9 * (1 + fabs(nb_)), "%s = %.12g, expected %.12g", #a, na_, nb_); } while (0)

START_TEST(test_window_rates) {
    wf_throughput *t = tp_new(3, 1, 100);
    wf_throughput_metrics m;
    ck_assert_int_eq(wf_throughput_update(t, 0, 0, 0, 0, 10), 0);
    ck_assert_int_eq(wf_throughput_update(t, 1, 1, 4, 40, 20), 0);
    ck_assert_int_eq(wf_throughput_compute(t, &m), 0);
    /* the window is not full yet: totals only */
    NEAR(wf_throughput_metric(&m, "samples"), 4);
    NEAR(wf_throughput_metric(&m, "lengths"), 40);
    ck_assert(isnan(wf_throughput_metric(&m, "device/samples_per_sec")));
    ck_assert(isnan(wf_throughput_metric(&m, "device/mfu")));
    ck_assert_int_eq(wf_throughput_update(t, 2, 2, 8, 80, 30), 0);
    ck_assert_int_eq(wf_throughput_compute(t, &m), 0);
    NEAR(wf_throughput_metric(&m, "time"), 2);
    NEAR(wf_throughput_metric(&m, "device/batches_per_sec"), 1);
    NEAR(wf_throughput_metric(&m, "device/samples_per_sec"), 4);
    NEAR(wf_throughput_metric(&m, "device/items_per_sec"), 40);
    /* FLOPs of the updates after the window's first (20 + 30) over its 2 s */
    NEAR(wf_throughput_metric(&m, "device/flops_per_sec"), 25);
    NEAR(wf_throughput_metric(&m, "device/mfu"), 0.25);
    ck_assert(isnan(wf_throughput_metric(&m, "samples_per_sec")));   /* one device: no world metrics */
    /* the window slides: the first update drops out */
    ck_assert_int_eq(wf_throughput_update(t, 4, 3, 12, 120, 40), 0);
    ck_assert_int_eq(wf_throughput_compute(t, &m), 0);
    NEAR(wf_throughput_metric(&m, "device/batches_per_sec"), 2.0 / 3);
    NEAR(wf_throughput_metric(&m, "device/items_per_sec"), 80.0 / 3);
    NEAR(wf_throughput_metric(&m, "device/flops_per_sec"), 70.0 / 3);
    NEAR(wf_throughput_metric(&m, "device/mfu"), 70.0 / 300);
    /* reset forgets everything */
    wf_throughput_reset(t);
    ck_assert_int_eq(wf_throughput_compute(t, &m), WF_ESTATE);
    wf_clear_error();
    ck_assert_int_eq(wf_throughput_update(t, 0, 0, 0, -1, -1), 0);   /* lengths and flops untracked now */
    ck_assert_int_eq(wf_throughput_update(t, 1, 2, 2, -1, -1), 0);
    ck_assert_int_eq(wf_throughput_update(t, 2, 4, 4, -1, -1), 0);
    ck_assert_int_eq(wf_throughput_compute(t, &m), 0);
    NEAR(wf_throughput_metric(&m, "device/batches_per_sec"), 2);
    ck_assert(isnan(wf_throughput_metric(&m, "lengths")));
    ck_assert(isnan(wf_throughput_metric(&m, "device/flops_per_sec")));
    wf_throughput_free(t);
}
END_TEST

START_TEST(test_world_size_and_separator) {
    wf_throughput *t = wf_throughput_new(&(wf_throughput_opts){ .window_size = 2, .world_size = 2,
                                                                .available_flops = 40, .separator = "." });
    ck_assert_ptr_nonnull(t);
    wf_throughput_metrics m;
    ck_assert_int_eq(wf_throughput_update(t, 0, 0, 0, 0, 10), 0);
    ck_assert_int_eq(wf_throughput_update(t, 2, 4, 8, 64, 10), 0);   /* 10 FLOPs on each of 2 devices */
    ck_assert_int_eq(wf_throughput_compute(t, &m), 0);
    NEAR(wf_throughput_metric(&m, "device.batches_per_sec"), 2);
    NEAR(wf_throughput_metric(&m, "batches_per_sec"), 4);
    NEAR(wf_throughput_metric(&m, "samples_per_sec"), 8);
    NEAR(wf_throughput_metric(&m, "items_per_sec"), 64);
    NEAR(wf_throughput_metric(&m, "flops_per_sec"), 10);
    NEAR(wf_throughput_metric(&m, "device.flops_per_sec"), 5);
    NEAR(wf_throughput_metric(&m, "device.mfu"), 5.0 / 40);
    ck_assert(isnan(wf_throughput_metric(&m, "device/mfu")));
    wf_throughput_free(t);
}
END_TEST

START_TEST(test_bad_inputs) {
    ck_assert_ptr_null(wf_throughput_new(&(wf_throughput_opts){ .window_size = 1 }));
    ck_assert_error(WF_EINVAL, "window_size must be >= 2, got 1");
    ck_assert_ptr_null(wf_throughput_new(&(wf_throughput_opts){ .world_size = -2 }));
    ck_assert_error(WF_EINVAL, "world_size must be >= 1");
    ck_assert_ptr_null(wf_throughput_new(&(wf_throughput_opts){ .available_flops = -1 }));
    ck_assert_error(WF_EINVAL, "available_flops");
    wf_throughput *t = tp_new(0, 0, 0);   /* defaults: window 100, one device */
    wf_throughput_metrics m;
    ck_assert_int_eq(wf_throughput_compute(t, &m), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "no update yet");
    ck_assert_int_eq(wf_throughput_update(t, 1, 1, 4, 3, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "lengths (3) must be >= samples (4)");
    ck_assert_int_eq(wf_throughput_update(t, NAN, 1, 4, 8, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "time must be finite");
    ck_assert_int_eq(wf_throughput_update(t, 1, -1, 4, 8, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "batches, samples >= 0");
    ck_assert_int_eq(wf_throughput_update(t, 5, 2, 4, 8, -1), 0);
    ck_assert_int_eq(wf_throughput_update(t, 4, 3, 6, 12, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "went backwards (time 4 after 5");
    ck_assert_int_eq(wf_throughput_update(t, 6, 1, 6, 12, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "pass running totals");
    ck_assert_int_eq(wf_throughput_update(t, 6, 3, 6, -1, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "lengths must be given on every update or on none");
    ck_assert_int_eq(wf_throughput_update(t, 6, 3, 6, 12, 5), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "flops must be given on every update or on none");
    ck_assert_int_eq(wf_throughput_update(NULL, 6, 3, 6, 12, -1), WF_ENULL);
    ck_assert_error(WF_ENULL, "t is NULL");
    ck_assert_int_eq(wf_throughput_compute_and_log(t, 0, NULL), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "not a monitor");
    ck_assert(isnan(wf_throughput_metric(NULL, "time")));
    wf_throughput_free(t);
    wf_throughput_free(NULL);
}
END_TEST

START_TEST(test_monitor_logs) {
    wf_logger *l = wf_csv_logger_new(root, &(wf_logger_opts){ .name = "tp", .flush_logs_every_n_steps = 1 });
    ck_assert_ptr_nonnull(l);
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .loggers = &l, .n_loggers = 1 });
    ck_assert_msg(fab != NULL, "%s", wf_error_message());
    wf_throughput *t = wf_throughput_monitor_new(fab, &(wf_throughput_opts){ .window_size = 2, .available_flops = 1000 });
    ck_assert_ptr_nonnull(t);
    NEAR(wf_throughput_available_flops(t), 1000);
    ck_assert_int_eq(wf_throughput_update(t, 0, 0, 0, 0, 100), 0);
    ck_assert_int_eq(wf_throughput_update(t, 0.5, 1, 2, 20, 100), 0);
    wf_throughput_metrics m;
    ck_assert_int_eq(wf_throughput_compute_and_log(t, 7, &m), 0);
    NEAR(wf_throughput_metric(&m, "device/mfu"), 0.2);
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.csv", wf_logger_log_dir(l));
    wf_throughput_free(t);
    /* the CPU monitor looks its peak up itself (0 only where /proc/cpuinfo has no clock) */
    t = wf_throughput_monitor_new(fab, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert(wf_throughput_available_flops(t) >= 0);
    ck_assert_int_eq(wf_error(), 0);
    wf_throughput_free(t);
    wf_fabric_free(fab);   /* flushes the CSV */
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    ck_assert_msg(strstr(text, "device/mfu") && strstr(text, "device/items_per_sec") && strstr(text, ",7"), "%s", text);
    ck_assert_ptr_null(wf_throughput_monitor_new(NULL, NULL));
    ck_assert_error(WF_ENULL, "fab is NULL");
}
END_TEST

/* ---------------------------------------------------------------- measure_flops */

static wf_tensor *fwd_input(wf_module *m, void *ud) {
    wf_tensor *x = ud;
    return wf_module_forward(m, x);
}
static wf_tensor *loss_sum(wf_tensor *y, void *ud) { (void)ud; return wf_sum_all(y); }

static wf_module *on_meta(wf_module *m) {
    ck_assert_msg(m != NULL, "%s", wf_error_message());
    ck_assert_int_eq(wf_module_to(m, WF_META, WF_DTYPE_DEFAULT), 0);
    return m;
}

START_TEST(test_measure_flops_linear_mlp) {
    int64_t f = -1, B = 4, in = 5, out = 3;
    wf_module *lin = on_meta(wf_linear_new(in, out, true));
    wf_tensor *x = wf_zeros_on(WF_SHAPE(B, in), WF_F32, WF_META);
    ck_assert_int_eq(wf_measure_flops(lin, fwd_input, NULL, x, &f), 0);
    ck_assert_int_eq(f, 2 * B * out * in);
    /* backward: the input needs a gradient too, so two more products of the same size */
    wf_set_requires_grad(x, true);
    ck_assert_int_eq(wf_measure_flops(lin, fwd_input, loss_sum, x, &f), 0);
    ck_assert_int_eq(f, 3 * 2 * B * out * in);
    ck_assert_ptr_null(wf_grad(wf_module_get_parameter(lin, "weight")));   /* gradients dropped */
    wf_tensor_free(x);

    /* an MLP 784-256-10 on an input without gradient: the first layer's input gradient is skipped */
    wf_module *mlp = on_meta(wf_sequential_new(3, wf_linear_new(784, 256, true), wf_relu_new(), wf_linear_new(256, 10, true)));
    x = wf_zeros_on(WF_SHAPE(8, 784), WF_F32, WF_META);
    int64_t fwd = 2 * 8 * (784 * 256 + 256 * 10);
    ck_assert_int_eq(wf_measure_flops(mlp, fwd_input, NULL, x, &f), 0);
    ck_assert_int_eq(f, fwd);
    ck_assert_int_eq(wf_measure_flops(mlp, fwd_input, loss_sum, x, &f), 0);
    ck_assert_int_eq(f, fwd + 2 * 8 * 784 * 256 + 2 * 2 * 8 * 256 * 10);
    wf_tensor_free(x);
    wf_module_free(mlp);
    wf_module_free(lin);
}
END_TEST

START_TEST(test_measure_flops_conv_matmul) {
    int64_t f = -1;
    wf_module *conv = on_meta(wf_conv2d_new(3, 4, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 } }));
    wf_tensor *x = wf_zeros_on(WF_SHAPE(2, 3, 8, 8), WF_F32, WF_META);
    wf_set_requires_grad(x, true);
    int64_t fwd = 2 * (2 * 4 * 6 * 6) * (3 * 3 * 3);
    ck_assert_int_eq(wf_measure_flops(conv, fwd_input, NULL, x, &f), 0);
    ck_assert_int_eq(f, fwd);
    ck_assert_int_eq(wf_measure_flops(conv, fwd_input, loss_sum, x, &f), 0);
    ck_assert_int_eq(f, 3 * fwd);
    wf_tensor_free(x);
    wf_module_free(conv);
}
END_TEST

START_TEST(test_measure_flops_errors) {
    int64_t f = 5;
    wf_module *lin = wf_linear_new(4, 2, false);   /* on the CPU */
    wf_tensor *x = wf_zeros(WF_SHAPE(1, 4), WF_F32);
    ck_assert_int_eq(wf_measure_flops(lin, fwd_input, NULL, x, &f), WF_EDEVICE);
    ck_assert_error(WF_EDEVICE, "must be on the meta device");
    ck_assert_int_eq(f, 0);
    ck_assert_int_eq(wf_measure_flops(NULL, fwd_input, NULL, x, &f), WF_ENULL);
    ck_assert_error(WF_ENULL, "model, forward and flops");
    /* a forward that fails: its error comes back */
    ck_assert_int_eq(wf_module_to(lin, WF_META, WF_DTYPE_DEFAULT), 0);
    wf_tensor *bad = wf_zeros_on(WF_SHAPE(1, 3), WF_F32, WF_META);
    ck_assert_int_eq(wf_measure_flops(lin, fwd_input, NULL, bad, &f), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "in_features");
    wf_tensor_free(bad);
    wf_tensor_free(x);
    wf_module_free(lin);
}
END_TEST

/* ---------------------------------------------------------------- peaks */

START_TEST(test_available_flops) {
    NEAR(wf_get_available_flops("NVIDIA H100 80GB HBM3", "bf16-mixed", false), 989.4e12);
    NEAR(wf_get_available_flops("NVIDIA H100 80GB HBM3", "32-true", false), 66.9e12);
    NEAR(wf_get_available_flops("NVIDIA H100 80GB HBM3", "32-true", true), 494.7e12);
    NEAR(wf_get_available_flops("NVIDIA H100 PCIe", "16-mixed", false), 756e12);
    NEAR(wf_get_available_flops("NVIDIA H100 NVL", "bf16-true", false), 835.5e12);
    NEAR(wf_get_available_flops("NVIDIA H200", "bf16-mixed", false), 989.4e12);
    NEAR(wf_get_available_flops("NVIDIA H200", "transformer-engine", false), 1978.9e12);
    NEAR(wf_get_available_flops("NVIDIA A100-SXM4-80GB", "64-true", false), 9.7e12);
    ck_assert(wf_get_available_flops("NVIDIA A100-SXM4-80GB", "transformer-engine", false) == 0);
    ck_assert_error(WF_ENOTFOUND, "precision 'transformer-engine' on a100");
    ck_assert(wf_get_available_flops("NVIDIA GeForce GTX 1080", "32-true", false) == 0);
    ck_assert_error(WF_ENOTFOUND, "no peak FLOP/s known for device 'NVIDIA GeForce GTX 1080'");
    ck_assert(wf_get_available_flops(NULL, "32-true", false) == 0);
    ck_assert_error(WF_ENULL, "must not be NULL");
    NEAR(wf_cpu_peak_flops(4, 2.0, 32, 4), 4 * 2e9 * 32);
    NEAR(wf_cpu_peak_flops(4, 2.0, 0, 8), 4 * 2e9 * 16);   /* float64: half the lanes */
    NEAR(wf_cpu_peak_flops(2, 3.0, 0, 4), 2 * 3e9 * 32);
    char name[128];
    ck_assert_int_eq(wf_device_name(WF_META, name, sizeof name), WF_ENOTFOUND);
    ck_assert_error(WF_ENOTFOUND, "meta device has no name");
    ck_assert_int_eq(wf_device_name(WF_CPU, NULL, 0), WF_ENULL);
    wf_clear_error();
}
END_TEST

int main(void) {
    snprintf(root, sizeof root, "/tmp/weft-tp-XXXXXX");
    if (!mkdtemp(root)) return 1;
    Suite *s = suite_create("fabric_throughput");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_window_rates);
    tcase_add_test(tc, test_world_size_and_separator);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_monitor_logs);
    tcase_add_test(tc, test_measure_flops_linear_mlp);
    tcase_add_test(tc, test_measure_flops_conv_matmul);
    tcase_add_test(tc, test_measure_flops_errors);
    tcase_add_test(tc, test_available_flops);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
