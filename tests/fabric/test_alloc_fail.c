/* tests/fabric/test_alloc_fail.c: allocation failures through one training step.
 *
 * A test allocator (wf_set_allocator) fails the Nth allocation. One CPU training step
 * (zero_grad, forward, MSE loss, backward, Adam step, checkpoint save) runs with the fault at
 * N = 1, 2, ... through the number of allocations the step makes (counted first with no
 * fault). For every N:
 *  - the step reports WF_ENOMEM (never a crash), or it did without the block and is exactly
 *    an uninterrupted step (wf_scope_begin's reserve scope);
 *  - the parameters are either untouched or fully updated, and the next step (allocations
 *    working again) gives exactly the parameters of an uninterrupted run of one step (resp.
 *    two steps), so the optimizer's state was not half-updated either;
 *  - once everything is freed and the caches emptied, no block is left with the allocator
 *    (a leak is named with its N here; ASan's leak check covers the rest).
 * Each N runs twice: the fault at N alone, and at N and every allocation after it (memory
 * stays short, so the error paths get none either).
 * Two paths: the plain calls (wf_backward, wf_optimizer_step, a safetensors writer) and the
 * Fabric's (setup, wf_fabric_backward, wf_fabric_step, wf_fabric_save); two models: Linear +
 * ReLU + Linear, and a small Conv2d; and once SGD with momentum instead of Adam (its buffer
 * is created at the first step). A last test puts the fault in building the model, the
 * optimizer and the Fabric. The allocation caches are emptied before each faulty run (and
 * between the phases of a step) so that every run makes the same allocations.
 * Debugging: WF_TEST_ALLOC_N=n runs that N alone, WF_TEST_ALLOC_TRACE=1 prints the stack of
 * the refused allocation, CK_RUN_CASE=conv_fabric runs one case. */
#include "test_util.h"
#include "weft/fabric.h"

#include <execinfo.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the failing allocator */

static atomic_long g_count;     /* allocations asked for so far */
static atomic_long g_fail_at;   /* the one that fails (0: none) */
static atomic_bool g_sticky;    /* and every one after it too */
static atomic_long g_failed;    /* allocations refused */
static atomic_long g_live;      /* blocks handed out and not yet freed */

static void *fa_alloc(void *ud, size_t size) {
    (void)ud;
    long k = atomic_fetch_add(&g_count, 1) + 1;
    long at = atomic_load(&g_fail_at);
    if (at && (k == at || (k > at && atomic_load(&g_sticky)))) {
        if (k == at) atomic_fetch_add(&g_failed, 1);
        if (k == at && getenv("WF_TEST_ALLOC_TRACE")) {   /* debugging: where the refused block was asked for */
            void *frames[32];
            backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
        }
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64)) return NULL;
    atomic_fetch_add(&g_live, 1);
    return p;
}
static void fa_free(void *ud, void *p, size_t size) {
    (void)ud; (void)size;
    if (!p) return;
    atomic_fetch_sub(&g_live, 1);
    free(p);
}

/* Arm the fault at the nth allocation from now (0: none), caches emptied first; sticky: that
 * one and all after it fail (memory stays short, so the error paths get none either). */
static void arm(long n, bool sticky) {
    wf_empty_cache();
    atomic_store(&g_failed, 0);
    atomic_store(&g_sticky, sticky);
    atomic_store(&g_fail_at, n ? atomic_load(&g_count) + n : 0);
}
static void disarm(void) { atomic_store(&g_fail_at, 0); }

/* ---------------------------------------------------------------- the model and its step */

enum { MODEL_MLP, MODEL_CONV };
enum { PATH_PLAIN, PATH_FABRIC };
enum { OPT_ADAM, OPT_SGD };   /* SGD with momentum: its buffer appears at the first step */

typedef struct rig {
    int model, path, optim;
    wf_module *m;
    wf_optimizer *opt;
    wf_fabric *fab;
    wf_fabric_state *st;
    wf_tensor *x, *y;
    int64_t step_count;   /* an int entry of the Fabric's checkpoint */
    char ckpt[256];
} rig;

static wf_module *model_new(int model) {
    if (model == MODEL_MLP)
        return wf_sequential_new(3, wf_linear_new(4, 8, true), wf_relu_new(), wf_linear_new(8, 3, true));
    /* [N, 1, 5, 5] -> conv 3x3 -> [N, 2, 3, 3] -> relu -> flatten -> [N, 18] -> [N, 3] */
    return wf_sequential_new(4, wf_conv2d_new(1, 2, &(wf_conv2d_layer_opts){ .kernel_size = { 3, 3 } }),
                             wf_relu_new(), wf_flatten_new(1, -1), wf_linear_new(18, 3, true));
}

