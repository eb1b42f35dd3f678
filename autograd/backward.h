/* autograd/backward.h: backward functions of the tensor ops, one file per op family.
 * Front-ends in tensor/ops_*.c pass these to wf__record. */
#ifndef WEFT_BACKWARD_H
#define WEFT_BACKWARD_H

#include "autograd_impl.h"

/* backward_binary.c */
int wf__add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__sub_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__mul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__div_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__pow_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__minmax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__where_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__scalar_op_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* backward_reduce.c (mean, var, logsumexp are compositions: no node of their own) */
int wf__sum_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__amax_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__norm_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* backward_view.c: views */
int wf__view_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);      /* reshape back */
int wf__permute_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__expand_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__slice_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);     /* narrow/slice/select */

#endif
