/* tests/optim/test_optim.c: SGD, Adam, AdamW, RMSprop, Adagrad against hand-written scalar
 * references (independent of the library), param groups, zero_grad, state_dict round trips,
 * steady-state allocation, and argument errors. */
#include "test_util.h"
#include "weft/optim.h"
#include "optim/optim_impl.h"

void wf__optim_force_generic(bool on);   /* internal: tests the tensor-op path on the CPU */

#define N 3
static const double P0[N] = { 0.5, -1.25, 2.0 };

/* a deterministic gradient that depends on the parameter (as in real training) */
static double grad_at(int t, int i, double p) { return 0.5 * sin(1.0 + 0.7 * t + i) + 0.1 * p; }

typedef struct cfg {
    double lr, momentum, dampening, wd, b1, b2, eps, alpha, lr_decay, iav;
    bool nesterov, maximize, amsgrad, centered;
} cfg;

/* ---------------------------------------------------------------- scalar references */

static void ref_sgd(double *p, const double *g, double *s, int t, const cfg *c) {
    double *buf = s;
    for (int i = 0; i < N; i++) {
        double d = c->maximize ? -g[i] : g[i];
        d += c->wd * p[i];
        if (c->momentum != 0) {
            buf[i] = t == 1 ? d : c->momentum * buf[i] + (1 - c->dampening) * d;
            d = c->nesterov ? d + c->momentum * buf[i] : buf[i];
        }
        p[i] -= c->lr * d;
    }
}

static void ref_adam(double *p, const double *g, double *s, int t, const cfg *c, bool decoupled) {
    double *m = s, *v = s + N, *vmax = s + 2 * N;
    for (int i = 0; i < N; i++) {
        if (decoupled) p[i] *= 1 - c->lr * c->wd;
        double d = c->maximize ? -g[i] : g[i];
        if (!decoupled) d += c->wd * p[i];
        m[i] = c->b1 * m[i] + (1 - c->b1) * d;
        v[i] = c->b2 * v[i] + (1 - c->b2) * d * d;
        double bc1 = 1 - pow(c->b1, t), bc2 = 1 - pow(c->b2, t);
        double vh = v[i];
        if (c->amsgrad) { vmax[i] = fmax(vmax[i], v[i]); vh = vmax[i]; }
        p[i] -= c->lr / bc1 * m[i] / (sqrt(vh) / sqrt(bc2) + c->eps);
    }
}

static void ref_rmsprop(double *p, const double *g, double *s, int t, const cfg *c) {
    (void)t;
    double *sa = s, *ga = s + N, *buf = s + 2 * N;
    for (int i = 0; i < N; i++) {
        double d = (c->maximize ? -g[i] : g[i]) + c->wd * p[i];
        sa[i] = c->alpha * sa[i] + (1 - c->alpha) * d * d;
        double avg;
        if (c->centered) {
            ga[i] = c->alpha * ga[i] + (1 - c->alpha) * d;
            avg = sqrt(sa[i] - ga[i] * ga[i]);
        } else {
            avg = sqrt(sa[i]);
        }
        avg += c->eps;
        if (c->momentum > 0) {
            buf[i] = c->momentum * buf[i] + d / avg;
            p[i] -= c->lr * buf[i];
        } else {
            p[i] -= c->lr * d / avg;
        }
    }
}

static void ref_adagrad(double *p, const double *g, double *s, int t, const cfg *c) {
    double *sum = s;
    double clr = c->lr / (1 + (t - 1) * c->lr_decay);
    for (int i = 0; i < N; i++) {
        if (t == 1) sum[i] = c->iav;
        double d = (c->maximize ? -g[i] : g[i]) + c->wd * p[i];
        sum[i] += d * d;
        p[i] -= clr * d / (sqrt(sum[i]) + c->eps);
    }
}

typedef enum { K_SGD, K_ADAM, K_ADAMW, K_RMS, K_ADAGRAD } kind;

static wf_optimizer *make(kind k, wf_tensor *p, const cfg *c) {
    wf_tensor *ps[] = { p };
    /* c holds the actual values; pass explicit zeros as WF_OPTIM_ZERO where the default is not 0 */
#define Z(v) ((v) == 0 ? WF_OPTIM_ZERO : (v))
    switch (k) {
    case K_SGD:
        return wf_sgd_new(ps, 1, &(wf_sgd_opts){ .lr = c->lr, .momentum = c->momentum, .dampening = c->dampening,
                                                 .weight_decay = c->wd, .nesterov = c->nesterov, .maximize = c->maximize });
    case K_ADAM: case K_ADAMW: {
        wf_adam_opts o = { .lr = c->lr, .betas = { c->b1, c->b2 }, .eps = c->eps, .weight_decay = Z(c->wd),
                           .amsgrad = c->amsgrad, .maximize = c->maximize };
        return k == K_ADAM ? wf_adam_new(ps, 1, &o) : wf_adamw_new(ps, 1, &o);
    }
    case K_RMS:
        return wf_rmsprop_new(ps, 1, &(wf_rmsprop_opts){ .lr = c->lr, .alpha = c->alpha, .eps = c->eps,
                                                         .weight_decay = c->wd, .momentum = c->momentum,
                                                         .centered = c->centered, .maximize = c->maximize });
    case K_ADAGRAD:
        return wf_adagrad_new(ps, 1, &(wf_adagrad_opts){ .lr = c->lr, .lr_decay = c->lr_decay, .weight_decay = c->wd,
                                                         .initial_accumulator_value = c->iav, .eps = c->eps,
                                                         .maximize = c->maximize });
    }
#undef Z
    return NULL;
}

