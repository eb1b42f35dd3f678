/* tensor/cpu/cpu_memory.c: host storage, copies with casts, fills. */
#include "cpu_kernels.h"
#include "weft_config.h"

#include <string.h>

void *wf__cpu_alloc(wf_device dev, size_t nbytes) {
    (void)dev;
    void *p = wf__host_alloc(nbytes);
    if (!p) wf__error(WF_ENOMEM, "out of host memory allocating %zu bytes", nbytes);
    return p;
}
void wf__cpu_free(wf_device dev, void *p, size_t nbytes) { (void)dev; wf__host_free(p, nbytes); }

typedef struct { wf_dtype dy, dx; } cast_ctx;

static void copy_run(char **p, const int64_t *bs, int64_t n, void *vctx) {
    cast_ctx *c = vctx;
    char *y = p[0], *x = p[1];
    size_t es = wf_dtype_size(c->dy);
    if (c->dy == c->dx) {
        if (bs[0] == (int64_t)es && bs[1] == (int64_t)es) { memcpy(y, x, (size_t)n * es); return; }
        switch (es) {
        case 4: for (int64_t i = 0; i < n; i++) *(uint32_t *)(y + i * bs[0]) = *(const uint32_t *)(x + i * bs[1]); return;
        case 8: for (int64_t i = 0; i < n; i++) *(uint64_t *)(y + i * bs[0]) = *(const uint64_t *)(x + i * bs[1]); return;
        case 2: for (int64_t i = 0; i < n; i++) *(uint16_t *)(y + i * bs[0]) = *(const uint16_t *)(x + i * bs[1]); return;
        default: for (int64_t i = 0; i < n; i++) y[i * bs[0]] = x[i * bs[1]]; return;
        }
    }
    bool ycontig = bs[0] == (int64_t)es, xcontig = bs[1] == (int64_t)wf_dtype_size(c->dx);
    bool yhalf = c->dy == WF_BF16 || c->dy == WF_F16, xhalf = c->dx == WF_BF16 || c->dx == WF_F16;
    if (ycontig && xcontig && c->dy == WF_F32 && xhalf) {   /* the casts autocast makes: vectorized */
        wf__half_to_f32_n((float *)y, (const uint16_t *)x, n, c->dx == WF_BF16);
        return;
    }
    if (ycontig && xcontig && yhalf && c->dx == WF_F32) {
        wf__f32_to_half_n((uint16_t *)y, (const float *)x, n, c->dy == WF_BF16);
        return;
    }
    if (c->dy == WF_F32 && c->dx == WF_BF16) {
        for (int64_t i = 0; i < n; i++) *(float *)(y + i * bs[0]) = wf__bf16_to_f32(*(const uint16_t *)(x + i * bs[1]));
        return;
    }
    if (c->dy == WF_BF16 && c->dx == WF_F32) {
        for (int64_t i = 0; i < n; i++) *(uint16_t *)(y + i * bs[0]) = wf__f32_to_bf16(*(const float *)(x + i * bs[1]));
        return;
    }
    if (c->dy == WF_F32 && c->dx == WF_F16) {
        for (int64_t i = 0; i < n; i++) *(float *)(y + i * bs[0]) = wf__f16_to_f32(*(const uint16_t *)(x + i * bs[1]));
        return;
    }
    if (c->dy == WF_F16 && c->dx == WF_F32) {
        for (int64_t i = 0; i < n; i++) *(uint16_t *)(y + i * bs[0]) = wf__f32_to_f16(*(const float *)(x + i * bs[1]));
        return;
    }
    if (c->dy == WF_F32 && c->dx == WF_F64) {
        for (int64_t i = 0; i < n; i++) *(float *)(y + i * bs[0]) = (float)*(const double *)(x + i * bs[1]);
        return;
    }
    if (c->dy == WF_F64 && c->dx == WF_F32) {
        for (int64_t i = 0; i < n; i++) *(double *)(y + i * bs[0]) = *(const float *)(x + i * bs[1]);
        return;
    }
    for (int64_t i = 0; i < n; i++) wf__store(y + i * bs[0], c->dy, wf__load(x + i * bs[1], c->dx));
}

typedef struct {
    cast_ctx *c;
    char *yb, *xb;
    int64_t ys, xs;
} cast_chunks_ctx;

static void cast_chunk(void *vc, int64_t lo, int64_t hi) {
    const cast_chunks_ctx *k = vc;
    char *p[2] = { k->yb + lo * k->ys, k->xb + lo * k->xs };
    int64_t bs[2] = { k->ys, k->xs };
    copy_run(p, bs, hi - lo, k->c);
}

int wf__cpu_copy(wf_tensor *y, const wf_tensor *x) {
    cast_ctx c = { y->dtype, x->dtype };
    wf_tensor *ops[2] = { y, (wf_tensor *)x };
    int64_t n = wf_numel(y);
    if (c.dy != c.dx && n >= 8192 && wf_is_contiguous(y) && wf_is_contiguous(x)) {
        /* casts of 8K elements and up (autocast makes many: weights, activations, their
         * gradients) on all threads, in chunks */
        cast_chunks_ctx cc = { &c, wf__host_ptr(y), wf__host_ptr(x), (int64_t)wf_dtype_size(c.dy),
                               (int64_t)wf_dtype_size(c.dx) };
        wf__parallel_for(n, 4096, cast_chunk, &cc);
        return 0;
    }
    wf__iter(2, ops, copy_run, &c);
    return 0;
}

typedef struct { wf_dtype dt; union { double align; unsigned char bytes[8]; }; } fill_ctx;

static void fill_run(char **p, const int64_t *bs, int64_t n, void *vctx) {
    fill_ctx *c = vctx;
    size_t es = wf_dtype_size(c->dt);
    char *y = p[0];
    bool zero = true;
    for (size_t i = 0; i < es; i++) if (c->bytes[i]) zero = false;
    if (zero && bs[0] == (int64_t)es) { memset(y, 0, (size_t)n * es); return; }
    for (int64_t i = 0; i < n; i++) memcpy(y + i * bs[0], c->bytes, es);
}

int wf__cpu_fill(wf_tensor *y, double v) {
    fill_ctx c = { .dt = y->dtype };
    wf__store(c.bytes, y->dtype, v);
    wf__iter(1, &y, fill_run, &c);
    return 0;
}

int wf__cpu_to_host(void *dst, const wf_tensor *x) {
    memcpy(dst, wf__host_ptr(x), (size_t)wf_numel(x) * wf_dtype_size(x->dtype));
    return 0;
}
int wf__cpu_from_host(wf_tensor *y, const void *src) {
    memcpy(wf__host_ptr(y), src, (size_t)wf_numel(y) * wf_dtype_size(y->dtype));
    return 0;
}
