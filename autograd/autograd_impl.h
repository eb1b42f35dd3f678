/* autograd/autograd_impl.h: graph nodes and the recording API used by op front-ends.
 *
 * How an op records itself (in its front-end, after computing y):
 *
 *     wf_node *n = wf__record("MulBackward", mul_backward, y, 2, (wf_tensor *[]){a, b});
 *     if (n) { wf__save(n, a); wf__save(n, b); }
 *
 * wf__record returns NULL (and records nothing) when grad mode is off or no input requires
 * grad, so the front-end's cost without autograd is one check. Its backward function:
 *
 *     static int mul_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
 *         wf_tensor *a = wf__saved(n, 0), *b = wf__saved(n, 1);
 *         if (!a || !b) return wf_error();           // modified in place since saved
 *         if (n->needs[0]) gx[0] = wf__reduce_to(wf_mul(gy[0], b), n->in_meta[0]);
 *         if (n->needs[1]) gx[1] = wf__reduce_to(wf_mul(gy[0], a), n->in_meta[1]);
 *         return 0;
 *     }
 *
 * Backward functions run with grad mode off inside the engine's scope: the tensors they
 * return are temporaries of that scope. gy[i] is never NULL (zeros are materialized).
 * gx[i] must have input i's shape (wf__reduce_to sums broadcast dims back).
 */
#ifndef WEFT_AUTOGRAD_IMPL_H
#define WEFT_AUTOGRAD_IMPL_H

#include "autograd_api.h"   /* weft/autograd.h and tensor/tensor_impl.h with it */

#define WF_NODE_INLINE 4

typedef int (*wf_backward_fn)(wf_node *n, wf_tensor *const *gy, wf_tensor **gx);

typedef struct wf_edge { wf_node *fn; int output_nr; } wf_edge;   /* fn owned */
typedef struct wf_meta {
    int ndim; int64_t shape[WF_MAX_DIMS]; wf_dtype dtype; wf_device device;
} wf_meta;
typedef struct wf_saved { wf_tensor *t; unsigned version; } wf_saved;  /* t owned (detached alias) */

/* A leaf's gradient hook: fn (plain) or ready_fn (may fail: its error ends the backward). */
struct wf_hook_entry { wf_grad_hook_fn fn; wf_grad_ready_hook_fn ready_fn; void *ud; int id; wf_hook_entry *next; };

struct wf_node {
    atomic_int refcount;
    const char *name;
    wf_backward_fn backward;
    void (*release)(wf_node *n);   /* optional: frees ctx extras */
    uint64_t seq;                  /* creation order: later nodes run first on ties */

    int n_inputs;
    wf_edge *next;                 /* per input: the node its gradient flows to (or NULL) */
    wf_meta *in_meta;              /* per input: shape/dtype/device of the input */
    bool *needs;                   /* per input: does it need a gradient */
    int n_outputs;
    wf_meta *out_meta;             /* per output, for zero-filling missing gradients */

    int n_saved, cap_saved;
    wf_saved *saved;

    /* small op parameters, free for the backward function's use */
    double f[4];
    int64_t i[8];
    void *ctx;                     /* extra state; freed by release() */

    wf_tensor *leaf;               /* AccumulateGrad nodes: the leaf (owned) */
    bool freed;                    /* saved tensors released after a non-retained backward */

    /* engine scratch */
    int deps;
    wf_tensor **grad_buf;
    int visit;

    wf_edge inline_next[WF_NODE_INLINE];
    wf_meta inline_in_meta[WF_NODE_INLINE];
    bool inline_needs[WF_NODE_INLINE];
    wf_meta inline_out_meta[1];
};

/* Is grad mode on and does any of the tensors require grad? */
bool wf__needs_grad(int n, wf_tensor *const *ts);
/* Record a node for y = op(inputs) if needed (see the comment at the top); sets y's grad_fn.
 * Returns the node (borrowed; y owns it) or NULL when nothing is recorded or on error. */
wf_node *wf__record(const char *name, wf_backward_fn fn, wf_tensor *y, int n_inputs,
                    wf_tensor *const *inputs);
/* wf__record for an op of several outputs: ys[o] gets output_nr o, and the backward's gy[o]
 * its gradient (zeros when that output went unused). */
wf_node *wf__record_outputs(const char *name, wf_backward_fn fn, wf_tensor *const *ys, int n_outputs, int n_inputs,
                           wf_tensor *const *inputs);
/* Save t for backward (a detached alias that remembers the storage version). Returns index,
 * or WF_ENOMEM. */
int wf__save(wf_node *n, wf_tensor *t);
/* y, a fresh cast of t made by a raw copy (no history, no other holder), gets the
 * ToCopyBackward that wf_to_dtype(t, y->dtype) would have given it, so a front-end that has
 * cast an operand for its kernel records that cast instead of making another. false (error
 * recorded, y unchanged) when recording ran out of memory. In fn_copy.c. */
