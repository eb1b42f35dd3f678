/* tests/tensor/test_conv.c: wf_conv2d, wf_max_pool2d, wf_avg_pool2d, wf_adaptive_avg_pool2d:
 * worked values, random inputs against naive loops (stride, padding, dilation, groups),
 * ceil_mode output sizes, gradients (by hand and gradcheck) and bad inputs. */
#include "test_util.h"


typedef struct { int64_t N, C, H, W, O; int kh, kw, sh, sw, ph, pw, dh, dw, g; } cg;

static void conv_ref(const cg *G, const double *x, const double *w, const double *b, double *y,
                     int64_t oh, int64_t ow) {
    int64_t Cg = G->C / G->g, Og = G->O / G->g;
    for (int64_t n = 0; n < G->N; n++)
        for (int64_t o = 0; o < G->O; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double acc = b ? b[o] : 0;
                    int64_t grp = o / Og;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int p = 0; p < G->kh; p++)
                            for (int q = 0; q < G->kw; q++) {
                                int64_t yy = i * G->sh - G->ph + p * G->dh, xx = j * G->sw - G->pw + q * G->dw;
                                if (yy < 0 || yy >= G->H || xx < 0 || xx >= G->W) continue;
                                acc += x[((n * G->C + grp * Cg + c) * G->H + yy) * G->W + xx] *
                                       w[((o * Cg + c) * G->kh + p) * G->kw + q];
                            }
                    y[((n * G->O + o) * oh + i) * ow + j] = acc;
                }
}

