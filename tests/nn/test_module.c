/* tests/nn/test_module.c: the module header: registration, names, walks, modes, hooks,
 * to(), state dicts (PyTorch's names), load_state_dict errors, user-defined modules. */
#include "test_util.h"
#include "weft/nn.h"

#include <stdio.h>

static wf_module *mlp(void) {
    return wf_sequential_new(3, wf_linear_new(4, 3, true), wf_relu_new(), wf_linear_new(3, 2, true));
}

static wf_module *convnet(void) {
    return wf_sequential_new(6, wf_conv2d_new(1, 4, &(wf_conv2d_layer_opts){ .kernel_size = { 3 }, .padding = { 1, 1 } }),
                             wf_batch_norm2d_new(4, NULL), wf_relu_new(),
                             wf_max_pool2d_new(&(wf_pool2d_opts){ .kernel = { 2, 2 } }), wf_flatten_new(1, -1),
                             wf_linear_new(4 * 2 * 2, 3, true));
}

static void assert_names(wf_state_dict *sd, const char *const *expected, int n) {
    ck_assert_int_eq(wf_state_dict_count(sd), n);
    for (int i = 0; i < n; i++) ck_assert_str_eq(wf_state_dict_name_at(sd, i), expected[i]);
}

START_TEST(test_state_dict_names) {
    wf_module *m = mlp();
    ck_assert_ptr_nonnull(m);
    wf_state_dict *sd = wf_state_dict_new();
    ck_assert_int_eq(wf_module_state_dict(m, sd, NULL), 0);
    const char *names[] = { "0.weight", "0.bias", "2.weight", "2.bias" };
    assert_names(sd, names, 4);
    ck_assert_shape(wf_state_dict_get(sd, "0.weight"), 3, 4);
    ck_assert_shape(wf_state_dict_get(sd, "2.bias"), 2);
    ck_assert(!wf_requires_grad(wf_state_dict_get(sd, "0.weight")));   /* detached aliases */
    wf_state_dict_free(sd);

    wf_module *c = convnet();
    ck_assert_ptr_nonnull(c);
    sd = wf_state_dict_new();
    ck_assert_int_eq(wf_module_state_dict(c, sd, "model."), 0);
    const char *cn[] = { "model.0.weight", "model.0.bias", "model.1.weight", "model.1.bias", "model.1.running_mean",
                         "model.1.running_var", "model.1.num_batches_tracked", "model.5.weight", "model.5.bias" };
    assert_names(sd, cn, 9);
    ck_assert_int_eq(wf_tensor_dtype(wf_state_dict_get(sd, "model.1.num_batches_tracked")), WF_I64);
    ck_assert_int_eq(wf_ndim(wf_state_dict_get(sd, "model.1.num_batches_tracked")), 0);
    ck_assert_shape(wf_state_dict_get(sd, "model.0.weight"), 4, 1, 3, 3);
    wf_state_dict_free(sd);

    /* parameters: names and count, buffers */
    wf_tensor *ps[16];
    const char *pn[16];
    ck_assert_int_eq(wf_module_parameters(c, ps, pn, 16), 6);
    ck_assert_str_eq(pn[0], "0.weight");
    ck_assert_str_eq(pn[3], "1.bias");
    ck_assert_str_eq(pn[5], "5.bias");
    ck_assert(wf_requires_grad(ps[0]));
    ck_assert_int_eq(wf_module_buffers(c, NULL, pn, 16), 3);
    ck_assert_str_eq(pn[2], "1.num_batches_tracked");
    ck_assert_int_eq(wf_module_num_parameters(c), 4 * 9 + 4 + 4 + 4 + 16 * 3 + 3);
    ck_assert_ptr_eq(wf_module_get_parameter(c, "5.weight"), wf_module_get_parameter(wf_module_get_child(c, "5"), "weight"));
    ck_assert_ptr_null(wf_module_get_parameter(c, "7.weight"));
    ck_assert_str_eq(wf_module_type(wf_module_get_child(c, "1")), "BatchNorm2d");
    wf_module_free(c);
    wf_module_free(m);
}
END_TEST

