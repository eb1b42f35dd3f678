/* tests/tensor/test_matmul.c: wf_matmul, wf_bmm, wf_linear and the CPU GEMM kernels:
 * worked values, every shape case of torch.matmul, random products against a naive loop
 * (builtin GEMM and the OpenBLAS path), half precision, gradients (gradcheck) and bad inputs. */
#include "test_util.h"
#include "weft_config.h"

/* The GEMM entry points (tensor/cpu/gemm.c); the builtin one is reachable in every build. */
int wf__cpu_gemm(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *A, int64_t lda, int64_t strideA,
                 const void *B, int64_t ldb, int64_t strideB,
                 double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, wf_device dev);
int wf__cpu_gemm_builtin(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                         double alpha, const void *A, int64_t lda, int64_t strideA,
                         const void *B, int64_t ldb, int64_t strideB,
                         double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch);


/* naive C[m,n] = A[m,k] @ B[k,n] (row-major doubles) */
static void naive(const double *A, const double *B, double *C, int64_t m, int64_t n, int64_t k) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t p = 0; p < k; p++) acc += A[i * k + p] * B[p * n + j];
            C[i * n + j] = acc;
        }
}

START_TEST(matmul_worked_values) {
    WF_SCOPE {
        /* [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]] */
        wf_tensor *a = tt_f64((double[]){ 1, 2, 3, 4, 5, 6 }, WF_SHAPE(2, 3));
        wf_tensor *b = tt_f64((double[]){ 7, 8, 9, 10, 11, 12 }, WF_SHAPE(3, 2));
        wf_tensor *y = wf_matmul(a, b);
        ck_assert_shape(y, 2, 2);
        ck_assert_tensor_near(y, ((double[]){ 58, 64, 139, 154 }), 4, 1e-15);
        wf_tensor *y32 = wf_matmul(wf_to_dtype(a, WF_F32), wf_to_dtype(b, WF_F32));
        ck_assert_int_eq(wf_tensor_dtype(y32), WF_F32);
        ck_assert_tensor_near(y32, ((double[]){ 58, 64, 139, 154 }), 4, 1e-7);
        /* b^T @ a^T = (a @ b)^T, through transposed views (no copies) */
        wf_tensor *yt = wf_matmul(wf_t(b), wf_t(a));
        ck_assert_tensor_near(yt, ((double[]){ 58, 139, 64, 154 }), 4, 1e-15);

        /* 1-D . 1-D = 0-d dot product */
        wf_tensor *u = tt_f64((double[]){ 1, 2, 3 }, WF_SHAPE(3));
        wf_tensor *v = tt_f64((double[]){ 4, 5, 6 }, WF_SHAPE(3));
        wf_tensor *d = wf_matmul(u, v);
        ck_assert_int_eq(wf_ndim(d), 0);
        ck_assert_double_eq_tol(wf_item(d), 32, 1e-15);
        /* 1-D @ 2-D: [2] @ [2,3] -> [3];  2-D @ 1-D: [2,3] @ [3] -> [2] */
        wf_tensor *r = wf_matmul(tt_f64((double[]){ 1, 2 }, WF_SHAPE(2)), a);
        ck_assert_shape(r, 3);
        ck_assert_tensor_near(r, ((double[]){ 9, 12, 15 }), 3, 1e-15);
        wf_tensor *c = wf_matmul(a, u);
        ck_assert_shape(c, 2);
        ck_assert_tensor_near(c, ((double[]){ 14, 32 }), 2, 1e-15);
        /* 1-D @ 3-D and 3-D @ 1-D */
        wf_tensor *a3 = wf_reshape(wf_arange(0, 12, 1, WF_F64), WF_SHAPE(2, 2, 3));
        wf_tensor *p = wf_matmul(a3, u);                 /* [2,2] */
        ck_assert_shape(p, 2, 2);
        ck_assert_tensor_near(p, ((double[]){ 8, 26, 44, 62 }), 4, 1e-15);
        wf_tensor *q = wf_matmul(tt_f64((double[]){ 1, -1 }, WF_SHAPE(2)), a3);   /* [2,3] */
        ck_assert_shape(q, 2, 3);
        ck_assert_tensor_near(q, ((double[]){ -3, -3, -3, -3, -3, -3 }), 6, 1e-15);

        /* bmm: two independent products */
        wf_tensor *ba = tt_f64((double[]){ 1, 2, 3, 4, 1, 0, 0, 1 }, WF_SHAPE(2, 2, 2));
        wf_tensor *bb = tt_f64((double[]){ 1, 1, 0, 1, 5, 6, 7, 8 }, WF_SHAPE(2, 2, 2));
        wf_tensor *by = wf_bmm(ba, bb);
        ck_assert_shape(by, 2, 2, 2);
        ck_assert_tensor_near(by, ((double[]){ 1, 3, 3, 7, 5, 6, 7, 8 }), 8, 1e-15);
    }
}
END_TEST

