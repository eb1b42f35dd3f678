/* weft/nn.h: modules, layers, losses, parameter initialization and functional ops.
 *
 * Everything follows PyTorch's torch.nn: the same defaults, the same default initialization,
 * the same parameter and buffer names ("weight", "bias", "running_mean", "running_var",
 * "num_batches_tracked") and the same dotted names for nested modules ("features.0.weight"),
 * so state dicts move between weft and PyTorch by name.
 *
 * Ownership:
 *  - A module owns its parameters, buffers and children. They are not in any scope; the
 *    module releases them in wf_module_free. Tensors handed to wf_module_register_parameter /
 *    _buffer and modules handed to wf_module_add_child (and to containers) change owner: the
 *    module takes over the caller's reference (and removes a tensor from its scope).
 *  - Forward outputs, losses and functional results are ordinary results: they belong to the
 *    caller's innermost open scope (or to the caller when no scope is open).
 *  - Constructors return NULL on bad arguments or out of memory with an error recorded
 *    (wf_error(), wf_error_message()); forward functions return NULL with an error whose
 *    message names the layer ("Linear(in_features=4, out_features=3): ...").
 *  - A NULL module or NULL input makes a function return NULL (or an error code) without
 *    overwriting an error recorded earlier, as tensor ops do.
 */
#ifndef WEFT_NN_H
#define WEFT_NN_H

#include "tensor.h"
#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ state dicts */

/* An ordered list of (name, tensor) pairs: module state, optimizer state, checkpoints.
 * The container holds one reference to each tensor it stores. */
typedef struct wf_state_dict wf_state_dict;

/* New empty container (owned by the caller; free with wf_state_dict_free). NULL on OOM. */
wf_state_dict *wf_state_dict_new(void);
/* Release the container and its references. NULL ok. */
void wf_state_dict_free(wf_state_dict *sd);
/* Store t under name (name is copied; t is retained, the caller keeps its own reference).
 * An existing entry with the same name is replaced in place (its position is kept).
 * Returns 0, WF_ENULL or WF_ENOMEM. */
int wf_state_dict_set(wf_state_dict *sd, const char *name, wf_tensor *t);
/* The tensor stored under name (borrowed), or NULL (no error recorded) if absent. */
wf_tensor *wf_state_dict_get(const wf_state_dict *sd, const char *name);
/* Remove an entry. Returns 0 or WF_ENOTFOUND. */
int wf_state_dict_remove(wf_state_dict *sd, const char *name);
/* Number of entries (0 for NULL). */
int wf_state_dict_count(const wf_state_dict *sd);
/* Name / tensor of entry i in insertion order (borrowed), NULL if i is out of range. */
const char *wf_state_dict_name_at(const wf_state_dict *sd, int i);
wf_tensor *wf_state_dict_tensor_at(const wf_state_dict *sd, int i);

/* ================================================================ modules */

typedef struct wf_module wf_module;

/* Per-type functions. forward may be NULL for containers (ModuleList, ModuleDict): calling
 * wf_module_forward on them is an error (WF_ENOTSUP). free_extra (optional) releases what the
 * embedding struct holds beyond the wf_module (not parameters, buffers or children: those are
 * released by wf_module_free). extra_repr (optional) writes "in_features=4, out_features=3"
 * into buf for messages and printing. */
typedef struct wf_module_vtable {
    wf_tensor *(*forward)(wf_module *m, wf_tensor *x);
    void (*free_extra)(wf_module *m);
    void (*extra_repr)(const wf_module *m, char *buf, size_t n);
} wf_module_vtable;

/* Forward hooks. A pre hook may replace the input (*input = new tensor); a post hook may
 * replace the output. Returning a nonzero code (after recording an error) stops the forward,
 * which then returns NULL. Hooks run in registration order. */
typedef int (*wf_forward_pre_hook)(wf_module *m, wf_tensor **input, void *ud);
typedef int (*wf_forward_hook)(wf_module *m, wf_tensor *input, wf_tensor **output, void *ud);

/* Internal records (treat as private; use the functions below). */
typedef struct wf__mod_entry { char *name; void *ptr; } wf__mod_entry;
typedef struct wf__mod_list { wf__mod_entry *v; int n, cap; } wf__mod_list;
typedef struct wf__mod_hook { int id; wf_forward_pre_hook pre; wf_forward_hook post; void *ud; } wf__mod_hook;

