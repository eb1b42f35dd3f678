/* tensor/cpu/gemm.c: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] on the host.
 *
 * Backends:
 *  - WEFT_HAVE_OPENBLAS: cblas_sgemm / cblas_dgemm, row-major, one call per batch item,
 *    single-threaded: large products are cut into slices of C (how many: the sizes decide,
 *    threads.c), each slice one BLAS call run on weft's thread pool (thread_pool.c).
 *  - otherwise the builtin GEMM below: operands packed into MR-row / NR-column panels,
 *    blocked over (NC, KC, MC) for the caches, a register-blocked MR x NR micro-kernel,
 *    output tiles (or batch items when each item is small) run on the pool.
 * f16/bf16 operands are converted to f32, multiplied, and the result rounded back.
 * Integer and bool dtypes are refused (WF_EDTYPE).
 *
 * Conventions (see the gemm entry in tensor/tensor_impl.h): all matrices row-major with
 * leading dimension ldX (elements); transX means the stored matrix is op(X)^T; strideX is
 * the element distance between batch items, 0 = the same matrix for every item. As in BLAS,
 * beta == 0 means C is written without being read (NaN in C does not propagate). A stride
 * of 0 for C with batch > 1 accumulates every item's product into the one C (items run in
 * order; beta applies to the first). */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <limits.h>
#include <string.h>

#ifdef WEFT_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* The builtin path, reachable in every build (tests compare it with OpenBLAS). */
int wf__cpu_gemm_builtin(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                         double alpha, const void *A, int64_t lda, int64_t strideA,
                         const void *B, int64_t ldb, int64_t strideB,
                         double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch);

/* threads a product started here may use (1 inside a parallel loop: no nesting) */
static int max_threads(void) { return wf__pool_size(); }

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The micro-kernels use WF_MULTIVERSION (tensor_impl.h): AVX2+FMA and baseline clones. */

/* ---------------------------------------------------------------- builtin, per dtype
 * DEFINE_GEMM(T, S, MR, NR, MC, KC, NCB) defines gemm_S(...) for element type T (NCB: the
 * widest output tile, in columns, a multiple of NR). */

