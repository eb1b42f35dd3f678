/* tests/nn/test_loss.c: losses against PyTorch's formulas (worked values), options, errors,
 * and gradcheck of each. */
#include "test_util.h"
#include "weft/nn.h"

/* log_softmax of one row on the host */
static void lsm(const double *x, int C, double *out) {
    double m = x[0], s = 0;
    for (int i = 1; i < C; i++) m = fmax(m, x[i]);
    for (int i = 0; i < C; i++) s += exp(x[i] - m);
    for (int i = 0; i < C; i++) out[i] = x[i] - m - log(s);
}

START_TEST(test_cross_entropy_values) {
    WF_SCOPE {
        /* PyTorch: F.cross_entropy(tensor([[1., 2., 3.]]), tensor([0])) = 2.4076059644443806 */
        wf_tensor *x1 = wf_from_data((double[]){ 1, 2, 3 }, WF_SHAPE(1, 3), WF_F64);
        wf_tensor *t1 = wf_from_data((int64_t[]){ 0 }, WF_SHAPE(1), WF_I64);
        ck_assert_tensor_near(wf_cross_entropy(x1, t1, NULL), ((double[]){ 2.4076059644443806 }), 1, 1e-12);
        /* label_smoothing 0.1: 0.9 * nll + 0.1/3 * sum(-logp) = 2.3076059644443806 */
        ck_assert_tensor_near(wf_cross_entropy(x1, t1, &(wf_cross_entropy_opts){ .label_smoothing = 0.1 }),
                              ((double[]){ 2.3076059644443806 }), 1, 1e-12);

        double xv[] = { 0.5, -1, 2, 1, 1, 1, -2, 0, 3, 0.1, 0.2, 0.3 };
        int64_t tv[] = { 2, -100, 1, 0 };
        double w[] = { 0.2, 1.0, 3.0 };
        double lp[12];
        for (int i = 0; i < 4; i++) lsm(xv + 3 * i, 3, lp + 3 * i);
        wf_tensor *x = wf_from_data(xv, WF_SHAPE(4, 3), WF_F64);
        wf_tensor *t = wf_from_data(tv, WF_SHAPE(4), WF_I64);
        wf_tensor *wt = wf_from_data(w, WF_SHAPE(3), WF_F64);
        /* mean over non-ignored */
        double nll[4] = { -lp[2], 0, -lp[7], -lp[9] };
        ck_assert_tensor_near(wf_cross_entropy(x, t, NULL), ((double[]){ (nll[0] + nll[2] + nll[3]) / 3 }), 1, 1e-12);
        ck_assert_tensor_near(wf_cross_entropy(x, t, &(wf_cross_entropy_opts){ .reduction = WF_REDUCTION_NONE }), nll, 4, 1e-12);
        ck_assert_tensor_near(wf_cross_entropy(x, t, &(wf_cross_entropy_opts){ .reduction = WF_REDUCTION_SUM }),
                              ((double[]){ nll[0] + nll[2] + nll[3] }), 1, 1e-12);
        /* weighted mean: divided by the weights of the non-ignored targets */
        double wsum = w[2] + w[1] + w[0];
        double wl = (w[2] * nll[0] + w[1] * nll[2] + w[0] * nll[3]) / wsum;
        ck_assert_tensor_near(wf_cross_entropy(x, t, &(wf_cross_entropy_opts){ .weight = wt }), ((double[]){ wl }), 1, 1e-12);
        /* ignore_index = 1 (and -100 becomes an error: out of range) */
        int64_t tv2[] = { 2, 0, 1, 0 };
        wf_tensor *t2 = wf_from_data(tv2, WF_SHAPE(4), WF_I64);
        ck_assert_tensor_near(wf_cross_entropy(x, t2, &(wf_cross_entropy_opts){ .ignore_index_set = true, .ignore_index = 1 }),
                              ((double[]){ (-lp[2] - lp[3] - lp[9]) / 3 }), 1, 1e-12);
        /* weight + label smoothing (PyTorch's formula) */
        double eps = 0.2, smooth[4];
        for (int i = 0; i < 4; i++) smooth[i] = -(w[0] * lp[3 * i] + w[1] * lp[3 * i + 1] + w[2] * lp[3 * i + 2]);
        double sm = (smooth[0] + smooth[2] + smooth[3]) / wsum;
        ck_assert_tensor_near(wf_cross_entropy(x, t, &(wf_cross_entropy_opts){ .weight = wt, .label_smoothing = eps }),
                              ((double[]){ (1 - eps) * wl + eps / 3 * sm }), 1, 1e-12);
        double none_ls[4];
        for (int i = 0; i < 4; i++) none_ls[i] = i == 1 ? 0 : (1 - eps) * nll[i] + eps / 3 * -(lp[3 * i] + lp[3 * i + 1] + lp[3 * i + 2]);
        ck_assert_tensor_near(wf_cross_entropy(x, t, &(wf_cross_entropy_opts){ .label_smoothing = eps, .reduction = WF_REDUCTION_NONE }),
                              none_ls, 4, 1e-12);
        /* probability targets */
        double pv[] = { 0.2, 0.3, 0.5, 1, 0, 0, 0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3 };
        wf_tensor *p = wf_from_data(pv, WF_SHAPE(4, 3), WF_F64);
        double tot = 0, per[4];
        for (int i = 0; i < 4; i++) {
            per[i] = 0;
            for (int c = 0; c < 3; c++) per[i] -= pv[3 * i + c] * lp[3 * i + c];
            tot += per[i];
        }
        ck_assert_tensor_near(wf_cross_entropy(x, p, NULL), ((double[]){ tot / 4 }), 1, 1e-12);
        ck_assert_tensor_near(wf_cross_entropy(x, p, &(wf_cross_entropy_opts){ .reduction = WF_REDUCTION_NONE }), per, 4, 1e-12);
        double tot_ls = 0;
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 3; c++) tot_ls -= (pv[3 * i + c] * 0.9 + 0.1 / 3) * lp[3 * i + c] * w[c];
        ck_assert_tensor_near(wf_cross_entropy(x, p, &(wf_cross_entropy_opts){ .label_smoothing = 0.1, .weight = wt }),
                              ((double[]){ tot_ls / 4 }), 1, 1e-12);
        /* [N, C, d] layout equals the permuted [N*d, C] one */
        wf_tensor *x3 = wf_randn(WF_SHAPE(2, 3, 2), WF_F64);
        wf_tensor *t3 = wf_from_data((int64_t[]){ 0, 2, 1, 1 }, WF_SHAPE(2, 2), WF_I64);
        wf_tensor *flat = wf_reshape(wf_permute(x3, WF_DIMS(0, 2, 1)), WF_SHAPE(4, 3));
        double ref = wf_item(wf_cross_entropy(flat, wf_reshape(t3, WF_SHAPE(4)), NULL));
        ck_assert_tensor_near(wf_cross_entropy(x3, t3, NULL), ((double[]){ ref }), 1, 1e-12);
        /* nll_loss on log-probabilities equals cross_entropy */
        ck_assert_tensor_near(wf_nll_loss(wf_log_softmax(x, 1), t, &(wf_cross_entropy_opts){ .weight = wt }), ((double[]){ wl }), 1, 1e-12);
        /* unbatched [C] with 0-dim target */
        ck_assert_tensor_near(wf_cross_entropy(wf_reshape(x1, WF_SHAPE(3)), wf_reshape(t1, NULL, 0), NULL),
                              ((double[]){ 2.4076059644443806 }), 1, 1e-12);
    }
}
END_TEST

