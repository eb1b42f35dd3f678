/* optim/update.c: the per-parameter update rules of torch.optim's single-tensor paths.
 *
 * Adam/AdamW on CUDA (no amsgrad, no maximize) are queued for the multi-tensor kernel of
 * tensor/cuda/cuda_optim.cu (PyTorch's fused=True): a step is a few launches in all.
 * Otherwise two implementations of each rule:
 *  - a fused CPU loop for contiguous f32/f64 parameters (parameter, gradient and state of one
 *    dtype): one pass, no allocation, arithmetic in the parameter's dtype with the scalars
 *    cast to it, in PyTorch's operation order (lerp for exp_avg, addcmul, addcdiv);
 *  - a generic path with in-place tensor ops and scoped temporaries, for every other device,
 *    dtype or layout.
 * The caller (wf_optimizer_step) runs with grad mode off and passes a parameter that has a
 * gradient. */
#include "optim_impl.h"

#include <math.h>
#include <string.h>

static bool g_force_generic;
void wf__optim_force_generic(bool on) { g_force_generic = on; }

/* ---------------------------------------------------------------- state creation */

static int make_state(const char *name, wf_tensor **slot, wf_tensor *p, double fill) {
    if (*slot) return 0;
    wf_tensor *t = wf__optim_take(wf_full_like(p, fill));
    if (!t) return wf_error() ? wf_error() : wf__error(WF_ENOMEM, "%s: cannot create state", name);
    *slot = t;
    return 0;
}

/* Create the state tensors this rule needs (PyTorch's _init_group), lazily. */
static int ensure_state(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_param_state *st) {
    int rc = 0;
    switch (opt->kind) {
    case WF_OPT_SGD: break;   /* momentum_buffer: a clone of the first (modified) gradient */
    case WF_OPT_ADAM: case WF_OPT_ADAMW:
        if (!rc) rc = make_state(opt->name, &st->exp_avg, p, 0);
        if (!rc) rc = make_state(opt->name, &st->exp_avg_sq, p, 0);
        if (!rc && h->amsgrad) rc = make_state(opt->name, &st->max_exp_avg_sq, p, 0);
        break;
    case WF_OPT_RMSPROP:
        if (!rc) rc = make_state(opt->name, &st->square_avg, p, 0);
        if (!rc && h->momentum > 0) rc = make_state(opt->name, &st->momentum_buffer, p, 0);
        if (!rc && h->centered) rc = make_state(opt->name, &st->grad_avg, p, 0);
        break;
    case WF_OPT_ADAGRAD:
        if (!rc) rc = make_state(opt->name, &st->sum, p, h->initial_accumulator_value);
        break;
    }
    if (!rc) st->initialized = true;
    return rc;
}

int wf__optim_prepare(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_param_state *st) {
    bool was = st->initialized;
    int rc = ensure_state(opt, h, p, st);
    st->initialized = was;   /* a state counts once its first update ran (state_dict) */
    /* SGD's buffer appears at its first update (its absence means "first" there and in
     * state_dict), so it is only set aside here */
    if (!rc && opt->kind == WF_OPT_SGD && h->momentum != 0 && !st->momentum_buffer && !st->spare) {
        st->spare = wf__optim_take(wf_empty_like(p));
        if (!st->spare) rc = wf_error() ? wf_error() : wf__error(WF_ENOMEM, "%s: cannot create state", opt->name);
    }
    return rc;
}

/* ---------------------------------------------------------------- fused CPU loops */

/* torch.lerp on CPU: weight < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w) */
#include "weft_config.h"

#define LERP(T, a, b, w) ((w) < (T)0.5 ? (a) + (w) * ((b) - (a)) : (b) - ((b) - (a)) * ((T)1 - (w)))

