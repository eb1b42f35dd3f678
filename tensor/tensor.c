/* tensor/tensor.c: tensor handles and storage, geometry helpers, properties, creation. */
#include "tensor_impl.h"
#include "ops_raw.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- storage */

static wf_storage *storage_new(size_t nbytes, wf_device dev, wf_dtype dt) {
    const wf_kernels *k = wf__kernels(dev);
    if (!k) return NULL;
    wf_storage *s = wf__calloc(1, sizeof *s);
    if (!s) { wf__error(WF_ENOMEM, "out of memory allocating a storage header"); return NULL; }
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    s->nbytes = nbytes;
    s->device = dev;
    if (nbytes) {
        s->data = k->alloc(dev, nbytes);
        if (!s->data) { wf__free(s, sizeof *s); return NULL; }
    }
#ifndef WEFT_MINIMAL
    if (WF__CENSUS_ON()) wf__census_alloc(s, dt);
#else
    (void)dt;
#endif
    return s;
}

static void storage_release(wf_storage *s) {
    if (!s || atomic_fetch_sub(&s->refcount, 1) != 1) return;
    if (s->data) {
        const wf_kernels *k = wf__kernels(s->device);
        if (k) k->free(s->device, s->data, s->nbytes);
    }
#ifndef WEFT_MINIMAL
    if (s->census_group) wf__census_free(s);
#endif
    wf__free(s, sizeof *s);
}

/* ---------------------------------------------------------------- geometry */

int64_t wf__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t wf__contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = n;
        n *= shape[i];
    }
    return n;
}

char *wf__shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

char *wf_shape_str(const wf_tensor *t, char *buf, size_t n) {
    if (!buf) { wf__error(WF_ENULL, "wf_shape_str: NULL buffer"); return NULL; }
    if (!t) { snprintf(buf, n, "(null)"); return buf; }
    return wf__shape_text(t->ndim, t->shape, buf, n);
}

int wf__dim(const char *op, int dim, int ndim) {
    int lo = ndim ? -ndim : -1, hi = ndim ? ndim - 1 : 0;
    if (dim < lo || dim > hi) {
        wf__error(WF_EINDEX, "%s: dimension %d out of range for a %d-d tensor (expected %d..%d)",
                  op, dim, ndim, lo, hi);
        return -1;
    }
    return dim < 0 ? dim + (ndim ? ndim : 1) : dim;
}

int wf__broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                         int *nout, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char b1[96], b2[96];
            return wf__error(WF_ESHAPE, "%s: shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)",
                             op, wf__shape_text(na, sa, b1, sizeof b1), wf__shape_text(nb, sb, b2, sizeof b2),
                             i, (long long)da, (long long)db);
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return 0;
}

wf_dtype wf__promote(wf_dtype a, wf_dtype b) {
    if (a == b) return a;
    /* rank: bool < u8 < i32 < i64 < bf16/f16 < f32 < f64; f16 with bf16 gives f32 */
    static const int rank[WF_DTYPE_COUNT] = { [WF_BOOL] = 0, [WF_U8] = 1, [WF_I32] = 2, [WF_I64] = 3,
                                              [WF_BF16] = 4, [WF_F16] = 4, [WF_F32] = 5, [WF_F64] = 6 };
    if ((a == WF_F16 && b == WF_BF16) || (a == WF_BF16 && b == WF_F16)) return WF_F32;
    return rank[a] >= rank[b] ? a : b;
}

/* PyTorch's result_type for two tensor operands: a 0-dim tensor (like a Python scalar)
 * does not raise the dtype of a dimensioned one within a category (bool < integer <
 * floating): f16 tensor + f32 0-dim = f16, u8 tensor + i64 0-dim = u8; from a higher
 * category it decides (i32 tensor + f64 0-dim = f64, bool tensor + i64 0-dim = i64). */