static void ref_step(kind k, double *p, const double *g, double *s, int t, const cfg *c) {
    switch (k) {
    case K_SGD: ref_sgd(p, g, s, t, c); break;
    case K_ADAM: ref_adam(p, g, s, t, c, false); break;
    case K_ADAMW: ref_adam(p, g, s, t, c, true); break;
    case K_RMS: ref_rmsprop(p, g, s, t, c); break;
    case K_ADAGRAD: ref_adagrad(p, g, s, t, c); break;
    }
}

/* g as a tensor of dtype dt (the caller owns it) */
static wf_tensor *grad_tensor(const double *g, int64_t n, wf_dtype dt) {
    wf_tensor *x = wf_from_data(g, WF_SHAPE(n), WF_F64);
    wf_tensor *y = wf_to_dtype(x, dt);
    wf_tensor_free(x);
    return y;
}

/* set p's gradient from its current values (step t) */
static void set_grad_from(wf_tensor *p, int t) {
    double v[8], g[8];
    int64_t n = wf_numel(p);
    ck_assert(n <= 8);
    ck_assert_int_eq(wf_to_array(p, v, WF_F64), 0);
    for (int i = 0; i < n; i++) g[i] = grad_at(t, i, v[i]);
    wf_tensor *gt = grad_tensor(g, n, wf_tensor_dtype(p));
    ck_assert_int_eq(wf_set_grad(p, gt), 0);
    wf_tensor_free(gt);
}

/* three steps on the fused and the generic path, in f64 and f32 */
static void check_case(const char *label, kind k, cfg c) {
    for (int path = 0; path < 2; path++) {
        for (int f = 0; f < 2; f++) {
            wf__optim_force_generic(path == 1);
            wf_dtype dt = f ? WF_F32 : WF_F64;
            double tol = f ? 2e-6 : 1e-12;
            wf_tensor *p = grad_tensor(P0, N, dt);
            ck_assert_int_eq(wf_set_requires_grad(p, true), 0);
            wf_optimizer *opt = make(k, p, &c);
            ck_assert_msg(opt != NULL, "%s: %s", label, wf_error_message());
            double rp[N], s[4 * N] = { 0 }, g[N];
            memcpy(rp, P0, sizeof rp);
            for (int t = 1; t <= 3; t++) {
                double cur[N];
                wf_to_array(p, cur, WF_F64);
                for (int i = 0; i < N; i++) g[i] = grad_at(t, i, f ? cur[i] : rp[i]);
                wf_tensor *gt = grad_tensor(g, N, dt);
                wf_set_grad(p, gt);
                wf_tensor_free(gt);
                ck_assert_msg(wf_optimizer_step(opt) == 0, "%s: %s", label, wf_error_message());
                ref_step(k, rp, g, s, t, &c);
                double got[N];
                wf_to_array(p, got, WF_F64);
                for (int i = 0; i < N; i++)
                    ck_assert_msg(fabs(got[i] - rp[i]) <= tol * (1 + fabs(rp[i])),
                                  "%s (%s, %s) step %d elem %d: got %.12g expected %.12g", label,
                                  path ? "generic" : "fused", f ? "f32" : "f64", t, i, got[i], rp[i]);
            }
            wf_optimizer_free(opt);
            wf_tensor_free(p);
        }
    }
    wf__optim_force_generic(false);
}

START_TEST(test_sgd_variants) {
    check_case("SGD plain", K_SGD, (cfg){ .lr = 0.1 });
    check_case("SGD momentum", K_SGD, (cfg){ .lr = 0.1, .momentum = 0.9 });
    check_case("SGD momentum+dampening+wd", K_SGD, (cfg){ .lr = 0.05, .momentum = 0.8, .dampening = 0.3, .wd = 0.01 });
    check_case("SGD nesterov+wd", K_SGD, (cfg){ .lr = 0.1, .momentum = 0.9, .nesterov = true, .wd = 0.1 });
    check_case("SGD maximize", K_SGD, (cfg){ .lr = 0.1, .momentum = 0.5, .maximize = true });
}
END_TEST

START_TEST(test_adam_variants) {
    cfg base = { .lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8 };
    check_case("Adam", K_ADAM, base);
    cfg c = base; c.amsgrad = true; c.lr = 0.05;
    check_case("Adam amsgrad", K_ADAM, c);
    c = base; c.wd = 0.1; c.maximize = true; c.b1 = 0.5; c.b2 = 0.9;
    check_case("Adam wd+maximize", K_ADAM, c);
    c = base; c.wd = 0.01;
    check_case("AdamW", K_ADAMW, c);
    c = base; c.wd = 0.2; c.amsgrad = true; c.b1 = 0.3;
    check_case("AdamW amsgrad", K_ADAMW, c);
    c = base; c.wd = 0;
    check_case("AdamW wd=0", K_ADAMW, c);
}
END_TEST

