/* tests/io/test_distributed_sampler.c: DistributedSampler, the wrapper around any sampler,
 * and wf_dataloader_distribute (Fabric's setup_dataloader with world size > 1).
 *
 * Reference: PyTorch's DistributedSampler written out plainly here (pad by appending the
 * start of the list until total_size, or cut at total_size; rank r takes [r::R]). */
#include "test_util.h"
#include "weft/data.h"

enum { MAXN = 64 };

/* PyTorch's num_samples, with its float ceil (ceil of a negative fraction is 0). */
static int64_t ref_num_samples(int64_t len, int R, bool drop_last) {
    if (drop_last && len % R != 0) return (int64_t)ceil((double)(len - R) / R);
    return (int64_t)ceil((double)len / R);
}

/* rank's indices from the epoch's full order, the PyTorch way */
static int64_t ref_shard(const int64_t *order, int64_t len, int R, int rank, bool drop_last, int64_t *out) {
    int64_t ns = ref_num_samples(len, R, drop_last), total = ns * R;
    int64_t padded[MAXN * 8], n = 0;
    for (int64_t i = 0; i < len && n < total; i++) padded[n++] = order[i];
    while (n < total) {   /* indices += indices[:padding], repeated when padding > len */
        int64_t have = n;
        for (int64_t i = 0; i < have && n < total; i++) padded[n++] = padded[i];
    }
    int64_t k = 0;
    for (int64_t i = rank; i < total; i += R) out[k++] = padded[i];
    ck_assert_int_eq(k, ns);
    return k;
}

static void get(wf_sampler *s, uint64_t epoch, int64_t *out, int64_t expect_len) {
    ck_assert_int_eq(s->len(s->ud), expect_len);
    ck_assert_msg(s->indices(s->ud, epoch, out) == 0, "%s", wf_error_message());
}

/* the example from the brief, worked out by hand from torch's code */
START_TEST(test_pytorch_small_case) {
    static const int64_t keep[3][4] = { { 0, 3, 6, 9 }, { 1, 4, 7, 0 }, { 2, 5, 8, 1 } };
    static const int64_t drop[3][3] = { { 0, 3, 6 }, { 1, 4, 7 }, { 2, 5, 8 } };
    int64_t out[8];
    for (int r = 0; r < 3; r++) {
        wf_sampler s;
        ck_assert_int_eq(wf_distributed_sampler(10, 3, r, false, 0, false, &s), 0);
        get(&s, 5, out, 4);
        for (int k = 0; k < 4; k++) ck_assert_int_eq(out[k], keep[r][k]);
        wf_sampler_free(&s);
        ck_assert_int_eq(wf_distributed_sampler(10, 3, r, false, 0, true, &s), 0);
        get(&s, 5, out, 3);
        for (int k = 0; k < 3; k++) ck_assert_int_eq(out[k], drop[r][k]);
        wf_sampler_free(&s);
    }
    /* padding longer than the list: len 2 over 5 ranks pads [0,1] to [0,1,0,1,0] */
    static const int64_t tiny[5] = { 0, 1, 0, 1, 0 };
    for (int r = 0; r < 5; r++) {
        wf_sampler s;
        ck_assert_int_eq(wf_distributed_sampler(2, 5, r, false, 0, false, &s), 0);
        get(&s, 0, out, 1);
        ck_assert_int_eq(out[0], tiny[r]);
        wf_sampler_free(&s);
        ck_assert_int_eq(wf_distributed_sampler(2, 5, r, true, 3, true, &s), 0);   /* nothing left */
        get(&s, 0, out, 0);
        wf_sampler_free(&s);
    }
    wf_sampler s;   /* an empty dataset is an empty epoch everywhere */
    ck_assert_int_eq(wf_distributed_sampler(0, 2, 1, true, 1, false, &s), 0);
    get(&s, 0, out, 0);
    wf_sampler_free(&s);
}
END_TEST

/* every (len, R, shuffle, drop_last): equal to the reference; shards cover the dataset,
 * duplicates only from padding (exactly total_size - len), disjoint with drop_last */