static int category(wf_dtype d) { return d == WF_BOOL ? 0 : wf_dtype_is_floating(d) ? 2 : 1; }
wf_dtype wf__result_type(const wf_tensor *a, const wf_tensor *b) {
    if ((a->ndim == 0) == (b->ndim == 0)) return wf__promote(a->dtype, b->dtype);
    const wf_tensor *dim = a->ndim ? a : b, *zero = a->ndim ? b : a;
    return category(zero->dtype) > category(dim->dtype) ? zero->dtype : dim->dtype;
}

int wf__same_device(const char *op, wf_tensor *const *ts, int n) {
    for (int i = 1; i < n; i++) {
        if (ts[i] && ts[0] && !wf_device_eq(ts[i]->device, ts[0]->device)) {
            char d0[16], d1[16];
            return wf__error(WF_EDEVICE, "%s: tensors are on different devices (%s and %s)", op,
                             wf_device_str(ts[0]->device, d0, sizeof d0), wf_device_str(ts[i]->device, d1, sizeof d1));
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- handles */

static wf_tensor *handle_new(wf_storage *s, int ndim, const int64_t *shape, const int64_t *stride,
                             int64_t offset, wf_dtype dt) {
    wf_tensor *t = wf__calloc(1, sizeof *t);
    if (!t) { wf__error(WF_ENOMEM, "out of memory allocating a tensor handle"); return NULL; }
    atomic_init(&t->refcount, 1);
    t->storage = s;
    t->offset = offset;
    t->ndim = ndim;
    if (ndim) {
        memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
        memcpy(t->stride, stride, sizeof(int64_t) * (size_t)ndim);
    }
    t->dtype = dt;
    t->device = s->device;
    wf__scope_register(t);
    return t;
}

wf_tensor *wf__empty(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    dt = wf__dtype(dt);
    if (ndim < 0 || ndim > WF_MAX_DIMS) {
        wf__error(WF_ESHAPE, "tensor with %d dimensions (at most %d)", ndim, WF_MAX_DIMS);
        return NULL;
    }
    if ((unsigned)dt >= WF_DTYPE_COUNT) { wf__error(WF_EDTYPE, "invalid dtype %d", (int)dt); return NULL; }
    int64_t stride[WF_MAX_DIMS];
    int64_t n = 1;
    int64_t count = 1;   /* checked first: the byte limit below must not hide an overflow */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[128];
            wf__error(WF_ESHAPE, "negative size in shape %s", wf__shape_text(ndim, shape, b, sizeof b));
            return NULL;
        }
        if (__builtin_mul_overflow(count, shape[i], &count)) {
            char b[128];
            wf__error(WF_ESHAPE, "shape %s has more elements than an int64 can count",
                      wf__shape_text(ndim, shape, b, sizeof b));
            return NULL;
        }
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) {
            char b[128];
            wf__error(WF_ENOMEM, "a %s tensor of shape %s is too large to allocate", wf_dtype_name(dt),
                      wf__shape_text(ndim, shape, b, sizeof b));
            return NULL;
        }
        n *= shape[i];
    }
    wf__contiguous_strides(ndim, shape, stride);
    size_t nbytes = (size_t)n * wf_dtype_size(dt);
    wf_storage *s = storage_new(nbytes, dev, dt);
    if (!s) {
        if (!wf_error()) {
            char b[128];
            wf__error(WF_ENOMEM, "out of memory allocating %zu bytes for a %s tensor %s", nbytes,
                      wf_dtype_name(dt), wf__shape_text(ndim, shape, b, sizeof b));
        }
        return NULL;
    }
    wf_tensor *t = handle_new(s, ndim, shape, stride, 0, dt);
    if (!t) storage_release(s);
    return t;
}

wf_tensor *wf__view_of(wf_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    atomic_fetch_add(&t->storage->refcount, 1);
    wf_tensor *v = handle_new(t->storage, ndim, shape, stride, offset, t->dtype);
    if (!v) { storage_release(t->storage); return NULL; }
    /* Remember the base (the root of the view chain) so autograd can refuse unsafe in-place
     * writes through views of tensors that require grad. */
    wf_tensor *base = t->view_base ? t->view_base : t;
    v->view_base = wf_tensor_retain(base);
    return v;
}

const wf__autograd_iface *_Atomic wf__autograd;