/* compare wf_matmul on random [.., m, k] @ [.., k, n] with the naive loop, per dtype */
static void check_random_2d(int64_t m, int64_t n, int64_t k, bool ta, bool tb, wf_dtype dt, double tol) {
    double *A = malloc(sizeof(double) * (size_t)(m * k + 1)), *B = malloc(sizeof(double) * (size_t)(k * n + 1));
    double *R = malloc(sizeof(double) * (size_t)(m * n + 1));
    tt_fill(A, m * k, (unsigned)(m + 3 * n));
    tt_fill(B, k * n, (unsigned)(k + 7));
    naive(A, B, R, m, n, k);
    WF_SCOPE {
        /* ta: store A^T contiguous and hand wf_matmul its transpose view */
        wf_tensor *a = tt_f64(A, WF_SHAPE(m, k)), *b = tt_f64(B, WF_SHAPE(k, n));
        if (ta) a = wf_t(wf_contiguous(wf_t(a)));
        if (tb) b = wf_t(wf_contiguous(wf_t(b)));
        ck_assert(ta == !wf_is_contiguous(a) || m == 1 || k == 1);
        wf_tensor *y = wf_matmul(wf_to_dtype(a, dt), wf_to_dtype(b, dt));
        ck_assert_shape(y, m, n);
        int64_t mn = m * n;
        ck_assert_tensor_near(y, R, mn, tol);
    }
    free(A); free(B); free(R);
}

START_TEST(matmul_random_vs_naive) {
    const int64_t sz[][3] = { { 67, 45, 33 }, { 1, 1, 1 }, { 1, 300, 70 }, { 130, 1, 257 },
                              { 64, 256, 784 }, { 5, 7, 0 }, { 129, 130, 300 } };
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        for (int t = 0; t < 4; t++) {
            check_random_2d(sz[i][0], sz[i][1], sz[i][2], t & 1, t & 2, WF_F64, 1e-12);
            /* f32 against f64: rounding grows like sqrt(k) */
            check_random_2d(sz[i][0], sz[i][1], sz[i][2], t & 1, t & 2, WF_F32, 1e-6 + 4e-6 * sqrt((double)sz[i][2]));
        }
    check_random_2d(33, 17, 45, false, true, WF_F16, 2e-2);
    check_random_2d(33, 17, 45, true, false, WF_BF16, 8e-2);
}
END_TEST