/* The common header of every module. A module type is a struct whose FIRST member is a
 * wf_module, so a wf_module * converts to and from a pointer to the whole struct:
 *
 *     typedef struct { wf_module base; wf_module *fc1, *fc2; } MyNet;
 *     static wf_tensor *mynet_forward(wf_module *m, wf_tensor *x) {
 *         MyNet *n = (MyNet *)m;
 *         return wf_module_forward(n->fc2, wf_relu(wf_module_forward(n->fc1, x)));
 *     }
 *     static const wf_module_vtable mynet_vt = { .forward = mynet_forward };
 *
 *     MyNet *n = wf_module_create(sizeof(MyNet), "MyNet", &mynet_vt);
 *     n->fc1 = wf_linear_new(784, 128, true);
 *     wf_module_add_child(&n->base, "fc1", n->fc1);   // the parent now owns fc1
 *     n->fc2 = wf_linear_new(128, 10, true);
 *     wf_module_add_child(&n->base, "fc2", n->fc2);
 *     wf_tensor *logits = wf_module_forward(&n->base, x);   // x: [batch, 784]
 *     wf_module_free(&n->base);                       // frees fc1, fc2 and n
 *
 * The fields are weft's; read and change them only through the functions below. */
struct wf_module {
    uint32_t magic;
    bool training;
    bool owns_memory;       /* wf_module_free releases the struct itself */
    size_t alloc_size;
    const char *type_name;  /* static string, e.g. "Linear" */
    const wf_module_vtable *vt;
    wf__mod_list params;    /* name -> wf_tensor* */
    wf__mod_list buffers;   /* name -> wf_tensor* */
    wf__mod_list children;  /* name -> wf_module* */
    wf__mod_hook *hooks;
    int n_hooks, cap_hooks, next_hook_id;
    char **name_cache;      /* dotted names returned by wf_module_parameters/_buffers */
    int n_name_cache;
    bool activation_checkpointing;  /* wf_module_set_activation_checkpointing */
};

/* Allocate a zeroed struct of size bytes (>= sizeof(wf_module)) whose first member is a
 * wf_module, initialized as by wf_module_init. wf_module_free releases it. NULL on error. */
void *wf_module_create(size_t size, const char *type_name, const wf_module_vtable *vt);
/* Initialize a wf_module that lives in memory the caller manages (static, embedded, or
 * malloc'd by the caller): wf_module_free then releases its contents but not the memory.
 * type_name must outlive the module (a string literal). Training mode is on. Returns 0 or a
 * code (WF_ENULL). */
int wf_module_init(wf_module *m, const char *type_name, const wf_module_vtable *vt);
/* Release the module: runs vt->free_extra, frees hooks, parameters, buffers and children
 * (recursively), then the struct if it came from wf_module_create or a weft constructor.
 * NULL ok. */
void wf_module_free(wf_module *m);
/* The type name ("Linear"); "" for NULL. */
const char *wf_module_type(const wf_module *m);

/* Register a parameter (a leaf tensor of floating dtype): requires_grad is set, the module
 * takes over the caller's reference (removing t from its scope), t must not be NULL.
 * Names must be non-empty, contain no '.', and be unique among the module's parameters,
 * buffers and children (WF_EINVAL otherwise). On failure t is released (so a constructor
 * chain can pass fresh tensors without leaking). Returns 0 or a code. */
int wf_module_register_parameter(wf_module *m, const char *name, wf_tensor *t);
/* Register a buffer (persistent state that is not a parameter: running statistics).
 * Ownership and failure as for parameters; requires_grad is left as is. */
int wf_module_register_buffer(wf_module *m, const char *name, wf_tensor *t);
/* Add a child module under name; the parent takes ownership (also on failure: the child is
 * freed). Name rules as above. Returns 0 or a code. */
int wf_module_add_child(wf_module *m, const char *name, wf_module *child);

/* Look up by name, with dotted paths through children ("0.weight", "out_proj.bias").
 * Borrowed; NULL (no error recorded) when absent. */
wf_tensor *wf_module_get_parameter(const wf_module *m, const char *name);
wf_tensor *wf_module_get_buffer(const wf_module *m, const char *name);
wf_module *wf_module_get_child(const wf_module *m, const char *name);
/* Replace a parameter's or buffer's tensor (dotted name). The module takes over the
 * caller's reference to t, releases the old one; parameters get requires_grad. Shapes may
 * differ (as assigning a new nn.Parameter). Returns 0, WF_ENOTFOUND, or a code. */
int wf_module_set_parameter(wf_module *m, const char *name, wf_tensor *t);
int wf_module_set_buffer(wf_module *m, const char *name, wf_tensor *t);

/* Direct children in registration order: count, and the i-th (borrowed; name borrowed). */
int wf_module_num_children(const wf_module *m);
wf_module *wf_module_child_at(const wf_module *m, int i, const char **name);

/* Run the module: pre hooks, vt->forward, post hooks. Returns the output (a result in the
 * caller's scope) or NULL on error. */
wf_tensor *wf_module_forward(wf_module *m, wf_tensor *x);