wf_tensor *wf_tensor_retain(wf_tensor *t) {
    if (t) atomic_fetch_add(&t->refcount, 1);
    return t;
}

void wf_tensor_free(wf_tensor *t) {
    if (!t) return;
    if (atomic_fetch_sub(&t->refcount, 1) != 1) return;
    /* The last reference went while a scope still lists the tensor (an error path freeing
     * a fresh result): take it off the scope's list so the scope does not free it again. */
    if (t->scope) wf__scope_unregister(t);
    if (t->grad_fn || t->hooks) atomic_load_explicit(&wf__autograd, memory_order_acquire)->release(t);
    if (t->grad) wf_tensor_free(t->grad);
    if (t->view_base) wf_tensor_free(t->view_base);
    storage_release(t->storage);
    wf__free(t, sizeof *t);
}

/* ---------------------------------------------------------------- properties */

int wf_ndim(const wf_tensor *t) { return t ? t->ndim : (wf__any_null("wf_ndim", 1, t), -1); }
const int64_t *wf_shape(const wf_tensor *t) { return t ? t->shape : (wf__any_null("wf_shape", 1, t), NULL); }
const int64_t *wf_strides(const wf_tensor *t) { return t ? t->stride : (wf__any_null("wf_strides", 1, t), NULL); }
int64_t wf_size(const wf_tensor *t, int dim) {
    if (!t) return wf__any_null("wf_size", 1, t), -1;
    int d = wf__dim("wf_size", dim, t->ndim);
    if (d < 0) return -1;
    return t->ndim ? t->shape[d] : 1;
}
int64_t wf_numel(const wf_tensor *t) { return t ? wf__numel(t->ndim, t->shape) : (wf__any_null("wf_numel", 1, t), -1); }
wf_dtype wf_tensor_dtype(const wf_tensor *t) { return t ? t->dtype : (wf__any_null("wf_tensor_dtype", 1, t), WF_DTYPE_DEFAULT); }
wf_device wf_tensor_device(const wf_tensor *t) { return t ? t->device : (wf__any_null("wf_tensor_device", 1, t), WF_CPU); }

bool wf_is_contiguous(const wf_tensor *t) {
    if (!t) return wf__any_null("wf_is_contiguous", 1, t), false;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != expect) return false;
        expect *= t->shape[i];
    }
    return true;
}

