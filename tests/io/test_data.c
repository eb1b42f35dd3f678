/* tests/io/test_data.c: datasets, samplers and the DataLoader (order, batching, workers,
 * reproducible shuffling, errors from workers). */
#include "test_util.h"
#include "weft/data.h"
#include <unistd.h>

static wf_dataset make_ds(int64_t n) {
    wf_dataset ds;
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(0, (double)(n * 2), 1, WF_F32), (int64_t[]){ n, 2 }, 2);
        wf_tensor *y = wf_arange(0, (double)n, 1, WF_I64);
        wf_tensor *ts[] = { x, y };
        ck_assert_int_eq(wf_tensor_dataset(ts, 2, &ds), 0);
    }
    return ds;
}

/* all labels of one epoch, in order */
static int64_t epoch_labels(wf_dataloader *dl, int64_t *out, int64_t *nb) {
    int64_t n = 0;
    *nb = 0;
    wf_tensor *b[2];
    int rc;
    for (;;) {
        wf_scope_begin();
        rc = wf_dataloader_next(dl, b);
        if (rc == 1) {
            int64_t k = wf_size(b[1], 0);
            ck_assert_int_eq(wf_size(b[0], 0), k);
            ck_assert_int_eq(wf_size(b[0], 1), 2);
            double v[64];
            wf_to_array(b[1], v, WF_F64);
            double xv[128];
            wf_to_array(b[0], xv, WF_F64);
            for (int64_t i = 0; i < k; i++) {
                ck_assert_double_eq(xv[2 * i], 2 * v[i]);   /* rows stay with their labels */
                out[n++] = (int64_t)v[i];
            }
            (*nb)++;
        }
        wf_scope_end();
        if (rc != 1) break;
    }
    ck_assert_int_eq(rc, 0);
    return n;
}

START_TEST(test_sequential_batches) {
    wf_dataset ds = make_ds(10);
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 4 });
    ck_assert_ptr_nonnull(dl);
    ck_assert_int_eq(wf_dataloader_len(dl), 3);
    int64_t got[16], nb;
    ck_assert_int_eq(epoch_labels(dl, got, &nb), 10);
    ck_assert_int_eq(nb, 3);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(got[i], i);
    /* the next call starts the next epoch */
    ck_assert_int_eq(epoch_labels(dl, got, &nb), 10);
    wf_dataloader_free(dl);
    wf_dataset ds2 = make_ds(10);
    dl = wf_dataloader_new(&ds2, &(wf_dataloader_opts){ .batch_size = 4, .drop_last = true });
    ck_assert_int_eq(wf_dataloader_len(dl), 2);
    ck_assert_int_eq(epoch_labels(dl, got, &nb), 8);
    wf_dataloader_free(dl);
}
END_TEST

START_TEST(test_shuffle_reproducible_and_workers_agree) {
    int64_t a[64], b[64], c[64], nb;
    wf_dataset d1 = make_ds(50), d2 = make_ds(50);
    wf_dataloader *l1 = wf_dataloader_new(&d1, &(wf_dataloader_opts){ .batch_size = 7, .shuffle = true, .seed = 42 });
    wf_dataloader *l2 = wf_dataloader_new(&d2, &(wf_dataloader_opts){ .batch_size = 7, .shuffle = true, .seed = 42, .num_workers = 3 });
    ck_assert_int_eq(epoch_labels(l1, a, &nb), 50);
    ck_assert_int_eq(epoch_labels(l2, b, &nb), 50);
    bool moved = false, seen[50] = { false };
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(a[i], b[i]);         /* workers change nothing */
        moved = moved || a[i] != i;
        seen[a[i]] = true;
    }
    ck_assert(moved);
    for (int i = 0; i < 50; i++) ck_assert(seen[i]);   /* a permutation */
    /* epoch 1 differs from epoch 0; set_epoch(1) replays it exactly */
    ck_assert_int_eq(epoch_labels(l1, c, &nb), 50);
    ck_assert(memcmp(a, c, sizeof(int64_t) * 50) != 0);
    ck_assert_int_eq(wf_dataloader_set_epoch(l2, 1), 0);
    ck_assert_int_eq(epoch_labels(l2, b, &nb), 50);
    ck_assert(memcmp(b, c, sizeof(int64_t) * 50) == 0);
    /* abandoning an epoch midway with workers running is safe */
    wf_tensor *bt[2];
    WF_SCOPE { ck_assert_int_eq(wf_dataloader_next(l2, bt), 1); }
    ck_assert_int_eq(wf_dataloader_set_epoch(l2, 5), 0);
    wf_dataloader_free(l1);
    wf_dataloader_free(l2);
}
END_TEST

static int64_t bad_len(void *ud) { (void)ud; return 6; }
static int bad_get(void *ud, const int64_t *idx, int64_t n, wf_tensor **out) {
    (void)ud; (void)n;
    if (idx[0] >= 3) return wf_set_error(WF_EIO, "bad_get: sample %lld is unreadable", (long long)idx[0]);
    out[0] = wf_zeros((int64_t[]){ n }, 1, WF_F32);
    return 0;
}