/* a user-defined module in C */
typedef struct {
    wf_module base;
    wf_module *features, *fc;
} MyNet;

static wf_tensor *mynet_forward(wf_module *m, wf_tensor *x) {
    MyNet *n = (MyNet *)m;
    return wf_module_forward(n->fc, wf_module_forward(n->features, x));
}
static const wf_module_vtable mynet_vt = { .forward = mynet_forward };

static MyNet *mynet_new(void) {
    MyNet *n = wf_module_create(sizeof(MyNet), "MyNet", &mynet_vt);
    n->features = wf_sequential_new(2, wf_linear_new(2, 2, true), wf_tanh_new());
    n->fc = wf_linear_new(2, 1, false);
    ck_assert_int_eq(wf_module_add_child(&n->base, "features", n->features), 0);
    ck_assert_int_eq(wf_module_add_child(&n->base, "fc", n->fc), 0);
    ck_assert_int_eq(wf_module_register_parameter(&n->base, "scale", wf_ones(WF_SHAPE(1), WF_F32)), 0);
    ck_assert_int_eq(wf_module_register_buffer(&n->base, "steps", wf_zeros(WF_SHAPE(1), WF_I64)), 0);
    return n;
}

START_TEST(test_user_module) {
    WF_SCOPE {   /* parameters created inside a scope survive it: the module owns them */
        MyNet *n = mynet_new();
        wf_state_dict *sd = wf_state_dict_new();
        ck_assert_int_eq(wf_module_state_dict(&n->base, sd, NULL), 0);
        const char *names[] = { "scale", "steps", "features.0.weight", "features.0.bias", "fc.weight" };
        assert_names(sd, names, 5);
        wf_state_dict_free(sd);
        wf_scope_end();
        wf_scope_begin();
        wf_tensor *y = wf_module_forward(&n->base, wf_ones(WF_SHAPE(3, 2), WF_F32));
        ck_assert_shape(y, 3, 1);
        /* bad names */
        ck_assert_int_ne(wf_module_register_parameter(&n->base, "scale", wf_ones(WF_SHAPE(1), WF_F32)), 0);
        ck_assert_error(WF_EINVAL, "scale");
        ck_assert_int_ne(wf_module_register_parameter(&n->base, "a.b", wf_ones(WF_SHAPE(1), WF_F32)), 0);
        ck_assert_error(WF_EINVAL, "a.b");
        ck_assert_int_ne(wf_module_register_parameter(&n->base, "idx", wf_ones(WF_SHAPE(1), WF_I64)), 0);
        ck_assert_error(WF_EDTYPE, "idx");
        ck_assert_int_ne(wf_module_add_child(&n->base, "fc", wf_relu_new()), 0);
        ck_assert_error(WF_EINVAL, "fc");
        wf_module_free(&n->base);
    }
}
END_TEST

START_TEST(test_shared_parameter) {
    wf_module *a = wf_linear_new(3, 3, false), *b = wf_linear_new(3, 3, false);
    wf_module *s = wf_sequential_new(2, a, b);
    wf_tensor *w = wf_module_get_parameter(a, "weight");
    ck_assert_int_eq(wf_module_set_parameter(s, "1.weight", wf_tensor_retain(w)), 0);   /* tie */
    ck_assert_int_eq(wf_module_parameters(s, NULL, NULL, 0), 1);
    ck_assert_int_eq(wf_module_num_parameters(s), 9);
    wf_state_dict *sd = wf_state_dict_new();
    wf_module_state_dict(s, sd, NULL);
    ck_assert_int_eq(wf_state_dict_count(sd), 2);   /* state_dict keeps both names */
    wf_state_dict_free(sd);
    ck_assert_int_eq(wf_module_to(s, WF_CPU, WF_F64), 0);   /* stays tied */
    ck_assert_ptr_eq(wf_module_get_parameter(s, "0.weight"), wf_module_get_parameter(s, "1.weight"));
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(s, "1.weight")), WF_F64);
    ck_assert_int_eq(wf_module_set_parameter(s, "9.weight", wf_ones(WF_SHAPE(1), WF_F32)), WF_ENOTFOUND);
    ck_assert_error(WF_ENOTFOUND, "9.weight");
    wf_module_free(s);
}
END_TEST

