/* nn/init.c: torch.nn.init. Fills run under no-grad; host-side math (erfinv, QR) where the
 * tensor ops have no counterpart. */
#include "nn_impl.h"
#include "tensor/meta_init.h"

#include <math.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static int check_t(const char *op, wf_tensor *t) {
    if (!t) return wf__any_null(op, 1, t), WF_ENULL;
    if (!wf_dtype_is_floating(wf_tensor_dtype(t)))
        return wf__error(WF_EDTYPE, "%s: needs a floating tensor, got %s", op, wf_dtype_name(wf_tensor_dtype(t)));
    return 0;
}

/* Skip-init (PyTorch's skip_init / Fabric's empty_init): while set on this thread, the
 * wf_init_* functions leave tensors as they are, so building a large model costs no random
 * draws and no passes over its weights (they are about to be overwritten by a load). */
static _Thread_local bool g_skip_init;

bool wf_nn_set_skip_init(bool skip) {
    bool prev = g_skip_init;
    g_skip_init = skip;
    return prev;
}
bool wf_nn_skip_init(void) { return g_skip_init; }

double wf_init_calculate_gain(const char *nl, double param) {
    if (!nl) { wf__error(WF_ENULL, "wf_init_calculate_gain: nonlinearity is NULL"); return NAN; }
    static const char *linear_fns[] = { "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                        "conv_transpose2d", "conv_transpose3d", "sigmoid" };
    for (size_t i = 0; i < sizeof linear_fns / sizeof linear_fns[0]; i++)
        if (strcmp(nl, linear_fns[i]) == 0) return 1.0;
    if (strcmp(nl, "tanh") == 0) return 5.0 / 3.0;
    if (strcmp(nl, "relu") == 0) return sqrt(2.0);
    if (strcmp(nl, "leaky_relu") == 0) {
        double slope = isnan(param) ? 0.01 : param;
        return sqrt(2.0 / (1.0 + slope * slope));
    }
    if (strcmp(nl, "selu") == 0) return 3.0 / 4.0;
    wf__error(WF_EINVAL, "wf_init_calculate_gain: unsupported nonlinearity \"%s\"", nl);
    return NAN;
}

int wf_init_calculate_fans(const wf_tensor *t, int64_t *fan_in, int64_t *fan_out) {
    if (!t) return wf__any_null("wf_init_calculate_fans", 1, t), WF_ENULL;
    if (wf_ndim(t) < 2) {
        char b[96];
        return wf__error(WF_ESHAPE, "wf_init_calculate_fans: fan in and fan out can not be computed for a tensor with "
                         "fewer than 2 dimensions (shape %s)", wf_shape_str(t, b, sizeof b));
    }
    int64_t rf = 1;
    for (int i = 2; i < wf_ndim(t); i++) rf *= wf_shape(t)[i];
    if (fan_in) *fan_in = wf_shape(t)[1] * rf;
    if (fan_out) *fan_out = wf_shape(t)[0] * rf;
    return 0;
}

int wf_init_uniform_(wf_tensor *t, double a, double b) {
    if (g_skip_init && t) return 0;
    int rc = check_t("wf_init_uniform_", t);
    if (rc) return rc;
    if (!(a <= b)) return wf__error(WF_EINVAL, "wf_init_uniform_: expected a <= b, got a=%g b=%g", a, b);
    bool prev = wf_set_grad_enabled(false);
    rc = wf_uniform_(t, a, b);
    wf_set_grad_enabled(prev);
    return rc;
}

int wf_init_normal_(wf_tensor *t, double mean, double std) {
    if (g_skip_init && t) return 0;
    int rc = check_t("wf_init_normal_", t);
    if (rc) return rc;
    if (!(std >= 0)) return wf__error(WF_EINVAL, "wf_init_normal_: std must be non-negative, got %g", std);
    bool prev = wf_set_grad_enabled(false);
    rc = wf_normal_(t, mean, std);
    wf_set_grad_enabled(prev);
    return rc;
}

int wf_init_constant_(wf_tensor *t, double value) {
    if (g_skip_init && t) return 0;
    int rc = check_t("wf_init_constant_", t);
    if (rc) return rc;
    bool prev = wf_set_grad_enabled(false);
    rc = wf_fill_(t, value);
    wf_set_grad_enabled(prev);
    return rc;
}
static int wf_init_zeros___body(wf_tensor *t) { return wf_init_constant_(t, 0.0); }

int wf_init_zeros_(wf_tensor *t) { WF__NAMED("wf_init_zeros_", int, r < 0, wf_init_zeros___body(t)); }

static int wf_init_ones___body(wf_tensor *t) { return wf_init_constant_(t, 1.0); }

int wf_init_ones_(wf_tensor *t) { WF__NAMED("wf_init_ones_", int, r < 0, wf_init_ones___body(t)); }

/* Write host values (f64, logical order) into t under no-grad. */
static int write_host(wf_tensor *t, const double *v) {
    bool prev = wf_set_grad_enabled(false);
    wf_scope_begin();
    wf_tensor *src = wf_from_data(v, wf_shape(t), wf_ndim(t), WF_F64);
    int rc = src ? wf_copy_(t, src) : wf_error();
    wf_scope_end();
    wf_set_grad_enabled(prev);
    return rc;
}

/* Draw n host values: uniform [lo, hi) or normal(0, 1) from the global generator. */
static double *draw(const char *op, int64_t n, bool normal, double lo, double hi) {
    double *v = wf__malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) { wf__error(WF_ENOMEM, "%s: out of memory", op); return NULL; }
    wf_scope_begin();
    wf_tensor *tmp = wf_empty_on(&n, 1, WF_F64, WF_CPU);
    int rc = tmp ? (normal ? wf_normal_(tmp, 0, 1) : wf_uniform_(tmp, lo, hi)) : wf_error();
    if (!rc) rc = wf_to_array(tmp, v, WF_F64);
    wf_scope_end();
    if (rc) { wf__free(v, 0); return NULL; }
    return v;
}

