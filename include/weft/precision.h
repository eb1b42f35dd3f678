/* weft/precision.h: autocast, the gradient scaler and precision plugins (Fabric's names).
 *
 * Autocast (torch.autocast): a thread-local, nestable policy. Inside a region enabled for a
 * device type, ops on tensors of that device follow three classes:
 *  - lower:  matmul, bmm, linear, conv2d (and attention, built from them) run in the low
 *            dtype (f16 or bf16): floating inputs are cast to it;
 *  - f32:    softmax, log_softmax, exp, log, pow_scalar, reductions (sum, mean, var,
 *            logsumexp, norm), norms (layer/rms/group/batch) and losses run in f32:
 *            f16/bf16 inputs are cast up;
 *  - others: binary ops take the widest input type (the ordinary promotion rules).
 * A parameter (a leaf that requires grad) is cast to the low dtype once per outermost
 * region (the cast cache, keyed by tensor and storage version); the casts keep autograd, so
 * gradients flow back to the f32 master weights in f32.
 *
 * Gradient scaler (torch.amp.GradScaler): dynamic loss scaling for f16 training.
 *
 * Precision plugins (lightning.fabric.plugins.precision): "64-true", "32-true", "16-true",
 * "bf16-true", "16-mixed", "bf16-mixed", aliases "64", "32", "16" (-> "16-mixed", warns),
 * "bf16" (-> "bf16-mixed", warns), as Fabric does; and "transformer-engine" (fp8: bf16-mixed with
 * the Linear modules' GEMMs in fp8, Transformer Engine's delayed scaling; a GPU of compute
 * capability 8.9 or newer, else WF_ENOTSUP).
 *
 * Errors follow weft's conventions: NULL or a negative WF_E* code, with wf_error_message().
 */
#ifndef WEFT_PRECISION_H
#define WEFT_PRECISION_H

#include "tensor.h"
#include "autograd.h"
#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ autocast
 * wf_autocast_begin/_begin_ex/_end, wf_autocast_enabled, wf_autocast_dtype,
 * wf_autocast_depth, wf_autocast_cache_size and WF_AUTOCAST are declared in weft/autograd.h
 * (included above): the differentiable functions read autocast's state, and autograd sits
 * below precision, so the state and its API live there. The policy is the one above. */

/* ================================================================ gradient scaler */

typedef struct wf_grad_scaler wf_grad_scaler;

/* New scaler. Zero means PyTorch's default: init_scale 2^16, growth_factor 2.0,
 * backoff_factor 0.5, growth_interval 2000. A disabled scaler is a pass-through (scale()
 * returns the loss as is, step() steps). NULL + WF_EINVAL for invalid values
 * (growth_factor <= 1, backoff_factor outside (0,1), init_scale <= 0). */
wf_grad_scaler *wf_grad_scaler_new(double init_scale, double growth_factor, double backoff_factor,
                                   int growth_interval, bool enabled);
void wf_grad_scaler_free(wf_grad_scaler *s);   /* NULL ok */
bool wf_grad_scaler_is_enabled(const wf_grad_scaler *s);

/* loss * scale (a new result in the caller's scope, keeps autograd). */
wf_tensor *wf_grad_scaler_scale(wf_grad_scaler *s, wf_tensor *loss);
/* Divide the gradients of opt's parameters by the scale in place and record whether any
 * is inf/NaN. Once per step: a second call before update() is WF_ESTATE (as PyTorch's
 * "unscale_() has already been called on this optimizer since the last update()"). */
int wf_grad_scaler_unscale_(wf_grad_scaler *s, wf_optimizer *opt);
/* Unscale (if not done yet), then step opt unless an inf/NaN was found; *skipped (may be
 * NULL) tells which. Returns 0 or a code. */
int wf_grad_scaler_step(wf_grad_scaler *s, wf_optimizer *opt, bool *skipped);
/* Update the scale after a step: found inf -> scale *= backoff, tracker = 0; otherwise
 * tracker += 1 and at growth_interval scale *= growth, tracker = 0. Returns 0 or a code
 * (WF_ESTATE when no step/unscale happened since the last update). */
int wf_grad_scaler_update(wf_grad_scaler *s);
/* Set the scale explicitly (update(new_scale)). */
int wf_grad_scaler_set_scale(wf_grad_scaler *s, double scale);
double wf_grad_scaler_get_scale(const wf_grad_scaler *s);      /* 1.0 when disabled */
int64_t wf_grad_scaler_growth_tracker(const wf_grad_scaler *s);
/* Was an inf/NaN found by the last unscale (this step)? */
bool wf_grad_scaler_found_inf(const wf_grad_scaler *s);
/* Steps skipped so far (monotonic; for schedulers and logging). */
int64_t wf_grad_scaler_skipped_steps(const wf_grad_scaler *s);
/* State (PyTorch's scaler.state_dict(): scale, growth_factor, backoff_factor,
 * growth_interval, _growth_tracker). get: any pointer may be NULL. */