bool wf_same_shape(const wf_tensor *a, const wf_tensor *b) {
    if (!a || !b) return wf__any_null("wf_same_shape", 2, a, b), false;
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void *wf_data_ptr(wf_tensor *t) {
    if (!t) return wf__any_null("wf_data_ptr", 1, t), NULL;
    if (t->device.type != WF_DEV_CPU) {
        wf__error(WF_EDEVICE, "wf_data_ptr: tensor is not on the cpu (move it with wf_to_device)");
        return NULL;
    }
    return wf__host_ptr(t);
}

static int wf_to_array__body(const wf_tensor *t, void *dst, wf_dtype dt) {
    if (!t || !dst) return wf__any_null("wf_to_array", 2, t, dst), WF_ENULL;
    if (t->device.type == WF_DEV_META)
        return wf__error(WF_ENOTSUP, "wf_to_array: a meta tensor has no data to read (create it on a real device)");
    dt = wf__dtype(dt);
    int rc = 0;
    wf_scope_begin();
    wf_tensor *src = (wf_tensor *)t;
    if (src->device.type != WF_DEV_CPU) src = wf__copy_raw(src, src->dtype, WF_CPU);
    wf_tensor *c = src ? wf__empty(t->shape, t->ndim, dt, WF_CPU) : NULL;
    if (!c) rc = wf_error() ? wf_error() : WF_ENOMEM;
    else {
        rc = wf__cpu_kernels.copy(c, src);
        if (!rc && wf_numel(t)) memcpy(dst, c->storage->data, (size_t)wf_numel(t) * wf_dtype_size(dt));
    }
    wf_scope_end();
    return rc;
}

int wf_to_array(const wf_tensor *t, void *dst, wf_dtype dt) {
    WF__NAMED("wf_to_array", int, r < 0, wf_to_array__body(t, dst, dt));
}

double wf_item(const wf_tensor *t) {
    if (!t) return wf__any_null("wf_item", 1, t), NAN;
    if (t->device.type == WF_DEV_META) {
        wf__error(WF_ENOTSUP, "wf_item: a meta tensor has no data to read");
        return NAN;
    }
    if (wf_numel(t) != 1) {
        char b[96];
        wf__error(WF_ESHAPE, "wf_item: tensor of shape %s has %lld elements, not 1",
                  wf_shape_str(t, b, sizeof b), (long long)wf_numel(t));
        return NAN;
    }
    double v;
    if (wf_to_array(t, &v, WF_F64)) return NAN;
    return v;
}

/* ---------------------------------------------------------------- creation */

/* Validate a shape given to a public creation function, naming op and the sizes: count
 * within WF_MAX_DIMS, no negative size, and an element count that fits int64 (checked
 * multiplication: a product that overflows would wrap into a small, wrong allocation). */
int wf__check_shape(const char *op, const int64_t *shape, int ndim) {
    if (ndim < 0 || ndim > WF_MAX_DIMS)
        return wf__error(WF_ESHAPE, "%s: %d dimensions (expected 0..%d)", op, ndim, WF_MAX_DIMS);
    if (ndim && !shape) return wf__error(WF_ENULL, "%s: NULL shape", op);
    char b[160];
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return wf__error(WF_ESHAPE, "%s: negative size %lld in dimension %d of shape %s", op,
                             (long long)shape[i], i, wf__shape_text(ndim, shape, b, sizeof b));
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n))
            return wf__error(WF_ESHAPE, "%s: shape %s has more elements than an int64 can count", op,
                             wf__shape_text(ndim, shape, b, sizeof b));
    return 0;
}

/* Whether v can be stored in dt without overflow (PyTorch refuses torch.full(..., 300,
 * dtype=uint8) the same way). Floating dtypes take inf and NaN; integers need a finite v
 * in range (fractions truncate, as a cast does). */
int wf__check_fill_value(const char *op, wf_dtype dt, double v) {
    dt = wf__dtype(dt);
    double lo, hi;   /* open interval (lo, hi) for finite values */
    switch (dt) {
    case WF_U8: lo = -1.0; hi = 256.0; break;
    case WF_I32: lo = -2147483649.0; hi = 2147483648.0; break;
    case WF_I64: lo = -9223372036854777856.0; hi = 9223372036854775808.0; break;
    case WF_F16: lo = -65520.0; hi = 65520.0; break;   /* beyond rounds to inf */
    case WF_BF16: lo = -3.3961775292304740e38; hi = 3.3961775292304740e38; break;
    case WF_F32: lo = -3.4028235677973366e38; hi = 3.4028235677973366e38; break;
    default: return 0;   /* f64 holds any double; bool is v != 0 */
    }
    if (isnan(v) || isinf(v)) {
        if (wf_dtype_is_floating(dt)) return 0;
        return wf__error(WF_EINVAL, "%s: value %g cannot be converted to %s", op, v, wf_dtype_name(dt));
    }
    if (!(v > lo && v < hi))
        return wf__error(WF_EINVAL, "%s: value %g cannot be converted to %s without overflow", op, v,
                         wf_dtype_name(dt));
    return 0;
}

static wf_tensor *empty_op(const char *op, const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    if (wf__check_shape(op, shape, ndim)) return NULL;
    if ((unsigned)dt >= WF_DTYPE_COUNT) { wf__error(WF_EDTYPE, "%s: invalid dtype %d", op, (int)dt); return NULL; }
    WF__CENSUS_OP_BEGIN("empty");   /* wf_empty, wf_zeros, wf_full, ...: a factory, not the op around it */
    wf_tensor *t = wf__empty(shape, ndim, dt, dev);
    WF__CENSUS_OP_END();
    return t;
}

static wf_tensor *wf_empty_on__body(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    return empty_op("wf_empty_on", shape, ndim, dt, dev);
}

