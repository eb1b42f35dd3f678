/* tests/io/test_uint8_dataset.c: uint8 image datasets normalized per batch give the same f32
 * bits as the old path (the whole dataset converted to f32 with tensor ops, then gathered),
 * directly, through wf_fashion_mnist on small IDX .gz files written here, and through the
 * DataLoader with workers and the distributed sampler; and the Fashion-MNIST loader's
 * errors on bad files. */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>

#include "weft_config.h"
#include "weft/data.h"
#include "weft/io.h"
#ifdef WEFT_HAVE_ZLIB
#include <zlib.h>
#endif

enum { N = 37, H = 5, W = 3 };   /* small, odd sizes: batches end short */
static uint8_t g_pix[N * H * W];
static void setup(void) {
    tt_dir_make("u8ds");
    /* every byte value appears, extremes included */
    for (int i = 0; i < N * H * W; i++) g_pix[i] = (uint8_t)(i * 97 + (i >> 3));
    g_pix[0] = 0;
    g_pix[1] = 255;
    wf_clear_error();
}

static void teardown(void) { tt_dir_remove(); }

/* The old wf_fashion_mnist path: all of it to f32, / 255, then (x - mean) / std. */
static wf_tensor *old_path(wf_tensor *u8, double mean, double std) {
    wf_tensor *x = wf_div_scalar(wf_to_dtype(u8, WF_F32), 255.0);
    if (std > 0) x = wf_div_scalar(wf_sub_scalar(x, mean), std);
    return x;
}

/* rows of a contiguous f32 tensor compared as bits */
static void assert_same_bits(wf_tensor *a, wf_tensor *b) {
    ck_assert_int_eq(wf_tensor_dtype(a), WF_F32);
    ck_assert_int_eq(wf_tensor_dtype(b), WF_F32);
    ck_assert_int_eq(wf_numel(a), wf_numel(b));
    int64_t n = wf_numel(a);
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1)), *y = malloc(sizeof(float) * (size_t)(n ? n : 1));
    wf_to_array(a, x, WF_F32);
    wf_to_array(b, y, WF_F32);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(!memcmp(&x[i], &y[i], sizeof(float)), "element %lld: %.9g vs %.9g", (long long)i, x[i], y[i]);
    free(x);
    free(y);
}

START_TEST(test_normalize_all_bytes) {
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    const double ms[][2] = { { 0.2860, 0.3530 }, { 0.1307, 0.3081 }, { 0.5, 0.5 }, { 0, 0 }, { -3.25, 7.5 } };
    WF_SCOPE {
        wf_tensor *u = wf_from_data(all, WF_SHAPE(16, 16), WF_U8);
        for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            wf_tensor *y = wf_normalize_uint8(u, ms[k][0], ms[k][1]);
            ck_assert_ptr_nonnull(y);
            ck_assert_shape(y, 16, 16);
            assert_same_bits(y, old_path(u, ms[k][0], ms[k][1]));
        }
        /* a strided view is read through its strides */
        wf_tensor *t = wf_transpose(u, 0, 1);
        assert_same_bits(wf_normalize_uint8(t, 0.5, 0.25), old_path(t, 0.5, 0.25));
    }
}
END_TEST

