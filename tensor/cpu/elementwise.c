/* tensor/cpu/elementwise.c: unary, binary, where, axpy on the CPU.
 *
 * f32 and f64 run natively (loops the compiler vectorizes). Contiguous f16/bf16 operands are
 * staged through f32 blocks and run the same f32 loops (one rounding per result); strided
 * half and integer dtypes go through a float/double path element by element. Large
 * contiguous operands are cut into chunks run on weft's thread pool (thread_pool.c). */
#include "cpu_kernels.h"
#include "vec_exp.h"
#include "weft_config.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 32768   /* below this many elements threading costs more than it saves */

typedef struct {
    wf_iter_fn fn;
    void *ctx;
    int nops;
    char *base[4];
    int64_t bs[4];
} run_ctx;

static void run_chunk(void *vc, int64_t lo, int64_t hi) {
    const run_ctx *r = vc;
    char *p[4];
    for (int k = 0; k < r->nops; k++) p[k] = r->base[k] + lo * r->bs[k];
    r->fn(p, r->bs, hi - lo, r->ctx);
}

/* Run fn over all operands: in parallel chunks when everything is contiguous and big. */
static void run(int nops, wf_tensor *const *ops, wf_iter_fn fn, void *ctx) {
    int64_t n = wf_numel(ops[0]);
    bool contig = true, half = false;
    for (int k = 0; k < nops; k++) {
        contig = contig && wf_is_contiguous(ops[k]);
        half = half || ops[k]->dtype == WF_BF16 || ops[k]->dtype == WF_F16;
    }
    /* half operands cost a conversion each way per element: threads pay off sooner */
    int64_t par_min = half ? PAR_MIN / 4 : PAR_MIN, chunk = half ? 4096 : 16384;
    if (!contig || n < par_min) { wf__iter(nops, ops, fn, ctx); return; }
    run_ctx r = { .fn = fn, .ctx = ctx, .nops = nops };
    for (int k = 0; k < nops; k++) {
        r.bs[k] = (int64_t)wf_dtype_size(ops[k]->dtype);
        r.base[k] = wf__host_ptr(ops[k]);
    }
    wf__parallel_for(n, chunk, run_chunk, &r);   /* arguments valid: cannot fail */
}

/* ---------------------------------------------------------------- half staging */

#define STAGE 256

/* All operands bf16 (or all f16), each contiguous (stride 2) or, for inputs, broadcast
 * (stride 0): convert STAGE-element blocks of the inputs to f32, run fn's f32 loop (ctx_f32
 * says f32 everywhere), round the block of operand 0 back. Inputs are read before the output
 * block is written, so in-place (y aliasing x) stays correct. Returns false when the layout
 * does not fit, and the caller takes its element-by-element path. */
static bool run_half_staged(wf_iter_fn fn, void *ctx_f32, int nops, char **p, const int64_t *bs,
                            int64_t n, bool bf) {
    if (bs[0] != 2) return false;
    for (int k = 1; k < nops; k++) if (bs[k] != 2 && bs[k] != 0) return false;
    float buf[4][STAGE];
    char *q[4];
    int64_t fs[4] = { 4, 4, 4, 4 };
    for (int k = 0; k < nops; k++) q[k] = (char *)buf[k];
    for (int k = 1; k < nops; k++)
        if (bs[k] == 0) { wf__half_to_f32_n(buf[k], (const uint16_t *)p[k], 1, bf); fs[k] = 0; }
    for (int64_t lo = 0; lo < n; lo += STAGE) {
        int64_t len = n - lo < STAGE ? n - lo : STAGE;
        for (int k = 1; k < nops; k++)
            if (bs[k]) wf__half_to_f32_n(buf[k], (const uint16_t *)p[k] + lo, len, bf);
        fn(q, fs, len, ctx_f32);
        wf__f32_to_half_n((uint16_t *)p[0] + lo, buf[0], len, bf);
    }
    return true;
}

/* ---------------------------------------------------------------- scalar math */

#define SQRT1_2 0.70710678118654752440
#define SQRT_2_PI 0.79788456080286535588
#define INV_SQRT_2PI 0.39894228040143267794

