/* tests/cuda/test_cuda_parity.c: the op-parity harness: every kernel table entry (forward
 * and backward, strided, broadcast, empty and large inputs) on CPU and CUDA through the
 * public API, compared within tolerances suited to each dtype; random streams must match
 * bit for bit. A meson test in CUDA builds (suite 'cuda'); on the GPU machine, which has no
 * Check library, bench/device_run.sh builds it by hand. Elementwise math on CUDA is built
 * with --use_fast_math, hence the 1e-4 tolerances of tanh-based ops.
 *
 * Prints one line per check and, last, {"checks":N,"failed":M}. Exit status 1 if any failed,
 * 77 (skip) without a GPU. */
#include "weft/weft.h"
#include "weft/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_checks, n_failed;
#define GPU WF_CUDA(0)

/* max |a-b| / (atol + rtol |b|) over all elements, both read as f64 on the host */
static void compare(const char *name, wf_tensor *gpu, wf_tensor *cpu, double atol, double rtol) {
    n_checks++;
    if (!gpu || !cpu) {
        printf("FAIL %-34s %s: %s\n", name, gpu ? "cpu" : "cuda", wf_error_message());
        wf_clear_error();
        n_failed++;
        return;
    }
    int64_t n = wf_numel(cpu);
    if (wf_numel(gpu) != n) { printf("FAIL %-34s numel %lld vs %lld\n", name, (long long)wf_numel(gpu), (long long)n); n_failed++; return; }
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1)), *b = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int rc = wf_to_array(gpu, a, WF_F64);
    if (!rc) rc = wf_to_array(cpu, b, WF_F64);
    if (rc) { printf("FAIL %-34s to_array: %s\n", name, wf_error_message()); wf_clear_error(); n_failed++; free(a); free(b); return; }
    double worst = 0, wa = 0, wb = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        double d = fabs(a[i] - b[i]);
        double e = d == 0 ? 0 : d / (atol + rtol * fabs(b[i]));   /* exact checks: atol = rtol = 0 */
        if (!(e <= worst)) { worst = isnan(e) ? INFINITY : e; wi = i; wa = a[i]; wb = b[i]; }
    }
    bool ok = worst <= 1.0;
    if (!ok) n_failed++;
    printf("%s %-34s n=%-8lld worst=%.3g", ok ? "ok  " : "FAIL", name, (long long)n, worst);
    if (!ok) printf(" at %lld: cuda %.9g cpu %.9g", (long long)wi, wa, wb);
    printf("\n");
    free(a);
    free(b);
}

static wf_tensor *G(wf_tensor *t) { return t ? wf_to_device(t, GPU) : NULL; }

/* max |a-b| <= tol * max |b| (for low-precision fused kernels against an f32 reference) */
static void compare_rel(const char *name, wf_tensor *gpu, wf_tensor *ref, double tol) {
    n_checks++;
    if (!gpu || !ref) {
        printf("FAIL %-34s %s: %s\n", name, gpu ? "reference" : "fused", wf_error_message());
        wf_clear_error();
        n_failed++;
        return;
    }
    int64_t n = wf_numel(ref);
    if (wf_numel(gpu) != n) { printf("FAIL %-34s numel %lld vs %lld\n", name, (long long)wf_numel(gpu), (long long)n); n_failed++; return; }
    double *a = malloc(sizeof(double) * (size_t)(n ? n : 1)), *b = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int rc = wf_to_array(gpu, a, WF_F64);
    if (!rc) rc = wf_to_array(ref, b, WF_F64);
    if (rc) { printf("FAIL %-34s to_array: %s\n", name, wf_error_message()); wf_clear_error(); n_failed++; free(a); free(b); return; }
    double md = 0, mb = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= md)) { md = isnan(d) ? INFINITY : d; wi = i; }
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    double e = mb > 0 ? md / mb : md;
    bool ok = e <= tol;
    if (!ok) n_failed++;
    printf("%s %-34s n=%-8lld maxdiff/max=%.3g (tol %.g)", ok ? "ok  " : "FAIL", name, (long long)n, e, tol);
    if (!ok && n) printf(" at %lld: fused %.9g ref %.9g", (long long)wi, a[wi], b[wi]);
    printf("\n");
    free(a);
    free(b);
}

/* fused attention (f16/bf16 on CUDA) against the composed path in f32 on CUDA and on the CPU,
 * from the same rounded inputs: output and the gradients of sum(o * w) */
static void check_sdpa(int64_t B, int64_t H, int64_t L, int64_t S, int64_t D, bool causal, wf_dtype dt, bool strided) {
    WF_SCOPE {
        char nm[96], tag[64];
        snprintf(tag, sizeof tag, "%s %lldx%lldx%lldx%lld S%lld%s%s", wf_dtype_name(dt), (long long)B, (long long)H,
                 (long long)L, (long long)D, (long long)S, causal ? " causal" : "", strided ? " strided" : "");
        wf_tensor *src[3] = { wf_randn(WF_SHAPE(B, H, L, D), WF_F32), wf_randn(WF_SHAPE(B, H, S, D), WF_F32),
                              wf_randn(WF_SHAPE(B, H, S, D), WF_F32) };
        wf_tensor *w = wf_randn(WF_SHAPE(B, H, L, D), WF_F32);
        wf_tensor *lo[3], *g32[3], *c32[3];
        for (int i = 0; i < 3; i++) {
            wf_tensor *r = wf_to_dtype(src[i], dt);                       /* rounded values */
            c32[i] = wf_to_dtype(r, WF_F32);
            g32[i] = G(c32[i]);
            if (strided) {  /* [B, T, H, D] storage seen as [B, H, T, D], as attention modules pass it */
                wf_tensor *p = wf_contiguous(wf_transpose(G(r), 1, 2));
                lo[i] = wf_detach(wf_transpose(p, 1, 2));
            } else lo[i] = G(r);
            wf_set_requires_grad(lo[i], true);
            wf_set_requires_grad(g32[i], true);
            wf_set_requires_grad(c32[i], true);
        }
        wf_tensor *of = wf_scaled_dot_product_attention(lo[0], lo[1], lo[2], NULL, 0.0, causal);
        wf_tensor *og = wf_scaled_dot_product_attention(g32[0], g32[1], g32[2], NULL, 0.0, causal);
        wf_tensor *oc = wf_scaled_dot_product_attention(c32[0], c32[1], c32[2], NULL, 0.0, causal);
        const char *fn = of ? wf_grad_fn_name(of) : "";
        n_checks++;
        if (fn && strstr(fn, "Flash")) printf("ok   sdpa %s takes the fused path (%s)\n", tag, fn);
        else { printf("FAIL sdpa %s did not take the fused path (grad_fn %s)\n", tag, fn ? fn : "none"); n_failed++; }
        double tol = dt == WF_BF16 ? 2e-2 : 4e-3;
        snprintf(nm, sizeof nm, "sdpa %s vs cuda f32", tag);
        compare_rel(nm, of, og, tol);
        snprintf(nm, sizeof nm, "sdpa %s vs cpu", tag);
        compare_rel(nm, of, oc, tol);
        wf_tensor *lf = wf_sum_all(wf_mul(wf_to_dtype(of, WF_F32), G(w)));
        wf_tensor *lg = wf_sum_all(wf_mul(og, G(w)));
        wf_tensor *lc = wf_sum_all(wf_mul(oc, w));
        if (!lf || !lg || !lc || wf_backward(lf, NULL, false) || wf_backward(lg, NULL, false) || wf_backward(lc, NULL, false)) {
            n_checks++; n_failed++;
            printf("FAIL sdpa %s backward: %s\n", tag, wf_error_message());
            wf_clear_error();
        } else {
            const char *gn[3] = { "dq", "dk", "dv" };
            for (int i = 0; i < 3; i++) {
                snprintf(nm, sizeof nm, "sdpa %s %s vs cuda f32", tag, gn[i]);
                compare_rel(nm, wf_grad(lo[i]), wf_grad(g32[i]), 2 * tol);
                snprintf(nm, sizeof nm, "sdpa %s %s vs cpu", tag, gn[i]);
                compare_rel(nm, wf_grad(lo[i]), wf_grad(c32[i]), 2 * tol);
            }
        }
    }
}

