/* precision/plugins.c: precision plugins by Fabric's names.
 *
 *   "64-true"    DoublePrecision: module and inputs in f64 (init context: default dtype f64).
 *   "32-true"    Precision: nothing to do.
 *   "16-true"    HalfPrecision(f16): module, inputs and init in f16; outputs back to f32. The
 *                optimizer step refuses non-finite gradients (WF_ENONFINITE), so an overflow
 *                never becomes NaN weights silently.
 *   "bf16-true"  HalfPrecision(bf16): the same with bf16.
 *   "16-mixed"   MixedPrecision(f16) + GradScaler: autocast forward, f32 master weights,
 *                loss scaling, the step skipped on inf/NaN. On the CPU: "bf16-mixed" (warns).
 *   "bf16-mixed" MixedPrecision(bf16): autocast forward, f32 master weights, no scaler.
 *   "transformer-engine" TransformerEnginePrecision: bf16-mixed, plus every Linear module whose
 *                in/out features are multiples of 16 runs its three GEMMs in fp8
 *                (autograd/fn_fp8_linear.c) with TE's default recipe: DelayedScaling, HYBRID
 *                (E4M3 forward, E5M2 gradients), amax history 1024, "max", margin 0. Needs a
 *                GPU of compute capability 8.9 or newer (Ada, Hopper); elsewhere WF_ENOTSUP.
 *                The weights stay f32 masters as in bf16-mixed: Fabric's weights_dtype option
 *                (the dtype TE's modules are built in) is not mirrored.
 * Aliases as Fabric's _PRECISION_INPUT_STR_ALIAS_CONVERSION: "64", "32", "16" -> "16-mixed",
 * "bf16" -> "bf16-mixed"; 16 and bf16 warn. */
#include "precision_impl.h"
#include "weft_config.h"
#ifndef WEFT_MINIMAL
#include "../autograd/fn_fp8_linear.h"
#endif
#ifdef WEFT_HAVE_CUDA
#include "../tensor/cuda/cuda_api.h"
#endif

#include <stdio.h>
#include <string.h>

typedef enum { P_64_TRUE, P_32_TRUE, P_16_TRUE, P_BF16_TRUE, P_16_MIXED, P_BF16_MIXED, P_TE } pkind;

static const char *const kind_names[] = { "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
                                          "transformer-engine" };
#define VALID_NAMES "'64-true', '32-true', '16-true', 'bf16-true', '16-mixed', 'bf16-mixed', 'transformer-engine', " \
                    "'64', '32', '16', 'bf16'"

#define MAX_CTX 16

struct wf_precision {
    pkind kind;
    wf_device device;
    wf_grad_scaler *scaler;     /* 16-mixed only */
    /* init / forward contexts: what begin saw, restored by end */
    wf_dtype init_dtype[MAX_CTX];
    wf_device init_device[MAX_CTX];
    int n_init;
    wf_dtype fwd_dtype[MAX_CTX];
    int n_fwd;
    bool last_skipped;
    int64_t skipped;
};

static void warn(char *buf, size_t n, const char *msg) {
    if (buf && n) {
        size_t used = strlen(buf);
        if (used && used + 2 < n) { strcat(buf, "\n"); used++; }
        if (used < n) snprintf(buf + used, n - used, "%s", msg);
    } else {
        fprintf(stderr, "weft: warning: %s\n", msg);
    }
}

/* "transformer-engine" on dev: 0, or WF_ENOTSUP (recorded) naming the device and why */
static int fp8_device_check(const char *op, wf_device dev) {
    const char *need = "precision 'transformer-engine' needs compute capability 8.9 or newer (Ada, Hopper)";
    if (dev.type != WF_DEV_CUDA) return wf__error(WF_ENOTSUP, "%s: %s; the CPU has no fp8 GEMM", op, need);
#ifdef WEFT_HAVE_CUDA
    int major = 0, minor = 0;
    int rc = wf__cuda_capability(dev.index, &major, &minor);
    if (rc) return rc;
    if (major * 10 + minor < 89)
        return wf__error(WF_ENOTSUP, "%s: %s; cuda:%d is %d.%d", op, need, dev.index, major, minor);
    return 0;
#else
    return wf__error(WF_ENOTSUP, "%s: %s; cuda:%d is not available (weft was built without CUDA)", op, need, dev.index);
#endif
}

