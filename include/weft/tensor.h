/* weft/tensor.h: errors, memory (scopes, allocator), dtypes, devices, tensors and their ops.
 *
 * Conventions (see docs/architecture.md):
 *  - Functions returning a tensor return NULL on failure and record a thread-local error
 *    (wf_error(), wf_error_message()). A NULL input makes an op return NULL without touching
 *    the first error, so an expression can be checked once at the end (with no error recorded
 *    yet, the NULL itself is recorded: WF_ENULL naming the op).
 *  - Functions returning int return 0 on success or a negative WF_E* code.
 *  - Ownership: a returned tensor belongs to the innermost open scope (wf_scope_begin); with
 *    no scope open the caller owns it and releases it with wf_tensor_free. wf_tensor_retain
 *    adds an owner. Pointers returned by accessors (shape, grad, data) are borrowed.
 *  - Shapes are PyTorch's: row-major, last dimension contiguous, negative dims count from
 *    the end, broadcasting as in NumPy.
 */
#ifndef WEFT_TENSOR_H
#define WEFT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

enum {
    WF_OK = 0,
    WF_EINVAL = -1,     /* invalid argument (bad value, bad option, unknown name) */
    WF_ESHAPE = -2,     /* shapes do not fit together */
    WF_EDTYPE = -3,     /* dtype not supported or mismatched */
    WF_EDEVICE = -4,    /* device mismatch or device not available */
    WF_EINDEX = -5,     /* dimension or index out of range */
    WF_ENOMEM = -6,     /* out of memory (host or device) */
    WF_EIO = -7,        /* file could not be read or written */
    WF_ECORRUPT = -8,   /* file or data is malformed */
    WF_ESTATE = -9,     /* call not valid in the object's current state */
    WF_EAUTOGRAD = -10, /* autograd misuse (no grad_fn, modified saved tensor, ...) */
    WF_ENOTSUP = -11,   /* not supported by this build or device */
    WF_ENULL = -12,     /* a required argument was NULL */
    WF_ENOTFOUND = -13, /* key, file or name not found */
    WF_EDIST = -14,     /* collective or peer failure */
    WF_ETIMEOUT = -15,  /* an operation did not finish in time */
    WF_EDEVICEFAIL = -16, /* a device kernel or runtime call failed */
    WF_ENONFINITE = -17 /* a value is inf or NaN where it must be finite */
};

/* The code of the last error recorded on this thread (WF_OK if none). */
int wf_error(void);
/* The message of the last error on this thread; owned by weft, valid until the next error. */
const char *wf_error_message(void);
/* Forget the recorded error on this thread. */
void wf_clear_error(void);
/* A short name for an error code ("WF_ESHAPE"); static storage. */
const char *wf_error_name(int code);
/* Record an error (for code layered on weft: modules, user ops). Returns code. */
int wf_set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- memory */

/* Redirect host allocation (like lua_Alloc / sqlite3_config). Pass NULL to restore malloc.
 * Must be called before any tensor exists. Returns WF_ESTATE otherwise. */
typedef struct wf_allocator {
    void *(*alloc)(void *ud, size_t size);  /* 64-byte aligned memory or NULL */
    void (*free)(void *ud, void *ptr, size_t size);
    void *ud;
} wf_allocator;
int wf_set_allocator(const wf_allocator *a);

typedef struct wf_memory_stats {
    size_t allocated;     /* bytes handed out to live storages */
    size_t reserved;      /* bytes held from the system (allocated + cached) */
    size_t peak_allocated;
    size_t n_system_allocs; /* calls made to the underlying allocator */
} wf_memory_stats;
/* Host caching allocator counters. */
void wf_memory_stats_get(wf_memory_stats *out);
/* Return cached, unused host blocks to the system. */
void wf_empty_cache(void);

/* Scopes: temporaries created while a scope is open belong to it and are released by
 * wf_scope_end. Scopes nest per thread. */
void wf_scope_begin(void);
void wf_scope_end(void);
/* Block form: WF_SCOPE { ... } (do not leave the block with return/goto/break). */
#define WF_SCOPE for (int wf__s = (wf_scope_begin(), 0); !wf__s; wf__s = (wf_scope_end(), 1))