#define DEFINE_GEMM(T, S, MR, NR, MC, KC, NCB)                                                  \
    /* out[MR*NR] = sum_p a[p*MR + i] * b[p*NR + j] over the packed panels */                  \
    WF_MULTIVERSION                                                                             \
    static void micro_##S(int64_t kc, const T *restrict a, const T *restrict b, T *restrict out) { \
        WF_MICRO_BODY(T, MR, NR)                                                                \
    }                                                                                           \
    /* pack rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into MR-row panels (zero padded) */   \
    static void packA_##S(T *restrict dst, const T *A, int64_t lda, bool tA, int64_t i0,        \
                          int64_t mc, int64_t p0, int64_t kc) {                                 \
        for (int64_t ir = 0; ir < mc; ir += MR) {                                               \
            int64_t mr = min64(MR, mc - ir);                                                    \
            T *d = dst + ir * kc;                                                               \
            if (!tA) {                                                                          \
                for (int64_t i = 0; i < mr; i++) {                                              \
                    const T *src = A + (i0 + ir + i) * lda + p0;                                \
                    for (int64_t p = 0; p < kc; p++) d[p * MR + i] = src[p];                    \
                }                                                                               \
            } else {                                                                            \
                for (int64_t p = 0; p < kc; p++) {                                              \
                    const T *src = A + (p0 + p) * lda + i0 + ir;                                \
                    for (int64_t i = 0; i < mr; i++) d[p * MR + i] = src[i];                    \
                }                                                                               \
            }                                                                                   \
            for (int64_t i = mr; i < MR; i++)                                                   \
                for (int64_t p = 0; p < kc; p++) d[p * MR + i] = 0;                             \
        }                                                                                       \
    }                                                                                           \
    /* pack one NR-column panel: rows [p0, p0+kc) x cols [j0, j0+nr) of op(B) */                \
    static void packB_##S(T *restrict d, const T *B, int64_t ldb, bool tB, int64_t p0,          \
                          int64_t kc, int64_t j0, int64_t nr) {                                 \
        if (!tB) {                                                                              \
            for (int64_t p = 0; p < kc; p++) {                                                  \
                const T *src = B + (p0 + p) * ldb + j0;                                         \
                int64_t j = 0;                                                                  \
                for (; j < nr; j++) d[p * NR + j] = src[j];                                     \
                for (; j < NR; j++) d[p * NR + j] = 0;                                          \
            }                                                                                   \
        } else {                                                                                \
            for (int64_t j = 0; j < nr; j++) {                                                  \
                const T *src = B + (j0 + j) * ldb + p0;                                         \
                for (int64_t p = 0; p < kc; p++) d[p * NR + j] = src[p];                        \
            }                                                                                   \
            for (int64_t j = nr; j < NR; j++)                                                   \
                for (int64_t p = 0; p < kc; p++) d[p * NR + j] = 0;                             \
        }                                                                                       \
    }                                                                                           \
    /* C = beta*C (beta 0: zeros) */                                                            \
    static void scale_##S(T *C, int64_t ldc, int64_t m, int64_t n, T beta) {                    \
        for (int64_t i = 0; i < m; i++) {                                                       \
            T *c = C + i * ldc;                                                                 \
            if (beta == 0) { for (int64_t j = 0; j < n; j++) c[j] = 0; }                        \
            else if (beta != 1) { for (int64_t j = 0; j < n; j++) c[j] *= beta; }               \
        }                                                                                       \
    }                                                                                           \
    /* small problems: plain loops, no packing */                                               \
    static void small_##S(bool tA, bool tB, int64_t m, int64_t n, int64_t k, T alpha,           \
                          const T *A, int64_t lda, const T *B, int64_t ldb, T beta, T *C,       \
                          int64_t ldc) {                                                        \
        scale_##S(C, ldc, m, n, beta);                                                          \
        for (int64_t i = 0; i < m; i++) {                                                       \
            T *c = C + i * ldc;                                                                 \
            for (int64_t p = 0; p < k; p++) {                                                   \
                T a = alpha * (tA ? A[p * lda + i] : A[i * lda + p]);                           \
                if (!tB) {                                                                      \
                    const T *b = B + p * ldb;                                                   \
                    for (int64_t j = 0; j < n; j++) c[j] += a * b[j];                           \
                } else {                                                                        \
                    for (int64_t j = 0; j < n; j++) c[j] += a * B[j * ldb + p];                 \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    typedef struct {                                                                            \
        bool tA, tB;                                                                            \
        int64_t m, n, k;                                                                        \
        T alpha;                                                                                \
        const T *A;                                                                             \
        int64_t lda;                                                                            \
        const T *B;                                                                             \
        int64_t ldb;                                                                            \
        T beta;                                                                                 \
        T *C;                                                                                   \
        int64_t ldc;                                                                            \
        char *buf;                                                                              \
        size_t slot_bytes, asz;                                                                 \
        int64_t mtiles, tw, npan;                                                               \
        bool par;   /* on the pool: slot wf__pool_worker() of buf, else buf is ours */          \
    } tiles_ctx_##S;                                                                            \
    /* tiles [t0, t1) of one product, packing into this thread's slot of buf */                \
    static void tiles_##S(void *vc, int64_t t0, int64_t t1) {                                   \
        const tiles_ctx_##S *x = vc;                                                            \
        bool tA = x->tA, tB = x->tB;                                                            \
        int64_t m = x->m, n = x->n, k = x->k, lda = x->lda, ldb = x->ldb, ldc = x->ldc;         \
        T alpha = x->alpha, beta = x->beta;                                                     \
        const T *A = x->A, *B = x->B;                                                           \
        T *C = x->C;                                                                            \
        int64_t mtiles = x->mtiles, tw = x->tw, npan = x->npan;                                 \
        (void)m;                                                                                \
        for (int64_t t = t0; t < t1; t++) {                                         \
            char *mine = x->buf + x->slot_bytes * (size_t)(x->par ? wf__pool_worker() : 0);        \
            T *ap = (T *)mine, *bp = (T *)(mine + x->asz);                                      \
            int64_t ic = (t % mtiles) * MC, mc = min64(MC, m - ic);                             \
            int64_t jp0 = (t / mtiles) * tw, jp1 = min64(npan, jp0 + tw);                       \
            T out[MR * NR];                                                                     \
            for (int64_t pc = 0; pc < k; pc += KC) {                                            \
                int64_t kc = min64(KC, k - pc);                                                 \
                bool first = pc == 0;                                                           \
                packA_##S(ap, A, lda, tA, ic, mc, pc, kc);                                      \
                for (int64_t jp = jp0; jp < jp1; jp++)                                          \
                    packB_##S(bp + (jp - jp0) * NR * kc, B, ldb, tB, pc, kc, jp * NR,           \
                              min64(NR, n - jp * NR));                                          \
                for (int64_t jp = jp0; jp < jp1; jp++) {                                        \
                    int64_t j0 = jp * NR, nr = min64(NR, n - j0);                               \
                    for (int64_t ir = 0; ir < mc; ir += MR) {                                   \
                        int64_t mr = min64(MR, mc - ir);                                        \
                        micro_##S(kc, ap + ir * kc, bp + (jp - jp0) * NR * kc, out);            \
                        for (int64_t i = 0; i < mr; i++) {                                      \
                            T *c = C + (ic + ir + i) * ldc + j0;                                \
                            const T *o = out + i * NR;                                          \
                            if (!first) { for (int64_t j = 0; j < nr; j++) c[j] += alpha * o[j]; } \
                            else if (beta == 0) { for (int64_t j = 0; j < nr; j++) c[j] = alpha * o[j]; } \
                            else { for (int64_t j = 0; j < nr; j++) c[j] = alpha * o[j] + beta * c[j]; } \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    /* One matrix product. The output is cut into tiles (MC rows x tw*NR columns); each tile   \
     * is one task with no synchronisation: its thread packs its own A block and B panels      \
     * per KC slice into its slot of buf ([A: asz bytes | B], slot_bytes apart) and runs the    \
     * micro-kernel. nth: threads to use here (1 when items already run in parallel). */       \
    static void one_##S(bool tA, bool tB, int64_t m, int64_t n, int64_t k, T alpha,             \
                        const T *A, int64_t lda, const T *B, int64_t ldb, T beta, T *C,         \
                        int64_t ldc, char *buf, size_t slot_bytes, size_t asz, int nth) {       \
        if (k == 0 || alpha == 0) { scale_##S(C, ldc, m, n, beta); return; }                    \
        if (!buf || m * n * k <= 32 * 32 * 32) {                                                \
            small_##S(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);                    \
            return;                                                                             \
        }                                                                                       \
        int64_t mtiles = ceil_div(m, MC), npan = ceil_div(n, NR);                               \
        /* tile width in panels: enough tiles for every thread, at most NCB columns */         \
        int64_t want = max64(1, ceil_div(4 * (int64_t)nth, mtiles));                            \
        int64_t tw = min64(NCB / NR, max64(min64(4, npan), ceil_div(npan, want)));              \
        int64_t ntiles = ceil_div(npan, tw);                                                    \
        tiles_ctx_##S tc = { tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, buf,         \
                             slot_bytes, asz, mtiles, tw, npan, nth > 1 };                     \
        int64_t nt_ = mtiles * ntiles;                                                          \
        /* at most nth chunks of tiles, so slots 0..nth-1 of buf suffice */                     \
        if (nth > 1) wf__parallel_for(nt_, ceil_div(nt_, nth), tiles_##S, &tc);                 \
        else tiles_##S(&tc, 0, nt_);                                                            \
    }                                                                                           \
    typedef struct {                                                                            \
        bool tA, tB;                                                                            \
        int64_t m, n, k;                                                                        \
        T alpha;                                                                                \
        const T *A;                                                                             \
        int64_t lda, sA;                                                                        \
        const T *B;                                                                             \
        int64_t ldb, sB;                                                                        \
        T beta;                                                                                 \
        T *C;                                                                                   \
        int64_t ldc, sC;                                                                        \
        char *buf;                                                                              \
        size_t slot, asz;                                                                       \
    } items_ctx_##S;                                                                            \
    /* batch items [b0, b1), each one product on this thread's slot of buf */                  \
    static void items_##S(void *vc, int64_t b0, int64_t b1) {                                   \
        const items_ctx_##S *x = vc;                                                            \
        char *mine = x->buf ? x->buf + x->slot * (size_t)wf__pool_worker() : NULL;              \
        for (int64_t b = b0; b < b1; b++)                                                       \
            one_##S(x->tA, x->tB, x->m, x->n, x->k, x->alpha, x->A + b * x->sA, x->lda,         \
                    x->B + b * x->sB, x->ldb, x->beta, x->C + b * x->sC, x->ldc, mine, x->slot, \
                    x->asz, 1);                                                                 \
    }                                                                                           \
    static int gemm_##S(bool tA, bool tB, int64_t m, int64_t n, int64_t k, T alpha,             \
                        const T *A, int64_t lda, int64_t sA, const T *B, int64_t ldb,           \
                        int64_t sB, T beta, T *C, int64_t ldc, int64_t sC, int64_t batch) {     \
        /* threads only where each gets ~2M multiply-adds: a parallel region costs more than \
         * a small product (and much more on a loaded machine) */                             \
        int64_t work = m * n * k * batch;                                                       \
        int nth = (int)min64(max_threads(), 1 + work / (128 * 128 * 128));                      \
        int64_t kcap = min64(KC, k), mcap = min64(MC, round_up(m, MR));                         \
        int64_t ncap = min64(NCB, round_up(n, NR));                                             \
        size_t asz = (size_t)round_up(mcap * kcap * (int64_t)sizeof(T), 64);                    \
        size_t slot = asz + (size_t)round_up(kcap * ncap * (int64_t)sizeof(T), 64);             \
        bool item_par = batch > 1 && sC != 0 && nth > 1 &&                                      \
                        (m * n * k <= 256 * 256 * 64 || batch >= 4 * nth);                      \
        bool tiny = m * n * k <= 32 * 32 * 32 || k == 0;                                        \
        /* one packing slot per thread, from the caching allocator; on allocation failure     \
         * the unpacked loops still compute the right result */                               \
        char *buf = tiny ? NULL : wf__host_alloc(slot * (size_t)nth);                           \
        if (item_par) {                                                                         \
            items_ctx_##S ic = { tA, tB, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC,  \
                                 buf, slot, asz };                                              \
            /* at most nth chunks of items, so slots 0..nth-1 of buf suffice */                 \
            wf__parallel_for(batch, ceil_div(batch, nth), items_##S, &ic);                      \
        } else {                                                                                \
            for (int64_t b = 0; b < batch; b++) {                                               \
                T bt = (sC == 0 && b > 0) ? (T)1 : beta;                                        \
                one_##S(tA, tB, m, n, k, alpha, A + b * sA, lda, B + b * sB, ldb, bt,           \
                        C + b * sC, ldc, buf, slot, asz, nth);                                  \
            }                                                                                   \
        }                                                                                       \
        if (buf) wf__host_free(buf, slot * (size_t)nth);                                        \
        return 0;                                                                               \
    }

/* Micro-kernel bodies. With GCC/Clang vector extensions: NR = 2 vectors of 32 bytes and MR
 * rows, so the MR x NR accumulator tile lives in registers (12 AVX registers for 6 x 16 f32).
 * The packed B panel is 64-byte aligned (see the buffer layout in gemm_S). */
#if defined(__GNUC__)
typedef float wf_v8f __attribute__((vector_size(32)));
typedef double wf_v4d __attribute__((vector_size(32)));
#define WF_VEC_float wf_v8f
#define WF_VEC_double wf_v4d
#define WF_VEC(T) WF_VEC_##T
#define WF_MICRO_BODY(T, MR, NR)                                                                \
    typedef WF_VEC(T) V;                                                                        \
    enum { VL = (int)(sizeof(V) / sizeof(T)) };                                                 \
    _Static_assert(NR == 2 * VL, "NR must be two vectors");                                     \
    V c0[MR], c1[MR];                                                                           \
    for (int i = 0; i < MR; i++) { c0[i] = (V){0}; c1[i] = (V){0}; }                            \
    for (int64_t p = 0; p < kc; p++) {                                                          \
        V b0, b1;                                                                               \
        memcpy(&b0, b + p * NR, sizeof b0);                                                     \
        memcpy(&b1, b + p * NR + VL, sizeof b1);                                                \
        const T *ap = a + p * MR;                                                               \
        for (int i = 0; i < MR; i++) {                                                          \
            V ai = (V){0} + ap[i];                                                              \
            c0[i] += ai * b0;                                                                   \
            c1[i] += ai * b1;                                                                   \
        }                                                                                       \
    }                                                                                           \
    for (int i = 0; i < MR; i++) {                                                              \
        memcpy(out + i * NR, &c0[i], sizeof c0[i]);                                             \
        memcpy(out + i * NR + VL, &c1[i], sizeof c1[i]);                                        \
    }
#else
#define WF_MICRO_BODY(T, MR, NR)                                                                \
    T acc[MR][NR];                                                                              \
    for (int i = 0; i < MR; i++)                                                                \
        for (int j = 0; j < NR; j++) acc[i][j] = 0;                                             \
    for (int64_t p = 0; p < kc; p++) {                                                          \
        const T *ap = a + p * MR, *bp = b + p * NR;                                             \
        for (int i = 0; i < MR; i++) {                                                          \
            T ai = ap[i];                                                                       \
            for (int j = 0; j < NR; j++) acc[i][j] += ai * bp[j];                               \
        }                                                                                       \
    }                                                                                           \
    for (int i = 0; i < MR; i++)                                                                \
        for (int j = 0; j < NR; j++) out[i * NR + j] = acc[i][j];
#endif


/* f32: 6x16 tile (12 AVX accumulators), A block 120x256 (~120 KB), tiles up to 512 columns
 * (B block 256x512, 512 KB) */
DEFINE_GEMM(float, f32, 6, 16, 120, 256, 512)
/* f64: 6x8 tile, A block 96x256, tiles up to 256 columns */
DEFINE_GEMM(double, f64, 6, 8, 96, 256, 256)

/* ---------------------------------------------------------------- half precision via f32 */

/* Conversions run on all threads (the GEMM itself does): left serial, they dominate a
 * bf16 step once the multiply is parallel. */
/* Operand conversions go parallel from 4096 elements: measured on a 16-core Xeon with 8
 * threads, the bf16-mixed MLP step took 0.59 ms with a 32768 threshold, 0.56 ms with 4096,
 * and 0.72 ms with serial conversions (bench/NOTES.md). */
#define CONV_PAR_MIN 4096
typedef struct {
    void *dst;
    const void *src;
    int64_t cols, ld;
    bool bf16;
} conv_ctx;

static void half_rows(void *vc, int64_t lo, int64_t hi) {
    const conv_ctx *c = vc;
    for (int64_t i = lo; i < hi; i++)
        wf__half_to_f32_n((float *)c->dst + i * c->cols, (const uint16_t *)c->src + i * c->ld, c->cols, c->bf16);
}
static void f32_rows(void *vc, int64_t lo, int64_t hi) {
    const conv_ctx *c = vc;
    for (int64_t i = lo; i < hi; i++)
        wf__f32_to_half_n((uint16_t *)c->dst + i * c->ld, (const float *)c->src + i * c->cols, c->cols, c->bf16);
}
/* rows per chunk: ~CONV_PAR_MIN elements; all rows in one chunk below that */
static int64_t conv_grain(int64_t rows, int64_t cols) {
    if (rows * cols <= CONV_PAR_MIN || rows < 1) return rows > 0 ? rows : 1;
    return cols >= CONV_PAR_MIN ? 1 : CONV_PAR_MIN / cols;
}
static void half_to_f32(float *dst, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld,
                        bool bf16) {
    conv_ctx c = { dst, src, cols, ld, bf16 };
    wf__parallel_for(rows, conv_grain(rows, cols), half_rows, &c);
}
static void f32_to_half(uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t ld,
                        bool bf16) {
    conv_ctx c = { dst, src, cols, ld, bf16 };
    wf__parallel_for(rows, conv_grain(rows, cols), f32_rows, &c);
}

typedef int (*f32_gemm_fn)(bool, bool, int64_t, int64_t, int64_t, double, const void *, int64_t,
                           int64_t, const void *, int64_t, int64_t, double, void *, int64_t,
                           int64_t, int64_t);

/* f32 scratch for one half-precision product: A as stored [ar, ac], B [br, bc], C [m, n] and
 * nv extra floats (the epilogues' bias or bias gradient), one cached allocation */
typedef struct {
    char *buf;
    size_t bytes;
    float *a, *b, *c, *v;
    int64_t ar, ac, br, bc;
} half_scratch;

static int half_scratch_get(half_scratch *h, wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k,
                            size_t nv) {
    h->ar = tA ? k : m, h->ac = tA ? m : k, h->br = tB ? n : k, h->bc = tB ? k : n;
    size_t na = (size_t)round_up(h->ar * h->ac, 16), nb = (size_t)round_up(h->br * h->bc, 16);
    size_t nc = (size_t)round_up(m * n, 16);
    h->bytes = (na + nb + nc + nv) * sizeof(float) + 64;
    h->buf = wf__host_alloc(h->bytes);
    if (!h->buf)
        return wf__error(WF_ENOMEM, "gemm (cpu): out of memory converting %s operands to float32", wf_dtype_name(dt));
    h->a = (float *)h->buf, h->b = h->a + na, h->c = h->b + nb, h->v = h->c + nc;
    return 0;
}

static void half_scratch_put(half_scratch *h) { wf__host_free(h->buf, h->bytes); }

static int gemm_half(f32_gemm_fn f32, wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n,
                     int64_t k, double alpha, const void *A, int64_t lda, int64_t sA, const void *B,
                     int64_t ldb, int64_t sB, double beta, void *C, int64_t ldc, int64_t sC,
                     int64_t batch) {
    bool bf = dt == WF_BF16;
    half_scratch h;
    int rc = half_scratch_get(&h, dt, tA, tB, m, n, k, 0);
    if (rc) return rc;
    const uint16_t *a16 = A, *b16 = B;
    uint16_t *c16 = C;
    for (int64_t b = 0; b < batch && !rc; b++) {
        if (b == 0 || sA) half_to_f32(h.a, a16 + b * sA, h.ar, h.ac, lda, bf);
        if (b == 0 || sB) half_to_f32(h.b, b16 + b * sB, h.br, h.bc, ldb, bf);
        double bt = (sC == 0 && b > 0) ? 1.0 : beta;
        uint16_t *cb = c16 + b * sC;
        if (bt != 0) half_to_f32(h.c, cb, m, n, ldc, bf);
        rc = f32(tA, tB, m, n, k, alpha, h.a, h.ac ? h.ac : 1, 0, h.b, h.bc ? h.bc : 1, 0, bt, h.c, n ? n : 1, 0, 1);
        f32_to_half(cb, h.c, m, n, ldc, bf);
    }
    half_scratch_put(&h);
    return rc;
}

/* ---------------------------------------------------------------- entry points */

static int builtin_f32(bool tA, bool tB, int64_t m, int64_t n, int64_t k, double alpha,
                       const void *A, int64_t lda, int64_t sA, const void *B, int64_t ldb,
                       int64_t sB, double beta, void *C, int64_t ldc, int64_t sC, int64_t batch) {
    return gemm_f32(tA, tB, m, n, k, (float)alpha, A, lda, sA, B, ldb, sB, (float)beta, C, ldc, sC,
                    batch);
}

static int bad_dtype(wf_dtype dt) {
    return wf__error(WF_EDTYPE, "gemm (cpu): dtype %s is not supported (floating dtypes only)",
                     wf_dtype_name(dt));
}

int wf__cpu_gemm_builtin(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                         double alpha, const void *A, int64_t lda, int64_t strideA,
                         const void *B, int64_t ldb, int64_t strideB,
                         double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
    switch (dt) {
    case WF_F32:
        return gemm_f32(transA, transB, m, n, k, (float)alpha, A, lda, strideA, B, ldb, strideB,
                        (float)beta, C, ldc, strideC, batch);
    case WF_F64:
        return gemm_f64(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                        ldc, strideC, batch);
    case WF_F16:
    case WF_BF16:
        return gemm_half(builtin_f32, dt, transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb,
                         strideB, beta, C, ldc, strideC, batch);
    default:
        return bad_dtype(dt);
    }
}

#ifdef WEFT_HAVE_OPENBLAS
static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* One product per batch item, each a single-threaded BLAS call on weft's pool: items across
 * the pool when there are enough of them and each has its own C, else every item's C split
 * into row slices (or column slices when C is wide and short); how many: wf__gemm_slices.
 * Slices of C never overlap, so no two threads write the same element; with a shared C
 * (sC == 0) each thread runs the items in order on its slice, as the serial loop does. */
#define BLAS_GEMM(NAME, T, GEMM)                                                                   \
    static void NAME##_one(bool tA, bool tB, int64_t m, int64_t n, int64_t k, T alpha, const T *a,    \
                           int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc) {         \
        GEMM(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)m,  \
             (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);                     \
    }                                                                                                 \
    typedef struct {                                                                                  \
        bool tA, tB, rows;                                                                            \
        int64_t m, n, k, lda, sA, ldb, sB, ldc, sC, batch, len, chunk;                                \
        T alpha, beta;                                                                                \
        const T *a, *b;                                                                               \
        T *c;                                                                                         \
    } NAME##_ctx;                                                                                     \
    static void NAME##_items(void *v, int64_t i0, int64_t i1) {                                       \
        const NAME##_ctx *x = v;                                                                      \
        for (int64_t i = i0; i < i1; i++)                                                             \
            NAME##_one(x->tA, x->tB, x->m, x->n, x->k, x->alpha, x->a + i * x->sA, x->lda,            \
                       x->b + i * x->sB, x->ldb, x->beta, x->c + i * x->sC, x->ldc);                  \
    }                                                                                                 \
    static void NAME##_slices(void *v, int64_t p0, int64_t p1) {                                      \
        const NAME##_ctx *x = v;                                                                      \
        bool tA = x->tA, tB = x->tB;                                                                  \
        int64_t m = x->m, n = x->n, k = x->k, lda = x->lda, ldb = x->ldb, ldc = x->ldc;               \
        for (int64_t p = p0; p < p1; p++) {                                                           \
            int64_t s = p * x->chunk, e = min64(x->len, s + x->chunk);                                \
            for (int64_t i = 0; i < x->batch; i++) {                                                  \
                T bt = (x->sC == 0 && i > 0) ? (T)1 : x->beta;                                        \
                const T *ai = x->a + i * x->sA, *bi = x->b + i * x->sB;                               \
                T *ci = x->c + i * x->sC;                                                             \
                if (x->rows)                                                                          \
                    NAME##_one(tA, tB, e - s, n, k, x->alpha, tA ? ai + s : ai + s * lda, lda, bi,    \
                               ldb, bt, ci + s * ldc, ldc);                                           \
                else                                                                                  \
                    NAME##_one(tA, tB, m, e - s, k, x->alpha, ai, lda, tB ? bi + s * ldb : bi + s,    \
                               ldb, bt, ci + s, ldc);                                                 \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    static int NAME(bool tA, bool tB, int64_t m, int64_t n, int64_t k, double alpha, const void *A,  \
                    int64_t lda, int64_t sA, const void *B, int64_t ldb, int64_t sB, double beta,     \
                    void *C, int64_t ldc, int64_t sC, int64_t batch) {                                \
        bool rows = m >= n;   /* split the longer side of C */                                        \
        int64_t len = rows ? m : n;                                                                   \
        int ns = wf__gemm_slices((double)m * (double)n * (double)k * (double)batch,                   \
                                 sC != 0 && batch > 1 ? batch * 64 : len);                            \
        NAME##_ctx x = { tA, tB, rows, m, n, k, lda, sA, ldb, sB, ldc, sC, batch, len, 0,             \
                         (T)alpha, (T)beta, A, B, C };                                                \
        if (ns > 1 && sC != 0 && batch >= ns) {                                                       \
            wf__parallel_for(batch, ceil_div(batch, ns), NAME##_items, &x);                           \
            return 0;                                                                                 \
        }                                                                                             \
        x.chunk = round_up(ceil_div(len, ns), rows ? 1 : 16);   /* whole cache lines of C */          \
        wf__parallel_for(ceil_div(len, x.chunk), 1, NAME##_slices, &x);                               \
        return 0;                                                                                     \
    }

BLAS_GEMM(blas_f32, float, cblas_sgemm)
BLAS_GEMM(blas_f64, double, cblas_dgemm)
#endif

int wf__cpu_gemm(wf_dtype dt, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *A, int64_t lda, int64_t strideA,
                 const void *B, int64_t ldb, int64_t strideB,
                 double beta, void *C, int64_t ldc, int64_t strideC, int64_t batch, wf_device dev) {
    (void)dev;
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
#ifdef WEFT_HAVE_OPENBLAS
    /* BLAS wants int sizes, ld >= max(1, columns) and k >= 1 (k == 0 is C = beta*C, done by
     * the builtin path); anything else goes to the builtin path. */
    int64_t acols = transA ? m : k, bcols = transB ? k : n;
    bool ok = k > 0 && fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) &&
              fits_int(ldb) && fits_int(ldc) && lda >= max64(1, acols) && ldb >= max64(1, bcols) &&
              ldc >= max64(1, n);
    if (ok) {
        switch (dt) {
        case WF_F32:
            return blas_f32(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta,
                            C, ldc, strideC, batch);
        case WF_F64:
            return blas_f64(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta,
                            C, ldc, strideC, batch);
        case WF_F16:
        case WF_BF16:
            return gemm_half(blas_f32, dt, transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb,
                             strideB, beta, C, ldc, strideC, batch);
        default:
            return bad_dtype(dt);
        }
    }
#endif
    return wf__cpu_gemm_builtin(dt, transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb,
                                strideB, beta, C, ldc, strideC, batch);
}

typedef struct {
    float *c;
    const float *v;
    int64_t n;
} bias_ctx;

static void bias_rows(void *vc, int64_t lo, int64_t hi) {
    const bias_ctx *b = vc;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t j = 0; j < b->n; j++) b->c[i * b->n + j] += b->v[j];
}