START_TEST(test_dataset_matches_old_path) {
    WF_SCOPE {
        wf_tensor *img = wf_from_data(g_pix, WF_SHAPE(N, 1, H, W), WF_U8);
        wf_tensor *lab = wf_arange(0, N, 1, WF_I64);
        wf_dataset ds;
        ck_assert_int_eq(wf_uint8_image_dataset(img, lab, 0.2860, 0.3530, &ds), 0);
        ck_assert_int_eq(ds.n_fields, 2);
        ck_assert_int_eq(ds.len(ds.ud), N);
        wf_tensor *ref = old_path(img, 0.2860, 0.3530);
        const int64_t idx[] = { 36, 0, 5, 5, 17, 1 };
        wf_tensor *b[2];
        ck_assert_int_eq(ds.get_batch(ds.ud, idx, 6, b), 0);
        ck_assert_shape(b[0], 6, 1, H, W);
        assert_same_bits(b[0], wf_index_select(ref, 0, wf_from_data(idx, WF_SHAPE(6), WF_I64)));
        double l[6];
        wf_to_array(b[1], l, WF_F64);
        for (int i = 0; i < 6; i++) ck_assert_double_eq(l[i], (double)idx[i]);
        wf_tensor_free(b[0]);
        wf_tensor_free(b[1]);
        /* an empty batch, and an index outside the dataset */
        ck_assert_int_eq(ds.get_batch(ds.ud, idx, 0, b), 0);
        ck_assert_int_eq(wf_numel(b[0]), 0);
        wf_tensor_free(b[0]);
        wf_tensor_free(b[1]);
        ck_assert_int_eq(ds.get_batch(ds.ud, (int64_t[]){ 3, N }, 2, b), WF_EINDEX);
        ck_assert_error(WF_EINDEX, "index 37 out of range for 37 samples");
        ck_assert_int_eq(ds.get_batch(ds.ud, (int64_t[]){ -1 }, 1, b), WF_EINDEX);
        wf_dataset_free(&ds);
        /* images only, no normalization */
        ck_assert_int_eq(wf_uint8_image_dataset(img, NULL, 0, 0, &ds), 0);
        ck_assert_int_eq(ds.n_fields, 1);
        ck_assert_int_eq(ds.get_batch(ds.ud, (int64_t[]){ 2 }, 1, b), 0);
        assert_same_bits(b[0], wf_select(old_path(img, 0, 0), 0, 2));
        wf_tensor_free(b[0]);
        wf_dataset_free(&ds);
    }
}
END_TEST

START_TEST(test_dataset_errors) {
    WF_SCOPE {
        wf_dataset ds;
        wf_tensor *img = wf_from_data(g_pix, WF_SHAPE(N, H * W), WF_U8);
        ck_assert_int_eq(wf_uint8_image_dataset(NULL, NULL, 0, 0, &ds), WF_ENULL);
        ck_assert_int_eq(wf_uint8_image_dataset(img, NULL, 0, 0, NULL), WF_ENULL);
        ck_assert_int_eq(wf_uint8_image_dataset(wf_to_dtype(img, WF_F32), NULL, 0, 0, &ds), WF_EDTYPE);
        ck_assert_error(WF_EDTYPE, "must be uint8");
        ck_assert_int_eq(wf_uint8_image_dataset(img, wf_zeros(WF_SHAPE(N - 1), WF_I64), 0, 0, &ds), WF_ESHAPE);
        ck_assert_error(WF_ESHAPE, "size mismatch between images [37,15] and targets [36]");
        ck_assert_int_eq(wf_uint8_image_dataset(img, NULL, 0.5, -1, &ds), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "std -1");
        ck_assert_int_eq(wf_uint8_image_dataset(img, NULL, NAN, 1, &ds), WF_EINVAL);
        ck_assert_ptr_null(wf_normalize_uint8(wf_to_dtype(img, WF_I64), 0, 1));
        ck_assert_error(WF_EDTYPE, "wf_normalize_uint8");
    }
}
END_TEST

/* the same batches, in the same order, whatever the number of workers; every row is the old
 * path's row for its label (labels are the sample numbers) */