/* ---------------------------------------------------------------- dtypes and devices */

typedef enum wf_dtype {
    WF_DTYPE_DEFAULT = 0, /* the thread's default dtype (f32 unless changed) */
    WF_F32, WF_F64, WF_F16, WF_BF16, WF_I64, WF_I32, WF_U8, WF_BOOL,
    WF_DTYPE_COUNT
} wf_dtype;

const char *wf_dtype_name(wf_dtype dt);     /* "float32" ...; static storage */
size_t wf_dtype_size(wf_dtype dt);
bool wf_dtype_is_floating(wf_dtype dt);
/* Parse "float32"/"f32"/"bfloat16"/"bf16"/... Returns 0 and sets *out, or WF_EINVAL. */
int wf_dtype_parse(const char *s, wf_dtype *out);

typedef enum wf_device_type { WF_DEV_CPU = 0, WF_DEV_CUDA = 1, WF_DEV_META = 2 } wf_device_type;
typedef struct wf_device { int16_t type; int16_t index; } wf_device;
#define WF_CPU ((wf_device){WF_DEV_CPU, 0})
#define WF_CUDA(i) ((wf_device){WF_DEV_CUDA, (int16_t)(i)})
#define WF_META ((wf_device){WF_DEV_META, 0})
/* Parse "cpu", "cuda", "cuda:1", "meta". Returns 0 or WF_EINVAL / WF_ENOTSUP. */
int wf_device_parse(const char *s, wf_device *out);
/* Writes "cpu", "cuda:0", ... into buf; returns buf. */
char *wf_device_str(wf_device d, char *buf, size_t n);
bool wf_device_eq(wf_device a, wf_device b);
/* Number of CUDA devices usable by this build (0 without CUDA or without a GPU). */
int wf_cuda_device_count(void);

/* Thread-local defaults used by creation functions (like torch.set_default_dtype/device). */
wf_dtype wf_get_default_dtype(void);
int wf_set_default_dtype(wf_dtype dt);      /* floating dtypes only */
wf_device wf_get_default_device(void);
int wf_set_default_device(wf_device d);

/* ---------------------------------------------------------------- memory census
 * Memory census (PyTorch's torch.cuda.memory._record_memory_history / memory_snapshot /
 * memory_summary): while on, every tensor storage made on the CPU or a CUDA device records
 * its bytes, dtype, device and a label naming what allocated it: the op being dispatched
 * (e.g. "matmul", "to_dtype", "empty"), inside a backward "backward of <Node>" in front of
 * it, and the thread's own label (wf_memory_set_label: "optimizer", "loss", ...). At every
 * new peak of live bytes on a device the census keeps the totals per label, so after a step
 * it tells what was alive at the peak. Bytes are the storages' requested sizes (the
 * allocators round them up: compare wf_memory_stats). Off by default; off, it costs one
 * branch per storage. Its own tables come from plain malloc and are not counted. Not in
 * the minimal build (WF_ENOTSUP there). */
#define WF_MEMORY_LABEL_MAX 96
/* enabled: forget anything recorded and start; false: stop and forget. Storages made
 * before the start are not counted. Returns 0 or WF_ENOMEM / WF_ENOTSUP. */
int wf_memory_record_history(bool enabled);
bool wf_memory_is_recording(void);
/* This thread's label for the storages it allocates from now on ("optimizer", "loss");
 * NULL clears it. Returns the previous one, to restore. The text is copied when a storage
 * is recorded under it; the pointer must stay valid while it is set. */
const char *wf_memory_set_label(const char *label);
typedef struct wf_memory_census_row {
    char label[WF_MEMORY_LABEL_MAX];
    wf_dtype dtype;
    wf_device device;
    size_t bytes;        /* live bytes of this label's storages (at the peak, or now) */
    int64_t count;       /* how many storages */
} wf_memory_census_row;
/* The census of device dev at its peak (at_peak) or now, biggest first: fills up to cap
 * rows and returns how many rows there are (more than cap: only the biggest cap written;
 * rows may be NULL when cap is 0). *total_bytes (optional): the live bytes of all of them.
 * WF_ESTATE while the census is off, WF_ENULL / WF_EINVAL for a bad buffer. */
