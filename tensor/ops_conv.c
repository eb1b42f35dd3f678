/* tensor/ops_conv.c: the raw conv2d and 2-D pools (tensor/ops_raw.h): checks, geometry and
 * dispatch. The public wf_conv2d, wf_max_pool2d, wf_avg_pool2d, wf_adaptive_avg_pool2d (and
 * their f32 route for half inputs on the CPU): autograd/fn_conv.c; the raw backward:
 * tensor/ops_conv_backward.c.
 *
 * conv2d is im2col + GEMM, over chunks of images so the col buffer stays bounded (~16M
 * elements; the whole batch for small images). Where the device has im2col_batch and
 * col2im_batch for the dtype (the CPU: f32/f64; CUDA: f32/f64/f16/bf16): col = im2col of
 * the chunk [C*kh*kw, cn*oh*ow], ONE GEMM per group
 * t[g] = w[g] @ col[g] ([O/g, cn*oh*ow]), then t is permuted into y's NCHW layout with the
 * bias added in the same pass (col2im_batch with a 1x1 kernel). Otherwise, per image:
 * col = im2col(x[n]) [C*kh*kw, oh*ow] and, per group g, y[n, g] = w[g] [O/g, C/g*kh*kw] @
 * col[g] (+ bias, written into y first so GEMM adds onto it with beta = 1), one batched GEMM
 * per chunk and group. A 1x1 / stride 1 / no padding convolution skips im2col and reads x
 * directly (both paths).
 * Pools run the device's pooling kernels on contiguous NCHW. Inputs may be 4-D [N,C,H,W]
 * or unbatched 3-D [C,H,W] (as PyTorch). Output sizes follow PyTorch, ceil_mode included. */
#include "ops_conv.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


static int check_float(const char *op, wf_tensor *x) {
    if (!wf_dtype_is_floating(x->dtype))
        return wf__error(WF_EDTYPE, "%s: %s tensors are not supported (floating dtypes only)", op,
                         wf_dtype_name(x->dtype));
    return 0;
}

static int check_same(const char *op, const char *what, wf_tensor *x, wf_tensor *t) {
    if (t->dtype != x->dtype)
        return wf__error(WF_EDTYPE, "%s: %s dtype %s does not match the input's %s", op, what,
                         wf_dtype_name(t->dtype), wf_dtype_name(x->dtype));
    if (wf__same_device(op, (wf_tensor *[]){ x, t }, 2)) return wf_error();
    return 0;
}

int wf__check_image(const char *op, wf_tensor *x) {
    if (x->ndim != 3 && x->ndim != 4) {
        char s[96];
        return wf__error(WF_ESHAPE, "%s: input must be 4-D [N,C,H,W] or 3-D [C,H,W], got %s", op,
                         wf_shape_str(x, s, sizeof s));
    }
    return check_float(op, x);
}

/* ---------------------------------------------------------------- conv2d */

int64_t wf__conv_chunk_elems(void) {
    static _Atomic int64_t limit;   /* 0: not read yet (a race reads the same value twice) */
    int64_t v = atomic_load_explicit(&limit, memory_order_relaxed);
    if (v) return v;
    const char *e = getenv("WF_CONV_CHUNK_ELEMS");
    v = e ? atoll(e) : 0;
    if (v < 1) v = (int64_t)16 << 20;
    atomic_store_explicit(&limit, v, memory_order_relaxed);
    return v;
}

typedef struct {
    int64_t N, C, H, W, O, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw, g;
} conv_geom;


/* The batched path (kernels with im2col_batch / col2im_batch): per chunk of cn images, ONE
 * im2col into col [C*kh*kw, cn*L] and one GEMM per group into t [O, cn*L]; then t goes to
 * y's NCHW layout with the bias added in the same pass (col2im_batch with a 1x1 kernel). */
