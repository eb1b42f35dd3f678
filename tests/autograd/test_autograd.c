/* tests/autograd/test_autograd.c: the engine: accumulation, retain_graph, hooks, grad mode,
 * detach, saved-tensor version checks, deep graphs, and misuse errors. */
#include "test_util.h"

START_TEST(test_accumulate_and_paths) {
    WF_SCOPE {
        wf_tensor *x = wf_from_data((double[]){ 1, 2 }, WF_SHAPE(2), WF_F64);
        wf_set_requires_grad(x, true);
        ck_assert(wf_is_leaf(x));
        /* x used by two paths: y = x*x + 3x -> dy/dx = 2x + 3 */
        wf_tensor *y = wf_sum_all(wf_add(wf_mul(x, x), wf_mul_scalar(x, 3)));
        ck_assert(!wf_is_leaf(y));
        ck_assert_str_eq(wf_grad_fn_name(y), "ViewBackward");
        ck_assert_int_eq(wf_backward(y, NULL, true), 0);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 5, 7 }), 2, 0);
        /* a second backward through the retained graph accumulates */
        ck_assert_int_eq(wf_backward(y, NULL, false), 0);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 10, 14 }), 2, 0);
        /* the graph is freed now: a third pass is an error, not a wrong answer */
        ck_assert_int_eq(wf_backward(y, NULL, false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "second time");
        wf_set_grad(x, NULL);
        ck_assert_ptr_null(wf_grad(x));
        /* explicit gradient for a non-scalar output */
        wf_tensor *z = wf_mul_scalar(x, 2);
        ck_assert_int_eq(wf_backward(z, wf_from_data((double[]){ 1, 10 }, WF_SHAPE(2), WF_F64), false), 0);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 2, 20 }), 2, 0);
    }
}
END_TEST

static int g_calls;
static double g_seen;
static void hook(wf_tensor *leaf, void *ud) {
    (void)ud;
    g_calls++;
    g_seen = wf_item(wf_sum_all(wf_grad(leaf)));
}

START_TEST(test_leaf_hooks_fire_once_when_final) {
    WF_SCOPE {
        wf_tensor *w = wf_ones(WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(w, true);
        int h = wf_register_grad_hook(w, hook, NULL);
        ck_assert_int_ge(h, 0);
        g_calls = 0;
        /* w reaches the loss through three paths; the hook sees the complete sum once */
        wf_tensor *a = wf_mul_scalar(w, 2), *b = wf_exp(w), *c = wf_mul(w, w);
        wf_tensor *loss = wf_sum_all(wf_add(wf_add(a, b), c));
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
        ck_assert_int_eq(g_calls, 1);
        ck_assert_double_eq_tol(g_seen, 3 * (2 + exp(1) + 2), 1e-12);
        ck_assert_int_eq(wf_remove_grad_hook(w, h), 0);
        ck_assert_int_eq(wf_remove_grad_hook(w, h), WF_ENOTFOUND);
        ck_assert_error(WF_ENOTFOUND, "wf_remove_grad_hook");
        wf_tensor *nl = wf_mul_scalar(w, 1);
        ck_assert_int_eq(wf_register_grad_hook(nl, hook, NULL), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "leaf");
    }
}
END_TEST

START_TEST(test_grad_mode_and_detach) {
    WF_SCOPE {
        wf_tensor *x = wf_ones(WF_SHAPE(2), WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *y = NULL;
        WF_NO_GRAD { y = wf_mul_scalar(x, 2); ck_assert(!wf_is_grad_enabled()); }
        ck_assert(wf_is_grad_enabled());
        ck_assert(!wf_requires_grad(y));
        ck_assert_int_eq(wf_backward(y, wf_ones_like(y), false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "does not require grad");
        wf_tensor *d = wf_detach(wf_mul_scalar(x, 2));
        ck_assert(!wf_requires_grad(d));
        ck_assert(wf_is_leaf(d));
        /* d shares storage with its source but stops the gradient */
        wf_tensor *z = wf_sum_all(wf_mul(wf_mul_scalar(x, 3), d));
        wf_backward(z, NULL, false);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 6, 6 }), 2, 0);
        ck_assert_int_eq(wf_set_requires_grad(wf_arange(0, 3, 1, WF_I64), true), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "floating");
        ck_assert_int_eq(wf_set_requires_grad(wf_mul_scalar(x, 2), false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "not a leaf");
        ck_assert_int_eq(wf_backward(wf_mul_scalar(x, 2), NULL, false), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "one-element");
        ck_assert_int_eq(wf_set_grad(x, wf_ones(WF_SHAPE(3), WF_F64)), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "wf_set_grad");
    }
}
END_TEST

START_TEST(test_modified_saved_tensor_is_an_error) {
    WF_SCOPE {
        wf_tensor *x = wf_ones(WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *h = wf_mul_scalar(x, 2);
        wf_tensor *y = wf_exp(h);            /* saves its output y */
        wf_tensor *loss = wf_sum_all(y);
        WF_NO_GRAD { wf_add_scalar_(y, 1); }  /* modifies what backward needs */
        ck_assert_int_eq(wf_backward(loss, NULL, false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "modified by an in-place operation");
        /* in place on a view of a leaf that requires grad: refused, as in PyTorch */
        wf_tensor *lv = wf_narrow(x, 0, 0, 2);
        ck_assert_int_eq(wf_mul_scalar_(lv, 2), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "view of a leaf");
    }
}
END_TEST

/* in-place writes through views of non-leaf tensors: the base is rebased (CopySlices) */
static wf_tensor *f_inplace_views(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *x = in[0], *w = in[1];                 /* x [3,4], w [4] */
    wf_tensor *h = wf_mul(x, x);                      /* a non-leaf base */
    wf_mul_(wf_select(h, 0, 1), w);                   /* h[1] *= w */
    wf_add_scalar_(wf_slice(h, 1, 0, 4, 2), 3);       /* h[:, ::2] += 3 */
    wf_relu_(wf_narrow(h, 0, 2, 1));                  /* relu on h[2:3] */
    wf_copy_(wf_select(h, 1, 3), wf_mul_scalar(wf_select(x, 1, 0), 5));   /* h[:,3] = 5 x[:,0] */
    return wf_mul(h, wf_sin(h));
}

START_TEST(test_inplace_through_views) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(3, 4), WF_F64), *w = wf_randn(WF_SHAPE(4), WF_F64);
        wf_set_requires_grad(x, true);
        wf_set_requires_grad(w, true);
        wf_tensor *in[] = { x, w };
        ck_assert_msg(wf_gradcheck(f_inplace_views, in, 2, NULL, 1e-6, 1e-7, 1e-5) == 0, "%s", wf_error_message());
        /* worked by hand: y = x*2 (non-leaf), y[0] *= 3 -> d sum(y) / dx = [6, 2] */
        wf_set_grad(x, NULL);
        wf_tensor *a = wf_from_data((double[]){ 1, 1 }, WF_SHAPE(2), WF_F64);
        wf_set_requires_grad(a, true);
        wf_tensor *y = wf_mul_scalar(a, 2);
        ck_assert_int_eq(wf_mul_scalar_(wf_select(y, 0, 0), 3), 0);
        ck_assert_str_eq(wf_grad_fn_name(y), "CopySlices");
        ck_assert_tensor_near(y, ((double[]){ 6, 2 }), 2, 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(a), ((double[]){ 6, 2 }), 2, 0);
    }
}
END_TEST