START_TEST(test_errors) {
    wf_dataset bad = { bad_len, 1, bad_get, NULL, NULL };
    wf_dataloader *dl = wf_dataloader_new(&bad, &(wf_dataloader_opts){ .batch_size = 3, .num_workers = 2 });
    wf_tensor *b[1];
    WF_SCOPE { ck_assert_int_eq(wf_dataloader_next(dl, b), 1); }
    ck_assert_int_eq(wf_dataloader_next(dl, b), WF_EIO);   /* the worker's error reaches the caller */
    ck_assert_error(WF_EIO, "sample 3 is unreadable");
    wf_dataloader_free(dl);
    ck_assert_ptr_null(wf_dataloader_new(&bad, &(wf_dataloader_opts){ .batch_size = -1 }));
    ck_assert_error(WF_EINVAL, "batch_size");
    ck_assert_ptr_null(wf_dataloader_new(NULL, NULL));
    ck_assert_error(WF_ENULL, "wf_dataloader_new");
    WF_SCOPE {
        wf_tensor *ts[] = { wf_zeros(WF_SHAPE(3, 2), WF_F32), wf_zeros(WF_SHAPE(4), WF_F32) };
        wf_dataset ds;
        ck_assert_int_eq(wf_tensor_dataset(ts, 2, &ds), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "first dimension");
    }
    wf_dataset ds;
    ck_assert_int_eq(wf_fashion_mnist("/nonexistent", true, 0, 0, &ds), WF_EIO);
    ck_assert_error(WF_EIO, "/nonexistent");
}
END_TEST

START_TEST(test_fashion_mnist_if_installed) {
    wf_dataset ds;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0) return;
    ck_assert_int_eq(wf_fashion_mnist(NULL, false, 0, 0, &ds), 0);
    ck_assert_int_eq(ds.len(ds.ud), 10000);
    wf_tensor *b[2];
    WF_SCOPE {
        ck_assert_int_eq(ds.get_batch(ds.ud, (int64_t[]){ 0, 1 }, 2, b), 0);
        ck_assert_shape(b[0], 2, 1, 28, 28);
        double lab[2];
        wf_to_array(b[1], lab, WF_F64);
        ck_assert_double_eq(lab[0], 9);   /* the first test image is an ankle boot */
        ck_assert_double_eq(lab[1], 2);   /* the second a pullover */
        ck_assert_double_le(wf_item(wf_amax(b[0], WF_ALL_DIMS, false)), 1.0);
        wf_tensor_free(b[0]);
        wf_tensor_free(b[1]);
    }
    wf_dataset_free(&ds);
}
END_TEST


/* samplers and subsets, and swapping a loader's sampler (Fabric's injection point) */
START_TEST(test_samplers_and_subsets) {
    wf_sampler sq, rs, ss;
    int64_t out[8];
    ck_assert_int_eq(wf_sequential_sampler(5, &sq), 0);
    ck_assert_int_eq(sq.len(sq.ud), 5);
    ck_assert_int_eq(sq.indices(sq.ud, 0, out), 0);
    wf_sampler_free(&sq);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(out[i], i);
    ck_assert_int_eq(wf_random_sampler(6, 7, &rs), 0);
    int64_t e0[6], e0b[6];
    rs.indices(rs.ud, 0, e0);
    rs.indices(rs.ud, 0, e0b);
    ck_assert(memcmp(e0, e0b, sizeof e0) == 0);        /* a function of (seed, epoch) only */
    ck_assert_int_eq(wf_subset_sampler((int64_t[]){ 4, 2, 9 }, 3, false, 0, &ss), 0);
    ss.indices(ss.ud, 3, out);
    ck_assert(out[0] == 4 && out[1] == 2 && out[2] == 9);
    wf_sampler_free(&rs);
    wf_sampler_free(&ss);
    ck_assert_int_eq(wf_sequential_sampler(-1, &rs), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "negative");
    ck_assert_int_eq(wf_subset_sampler(NULL, 2, false, 0, &rs), WF_ENULL);
    ck_assert_error(WF_ENULL, "wf_subset_sampler");

    wf_dataset base = make_ds(10), sub, bad;
    ck_assert_int_eq(wf_subset_dataset(&base, (int64_t[]){ 7, 3 }, 2, &sub), 0);
    ck_assert_int_eq(wf_subset_dataset(&base, (int64_t[]){ 10 }, 1, &bad), WF_EINDEX);
    ck_assert_error(WF_EINDEX, "out of range");
    wf_dataloader *dl = wf_dataloader_new(&sub, &(wf_dataloader_opts){ .batch_size = 2 });
    ck_assert_int_eq(wf_dataloader_n_fields(dl), 2);
    int64_t got[4], nb;
    ck_assert_int_eq(epoch_labels(dl, got, &nb), 2);
    ck_assert(got[0] == 7 && got[1] == 3);
    /* replace the sampler: now only the second element, in order */
    wf_sampler one;
    ck_assert_int_eq(wf_subset_sampler((int64_t[]){ 1 }, 1, false, 0, &one), 0);
    ck_assert_int_eq(wf_dataloader_set_sampler(dl, &one), 0);
    ck_assert_int_eq(epoch_labels(dl, got, &nb), 1);
    ck_assert_int_eq(got[0], 3);
    ck_assert_int_eq(wf_dataloader_set_sampler(dl, NULL), WF_ENULL);
    wf_clear_error();
    wf_dataloader_free(dl);
    wf_dataset_free(&base);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_data");
    TCase *tc = tcase_create("data");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sequential_batches);
    tcase_add_test(tc, test_shuffle_reproducible_and_workers_agree);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_samplers_and_subsets);
    tcase_add_test(tc, test_fashion_mnist_if_installed);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
