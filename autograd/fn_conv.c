/* autograd/fn_conv.c: wf_conv2d, wf_max_pool2d, wf_avg_pool2d, wf_adaptive_avg_pool2d and
 * their backward. Forward and backward are raw ops (tensor/ops_conv.c, ops_conv_backward.c);
 * this file adds autocast, the f32 route of half inputs on backends without half kernels,
 * unbatched [C,H,W] inputs, and the graph nodes. */
#include "autograd_impl.h"
#include "../tensor/ops_raw.h"

#include <string.h>

#define LIKE(m) (m)->ndim, (m)->shape, (m)->dtype, (m)->device

/* ---------------------------------------------------------------- backward */

/* y = conv2d(x, w, b): inputs x [N,C,H,W], w [O,C/g,kh,kw], optional b [O]; saved 0 = x,
 * 1 = w; n->i[0..6] = stride h/w, padding h/w, dilation h/w, groups. */
static int conv2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *x = wf__saved(n, 0), *w = wf__saved(n, 1);
    if (!x || !w) return wf_error();
    wf_tensor *gb = NULL;
    bool nb = n->n_inputs > 2 && n->needs[2];
    int rc = wf__conv2d_backward_raw(gy[0], x, w, n->i, n->needs[0], n->needs[1], nb, &gx[0], &gx[1], &gb);
    if (!rc && nb) gx[2] = gb;
    return rc;
}

/* max pool: saved 0 = argmax (i64, the output's shape, flat index in H*W) */
static int max_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    wf_tensor *am = wf__saved(n, 0);
    if (!am) return wf_error();
    gx[0] = wf__max_pool2d_backward_raw(gy[0], am, LIKE(&n->in_meta[0]));
    return gx[0] ? 0 : wf_error();
}

/* avg pool: n->i[0..5] = kernel h/w, stride h/w, padding h/w; n->i[6] = count_include_pad */
static int avg_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    int k[2] = { (int)n->i[0], (int)n->i[1] }, s[2] = { (int)n->i[2], (int)n->i[3] };
    int p[2] = { (int)n->i[4], (int)n->i[5] };
    gx[0] = wf__avg_pool2d_backward_raw(gy[0], k, s, p, n->i[6] != 0, LIKE(&n->in_meta[0]));
    return gx[0] ? 0 : wf_error();
}

/* adaptive avg pool with unequal bins: no saved tensors */
static int adaptive_avg_pool2d_backward(wf_node *n, wf_tensor *const *gy, wf_tensor **gx) {
    gx[0] = wf__adaptive_avg_pool2d_backward_raw(gy[0], LIKE(&n->in_meta[0]));
    return gx[0] ? 0 : wf_error();
}

/* ---------------------------------------------------------------- conv2d */

/* the raw conv on 4-D x, recorded */
static wf_tensor *conv2d_4d(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *o) {
    int64_t prm[7];
    wf_scope_begin();
    wf_tensor *y = wf__conv2d_raw(x, w, b, o, prm);
    if (y) {
        wf_tensor *ins[3] = { x, w, b };
        int ni = b ? 3 : 2;
        wf_node *nd = wf__record("ConvolutionBackward", conv2d_backward, y, ni, ins);
        if (nd) memcpy(nd->i, prm, sizeof prm);
        y = wf__recorded(y, nd, nd && wf__save(nd, x) >= 0 && wf__save(nd, w) >= 0, ni, ins);
    }
    wf_keep(y);
    wf_scope_end();
    return y;
}

/* No f16/bf16 conv kernels (wf__conv_via_f32): compute in f32 and round back, autograd through the casts. */
static wf_tensor *half_conv2d(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *opts) {
    if (wf__autocast_suspend(x->device.type)) return NULL;   /* the f32 conv inside must not be lowered again */
    wf_scope_begin();
    wf_tensor *bf = b ? wf_to_dtype(b, WF_F32) : NULL;
    wf_tensor *y = (b && !bf) ? NULL : wf_conv2d(wf_to_dtype(x, WF_F32), wf_to_dtype(w, WF_F32), bf, opts);
    y = wf_keep(wf_to_dtype(y, x->dtype));
    wf_scope_end();
    wf__autocast_resume();
    return y;
}