static wf_tensor *input_new(int model, unsigned seed) {
    double d[2 * 25];
    float v[2 * 25];
    tt_fill(d, 50, seed);
    for (int i = 0; i < 50; i++) v[i] = (float)d[i];
    if (model == MODEL_MLP) return wf_from_data(v, WF_SHAPE(2, 4), WF_F32);
    return wf_from_data(v, WF_SHAPE(2, 1, 5, 5), WF_F32);
}

static void rig_free(rig *r) {
    wf_fabric_state_free(r->st);
    wf_fabric_free(r->fab);
    wf_optimizer_free(r->opt);
    wf_module_free(r->m);
    wf_tensor_free(r->x);
    wf_tensor_free(r->y);
    unlink(r->ckpt);
    memset(r, 0, sizeof *r);
}

/* Build the model (same seed every time), its Adam and, on the Fabric path, the Fabric with
 * the module and optimizer set up and a checkpoint state. Returns 0 or the first error code
 * (what was built is freed). */
static int rig_init(rig *r, int model, int path, int optim) {
    memset(r, 0, sizeof *r);
    r->model = model;
    r->path = path;
    r->optim = optim;
    snprintf(r->ckpt, sizeof r->ckpt, "/tmp/weft_test_alloc_fail_%d.ckpt", (int)getpid());
    wf_clear_error();
    wf_manual_seed(1234);
    r->m = model_new(model);
    r->x = input_new(model, 1);
    r->y = wf_from_data((float[6]){ 0.5f, -1, 0.25f, 1, 0, -0.5f }, WF_SHAPE(2, 3), WF_F32);
    int rc = 0;
    if (!r->m || !r->x || !r->y) goto fail;
    wf_tensor *p[8];
    int n = wf_module_parameters(r->m, p, NULL, 8);
    if (n < 0) goto fail;
    r->opt = optim == OPT_SGD ? wf_sgd_new(p, n, &(wf_sgd_opts){ .lr = 0.1, .momentum = 0.9 })
                              : wf_adam_new(p, n, &(wf_adam_opts){ .lr = 1e-2 });
    if (!r->opt) goto fail;
    if (path == PATH_FABRIC) {
        r->fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
        if (!r->fab) goto fail;
        if ((rc = wf_fabric_setup(r->fab, r->m, &r->opt, 1, NULL))) goto fail;
        r->st = wf_fabric_state_new();
        if (!r->st) goto fail;
        if ((rc = wf_fabric_state_add_module(r->st, "model", r->m)) ||
            (rc = wf_fabric_state_add_optimizer(r->st, "optimizer", r->opt)) ||
            (rc = wf_fabric_state_add_int(r->st, "step", &r->step_count)) ||
            (rc = wf_fabric_state_add_rng(r->st, "rng")))
            goto fail;
    }
    return 0;
fail:
    if (!rc) rc = wf_error() ? wf_error() : WF_EINVAL;
    rig_free(r);
    return rc;
}

/* The plain checkpoint: the module's state dict through a safetensors writer. */
static int save_plain(rig *r) {
    wf_state_dict *sd = wf_state_dict_new();
    wf_st_writer *w = wf_st_writer_new();
    int rc = !sd || !w ? WF_ENOMEM : wf_module_state_dict(r->m, sd, "model.");
    for (int i = 0; !rc && i < wf_state_dict_count(sd); i++)
        rc = wf_st_writer_add(w, wf_state_dict_name_at(sd, i), wf_state_dict_tensor_at(sd, i));
    if (!rc) rc = wf_st_writer_set_metadata(w, "step", "1");
    if (!rc) rc = wf_st_writer_save(w, r->ckpt);
    wf_st_writer_free(w);
    wf_state_dict_free(sd);
    return rc;
}

/* One training step. Returns 0 or the first error code; *loss gets the loss (NAN if none).
 * The caches are emptied before the backward, the optimizer step and the save: otherwise
 * those reuse the blocks the forward freed and never reach the allocator (so never fail). */
static int step(rig *r, double *loss) {
    *loss = NAN;
    wf_clear_error();
    int rc = wf_optimizer_zero_grad(r->opt, true);
    if (rc) return rc;
    wf_scope_begin();
    wf_tensor *l = wf_mse_loss(wf_module_forward(r->m, r->x), r->y, WF_REDUCTION_MEAN);
    if (!l) rc = wf_error() ? wf_error() : WF_EINVAL;
    else {
        *loss = wf_item(l);
        wf_empty_cache();
        rc = r->path == PATH_FABRIC ? wf_fabric_backward(r->fab, l, r->m) : wf_backward(l, NULL, false);
    }
    wf_scope_end();
    if (rc) return rc;
    wf_empty_cache();
    rc = r->path == PATH_FABRIC ? wf_fabric_step(r->fab, r->opt, NULL) : wf_optimizer_step(r->opt);
    if (rc) return rc;
    r->step_count++;
    wf_empty_cache();
    return r->path == PATH_FABRIC ? wf_fabric_save(r->fab, r->ckpt, r->st, NULL) : save_plain(r);
}