START_TEST(test_cover_disjoint_and_reference) {
    static const int64_t lens[] = { 0, 1, 2, 3, 5, 7, 10, 13, 16, 31 };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int R = 1; R <= 5; R++)
            for (int sh = 0; sh < 2; sh++)
                for (int dl = 0; dl < 2; dl++)
                    for (uint64_t epoch = 0; epoch < 2; epoch++) {
                        int64_t len = lens[li], order[MAXN], ref[MAXN], out[MAXN];
                        int count[MAXN] = { 0 };
                        wf_sampler base;   /* the epoch order every rank must agree on */
                        ck_assert_int_eq(sh ? wf_random_sampler(len, 42, &base) : wf_sequential_sampler(len, &base), 0);
                        get(&base, epoch, order, len);
                        wf_sampler_free(&base);
                        int64_t ns = ref_num_samples(len, R, dl), seen = 0;
                        for (int r = 0; r < R; r++) {
                            wf_sampler s;
                            ck_assert_int_eq(wf_distributed_sampler(len, R, r, sh, 42, dl, &s), 0);
                            get(&s, epoch, out, ns);
                            wf_sampler_free(&s);
                            ref_shard(order, len, R, r, dl, ref);
                            for (int64_t k = 0; k < ns; k++) {
                                ck_assert_msg(out[k] == ref[k], "len %lld R %d rank %d shuffle %d drop_last %d: "
                                              "position %lld is %lld, torch gives %lld", (long long)len, R, r, sh,
                                              dl, (long long)k, (long long)out[k], (long long)ref[k]);
                                ck_assert(out[k] >= 0 && out[k] < len);
                                count[out[k]]++;
                                seen++;
                            }
                        }
                        ck_assert_int_eq(seen, ns * R);
                        int64_t dups = 0, missing = 0;
                        for (int64_t i = 0; i < len; i++) {
                            if (count[i] == 0) missing++;
                            if (count[i] > 1) dups += count[i] - 1;
                            if (dl) ck_assert_int_le(count[i], 1);   /* disjoint */
                        }
                        if (dl) ck_assert_int_eq(missing, len - ns * R);   /* only the cut tail */
                        else {
                            ck_assert_int_eq(missing, 0);
                            ck_assert_int_eq(dups, ns * R - len);
                        }
                    }
}
END_TEST

/* the same (seed, epoch) gives the same order on every rank; epochs and seeds differ;
 * shuffle=false keeps the order */
START_TEST(test_shuffle_is_shared_per_epoch) {
    enum { N = 40, R = 4 };
    int64_t full[3][N], out[N];
    for (int e = 0; e < 3; e++) {
        uint64_t seed = e < 2 ? 7 : 8, epoch = e == 1 ? 1 : 0;
        for (int r = 0; r < R; r++) {
            wf_sampler s, t;   /* two instances per rank: nothing but (seed, epoch) matters */
            ck_assert_int_eq(wf_distributed_sampler(N, R, r, true, seed, false, &s), 0);
            ck_assert_int_eq(wf_distributed_sampler(N, R, r, true, seed, false, &t), 0);
            int64_t again[N];
            get(&t, 9, again, N / R);   /* another epoch first: no hidden state */
            get(&s, epoch, out, N / R);
            get(&t, epoch, again, N / R);
            ck_assert(memcmp(out, again, sizeof(int64_t) * (N / R)) == 0);
            wf_sampler_free(&s);
            wf_sampler_free(&t);
            for (int k = 0; k < N / R; k++) full[e][r + k * R] = out[k];
        }
        bool seen[N] = { false };   /* the ranks' shards interleave into a permutation */
        for (int i = 0; i < N; i++) {
            ck_assert(!seen[full[e][i]]);
            seen[full[e][i]] = true;
        }
    }
    ck_assert(memcmp(full[0], full[1], sizeof full[0]) != 0);   /* another epoch */
    ck_assert(memcmp(full[0], full[2], sizeof full[0]) != 0);   /* another seed */
    /* and it is wf_random_sampler's permutation, which single-process code already uses */
    wf_sampler rs;
    ck_assert_int_eq(wf_random_sampler(N, 7, &rs), 0);
    get(&rs, 1, out, N);
    ck_assert(memcmp(out, full[1], sizeof out) == 0);
    wf_sampler_free(&rs);
    for (int r = 0; r < R; r++) {   /* no shuffle: increasing within a shard, any epoch */
        wf_sampler s;
        ck_assert_int_eq(wf_distributed_sampler(N, R, r, false, 7, false, &s), 0);
        get(&s, 3, out, N / R);
        for (int k = 0; k < N / R; k++) ck_assert_int_eq(out[k], r + k * R);
        wf_sampler_free(&s);
    }
}
END_TEST

