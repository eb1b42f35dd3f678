/* tensor/cpu/layer_norm.c: the residual add fused into the layer norm (add_layer_norm_fwd/bwd
 * in tensor/tensor_impl.h) on the CPU, and the plain layer norm (layer_norm_fwd/bwd: no r, s is
 * x) where its output's dtype differs from x's (the front-end composes the same-dtype norm on
 * the CPU: tensor/ops_fused.c). y and gy have their own dtype (an f32 x, a bf16 y under
 * autocast: nn.h's wf_layer_norm_out_dtype). One row's math serves both directions, in double for
 * every floating dtype: the row is short, and double keeps one code path for f64 and the
 * rounded dtypes without a copy per dtype (the minimal library's size). s is stored first and
 * the statistics are taken from the stored s, so they describe exactly the s that the
 * backward is handed. Rows run on the thread pool in chunks fixed by the shape (results do not
 * depend on the thread count); the weight/bias gradients are summed over rows in order. The
 * branch's bias r_bias (the Linear's that made r, moved here: nn.h's wf_add_bias_layer_norm) is
 * added to r's element before the sum, s = x + (r + r_bias) in double, and its gradient, the
 * column sums of g, is summed over rows in order with them, g formed again row by row (the rows'
 * own pass runs on the pool and writes g rounded to gx / gr's dtypes). */
#include "cpu_kernels.h"

#include <math.h>

typedef struct {
    char *y, *s, *gx, *gr;
    const char *x, *r, *rb, *w, *b, *gy, *gs;
    char *mean, *rstd;
    wf_dtype xdt, rdt, rbdt, wdt, gxdt, grdt, mdt, ydt;   /* s, gs: xdt; gy: ydt; b: wdt; rstd: mdt */
    int64_t D;
    double eps;
} aln_ctx;

static double at(const char *p, int64_t i, wf_dtype dt) { return wf__load(p + i * (int64_t)wf_dtype_size(dt), dt); }
static void put(char *p, int64_t i, wf_dtype dt, double v) { wf__store(p + i * (int64_t)wf_dtype_size(dt), dt, v); }
static double affine(const char *p, int64_t j, wf_dtype dt, double none) { return p ? at(p, j, dt) : none; }

static void fwd_rows(void *vc, int64_t lo, int64_t hi) {
    const aln_ctx *c = vc;
    const int64_t D = c->D;
    for (int64_t i = lo; i < hi; i++) {
        int64_t o = i * D;
        double sum = 0, var = 0;
        for (int64_t j = 0; j < D; j++) {
            if (c->r)
                put(c->s, o + j, c->xdt, at(c->x, o + j, c->xdt) + (at(c->r, o + j, c->rdt) + affine(c->rb, j, c->rbdt, 0)));
            sum += at(c->s, o + j, c->xdt);
        }
        double mean = sum / (double)D;
        for (int64_t j = 0; j < D; j++) {
            double d = at(c->s, o + j, c->xdt) - mean;
            var += d * d;
        }
        double rstd = 1.0 / sqrt(var / (double)D + c->eps);
        for (int64_t j = 0; j < D; j++) {
            double h = (at(c->s, o + j, c->xdt) - mean) * rstd;
            put(c->y, o + j, c->ydt, h * affine(c->w, j, c->wdt, 1) + affine(c->b, j, c->wdt, 0));
        }
        put(c->mean, i, c->mdt, mean);
        put(c->rstd, i, c->mdt, rstd);
    }
}

/* ---------------------------------------------------------------- all-f32 rows
 * The same double math in the same order as the generic rows above (so the same bits), with
 * f32 pointers instead of a wf__load / wf__store call per element: the generic path was ~20 %
 * of a small GPT's training step on the CPU. Taken when every tensor the row touches is f32. */

typedef struct { double mean, rstd, s1, s2; } row_sums;

#define F32P(p) ((const float *)(const void *)(p))

static bool fwd_f32(const aln_ctx *c) {
    return c->xdt == WF_F32 && c->ydt == WF_F32 && c->mdt == WF_F32 && (!c->r || c->rdt == WF_F32) &&
           (!c->rb || c->rbdt == WF_F32) && (!(c->w || c->b) || c->wdt == WF_F32);
}