START_TEST(test_load_state_dict) {
    wf_manual_seed(1);
    wf_module *a = mlp(), *b = mlp();
    wf_state_dict *sd = wf_state_dict_new();
    ck_assert_int_eq(wf_module_state_dict(a, sd, NULL), 0);
    wf_load_report rep;
    ck_assert_int_eq(wf_module_load_state_dict(b, sd, true, &rep), 0);
    ck_assert_int_eq(rep.loaded, 4);
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(5, 4), WF_F32);
        wf_tensor *d = wf_sub(wf_module_forward(a, x), wf_module_forward(b, x));
        ck_assert_double_eq(wf_item(wf_amax(wf_abs(d), WF_ALL_DIMS, false)), 0.0);
        /* b's parameters are its own (copied, not shared) and still require grad */
        ck_assert_ptr_ne(wf_module_get_parameter(a, "0.weight"), wf_module_get_parameter(b, "0.weight"));
        ck_assert(wf_requires_grad(wf_module_get_parameter(b, "0.weight")));
    }
    /* missing key */
    wf_state_dict *miss = wf_state_dict_new();
    for (int i = 0; i < wf_state_dict_count(sd); i++)
        if (strcmp(wf_state_dict_name_at(sd, i), "2.bias")) wf_state_dict_set(miss, wf_state_dict_name_at(sd, i), wf_state_dict_tensor_at(sd, i));
    ck_assert_int_eq(wf_module_load_state_dict(b, miss, true, &rep), WF_ENOTFOUND);
    ck_assert_int_eq(rep.missing, 1);
    ck_assert_error(WF_ENOTFOUND, "\"2.bias\"");
    ck_assert_int_eq(wf_module_load_state_dict(b, miss, false, &rep), 0);
    ck_assert_int_eq(rep.missing, 1);
    ck_assert_int_eq(rep.loaded, 3);
    /* unexpected key */
    wf_tensor *extra = wf_zeros(WF_SHAPE(2), WF_F32);
    wf_state_dict_set(sd, "2.foo", extra);
    wf_tensor_free(extra);
    ck_assert_int_eq(wf_module_load_state_dict(b, sd, true, &rep), WF_EINVAL);
    ck_assert_int_eq(rep.unexpected, 1);
    ck_assert_error(WF_EINVAL, "\"2.foo\"");
    ck_assert_int_eq(wf_module_load_state_dict(b, sd, false, &rep), 0);
    ck_assert_int_eq(rep.unexpected, 1);
    wf_state_dict_remove(sd, "2.foo");
    /* shape mismatch: nothing is modified */
    wf_tensor *before = wf_clone(wf_module_get_parameter(b, "0.weight"));
    wf_tensor *bad = wf_zeros(WF_SHAPE(3, 5), WF_F32);
    wf_state_dict *sd2 = wf_state_dict_new();
    wf_module_state_dict(b, sd2, NULL);
    wf_state_dict *sd3 = wf_state_dict_new();
    for (int i = 0; i < wf_state_dict_count(sd2); i++) {
        wf_tensor *z = wf_zeros_like(wf_state_dict_tensor_at(sd2, i));
        wf_state_dict_set(sd3, wf_state_dict_name_at(sd2, i), z);
        wf_tensor_free(z);
    }
    wf_state_dict_set(sd3, "2.weight", bad);
    wf_tensor_free(bad);
    ck_assert_int_eq(wf_module_load_state_dict(b, sd3, false, NULL), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "2.weight");
    WF_SCOPE {
        ck_assert_double_eq(wf_item(wf_amax(wf_abs(wf_sub(before, wf_module_get_parameter(b, "0.weight"))), WF_ALL_DIMS, false)), 0);
    }
    wf_tensor_free(before);
    /* casting on load: an f64 state dict into an f32 module */
    wf_module *c = mlp();
    ck_assert_int_eq(wf_module_to(c, WF_CPU, WF_F64), 0);
    wf_state_dict *sd64 = wf_state_dict_new();
    wf_module_state_dict(c, sd64, NULL);
    ck_assert_int_eq(wf_module_load_state_dict(b, sd64, true, NULL), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(b, "0.weight")), WF_F32);
    wf_state_dict_free(sd64);
    wf_module_free(c);
    wf_state_dict_free(sd);
    wf_state_dict_free(sd2);
    wf_state_dict_free(sd3);
    wf_state_dict_free(miss);
    wf_module_free(a);
    wf_module_free(b);
}
END_TEST

