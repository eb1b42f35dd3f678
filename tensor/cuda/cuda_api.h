/* tensor/cuda/cuda_api.h: the boundary between weft's C code and its CUDA C++ kernels.
 *
 * tensor_impl.h uses C11 <stdatomic.h>, which nvcc (C++) cannot compile, so the CUDA
 * backend is split in two layers:
 *   - tensor/cuda/cuda_kernels.c (C): the wf_kernels table; turns wf_tensor handles into
 *     the plain wf_cuda_view descriptors below and calls the launchers;
 *   - tensor/cuda/ *.cu files (CUDA C++): kernels and launchers; they include only this header,
 *     weft/tensor.h (enums, C++-safe) and CUDA headers.
 *
 * Every launcher takes the CUDA device index `dev`, makes it current (cudaSetDevice), queues
 * its work on that device's stream (one non-blocking stream per device, created lazily;
 * cuBLAS is bound to it) and returns 0 or a negative WF_E* code after recording a message
 * through wf__cuda_set_error (implemented in the C layer with wf__error). Launch failures
 * and sticky device errors (illegal address, ...) become WF_EDEVICEFAIL naming the kernel.
 *
 * Launchers never validate shapes (the front-ends do); they handle any strides (in
 * elements, 0 for broadcast dims) unless a comment says "contiguous". Views of one call
 * have the same shape unless stated. Work is asynchronous unless stated. */
#ifndef WEFT_CUDA_API_H
#define WEFT_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

#include "weft/tensor.h" /* WF_E* codes, wf_dtype numbers, wf_memory_stats (C++-safe) */