int wf_memory_snapshot(wf_device dev, bool at_peak, wf_memory_census_row *rows, int cap, size_t *total_bytes);
/* A table of dev's census at the peak and the live bytes now, as text in buf (n bytes with
 * the NUL). Returns its length, WF_EINVAL naming the size needed when buf is too small,
 * WF_ESTATE while off. */
int wf_memory_summary(wf_device dev, char *buf, size_t n);
/* The census's peak on every device restarts from what is live now (after a warm-up step). */
int wf_memory_history_reset_peak(void);

/* ---------------------------------------------------------------- tensors */

#define WF_MAX_DIMS 8
typedef struct wf_tensor wf_tensor;

/* Shape literal helper: wf_zeros(WF_SHAPE(2, 3), WF_F32). */
#define WF_SHAPE(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
/* Dims-set literal helper for reductions: wf_sum(x, WF_DIMS(0, 2), false). */
#define WF_DIMS(...) (const int[]){__VA_ARGS__}, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int))
/* All dimensions (for reductions): wf_sum(x, WF_ALL_DIMS, false). */
#define WF_ALL_DIMS NULL, 0

/* Add an owner (returns t). */
wf_tensor *wf_tensor_retain(wf_tensor *t);
/* Drop one reference (yours: from a creation with no scope open, or from wf_tensor_retain);
 * the last one frees. A scope drops its own reference at wf_scope_end. NULL is fine. */
void wf_tensor_free(wf_tensor *t);
/* Hand t from the innermost scope to the enclosing one (or to the caller if none). Returns t. */
wf_tensor *wf_keep(wf_tensor *t);

/* properties (borrowed, valid while t lives) */
int wf_ndim(const wf_tensor *t);
const int64_t *wf_shape(const wf_tensor *t);
const int64_t *wf_strides(const wf_tensor *t);      /* in elements */
int64_t wf_size(const wf_tensor *t, int dim);       /* negative dim counts from the end; -1 on error */
int64_t wf_numel(const wf_tensor *t);
wf_dtype wf_tensor_dtype(const wf_tensor *t);
wf_device wf_tensor_device(const wf_tensor *t);
bool wf_is_contiguous(const wf_tensor *t);
/* Host pointer to the first element (CPU tensors only, else NULL + error). */
void *wf_data_ptr(wf_tensor *t);
/* The single value of a one-element tensor as double (synchronizes a device). NAN + error otherwise. */
double wf_item(const wf_tensor *t);
/* Copy all elements in logical (row-major) order to dst as dtype dt. dst holds numel elements. */
int wf_to_array(const wf_tensor *t, void *dst, wf_dtype dt);
/* Shapes equal? */
bool wf_same_shape(const wf_tensor *a, const wf_tensor *b);
/* Shape as text "[2,3]" into buf; returns buf. */
char *wf_shape_str(const wf_tensor *t, char *buf, size_t n);

/* ---------------------------------------------------------------- creation */
wf_tensor *wf_empty(const int64_t *shape, int ndim, wf_dtype dt);
wf_tensor *wf_zeros(const int64_t *shape, int ndim, wf_dtype dt);
wf_tensor *wf_ones(const int64_t *shape, int ndim, wf_dtype dt);
wf_tensor *wf_full(const int64_t *shape, int ndim, double value, wf_dtype dt);
/* A 0-dim tensor holding value. */
wf_tensor *wf_scalar(double value, wf_dtype dt);
wf_tensor *wf_arange(double start, double end, double step, wf_dtype dt);
wf_tensor *wf_linspace(double start, double end, int64_t steps, wf_dtype dt);
wf_tensor *wf_eye(int64_t n, int64_t m, wf_dtype dt);
/* Copies numel(shape) elements of type dt from data (row-major). */
wf_tensor *wf_from_data(const void *data, const int64_t *shape, int ndim, wf_dtype dt);
/* On an explicit device (others use the default device). */
wf_tensor *wf_empty_on(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev);
wf_tensor *wf_zeros_on(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev);
wf_tensor *wf_empty_like(const wf_tensor *t);
wf_tensor *wf_zeros_like(const wf_tensor *t);
wf_tensor *wf_ones_like(const wf_tensor *t);
wf_tensor *wf_full_like(const wf_tensor *t, double value);