START_TEST(matmul_batched_broadcast) {
    WF_SCOPE {
        /* [2,1,3,4] @ [3,4,5] -> [2,3,3,5]; plus a transposed, sliced operand */
        const int64_t m = 3, k = 4, n = 5;
        wf_tensor *a = tt_rnd_leaf(1, WF_SHAPE(2, 1, m, k));
        wf_tensor *b = tt_rnd_leaf(2, WF_SHAPE(3, k, n));
        wf_tensor *y = wf_matmul(a, b);
        ck_assert_shape(y, 2, 3, m, n);
        double av[2 * m * k], bv[3 * k * n], yv[2 * 3 * m * n], r[m * n];
        wf_to_array(a, av, WF_F64);
        wf_to_array(b, bv, WF_F64);
        wf_to_array(y, yv, WF_F64);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                naive(av + i * m * k, bv + j * k * n, r, m, n, k);
                for (int e = 0; e < m * n; e++)
                    ck_assert_double_eq_tol(yv[(i * 3 + j) * m * n + e], r[e], 1e-12);
            }
        /* [3,m,k] @ [k,n]: the folded path */
        wf_tensor *a3 = tt_rnd_leaf(3, WF_SHAPE(3, m, k));
        wf_tensor *b2 = tt_rnd_leaf(4, WF_SHAPE(k, n));
        wf_tensor *y3 = wf_matmul(a3, b2);
        ck_assert_shape(y3, 3, m, n);
        double a3v[3 * m * k], b2v[k * n], y3v[3 * m * n];
        wf_to_array(a3, a3v, WF_F64);
        wf_to_array(b2, b2v, WF_F64);
        wf_to_array(y3, y3v, WF_F64);
        for (int i = 0; i < 3; i++) {
            naive(a3v + i * m * k, b2v, r, m, n, k);
            for (int e = 0; e < m * n; e++) ck_assert_double_eq_tol(y3v[i * m * n + e], r[e], 1e-12);
        }
        /* the same through a batch-transposed, non-contiguous left operand: permute [m,3,k] */
        wf_tensor *ap = wf_transpose(wf_contiguous(wf_transpose(a3, 0, 1)), 0, 1);
        ck_assert(!wf_is_contiguous(ap));
        const int64_t n3 = 3 * m * n;
        ck_assert_tensor_near(wf_matmul(ap, b2), y3v, n3, 1e-12);
        /* bmm agrees with matmul */
        wf_tensor *bb = tt_rnd_leaf(5, WF_SHAPE(3, k, n));
        double e1[3 * m * n];
        wf_to_array(wf_matmul(a3, bb), e1, WF_F64);
        ck_assert_tensor_near(wf_bmm(a3, bb), e1, n3, 1e-15);
        /* empty shapes */
        ck_assert_shape(wf_matmul(wf_zeros(WF_SHAPE(0, 3), WF_F32), wf_zeros(WF_SHAPE(3, 4), WF_F32)), 0, 4);
        wf_tensor *z = wf_matmul(wf_ones(WF_SHAPE(2, 0), WF_F32), wf_ones(WF_SHAPE(0, 3), WF_F32));
        ck_assert_tensor_near(z, ((double[]){ 0, 0, 0, 0, 0, 0 }), 6, 0);
    }
}
END_TEST

/* the GEMM kernels on raw buffers: odd sizes, transposes, leading dims, batch strides
 * (including 0 = shared operand), alpha/beta; builtin and dispatching entry points */
static void gemm_case(bool builtin, wf_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                      int64_t batch, bool shareA, double alpha, double beta) {
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t lda = ac + 3, ldb = bc + 1, ldc = n + 2;
    int64_t sA = shareA ? 0 : ar * lda, sB = br * ldb, sC = m * ldc;
    int64_t na = (shareA ? 1 : batch) * ar * lda, nb = batch * br * ldb, nc = batch * m * ldc;
    double *A = malloc(sizeof(double) * (size_t)na), *B = malloc(sizeof(double) * (size_t)nb);
    double *C = malloc(sizeof(double) * (size_t)nc), *R = malloc(sizeof(double) * (size_t)nc);
    tt_fill(A, na, 11); tt_fill(B, nb, 12); tt_fill(C, nc, 13);
    memcpy(R, C, sizeof(double) * (size_t)nc);
    for (int64_t q = 0; q < batch; q++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++)
                    acc += (ta ? A[q * sA + p * lda + i] : A[q * sA + i * lda + p]) *
                           (tb ? B[q * sB + j * ldb + p] : B[q * sB + p * ldb + j]);
                double *r = &R[q * sC + i * ldc + j];
                *r = alpha * acc + (beta == 0 ? 0 : beta * *r);
            }
    void *a = A, *b = B, *c = C;
    float *fa = NULL, *fb = NULL, *fc = NULL;
    if (dt == WF_F32) {
        fa = malloc(sizeof(float) * (size_t)na); fb = malloc(sizeof(float) * (size_t)nb);
        fc = malloc(sizeof(float) * (size_t)nc);
        for (int64_t i = 0; i < na; i++) fa[i] = (float)A[i];
        for (int64_t i = 0; i < nb; i++) fb[i] = (float)B[i];
        for (int64_t i = 0; i < nc; i++) fc[i] = (float)C[i];
        a = fa; b = fb; c = fc;
    }
    int rc = builtin ? wf__cpu_gemm_builtin(dt, ta, tb, m, n, k, alpha, a, lda, sA, b, ldb, sB, beta, c, ldc, sC, batch)
                     : wf__cpu_gemm(dt, ta, tb, m, n, k, alpha, a, lda, sA, b, ldb, sB, beta, c, ldc, sC, batch, WF_CPU);
    ck_assert_int_eq(rc, 0);
    double tol = dt == WF_F32 ? 2e-5 * (1 + (double)k / 64) : 1e-12;
    for (int64_t q = 0; q < batch; q++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ldc; j++) {
                int64_t e = q * sC + i * ldc + j;
                double got = dt == WF_F32 ? fc[e] : C[e];
                double want = j < n ? R[e] : (dt == WF_F32 ? (float)R[e] : R[e]);  /* padding untouched */
                ck_assert_msg(fabs(got - want) <= tol * (1 + fabs(want)),
                              "%s %s ta=%d tb=%d %lldx%lldx%lld batch %lld: C[%lld] = %g, want %g",
                              builtin ? "builtin" : "dispatch", wf_dtype_name(dt), ta, tb, (long long)m,
                              (long long)n, (long long)k, (long long)batch, (long long)e, got, want);
            }
    free(A); free(B); free(C); free(R); free(fa); free(fb); free(fc);
}