static void check_loader(const wf_dataset *src, int workers, int replicas, int rank, wf_tensor *ref, int64_t *seen) {
    wf_dataset ds = *src;
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 8, .shuffle = true, .seed = 7,
                                                                       .num_workers = workers });
    ck_assert_ptr_nonnull(dl);
    if (replicas > 1) ck_assert_int_eq(wf_dataloader_distribute(dl, replicas, rank), 0);
    wf_tensor *b[2];
    int rc;
    for (int epoch = 0; epoch < 2; epoch++) {
        while ((rc = wf_dataloader_next(dl, b)) == 1) {
            WF_SCOPE {
                int64_t n = wf_size(b[1], 0);
                assert_same_bits(b[0], wf_index_select(ref, 0, b[1]));
                double l[8];
                wf_to_array(b[1], l, WF_F64);
                for (int64_t i = 0; i < n; i++) seen[epoch * N + (int64_t)l[i]]++;
            }
            wf_tensor_free(b[0]);
            wf_tensor_free(b[1]);
        }
        ck_assert_int_eq(rc, 0);
    }
    /* the loader owned a copy of the dataset struct: hand it a no-op free */
    wf_dataloader_free(dl);
}

static void noop_free(void *ud) { (void)ud; }

START_TEST(test_loader_workers_and_distributed) {
    wf_tensor *img, *ref;
    wf_dataset ds;
    WF_SCOPE {
        img = wf_from_data(g_pix, WF_SHAPE(N, 1, H, W), WF_U8);
        ck_assert_int_eq(wf_uint8_image_dataset(img, wf_arange(0, N, 1, WF_I64), 0.2860, 0.3530, &ds), 0);
        ref = wf_keep(old_path(img, 0.2860, 0.3530));
    }
    wf_dataset shared = ds;
    shared.free = noop_free;
    for (int w = 0; w <= 2; w++) {
        int64_t seen[2 * N] = { 0 };
        check_loader(&shared, w, 1, 0, ref, seen);
        for (int i = 0; i < 2 * N; i++) ck_assert_int_eq(seen[i], 1);   /* each sample once per epoch */
    }
    /* three ranks: together they cover every sample each epoch (39 = 37 + 2 repeated) */
    int64_t seen[2 * N] = { 0 };
    for (int r = 0; r < 3; r++) check_loader(&shared, r == 1 ? 2 : 0, 3, r, ref, seen);
    int64_t total = 0;
    for (int i = 0; i < 2 * N; i++) { ck_assert_int_ge(seen[i], 1); total += seen[i]; }
    ck_assert_int_eq(total, 2 * 39);
    wf_tensor_free(ref);
    wf_dataset_free(&ds);
}
END_TEST

#ifdef WEFT_HAVE_ZLIB
static void write_gz(const char *name, int type, int ndim, const uint32_t *dims, const void *data, size_t n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tt_dir(), name);
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    unsigned char hdr[4 + 4 * 8] = { 0, 0, (unsigned char)type, (unsigned char)ndim };
    for (int i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++) hdr[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    ck_assert_int_eq(gzwrite(g, hdr, (unsigned)(4 + 4 * ndim)), 4 + 4 * ndim);
    if (n) ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static void write_split(const char *split, int n_img, int n_lab) {
    char name[128];
    uint8_t lab[N];
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(i % 10);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    write_gz(name, 0x08, 3, (const uint32_t[]){ (uint32_t)n_img, H, W }, g_pix, (size_t)n_img * H * W);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    write_gz(name, 0x08, 1, (const uint32_t[]){ (uint32_t)n_lab }, lab, (size_t)n_lab);
}

START_TEST(test_fashion_mnist_files_match_old_path) {
    write_split("train", N, N);
    write_split("t10k", 4, 4);
    for (int norm = 0; norm < 2; norm++) {
        double mean = norm ? 0.2860 : 0, std = norm ? 0.3530 : 0;
        wf_dataset ds;
        ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, mean, std, &ds), 0);
        ck_assert_int_eq(ds.len(ds.ud), N);
        WF_SCOPE {
            char p[400];
            snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", tt_dir());
            wf_tensor *ref = wf_reshape(old_path(wf_idx_load(p), mean, std), WF_SHAPE(N, 1, H, W));
            int64_t all[N];
            for (int i = 0; i < N; i++) all[i] = N - 1 - i;
            wf_tensor *b[2];
            ck_assert_int_eq(ds.get_batch(ds.ud, all, N, b), 0);
            ck_assert_shape(b[0], N, 1, H, W);
            ck_assert_int_eq(wf_tensor_dtype(b[1]), WF_I64);
            assert_same_bits(b[0], wf_index_select(ref, 0, wf_from_data(all, WF_SHAPE(N), WF_I64)));
            double l[N];
            wf_to_array(b[1], l, WF_F64);
            for (int i = 0; i < N; i++) ck_assert_double_eq(l[i], (double)((N - 1 - i) % 10));
            wf_tensor_free(b[0]);
            wf_tensor_free(b[1]);
        }
        wf_dataset_free(&ds);
    }
    wf_dataset ds;
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), false, 0, 0, &ds), 0);
    ck_assert_int_eq(ds.len(ds.ud), 4);
    wf_dataset_free(&ds);
}
END_TEST

