/* tests/tensor/test_index.c: gather, scatter_add, index_select, embedding, cat, stack,
 * split, chunk: worked values, shapes, gradients (gradcheck) and bad inputs. */
#include "test_util.h"

static wf_tensor *i64s(const int64_t *v, const int64_t *shape, int nd) { return wf_from_data(v, shape, nd, WF_I64); }

static wf_tensor *leaf(const double *v, const int64_t *shape, int nd) {
    wf_tensor *t = tt_f64(v, shape, nd);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(wf_set_requires_grad(t, true), 0);
    return t;
}

static wf_tensor *leaf_seq(const int64_t *shape, int nd, double scale) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = sin(scale * (double)i + 0.3);
    wf_tensor *t = leaf(v, shape, nd);
    free(v);
    return t;
}

#define GRADCHECK(fn, ins, n, ud)                                                              \
    ck_assert_msg(wf_gradcheck(fn, ins, n, ud, 1e-6, 1e-7, 1e-5) == 0, "%s: %s", #fn, wf_error_message())

/* ---------------------------------------------------------------- gather / scatter_add */

START_TEST(gather_values) {
    WF_SCOPE {
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3, 4 }, WF_SHAPE(2, 2));
        wf_tensor *i1 = i64s((int64_t[]){ 0, 0, 1, 0 }, WF_SHAPE(2, 2));
        wf_tensor *y = wf_gather(x, 1, i1);
        ck_assert_shape(y, 2, 2);
        ck_assert_tensor_near(y, ((double[]){ 1, 1, 4, 3 }), 4, 0);
        wf_tensor *i0 = i64s((int64_t[]){ 0, 1, 1, 0 }, WF_SHAPE(2, 2));
        ck_assert_tensor_near(wf_gather(x, 0, i0), ((double[]){ 1, 4, 3, 2 }), 4, 0);
        /* int32 index, smaller than x in the other dim: x [3,3], index [2,1] on dim 1 */
        wf_tensor *x3 = tt_f64((double[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, WF_SHAPE(3, 3));
        int32_t iv[] = { 2, 0 };
        wf_tensor *i32 = wf_from_data(iv, WF_SHAPE(2, 1), WF_I32);
        wf_tensor *y3 = wf_gather(x3, -1, i32);
        ck_assert_shape(y3, 2, 1);
        ck_assert_tensor_near(y3, ((double[]){ 3, 4 }), 2, 0);
        /* transposed (non-contiguous) x: xt = [[1,4,7],[2,5,8],[3,6,9]] */
        wf_tensor *xt = wf_transpose(x3, 0, 1);
        wf_tensor *i2 = i64s((int64_t[]){ 2, 1, 0, 0, 0, 0 }, WF_SHAPE(2, 3));
        ck_assert_tensor_near(wf_gather(xt, 0, i2), ((double[]){ 3, 5, 7, 1, 4, 7 }), 6, 0);
        /* f32 data */
        wf_tensor *xf = wf_to_dtype(x, WF_F32);
        ck_assert_tensor_near(wf_gather(xf, 1, i1), ((double[]){ 1, 1, 4, 3 }), 4, 0);
    }
}
END_TEST

START_TEST(scatter_add_values) {
    WF_SCOPE {
        /* torch docs: zeros(3,5).scatter_add_(0, [[0,1,2,0,0]], ones(2,5)) */
        wf_tensor *x = wf_zeros(WF_SHAPE(3, 5), WF_F64);
        wf_tensor *src = wf_ones(WF_SHAPE(2, 5), WF_F64);
        wf_tensor *idx = i64s((int64_t[]){ 0, 1, 2, 0, 0 }, WF_SHAPE(1, 5));
        wf_tensor *y = wf_scatter_add(x, 0, idx, src);
        ck_assert_shape(y, 3, 5);
        ck_assert_tensor_near(y, ((double[]){ 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0 }), 15, 0);
        /* repeated indices accumulate; x is not modified */
        wf_tensor *idx2 = i64s((int64_t[]){ 0, 1, 2, 0, 0, 2, 0, 0, 0, 0 }, WF_SHAPE(2, 5));
        wf_tensor *y2 = wf_scatter_add(x, 0, idx2, src);
        ck_assert_tensor_near(y2, ((double[]){ 1, 1, 1, 2, 2, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0 }), 15, 0);
        ck_assert_double_eq(wf_item(wf_sum_all(x)), 0);
        /* along dim 1 with a base */
        wf_tensor *b = tt_f64((double[]){ 10, 20, 30, 40 }, WF_SHAPE(2, 2));
        wf_tensor *s = tt_f64((double[]){ 1, 2, 3, 4, 5, 6 }, WF_SHAPE(2, 3));
        int32_t iv[] = { 1, 1, 0, 0, 1, 0 };
        wf_tensor *i = wf_from_data(iv, WF_SHAPE(2, 3), WF_I32);
        ck_assert_tensor_near(wf_scatter_add(b, 1, i, s), ((double[]){ 13, 23, 40, 45 }), 4, 0);
        /* integer data */
        wf_tensor *bi = wf_zeros(WF_SHAPE(3), WF_I64);
        wf_tensor *si = i64s((int64_t[]){ 5, 6, 7 }, WF_SHAPE(3));
        wf_tensor *ii = i64s((int64_t[]){ 2, 2, 0 }, WF_SHAPE(3));
        ck_assert_tensor_near(wf_scatter_add(bi, 0, ii, si), ((double[]){ 7, 0, 11 }), 3, 0);
    }
}
END_TEST

static wf_tensor *gather_t_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    return wf_gather(wf_transpose(in[0], 0, 1), 0, ud);
}
typedef struct { wf_tensor *index; int dim; } sa_args;
static wf_tensor *scatter_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    sa_args *a = ud;
    return wf_scatter_add(in[0], a->dim, a->index, in[1]);
}