#ifdef __cplusplus
extern "C" {
#endif

#define WF_CUDA_MAX_DIMS 8

/* A tensor as the kernels see it. data points at the first element (storage data + offset
 * * element size); stride is in elements; dtype uses the wf_dtype numbers. */
typedef struct wf_cuda_view {
    void *data;
    int ndim;
    int64_t shape[WF_CUDA_MAX_DIMS];
    int64_t stride[WF_CUDA_MAX_DIMS];
    int dtype;
} wf_cuda_view;

/* The op numbers of tensor_impl.h (wf_unary_op, wf_binary_op, wf_reduce_op), which the .cu
 * files cannot include (C11 atomics): generated from the same list, tensor/ops.def, so they
 * are equal by construction (cuda_kernels.c still checks each one). */
enum {
#define WF_UNARY_OP(id, name, cpu, cuda) WFC_U_##id,
#include "../ops.def"
    WFC_U_COUNT
};
enum {
#define WF_BINARY_OP(id, name, cpu, cuda) WFC_B_##id,
#include "../ops.def"
    WFC_B_COUNT
};
enum {
#define WF_REDUCE_OP(id, name, cpu, cuda) WFC_R_##id,
#include "../ops.def"
    WFC_R_COUNT
};

/* ---------------------------------------------------------------- implemented in C */
/* Record a weft error (code, message). Used by the launchers for every failure. */
void wf__cuda_set_error(int code, const char *msg);

/* ---------------------------------------------------------------- device, memory (cuda_device.cu, cuda_memory.cu) */
/* Number of usable CUDA devices; 0 when there is no driver or GPU (never an error). */
int wf__cuda_count(void);
/* Loads cuBLAS and cuBLASLt (cuda_blas_api.cuh says why not at start-up), once per process;
 * every device's first set-up calls it. 0, or WF_EDEVICEFAIL naming the library or symbol
 * that failed with dlerror()'s words; a later call returns the first call's result. */
int wf__cuda_blas_load(void);
/* Stream-ordered caching allocator: size classes (512 B, then 4 steps per power of two),
 * freed blocks are kept per class and reused; NULL + WF_ENOMEM (bytes and device named)
 * when cudaMalloc fails even after returning the cache to the driver. */
void *wf__cuda_alloc(int dev, size_t nbytes);
void wf__cuda_free(int dev, void *p, size_t nbytes);
/* allocator counters of one device (zeros if never used); WF_EDEVICE for a bad index */
int wf__cuda_memory_stats(int dev, wf_memory_stats *out);
/* return cached blocks of every initialised device to the driver (synchronizes) */
void wf__cuda_empty_cache(void);
/* The device's compute stream (the one all of weft's work on it is queued on), as a
 * cudaStream_t, creating the device state on first use; NULL + an error (WF_EDEVICE for a bad
 * index, WF_EDEVICEFAIL when the device cannot be initialised). For C code that orders its
 * own streams against weft's (dist/backend_nccl.c: events between this stream and a process
 * group's communication stream). The stream is owned by weft; never destroy it. */
void *wf__cuda_stream(int dev);
/* Make dev current on the calling thread (initialising its state): 0 or a code as above. */
int wf__cuda_set_device(int dev);
/* Wait for the device's stream. Reports asynchronous kernel failures (WF_EDEVICEFAIL) and
 * out-of-range indices met by the index kernels since the last check (WF_EINDEX). */
int wf__cuda_sync(int dev);
/* TF32 tensor cores for f32 GEMM (default off, like PyTorch) */
void wf__cuda_set_tf32(int enabled);
int wf__cuda_get_tf32(void);
/* Host <-> device copies of nbytes through pinned staging buffers. to_host is synchronous
 * (dst is filled on return); from_host returns once src has been read (the device copy is
 * queued on the stream). */
int wf__cuda_to_host(void *dst, const void *src, size_t nbytes, int dev);
int wf__cuda_from_host(void *dst, const void *src, size_t nbytes, int dev);

/* ---------------------------------------------------------------- CUDA graphs (cuda_graph.cu; public API in weft/cuda.h)
 * 1 while a graph is being captured on dev (its allocations then come from the graph's pool,
 * host round trips are refused), else 0. */
int wf__cuda_capturing(int dev);
/* During a capture on dev: WF_EINVAL, recorded, naming `what` as not capturable (and
 * remembered by the graph, whose capture_end then fails with it); 0 when dev is not
 * capturing. For work that would replay wrongly or waits for the host. */
int wf__cuda_refuse_in_capture(int dev, const char *what);
/* Called before every replay of the graph being captured on dev, with its executable graph
 * (a cudaGraphExec_t) and first = 1 on the first replay: for kernels whose arguments change
 * from step to step (cudaGraphExecKernelNodeSetParams). The graph owns ctx from a successful
 * call (free_fn(ctx) when it is freed or its capture fails); on failure the caller keeps it.
 * A hook returns 0 or a code (recorded), which stops the replay before its launch. */
typedef int (*wf_cuda_graph_hook)(void *ctx, void *exec, int first);
int wf__cuda_graph_add_hook(int dev, wf_cuda_graph_hook fn, void *ctx, void (*free_fn)(void *));
/* During a capture on dev: *node = the node just captured on weft's stream (a
 * cudaGraphNode_t), for a later wf__cuda_graph_add_hook to update. 0 or a code. */
int wf__cuda_graph_last_node(int dev, void **node);

/* ---------------------------------------------------------------- copies (cuda_elementwise.cu) */
/* y = cast(x); any dtype pair (f16/bf16 round to nearest even; floats to ints truncate,
 * non-finite -> 0; bool = x != 0), any strides. x may live on another device (xdev != dev):
 * then the copy is done through a peer copy and is synchronous. */
int wf__cuda_copy(const wf_cuda_view *y, const wf_cuda_view *x, int dev, int xdev);
/* y[...] = the element whose bytes are elem (wf_dtype_size(y->dtype) bytes) */
int wf__cuda_fill(const wf_cuda_view *y, const void *elem, int dev);

/* ---------------------------------------------------------------- elementwise (cuda_elementwise.cu)
 * Compute type: double if any floating operand is f64, else float if any operand is
 * floating (f16/bf16 compute in float), else int64. `op` is a WFC_U_* / WFC_B_* /
 * WFC_R_* number (the same as wf_unary_op / wf_binary_op / wf_reduce_op). */
int wf__cuda_unary(int op, const wf_cuda_view *y, const wf_cuda_view *x, double a, double b, int dev);
/* gx = gy * op'(x); x or y (the forward output) may be NULL when the derivative can use the
 * other one (exp, tanh, sigmoid, sqrt, rsqrt use y when given, else recompute from x). */
int wf__cuda_unary_backward(int op, const wf_cuda_view *gx, const wf_cuda_view *gy,
                            const wf_cuda_view *x, const wf_cuda_view *y, double a, double b, int dev);
int wf__cuda_binary(int op, const wf_cuda_view *y, const wf_cuda_view *a, const wf_cuda_view *b, int dev);
/* y = a op s, or s op a when reversed */
int wf__cuda_binary_scalar(int op, const wf_cuda_view *y, const wf_cuda_view *a, double s, int reversed, int dev);
/* y = cond != 0 ? a : b */
int wf__cuda_where(const wf_cuda_view *y, const wf_cuda_view *cond, const wf_cuda_view *a,
                   const wf_cuda_view *b, int dev);
/* a += alpha * b (in place) */
int wf__cuda_axpy(const wf_cuda_view *a, const wf_cuda_view *b, double alpha, int dev);

/* ---------------------------------------------------------------- random (cuda_random.cu)
 * Exactly the Philox layout of tensor/cpu/random.c (y contiguous, element i = linear index). */
int wf__cuda_rand_uniform(const wf_cuda_view *y, uint64_t seed, uint64_t offset, double lo, double hi, int dev);
int wf__cuda_rand_normal(const wf_cuda_view *y, uint64_t seed, uint64_t offset, double mean, double std, int dev);
int wf__cuda_rand_int(const wf_cuda_view *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi, int dev);
/* p_t (y's shape, any strides) or, when p_t is NULL, the scalar p */
int wf__cuda_bernoulli(const wf_cuda_view *y, uint64_t seed, uint64_t offset, const wf_cuda_view *p_t,
                       double p, int dev);

/* ---------------------------------------------------------------- reductions (cuda_reduce.cu, cuda_softmax.cu) */
/* y (keepdim shape) = reduce of x over the dims whose bit is set in mask; accumulates in
 * float (f32/f16/bf16), double (f64) or int64 (integers, bool); max/min propagate NaN.
 * Large reductions are split over several blocks and finished by a second pass. */
int wf__cuda_reduce(int op, const wf_cuda_view *y, const wf_cuda_view *x, uint32_t mask, double p, int dev);
/* y (i64, x's shape with 1 at dim) = index of the first max/min along dim (NaN counts as max
 * and as min, like PyTorch) */
int wf__cuda_arg_reduce(int is_max, const wf_cuda_view *y, const wf_cuda_view *x, int dim, int dev);
/* out_scale * softmax(scale * x) (log: log_softmax(scale * x)) over the last dim; x and y
 * contiguous (rows x cols). One warp per row up to 1024 columns, one block per row above.
 * causal > 0: row r keeps columns j <= r % causal only, the others give 0 (log: -inf). The
 * backward as tensor_impl.h's softmax_backward entry says. */
int wf__cuda_softmax(const wf_cuda_view *y, const wf_cuda_view *x, int log, double scale, double out_scale,
                     int64_t causal, int dev);
int wf__cuda_softmax_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *y,
                              int log, double scale, double out_scale, int dev);

