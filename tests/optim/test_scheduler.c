/* tests/optim/test_scheduler.c: LR scheduler curves against their closed forms (written here),
 * SequentialLR warmup + cosine, OneCycleLR against PyTorch's formula and hand-computed values,
 * state dict round trips and argument errors. */
#include "test_util.h"
#include "weft/optim.h"

#define STEPS 20
static const double LR0 = 0.1, LR1 = 0.05;

typedef struct fx { wf_tensor *a, *b; wf_optimizer *opt; } fx;

static fx make_sgd(double lr0, double lr1) {
    fx f;
    f.a = wf_zeros(WF_SHAPE(2), WF_F64);
    f.b = wf_zeros(WF_SHAPE(3), WF_F64);
    f.opt = wf_sgd_new(&f.a, 1, &(wf_sgd_opts){ .lr = lr0, .momentum = 0.9 });
    ck_assert_ptr_nonnull(f.opt);
    ck_assert_int_eq(wf_optimizer_add_param_group(f.opt, &f.b, 1, &(wf_param_group_opts){ .lr = lr1 }), 0);
    return f;
}
static void fx_free(fx *f) { wf_optimizer_free(f->opt); wf_tensor_free(f->a); wf_tensor_free(f->b); }

typedef double (*curve_fn)(int e, double base, const void *ud);

/* After construction (epoch 0) and after each of STEPS steps, both groups follow the curve. */
static void check_curve(const char *label, fx *f, wf_lr_scheduler *s, curve_fn fn, const void *ud) {
    ck_assert_msg(s != NULL, "%s: %s", label, wf_error_message());
    for (int e = 0; e <= STEPS; e++) {
        if (e > 0) ck_assert_int_eq(wf_lr_scheduler_step(s), 0);
        ck_assert_int_eq(wf_lr_scheduler_last_epoch(s), e);
        double bases[2] = { LR0, LR1 };
        for (int g = 0; g < 2; g++) {
            double want = fn(e, bases[g], ud), got = wf_optimizer_get_lr(f->opt, g);
            ck_assert_msg(fabs(got - want) <= 1e-12 * (1 + fabs(want)), "%s epoch %d group %d: lr %.15g expected %.15g",
                          label, e, g, got, want);
            ck_assert_double_eq(wf_lr_scheduler_get_last_lr(s, g), got);
        }
    }
}

static double c_step(int e, double base, const void *ud) { (void)ud; return base * pow(0.5, e / 3); }
static double c_multi(int e, double base, const void *ud) {
    (void)ud;
    int c = (e >= 2) + (e >= 5) + (e >= 9);
    return base * pow(0.1, c);
}
static double c_exp(int e, double base, const void *ud) { (void)ud; return base * pow(0.9, e); }
static double c_linear(int e, double base, const void *ud) {
    (void)ud;
    double f = 1.0 / 3 + (1 - 1.0 / 3) * (e < 5 ? e : 5) / 5.0;
    return base * f;
}
static double c_linear2(int e, double base, const void *ud) {
    (void)ud;
    double f = 0.5 + (0.25 - 0.5) * (e < 8 ? e : 8) / 8.0;
    return base * f;
}
static double c_cos(int e, double base, const void *ud) {
    (void)ud;
    double eta = 0.001;
    return eta + (base - eta) * (1 + cos(M_PI * e / 10)) / 2;   /* T_max 10: goes back up after 10 */
}
static double lam(int e, void *ud) { (void)ud; return 1.0 / (1.0 + 0.5 * e); }
static double c_lambda(int e, double base, const void *ud) { (void)ud; return base / (1.0 + 0.5 * e); }

