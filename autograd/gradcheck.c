/* autograd/gradcheck.c: compare analytic gradients with central finite differences (f64). */
#include "autograd_impl.h"

#include <math.h>

/* A fixed pseudo-random weighting (independent of the global RNG, so a check does not
 * disturb the stream the test is using). */
static double weight(uint64_t i) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return 0.5 + (double)(z >> 11) / 9007199254740992.0;   /* in [0.5, 1.5) */
}

/* sum(out * w) evaluated in f64 without autograd */
static int weighted_sum(wf_tensor *out, double *res) {
    int64_t n = wf_numel(out);
    double *v = wf__malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) return wf__error(WF_ENOMEM, "wf_gradcheck: out of memory");
    int rc = wf_to_array(out, v, WF_F64);
    double s = 0;
    for (int64_t i = 0; i < n && !rc; i++) s += v[i] * weight((uint64_t)i);
    wf__free(v, 0);
    *res = s;
    return rc;
}

/* address of logical element j of a CPU tensor */
static double *elem(wf_tensor *t, int64_t j) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (j % t->shape[d]) * t->stride[d];
        j /= t->shape[d];
    }
    return (double *)t->storage->data + off;
}

int wf_gradcheck(wf_gradcheck_fn fn, wf_tensor *const *inputs, int n, void *ud,
                 double eps, double atol, double rtol) {
    if (!fn || !inputs) return wf__any_null("wf_gradcheck", 2, fn, inputs), WF_ENULL;
    if (n < 0) return wf__error(WF_EINVAL, "wf_gradcheck: n = %d inputs", n);
    if (isnan(eps) || isnan(atol) || isnan(rtol) || isinf(eps))
        return wf__error(WF_EINVAL, "wf_gradcheck: eps %g, atol %g, rtol %g must be numbers (eps finite)", eps, atol, rtol);
    if (eps <= 0) eps = 1e-6;
    if (atol <= 0) atol = 1e-5;
    if (rtol <= 0) rtol = 1e-3;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) return wf__any_null("wf_gradcheck", 1, inputs[i]), WF_ENULL;
        if (inputs[i]->dtype != WF_F64 || inputs[i]->device.type != WF_DEV_CPU)
            return wf__error(WF_EDTYPE, "wf_gradcheck: input %d must be a float64 cpu tensor (got %s)",
                             i, wf_dtype_name(inputs[i]->dtype));
        if (inputs[i]->requires_grad && inputs[i]->grad_fn)
            return wf__error(WF_EAUTOGRAD, "wf_gradcheck: input %d is not a leaf", i);
    }
    int rc = 0;
    /* analytic */
    wf_tensor **analytic = wf__calloc((size_t)(n ? n : 1), sizeof *analytic);
    if (!analytic) return wf__error(WF_ENOMEM, "wf_gradcheck: out of memory");
    for (int i = 0; i < n; i++) if (inputs[i]->requires_grad) wf_set_grad(inputs[i], NULL);
    wf_scope_begin();
    wf_tensor *out = fn(inputs, n, ud);
    if (!out) { rc = wf_error() ? wf_error() : WF_EINVAL; wf_scope_end(); goto done; }
    if (!out->requires_grad) {
        wf_scope_end();
        rc = wf__error(WF_EAUTOGRAD, "wf_gradcheck: the function's output does not require grad");
        goto done;
    }
    {
        int64_t m = wf_numel(out);
        double *w = wf__malloc(sizeof(double) * (size_t)(m ? m : 1));
        for (int64_t j = 0; w && j < m; j++) w[j] = weight((uint64_t)j);
        wf_tensor *wt = w ? wf_from_data(w, out->shape, out->ndim, WF_F64) : NULL;
        wf__free(w, 0);
        if (wt && out->dtype != WF_F64) wt = wf_to_dtype(wt, out->dtype);
        rc = wt ? wf_backward(out, wt, false) : wf_error();
    }
    wf_scope_end();
    if (rc) goto done;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]->requires_grad) continue;
        analytic[i] = inputs[i]->grad ? wf_tensor_retain(inputs[i]->grad) : NULL;
    }
    /* numeric */
    bool prev = wf_set_grad_enabled(false);
    for (int i = 0; i < n && !rc; i++) {
        wf_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        int64_t m = wf_numel(x);
        double *ga = wf__malloc(sizeof(double) * (size_t)(m ? m : 1));
        if (!ga) { rc = wf__error(WF_ENOMEM, "wf_gradcheck: out of memory"); break; }
        if (analytic[i]) rc = wf_to_array(analytic[i], ga, WF_F64);
        else for (int64_t j = 0; j < m; j++) ga[j] = 0;
        for (int64_t j = 0; j < m && !rc; j++) {
            double *p = elem(x, j), orig = *p, fp = 0, fm = 0;
            *p = orig + eps;
            wf_scope_begin();
            wf_tensor *o1 = fn(inputs, n, ud);
            rc = o1 ? weighted_sum(o1, &fp) : (wf_error() ? wf_error() : WF_EINVAL);
            wf_scope_end();
            *p = orig - eps;
            if (!rc) {
                wf_scope_begin();
                wf_tensor *o2 = fn(inputs, n, ud);
                rc = o2 ? weighted_sum(o2, &fm) : (wf_error() ? wf_error() : WF_EINVAL);
                wf_scope_end();
            }
            *p = orig;
            if (rc) break;
            double num = (fp - fm) / (2 * eps);
            if (!(fabs(num - ga[j]) <= atol + rtol * fabs(num))) {
                rc = wf__error(WF_EAUTOGRAD, "wf_gradcheck: input %d element %lld: analytic %.10g vs numeric %.10g",
                               i, (long long)j, ga[j], num);
            }
        }
        wf__free(ga, 0);
    }
    wf_set_grad_enabled(prev);
done:
    for (int i = 0; i < n; i++) wf_tensor_free(analytic[i]);
    wf__free(analytic, 0);
    return rc;
}
