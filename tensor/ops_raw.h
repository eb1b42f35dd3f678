/* tensor/ops_raw.h: the raw ops, one section per tensor/ops_*.c file.
 *
 * A raw op validates its arguments, promotes dtypes, allocates its result and dispatches to
 * the device's kernel. It knows no graph: it records no node and never asks whether grad
 * mode is on. The public differentiable functions (wf_exp, wf_add, ...) live in autograd/
 * (fn_*.c, one file per op family): each calls autocast, then its raw op, then records the
 * node whose backward sits in the same file. Results are new tensors registered in the
 * current scope (the caller's, like any op result) unless said otherwise. Errors: NULL or a
 * negative WF_E* code, message recorded naming fname (the public function's name). */
#ifndef WEFT_OPS_RAW_H
#define WEFT_OPS_RAW_H

#include "tensor_impl.h"

/* ---------------------------------------------------------------- tensor/ops_unary.c */
/* y = op(x; a, b). Integer x is cast to the default dtype first for ops that compute in
 * floating point; predicates (logical_not, isfinite) give bool. */
wf_tensor *wf__unary_raw(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b);
/* x = op(x; a, b) in place (bumps x's version). */
int wf__unary_raw_(const char *fname, wf_unary_op op, wf_tensor *x, double a, double b);
/* gx = g * op'(s): s is the op's input x, or its output y when by_output (ops whose
 * derivative is written in terms of y); g is cast to s's dtype. */
wf_tensor *wf__unary_backward_raw(wf_unary_op op, wf_tensor *g, wf_tensor *s, bool by_output, double a, double b);

/* ---------------------------------------------------------------- tensor/ops_copy.c */
/* New contiguous tensor with x's values (dtype dt, on dev; any two devices). */
wf_tensor *wf__copy_raw(wf_tensor *x, wf_dtype dt, wf_device dev);
/* x cast to dt: x itself when it has dt already (borrowed), else a new tensor. */
wf_tensor *wf__to_dtype_raw(wf_tensor *x, wf_dtype dt);
/* dst = src, src broadcast to dst's shape, cast, moved from its device (bumps dst's version).
 * Shapes are checked by the caller. */
int wf__copy_raw_(wf_tensor *dst, wf_tensor *src);

/* ---------------------------------------------------------------- tensor/ops_binary.c */
/* y = a op b, broadcast, promoted (wf__result_type; true division; bool add/mul as or/and).
 * ins[0], ins[1]: the operands it computed on (a and b, or their casts to y's dtype; a bf16 /
 * f16 operand of an f32 add, sub or mul stays as it is where the backend widens it). */
wf_tensor *wf__binary_raw(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, wf_tensor **ins);
/* y = a op s (s op a when reversed). */
wf_tensor *wf__binary_scalar_raw(const char *fname, wf_binary_op op, wf_tensor *a, double s, bool reversed);
/* y = cond ? a : b, broadcast; ins as for wf__binary_raw. */
wf_tensor *wf__where_raw(wf_tensor *cond, wf_tensor *a, wf_tensor *b, wf_tensor **ins);
/* The checks of a op= b: not NULL, one device, b broadcasts to a's shape, the result type
 * fits a's dtype. 0 or a code. */
int wf__binary_check_(const char *fname, wf_tensor *a, wf_tensor *b);
/* a op= alpha * b (alpha: add and sub only), after wf__binary_check_; bumps a's version. */
int wf__binary_raw_(const char *fname, wf_binary_op op, wf_tensor *a, wf_tensor *b, double alpha);
/* a op= s; bumps a's version. */
int wf__binary_scalar_raw_(const char *fname, wf_binary_op op, wf_tensor *a, double s);
/* a = v (v checked by the caller); bumps a's version. */
int wf__fill_raw_(wf_tensor *a, double v);

