/* tests/cuda/test_cuda_optim.c: the multi-tensor optimizer kernels (tensor/cuda/cuda_optim.cu)
 * against the per-parameter paths on the GPU:
 *  - AdamW fused (the default for CUDA parameters) vs the generic tensor-op path
 *    (wf__optim_force_generic), three steps over 30 parameters of mixed sizes (more tensors
 *    than one launch's table, tensors of one element, tensors split across chunks and one
 *    longer than a whole table): f32 within 1e-6, bf16 within bf16 rounding;
 *  - wf_clip_grad_norm_tensor_ and wf_clip_grad_norm_ on CUDA vs the CPU, norms 2, 1, 3, inf;
 *  - bad inputs.
 * A plain program (suite 'cuda'): prints one line per check and, last, {"checks":N,"failed":M};
 * exit 1 if any failed, 77 (skip) without a GPU. */
#include "weft/weft.h"
#include "weft/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wf__optim_force_generic(bool on);   /* internal: the per-parameter tensor-op path */

static int n_checks, n_failed;
#define GPU WF_CUDA(0)
#define NP 30

/* max |a-b| / (1 + |b|) */
static double rel_diff(wf_tensor *a, wf_tensor *b) {
    int64_t n = wf_numel(a);
    if (wf_numel(b) != n) return INFINITY;
    double *x = malloc(sizeof(double) * (size_t)(n ? n : 1)), *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double worst = 0;
    if (!x || !y || wf_to_array(a, x, WF_F64) || wf_to_array(b, y, WF_F64)) worst = INFINITY;
    for (int64_t i = 0; i < n && isfinite(worst); i++) {
        double d = fabs(x[i] - y[i]) / (1 + fabs(y[i]));
        if (isnan(x[i]) != isnan(y[i])) d = INFINITY;
        if (d > worst) worst = d;
    }
    free(x), free(y);
    return worst;
}

static void check(bool ok, const char *name, double v) {
    n_checks++;
    if (!ok) n_failed++;
    printf("%s %-44s %.3g\n", ok ? "ok  " : "FAIL", name, v);
}

static int64_t size_of(int i) {
    static const int64_t sizes[] = { 1, 3, 768, 4097, 65536, 65537, 200003, 2304 * 768, 50304 * 64 };
    if (i == NP - 1) return 330LL * 65536 + 5;   /* longer than one launch's block table */
    return sizes[i % (int)(sizeof sizes / sizeof sizes[0])];
}

/* three AdamW steps on NP parameters of dtype dt; params[] and the final states out */
static int run_adamw(wf_dtype dt, bool generic, wf_tensor **params, wf_tensor **exp_avg) {
    wf__optim_force_generic(generic);
    wf_manual_seed(1234);
    for (int i = 0; i < NP; i++) {
        wf_tensor *c = wf_randn((int64_t[]){ size_of(i) }, 1, WF_F32);
        wf_tensor *d = wf_to_dtype(c, dt);
        params[i] = wf_to_device(d, GPU);
        wf_tensor_free(c), wf_tensor_free(d);
        if (!params[i] || wf_set_requires_grad(params[i], true)) return -1;
    }
    wf_optimizer *opt = wf_adamw_new(params, NP, &(wf_adam_opts){ .lr = 1e-2, .betas = { 0.9, 0.95 }, .weight_decay = 0.1 });
    if (!opt) return -1;
    int rc = 0;
    for (int step = 0; step < 3 && !rc; step++) {
        for (int i = 0; i < NP && !rc; i++) {
            wf_tensor *c = wf_randn((int64_t[]){ size_of(i) }, 1, WF_F32);
            wf_tensor *d = wf_to_dtype(c, dt);
            wf_tensor *g = wf_to_device(d, GPU);
            rc = g ? wf_set_grad(params[i], g) : -1;
            wf_tensor_free(c), wf_tensor_free(d), wf_tensor_free(g);
        }
        if (!rc) rc = wf_optimizer_step(opt);
    }
    /* exp_avg of every parameter, through the state dict's tensors */
    wf_optim_state *st = rc ? NULL : wf_optimizer_state_dict(opt);
    for (int i = 0; i < NP; i++) {
        char key[48];
        snprintf(key, sizeof key, "state/%d/exp_avg", i);
        wf_tensor *m = st ? wf_optim_state_find(st, key) : NULL;
        exp_avg[i] = m ? wf_clone(m) : NULL;
    }
    wf_optim_state_free(st);
    wf_optimizer_free(opt);
    wf__optim_force_generic(false);
    return rc;
}

