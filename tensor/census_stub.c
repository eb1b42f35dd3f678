/* tensor/census_stub.c: the memory census in the minimal preset: not there (its size budget).
 * Included by alloc.c in that preset, not compiled alone. */
#include "tensor_impl.h"

static int off(const char *fn) { return wf__error(WF_ENOTSUP, "%s: the memory census is not in the minimal build", fn); }
int wf_memory_record_history(bool enabled) { return enabled ? off("wf_memory_record_history") : 0; }
bool wf_memory_is_recording(void) { return false; }
const char *wf_memory_set_label(const char *label) { (void)label; return NULL; }
int wf_memory_snapshot(wf_device dev, bool at_peak, wf_memory_census_row *rows, int cap, size_t *total_bytes) {
    (void)dev; (void)at_peak; (void)rows; (void)cap; (void)total_bytes;
    return off("wf_memory_snapshot");
}
int wf_memory_summary(wf_device dev, char *buf, size_t n) { (void)dev; (void)buf; (void)n; return off("wf_memory_summary"); }
int wf_memory_history_reset_peak(void) { return off("wf_memory_history_reset_peak"); }
