/* autograd/backward.h: backward functions of the tensor ops, one file per op family.
 * Front-ends in tensor/ops_*.c pass these to wf__record. */
#ifndef WEFT_BACKWARD_H
#define WEFT_BACKWARD_H

#include "autograd_impl.h"

/* backward_view.c: views */
int wf__view_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);      /* reshape back */
int wf__permute_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__expand_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
int wf__slice_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);     /* narrow/slice/select */

#endif
