/* tensor/random.c: the global Philox4x32-10 generator and the random front-ends.
 *
 * State is (seed, offset). A draw of n elements reserves n counters and passes the
 * starting offset to the device kernel; element i uses counter offset + i/4 (lane i%4) for
 * 32-bit draws (see tensor/cpu/random.c for the exact layout). So the same seed and offset
 * give the same numbers on every device, and saving (seed, offset) makes resume exact. */
#include "tensor_impl.h"
#include "ops_raw.h"
#include "tensor/meta_init.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

void wf__philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The deterministic-algorithms switch lives beside the RNG: both are what makes a run
 * repeatable. Kernels read it; wf__supports hides the non-deterministic ones. */
_Atomic bool wf__deterministic;
int wf_use_deterministic_algorithms(bool on) {
    atomic_store(&wf__deterministic, on);
    return 0;
}
bool wf_are_deterministic_algorithms_enabled(void) { return atomic_load(&wf__deterministic); }

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_rng_state g_state = { 0x5eed, 0 };

void wf_manual_seed(uint64_t seed) {
    pthread_mutex_lock(&g_lock);
    g_state.seed = seed;
    g_state.offset = 0;
    pthread_mutex_unlock(&g_lock);
}
wf_rng_state wf_rng_get_state(void) {
    pthread_mutex_lock(&g_lock);
    wf_rng_state s = g_state;
    pthread_mutex_unlock(&g_lock);
    return s;
}
void wf_rng_set_state(wf_rng_state s) {
    pthread_mutex_lock(&g_lock);
    g_state = s;
    pthread_mutex_unlock(&g_lock);
}
uint64_t wf__rng_reserve(uint64_t n, uint64_t *seed) {
    pthread_mutex_lock(&g_lock);
    uint64_t off = g_state.offset;
    *seed = g_state.seed;
    g_state.offset += n;
    pthread_mutex_unlock(&g_lock);
    return off;
}

static int check_float(const char *op, wf_tensor *t) {
    if (!wf_dtype_is_floating(t->dtype))
        return wf__error(WF_EDTYPE, "%s: needs a floating dtype, got %s", op, wf_dtype_name(t->dtype));
    return 0;
}

int wf_uniform_(wf_tensor *t, double lo, double hi) {
    if (!t) return wf__any_null("wf_uniform_", 1, t), WF_ENULL;
    if (check_float("wf_uniform_", t)) return wf_error();
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
        return wf__error(WF_EINVAL, "wf_uniform_: invalid range [%g, %g)", lo, hi);
    const wf_kernels *k = wf__kernels(t->device);
    if (!k || wf__need_kernel(k, "wf_uniform_", WF_OPF_KERNEL, WF_K_RAND_UNIFORM, t->dtype, t->device)) return wf_error();
    int64_t n = wf_numel(t);
    if (!n) return 0;
    uint64_t seed, off = wf__rng_reserve((uint64_t)n, &seed);
    int rc;
    if (wf_is_contiguous(t)) rc = k->rand_uniform(t, seed, off, lo, hi);
    else {
        wf_scope_begin();
        wf_tensor *c = wf__empty(t->shape, t->ndim, t->dtype, t->device);
        rc = c ? k->rand_uniform(c, seed, off, lo, hi) : wf_error();
        if (!rc) rc = k->copy(t, c);
        wf_scope_end();
    }
    wf__bump_version(t);
    if (!rc && wf__meta_recording()) wf__meta_note_rand(t, false, lo, hi, seed, off);
    return rc;
}