START_TEST(gather_scatter_gradcheck) {
    WF_SCOPE {
        /* gather along dim 1 is an op harness row; here dim 0 of a transposed x */
        wf_tensor *x = leaf_seq(WF_SHAPE(3, 4), 0.7);
        /* transposed x: [4,3], index on dim 0 in [0,4) */
        wf_tensor *it = i64s((int64_t[]){ 3, 0, 1, 2, 2, 2 }, WF_SHAPE(2, 3));
        GRADCHECK(gather_t_fn, &x, 1, it);

        /* scatter_add: gradients for both x and src, src larger than index */
        wf_tensor *base = leaf_seq(WF_SHAPE(3, 4), 0.4);
        wf_tensor *src = leaf_seq(WF_SHAPE(3, 5), 0.9);
        sa_args a = { i64s((int64_t[]){ 0, 2, 2, 1, 0, 0, 1, 1 }, WF_SHAPE(2, 4)), 0 };
        wf_tensor *ins[2] = { base, src };
        GRADCHECK(scatter_fn, ins, 2, &a);
        sa_args a1 = { i64s((int64_t[]){ 3, 3, 0, 1, 2, 3 }, WF_SHAPE(3, 2)), 1 };
        GRADCHECK(scatter_fn, ins, 2, &a1);
    }
}
END_TEST

/* ---------------------------------------------------------------- index_select / embedding */

