/* tensor/ops_conv.h: helpers shared by the conv and pool raw ops (tensor/ops_conv.c) and
 * their backward (tensor/ops_conv_backward.c). Not for other files. */
#ifndef WEFT_OPS_CONV_H
#define WEFT_OPS_CONV_H

#include "ops_raw.h"

/* The CPU loops of adaptive average pooling (tensor/ops_conv.c), on contiguous f32/f64
 * tensors whose last two dims are the plane: y = pool(x), or gx = pool^T(gy) (gx fully
 * written). PyTorch's bins: start = floor(i*H/oh), end = ceil((i+1)*H/oh). */
int wf__cpu_adaptive_avg_pool2d(wf_tensor *y, const wf_tensor *x);
int wf__cpu_adaptive_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy);

/* The col buffer's bound in elements: 16M, or the environment's WF_CONV_CHUNK_ELEMS (read
 * once; the op harness sets it small so its samples run several chunks). tensor/ops_conv.c. */
int64_t wf__conv_chunk_elems(void);
/* Images per chunk of an im2col-based conv: the col buffer [C*kh*kw, chunk*oh*ow] stays
 * within wf__conv_chunk_elems() (per_image = C*kh*kw*oh*ow), at least one image, at most N.
 * Smaller chunks that keep col in cache were measured slower with 8 threads (the
 * Fashion-MNIST CNN: 8.6 ms/step whole-batch, 9.0-9.5 at 1M elements, 11.5-12.8 at 256K):
 * the GEMMs lose more than the memory traffic saves. */
static inline int64_t wf__conv_chunk(int64_t N, int64_t per_image) {
    int64_t chunk = per_image > 0 ? wf__conv_chunk_elems() / per_image : N;
    if (chunk < 1) chunk = 1;
    return chunk > N ? N : chunk;
}
/* pointer to t's first element (host or device memory: arithmetic only) */
static inline char *wf__conv_data(const wf_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)wf_dtype_size(t->dtype);
}
/* t itself if contiguous, else a contiguous copy (no autograd; joins the scope) */
static inline wf_tensor *wf__conv_contig(wf_tensor *t, const wf_kernels *K) {
    if (wf_is_contiguous(t)) return t;
    wf_tensor *c = wf__empty(t->shape, t->ndim, t->dtype, t->device);
    if (!c) return NULL;
    if (t->device.type != WF_DEV_META && K->copy(c, t)) return NULL;
    return c;
}
/* a 3-D contiguous tensor seen as [1, C, H, W] (kernels expect 4-D); a view in the scope */
static inline wf_tensor *wf__conv_as4d(wf_tensor *t) {
    if (t->ndim == 4) return t;
    int64_t shape[4] = { 1, t->shape[0], t->shape[1], t->shape[2] }, stride[4];
    wf__contiguous_strides(4, shape, stride);
    return wf__view_of(t, 4, shape, stride, t->offset);
}

#endif
