/* fabric/throughput_stub.c: Lightning's throughput utilities in the minimal (embedded)
 * preset, whose library must stay under 1 MB: peak-FLOP tables, MFU and FLOP counting are
 * for accelerators and benchmarks, not for a board. Each function fails naming itself. */
#include "tensor/tensor_impl.h"
#include "weft/fabric.h"

#include <math.h>

#define MINIMAL(fn) wf__error(WF_ENOTSUP, fn ": not in the minimal build of weft (throughput utilities)")

double wf_get_available_flops(const char *device_name, const char *precision, bool tf32) {
    (void)device_name; (void)precision; (void)tf32;
    return MINIMAL("wf_get_available_flops"), 0;
}
double wf_cpu_peak_flops(int cores, double ghz, double flops_per_cycle, int dtype_bytes) {
    (void)cores; (void)ghz; (void)flops_per_cycle; (void)dtype_bytes;
    return MINIMAL("wf_cpu_peak_flops"), 0;
}
int wf_device_name(wf_device dev, char *buf, size_t n) { (void)dev; (void)buf; (void)n; return MINIMAL("wf_device_name"); }
int wf_measure_flops(wf_module *model, wf_flops_forward_fn forward, wf_flops_loss_fn loss, void *ud, int64_t *flops) {
    (void)model; (void)forward; (void)loss; (void)ud; (void)flops;
    return MINIMAL("wf_measure_flops");
}
wf_throughput *wf_throughput_new(const wf_throughput_opts *o) { (void)o; MINIMAL("wf_throughput_new"); return NULL; }
int wf_throughput_update(wf_throughput *t, double time, int64_t batches, int64_t samples, int64_t lengths, double flops) {
    (void)t; (void)time; (void)batches; (void)samples; (void)lengths; (void)flops;
    return MINIMAL("wf_throughput_update");
}
int wf_throughput_compute(const wf_throughput *t, wf_throughput_metrics *out) { (void)t; (void)out; return MINIMAL("wf_throughput_compute"); }
double wf_throughput_metric(const wf_throughput_metrics *m, const char *name) { (void)m; (void)name; return NAN; }
void wf_throughput_reset(wf_throughput *t) { (void)t; }
void wf_throughput_free(wf_throughput *t) { (void)t; }
wf_throughput *wf_throughput_monitor_new(wf_fabric *fab, const wf_throughput_opts *o) {
    (void)fab; (void)o;
    MINIMAL("wf_throughput_monitor_new");
    return NULL;
}
int wf_throughput_compute_and_log(wf_throughput *t, int64_t step, wf_throughput_metrics *out) {
    (void)t; (void)step; (void)out;
    return MINIMAL("wf_throughput_compute_and_log");
}
double wf_throughput_available_flops(const wf_throughput *t) { (void)t; return 0; }