START_TEST(conv_worked_values) {
    WF_SCOPE {
        /* x = 1..9 (3x3), w = [[1,0],[0,-1]]: y[i,j] = x[i,j] - x[i+1,j+1] = -4 */
        wf_tensor *x = tt_f64((double[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, WF_SHAPE(1, 1, 3, 3));
        wf_tensor *w = tt_f64((double[]){ 1, 0, 0, -1 }, WF_SHAPE(1, 1, 2, 2));
        wf_tensor *y = wf_conv2d(x, w, NULL, NULL);
        ck_assert_shape(y, 1, 1, 2, 2);
        ck_assert_tensor_near(y, ((double[]){ -4, -4, -4, -4 }), 4, 1e-15);
        /* padding 1 and bias 0.5: y[i,j] = x[i-1,j-1] - x[i,j] + 0.5 (zeros outside) */
        wf_tensor *b = tt_f64((double[]){ 0.5 }, WF_SHAPE(1));
        wf_tensor *yp = wf_conv2d(x, w, b, &(wf_conv2d_opts){ .padding = { 1, 1 } });
        ck_assert_shape(yp, 1, 1, 4, 4);
        const double e[] = { -1, -2, -3, 0, -4, -4, -4, 3, -7, -4, -4, 6, 0, 7, 8, 9 };
        double e5[16];
        for (int i = 0; i < 16; i++) e5[i] = e[i] + 0.5;
        ck_assert_tensor_near(yp, e5, 16, 1e-15);
        /* stride 2 with padding 1: every other output of the above */
        wf_tensor *ys = wf_conv2d(x, w, b, &(wf_conv2d_opts){ .padding = { 1, 1 }, .stride = { 2, 2 } });
        ck_assert_shape(ys, 1, 1, 2, 2);
        ck_assert_tensor_near(ys, ((double[]){ e5[0], e5[2], e5[8], e5[10] }), 4, 1e-15);
        /* unbatched [C,H,W] */
        wf_tensor *yu = wf_conv2d(wf_reshape(x, WF_SHAPE(1, 3, 3)), w, NULL, NULL);
        ck_assert_shape(yu, 1, 2, 2);
        ck_assert_tensor_near(yu, ((double[]){ -4, -4, -4, -4 }), 4, 1e-15);
        /* f32 */
        wf_tensor *y32 = wf_conv2d(wf_to_dtype(x, WF_F32), wf_to_dtype(w, WF_F32), wf_to_dtype(b, WF_F32),
                                   &(wf_conv2d_opts){ .padding = { 1, 1 } });
        ck_assert_int_eq(wf_tensor_dtype(y32), WF_F32);
        ck_assert_tensor_near(y32, e5, 16, 1e-7);
    }
}
END_TEST

static void check_conv_random(cg G, bool bias, wf_dtype dt, double tol, bool noncontig) {
    int64_t oh = (G.H + 2 * G.ph - G.dh * (G.kh - 1) - 1) / G.sh + 1;
    int64_t ow = (G.W + 2 * G.pw - G.dw * (G.kw - 1) - 1) / G.sw + 1;
    int64_t nx = G.N * G.C * G.H * G.W, nw = G.O * (G.C / G.g) * G.kh * G.kw, ny = G.N * G.O * oh * ow;
    double *x = malloc(sizeof(double) * (size_t)nx), *w = malloc(sizeof(double) * (size_t)nw);
    double *b = malloc(sizeof(double) * (size_t)G.O), *y = malloc(sizeof(double) * (size_t)ny);
    tt_fill(x, nx, 1); tt_fill(w, nw, 2); tt_fill(b, G.O, 3);
    conv_ref(&G, x, w, bias ? b : NULL, y, oh, ow);
    WF_SCOPE {
        wf_tensor *tx = tt_f64(x, WF_SHAPE(G.N, G.C, G.H, G.W));
        if (noncontig) tx = wf_transpose(wf_contiguous(wf_transpose(tx, 2, 3)), 2, 3);
        wf_tensor *tw = tt_f64(w, WF_SHAPE(G.O, G.C / G.g, G.kh, G.kw));
        wf_tensor *tb = bias ? wf_to_dtype(tt_f64(b, WF_SHAPE(G.O)), dt) : NULL;
        wf_conv2d_opts o = { { G.sh, G.sw }, { G.ph, G.pw }, { G.dh, G.dw }, G.g };
        wf_tensor *ty = wf_conv2d(wf_to_dtype(tx, dt), wf_to_dtype(tw, dt), tb, &o);
        ck_assert_shape(ty, G.N, G.O, oh, ow);
        ck_assert_tensor_near(ty, y, ny, tol);
    }
    free(x); free(w); free(b); free(y);
}

START_TEST(conv_random_vs_naive) {
    const cg cases[] = {
        { 2, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 2, 2, 2 },     /* stride 2, pad 1, dilation 2, groups 2 */
        { 3, 3, 7, 7, 5, 3, 2, 1, 2, 0, 1, 1, 1, 1 },     /* rectangular kernel, mixed stride */
        { 2, 6, 5, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1, 3 },     /* 1x1 direct path, groups 3 */
        { 2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4 },     /* depthwise */
        { 1, 2, 4, 4, 3, 4, 4, 1, 1, 0, 0, 1, 1, 1 },     /* kernel = input */
        { 4, 8, 16, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1 },  /* a larger one */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int bias = 0; bias < 2; bias++) {
            check_conv_random(cases[i], bias, WF_F64, 1e-12, false);
            check_conv_random(cases[i], bias, WF_F32, 1e-5, bias);
        }
}
END_TEST

/* naive gradients of L = sum(y * gy) for conv_ref's geometry */
static void conv_ref_grads(const cg *G, const double *x, const double *w, const double *gy,
                           int64_t oh, int64_t ow, double *gx, double *gw, double *gb) {
    int64_t Cg = G->C / G->g, Og = G->O / G->g;
    memset(gx, 0, sizeof(double) * (size_t)(G->N * G->C * G->H * G->W));
    memset(gw, 0, sizeof(double) * (size_t)(G->O * Cg * G->kh * G->kw));
    memset(gb, 0, sizeof(double) * (size_t)G->O);
    for (int64_t n = 0; n < G->N; n++)
        for (int64_t o = 0; o < G->O; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double g = gy[((n * G->O + o) * oh + i) * ow + j];
                    int64_t grp = o / Og;
                    gb[o] += g;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int p = 0; p < G->kh; p++)
                            for (int q = 0; q < G->kw; q++) {
                                int64_t yy = i * G->sh - G->ph + p * G->dh, xx = j * G->sw - G->pw + q * G->dw;
                                if (yy < 0 || yy >= G->H || xx < 0 || xx >= G->W) continue;
                                int64_t xi = ((n * G->C + grp * Cg + c) * G->H + yy) * G->W + xx;
                                int64_t wi = ((o * Cg + c) * G->kh + p) * G->kw + q;
                                gx[xi] += g * w[wi];
                                gw[wi] += g * x[xi];
                            }
                }
}

/* forward and all three gradients against the naive loops (which_grads: bit 0 x, bit 1 w) */
static void check_conv_grads(cg G, wf_dtype dt, double tol, int which_grads) {
    int64_t oh = (G.H + 2 * G.ph - G.dh * (G.kh - 1) - 1) / G.sh + 1;
    int64_t ow = (G.W + 2 * G.pw - G.dw * (G.kw - 1) - 1) / G.sw + 1;
    int64_t nx = G.N * G.C * G.H * G.W, nw = G.O * (G.C / G.g) * G.kh * G.kw, ny = G.N * G.O * oh * ow;
    double *x = malloc(sizeof(double) * (size_t)nx), *w = malloc(sizeof(double) * (size_t)nw);
    double *b = malloc(sizeof(double) * (size_t)G.O), *y = malloc(sizeof(double) * (size_t)ny);
    double *gy = malloc(sizeof(double) * (size_t)ny), *gx = malloc(sizeof(double) * (size_t)nx);
    double *gw = malloc(sizeof(double) * (size_t)nw), *gb = malloc(sizeof(double) * (size_t)G.O);
    tt_fill(x, nx, 11); tt_fill(w, nw, 12); tt_fill(b, G.O, 13); tt_fill(gy, ny, 14);
    conv_ref(&G, x, w, b, y, oh, ow);
    conv_ref_grads(&G, x, w, gy, oh, ow, gx, gw, gb);
    WF_SCOPE {
        wf_tensor *tx = wf_to_dtype(tt_f64(x, WF_SHAPE(G.N, G.C, G.H, G.W)), dt);
        wf_tensor *tw = wf_to_dtype(tt_f64(w, WF_SHAPE(G.O, G.C / G.g, G.kh, G.kw)), dt);
        wf_tensor *tb = wf_to_dtype(tt_f64(b, WF_SHAPE(G.O)), dt);
        ck_assert_int_eq(wf_set_requires_grad(tx, (which_grads & 1) != 0), 0);
        ck_assert_int_eq(wf_set_requires_grad(tw, (which_grads & 2) != 0), 0);
        ck_assert_int_eq(wf_set_requires_grad(tb, true), 0);
        wf_conv2d_opts o = { { G.sh, G.sw }, { G.ph, G.pw }, { G.dh, G.dw }, G.g };
        wf_tensor *ty = wf_conv2d(tx, tw, tb, &o);
        ck_assert_shape(ty, G.N, G.O, oh, ow);
        ck_assert_tensor_near(ty, y, ny, tol);
        wf_tensor *tg = wf_to_dtype(tt_f64(gy, WF_SHAPE(G.N, G.O, oh, ow)), dt);
        ck_assert_int_eq(wf_backward(wf_sum_all(wf_mul(ty, tg)), NULL, false), 0);
        if (which_grads & 1) ck_assert_tensor_near(wf_grad(tx), gx, nx, tol);
        else ck_assert_ptr_null(wf_grad(tx));
        if (which_grads & 2) ck_assert_tensor_near(wf_grad(tw), gw, nw, tol);
        else ck_assert_ptr_null(wf_grad(tw));
        ck_assert_tensor_near(wf_grad(tb), gb, G.O, tol);
    }
    free(x); free(w); free(b); free(y); free(gy); free(gx); free(gw); free(gb);
}

START_TEST(conv_grads_vs_naive) {
    const cg cases[] = {
        { 5, 1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1 },   /* the CNN's first layer, odd batch */
        { 3, 6, 14, 14, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1 },  /* its second (smaller), odd batch */
        { 1, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1 },    /* one image, odd sizes */
        { 3, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 2, 2, 2 },     /* stride 2, pad 1, dilation 2, groups 2 */
        { 2, 3, 7, 10, 5, 3, 2, 1, 3, 2, 0, 1, 2, 1 },    /* rectangular, mixed stride/pad/dilation */
        { 3, 6, 8, 8, 6, 1, 1, 2, 2, 0, 0, 1, 1, 3 },     /* 1x1 with stride 2 (not the direct path), groups 3 */
        { 2, 6, 5, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1, 3 },     /* 1x1 direct path, groups 3 */
        { 2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4 },     /* depthwise */
        { 2, 2, 3, 3, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1 },     /* kernel bigger than the input (padded) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_conv_grads(cases[i], WF_F64, 1e-11, 3);
        check_conv_grads(cases[i], WF_F32, 2e-5, 3);
    }
    /* x without grad (the first layer of a network): only w and b; and only x and b */
    check_conv_grads(cases[0], WF_F32, 2e-5, 2);
    check_conv_grads(cases[1], WF_F64, 1e-11, 1);
    check_conv_grads(cases[3], WF_F64, 1e-11, 0);
}
END_TEST

/* A batch whose col buffers take more than one chunk (~16M elements each): the forward and
 * gradients (weight/bias gradients accumulated over chunks) still match the naive loops. */
START_TEST(conv_grads_multi_chunk) {
    const cg G = { 41, 4, 64, 64, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1 };   /* 409600 col elements per image */
    check_conv_grads(G, WF_F32, 1e-4, 3);
}
END_TEST

/* The vectorized 2x2 max pool: rows long enough for full vectors plus a tail, NaNs and ties,
 * f32 and f64, values and argmax (through the gradient) against a naive pool. */
START_TEST(max_pool_2x2_vs_naive) {
    const int64_t N = 2, C = 3, H = 10, W = 37, oh = 5, ow = 18;   /* W odd: last column unused */
    double x[2 * 3 * 10 * 37], ym[2 * 3 * 5 * 18], gx[2 * 3 * 10 * 37];
    tt_fill(x, N * C * H * W, 21);
    for (int64_t i = 0; i < N * C * H * W; i++) {
        x[i] = round(x[i] * 4) / 4;             /* many ties */
        if (i % 53 == 7) x[i] = NAN;
        if (i % 97 == 3) x[i] = -INFINITY;
    }
    memset(gx, 0, sizeof gx);
    for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                const int64_t cand[4] = { (2 * i) * W + 2 * j, (2 * i) * W + 2 * j + 1,
                                          (2 * i + 1) * W + 2 * j, (2 * i + 1) * W + 2 * j + 1 };
                int64_t bi = cand[0];
                for (int k = 1; k < 4; k++) {
                    double v = x[pl * H * W + cand[k]], best = x[pl * H * W + bi];
                    if (isnan(best)) break;
                    if (v > best || isnan(v)) bi = cand[k];
                }
                ym[(pl * oh + i) * ow + j] = x[pl * H * W + bi];
                gx[pl * H * W + bi] += 1;
            }
    for (int d = 0; d < 2; d++)
        WF_SCOPE {
            wf_tensor *t = wf_to_dtype(tt_f64(x, WF_SHAPE(N, C, H, W)), d ? WF_F64 : WF_F32);
            ck_assert_int_eq(wf_set_requires_grad(t, true), 0);
            wf_tensor *y = wf_max_pool2d(t, &(wf_pool2d_opts){ .kernel = { 2, 2 } });
            ck_assert_shape(y, N, C, oh, ow);
            double got[2 * 3 * 5 * 18];
            ck_assert_int_eq(wf_to_array(y, got, WF_F64), 0);
            for (int64_t i = 0; i < N * C * oh * ow; i++)
                ck_assert_msg((isnan(got[i]) && isnan(ym[i])) || got[i] == ym[i],
                              "dtype %d element %lld: got %g expected %g", d, (long long)i, got[i], ym[i]);
            ck_assert_int_eq(wf_backward(y, wf_ones_like(y), false), 0);   /* y has NaNs: seed ones */
            ck_assert_tensor_near(wf_grad(t), gx, (int64_t)(sizeof gx / sizeof gx[0]), 0);
        }
}
END_TEST

START_TEST(pool_worked_values) {
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(1, 17, 1, WF_F64), WF_SHAPE(1, 1, 4, 4));
        wf_tensor *m = wf_max_pool2d(x, &(wf_pool2d_opts){ .kernel = { 2, 2 } });
        ck_assert_shape(m, 1, 1, 2, 2);
        ck_assert_tensor_near(m, ((double[]){ 6, 8, 14, 16 }), 4, 0);
        wf_tensor *a = wf_avg_pool2d(x, &(wf_pool2d_opts){ .kernel = { 2, 2 } });
        ck_assert_tensor_near(a, ((double[]){ 3.5, 5.5, 11.5, 13.5 }), 4, 1e-15);
        /* kernel 3, stride 2, padding 1: windows rows/cols {-1,0,1}, {1,2,3} */
        wf_pool2d_opts o = { .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 } };
        ck_assert_tensor_near(wf_max_pool2d(x, &o), ((double[]){ 6, 8, 14, 16 }), 4, 0);
        /* count_include_pad: corner window holds 1,2,5,6 (sum 14) over 9 cells, or over 4 */
        const double cip[] = { 14.0 / 9, (2 + 3 + 4 + 6 + 7 + 8) / 9.0,
                               (5 + 6 + 9 + 10 + 13 + 14) / 9.0, (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0 };
        ck_assert_tensor_near(wf_avg_pool2d(x, &o), cip, 4, 1e-15);
        o.count_include_pad_false = true;
        const double ncip[] = { 14.0 / 4, (2 + 3 + 4 + 6 + 7 + 8) / 6.0,
                                (5 + 6 + 9 + 10 + 13 + 14) / 6.0, (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0 };
        ck_assert_tensor_near(wf_avg_pool2d(x, &o), ncip, 4, 1e-15);
        /* dilation 2, kernel 2: picks x[i,j], x[i,j+2], x[i+2,j], x[i+2,j+2] */
        wf_tensor *md = wf_max_pool2d(x, &(wf_pool2d_opts){ .kernel = { 2, 2 }, .stride = { 1, 1 }, .dilation = { 2, 2 } });
        ck_assert_shape(md, 1, 1, 2, 2);
        ck_assert_tensor_near(md, ((double[]){ 11, 12, 15, 16 }), 4, 0);
        /* unbatched and negative values (padding must act as -inf) */
        wf_tensor *xn = wf_neg(wf_reshape(x, WF_SHAPE(1, 4, 4)));
        wf_tensor *mn = wf_max_pool2d(xn, &(wf_pool2d_opts){ .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 } });
        ck_assert_shape(mn, 1, 2, 2);
        ck_assert_tensor_near(mn, ((double[]){ -1, -2, -5, -6 }), 4, 0);
        /* f32 */
        ck_assert_tensor_near(wf_max_pool2d(wf_to_dtype(x, WF_F32), &(wf_pool2d_opts){ .kernel = { 2, 2 } }),
                              ((double[]){ 6, 8, 14, 16 }), 4, 0);
    }
}
END_TEST

