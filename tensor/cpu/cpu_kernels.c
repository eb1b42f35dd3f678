/* tensor/cpu/cpu_kernels.c: the CPU kernel table. */
#include "cpu_kernels.h"

/* the unequal-bin adaptive pool loops live beside their front-end (tensor/ops_conv.c) */
int wf__cpu_adaptive_avg_pool2d(wf_tensor *y, const wf_tensor *x);
int wf__cpu_adaptive_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy);

/* the cpu column of tensor/ops.def */
static const wf_op_support cpu_support = {
#define WF_UNARY_OP(id, name, cpu, cuda) [WF_U_##id] = (cpu),
    .unary = {
#include "../ops.def"
    },
#define WF_BINARY_OP(id, name, cpu, cuda) [WF_B_##id] = (cpu),
    .binary = {
#include "../ops.def"
    },
#define WF_REDUCE_OP(id, name, cpu, cuda) [WF_R_##id] = (cpu),
    .reduce = {
#include "../ops.def"
    },
#define WF_KERNEL_OP(id, name, field, cpu, cuda) [WF_K_##id] = (cpu),
    .kernel = {
#include "../ops.def"
    },
};

const wf_kernels wf__cpu_kernels = {
    .name = "cpu",
    .alloc = wf__cpu_alloc,
    .free = wf__cpu_free,
    .copy = wf__cpu_copy,
    .fill = wf__cpu_fill,
    .to_host = wf__cpu_to_host,
    .from_host = wf__cpu_from_host,
    .unary = wf__cpu_unary,
    .unary_backward = wf__cpu_unary_backward,
    .binary = wf__cpu_binary,
    .binary_scalar = wf__cpu_binary_scalar,
    .where = wf__cpu_where,
    .axpy = wf__cpu_axpy,
    .reduce = wf__cpu_reduce,
    .arg_reduce = wf__cpu_arg_reduce,
    .rand_uniform = wf__cpu_rand_uniform,
    .rand_normal = wf__cpu_rand_normal,
    .rand_int = wf__cpu_rand_int,
    .bernoulli = wf__cpu_bernoulli,
    .gemm = wf__cpu_gemm,
    .gemm_epilogue = wf__cpu_gemm_epilogue,
    .gemm_acc = wf__cpu_gemm_acc,
    .softmax = wf__cpu_softmax,
    .softmax_backward = wf__cpu_softmax_backward,
#ifndef WEFT_MINIMAL   /* tensor/ops.def: the minimal preset composes them */
    .layer_norm_fwd = wf__cpu_layer_norm_fwd,
    .layer_norm_bwd = wf__cpu_layer_norm_bwd,
    .add_layer_norm_fwd = wf__cpu_add_layer_norm_fwd,
    .add_layer_norm_bwd = wf__cpu_add_layer_norm_bwd,
#endif
    .gather = wf__cpu_gather,
    .scatter_add = wf__cpu_scatter_add,
    .index_select = wf__cpu_index_select,
    .index_add = wf__cpu_index_add,
    .im2col = wf__cpu_im2col,
    .col2im = wf__cpu_col2im,
    .im2col_batch = wf__cpu_im2col_batch,
    .col2im_batch = wf__cpu_col2im_batch,
    .max_pool2d = wf__cpu_max_pool2d,
    .max_pool2d_backward = wf__cpu_max_pool2d_backward,
    .avg_pool2d = wf__cpu_avg_pool2d,
    .avg_pool2d_backward = wf__cpu_avg_pool2d_backward,
    .adaptive_avg_pool2d = wf__cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = wf__cpu_adaptive_avg_pool2d_backward,
    .support = &cpu_support,
};