static void test_adamw(wf_dtype dt, double tol, const char *label) {
    wf_tensor *pf[NP], *pg[NP], *mf[NP], *mg[NP];
    int rf = run_adamw(dt, false, pf, mf), rg = run_adamw(dt, true, pg, mg);
    char name[96];
    snprintf(name, sizeof name, "adamw fused vs generic %s (runs)", label);
    check(rf == 0 && rg == 0, name, 0);
    if (rf || rg) { printf("  %s\n", wf_error_message()); wf_clear_error(); return; }
    double wp = 0, wm = 0;
    for (int i = 0; i < NP; i++) {
        double d = rel_diff(pf[i], pg[i]), e = mf[i] && mg[i] ? rel_diff(mf[i], mg[i]) : INFINITY;
        if (!(d <= wp)) wp = d;
        if (!(e <= wm)) wm = e;
    }
    snprintf(name, sizeof name, "adamw fused vs generic %s params", label);
    check(wp <= tol, name, wp);
    snprintf(name, sizeof name, "adamw fused vs generic %s exp_avg", label);
    check(wm <= tol, name, wm);
    for (int i = 0; i < NP; i++) {
        wf_tensor_free(pf[i]), wf_tensor_free(pg[i]), wf_tensor_free(mf[i]), wf_tensor_free(mg[i]);
    }
}

static void test_clip(double norm_type, bool tensor_variant) {
    wf_manual_seed(99);
    enum { K = 27 };
    wf_tensor *pc[K], *pg[K];
    for (int i = 0; i < K; i++) {
        int64_t n = size_of(i % (NP - 1));
        pc[i] = wf_zeros((int64_t[]){ n }, 1, WF_F32);
        wf_set_requires_grad(pc[i], true);
        wf_tensor *g = wf_randn((int64_t[]){ n }, 1, WF_F32);
        wf_set_grad(pc[i], g);
        pg[i] = wf_to_device(pc[i], GPU);
        wf_tensor *gg = wf_to_device(g, GPU);
        wf_set_requires_grad(pg[i], true);
        wf_set_grad(pg[i], gg);
        wf_tensor_free(g), wf_tensor_free(gg);
    }
    double cpu_norm = 0, gpu_norm = NAN;
    int rc = wf_clip_grad_norm_(pc, K, 1.0, norm_type, true, &cpu_norm);
    if (tensor_variant) {
        wf_tensor *t = wf_clip_grad_norm_tensor_(pg, K, 1.0, norm_type);
        if (t) gpu_norm = wf_item(t);
        else rc = -1;
        wf_tensor_free(t);
    } else if (!rc) {
        rc = wf_clip_grad_norm_(pg, K, 1.0, norm_type, true, &gpu_norm);
    }
    char name[96];
    snprintf(name, sizeof name, "clip_grad_norm%s p=%g norm", tensor_variant ? "_tensor_" : "_", norm_type);
    double nd = fabs(gpu_norm - cpu_norm) / cpu_norm;
    check(rc == 0 && nd <= 1e-5, name, rc ? INFINITY : nd);
    if (rc) { printf("  %s\n", wf_error_message()); wf_clear_error(); }
    double w = 0;
    for (int i = 0; i < K; i++) {
        double d = rel_diff(wf_grad(pg[i]), wf_grad(pc[i]));
        if (!(d <= w)) w = d;
    }
    snprintf(name, sizeof name, "clip_grad_norm%s p=%g grads", tensor_variant ? "_tensor_" : "_", norm_type);
    check(w <= 1e-6, name, w);
    for (int i = 0; i < K; i++) wf_tensor_free(pc[i]), wf_tensor_free(pg[i]);
}

int main(void) {
    if (wf_cuda_device_count() < 1) { printf("no CUDA device: skipped\n"); return 77; }
    test_adamw(WF_F32, 1e-6, "f32");
    test_adamw(WF_BF16, 2.5e-2, "bf16");   /* the generic path rounds to bf16 after every op: a few ulps (2^-8) over 3 steps */
    test_clip(2, true);
    test_clip(2, false);
    test_clip(1, true);
    test_clip(3, true);
    test_clip(INFINITY, true);
    /* bad inputs: the codes and messages of the CPU entry points */
    wf_tensor *p = wf_to_device(wf_zeros((int64_t[]){ 4 }, 1, WF_F32), GPU);
    wf_tensor *t = wf_clip_grad_norm_tensor_(&p, 1, 1.0, 0);
    check(!t && wf_error() == WF_EINVAL && strstr(wf_error_message(), "norm_type"), "clip tensor_ bad norm_type", 0);
    wf_clear_error();
    t = wf_clip_grad_norm_tensor_(NULL, 2, 1.0, 2);
    check(!t && wf_error() == WF_ENULL, "clip tensor_ NULL params", 0);
    wf_clear_error();
    t = wf_clip_grad_norm_tensor_(&p, 1, 1.0, 2);   /* no gradient: norm 0 */
    check(t && wf_item(t) == 0, "clip tensor_ without gradients", 0);
    wf_tensor_free(t), wf_tensor_free(p);
    int sync = wf_cuda_synchronize(0);
    check(sync == 0, "device synchronize after all", 0);
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