/* ---------------------------------------------------------------- Linear epilogues (bf16/f16)
 * The half product already runs in f32 on converted copies, so the epilogues come cheap:
 * the bias is added to the f32 result before its one rounding (no broadcast copy of the
 * bias into C, no conversion of C back to f32), and the bias gradient is summed from the f32
 * copy of op(A) the product made anyway (no separate reduction over the half gradient).
 * f32/f64 decline (1): for them the composed path costs the same. */
int wf__cpu_gemm_epilogue(wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k, const void *A,
                          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                          void *bgrad, wf_device dev) {
    if ((dt != WF_BF16 && dt != WF_F16) || m <= 0 || n <= 0 || k <= 0 || (!bias) == (!bgrad)) return 1;
    bool bf = dt == WF_BF16;
    half_scratch h;
    int rc = half_scratch_get(&h, dt, tA, tB, m, n, k, (size_t)(bias ? n : m));
    if (rc) return rc;
    float *fa = h.a, *fc = h.c, *fv = h.v;
    int64_t ac = h.ac;
    half_to_f32(h.a, A, h.ar, h.ac, lda, bf);
    half_to_f32(h.b, B, h.br, h.bc, ldb, bf);
    rc = wf__cpu_gemm(WF_F32, tA, tB, m, n, k, 1.0, h.a, h.ac, 0, h.b, h.bc, 0, 0.0, h.c, n, 0, 1, dev);
    if (!rc && bias) {
        wf__half_to_f32_n(fv, bias, n, bf);
        bias_ctx bc = { fc, fv, n };
        wf__parallel_for(m, conv_grain(m, n), bias_rows, &bc);
    }
    if (!rc && bgrad) {
        /* row i of op(A) summed over k: a column of fa when A is stored transposed */
        for (int64_t i = 0; i < m; i++) fv[i] = 0;
        if (tA)
            for (int64_t p = 0; p < k; p++)
                for (int64_t i = 0; i < m; i++) fv[i] += fa[p * ac + i];
        else
            for (int64_t i = 0; i < m; i++)
                for (int64_t p = 0; p < k; p++) fv[i] += fa[i * ac + p];
        wf__f32_to_half_n(bgrad, fv, m, bf);
    }
    if (!rc) f32_to_half(C, fc, m, n, ldc, bf);
    half_scratch_put(&h);
    return rc;
}