/* Activation checkpointing (torch.utils.checkpoint around m's call): m's output without
 * keeping the activations inside m; backward runs m's forward (and its hooks) again. m's
 * parameters get their gradients as usual, once per backward. m must outlive the backward
 * and compute the same thing again (dropout draws the same mask: the RNG state is replayed).
 * See wf_checkpoint in autograd.h. A result in the caller's scope, or NULL + error. */
wf_tensor *wf_checkpoint_module(wf_module *m, wf_tensor *x);
/* Make every wf_module_forward of m checkpointed while grad mode is on (what Fabric's
 * activation_checkpointing_policy does to the module types it names). Containers without a
 * forward of their own: WF_ENOTSUP. Returns 0 or a code. */
int wf_module_set_activation_checkpointing(wf_module *m, bool on);
bool wf_module_activation_checkpointing(const wf_module *m);

/* Hooks; the returned handle (>= 0) removes the hook with wf_module_remove_hook. */
int wf_module_register_forward_pre_hook(wf_module *m, wf_forward_pre_hook fn, void *ud);
int wf_module_register_forward_hook(wf_module *m, wf_forward_hook fn, void *ud);
/* Returns 0 or WF_ENOTFOUND. */
int wf_module_remove_hook(wf_module *m, int handle);
/* Does m have forward hooks of its own (not its children's)? (A model that sometimes runs a
 * child's computation without calling the child checks this first; Fabric's FSDP units gather
 * their parameters in hooks.) false for NULL. */
bool wf_module_has_hooks(const wf_module *m);

/* Training / evaluation mode, set on m and all its descendants (module.train(mode)). */
void wf_module_train(wf_module *m, bool training);
static inline void wf_module_eval(wf_module *m) { wf_module_train(m, false); }
bool wf_module_is_training(const wf_module *m);

/* All parameters of m and its descendants in registration order (depth first, own
 * parameters before children's), each tensor once (shared parameters are listed under their
 * first name), as named_parameters(). Writes up to max tensors into out and their dotted
 * names into names (either may be NULL). Returns the total count (which may exceed max), or
 * a negative code. The name strings are owned by m and stay valid until the next call of
 * wf_module_parameters / wf_module_buffers on m, a structural change of m, or its free. */
int wf_module_parameters(wf_module *m, wf_tensor **out, const char **names, int max);
/* Same for buffers (named_buffers()). */
int wf_module_buffers(wf_module *m, wf_tensor **out, const char **names, int max);
/* Number of scalar parameters: sum of numel over wf_module_parameters. */
int64_t wf_module_num_parameters(wf_module *m);

/* Clear the gradients of all parameters: set_to_none drops them (the PyTorch default),
 * otherwise they are zeroed in place. */
void wf_module_zero_grad(wf_module *m, bool set_to_none);
/* Call fn on every module, children first, then m (module.apply). Stops at the first
 * nonzero return and returns it; 0 otherwise. */
int wf_module_apply(wf_module *m, int (*fn)(wf_module *m, void *ud), void *ud);
/* Move / cast every parameter and buffer in place (module.to(device, dtype)): the module
 * holds new tensors (the old ones are released; views into them elsewhere stay valid but no
 * longer alias the module). dtype WF_DTYPE_DEFAULT keeps dtypes; only floating tensors are
 * cast (integer buffers such as num_batches_tracked keep theirs). Gradients move along.
 * requires_grad is kept. Returns 0 or a code (the module may be partly moved on failure).
 * Build optimizers after moving the module. */
int wf_module_to(wf_module *m, wf_device device, wf_dtype dtype);

/* Write the module's parameters and persistent buffers into sd under their dotted names
 * (state_dict()): the stored tensors are detached aliases sharing storage with the module.
 * prefix (may be NULL) is prepended to every name ("model." ...). Returns 0 or a code. */
int wf_module_state_dict(wf_module *m, wf_state_dict *sd, const char *prefix);

typedef struct wf_load_report {
    int missing;      /* module keys absent from sd */
    int unexpected;   /* sd keys the module does not have */
    int loaded;       /* tensors copied */
} wf_load_report;
/* Copy values from sd into the module's parameters and buffers (load_state_dict): in place,
 * under no-grad, casting dtype and moving device as needed. All checks run before anything
 * is copied: on any error the module is unchanged.
 *  - A shape mismatch is WF_ESHAPE naming the key and both shapes (strict or not).
 *  - strict: missing keys are WF_ENOTFOUND, otherwise unexpected keys are WF_EINVAL; the
 *    message lists the keys ("missing key(s): \"0.bias\"; unexpected key(s): \"2.foo\"").
 *  - Not strict: keys present on both sides are loaded, the rest counted in report.
 * report (may be NULL) receives the counts. Returns 0 or a code. */
