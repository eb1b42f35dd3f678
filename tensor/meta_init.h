/* tensor/meta_init.h: deferred initialization of tensors built on the meta device (Fabric's
 * init_module(empty_init=true) under FSDP). Not installed.
 *
 * While recording is on, every initialization of a meta tensor is noted instead of lost:
 * a fill (wf_full, wf_ones, wf_zeros, wf_fill_: the meta kernel reports it), a uniform or
 * normal draw (the Philox seed and counter it reserved: the draw consumed the generator as a
 * real one would, so the tensors built after it get the same numbers), or a call of an
 * nn/init.c initializer that is not a plain draw (trunc_normal_, orthogonal_, eye_), with the
 * generator's state before it. The last note of a tensor wins: each of them overwrites the
 * whole tensor. Its storage's version is kept too, so a later change nobody noted (an
 * in-place op on the meta tensor) is found, not silently dropped.
 *
 * Materializing replays the note for some rows only: a fill fills them; a draw computes
 * exactly those elements (Philox is counter-based: element i of a draw depends on its
 * counter only, see tensor/cpu/random.c), so rank r's rows equal the rows of the tensor the
 * same seed gives without the meta device, bit for bit, and nothing beyond the rows is
 * allocated; a call runs again on a full temporary (one tensor at a time, the only way for
 * an initializer whose every value depends on every draw, as orthogonal_). */
#ifndef WEFT_TENSOR_META_INIT_H
#define WEFT_TENSOR_META_INIT_H

#include "tensor/tensor_impl.h"

/* An initializer run again on a full tensor, with the generator set as it was (nn/init.c). */
typedef int (*wf__meta_replay_fn)(wf_tensor *full, const double *args);

#ifndef WEFT_MINIMAL
/* Recording on or off (returns the previous setting); while off the notes below do nothing. */
bool wf__meta_record(bool on);
bool wf__meta_recording(void);
void wf__meta_note_fill(wf_tensor *t, double v);
void wf__meta_note_rand(wf_tensor *t, bool normal, double a, double b, uint64_t seed, uint64_t offset);
void wf__meta_note_call(wf_tensor *t, wf__meta_replay_fn fn, const double *args, int nargs, wf_rng_state before);

/* t has a note and awaits materialization (on meta, or adopted). */
bool wf__meta_pending(const wf_tensor *t);
/* Move t (a noted meta tensor) to dev without allocating: its storage has no data until
 * someone allocates it (FSDP's gather does). */
int wf__meta_adopt(wf_tensor *t, wf_device dev);
/* Rows [r0, r0 + count) of t's noted value (dim 0; a 0-dim tensor has one row) into dst, a
 * contiguous tensor of those rows on any device and floating dtype. name: for messages. */
int wf__meta_materialize_rows(const wf_tensor *t, int64_t r0, int64_t count, wf_tensor *dst, const char *name);
/* Drop t's note (after materializing), or every note. */
void wf__meta_forget(const wf_tensor *t);
void wf__meta_forget_all(void);

#else
/* The minimal (embedded) preset has no sharded strategy, so nothing is ever built on the meta
 * device to be materialized later: no note is taken. Constants rather than stub functions, so
 * that the compiler drops the callers' recording paths and the preset has no object for them
 * (its library's size budget). */
static inline bool wf__meta_record(bool on) { (void)on; return false; }
static inline bool wf__meta_recording(void) { return false; }
static inline void wf__meta_note_fill(wf_tensor *t, double v) { (void)t, (void)v; }
static inline void wf__meta_note_rand(wf_tensor *t, bool normal, double a, double b, uint64_t seed, uint64_t offset) {
    (void)t, (void)normal, (void)a, (void)b, (void)seed, (void)offset;
}
static inline void wf__meta_note_call(wf_tensor *t, wf__meta_replay_fn fn, const double *args, int nargs,
                                      wf_rng_state before) {
    (void)t, (void)fn, (void)args, (void)nargs, (void)before;
}
static inline bool wf__meta_pending(const wf_tensor *t) { (void)t; return false; }
static inline int wf__meta_adopt(wf_tensor *t, wf_device dev) { (void)t, (void)dev; return 0; }
static inline int wf__meta_materialize_rows(const wf_tensor *t, int64_t r0, int64_t count, wf_tensor *dst,
                                            const char *name) {
    (void)t, (void)r0, (void)count, (void)dst;
    return wf__error(WF_ENOTSUP, "wf_fabric_setup: \"%s\": deferred (meta-device) initialization is not in the "
                     "minimal build of weft", name);
}
static inline void wf__meta_forget(const wf_tensor *t) { (void)t; }
static inline void wf__meta_forget_all(void) {}
#endif   /* WEFT_MINIMAL */

#endif
