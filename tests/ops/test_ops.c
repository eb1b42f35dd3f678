/* tests/ops/test_ops.c: the op harness's driver. For every row of op_table.c, every device
 * (the CPU, and CUDA when wf_cuda_device_count() > 0) and every dtype of the row:
 *   - the forward against the same op on the CPU in f64, from the same rounded inputs,
 *     compared after casting the reference to the result's dtype; NaN where the reference
 *     has NaN, and an error where the reference errors;
 *   - wf_gradcheck (finite differences in f64) on the CPU, on the small samples;
 *   - the backward (of sum(y * w), w fixed) on each device and dtype against the CPU's in f64;
 * then the exact PyTorch semantics of op_expect.c on each device; and last, every op of
 * tensor/ops.def that no check reached (tensor_impl.h's wf__op_calls): an uncalled CPU op
 * fails the run, an uncalled CUDA op is reported.
 *
 * The samples are chosen to reach every kernel path a backend picks by shape, layout and
 * dtype (CUDA's vector and misaligned elementwise paths, split reductions, block-per-row
 * softmax and cross-entropy, layer norm's width classes, cuBLASLt's epilogues, the fused
 * attention's head-dim classes and fall-backs, mixed-dtype operands), and prep() hands each
 * kernel the sample's exact layout. This replaced the hand-written CUDA parity program
 * (tests/cuda/test_cuda_parity.c, removed); its non-op check, the caching allocator, is
 * tests/cuda/test_cuda_allocator.c. A plain C program (no Check), so the GPU machine builds
 * it too.
 *
 * Output: one FAIL line per failure, then {"checks":N,"failed":M,"uncalled":[...]}.
 * Exit 0, 1 on any failure, 77 (skip) when --device cuda has no GPU.
 * Usage: test_ops [--device cpu|cuda] [--op NAME] [-v] [-t]   (NAME: a row name or its prefix;
 * -v names every sample as it runs, -t prints each row's time) */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, setenv under a plain -std=c11 (bench/device_run.sh) */
#endif
#include "op_table.h"

#include "tensor/tensor_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int n_checks, n_failed, verbose, timing;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    n_failed++;
}

static bool on_cuda;   /* the device of the check running */

/* relative tolerance of results in dt (elementwise ops; rows scale it). CUDA's elementwise
 * kernels are built with --use_fast_math: tanh-based f32 ops differ by up to ~1e-4. */
static double dtol(wf_dtype dt) {
    switch (dt) {
    case WF_F64: return 1e-10;
    case WF_F32: return on_cuda ? 1e-4 : 2e-5;
    case WF_F16: return 4e-3;
    case WF_BF16: return 2e-2;
    default: return 0;   /* integers and bool: exact */
    }
}

/* A copy of t rounded to dt then converted to `as`, on dev, with t's exact layout: the part of
 * t's storage that t spans is converted and t's strides and storage offset rebuilt over it, so
 * kernels see what the sample asked for (a transposed, sliced or channels-last view, a row
 * offset by one element that is not 16-byte aligned). Kept inputs (indices) only move. */
static wf_tensor *prep(wf_tensor *t, bool keep, wf_dtype dt, wf_dtype as, wf_device dev) {
    wf_tensor *v;
    if (keep || !wf_numel(t)) {
        v = keep ? t : wf_to_dtype(wf_to_dtype(t, dt), as);
        v = wf_to_device(v, dev);
    } else {
        int64_t span = t->offset + 1, one = 1;   /* the elements t can reach */
        for (int d = 0; d < t->ndim; d++) span += (t->shape[d] - 1) * t->stride[d];
        wf_tensor *base = wf__view_of(t, 1, &span, &one, 0);
        base = base ? wf_to_device(wf_to_dtype(wf_to_dtype(base, dt), as), dev) : NULL;
        if (base && !wf_is_contiguous(base)) base = wf_contiguous(base);
        v = base ? wf__view_of(base, t->ndim, t->shape, t->stride, t->offset) : NULL;
    }
    return v ? wf_detach(v) : NULL;
}

/* y against the reference r (any dtype; cast to y's first). scale: the absolute part of the
 * tolerance, relative to the largest |r|. Returns true when close. */