/* the wrapper over a subset sampler (Lightning's DistributedSamplerWrapper) */
START_TEST(test_wrap_subset_sampler) {
    static const int64_t sub[5] = { 4, 2, 9, 7, 1 };
    static const int64_t want[2][3] = { { 4, 9, 1 }, { 2, 7, 4 } };
    int64_t out[8];
    for (int r = 0; r < 2; r++) {
        wf_sampler in, s;
        ck_assert_int_eq(wf_subset_sampler(sub, 5, false, 0, &in), 0);
        ck_assert_int_eq(wf_distributed_sampler_wrap(&in, 2, r, false, &s), 0);
        get(&s, 0, out, 3);
        for (int k = 0; k < 3; k++) ck_assert_int_eq(out[k], want[r][k]);
        wf_sampler_free(&s);   /* frees the inner sampler too (ASan: no leak, no double free) */
        ck_assert_int_eq(wf_subset_sampler(sub, 5, false, 0, &in), 0);
        ck_assert_int_eq(wf_distributed_sampler_wrap(&in, 2, r, true, &s), 0);
        get(&s, 0, out, 2);
        for (int k = 0; k < 2; k++) ck_assert_int_eq(out[k], want[r][k]);
        wf_sampler_free(&s);
    }
    /* a shuffling inner sampler: each epoch's inner order, sharded; ranks agree */
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        wf_sampler ref;
        int64_t order[5], full[6];
        ck_assert_int_eq(wf_subset_sampler(sub, 5, true, 11, &ref), 0);
        get(&ref, epoch, order, 5);
        wf_sampler_free(&ref);
        for (int r = 0; r < 3; r++) {
            wf_sampler in, s;
            ck_assert_int_eq(wf_subset_sampler(sub, 5, true, 11, &in), 0);
            ck_assert_int_eq(wf_distributed_sampler_wrap(&in, 3, r, false, &s), 0);
            get(&s, epoch, out, 2);
            for (int k = 0; k < 2; k++) full[r + 3 * k] = out[k];
            wf_sampler_free(&s);
        }
        for (int i = 0; i < 6; i++) ck_assert_int_eq(full[i], order[i % 5]);
    }
}
END_TEST

/* ---------------------------------------------------------------- the loader hook */

static wf_dataset make_ds(int64_t n) {   /* rows [2i, 2i+1], labels i */
    wf_dataset ds;
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(0, (double)(n * 2), 1, WF_F32), (int64_t[]){ n, 2 }, 2);
        wf_tensor *y = wf_arange(0, (double)n, 1, WF_I64);
        wf_tensor *ts[] = { x, y };
        ck_assert_int_eq(wf_tensor_dataset(ts, 2, &ds), 0);
    }
    return ds;
}

/* one epoch's labels in order; *nb = batches, *bmax = largest batch */
static int64_t epoch_labels(wf_dataloader *dl, int64_t *out, int64_t *nb, int64_t *bmax) {
    int64_t n = 0;
    *nb = *bmax = 0;
    wf_tensor *b[2];
    int rc;
    for (;;) {
        wf_scope_begin();
        rc = wf_dataloader_next(dl, b);
        if (rc == 1) {
            int64_t k = wf_size(b[1], 0);
            double v[MAXN], xv[2 * MAXN];
            ck_assert_int_le(k, MAXN);
            wf_to_array(b[1], v, WF_F64);
            wf_to_array(b[0], xv, WF_F64);
            for (int64_t i = 0; i < k; i++) {
                ck_assert_double_eq(xv[2 * i], 2 * v[i]);   /* rows stay with their labels */
                out[n++] = (int64_t)v[i];
            }
            (*nb)++;
            if (k > *bmax) *bmax = k;
        }
        wf_scope_end();
        if (rc != 1) break;
    }
    ck_assert_msg(rc == 0, "%s", wf_error_message());
    return n;
}

/* every rank the same number of batches, whatever the length, world size, batch size and
 * drop_last; the ranks' samples together are the dataset (plus padding) */
