/* tensor/cpu/index.c: gather, scatter_add, index_select and index_add on the host.
 *
 * All four are one loop: walk an iteration shape S; at each position c read the index
 * k = index[c], then move one element between the "direct" operand at c and the
 * "indexed" operand at c with coordinate dim replaced by k.
 *
 *   gather        S = y.shape       direct y  <- indexed x      index strides: index's own
 *   scatter_add   S = index.shape   indexed y += direct src     index strides: index's own
 *   index_select  S = y.shape       direct y  <- indexed x      index: 1-D, broadcast
 *   index_add     S = gy.shape      indexed gx += direct gy     index: 1-D, broadcast
 *
 * index_select is gather with the 1-D index expanded (stride 0) over every dim but dim,
 * index_add is scatter_add likewise. Every operand is addressed through its own strides, so
 * any layout works. Index values are trusted (the front-end validated them); index dtype is
 * i64 or i32. Copies run in parallel; accumulations run serially (indices may repeat). */
#include "cpu_kernels.h"
#include "weft_config.h"

#define PAR_MIN_ELEMS 32768

typedef struct {
    int nd;
    int64_t shape[WF_MAX_DIMS];
    int64_t ds[WF_MAX_DIMS];   /* direct operand strides (elements) */
    int64_t xs[WF_MAX_DIMS];   /* indexed operand strides, 0 at dim */
    int64_t is[WF_MAX_DIMS];   /* index strides */
    int64_t xdim;              /* indexed operand stride at dim */
    char *dp, *xp;             /* base pointers (first element) */
    const char *ip;
    bool i64;
    wf_dtype dt;
    size_t es;
} geo;

static inline int64_t ld_idx(const char *p, bool i64) {
    return i64 ? *(const int64_t *)p : (int64_t)*(const int32_t *)p;
}

/* Fill g from the iteration shape (taken from `shape_of`), the direct operand, the indexed
 * operand and the index. idx_1d: the index is 1-D along dim (index_select/index_add). */
static void geo_init(geo *g, const wf_tensor *shape_of, const wf_tensor *direct, const wf_tensor *indexed,
                     const wf_tensor *index, int dim, bool idx_1d) {
    int nd = shape_of->ndim;
    if (nd == 0) {   /* 0-d: one element, all strides 0 */
        g->nd = 1;
        g->shape[0] = 1;
        g->ds[0] = g->xs[0] = g->is[0] = 0;
        g->xdim = 0;
    } else {
        g->nd = nd;
        for (int i = 0; i < nd; i++) {
            g->shape[i] = shape_of->shape[i];
            g->ds[i] = direct->ndim ? direct->stride[i] : 0;
            g->xs[i] = indexed->ndim ? indexed->stride[i] : 0;
            if (idx_1d) g->is[i] = (i == dim && index->ndim) ? index->stride[0] : 0;
            else g->is[i] = index->ndim ? index->stride[i] : 0;
        }
        g->xdim = indexed->ndim ? indexed->stride[dim] : 0;
        g->xs[dim] = 0;
    }
    g->dt = direct->dtype;
    g->es = wf_dtype_size(g->dt);
    g->dp = wf__host_ptr(direct);
    g->xp = wf__host_ptr(indexed);
    g->ip = wf__host_ptr(index);
    g->i64 = index->dtype == WF_I64;
}

/* Element offsets (in elements) of outer position o (all dims but the last). */
static void outer_offsets(const geo *g, int64_t o, int64_t *d, int64_t *x, int64_t *ix) {
    int64_t od = 0, ox = 0, oi = 0;
    for (int i = g->nd - 2; i >= 0; i--) {
        int64_t c = o % g->shape[i];
        o /= g->shape[i];
        od += c * g->ds[i];
        ox += c * g->xs[i];
        oi += c * g->is[i];
    }
    *d = od; *x = ox; *ix = oi;
}

/* ---------------------------------------------------------------- copies (gather, index_select) */

#define COPY_RUN(T)                                                                           \
    for (int64_t j = 0; j < n; j++) {                                                         \
        int64_t k = ld_idx(g->ip + (oi + j * isj) * isz, g->i64);                             \
        ((T *)g->dp)[od + j * dsj] = ((const T *)g->xp)[ox + j * xsj + k * g->xdim];          \
    }

