/* tensor/ops_conv_backward.c: the raw backward of conv2d (PyTorch's convolution_backward)
 * and of the 2-D pools, on the device kernels (tensor/ops_raw.h).
 *
 * conv2d, per image n and group g (col = im2col(x[n]), L = oh*ow, CK = C/g*kh*kw):
 *   gw[g] += gy[n,g] [O/g, L] @ col[g]^T [L, CK]
 *   gx[n]  = col2im(w[g]^T [CK, O/g] @ gy[n,g] [O/g, L])
 *   gb     = sum of gy over N, oh, ow
 * The col buffers are recomputed here (not saved by the forward) to keep memory low.
 * Where the device has im2col_batch / col2im_batch for the dtype (the CPU, CUDA), a chunk
 * of images is one im2col and one GEMM per gradient and group instead (conv_grads_batched),
 * as in the forward. */
#include "ops_conv.h"

#include <string.h>

/* conv2d's sizes, from x [N, C, H, W], w [O, C/G, kh, kw], gy [N, O, oh, ow] and the forward's
 * parameters prm (stride h/w, padding h/w, dilation h/w, groups); es is the element size in
 * bytes, L = oh*ow, CK = C/G*kh*kw (both conv_grads paths read them the same way) */
typedef struct conv_geom {
    int sh, sw, ph, pw, dh, dw, G, kh, kw;
    int64_t N, C, H, W, O, oh, ow;
    int64_t es, L, Cg, Og, kk, CK, HW;
    wf_dtype dt;
    wf_device dev;
} conv_geom;

static conv_geom conv_geom_of(const wf_tensor *x, const wf_tensor *w, const wf_tensor *gy, const int64_t *prm) {
    conv_geom q = {
        .sh = (int)prm[0], .sw = (int)prm[1], .ph = (int)prm[2], .pw = (int)prm[3],
        .dh = (int)prm[4], .dw = (int)prm[5], .G = (int)prm[6],
        .kh = (int)w->shape[2], .kw = (int)w->shape[3],
        .N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
        .O = w->shape[0], .oh = gy->shape[2], .ow = gy->shape[3],
        .es = (int64_t)wf_dtype_size(x->dtype), .dt = x->dtype, .dev = x->device,
    };
    q.L = q.oh * q.ow;
    q.Cg = q.C / q.G;
    q.Og = q.O / q.G;
    q.kk = (int64_t)q.kh * q.kw;
    q.CK = q.Cg * q.kk;
    q.HW = q.H * q.W;
    return q;
}