START_TEST(pool_ceil_mode) {
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(1, 26, 1, WF_F64), WF_SHAPE(1, 1, 5, 5));
        wf_pool2d_opts o = { .kernel = { 2, 2 } };
        ck_assert_shape(wf_max_pool2d(x, &o), 1, 1, 2, 2);
        o.ceil_mode = true;
        wf_tensor *m = wf_max_pool2d(x, &o);
        ck_assert_shape(m, 1, 1, 3, 3);
        ck_assert_tensor_near(m, ((double[]){ 7, 9, 10, 17, 19, 20, 22, 24, 25 }), 9, 0);
        /* the partial windows average what they hold (they lie outside the padded input) */
        wf_tensor *a = wf_avg_pool2d(x, &o);
        ck_assert_tensor_near(a, ((double[]){ 4, 6, 7.5, 14, 16, 17.5, 21.5, 23.5, 25 }), 9, 1e-15);
        /* the last window must start inside the input or left padding: 5, k2 s2 p1 -> 3 */
        wf_pool2d_opts p = { .kernel = { 2, 2 }, .stride = { 2, 2 }, .padding = { 1, 1 }, .ceil_mode = true };
        ck_assert_shape(wf_max_pool2d(x, &p), 1, 1, 3, 3);
        ck_assert_shape(wf_avg_pool2d(x, &p), 1, 1, 3, 3);
        /* H 7, k2 s2: 3 (floor) vs 4 (ceil); W 6, k3 s2: 2 vs 3 */
        wf_tensor *x7 = wf_zeros(WF_SHAPE(1, 1, 7, 6), WF_F64);
        ck_assert_shape(wf_max_pool2d(x7, &(wf_pool2d_opts){ .kernel = { 2, 3 }, .stride = { 2, 2 } }), 1, 1, 3, 2);
        ck_assert_shape(wf_max_pool2d(x7, &(wf_pool2d_opts){ .kernel = { 2, 3 }, .stride = { 2, 2 }, .ceil_mode = true }), 1, 1, 4, 3);
    }
}
END_TEST