int wf_module_load_state_dict(wf_module *m, const wf_state_dict *sd, bool strict,
                              wf_load_report *report);

/* Print the module tree like PyTorch's repr ("Sequential(\n  (0): Linear(in_features=...)").
 * Returns 0 or a code. */
int wf_module_fprint(FILE *f, const wf_module *m);

/* ================================================================ layers
 * Each constructor returns a new module (owned by the caller, released by wf_module_free or
 * by a parent that takes it), or NULL + error (WF_EINVAL for bad sizes/options). Parameters
 * are created with the default dtype on the default device; use wf_module_to to change. */

/* Linear: weight [out, in] ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
 * bias [out] ~ U(-1/sqrt(in), 1/sqrt(in)). Input [..., in] -> [..., out]. */
wf_module *wf_linear_new(int64_t in_features, int64_t out_features, bool bias);

/* Conv2d. kernel_size required (kernel_size[1] == 0 means square). Zero means default:
 * stride 1, padding 0, dilation 1, groups 1, bias on (no_bias turns it off).
 * weight [out, in/groups, kh, kw] ~ kaiming_uniform(a=sqrt(5)), bias [out] ~ U(+-1/sqrt(fan_in)).
 * Input [N, C, H, W] or [C, H, W]. */
typedef struct wf_conv2d_layer_opts {
    int kernel_size[2];
    int stride[2];
    int padding[2];
    int dilation[2];
    int groups;
    bool no_bias;
} wf_conv2d_layer_opts;
wf_module *wf_conv2d_new(int64_t in_channels, int64_t out_channels, const wf_conv2d_layer_opts *opts);

/* Pooling (options as for wf_max_pool2d / wf_avg_pool2d: stride 0 = kernel_size). */
wf_module *wf_max_pool2d_new(const wf_pool2d_opts *opts);
wf_module *wf_avg_pool2d_new(const wf_pool2d_opts *opts);
wf_module *wf_adaptive_avg_pool2d_new(int64_t out_h, int64_t out_w);

/* BatchNorm1d ([N,C] or [N,C,L]) and BatchNorm2d ([N,C,H,W]). Zero means default: eps 1e-5,
 * momentum 0.1. cumulative_average: momentum=None (running stats are the cumulative
 * average). Parameters weight (ones) and bias (zeros) unless no_affine; buffers running_mean
 * (zeros), running_var (ones), num_batches_tracked (i64 0) unless no_track_running_stats.
 * Training normalizes with the batch mean and biased variance and updates
 * running = (1-momentum)*running + momentum*batch (unbiased variance); evaluation uses the
 * running statistics. */
typedef struct wf_batch_norm_opts {
    double eps;
    double momentum;
    bool cumulative_average;
    bool no_affine;
    bool no_track_running_stats;
} wf_batch_norm_opts;
wf_module *wf_batch_norm1d_new(int64_t num_features, const wf_batch_norm_opts *opts);
wf_module *wf_batch_norm2d_new(int64_t num_features, const wf_batch_norm_opts *opts);

/* LayerNorm over the last ndim dims (normalized_shape). eps 0 = 1e-5. weight ones and bias
 * zeros unless no_affine (elementwise_affine=False) or no_bias (bias=False).
 * autocast_output: inside an autocast region for the input's device type, the output comes in
 * the region's low dtype (bf16 / f16), still computed in f32 from an f32 input: for a norm whose
 * consumer is a matmul that would cast its input anyway (a pre-norm transformer's ln_1, ln_2),
 * this saves that cast each way (Transformer Engine's LayerNormLinear and flash-attn's fused
 * norm do the same). A departure from torch.autocast, whose layer_norm returns f32; outside
 * autocast it changes nothing. See wf_layer_norm_out_dtype. */
typedef struct wf_layer_norm_opts {
    double eps;
    bool no_affine;
    bool no_bias;
    bool autocast_output;
} wf_layer_norm_opts;
wf_module *wf_layer_norm_new(const int64_t *normalized_shape, int ndim, const wf_layer_norm_opts *opts);

/* RMSNorm: y = x * rsqrt(mean(x^2 over the normalized dims) + eps) * weight. eps 0 means
 * None: the machine epsilon of the input's dtype (torch.finfo(x.dtype).eps). weight ones
 * unless no_affine. */
typedef struct wf_rms_norm_opts {
    double eps;
    bool no_affine;
} wf_rms_norm_opts;
wf_module *wf_rms_norm_new(const int64_t *normalized_shape, int ndim, const wf_rms_norm_opts *opts);

/* GroupNorm(num_groups, num_channels): input [N, C, *], C divisible by num_groups. eps 0 =
 * 1e-5; weight ones, bias zeros unless no_affine. */
