/* autograd/fn_index.c: the public indexing and joining functions (wf_gather, wf_scatter_add,
 * wf_index_select, wf_embedding, wf_cat, wf_stack, wf_split, wf_chunk) and their backward.
 * Forward and backward both run tensor/ops_index.c's raw ops; the backward functions run with
 * grad mode off inside the engine's scope, so every tensor made there is a temporary of it. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

static int err_or(int fallback) { return wf_error() ? wf_error() : fallback; }

/* ---------------------------------------------------------------- backward */

#define LIKE(m) (m)->ndim, (m)->shape, (m)->dtype, (m)->device

/* gather: n->i[0] = dim; saved 0 = index. gx = zeros(x).scatter_add(dim, index, gy). */
static int gather_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    gx[0] = wf__gather_backward_raw(gy[0], (int)n->i[0], index, LIKE(&n->in_meta[0]));
    return gx[0] ? 0 : err_or(WF_ENOMEM);
}

/* scatter_add: n->i[0] = dim; saved 0 = index. Inputs x, src: gx = gy, gsrc = gy.gather(dim,
 * index) (zero outside index's extent when src is larger than index). */
static int scatter_add_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (n->needs[0]) {
        gx[0] = wf__reduce_to(gy[0], &n->in_meta[0]);
        if (!gx[0]) return err_or(WF_ENOMEM);
    }
    if (n->needs[1]) {
        gx[1] = wf__scatter_add_src_backward_raw(gy[0], (int)n->i[0], index, LIKE(&n->in_meta[1]));
        if (!gx[1]) return err_or(WF_ENOMEM);
    }
    return 0;
}

/* index_select: n->i[0] = dim; saved 0 = index (1-D). gx = zeros(x).index_add(dim, index, gy). */
static int index_select_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    gx[0] = wf__index_select_backward_raw(gy[0], (int)n->i[0], index, LIKE(&n->in_meta[0]));
    return gx[0] ? 0 : err_or(WF_ENOMEM);
}

/* embedding: saved 0 = the indices flattened to 1-D [N]. Input 0 = weight [V, D]:
 * gw = zeros(weight).index_add(0, indices, gy viewed as [N, D]) (repeated indices add up).
 * A weight whose gradient is already waiting (tied to an LM head that ran first) gets the rows
 * added into that buffer instead: at GPT-2 124M a 154 MB zero fill and a 3 x 154 MB sum fewer. */
static int embedding_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *index = wf__saved(n, 0);
    if (!index) return err_or(WF_EAUTOGRAD);
    if (!n->needs[0]) return 0;
    wf_tensor *sink = wf__grad_sink(n, 0);
    if (sink) return wf__embedding_backward_into_raw(sink, gy[0], index);
    const wf_meta *m = &n->in_meta[0];
    gx[0] = wf__embedding_backward_raw(gy[0], index, m->shape, m->dtype, m->device);
    return gx[0] ? 0 : err_or(WF_ENOMEM);
}

/* cat: n->i[0] = dim; input sizes along dim come from n->in_meta. gx[i] = slice i of gy. */
static int cat_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *g = gy[0];
    int d = (int)n->i[0];
    int64_t off = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        const wf_meta *m = &n->in_meta[i];
        int64_t size = m->shape[d];
        if (n->needs[i]) {
            int64_t shape[WF_MAX_DIMS];
            for (int k = 0; k < g->ndim; k++) shape[k] = g->shape[k];
            shape[d] = size;
            gx[i] = wf__copy_view_raw(g, g->ndim, shape, g->stride, g->offset + off * g->stride[d], m->dtype, m->device);
            if (!gx[i]) return err_or(WF_ENOMEM);
        }
        off += size;
    }
    return 0;
}

/* stack: n->i[0] = dim (in the output). gx[i] = gy selected at i along dim. */
static int stack_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *g = gy[0];
    int d = (int)n->i[0];
    int64_t shape[WF_MAX_DIMS], stride[WF_MAX_DIMS];
    for (int k = 0, j = 0; k < g->ndim; k++)
        if (k != d) { shape[j] = g->shape[k]; stride[j] = g->stride[k]; j++; }
    for (int i = 0; i < n->n_inputs; i++) {
        if (!n->needs[i]) continue;
        const wf_meta *m = &n->in_meta[i];
        gx[i] = wf__copy_view_raw(g, g->ndim - 1, shape, stride, g->offset + i * g->stride[d], m->dtype, m->device);
        if (!gx[i]) return err_or(WF_ENOMEM);
    }
    return 0;
}

/* ---------------------------------------------------------------- forward */

/* y = op(x, ...) along dim, recorded with the index saved */
static wf_tensor *record_indexed(const char *name, wf_backward_fn fn, wf_tensor *y, int n_in, wf_tensor *const *ins,
                                 int d, wf_tensor *index) {
    if (!y) return NULL;
    wf_node *n = wf__record(name, fn, y, n_in, ins);
    if (n) n->i[0] = d;
    return wf__recorded(y, n, n && wf__save(n, index) >= 0, n_in, ins);
}