/* Adam/AdamW over many parameters of mixed sizes and dtypes: all of a step's updates run in
 * one chunked parallel pass (more than the 32 a batch holds, so it also flushes midway).
 * Against one optimizer per parameter (same loop, one parameter at a time): the same bits;
 * against the generic tensor-op path: the same values to rounding. */
START_TEST(test_adam_batched_many_params) {
    enum { NP = 41 };
    static const int64_t sizes[] = { 1, 3, 4095, 4096, 4097, 9000, 70001, 17 };
    for (int decoupled = 0; decoupled < 2; decoupled++) WF_SCOPE {
        wf_tensor *p[3][NP];
        wf_manual_seed(5);
        for (int i = 0; i < NP; i++) {
            wf_dtype dt = i % 5 == 4 ? WF_F64 : WF_F32;
            wf_tensor *init = wf_randn(WF_SHAPE(sizes[i % 8]), dt);
            for (int c = 0; c < 3; c++) {
                p[c][i] = wf_clone(init);
                wf_set_requires_grad(p[c][i], true);
            }
        }
        wf_adam_opts o = { .lr = 0.01, .betas = { 0.9, 0.999 }, .eps = 1e-8, .weight_decay = 0.05 };
        wf_optimizer *all = decoupled ? wf_adamw_new(p[0], NP, &o) : wf_adam_new(p[0], NP, &o);
        wf_optimizer *gen = decoupled ? wf_adamw_new(p[2], NP, &o) : wf_adam_new(p[2], NP, &o);
        wf_optimizer *each[NP];
        for (int i = 0; i < NP; i++) each[i] = decoupled ? wf_adamw_new(&p[1][i], 1, &o) : wf_adam_new(&p[1][i], 1, &o);
        for (int t = 0; t < 3; t++) {
            for (int i = 0; i < NP; i++) {
                wf_tensor *g = wf_sin(wf_add_scalar(wf_mul_scalar(wf_detach(p[0][i]), 1.5), t));   /* no graph: p -> grad -> p would be a cycle */
                for (int c = 0; c < 3; c++) wf_set_grad(p[c][i], g);
            }
            ck_assert_int_eq(wf_optimizer_step(all), 0);
            for (int i = 0; i < NP; i++) ck_assert_int_eq(wf_optimizer_step(each[i]), 0);
            wf__optim_force_generic(true);
            ck_assert_int_eq(wf_optimizer_step(gen), 0);
            wf__optim_force_generic(false);
        }
        for (int i = 0; i < NP; i++) {
            int64_t n = wf_numel(p[0][i]);
            double same = wf_item(wf_amax(wf_abs(wf_sub(p[0][i], p[1][i])), WF_ALL_DIMS, false));
            ck_assert_msg(same == 0, "param %d (%lld elements): batched differs from alone by %g", i, (long long)n, same);
            double tol = wf_tensor_dtype(p[0][i]) == WF_F32 ? 2e-6 : 1e-12;
            wf_tensor *d = wf_amax(wf_abs(wf_sub(p[0][i], p[2][i])), WF_ALL_DIMS, false);
            ck_assert_msg(wf_item(d) <= tol, "param %d: batched vs generic differ by %g", i, wf_item(d));
        }
        wf_optimizer_free(all);
        wf_optimizer_free(gen);
        for (int i = 0; i < NP; i++) wf_optimizer_free(each[i]);
    }
}
END_TEST

START_TEST(test_rmsprop_adagrad_variants) {
    check_case("RMSprop", K_RMS, (cfg){ .lr = 0.01, .alpha = 0.99, .eps = 1e-8 });
    check_case("RMSprop centered+momentum", K_RMS,
               (cfg){ .lr = 0.01, .alpha = 0.9, .eps = 1e-8, .momentum = 0.9, .centered = true, .wd = 0.05 });
    check_case("RMSprop momentum maximize", K_RMS,
               (cfg){ .lr = 0.02, .alpha = 0.95, .eps = 1e-6, .momentum = 0.5, .maximize = true });
    check_case("Adagrad", K_ADAGRAD, (cfg){ .lr = 0.1, .eps = 1e-10 });
    check_case("Adagrad lr_decay+iav+wd", K_ADAGRAD,
               (cfg){ .lr = 0.1, .eps = 1e-10, .lr_decay = 0.5, .iav = 0.1, .wd = 0.01 });
}
END_TEST

