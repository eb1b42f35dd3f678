/* tests/tensor/test_oplist.c: the one op list (tensor/ops.def). Every op has a name; the CPU's
 * support masks say exactly what its kernels do (each op x dtype run on a tiny tensor); and a
 * backend missing a kernel makes the front-ends fail with WF_ENOTSUP naming op, dtype and
 * device, without running another device's code (a fake "cuda" table backed by CPU memory). */
#include "test_util.h"

#include "tensor/tensor_impl.h"

static const int fam_count[WF_OPF_COUNT] = { WF_U_COUNT, WF_B_COUNT, WF_R_COUNT, WF_K_COUNT };

/* ---------------------------------------------------------------- names */

START_TEST(names_cover_every_op) {
    for (int f = 0; f < WF_OPF_COUNT; f++) {
        for (int op = 0; op < fam_count[f]; op++) {
            const char *n = wf__op_name((wf_op_family)f, op);
            ck_assert_msg(n && n[0], "family %d op %d has no name", f, op);
            for (int o2 = 0; o2 < op; o2++)
                ck_assert_msg(strcmp(n, wf__op_name((wf_op_family)f, o2)) != 0, "family %d: name '%s' twice", f, n);
        }
        ck_assert_ptr_null(wf__op_name((wf_op_family)f, fam_count[f]));
        ck_assert_ptr_null(wf__op_name((wf_op_family)f, -1));
    }
    ck_assert_ptr_null(wf__op_name(WF_OPF_COUNT, 0));
    /* the tables are the list's rows, in enum order */
    ck_assert_str_eq(wf__unary_op_names[WF_U_EXP], "exp");
    ck_assert_str_eq(wf__binary_op_names[WF_B_ADD], "add");
    ck_assert_str_eq(wf__reduce_op_names[WF_R_PNORM], "pnorm");
    ck_assert_str_eq(wf__kernel_op_names[WF_K_IM2COL], "im2col");
}
END_TEST

/* ---------------------------------------------------------------- CPU: masks vs kernels */

static wf_tensor *host(const int64_t *shape, int nd, wf_dtype dt, const double *v) {
    wf_tensor *t = wf__empty(shape, nd, dt, WF_CPU);
    ck_assert_ptr_nonnull(t);
    size_t es = wf_dtype_size(dt);
    for (int64_t i = 0; i < wf_numel(t); i++) wf__store(wf__host_ptr(t) + (size_t)i * es, dt, v ? v[i] : 0.5 * (double)(i % 3));
    return t;
}
static double at(const wf_tensor *t, int64_t i) {
    return wf__load(wf__host_ptr(t) + (size_t)i * wf_dtype_size(t->dtype), t->dtype);
}
static double tol(wf_dtype dt) {
    return dt == WF_F16 || dt == WF_BF16 ? 2e-2 : dt == WF_F32 ? 1e-5 : 1e-12;
}

static double unary_ref(wf_unary_op op, double x, double a, double b) {
    switch (op) {
    case WF_U_NEG: return -x;
    case WF_U_ABS: return fabs(x);
    case WF_U_EXP: return exp(x);
    case WF_U_LOG: return log(x);
    case WF_U_LOG1P: return log1p(x);
    case WF_U_SQRT: return sqrt(x);
    case WF_U_RSQRT: return 1 / sqrt(x);
    case WF_U_SIN: return sin(x);
    case WF_U_COS: return cos(x);
    case WF_U_TANH: return tanh(x);
    case WF_U_SIGMOID: return 1 / (1 + exp(-x));
    case WF_U_RELU: return x > 0 ? x : 0;
    case WF_U_GELU: return 0.5 * x * (1 + erf(x / sqrt(2)));
    case WF_U_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case WF_U_SILU: return x / (1 + exp(-x));
    case WF_U_SQUARE: return x * x;
    case WF_U_SIGN: return (x > 0) - (x < 0);
    case WF_U_POW: return pow(x, a);
    case WF_U_CLAMP: return x < a ? a : x > b ? b : x;
    case WF_U_LOGICAL_NOT: return x == 0;
    case WF_U_ISFINITE: return isfinite(x) ? 1 : 0;
    default: ck_abort_msg("unary op %d has no reference in this test: add one", (int)op); return 0;
    }
}