static inline double d_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline float f_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* f32 exp, tanh and the tanh GELU without a libm call per element (f_exp: vec_exp.h): plain
 * arithmetic and selects, so the contiguous loops below vectorize (a training step of a GPT
 * on the CPU spent ~20 % of its time in scalar tanhf / double tanh). Accuracy: the tolerances
 * stated and swept in tests/ops/test_fast_tanh.c (tanh within 3 ulp). */

/* tanh: odd Taylor series below |x| = 0.55 (to x^17: the rest < 2^-27 relative), above it
 * 1 - 2 / (e^2|x| + 1), which loses at most a bit to the subtraction there; |x| >= 10 rounds
 * to 1 (as tanhf). Sign by copysign, so -0 stays -0; NaN stays NaN. */
static inline float f_tanh(float x) {
    float a = fabsf(x), ac = pick(a < 10.0f, a, 10.0f);   /* NaN: 10, fixed below */
    float z = ac * ac;
    float q = -1.0f / 3 + z * (2.0f / 15 + z * (-17.0f / 315 + z * (62.0f / 2835 + z * (-1382.0f / 155925 +
              z * (21844.0f / 6081075 + z * (-929569.0f / 638512875 + z * (6404582.0f / 10854718875.0f)))))));
    float small = ac + ac * z * q;
    float big = 1.0f - 2.0f / (f_exp(2.0f * ac) + 1.0f);
    float t = copysignf(pick(ac < 0.55f, small, big), x);
    return pick(x != x, x, t);
}

/* GELU(tanh) = x (1 + tanh u) / 2 = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
 * sigmoid form has no cancellation in 1 + tanh u for x < 0. Edges as the tanh form gave:
 * -inf -> NaN (-inf / inf), +inf -> inf, large negative x -> -0. */
static inline float f_gelu_tanh(float x) {
    float u = (float)SQRT_2_PI * (x + 0.044715f * x * x * x);
    return x / (1.0f + f_exp(-2.0f * u));
}

/* its derivative, s = sigmoid(2u): s + x s (1 - s) 2 du/dx. NaN at +-inf (0 * inf), as the
 * tanh form and PyTorch give. */
static inline float f_gelu_tanh_grad(float x) {
    float x2 = x * x;
    float u = (float)SQRT_2_PI * (x + 0.044715f * x2 * x);
    float du = (float)SQRT_2_PI * (1.0f + 3.0f * 0.044715f * x2);
    float s = 1.0f / (1.0f + f_exp(-2.0f * u));
    return s + 2.0f * x * (s * (1.0f - s)) * du;
}

static inline double unary_d(wf_unary_op op, double x, double a, double b) {
    switch (op) {
    case WF_U_NEG: return -x;
    case WF_U_ABS: return fabs(x);
    case WF_U_EXP: return exp(x);
    case WF_U_LOG: return log(x);
    case WF_U_LOG1P: return log1p(x);
    case WF_U_SQRT: return sqrt(x);
    case WF_U_RSQRT: return 1.0 / sqrt(x);
    case WF_U_SIN: return sin(x);
    case WF_U_COS: return cos(x);
    case WF_U_TANH: return tanh(x);
    case WF_U_SIGMOID: return d_sigmoid(x);
    case WF_U_RELU: return x <= 0 ? 0 : x;   /* NaN stays NaN, as PyTorch's */
    case WF_U_GELU: return 0.5 * x * (1.0 + erf(x * SQRT1_2));
    case WF_U_GELU_TANH: return 0.5 * x * (1.0 + tanh(SQRT_2_PI * (x + 0.044715 * x * x * x)));
    case WF_U_SILU: return x * d_sigmoid(x);
    case WF_U_SQUARE: return x * x;
    case WF_U_SIGN: return (x > 0) - (x < 0);
    case WF_U_POW: return pow(x, a);
    case WF_U_CLAMP: return x < a ? a : (x > b ? b : x);
    case WF_U_LOGICAL_NOT: return x == 0;
    case WF_U_ISFINITE: return isfinite(x) ? 1 : 0;
    default: return NAN;
    }
}