START_TEST(test_cross_entropy_errors) {
    WF_SCOPE {
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 5), WF_F32);
        ck_assert_ptr_null(wf_cross_entropy(x, wf_from_data((int64_t[]){ 1, 7 }, WF_SHAPE(2), WF_I64), NULL));
        ck_assert_error(WF_EINDEX, "target 7 is out of bounds");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_from_data((int64_t[]){ -1, 0 }, WF_SHAPE(2), WF_I64), NULL));
        ck_assert_error(WF_EINDEX, "target -1");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_zeros(WF_SHAPE(2), WF_I32), NULL));
        ck_assert_error(WF_EDTYPE, "int64");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_zeros(WF_SHAPE(3), WF_I64), NULL));
        ck_assert_error(WF_ESHAPE, "target of shape [3]");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_zeros(WF_SHAPE(2, 4), WF_F32), NULL));
        ck_assert_error(WF_ESHAPE, "probability target");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_zeros(WF_SHAPE(2), WF_I64), &(wf_cross_entropy_opts){ .weight = wf_ones(WF_SHAPE(4), WF_F32) }));
        ck_assert_error(WF_ESHAPE, "weight");
        ck_assert_ptr_null(wf_cross_entropy(x, wf_zeros(WF_SHAPE(2), WF_I64), &(wf_cross_entropy_opts){ .label_smoothing = 2 }));
        ck_assert_error(WF_EINVAL, "label_smoothing");
        ck_assert_ptr_null(wf_mse_loss(x, x, (wf_reduction)9));
        ck_assert_error(WF_EINVAL, "reduction");
        ck_assert_ptr_null(wf_mse_loss(x, x, WF_REDUCTION_BATCHMEAN));
        ck_assert_error(WF_EINVAL, "reduction");
        /* all targets ignored: mean is 0/0 = NaN as in PyTorch */
        wf_tensor *all = wf_full(WF_SHAPE(2), -100, WF_I64);
        ck_assert(isnan(wf_item(wf_cross_entropy(x, all, NULL))));
    }
}
END_TEST