static int conv_forward_batched(const wf_kernels *K, wf_tensor *y, wf_tensor *x, wf_tensor *w,
                                wf_tensor *b, const conv_geom *G) {
    wf_dtype dt = y->dtype;
    int64_t es = (int64_t)wf_dtype_size(dt);
    int64_t L = G->oh * G->ow, Cg = G->C / G->g, Og = G->O / G->g;
    int64_t kk = (int64_t)G->kh * G->kw, CK = Cg * kk, HW = G->H * G->W;
    int64_t chunk = wf__conv_chunk(G->N, G->C * kk * L);
    wf_tensor *col = wf__empty((int64_t[]){ G->C * kk, chunk * L }, 2, dt, y->device);
    wf_tensor *t = col ? wf__empty((int64_t[]){ G->O, chunk * L }, 2, dt, y->device) : NULL;
    wf_tensor *bc = (t && b) ? wf__conv_contig(b, K) : NULL;
    if (!t || (b && !bc)) return wf_error();
    char *xp = wf__conv_data(x), *wp = wf__conv_data(w), *cp = wf__conv_data(col), *tp = wf__conv_data(t), *yp = wf__conv_data(y);
    int rc = 0;
    for (int64_t n0 = 0; n0 < G->N && !rc; n0 += chunk) {
        int64_t cn = G->N - n0 < chunk ? G->N - n0 : chunk, nl = cn * L;
        rc = K->im2col_batch(cp, xp + n0 * G->C * HW * es, dt, cn, G->C, G->H, G->W, G->kh, G->kw,
                             G->sh, G->sw, G->ph, G->pw, G->dh, G->dw, G->oh, G->ow, y->device);
        for (int g = 0; g < G->g && !rc; g++)
            rc = K->gemm(dt, false, false, Og, nl, CK, 1.0, wp + g * Og * CK * es, CK, 0,
                         cp + g * CK * nl * es, nl, 0, 0.0, tp + g * Og * nl * es, nl, 0, 1,
                         y->device);
        if (!rc)
            rc = K->col2im_batch(yp + n0 * G->O * L * es, tp, bc ? wf__conv_data(bc) : NULL, dt, cn, G->O,
                                 G->oh, G->ow, 1, 1, 1, 1, 0, 0, 1, 1, G->oh, G->ow, y->device);
    }
    return rc;
}