START_TEST(adaptive_pool_values) {
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_arange(1, 26, 1, WF_F64), WF_SHAPE(1, 1, 5, 5));
        /* bins for 5 -> 3: [0,2), [1,4), [3,5) */
        double xv[25], e[9];
        wf_to_array(x, xv, WF_F64);
        const int lo[3] = { 0, 1, 3 }, hi[3] = { 2, 4, 5 };
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0;
                for (int h = lo[i]; h < hi[i]; h++)
                    for (int w = lo[j]; w < hi[j]; w++) s += xv[h * 5 + w];
                e[i * 3 + j] = s / ((hi[i] - lo[i]) * (hi[j] - lo[j]));
            }
        wf_tensor *y = wf_adaptive_avg_pool2d(x, 3, 3);
        ck_assert_shape(y, 1, 1, 3, 3);
        ck_assert_tensor_near(y, e, 9, 1e-15);
        /* global average, divisible bins (= avg pool), unbatched, upsampling bins */
        ck_assert_tensor_near(wf_adaptive_avg_pool2d(x, 1, 1), ((double[]){ 13 }), 1, 1e-15);
        wf_tensor *x4 = wf_reshape(wf_arange(1, 17, 1, WF_F64), WF_SHAPE(1, 4, 4));
        wf_tensor *y4 = wf_adaptive_avg_pool2d(x4, 2, 2);
        ck_assert_shape(y4, 1, 2, 2);
        ck_assert_tensor_near(y4, ((double[]){ 3.5, 5.5, 11.5, 13.5 }), 4, 1e-15);
        wf_tensor *up = wf_adaptive_avg_pool2d(wf_reshape(wf_arange(1, 3, 1, WF_F64), WF_SHAPE(1, 1, 1, 2)), 1, 3);
        ck_assert_tensor_near(up, ((double[]){ 1, 1.5, 2 }), 3, 1e-15);
    }
}
END_TEST