/* autograd/fn_fused.c: attention on a packed projection [B, T, 3E] (not in a public header) */
wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled);

/* fused attention read in place from a packed qkv [B, T, 3E] (pad extra columns make the rows
 * strided) against the composed f32 path on the CPU over split/reshape/transpose: output and
 * the gradient of the whole packed input (the pad columns' gradient must be zero) */
static void check_sdpa_qkv(int64_t B, int64_t T, int64_t E, int64_t H, bool causal, wf_dtype dt, int64_t pad) {
    WF_SCOPE {
        char nm[128], tag[80];
        int64_t D = E / H;
        snprintf(tag, sizeof tag, "%s B%lld T%lld E%lld H%lld (D%lld)%s%s", wf_dtype_name(dt), (long long)B, (long long)T,
                 (long long)E, (long long)H, (long long)D, causal ? " causal" : "", pad ? " strided" : "");
        wf_tensor *r = wf_to_dtype(wf_randn(WF_SHAPE(B, T, 3 * E + pad), WF_F32), dt);
        wf_tensor *full_c = wf_to_dtype(r, WF_F32), *full_g = G(r);
        wf_set_requires_grad(full_c, true);
        wf_set_requires_grad(full_g, true);
        wf_tensor *w = wf_randn(WF_SHAPE(B, H, T, D), WF_F32);
        wf_tensor *qc = wf_narrow(full_c, 2, 0, 3 * E), *parts[3] = { 0 };
        wf_tensor *oc = NULL;
        if (qc && wf_split(qc, E, 2, parts, 3) == 3) {
            for (int i = 0; i < 3; i++) parts[i] = wf_transpose(wf_reshape(parts[i], WF_SHAPE(B, T, H, D)), 1, 2);
            oc = wf_scaled_dot_product_attention(parts[0], parts[1], parts[2], NULL, 0.0, causal);
        }
        bool handled = false;
        wf_tensor *og = wf__sdpa_qkv_fused(wf_narrow(full_g, 2, 0, 3 * E), H, causal, &handled);
        const char *fn = og ? wf_grad_fn_name(og) : "";
        n_checks++;
        if (handled && fn && strstr(fn, "Flash")) printf("ok   sdpa qkv %s takes the fused path (%s)\n", tag, fn);
        else { printf("FAIL sdpa qkv %s: handled %d, grad_fn %s (%s)\n", tag, handled, fn ? fn : "none", wf_error_message()); n_failed++; }
        double tol = dt == WF_BF16 ? 2e-2 : 4e-3;
        snprintf(nm, sizeof nm, "sdpa qkv %s vs cpu", tag);
        compare_rel(nm, og, oc, tol);
        wf_tensor *lg = og ? wf_sum_all(wf_mul(wf_to_dtype(og, WF_F32), G(w))) : NULL;
        wf_tensor *lc = oc ? wf_sum_all(wf_mul(oc, w)) : NULL;
        if (!lg || !lc || wf_backward(lg, NULL, false) || wf_backward(lc, NULL, false)) {
            n_checks++; n_failed++;
            printf("FAIL sdpa qkv %s backward: %s\n", tag, wf_error_message());
            wf_clear_error();
        } else {
            snprintf(nm, sizeof nm, "sdpa qkv %s dqkv vs cpu", tag);
            compare_rel(nm, wf_grad(full_g), wf_grad(full_c), 2 * tol);
        }
    }
}

/* nn's CausalSelfAttention under bf16 autocast on CUDA (fused qkv attention) against the same
 * module (same initial weights) in f32 on the CPU: output, input and c_attn gradients */
static void check_csa(int64_t B, int64_t T, int64_t E, int64_t H) {
    WF_SCOPE {
        char nm[160], tag[64];
        snprintf(tag, sizeof tag, "B%lld T%lld E%lld H%lld", (long long)B, (long long)T, (long long)E, (long long)H);
        wf_manual_seed(77);
        wf_module *mc = wf_causal_self_attention_new(E, H, true, 0.0);
        wf_manual_seed(77);
        wf_module *mg = wf_causal_self_attention_new(E, H, true, 0.0);
        wf_tensor *x = wf_randn(WF_SHAPE(B, T, E), WF_F32), *xc = wf_clone(x), *xg = G(x);
        wf_set_requires_grad(xc, true);
        wf_set_requires_grad(xg, true);
        wf_tensor *yc = NULL, *yg = NULL;
        if (mc && mg && !wf_module_to(mg, GPU, WF_F32)) {
            yc = wf_module_forward(mc, xc);
            wf_autocast_begin(WF_DEV_CUDA, WF_BF16);
            yg = wf_module_forward(mg, xg);
            wf_autocast_end();
        }
        snprintf(nm, sizeof nm, "causal self-attention %s", tag);
        compare_rel(nm, yg ? wf_to_dtype(yg, WF_F32) : NULL, yc, 3e-2);
        wf_tensor *w = wf_randn(WF_SHAPE(B, T, E), WF_F32);
        wf_tensor *lg = yg ? wf_sum_all(wf_mul(wf_to_dtype(yg, WF_F32), G(w))) : NULL;
        wf_tensor *lc = yc ? wf_sum_all(wf_mul(yc, w)) : NULL;
        if (!lg || !lc || wf_backward(lg, NULL, false) || wf_backward(lc, NULL, false)) {
            n_checks++; n_failed++;
            printf("FAIL causal self-attention %s backward: %s\n", tag, wf_error_message());
            wf_clear_error();
        } else {
            snprintf(nm, sizeof nm, "causal self-attention %s dx", tag);
            compare_rel(nm, wf_grad(xg), wf_grad(xc), 5e-2);
            wf_module *ag = mg ? wf_module_get_child(mg, "c_attn") : NULL, *ac = mc ? wf_module_get_child(mc, "c_attn") : NULL;
            snprintf(nm, sizeof nm, "causal self-attention %s d c_attn.weight", tag);
            compare_rel(nm, ag ? wf_grad(wf_module_get_parameter(ag, "weight")) : NULL,
                        ac ? wf_grad(wf_module_get_parameter(ac, "weight")) : NULL, 5e-2);
            snprintf(nm, sizeof nm, "causal self-attention %s d c_attn.bias", tag);
            compare_rel(nm, ag ? wf_grad(wf_module_get_parameter(ag, "bias")) : NULL,
                        ac ? wf_grad(wf_module_get_parameter(ac, "bias")) : NULL, 5e-2);
        }
        wf_module_free(mc);
        wf_module_free(mg);
    }
}