static void fwd_rows_f32(void *vc, int64_t lo, int64_t hi) {
    const aln_ctx *c = vc;
    const int64_t D = c->D;
    const float *w = F32P(c->w), *b = F32P(c->b), *rb = F32P(c->rb);
    for (int64_t i = lo; i < hi; i++) {
        const int64_t o = i * D;
        float *s = (float *)(void *)c->s + o, *y = (float *)(void *)c->y + o;
        const float *x = F32P(c->x) + o, *r = c->r ? F32P(c->r) + o : NULL;
        if (r)
            for (int64_t j = 0; j < D; j++) s[j] = (float)((double)x[j] + ((double)r[j] + (rb ? (double)rb[j] : 0)));
        double sum = 0, var = 0;
        for (int64_t j = 0; j < D; j++) sum += s[j];
        double mean = sum / (double)D;
        for (int64_t j = 0; j < D; j++) { double d = s[j] - mean; var += d * d; }
        double rstd = 1.0 / sqrt(var / (double)D + c->eps);
        for (int64_t j = 0; j < D; j++)
            y[j] = (float)(((double)s[j] - mean) * rstd * (w ? (double)w[j] : 1) + (b ? (double)b[j] : 0));
        ((float *)(void *)c->mean)[i] = (float)mean;
        ((float *)(void *)c->rstd)[i] = (float)rstd;
    }
}

static bool bwd_f32(const aln_ctx *c) {
    return c->xdt == WF_F32 && c->ydt == WF_F32 && c->mdt == WF_F32 && (!c->w || c->wdt == WF_F32) &&
           (!c->gx || c->gxdt == WF_F32) && (!c->gr || c->grdt == WF_F32);
}

/* bwd_row's two means of row i, f32 */
static row_sums bwd_row_f32(const aln_ctx *c, int64_t i) {
    const int64_t D = c->D;
    const float *gy = F32P(c->gy) + i * D, *s = F32P(c->s) + i * D, *w = F32P(c->w);
    row_sums r = { F32P(c->mean)[i], F32P(c->rstd)[i], 0, 0 };
    for (int64_t j = 0; j < D; j++) {
        double wg = (double)gy[j] * (w ? (double)w[j] : 1);
        r.s1 += wg;
        r.s2 += wg * ((double)s[j] - r.mean) * r.rstd;
    }
    r.s1 /= (double)D;
    r.s2 /= (double)D;
    return r;
}

/* bwd_elem of row i's columns j0 .. j0 + n - 1 into g (double: gx, gr and drb's sums take it) */
#define PIECE 256
static void bwd_elems_f32(const aln_ctx *c, const row_sums *r, int64_t i, int64_t j0, int64_t n, double *restrict g) {
    const int64_t o = i * c->D + j0;
    const float *gy = F32P(c->gy) + o, *s = F32P(c->s) + o, *w = c->w ? F32P(c->w) + j0 : NULL;
    const float *gs = c->gs ? F32P(c->gs) + o : NULL;
    for (int64_t j = 0; j < n; j++) {
        double h = ((double)s[j] - r->mean) * r->rstd;
        g[j] = r->rstd * ((double)gy[j] * (w ? (double)w[j] : 1) - r->s1 - h * r->s2) + (gs ? (double)gs[j] : 0);
    }
}

static void bwd_rows_f32(void *vc, int64_t lo, int64_t hi) {
    const aln_ctx *c = vc;
    const int64_t D = c->D;
    double g[PIECE];   /* a row in pieces: no allocation per chunk */
    for (int64_t i = lo; i < hi; i++) {
        row_sums r = bwd_row_f32(c, i);
        for (int64_t j0 = 0; j0 < D; j0 += PIECE) {
            int64_t n = D - j0 < PIECE ? D - j0 : PIECE;
            bwd_elems_f32(c, &r, i, j0, n, g);
            float *gx = c->gx ? (float *)(void *)c->gx + i * D + j0 : NULL;
            float *gr = c->gr ? (float *)(void *)c->gr + i * D + j0 : NULL;
            if (gx) for (int64_t j = 0; j < n; j++) gx[j] = (float)g[j];
            if (gr) for (int64_t j = 0; j < n; j++) gr[j] = (float)g[j];
        }
    }
}

/* norm_bwd's sums over rows of dw, db (and drb), rows in order as there */
static void bwd_sums_f32(const aln_ctx *c, int64_t rows, bool grb, double *acc) {
    const int64_t D = c->D;
    double g[PIECE];
    for (int64_t i = 0; i < rows; i++) {
        const float *gy = F32P(c->gy) + i * D, *s = F32P(c->s) + i * D;
        double mean = F32P(c->mean)[i], rstd = F32P(c->rstd)[i];
        for (int64_t j = 0; j < D; j++) {
            double gj = gy[j];
            acc[j] += gj * ((double)s[j] - mean) * rstd;
            acc[D + j] += gj;
        }
        if (!grb) continue;
        row_sums r = bwd_row_f32(c, i);
        for (int64_t j0 = 0; j0 < D; j0 += PIECE) {
            int64_t n = D - j0 < PIECE ? D - j0 : PIECE;
            bwd_elems_f32(c, &r, i, j0, n, g);
            for (int64_t j = 0; j < n; j++) acc[2 * D + j0 + j] += g[j];
        }
    }
}