START_TEST(index_select_values) {
    WF_SCOPE {
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, WF_SHAPE(3, 3));
        wf_tensor *y0 = wf_index_select(x, 0, i64s((int64_t[]){ 2, 0 }, WF_SHAPE(2)));
        ck_assert_shape(y0, 2, 3);
        ck_assert_tensor_near(y0, ((double[]){ 7, 8, 9, 1, 2, 3 }), 6, 0);
        int32_t iv[] = { 1, 1 };
        wf_tensor *y1 = wf_index_select(x, -1, wf_from_data(iv, WF_SHAPE(2), WF_I32));
        ck_assert_shape(y1, 3, 2);
        ck_assert_tensor_near(y1, ((double[]){ 2, 2, 5, 5, 8, 8 }), 6, 0);
        /* non-contiguous x, 0-d index */
        wf_tensor *y2 = wf_index_select(wf_transpose(x, 0, 1), 0, i64s((int64_t[]){ 2 }, NULL, 0));
        ck_assert_shape(y2, 1, 3);
        ck_assert_tensor_near(y2, ((double[]){ 3, 6, 9 }), 3, 0);
        /* empty index */
        wf_tensor *y3 = wf_index_select(x, 1, wf_zeros(WF_SHAPE(0), WF_I64));
        ck_assert_shape(y3, 3, 0);
    }
}
END_TEST

START_TEST(embedding_values) {
    WF_SCOPE {
        wf_tensor *w = leaf((double[]){ 0, 1, 2, 3, 4, 5, 6, 7 }, WF_SHAPE(4, 2));
        wf_tensor *ids = i64s((int64_t[]){ 1, 3, 1, 0 }, WF_SHAPE(2, 2));
        wf_tensor *y = wf_embedding(w, ids);
        ck_assert_shape(y, 2, 2, 2);
        ck_assert_str_eq(wf_grad_fn_name(y), "EmbeddingBackward");
        ck_assert_tensor_near(y, ((double[]){ 2, 3, 6, 7, 2, 3, 0, 1 }), 8, 0);
        /* gradient of sum: row counts (row 1 twice, row 2 never) */
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 1, 1, 2, 2, 0, 0, 1, 1 }), 8, 0);
        /* 1-D int32 indices, f32 weight */
        wf_tensor *wf = wf_to_dtype(w, WF_F32);
        int32_t iv[] = { 3, 3, 2 };
        wf_tensor *y1 = wf_embedding(wf, wf_from_data(iv, WF_SHAPE(3), WF_I32));
        ck_assert_shape(y1, 3, 2);
        ck_assert_tensor_near(y1, ((double[]){ 6, 7, 6, 7, 4, 5 }), 6, 0);
        /* non-contiguous indices */
        wf_tensor *idt = wf_transpose(ids, 0, 1);   /* [[1,1],[3,0]] */
        ck_assert_tensor_near(wf_embedding(wf, idt), ((double[]){ 2, 3, 2, 3, 6, 7, 0, 1 }), 8, 0);

        /* large enough for the threaded path: row r of the result is weight row ids[r] */
        const int64_t N = 20000, V = 97, D = 8;
        wf_tensor *wb = wf_reshape(wf_arange(0, (double)(V * D), 1, WF_F32), WF_SHAPE(V, D));
        int64_t *iv64 = malloc(sizeof(int64_t) * (size_t)N);
        for (int64_t r = 0; r < N; r++) iv64[r] = (r * 31) % V;
        wf_tensor *yb = wf_embedding(wb, wf_from_data(iv64, &N, 1, WF_I64));
        ck_assert_shape(yb, N, D);
        float *out = wf_data_ptr(yb);
        for (int64_t r = 0; r < N; r++)
            for (int64_t c = 0; c < D; c++) ck_assert(out[r * D + c] == (float)(iv64[r] * D + c));
        free(iv64);
    }
}
END_TEST

static wf_tensor *index_select_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    sa_args *a = ud;
    return wf_index_select(in[0], a->dim, a->index);
}

START_TEST(index_select_embedding_gradcheck) {
    WF_SCOPE {
        /* index_select(dim 0) and embedding with a 2-d index are op harness rows */
        wf_tensor *x = leaf_seq(WF_SHAPE(3, 4), 0.8);
        sa_args a1 = { i64s((int64_t[]){ 3, 1, 3 }, WF_SHAPE(3)), 1 };
        GRADCHECK(index_select_fn, &x, 1, &a1);
    }
}
END_TEST

