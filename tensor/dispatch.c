/* tensor/dispatch.c: the per-device kernel tables. */
#include "weft_config.h"
#include "tensor/meta_init.h"
#include "tensor_impl.h"

#include <stddef.h>
#include <string.h>

#ifdef WEFT_HAVE_CUDA
int wf__cuda_count(void);   /* tensor/cuda/cuda_device.c */
#endif

int wf_cuda_device_count(void) {
#ifdef WEFT_HAVE_CUDA
    return wf__cuda_count();
#else
    return 0;
#endif
}

/* The meta device holds shapes only: allocation gives a non-NULL dummy and every kernel that
 * computes does nothing, so ops run as shape inference (PyTorch's meta tensors). Reading the
 * values out is the one thing that cannot work: to_host is an error. The optional fused
 * kernels stay NULL (the front-ends then compose the op). */
static char meta_dummy[64];
static void *meta_alloc(wf_device d, size_t n) { (void)d; (void)n; return meta_dummy; }
static void meta_free(wf_device d, void *p, size_t n) { (void)d; (void)p; (void)n; }
static int m_copy(wf_tensor *y, const wf_tensor *x) { (void)y; (void)x; return 0; }
/* no values on meta, but a fill is an initialization FSDP may replay (tensor/meta_init.h) */
static int m_fill(wf_tensor *y, double v) { wf__meta_note_fill(y, v); return 0; }
static int m_to_host(void *dst, const wf_tensor *x) {
    (void)dst; (void)x;
    return wf__error(WF_ENOTSUP, "a meta tensor has no data to copy out (create it on a real device)");
}
static int m_from_host(wf_tensor *y, const void *src) { (void)y; (void)src; return 0; }
static int m_unary(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b) {
    (void)op; (void)y; (void)x; (void)a; (void)b; return 0;
}
static int m_unary_bw(wf_unary_op op, wf_tensor *gx, const wf_tensor *gy, const wf_tensor *x,
                      const wf_tensor *y, double a, double b) {
    (void)op; (void)gx; (void)gy; (void)x; (void)y; (void)a; (void)b; return 0;
}
static int m_binary(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b) {
    (void)op; (void)y; (void)a; (void)b; return 0;
}
static int m_binary_scalar(wf_binary_op op, wf_tensor *y, const wf_tensor *a, double s, bool r) {
    (void)op; (void)y; (void)a; (void)s; (void)r; return 0;
}
static int m_where(wf_tensor *y, const wf_tensor *c, const wf_tensor *a, const wf_tensor *b) {
    (void)y; (void)c; (void)a; (void)b; return 0;
}
static int m_axpy(wf_tensor *a, const wf_tensor *b, double al) { (void)a; (void)b; (void)al; return 0; }
static int m_reduce(wf_reduce_op op, wf_tensor *y, const wf_tensor *x, uint32_t m, double p) {
    (void)op; (void)y; (void)x; (void)m; (void)p; return 0;
}
static int m_arg_reduce(bool mx, wf_tensor *y, const wf_tensor *x, int dim) {
    (void)mx; (void)y; (void)x; (void)dim; return 0;
}
static int m_rand(wf_tensor *y, uint64_t s, uint64_t o, double a, double b) {
    (void)y; (void)s; (void)o; (void)a; (void)b; return 0;
}
static int m_rand_int(wf_tensor *y, uint64_t s, uint64_t o, int64_t a, int64_t b) {
    (void)y; (void)s; (void)o; (void)a; (void)b; return 0;
}
static int m_bernoulli(wf_tensor *y, uint64_t s, uint64_t o, const wf_tensor *pt, double p) {
    (void)y; (void)s; (void)o; (void)pt; (void)p; return 0;
}
static int m_gemm(wf_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double al,
                  const void *A, int64_t lda, int64_t sA, const void *B, int64_t ldb, int64_t sB,
                  double be, void *C, int64_t ldc, int64_t sC, int64_t batch, wf_device dev) {
    (void)dt; (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)al; (void)A; (void)lda; (void)sA;
    (void)B; (void)ldb; (void)sB; (void)be; (void)C; (void)ldc; (void)sC; (void)batch; (void)dev;
    return 0;
}
static int m_softmax(wf_tensor *y, const wf_tensor *x, bool lg, double s, double os, int64_t c) {
    (void)y; (void)x; (void)lg; (void)s; (void)os; (void)c; return 0;
}
static int m_softmax_bw(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *y, bool lg, double s, double os) {
    (void)s; (void)os;
    (void)gx; (void)gy; (void)y; (void)lg; return 0;
}
static int m_gather(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *i) {
    (void)y; (void)x; (void)dim; (void)i; return 0;
}
static int m_scatter(wf_tensor *y, int dim, const wf_tensor *i, const wf_tensor *src) {
    (void)y; (void)dim; (void)i; (void)src; return 0;
}
static int m_col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W, int kh, int kw,
                 int sh, int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    (void)col; (void)x; (void)dt; (void)C; (void)H; (void)W; (void)kh; (void)kw; (void)sh; (void)sw;
    (void)ph; (void)pw; (void)dh; (void)dw; (void)oh; (void)ow; (void)dev;
    return 0;
}
static int m_max_pool(wf_tensor *y, wf_tensor *am, const wf_tensor *x, const int k[2], const int s[2],
                      const int p[2], const int d[2]) {
    (void)y; (void)am; (void)x; (void)k; (void)s; (void)p; (void)d; return 0;
}
static int m_max_pool_bw(wf_tensor *gx, const wf_tensor *gy, const wf_tensor *am) {
    (void)gx; (void)gy; (void)am; return 0;
}
static int m_avg_pool(wf_tensor *y, const wf_tensor *x, const int k[2], const int s[2], const int p[2], bool c) {
    (void)y; (void)x; (void)k; (void)s; (void)p; (void)c; return 0;
}
static int m_avg_pool_bw(wf_tensor *gx, const wf_tensor *gy, const int k[2], const int s[2], const int p[2],
                         bool c) {
    (void)gx; (void)gy; (void)k; (void)s; (void)p; (void)c; return 0;
}
/* atomic: a backward may run on another thread than its forward */
static _Atomic int64_t meta_flops;
void wf__meta_flops_add(int64_t flops) { meta_flops += flops; }
int64_t wf__meta_flops(void) { return meta_flops; }
/* meta computes shapes only: front-ends skip its (absent) kernels, so it "supports" every
 * dtype of every op the reference backend (the CPU) has, and composes the others as the CPU does */
