/* weft/autograd.h: reverse-mode automatic differentiation.
 *
 * Define-by-run: every op on a tensor that requires grad records a node. wf_backward walks
 * the nodes from a result back to the leaves and accumulates into each leaf's .grad.
 */
#ifndef WEFT_AUTOGRAD_H
#define WEFT_AUTOGRAD_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Mark a leaf as needing a gradient. Error (WF_EAUTOGRAD) on a non-leaf or an integer dtype. */
int wf_set_requires_grad(wf_tensor *t, bool requires_grad);
bool wf_requires_grad(const wf_tensor *t);
bool wf_is_leaf(const wf_tensor *t);
/* The accumulated gradient of a leaf (borrowed; owned by t), or NULL if none yet. */
wf_tensor *wf_grad(const wf_tensor *t);
/* Replace (or with NULL, drop) t's gradient; g is retained. Shape must match. */
int wf_set_grad(wf_tensor *t, wf_tensor *g);
/* Name of the node that made t ("MulBackward"), or NULL for leaves. Static storage. */
const char *wf_grad_fn_name(const wf_tensor *t);

/* Backpropagate from t. grad: d(out)/dt, or NULL for a one-element t (implicitly 1).
 * retain_graph: keep the graph so backward can run again through it.
 * Errors: WF_EAUTOGRAD if t does not require grad, if the graph was already freed, or if a
 * tensor saved for backward was modified in place since. */
int wf_backward(wf_tensor *t, wf_tensor *grad, bool retain_graph);

/* Grad mode (thread-local). Returns the previous setting. */
bool wf_set_grad_enabled(bool enabled);
bool wf_is_grad_enabled(void);
/* Block form: WF_NO_GRAD { ... } */
#define WF_NO_GRAD for (int wf__g = (int)wf_set_grad_enabled(false) + 1; wf__g; wf_set_grad_enabled(wf__g - 1), wf__g = 0)

/* Leaf gradient hooks: fn runs once per backward, when leaf's .grad is final for that pass
 * (all contributions accumulated). Returns a handle >= 0 for wf_remove_grad_hook, or a code.
 * DDP bucketing and FSDP reduce-scatter hang off these. */
typedef void (*wf_grad_hook_fn)(wf_tensor *leaf, void *ud);
int wf_register_grad_hook(wf_tensor *leaf, wf_grad_hook_fn fn, void *ud);
int wf_remove_grad_hook(wf_tensor *leaf, int handle);
/* Grad-ready hooks: the same moment as wf_register_grad_hook's, but fn may fail: a nonzero
 * return (a negative WF_E* code, with wf__error's message) stops the backward, which returns
 * that code. Same handle space (remove with wf_remove_grad_hook). DDP's reducer marks a
 * gradient ready in its bucket here and launches the bucket's all-reduce when it is full. */
typedef int (*wf_grad_ready_hook_fn)(wf_tensor *leaf, void *ud);
int wf_register_grad_ready_hook(wf_tensor *leaf, wf_grad_ready_hook_fn fn, void *ud);

/* End-of-backward callbacks (PyTorch's Variable._execution_engine.queue_callback): fn runs
 * once, when the wf_backward now running on this thread is done (queued from a hook), or else
 * the next one (queued before it), after every node ran. status is the backward's result so
 * far (0, or its error: a callback always runs, so it can release what it armed); a nonzero
 * return from fn becomes wf_backward's result when that was 0. Callbacks run in queue order,
 * also those queued by a callback; a wf_backward nested inside another (a hook that runs a
 * backward) leaves them to the outermost. DDP waits for its in-flight all-reduces here.
 * Returns 0 or WF_ENULL / WF_ENOMEM. */
typedef int (*wf_backward_callback_fn)(int status, void *ud);
int wf_queue_backward_callback(wf_backward_callback_fn fn, void *ud);