/* ---------------------------------------------------------------- CPU threads */
/* torch.set_num_threads / get_num_threads: the size of weft's thread pool, which runs its CPU
 * loops and its GEMMs (BLAS runs single-threaded on slices, so the two never compete for
 * cores). Process-wide, as in PyTorch. Default: OMP_NUM_THREADS, else the cores this process
 * may run on. n < 1 is WF_EINVAL; so is a call from inside one of weft's parallel loops. The
 * minimal (embedded) build has one thread: n is accepted and the size stays 1. */
int wf_set_num_threads(int n);
int wf_get_num_threads(void);

/* ---------------------------------------------------------------- random (Philox 4x32-10) */
/* The global generator: a seed and a counter offset; identical streams on CPU and CUDA. */
typedef struct wf_rng_state { uint64_t seed; uint64_t offset; } wf_rng_state;
void wf_manual_seed(uint64_t seed);
wf_rng_state wf_rng_get_state(void);
void wf_rng_set_state(wf_rng_state s);
/* Deterministic algorithms (torch.use_deterministic_algorithms), process-wide: while on, every
 * op gives the same bits run after run on the same device and build. Kernels whose result
 * depends on the order atomics land (CUDA's fused attention and layer-norm backward) are not
 * used (the op is composed from others), and CUDA's scatter_add, index_add (embedding's
 * backward) and max-pool backward run in a fixed order, more slowly. The CPU is deterministic
 * either way. Returns 0. */
int wf_use_deterministic_algorithms(bool on);
bool wf_are_deterministic_algorithms_enabled(void);
wf_tensor *wf_rand(const int64_t *shape, int ndim, wf_dtype dt);          /* U[0,1) */
wf_tensor *wf_randn(const int64_t *shape, int ndim, wf_dtype dt);         /* N(0,1) */
wf_tensor *wf_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, wf_dtype dt);
wf_tensor *wf_rand_like(const wf_tensor *t);
wf_tensor *wf_randn_like(const wf_tensor *t);
/* Each element 1 with probability p (p in [0,1]), dtype of p. */
wf_tensor *wf_bernoulli(const wf_tensor *p);
wf_tensor *wf_bernoulli_p(const int64_t *shape, int ndim, double p, wf_dtype dt);
/* In-place fills (no autograd): uniform in [lo,hi), normal(mean,std). */
int wf_uniform_(wf_tensor *t, double lo, double hi);
int wf_normal_(wf_tensor *t, double mean, double std);