START_TEST(gemm_kernels_vs_naive) {
    const int64_t sz[][3] = { { 67, 45, 33 }, { 1, 1, 1 }, { 3, 200, 5 }, { 130, 17, 300 },
                              { 250, 130, 270 }, { 7, 3, 0 } };
    for (int builtin = 0; builtin < 2; builtin++)
        for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++)
            for (int t = 0; t < 4; t++) {
                gemm_case(builtin, WF_F64, t & 1, t & 2, sz[s][0], sz[s][1], sz[s][2], 1, false, 1.0, 0.0);
                gemm_case(builtin, WF_F32, t & 1, t & 2, sz[s][0], sz[s][1], sz[s][2], 1, false, 1.0, 0.0);
                gemm_case(builtin, WF_F64, t & 1, t & 2, sz[s][0], sz[s][1], sz[s][2], 3, t == 1, -0.5, 2.0);
                gemm_case(builtin, WF_F32, t & 1, t & 2, sz[s][0], sz[s][1], sz[s][2], 3, t == 2, 1.5, 1.0);
            }
    /* products large enough to split across the team (millions of multiply-adds), wide and
     * tall (column and row slices), batched with and without a shared operand, on 1 to 3
     * threads (3 does not divide the sizes) */
    int saved = wf_get_num_threads();
    for (int nt = 1; nt <= 3; nt++) {
        ck_assert_int_eq(wf_set_num_threads(nt), 0);
#ifndef WEFT_MINIMAL
        ck_assert_int_eq(wf_get_num_threads(), nt);
#else
        ck_assert_int_eq(wf_get_num_threads(), 1);   /* the embedded preset has no pool threads */
#endif
        for (int t = 0; t < 4; t++) {
            gemm_case(false, WF_F32, t & 1, t & 2, 40, 700, 90, 1, false, 1.0, 0.5);
            gemm_case(false, WF_F64, t & 1, t & 2, 530, 33, 120, 2, t == 3, -1.0, 0.0);
        }
        gemm_case(false, WF_F32, false, true, 64, 64, 64, 16, false, 1.0, 0.0);
        gemm_case(false, WF_F64, true, false, 64, 48, 80, 12, true, 2.0, 1.0);
    }
    ck_assert_int_eq(wf_set_num_threads(saved), 0);
    /* many small items: the batch-parallel path */
    gemm_case(true, WF_F32, false, true, 9, 11, 13, 64, false, 1.0, 0.0);
    gemm_case(true, WF_F64, true, false, 20, 20, 20, 40, true, 1.0, 0.5);
    /* integer dtypes are refused */
    int64_t ia[4] = { 0 }, ib[4] = { 0 }, ic[4] = { 0 };
    ck_assert_int_eq(wf__cpu_gemm(WF_I64, false, false, 2, 2, 2, 1, ia, 2, 0, ib, 2, 0, 0, ic, 2, 0, 1, WF_CPU), WF_EDTYPE);
    ck_assert_int_eq(wf__cpu_gemm_builtin(WF_I32, false, false, 2, 2, 2, 1, ia, 2, 0, ib, 2, 0, 0, ic, 2, 0, 1), WF_EDTYPE);
    wf_clear_error();
}
END_TEST

