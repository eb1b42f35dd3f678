/* tests/fabric/test_ddp.c: DDP's gradient reducer (fabric/ddp_reducer.c) and the DDP
 * strategy's setup checks. Runs as one process (a world of one: the local backend, also in
 * the ASan build) and under `mpirun -np 2` / `-np 3`.
 *
 * The reducer tests drive a reducer directly on a process group: buckets (sizes, reverse
 * order, one dtype each), gradients as views into the buckets, the average equal to the
 * ranks' local gradients averaged by hand, the one rebuild in rank 0's ready order, K
 * micro-batches accumulated without sync equal to one large batch, unused parameters (an
 * error naming them on every rank; with find_unused_parameters, zeros), static_graph
 * skipping the agreement, bf16 compression. The Fabric tests (several ranks only): a model
 * whose shapes differ across ranks is an error naming the parameter and the rank, buffers are
 * broadcast from rank 0 before each forward, and a "_find_unused_parameters_true" strategy
 * trains a model that leaves parameters unused.
 *
 * CK_FORK=no: every rank runs every test in order so the collectives line up; a short
 * WF_DIST_TIMEOUT turns a desynchronization into an error, not a hang. */
#include "dist_fixture.h"
#include "fabric/ddp_reducer.h"
#include "dist/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* 0.weight 0.bias (4->6), tanh, 2.weight 2.bias (6->5), tanh, 4.weight 4.bias (5->2); the same
 * initial weights on every rank (seeded) */
static wf_module *mlp(void) {
    wf_manual_seed(7);
    wf_module *m = wf_sequential_new(5, wf_linear_new(4, 6, true), wf_tanh_new(), wf_linear_new(6, 5, true),
                                     wf_tanh_new(), wf_linear_new(5, 2, true));
    wf_module_to(m, WF_CPU, WF_F64);
    return m;
}
static wf_tensor *xb(int r, int k) {
    double v[12];
    tt_fill(v, 12, 300 + 10 * (unsigned)r + (unsigned)k);
    return wf_from_data(v, WF_SHAPE(3, 4), WF_F64);
}

/* the loss of rank r's micro-batch k; partial: only the first layer (the others unused) */
typedef struct lossdef { bool partial_on_last; double scale; } lossdef;
static wf_tensor *loss_of(wf_module *m, int r, int k, const lossdef *d) {
    wf_tensor *x = xb(r, k);
    wf_tensor *y = d && d->partial_on_last && r == world - 1 ? wf_module_forward(wf_module_child_at(m, 0, NULL), x)
                                                             : wf_module_forward(m, x);
    return wf_mul_scalar(wf_mean_all(wf_square(y)), d && d->scale ? d->scale : 1.0);
}

static wf_ddp_reducer_opts opts(double cap, double first) {
    return (wf_ddp_reducer_opts){ .bucket_cap_mb = cap, .first_bucket_mb = first, .comm_dtype = (wf_dtype)-1 };
}

/* m's gradients must equal the ranks' local gradients (of micro-batches k0..k1-1 under d, on
 * a fresh copy) averaged by hand; a parameter without a local gradient counts zero, and one
 * without a gradient on every rank has none (as PyTorch's reducer leaves it). */
static void check_avg(wf_module *m, int k0, int k1, const lossdef *d, double tol) {
    WF_SCOPE {
        wf_module *ref = mlp();
        wf_tensor *rp[8], *p[8];
        int n = wf_module_parameters(ref, rp, NULL, 8);
        ck_assert_int_eq(wf_module_parameters(m, p, NULL, 8), n);
        for (int k = k0; k < k1; k++) ck_assert_int_eq(wf_backward(loss_of(ref, rank, k, d), NULL, false), 0);
        for (int i = 0; i < n; i++) {
            wf_tensor *any = wf_full(WF_SHAPE(1), wf_grad(rp[i]) ? 1 : 0, WF_I32);
            ck_assert_int_eq(wf_dist_all_reduce(pg, any, WF_DIST_MAX, NULL), 0);
            if (!wf_item(any)) {
                ck_assert_msg(!wf_grad(p[i]), "parameter %d: no rank used it, yet it has a gradient", i);
                continue;
            }
            wf_tensor *g = wf_grad(rp[i]) ? wf_clone(wf_grad(rp[i])) : wf_zeros_like(rp[i]);
            ck_assert_int_eq(wf_dist_all_reduce(pg, g, WF_DIST_AVG, NULL), 0);
            double e[64];
            wf_to_array(g, e, WF_F64);
            ck_assert_ptr_nonnull(wf_grad(p[i]));
            ck_assert_tensor_near(wf_grad(p[i]), e, wf_numel(g), tol);
        }
        wf_module_free(ref);
    }
}

