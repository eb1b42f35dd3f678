/* precision/precision_impl.h: private helpers shared by precision/ sources. */
#ifndef WEFT_PRECISION_IMPL_H
#define WEFT_PRECISION_IMPL_H

#include "../tensor/tensor_impl.h"
#include "weft/precision.h"

/* Multiply every gradient of opt's parameters by inv in place (inv == 1: only look) and
 * report whether any is inf/NaN: returns 1 (and the first offender's group/index when the
 * pointers are not NULL), 0, or a negative code. */
int wf__grads_nonfinite(wf_optimizer *opt, double inv, int *bad_group, int *bad_index);
/* Has s unscaled opt's gradients since the last update? */
bool wf__grad_scaler_unscaled(wf_grad_scaler *s, wf_optimizer *opt);

#endif