/* ---------------------------------------------------------------- tensor/ops_reduce.c */
/* dims (n of them; all when n == 0) as a bit mask of x's dims; 0 or a code naming op. */
int wf__reduce_dims_mask(const char *op, const wf_tensor *x, const int *dims, int n, uint32_t *mask);
/* x's shape with the masked dims kept as 1 (keepdim) or dropped. */
void wf__reduce_kept_shape(const wf_tensor *x, uint32_t mask, bool keepdim, int *nd, int64_t *shape);
/* how many elements each output of a reduction over mask sums */
int64_t wf__reduce_count(const wf_tensor *x, uint32_t mask);
/* keepdim-shaped sum over mask, in x's dtype (floating) or i64, accumulated in f32/f64 */
wf_tensor *wf__sum_raw(const char *op, wf_tensor *x, uint32_t mask);
/* keepdim-shaped max (is_max) or min over mask, x's dtype; WF_EINVAL over an empty dim */
wf_tensor *wf__amax_raw(const char *op, bool is_max, wf_tensor *x, uint32_t mask);
/* keepdim-shaped p-norm over mask (p > 0 or INFINITY, floating x), x's dtype */
wf_tensor *wf__norm_raw(wf_tensor *x, double p, uint32_t mask);
/* i64 index of the max (is_max) or min along dim d of src, size 1 at d; WF_EINVAL when empty */
wf_tensor *wf__arg_reduce_raw(const char *op, bool is_max, wf_tensor *src, int d);

/* ---------------------------------------------------------------- tensor/ops_view.c
 * Views share t's storage (wf__view_of: the result remembers t's view base). */
/* shape with a -1 inferred into s (count checked against t); 1 when t's strides allow a view
 * (its strides in st), 0 when a reshape must copy, or a negative code naming op. */
int wf__reshape_geometry(const char *op, const wf_tensor *t, const int64_t *shape, int nd, int64_t *s, int64_t *st);
/* t with its dims reordered (dims: a permutation of t's dims, checked) */
wf_tensor *wf__permute_raw(wf_tensor *t, const int *dims, int nd);
/* a strided slice along dim (drop: select, the dim is removed); the bounds come normalized
 * from wf__narrow_args / wf__slice_args_of / wf__select_args (0 or a code naming the op) */
typedef struct wf__slice_args { int dim; int64_t start, count, step; bool drop; } wf__slice_args;
int wf__narrow_args(wf_tensor *t, int dim, int64_t start, int64_t length, wf__slice_args *a);
int wf__slice_args_of(wf_tensor *t, int dim, int64_t start, int64_t end, int64_t step, wf__slice_args *a);
int wf__select_args(wf_tensor *t, int dim, int64_t index, wf__slice_args *a);
wf_tensor *wf__slice_raw(wf_tensor *t, const wf__slice_args *a);
/* wf_expand's view: shape checked (-1 keeps a dim), then wf__expand_raw (tensor_impl.h) */
wf_tensor *wf__expand_checked_raw(wf_tensor *t, const int64_t *shape, int nd);
/* the same storage with size-1 dims dropped (dim: that one if its size is 1) or one added */
wf_tensor *wf__squeeze_raw(wf_tensor *t, int dim);
wf_tensor *wf__squeeze_all_raw(wf_tensor *t);
wf_tensor *wf__unsqueeze_raw(wf_tensor *t, int dim);

/* ---------------------------------------------------------------- tensor/ops_softmax.c */
/* y = (log_)softmax(x) along dim (floating x), contiguous, x's shape and dtype */
wf_tensor *wf__softmax_raw(const char *op, wf_tensor *x, int dim, bool is_log);
/* gx from gy and the forward's output y along dim (normalized): contiguous, y's dtype */
wf_tensor *wf__softmax_backward_raw(wf_tensor *gy, wf_tensor *y, int dim, bool is_log);
/* attention's y = out_scale * softmax(scale * x) along the last dim of x [..., L, S], with
 * is_causal the entries j > i of each [L, S] matrix excluded (0 in y; torch's top-left
 * is_causal): one kernel pass, x's dtype, contiguous. out_scale (> 0) is dropout's 1/(1-p)
 * (1 without). Its backward: wf__softmax_backward_scaled_raw with the same scales. */
wf_tensor *wf__softmax_attn_raw(wf_tensor *x, double scale, bool is_causal, double out_scale);
wf_tensor *wf__softmax_backward_scaled_raw(wf_tensor *gy, wf_tensor *y, int dim, bool is_log, double scale,
                                           double out_scale);

/* ---------------------------------------------------------------- tensor/ops_matmul.c */
/* The argument checks of wf_matmul (a, b at least 1-D, inner dims agree) and wf_bmm (3-D,
 * equal batches): 0 or a code naming the op. */
