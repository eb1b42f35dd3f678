/* tensor/tensor_impl.h: private definitions shared by weft's own sources.
 * Not installed. Users see only the opaque handles of include/weft/. */
#ifndef WEFT_TENSOR_IMPL_H
#define WEFT_TENSOR_IMPL_H

#include "weft/tensor.h"
#include "weft_config.h"
#include "env_flag.h"

#include <stdatomic.h>
#include <stdarg.h>

/* ---------------------------------------------------------------- storage */

typedef struct wf_storage {
    atomic_int refcount;
    void *data;          /* host pointer (cpu) or device pointer (cuda); NULL for meta */
    size_t nbytes;
    wf_device device;
    atomic_uint version; /* bumped by every in-place write; shared by all views */
    uint32_t census_group; /* the memory census's row + 1 that counts it, 0 if none (census.c) */
    uint32_t census_gen;   /* which recording that row belongs to */
} wf_storage;

/* ---------------------------------------------------------------- memory census (tensor/census.c)
 * The hooks cost one relaxed load and a predictable branch while the census is off. The
 * labels are thread-local pointers: the op being dispatched (wf__supports, the copies, the
 * factories), the backward node running (autograd/engine.c) and the user's label. */
#ifndef WEFT_MINIMAL
extern atomic_bool wf__census_on;
void wf__census_alloc(wf_storage *s, wf_dtype dt);        /* a storage was made */
void wf__census_free(wf_storage *s);                      /* a recorded storage goes */
/* The op label of a dispatch (wf__supports). A "*_backward" kernel is taken only inside a
 * backward: a forward front-end asks for its backward kernel too (the *_fusable checks), and
 * its outputs are the forward op's. */
void wf__census_dispatch(const char *op);
/* Set this thread's op label (a static string); returns the previous one. */
const char *wf__census_swap_op(const char *op);
/* Set this thread's context: prefix (static, e.g. "backward of ") and name (a node's name);
 * the previous pair goes to *old_prefix / *old_name. */
void wf__census_swap_context(const char *prefix, const char *name, const char **old_prefix,
                             const char **old_name);
#define WF__CENSUS_ON() atomic_load_explicit(&wf__census_on, memory_order_relaxed)
/* Label the allocations of a block with op, restoring the outer label after it (a cast made
 * inside another op's front-end must not take that op's label, nor leave its own). */
#define WF__CENSUS_OP_BEGIN(op) \
    const char *census_prev_ = WF__CENSUS_ON() ? wf__census_swap_op(op) : wf__census_none
#define WF__CENSUS_OP_END() \
    do { if (census_prev_ != wf__census_none) wf__census_swap_op(census_prev_); } while (0)
extern const char wf__census_none[];
#else
#define WF__CENSUS_ON() false
#define WF__CENSUS_OP_BEGIN(op) (void)0
#define WF__CENSUS_OP_END() (void)0
#endif

/* ---------------------------------------------------------------- tensor handle */

typedef struct wf_node wf_node;
typedef struct wf_hook_entry wf_hook_entry;

struct wf_tensor {
    atomic_int refcount;
    wf_storage *storage;
    int64_t offset;                 /* in elements */
    int ndim;
    int64_t shape[WF_MAX_DIMS];
    int64_t stride[WF_MAX_DIMS];    /* in elements; 0 for expanded dims */
    wf_dtype dtype;
    wf_device device;

    /* autograd */
    bool requires_grad;             /* leaf flag, or true for outputs of recorded ops */
    wf_node *grad_fn;               /* owning reference; NULL for leaves */
    int output_nr;                  /* which output of grad_fn this is */
    wf_tensor *grad;                /* owning reference; leaves only */
    wf_node *grad_accumulator;      /* weak: set while an accumulator node for this leaf lives */
    wf_hook_entry *hooks;           /* leaf gradient hooks */
    wf_tensor *view_base;           /* owning: the tensor this is a view of (autograd checks) */

    /* scope bookkeeping */
    struct wf_scope *scope;         /* scope that holds a reference, or NULL */
    wf_tensor *scope_prev, *scope_next;   /* the scope's list (tensor/scope.c) */
};

/* How tensor/ lets go of a handle's autograd state (grad_fn, hooks: opaque here) without
 * calling up into autograd/: autograd/node.c installs this table (wf__autograd_install) before
 * it first attaches such state to a tensor, so a tensor that has any was seen by autograd.
 * NULL until then. grad_fn_name: the node's name for wf_print. */
typedef struct wf__autograd_iface {
    void (*release)(wf_tensor *t);                  /* drop t's grad_fn and hooks */
    const char *(*grad_fn_name)(const wf_tensor *t);
} wf__autograd_iface;
extern const wf__autograd_iface *_Atomic wf__autograd;