START_TEST(test_curves) {
    fx f = make_sgd(LR0, LR1);
    wf_lr_scheduler *s = wf_step_lr_new(f.opt, 3, 0.5);
    check_curve("StepLR", &f, s, c_step, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_multistep_lr_new(f.opt, (int[]){ 2, 5, 9 }, 3, 0);   /* gamma default 0.1 */
    check_curve("MultiStepLR", &f, s, c_multi, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_exponential_lr_new(f.opt, 0.9);
    check_curve("ExponentialLR", &f, s, c_exp, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_linear_lr_new(f.opt, NULL);   /* 1/3 -> 1 over 5 */
    check_curve("LinearLR", &f, s, c_linear, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_linear_lr_new(f.opt, &(wf_linear_lr_opts){ .start_factor = 0.5, .end_factor = 0.25, .total_iters = 8 });
    check_curve("LinearLR decreasing", &f, s, c_linear2, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_cosine_annealing_lr_new(f.opt, 10, 0.001);
    check_curve("CosineAnnealingLR", &f, s, c_cos, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);

    f = make_sgd(LR0, LR1);
    s = wf_lambda_lr_new(f.opt, lam, NULL);
    check_curve("LambdaLR", &f, s, c_lambda, NULL);
    wf_lr_scheduler_free(s);
    fx_free(&f);
}
END_TEST

/* warmup 0.1 -> 1 over 5 steps, then cosine over 15 restarting at base (SequentialLR's step(0)) */
static double c_seq(int e, double base, const void *ud) {
    (void)ud;
    if (e < 5) return base * (0.1 + 0.9 * e / 5.0);
    return base * (1 + cos(M_PI * (e - 5) / 15)) / 2;
}

START_TEST(test_sequential_warmup_cosine) {
    fx f = make_sgd(LR0, LR1);
    wf_lr_scheduler *warm = wf_linear_lr_new(f.opt, &(wf_linear_lr_opts){ .start_factor = 0.1, .total_iters = 5 });
    wf_lr_scheduler *cosine = wf_cosine_annealing_lr_new(f.opt, 15, 0);
    ck_assert_ptr_nonnull(warm);
    ck_assert_ptr_nonnull(cosine);
    /* initial_lr is recorded once, by the first scheduler */
    ck_assert_double_eq(wf_optimizer_get_hparam(f.opt, 0, "initial_lr"), LR0);
    ck_assert_double_eq(wf_optimizer_get_hparam(f.opt, 1, "initial_lr"), LR1);
    wf_lr_scheduler *seq = wf_sequential_lr_new(f.opt, (wf_lr_scheduler *[]){ warm, cosine }, 2, (int[]){ 5 });
    check_curve("SequentialLR", &f, seq, c_seq, NULL);
    wf_lr_scheduler_free(seq);   /* frees warm and cosine */
    fx_free(&f);

    /* errors: milestones, a scheduler of another optimizer (the caller keeps ownership) */
    f = make_sgd(LR0, LR1);
    fx g = make_sgd(LR0, LR1);
    warm = wf_linear_lr_new(f.opt, NULL);
    wf_lr_scheduler *other = wf_exponential_lr_new(g.opt, 0.5);
    ck_assert_ptr_null(wf_sequential_lr_new(f.opt, (wf_lr_scheduler *[]){ warm, other }, 2, (int[]){ 3 }));
    ck_assert_error(WF_EINVAL, "same optimizer");
    wf_lr_scheduler *c2 = wf_cosine_annealing_lr_new(f.opt, 4, 0), *c3 = wf_step_lr_new(f.opt, 2, 0);
    ck_assert_ptr_null(wf_sequential_lr_new(f.opt, (wf_lr_scheduler *[]){ warm, c2, c3 }, 3, (int[]){ 5, 5 }));
    ck_assert_error(WF_EINVAL, "milestones must be increasing");
    wf_lr_scheduler_free(warm);
    wf_lr_scheduler_free(other);
    wf_lr_scheduler_free(c2);
    wf_lr_scheduler_free(c3);
    fx_free(&f);
    fx_free(&g);
}
END_TEST

/* PyTorch's OneCycleLR, written out */
typedef struct oc { double max_lr; int total; double pct; bool linear, three; double div, fdiv, bm, mm; } oc;
static double anneal(bool linear, double a, double b, double pct) {
    return linear ? (b - a) * pct + a : b + (a - b) / 2.0 * (cos(M_PI * pct) + 1);
}
static void oc_ref(const oc *c, int e, double *lr, double *mom) {
    double init = c->max_lr / c->div, minlr = init / c->fdiv;
    double ends[3], sl[3], el[3], sm[3], em[3];
    int np;
    if (c->three) {
        np = 3;
        ends[0] = c->pct * c->total - 1; sl[0] = init; el[0] = c->max_lr; sm[0] = c->mm; em[0] = c->bm;
        ends[1] = 2 * c->pct * c->total - 2; sl[1] = c->max_lr; el[1] = init; sm[1] = c->bm; em[1] = c->mm;
        ends[2] = c->total - 1; sl[2] = init; el[2] = minlr; sm[2] = c->mm; em[2] = c->mm;
    } else {
        np = 2;
        ends[0] = c->pct * c->total - 1; sl[0] = init; el[0] = c->max_lr; sm[0] = c->mm; em[0] = c->bm;
        ends[1] = c->total - 1; sl[1] = c->max_lr; el[1] = minlr; sm[1] = c->bm; em[1] = c->mm;
    }
    double start = 0;
    for (int i = 0; i < np; i++) {
        if (e <= ends[i] || i == np - 1) {
            double pct = (e - start) / (ends[i] - start);
            *lr = anneal(c->linear, sl[i], el[i], pct);
            *mom = anneal(c->linear, sm[i], em[i], pct);
            return;
        }
        start = ends[i];
    }
}

static void check_one_cycle(const oc *c, bool adam) {
    wf_tensor *p = wf_zeros(WF_SHAPE(2), WF_F32);
    wf_optimizer *opt = adam ? wf_adam_new(&p, 1, NULL) : wf_sgd_new(&p, 1, &(wf_sgd_opts){ .momentum = 0.5 });
    wf_lr_scheduler *s = wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){
        .max_lr = c->max_lr, .total_steps = c->total, .pct_start = c->pct,
        .anneal_strategy = c->linear ? WF_ANNEAL_LINEAR : WF_ANNEAL_COS, .three_phase = c->three });
    ck_assert_msg(s != NULL, "%s", wf_error_message());
    for (int e = 0; e <= c->total; e++) {
        if (e > 0) ck_assert_int_eq(wf_lr_scheduler_step(s), 0);
        double lr, mom;
        oc_ref(c, e, &lr, &mom);
        ck_assert_msg(fabs(wf_optimizer_get_lr(opt, 0) - lr) <= 1e-12 * (1 + lr), "epoch %d lr %.15g expected %.15g",
                      e, wf_optimizer_get_lr(opt, 0), lr);
        double m = wf_optimizer_get_hparam(opt, 0, adam ? "beta1" : "momentum");
        ck_assert_msg(fabs(m - mom) <= 1e-12, "epoch %d momentum %.15g expected %.15g", e, m, mom);
    }
    /* one step beyond total_steps is an error and changes nothing */
    ck_assert_int_eq(wf_lr_scheduler_step(s), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "total steps");
    ck_assert_int_eq(wf_lr_scheduler_last_epoch(s), c->total);
    wf_lr_scheduler_free(s);
    wf_optimizer_free(opt);
    wf_tensor_free(p);
}

START_TEST(test_one_cycle) {
    /* hand-computed points for max_lr 0.1, 10 steps, defaults (SGD): phase 0 ends at step 2 */
    wf_tensor *p = wf_zeros(WF_SHAPE(2), WF_F32);
    wf_optimizer *opt = wf_sgd_new(&p, 1, &(wf_sgd_opts){ .lr = 0.5, .momentum = 0.9 });
    wf_lr_scheduler *s = wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){ .max_lr = 0.1, .total_steps = 10 });
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq_tol(wf_optimizer_get_lr(opt, 0), 0.004, 1e-15);          /* max_lr / 25 */
    ck_assert_double_eq_tol(wf_optimizer_get_hparam(opt, 0, "momentum"), 0.95, 1e-15);
    ck_assert_double_eq_tol(wf_optimizer_get_hparam(opt, 0, "min_lr"), 4e-7, 1e-20);
    wf_lr_scheduler_step(s);
    ck_assert_double_eq_tol(wf_optimizer_get_lr(opt, 0), 0.052, 1e-15);          /* halfway up */
    ck_assert_double_eq_tol(wf_optimizer_get_hparam(opt, 0, "momentum"), 0.9, 1e-15);
    wf_lr_scheduler_step(s);
    ck_assert_double_eq_tol(wf_optimizer_get_lr(opt, 0), 0.1, 1e-15);
    ck_assert_double_eq_tol(wf_optimizer_get_hparam(opt, 0, "momentum"), 0.85, 1e-15);
    for (int i = 0; i < 7; i++) wf_lr_scheduler_step(s);
    ck_assert_double_eq_tol(wf_optimizer_get_lr(opt, 0), 4e-7, 1e-18);           /* the end: min_lr */
    ck_assert_double_eq_tol(wf_optimizer_get_hparam(opt, 0, "momentum"), 0.95, 1e-15);
    /* the group keys PyTorch adds are in the optimizer's state dict */
    wf_optim_state *sd = wf_optimizer_state_dict(opt);
    const char *js = wf_optim_state_json(sd);
    ck_assert_msg(strstr(js, "\"initial_lr\": 0.004") && strstr(js, "\"max_lr\": 0.1") &&
                  strstr(js, "\"base_momentum\": 0.85") && strstr(js, "\"max_momentum\": 0.95"), "%s", js);
    wf_optim_state_free(sd);
    wf_lr_scheduler_free(s);
    wf_optimizer_free(opt);

    /* Adagrad has neither momentum nor betas */
    opt = wf_adagrad_new(&p, 1, NULL);
    ck_assert_ptr_null(wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){ .max_lr = 0.1, .total_steps = 10 }));
    ck_assert_error(WF_EINVAL, "momentum or beta1");
    s = wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){ .max_lr = 0.1, .total_steps = 10, .no_cycle_momentum = true });
    ck_assert_ptr_nonnull(s);
    wf_lr_scheduler_free(s);
    ck_assert_ptr_null(wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){ .max_lr = 0.1 }));
    ck_assert_error(WF_EINVAL, "epochs");
    ck_assert_ptr_null(wf_one_cycle_lr_new(opt, &(wf_one_cycle_opts){ .max_lr = 0.1, .total_steps = 5, .pct_start = 1.5 }));
    ck_assert_error(WF_EINVAL, "pct_start");
    wf_optimizer_free(opt);
    wf_tensor_free(p);

    check_one_cycle(&(oc){ .max_lr = 0.01, .total = 20, .pct = 0.3, .div = 25, .fdiv = 1e4, .bm = 0.85, .mm = 0.95 }, true);
    check_one_cycle(&(oc){ .max_lr = 1.0, .total = 20, .pct = 0.25, .three = true, .div = 25, .fdiv = 1e4, .bm = 0.85, .mm = 0.95 }, false);
    check_one_cycle(&(oc){ .max_lr = 0.5, .total = 17, .pct = 0.3, .linear = true, .div = 25, .fdiv = 1e4, .bm = 0.85, .mm = 0.95 }, true);
}
END_TEST

