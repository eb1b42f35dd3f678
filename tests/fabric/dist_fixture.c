/* tests/fabric/dist_fixture.c: see dist_fixture.h. */
#include "dist_fixture.h"
#include "fabric/fabric_impl.h"   /* a parameter's storage: gathered or not */
#include "fabric/shard_spec.h"

wf_process_group *pg;
int rank, world;

int tf_dist_main(const char *name, void (*add)(TCase *tc)) {
    setenv("CK_FORK", "no", 1);
    if (!getenv("WF_DIST_TIMEOUT")) setenv("WF_DIST_TIMEOUT", "30", 1);
    pg = wf_dist_init(NULL);
    if (!pg) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        return EXIT_FAILURE;
    }
    rank = wf_process_group_rank(pg);
    world = wf_process_group_size(pg);
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    add(tc);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group_free(pg);
    return rc;
}

wf_module *tf_mlp(unsigned seed) {
    wf_manual_seed(seed);
    return wf_sequential_new(5, wf_linear_new(4, 5, true), wf_relu_new(), wf_linear_new(5, 3, true), wf_relu_new(),
                             wf_linear_new(3, 1, true));
}

static wf_tensor *xb(int r, int k) {
    double v[12];
    tt_fill(v, 12, 500 + 10 * (unsigned)r + (unsigned)k);
    return wf_to_dtype(wf_from_data(v, WF_SHAPE(3, 4), WF_F64), WF_F32);
}
static wf_tensor *tb(int r, int k) {
    double v[3];
    tt_fill(v, 3, 900 + 10 * (unsigned)r + (unsigned)k);
    return wf_to_dtype(wf_from_data(v, WF_SHAPE(3, 1), WF_F64), WF_F32);
}
wf_tensor *tf_loss_of(wf_module *m, int r, int k) {
    return wf_mean_all(wf_square(wf_sub(wf_module_forward(m, xb(r, k)), tb(r, k))));
}

wf_tensor *tf_loss_on(wf_fabric *f, wf_module *m, int r, int k) {
    wf_tensor *y = wf_module_forward(m, wf_fabric_to_device(f, xb(r, k)));
    return wf_mean_all(wf_square(wf_sub(y, wf_fabric_to_device(f, tb(r, k)))));
}

void tf_flatten(wf_module *m, double *out) {
    wf_tensor *p[NP];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, NP), NP);
    int off = 0;
    for (int i = 0; i < NP; i++) {
        ck_assert_ptr_nonnull(p[i]->storage->data);
        ck_assert_int_eq(wf_to_array(p[i], out + off, WF_F64), 0);
        off += (int)wf_numel(p[i]);
    }
    ck_assert_int_eq(off, NV);
}

void tf_reference(unsigned seed, int steps, wf_optimizer *(*make)(wf_tensor *const *p), double clip, double *out) {
    wf_module *m = tf_mlp(seed);
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    wf_optimizer *o = make(p);
    for (int k = 0; k < steps; k++) WF_SCOPE {
        wf_tensor *loss = NULL;
        for (int r = 0; r < world; r++) {
            wf_tensor *l = tf_loss_of(m, r, k);
            loss = loss ? wf_add(loss, l) : l;
        }
        ck_assert_int_eq(wf_backward(wf_mul_scalar(loss, 1.0 / world), NULL, false), 0);
        ck_assert_int_eq(wf_clip_grad_norm_(p, NP, clip, 2.0, true, NULL), 0);
        ck_assert_int_eq(wf_optimizer_step(o), 0);
        wf_optimizer_zero_grad(o, true);
    }
    tf_flatten(m, out);
    wf_optimizer_free(o);
    wf_module_free(m);
}

void tf_train(wf_fabric *f, wf_module *m, wf_optimizer *o, int k0, int k1, double clip) {
    for (int k = k0; k < k1; k++) WF_SCOPE {
        ck_assert_msg(wf_fabric_backward(f, tf_loss_of(m, rank, k), m) == 0, "%s", wf_error_message());
        double norm = 0;
        ck_assert_msg(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = clip }, &norm) == 0, "%s",
                      wf_error_message());
        ck_assert(norm > 0);
        ck_assert_msg(wf_fabric_step(f, o, NULL) == 0, "%s", wf_error_message());
        wf_optimizer_zero_grad(o, true);
    }
}

void tf_assert_near(const double *got, const double *want, const char *what) {
    for (int i = 0; i < NV; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])), "%s: element %d: %.9g vs %.9g", what, i,
                      got[i], want[i]);
}

void tf_check_state_rows(wf_optimizer *o, wf_module *m, const char *key) {
    wf_optim_state *st = wf_optimizer_state_dict(o);
    ck_assert_ptr_nonnull(st);
    wf_tensor *p[NP];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, NP), NP);
    for (int i = 0; i < NP; i++) {
        char name[64];
        snprintf(name, sizeof name, "state/%d/%s", i, key);
        wf_tensor *v = wf_optim_state_find(st, name);
        ck_assert_msg(v, "%s missing", name);
        int64_t s0, c;
        wf__shard_rows(wf_shape(p[i])[0], rank, world, &s0, &c);
        ck_assert_int_eq(wf_shape(v)[0], c);
        ck_assert_int_eq(wf_numel(v), c * (wf_numel(p[i]) / wf_shape(p[i])[0]));
    }
    wf_optim_state_free(st);
}
