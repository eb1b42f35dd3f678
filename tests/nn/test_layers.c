/* tests/nn/test_layers.c: every layer's forward on worked values, default init, errors,
 * and gradcheck (f64) of every layer with parameters. */
#include "test_util.h"
#include "weft/nn.h"

#include <float.h>

/* set a parameter's values (f64 list) under no-grad */
static void set_param(wf_module *m, const char *name, const double *v) {
    wf_tensor *p = wf_module_get_parameter(m, name);
    if (!p) p = wf_module_get_buffer(m, name);
    ck_assert_ptr_nonnull(p);
    WF_SCOPE {
        wf_tensor *src = wf_from_data(v, wf_shape(p), wf_ndim(p), WF_F64);
        WF_NO_GRAD { ck_assert_int_eq(wf_copy_(p, src), 0); }
    }
}

static wf_tensor *module_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    wf_manual_seed(7);   /* dropout inside: the same mask for every evaluation */
    return wf_module_forward(ud, in[0]);
}

/* gradcheck of m's forward w.r.t. x and all its parameters, in f64 */
static void gradcheck_module(wf_module *m, wf_tensor *x) {
    ck_assert_int_eq(wf_module_to(m, WF_CPU, WF_F64), 0);
    wf_tensor *ins[32];
    ins[0] = x;
    int np = wf_module_parameters(m, ins + 1, NULL, 31);
    ck_assert_int_ge(np, 0);
    int rc = wf_gradcheck(module_fn, ins, np + 1, m, 1e-6, 1e-5, 1e-4);
    ck_assert_msg(rc == 0, "%s gradcheck: %s", wf_module_type(m), wf_error_message());
}

static wf_tensor *xg(const int64_t *shape, int nd) {
    wf_tensor *x = wf_randn(shape, nd, WF_F64);
    wf_set_requires_grad(x, true);
    return x;
}

START_TEST(test_linear) {
    wf_module *l = wf_linear_new(3, 2, true);
    ck_assert_int_eq(wf_module_to(l, WF_CPU, WF_F64), 0);
    set_param(l, "weight", (double[]){ 1, 2, 3, 0, -1, 1 });
    set_param(l, "bias", (double[]){ 0.5, -0.5 });
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 1, 1, 1, 0, -1 }, WF_SHAPE(2, 3), WF_F64);
        wf_tensor *y = wf_module_forward(l, x);
        ck_assert_shape(y, 2, 2);
        ck_assert_tensor_near(y, ((double[]){ 6.5, -0.5, -1.5, -1.5 }), 4, 1e-12);
        /* [..., in] batches */
        ck_assert_shape(wf_module_forward(l, wf_zeros(WF_SHAPE(4, 5, 3), WF_F64)), 4, 5, 2);
        /* wrong feature size: names the layer */
        ck_assert_ptr_null(wf_module_forward(l, wf_zeros(WF_SHAPE(2, 4), WF_F64)));
        ck_assert_error(WF_ESHAPE, "Linear(in_features=3, out_features=2, bias=True)");
        ck_assert_int_eq(wf_numel(wf_module_get_parameter(l, "weight")), 6);
        gradcheck_module(l, xg(WF_SHAPE(2, 3)));
    }
    wf_module_free(l);
    ck_assert_ptr_null(wf_linear_new(-1, 2, true));
    ck_assert_error(WF_EINVAL, "in_features=-1");
    wf_module *nb = wf_linear_new(2, 2, false);
    ck_assert_ptr_null(wf_module_get_parameter(nb, "bias"));
    ck_assert_int_eq(wf_module_parameters(nb, NULL, NULL, 0), 1);
    wf_module_free(nb);
}
END_TEST

/* values of a tensor as a malloc'd f64 array */
static double *values(wf_tensor *t) {
    double *v = malloc(sizeof(double) * (size_t)wf_numel(t));
    ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    return v;
}