static const wf_op_support meta_support = {
#define WF_UNARY_OP(id, name, cpu, cuda) [WF_U_##id] = WF_DTM_ALL,
    .unary = {
#include "ops.def"
    },
#define WF_BINARY_OP(id, name, cpu, cuda) [WF_B_##id] = WF_DTM_ALL,
    .binary = {
#include "ops.def"
    },
#define WF_REDUCE_OP(id, name, cpu, cuda) [WF_R_##id] = WF_DTM_ALL,
    .reduce = {
#include "ops.def"
    },
#define WF_KERNEL_OP(id, name, field, cpu, cuda) [WF_K_##id] = (cpu) ? WF_DTM_ALL : WF_DTM_NONE,
    .kernel = {
#include "ops.def"
    },
};
static const wf_kernels meta_kernels = {
    .name = "meta", .alloc = meta_alloc, .free = meta_free, .support = &meta_support, .copy = m_copy, .fill = m_fill,
    .to_host = m_to_host, .from_host = m_from_host, .unary = m_unary, .unary_backward = m_unary_bw,
    .binary = m_binary, .binary_scalar = m_binary_scalar, .where = m_where, .axpy = m_axpy,
    .reduce = m_reduce, .arg_reduce = m_arg_reduce, .rand_uniform = m_rand, .rand_normal = m_rand,
    .rand_int = m_rand_int, .bernoulli = m_bernoulli, .gemm = m_gemm, .softmax = m_softmax,
    .softmax_backward = m_softmax_bw, .gather = m_gather, .scatter_add = m_scatter,
    .index_select = m_gather, .index_add = m_scatter, .im2col = m_col, .col2im = m_col,
    .max_pool2d = m_max_pool, .max_pool2d_backward = m_max_pool_bw, .avg_pool2d = m_avg_pool,
    .avg_pool2d_backward = m_avg_pool_bw,
};

