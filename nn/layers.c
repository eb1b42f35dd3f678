/* nn/layers.c: the standard layers (Linear, Conv2d, pooling, norms, Embedding, Dropout,
 * activations, Flatten, Identity) and the containers (Sequential, ModuleList, ModuleDict). */
#include "nn_impl.h"
#include "weft_config.h"
#ifndef WEFT_MINIMAL
#include "../autograd/fn_fp8_linear.h"
#endif

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Fail a constructor: free the half-built module, return NULL (error already recorded). */
static wf_module *fail(wf_module *m) {
    wf_module_free(m);
    return NULL;
}

static wf_tensor *new_param(const int64_t *shape, int nd) {
    return wf_empty(shape, nd, WF_DTYPE_DEFAULT);
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for biases, as reset_parameters does */
static int bias_init(wf_tensor *b, int64_t fan_in) {
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    return wf_init_uniform_(b, -bound, bound);
}

static char *layer_desc(wf_module *m, char *buf, size_t n) { return wf__module_desc(m, buf, n); }

/* ================================================================ Linear */

/* fp8: the "transformer-engine" precision's scaling state (autograd/fn_fp8_linear.c), made on
 * the first fp8 forward; owned here, neither a parameter nor a buffer (not in checkpoints) */
typedef struct linear { wf_module base; int64_t in, out; wf_tensor *fp8; } linear;

static void linear_free_extra(wf_module *m) {
    linear *l = (linear *)m;
    wf_tensor_free(l->fp8);
    l->fp8 = NULL;
}

static void linear_repr(const wf_module *m, char *buf, size_t n) {
    const linear *l = (const linear *)m;
    snprintf(buf, n, "in_features=%lld, out_features=%lld, bias=%s", (long long)l->in, (long long)l->out,
             wf_module_get_parameter(m, "bias") ? "True" : "False");
}

static wf_tensor *linear_forward(wf_module *m, wf_tensor *x) {
    linear *l = (linear *)m;
    if (wf_ndim(x) < 1 || wf_shape(x)[wf_ndim(x) - 1] != l->in) {
        char d[200], b[96];
        wf__error(WF_ESHAPE, "%s: input of shape %s has %lld features in its last dimension, expected %lld",
                  layer_desc(m, d, sizeof d), wf_shape_str(x, b, sizeof b),
                  (long long)(wf_ndim(x) ? wf_shape(x)[wf_ndim(x) - 1] : 0), (long long)l->in);
        return NULL;
    }
#ifndef WEFT_MINIMAL
    /* under "transformer-engine": the three GEMMs in fp8 where cuBLASLt's fp8 kernels take the
     * sizes (multiples of 16; the rows are checked there), else bf16 autocast as below */
    if (wf_fp8_autocast_enabled() && l->in % 16 == 0 && l->out % 16 == 0)
        return wf__fp8_linear(x, wf_module_get_parameter(m, "weight"), wf_module_get_parameter(m, "bias"), &l->fp8);
#endif
    return wf_linear(x, wf_module_get_parameter(m, "weight"), wf_module_get_parameter(m, "bias"));
}

static const wf_module_vtable linear_vt = { .forward = linear_forward, .free_extra = linear_free_extra,
                                            .extra_repr = linear_repr };

static wf_module *wf_linear_new__body(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features < 0 || out_features < 0) {
        wf__error(WF_EINVAL, "wf_linear_new: sizes must be non-negative, got in_features=%lld, out_features=%lld",
                  (long long)in_features, (long long)out_features);
        return NULL;
    }
    linear *l = wf__module_new(sizeof *l, "Linear", &linear_vt);
    if (!l) return NULL;
    l->in = in_features;
    l->out = out_features;
    wf_module *m = &l->base;
    wf_tensor *w = new_param(WF_SHAPE(out_features, in_features));
    if (w && wf_init_kaiming_uniform_(w, sqrt(5.0), WF_FAN_IN, "leaky_relu")) { wf_tensor_free(w); w = NULL; }
    if (wf__param(m, "weight", w)) return fail(m);
    if (bias) {
        wf_tensor *b = new_param(WF_SHAPE(out_features));
        if (b && bias_init(b, in_features)) { wf_tensor_free(b); b = NULL; }
        if (wf__param(m, "bias", b)) return fail(m);
    }
    return m;
}

wf_module *wf_linear_new(int64_t in_features, int64_t out_features, bool bias) {
    WF__NAMED("wf_linear_new", wf_module *, !r, wf_linear_new__body(in_features, out_features, bias));
}

/* ================================================================ Conv2d */

typedef struct conv2d { wf_module base; int64_t in, out; wf_conv2d_opts o; int k[2]; } conv2d;

static void conv2d_repr(const wf_module *m, char *buf, size_t n) {
    const conv2d *c = (const conv2d *)m;
    int len = snprintf(buf, n, "%lld, %lld, kernel_size=(%d, %d), stride=(%d, %d)", (long long)c->in, (long long)c->out,
                       c->k[0], c->k[1], c->o.stride[0], c->o.stride[1]);
    if (len < 0 || (size_t)len >= n) return;
    if (c->o.padding[0] || c->o.padding[1])
        len += snprintf(buf + len, n - (size_t)len, ", padding=(%d, %d)", c->o.padding[0], c->o.padding[1]);
    if ((size_t)len < n && (c->o.dilation[0] != 1 || c->o.dilation[1] != 1))
        len += snprintf(buf + len, n - (size_t)len, ", dilation=(%d, %d)", c->o.dilation[0], c->o.dilation[1]);
    if ((size_t)len < n && c->o.groups != 1) len += snprintf(buf + len, n - (size_t)len, ", groups=%d", c->o.groups);
    if ((size_t)len < n && !wf_module_get_parameter(m, "bias")) snprintf(buf + len, n - (size_t)len, ", bias=False");
}