/* A shared C (stride 0) accumulates every item's product in order: split into slices across
 * the team it equals the one-thread result. */
START_TEST(gemm_shared_c_split) {
    enum { M = 37, N = 700, K = 50, B = 4 };
    static float a[B * M * K], b[B * K * N], c1[M * N], c3[M * N], c4[N * M];
    for (int i = 0; i < B * M * K; i++) a[i] = (float)((i * 37 % 101) - 50) / 50.0f;
    for (int i = 0; i < B * K * N; i++) b[i] = (float)((i * 53 % 97) - 48) / 48.0f;
    int saved = wf_get_num_threads();
    float *out[2] = { c1, c3 };
    for (int v = 0; v < 2; v++) {
        ck_assert_int_eq(wf_set_num_threads(v ? 3 : 1), 0);
        for (int i = 0; i < M * N; i++) out[v][i] = 1.0f;
        ck_assert_int_eq(wf__cpu_gemm(WF_F32, false, false, M, N, K, 1.0, a, K, M * K, b, N, K * N, 0.5, out[v], N, 0,
                                      B, WF_CPU), 0);
    }
    for (int i = 0; i < M * N; i++) ck_assert_msg(fabsf(c1[i] - c3[i]) <= 1e-4f * (1 + fabsf(c1[i])), "C[%d]: %g vs %g", i, c1[i], c3[i]);
    /* the transposed product (C^T = B^T A^T): tall C, row slices */
    ck_assert_int_eq(wf_set_num_threads(3), 0);
    ck_assert_int_eq(wf__cpu_gemm(WF_F32, true, true, N, M, K, 1.0, b, N, K * N, a, K, M * K, 0.0, c4, M, 0, B, WF_CPU), 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float want = c1[i * N + j] - 0.5f;   /* beta 0 here, 0.5 * 1 above */
            ck_assert_msg(fabsf(c4[j * M + i] - want) <= 1e-4f * (1 + fabsf(want)), "C^T[%d,%d]", j, i);
        }
    ck_assert_int_eq(wf_set_num_threads(0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "wf_set_num_threads: n = 0 must be at least 1");
    ck_assert_int_eq(wf_set_num_threads(saved), 0);
}
END_TEST

START_TEST(linear_worked_values) {
    WF_SCOPE {
        /* x [2,3], w [2,3] (out=2,in=3), b [2]: y = x w^T + b */
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3, 4, 5, 6 }, WF_SHAPE(2, 3));
        wf_tensor *w = tt_f64((double[]){ 1, 0, -1, 2, 1, 0 }, WF_SHAPE(2, 3));
        wf_tensor *b = tt_f64((double[]){ 0.5, -1 }, WF_SHAPE(2));
        const double e[] = { 1 - 3 + 0.5, 2 + 2 - 1, 4 - 6 + 0.5, 8 + 5 - 1 };
        ck_assert_tensor_near(wf_linear(x, w, b), e, 4, 1e-15);
        const double e0[] = { -2, 4, -2, 13 };
        ck_assert_tensor_near(wf_linear(x, w, NULL), e0, 4, 1e-15);
        /* weight given as a transposed view of a contiguous [in,out] matrix */
        wf_tensor *wt = wf_t(wf_contiguous(wf_t(w)));
        ck_assert(!wf_is_contiguous(wt));
        ck_assert_tensor_near(wf_linear(x, wt, b), e, 4, 1e-15);
        /* 1-D input, 3-D input, non-contiguous input */
        wf_tensor *y1 = wf_linear(tt_f64((double[]){ 1, 2, 3 }, WF_SHAPE(3)), w, b);
        ck_assert_shape(y1, 2);
        ck_assert_tensor_near(y1, e, 2, 1e-15);
        wf_tensor *x3 = wf_reshape(wf_cat((wf_tensor *[]){ x, x }, 2, 0), WF_SHAPE(2, 2, 3));
        wf_tensor *y3 = wf_linear(x3, w, b);
        ck_assert_shape(y3, 2, 2, 2);
        const double e3[] = { e[0], e[1], e[2], e[3], e[0], e[1], e[2], e[3] };
        ck_assert_tensor_near(y3, e3, 8, 1e-15);
        wf_tensor *xt = wf_t(wf_contiguous(wf_t(x)));
        ck_assert_tensor_near(wf_linear(xt, w, b), e, 4, 1e-15);
        wf_tensor *x3t = wf_transpose(wf_contiguous(wf_transpose(x3, 0, 1)), 0, 1);
        ck_assert_tensor_near(wf_linear(x3t, w, b), e3, 8, 1e-15);
        /* f32 and bf16 */
        wf_tensor *y32 = wf_linear(wf_to_dtype(x, WF_F32), wf_to_dtype(w, WF_F32), wf_to_dtype(b, WF_F32));
        ck_assert_int_eq(wf_tensor_dtype(y32), WF_F32);
        ck_assert_tensor_near(y32, e, 4, 1e-7);
        wf_tensor *y16 = wf_linear(wf_to_dtype(x, WF_BF16), wf_to_dtype(w, WF_BF16), wf_to_dtype(b, WF_BF16));
        ck_assert_tensor_near(y16, e, 4, 1e-2);
        /* in_features 0: the bias alone */
        wf_tensor *ye = wf_linear(wf_zeros(WF_SHAPE(2, 0), WF_F64), wf_zeros(WF_SHAPE(2, 0), WF_F64), b);
        ck_assert_tensor_near(ye, ((double[]){ 0.5, -1, 0.5, -1 }), 4, 0);
    }
}
END_TEST