/* ---------------------------------------------------------------- fused (cuda_softmax.cu, cuda_layer_norm.cu,
 * cuda_elementwise.cu) */
/* Softmax cross-entropy, logits [N,C] contiguous (any float dtype), target [N] (i64 or i32,
 * any stride). Forward: loss[n] (any float dtype, [N]) = (1-ls)*(lse - x[n,t]) +
 * ls*(lse - mean_c x[n,c]), 0 where t == ignore_index; lse (optional, [N], f32 or f64) saves the
 * row's log-sum-exp for the backward. Targets outside [0,C) (other than ignore_index) are
 * reported as WF_EINDEX at the next synchronize/to_host.
 * Backward: glogits[n,c] = g[n] * scale * (softmax(x)[n,c] - (1-ls)*[c==t] - ls/C), rows with
 * t == ignore_index get 0; gloss is [N] or has one element (broadcast); lse may be NULL
 * (recomputed). */
int wf__cuda_softmax_xent_forward(const wf_cuda_view *loss, const wf_cuda_view *lse,
                                  const wf_cuda_view *logits, const wf_cuda_view *target,
                                  int64_t ignore_index, double label_smoothing, int dev);
int wf__cuda_softmax_xent_backward(const wf_cuda_view *glogits, const wf_cuda_view *gloss, double scale,
                                   const wf_cuda_view *logits, const wf_cuda_view *target,
                                   const wf_cuda_view *lse, int64_t ignore_index,
                                   double label_smoothing, int dev);
/* Layer norm over the last dim D of contiguous x (rows = numel / D):
 * y = (x - mean) * rstd * w + b; weight/bias [D] contiguous or NULL; mean/rstd f32 [rows]
 * (may be NULL) are saved for the backward. Statistics in float (double for f64); y in its own
 * dtype (x's, or f32 / bf16 / f16 of its own: the fast kernel too), gy in y's. */