/* fused layer norm on CUDA against the composed CPU path: output and gradients; affine: with
 * weight and bias; xgrad: x requires grad (else only the weight/bias gradients are made) */
static void check_layer_norm_ex(wf_dtype dt, int64_t rows, int64_t D, bool affine, bool xgrad) {
    WF_SCOPE {
        char nm[128], tag[80];
        snprintf(tag, sizeof tag, "%s %lldx%lld%s%s", wf_dtype_name(dt), (long long)rows, (long long)D,
                 affine ? "" : " no affine", xgrad ? "" : " no dx");
        wf_tensor *x = wf_to_dtype(wf_add_scalar(wf_mul_scalar(wf_randn(WF_SHAPE(rows, D), WF_F32), 2.0), 0.5), dt);
        wf_tensor *wt = wf_to_dtype(wf_randn(WF_SHAPE(D), WF_F32), dt), *bs = wf_to_dtype(wf_randn(WF_SHAPE(D), WF_F32), dt);
        wf_tensor *gw = wf_randn(WF_SHAPE(rows, D), WF_F32);
        wf_tensor *xc = wf_clone(x), *wc = wf_clone(wt), *bc = wf_clone(bs), *xg = G(x), *wg = G(wt), *bg = G(bs);
        wf_tensor *ps[6] = { xc, wc, bc, xg, wg, bg };
        for (int i = 0; i < 6; i++)
            if ((i % 3 == 0 && xgrad) || (i % 3 && affine)) wf_set_requires_grad(ps[i], true);
        wf_tensor *yc = wf_layer_norm(xc, &D, 1, affine ? wc : NULL, affine ? bc : NULL, 1e-5);
        wf_tensor *yg = wf_layer_norm(xg, &D, 1, affine ? wg : NULL, affine ? bg : NULL, 1e-5);
        double tol = dt == WF_F32 ? 1e-5 : 2e-2;
        snprintf(nm, sizeof nm, "layer_norm %s", tag);
        compare_rel(nm, yg, yc, tol);
        if (!xgrad && !affine) continue;   /* (leaves WF_SCOPE through its scope_end) */
        const char *fn = yg ? wf_grad_fn_name(yg) : "";
        n_checks++;
        if (fn && strstr(fn, "NativeLayerNorm")) printf("ok   layer_norm %s takes the fused path\n", tag);
        else { printf("FAIL layer_norm %s did not take the fused path (grad_fn %s)\n", tag, fn ? fn : "none"); n_failed++; }
        wf_tensor *lc = wf_sum_all(wf_mul(wf_to_dtype(yc, WF_F32), gw)), *lg = wf_sum_all(wf_mul(wf_to_dtype(yg, WF_F32), G(gw)));
        if (!lc || !lg || wf_backward(lc, NULL, false) || wf_backward(lg, NULL, false)) {
            n_checks++; n_failed++;
            printf("FAIL layer_norm backward: %s\n", wf_error_message());
            wf_clear_error();
        } else {
            const char *gn[3] = { "dx", "dweight", "dbias" };
            for (int i = 0; i < 3; i++) {
                if ((i == 0 && !xgrad) || (i && !affine)) continue;
                snprintf(nm, sizeof nm, "layer_norm %s %s", tag, gn[i]);
                compare_rel(nm, wf_grad(ps[3 + i]), wf_grad(ps[i]), dt == WF_F32 ? 1e-4 : 3e-2);
            }
        }
    }
}
static void check_layer_norm(wf_dtype dt, int64_t rows, int64_t D) { check_layer_norm_ex(dt, rows, D, true, true); }

/* fused softmax cross-entropy on CUDA against the composed CPU path (ignore_index rows too) */
static void check_xent(wf_dtype dt, int64_t N, int64_t C, wf_reduction red) {
    WF_SCOPE {
        char nm[96];
        wf_tensor *x = wf_to_dtype(wf_mul_scalar(wf_randn(WF_SHAPE(N, C), WF_F32), 3.0), dt);
        wf_tensor *t = wf_randint(0, C, WF_SHAPE(N), WF_I64);
        int64_t tv[4] = { -100, -100, -100, -100 };
        wf_tensor *ign = wf_from_data(tv, WF_SHAPE(2), WF_I64);
        wf_copy_(wf_slice(t, 0, 3, 5, 1), ign);
        wf_tensor *xc = wf_clone(x), *xg = G(x);
        wf_set_requires_grad(xc, true);
        wf_set_requires_grad(xg, true);
        wf_cross_entropy_opts o = { .reduction = red };
        wf_tensor *lc = wf_cross_entropy(xc, t, &o), *lg = wf_cross_entropy(xg, G(t), &o);
        double tol = dt == WF_F32 ? 1e-5 : 2e-2;
        snprintf(nm, sizeof nm, "cross_entropy %s %lldx%lld red %d", wf_dtype_name(dt), (long long)N, (long long)C, (int)red);
        compare_rel(nm, lg, lc, tol);
        wf_tensor *w = lc ? wf_randn_like(wf_to_dtype(lc, WF_F32)) : NULL;
        wf_tensor *sc = wf_sum_all(wf_mul(wf_to_dtype(lc, WF_F32), w)), *sg = wf_sum_all(wf_mul(wf_to_dtype(lg, WF_F32), G(w)));
        if (!sc || !sg || wf_backward(sc, NULL, false) || wf_backward(sg, NULL, false)) {
            n_checks++; n_failed++;
            printf("FAIL cross_entropy backward: %s\n", wf_error_message());
            wf_clear_error();
        } else {
            snprintf(nm, sizeof nm, "cross_entropy %s red %d dlogits", wf_dtype_name(dt), (int)red);
            compare_rel(nm, wf_grad(xg), wf_grad(xc), dt == WF_F32 ? 1e-4 : 3e-2);   /* fast-math exp */
        }
    }
}

typedef wf_tensor *(*un_fn)(wf_tensor *);
typedef wf_tensor *(*bin_fn)(wf_tensor *, wf_tensor *);