/* y (allocated [N,O,oh,ow], contiguous) = conv(x, w) + b. x, w contiguous. */
static int conv_forward(wf_tensor *y, wf_tensor *x, wf_tensor *w, wf_tensor *b, const conv_geom *G) {
    if (y->device.type == WF_DEV_META) wf__meta_flops_add(2 * wf_numel(y) * (G->C / G->g) * G->kh * G->kw);
    if (y->device.type == WF_DEV_META || wf_numel(y) == 0) return 0;
    const wf_kernels *K = wf__kernels(y->device);
    if (!K) return wf_error();
    wf_dtype dt = y->dtype;
    int nk = wf__need_kernel(K, "wf_conv2d", WF_OPF_KERNEL, WF_K_IM2COL, dt, y->device);
    if (!nk) nk = wf__need_kernel(K, "wf_conv2d", WF_OPF_KERNEL, WF_K_GEMM, dt, y->device);
    if (nk) return nk;
    int64_t es = (int64_t)wf_dtype_size(dt);
    int64_t L = G->oh * G->ow, Cg = G->C / G->g, Og = G->O / G->g;
    int64_t kk = (int64_t)G->kh * G->kw, CK = Cg * kk, HW = G->H * G->W;
    bool direct = G->kh == 1 && G->kw == 1 && G->sh == 1 && G->sw == 1 && G->ph == 0 && G->pw == 0;
    if (!direct && wf__supports(K, WF_OPF_KERNEL, WF_K_IM2COL_BATCH, dt) &&
        wf__supports(K, WF_OPF_KERNEL, WF_K_COL2IM_BATCH, dt))
        return conv_forward_batched(K, y, x, w, b, G);
    double beta = 0.0;
    int rc = 0;
    if (b) {
        int64_t bs[4] = { 1, G->O, 1, 1 }, bst[4] = { 0, b->stride[0], 0, 0 };
        wf_tensor *bv = wf__view_of(b, 4, bs, bst, b->offset);
        wf_tensor *be = bv ? wf__expand_raw(bv, 4, y->shape) : NULL;
        rc = be ? K->copy(y, be) : wf_error();
        if (rc) return rc;
        beta = 1.0;
    }
    char *xp = wf__conv_data(x), *wp = wf__conv_data(w), *yp = wf__conv_data(y);
    if (direct) {
        for (int g = 0; g < G->g && !rc; g++)
            rc = K->gemm(dt, false, false, Og, L, Cg, 1.0, wp + g * Og * CK * es, CK, 0,
                         xp + g * Cg * HW * es, L, G->C * HW, beta, yp + g * Og * L * es, L,
                         G->O * L, G->N, y->device);
        return rc;
    }
    /* per image: im2col, then one batched GEMM per group over the chunk */
    int64_t per = G->C * kk * L, chunk = wf__conv_chunk(G->N, per);
    wf_tensor *col = wf__empty((int64_t[]){ chunk, G->C * kk, L }, 3, dt, y->device);
    if (!col) return wf_error();
    char *cp = wf__conv_data(col);
    for (int64_t n0 = 0; n0 < G->N && !rc; n0 += chunk) {
        int64_t cn = G->N - n0 < chunk ? G->N - n0 : chunk;
        for (int64_t i = 0; i < cn && !rc; i++)
            rc = K->im2col(cp + i * per * es, xp + (n0 + i) * G->C * HW * es, dt, G->C, G->H, G->W,
                           G->kh, G->kw, G->sh, G->sw, G->ph, G->pw, G->dh, G->dw, G->oh, G->ow,
                           y->device);
        for (int g = 0; g < G->g && !rc; g++)
            rc = K->gemm(dt, false, false, Og, L, CK, 1.0, wp + g * Og * CK * es, CK, 0,
                         cp + g * CK * L * es, L, per, beta,
                         yp + (n0 * G->O + g * Og) * L * es, L, G->O * L, cn, y->device);
    }
    return rc;
}

static int conv_arg(const char *op, const char *what, int v, int dflt, int *out) {
    if (v < 0) return wf__error(WF_EINVAL, "%s: %s must be >= 0, got %d", op, what, v);
    *out = v ? v : dflt;
    return 0;
}