static inline float unary_f(wf_unary_op op, float x, float a, float b) {
    switch (op) {
    case WF_U_NEG: return -x;
    case WF_U_ABS: return fabsf(x);
    case WF_U_EXP: return f_exp(x);
    case WF_U_LOG: return logf(x);
    case WF_U_LOG1P: return log1pf(x);
    case WF_U_SQRT: return sqrtf(x);
    case WF_U_RSQRT: return 1.0f / sqrtf(x);
    case WF_U_SIN: return sinf(x);
    case WF_U_COS: return cosf(x);
    case WF_U_TANH: return f_tanh(x);
    case WF_U_SIGMOID: return f_sigmoid(x);
    case WF_U_RELU: return x <= 0 ? 0 : x;   /* NaN stays NaN, as PyTorch's */
    case WF_U_GELU: return 0.5f * x * (1.0f + erff(x * (float)SQRT1_2));
    case WF_U_GELU_TANH: return f_gelu_tanh(x);
    case WF_U_SILU: return x * f_sigmoid(x);
    case WF_U_SQUARE: return x * x;
    case WF_U_SIGN: return (float)((x > 0) - (x < 0));
    case WF_U_POW: return a == 2.0f ? x * x : powf(x, a);
    case WF_U_CLAMP: return x < a ? a : (x > b ? b : x);
    case WF_U_LOGICAL_NOT: return x == 0;
    case WF_U_ISFINITE: return isfinite(x) ? 1 : 0;
    default: return NAN;
    }
}

/* d op(x) / dx times g (y = op(x) given) */
static inline double dunary_d(wf_unary_op op, double g, double x, double y, double a, double b) {
    switch (op) {
    case WF_U_NEG: return -g;
    case WF_U_ABS: return g * ((x > 0) - (x < 0));
    case WF_U_EXP: return g * y;
    case WF_U_LOG: return g / x;
    case WF_U_LOG1P: return g / (1.0 + x);
    case WF_U_SQRT: return g * 0.5 / y;
    case WF_U_RSQRT: return g * -0.5 * y * y * y;
    case WF_U_SIN: return g * cos(x);
    case WF_U_COS: return -g * sin(x);
    case WF_U_TANH: return g * (1.0 - y * y);
    case WF_U_SIGMOID: return g * y * (1.0 - y);
    case WF_U_RELU: return x > 0 ? g : 0;
    case WF_U_GELU: {
        double cdf = 0.5 * (1.0 + erf(x * SQRT1_2)), pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
        return g * (cdf + x * pdf);
    }
    case WF_U_GELU_TANH: {
        double u = SQRT_2_PI * (x + 0.044715 * x * x * x), t = tanh(u);
        double du = SQRT_2_PI * (1.0 + 3.0 * 0.044715 * x * x);
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
    }
    case WF_U_SILU: { double s = d_sigmoid(x); return g * s * (1.0 + x * (1.0 - s)); }
    case WF_U_SQUARE: return g * 2.0 * x;
    case WF_U_POW: return a == 0 ? 0 : g * a * pow(x, a - 1.0);
    case WF_U_CLAMP: return (x >= a && x <= b) ? g : 0;
    default: return 0;
    }
}

static inline float dunary_f(wf_unary_op op, float g, float x, float y, float a, float b) {
    switch (op) {
    case WF_U_NEG: return -g;
    case WF_U_EXP: return g * y;
    case WF_U_LOG: return g / x;
    case WF_U_SQRT: return g * 0.5f / y;
    case WF_U_TANH: return g * (1.0f - y * y);
    case WF_U_SIGMOID: return g * y * (1.0f - y);
    case WF_U_RELU: return x > 0 ? g : 0;
    case WF_U_SQUARE: return g * 2.0f * x;
    case WF_U_CLAMP: return (x >= a && x <= b) ? g : 0;
    case WF_U_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * (float)SQRT1_2)), pdf = (float)INV_SQRT_2PI * expf(-0.5f * x * x);
        return g * (cdf + x * pdf);
    }
    case WF_U_GELU_TANH: return g * f_gelu_tanh_grad(x);
    case WF_U_SILU: { float s = f_sigmoid(x); return g * s * (1.0f + x * (1.0f - s)); }
    default: return (float)dunary_d(op, g, x, y, a, b);
    }
}