static double binary_ref(wf_binary_op op, double a, double b) {
    switch (op) {
    case WF_B_ADD: return a + b;
    case WF_B_SUB: return a - b;
    case WF_B_MUL: return a * b;
    case WF_B_DIV: return a / b;
    case WF_B_POW: return pow(a, b);
    case WF_B_MAX: return a > b ? a : b;
    case WF_B_MIN: return a < b ? a : b;
    case WF_B_EQ: return a == b;
    case WF_B_NE: return a != b;
    case WF_B_LT: return a < b;
    case WF_B_LE: return a <= b;
    case WF_B_GT: return a > b;
    case WF_B_GE: return a >= b;
    case WF_B_AND: return a != 0 && b != 0;
    case WF_B_OR: return a != 0 || b != 0;
    default: ck_abort_msg("binary op %d has no reference in this test: add one", (int)op); return 0;
    }
}

static bool unary_pred(wf_unary_op op) { return op == WF_U_LOGICAL_NOT || op == WF_U_ISFINITE; }
static bool binary_pred(wf_binary_op op) { return op >= WF_B_EQ && op <= WF_B_GE; }

/* what a front-end says for an unsupported pair: WF_ENOTSUP naming op, dtype and device */
static void check_refusal(wf_op_family f, int op, wf_dtype dt) {
    ck_assert_int_eq(wf__need_kernel(&wf__cpu_kernels, "wf_test_op", f, op, dt, WF_CPU), WF_ENOTSUP);
    char want[128];
    snprintf(want, sizeof want, "wf_test_op: no kernel for %s on cpu (%s)", wf_dtype_name(dt), wf__op_name(f, op));
    ck_assert_error(WF_ENOTSUP, want);
}

START_TEST(cpu_unary_binary_reduce_match_masks) {
    const wf_kernels *K = &wf__cpu_kernels;
    const double xv[3] = { 0.5, 1, 2 }, bv[3] = { 2, 1, 0.5 };
    for (int dt = 1; dt < WF_DTYPE_COUNT; dt++) {
        wf_scope_begin();
        bool fl = wf_dtype_is_floating((wf_dtype)dt);
        wf_tensor *x = host(WF_SHAPE(3), (wf_dtype)dt, xv), *b = host(WF_SHAPE(3), (wf_dtype)dt, bv);
        for (int op = 0; op < WF_U_COUNT; op++) {
            if (!wf__supports(K, WF_OPF_UNARY, op, (wf_dtype)dt)) { check_refusal(WF_OPF_UNARY, op, (wf_dtype)dt); continue; }
            ck_assert_int_eq(wf__need_kernel(K, "t", WF_OPF_UNARY, op, (wf_dtype)dt, WF_CPU), 0);
            wf_tensor *y = host(WF_SHAPE(3), unary_pred((wf_unary_op)op) ? WF_BOOL : (wf_dtype)dt, NULL);
            double a = op == WF_U_CLAMP ? 0.75 : 2, bb = 1.5;
            ck_assert_msg(K->unary((wf_unary_op)op, y, x, a, bb) == 0, "unary %s on %s: %s", wf__unary_op_names[op],
                          wf_dtype_name((wf_dtype)dt), wf_error_message());
            for (int i = 0; fl && i < 3; i++) {
                double e = unary_ref((wf_unary_op)op, at(x, i), a, bb);
                ck_assert_msg(fabs(at(y, i) - e) <= tol((wf_dtype)dt) * (1 + fabs(e)), "unary %s on %s [%d]: %g vs %g",
                              wf__unary_op_names[op], wf_dtype_name((wf_dtype)dt), i, at(y, i), e);
            }
        }
        for (int op = 0; op < WF_B_COUNT; op++) {
            if (!wf__supports(K, WF_OPF_BINARY, op, (wf_dtype)dt)) { check_refusal(WF_OPF_BINARY, op, (wf_dtype)dt); continue; }
            wf_tensor *y = host(WF_SHAPE(3), binary_pred((wf_binary_op)op) ? WF_BOOL : (wf_dtype)dt, NULL);
            ck_assert_msg(K->binary((wf_binary_op)op, y, x, b) == 0, "binary %s on %s: %s", wf__binary_op_names[op],
                          wf_dtype_name((wf_dtype)dt), wf_error_message());
            for (int i = 0; fl && i < 3; i++) {
                double e = binary_ref((wf_binary_op)op, at(x, i), at(b, i));
                ck_assert_msg(fabs(at(y, i) - e) <= tol((wf_dtype)dt) * (1 + fabs(e)), "binary %s on %s [%d]",
                              wf__binary_op_names[op], wf_dtype_name((wf_dtype)dt), i);
            }
            wf_tensor *ys = host(WF_SHAPE(3), binary_pred((wf_binary_op)op) ? WF_BOOL : (wf_dtype)dt, NULL);
            ck_assert_int_eq(K->binary_scalar((wf_binary_op)op, ys, x, 1.0, false), 0);
        }
        for (int op = 0; op < WF_R_COUNT; op++) {
            if (!wf__supports(K, WF_OPF_REDUCE, op, (wf_dtype)dt)) { check_refusal(WF_OPF_REDUCE, op, (wf_dtype)dt); continue; }
            wf_tensor *y = host(WF_SHAPE(1), WF_F64, NULL);
            ck_assert_msg(K->reduce((wf_reduce_op)op, y, x, 1u, 2.0) == 0, "reduce %s on %s: %s", wf__reduce_op_names[op],
                          wf_dtype_name((wf_dtype)dt), wf_error_message());
            if (op == WF_R_SUM) ck_assert_double_eq_tol(at(y, 0), at(x, 0) + at(x, 1) + at(x, 2), 1e-9);
        }
        wf_scope_end();
    }
}
END_TEST