wf_tensor *wf__conv2d_raw(wf_tensor *x, wf_tensor *w, wf_tensor *b, const wf_conv2d_opts *o, int64_t *prm) {
    static const char *op = "wf_conv2d";
    char s1[96], s2[96];
    conv_geom G = { 0 };
    if (conv_arg(op, "stride", o->stride[0], 1, &G.sh) || conv_arg(op, "stride", o->stride[1], 1, &G.sw) ||
        conv_arg(op, "padding", o->padding[0], 0, &G.ph) || conv_arg(op, "padding", o->padding[1], 0, &G.pw) ||
        conv_arg(op, "dilation", o->dilation[0], 1, &G.dh) || conv_arg(op, "dilation", o->dilation[1], 1, &G.dw) ||
        conv_arg(op, "groups", o->groups, 1, &G.g))
        return NULL;
    G.N = x->shape[0]; G.C = x->shape[1]; G.H = x->shape[2]; G.W = x->shape[3];
    G.O = w->shape[0];
    if (w->shape[2] > 1 << 20 || w->shape[3] > 1 << 20 || w->shape[2] < 1 || w->shape[3] < 1) {
        wf__error(WF_ESHAPE, "%s: weight %s has an invalid kernel size", op, wf_shape_str(w, s1, sizeof s1));
        return NULL;
    }
    G.kh = (int)w->shape[2]; G.kw = (int)w->shape[3];
    if (G.C % G.g) {
        wf__error(WF_ESHAPE, "%s: input channels (%lld) are not divisible by groups (%d)", op,
                  (long long)G.C, G.g);
        return NULL;
    }
    if (G.O % G.g) {
        wf__error(WF_ESHAPE, "%s: weight %s: out_channels (%lld) are not divisible by groups (%d)", op,
                  wf_shape_str(w, s1, sizeof s1), (long long)G.O, G.g);
        return NULL;
    }
    if (w->shape[1] != G.C / G.g) {
        wf__error(WF_ESHAPE, "%s: input %s has %lld channels but weight %s expects %lld "
                  "(in_channels/groups = %lld, groups = %d)", op, wf_shape_str(x, s1, sizeof s1),
                  (long long)G.C, wf_shape_str(w, s2, sizeof s2), (long long)w->shape[1] * G.g,
                  (long long)w->shape[1], G.g);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != G.O)) {
        wf__error(WF_ESHAPE, "%s: bias must be [%lld] (out_channels of weight %s), got %s", op,
                  (long long)G.O, wf_shape_str(w, s1, sizeof s1), wf_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    int64_t ekh = (int64_t)G.dh * (G.kh - 1) + 1, ekw = (int64_t)G.dw * (G.kw - 1) + 1;
    int64_t phh = G.H + 2 * (int64_t)G.ph, pww = G.W + 2 * (int64_t)G.pw;
    if (ekh > phh || ekw > pww) {
        wf__error(WF_ESHAPE, "%s: kernel %dx%d (dilation %dx%d, so %lldx%lld) is bigger than the "
                  "padded input %lldx%lld of %s", op, G.kh, G.kw, G.dh, G.dw, (long long)ekh,
                  (long long)ekw, (long long)phh, (long long)pww, wf_shape_str(x, s1, sizeof s1));
        return NULL;
    }
    G.oh = (phh - ekh) / G.sh + 1;
    G.ow = (pww - ekw) / G.sw + 1;

    wf_tensor *y = NULL;
    const wf_kernels *K = wf__kernels(x->device);
    wf_tensor *xc = K ? wf__conv_contig(x, K) : NULL, *wc = xc ? wf__conv_contig(w, K) : NULL;
    if (wc) y = wf__empty((int64_t[]){ G.N, G.O, G.oh, G.ow }, 4, x->dtype, x->device);
    if (y && conv_forward(y, xc, wc, b, &G)) { wf_tensor_free(y); y = NULL; }
    if (y) {
        int64_t p[7] = { G.sh, G.sw, G.ph, G.pw, G.dh, G.dw, G.g };
        memcpy(prm, p, sizeof p);
    }
    return y;
}

/* An f16/bf16 input on a backend that has the op's kernel for f32 but not for this dtype
 * (the CPU's conv and pools): the op runs in f32 and rounds back. */
bool wf__conv_via_f32(const wf_tensor *x, wf_kernel_op kop) {
    if (x->dtype != WF_F16 && x->dtype != WF_BF16) return false;
    const wf_kernels *K = wf__kernels(x->device);
    return K && !wf__supports(K, WF_OPF_KERNEL, kop, x->dtype) && wf__supports(K, WF_OPF_KERNEL, kop, WF_F32);
}

int wf__conv2d_check(wf_tensor *x, wf_tensor *w, wf_tensor *b) {
    static const char *op = "wf_conv2d";
    if (wf__check_image(op, x) || check_same(op, "weight", x, w) || (b && check_same(op, "bias", x, b)))
        return wf_error();
    if (w->ndim != 4) {
        char s[96];
        return wf__error(WF_ESHAPE, "%s: weight must be 4-D [out_channels, in_channels/groups, kh, kw], got %s",
                         op, wf_shape_str(w, s, sizeof s));
    }
    return 0;
}

/* ---------------------------------------------------------------- pooling */

typedef struct { int k[2], s[2], p[2], d[2]; int64_t oh, ow; } pool_geom;

/* PyTorch's pooling_output_shape, ceil_mode included: the last window must start inside
 * the input or the left padding. */
static int64_t pool_out(int64_t in, int k, int s, int p, int d, bool ceil_mode) {
    int64_t num = in + 2 * (int64_t)p - (int64_t)d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

static int pool_setup(const char *op, wf_tensor *x, const wf_pool2d_opts *o, bool is_max, pool_geom *P) {
    if (!o) return wf__error(WF_EINVAL, "%s: options with a kernel size are required", op);
    char s1[96];
    for (int i = 0; i < 2; i++) {
        if (o->kernel[i] <= 0)
            return wf__error(WF_EINVAL, "%s: kernel size must be > 0, got %dx%d", op, o->kernel[0], o->kernel[1]);
        if (o->stride[i] < 0 || o->padding[i] < 0 || o->dilation[i] < 0)
            return wf__error(WF_EINVAL, "%s: stride, padding and dilation must be >= 0", op);
        P->k[i] = o->kernel[i];
        P->s[i] = o->stride[i] ? o->stride[i] : o->kernel[i];
        P->p[i] = o->padding[i];
        P->d[i] = o->dilation[i] ? o->dilation[i] : 1;
        if (!is_max && P->d[i] != 1)
            return wf__error(WF_EINVAL, "%s: dilation is not supported (got %d)", op, P->d[i]);
        int64_t eff = (int64_t)P->d[i] * (P->k[i] - 1) + 1;
        if ((is_max && 2 * (int64_t)P->p[i] > eff) || (!is_max && P->p[i] > P->k[i] / 2))
            return wf__error(WF_EINVAL, "%s: padding %d should be at most half of the kernel size %d%s",
                             op, P->p[i], P->k[i], is_max && P->d[i] > 1 ? " (dilated)" : "");
    }
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    P->oh = pool_out(H, P->k[0], P->s[0], P->p[0], P->d[0], o->ceil_mode);
    P->ow = pool_out(W, P->k[1], P->s[1], P->p[1], P->d[1], o->ceil_mode);
    if (P->oh < 1 || P->ow < 1)
        return wf__error(WF_ESHAPE, "%s: input %s is too small for kernel %dx%d (stride %dx%d, padding "
                         "%dx%d, dilation %dx%d): output would be %lldx%lld", op,
                         wf_shape_str(x, s1, sizeof s1), P->k[0], P->k[1], P->s[0], P->s[1], P->p[0],
                         P->p[1], P->d[0], P->d[1], (long long)P->oh, (long long)P->ow);
    return 0;
}

static void out_shape(const wf_tensor *x, int64_t oh, int64_t ow, int64_t *shape) {
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 2] = oh;
    shape[x->ndim - 1] = ow;
}

wf_tensor *wf__max_pool2d_raw(wf_tensor *x, const wf_pool2d_opts *opts, wf_tensor **argmax) {
    static const char *op = "wf_max_pool2d";
    pool_geom P;
    if (wf__check_image(op, x) || pool_setup(op, x, opts, true, &P)) return NULL;
    int64_t shape[4];
    out_shape(x, P.oh, P.ow, shape);
    wf_tensor *y = NULL;
    const wf_kernels *K = wf__kernels(x->device);
    wf_tensor *xc = K ? wf__conv_contig(x, K) : NULL;
    wf_tensor *yy = xc ? wf__empty(shape, x->ndim, x->dtype, x->device) : NULL;
    wf_tensor *am = yy ? wf__empty(shape, x->ndim, WF_I64, x->device) : NULL;
    if (am) {
        int rc = 0;
        if (x->device.type != WF_DEV_META && wf_numel(yy) > 0) {
            rc = wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_MAX_POOL2D, x->dtype, x->device);
            wf_tensor *x4 = rc ? NULL : wf__conv_as4d(xc), *y4 = x4 ? wf__conv_as4d(yy) : NULL, *a4 = y4 ? wf__conv_as4d(am) : NULL;
            if (!rc) rc = a4 ? K->max_pool2d(y4, a4, x4, P.k, P.s, P.p, P.d) : wf_error();
        }
        if (!rc) {
            y = yy;
            *argmax = am;
        }
    }
    return y;
}