int wf__cuda_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                const wf_cuda_view *x, const wf_cuda_view *weight,
                                const wf_cuda_view *bias, double eps, int dev);
/* gx (written), gweight/gbias [D] (written, not accumulated; NULL to skip) from gy, x, the
 * saved mean/rstd (f32 [rows]) and weight (NULL = ones). All contiguous. */
int wf__cuda_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gweight,
                                 const wf_cuda_view *gbias, const wf_cuda_view *gy,
                                 const wf_cuda_view *x, const wf_cuda_view *mean,
                                 const wf_cuda_view *rstd, const wf_cuda_view *weight, int dev);
/* The residual add fused into the layer norm: s = x + r (x's dtype; r contiguous, any float
 * dtype) as it reads the row, y = the layer norm of the stored s. Backward from the saved s:
 * g = gs (x's dtype, NULL = 0) + the layer norm's dx, written as gx (s's dtype) and gr (its own
 * dtype), either NULL; gweight/gbias as wf__cuda_layer_norm_backward. r_bias (NULL: none) [D] is
 * added to r before the sum, s = x + (r + r_bias); grbias (NULL: not wanted) gets the column
 * sums of g (tensor_impl.h's add_layer_norm_fwd / bwd). */
int wf__cuda_add_layer_norm_forward(const wf_cuda_view *y, const wf_cuda_view *s, const wf_cuda_view *mean,
                                    const wf_cuda_view *rstd, const wf_cuda_view *x, const wf_cuda_view *r,
                                    const wf_cuda_view *r_bias, const wf_cuda_view *weight, const wf_cuda_view *bias,
                                    double eps, int dev);
int wf__cuda_add_layer_norm_backward(const wf_cuda_view *gx, const wf_cuda_view *gr, const wf_cuda_view *gweight,
                                     const wf_cuda_view *gbias, const wf_cuda_view *grbias, const wf_cuda_view *gy,
                                     const wf_cuda_view *gs,
                                     const wf_cuda_view *s, const wf_cuda_view *mean, const wf_cuda_view *rstd,
                                     const wf_cuda_view *weight, int dev);
/* y = gelu(x + bias) with bias [D] broadcast over the last dim of contiguous x;
 * tanh_approx selects gelu's tanh form. Backward: gx = gy * gelu'(x + bias) (the bias
 * gradient is the sum of gx over rows: use wf__cuda_reduce). */
int wf__cuda_bias_gelu(const wf_cuda_view *y, const wf_cuda_view *x, const wf_cuda_view *bias,
                       int tanh_approx, int dev);
int wf__cuda_bias_gelu_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *x,
                                const wf_cuda_view *bias, int tanh_approx, int dev);
/* The GELU's backward with the bias gradient of the Linear before it: contiguous gy, pre, gx
 * [rows, N] (N the last dim) and gb [N], one dtype (f32 / bf16 / f16): gx = gy * gelu'(pre)
 * (the bits of wf__cuda_unary_backward's), gb = gx's column sums as stored, in f32, in a fixed
 * order (deterministic; a workspace from the caching allocator). */
int wf__cuda_gelu_backward_bias(const wf_cuda_view *gx, const wf_cuda_view *gb, const wf_cuda_view *gy,
                                const wf_cuda_view *pre, int tanh_approx, int dev);

/* ---------------------------------------------------------------- attention (cuda_attention*.cu) */
/* Fused scaled-dot-product attention (flash-attention 2 style, tensor cores): q [B,H,L,D],
 * k and v [B,H,S,D], o like q; f16 or bf16 (one dtype), last-dim stride 1, other strides any;
 * D <= 128. lse: f32 [B,H,L] contiguous (natural log), written for the backward. causal
 * masks key j > query i (top-left). Backward: dq, dk, dv (like q, k, v; last-dim stride 1)
 * from dout (like o); uses a temporary f32 dq buffer from the caching allocator. */
int wf__cuda_sdpa_forward(const wf_cuda_view *o, const wf_cuda_view *lse, const wf_cuda_view *q,
                          const wf_cuda_view *k, const wf_cuda_view *v, double scale, int causal, int dev);
int wf__cuda_sdpa_backward(const wf_cuda_view *dq, const wf_cuda_view *dk, const wf_cuda_view *dv,
                           const wf_cuda_view *dout, const wf_cuda_view *q, const wf_cuda_view *k,
                           const wf_cuda_view *v, const wf_cuda_view *o, const wf_cuda_view *lse,
                           double scale, int causal, int dev);