static void zero_grads(wf_module *m, bool to_none) {
    wf_tensor *p[8];
    int n = wf_module_parameters(m, p, NULL, 8);
    for (int i = 0; i < n; i++) {
        if (to_none) wf_set_grad(p[i], NULL);
        else if (wf_grad(p[i])) wf_zero_(wf_grad(p[i]));
    }
}

/* the sequence number of the newest collective on pg ("#12 all_reduce ...") */
static long last_seq(void) {
    char buf[8192];
    wf_process_group_history(pg, buf, sizeof buf);
    char *l = strrchr(buf, '#');
    return l ? strtol(l + 1, NULL, 10) : 0;
}

START_TEST(test_bucket_assignment) {
    wf_module *m = mlp();
    /* defaults: a tiny model is one bucket */
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &(wf_ddp_reducer_opts){ 25, 1, false, false, (wf_dtype)-1 });
    ck_assert_msg(r, "%s", wf_error_message());
    ck_assert_int_eq(wf__ddp_reducer_num_buckets(r), 1);
    wf__ddp_reducer_free(r);
    /* tiny caps: one parameter per bucket, in reverse order of registration */
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    r = wf__ddp_reducer_new(pg, m, &o);
    ck_assert_int_eq(wf__ddp_reducer_num_buckets(r), 6);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, i), 5 - i);
    wf__ddp_reducer_free(r);
    /* the first bucket closes at first_bucket_mb: 4.bias (16 B) + 4.weight (80 B) >= 90 B */
    o = opts(25, 90.0 / 1048576.0);
    r = wf__ddp_reducer_new(pg, m, &o);
    ck_assert_int_eq(wf__ddp_reducer_num_buckets(r), 2);
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 5), 0);
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 4), 0);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, i), 1);
    wf__ddp_reducer_free(r);
    /* dtypes never mix: the middle layer in f32 gets a bucket of its own */
    wf_module_to(wf_module_child_at(m, 2, NULL), WF_CPU, WF_F32);
    r = wf__ddp_reducer_new(pg, m, &(wf_ddp_reducer_opts){ 25, 1, false, false, (wf_dtype)-1 });
    ck_assert_int_eq(wf__ddp_reducer_num_buckets(r), 2);
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 2), wf__ddp_reducer_bucket_of(r, 3));
    ck_assert_int_ne(wf__ddp_reducer_bucket_of(r, 2), wf__ddp_reducer_bucket_of(r, 0));
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 0), wf__ddp_reducer_bucket_of(r, 5));
    wf__ddp_reducer_free(r);
    wf_module_free(m);
    /* bad options */
    ck_assert_int_eq(wf__ddp_check_opts(&(wf_ddp_opts){ .bucket_cap_mb = -1 }), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "ddp.bucket_cap_mb = -1");
    ck_assert_int_eq(wf__ddp_check_opts(&(wf_ddp_opts){ .comm_hook = "zstd" }), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "unknown ddp.comm_hook \"zstd\"");
    ck_assert_int_eq(wf__ddp_check_opts(&(wf_ddp_opts){ .comm_hook = "bf16_compress" }), 0);
}
END_TEST

/* A plain hook on 0.weight (its gradient is among the last of backward) notes how many
 * collectives were already issued: full buckets are launched during backward, not after. */
static long seq_at_hook;
static void note_seq(wf_tensor *leaf, void *ud) { (void)leaf; (void)ud; seq_at_hook = last_seq(); }

