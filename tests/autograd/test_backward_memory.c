/* tests/autograd/test_backward_memory.c: what a backward keeps alive, measured by the memory
 * census (wf_memory_record_history): a node's saved tensors go once it has run, not after
 * the whole backward, and a gradient summed from two uses is summed into its buffer, not
 * next to it, and a tied embedding adds its rows into the gradient already waiting. Bounds come
 * from the shapes. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "test_util.h"
#include "weft/autograd.h"
#include "weft/tensor.h"

#define N 4096                      /* elements of every tensor: 16 KiB in f32 */
#define A ((size_t)N * 4)
#define L 8                         /* layers */

/* Layer i: h = h * w_i (MulBackward saves h and w_i). The forward runs in a scope of its own
 * and keeps the loss only, so the saved activations are owned by the graph alone. A
 * backward that dropped them at its end held all L of them next to all L gradients of the
 * w_i; one that drops each layer's as it runs holds about L activations at its start and L
 * gradients at its end, never both. */
START_TEST(test_saved_freed_as_backward_runs) {
    wf_tensor *w[L];
    for (int i = 0; i < L; i++) {
        w[i] = wf_full(WF_SHAPE(N), 1.0 + 0.01 * i, WF_F32);
        wf_set_requires_grad(w[i], true);
    }
    wf_tensor *x = wf_full(WF_SHAPE(N), 0.5, WF_F32);
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_scope_begin();
    wf_tensor *h = x;
    for (int i = 0; i < L; i++) h = wf_mul(h, w[i]);
    wf_tensor *loss = wf_keep(wf_sum(h, WF_ALL_DIMS, false));
    wf_scope_end();
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(wf_memory_history_reset_peak(), 0);
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    size_t peak = 0;
    ck_assert_int_ge(wf_memory_snapshot(WF_CPU, true, NULL, 0, &peak), 1);
    /* L - 1 saved activations (h_1 .. h_{L-1}; x is not recorded) at the start; the old
     * engine peaked at them plus L gradients and a couple of temporaries: 2L + 1 */
    ck_assert_msg(peak <= (size_t)(L + 3) * A, "the backward peaked at %zu bytes, %.1f tensors of %zu (bound: %d)",
                  peak, (double)peak / (double)A, A, L + 3);
    for (int i = 0; i < L; i++) {
        ck_assert_ptr_nonnull(wf_grad(w[i]));
        wf_tensor_free(w[i]);
    }
    wf_tensor_free(loss);
    wf_tensor_free(x);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

/* w used twice (a tied weight): its two gradients are summed into the first one's buffer,
 * so no storage is made for the sum, and the values are those of the out-of-place sum */
START_TEST(test_two_uses_summed_in_place) {
    wf_tensor *w = wf_full(WF_SHAPE(N), 2.0, WF_F32);
    wf_set_requires_grad(w, true);
    wf_tensor *a = wf_full(WF_SHAPE(N), 0.25, WF_F32), *b = wf_full(WF_SHAPE(N), 3.0, WF_F32);
    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_scope_begin();
    wf_tensor *loss = wf_keep(wf_add(wf_sum(wf_mul(w, a), WF_ALL_DIMS, false), wf_sum(wf_mul(w, b), WF_ALL_DIMS, false)));
    wf_scope_end();
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    wf_memory_census_row rows[64];
    int n = wf_memory_snapshot(WF_CPU, true, rows, 64, NULL);
    ck_assert_int_gt(n, 0);
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strncmp(rows[i].label, "gradient sum for AccumulateGrad", 31) != 0,
                      "the sum of w's two gradients made a storage: %s, %zu bytes", rows[i].label, rows[i].bytes);
    float g[N];
    ck_assert_int_eq(wf_to_array(wf_grad(w), g, WF_F32), 0);
    for (int i = 0; i < N; i++) ck_assert_float_eq(g[i], 3.25f);
    wf_tensor_free(loss), wf_tensor_free(w), wf_tensor_free(a), wf_tensor_free(b);
    ck_assert_int_eq(wf_memory_record_history(false), 0);
}
END_TEST

/* a gradient that another buffer also holds (AddBackward passes its gradient on to both
 * inputs) must not be summed into in place: x's two paths each get gy, and the sum is 2 */
START_TEST(test_shared_gradient_not_summed_in_place) {
    wf_tensor *x = wf_full(WF_SHAPE(N), 1.0, WF_F32);
    wf_set_requires_grad(x, true);
    wf_scope_begin();
    wf_tensor *u = wf_mul_scalar(x, 3.0), *v = wf_mul_scalar(x, 5.0);
    wf_tensor *s = wf_add(u, v);          /* gu = gv = gy: one tensor in two buffers */
    wf_tensor *t = wf_add(s, u);          /* u's buffer gets gy from s's and from t's add */
    wf_tensor *loss = wf_keep(wf_sum(t, WF_ALL_DIMS, false));
    wf_scope_end();
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    float g[N];
    ck_assert_int_eq(wf_to_array(wf_grad(x), g, WF_F32), 0);
    for (int i = 0; i < N; i++) ck_assert_float_eq(g[i], 3.0f * 2 + 5.0f);
    wf_tensor_free(loss), wf_tensor_free(x);
}
END_TEST