/* ---------------------------------------------------------------- written or accumulated in f32
 * C (f32; f64 for f64) = op(A) @ op(B) + beta * C (the gemm_acc contract in
 * tensor/tensor_impl.h). f32 and f64 are the plain product. Half operands are widened to f32
 * once and multiplied straight into C: unlike gemm_half there is no f32 copy of C (C is
 * already f32) and no rounding of the product to bf16/f16 before it is written or added. */
int wf__cpu_gemm_acc(wf_dtype dt, bool tA, bool tB, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                     const void *B, int64_t ldb, double beta, void *C, int64_t ldc, wf_device dev) {
    if (dt != WF_F32 && dt != WF_F64 && dt != WF_F16 && dt != WF_BF16)
        return wf__error(WF_EDTYPE, "gemm_acc (cpu): dtype %s is not supported (floating dtypes only)",
                         wf_dtype_name(dt));
    if (beta != 0 && beta != 1)
        return wf__error(WF_EINVAL, "gemm_acc (cpu): beta must be 0 (overwrite) or 1 (accumulate), got %g", beta);
    if (m <= 0 || n <= 0) return 0;
    wf_dtype cdt = dt == WF_F64 ? WF_F64 : WF_F32;
    if (k <= 0 || dt == WF_F32 || dt == WF_F64)   /* k == 0 too: gemm's C = beta * C */
        return wf__cpu_gemm(cdt, tA, tB, m, n, k, 1.0, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, dev);
    bool bf = dt == WF_BF16;
    int64_t ar = tA ? k : m, ac = tA ? m : k, br = tB ? n : k, bc = tB ? k : n;
    size_t na = (size_t)round_up(ar * ac, 16), bytes = (na + (size_t)(br * bc)) * sizeof(float);
    float *fa = wf__host_alloc(bytes);
    if (!fa)
        return wf__error(WF_ENOMEM, "gemm_acc (cpu): out of memory converting %s operands (%lld x %lld, %lld x %lld) to float32",
                         wf_dtype_name(dt), (long long)ar, (long long)ac, (long long)br, (long long)bc);
    float *fb = fa + na;
    half_to_f32(fa, A, ar, ac, lda, bf);
    half_to_f32(fb, B, br, bc, ldb, bf);
    int rc = wf__cpu_gemm(WF_F32, tA, tB, m, n, k, 1.0, fa, ac, 0, fb, bc, 0, beta, C, ldc, 0, 1, dev);
    wf__host_free(fa, bytes);
    return rc;
}