static void check_uniform_bound(wf_tensor *t, double bound) {
    int64_t n = wf_numel(t);
    double *v = values(t);
    double mx = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) { mx = fmax(mx, fabs(v[i])); s2 += v[i] * v[i]; }
    free(v);
    ck_assert_double_le(mx, bound);
    ck_assert_double_ge(mx, 0.9 * bound);                  /* spread reaches the bound */
    double sd = sqrt(s2 / (double)n), expect = bound / sqrt(3.0);
    ck_assert_msg(fabs(sd - expect) < 0.1 * expect, "std %g, expected %g", sd, expect);
}

START_TEST(test_default_init) {
    wf_manual_seed(0);
    wf_module *l = wf_linear_new(100, 200, true);
    check_uniform_bound(wf_module_get_parameter(l, "weight"), 1.0 / sqrt(100.0));
    check_uniform_bound(wf_module_get_parameter(l, "bias"), 1.0 / sqrt(100.0));
    wf_module_free(l);
    wf_module *c = wf_conv2d_new(8, 64, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 } });
    check_uniform_bound(wf_module_get_parameter(c, "weight"), 1.0 / sqrt(8.0 * 9.0));
    ck_assert_shape(wf_module_get_parameter(c, "weight"), 64, 8, 3, 3);
    wf_module_free(c);
    wf_module *e = wf_embedding_new(1000, 16, NULL);
    double *v = values(wf_module_get_parameter(e, "weight"));
    double s = 0, s2 = 0;
    for (int i = 0; i < 16000; i++) { s += v[i]; s2 += v[i] * v[i]; }
    free(v);
    ck_assert_double_lt(fabs(s / 16000), 0.03);
    ck_assert_double_lt(fabs(sqrt(s2 / 16000) - 1), 0.03);
    wf_module_free(e);
}
END_TEST

START_TEST(test_conv2d) {
    wf_module *c = wf_conv2d_new(1, 1, &(wf_conv2d_layer_opts){ .kernel_size = { 2 } });
    ck_assert_int_eq(wf_module_to(c, WF_CPU, WF_F64), 0);
    set_param(c, "weight", (double[]){ 1, 1, 1, 1 });
    set_param(c, "bias", (double[]){ 0.5 });
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(0, 9, 1, WF_F64), WF_SHAPE(1, 1, 3, 3));
        ck_assert_tensor_near(wf_module_forward(c, x), ((double[]){ 8.5, 12.5, 20.5, 24.5 }), 4, 1e-12);
        /* unbatched [C, H, W] */
        ck_assert_shape(wf_module_forward(c, wf_reshape(x, WF_SHAPE(1, 3, 3))), 1, 2, 2);
        ck_assert_ptr_null(wf_module_forward(c, wf_zeros(WF_SHAPE(9), WF_F64)));
        ck_assert_error(WF_ESHAPE, "Conv2d(1, 1, kernel_size=(2, 2)");
        ck_assert_ptr_null(wf_module_forward(c, wf_zeros(WF_SHAPE(1, 2, 3, 3), WF_F64)));
        ck_assert_error(WF_ESHAPE, "2 channels");
    }
    wf_module_free(c);
    ck_assert_ptr_null(wf_conv2d_new(-3, 2, &(wf_conv2d_layer_opts){ .kernel_size = { 3 } }));
    ck_assert_error(WF_EINVAL, "-3");
    ck_assert_ptr_null(wf_conv2d_new(3, 2, NULL));
    ck_assert_error(WF_EINVAL, "kernel_size");
    ck_assert_ptr_null(wf_conv2d_new(3, 2, &(wf_conv2d_layer_opts){ .kernel_size = { 3 }, .groups = 2 }));
    ck_assert_error(WF_EINVAL, "groups");
    WF_SCOPE {
        wf_module *g = wf_conv2d_new(4, 2, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 2 }, .stride = { 2, 1 },
                                                                    .padding = { 1, 0 }, .groups = 2 });
        ck_assert_shape(wf_module_get_parameter(g, "weight"), 2, 2, 3, 2);
        gradcheck_module(g, xg(WF_SHAPE(2, 4, 4, 3)));
        wf_module_free(g);
    }
}
END_TEST