START_TEST(conv_pool_backward_by_hand) {
    WF_SCOPE {
        wf_tensor *x = tt_leaf((double[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, WF_SHAPE(1, 1, 3, 3));
        wf_tensor *w = tt_leaf((double[]){ 1, 0, 0, -1 }, WF_SHAPE(1, 1, 2, 2));
        wf_tensor *b = tt_leaf((double[]){ 0.5 }, WF_SHAPE(1));
        wf_tensor *y = wf_conv2d(x, w, b, NULL);
        ck_assert_str_eq(wf_grad_fn_name(y), "ConvolutionBackward");
        ck_assert_int_eq(wf_backward(wf_sum_all(y), NULL, false), 0);
        /* dL/dx = sum of w placed at each output: +1 at top-left 2x2, -1 at bottom-right 2x2 */
        ck_assert_tensor_near(wf_grad(x), ((double[]){ 1, 1, 0, 1, 0, -1, 0, -1, -1 }), 9, 1e-15);
        /* dL/dw[p,q] = sum of the 2x2 block at (p,q) */
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 12, 16, 24, 28 }), 4, 1e-15);
        ck_assert_tensor_near(wf_grad(b), ((double[]){ 4 }), 1, 1e-15);

        wf_tensor *xp = tt_leaf((double[]){ 1, 5, 2, 0, 3, 4, 9, 1, 7, 8, 6, 2, 0, 0, 1, 3 }, WF_SHAPE(1, 1, 4, 4));
        wf_tensor *mp = wf_max_pool2d(xp, &(wf_pool2d_opts){ .kernel = { 2, 2 } });
        ck_assert_str_eq(wf_grad_fn_name(mp), "MaxPool2DWithIndicesBackward");
        ck_assert_tensor_near(mp, ((double[]){ 5, 9, 8, 6 }), 4, 0);
        ck_assert_int_eq(wf_backward(wf_sum_all(mp), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(xp), ((double[]){ 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0 }), 16, 0);
    }
}
END_TEST