START_TEST(test_loader_same_batches_on_every_rank) {
    static const int64_t lens[] = { 1, 7, 10, 13 };
    static const int64_t bss[] = { 1, 3, 4 };
    for (size_t li = 0; li < 4; li++)
        for (int R = 1; R <= 5; R++)
            for (size_t bi = 0; bi < 3; bi++)
                for (int ldl = 0; ldl < 2; ldl++)
                    for (int sh = 0; sh < 2; sh++) {
                        int64_t n = lens[li], bs = bss[bi];
                        int64_t ns = n / R + (n % R != 0);   /* drop_last=false inside, as Lightning */
                        int64_t want_nb = ldl ? ns / bs : (ns + bs - 1) / bs;
                        int64_t full[MAXN], got[MAXN];
                        for (int r = 0; r < R; r++) {
                            wf_dataset ds = make_ds(n);
                            wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){
                                .batch_size = bs, .drop_last = ldl, .shuffle = sh, .seed = 5,
                                .num_workers = (r == 1) ? 2 : 0 });
                            ck_assert_ptr_nonnull(dl);
                            ck_assert_int_eq(wf_dataloader_distribute(dl, R, r), 0);
                            ck_assert_int_eq(wf_dataloader_len(dl), want_nb);
                            int64_t nb, bmax;
                            int64_t k = epoch_labels(dl, got, &nb, &bmax);
                            ck_assert_msg(nb == want_nb, "len %lld R %d rank %d bs %lld drop_last %d: %lld batches, "
                                          "want %lld", (long long)n, R, r, (long long)bs, ldl, (long long)nb,
                                          (long long)want_nb);
                            ck_assert_int_le(bmax, bs);
                            ck_assert_int_eq(k, ldl ? want_nb * bs : ns);
                            for (int64_t i = 0; i < k; i++) full[r + i * R] = got[i];
                            wf_dataloader_free(dl);
                        }
                        if (ldl) continue;
                        /* the interleaved shards are the loader's own epoch order, padded */
                        int64_t order[MAXN];
                        wf_sampler base;
                        ck_assert_int_eq(sh ? wf_random_sampler(n, 5, &base) : wf_sequential_sampler(n, &base), 0);
                        get(&base, 0, order, n);
                        wf_sampler_free(&base);
                        for (int64_t i = 0; i < ns * R; i++) ck_assert_int_eq(full[i], order[i % n]);
                    }
}
END_TEST

/* a custom sampler is wrapped; epochs advance; set_sampler afterwards is a custom sampler */
START_TEST(test_loader_custom_sampler_and_epochs) {
    wf_dataset ds = make_ds(10);
    wf_sampler in;
    ck_assert_int_eq(wf_subset_sampler((int64_t[]){ 8, 6, 4, 2, 0 }, 5, false, 0, &in), 0);
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 2, .sampler = &in });
    ck_assert_ptr_nonnull(dl);
    ck_assert_int_eq(wf_dataloader_distribute(dl, 2, 1), 0);
    ck_assert_int_eq(wf_dataloader_len(dl), 2);
    int64_t got[MAXN], nb, bmax;
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 3);
    ck_assert(got[0] == 6 && got[1] == 2 && got[2] == 8);   /* [6,2] then the padding 8 */
    ck_assert_int_eq(nb, 2);
    /* twice would shard the shard: refused, and the loader is unchanged */
    ck_assert_int_eq(wf_dataloader_distribute(dl, 2, 0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "already distributed");
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 3);
    ck_assert(got[0] == 6 && got[1] == 2 && got[2] == 8);
    wf_dataloader_free(dl);

    /* shuffled default sampler: consecutive epochs differ, set_epoch repeats one */
    wf_dataset d2 = make_ds(12);
    dl = wf_dataloader_new(&d2, &(wf_dataloader_opts){ .batch_size = 4, .shuffle = true, .seed = 9 });
    ck_assert_int_eq(wf_dataloader_distribute(dl, 3, 2), 0);
    int64_t e0[MAXN], e1[MAXN], e0b[MAXN];
    ck_assert_int_eq(epoch_labels(dl, e0, &nb, &bmax), 4);
    ck_assert_int_eq(epoch_labels(dl, e1, &nb, &bmax), 4);
    ck_assert(memcmp(e0, e1, sizeof(int64_t) * 4) != 0);
    ck_assert_int_eq(wf_dataloader_set_epoch(dl, 0), 0);
    ck_assert_int_eq(epoch_labels(dl, e0b, &nb, &bmax), 4);
    ck_assert(memcmp(e0, e0b, sizeof(int64_t) * 4) == 0);
    /* a sampler set afterwards replaces the distributed one and may be distributed again */
    wf_sampler one;
    ck_assert_int_eq(wf_subset_sampler((int64_t[]){ 3, 5, 7 }, 3, false, 0, &one), 0);
    ck_assert_int_eq(wf_dataloader_set_sampler(dl, &one), 0);
    ck_assert_int_eq(wf_dataloader_distribute(dl, 2, 0), 0);
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 2);
    ck_assert(got[0] == 3 && got[1] == 7);
    wf_dataloader_free(dl);
}
END_TEST