wf_precision *wf_precision_new(const char *name, wf_device accelerator_device, char *warning_buf, size_t n) {
    const char *op = "wf_precision_new";
    if (warning_buf && n) warning_buf[0] = '\0';
    if (!name) { wf__error(WF_ENULL, "%s: name is NULL (valid: " VALID_NAMES ")", op); return NULL; }
    int kind = -1;
    for (int i = 0; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
        if (!strcmp(name, kind_names[i])) kind = i;
    if (kind < 0) {
        if (!strcmp(name, "64")) kind = P_64_TRUE;
        else if (!strcmp(name, "32")) kind = P_32_TRUE;
        else if (!strcmp(name, "16") || !strcmp(name, "bf16")) {
            bool half = !strcmp(name, "16");
            kind = half ? P_16_MIXED : P_BF16_MIXED;
            char msg[200];
            snprintf(msg, sizeof msg, "`precision=%s` is supported for historical reasons but its usage is "
                     "discouraged. Please set your precision to %s instead!", name, kind_names[kind]);
            warn(warning_buf, n, msg);
        }
    }
    if (kind < 0) {
        wf__error(WF_EINVAL, "%s: precision '%s' is invalid. Allowed precision values: " VALID_NAMES, op, name);
        return NULL;
    }
    if (accelerator_device.type != WF_DEV_CPU && accelerator_device.type != WF_DEV_CUDA) {
        char d[32];
        wf__error(WF_EINVAL, "%s: the accelerator device must be cpu or cuda, got %s", op,
                  wf_device_str(accelerator_device, d, sizeof d));
        return NULL;
    }
    if (kind == P_TE && fp8_device_check(op, accelerator_device)) return NULL;
    if (kind == P_16_MIXED && accelerator_device.type == WF_DEV_CPU) {
        warn(warning_buf, n, "You passed `Fabric(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is "
             "not supported on CPU. Using `precision='bf16-mixed'` instead.");
        kind = P_BF16_MIXED;
    }
    wf_precision *p = wf__calloc(1, sizeof *p);
    if (!p) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
    p->kind = (pkind)kind;
    p->device = accelerator_device;
    if (kind == P_16_MIXED) {
        p->scaler = wf_grad_scaler_new(0, 0, 0, 0, true);
        if (!p->scaler) { wf__free(p, sizeof *p); return NULL; }
    }
    return p;
}

void wf_precision_free(wf_precision *p) {
    if (!p) return;
    wf_grad_scaler_free(p->scaler);
    wf__free(p, sizeof *p);
}

const char *wf_precision_name(const wf_precision *p) { return p ? kind_names[p->kind] : ""; }

wf_dtype wf_precision_param_dtype(const wf_precision *p) {
    if (!p) return WF_DTYPE_DEFAULT;
    switch (p->kind) {
    case P_64_TRUE: return WF_F64;
    case P_16_TRUE: return WF_F16;
    case P_BF16_TRUE: return WF_BF16;
    default: return WF_F32;
    }
}

wf_dtype wf_precision_compute_dtype(const wf_precision *p) {
    if (!p) return WF_DTYPE_DEFAULT;
    if (p->kind == P_16_MIXED) return WF_F16;
    if (p->kind == P_BF16_MIXED || p->kind == P_TE) return WF_BF16;
    return wf_precision_param_dtype(p);
}

bool wf_precision_is_mixed(const wf_precision *p) {
    return p && (p->kind == P_16_MIXED || p->kind == P_BF16_MIXED || p->kind == P_TE);
}

static bool is_true_half(const wf_precision *p) { return p->kind == P_16_TRUE || p->kind == P_BF16_TRUE; }
static bool converts(const wf_precision *p) { return p->kind == P_64_TRUE || is_true_half(p); }

int wf_precision_convert_module(wf_precision *p, wf_module *m) {
    if (!p || !m) return wf__error(WF_ENULL, "wf_precision_convert_module: NULL argument");
    if (!converts(p)) return 0;
    /* only the dtype: the strategy moves modules between devices */
    wf_tensor *first = NULL;
    int np = wf_module_parameters(m, &first, NULL, 1);
    wf_device dev = np > 0 && first ? wf_tensor_device(first) : WF_CPU;
    if (np <= 0) {
        wf_tensor *b = NULL;
        if (wf_module_buffers(m, &b, NULL, 1) > 0 && b) dev = wf_tensor_device(b);
    }
    return wf_module_to(m, dev, wf_precision_param_dtype(p));
}

int wf_precision_init_begin(wf_precision *p) {
    const char *op = "wf_precision_init_begin";
    if (!p) return wf__error(WF_ENULL, "%s: plugin is NULL", op);
    if (p->n_init == MAX_CTX) return wf__error(WF_ESTATE, "%s: more than %d nested init contexts", op, MAX_CTX);
    wf_dtype od = wf_get_default_dtype();
    wf_device odev = wf_get_default_device();
    int rc = wf_set_default_device(p->device);
    if (rc) return rc;
    rc = wf_set_default_dtype(wf_precision_param_dtype(p));
    if (rc) { wf_set_default_device(odev); return rc; }
    p->init_dtype[p->n_init] = od;
    p->init_device[p->n_init] = odev;
    p->n_init++;
    return 0;
}

int wf_precision_init_end(wf_precision *p) {
    if (!p) return wf__error(WF_ENULL, "wf_precision_init_end: plugin is NULL");
    if (p->n_init == 0) return wf__error(WF_ESTATE, "wf_precision_init_end: no init context is open");
    p->n_init--;
    wf_set_default_dtype(p->init_dtype[p->n_init]);
    wf_set_default_device(p->init_device[p->n_init]);
    return 0;
}

int wf_precision_forward_begin(wf_precision *p) {
    const char *op = "wf_precision_forward_begin";
    if (!p) return wf__error(WF_ENULL, "%s: plugin is NULL", op);
    if (p->n_fwd == MAX_CTX) return wf__error(WF_ESTATE, "%s: more than %d nested forward contexts", op, MAX_CTX);
    wf_dtype od = wf_get_default_dtype();
    if (wf_precision_is_mixed(p)) {
        int rc = wf_autocast_begin((wf_device_type)p->device.type, wf_precision_compute_dtype(p));
        if (rc) return rc;
#ifndef WEFT_MINIMAL
        if (p->kind == P_TE) wf__fp8_autocast_begin();
#endif
    } else if (converts(p)) {
        /* HalfPrecision / DoublePrecision: tensors created in forward get the dtype */
        int rc = wf_set_default_dtype(wf_precision_param_dtype(p));
        if (rc) return rc;
    }
    p->fwd_dtype[p->n_fwd++] = od;
    return 0;
}

int wf_precision_forward_end(wf_precision *p) {
    if (!p) return wf__error(WF_ENULL, "wf_precision_forward_end: plugin is NULL");
    if (p->n_fwd == 0) return wf__error(WF_ESTATE, "wf_precision_forward_end: no forward context is open");
    p->n_fwd--;
    int rc = 0;
    if (wf_precision_is_mixed(p)) rc = wf_autocast_end();
#ifndef WEFT_MINIMAL
    if (p->kind == P_TE) wf__fp8_autocast_end();
#endif
    wf_set_default_dtype(p->fwd_dtype[p->n_fwd]);
    return rc;
}

static wf_tensor *convert_fp(wf_tensor *x, wf_dtype dt) {
    if (!x) return NULL;
    if (!wf_dtype_is_floating(wf_tensor_dtype(x))) return wf_to_dtype(x, wf_tensor_dtype(x));   /* new handle */
    return wf_to_dtype(x, dt);
}

wf_tensor *wf_precision_convert_input(wf_precision *p, wf_tensor *x) {
    if (!p) { wf__error(WF_ENULL, "wf_precision_convert_input: plugin is NULL"); return NULL; }
    if (!x) return wf__any_null("wf_precision_convert_input", 1, x), NULL;
    /* Fabric: Half/Double convert to their dtype, Mixed to the default dtype, 32-true keeps */
    if (converts(p)) return convert_fp(x, wf_precision_param_dtype(p));
    if (wf_precision_is_mixed(p)) return convert_fp(x, WF_DTYPE_DEFAULT);
    return convert_fp(x, wf_tensor_dtype(x));
}

wf_tensor *wf_precision_convert_output(wf_precision *p, wf_tensor *y) {
    if (!p) { wf__error(WF_ENULL, "wf_precision_convert_output: plugin is NULL"); return NULL; }
    if (!y) return NULL;
    if (p->kind == P_32_TRUE) return convert_fp(y, wf_tensor_dtype(y));
    return convert_fp(y, WF_DTYPE_DEFAULT);
}

int wf_precision_backward(wf_precision *p, wf_tensor *loss) {
    const char *op = "wf_precision_backward";
    if (!p) return wf__error(WF_ENULL, "%s: plugin is NULL", op);
    if (!loss) return wf_error() ? wf_error() : wf__error(WF_ENULL, "%s: loss is NULL", op);
    /* backward runs outside autocast even when called inside the forward context */
    int rc = wf_autocast_begin_ex((wf_device_type)p->device.type, WF_DTYPE_DEFAULT, false);
    if (rc) return rc;
    wf_scope_begin();
    wf_tensor *l = loss;
    if (p->scaler) l = wf_grad_scaler_scale(p->scaler, loss);
    rc = l ? wf_backward(l, NULL, false) : (wf_error() ? wf_error() : WF_ENOMEM);
    wf_scope_end();
    wf_autocast_end();
    return rc;
}

int wf_precision_unscale(wf_precision *p, wf_optimizer *opt) {
    if (!p || !opt) return wf__error(WF_ENULL, "wf_precision_unscale: NULL argument");
    if (!p->scaler) return 0;
    if (wf__grad_scaler_unscaled(p->scaler, opt)) return 0;   /* once per step */
    return wf_grad_scaler_unscale_(p->scaler, opt);
}

int wf_precision_optimizer_step(wf_precision *p, wf_optimizer *opt, bool *skipped) {
    const char *op = "wf_precision_optimizer_step";
    if (skipped) *skipped = false;
    if (!p || !opt) return wf__error(WF_ENULL, "%s: NULL argument", op);
    p->last_skipped = false;
    int rc;
    if (p->scaler) {
        bool sk = false;
        rc = wf_grad_scaler_step(p->scaler, opt, &sk);
        if (!rc) rc = wf_grad_scaler_update(p->scaler);
        if (sk) { p->last_skipped = true; p->skipped++; }
        if (skipped) *skipped = sk;
        return rc;
    }
    if (is_true_half(p)) {
        int bg = 0, bi = 0;
        int found = wf__grads_nonfinite(opt, 1.0, &bg, &bi);
        if (found < 0) return found;
        if (found) {
            p->last_skipped = true;
            p->skipped++;
            if (skipped) *skipped = true;
            return wf__error(WF_ENONFINITE, "%s (%s): the gradient of parameter %d of group %d has inf/NaN values "
                             "(%s overflow?); the step was not applied and the weights are unchanged. Use "
                             "\"16-mixed\" (loss scaling) or \"bf16-true\"/\"bf16-mixed\" instead.", op,
                             kind_names[p->kind], bi, bg, wf_dtype_name(wf_precision_param_dtype(p)));
        }
    }
    return wf_optimizer_step(opt);
}

bool wf_precision_last_step_skipped(const wf_precision *p) { return p && p->last_skipped; }
int64_t wf_precision_skipped_steps(const wf_precision *p) { return p ? p->skipped : 0; }

int wf_precision_state(const wf_precision *p, double *scale, int64_t *growth_tracker) {
    if (!p) return wf__error(WF_ENULL, "wf_precision_state: plugin is NULL");
    if (scale) *scale = p->scaler ? wf_grad_scaler_get_scale(p->scaler) : 1.0;
    if (growth_tracker) *growth_tracker = p->scaler ? wf_grad_scaler_growth_tracker(p->scaler) : 0;
    return 0;
}

int wf_precision_load_state(wf_precision *p, double scale, int64_t growth_tracker) {
    if (!p) return wf__error(WF_ENULL, "wf_precision_load_state: plugin is NULL");
    if (!p->scaler) return 0;   /* nothing to restore (Fabric: an empty state dict) */
    wf_grad_scaler_state st;
    wf_grad_scaler_state_get(p->scaler, &st);
    st.scale = scale;
    st.growth_tracker = growth_tracker;
    return wf_grad_scaler_state_set(p->scaler, &st);
}

wf_grad_scaler *wf_precision_grad_scaler(wf_precision *p) { return p ? p->scaler : NULL; }
bool wf_precision_needs_fabric_backward(const wf_precision *p) { return p && p->scaler; }
