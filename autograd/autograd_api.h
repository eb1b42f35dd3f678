/* autograd/autograd_api.h: what the layers above autograd (nn/, precision/, io/, ...) use of
 * it besides the public API: the fused front-ends and the autocast hook. Not installed.
 *
 * These are autograd's (they record nodes, or read autocast's state, which lives with the
 * front-ends that read it), so they are declared here rather than in tensor/tensor_impl.h:
 * tensor/ knows no graph, and a file below autograd/ that included this header would be an
 * upward arrow (tests/layers/check_layers.py). The public autograd API comes with it. */
#ifndef WEFT_AUTOGRAD_API_H
#define WEFT_AUTOGRAD_API_H

#include "weft/autograd.h"
#include "../tensor/tensor_impl.h"

/* ---------------------------------------------------------------- fused front-ends (autograd/fn_fused.c)
 * They record nodes, over tensor/ops_fused.c's raw ops; nn/ composes attention, layer norm
 * and cross-entropy from them.
 * Each runs the device's fused kernel when it has one and the arguments suit it, recording
 * its own autograd node; otherwise it sets *handled = false and returns NULL without an
 * error, and the caller composes the op. On an error: *handled = true, NULL, error recorded.
 * Arguments are already validated (and autocast) by the caller. */
/* q [B,H,L,D], k/v [B,H,S,D] (f16/bf16), no mask, no dropout */
wf_tensor *wf__sdpa_fused(wf_tensor *q, wf_tensor *k, wf_tensor *v, double scale, bool causal, bool *handled);
/* attention on a packed projection qkv [B, T, 3E] (q, k, v side by side) with H heads, scale
 * 1/sqrt(E/H), no mask or dropout: reads the three views in place, and its backward writes
 * one [B, T, 3E] gradient; y [B, H, T, D] */
wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled);
/* attention's out_scale * softmax(scale * scores) along the last dim of scores [..., L, S],
 * entries j > i of each [L, S] matrix excluded with is_causal (torch's top-left is_causal):
 * one kernel pass, no mask or -inf tensor, no autocast (the dtype is the caller's, as inside
 * torch's sdpa). out_scale: dropout's 1 / (1 - p), so that the dropout after it is a bare 0/1
 * mask (1 without dropout). The node's backward is softmax's, scaled. Errors as wf_softmax's
 * (NULL, error recorded). (autograd/fn_softmax.c) */
wf_tensor *wf__softmax_attn(wf_tensor *scores, double scale, bool is_causal, double out_scale);
/* normalized over the last nd dims, y in ydt (x's, or f32 / bf16 / f16: computed in f32 and
 * written in ydt, no cast node; x's gradient in x's dtype) */
wf_tensor *wf__layer_norm_fused(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, double eps, wf_dtype ydt,
                                bool *handled);
/* y = layer_norm(x + r) in ydt (as wf__layer_norm_fused's) and *sum = x + r (when sum is not
 * NULL) from one kernel each way; r_bias (NULL: none), r's bias [D], joins r: x + (r + r_bias),
 * its gradient summed in the backward kernel (declined, *handled false, where it does not fit:
 * tensor/ops_raw.h) */
wf_tensor *wf__add_layer_norm_fused(wf_tensor *x, wf_tensor *r, wf_tensor *r_bias, int nd, wf_tensor *weight,
                                    wf_tensor *bias, double eps, wf_dtype ydt, wf_tensor **sum, bool *handled);
/* input [N, C], class targets i64 [N], no weights, no label smoothing; reduction uses
 * wf_reduction's numbers (0 mean, 1 sum, 2 none; weft/nn.h) */
wf_tensor *wf__cross_entropy_fused(wf_tensor *input, wf_tensor *target, int64_t ignore_index, int reduction,
                                   bool *handled);

/* ---------------------------------------------------------------- autocast (autograd/autocast.c)
 * The differentiable front-ends call wf__autocast_arg on their floating inputs first thing: inside an
 * autocast region for the tensor's device it returns the tensor cast for the op's class
 * (WF__AC_LOWER: matmul/bmm/linear/conv -> the low dtype; WF__AC_F32: softmax, exp, log,
 * pow, reductions, norms, losses -> f32), otherwise t itself. The result is borrowed (the
 * caller's scope, the cast cache or autocast's own list owns it). NULL only for NULL t or
 * on a failed cast (error recorded). */
enum { WF__AC_LOWER = 1, WF__AC_F32 = 2 };
wf_tensor *wf__autocast_arg(wf_tensor *t, int op_class);
/* Switch autocast off for a device type until the matching wf__autocast_resume (an inner
 * disabled region). Returns 0 or a code. */
int wf__autocast_suspend(int device_type);
void wf__autocast_resume(void);
/* Autocast as it stands on this thread for both device types, so that activation
 * checkpointing recomputes a forward under the policy the forward ran with. enter opens
 * one region per device type (matching s, enabled or not; 0 or a code, nothing left open
 * on failure); leave closes them. */
typedef struct wf__autocast_state { bool on[2]; wf_dtype low[2]; } wf__autocast_state;
void wf__autocast_capture(wf__autocast_state *s);
int wf__autocast_enter(const wf__autocast_state *s);
void wf__autocast_leave(void);

#endif