int wf_normal_(wf_tensor *t, double mean, double std) {
    if (!t) return wf__any_null("wf_normal_", 1, t), WF_ENULL;
    if (check_float("wf_normal_", t)) return wf_error();
    if (!(std >= 0) || !isfinite(mean) || !isfinite(std))
        return wf__error(WF_EINVAL, "wf_normal_: invalid mean %g / std %g", mean, std);
    const wf_kernels *k = wf__kernels(t->device);
    if (!k || wf__need_kernel(k, "wf_normal_", WF_OPF_KERNEL, WF_K_RAND_NORMAL, t->dtype, t->device)) return wf_error();
    int64_t n = wf_numel(t);
    if (!n) return 0;
    uint64_t seed, off = wf__rng_reserve((uint64_t)n, &seed);
    int rc;
    if (wf_is_contiguous(t)) rc = k->rand_normal(t, seed, off, mean, std);
    else {
        wf_scope_begin();
        wf_tensor *c = wf__empty(t->shape, t->ndim, t->dtype, t->device);
        rc = c ? k->rand_normal(c, seed, off, mean, std) : wf_error();
        if (!rc) rc = k->copy(t, c);
        wf_scope_end();
    }
    wf__bump_version(t);
    if (!rc && wf__meta_recording()) wf__meta_note_rand(t, true, mean, std, seed, off);
    return rc;
}

static wf_tensor *fresh(const char *op, const int64_t *shape, int nd, wf_dtype dt, wf_device dev) {
    wf_tensor *t = wf__empty(shape, nd, dt, dev);
    if (t && check_float(op, t)) { wf_tensor_free(t); return NULL; }
    return t;
}

static wf_tensor *wf_rand__body(const int64_t *shape, int ndim, wf_dtype dt) {
    wf_tensor *t = fresh("wf_rand", shape, ndim, dt, wf_get_default_device());
    if (t && wf_uniform_(t, 0, 1)) { wf_tensor_free(t); return NULL; }
    return t;
}

wf_tensor *wf_rand(const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_rand", wf_tensor *, !r, wf_rand__body(shape, ndim, dt));
}

static wf_tensor *wf_randn__body(const int64_t *shape, int ndim, wf_dtype dt) {
    wf_tensor *t = fresh("wf_randn", shape, ndim, dt, wf_get_default_device());
    if (t && wf_normal_(t, 0, 1)) { wf_tensor_free(t); return NULL; }
    return t;
}

wf_tensor *wf_randn(const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_randn", wf_tensor *, !r, wf_randn__body(shape, ndim, dt));
}

static wf_tensor *wf_rand_like__body(const wf_tensor *x) {
    if (!x) return wf__any_null("wf_rand_like", 1, x), NULL;
    wf_tensor *t = fresh("wf_rand_like", x->shape, x->ndim, x->dtype, x->device);
    if (t && wf_uniform_(t, 0, 1)) { wf_tensor_free(t); return NULL; }
    return t;
}

wf_tensor *wf_rand_like(const wf_tensor *x) { WF__NAMED("wf_rand_like", wf_tensor *, !r, wf_rand_like__body(x)); }

static wf_tensor *wf_randn_like__body(const wf_tensor *x) {
    if (!x) return wf__any_null("wf_randn_like", 1, x), NULL;
    wf_tensor *t = fresh("wf_randn_like", x->shape, x->ndim, x->dtype, x->device);
    if (t && wf_normal_(t, 0, 1)) { wf_tensor_free(t); return NULL; }
    return t;
}

wf_tensor *wf_randn_like(const wf_tensor *x) { WF__NAMED("wf_randn_like", wf_tensor *, !r, wf_randn_like__body(x)); }

static wf_tensor *wf_randint__body(int64_t low, int64_t high, const int64_t *shape, int ndim, wf_dtype dt) {
    if (dt == WF_DTYPE_DEFAULT) dt = WF_I64;
    if (high <= low) {
        wf__error(WF_EINVAL, "wf_randint: empty range [%lld, %lld)", (long long)low, (long long)high);
        return NULL;
    }
    wf_tensor *t = wf__empty(shape, ndim, dt, wf_get_default_device());
    if (!t) return NULL;
    int64_t n = wf_numel(t);
    if (!n) return t;
    uint64_t seed, off = wf__rng_reserve((uint64_t)n, &seed);
    const wf_kernels *k = wf__kernels(t->device);
    if (!k || wf__need_kernel(k, "wf_randint", WF_OPF_KERNEL, WF_K_RAND_INT, dt, t->device) ||
        k->rand_int(t, seed, off, low, high)) { wf_tensor_free(t); return NULL; }
    return t;
}