/* Runs kernel-family op `op` of K once on tiny operands of dtype dt; returns its code. */
static int run_kernel_op(const wf_kernels *K, wf_kernel_op op, wf_dtype dt) {
    const double iv[2] = { 2, 0 };
    wf_tensor *x3 = host(WF_SHAPE(3), dt, NULL), *y3 = host(WF_SHAPE(3), dt, NULL), *y2 = host(WF_SHAPE(2), dt, NULL);
    wf_tensor *idx = host(WF_SHAPE(2), WF_I64, iv);
    wf_tensor *img = host(WF_SHAPE(1, 1, 2, 2), dt, NULL), *img3 = host(WF_SHAPE(1, 1, 3, 3), dt, NULL);
    wf_tensor *one = host(WF_SHAPE(1, 1, 1, 1), dt, NULL), *am = host(WF_SHAPE(1, 1, 1, 1), WF_I64, NULL);
    wf_tensor *m23 = host(WF_SHAPE(2, 3), dt, NULL), *o23 = host(WF_SHAPE(2, 3), dt, NULL);
    wf_tensor *g23 = host(WF_SHAPE(2, 3), dt, NULL);
    wf_tensor *A = host(WF_SHAPE(2, 2), dt, NULL), *B = host(WF_SHAPE(2, 2), dt, NULL), *C = host(WF_SHAPE(2, 2), dt, NULL);
    wf_tensor *col = host(WF_SHAPE(1, 4), dt, NULL), *bias = host(WF_SHAPE(2), dt, NULL);
    const int k[2] = { 2, 2 }, s[2] = { 2, 2 }, p[2] = { 0, 0 }, d[2] = { 1, 1 };
    void *ap = wf__host_ptr(A), *bp = wf__host_ptr(B), *cp = wf__host_ptr(C), *colp = wf__host_ptr(col);
    void *xp = wf__host_ptr(img);
    switch (op) {
    case WF_K_WHERE: return K->where(y3, host(WF_SHAPE(3), WF_BOOL, NULL), x3, x3);
    case WF_K_AXPY: return K->axpy(y3, x3, 1.0);
    case WF_K_ARG_REDUCE: return K->arg_reduce(true, host(WF_SHAPE(1), WF_I64, NULL), x3, 0);
    case WF_K_RAND_UNIFORM: return K->rand_uniform(y3, 1, 0, 0, 1);
    case WF_K_RAND_NORMAL: return K->rand_normal(y3, 1, 0, 0, 1);
    case WF_K_RAND_INT: return K->rand_int(y3, 1, 0, 0, 2);
    case WF_K_BERNOULLI: return K->bernoulli(y3, 1, 0, NULL, 0.5);
    case WF_K_GEMM: return K->gemm(dt, false, false, 2, 2, 2, 1.0, ap, 2, 0, bp, 2, 0, 0.0, cp, 2, 0, 1, WF_CPU);
    case WF_K_GEMM_EPILOGUE:
        return K->gemm_epilogue(dt, false, false, 2, 2, 2, ap, 2, bp, 2, cp, 2, wf__host_ptr(bias), NULL, WF_CPU);
    case WF_K_GEMM_ACC: {   /* the accumulator is f32 (f64 for f64) */
        wf_tensor *acc = host(WF_SHAPE(2, 2), dt == WF_F64 ? WF_F64 : WF_F32, NULL);
        return K->gemm_acc(dt, false, false, 2, 2, 2, ap, 2, bp, 2, 1.0, wf__host_ptr(acc), 2, WF_CPU);
    }
    case WF_K_ADD_LAYER_NORM_FWD:
    case WF_K_ADD_LAYER_NORM_BWD: {   /* statistics f32 [rows] */
        wf_tensor *mean = host(WF_SHAPE(2), WF_F32, NULL), *rstd = host(WF_SHAPE(2), WF_F32, NULL);
        wf_tensor *r23 = host(WF_SHAPE(2, 3), dt, NULL);
        if (op == WF_K_ADD_LAYER_NORM_FWD) return K->add_layer_norm_fwd(o23, g23, mean, rstd, m23, r23, NULL, NULL, NULL, 1e-5);
        return K->add_layer_norm_bwd(o23, r23, NULL, NULL, NULL, g23, NULL, m23, mean, rstd, NULL);
    }
    case WF_K_LAYER_NORM_FWD:
    case WF_K_LAYER_NORM_BWD: {   /* the same, without r; y (and gy) may have another dtype */
        wf_tensor *mean = host(WF_SHAPE(2), WF_F32, NULL), *rstd = host(WF_SHAPE(2), WF_F32, NULL);
        if (op == WF_K_LAYER_NORM_FWD) return K->layer_norm_fwd(o23, mean, rstd, m23, NULL, NULL, 1e-5);
        return K->layer_norm_bwd(o23, NULL, NULL, g23, m23, mean, rstd, NULL);
    }
    case WF_K_SOFTMAX: return K->softmax(o23, m23, false, 1.0, 1.0, 0);
    case WF_K_SOFTMAX_BACKWARD: return K->softmax_backward(o23, g23, m23, false, 1.0, 1.0);
    case WF_K_GATHER: return K->gather(y2, x3, 0, idx);
    case WF_K_SCATTER_ADD: return K->scatter_add(y3, 0, idx, y2);
    case WF_K_INDEX_SELECT: return K->index_select(y2, x3, 0, idx);
    case WF_K_INDEX_ADD: return K->index_add(y3, 0, idx, y2);
    case WF_K_IM2COL: return K->im2col(colp, xp, dt, 1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, WF_CPU);
    case WF_K_COL2IM: return K->col2im(xp, colp, dt, 1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, WF_CPU);
    case WF_K_IM2COL_BATCH: return K->im2col_batch(colp, xp, dt, 1, 1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, WF_CPU);
    case WF_K_COL2IM_BATCH:
        return K->col2im_batch(xp, colp, NULL, dt, 1, 1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, WF_CPU);
    case WF_K_MAX_POOL2D: return K->max_pool2d(one, am, img, k, s, p, d);
    case WF_K_MAX_POOL2D_BACKWARD: return K->max_pool2d_backward(img, one, am);
    case WF_K_AVG_POOL2D: return K->avg_pool2d(one, img, k, s, p, true);
    case WF_K_AVG_POOL2D_BACKWARD: return K->avg_pool2d_backward(img, one, k, s, p, true);
    case WF_K_ADAPTIVE_AVG_POOL2D: return K->adaptive_avg_pool2d(img, img3);
    case WF_K_ADAPTIVE_AVG_POOL2D_BACKWARD: return K->adaptive_avg_pool2d_backward(img3, img);
    default: ck_abort_msg("kernel op %s has no tiny run in this test: add one", wf__kernel_op_names[op]); return 0;
    }
}

