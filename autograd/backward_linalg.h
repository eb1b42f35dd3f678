/* autograd/backward_linalg.h: backward functions of wf_matmul, wf_bmm and wf_linear
 * (tensor/ops_matmul.c records them; autograd/backward_linalg.c implements them). */
#ifndef WEFT_BACKWARD_LINALG_H
#define WEFT_BACKWARD_LINALG_H

#include "autograd_impl.h"

/* y = a @ b with a [..., m, k], b [..., k, n] (both at least 2-D, batch dims broadcast).
 * saved 0 = a, 1 = b. ga = gy @ b^T, gb = a^T @ gy, each summed back to its input's shape. */
int wf__matmul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);
/* y = x @ w^T (+ b): inputs x [..., in], w [out, in], optional b [out]; saved 0 = x, 1 = w.
 * gx = gy @ w, gw = gy2^T @ x2 (rows flattened), gb = sum of gy over all but the last dim. */
int wf__linear_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);

#endif