static int64_t no_len(void *ud) { (void)ud; return 1; }

START_TEST(test_errors) {
    wf_sampler s, in;
    ck_assert_int_eq(wf_distributed_sampler(10, 0, 0, false, 0, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "num_replicas must be at least 1, got 0");
    ck_assert_int_eq(wf_distributed_sampler(10, 3, 3, false, 0, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "invalid rank 3, rank should be in the interval [0, 2]");
    ck_assert_int_eq(wf_distributed_sampler(10, 3, -1, false, 0, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "invalid rank -1");
    ck_assert_int_eq(wf_distributed_sampler(-4, 3, 0, false, 0, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "negative dataset length -4");
    ck_assert_int_eq(wf_distributed_sampler(10, 3, 0, false, 0, false, NULL), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_distributed_sampler");

    ck_assert_int_eq(wf_distributed_sampler_wrap(NULL, 2, 0, false, &s), WF_ENULL);
    ck_assert_error(WF_ENULL, "NULL sampler");
    wf_sampler half = { no_len, NULL, NULL, NULL };
    ck_assert_int_eq(wf_distributed_sampler_wrap(&half, 2, 0, false, &s), WF_ENULL);
    ck_assert_error(WF_ENULL, "no len or indices");
    /* on failure the inner sampler stays the caller's: freeing it is the caller's job */
    ck_assert_int_eq(wf_sequential_sampler(4, &in), 0);
    ck_assert_int_eq(wf_distributed_sampler_wrap(&in, 2, 2, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_distributed_sampler_wrap: invalid rank 2");
    ck_assert_int_eq(wf_distributed_sampler_wrap(&in, -1, 0, false, &s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "got -1");
    ck_assert_int_eq(wf_distributed_sampler_wrap(&in, 2, 0, false, NULL), WF_ENULL);
    ck_assert_error(WF_ENULL, "NULL output");
    wf_sampler_free(&in);

    ck_assert_int_eq(wf_dataloader_distribute(NULL, 2, 0), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_dataloader_distribute");
    wf_dataset ds = make_ds(6);
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 4 });
    ck_assert_int_eq(wf_dataloader_distribute(dl, 2, 5), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_dataloader_distribute: wf_distributed_sampler: invalid rank 5");
    ck_assert_int_eq(wf_dataloader_distribute(dl, 0, 0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "num_replicas must be at least 1, got 0");
    int64_t got[MAXN], nb, bmax;   /* unchanged: the whole dataset, and it can still be distributed */
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 6);
    ck_assert_int_eq(wf_dataloader_distribute(dl, 2, 1), 0);
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 3);
    ck_assert(got[0] == 1 && got[1] == 3 && got[2] == 5);
    wf_dataloader_free(dl);
    /* a custom sampler with a bad rank stays the loader's (freed with it, once) */
    wf_dataset d2 = make_ds(6);
    ck_assert_int_eq(wf_sequential_sampler(6, &in), 0);
    dl = wf_dataloader_new(&d2, &(wf_dataloader_opts){ .batch_size = 4, .sampler = &in });
    ck_assert_int_eq(wf_dataloader_distribute(dl, 3, 3), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_dataloader_distribute: wf_distributed_sampler_wrap: invalid rank 3");
    ck_assert_int_eq(epoch_labels(dl, got, &nb, &bmax), 6);
    wf_dataloader_free(dl);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_distributed_sampler");
    TCase *tc = tcase_create("distributed_sampler");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pytorch_small_case);
    tcase_add_test(tc, test_cover_disjoint_and_reference);
    tcase_add_test(tc, test_shuffle_is_shared_per_epoch);
    tcase_add_test(tc, test_wrap_subset_sampler);
    tcase_add_test(tc, test_loader_same_batches_on_every_rank);
    tcase_add_test(tc, test_loader_custom_sampler_and_epochs);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