wf_tensor *wf_empty_on(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    WF__NAMED("wf_empty_on", wf_tensor *, !r, wf_empty_on__body(shape, ndim, dt, dev));
}

static wf_tensor *wf_empty__body(const int64_t *shape, int ndim, wf_dtype dt) {
    return empty_op("wf_empty", shape, ndim, dt, wf_get_default_device());
}

wf_tensor *wf_empty(const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_empty", wf_tensor *, !r, wf_empty__body(shape, ndim, dt));
}

static wf_tensor *filled(wf_tensor *t, double v) {
    if (!t) return NULL;
    if (wf__numel(t->ndim, t->shape) && wf__kernels(t->device)->fill(t, v)) { wf_tensor_free(t); return NULL; }
    return t;
}

static wf_tensor *wf_zeros_on__body(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    return filled(empty_op("wf_zeros_on", shape, ndim, dt, dev), 0.0);
}

wf_tensor *wf_zeros_on(const int64_t *shape, int ndim, wf_dtype dt, wf_device dev) {
    WF__NAMED("wf_zeros_on", wf_tensor *, !r, wf_zeros_on__body(shape, ndim, dt, dev));
}

static wf_tensor *wf_zeros__body(const int64_t *shape, int ndim, wf_dtype dt) {
    return filled(empty_op("wf_zeros", shape, ndim, dt, wf_get_default_device()), 0.0);
}

wf_tensor *wf_zeros(const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_zeros", wf_tensor *, !r, wf_zeros__body(shape, ndim, dt));
}

static wf_tensor *wf_ones__body(const int64_t *shape, int ndim, wf_dtype dt) {
    return filled(empty_op("wf_ones", shape, ndim, dt, wf_get_default_device()), 1.0);
}

wf_tensor *wf_ones(const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_ones", wf_tensor *, !r, wf_ones__body(shape, ndim, dt));
}

static wf_tensor *wf_full__body(const int64_t *shape, int ndim, double v, wf_dtype dt) {
    if (wf__check_fill_value("wf_full", dt, v)) return NULL;
    return filled(empty_op("wf_full", shape, ndim, dt, wf_get_default_device()), v);
}

wf_tensor *wf_full(const int64_t *shape, int ndim, double v, wf_dtype dt) {
    WF__NAMED("wf_full", wf_tensor *, !r, wf_full__body(shape, ndim, v, dt));
}

static wf_tensor *wf_scalar__body(double v, wf_dtype dt) {
    if (wf__check_fill_value("wf_scalar", dt, v)) return NULL;
    return filled(empty_op("wf_scalar", NULL, 0, dt, wf_get_default_device()), v);
}

wf_tensor *wf_scalar(double v, wf_dtype dt) { WF__NAMED("wf_scalar", wf_tensor *, !r, wf_scalar__body(v, dt)); }

wf_tensor *wf_empty_like(const wf_tensor *t) {
    if (!t) return wf__any_null("wf_empty_like", 1, t), NULL;
    WF__CENSUS_OP_BEGIN("empty");
    wf_tensor *y = wf__empty(t->shape, t->ndim, t->dtype, t->device);
    WF__CENSUS_OP_END();
    return y;
}
static wf_tensor *wf_zeros_like__body(const wf_tensor *t) { return filled(wf_empty_like(t), 0.0); }

wf_tensor *wf_zeros_like(const wf_tensor *t) { WF__NAMED("wf_zeros_like", wf_tensor *, !r, wf_zeros_like__body(t)); }

static wf_tensor *wf_ones_like__body(const wf_tensor *t) { return filled(wf_empty_like(t), 1.0); }

wf_tensor *wf_ones_like(const wf_tensor *t) { WF__NAMED("wf_ones_like", wf_tensor *, !r, wf_ones_like__body(t)); }

static wf_tensor *wf_full_like__body(const wf_tensor *t, double v) {
    if (t && wf__check_fill_value("wf_full_like", t->dtype, v)) return NULL;
    return filled(wf_empty_like(t), v);
}

wf_tensor *wf_full_like(const wf_tensor *t, double v) {
    WF__NAMED("wf_full_like", wf_tensor *, !r, wf_full_like__body(t, v));
}