typedef struct wf_grad_scaler_state {
    double scale;
    double growth_factor;
    double backoff_factor;
    int64_t growth_interval;
    int64_t growth_tracker;
} wf_grad_scaler_state;
int wf_grad_scaler_state_get(const wf_grad_scaler *s, wf_grad_scaler_state *out);
int wf_grad_scaler_state_set(wf_grad_scaler *s, const wf_grad_scaler_state *st);
/* Hook where found_inf is agreed across ranks: after the local check, fn receives the local
 * found_inf (0 or 1) and must replace it with the reduced value (all-reduce MAX/SUM). fn
 * returns 0 or a code (a failure fails the unscale). NULL removes the hook. */
typedef int (*wf_found_inf_reducer)(double *found_inf, void *ud);
int wf_grad_scaler_set_found_inf_reducer(wf_grad_scaler *s, wf_found_inf_reducer fn, void *ud);

/* ================================================================ precision plugins */

typedef struct wf_precision wf_precision;

/* Build the plugin named name for an accelerator device. Accepts the canonical names and
 * the aliases "64", "32", "16", "bf16" (16 and bf16 write Fabric's warning into
 * warning_buf). "16-mixed" on the CPU falls back to "bf16-mixed" with a warning.
 * warning_buf may be NULL (then warnings go to stderr); it is set to "" when there is none.
 * NULL + WF_EINVAL listing the valid names for an unknown name. */
wf_precision *wf_precision_new(const char *name, wf_device accelerator_device,
                               char *warning_buf, size_t n);
void wf_precision_free(wf_precision *p);   /* NULL ok */
/* Canonical name ("bf16-mixed"), static storage; "" for NULL. */
const char *wf_precision_name(const wf_precision *p);
/* The parameter dtype ("-true": f64/f32/f16/bf16; "-mixed": f32) and the compute dtype
 * (the autocast dtype for mixed, else the parameter dtype). */
wf_dtype wf_precision_param_dtype(const wf_precision *p);
wf_dtype wf_precision_compute_dtype(const wf_precision *p);
bool wf_precision_is_mixed(const wf_precision *p);

/* Cast the module's floating parameters and buffers to the parameter dtype ("-true" only;
 * mixed keeps f32 master weights). Returns 0 or a code. */
int wf_precision_convert_module(wf_precision *p, wf_module *m);
/* The init context: while open, the thread's default dtype is the parameter dtype and the
 * default device the accelerator device, so parameters are created directly there.
 * Nestable in the begin/end pairing sense (each end restores what its begin saw). */
int wf_precision_init_begin(wf_precision *p);
int wf_precision_init_end(wf_precision *p);
/* The forward context: autocast for mixed plugins (a no-op otherwise). */
int wf_precision_forward_begin(wf_precision *p);
int wf_precision_forward_end(wf_precision *p);
/* Floating inputs to the parameter dtype ("-true"), unchanged otherwise; outputs back to the
 * default dtype (f32) when floating. Integer tensors pass through. New handles (results in
 * the caller's scope). */
wf_tensor *wf_precision_convert_input(wf_precision *p, wf_tensor *x);
wf_tensor *wf_precision_convert_output(wf_precision *p, wf_tensor *y);
/* Backward of loss: scaled by the grad scaler for "16-mixed", plain wf_backward otherwise. */
int wf_precision_backward(wf_precision *p, wf_tensor *loss);
/* Unscale the gradients of opt (16-mixed; a no-op otherwise). Idempotent within one step:
 * call it before clipping; the optimizer step does not unscale again. */
int wf_precision_unscale(wf_precision *p, wf_optimizer *opt);
/* The optimizer step. 16-mixed: scaler step + update (skipped on inf/NaN, *skipped true,
 * returns 0). "16-true"/"bf16-true": a non-finite gradient refuses the step: the weights are
 * untouched, *skipped is true and the return is WF_ENONFINITE naming the parameter, so
 * overflow never turns into NaN weights silently. Others: plain step. skipped may be NULL. */
int wf_precision_optimizer_step(wf_precision *p, wf_optimizer *opt, bool *skipped);
/* Did the last optimizer step get skipped? Steps skipped so far? (For LR schedulers: do not
 * advance the schedule on a skipped step.) */
bool wf_precision_last_step_skipped(const wf_precision *p);
int64_t wf_precision_skipped_steps(const wf_precision *p);
/* State for checkpoints (the scaler's; for other plugins scale = 1, tracker = 0). */
int wf_precision_state(const wf_precision *p, double *scale, int64_t *growth_tracker);
int wf_precision_load_state(wf_precision *p, double scale, int64_t growth_tracker);
/* The grad scaler (borrowed) or NULL when the plugin has none. */
wf_grad_scaler *wf_precision_grad_scaler(wf_precision *p);
/* Does backward need to go through the plugin (loss scaling)? True for 16-mixed. */
bool wf_precision_needs_fabric_backward(const wf_precision *p);

#ifdef __cplusplus
}
#endif
#endif