START_TEST(test_defaults) {
    wf_tensor *p = wf_zeros(WF_SHAPE(2), WF_F32);
    wf_tensor *ps[] = { p };
    wf_optimizer *o = wf_adam_new(ps, 1, NULL);
    ck_assert_str_eq(wf_optimizer_name(o), "Adam");
    ck_assert_double_eq(wf_optimizer_get_lr(o, 0), 1e-3);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "beta1"), 0.9);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "beta2"), 0.999);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "eps"), 1e-8);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "weight_decay"), 0);
    ck_assert(wf_optimizer_has_hparam(o, 0, "beta1"));
    ck_assert(!wf_optimizer_has_hparam(o, 0, "momentum_of_nothing"));
    ck_assert(!wf_optimizer_has_hparam(o, 5, "lr"));          /* no such group */
    ck_assert(!wf_optimizer_has_hparam(NULL, 0, "lr"));
    ck_assert(isnan(wf_optimizer_get_hparam(o, 0, "momentum")));
    ck_assert_error(WF_ENOTFOUND, "momentum");
    wf_optimizer_free(o);
    o = wf_adamw_new(ps, 1, NULL);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "weight_decay"), 0.01);
    wf_optimizer_free(o);
    o = wf_adamw_new(ps, 1, &(wf_adam_opts){ .weight_decay = WF_OPTIM_ZERO });
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "weight_decay"), 0);
    wf_optimizer_free(o);
    o = wf_sgd_new(ps, 1, NULL);
    ck_assert_double_eq(wf_optimizer_get_lr(o, 0), 1e-3);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "momentum"), 0);
    wf_optimizer_free(o);
    o = wf_rmsprop_new(ps, 1, NULL);
    ck_assert_double_eq(wf_optimizer_get_lr(o, 0), 1e-2);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "alpha"), 0.99);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "eps"), 1e-8);
    wf_optimizer_free(o);
    o = wf_adagrad_new(ps, 1, NULL);
    ck_assert_double_eq(wf_optimizer_get_lr(o, 0), 1e-2);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "eps"), 1e-10);
    ck_assert_str_eq(wf_optimizer_name(o), "Adagrad");
    wf_optimizer_free(o);
    wf_tensor_free(p);
}
END_TEST

START_TEST(test_param_groups) {
    double a0[] = { 1, 2 }, b0[] = { 3 };
    wf_tensor *a = wf_from_data(a0, WF_SHAPE(2), WF_F64), *b = wf_from_data(b0, WF_SHAPE(1), WF_F64);
    wf_tensor *c = wf_zeros(WF_SHAPE(4), WF_F64);   /* never gets a gradient */
    wf_set_requires_grad(a, true);
    wf_set_requires_grad(b, true);
    wf_optimizer *o = wf_sgd_new(&a, 1, &(wf_sgd_opts){ .lr = 0.1, .momentum = 0.5 });
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(wf_optimizer_add_param_group(o, (wf_tensor *[]){ b, c }, 2,
                                                  &(wf_param_group_opts){ .lr = 0.01 }), 0);
    ck_assert_int_eq(wf_optimizer_num_groups(o), 2);
    ck_assert_int_eq(wf_optimizer_group_size(o, 1), 2);
    ck_assert_ptr_eq(wf_optimizer_group_param(o, 1, 1), c);
    ck_assert_double_eq(wf_optimizer_get_lr(o, 1), 0.01);
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 1, "momentum"), 0.5);   /* inherited */
    /* the same tensor in a second group */
    ck_assert_int_eq(wf_optimizer_add_param_group(o, &a, 1, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "more than one parameter group");
    ck_assert_int_eq(wf_optimizer_num_groups(o), 2);
    /* bad group options */
    wf_tensor *d = wf_zeros(WF_SHAPE(1), WF_F64);
    ck_assert_int_eq(wf_optimizer_add_param_group(o, &d, 1, &(wf_param_group_opts){ .lr = -1 }), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "SGD: invalid learning rate: -1");
    wf_tensor_free(d);

    wf_tensor *ga = wf_full(WF_SHAPE(2), 1.0, WF_F64), *gb = wf_full(WF_SHAPE(1), 1.0, WF_F64);
    wf_set_grad(a, ga);
    wf_set_grad(b, gb);
    wf_tensor_free(ga);
    wf_tensor_free(gb);
    ck_assert_int_eq(wf_optimizer_step(o), 0);
    ck_assert_tensor_near(a, ((double[]){ 0.9, 1.9 }), 2, 1e-15);
    ck_assert_tensor_near(b, ((double[]){ 2.99 }), 1, 1e-15);
    ck_assert_tensor_near(c, ((double[]){ 0, 0, 0, 0 }), 4, 0);
    /* set_lr and errors */
    ck_assert_int_eq(wf_optimizer_set_lr(o, 1, 0.5), 0);
    ck_assert_double_eq(wf_optimizer_get_lr(o, 1), 0.5);
    ck_assert_int_eq(wf_optimizer_set_lr(o, 2, 0.5), WF_EINDEX);
    ck_assert_error(WF_EINDEX, "group 2");
    ck_assert_int_eq(wf_optimizer_set_lr(o, 0, -0.5), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "-0.5");
    ck_assert(isnan(wf_optimizer_get_lr(o, -1)));
    ck_assert_error(WF_EINDEX, "group -1");
    /* c has no grad: no state for it (index 2) */
    wf_optim_state *sd = wf_optimizer_state_dict(o);
    ck_assert_ptr_nonnull(wf_optim_state_find(sd, "state/0/momentum_buffer"));
    ck_assert_ptr_nonnull(wf_optim_state_find(sd, "state/1/momentum_buffer"));
    ck_assert_ptr_null(wf_optim_state_find(sd, "state/2/momentum_buffer"));
    ck_assert_int_eq(wf_optim_state_count(sd), 2);
    ck_assert_msg(strstr(wf_optim_state_json(sd), "\"params\": [1, 2]") != NULL, "%s", wf_optim_state_json(sd));
    wf_optim_state_free(sd);
    wf_optimizer_free(o);
    wf_tensor_free(a);
    wf_tensor_free(b);
    wf_tensor_free(c);
}
END_TEST

