/* tests/ops/op_table.c: the op harness's rows and their sample generators.
 *
 * A row is one OPS() line: id, name, the call on the inputs x, y, z, w (in[0..3]), the sample
 * generator, the dtypes, how many leading inputs are differentiated, and a tolerance factor.
 * Adding an op is adding its line (docs/architecture.md, "How to add an op"). Exact PyTorch
 * semantics that a comparison against the f64 CPU reference cannot see (NaN propagation,
 * promotion, gradients at the edges) are the checks of op_expect.c. */
#include "op_table.h"
#include "weft_config.h"

#include <math.h>
#include <stddef.h>

/* ---------------------------------------------------------------- values */

static uint64_t seed_n = 1000;

/* N(0,1) values in f64, a fresh seed per tensor so samples do not depend on row order */
static wf_tensor *R(const int64_t *shape, int nd) {
    wf_manual_seed(seed_n++);
    return wf_randn(shape, nd, WF_F64);
}
static wf_tensor *pos(wf_tensor *t) { return wf_add_scalar(wf_abs(t), 0.5); }   /* >= 0.5 */
static wf_tensor *T2(wf_tensor *t) { return wf_transpose(t, 0, -1); }          /* non-contiguous */
static wf_tensor *vals(const double *v, const int64_t *shape, int nd) { return wf_from_data(v, shape, nd, WF_F64); }

static const double special_v[12] = { NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0, NAN, 3.0 };
static const double ties_v[12] = { 1, 1, 2, 2, -1, -1, 0.5, 0.5, 2, 2, 1, 1 };
static wf_tensor *special(const int64_t *shape, int nd) { return vals(special_v, shape, nd); }
static wf_tensor *ties(const int64_t *shape, int nd) { return vals(ties_v, shape, nd); }
static wf_tensor *idx(int64_t hi, const int64_t *shape, int nd) {   /* i64 indices in [0, hi) */
    wf_manual_seed(seed_n++);
    return wf_randint(0, hi, shape, nd, WF_I64);
}

#define S(d, fl, ...) do {                                                        \
        if (k < max) {                                                            \
            wf_tensor *in_[] = { __VA_ARGS__ };                                   \
            s[k] = (op_sample){ .desc = d, .flags = fl, .n = (int)(sizeof in_ / sizeof in_[0]) }; \
            for (int i_ = 0; i_ < s[k].n; i_++) s[k].in[i_] = in_[i_];            \
            k++;                                                                  \
        }                                                                         \
    } while (0)
#define KEEP(bits) (s[k - 1].keep = (bits))

/* Large inputs cross the CPU's parallel thresholds (32K elements for f32 elementwise, 64K for
 * reductions) and no more: the whole driver runs under ASan in CI. */
#define BIG 70, 1000

/* ---------------------------------------------------------------- generators */

static int unary_any(op_sample *s, int max, bool positive) {
    int k = 0;
    wf_tensor *(*f)(wf_tensor *) = positive ? pos : wf_clone;
    S("3x4", S_GC, f(R(WF_SHAPE(3, 4))));
    S("transposed", S_GC, T2(f(R(WF_SHAPE(4, 3)))));
    S("sliced", S_GC, wf_slice(f(R(WF_SHAPE(5, 8))), 1, 0, 8, 2));
    S("empty", 0, R(WF_SHAPE(0, 3)));
    S("0-dim", S_GC, f(wf_scalar(0.3, WF_F64)));
    S("large", S_BW, f(R(WF_SHAPE(BIG))));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(3, 4)));
    S("ties", 0, ties(WF_SHAPE(3, 4)));
    /* CUDA's contiguous kernels: 8 elements a thread with a tail, and the element path where
     * the start is not 16-byte aligned */
    S("4099 (vector, tail)", S_BW, f(R(WF_SHAPE(4099))));
    S("misaligned", S_BW, wf_narrow(f(R(WF_SHAPE(4100))), 0, 1, 4099));
    return k;
}
static int gen_unary(op_sample *s, int max) { return unary_any(s, max, false); }
static int gen_unary_pos(op_sample *s, int max) { return unary_any(s, max, true); }

static int binary_any(op_sample *s, int max, bool pa, bool pb) {
    int k = 0;
    wf_tensor *(*fa)(wf_tensor *) = pa ? pos : wf_clone, *(*fb)(wf_tensor *) = pb ? pos : wf_clone;
    S("3x4", S_GC, fa(R(WF_SHAPE(3, 4))), fb(R(WF_SHAPE(3, 4))));
    S("broadcast", S_GC, fa(R(WF_SHAPE(3, 1))), fb(R(WF_SHAPE(1, 4))));
    S("0-dim", S_GC, fa(R(WF_SHAPE(3, 4))), fb(wf_scalar(0.8, WF_F64)));
    S("strided", S_GC, T2(fa(R(WF_SHAPE(4, 3)))), wf_slice(fb(R(WF_SHAPE(3, 8))), 1, 1, 8, 2));
    S("empty", 0, fa(R(WF_SHAPE(0, 4))), fb(R(WF_SHAPE(4))));
    S("large", S_BW, fa(R(WF_SHAPE(BIG))), fb(R(WF_SHAPE(1000))));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(3, 4)), T2(special(WF_SHAPE(4, 3))));
    S("ties", 0, ties(WF_SHAPE(3, 4)), ties(WF_SHAPE(3, 4)));
    /* one operand broadcast along rows (also in place into the larger one); CUDA's vector
     * path (same shapes, contiguous, aligned) with a tail, and misaligned starts */
    S("broadcast row", S_GC, fa(R(WF_SHAPE(3, 5))), fb(R(WF_SHAPE(1, 5))));
    S("4096 (vector)", S_BW, fa(R(WF_SHAPE(4096))), fb(R(WF_SHAPE(4096))));
    S("4099 (vector, tail)", S_BW, fa(R(WF_SHAPE(4099))), fb(R(WF_SHAPE(4099))));
    S("misaligned", S_BW, wf_narrow(fa(R(WF_SHAPE(4100))), 0, 1, 4099), wf_narrow(fb(R(WF_SHAPE(4100))), 0, 1, 4099));
    return k;
}
static int gen_binary(op_sample *s, int max) { return binary_any(s, max, false, false); }
static int gen_binary_posb(op_sample *s, int max) { return binary_any(s, max, false, true); }
static int gen_binary_posa(op_sample *s, int max) { return binary_any(s, max, true, false); }

static int gen_where(op_sample *s, int max) {
    int k = 0;
    S("3x4", S_GC, wf_gt_scalar(R(WF_SHAPE(3, 4)), 0), R(WF_SHAPE(3, 4)), R(WF_SHAPE(3, 4))); KEEP(1);
    S("broadcast", S_GC, wf_gt_scalar(R(WF_SHAPE(3, 1)), 0), R(WF_SHAPE(1, 4)), wf_scalar(0.3, WF_F64)); KEEP(1);
    S("large", S_BW, wf_gt_scalar(R(WF_SHAPE(BIG)), 0), R(WF_SHAPE(BIG)), R(WF_SHAPE(1000))); KEEP(1);
    S("nan/inf", S_SPECIAL, wf_gt_scalar(R(WF_SHAPE(3, 4)), 0), special(WF_SHAPE(3, 4)), R(WF_SHAPE(3, 4))); KEEP(1);
    return k;
}

/* 3-D inputs: reductions over dim 1 (or all), views */
static int gen_reduce(op_sample *s, int max) {
    int k = 0;
    S("3x4x5", S_GC, R(WF_SHAPE(3, 4, 5)));
    S("transposed", S_GC, T2(R(WF_SHAPE(5, 4, 3))));
    S("sliced", S_GC, wf_slice(R(WF_SHAPE(3, 4, 10)), 2, 0, 10, 2));
    S("empty", 0, R(WF_SHAPE(3, 0, 5)));
    S("0-dim", 0, wf_scalar(-1.5, WF_F64));
    S("large", S_BW, R(WF_SHAPE(7, 100, 100)));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(3, 4, 1)));
    S("ties", 0, ties(WF_SHAPE(3, 4, 1)));
    return k;
}

static int gen_matmul(op_sample *s, int max) {
    int k = 0;
    S("3x4@4x5", S_GC, R(WF_SHAPE(3, 4)), R(WF_SHAPE(4, 5)));
    S("batched@2d", S_GC, R(WF_SHAPE(2, 3, 4)), R(WF_SHAPE(4, 5)));
    S("transposed", S_GC, T2(R(WF_SHAPE(4, 3))), T2(R(WF_SHAPE(5, 4))));
    S("vector", S_GC, R(WF_SHAPE(4)), R(WF_SHAPE(4, 5)));
    S("empty k", 0, R(WF_SHAPE(3, 0)), R(WF_SHAPE(0, 5)));
    S("large", S_BW, R(WF_SHAPE(130, 70)), R(WF_SHAPE(70, 90)));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(3, 4)), R(WF_SHAPE(4, 5)));
    return k;
}
static int gen_bmm(op_sample *s, int max) {
    int k = 0;
    S("2x3x4@2x4x5", S_GC, R(WF_SHAPE(2, 3, 4)), R(WF_SHAPE(2, 4, 5)));
    S("transposed", S_GC, wf_transpose(R(WF_SHAPE(2, 4, 3)), 1, 2), R(WF_SHAPE(2, 4, 5)));
    S("empty batch", 0, R(WF_SHAPE(0, 3, 4)), R(WF_SHAPE(0, 4, 5)));
    S("large", S_BW, R(WF_SHAPE(4, 60, 70)), R(WF_SHAPE(4, 70, 50)));
    return k;
}
static int gen_linear(op_sample *s, int max) {
    int k = 0;
    S("3x4", S_GC, R(WF_SHAPE(3, 4)), R(WF_SHAPE(5, 4)), R(WF_SHAPE(5)));
    S("batched", S_GC, R(WF_SHAPE(2, 3, 4)), R(WF_SHAPE(5, 4)), R(WF_SHAPE(5)));
    S("transposed x", S_GC, T2(R(WF_SHAPE(4, 3))), R(WF_SHAPE(5, 4)), R(WF_SHAPE(5)));
    S("large", S_BW, R(WF_SHAPE(130, 70)), R(WF_SHAPE(90, 70)), R(WF_SHAPE(90)));
    /* CUDA: widths that are multiples of 8 (cuBLASLt's bias / bias-gradient epilogues) and an
     * odd output width */
    S("2x65x128 -> 96 (aligned)", S_BW, R(WF_SHAPE(2, 65, 128)), wf_mul_scalar(R(WF_SHAPE(96, 128)), 0.2), R(WF_SHAPE(96)));
    S("3x33x96 -> 37", S_BW, R(WF_SHAPE(3, 33, 96)), wf_mul_scalar(R(WF_SHAPE(37, 96)), 0.2), R(WF_SHAPE(37)));
    return k;
}

