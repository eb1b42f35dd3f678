/* tests/ops/op_table.h: the op harness's table (in the spirit of PyTorch's OpInfo and ggml's
 * test-backend-ops). One row per public op: an adapter with wf_gradcheck's signature, a
 * sample generator, the dtypes the op takes, a tolerance factor and how many of its inputs are
 * differentiated. tests/ops/test_ops.c runs every row on every device and dtype.
 *
 * Plain C without Check, so the GPU machine (no Check library) builds it too. */
#ifndef WEFT_TESTS_OP_TABLE_H
#define WEFT_TESTS_OP_TABLE_H

#include "weft/weft.h"

#include <stdbool.h>

enum { OP_MAXIN = 5, OP_MAXSAMPLES = 16 };

/* sample flags */
enum {
    S_GC = 1,        /* small and smooth: gradcheck (CPU, f64) and backward on every device */
    S_BW = 2,        /* backward on every device against the CPU's (no finite differences: large) */
    S_SPECIAL = 4,   /* NaN/inf values: floating dtypes only */
};

/* One set of inputs. Floating inputs are f64 CPU tensors (the driver rounds them to the dtype
 * under test); inputs whose bit is set in `keep` (indices, targets, masks) keep their dtype.
 * Every tensor here is owned by the driver's scope. */
typedef struct op_sample {
    const char *desc;             /* "broadcast", "transposed", ... (static) */
    wf_tensor *in[OP_MAXIN];
    int n;
    unsigned keep;
    unsigned flags;
} op_sample;

typedef wf_tensor *(*op_fn)(wf_tensor *const *in, int n, void *ud);   /* = wf_gradcheck_fn */
typedef int (*op_gen)(op_sample *s, int max);                         /* returns the count */

typedef struct op_row {
    const char *name;   /* the public function, with a variant: "sum(dim 1)" */
    op_fn fn;
    op_gen gen;
    unsigned dtypes;    /* WF_DTM() mask of the dtypes the floating inputs take */
    int ngrad;          /* inputs 0..ngrad-1 are differentiated; 0: not differentiable */
    double tol;         /* multiplies the per-dtype tolerance (1: elementwise) */
} op_row;

#define DTM(dt) (1u << (dt))
#define DT_FLOAT (DTM(WF_F64) | DTM(WF_F32) | DTM(WF_F16) | DTM(WF_BF16))
#define DT_INT (DTM(WF_I64) | DTM(WF_I32))
#define DT_ALL (DT_FLOAT | DT_INT)

/* The dtype run_sample is testing (set before each sample's forward and backward): a row whose
 * op rounds an intermediate to its inputs' dtype (add_layer_norm's s) rounds its f64
 * reference's likewise, so the reference computes the op's own semantics. */
extern wf_dtype op_dtype_under_test;

extern const op_row op_rows[];
extern const int op_nrows;

/* Checks of exact PyTorch semantics (NaN propagation, promotion, gradients at the edges) on
 * one device: each returns the number of failures after printing one FAIL line per failure,
 * and adds its checks to *checks. */
typedef int (*op_expect_fn)(wf_device dev, int *checks);
typedef struct op_expect {
    const char *name;
    op_expect_fn fn;
} op_expect;
extern const op_expect op_expects[];
extern const int op_nexpects;

#endif