static wf_tensor *conv2d_forward(wf_module *m, wf_tensor *x) {
    conv2d *c = (conv2d *)m;
    char d[200], b[96];
    if (wf_ndim(x) != 3 && wf_ndim(x) != 4) {
        wf__error(WF_ESHAPE, "%s: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got %d-D input of shape %s",
                  layer_desc(m, d, sizeof d), wf_ndim(x), wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    int64_t C = wf_shape(x)[wf_ndim(x) - 3];
    if (C != c->in) {
        wf__error(WF_ESHAPE, "%s: input of shape %s has %lld channels, expected %lld", layer_desc(m, d, sizeof d),
                  wf_shape_str(x, b, sizeof b), (long long)C, (long long)c->in);
        return NULL;
    }
    wf_tensor *w = wf_module_get_parameter(m, "weight"), *bias = wf_module_get_parameter(m, "bias");
    if (wf_ndim(x) == 4) return wf_conv2d(x, w, bias, &c->o);
    wf_scope_begin();
    wf_tensor *y = wf_squeeze(wf_conv2d(wf_unsqueeze(x, 0), w, bias, &c->o), 0);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

static const wf_module_vtable conv2d_vt = { .forward = conv2d_forward, .extra_repr = conv2d_repr };

static wf_module *wf_conv2d_new__body(int64_t in_channels, int64_t out_channels, const wf_conv2d_layer_opts *opts) {
    const char *op = "wf_conv2d_new";
    wf_conv2d_layer_opts o = opts ? *opts : (wf_conv2d_layer_opts){ 0 };
    int kh = o.kernel_size[0], kw = o.kernel_size[1] ? o.kernel_size[1] : o.kernel_size[0];
    int groups = o.groups ? o.groups : 1;
    if (in_channels <= 0 || out_channels <= 0) {
        wf__error(WF_EINVAL, "%s: in_channels and out_channels must be positive, got %lld and %lld", op,
                  (long long)in_channels, (long long)out_channels);
        return NULL;
    }
    if (kh <= 0 || kw <= 0) {
        wf__error(WF_EINVAL, "%s: kernel_size must be positive, got (%d, %d)", op, kh, kw);
        return NULL;
    }
    if (groups < 0 || in_channels % groups || out_channels % groups) {
        wf__error(WF_EINVAL, "%s: in_channels (%lld) and out_channels (%lld) must be divisible by groups (%d)", op,
                  (long long)in_channels, (long long)out_channels, groups);
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        if (o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0) {
            wf__error(WF_EINVAL, "%s: stride, padding and dilation must be non-negative", op);
            return NULL;
        }
    conv2d *c = wf__module_new(sizeof *c, "Conv2d", &conv2d_vt);
    if (!c) return NULL;
    c->in = in_channels;
    c->out = out_channels;
    c->k[0] = kh;
    c->k[1] = kw;
    for (int i = 0; i < 2; i++) {
        c->o.stride[i] = o.stride[i] ? o.stride[i] : 1;
        c->o.padding[i] = o.padding[i];
        c->o.dilation[i] = o.dilation[i] ? o.dilation[i] : 1;
    }
    c->o.groups = groups;
    wf_module *m = &c->base;
    wf_tensor *w = new_param(WF_SHAPE(out_channels, in_channels / groups, kh, kw));
    if (w && wf_init_kaiming_uniform_(w, sqrt(5.0), WF_FAN_IN, "leaky_relu")) { wf_tensor_free(w); w = NULL; }
    if (wf__param(m, "weight", w)) return fail(m);
    if (!o.no_bias) {
        wf_tensor *b = new_param(WF_SHAPE(out_channels));
        if (b && bias_init(b, in_channels / groups * kh * kw)) { wf_tensor_free(b); b = NULL; }
        if (wf__param(m, "bias", b)) return fail(m);
    }
    return m;
}

wf_module *wf_conv2d_new(int64_t in_channels, int64_t out_channels, const wf_conv2d_layer_opts *opts) {
    WF__NAMED("wf_conv2d_new", wf_module *, !r, wf_conv2d_new__body(in_channels, out_channels, opts));
}

/* ================================================================ pooling */

typedef struct pool2d { wf_module base; wf_pool2d_opts o; int64_t oh, ow; } pool2d;

static void pair_text(char *b, size_t n, int a, int c) {
    if (a == c) snprintf(b, n, "%d", a);
    else snprintf(b, n, "(%d, %d)", a, c);
}

static void pool_repr(const wf_module *m, char *buf, size_t n) {
    const pool2d *p = (const pool2d *)m;
    if (strcmp(m->type_name, "AdaptiveAvgPool2d") == 0) {
        snprintf(buf, n, "output_size=(%lld, %lld)", (long long)p->oh, (long long)p->ow);
        return;
    }
    /* PyTorch prints the values as given: one int for square settings */
    char k[32], st[32], pd[32], dl[32];
    int sh = p->o.stride[0] ? p->o.stride[0] : p->o.kernel[0], sw = p->o.stride[1] ? p->o.stride[1] : p->o.kernel[1];
    int dh = p->o.dilation[0] ? p->o.dilation[0] : 1, dw = p->o.dilation[1] ? p->o.dilation[1] : 1;
    pair_text(k, sizeof k, p->o.kernel[0], p->o.kernel[1]);
    pair_text(st, sizeof st, sh, sw);
    pair_text(pd, sizeof pd, p->o.padding[0], p->o.padding[1]);
    pair_text(dl, sizeof dl, dh, dw);
    if (strcmp(m->type_name, "MaxPool2d") == 0)
        snprintf(buf, n, "kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", k, st, pd, dl,
                 p->o.ceil_mode ? "True" : "False");
    else
        snprintf(buf, n, "kernel_size=%s, stride=%s, padding=%s", k, st, pd);
}

static int pool_check(wf_module *m, wf_tensor *x) {
    if (wf_ndim(x) == 3 || wf_ndim(x) == 4) return 0;
    char d[200], b[96];
    return wf__error(WF_ESHAPE, "%s: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape %s",
                     layer_desc(m, d, sizeof d), wf_shape_str(x, b, sizeof b));
}

static wf_tensor *pool_apply(wf_module *m, wf_tensor *x) {
    pool2d *p = (pool2d *)m;
    if (strcmp(m->type_name, "MaxPool2d") == 0) return wf_max_pool2d(x, &p->o);
    if (strcmp(m->type_name, "AvgPool2d") == 0) return wf_avg_pool2d(x, &p->o);
    return wf_adaptive_avg_pool2d(x, p->oh, p->ow);
}

static wf_tensor *pool_forward(wf_module *m, wf_tensor *x) {
    if (pool_check(m, x)) return NULL;
    if (wf_ndim(x) == 4) return pool_apply(m, x);
    wf_scope_begin();
    wf_tensor *y = wf_squeeze(pool_apply(m, wf_unsqueeze(x, 0)), 0);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

static const wf_module_vtable pool_vt = { .forward = pool_forward, .extra_repr = pool_repr };

static wf_module *pool_new(const char *type, const wf_pool2d_opts *opts) {
    if (!opts) { wf__error(WF_ENULL, "wf_%s_new: options (kernel size) are required", type); return NULL; }
    wf_pool2d_opts o = *opts;
    if (o.kernel[1] == 0) o.kernel[1] = o.kernel[0];
    if (o.stride[0] && !o.stride[1]) o.stride[1] = o.stride[0];
    if (o.kernel[0] <= 0 || o.kernel[1] <= 0) {
        wf__error(WF_EINVAL, "%s: kernel_size must be positive, got (%d, %d)", type, o.kernel[0], o.kernel[1]);
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        if (o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0) {
            wf__error(WF_EINVAL, "%s: stride, padding and dilation must be non-negative", type);
            return NULL;
        }
    pool2d *p = wf__module_new(sizeof *p, type, &pool_vt);
    if (p) p->o = o;
    return p ? &p->base : NULL;
}

static wf_module *wf_max_pool2d_new__body(const wf_pool2d_opts *opts) { return pool_new("MaxPool2d", opts); }

wf_module *wf_max_pool2d_new(const wf_pool2d_opts *opts) {
    WF__NAMED("wf_max_pool2d_new", wf_module *, !r, wf_max_pool2d_new__body(opts));
}

static wf_module *wf_avg_pool2d_new__body(const wf_pool2d_opts *opts) { return pool_new("AvgPool2d", opts); }

wf_module *wf_avg_pool2d_new(const wf_pool2d_opts *opts) {
    WF__NAMED("wf_avg_pool2d_new", wf_module *, !r, wf_avg_pool2d_new__body(opts));
}

static wf_module *wf_adaptive_avg_pool2d_new__body(int64_t out_h, int64_t out_w) {
    if (out_h <= 0 || out_w <= 0) {
        wf__error(WF_EINVAL, "wf_adaptive_avg_pool2d_new: output size must be positive, got (%lld, %lld)",
                  (long long)out_h, (long long)out_w);
        return NULL;
    }
    pool2d *p = wf__module_new(sizeof *p, "AdaptiveAvgPool2d", &pool_vt);
    if (!p) return NULL;
    p->oh = out_h;
    p->ow = out_w;
    return &p->base;
}

wf_module *wf_adaptive_avg_pool2d_new(int64_t out_h, int64_t out_w) {
    WF__NAMED("wf_adaptive_avg_pool2d_new", wf_module *, !r, wf_adaptive_avg_pool2d_new__body(out_h, out_w));
}

/* ================================================================ BatchNorm */

typedef struct batch_norm { wf_module base; int64_t C; wf_batch_norm_opts o; int dim; } batch_norm;

static void bn_repr(const wf_module *m, char *buf, size_t n) {
    const batch_norm *b = (const batch_norm *)m;
    snprintf(buf, n, "%lld, eps=%g, momentum=%g, affine=%s, track_running_stats=%s", (long long)b->C, b->o.eps,
             b->o.momentum, b->o.no_affine ? "False" : "True", b->o.no_track_running_stats ? "False" : "True");
}

static wf_tensor *bn_forward(wf_module *m, wf_tensor *x) {
    batch_norm *bn = (batch_norm *)m;
    char d[200], b[96];
    bool ok = bn->dim == 2 ? wf_ndim(x) == 4 : (wf_ndim(x) == 2 || wf_ndim(x) == 3);
    if (!ok) {
        wf__error(WF_ESHAPE, "%s: expected %s input, got shape %s", layer_desc(m, d, sizeof d),
                  bn->dim == 2 ? "4-D [N, C, H, W]" : "2-D [N, C] or 3-D [N, C, L]", wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    if (wf_shape(x)[1] != bn->C) {
        wf__error(WF_ESHAPE, "%s: input of shape %s has %lld channels, expected %lld", layer_desc(m, d, sizeof d),
                  wf_shape_str(x, b, sizeof b), (long long)wf_shape(x)[1], (long long)bn->C);
        return NULL;
    }
    bool track = !bn->o.no_track_running_stats;
    double factor = bn->o.momentum;
    wf_tensor *rm = wf_module_get_buffer(m, "running_mean"), *rv = wf_module_get_buffer(m, "running_var");
    if (m->training && track) {
        wf_tensor *nbt = wf_module_get_buffer(m, "num_batches_tracked");
        /* PyTorch rejects a batch of one value per channel before counting it */
        if (wf_numel(x) / (bn->C ? bn->C : 1) <= 1) {
            wf__error(WF_ESHAPE, "%s: expected more than 1 value per channel when training, got input size %s",
                      layer_desc(m, d, sizeof d), wf_shape_str(x, b, sizeof b));
            return NULL;
        }
        bool prev = wf_set_grad_enabled(false);
        int rc = wf_add_scalar_(nbt, 1.0);
        wf_set_grad_enabled(prev);
        if (rc) return NULL;
        if (bn->o.cumulative_average) factor = 1.0 / wf_item(nbt);
    }
    bool use_batch = m->training || !track;
    return wf_batch_norm(x, (!m->training || track) ? rm : NULL, (!m->training || track) ? rv : NULL,
                         wf_module_get_parameter(m, "weight"), wf_module_get_parameter(m, "bias"), use_batch, factor,
                         bn->o.eps);
}

static const wf_module_vtable bn_vt = { .forward = bn_forward, .extra_repr = bn_repr };

static wf_module *bn_new(const char *type, int dim, int64_t C, const wf_batch_norm_opts *opts) {
    if (C <= 0) {
        wf__error(WF_EINVAL, "wf_%s_new: num_features must be positive, got %lld", dim == 2 ? "batch_norm2d" : "batch_norm1d",
                  (long long)C);
        return NULL;
    }
    wf_batch_norm_opts o = opts ? *opts : (wf_batch_norm_opts){ 0 };
    if (o.eps == 0) o.eps = 1e-5;
    if (o.momentum == 0) o.momentum = 0.1;
    if (o.eps < 0 || o.momentum < 0 || o.momentum > 1) {
        wf__error(WF_EINVAL, "%s: eps must be positive and momentum in [0, 1], got eps=%g momentum=%g", type, o.eps, o.momentum);
        return NULL;
    }
    batch_norm *bn = wf__module_new(sizeof *bn, type, &bn_vt);
    if (!bn) return NULL;
    bn->C = C;
    bn->o = o;
    bn->dim = dim;
    wf_module *m = &bn->base;
    if (!o.no_affine) {
        if (wf__param(m, "weight", wf_ones(WF_SHAPE(C), WF_DTYPE_DEFAULT))) return fail(m);
        if (wf__param(m, "bias", wf_zeros(WF_SHAPE(C), WF_DTYPE_DEFAULT))) return fail(m);
    }
    if (!o.no_track_running_stats) {
        if (wf__buffer(m, "running_mean", wf_zeros(WF_SHAPE(C), WF_DTYPE_DEFAULT))) return fail(m);
        if (wf__buffer(m, "running_var", wf_ones(WF_SHAPE(C), WF_DTYPE_DEFAULT))) return fail(m);
        if (wf__buffer(m, "num_batches_tracked", wf_scalar(0, WF_I64))) return fail(m);
    }
    return m;
}

static wf_module *wf_batch_norm1d_new__body(int64_t num_features, const wf_batch_norm_opts *opts) {
    return bn_new("BatchNorm1d", 1, num_features, opts);
}

wf_module *wf_batch_norm1d_new(int64_t num_features, const wf_batch_norm_opts *opts) {
    WF__NAMED("wf_batch_norm1d_new", wf_module *, !r, wf_batch_norm1d_new__body(num_features, opts));
}

static wf_module *wf_batch_norm2d_new__body(int64_t num_features, const wf_batch_norm_opts *opts) {
    return bn_new("BatchNorm2d", 2, num_features, opts);
}

wf_module *wf_batch_norm2d_new(int64_t num_features, const wf_batch_norm_opts *opts) {
    WF__NAMED("wf_batch_norm2d_new", wf_module *, !r, wf_batch_norm2d_new__body(num_features, opts));
}

/* ================================================================ LayerNorm, RMSNorm */

typedef struct norm_layer {
    wf_module base;
    int64_t shape[WF_MAX_DIMS];
    int nd;
    double eps;
    bool autocast_output;   /* LayerNorm: y in autocast's low dtype inside a region (nn.h) */
} norm_layer;

static void norm_repr(const wf_module *m, char *buf, size_t n) {
    const norm_layer *l = (const norm_layer *)m;
    char s[128];
    wf__shape_text(l->nd, l->shape, s, sizeof s);
    bool affine = wf_module_get_parameter(m, "weight") != NULL;
    if (l->eps > 0) snprintf(buf, n, "%s, eps=%g, elementwise_affine=%s", s, l->eps, affine ? "True" : "False");
    else snprintf(buf, n, "%s, eps=None, elementwise_affine=%s", s, affine ? "True" : "False");
}

static wf_tensor *layer_norm_forward(wf_module *m, wf_tensor *x) {
    norm_layer *l = (norm_layer *)m;
    wf_dtype out = WF_DTYPE_DEFAULT;   /* as torch.autocast: f32 */
    if (l->autocast_output && x) {     /* the low dtype of x's device type's region, if one is on */
        wf__autocast_state st;
        wf__autocast_capture(&st);
        int d = (int)wf_tensor_device(x).type;
        if (d >= 0 && d < 2 && st.on[d]) out = st.low[d];
    }
    return wf_layer_norm_out_dtype(x, l->shape, l->nd, wf_module_get_parameter(m, "weight"),
                                   wf_module_get_parameter(m, "bias"), l->eps, out);
}
static wf_tensor *rms_norm_forward(wf_module *m, wf_tensor *x) {
    norm_layer *l = (norm_layer *)m;
    return wf_rms_norm(x, l->shape, l->nd, wf_module_get_parameter(m, "weight"), l->eps);
}
static const wf_module_vtable layer_norm_vt = { .forward = layer_norm_forward, .extra_repr = norm_repr };
static const wf_module_vtable rms_norm_vt = { .forward = rms_norm_forward, .extra_repr = norm_repr };

static wf_module *norm_new(const char *type, const wf_module_vtable *vt, const int64_t *shape, int nd, double eps,
                           bool affine, bool bias) {
    if (!shape || nd < 1 || nd > WF_MAX_DIMS) {
        wf__error(WF_EINVAL, "%s: normalized_shape needs 1 to %d dims, got %d", type, WF_MAX_DIMS, nd);
        return NULL;
    }
    for (int i = 0; i < nd; i++)
        if (shape[i] < 0) {
            wf__error(WF_EINVAL, "%s: normalized_shape has a negative size %lld", type, (long long)shape[i]);
            return NULL;
        }
    if (eps < 0) { wf__error(WF_EINVAL, "%s: eps must be non-negative, got %g", type, eps); return NULL; }
    norm_layer *l = wf__module_new(sizeof *l, type, vt);
    if (!l) return NULL;
    memcpy(l->shape, shape, sizeof(int64_t) * (size_t)nd);
    l->nd = nd;
    l->eps = eps;
    wf_module *m = &l->base;
    if (affine) {
        if (wf__param(m, "weight", wf_ones(shape, nd, WF_DTYPE_DEFAULT))) return fail(m);
        if (bias && wf__param(m, "bias", wf_zeros(shape, nd, WF_DTYPE_DEFAULT))) return fail(m);
    }
    return m;
}

static wf_module *wf_layer_norm_new__body(const int64_t *normalized_shape, int ndim, const wf_layer_norm_opts *opts) {
    wf_layer_norm_opts o = opts ? *opts : (wf_layer_norm_opts){ 0 };
    wf_module *m = norm_new("LayerNorm", &layer_norm_vt, normalized_shape, ndim, o.eps ? o.eps : 1e-5, !o.no_affine, !o.no_bias);
    if (m) ((norm_layer *)m)->autocast_output = o.autocast_output;
    return m;
}

wf_module *wf_layer_norm_new(const int64_t *normalized_shape, int ndim, const wf_layer_norm_opts *opts) {
    WF__NAMED("wf_layer_norm_new", wf_module *, !r, wf_layer_norm_new__body(normalized_shape, ndim, opts));
}

static wf_module *wf_rms_norm_new__body(const int64_t *normalized_shape, int ndim, const wf_rms_norm_opts *opts) {
    wf_rms_norm_opts o = opts ? *opts : (wf_rms_norm_opts){ 0 };
    return norm_new("RMSNorm", &rms_norm_vt, normalized_shape, ndim, o.eps, !o.no_affine, false);
}

wf_module *wf_rms_norm_new(const int64_t *normalized_shape, int ndim, const wf_rms_norm_opts *opts) {
    WF__NAMED("wf_rms_norm_new", wf_module *, !r, wf_rms_norm_new__body(normalized_shape, ndim, opts));
}

/* ================================================================ GroupNorm */

typedef struct group_norm { wf_module base; int64_t G, C; double eps; } group_norm;

static void gn_repr(const wf_module *m, char *buf, size_t n) {
    const group_norm *g = (const group_norm *)m;
    snprintf(buf, n, "%lld, %lld, eps=%g, affine=%s", (long long)g->G, (long long)g->C, g->eps,
             wf_module_get_parameter(m, "weight") ? "True" : "False");
}

static wf_tensor *gn_forward(wf_module *m, wf_tensor *x) {
    group_norm *g = (group_norm *)m;
    if (wf_ndim(x) < 2 || wf_shape(x)[1] != g->C) {
        char d[200], b[96];
        wf__error(WF_ESHAPE, "%s: expected an input [N, %lld, *], got shape %s", layer_desc(m, d, sizeof d),
                  (long long)g->C, wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    return wf_group_norm(x, g->G, wf_module_get_parameter(m, "weight"), wf_module_get_parameter(m, "bias"), g->eps);
}
static const wf_module_vtable gn_vt = { .forward = gn_forward, .extra_repr = gn_repr };

static wf_module *wf_group_norm_new__body(int64_t num_groups, int64_t num_channels, const wf_group_norm_opts *opts) {
    wf_group_norm_opts o = opts ? *opts : (wf_group_norm_opts){ 0 };
    if (num_groups <= 0 || num_channels <= 0 || num_channels % num_groups) {
        wf__error(WF_EINVAL, "wf_group_norm_new: num_channels (%lld) must be positive and divisible by num_groups (%lld)",
                  (long long)num_channels, (long long)num_groups);
        return NULL;
    }
    group_norm *g = wf__module_new(sizeof *g, "GroupNorm", &gn_vt);
    if (!g) return NULL;
    g->G = num_groups;
    g->C = num_channels;
    g->eps = o.eps ? o.eps : 1e-5;
    wf_module *m = &g->base;
    if (!o.no_affine) {
        if (wf__param(m, "weight", wf_ones(WF_SHAPE(num_channels), WF_DTYPE_DEFAULT))) return fail(m);
        if (wf__param(m, "bias", wf_zeros(WF_SHAPE(num_channels), WF_DTYPE_DEFAULT))) return fail(m);
    }
    return m;
}

wf_module *wf_group_norm_new(int64_t num_groups, int64_t num_channels, const wf_group_norm_opts *opts) {
    WF__NAMED("wf_group_norm_new", wf_module *, !r, wf_group_norm_new__body(num_groups, num_channels, opts));
}

/* ================================================================ Embedding */

typedef struct embedding { wf_module base; int64_t num, dim; bool has_pad; int64_t pad; } embedding;

static void emb_repr(const wf_module *m, char *buf, size_t n) {
    const embedding *e = (const embedding *)m;
    if (e->has_pad) snprintf(buf, n, "%lld, %lld, padding_idx=%lld", (long long)e->num, (long long)e->dim, (long long)e->pad);
    else snprintf(buf, n, "%lld, %lld", (long long)e->num, (long long)e->dim);
}

static wf_tensor *emb_forward(wf_module *m, wf_tensor *idx) {
    embedding *e = (embedding *)m;
    wf_tensor *w = wf_module_get_parameter(m, "weight");
    if (wf_tensor_dtype(idx) != WF_I64 && wf_tensor_dtype(idx) != WF_I32) {
        char d[200];
        wf__error(WF_EDTYPE, "%s: indices must be int64 or int32, got %s", layer_desc(m, d, sizeof d),
                  wf_dtype_name(wf_tensor_dtype(idx)));
        return NULL;
    }
    if (!e->has_pad) return wf_embedding(w, idx);
    /* the padding row never receives a gradient: its lookups read a detached weight */
    wf_scope_begin();
    wf_tensor *y = wf_embedding(w, idx);
    wf_tensor *yd = wf_embedding(wf_detach(w), idx);
    wf_tensor *keep = wf_unsqueeze(wf_ne_scalar(idx, (double)e->pad), -1);
    wf_tensor *out = wf_where(keep, y, yd);
    if (out) wf_keep(out);
    wf_scope_end();
    return out;
}
static const wf_module_vtable emb_vt = { .forward = emb_forward, .extra_repr = emb_repr };

static wf_module *wf_embedding_new__body(int64_t num_embeddings, int64_t embedding_dim, const wf_embedding_opts *opts) {
    wf_embedding_opts o = opts ? *opts : (wf_embedding_opts){ 0 };
    if (num_embeddings < 0 || embedding_dim < 0) {
        wf__error(WF_EINVAL, "wf_embedding_new: sizes must be non-negative, got %lld, %lld", (long long)num_embeddings,
                  (long long)embedding_dim);
        return NULL;
    }
    int64_t pad = o.padding_idx;
    if (o.has_padding_idx) {
        if (pad >= num_embeddings || pad < -num_embeddings) {
            wf__error(WF_EINVAL, "wf_embedding_new: padding_idx %lld must be within num_embeddings (%lld)", (long long)pad,
                      (long long)num_embeddings);
            return NULL;
        }
        if (pad < 0) pad += num_embeddings;
    }
    embedding *e = wf__module_new(sizeof *e, "Embedding", &emb_vt);
    if (!e) return NULL;
    e->num = num_embeddings;
    e->dim = embedding_dim;
    e->has_pad = o.has_padding_idx;
    e->pad = pad;
    wf_module *m = &e->base;
    wf_tensor *w = new_param(WF_SHAPE(num_embeddings, embedding_dim));
    if (w && wf_init_normal_(w, 0, 1)) { wf_tensor_free(w); w = NULL; }
    if (w && o.has_padding_idx) {
        bool prev = wf_set_grad_enabled(false);
        wf_scope_begin();
        int rc = wf_zero_(wf_select(w, 0, pad));
        wf_scope_end();
        wf_set_grad_enabled(prev);
        if (rc) { wf_tensor_free(w); w = NULL; }
    }
    if (wf__param(m, "weight", w)) return fail(m);
    return m;
}

wf_module *wf_embedding_new(int64_t num_embeddings, int64_t embedding_dim, const wf_embedding_opts *opts) {
    WF__NAMED("wf_embedding_new", wf_module *, !r, wf_embedding_new__body(num_embeddings, embedding_dim, opts));
}

/* ================================================================ Dropout */

typedef struct dropout { wf_module base; double p; } dropout;
static void dropout_repr(const wf_module *m, char *buf, size_t n) {
    snprintf(buf, n, "p=%g, inplace=False", ((const dropout *)m)->p);
}
static wf_tensor *dropout_forward(wf_module *m, wf_tensor *x) {
    return wf_dropout(x, ((dropout *)m)->p, m->training);
}
static const wf_module_vtable dropout_vt = { .forward = dropout_forward, .extra_repr = dropout_repr };

wf_module *wf_dropout_new(double p) {
    if (!(p >= 0 && p <= 1)) {
        wf__error(WF_EINVAL, "wf_dropout_new: dropout probability has to be between 0 and 1, but got %g", p);
        return NULL;
    }
    dropout *d = wf__module_new(sizeof *d, "Dropout", &dropout_vt);
    if (d) d->p = p;
    return d ? &d->base : NULL;
}

/* ================================================================ activations, Flatten, Identity */

typedef struct simple { wf_module base; int a, b; wf_gelu_approx approx; } simple;

static wf_tensor *relu_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf_relu(x); }
static wf_tensor *silu_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf_silu(x); }
static wf_tensor *tanh_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf_tanh(x); }
static wf_tensor *sigmoid_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf_sigmoid(x); }
static wf_tensor *identity_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf__alias(x); }
static wf_tensor *gelu_fwd(wf_module *m, wf_tensor *x) { return wf_gelu(x, ((simple *)m)->approx); }
static wf_tensor *softmax_fwd(wf_module *m, wf_tensor *x) { return wf_softmax(x, ((simple *)m)->a); }
static wf_tensor *log_softmax_fwd(wf_module *m, wf_tensor *x) { return wf_log_softmax(x, ((simple *)m)->a); }
static wf_tensor *flatten_fwd(wf_module *m, wf_tensor *x) { return wf_flatten(x, ((simple *)m)->a, ((simple *)m)->b); }

static void gelu_repr(const wf_module *m, char *buf, size_t n) {
    snprintf(buf, n, "approximate='%s'", ((const simple *)m)->approx == WF_GELU_TANH ? "tanh" : "none");
}
static void dim_repr(const wf_module *m, char *buf, size_t n) { snprintf(buf, n, "dim=%d", ((const simple *)m)->a); }
static void flatten_repr(const wf_module *m, char *buf, size_t n) {
    snprintf(buf, n, "start_dim=%d, end_dim=%d", ((const simple *)m)->a, ((const simple *)m)->b);
}

static const wf_module_vtable relu_vt = { .forward = relu_fwd };
static const wf_module_vtable silu_vt = { .forward = silu_fwd };
static const wf_module_vtable tanh_vt = { .forward = tanh_fwd };
static const wf_module_vtable sigmoid_vt = { .forward = sigmoid_fwd };
static const wf_module_vtable identity_vt = { .forward = identity_fwd };
static const wf_module_vtable gelu_vt = { .forward = gelu_fwd, .extra_repr = gelu_repr };
static const wf_module_vtable softmax_vt = { .forward = softmax_fwd, .extra_repr = dim_repr };
static const wf_module_vtable log_softmax_vt = { .forward = log_softmax_fwd, .extra_repr = dim_repr };
static const wf_module_vtable flatten_vt = { .forward = flatten_fwd, .extra_repr = flatten_repr };

static wf_module *simple_new(const char *type, const wf_module_vtable *vt, int a, int b) {
    simple *s = wf__module_new(sizeof *s, type, vt);
    if (!s) return NULL;
    s->a = a;
    s->b = b;
    return &s->base;
}

wf_module *wf_relu_new(void) { return simple_new("ReLU", &relu_vt, 0, 0); }
wf_module *wf_silu_new(void) { return simple_new("SiLU", &silu_vt, 0, 0); }
wf_module *wf_tanh_new(void) { return simple_new("Tanh", &tanh_vt, 0, 0); }
wf_module *wf_sigmoid_new(void) { return simple_new("Sigmoid", &sigmoid_vt, 0, 0); }
wf_module *wf_identity_new(void) { return simple_new("Identity", &identity_vt, 0, 0); }
wf_module *wf_softmax_new(int dim) { return simple_new("Softmax", &softmax_vt, dim, 0); }
wf_module *wf_log_softmax_new(int dim) { return simple_new("LogSoftmax", &log_softmax_vt, dim, 0); }
wf_module *wf_flatten_new(int start_dim, int end_dim) { return simple_new("Flatten", &flatten_vt, start_dim, end_dim); }
wf_module *wf_gelu_new(wf_gelu_approx approximate) {
    if (approximate != WF_GELU_NONE && approximate != WF_GELU_TANH) {
        wf__error(WF_EINVAL, "wf_gelu_new: approximate must be WF_GELU_NONE or WF_GELU_TANH, got %d", (int)approximate);
        return NULL;
    }
    wf_module *m = simple_new("GELU", &gelu_vt, 0, 0);
    if (m) ((simple *)m)->approx = approximate;
    return m;
}

/* ================================================================ containers */

static wf_tensor *sequential_forward(wf_module *m, wf_tensor *x) {
    if (m->children.n == 0) return wf__alias(x);
    wf_scope_begin();
    wf_tensor *y = x;
    for (int i = 0; i < m->children.n && y; i++) y = wf_module_forward(m->children.v[i].ptr, y);
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}
static const wf_module_vtable sequential_vt = { .forward = sequential_forward };
static const wf_module_vtable module_list_vt = { 0 };
static const wf_module_vtable module_dict_vt = { 0 };

static int append_indexed(const char *op, const char *type, wf_module *c, wf_module *child) {
    if (!c || !child) {
        if (child) wf_module_free(child);
        return wf__any_null(op, 2, c, child), wf_error() ? wf_error() : WF_ENULL;
    }
    /* numbered children belong to the containers; a Linear with a child "0" would be nonsense */
    if (strcmp(wf_module_type(c), type)) {
        int rc = wf__error(WF_EINVAL, "%s: the module is a %s, not a %s", op, wf_module_type(c), type);
        if (child != c) wf_module_free(child);
        return rc;
    }
    char name[24];
    snprintf(name, sizeof name, "%d", c->children.n);
    return wf_module_add_child(c, name, child);
}

static int wf_sequential_append__body(wf_module *seq, wf_module *child) { return append_indexed("wf_sequential_append", "Sequential", seq, child); }

int wf_sequential_append(wf_module *seq, wf_module *child) {
    WF__NAMED("wf_sequential_append", int, r < 0, wf_sequential_append__body(seq, child));
}

static wf_module *wf_sequential_new_array__body(int n, wf_module *const *modules) {
    bool any_null = n < 0 || (n > 0 && !modules);
    for (int i = 0; i < n && !any_null; i++) any_null = !modules[i];
    if (any_null) {
        for (int i = 0; modules && i < n; i++) wf_module_free(modules[i]);
        if (!wf_error()) wf__error(n < 0 ? WF_EINVAL : WF_ENULL, "wf_sequential_new: a module is NULL (or n < 0)");
        return NULL;
    }
    wf_module *s = wf__module_new(sizeof(wf_module), "Sequential", &sequential_vt);
    if (!s) {
        for (int i = 0; i < n; i++) wf_module_free(modules[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (wf_sequential_append(s, modules[i])) {
            for (int j = i + 1; j < n; j++) wf_module_free(modules[j]);
            return fail(s);
        }
    return s;
}

wf_module *wf_sequential_new_array(int n, wf_module *const *modules) {
    WF__NAMED("wf_sequential_new_array", wf_module *, !r, wf_sequential_new_array__body(n, modules));
}

wf_module *wf_sequential_new(int n, ...) {
    if (n < 0) { wf__error(WF_EINVAL, "wf_sequential_new: n must be >= 0, got %d", n); return NULL; }
    wf_module **ms = wf__calloc((size_t)(n ? n : 1), sizeof *ms);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        wf_module *m = va_arg(ap, wf_module *);
        if (ms) ms[i] = m;
        else wf_module_free(m);
    }
    va_end(ap);
    if (!ms) { wf__error(WF_ENOMEM, "wf_sequential_new: out of memory"); return NULL; }
    wf_module *s = wf_sequential_new_array(n, ms);
    wf__free(ms, 0);
    return s;
}

wf_module *wf_module_list_new(void) { return wf__module_new(sizeof(wf_module), "ModuleList", &module_list_vt); }
int wf_module_list_append(wf_module *list, wf_module *child) {
    return append_indexed("wf_module_list_append", "ModuleList", list, child);
}
int wf_module_list_len(const wf_module *list) {
    return list ? list->children.n : (wf__error(WF_ENULL, "wf_module_list_len: NULL list"), 0);
}
wf_module *wf_module_list_get(const wf_module *list, int i) {
    if (!list) return NULL;
    int n = list->children.n;
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        wf__error(WF_EINDEX, "wf_module_list_get: index %d is out of range for %s of length %d", i < 0 ? i - n : i,
                  wf_module_type(list), n);
        return NULL;
    }
    return list->children.v[i].ptr;
}

wf_module *wf_module_dict_new(void) { return wf__module_new(sizeof(wf_module), "ModuleDict", &module_dict_vt); }
static int wf_module_dict_set__body(wf_module *dict, const char *name, wf_module *child) {
    if (!dict || !name || !child) {
        if (child) wf_module_free(child);
        return wf__any_null("wf_module_dict_set", 3, dict, name, child), wf_error() ? wf_error() : WF_ENULL;
    }
    for (int i = 0; i < dict->children.n; i++)
        if (strcmp(dict->children.v[i].name, name) == 0) {
            if (dict->children.v[i].ptr == child) return 0;
            wf_module_free(dict->children.v[i].ptr);
            dict->children.v[i].ptr = child;
            return 0;
        }
    return wf_module_add_child(dict, name, child);
}

int wf_module_dict_set(wf_module *dict, const char *name, wf_module *child) {
    WF__NAMED("wf_module_dict_set", int, r < 0, wf_module_dict_set__body(dict, name, child));
}

wf_module *wf_module_dict_get(const wf_module *dict, const char *name) {
    if (!dict || !name) return wf__any_null("wf_module_dict_get", 2, dict, name), NULL;
    for (int i = 0; i < dict->children.n; i++)
        if (strcmp(dict->children.v[i].name, name) == 0) return dict->children.v[i].ptr;
    return NULL;
}