/* ---------------------------------------------------------------- cat / stack */

START_TEST(cat_stack_values) {
    WF_SCOPE {
        wf_tensor *a = tt_f64((double[]){ 1, 2 }, WF_SHAPE(2, 1));
        wf_tensor *b = tt_f64((double[]){ 3, 4, 5, 6 }, WF_SHAPE(2, 2));
        wf_tensor *c = tt_f64((double[]){ 7, 8, 9, 10, 11, 12 }, WF_SHAPE(2, 3));
        wf_tensor *y = wf_cat((wf_tensor *[]){ a, b, c }, 3, 1);
        ck_assert_shape(y, 2, 6);
        ck_assert_tensor_near(y, ((double[]){ 1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12 }), 12, 0);
        wf_tensor *y0 = wf_cat((wf_tensor *[]){ b, b }, 2, -2);
        ck_assert_shape(y0, 4, 2);
        ck_assert_tensor_near(y0, ((double[]){ 3, 4, 5, 6, 3, 4, 5, 6 }), 8, 0);
        /* mixed dtypes promote; transposed input; an empty piece */
        wf_tensor *bf = wf_to_dtype(b, WF_F32);
        wf_tensor *e = wf_zeros(WF_SHAPE(2, 0), WF_F32);
        wf_tensor *y2 = wf_cat((wf_tensor *[]){ bf, e, wf_transpose(b, 0, 1) }, 3, 1);
        ck_assert_shape(y2, 2, 4);
        ck_assert_int_eq(wf_tensor_dtype(y2), WF_F64);
        ck_assert_tensor_near(y2, ((double[]){ 3, 4, 3, 5, 5, 6, 4, 6 }), 8, 0);
        /* single tensor */
        ck_assert_tensor_near(wf_cat(&c, 1, 0), ((double[]){ 7, 8, 9, 10, 11, 12 }), 6, 0);

        wf_tensor *p = tt_f64((double[]){ 1, 2 }, WF_SHAPE(2));
        wf_tensor *q = tt_f64((double[]){ 3, 4 }, WF_SHAPE(2));
        wf_tensor *r = tt_f64((double[]){ 5, 6 }, WF_SHAPE(2));
        wf_tensor *s0 = wf_stack((wf_tensor *[]){ p, q, r }, 3, 0);
        ck_assert_shape(s0, 3, 2);
        ck_assert_tensor_near(s0, ((double[]){ 1, 2, 3, 4, 5, 6 }), 6, 0);
        wf_tensor *s1 = wf_stack((wf_tensor *[]){ p, q, r }, 3, -1);
        ck_assert_shape(s1, 2, 3);
        ck_assert_tensor_near(s1, ((double[]){ 1, 3, 5, 2, 4, 6 }), 6, 0);
        wf_tensor *sb = wf_stack((wf_tensor *[]){ b, wf_transpose(b, 0, 1) }, 2, 1);
        ck_assert_shape(sb, 2, 2, 2);
        ck_assert_tensor_near(sb, ((double[]){ 3, 4, 3, 5, 5, 6, 4, 6 }), 8, 0);
        /* 0-d tensors stack to 1-D */
        wf_tensor *s2 = wf_stack((wf_tensor *[]){ wf_scalar(1, WF_F64), wf_scalar(2, WF_F64) }, 2, 0);
        ck_assert_shape(s2, 2);
        ck_assert_tensor_near(s2, ((double[]){ 1, 2 }), 2, 0);
    }
}
END_TEST

static wf_tensor *cat_fn(wf_tensor *const *in, int n, void *ud) {
    return wf_cat(in, n, *(int *)ud);
}
static wf_tensor *stack_fn(wf_tensor *const *in, int n, void *ud) {
    return wf_stack(in, n, *(int *)ud);
}
static wf_tensor *split_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n; (void)ud;
    wf_tensor *p[4];
    int k = wf_split(in[0], 2, 1, p, 4);   /* [3,5] -> 2,2,1 */
    if (k != 3) return NULL;
    wf_tensor *q[3] = { p[2], wf_mul(p[0], p[0]), p[1] };
    return wf_cat(q, 3, 1);
}