START_TEST(test_pools_and_shapes) {
    wf_module *mp = wf_max_pool2d_new(&(wf_pool2d_opts){ .kernel = { 2, 2 } });
    wf_module *ap = wf_avg_pool2d_new(&(wf_pool2d_opts){ .kernel = { 2, 2 } });
    wf_module *aap = wf_adaptive_avg_pool2d_new(1, 1);
    wf_module *fl = wf_flatten_new(1, -1);
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(0, 16, 1, WF_F64), WF_SHAPE(1, 1, 4, 4));
        ck_assert_tensor_near(wf_module_forward(mp, x), ((double[]){ 5, 7, 13, 15 }), 4, 0);
        ck_assert_tensor_near(wf_module_forward(ap, x), ((double[]){ 2.5, 4.5, 10.5, 12.5 }), 4, 1e-12);
        ck_assert_tensor_near(wf_module_forward(aap, x), ((double[]){ 7.5 }), 1, 1e-12);
        ck_assert_shape(wf_module_forward(fl, x), 1, 16);
        ck_assert_ptr_null(wf_module_forward(mp, wf_zeros(WF_SHAPE(4, 4), WF_F64)));
        ck_assert_error(WF_ESHAPE, "MaxPool2d");
        wf_tensor *xgr = xg(WF_SHAPE(1, 2, 4, 4));
        gradcheck_module(ap, xgr);
        gradcheck_module(aap, xgr);
    }
    ck_assert_ptr_null(wf_max_pool2d_new(&(wf_pool2d_opts){ .kernel = { -1 } }));
    ck_assert_error(WF_EINVAL, "kernel_size");
    wf_module_free(mp);
    wf_module_free(ap);
    wf_module_free(aap);
    wf_module_free(fl);
}
END_TEST