START_TEST(test_zero_grad) {
    wf_tensor *p = wf_ones(WF_SHAPE(3), WF_F32);
    wf_set_requires_grad(p, true);
    wf_optimizer *o = wf_sgd_new(&p, 1, NULL);
    wf_tensor *g = wf_ones(WF_SHAPE(3), WF_F32);
    wf_set_grad(p, g);
    ck_assert_int_eq(wf_optimizer_zero_grad(o, false), 0);
    ck_assert_ptr_eq(wf_grad(p), g);   /* same tensor, zeroed in place */
    ck_assert_tensor_near(wf_grad(p), ((double[]){ 0, 0, 0 }), 3, 0);
    ck_assert_int_eq(wf_optimizer_zero_grad(o, true), 0);
    ck_assert_ptr_null(wf_grad(p));
    ck_assert_int_eq(wf_optimizer_zero_grad(o, true), 0);   /* no grad: fine */
    wf_tensor_free(g);
    /* a real backward after zero_grad accumulates afresh */
    WF_SCOPE {
        wf_tensor *loss = wf_sum_all(wf_mul_scalar(p, 3.0));
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
    }
    ck_assert_tensor_near(wf_grad(p), ((double[]){ 3, 3, 3 }), 3, 0);
    ck_assert_int_eq(wf_optimizer_step(o), 0);
    ck_assert_tensor_near(p, ((double[]){ 1 - 3e-3, 1 - 3e-3, 1 - 3e-3 }), 3, 1e-7);
    wf_optimizer_free(o);
    wf_tensor_free(p);
}
END_TEST

/* ---------------------------------------------------------------- state_dict */

static wf_tensor *param_from(const double *v, int n) {
    wf_tensor *p = wf_from_data(v, WF_SHAPE(n), WF_F64);
    wf_set_requires_grad(p, true);
    return p;
}

static void train(wf_optimizer *o, wf_tensor **ps, int np, int t0, int steps) {
    for (int t = t0; t < t0 + steps; t++) {
        for (int i = 0; i < np; i++) set_grad_from(ps[i], t);
        ck_assert_msg(wf_optimizer_step(o) == 0, "%s", wf_error_message());
    }
}

static wf_optimizer *make2(kind k, wf_tensor **ps, double lr_scale) {
    wf_optimizer *o = NULL;
    switch (k) {
    case K_SGD: o = wf_sgd_new(ps, 1, &(wf_sgd_opts){ .lr = 0.1 * lr_scale, .momentum = 0.9, .nesterov = true }); break;
    case K_ADAM: o = wf_adam_new(ps, 1, &(wf_adam_opts){ .lr = 0.01 * lr_scale, .amsgrad = true }); break;
    case K_ADAMW: o = wf_adamw_new(ps, 1, &(wf_adam_opts){ .lr = 0.01 * lr_scale }); break;
    case K_RMS: o = wf_rmsprop_new(ps, 1, &(wf_rmsprop_opts){ .lr = 0.01 * lr_scale, .momentum = 0.9, .centered = true }); break;
    case K_ADAGRAD: o = wf_adagrad_new(ps, 1, &(wf_adagrad_opts){ .lr = 0.1 * lr_scale, .lr_decay = 0.1 }); break;
    }
    ck_assert_ptr_nonnull(o);
    /* a second group with its own lr */
    ck_assert_int_eq(wf_optimizer_add_param_group(o, ps + 1, 1, &(wf_param_group_opts){ .lr = 0.003 * lr_scale }), 0);
    return o;
}

START_TEST(test_state_dict_round_trip) {
    const double a0[] = { 0.5, -1.0, 2.0 }, b0[] = { 1.5, -0.25 };
    for (kind k = K_SGD; k <= K_ADAGRAD; k++) {
        /* 5 uninterrupted steps */
        wf_tensor *ref[2] = { param_from(a0, 3), param_from(b0, 2) };
        wf_optimizer *oref = make2(k, ref, 1);
        train(oref, ref, 2, 1, 5);
        /* 3 steps, save, load into a fresh optimizer (different lrs) on copies, 2 more */
        wf_tensor *x[2] = { param_from(a0, 3), param_from(b0, 2) };
        wf_optimizer *o1 = make2(k, x, 1);
        train(o1, x, 2, 1, 3);
        wf_optim_state *sd = wf_optimizer_state_dict(o1);
        ck_assert_msg(sd != NULL, "%s", wf_error_message());
        double xa[3], xb[2];
        wf_to_array(x[0], xa, WF_F64);
        wf_to_array(x[1], xb, WF_F64);
        wf_tensor *y[2] = { param_from(xa, 3), param_from(xb, 2) };
        wf_optimizer *o2 = make2(k, y, 7.0);
        ck_assert_msg(wf_optimizer_load_state_dict(o2, sd) == 0, "%s", wf_error_message());
        ck_assert_double_eq(wf_optimizer_get_lr(o2, 1), wf_optimizer_get_lr(o1, 1));
        wf_optim_state_free(sd);
        /* the loaded state is a copy: training o1 further does not touch o2 */
        train(o1, x, 2, 4, 2);
        train(o2, y, 2, 4, 2);
        double r[3], v[3];
        for (int i = 0; i < 2; i++) {
            int n = i ? 2 : 3;
            wf_to_array(ref[i], r, WF_F64);
            wf_to_array(y[i], v, WF_F64);
            for (int j = 0; j < n; j++)
                ck_assert_msg(r[j] == v[j], "kind %d param %d elem %d: %.17g vs %.17g", (int)k, i, j, r[j], v[j]);
        }
        wf_optimizer_free(oref); wf_optimizer_free(o1); wf_optimizer_free(o2);
        for (int i = 0; i < 2; i++) { wf_tensor_free(ref[i]); wf_tensor_free(x[i]); wf_tensor_free(y[i]); }
    }
}
END_TEST