static inline double binary_d(wf_binary_op op, double a, double b) {
    switch (op) {
    case WF_B_ADD: return a + b;
    case WF_B_SUB: return a - b;
    case WF_B_MUL: return a * b;
    case WF_B_DIV: return a / b;
    case WF_B_POW: return pow(a, b);
    case WF_B_MAX: return (a != a || a > b) ? a : b;   /* NaN propagates */
    case WF_B_MIN: return (a != a || a < b) ? a : b;
    case WF_B_EQ: return a == b;
    case WF_B_NE: return a != b;
    case WF_B_LT: return a < b;
    case WF_B_LE: return a <= b;
    case WF_B_GT: return a > b;
    case WF_B_GE: return a >= b;
    case WF_B_AND: return (a != 0) && (b != 0);
    case WF_B_OR: return (a != 0) || (b != 0);
    default: return NAN;
    }
}

static inline bool is_predicate(wf_binary_op op) { return op >= WF_B_EQ; }

/* ---------------------------------------------------------------- unary */

typedef struct { wf_unary_op op; double a, b; wf_dtype dy, dx; } un_ctx;

WF_MULTIVERSION static void unary_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    un_ctx *c = vc;
    if (c->dx == WF_F32 && c->dy == WF_F32) {
        float a = (float)c->a, b = (float)c->b;
        if (bs[0] == 4 && bs[1] == 4) {
            float *y = (float *)p[0];            /* may alias x (in-place ops) */
            const float *x = (const float *)p[1];
            switch (c->op) {   /* the hot ones get their own loop so they vectorize */
            case WF_U_RELU: for (int64_t i = 0; i < n; i++) { float v = x[i]; y[i] = v <= 0 ? 0.0f : v; } return;
            case WF_U_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; return;
            case WF_U_SQUARE: for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; return;
            case WF_U_EXP: for (int64_t i = 0; i < n; i++) y[i] = f_exp(x[i]); return;
            case WF_U_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); return;
            case WF_U_TANH: for (int64_t i = 0; i < n; i++) y[i] = f_tanh(x[i]); return;
            case WF_U_GELU_TANH: for (int64_t i = 0; i < n; i++) y[i] = f_gelu_tanh(x[i]); return;
            default: for (int64_t i = 0; i < n; i++) y[i] = unary_f(c->op, x[i], a, b); return;
            }
        }
        for (int64_t i = 0; i < n; i++)
            *(float *)(p[0] + i * bs[0]) = unary_f(c->op, *(const float *)(p[1] + i * bs[1]), a, b);
        return;
    }
    if (c->dx == WF_F64 && c->dy == WF_F64) {
        for (int64_t i = 0; i < n; i++)
            *(double *)(p[0] + i * bs[0]) = unary_d(c->op, *(const double *)(p[1] + i * bs[1]), c->a, c->b);
        return;
    }
    bool half = c->dx == WF_F16 || c->dx == WF_BF16;
    if (half && c->dy == c->dx) {   /* bf16/f16 in and out: compute in f32 */
        bool bf = c->dx == WF_BF16;
        un_ctx f = *c;
        f.dx = f.dy = WF_F32;
        if (run_half_staged(unary_run, &f, 2, p, bs, n, bf)) return;
        float a = (float)c->a, b = (float)c->b;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = *(const uint16_t *)(p[1] + i * bs[1]);
            float y = unary_f(c->op, bf ? wf__bf16_to_f32(h) : wf__f16_to_f32(h), a, b);
            *(uint16_t *)(p[0] + i * bs[0]) = bf ? wf__f32_to_bf16(y) : wf__f32_to_f16(y);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double x = wf__load(p[1] + i * bs[1], c->dx);
        double y = half ? (double)unary_f(c->op, (float)x, (float)c->a, (float)c->b) : unary_d(c->op, x, c->a, c->b);
        wf__store(p[0] + i * bs[0], c->dy, y);
    }
}