START_TEST(cpu_kernel_ops_match_masks) {
    const wf_kernels *K = &wf__cpu_kernels;
    for (int op = 0; op < WF_K_COUNT; op++) {
        bool present = wf__kernel_op_present(K, (wf_kernel_op)op);
        /* a mask without an entry would call NULL; an entry without a mask is never reached */
        ck_assert_msg(present == (K->support->kernel[op] != 0), "cpu: %s: entry %s but mask %#x",
                      wf__kernel_op_names[op], present ? "set" : "NULL", (unsigned)K->support->kernel[op]);
        if (!present) continue;
        for (int dt = 1; dt < WF_DTYPE_COUNT; dt++) {
            bool sup = wf__supports(K, WF_OPF_KERNEL, op, (wf_dtype)dt);
            wf_scope_begin();
            int rc = run_kernel_op(K, (wf_kernel_op)op, (wf_dtype)dt);
            wf_scope_end();
            if (sup) {
                ck_assert_msg(rc == 0, "cpu %s on %s claimed but failed: %s", wf__kernel_op_names[op],
                              wf_dtype_name((wf_dtype)dt), wf_error_message());
            } else {
                /* the softmax kernels trust their front-end (floating only) and write nothing */
                if (op != WF_K_SOFTMAX && op != WF_K_SOFTMAX_BACKWARD)
                    ck_assert_msg(rc != 0, "cpu %s on %s ran although its mask excludes it", wf__kernel_op_names[op],
                                  wf_dtype_name((wf_dtype)dt));
                wf_clear_error();
                check_refusal(WF_OPF_KERNEL, op, (wf_dtype)dt);
            }
        }
    }
}
END_TEST