/* Finite-difference check of fn's gradient in f64.
 * fn maps the n inputs to one output tensor (any shape; the check uses sum(out * r) with a
 * fixed random r). Inputs must be f64 leaves with requires_grad set for those to check.
 * Returns 0 when every analytic gradient is within atol + rtol*|numeric|, else WF_EAUTOGRAD
 * with a message naming the input and the worst element. */
typedef wf_tensor *(*wf_gradcheck_fn)(wf_tensor *const *inputs, int n, void *ud);
int wf_gradcheck(wf_gradcheck_fn fn, wf_tensor *const *inputs, int n, void *ud,
                 double eps, double atol, double rtol);

/* Activation checkpointing (torch.utils.checkpoint): y = fn(inputs) computed without keeping
 * the graph inside fn. Backward runs fn again, with grad on, under the RNG state and autocast
 * policy the forward had (dropout draws the same mask), and backpropagates through it: the
 * memory of the inputs instead of every activation, for one more forward.
 * fn must compute the same thing each time, and every tensor it needs a gradient for must be
 * among the inputs (a module's parameters: wf_checkpoint_module in nn.h); one that is not is
 * an error at backward time (WF_EAUTOGRAD naming its shape), never a silent missing gradient.
 * Without grad mode, or when no input requires grad, it is fn(inputs). Returns a result in the
 * caller's scope, or NULL + error. */
typedef wf_tensor *(*wf_checkpoint_fn)(wf_tensor *const *inputs, int n, void *ud);
wf_tensor *wf_checkpoint(wf_checkpoint_fn fn, wf_tensor *const *inputs, int n, void *ud);

/* Autocast (torch.autocast): the policy is described in weft/precision.h, where Fabric's
 * mixed-precision plugins use it. Declared here because every differentiable function reads
 * it (each casts its floating inputs for its class on entry), and precision/ sits above
 * autograd. */

/* Enter an autocast region for device_type (WF_DEV_CPU / WF_DEV_CUDA) with low dtype
 * WF_F16 or WF_BF16 (WF_DTYPE_DEFAULT: bf16 on the CPU, f16 on CUDA). Regions nest; an
 * inner region may change the dtype or, with enabled false, switch autocast off.
 * Returns 0 or a code (WF_EINVAL for a bad dtype/device type, WF_ESTATE past 64 levels). */
int wf_autocast_begin_ex(wf_device_type device_type, wf_dtype low, bool enabled);
static inline int wf_autocast_begin(wf_device_type device_type, wf_dtype low) {
    return wf_autocast_begin_ex(device_type, low, true);
}
/* Leave the innermost region (the cast cache is cleared when the outermost one ends).
 * Returns 0 or WF_ESTATE when no region is open. */
int wf_autocast_end(void);
/* Is autocast on for tensors of this device type on this thread? */
bool wf_autocast_enabled(wf_device_type device_type);
/* Is this thread inside the "transformer-engine" precision's fp8 region (its forward context;
 * Transformer Engine's fp8_autocast, entered by the precision plugin)? Linear modules run their
 * GEMMs in fp8 there; the functional wf_linear, wf_linear_gelu and wf_fused_mlp, which hold no
 * per-layer scaling state, stay in bf16. So a model with its own fused Linear paths (examples/
 * gpt's MLP) calls its Linear modules instead while this is true. */
bool wf_fp8_autocast_enabled(void);
/* The low dtype of the innermost enabled region (WF_DTYPE_DEFAULT when autocast is off). */
wf_dtype wf_autocast_dtype(void);
/* Open regions on this thread. */
int wf_autocast_depth(void);
/* Number of entries in the cast cache (tests). */
int wf_autocast_cache_size(void);
/* Block form: WF_AUTOCAST(WF_DEV_CPU, WF_BF16) { ... } (do not leave with return/break). */
#define WF_AUTOCAST(devtype, dt) \
    for (int wf__ac = (wf_autocast_begin((devtype), (dt)), 0); !wf__ac; wf__ac = (wf_autocast_end(), 1))

#ifdef __cplusplus
}
#endif
#endif