int wf__cpu_unary(wf_unary_op op, wf_tensor *y, const wf_tensor *x, double a, double b) {
    un_ctx c = { op, a, b, y->dtype, x->dtype };
    wf_tensor *ops[2] = { y, (wf_tensor *)x };
    run(2, ops, unary_run, &c);
    return 0;
}

WF_MULTIVERSION static void unary_bw_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    un_ctx *c = vc;
    /* p: gx, gy, x, y */
    if (c->dx == WF_F32) {
        float a = (float)c->a, b = (float)c->b;
        if (c->op == WF_U_RELU && bs[0] == 4 && bs[1] == 4 && bs[2] == 4) {
            float *restrict gx = (float *)p[0];
            const float *restrict gy = (const float *)p[1], *restrict x = (const float *)p[2];
            /* unconditional loads so the compiler can if-convert and vectorize */
            for (int64_t i = 0; i < n; i++) { float g = gy[i]; gx[i] = x[i] > 0 ? g : 0.0f; }
            return;
        }
        if (c->op == WF_U_GELU_TANH && bs[0] == 4 && bs[1] == 4 && bs[2] == 4) {
            float *gx = (float *)p[0];   /* may alias gy: the compiler checks the overlap */
            const float *gy = (const float *)p[1], *x = (const float *)p[2];
            for (int64_t i = 0; i < n; i++) gx[i] = gy[i] * f_gelu_tanh_grad(x[i]);
            return;
        }
        for (int64_t i = 0; i < n; i++)
            *(float *)(p[0] + i * bs[0]) = dunary_f(c->op, *(const float *)(p[1] + i * bs[1]),
                                                    *(const float *)(p[2] + i * bs[2]),
                                                    *(const float *)(p[3] + i * bs[3]), a, b);
        return;
    }
    if (c->dx == WF_BF16 || c->dx == WF_F16) {   /* f32 math */
        bool bf = c->dx == WF_BF16;
        un_ctx f = *c;
        f.dx = f.dy = WF_F32;
        if (run_half_staged(unary_bw_run, &f, 4, p, bs, n, bf)) return;
        float a = (float)c->a, b = (float)c->b;
#define H2F(ptr) (bf ? wf__bf16_to_f32(*(const uint16_t *)(ptr)) : wf__f16_to_f32(*(const uint16_t *)(ptr)))
        for (int64_t i = 0; i < n; i++) {
            float r = dunary_f(c->op, H2F(p[1] + i * bs[1]), H2F(p[2] + i * bs[2]), H2F(p[3] + i * bs[3]), a, b);
            *(uint16_t *)(p[0] + i * bs[0]) = bf ? wf__f32_to_bf16(r) : wf__f32_to_f16(r);
        }
#undef H2F
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double g = wf__load(p[1] + i * bs[1], c->dx), x = wf__load(p[2] + i * bs[2], c->dx);
        double y = wf__load(p[3] + i * bs[3], c->dx);
        wf__store(p[0] + i * bs[0], c->dx, dunary_d(c->op, g, x, y, c->a, c->b));
    }
}

int wf__cpu_unary_backward(wf_unary_op op, wf_tensor *gx, const wf_tensor *gy,
                           const wf_tensor *x, const wf_tensor *y, double a, double b) {
    un_ctx c = { op, a, b, gx->dtype, gx->dtype };
    wf_tensor *ops[4] = { gx, (wf_tensor *)gy, (wf_tensor *)(x ? x : y), (wf_tensor *)(y ? y : x) };
    run(4, ops, unary_bw_run, &c);
    return 0;
}

/* ---------------------------------------------------------------- binary */

typedef struct { wf_binary_op op; wf_dtype dt, dy; double s; bool reversed; } bin_ctx;