/* ---------------------------------------------------------------- fp8 (cuda_fp8.cu)
 * The "transformer-engine" precision's pieces. fmt: 0 = E4M3, 1 = E5M2 (tensor/cpu/fp8.h's
 * numbers); every scale is a device float, read and written on the device (no host sync). */
/* the compute capability of cuda:dev (0, or a code) */
int wf__cuda_capability(int dev, int *major, int *minor);
/* The device's cuBLASLt handle (a cublasLtHandle_t) and workspace, made on first use; both
 * owned by weft (cuda_gemm.cu). Work using them goes on the device's stream. */
int wf__cuda_lt(int dev, void **lt, void **ws, size_t *ws_bytes);
/* y[i] = fp8(x[i] * *scale) for contiguous x [rows, cols] of dtype f32 / bf16 / f16 (round to
 * nearest even, saturating), yt = the same bytes transposed ([cols, rows]); either may be
 * NULL. amax (may be NULL): atomically raised to max |x| (before scaling; NaN wins).
 * scale_inv_out (may be NULL): 1 / *scale, the value a GEMM of these bytes needs even after
 * the scale has moved on. colsum (may be NULL): [cols] f32, x's column sums in
 * tensor/cpu/fp8.h's order (WF__FP8_COLSUM_*), the bias gradient read in the same pass. */
int wf__cuda_fp8_cast(const void *x, int dtype, int64_t rows, int64_t cols, int fmt, const float *scale, void *y,
                      void *yt, float *amax, float *scale_inv_out, float *colsum, int dev);
/* y[i] = the f32 value of the fp8 byte x[i] (contiguous) */
int wf__cuda_fp8_decode(const void *x, int64_t n, int fmt, float *y, int dev);
/* Delayed scaling of nslots consecutive slots, slot_stride floats apart, each laid out as
 * { scale, scale_inv, amax, pos (int bits), history[len] }: the slot's amax enters the
 * history at pos (pos advances, amax is reset to 0), and scale / scale_inv follow from the
 * history's maximum as tensor/cpu/fp8_scaling.c does, fmt's largest value and margin. */
int wf__cuda_fp8_update(float *slots, int nslots, int64_t slot_stride, int len, int fmt, int margin, int dev);
/* D[m, n] = (A[m, k] * a_scale_inv) (B[n, k] * b_scale_inv)^T + beta D (+ bias[n]): A, B fp8
 * bytes of formats a_fmt / b_fmt (not both E5M2), row-major with k contiguous; D bf16 or f32
 * (beta 0 or 1); bias bf16 [n] for a bf16 D, or NULL. m, n, k multiples of 16, every pointer
 * 16-byte aligned (cuBLASLt's fp8 requirements), else WF_ENOTSUP. Compute in f32; fast_accum
 * lets Hopper's fp8 tensor cores skip the periodic promotion to f32 (TE's forward setting). */
int wf__cuda_fp8_gemm(int64_t m, int64_t n, int64_t k, const void *A, int a_fmt, const float *a_scale_inv,
                      const void *B, int b_fmt, const float *b_scale_inv, void *D, int d_dtype, float beta,
                      const void *bias, int fast_accum, int dev);

/* ---------------------------------------------------------------- GEMM (cuda_gemm.cu) */
/* Row-major batched GEMM (the wf_kernels gemm contract): f32 (TF32 tensor cores when
 * enabled), f16/bf16 with f32 accumulation. Products up to m*n*k*batch = 2^33 go through
 * cuBLASLt (heuristic candidates, timed once per shape/dtype/transposes/alignment when
 * beta == 0 against cublasGemmStridedBatchedEx, plans cached, 32 MiB workspace per device);
 * larger ones, f64, broadcast batches, or WEFT_NO_CUBLASLT set use
 * cublasGemmStridedBatchedEx. Other dtypes: WF_ENOTSUP. */
int wf__cuda_gemm(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k,
                  double alpha, const void *A, int64_t lda, int64_t strideA,
                  const void *B, int64_t ldb, int64_t strideB,
                  double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, int dev);

