/* tests/cuda/test_cuda_mixed.c: f32 add / sub / mul with a bf16 or f16 operand on CUDA, which
 * reads the half operand itself (wf_kernels.binary_widens: no cast kernel), against the CPU,
 * which casts it to f32 first. Widening is exact, so values and gradients must agree bit for
 * bit: contiguous aligned operands (the vector kernel), sizes with a tail, a broadcast half
 * operand and a transposed one (the generic kernel), the half operand on either side.
 *
 * A plain program like the other tests/cuda ones: one line per check, {"checks":N,"failed":M}
 * last; exit 1 on a failure, 77 without a GPU. */
#include "weft/weft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int n_checks, n_failed;

static void same_bits(const char *name, wf_tensor *a, wf_tensor *b) {
    n_checks++;
    int64_t n = b ? wf_numel(b) : 0;
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!a || !b || wf_numel(a) != n || wf_tensor_dtype(a) != wf_tensor_dtype(b) || wf_to_array(a, x, WF_F64) ||
        wf_to_array(b, y, WF_F64)) {
        printf("FAIL %s: %s\n", name, wf_error() ? wf_error_message() : "dtype or size differ");
        wf_clear_error();
        n_failed++;
    } else {
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += x[i] != y[i];
        if (bad) { printf("FAIL %s: %lld of %lld differ\n", name, (long long)bad, (long long)n); n_failed++; }
        else printf("ok   %s\n", name);
    }
    free(x);
    free(y);
}

typedef wf_tensor *(*binop)(wf_tensor *, wf_tensor *);

/* op(a, h) (or op(h, a) when swap) with a f32 [r, c] and h half of shape hs (hr x hc, or its
 * transpose when tr), on both devices: y, a's and h's gradients compared bitwise */
static void run(const char *opname, binop op, wf_dtype hdt, int64_t r, int64_t c, int64_t hr, int64_t hc, bool tr,
                bool swap) {
    char name[160];
    snprintf(name, sizeof name, "%s f32 [%lld, %lld] %s %s [%lld, %lld]%s", opname, (long long)r, (long long)c,
             swap ? "(half first)" : "with", wf_dtype_name(hdt), (long long)hr, (long long)hc, tr ? " transposed" : "");
    wf_scope_begin();
    wf_manual_seed(3);
    wf_tensor *a0 = wf_randn(WF_SHAPE(r, c), WF_F32), *g0 = wf_randn(WF_SHAPE(r, c), WF_F32);
    int64_t hs[2] = { tr ? hc : hr, tr ? hr : hc };
    wf_tensor *h0 = wf_to_dtype(wf_randn(hs, 2, WF_F32), hdt);
    wf_tensor *y[2], *ga[2], *gh[2];
    for (int d = 0; d < 2; d++) {
        wf_device dev = d ? WF_CUDA(0) : WF_CPU;
        wf_tensor *a = wf_detach(wf_to_device(a0, dev)), *h = wf_detach(wf_to_device(h0, dev));
        y[d] = ga[d] = gh[d] = NULL;
        if (!a || !h || wf_set_requires_grad(a, true) || wf_set_requires_grad(h, true)) continue;
        wf_tensor *hv = tr ? wf_t(h) : h;
        wf_tensor *o = swap ? op(hv, a) : op(a, hv);
        if (!o || wf_backward(o, wf_to_device(g0, dev), false)) continue;
        y[d] = wf_to_device(o, WF_CPU);
        ga[d] = wf_to_device(wf_grad(a), WF_CPU);
        gh[d] = wf_to_device(wf_grad(h), WF_CPU);
    }
    char n2[200];
    snprintf(n2, sizeof n2, "%s: value", name);
    same_bits(n2, y[1], y[0]);
    snprintf(n2, sizeof n2, "%s: f32 grad", name);
    same_bits(n2, ga[1], ga[0]);
    snprintf(n2, sizeof n2, "%s: half grad", name);
    same_bits(n2, gh[1], gh[0]);
    wf_scope_end();
}

int main(void) {
    int nd = wf_cuda_device_count();
    wf_clear_error();
    if (nd <= 0) { printf("no CUDA device: skipped\n"); return 77; }
    const char *names[3] = { "add", "sub", "mul" };
    const binop ops[3] = { wf_add, wf_sub, wf_mul };
    const wf_dtype hd[2] = { WF_BF16, WF_F16 };
    for (int o = 0; o < 3; o++)
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 2; s++) {
                run(names[o], ops[o], hd[h], 64, 96, 64, 96, false, s);    /* the vector kernel */
                run(names[o], ops[o], hd[h], 37, 29, 37, 29, false, s);    /* a tail of 5 */
                run(names[o], ops[o], hd[h], 37, 29, 1, 29, false, s);     /* broadcast rows */
                run(names[o], ops[o], hd[h], 37, 29, 37, 29, true, s);     /* strided */
            }
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
