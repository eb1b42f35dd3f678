/* tests/cuda/test_cuda_xent.c: the softmax cross-entropy kernels' two paths (tensor/cuda/
 * cuda_softmax.cu) agree, and both are near a CPU reference. The vector path takes contiguous
 * 16-byte-aligned f32 / bf16 / f16 rows whose length is a multiple of 16 bytes; the same
 * values one element off the alignment take the generic kernels, so one run compares both
 * (WEFT_XENT_NOVEC=1 would force the generic ones everywhere: leave it unset).
 *
 * The two paths sum a row in different orders, so they agree within f32 rounding, not bit
 * for bit (the tolerances are derived at each check). Every row has one "needle" logit that
 * carries about half of the row's softmax, at a column that moves from row to row (first,
 * last, the last vector's first, then spread over the row): a kernel that skipped or
 * misplaced it would move the row's log-sum-exp by ln 2, far outside the tolerance. The
 * gradient is checked in every element, so a lost or misplaced store shows as well.
 *
 * Shapes: GPT-2's chunk (bf16 [4096, 50304], label smoothing, ignored rows), short and long
 * rows in every dtype against the CPU (f64), a row length that is not a multiple of the
 * vector (generic both ways), and masked classes (-inf logits, as a padded vocabulary).
 *
 * A plain program like the other tests/cuda ones (the GPU machine has no Check): one line
 * per check, {"checks":N,"failed":M} last; exit 1 on a failure, 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L   /* setenv */
#include "weft/weft.h"

#include "tensor/ops_raw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void fail(const char *what, const char *name) {
    printf("FAIL %s %s: %s\n", what, name, wf_error() ? wf_error_message() : "");
    wf_clear_error();
    n_failed++;
}

/* max over the elements of |got - ref| / (atol + rtol |ref|), computed on the device in f32
 * (the operands are f32 or narrower, so the difference is exact); must be <= 1. NaN in
 * either fails. */
static void close_to(const char *name, wf_tensor *got, wf_tensor *ref, double atol, double rtol) {
    n_checks++;
    if (!got || !ref) { fail("close", name); return; }
    wf_scope_begin();
    wf_tensor *g = wf_to_dtype(got, WF_F32), *r = wf_to_device(wf_to_dtype(ref, WF_F32), wf_tensor_device(got));
    wf_tensor *den = r ? wf_add_scalar(wf_mul_scalar(wf_abs(r), rtol), atol) : NULL;
    wf_tensor *err = g && den ? wf_div(wf_abs(wf_sub(g, r)), den) : NULL;
    wf_tensor *w = err ? wf_amax(err, NULL, 0, false) : NULL;
    double worst = NAN;
    if (!w || wf_to_array(w, &worst, WF_F64)) {
        fail("close", name);
    } else if (!(worst <= 1)) {
        printf("FAIL close %s: worst error %.3g of the tolerance (atol %.3g, rtol %.3g)\n", name, worst, atol, rtol);
        n_failed++;
    } else {
        printf("ok   close %s (worst %.3g of the tolerance)\n", name, worst);
    }
    wf_scope_end();
}

/* t's values in a fresh [rows, cols] view one element into a buffer of numel + 1:
 * contiguous, but not 16-byte aligned, so the generic kernels take it */