/* One row-major GEMM C[m,n] = op(A) op(B) (beta 0) through cuBLASLt with a fused epilogue:
 * bias (n contiguous elements of dtype) added to every row of C, or bgrad (m elements of
 * dtype, written) = sum over k of op(A) (row sums). Exactly one of bias / bgrad. f32 / f16 /
 * bf16. 0 = done; 1 = not handled (no error recorded; compose instead); else a WF_E* code.
 * WEFT_NO_GEMM_EPILOGUE (or WEFT_NO_CUBLASLT) set: always 1. */
int wf__cuda_gemm_epilogue(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k,
                           const void *A, int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc,
                           const void *bias, void *bgrad, int dev);

/* One row-major GEMM (beta 0) through cuBLASLt with a GELU epilogue (tanh form): the
 * gemm_gelu contract in tensor/tensor_impl.h (backward nonzero: DGELU(_BGRAD), else
 * GELU_AUX(_BIAS)). f16 / bf16 only; aux's leading dimension a multiple of 8, at least n;
 * bias / bgrad (when given), aux and C 16-byte aligned. 0 = done; 1 = not
 * handled (no error recorded; compose instead); else a WF_E* code. WEFT_NO_GELU_EPILOGUE (or
 * WEFT_NO_GEMM_EPILOGUE, WEFT_NO_CUBLASLT) set: always 1. */
int wf__cuda_gemm_gelu(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                       const void *B, int64_t ldb, void *C, int64_t ldc, void *aux, int64_t ldaux, const void *bias,
                       void *bgrad, int backward, int dev);

/* C (f32; f64 for f64) = op(A) @ op(B) + beta * C (beta 0 or 1), A and B of dtype (f32, f64,
 * f16, bf16), row-major as for wf__cuda_gemm: the gemm_acc contract in tensor/tensor_impl.h.
 * Half operands: cuBLASLt (or cublasGemmEx) with a f32 C and f32 compute. */
int wf__cuda_gemm_acc(int dtype, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A,
                      int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc, int dev);

/* ---------------------------------------------------------------- indexing, conv, pooling (cuda_index.cu,
 * cuda_conv.cu, cuda_pool.cu).
 * Index tensors may be i64 or i32, any strides. An index outside its range is not read or
 * written; it is reported as WF_EINDEX at the next wf__cuda_sync / wf__cuda_to_host. */
/* y[..i_d..] = x[..index[..i..]..] along dim; index has y's shape */
int wf__cuda_gather(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index, int dev);
/* y[..index[..i..]..] += src[..i..] along dim (atomic); iterates index's shape (src may be larger) */
int wf__cuda_scatter_add(const wf_cuda_view *y, int dim, const wf_cuda_view *index, const wf_cuda_view *src, int dev);
/* y = x.index_select(dim, index) (index 1-D) */
int wf__cuda_index_select(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index, int dev);
/* gx[..index[j]..] += gy[..j..] along dim (atomic) */
int wf__cuda_index_add(const wf_cuda_view *gx, int dim, const wf_cuda_view *index, const wf_cuda_view *gy, int dev);
/* im2col: x [C,H,W] contiguous -> col [C*kh*kw, oh*ow] (zeros for padding).
 * col2im: the adjoint; adds every col entry onto x (zero x first), like tensor/cpu/conv.c. */
int wf__cuda_im2col(void *col, const void *x, int dtype, int64_t C, int64_t H, int64_t W,
                    int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                    int64_t oh, int64_t ow, int dev);
int wf__cuda_col2im(void *x, const void *col, int dtype, int64_t C, int64_t H, int64_t W,
                    int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                    int64_t oh, int64_t ow, int dev);
/* The batched pair (tensor_impl.h's im2col_batch / col2im_batch, tensor/cpu/conv.c's layouts):
 * N images x [N,C,H,W] <-> col [C*kh*kw, N*oh*ow]; col2im_batch OVERWRITES x, each plane
 * x[n,c] starting from bias[c] (C elements of dtype; NULL: 0). f32, f64, f16, bf16. */
int wf__cuda_im2col_batch(void *col, const void *x, int dtype, int64_t N, int64_t C, int64_t H,
                          int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                          int64_t oh, int64_t ow, int dev);
int wf__cuda_col2im_batch(void *x, const void *col, const void *bias, int dtype, int64_t N, int64_t C,
                          int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                          int dw, int64_t oh, int64_t ow, int dev);
/* pooling on contiguous [N,C,H,W] -> [N,C,oh,ow] (sizes from y); argmax (i64, flat index in
 * H*W) may be NULL. The backward kernels overwrite gx. */