START_TEST(device_supports_by_device) {
    ck_assert(wf__device_supports(WF_CPU, WF_OPF_KERNEL, WF_K_IM2COL, WF_F32));
    ck_assert(!wf__device_supports(WF_CPU, WF_OPF_KERNEL, WF_K_IM2COL, WF_F16));
    ck_assert(!wf__device_supports(WF_CPU, WF_OPF_KERNEL, WF_K_SDPA_FWD, WF_F16));
    ck_assert(!wf__device_supports(WF_CPU, WF_OPF_UNARY, WF_U_COUNT, WF_F32));  /* out of range: no */
    ck_assert(!wf__device_supports(WF_CPU, WF_OPF_UNARY, WF_U_EXP, WF_DTYPE_DEFAULT));
    ck_assert(wf__device_supports(WF_META, WF_OPF_KERNEL, WF_K_IM2COL, WF_F16));  /* shapes only */
    wf_clear_error();
}
END_TEST

/* ---------------------------------------------------------------- a backend missing kernels */

static int spy_calls;
static int spy_unary(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b) {
    spy_calls++;
    return wf__cpu_kernels.unary(op, y, x, a, b);
}
static int spy_im2col(void *col, const void *x, wf_dtype dt, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh,
                      int sw, int ph, int pw, int dh, int dw, int64_t oh, int64_t ow, wf_device dev) {
    spy_calls++;
    return wf__cpu_kernels.im2col(col, x, dt, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dev);
}
static int spy_adaptive(wf_tensor *y, const wf_tensor *x) {
    spy_calls++;
    return wf__cpu_kernels.adaptive_avg_pool2d(y, x);
}