typedef struct wf_group_norm_opts {
    double eps;
    bool no_affine;
} wf_group_norm_opts;
wf_module *wf_group_norm_new(int64_t num_groups, int64_t num_channels, const wf_group_norm_opts *opts);

/* Embedding: weight [num, dim] ~ N(0, 1). With has_padding_idx, row padding_idx (negative
 * counts from the end) is zero-initialized and never receives a gradient. */
typedef struct wf_embedding_opts {
    bool has_padding_idx;
    int64_t padding_idx;
} wf_embedding_opts;
wf_module *wf_embedding_new(int64_t num_embeddings, int64_t embedding_dim, const wf_embedding_opts *opts);

/* Dropout(p): in training zeroes each element with probability p and scales the rest by
 * 1/(1-p); identity in evaluation. p in [0, 1]. */
wf_module *wf_dropout_new(double p);

/* Activations and shape layers (no parameters). */
wf_module *wf_relu_new(void);
wf_module *wf_gelu_new(wf_gelu_approx approximate);
wf_module *wf_silu_new(void);
wf_module *wf_tanh_new(void);
wf_module *wf_sigmoid_new(void);
wf_module *wf_softmax_new(int dim);
wf_module *wf_log_softmax_new(int dim);
/* Flatten(start_dim, end_dim); PyTorch's defaults are (1, -1). */
wf_module *wf_flatten_new(int start_dim, int end_dim);
wf_module *wf_identity_new(void);

/* Sequential: children named "0", "1", ...; forward chains them (each child's hooks run).
 * Takes ownership of the n modules (also on failure). If any is NULL, all are freed and NULL
 * is returned without overwriting the recorded error. */
wf_module *wf_sequential_new(int n, ...);
wf_module *wf_sequential_new_array(int n, wf_module *const *modules);
/* Append a module (named by its index) to a Sequential or ModuleList; takes ownership (also
 * on failure). Returns 0 or a code. */
int wf_sequential_append(wf_module *seq, wf_module *child);
/* ModuleList: indexed children "0", "1", ... (no forward). */
wf_module *wf_module_list_new(void);
int wf_module_list_append(wf_module *list, wf_module *child);
int wf_module_list_len(const wf_module *list);
wf_module *wf_module_list_get(const wf_module *list, int i);   /* borrowed; negative from end */
/* ModuleDict: named children (no forward); set replaces an existing entry in place. */
wf_module *wf_module_dict_new(void);
int wf_module_dict_set(wf_module *dict, const char *name, wf_module *child);
wf_module *wf_module_dict_get(const wf_module *dict, const char *name);   /* borrowed */

/* MultiheadAttention(embed_dim, num_heads): parameters in_proj_weight [3E, E] (xavier
 * uniform), in_proj_bias [3E] (zeros), child out_proj = Linear(E, E) with zero bias.
 * dropout: attention-weight dropout in training. batch_first: inputs [N, L, E] instead of
 * [L, N, E]; unbatched [L, E] is accepted too. */
typedef struct wf_mha_opts {
    double dropout;
    bool no_bias;
    bool batch_first;
} wf_mha_opts;
wf_module *wf_mha_new(int64_t embed_dim, int64_t num_heads, const wf_mha_opts *opts);
/* Attention output for query q [L,N,E] (or [N,L,E] with batch_first), key k and value v
 * [S,N,E]. attn_mask (may be NULL): [L,S] or [N*num_heads,L,S]; bool where true means "not
 * allowed" (PyTorch's MultiheadAttention convention), or floating, added to the scores.
 * is_causal applies a causal mask (on its own, or combined with attn_mask). Hooks of m do
 * not run (use wf_module_forward for self-attention with hooks: q = k = v = x, no mask). */
wf_tensor *wf_mha_forward(wf_module *m, wf_tensor *q, wf_tensor *k, wf_tensor *v,
                          wf_tensor *attn_mask, bool is_causal);

/* GPT-style causal self-attention (nanoGPT's CausalSelfAttention): children c_attn =
 * Linear(E, 3E, bias), c_proj = Linear(E, E, bias), attn_dropout, resid_dropout (Dropout(p)).
 * Input [B, T, E] -> [B, T, E]. */