wf_tensor *wf_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, wf_dtype dt) {
    WF__NAMED("wf_randint", wf_tensor *, !r, wf_randint__body(low, high, shape, ndim, dt));
}

static wf_tensor *wf_bernoulli__body(const wf_tensor *p) {
    if (!p) return wf__any_null("wf_bernoulli", 1, p), NULL;
    if (check_float("wf_bernoulli", (wf_tensor *)p)) return NULL;
    wf_scope_begin();
    /* raw ops: tensor/ records no graph (the mask has no gradient anyway) */
    wf_tensor *pc = wf_is_contiguous(p) ? (wf_tensor *)p : wf__copy_raw((wf_tensor *)p, p->dtype, p->device);
    int64_t n = wf_numel(p);
    if (pc && n && p->device.type != WF_DEV_META) {
        /* torch.bernoulli's check: every probability in [0, 1] (NaN fails both tests) */
        uint32_t all = pc->ndim ? (1u << pc->ndim) - 1 : 0;
        double lo = wf_item(wf__amax_raw("wf_bernoulli", false, pc, all)),
               hi = wf_item(wf__amax_raw("wf_bernoulli", true, pc, all));
        if (!(lo >= 0 && hi <= 1)) {
            if (!isnan(lo) || !wf_error())
                wf__error(WF_EINVAL, "wf_bernoulli: probabilities must be in [0, 1], got values in [%g, %g]", lo, hi);
            pc = NULL;
        }
    }
    wf_tensor *t = pc ? wf__empty(p->shape, p->ndim, p->dtype, p->device) : NULL;
    if (t && n) {
        uint64_t seed, off = wf__rng_reserve((uint64_t)n, &seed);
        const wf_kernels *k = wf__kernels(t->device);
        if (!k || wf__need_kernel(k, "wf_bernoulli", WF_OPF_KERNEL, WF_K_BERNOULLI, t->dtype, t->device) ||
            k->bernoulli(t, seed, off, pc, 0)) t = NULL;
    }
    if (t) wf_keep(t);
    wf_scope_end();
    return t;
}

wf_tensor *wf_bernoulli(const wf_tensor *p) { WF__NAMED("wf_bernoulli", wf_tensor *, !r, wf_bernoulli__body(p)); }

/* the mask on the device it is used on: a dropout mask made on the CPU and copied to the
 * GPU cost 30x a whole GPT step there (bench/NOTES.md) */
wf_tensor *wf__bernoulli_p_raw(const int64_t *shape, int ndim, double p, wf_dtype dt, wf_device dev) {
    if (!(p >= 0 && p <= 1)) { wf__error(WF_EINVAL, "wf_bernoulli_p: probability %g is not in [0, 1]", p); return NULL; }
    wf_tensor *t = fresh("wf_bernoulli_p", shape, ndim, dt, dev);
    if (!t) return NULL;
    int64_t n = wf_numel(t);
    if (n) {
        uint64_t seed, off = wf__rng_reserve((uint64_t)n, &seed);
        const wf_kernels *k = wf__kernels(t->device);
        if (!k || wf__need_kernel(k, "wf_bernoulli_p", WF_OPF_KERNEL, WF_K_BERNOULLI, t->dtype, t->device) ||
            k->bernoulli(t, seed, off, NULL, p)) { wf_tensor_free(t); return NULL; }
    }
    return t;
}

wf_tensor *wf_bernoulli_p(const int64_t *shape, int ndim, double p, wf_dtype dt) {
    WF__NAMED("wf_bernoulli_p", wf_tensor *, !r, wf__bernoulli_p_raw(shape, ndim, p, dt, wf_get_default_device()));
}