static wf_op_support fake_support;
static wf_kernels fake;

/* "cuda" = CPU memory and kernels (spied), with the float32 kernels of a few ops missing */
static void fake_setup(void) {
    fake_support = *wf__cpu_kernels.support;
    unsigned f32 = WF_DTM(WF_F32);
    fake_support.unary[WF_U_EXP] &= (uint16_t)~f32;
    fake_support.unary[WF_U_RELU] &= (uint16_t)~f32;
    fake_support.binary[WF_B_ADD] &= (uint16_t)~f32;
    fake_support.reduce[WF_R_SUM] &= (uint16_t)~f32;
    fake_support.kernel[WF_K_IM2COL] = 0;
    fake_support.kernel[WF_K_IM2COL_BATCH] = 0;
    fake_support.kernel[WF_K_MAX_POOL2D] &= (uint16_t)~f32;
    fake_support.kernel[WF_K_ADAPTIVE_AVG_POOL2D] = 0;
    fake_support.kernel[WF_K_GEMM] &= (uint16_t)~f32;
    fake_support.kernel[WF_K_SOFTMAX] &= (uint16_t)~f32;
    fake_support.kernel[WF_K_GATHER] &= (uint16_t)~f32;
    fake = wf__cpu_kernels;
    fake.name = "cuda";
    fake.unary = spy_unary;
    fake.im2col = spy_im2col;
    fake.im2col_batch = NULL;
    fake.adaptive_avg_pool2d = spy_adaptive;
    fake.support = &fake_support;
    spy_calls = 0;
    wf__set_cuda_kernels_for_test(&fake);
}
static void fake_teardown(void) { wf__set_cuda_kernels_for_test(NULL); }

static wf_tensor *on_fake(const int64_t *shape, int nd, wf_dtype dt) {
    wf_tensor *c = wf_full(shape, nd, 0.5, dt);
    ck_assert_ptr_nonnull(c);
    wf_tensor *g = wf_to_device(c, WF_CUDA(0));
    ck_assert_msg(g != NULL, "%s", wf_error_message());
    return g;
}