/* the input and weight gradients into gx / gw (allocated, contiguous; NULL when not needed) */
static int conv_grads(const wf_kernels *K, wf_tensor *x, wf_tensor *w, wf_tensor *gy,
                      const int64_t *prm, wf_tensor *gx, wf_tensor *gw) {
    const conv_geom q = conv_geom_of(x, w, gy, prm);
    const int64_t es = q.es, L = q.L, CK = q.CK, HW = q.HW, Cg = q.Cg, Og = q.Og, C = q.C, O = q.O;
    char *xp = wf__conv_data(x), *wp = wf__conv_data(w), *gp = wf__conv_data(gy);
    int rc = 0;
    if (gw && K->fill(gw, 0.0)) return wf_error();
    if (gx && K->fill(gx, 0.0)) return wf_error();   /* col2im accumulates */
    if (q.N == 0 || L == 0) return 0;
    bool direct = q.kh == 1 && q.kw == 1 && q.sh == 1 && q.sw == 1 && q.ph == 0 && q.pw == 0;
    if (direct) {
        for (int g = 0; g < q.G && !rc; g++) {
            if (gx)
                rc = K->gemm(q.dt, true, false, Cg, L, Og, 1.0, wp + g * Og * CK * es, CK, 0,
                             gp + g * Og * L * es, L, O * L, 0.0, wf__conv_data(gx) + g * Cg * HW * es, L,
                             C * HW, q.N, q.dev);
            for (int64_t n = 0; gw && n < q.N && !rc; n++)
                rc = K->gemm(q.dt, false, true, Og, Cg, L, 1.0, gp + (n * O + g * Og) * L * es, L, 0,
                             xp + (n * C + g * Cg) * HW * es, L, 0, 1.0,
                             wf__conv_data(gw) + g * Og * CK * es, CK, 0, 1, q.dev);
        }
        return rc;
    }
    int64_t per = C * q.kk * L;
    int64_t chunk = wf__conv_chunk(q.N, per);
    wf_tensor *col = wf__empty((int64_t[]){ chunk, C * q.kk, L }, 3, q.dt, q.dev);
    if (!col) return wf_error();
    char *cp = wf__conv_data(col);
    for (int64_t n0 = 0; n0 < q.N && !rc; n0 += chunk) {
        int64_t cn = q.N - n0 < chunk ? q.N - n0 : chunk;
        if (gw) {
            for (int64_t i = 0; i < cn && !rc; i++)
                rc = K->im2col(cp + i * per * es, xp + (n0 + i) * C * HW * es, q.dt, C, q.H, q.W, q.kh, q.kw,
                               q.sh, q.sw, q.ph, q.pw, q.dh, q.dw, q.oh, q.ow, q.dev);
            for (int g = 0; g < q.G && !rc; g++)
                for (int64_t i = 0; i < cn && !rc; i++)
                    rc = K->gemm(q.dt, false, true, Og, CK, L, 1.0, gp + ((n0 + i) * O + g * Og) * L * es,
                                 L, 0, cp + (i * per + g * CK * L) * es, L, 0, 1.0,
                                 wf__conv_data(gw) + g * Og * CK * es, CK, 0, 1, q.dev);
        }
        if (gx) {
            /* col <- w^T @ gy per group (batched over the chunk), then scatter back */
            for (int g = 0; g < q.G && !rc; g++)
                rc = K->gemm(q.dt, true, false, CK, L, Og, 1.0, wp + g * Og * CK * es, CK, 0,
                             gp + (n0 * O + g * Og) * L * es, L, O * L, 0.0, cp + g * CK * L * es, L,
                             per, cn, q.dev);
            char *gxp = wf__conv_data(gx);
            if (!rc) rc = wf__need_kernel(K, "wf_conv2d (backward)", WF_OPF_KERNEL, WF_K_COL2IM, q.dt, q.dev);
            for (int64_t i = 0; i < cn && !rc; i++)
                rc = K->col2im(gxp + (n0 + i) * C * HW * es, cp + i * per * es, q.dt, C, q.H, q.W, q.kh, q.kw,
                               q.sh, q.sw, q.ph, q.pw, q.dh, q.dw, q.oh, q.ow, q.dev);
        }
    }
    return rc;
}

/* The batched path (kernels with im2col_batch / col2im_batch), per chunk of cn images:
 * t = gy permuted to [O, cn*L] (one parallel pass: im2col_batch with a 1x1 kernel), then
 * ONE GEMM per group for each gradient:
 *   gw[g] (+)= t[g] [O/g, cn*L] @ col[g]^T      (col = im2col of the chunk, [C*kh*kw, cn*L])
 *   col[g] = w[g]^T @ t[g], gx = col2im(col)     (col2im_batch overwrites gx)
 *   gb (+)= row sums of t.
 * gx, gw, gb: allocated and contiguous, or NULL when not needed. */