static int pre_double(wf_module *m, wf_tensor **in, void *ud) {
    (void)m;
    (*(int *)ud)++;
    *in = wf_mul_scalar(*in, 2.0);
    return 0;
}
static int post_add(wf_module *m, wf_tensor *in, wf_tensor **out, void *ud) {
    (void)m; (void)in;
    (*(int *)ud)++;
    *out = wf_add_scalar(*out, 1.0);
    return 0;
}
static int post_fail(wf_module *m, wf_tensor *in, wf_tensor **out, void *ud) {
    (void)m; (void)in; (void)out; (void)ud;
    return wf_set_error(WF_ESTATE, "hook says no");
}

START_TEST(test_hooks) {
    wf_module *id = wf_identity_new();
    int calls = 0;
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 2 }, WF_SHAPE(2), WF_F64);
        ck_assert(!wf_module_has_hooks(id) && !wf_module_has_hooks(NULL));
        int h1 = wf_module_register_forward_pre_hook(id, pre_double, &calls);
        ck_assert(wf_module_has_hooks(id));
        int h2 = wf_module_register_forward_hook(id, post_add, &calls);
        ck_assert_int_ge(h1, 0);
        ck_assert_int_ne(h1, h2);
        ck_assert_tensor_near(wf_module_forward(id, x), ((double[]){ 3, 5 }), 2, 0);
        ck_assert_int_eq(calls, 2);
        ck_assert_int_eq(wf_module_remove_hook(id, h1), 0);
        ck_assert_tensor_near(wf_module_forward(id, x), ((double[]){ 2, 3 }), 2, 0);
        ck_assert_int_eq(wf_module_remove_hook(id, h1), WF_ENOTFOUND);
        wf_clear_error();
        ck_assert(wf_module_has_hooks(id));
        ck_assert_int_eq(wf_module_remove_hook(id, h2), 0);
        ck_assert(!wf_module_has_hooks(id));
        ck_assert_tensor_near(wf_module_forward(id, x), ((double[]){ 1, 2 }), 2, 0);
        wf_module_register_forward_hook(id, post_fail, NULL);
        ck_assert_ptr_null(wf_module_forward(id, x));
        ck_assert_error(WF_ESTATE, "hook says no");
        /* forward on a container without forward */
        wf_module *l = wf_module_list_new();
        ck_assert_ptr_null(wf_module_forward(l, x));
        ck_assert_error(WF_ENOTSUP, "ModuleList");
        wf_module_free(l);
    }
    wf_module_free(id);
}
END_TEST

static int count_mod(wf_module *m, void *ud) { (void)m; (*(int *)ud)++; return 0; }