/* A tied embedding (GPT's wte: the LM head's weight and the token table). The head's gradient
 * reaches w's buffer first, and the embedding's backward adds its rows into that buffer
 * (wf__grad_sink) instead of making a zero [V, D] gradient to be summed with it: no storage
 * of the embedding's backward is alive at the backward's peak, and w's gradient is the two
 * gradients' sum (repeated indices add up), as from two separate weights. */
#define TV 1024
#define TD 64
#define TT 12
static const int64_t tied_idx[TT] = { 3, 7, 3, 1000, 0, 7, 7, 512, 1023, 3, 64, 0 };

/* loss = sum(embedding(we, idx) @ wh^T * c): we == wh for the tied model */
static wf_tensor *tied_loss(wf_tensor *we, wf_tensor *wh, wf_tensor *c) {
    wf_tensor *idx = wf_from_data(tied_idx, WF_SHAPE(TT), WF_I64);
    return wf_sum(wf_mul(wf_linear(wf_embedding(we, idx), wh, NULL), c), WF_ALL_DIMS, false);
}

START_TEST(test_tied_embedding_adds_into_head_gradient) {
    wf_manual_seed(7);
    wf_tensor *w = wf_randn(WF_SHAPE(TV, TD), WF_F32), *c = wf_randn(WF_SHAPE(TT, TV), WF_F32);
    wf_tensor *w1 = wf_clone(w), *w2 = wf_clone(w);
    wf_set_requires_grad(w, true), wf_set_requires_grad(w1, true), wf_set_requires_grad(w2, true);
    /* the reference: the same loss with the table and the head as two weights */
    wf_scope_begin();
    ck_assert_int_eq(wf_backward(tied_loss(w1, w2, c), NULL, false), 0);
    wf_tensor *ref = wf_keep(wf_add(wf_grad(w1), wf_grad(w2)));
    wf_scope_end();

    ck_assert_int_eq(wf_memory_record_history(true), 0);
    wf_scope_begin();
    wf_tensor *loss = wf_keep(tied_loss(w, w, c));
    wf_scope_end();
    ck_assert_int_eq(wf_memory_history_reset_peak(), 0);
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    wf_memory_census_row rows[64];
    int n = wf_memory_snapshot(WF_CPU, true, rows, 64, NULL);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n && i < 64; i++)
        ck_assert_msg(!strstr(rows[i].label, "EmbeddingBackward") || rows[i].bytes < (size_t)TV * TD * 4,
                      "the embedding's backward made a [V, D] gradient of its own: %s, %zu bytes", rows[i].label,
                      rows[i].bytes);
    ck_assert_int_eq(wf_memory_record_history(false), 0);

    static float g[TV * TD], r[TV * TD];
    ck_assert_int_eq(wf_to_array(wf_grad(w), g, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(ref, r, WF_F32), 0);
    double worst = 0;
    for (int i = 0; i < TV * TD; i++) {
        double e = fabs((double)g[i] - r[i]) / (1.0 + fabs((double)r[i]));
        if (e > worst) worst = e;
    }
    ck_assert_msg(worst < 1e-5, "the tied gradient is off the two weights' sum by %g", worst);
    /* row 3 (three uses) got the embedding's part: it differs from the head's alone */
    wf_scope_begin();
    double head_only = wf_item(wf_select(wf_select(wf_grad(w2), 0, 3), 0, 0));
    wf_scope_end();
    ck_assert_msg(fabs(g[3 * TD] - head_only) > 1e-3, "row 3 has no embedding gradient");
    wf_tensor_free(loss), wf_tensor_free(ref);
    wf_tensor_free(w), wf_tensor_free(w1), wf_tensor_free(w2), wf_tensor_free(c);
}
END_TEST

/* The same tie through the LM head's fused loss (GPT's path: wf_linear_cross_entropy, whose
 * gradients the forward made and the backward scales, here by 3, into a fresh buffer that the
 * embedding's rows then go into): w's gradient is the composed loss's with the table and the
 * head as two weights, summed. */
static wf_tensor *tied_lce_loss(wf_tensor *we, wf_tensor *wh, bool fused) {
    wf_tensor *idx = wf_from_data(tied_idx, WF_SHAPE(TT), WF_I64);
    static const int64_t tgt[TT] = { 5, 1, 1023, 7, 3, 3, 0, 600, 2, 9, 64, 1 };
    wf_tensor *t = wf_from_data(tgt, WF_SHAPE(TT), WF_I64), *h = wf_embedding(we, idx);
    wf_tensor *l = fused ? wf_linear_cross_entropy(h, wh, NULL, t, NULL, 0) : wf_cross_entropy(wf_linear(h, wh, NULL), t, NULL);
    return wf_mul_scalar(l, 3.0);
}