static wf_tensor *misaligned(wf_tensor *t, int64_t rows, int64_t cols) {
    wf_tensor *buf = wf_zeros_on(WF_SHAPE(rows * cols + 1), wf_tensor_dtype(t), WF_CUDA(0));
    wf_tensor *v = buf ? wf_view(wf_narrow(buf, 0, 1, rows * cols), WF_SHAPE(rows, cols)) : NULL;
    if (!v || wf_copy_(v, t)) return NULL;
    return v;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uni(void) {   /* xorshift64*, [0, 1) */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

/* the needle's column in row r: the first, the last, the last vector's first, then spread */
static int64_t needle_col(int64_t r, int64_t cols) {
    if (r == 0) return 0;
    if (r == 1) return cols - 1;
    if (r == 2) return cols >= 8 ? cols - 8 : 0;
    return (r * 7919 + r / 3) % cols;
}

/* logits [rows, cols] as f32 values: uniform in [-4, 4], one needle a row with as much
 * exp as the rest together (the mean of e^x is sinh(4) / 4 = 6.82); columns >= masked (if
 * masked < cols) are -inf. Targets: every 8th row ignored (-100), every 3rd the needle,
 * others spread. The caller owns both (scope). */
static int make_case(int64_t rows, int64_t cols, int64_t masked, wf_tensor **x, wf_tensor **t) {
    float *xv = malloc(sizeof(float) * (size_t)(rows * cols));
    int64_t *tv = malloc(sizeof(int64_t) * (size_t)rows);
    if (!xv || !tv) { free(xv); free(tv); return -1; }
    int64_t live = masked < cols ? masked : cols;
    float needle = (float)log((double)live * 6.82);
    for (int64_t r = 0; r < rows; r++) {
        float *xr = xv + r * cols;
        for (int64_t j = 0; j < cols; j++) xr[j] = j < live ? (float)(8 * uni() - 4) : -INFINITY;
        int64_t nc = needle_col(r, live);
        xr[nc] = needle;
        tv[r] = r % 8 == 5 ? -100 : r % 3 == 0 ? nc : (r * 131) % live;
    }
    *x = wf_from_data(xv, WF_SHAPE(rows, cols), WF_F32);
    *t = wf_from_data(tv, WF_SHAPE(rows), WF_I64);
    free(xv);
    free(tv);
    return *x && *t ? 0 : -1;
}

/* one unit in the last place, relative, of dt (the spacing at the bottom of a binade) */
static double ulp(wf_dtype dt) { return dt == WF_BF16 ? 0x1p-7 : dt == WF_F16 ? 0x1p-10 : 0x1p-23; }

static void run(wf_dtype dt, int64_t rows, int64_t cols, int64_t masked, double ls, bool cpu_ref) {
    char name[128], n2[192];
    snprintf(name, sizeof name, "%s [%lld, %lld]%s ls %.2g", wf_dtype_name(dt), (long long)rows, (long long)cols,
             masked < cols ? " masked" : "", ls);
    wf_scope_begin();
    wf_tensor *x0, *t0;
    if (make_case(rows, cols, masked, &x0, &t0)) { fail("setup", name); wf_scope_end(); return; }
    wf_tensor *x = wf_to_dtype(wf_to_device(x0, WF_CUDA(0)), dt), *t = wf_to_device(t0, WF_CUDA(0));
    wf_tensor *xm = x ? misaligned(x, rows, cols) : NULL;
    wf_tensor *coef = wf_to_device(wf_ones(WF_SHAPE(rows), WF_F32), WF_CUDA(0));   /* g = 1 a row */
    if (!x || !t || !xm || !coef) { fail("setup", name); wf_scope_end(); return; }
    wf_tensor *lv, *sv, *lg, *sg;   /* loss and lse, vector (aligned) and generic (misaligned) */
    if (wf__xent_rows_raw("cross_entropy", x, t, -100, ls, WF_F32, &lv, &sv) ||
        wf__xent_rows_raw("cross_entropy", xm, t, -100, ls, WF_F32, &lg, &sg)) {
        fail("forward", name);
        wf_scope_end();
        return;
    }
    /* lse: f32 sums of the row's exp in two orders. Each path's relative error on the sum is
     * at most (k + 50) u, u = 2^-24: k terms added in turn by a thread (a generic warp's lane
     * <= 1024 / 32; a generic block's thread cols / 512; a vector thread two vectors of 8, or
     * cols / 512 + 16 on long rows), then the tree's 10 levels of merges, each a rescale's
     * exp (a few ulps) and an add. So |d lse| <= 2 (k + 50) u between the paths, and
     * (k + 50) u against f64, plus a few ulps of lse (rtol) for its fast-math log. The exps'
     * own errors (fast math: 2 + 1.2 |x - m| ulps) weigh by each term's share of the sum and
     * stay within that. A missed needle moves lse by ln 2. */
    const double u = 0x1p-24, k = cols / 512.0 + 16 > 32 ? cols / 512.0 + 16 : 32;
    const double atol = 2 * (k + 50) * u, rtol = 8 * u;
    /* loss = (1 - ls)(lse - x_t) + ls (lse - mean x): lse's error, and the mean's f32 sum
     * (relative error (k + 10) u of sum |x| / cols <= max |x| = the needle's, < 13) */
    const double latol = atol + ls * 2 * (k + 10) * u * 13;
    snprintf(n2, sizeof n2, "lse vector vs generic %s", name);
    close_to(n2, sv, sg, atol, rtol);
    snprintf(n2, sizeof n2, "loss vector vs generic %s", name);
    close_to(n2, lv, lg, latol, rtol);
    wf_tensor *gv = wf__xent_rows_bwd_raw("cross_entropy", coef, x, t, sv, -100, ls);
    wf_tensor *gg = wf__xent_rows_bwd_raw("cross_entropy", coef, xm, t, sg, -100, ls);
    wf_tensor *gs = wf__xent_rows_bwd_raw("cross_entropy", coef, xm, t, sv, -100, ls);
    if (!gv || !gg || !gs) { fail("backward", name); wf_scope_end(); return; }
    /* the same lse into both: the same per-element function, so at most a rounding apart in
     * dt (one ulp; nothing else differs) */
    snprintf(n2, sizeof n2, "gradient vector vs generic, the same lse, %s", name);
    close_to(n2, gv, gs, 1e-30, ulp(dt));
    /* each path from its own lse: softmax p moves by p |d lse| <= atol (g = 1, p <= 1),
     * then the rounding to dt */
    snprintf(n2, sizeof n2, "gradient vector vs generic %s", name);
    close_to(n2, gv, gg, atol, ulp(dt));
    if (cpu_ref) {
        /* the reference on the CPU in f64 (composed ops), from the same rounded logits */
        wf_tensor *xc = wf_to_dtype(wf_to_device(x, WF_CPU), WF_F64), *tc = t0, *lr, *sr;
        wf_tensor *cc = wf_ones(WF_SHAPE(rows), WF_F64);
        if (!xc || !cc || wf__xent_rows_raw("cross_entropy", xc, tc, -100, ls, WF_F64, &lr, &sr)) {
            fail("reference", name);
            wf_scope_end();
            return;
        }
        wf_tensor *gr = wf__xent_rows_bwd_raw("cross_entropy", cc, xc, tc, sr, -100, ls);
        /* f32 sums against f64: the bounds above; the gradient also has the exp's own
         * relative error (up to ~32 ulps of f32 where p is tiny) and its rounding to dt */
        snprintf(n2, sizeof n2, "lse vector vs CPU %s", name);
        close_to(n2, sv, sr, atol, rtol);
        snprintf(n2, sizeof n2, "lse generic vs CPU %s", name);
        close_to(n2, sg, sr, atol, rtol);
        snprintf(n2, sizeof n2, "loss vector vs CPU %s", name);
        close_to(n2, lv, lr, latol, rtol);
        snprintf(n2, sizeof n2, "loss generic vs CPU %s", name);
        close_to(n2, lg, lr, latol, rtol);
        snprintf(n2, sizeof n2, "gradient vector vs CPU %s", name);
        close_to(n2, gv, gr, atol, ulp(dt) + 32 * u);
        snprintf(n2, sizeof n2, "gradient generic vs CPU %s", name);
        close_to(n2, gg, gr, atol, ulp(dt) + 32 * u);
    }
    wf_scope_end();
}

int main(void) {
    unsetenv("WEFT_XENT_NOVEC");   /* both paths are compared (tensor/cuda/cuda_softmax.cu) */
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    const wf_dtype dts[3] = { WF_BF16, WF_F16, WF_F32 };
    for (int i = 0; i < 3; i++) {
        run(dts[i], 37, 64, 64, 0.0, true);      /* short rows: a block of 32 threads a row */
        run(dts[i], 37, 64, 64, 0.1, true);
        run(dts[i], 21, 3000, 3000, 0.1, true);  /* a block per row, a partial last round */
        run(dts[i], 21, 3001, 3001, 0.0, true);  /* not a whole number of vectors: generic both ways */
        run(dts[i], 9, 520, 500, 0.0, true);     /* masked classes: -inf logits, a finite loss */
    }
    run(WF_BF16, 16, 50304, 50304, 0.1, true);     /* GPT-2's vocabulary, against the CPU */
    run(WF_BF16, 4096, 50304, 50304, 0.1, false);  /* GPT-2's chunk of the LM loss */
    run(WF_BF16, 4096, 50304, 50304, 0.0, false);
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