int wf__matmul_check(const char *op, wf_tensor *a, wf_tensor *b);
int wf__bmm_check(wf_tensor *a, wf_tensor *b);
/* a @ b for a, b at least 2-D (checked), batch dims broadcast */
wf_tensor *wf__matmul_nd_raw(const char *op, wf_tensor *a, wf_tensor *b);
/* y = x @ w^T (+ b), checked (the bias fused into the GEMM where the device has it) */
wf_tensor *wf__linear_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b);
/* A Linear's weight and bias gradients from g (y's gradient) in one GEMM with a fused
 * epilogue: 0 with *gw [out, in] and *gb [out] made, 1 when this device cannot (nothing
 * made, no error: compose them), or a negative code. */
int wf__linear_wgrad_fused_raw(wf_tensor *g, wf_tensor *x, wf_tensor *w, wf_tensor **gw, wf_tensor **gb);
/* c += a @ b, no autograd: a [m, k] and b [k, n] of one floating dtype (views GEMM can read as
 * stored, e.g. a wf_t, cost no copy), c [m, n] row-major f32 (f64 when a is f64) on their
 * device, the sum done in c's dtype (the gemm_acc kernel: a half product is never rounded to
 * half before it is added). 0 or a code naming op. */
int wf__matmul_acc_raw_(const char *op, wf_tensor *c, wf_tensor *a, wf_tensor *b);
/* a @ b written in f32 (f64 when a is f64), no autograd: a [m, k] and b [k, n] of one floating
 * dtype (transposed views read as stored, as for wf__matmul_acc_raw_), the products summed in
 * f32 and never rounded to a's dtype (the gemm_acc kernel with beta 0). A half-precision
 * weight's gradient made in its f32 parameter's dtype: no bf16 product, no cast kernel after
 * it. A new contiguous [m, n] tensor (the caller's scope owns it), or NULL naming the problem. */
wf_tensor *wf__matmul_f32_raw(wf_tensor *a, wf_tensor *b);

/* ---------------------------------------------------------------- tensor/ops_index.c
 * Index tensors are i64 or i32, their values checked on the host (PyTorch's semantics). */
wf_tensor *wf__gather_raw(wf_tensor *x, int dim, wf_tensor *index);
wf_tensor *wf__scatter_add_raw(wf_tensor *x, int dim, wf_tensor *index, wf_tensor *src);
wf_tensor *wf__index_select_raw(wf_tensor *x, int dim, wf_tensor *index);
/* also *flat: the indices as a contiguous 1-D [N] (a reference the caller frees), which the
 * backward needs */
wf_tensor *wf__embedding_raw(wf_tensor *weight, wf_tensor *indices, wf_tensor **flat);
/* the list promoted to one dtype, joined along dim (cat) or along a new dim (stack) */
wf_tensor *wf__cat_raw(wf_tensor *const *ts, int n, int dim);
wf_tensor *wf__stack_raw(wf_tensor *const *ts, int n, int dim);
/* Backward of the indexing ops: the gradient of an input of shape shape[ndim], dtype dt, on
 * dev, from gy (fresh contiguous tensors, never views of gy):
 * gather: zeros.scatter_add(dim, index, gy); scatter_add's src: gy.gather(dim, index), zero
 * outside index's extent; index_select: zeros.index_add(dim, index, gy); embedding (weight
 * [V, D] = shape[2], index the flat 1-D indices): zeros.index_add(0, index, gy as [N, D]). */
wf_tensor *wf__gather_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                   wf_dtype dt, wf_device dev);
wf_tensor *wf__scatter_add_src_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                            wf_dtype dt, wf_device dev);
wf_tensor *wf__index_select_backward_raw(wf_tensor *gy, int dim, wf_tensor *index, int ndim, const int64_t *shape,
                                         wf_dtype dt, wf_device dev);
wf_tensor *wf__embedding_backward_raw(wf_tensor *gy, wf_tensor *index, const int64_t *shape, wf_dtype dt, wf_device dev);
/* embedding's backward added into g ([V, D], its dtype, on gy's device): g.index_add(0, index,
 * gy as [N, D]); the step above without its zeros. 0 or a negative code (recorded). */
