/* tests/autograd/test_checkpoint.c: wf_checkpoint gives the gradients the plain graph gives,
 * replays the RNG and autocast state, keeps no activations, and refuses what would silently
 * lose a gradient. */
#include "test_util.h"

/* y = tanh(x @ w) * sigmoid(x @ w) + x @ w */
static wf_tensor *seg(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    wf_tensor *h = wf_matmul(in[0], in[1]);
    return wf_add(wf_mul(wf_tanh(h), wf_sigmoid(h)), h);
}

static double sum_of(wf_tensor *t) { return wf_item(wf_sum_all(t)); }

START_TEST(test_same_gradients_as_plain) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(1, WF_SHAPE(4, 3)), *w = tt_rnd_leaf(2, WF_SHAPE(3, 5));
        wf_tensor *y = seg((wf_tensor *[]){ x, w }, 2, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_square(y)), NULL, false), 0);
        wf_tensor *gx = wf_clone(wf_grad(x)), *gw = wf_clone(wf_grad(w));
        wf_set_grad(x, NULL);
        wf_set_grad(w, NULL);
        wf_tensor *yc = wf_checkpoint(seg, (wf_tensor *[]){ x, w }, 2, NULL);
        ck_assert_ptr_nonnull(yc);
        ck_assert_str_eq(wf_grad_fn_name(yc), "CheckpointBackward");
        ck_assert_double_eq_tol(sum_of(yc), sum_of(y), 1e-12);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_square(yc)), NULL, false), 0);
        ck_assert_double_eq_tol(sum_of(wf_abs(wf_sub(wf_grad(x), gx))), 0, 1e-12);
        ck_assert_double_eq_tol(sum_of(wf_abs(wf_sub(wf_grad(w), gw))), 0, 1e-12);
        /* only the input that requires grad gets one */
        wf_tensor *c = wf_detach(x);
        wf_set_grad(w, NULL);
        yc = wf_checkpoint(seg, (wf_tensor *[]){ c, w }, 2, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(yc), NULL, false), 0);
        ck_assert_ptr_null(wf_grad(c));
        ck_assert_ptr_nonnull(wf_grad(w));
        /* a second backward through the freed graph is the usual error */
        ck_assert_int_eq(wf_backward(wf_sum_all(yc), NULL, false), WF_EAUTOGRAD);
        wf_clear_error();
    }
}
END_TEST

static wf_tensor *seg_ck(wf_tensor *const *in, int n, void *ud) { return wf_checkpoint(seg, in, n, ud); }

START_TEST(test_gradcheck_through_checkpoint) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(3, WF_SHAPE(3, 2)), *w = tt_rnd_leaf(4, WF_SHAPE(2, 4));
        ck_assert_msg(wf_gradcheck(seg_ck, (wf_tensor *[]){ x, w }, 2, NULL, 1e-6, 1e-7, 1e-5) == 0, "%s",
                      wf_error_message());
    }
}
END_TEST

/* dropout draws the same mask in the recompute, and the RNG stream after the backward is
 * where the plain run leaves it */
static wf_tensor *seg_drop(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    return wf_mul(wf_dropout(in[0], 0.5, true), in[1]);
}

START_TEST(test_rng_is_replayed) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(5, WF_SHAPE(64)), *w = tt_rnd_leaf(6, WF_SHAPE(64));
        wf_manual_seed(7);
        wf_tensor *y = seg_drop((wf_tensor *[]){ x, w }, 2, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        wf_tensor *gx = wf_clone(wf_grad(x));
        wf_rng_state after_plain = wf_rng_get_state();
        wf_set_grad(x, NULL);
        wf_set_grad(w, NULL);
        wf_manual_seed(7);
        wf_tensor *yc = wf_checkpoint(seg_drop, (wf_tensor *[]){ x, w }, 2, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(yc), NULL, false), 0);
        ck_assert_double_eq(sum_of(wf_abs(wf_sub(wf_grad(x), gx))), 0);
        wf_rng_state after = wf_rng_get_state();
        ck_assert(after.seed == after_plain.seed && after.offset == after_plain.offset);
    }
}
END_TEST