static wf_tensor *wf_conv2d__body(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *opts) {
    static const char *op = "wf_conv2d";
    x = wf__autocast_arg(x, WF__AC_LOWER), w = wf__autocast_arg(w, WF__AC_LOWER), b = wf__autocast_arg(b, WF__AC_LOWER);
    if (wf__any_null(op, 2, x, w)) return NULL;
    if (wf__conv_via_f32(x, WF_K_IM2COL) && x->dtype == w->dtype && (!b || b->dtype == x->dtype))
        return half_conv2d(x, w, b, opts);
    if (wf__conv2d_check(x, w, b)) return NULL;
    wf_conv2d_opts o = opts ? *opts : (wf_conv2d_opts){ { 0, 0 }, { 0, 0 }, { 0, 0 }, 0 };
    if (x->ndim == 4) return conv2d_4d(x, w, b, &o);
    /* unbatched [C,H,W]: run as a batch of one */
    wf_tensor *y = NULL;
    wf_scope_begin();
    wf_tensor *x4 = wf_unsqueeze(x, 0);
    if (x4) y = conv2d_4d(x4, w, b, &o);
    if (y) y = wf_squeeze(y, 0);
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_conv2d(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *opts) {
    WF__NAMED("wf_conv2d", wf_tensor *, !r, wf_conv2d__body(x, w, b, opts));
}

/* ---------------------------------------------------------------- pooling */

/* f16/bf16 on the CPU: pool in f32 and round back (pool(opts) when fn is given, else adaptive). */
static wf_tensor *half_pool(wf_tensor *x, const wf_pool2d_opts *opts, int64_t oh, int64_t ow,
                            wf_tensor *(*fn)(wf_tensor *, const wf_pool2d_opts *)) {
    wf_scope_begin();
    wf_tensor *xf = wf_to_dtype(x, WF_F32);
    wf_tensor *y = wf_keep(wf_to_dtype(fn ? fn(xf, opts) : wf_adaptive_avg_pool2d(xf, oh, ow), x->dtype));
    wf_scope_end();
    return y;
}

static wf_tensor *record_avg_pool(wf_tensor *y, wf_tensor *x, const int64_t *prm) {
    wf_node *nd = wf__record("AvgPool2DBackward", avg_pool2d_backward, y, 1, &x);
    if (nd) memcpy(nd->i, prm, 7 * sizeof *prm);
    return wf__recorded(y, nd, true, 1, &x);
}

static wf_tensor *wf_max_pool2d__body(wf_tensor *x, const wf_pool2d_opts *opts) {
    if (wf__any_null("wf_max_pool2d", 1, x)) return NULL;
    if (wf__conv_via_f32(x, WF_K_MAX_POOL2D)) return half_pool(x, opts, 0, 0, wf_max_pool2d);   /* no half kernels (CPU) */
    wf_tensor *am = NULL;
    wf_scope_begin();
    wf_tensor *y = wf__max_pool2d_raw(x, opts, &am);
    if (y) {
        wf_node *nd = wf__record("MaxPool2DWithIndicesBackward", max_pool2d_backward, y, 1, &x);
        y = wf__recorded(y, nd, nd && wf__save(nd, am) >= 0, 1, &x);
    }
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_max_pool2d(wf_tensor *x, const wf_pool2d_opts *opts) {
    WF__NAMED("wf_max_pool2d", wf_tensor *, !r, wf_max_pool2d__body(x, opts));
}

static wf_tensor *wf_avg_pool2d__body(wf_tensor *x, const wf_pool2d_opts *opts) {
    if (wf__any_null("wf_avg_pool2d", 1, x)) return NULL;
    if (wf__conv_via_f32(x, WF_K_AVG_POOL2D)) return half_pool(x, opts, 0, 0, wf_avg_pool2d);
    int64_t prm[7];
    wf_scope_begin();
    wf_tensor *y = wf__avg_pool2d_raw(x, opts, prm);
    if (y) y = record_avg_pool(y, x, prm);
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_avg_pool2d(wf_tensor *x, const wf_pool2d_opts *opts) {
    WF__NAMED("wf_avg_pool2d", wf_tensor *, !r, wf_avg_pool2d__body(x, opts));
}

static wf_tensor *wf_adaptive_avg_pool2d__body(wf_tensor *x, int64_t oh, int64_t ow) {
    if (wf__any_null("wf_adaptive_avg_pool2d", 1, x)) return NULL;
    if (wf__conv_via_f32(x, WF_K_AVG_POOL2D)) return half_pool(x, NULL, oh, ow, NULL);
    int64_t prm[7];
    bool equal = false;
    wf_scope_begin();
    wf_tensor *y = wf__adaptive_avg_pool2d_raw(x, oh, ow, &equal, prm);
    if (y && equal) {   /* equal bins: exactly an average pool */
        y = record_avg_pool(y, x, prm);
    } else if (y) {
        wf_node *nd = wf__record("AdaptiveAvgPool2DBackward", adaptive_avg_pool2d_backward, y, 1, &x);
        y = wf__recorded(y, nd, true, 1, &x);
    }
    wf_keep(y);
    wf_scope_end();
    return y;
}

wf_tensor *wf_adaptive_avg_pool2d(wf_tensor *x, int64_t oh, int64_t ow) {
    WF__NAMED("wf_adaptive_avg_pool2d", wf_tensor *, !r, wf_adaptive_avg_pool2d__body(x, oh, ow));
}