START_TEST(matmul_backward_by_hand) {
    WF_SCOPE {
        wf_tensor *a = tt_leaf((double[]){ 1, 2, 3, 4, 5, 6 }, WF_SHAPE(2, 3));
        wf_tensor *b = tt_leaf((double[]){ 7, 8, 9, 10, 11, 12 }, WF_SHAPE(3, 2));
        wf_tensor *y = wf_matmul(a, b);
        ck_assert_str_eq(wf_grad_fn_name(y), "MmBackward");
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        /* d sum(a@b)/da = ones @ b^T: row sums of b; d/db = a^T @ ones: column sums of a */
        ck_assert_tensor_near(wf_grad(a), ((double[]){ 15, 19, 23, 15, 19, 23 }), 6, 1e-15);
        ck_assert_tensor_near(wf_grad(b), ((double[]){ 5, 5, 7, 7, 9, 9 }), 6, 1e-15);
        wf_tensor *x = tt_leaf((double[]){ 1, 2, 3 }, WF_SHAPE(1, 3));
        wf_tensor *w = tt_leaf((double[]){ 1, 0, -1, 2, 1, 0 }, WF_SHAPE(2, 3));
        wf_tensor *bb = tt_leaf((double[]){ 0, 0 }, WF_SHAPE(2));
        wf_tensor *l = wf_linear(x, w, bb);
        ck_assert_str_eq(wf_grad_fn_name(l), "LinearBackward");
        ck_assert_int_eq(wf_backward(wf_sum_all(l), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 3, 1, -1 }), 3, 1e-15);
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 1, 2, 3, 1, 2, 3 }), 6, 1e-15);
        ck_assert_tensor_near(wf_grad(bb), ((double[]){ 1, 1 }), 2, 1e-15);
        ck_assert_str_eq(wf_grad_fn_name(wf_bmm(wf_unsqueeze(a, 0), wf_unsqueeze(b, 0))), "BmmBackward");
    }
}
END_TEST

typedef struct { int ta, tb; } mm_args;

static wf_tensor *mm_fn(wf_tensor *const *in, int n, void *ud) {
    (void)n;
    mm_args *a = ud;
    wf_tensor *x = a && a->ta ? wf_transpose(in[0], -1, -2) : in[0];
    wf_tensor *y = a && a->tb ? wf_transpose(in[1], -1, -2) : in[1];
    return wf_matmul(x, y);
}
static wf_tensor *lin_fn(wf_tensor *const *in, int n, void *ud) {
    (void)ud;
    return wf_linear(in[0], in[1], n > 2 ? in[2] : NULL);
}

#define GRADCHECK(fn, ins, n, ud) \
    ck_assert_msg(wf_gradcheck(fn, ins, n, ud, 1e-6, 1e-7, 1e-5) == 0, "%s:%d %s", __FILE__, __LINE__, wf_error_message())

/* The op harness (tests/ops/op_table.c) gradchecks 2-D, transposed, [2,3,4] @ [4,5], [4] @ [4,5]
 * and bmm; here the broadcast shapes and 1-D cases it has no sample for. */