START_TEST(test_batch_norm) {
    wf_module *bn = wf_batch_norm1d_new(2, NULL);
    ck_assert_int_eq(wf_module_to(bn, WF_CPU, WF_F64), 0);
    WF_SCOPE {
        /* channel 0: 1,2,3,6 (mean 3, biased var 3.5, unbiased 14/3); channel 1: 0,0,4,4 (mean 2, var 4, 16/3) */
        wf_tensor *x = wf_from_data((double[]){ 1, 0, 2, 0, 3, 4, 6, 4 }, WF_SHAPE(4, 2), WF_F64);
        wf_tensor *y = wf_module_forward(bn, x);
        double e = 1e-5, a = 1 / sqrt(3.5 + e), b = 1 / sqrt(4 + e);
        ck_assert_tensor_near(y, ((double[]){ -2 * a, -2 * b, -1 * a, -2 * b, 0, 2 * b, 3 * a, 2 * b }), 8, 1e-12);
        ck_assert_tensor_near(wf_module_get_buffer(bn, "running_mean"), ((double[]){ 0.3, 0.2 }), 2, 1e-12);
        ck_assert_tensor_near(wf_module_get_buffer(bn, "running_var"),
                              ((double[]){ 0.9 + 0.1 * 14.0 / 3.0, 0.9 + 0.1 * 16.0 / 3.0 }), 2, 1e-12);
        ck_assert_double_eq(wf_item(wf_module_get_buffer(bn, "num_batches_tracked")), 1);
        /* eval: running statistics */
        wf_module_eval(bn);
        double rv0 = 0.9 + 0.1 * 14.0 / 3.0, rv1 = 0.9 + 0.1 * 16.0 / 3.0;
        wf_tensor *ye = wf_module_forward(bn, wf_narrow(x, 0, 0, 1));
        ck_assert_tensor_near(ye, ((double[]){ (1 - 0.3) / sqrt(rv0 + e), (0 - 0.2) / sqrt(rv1 + e) }), 2, 1e-12);
        ck_assert_double_eq(wf_item(wf_module_get_buffer(bn, "num_batches_tracked")), 1);
        /* train with one value per channel */
        wf_module_train(bn, true);
        ck_assert_ptr_null(wf_module_forward(bn, wf_zeros(WF_SHAPE(1, 2), WF_F64)));
        ck_assert_error(WF_ESHAPE, "more than 1 value per channel");
        ck_assert_ptr_null(wf_module_forward(bn, wf_zeros(WF_SHAPE(4, 3), WF_F64)));
        ck_assert_error(WF_ESHAPE, "BatchNorm1d(2");
        gradcheck_module(bn, xg(WF_SHAPE(4, 2, 3)));
    }
    wf_module_free(bn);
    /* cumulative average (momentum=None), no affine, 2d */
    wf_module *b2 = wf_batch_norm2d_new(1, &(wf_batch_norm_opts){ .cumulative_average = true, .no_affine = true });
    ck_assert_int_eq(wf_module_parameters(b2, NULL, NULL, 0), 0);
    WF_SCOPE {
        wf_module_forward(b2, wf_full(WF_SHAPE(2, 1, 1, 2), 2.0, WF_F32));
        wf_module_forward(b2, wf_from_data((float[]){ 4, 4, 8, 8 }, WF_SHAPE(2, 1, 2, 1), WF_F32));
        ck_assert_tensor_near(wf_module_get_buffer(b2, "running_mean"), ((double[]){ 4 }), 1, 1e-6);   /* (2 + 6) / 2 */
        ck_assert_tensor_near(wf_module_get_buffer(b2, "running_var"), ((double[]){ (0 + 16.0 / 3.0) / 2 }), 1, 1e-6);
    }
    wf_module_free(b2);
    /* no running stats: eval uses batch statistics */
    wf_module *b3 = wf_batch_norm1d_new(1, &(wf_batch_norm_opts){ .no_track_running_stats = true });
    ck_assert_int_eq(wf_module_buffers(b3, NULL, NULL, 0), 0);
    wf_module_eval(b3);
    WF_SCOPE {
        ck_assert_tensor_near(wf_module_forward(b3, wf_from_data((double[]){ 1, 3 }, WF_SHAPE(2, 1), WF_F64)),
                              ((double[]){ -1 / sqrt(1 + 1e-5), 1 / sqrt(1 + 1e-5) }), 2, 1e-6);
    }
    wf_module_free(b3);
    ck_assert_ptr_null(wf_batch_norm2d_new(0, NULL));
    ck_assert_error(WF_EINVAL, "num_features");
}
END_TEST

START_TEST(test_layer_rms_group_norm) {
    int64_t ns[] = { 3 };
    wf_module *ln = wf_layer_norm_new(ns, 1, NULL);
    wf_module *rn = wf_rms_norm_new(ns, 1, NULL);
    wf_module *gn = wf_group_norm_new(2, 4, NULL);
    ck_assert_int_eq(wf_module_to(ln, WF_CPU, WF_F64), 0);
    ck_assert_int_eq(wf_module_to(rn, WF_CPU, WF_F64), 0);
    ck_assert_int_eq(wf_module_to(gn, WF_CPU, WF_F64), 0);
    set_param(ln, "weight", (double[]){ 1, 2, 3 });
    set_param(ln, "bias", (double[]){ 0, 1, 0 });
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 2, 3, 2, 2, 2 }, WF_SHAPE(2, 3), WF_F64);
        double s = 1 / sqrt(2.0 / 3.0 + 1e-5);
        ck_assert_tensor_near(wf_module_forward(ln, x), ((double[]){ -s, 1, 3 * s, 0, 1, 0 }), 6, 1e-10);
        double r0 = 1 / sqrt(14.0 / 3.0 + DBL_EPSILON), r1 = 1 / sqrt(4.0 + DBL_EPSILON);
        ck_assert_tensor_near(wf_module_forward(rn, x), ((double[]){ r0, 2 * r0, 3 * r0, 2 * r1, 2 * r1, 2 * r1 }), 6, 1e-12);
        ck_assert_ptr_null(wf_module_forward(ln, wf_zeros(WF_SHAPE(2, 4), WF_F64)));
        ck_assert_error(WF_ESHAPE, "normalized_shape [3]");
        /* GroupNorm: groups {c0,c1}, {c2,c3} over [N=1, C=4, L=2] */
        wf_tensor *g = wf_from_data((double[]){ 0, 2, 2, 4, 1, 1, 1, 1 }, WF_SHAPE(1, 4, 2), WF_F64);
        double t = 1 / sqrt(2 + 1e-5);
        ck_assert_tensor_near(wf_module_forward(gn, g), ((double[]){ -2 * t, 0, 0, 2 * t, 0, 0, 0, 0 }), 8, 1e-10);
        ck_assert_ptr_null(wf_module_forward(gn, wf_zeros(WF_SHAPE(1, 3, 2), WF_F64)));
        ck_assert_error(WF_ESHAPE, "GroupNorm(2, 4");
        gradcheck_module(ln, xg(WF_SHAPE(2, 3)));
        gradcheck_module(rn, xg(WF_SHAPE(2, 3)));
        gradcheck_module(gn, xg(WF_SHAPE(2, 4, 3)));
    }
    ck_assert_ptr_null(wf_group_norm_new(3, 4, NULL));
    ck_assert_error(WF_EINVAL, "divisible");
    wf_module *lnn = wf_layer_norm_new(ns, 1, &(wf_layer_norm_opts){ .no_bias = true });
    ck_assert_int_eq(wf_module_parameters(lnn, NULL, NULL, 0), 1);
    wf_module_free(lnn);
    wf_module_free(ln);
    wf_module_free(rn);
    wf_module_free(gn);
}
END_TEST