static void copy_rows(void *vg, int64_t lo, int64_t hi) {
    const geo *g = vg;
    int64_t n = g->shape[g->nd - 1];
    int64_t dsj = g->ds[g->nd - 1], xsj = g->xs[g->nd - 1], isj = g->is[g->nd - 1];
    int64_t isz = g->i64 ? 8 : 4;
    for (int64_t o = lo; o < hi; o++) {
        int64_t od, ox, oi;
        outer_offsets(g, o, &od, &ox, &oi);
        switch (g->es) {
        case 8: COPY_RUN(uint64_t) break;
        case 4: COPY_RUN(uint32_t) break;
        case 2: COPY_RUN(uint16_t) break;
        default: COPY_RUN(uint8_t) break;
        }
    }
}

static void copy_loop(const geo *g) {
    int64_t n = g->shape[g->nd - 1];
    int64_t total = wf__numel(g->nd, g->shape);
    if (total == 0) return;
    int64_t outer = total / n;
    /* rows in chunks of ~16K elements; one chunk when the whole is small */
    int64_t grain = total < PAR_MIN_ELEMS ? outer : n >= 16384 ? 1 : 16384 / n;
    wf__parallel_for(outer, grain, copy_rows, (void *)g);
}

/* ---------------------------------------------------------------- accumulation (scatter_add, index_add) */

#define ADD_RUN(T, EXPR)                                                                      \
    for (int64_t j = 0; j < n; j++) {                                                         \
        int64_t k = ld_idx(g->ip + (oi + j * isj) * isz, g->i64);                             \
        T *dst_ = (T *)g->xp + (ox + j * xsj + k * g->xdim);                                  \
        const T *src_ = (const T *)g->dp + (od + j * dsj);                                    \
        EXPR;                                                                                 \
    }

static void add_loop(const geo *g) {
    int64_t n = g->shape[g->nd - 1];
    int64_t total = wf__numel(g->nd, g->shape);
    if (total == 0) return;
    int64_t outer = total / n;
    int64_t dsj = g->ds[g->nd - 1], xsj = g->xs[g->nd - 1], isj = g->is[g->nd - 1];
    int64_t isz = g->i64 ? 8 : 4;
    for (int64_t o = 0; o < outer; o++) {
        int64_t od, ox, oi;
        outer_offsets(g, o, &od, &ox, &oi);
        switch (g->dt) {
        case WF_F32: ADD_RUN(float, *dst_ += *src_) break;
        case WF_F64: ADD_RUN(double, *dst_ += *src_) break;
        case WF_F16: ADD_RUN(uint16_t, *dst_ = wf__f32_to_f16(wf__f16_to_f32(*dst_) + wf__f16_to_f32(*src_))) break;
        case WF_BF16: ADD_RUN(uint16_t, *dst_ = wf__f32_to_bf16(wf__bf16_to_f32(*dst_) + wf__bf16_to_f32(*src_))) break;
        case WF_I64: ADD_RUN(int64_t, *dst_ = (int64_t)((uint64_t)*dst_ + (uint64_t)*src_)) break;
        case WF_I32: ADD_RUN(int32_t, *dst_ = (int32_t)((uint32_t)*dst_ + (uint32_t)*src_)) break;
        case WF_U8: ADD_RUN(uint8_t, *dst_ = (uint8_t)(*dst_ + *src_)) break;
        case WF_BOOL: ADD_RUN(uint8_t, *dst_ = (uint8_t)(*dst_ || *src_)) break;
        default: break;
        }
    }
}

/* ---------------------------------------------------------------- entry points */

int wf__cpu_gather(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index) {
    geo g;
    geo_init(&g, y, y, x, index, dim, false);
    copy_loop(&g);
    return 0;
}

int wf__cpu_scatter_add(wf_tensor *y, int dim, const wf_tensor *index, const wf_tensor *src) {
    geo g;
    geo_init(&g, index, src, y, index, dim, false);
    add_loop(&g);
    return 0;
}

int wf__cpu_index_select(wf_tensor *y, const wf_tensor *x, int dim, const wf_tensor *index) {
    geo g;
    geo_init(&g, y, y, x, index, dim, true);
    copy_loop(&g);
    return 0;
}

int wf__cpu_index_add(wf_tensor *gx, int dim, const wf_tensor *index, const wf_tensor *gy) {
    geo g;
    geo_init(&g, gy, gy, gx, index, dim, true);
    add_loop(&g);
    return 0;
}
