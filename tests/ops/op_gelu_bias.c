/* tests/ops/op_gelu_bias.c: the kernel op gelu_backward_bias (tensor/ops.def) through its raw
 * front-end wf__gelu_backward_bias_raw (tensor/ops_linear_fused.c), on the device it is given,
 * against the composed reference: gx bit for bit against wf__unary_backward_raw's GELU
 * backward (the kernel must compute the same per-element formula), gb against gx's column sums
 * taken in f64 from the values gx holds. Both GELU forms, f32 / f16 / bf16 (f64 and the CPU:
 * the op declines, 1 with nothing made and no error), shapes with N a multiple of the
 * 16-byte vector (2048 x 96, 700 x 1000, 64 x 3072, [2, 350, 96]) and not (700 x 999: the
 * generic kernel). And the errors: NULL, 0-dim, shapes, dtypes and devices that do not match.
 *
 * gb's tolerance: the kernel adds gx's rounded values in f32 over a tree of at most a few
 * hundred levels (row lanes, lanes, chunks), so |gb - sum| <= 2e-5 * sum |gx| covers the f32
 * rounding, plus gb's own rounding to its dtype (2^-8 relative for bf16, 2^-10 for f16). A
 * wrong or lost column or row is off by the size of the values themselves. */
#include "op_table.h"
#include "tensor/ops_raw.h"
#include "weft_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WEFT_MINIMAL
/* the minimal preset has no ops_linear_fused.c (tensor/meson.build): nothing to check */
int gelu_bias_vs_composed(wf_device dev, int *checks);
int gelu_bias_vs_composed(wf_device dev, int *checks) {
    (void)dev, (void)checks;
    return 0;
}
#else
static int fail_at(const char *what, wf_device dev, const char *why) {
    char dn[16];
    wf_device_str(dev, dn, sizeof dn);
    printf("FAIL gelu_backward_bias %s on %s: %s\n", what, dn, why);
    wf_clear_error();
    return 1;
}

/* the raw op fails with code and a message naming the function and `part` */
static int expect_err(const char *what, wf_device dev, int rc, int code, const char *part, int *checks) {
    ++*checks;
    const char *m = wf_error_message();
    if (rc == code && wf_error() == code && m && strstr(m, "wf__gelu_backward_bias_raw: ") && strstr(m, part)) {
        wf_clear_error();
        return 0;
    }
    char why[512];
    snprintf(why, sizeof why, "returned %d (error %d \"%s\"), expected %d with \"%s\"", rc, wf_error(),
             m ? m : "", code, part);
    return fail_at(what, dev, why);
}

static wf_tensor *on(wf_tensor *t, wf_dtype dt, wf_device dev) { return wf_to_device(wf_to_dtype(t, dt), dev); }

static int errors(wf_device dev, int *checks) {
    int f = 0;
    wf_tensor *gx = NULL, *gb = NULL;
    wf_tensor *a = on(wf_ones(WF_SHAPE(3, 5), WF_F32), WF_F32, dev);
    wf_tensor *b = on(wf_ones(WF_SHAPE(3, 4), WF_F32), WF_F32, dev);
    wf_tensor *h = on(wf_ones(WF_SHAPE(3, 5), WF_F32), WF_BF16, dev), *s = on(wf_scalar(1.0, WF_F32), WF_F32, dev);
    if (!a || !b || !h || !s) return fail_at("errors: setup", dev, wf_error_message());
    f += expect_err("NULL gy", dev, wf__gelu_backward_bias_raw(NULL, a, true, &gx, &gb), WF_ENULL, "NULL gy", checks);
    f += expect_err("shapes", dev, wf__gelu_backward_bias_raw(a, b, true, &gx, &gb), WF_ESHAPE,
                    "gy [3, 5] and pre [3, 4] must have one shape", checks);
    f += expect_err("0-dim", dev, wf__gelu_backward_bias_raw(s, s, false, &gx, &gb), WF_ESHAPE, "0-dim", checks);
    f += expect_err("dtypes", dev, wf__gelu_backward_bias_raw(a, h, false, &gx, &gb), WF_EDTYPE,
                    "gy is float32 and pre is bfloat16", checks);
    if (dev.type != WF_DEV_CPU) {
        wf_tensor *c = wf_ones(WF_SHAPE(3, 5), WF_F32);
        f += expect_err("devices", dev, wf__gelu_backward_bias_raw(c, a, true, &gx, &gb), WF_EDEVICE, "gy is on cpu",
                        checks);
    }
    ++*checks;
    if (gx || gb) f += fail_at("errors", dev, "an output was set on an error");
    return f;
}