/* Averages over several buckets, gradients as views into them, whatever zero_grad did. */
START_TEST(test_reduce_into_views) {
    wf_module *m = mlp();
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    ck_assert_msg(r, "%s", wf_error_message());
    wf_tensor *p[8];
    wf_module_parameters(m, p, NULL, 8);
    int h = wf_register_grad_hook(p[0], note_seq, NULL);
    for (int step = 0; step < 3; step++) {
        zero_grads(m, step != 1);   /* set_to_none, then zeroing the views in place, then none */
        long before = last_seq();
        WF_SCOPE {
            ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
            ck_assert_int_eq(wf_backward(loss_of(m, rank, step, NULL), NULL, false), 0);
            ck_assert_int_eq(wf__ddp_reducer_after_backward(r, 0), 0);
        }
        /* the buckets of layers 4 and 2 (4 of 6) filled before 0.weight: already launched
         * (one rank has nothing to exchange: no collectives at all) */
        if (world > 1) ck_assert_int_ge(seq_at_hook - before, 4);
        else ck_assert_int_eq(last_seq() - before, 0);
        check_avg(m, step, step + 1, NULL, 1e-12);
        for (int i = 0; i < 6; i++) {
            /* a view of its bucket: no second copy */
            wf_tensor *g = wf_grad(p[i]);
            ck_assert_ptr_nonnull(g->view_base);
            ck_assert_int_eq(wf_numel(g->view_base), wf_numel(p[i]));   /* one parameter per bucket */
        }
    }
    wf_remove_grad_hook(p[0], h);
    /* a plain backward (not armed) only accumulates, into the same views */
    wf_tensor *before = wf_grad(p[0]);
    WF_SCOPE { ck_assert_int_eq(wf_backward(loss_of(m, rank, 9, NULL), NULL, false), 0); }
    ck_assert_ptr_eq(wf_grad(p[0]), before);
    /* arming twice is an error */
    ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
    ck_assert_int_eq(wf__ddp_reducer_prepare(r), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "already armed");
    /* a backward that never reaches the engine still settles the reducer (same collectives) */
    ck_assert_int_eq(wf__ddp_reducer_after_backward(r, WF_EAUTOGRAD), WF_EAUTOGRAD);
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST

/* After the first step the buckets follow the order gradients became ready on rank 0. Rank 0
 * runs layer A after B, the other ranks B after A, so their orders differ. */
START_TEST(test_rebuild_in_rank0_order) {
    wf_manual_seed(3);
    wf_module *m = wf_sequential_new(2, wf_linear_new(4, 4, true), wf_linear_new(4, 4, true));
    wf_module_to(m, WF_CPU, WF_F64);
    wf_module *a = wf_module_child_at(m, 0, NULL), *b = wf_module_child_at(m, 1, NULL);
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    /* before: reverse registration (1.bias first) */
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 3), 0);
    ck_assert_int_eq(wf__ddp_reducer_bucket_of(r, 0), 3);
    for (int step = 0; step < 2; step++) {
        WF_SCOPE {
            wf_tensor *x = xb(rank, step);
            wf_tensor *y = rank == 0 ? wf_module_forward(a, wf_module_forward(b, x)) : wf_module_forward(b, wf_module_forward(a, x));
            ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
            ck_assert_int_eq(wf_backward(wf_sum_all(wf_square(y)), NULL, false), 0);
        }
    }
    /* rank 0's last layer was A (child 0): its gradients were ready first */
    int mine[4], all[4 * 8];
    for (int i = 0; i < 4; i++) mine[i] = wf__ddp_reducer_bucket_of(r, i);
    ck_assert_int_lt(mine[0], 2);
    ck_assert_int_lt(mine[1], 2);
    ck_assert_int_ge(mine[2], 2);
    ck_assert_int_ge(mine[3], 2);
    /* the same buckets on every rank */
    ck_assert_int_eq(wf_dist_gather_bytes(pg, mine, sizeof mine, all, 0), 0);
    if (rank == 0)
        for (int q = 1; q < world; q++) ck_assert_int_eq(memcmp(all, all + 4 * q, sizeof mine), 0);
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST

/* K micro-batches accumulated without sync, then one synced backward, equal the average of
 * every rank's large batch (all K micro-batches at once). */