START_TEST(matmul_gradcheck) {
    WF_SCOPE {
        /* batched with broadcasting: [2,1,3,4] @ [3,4,2], and [3,4] @ [2,4,2] */
        wf_tensor *inb[] = { tt_rnd_leaf(5, WF_SHAPE(2, 1, 3, 4)), tt_rnd_leaf(6, WF_SHAPE(3, 4, 2)) };
        GRADCHECK(mm_fn, inb, 2, NULL);
        wf_tensor *inf[] = { tt_rnd_leaf(7, WF_SHAPE(2, 3, 4)), tt_rnd_leaf(8, WF_SHAPE(4, 2)) };
        wf_tensor *inl[] = { tt_rnd_leaf(9, WF_SHAPE(3, 4)), tt_rnd_leaf(10, WF_SHAPE(2, 4, 2)) };
        GRADCHECK(mm_fn, inl, 2, NULL);
        wf_tensor *inft[] = { inf[0], tt_rnd_leaf(15, WF_SHAPE(2, 4)) };
        GRADCHECK(mm_fn, inft, 2, (&(mm_args){ 0, 1 }));   /* [2,3,4] @ ([2,4]^T) */
        /* 1-D cases */
        wf_tensor *v4 = tt_rnd_leaf(11, WF_SHAPE(4)), *w4 = tt_rnd_leaf(12, WF_SHAPE(4));
        GRADCHECK(mm_fn, ((wf_tensor *[]){ v4, w4 }), 2, NULL);
        GRADCHECK(mm_fn, ((wf_tensor *[]){ tt_rnd_leaf(1, WF_SHAPE(3, 4)), w4 }), 2, NULL);   /* [3,4] @ [4] */
        GRADCHECK(mm_fn, ((wf_tensor *[]){ inf[0], w4 }), 2, NULL);          /* [2,3,4] @ [4] */
        GRADCHECK(mm_fn, ((wf_tensor *[]){ v4, inl[1] }), 2, NULL);          /* [4] @ [2,4,2] */
    }
}
END_TEST

START_TEST(linear_gradcheck) {
    WF_SCOPE {
        /* 2-D and batched x, with and without bias: the op harness's linear rows */
        wf_tensor *x = tt_rnd_leaf(1, WF_SHAPE(4, 3)), *w = tt_rnd_leaf(2, WF_SHAPE(5, 3)), *b = tt_rnd_leaf(3, WF_SHAPE(5));
        wf_tensor *x1 = tt_rnd_leaf(5, WF_SHAPE(3));
        GRADCHECK(lin_fn, ((wf_tensor *[]){ x1, w, b }), 3, NULL);
        /* only some inputs require grad */
        wf_tensor *xc = wf_detach(x);
        GRADCHECK(lin_fn, ((wf_tensor *[]){ xc, w, b }), 3, NULL);
    }
}
END_TEST