START_TEST(test_regression_losses) {
    WF_SCOPE {
        wf_tensor *a = wf_from_data((double[]){ 0, 1, 2, -3 }, WF_SHAPE(2, 2), WF_F64);
        wf_tensor *b = wf_from_data((double[]){ 0.5, 1, 0, 0 }, WF_SHAPE(2, 2), WF_F64);
        /* d = -0.5, 0, 2, -3 */
        ck_assert_tensor_near(wf_mse_loss(a, b, WF_REDUCTION_MEAN), ((double[]){ (0.25 + 4 + 9) / 4 }), 1, 1e-12);
        ck_assert_tensor_near(wf_mse_loss(a, b, WF_REDUCTION_NONE), ((double[]){ 0.25, 0, 4, 9 }), 4, 1e-12);
        ck_assert_tensor_near(wf_l1_loss(a, b, WF_REDUCTION_SUM), ((double[]){ 5.5 }), 1, 1e-12);
        ck_assert_tensor_near(wf_smooth_l1_loss(a, b, WF_REDUCTION_NONE, 1.0), ((double[]){ 0.125, 0, 1.5, 2.5 }), 4, 1e-12);
        ck_assert_tensor_near(wf_smooth_l1_loss(a, b, WF_REDUCTION_NONE, 4.0),
                              ((double[]){ 0.25 / 8, 0, 0.5, 9.0 / 8 }), 4, 1e-12);
        ck_assert_tensor_near(wf_smooth_l1_loss(a, b, WF_REDUCTION_MEAN, 0.0), ((double[]){ 5.5 / 4 }), 1, 1e-12);
        /* BCE with logits: -[pw*y*log s(x) + (1-y) log(1-s(x))] * w */
        double x[] = { 0.5, -2, 3, 0 }, y[] = { 1, 0, 0.25, 1 }, pw[] = { 2, 0.5 }, w[] = { 1, 3 };
        wf_tensor *xt = wf_from_data(x, WF_SHAPE(2, 2), WF_F64), *yt = wf_from_data(y, WF_SHAPE(2, 2), WF_F64);
        double e[4], en[4], tot = 0;
        for (int i = 0; i < 4; i++) {
            double s = 1 / (1 + exp(-x[i]));
            e[i] = -(pw[i % 2] * y[i] * log(s) + (1 - y[i]) * log(1 - s)) * w[i % 2];
            en[i] = -(y[i] * log(s) + (1 - y[i]) * log(1 - s));
            tot += e[i];
        }
        ck_assert_tensor_near(wf_binary_cross_entropy_with_logits(xt, yt, NULL), ((double[]){ (en[0] + en[1] + en[2] + en[3]) / 4 }), 1, 1e-12);
        wf_bce_opts o = { .pos_weight = wf_from_data(pw, WF_SHAPE(2), WF_F64), .weight = wf_from_data(w, WF_SHAPE(2), WF_F64),
                          .reduction = WF_REDUCTION_SUM };
        ck_assert_tensor_near(wf_binary_cross_entropy_with_logits(xt, yt, &o), ((double[]){ tot }), 1, 1e-12);
        /* large logits stay finite */
        wf_tensor *big = wf_from_data((double[]){ 1000, -1000 }, WF_SHAPE(2), WF_F64);
        ck_assert_tensor_near(wf_binary_cross_entropy_with_logits(big, wf_from_data((double[]){ 0, 1 }, WF_SHAPE(2), WF_F64), &(wf_bce_opts){ .reduction = WF_REDUCTION_NONE }),
                              ((double[]){ 1000, 1000 }), 2, 1e-12);
        /* KL: input log q, target p */
        double lq[] = { log(0.25), log(0.75), log(0.5), log(0.5) }, p[] = { 0.5, 0.5, 0, 1 };
        wf_tensor *lqt = wf_from_data(lq, WF_SHAPE(2, 2), WF_F64), *pt = wf_from_data(p, WF_SHAPE(2, 2), WF_F64);
        double k[4];
        for (int i = 0; i < 4; i++) k[i] = p[i] > 0 ? p[i] * (log(p[i]) - lq[i]) : 0;
        ck_assert_tensor_near(wf_kl_div(lqt, pt, WF_REDUCTION_NONE, false), k, 4, 1e-12);
        ck_assert_tensor_near(wf_kl_div(lqt, pt, WF_REDUCTION_BATCHMEAN, false), ((double[]){ (k[0] + k[1] + k[2] + k[3]) / 2 }), 1, 1e-12);
        ck_assert_tensor_near(wf_kl_div(lqt, pt, WF_REDUCTION_MEAN, false), ((double[]){ (k[0] + k[1] + k[2] + k[3]) / 4 }), 1, 1e-12);
        double lp[] = { log(0.5), log(0.5), log(0.1), log(0.9) };
        wf_tensor *lpt = wf_from_data(lp, WF_SHAPE(2, 2), WF_F64);
        double kl = 0;
        for (int i = 0; i < 4; i++) kl += exp(lp[i]) * (lp[i] - lq[i]);
        ck_assert_tensor_near(wf_kl_div(lqt, lpt, WF_REDUCTION_SUM, true), ((double[]){ kl }), 1, 1e-12);
    }
}
END_TEST