/* ---------------------------------------------------------------- state dict */

typedef wf_lr_scheduler *(*mk_sched)(wf_optimizer *opt);
static wf_lr_scheduler *mk_step(wf_optimizer *o) { return wf_step_lr_new(o, 3, 0.5); }
static wf_lr_scheduler *mk_linear(wf_optimizer *o) { return wf_linear_lr_new(o, &(wf_linear_lr_opts){ .total_iters = 10 }); }
static wf_lr_scheduler *mk_seq(wf_optimizer *o) {
    wf_lr_scheduler *w = wf_linear_lr_new(o, &(wf_linear_lr_opts){ .start_factor = 0.1, .total_iters = 5 });
    wf_lr_scheduler *c = wf_cosine_annealing_lr_new(o, 15, 0.001);
    return wf_sequential_lr_new(o, (wf_lr_scheduler *[]){ w, c }, 2, (int[]){ 5 });
}
static wf_lr_scheduler *mk_oc(wf_optimizer *o) {
    return wf_one_cycle_lr_new(o, &(wf_one_cycle_opts){ .max_lr = 0.3, .total_steps = 20 });
}

START_TEST(test_state_dict) {
    mk_sched mks[] = { mk_step, mk_linear, mk_seq, mk_oc };
    for (int k = 0; k < 4; k++) {
        /* uninterrupted */
        fx r = make_sgd(LR0, LR1);
        wf_lr_scheduler *sr = mks[k](r.opt);
        for (int i = 0; i < 12; i++) wf_lr_scheduler_step(sr);
        /* 7 steps, save both state dicts, restore into fresh objects, 5 more */
        fx a = make_sgd(LR0, LR1);
        wf_lr_scheduler *sa = mks[k](a.opt);
        for (int i = 0; i < 7; i++) wf_lr_scheduler_step(sa);
        int len = wf_lr_scheduler_state_dict(sa, NULL, 0);
        ck_assert_int_gt(len, 0);
        char *js = malloc((size_t)len + 1);
        ck_assert_int_eq(wf_lr_scheduler_state_dict(sa, js, (size_t)len + 1), len);
        ck_assert_msg(strstr(js, "\"last_epoch\": 7") && strstr(js, "\"_step_count\": 8"), "%s", js);
        wf_optim_state *osd = wf_optimizer_state_dict(a.opt);
        fx b = make_sgd(0.7, 0.9);
        wf_lr_scheduler *sb = mks[k](b.opt);
        ck_assert_int_eq(wf_optimizer_load_state_dict(b.opt, osd), 0);
        ck_assert_msg(wf_lr_scheduler_load_state_dict(sb, js) == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_lr_scheduler_last_epoch(sb), 7);
        for (int i = 0; i < 5; i++) wf_lr_scheduler_step(sb);
        for (int g = 0; g < 2; g++) {
            ck_assert_double_eq(wf_optimizer_get_lr(b.opt, g), wf_optimizer_get_lr(r.opt, g));
            ck_assert_double_eq(wf_lr_scheduler_get_last_lr(sb, g), wf_lr_scheduler_get_last_lr(sr, g));
            ck_assert_double_eq(wf_optimizer_get_hparam(b.opt, g, "momentum"), wf_optimizer_get_hparam(r.opt, g, "momentum"));
        }
        /* truncated buffer: snprintf semantics */
        char small[8];
        ck_assert_int_eq(wf_lr_scheduler_state_dict(sa, small, sizeof small), len);
        ck_assert_int_eq((int)strlen(small), 7);
        /* a mismatched or broken state is refused, the scheduler unchanged */
        if (k == 0) {
            ck_assert_int_eq(wf_lr_scheduler_load_state_dict(sb, "{\"type\": \"LinearLR\", \"last_epoch\": 1}"), WF_EINVAL);
            ck_assert_error(WF_EINVAL, "state is for LinearLR, the scheduler is StepLR");
            ck_assert_int_eq(wf_lr_scheduler_load_state_dict(sb, "{\"last_epoch\": 1, \"_step_count\": 2, \"_last_lr\": [0.1]}"), WF_EINVAL);
            ck_assert_error(WF_EINVAL, "one per group");
            ck_assert_int_eq(wf_lr_scheduler_load_state_dict(sb, "{\"last_epoch\": "), WF_ECORRUPT);
            ck_assert_error(WF_ECORRUPT, "malformed JSON");
            ck_assert_int_eq(wf_lr_scheduler_last_epoch(sb), 12);
        }
        free(js);
        wf_optim_state_free(osd);
        wf_lr_scheduler_free(sr); wf_lr_scheduler_free(sa); wf_lr_scheduler_free(sb);
        fx_free(&r); fx_free(&a); fx_free(&b);
    }
}
END_TEST