START_TEST(test_state_dict_layout) {
    const double a0[] = { 0.5, -1.0, 2.0 }, b0[] = { 1.5, -0.25 };
    wf_tensor *x[2] = { param_from(a0, 3), param_from(b0, 2) };
    wf_optimizer *o = wf_adam_new(x, 2, &(wf_adam_opts){ .amsgrad = true });
    train(o, x, 2, 1, 2);
    wf_optim_state *sd = wf_optimizer_state_dict(o);
    ck_assert_int_eq(wf_optim_state_count(sd), 8);
    const char *names[] = { "state/0/step", "state/0/exp_avg", "state/0/exp_avg_sq", "state/0/max_exp_avg_sq",
                            "state/1/step", "state/1/exp_avg", "state/1/exp_avg_sq", "state/1/max_exp_avg_sq" };
    for (int i = 0; i < 8; i++) ck_assert_str_eq(wf_optim_state_name(sd, i), names[i]);
    wf_tensor *step = wf_optim_state_find(sd, "state/1/step");
    ck_assert_int_eq(wf_ndim(step), 0);
    ck_assert_int_eq(wf_tensor_dtype(step), WF_F32);
    ck_assert_double_eq(wf_item(step), 2);
    ck_assert_shape(wf_optim_state_find(sd, "state/1/exp_avg"), 2);
    ck_assert_str_eq(wf_optim_state_json(sd),
                     "[{\"lr\": 0.001, \"betas\": [0.9, 0.999], \"eps\": 1e-08, \"weight_decay\": 0.0, "
                     "\"amsgrad\": true, \"maximize\": false, \"foreach\": null, \"capturable\": false, "
                     "\"differentiable\": false, \"fused\": null, \"params\": [0, 1]}]");

    /* load errors: the optimizer stays as it was */
    wf_tensor *y[2] = { param_from(a0, 3), param_from(b0, 2) };
    wf_optimizer *o2 = wf_adam_new(y, 1, NULL);
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, sd), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "doesn't match the size");
    wf_optimizer_add_param_group(o2, y + 1, 1, NULL);
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, sd), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "1 parameter groups, the optimizer has 2");
    wf_optimizer_free(o2);

    wf_optim_state *bad = wf_optim_state_new(wf_optim_state_json(sd));
    wf_tensor *wrong = wf_zeros(WF_SHAPE(4), WF_F64);
    wf_optim_state_add(bad, "state/0/exp_avg", wrong);
    wf_tensor_free(wrong);
    o2 = wf_adam_new(y, 2, NULL);
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, bad), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "state/0/exp_avg");
    wf_optim_state_free(bad);

    bad = wf_optim_state_new(wf_optim_state_json(sd));
    wf_tensor *mb = wf_zeros(WF_SHAPE(3), WF_F64);
    wf_optim_state_add(bad, "state/0/momentum_buffer", mb);
    ck_assert_int_eq(wf_optim_state_add(bad, "state/0/momentum_buffer", mb), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "duplicate");
    wf_tensor_free(mb);
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, bad), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "Adam has no state 'momentum_buffer'");
    wf_optim_state_free(bad);

    bad = wf_optim_state_new("[{\"lr\": 0.1, \"params\": [0, 1]");
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, bad), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "malformed JSON");
    wf_optim_state_free(bad);
    bad = wf_optim_state_new("[{\"lr\": -0.1, \"params\": [0, 1]}]");
    ck_assert_int_eq(wf_optimizer_load_state_dict(o2, bad), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "invalid learning rate");
    wf_optim_state_free(bad);
    ck_assert_double_eq(wf_optimizer_get_lr(o2, 0), 1e-3);

    /* a state dict from PyTorch's json-ish text with an f32 state tensor loads into f64 params */
    bad = wf_optim_state_new("[{\"lr\": 0.5, \"betas\": [0.8, 0.99], \"eps\": 1e-08, \"weight_decay\": 0, "
                             "\"amsgrad\": false, \"maximize\": false, \"foreach\": null, \"initial_lr\": 0.5, "
                             "\"params\": [0, 1]}]");
    wf_tensor *st = wf_scalar(4, WF_F32), *ea = wf_ones(WF_SHAPE(3), WF_F32);
    wf_optim_state_add(bad, "state/0/step", st);
    wf_optim_state_add(bad, "state/0/exp_avg", ea);
    wf_tensor_free(st); wf_tensor_free(ea);
    ck_assert_msg(wf_optimizer_load_state_dict(o2, bad) == 0, "%s", wf_error_message());
    ck_assert_double_eq(wf_optimizer_get_lr(o2, 0), 0.5);
    ck_assert_double_eq(wf_optimizer_get_hparam(o2, 0, "beta1"), 0.8);
    ck_assert_double_eq(wf_optimizer_get_hparam(o2, 0, "initial_lr"), 0.5);
    wf_optim_state_free(bad);
    wf_optim_state *sd2 = wf_optimizer_state_dict(o2);
    ck_assert_int_eq(wf_tensor_dtype(wf_optim_state_find(sd2, "state/0/exp_avg")), WF_F64);
    ck_assert_double_eq(wf_item(wf_optim_state_find(sd2, "state/0/step")), 4);
    ck_assert_msg(strstr(wf_optim_state_json(sd2), "\"initial_lr\": 0.5") != NULL, "%s", wf_optim_state_json(sd2));
    wf_optim_state_free(sd2);

    wf_optim_state_free(sd);
    wf_optimizer_free(o);
    wf_optimizer_free(o2);
    for (int i = 0; i < 2; i++) { wf_tensor_free(x[i]); wf_tensor_free(y[i]); }
}
END_TEST