wf_module *wf_causal_self_attention_new(int64_t n_embd, int64_t n_head, bool bias, double dropout);
/* m's output before c_proj's bias: c_attn, the causal attention and c_proj's weight, with
 * *proj_bias set to c_proj's bias (borrowed from m; NULL when it has none) for the caller to
 * add, e.g. inside the residual add and norm that follow (wf_add_bias_layer_norm), whose
 * backward then forms the bias gradient instead of a reduction of its own. Otherwise as m's
 * forward, except that m's own hooks do not run. WF_EINVAL (named) when m is not a
 * CausalSelfAttention, when its c_proj is not a plain Linear (replaced, hooked or
 * checkpointed), or when m trains with dropout > 0 (resid_dropout sits between c_proj's bias
 * and the add): run wf_module_forward then. The result belongs to the caller's scope like any
 * result; NULL on error, with *proj_bias NULL.
 *
 *     wf_tensor *pb = NULL, *a = wf_causal_self_attention_forward_without_proj_bias(attn, h, &pb);
 *     wf_tensor *h2 = wf_add_bias_layer_norm(x, a, pb, WF_SHAPE(768), w, b, 1e-5, &x, WF_DTYPE_DEFAULT);
 */
wf_tensor *wf_causal_self_attention_forward_without_proj_bias(wf_module *m, wf_tensor *x, wf_tensor **proj_bias);

/* ================================================================ functional */

/* F.dropout: training false or p == 0 -> an alias of x; p == 1 -> zeros. */
wf_tensor *wf_dropout(wf_tensor *x, double p, bool training);
/* F.layer_norm over the last ndim dims; weight/bias may be NULL. */
wf_tensor *wf_layer_norm(wf_tensor *x, const int64_t *normalized_shape, int ndim,
                         wf_tensor *weight, wf_tensor *bias, double eps);
/* The residual add fused into the layer norm of a pre-norm transformer (flash-attn's
 * layer_norm with residual and prenorm, Apex's and Transformer Engine's fused add + norm):
 * returns layer_norm(x + r) and, when sum is not NULL, sets *sum = x + r, a tensor the
 * caller owns like any result (the next residual add's input). x (the residual stream) and r
 * (the branch) have one shape; r may have another floating dtype (an f32 stream plus a bf16
 * branch: s keeps x's dtype, as x + r would). One kernel each way where the device has one
 * (CUDA, the CPU): the backward adds *sum's own gradient and writes x's and r's gradients
 * in their dtypes. Elsewhere it is x + r, then wf_layer_norm. NULL on error (*sum NULL).
 *
 *     wf_tensor *h = wf_add_layer_norm(x, attn_out, WF_SHAPE(768), w, b, 1e-5, &x);
 */
wf_tensor *wf_add_layer_norm(wf_tensor *x, wf_tensor *r, const int64_t *normalized_shape, int ndim, wf_tensor *weight,
                             wf_tensor *bias, double eps, wf_tensor **sum);
/* wf_layer_norm and wf_add_layer_norm with the output written in out_dtype (flash-attn's
 * out_dtype): float32, bfloat16 or float16, or the input's own dtype; WF_DTYPE_DEFAULT gives
 * the plain form's dtype. The norm is computed as the plain form computes it (in f32 for an
 * f32 or half input, under autocast as outside), then stored once in out_dtype: where the
 * device has the kernel (CUDA, and the CPU outside the minimal preset) no cast runs either way
 * and the backward reads the gradient in out_dtype, giving x's (and r's) gradient in its own
 * dtype. Elsewhere it is the plain form, then wf_to_dtype. Another out_dtype (an integer, or
 * float64 from a float32 input) is WF_EDTYPE, named. What LayerNorm's autocast_output asks for,
 * as a function: the low dtype of the autocast region, else the default.
 *
 *     wf_dtype low = wf_autocast_enabled(WF_DEV_CPU) ? wf_autocast_dtype() : WF_DTYPE_DEFAULT;
 *     wf_tensor *h = wf_add_layer_norm_out_dtype(x, attn_out, WF_SHAPE(768), w, b, 1e-5, &x, low);
 *     wf_tensor *out = wf_linear(h, fc_w, NULL);   // under autocast: h is bf16, no cast
 */
wf_tensor *wf_layer_norm_out_dtype(wf_tensor *x, const int64_t *normalized_shape, int ndim, wf_tensor *weight,
                                   wf_tensor *bias, double eps, wf_dtype out_dtype);
wf_tensor *wf_add_layer_norm_out_dtype(wf_tensor *x, wf_tensor *r, const int64_t *normalized_shape, int ndim,
                                       wf_tensor *weight, wf_tensor *bias, double eps, wf_tensor **sum, wf_dtype out_dtype);
