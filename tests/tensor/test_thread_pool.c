/* tests/tensor/test_thread_pool.c: weft's thread pool (tensor/cpu/thread_pool.c) and the
 * promise it carries: results that do not depend on the thread count.
 *  - wf__parallel_for: every chunk [i*grain, min(n, (i+1)*grain)) runs exactly once; a range
 *    of one chunk runs on the caller; a call from inside a body runs inline; a chunk that is
 *    slow does not let the call return early; a forked child gets a working pool; slots;
 *    bad arguments; wf_set_num_threads / wf_get_num_threads.
 *  - the same reductions, softmax, norm clipping and MLP training steps (Linear, ReLU, cross
 *    entropy, Adam) at 1, 2 and 4 threads give identical bits. */
#define WF_PARALLEL_FOR_FUNCTION   /* the function, also in the minimal preset */
#include "test_util.h"
#include "weft_config.h"

#include "tensor/tensor_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

/* ---------------------------------------------------------------- coverage */

#define COVER_N 1000
typedef struct {
    int64_t n, grain;
    _Atomic int hits[COVER_N];
    _Atomic int bad_bounds;
    _Atomic int max_slot;
} cover_ctx;

static void cover_body(void *v, int64_t b, int64_t e) {
    cover_ctx *c = v;
    int64_t want_end = b + c->grain < c->n ? b + c->grain : c->n;
    if (b % c->grain != 0 || e != want_end || b < 0 || e > c->n) atomic_fetch_add(&c->bad_bounds, 1);
    for (int64_t i = b; i < e && i < COVER_N; i++) atomic_fetch_add(&c->hits[i], 1);
    int s = wf__pool_worker(), m = atomic_load(&c->max_slot);
    while (s > m && !atomic_compare_exchange_weak(&c->max_slot, &m, s)) {}
}

/* run one cover over [0, n) in chunks of grain; every element exactly once, exact bounds */
static void check_cover(int64_t n, int64_t grain, int threads) {
    cover_ctx *c = calloc(1, sizeof *c);
    c->n = n;
    c->grain = grain;
    ck_assert_int_eq(wf__parallel_for(n, grain, cover_body, c), 0);
    ck_assert_int_eq(atomic_load(&c->bad_bounds), 0);
    for (int64_t i = 0; i < n; i++) ck_assert_msg(atomic_load(&c->hits[i]) == 1, "n %lld grain %lld: element %lld ran %d times",
                                                  (long long)n, (long long)grain, (long long)i, atomic_load(&c->hits[i]));
    int64_t nchunks = (n + grain - 1) / grain;
    int64_t lim = nchunks < threads ? nchunks : threads;
    ck_assert_msg(atomic_load(&c->max_slot) < lim, "slot %d with %d threads and %lld chunks",
                  atomic_load(&c->max_slot), threads, (long long)nchunks);
    free(c);
}

START_TEST(test_chunks_cover_once) {
    const int threads[] = { 1, 2, 4, 3 };
    const int64_t grains[] = { 1, 7, 64, 999, 1000, 5000 };
    for (int t = 0; t < 4; t++) {
        ck_assert_int_eq(wf_set_num_threads(threads[t]), 0);
        for (int g = 0; g < 6; g++)
            for (int64_t n = 1; n <= COVER_N; n += 333) check_cover(n, grains[g], threads[t]);
        /* many small regions back to back: helpers arrive late, early, or not at all */
        for (int r = 0; r < 300; r++) check_cover(2 + r % 7, 1, threads[t]);
    }
    ck_assert_int_eq(wf__parallel_for(0, 1, cover_body, NULL), 0);   /* empty: body never called */
}
END_TEST

/* ---------------------------------------------------------------- caller only, nesting */

typedef struct {
    pthread_t caller;
    _Atomic int on_other, calls, nested_other, nested_calls, in_region;
} who_ctx;

static void who_body(void *v, int64_t b, int64_t e) {
    (void)b; (void)e;
    who_ctx *w = v;
    atomic_fetch_add(&w->calls, 1);
    if (!pthread_equal(pthread_self(), w->caller)) atomic_fetch_add(&w->on_other, 1);
}