/* ---------------------------------------------------------------- allocation */

START_TEST(test_steady_state_no_alloc) {
    for (kind k = K_SGD; k <= K_ADAGRAD; k++) {
        wf_tensor *p = wf_randn(WF_SHAPE(64, 32), WF_F32);
        wf_set_requires_grad(p, true);
        wf_tensor *g = wf_randn(WF_SHAPE(64, 32), WF_F32);
        wf_set_grad(p, g);
        wf_tensor_free(g);
        wf_optimizer *o = make(k, p, &(cfg){ .lr = 0.01, .momentum = 0.9, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8,
                                             .alpha = 0.99, .amsgrad = true, .centered = true });
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(wf_optimizer_step(o), 0);   /* creates the state */
        wf_memory_stats s0, s1;
        wf_memory_stats_get(&s0);
        for (int i = 0; i < 5; i++) ck_assert_int_eq(wf_optimizer_step(o), 0);
        wf_memory_stats_get(&s1);
        ck_assert_uint_eq(s1.n_system_allocs, s0.n_system_allocs);
        ck_assert_uint_eq(s1.allocated, s0.allocated);
        wf_optimizer_free(o);
        wf_tensor_free(p);
    }
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_bad_inputs) {
    wf_tensor *p = wf_zeros(WF_SHAPE(2), WF_F32);
    wf_set_requires_grad(p, true);
    wf_clear_error();
    ck_assert_ptr_null(wf_sgd_new(&p, 1, &(wf_sgd_opts){ .lr = -0.1 }));
    ck_assert_error(WF_EINVAL, "SGD: invalid learning rate: -0.1");
    ck_assert_ptr_null(wf_sgd_new(&p, 1, &(wf_sgd_opts){ .momentum = -1 }));
    ck_assert_error(WF_EINVAL, "SGD: invalid momentum value: -1");
    ck_assert_ptr_null(wf_sgd_new(&p, 1, &(wf_sgd_opts){ .nesterov = true }));
    ck_assert_error(WF_EINVAL, "SGD: Nesterov momentum requires a momentum and zero dampening");
    ck_assert_ptr_null(wf_sgd_new(&p, 1, &(wf_sgd_opts){ .nesterov = true, .momentum = 0.9, .dampening = 0.1 }));
    ck_assert_error(WF_EINVAL, "dampening 0.1");
    ck_assert_ptr_null(wf_adam_new(&p, 1, &(wf_adam_opts){ .betas = { 1.5, 0.999 } }));
    ck_assert_error(WF_EINVAL, "Adam: invalid beta parameter at index 0: 1.5");
    ck_assert_ptr_null(wf_adamw_new(&p, 1, &(wf_adam_opts){ .betas = { 0.9, 1.0 } }));
    ck_assert_error(WF_EINVAL, "AdamW: invalid beta parameter at index 1: 1");
    ck_assert_ptr_null(wf_adam_new(&p, 1, &(wf_adam_opts){ .eps = -1e-8 }));
    ck_assert_error(WF_EINVAL, "Adam: invalid epsilon value");
    ck_assert_ptr_null(wf_adam_new(&p, 1, &(wf_adam_opts){ .weight_decay = -0.1 }));
    ck_assert_error(WF_EINVAL, "Adam: invalid weight_decay value: -0.1");
    ck_assert_ptr_null(wf_rmsprop_new(&p, 1, &(wf_rmsprop_opts){ .alpha = -0.5 }));
    ck_assert_error(WF_EINVAL, "RMSprop: invalid alpha value: -0.5");
    ck_assert_ptr_null(wf_adagrad_new(&p, 1, &(wf_adagrad_opts){ .lr_decay = -1 }));
    ck_assert_error(WF_EINVAL, "Adagrad: invalid lr_decay value");
    ck_assert_ptr_null(wf_adam_new(&p, 1, &(wf_adam_opts){ .lr = NAN }));
    ck_assert_error(WF_EINVAL, "Adam: invalid learning rate: nan");
    /* NULL / empty / duplicates / non-leaf / integer */
    ck_assert_ptr_null(wf_sgd_new(NULL, 1, NULL));
    ck_assert_error(WF_ENULL, "SGD");
    ck_assert_ptr_null(wf_adam_new((wf_tensor *[]){ p, NULL }, 2, NULL));
    ck_assert_error(WF_ENULL, "Adam: params: parameter 1 is NULL");
    ck_assert_ptr_null(wf_adam_new(&p, 0, NULL));
    ck_assert_error(WF_EINVAL, "empty parameter list");
    ck_assert_ptr_null(wf_adam_new((wf_tensor *[]){ p, p }, 2, NULL));
    ck_assert_error(WF_EINVAL, "appears twice");
    WF_SCOPE {
        wf_tensor *q = wf_mul_scalar(p, 2.0);
        ck_assert_ptr_null(wf_sgd_new(&q, 1, NULL));
        ck_assert_error(WF_EINVAL, "non-leaf");
        wf_tensor *iq = wf_zeros(WF_SHAPE(2), WF_I64);
        ck_assert_ptr_null(wf_sgd_new(&iq, 1, NULL));
        ck_assert_error(WF_EINVAL, "int64");
    }
    ck_assert_int_eq(wf_optimizer_step(NULL), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_optimizer_step");
    ck_assert_int_eq(wf_optimizer_zero_grad(NULL, true), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_optimizer_zero_grad");
    ck_assert_ptr_null(wf_optimizer_state_dict(NULL));
    ck_assert_error(WF_ENULL, "wf_optimizer_state_dict");
    wf_optimizer_free(NULL);
    wf_optim_state_free(NULL);
    /* set_hparam validates too */
    wf_optimizer *o = wf_adam_new(&p, 1, NULL);
    ck_assert_int_eq(wf_optimizer_set_hparam(o, 0, "beta1", 1.0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "index 0");
    ck_assert_double_eq(wf_optimizer_get_hparam(o, 0, "beta1"), 0.9);
    wf_optimizer_free(o);
    wf_tensor_free(p);
}
END_TEST

/* Fabric's setup replaces a module's tensors (cast or moved): the optimizer follows, its state
 * cast along (momentum to f64 with the parameter), other parameters untouched. */
START_TEST(test_replace_params) {
    WF_SCOPE {
        wf_tensor *p = wf_from_data((float[]){ 1, 2, 3 }, WF_SHAPE(3), WF_F32), *q = wf_ones(WF_SHAPE(2), WF_F32);
        wf_set_requires_grad(p, true);
        wf_set_requires_grad(q, true);
        wf_tensor *ps[2] = { p, q };
        wf_optimizer *o = wf_sgd_new(ps, 2, &(wf_sgd_opts){ .lr = 0.1, .momentum = 0.9 });
        ck_assert_ptr_nonnull(o);
        wf_set_grad(p, wf_full(WF_SHAPE(3), 1, WF_F32));
        wf_set_grad(q, wf_full(WF_SHAPE(2), 1, WF_F32));
        ck_assert_int_eq(wf_optimizer_step(o), 0);
        wf_tensor *p64 = wf_to_dtype(p, WF_F64);
        wf_set_requires_grad(p64, true);
        wf_tensor *olds[1] = { p }, *news[1] = { p64 };
        ck_assert_int_eq(wf__optimizer_replace_params(o, olds, news, 1), 0);
        ck_assert_ptr_eq(wf_optimizer_group_param(o, 0, 0), p64);
        ck_assert_ptr_eq(wf_optimizer_group_param(o, 0, 1), q);
        wf_tensor *mb = o->state[0].momentum_buffer;
        ck_assert_ptr_nonnull(mb);
        ck_assert_int_eq(mb->dtype, WF_F64);
        ck_assert_tensor_near(mb, ((double[]){ 1, 1, 1 }), 3, 0);
        ck_assert_int_eq(o->state[1].momentum_buffer->dtype, WF_F32);
        /* the next step updates the new handle from the moved state */
        wf_set_grad(p64, wf_full(WF_SHAPE(3), 1, WF_F64));
        ck_assert_int_eq(wf_optimizer_step(o), 0);
        ck_assert_tensor_near(p64, ((double[]){ 1 - 0.1 - 0.19, 2 - 0.1 - 0.19, 3 - 0.1 - 0.19 }), 3, 1e-6);
        wf_optimizer_free(o);
    }
}
END_TEST

Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sgd_variants);
    tcase_add_test(tc, test_adam_variants);
    tcase_add_test(tc, test_adam_batched_many_params);
    tcase_add_test(tc, test_rmsprop_adagrad_variants);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_param_groups);
    tcase_add_test(tc, test_zero_grad);
    tcase_add_test(tc, test_state_dict_round_trip);
    tcase_add_test(tc, test_state_dict_layout);
    tcase_add_test(tc, test_steady_state_no_alloc);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_replace_params);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(optim_suite()); }