static wf_tensor *gelu_exact(wf_tensor *x) { return wf_gelu(x, WF_GELU_NONE); }
static wf_tensor *gelu_tanh(wf_tensor *x) { return wf_gelu(x, WF_GELU_TANH); }
static wf_tensor *pow3(wf_tensor *x) { return wf_pow_scalar(x, 3.0); }
static wf_tensor *pow_half(wf_tensor *x) { return wf_pow_scalar(wf_abs(x), 0.5); }
static wf_tensor *clampf(wf_tensor *x) { return wf_clamp(x, -0.5, 0.7); }
static wf_tensor *logp(wf_tensor *x) { return wf_log(wf_add_scalar(wf_abs(x), 0.1)); }

/* ---- contiguous vector paths (f32/bf16/f16, 8 elements per thread) and their fallbacks:
 * variant 0 contiguous (vector path), 1 offset by one element (misaligned: element path),
 * 2 step-2 view (strided path). Sizes leave a tail past the multiple of 8. */
static wf_tensor *vview(wf_tensor *base, int64_t n, int variant) {
    if (variant == 0) return wf_narrow(base, 0, 0, n);
    if (variant == 1) return wf_narrow(base, 0, 1, n);
    return wf_slice(base, 0, 0, 2 * n, 2);
}
static wf_tensor *v_gelu_t(wf_tensor *x) { return wf_gelu(x, WF_GELU_TANH); }
static wf_tensor *v_gelu(wf_tensor *x) { return wf_gelu(x, WF_GELU_NONE); }
static double vtol(wf_dtype dt) { return dt == WF_BF16 ? 1e-2 : dt == WF_F16 ? 2e-3 : 1e-4; }

static void check_vec_unary(wf_dtype dt, int64_t n, int variant) {
    un_fn fs[5] = { v_gelu_t, v_gelu, wf_relu, wf_silu, wf_tanh };
    const char *names[5] = { "gelu_tanh", "gelu", "relu", "silu", "tanh" };
    for (int f = 0; f < 5; f++) WF_SCOPE {
        char nm[96];
        wf_tensor *base = wf_to_dtype(wf_mul_scalar(wf_randn(WF_SHAPE(2 * n + 2), WF_F32), 2.0), dt);
        wf_tensor *gb = wf_to_dtype(wf_randn(WF_SHAPE(n), WF_F32), dt);
        wf_tensor *xc = wf_detach(vview(base, n, variant)), *xg = wf_detach(vview(G(base), n, variant));
        wf_set_requires_grad(xc, true);
        wf_set_requires_grad(xg, true);
        double t = vtol(dt);
        snprintf(nm, sizeof nm, "vec %s %s n=%lld v%d", names[f], wf_dtype_name(dt), (long long)n, variant);
        wf_tensor *yg = fs[f](xg), *yc = fs[f](xc);
        compare(nm, yg, yc, t * 0.1, t);
        /* two backward passes: the second accumulates into the leaf's grad (axpy) */
        for (int r = 0; r < 2; r++) {
            if (r) { yg = fs[f](xg); yc = fs[f](xc); }
            if (!yg || !yc || wf_backward(yg, G(gb), false) || wf_backward(yc, gb, false)) {
                n_checks++; n_failed++;
                printf("FAIL %s backward: %s\n", nm, wf_error_message());
                wf_clear_error();
                break;
            }
        }
        /* looser: tanh-based gradients amplify fast-math tanh (f32) and the rounded saved
         * output (tanh's backward uses y; f16 1 - y^2 near |y| = 1) on either path */
        snprintf(nm, sizeof nm, "vec %s %s n=%lld v%d grad x2", names[f], wf_dtype_name(dt), (long long)n, variant);
        compare(nm, wf_grad(xg), wf_grad(xc), fmax(2 * t, 2e-4), 2 * t);
    }
}

static void check_vec_binary(wf_dtype da, wf_dtype db, int64_t n, int variant) {
    bin_fn fs[5] = { wf_add, wf_sub, wf_mul, wf_div, wf_maximum };
    const char *names[5] = { "add", "sub", "mul", "div", "maximum" };
    for (int f = 0; f < 5; f++) WF_SCOPE {
        char nm[96];
        wf_tensor *ba = wf_to_dtype(wf_randn(WF_SHAPE(2 * n + 2), WF_F32), da);
        wf_tensor *bb = wf_to_dtype(wf_add_scalar(wf_abs(wf_randn(WF_SHAPE(2 * n + 2), WF_F32)), 0.5), db);
        wf_tensor *ac = wf_detach(vview(ba, n, variant)), *ag = wf_detach(vview(G(ba), n, variant));
        wf_tensor *bc = wf_detach(vview(bb, n, variant)), *bg = wf_detach(vview(G(bb), n, variant));
        wf_tensor *ps[4] = { ac, ag, bc, bg };
        for (int i = 0; i < 4; i++) wf_set_requires_grad(ps[i], true);
        wf_tensor *yc = fs[f](ac, bc), *yg = fs[f](ag, bg);
        double t = fmax(vtol(da), vtol(db));
        snprintf(nm, sizeof nm, "vec %s %s+%s n=%lld v%d", names[f], wf_dtype_name(da), wf_dtype_name(db), (long long)n, variant);
        compare(nm, yg, yc, t * 0.1, t);
        wf_tensor *g = yc ? wf_to_dtype(wf_randn(WF_SHAPE(n), WF_F32), wf_tensor_dtype(yc)) : NULL;
        if (!g || !yg || wf_backward(yg, G(g), false) || wf_backward(yc, g, false)) {
            n_checks++; n_failed++;
            printf("FAIL %s backward: %s\n", nm, wf_error_message());
            wf_clear_error();
            continue;
        }
        char nm2[128];
        snprintf(nm2, sizeof nm2, "%s da", nm);
        compare(nm2, wf_grad(ag), wf_grad(ac), t * 0.2, 2 * t);
        snprintf(nm2, sizeof nm2, "%s db", nm);
        compare(nm2, wf_grad(bg), wf_grad(bc), t * 0.2, 2 * t);
    }
}

static void check_vec_cast(wf_dtype from, wf_dtype to, int64_t n, int variant) {
    WF_SCOPE {
        char nm[96];
        wf_tensor *base = wf_to_dtype(wf_mul_scalar(wf_randn(WF_SHAPE(2 * n + 2), WF_F32), 100.0), from);
        wf_tensor *yc = wf_to_dtype(vview(base, n, variant), to), *yg = wf_to_dtype(vview(G(base), n, variant), to);
        snprintf(nm, sizeof nm, "vec cast %s->%s n=%lld v%d (exact)", wf_dtype_name(from), wf_dtype_name(to), (long long)n, variant);
        compare(nm, yg, yc, 0, 0);
    }
}

