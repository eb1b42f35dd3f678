/* nn/nn_impl.h: private helpers shared by the nn/ sources. */
#ifndef WEFT_NN_IMPL_H
#define WEFT_NN_IMPL_H

#include "weft/nn.h"
#include "../tensor/tensor_impl.h"
#include "../autograd/autograd_api.h"   /* nn/ builds on autograd: its public API, fused front-ends, autocast */

#define WF_MODULE_MAGIC 0x6d6f646cu   /* "modl" */

/* Allocate a module struct of size bytes (owned memory), type name and vtable. */
void *wf__module_new(size_t size, const char *type_name, const wf_module_vtable *vt);
/* "Linear(in_features=4, out_features=3)" into buf (for messages). */
char *wf__module_desc(const wf_module *m, char *buf, size_t n);
/* Register a fresh parameter / buffer (t may be NULL after a failed creation: the first
 * error is kept). Returns 0 or a code; t is released on failure. */
int wf__param(wf_module *m, const char *name, wf_tensor *t);
int wf__buffer(wf_module *m, const char *name, wf_tensor *t);
/* A scalar tensor with t's dtype and device. */
wf_tensor *wf__scalar_like(const wf_tensor *t, double v);
/* An alias of x (new handle, gradient flows through). */
wf_tensor *wf__alias(wf_tensor *x);
/* wf_module_forward's pre hooks, forward and post hooks, never checkpointed (m valid). */
wf_tensor *wf__module_forward_plain(wf_module *m, wf_tensor *x);
/* torch.finfo(dt).eps */
double wf__dtype_eps(wf_dtype dt);

#endif