int wf__embedding_backward_into_raw(wf_tensor *g, wf_tensor *gy, wf_tensor *index);
/* a contiguous copy (dtype dt, on dev) of the view of g given by shape/stride/offset: the
 * gradient of one input of cat or stack */
wf_tensor *wf__copy_view_raw(wf_tensor *g, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset,
                             wf_dtype dt, wf_device dev);

/* ---------------------------------------------------------------- tensor/ops_conv.c
 * Images are 4-D [N,C,H,W] or unbatched 3-D [C,H,W] (pools; conv2d takes 4-D here, its
 * caller adds the batch dim), floating. Temporaries join the current scope. */
/* WF_ESHAPE / WF_EDTYPE naming op unless x is such an image */
int wf__check_image(const char *op, wf_tensor *x);
/* Does x (f16/bf16) have to go through f32 for kernel op kop on its device (the kernel
 * exists for f32 but not for x's dtype)? */
bool wf__conv_via_f32(const wf_tensor *x, wf_kernel_op kop);
/* wf_conv2d's checks (image, weight and bias dtype/device, 4-D weight): 0 or a code */
int wf__conv2d_check(wf_tensor *x, wf_tensor *w, wf_tensor *b);
/* y = conv2d(x 4-D, w, b); prm[0..6] gets stride h/w, padding h/w, dilation h/w, groups */
wf_tensor *wf__conv2d_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *o, int64_t *prm);
/* max pool; *argmax: i64 with y's shape, the flat index in H*W of each maximum */
wf_tensor *wf__max_pool2d_raw(wf_tensor *x, const wf_pool2d_opts *opts, wf_tensor **argmax);
/* average pool; prm[0..6] gets kernel h/w, stride h/w, padding h/w, count_include_pad */
wf_tensor *wf__avg_pool2d_raw(wf_tensor *x, const wf_pool2d_opts *opts, int64_t *prm);
/* adaptive average pool to oh x ow: *equal_bins when the bins divide the input (then it ran
 * an average pool, its parameters in prm), else the backend's adaptive kernel */
wf_tensor *wf__adaptive_avg_pool2d_raw(wf_tensor *x, int64_t oh, int64_t ow, bool *equal_bins, int64_t *prm);

/* ---------------------------------------------------------------- tensor/ops_conv_backward.c */
/* PyTorch's convolution_backward: from gy and the forward's x and w (prm as wf__conv2d_raw
 * gives it), the gradients asked for: *gx (x's shape), *gw (w's), *gb ([O]); the others
 * are set to NULL. Results in the caller's scope. 0 or a code. */
int wf__conv2d_backward_raw(wf_tensor *gy, wf_tensor *x, wf_tensor *w, const int64_t *prm, bool need_x, bool need_w,
                            bool need_b, wf_tensor **gx, wf_tensor **gw, wf_tensor **gb);
/* The pools' input gradients (shape[ndim], dtype dt, on dev) from gy: max pool through the
 * forward's argmax, average pool with its parameters, adaptive average pool. */
wf_tensor *wf__max_pool2d_backward_raw(wf_tensor *gy, wf_tensor *argmax, int ndim, const int64_t *shape, wf_dtype dt,
                                       wf_device dev);
wf_tensor *wf__avg_pool2d_backward_raw(wf_tensor *gy, const int k[2], const int s[2], const int p[2], bool cip,
                                       int ndim, const int64_t *shape, wf_dtype dt, wf_device dev);
wf_tensor *wf__adaptive_avg_pool2d_backward_raw(wf_tensor *gy, int ndim, const int64_t *shape, wf_dtype dt,
                                                wf_device dev);

/* ---------------------------------------------------------------- tensor/ops_fused.c
 * The optional fused kernels. *_fusable: does this device's kernel take these arguments
 * (no error recorded either way)? The forwards and backwards assume it does; inputs are
 * already as the kernel reads them (noted per op). */
/* q [B,H,L,D], k/v [B,H,S,D] f16/bf16 (last-dim stride 1): y [B,H,L,D] stored [B,L,H,D],
 * *lse f32 [B,H,L]; backward: dq, dk, dv (q/k/v's shapes) from gy */