START_TEST(test_small_range_runs_on_caller) {
    ck_assert_int_eq(wf_set_num_threads(4), 0);
    who_ctx w = { .caller = pthread_self() };
    ck_assert_int_eq(wf__parallel_for(100, 100, who_body, &w), 0);     /* one chunk */
    ck_assert_int_eq(wf__parallel_for(5, 1000, who_body, &w), 0);
    ck_assert_int_eq(atomic_load(&w.calls), 2);
    ck_assert_int_eq(atomic_load(&w.on_other), 0);
    ck_assert_int_eq(wf_set_num_threads(1), 0);                         /* one thread: all inline */
    ck_assert_int_eq(wf__parallel_for(64, 1, who_body, &w), 0);
    ck_assert_int_eq(atomic_load(&w.calls), 66);
    ck_assert_int_eq(atomic_load(&w.on_other), 0);
}
END_TEST

typedef struct {
    who_ctx inner[64];
    _Atomic int outer_calls, in_region_bad;
} nest_ctx;

static void inner_body(void *v, int64_t b, int64_t e) {
    (void)b; (void)e;
    who_ctx *w = v;
    atomic_fetch_add(&w->nested_calls, 1);
    if (!pthread_equal(pthread_self(), w->caller)) atomic_fetch_add(&w->nested_other, 1);
    if (!wf__pool_in_region() || wf__pool_size() != 1) atomic_fetch_add(&w->in_region, 1);
}

static void outer_body(void *v, int64_t b, int64_t e) {
    nest_ctx *n = v;
    atomic_fetch_add(&n->outer_calls, 1);
    if (!wf__pool_in_region()) atomic_fetch_add(&n->in_region_bad, 1);
    for (int64_t i = b; i < e; i++) {
        n->inner[i].caller = pthread_self();
        ck_assert_int_eq(wf__parallel_for(50, 3, inner_body, &n->inner[i]), 0);
        /* and set_num_threads is refused in here */
        ck_assert_int_eq(wf_set_num_threads(2), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "from inside a parallel loop");
    }
}

START_TEST(test_nested_calls_run_inline) {
    ck_assert_int_eq(wf_set_num_threads(4), 0);
    nest_ctx *n = calloc(1, sizeof *n);
    ck_assert_int_eq(wf__parallel_for(64, 1, outer_body, n), 0);
    ck_assert_int_eq(atomic_load(&n->outer_calls), 64);
    ck_assert_int_eq(atomic_load(&n->in_region_bad), 0);
    for (int i = 0; i < 64; i++) {
        ck_assert_int_eq(atomic_load(&n->inner[i].nested_calls), 17);   /* ceil(50 / 3) chunks */
        ck_assert_int_eq(atomic_load(&n->inner[i].nested_other), 0);    /* all on the outer chunk's thread */
        ck_assert_int_eq(atomic_load(&n->inner[i].in_region), 0);
    }
    free(n);
    ck_assert(!wf__pool_in_region());
    ck_assert_int_eq(wf__pool_worker(), 0);
}
END_TEST

/* ---------------------------------------------------------------- a slow chunk */

typedef struct {
    _Atomic int done[16];
} slow_ctx;

static void slow_body(void *v, int64_t b, int64_t e) {
    slow_ctx *s = v;
    if (b == 0) usleep(50 * 1000);   /* chunk 0: the caller's first, or a helper's */
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&s->done[i], 1);
}