static bool compare(const char *what, wf_tensor *y, wf_tensor *r, double tol, double scale) {
    n_checks++;
    if (!wf_same_shape(y, r)) {
        char a[96], b[96];
        fail("%s: shape %s, reference %s", what, wf_shape_str(y, a, sizeof a), wf_shape_str(r, b, sizeof b));
        return false;
    }
    int64_t n = wf_numel(y);
    if (!n) return true;
    wf_tensor *rc = wf_to_dtype(wf_to_device(r, WF_CPU), wf_tensor_dtype(y));
    double *a = malloc(sizeof(double) * (size_t)n), *b = malloc(sizeof(double) * (size_t)n);
    bool ok = a && b && rc && !wf_to_array(y, a, WF_F64) && !wf_to_array(rc, b, WF_F64);
    if (!ok) fail("%s: reading the values: %s", what, wf_error_message());
    double mx = 0;
    for (int64_t i = 0; ok && i < n; i++)
        if (isfinite(b[i]) && fabs(b[i]) > mx) mx = fabs(b[i]);
    for (int64_t i = 0; ok && i < n; i++) {
        if (a[i] == b[i] || (isnan(a[i]) && isnan(b[i]))) continue;
        if (isnan(a[i]) || isnan(b[i]) || isinf(a[i]) || isinf(b[i]) ||
            !(fabs(a[i] - b[i]) <= tol * (fabs(b[i]) + scale * (mx > 1 ? mx : 1)))) {
            fail("%s: element %lld of %lld is %.9g, reference %.9g (tolerance %.2g)", what, (long long)i,
                 (long long)n, a[i], b[i], tol);
            ok = false;
        }
    }
    free(a);
    free(b);
    return ok;
}

static const char *dev_name(wf_device d) { return d.type == WF_DEV_CUDA ? "cuda" : "cpu"; }

/* sum(y * w) with w fixed by y's shape; y cast to f64 so the loss adds nothing of its own */
static int backward_of(wf_tensor *y, wf_device dev) {
    wf_manual_seed(7);
    wf_tensor *w = wf_to_device(wf_randn(wf_shape(y), wf_ndim(y), WF_F64), dev);
    wf_tensor *l = w ? wf_sum_all(wf_mul(wf_to_dtype(y, WF_F64), w)) : NULL;
    return l ? wf_backward(l, NULL, false) : wf_error();
}

typedef struct gc_ctx {
    const op_row *row;
    wf_tensor *all[OP_MAXIN];
    int n, ng, pos[OP_MAXIN];
} gc_ctx;
static wf_tensor *gc_call(wf_tensor *const *g, int ng, void *ud) {
    gc_ctx *c = ud;
    wf_tensor *in[OP_MAXIN];
    memcpy(in, c->all, sizeof in);
    for (int i = 0; i < ng; i++) in[c->pos[i]] = g[i];
    return c->row->fn(in, c->n, NULL);
}