static int conv_grads_batched(const wf_kernels *K, wf_tensor *x, wf_tensor *w, wf_tensor *gy,
                              const int64_t *prm, wf_tensor *gx, wf_tensor *gw, wf_tensor *gb) {
    const conv_geom q = conv_geom_of(x, w, gy, prm);
    const int64_t es = q.es, L = q.L, CK = q.CK, HW = q.HW, Og = q.Og, C = q.C, O = q.O, N = q.N;
    const wf_dtype dt = q.dt;
    const wf_device dev = q.dev;
    if (N == 0 || L == 0) {
        if ((gw && K->fill(gw, 0.0)) || (gx && K->fill(gx, 0.0)) || (gb && K->fill(gb, 0.0)))
            return wf_error();
        return 0;
    }
    int64_t chunk = wf__conv_chunk(N, C * q.kk * L);
    wf_tensor *t = wf__empty((int64_t[]){ O, chunk * L }, 2, dt, dev);
    wf_tensor *col = (gx || gw) ? wf__empty((int64_t[]){ C * q.kk, chunk * L }, 2, dt, dev) : NULL;
    wf_tensor *gb2 = gb ? wf__view_of(gb, 2, (int64_t[]){ O, 1 }, (int64_t[]){ 1, 1 }, gb->offset) : NULL;
    wf_tensor *gbt = (gb && chunk < N) ? wf__empty((int64_t[]){ O, 1 }, 2, dt, dev) : NULL;
    if (!t || ((gx || gw) && !col) || (gb && !gb2) || (gb && chunk < N && !gbt)) return wf_error();
    char *xp = wf__conv_data(x), *wp = wf__conv_data(w), *tp = wf__conv_data(t), *cp = col ? wf__conv_data(col) : NULL;
    int rc = 0;
    for (int64_t n0 = 0; n0 < N && !rc; n0 += chunk) {
        int64_t cn = N - n0 < chunk ? N - n0 : chunk, nl = cn * L;
        /* t = gy of the chunk as [O, cn*L]: im2col_batch with a 1x1 kernel is that permute */
        rc = K->im2col_batch(tp, wf__conv_data(gy) + n0 * O * L * es, dt, cn, O, q.oh, q.ow, 1, 1, 1, 1, 0, 0, 1,
                             1, q.oh, q.ow, dev);
        if (rc) break;
        if (gb) {
            wf_tensor *t2 = wf__view_of(t, 2, (int64_t[]){ O, nl }, (int64_t[]){ nl, 1 }, t->offset);
            if (!t2) return wf_error();
            if (n0 == 0) rc = K->reduce(WF_R_SUM, gb2, t2, 1u << 1, 0.0);
            else if (!(rc = K->reduce(WF_R_SUM, gbt, t2, 1u << 1, 0.0))) rc = K->axpy(gb2, gbt, 1.0);
        }
        if (gw && !rc) {
            rc = K->im2col_batch(cp, xp + n0 * C * HW * es, dt, cn, C, q.H, q.W, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw,
                                 q.dh, q.dw, q.oh, q.ow, dev);
            for (int g = 0; g < q.G && !rc; g++)
                rc = K->gemm(dt, false, true, Og, CK, nl, 1.0, tp + g * Og * nl * es, nl, 0,
                             cp + g * CK * nl * es, nl, 0, n0 == 0 ? 0.0 : 1.0,
                             wf__conv_data(gw) + g * Og * CK * es, CK, 0, 1, dev);
        }
        if (gx && !rc) {
            for (int g = 0; g < q.G && !rc; g++)
                rc = K->gemm(dt, true, false, CK, nl, Og, 1.0, wp + g * Og * CK * es, CK, 0,
                             tp + g * Og * nl * es, nl, 0, 0.0, cp + g * CK * nl * es, nl, 0, 1, dev);
            if (!rc)
                rc = K->col2im_batch(wf__conv_data(gx) + n0 * C * HW * es, cp, NULL, dt, cn, C, q.H, q.W, q.kh, q.kw,
                                     q.sh, q.sw, q.ph, q.pw, q.dh, q.dw, q.oh, q.ow, dev);
        }
    }
    return rc;
}

int wf__conv2d_backward_raw(wf_tensor *gy, wf_tensor *x, wf_tensor *w, const int64_t *prm, bool need_x, bool need_w,
                            bool need_b, wf_tensor **gx, wf_tensor **gw, wf_tensor **gb) {
    const wf_kernels *K = wf__kernels(x->device);
    if (!K) return wf_error();
    bool nx = need_x, nw = need_w, nb = need_b;
    int rc = 0;
    wf_tensor *gxt = NULL, *gwt = NULL, *gbt = NULL;
    wf_scope_begin();
    wf_tensor *g = wf__conv_contig(gy, K), *xc = g ? wf__conv_contig(x, K) : NULL;
    wf_tensor *wc = xc ? wf__conv_contig(w, K) : NULL;
    if (!wc) rc = wf_error();
    if (!rc && nx && !(gxt = wf__empty(x->shape, x->ndim, x->dtype, x->device))) rc = wf_error();
    if (!rc && nw && !(gwt = wf__empty(w->shape, w->ndim, w->dtype, w->device))) rc = wf_error();
    /* the batched path covers every conv but the direct 1x1 one (as the forward) */
    bool direct = w->shape[2] == 1 && w->shape[3] == 1 && prm[0] == 1 && prm[1] == 1 && prm[2] == 0 && prm[3] == 0;
    bool batched = !direct && x->device.type != WF_DEV_META &&
                   wf__supports(K, WF_OPF_KERNEL, WF_K_IM2COL_BATCH, x->dtype) &&
                   wf__supports(K, WF_OPF_KERNEL, WF_K_COL2IM_BATCH, x->dtype);
    if (!rc && x->device.type == WF_DEV_META)   /* each gradient is one forward's GEMM work */
        wf__meta_flops_add((nx + nw) * 2 * wf_numel(g) * w->shape[1] * w->shape[2] * w->shape[3]);
    int64_t O = w->shape[0];
    if (batched) {
        if (!rc && nb && !(gbt = wf__empty(&O, 1, x->dtype, x->device))) rc = wf_error();
        if (!rc) rc = conv_grads_batched(K, xc, wc, g, prm, gxt, gwt, gbt);
    } else {
        if (!rc && (nx || nw) && x->device.type != WF_DEV_META)
            rc = conv_grads(K, xc, wc, g, prm, gxt, gwt);
        if (!rc && nb) {   /* gb = sum of gy over N, oh, ow */
            wf_tensor *s = wf__sum_raw("wf_conv2d (backward)", g, 1u | 4u | 8u);
            gbt = s ? wf__view_of(s, 1, &O, (const int64_t[]){ 1 }, s->offset) : NULL;
            if (!gbt) rc = wf_error();
        }
    }
    if (!rc) {
        *gx = wf_keep(gxt);
        *gw = wf_keep(gwt);
        *gb = wf_keep(gbt);
    }
    wf_scope_end();
    return rc;
}

