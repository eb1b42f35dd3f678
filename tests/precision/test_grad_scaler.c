/* tests/precision/test_grad_scaler.c: dynamic loss scaling checked against the algorithm
 * (overflow -> backoff and skipped step, recovery, growth every growth_interval good
 * steps), unscale exactly once, state, the found_inf reducer hook. */
#include "test_util.h"
#include "weft/precision.h"

typedef struct { wf_tensor *p; wf_optimizer *opt; } fx;

static fx make(wf_dtype dt) {
    fx f;
    f.p = wf_zeros(WF_SHAPE(3), dt);
    wf_set_requires_grad(f.p, true);
    f.opt = wf_sgd_new(&f.p, 1, &(wf_sgd_opts){ .lr = 1.0 });
    return f;
}
static void fx_free(fx *f) { wf_optimizer_free(f->opt); wf_tensor_free(f->p); }

/* grad = scale * (1, 2, 3), or with an inf / NaN in the middle */
static void set_grad(fx *f, double scale, int bad) {
    double v[3] = { scale, 2 * scale, 3 * scale };
    if (bad == 1) v[1] = INFINITY;
    if (bad == 2) v[1] = NAN;
    wf_tensor *gd = wf_from_data(v, WF_SHAPE(3), WF_F64);
    wf_tensor *g = wf_to_dtype(gd, wf_tensor_dtype(f->p));
    wf_set_grad(f->p, g);
    wf_tensor_free(g);
    wf_tensor_free(gd);
}

static double p0(fx *f) { double v[3]; wf_to_array(f->p, v, WF_F64); return v[0]; }

START_TEST(test_defaults_and_scale) {
    wf_grad_scaler *s = wf_grad_scaler_new(0, 0, 0, 0, true);
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 65536.0);
    wf_grad_scaler_state st;
    ck_assert_int_eq(wf_grad_scaler_state_get(s, &st), 0);
    ck_assert_double_eq(st.growth_factor, 2.0);
    ck_assert_double_eq(st.backoff_factor, 0.5);
    ck_assert_int_eq(st.growth_interval, 2000);
    ck_assert_int_eq(st.growth_tracker, 0);
    wf_tensor *loss = wf_scalar(0.75, WF_F32);
    wf_tensor *sl = wf_grad_scaler_scale(s, loss);
    ck_assert_double_eq(wf_item(sl), 0.75 * 65536);
    wf_tensor_free(sl);
    wf_tensor_free(loss);
    wf_grad_scaler_free(s);
    /* invalid */
    ck_assert_ptr_null(wf_grad_scaler_new(-1, 0, 0, 0, true));
    ck_assert_error(WF_EINVAL, "init_scale");
    ck_assert_ptr_null(wf_grad_scaler_new(0, 0.5, 0, 0, true));
    ck_assert_error(WF_EINVAL, "growth_factor");
    ck_assert_ptr_null(wf_grad_scaler_new(0, 0, 1.5, 0, true));
    ck_assert_error(WF_EINVAL, "backoff_factor");
    ck_assert_ptr_null(wf_grad_scaler_new(0, 0, 0, -3, true));
    ck_assert_error(WF_EINVAL, "growth_interval");
}
END_TEST

START_TEST(test_overflow_backoff_recovery_growth) {
    fx f = make(WF_F32);
    wf_grad_scaler *s = wf_grad_scaler_new(0, 0, 0, 3, true);
    bool skipped;
    /* overflow: skipped, weights untouched, scale halves */
    set_grad(&f, 65536, 1);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert(skipped);
    ck_assert(wf_grad_scaler_found_inf(s));
    ck_assert_double_eq(p0(&f), 0);
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 32768);
    ck_assert_int_eq(wf_grad_scaler_growth_tracker(s), 0);
    /* NaN also backs off */
    set_grad(&f, 32768, 2);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert(skipped);
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 16384);
    ck_assert_int_eq(wf_grad_scaler_skipped_steps(s), 2);
    /* recovery: good steps apply the unscaled gradient exactly */
    double expect = 0;
    for (int i = 1; i <= 3; i++) {
        double sc = wf_grad_scaler_get_scale(s);
        set_grad(&f, sc, 0);
        ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
        ck_assert(!skipped);
        expect -= 1.0;
        ck_assert_double_eq(p0(&f), expect);
        ck_assert_int_eq(wf_grad_scaler_update(s), 0);
        if (i < 3) {
            ck_assert_int_eq(wf_grad_scaler_growth_tracker(s), i);
            ck_assert_double_eq(wf_grad_scaler_get_scale(s), 16384);
        }
    }
    /* growth after growth_interval = 3 good steps */
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 32768);
    ck_assert_int_eq(wf_grad_scaler_growth_tracker(s), 0);
    ck_assert_int_eq(wf_grad_scaler_skipped_steps(s), 2);
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