/* one case: 1 on a failure (a FAIL line printed) */
static int one(wf_device dev, wf_dtype dt, const int64_t *shape, int ndim, bool tanh, int *checks) {
    char what[128];
    int k = snprintf(what, sizeof what, "%s %s [", wf_dtype_name(dt), tanh ? "tanh" : "erf");
    for (int i = 0; i < ndim; i++)
        k += snprintf(what + k, sizeof what - (size_t)k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(what + k, sizeof what - (size_t)k, "]");
    wf_manual_seed(29);
    wf_tensor *pre = on(wf_mul_scalar(wf_randn(shape, ndim, WF_F32), 2.0), dt, dev);
    wf_tensor *gy = on(wf_randn(shape, ndim, WF_F32), dt, dev);
    if (!pre || !gy) return fail_at(what, dev, wf_error_message());
    wf_tensor *gx = NULL, *gb = NULL;
    int rc = wf__gelu_backward_bias_raw(gy, pre, tanh, &gx, &gb);
    ++*checks;
    bool runs = dev.type == WF_DEV_CUDA && dt != WF_F64;
    if (!runs) {   /* no kernel: declines, nothing made, no error */
        if (rc == 1 && !gx && !gb && !wf_error()) return 0;
        char why[320];
        snprintf(why, sizeof why, "expected to decline (1), got %d, outputs %s, error \"%s\"", rc,
                 gx || gb ? "made" : "not made", wf_error_message());
        return fail_at(what, dev, why);
    }
    if (rc || !gx || !gb) {
        char why[320];
        snprintf(why, sizeof why, "returned %d: %s", rc, wf_error_message());
        return fail_at(what, dev, why);
    }
    int64_t N = shape[ndim - 1], n = wf_numel(pre), rows = N ? n / N : 0;
    if (wf_tensor_dtype(gx) != dt || wf_tensor_dtype(gb) != dt || wf_ndim(gb) != 1 || wf_numel(gb) != N ||
        wf_numel(gx) != n)
        return fail_at(what, dev, "outputs of the wrong dtype or shape");
    wf_tensor *ref = wf__unary_backward_raw(tanh ? WF_U_GELU_TANH : WF_U_GELU, gy, pre, false, 0, 0);
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double *b = malloc(sizeof(double) * (size_t)(N ? N : 1));
    int bad = 0;
    char why[256] = "";
    if (!ref || !x || !y || !b || wf_to_array(gx, x, WF_F64) || wf_to_array(ref, y, WF_F64) ||
        wf_to_array(gb, b, WF_F64)) {
        snprintf(why, sizeof why, "reading: %s", wf_error_message());
        bad = 1;
    }
    for (int64_t i = 0; !bad && i < n; i++)
        if (x[i] != y[i] && !(isnan(x[i]) && isnan(y[i]))) {
            snprintf(why, sizeof why, "gx element %lld is %.9g, the unary GELU backward gives %.9g", (long long)i, x[i],
                     y[i]);
            bad = 1;
        }
    double rel = dt == WF_BF16 ? 1.0 / 256 : dt == WF_F16 ? 1.0 / 1024 : 0;
    for (int64_t c = 0; !bad && c < N; c++) {
        double s = 0, sa = 0;
        for (int64_t r = 0; r < rows; r++) s += x[r * N + c], sa += fabs(x[r * N + c]);
        if (!(fabs(b[c] - s) <= 2e-5 * sa + rel * fabs(s))) {
            snprintf(why, sizeof why, "gb[%lld] is %.9g, gx's column sums to %.9g (sum |gx| %.6g)", (long long)c, b[c],
                     s, sa);
            bad = 1;
        }
    }
    free(x);
    free(y);
    free(b);
    return bad ? fail_at(what, dev, why) : 0;
}

int gelu_bias_vs_composed(wf_device dev, int *checks);
int gelu_bias_vs_composed(wf_device dev, int *checks) {
    int f = errors(dev, checks);
    static const wf_dtype dts[4] = { WF_BF16, WF_F16, WF_F32, WF_F64 };
    static const struct { int64_t s[3]; int nd; } shapes[] = {
        { { 2048, 96 }, 2 }, { { 700, 1000 }, 2 }, { { 700, 999 }, 2 }, { { 64, 3072 }, 2 }, { { 2, 350, 96 }, 3 },
        { { 0, 8 }, 2 },
    };
    /* the CPU declines at once: one shape shows it (and keeps the ASan run short) */
    int nshapes = dev.type == WF_DEV_CPU ? 1 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int d = 0; d < 4; d++)
        for (int t = 0; t < 2; t++)
            for (int s = 0; s < nshapes; s++) WF_SCOPE { f += one(dev, dts[d], shapes[s].s, shapes[s].nd, t, checks); }
    return f;
}
#endif