static int gen_softmax(op_sample *s, int max) {
    int k = 0;
    S("3x5", S_GC, R(WF_SHAPE(3, 5)));
    S("transposed", S_GC, T2(R(WF_SHAPE(5, 3))));
    S("empty", 0, R(WF_SHAPE(0, 5)));
    S("large", S_BW, wf_mul_scalar(R(WF_SHAPE(BIG)), 3.0));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(3, 4)));
    S("ties", 0, ties(WF_SHAPE(3, 4)));
    S("wide rows", S_BW, wf_mul_scalar(R(WF_SHAPE(7, 3000)), 3.0));   /* > 1024: a block per row on CUDA */
    return k;
}

static int gen_gather(op_sample *s, int max) {   /* x, dim 1, index */
    int k = 0;
    S("3x5", S_GC, R(WF_SHAPE(3, 5)), idx(5, WF_SHAPE(3, 4))); KEEP(2);
    S("transposed", S_GC, T2(R(WF_SHAPE(5, 3))), idx(5, WF_SHAPE(3, 7))); KEEP(2);
    S("empty index", 0, R(WF_SHAPE(3, 5)), idx(5, WF_SHAPE(3, 0))); KEEP(2);
    S("large", S_BW, R(WF_SHAPE(BIG)), idx(1000, WF_SHAPE(70, 600))); KEEP(2);
    return k;
}
static int gen_scatter(op_sample *s, int max) {  /* x, index, src */
    int k = 0;
    S("3x5", S_GC, R(WF_SHAPE(3, 5)), idx(5, WF_SHAPE(3, 4)), R(WF_SHAPE(3, 4))); KEEP(2);
    S("strided src", S_GC, R(WF_SHAPE(3, 5)), idx(5, WF_SHAPE(3, 4)), T2(R(WF_SHAPE(4, 3)))); KEEP(2);
    S("large", S_BW, R(WF_SHAPE(BIG)), idx(1000, WF_SHAPE(70, 600)), R(WF_SHAPE(70, 600))); KEEP(2);
    return k;
}
static int gen_select_rows(op_sample *s, int max) {   /* table, row indices */
    int k = 0;
    S("5x4", S_GC, R(WF_SHAPE(5, 4)), idx(5, WF_SHAPE(6))); KEEP(2);
    S("2-d index", S_GC, R(WF_SHAPE(10, 3)), idx(10, WF_SHAPE(2, 3))); KEEP(2);
    S("transposed", S_GC, T2(R(WF_SHAPE(4, 5))), idx(5, WF_SHAPE(3))); KEEP(2);
    S("empty", 0, R(WF_SHAPE(5, 4)), idx(5, WF_SHAPE(0))); KEEP(2);
    S("large", S_BW, R(WF_SHAPE(1000, 70)), idx(1000, WF_SHAPE(1200))); KEEP(2);
    return k;
}
static int gen_cat(op_sample *s, int max) {
    int k = 0;
    S("2x3+4x3", S_GC, R(WF_SHAPE(2, 3)), R(WF_SHAPE(4, 3)));
    S("transposed", S_GC, T2(R(WF_SHAPE(3, 2))), R(WF_SHAPE(1, 3)));
    S("empty part", 0, R(WF_SHAPE(2, 3)), R(WF_SHAPE(0, 3)));
    S("large", S_BW, R(WF_SHAPE(BIG)), R(WF_SHAPE(BIG)));
    return k;
}
static int gen_stack(op_sample *s, int max) {
    int k = 0;
    S("2x3 x3", S_GC, R(WF_SHAPE(2, 3)), T2(R(WF_SHAPE(3, 2))), R(WF_SHAPE(2, 3)));
    S("0-dim", S_GC, wf_scalar(1.5, WF_F64), wf_scalar(-2, WF_F64));
    S("large", S_BW, R(WF_SHAPE(BIG)), R(WF_SHAPE(BIG)));
    return k;
}

/* conv2d's samples. test_ops.c bounds the col buffer at 64K elements (WF_CONV_CHUNK_ELEMS),
 * so the "large" ones run in several chunks of images (the last one shorter) and the small
 * ones in one: both loops of the batched path (tensor/ops_conv.c), on every device. */
static int gen_conv(op_sample *s, int max) {   /* x, w, b */
    int k = 0;
    S("2x3x7x6", S_GC, R(WF_SHAPE(2, 3, 7, 6)), R(WF_SHAPE(4, 3, 3, 3)), R(WF_SHAPE(4)));
    S("channels-last", S_GC, wf_permute(R(WF_SHAPE(2, 7, 6, 3)), (int[]){ 0, 3, 1, 2 }, 4), R(WF_SHAPE(4, 3, 3, 3)),
      R(WF_SHAPE(4)));
    S("unbatched 3x7x6", S_GC, R(WF_SHAPE(3, 7, 6)), R(WF_SHAPE(4, 3, 3, 3)), R(WF_SHAPE(4)));
    S("odd 3x5x9x11, 2x3 kernel", S_GC, R(WF_SHAPE(3, 5, 9, 11)), R(WF_SHAPE(7, 5, 2, 3)), R(WF_SHAPE(7)));
    S("empty batch", 0, R(WF_SHAPE(0, 3, 7, 6)), R(WF_SHAPE(4, 3, 3, 3)), R(WF_SHAPE(4)));
    S("large", S_BW, R(WF_SHAPE(4, 3, 40, 40)), R(WF_SHAPE(8, 3, 3, 3)), R(WF_SHAPE(8)));
    S("large, 5 images", S_BW, R(WF_SHAPE(5, 4, 33, 35)), R(WF_SHAPE(6, 4, 3, 3)), R(WF_SHAPE(6)));
    return k;
}
/* groups = 2: weight [O, C/2, kh, kw] */
static int gen_conv_groups(op_sample *s, int max) {
    int k = 0;
    S("2x4x7x6", S_GC, R(WF_SHAPE(2, 4, 7, 6)), R(WF_SHAPE(6, 2, 3, 3)), R(WF_SHAPE(6)));
    S("unbatched 4x5x8", S_GC, R(WF_SHAPE(4, 5, 8)), R(WF_SHAPE(6, 2, 3, 3)), R(WF_SHAPE(6)));
    S("large, 5 images", S_BW, R(WF_SHAPE(5, 4, 40, 40)), R(WF_SHAPE(6, 2, 3, 3)), R(WF_SHAPE(6)));
    return k;
}
/* 1x1 kernels: with stride 1 and no padding conv2d reads x directly (one strided GEMM);
 * otherwise the batched path with its 1x1 im2col */
static int gen_conv_1x1(op_sample *s, int max) {
    int k = 0;
    S("2x3x7x6", S_GC, R(WF_SHAPE(2, 3, 7, 6)), R(WF_SHAPE(4, 3, 1, 1)), R(WF_SHAPE(4)));
    S("unbatched 3x5x4", S_GC, R(WF_SHAPE(3, 5, 4)), R(WF_SHAPE(4, 3, 1, 1)), R(WF_SHAPE(4)));
    S("large", S_BW, R(WF_SHAPE(3, 8, 50, 50)), R(WF_SHAPE(5, 8, 1, 1)), R(WF_SHAPE(5)));
    return k;
}
static int gen_pool(op_sample *s, int max) {
    int k = 0;
    S("2x3x7x6", S_GC, R(WF_SHAPE(2, 3, 7, 6)));
    S("channels-last", S_GC, wf_permute(R(WF_SHAPE(2, 7, 6, 3)), (int[]){ 0, 3, 1, 2 }, 4));
    S("empty batch", 0, R(WF_SHAPE(0, 3, 7, 6)));
    S("large", S_BW, R(WF_SHAPE(2, 4, 70, 70)));
    S("nan/inf", S_SPECIAL, special(WF_SHAPE(1, 1, 3, 4)));
    S("ties", 0, ties(WF_SHAPE(1, 1, 3, 4)));
    return k;
}