/* wf_add_layer_norm_out_dtype with the branch's bias added in the same kernel: layer_norm(x + (r +
 * r_bias)), *sum = x + r + r_bias, so the Linear that makes r runs without its bias (a plain GEMM
 * each way) and r_bias's gradient, the column sum of the sum's gradient, comes out of the norm's
 * backward kernel with the weight's and bias's (Megatron's bias + dropout + add, Transformer
 * Engine's fused add + norm). r_bias is 1-D of the normalized size, r's dtype or x's; one
 * normalized dim only (ndim 1; another is WF_ESHAPE). r_bias NULL: exactly
 * wf_add_layer_norm_out_dtype. Under autocast as that one. Where the device has no kernel (or
 * r_bias does not suit it: not contiguous, another device) it is r + r_bias, then
 * wf_add_layer_norm_out_dtype. NULL on error, named (*sum NULL).
 *
 *     wf_tensor *r = wf_linear(h, proj_w, NULL);   // c_proj without its bias
 *     wf_tensor *y = wf_add_bias_layer_norm(x, r, proj_b, WF_SHAPE(768), w, b, 1e-5, &x, WF_DTYPE_DEFAULT);
 */
wf_tensor *wf_add_bias_layer_norm(wf_tensor *x, wf_tensor *r, wf_tensor *r_bias, const int64_t *normalized_shape, int ndim,
                                  wf_tensor *weight, wf_tensor *bias, double eps, wf_tensor **sum, wf_dtype out_dtype);
/* F.rms_norm; eps <= 0 means the machine epsilon of x's dtype. weight may be NULL. */
wf_tensor *wf_rms_norm(wf_tensor *x, const int64_t *normalized_shape, int ndim,
                       wf_tensor *weight, double eps);
/* F.group_norm; weight/bias [C] may be NULL. */
wf_tensor *wf_group_norm(wf_tensor *x, int64_t num_groups, wf_tensor *weight, wf_tensor *bias, double eps);
/* F.batch_norm over all dims but 1. running_mean/var may be NULL (then training must be
 * true or batch statistics are used). In training the running statistics are updated in
 * place (no-grad) with momentum (momentum < 0 is not allowed; the modules handle None). */
wf_tensor *wf_batch_norm(wf_tensor *x, wf_tensor *running_mean, wf_tensor *running_var,
                         wf_tensor *weight, wf_tensor *bias, bool training, double momentum, double eps);
/* F.scaled_dot_product_attention (math form): softmax(q k^T / sqrt(E) + mask) v.
 * q [..., L, E], k [..., S, E], v [..., S, Ev]. attn_mask (may be NULL) broadcasts to
 * [..., L, S]: bool where true means "takes part" (sdpa's convention), or floating, added.
 * is_causal: the top-left lower-triangular mask. dropout_p > 0 applies dropout to the
 * attention weights (always, as PyTorch's functional form does). */
wf_tensor *wf_scaled_dot_product_attention(wf_tensor *q, wf_tensor *k, wf_tensor *v,
                                           wf_tensor *attn_mask, double dropout_p, bool is_causal);

/* ================================================================ losses */

typedef enum wf_reduction {
    WF_REDUCTION_MEAN = 0,   /* default */
    WF_REDUCTION_SUM,
    WF_REDUCTION_NONE,
    WF_REDUCTION_BATCHMEAN   /* kl_div only: sum / batch size */
} wf_reduction;

/* Options for nll_loss and cross_entropy. weight: per-class weights [C] (may be NULL).
 * ignore_index: used when ignore_index_set, otherwise -100 (PyTorch's default).
 * label_smoothing in [0, 1] (cross_entropy only). */
typedef struct wf_cross_entropy_opts {
    wf_tensor *weight;
    bool ignore_index_set;
    int64_t ignore_index;
    double label_smoothing;
    wf_reduction reduction;
} wf_cross_entropy_opts;

/* F.cross_entropy. input: logits [N, C], [N, C, d1, ...] or [C]. target: class indices (i64)
 * [N] / [N, d1, ...] / [], or class probabilities (floating, input's shape). The weighted
 * mean divides by the sum of the weights of non-ignored targets. Errors: WF_EDTYPE for a
 * target of the wrong dtype, WF_ESHAPE for mismatched shapes, WF_EINDEX naming an
 * out-of-range class index. opts may be NULL. */
wf_tensor *wf_cross_entropy(wf_tensor *input, wf_tensor *target, const wf_cross_entropy_opts *opts);
/* cross_entropy(linear(h, weight, bias), targets, opts) without the logits: an LM head's loss
 * (Liger's / Apple's cut cross-entropy). h [N, C], weight [V, C], bias [V] or NULL, targets
 * int64 [N]. The forward computes the logits chunk_rows rows at a time (0: automatic, as
 * few equal chunks of ceil(N / chunks) rows as keep a chunk's logits under 2^28 elements, e.g.
 * 4 chunks of 4096 rows for 16384 x 50304) in the compute dtype (bf16 under autocast), and
 * softmax - onehot goes straight into the gradients of h, weight and bias (the last two summed
 * over the chunks in f32 under half precision, by the GEMM itself). For a mean or sum loss that
 * needs gradients, the forward makes them from each chunk's logits while it has them (a loss
 * gradient of 1; the backward scales them by the real one): they are held from the forward to
 * the backward, and an in-place change to h in between does not affect them. Otherwise
 * (reduction none, f16) the forward keeps each row's log-sum-exp (f32, f64 for
 * f64) and the backward makes each chunk's logits again. opts: ignore_index, label_smoothing and the mean / sum / none
 * reductions of wf_cross_entropy; class weights are refused (WF_ENOTSUP). The loss has h's
 * dtype (f32 under autocast). opts may be NULL. */