/* the forward ran under bf16 autocast, the backward outside it: the recompute casts again */
START_TEST(test_autocast_is_replayed) {
    WF_SCOPE {
        wf_tensor *x = wf_to_dtype(tt_rnd_leaf(8, WF_SHAPE(8, 16)), WF_F32);
        wf_tensor *w = wf_detach(wf_to_dtype(tt_rnd_leaf(9, WF_SHAPE(16, 8)), WF_F32));
        wf_set_requires_grad(w, true);
        wf_tensor *y = NULL, *yc = NULL;
        WF_AUTOCAST(WF_DEV_CPU, WF_BF16) { y = seg((wf_tensor *[]){ x, w }, 2, NULL); }
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        wf_tensor *gw = wf_clone(wf_grad(w));
        wf_set_grad(w, NULL);
        WF_AUTOCAST(WF_DEV_CPU, WF_BF16) { yc = wf_checkpoint(seg, (wf_tensor *[]){ x, w }, 2, NULL); }
        ck_assert_int_eq(wf_tensor_dtype(yc), wf_tensor_dtype(y));
        ck_assert_int_eq(wf_backward(wf_sum_all(yc), NULL, false), 0);
        ck_assert_double_eq(sum_of(wf_abs(wf_sub(wf_grad(w), gw))), 0);
    }
}
END_TEST

/* activations inside the segment are not kept until backward */
static wf_tensor *deep(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    wf_tensor *h = in[0];
    for (int i = 0; i < 8; i++) h = wf_tanh(wf_matmul(h, in[1]));
    return h;
}

static size_t held_after_forward(bool ck) {
    size_t held = 0;
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(256, 128), WF_F32), *w = wf_randn(WF_SHAPE(128, 128), WF_F32);
        wf_set_requires_grad(w, true);
        wf_memory_stats s0, s1;
        wf_memory_stats_get(&s0);
        wf_tensor *y;
        /* a scope of its own for the forward: what survives it is what the graph keeps */
        wf_scope_begin();
        y = ck ? wf_checkpoint(deep, (wf_tensor *[]){ x, w }, 2, NULL) : deep((wf_tensor *[]){ x, w }, 2, NULL);
        wf_keep(y);
        wf_scope_end();
        wf_memory_stats_get(&s1);
        held = s1.allocated - s0.allocated;
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        wf_tensor_free(y);
    }
    return held;
}

START_TEST(test_activations_are_not_kept) {
    size_t plain = held_after_forward(false), ck = held_after_forward(true);
    size_t one = 256 * 128 * 4;
    ck_assert_msg(plain >= 8 * one, "plain forward keeps %zu bytes", plain);
    ck_assert_msg(ck <= 2 * one, "checkpointed forward keeps %zu bytes (one activation is %zu)", ck, one);
}
END_TEST

/* a parameter used inside and outside the segment: one gradient, hooks once per backward */
static int g_hook_calls;
static void count_hook(wf_tensor *leaf, void *ud) { (void)leaf; (void)ud; g_hook_calls++; }

START_TEST(test_shared_parameter_and_hooks) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(10, WF_SHAPE(2, 3)), *w = tt_rnd_leaf(11, WF_SHAPE(3, 3));
        wf_tensor *y = wf_matmul(seg((wf_tensor *[]){ x, w }, 2, NULL), w);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        wf_tensor *gw = wf_clone(wf_grad(w));
        wf_set_grad(w, NULL);
        ck_assert_int_ge(wf_register_grad_hook(w, count_hook, NULL), 0);
        g_hook_calls = 0;
        wf_tensor *yc = wf_matmul(wf_checkpoint(seg, (wf_tensor *[]){ x, w }, 2, NULL), w);
        ck_assert_int_eq(wf_backward(wf_sum_all(yc), NULL, false), 0);
        ck_assert_int_eq(g_hook_calls, 1);
        ck_assert_double_eq_tol(sum_of(wf_abs(wf_sub(wf_grad(w), gw))), 0, 1e-12);
    }
}
END_TEST