START_TEST(cat_stack_gradcheck) {
    WF_SCOPE {
        wf_tensor *ins[3] = { leaf_seq(WF_SHAPE(2, 1), 0.5), leaf_seq(WF_SHAPE(2, 3), 0.7),
                              leaf_seq(WF_SHAPE(2, 2), 1.1) };
        int d1 = 1, dm = -1;
        GRADCHECK(cat_fn, ins, 3, &d1);
        wf_tensor *same[3] = { leaf_seq(WF_SHAPE(2, 3), 0.5), leaf_seq(WF_SHAPE(2, 3), 0.7),
                               leaf_seq(WF_SHAPE(2, 3), 1.1) };
        /* cat and stack along dim 0 are op harness rows */
        GRADCHECK(stack_fn, same, 3, &d1);
        GRADCHECK(stack_fn, same, 3, &dm);
        wf_tensor *x = leaf_seq(WF_SHAPE(3, 5), 0.3);
        GRADCHECK(split_fn, &x, 1, NULL);
    }
}
END_TEST

/* ---------------------------------------------------------------- split / chunk */

START_TEST(split_chunk) {
    WF_SCOPE {
        wf_tensor *x = wf_arange(0, 10, 1, WF_F32);
        wf_tensor *p[8];
        ck_assert_int_eq(wf_split(x, 3, 0, p, 8), 4);
        ck_assert_shape(p[0], 3);
        ck_assert_shape(p[3], 1);
        ck_assert_tensor_near(p[1], ((double[]){ 3, 4, 5 }), 3, 0);
        ck_assert_tensor_near(p[3], ((double[]){ 9 }), 1, 0);
        /* pieces are views of x */
        ck_assert_ptr_eq(wf_data_ptr(p[1]), (float *)wf_data_ptr(x) + 3);
        ck_assert_int_eq(wf_split(x, 10, 0, p, 8), 1);
        ck_assert_int_eq(wf_split(x, 20, -1, p, 8), 1);
        ck_assert_shape(p[0], 10);

        ck_assert_int_eq(wf_chunk(x, 4, 0, p, 8), 4);   /* 3,3,3,1 */
        ck_assert_shape(p[3], 1);
        wf_tensor *six = wf_arange(0, 6, 1, WF_F32);
        ck_assert_int_eq(wf_chunk(six, 4, 0, p, 8), 3); /* 2,2,2 (as torch) */
        ck_assert_tensor_near(p[2], ((double[]){ 4, 5 }), 2, 0);
        ck_assert_int_eq(wf_chunk(six, 3, 0, p, 8), 3);
        ck_assert_int_eq(wf_chunk(six, 8, 0, p, 8), 6);

        wf_tensor *m = wf_reshape(wf_arange(0, 12, 1, WF_F32), WF_SHAPE(3, 4));
        ck_assert_int_eq(wf_chunk(m, 2, 1, p, 8), 2);
        ck_assert_shape(p[1], 3, 2);
        ck_assert_tensor_near(p[1], ((double[]){ 2, 3, 6, 7, 10, 11 }), 6, 0);
        ck_assert_int_eq(wf_split(m, 2, 0, p, 8), 2);
        ck_assert_shape(p[0], 2, 4);
        ck_assert_shape(p[1], 1, 4);

        /* empty dim */
        wf_tensor *e = wf_zeros(WF_SHAPE(0, 2), WF_F32);
        ck_assert_int_eq(wf_chunk(e, 3, 0, p, 8), 3);
        ck_assert_shape(p[2], 0, 2);
        ck_assert_int_eq(wf_split(e, 2, 0, p, 8), 1);

        /* errors */
        ck_assert_int_eq(wf_split(x, 3, 0, p, 2), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "wf_split");
        ck_assert_int_eq(wf_split(x, 0, 0, p, 8), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "wf_split");
        ck_assert_int_eq(wf_chunk(x, 0, 0, p, 8), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "wf_chunk");
        ck_assert_int_eq(wf_chunk(x, 2, 1, p, 8), WF_EINDEX);
        ck_assert_error(WF_EINDEX, "wf_chunk");
        ck_assert_int_eq(wf_split(NULL, 2, 0, p, 8), WF_ENULL);
        ck_assert_error(WF_ENULL, "wf_split");
        ck_assert_int_eq(wf_chunk(x, 2, 0, NULL, 8), WF_ENULL);
        ck_assert_error(WF_ENULL, "wf_chunk");
    }
}
END_TEST