typedef struct { wf_conv2d_opts c; wf_pool2d_opts p; int which; int64_t oh, ow; bool t; } cargs;

static wf_tensor *conv_fn(wf_tensor *const *in, int n, void *ud) {
    cargs *a = ud;
    wf_tensor *x = a->t ? wf_transpose(in[0], -1, -2) : in[0];
    switch (a->which) {
    case 0: return wf_conv2d(x, in[1], n > 2 ? in[2] : NULL, &a->c);
    case 1: return wf_max_pool2d(x, &a->p);
    case 2: return wf_avg_pool2d(x, &a->p);
    default: return wf_adaptive_avg_pool2d(x, a->oh, a->ow);
    }
}

#define GRADCHECK(ins, n, ud) \
    ck_assert_msg(wf_gradcheck(conv_fn, ins, n, ud, 1e-6, 1e-7, 1e-5) == 0, "%s:%d %s", __FILE__, __LINE__, wf_error_message())

START_TEST(conv_gradcheck) {
    WF_SCOPE {
        wf_tensor *x = tt_rnd_leaf(1, WF_SHAPE(2, 4, 7, 6)), *w = tt_rnd_leaf(2, WF_SHAPE(6, 2, 3, 3));
        wf_tensor *b = tt_rnd_leaf(3, WF_SHAPE(6));
        /* stride 2, padding 1, dilation 2, groups 2, bias */
        cargs a = { .c = { { 2, 2 }, { 1, 1 }, { 2, 2 }, 2 } };
        GRADCHECK(((wf_tensor *[]){ x, w, b }), 3, &a);
        GRADCHECK(((wf_tensor *[]){ x, w }), 2, &a);
        /* plain, padding 1 and stride (2,1) with rectangular kernel, transposed input */
        wf_tensor *w1 = tt_rnd_leaf(4, WF_SHAPE(3, 4, 2, 3));
        cargs p = { .c = { { 2, 1 }, { 1, 0 }, { 0, 0 }, 0 } };
        GRADCHECK(((wf_tensor *[]){ x, w1 }), 2, &p);
        p.t = true;
        GRADCHECK(((wf_tensor *[]){ x, tt_rnd_leaf(5, WF_SHAPE(3, 4, 2, 2)), tt_rnd_leaf(6, WF_SHAPE(3)) }), 3, &p);
        /* 1x1 (direct GEMM path), groups 2 */
        cargs d = { .c = { { 0, 0 }, { 0, 0 }, { 0, 0 }, 2 } };
        GRADCHECK(((wf_tensor *[]){ x, tt_rnd_leaf(7, WF_SHAPE(4, 2, 1, 1)), tt_rnd_leaf(8, WF_SHAPE(4)) }), 3, &d);
        /* unbatched */
        cargs u = { .c = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } };
        GRADCHECK(((wf_tensor *[]){ tt_rnd_leaf(9, WF_SHAPE(2, 4, 5)), tt_rnd_leaf(10, WF_SHAPE(3, 2, 3, 3)) }), 2, &u);
    }
}
END_TEST