START_TEST(test_no_sync_equals_large_batch) {
    enum { K = 3 };
    wf_module *m = mlp();
    wf_ddp_reducer_opts o = opts(200.0 / 1048576.0, 100.0 / 1048576.0);   /* a few buckets */
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    ck_assert_int_gt(wf__ddp_reducer_num_buckets(r), 1);
    lossdef d = { .scale = 1.0 / K };
    for (int round = 0; round < 2; round++) {   /* before and after the rebuild */
        zero_grads(m, round == 0);
        for (int k = 0; k < K; k++) {
            WF_SCOPE {
                if (k == K - 1) ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
                ck_assert_int_eq(wf_backward(loss_of(m, rank, k, &d), NULL, false), 0);
            }
        }
        /* the large batch: the K micro-batches concatenated, one mean */
        WF_SCOPE {
            wf_module *ref = mlp();
            wf_tensor *xs[K], *rp[8], *p[8];
            for (int k = 0; k < K; k++) xs[k] = xb(rank, k);
            ck_assert_int_eq(wf_backward(wf_mean_all(wf_square(wf_module_forward(ref, wf_cat(xs, K, 0)))), NULL, false), 0);
            int n = wf_module_parameters(ref, rp, NULL, 8);
            wf_module_parameters(m, p, NULL, 8);
            for (int i = 0; i < n; i++) {
                wf_tensor *g = wf_clone(wf_grad(rp[i]));
                ck_assert_int_eq(wf_dist_all_reduce(pg, g, WF_DIST_AVG, NULL), 0);
                double e[64];
                wf_to_array(g, e, WF_F64);
                ck_assert_tensor_near(wf_grad(p[i]), e, wf_numel(g), 1e-12);
            }
            wf_module_free(ref);
        }
    }
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST

/* Off: parameters without a gradient on some rank are an error on every rank, naming them;
 * the next full step works. On: they count zero and training goes on. */
START_TEST(test_unused_parameters) {
    wf_module *m = mlp();
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    lossdef partial = { .partial_on_last = true };
    WF_SCOPE {
        ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
        ck_assert_int_eq(wf_backward(loss_of(m, rank, 0, &partial), NULL, false), WF_ESTATE);
        ck_assert_ptr_nonnull(strstr(wf_error_message(), rank == world - 1 ? "on this rank" : "on another rank"));
        ck_assert_error(WF_ESTATE, "parameter(s) \"2.weight\", \"2.bias\", \"4.weight\", \"4.bias\" received no gradient");
    }
    zero_grads(m, true);
    WF_SCOPE {
        ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
        ck_assert_int_eq(wf_backward(loss_of(m, rank, 1, NULL), NULL, false), 0);
    }
    check_avg(m, 1, 2, NULL, 1e-12);
    wf__ddp_reducer_free(r);
    /* find_unused_parameters: the same model trains */
    o.find_unused_parameters = true;
    r = wf__ddp_reducer_new(pg, m, &o);
    for (int step = 0; step < 2; step++) {
        zero_grads(m, true);
        WF_SCOPE {
            ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
            ck_assert_int_eq(wf_backward(loss_of(m, rank, step, &partial), NULL, false), 0);
        }
        check_avg(m, step, step + 1, &partial, 1e-12);
    }
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST

/* The agreement collective: every step without static_graph, only the first with it; the
 * first step also broadcasts the rebuild order. One bucket, so one all-reduce per step. */
START_TEST(test_static_graph_skips_agreement) {
    wf_module *m = mlp();
    for (int st = 0; st < 2; st++) {
        wf_ddp_reducer_opts o = opts(25, 1);
        o.static_graph = st;
        wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
        ck_assert_int_eq(wf__ddp_reducer_num_buckets(r), 1);
        long counts[3];
        for (int step = 0; step < 3; step++) {
            long before = last_seq();
            WF_SCOPE {
                ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
                ck_assert_int_eq(wf_backward(loss_of(m, rank, step, NULL), NULL, false), 0);
            }
            counts[step] = last_seq() - before;
        }
        int c = world > 1;                             /* one rank: nothing to exchange */
        ck_assert_int_eq(counts[0], 3 * c);            /* bucket, agreement, rebuild order */
        ck_assert_int_eq(counts[1], (st ? 1 : 2) * c); /* bucket (+ agreement) */
        ck_assert_int_eq(counts[2], (st ? 1 : 2) * c);
        /* static_graph: a parameter left out later is still caught, on this rank */
        if (st) {
            lossdef partial = { .partial_on_last = true };
            WF_SCOPE {
                ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
                int rc = wf_backward(loss_of(m, rank, 5, &partial), NULL, false);
                if (rank == world - 1) {
                    ck_assert_int_eq(rc, WF_ESTATE);
                    ck_assert_error(WF_ESTATE, "static_graph fixed the set of used parameters");
                } else {
                    ck_assert_int_eq(rc, 0);
                }
            }
        }
        wf__ddp_reducer_free(r);
    }
    wf_module_free(m);
}
END_TEST

/* bf16 / fp16 compression (_i = 0 / 1): the average within the half type's precision, and
 * visibly rounded. */
START_TEST(test_half_compress) {
    wf_module *m = mlp();
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    o.comm_dtype = _i ? WF_F16 : WF_BF16;
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    WF_SCOPE {
        ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
        ck_assert_int_eq(wf_backward(loss_of(m, rank, 0, NULL), NULL, false), 0);
    }
    check_avg(m, 0, 1, NULL, _i ? 5e-3 : 2e-2);
    /* rounded: the exact f64 average differs somewhere */
    WF_SCOPE {
        wf_module *ref = mlp();
        wf_tensor *rp[8], *p[8];
        wf_module_parameters(ref, rp, NULL, 8);
        wf_module_parameters(m, p, NULL, 8);
        ck_assert_int_eq(wf_backward(loss_of(ref, rank, 0, NULL), NULL, false), 0);
        wf_tensor *g = wf_clone(wf_grad(rp[0]));
        ck_assert_int_eq(wf_dist_all_reduce(pg, g, WF_DIST_AVG, NULL), 0);
        double diff;
        wf_to_array(wf_sum_all(wf_abs(wf_sub(g, wf_grad(p[0])))), &diff, WF_F64);
        ck_assert_double_gt(diff, 0);
        wf_module_free(ref);
    }
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST


/* WF_TRACE: one all_reduce per bucket per step, each naming its bucket, on the
 * communication lane; the local graph on the compute lane. */
static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}
START_TEST(test_trace_buckets) {
    if (world < 2) return;   /* one rank exchanges nothing: no collectives to trace */
    char base[128], path[160];
    snprintf(base, sizeof base, "/tmp/weft_ddp_trace_%d", (int)getpid());
    snprintf(path, sizeof path, "%s.rank%d.json", base, rank);
    ck_assert_int_eq(wf__trace_set_path(base), 0);
    ck_assert_int_eq(wf__trace_start(rank, world), 0);
    wf_module *m = mlp();
    wf_ddp_reducer_opts o = opts(1e-9, 1e-9);
    wf_ddp_reducer *r = wf__ddp_reducer_new(pg, m, &o);
    for (int step = 0; step < 3; step++) {
        WF_SCOPE {
            ck_assert_int_eq(wf__ddp_reducer_prepare(r), 0);
            ck_assert_int_eq(wf_backward(loss_of(m, rank, step, NULL), NULL, false), 0);
        }
    }
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(path);
    ck_assert_int_eq(count(text, "\"bucket\":"), 6 * 3);
    for (int b = 0; b < 6; b++) {
        char want[32];
        snprintf(want, sizeof want, "\"bucket\":%d}", b);
        ck_assert_int_eq(count(text, want), 3);
    }
    ck_assert_int_eq(count(text, "\"backward_compute\""), 3);
    ck_assert_int_eq(count(text, "\"ddp\":\"unused_parameters\""), 3);
    ck_assert_int_eq(count(text, "\"ddp\":\"rebuild_buckets\""), 1);
    wf_ddp_stats st;
    wf__ddp_reducer_stats(r, &st);
    ck_assert_int_eq(st.steps, 3);
    ck_assert_int_eq(st.buckets_launched, 18);
    ck_assert(st.backward_ms > 0 && st.comm_ms > 0 && st.overlap_ms <= st.comm_ms + 1e-9);
    wf__ddp_reducer_free(r);
    wf_module_free(m);
}
END_TEST

/* ---------------------------------------------------------------- the Fabric (several ranks) */

static wf_fabric *fabric(const char *strategy, wf_ddp_opts ddp) {
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .strategy = strategy, .quiet = true, .ddp = ddp });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    return f;
}