int wf__cuda_max_pool2d(const wf_cuda_view *y, const wf_cuda_view *argmax, const wf_cuda_view *x,
                        const int k[2], const int s[2], const int p[2], const int d[2], int dev);
int wf__cuda_max_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const wf_cuda_view *argmax, int dev);
int wf__cuda_avg_pool2d(const wf_cuda_view *y, const wf_cuda_view *x, const int k[2], const int s[2],
                        const int p[2], int count_include_pad, int dev);
int wf__cuda_avg_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, const int k[2],
                                 const int s[2], const int p[2], int count_include_pad, int dev);
/* adaptive average pooling, PyTorch's bins (sizes from the views); the backward overwrites gx */
int wf__cuda_adaptive_avg_pool2d(const wf_cuda_view *y, const wf_cuda_view *x, int dev);
int wf__cuda_adaptive_avg_pool2d_backward(const wf_cuda_view *gx, const wf_cuda_view *gy, int dev);

/* ---------------------------------------------------------------- multi-tensor optimizer pieces (cuda_optim.cu)
 * PyTorch's multi_tensor_apply: a list of contiguous tensors is cut into fixed chunks and one
 * launch covers the chunks of many tensors (the pointers and the chunk table travel in the
 * kernel's arguments, so nothing is copied to the device first and nothing synchronizes).
 * Lists longer than one launch's table take a few launches. */

/* One parameter of a fused Adam/AdamW step: p, g, m (exp_avg), v (exp_avg_sq), all
 * contiguous with n elements; dtypes f32/bf16/f16 each (math in f32). The scalars are
 * those of optim/update.c's adam loop: p = p*decay; d = g*gscale + wd*p; m = lerp(m, d, w1);
 * v = v*b2 + w2*d*d; p += nstep * m / (sqrt(v)/bc2s + eps). */
typedef struct wf_cuda_adam_param {
    void *p;
    const void *g;
    void *m, *v;
    int64_t n;
    int pdt, gdt, mdt, vdt;
    float nstep, bc2s, eps, w1, b2, w2, wd, decay;
    /* where the host keeps the values the scalars come from (optim/update.c: the parameter's
     * step count, its group's wf_hparams, AdamW or Adam): a CUDA graph recomputes the scalars
     * from them before each replay (optim/cuda_step.c). May be NULL outside a capture. */
    double *host_step;
    const void *host_hparams;
    int decoupled;
} wf_cuda_adam_param;
/* Update every listed parameter. inv_scale (device f32, may be NULL) multiplies each
 * gradient (a grad scaler's 1/scale); found_inf (device f32, may be NULL): when it holds a
 * non-zero value the kernels change nothing (a skipped step), without a host round trip. */
int wf__cuda_adam_multi(const wf_cuda_adam_param *ps, int n, const float *inv_scale, const float *found_inf, int dev);
/* The same, during a CUDA graph capture: *record (owned by the caller; free with
 * wf__cuda_adam_record_free) lists the kernel nodes captured and which parameter each block
 * works on, so that wf__cuda_adam_record_update can set new scalars (ps: the same n
 * parameters, in the same order) in the executable graph exec before a replay. */
int wf__cuda_adam_multi_capture(const wf_cuda_adam_param *ps, int n, const float *inv_scale, const float *found_inf,
                                int dev, void **record);
int wf__cuda_adam_record_update(void *record, void *exec, const wf_cuda_adam_param *ps, int n);
void wf__cuda_adam_record_free(void *record);

/* A contiguous tensor as the list kernels see it. */
typedef struct wf_cuda_span { void *data; int64_t n; int dtype; } wf_cuda_span;
/* total = the norm_type-norm (> 0, or INFINITY) of all the listed tensors together (f32/f64/
 * bf16/f16), written to norm (device f32, one element) in two kernels: per-chunk partials,
 * then one block that combines them in a fixed order (deterministic). When coef (device f32)
 * is not NULL it receives clip_grad_norm_'s coefficient min(1, max_norm / (total + 1e-6))
 * (NaN when total is NaN, as PyTorch's clamp). An empty list writes 0 and 1. */
int wf__cuda_multi_norm(const wf_cuda_span *xs, int n, double norm_type, float *norm, float *coef,
                        double max_norm, int dev);
/* x *= *coef for every listed tensor (in place; nothing written when *coef == 1). */
int wf__cuda_multi_scale(const wf_cuda_span *xs, int n, const float *coef, int dev);

#ifdef __cplusplus
}
#endif

#endif