/* A long random sequence of overflowing / good steps against the reference algorithm. */
START_TEST(test_random_sequence_vs_reference) {
    fx f = make(WF_F32);
    wf_grad_scaler *s = wf_grad_scaler_new(1024, 2, 0.25, 4, true);
    double ref_scale = 1024, ref_p = 0;
    int64_t ref_tracker = 0, ref_skipped = 0;
    uint32_t rng = 12345;
    for (int it = 0; it < 300; it++) {
        rng = rng * 1664525u + 1013904223u;
        int bad = (rng >> 24) % 5 == 0 ? 1 + (int)((rng >> 8) & 1) : 0;
        set_grad(&f, ref_scale, bad);
        bool skipped;
        if ((rng >> 16) & 1) ck_assert_int_eq(wf_grad_scaler_unscale_(s, f.opt), 0);   /* sometimes unscale first */
        ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
        ck_assert_int_eq(wf_grad_scaler_update(s), 0);
        /* reference */
        if (bad) { ref_scale *= 0.25; ref_tracker = 0; ref_skipped++; }
        else {
            ref_p -= 1.0;
            if (++ref_tracker == 4) { ref_scale *= 2; ref_tracker = 0; }
        }
        ck_assert_int_eq(skipped, bad != 0);
        ck_assert_double_eq(wf_grad_scaler_get_scale(s), ref_scale);
        ck_assert_int_eq(wf_grad_scaler_growth_tracker(s), ref_tracker);
        ck_assert_double_eq(p0(&f), ref_p);
    }
    ck_assert_int_eq(wf_grad_scaler_skipped_steps(s), ref_skipped);
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(test_unscale_once) {
    fx f = make(WF_F32);
    wf_grad_scaler *s = wf_grad_scaler_new(8, 0, 0, 0, true);
    set_grad(&f, 8, 0);
    ck_assert_int_eq(wf_grad_scaler_unscale_(s, f.opt), 0);
    double g[3];
    wf_to_array(wf_grad(f.p), g, WF_F64);
    ck_assert_double_eq(g[0], 1);
    ck_assert_double_eq(g[2], 3);
    /* clip between unscale and step sees true gradients; a second unscale is refused */
    ck_assert_int_eq(wf_grad_scaler_unscale_(s, f.opt), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "already been called");
    bool skipped;
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);   /* does not unscale again */
    ck_assert_double_eq(p0(&f), -1);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "step() has already been called");
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    ck_assert_int_eq(wf_grad_scaler_update(s), WF_ESTATE);          /* nothing recorded */
    ck_assert_error(WF_ESTATE, "no inf checks");
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(test_half_grads_and_growth_cap) {
    /* f16 gradients take the generic path */
    fx f = make(WF_F16);
    wf_grad_scaler *s = wf_grad_scaler_new(4, 0, 0, 1, true);
    bool skipped;
    set_grad(&f, 4, 1);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert(skipped);
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 2);
    set_grad(&f, 2, 0);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert(!skipped);
    ck_assert_double_eq(p0(&f), -1);
    wf_grad_scaler_free(s);
    fx_free(&f);
    /* a growth that would overflow float32 is not applied */
    f = make(WF_F32);
    s = wf_grad_scaler_new(ldexp(1.0, 127), 0, 0, 1, true);
    set_grad(&f, 0, 0);
    wf_grad_scaler_step(s, f.opt, NULL);
    wf_grad_scaler_update(s);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), ldexp(1.0, 127));
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(test_disabled) {
    fx f = make(WF_F32);
    wf_grad_scaler *s = wf_grad_scaler_new(0, 0, 0, 0, false);
    ck_assert(!wf_grad_scaler_is_enabled(s));
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 1.0);
    wf_tensor *l = wf_scalar(2, WF_F32), *sl = wf_grad_scaler_scale(s, l);
    ck_assert_double_eq(wf_item(sl), 2);
    set_grad(&f, 1, 0);
    bool skipped = true;
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert(!skipped);
    ck_assert_double_eq(p0(&f), -1);
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    wf_tensor_free(sl); wf_tensor_free(l);
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

