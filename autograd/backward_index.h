/* autograd/backward_index.h: backward functions of the softmax family and of the indexing
 * and joining ops (tensor/ops_softmax.c, tensor/ops_index.c). Implemented in
 * autograd/backward_index.c. What each node stores is listed with its function. */
#ifndef WEFT_BACKWARD_INDEX_H
#define WEFT_BACKWARD_INDEX_H

#include "autograd_impl.h"

/* gather: n->i[0] = dim; saved 0 = index. Input 0 = x. gx = zeros(x).scatter_add(dim, index, gy). */
int wf__gather_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* scatter_add: n->i[0] = dim; saved 0 = index. Inputs x, src: gx = gy, gsrc = gy.gather(dim, index)
 * (zero outside index's extent when src is larger than index). */
int wf__scatter_add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* index_select: n->i[0] = dim; saved 0 = index (1-D). gx = zeros(x).index_add(dim, index, gy). */
int wf__index_select_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* embedding: saved 0 = the indices flattened to 1-D [N]. Input 0 = weight [V, D]:
 * gw = zeros(weight).index_add(0, indices, gy viewed as [N, D]) (repeated indices add up). */
int wf__embedding_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* cat: n->i[0] = dim; input sizes along dim come from n->in_meta. gx[i] = slice i of gy. */
int wf__cat_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* stack: n->i[0] = dim (in the output). gx[i] = gy selected at i along dim. */
int wf__stack_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);

#endif
