/* dist/trace_stub.c: the WF_TRACE timeline in the minimal (embedded) preset (one process, no
 * collectives to trace, and a 1 MB budget). Tracing is simply off: the strategies' calls cost
 * nothing, and asking for a trace file fails naming the preset. */
#include "dist/trace.h"
#include "tensor/tensor_impl.h"

atomic_bool wf__trace_on;

bool wf__trace_enabled(void) { return false; }
int wf__trace_start(int rank, int world_size) { (void)rank; (void)world_size; return 0; }
void wf__trace_start_or_warn(int rank, int world_size) { (void)rank; (void)world_size; }
double wf__trace_now_us(void) { return 0; }
void wf__trace_span(wf_trace_lane lane, const char *name, const char *cat, double start_us, double dur_us,
                    const char *args_json) {
    (void)lane; (void)name; (void)cat; (void)start_us; (void)dur_us; (void)args_json;
}
int wf__trace_finish(void) { return 0; }
void wf__trace_finish_or_warn(void) {}
void wf__trace_tag_next_collective(const char *args_json) { (void)args_json; }
void wf__trace_take_tag(char *buf, size_t n) { if (n) buf[0] = 0; }
int wf__trace_set_path(const char *path) {
    (void)path;
    return wf__error(WF_ENOTSUP, "wf__trace_set_path: not in the minimal build of weft (no collectives to trace)");
}
int wf__trace_set_limit(size_t max_events) { (void)max_events; return 0; }