typedef struct { int kind; wf_tensor *target, *weight; } loss_ud;

static wf_tensor *loss_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    loss_ud *u = ud;
    switch (u->kind) {
    case 0: return wf_cross_entropy(in[0], u->target, &(wf_cross_entropy_opts){ .weight = u->weight, .label_smoothing = 0.1 });
    case 1: return wf_cross_entropy(in[0], in[1], &(wf_cross_entropy_opts){ .label_smoothing = 0.2 });
    case 2: return wf_mse_loss(in[0], in[1], WF_REDUCTION_MEAN);
    case 3: return wf_l1_loss(in[0], in[1], WF_REDUCTION_SUM);
    case 4: return wf_smooth_l1_loss(in[0], in[1], WF_REDUCTION_NONE, 0.7);
    case 5: return wf_binary_cross_entropy_with_logits(in[0], in[1], &(wf_bce_opts){ .pos_weight = u->weight });
    case 6: return wf_kl_div(in[0], in[1], WF_REDUCTION_BATCHMEAN, false);
    case 7: return wf_kl_div(in[0], in[1], WF_REDUCTION_SUM, true);
    default: return wf_nll_loss(in[0], u->target, &(wf_cross_entropy_opts){ .reduction = WF_REDUCTION_NONE });
    }
}

START_TEST(test_loss_gradcheck) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(4, 3), WF_F64);
        /* a second input away from kinks (|x - y| > 0.1) */
        wf_tensor *y = wf_add(x, wf_from_data((double[]){ 0.5, -0.3, 1.2, -2, 0.4, 0.3, -0.6, 2.2, 0.9, -1, 0.35, -0.45 }, WF_SHAPE(4, 3), WF_F64));
        wf_tensor *prob = wf_softmax(wf_randn(WF_SHAPE(4, 3), WF_F64), 1);
        wf_tensor *logp = wf_log_softmax(wf_randn(WF_SHAPE(4, 3), WF_F64), 1);
        wf_tensor *t = wf_from_data((int64_t[]){ 2, -100, 1, 0 }, WF_SHAPE(4), WF_I64);
        wf_tensor *w = wf_from_data((double[]){ 0.3, 1, 2 }, WF_SHAPE(3), WF_F64);
        wf_tensor *seconds[] = { NULL, prob, y, y, y, wf_rand(WF_SHAPE(4, 3), WF_F64), prob, logp, NULL };
        /* mse_loss(mean), l1_loss(sum) and kl_div(batchmean) are op harness rows */
        static const int kinds[] = { 0, 1, 4, 5, 7, 8 };
        for (size_t c = 0; c < sizeof kinds / sizeof kinds[0]; c++) {
            int kind = kinds[c];
            wf_tensor *in[2] = { wf_clone(kind >= 6 && kind <= 7 ? logp : x), seconds[kind] ? wf_clone(seconds[kind]) : NULL };
            wf_set_requires_grad(in[0], true);
            if (in[1]) wf_set_requires_grad(in[1], true);
            loss_ud u = { kind, t, kind == 5 ? wf_from_data((double[]){ 2, 0.5, 1 }, WF_SHAPE(3), WF_F64) : w };
            int rc = wf_gradcheck(loss_fn, in, in[1] ? 2 : 1, &u, 1e-6, 1e-5, 1e-4);
            ck_assert_msg(rc == 0, "loss %d: %s", kind, wf_error_message());
        }
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_loss");
    TCase *tc = tcase_create("loss");
    tcase_add_test(tc, test_cross_entropy_values);
    tcase_add_test(tc, test_cross_entropy_errors);
    tcase_add_test(tc, test_regression_losses);
    tcase_add_test(tc, test_loss_gradcheck);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