/* g = gs + rstd * (gy*w - mean(gy*w) - xhat * mean(gy*w * xhat)), xhat from the saved s: row
 * i's two means, then its element j */
static row_sums bwd_row(const aln_ctx *c, int64_t i) {
    const int64_t D = c->D, o = i * D;
    row_sums r = { at(c->mean, i, c->mdt), at(c->rstd, i, c->mdt), 0, 0 };
    for (int64_t j = 0; j < D; j++) {
        double wg = at(c->gy, o + j, c->ydt) * affine(c->w, j, c->wdt, 1);
        r.s1 += wg;
        r.s2 += wg * (at(c->s, o + j, c->xdt) - r.mean) * r.rstd;
    }
    r.s1 /= (double)D;
    r.s2 /= (double)D;
    return r;
}
static double bwd_elem(const aln_ctx *c, const row_sums *r, int64_t e, int64_t j) {
    double h = (at(c->s, e, c->xdt) - r->mean) * r->rstd;
    return r->rstd * (at(c->gy, e, c->ydt) * affine(c->w, j, c->wdt, 1) - r->s1 - h * r->s2) +
           (c->gs ? at(c->gs, e, c->xdt) : 0);
}

static void bwd_rows(void *vc, int64_t lo, int64_t hi) {
    const aln_ctx *c = vc;
    const int64_t D = c->D;
    for (int64_t i = lo; i < hi; i++) {
        int64_t o = i * D;
        row_sums r = bwd_row(c, i);
        for (int64_t j = 0; j < D; j++) {
            double g = bwd_elem(c, &r, o + j, j);
            if (c->gx) put(c->gx, o + j, c->gxdt, g);
            if (c->gr) put(c->gr, o + j, c->grdt, g);
        }
    }
}

static int64_t grain(int64_t rows, int64_t D) { return rows * D < 32768 ? rows : (D >= 8192 ? 1 : 8192 / D); }

static int check_float(const char *op, wf_dtype dt) {   /* the dtypes of its ops.def mask */
    if (dt == WF_F32 || dt == WF_F64 || dt == WF_F16 || dt == WF_BF16) return 0;
    return wf__error(WF_EDTYPE, "%s: needs floating tensors, got %s", op, wf_dtype_name(dt));
}

/* r NULL: the plain layer norm, s is x (read, never written) */
static int norm_fwd(const char *op, wf_tensor *y, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                    const wf_tensor *r, const wf_tensor *rb, const wf_tensor *weight, const wf_tensor *bias, double eps) {
    int rc = check_float(op, x->dtype);
    if (rc || (r && (rc = check_float(op, r->dtype))) || (rb && (rc = check_float(op, rb->dtype))) ||
        (rc = check_float(op, y->dtype)))
        return rc;
    int64_t rows = wf__numel(mean->ndim, mean->shape), D = rows ? wf__numel(x->ndim, x->shape) / rows : 0;
    if (!rows || !D) return 0;
    aln_ctx c = { .y = wf__host_ptr(y), .s = r ? wf__host_ptr(s) : wf__host_ptr(x), .x = wf__host_ptr(x),
                  .r = r ? wf__host_ptr(r) : NULL, .rb = r && rb ? wf__host_ptr(rb) : NULL,
                  .rbdt = rb ? rb->dtype : x->dtype, .w = weight ? wf__host_ptr(weight) : NULL,
                  .b = bias ? wf__host_ptr(bias) : NULL, .mean = wf__host_ptr(mean), .rstd = wf__host_ptr(rstd),
                  .mdt = mean->dtype, .xdt = x->dtype, .rdt = r ? r->dtype : x->dtype, .ydt = y->dtype,
                  .wdt = weight ? weight->dtype : bias ? bias->dtype : x->dtype, .D = D, .eps = eps };
    return wf__parallel_for(rows, grain(rows, D), fwd_f32(&c) ? fwd_rows_f32 : fwd_rows, &c);
}

int wf__cpu_add_layer_norm_fwd(wf_tensor *y, wf_tensor *s, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x,
                               const wf_tensor *r, const wf_tensor *r_bias, const wf_tensor *weight,
                               const wf_tensor *bias, double eps) {
    return norm_fwd("add_layer_norm", y, s, mean, rstd, x, r, r_bias, weight, bias, eps);
}