wf_tensor *wf_linear_cross_entropy(wf_tensor *h, wf_tensor *weight, wf_tensor *bias, wf_tensor *targets,
                                   const wf_cross_entropy_opts *opts, int64_t chunk_rows);
/* F.nll_loss on log-probabilities (label_smoothing must be 0). */
wf_tensor *wf_nll_loss(wf_tensor *input, wf_tensor *target, const wf_cross_entropy_opts *opts);
/* Elementwise regression losses (input and target broadcast together). */
wf_tensor *wf_mse_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction);
wf_tensor *wf_l1_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction);
/* 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta = 0: L1). PyTorch's beta is 1. */
wf_tensor *wf_smooth_l1_loss(wf_tensor *input, wf_tensor *target, wf_reduction reduction, double beta);
/* F.binary_cross_entropy_with_logits; weight and pos_weight (may be NULL) broadcast. */
typedef struct wf_bce_opts {
    wf_tensor *weight;
    wf_tensor *pos_weight;
    wf_reduction reduction;
} wf_bce_opts;
wf_tensor *wf_binary_cross_entropy_with_logits(wf_tensor *input, wf_tensor *target, const wf_bce_opts *opts);
/* F.kl_div(input = log q, target = p (or log p with log_target)): p * (log p - input),
 * 0 where p == 0. reduction MEAN averages over all elements (as PyTorch), BATCHMEAN divides
 * the sum by input's first dimension. */
wf_tensor *wf_kl_div(wf_tensor *input, wf_tensor *target, wf_reduction reduction, bool log_target);

/* ================================================================ init (torch.nn.init)
 * All fill t in place under no-grad, drawing from the global Philox generator, and return
 * 0 or a code (WF_ENULL, WF_EINVAL for bad arguments, WF_ESHAPE when fans need >= 2 dims). */

typedef enum wf_fan_mode { WF_FAN_IN = 0, WF_FAN_OUT = 1 } wf_fan_mode;

/* Recommended gain for a nonlinearity: "linear", "conv1d".."conv3d", "conv_transpose*",
 * "sigmoid" -> 1, "tanh" -> 5/3, "relu" -> sqrt(2), "leaky_relu" -> sqrt(2/(1+slope^2))
 * (param = slope; NAN means PyTorch's default 0.01), "selu" -> 3/4. Unknown: NAN + WF_EINVAL. */
/* Skip initialization on this thread (PyTorch's skip_init, Fabric's empty_init): while on,
 * every wf_init_* function returns 0 without touching its tensor, so layers built meanwhile
 * hold uninitialized parameters until a checkpoint is loaded into them. Returns the previous
 * setting. */
bool wf_nn_set_skip_init(bool skip);
bool wf_nn_skip_init(void);
double wf_init_calculate_gain(const char *nonlinearity, double param);
/* fan_in = size(1) * receptive field, fan_out = size(0) * receptive field. */
int wf_init_calculate_fans(const wf_tensor *t, int64_t *fan_in, int64_t *fan_out);
int wf_init_uniform_(wf_tensor *t, double a, double b);
int wf_init_normal_(wf_tensor *t, double mean, double std);
/* normal(mean, std) truncated to [a, b] (inverse-CDF method as PyTorch). */
int wf_init_trunc_normal_(wf_tensor *t, double mean, double std, double a, double b);
int wf_init_constant_(wf_tensor *t, double value);
int wf_init_zeros_(wf_tensor *t);
int wf_init_ones_(wf_tensor *t);
/* 2-D identity (torch.nn.init.eye_). */
int wf_init_eye_(wf_tensor *t);
int wf_init_xavier_uniform_(wf_tensor *t, double gain);
int wf_init_xavier_normal_(wf_tensor *t, double gain);
/* nonlinearity NULL = "leaky_relu" (PyTorch's default); a is the negative slope. */
int wf_init_kaiming_uniform_(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity);
int wf_init_kaiming_normal_(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity);
/* (Semi-)orthogonal matrix from the QR decomposition of a normal matrix, times gain. t needs
 * >= 2 dims (trailing dims are flattened). */
int wf_init_orthogonal_(wf_tensor *t, double gain);

#ifdef __cplusplus
}
#endif
#endif