START_TEST(test_fashion_mnist_bad_files) {
    wf_dataset ds;
    char p[400];
    /* mismatched counts */
    write_split("train", N, N - 2);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_msg(strstr(wf_error_message(), "train-labels-idx1-ubyte.gz"), "%s", wf_error_message());
    ck_assert_error(WF_ECORRUPT, "do not hold N images of HxW bytes and N labels");
    /* wrong magic in the images */
    write_split("train", N, N);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", tt_dir());
    gzFile g = gzopen(p, "wb");
    ck_assert_int_eq(gzwrite(g, "\x01\x02\x08\x03", 4), 4);
    gzclose(g);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_msg(strstr(wf_error_message(), p), "%s", wf_error_message());
    ck_assert_error(WF_ECORRUPT, "bad magic 0x01020803");
    /* images of the wrong rank (labels as images) */
    write_gz("train-images-idx3-ubyte.gz", 0x08, 1, (const uint32_t[]){ N }, g_pix, N);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "do not hold N images");
    /* the gzip file cut short: its data ends early */
    write_split("train", N, N);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_int_gt(n, 60);
    f = fopen(p, "wb");
    ck_assert_int_eq(fwrite(buf, 1, n / 2, f), n / 2);
    fclose(f);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_msg(strstr(wf_error_message(), p), "message '%s' does not name the file", wf_error_message());
    /* a stream whose data ends before its dims say: how much there was */
    write_gz("train-images-idx3-ubyte.gz", 0x08, 3, (const uint32_t[]){ N, H, W }, g_pix, 100);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "need 555 bytes, the stream has 100");
    /* trailing bytes after the data */
    write_gz("train-images-idx3-ubyte.gz", 0x08, 3, (const uint32_t[]){ N - 1, H, W }, g_pix, N * H * W);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "trailing bytes");
    /* no images, yet bytes after the header: still checked */
    write_gz("train-images-idx3-ubyte.gz", 0x08, 3, (const uint32_t[]){ 0, H, W }, g_pix, 3);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "trailing bytes after the 0 data bytes");
    /* a missing file */
    remove(p);
    ck_assert_int_eq(wf_fashion_mnist(tt_dir(), true, 0, 0, &ds), WF_EIO);
    ck_assert_error(WF_EIO, "train-images-idx3-ubyte.gz");
}
END_TEST
#endif

static Suite *suite(void) {
    Suite *s = suite_create("io_uint8_dataset");
    TCase *tc = tcase_create("uint8_dataset");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_normalize_all_bytes);
    tcase_add_test(tc, test_dataset_matches_old_path);
    tcase_add_test(tc, test_dataset_errors);
    tcase_add_test(tc, test_loader_workers_and_distributed);
#ifdef WEFT_HAVE_ZLIB
    tcase_add_test(tc, test_fashion_mnist_files_match_old_path);
    tcase_add_test(tc, test_fashion_mnist_bad_files);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
