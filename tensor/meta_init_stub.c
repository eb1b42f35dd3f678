/* tensor/meta_init_stub.c: the minimal (embedded) preset has no sharded strategy, so nothing
 * is ever built on the meta device to be materialized later: notes are never taken. */
#include "tensor/meta_init.h"

bool wf__meta_record(bool on) { (void)on; return false; }
bool wf__meta_recording(void) { return false; }
void wf__meta_note_fill(wf_tensor *t, double v) { (void)t, (void)v; }
void wf__meta_note_rand(wf_tensor *t, bool normal, double a, double b, uint64_t seed, uint64_t offset) {
    (void)t, (void)normal, (void)a, (void)b, (void)seed, (void)offset;
}
void wf__meta_note_call(wf_tensor *t, wf__meta_replay_fn fn, const double *args, int nargs, wf_rng_state before) {
    (void)t, (void)fn, (void)args, (void)nargs, (void)before;
}
bool wf__meta_pending(const wf_tensor *t) { (void)t; return false; }
int wf__meta_adopt(wf_tensor *t, wf_device dev) { (void)t, (void)dev; return 0; }
int wf__meta_materialize_rows(const wf_tensor *t, int64_t r0, int64_t count, wf_tensor *dst, const char *name) {
    (void)t, (void)r0, (void)count, (void)dst;
    return wf__error(WF_ENOTSUP, "wf_fabric_setup: \"%s\": deferred (meta-device) initialization is not in the "
                     "minimal build of weft", name);
}
void wf__meta_forget(const wf_tensor *t) { (void)t; }
void wf__meta_forget_all(void) {}
