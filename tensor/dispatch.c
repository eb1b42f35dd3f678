/* tensor/dispatch.c: the per-device kernel tables. */
#include "weft_config.h"
#include "tensor_impl.h"

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
static const wf_kernels meta_kernels = { .name = "meta", .alloc = meta_alloc, .free = meta_free };

const wf_kernels *wf__kernels(wf_device dev) {
    switch (dev.type) {
    case WF_DEV_CPU: return &wf__cpu_kernels;
    case WF_DEV_META: return &meta_kernels;
    case WF_DEV_CUDA:
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