/* ---------------------------------------------------------------- views (share storage) */
wf_tensor *wf_view(wf_tensor *t, const int64_t *shape, int ndim);    /* one -1 allowed */
wf_tensor *wf_reshape(wf_tensor *t, const int64_t *shape, int ndim); /* view if possible, else copy */
wf_tensor *wf_permute(wf_tensor *t, const int *dims, int ndim);
wf_tensor *wf_transpose(wf_tensor *t, int dim0, int dim1);
wf_tensor *wf_t(wf_tensor *t);                                       /* 2-D transpose */
wf_tensor *wf_narrow(wf_tensor *t, int dim, int64_t start, int64_t length);
/* Python-style t[start:end:step] along dim (negative start/end count from the end; clamped). */
wf_tensor *wf_slice(wf_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
wf_tensor *wf_select(wf_tensor *t, int dim, int64_t index);
wf_tensor *wf_expand(wf_tensor *t, const int64_t *shape, int ndim);  /* -1 keeps a size */
wf_tensor *wf_squeeze(wf_tensor *t, int dim);                        /* no-op if size != 1 */
wf_tensor *wf_squeeze_all(wf_tensor *t);
wf_tensor *wf_unsqueeze(wf_tensor *t, int dim);
wf_tensor *wf_flatten(wf_tensor *t, int start_dim, int end_dim);
wf_tensor *wf_detach(wf_tensor *t);                                  /* shares storage, no grad */

/* ---------------------------------------------------------------- copies and casts */
wf_tensor *wf_contiguous(wf_tensor *t);   /* t itself (a new handle) if already contiguous */
wf_tensor *wf_clone(wf_tensor *t);
wf_tensor *wf_to_dtype(wf_tensor *t, wf_dtype dt);      /* new handle to t if same dtype */
wf_tensor *wf_to_device(wf_tensor *t, wf_device dev);   /* new handle to t if same device */
/* dst[...] = src (broadcast to dst's shape, cast to dst's dtype, across devices). */
int wf_copy_(wf_tensor *dst, wf_tensor *src);

/* ---------------------------------------------------------------- elementwise unary */
wf_tensor *wf_neg(wf_tensor *x);
wf_tensor *wf_abs(wf_tensor *x);
wf_tensor *wf_exp(wf_tensor *x);
wf_tensor *wf_log(wf_tensor *x);
wf_tensor *wf_log1p(wf_tensor *x);
wf_tensor *wf_sqrt(wf_tensor *x);
wf_tensor *wf_rsqrt(wf_tensor *x);
wf_tensor *wf_sin(wf_tensor *x);
wf_tensor *wf_cos(wf_tensor *x);
wf_tensor *wf_tanh(wf_tensor *x);
wf_tensor *wf_sigmoid(wf_tensor *x);
wf_tensor *wf_relu(wf_tensor *x);
typedef enum wf_gelu_approx { WF_GELU_NONE = 0, WF_GELU_TANH = 1 } wf_gelu_approx;
wf_tensor *wf_gelu(wf_tensor *x, wf_gelu_approx approximate);
wf_tensor *wf_silu(wf_tensor *x);
wf_tensor *wf_square(wf_tensor *x);
wf_tensor *wf_sign(wf_tensor *x);                       /* no gradient (zero) */
wf_tensor *wf_pow_scalar(wf_tensor *x, double exponent);
/* Clamp to [lo, hi]; pass -INFINITY / INFINITY for no bound. */
wf_tensor *wf_clamp(wf_tensor *x, double lo, double hi);
wf_tensor *wf_logical_not(wf_tensor *x);               /* bool result */
/* NaN/inf tests (bool result, no gradient). */
wf_tensor *wf_isfinite(wf_tensor *x);

/* ---------------------------------------------------------------- elementwise binary */
wf_tensor *wf_add(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_sub(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_mul(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_div(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_pow(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_maximum(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_minimum(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_eq(wf_tensor *a, wf_tensor *b);            /* comparisons: bool results */
wf_tensor *wf_ne(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_lt(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_le(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_gt(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_ge(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_logical_and(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_logical_or(wf_tensor *a, wf_tensor *b);
/* cond ? a : b, all three broadcast together; cond is bool (or nonzero = true). */
wf_tensor *wf_where(wf_tensor *cond, wf_tensor *a, wf_tensor *b);
/* scalar forms: the scalar takes the tensor's dtype (as PyTorch's python-scalar rule). */
wf_tensor *wf_add_scalar(wf_tensor *a, double s);
wf_tensor *wf_sub_scalar(wf_tensor *a, double s);
wf_tensor *wf_rsub_scalar(wf_tensor *a, double s);      /* s - a */
wf_tensor *wf_mul_scalar(wf_tensor *a, double s);
wf_tensor *wf_div_scalar(wf_tensor *a, double s);
wf_tensor *wf_rdiv_scalar(wf_tensor *a, double s);      /* s / a */
wf_tensor *wf_maximum_scalar(wf_tensor *a, double s);
wf_tensor *wf_minimum_scalar(wf_tensor *a, double s);
wf_tensor *wf_eq_scalar(wf_tensor *a, double s);
wf_tensor *wf_ne_scalar(wf_tensor *a, double s);
wf_tensor *wf_lt_scalar(wf_tensor *a, double s);
wf_tensor *wf_le_scalar(wf_tensor *a, double s);
wf_tensor *wf_gt_scalar(wf_tensor *a, double s);
wf_tensor *wf_ge_scalar(wf_tensor *a, double s);

/* ---------------------------------------------------------------- in place (return 0 or a code)
 * In-place ops bump the storage version; modifying a tensor saved for backward is an error at
 * backward time. On a leaf that requires grad they are refused unless grad mode is off. */
int wf_add_(wf_tensor *a, wf_tensor *b);                /* a += b (b broadcasts to a) */
int wf_sub_(wf_tensor *a, wf_tensor *b);
int wf_mul_(wf_tensor *a, wf_tensor *b);
int wf_div_(wf_tensor *a, wf_tensor *b);
int wf_add_scaled_(wf_tensor *a, wf_tensor *b, double alpha);  /* a += alpha * b */
int wf_add_scalar_(wf_tensor *a, double s);
int wf_mul_scalar_(wf_tensor *a, double s);
int wf_clamp_(wf_tensor *a, double lo, double hi);
int wf_relu_(wf_tensor *a);
int wf_fill_(wf_tensor *a, double value);
int wf_zero_(wf_tensor *a);

/* ---------------------------------------------------------------- reductions
 * dims: a set of dimensions (NULL, 0 = all). keepdim keeps reduced dims with size 1. */
wf_tensor *wf_sum(wf_tensor *x, const int *dims, int ndims, bool keepdim);
wf_tensor *wf_mean(wf_tensor *x, const int *dims, int ndims, bool keepdim);
/* correction: 1 = unbiased (Bessel), 0 = population. */
wf_tensor *wf_var(wf_tensor *x, const int *dims, int ndims, int correction, bool keepdim);
wf_tensor *wf_std(wf_tensor *x, const int *dims, int ndims, int correction, bool keepdim);
wf_tensor *wf_amax(wf_tensor *x, const int *dims, int ndims, bool keepdim);
wf_tensor *wf_amin(wf_tensor *x, const int *dims, int ndims, bool keepdim);
/* index of the max/min along dim (i64); dim = WF_DIM_NONE flattens first. */
#define WF_DIM_NONE 0x7fffffff
wf_tensor *wf_argmax(wf_tensor *x, int dim, bool keepdim);
wf_tensor *wf_argmin(wf_tensor *x, int dim, bool keepdim);
wf_tensor *wf_logsumexp(wf_tensor *x, const int *dims, int ndims, bool keepdim);
/* p-norm: p = 2, 1, INFINITY, any p > 0. */
wf_tensor *wf_norm(wf_tensor *x, double p, const int *dims, int ndims, bool keepdim);
/* convenience: sum of everything / mean of everything (0-dim) */
wf_tensor *wf_sum_all(wf_tensor *x);
wf_tensor *wf_mean_all(wf_tensor *x);

/* ---------------------------------------------------------------- linear algebra */
/* torch.matmul semantics: 1-D/2-D/batched with broadcasting of batch dims. */
wf_tensor *wf_matmul(wf_tensor *a, wf_tensor *b);
wf_tensor *wf_bmm(wf_tensor *a, wf_tensor *b);         /* [B,n,k] @ [B,k,m] */
/* x @ w^T + b (torch.nn.functional.linear); b may be NULL. x: [..., in], w: [out, in]. */
wf_tensor *wf_linear(wf_tensor *x, wf_tensor *w, wf_tensor *b);
/* gelu(x @ w^T + b) in one op (Linear then GELU, as in a transformer's MLP): where the device
 * has the epilogue (CUDA), the GEMM without bias then one fused bias + GELU kernel, and a fused
 * backward; on CUDA in bf16 / f16 the tanh form runs inside the GEMM (cuBLASLt's GELU epilogue;
 * WEFT_NO_GELU_EPILOGUE=1 turns that off); elsewhere, or without a bias, exactly
 * wf_gelu(wf_linear(x, w, b), approximate). */
wf_tensor *wf_linear_gelu(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_gelu_approx approximate);
/* A transformer's MLP, linear(gelu(linear(x, w1, b1)), w2, b2), that keeps less for backward
 * (flash-attn's FusedMLP with checkpoint_lvl=1): the GELU's output, the second Linear's input,
 * is not saved but made again from the GELU's input in backward, one elementwise pass; that
 * saves rows * hidden elements per call (GPT-2 124M at 16 x 1024 tokens: 100 MB a layer in
 * bf16). The same values as the composed ops; the bias + GELU kernel where wf_linear_gelu
 * uses it, and for the tanh form on CUDA in bf16 / f16 the GELU inside the first GEMM's
 * epilogue (forward; the backward's DGELU_BGRAD epilogue only with WEFT_DGELU_EPILOGUE=1, as it
 * was slower on the H100). b1 and b2 may be NULL. x: [..., in], w1: [hidden, in], w2: [out,
 * hidden]. Returns a
 * new tensor (a result in the current scope, as any op's), or NULL with the error naming
 * wf_fused_mlp (a NULL x / w1 / w2, mismatched sizes or dtypes, a bad approximate).
 *   wf_tensor *y = wf_fused_mlp(x, fc_w, fc_b, proj_w, proj_b, WF_GELU_NONE);   (new tensor) */
wf_tensor *wf_fused_mlp(wf_tensor *x, wf_tensor *w1, wf_tensor *b1, wf_tensor *w2, wf_tensor *b2,
                        wf_gelu_approx approximate);

/* ---------------------------------------------------------------- softmax family */
wf_tensor *wf_softmax(wf_tensor *x, int dim);
wf_tensor *wf_log_softmax(wf_tensor *x, int dim);

/* ---------------------------------------------------------------- indexing and joining */
wf_tensor *wf_gather(wf_tensor *x, int dim, wf_tensor *index);
/* out = x.clone(); out.scatter_add_(dim, index, src) */
wf_tensor *wf_scatter_add(wf_tensor *x, int dim, wf_tensor *index, wf_tensor *src);
wf_tensor *wf_index_select(wf_tensor *x, int dim, wf_tensor *index);
/* weight[indices]: indices any shape (i64/i32), result [*indices.shape, dim]. */
wf_tensor *wf_embedding(wf_tensor *weight, wf_tensor *indices);
wf_tensor *wf_cat(wf_tensor *const *ts, int n, int dim);
wf_tensor *wf_stack(wf_tensor *const *ts, int n, int dim);
/* Views of pieces of size split_size (last may be smaller). Writes up to max pieces into out;
 * returns the number of pieces, or a negative code (WF_EINVAL if max is too small). */
int wf_split(wf_tensor *x, int64_t split_size, int dim, wf_tensor **out, int max);
int wf_chunk(wf_tensor *x, int chunks, int dim, wf_tensor **out, int max);

/* ---------------------------------------------------------------- convolution and pooling */
typedef struct wf_conv2d_opts {
    int stride[2];    /* 0 = 1 */
    int padding[2];
    int dilation[2];  /* 0 = 1 */
    int groups;       /* 0 = 1 */
} wf_conv2d_opts;
/* x [N,C,H,W], w [O, C/groups, kh, kw], b [O] or NULL; opts NULL = defaults. */
wf_tensor *wf_conv2d(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *opts);
typedef struct wf_pool2d_opts {
    int kernel[2];
    int stride[2];    /* 0 = kernel */
    int padding[2];
    int dilation[2];  /* 0 = 1 (max pool only) */
    bool ceil_mode;
    bool count_include_pad_false; /* avg pool: PyTorch default counts padding; set to exclude */
} wf_pool2d_opts;
wf_tensor *wf_max_pool2d(wf_tensor *x, const wf_pool2d_opts *opts);
wf_tensor *wf_avg_pool2d(wf_tensor *x, const wf_pool2d_opts *opts);
/* output [N,C,oh,ow], PyTorch's adaptive bins */
wf_tensor *wf_adaptive_avg_pool2d(wf_tensor *x, int64_t oh, int64_t ow);

/* ---------------------------------------------------------------- printing */
/* Print like PyTorch: tensor([[1., 2.], ...], dtype=..., grad_fn=<...>). Returns 0 or a code. */
int wf_fprint(FILE *f, const wf_tensor *t);
int wf_print(const wf_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
