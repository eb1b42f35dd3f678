/* tests/test_util.h: helpers shared by the Check suites. */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/weft.h"

/* Assert a tensor's values (as doubles, row-major) equal expected within tol. */
#define ck_assert_tensor_near(t, expected, n, tol) do {                                      \
        wf_tensor *ck_t_ = (t);                                                              \
        ck_assert_msg(ck_t_ != NULL, "tensor is NULL: %s", wf_error_message());             \
        ck_assert_int_eq(wf_numel(ck_t_), (n));                                              \
        double *ck_v_ = malloc(sizeof(double) * (size_t)((n) ? (n) : 1));                   \
        ck_assert_int_eq(wf_to_array(ck_t_, ck_v_, WF_F64), 0);                              \
        const double *ck_e_ = (expected);                                                    \
        for (int64_t ck_i_ = 0; ck_i_ < (n); ck_i_++)                                        \
            ck_assert_msg(fabs(ck_v_[ck_i_] - ck_e_[ck_i_]) <= (tol) * (1 + fabs(ck_e_[ck_i_])), \
                          "element %lld: got %.9g expected %.9g", (long long)ck_i_,          \
                          ck_v_[ck_i_], ck_e_[ck_i_]);                                       \
        free(ck_v_);                                                                         \
    } while (0)

/* Assert a shape. */
#define ck_assert_shape(t, ...) do {                                                          \
        const int64_t ck_s_[] = { __VA_ARGS__ };                                             \
        int ck_n_ = (int)(sizeof ck_s_ / sizeof ck_s_[0]);                                   \
        ck_assert_msg((t) != NULL, "tensor is NULL: %s", wf_error_message());               \
        ck_assert_int_eq(wf_ndim(t), ck_n_);                                                 \
        for (int ck_i_ = 0; ck_i_ < ck_n_; ck_i_++) ck_assert_int_eq(wf_shape(t)[ck_i_], ck_s_[ck_i_]); \
    } while (0)

/* Assert the last call failed with code and a message containing text. */
#define ck_assert_error(code, text) do {                                                      \
        ck_assert_msg(wf_error() == (code), "expected %s, got %s (%s)", wf_error_name(code),  \
                      wf_error_name(wf_error()), wf_error_message());                         \
        ck_assert_msg(strstr(wf_error_message(), (text)) != NULL,                             \
                      "message '%s' does not mention '%s'", wf_error_message(), (text));      \
        wf_clear_error();                                                                     \
    } while (0)

/* f64 tensor from a literal list with a shape. */
static inline wf_tensor *tt_f64(const double *v, const int64_t *shape, int nd) {
    return wf_from_data(v, shape, nd, WF_F64);
}

/* An f64 leaf that requires grad, from a literal list. */
static inline wf_tensor *tt_leaf(const double *v, const int64_t *shape, int nd) {
    wf_tensor *t = tt_f64(v, shape, nd);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(wf_set_requires_grad(t, true), 0);
    return t;
}

/* n reproducible values in [-1, 1) from seed (xorshift; independent of weft's RNG). */
/* a leaf on dev holding t's values that requires grad */
static inline wf_tensor *tt_leaf_on(wf_tensor *t, wf_device dev) {
    wf_tensor *l = wf_detach(wf_to_device(t, dev));
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(wf_set_requires_grad(l, true), 0);
    return l;
}
/* a's values within tol of b's */
static inline void tt_assert_close(wf_tensor *a, wf_tensor *b, double tol) {
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    int64_t n = wf_numel(b);
    double *e = malloc(sizeof(double) * (size_t)n);
    ck_assert_int_eq(wf_to_array(b, e, WF_F64), 0);
    ck_assert_tensor_near(a, e, n, tol);
    free(e);
}
static inline void tt_fill(double *v, int64_t n, unsigned seed) {
    uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        v[i] = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
    }
}

/* An f64 leaf that requires grad, filled by tt_fill(seed). */
static inline wf_tensor *tt_rnd_leaf(unsigned seed, const int64_t *shape, int nd) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    tt_fill(v, n, seed);
    wf_tensor *t = tt_leaf(v, shape, nd);
    free(v);
    return t;
}

/* Run a suite and return the process exit code. */
/* A scratch directory for file tests: tt_dir_make(tag) creates $TMPDIR/weft_<tag>_XXXXXX (a
 * Check fixture's setup), tt_dir_remove() deletes it with its files, tt_path(name) names a
 * file in it (four rotating buffers, so a few paths can be held at once). */
static inline char *tt_dir(void) {
    static char d[256];
    return d;
}
static inline void tt_dir_make(const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(tt_dir(), 256, "%s/weft_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    ck_assert_ptr_nonnull(mkdtemp(tt_dir()));
    wf_clear_error();
}
static inline void tt_dir_remove(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tt_dir());
    ck_assert_int_eq(system(cmd), 0);
}
static inline const char *tt_path(const char *name) {
    static char p[4][320];
    static int k;
    k = (k + 1) & 3;
    snprintf(p[k], sizeof p[k], "%s/%s", tt_dir(), name);
    return p[k];
}
/* A whole file, written anew (unlinked first: ext4 flushes a file truncated by O_TRUNC when it
 * is closed, which makes thousands of rewrites slow) or read (malloc'd, the caller frees). */
static inline void tt_write_file(const char *path, const void *p, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}
static inline unsigned char *tt_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static inline int tt_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
