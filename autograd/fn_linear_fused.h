/* autograd/fn_linear_fused.h: the chunked linear + cross-entropy of fn_linear_fused.c, for
 * nn/linear_cross_entropy.c (wf_linear_cross_entropy), which checks and autocasts the
 * arguments first. Not in the minimal preset. */
#ifndef WEFT_FN_LINEAR_FUSED_H
#define WEFT_FN_LINEAR_FUSED_H

#include "../tensor/tensor_impl.h"

/* h [N, C], w [V, C], b [V] or NULL (one floating dtype), targets i64 [N], all checked;
 * reduction in wf_reduction's numbers (0 mean, 1 sum, 2 none); chunk_rows 0 = automatic;
 * the loss in out_dt, its node recorded. */
wf_tensor *wf__linear_cross_entropy(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, int64_t ignore_index,
                                    double label_smoothing, int reduction, int64_t chunk_rows, wf_dtype out_dt);

/* Rows per chunk for N rows of V logits: chunk_rows when > 0, else as few equal chunks
 * (ceil(N / chunks) rows) as keep a chunk's logits under 2^28 elements. */
int64_t wf__lce_chunk_rows(int64_t N, int64_t V, int64_t chunk_rows);

#endif