_Atomic unsigned wf__op_calls[2][WF_OP_TOTAL];   /* tensor_impl.h */

/* ---------------------------------------------------------------- op names (from ops.def) */

const char *const wf__unary_op_names[WF_U_COUNT] = {
#define WF_UNARY_OP(id, name, cpu, cuda) [WF_U_##id] = name,
#include "ops.def"
};
const char *const wf__binary_op_names[WF_B_COUNT] = {
#define WF_BINARY_OP(id, name, cpu, cuda) [WF_B_##id] = name,
#include "ops.def"
};
const char *const wf__reduce_op_names[WF_R_COUNT] = {
#define WF_REDUCE_OP(id, name, cpu, cuda) [WF_R_##id] = name,
#include "ops.def"
};
const char *const wf__kernel_op_names[WF_K_COUNT] = {
#define WF_KERNEL_OP(id, name, field, cpu, cuda) [WF_K_##id] = name,
#include "ops.def"
};

const char *wf__op_name(wf_op_family fam, int op) {
    switch (fam) {
    case WF_OPF_UNARY: return op >= 0 && op < WF_U_COUNT ? wf__unary_op_names[op] : NULL;
    case WF_OPF_BINARY: return op >= 0 && op < WF_B_COUNT ? wf__binary_op_names[op] : NULL;
    case WF_OPF_REDUCE: return op >= 0 && op < WF_R_COUNT ? wf__reduce_op_names[op] : NULL;
    case WF_OPF_KERNEL: return op >= 0 && op < WF_K_COUNT ? wf__kernel_op_names[op] : NULL;
    default: return NULL;
    }
}

/* where each kernel-family op's entry sits in wf_kernels */
static const size_t kernel_op_offset[WF_K_COUNT] = {
#define WF_KERNEL_OP(id, name, field, cpu, cuda) [WF_K_##id] = offsetof(wf_kernels, field),
#include "ops.def"
};

bool wf__kernel_op_present(const wf_kernels *k, wf_kernel_op op) {
    if (!k || (int)op < 0 || op >= WF_K_COUNT) return false;
    void (*fn)(void);
    memcpy(&fn, (const char *)k + kernel_op_offset[op], sizeof fn);   /* every entry is a function pointer */
    return fn != NULL;
}

/* cold path: only reached when a front-end is about to fail */
int wf__no_kernel(const char *fn, wf_op_family fam, int op, wf_dtype dt, wf_device dev) {
    char d[32];
    const char *name = wf__op_name(fam, op);
    return wf__error(WF_ENOTSUP, "%s: no kernel for %s on %s (%s)", fn, wf_dtype_name(dt),
                     wf_device_str(dev, d, sizeof d), name ? name : "?");
}

bool wf__device_supports(wf_device dev, wf_op_family fam, int op, wf_dtype dt) {
    const wf_kernels *k = wf__kernels(dev);
    if (!k || !wf__op_name(fam, op) || (int)dt <= 0 || dt >= WF_DTYPE_COUNT) return false;
    return wf__supports(k, fam, op, dt);
}

static const wf_kernels *cuda_for_test;
void wf__set_cuda_kernels_for_test(const wf_kernels *k) { cuda_for_test = k; }

const wf_kernels *wf__kernels(wf_device dev) {
    switch (dev.type) {
    case WF_DEV_CPU: return &wf__cpu_kernels;
    case WF_DEV_META: return &meta_kernels;
    case WF_DEV_CUDA:
        if (cuda_for_test) return cuda_for_test;
#ifdef WEFT_HAVE_CUDA
        if (dev.index >= 0 && dev.index < wf__cuda_count()) return &wf__cuda_kernels;
        wf__error(WF_EDEVICE, "cuda:%d is not available (%d CUDA device(s) found)", dev.index, wf__cuda_count());
#else
        wf__error(WF_ENOTSUP, "cuda:%d requested but this build of weft has no CUDA support "
                  "(rebuild with -Dcuda=enabled)", dev.index);
#endif
        return NULL;
    default:
        wf__error(WF_EDEVICE, "invalid device type %d", dev.type);
        return NULL;
    }
}