START_TEST(test_state) {
    wf_grad_scaler *s = wf_grad_scaler_new(0, 0, 0, 0, true);
    wf_grad_scaler_state st = { 512, 4, 0.125, 10, 7 };
    ck_assert_int_eq(wf_grad_scaler_state_set(s, &st), 0);
    wf_grad_scaler_state got;
    wf_grad_scaler_state_get(s, &got);
    ck_assert_double_eq(got.scale, 512);
    ck_assert_double_eq(got.growth_factor, 4);
    ck_assert_double_eq(got.backoff_factor, 0.125);
    ck_assert_int_eq(got.growth_interval, 10);
    ck_assert_int_eq(got.growth_tracker, 7);
    st.growth_tracker = 10;
    ck_assert_int_eq(wf_grad_scaler_state_set(s, &st), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "growth_tracker");
    st.growth_tracker = 0;
    st.scale = NAN;
    ck_assert_int_eq(wf_grad_scaler_state_set(s, &st), WF_EINVAL);
    wf_clear_error();
    ck_assert_int_eq(wf_grad_scaler_set_scale(s, 3.0), 0);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 3.0);
    wf_grad_scaler_free(s);
}
END_TEST

typedef struct { int calls; double seen; double force; int fail; } red_ud;
static int reducer(double *found_inf, void *ud) {
    red_ud *r = ud;
    r->calls++;
    r->seen = *found_inf;
    if (r->fail) return wf_set_error(WF_EDIST, "peer gone");
    if (r->force > *found_inf) *found_inf = r->force;   /* as an all-reduce MAX with a peer */
    return 0;
}

START_TEST(test_found_inf_reducer) {
    fx f = make(WF_F32);
    wf_grad_scaler *s = wf_grad_scaler_new(2, 0, 0, 0, true);
    red_ud r = { 0, -1, 1, 0 };
    ck_assert_int_eq(wf_grad_scaler_set_found_inf_reducer(s, reducer, &r), 0);
    set_grad(&f, 2, 0);
    bool skipped;
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_double_eq(r.seen, 0);          /* local: finite */
    ck_assert(skipped);                      /* a peer overflowed: every rank skips */
    ck_assert_double_eq(p0(&f), 0);
    ck_assert_int_eq(wf_grad_scaler_update(s), 0);
    ck_assert_double_eq(wf_grad_scaler_get_scale(s), 1);
    r.fail = 1;
    set_grad(&f, 1, 0);
    ck_assert_int_eq(wf_grad_scaler_step(s, f.opt, &skipped), WF_EDIST);
    ck_assert_error(WF_EDIST, "peer gone");
    wf_grad_scaler_set_found_inf_reducer(s, NULL, NULL);
    wf_grad_scaler_free(s);
    fx_free(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_scaler");
    TCase *tc = tcase_create("grad_scaler");
    tcase_add_test(tc, test_defaults_and_scale);
    tcase_add_test(tc, test_overflow_backoff_recovery_growth);
    tcase_add_test(tc, test_random_sequence_vs_reference);
    tcase_add_test(tc, test_unscale_once);
    tcase_add_test(tc, test_half_grads_and_growth_cap);
    tcase_add_test(tc, test_disabled);
    tcase_add_test(tc, test_state);
    tcase_add_test(tc, test_found_inf_reducer);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