START_TEST(test_tied_embedding_through_fused_loss) {
    wf_manual_seed(8);
    wf_tensor *w = wf_randn(WF_SHAPE(TV, TD), WF_F32);
    wf_tensor *w1 = wf_clone(w), *w2 = wf_clone(w);
    wf_set_requires_grad(w, true), wf_set_requires_grad(w1, true), wf_set_requires_grad(w2, true);
    wf_scope_begin();
    ck_assert_int_eq(wf_backward(tied_lce_loss(w1, w2, false), NULL, false), 0);   /* composed: logits, then the loss */
    wf_tensor *ref = wf_keep(wf_add(wf_grad(w1), wf_grad(w2)));
    ck_assert_int_eq(wf_backward(tied_lce_loss(w, w, true), NULL, false), 0);
    wf_scope_end();
    static float g[TV * TD], r[TV * TD];
    ck_assert_int_eq(wf_to_array(wf_grad(w), g, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(ref, r, WF_F32), 0);
    for (int i = 0; i < TV * TD; i++)
        ck_assert_msg(fabs((double)g[i] - r[i]) <= 1e-6 * (1.0 + fabs((double)r[i])), "element %d: %g, the two weights' %g",
                      i, g[i], r[i]);
    wf_tensor_free(ref);
    wf_tensor_free(w), wf_tensor_free(w1), wf_tensor_free(w2);
}
END_TEST

/* The waiting gradient is shared: AddBackward hands one tensor to w's buffer and to u's node,
 * which runs after the embedding (it was recorded before it). Adding the embedding's rows into
 * that tensor would give them to q too; the sink must refuse it. q's gradient stays 1, w's is
 * 1 + how often each row was looked up. */
START_TEST(test_embedding_sink_refuses_a_shared_gradient) {
    wf_tensor *w = wf_zeros(WF_SHAPE(TV, TD), WF_F32), *q = wf_zeros(WF_SHAPE(TV, TD), WF_F32);
    wf_set_requires_grad(w, true), wf_set_requires_grad(q, true);
    wf_scope_begin();
    wf_tensor *u = wf_mul_scalar(q, 1.0);   /* recorded first: runs last */
    wf_tensor *idx = wf_from_data(tied_idx, WF_SHAPE(TT), WF_I64);
    wf_tensor *e = wf_sum(wf_embedding(w, idx), WF_ALL_DIMS, false);
    wf_tensor *loss = wf_add(e, wf_sum(wf_add(w, u), WF_ALL_DIMS, false));
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    wf_scope_end();
    static float g[TV * TD], gq[TV * TD];
    ck_assert_int_eq(wf_to_array(wf_grad(w), g, WF_F32), 0);
    ck_assert_int_eq(wf_to_array(wf_grad(q), gq, WF_F32), 0);
    for (int v = 0; v < TV; v++) {
        int uses = 0;
        for (int t = 0; t < TT; t++) uses += tied_idx[t] == v;
        for (int d = 0; d < TD; d++) {
            ck_assert_msg(g[v * TD + d] == 1.0f + (float)uses, "w row %d col %d: %g, expected %d", v, d,
                          g[v * TD + d], 1 + uses);
            ck_assert_msg(gq[v * TD + d] == 1.0f, "q row %d col %d: %g, expected 1", v, d, gq[v * TD + d]);
        }
    }
    wf_tensor_free(w), wf_tensor_free(q);
}
END_TEST

/* after a backward without retain_graph, a second one is a clear error, as before */
START_TEST(test_second_backward_still_refused) {
    wf_tensor *x = wf_full(WF_SHAPE(4), 2.0, WF_F32);
    wf_set_requires_grad(x, true);
    wf_tensor *y = wf_mul(x, x), *loss = wf_sum(y, WF_ALL_DIMS, false);
    ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    ck_assert_int_eq(wf_backward(loss, NULL, false), WF_EAUTOGRAD);
    ck_assert_ptr_nonnull(strstr(wf_error_message(), "retain_graph"));
    wf_clear_error();
    wf_tensor_free(loss), wf_tensor_free(y), wf_tensor_free(x);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("backward_memory");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_saved_freed_as_backward_runs);
    tcase_add_test(tc, test_two_uses_summed_in_place);
    tcase_add_test(tc, test_shared_gradient_not_summed_in_place);
    tcase_add_test(tc, test_tied_embedding_adds_into_head_gradient);
    tcase_add_test(tc, test_tied_embedding_through_fused_loss);
    tcase_add_test(tc, test_embedding_sink_refuses_a_shared_gradient);
    tcase_add_test(tc, test_second_backward_still_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