START_TEST(test_rms_norm_default_eps_f32) {
    int64_t ns[] = { 2 };
    wf_module *rn = wf_rms_norm_new(ns, 1, NULL);
    WF_SCOPE {
        /* tiny values: eps (FLT_EPSILON) dominates */
        wf_tensor *y = wf_module_forward(rn, wf_zeros(WF_SHAPE(1, 2), WF_F32));
        ck_assert_tensor_near(y, ((double[]){ 0, 0 }), 2, 0);
        wf_tensor *x = wf_full(WF_SHAPE(1, 2), 1e-4, WF_F32);
        double expect = 1e-4 / sqrt(1e-8 + FLT_EPSILON);
        ck_assert_tensor_near(wf_module_forward(rn, x), ((double[]){ expect, expect }), 2, 1e-5);
    }
    wf_module_free(rn);
}
END_TEST

START_TEST(test_embedding) {
    wf_module *e = wf_embedding_new(4, 3, &(wf_embedding_opts){ .has_padding_idx = true, .padding_idx = -1 });
    ck_assert_int_eq(wf_module_to(e, WF_CPU, WF_F64), 0);
    wf_tensor *w = wf_module_get_parameter(e, "weight");
    WF_SCOPE {
        ck_assert_tensor_near(wf_select(w, 0, 3), ((double[]){ 0, 0, 0 }), 3, 0);   /* padding row zeroed */
        double wv[12];
        wf_to_array(w, wv, WF_F64);
        wf_tensor *idx = wf_from_data((int64_t[]){ 1, 3, 1, 0 }, WF_SHAPE(2, 2), WF_I64);
        wf_tensor *y = wf_module_forward(e, idx);
        ck_assert_shape(y, 2, 2, 3);
        ck_assert_tensor_near(wf_select(wf_select(y, 0, 0), 0, 0), wv + 3, 3, 0);
        ck_assert_tensor_near(wf_select(wf_select(y, 0, 0), 0, 1), wv + 9, 3, 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        /* gradient: row 1 twice, row 0 once, padding row 3 never */
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0 }), 12, 0);
        ck_assert_ptr_null(wf_module_forward(e, wf_from_data((int64_t[]){ 4 }, WF_SHAPE(1), WF_I64)));
        ck_assert(wf_error() == WF_EINDEX);
        wf_clear_error();
        ck_assert_ptr_null(wf_module_forward(e, wf_zeros(WF_SHAPE(1), WF_F32)));
        ck_assert_error(WF_EDTYPE, "Embedding(4, 3, padding_idx=3)");
    }
    wf_module_free(e);
    ck_assert_ptr_null(wf_embedding_new(4, 3, &(wf_embedding_opts){ .has_padding_idx = true, .padding_idx = 4 }));
    ck_assert_error(WF_EINVAL, "padding_idx");
}
END_TEST