bool wf__sdpa_fusable(wf_tensor *q, wf_tensor *k, wf_tensor *v);
wf_tensor *wf__sdpa_fwd_raw(wf_tensor *q, wf_tensor *k, wf_tensor *v, double scale, bool causal, wf_tensor **lse);
int wf__sdpa_bwd_raw(wf_tensor *gy, wf_tensor *q, wf_tensor *k, wf_tensor *v, wf_tensor *o, wf_tensor *lse,
                     double scale, bool causal, wf_tensor **dq, wf_tensor **dk, wf_tensor **dv);
/* the same from a packed qkv [B,T,3E] with H heads (*scale = 1/sqrt(E/H)); backward: one
 * [B,T,3E] gradient */
bool wf__sdpa_qkv_fusable(wf_tensor *qkv, int64_t H);
wf_tensor *wf__sdpa_qkv_fwd_raw(wf_tensor *qkv, int64_t H, bool causal, double *scale, wf_tensor **lse);
wf_tensor *wf__sdpa_qkv_bwd_raw(wf_tensor *gy, wf_tensor *qkv, int64_t H, wf_tensor *o, wf_tensor *lse, double scale,
                                bool causal);
/* layer norm of contiguous x over its last nd dims, y in ydt (f32, bf16 or f16, computed in f32
 * whatever x's dtype); *mean, *rstd f32 [rows]; backward from gy (made contiguous in ydt): the
 * gradients asked for in x's dtype (dw of shape wshape, db of shape bshape), the others NULL */
bool wf__layer_norm_fusable(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, wf_dtype ydt);
wf_tensor *wf__layer_norm_fwd_raw(wf_tensor *x, int nd, wf_tensor *weight, wf_tensor *bias, double eps, wf_dtype ydt,
                                  wf_tensor **mean, wf_tensor **rstd);
int wf__layer_norm_bwd_raw(wf_tensor *gy, wf_dtype ydt, wf_tensor *x, wf_tensor *mean, wf_tensor *rstd, wf_tensor *w,
                           const int64_t *wshape, int wndim, const int64_t *bshape, int bndim, bool need_x, bool need_w,
                           bool need_b, wf_tensor **dx, wf_tensor **dw, wf_tensor **db);
/* s = x + r (x's dtype) and y = layer norm of s over the last nd dims, y in ydt (x's, or f32 /
 * bf16 / f16): x, r contiguous of one shape (r of any floating dtype x's absorbs); backward from
 * the saved s and gy (made contiguous in ydt): the gradients asked for in need[] (x, r, weight,
 * bias), gs (s's gradient from its other uses) may be NULL. dx and dr are one tensor when x and
 * r share a dtype. rb (NULL: none): r's bias [D] (nd 1, contiguous, r's or x's dtype), s = x +
 * (r + rb); its gradient (need[4]) in rbdt. */
bool wf__add_layer_norm_fusable(wf_tensor *x, wf_tensor *r, wf_tensor *rb, int nd, wf_tensor *weight, wf_tensor *bias,
                                wf_dtype ydt);
wf_tensor *wf__add_layer_norm_fwd_raw(wf_tensor *x, wf_tensor *r, wf_tensor *rb, int nd, wf_tensor *weight,
                                      wf_tensor *bias, double eps, wf_dtype ydt, wf_tensor **s, wf_tensor **mean,
                                      wf_tensor **rstd);
int wf__add_layer_norm_bwd_raw(wf_tensor *gy, wf_dtype ydt, wf_tensor *gs, wf_tensor *s, wf_tensor *mean,
                               wf_tensor *rstd, wf_tensor *w, wf_dtype rdt, const int64_t *wshape, int wndim,
                               const int64_t *bshape, int bndim, wf_dtype rbdt, const bool need[5], wf_tensor **dx,
                               wf_tensor **dr, wf_tensor **dw, wf_tensor **db, wf_tensor **drb);
/* per-row softmax cross-entropy of contiguous logits x [N, C] with i64 targets [N]: loss [N]
 * (0 where ignored), *lse f32 [N]; backward: glogits from gloss [N] */