/* On the meta device these initializers leave a note (tensor/meta_init.h): FSDP's setup runs
 * them again on a full temporary, the generator as it was, to materialize a parameter. */
static int replay_eye(wf_tensor *full, const double *args) { (void)args; return wf_init_eye_(full); }
static int replay_trunc_normal(wf_tensor *full, const double *a) {
    return wf_init_trunc_normal_(full, a[0], a[1], a[2], a[3]);
}
static int replay_orthogonal(wf_tensor *full, const double *a) { return wf_init_orthogonal_(full, a[0]); }

int wf_init_eye_(wf_tensor *t) {
    if (g_skip_init && t) return 0;
    int rc = check_t("wf_init_eye_", t);
    if (rc) return rc;
    if (wf_ndim(t) != 2) return wf__error(WF_ESHAPE, "wf_init_eye_: only 2-D tensors are supported");
    int64_t r = wf_shape(t)[0], c = wf_shape(t)[1];
    double *v = wf__calloc((size_t)(r * c > 0 ? r * c : 1), sizeof(double));
    if (!v) return wf__error(WF_ENOMEM, "wf_init_eye_: out of memory");
    for (int64_t i = 0; i < r && i < c; i++) v[i * c + i] = 1;
    rc = write_host(t, v);
    wf__free(v, 0);
    if (!rc) wf__meta_note_call(t, replay_eye, NULL, 0, wf_rng_get_state());
    return rc;
}