START_TEST(test_fabric_shape_mismatch) {
    if (world < 2) return;
    wf_fabric *f = fabric("ddp", (wf_ddp_opts){ 0 });
    wf_module *m = wf_sequential_new(2, wf_linear_new(4, 3, true), wf_linear_new(3, rank == 1 ? 3 : 2, true));
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "parameter \"1.weight\" is float32 [2,3] on rank 0 but float32 [3,3] on rank 1");
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

START_TEST(test_fabric_buffers_and_unused) {
    if (world < 2) return;
    for (int nb = 0; nb < 2; nb++) {
        /* buffers: rank 0's before each forward, unless no_broadcast_buffers */
        wf_fabric *f = fabric("ddp_find_unused_parameters_true", (wf_ddp_opts){ .no_broadcast_buffers = nb });
        wf_module *m = wf_sequential_new(2, wf_linear_new(4, 3, true), wf_linear_new(3, 2, true));
        ck_assert_int_eq(wf_module_register_buffer(m, "counter", wf_zeros(WF_SHAPE(2), WF_F32)), 0);
        ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
        wf_tensor *buf;
        ck_assert_int_eq(wf_module_buffers(m, &buf, NULL, 1), 1);
        WF_SCOPE {
            wf_fill_(buf, 10 + rank);
            wf_tensor *x = wf_ones(WF_SHAPE(2, 4), WF_F32);
            /* every rank runs the model's forward (its pre-forward broadcast is a collective);
             * rank 0's loss uses it all, the others' only the first layer: trains anyway */
            wf_tensor *out = wf_module_forward(m, x);
            if (rank != 0) out = wf_module_forward(wf_module_child_at(m, 0, NULL), x);
            float v[2];
            wf_to_array(buf, v, WF_F32);
            ck_assert_msg(v[0] == (nb ? 10 + rank : 10), "rank %d: buffer %g", rank, v[0]);
            ck_assert_int_eq(wf_fabric_backward(f, wf_sum_all(out), m), 0);
            wf_tensor *p[4];
            wf_module_parameters(m, p, NULL, 4);
            ck_assert_ptr_nonnull(wf_grad(p[2]));   /* averaged with the ranks that left it unused */
        }
        wf_fabric_free(f);
        wf_module_free(m);
    }
}
END_TEST