#define F32_LOOP(expr)                                                                     \
    do {                                                                                   \
        if (bs[0] == 4 && bs[1] == 4 && bs[2] == 4) {                                      \
            float *y = (float *)p[0];                                                     \
            const float *A = (const float *)p[1], *B = (const float *)p[2]; \
            for (int64_t i = 0; i < n; i++) { float a = A[i], b = B[i]; y[i] = (expr); }  \
        } else if (bs[0] == 4 && bs[1] == 4 && bs[2] == 0) {                               \
            float *y = (float *)p[0];                                                     \
            const float *A = (const float *)p[1];                                \
            const float b = *(const float *)p[2];                                          \
            for (int64_t i = 0; i < n; i++) { float a = A[i]; y[i] = (expr); }            \
        } else if (bs[0] == 4 && bs[1] == 0 && bs[2] == 4) {                               \
            float *y = (float *)p[0];                                                     \
            const float *B = (const float *)p[2];                                \
            const float a = *(const float *)p[1];                                          \
            for (int64_t i = 0; i < n; i++) { float b = B[i]; y[i] = (expr); }            \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                float a = *(const float *)(p[1] + i * bs[1]), b = *(const float *)(p[2] + i * bs[2]); \
                *(float *)(p[0] + i * bs[0]) = (expr);                                     \
            }                                                                              \
        }                                                                                  \
    } while (0)

WF_MULTIVERSION static void binary_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    bin_ctx *c = vc;
    if (c->dt == WF_F32 && c->dy == WF_F32) {
        switch (c->op) {
        case WF_B_ADD: F32_LOOP(a + b); return;
        case WF_B_SUB: F32_LOOP(a - b); return;
        case WF_B_MUL: F32_LOOP(a * b); return;
        case WF_B_DIV: F32_LOOP(a / b); return;
        case WF_B_MAX: F32_LOOP((a != a || a > b) ? a : b); return;
        case WF_B_MIN: F32_LOOP((a != a || a < b) ? a : b); return;
        default: F32_LOOP((float)binary_d(c->op, a, b)); return;
        }
    }
    if (c->dt == WF_F64 && c->dy == WF_F64) {
        for (int64_t i = 0; i < n; i++)
            *(double *)(p[0] + i * bs[0]) = binary_d(c->op, *(const double *)(p[1] + i * bs[1]),
                                                     *(const double *)(p[2] + i * bs[2]));
        return;
    }
    if ((c->dt == WF_BF16 || c->dt == WF_F16) && c->dy == c->dt) {   /* f32 math */
        bool bf = c->dt == WF_BF16;
        bin_ctx f = *c;
        f.dt = f.dy = WF_F32;
        if (run_half_staged(binary_run, &f, 3, p, bs, n, bf)) return;
        for (int64_t i = 0; i < n; i++) {
            uint16_t ha = *(const uint16_t *)(p[1] + i * bs[1]), hb = *(const uint16_t *)(p[2] + i * bs[2]);
            float a = bf ? wf__bf16_to_f32(ha) : wf__f16_to_f32(ha), b = bf ? wf__bf16_to_f32(hb) : wf__f16_to_f32(hb);
            float r = (float)binary_d(c->op, a, b);
            *(uint16_t *)(p[0] + i * bs[0]) = bf ? wf__f32_to_bf16(r) : wf__f32_to_f16(r);
        }
        return;
    }
    bool integer = !wf_dtype_is_floating(c->dt);
    for (int64_t i = 0; i < n; i++) {
        double a = wf__load(p[1] + i * bs[1], c->dt), b = wf__load(p[2] + i * bs[2], c->dt);
        double r;
        if (integer && c->op == WF_B_DIV) r = a / b;            /* true division (float result) */
        else if (c->dt == WF_F16 || c->dt == WF_BF16) r = (float)binary_d(c->op, (float)a, (float)b);
        else r = binary_d(c->op, a, b);
        wf__store(p[0] + i * bs[0], c->dy, r);
    }
}

int wf__cpu_binary(wf_binary_op op, wf_tensor *y, const wf_tensor *a, const wf_tensor *b) {
    bin_ctx c = { op, a->dtype, y->dtype, 0, false };
    wf_tensor *ops[3] = { y, (wf_tensor *)a, (wf_tensor *)b };
    run(3, ops, binary_run, &c);
    return 0;
}