/* wf_linear on CUDA (bias fused into the GEMM epilogue, bias gradient from the weight GEMM's
 * epilogue) against the CPU in f32 from the same rounded values. ac: under bf16 autocast with
 * f32 leaves (the GPT block's case). */
static void check_linear(wf_dtype dt, int64_t batch, int64_t rows, int64_t in, int64_t out, bool bias, bool ac) {
    WF_SCOPE {
        char nm[128], tag[96];
        snprintf(tag, sizeof tag, "%s%s %lldx%lldx%lld->%lld%s", wf_dtype_name(dt), ac ? " autocast" : "", (long long)batch,
                 (long long)rows, (long long)in, (long long)out, bias ? " bias" : "");
        wf_dtype low = ac ? WF_BF16 : dt;
        wf_tensor *src[3] = { wf_randn(WF_SHAPE(batch, rows, in), WF_F32), wf_mul_scalar(wf_randn(WF_SHAPE(out, in), WF_F32), 0.2),
                              wf_randn(WF_SHAPE(out), WF_F32) };
        wf_tensor *lc[3], *lg[3];
        for (int i = 0; i < 3; i++) {
            wf_tensor *r = wf_to_dtype(wf_to_dtype(src[i], low), WF_F32);     /* values exact in low */
            lc[i] = wf_clone(r);
            lg[i] = ac ? G(r) : G(wf_to_dtype(r, dt));
            wf_set_requires_grad(lc[i], true);
            wf_set_requires_grad(lg[i], true);
        }
        wf_tensor *gsrc = wf_to_dtype(wf_to_dtype(wf_randn(WF_SHAPE(batch, rows, out), WF_F32), low), WF_F32);
        wf_tensor *yc = wf_linear(lc[0], lc[1], bias ? lc[2] : NULL), *yg;
        if (ac) wf_autocast_begin(WF_DEV_CUDA, WF_BF16);
        yg = wf_linear(lg[0], lg[1], bias ? lg[2] : NULL);
        if (ac) wf_autocast_end();
        double tol = low == WF_BF16 ? 1.5e-2 : low == WF_F16 ? 3e-3 : (wf_cuda_get_tf32() ? 5e-3 : 1e-4);
        snprintf(nm, sizeof nm, "linear %s", tag);
        compare_rel(nm, yg, yc, tol);
        if (!yg || !yc || wf_backward(yg, G(wf_to_dtype(gsrc, wf_tensor_dtype(yg))), false) || wf_backward(yc, gsrc, false)) {
            n_checks++; n_failed++;
            printf("FAIL linear %s backward: %s\n", tag, wf_error_message());
            wf_clear_error();
        } else {
            const char *gn[3] = { "dx", "dw", "db" };
            for (int i = 0; i < (bias ? 3 : 2); i++) {
                snprintf(nm, sizeof nm, "linear %s %s", tag, gn[i]);
                compare_rel(nm, wf_grad(lg[i]), wf_grad(lc[i]), 2 * tol);
            }
        }
    }
}