int wf__cpu_layer_norm_fwd(wf_tensor *y, wf_tensor *mean, wf_tensor *rstd, const wf_tensor *x, const wf_tensor *weight,
                           const wf_tensor *bias, double eps) {
    return norm_fwd("layer_norm", y, NULL, mean, rstd, x, NULL, NULL, weight, bias, eps);
}

/* gr, grb, gs NULL and s the saved x: the plain layer norm's */
static int norm_bwd(const char *op, wf_tensor *gx, wf_tensor *gr, wf_tensor *gweight, wf_tensor *gbias, wf_tensor *grb,
                    const wf_tensor *gy, const wf_tensor *gs, const wf_tensor *s, const wf_tensor *mean,
                    const wf_tensor *rstd, const wf_tensor *weight) {
    int rc = check_float(op, s->dtype);
    if (rc || (rc = check_float(op, gy->dtype))) return rc;
    int64_t rows = wf__numel(mean->ndim, mean->shape), D = rows ? wf__numel(s->ndim, s->shape) / rows : 0;
    if (!rows || !D) return 0;
    aln_ctx c = { .gx = gx ? wf__host_ptr(gx) : NULL, .gr = gr ? wf__host_ptr(gr) : NULL, .s = wf__host_ptr(s),
                  .gy = wf__host_ptr(gy), .gs = gs ? wf__host_ptr(gs) : NULL, .w = weight ? wf__host_ptr(weight) : NULL,
                  .mean = wf__host_ptr(mean), .rstd = wf__host_ptr(rstd), .mdt = mean->dtype, .xdt = s->dtype,
                  .wdt = weight ? weight->dtype : s->dtype, .gxdt = gx ? gx->dtype : s->dtype,
                  .grdt = gr ? gr->dtype : s->dtype, .ydt = gy->dtype, .D = D };
    bool f32 = bwd_f32(&c) && (!gs || gs->dtype == WF_F32);
    if ((gx || gr) && (rc = wf__parallel_for(rows, grain(rows, D), f32 ? bwd_rows_f32 : bwd_rows, &c))) return rc;
    if (!gweight && !gbias && !grb) return 0;
    double *acc = wf__calloc((size_t)(3 * D), sizeof *acc);   /* dw, db, drb summed in double, rows in order */
    if (!acc) return wf__error(WF_ENOMEM, "%s: out of memory (%lld doubles)", op, (long long)(3 * D));
    if (f32) {
        bwd_sums_f32(&c, rows, grb != NULL, acc);
        goto store;
    }
    for (int64_t i = 0; i < rows; i++) {
        row_sums r = { 0, 0, 0, 0 };
        if (grb) r = bwd_row(&c, i);
        for (int64_t j = 0; j < D; j++) {
            double g = at(c.gy, i * D + j, c.ydt);
            acc[j] += g * (at(c.s, i * D + j, c.xdt) - at(c.mean, i, c.mdt)) * at(c.rstd, i, c.mdt);
            acc[D + j] += g;
            if (grb) acc[2 * D + j] += bwd_elem(&c, &r, i * D + j, j);
        }
    }
store:
    for (int64_t j = 0; j < D; j++) {
        if (gweight) put(wf__host_ptr(gweight), j, gweight->dtype, acc[j]);
        if (gbias) put(wf__host_ptr(gbias), j, gbias->dtype, acc[D + j]);
        if (grb) put(wf__host_ptr(grb), j, grb->dtype, acc[2 * D + j]);
    }
    wf__free(acc, (size_t)(3 * D) * sizeof *acc);
    return 0;
}

int wf__cpu_add_layer_norm_bwd(wf_tensor *gx, wf_tensor *gr, wf_tensor *gweight, wf_tensor *gbias, wf_tensor *grbias,
                               const wf_tensor *gy, const wf_tensor *gs, const wf_tensor *s, const wf_tensor *mean,
                               const wf_tensor *rstd, const wf_tensor *weight) {
    return norm_bwd("add_layer_norm_backward", gx, gr, gweight, gbias, grbias, gy, gs, s, mean, rstd, weight);
}

int wf__cpu_layer_norm_bwd(wf_tensor *gx, wf_tensor *gweight, wf_tensor *gbias, const wf_tensor *gy, const wf_tensor *x,
                           const wf_tensor *mean, const wf_tensor *rstd, const wf_tensor *weight) {
    return norm_bwd("layer_norm_backward", gx, NULL, gweight, gbias, NULL, gy, NULL, x, mean, rstd, weight);
}