wf_tensor *wf_gather(wf_tensor *x, int dim, wf_tensor *index) {
    wf_tensor *y = wf__gather_raw(x, dim, index);
    return y ? record_indexed("GatherBackward", gather_backward, y, 1, &x, wf__dim("wf_gather", dim, x->ndim), index) : NULL;
}

wf_tensor *wf_scatter_add(wf_tensor *x, int dim, wf_tensor *index, wf_tensor *src) {
    wf_tensor *y = wf__scatter_add_raw(x, dim, index, src);
    return y ? record_indexed("ScatterAddBackward", scatter_add_backward, y, 2, (wf_tensor *[]){ x, src },
                              wf__dim("wf_scatter_add", dim, x->ndim), index)
             : NULL;
}

wf_tensor *wf_index_select(wf_tensor *x, int dim, wf_tensor *index) {
    wf_tensor *y = wf__index_select_raw(x, dim, index);
    return y ? record_indexed("IndexSelectBackward", index_select_backward, y, 1, &x,
                              wf__dim("wf_index_select", dim, x->ndim), index)
             : NULL;
}

wf_tensor *wf_embedding(wf_tensor *weight, wf_tensor *indices) {
    wf_tensor *flat = NULL;
    wf_tensor *y = wf__embedding_raw(weight, indices, &flat);
    if (!y) return NULL;
    wf_node *n = wf__record("EmbeddingBackward", embedding_backward, y, 1, &weight);
    bool failed = n ? wf__save(n, flat) < 0 : wf__needs_grad(1, &weight);
    wf_tensor_free(flat);
    if (failed) {
        if (!wf_error()) wf__error(WF_ENOMEM, "wf_embedding: out of memory recording the autograd graph");
        wf_tensor_free(y);
        return NULL;
    }
    return y;
}

wf_tensor *wf_cat(wf_tensor *const *ts, int n, int dim) {
    wf_tensor *y = wf__cat_raw(ts, n, dim);
    if (!y) return NULL;
    wf_node *node = wf__record("CatBackward", cat_backward, y, n, ts);
    if (node) node->i[0] = wf__dim("wf_cat", dim, ts[0]->ndim);
    return y;
}

wf_tensor *wf_stack(wf_tensor *const *ts, int n, int dim) {
    wf_tensor *y = wf__stack_raw(ts, n, dim);
    if (!y) return NULL;
    wf_node *node = wf__record("StackBackward", stack_backward, y, n, ts);
    if (node) node->i[0] = wf__dim("wf_stack", dim, ts[0]->ndim + 1);
    return y;
}

/* ---------------------------------------------------------------- split / chunk */

/* Writes `count` narrow views of x along d, each of size `size` except the last, which
 * takes what is left. Returns count or a negative code (out untouched on error). */
static int pieces(const char *op, wf_tensor *x, int d, int64_t size, int64_t count, wf_tensor **out, int max) {
    if (count > max)
        return wf__error(WF_EINVAL, "%s: %lld pieces do not fit in out (max %d)", op, (long long)count, max);
    int64_t len = x->shape[d], start = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t l = i == count - 1 ? len - start : size;
        wf_tensor *p = wf_narrow(x, d, start, l);
        if (!p) {
            int rc = err_or(WF_ENOMEM);
            for (int64_t j = 0; j < i; j++) { wf_tensor_free(out[j]); out[j] = NULL; }
            return rc;
        }
        out[i] = p;
        start += l;
    }
    return (int)count;
}

static int split_prologue(const char *op, wf_tensor *x, int dim, wf_tensor **out, int *d) {
    if (!x) return wf__any_null(op, 1, x), wf_error();
    if (!out) return wf__error(WF_ENULL, "%s: NULL out array", op);
    if (x->ndim == 0) return wf__error(WF_ESHAPE, "%s: cannot split a 0-d tensor", op);
    *d = wf__dim(op, dim, x->ndim);
    return *d < 0 ? wf_error() : 0;
}

int wf_split(wf_tensor *x, int64_t split_size, int dim, wf_tensor **out, int max) {
    const char *op = "wf_split";
    int d = 0, rc = split_prologue(op, x, dim, out, &d);
    if (rc) return rc;
    int64_t len = x->shape[d];
    if (split_size < 0 || (split_size == 0 && len > 0))
        return wf__error(WF_EINVAL, "%s: split_size must be positive, got %lld (dimension %d has size %lld)",
                         op, (long long)split_size, d, (long long)len);
    int64_t count = len == 0 ? 1 : (len + split_size - 1) / split_size;
    return pieces(op, x, d, split_size, count, out, max);
}

int wf_chunk(wf_tensor *x, int chunks, int dim, wf_tensor **out, int max) {
    const char *op = "wf_chunk";
    int d = 0, rc = split_prologue(op, x, dim, out, &d);
    if (rc) return rc;
    if (chunks <= 0) return wf__error(WF_EINVAL, "%s: chunks must be positive, got %d", op, chunks);
    int64_t len = x->shape[d];
    if (len == 0) return pieces(op, x, d, 0, chunks, out, max);   /* `chunks` empty pieces, as torch */
    int64_t size = (len + chunks - 1) / chunks;
    int64_t count = (len + size - 1) / size;
    return pieces(op, x, d, size, count, out, max);
}