int main(void) {
    if (wf_cuda_device_count() < 1) { printf("no CUDA device: skipped\n"); return 77; }
    wf_manual_seed(1234);
    WF_SCOPE {
        /* ---- random: bit-identical to the CPU for the same seed/offset */
        wf_dtype rdts[] = { WF_F32, WF_F64, WF_F16, WF_BF16 };
        for (int i = 0; i < 4; i++) {
            char nm[64];
            wf_rng_state s = wf_rng_get_state();
            wf_tensor *c = wf_rand(WF_SHAPE(1001), rdts[i]);
            wf_rng_set_state(s);
            wf_set_default_device(GPU);
            wf_tensor *g = wf_rand(WF_SHAPE(1001), rdts[i]);
            wf_set_default_device(WF_CPU);
            snprintf(nm, sizeof nm, "rand %s (exact)", wf_dtype_name(rdts[i]));
            compare(nm, g, c, 0, 0);
            s = wf_rng_get_state();
            c = wf_randn(WF_SHAPE(1001), rdts[i]);
            wf_rng_set_state(s);
            wf_set_default_device(GPU);
            g = wf_randn(WF_SHAPE(1001), rdts[i]);
            wf_set_default_device(WF_CPU);
            snprintf(nm, sizeof nm, "randn %s (exact)", wf_dtype_name(rdts[i]));
            compare(nm, g, c, 0, 0);
        }
        {
            wf_rng_state s = wf_rng_get_state();
            wf_tensor *c = wf_randint(-5, 17, WF_SHAPE(999), WF_I64);
            wf_rng_set_state(s);
            wf_set_default_device(GPU);
            wf_tensor *g = wf_randint(-5, 17, WF_SHAPE(999), WF_I64);
            wf_set_default_device(WF_CPU);
            compare("randint (exact)", g, c, 0, 0);
            s = wf_rng_get_state();
            c = wf_bernoulli_p(WF_SHAPE(999), 0.3, WF_F32);
            wf_rng_set_state(s);
            wf_set_default_device(GPU);
            g = wf_bernoulli_p(WF_SHAPE(999), 0.3, WF_F32);
            wf_set_default_device(WF_CPU);
            compare("bernoulli (exact)", g, c, 0, 0);
        }

        /* ---- copies and casts, strided */
        wf_tensor *x = wf_randn(WF_SHAPE(37, 53), WF_F32);
        wf_tensor *y = wf_randn(WF_SHAPE(37, 53), WF_F32);
        wf_tensor *xg = G(x), *yg = G(y);
        compare("to_device roundtrip", xg, x, 0, 0);
        compare("contiguous(transpose)", wf_contiguous(wf_t(xg)), wf_contiguous(wf_t(x)), 0, 0);
        compare("slice step 3 clone", wf_clone(wf_slice(xg, 1, 1, 50, 3)), wf_clone(wf_slice(x, 1, 1, 50, 3)), 0, 0);
        wf_dtype cdts[] = { WF_F64, WF_F16, WF_BF16, WF_I64, WF_I32, WF_U8, WF_BOOL };
        for (int i = 0; i < 7; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "cast f32->%s (T)", wf_dtype_name(cdts[i]));
            wf_tensor *xs = wf_mul_scalar(x, 3);
            compare(nm, wf_to_dtype(wf_t(G(xs)), cdts[i]), wf_to_dtype(wf_t(xs), cdts[i]), 0, 0);
        }
        compare("fill 2.5", wf_full_like(xg, 2.5), wf_full_like(x, 2.5), 0, 0);

        /* ---- unary (strided input) */
        struct { const char *n; un_fn f; double tol; } un[] = {
            { "neg", wf_neg, 0 }, { "abs", wf_abs, 0 }, { "exp", wf_exp, 1e-5 }, { "log", logp, 1e-5 },
            { "log1p", wf_log1p, 1e-5 }, { "sqrt", pow_half, 1e-5 }, { "sin", wf_sin, 1e-5 },
            { "cos", wf_cos, 1e-5 }, { "tanh", wf_tanh, 1e-4 }, { "sigmoid", wf_sigmoid, 1e-5 },
            { "relu", wf_relu, 0 }, { "gelu", gelu_exact, 1e-5 }, { "gelu_tanh", gelu_tanh, 1e-4 },
            { "silu", wf_silu, 1e-5 }, { "square", wf_square, 1e-6 }, { "sign", wf_sign, 0 },
            { "pow 3", pow3, 1e-5 }, { "clamp", clampf, 0 }, { "logical_not", wf_logical_not, 0 },
            { "isfinite", wf_isfinite, 0 },
        };
        for (size_t i = 0; i < sizeof un / sizeof un[0]; i++)
            compare(un[i].n, un[i].f(wf_t(xg)), un[i].f(wf_t(x)), 1e-6, un[i].tol);

        /* ---- binary with broadcasting */
        wf_tensor *row = wf_randn(WF_SHAPE(1, 53), WF_F32), *rowg = G(row);
        struct { const char *n; bin_fn f; } bn[] = {
            { "add", wf_add }, { "sub", wf_sub }, { "mul", wf_mul }, { "div", wf_div }, { "maximum", wf_maximum },
            { "minimum", wf_minimum }, { "eq", wf_eq }, { "ne", wf_ne }, { "lt", wf_lt }, { "le", wf_le },
            { "gt", wf_gt }, { "ge", wf_ge }, { "logical_and", wf_logical_and }, { "logical_or", wf_logical_or },
        };
        for (size_t i = 0; i < sizeof bn / sizeof bn[0]; i++) {
            compare(bn[i].n, bn[i].f(xg, yg), bn[i].f(x, y), 1e-6, 1e-5);
            char nm[64];
            snprintf(nm, sizeof nm, "%s (broadcast row)", bn[i].n);
            compare(nm, bn[i].f(xg, rowg), bn[i].f(x, row), 1e-6, 1e-5);
        }
        compare("pow(|x|, y)", wf_pow(wf_abs(xg), yg), wf_pow(wf_abs(x), y), 1e-6, 1e-4);
        compare("rsub_scalar", wf_rsub_scalar(xg, 2), wf_rsub_scalar(x, 2), 0, 1e-6);
        compare("rdiv_scalar", wf_rdiv_scalar(xg, 2), wf_rdiv_scalar(x, 2), 1e-6, 1e-5);
        compare("gt_scalar", wf_gt_scalar(xg, 0.1), wf_gt_scalar(x, 0.1), 0, 0);
        compare("where", wf_where(wf_gt(xg, yg), xg, rowg), wf_where(wf_gt(x, y), x, row), 0, 0);
        {
            wf_tensor *a = wf_clone(x), *ag = wf_clone(xg);
            wf_add_scaled_(a, row, 0.25);
            wf_add_scaled_(ag, rowg, 0.25);
            compare("add_scaled_ (axpy)", ag, a, 1e-6, 1e-6);
        }

        /* ---- reductions */
        wf_tensor *big = wf_randn(WF_SHAPE(8, 300, 129), WF_F32), *bigg = G(big);
        int d0[] = { 0 }, d1[] = { 1 }, d2[] = { 2 }, d02[] = { 0, 2 };
        compare("sum dim 0", wf_sum(bigg, d0, 1, false), wf_sum(big, d0, 1, false), 1e-4, 1e-4);
        compare("sum dim 1", wf_sum(bigg, d1, 1, true), wf_sum(big, d1, 1, true), 1e-4, 1e-4);
        compare("sum dim 2", wf_sum(bigg, d2, 1, false), wf_sum(big, d2, 1, false), 1e-4, 1e-4);
        compare("sum dims 0,2", wf_sum(bigg, d02, 2, false), wf_sum(big, d02, 2, false), 1e-3, 1e-4);
        compare("sum all", wf_sum_all(bigg), wf_sum_all(big), 1e-2, 1e-4);
        compare("mean all (transposed)", wf_mean_all(wf_transpose(bigg, 0, 2)), wf_mean_all(wf_transpose(big, 0, 2)), 1e-5, 1e-4);
        compare("amax dim 1", wf_amax(bigg, d1, 1, false), wf_amax(big, d1, 1, false), 0, 0);
        compare("amin dim 2", wf_amin(bigg, d2, 1, false), wf_amin(big, d2, 1, false), 0, 0);
        compare("var dim 2", wf_var(bigg, d2, 1, 1, false), wf_var(big, d2, 1, 1, false), 1e-5, 1e-4);
        compare("norm 2 all", wf_norm(bigg, 2, NULL, 0, false), wf_norm(big, 2, NULL, 0, false), 1e-4, 1e-4);
        compare("norm 3 dim 1", wf_norm(bigg, 3, d1, 1, false), wf_norm(big, 3, d1, 1, false), 1e-4, 1e-4);
        compare("logsumexp dim 2", wf_logsumexp(bigg, d2, 1, false), wf_logsumexp(big, d2, 1, false), 1e-5, 1e-5);
        compare("argmax dim 2", wf_argmax(bigg, 2, false), wf_argmax(big, 2, false), 0, 0);
        compare("argmin dim 0", wf_argmin(bigg, 0, false), wf_argmin(big, 0, false), 0, 0);
        wf_tensor *huge = wf_rand(WF_SHAPE(3000000), WF_F32);
        compare("sum 3M (split)", wf_sum_all(G(huge)), wf_sum_all(huge), 1e-1, 1e-5);
        {   /* split row reductions: 16-byte f32 path (aligned rows) and the plain path, block finish */
            wf_tensor *hg = G(huge);
            compare("norm 2 of 3M (split, vec)", wf_norm(hg, 2, NULL, 0, false), wf_norm(huge, 2, NULL, 0, false), 1e-3, 1e-5);
            compare("amax of 3M (split, vec)", wf_amax(hg, NULL, 0, false), wf_amax(huge, NULL, 0, false), 0, 0);
            compare("sum of 3M-1 misaligned (split)", wf_sum_all(wf_narrow(hg, 0, 1, 2999999)),
                    wf_sum_all(wf_narrow(huge, 0, 1, 2999999)), 1e-1, 1e-5);
            wf_tensor *w4 = wf_randn(WF_SHAPE(4, 400000), WF_F32), *w5 = wf_randn(WF_SHAPE(5, 400003), WF_F32);
            compare("sum 4x400000 dim 1 (split, vec)", wf_sum(G(w4), d1, 1, false), wf_sum(w4, d1, 1, false), 1e-2, 1e-5);
            compare("sum 5x400003 dim 1 (split)", wf_sum(G(w5), d1, 1, false), wf_sum(w5, d1, 1, false), 1e-2, 1e-5);
        }
        wf_tensor *tall = wf_rand(WF_SHAPE(200000, 3), WF_F32);
        compare("sum tall dim 0 (split)", wf_sum(G(tall), d0, 1, false), wf_sum(tall, d0, 1, false), 1e-2, 1e-5);
        wf_tensor *ints = wf_randint(-100, 100, WF_SHAPE(1000, 7), WF_I64);
        compare("sum i64 dim 0", wf_sum(G(ints), d0, 1, false), wf_sum(ints, d0, 1, false), 0, 0);

        /* ---- matmul */
        wf_dtype mdts[] = { WF_F32, WF_F64, WF_F16, WF_BF16 };
        double mtol[] = { 1e-4, 1e-10, 2e-2, 5e-2 };
        for (int i = 0; i < 4; i++) {
            char nm[64];
            wf_tensor *a = wf_to_dtype(wf_randn(WF_SHAPE(65, 130), WF_F32), mdts[i]);
            wf_tensor *b = wf_to_dtype(wf_randn(WF_SHAPE(130, 33), WF_F32), mdts[i]);
            snprintf(nm, sizeof nm, "matmul %s", wf_dtype_name(mdts[i]));
            compare(nm, wf_matmul(G(a), G(b)), wf_matmul(a, b), mtol[i] * 10, mtol[i]);
            snprintf(nm, sizeof nm, "matmul %s a^T b^T", wf_dtype_name(mdts[i]));
            compare(nm, wf_matmul(wf_t(G(b)), wf_t(G(a))), wf_matmul(wf_t(b), wf_t(a)), mtol[i] * 10, mtol[i]);
        }
        {
            wf_tensor *a = wf_randn(WF_SHAPE(5, 17, 31), WF_F32), *b = wf_randn(WF_SHAPE(5, 31, 9), WF_F32);
            compare("bmm", wf_bmm(G(a), G(b)), wf_bmm(a, b), 1e-4, 1e-4);
            wf_tensor *w = wf_randn(WF_SHAPE(31, 9), WF_F32);
            compare("matmul batched @ 2d (broadcast)", wf_matmul(G(a), G(w)), wf_matmul(a, w), 1e-4, 1e-4);
        }

        /* ---- softmax */
        wf_tensor *wide = wf_randn(WF_SHAPE(7, 3000), WF_F32);
        compare("softmax small rows", wf_softmax(xg, -1), wf_softmax(x, -1), 1e-7, 1e-5);
        compare("log_softmax small rows", wf_log_softmax(xg, -1), wf_log_softmax(x, -1), 1e-6, 1e-5);
        compare("softmax wide rows", wf_softmax(G(wide), -1), wf_softmax(wide, -1), 1e-8, 1e-5);
        compare("softmax dim 0", wf_softmax(xg, 0), wf_softmax(x, 0), 1e-7, 1e-5);

        /* ---- indexing */
        wf_tensor *idx = wf_randint(0, 37, WF_SHAPE(11), WF_I64);
        compare("index_select dim 0", wf_index_select(xg, 0, G(idx)), wf_index_select(x, 0, idx), 0, 0);
        wf_tensor *idx2 = wf_randint(0, 53, WF_SHAPE(37, 5), WF_I64);
        compare("gather dim 1", wf_gather(xg, 1, G(idx2)), wf_gather(x, 1, idx2), 0, 0);
        wf_tensor *src = wf_randn(WF_SHAPE(37, 5), WF_F32);
        compare("scatter_add dim 1", wf_scatter_add(xg, 1, G(idx2), G(src)), wf_scatter_add(x, 1, idx2, src), 1e-6, 1e-5);
        wf_tensor *emb_i = wf_randint(0, 37, WF_SHAPE(4, 6), WF_I64);
        compare("embedding", wf_embedding(xg, G(emb_i)), wf_embedding(x, emb_i), 0, 0);

        /* ---- conv, pooling */
        wf_tensor *img = wf_randn(WF_SHAPE(2, 3, 17, 15), WF_F32), *ker = wf_randn(WF_SHAPE(4, 3, 3, 3), WF_F32);
        wf_tensor *bias = wf_randn(WF_SHAPE(4), WF_F32);
        wf_conv2d_opts co = { .stride = { 2, 1 }, .padding = { 1, 2 }, .dilation = { 1, 2 } };
        compare("conv2d", wf_conv2d(G(img), G(ker), G(bias), &co), wf_conv2d(img, ker, bias, &co), 1e-4, 1e-4);
        wf_pool2d_opts po = { .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 } };
        compare("max_pool2d", wf_max_pool2d(G(img), &po), wf_max_pool2d(img, &po), 0, 0);
        compare("avg_pool2d", wf_avg_pool2d(G(img), &po), wf_avg_pool2d(img, &po), 1e-6, 1e-5);
        po.count_include_pad_false = true;
        compare("avg_pool2d no pad count", wf_avg_pool2d(G(img), &po), wf_avg_pool2d(img, &po), 1e-6, 1e-5);

        /* ---- backward through a small graph on both devices */
        {
            wf_tensor *pc = wf_clone(img), *pg = G(img);
            wf_tensor *kc = wf_clone(ker), *kg = G(ker);
            wf_set_requires_grad(pc, true); wf_set_requires_grad(pg, true);
            wf_set_requires_grad(kc, true); wf_set_requires_grad(kg, true);
            wf_pool2d_opts mp = { .kernel = { 2, 2 } };
            wf_tensor *lc = wf_sum_all(wf_gelu(wf_max_pool2d(wf_conv2d(pc, kc, NULL, NULL), &mp), WF_GELU_NONE));
            wf_tensor *lg = wf_sum_all(wf_gelu(wf_max_pool2d(wf_conv2d(pg, kg, NULL, NULL), &mp), WF_GELU_NONE));
            if (wf_backward(lc, NULL, false) || wf_backward(lg, NULL, false)) {
                printf("FAIL backward: %s\n", wf_error_message());
                wf_clear_error();
                n_failed++;
            } else {
                compare("backward conv/pool/gelu: d input", wf_grad(pg), wf_grad(pc), 1e-4, 1e-3);
                compare("backward conv/pool/gelu: d weight", wf_grad(kg), wf_grad(kc), 1e-3, 1e-3);
            }
        }

        /* ---- fused kernels: attention, layer norm, cross-entropy */
        check_sdpa(2, 3, 77, 77, 64, true, WF_BF16, false);
        check_sdpa(2, 3, 130, 130, 64, true, WF_BF16, true);
        check_sdpa(1, 2, 50, 90, 40, false, WF_BF16, false);
        check_sdpa(1, 2, 33, 70, 36, true, WF_F16, false);
        check_sdpa(1, 2, 129, 129, 128, true, WF_F16, false);
        check_sdpa(1, 2, 100, 64, 96, false, WF_BF16, true);
        check_sdpa(1, 2, 384, 384, 64, true, WF_BF16, false);   /* several 128-row query tiles, K/V and Q/dO prefetch */
        check_sdpa(2, 2, 200, 200, 32, true, WF_BF16, true);    /* vectorized delta with 4 threads per row */
        check_sdpa(1, 3, 45, 300, 33, false, WF_F16, false);    /* odd head dim: single-float dQ atomics */
        check_sdpa(1, 2, 300, 100, 64, true, WF_BF16, false);   /* causal, L > S */
        check_sdpa(1, 1, 50, 200, 128, true, WF_F16, true);     /* causal, L < S, head dim 128 */
        /* head dim 64 with 16-byte rows: the Hopper (wgmma) forward where the build has sm_90a */
        check_sdpa(1, 2, 200, 333, 64, false, WF_F16, false);   /* key tail, not causal */
        check_sdpa(2, 2, 256, 256, 64, false, WF_BF16, true);
        check_sdpa(1, 2, 70, 250, 64, true, WF_F16, false);     /* causal, L < S */
        check_sdpa(1, 1, 1024, 1024, 64, true, WF_BF16, false);
        check_sdpa_qkv(2, 77, 128, 2, true, WF_BF16, 0);
        check_sdpa_qkv(2, 130, 192, 3, true, WF_BF16, 8);
        check_sdpa_qkv(1, 65, 72, 2, false, WF_F16, 0);
        check_sdpa_qkv(1, 100, 128, 1, true, WF_F16, 16);
        check_sdpa_qkv(2, 64, 96, 1, false, WF_BF16, 0);
        check_csa(2, 100, 96, 3);
        check_layer_norm(WF_F32, 300, 768);
        check_layer_norm(WF_BF16, 37, 1500);
        check_layer_norm(WF_F32, 5, 3);
        check_layer_norm(WF_F32, 5000, 768);                 /* fast path: several rows per warp */
        check_layer_norm(WF_BF16, 1000, 1024);
        check_layer_norm(WF_F16, 77, 132);                   /* lanes past the row's end */
        check_layer_norm_ex(WF_F32, 64, 96, false, true);
        check_layer_norm_ex(WF_BF16, 3, 20, false, true);
        check_layer_norm_ex(WF_F32, 700, 512, true, false);  /* weight/bias gradients only */
        check_layer_norm_ex(WF_F16, 50, 256, false, false);  /* forward only (no graph) */
        check_xent(WF_F32, 37, 1000, WF_REDUCTION_MEAN);
        check_xent(WF_F32, 64, 50257, WF_REDUCTION_SUM);
        check_xent(WF_BF16, 16, 300, WF_REDUCTION_NONE);

        /* ---- vectorized elementwise paths, fused-bias linear */
        {
            wf_dtype hd[3] = { WF_BF16, WF_F16, WF_F32 };
            int64_t sizes[3] = { 8, 4099, 100003 };
            for (int d = 0; d < 3; d++)
                for (int v = 0; v < 3; v++) check_vec_unary(hd[d], sizes[v == 0 ? (d == 0 ? 2 : 1) : 1], v);
            check_vec_unary(WF_BF16, 8, 0);
            check_vec_unary(WF_BF16, 5, 0);
            /* n % 8 == 0, one dtype: the single-dtype fast kernels (unary, unary backward); the binary
             * checks run the vector kernel on sizes without a tail */
            check_vec_unary(WF_BF16, 65536, 0);
            check_vec_unary(WF_F16, 4096, 0);
            check_vec_unary(WF_F32, 8192, 0);
            check_vec_binary(WF_F32, WF_F32, 65536, 0);
            check_vec_binary(WF_BF16, WF_BF16, 4096, 0);
            check_vec_binary(WF_F16, WF_F16, 4104, 0);
            for (int v = 0; v < 3; v++) {
                check_vec_binary(WF_F32, WF_BF16, 100003, v);
                check_vec_binary(WF_BF16, WF_BF16, 4099, v);
                check_vec_binary(WF_F16, WF_F32, 4097, v);
            }
            wf_dtype cp[5][2] = { { WF_F32, WF_BF16 }, { WF_F32, WF_F16 }, { WF_BF16, WF_F32 }, { WF_F16, WF_F32 }, { WF_BF16, WF_F16 } };
            for (int c = 0; c < 5; c++)
                for (int v = 0; v < 3; v++) check_vec_cast(cp[c][0], cp[c][1], v == 0 ? 100003 : 4099, v);
            check_linear(WF_BF16, 2, 300, 768, 3072, true, false);
            check_linear(WF_F16, 1, 77, 64, 40, true, false);
            check_linear(WF_BF16, 3, 33, 96, 37, true, false);
            check_linear(WF_F32, 2, 65, 128, 96, true, false);
            check_linear(WF_F32, 4, 256, 768, 2304, true, true);
            check_linear(WF_F32, 2, 100, 64, 48, false, true);
        }

        /* ---- errors: an out-of-range index is reported, not a crash */
        {
            wf_tensor *bad = wf_from_data((int64_t[]){ 0, 99 }, WF_SHAPE(2), WF_I64);
            wf_tensor *r = wf_index_select(xg, 0, G(bad));
            int rc = r ? wf_cuda_synchronize(0) : wf_error();
            n_checks++;
            if (rc == WF_EINDEX || (!r && wf_error() == WF_EINDEX)) printf("ok   out-of-range index -> WF_EINDEX: %s\n", wf_error_message());
            else { printf("FAIL out-of-range index gave %d (%s)\n", rc, wf_error_message()); n_failed++; }
            wf_clear_error();
            n_checks++;
            if (wf_cuda_synchronize(0) == 0) printf("ok   device usable after the index error\n");
            else { printf("FAIL device after index error: %s\n", wf_error_message()); n_failed++; }
        }
    }
    /* ---- allocator: steady state makes no cudaMalloc */
    {
        wf_memory_stats s0, s1;
        for (int it = 0; it < 3; it++) WF_SCOPE { wf_tensor *a = wf_randn(WF_SHAPE(256, 256), WF_F32); wf_sum_all(wf_matmul(G(a), G(a))); }
        wf_cuda_memory_stats(0, &s0);
        for (int it = 0; it < 10; it++) WF_SCOPE { wf_tensor *a = wf_randn(WF_SHAPE(256, 256), WF_F32); wf_sum_all(wf_matmul(G(a), G(a))); }
        wf_cuda_memory_stats(0, &s1);
        n_checks++;
        bool ok = s1.n_system_allocs == s0.n_system_allocs && s1.allocated == s0.allocated;
        if (!ok) n_failed++;
        printf("%s allocator steady state: cudaMalloc calls %zu -> %zu, allocated %zu -> %zu, reserved %zu, peak %zu\n",
               ok ? "ok  " : "FAIL", s0.n_system_allocs, s1.n_system_allocs, s0.allocated, s1.allocated, s1.reserved,
               s1.peak_allocated);
        wf_cuda_empty_cache();
        wf_cuda_memory_stats(0, &s1);
        printf("     after empty_cache: reserved %zu, allocated %zu\n", s1.reserved, s1.allocated);
    }
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