static void run_sample(const op_row *row, const op_sample *s, wf_device dev, wf_dtype dt) {
    char what[256];
    snprintf(what, sizeof what, "%s %s %s [%s]", row->name, dev_name(dev), wf_dtype_name(dt), s->desc);
    if (verbose) printf("     %s\n", what);
    op_dtype_under_test = dt;
    bool fl = wf_dtype_is_floating(dt);
    on_cuda = dev.type == WF_DEV_CUDA;
    wf_tensor *in[OP_MAXIN] = { 0 }, *ref[OP_MAXIN] = { 0 };
    for (int i = 0; i < s->n; i++) {
        bool keep = s->keep >> i & 1;
        in[i] = prep(s->in[i], keep, dt, dt, dev);
        /* random ops: the stream depends on the dtype, so the reference is the CPU's in dt */
        ref[i] = prep(s->in[i], keep, dt, row->tol < 0 ? dt : WF_F64, WF_CPU);
        if (!in[i] || !ref[i]) { fail("%s: making input %d: %s", what, i, wf_error_message()); wf_clear_error(); return; }
    }
    /* forward */
    wf_tensor *r = row->fn(ref, s->n, NULL);
    wf_clear_error();
    wf_tensor *y = row->fn(in, s->n, NULL);
    n_checks++;
    if (!r) {   /* PyTorch errors here too (an empty max, a view of a strided tensor): so must we */
        if (y) fail("%s: succeeded where the f64 reference fails", what);
        wf_clear_error();
        return;
    }
    if (!y) { fail("%s: %s", what, wf_error_message()); wf_clear_error(); return; }
    double tol = row->tol > 0 ? row->tol * dtol(wf_tensor_dtype(y)) : 0;
    if (wf_dtype_is_floating(wf_tensor_dtype(y)) && row->tol > 0 && tol < 1e-12) tol = 1e-12;
    snprintf(what + strlen(what), sizeof what - strlen(what), " forward");
    compare(what, y, r, tol, 2e-2);
    what[strlen(what) - 8] = 0;
    if (!row->ngrad || !fl || !(s->flags & (S_GC | S_BW)) || !wf_dtype_is_floating(wf_tensor_dtype(y))) return;

    /* gradcheck: the CPU in f64 */
    int ng = row->ngrad < s->n ? row->ngrad : s->n;
    if (dev.type == WF_DEV_CPU && dt == WF_F64 && (s->flags & S_GC)) {
        /* wf_gradcheck takes f64 inputs only: it sees the differentiated ones, gc_call puts
         * the others (indices, targets) back around them */
        gc_ctx c = { .row = row, .n = s->n };
        wf_tensor *g[OP_MAXIN] = { 0 };
        for (int i = 0; i < s->n; i++) {
            c.all[i] = prep(s->in[i], s->keep >> i & 1, WF_F64, WF_F64, WF_CPU);
            if (i < ng && !(s->keep >> i & 1)) {
                wf_set_requires_grad(c.all[i], true);
                c.pos[c.ng] = i;
                g[c.ng++] = c.all[i];
            }
        }
        n_checks++;
        if (wf_gradcheck(gc_call, g, c.ng, &c, 1e-6, 1e-7 * row->tol, 1e-5 * row->tol)) {
            fail("%s gradcheck: %s", what, wf_error_message());
            wf_clear_error();
        }
    }

    /* backward on this device and dtype against the CPU in f64 */
    for (int i = 0; i < ng; i++)
        if (!(s->keep >> i & 1)) {
            wf_set_requires_grad(in[i], true);
            wf_set_requires_grad(ref[i], true);
        }
    n_checks++;
    if (backward_of(row->fn(ref, s->n, NULL), WF_CPU)) {
        fail("%s backward (f64 reference): %s", what, wf_error_message());
        wf_clear_error();
        return;
    }
    if (backward_of(row->fn(in, s->n, NULL), dev)) {
        fail("%s backward: %s", what, wf_error_message());
        wf_clear_error();
        return;
    }
    for (int i = 0; i < ng; i++) {
        if (s->keep >> i & 1) continue;
        wf_tensor *gd = wf_grad(in[i]), *gr = wf_grad(ref[i]);
        char w2[300];
        snprintf(w2, sizeof w2, "%s grad %d", what, i);
        if (!gd || !gr) {
            n_checks++;
            if (gd || gr) fail("%s: %s has no gradient", w2, gd ? "the reference" : "the result");
            continue;
        }
        compare(w2, gd, gr, 4 * row->tol * dtol(dt), 1e-1);
    }
}

static bool name_matches(const char *name, const char *want) {
    return !want || strncmp(name, want, strlen(want)) == 0;
}