/* inverse error function: Giles' approximation refined by Newton steps */
static double erfinv(double y) {
    if (y <= -1) return -INFINITY;
    if (y >= 1) return INFINITY;
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 6.25) {
        w -= 3.125;
        x = -3.6444120640178196996e-21;
        x = -1.685059138182016589e-19 + x * w;
        x = 1.2858480715256400167e-18 + x * w;
        x = 1.115787767802518096e-17 + x * w;
        x = -1.333171662854620906e-16 + x * w;
        x = 2.0972767875968561637e-17 + x * w;
        x = 6.6376381343583238325e-15 + x * w;
        x = -4.0545662729752068639e-14 + x * w;
        x = -8.1519341976054721522e-14 + x * w;
        x = 2.6335093153082322977e-12 + x * w;
        x = -1.2975133253453532498e-11 + x * w;
        x = -5.4154120542946279317e-11 + x * w;
        x = 1.051212273321532285e-09 + x * w;
        x = -4.1126339803469836976e-09 + x * w;
        x = -2.9070369957882005086e-08 + x * w;
        x = 4.2347877827932403518e-07 + x * w;
        x = -1.3654692000834678645e-06 + x * w;
        x = -1.3882523362786468719e-05 + x * w;
        x = 0.0001867342080340571352 + x * w;
        x = -0.00074070253416626697512 + x * w;
        x = -0.0060336708714301490533 + x * w;
        x = 0.24015818242558961693 + x * w;
        x = 1.6536545626831027356 + x * w;
    } else if (w < 16.0) {
        w = sqrt(w) - 3.25;
        x = 2.2137376921775787049e-09;
        x = 9.0756561938885390979e-08 + x * w;
        x = -2.7517406297064545428e-07 + x * w;
        x = 1.8239629214389227755e-08 + x * w;
        x = 1.5027403968909827627e-06 + x * w;
        x = -4.013867526981545969e-06 + x * w;
        x = 2.9234449089955446044e-06 + x * w;
        x = 1.2475304481671778723e-05 + x * w;
        x = -4.7318229009055733981e-05 + x * w;
        x = 6.8284851459573175448e-05 + x * w;
        x = 2.4031110387097893999e-05 + x * w;
        x = -0.0003550375203628474796 + x * w;
        x = 0.00095328937973738049703 + x * w;
        x = -0.0016882755560235047313 + x * w;
        x = 0.0024914420961078508066 + x * w;
        x = -0.0037512085075692412107 + x * w;
        x = 0.005370914553590063617 + x * w;
        x = 1.0052589676941592334 + x * w;
        x = 3.0838856104922207635 + x * w;
    } else {
        w = sqrt(w) - 5.0;
        x = -2.7109920616438573243e-11;
        x = -2.5556418169965252055e-10 + x * w;
        x = 1.5076572693500548083e-09 + x * w;
        x = -3.7894654401267369937e-09 + x * w;
        x = 7.6157012080783393804e-09 + x * w;
        x = -1.4960026627149240478e-08 + x * w;
        x = 2.9147953450901080826e-08 + x * w;
        x = -6.7711997758452339498e-08 + x * w;
        x = 2.2900482228026654717e-07 + x * w;
        x = -9.9298272942317002539e-07 + x * w;
        x = 4.5260625972231537039e-06 + x * w;
        x = -1.9681778105531670567e-05 + x * w;
        x = 7.5995277030017761139e-05 + x * w;
        x = -0.00021503011930044477347 + x * w;
        x = -0.00013871931833623122026 + x * w;
        x = 1.0103004648645343977 + x * w;
        x = 4.8499064014085844221 + x * w;
    }
    x *= y;
    for (int i = 0; i < 2; i++) {
        double err = erf(x) - y;
        x -= err / (2.0 / sqrt(M_PI) * exp(-x * x));
    }
    return x;
}

static double norm_cdf(double x) { return (1.0 + erf(x / sqrt(2.0))) / 2.0; }

int wf_init_trunc_normal_(wf_tensor *t, double mean, double std, double a, double b) {
    if (g_skip_init && t) return 0;
    const char *op = "wf_init_trunc_normal_";
    int rc = check_t(op, t);
    if (rc) return rc;
    if (!(std > 0) || !(a < b)) return wf__error(WF_EINVAL, "%s: needs std > 0 and a < b, got std=%g a=%g b=%g", op, std, a, b);
    int64_t n = wf_numel(t);
    double l = norm_cdf((a - mean) / std), u = norm_cdf((b - mean) / std);
    wf_rng_state before = wf_rng_get_state();
    double *v = draw(op, n, false, 2 * l - 1, 2 * u - 1);
    if (!v) return wf_error();
    for (int64_t i = 0; i < n; i++) {
        double x = erfinv(v[i]) * std * sqrt(2.0) + mean;
        v[i] = x < a ? a : x > b ? b : x;
    }
    rc = write_host(t, v);
    wf__free(v, 0);
    if (!rc) wf__meta_note_call(t, replay_trunc_normal, (const double[]){ mean, std, a, b }, 4, before);
    return rc;
}

static int fans_for(const char *op, wf_tensor *t, int64_t *fi, int64_t *fo) {
    int rc = check_t(op, t);
    if (rc) return rc;
    rc = wf_init_calculate_fans(t, fi, fo);
    if (rc) return wf__error(rc, "%s: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions", op);
    return 0;
}

int wf_init_xavier_uniform_(wf_tensor *t, double gain) {
    if (g_skip_init && t) return 0;
    int64_t fi, fo;
    int rc = fans_for("wf_init_xavier_uniform_", t, &fi, &fo);
    if (rc) return rc;
    if (fi + fo == 0) return 0;
    double std = gain * sqrt(2.0 / (double)(fi + fo)), bound = sqrt(3.0) * std;
    return wf_init_uniform_(t, -bound, bound);
}

int wf_init_xavier_normal_(wf_tensor *t, double gain) {
    if (g_skip_init && t) return 0;
    int64_t fi, fo;
    int rc = fans_for("wf_init_xavier_normal_", t, &fi, &fo);
    if (rc) return rc;
    if (fi + fo == 0) return 0;
    return wf_init_normal_(t, 0.0, gain * sqrt(2.0 / (double)(fi + fo)));
}