START_TEST(test_modes_to_zero_grad_apply) {
    wf_module *c = convnet();
    ck_assert(wf_module_is_training(c));
    wf_module_eval(c);
    ck_assert(!wf_module_is_training(wf_module_get_child(c, "1")));
    wf_module_train(c, true);
    ck_assert(wf_module_is_training(wf_module_get_child(c, "1")));
    int n = 0;
    ck_assert_int_eq(wf_module_apply(c, count_mod, &n), 0);
    ck_assert_int_eq(n, 7);
    ck_assert_int_eq(wf_module_to(c, WF_CPU, WF_F64), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(c, "0.weight")), WF_F64);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_buffer(c, "1.running_var")), WF_F64);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_buffer(c, "1.num_batches_tracked")), WF_I64);
    ck_assert(wf_requires_grad(wf_module_get_parameter(c, "5.weight")));
    ck_assert(!wf_requires_grad(wf_module_get_buffer(c, "1.running_mean")));
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(2, 1, 4, 4), WF_F64);
        wf_tensor *loss = wf_sum_all(wf_module_forward(c, x));
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    }
    wf_tensor *w = wf_module_get_parameter(c, "0.weight");
    ck_assert_ptr_nonnull(wf_grad(w));
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(w)), WF_F64);
    /* to() moves gradients along */
    ck_assert_int_eq(wf_module_to(c, WF_CPU, WF_F32), 0);
    w = wf_module_get_parameter(c, "0.weight");
    ck_assert_ptr_nonnull(wf_grad(w));
    ck_assert_int_eq(wf_tensor_dtype(wf_grad(w)), WF_F32);
    wf_module_zero_grad(c, false);
    WF_SCOPE { ck_assert_double_eq(wf_item(wf_sum_all(wf_abs(wf_grad(w)))), 0.0); }
    wf_module_zero_grad(c, true);
    ck_assert_ptr_null(wf_grad(w));
    ck_assert_int_eq(wf_module_to(c, WF_CPU, WF_I64), WF_EDTYPE);
    wf_clear_error();
    wf_module_free(c);
}
END_TEST

START_TEST(test_print_and_containers) {
    wf_module *m = mlp();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    wf_module_fprint(f, m);
    fclose(f);
    ck_assert_str_eq(buf, "Sequential(\n"
                          "  (0): Linear(in_features=4, out_features=3, bias=True)\n"
                          "  (1): ReLU()\n"
                          "  (2): Linear(in_features=3, out_features=2, bias=True)\n"
                          ")\n");
    free(buf);
    wf_module_free(m);
    m = convnet();
    f = open_memstream(&buf, &len);
    wf_module_fprint(f, m);
    fclose(f);
    ck_assert_msg(strstr(buf, "  (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
                              "  (1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                              "  (2): ReLU()\n"
                              "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
                              "  (4): Flatten(start_dim=1, end_dim=-1)\n"
                              "  (5): Linear(in_features=16, out_features=3, bias=True)\n"), "%s", buf);
    free(buf);
    wf_module_free(m);

    wf_module *l = wf_module_list_new();
    ck_assert_int_eq(wf_module_list_append(l, wf_linear_new(2, 2, true)), 0);
    ck_assert_int_eq(wf_module_list_append(l, wf_linear_new(2, 3, true)), 0);
    ck_assert_int_eq(wf_module_list_len(l), 2);
    ck_assert_ptr_eq(wf_module_list_get(l, -1), wf_module_get_child(l, "1"));
    ck_assert_ptr_null(wf_module_list_get(l, 2));
    ck_assert_error(WF_EINDEX, "index 2");
    ck_assert_ptr_nonnull(wf_module_get_parameter(l, "1.bias"));
    wf_module *d = wf_module_dict_new();
    ck_assert_int_eq(wf_module_dict_set(d, "enc", wf_linear_new(2, 2, false)), 0);
    ck_assert_int_eq(wf_module_dict_set(d, "dec", l), 0);
    ck_assert_int_eq(wf_module_dict_set(d, "enc", wf_linear_new(2, 5, false)), 0);   /* replace */
    ck_assert_int_eq(wf_module_num_children(d), 2);
    ck_assert_shape(wf_module_get_parameter(d, "enc.weight"), 5, 2);
    ck_assert_ptr_nonnull(wf_module_get_parameter(d, "dec.0.weight"));
    const char *names[8];
    ck_assert_int_eq(wf_module_parameters(d, NULL, names, 8), 5);
    ck_assert_str_eq(names[0], "enc.weight");
    ck_assert_str_eq(names[4], "dec.1.bias");
    wf_module_free(d);

    /* a NULL constructor result inside Sequential propagates the first error */
    wf_clear_error();
    wf_module *s = wf_sequential_new(2, wf_linear_new(-1, 2, true), wf_relu_new());
    ck_assert_ptr_null(s);
    ck_assert_error(WF_EINVAL, "in_features=-1");
    /* empty Sequential is identity */
    wf_module *e = wf_sequential_new(0);
    WF_SCOPE {
        ck_assert_tensor_near(wf_module_forward(e, wf_ones(WF_SHAPE(2), WF_F64)), ((double[]){ 1, 1 }), 2, 0);
    }
    wf_module_free(e);
}
END_TEST