/* What the three pool backwards share: gy made contiguous, the gradient r (shape, dt, dev)
 * allocated, the kernel kop checked on K (the device's kernels, kdev), then, on a device with
 * data, run(K, r, g, ctx) writes r. Returns r in the caller's scope, or NULL + error. */
typedef int (*pool_backward_fn)(const wf_kernels *K, wf_tensor *r, wf_tensor *g, const void *ctx);

static wf_tensor *pool_backward(const char *op, int kop, wf_tensor *gy, wf_device kdev, int ndim,
                                const int64_t *shape, wf_dtype dt, wf_device dev, pool_backward_fn run,
                                const void *ctx) {
    const wf_kernels *K = wf__kernels(kdev);
    if (!K) return NULL;
    int rc = 0;
    wf_tensor *out = NULL;
    wf_scope_begin();
    wf_tensor *g = wf__conv_contig(gy, K);
    wf_tensor *r = g ? wf__empty(shape, ndim, dt, dev) : NULL;
    if (!r) rc = wf_error();
    if (!rc) rc = wf__need_kernel(K, op, WF_OPF_KERNEL, kop, r->dtype, kdev);
    if (!rc && kdev.type != WF_DEV_META) rc = run(K, r, g, ctx);
    if (!rc) out = wf_keep(r);
    wf_scope_end();
    return out;
}

static int max_pool_run(const wf_kernels *K, wf_tensor *r, wf_tensor *g, const void *ctx) {
    if (wf_numel(r) == 0) return 0;
    wf_tensor *r4 = wf__conv_as4d(r), *g4 = r4 ? wf__conv_as4d(g) : NULL;
    wf_tensor *a4 = g4 ? wf__conv_as4d((wf_tensor *)ctx) : NULL;
    return a4 ? K->max_pool2d_backward(r4, g4, a4) : wf_error();
}

wf_tensor *wf__max_pool2d_backward_raw(wf_tensor *gy, wf_tensor *argmax, int ndim, const int64_t *shape, wf_dtype dt,
                                       wf_device dev) {
    return pool_backward("wf_max_pool2d (backward)", WF_K_MAX_POOL2D_BACKWARD, gy, argmax->device, ndim, shape, dt,
                         dev, max_pool_run, argmax);
}

typedef struct { const int *k, *s, *p; bool cip; } avg_pool_args;

static int avg_pool_run(const wf_kernels *K, wf_tensor *r, wf_tensor *g, const void *ctx) {
    const avg_pool_args *a = ctx;
    if (wf_numel(r) == 0) return 0;
    wf_tensor *r4 = wf__conv_as4d(r), *g4 = r4 ? wf__conv_as4d(g) : NULL;
    return g4 ? K->avg_pool2d_backward(r4, g4, a->k, a->s, a->p, a->cip) : wf_error();
}

wf_tensor *wf__avg_pool2d_backward_raw(wf_tensor *gy, const int k[2], const int s[2], const int p[2], bool cip,
                                       int ndim, const int64_t *shape, wf_dtype dt, wf_device dev) {
    return pool_backward("wf_avg_pool2d (backward)", WF_K_AVG_POOL2D_BACKWARD, gy, dev, ndim, shape, dt, dev,
                         avg_pool_run, &(avg_pool_args){ k, s, p, cip });
}

static int adaptive_avg_pool_run(const wf_kernels *K, wf_tensor *r, wf_tensor *g, const void *ctx) {
    (void)ctx;
    return K->adaptive_avg_pool2d_backward(r, g);
}

wf_tensor *wf__adaptive_avg_pool2d_backward_raw(wf_tensor *gy, int ndim, const int64_t *shape, wf_dtype dt,
                                                wf_device dev) {
    return pool_backward("wf_adaptive_avg_pool2d (backward)", WF_K_ADAPTIVE_AVG_POOL2D_BACKWARD, gy, dev, ndim,
                         shape, dt, dev, adaptive_avg_pool_run, NULL);
}