static int kaiming_std(const char *op, wf_tensor *t, double a, wf_fan_mode mode, const char *nl, double *std) {
    int64_t fi, fo;
    int rc = fans_for(op, t, &fi, &fo);
    if (rc) return rc;
    if (mode != WF_FAN_IN && mode != WF_FAN_OUT) return wf__error(WF_EINVAL, "%s: mode must be WF_FAN_IN or WF_FAN_OUT", op);
    double gain = wf_init_calculate_gain(nl ? nl : "leaky_relu", a);
    if (isnan(gain)) return wf_error();
    int64_t fan = mode == WF_FAN_IN ? fi : fo;
    *std = fan > 0 ? gain / sqrt((double)fan) : 0.0;
    return 0;
}

static int wf_init_kaiming_uniform___body(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity) {
    if (g_skip_init && t) return 0;
    if (t && wf_numel(t) == 0) return 0;   /* PyTorch: initializing zero-element tensors is a no-op */
    double std = 0;
    int rc = kaiming_std("wf_init_kaiming_uniform_", t, a, mode, nonlinearity, &std);
    if (rc) return rc;
    double bound = sqrt(3.0) * std;
    return wf_init_uniform_(t, -bound, bound);
}

int wf_init_kaiming_uniform_(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity) {
    WF__NAMED("wf_init_kaiming_uniform_", int, r < 0, wf_init_kaiming_uniform___body(t, a, mode, nonlinearity));
}

static int wf_init_kaiming_normal___body(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity) {
    if (g_skip_init && t) return 0;
    if (t && wf_numel(t) == 0) return 0;
    double std = 0;
    int rc = kaiming_std("wf_init_kaiming_normal_", t, a, mode, nonlinearity, &std);
    if (rc) return rc;
    return wf_init_normal_(t, 0.0, std);
}

int wf_init_kaiming_normal_(wf_tensor *t, double a, wf_fan_mode mode, const char *nonlinearity) {
    WF__NAMED("wf_init_kaiming_normal_", int, r < 0, wf_init_kaiming_normal___body(t, a, mode, nonlinearity));
}

int wf_init_orthogonal_(wf_tensor *t, double gain) {
    if (g_skip_init && t) return 0;
    const char *op = "wf_init_orthogonal_";
    int rc = check_t(op, t);
    if (rc) return rc;
    if (wf_ndim(t) < 2) return wf__error(WF_ESHAPE, "%s: only tensors with 2 or more dimensions are supported", op);
    int64_t n = wf_numel(t);
    if (n == 0) return 0;
    int64_t rows = wf_shape(t)[0], cols = n / rows;
    wf_rng_state before = wf_rng_get_state();
    double *flat = draw(op, n, true, 0, 0);            /* [rows, cols] row-major */
    if (!flat) return wf_error();
    bool tr = rows < cols;
    int64_t M = tr ? cols : rows, N = tr ? rows : cols; /* A is M x N, M >= N */
    double *A = wf__malloc(sizeof(double) * (size_t)(M * N));
    if (!A) { wf__free(flat, 0); return wf__error(WF_ENOMEM, "%s: out of memory", op); }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) A[i * N + j] = tr ? flat[j * cols + i] : flat[i * cols + j];
    /* modified Gram-Schmidt with re-orthogonalization on the columns: Q with positive diag(R),
     * which is the sign-corrected QR that PyTorch returns */
    for (int64_t j = 0; j < N; j++) {
        for (int pass = 0; pass < 2; pass++)
            for (int64_t k = 0; k < j; k++) {
                double dot = 0;
                for (int64_t i = 0; i < M; i++) dot += A[i * N + k] * A[i * N + j];
                for (int64_t i = 0; i < M; i++) A[i * N + j] -= dot * A[i * N + k];
            }
        double nrm = 0;
        for (int64_t i = 0; i < M; i++) nrm += A[i * N + j] * A[i * N + j];
        nrm = sqrt(nrm);
        for (int64_t i = 0; i < M; i++) A[i * N + j] = nrm > 0 ? A[i * N + j] / nrm : 0;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) flat[i * cols + j] = gain * (tr ? A[j * N + i] : A[i * N + j]);
    rc = write_host(t, flat);
    wf__free(A, 0);
    wf__free(flat, 0);
    if (!rc) wf__meta_note_call(t, replay_orthogonal, &gain, 1, before);
    return rc;
}