/* n class targets in [0, hi): the first and last class, then spread, every 7th ignored (-100) */
static wf_tensor *targets_ignored(int64_t hi, int64_t n) {
    int64_t v[256];
    if (n > 256) return NULL;
    for (int64_t i = 0; i < n; i++) v[i] = i % 7 == 3 ? -100 : i == 0 ? hi - 1 : (i * 37) % hi;
    return wf_from_data(v, WF_SHAPE(n), WF_I64);
}
static int gen_xent(op_sample *s, int max) {   /* logits, class targets (-100 = ignored) */
    int k = 0;
    S("4x5", S_GC, R(WF_SHAPE(4, 5)), wf_from_data((int64_t[]){ 1, 4, -100, 0 }, WF_SHAPE(4), WF_I64)); KEEP(2);
    S("transposed", S_GC, T2(R(WF_SHAPE(5, 4))), idx(5, WF_SHAPE(4))); KEEP(2);
    S("spatial", S_GC, R(WF_SHAPE(2, 3, 2, 2)), idx(3, WF_SHAPE(2, 2, 2))); KEEP(2);
    S("large", S_BW, wf_mul_scalar(R(WF_SHAPE(BIG)), 3.0), idx(1000, WF_SHAPE(70))); KEEP(2);
    /* > 1024 classes: the fused kernel's block per row on CUDA (a vocabulary's case) */
    S("wide rows", S_BW, wf_mul_scalar(R(WF_SHAPE(8, 3000)), 3.0),
      wf_from_data((int64_t[]){ 5, 2999, -100, 0, 1500, -100, 7, 2048 }, WF_SHAPE(8), WF_I64)); KEEP(2);
    /* CUDA's vector kernels take contiguous 16-byte-aligned rows of whole 16-byte vectors
     * ("large", "wide rows", and these short ones for f32 and bf16); the generic ones the
     * rest: a row that is not whole vectors, and a view one element off the alignment */
    S("short rows, whole vectors", S_GC, R(WF_SHAPE(6, 16)),
      wf_from_data((int64_t[]){ 15, -100, 0, 8, 7, -100 }, WF_SHAPE(6), WF_I64)); KEEP(2);
    S("wide rows, not whole vectors", S_BW, wf_mul_scalar(R(WF_SHAPE(6, 3001)), 3.0),
      wf_from_data((int64_t[]){ 0, 3000, -100, 1234, 2999, 7 }, WF_SHAPE(6), WF_I64)); KEEP(2);
    S("wide rows, offset by one", S_BW,
      wf_view(wf_narrow(wf_mul_scalar(R(WF_SHAPE(8 * 3000 + 1)), 3.0), 0, 1, 8 * 3000), WF_SHAPE(8, 3000)),
      wf_from_data((int64_t[]){ 2999, 0, -100, 8, 1500, -100, 2992, 3 }, WF_SHAPE(8), WF_I64)); KEEP(2);
    S("wide rows, strided", S_BW, wf_narrow(wf_mul_scalar(R(WF_SHAPE(5, 3008)), 3.0), 1, 0, 3000),
      wf_from_data((int64_t[]){ 2999, -100, 0, 2048, 17 }, WF_SHAPE(5), WF_I64)); KEEP(2);
    return k;
}
/* hidden states [N, C], weight [V, C], bias [V], class targets [N] (-100 = ignored) */
static int gen_lxent(op_sample *s, int max) {
    int k = 0;
    S("5x4 -> 6", S_GC, R(WF_SHAPE(5, 4)), R(WF_SHAPE(6, 4)), R(WF_SHAPE(6)),
      wf_from_data((int64_t[]){ 1, 5, -100, 0, 3 }, WF_SHAPE(5), WF_I64)); KEEP(8);
    S("transposed h", S_GC, T2(R(WF_SHAPE(3, 7))), R(WF_SHAPE(5, 3)), R(WF_SHAPE(5)), idx(5, WF_SHAPE(7))); KEEP(8);
    S("large", S_BW, R(WF_SHAPE(130, 40)), wf_mul_scalar(R(WF_SHAPE(300, 40)), 0.3), R(WF_SHAPE(300)),
      idx(300, WF_SHAPE(130))); KEEP(8);
    /* V a multiple of 8: CUDA's vector cross-entropy kernels for bf16 logits too (300 is for f32) */
    S("large, V of whole vectors", S_BW, R(WF_SHAPE(70, 40)), wf_mul_scalar(R(WF_SHAPE(264, 40)), 0.3),
      R(WF_SHAPE(264)), targets_ignored(264, 70)); KEEP(8);
    return k;
}
static int gen_loss(op_sample *s, int max) {   /* input, target (both floating) */
    int k = 0;
    S("3x4", S_GC, R(WF_SHAPE(3, 4)), R(WF_SHAPE(3, 4)));
    S("broadcast", S_GC, R(WF_SHAPE(3, 4)), T2(R(WF_SHAPE(4, 1))));
    S("large", S_BW, R(WF_SHAPE(BIG)), R(WF_SHAPE(BIG)));
    return k;
}
static int gen_loss_prob(op_sample *s, int max) {   /* input, target in (0, 1) */
    int k = 0;
    S("3x4", S_GC, R(WF_SHAPE(3, 4)), wf_sigmoid(R(WF_SHAPE(3, 4))));
    S("large", S_BW, R(WF_SHAPE(BIG)), wf_sigmoid(R(WF_SHAPE(BIG))));
    return k;
}

static int gen_norm(op_sample *s, int max) {   /* x [.., 8], weight [8], bias [8] */
    int k = 0;
    S("3x8", S_GC, R(WF_SHAPE(3, 8)), R(WF_SHAPE(8)), R(WF_SHAPE(8)));
    S("transposed", S_GC, T2(R(WF_SHAPE(8, 3))), R(WF_SHAPE(8)), R(WF_SHAPE(8)));
    S("large", S_BW, wf_add_scalar(R(WF_SHAPE(70, 8, 125)), 1.0), R(WF_SHAPE(125)), R(WF_SHAPE(125)));
    /* CUDA's layer norm: the fast kernel takes widths % 4 == 0 up to 1024, 1..8 four-element
     * loads a lane (lanes past the row's end at 132 and 384, shakespeare-char's width: 2 and 4
     * loads); the general kernel the rest; past 2112 rows each warp of WEFT_LN_OLD's backward
     * runs several rows (the new one's: gen_norm_rows) */
    S("5x3", S_GC, R(WF_SHAPE(5, 3)), R(WF_SHAPE(3)), R(WF_SHAPE(3)));
    S("77x132", S_BW, wf_mul_scalar(R(WF_SHAPE(77, 132)), 2.0), R(WF_SHAPE(132)), R(WF_SHAPE(132)));
    S("48x384", S_BW, R(WF_SHAPE(48, 384)), R(WF_SHAPE(384)), R(WF_SHAPE(384)));
    S("64x768", S_BW, R(WF_SHAPE(64, 768)), R(WF_SHAPE(768)), R(WF_SHAPE(768)));
    S("40x1024", S_BW, R(WF_SHAPE(40, 1024)), R(WF_SHAPE(1024)), R(WF_SHAPE(1024)));
    S("37x1500", S_BW, R(WF_SHAPE(37, 1500)), R(WF_SHAPE(1500)), R(WF_SHAPE(1500)));
    S("2400x64 (rows per warp)", S_BW, R(WF_SHAPE(2400, 64)), R(WF_SHAPE(64)), R(WF_SHAPE(64)));
    return k;
}
static int gen_group_norm(op_sample *s, int max) {   /* x [N, 4, ...], weight [4], bias [4] */
    int k = 0;
    S("2x4x3x3", S_GC, R(WF_SHAPE(2, 4, 3, 3)), R(WF_SHAPE(4)), R(WF_SHAPE(4)));
    S("large", S_BW, R(WF_SHAPE(10, 4, 40, 50)), R(WF_SHAPE(4)), R(WF_SHAPE(4)));
    return k;
}
static int gen_attn(op_sample *s, int max) {   /* q, k, v */
    int k = 0;
    S("2x3x4", S_GC, R(WF_SHAPE(2, 3, 4)), R(WF_SHAPE(2, 5, 4)), R(WF_SHAPE(2, 5, 4)));
    S("heads, transposed", S_GC, wf_transpose(R(WF_SHAPE(1, 3, 2, 4)), 1, 2), R(WF_SHAPE(1, 2, 3, 4)),
      R(WF_SHAPE(1, 2, 3, 4)));
    S("large", S_BW, R(WF_SHAPE(2, 2, 130, 64)), R(WF_SHAPE(2, 2, 130, 64)), R(WF_SHAPE(2, 2, 130, 64)));
    /* CUDA's fused kernel (f16/bf16, head dim <= 128): the full kernels at 64 and 128, 16-byte
     * loads where D % 8 == 0, else 4 or 1 per thread; L != S both ways (causal too), several
     * 128-row query tiles, key tails, [B, T, H, D] storage seen as [B, H, T, D]; past 128 the
     * composed ops */
    S("L50 S90 D40", S_BW, R(WF_SHAPE(1, 2, 50, 40)), R(WF_SHAPE(1, 2, 90, 40)), R(WF_SHAPE(1, 2, 90, 40)));
    S("L33 S70 D36", S_BW, R(WF_SHAPE(1, 2, 33, 36)), R(WF_SHAPE(1, 2, 70, 36)), R(WF_SHAPE(1, 2, 70, 36)));
    S("L45 S300 D33", S_BW, R(WF_SHAPE(1, 3, 45, 33)), R(WF_SHAPE(1, 3, 300, 33)), R(WF_SHAPE(1, 3, 300, 33)));
    S("L129 D128", S_BW, wf_mul_scalar(R(WF_SHAPE(1, 2, 129, 128)), 0.5), R(WF_SHAPE(1, 2, 129, 128)),
      R(WF_SHAPE(1, 2, 129, 128)));
    S("L100 S64 D96 [B,T,H,D]", S_BW, wf_transpose(wf_mul_scalar(R(WF_SHAPE(1, 100, 2, 96)), 0.5), 1, 2),
      wf_transpose(R(WF_SHAPE(1, 64, 2, 96)), 1, 2), wf_transpose(R(WF_SHAPE(1, 64, 2, 96)), 1, 2));
    S("L384 D64 (query tiles)", S_BW, R(WF_SHAPE(1, 2, 384, 64)), R(WF_SHAPE(1, 2, 384, 64)), R(WF_SHAPE(1, 2, 384, 64)));
    S("L300 S100 D64", S_BW, R(WF_SHAPE(1, 2, 300, 64)), R(WF_SHAPE(1, 2, 100, 64)), R(WF_SHAPE(1, 2, 100, 64)));
    S("L50 S200 D128 [B,T,H,D]", S_BW, wf_transpose(wf_mul_scalar(R(WF_SHAPE(1, 50, 1, 128)), 0.5), 1, 2),
      wf_transpose(R(WF_SHAPE(1, 200, 1, 128)), 1, 2), wf_transpose(R(WF_SHAPE(1, 200, 1, 128)), 1, 2));
    /* the backward's delta: 4 threads a row */
    S("L200 D32 [B,T,H,D]", S_BW, wf_transpose(R(WF_SHAPE(2, 200, 2, 32)), 1, 2),
      wf_transpose(R(WF_SHAPE(2, 200, 2, 32)), 1, 2), wf_transpose(R(WF_SHAPE(2, 200, 2, 32)), 1, 2));
    S("D160 (composed)", S_BW, R(WF_SHAPE(1, 1, 20, 160)), R(WF_SHAPE(1, 1, 24, 160)), R(WF_SHAPE(1, 1, 24, 160)));
    return k;
}
static int gen_prob(op_sample *s, int max) {   /* probabilities for bernoulli */
    int k = 0;
    S("3x4", 0, wf_sigmoid(R(WF_SHAPE(3, 4))));
    S("large", 0, wf_sigmoid(R(WF_SHAPE(BIG))));
    S("1001 (odd)", 0, wf_sigmoid(R(WF_SHAPE(1001))));   /* Philox makes 4 values a counter: a tail */
    return k;
}

/* ---------------------------------------------------------------- adapters' helpers */

