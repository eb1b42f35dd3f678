/* tensor/dispatch.c: the per-device kernel tables. */
#include "weft_config.h"
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

/* The meta device holds shapes only: allocation gives a non-NULL dummy, kernels do nothing. */
static char meta_dummy[64];
static void *meta_alloc(wf_device d, size_t n) { (void)d; (void)n; return meta_dummy; }
static void meta_free(wf_device d, void *p, size_t n) { (void)d; (void)p; (void)n; }
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
    .name = "meta", .alloc = meta_alloc, .free = meta_free, .support = &meta_support,
};

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
