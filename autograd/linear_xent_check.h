/* autograd/linear_xent_check.h: wf_linear_cross_entropy's argument checks (linear_xent_check.c). */
#ifndef WEFT_LINEAR_XENT_CHECK_H
#define WEFT_LINEAR_XENT_CHECK_H

#include "../tensor/tensor_impl.h"
#include "weft/nn.h"

/* h [N, C] floating, weight [V, C] (V >= 1), bias [V] or NULL, targets int64 [N], one dtype
 * for the floating ones (after autocast), one device; chunk_rows >= 0; no class weights,
 * label_smoothing in [0, 1], reduction mean / sum / none; on the CPU every target in [0, V)
 * or ignore_index. 0 or a code, the message naming wf_linear_cross_entropy. */
int wf__linear_xent_check(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, const wf_cross_entropy_opts *o,
                          int64_t chunk_rows);

#endif