/* ---------------------------------------------------------------- helpers (tensor/tensor.c) */

/* Resolve WF_DTYPE_DEFAULT. */
wf_dtype wf__dtype(wf_dtype dt);
/* Normalize dim in [-ndim, ndim) to [0, ndim); sets an error naming op and returns -1 if bad. */
int wf__dim(const char *op, int dim, int ndim);
/* New contiguous tensor (uninitialized), registered in the current scope. */
wf_tensor *wf__empty(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev);
/* New handle sharing t's storage with the given geometry (a view), registered in the scope. */
wf_tensor *wf__view_of(wf_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
/* Fill contiguous strides for shape; returns numel. */
int64_t wf__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t wf__numel(int ndim, const int64_t *shape);
/* Shape checks for public entry points: WF_ESHAPE/WF_ENULL naming op and the sizes. */
int wf__check_shape(const char *op, const int64_t *shape, int ndim);
/* WF_EINVAL naming op when v does not fit dt (see tensor.c). */
int wf__check_fill_value(const char *op, wf_dtype dt, double v);
/* Broadcast two shapes (op names the caller for messages). Returns 0 or WF_ESHAPE. */
int wf__broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                         int *nout, int64_t *out);
/* View of t expanded (stride 0) to shape (t's shape must broadcast to it). No autograd. */
wf_tensor *wf__expand_raw(wf_tensor *t, int ndim, const int64_t *shape);
/* Type promotion for binary ops (PyTorch's category rules without 0-dim special cases). */
wf_dtype wf__promote(wf_dtype a, wf_dtype b);
/* the dtype of a binary op on tensors a and b: wf__promote, except that a 0-dim tensor
 * only counts when its category (bool < integer < floating) is higher (tensor/tensor.c) */
wf_dtype wf__result_type(const wf_tensor *a, const wf_tensor *b);
/* Check every tensor is on the same device; sets a message naming op. */
int wf__same_device(const char *op, wf_tensor *const *ts, int n);
/* Element pointer to the first element on the host (CPU only). */
static inline char *wf__host_ptr(const wf_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype);
}
/* Mark an in-place write: bumps the storage version. */
static inline void wf__bump_version(wf_tensor *t) { atomic_fetch_add(&t->storage->version, 1); }
/* Errors with the op name; message formatting helpers. */
int wf__error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Error if any input is NULL: returns true when the caller must return NULL (an error is
 * already recorded, or WF_ENULL is recorded if none was). */
bool wf__any_null(const char *op, int n, ...);
/* Error context for a public function that failed inside another one: take seq_before =
 * wf__error_seq() on entry; on failure wf__error_context(fn, seq_before) puts "fn: " in front
 * of an error recorded during the call whose message does not name fn already (an error
 * from before the call, kept by NULL propagation, is left as it is). Returns the code. */
unsigned wf__error_seq(void);
int wf__error_context(const char *fn, unsigned seq_before);
/* A public function's body as one statement: T r = call; when cond (about r) says it failed,
 * the error gets "fn: " in front as above; return r. The wrapper of a fn__body. */
#define WF__NAMED(fn, T, cond, call)                \
    do {                                            \
        unsigned err_seq0_ = wf__error_seq();       \
        T r = (call);                               \
        if (cond) wf__error_context(fn, err_seq0_); \
        return r;                                   \
    } while (0)
/* shape text without a tensor */
char *wf__shape_text(int ndim, const int64_t *shape, char *buf, size_t n);

/* ---------------------------------------------------------------- scopes (tensor/scope.c) */
void wf__scope_register(wf_tensor *t);
void wf__scope_unregister(wf_tensor *t);

/* ---------------------------------------------------------------- host allocator (tensor/alloc.c) */
void *wf__host_alloc(size_t nbytes);                 /* cached, 64-byte aligned; NULL on OOM */
void wf__host_free(void *p, size_t nbytes);
void wf__host_reset_peak_memory(void);              /* peak_allocated = allocated (wf_fabric_reset_peak_memory_stats) */
/* plain (uncached) allocations for weft's own bookkeeping, through the user's allocator */
void *wf__malloc(size_t n);
void *wf__calloc(size_t n, size_t size);
void *wf__realloc(void *p, size_t old, size_t n);
void wf__free(void *p, size_t n);
char *wf__strdup(const char *s);

/* ---------------------------------------------------------------- half precision (tensor/dtype.c) */
float wf__f16_to_f32(uint16_t h);
uint16_t wf__f32_to_f16(float f);          /* round to nearest even */
static inline float wf__bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 }; return v.f;
}
static inline uint16_t wf__f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
/* load/store one element of any dtype as double (slow path, any dtype) */
double wf__load(const void *p, wf_dtype dt);
void wf__store(void *p, wf_dtype dt, double v);