/* find_unused_parameters: a parameter no rank used keeps no gradient (the optimizer leaves it
 * alone, as under PyTorch's DDP), on every step, static graph or not; one used on some rank
 * only is averaged with the others' zeros. */
START_TEST(test_fabric_globally_unused_keeps_no_grad) {
    if (world < 2) return;
    for (int st = 0; st < 2; st++) {
        wf_fabric *f = fabric("ddp_find_unused_parameters_true", (wf_ddp_opts){ .static_graph = st });
        wf_manual_seed(3);
        wf_module *m = wf_sequential_new(3, wf_linear_new(4, 3, true), wf_linear_new(3, 2, true), wf_linear_new(2, 2, true));
        wf_tensor *p[6];
        ck_assert_int_eq(wf_module_parameters(m, p, NULL, 6), 6);
        wf_optimizer *opt = wf_adam_new(p, 6, &(wf_adam_opts){ .lr = 0.1 });
        ck_assert_ptr_nonnull(opt);
        ck_assert_int_eq(wf_fabric_setup(f, m, &opt, 1, NULL), 0);
        float before[4];
        wf_to_array(p[4], before, WF_F32);
        for (int step = 0; step < 3; step++) {
            wf_optimizer_zero_grad(opt, true);
            WF_SCOPE {
                /* layers 0 and 1 everywhere, layer 2 nowhere; rank 0 also skips layer 1 */
                wf_tensor *x = wf_full(WF_SHAPE(2, 4), 0.5 + rank, WF_F32);
                wf_tensor *h = wf_module_forward(wf_module_child_at(m, 0, NULL), x);
                if (rank != 0 || world == 1) h = wf_module_forward(wf_module_child_at(m, 1, NULL), h);
                ck_assert_int_eq(wf_fabric_backward(f, wf_sum_all(h), m), 0);
            }
            ck_assert_ptr_nonnull(wf_grad(p[0]));
            ck_assert_ptr_nonnull(wf_grad(p[2]));   /* used on some rank: averaged */
            ck_assert_msg(!wf_grad(p[4]) && !wf_grad(p[5]), "step %d: a parameter no rank used has a gradient", step);
            ck_assert_int_eq(wf_fabric_step(f, opt, NULL), 0);
        }
        float after[4];
        wf_to_array(p[4], after, WF_F32);
        ck_assert_mem_eq(before, after, sizeof before);
        wf_fabric_free(f);
        wf_optimizer_free(opt);
        wf_module_free(m);
    }
}
END_TEST