START_TEST(test_state_dict_container) {
    wf_state_dict *sd = wf_state_dict_new();
    wf_tensor *a = wf_ones(WF_SHAPE(2), WF_F32), *b = wf_zeros(WF_SHAPE(3), WF_F32);
    ck_assert_int_eq(wf_state_dict_set(sd, "a", a), 0);
    ck_assert_int_eq(wf_state_dict_set(sd, "b", b), 0);
    ck_assert_int_eq(wf_state_dict_set(sd, "a", b), 0);   /* replace keeps the position */
    ck_assert_int_eq(wf_state_dict_count(sd), 2);
    ck_assert_str_eq(wf_state_dict_name_at(sd, 0), "a");
    ck_assert_ptr_eq(wf_state_dict_get(sd, "a"), b);
    ck_assert_ptr_null(wf_state_dict_get(sd, "c"));
    ck_assert_ptr_null(wf_state_dict_name_at(sd, 2));
    ck_assert_int_eq(wf_state_dict_remove(sd, "c"), WF_ENOTFOUND);
    wf_clear_error();
    ck_assert_int_eq(wf_state_dict_remove(sd, "a"), 0);
    ck_assert_str_eq(wf_state_dict_name_at(sd, 0), "b");
    wf_tensor_free(a);
    wf_tensor_free(b);
    wf_state_dict_free(sd);
}
END_TEST


/* regression: a state dict taken inside a scope must outlive that scope */
START_TEST(test_state_dict_outlives_scope) {
    wf_module *m = wf_linear_new(3, 2, true);
    wf_state_dict *sd = wf_state_dict_new();
    WF_SCOPE { ck_assert_int_eq(wf_module_state_dict(m, sd, "model."), 0); }
    ck_assert_int_eq(wf_state_dict_count(sd), 2);
    WF_SCOPE {
        wf_tensor *w = wf_state_dict_get(sd, "model.weight");
        ck_assert_ptr_nonnull(w);
        ck_assert_double_eq(wf_item(wf_sum_all(wf_sub(w, wf_module_get_parameter(m, "weight")))), 0);
    }
    wf_state_dict_free(sd);
    wf_module_free(m);
}
END_TEST


static wf_tensor *double_fwd(wf_module *m, wf_tensor *x) { (void)m; return wf_mul_scalar(x, 2); }
static const wf_module_vtable double_vt = { double_fwd, NULL, NULL };