#define DEFINE_FUSED(T, SQRT, MAXF)                                                            \
static void sgd_##T(int64_t n, T *p, const T *g, T *buf, bool first, const wf_hparams *h) {    \
    const T wd = (T)h->weight_decay, mom = (T)h->momentum, damp1 = (T)(1 - h->dampening);       \
    const T nlr = (T)(-h->lr);                                                                 \
    for (int64_t i = 0; i < n; i++) {                                                          \
        T d = h->maximize ? -g[i] : g[i];                                                      \
        if (h->weight_decay != 0) d = d + wd * p[i];                                           \
        if (buf) {                                                                             \
            T b = first ? d : buf[i] * mom + damp1 * d;                                        \
            buf[i] = b;                                                                        \
            d = h->nesterov ? d + mom * b : b;                                                 \
        }                                                                                      \
        p[i] = p[i] + nlr * d;                                                                 \
    }                                                                                          \
}                                                                                              \
WF_MULTIVERSION static void adam_fast_##T(int64_t n, T *restrict p, const T *restrict g, T *restrict m,       \
                          T *restrict v, T nstep, T bc2s, T eps, T w1, T b2, T w2, T wd,       \
                          T decay) {                                                           \
    /* wd = 0 means no L2 term, decay = 1 no decoupled decay: multiplying by 1 and adding  \
     * 0 * p are exact, so one loop serves all four weight-decay variants */                \
    for (int64_t i = 0; i < n; i++) {                                                          \
        T pi = p[i] * decay;                                                                   \
        T d = g[i] + wd * pi;                                                                  \
        T mi = LERP(T, m[i], d, w1);                                                           \
        T vi = v[i] * b2 + w2 * (d * d);                                                       \
        m[i] = mi;                                                                             \
        v[i] = vi;                                                                             \
        T denom = SQRT(vi) / bc2s + eps;                                                       \
        p[i] = pi + nstep * (mi / denom);                                                      \
    }                                                                                          \
}                                                                                              \
static void adam_##T(int64_t n, T *p, const T *g, T *m, T *v, T *vmax, bool decoupled,         \
                     double step, const wf_hparams *h) {                                       \
    const double bc1 = 1 - pow(h->beta1, step), bc2 = 1 - pow(h->beta2, step);                 \
    const T nstep = (T)(-(h->lr / bc1)), bc2s = (T)sqrt(bc2), eps = (T)h->eps;                 \
    const T w1 = (T)(1 - h->beta1), b2 = (T)h->beta2, w2 = (T)(1 - h->beta2);                  \
    const T wd = (T)h->weight_decay, decay = (T)(1 - h->lr * h->weight_decay);                 \
    const bool l2 = !decoupled && h->weight_decay != 0;                                        \
    const bool dw = decoupled && h->weight_decay != 0;                                         \
    for (int64_t i = 0; i < n; i++) {                                                          \
        T pi = p[i];                                                                           \
        if (dw) pi = pi * decay;                                                               \
        T d = h->maximize ? -g[i] : g[i];                                                      \
        if (l2) d = d + wd * pi;                                                               \
        T mi = LERP(T, m[i], d, w1);                                                           \
        T vi = v[i] * b2 + w2 * (d * d);                                                       \
        m[i] = mi;                                                                             \
        v[i] = vi;                                                                             \
        if (vmax) { vi = MAXF(vmax[i], vi); vmax[i] = vi; }                                    \
        T denom = SQRT(vi) / bc2s + eps;                                                       \
        p[i] = pi + nstep * (mi / denom);                                                      \
    }                                                                                          \
}                                                                                              \
static void rmsprop_##T(int64_t n, T *p, const T *g, T *sa, T *ga, T *buf,                     \
                        const wf_hparams *h) {                                                 \
    const T a = (T)h->alpha, w = (T)(1 - h->alpha), eps = (T)h->eps, wd = (T)h->weight_decay;  \
    const T mom = (T)h->momentum, nlr = (T)(-h->lr);                                           \
    for (int64_t i = 0; i < n; i++) {                                                          \
        T d = h->maximize ? -g[i] : g[i];                                                      \
        if (h->weight_decay != 0) d = d + wd * p[i];                                           \
        T s = sa[i] * a + w * (d * d);                                                         \
        sa[i] = s;                                                                             \
        T avg;                                                                                 \
        if (ga) {                                                                              \
            T gi = LERP(T, ga[i], d, w);                                                       \
            ga[i] = gi;                                                                        \
            avg = SQRT(s + (T)(-1) * (gi * gi));                                               \
        } else {                                                                               \
            avg = SQRT(s);                                                                     \
        }                                                                                      \
        avg = avg + eps;                                                                       \
        if (buf) {                                                                             \
            T b = buf[i] * mom + d / avg;                                                      \
            buf[i] = b;                                                                        \
            p[i] = p[i] + nlr * b;                                                             \
        } else {                                                                               \
            p[i] = p[i] + nlr * (d / avg);                                                     \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
static void adagrad_##T(int64_t n, T *p, const T *g, T *sum, double step, const wf_hparams *h) {\
    const T nclr = (T)(-(h->lr / (1 + (step - 1) * h->lr_decay)));                             \
    const T eps = (T)h->eps, wd = (T)h->weight_decay;                                          \
    for (int64_t i = 0; i < n; i++) {                                                          \
        T d = h->maximize ? -g[i] : g[i];                                                      \
        if (h->weight_decay != 0) d = d + wd * p[i];                                           \
        T s = sum[i] + d * d;                                                                  \
        sum[i] = s;                                                                            \
        T sd = SQRT(s) + eps;                                                                  \
        p[i] = p[i] + nclr * (d / sd);                                                         \
    }                                                                                          \
}

static inline float maxf_nan(float a, float b) { return (a != a || b != b) ? NAN : (a > b ? a : b); }
static inline double maxd_nan(double a, double b) { return (a != a || b != b) ? NAN : (a > b ? a : b); }

DEFINE_FUSED(float, sqrtf, maxf_nan)
DEFINE_FUSED(double, sqrt, maxd_nan)

/* ---------------------------------------------------------------- batched Adam/AdamW */

/* All queued parameters of a step run in one parallel region, cut into fixed chunks across
 * parameters: small ones (biases, a 256 x 128 layer) no longer run one after another on one
 * thread, and the thread team wakes once per step instead of once per parameter (the idea
 * of PyTorch's foreach/fused optimizers). Small totals stay on the calling thread. */
#define ADAM_CHUNK 4096

typedef struct {
    wf_optim_batch *b;
    const int64_t *first;
} flush_ctx;

static void flush_chunks(void *vf, int64_t c0, int64_t c1) {
    const flush_ctx *f = vf;
    for (int64_t c = c0; c < c1; c++) {
        int j = 0;
        while (c >= f->first[j + 1]) j++;
        const wf_adam_job *a = &f->b->jobs[j];
        int64_t lo = (c - f->first[j]) * ADAM_CHUNK, len = a->n - lo < ADAM_CHUNK ? a->n - lo : ADAM_CHUNK;
        if (a->f64)
            adam_fast_double(len, (double *)a->p + lo, (const double *)a->g + lo, (double *)a->m + lo,
                             (double *)a->v + lo, a->nstep, a->bc2s, a->eps, a->w1, a->b2, a->w2, a->wd,
                             a->decay);
        else
            adam_fast_float(len, (float *)a->p + lo, (const float *)a->g + lo, (float *)a->m + lo,
                            (float *)a->v + lo, (float)a->nstep, (float)a->bc2s, (float)a->eps,
                            (float)a->w1, (float)a->b2, (float)a->w2, (float)a->wd, (float)a->decay);
    }
}

int wf__optim_flush(wf_optim_batch *b) {
    int rc = b->n_cuda ? wf__optim_cuda_flush(b) : 0;
    int64_t first[WF_ADAM_BATCH + 1], total = 0;
    first[0] = 0;
    for (int j = 0; j < b->n; j++) {
        first[j + 1] = first[j] + (b->jobs[j].n + ADAM_CHUNK - 1) / ADAM_CHUNK;
        total += b->jobs[j].n;
    }
    int64_t nchunks = first[b->n];
    flush_ctx fc = { b, first };
    /* chunks of ADAM_CHUNK elements, several per region chunk once the step is large */
    wf__parallel_for(nchunks, total > 65536 ? 4 : (nchunks ? nchunks : 1), flush_chunks, &fc);
    b->n = 0;
    return rc;
}

/* queue one parameter's update; the scalars exactly as adam_T computes them */
static void adam_queue(wf_optim_batch *b, wf_tensor *p, wf_tensor *g, wf_param_state *st, bool decoupled,
                       const wf_hparams *h) {
    if (b->n == WF_ADAM_BATCH) wf__optim_flush(b);
    const double bc1 = 1 - pow(h->beta1, st->step), bc2 = 1 - pow(h->beta2, st->step);
    bool l2 = !decoupled && h->weight_decay != 0, dw = decoupled && h->weight_decay != 0;
    b->jobs[b->n++] = (wf_adam_job){
        .p = wf__host_ptr(p), .g = wf__host_ptr(g), .m = wf__host_ptr(st->exp_avg),
        .v = wf__host_ptr(st->exp_avg_sq), .n = wf_numel(p), .f64 = wf_tensor_dtype(p) == WF_F64,
        .nstep = -(h->lr / bc1), .bc2s = sqrt(bc2), .eps = h->eps, .w1 = 1 - h->beta1,
        .b2 = h->beta2, .w2 = 1 - h->beta2, .wd = l2 ? h->weight_decay : 0,
        .decay = dw ? 1 - h->lr * h->weight_decay : 1 };
}

/* CUDA: Adam/AdamW without amsgrad or maximize, every tensor contiguous, of p's shape, on
 * p's device, in f32/bf16/f16 (the multi-tensor kernel does the math in f32 and stores each
 * tensor in its own dtype). */
static bool cuda_fusable(wf_tensor *p, wf_tensor *const *ts, int n) {
#ifndef WEFT_HAVE_CUDA
    /* no tensor is ever on CUDA: the compiler drops the CUDA queue below (the minimal preset's
     * size budget) */
    (void)p, (void)ts, (void)n;
    return false;
#endif
    if (g_force_generic || wf_tensor_device(p).type != WF_DEV_CUDA) return false;
    for (int i = -1; i < n; i++) {
        wf_tensor *t = i < 0 ? p : ts[i];
        wf_dtype dt = wf_tensor_dtype(t);
        if ((dt != WF_F32 && dt != WF_BF16 && dt != WF_F16) || !wf_is_contiguous(t) || !wf_same_shape(t, p) ||
            !wf_device_eq(wf_tensor_device(t), wf_tensor_device(p)))
            return false;
    }
    return true;
}

/* queue a CUDA parameter's update; the scalars as adam_queue's, rounded to f32 */
static int adam_queue_cuda(wf_optim_batch *b, wf_tensor *p, wf_tensor *g, wf_param_state *st, bool decoupled,
                           const wf_hparams *h) {
    int rc = 0, dev = wf_tensor_device(p).index;
    if (b->n_cuda == WF_ADAM_CUDA_BATCH || (b->n_cuda && b->cuda_dev != dev)) rc = wf__optim_cuda_flush(b);
    if (rc) return rc;
    const double bc1 = 1 - pow(h->beta1, st->step), bc2 = 1 - pow(h->beta2, st->step);
    bool l2 = !decoupled && h->weight_decay != 0, dw = decoupled && h->weight_decay != 0;
    /* wf__host_ptr is only pointer arithmetic (storage data + offset): a device address here */
    b->cuda_dev = dev;
    b->cuda[b->n_cuda++] = (wf_cuda_adam_param){
        .p = wf__host_ptr(p), .g = wf__host_ptr(g), .m = wf__host_ptr(st->exp_avg), .v = wf__host_ptr(st->exp_avg_sq),
        .n = wf_numel(p), .pdt = (int)wf_tensor_dtype(p), .gdt = (int)wf_tensor_dtype(g),
        .mdt = (int)wf_tensor_dtype(st->exp_avg), .vdt = (int)wf_tensor_dtype(st->exp_avg_sq),
        .nstep = (float)-(h->lr / bc1), .bc2s = (float)sqrt(bc2), .eps = (float)h->eps, .w1 = (float)(1 - h->beta1),
        .b2 = (float)h->beta2, .w2 = (float)(1 - h->beta2), .wd = (float)(l2 ? h->weight_decay : 0),
        .decay = (float)(dw ? 1 - h->lr * h->weight_decay : 1),
        .host_step = &st->step, .host_hparams = h, .decoupled = decoupled };   /* for CUDA graphs (cuda_step.c) */
    return 0;
}

/* Can the fused loop run? Every tensor on the CPU, contiguous, and of p's dtype (f32/f64). */
static bool fusable(wf_tensor *p, wf_tensor *const *ts, int n) {
    if (g_force_generic) return false;
    if (wf_tensor_device(p).type != WF_DEV_CPU || (wf_tensor_dtype(p) != WF_F32 && wf_tensor_dtype(p) != WF_F64)) return false;
    if (!wf_is_contiguous(p)) return false;
    for (int i = 0; i < n; i++) {
        wf_tensor *t = ts[i];
        if (!t) continue;
        if (wf_tensor_device(t).type != WF_DEV_CPU || wf_tensor_dtype(t) != wf_tensor_dtype(p) || !wf_is_contiguous(t) ||
            !wf_same_shape(t, p))
            return false;
    }
    return true;
}

#define PTR(T, t) ((t) ? (T *)(void *)wf__host_ptr(t) : (T *)NULL)

/* ---------------------------------------------------------------- generic path */

/* d = grad, negated for maximize, plus weight_decay * p when l2 (a scope is open). */
static wf_tensor *modified_grad(wf_tensor *p, wf_tensor *g, const wf_hparams *h, bool l2) {
    wf_tensor *d = h->maximize ? wf_neg(g) : g;
    if (l2 && h->weight_decay != 0) d = wf_add(d, wf_mul_scalar(p, h->weight_decay));
    return d;
}

#define TRY(expr) do { if (!rc) rc = (expr); } while (0)
#define NN(t) ((t) ? 0 : (wf_error() ? wf_error() : WF_ENOMEM))

static int generic_update(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_tensor *g,
                          wf_param_state *st) {
    int rc = 0;
    wf_scope_begin();
    switch (opt->kind) {
    case WF_OPT_SGD: {
        wf_tensor *d = modified_grad(p, g, h, true);
        rc = NN(d);
        if (!rc && h->momentum != 0) {
            if (!st->momentum_buffer) {
                st->momentum_buffer = wf__optim_take(wf_clone(d));
                rc = NN(st->momentum_buffer);
            } else {
                TRY(wf_mul_scalar_(st->momentum_buffer, h->momentum));
                TRY(wf_add_scaled_(st->momentum_buffer, d, 1 - h->dampening));
            }
            if (!rc) {
                d = h->nesterov ? wf_add(d, wf_mul_scalar(st->momentum_buffer, h->momentum))
                                : st->momentum_buffer;
                rc = NN(d);
            }
        }
        TRY(wf_add_scaled_(p, d, -h->lr));
        break;
    }
    case WF_OPT_ADAM: case WF_OPT_ADAMW: {
        bool decoupled = opt->kind == WF_OPT_ADAMW;
        double step = st->step;
        double bc1 = 1 - pow(h->beta1, step), bc2 = 1 - pow(h->beta2, step);
        if (decoupled && h->weight_decay != 0) TRY(wf_mul_scalar_(p, 1 - h->lr * h->weight_decay));
        wf_tensor *d = rc ? NULL : modified_grad(p, g, h, !decoupled);
        TRY(NN(d));
        TRY(wf_mul_scalar_(st->exp_avg, h->beta1));
        TRY(wf_add_scaled_(st->exp_avg, d, 1 - h->beta1));
        TRY(wf_mul_scalar_(st->exp_avg_sq, h->beta2));
        TRY(wf_add_scaled_(st->exp_avg_sq, rc ? NULL : wf_mul(d, d), 1 - h->beta2));
        wf_tensor *src = st->exp_avg_sq;
        if (h->amsgrad) {
            TRY(wf_copy_(st->max_exp_avg_sq, rc ? NULL : wf_maximum(st->max_exp_avg_sq, st->exp_avg_sq)));
            src = st->max_exp_avg_sq;
        }
        if (!rc) {
            wf_tensor *denom = wf_add_scalar(wf_div_scalar(wf_sqrt(src), sqrt(bc2)), h->eps);
            TRY(wf_add_scaled_(p, wf_div(st->exp_avg, denom), -(h->lr / bc1)));
        }
        break;
    }
    case WF_OPT_RMSPROP: {
        wf_tensor *d = modified_grad(p, g, h, true);
        rc = NN(d);
        TRY(wf_mul_scalar_(st->square_avg, h->alpha));
        TRY(wf_add_scaled_(st->square_avg, rc ? NULL : wf_mul(d, d), 1 - h->alpha));
        wf_tensor *avg = NULL;
        if (!rc && h->centered) {
            TRY(wf_mul_scalar_(st->grad_avg, h->alpha));
            TRY(wf_add_scaled_(st->grad_avg, d, 1 - h->alpha));
            if (!rc) avg = wf_sqrt(wf_sub(st->square_avg, wf_mul(st->grad_avg, st->grad_avg)));
        } else if (!rc) {
            avg = wf_sqrt(st->square_avg);
        }
        TRY(NN(avg));
        TRY(wf_add_scalar_(avg, h->eps));
        if (!rc && h->momentum > 0) {
            TRY(wf_mul_scalar_(st->momentum_buffer, h->momentum));
            TRY(wf_add_(st->momentum_buffer, wf_div(d, avg)));
            TRY(wf_add_scaled_(p, st->momentum_buffer, -h->lr));
        } else if (!rc) {
            TRY(wf_add_scaled_(p, wf_div(d, avg), -h->lr));
        }
        break;
    }
    case WF_OPT_ADAGRAD: {
        double clr = h->lr / (1 + (st->step - 1) * h->lr_decay);
        wf_tensor *d = modified_grad(p, g, h, true);
        rc = NN(d);
        TRY(wf_add_(st->sum, rc ? NULL : wf_mul(d, d)));
        if (!rc) {
            wf_tensor *sd = wf_add_scalar(wf_sqrt(st->sum), h->eps);
            TRY(wf_add_scaled_(p, wf_div(d, sd), -clr));
        }
        break;
    }
    }
    wf_scope_end();
    return rc;
}

/* ---------------------------------------------------------------- entry */

int wf__optim_update(wf_optimizer *opt, const wf_hparams *h, wf_tensor *p, wf_tensor *g,
                     wf_param_state *st, wf_optim_batch *batch) {
    wf_tensor *ts[5] = { g, st->exp_avg, st->exp_avg_sq, st->max_exp_avg_sq, st->momentum_buffer };
    bool cuda_fused = st->initialized && (opt->kind == WF_OPT_ADAM || opt->kind == WF_OPT_ADAMW) && !h->amsgrad &&
                      !h->maximize && cuda_fusable(p, ts, 3);
    int rc = wf__optim_cuda_capture_check(opt, p, st, cuda_fused);   /* CUDA graphs: cuda_step.c */
    if (!rc) rc = ensure_state(opt, h, p, st);
    if (rc) return rc;
    if (opt->kind != WF_OPT_SGD) st->step += 1;

    ts[1] = st->exp_avg, ts[2] = st->exp_avg_sq, ts[3] = st->max_exp_avg_sq, ts[4] = st->momentum_buffer;
    wf_tensor *ts2[3] = { st->square_avg, st->grad_avg, st->sum };
    if ((opt->kind == WF_OPT_ADAM || opt->kind == WF_OPT_ADAMW) && !h->amsgrad && !h->maximize &&
        cuda_fusable(p, ts, 3)) {
        wf_optim_batch one = { 0 };
        wf_optim_batch *b = batch ? batch : &one;
        rc = adam_queue_cuda(b, p, g, st, opt->kind == WF_OPT_ADAMW, h);
        if (!rc && !batch) rc = wf__optim_cuda_flush(&one);
        if (rc) { st->step -= 1; return rc; }
        wf__bump_version(st->exp_avg);
        wf__bump_version(st->exp_avg_sq);
        wf__bump_version(p);
        return 0;
    }
    if (!(fusable(p, ts, 5) && fusable(p, ts2, 3))) {
        rc = generic_update(opt, h, p, g, st);
        if (rc && opt->kind != WF_OPT_SGD) st->step -= 1;
        return rc;
    }

    bool first = false;
    if (opt->kind == WF_OPT_SGD && h->momentum != 0 && !st->momentum_buffer) {
        st->momentum_buffer = st->spare ? st->spare : wf__optim_take(wf_empty_like(p));
        st->spare = NULL;
        if (!st->momentum_buffer) return wf_error() ? wf_error() : WF_ENOMEM;
        first = true;
    }
    int64_t n = wf_numel(p);
    bool f64 = wf_tensor_dtype(p) == WF_F64;
    switch (opt->kind) {
    case WF_OPT_SGD:
        if (f64) sgd_double(n, PTR(double, p), PTR(double, g), h->momentum != 0 ? PTR(double, st->momentum_buffer) : NULL, first, h);
        else sgd_float(n, PTR(float, p), PTR(float, g), h->momentum != 0 ? PTR(float, st->momentum_buffer) : NULL, first, h);
        if (h->momentum != 0) wf__bump_version(st->momentum_buffer);
        break;
    case WF_OPT_ADAM: case WF_OPT_ADAMW: {
        bool dec = opt->kind == WF_OPT_ADAMW;
        wf_tensor *vm = h->amsgrad ? st->max_exp_avg_sq : NULL;
        wf_optim_batch one = { 0 };
        if (!vm && !h->maximize) {   /* the branch-free vectorized loop, batched */
            adam_queue(batch ? batch : &one, p, g, st, dec, h);
            if (!batch) (void)wf__optim_flush(&one);   /* CPU only: cannot fail */
        } else if (f64) adam_double(n, PTR(double, p), PTR(double, g), PTR(double, st->exp_avg), PTR(double, st->exp_avg_sq), PTR(double, vm), dec, st->step, h);
        else adam_float(n, PTR(float, p), PTR(float, g), PTR(float, st->exp_avg), PTR(float, st->exp_avg_sq), PTR(float, vm), dec, st->step, h);
        wf__bump_version(st->exp_avg);
        wf__bump_version(st->exp_avg_sq);
        if (vm) wf__bump_version(vm);
        break;
    }
    case WF_OPT_RMSPROP: {
        wf_tensor *ga = h->centered ? st->grad_avg : NULL, *buf = h->momentum > 0 ? st->momentum_buffer : NULL;
        if (f64) rmsprop_double(n, PTR(double, p), PTR(double, g), PTR(double, st->square_avg), PTR(double, ga), PTR(double, buf), h);
        else rmsprop_float(n, PTR(float, p), PTR(float, g), PTR(float, st->square_avg), PTR(float, ga), PTR(float, buf), h);
        wf__bump_version(st->square_avg);
        if (ga) wf__bump_version(ga);
        if (buf) wf__bump_version(buf);
        break;
    }
    case WF_OPT_ADAGRAD:
        if (f64) adagrad_double(n, PTR(double, p), PTR(double, g), PTR(double, st->sum), st->step, h);
        else adagrad_float(n, PTR(float, p), PTR(float, g), PTR(float, st->sum), st->step, h);
        wf__bump_version(st->sum);
        break;
    }
    wf__bump_version(p);
    return 0;
}
