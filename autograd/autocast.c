/* autograd/autocast.c: the thread-local autocast state and the hook the differentiable
 * front-ends call (wf__autocast_arg, declared in autograd/autograd_api.h where nn/ reaches it).
 * The public functions (torch.autocast's) are declared in include/weft/autograd.h, which
 * precision.h includes for users: they live here, with the state, because the front-ends that
 * read it sit in autograd/, below precision/, and casting a parameter is a graph operation
 * (the cast carries a ToCopyBackward, the cache is keyed on grad mode).
 *
 * State: a stack of regions per thread (device type, low dtype, enabled). The innermost
 * region decides. The cast cache holds, for each parameter (a leaf that requires grad) cast
 * to the low dtype in this outermost region, the source (retained), its storage version,
 * whether grad mode was on, and the cast result (retained; it has a ToCopyBackward node so
 * gradients reach the f32 parameter). Casts made while no scope is open are kept in a list
 * and released with the cache when the outermost region ends. */
#include "autograd_impl.h"
#include "fn_fp8_linear.h"

#define AC_MAX_DEPTH 64

typedef struct { int16_t devtype; wf_dtype low; bool enabled; } ac_region;
typedef struct { wf_tensor *src, *cast; unsigned version; bool grad; wf_dtype dt; } ac_entry;

static _Thread_local ac_region g_stack[AC_MAX_DEPTH];
static _Thread_local int g_depth;
static _Thread_local ac_entry *g_cache;
static _Thread_local int g_ncache, g_capcache;
static _Thread_local wf_tensor **g_temps;
static _Thread_local int g_ntemps, g_captemps;

static void cache_clear(void) {
    for (int i = 0; i < g_ncache; i++) {
        wf_tensor_free(g_cache[i].cast);
        wf_tensor_free(g_cache[i].src);
    }
    wf__free(g_cache, sizeof(ac_entry) * (size_t)g_capcache);
    g_cache = NULL;
    g_ncache = g_capcache = 0;
    for (int i = g_ntemps - 1; i >= 0; i--) wf_tensor_free(g_temps[i]);
    wf__free(g_temps, sizeof(wf_tensor *) * (size_t)g_captemps);
    g_temps = NULL;
    g_ntemps = g_captemps = 0;
}

static int wf_autocast_begin_ex__body(wf_device_type device_type, wf_dtype low, bool enabled) {
    if (device_type != WF_DEV_CPU && device_type != WF_DEV_CUDA)
        return wf__error(WF_EINVAL, "wf_autocast_begin: device type must be WF_DEV_CPU or WF_DEV_CUDA, got %d",
                         (int)device_type);
    if (low == WF_DTYPE_DEFAULT) low = device_type == WF_DEV_CPU ? WF_BF16 : WF_F16;
    if (low != WF_F16 && low != WF_BF16)
        return wf__error(WF_EINVAL, "wf_autocast_begin: the low dtype must be float16 or bfloat16, got %s",
                         (unsigned)low < WF_DTYPE_COUNT ? wf_dtype_name(low) : "invalid");
    if (g_depth >= AC_MAX_DEPTH)
        return wf__error(WF_ESTATE, "wf_autocast_begin: more than %d nested regions", AC_MAX_DEPTH);
    g_stack[g_depth++] = (ac_region){ (int16_t)device_type, low, enabled };
    return 0;
}

int wf_autocast_begin_ex(wf_device_type device_type, wf_dtype low, bool enabled) {
    WF__NAMED("wf_autocast_begin_ex", int, r < 0, wf_autocast_begin_ex__body(device_type, low, enabled));
}

int wf_autocast_end(void) {
    if (g_depth == 0) return wf__error(WF_ESTATE, "wf_autocast_end: no autocast region is open");
    g_depth--;
    if (g_depth == 0) cache_clear();
    return 0;
}

/* The innermost region for a device type decides (an inner region for another device type
 * leaves this one as it was). */
static const ac_region *region_for(int devtype) {
    for (int i = g_depth - 1; i >= 0; i--)
        if (g_stack[i].devtype == devtype) return &g_stack[i];
    return NULL;
}

/* the "transformer-engine" precision's fp8 region (autograd/fn_fp8_linear.h) */
static _Thread_local int fp8_depth;

void wf__fp8_autocast_begin(void) { fp8_depth++; }
void wf__fp8_autocast_end(void) {
    if (fp8_depth > 0) fp8_depth--;
}
bool wf_fp8_autocast_enabled(void) { return fp8_depth > 0; }

bool wf_autocast_enabled(wf_device_type device_type) {
    const ac_region *r = region_for(device_type);
    return r && r->enabled;
}