static wf_tensor *avg_pool_impl(const char *op, wf_tensor *x, const pool_geom *P, bool cip, int64_t *prm) {
    int64_t shape[4];
    out_shape(x, P->oh, P->ow, shape);
    wf_tensor *y = NULL;
    const wf_kernels *K = wf__kernels(x->device);
    wf_tensor *xc = K ? wf__conv_contig(x, K) : NULL;
    wf_tensor *yy = xc ? wf__empty(shape, x->ndim, x->dtype, x->device) : NULL;
    if (yy) {
        int rc = 0;
        if (x->device.type != WF_DEV_META && wf_numel(yy) > 0) {
            rc = wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_AVG_POOL2D, x->dtype, x->device);
            wf_tensor *x4 = rc ? NULL : wf__conv_as4d(xc), *y4 = x4 ? wf__conv_as4d(yy) : NULL;
            if (!rc) rc = y4 ? K->avg_pool2d(y4, x4, P->k, P->s, P->p, cip) : wf_error();
        }
        if (!rc) {
            y = yy;
            int64_t v[7] = { P->k[0], P->k[1], P->s[0], P->s[1], P->p[0], P->p[1], cip };
            memcpy(prm, v, sizeof v);
        }
    }
    return y;
}

wf_tensor *wf__avg_pool2d_raw(wf_tensor *x, const wf_pool2d_opts *opts, int64_t *prm) {
    static const char *op = "wf_avg_pool2d";
    pool_geom P;
    if (wf__check_image(op, x) || pool_setup(op, x, opts, false, &P)) return NULL;
    return avg_pool_impl(op, x, &P, !opts->count_include_pad_false, prm);
}