/* ---------------------------------------------------------------- Philox (tensor/random.c) */
/* Philox4x32-10: 4 outputs per counter. The element at linear index i of a draw that starts
 * at offset o uses counter (o + i/4), lane i%4. CPU and CUDA use the same function. */
void wf__philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]);
/* Reserve n counters from the global generator; returns the starting offset and the seed. */
uint64_t wf__rng_reserve(uint64_t n, uint64_t *seed);
/* uniform float in [0,1) from 32 random bits, and a normal pair via Box-Muller */
static inline float wf__u01(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
static inline double wf__u01d(uint32_t hi, uint32_t lo) {
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------- per-device kernels
 * Kernels never validate and never touch autograd. Output tensors are allocated by the
 * front-end (usually contiguous); inputs may have any strides, including 0 (broadcast).
 * All operands of one kernel call have the same shape unless stated. Return 0, or a code
 * (with an error message) when the device itself fails. */

/* The op enums come from the one op list, tensor/ops.def (also the CUDA side's numbers, the
 * names and each backend's dtype support): an op is added there, not here. */
typedef enum wf_unary_op {
#define WF_UNARY_OP(id, name, cpu, cuda) WF_U_##id,
#include "ops.def"
    WF_U_COUNT
} wf_unary_op;

typedef enum wf_binary_op {
#define WF_BINARY_OP(id, name, cpu, cuda) WF_B_##id,
#include "ops.def"
    WF_B_COUNT
} wf_binary_op;

typedef enum wf_reduce_op {
#define WF_REDUCE_OP(id, name, cpu, cuda) WF_R_##id,
#include "ops.def"
    WF_R_COUNT
} wf_reduce_op;

/* one per wf_kernels entry that computes an op (not memory or copies) */
typedef enum wf_kernel_op {
#define WF_KERNEL_OP(id, name, field, cpu, cuda) WF_K_##id,
#include "ops.def"
    WF_K_COUNT
} wf_kernel_op;

/* Pinned counts. A new row in ops.def lands here first: before raising a count, give the op
 * what the list cannot generate: its case in the CPU and CUDA kernels' switches
 * (tensor/cpu/elementwise.c, reduce.c; tensor/cuda/cuda_elementwise.cu, cuda_reduce.cu),
 * its raw op (tensor/ops_*.c) and public function (autograd/fn_*.c), and for a unary op its
 * autograd node name (autograd/fn_unary.c). */
_Static_assert(WF_U_COUNT == 21, "tensor/ops.def: a unary op was added or removed; see the comment above");
_Static_assert(WF_B_COUNT == 15, "tensor/ops.def: a binary op was added or removed; see the comment above");
_Static_assert(WF_R_COUNT == 7, "tensor/ops.def: a reduce op was added or removed; see the comment above");
_Static_assert(WF_K_COUNT == 38, "tensor/ops.def: a kernel-table op was added or removed; see the comment above");

typedef enum wf_op_family { WF_OPF_UNARY, WF_OPF_BINARY, WF_OPF_REDUCE, WF_OPF_KERNEL, WF_OPF_COUNT } wf_op_family;

/* Per backend: for each op, the mask of dtypes (bit 1 << wf_dtype) its kernel computes,
 * generated from that backend's column of ops.def. */
typedef struct wf_op_support {
    uint16_t unary[WF_U_COUNT];
    uint16_t binary[WF_B_COUNT];
    uint16_t reduce[WF_R_COUNT];
    uint16_t kernel[WF_K_COUNT];
    /* kernel ops whose results vary run to run (atomics in a varying order): not offered
     * while deterministic algorithms are on (bit WF_K_*) */
    uint64_t kernel_nondeterministic;
} wf_op_support;
_Static_assert(WF_K_COUNT <= 64, "wf_op_support.kernel_nondeterministic holds 64 kernel ops");
/* wf_use_deterministic_algorithms' setting (tensor/random.c) */
extern _Atomic bool wf__deterministic;
_Static_assert(WF_DTYPE_COUNT <= 16, "wf_op_support masks hold 16 dtypes");

/* op names by family ("exp", "add", "sum", "im2col"; tensor/dispatch.c), for messages */
extern const char *const wf__unary_op_names[WF_U_COUNT];
extern const char *const wf__binary_op_names[WF_B_COUNT];
extern const char *const wf__reduce_op_names[WF_R_COUNT];
extern const char *const wf__kernel_op_names[WF_K_COUNT];
/* name of op in family, or NULL when out of range */
const char *wf__op_name(wf_op_family fam, int op);

typedef struct wf_kernels {
    const char *name;
    /* memory */
    void *(*alloc)(wf_device dev, size_t nbytes);          /* NULL + error on failure */
    void (*free)(wf_device dev, void *p, size_t nbytes);
    /* y = cast(x): any dtypes, same shape, any strides (also used for contiguous()) */
    int (*copy)(wf_tensor *y, const wf_tensor *x);
    int (*fill)(wf_tensor *y, double v);
    /* host <-> device: y and x contiguous, same dtype and numel */
    int (*to_host)(void *dst, const wf_tensor *x);
    int (*from_host)(wf_tensor *y, const void *src);
    /* y = op(x; a, b) elementwise; y may be bool for predicates */
    int (*unary)(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b);
    /* gx = gy * op'(x) (y = op(x) is given too, may be used instead of x) */
    int (*unary_backward)(wf_unary_op op, wf_tensor *gx, const wf_tensor *gy,
                          const wf_tensor *x, const wf_tensor *y, double a, double b);
    /* y = a op b; a and b already expanded to y's shape; comparisons write bool y */
    int (*binary)(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b);
    /* true: binary also takes an f32 y with a or b in bf16 / f16, read and widened exactly
     * (so y is what casting them first gives); wf__binary_raw then skips those casts (the
     * residual adds of autocast: an f32 stream plus a bf16 branch). */
    bool binary_widens;
    /* y = a op s */
    int (*binary_scalar)(wf_binary_op op, wf_tensor *y, const wf_tensor *a, double s, bool reversed);
    /* y = cond ? a : b (all expanded to y's shape) */
    int (*where)(wf_tensor *y, const wf_tensor *cond, const wf_tensor *a, const wf_tensor *b);
    /* a += alpha * b (b expanded to a's shape) */
    int (*axpy)(wf_tensor *a, const wf_tensor *b, double alpha);
    /* reduce x over the dims where reduce_mask bit is set into y (keepdim shape: same ndim
     * as x, size 1 in reduced dims); p for WF_R_PNORM */
    int (*reduce)(wf_reduce_op op, wf_tensor *y, const wf_tensor *x, uint32_t reduce_mask, double p);
    /* index of max/min along dim: y i64 with x's shape and size 1 at dim */
    int (*arg_reduce)(bool is_max, wf_tensor *y, const wf_tensor *x, int dim);
    /* random fills using Philox (seed, offset): uniform [lo,hi), normal(mean,std),
     * integers [lo,hi), bernoulli with probability tensor p (or scalar p if p_t NULL) */
    int (*rand_uniform)(wf_tensor *y, uint64_t seed, uint64_t offset, double lo, double hi);
    int (*rand_normal)(wf_tensor *y, uint64_t seed, uint64_t offset, double mean, double std);
    int (*rand_int)(wf_tensor *y, uint64_t seed, uint64_t offset, int64_t lo, int64_t hi);
    int (*bernoulli)(wf_tensor *y, uint64_t seed, uint64_t offset, const wf_tensor *p_t, double p);
    /* C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b in batch; each operand is a
     * batch of row-major matrices with batch stride (0 = broadcast) and leading dim.
     * transA/transB: use the transpose of the stored matrix. dtype of all three equal. */
    int (*gemm)(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                double alpha, const void *A, int64_t lda, int64_t strideA,
                const void *B, int64_t ldb, int64_t strideB,
                double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, wf_device dev);
    /* y = out_scale * softmax(scale * x) (log: log_softmax(scale * x), out_scale 1) along the
     * last dim of contiguous x (rows x cols). causal > 0: the rows are matrices of `causal`
     * rows each (attention's [.., L, S] scores, L = causal) and row r keeps columns
     * j <= r % causal only (torch's is_causal, top-left aligned); the others are excluded from
     * max and sum and give 0 (log: -inf), as a -inf score would. */
    int (*softmax)(wf_tensor *y, const wf_tensor *x, bool log, double scale, double out_scale, int64_t causal);
    /* gx = d/dx of the forward above given its y and gy, all contiguous: softmax
     * gx = scale * y * (gy - sum(gy * y) / out_scale), log gx = scale * (gy - exp(y) sum(gy))
     * (the causal mask needs nothing here: its excluded entries have y = 0) */
    int (*softmax_backward)(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *y, bool log, double scale,
                            double out_scale);
    /* gather / scatter-add along dim: index has y's shape (gather) / src's shape (scatter) */
    int (*gather)(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index);
    int (*scatter_add)(wf_tensor *y, int dim, const wf_tensor *index, const wf_tensor *src);
    /* y = x.index_select(dim, index) and its backward (gx zeroed by the caller: gx[idx] += gy) */
    int (*index_select)(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index);
    int (*index_add)(wf_tensor *gx, int dim, const wf_tensor *index, const wf_tensor *gy);
    /* im2col / col2im for conv2d: x [C,H,W] (one image, contiguous) <-> col [C*kh*kw, oh*ow] */
    int (*im2col)(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                  int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,
                  wf_device dev);
    int (*col2im)(void *x, const void *col, wf_dtype dt, int64_t C, int64_t H, int64_t W,
                  int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow,
                  wf_device dev);
    /* Optional (NULL: conv2d runs im2col/col2im image by image): the same for N contiguous
     * images x [N,C,H,W] <-> col [C*kh*kw, N*oh*ow] (image n in columns [n*oh*ow, (n+1)*oh*ow)),
     * so one GEMM covers the batch. col2im_batch OVERWRITES x, starting every x[n,c] from
     * bias[c] (bias: C contiguous elements of dt) or from 0 (bias NULL). With a 1x1 kernel
     * (stride 1, no padding) the pair is the permute [N,C,HW] <-> [C,N*HW] (+ bias). */
    int (*im2col_batch)(void *col, const void *x, wf_dtype dt, int64_t N, int64_t C, int64_t H,
                        int64_t W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                        int64_t oh, int64_t ow, wf_device dev);
    int (*col2im_batch)(void *x, const void *col, const void *bias, wf_dtype dt, int64_t N,
                        int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph,
                        int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev);
    /* pooling on contiguous [N,C,H,W]; max writes argmax (i64 flat index in H*W) */
    int (*max_pool2d)(wf_tensor *y, wf_tensor *argmax, const wf_tensor *x, const int k[2],
                      const int s[2], const int p[2], const int d[2]);
    int (*max_pool2d_backward)(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *argmax);
    int (*avg_pool2d)(wf_tensor *y, const wf_tensor *x, const int k[2], const int s[2],
                      const int p[2], bool count_include_pad);
    int (*avg_pool2d_backward)(wf_tensor *gx, const wf_tensor *gy, const int k[2],
                               const int s[2], const int p[2], bool count_include_pad);

    /* ---- optional fused kernels (appended; NULL on devices without them: the front-ends
     * then compose the op from the entries above). tensor/ops_fused.c's raw ops call them. */
    /* Attention on q [B,H,L,D], k and v [B,H,S,D] (f16/bf16, one dtype, last-dim stride 1,
     * other strides free, D <= 128): o (q's shape and dtype, last-dim stride 1) =
     * softmax(q k^T * scale [+ causal mask, key j <= query i]) v; lse (f32 [B,H,L] contiguous)
     * gets each row's log-sum-exp for the backward. */
    int (*sdpa_fwd)(wf_tensor *o, wf_tensor *lse, const wf_tensor *q, const wf_tensor *k, const wf_tensor *v,
                    double scale, bool causal);
    /* dq, dk, dv (written; q/k/v's shapes, same dtype, last-dim stride 1) from dout (o's shape,
     * last-dim stride 1) and the forward's q, k, v, o, lse. */
    int (*sdpa_bwd)(wf_tensor *dq, wf_tensor *dk, wf_tensor *dv, const wf_tensor *dout, const wf_tensor *q,
                    const wf_tensor *k, const wf_tensor *v, const wf_tensor *o, const wf_tensor *lse,
                    double scale, bool causal);
    /* Layer norm over the last D elements of contiguous x (rows = numel / D): y (x's shape; x's
     * dtype, or f32 / bf16 / f16 of its own, written once: a bf16 y of an f32 x under autocast)
     * = (x - mean) * rstd * weight + bias; weight/bias [D] contiguous or NULL; mean and rstd f32
     * [rows] (saved for the backward). */
    int (*layer_norm_fwd)(wf_tensor *y, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                          const wf_tensor *weight, const wf_tensor *bias, double eps);
    /* gx (x's shape; NULL to skip), gweight/gbias ([D], written; NULL to skip) from contiguous gy
     * (y's dtype) */
    int (*layer_norm_bwd)(wf_tensor *gx, wf_tensor *gweight, wf_tensor *gbias, const wf_tensor *gy,
                          const wf_tensor *x, const wf_tensor *mean, const wf_tensor *rstd,
                          const wf_tensor *weight);
    /* The residual add fused into the layer norm (pre-norm transformers): s = x + r, y =
     * layer_norm(s) as layer_norm_fwd has it; x contiguous, r contiguous of x's shape and any
     * floating dtype (read as is: an f32 residual plus a bf16 branch), s of x's dtype, y as layer_norm_fwd's,
     * mean/rstd f32 [rows] (f64 for an f64 x). Backward from the saved s: g = gs + d layer_norm(gy) (gy
     * contiguous of y's dtype, gs of s's; gs NULL: 0) written as gx (s's dtype) and gr (its own dtype),
     * either NULL to skip, and gweight/gbias as layer_norm_bwd. r_bias (NULL: none): the branch's
     * bias, contiguous [D] of r's or x's dtype, added to r's element in f32 (f64 for f64) before
     * the sum, s = x + (r + r_bias), so the Linear that made r runs without its bias; grbias
     * (NULL: not wanted) gets its gradient, the column sums of g (the gradient written as gx / gr,
     * before rounding), in a fixed order as gweight / gbias, in grbias's dtype. */
    int (*add_layer_norm_fwd)(wf_tensor *y, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                              const wf_tensor *r, const wf_tensor *r_bias, const wf_tensor *weight,
                              const wf_tensor *bias, double eps);
    int (*add_layer_norm_bwd)(wf_tensor *gx, wf_tensor *gr, wf_tensor *gweight, wf_tensor *gbias, wf_tensor *grbias,
                              const wf_tensor *gy,
                              const wf_tensor *gs, const wf_tensor *s, const wf_tensor *mean, const wf_tensor *rstd,
                              const wf_tensor *weight);
    /* Softmax cross-entropy of contiguous logits [N, C] with class targets (i64 [N]): loss [N]
     * (0 where target == ignore_index; an index out of range is reported at the next
     * synchronize as WF_EINDEX), lse f32 [N] or NULL. Backward: glogits = gloss[n] * scale *
     * (softmax - onehot) (gloss [N], any stride, or one element broadcast). */
    int (*xent_fwd)(wf_tensor *loss, wf_tensor *lse, const wf_tensor *logits, const wf_tensor *target,
                    int64_t ignore_index, double label_smoothing);
    int (*xent_bwd)(wf_tensor *glogits, const wf_tensor *gloss, double scale, const wf_tensor *logits,
                    const wf_tensor *target, const wf_tensor *lse, int64_t ignore_index, double label_smoothing);
    /* One row-major GEMM C[m,n] = op(A) op(B) (the gemm contract, alpha 1, beta 0, no batch)
     * with a fused epilogue: bias (n contiguous elements of dt) added to every row of C, or
     * bgrad (m contiguous elements of dt, written) = op(A)'s row sums over k (a Linear's bias
     * gradient beside its weight gradient). Exactly one of bias / bgrad. Returns 0 when done,
     * 1 when this device cannot fuse the case (nothing written, no error recorded: compose the
     * op instead), or a negative WF_E* code. */
    int (*gemm_epilogue)(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                         int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                         void *bgrad, wf_device dev);
    /* Optional: one row-major GEMM (the gemm contract, alpha 1, beta 0, no batch) with a GELU
     * epilogue, the tanh form only. Forward (!backward; bgrad NULL): aux [m, n] (leading dim
     * ldaux, written) = op(A) op(B) + bias (bias: n contiguous elements of dt, or NULL for
     * none) and C = gelu(aux). Backward (bias NULL): C = (op(A) op(B)) * gelu'(aux) with aux
     * [m, n] read, and bgrad (n elements of dt, written; NULL: not wanted) = C's column sums,
     * the bias gradient of the Linear before the GELU. 0 when done, 1 when this device cannot
     * fuse the case (nothing written, no error recorded: compose the GEMM and the GELU
     * instead), or a negative WF_E* code. */
    int (*gemm_gelu)(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A,
                     int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, void *aux, int64_t ldaux,
                     const void *bias, void *bgrad, bool backward, wf_device dev);
    /* One row-major GEMM into a wider C: C[m,n] = op(A) @ op(B) + beta * C (alpha 1, no
     * batch; beta 0 or 1), A and B of dtype dt (lda, ldb as for gemm), C f32 (f64 when dt is
     * f64) with leading dim ldc. The products are summed in f32 (f64) and written (beta 0: C's
     * old values never read, NaN included) or added (beta 1) with no rounding to dt in
     * between: a weight gradient summed over chunks of rows, or a half-precision weight's
     * gradient made straight in its f32 parameter's dtype. k == 0: C = beta * C. */
    int (*gemm_acc)(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                    const void *B, int64_t ldb, double beta, void *C, int64_t ldc, wf_device dev);
    /* Optional: adaptive average pooling of contiguous [N,C,H,W] into y's oh x ow with
     * unequal bins (PyTorch's start/end rule), and its backward (overwrites gx). */
    int (*adaptive_avg_pool2d)(wf_tensor *y, const wf_tensor *x);
    int (*adaptive_avg_pool2d_backward)(wf_tensor *gx, const wf_tensor *gy);
    /* Optional: the epilogue of Linear + GELU on contiguous x [rows, D] (the GEMM's output
     * without its bias) and bias [D] contiguous, both of y's dtype: y = gelu(x + bias) (the
     * tanh form when tanh_approx); backward gx = gy * gelu'(x + bias), gy contiguous like x.
     * The bias gradient is the caller's (gx's column sums). */
    int (*bias_gelu)(wf_tensor *y, const wf_tensor *x, const wf_tensor *bias, bool tanh_approx);
    int (*bias_gelu_bwd)(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x, const wf_tensor *bias, bool tanh_approx);
    /* Optional: the GELU's backward with the bias gradient of the Linear before it, over
     * contiguous gy and pre of one shape [rows, N] (any leading dims: rows = numel / N) and
     * one dtype, gx like them, gb [N] contiguous of their dtype: gx = gy * gelu'(pre) (the
     * tanh form when tanh_approx), the same per-element math as unary_backward's GELU, and gb
     * = the column sums of gx as stored (rounded to its dtype), summed in f32 in a fixed order
     * (deterministic). */
    int (*gelu_bwd_bias)(wf_tensor *gx, wf_tensor *gb, const wf_tensor *gy, const wf_tensor *pre, bool tanh_approx);

    /* Which ops and dtypes this backend computes (never NULL). Front-ends ask it through
     * wf__supports / wf__need_kernel before dispatching, so a missing kernel is an error,
     * never another device's code. */
    const wf_op_support *support;
} wf_kernels;

/* The table for a device; NULL with an error if the device is not available. */
const wf_kernels *wf__kernels(wf_device dev);
/* FLOPs of the matrix products (2*m*n*k: matmul, bmm, linear, conv2d and their gradients)
 * run on the meta device, added where those front-ends skip their kernels for meta: an exact
 * count for wf_measure_flops (fabric/throughput.c), free on the other devices. */
void wf__meta_flops_add(int64_t flops);
int64_t wf__meta_flops(void);
/* How often each op of ops.def was dispatched, per backend: [0] the CPU, [1] every other
 * table (CUDA; the meta and test tables land there too). Indexed by wf__op_index. The op
 * harness (tests/ops/test_ops.c) reports every op it never reached. A relaxed load and store,
 * not a read-modify-write: a count lost to a race does not matter, only zero does, and the
 * plain add costs nothing next to an op (bench/NOTES.md, "Op harness"). */
#define WF_OP_TOTAL (WF_U_COUNT + WF_B_COUNT + WF_R_COUNT + WF_K_COUNT)
extern _Atomic unsigned wf__op_calls[2][WF_OP_TOTAL];
static inline int wf__op_index(wf_op_family fam, int op) {
    static const int base[WF_OPF_COUNT] = { 0, WF_U_COUNT, WF_U_COUNT + WF_B_COUNT, WF_U_COUNT + WF_B_COUNT + WF_R_COUNT };
    return base[fam] + op;
}
extern const struct wf_kernels wf__cpu_kernels;
/* Does backend k compute op (of family fam) on dtype dt? A mask lookup: no strings, no locks.
 * A yes is the front-end about to dispatch: it counts as a call (wf__op_calls). */
static inline bool wf__supports(const wf_kernels *k, wf_op_family fam, int op, wf_dtype dt) {
    const wf_op_support *s = k->support;
    unsigned bit = 1u << (unsigned)dt, m;
    switch (fam) {
    case WF_OPF_UNARY: m = s->unary[op]; break;
    case WF_OPF_BINARY: m = s->binary[op]; break;
    case WF_OPF_REDUCE: m = s->reduce[op]; break;
    default:
        m = s->kernel[op];
        if (s->kernel_nondeterministic && (s->kernel_nondeterministic >> op & 1) &&
            atomic_load_explicit(&wf__deterministic, memory_order_relaxed))
            return false;   /* wf_use_deterministic_algorithms: compose the op instead */
        break;
    }
    if (!(m & bit)) return false;
#ifndef WEFT_MINIMAL   /* the embedded preset's size budget: no op harness there */
    if (WF__CENSUS_ON()) wf__census_dispatch(wf__op_name(fam, op));   /* the census's label */
    _Atomic unsigned *c = &wf__op_calls[k != &wf__cpu_kernels][wf__op_index(fam, op)];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1u, memory_order_relaxed);
#endif
    return true;
}
/* Records WF_ENOTSUP "fn: no kernel for <dtype> on <device> (<op>)" and returns it. */
int wf__no_kernel(const char *fn, wf_op_family fam, int op, wf_dtype dt, wf_device dev);
/* 0 when k computes the op on dt, else the WF_ENOTSUP of wf__no_kernel. */
static inline int wf__need_kernel(const wf_kernels *k, const char *fn, wf_op_family fam, int op, wf_dtype dt,
                                  wf_device dev) {
    return wf__supports(k, fam, op, dt) ? 0 : wf__no_kernel(fn, fam, op, dt, dev);
}
/* The same question by device (NULL table: false, error recorded by wf__kernels). */
bool wf__device_supports(wf_device dev, wf_op_family fam, int op, wf_dtype dt);
/* Is the wf_kernels entry of a kernel-family op set in k? (the support masks must agree) */
bool wf__kernel_op_present(const wf_kernels *k, wf_kernel_op op);
/* Tests only: serve `k` as the table of every CUDA device (NULL restores the real one), so a
 * test without a GPU can check what front-ends do with a backend missing a kernel. */
void wf__set_cuda_kernels_for_test(const wf_kernels *k);
extern const wf_kernels wf__cpu_kernels;
#ifdef WEFT_HAVE_CUDA
extern const wf_kernels wf__cuda_kernels;
#endif

/* ---------------------------------------------------------------- CPU multiversioning
 * Hot CPU loops are compiled twice on x86-64 Linux with GCC (x86-64-v3, i.e. AVX2+FMA, and
 * the baseline) and picked at load time, so a portable build still runs at the machine's
 * width. ISO C11 mode keeps floating contraction off, so both clones give the same bits.
 * Off under Address/ThreadSanitizer (ifunc resolvers run before their runtime is ready). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(WEFT_NO_TARGET_CLONES)
#if __GNUC__ >= 12
#define WF_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
/* also an AVX-512 clone, for integer lane work where 16 lanes pay (half conversions) */
#define WF_MULTIVERSION_V4 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WF_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#define WF_MULTIVERSION_V4 WF_MULTIVERSION
#endif
#else
#define WF_MULTIVERSION
#define WF_MULTIVERSION_V4
#endif

/* ---------------------------------------------------------------- CPU strided iteration
 * Iterates n operands of the same shape (any strides, in elements) over their innermost
 * runs. fn receives pointers to the run's first elements, the run length and the operands'
 * byte strides in that run. Dims are coalesced where memory allows. */
typedef void (*wf_iter_fn)(char **ptrs, const int64_t *byte_strides, int64_t n, void *ctx);
void wf__iter(int nops, wf_tensor *const *ops, wf_iter_fn fn, void *ctx);

/* ---------------------------------------------------------------- CPU threads
 * thread_pool.c: weft's CPU threads.
 * wf__parallel_for runs body(ctx, begin, end) over [0, n) in chunks of `grain` (the last one
 * shorter): chunk i is [i*grain, min(n, (i+1)*grain)), each run exactly once, on the calling
 * thread or a helper; it returns when all are done. The chunks depend on (n, grain) only, so
 * partial results kept per chunk and combined in chunk order give the same bits whatever the
 * thread count. Calls from inside a body, and from a second thread while a loop runs, run
 * inline. 0, or WF_EINVAL (n < 0, grain < 1, body NULL, more than 2^31 - 1 chunks). */
int wf__parallel_for(int64_t n, int64_t grain, void (*body)(void *ctx, int64_t begin, int64_t end),
                     void *ctx);
#if defined(WEFT_MINIMAL) && !defined(WF_PARALLEL_FOR_FUNCTION)
/* The minimal preset has no helper threads: its loops call the body once over the whole range,
 * which the compiler inlines (the outlined bodies and their contexts otherwise cost the size
 * budget ~8 KB). Every body handles any sub-range, so the results are the same. Code that wants
 * the function itself (its checks, exact chunks) defines WF_PARALLEL_FOR_FUNCTION first. */
static inline __attribute__((always_inline)) int wf__parallel_for_inline_(int64_t n, void (*body)(void *, int64_t, int64_t), void *ctx) {
    if (n > 0) body(ctx, 0, n);
    return 0;
}
#define wf__parallel_for(n, grain, body, ctx) ((void)(grain), wf__parallel_for_inline_((n), (body), (ctx)))
#endif
/* inside a body: this thread's slot in the loop (per-thread scratch), below min(pool size,
 * chunks), in the order the threads took their first chunk; 0 outside and in inline calls */
int wf__pool_worker(void);
bool wf__pool_in_region(void);
/* the threads a loop started here may use: the pool's size, 1 inside a loop */
int wf__pool_size(void);
int wf__pool_set_size(int n);   /* wf_set_num_threads */
int wf__pool_get_size(void);

#endif