/* A parameter shared by two set-up modules would be averaged twice: refused on every rank,
 * naming it in both. */
START_TEST(test_fabric_shared_parameter_refused) {
    if (world < 2) return;   /* one process runs the single-device strategy: sharing is fine there */
    wf_fabric *f = fabric("ddp", (wf_ddp_opts){ 0 });
    wf_module *enc = wf_linear_new(4, 3, true);
    wf_module *dec = wf_sequential_new(2, wf_linear_new(3, 4, true), wf_linear_new(4, 3, true));
    /* tie dec's second layer to enc's weight and bias */
    wf_tensor *ep[2];
    wf_module_parameters(enc, ep, NULL, 2);
    wf_module *tied = wf_module_child_at(dec, 1, NULL);
    ck_assert_int_eq(wf_module_set_parameter(tied, "weight", wf_tensor_retain(ep[0])), 0);
    ck_assert_int_eq(wf_fabric_setup_module(f, enc, true), 0);
    ck_assert_int_eq(wf_fabric_setup_module(f, dec, true), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "parameter \"1.weight\" is also parameter \"weight\" of the module set up first");
    wf_fabric_free(f);
    wf_module_free(dec);
    wf_module_free(enc);
}
END_TEST

/* bf16-mixed: the parameters and so the gradients stay f32, and are reduced in f32 (equal on
 * every rank, bit for bit). */
START_TEST(test_fabric_bf16_mixed_reduces_f32) {
    if (world < 2) return;
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .precision = "bf16-mixed", .quiet = true,
                                                      .ddp = { .bucket_cap_mb = 1e-9, .first_bucket_mb = 1e-9 } });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    wf_module *m = wf_sequential_new(2, wf_linear_new(4, 3, true), wf_linear_new(3, 2, true));
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    WF_SCOPE {
        double v[8];
        tt_fill(v, 8, 40 + (unsigned)rank);
        wf_tensor *x = wf_to_dtype(wf_from_data(v, WF_SHAPE(2, 4), WF_F64), WF_F32);
        ck_assert_int_eq(wf_fabric_backward(f, wf_sum_all(wf_square(wf_module_forward(m, x))), m), 0);
        wf_tensor *p[4];
        wf_module_parameters(m, p, NULL, 4);
        for (int i = 0; i < 4; i++) {
            ck_assert_int_eq(wf_tensor_dtype(wf_grad(p[i])), WF_F32);
            wf_tensor *g = wf_fabric_all_gather(f, wf_grad(p[i]), false);
            int64_t n = wf_numel(p[i]);
            const float *gv = wf_data_ptr(wf_contiguous(g));
            for (int r = 1; r < world; r++) ck_assert(!memcmp(gv, gv + r * n, (size_t)n * sizeof(float)));
        }
    }
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

static void add_tests(TCase *tc) {
    tcase_add_test(tc, test_bucket_assignment);
    tcase_add_test(tc, test_reduce_into_views);
    tcase_add_test(tc, test_rebuild_in_rank0_order);
    tcase_add_test(tc, test_no_sync_equals_large_batch);
    tcase_add_test(tc, test_unused_parameters);
    tcase_add_test(tc, test_static_graph_skips_agreement);
    tcase_add_loop_test(tc, test_half_compress, 0, 2);
    tcase_add_test(tc, test_trace_buckets);
    tcase_add_test(tc, test_fabric_shape_mismatch);
    tcase_add_test(tc, test_fabric_buffers_and_unused);
    tcase_add_test(tc, test_fabric_globally_unused_keeps_no_grad);
    tcase_add_test(tc, test_fabric_shared_parameter_refused);
    tcase_add_test(tc, test_fabric_bf16_mixed_reduces_f32);
}

int main(void) { return tf_dist_main("ddp", add_tests); }