#ifndef WEFT_MINIMAL   /* the minimal preset does not count calls (tensor_impl.h) */
/* every ops.def op no check reached, per backend: CPU ones fail the run */
static void report_uncalled(bool cuda, char *buf, size_t cap) {
    static const wf_op_family fams[4] = { WF_OPF_UNARY, WF_OPF_BINARY, WF_OPF_REDUCE, WF_OPF_KERNEL };
    static const int counts[4] = { WF_U_COUNT, WF_B_COUNT, WF_R_COUNT, WF_K_COUNT };
    size_t len = strlen(buf);
    for (int b = 0; b < (cuda ? 2 : 1); b++) {
        const wf_kernels *k = wf__kernels(b ? WF_CUDA(0) : WF_CPU);
        for (int f = 0; f < 4; f++)
            for (int op = 0; op < counts[f]; op++) {
                if (atomic_load(&wf__op_calls[b][wf__op_index(fams[f], op)])) continue;
                const wf_op_support *s = k->support;
                unsigned m = f == 0 ? s->unary[op] : f == 1 ? s->binary[op] : f == 2 ? s->reduce[op] : s->kernel[op];
                if (!m) continue;   /* the backend has no kernel for it: nothing to call */
                const char *nm = wf__op_name(fams[f], op);
                if (f == 3 && op == WF_K_COL2IM && k->col2im_batch) {
                    /* a backend with col2im_batch convolves through it: no public op reaches its
                     * per-image col2im; reported, not failed, until it is wired in or removed */
                    printf("note: kernel-table op %s (%s) is reached by no public op\n", nm, b ? "cuda" : "cpu");
                    continue;
                }
                if (b == 0) fail("kernel-table op %s (cpu) was never called: give it a row in tests/ops/op_table.c", nm);
                else printf("note: kernel-table op %s (cuda) was never called\n", nm);
                len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s\"%s:%s\"", len > 1 ? "," : "",
                                        b ? "cuda" : "cpu", nm);
            }
    }
}
#endif

int main(int argc, char **argv) {
    const char *want_dev = NULL, *want_op = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) want_dev = argv[++i];
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) want_op = argv[++i];
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "-t")) timing = 1;
        else {
            fprintf(stderr, "usage: %s [--device cpu|cuda] [--op NAME] [-v] [-t]\n", argv[0]);
            return 2;
        }
    }
    /* conv2d's col buffer at 64K elements, not 16M: the large conv samples run in several
     * chunks of images (op_table.c); before the first conv, which reads it once */
    setenv("WF_CONV_CHUNK_ELEMS", "65536", 0);
    bool cuda = wf_cuda_device_count() > 0;
    wf_clear_error();
    if (want_dev && !strcmp(want_dev, "cuda") && !cuda) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    wf_device devs[2] = { WF_CPU, WF_CUDA(0) };
    int ndev = cuda ? 2 : 1, d0 = 0;
    if (want_dev && !strcmp(want_dev, "cpu")) ndev = 1;
    if (want_dev && !strcmp(want_dev, "cuda")) d0 = 1;

    for (int ri = 0; ri < op_nrows; ri++) {
        const op_row *row = &op_rows[ri];
        if (!name_matches(row->name, want_op)) continue;
        double t0 = now();
        WF_SCOPE {
            op_sample s[OP_MAXSAMPLES];
            int ns = row->gen(s, OP_MAXSAMPLES);
            for (int d = d0; d < ndev; d++)
                for (int dt = 0; dt < WF_DTYPE_COUNT; dt++) {
                    if (!(row->dtypes >> dt & 1)) continue;
                    for (int si = 0; si < ns; si++) {
                        if ((s[si].flags & S_SPECIAL) && !wf_dtype_is_floating((wf_dtype)dt)) continue;
                        WF_SCOPE { run_sample(row, &s[si], devs[d], (wf_dtype)dt); }
                    }
                }
        }
        if (timing) printf("time %8.3f s  %s\n", now() - t0, row->name);
    }
    for (int i = 0; i < op_nexpects; i++) {
        if (!name_matches(op_expects[i].name, want_op)) continue;
        for (int d = d0; d < ndev; d++) WF_SCOPE {
            int c = 0;
            n_failed += op_expects[i].fn(devs[d], &c);
            n_checks += c;
        }
    }
    char uncalled[4096] = "[";
#ifndef WEFT_MINIMAL   /* the minimal preset does not count calls (tensor_impl.h) */
    if (!want_op && !want_dev) report_uncalled(cuda, uncalled, sizeof uncalled - 2);
#endif
    strcat(uncalled, "]");
    printf("{\"checks\":%d,\"failed\":%d,\"uncalled\":%s}\n", n_checks, n_failed, uncalled);
    return n_failed ? 1 : 0;
}