START_TEST(matmul_bad_inputs) {
    WF_SCOPE {
        wf_clear_error();
        wf_tensor *a = wf_zeros(WF_SHAPE(32, 784), WF_F32), *b = wf_zeros(WF_SHAPE(10, 256), WF_F32);
        ck_assert_ptr_null(wf_matmul(a, b));
        ck_assert_error(WF_ESHAPE, "wf_matmul: [32,784] @ [10,256]: inner dimensions differ (784 vs 10)");
        ck_assert_ptr_null(wf_matmul(NULL, b));
        ck_assert_error(WF_ENULL, "wf_matmul");
        /* a NULL input keeps the first error */
        ck_assert_ptr_null(wf_matmul(a, b));
        ck_assert_ptr_null(wf_matmul(NULL, b));
        ck_assert_error(WF_ESHAPE, "inner dimensions differ");
        ck_assert_ptr_null(wf_matmul(a, wf_zeros(WF_SHAPE(784, 3), WF_F64)));
        ck_assert_error(WF_EDTYPE, "wf_matmul");
        ck_assert_ptr_null(wf_matmul(wf_zeros(WF_SHAPE(2, 2), WF_I64), wf_zeros(WF_SHAPE(2, 2), WF_I64)));
        ck_assert_error(WF_EDTYPE, "wf_matmul");
        ck_assert_ptr_null(wf_matmul(wf_scalar(1, WF_F32), a));
        ck_assert_error(WF_ESHAPE, "wf_matmul");
        ck_assert_ptr_null(wf_matmul(wf_zeros(WF_SHAPE(3), WF_F32), wf_zeros(WF_SHAPE(4), WF_F32)));
        ck_assert_error(WF_ESHAPE, "wf_matmul: [3] @ [4]");
        /* batch dims that do not broadcast */
        ck_assert_ptr_null(wf_matmul(wf_zeros(WF_SHAPE(2, 3, 4), WF_F32), wf_zeros(WF_SHAPE(3, 4, 5), WF_F32)));
        ck_assert_error(WF_ESHAPE, "wf_matmul");
        /* bmm: rank, batch, inner */
        ck_assert_ptr_null(wf_bmm(a, b));
        ck_assert_error(WF_ESHAPE, "wf_bmm");
        ck_assert_ptr_null(wf_bmm(wf_zeros(WF_SHAPE(2, 3, 4), WF_F32), wf_zeros(WF_SHAPE(3, 4, 5), WF_F32)));
        ck_assert_error(WF_ESHAPE, "wf_bmm: [2,3,4] @ [3,4,5]: batch sizes differ (2 vs 3)");
        ck_assert_ptr_null(wf_bmm(wf_zeros(WF_SHAPE(2, 3, 4), WF_F32), wf_zeros(WF_SHAPE(2, 5, 5), WF_F32)));
        ck_assert_error(WF_ESHAPE, "inner dimensions differ (4 vs 5)");
        ck_assert_ptr_null(wf_bmm(NULL, NULL));
        ck_assert_error(WF_ENULL, "wf_bmm");
        /* linear */
        ck_assert_ptr_null(wf_linear(a, b, NULL));
        ck_assert_error(WF_ESHAPE, "wf_linear: input [32,784] and weight [10,256]: in_features differ (784 vs 256)");
        ck_assert_ptr_null(wf_linear(a, wf_zeros(WF_SHAPE(784), WF_F32), NULL));
        ck_assert_error(WF_ESHAPE, "wf_linear");
        ck_assert_ptr_null(wf_linear(a, wf_zeros(WF_SHAPE(10, 784), WF_F32), wf_zeros(WF_SHAPE(11), WF_F32)));
        ck_assert_error(WF_ESHAPE, "wf_linear: bias");
        ck_assert_ptr_null(wf_linear(a, wf_zeros(WF_SHAPE(10, 784), WF_F64), NULL));
        ck_assert_error(WF_EDTYPE, "wf_linear");
        ck_assert_ptr_null(wf_linear(NULL, b, NULL));
        ck_assert_error(WF_ENULL, "wf_linear");
        ck_assert_ptr_null(wf_linear(wf_scalar(1, WF_F32), wf_zeros(WF_SHAPE(1, 1), WF_F32), NULL));
        ck_assert_error(WF_ESHAPE, "wf_linear");
    }
}
END_TEST

START_TEST(matmul_device_mismatch) {
    WF_SCOPE {
        wf_tensor *a = wf_zeros(WF_SHAPE(2, 3), WF_F32);
        wf_tensor *m = wf_empty_on(WF_SHAPE(3, 4), WF_F32, WF_META);
        if (m) {
            ck_assert_ptr_null(wf_matmul(a, m));
            ck_assert_error(WF_EDEVICE, "wf_matmul");
            /* meta tensors: shapes only */
            wf_tensor *y = wf_matmul(wf_empty_on(WF_SHAPE(5, 2, 3), WF_F32, WF_META), m);
            ck_assert_shape(y, 5, 2, 4);
        }
        wf_clear_error();
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, matmul_worked_values);
    tcase_add_test(tc, matmul_random_vs_naive);
    tcase_add_test(tc, matmul_batched_broadcast);
    tcase_add_test(tc, gemm_kernels_vs_naive);
    tcase_add_test(tc, gemm_shared_c_split);
    tcase_add_test(tc, linear_worked_values);
    tcase_add_test(tc, matmul_backward_by_hand);
    tcase_add_test(tc, matmul_gradcheck);
    tcase_add_test(tc, linear_gradcheck);
    tcase_add_test(tc, matmul_bad_inputs);
    tcase_add_test(tc, matmul_device_mismatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