wf_dtype wf_autocast_dtype(void) {
    for (int i = g_depth - 1; i >= 0; i--)
        if (g_stack[i].enabled) return g_stack[i].low;
    return WF_DTYPE_DEFAULT;
}

int wf_autocast_depth(void) { return g_depth; }
int wf_autocast_cache_size(void) { return g_ncache; }

static bool keep_temp(wf_tensor *t) {
    if (t->scope) return true;          /* the caller's scope releases it */
    if (g_ntemps == g_captemps) {
        int nc = g_captemps ? 2 * g_captemps : 16;
        wf_tensor **v = wf__realloc(g_temps, sizeof(wf_tensor *) * (size_t)g_captemps, sizeof(wf_tensor *) * (size_t)nc);
        if (!v) return false;
        g_temps = v;
        g_captemps = nc;
    }
    g_temps[g_ntemps++] = t;
    return true;
}

static wf_tensor *cast_to(wf_tensor *t, wf_dtype dt, bool cacheable) {
    bool grad = wf_is_grad_enabled();
    unsigned ver = atomic_load(&t->storage->version);
    if (cacheable) {
        for (int i = 0; i < g_ncache; i++) {
            ac_entry *e = &g_cache[i];
            if (e->src == t && e->dt == dt && e->grad == grad) {
                if (e->version == ver) return e->cast;
                /* modified in place since: recast below, replacing the entry */
                wf_tensor *c = wf_to_dtype(t, dt);
                if (!c) return NULL;
                if (c->scope) wf__scope_unregister(c);   /* the cache owns it now */
                wf_tensor_free(e->cast);
                e->cast = c;
                e->version = ver;
                return c;
            }
        }
    }
    wf_tensor *c = wf_to_dtype(t, dt);
    if (!c) return NULL;
    if (cacheable) {
        if (g_ncache == g_capcache) {
            int nc = g_capcache ? 2 * g_capcache : 16;
            ac_entry *v = wf__realloc(g_cache, sizeof(ac_entry) * (size_t)g_capcache, sizeof(ac_entry) * (size_t)nc);
            if (!v) { keep_temp(c); return c; }   /* uncached but still correct */
            g_cache = v;
            g_capcache = nc;
        }
        if (c->scope) wf__scope_unregister(c);
        g_cache[g_ncache++] = (ac_entry){ wf_tensor_retain(t), c, ver, grad, dt };
        return c;
    }
    if (!keep_temp(c)) { wf_tensor_free(c); wf__error(WF_ENOMEM, "autocast: out of memory"); return NULL; }
    return c;
}

wf_tensor *wf__autocast_arg(wf_tensor *t, int op_class) {
    if (!t || g_depth == 0) return t;
    const ac_region *r = region_for(t->device.type);
    if (!r || !r->enabled) return t;
    wf_dtype dt = t->dtype;
    if (op_class == WF__AC_LOWER) {
        /* eligible: floating and not f64 (as PyTorch) */
        if (dt != WF_F32 && dt != WF_F16 && dt != WF_BF16) return t;
        if (dt == r->low) return t;
        bool cacheable = t->requires_grad && !t->grad_fn && !t->view_base;
        return cast_to(t, r->low, cacheable);
    }
    if (op_class == WF__AC_F32) {
        if (dt != WF_F16 && dt != WF_BF16) return t;
        return cast_to(t, WF_F32, false);
    }
    return t;
}

/* ---------------------------------------------------------------- halves via f32
 * For ops whose CPU kernels have no f16/bf16 loops (conv, pools): compute in f32 and round
 * back to the half dtype (round to nearest even), with autograd through both casts. */
int wf__autocast_suspend(int device_type) {
    return wf_autocast_begin_ex((wf_device_type)device_type, WF_DTYPE_DEFAULT, false);
}
void wf__autocast_resume(void) { wf_autocast_end(); }

void wf__autocast_capture(wf__autocast_state *s) {
    for (int d = 0; d < 2; d++) {
        const ac_region *r = region_for(d);
        s->on[d] = r && r->enabled;
        s->low[d] = r ? r->low : WF_DTYPE_DEFAULT;
    }
}

int wf__autocast_enter(const wf__autocast_state *s) {
    int rc = wf_autocast_begin_ex(WF_DEV_CPU, s->low[0], s->on[0]);
    if (rc) return rc;
    if ((rc = wf_autocast_begin_ex(WF_DEV_CUDA, s->low[1], s->on[1]))) wf_autocast_end();
    return rc;
}

void wf__autocast_leave(void) {
    wf_autocast_end();
    wf_autocast_end();
}