START_TEST(pool_gradcheck) {
    WF_SCOPE {
        /* distinct, well separated values so max windows have no near-ties */
        double v[2 * 3 * 7 * 6];
        for (int i = 0; i < 2 * 3 * 7 * 6; i++) v[i] = (double)((i * 37) % 252) * 0.01 - 1;
        wf_tensor *x = tt_leaf(v, WF_SHAPE(2, 3, 7, 6));
        cargs m = { .which = 1, .p = { .kernel = { 3, 2 }, .stride = { 2, 1 }, .padding = { 1, 1 } } };
        GRADCHECK(&x, 1, &m);
        m.p.dilation[0] = 2; m.p.ceil_mode = true; m.p.padding[0] = 0;
        GRADCHECK(&x, 1, &m);
        m.t = true;
        GRADCHECK(&x, 1, &m);
        /* avg_pool2d(3, stride 2, pad 1) and adaptive_avg_pool2d to 3x4 and 1x1 are op harness rows */
        cargs av = { .which = 2, .p = { .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 } } };
        av.p.count_include_pad_false = true;
        av.p.ceil_mode = true;
        GRADCHECK(&x, 1, &av);
        av.t = true;
        GRADCHECK(&x, 1, &av);
        cargs ad = { .which = 3, .oh = 7, .ow = 3 };   /* divisible: the avg-pool path */
        GRADCHECK(&x, 1, &ad);
    }
}
END_TEST