static wf_tensor *split1(wf_tensor *x) {   /* the second of wf_split's pieces */
    wf_tensor *p[8];
    int n = wf_split(x, 2, 0, p, 8);
    return n > 1 ? p[1] : n == 1 ? p[0] : NULL;
}
static wf_tensor *chunk_last(wf_tensor *x) {
    wf_tensor *p[8];
    int n = wf_chunk(x, 2, -1, p, 8);
    return n > 0 ? p[n - 1] : NULL;
}
static wf_tensor *inplace(int (*f)(wf_tensor *, wf_tensor *), wf_tensor *a, wf_tensor *b) {
    wf_tensor *c = wf_clone(a);
    return c && !f(c, b) ? c : NULL;
}
static wf_tensor *inplace_s(int (*f)(wf_tensor *, double), wf_tensor *a, double s) {
    wf_tensor *c = wf_clone(a);
    return c && !f(c, s) ? c : NULL;
}
static wf_tensor *axpy_(wf_tensor *a, wf_tensor *b) {
    wf_tensor *c = wf_clone(a);
    return c && !wf_add_scaled_(c, b, -0.75) ? c : NULL;
}
static wf_tensor *clamp_(wf_tensor *a) {
    wf_tensor *c = wf_clone(a);
    return c && !wf_clamp_(c, -0.5, 0.7) ? c : NULL;
}
static wf_tensor *relu_(wf_tensor *a) {
    wf_tensor *c = wf_clone(a);
    return c && !wf_relu_(c) ? c : NULL;
}
static wf_tensor *fill_(wf_tensor *a, bool zero) {
    wf_tensor *c = wf_clone(a);
    return c && !(zero ? wf_zero_(c) : wf_fill_(c, 2.5)) ? c : NULL;
}
static wf_tensor *copy_(wf_tensor *a, wf_tensor *b) {   /* b broadcast into a copy of a */
    wf_tensor *c = wf_clone(a);
    return c && !wf_copy_(c, b) ? c : NULL;
}
static const wf_conv2d_opts conv_s2 = { .stride = { 2, 1 }, .padding = { 1, 2 }, .dilation = { 1, 2 } };
static const wf_conv2d_opts conv_p1 = { .padding = { 1, 1 } };
static const wf_conv2d_opts conv_g2 = { .stride = { 2, 2 }, .padding = { 1, 1 }, .groups = 2 };
static const wf_conv2d_opts conv_g2d = { .padding = { 2, 1 }, .dilation = { 2, 1 }, .groups = 2 };
static const wf_conv2d_opts conv_1x1s = { .stride = { 2, 3 }, .padding = { 1, 0 } };
static const wf_pool2d_opts pool_k3 = { .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 } };
static const wf_pool2d_opts pool_k2 = { .kernel = { 2, 2 } };
static const wf_pool2d_opts pool_nopad = { .kernel = { 3, 3 }, .stride = { 2, 2 }, .padding = { 1, 1 },
                                           .count_include_pad_false = true };
static const wf_pool2d_opts pool_dil = { .kernel = { 2, 2 }, .stride = { 1, 1 }, .dilation = { 2, 1 }, .ceil_mode = true };
static wf_tensor *xent(wf_tensor *x, wf_tensor *t, wf_reduction r, double smooth) {
    wf_cross_entropy_opts o = { .reduction = r, .label_smoothing = smooth };
    return wf_cross_entropy(x, t, &o);
}
static wf_tensor *xent_w(wf_tensor *x, wf_tensor *t) {   /* class weights: the input's dtype, values fixed */
    int64_t C = wf_size(x, 1);
    wf_tensor *wt = wf_to_dtype(wf_add_scalar(wf_arange(0, (double)C, 1, WF_F64), 0.5), wf_tensor_dtype(x));
    wf_cross_entropy_opts o = { .weight = wf_to_device(wt, wf_tensor_device(x)) };
    return wf_cross_entropy(x, t, &o);
}
/* chunk: 2 rows a chunk (several chunks, a ragged last one), or 0 (automatic: one chunk) */
static wf_tensor *lxent(wf_tensor *h, wf_tensor *w, wf_tensor *b, wf_tensor *t, wf_reduction r, double smooth,
                        int64_t chunk) {
    wf_cross_entropy_opts o = { .reduction = r, .label_smoothing = smooth };
    return wf_linear_cross_entropy(h, w, b, t, &o, chunk);
}
static wf_tensor *nll(wf_tensor *x, wf_tensor *t) {
    wf_cross_entropy_opts o = { 0 };
    return wf_nll_loss(wf_log_softmax(x, 1), t, &o);
}
static wf_tensor *bce(wf_tensor *x, wf_tensor *t) {
    wf_bce_opts o = { .reduction = WF_REDUCTION_MEAN };
    return wf_binary_cross_entropy_with_logits(x, t, &o);
}
static wf_tensor *seeded(uint64_t seed) { wf_manual_seed(seed); return NULL; }
#define SEED(expr) (seeded(42), (expr))
static int64_t lastdim(wf_tensor *x) { return wf_ndim(x) ? wf_size(x, -1) : 1; }
static wf_tensor *expand2(wf_tensor *x) {
    int64_t sh[WF_MAX_DIMS + 1] = { 2 };
    for (int i = 0; i < wf_ndim(x); i++) sh[i + 1] = -1;
    return wf_expand(wf_unsqueeze(x, 0), sh, wf_ndim(x) + 1);
}
static wf_tensor *rows_first(wf_tensor *x) { return wf_reshape(x, WF_SHAPE(-1)); }

/* ---------------------------------------------------------------- the table */

/* tolerance factor of the random ops: the reference is the CPU in the same dtype (the
 * stream depends on the dtype), and must match it bit for bit */
#define RANDOM (-1.0)
#define D1 ((int[]){ 1 })
#define D02 ((int[]){ 0, 2 })
#define MSE WF_REDUCTION_MEAN
#define NONE WF_REDUCTION_NONE
#define SUM WF_REDUCTION_SUM