/* Build on the host, then move to the default device. */
static wf_tensor *host_then_device(wf_tensor *h) {
    if (!h) return NULL;
    wf_device dev = wf_get_default_device();
    if (dev.type == WF_DEV_CPU) return h;
    wf_tensor *d = wf__kernels(dev) ? wf__copy_raw(h, h->dtype, dev) : NULL;
    wf_tensor_free(h);
    return d;
}

static wf_tensor *wf_arange__body(double start, double end, double step, wf_dtype dt) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step) || (end - start) / step < 0) {
        wf__error(WF_EINVAL, "wf_arange: invalid range start=%g end=%g step=%g", start, end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (!(count < 9.2e18)) {   /* converting a larger double to int64 is undefined */
        wf__error(WF_EINVAL, "wf_arange: range start=%g end=%g step=%g has too many elements", start, end, step);
        return NULL;
    }
    int64_t n = (int64_t)count;
    wf_tensor *t = wf__empty(&n, 1, dt, WF_CPU);
    if (!t) return NULL;
    char *p = t->storage->data;
    size_t es = wf_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++) wf__store(p + (size_t)i * es, t->dtype, start + (double)i * step);
    return host_then_device(t);
}

wf_tensor *wf_arange(double start, double end, double step, wf_dtype dt) {
    WF__NAMED("wf_arange", wf_tensor *, !r, wf_arange__body(start, end, step, dt));
}

static wf_tensor *wf_linspace__body(double start, double end, int64_t steps, wf_dtype dt) {
    if (steps < 0) { wf__error(WF_EINVAL, "wf_linspace: steps must be >= 0, got %lld", (long long)steps); return NULL; }
    wf_tensor *t = wf__empty(&steps, 1, dt, WF_CPU);
    if (!t) return NULL;
    char *p = t->storage->data;
    size_t es = wf_dtype_size(t->dtype);
    double d = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
    /* symmetric evaluation as PyTorch does, so the end point is exact */
    for (int64_t i = 0; i < steps; i++) {
        double v = i < steps / 2 ? start + d * (double)i : end - d * (double)(steps - 1 - i);
        wf__store(p + (size_t)i * es, t->dtype, v);
    }
    return host_then_device(t);
}

wf_tensor *wf_linspace(double start, double end, int64_t steps, wf_dtype dt) {
    WF__NAMED("wf_linspace", wf_tensor *, !r, wf_linspace__body(start, end, steps, dt));
}

static wf_tensor *wf_eye__body(int64_t n, int64_t m, wf_dtype dt) {
    if (m < 0) m = n;
    if (n < 0) { wf__error(WF_EINVAL, "wf_eye: negative size %lld", (long long)n); return NULL; }
    int64_t shape[2] = { n, m };
    wf_tensor *t = filled(wf__empty(shape, 2, dt, WF_CPU), 0.0);
    if (!t) return NULL;
    char *p = t->storage->data;
    size_t es = wf_dtype_size(t->dtype);
    for (int64_t i = 0; i < n && i < m; i++) wf__store(p + (size_t)(i * m + i) * es, t->dtype, 1.0);
    return host_then_device(t);
}

wf_tensor *wf_eye(int64_t n, int64_t m, wf_dtype dt) { WF__NAMED("wf_eye", wf_tensor *, !r, wf_eye__body(n, m, dt)); }

static wf_tensor *wf_from_data__body(const void *data, const int64_t *shape, int ndim, wf_dtype dt) {
    if (!data && wf__numel(ndim, shape ? shape : (const int64_t[]){ 0 }) != 0) {
        wf__error(WF_ENULL, "wf_from_data: NULL data");
        return NULL;
    }
    wf_tensor *t = wf_empty_on(shape, ndim, dt, WF_CPU);
    if (!t) return NULL;
    if (t->storage->nbytes) memcpy(t->storage->data, data, t->storage->nbytes);
    return host_then_device(t);
}

wf_tensor *wf_from_data(const void *data, const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_from_data", wf_tensor *, !r, wf_from_data__body(data, shape, ndim, dt));
}