/* ---------------------------------------------------------------- parameter snapshots */

#define MAXV 256
typedef struct snap { int n; double v[MAXV]; } snap;

static void take(rig *r, snap *s) {
    wf_tensor *p[8];
    int n = wf_module_parameters(r->m, p, NULL, 8);
    ck_assert_int_gt(n, 0);
    s->n = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_le(s->n + wf_numel(p[i]), MAXV);
        ck_assert_int_eq(wf_to_array(p[i], s->v + s->n, WF_F64), 0);
        s->n += (int)wf_numel(p[i]);
    }
}
static bool same(const snap *a, const snap *b) {
    return a->n == b->n && memcmp(a->v, b->v, sizeof(double) * (size_t)a->n) == 0;
}

/* ---------------------------------------------------------------- the sweep */

/* Allocations of one step after rig_init, with empty caches. */
static long count_step(int model, int path, int optim) {
    rig r;
    ck_assert_int_eq(rig_init(&r, model, path, optim), 0);
    double loss;
    arm(0, false);
    long before = atomic_load(&g_count);
    ck_assert_msg(step(&r, &loss) == 0, "%s", wf_error_message());
    long n = atomic_load(&g_count) - before;
    rig_free(&r);
    return n;
}

static void sweep(int model, int path, int optim) {
    char what[64];
    snprintf(what, sizeof what, "%s/%s/%s", model == MODEL_MLP ? "mlp" : "conv",
             path == PATH_FABRIC ? "fabric" : "plain", optim == OPT_SGD ? "sgd" : "adam");
    /* references: the parameters after 0, 1 and 2 uninterrupted steps */
    snap init, ref1, ref2, now;
    rig r;
    double loss;
    ck_assert_int_eq(rig_init(&r, model, path, optim), 0);
    take(&r, &init);
    ck_assert_int_eq(step(&r, &loss), 0);
    ck_assert(isfinite(loss));
    take(&r, &ref1);
    ck_assert_int_eq(step(&r, &loss), 0);
    take(&r, &ref2);
    ck_assert(!same(&init, &ref1) && !same(&ref1, &ref2));
    rig_free(&r);

    long total = count_step(model, path, optim);
    ck_assert_int_gt(total, 10);
    /* the fault at N alone, then at N and every allocation after it */
    for (int sticky = 0; sticky < 2; sticky++) {
        const char *mode = sticky ? " and after" : "";
        int untouched = 0, updated = 0, absorbed = 0;
        long absorbed_at[16];
        long only = getenv("WF_TEST_ALLOC_N") ? atol(getenv("WF_TEST_ALLOC_N")) : 0;   /* debugging: one N */
        for (long n = only ? only : 1; n <= (only ? only : total); n++) {
            ck_assert_int_eq(rig_init(&r, model, path, optim), 0);
            arm(n, sticky);
            int rc = step(&r, &loss);
            disarm();
            ck_assert_msg(atomic_load(&g_failed) == 1, "%s N=%ld%s: the fault was not reached", what, n, mode);
            take(&r, &now);
            bool was_untouched = same(&now, &init);
            if (rc == 0) {
                /* absorbed: the library did without the block (a scope's reserve); the step
                 * must then be exactly an uninterrupted one */
                ck_assert_msg(wf_error() == WF_OK && isfinite(loss) && same(&now, &ref1),
                              "%s N=%ld%s: the step succeeded but differs from an uninterrupted one (%s)",
                              what, n, mode, wf_error_message());
                if (absorbed < 16) absorbed_at[absorbed] = n;
                absorbed++;
            } else {
                ck_assert_msg(rc == WF_ENOMEM && wf_error() == WF_ENOMEM,
                              "%s N=%ld%s of %ld: got %s (error %s: %s)", what, n, mode, total,
                              wf_error_name(rc), wf_error_name(wf_error()), wf_error_message());
                ck_assert_msg(was_untouched || same(&now, &ref1), "%s N=%ld%s: parameters half updated", what, n, mode);
                was_untouched ? untouched++ : updated++;
            }
            /* allocations work again: the next step is the first (or second) uninterrupted one */
            rc = step(&r, &loss);
            ck_assert_msg(rc == 0, "%s N=%ld%s: the next step failed: %s", what, n, mode, wf_error_message());
            ck_assert_msg(isfinite(loss), "%s N=%ld%s: loss %g", what, n, mode, loss);
            take(&r, &now);
            ck_assert_msg(same(&now, was_untouched ? &ref1 : &ref2),
                          "%s N=%ld%s: the step after the failure differs from an uninterrupted run", what, n, mode);
            rig_free(&r);
            wf_empty_cache();
            ck_assert_msg(atomic_load(&g_live) == 0, "%s N=%ld%s: %ld blocks leaked", what, n, mode,
                          atomic_load(&g_live));
        }
        /* both outcomes happen: failures before the optimizer step and in the save after it */
        if (!only) {
            ck_assert_int_gt(untouched, 0);
            ck_assert_int_gt(updated, 0);
        }
        char list[16 * 8] = "";
        for (int i = 0; i < absorbed && i < 16; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%ld", i ? "," : "", absorbed_at[i]);
        fprintf(stderr, "%s, fault at N%s: %ld allocations per step; failures: %d before the update, "
                "%d after it, %d absorbed (N=%s)\n", what, mode, total, untouched, updated, absorbed, list);
    }
}

START_TEST(test_mlp_plain) { sweep(MODEL_MLP, PATH_PLAIN, OPT_ADAM); }
END_TEST
START_TEST(test_mlp_fabric) { sweep(MODEL_MLP, PATH_FABRIC, OPT_ADAM); }
END_TEST
START_TEST(test_conv_plain) { sweep(MODEL_CONV, PATH_PLAIN, OPT_ADAM); }
END_TEST
START_TEST(test_conv_fabric) { sweep(MODEL_CONV, PATH_FABRIC, OPT_ADAM); }
END_TEST
START_TEST(test_mlp_plain_sgd) { sweep(MODEL_MLP, PATH_PLAIN, OPT_SGD); }
END_TEST

/* The fault while building the model, the optimizer, the Fabric and its state. */
START_TEST(test_setup) {
    rig r;
    arm(0, false);
    long before = atomic_load(&g_count);
    ck_assert_int_eq(rig_init(&r, MODEL_CONV, PATH_FABRIC, OPT_ADAM), 0);
    long total = atomic_load(&g_count) - before;
    rig_free(&r);
    ck_assert_int_gt(total, 10);
    for (int sticky = 0; sticky < 2; sticky++) {
        int absorbed = 0;
        long only = getenv("WF_TEST_ALLOC_N") ? atol(getenv("WF_TEST_ALLOC_N")) : 0;
        for (long n = only ? only : 1; n <= (only ? only : total); n++) {
            arm(n, sticky);
            int rc = rig_init(&r, MODEL_CONV, PATH_FABRIC, OPT_ADAM);
            disarm();
            ck_assert_msg(atomic_load(&g_failed) == 1, "setup N=%ld: the fault was not reached", n);
            if (rc == 0) {   /* absorbed (a scope's reserve): the rig is whole */
                ck_assert_int_eq(wf_error(), WF_OK);
                absorbed++;
                rig_free(&r);
            } else {
                ck_assert_msg(rc == WF_ENOMEM && wf_error() == WF_ENOMEM, "setup N=%ld of %ld: got %s (error %s: %s)",
                              n, total, wf_error_name(rc), wf_error_name(wf_error()), wf_error_message());
            }
            wf_empty_cache();
            ck_assert_msg(atomic_load(&g_live) == 0, "setup N=%ld: %ld blocks leaked", n, atomic_load(&g_live));
        }
        fprintf(stderr, "setup, fault at N%s: %ld allocations, %d failures absorbed\n", sticky ? " and after" : "",
                total, absorbed);
    }
}
END_TEST

/* The allocator itself: it must be set before any tensor exists. */
START_TEST(test_allocator_rules) {
    wf_tensor *t = wf_zeros(WF_SHAPE(4), WF_F32);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(wf_set_allocator(&(wf_allocator){ fa_alloc, fa_free, NULL }), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "tensors are alive");
    wf_tensor_free(t);
    /* a refused allocation is WF_ENOMEM */
    arm(1, false);
    t = wf_zeros(WF_SHAPE(1000), WF_F32);
    disarm();
    ck_assert_ptr_null(t);
    ck_assert_error(WF_ENOMEM, "out of memory");
    ck_assert_int_eq(atomic_load(&g_live), 0);
}
END_TEST

int main(void) {
    if (wf_set_allocator(&(wf_allocator){ fa_alloc, fa_free, NULL })) {
        fprintf(stderr, "wf_set_allocator: %s\n", wf_error_message());
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("alloc_fail");
    /* one case per test: CK_RUN_CASE=mlp_plain runs one of them */
    struct { const char *name; const TTest *fn; } cases[] = {
        { "allocator_rules", test_allocator_rules }, { "setup", test_setup },
        { "mlp_plain", test_mlp_plain }, { "mlp_fabric", test_mlp_fabric },
        { "conv_plain", test_conv_plain }, { "conv_fabric", test_conv_fabric },
        { "mlp_plain_sgd", test_mlp_plain_sgd },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tt_run(s);
}