START_TEST(conv_bad_inputs) {
    WF_SCOPE {
        wf_clear_error();
        wf_tensor *x = wf_zeros(WF_SHAPE(1, 3, 8, 8), WF_F32), *w = wf_zeros(WF_SHAPE(4, 3, 3, 3), WF_F32);
        ck_assert_ptr_null(wf_conv2d(NULL, w, NULL, NULL));
        ck_assert_error(WF_ENULL, "wf_conv2d");
        ck_assert_ptr_null(wf_conv2d(wf_zeros(WF_SHAPE(3, 8), WF_F32), w, NULL, NULL));
        ck_assert_error(WF_ESHAPE, "wf_conv2d: input must be 4-D");
        ck_assert_ptr_null(wf_conv2d(x, wf_zeros(WF_SHAPE(4, 3, 3), WF_F32), NULL, NULL));
        ck_assert_error(WF_ESHAPE, "wf_conv2d: weight must be 4-D");
        ck_assert_ptr_null(wf_conv2d(x, wf_zeros(WF_SHAPE(4, 2, 3, 3), WF_F32), NULL, NULL));
        ck_assert_error(WF_ESHAPE, "wf_conv2d: input [1,3,8,8] has 3 channels but weight [4,2,3,3] expects 2");
        ck_assert_ptr_null(wf_conv2d(x, w, NULL, &(wf_conv2d_opts){ .groups = 2 }));
        ck_assert_error(WF_ESHAPE, "not divisible by groups");
        ck_assert_ptr_null(wf_conv2d(wf_zeros(WF_SHAPE(1, 4, 8, 8), WF_F32), wf_zeros(WF_SHAPE(3, 2, 3, 3), WF_F32),
                                     NULL, &(wf_conv2d_opts){ .groups = 2 }));
        ck_assert_error(WF_ESHAPE, "out_channels (3) are not divisible by groups (2)");
        ck_assert_ptr_null(wf_conv2d(wf_zeros(WF_SHAPE(1, 3, 2, 2), WF_F32), w, NULL, NULL));
        ck_assert_error(WF_ESHAPE, "bigger than the padded input");
        ck_assert_ptr_null(wf_conv2d(x, w, NULL, &(wf_conv2d_opts){ .dilation = { 5, 5 } }));
        ck_assert_error(WF_ESHAPE, "bigger than the padded input");
        ck_assert_ptr_null(wf_conv2d(x, w, wf_zeros(WF_SHAPE(3), WF_F32), NULL));
        ck_assert_error(WF_ESHAPE, "wf_conv2d: bias");
        ck_assert_ptr_null(wf_conv2d(x, wf_zeros(WF_SHAPE(4, 3, 3, 3), WF_F64), NULL, NULL));
        ck_assert_error(WF_EDTYPE, "wf_conv2d");
        ck_assert_ptr_null(wf_conv2d(wf_zeros(WF_SHAPE(1, 3, 8, 8), WF_I32), wf_zeros(WF_SHAPE(4, 3, 3, 3), WF_I32), NULL, NULL));
        ck_assert_error(WF_EDTYPE, "wf_conv2d");
        ck_assert_ptr_null(wf_conv2d(x, w, NULL, &(wf_conv2d_opts){ .stride = { -1, 1 } }));
        ck_assert_error(WF_EINVAL, "wf_conv2d: stride");

        wf_pool2d_opts k2 = { .kernel = { 2, 2 } };
        ck_assert_ptr_null(wf_max_pool2d(NULL, &k2));
        ck_assert_error(WF_ENULL, "wf_max_pool2d");
        ck_assert_ptr_null(wf_max_pool2d(x, NULL));
        ck_assert_error(WF_EINVAL, "wf_max_pool2d");
        ck_assert_ptr_null(wf_max_pool2d(wf_zeros(WF_SHAPE(8, 8), WF_F32), &k2));
        ck_assert_error(WF_ESHAPE, "wf_max_pool2d: input must be 4-D");
        ck_assert_ptr_null(wf_avg_pool2d(x, &(wf_pool2d_opts){ .kernel = { 0, 2 } }));
        ck_assert_error(WF_EINVAL, "wf_avg_pool2d: kernel size");
        ck_assert_ptr_null(wf_avg_pool2d(x, &(wf_pool2d_opts){ .kernel = { 2, 2 }, .padding = { 2, 0 } }));
        ck_assert_error(WF_EINVAL, "at most half of the kernel size");
        ck_assert_ptr_null(wf_max_pool2d(x, &(wf_pool2d_opts){ .kernel = { 9, 2 } }));
        ck_assert_error(WF_ESHAPE, "wf_max_pool2d: input [1,3,8,8] is too small");
        ck_assert_ptr_null(wf_avg_pool2d(x, &(wf_pool2d_opts){ .kernel = { 2, 2 }, .dilation = { 2, 2 } }));
        ck_assert_error(WF_EINVAL, "wf_avg_pool2d: dilation");
        ck_assert_ptr_null(wf_max_pool2d(wf_zeros(WF_SHAPE(1, 1, 4, 4), WF_I64), &k2));
        ck_assert_error(WF_EDTYPE, "wf_max_pool2d");
        ck_assert_ptr_null(wf_adaptive_avg_pool2d(x, 0, 2));
        ck_assert_error(WF_EINVAL, "wf_adaptive_avg_pool2d");
        ck_assert_ptr_null(wf_adaptive_avg_pool2d(wf_zeros(WF_SHAPE(8), WF_F32), 2, 2));
        ck_assert_error(WF_ESHAPE, "wf_adaptive_avg_pool2d");
        ck_assert_ptr_null(wf_adaptive_avg_pool2d(NULL, 2, 2));
        ck_assert_error(WF_ENULL, "wf_adaptive_avg_pool2d");
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, conv_worked_values);
    tcase_add_test(tc, conv_random_vs_naive);
    tcase_add_test(tc, conv_grads_vs_naive);
    tcase_add_test(tc, conv_grads_multi_chunk);
    tcase_add_test(tc, max_pool_2x2_vs_naive);
    tcase_add_test(tc, pool_worked_values);
    tcase_add_test(tc, pool_ceil_mode);
    tcase_add_test(tc, adaptive_pool_values);
    tcase_add_test(tc, conv_pool_backward_by_hand);
    tcase_add_test(tc, conv_gradcheck);
    tcase_add_test(tc, pool_gradcheck);
    tcase_add_test(tc, conv_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