START_TEST(test_slow_chunk_is_waited_for) {
    const int threads[] = { 2, 4 };
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(wf_set_num_threads(threads[t]), 0);
        for (int r = 0; r < 3; r++) {
            slow_ctx s = { 0 };
            ck_assert_int_eq(wf__parallel_for(16, 1, slow_body, &s), 0);
            /* returned: every chunk finished, the slow one included, each once */
            for (int i = 0; i < 16; i++) ck_assert_int_eq(atomic_load(&s.done[i]), 1);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- fork */

#if !defined(__SANITIZE_THREAD__)
/* in a child: resize, then one more cover (0 or 1, no Check asserts outside the test process) */
static int check_cover_child(cover_ctx *c) {
    memset(c, 0, sizeof *c);
    c->n = COVER_N;
    c->grain = 3;
    if (wf__parallel_for(COVER_N, 3, cover_body, c) != 0 || atomic_load(&c->bad_bounds)) return 0;
    for (int i = 0; i < COVER_N; i++)
        if (atomic_load(&c->hits[i]) != 1) return 0;
    return 1;
}
#endif

START_TEST(test_fork_then_use) {
    ck_assert_int_eq(wf_set_num_threads(4), 0);
    check_cover(COVER_N, 10, 4);   /* the parent's helpers are running */
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* the child has none of the parent's helper threads; its first loop starts its own */
#if defined(__SANITIZE_THREAD__)
        /* ThreadSanitizer cannot start threads after a multi-threaded fork: check here that the
         * child forgot the parent's helpers (resizing would otherwise join threads that are
         * not there) and runs its loops inline */
        if (wf_set_num_threads(1) != 0) _exit(2);
#endif
        cover_ctx *c = calloc(1, sizeof *c);
        c->n = COVER_N;
        c->grain = 10;
        int ok = wf__parallel_for(COVER_N, 10, cover_body, c) == 0 && atomic_load(&c->bad_bounds) == 0;
#if !defined(__SANITIZE_THREAD__) && !defined(WEFT_MINIMAL)
        ok = ok && wf_get_num_threads() == 4;
#endif
        for (int i = 0; i < COVER_N; i++) ok = ok && atomic_load(&c->hits[i]) == 1;
#if !defined(__SANITIZE_THREAD__)
        ok = ok && wf_set_num_threads(2) == 0 && check_cover_child(c);
#endif
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    check_cover(COVER_N, 10, 4);   /* and the parent's pool still works */
}
END_TEST

/* ---------------------------------------------------------------- set/get, bad arguments */

START_TEST(test_set_get_threads) {
    /* the default honours OMP_NUM_THREADS, as PyTorch does (tests run with 2) */
#ifndef WEFT_MINIMAL
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) >= 1) ck_assert_int_eq(wf_get_num_threads(), atoi(e));
#endif
    ck_assert_int_ge(wf_get_num_threads(), 1);
    const int sizes[] = { 3, 1, 4, 4, 2 };
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(wf_set_num_threads(sizes[i]), 0);
#ifndef WEFT_MINIMAL
        ck_assert_int_eq(wf_get_num_threads(), sizes[i]);
#else
        ck_assert_int_eq(wf_get_num_threads(), 1);
#endif
        check_cover(300, 7, wf_get_num_threads());
    }
    ck_assert_int_eq(wf_set_num_threads(0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_set_num_threads: n = 0 must be at least 1");
    ck_assert_int_eq(wf_set_num_threads(-3), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "n = -3");
}
END_TEST

START_TEST(test_bad_args) {
    int x = 0;
    ck_assert_int_eq(wf__parallel_for(-1, 4, who_body, &x), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf__parallel_for: n = -1, grain = 4");
    ck_assert_int_eq(wf__parallel_for(10, 0, who_body, &x), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "grain = 0");
    ck_assert_int_eq(wf__parallel_for(10, 1, NULL, &x), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "body NULL");
    ck_assert_int_eq(wf__parallel_for(INT64_MAX, 1, who_body, &x), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "chunks");
}
END_TEST

/* ---------------------------------------------------------------- same bits at any thread count */

/* raw bytes of t (contiguous CPU tensor), malloc'd */
static void *bytes_of(wf_tensor *t, size_t *nb) {
    ck_assert_ptr_nonnull(t);
    *nb = (size_t)wf_numel(t) * wf_dtype_size(wf_tensor_dtype(t));
    void *b = malloc(*nb);
    ck_assert_int_eq(wf_to_array(t, b, wf_tensor_dtype(t)), 0);
    return b;
}

/* reductions, softmax and a norm on tensors big enough to be cut into many chunks; returns
 * the concatenated result bytes */
static void *ops_bits(size_t *total) {
    wf_manual_seed(7);
    int64_t shp[2] = { 256, 1024 };
    wf_scope_begin();
    wf_tensor *x = wf_randn(shp, 2, WF_F32);
    int d1 = 1, d0 = 0;
    wf_tensor *outs[] = {
        wf_sum(x, &d1, 1, false),                 /* rows reduced whole, rows in chunks */
        wf_sum(x, &d0, 1, false),                 /* the strided path */
        wf_sum(x, NULL, 0, false),
        wf_softmax(x, 1),
        wf_log_softmax(x, 1),
        wf_norm(x, 2, WF_ALL_DIMS, false),
        wf_gelu(x, WF_GELU_NONE),
    };
    size_t n = sizeof outs / sizeof outs[0], off = 0;
    char *all = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t nb;
        void *b = bytes_of(outs[i], &nb);
        all = realloc(all, off + nb);
        memcpy(all + off, b, nb);
        off += nb;
        free(b);
    }
    wf_scope_end();
    *total = off;
    return all;
}

/* two MLP training steps (Linear 512-256-10, ReLU, cross entropy, clip_grad_norm_, Adam) from
 * one seed; returns the parameters' bytes after them */
static void *mlp_bits(size_t *total) {
    wf_manual_seed(11);
    wf_module *m = wf_sequential_new(3, wf_linear_new(512, 256, true), wf_relu_new(), wf_linear_new(256, 10, true));
    ck_assert_ptr_nonnull(m);
    wf_tensor *p[8];
    int np = wf_module_parameters(m, p, NULL, 8);
    ck_assert_int_eq(np, 4);
    wf_optimizer *opt = wf_adam_new(p, np, &(wf_adam_opts){ .lr = 1e-3 });
    ck_assert_ptr_nonnull(opt);
    int64_t xs[2] = { 128, 512 }, ys[1] = { 128 };
    wf_tensor *x = wf_randn(xs, 2, WF_F32);
    wf_tensor *y = wf_randint(0, 10, ys, 1, WF_I64);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(wf_optimizer_zero_grad(opt, true), 0);
        wf_scope_begin();
        wf_tensor *l = wf_cross_entropy(wf_module_forward(m, x), y, NULL);
        ck_assert_ptr_nonnull(l);
        ck_assert_int_eq(wf_backward(l, NULL, false), 0);
        wf_scope_end();
        double tn = 0;
        ck_assert_int_eq(wf_clip_grad_norm_(p, np, 0.5, 2, false, &tn), 0);
        ck_assert_int_eq(wf_optimizer_step(opt), 0);
    }
    size_t off = 0;
    char *all = NULL;
    for (int i = 0; i < np; i++) {
        size_t nb;
        void *b = bytes_of(p[i], &nb);
        all = realloc(all, off + nb);
        memcpy(all + off, b, nb);
        off += nb;
        free(b);
    }
    wf_tensor_free(x);
    wf_tensor_free(y);
    wf_optimizer_free(opt);
    wf_module_free(m);
    *total = off;
    return all;
}