START_TEST(test_dropout) {
    wf_module *d = wf_dropout_new(0.25);
    WF_SCOPE {
        wf_tensor *x = wf_ones(WF_SHAPE(20000), WF_F32);
        wf_tensor *y = wf_module_forward(d, x);
        double *v = values(y);
        int zeros = 0;
        for (int i = 0; i < 20000; i++) {
            if (v[i] == 0) zeros++;
            else ck_assert_double_eq_tol(v[i], 1.0 / 0.75, 1e-6);
        }
        free(v);
        ck_assert_msg(abs(zeros - 5000) < 300, "zeros %d", zeros);
        wf_module_eval(d);
        ck_assert_tensor_near(wf_module_forward(d, wf_narrow(x, 0, 0, 3)), ((double[]){ 1, 1, 1 }), 3, 0);
        wf_module_train(d, true);
        gradcheck_module(d, xg(WF_SHAPE(3, 4)));
        ck_assert_tensor_near(wf_dropout(wf_narrow(x, 0, 0, 2), 1.0, true), ((double[]){ 0, 0 }), 2, 0);
    }
    wf_module_free(d);
    ck_assert_ptr_null(wf_dropout_new(1.5));
    ck_assert_error(WF_EINVAL, "1.5");
}
END_TEST

START_TEST(test_activations) {
    wf_module *ms[] = { wf_relu_new(), wf_gelu_new(WF_GELU_NONE), wf_gelu_new(WF_GELU_TANH), wf_silu_new(),
                        wf_tanh_new(), wf_sigmoid_new(), wf_softmax_new(-1), wf_identity_new() };
    double xv[] = { -1, 0, 2 };
    double e[8][3];
    for (int i = 0; i < 3; i++) {
        double x = xv[i];
        e[0][i] = x > 0 ? x : 0;
        e[1][i] = 0.5 * x * (1 + erf(x / sqrt(2)));
        e[2][i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        e[3][i] = x / (1 + exp(-x));
        e[4][i] = tanh(x);
        e[5][i] = 1 / (1 + exp(-x));
        e[6][i] = exp(x) / (exp(-1) + 1 + exp(2));
        e[7][i] = x;
    }
    WF_SCOPE {
        wf_tensor *x = wf_from_data(xv, WF_SHAPE(3), WF_F64);
        for (int k = 0; k < 8; k++) ck_assert_tensor_near(wf_module_forward(ms[k], x), e[k], 3, 1e-6);
        wf_tensor *x2 = xg(WF_SHAPE(2, 3));
        for (int k = 1; k < 8; k++) gradcheck_module(ms[k], x2);
    }
    for (int k = 0; k < 8; k++) wf_module_free(ms[k]);
}
END_TEST

START_TEST(test_sequential_forward_and_gradcheck) {
    wf_manual_seed(3);
    wf_module *s = wf_sequential_new(4, wf_linear_new(3, 4, true), wf_gelu_new(WF_GELU_NONE),
                                     wf_layer_norm_new((int64_t[]){ 4 }, 1, NULL), wf_linear_new(4, 2, true));
    WF_SCOPE { gradcheck_module(s, xg(WF_SHAPE(2, 3))); }
    wf_module_free(s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_default_init);
    tcase_add_test(tc, test_conv2d);
    tcase_add_test(tc, test_pools_and_shapes);
    tcase_add_test(tc, test_batch_norm);
    tcase_add_test(tc, test_layer_rms_group_norm);
    tcase_add_test(tc, test_rms_norm_default_eps_f32);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_activations);
    tcase_add_test(tc, test_sequential_forward_and_gradcheck);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