bool wf__adopt_cast(wf_tensor *y, wf_tensor *t);
/* The dtype t was cast from when t is a ToCopyBackward cast of a wider floating dtype (an f32
 * parameter's bf16 copy under autocast: f32), else t's own dtype (WF_DTYPE_DEFAULT for NULL).
 * Read at record time: t's grad_fn then is the cast. In fn_copy.c. */
wf_dtype wf__autocast_source_dtype(const wf_tensor *t);

/* Linear weight gradients in the parameter's f32 (fn_matmul.c). Under autocast a Linear runs on
 * the bf16 / f16 copy of its f32 weight; its gradient made in bf16 would be rounded and then
 * cast to f32 by the copy's ToCopyBackward (a kernel of its own per weight). Instead the node
 * records, in n->i[WF__WGRAD_F32_SLOT], a bit per weight input (1 << input index) whose source
 * is f32 while it is half, and its backward makes that gradient with the f32-output GEMM
 * (wf__matmul_f32_raw) and returns it in f32: cast_backward passes it through, and the engine
 * sums it with any bf16 gradient of the same copy by promotion. WEFT_WGRAD_F32_OLD=1 (read
 * once): no bits set, today's bf16 gradient and cast (the A/B switch, bench/NOTES.md). */
#define WF__WGRAD_F32_SLOT 7
/* at record time: 1 << iw when w (input iw) wants its gradient in f32, else 0 */
int64_t wf__wgrad_f32_bit(const wf_tensor *w, int iw);
/* at backward: gx[iw], the weight gradient g2^T @ x2 (g2 [rows, out], x2 [rows, in]), in f32
 * when the node's bit for iw is set and both operands have the weight's half dtype, else in
 * the weight's dtype as wf_matmul + wf__reduce_to give it. NULL on error (recorded). */
wf_tensor *wf__linear_weight_grad(wf_node *n, int iw, wf_tensor *g2, wf_tensor *x2);
/* For op front-ends, after wf__record (n) and the saves (saved_ok: none failed): y, or NULL
 * once y is freed when a node was needed but recording or saving ran out of memory. A y
 * without its history would silently give its inputs no gradient. */
wf_tensor *wf__recorded(wf_tensor *y, wf_node *n, bool saved_ok, int n_inputs, wf_tensor *const *inputs);
/* The saved tensor i, or NULL with WF_EAUTOGRAD if it was modified in place since saved
 * or the graph was freed by an earlier backward. Borrowed. */
wf_tensor *wf__saved(wf_node *n, int i);
/* For a backward function: the gradient already waiting for input i (another use of the same
 * tensor delivered it first: a tied embedding's weight after the LM head), when the backward
 * may add its own gradient into it in place and leave gx[i] NULL: nothing else sees the buffer
 * (summable as the engine's own gradient sums are), it is contiguous with input i's shape,
 * dtype and device, and grad mode is off (no graph of the backward). NULL otherwise (then
 * return gx[i] as usual). Borrowed. Saves the zeros, the sum's read of both and its write. */
wf_tensor *wf__grad_sink(wf_node *n, int i);
/* Sum g over broadcast dims so it has meta's shape (and dtype). Returns g itself if equal. */
wf_tensor *wf__reduce_to(wf_tensor *g, const wf_meta *meta);
/* Fill meta from a tensor. */
void wf__meta_of(wf_meta *m, const wf_tensor *t);

/* Install autograd's wf__autograd table (tensor/tensor_impl.h); idempotent, cheap. Called
 * wherever autograd attaches a grad_fn or a hook to a tensor. */
void wf__autograd_install(void);

void wf__node_retain(wf_node *n);
void wf__node_release(wf_node *n);
/* The gradient-accumulation node of a leaf that requires grad (created on first use). */
wf_node *wf__grad_accumulator(wf_tensor *leaf);

/* In-place ops on tensors with history: rebase t onto a new node (inputs as given) so that
 * t's grad_fn becomes that node. Refuses (WF_EAUTOGRAD) leaves that require grad while grad
 * mode is on, views of such leaves, and views of non-contiguous bases. Returns 0 or a code. */
int wf__check_inplace(const char *op, wf_tensor *t);
/* Finish an in-place op computed out of place: write y's values into a and give a y's
 * history. When a is a view, its base is rebased instead (CopySlices) and a becomes a
 * region of the new base. Returns 0 or a code. */
int wf__adopt(wf_tensor *a, wf_tensor *y);

/* Drop a queued end-of-backward callback (fn, ud) that has not run (a caller whose backward
 * never reached wf_backward). Returns whether one was dropped. */
bool wf__backward_callback_cancel(wf_backward_callback_fn fn, void *ud);

#endif