bool wf__cross_entropy_fusable(wf_tensor *input, wf_tensor *target, int reduction);
wf_tensor *wf__cross_entropy_fwd_raw(wf_tensor *x, wf_tensor *target, int64_t ignore_index, wf_tensor **lse);
wf_tensor *wf__cross_entropy_bwd_raw(wf_tensor *gloss, wf_tensor *x, wf_tensor *target, wf_tensor *lse,
                                     int64_t ignore_index);

/* ---------------------------------------------------------------- tensor/ops_linear_fused.c
 * The fused Linear front-ends' pieces (autograd/fn_linear_fused.c): the device's kernel
 * where it has one for the dtype, composed from the raw ops above otherwise. */
/* Does w's device fuse bias + GELU for w's dtype, with b [out] contiguous of w's dtype? */
bool wf__bias_gelu_fusable(wf_tensor *w, wf_tensor *b);
/* y = gelu(x + b) (b over the last dim; x made contiguous); backward: gy * gelu'(x + b) */
wf_tensor *wf__bias_gelu_raw(wf_tensor *x, wf_tensor *b, bool tanh_approx);
wf_tensor *wf__bias_gelu_bwd_raw(wf_tensor *gy, wf_tensor *x, wf_tensor *b, bool tanh_approx);
/* The GELU's backward and the bias gradient of the Linear before it, in one pass where the
 * device has the kernel (CUDA: f32 / bf16 / f16): gy and pre [..., N] of one shape, dtype and
 * device (pre: the GELU's whole input). *gx = gy * gelu'(pre) (pre's shape, contiguous; the
 * bits of wf__unary_backward_raw's) and *gb [N] = gx's column sums over every leading dim, as
 * gx holds them, summed in f32 in a fixed order; both pre's dtype, in the caller's scope.
 * 0 with both made; 1 when the device has no kernel for the dtype (nothing made, no error:
 * compose the GELU's backward and a sum); a negative code (wf__error's message) for NULL,
 * 0-dim, mismatched shapes, dtypes or devices. */
int wf__gelu_backward_bias_raw(wf_tensor *gy, wf_tensor *pre, bool tanh_approx, wf_tensor **gx, wf_tensor **gb);
/* Linear + GELU (tanh form) with the GELU inside the GEMM, where the device has gemm_gelu for
 * the dtype (CUDA: cuBLASLt's GELU epilogues, f16 / bf16) and the case fits it. Forward: x
 * [..., in], w [out, in], b [out] or NULL: *g = gelu(x @ w^T + b) and *aux = x @ w^T + b (the
 * GELU's input), both x's shape with out last, contiguous. Backward: gy [..., out] (the
 * gradient of the Linear after the GELU), w [out, hid] its weight, aux [..., hid] as the
 * forward made it: *dh = (gy @ w) * gelu'(aux) (aux's shape) and, db not NULL, *db [hid] =
 * dh's column sums (from the same GEMM). Each returns 0
 * with its tensors made (in the caller's scope), 1 when not handled (nothing made, no error:
 * compose the GEMM and the GELU), or a negative code. */
int wf__linear_gelu_aux_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_tensor **g, wf_tensor **aux);
int wf__linear_dgelu_bgrad_raw(wf_tensor *gy, wf_tensor *w, wf_tensor *aux, wf_tensor **dh, wf_tensor **db);
/* Per-row softmax cross-entropy of one chunk of logits [n, V] with i64 targets [n]: *loss
 * and *lse [n] in wp (f32, or f64 for f64 logits), loss 0 on ignored rows. Backward: the
 * logits' gradient (logits' dtype) coef[n] * (softmax - (1-ls) onehot - ls/V), 0 on ignored
 * rows; coef and lse as the forward made them (dtype wp). */
int wf__xent_rows_raw(const char *op, wf_tensor *logits, wf_tensor *target, int64_t ignore_index, double ls,
                      wf_dtype wp, wf_tensor **loss, wf_tensor **lse);
wf_tensor *wf__xent_rows_bwd_raw(const char *op, wf_tensor *coef, wf_tensor *logits, wf_tensor *target,
                                 wf_tensor *lse, int64_t ignore_index, double ls);

/* ---------------------------------------------------------------- tensor/random.c
 * wf_bernoulli_p on a given device (dropout's mask, made where its input lives) */
wf_tensor *wf__bernoulli_p_raw(const int64_t *shape, int ndim, double p, wf_dtype dt, wf_device dev);

#endif