WF_MULTIVERSION static void binary_scalar_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    bin_ctx *c = vc;
    if (c->dt == WF_F32 && c->dy == WF_F32 && !c->reversed && bs[0] == 4 && bs[1] == 4) {
        float *y = (float *)p[0];
        const float *x = (const float *)p[1];
        float s = (float)c->s;
        switch (c->op) {
        case WF_B_ADD: for (int64_t i = 0; i < n; i++) y[i] = x[i] + s; return;
        case WF_B_SUB: for (int64_t i = 0; i < n; i++) y[i] = x[i] - s; return;
        case WF_B_MUL: for (int64_t i = 0; i < n; i++) y[i] = x[i] * s; return;
        case WF_B_DIV: for (int64_t i = 0; i < n; i++) y[i] = x[i] / s; return;
        default: break;
        }
    }
    if ((c->dt == WF_BF16 || c->dt == WF_F16) && c->dy == c->dt) {
        bin_ctx f = *c;
        f.dt = f.dy = WF_F32;
        if (run_half_staged(binary_scalar_run, &f, 2, p, bs, n, c->dt == WF_BF16)) return;
    }
    bool single = c->dt == WF_F32 || c->dt == WF_F16 || c->dt == WF_BF16;
    for (int64_t i = 0; i < n; i++) {
        double a = wf__load(p[1] + i * bs[1], c->dt), b = c->s;
        if (c->reversed) { double t = a; a = b; b = t; }
        double r = single ? (float)binary_d(c->op, (float)a, (float)b) : binary_d(c->op, a, b);
        wf__store(p[0] + i * bs[0], c->dy, r);
    }
}

int wf__cpu_binary_scalar(wf_binary_op op, wf_tensor *y, const wf_tensor *a, double s, bool reversed) {
    bin_ctx c = { op, a->dtype, y->dtype, s, reversed };
    wf_tensor *ops[2] = { y, (wf_tensor *)a };
    run(2, ops, binary_scalar_run, &c);
    return 0;
}

/* ---------------------------------------------------------------- where, axpy */

typedef struct { wf_dtype dt, dc; } where_ctx;

static void where_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    where_ctx *c = vc;
    size_t es = wf_dtype_size(c->dt);
    for (int64_t i = 0; i < n; i++) {
        bool t = wf__load(p[1] + i * bs[1], c->dc) != 0;
        memcpy(p[0] + i * bs[0], t ? p[2] + i * bs[2] : p[3] + i * bs[3], es);
    }
}

int wf__cpu_where(wf_tensor *y, const wf_tensor *cond, const wf_tensor *a, const wf_tensor *b) {
    where_ctx c = { y->dtype, cond->dtype };
    wf_tensor *ops[4] = { y, (wf_tensor *)cond, (wf_tensor *)a, (wf_tensor *)b };
    wf__iter(4, ops, where_run, &c);
    return 0;
}

typedef struct { double alpha; wf_dtype dt; } axpy_ctx;

WF_MULTIVERSION static void axpy_run(char **p, const int64_t *bs, int64_t n, void *vc) {
    axpy_ctx *c = vc;
    if (c->dt == WF_F32 && bs[0] == 4 && bs[1] == 4) {
        float *a = (float *)p[0];
        const float *b = (const float *)p[1];
        float al = (float)c->alpha;
        for (int64_t i = 0; i < n; i++) a[i] += al * b[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double a = wf__load(p[0] + i * bs[0], c->dt), b = wf__load(p[1] + i * bs[1], c->dt);
        wf__store(p[0] + i * bs[0], c->dt, a + c->alpha * b);
    }
}

int wf__cpu_axpy(wf_tensor *a, const wf_tensor *b, double alpha) {
    axpy_ctx c = { alpha, a->dtype };
    wf_tensor *ops[2] = { a, (wf_tensor *)b };
    run(2, ops, axpy_run, &c);
    return 0;
}
