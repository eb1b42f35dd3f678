/* autograd/backward_conv.h: backward functions of conv2d and the 2-D pools
 * (tensor/ops_conv.c records them; autograd/backward_conv.c implements them). */
#ifndef WEFT_BACKWARD_CONV_H
#define WEFT_BACKWARD_CONV_H

#include "autograd_impl.h"

/* y = conv2d(x, w, b): inputs x [N,C,H,W], w [O,C/g,kh,kw], optional b [O]; saved 0 = x,
 * 1 = w; n->i[0..6] = stride h/w, padding h/w, dilation h/w, groups. */
int wf__conv2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* max pool: saved 0 = argmax (i64, the output's shape, flat index in H*W) */
int wf__max_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* avg pool: n->i[0..5] = kernel h/w, stride h/w, padding h/w; n->i[6] = count_include_pad */
int wf__avg_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* adaptive avg pool on the CPU (bins that need not divide the input): no saved tensors */
int wf__adaptive_avg_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);

/* The CPU loops of adaptive average pooling (tensor/ops_conv.c), on contiguous f32/f64
 * tensors whose last two dims are the plane: y = pool(x), or gx = pool^T(gy) (gx fully
 * written). PyTorch's bins: start = floor(i*H/oh), end = ceil((i+1)*H/oh). */
int wf__cpu_adaptive_avg_pool2d(wf_tensor *y, const wf_tensor *x);
int wf__cpu_adaptive_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy);

#endif