START_TEST(test_same_bits_any_thread_count) {
    ck_assert_int_eq(wf_set_num_threads(1), 0);
    size_t n_ops1, n_mlp1;
    void *ops1 = ops_bits(&n_ops1), *mlp1 = mlp_bits(&n_mlp1);
    const int threads[] = { 2, 4, 3 };
    for (int t = 0; t < 3; t++) {
        ck_assert_int_eq(wf_set_num_threads(threads[t]), 0);
        for (int r = 0; r < 2; r++) {
            size_t n_ops, n_mlp;
            void *ops = ops_bits(&n_ops), *mlp = mlp_bits(&n_mlp);
            ck_assert_uint_eq(n_ops, n_ops1);
            ck_assert_uint_eq(n_mlp, n_mlp1);
            ck_assert_msg(memcmp(ops, ops1, n_ops) == 0, "reductions differ at %d threads", threads[t]);
            ck_assert_msg(memcmp(mlp, mlp1, n_mlp) == 0, "MLP parameters differ at %d threads", threads[t]);
            free(ops);
            free(mlp);
        }
    }
    free(ops1);
    free(mlp1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("thread_pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_set_get_threads);   /* first: sees the default size */
    tcase_add_test(tc, test_chunks_cover_once);
    tcase_add_test(tc, test_small_range_runs_on_caller);
    tcase_add_test(tc, test_nested_calls_run_inline);
    tcase_add_test(tc, test_slow_chunk_is_waited_for);
    tcase_add_test(tc, test_fork_then_use);
    tcase_add_test(tc, test_bad_args);
    tcase_add_test(tc, test_same_bits_any_thread_count);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