START_TEST(test_deep_graph) {
    /* 20000 nodes: neither backward nor freeing the graph may recurse that deep */
    WF_SCOPE {
        wf_tensor *x = wf_ones(WF_SHAPE(1), WF_F64);
        wf_set_requires_grad(x, true);
        wf_tensor *y = x;
        wf_scope_begin();
        for (int i = 0; i < 20000; i++) y = wf_add_scalar(y, 1e-3);
        wf_keep(y);
        wf_scope_end();
        ck_assert_int_eq(wf_backward(y, NULL, false), 0);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 1 }), 1, 0);
    }
}
END_TEST

static wf_tensor *f_mix(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *a = in[0], *b = in[1];
    wf_tensor *h = wf_tanh(wf_add(wf_mul(a, b), wf_sin(a)));
    return wf_div(wf_sum(h, WF_DIMS(1), true), wf_add_scalar(wf_mul(b, b), 1));
}

START_TEST(test_gradcheck_catches_errors) {
    WF_SCOPE {
        wf_tensor *a = wf_randn(WF_SHAPE(3, 4), WF_F64), *b = wf_randn(WF_SHAPE(3, 4), WF_F64);
        wf_set_requires_grad(a, true);
        wf_set_requires_grad(b, true);
        wf_tensor *in[] = { a, b };
        ck_assert_msg(wf_gradcheck(f_mix, in, 2, NULL, 1e-6, 1e-7, 1e-5) == 0, "%s", wf_error_message());
        /* float32 inputs are refused: finite differences need f64 */
        wf_tensor *f = wf_randn(WF_SHAPE(2), WF_F32);
        wf_tensor *in2[] = { f, f };
        ck_assert_int_eq(wf_gradcheck(f_mix, in2, 2, NULL, 0, 0, 0), WF_EDTYPE);
        ck_assert_error(WF_EDTYPE, "float64");
    }
}
END_TEST


/* Grad-ready hooks see the final gradient and can fail the backward; end-of-backward
 * callbacks run once after every node, see the status, and can fail it too. */
