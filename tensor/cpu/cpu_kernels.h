/* tensor/cpu/cpu_kernels.h: the CPU kernel functions behind wf__cpu_kernels.
 * Each has exactly the signature of its wf_kernels entry (tensor/tensor_impl.h). */
#ifndef WEFT_CPU_KERNELS_H
#define WEFT_CPU_KERNELS_H

#include "../tensor_impl.h"

/* memory, copy, fill (cpu_memory.c) */
void *wf__cpu_alloc(wf_device dev, size_t nbytes);
void wf__cpu_free(wf_device dev, void *p, size_t nbytes);
int wf__cpu_copy(wf_tensor *y, const wf_tensor *x);
int wf__cpu_fill(wf_tensor *y, double v);
int wf__cpu_to_host(void *dst, const wf_tensor *x);
int wf__cpu_from_host(wf_tensor *y, const void *src);

/* contiguous half <-> f32 arrays (half_convert.c); bf16 == true picks bf16, else f16.
 * Bit-identical to wf__bf16_to_f32 / wf__f32_to_bf16 (and the f16 pair); no aliasing. */
void wf__half_to_f32_n(float *y, const uint16_t *x, int64_t n, bool bf16);
void wf__f32_to_half_n(uint16_t *y, const float *x, int64_t n, bool bf16);

/* elementwise (elementwise.c) */
int wf__cpu_unary(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b);
int wf__cpu_unary_backward(wf_unary_op op, wf_tensor *gx, const wf_tensor *gy,
                           const wf_tensor *x, const wf_tensor *y, double a, double b);
int wf__cpu_binary(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b);
int wf__cpu_binary_scalar(wf_binary_op op, wf_tensor *y, const wf_tensor *a, double s, bool reversed);
int wf__cpu_where(wf_tensor *y, const wf_tensor *cond, const wf_tensor *a, const wf_tensor *b);
int wf__cpu_axpy(wf_tensor *a, const wf_tensor *b, double alpha);

/* reductions (reduce.c) */
int wf__cpu_reduce(wf_reduce_op op, wf_tensor *y, const wf_tensor *x, uint32_t reduce_mask, double p);
int wf__cpu_arg_reduce(bool is_max, wf_tensor *y, const wf_tensor *x, int dim);

/* random (random.c) */
int wf__cpu_rand_uniform(wf_tensor *y, uint64_t seed, uint64_t offset, double lo, double hi);
int wf__cpu_rand_normal(wf_tensor *y, uint64_t seed, uint64_t offset, double mean, double std);
int wf__cpu_rand_int(wf_tensor *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi);
int wf__cpu_bernoulli(wf_tensor *y, uint64_t seed, uint64_t offset, const wf_tensor *p_t, double p);

/* GEMM (gemm.c): OpenBLAS when built with it, else a cache-blocked builtin */
/* threads.c (OpenBLAS builds): into how many slices of C (1..16) a BLAS product of `macs`
 * multiply-adds is cut along its side of `side` rows (or columns), each a single-threaded BLAS
 * call run on the pool; fixed by the sizes, 1 inside a parallel loop. The first call
 * configures OpenBLAS (one thread). */
int wf__gemm_slices(double macs, int64_t side);
int wf__cpu_gemm(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *A, int64_t lda, int64_t strideA,
                 const void *B, int64_t ldb, int64_t strideB,
                 double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, wf_device dev);

/* the Linear epilogues (gemm.c): bf16/f16 only, 1 (declined) for other dtypes; the
 * contract of the gemm_epilogue entry in tensor/tensor_impl.h */
int wf__cpu_gemm_epilogue(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                          void *bgrad, wf_device dev);

/* C (f32; f64 for f64) = op(A) @ op(B) + beta * C (beta 0 or 1), A and B of dt (gemm.c): the
 * gemm_acc contract in tensor/tensor_impl.h */
int wf__cpu_gemm_acc(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                     int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc, wf_device dev);

/* softmax (softmax.c) */
int wf__cpu_softmax(wf_tensor *y, const wf_tensor *x, bool log, double scale, double out_scale, int64_t causal);
int wf__cpu_softmax_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *y, bool log, double scale,
                             double out_scale);

/* the residual add fused into the layer norm (layer_norm.c) */
int wf__cpu_add_layer_norm_fwd(wf_tensor *y, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                               const wf_tensor *r, const wf_tensor *r_bias, const wf_tensor *weight,
                               const wf_tensor *bias, double eps);
int wf__cpu_add_layer_norm_bwd(wf_tensor *gx, wf_tensor *gr, wf_tensor *gweight, wf_tensor *gbias, wf_tensor *grbias,
                               const wf_tensor *gy,
                               const wf_tensor *gs, const wf_tensor *s, const wf_tensor *mean, const wf_tensor *rstd,
                               const wf_tensor *weight);
/* the plain layer norm, there for a y of another dtype than x (layer_norm.c) */
int wf__cpu_layer_norm_fwd(wf_tensor *y, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x, const wf_tensor *weight,
                           const wf_tensor *bias, double eps);
int wf__cpu_layer_norm_bwd(wf_tensor *gx, wf_tensor *gweight, wf_tensor *gbias, const wf_tensor *gy, const wf_tensor *x,
                           const wf_tensor *mean, const wf_tensor *rstd, const wf_tensor *weight);

/* indexing (index.c) */
int wf__cpu_gather(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index);
int wf__cpu_scatter_add(wf_tensor *y, int dim, const wf_tensor *index, const wf_tensor *src);
int wf__cpu_index_select(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index);
int wf__cpu_index_add(wf_tensor *gx, int dim, const wf_tensor *index, const wf_tensor *gy);

/* convolution helpers and pooling (conv.c, pool.c) */
int wf__cpu_im2col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,
                   wf_device dev);
int wf__cpu_col2im(void *x, const void *col, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                   int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,
                   wf_device dev);
int wf__cpu_im2col_batch(void *col, const void *x, wf_dtype dt, int64_t N, int64_t C, int64_t H,
                         int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                         int64_t oh, int64_t ow, wf_device dev);
int wf__cpu_col2im_batch(void *x, const void *col, const void *bias, wf_dtype dt, int64_t N,
                         int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph,
                         int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev);
int wf__cpu_max_pool2d(wf_tensor *y, wf_tensor *argmax, const wf_tensor *x, const int k[2],
                       const int s[2], const int p[2], const int d[2]);
int wf__cpu_max_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *argmax);
int wf__cpu_avg_pool2d(wf_tensor *y, const wf_tensor *x, const int k[2], const int s[2],
                       const int p[2], bool count_include_pad);
int wf__cpu_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy, const int k[2],
                                const int s[2], const int p[2], bool count_include_pad);

#endif