START_TEST(missing_kernels_are_enotsup) {
    WF_SCOPE {
        wf_tensor *x = on_fake(WF_SHAPE(2, 3), WF_F32);
        /* supported ops run the fake backend's kernels */
        wf_tensor *y = wf_neg(x);
        ck_assert_msg(y != NULL, "%s", wf_error_message());
        ck_assert_int_eq(spy_calls, 1);
        ck_assert_int_eq(wf_tensor_device(y).type, WF_DEV_CUDA);
        ck_assert_ptr_nonnull(wf_exp(on_fake(WF_SHAPE(2), WF_F64)));
        spy_calls = 0;

        ck_assert_ptr_null(wf_exp(x));
        ck_assert_error(WF_ENOTSUP, "wf_exp: no kernel for float32 on cuda:0 (exp)");
        ck_assert_int_eq(wf_relu_(x), WF_ENOTSUP);
        ck_assert_error(WF_ENOTSUP, "wf_relu_: no kernel for float32 on cuda:0 (relu)");
        ck_assert_ptr_null(wf_add(x, x));
        ck_assert_error(WF_ENOTSUP, "wf_add: no kernel for float32 on cuda:0 (add)");
        ck_assert_ptr_null(wf_sum(x, WF_ALL_DIMS, false));
        ck_assert_error(WF_ENOTSUP, "no kernel for float32 on cuda:0 (sum)");
        ck_assert_ptr_null(wf_softmax(x, 1));
        ck_assert_error(WF_ENOTSUP, "wf_softmax: no kernel for float32 on cuda:0");
        ck_assert_ptr_null(wf_matmul(x, wf_transpose(x, 0, 1)));
        ck_assert_error(WF_ENOTSUP, "wf_matmul: no kernel for float32 on cuda:0 (gemm)");
        wf_tensor *idx = wf_to_device(wf_zeros(WF_SHAPE(2, 1), WF_I64), WF_CUDA(0));
        ck_assert_ptr_null(wf_gather(x, 1, idx));
        ck_assert_error(WF_ENOTSUP, "wf_gather: no kernel for float32 on cuda:0 (gather)");

        /* conv: no im2col at all, in any dtype, so no f32 detour for half either */
        wf_tensor *img = on_fake(WF_SHAPE(1, 1, 5, 5), WF_F32), *w = on_fake(WF_SHAPE(1, 1, 3, 3), WF_F32);
        ck_assert_ptr_null(wf_conv2d(img, w, NULL, NULL));
        ck_assert_error(WF_ENOTSUP, "wf_conv2d: no kernel for float32 on cuda:0 (im2col)");
        wf_tensor *img16 = on_fake(WF_SHAPE(1, 1, 5, 5), WF_F16), *w16 = on_fake(WF_SHAPE(1, 1, 3, 3), WF_F16);
        ck_assert_ptr_null(wf_conv2d(img16, w16, NULL, NULL));
        ck_assert_error(WF_ENOTSUP, "wf_conv2d: no kernel for float16 on cuda:0");
        ck_assert_ptr_null(wf_max_pool2d(img, &(wf_pool2d_opts){ .kernel = { 2, 2 } }));
        ck_assert_error(WF_ENOTSUP, "wf_max_pool2d: no kernel for float32 on cuda:0 (max_pool2d)");
        /* unequal bins: the backend's adaptive kernel or nothing (no CPU loops on a device) */
        ck_assert_ptr_null(wf_adaptive_avg_pool2d(img, 3, 3));
        ck_assert_error(WF_ENOTSUP, "wf_adaptive_avg_pool2d: no kernel for float32 on cuda:0 (adaptive_avg_pool2d)");
        /* equal bins are an average pool, which the backend has */
        ck_assert_ptr_nonnull(wf_adaptive_avg_pool2d(on_fake(WF_SHAPE(1, 1, 4, 4), WF_F32), 2, 2));
        ck_assert_int_eq(spy_calls, 0);   /* not one of the refused ops reached a kernel */
    }
}
END_TEST

START_TEST(cpu_half_conv_still_runs_in_f32) {
    /* the CPU has no half conv/pool kernels but has f32 ones: the front-end detours, as before */
    WF_SCOPE {
        wf_tensor *img = wf_full(WF_SHAPE(1, 1, 4, 4), 1.0, WF_BF16), *w = wf_full(WF_SHAPE(1, 1, 2, 2), 1.0, WF_BF16);
        wf_tensor *y = wf_conv2d(img, w, NULL, NULL);
        ck_assert_msg(y != NULL, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);
        ck_assert_tensor_near(y, ((double[]){ 4, 4, 4, 4, 4, 4, 4, 4, 4 }), 9, 1e-6);
        wf_tensor *p = wf_max_pool2d(img, &(wf_pool2d_opts){ .kernel = { 2, 2 } });
        ck_assert_tensor_near(p, ((double[]){ 1, 1, 1, 1 }), 4, 1e-6);
        wf_tensor *a = wf_adaptive_avg_pool2d(wf_full(WF_SHAPE(1, 1, 5, 5), 2.0, WF_F16), 3, 3);
        ck_assert_tensor_near(a, ((double[]){ 2, 2, 2, 2, 2, 2, 2, 2, 2 }), 9, 1e-6);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("oplist");
    TCase *tc = tcase_create("oplist");
    tcase_add_test(tc, names_cover_every_op);
    tcase_add_test(tc, cpu_unary_binary_reduce_match_masks);
    tcase_add_test(tc, cpu_kernel_ops_match_masks);
    tcase_add_test(tc, device_supports_by_device);
    tcase_add_test(tc, cpu_half_conv_still_runs_in_f32);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("fake_backend");
    tcase_add_checked_fixture(tf, fake_setup, fake_teardown);
    tcase_add_test(tf, missing_kernels_are_enotsup);
    suite_add_tcase(s, tf);
    return tt_run(s);
}