static int ready_seen;
static int ready_hook(wf_tensor *leaf, void *ud) {
    ready_seen++;
    if (ud) {   /* fail with a real error: a view of 3 elements as 7 */
        wf_scope_begin();
        wf_tensor *v = wf_view(leaf, WF_SHAPE(7));
        wf_scope_end();
        return v ? 0 : wf_error();
    }
    return 0;
}
static int cb_order[8], cb_n, cb_status;
static int callback(int status, void *ud) {
    cb_order[cb_n++] = (int)(intptr_t)ud;
    cb_status = status;
    /* the graph is done: every hook already ran */
    ck_assert_int_eq(ready_seen, 1);
    if ((intptr_t)ud == 13) {   /* fail with a real error */
        wf_scope_begin();
        wf_tensor *v = wf_view(wf_zeros(WF_SHAPE(2), WF_F32), WF_SHAPE(13));
        wf_scope_end();
        return v ? 0 : wf_error();
    }
    return 0;
}
static int queue_from_hook(wf_tensor *leaf, void *ud) {
    (void)leaf;
    ready_seen++;
    return wf_queue_backward_callback(callback, ud);
}
START_TEST(test_grad_ready_hooks_and_callbacks) {
    WF_SCOPE {
        wf_tensor *w = wf_from_data((double[]){ 1, 2, 3 }, WF_SHAPE(3), WF_F64);
        wf_set_requires_grad(w, true);
        int h = wf_register_grad_ready_hook(w, ready_hook, NULL);
        ck_assert_int_ge(h, 0);
        ready_seen = cb_n = 0;
        ck_assert_int_eq(wf_queue_backward_callback(callback, (void *)(intptr_t)1), 0);
        ck_assert_int_eq(wf_queue_backward_callback(callback, (void *)(intptr_t)2), 0);
        ck_assert_int_eq(cb_n, 0);   /* queued for the next backward, not run yet */
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(w, w)), NULL, false), 0);
        ck_assert_int_eq(cb_n, 2);
        ck_assert_int_eq(cb_order[0], 1);
        ck_assert_int_eq(cb_order[1], 2);
        ck_assert_int_eq(cb_status, 0);
        /* run once: a second backward runs none */
        ready_seen = 0;
        ck_assert_int_eq(wf_backward(wf_sum_all(w), NULL, false), 0);
        ck_assert_int_eq(cb_n, 2);
        /* a failing callback is the backward's result */
        ready_seen = cb_n = 0;
        ck_assert_int_eq(wf_queue_backward_callback(callback, (void *)(intptr_t)13), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(w), NULL, false), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "13");
        ck_assert_int_eq(cb_n, 1);
        /* queued from inside the backward (a hook): runs at its end */
        ck_assert_int_eq(wf_remove_grad_hook(w, h), 0);
        h = wf_register_grad_ready_hook(w, queue_from_hook, (void *)(intptr_t)5);
        ready_seen = cb_n = 0;
        ck_assert_int_eq(wf_backward(wf_sum_all(w), NULL, false), 0);
        ck_assert_int_eq(cb_n, 1);
        ck_assert_int_eq(cb_order[0], 5);
        ck_assert_int_eq(wf_remove_grad_hook(w, h), 0);
        /* a failing hook stops the backward with its error; callbacks still run, told so */
        h = wf_register_grad_ready_hook(w, ready_hook, (void *)1);
        ready_seen = cb_n = 0;
        ck_assert_int_eq(wf_queue_backward_callback(callback, (void *)(intptr_t)7), 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(w), NULL, false), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "7");
        ck_assert_int_eq(cb_n, 1);
        ck_assert_int_eq(cb_status, WF_ESHAPE);
        /* a backward that fails before running still runs the queued callbacks */
        wf_tensor *c = wf_from_data((double[]){ 1 }, WF_SHAPE(1), WF_F64);
        ready_seen = 1;
        cb_n = 0;
        ck_assert_int_eq(wf_queue_backward_callback(callback, (void *)(intptr_t)8), 0);
        ck_assert_int_eq(wf_backward(c, NULL, false), WF_EAUTOGRAD);
        ck_assert_int_eq(cb_n, 1);
        ck_assert_int_eq(cb_status, WF_EAUTOGRAD);
        /* misuse */
        ck_assert_int_eq(wf_queue_backward_callback(NULL, NULL), WF_ENULL);
        ck_assert_int_eq(wf_register_grad_ready_hook(w, NULL, NULL), WF_ENULL);
        ck_assert_int_eq(wf_register_grad_ready_hook(c, ready_hook, NULL), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "wf_register_grad_ready_hook: the tensor is not a leaf");
        ck_assert_int_eq(wf_remove_grad_hook(w, h), 0);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_accumulate_and_paths);
    tcase_add_test(tc, test_leaf_hooks_fire_once_when_final);
    tcase_add_test(tc, test_grad_ready_hooks_and_callbacks);
    tcase_add_test(tc, test_grad_mode_and_detach);
    tcase_add_test(tc, test_modified_saved_tensor_is_an_error);
    tcase_add_test(tc, test_inplace_through_views);
    tcase_add_test(tc, test_deep_graph);
    tcase_add_test(tc, test_gradcheck_catches_errors);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