/* containers built every way, lookups by index and name, buffers, embedded modules */
START_TEST(test_containers_and_lookups) {
    wf_module *mods[2] = { wf_linear_new(3, 4, true), wf_log_softmax_new(-1) };
    wf_module *seq = wf_sequential_new_array(2, mods);
    ck_assert_ptr_nonnull(seq);
    ck_assert_int_eq(wf_sequential_append(seq, wf_relu_new()), 0);
    ck_assert_int_eq(wf_module_num_children(seq), 3);
    const char *name = NULL;
    ck_assert_ptr_eq(wf_module_child_at(seq, 1, &name), mods[1]);
    ck_assert_str_eq(name, "1");
    ck_assert_ptr_null(wf_module_child_at(seq, 7, &name));
    WF_SCOPE {
        /* log_softmax then relu: rows of log-probabilities (<= 0) clamp to 0 */
        wf_tensor *y = wf_module_forward(seq, wf_ones(WF_SHAPE(2, 3), WF_F32));
        ck_assert_shape(y, 2, 4);
        ck_assert_double_eq(wf_item(wf_amax(y, WF_ALL_DIMS, false)), 0);
        wf_tensor *ls = wf_module_forward(mods[1], wf_from_data((float[]){ 0, 0 }, WF_SHAPE(1, 2), WF_F32));
        ck_assert_tensor_near(ls, ((double[]){ -log(2.0), -log(2.0) }), 2, 1e-6);
    }
    ck_assert_int_eq(wf_sequential_append(seq, NULL), WF_ENULL);
    wf_clear_error();
    wf_module_free(seq);

    wf_module *d = wf_module_dict_new();
    ck_assert_int_eq(wf_module_dict_set(d, "enc", wf_linear_new(2, 2, false)), 0);
    ck_assert_ptr_nonnull(wf_module_dict_get(d, "enc"));
    ck_assert_ptr_null(wf_module_dict_get(d, "dec"));
    /* buffers replaced by name; a wrong shape is refused */
    wf_module *bn = wf_batch_norm1d_new(3, NULL);
    ck_assert_int_eq(wf_module_set_buffer(bn, "running_mean", wf_ones(WF_SHAPE(3), WF_F32)), 0);
    WF_SCOPE { ck_assert_double_eq(wf_item(wf_sum_all(wf_module_get_buffer(bn, "running_mean"))), 3); }
    ck_assert_int_ne(wf_module_set_buffer(bn, "nope", wf_ones(WF_SHAPE(3), WF_F32)), 0);
    wf_clear_error();
    wf_module_free(bn);
    wf_module_free(d);

    /* a module embedded in caller-managed memory */
    struct { wf_module base; } mine;
    ck_assert_int_eq(wf_module_init(&mine.base, "Double", &double_vt), 0);
    WF_SCOPE { ck_assert_double_eq(wf_item(wf_module_forward(&mine.base, wf_scalar(3, WF_F32))), 6); }
    wf_module_free(&mine.base);
    ck_assert_int_eq(wf_module_init(NULL, "x", &double_vt), WF_ENULL);
    wf_clear_error();
}
END_TEST

/* skip-init: layers built while it is on take no random draws; it restores */
START_TEST(test_skip_init) {
    wf_rng_state r0 = wf_rng_get_state();
    bool prev = wf_nn_set_skip_init(true);
    ck_assert(!prev);
    wf_module *m = wf_linear_new(16, 16, true);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(wf_rng_get_state().offset, r0.offset);
    ck_assert(wf_nn_set_skip_init(prev));
    wf_module *n = wf_linear_new(16, 16, true);
    ck_assert_uint_gt(wf_rng_get_state().offset, r0.offset);
    wf_module_free(m);
    wf_module_free(n);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_module");
    TCase *tc = tcase_create("module");
    tcase_add_test(tc, test_state_dict_outlives_scope);
    tcase_add_test(tc, test_containers_and_lookups);
    tcase_add_test(tc, test_skip_init);
    tcase_add_test(tc, test_state_dict_names);
    tcase_add_test(tc, test_user_module);
    tcase_add_test(tc, test_shared_parameter);
    tcase_add_test(tc, test_load_state_dict);
    tcase_add_test(tc, test_hooks);
    tcase_add_test(tc, test_modes_to_zero_grad_apply);
    tcase_add_test(tc, test_print_and_containers);
    tcase_add_test(tc, test_state_dict_container);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