/* X(id, "name", call, generator, dtypes, ngrad, tolerance factor) */
#define OPS(X)                                                                                                   \
    /* unary */                                                                                                  \
    X(neg, "neg", wf_neg(x), gen_unary, DT_FLOAT | DT_INT, 1, 1)                                                 \
    X(abs, "abs", wf_abs(x), gen_unary, DT_FLOAT | DT_INT, 1, 1)                                                 \
    X(exp, "exp", wf_exp(x), gen_unary, DT_FLOAT, 1, 1)                                                          \
    X(log, "log", wf_log(x), gen_unary_pos, DT_FLOAT, 1, 1)                                                      \
    X(log1p, "log1p", wf_log1p(x), gen_unary_pos, DT_FLOAT, 1, 1)                                                \
    X(sqrt, "sqrt", wf_sqrt(x), gen_unary_pos, DT_FLOAT, 1, 1)                                                   \
    X(rsqrt, "rsqrt", wf_rsqrt(x), gen_unary_pos, DT_FLOAT, 1, 1)                                                \
    X(sin, "sin", wf_sin(x), gen_unary, DT_FLOAT, 1, 1)                                                          \
    X(cos, "cos", wf_cos(x), gen_unary, DT_FLOAT, 1, 1)                                                          \
    X(tanh, "tanh", wf_tanh(x), gen_unary, DT_FLOAT, 1, 1)                                                       \
    X(sigmoid, "sigmoid", wf_sigmoid(x), gen_unary, DT_FLOAT, 1, 1)                                              \
    X(relu, "relu", wf_relu(x), gen_unary, DT_FLOAT | DT_INT, 1, 1)                                              \
    X(gelu, "gelu", wf_gelu(x, WF_GELU_NONE), gen_unary, DT_FLOAT, 1, 1)                                         \
    X(gelu_tanh, "gelu(tanh)", wf_gelu(x, WF_GELU_TANH), gen_unary, DT_FLOAT, 1, 1)                              \
    X(silu, "silu", wf_silu(x), gen_unary, DT_FLOAT, 1, 1)                                                       \
    X(square, "square", wf_square(x), gen_unary, DT_FLOAT | DT_INT, 1, 1)                                        \
    X(sign, "sign", wf_sign(x), gen_unary, DT_FLOAT | DT_INT, 1, 1)                                              \
    X(pow_scalar, "pow_scalar(3)", wf_pow_scalar(x, 3.0), gen_unary, DT_FLOAT, 1, 2)                             \
    X(pow_half, "pow_scalar(0.5)", wf_pow_scalar(x, 0.5), gen_unary_pos, DT_FLOAT, 1, 1)                         \
    X(clamp, "clamp", wf_clamp(x, -0.5, 0.7), gen_unary, DT_FLOAT, 1, 1)                                         \
    X(logical_not, "logical_not", wf_logical_not(x), gen_unary, DT_ALL, 0, 0)                                    \
    X(isfinite, "isfinite", wf_isfinite(x), gen_unary, DT_ALL, 0, 0)                                             \
    /* binary and their scalar forms */                                                                          \
    X(add, "add", wf_add(x, y), gen_binary, DT_ALL, 2, 1)                                                        \
    X(sub, "sub", wf_sub(x, y), gen_binary, DT_ALL, 2, 1)                                                        \
    X(mul, "mul", wf_mul(x, y), gen_binary, DT_ALL, 2, 1)                                                        \
    X(div, "div", wf_div(x, y), gen_binary_posb, DT_FLOAT, 2, 1)                                                 \
    X(pow, "pow", wf_pow(x, y), gen_binary_posa, DT_FLOAT, 2, 2)                                                 \
    X(maximum, "maximum", wf_maximum(x, y), gen_binary, DT_ALL, 2, 1)                                            \
    X(minimum, "minimum", wf_minimum(x, y), gen_binary, DT_ALL, 2, 1)                                            \
    X(eq, "eq", wf_eq(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(ne, "ne", wf_ne(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(lt, "lt", wf_lt(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(le, "le", wf_le(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(gt, "gt", wf_gt(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(ge, "ge", wf_ge(x, y), gen_binary, DT_ALL, 0, 0)                                                           \
    X(logical_and, "logical_and", wf_logical_and(x, y), gen_binary, DT_ALL, 0, 0)                                \
    X(logical_or, "logical_or", wf_logical_or(x, y), gen_binary, DT_ALL, 0, 0)                                   \
    X(where, "where", wf_where(x, y, z), gen_where, DT_ALL, 3, 1)                                                \
    X(add_scalar, "add_scalar", wf_add_scalar(x, 0.5), gen_unary, DT_FLOAT, 1, 1)                                \
    X(sub_scalar, "sub_scalar", wf_sub_scalar(x, 2), gen_unary, DT_FLOAT | DT_INT, 1, 1)                         \
    X(rsub_scalar, "rsub_scalar", wf_rsub_scalar(x, 2), gen_unary, DT_FLOAT | DT_INT, 1, 1)                      \
    X(mul_scalar, "mul_scalar", wf_mul_scalar(x, -3), gen_unary, DT_FLOAT | DT_INT, 1, 1)                        \
    X(div_scalar, "div_scalar", wf_div_scalar(x, 4), gen_unary, DT_FLOAT | DT_INT, 1, 1)                         \
    X(rdiv_scalar, "rdiv_scalar", wf_rdiv_scalar(x, 2), gen_unary_pos, DT_FLOAT, 1, 1)                           \
    X(maximum_scalar, "maximum_scalar", wf_maximum_scalar(x, 0.1), gen_unary, DT_FLOAT, 1, 1)                    \
    X(minimum_scalar, "minimum_scalar", wf_minimum_scalar(x, 0.1), gen_unary, DT_FLOAT, 1, 1)                    \
    X(eq_scalar, "eq_scalar", wf_eq_scalar(x, 1), gen_unary, DT_ALL, 0, 0)                                       \
    X(ne_scalar, "ne_scalar", wf_ne_scalar(x, 1), gen_unary, DT_ALL, 0, 0)                                       \
    X(lt_scalar, "lt_scalar", wf_lt_scalar(x, 0.5), gen_unary, DT_ALL, 0, 0)                                     \
    X(le_scalar, "le_scalar", wf_le_scalar(x, 0.5), gen_unary, DT_ALL, 0, 0)                                     \
    X(gt_scalar, "gt_scalar", wf_gt_scalar(x, 0.1), gen_unary, DT_ALL, 0, 0)                                     \
    X(ge_scalar, "ge_scalar", wf_ge_scalar(x, 1), gen_unary, DT_ALL, 0, 0)                                       \
    /* in place (on a clone, so gradients flow to the inputs) */                                                 \
    X(add_, "add_", inplace(wf_add_, x, y), gen_binary, DT_ALL, 2, 1)                                            \
    X(sub_, "sub_", inplace(wf_sub_, x, y), gen_binary, DT_ALL, 2, 1)                                            \
    X(mul_, "mul_", inplace(wf_mul_, x, y), gen_binary, DT_ALL, 2, 1)                                            \
    X(div_, "div_", inplace(wf_div_, x, y), gen_binary_posb, DT_FLOAT, 2, 1)                                     \
    X(add_scaled_, "add_scaled_", axpy_(x, y), gen_binary, DT_ALL, 2, 1)                                         \
    X(add_scalar_, "add_scalar_", inplace_s(wf_add_scalar_, x, 1.5), gen_unary, DT_FLOAT, 1, 1)                  \
    X(mul_scalar_, "mul_scalar_", inplace_s(wf_mul_scalar_, x, -2), gen_unary, DT_ALL, 1, 1)                     \
    X(clamp_, "clamp_", clamp_(x), gen_unary, DT_FLOAT, 1, 1)                                                    \
    X(relu_, "relu_", relu_(x), gen_unary, DT_FLOAT, 1, 1)                                                       \
    X(fill_, "fill_", fill_(x, false), gen_unary, DT_ALL, 0, 0)                                                  \
    X(zero_, "zero_", fill_(x, true), gen_unary, DT_ALL, 0, 0)                                                   \
    X(copy_, "copy_", copy_(x, y), gen_binary, DT_ALL, 2, 1)                                                     \
    /* reductions */                                                                                             \
    X(sum, "sum(dim 1)", wf_sum(x, D1, 1, false), gen_reduce, DT_ALL, 1, 1)                                      \
    X(sum_kd, "sum(dims 0,2, keepdim)", wf_sum(x, D02, 2, true), gen_reduce, DT_ALL, 1, 1)                       \
    X(sum_all, "sum_all", wf_sum_all(x), gen_reduce, DT_ALL, 1, 1)                                               \
    X(mean, "mean(dim 1)", wf_mean(x, D1, 1, false), gen_reduce, DT_FLOAT, 1, 1)                                 \
    X(mean_all, "mean_all", wf_mean_all(x), gen_reduce, DT_FLOAT, 1, 1)                                          \
    X(var, "var(dim 1)", wf_var(x, D1, 1, 1, false), gen_reduce, DT_FLOAT, 1, 2)                                 \
    X(std, "std(dims 0,2)", wf_std(x, D02, 2, 0, true), gen_reduce, DT_FLOAT, 1, 2)                              \
    X(amax, "amax(dim 1)", wf_amax(x, D1, 1, false), gen_reduce, DT_ALL, 1, 1)                                   \
    X(amin, "amin(all)", wf_amin(x, NULL, 0, false), gen_reduce, DT_ALL, 1, 1)                                   \
    X(argmax, "argmax(dim 1)", wf_argmax(x, 1, false), gen_reduce, DT_ALL, 0, 0)                                 \
    X(argmin, "argmin(dim 0, keepdim)", wf_argmin(x, 0, true), gen_reduce, DT_ALL, 0, 0)                         \
    X(logsumexp, "logsumexp(dim 1)", wf_logsumexp(x, D1, 1, false), gen_reduce, DT_FLOAT, 1, 1)                  \
    X(norm2, "norm(2)", wf_norm(x, 2, NULL, 0, false), gen_reduce, DT_FLOAT, 1, 1)                               \
    X(norm1, "norm(1, dim 1)", wf_norm(x, 1, D1, 1, false), gen_reduce, DT_FLOAT, 1, 1)                          \
    X(norm3, "norm(3, dim 1)", wf_norm(x, 3, D1, 1, false), gen_reduce, DT_FLOAT, 1, 2)                          \
    X(norm_inf, "norm(inf, dims 0,2)", wf_norm(x, INFINITY, D02, 2, false), gen_reduce, DT_FLOAT, 1, 1)          \
    /* views and copies */                                                                                       \
    X(view, "view", wf_view(x, WF_SHAPE(-1)), gen_reduce, DT_ALL, 1, 1)                                          \
    X(reshape, "reshape", rows_first(x), gen_reduce, DT_ALL, 1, 1)                                               \
    X(permute, "permute", wf_permute(x, (int[]){ 2, 0, 1 }, 3), gen_reduce, DT_ALL, 1, 1)                        \
    X(transpose, "transpose", wf_transpose(x, 0, 1), gen_reduce, DT_ALL, 1, 1)                                   \
    X(t, "t", wf_t(x), gen_unary, DT_ALL, 1, 1)                                                                  \
    X(narrow, "narrow", wf_narrow(x, -1, 1, 2), gen_reduce, DT_ALL, 1, 1)                                        \
    X(slice, "slice", wf_slice(x, 0, 0, 3, 2), gen_reduce, DT_ALL, 1, 1)                                         \
    X(select, "select", wf_select(x, 0, -1), gen_reduce, DT_ALL, 1, 1)                                           \
    X(expand, "expand", expand2(x), gen_reduce, DT_ALL, 1, 1)                                                    \
    X(squeeze, "squeeze", wf_squeeze(wf_unsqueeze(x, 1), 1), gen_reduce, DT_ALL, 1, 1)                           \
    X(squeeze_all, "squeeze_all", wf_squeeze_all(wf_unsqueeze(x, 0)), gen_reduce, DT_ALL, 1, 1)                  \
    X(flatten, "flatten", wf_flatten(x, 1, -1), gen_reduce, DT_ALL, 1, 1)                                        \
    X(contiguous, "contiguous", wf_contiguous(x), gen_reduce, DT_ALL, 1, 1)                                      \
    X(clone, "clone", wf_clone(x), gen_reduce, DT_ALL, 1, 1)                                                     \
    X(detach, "detach", wf_detach(x), gen_reduce, DT_ALL, 0, 0)                                                  \
    X(to_f32, "to_dtype(float32)", wf_to_dtype(x, WF_F32), gen_unary, DT_ALL, 0, 1)                              \
    X(to_f64, "to_dtype(float64)", wf_to_dtype(x, WF_F64), gen_unary, DT_ALL, 1, 1)                              \
    X(to_i32, "to_dtype(int32)", wf_to_dtype(x, WF_I32), gen_unary, DT_FLOAT, 0, 0)                              \
    X(to_f16, "to_dtype(float16)", wf_to_dtype(x, WF_F16), gen_unary, DT_FLOAT, 0, 1)                            \
    X(to_bf16, "to_dtype(bfloat16)", wf_to_dtype(x, WF_BF16), gen_unary, DT_FLOAT, 0, 1)                         \
    X(split, "split", split1(x), gen_reduce, DT_ALL, 1, 1)                                                       \
    X(chunk, "chunk", chunk_last(x), gen_reduce, DT_ALL, 1, 1)                                                   \
    X(cat, "cat", wf_cat(in, n, 0), gen_cat, DT_ALL, 2, 1)                                                       \
    X(stack, "stack", wf_stack(in, n, 0), gen_stack, DT_ALL, 3, 1)                                               \
    /* creation from an input's dtype and shape */                                                               \
    X(zeros_like, "zeros_like", wf_zeros_like(x), gen_unary, DT_ALL, 0, 0)                                       \
    X(ones_like, "ones_like", wf_ones_like(x), gen_unary, DT_ALL, 0, 0)                                          \
    X(full_like, "full_like", wf_full_like(x, -2), gen_unary, DT_ALL, 0, 0)                                      \
    X(arange, "arange", wf_to_device(wf_arange(-2, 3, 0.5, wf_tensor_dtype(x)), wf_tensor_device(x)), gen_prob,  \
      DT_FLOAT, 0, 0)                                                                                            \
    X(linspace, "linspace", wf_to_device(wf_linspace(-1, 2, 7, wf_tensor_dtype(x)), wf_tensor_device(x)),        \
      gen_prob, DT_FLOAT, 0, 0)                                                                                  \
    /* random: the same stream on every device and dtype */                                                      \
    X(rand_like, "rand_like", SEED(wf_rand_like(x)), gen_prob, DT_FLOAT, 0, RANDOM)                              \
    X(randn_like, "randn_like", SEED(wf_randn_like(x)), gen_prob, DT_FLOAT, 0, RANDOM)                           \
    X(uniform_, "uniform_", SEED(inplace_s2(wf_uniform_, x, -1, 3)), gen_prob, DT_FLOAT, 0, RANDOM)              \
    X(normal_, "normal_", SEED(inplace_s2(wf_normal_, x, 1, 2)), gen_prob, DT_FLOAT, 0, RANDOM)                  \
    X(bernoulli, "bernoulli", SEED(wf_bernoulli(x)), gen_prob, DT_FLOAT, 0, RANDOM)                              \
    X(bernoulli_p, "bernoulli_p", SEED(bernoulli_on(x)), gen_prob, DT_FLOAT, 0, RANDOM)                          \
    X(randint, "randint", SEED(randint_on(x)), gen_prob, DT_FLOAT, 0, RANDOM)                                    \
    X(dropout_eval, "dropout(eval)", wf_dropout(x, 0.5, false), gen_unary, DT_FLOAT, 1, 1)                       \
    X(dropout_p0, "dropout(p=0)", wf_dropout(x, 0.0, true), gen_unary, DT_FLOAT, 1, 1)                           \
    /* matmul */                                                                                                 \
    X(matmul, "matmul", wf_matmul(x, y), gen_matmul, DT_FLOAT, 2, 4)                                             \
    X(bmm, "bmm", wf_bmm(x, y), gen_bmm, DT_FLOAT, 2, 4)                                                         \
    X(linear, "linear", wf_linear(x, y, z), gen_linear, DT_FLOAT, 3, 4)                                          \
    X(linear_nobias, "linear(no bias)", wf_linear(x, y, NULL), gen_linear, DT_FLOAT, 2, 4)                       \
    X(linear_gelu, "linear_gelu", wf_linear_gelu(x, y, z, WF_GELU_NONE), gen_linear, DT_FLOAT, 3, 4)             \
    X(linear_gelu_tanh, "linear_gelu(tanh)", wf_linear_gelu(x, y, z, WF_GELU_TANH), gen_linear, DT_FLOAT, 3, 4)   \
    X(linear_xent, "linear_cross_entropy(mean, label_smoothing, chunks of 2)", lxent(x, y, z, in[3], MSE, 0.1, 2), \
      gen_lxent, DT_FLOAT, 3, 4)                                                                                 \
    X(linear_xent_sum, "linear_cross_entropy(sum, no bias, chunks of 3)", lxent(x, y, NULL, in[3], SUM, 0, 3),    \
      gen_lxent, DT_FLOAT, 2, 4)                                                                                 \
    X(linear_xent_none, "linear_cross_entropy(none, one chunk)", lxent(x, y, z, in[3], NONE, 0, 0), gen_lxent,   \
      DT_FLOAT, 3, 4)                                                                                            \
    /* one row a chunk: the weight and bias gradients are sums over every row's chunk (gemm_acc) */            \
    X(linear_xent_acc, "linear_cross_entropy(sum, chunks of 1)", lxent(x, y, z, in[3], SUM, 0, 1), gen_lxent,     \
      DT_FLOAT, 3, 4)                                                                                            \
    /* softmax family */                                                                                         \
    X(softmax, "softmax(dim -1)", wf_softmax(x, -1), gen_softmax, DT_FLOAT, 1, 1)                                \
    X(softmax0, "softmax(dim 0)", wf_softmax(x, 0), gen_softmax, DT_FLOAT, 1, 1)                                 \
    X(log_softmax, "log_softmax(dim -1)", wf_log_softmax(x, -1), gen_softmax, DT_FLOAT, 1, 1)                    \
    X(log_softmax0, "log_softmax(dim 0)", wf_log_softmax(x, 0), gen_softmax, DT_FLOAT, 1, 1)                     \
    /* indexing */                                                                                               \
    X(gather, "gather(dim 1)", wf_gather(x, 1, y), gen_gather, DT_ALL, 1, 1)                                     \
    X(scatter_add, "scatter_add(dim 1)", wf_scatter_add(x, 1, y, z), gen_scatter, DT_ALL, 3, 4)                  \
    X(index_select, "index_select(dim 0)", wf_index_select(x, 0, y), gen_select_rows, DT_ALL, 1, 1)              \
    X(embedding, "embedding", wf_embedding(x, y), gen_select_rows, DT_FLOAT, 1, 1)                               \
    /* convolution and pooling */                                                                                \
    X(conv2d, "conv2d", wf_conv2d(x, y, z, NULL), gen_conv, DT_FLOAT, 3, 4)                                      \
    X(conv2d_s, "conv2d(stride, padding, dilation)", wf_conv2d(x, y, NULL, &conv_s2), gen_conv, DT_FLOAT, 2, 4)  \
    X(conv2d_p, "conv2d(padding 1)", wf_conv2d(x, y, z, &conv_p1), gen_conv, DT_FLOAT, 3, 4)                      \
    X(conv2d_g, "conv2d(groups 2, stride 2, padding 1)", wf_conv2d(x, y, z, &conv_g2), gen_conv_groups, DT_FLOAT, 3, 4) \
    X(conv2d_gd, "conv2d(groups 2, dilation, padding)", wf_conv2d(x, y, NULL, &conv_g2d), gen_conv_groups, DT_FLOAT, \
      2, 4)                                                                                                      \
    X(conv2d_1x1, "conv2d(1x1)", wf_conv2d(x, y, z, NULL), gen_conv_1x1, DT_FLOAT, 3, 4)                          \
    X(conv2d_1x1s, "conv2d(1x1, stride, padding)", wf_conv2d(x, y, z, &conv_1x1s), gen_conv_1x1, DT_FLOAT, 3, 4) \
    X(max_pool2d, "max_pool2d(3, stride 2, pad 1)", wf_max_pool2d(x, &pool_k3), gen_pool, DT_FLOAT, 1, 1)        \
    X(max_pool2d_2, "max_pool2d(2)", wf_max_pool2d(x, &pool_k2), gen_pool, DT_FLOAT, 1, 1)                       \
    X(max_pool2d_d, "max_pool2d(dilation, ceil)", wf_max_pool2d(x, &pool_dil), gen_pool, DT_FLOAT, 1, 1)         \
    X(avg_pool2d, "avg_pool2d(3, stride 2, pad 1)", wf_avg_pool2d(x, &pool_k3), gen_pool, DT_FLOAT, 1, 1)        \
    X(avg_pool2d_np, "avg_pool2d(no pad count)", wf_avg_pool2d(x, &pool_nopad), gen_pool, DT_FLOAT, 1, 1)        \
    X(adaptive_avg, "adaptive_avg_pool2d(3x4)", wf_adaptive_avg_pool2d(x, 3, 4), gen_pool, DT_FLOAT, 1, 1)       \
    X(adaptive_avg_eq, "adaptive_avg_pool2d(1x1)", wf_adaptive_avg_pool2d(x, 1, 1), gen_pool, DT_FLOAT, 1, 1)    \
    /* nn functional */                                                                                          \
    X(layer_norm, "layer_norm", wf_layer_norm(x, (int64_t[]){ lastdim(x) }, 1, y, z, 1e-5), gen_norm, DT_FLOAT, 3, 8) \
    X(layer_norm_na, "layer_norm(no affine)", wf_layer_norm(x, (int64_t[]){ lastdim(x) }, 1, NULL, NULL, 1e-5),  \
      gen_norm, DT_FLOAT, 1, 8)                                                                                  \
    X(rms_norm, "rms_norm", wf_rms_norm(x, (int64_t[]){ lastdim(x) }, 1, y, 1e-6), gen_norm, DT_FLOAT, 2, 8)     \
    X(group_norm, "group_norm(2 groups)", wf_group_norm(x, 2, y, z, 1e-5), gen_group_norm, DT_FLOAT, 3, 8)       \
    X(batch_norm, "batch_norm(training)", wf_batch_norm(x, NULL, NULL, y, z, true, 0.1, 1e-5), gen_group_norm,   \
      DT_FLOAT, 3, 8)                                                                                            \
    X(sdpa, "scaled_dot_product_attention", wf_scaled_dot_product_attention(x, y, z, NULL, 0.0, false),         \
      gen_attn, DT_FLOAT, 3, 8)                                                                                  \
    X(sdpa_causal, "scaled_dot_product_attention(causal)",                                                      \
      wf_scaled_dot_product_attention(x, y, z, NULL, 0.0, true), gen_attn, DT_FLOAT, 3, 8)                       \
    /* losses */                                                                                                 \
    X(cross_entropy, "cross_entropy(mean)", xent(x, y, MSE, 0), gen_xent, DT_FLOAT, 1, 2)                        \
    X(cross_entropy_sum, "cross_entropy(sum)", xent(x, y, SUM, 0), gen_xent, DT_FLOAT, 1, 2)                     \
    X(cross_entropy_none, "cross_entropy(none)", xent(x, y, NONE, 0), gen_xent, DT_FLOAT, 1, 2)                  \
    X(cross_entropy_ls, "cross_entropy(label_smoothing)", xent(x, y, MSE, 0.1), gen_xent, DT_FLOAT, 1, 2)        \
    X(cross_entropy_w, "cross_entropy(weight)", xent_w(x, y), gen_xent, DT_FLOAT, 1, 2)                          \
    X(nll_loss, "nll_loss", nll(x, y), gen_xent, DT_FLOAT, 1, 2)                                                 \
    X(mse_loss, "mse_loss", wf_mse_loss(x, y, MSE), gen_loss, DT_FLOAT, 2, 2)                                    \
    X(l1_loss, "l1_loss(sum)", wf_l1_loss(x, y, SUM), gen_loss, DT_FLOAT, 2, 2)                                  \
    X(smooth_l1, "smooth_l1_loss(none)", wf_smooth_l1_loss(x, y, NONE, 1.0), gen_loss, DT_FLOAT, 2, 2)           \
    X(bce_logits, "binary_cross_entropy_with_logits", bce(x, y), gen_loss_prob, DT_FLOAT, 2, 2)                  \
    X(kl_div, "kl_div(mean)", wf_kl_div(wf_log_softmax(x, -1), y, MSE, false), gen_loss_prob, DT_FLOAT, 2, 2)      \
    /* batchmean: a sum of 70K values overflows half precision, in PyTorch too */                                \
    X(kl_div_bm, "kl_div(batchmean)", wf_kl_div(wf_log_softmax(x, -1), y, WF_REDUCTION_BATCHMEAN, false),        \
      gen_loss_prob, DTM(WF_F32) | DTM(WF_F64), 2, 2)

static wf_tensor *inplace_s2(int (*f)(wf_tensor *, double, double), wf_tensor *a, double p, double q) {
    wf_tensor *c = wf_clone(a);
    return c && !f(c, p, q) ? c : NULL;
}
/* the creation functions make tensors on the default device: make them on x's */
static wf_tensor *randint_on(wf_tensor *x) {
    wf_device d = wf_get_default_device();
    wf_set_default_device(wf_tensor_device(x));
    wf_tensor *t = wf_randint(-3, 9, wf_shape(x), wf_ndim(x), WF_I64);
    wf_set_default_device(d);
    return t;
}
static wf_tensor *bernoulli_on(wf_tensor *x) {
    wf_device d = wf_get_default_device();
    wf_set_default_device(wf_tensor_device(x));
    wf_tensor *t = wf_bernoulli_p(wf_shape(x), wf_ndim(x), 0.3, wf_tensor_dtype(x));
    wf_set_default_device(d);
    return t;
}

/* ---------------------------------------------------------------- kernel paths (from the parity program)
 *
 * Rows for the kernel paths that the hand-written CUDA parity program (now removed) checked
 * and the rows above do not reach: reductions over the innermost and outermost dims and the split plans of
 * long reductions, casts to every dtype, binary ops on mixed dtypes (CUDA's vector path loads
 * two dtypes), layer norm with only the weight and bias differentiated, attention read in place
 * from a packed qkv projection. Kept in one block, apart from the table above. */

/* long reductions: CUDA splits R over blocks when few outputs leave the GPU idle (row layout:
 * 16-byte loads for aligned f32 rows; column layout: few outputs over a tall matrix) */
static int gen_reduce_split(op_sample *s, int max) {
    int k = 0;
    S("3M", 0, R(WF_SHAPE(3000000)));
    S("3M-1 misaligned", 0, wf_narrow(R(WF_SHAPE(3000000)), 0, 1, 2999999));
    S("4x400000", 0, R(WF_SHAPE(4, 400000)));
    S("5x400003", 0, R(WF_SHAPE(5, 400003)));
    S("200000x3", 0, R(WF_SHAPE(200000, 3)));
    /* dim 0 of these: CUDA's column tiles, over several chunks and with a partial tile */
    S("2048x96", 0, R(WF_SHAPE(2048, 96)));
    S("700x1000", 0, R(WF_SHAPE(700, 1000)));
    S("8x300x129", S_BW, R(WF_SHAPE(8, 300, 129)));
    return k;
}
/* layer norm's samples as (weight, bias, x): only the first two are differentiated */
static int gen_norm_wb(op_sample *s, int max) {
    int k = gen_norm(s, max);
    for (int i = 0; i < k; i++) {
        wf_tensor *x = s[i].in[0];
        s[i].in[0] = s[i].in[1];
        s[i].in[1] = s[i].in[2];
        s[i].in[2] = x;
    }
    return k;
}
/* x and r [.., D], weight [D], bias [D]: the layer norm's width classes (CUDA's fast kernel
 * and its general one, several rows a warp of WEFT_LN_OLD's backward past 2112 rows; the new
 * one's: gen_add_norm_rows) */
static int gen_add_norm(op_sample *s, int max) {
    int k = 0;
    S("3x8", S_GC, R(WF_SHAPE(3, 8)), R(WF_SHAPE(3, 8)), R(WF_SHAPE(8)), R(WF_SHAPE(8)));
    S("transposed", S_GC, T2(R(WF_SHAPE(8, 3))), T2(R(WF_SHAPE(8, 3))), R(WF_SHAPE(8)), R(WF_SHAPE(8)));
    S("2x5x3", S_GC, R(WF_SHAPE(2, 5, 3)), R(WF_SHAPE(2, 5, 3)), R(WF_SHAPE(3)), R(WF_SHAPE(3)));
    S("77x132", S_BW, wf_mul_scalar(R(WF_SHAPE(77, 132)), 2.0), R(WF_SHAPE(77, 132)), R(WF_SHAPE(132)), R(WF_SHAPE(132)));
    S("48x384", S_BW, R(WF_SHAPE(48, 384)), R(WF_SHAPE(48, 384)), R(WF_SHAPE(384)), R(WF_SHAPE(384)));
    S("64x768", S_BW, R(WF_SHAPE(64, 768)), R(WF_SHAPE(64, 768)), R(WF_SHAPE(768)), R(WF_SHAPE(768)));
    S("37x1500", S_BW, R(WF_SHAPE(37, 1500)), R(WF_SHAPE(37, 1500)), R(WF_SHAPE(1500)), R(WF_SHAPE(1500)));
    S("2400x64 (rows per warp)", S_BW, R(WF_SHAPE(2400, 64)), R(WF_SHAPE(2400, 64)), R(WF_SHAPE(64)), R(WF_SHAPE(64)));
    return k;
}
/* the two generators above and one sample past CUDA's resident warps, for the rows with the
 * GPT's dtypes only (a sample this size costs the CPU ~3 s a row): the new layer norm backward
 * keeps 2 blocks of 8 warps an SM at widths 384 and 768, so on 132 SMs 2500 rows give most
 * warps 2 rows and the last ones 1 (and WEFT_LN_OLD's kernel, 2112 warps, likewise) */
static int gen_norm_rows(op_sample *s, int max) {
    int k = gen_norm(s, max);
    S("2500x384 (rows per warp, remainder)", S_BW, R(WF_SHAPE(2500, 384)), R(WF_SHAPE(384)), R(WF_SHAPE(384)));
    return k;
}
static int gen_add_norm_rows(op_sample *s, int max) {
    int k = gen_add_norm(s, max);
    S("2500x768 (rows per warp, remainder)", S_BW, R(WF_SHAPE(2500, 768)), R(WF_SHAPE(2500, 768)), R(WF_SHAPE(768)),
      R(WF_SHAPE(768)));
    return k;
}
/* the same samples with the branch's bias r_bias [D] as input 2 (x, r, r_bias, weight, bias):
 * wf_add_bias_layer_norm's */
static int with_rbias(op_sample *s, int k) {
    for (int i = 0; i < k; i++) {
        int64_t D = lastdim(s[i].in[0]);
        for (int j = s[i].n; j > 2; j--) s[i].in[j] = s[i].in[j - 1];
        s[i].in[2] = R(WF_SHAPE(D));
        s[i].n++;
    }
    return k;
}
static int gen_add_bias_norm(op_sample *s, int max) { return with_rbias(s, gen_add_norm(s, max)); }
static int gen_add_bias_norm_rows(op_sample *s, int max) { return with_rbias(s, gen_add_norm_rows(s, max)); }
wf_dtype op_dtype_under_test = WF_F64;

/* y + s / 2: both outputs of wf_add_layer_norm reach the loss (s's own gradient joins the
 * norm's in the backward kernel); both false: y alone.
 * stream: the dtype x has in the run under test (the reference gets f64 copies). The op keeps
 * s = x + r in x's dtype and normalizes that s, as the composed add then layer norm do, so the
 * f64 reference rounds its s to the stream's dtype and normalizes that: a short row of nearly
 * equal values turns s's rounding into a large change of y (bf16, width 3: 4.6x the row's
 * tolerance against the exact sum on some seeds, on the CPU as on CUDA). */
/* out: the output's dtype (WF_DTYPE_DEFAULT: the plain op's); the f64 reference keeps f64 */
static wf_tensor *add_ln_out(wf_tensor *x, wf_tensor *r, wf_tensor *w, wf_tensor *b, bool both, wf_dtype stream,
                             wf_dtype out) {
    int64_t D = x ? lastdim(x) : 1;
    if (op_dtype_under_test == WF_F64) stream = WF_F64;   /* f64 runs and gradcheck: nothing rounds */
    if (x && r && wf_tensor_dtype(x) == WF_F64 && stream != WF_F64) {
        wf_tensor *s = wf_to_dtype(wf_to_dtype(wf_add(x, r), stream), WF_F64);
        wf_tensor *y = wf_layer_norm(s, &D, 1, w, b, 1e-5);
        return both && y ? wf_add(y, wf_mul_scalar(s, 0.5)) : y;
    }
    if (x && wf_tensor_dtype(x) == WF_F64) out = WF_DTYPE_DEFAULT;
    wf_tensor *s = NULL, *y = wf_add_layer_norm_out_dtype(x, r, &D, 1, w, b, 1e-5, both ? &s : NULL, out);
    /* a lower y: the sum in y's dtype, so the result is checked at y's precision */
    if (both && y && out) s = wf_to_dtype(s, out);
    return both && y ? wf_add(y, wf_mul_scalar(s, 0.5)) : y;
}
/* add_ln_out's with the branch's bias rb [D] (wf_add_bias_layer_norm): s = x + (r + rb), r + rb
 * formed in f32 by the kernels, exactly in the f64 reference, which rounds only s. The minimal
 * preset composes it: there r + rb of r's dtype (branch_dt, WF_DTYPE_DEFAULT: another) rounds to
 * it first, and the reference does too. */
static wf_tensor *add_bln_out(wf_tensor *x, wf_tensor *r, wf_tensor *rb, wf_tensor *w, wf_tensor *b, bool both,
                              wf_dtype stream, wf_dtype out, wf_dtype branch_dt) {
    int64_t D = x ? lastdim(x) : 1;
    if (op_dtype_under_test == WF_F64) stream = WF_F64;
    if (x && r && rb && wf_tensor_dtype(x) == WF_F64 && stream != WF_F64) {
        wf_tensor *rr = wf_add(r, rb);
#ifdef WEFT_MINIMAL
        if (branch_dt != WF_DTYPE_DEFAULT && rr) rr = wf_to_dtype(wf_to_dtype(rr, branch_dt), WF_F64);
#else
        (void)branch_dt;
#endif
        wf_tensor *s = wf_to_dtype(wf_to_dtype(wf_add(x, rr), stream), WF_F64);
        wf_tensor *y = wf_layer_norm(s, &D, 1, w, b, 1e-5);
        return both && y ? wf_add(y, wf_mul_scalar(s, 0.5)) : y;
    }
    if (x && wf_tensor_dtype(x) == WF_F64) out = WF_DTYPE_DEFAULT;
    wf_tensor *s = NULL, *y = wf_add_bias_layer_norm(x, r, rb, &D, 1, w, b, 1e-5, both ? &s : NULL, out);
    if (both && y && out) s = wf_to_dtype(s, out);
    return both && y ? wf_add(y, wf_mul_scalar(s, 0.5)) : y;
}
static wf_tensor *add_ln_as(wf_tensor *x, wf_tensor *r, wf_tensor *w, wf_tensor *b, bool both, wf_dtype stream) {
    return add_ln_out(x, r, w, b, both, stream, WF_DTYPE_DEFAULT);
}
/* layer norm with its output in out (the f64 reference and gradcheck keep f64) */
static wf_tensor *ln_out(wf_tensor *x, wf_tensor *w, wf_tensor *b, wf_dtype out) {
    int64_t D = x ? lastdim(x) : 1;
    return wf_layer_norm_out_dtype(x, &D, 1, w, b, 1e-5, x && wf_tensor_dtype(x) == WF_F64 ? WF_F64 : out);
}
static wf_tensor *add_ln(wf_tensor *x, wf_tensor *r, wf_tensor *w, wf_tensor *b, bool both) {
    return add_ln_as(x, r, w, b, both, op_dtype_under_test);
}

/* a packed projection [B, T, 3E] (a view of wider rows: strided), H heads */
static int gen_qkv2(op_sample *s, int max) {
    int k = 0;
    S("T5 D4", S_GC, R(WF_SHAPE(1, 5, 24)));
    S("T77 D64", S_BW, R(WF_SHAPE(2, 77, 384)));
    S("T65 D36", S_BW, R(WF_SHAPE(1, 65, 216)));
    S("T130 D96 strided", S_BW, wf_narrow(wf_mul_scalar(R(WF_SHAPE(2, 130, 584)), 0.6), 2, 0, 576));
    return k;
}
static int gen_qkv1(op_sample *s, int max) {
    int k = 0;
    S("T4 D6 strided", S_GC, wf_narrow(R(WF_SHAPE(1, 4, 20)), 2, 0, 18));
    S("T100 D128 strided", S_BW, wf_narrow(wf_mul_scalar(R(WF_SHAPE(1, 100, 400)), 0.6), 2, 0, 384));
    S("T64 D96", S_BW, wf_mul_scalar(R(WF_SHAPE(2, 64, 288)), 0.6));
    return k;
}

/* autograd/fn_fused.c (not in a public header): attention read in place from a packed
 * projection; *handled is false where the device has no such kernel (the CPU, f32, f64) */
wf_tensor *wf__sdpa_qkv_fused(wf_tensor *qkv, int64_t H, bool causal, bool *handled);

/* what nn's CausalSelfAttention computes: the fused kernel where there is one, else q, k, v
 * split off the projection into [B, H, T, D] and the composed attention */
static wf_tensor *qkv_attention(wf_tensor *qkv, int64_t H, bool causal) {
    bool handled = false;
    wf_tensor *o = wf__sdpa_qkv_fused(qkv, H, causal, &handled);
    if (handled || !qkv) return o;
    int64_t B = wf_size(qkv, 0), T = wf_size(qkv, 1), E = wf_size(qkv, 2) / 3;
    wf_tensor *p[3];
    if (wf_split(qkv, E, 2, p, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) p[i] = wf_transpose(wf_reshape(p[i], WF_SHAPE(B, T, H, E / H)), 1, 2);
    return wf_scaled_dot_product_attention(p[0], p[1], p[2], NULL, 0.0, causal);
}
/* y in float32, or float64 where y is (gradcheck's finite differences need f64 throughout):
 * half inputs meet a float32 operand */
static wf_tensor *f32ish(wf_tensor *y) { return y && wf_tensor_dtype(y) == WF_F64 ? y : wf_to_dtype(y, WF_F32); }
#define DM1 ((int[]){ -1 })
#define D0 ((int[]){ 0 })
#define D2 ((int[]){ 2 })
#define DT_HALF_F32 (DTM(WF_F32) | DTM(WF_BF16))

/* X(id, "name", call, generator, dtypes, ngrad, tolerance factor), as OPS */
#define OPS_PATHS(X)                                                                                             \
    /* reductions over the innermost dim (row layout) and the outermost (column layout) */                       \
    X(sum2, "sum(dim 2)", wf_sum(x, D2, 1, false), gen_reduce, DT_ALL, 1, 1)                                     \
    X(sum0, "sum(dim 0)", wf_sum(x, D0, 1, false), gen_reduce, DT_ALL, 1, 1)                                     \
    X(amin2, "amin(dim 2)", wf_amin(x, D2, 1, false), gen_reduce, DT_ALL, 1, 1)                                  \
    X(var2, "var(dim 2)", wf_var(x, D2, 1, 1, false), gen_reduce, DT_FLOAT, 1, 2)                                \
    X(logsumexp2, "logsumexp(dim 2)", wf_logsumexp(x, D2, 1, false), gen_reduce, DT_FLOAT, 1, 1)                 \
    X(argmax2, "argmax(dim 2)", wf_argmax(x, 2, false), gen_reduce, DT_ALL, 0, 0)                                \
    /* long reductions (split plans) */                                                                          \
    X(sum_long, "sum(dim -1, long)", wf_sum(x, DM1, 1, false), gen_reduce_split, DT_HALF_F32, 1, 1)              \
    /* the CPU's column sums go through f64 (tensor/cpu/reduce.c): 200000 rows within f32's usual tolerance */  \
    X(sum0_long, "sum(dim 0, long)", wf_sum(x, D0, 1, false), gen_reduce_split, DT_HALF_F32, 1, 1)               \
    X(norm_long, "norm(2, long)", wf_norm(x, 2, NULL, 0, false), gen_reduce_split, DT_HALF_F32, 1, 1)            \
    X(amax_long, "amax(long)", wf_amax(x, NULL, 0, false), gen_reduce_split, DT_HALF_F32, 1, 1)                  \
    /* casts to the dtypes the rows above do not */                                                              \
    X(to_i64, "to_dtype(int64)", wf_to_dtype(x, WF_I64), gen_unary, DT_ALL, 0, 0)                                \
    X(to_u8, "to_dtype(uint8)", wf_to_dtype(x, WF_U8), gen_unary, DT_ALL, 0, 0)                                  \
    X(to_bool, "to_dtype(bool)", wf_to_dtype(x, WF_BOOL), gen_unary, DT_ALL, 0, 0)                               \
    /* mixed dtypes (the result is float32 or wider) */                                                          \
    X(add_mixed, "add(x, float32 y)", wf_add(x, f32ish(y)), gen_binary, DT_FLOAT, 2, 1)                          \
    X(sub_mixed, "sub(float32 x, y)", wf_sub(f32ish(x), y), gen_binary, DT_FLOAT, 2, 1)                          \
    X(mul_mixed, "mul(x, float32 y)", wf_mul(x, f32ish(y)), gen_binary, DT_FLOAT, 2, 1)                          \
    X(div_mixed, "div(float32 x, y)", wf_div(f32ish(x), y), gen_binary_posb, DT_FLOAT, 2, 1)                     \
    X(maximum_mixed, "maximum(x, float32 y)", wf_maximum(x, f32ish(y)), gen_binary, DT_FLOAT, 2, 1)              \
    /* layer norm without the input's gradient (inputs: weight, bias, x) */                                      \
    X(layer_norm_wb, "layer_norm(weight and bias gradients only)",                                               \
      wf_layer_norm(z, (int64_t[]){ lastdim(z) }, 1, x, y, 1e-5), gen_norm_wb, DT_FLOAT, 2, 8)                   \
    /* the residual add fused into the layer norm (inputs x, r, weight, bias); the mixed row is a   \
     * GPT's f32 residual stream with a branch of the dtype under test */                                       \
    X(add_layer_norm, "add_layer_norm", add_ln(x, y, z, in[3], true), gen_add_norm, DT_FLOAT, 4, 8)              \
    X(add_layer_norm_y, "add_layer_norm(norm only, no bias)", add_ln(x, y, z, NULL, false), gen_add_norm,        \
      DT_FLOAT, 3, 8)                                                                                            \
    X(add_layer_norm_mixed, "add_layer_norm(float32 x, weight, bias)",                                           \
      add_ln_as(f32ish(x), y, f32ish(z), f32ish(in[3]), true, WF_F32), gen_add_norm, DT_FLOAT, 4, 8)                        \
    /* the norm's output in a dtype of its own, stored by the kernels (the fast CUDA one at the    \
     * widths % 4 up to 1024, 768 the GPT's; the general one at 3 and 1500; the CPU's): an f32 x    \
     * normalized into the dtype under test (autocast's LayerNorm with autocast_output), a half x   \
     * into f32, and the GPT's add: f32 stream, branch and output in the dtype under test */       \
    X(layer_norm_out, "layer_norm_out_dtype(float32 x, weight, bias)",                                          \
      ln_out(f32ish(x), f32ish(y), f32ish(z), op_dtype_under_test), gen_norm_rows, DT_FLOAT, 3, 8)               \
    X(layer_norm_out_na, "layer_norm_out_dtype(float32 x, no affine)", ln_out(f32ish(x), NULL, NULL,            \
      op_dtype_under_test), gen_norm, DT_FLOAT, 1, 8)                                                            \
    X(layer_norm_out_f32, "layer_norm_out_dtype(float32 output)", ln_out(x, y, z, WF_F32), gen_norm, DT_FLOAT,    \
      3, 8)                                                                                                      \
    X(add_layer_norm_out, "add_layer_norm_out_dtype(float32 x, weight, bias)",                                  \
      add_ln_out(f32ish(x), y, f32ish(z), f32ish(in[3]), true, WF_F32, op_dtype_under_test), gen_add_norm_rows,  \
      DT_FLOAT, 4, 8)                                                                                            \
    X(add_layer_norm_out_y, "add_layer_norm_out_dtype(float32 x, norm only, no bias)",                          \
      add_ln_out(f32ish(x), y, f32ish(z), NULL, false, WF_F32, op_dtype_under_test), gen_add_norm, DT_FLOAT, 3, 8) \
    /* the branch's bias in the add (wf_add_bias_layer_norm; inputs x, r, r_bias, weight, bias):    \
     * one dtype; the GPT's (f32 stream, weight, bias and r_bias, the branch and the output in the  \
     * dtype under test); r_bias of r's dtype beside an f32 stream, norm only */                    \
    X(add_bias_layer_norm, "add_bias_layer_norm", add_bln_out(x, y, z, in[3], in[4], true, op_dtype_under_test,     \
      WF_DTYPE_DEFAULT, op_dtype_under_test), gen_add_bias_norm, DT_FLOAT, 5, 8)                                                      \
    X(add_bias_layer_norm_out, "add_bias_layer_norm(float32 x, r_bias, weight, bias; output of r's dtype)",      \
      add_bln_out(f32ish(x), y, f32ish(z), f32ish(in[3]), f32ish(in[4]), true, WF_F32, op_dtype_under_test,      \
                  WF_DTYPE_DEFAULT),                                                                             \
      gen_add_bias_norm_rows, DT_FLOAT, 5, 8)                                                                    \
    X(add_bias_layer_norm_rb, "add_bias_layer_norm(float32 x, r_bias of r's dtype, norm only)",                 \
      add_bln_out(f32ish(x), y, z, NULL, NULL, false, WF_F32, WF_DTYPE_DEFAULT, op_dtype_under_test),           \
      gen_add_bias_norm, DT_FLOAT, 3, 8)                                                                         \
    /* attention on a packed qkv projection [B, T, 3E] */                                                        \
    X(qkv_attention2, "qkv attention(2 heads, causal)", qkv_attention(x, 2, true), gen_qkv2, DT_FLOAT, 1, 8)     \
    X(qkv_attention1, "qkv attention(1 head)", qkv_attention(x, 1, false), gen_qkv1, DT_FLOAT, 1, 8)

#define X_FN(id, name, call, gen, dts, ng, tol)                                           \
    static wf_tensor *op_##id(wf_tensor *const *in, int n, void *ud) {                    \
        wf_tensor *x = in[0], *y = n > 1 ? in[1] : NULL, *z = n > 2 ? in[2] : NULL;       \
        (void)x; (void)y; (void)z; (void)ud;                                              \
        return call;                                                                      \
    }
OPS(X_FN)
OPS_PATHS(X_FN)

#define X_ROW(id, name, call, gen, dts, ng, tol) { name, op_##id, gen, dts, ng, tol },
const op_row op_rows[] = { OPS(X_ROW) OPS_PATHS(X_ROW) };
const int op_nrows = (int)(sizeof op_rows / sizeof op_rows[0]);