/* ---------------------------------------------------------------- bad inputs */

START_TEST(bad_inputs) {
    WF_SCOPE {
        wf_clear_error();
        wf_tensor *x = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        wf_tensor *ok = i64s((int64_t[]){ 0, 1, 2, 0, 1, 2 }, WF_SHAPE(2, 3));
        wf_tensor *big = i64s((int64_t[]){ 0, 1, 5, 0, 1, 2 }, WF_SHAPE(2, 3));
        wf_tensor *neg = i64s((int64_t[]){ 0, -1 }, WF_SHAPE(2));
        wf_tensor *fidx = wf_zeros(WF_SHAPE(2, 3), WF_F32);

        ck_assert_ptr_null(wf_gather(x, 1, big));
        ck_assert_error(WF_EINDEX, "wf_gather: index 5 is out of range for dimension 1 with size 3");
        ck_assert_ptr_null(wf_gather(x, 1, fidx));
        ck_assert_error(WF_EDTYPE, "wf_gather");
        ck_assert_ptr_null(wf_gather(x, 2, ok));
        ck_assert_error(WF_EINDEX, "wf_gather");
        ck_assert_ptr_null(wf_gather(x, 0, i64s((int64_t[]){ 0, 1 }, WF_SHAPE(2))));
        ck_assert_error(WF_ESHAPE, "wf_gather");
        ck_assert_ptr_null(wf_gather(x, 0, i64s((int64_t[]){ 0, 0, 0, 0 }, WF_SHAPE(1, 4))));
        ck_assert_error(WF_ESHAPE, "wf_gather");
        ck_assert_ptr_null(wf_gather(NULL, 0, ok));
        ck_assert_error(WF_ENULL, "wf_gather");

        wf_tensor *src = wf_ones(WF_SHAPE(2, 3), WF_F32);
        ck_assert_ptr_null(wf_scatter_add(x, 0, ok, src));   /* 2 >= size 2 of dim 0 */
        ck_assert_error(WF_EINDEX, "wf_scatter_add: index 2");
        ck_assert_ptr_null(wf_scatter_add(x, 1, ok, wf_ones(WF_SHAPE(2, 3), WF_F64)));
        ck_assert_error(WF_EDTYPE, "wf_scatter_add");
        ck_assert_ptr_null(wf_scatter_add(x, 1, fidx, src));
        ck_assert_error(WF_EDTYPE, "wf_scatter_add");
        ck_assert_ptr_null(wf_scatter_add(x, 1, ok, wf_ones(WF_SHAPE(2, 2), WF_F32)));
        ck_assert_error(WF_ESHAPE, "wf_scatter_add");
        ck_assert_ptr_null(wf_scatter_add(x, 1, ok, NULL));
        ck_assert_error(WF_ENULL, "wf_scatter_add");

        ck_assert_ptr_null(wf_index_select(x, 1, neg));
        ck_assert_error(WF_EINDEX, "wf_index_select: index -1");
        ck_assert_ptr_null(wf_index_select(x, 0, i64s((int64_t[]){ 2 }, WF_SHAPE(1))));
        ck_assert_error(WF_EINDEX, "size 2");
        ck_assert_ptr_null(wf_index_select(x, 0, ok));
        ck_assert_error(WF_ESHAPE, "wf_index_select");
        ck_assert_ptr_null(wf_index_select(x, 0, wf_zeros(WF_SHAPE(2), WF_F64)));
        ck_assert_error(WF_EDTYPE, "wf_index_select");
        ck_assert_ptr_null(wf_index_select(x, -3, neg));
        ck_assert_error(WF_EINDEX, "wf_index_select");

        wf_tensor *w = wf_zeros(WF_SHAPE(4, 2), WF_F32);
        ck_assert_ptr_null(wf_embedding(w, i64s((int64_t[]){ 1, 4 }, WF_SHAPE(2))));
        ck_assert_error(WF_EINDEX, "wf_embedding: index 4");
        ck_assert_ptr_null(wf_embedding(w, wf_zeros(WF_SHAPE(2), WF_F32)));
        ck_assert_error(WF_EDTYPE, "wf_embedding");
        ck_assert_ptr_null(wf_embedding(wf_zeros(WF_SHAPE(4), WF_F32), neg));
        ck_assert_error(WF_ESHAPE, "wf_embedding");
        ck_assert_ptr_null(wf_embedding(NULL, neg));
        ck_assert_error(WF_ENULL, "wf_embedding");

        wf_tensor *a = wf_zeros(WF_SHAPE(2, 3), WF_F32), *b = wf_zeros(WF_SHAPE(3, 3), WF_F32);
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a, b }, 2, 1));
        ck_assert_error(WF_ESHAPE, "dimension 1");
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a, b }, 2, 1));
        ck_assert_error(WF_ESHAPE, "wf_cat");
        ck_assert_ptr_nonnull(wf_cat((wf_tensor *[]){ a, b }, 2, 0));
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a, wf_zeros(WF_SHAPE(6), WF_F32) }, 2, 0));
        ck_assert_error(WF_ESHAPE, "wf_cat");
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a }, 0, 0));
        ck_assert_error(WF_EINVAL, "wf_cat");
        ck_assert_ptr_null(wf_cat(NULL, 0, 0));
        ck_assert_error(WF_EINVAL, "wf_cat");
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a, NULL }, 2, 0));
        ck_assert_error(WF_ENULL, "wf_cat");
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ a, a }, 2, 2));
        ck_assert_error(WF_EINDEX, "wf_cat");
        ck_assert_ptr_null(wf_cat((wf_tensor *[]){ wf_scalar(1, WF_F32) }, 1, 0));
        ck_assert_error(WF_ESHAPE, "wf_cat");

        ck_assert_ptr_null(wf_stack((wf_tensor *[]){ a, b }, 2, 0));
        ck_assert_error(WF_ESHAPE, "wf_stack");
        ck_assert_ptr_null(wf_stack((wf_tensor *[]){ a, a }, 2, 3));
        ck_assert_error(WF_EINDEX, "wf_stack");
        ck_assert_ptr_null(wf_stack(NULL, 0, 0));
        ck_assert_error(WF_EINVAL, "wf_stack");

        /* a NULL input after an error keeps the first error */
        ck_assert_ptr_null(wf_gather(x, 1, big));
        ck_assert_ptr_null(wf_index_select(NULL, 0, ok));
        ck_assert_error(WF_EINDEX, "wf_gather");
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, gather_values);
    tcase_add_test(tc, scatter_add_values);
    tcase_add_test(tc, gather_scatter_gradcheck);
    tcase_add_test(tc, index_select_values);
    tcase_add_test(tc, embedding_values);
    tcase_add_test(tc, index_select_embedding_gradcheck);
    tcase_add_test(tc, cat_stack_values);
    tcase_add_test(tc, cat_stack_gradcheck);
    tcase_add_test(tc, split_chunk);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