/* ---------------------------------------------------------------- adaptive average pool */

static inline int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static inline int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

#define DEFINE_ADAPTIVE(T, S)                                                                   \
    static void adaptive_##S(T *y, const T *x, int64_t planes, int64_t H, int64_t W, int64_t oh, \
                             int64_t ow) {                                                      \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            const T *xp = x + pl * H * W;                                                       \
            for (int64_t i = 0; i < oh; i++) {                                                  \
                int64_t h0 = bin_start(i, H, oh), h1 = bin_end(i, H, oh);                       \
                for (int64_t j = 0; j < ow; j++) {                                              \
                    int64_t w0 = bin_start(j, W, ow), w1 = bin_end(j, W, ow);                   \
                    T acc = 0;                                                                  \
                    for (int64_t h = h0; h < h1; h++)                                           \
                        for (int64_t w = w0; w < w1; w++) acc += xp[h * W + w];                 \
                    y[(pl * oh + i) * ow + j] = acc / (T)((h1 - h0) * (w1 - w0));              \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void adaptive_bw_##S(T *gx, const T *gy, int64_t planes, int64_t H, int64_t W,      \
                                int64_t oh, int64_t ow) {                                       \
        for (int64_t i = 0; i < planes * H * W; i++) gx[i] = 0;                                 \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            T *gp = gx + pl * H * W;                                                            \
            for (int64_t i = 0; i < oh; i++) {                                                  \
                int64_t h0 = bin_start(i, H, oh), h1 = bin_end(i, H, oh);                       \
                for (int64_t j = 0; j < ow; j++) {                                              \
                    int64_t w0 = bin_start(j, W, ow), w1 = bin_end(j, W, ow);                   \
                    T v = gy[(pl * oh + i) * ow + j] / (T)((h1 - h0) * (w1 - w0));              \
                    for (int64_t h = h0; h < h1; h++)                                           \
                        for (int64_t w = w0; w < w1; w++) gp[h * W + w] += v;                   \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_ADAPTIVE(float, f32)
DEFINE_ADAPTIVE(double, f64)

static int adaptive_dims(const wf_tensor *big, const wf_tensor *small, int64_t *planes, int64_t *H,
                         int64_t *W, int64_t *oh, int64_t *ow) {
    *H = big->shape[big->ndim - 2]; *W = big->shape[big->ndim - 1];
    *oh = small->shape[small->ndim - 2]; *ow = small->shape[small->ndim - 1];
    *planes = (*H * *W > 0) ? wf_numel(big) / (*H * *W) : 0;
    if (big->dtype != WF_F32 && big->dtype != WF_F64)
        return wf__error(WF_EDTYPE, "wf_adaptive_avg_pool2d (cpu): dtype %s is not supported "
                         "(float32/float64 only)", wf_dtype_name(big->dtype));
    return 0;
}

int wf__cpu_adaptive_avg_pool2d(wf_tensor *y, const wf_tensor *x) {
    int64_t planes, H, W, oh, ow;
    if (adaptive_dims(x, y, &planes, &H, &W, &oh, &ow)) return wf_error();
    if (x->dtype == WF_F32) adaptive_f32((float *)wf__conv_data(y), (const float *)wf__conv_data(x), planes, H, W, oh, ow);
    else adaptive_f64((double *)wf__conv_data(y), (const double *)wf__conv_data(x), planes, H, W, oh, ow);
    return 0;
}

int wf__cpu_adaptive_avg_pool2d_backward(wf_tensor *gx, const wf_tensor *gy) {
    int64_t planes, H, W, oh, ow;
    if (adaptive_dims(gx, gy, &planes, &H, &W, &oh, &ow)) return wf_error();
    if (gx->dtype == WF_F32) adaptive_bw_f32((float *)wf__conv_data(gx), (const float *)wf__conv_data(gy), planes, H, W, oh, ow);
    else adaptive_bw_f64((double *)wf__conv_data(gx), (const double *)wf__conv_data(gy), planes, H, W, oh, ow);
    return 0;
}

wf_tensor *wf__adaptive_avg_pool2d_raw(wf_tensor *x, int64_t oh, int64_t ow, bool *equal_bins, int64_t *prm) {
    static const char *op = "wf_adaptive_avg_pool2d";
    *equal_bins = false;
    if (wf__check_image(op, x)) return NULL;
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    char s1[96];
    if (oh < 1 || ow < 1) {
        wf__error(WF_EINVAL, "%s: output size must be >= 1, got %lldx%lld", op, (long long)oh, (long long)ow);
        return NULL;
    }
    if (H < 1 || W < 1) {
        wf__error(WF_ESHAPE, "%s: input %s has an empty plane", op, wf_shape_str(x, s1, sizeof s1));
        return NULL;
    }
    if (H % oh == 0 && W % ow == 0 && H / oh <= 1 << 20 && W / ow <= 1 << 20) {
        /* equal bins: exactly an average pool with kernel = stride = H/oh x W/ow */
        pool_geom P = { { (int)(H / oh), (int)(W / ow) }, { (int)(H / oh), (int)(W / ow) }, { 0, 0 },
                        { 1, 1 }, oh, ow };
        *equal_bins = true;
        return avg_pool_impl(op, x, &P, true, prm);
    }
    /* unequal bins: the backend's adaptive kernel, or WF_ENOTSUP (never another device's loops) */
    const wf_kernels *K = wf__kernels(x->device);
    if (!K || wf__need_kernel(K, op, WF_OPF_KERNEL, WF_K_ADAPTIVE_AVG_POOL2D, x->dtype, x->device)) return NULL;
    int64_t shape[4];
    out_shape(x, oh, ow, shape);
    wf_tensor *xc = wf__conv_contig(x, K);
    wf_tensor *yy = xc ? wf__empty(shape, x->ndim, x->dtype, x->device) : NULL;
    if (yy && (x->device.type == WF_DEV_META || !K->adaptive_avg_pool2d(yy, xc))) return yy;
    return NULL;
}
