/* autograd/fn_fp8_linear.h: the fp8 Linear of the "transformer-engine" precision
 * (fn_fp8_linear.c), for nn/layers.c's Linear and precision/plugins.c. Not in the minimal
 * preset. It runs on CUDA, and on the CPU through the host emulation of its launchers (its
 * tests: the precision itself is refused on the CPU). */
#ifndef WEFT_FN_FP8_LINEAR_H
#define WEFT_FN_FP8_LINEAR_H

#include "../tensor/tensor_impl.h"

/* The fp8 region of this thread (the plugin's forward context): regions nest. In
 * autograd/autocast.c, beside the autocast regions (every build; wf_fp8_autocast_enabled is
 * public). */
void wf__fp8_autocast_begin(void);
void wf__fp8_autocast_end(void);

/* Slots of a Linear's fp8 state: its input, its weight (E4M3) and its output gradient (E5M2). */
enum { WF__FP8_SLOT_X, WF__FP8_SLOT_W, WF__FP8_SLOT_GY, WF__FP8_SLOTS };
/* TE's DelayedScaling defaults */
#define WF__FP8_HISTORY_LEN 1024
#define WF__FP8_MARGIN 0
/* floats per slot: scale, scale_inv, amax, pos, history (a multiple of 4: slots stay 16-byte aligned) */
#define WF__FP8_SLOT_FLOATS (4 + WF__FP8_HISTORY_LEN)

/* y = x w^T + b with the three GEMMs in fp8 (E4M3 x, w; E5M2 gradient of y) and delayed
 * scaling, recorded for autograd. *state is the Linear's fp8 state (an f32 tensor of
 * WF__FP8_SLOTS slots on w's device, owned by the caller; made here on first use or when w
 * moved to another device). Where fp8 does not apply (neither CUDA nor the CPU, a dtype other than f32 / bf16
 * / f16, rows, in or out features not multiples of 16), plain wf_linear (autocast applies). */
wf_tensor *wf__fp8_linear(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor **state);

#endif