static wf_tensor *g_captured;
static wf_tensor *seg_captures(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    return wf_matmul(in[0], g_captured);
}
static wf_tensor *seg_null(wf_tensor *const *in, int n, void *ud) {
    (void)in;
    (void)n;
    (void)ud;
    return NULL;
}
static int g_calls;
static wf_tensor *seg_changes(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    return ++g_calls == 1 ? wf_mul_scalar(in[0], 2) : wf_sum(in[0], WF_DIMS(0), false);
}
static wf_tensor *seg_identity(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    (void)ud;
    return in[0];
}

START_TEST(test_bad_uses_are_errors) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(12, WF_SHAPE(2, 3));
        ck_assert_ptr_null(wf_checkpoint(NULL, (wf_tensor *[]){ x }, 1, NULL));
        ck_assert_error(WF_ENULL, "wf_checkpoint");
        ck_assert_ptr_null(wf_checkpoint(seg, (wf_tensor *[]){ x, NULL }, 2, NULL));
        ck_assert_error(WF_ENULL, "input 1");
        ck_assert_ptr_null(wf_checkpoint(seg, NULL, 2, NULL));
        ck_assert_error(WF_EINVAL, "wf_checkpoint");
        ck_assert_ptr_null(wf_checkpoint(seg_null, (wf_tensor *[]){ x }, 1, NULL));
        ck_assert_error(WF_EAUTOGRAD, "returned NULL");
        /* a captured tensor that requires grad would get no gradient: refused at backward */
        g_captured = tt_rnd_leaf(13, WF_SHAPE(3, 2));
        wf_tensor *y = wf_checkpoint(seg_captures, (wf_tensor *[]){ x }, 1, NULL);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "not one of its inputs");
        /* a function that computes something else the second time */
        g_calls = 0;
        y = wf_checkpoint(seg_changes, (wf_tensor *[]){ x }, 1, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "differs from the forward");
        /* returning an input: the input keeps its own identity, the result gets the node */
        y = wf_checkpoint(seg_identity, (wf_tensor *[]){ x }, 1, NULL);
        ck_assert(y != x);
        ck_assert(wf_is_leaf(x));
        wf_set_grad(x, NULL);
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        ck_assert_double_eq(sum_of(wf_grad(x)), 6);
        /* a saved input changed in place before backward */
        wf_tensor *a = wf_detach(x);
        wf_set_requires_grad(a, true);
        wf_tensor *w = tt_rnd_leaf(14, WF_SHAPE(3, 2));
        wf_tensor *b = wf_clone(a);
        y = wf_checkpoint(seg, (wf_tensor *[]){ b, w }, 2, NULL);
        WF_NO_GRAD { wf_add_scalar_(b, 1); }
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), WF_EAUTOGRAD);
        ck_assert_error(WF_EAUTOGRAD, "in-place");
        /* no grad needed: fn runs as it is, no node */
        WF_NO_GRAD { y = wf_checkpoint(seg, (wf_tensor *[]){ x, w }, 2, NULL); }
        ck_assert_ptr_null(wf_grad_fn_name(y));
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_test(tc, test_same_gradients_as_plain);
    tcase_add_test(tc, test_gradcheck_through_checkpoint);
    tcase_add_test(tc, test_rng_is_replayed);
    tcase_add_test(tc, test_autocast_is_replayed);
    tcase_add_test(tc, test_activations_are_not_kept);
    tcase_add_test(tc, test_shared_parameter_and_hooks);
    tcase_add_test(tc, test_bad_uses_are_errors);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