START_TEST(test_errors) {
    fx f = make_sgd(LR0, LR1);
    ck_assert_ptr_null(wf_step_lr_new(f.opt, 0, 0.1));
    ck_assert_error(WF_EINVAL, "StepLR: step_size");
    ck_assert_ptr_null(wf_step_lr_new(NULL, 3, 0.1));
    ck_assert_error(WF_ENULL, "StepLR");
    ck_assert_ptr_null(wf_linear_lr_new(f.opt, &(wf_linear_lr_opts){ .start_factor = 2 }));
    ck_assert_error(WF_EINVAL, "LinearLR: starting multiplicative factor");
    ck_assert_ptr_null(wf_cosine_annealing_lr_new(f.opt, 0, 0));
    ck_assert_error(WF_EINVAL, "T_max");
    ck_assert_ptr_null(wf_exponential_lr_new(f.opt, 0));
    ck_assert_error(WF_EINVAL, "gamma");
    ck_assert_ptr_null(wf_lambda_lr_new(f.opt, NULL, NULL));
    ck_assert_error(WF_ENULL, "LambdaLR");
    ck_assert_ptr_null(wf_multistep_lr_new(f.opt, (int[]){ 5, 2 }, 2, 0.1));
    ck_assert_error(WF_EINVAL, "increasing");
    ck_assert_int_eq(wf_lr_scheduler_step(NULL), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_lr_scheduler_step");
    wf_lr_scheduler *s = wf_step_lr_new(f.opt, 2, 0.1);
    ck_assert(isnan(wf_lr_scheduler_get_last_lr(s, 5)));
    ck_assert_error(WF_EINDEX, "group 5");
    /* the optimizer grew a group: refused */
    wf_tensor *c = wf_zeros(WF_SHAPE(1), WF_F64);
    wf_optimizer_add_param_group(f.opt, &c, 1, NULL);
    ck_assert_int_eq(wf_lr_scheduler_step(s), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "3 parameter groups");
    wf_lr_scheduler_free(s);
    wf_lr_scheduler_free(NULL);
    wf_tensor_free(c);
    fx_free(&f);
}
END_TEST

Suite *sched_suite(void) {
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_curves);
    tcase_add_test(tc, test_sequential_warmup_cosine);
    tcase_add_test(tc, test_one_cycle);
    tcase_add_test(tc, test_state_dict);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(sched_suite()); }
