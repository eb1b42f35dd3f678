/* tensor/cuda/cuda_stub.c: the public API of weft/cuda.h in builds without CUDA.
 * Compiled in every build (tensor/meson.build lists it unconditionally); empty when
 * WEFT_HAVE_CUDA is defined, where tensor/cuda/cuda_kernels.c defines these. */
#include "../tensor_impl.h"
#include "weft_config.h"
#include "weft/cuda.h"

#include <string.h>

#ifndef WEFT_HAVE_CUDA
int wf_cuda_memory_stats(int device, wf_memory_stats *out) {
    if (out) memset(out, 0, sizeof *out);
    return wf__error(WF_EDEVICE, "wf_cuda_memory_stats: cuda:%d is not available (weft was built without CUDA)",
                     device);
}
void wf_cuda_empty_cache(void) {}
int wf_cuda_synchronize(int device) {
    return wf__error(WF_ENOTSUP, "wf_cuda_synchronize: cuda:%d is not available (weft was built without CUDA)",
                     device);
}
void wf_cuda_set_tf32(bool enabled) { (void)enabled; }
bool wf_cuda_get_tf32(void) { return false; }

/* CUDA graphs: nothing to capture without CUDA */
wf_cuda_graph *wf_cuda_graph_new(void) {
    wf__error(WF_ENOTSUP, "wf_cuda_graph_new: CUDA graphs need CUDA (weft was built without CUDA)");
    return NULL;
}
int wf_cuda_graph_capture_begin(wf_cuda_graph *g, wf_device device) {
    (void)g;
    return wf__error(WF_ENOTSUP, "wf_cuda_graph_capture_begin: cannot capture on device type %d (weft was built "
                     "without CUDA)", (int)device.type);
}
int wf_cuda_graph_capture_end(wf_cuda_graph *g) {
    (void)g;
    return wf__error(WF_ENOTSUP, "wf_cuda_graph_capture_end: weft was built without CUDA");
}
int wf_cuda_graph_replay(wf_cuda_graph *g) {
    (void)g;
    return wf__error(WF_ENOTSUP, "wf_cuda_graph_replay: weft was built without CUDA");
}
void wf_cuda_graph_free(wf_cuda_graph *g) { (void)g; }
int wf_cuda_graph_pool_stats(const wf_cuda_graph *g, wf_memory_stats *out) {
    (void)g;
    if (out) memset(out, 0, sizeof *out);
    return wf__error(WF_ENOTSUP, "wf_cuda_graph_pool_stats: weft was built without CUDA");
}
bool wf_cuda_is_capturing(int device) { (void)device; return false; }
#else
typedef int wf__cuda_stub_unused;
#endif
