/* dist/trace_stub.c: TEMPORARY no-op timeline (owner: the reducer branch). The real
 * dist/trace.h implementation is written on the "trace" branch; this stub only lets DDP's
 * reducer build and run its tests until that lands on main, and is deleted then. */
#include "dist/trace.h"

bool wf__trace_enabled(void) { return false; }
int wf__trace_start(int rank, int world_size) { (void)rank; (void)world_size; return 0; }
double wf__trace_now_us(void) { return 0; }
void wf__trace_span(wf_trace_lane lane, const char *name, const char *cat, double start_us, double dur_us,
                    const char *args_json) {
    (void)lane; (void)name; (void)cat; (void)start_us; (void)dur_us; (void)args_json;
}
int wf__trace_finish(void) { return 0; }
